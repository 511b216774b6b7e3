//! NETCONF activity for the metrics endpoint: sessions, rpcs and errors by
//! operation, commit durations. Atomics, bumped by the session tasks and
//! the northbound actor, read by a scrape without either.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::metrics::histogram::Histogram;

/// The operations counted by name; any other (a misspelt or foreign rpc)
/// is counted as `other`, so that a client cannot grow the label set.
pub const OPERATIONS: &[&str] = &[
    "get",
    "get-config",
    "edit-config",
    "copy-config",
    "delete-config",
    "lock",
    "unlock",
    "close-session",
    "kill-session",
    "commit",
    "cancel-commit",
    "discard-changes",
    "validate",
    "get-schema",
    "batch-backup",
    "other",
];

#[derive(Debug)]
pub struct NetconfStats {
    sessions_open: AtomicU64,
    sessions_total: AtomicU64,
    /// Password logins refused (wrong password or unknown user).
    login_failures: AtomicU64,
    /// Login attempts delayed or refused unchecked by the per-address
    /// throttle (`netconf::throttle`).
    logins_throttled: AtomicU64,
    /// NETCONF sessions refused by max-sessions / max-sessions-per-user.
    sessions_refused: AtomicU64,
    /// Subscriptions ended because their session could not keep up with
    /// its notifications (the client is sent `notificationComplete`).
    subscriptions_overflowed: AtomicU64,
    /// Sessions closed because even that notice could not be written
    /// within `notify::NOTICE_GRACE` (the client's SSH window stalled).
    subscribers_closed: AtomicU64,
    rpcs: Box<[AtomicU64]>,
    errors: Box<[AtomicU64]>,
    /// How long the northbound took over each `<commit>` (validation, the
    /// subsystems' prepare and apply, the startup write when asked).
    pub commit_duration: Histogram,
}

impl Default for NetconfStats {
    fn default() -> Self {
        let zeros = || OPERATIONS.iter().map(|_| AtomicU64::new(0)).collect();
        NetconfStats {
            sessions_open: AtomicU64::new(0),
            sessions_total: AtomicU64::new(0),
            login_failures: AtomicU64::new(0),
            logins_throttled: AtomicU64::new(0),
            sessions_refused: AtomicU64::new(0),
            subscriptions_overflowed: AtomicU64::new(0),
            subscribers_closed: AtomicU64::new(0),
            rpcs: zeros(),
            errors: zeros(),
            commit_duration: Histogram::default(),
        }
    }
}

impl NetconfStats {
    pub fn session_started(&self) {
        self.sessions_open.fetch_add(1, Ordering::Relaxed);
        self.sessions_total.fetch_add(1, Ordering::Relaxed);
    }

    pub fn session_ended(&self) {
        let _ = self
            .sessions_open
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// Sessions open now, and started since the daemon started.
    pub fn sessions(&self) -> (u64, u64) {
        (
            self.sessions_open.load(Ordering::Relaxed),
            self.sessions_total.load(Ordering::Relaxed),
        )
    }

    pub fn login_failed(&self) {
        self.login_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn login_throttled(&self) {
        self.logins_throttled.fetch_add(1, Ordering::Relaxed);
    }

    pub fn session_refused(&self) {
        self.sessions_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Failed logins, throttled login attempts, refused sessions.
    pub fn refusals(&self) -> (u64, u64, u64) {
        (
            self.login_failures.load(Ordering::Relaxed),
            self.logins_throttled.load(Ordering::Relaxed),
            self.sessions_refused.load(Ordering::Relaxed),
        )
    }

    /// A subscription ended for a full queue (`closed`: and its session
    /// was closed, the notice could not be written).
    pub fn subscription_overflowed(&self, closed: bool) {
        if closed {
            self.subscribers_closed.fetch_add(1, Ordering::Relaxed);
        } else {
            self.subscriptions_overflowed
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Subscriptions ended for a full queue with the client told, and
    /// sessions closed because it could not even be told.
    pub fn overflows(&self) -> (u64, u64) {
        (
            self.subscriptions_overflowed.load(Ordering::Relaxed),
            self.subscribers_closed.load(Ordering::Relaxed),
        )
    }

    /// One rpc named `operation` answered, with `<ok>`/data or with
    /// `<rpc-error>`.
    pub fn rpc(&self, operation: &str, failed: bool) {
        let i = OPERATIONS
            .iter()
            .position(|o| *o == operation)
            .unwrap_or(OPERATIONS.len() - 1);
        self.rpcs[i].fetch_add(1, Ordering::Relaxed);
        if failed {
            self.errors[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// (operation, rpcs, errors) for every operation counted.
    pub fn operations(&self) -> impl Iterator<Item = (&'static str, u64, u64)> + '_ {
        OPERATIONS.iter().enumerate().map(|(i, o)| {
            (
                *o,
                self.rpcs[i].load(Ordering::Relaxed),
                self.errors[i].load(Ordering::Relaxed),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpcs_counted_by_operation_and_unknown_ones_as_other() {
        let s = NetconfStats::default();
        s.rpc("get", false);
        s.rpc("get", true);
        s.rpc("frobnicate", true);
        let by: Vec<_> = s.operations().filter(|(_, n, _)| *n > 0).collect();
        assert_eq!(by, vec![("get", 2, 1), ("other", 1, 1)]);
        s.session_started();
        s.session_started();
        s.session_ended();
        assert_eq!(s.sessions(), (1, 2));
        s.session_ended();
        s.session_ended(); // never below zero
        assert_eq!(s.sessions(), (0, 2));
    }
}
