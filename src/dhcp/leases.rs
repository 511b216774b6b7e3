//! The lease table (in memory, owned by the DHCP actor) and the lease store
//! (on disk in the storage dir).
//!
//! The table indexes leases by address and by client (option 61, else the
//! hardware address) and keeps the short-lived offers apart: an offer is
//! only a hold on an address, never persisted. The hot-backup partner's
//! leases are merged in by [`LeaseTable::merge_peer`]: newest wins, in a
//! total order of versions both routers share ([`cmp_versions`]), so that
//! they end with the same binding of every address. With a split
//! ([`PoolRt::split`]) allocation takes its own half of a pool first.
//!
//! The store is an append-only log of checksummed lines (`leases.log`)
//! compacted by rewrite + rename.
//!
//! Format: one record per line, `CRC BODY\n` (CRC-32 of BODY in hex). A
//! body is a lease change (`U ip pool hw client-id hostname state lifetime
//! expires origin`, `D ip`) or, since hot backup (issue 10), a marker that
//! numbers what follows: `B lsn` opens sync batch `lsn` (its changes follow
//! it, up to the next marker), `S lsn` opens a compaction snapshot (the
//! live leases as of batch `lsn`; only ever first in the log). `C offset`
//! (since the lease clock, `dhcp::clock`): the wall clock stepped while
//! the daemon ran, and the log's lease times are `offset` seconds behind
//! the wall clock (the last one counts; a compaction carries it). The
//! next load moves every lease by it and rewrites the log without it, so
//! the lease clock, anchored to the wall clock at each start, and the
//! stored times agree again: no lease runs out early or late across the
//! restart. A log without one loads as before; a daemon older than it
//! reads it as a damaged record (its leases then keep the old clock). Log sequence
//! numbers (LSN) are strictly increasing and never reused: the store's LSN
//! is the largest marker found, so numbering goes on across restarts and
//! compactions. Logs written before markers existed load unchanged (their
//! records belong to no batch: LSN 0); a daemon older than the markers
//! reads a marker as a damaged record and skips it (the log is not
//! downgrade-safe, its leases are).
//!
//! What the log looks like after each failure, and what the next load does:
//! - a crash inside a write leaves a torn last line (no newline before the
//!   zeros written ahead or the end of the file): cut off;
//! - a damaged record (a flipped bit, a damaged newline joining two lines)
//!   fails its checksum: the newline says where the next record starts
//!   (inside a joined line, the last valid suffix does), so only that
//!   record is skipped; the file as found is kept as
//!   `leases.log.damaged-<unix time>` and the log is rewritten clean;
//! - a failed sync (ENOSPC, EIO) is not acknowledged; its records stay
//!   pending and the next sync writes them again from the same offset,
//!   so no later batch is ever followed by the rest of an earlier one;
//! - a compaction that fails after its rename still switches to the new
//!   log; until the directory is synced, no sync succeeds; one that fails
//!   before removes its file (on a full disk it would hold the room the
//!   log needs);
//! - a log created anew is named durably (its directory synced) before a
//!   batch in it counts as durable.
//!
//! `tests/crash_consistency.rs` checks these promises on every state a
//! power cut can leave (torn sectors, unsynced writes and renames).
//!
//! The store sits behind [`LeaseStore`] (as in dora's `Storage` trait) so the
//! actor and its tests do not depend on the file format.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::pool::{Half, PoolRt};

/// The [`LeaseTable::fresh_full`] bits of a half (both for no split).
fn full_bits(half: Option<Half>) -> u8 {
    match half {
        Some(Half::Even) => 1,
        Some(Half::Odd) => 2,
        None => 3,
    }
}

/// State of a lease (the YANG `lease-state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeaseState {
    Offered,
    Bound,
    Released,
    Declined,
    Expired,
}

impl LeaseState {
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseState::Offered => "offered",
            LeaseState::Bound => "bound",
            LeaseState::Released => "released",
            LeaseState::Declined => "declined",
            LeaseState::Expired => "expired",
        }
    }

    /// Position in [`PoolCounts::states`].
    pub fn index(self) -> usize {
        match self {
            LeaseState::Offered => 0,
            LeaseState::Bound => 1,
            LeaseState::Released => 2,
            LeaseState::Declined => 3,
            LeaseState::Expired => 4,
        }
    }

    fn parse(s: &str) -> Option<LeaseState> {
        Some(match s {
            "offered" => LeaseState::Offered,
            "bound" => LeaseState::Bound,
            "released" => LeaseState::Released,
            "declined" => LeaseState::Declined,
            "expired" => LeaseState::Expired,
            _ => return None,
        })
    }
}

/// Which router granted a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    Local,
    Peer,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Local => "local",
            Origin::Peer => "peer",
        }
    }
}

/// One lease (or, with state `Offered`, one held offer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub ip: Ipv4Addr,
    pub pool: String,
    /// Client hardware address (chaddr, `hlen` bytes).
    pub hw: Vec<u8>,
    pub client_id: Option<Vec<u8>>,
    pub hostname: Option<String>,
    pub state: LeaseState,
    /// Granted duration in seconds (`u32::MAX`: infinite).
    pub lifetime: u32,
    /// Unix seconds when the lease (offer, quarantine) runs out.
    pub expires: u64,
    pub origin: Origin,
}

impl Lease {
    /// The client's identity: option 61 when it sent one, else chaddr.
    pub fn key(&self) -> ClientKey {
        ClientKey::new(self.client_id.as_deref(), &self.hw)
    }

    /// Whether `key` is this lease's client (`self.key() == *key` without
    /// building the key).
    pub fn is_client(&self, key: &ClientKey) -> bool {
        match self.client_id.as_deref() {
            Some(c) if !c.is_empty() => key.0.first() == Some(&0) && key.0[1..] == *c,
            _ => key.0.first() == Some(&1) && key.0[1..] == *self.hw,
        }
    }

    /// The unix second of the lease's last change, derived from the fields
    /// the log and the wire carry (neither records it):
    /// - bound, declined, expired (and offered): the grant, `expires -
    ///   lifetime` (for a decline the lifetime is the probation, so this is
    ///   the decline). An expired lease keeps the grant it came from, not
    ///   the moment it ran out: a renewal the partner granted before that
    ///   moment (the link between the routers cut, the client renewing
    ///   there) is then newer than this router's expiry of the old grant,
    ///   and the binding the client really holds survives the merge;
    /// - an infinite lease (`lifetime` `u32::MAX`) never runs out, so its
    ///   `expires` carries the grant instead: [`infinite_expiry`]. One
    ///   stored before that rule (`u64::MAX`) has no known grant: 0;
    /// - released: `expires`, which the release sets to its own time.
    pub fn changed_at(&self) -> u64 {
        match self.state {
            LeaseState::Released => self.expires,
            _ if self.lifetime == u32::MAX && self.expires >= INFINITE => {
                if self.expires == u64::MAX {
                    0
                } else {
                    self.expires - INFINITE
                }
            }
            _ => self.expires.saturating_sub(u64::from(self.lifetime)),
        }
    }

    /// Whether `self` and `other` are the same lease, whichever router
    /// granted it.
    pub fn same_as(&self, other: &Lease) -> bool {
        self.ip == other.ip
            && self.pool == other.pool
            && self.hw == other.hw
            && self.client_id == other.client_id
            && self.hostname == other.hostname
            && self.state == other.state
            && self.lifetime == other.lifetime
            && self.expires == other.expires
    }
}

/// Bit 63 of `expires` marks an infinite lease: see [`infinite_expiry`].
pub const INFINITE: u64 = 1 << 63;

/// The `expires` of an infinite lease granted at `granted` (unix seconds):
/// past any clock, so it never expires, and still telling when it was
/// granted, which [`Lease::changed_at`] needs to order two versions of it
/// (a renewal, a release after it). Shown as the largest `date-and-time`.
pub fn infinite_expiry(granted: u64) -> u64 {
    INFINITE | granted
}

/// Rank of a state among versions of an address changed in the same
/// second. A decline first (the address is in use by someone else: it
/// stays quarantined whoever bound it), then a binding (an address a client
/// may be using is never freed by a tie), then the free states.
fn rank(s: LeaseState) -> u8 {
    match s {
        LeaseState::Declined => 4,
        LeaseState::Bound => 3,
        LeaseState::Released => 2,
        LeaseState::Expired => 1,
        LeaseState::Offered => 0,
    }
}

/// The total order of lease versions both routers apply: newer
/// [`Lease::changed_at`] first, then `rank`, then the client key, then
/// every other field (the address last), so that two different leases
/// never compare equal. `origin` is left out: the same lease is equal on
/// both routers.
pub fn cmp_versions(a: &Lease, b: &Lease) -> std::cmp::Ordering {
    a.changed_at()
        .cmp(&b.changed_at())
        .then(rank(a.state).cmp(&rank(b.state)))
        .then_with(|| a.key().0.cmp(&b.key().0))
        .then(a.expires.cmp(&b.expires))
        .then(a.lifetime.cmp(&b.lifetime))
        .then_with(|| a.hostname.cmp(&b.hostname))
        .then_with(|| a.pool.cmp(&b.pool))
        .then_with(|| a.hw.cmp(&b.hw))
        .then_with(|| a.client_id.cmp(&b.client_id))
        .then(u32::from(a.ip).cmp(&u32::from(b.ip)))
}

/// Whether the partner's version of an address beats ours: newest lease
/// wins, ties broken by [`cmp_versions`]. The same answer on both routers
/// (`peer_wins(a, b) == !peer_wins(b, a)` for different leases), false for
/// the same lease.
pub fn peer_wins(ours: &Lease, theirs: &Lease) -> bool {
    cmp_versions(theirs, ours) == std::cmp::Ordering::Greater
}

/// The record of a binding whose client took a newer one on another
/// address: released one second after its grant. It must beat the binding
/// it replaces in [`cmp_versions`] on both routers whatever else they saw,
/// so it is a function of that binding alone; and it must never beat a
/// later grant of the address to another client, which comes after the
/// client's newer binding, itself at least a second after this one (only a
/// strictly newer binding displaces one).
fn left(l: &Lease) -> Lease {
    Lease {
        state: LeaseState::Released,
        expires: l.changed_at() + 1,
        ..l.clone()
    }
}

/// Whether `newer` (a binding of the client of `older`) displaces `older`,
/// the client's binding of another address: a client uses the address it
/// was given last.
fn displaces(newer: &Lease, older: &Lease) -> bool {
    newer.state == LeaseState::Bound
        && older.state == LeaseState::Bound
        && older.changed_at() < newer.changed_at()
}

/// What [`LeaseTable::merge_peer`] did with the partner's lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// Stored (as it came, or as released when its client holds a newer
    /// binding here).
    Taken,
    /// The table holds the same lease already (an offer, never a lease on
    /// the wire, is also left alone).
    Unchanged,
    /// Ours is newer: the partner should take ours.
    KeptOurs,
}

/// Client identity (RFC 2131 §4.2): option 61 when present, else chaddr.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientKey(Vec<u8>);

impl ClientKey {
    pub fn new(client_id: Option<&[u8]>, hw: &[u8]) -> ClientKey {
        match client_id {
            Some(c) if !c.is_empty() => {
                let mut k = Vec::with_capacity(c.len() + 1);
                k.push(0);
                k.extend_from_slice(c);
                ClientKey(k)
            }
            _ => {
                let mut k = Vec::with_capacity(hw.len() + 1);
                k.push(1);
                k.extend_from_slice(hw);
                ClientKey(k)
            }
        }
    }
}

/// What a lease change was, for subscribers (hot backup, notifications).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Bound,
    Renewed,
    Released,
    Declined,
    Expired,
    /// Removed by configuration (pool deleted or shrunk).
    Removed,
}

/// A lease change as published on the event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseEvent {
    pub kind: EventKind,
    pub lease: Lease,
}

/// A change to persist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Upsert(Lease),
    Delete(Ipv4Addr),
}

/// One line of the lease log: a change, or a marker numbering the changes
/// that follow it (see the module header).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Record {
    Change(Change),
    Batch(u64),
    Snapshot(u64),
    /// Wall clock minus the log's lease times (s).
    Clock(i64),
}

/// `expires` of a lease of `lifetime` moved by `by` seconds: an infinite
/// lease's grant moves (it stays infinite), the one without a grant
/// (`u64::MAX`) stays; saturating at either end.
pub fn shift_expiry(expires: u64, lifetime: u32, by: i64) -> u64 {
    let shift = |t: u64, max: u64| -> u64 {
        let moved = i128::from(t) + i128::from(by);
        moved.clamp(0, i128::from(max)) as u64
    };
    if by == 0 || expires == u64::MAX {
        return expires;
    }
    if lifetime == u32::MAX && expires >= INFINITE {
        INFINITE | shift(expires - INFINITE, INFINITE - 1)
    } else if expires >= INFINITE {
        // not a time any clock reaches: nothing to move
        expires
    } else {
        shift(expires, INFINITE - 1)
    }
}

/// Per-pool address usage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    pub total: u64,
    pub used: u64,
    pub free: u64,
    pub offered: u64,
    pub declined: u64,
}

/// What the table counts per pool, kept as leases and offers change (see
/// [`LeaseTable::counts`]), so that reading a pool's statistics costs a
/// map lookup and never a pass over the leases.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolCounts {
    /// Leases (every address, static ones too) per state, in the order of
    /// [`LeaseState::index`].
    pub states: [u64; 5],
    /// Dynamic addresses bound.
    pub used: u64,
    /// Dynamic addresses in quarantine.
    pub declined: u64,
    /// Dynamic addresses held by an offer and by no binding or quarantine.
    pub offered: u64,
}

impl PoolCounts {
    /// The statistics of a pool of `total` dynamic addresses.
    pub fn stats(&self, total: u64) -> PoolStats {
        PoolStats {
            total,
            used: self.used,
            offered: self.offered,
            declined: self.declined,
            free: total.saturating_sub(self.used + self.offered + self.declined),
        }
    }

    fn is_zero(&self) -> bool {
        *self == PoolCounts::default()
    }
}

/// The lease table. Leases (persisted states) and offers (holds) live in
/// separate maps; both are indexed by client.
#[derive(Debug, Default)]
pub struct LeaseTable {
    /// Shared with the `<get>` snapshot: copying it is a reference count
    /// per lease, and a lease changed after a copy is cloned then.
    by_ip: HashMap<Ipv4Addr, Arc<Lease>>,
    by_client: HashMap<ClientKey, Ipv4Addr>,
    /// Shared with the `<get>` mirror like `by_ip`.
    offers: HashMap<Ipv4Addr, Arc<Lease>>,
    offer_by_client: HashMap<ClientKey, Ipv4Addr>,
    /// Allocation cursor per pool (last address handed out).
    cursor: HashMap<String, u32>,
    /// Pools whose never-used addresses are all taken, per half (bit 1:
    /// even, bit 2: odd): skip the fresh scan.
    fresh_full: HashMap<String, u8>,
    /// Pools with no released, expired or lapsed address to reuse, per
    /// half (the same bits), as of a scan in second `.1`: skip the scan
    /// (O(leases)) in that second until an address of the pool is freed
    /// (a lease lapsing with the clock is seen the next second). A pool
    /// whose never-used addresses are gone (or, in a split, its own
    /// half's) would otherwise scan the whole table at every DISCOVER.
    reuse_none: HashMap<String, (u8, u64)>,
    /// Addresses whose lease or offer changed since `take_touched`.
    touched: Vec<Ipv4Addr>,
    /// Per pool, kept by every change of `by_ip` and `offers` (`tally`
    /// before and after it).
    counts: HashMap<String, PoolCounts>,
    /// Pools whose counts changed since `take_counted`.
    counted: HashSet<String>,
    /// Statically bound addresses: not counted as used, offered or
    /// declined (a pool's `total` leaves them out).
    statics: HashSet<Ipv4Addr>,
    /// Passes `retain` made over the table (configuration commits).
    retain_passes: u64,
}

impl LeaseTable {
    pub fn new() -> LeaseTable {
        LeaseTable::default()
    }

    pub fn get(&self, ip: Ipv4Addr) -> Option<&Lease> {
        self.by_ip.get(&ip).map(|l| &**l)
    }

    /// Add (`sign` 1) or take away (`sign` -1) what the address `ip`
    /// counts for as it is now: its lease in its state, and for a dynamic
    /// address a binding as used, a quarantine as declined, an offer on
    /// an address no binding or quarantine holds as offered. Every change
    /// of `by_ip` or `offers` is framed by `tally(ip, -1)` and
    /// `tally(ip, 1)`, so the counts are always those a scan would give.
    fn tally(&mut self, ip: Ipv4Addr, sign: i8) {
        let dynamic = !self.statics.contains(&ip);
        let lease = self.by_ip.get(&ip);
        let held =
            lease.is_some_and(|l| matches!(l.state, LeaseState::Bound | LeaseState::Declined));
        let offer = self.offers.get(&ip).filter(|_| dynamic && !held).cloned();
        if let Some(l) = lease.cloned() {
            let c = Self::count_of(&mut self.counts, &mut self.counted, &l.pool);
            bump(&mut c.states[l.state.index()], sign);
            if dynamic {
                match l.state {
                    LeaseState::Bound => bump(&mut c.used, sign),
                    LeaseState::Declined => bump(&mut c.declined, sign),
                    _ => {}
                }
            }
            if c.is_zero() {
                self.counts.remove(&l.pool);
            }
        }
        if let Some(o) = offer {
            let c = Self::count_of(&mut self.counts, &mut self.counted, &o.pool);
            bump(&mut c.offered, sign);
            if c.is_zero() {
                self.counts.remove(&o.pool);
            }
        }
    }

    fn count_of<'a>(
        counts: &'a mut HashMap<String, PoolCounts>,
        counted: &mut HashSet<String>,
        pool: &str,
    ) -> &'a mut PoolCounts {
        if !counted.contains(pool) {
            counted.insert(pool.to_string());
        }
        if !counts.contains_key(pool) {
            counts.insert(pool.to_string(), PoolCounts::default());
        }
        counts.get_mut(pool).expect("inserted above")
    }

    /// The counts of `pool` (O(1)): see [`PoolCounts`].
    pub fn counts(&self, pool: &str) -> PoolCounts {
        self.counts.get(pool).copied().unwrap_or_default()
    }

    /// Pools whose counts changed since the last call.
    pub fn take_counted(&mut self) -> HashSet<String> {
        std::mem::take(&mut self.counted)
    }

    /// The statically bound addresses (left out of the used, offered and
    /// declined counts). Counted again only when they change: a
    /// configuration commit, a pass over the table.
    pub fn set_statics(&mut self, statics: HashSet<Ipv4Addr>) {
        if statics == self.statics {
            return;
        }
        self.statics = statics;
        for pool in self.counts.keys() {
            self.counted.insert(pool.clone());
        }
        self.counts.clear();
        let ips: HashSet<Ipv4Addr> = self
            .by_ip
            .keys()
            .chain(self.offers.keys())
            .copied()
            .collect();
        for ip in ips {
            self.tally(ip, 1);
        }
    }

    pub fn offer(&self, ip: Ipv4Addr) -> Option<&Lease> {
        self.offers.get(&ip).map(|o| &**o)
    }

    pub fn len(&self) -> usize {
        self.by_ip.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_ip.is_empty()
    }

    pub fn leases(&self) -> impl Iterator<Item = &Lease> {
        self.by_ip.values().map(|l| &**l)
    }

    /// The leases as shared pointers (for snapshots).
    pub fn shared(&self) -> impl Iterator<Item = &Arc<Lease>> {
        self.by_ip.values()
    }

    pub fn offers(&self) -> impl Iterator<Item = &Lease> {
        self.offers.values().map(|o| &**o)
    }

    /// The address the table remembers for a client (lease, else offer).
    pub fn client_ip(&self, key: &ClientKey) -> Option<Ipv4Addr> {
        self.by_client
            .get(key)
            .or_else(|| self.offer_by_client.get(key))
            .copied()
    }

    /// The address offered to a client and still held for it.
    pub fn client_offer(&self, key: &ClientKey) -> Option<Ipv4Addr> {
        self.offer_by_client.get(key).copied()
    }

    /// The lease of a client, if it still holds a record.
    pub fn client_lease(&self, key: &ClientKey) -> Option<&Lease> {
        self.by_client
            .get(key)
            .and_then(|ip| self.by_ip.get(ip))
            .map(|l| &**l)
    }

    /// Insert or replace the lease on `lease.ip`, keeping the indexes right.
    pub fn insert(&mut self, lease: Lease) {
        self.put(lease, true, true);
    }

    /// Insert or replace the lease on `lease.ip`. `claim`: it becomes its
    /// client's address (the client index points to it, the client's offer
    /// elsewhere goes); `hold_off`: an offer on the address goes.
    fn put(&mut self, lease: Lease, claim: bool, hold_off: bool) {
        let key = lease.key();
        if let Some(old) = self.by_ip.get(&lease.ip) {
            let ok = old.key();
            if ok != key && self.by_client.get(&ok) == Some(&lease.ip) {
                self.by_client.remove(&ok);
            }
        }
        if hold_off {
            self.drop_offer_at(lease.ip);
        }
        if lease.state == LeaseState::Declined {
            // a declining client must not get the address back
            if self.by_client.get(&key) == Some(&lease.ip) {
                self.by_client.remove(&key);
            }
        } else if claim {
            if let Some(prev) = self.by_client.insert(key.clone(), lease.ip) {
                if prev != lease.ip {
                    // the client moved: its old address keeps its record but
                    // is no longer its own
                    self.freed(&lease.pool);
                }
            }
            if let Some(oip) = self.offer_by_client.get(&key).copied() {
                self.drop_offer_at(oip);
            }
        }
        if lease.state != LeaseState::Bound {
            // released, expired, declined: reusable now or later
            self.freed(&lease.pool);
        }
        self.touched.push(lease.ip);
        let ip = lease.ip;
        self.tally(ip, -1);
        self.by_ip.insert(ip, Arc::new(lease));
        self.tally(ip, 1);
    }

    /// An address of `pool` may have become free: the allocation hints
    /// that say there is none are dropped.
    fn freed(&mut self, pool: &str) {
        self.fresh_full.remove(pool);
        self.reuse_none.remove(pool);
    }

    /// Leases of `pool` in state bound (whatever their expiry: `expire`
    /// turns them expired), from the kept counts.
    pub fn bound(&self, pool: &str) -> u64 {
        self.counts(pool).states[LeaseState::Bound.index()]
    }

    /// Remove the lease on `ip`.
    pub fn remove(&mut self, ip: Ipv4Addr) -> Option<Lease> {
        if !self.by_ip.contains_key(&ip) {
            return None;
        }
        self.tally(ip, -1);
        let l = Arc::unwrap_or_clone(self.by_ip.remove(&ip)?);
        self.tally(ip, 1);
        self.touched.push(ip);
        let k = l.key();
        if self.by_client.get(&k) == Some(&ip) {
            self.by_client.remove(&k);
        }
        self.freed(&l.pool);
        Some(l)
    }

    /// Merge a lease learnt from the partner (its `origin` already `Peer`)
    /// into the table, so that both routers end with the same binding for
    /// every address whatever the order they see the versions in. Returns
    /// the changes to write to the lease log (nothing when not taken and
    /// no other binding went).
    ///
    /// - The lease is taken when the table has none on its address or
    ///   [`peer_wins`]. Taking a binding or a decline drops an offer this
    ///   router made on the address (to another client: the address is no
    ///   longer free); a free state leaves the offer be.
    /// - A client uses the address it was given last. When the client's
    ///   binding here (the client index) is on another address and older
    ///   (strictly, in `changed_at`) than the partner's binding, ours goes:
    ///   it becomes released (`left`), not deleted, because a deletion
    ///   would lose to any older version of the address that arrives later
    ///   (a batch-backup page, a retransmission), while the released record
    ///   beats the binding it replaces on both routers, and the address is
    ///   free for the next client at once. This holds whether or not the
    ///   partner's binding wins its own address (it may lose there to a
    ///   newer lease: the client still moved). Conversely when the client's
    ///   binding here is the newer one, the partner's binding is taken
    ///   released, and the client index stays on the newer one.
    ///
    /// Convergence: merging the same set of leases in any order ends with
    /// the same table, except when a client's binding is displaced on its
    /// address by another client's newer lease before the client's older
    /// binding arrives (the table no longer knows the client moved). Every
    /// lease this merge writes is in the log, so the partner receives it
    /// and both tables end equal after they exchange their changes (the
    /// real-time batches, the batch backup).
    pub fn merge_peer(&mut self, lease: Lease) -> (Merge, Vec<Change>) {
        if lease.state == LeaseState::Offered {
            return (Merge::Unchanged, Vec::new());
        }
        let key = lease.key();
        let other: Option<Arc<Lease>> = self
            .by_client
            .get(&key)
            .filter(|ip| **ip != lease.ip)
            .and_then(|ip| self.by_ip.get(ip))
            .cloned();
        let mut changes = Vec::new();
        let ours = self.by_ip.get(&lease.ip);
        if let Some(o) = ours.filter(|o| !peer_wins(o, &lease)) {
            let m = if o.same_as(&lease) {
                Merge::Unchanged
            } else {
                Merge::KeptOurs
            };
            if let Some(other) = other.filter(|other| displaces(&lease, other)) {
                changes.push(self.leave(&other));
            }
            return (m, changes);
        }
        let mut stored = lease;
        let mut claim = true;
        if let Some(other) = &other {
            if displaces(other, &stored) {
                stored = left(&stored);
                claim = false;
            } else if displaces(&stored, other) {
                changes.push(self.leave(other));
            } else if cmp_versions(other, &stored).is_gt() {
                claim = false;
            }
        }
        let occupies = matches!(stored.state, LeaseState::Bound | LeaseState::Declined);
        changes.insert(0, Change::Upsert(stored.clone()));
        self.put(stored, claim, occupies);
        (Merge::Taken, changes)
    }

    /// Replace a binding its client left (see [`left`]); the change to log.
    fn leave(&mut self, l: &Lease) -> Change {
        let gone = left(l);
        self.put(gone.clone(), false, false);
        Change::Upsert(gone)
    }

    /// The partner deleted its lease on `ip` (a quarantine over, a decline
    /// with probation 0, a pool removed or shrunk by configuration): delete
    /// ours too, unless it is a binding or a quarantine still running at
    /// `now`. A deletion carries no time, so it cannot say it is newer: an
    /// active binding is never erased by it, nor a quarantine (a decline
    /// here after the partner's, or a clock a little behind the
    /// partner's); each ends on this router's clock, which deletes the
    /// quarantine itself, and the configuration that dropped an address
    /// there drops it here with the same commit. Returns the deletion to
    /// log.
    pub fn remove_peer(&mut self, ip: Ipv4Addr, now: u64) -> Option<Change> {
        let l = self.by_ip.get(&ip)?;
        if matches!(l.state, LeaseState::Bound | LeaseState::Declined) && l.expires > now {
            return None;
        }
        self.remove(ip);
        Some(Change::Delete(ip))
    }

    /// Hold `ip` for a client until `offer.expires`.
    pub fn hold(&mut self, offer: Lease) {
        let key = offer.key();
        if let Some(prev) = self.offer_by_client.get(&key).copied() {
            self.drop_offer_at(prev);
        }
        self.drop_offer_at(offer.ip);
        self.offer_by_client.insert(key, offer.ip);
        self.touched.push(offer.ip);
        let ip = offer.ip;
        self.tally(ip, -1);
        self.offers.insert(ip, Arc::new(offer));
        self.tally(ip, 1);
    }

    fn drop_offer_at(&mut self, ip: Ipv4Addr) {
        if !self.offers.contains_key(&ip) {
            return;
        }
        self.tally(ip, -1);
        let gone = self.offers.remove(&ip);
        self.tally(ip, 1);
        if let Some(o) = gone {
            self.touched.push(ip);
            let k = o.key();
            if self.offer_by_client.get(&k) == Some(&ip) {
                self.offer_by_client.remove(&k);
            }
            self.freed(&o.pool);
        }
    }

    /// Forget the offer made to a client (it chose another server).
    pub fn drop_offer(&mut self, key: &ClientKey) {
        if let Some(ip) = self.offer_by_client.get(key).copied() {
            self.drop_offer_at(ip);
        }
    }

    /// Forget every offer that `drop` accepts; returns how many went.
    pub fn drop_offers(&mut self, mut drop: impl FnMut(&Lease) -> bool) -> usize {
        let gone: Vec<Ipv4Addr> = self
            .offers
            .values()
            .filter(|o| drop(o))
            .map(|o| o.ip)
            .collect();
        for ip in &gone {
            self.drop_offer_at(*ip);
        }
        gone.len()
    }

    /// Whether `ip` is free for the client `key` at `now`: no live lease or
    /// offer of another client, no quarantine.
    pub fn available(&self, ip: Ipv4Addr, key: &ClientKey, now: u64) -> bool {
        if let Some(o) = self.offers.get(&ip) {
            if o.expires > now && !o.is_client(key) {
                return false;
            }
        }
        match self.by_ip.get(&ip) {
            None => true,
            Some(l) => match l.state {
                LeaseState::Declined => l.expires <= now,
                LeaseState::Released | LeaseState::Expired => true,
                LeaseState::Bound | LeaseState::Offered => l.is_client(key) || l.expires <= now,
            },
        }
    }

    /// Find an address to offer a new client in `pool`: first one never
    /// used (cursor scan, amortised O(1)), else the longest-unused released
    /// or expired one. With a split ([`PoolRt::split`]) both from the
    /// pool's own half first, then both from the other half.
    pub fn allocate(&mut self, pool: &PoolRt, key: &ClientKey, now: u64) -> Option<Ipv4Addr> {
        match pool.split {
            None => self
                .fresh(pool, key, now, None)
                .or_else(|| self.reuse(pool, key, now, None)),
            Some(h) => self
                .fresh(pool, key, now, Some(h))
                .or_else(|| self.reuse(pool, key, now, Some(h)))
                .or_else(|| self.fresh(pool, key, now, Some(h.other())))
                .or_else(|| self.reuse(pool, key, now, Some(h.other()))),
        }
    }

    /// The next never-used address of `half` (any when `None`) after the
    /// pool's cursor; remembers when there is none.
    fn fresh(
        &mut self,
        pool: &PoolRt,
        key: &ClientKey,
        now: u64,
        half: Option<Half>,
    ) -> Option<Ipv4Addr> {
        let bits = full_bits(half);
        if self.fresh_full.get(&pool.name).copied().unwrap_or(0) & bits == bits {
            return None;
        }
        let total = pool.total();
        let start = self
            .cursor
            .get(&pool.name)
            .copied()
            .or_else(|| pool.sections.first().map(|(s, _)| s.wrapping_sub(1)))?;
        let mut a = start;
        // every section address once (total plus the skipped ones)
        let span: u64 = pool
            .sections
            .iter()
            .map(|(s, e)| u64::from(e - s) + 1)
            .sum();
        let mut seen = 0u64;
        while seen < span && total > 0 {
            a = pool.next_in_sections(a)?;
            seen += 1;
            let ip = Ipv4Addr::from(a);
            if half.is_none_or(|h| h.contains(ip))
                && pool.dynamic(ip)
                && !self.by_ip.contains_key(&ip)
                && {
                    match self.offers.get(&ip) {
                        None => true,
                        Some(o) => o.expires <= now || o.is_client(key),
                    }
                }
            {
                self.cursor.insert(pool.name.clone(), a);
                return Some(ip);
            }
        }
        *self.fresh_full.entry(pool.name.clone()).or_insert(0) |= bits;
        None
    }

    /// The longest-unused released or expired address of `half` (any when
    /// `None`), or a lapsed quarantine.
    fn reuse(
        &mut self,
        pool: &PoolRt,
        key: &ClientKey,
        now: u64,
        half: Option<Half>,
    ) -> Option<Ipv4Addr> {
        let bits = full_bits(half);
        if let Some((none, at)) = self.reuse_none.get(&pool.name) {
            if *at == now && none & bits == bits {
                return None;
            }
        }
        let found = self.scan_reusable(pool, key, now, half);
        if found.is_none() {
            let e = self.reuse_none.entry(pool.name.clone()).or_insert((0, now));
            if e.1 != now {
                *e = (0, now);
            }
            e.0 |= bits;
        }
        found
    }

    fn scan_reusable(
        &self,
        pool: &PoolRt,
        key: &ClientKey,
        now: u64,
        half: Option<Half>,
    ) -> Option<Ipv4Addr> {
        self.by_ip
            .values()
            .filter(|l| l.pool == pool.name && pool.dynamic(l.ip))
            .filter(|l| half.is_none_or(|h| h.contains(l.ip)))
            .filter(|l| match l.state {
                LeaseState::Released | LeaseState::Expired => true,
                LeaseState::Declined | LeaseState::Bound | LeaseState::Offered => l.expires <= now,
            })
            .filter(|l| self.available(l.ip, key, now))
            .min_by_key(|l| (l.expires, u32::from(l.ip)))
            .map(|l| l.ip)
    }

    /// Run the clock: offers past their hold vanish, bound leases past
    /// their end become expired, quarantines past their end are lifted.
    pub fn expire(&mut self, now: u64) -> (Vec<Change>, Vec<LeaseEvent>) {
        let gone: Vec<Ipv4Addr> = self
            .offers
            .values()
            .filter(|o| o.expires <= now)
            .map(|o| o.ip)
            .collect();
        for ip in gone {
            self.drop_offer_at(ip);
        }
        let mut changes = Vec::new();
        let mut events = Vec::new();
        let due: Vec<Ipv4Addr> = self
            .by_ip
            .values()
            .filter(|l| {
                l.expires <= now && matches!(l.state, LeaseState::Bound | LeaseState::Declined)
            })
            .map(|l| l.ip)
            .collect();
        for ip in due {
            let Some(state) = self.by_ip.get(&ip).map(|l| l.state) else {
                continue;
            };
            self.touched.push(ip);
            if state == LeaseState::Declined {
                self.remove(ip);
                changes.push(Change::Delete(ip));
            } else {
                self.tally(ip, -1);
                let Some(l) = self.by_ip.get_mut(&ip) else {
                    continue;
                };
                let l = Arc::make_mut(l);
                l.state = LeaseState::Expired;
                let l = l.clone();
                self.tally(ip, 1);
                self.freed(&l.pool);
                changes.push(Change::Upsert(l.clone()));
                events.push(LeaseEvent {
                    kind: EventKind::Expired,
                    lease: l,
                });
            }
        }
        (changes, events)
    }

    /// Keep only leases that `keep` accepts (pool edits); returns the
    /// removed ones.
    pub fn retain(&mut self, mut keep: impl FnMut(&Lease) -> bool) -> Vec<Lease> {
        self.retain_passes += 1;
        let drop: Vec<Ipv4Addr> = self
            .by_ip
            .values()
            .filter(|l| !keep(l))
            .map(|l| l.ip)
            .collect();
        let offers: Vec<Ipv4Addr> = self
            .offers
            .values()
            .filter(|l| !keep(l))
            .map(|l| l.ip)
            .collect();
        for ip in offers {
            self.drop_offer_at(ip);
        }
        drop.into_iter().filter_map(|ip| self.remove(ip)).collect()
    }

    /// How many passes over the table `retain` made.
    pub fn retain_passes(&self) -> u64 {
        self.retain_passes
    }

    /// Addresses whose lease or offer changed since the last call, each
    /// once.
    pub fn take_touched(&mut self) -> Vec<Ipv4Addr> {
        let mut t = std::mem::take(&mut self.touched);
        t.sort_unstable();
        t.dedup();
        t
    }

    /// The offer on `ip` as a shared pointer (for snapshots).
    pub fn offer_shared(&self, ip: Ipv4Addr) -> Option<&Arc<Lease>> {
        self.offers.get(&ip)
    }

    /// The lease on `ip` as a shared pointer.
    pub fn get_shared(&self, ip: Ipv4Addr) -> Option<&Arc<Lease>> {
        self.by_ip.get(&ip)
    }

    /// Make room for `n` leases at once, so that the maps do not rehash
    /// (a stall of milliseconds with tens of thousands of leases) while
    /// serving.
    pub fn reserve(&mut self, n: usize) {
        let n = n.saturating_sub(self.by_ip.len());
        self.by_ip.reserve(n);
        self.by_client.reserve(n);
    }

    /// Forget allocation hints (after a configuration change).
    pub fn reset_hints(&mut self) {
        self.cursor.clear();
        self.fresh_full.clear();
        self.reuse_none.clear();
    }
}

/// Add `sign` (1 or -1) to a count.
fn bump(c: &mut u64, sign: i8) {
    if sign > 0 {
        *c += 1;
    } else {
        *c = c.saturating_sub(1);
    }
}

// ---------------------------------------------------------------- store

/// Errors of the lease store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("lease store {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Durable storage of the lease table.
///
/// `append` may buffer; only `sync` makes what was appended durable. The
/// actor never sends an ACK before the `sync` that covers its lease.
pub trait LeaseStore: Send {
    /// Every lease stored, latest version of each.
    fn load(&mut self) -> Result<Vec<Lease>, StoreError>;
    fn append(&mut self, changes: &[Change]) -> Result<(), StoreError>;
    /// The changes appended from now on up to the next `begin` are sync
    /// batch `lsn` (larger than every LSN before it); durable with them.
    fn begin(&mut self, lsn: u64);
    /// The largest LSN stored (after `load`) or begun; 0 for none.
    fn lsn(&self) -> u64;
    /// A reader of the stored log for replicas that fell behind, if the
    /// store keeps one.
    fn log(&self) -> Option<LogReader> {
        None
    }
    fn sync(&mut self) -> Result<(), StoreError>;
    /// The wall clock stepped: the lease times stored are `offset` s
    /// behind it (durable with the next sync; see the module header's
    /// `C` record). Nothing to do for a store that does not outlive the
    /// process.
    fn clock_offset(&mut self, offset: i64) {
        let _ = offset;
    }
    /// Replace the stored history by `live` (durably).
    fn compact(&mut self, live: &[Lease]) -> Result<(), StoreError>;
    /// Records appended since the last compaction (to decide when to compact).
    fn records(&self) -> u64;
    /// Start rewriting the stored history as the live leases only, without
    /// holding up `append`/`sync` meanwhile; `compact_poll` finishes it.
    /// Nothing to do by default.
    fn compact_start(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Finish a compaction started by `compact_start` if it is ready;
    /// true when none is running any more.
    fn compact_poll(&mut self) -> Result<bool, StoreError> {
        Ok(true)
    }
}

/// A [`LeaseStore`] that keeps everything in memory (tests, benchmarks of
/// the handler).
#[derive(Debug, Default)]
pub struct MemStore {
    pub leases: HashMap<Ipv4Addr, Lease>,
    pub synced: u64,
    pub appended: u64,
    pub lsn: u64,
}

impl LeaseStore for MemStore {
    fn load(&mut self) -> Result<Vec<Lease>, StoreError> {
        Ok(self.leases.values().cloned().collect())
    }
    fn append(&mut self, changes: &[Change]) -> Result<(), StoreError> {
        for c in changes {
            match c {
                Change::Upsert(l) => {
                    self.leases.insert(l.ip, l.clone());
                }
                Change::Delete(ip) => {
                    self.leases.remove(ip);
                }
            }
            self.appended += 1;
        }
        Ok(())
    }
    fn begin(&mut self, lsn: u64) {
        self.lsn = lsn;
    }
    fn lsn(&self) -> u64 {
        self.lsn
    }
    fn sync(&mut self) -> Result<(), StoreError> {
        self.synced += 1;
        Ok(())
    }

    fn compact(&mut self, live: &[Lease]) -> Result<(), StoreError> {
        self.leases = live.iter().map(|l| (l.ip, l.clone())).collect();
        self.appended = 0;
        Ok(())
    }
    fn records(&self) -> u64 {
        self.appended
    }
}

/// The lease log in the storage dir.
#[derive(Debug)]
pub struct FileStore {
    path: PathBuf,
    file: Option<File>,
    /// Records appended and not yet durable: the batch being synced, and
    /// after a failed sync also the batches that failed (they are written
    /// again, from `end`, by the next sync).
    buf: Vec<u8>,
    records: u64,
    /// The largest LSN loaded or begun.
    lsn: u64,
    /// End of the durable records (the file may be longer: zeros written
    /// ahead, or what a failed sync left, which the next sync overwrites).
    end: u64,
    /// Size of the file: records plus the zeros written ahead.
    alloc: u64,
    /// Whether `end` and `alloc` are known (after a load or a compaction).
    positioned: bool,
    /// A compaction being written by a helper thread, and the records
    /// synced to the old log since it started (they follow the snapshot in
    /// the new log).
    compacting: Option<Compacting>,
    /// A new log was renamed into place but the directory holding the
    /// rename is not synced yet: until it is, nothing written to the new
    /// log is durable, so no sync reports success.
    dir_sync_pending: bool,
    /// How far a failed sync may have written (0: not past `end`): the
    /// next sync overwrites that stretch with its records and zeros.
    dirty: u64,
    /// The last clock record appended since the load (0: none): a
    /// compaction writes it again.
    clock: i64,
    /// Tests: the next fsync fails with EIO after the records were written
    /// (a real EIO needs a failing device; device-mapper is not available
    /// everywhere the tests run).
    #[cfg(test)]
    fail_fsync: bool,
}

#[derive(Debug)]
struct Compacting {
    /// Size and records of the rewritten log.
    task: std::thread::JoinHandle<std::io::Result<(u64, u64)>>,
    since: Vec<u8>,
    since_records: u64,
}

/// How far ahead the log is filled with zeros. Overwriting blocks that are
/// already allocated keeps the file size (the inode) unchanged, so a sync
/// flushes the data blocks only: one device write per batch, not two. Small
/// enough that the sync that also flushes a new stretch of zeros (every
/// ~2,500 records) delays its ACKs by a millisecond or two, not by tens.
const PREALLOC: u64 = 256 << 10;

/// Records kept for a store that cannot sync, beyond which they are
/// reduced to the last change of each address (what a replay keeps), so
/// that a long outage (a full disk) costs memory per lease, not per
/// request.
const PENDING_MAX: usize = 1 << 20;

const LOG: &str = "leases.log";

/// Create (or truncate) a file readable by the daemon only: leases are
/// personal data (MAC addresses, host names). The mode is set again on
/// the open file, since `mode()` does not apply to a file left over by a
/// crash, and the file becomes the log by a rename.
fn create_private(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::PermissionsExt;
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(f)
}

/// Remove the new log of a compaction that failed: on a full disk it
/// holds the room the log itself needs to go on (its next stretch of
/// zeros), until the next compaction would truncate it.
fn discard(tmp: &Path) {
    if let Err(e) = std::fs::remove_file(tmp) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %tmp.display(), error = %e, "lease log of a failed compaction not removed");
        }
    }
}

impl FileStore {
    pub fn new(dir: &Path) -> FileStore {
        FileStore {
            path: dir.join(LOG),
            file: None,
            buf: Vec::with_capacity(64 * 1024),
            records: 0,
            lsn: 0,
            end: 0,
            alloc: 0,
            positioned: false,
            clock: 0,
            compacting: None,
            dir_sync_pending: false,
            dirty: 0,
            #[cfg(test)]
            fail_fsync: false,
        }
    }

    fn err(&self, source: std::io::Error) -> StoreError {
        StoreError::Io {
            path: self.path.display().to_string(),
            source,
        }
    }

    fn open(&mut self) -> Result<&mut File, StoreError> {
        if self.file.is_none() {
            let mut opts = OpenOptions::new();
            opts.read(true).write(true).mode(0o600);
            let f = match opts.open(&self.path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let f = opts
                        .create_new(true)
                        .open(&self.path)
                        .map_err(|e| self.err(e))?;
                    // the new log's name is durable only with its
                    // directory (an fsync of the file does not sync the
                    // entry naming it): a power cut could otherwise take
                    // away the log with every batch synced into it
                    self.dir_sync_pending = true;
                    f
                }
                Err(e) => return Err(self.err(e)),
            };
            let len = f.metadata().map_err(|e| self.err(e))?.len();
            // without a load, the records end where the file ends
            if !self.positioned {
                self.end = len;
                self.alloc = len;
                self.positioned = true;
            }
            self.file = Some(f);
        }
        Ok(self.file.as_mut().expect("opened above"))
    }

    /// Sync the directory of the log, which makes a rename into it durable.
    fn sync_dir(&mut self) -> Result<(), StoreError> {
        if let Some(dir) = self.path.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| self.err(e))?;
        }
        self.dir_sync_pending = false;
        Ok(())
    }

    /// Put the complete, synced log `tmp` (`len` bytes, `records` records)
    /// in place of the current one. From the rename on the store writes to
    /// the new log whatever fails next: the old one is unlinked, and what
    /// went there would be lost at the next start. A directory sync that
    /// fails is retried by the next `sync`, which fails until it succeeds.
    fn install(&mut self, tmp: &Path, len: u64, records: u64) -> Result<(), StoreError> {
        std::fs::rename(tmp, &self.path).map_err(|e| {
            discard(tmp);
            self.err(e)
        })?;
        self.file = None;
        self.end = len;
        self.alloc = len;
        self.positioned = true;
        self.dirty = 0;
        self.records = records + self.buf.iter().filter(|b| **b == b'\n').count() as u64;
        self.dir_sync_pending = true;
        self.sync_dir()
    }

    /// Write `data` (complete records) as a new log and install it.
    fn rewrite(&mut self, data: &[u8], records: u64) -> Result<(), StoreError> {
        let tmp = self.path.with_extension("log.tmp");
        let write = || -> std::io::Result<()> {
            let mut f = create_private(&tmp)?;
            f.write_all(data)?;
            f.sync_all()
        };
        write().map_err(|e| {
            discard(&tmp);
            self.err(e)
        })?;
        self.install(&tmp, data.len() as u64, records)
    }

    /// Keep the log as found (a hard link, else a copy) before records of
    /// it are skipped; returns the name of the copy.
    fn keep_damaged(&self) -> Result<PathBuf, StoreError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut n = 0;
        loop {
            let mut name = format!("{LOG}.damaged-{now}");
            if n > 0 {
                name.push_str(&format!(".{n}"));
            }
            let copy = self.path.with_file_name(name);
            match std::fs::hard_link(&self.path, &copy) {
                Ok(()) => return Ok(copy),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
                // a file system without hard links
                Err(_) => {
                    if copy.exists() {
                        n += 1;
                        continue;
                    }
                    std::fs::copy(&self.path, &copy)
                        .and_then(|_| File::open(&copy)?.sync_all())
                        .map_err(|e| self.err(e))?;
                    return Ok(copy);
                }
            }
        }
    }
}

/// Lower-case hex digits.
const HEX: &[u8; 16] = b"0123456789abcdef";

fn push_hex(out: &mut Vec<u8>, b: &[u8]) {
    for x in b {
        out.push(HEX[usize::from(x >> 4)]);
        out.push(HEX[usize::from(x & 15)]);
    }
}

/// Percent-escape a field so it holds no space, newline or `%` (an empty
/// field is a lone `%`).
fn push_esc(out: &mut Vec<u8>, s: &str) {
    if s.is_empty() {
        out.push(b'%');
        return;
    }
    if s == "-" {
        // a field of "-" alone says "none": the text "-" is escaped
        out.extend_from_slice(b"%2d");
        return;
    }
    for b in s.bytes() {
        if b.is_ascii_graphic() && b != b'%' {
            out.push(b);
        } else {
            out.push(b'%');
            push_hex(out, &[b]);
        }
    }
}

fn unesc(s: &str) -> Option<String> {
    if s == "%" {
        return Some(String::new());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// One record line: `CRC BODY\n`, CRC being the CRC-32 of BODY in hex.
pub fn encode_record(c: &Change) -> String {
    let mut out = Vec::with_capacity(128);
    encode_record_into(c, &mut out);
    String::from_utf8(out).expect("records are ASCII")
}

/// [`encode_record`] appended to `out`, without a temporary allocation per
/// field (the writer thread encodes every lease change of every batch).
pub fn encode_record_into(c: &Change, out: &mut Vec<u8>) {
    use std::io::Write as _;
    let start = out.len();
    out.extend_from_slice(b"00000000 ");
    let body = out.len();
    // writes into a Vec cannot fail
    match c {
        Change::Upsert(l) => {
            let _ = write!(out, "U {} ", l.ip);
            push_esc(out, &l.pool);
            out.push(b' ');
            if l.hw.is_empty() {
                out.push(b'-');
            } else {
                push_hex(out, &l.hw);
            }
            out.push(b' ');
            match &l.client_id {
                Some(c) => push_hex(out, c),
                None => out.push(b'-'),
            }
            out.push(b' ');
            match &l.hostname {
                Some(h) => push_esc(out, h),
                None => out.push(b'-'),
            }
            let _ = write!(
                out,
                " {} {} {} {}",
                l.state.as_str(),
                l.lifetime,
                l.expires,
                l.origin.as_str()
            );
        }
        Change::Delete(ip) => {
            let _ = write!(out, "D {ip}");
        }
    }
    seal(out, start, body);
}

/// Write the checksum of the body that starts at `body` into the field at
/// `start`, and end the line.
fn seal(out: &mut Vec<u8>, start: usize, body: usize) {
    let crc = crc32fast::hash(&out[body..]);
    for (i, d) in out[start..start + 8].iter_mut().enumerate() {
        *d = HEX[((crc >> (28 - 4 * i)) & 15) as usize];
    }
    out.push(b'\n');
}

/// A marker line (`B lsn` or `S lsn`) appended to `out`.
fn encode_marker_into(r: &Record, out: &mut Vec<u8>) {
    use std::io::Write as _;
    let start = out.len();
    out.extend_from_slice(b"00000000 ");
    let body = out.len();
    let _ = match r {
        Record::Batch(lsn) => write!(out, "B {lsn}"),
        Record::Snapshot(lsn) => write!(out, "S {lsn}"),
        Record::Clock(offset) => write!(out, "C {offset}"),
        Record::Change(c) => {
            out.truncate(start);
            encode_record_into(c, out);
            return;
        }
    };
    seal(out, start, body);
}

/// Parse one change record line (without its newline); None when torn or
/// corrupt, or a marker.
pub fn decode_record(line: &str) -> Option<Change> {
    match decode_line(line)? {
        Record::Change(c) => Some(c),
        Record::Batch(_) | Record::Snapshot(_) | Record::Clock(_) => None,
    }
}

/// Parse one line (without its newline); None when torn or corrupt.
fn decode_line(line: &str) -> Option<Record> {
    let (crc, body) = line.split_once(' ')?;
    if u32::from_str_radix(crc, 16).ok()? != crc32fast::hash(body.as_bytes()) {
        return None;
    }
    let f: Vec<&str> = body.split(' ').collect();
    let c = match f.as_slice() {
        ["B", lsn] => return Some(Record::Batch(lsn.parse().ok()?)),
        ["S", lsn] => return Some(Record::Snapshot(lsn.parse().ok()?)),
        ["C", offset] => return Some(Record::Clock(offset.parse().ok()?)),
        ["D", ip] => Some(Change::Delete(ip.parse().ok()?)),
        ["U", ip, pool, hw, cid, host, state, life, exp, origin] => Some(Change::Upsert(Lease {
            ip: ip.parse().ok()?,
            pool: unesc(pool)?,
            hw: if *hw == "-" { Vec::new() } else { unhex(hw)? },
            client_id: if *cid == "-" { None } else { Some(unhex(cid)?) },
            hostname: if *host == "-" {
                None
            } else {
                Some(unesc(host)?)
            },
            state: LeaseState::parse(state)?,
            lifetime: life.parse().ok()?,
            expires: exp.parse().ok()?,
            origin: match *origin {
                "local" => Origin::Local,
                "peer" => Origin::Peer,
                _ => return None,
            },
        })),
        _ => None,
    };
    c.map(Record::Change)
}

/// [`decode_line`] of raw bytes (a damaged record need not be UTF-8).
fn decode_bytes(line: &[u8]) -> Option<Record> {
    decode_line(std::str::from_utf8(line).ok()?)
}

/// Whether `b` starts like a record: eight lower-case hex digits and a
/// space (the checksum field).
fn starts_record(b: &[u8]) -> bool {
    b.len() > 9 && b[8] == b' ' && b[..8].iter().all(|c| HEX.contains(c))
}

/// What one pass over the bytes of a log found.
#[derive(Debug, Default, PartialEq, Eq)]
struct Scan {
    /// Records decoded, recovered ones included.
    records: u64,
    /// End of the last line that held a valid record: the log is cut
    /// there.
    end: u64,
    /// Lines that failed their checksum (offset, length with the newline).
    damaged: Vec<(u64, u64)>,
    /// Records found inside damaged lines.
    recovered: u64,
    /// Bytes of a record torn by a crash: after the last newline, up to the
    /// zeros written ahead.
    torn: u64,
}

/// Replay the records of `data` in order. Records are lines, so a damaged
/// one costs only its line: the next record starts after the newline. A
/// damaged newline joins two records in one line; [`resync`] finds them.
fn scan(data: &[u8], mut apply: impl FnMut(Record)) -> Scan {
    let mut s = Scan::default();
    let mut pos = 0;
    while pos < data.len() {
        let Some(nl) = data[pos..].iter().position(|b| *b == b'\n') else {
            // no newline left: the zeros written ahead, or a record a crash
            // tore (its line never ends)
            let rest = &data[pos..];
            s.torn = rest
                .iter()
                .rposition(|b| *b != 0)
                .map_or(0, |i| i as u64 + 1);
            break;
        };
        let nl = pos + nl;
        let line = &data[pos..nl];
        if let Some(c) = decode_bytes(line) {
            apply(c);
            s.records += 1;
            s.end = nl as u64 + 1;
        } else {
            s.damaged.push((pos as u64, (nl + 1 - pos) as u64));
            let mut found = Vec::new();
            resync(line, &mut found);
            if !found.is_empty() {
                s.end = nl as u64 + 1;
            }
            s.recovered += found.len() as u64;
            s.records += found.len() as u64;
            found.into_iter().for_each(&mut apply);
        }
        pos = nl + 1;
    }
    s
}

/// The records inside a damaged line, in order. They are found from its
/// end: the last one is the shortest suffix that is a valid record, the
/// byte before it is the damaged newline, and so on towards the start.
/// One pass: a line of many joined records costs no more than its length
/// times the few record-like starts in each record.
fn resync(line: &[u8], out: &mut Vec<Record>) {
    let first = out.len();
    let mut end = line.len();
    let mut i = end;
    while i > 0 {
        i -= 1;
        if !starts_record(&line[i..end]) {
            continue;
        }
        if let Some(c) = decode_bytes(&line[i..end]) {
            out.push(c);
            if i == 0 {
                break;
            }
            end = i - 1;
            i = end;
        }
    }
    out[first..].reverse();
}

/// Apply a replayed record to a map of the live leases and the largest
/// LSN seen (a clock record is [`Replayed`]'s).
fn replay(map: &mut HashMap<Ipv4Addr, Lease>, lsn: &mut u64, r: Record) {
    match r {
        Record::Clock(_) => {}
        Record::Change(Change::Upsert(l)) => {
            map.insert(l.ip, l);
        }
        Record::Change(Change::Delete(ip)) => {
            map.remove(&ip);
        }
        Record::Batch(n) | Record::Snapshot(n) => *lsn = (*lsn).max(n),
    }
}

/// A whole log replayed: the live leases, the largest LSN, the last clock
/// record's offset (0 without one).
#[derive(Default)]
struct Replayed {
    map: HashMap<Ipv4Addr, Lease>,
    lsn: u64,
    clock: i64,
}

impl Replayed {
    fn add(&mut self, r: Record) {
        match r {
            Record::Clock(d) => self.clock = d,
            r => replay(&mut self.map, &mut self.lsn, r),
        }
    }
}

/// The records of `leases` as a snapshot of batch `lsn` (no marker for
/// LSN 0: a log without markers is that), then the clock record when
/// `clock` is not 0, and how many.
fn encode_all<'a>(leases: impl Iterator<Item = &'a Lease>, lsn: u64, clock: i64) -> (Vec<u8>, u64) {
    let mut data = Vec::new();
    let mut n = 0;
    if lsn > 0 {
        encode_marker_into(&Record::Snapshot(lsn), &mut data);
        n += 1;
    }
    if clock != 0 {
        encode_marker_into(&Record::Clock(clock), &mut data);
        n += 1;
    }
    for l in leases {
        encode_record_into(&Change::Upsert(l.clone()), &mut data);
        n += 1;
    }
    (data, n)
}

/// Records reduced to the last change of each address, in the order of
/// those last changes (a replay gives the same leases); and how many
/// records went.
fn coalesce(buf: &[u8]) -> (Vec<u8>, u64) {
    let lines: Vec<(Option<Ipv4Addr>, &[u8])> = buf
        .split_inclusive(|b| *b == b'\n')
        .map(|line| {
            let ip = match decode_bytes(line.strip_suffix(b"\n").unwrap_or(line)) {
                Some(Record::Change(Change::Upsert(l))) => Some(l.ip),
                Some(Record::Change(Change::Delete(ip))) => Some(ip),
                // markers stay where they are
                Some(Record::Batch(_) | Record::Snapshot(_) | Record::Clock(_)) | None => None,
            };
            (ip, line)
        })
        .collect();
    let mut last: HashMap<Ipv4Addr, usize> = HashMap::new();
    for (i, (ip, _)) in lines.iter().enumerate() {
        if let Some(ip) = ip {
            last.insert(*ip, i);
        }
    }
    let mut out = Vec::with_capacity(last.len() * 100);
    let mut dropped = 0;
    for (i, (ip, line)) in lines.iter().enumerate() {
        if ip.is_none_or(|ip| last[&ip] == i) {
            out.extend_from_slice(line);
        } else {
            dropped += 1;
        }
    }
    (out, dropped)
}

impl LeaseStore for FileStore {
    /// Replay the log. A record that fails its checksum is skipped and the
    /// records after it are kept; the log is then rewritten as the leases
    /// found, after a copy of it was kept (`leases.log.damaged-<time>`). A
    /// record torn by a crash at the end (its line never ends: the write
    /// stopped inside it) is only cut.
    fn load(&mut self) -> Result<Vec<Lease>, StoreError> {
        let data = match std::fs::read(&self.path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.err(e)),
        };
        let mut r = Replayed::default();
        let s = scan(&data, |x| r.add(x));
        let Replayed {
            mut map,
            lsn,
            clock,
        } = r;
        self.lsn = lsn;
        self.buf.clear();
        self.dirty = 0;
        self.clock = 0;
        if clock != 0 {
            // written on a lease clock `clock` s behind the wall clock (a
            // step while it ran): onto this start's lease clock
            for l in map.values_mut() {
                l.expires = shift_expiry(l.expires, l.lifetime, clock);
            }
            tracing::warn!(
                path = %self.path.display(),
                offset_s = clock,
                leases = map.len(),
                "lease log written while the wall clock was stepped: its lease times \
                 moved by the step, log rewritten"
            );
        }
        if !s.damaged.is_empty() || clock != 0 {
            if !s.damaged.is_empty() {
                let copy = self.keep_damaged()?;
                let at: Vec<String> = s
                    .damaged
                    .iter()
                    .take(8)
                    .map(|(off, len)| format!("{off}+{len}"))
                    .collect();
                tracing::warn!(
                    path = %self.path.display(),
                    copy = %copy.display(),
                    damaged = s.damaged.len(),
                    at = %at.join(","),
                    recovered = s.recovered,
                    torn = s.torn,
                    leases = map.len(),
                    "lease log has damaged records: skipped, copy kept, log rewritten"
                );
            }
            let (data, n) = encode_all(map.values(), lsn, 0);
            match self.rewrite(&data, n) {
                // the new log is in place; the next sync retries
                Err(e) if self.dir_sync_pending => {
                    tracing::warn!(error = %e, "lease log rewritten, directory not synced yet");
                }
                r => r?,
            }
        } else {
            if s.torn > 0 {
                tracing::warn!(
                    path = %self.path.display(),
                    kept = s.end,
                    dropped = s.torn,
                    "lease log ends in a torn record: cut"
                );
            }
            if s.end < data.len() as u64 {
                let f = OpenOptions::new()
                    .write(true)
                    .open(&self.path)
                    .map_err(|e| self.err(e))?;
                f.set_len(s.end).map_err(|e| self.err(e))?;
                f.sync_all().map_err(|e| self.err(e))?;
            }
            self.file = None;
            self.end = s.end;
            self.alloc = s.end;
            self.positioned = true;
            self.records = s.records;
        }
        Ok(map.into_values().collect())
    }

    fn clock_offset(&mut self, offset: i64) {
        encode_marker_into(&Record::Clock(offset), &mut self.buf);
        self.records += 1;
        self.clock = offset;
    }

    fn begin(&mut self, lsn: u64) {
        encode_marker_into(&Record::Batch(lsn), &mut self.buf);
        self.records += 1;
        self.lsn = lsn;
    }

    fn lsn(&self) -> u64 {
        self.lsn
    }

    fn log(&self) -> Option<LogReader> {
        Some(LogReader {
            path: self.path.clone(),
        })
    }

    fn append(&mut self, changes: &[Change]) -> Result<(), StoreError> {
        for c in changes {
            encode_record_into(c, &mut self.buf);
        }
        self.records += changes.len() as u64;
        Ok(())
    }

    /// Write what was appended after the durable records and sync it. A
    /// failed sync makes nothing durable that the caller may acknowledge:
    /// its records stay pending and the next sync writes them again from
    /// the same place (with whatever was appended since), on a file
    /// opened anew, so the log never holds a later batch followed by the
    /// rest of an earlier one.
    fn sync(&mut self) -> Result<(), StoreError> {
        use std::os::unix::fs::FileExt;
        if self.dir_sync_pending {
            self.sync_dir()?;
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        self.open()?;
        if self.dir_sync_pending {
            // the log was created just now
            self.sync_dir()?;
        }
        let (end, alloc, dirty) = (self.end, self.alloc, self.dirty);
        #[cfg(test)]
        let fail_fsync = std::mem::take(&mut self.fail_fsync);
        let buf = &self.buf;
        let f = self.file.as_mut().expect("opened above");
        let need = end + buf.len() as u64;
        let mut new_alloc = alloc;
        let r = (|| -> std::io::Result<()> {
            if need > alloc {
                // write zeros ahead (real blocks, not a hole or an unwritten
                // extent, so later overwrites change no metadata)
                let target = (need + PREALLOC).next_multiple_of(4096);
                let zeros = vec![0u8; PREALLOC as usize];
                let mut at = alloc;
                while at < target {
                    let n = (target - at).min(zeros.len() as u64) as usize;
                    f.write_all_at(&zeros[..n], at)?;
                    at += n as u64;
                }
                new_alloc = target;
            }
            f.write_all_at(buf, end)?;
            if dirty > need {
                // a failed sync wrote further (before its records were
                // reduced): none of that may follow these records
                f.write_all_at(&vec![0u8; (dirty - need) as usize], need)?;
            }
            #[cfg(test)]
            if fail_fsync {
                return Err(std::io::Error::from_raw_os_error(libc::EIO));
            }
            if new_alloc != alloc {
                f.sync_all()
            } else {
                f.sync_data()
            }
        })();
        if let Err(e) = r {
            // the descriptor may be what failed; after a failed fsync Linux
            // may also have marked the written pages clean: the next sync
            // writes them again, and the zeros ahead with the file size
            self.file = None;
            self.dirty = dirty.max(need);
            if self.buf.len() > PENDING_MAX {
                let (b, dropped) = coalesce(&self.buf);
                self.buf = b;
                self.records -= dropped;
            }
            return Err(self.err(e));
        }
        self.end = need;
        self.alloc = new_alloc;
        self.dirty = 0;
        if let Some(c) = &mut self.compacting {
            c.since.extend_from_slice(&self.buf);
            c.since_records += self.buf.iter().filter(|b| **b == b'\n').count() as u64;
        }
        self.buf.clear();
        Ok(())
    }

    fn compact(&mut self, live: &[Lease]) -> Result<(), StoreError> {
        self.sync()?;
        let (data, n) = encode_all(live.iter(), self.lsn, self.clock);
        self.rewrite(&data, n)
    }

    fn records(&self) -> u64 {
        self.records
    }

    /// The helper thread replays the log up to its current end (durable,
    /// complete records) and writes the live leases to a new file: the
    /// actor copies nothing, and the helper runs at the lowest priority so
    /// that, on a busy core, serving goes first.
    fn compact_start(&mut self) -> Result<(), StoreError> {
        if self.compacting.is_some() {
            return Ok(());
        }
        self.sync()?;
        let tmp = self.path.with_extension("log.tmp");
        let path = self.path.clone();
        let upto = self.end;
        let task = std::thread::Builder::new()
            .name("lease-compact".into())
            .spawn(move || -> std::io::Result<(u64, u64)> {
                super::os::background_priority();
                let mut log = Vec::with_capacity(upto as usize);
                File::open(&path)?.take(upto).read_to_end(&mut log)?;
                let mut r = Replayed::default();
                let s = scan(&log, |x| r.add(x));
                let Replayed { map, lsn, clock } = r;
                if !s.damaged.is_empty() {
                    // the next start keeps a copy before it skips them
                    return Err(std::io::Error::other(format!(
                        "{} damaged records in the log: not compacted",
                        s.damaged.len()
                    )));
                }
                let (data, records) = encode_all(map.values(), lsn, clock);
                let write = || -> std::io::Result<()> {
                    let mut f = create_private(&tmp)?;
                    f.write_all(&data)?;
                    f.sync_all()
                };
                write().inspect_err(|_| discard(&tmp))?;
                Ok((data.len() as u64, records))
            })
            .map_err(|e| self.err(e))?;
        self.compacting = Some(Compacting {
            task,
            since: Vec::new(),
            since_records: 0,
        });
        Ok(())
    }

    fn compact_poll(&mut self) -> Result<bool, StoreError> {
        if !self
            .compacting
            .as_ref()
            .is_some_and(|c| c.task.is_finished())
        {
            return Ok(self.compacting.is_none());
        }
        let c = self.compacting.take().expect("checked above");
        let tmp = self.path.with_extension("log.tmp");
        let (len, live_records) = match c.task.join() {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(self.err(e)),
            Err(_) => {
                discard(&tmp);
                return Err(self.err(std::io::Error::other("compaction thread panicked")));
            }
        };
        // the records synced meanwhile follow the snapshot, then the new
        // log replaces the old one in one rename
        let finish = || -> std::io::Result<()> {
            use std::os::unix::fs::FileExt;
            let f = OpenOptions::new().write(true).open(&tmp)?;
            f.write_all_at(&c.since, len)?;
            f.sync_all()
        };
        finish().map_err(|e| {
            discard(&tmp);
            self.err(e)
        })?;
        self.install(
            &tmp,
            len + c.since.len() as u64,
            live_records + c.since_records,
        )?;
        Ok(true)
    }
}
/// What a replica that fell behind gets from the log, in log order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Logged {
    /// Sync batch `lsn`: its changes, in order.
    Batch { lsn: u64, changes: Vec<Change> },
    /// The log no longer goes back far enough (it was compacted since):
    /// every live lease as of batch `lsn`, to reconcile with, after which
    /// the batches follow.
    Snapshot { lsn: u64, leases: Vec<Lease> },
}

/// Reads the lease log of a [`FileStore`] from another thread (the file is
/// replaced whole by a compaction, appended to otherwise, so any one read
/// of it is a consistent log).
#[derive(Debug, Clone)]
pub struct LogReader {
    path: PathBuf,
}

impl LogReader {
    /// The batches after `after` up to `upto` (batches past `upto` may be
    /// partly written: they are not read), or a snapshot first when the
    /// log starts past `after`. Records before the first batch marker of a
    /// log that has no snapshot marker (written before markers existed)
    /// belong to no batch and are not returned. Blocking: reads the whole
    /// log.
    pub fn read(&self, after: u64, upto: u64) -> Result<Vec<Logged>, StoreError> {
        let err = |source| StoreError::Io {
            path: self.path.display().to_string(),
            source,
        };
        let data = std::fs::read(&self.path).map_err(err)?;
        // the log's first section: a snapshot, or records of no batch
        let mut base = 0;
        let mut map: HashMap<Ipv4Addr, Lease> = HashMap::new();
        let mut out = Vec::new();
        // the batch being read: whether it is sent, and its changes
        let mut cur: Option<(u64, Vec<Change>)> = None;
        let mut in_base = true;
        scan(&data, |r| match r {
            Record::Clock(_) => {}
            Record::Snapshot(n) => base = n,
            Record::Batch(n) => {
                in_base = false;
                if let Some((lsn, changes)) = cur.take() {
                    out.push(Logged::Batch { lsn, changes });
                }
                if n > after && n <= upto {
                    cur = Some((n, Vec::new()));
                }
            }
            Record::Change(c) => {
                if in_base {
                    let mut lsn = 0;
                    replay(&mut map, &mut lsn, Record::Change(c));
                } else if let Some((_, changes)) = &mut cur {
                    changes.push(c);
                }
            }
        });
        if let Some((lsn, changes)) = cur.take() {
            out.push(Logged::Batch { lsn, changes });
        }
        if after < base {
            out.insert(
                0,
                Logged::Snapshot {
                    lsn: base,
                    leases: map.into_values().collect(),
                },
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn lease(ip: &str, mac: u8, state: LeaseState, expires: u64) -> Lease {
        Lease {
            ip: ip.parse().unwrap(),
            pool: "p 1%".into(),
            hw: vec![2, 0, 0, 0, 0, mac],
            client_id: if mac.is_multiple_of(2) {
                Some(vec![1, 2, mac])
            } else {
                None
            },
            hostname: Some("host name".into()),
            state,
            lifetime: 3600,
            expires,
            origin: Origin::Local,
        }
    }

    /// The record format as first written (one `format!` per field): the
    /// encoder must keep producing exactly these bytes.
    fn reference_record(c: &Change) -> String {
        fn esc(s: &str) -> String {
            let mut o = String::new();
            for b in s.bytes() {
                if b.is_ascii_graphic() && b != b'%' {
                    o.push(b as char);
                } else {
                    o.push_str(&format!("%{b:02x}"));
                }
            }
            if o.is_empty() {
                o.push('%');
            }
            if o == "-" {
                o = "%2d".into();
            }
            o
        }
        fn hex(b: &[u8]) -> String {
            b.iter().map(|x| format!("{x:02x}")).collect()
        }
        let body = match c {
            Change::Upsert(l) => format!(
                "U {} {} {} {} {} {} {} {} {}",
                l.ip,
                esc(&l.pool),
                if l.hw.is_empty() {
                    "-".into()
                } else {
                    hex(&l.hw)
                },
                l.client_id
                    .as_deref()
                    .map(hex)
                    .unwrap_or_else(|| "-".into()),
                l.hostname.as_deref().map(esc).unwrap_or_else(|| "-".into()),
                l.state.as_str(),
                l.lifetime,
                l.expires,
                l.origin.as_str(),
            ),
            Change::Delete(ip) => format!("D {ip}"),
        };
        format!("{:08x} {body}\n", crc32fast::hash(body.as_bytes()))
    }

    #[test]
    fn record_bytes_match_the_original_format() {
        let mut odd = lease("10.0.0.7", 3, LeaseState::Declined, 99);
        odd.pool = "p%o ol\u{e9}".into();
        odd.hw = Vec::new();
        odd.hostname = Some(String::new());
        odd.origin = Origin::Peer;
        odd.lifetime = u32::MAX;
        odd.expires = u64::MAX;
        let mut plain = lease("192.168.10.250", 0xab, LeaseState::Bound, 1_800_000_000);
        plain.hostname = None;
        for c in [
            Change::Upsert(lease("10.0.0.5", 4, LeaseState::Bound, 1234)),
            Change::Upsert(odd),
            Change::Upsert(plain),
            Change::Delete("10.0.0.5".parse().unwrap()),
        ] {
            assert_eq!(encode_record(&c), reference_record(&c));
            let mut buf = b"prefix ".to_vec();
            encode_record_into(&c, &mut buf);
            assert_eq!(&buf[7..], reference_record(&c).as_bytes());
        }
    }

    #[test]
    fn is_client_agrees_with_key_equality() {
        let with_cid = lease("10.0.0.1", 2, LeaseState::Bound, 10);
        let no_cid = lease("10.0.0.2", 3, LeaseState::Bound, 10);
        let mut empty_cid = no_cid.clone();
        empty_cid.client_id = Some(Vec::new());
        let all = [with_cid, no_cid, empty_cid];
        let keys = [
            ClientKey::new(Some(&[1, 2, 2]), &[]),
            ClientKey::new(None, &all[1].hw),
            ClientKey::new(None, &all[0].hw),
            ClientKey::new(Some(&all[1].hw), &[]),
            ClientKey::new(None, &[]),
        ];
        for l in &all {
            for k in keys.iter().chain([&l.key()]) {
                assert_eq!(l.is_client(k), l.key() == *k, "{l:?} {k:?}");
            }
        }
    }

    /// Found by fuzzing (`fuzz/corpus/dhcp/regression-hostname-dash`): a
    /// client that calls itself "-" read back with no hostname after a
    /// restart, "-" being the record's mark for none.
    #[test]
    fn a_hostname_or_pool_of_a_dash_is_not_read_back_as_none() {
        let mut l = lease("10.0.0.5", 4, LeaseState::Bound, 1234);
        l.hostname = Some("-".into());
        l.pool = "-".into();
        let r = encode_record(&Change::Upsert(l.clone()));
        assert_eq!(
            decode_record(r.trim_end()),
            Some(Change::Upsert(l.clone())),
            "{r}"
        );
        assert_eq!(r, reference_record(&Change::Upsert(l.clone())));
        l.hostname = Some("--".into());
        let r = encode_record(&Change::Upsert(l.clone()));
        assert_eq!(decode_record(r.trim_end()), Some(Change::Upsert(l)), "{r}");
    }

    #[test]
    fn records_round_trip_and_reject_corruption() {
        let l = lease("10.0.0.5", 4, LeaseState::Bound, 1234);
        let r = encode_record(&Change::Upsert(l.clone()));
        assert_eq!(decode_record(r.trim_end()), Some(Change::Upsert(l.clone())));
        let mut bad = r.clone().into_bytes();
        bad[20] ^= 1;
        assert_eq!(
            decode_record(String::from_utf8_lossy(&bad).trim_end()),
            None
        );
        let d = encode_record(&Change::Delete("10.0.0.5".parse().unwrap()));
        assert_eq!(
            decode_record(d.trim_end()),
            Some(Change::Delete("10.0.0.5".parse().unwrap()))
        );
    }

    #[test]
    fn file_store_survives_torn_tail_and_compacts() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = FileStore::new(dir.path());
        assert!(s.load().unwrap().is_empty());
        let a = lease("10.0.0.5", 4, LeaseState::Bound, 100);
        let b = lease("10.0.0.6", 5, LeaseState::Bound, 100);
        s.append(&[Change::Upsert(a.clone()), Change::Upsert(b.clone())])
            .unwrap();
        s.append(&[Change::Delete(b.ip)]).unwrap();
        s.sync().unwrap();
        // a crash in the middle of a write
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(LOG))
            .unwrap();
        f.write_all(b"0badc0de U 10.0.0.7 p").unwrap();
        drop(f);
        let mut s = FileStore::new(dir.path());
        assert_eq!(s.load().unwrap(), vec![a.clone()]);
        // appends after the cut are readable
        s.append(&[Change::Upsert(b.clone())]).unwrap();
        s.sync().unwrap();
        let mut s = FileStore::new(dir.path());
        let mut got = s.load().unwrap();
        got.sort_by_key(|l| l.ip);
        assert_eq!(got, vec![a.clone(), b.clone()]);
        s.compact(std::slice::from_ref(&b)).unwrap();
        s.append(&[Change::Upsert(a.clone())]).unwrap();
        s.sync().unwrap();
        let mut s = FileStore::new(dir.path());
        let mut got = s.load().unwrap();
        got.sort_by_key(|l| l.ip);
        assert_eq!(got, vec![a, b]);
        assert_eq!(s.records(), 2);
    }

    #[test]
    fn preallocated_log_keeps_size_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOG);
        let mut s = FileStore::new(dir.path());
        s.load().unwrap();
        let a = lease("10.0.0.5", 4, LeaseState::Bound, 100);
        s.append(&[Change::Upsert(a.clone())]).unwrap();
        s.sync().unwrap();
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(size >= PREALLOC, "zeros written ahead");
        let b = lease("10.0.0.6", 5, LeaseState::Bound, 100);
        s.append(&[Change::Upsert(b.clone())]).unwrap();
        s.sync().unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            size,
            "no growth: no inode write"
        );
        // a store opened without a load appends after the records
        drop(s);
        let mut s = FileStore::new(dir.path());
        let mut got = s.load().unwrap();
        got.sort_by_key(|l| l.ip);
        assert_eq!(got, vec![a.clone(), b.clone()]);
        let c = lease("10.0.0.7", 6, LeaseState::Bound, 100);
        s.append(&[Change::Upsert(c.clone())]).unwrap();
        s.sync().unwrap();
        let mut s = FileStore::new(dir.path());
        assert_eq!(s.load().unwrap().len(), 3);
    }

    /// Leases are personal data: the log is 0600 whatever the umask, when
    /// created, rewritten, and compacted in the background (the rename
    /// makes the temporary file the log, with its mode), even over a
    /// temporary file a crash left open to others.
    #[test]
    fn lease_log_is_private_through_every_rewrite() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOG);
        let mut s = FileStore::new(dir.path());
        s.load().unwrap();
        let a = lease("10.0.0.5", 4, LeaseState::Bound, 100);
        s.append(&[Change::Upsert(a.clone())]).unwrap();
        s.sync().unwrap();
        assert_eq!(mode(&path), 0o600, "created");
        s.compact(std::slice::from_ref(&a)).unwrap();
        assert_eq!(mode(&path), 0o600, "rewritten");
        let tmp = path.with_extension("log.tmp");
        std::fs::write(&tmp, b"left by a crash").unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
        s.compact_start().unwrap();
        while !s.compact_poll().unwrap() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(mode(&path), 0o600, "compacted");
        assert_eq!(FileStore::new(dir.path()).load().unwrap(), vec![a]);
    }

    #[test]
    fn background_compaction_keeps_what_was_synced_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = FileStore::new(dir.path());
        s.load().unwrap();
        let a = lease("10.0.0.5", 4, LeaseState::Bound, 100);
        let b = lease("10.0.0.6", 5, LeaseState::Bound, 100);
        for _ in 0..50 {
            s.append(&[Change::Upsert(a.clone()), Change::Upsert(b.clone())])
                .unwrap();
            s.sync().unwrap();
        }
        s.compact_start().unwrap();
        // while the snapshot is written: a change and a deletion
        let mut a2 = a.clone();
        a2.state = LeaseState::Released;
        s.append(&[Change::Upsert(a2.clone()), Change::Delete(b.ip)])
            .unwrap();
        s.sync().unwrap();
        while !s.compact_poll().unwrap() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(s.records(), 4);
        let c = lease("10.0.0.7", 6, LeaseState::Bound, 100);
        s.append(&[Change::Upsert(c.clone())]).unwrap();
        s.sync().unwrap();
        let mut s = FileStore::new(dir.path());
        let mut got = s.load().unwrap();
        got.sort_by_key(|l| l.ip);
        assert_eq!(got, vec![a2, c]);
        assert_eq!(s.records(), 5);
        assert!(!dir.path().join("leases.log.tmp").exists());
    }

    /// A step of the wall clock while the daemon ran is stored with the
    /// leases (`C offset`), carried by a compaction, and at the next load
    /// every lease moves by it (their lease clock was `offset` s behind
    /// the wall clock, the new one is the wall clock) and the log is
    /// rewritten without it: a second load moves nothing. Infinite leases
    /// keep being infinite; a step back to 0 moves nothing.
    #[test]
    fn a_clock_step_moves_the_stored_leases_once_at_the_next_load() {
        let dir = tempfile::tempdir().unwrap();
        let a = lease("10.0.0.1", 1, LeaseState::Bound, 1_800_000_000);
        let mut inf = lease("10.0.0.2", 2, LeaseState::Bound, 0);
        inf.lifetime = u32::MAX;
        inf.expires = infinite_expiry(1_799_990_000);
        let mut s = FileStore::new(dir.path());
        s.load().unwrap();
        s.begin(1);
        s.append(&[Change::Upsert(a.clone()), Change::Upsert(inf.clone())])
            .unwrap();
        s.clock_offset(3600);
        s.sync().unwrap();
        // a lease granted after the step, on the same lease clock
        let b = lease("10.0.0.3", 3, LeaseState::Bound, 1_800_000_100);
        s.begin(2);
        s.append(&[Change::Upsert(b.clone())]).unwrap();
        s.sync().unwrap();
        // a compaction keeps the offset
        s.compact(&[a.clone(), inf.clone(), b.clone()]).unwrap();
        drop(s);
        let text = std::fs::read_to_string(dir.path().join(LOG)).unwrap();
        assert!(text.contains(" C 3600\n"), "{text}");
        let moved = |l: &Lease, by: u64| Lease {
            expires: l.expires + by,
            ..l.clone()
        };
        let want = vec![moved(&a, 3600), moved(&inf, 3600), moved(&b, 3600)];
        assert_eq!(loaded(dir.path()), want);
        assert_eq!(want[1].expires, infinite_expiry(1_799_993_600));
        // rewritten: nothing moves twice
        assert_eq!(loaded(dir.path()), want);
        let text = std::fs::read_to_string(dir.path().join(LOG)).unwrap();
        assert!(!text.contains(" C "), "{text}");

        // -1 h: the leases move back by it
        let dir = tempfile::tempdir().unwrap();
        let mut s = FileStore::new(dir.path());
        s.load().unwrap();
        s.append(&[Change::Upsert(a.clone())]).unwrap();
        s.clock_offset(-3600);
        s.sync().unwrap();
        let mut back = a.clone();
        back.expires -= 3600;
        assert_eq!(loaded(dir.path()), vec![back]);
        // -1 h, then back to 0 before the restart: nothing moves
        let dir = tempfile::tempdir().unwrap();
        let mut s = FileStore::new(dir.path());
        s.load().unwrap();
        s.append(&[Change::Upsert(a.clone())]).unwrap();
        s.clock_offset(-3600);
        s.sync().unwrap();
        s.clock_offset(0);
        s.sync().unwrap();
        assert_eq!(loaded(dir.path()), vec![a.clone()]);
        // a log without a clock record loads as it always did
        let dir = tempfile::tempdir().unwrap();
        let mut s = FileStore::new(dir.path());
        s.load().unwrap();
        s.append(&[Change::Upsert(a.clone())]).unwrap();
        s.sync().unwrap();
        assert_eq!(loaded(dir.path()), vec![a.clone()]);
    }

    #[test]
    fn shift_expiry_moves_times_and_keeps_infinite_leases_infinite() {
        assert_eq!(shift_expiry(1000, 60, 3600), 4600);
        assert_eq!(shift_expiry(4600, 60, -3600), 1000);
        assert_eq!(shift_expiry(1000, 60, -5000), 0);
        assert_eq!(shift_expiry(1000, 60, i64::MAX), INFINITE - 1);
        assert_eq!(shift_expiry(u64::MAX, u32::MAX, 3600), u64::MAX);
        assert_eq!(
            shift_expiry(infinite_expiry(1000), u32::MAX, 3600),
            infinite_expiry(4600)
        );
        assert_eq!(shift_expiry(1000, 60, 0), 1000);
    }

    /// A log of one record per lease of `ips` (addresses 10.0.0.x), as the
    /// store writes it; returns the leases and each record's offset.
    fn log_of(dir: &Path, ips: &[u8]) -> (Vec<Lease>, Vec<usize>) {
        let mut s = FileStore::new(dir);
        s.load().unwrap();
        let leases: Vec<Lease> = ips
            .iter()
            .map(|i| lease(&format!("10.0.0.{i}"), *i, LeaseState::Bound, 100))
            .collect();
        for l in &leases {
            s.append(&[Change::Upsert(l.clone())]).unwrap();
        }
        s.sync().unwrap();
        let data = std::fs::read(dir.join(LOG)).unwrap();
        let mut at = vec![0];
        at.extend(
            data.iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i + 1)
                .take(ips.len() - 1),
        );
        (leases, at)
    }

    fn copies(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains(".damaged-"))
            .collect();
        v.sort();
        v
    }

    fn loaded(dir: &Path) -> Vec<Lease> {
        let mut got = FileStore::new(dir).load().unwrap();
        got.sort_by_key(|l| l.ip);
        got
    }

    /// One damaged record in the middle of the log costs that record
    /// only: the ones after it load, a copy of the file as found is kept,
    /// and the log is rewritten clean (the next load finds nothing to
    /// skip and keeps no second copy).
    #[test]
    fn damaged_record_is_skipped_and_the_records_after_it_load() {
        // what is damaged in the third record (the log, where the record
        // starts, where its newline is), whether the record survives
        type Damage = fn(&mut Vec<u8>, usize, usize);
        let cases: [(&str, Damage, bool); 4] = [
            ("payload byte", |d, at, _| d[at + 12] ^= 0x20, false),
            ("checksum field", |d, at, _| d[at] = b'z', false),
            // the framing: two records run into one line
            ("newline", |d, _, nl| d[nl] = b'x', true),
            ("newline to NUL", |d, _, nl| d[nl] = 0, true),
        ];
        for (what, damage, survives) in cases {
            let dir = tempfile::tempdir().unwrap();
            let (leases, at) = log_of(dir.path(), &[1, 2, 3, 4, 5, 6]);
            let path = dir.path().join(LOG);
            let mut data = std::fs::read(&path).unwrap();
            damage(&mut data, at[2], at[3] - 1);
            std::fs::write(&path, &data).unwrap();
            let want: Vec<Lease> = leases
                .iter()
                .filter(|l| survives || l.ip != leases[2].ip)
                .cloned()
                .collect();
            assert_eq!(loaded(dir.path()), want, "{what}");
            let kept = copies(dir.path());
            assert_eq!(kept.len(), 1, "{what}: one copy kept");
            assert_eq!(std::fs::read(&kept[0]).unwrap(), data, "{what}: as found");
            // rewritten clean: the next load skips nothing
            assert_eq!(loaded(dir.path()), want, "{what}");
            assert_eq!(copies(dir.path()).len(), 1, "{what}");
        }
    }

    /// Damaged newlines join records into one line; each is found, in
    /// order, and a record damaged itself costs only itself.
    #[test]
    fn joined_records_are_found_in_order() {
        let recs: Vec<Change> = (1..=4u8)
            .map(|i| Change::Upsert(lease(&format!("10.0.0.{i}"), i, LeaseState::Bound, 100)))
            .collect();
        let mut data = Vec::new();
        for c in &recs {
            encode_record_into(c, &mut data);
        }
        let nl: Vec<usize> = (0..data.len()).filter(|i| data[*i] == b'\n').collect();
        data[nl[0]] = b'#';
        data[nl[1]] = 0xff;
        let recs: Vec<Record> = recs.into_iter().map(Record::Change).collect();
        let mut got = Vec::new();
        let s = scan(&data, |c| got.push(c));
        assert_eq!(got, recs);
        assert_eq!((s.damaged.len(), s.recovered, s.records), (1, 3, 4));
        data[3] ^= 1;
        got.clear();
        let s = scan(&data, |c| got.push(c));
        assert_eq!(got, recs[1..]);
        assert_eq!((s.damaged.len(), s.recovered, s.torn), (1, 2, 0));
    }

    /// A torn last record (a crash inside a write) is cut without a copy;
    /// damage anywhere else is not a torn tail.
    #[test]
    fn only_a_torn_tail_is_cut_without_a_copy() {
        let dir = tempfile::tempdir().unwrap();
        let (leases, _) = log_of(dir.path(), &[1, 2, 3]);
        let path = dir.path().join(LOG);
        let mut data = std::fs::read(&path).unwrap();
        let end = data.iter().rposition(|b| *b == b'\n').unwrap() + 1;
        let torn = encode_record(&Change::Upsert(lease("10.0.0.9", 9, LeaseState::Bound, 1)));
        data[end..end + 30].copy_from_slice(&torn.as_bytes()[..30]);
        std::fs::write(&path, &data).unwrap();
        assert_eq!(loaded(dir.path()), leases);
        assert!(copies(dir.path()).is_empty());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), end as u64);
        // a complete last record that fails its checksum is damage
        let mut data = std::fs::read(&path).unwrap();
        data[end - 5] ^= 1;
        std::fs::write(&path, &data).unwrap();
        assert_eq!(loaded(dir.path()), leases[..2]);
        assert_eq!(copies(dir.path()).len(), 1);
    }

    #[test]
    fn pending_records_reduce_to_the_last_change_of_each_address() {
        let a = lease("10.0.0.1", 1, LeaseState::Bound, 100);
        let b = lease("10.0.0.2", 2, LeaseState::Bound, 100);
        let mut a2 = a.clone();
        a2.state = LeaseState::Released;
        let mut buf = Vec::new();
        for c in [
            Change::Upsert(a.clone()),
            Change::Upsert(b.clone()),
            Change::Upsert(a2.clone()),
            Change::Delete(b.ip),
        ] {
            encode_record_into(&c, &mut buf);
        }
        let (out, dropped) = coalesce(&buf);
        assert_eq!(dropped, 2);
        let mut want = Vec::new();
        encode_record_into(&Change::Upsert(a2), &mut want);
        encode_record_into(&Change::Delete(b.ip), &mut want);
        assert_eq!(out, want);
    }

    /// After a failed fsync (EIO, the records written) the store keeps
    /// the batch and, after a long outage, reduces it; the next sync is
    /// then shorter than what the failed one wrote, and must leave none of
    /// that behind it: a reload would replay it after the newer records.
    #[test]
    fn a_shorter_sync_after_a_failed_one_leaves_nothing_stale() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = FileStore::new(dir.path());
        s.load().unwrap();
        let x = lease("10.0.0.5", 4, LeaseState::Bound, 100);
        s.append(&[Change::Upsert(x.clone())]).unwrap();
        s.sync().unwrap();
        // an outage: many changes of a few addresses, past PENDING_MAX
        let mut batch = Vec::new();
        for i in 0..20_000u32 {
            let mut l = x.clone();
            l.ip = Ipv4Addr::from(0x0a00_0100 + i % 4);
            l.expires = u64::from(i);
            batch.push(Change::Upsert(l));
        }
        batch.push(Change::Delete(x.ip));
        s.append(&batch).unwrap();
        s.fail_fsync = true;
        assert!(s.sync().is_err());
        assert!(s.buf.len() < 1000, "reduced to one change per address");
        // x granted again after the failed batch deleted it
        s.append(&[Change::Upsert(x.clone())]).unwrap();
        s.sync().unwrap();
        let got = loaded(dir.path());
        assert!(copies(dir.path()).is_empty(), "nothing damaged");
        assert_eq!(got.len(), 5);
        assert_eq!(got[0], x);
        assert!(got[1..].iter().all(|l| l.expires >= 19_996), "{got:?}");
    }

    /// Run `body` in a child process of this test binary, started through
    /// `wrap` (a command that takes a right away or gives a namespace), so
    /// that a real fault can be set up without touching the other tests.
    /// Skipped unless root (the wrappers need it).
    pub(crate) fn in_child(test: &str, wrap: &[&str], body: impl FnOnce()) {
        const VAR: &str = "HOTLEASE_TEST_CHILD";
        if std::env::var(VAR).as_deref() == Ok(test) {
            body();
            return;
        }
        use std::os::unix::fs::MetadataExt;
        if std::fs::metadata("/proc/self").map(|m| m.uid()).ok() != Some(0) {
            eprintln!("skipped: needs root");
            return;
        }
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(wrap[0])
            .args(&wrap[1..])
            .arg(exe)
            .args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env(VAR, test)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "child {test}: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Mount a 1 MiB tmpfs on `dir` (in an `in_child` test wrapped in
    /// `unshare --mount`, so that it never shows outside): a disk that
    /// really fills up.
    pub(crate) fn mount_small_tmpfs(dir: &std::path::Path) {
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(ok.success(), "mount tmpfs");
    }

    /// Item 9 of issue 9: the directory sync after the rename of a
    /// compacted log fails (a real EACCES: the child runs as root without
    /// CAP_DAC_OVERRIDE and the directory loses its read permission).
    /// The store writes to the new log from the rename on, refuses to call
    /// a batch durable until the directory sync succeeds, and the batches
    /// survive a reload.
    #[test]
    fn compaction_switches_to_the_new_log_when_the_directory_sync_fails() {
        in_child(
            "dhcp::leases::tests::compaction_switches_to_the_new_log_when_the_directory_sync_fails",
            &[
                "setpriv",
                "--bounding-set=-dac_override,-dac_read_search",
                "--inh-caps=-dac_override,-dac_read_search",
            ],
            || {
                use std::os::unix::fs::PermissionsExt;
                let dir = tempfile::tempdir().unwrap();
                let d = dir.path();
                let mode = |m: u32| {
                    std::fs::set_permissions(d, std::fs::Permissions::from_mode(m)).unwrap()
                };
                let a = lease("10.0.0.5", 4, LeaseState::Bound, 100);
                let b = lease("10.0.0.6", 5, LeaseState::Bound, 100);
                let c = lease("10.0.0.7", 6, LeaseState::Bound, 100);
                let mut s = FileStore::new(d);
                s.load().unwrap();
                s.append(&[Change::Upsert(a.clone()), Change::Upsert(b.clone())])
                    .unwrap();
                s.sync().unwrap();
                // background compaction: the helper is done, then the
                // directory cannot be opened for its sync
                s.compact_start().unwrap();
                while !s.compacting.as_ref().unwrap().task.is_finished() {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                mode(0o300);
                assert!(File::open(d).is_err(), "the fault is real");
                assert!(s.compact_poll().is_err());
                s.append(&[Change::Delete(a.ip)]).unwrap();
                assert!(s.sync().is_err(), "not durable before the directory is");
                mode(0o700);
                s.sync().unwrap();
                assert_eq!(loaded(d), vec![b.clone()]);
                // the same with the compaction in the caller's thread
                let mut s = FileStore::new(d);
                s.load().unwrap();
                mode(0o300);
                assert!(s.compact(std::slice::from_ref(&b)).is_err());
                s.append(&[Change::Upsert(c.clone())]).unwrap();
                assert!(s.sync().is_err());
                mode(0o700);
                s.sync().unwrap();
                s.append(&[Change::Upsert(a.clone())]).unwrap();
                s.sync().unwrap();
                assert_eq!(loaded(d), vec![a, b, c]);
            },
        );
    }

    /// Item 10 of issue 9: a sync that fails for a full file system
    /// (a real ENOSPC on a small tmpfs, mounted in a private mount
    /// namespace) reports the batch not durable; a later, shorter batch
    /// succeeds once there is room, and a reload finds every change in
    /// order: the failed batch's deletion is not lost (the record it
    /// deleted does not come back) and nothing stale follows.
    #[test]
    fn failed_sync_acknowledges_nothing_and_brings_back_no_stale_record() {
        in_child(
            "dhcp::leases::tests::failed_sync_acknowledges_nothing_and_brings_back_no_stale_record",
            &["unshare", "--mount", "--propagation", "private"],
            || {
                let dir = tempfile::tempdir().unwrap();
                let d = dir.path();
                mount_small_tmpfs(d);
                let x = lease("10.0.0.5", 4, LeaseState::Bound, 100);
                let y = lease("10.0.0.6", 5, LeaseState::Bound, 100);
                let mut s = FileStore::new(d);
                s.load().unwrap();
                s.append(&[Change::Upsert(x.clone()), Change::Upsert(y.clone())])
                    .unwrap();
                s.sync().unwrap();
                // fill the file system
                let filler = d.join("filler");
                let mut f = File::create(&filler).unwrap();
                while f.write_all(&[1u8; 4096]).is_ok() {}
                drop(f);
                // a batch larger than the zeros written ahead: x released,
                // then many leases
                let many: Vec<Change> = (0..4000u32)
                    .map(|i| {
                        let mut l = y.clone();
                        l.ip = Ipv4Addr::from(0x0a01_0000 + i);
                        Change::Upsert(l)
                    })
                    .collect();
                let mut batch = vec![Change::Delete(x.ip)];
                batch.extend(many.iter().cloned());
                s.append(&batch).unwrap();
                let StoreError::Io { source, .. } = s.sync().unwrap_err();
                assert_eq!(source.raw_os_error(), Some(libc::ENOSPC), "{source}");
                // room again; a shorter batch
                std::fs::remove_file(&filler).unwrap();
                let mut y2 = y.clone();
                y2.state = LeaseState::Released;
                s.append(&[Change::Upsert(y2.clone())]).unwrap();
                s.sync().unwrap();
                let got = loaded(d);
                assert!(!got.iter().any(|l| l.ip == x.ip), "x deleted");
                assert_eq!(got.iter().find(|l| l.ip == y.ip), Some(&y2));
                assert_eq!(got.len(), 1 + many.len());
                drop(s);
                let ok = std::process::Command::new("umount").arg(d).status();
                assert!(ok.unwrap().success());
            },
        );
    }

    /// A lease of client `mac` on `ip` granted (or changed, for a
    /// release) at `at`, as the partner sends it.
    fn ver(ip: &str, mac: u8, state: LeaseState, at: u64) -> Lease {
        let mut l = lease(ip, mac, state, 0);
        l.origin = Origin::Peer;
        l.expires = match state {
            LeaseState::Released => at,
            _ => at + u64::from(l.lifetime),
        };
        l
    }

    #[test]
    fn bound_leases_are_counted_per_pool_as_they_change() {
        let mut t = LeaseTable::new();
        let a = lease("10.0.0.1", 1, LeaseState::Bound, 100);
        let mut b = lease("10.0.0.2", 2, LeaseState::Bound, 100);
        t.insert(a.clone());
        t.insert(b.clone());
        assert_eq!(t.bound(&a.pool), 2);
        // a renewal replaces the lease: still one
        t.insert(a.clone());
        assert_eq!(t.bound(&a.pool), 2);
        b.state = LeaseState::Released;
        t.insert(b.clone());
        assert_eq!(t.bound(&a.pool), 1);
        t.remove(b.ip);
        assert_eq!(t.bound(&a.pool), 1);
        let (_, events) = t.expire(a.expires);
        assert_eq!(events.len(), 1);
        assert_eq!(t.bound(&a.pool), 0);
        // the partner's binding counts too
        t.merge_peer(ver("10.0.0.3", 3, LeaseState::Bound, 1000));
        assert_eq!(t.bound(&a.pool), 1);
        t.remove(a.ip);
        assert_eq!(t.bound(&a.pool), 1);
    }

    #[test]
    fn changed_at_is_the_grant_or_the_release() {
        let b = ver("10.0.0.1", 1, LeaseState::Bound, 1000);
        assert_eq!(b.expires, 4600);
        assert_eq!(b.changed_at(), 1000);
        // an expired lease keeps its grant, a release its own time
        assert_eq!(
            ver("10.0.0.1", 1, LeaseState::Expired, 1000).changed_at(),
            1000
        );
        assert_eq!(
            ver("10.0.0.1", 1, LeaseState::Released, 1700).changed_at(),
            1700
        );
        // a decline: its lifetime is the probation
        let mut d = lease("10.0.0.1", 1, LeaseState::Declined, 2600);
        d.lifetime = 600;
        assert_eq!(d.changed_at(), 2000);
        // infinite: the grant rides in `expires`, which never comes
        let mut inf = b.clone();
        inf.lifetime = u32::MAX;
        inf.expires = infinite_expiry(1234);
        assert_eq!(inf.changed_at(), 1234);
        assert!(inf.expires > u64::from(u32::MAX) * 1000);
        inf.expires = u64::MAX;
        assert_eq!(inf.changed_at(), 0, "stored before the rule: oldest");
        // a quarantine of u32::MAX seconds is not an infinite lease
        d.lifetime = u32::MAX;
        d.expires = 2000 + u64::from(u32::MAX);
        assert_eq!(d.changed_at(), 2000);
    }

    /// Versions of one address: every state, clients with and without
    /// option 61, the same second, infinite ones, fields differing one by
    /// one.
    fn versions() -> Vec<Lease> {
        let mut v = Vec::new();
        for state in [
            LeaseState::Bound,
            LeaseState::Released,
            LeaseState::Declined,
            LeaseState::Expired,
        ] {
            for mac in [1u8, 2, 3, 4] {
                for at in [1000u64, 1001, 5000] {
                    v.push(ver("10.0.0.9", mac, state, at));
                }
            }
        }
        let base = ver("10.0.0.9", 1, LeaseState::Bound, 1000);
        let mut l = base.clone();
        l.hostname = None;
        v.push(l);
        let mut l = base.clone();
        l.lifetime = 1800;
        l.expires = 2800;
        v.push(l);
        let mut l = base.clone();
        l.pool = "other".into();
        v.push(l);
        let mut l = base.clone();
        l.client_id = Some(Vec::new());
        v.push(l);
        let mut l = base.clone();
        l.lifetime = u32::MAX;
        l.expires = infinite_expiry(1000);
        v.push(l.clone());
        l.expires = u64::MAX;
        v.push(l);
        v
    }

    /// `peer_wins` is a strict total order of versions, the same seen from
    /// either router: exactly one of two different leases wins, the same
    /// lease (whatever its origin) never does, and it is transitive (so
    /// the winner of a set does not depend on the order it arrives in).
    #[test]
    fn peer_wins_is_a_total_order() {
        let v = versions();
        for a in &v {
            for b in &v {
                let mut b_local = b.clone();
                b_local.origin = Origin::Local;
                if a.same_as(b) {
                    assert!(!peer_wins(a, &b_local) && !peer_wins(&b_local, a));
                } else {
                    assert_ne!(peer_wins(a, b), peer_wins(b, a), "{a:?} {b:?}");
                    assert_eq!(peer_wins(a, b), peer_wins(a, &b_local));
                }
            }
        }
        let mut sorted = v.clone();
        sorted.sort_by(cmp_versions);
        for i in 0..sorted.len() {
            for j in i + 1..sorted.len() {
                assert!(peer_wins(&sorted[i], &sorted[j]), "{i} {j}");
            }
        }
        // newest wins; on the same second a decline, then a binding
        let at = |st, mac, t| ver("10.0.0.9", mac, st, t);
        assert!(peer_wins(
            &at(LeaseState::Bound, 1, 1000),
            &at(LeaseState::Bound, 2, 1001)
        ));
        assert!(peer_wins(
            &at(LeaseState::Released, 1, 1000),
            &at(LeaseState::Bound, 2, 1000)
        ));
        assert!(peer_wins(
            &at(LeaseState::Bound, 1, 1000),
            &at(LeaseState::Declined, 1, 1000)
        ));
        assert!(!peer_wins(
            &at(LeaseState::Bound, 1, 1000),
            &at(LeaseState::Expired, 1, 1000)
        ));
    }

    #[test]
    fn merge_takes_the_newer_lease_and_keeps_ours_when_newer() {
        let mut t = LeaseTable::new();
        let a = ver("10.0.0.1", 1, LeaseState::Bound, 1000);
        assert_eq!(
            t.merge_peer(a.clone()),
            (Merge::Taken, vec![Change::Upsert(a.clone())])
        );
        assert_eq!(t.get(a.ip).unwrap().origin, Origin::Peer);
        assert_eq!(t.merge_peer(a.clone()), (Merge::Unchanged, vec![]));
        // ours local, the same lease: unchanged
        let mut local = a.clone();
        local.origin = Origin::Local;
        t.insert(local.clone());
        assert_eq!(t.merge_peer(a.clone()), (Merge::Unchanged, vec![]));
        assert_eq!(t.get(a.ip).unwrap().origin, Origin::Local);
        // a renewal there
        let r = ver("10.0.0.1", 1, LeaseState::Bound, 2800);
        assert_eq!(t.merge_peer(r.clone()).0, Merge::Taken);
        // the older version again (a batch-backup page): ours is newer
        assert_eq!(t.merge_peer(a.clone()), (Merge::KeptOurs, vec![]));
        assert_eq!(t.get(a.ip), Some(&r));
        // released there, then a new client there
        let rel = ver("10.0.0.1", 1, LeaseState::Released, 3000);
        assert_eq!(t.merge_peer(rel.clone()).0, Merge::Taken);
        assert_eq!(t.client_ip(&rel.key()), Some(rel.ip));
        let b = ver("10.0.0.1", 2, LeaseState::Bound, 3500);
        assert_eq!(t.merge_peer(b.clone()).0, Merge::Taken);
        assert_eq!(t.client_ip(&rel.key()), None);
        assert_eq!(t.client_ip(&b.key()), Some(b.ip));
        // an offer is never a lease from the partner
        let o = ver("10.0.0.2", 3, LeaseState::Offered, 3500);
        assert_eq!(t.merge_peer(o), (Merge::Unchanged, vec![]));
        assert!(t.get(ip4("10.0.0.2")).is_none());
    }

    fn ip4(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    /// The link between the routers cut: this router expires its copy
    /// of the client's lease while the client renews on the partner. The
    /// renewal is the binding the client holds: it wins, both ways.
    #[test]
    fn a_renewal_there_beats_the_expiry_here_of_the_older_grant() {
        let mut t = LeaseTable::new();
        let mut old = ver("10.0.0.1", 1, LeaseState::Bound, 1000);
        old.origin = Origin::Local;
        t.insert(old.clone());
        t.expire(old.expires);
        assert_eq!(t.get(old.ip).unwrap().state, LeaseState::Expired);
        let renewed = ver("10.0.0.1", 1, LeaseState::Bound, 4000);
        assert!(renewed.expires > old.expires);
        assert_eq!(t.merge_peer(renewed.clone()).0, Merge::Taken);
        assert_eq!(t.get(old.ip).unwrap().state, LeaseState::Bound);
        // the partner receiving our expiry keeps its renewal
        let mut there = LeaseTable::new();
        there.merge_peer(renewed);
        let mut expired = old.clone();
        expired.state = LeaseState::Expired;
        assert_eq!(there.merge_peer(expired).0, Merge::KeptOurs);
    }

    #[test]
    fn a_binding_taken_drops_our_offer_to_another_client() {
        let mut t = LeaseTable::new();
        let mut offer = ver("10.0.0.1", 2, LeaseState::Offered, 1000);
        offer.origin = Origin::Local;
        offer.expires = 1030;
        t.hold(offer.clone());
        // a release there leaves the hold be
        let rel = ver("10.0.0.1", 1, LeaseState::Released, 990);
        t.merge_peer(rel);
        assert!(t.offer(offer.ip).is_some());
        let b = ver("10.0.0.1", 1, LeaseState::Bound, 1000);
        assert_eq!(t.merge_peer(b.clone()).0, Merge::Taken);
        assert!(t.offer(offer.ip).is_none());
        assert_eq!(t.client_ip(&offer.key()), None);
        assert!(!t.available(b.ip, &offer.key(), 1010));
    }

    /// A client uses the address it was given last: its older binding on
    /// another address becomes released, whichever arrives first, and
    /// whether ours or the partner's is the older.
    #[test]
    fn a_client_keeps_only_its_newest_binding() {
        let old = ver("10.0.0.1", 1, LeaseState::Bound, 1000);
        let new = ver("10.0.0.2", 1, LeaseState::Bound, 2000);
        let gone = left(&old);
        assert_eq!(gone.state, LeaseState::Released);
        assert_eq!(gone.expires, 1001);
        assert!(peer_wins(&old, &gone));
        for order in [[&old, &new], [&new, &old]] {
            let mut t = LeaseTable::new();
            let (m0, _) = t.merge_peer(order[0].clone());
            let (m1, ch) = t.merge_peer(order[1].clone());
            assert_eq!((m0, m1), (Merge::Taken, Merge::Taken));
            assert_eq!(t.get(old.ip), Some(&gone));
            assert_eq!(t.get(new.ip), Some(&new));
            assert_eq!(t.client_ip(&old.key()), Some(new.ip));
            assert!(ch.contains(&Change::Upsert(gone.clone())), "{ch:?}");
            // the old binding again changes nothing
            assert_eq!(t.merge_peer(old.clone()), (Merge::KeptOurs, vec![]));
            // and the freed address goes to the next client
            let pool = PoolRt::from(&crate::dhcp::config::Pool {
                sections: vec![(old.ip, new.ip)],
                ..crate::dhcp::config::Pool::for_test("p 1%", "10.0.0.0")
            });
            let k = ClientKey::new(None, &[7]);
            assert_eq!(t.allocate(&pool, &k, 3000), Some(old.ip));
        }
        // ours local and older; the partner's binding loses on its own
        // address to a newer lease of another client: the client moved
        // all the same
        let mut t = LeaseTable::new();
        let mut mine = old.clone();
        mine.origin = Origin::Local;
        t.insert(mine);
        let other = ver("10.0.0.2", 3, LeaseState::Bound, 2500);
        t.merge_peer(other.clone());
        let (m, ch) = t.merge_peer(new.clone());
        assert_eq!(m, Merge::KeptOurs);
        let mut gone_local = gone.clone();
        gone_local.origin = Origin::Local;
        assert_eq!(ch, vec![Change::Upsert(gone_local.clone())]);
        assert_eq!(t.get(old.ip), Some(&gone_local));
        // the same second: no binding displaces the other
        let mut t = LeaseTable::new();
        let same = ver("10.0.0.2", 1, LeaseState::Bound, 1000);
        t.merge_peer(old.clone());
        t.merge_peer(same.clone());
        assert_eq!(t.get(old.ip).unwrap().state, LeaseState::Bound);
        assert_eq!(t.get(same.ip).unwrap().state, LeaseState::Bound);
    }

    /// What one table holds: its leases (sorted) and each client's
    /// address.
    fn contents(t: &LeaseTable, clients: &[ClientKey]) -> (Vec<Lease>, Vec<Option<Ipv4Addr>>) {
        let mut l: Vec<Lease> = t.leases().cloned().collect();
        l.sort_by_key(|l| u32::from(l.ip));
        (l, clients.iter().map(|k| t.client_ip(k)).collect())
    }

    /// Deterministic shuffles for the order tests (xorshift).
    fn shuffled<T: Clone>(v: &[T], seed: u64) -> Vec<T> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut out = v.to_vec();
        for i in (1..out.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.swap(i, (x % (i as u64 + 1)) as usize);
        }
        out
    }

    /// The same history merged in any order gives the same table: renewals,
    /// releases, an address going to a new client, a client moving, two
    /// clients on one address (split brain), a decline, an expiry against
    /// a renewal, infinite leases.
    #[test]
    fn merge_converges_whatever_the_order() {
        use LeaseState::*;
        let mut inf = ver("10.0.0.8", 7, Bound, 100);
        inf.lifetime = u32::MAX;
        inf.expires = infinite_expiry(100);
        let mut inf_renewed = inf.clone();
        inf_renewed.expires = infinite_expiry(200);
        let mut inf_released = inf.clone();
        inf_released.state = Released;
        inf_released.expires = 300;
        let mut declined = ver("10.0.0.5", 4, Declined, 200);
        declined.hostname = None;
        let set = vec![
            ver("10.0.0.1", 1, Bound, 100),
            ver("10.0.0.1", 1, Bound, 400),
            ver("10.0.0.1", 1, Released, 700),
            ver("10.0.0.1", 2, Bound, 800),
            ver("10.0.0.2", 3, Bound, 100),
            ver("10.0.0.3", 3, Bound, 500),
            ver("10.0.0.3", 3, Bound, 900),
            ver("10.0.0.4", 4, Bound, 100),
            ver("10.0.0.4", 5, Bound, 150),
            declined,
            ver("10.0.0.6", 1, Expired, 100),
            ver("10.0.0.6", 2, Bound, 300),
            ver("10.0.0.7", 6, Expired, 100),
            ver("10.0.0.7", 6, Bound, 200),
            inf,
            inf_renewed,
            inf_released,
        ];
        let clients: Vec<ClientKey> = (1..=7u8)
            .map(|m| ver("10.0.0.1", m, Bound, 0).key())
            .collect();
        let mut reference = LeaseTable::new();
        for l in &set {
            reference.merge_peer(l.clone());
        }
        let want = contents(&reference, &clients);
        // spot checks of the outcome
        let at = |s: &str| want.0.iter().find(|l| l.ip == ip4(s)).unwrap().clone();
        assert_eq!(at("10.0.0.1"), set[3]);
        assert_eq!(at("10.0.0.2"), left(&set[4]), "client 3 moved to .3");
        assert_eq!(at("10.0.0.3"), set[6]);
        assert_eq!(at("10.0.0.4"), set[8], "the newer of two clients");
        assert_eq!(at("10.0.0.6"), left(&set[11]), "client 2 moved to .1");
        assert_eq!(at("10.0.0.7"), set[13]);
        assert_eq!(at("10.0.0.8"), set[16]);
        assert_eq!(want.1[1], Some(ip4("10.0.0.1")));
        assert_eq!(want.1[2], Some(ip4("10.0.0.3")));
        for seed in 1..=300u64 {
            let mut t = LeaseTable::new();
            for l in shuffled(&set, seed) {
                t.merge_peer(l);
            }
            assert_eq!(contents(&t, &clients), want, "order {seed}");
        }
    }

    /// Any history, merged in two orders by two routers that then exchange
    /// their tables (what the batch backup does; the real-time batches
    /// carry the same changes): both end with the same leases.
    #[test]
    fn two_tables_converge_after_exchanging_what_they_hold() {
        use LeaseState::*;
        let states = [Bound, Bound, Bound, Released, Declined, Expired];
        for seed in 1..=200u64 {
            let picks = shuffled(&(0..2000u64).collect::<Vec<_>>(), seed);
            let set: Vec<Lease> = picks
                .chunks(4)
                .take(24)
                .map(|c| {
                    let ip = format!("10.0.0.{}", 1 + c[0] % 5);
                    ver(
                        &ip,
                        1 + (c[1] % 4) as u8,
                        states[(c[2] % 6) as usize],
                        100 + c[3] % 50,
                    )
                })
                .collect();
            let mut a = LeaseTable::new();
            let mut b = LeaseTable::new();
            for l in shuffled(&set, seed + 1000) {
                a.merge_peer(l);
            }
            for l in shuffled(&set, seed + 2000) {
                b.merge_peer(l);
            }
            let mut rounds = 0;
            while contents(&a, &[]) != contents(&b, &[]) {
                rounds += 1;
                assert!(rounds <= 4, "no convergence: seed {seed}");
                let from_a: Vec<Lease> = a.leases().cloned().collect();
                let from_b: Vec<Lease> = b.leases().cloned().collect();
                for l in from_b {
                    a.merge_peer(l);
                }
                for l in from_a {
                    b.merge_peer(l);
                }
            }
        }
    }

    /// The partner's deletion applies to anything but an active binding or
    /// a running quarantine.
    #[test]
    fn remove_peer_never_erases_an_active_binding() {
        let mut t = LeaseTable::new();
        let b = ver("10.0.0.1", 1, LeaseState::Bound, 1000);
        t.merge_peer(b.clone());
        assert_eq!(t.remove_peer(b.ip, 1000), None);
        assert_eq!(t.get(b.ip), Some(&b));
        // once expired it goes
        assert_eq!(t.remove_peer(b.ip, b.expires), Some(Change::Delete(b.ip)));
        assert!(t.get(b.ip).is_none());
        assert_eq!(t.client_ip(&b.key()), None);
        assert_eq!(t.remove_peer(b.ip, 1000), None, "nothing to delete");
        let mut d = ver("10.0.0.2", 2, LeaseState::Declined, 1000);
        d.lifetime = 600;
        d.expires = 1600;
        t.merge_peer(d.clone());
        assert_eq!(t.remove_peer(d.ip, 1100), None, "quarantine running");
        assert_eq!(t.remove_peer(d.ip, 1600), Some(Change::Delete(d.ip)));
        let r = ver("10.0.0.3", 3, LeaseState::Released, 1000);
        t.merge_peer(r.clone());
        assert_eq!(t.remove_peer(r.ip, 1100), Some(Change::Delete(r.ip)));
        assert!(t.is_empty());
    }

    /// A pool of .10-.49 without .20 (39 addresses: 19 even, 20 odd)
    /// split to `half`.
    fn split_pool(half: Option<Half>) -> PoolRt {
        let mut p = PoolRt::from(&crate::dhcp::config::Pool {
            sections: vec![(ip4("10.0.0.10"), ip4("10.0.0.49"))],
            excluded: vec![(ip4("10.0.0.20"), ip4("10.0.0.20"))],
            ..crate::dhcp::config::Pool::for_test("p 1%", "10.0.0.0")
        });
        p.split = half;
        p
    }

    /// Allocate for client `id` and bind it (what DISCOVER + REQUEST do).
    fn grant(t: &mut LeaseTable, pool: &PoolRt, id: u16, now: u64) -> Option<Ipv4Addr> {
        let hw = [2, 0, 0, 0, (id >> 8) as u8, id as u8];
        let ip = t.allocate(pool, &ClientKey::new(None, &hw), now)?;
        t.insert(Lease {
            ip,
            pool: pool.name.clone(),
            hw: hw.to_vec(),
            client_id: None,
            hostname: None,
            state: LeaseState::Bound,
            lifetime: 3600,
            expires: now + 3600,
            origin: Origin::Local,
        });
        Some(ip)
    }

    /// Split brain: two routers with the same table, cut from each other,
    /// give new clients addresses from opposite halves and never the same
    /// one while their halves have room; a side whose half is used up
    /// takes from the other half, never-used addresses and released ones
    /// alike.
    #[test]
    fn split_halves_never_collide_and_fall_back_when_exhausted() {
        let now = 1000;
        let (even, odd) = (split_pool(Some(Half::Even)), split_pool(Some(Half::Odd)));
        // the history both routers share before the cut
        let mut a = LeaseTable::new();
        let mut b = LeaseTable::new();
        for id in 1..=5 {
            let ip = grant(&mut a, &split_pool(None), id, now).unwrap();
            b.merge_peer(a.get(ip).unwrap().clone());
        }
        // the cut: 2 * 7 new clients on each side
        let mut got_a = Vec::new();
        let mut got_b = Vec::new();
        for id in 0..14 {
            got_a.push(grant(&mut a, &even, 100 + id, now).unwrap());
            got_b.push(grant(&mut b, &odd, 200 + id, now).unwrap());
        }
        assert!(got_a.iter().all(|ip| Half::Even.contains(*ip)), "{got_a:?}");
        assert!(got_b.iter().all(|ip| Half::Odd.contains(*ip)), "{got_b:?}");
        assert!(got_a.iter().all(|ip| !got_b.contains(ip)));
        // shared .10-.14, then 14 of the 16 other even addresses: two left
        for id in 150..152 {
            assert!(Half::Even.contains(grant(&mut a, &even, id, now).unwrap()));
        }
        // the even half is used up: the odd half, never-used first
        let fallback = grant(&mut a, &even, 152, now).unwrap();
        assert!(Half::Odd.contains(fallback), "{fallback}");
        // an even address released comes before the odd fresh ones
        let mut r = a.get(got_a[3]).unwrap().clone();
        r.state = LeaseState::Released;
        r.expires = now;
        a.insert(r);
        assert_eq!(grant(&mut a, &even, 153, now), Some(got_a[3]));
        // use up the odd fresh addresses too, then release an odd one: the
        // other half's reuse
        let mut id = 300;
        while let Some(ip) = grant(&mut a, &even, id, now) {
            assert!(Half::Odd.contains(ip));
            id += 1;
        }
        let mut r = a.get(fallback).unwrap().clone();
        r.state = LeaseState::Expired;
        a.insert(r);
        assert_eq!(grant(&mut a, &even, 400, now + 1), Some(fallback));
        assert_eq!(a.len(), 39);
        // the split over (healed): no half, no address left
        assert_eq!(grant(&mut a, &split_pool(None), 401, now), None);
    }

    /// A full pool remembers, within a second, that nothing can be reused
    /// (no scan of the table per DISCOVER), and forgets it as soon as an
    /// address is freed, or the next second (a lease lapsing with the
    /// clock).
    #[test]
    fn a_full_pool_skips_the_reuse_scan_until_an_address_is_freed() {
        let mut t = LeaseTable::new();
        let p = split_pool(None);
        let mut got = Vec::new();
        while let Some(ip) = grant(&mut t, &p, got.len() as u16, 10) {
            got.push(ip);
        }
        assert_eq!(got.len(), 39);
        assert_eq!(t.reuse_none.get(&p.name), Some(&(full_bits(None), 10)));
        let mut r = t.get(got[5]).unwrap().clone();
        r.state = LeaseState::Released;
        t.insert(r);
        assert_eq!(grant(&mut t, &p, 500, 10), Some(got[5]));
        assert_eq!(grant(&mut t, &p, 501, 10), None);
        // a lease that lapsed with the clock: the next second sees it
        let mut l = t.get(got[7]).unwrap().clone();
        l.expires = 10;
        t.by_ip.insert(l.ip, Arc::new(l));
        assert_eq!(grant(&mut t, &p, 502, 10), None, "remembered this second");
        assert_eq!(grant(&mut t, &p, 502, 11), Some(got[7]));
    }

    /// The fresh scan remembers a used-up half, not the whole pool.
    #[test]
    fn a_used_up_half_leaves_the_other_to_the_scan() {
        let mut t = LeaseTable::new();
        let even = split_pool(Some(Half::Even));
        let mut evens = 0;
        while let Some(ip) = grant(&mut t, &even, evens, 0) {
            if !Half::Even.contains(ip) {
                break;
            }
            evens += 1;
        }
        assert_eq!(evens, 19, "19 even addresses, then an odd one");
        let free_odd = grant(&mut t, &split_pool(None), 1000, 0).unwrap();
        assert!(Half::Odd.contains(free_odd));
        assert_eq!(
            grant(&mut t, &split_pool(Some(Half::Odd)), 1001, 0).map(Half::of),
            Some(Half::Odd)
        );
    }

    #[test]
    fn table_indexes_follow_changes() {
        let mut t = LeaseTable::new();
        let a = lease("10.0.0.5", 4, LeaseState::Bound, 100);
        t.insert(a.clone());
        assert_eq!(t.client_ip(&a.key()), Some(a.ip));
        assert!(!t.available(a.ip, &ClientKey::new(None, &[9]), 50));
        assert!(t.available(a.ip, &a.key(), 50));
        assert!(t.available(a.ip, &ClientKey::new(None, &[9]), 100));
        let (ch, ev) = t.expire(100);
        assert_eq!(ch.len(), 1);
        assert_eq!(ev[0].kind, EventKind::Expired);
        assert_eq!(t.get(a.ip).unwrap().state, LeaseState::Expired);
        // declining removes the client's claim
        let mut d = a.clone();
        d.state = LeaseState::Declined;
        d.expires = 200;
        t.insert(d);
        assert_eq!(t.client_ip(&a.key()), None);
        assert!(!t.available(a.ip, &a.key(), 150));
        let (ch, _) = t.expire(200);
        assert_eq!(ch, vec![Change::Delete(a.ip)]);
        assert!(t.is_empty());
    }

    /// Issue 10: each sync batch is numbered in the log (`B lsn`); the
    /// store's LSN is found again after a reload and after a compaction
    /// (the snapshot carries it as `S lsn`), and a log written before the
    /// markers loads as LSN 0 and takes them from then on.
    #[test]
    fn lsn_survives_reload_and_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // an old log: records, no marker
        let a = log_of(d, &[5]).0.remove(0);
        let b = lease("10.0.0.6", 5, LeaseState::Bound, 100);
        let c = lease("10.0.0.7", 6, LeaseState::Bound, 100);
        let mut s = FileStore::new(d);
        assert_eq!(s.load().unwrap(), vec![a.clone()]);
        assert_eq!(s.lsn(), 0);
        s.begin(1);
        s.append(&[Change::Upsert(b.clone())]).unwrap();
        s.begin(2);
        s.append(&[Change::Upsert(c.clone())]).unwrap();
        s.sync().unwrap();
        let mut s = FileStore::new(d);
        assert_eq!(s.load().unwrap().len(), 3);
        assert_eq!(s.lsn(), 2);
        // in the caller's thread
        s.compact(&[a.clone(), b.clone(), c.clone()]).unwrap();
        let log = std::fs::read(d.join(LOG)).unwrap();
        assert_eq!(&log[9..12], b"S 2");
        let mut s = FileStore::new(d);
        assert_eq!(s.load().unwrap().len(), 3);
        assert_eq!(s.lsn(), 2);
        // in the background, with a batch synced meanwhile
        s.begin(3);
        s.append(&[Change::Delete(a.ip)]).unwrap();
        s.sync().unwrap();
        s.compact_start().unwrap();
        s.begin(4);
        s.append(&[Change::Delete(b.ip)]).unwrap();
        s.sync().unwrap();
        while !s.compact_poll().unwrap() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let mut s = FileStore::new(d);
        assert_eq!(s.load().unwrap(), vec![c.clone()]);
        assert_eq!(s.lsn(), 4);
        let log = std::fs::read(d.join(LOG)).unwrap();
        assert_eq!(&log[9..12], b"S 3");
        // what a replica reads: the snapshot when the log no longer goes
        // back far enough, then the batches up to the bound
        let r = s.log().unwrap();
        let mut got = r.read(1, 4).unwrap();
        if let Some(Logged::Snapshot { leases, .. }) = got.first_mut() {
            leases.sort_by_key(|l| l.ip);
        }
        assert_eq!(
            got,
            vec![
                Logged::Snapshot {
                    lsn: 3,
                    leases: vec![b.clone(), c.clone()]
                },
                Logged::Batch {
                    lsn: 4,
                    changes: vec![Change::Delete(b.ip)]
                }
            ]
        );
        assert_eq!(r.read(3, 3).unwrap(), vec![]);
        assert_eq!(r.read(4, 4).unwrap(), vec![]);
    }

    /// Issue 10: a batch whose sync failed is written again under its own
    /// marker, before the next batch: the log never numbers a change
    /// differently from what the replicas were handed.
    #[test]
    fn a_failed_sync_keeps_its_batch_number() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let a = lease("10.0.0.5", 4, LeaseState::Bound, 100);
        let b = lease("10.0.0.6", 5, LeaseState::Bound, 100);
        let mut s = FileStore::new(d);
        s.load().unwrap();
        s.begin(1);
        s.append(&[Change::Upsert(a.clone())]).unwrap();
        s.fail_fsync = true;
        assert!(s.sync().is_err());
        s.begin(2);
        s.append(&[Change::Upsert(b.clone())]).unwrap();
        s.sync().unwrap();
        assert_eq!(
            s.log().unwrap().read(0, 2).unwrap(),
            vec![
                Logged::Batch {
                    lsn: 1,
                    changes: vec![Change::Upsert(a)]
                },
                Logged::Batch {
                    lsn: 2,
                    changes: vec![Change::Upsert(b)]
                }
            ]
        );
        assert!(copies(d).is_empty());
    }
}

#[cfg(test)]
mod count_tests {
    use super::*;
    use rand::{Rng, RngExt, SeedableRng};

    /// The counts as a pass over the table gives them (the rules of
    /// [`PoolCounts`], written as a scan).
    fn scan(t: &LeaseTable) -> HashMap<String, PoolCounts> {
        let mut m: HashMap<String, PoolCounts> = HashMap::new();
        for l in t.leases() {
            let c = m.entry(l.pool.clone()).or_default();
            c.states[l.state.index()] += 1;
            if t.statics.contains(&l.ip) {
                continue;
            }
            match l.state {
                LeaseState::Bound => c.used += 1,
                LeaseState::Declined => c.declined += 1,
                _ => {}
            }
        }
        for o in t.offers() {
            let held = t
                .get(o.ip)
                .is_some_and(|l| matches!(l.state, LeaseState::Bound | LeaseState::Declined));
            if !held && !t.statics.contains(&o.ip) {
                m.entry(o.pool.clone()).or_default().offered += 1;
            }
        }
        m.retain(|_, c| !c.is_zero());
        m
    }

    fn pool_of(i: u32) -> String {
        ["a", "b", "c"][(i % 3) as usize].to_string()
    }

    fn random_lease(r: &mut impl Rng, now: u64) -> Lease {
        let i = r.random_range(0..40u32);
        let client = r.random_range(0..12u8);
        let state = [
            LeaseState::Bound,
            LeaseState::Bound,
            LeaseState::Released,
            LeaseState::Declined,
            LeaseState::Expired,
        ][r.random_range(0..5usize)];
        Lease {
            ip: Ipv4Addr::new(10, 0, 0, i as u8),
            pool: pool_of(i),
            hw: vec![2, 0, 0, 0, 0, client],
            client_id: (client % 3 == 0).then(|| vec![9, client]),
            hostname: None,
            state,
            lifetime: 60,
            expires: now + r.random_range(0..120u64),
            origin: if r.random_bool(0.5) {
                Origin::Local
            } else {
                Origin::Peer
            },
        }
    }

    /// After every step of random grants, renewals, releases, declines,
    /// offers, expiries, merges of the partner's leases, deletions and
    /// static-binding changes, the kept counts are those of a scan.
    #[test]
    fn kept_counts_match_a_scan_after_random_changes() {
        for seed in 0..40u64 {
            let mut r = rand::rngs::StdRng::seed_from_u64(seed);
            let mut t = LeaseTable::new();
            let mut now = 1_000u64;
            for step in 0..400 {
                match r.random_range(0..11u8) {
                    // grant or renew (a client's binding, the same
                    // address or another one)
                    0..=2 => {
                        let mut l = random_lease(&mut r, now);
                        l.state = LeaseState::Bound;
                        l.origin = Origin::Local;
                        t.insert(l);
                    }
                    // release, decline, expire an existing lease
                    3 => {
                        let ips: Vec<Ipv4Addr> = t.leases().map(|l| l.ip).collect();
                        if let Some(ip) = ips.get(r.random_range(0..ips.len().max(1))) {
                            let mut l = t.get(*ip).unwrap().clone();
                            l.state = [
                                LeaseState::Released,
                                LeaseState::Declined,
                                LeaseState::Expired,
                            ][r.random_range(0..3usize)];
                            t.insert(l);
                        }
                    }
                    4 | 5 => {
                        let mut o = random_lease(&mut r, now);
                        o.state = LeaseState::Offered;
                        t.hold(o);
                    }
                    6 => {
                        let l = random_lease(&mut r, now);
                        t.drop_offer(&l.key());
                    }
                    7 => {
                        let mut l = random_lease(&mut r, now);
                        l.origin = Origin::Peer;
                        t.merge_peer(l);
                    }
                    8 => {
                        let ip = Ipv4Addr::new(10, 0, 0, r.random_range(0..40u8));
                        if r.random_bool(0.5) {
                            t.remove(ip);
                        } else {
                            t.remove_peer(ip, now);
                        }
                    }
                    9 => {
                        now += r.random_range(0..90u64);
                        t.expire(now);
                    }
                    _ => {
                        let statics = (0..40u8)
                            .filter(|_| r.random_bool(0.1))
                            .map(|i| Ipv4Addr::new(10, 0, 0, i))
                            .collect();
                        t.set_statics(statics);
                    }
                }
                let want = scan(&t);
                for p in ["a", "b", "c"] {
                    assert_eq!(
                        t.counts(p),
                        want.get(p).copied().unwrap_or_default(),
                        "seed {seed} step {step} pool {p}"
                    );
                }
                assert_eq!(t.counts, want, "seed {seed} step {step}");
            }
        }
    }

    /// A pool's statistics come from its counts: free is what no binding,
    /// quarantine or offer holds.
    #[test]
    fn stats_of_counts() {
        let mut t = LeaseTable::new();
        let mut l = tests::lease("10.0.0.1", 1, LeaseState::Bound, 100);
        t.insert(l.clone());
        l.ip = "10.0.0.2".parse().unwrap();
        l.hw = vec![3];
        l.client_id = None;
        l.state = LeaseState::Declined;
        t.insert(l.clone());
        l.ip = "10.0.0.3".parse().unwrap();
        l.hw = vec![4];
        l.state = LeaseState::Offered;
        t.hold(l);
        let s = t.counts("p 1%").stats(10);
        assert_eq!(
            s,
            PoolStats {
                total: 10,
                used: 1,
                free: 7,
                offered: 1,
                declined: 1
            }
        );
        assert_eq!(t.counts("p 1%").states[LeaseState::Bound.index()], 1);
        assert_eq!(t.take_counted(), HashSet::from(["p 1%".to_string()]));
        assert!(t.take_counted().is_empty());
    }
}
