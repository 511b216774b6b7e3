//! The lease clock: the unix time every lease expiry is read and written
//! against (the table, the lease log, `<get>`, the backup wire).
//!
//! Lease expiries are absolute unix seconds, so a step of the wall clock
//! (an operator's `date -s`, an NTP step, a bad RTC corrected late) would
//! move every lease at once: +1 h expires every lease granted in the last
//! hour and frees their addresses for other clients; -1 h keeps what ran
//! out and makes every lease granted meanwhile expire an hour early once
//! the clock is back. The lease clock reads the wall clock once, at the
//! first use (the daemon's start), and from then on advances with
//! `CLOCK_MONOTONIC` (std's [`Instant`]), which a step of the wall clock
//! does not move while NTP's frequency correction still applies to it: a
//! lease granted for an hour runs out an hour later whatever happens to
//! the wall clock meanwhile.
//!
//! [`watch`] (called on the DHCP actor's tick) compares the two clocks and
//! logs each step it sees (the difference moving by more than
//! [`STEP_LIMIT`]) once, and once more when the wall clock is back.
//!
//! The lease clock differs from the wall clock after a step until the
//! daemon restarts. Each step is also written to the lease log (a `C`
//! record, `dhcp::leases`): the next start, whose lease clock is the wall
//! clock again, moves every stored lease by the step, so a step that was
//! a correction (the wall clock was wrong when the daemon started) moves
//! no lease across the restart either. A suspended machine's monotonic
//! clock stops: after a resume the lease clock is behind (leases last
//! longer, never shorter).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tracing::{info, warn};

/// A difference between the wall clock and the lease clock that moves by
/// more than this is a step (NTP slews smaller differences, and slews
/// both clocks alike).
pub const STEP_LIMIT: Duration = Duration::from_secs(2);

/// The wall clock read at one moment, and the monotonic clock with it.
#[derive(Debug)]
pub struct LeaseClock {
    wall0: Duration,
    mono0: Instant,
    /// Wall minus lease clock (ms) at the last step reported.
    reported_ms: AtomicI64,
}

/// A step of the wall clock seen by [`LeaseClock::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// How far the wall clock moved (ms, + forward) since the last step.
    pub by_ms: i64,
    /// Wall clock minus lease clock now (ms).
    pub offset_ms: i64,
}

impl Step {
    /// [`Step::offset_ms`] in whole seconds (rounded).
    pub fn offset_secs(&self) -> i64 {
        round_secs(self.offset_ms)
    }
}

fn round_secs(ms: i64) -> i64 {
    (ms + ms.signum() * 500) / 1000
}

fn since_epoch(t: SystemTime) -> Duration {
    t.duration_since(UNIX_EPOCH).unwrap_or_default()
}

fn signed_ms(a: Duration, b: Duration) -> i64 {
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    if a >= b {
        ms(a - b)
    } else {
        -ms(b - a)
    }
}

impl LeaseClock {
    /// A clock that reads `wall` (since the epoch) at `mono`.
    pub fn starting_at(wall: Duration, mono: Instant) -> LeaseClock {
        LeaseClock {
            wall0: wall,
            mono0: mono,
            reported_ms: AtomicI64::new(0),
        }
    }

    /// The lease clock at `mono` (since the epoch).
    pub fn at(&self, mono: Instant) -> Duration {
        self.wall0 + mono.saturating_duration_since(self.mono0)
    }

    /// Unix seconds now.
    pub fn unix(&self) -> u64 {
        self.at(Instant::now()).as_secs()
    }

    /// Wall clock minus lease clock (ms), the wall clock reading `wall` at
    /// `mono`.
    pub fn offset_ms(&self, wall: Duration, mono: Instant) -> i64 {
        signed_ms(wall, self.at(mono))
    }

    /// The step the wall clock (reading `wall` at `mono`) made since the
    /// last one reported, if it moved by more than [`STEP_LIMIT`]; each
    /// step is reported once.
    pub fn check(&self, wall: Duration, mono: Instant) -> Option<Step> {
        let offset_ms = self.offset_ms(wall, mono);
        let last = self.reported_ms.load(Ordering::Relaxed);
        let by_ms = offset_ms.saturating_sub(last);
        if by_ms.unsigned_abs() <= STEP_LIMIT.as_millis() as u64 {
            return None;
        }
        self.reported_ms.store(offset_ms, Ordering::Relaxed);
        Some(Step { by_ms, offset_ms })
    }
}

static CLOCK: OnceLock<LeaseClock> = OnceLock::new();

/// The process's lease clock, anchored at its first use.
pub fn lease_clock() -> &'static LeaseClock {
    CLOCK.get_or_init(|| LeaseClock::starting_at(since_epoch(SystemTime::now()), Instant::now()))
}

/// Unix seconds on the lease clock.
pub fn now_unix() -> u64 {
    lease_clock().unix()
}

/// The wall clock minus the lease clock now, in whole seconds (rounded):
/// the `wall-clock-offset` of the state.
pub fn wall_offset_secs() -> i64 {
    round_secs(lease_clock().offset_ms(since_epoch(SystemTime::now()), Instant::now()))
}

/// Log a step of the wall clock, once per step (the DHCP actor's tick).
/// Returns it for the caller's tests.
pub fn watch() -> Option<Step> {
    let c = lease_clock();
    let step = c.check(since_epoch(SystemTime::now()), Instant::now())?;
    let by_s = step.by_ms as f64 / 1000.0;
    let offset_s = step.offset_ms as f64 / 1000.0;
    if step.offset_ms.unsigned_abs() <= STEP_LIMIT.as_millis() as u64 {
        info!(
            step_s = by_s,
            offset_s, "the wall clock stepped back in line with the lease clock"
        );
    } else {
        warn!(
            step_s = by_s,
            offset_s,
            "the wall clock stepped: lease times keep following the monotonic clock \
             (no lease runs out early or late); lease clock and wall clock differ \
             until the daemon restarts"
        );
    }
    Some(step)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Duration = Duration::from_secs(1_800_000_000);

    #[test]
    fn the_lease_clock_advances_with_the_monotonic_clock_only() {
        let m0 = Instant::now();
        let c = LeaseClock::starting_at(T0, m0);
        assert_eq!(c.at(m0), T0);
        let m1 = m0 + Duration::from_secs(90);
        assert_eq!(c.at(m1), T0 + Duration::from_secs(90));
        // a lease granted at m0 for 100 s: still valid at m1, whatever the
        // wall clock says there (an hour ahead or behind)
        let expires = T0.as_secs() + 100;
        assert!(c.at(m1).as_secs() < expires);
        assert_eq!(
            c.offset_ms(T0 + Duration::from_secs(90 + 3600), m1),
            3_600_000
        );
        assert_eq!(
            c.offset_ms(T0 + Duration::from_secs(90) - Duration::from_secs(3600), m1),
            -3_600_000
        );
    }

    #[test]
    fn each_step_of_the_wall_clock_is_reported_once() {
        let m0 = Instant::now();
        let c = LeaseClock::starting_at(T0, m0);
        let s = Duration::from_secs;
        // drift within the limit: no step
        assert_eq!(
            c.check(T0 + s(10) + Duration::from_millis(1500), m0 + s(10)),
            None
        );
        // +1 h
        let st = c.check(T0 + s(20 + 3600), m0 + s(20)).unwrap();
        assert_eq!(
            st,
            Step {
                by_ms: 3_600_000,
                offset_ms: 3_600_000
            }
        );
        assert_eq!(c.check(T0 + s(21 + 3600), m0 + s(21)), None);
        // and back
        let st = c.check(T0 + s(40), m0 + s(40)).unwrap();
        assert_eq!(
            st,
            Step {
                by_ms: -3_600_000,
                offset_ms: 0
            }
        );
        assert_eq!(c.check(T0 + s(41), m0 + s(41)), None);
        // -1 h
        let st = c.check(T0 + s(50) - s(3600), m0 + s(50)).unwrap();
        assert_eq!(st.by_ms, -3_600_000);
    }

    #[test]
    fn the_process_clock_is_unix_time_at_start() {
        let wall = since_epoch(SystemTime::now()).as_secs();
        assert!(now_unix().abs_diff(wall) <= STEP_LIMIT.as_secs() + 1);
    }
}
