//! The lease table (in memory, owned by the DHCP actor) and the lease store
//! (on disk in the storage dir).
//!
//! The table indexes leases by address and by client (option 61, else the
//! hardware address) and keeps the short-lived offers apart: an offer is
//! only a hold on an address, never persisted. The store is an append-only
//! log of checksummed lines (`leases.log`) compacted by rewrite + rename; a
//! torn last line after a crash fails its checksum and is cut off at load.
//! The store sits behind [`LeaseStore`] (as in dora's `Storage` trait) so the
//! actor and its tests do not depend on the file format.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::pool::PoolRt;

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

/// Per-pool address usage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    pub total: u64,
    pub used: u64,
    pub free: u64,
    pub offered: u64,
    pub declined: u64,
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
    /// Pools whose never-used addresses are all taken: skip the fresh scan.
    fresh_full: HashSet<String>,
    /// Addresses whose lease or offer changed since `take_touched`.
    touched: Vec<Ipv4Addr>,
}

impl LeaseTable {
    pub fn new() -> LeaseTable {
        LeaseTable::default()
    }

    pub fn get(&self, ip: Ipv4Addr) -> Option<&Lease> {
        self.by_ip.get(&ip).map(|l| &**l)
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

    /// The lease of a client, if it still holds a record.
    pub fn client_lease(&self, key: &ClientKey) -> Option<&Lease> {
        self.by_client
            .get(key)
            .and_then(|ip| self.by_ip.get(ip))
            .map(|l| &**l)
    }

    /// Insert or replace the lease on `lease.ip`, keeping the indexes right.
    pub fn insert(&mut self, lease: Lease) {
        let key = lease.key();
        if let Some(old) = self.by_ip.get(&lease.ip) {
            let ok = old.key();
            if ok != key && self.by_client.get(&ok) == Some(&lease.ip) {
                self.by_client.remove(&ok);
            }
        }
        self.drop_offer_at(lease.ip);
        if lease.state == LeaseState::Declined {
            // a declining client must not get the address back
            if self.by_client.get(&key) == Some(&lease.ip) {
                self.by_client.remove(&key);
            }
        } else {
            if let Some(prev) = self.by_client.insert(key.clone(), lease.ip) {
                if prev != lease.ip {
                    // the client moved: its old address keeps its record but
                    // is no longer its own
                    self.fresh_full.remove(&lease.pool);
                }
            }
            if let Some(oip) = self.offer_by_client.get(&key).copied() {
                self.drop_offer_at(oip);
            }
        }
        self.touched.push(lease.ip);
        self.by_ip.insert(lease.ip, Arc::new(lease));
    }

    /// Remove the lease on `ip`.
    pub fn remove(&mut self, ip: Ipv4Addr) -> Option<Lease> {
        let l = Arc::unwrap_or_clone(self.by_ip.remove(&ip)?);
        self.touched.push(ip);
        let k = l.key();
        if self.by_client.get(&k) == Some(&ip) {
            self.by_client.remove(&k);
        }
        self.fresh_full.remove(&l.pool);
        Some(l)
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
        self.offers.insert(offer.ip, Arc::new(offer));
    }

    fn drop_offer_at(&mut self, ip: Ipv4Addr) {
        if let Some(o) = self.offers.remove(&ip) {
            self.touched.push(ip);
            let k = o.key();
            if self.offer_by_client.get(&k) == Some(&ip) {
                self.offer_by_client.remove(&k);
            }
            self.fresh_full.remove(&o.pool);
        }
    }

    /// Forget the offer made to a client (it chose another server).
    pub fn drop_offer(&mut self, key: &ClientKey) {
        if let Some(ip) = self.offer_by_client.get(key).copied() {
            self.drop_offer_at(ip);
        }
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
    /// or expired one.
    pub fn allocate(&mut self, pool: &PoolRt, key: &ClientKey, now: u64) -> Option<Ipv4Addr> {
        if !self.fresh_full.contains(&pool.name) {
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
                if pool.dynamic(ip) && !self.by_ip.contains_key(&ip) && {
                    match self.offers.get(&ip) {
                        None => true,
                        Some(o) => o.expires <= now || o.is_client(key),
                    }
                } {
                    self.cursor.insert(pool.name.clone(), a);
                    return Some(ip);
                }
            }
            self.fresh_full.insert(pool.name.clone());
        }
        self.by_ip
            .values()
            .filter(|l| l.pool == pool.name && pool.dynamic(l.ip))
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
            let Some(l) = self.by_ip.get_mut(&ip) else {
                continue;
            };
            let l = Arc::make_mut(l);
            self.touched.push(ip);
            if l.state == LeaseState::Declined {
                self.remove(ip);
                changes.push(Change::Delete(ip));
            } else {
                l.state = LeaseState::Expired;
                let l = l.clone();
                self.fresh_full.remove(&l.pool);
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
    fn sync(&mut self) -> Result<(), StoreError>;
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
    buf: Vec<u8>,
    records: u64,
    /// End of the records (the file may be longer: zeros written ahead).
    end: u64,
    /// Size of the file: records plus the zeros written ahead.
    alloc: u64,
    /// Whether `end` and `alloc` are known (after a load or a compaction).
    positioned: bool,
    /// A compaction being written by a helper thread, and the records
    /// synced to the old log since it started (they follow the snapshot in
    /// the new log).
    compacting: Option<Compacting>,
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

const LOG: &str = "leases.log";

impl FileStore {
    pub fn new(dir: &Path) -> FileStore {
        FileStore {
            path: dir.join(LOG),
            file: None,
            buf: Vec::with_capacity(64 * 1024),
            records: 0,
            end: 0,
            alloc: 0,
            positioned: false,
            compacting: None,
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
            let f = OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(&self.path)
                .map_err(|e| self.err(e))?;
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
    let crc = crc32fast::hash(&out[body..]);
    for (i, d) in out[start..start + 8].iter_mut().enumerate() {
        *d = HEX[((crc >> (28 - 4 * i)) & 15) as usize];
    }
    out.push(b'\n');
}

/// Parse one record line (without its newline); None when torn or corrupt.
pub fn decode_record(line: &str) -> Option<Change> {
    let (crc, body) = line.split_once(' ')?;
    if u32::from_str_radix(crc, 16).ok()? != crc32fast::hash(body.as_bytes()) {
        return None;
    }
    let f: Vec<&str> = body.split(' ').collect();
    match f.as_slice() {
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
    }
}

impl LeaseStore for FileStore {
    fn load(&mut self) -> Result<Vec<Lease>, StoreError> {
        let f = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.err(e)),
        };
        let mut map: HashMap<Ipv4Addr, Lease> = HashMap::new();
        let mut good: u64 = 0;
        let mut reader = BufReader::new(f);
        let mut line = String::new();
        let mut records = 0;
        loop {
            line.clear();
            let n = match reader.read_line(&mut line) {
                Ok(0) => break,
                Ok(n) => n,
                // invalid UTF-8: a corrupt tail
                Err(_) => break,
            };
            if !line.ends_with('\n') {
                break;
            }
            match decode_record(line.trim_end_matches('\n')) {
                Some(Change::Upsert(l)) => {
                    map.insert(l.ip, l);
                }
                Some(Change::Delete(ip)) => {
                    map.remove(&ip);
                }
                None => break,
            }
            records += 1;
            good += n as u64;
        }
        let len = std::fs::metadata(&self.path)
            .map_err(|e| self.err(e))?
            .len();
        // zeros written ahead of the records are not a torn tail
        let zeros_only = {
            use std::io::Read;
            let mut f = File::open(&self.path).map_err(|e| self.err(e))?;
            f.seek(SeekFrom::Start(good)).map_err(|e| self.err(e))?;
            let mut rest = Vec::new();
            f.take(PREALLOC * 2)
                .read_to_end(&mut rest)
                .map_err(|e| self.err(e))?;
            rest.iter().all(|b| *b == 0)
        };
        if good < len && !zeros_only {
            tracing::warn!(
                path = %self.path.display(),
                kept = good,
                dropped = len - good,
                "lease log has a torn or corrupt tail: cut"
            );
        }
        if good < len {
            let f = OpenOptions::new()
                .write(true)
                .open(&self.path)
                .map_err(|e| self.err(e))?;
            f.set_len(good).map_err(|e| self.err(e))?;
            f.sync_all().map_err(|e| self.err(e))?;
        }
        self.file = None;
        self.end = good;
        self.alloc = good;
        self.positioned = true;
        self.records = records;
        Ok(map.into_values().collect())
    }

    fn append(&mut self, changes: &[Change]) -> Result<(), StoreError> {
        for c in changes {
            encode_record_into(c, &mut self.buf);
        }
        self.records += changes.len() as u64;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        use std::os::unix::fs::FileExt;
        if self.buf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.buf);
        self.open()?;
        let (end, alloc) = (self.end, self.alloc);
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
            f.write_all_at(&buf, end)?;
            if new_alloc != alloc {
                f.sync_all()
            } else {
                f.sync_data()
            }
        })();
        if r.is_err() {
            // leave no complete line of a failed batch behind the end
            let _ = f.write_all_at(&vec![0u8; buf.len()], end);
        } else {
            self.end = need;
            if let Some(c) = &mut self.compacting {
                c.since.extend_from_slice(&buf);
                c.since_records += buf.iter().filter(|b| **b == b'\n').count() as u64;
            }
        }
        self.alloc = new_alloc.max(alloc);
        self.buf = buf;
        self.buf.clear();
        r.map_err(|e| self.err(e))
    }

    fn compact(&mut self, live: &[Lease]) -> Result<(), StoreError> {
        self.sync()?;
        let tmp = self.path.with_extension("log.tmp");
        let mut data = Vec::with_capacity(live.len() * 96);
        for l in live {
            data.extend_from_slice(encode_record(&Change::Upsert(l.clone())).as_bytes());
        }
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&data)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            if let Some(dir) = self.path.parent() {
                File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|e| self.err(e))?;
        self.file = None;
        self.end = data.len() as u64;
        self.alloc = self.end;
        self.positioned = true;
        self.open()?;
        self.records = live.len() as u64;
        Ok(())
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
                let mut map: HashMap<Ipv4Addr, Lease> = HashMap::new();
                let reader = BufReader::new(File::open(&path)?.take(upto));
                for line in reader.lines() {
                    match decode_record(&line?) {
                        Some(Change::Upsert(l)) => {
                            map.insert(l.ip, l);
                        }
                        Some(Change::Delete(ip)) => {
                            map.remove(&ip);
                        }
                        None => break,
                    }
                }
                let mut data = Vec::with_capacity(map.len() * 100);
                for l in map.into_values() {
                    data.extend_from_slice(encode_record(&Change::Upsert(l)).as_bytes());
                }
                let records = data.iter().filter(|b| **b == b'\n').count() as u64;
                let mut f = File::create(&tmp)?;
                f.write_all(&data)?;
                f.sync_all()?;
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
            Err(_) => return Err(self.err(std::io::Error::other("compaction thread panicked"))),
        };
        // the records synced meanwhile follow the snapshot, then the new
        // log replaces the old one in one rename
        let finish = || -> std::io::Result<()> {
            use std::os::unix::fs::FileExt;
            let f = OpenOptions::new().write(true).open(&tmp)?;
            f.write_all_at(&c.since, len)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            if let Some(dir) = self.path.parent() {
                File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        finish().map_err(|e| self.err(e))?;
        self.file = None;
        self.end = len + c.since.len() as u64;
        self.alloc = self.end;
        self.positioned = true;
        self.open()?;
        self.records = live_records + c.since_records;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
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
}
