//! What the DHCP server did and did not do, in the log, for the operator
//! who wonders why a client got no address: every request dropped without
//! a reply gets a line naming where (the pool, or the interface when no
//! pool was chosen yet) and why, rate-limited per place and reason so that
//! a flood of requests costs a line a minute, not a line a packet; every
//! lease granted, renewed, released, declined or expired gets a debug line;
//! and a minute with any of these gets one info summary with the counts.
//!
//! The counters in `<get>` (`server::Counters`) say how many; these lines
//! say which pool, which client and why. The actor owns this state (no
//! lock); decisions take the time as an argument so they are tested
//! without a clock.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::leases::{EventKind, LeaseEvent};

/// One line per place and reason at most this often; the next line says
/// how many were dropped in between.
pub const LOG_EVERY: Duration = Duration::from_secs(60);

/// The summary period.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// Why a request got no reply. The names are those of the `<get>`
/// counters where one exists (`dropped-<reason>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    /// Not a decodable BOOTREQUEST with a message type.
    Malformed,
    /// Received on an interface the server does not serve.
    Interface,
    /// No pool's subnet holds the relay address or an address of the
    /// receiving interface.
    NoPool,
    /// The pool is bound to a remote-backup-profile that is not master:
    /// its partner serves.
    NotServing,
    /// No address left in the pool.
    Exhausted,
    /// A message type a server does not answer (an OFFER, an ACK, ...).
    Unexpected,
    /// Addressed to another DHCP server (its server identifier).
    OtherServer,
    /// Nothing to answer, as RFC 2131 wants: no record of the client or
    /// its address (INIT-REBOOT), a NAK a non-authoritative server does
    /// not send, a RELEASE or DECLINE of an address that is not the
    /// client's.
    Ignored,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::Interface => "interface",
            DropReason::NoPool => "no-pool",
            DropReason::NotServing => "not-serving",
            DropReason::Exhausted => "exhausted",
            DropReason::Unexpected => "unexpected-type",
            DropReason::OtherServer => "other-server",
            DropReason::Ignored => "ignored",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a request was dropped: its pool, or the interface it came in on
/// when it was dropped before a pool was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Place<'a> {
    Pool(&'a str),
    Interface(&'a str),
}

/// A hardware address as `aa:bb:cc:dd:ee:ff`.
#[derive(Debug)]
pub struct Hw<'a>(pub &'a [u8]);

impl fmt::Display for Hw<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// The counts of one summary period.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub granted: u64,
    pub renewed: u64,
    pub released: u64,
    pub declined: u64,
    pub expired: u64,
    pub dropped: BTreeMap<DropReason, u64>,
}

impl Summary {
    fn is_empty(&self) -> bool {
        *self == Summary::default()
    }

    /// "not-serving=12 no-pool=1", or "none".
    fn drops(&self) -> String {
        if self.dropped.is_empty() {
            return "none".into();
        }
        let parts: Vec<String> = self
            .dropped
            .iter()
            .map(|(r, n)| format!("{r}={n}"))
            .collect();
        parts.join(" ")
    }
}

/// When a place and reason last got a line, and the drops since.
#[derive(Debug)]
struct Limit {
    logged: Instant,
    since: u64,
}

/// The log lines' state, owned by the DHCP actor.
#[derive(Debug)]
pub struct Activity {
    /// Per reason and kind of place (pool: `true`), per pool or interface
    /// name: looked up by `&str`, so that a drop that is not logged (most
    /// of a flood) allocates nothing.
    limits: HashMap<(DropReason, bool), HashMap<String, Limit>>,
    period: Summary,
    period_start: Instant,
}

impl Activity {
    pub fn new(now: Instant) -> Activity {
        Activity {
            limits: HashMap::new(),
            period: Summary::default(),
            period_start: now,
        }
    }

    /// A request dropped at `place` for `reason`; `why` says more (which
    /// profile is not master, which server the client chose), `client`
    /// gives its hardware address when it was decoded (both are only
    /// rendered for a line). Logs unless `place` and `reason` were logged
    /// less than `LOG_EVERY` ago; returns whether it did, with the drops
    /// that were not logged since the last line.
    pub fn dropped(
        &mut self,
        now: Instant,
        place: Place<'_>,
        reason: DropReason,
        why: &dyn fmt::Display,
        client: impl FnOnce() -> Option<Vec<u8>>,
    ) -> Option<u64> {
        *self.period.dropped.entry(reason).or_default() += 1;
        let (name, is_pool) = match place {
            Place::Pool(p) => (p, true),
            Place::Interface(i) => (i, false),
        };
        let names = self.limits.entry((reason, is_pool)).or_default();
        let unlogged = match names.get_mut(name) {
            Some(l) if now.duration_since(l.logged) < LOG_EVERY => {
                l.since += 1;
                return None;
            }
            Some(l) => {
                l.logged = now;
                std::mem::take(&mut l.since)
            }
            None => {
                let first = Limit {
                    logged: now,
                    since: 0,
                };
                names.insert(name.to_string(), first);
                0
            }
        };
        let (pool, iface) = if is_pool {
            (Some(name), None)
        } else {
            (None, Some(name))
        };
        let hw = client();
        let client = hw.as_deref().map(Hw);
        macro_rules! line {
            ($level:ident) => {
                $level!(
                    pool = pool.map(tracing::field::display),
                    interface = iface.map(tracing::field::display),
                    %reason,
                    why = why.to_string(),
                    client = client.as_ref().map(tracing::field::display),
                    dropped_since_last_line = unlogged,
                    "dhcp request dropped"
                )
            };
        }
        match reason {
            DropReason::Malformed | DropReason::NoPool | DropReason::Exhausted => line!(warn),
            DropReason::Interface | DropReason::NotServing | DropReason::Unexpected => line!(info),
            // every client of another server on the segment, and what
            // RFC 2131 says to ignore: normal
            DropReason::OtherServer | DropReason::Ignored => line!(debug),
        }
        Some(unlogged)
    }

    /// The counts of the period so far.
    pub fn period(&self) -> &Summary {
        &self.period
    }

    /// A drop logged elsewhere, counted for the summary only.
    pub fn count(&mut self, reason: DropReason) {
        *self.period.dropped.entry(reason).or_default() += 1;
    }

    /// A lease changed by a client's request or by expiry: a debug line,
    /// and counted for the summary.
    pub fn lease(&mut self, ev: &LeaseEvent) {
        let l = &ev.lease;
        let (what, count) = match ev.kind {
            EventKind::Bound => ("lease granted", &mut self.period.granted),
            EventKind::Renewed => ("lease renewed", &mut self.period.renewed),
            EventKind::Released => ("lease released", &mut self.period.released),
            EventKind::Declined => ("lease declined", &mut self.period.declined),
            EventKind::Expired => ("lease expired", &mut self.period.expired),
            // by configuration: the commit says so
            EventKind::Removed => return,
        };
        *count += 1;
        debug!(
            pool = %l.pool,
            ip = %l.ip,
            client = %Hw(&l.hw),
            hostname = l.hostname.as_deref(),
            lifetime = l.lifetime,
            "{what}"
        );
    }

    /// Called on the actor's tick: once per `SUMMARY_EVERY`, the summary
    /// of the period when anything happened (an idle server stays quiet).
    /// Returns the summary logged.
    pub fn tick(&mut self, now: Instant) -> Option<Summary> {
        if now.duration_since(self.period_start) < SUMMARY_EVERY {
            return None;
        }
        self.period_start = now;
        // places whose line is old and that dropped nothing since start
        // afresh (memory stays bounded by the places dropping now)
        for names in self.limits.values_mut() {
            names.retain(|_, l| now.duration_since(l.logged) < LOG_EVERY || l.since > 0);
        }
        let s = std::mem::take(&mut self.period);
        if s.is_empty() {
            return None;
        }
        info!(
            granted = s.granted,
            renewed = s.renewed,
            released = s.released,
            declined = s.declined,
            expired = s.expired,
            dropped = %s.drops(),
            "dhcp activity in the last minute"
        );
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dhcp::leases::{Lease, LeaseState, Origin};

    fn pool(p: &str) -> Place<'_> {
        Place::Pool(p)
    }

    fn none() -> Option<Vec<u8>> {
        None
    }

    #[test]
    fn a_drop_is_logged_once_per_place_and_reason_per_period() {
        let t0 = Instant::now();
        let mut a = Activity::new(t0);
        let why = "profile rbp1 is not master";
        let not_serving = DropReason::NotServing;
        let hw = || Some(vec![2, 0, 0, 0, 0, 1]);
        assert_eq!(a.dropped(t0, pool("p1"), not_serving, &why, hw), Some(0));
        let soon = t0 + Duration::from_secs(1);
        for _ in 0..5 {
            assert_eq!(a.dropped(soon, pool("p1"), not_serving, &why, none), None);
        }
        // another pool, another reason, an interface: lines of their own
        assert!(a.dropped(t0, pool("p2"), not_serving, &why, none).is_some());
        assert!(a
            .dropped(t0, pool("p1"), DropReason::Ignored, &"", none)
            .is_some());
        let lan = Place::Interface("lan");
        assert!(a.dropped(t0, lan, DropReason::NoPool, &"", none).is_some());
        // after the period: a line again, with what was not logged
        let later = t0 + LOG_EVERY;
        assert_eq!(
            a.dropped(later, pool("p1"), not_serving, &why, none),
            Some(5)
        );
        assert_eq!(a.dropped(later, pool("p1"), not_serving, &why, none), None);
    }

    fn event(kind: EventKind) -> LeaseEvent {
        LeaseEvent {
            kind,
            lease: Lease {
                ip: "10.0.0.5".parse().unwrap(),
                pool: "p1".into(),
                hw: vec![2, 0, 0, 0, 0, 1],
                client_id: None,
                hostname: None,
                state: LeaseState::Bound,
                lifetime: 3600,
                expires: 0,
                origin: Origin::Local,
            },
        }
    }

    #[test]
    fn a_minute_with_activity_gets_a_summary_an_idle_one_none() {
        let t0 = Instant::now();
        let mut a = Activity::new(t0);
        a.lease(&event(EventKind::Bound));
        a.lease(&event(EventKind::Bound));
        a.lease(&event(EventKind::Released));
        a.lease(&event(EventKind::Removed));
        a.dropped(t0, pool("p1"), DropReason::NotServing, &"", none);
        a.dropped(t0, pool("p1"), DropReason::NotServing, &"", none);
        assert_eq!(
            a.tick(t0 + Duration::from_secs(59)),
            None,
            "not a minute yet"
        );
        let s = a.tick(t0 + SUMMARY_EVERY).expect("a summary");
        assert_eq!((s.granted, s.released, s.renewed, s.expired), (2, 1, 0, 0));
        assert_eq!(s.dropped, BTreeMap::from([(DropReason::NotServing, 2)]));
        assert_eq!(s.drops(), "not-serving=2");
        // a quiet minute says nothing
        assert_eq!(a.tick(t0 + SUMMARY_EVERY * 2), None);
        a.lease(&event(EventKind::Expired));
        assert_eq!(a.tick(t0 + SUMMARY_EVERY * 3).map(|s| s.expired), Some(1));
    }

    #[test]
    fn hardware_addresses_print_as_colon_hex() {
        assert_eq!(Hw(&[2, 0, 0xab, 0, 0, 1]).to_string(), "02:00:ab:00:00:01");
    }
}
