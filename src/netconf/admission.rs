//! Admission of SSH connections: the caps that keep a flood of connections
//! from taking every file descriptor of the daemon or locking out a login.
//!
//! Every accepted TCP connection asks [`Admission::admit`] before a byte is
//! sent. Three budgets apply, from the bootstrap `[netconf]` section:
//!
//! - `max-connections`: all connections;
//! - `max-per-source`: all connections from one address;
//! - `max-unauthenticated`: connections that have not logged in yet.
//!
//! When the whole or the unauthenticated budget is full, a newcomer takes
//! the slot of the oldest unauthenticated connection of the address that
//! holds the most unauthenticated connections, provided that address holds
//! more of them than the newcomer's own. An address flooding half-open
//! connections therefore only ever displaces its own, never a login in
//! progress from another address, and a login needs its slot only for the
//! handshake, not for the whole grace time. Logged-in connections are never
//! displaced. A displaced connection is counted until its task has closed
//! it, and at most `max-unauthenticated` of them may be closing at once: the
//! connections held never exceed `max-connections + max-unauthenticated`,
//! however fast newcomers arrive.
//!
//! Pure bookkeeping: the accept loop admits, the connection's handler
//! reports the login, the connection task releases its slot when it ends,
//! and a displaced connection is told through its cancellation token.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use tokio_util::sync::CancellationToken;

/// The connection budgets (bootstrap `[netconf]` section).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub max_per_source: usize,
    pub max_unauthenticated: usize,
}

/// Why a new connection was closed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("max-per-source reached")]
    Source,
    #[error("max-connections reached")]
    Connections,
    #[error("max-unauthenticated reached")]
    Unauthenticated,
}

/// A connection let in.
#[derive(Debug)]
pub struct Admitted {
    pub id: u64,
    /// Cancelled when the connection is displaced by a newcomer.
    pub kill: CancellationToken,
    /// The address whose unauthenticated connection made room, if any.
    pub displaced: Option<IpAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    Authenticated,
    /// Told to close; its descriptor is still open.
    Displaced,
}

#[derive(Debug)]
struct Conn {
    source: IpAddr,
    state: State,
    kill: CancellationToken,
}

/// The open connections, by id, source and login state.
#[derive(Debug)]
pub struct Admission {
    limits: Limits,
    next_id: u64,
    conns: HashMap<u64, Conn>,
    per_source: HashMap<IpAddr, usize>,
    /// Unauthenticated connections per source, oldest first.
    pending: HashMap<IpAddr, VecDeque<u64>>,
    pending_total: usize,
    /// Displaced connections not closed yet.
    closing: usize,
}

impl Admission {
    pub fn new(limits: Limits) -> Admission {
        Admission {
            limits,
            next_id: 0,
            conns: HashMap::new(),
            per_source: HashMap::new(),
            pending: HashMap::new(),
            pending_total: 0,
            closing: 0,
        }
    }

    /// Let a new connection from `source` in, displacing an unauthenticated
    /// one when a budget is full, or refuse it.
    pub fn admit(&mut self, source: IpAddr) -> Result<Admitted, Refused> {
        if self.per_source.get(&source).copied().unwrap_or(0) >= self.limits.max_per_source {
            return Err(Refused::Source);
        }
        let full = if self.conns.len() >= self.limits.max_connections {
            Some(Refused::Connections)
        } else if self.pending_total >= self.limits.max_unauthenticated {
            Some(Refused::Unauthenticated)
        } else {
            None
        };
        let mut displaced = None;
        if let Some(refused) = full {
            if self.closing >= self.limits.max_unauthenticated {
                return Err(refused);
            }
            let victim = self.victim(source).ok_or(refused)?;
            let conn = self.conns.get_mut(&victim).expect("victim is open");
            conn.state = State::Displaced;
            conn.kill.cancel();
            self.closing += 1;
            let victim_source = conn.source;
            self.unpend(victim_source, victim);
            displaced = Some(victim_source);
        }
        let id = self.next_id;
        self.next_id += 1;
        let kill = CancellationToken::new();
        self.conns.insert(
            id,
            Conn {
                source,
                state: State::Pending,
                kill: kill.clone(),
            },
        );
        *self.per_source.entry(source).or_default() += 1;
        self.pending.entry(source).or_default().push_back(id);
        self.pending_total += 1;
        Ok(Admitted {
            id,
            kill,
            displaced,
        })
    }

    /// The oldest pending connection of the source with the most pending
    /// connections, if that source holds more than `newcomer`'s.
    fn victim(&self, newcomer: IpAddr) -> Option<u64> {
        let own = self.pending.get(&newcomer).map_or(0, VecDeque::len);
        self.pending
            .values()
            .filter_map(|q| q.front().map(|&oldest| (q.len(), oldest)))
            // most pending first; among equals the oldest connection
            .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))
            .filter(|&(n, _)| n > own)
            .map(|(_, oldest)| oldest)
    }

    /// The connection logged in: it leaves the unauthenticated budget and
    /// can no longer be displaced. False when it was displaced meanwhile.
    pub fn authenticated(&mut self, id: u64) -> bool {
        let Some(conn) = self.conns.get_mut(&id) else {
            return false;
        };
        match conn.state {
            State::Authenticated => true,
            State::Displaced => false,
            State::Pending => {
                conn.state = State::Authenticated;
                let source = conn.source;
                self.unpend(source, id);
                true
            }
        }
    }

    /// Whether the connection has logged in.
    pub fn is_authenticated(&self, id: u64) -> bool {
        self.conns
            .get(&id)
            .is_some_and(|c| c.state == State::Authenticated)
    }

    /// The connection ended and its descriptor is closed.
    pub fn release(&mut self, id: u64) {
        let Some(conn) = self.conns.remove(&id) else {
            return;
        };
        if let Some(n) = self.per_source.get_mut(&conn.source) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&conn.source);
            }
        }
        match conn.state {
            State::Pending => self.unpend(conn.source, id),
            State::Displaced => self.closing -= 1,
            State::Authenticated => {}
        }
    }

    fn unpend(&mut self, source: IpAddr, id: u64) {
        if let Some(q) = self.pending.get_mut(&source) {
            if let Some(i) = q.iter().position(|&p| p == id) {
                q.remove(i);
                self.pending_total -= 1;
            }
            if q.is_empty() {
                self.pending.remove(&source);
            }
        }
    }

    /// Open connections, and how many of them have not logged in.
    pub fn counts(&self) -> (usize, usize) {
        (self.conns.len(), self.pending_total)
    }
}

/// The NETCONF session budgets (`max-sessions`, `max-sessions-per-user`):
/// a login is not a licence to hold unbounded sessions, each with its
/// buffers and its place in the northbound.
#[derive(Debug)]
pub struct Sessions {
    max: usize,
    max_per_user: usize,
    total: usize,
    per_user: HashMap<String, usize>,
}

/// Why a NETCONF session was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionRefused {
    #[error("max-sessions reached")]
    Total,
    #[error("max-sessions-per-user reached")]
    User,
}

impl Sessions {
    pub fn new(max: usize, max_per_user: usize) -> Sessions {
        Sessions {
            max,
            max_per_user,
            total: 0,
            per_user: HashMap::new(),
        }
    }

    /// Take a session for `user`, or say which budget is full.
    pub fn open(&mut self, user: &str) -> Result<(), SessionRefused> {
        if self.total >= self.max {
            return Err(SessionRefused::Total);
        }
        let n = self.per_user.entry(user.to_string()).or_default();
        if *n >= self.max_per_user {
            return Err(SessionRefused::User);
        }
        *n += 1;
        self.total += 1;
        Ok(())
    }

    /// A session of `user` ended.
    pub fn close(&mut self, user: &str) {
        if let Some(n) = self.per_user.get_mut(user) {
            *n -= 1;
            self.total -= 1;
            if *n == 0 {
                self.per_user.remove(user);
            }
        }
    }
}

/// Lets a repeated log line through at most once per `every`, counting the
/// ones held back so that the next line can say how many there were.
#[derive(Debug)]
pub struct LogLimiter {
    every: std::time::Duration,
    last: Option<std::time::Instant>,
    suppressed: u64,
}

impl LogLimiter {
    pub fn new(every: std::time::Duration) -> LogLimiter {
        LogLimiter {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(held back since the last line)` when a line may be logged now.
    pub fn allow(&mut self, now: std::time::Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.duration_since(t) < self.every => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    fn limits(all: usize, per_source: usize, unauth: usize) -> Admission {
        Admission::new(Limits {
            max_connections: all,
            max_per_source: per_source,
            max_unauthenticated: unauth,
        })
    }

    #[test]
    fn per_source_cap_refuses_and_frees() {
        let mut a = limits(10, 2, 10);
        let c1 = a.admit(ip(1)).unwrap();
        let _c2 = a.admit(ip(1)).unwrap();
        assert_eq!(a.admit(ip(1)).unwrap_err(), Refused::Source);
        // logged-in connections count too
        assert!(a.authenticated(c1.id));
        assert_eq!(a.admit(ip(1)).unwrap_err(), Refused::Source);
        assert!(a.admit(ip(2)).is_ok());
        a.release(c1.id);
        assert!(a.admit(ip(1)).is_ok());
    }

    #[test]
    fn a_flood_from_one_address_never_displaces_another() {
        let mut a = limits(100, 50, 4);
        let flood: Vec<_> = (0..4).map(|_| a.admit(ip(1)).unwrap()).collect();
        // the flooding address is the heaviest: its newcomers are refused
        assert_eq!(a.admit(ip(1)).unwrap_err(), Refused::Unauthenticated);
        // a login from elsewhere displaces the flood's oldest connection
        let login = a.admit(ip(2)).unwrap();
        assert_eq!(login.displaced, Some(ip(1)));
        assert!(flood[0].kill.is_cancelled());
        assert!(!flood[1].kill.is_cancelled());
        // the displaced one is open until its task closes it
        assert_eq!(a.counts(), (5, 4));
        // the flood goes on: refused, the login in progress stays
        for _ in 0..10 {
            assert_eq!(a.admit(ip(1)).unwrap_err(), Refused::Unauthenticated);
        }
        assert!(!login.kill.is_cancelled());
        assert!(a.authenticated(login.id));
        assert!(a.is_authenticated(login.id));
        // a displaced connection cannot log in any more
        assert!(!a.authenticated(flood[0].id));
        a.release(flood[0].id);
        assert_eq!(a.counts(), (4, 3));
        a.release(flood[0].id);
        assert_eq!(a.counts(), (4, 3));
    }

    #[test]
    fn logged_in_connections_are_never_displaced() {
        let mut a = limits(3, 3, 3);
        let ids: Vec<_> = (0..3).map(|_| a.admit(ip(1)).unwrap().id).collect();
        for id in &ids {
            assert!(a.authenticated(*id));
        }
        assert_eq!(a.admit(ip(2)).unwrap_err(), Refused::Connections);
        a.release(ids[0]);
        // the whole budget full with two logged in and one pending: a
        // newcomer from another address takes the pending one's place
        let pending = a.admit(ip(2)).unwrap();
        let other = a.admit(ip(3)).unwrap();
        assert_eq!(other.displaced, Some(ip(2)));
        assert!(pending.kill.is_cancelled());
        // an address never displaces its own to make room for itself
        assert_eq!(a.admit(ip(3)).unwrap_err(), Refused::Connections);
        assert!(!other.kill.is_cancelled());
        a.release(pending.id);
        assert_eq!(a.counts(), (3, 1));
    }

    #[test]
    fn connections_being_closed_are_bounded() {
        let mut a = limits(100, 100, 2);
        let mut all = vec![a.admit(ip(1)).unwrap(), a.admit(ip(1)).unwrap()];
        // newcomers from fresh addresses displace, until two are closing
        all.push(a.admit(ip(2)).unwrap());
        all.push(a.admit(ip(3)).unwrap());
        assert!(all[0].kill.is_cancelled() && all[1].kill.is_cancelled());
        assert_eq!(a.counts(), (4, 2));
        assert_eq!(a.admit(ip(4)).unwrap_err(), Refused::Unauthenticated);
        // one closed: room to displace one more
        a.release(all[0].id);
        let next = a.admit(ip(4)).unwrap();
        assert_eq!(next.displaced, Some(ip(2)));
        assert_eq!(a.admit(ip(5)).unwrap_err(), Refused::Unauthenticated);
    }

    #[test]
    fn among_equal_sources_the_oldest_goes() {
        let mut a = limits(10, 10, 3);
        let first = a.admit(ip(1)).unwrap();
        let second = a.admit(ip(2)).unwrap();
        let third = a.admit(ip(3)).unwrap();
        let newcomer = a.admit(ip(4)).unwrap();
        assert!(first.kill.is_cancelled());
        assert!(!second.kill.is_cancelled() && !third.kill.is_cancelled());
        assert_eq!(newcomer.displaced, Some(ip(1)));
    }

    #[test]
    fn session_budgets_per_user_and_in_total() {
        let mut s = Sessions::new(3, 2);
        assert_eq!(s.open("a"), Ok(()));
        assert_eq!(s.open("a"), Ok(()));
        assert_eq!(s.open("a"), Err(SessionRefused::User));
        assert_eq!(s.open("b"), Ok(()));
        assert_eq!(s.open("c"), Err(SessionRefused::Total));
        s.close("a");
        assert_eq!(s.open("c"), Ok(()));
        assert_eq!(s.open("a"), Err(SessionRefused::Total));
        s.close("b");
        s.close("nobody");
        assert_eq!(s.open("a"), Ok(()));
        s.close("c");
        assert_eq!(s.open("a"), Err(SessionRefused::User));
        assert_eq!(s.open("b"), Ok(()));
    }

    #[test]
    fn log_limiter_counts_what_it_holds_back() {
        let mut l = LogLimiter::new(Duration::from_secs(1));
        let t = Instant::now();
        assert_eq!(l.allow(t), Some(0));
        assert_eq!(l.allow(t + Duration::from_millis(50)), None);
        assert_eq!(l.allow(t + Duration::from_millis(900)), None);
        assert_eq!(l.allow(t + Duration::from_millis(1000)), Some(2));
        assert_eq!(l.allow(t + Duration::from_millis(1001)), None);
    }
}
