//! The operating-system calls the DHCP runtime needs outside the sockets:
//! a helper thread's priority, and the real-time scheduling of the
//! threads an ACK passes through.

// setpriority(2) and pthread_setschedparam(3) have no safe wrapper in the
// crates used here.
#![allow(unsafe_code)]

/// Run the calling thread at the lowest priority (nice 19): background
/// work such as rewriting the lease log must not take the CPU from serving.
pub fn background_priority() {
    // SAFETY: setpriority only reads its integer arguments; with
    // PRIO_PROCESS and 0 Linux applies it to the calling thread alone.
    let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
    if r != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "setpriority");
    }
}

/// Put `thread` under SCHED_RR at `priority` (1..=99; needs CAP_SYS_NICE
/// or an RLIMIT_RTPRIO allowance). Under the normal scheduler a thread
/// woken by a packet or an fsync waits for the CPU's current thread (a
/// large NETCONF reply being rendered and encrypted) to use up its slice,
/// up to a scheduler tick (4 ms at HZ=250), at every hop an ACK makes
/// between threads; a real-time thread runs at once. The threads it
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

/// The scheduling policy (without the reset-on-fork flag) and real-time
/// priority of thread `tid` of this process.
#[cfg(test)]
pub fn policy_of(tid: i32) -> std::io::Result<(i32, i32)> {
    // SAFETY: both calls only read `tid` and write the param we own.
    let policy = unsafe { libc::sched_getscheduler(tid) };
    if policy < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut param = libc::sched_param { sched_priority: 0 };
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
