//! Failed-login throttling per source address (OpenSSH's PerSourcePenalties,
//! fail2ban without the firewall).
//!
//! The first `login-throttle-after` failed logins from an address cost
//! nothing more than russh's constant rejection time. After that, every
//! login attempt from the address is given a turn: turns are spaced by a
//! delay that doubles with each further failure, from [`BASE_DELAY`] up to
//! `login-delay-max`. The spacing is per address, not per connection, so a
//! brute force spread over many parallel connections is held to one attempt
//! per delay all the same. An attempt whose turn lies further ahead than
//! the login grace time is refused at once, unchecked: it would be cut by
//! the grace time anyway, and a queue of turns never grows without bound.
//!
//! A login from another address never waits: nothing here is shared
//! between addresses. A success from an address forgets its failures, and
//! so does [`FORGET_AFTER`] without a failure. IPv6 addresses count by /64,
//! the block one host is usually given. The table holds at most
//! [`MAX_SOURCES`] addresses; when full, the one that failed longest ago
//! is forgotten first.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The first delay once an address is throttled.
pub const BASE_DELAY: Duration = Duration::from_millis(500);
/// Failures older than this are forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Addresses remembered at most (a few hundred kilobytes).
pub const MAX_SOURCES: usize = 10_000;

/// What to do with a login attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// Check the credentials after waiting this long (zero: not throttled).
    After(Duration),
    /// Refuse without checking: the address's turns are taken for longer
    /// than the attempt may wait.
    Refuse,
}

#[derive(Debug)]
struct Record {
    failures: u32,
    /// The earliest next turn of the address.
    next: Instant,
    last_failure: Instant,
}

/// Failed logins per address, and the turns of throttled addresses.
#[derive(Debug)]
pub struct Throttle {
    after: u32,
    max_delay: Duration,
    horizon: Duration,
    sources: HashMap<IpAddr, Record>,
}

/// The key an address counts under: itself, or its /64 for IPv6.
fn key(source: IpAddr) -> IpAddr {
    match source {
        IpAddr::V4(_) => source,
        IpAddr::V6(a) => IpAddr::V6((u128::from(a) & !((1u128 << 64) - 1)).into()),
    }
}

impl Throttle {
    /// `after` free failures, delays up to `max_delay`, an attempt waits
    /// at most `horizon` (the login grace time).
    pub fn new(after: u32, max_delay: Duration, horizon: Duration) -> Throttle {
        Throttle {
            after,
            max_delay,
            horizon,
            sources: HashMap::new(),
        }
    }

    fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(self.after).min(30);
        BASE_DELAY
            .saturating_mul(1 << doublings)
            .min(self.max_delay)
    }

    /// Take a turn for an attempt from `source` arriving `now`.
    pub fn turn(&mut self, source: IpAddr, now: Instant) -> Turn {
        let k = key(source);
        let Some(rec) = self.sources.get(&k) else {
            return Turn::After(Duration::ZERO);
        };
        if now.duration_since(rec.last_failure) >= FORGET_AFTER {
            self.sources.remove(&k);
            return Turn::After(Duration::ZERO);
        }
        if rec.failures < self.after {
            return Turn::After(Duration::ZERO);
        }
        let delay = self.delay(rec.failures);
        let rec = self.sources.get_mut(&k).expect("looked up above");
        let slot = rec.next.max(now);
        let wait = slot - now;
        if wait > self.horizon {
            return Turn::Refuse;
        }
        rec.next = slot + delay;
        Turn::After(wait)
    }

    /// A login from `source` failed; returns its failures so far.
    pub fn failed(&mut self, source: IpAddr, now: Instant) -> u32 {
        let k = key(source);
        if !self.sources.contains_key(&k) && self.sources.len() >= MAX_SOURCES {
            self.sources
                .retain(|_, r| now.duration_since(r.last_failure) < FORGET_AFTER);
            if self.sources.len() >= MAX_SOURCES {
                let oldest = self
                    .sources
                    .iter()
                    .min_by_key(|(_, r)| r.last_failure)
                    .map(|(a, _)| *a);
                if let Some(a) = oldest {
                    self.sources.remove(&a);
                }
            }
        }
        let rec = self.sources.entry(k).or_insert(Record {
            failures: 0,
            next: now,
            last_failure: now,
        });
        rec.failures = rec.failures.saturating_add(1);
        rec.last_failure = now;
        rec.failures
    }

    /// A login from `source` succeeded: its failures are forgotten.
    pub fn succeeded(&mut self, source: IpAddr) {
        self.sources.remove(&key(source));
    }

    /// Addresses remembered.
    pub fn remembered(&self) -> usize {
        self.sources.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    const NOW: Duration = Duration::ZERO;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn free_failures_then_doubling_turns_up_to_the_cap() {
        let t0 = Instant::now();
        let mut t = Throttle::new(3, Duration::from_secs(4), Duration::from_secs(30));
        for _ in 0..3 {
            assert_eq!(t.turn(ip(1), t0), Turn::After(NOW));
            t.failed(ip(1), t0);
        }
        // throttled: the first turn is now, the next one a delay later
        assert_eq!(t.turn(ip(1), t0), Turn::After(NOW));
        assert_eq!(t.turn(ip(1), t0), Turn::After(ms(500)));
        // parallel attempts queue one delay apart, whatever the connection
        assert_eq!(t.turn(ip(1), t0), Turn::After(ms(1000)));
        for _ in 0..3 {
            t.failed(ip(1), t0);
        }
        // 6 failures: 500 ms doubled three times is 4 s, the cap
        assert_eq!(t.turn(ip(1), t0), Turn::After(ms(1500)));
        assert_eq!(t.turn(ip(1), t0), Turn::After(ms(5500)));
        for _ in 0..20 {
            t.failed(ip(1), t0);
        }
        assert_eq!(t.turn(ip(1), t0), Turn::After(ms(9500)));
        assert_eq!(t.turn(ip(1), t0), Turn::After(ms(13500)));
        // another address never waits
        assert_eq!(t.turn(ip(2), t0), Turn::After(NOW));
        // a success forgets the address
        t.succeeded(ip(1));
        assert_eq!(t.turn(ip(1), t0), Turn::After(NOW));
    }

    #[test]
    fn turns_beyond_the_horizon_are_refused_and_not_queued() {
        let t0 = Instant::now();
        let mut t = Throttle::new(0, Duration::from_secs(10), Duration::from_secs(15));
        t.failed(ip(1), t0);
        t.failed(ip(1), t0);
        // 2 failures, no free ones: 2 s apart
        let waits: Vec<_> = (0..10).map(|_| t.turn(ip(1), t0)).collect();
        assert_eq!(waits[7], Turn::After(Duration::from_secs(14)));
        assert_eq!(waits[8], Turn::Refuse);
        assert_eq!(waits[9], Turn::Refuse);
        // time passes: turns come again
        let later = t0 + Duration::from_secs(20);
        assert_eq!(t.turn(ip(1), later), Turn::After(NOW));
        // and are forgotten after FORGET_AFTER without a failure
        let much_later = t0 + FORGET_AFTER;
        assert_eq!(t.turn(ip(1), much_later), Turn::After(NOW));
        assert_eq!(t.remembered(), 0);
    }

    #[test]
    fn ipv6_counts_by_64_and_the_table_is_bounded() {
        let t0 = Instant::now();
        let mut t = Throttle::new(1, Duration::from_secs(1), Duration::from_secs(30));
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        t.failed(a, t0);
        assert_eq!(t.failed(b, t0), 2);
        assert_eq!(t.turn(b, t0), Turn::After(NOW));
        assert_eq!(t.turn(a, t0), Turn::After(ms(1000)));
        assert_eq!(t.turn(other, t0), Turn::After(NOW));
        for i in 0..MAX_SOURCES as u32 + 5 {
            let ip = IpAddr::from((0x0a00_0000u32 + i).to_be_bytes());
            t.failed(ip, t0 + Duration::from_millis(u64::from(i)));
        }
        assert_eq!(t.remembered(), MAX_SOURCES);
    }
}
