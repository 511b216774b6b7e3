//! How threads are scheduled, for the ones that must not wait for the CPU
//! behind bulk work (the DHCP answer path) and the bulk work that must let
//! others in at once (a large `<get>`).
//!
//! Under the normal scheduler (EEVDF since Linux 6.6) a woken thread waits
//! for the CPU's current thread to use up its slice (about 3 ms, checked at
//! the tick: up to 4 ms at HZ=250) unless it is the more urgent; a NETCONF
//! reply of 100,000 leases keeps a CPU busy rendering and encrypting for
//! hundreds of milliseconds, and every hop between threads then costs up to
//! a tick (BENCHMARKS.md, "Reads at carrier scale").

// pthread_setschedparam(3) and sched_setattr(2) have no safe wrapper in the
// crates used here.
#![allow(unsafe_code)]

/// Put `thread` under SCHED_RR at `priority` (1..=99; needs CAP_SYS_NICE
/// or an RLIMIT_RTPRIO allowance): woken, it runs at once. The threads it
/// starts later begin under the normal scheduler (SCHED_RESET_ON_FORK):
/// the lease log's compaction and the runtime's blocking helpers are
/// background work.
pub fn realtime(thread: libc::pthread_t, priority: u8) -> std::io::Result<()> {
    let param = libc::sched_param {
        sched_priority: i32::from(priority.clamp(1, 99)),
    };
    // SAFETY: `thread` is a live thread of this process (the caller holds
    // its handle or is that thread), `param` a valid value.
    let rc = unsafe {
        libc::pthread_setschedparam(thread, libc::SCHED_RR | libc::SCHED_RESET_ON_FORK, &param)
    };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// [`realtime`] for the calling thread.
pub fn realtime_self(priority: u8) -> std::io::Result<()> {
    // SAFETY: pthread_self has no arguments and cannot fail.
    realtime(unsafe { libc::pthread_self() }, priority)
}

/// The CPUs the process may run on (its main thread's, whichever thread
/// asks; empty if it cannot be told).
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is a plain bit array, zeroed, then filled by
    // sched_getaffinity for the main thread (tid = pid) within its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let main = libc::getpid();
        if libc::sched_getaffinity(main, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Run the calling thread on `cpu` only; false if the kernel refuses
/// (a CPU outside the process's cpuset, or offline).
pub fn pin(cpu: usize) -> bool {
    // SAFETY: as in allowed_cpus; the set is only read by the call.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// The CPU the calling thread runs on now (it may move right after).
pub fn current_cpu() -> Option<usize> {
    // SAFETY: sched_getcpu has no arguments.
    usize::try_from(unsafe { libc::sched_getcpu() }).ok()
}

/// The shortest slice the kernel grants (0.1 ms; `sched_attr.sched_runtime`
/// of a SCHED_OTHER thread, Linux 6.12+).
pub const SHORT_SLICE_NS: u64 = 100_000;

/// `struct sched_attr` of sched_setattr(2).
#[repr(C)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
    util_min: u32,
    util_max: u32,
}

/// Give the calling thread (bulk work under the normal scheduler) the
/// shortest slice: a thread woken meanwhile (the northbound actor with a
/// commit, a session) no longer waits for a long slice of it to end, and
/// its share of the CPU is what it was (nice unchanged: at nice 19 a
/// 100,000-lease read took 508 s on a busy machine). Kernels before 6.12
/// accept and ignore it; an error is only logged.
pub fn short_slice() {
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy: libc::SCHED_OTHER as u32,
        flags: 0,
        nice: current_nice(),
        priority: 0,
        runtime: SHORT_SLICE_NS,
        deadline: 0,
        period: 0,
        util_min: 0,
        util_max: 0,
    };
    // SAFETY: pid 0 is the calling thread; `attr` is a valid sched_attr of
    // the size given, read only for the call.
    let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "sched_setattr");
    }
}

/// The nice value the northbound actor runs an operation at (on whichever
/// runtime thread runs it): a weight about nine times the normal one, so
/// that another session's commit takes most of the CPU from the threads
/// rendering and encrypting a large reply (the tokio workers, a `<get>`
/// thread), which keep their share otherwise. Proportional, not real
/// time: a long validation (seconds for a large change) slows the other
/// sessions down, it does not stop them.
pub const OPERATION_NICE: i32 = -10;

/// Run `f` with the calling thread at nice `nice`, then put it back. Going
/// below the thread's nice needs CAP_SYS_NICE or an RLIMIT_NICE allowance
/// (the unit's `LimitNICE=`); without it `f` runs as the thread is (said
/// once, at debug level).
pub fn with_nice<R>(nice: i32, f: impl FnOnce() -> R) -> R {
    static REFUSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let before = current_nice();
    let raised = before != nice && set_nice(nice).is_ok();
    if !raised && before != nice && !REFUSED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::debug!(nice, error = %std::io::Error::last_os_error(), "operations run at the normal weight");
    }
    let r = f();
    if raised {
        let _ = set_nice(before);
    }
    r
}

/// The calling thread's id (for [`set_thread_nice`] from another thread).
pub fn thread_id() -> i32 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::gettid() }
}

/// Set the nice value of thread `tid` of this process. Raising it (less
/// CPU) needs no privilege.
pub fn set_thread_nice(tid: i32, nice: i32) -> std::io::Result<()> {
    // SAFETY: setpriority only reads its integer arguments.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Set the calling thread's nice value (Linux: per thread).
fn set_nice(nice: i32) -> std::io::Result<()> {
    // SAFETY: gettid has no arguments; setpriority only reads its integer
    // arguments.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The calling thread's nice value (sched_setattr sets it too).
pub fn current_nice() -> i32 {
    // SAFETY: getpriority only reads its integer arguments; errno is reset
    // first, since -1 is a valid answer.
    unsafe {
        *libc::__errno_location() = 0;
        libc::getpriority(libc::PRIO_PROCESS, 0)
    }
}

/// The calling thread's slice in nanoseconds (`se.slice` of
/// /proc/thread-self/sched).
#[cfg(test)]
pub fn current_slice() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/sched")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("se.slice"))?
        .trim_start_matches([' ', ':'])
        .trim()
        .parse()
        .ok()
}

/// The scheduling policy of thread `tid` of this process as the kernel
/// gives it, the reset-on-fork flag included.
#[cfg(test)]
pub fn raw_policy_of(tid: i32) -> std::io::Result<i32> {
    // SAFETY: the call only reads `tid`.
    let policy = unsafe { libc::sched_getscheduler(tid) };
    if policy < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(policy)
}

/// The scheduling policy (without the reset-on-fork flag) and real-time
/// priority of thread `tid` of this process.
#[cfg(test)]
pub fn policy_of(tid: i32) -> std::io::Result<(i32, i32)> {
    let policy = raw_policy_of(tid)?;
    let mut param = libc::sched_param { sched_priority: 0 };
    // SAFETY: the call only reads `tid` and writes the param we own.
    if unsafe { libc::sched_getparam(tid, &mut param) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((policy & !libc::SCHED_RESET_ON_FORK, param.sched_priority))
}

/// [`policy_of`] the calling thread.
#[cfg(test)]
pub fn current_policy() -> std::io::Result<(i32, i32)> {
    // SAFETY: gettid has no arguments and cannot fail.
    policy_of(unsafe { libc::gettid() })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A short slice is the calling thread's alone.
    #[test]
    fn short_slice_of_the_calling_thread() {
        let before = current_slice().unwrap();
        let theirs = std::thread::spawn(|| {
            short_slice();
            current_slice().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(theirs, SHORT_SLICE_NS);
        assert!(before > SHORT_SLICE_NS, "{before}");
        assert_eq!(current_slice().unwrap(), before);
    }

    /// The thread runs at the nice value given for the call only.
    #[test]
    fn with_nice_for_the_call() {
        std::thread::spawn(|| {
            let before = current_nice();
            assert_eq!(with_nice(OPERATION_NICE, current_nice), OPERATION_NICE);
            assert_eq!(current_nice(), before);
            // another thread is not changed
            let other = std::thread::spawn(current_nice);
            assert_eq!(with_nice(OPERATION_NICE, || other.join().unwrap()), before);
        })
        .join()
        .unwrap();
    }

    /// The thread runs SCHED_RR at the priority; a thread it starts runs
    /// under the normal scheduler again.
    #[test]
    fn realtime_thread_and_its_children() {
        let (rt, child) = std::thread::spawn(|| {
            realtime_self(3).expect("SCHED_RR (tests run as root)");
            let child = std::thread::spawn(|| current_policy().unwrap())
                .join()
                .unwrap();
            (current_policy().unwrap(), child)
        })
        .join()
        .unwrap();
        assert_eq!(rt, (libc::SCHED_RR, 3));
        assert_eq!(child, (libc::SCHED_OTHER, 0));
    }
}
