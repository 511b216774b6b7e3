//! The one operating-system call the DHCP runtime needs outside the
//! sockets and `crate::sched`: lowering a helper thread's priority.

// setpriority(2) has no safe wrapper in the crates used here.
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
