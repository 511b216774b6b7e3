//! What `<get>` reads of the DHCP server: a mirror of the lease table that
//! the actor keeps current after every batch, so that the northbound never
//! waits for the actor and the actor never copies the whole table.
//!
//! ```text
//!  DhcpServer (actor) ──after each batch: changed addresses, changed pool counts──► Snapshot (std Mutex)
//!  northbound <get>  ──select (key lookups, O(selected)) / frozen (O(chunks))──► Snapshot
//! ```
//!
//! Leases and offers live in [`CHUNKS`] maps by address, each behind an
//! `Arc`: a whole-table read copies the chunk pointers under the lock and
//! walks them after releasing it (a consistent picture as of one batch);
//! the actor changes a chunk in place unless a reader still holds it, and
//! then copies that chunk only (copy-on-write, `Arc::make_mut`). Indexes by
//! hardware address, client-id and pool answer lookups without a pass over
//! the leases; pool statistics are the lease table's kept counts, copied
//! here for the pools whose counts changed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use super::leases::{Lease, PoolCounts, PoolStats};

/// Number of lease chunks: with 100,000 leases a chunk holds about 400, the
/// most the actor copies for one change while a whole-table read runs.
pub const CHUNKS: usize = 256;

/// The lease and the offer on one address.
#[derive(Debug, Clone, Default)]
pub struct Slot {
    pub lease: Option<Arc<Lease>>,
    pub offer: Option<Arc<Lease>>,
}

type Chunk = HashMap<Ipv4Addr, Slot>;

/// The mirror (see the module header).
#[derive(Debug)]
pub struct Snapshot {
    chunks: Vec<Arc<Chunk>>,
    by_hw: HashMap<[u8; 6], Vec<Ipv4Addr>>,
    by_client_id: HashMap<Vec<u8>, Vec<Ipv4Addr>>,
    by_pool: HashMap<String, HashSet<Ipv4Addr>>,
    /// Configured pools: dynamic addresses, kept counts.
    pools: BTreeMap<String, (u64, PoolCounts)>,
}

impl Default for Snapshot {
    fn default() -> Snapshot {
        Snapshot {
            chunks: (0..CHUNKS).map(|_| Arc::new(Chunk::new())).collect(),
            by_hw: HashMap::new(),
            by_client_id: HashMap::new(),
            by_pool: HashMap::new(),
            pools: BTreeMap::new(),
        }
    }
}

/// Which leases a read selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseQuery {
    All,
    Ip(Ipv4Addr),
    /// Hardware address as `mac-address` shows it (its first six bytes).
    Hw([u8; 6]),
    ClientId(Vec<u8>),
    Pool(String),
}

impl LeaseQuery {
    fn matches(&self, l: &Lease) -> bool {
        match self {
            LeaseQuery::All => true,
            LeaseQuery::Ip(ip) => l.ip == *ip,
            LeaseQuery::Hw(hw) => mac_key(&l.hw) == *hw,
            LeaseQuery::ClientId(c) => l.client_id.as_ref() == Some(c),
            LeaseQuery::Pool(p) => l.pool == *p,
        }
    }
}

/// Which pools' statistics a read selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolQuery {
    All,
    Named(String),
}

/// What one `<get>` asks of the DHCP state: the lease lookups and pool
/// statistics it needs (an answer may hold more, never less).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pub leases: Vec<LeaseQuery>,
    pub pools: Vec<PoolQuery>,
}

impl Query {
    /// Everything.
    pub fn all() -> Query {
        Query {
            leases: vec![LeaseQuery::All],
            pools: vec![PoolQuery::All],
        }
    }
}

/// The state one `<get>` reports.
#[derive(Debug, Default)]
pub struct View {
    /// Leases, then offers on addresses without a lease.
    pub leases: Vec<Arc<Lease>>,
    pub pools: Vec<(String, PoolStats)>,
}

/// The whole table as of one batch, read without the lock.
#[derive(Debug)]
pub struct Frozen {
    chunks: Vec<Arc<Chunk>>,
    pools: Vec<(String, PoolStats)>,
}

impl Frozen {
    /// Every lease, and every live offer on an address without a lease
    /// (in address order up to 5,000 of them: a small table reads
    /// naturally, a large one is not sorted for nothing).
    pub fn view(self, now: u64) -> View {
        let n: usize = self.chunks.iter().map(|c| c.len()).sum();
        let mut leases = Vec::with_capacity(n);
        for c in &self.chunks {
            for slot in c.values() {
                if let Some(l) = shown(slot, now) {
                    leases.push(l.clone());
                }
            }
        }
        if leases.len() <= 5000 {
            leases.sort_by_key(|l| u32::from(l.ip));
        }
        View {
            leases,
            pools: self.pools,
        }
    }
}

/// The leases a streamed read writes (every lease, or one pool's): taken
/// under the lock in O(chunks) (the chunk pointers; for one pool, its
/// addresses from the index) and walked after it is released, a piece at
/// a time, in the order a [`View`] of the same read lists them.
#[derive(Debug)]
pub struct Leases {
    chunks: Vec<Arc<Chunk>>,
    pool: Option<String>,
    now: u64,
    /// Addresses in the order written (one pool, or a small table:
    /// sorted); `None` until the first piece, then chunk after chunk
    /// when the table is large.
    order: Option<Order>,
}

#[derive(Debug)]
enum Order {
    Sorted(std::vec::IntoIter<Ipv4Addr>),
    /// The next chunk and how many of its shown leases were written.
    Chunks(usize, usize),
}

/// A table with at most this many leases shown is listed in address
/// order (see [`Frozen::view`]).
const SORTED_MAX: usize = 5000;

impl Leases {
    /// Call `f` with the next leases, at most `max`; returns how many.
    pub fn next(&mut self, max: usize, mut f: impl FnMut(&Lease)) -> usize {
        let order = match &mut self.order {
            Some(o) => o,
            None => self.order.insert(self.first_order()),
        };
        let mut n = 0;
        match order {
            Order::Sorted(ips) => {
                while n < max {
                    let Some(ip) = ips.next() else { break };
                    let shown = self.chunks[chunk_of(ip)]
                        .get(&ip)
                        .and_then(|s| shown(s, self.now))
                        .filter(|l| self.pool.as_ref().is_none_or(|p| l.pool == *p));
                    if let Some(l) = shown {
                        f(l);
                        n += 1;
                    }
                }
            }
            Order::Chunks(chunk, done) => {
                while n < max && *chunk < self.chunks.len() {
                    let mut seen = 0;
                    for l in self.chunks[*chunk]
                        .values()
                        .filter_map(|s| shown(s, self.now))
                    {
                        seen += 1;
                        if seen <= *done {
                            continue;
                        }
                        if n == max {
                            break;
                        }
                        f(l);
                        n += 1;
                        *done += 1;
                    }
                    if seen == *done {
                        *chunk += 1;
                        *done = 0;
                    }
                }
            }
        }
        n
    }

    /// The order of a whole table: sorted when small (a pass that stops
    /// after [`SORTED_MAX`] leases), else the chunks' own.
    fn first_order(&self) -> Order {
        let all = self
            .chunks
            .iter()
            .flat_map(|c| c.values())
            .filter(|s| shown(s, self.now).is_some());
        if all.take(SORTED_MAX + 1).count() > SORTED_MAX {
            return Order::Chunks(0, 0);
        }
        let mut ips: Vec<Ipv4Addr> = self
            .chunks
            .iter()
            .flat_map(|c| c.iter())
            .filter(|(_, s)| shown(s, self.now).is_some())
            .map(|(ip, _)| *ip)
            .collect();
        ips.sort_unstable_by_key(|ip| u32::from(*ip));
        Order::Sorted(ips.into_iter())
    }
}

/// What an address shows: its lease, else its offer while it holds.
fn shown(slot: &Slot, now: u64) -> Option<&Arc<Lease>> {
    slot.lease
        .as_ref()
        .or_else(|| slot.offer.as_ref().filter(|o| o.expires > now))
}

fn chunk_of(ip: Ipv4Addr) -> usize {
    let a = u32::from(ip);
    // low bits vary most between the addresses of a pool
    ((a ^ (a >> 8)) as usize) % CHUNKS
}

/// The `mac-address` of a hardware address: its first six bytes (a
/// shorter one padded with zeros).
pub fn mac_key(hw: &[u8]) -> [u8; 6] {
    let mut m = [0u8; 6];
    let n = hw.len().min(6);
    m[..n].copy_from_slice(&hw[..n]);
    m
}

fn unindex<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Vec<Ipv4Addr>>, key: K, ip: Ipv4Addr) {
    if let Some(v) = map.get_mut(&key) {
        v.retain(|a| *a != ip);
        if v.is_empty() {
            map.remove(&key);
        }
    }
}

fn index<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Vec<Ipv4Addr>>, key: K, ip: Ipv4Addr) {
    let v = map.entry(key).or_default();
    if !v.contains(&ip) {
        v.push(ip);
    }
}

impl Snapshot {
    /// Set the lease and the offer on `ip` (the table's pointers, shared).
    pub fn set(&mut self, ip: Ipv4Addr, lease: Option<&Arc<Lease>>, offer: Option<&Arc<Lease>>) {
        let chunk = Arc::make_mut(&mut self.chunks[chunk_of(ip)]);
        let old = chunk.remove(&ip).unwrap_or_default();
        for l in old.lease.iter().chain(old.offer.iter()) {
            self.unindex(l);
        }
        let slot = Slot {
            lease: lease.cloned(),
            offer: offer.cloned(),
        };
        for l in slot.lease.iter().chain(slot.offer.iter()) {
            index(&mut self.by_hw, mac_key(&l.hw), ip);
            if let Some(c) = &l.client_id {
                index(&mut self.by_client_id, c.clone(), ip);
            }
            self.by_pool.entry(l.pool.clone()).or_default().insert(ip);
        }
        if slot.lease.is_some() || slot.offer.is_some() {
            Arc::make_mut(&mut self.chunks[chunk_of(ip)]).insert(ip, slot);
        }
    }

    fn unindex(&mut self, l: &Lease) {
        unindex(&mut self.by_hw, mac_key(&l.hw), l.ip);
        if let Some(c) = &l.client_id {
            unindex(&mut self.by_client_id, c.clone(), l.ip);
        }
        if let Some(s) = self.by_pool.get_mut(&l.pool) {
            s.remove(&l.ip);
            if s.is_empty() {
                self.by_pool.remove(&l.pool);
            }
        }
    }

    /// The configured pools and their dynamic address counts (a commit).
    pub fn set_pools(&mut self, pools: impl Iterator<Item = (String, u64, PoolCounts)>) {
        self.pools = pools.map(|(n, total, c)| (n, (total, c))).collect();
    }

    /// The kept counts of a pool changed.
    pub fn set_counts(&mut self, pool: &str, counts: PoolCounts) {
        if let Some((_, c)) = self.pools.get_mut(pool) {
            *c = counts;
        }
    }

    /// Every pool's statistics, from the kept counts (O(pools): a metrics
    /// scrape).
    pub fn pool_stats(&self) -> Vec<(String, PoolStats)> {
        self.pools
            .iter()
            .map(|(n, (t, c))| (n.clone(), c.stats(*t)))
            .collect()
    }

    fn stats(&self, name: &str) -> Option<PoolStats> {
        self.pools.get(name).map(|(total, c)| c.stats(*total))
    }

    /// The whole table for a read that walks it after the lock is released
    /// (O(chunks + pools) here).
    pub fn frozen(&self) -> Frozen {
        Frozen {
            chunks: self.chunks.clone(),
            pools: self.pool_stats(),
        }
    }

    /// The leases of a streamed read: every lease (`pool` `None`) or
    /// those of one pool (see [`Leases`]).
    pub fn leases(&self, pool: Option<&str>, now: u64) -> Leases {
        let order = pool.map(|p| {
            let mut ips: Vec<Ipv4Addr> = self
                .by_pool
                .get(p)
                .map(|s| s.iter().copied().collect())
                .unwrap_or_default();
            ips.sort_unstable_by_key(|ip| u32::from(*ip));
            Order::Sorted(ips.into_iter())
        });
        Leases {
            chunks: self.chunks.clone(),
            pool: pool.map(str::to_string),
            now,
            order,
        }
    }

    fn slot(&self, ip: Ipv4Addr) -> Option<&Slot> {
        self.chunks[chunk_of(ip)].get(&ip)
    }

    /// What `q` selects, from key lookups: `None` when it needs the whole
    /// table (read it with [`Snapshot::frozen`], off the lock).
    pub fn select(&self, q: &Query, now: u64) -> Option<View> {
        let mut leases: Vec<Arc<Lease>> = Vec::new();
        for l in &q.leases {
            let ips: Vec<Ipv4Addr> = match l {
                LeaseQuery::All => return None,
                LeaseQuery::Ip(ip) => vec![*ip],
                LeaseQuery::Hw(hw) => self.by_hw.get(hw).cloned().unwrap_or_default(),
                LeaseQuery::ClientId(c) => self.by_client_id.get(c).cloned().unwrap_or_default(),
                LeaseQuery::Pool(p) => self
                    .by_pool
                    .get(p)
                    .map(|s| s.iter().copied().collect())
                    .unwrap_or_default(),
            };
            // the index names addresses where a lease or an offer matches:
            // keep what the address shows when that matches
            leases.extend(
                ips.into_iter()
                    .filter_map(|ip| self.slot(ip).and_then(|s| shown(s, now)))
                    .filter(|s| l.matches(s))
                    .cloned(),
            );
        }
        leases.sort_unstable_by_key(|l| u32::from(l.ip));
        leases.dedup_by_key(|l| l.ip);
        let mut pools: Vec<(String, PoolStats)> = Vec::new();
        for p in &q.pools {
            match p {
                PoolQuery::All => {
                    pools = self.pool_stats();
                    break;
                }
                PoolQuery::Named(n) => {
                    if let Some(s) = self.stats(n) {
                        if !pools.iter().any(|(m, _)| m == n) {
                            pools.push((n.clone(), s));
                        }
                    }
                }
            }
        }
        Some(View { leases, pools })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dhcp::leases::{LeaseState, Origin};

    fn lease(i: u8, pool: &str, hw: u8, cid: Option<u8>, state: LeaseState) -> Arc<Lease> {
        Arc::new(Lease {
            ip: Ipv4Addr::new(10, 0, 0, i),
            pool: pool.into(),
            hw: vec![2, 0, 0, 0, 0, hw],
            client_id: cid.map(|c| vec![1, c]),
            hostname: None,
            state,
            lifetime: 60,
            expires: 1_000,
            origin: Origin::Local,
        })
    }

    fn ips(v: &View) -> Vec<u8> {
        v.leases.iter().map(|l| l.ip.octets()[3]).collect()
    }

    /// Lookups by address, hardware address, client-id and pool find what
    /// a pass over the whole table finds, and follow every change.
    #[test]
    fn lookups_agree_with_the_whole_table() {
        let mut s = Snapshot::default();
        for i in 1..=200u8 {
            let l = lease(
                i,
                ["a", "b"][usize::from(i % 2)],
                i % 7,
                (i % 3 == 0).then_some(i % 5),
                LeaseState::Bound,
            );
            s.set(l.ip, Some(&l), None);
        }
        // an offer on an address without a lease, one on a leased address
        let o = lease(201, "a", 3, None, LeaseState::Offered);
        s.set(o.ip, None, Some(&o));
        let o2 = lease(10, "a", 6, None, LeaseState::Offered);
        let l10 = lease(10, "a", 10 % 7, None, LeaseState::Bound);
        s.set(o2.ip, Some(&l10), Some(&o2));
        // a moved lease: its old indexes go
        let moved = lease(20, "b", 99, Some(42), LeaseState::Released);
        s.set(moved.ip, Some(&moved), None);
        s.set(Ipv4Addr::new(10, 0, 0, 30), None, None);
        let all = s.frozen().view(500);
        assert_eq!(all.leases.len(), 200, "199 leases and one offer");
        let by = |f: &dyn Fn(&Lease) -> bool| -> Vec<u8> {
            all.leases
                .iter()
                .filter(|l| f(l))
                .map(|l| l.ip.octets()[3])
                .collect()
        };
        let q = |l: LeaseQuery| {
            ips(&s
                .select(
                    &Query {
                        leases: vec![l],
                        pools: vec![],
                    },
                    500,
                )
                .unwrap())
        };
        for hw in [0u8, 3, 6, 99, 100] {
            assert_eq!(
                q(LeaseQuery::Hw([2, 0, 0, 0, 0, hw])),
                by(&|l| l.hw[5] == hw),
                "hw {hw}"
            );
        }
        for c in [0u8, 1, 42, 77] {
            assert_eq!(
                q(LeaseQuery::ClientId(vec![1, c])),
                by(&|l| l.client_id.as_deref() == Some(&[1, c][..])),
                "client-id {c}"
            );
        }
        for p in ["a", "b", "c"] {
            assert_eq!(
                q(LeaseQuery::Pool(p.into())),
                by(&|l| l.pool == p),
                "pool {p}"
            );
        }
        assert_eq!(q(LeaseQuery::Ip(Ipv4Addr::new(10, 0, 0, 201))), vec![201]);
        assert_eq!(
            q(LeaseQuery::Ip(Ipv4Addr::new(10, 0, 0, 30))),
            Vec::<u8>::new()
        );
        // the lease shows on an address holding both
        let v = s
            .select(
                &Query {
                    leases: vec![LeaseQuery::Ip(l10.ip)],
                    pools: vec![],
                },
                500,
            )
            .unwrap();
        assert_eq!(v.leases[0].state, LeaseState::Bound);
        // an offer past its hold is not shown
        assert_eq!(q(LeaseQuery::Ip(o.ip)), vec![201]);
        let late = s
            .select(
                &Query {
                    leases: vec![LeaseQuery::Ip(o.ip)],
                    pools: vec![],
                },
                1_000,
            )
            .unwrap();
        assert!(late.leases.is_empty());
        assert!(
            s.select(&Query::all(), 500).is_none(),
            "the whole table is read off the lock"
        );
    }

    /// A whole-table read holds chunk pointers: the actor's later changes
    /// copy the chunk they touch and leave the reader's picture as it was.
    #[test]
    fn a_frozen_read_keeps_its_picture() {
        let mut s = Snapshot::default();
        let l = lease(1, "a", 1, None, LeaseState::Bound);
        s.set(l.ip, Some(&l), None);
        let frozen = s.frozen();
        let l2 = lease(2, "a", 2, None, LeaseState::Bound);
        s.set(l2.ip, Some(&l2), None);
        s.set(l.ip, None, None);
        assert_eq!(ips(&frozen.view(0)), vec![1]);
        assert_eq!(ips(&s.frozen().view(0)), vec![2]);
    }

    fn walked(mut leases: Leases, max: usize) -> (Vec<Ipv4Addr>, usize) {
        let (mut out, mut most) = (Vec::new(), 0);
        loop {
            let n = leases.next(max, |l| out.push(l.ip));
            if n == 0 {
                return (out, most);
            }
            most = most.max(n);
        }
    }

    /// A streamed walk lists what a whole-table view lists, in its order
    /// (address order for a small table, the chunks' for a large one; one
    /// pool's leases in address order), at most `max` per piece, and
    /// keeps the picture of when it was taken.
    #[test]
    fn a_streamed_walk_lists_what_the_view_lists() {
        for n in [300u32, 7_000] {
            let mut s = Snapshot::default();
            for i in 0..n {
                let ip = Ipv4Addr::from(0x0a00_0000 + i * 7);
                let pool = if i % 3 == 0 { "a" } else { "b" };
                let l = Arc::new(Lease {
                    ip,
                    expires: if i % 10 == 0 { 100 } else { 1_000 },
                    ..(*lease(1, pool, 1, None, LeaseState::Bound)).clone()
                });
                if i % 5 == 0 {
                    // offers, live or past their hold at 500
                    s.set(ip, None, Some(&l));
                } else {
                    s.set(ip, Some(&l), None);
                }
            }
            let view: Vec<Ipv4Addr> = s.frozen().view(500).leases.iter().map(|l| l.ip).collect();
            let walk = s.leases(None, 500);
            // changes after the walk was taken are not in it
            let late = lease(250, "a", 1, None, LeaseState::Bound);
            s.set(late.ip, Some(&late), None);
            s.set(view[0], None, None);
            let (got, most) = walked(walk, 100);
            assert_eq!(got, view, "{n} leases");
            assert!(most <= 100, "{most} in one piece");
            let pool_a: Vec<Ipv4Addr> = {
                let mut v: Vec<Ipv4Addr> = s
                    .frozen()
                    .view(500)
                    .leases
                    .iter()
                    .filter(|l| l.pool == "a")
                    .map(|l| l.ip)
                    .collect();
                v.sort_unstable_by_key(|ip| u32::from(*ip));
                v
            };
            let (got, most) = walked(s.leases(Some("a"), 500), 64);
            assert_eq!(got, pool_a);
            assert!(most <= 64);
            assert!(walked(s.leases(Some("zz"), 500), 64).0.is_empty());
        }
    }

    #[test]
    fn pool_statistics_come_from_the_kept_counts() {
        let mut s = Snapshot::default();
        s.set_pools(
            [
                ("a".to_string(), 10, PoolCounts::default()),
                ("b".to_string(), 5, PoolCounts::default()),
            ]
            .into_iter(),
        );
        s.set_counts(
            "a",
            PoolCounts {
                used: 3,
                offered: 1,
                declined: 1,
                ..Default::default()
            },
        );
        s.set_counts(
            "gone",
            PoolCounts {
                used: 1,
                ..Default::default()
            },
        );
        let v = s
            .select(
                &Query {
                    leases: vec![],
                    pools: vec![PoolQuery::Named("a".into())],
                },
                0,
            )
            .unwrap();
        assert_eq!(
            v.pools,
            vec![(
                "a".to_string(),
                PoolStats {
                    total: 10,
                    used: 3,
                    free: 5,
                    offered: 1,
                    declined: 1
                }
            )]
        );
        let v = s
            .select(
                &Query {
                    leases: vec![],
                    pools: vec![PoolQuery::All],
                },
                0,
            )
            .unwrap();
        assert_eq!(v.pools.len(), 2);
        let v = s
            .select(
                &Query {
                    leases: vec![],
                    pools: vec![PoolQuery::Named("zz".into())],
                },
                0,
            )
            .unwrap();
        assert!(v.pools.is_empty());
    }
}
