//! Fault points for the black-box fault tests: a test hook, compiled into
//! debug builds only.
//!
//! `HOTLEASED_FAULT=<name>` in the daemon's environment arms the fault point
//! `name`, read once at start; in release builds `armed` is `false` and every
//! point compiles away. The points:
//! - `northbound-panic`: the northbound actor panics while answering a
//!   `<get>` (a bug in the actor, such as a failed assert);
//! - `lease-writer-exit`: the lease writer thread returns at its first
//!   batch instead of writing it (the thread is gone, without a panic).

/// Whether the fault point `name` is armed (debug builds).
#[cfg(debug_assertions)]
pub fn armed(name: &str) -> bool {
    armed_fault().as_deref() == Some(name)
}

/// Whether the fault point `name` is armed: never in release builds.
#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn armed(_name: &str) -> bool {
    false
}

#[cfg(debug_assertions)]
fn armed_fault() -> &'static Option<String> {
    static FAULT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    FAULT.get_or_init(|| std::env::var("HOTLEASED_FAULT").ok())
}

/// Log the armed fault point, if any, at start (the tests wait for it).
pub fn announce() {
    #[cfg(debug_assertions)]
    if let Some(f) = armed_fault() {
        tracing::warn!(fault = %f, "fault point armed (test hook)");
    }
}
