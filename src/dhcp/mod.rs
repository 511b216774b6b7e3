//! The DHCPv4 server (RFC 2131/2132): northbound glue, typed config →
//! runtime, and the hooks the hot-backup subsystem plugs into.
//!
//! ```text
//!  northbound actor ──prepare/apply──► DhcpSubsystem ──Command::Config──► server::DhcpServer (actor)
//!  northbound <get> ──state_xml──► Snapshot (Arc swapped by the actor) + Counters (atomics)
//!  metrics scrape ──MetricsReader──► the same Snapshot (pool statistics only) + Counters
//!  backup subsystem ──Hooks──► Command::Serving / Split / ApplyPeer / PeerLeases; replication (lease log, ACK gates)
//! ```
//! - `config`: the typed configuration, read from the YANG tree;
//! - `pool`: a configured pool reduced for serving;
//! - `handler`: the pure RFC 2131 §4.3 logic;
//! - `leases`: the lease table and the crash-safe store;
//! - `replication`: the numbered lease log streamed to the partner, and the
//!   gates that hold ACKs until the partner has their batch;
//! - `network`: the sockets;
//! - `server`: the actor tying them together.
//! - `probe`: the ping check, an ICMP echo to an address before it is
//!   offered;
//! - `activity`: the log lines of dropped requests and lease changes,
//!   rate-limited, and their per-minute summary.

pub mod activity;
pub mod clock;
pub mod config;
pub mod handler;
pub mod leases;
pub mod network;
mod os;
pub mod peer;
pub mod pool;
pub mod probe;
pub mod replication;
pub mod server;
pub mod snapshot;
#[cfg(test)]
mod stream_tests;

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigError, Selected, StateReader, Subsystem};
use crate::event::{Event, EventSink};
use crate::xml::escape_text;
use leases::{Lease, StoreError};
use server::{Command, Counters, DhcpServer, Replication, Shared, View};

pub const NS: &str = "urn:hotlease:yang:dhcp-server";

/// Errors starting the DHCP runtime.
#[derive(Debug, thiserror::Error)]
pub enum DhcpError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the hot-backup subsystem uses: the per-profile serving gate, the
/// replication of the lease log and the insertion of the partner's leases.
#[derive(Debug, Clone)]
pub struct Hooks {
    cmd: mpsc::UnboundedSender<Command>,
    replication: Replication,
    /// The actor's runtime (one thread).
    runtime: tokio::runtime::Handle,
    splits: server::Splits,
    /// The tasks spawned there: the thread waits for them at the end (at
    /// most `TASKS_GRACE`).
    tasks: Arc<Tasks>,
}

/// Tasks running on the actor's runtime.
#[derive(Debug, Default)]
struct Tasks {
    running: std::sync::atomic::AtomicUsize,
    none: tokio::sync::Notify,
}

/// Counts one task while it lives (also when its runtime drops it).
struct Running(Arc<Tasks>);

impl Running {
    fn new(t: &Arc<Tasks>) -> Running {
        t.running.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Running(t.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self
            .0
            .running
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst)
            == 1
        {
            self.0.none.notify_waiters();
        }
    }
}

impl Tasks {
    /// Until no task runs.
    async fn all_done(&self) {
        loop {
            let done = self.none.notified();
            if self.running.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                return;
            }
            done.await;
        }
    }
}

/// How long the DHCP thread waits, once the actor stopped, for the tasks
/// spawned on its runtime to end.
const TASKS_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

impl Hooks {
    /// Run `task` on the DHCP actor's thread (the hot-backup sessions:
    /// what they exchange with the actor then never crosses threads).
    /// It must not block, and should end soon after shutdown.
    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let running = Running::new(&self.tasks);
        self.runtime.spawn(async move {
            let out = task.await;
            drop(running);
            out
        })
    }

    /// Pools bound to `profile` serve only while it is master. A pool
    /// without a profile always serves.
    pub fn set_serving(&self, profile: &str, master: bool) {
        let _ = self.cmd.send(Command::Serving {
            profile: profile.to_string(),
            master,
        });
    }

    /// Split brain (the channel to the partner down while `profile` is
    /// master here, maybe there too): its pools take new addresses from
    /// `half` first, from the other half only when it has none left;
    /// `None` ends the split. Survives configuration commits.
    pub fn set_split(&self, profile: &str, half: Option<pool::Half>) {
        let _ = self.cmd.send(Command::Split {
            profile: profile.to_string(),
            half,
        });
    }

    /// The half `profile`'s pools hand out now, in a split brain (set by
    /// `set_split`, or by the server itself after a stall).
    pub fn split_half(&self, profile: &str) -> Option<pool::Half> {
        self.splits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(profile)
            .copied()
    }

    /// The half `profile`'s pools take in a split brain, which the server
    /// applies by itself when it finds it did not run for a while (a
    /// stopped process: the partner may have served meanwhile).
    pub fn own_half(&self, profile: &str, half: pool::Half) {
        let _ = self.cmd.send(Command::OwnHalf {
            profile: profile.to_string(),
            half,
        });
    }

    /// Every lease change (bound, renewed, released, declined, expired,
    /// removed by configuration) in log order, numbered by sync batch, and
    /// the per-profile gates on ACKs (see `replication`).
    pub fn replication(&self) -> &Replication {
        &self.replication
    }

    /// Merge the partner's updates into the pools bound to `profiles`
    /// (newest lease wins; leases taken have origin peer). The answer comes
    /// once every change made is durable; it never comes when the server
    /// is gone or cannot write.
    pub fn apply_peer(
        &self,
        updates: Vec<peer::PeerUpdate>,
        profiles: Arc<[String]>,
    ) -> tokio::sync::oneshot::Receiver<peer::Applied> {
        let (done, rx) = tokio::sync::oneshot::channel();
        let _ = self.cmd.send(Command::ApplyPeer {
            updates,
            profiles,
            done,
        });
        rx
    }

    /// The leases of the pools bound to `profiles`, in address order (a
    /// copy of pointers: cheap), for a batch backup.
    pub fn peer_leases(
        &self,
        profiles: Arc<[String]>,
    ) -> tokio::sync::oneshot::Receiver<Vec<Arc<Lease>>> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let _ = self.cmd.send(Command::PeerLeases { profiles, reply });
        rx
    }
}

/// What the metrics endpoint reads (`crate::metrics`): the packet
/// counters and the per-pool statistics of the `<get>` mirror, neither
/// through the actor.
#[derive(Debug, Clone)]
pub struct MetricsReader {
    counters: Arc<Counters>,
    snapshot: Arc<std::sync::Mutex<server::Snapshot>>,
}

impl MetricsReader {
    pub fn new(counters: Arc<Counters>, snapshot: Arc<std::sync::Mutex<server::Snapshot>>) -> Self {
        MetricsReader { counters, snapshot }
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Per pool: name and statistics now (kept counts: the mirror's lock
    /// is held for a pass over the pools).
    pub fn pools(&self) -> Vec<(String, leases::PoolStats)> {
        self.snapshot
            .lock()
            .map(|g| g.pool_stats())
            .unwrap_or_default()
    }
}

/// The DHCP subsystem as the northbound sees it.
#[derive(Debug)]
pub struct DhcpSubsystem {
    cmd: mpsc::UnboundedSender<Command>,
    shared: Shared,
}

/// The actor's SCHED_RR priority: one below the lease writer's and the
/// ACK release's (`realtime_priority`, at least 1). Under a flood the actor
/// always has another packet and never blocks, and a thread of equal
/// SCHED_RR priority woken on its CPU waits for the end of its round-robin
/// slice (100 ms): every ACK waited for it, the ACK delay jumped from
/// ~20 ms to 100–640 ms and the rate fell by up to 45 % in some periods
/// (BENCHMARKS.md, "DHCP rate with 1,000 subscribers"). One below, the
/// threads that finish an ACK take the CPU from the actor at once, and the
/// daemon never uses more than the priority it is given.
pub fn actor_priority(realtime_priority: u8) -> u8 {
    realtime_priority.saturating_sub(1).max(1)
}

/// Start the DHCP runtime with its lease store in `dir`, serving on UDP
/// `port` (67; tests may pick another), its threads under SCHED_RR at
/// `realtime_priority` (bootstrap `[dhcp]`; 0: the normal scheduler): the
/// lease writer and the ACK release at it, the actor one below
/// ([`actor_priority`]).
/// Returns the subsystem for the northbound, the hooks, and the actor task.
pub fn start(
    dir: &Path,
    port: u16,
    cancel: CancellationToken,
    realtime_priority: u8,
) -> Result<(DhcpSubsystem, Hooks, JoinHandle<()>), DhcpError> {
    let (server, shared) = DhcpServer::new(server::file_store(dir), port, cancel)?;
    // An ACK passes from the actor to the lease writer (fsync) and back
    // out; at each hop the woken thread must get the CPU at once, not after
    // the slice of whatever runs there (a large NETCONF reply being
    // rendered and encrypted), or the ACK delay triples under reads
    // (BENCHMARKS.md, "Reads at carrier scale").
    let realtime = match realtime_priority {
        0 => Ok(()),
        p => server.realtime(p),
    };
    let (cmd, rx) = mpsc::unbounded_channel();
    // The actor gets a thread and a single-threaded runtime of its own: its
    // socket wake-ups then never migrate between the shared workers, and
    // the NETCONF side cannot delay it. The hot-backup sessions run there
    // too (`Hooks::spawn`): a partner's batch reaches the actor, and the
    // partner's acknowledgement the held ACKs, without a hand-off between
    // threads.
    let io_err = |path: &str, source| StoreError::Io {
        path: path.into(),
        source,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| io_err("dhcp runtime", e))?;
    let runtime = rt.handle().clone();
    let tasks = Arc::new(Tasks::default());
    let spawned = tasks.clone();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("dhcp".into())
        .spawn(move || {
            let realtime = realtime.and_then(|()| match realtime_priority {
                0 => Ok(()),
                p => crate::sched::realtime_self(actor_priority(p)),
            });
            match realtime {
                Ok(()) if realtime_priority > 0 => tracing::info!(
                    priority = realtime_priority,
                    actor = actor_priority(realtime_priority),
                    "dhcp threads run SCHED_RR"
                ),
                Ok(()) => {}
                // Info, not a warning: a sandbox that forbids real-time
                // scheduling (systemd RestrictRealtime=) chose so.
                Err(e) => tracing::info!(error = %e, "dhcp threads keep the normal scheduler"),
            }
            rt.block_on(async move {
                server.run(rx).await;
                // the sessions spawned here end by themselves once
                // shutdown is cancelled (their last word to the partner);
                // dropping the runtime would cut them off
                let _ = tokio::time::timeout(TASKS_GRACE, spawned.all_done()).await;
            });
            let _ = done_tx.send(());
        })
        .map_err(|e| io_err("dhcp thread", e))?;
    let task = tokio::spawn(async move {
        let _ = done_rx.await;
    });
    let hooks = Hooks {
        cmd: cmd.clone(),
        replication: shared.replication.clone(),
        runtime,
        tasks,
        splits: shared.splits.clone(),
    };
    Ok((DhcpSubsystem { cmd, shared }, hooks, task))
}

impl DhcpSubsystem {
    pub fn metrics(&self) -> MetricsReader {
        MetricsReader::new(self.shared.counters.clone(), self.shared.snapshot.clone())
    }

    /// The lease store's health: `Some(error)` while it cannot write (no
    /// ACK goes out), `None` while it works.
    pub fn store_health(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.shared.counters.store_health.subscribe()
    }

    /// Report pool exhaustion, utilization-threshold crossings and lease
    /// conflicts after a split brain as notifications to `sink`.
    pub fn report_events(&self, sink: EventSink) {
        let _ = self.cmd.send(Command::ReportEvents(sink));
    }
}

/// `pool-exhausted`.
fn pool_exhausted_event(pool: &str, total: u64) -> Event {
    Event::new("/hotlease-dhcp-server:pool-exhausted")
        .leaf("pool", pool)
        .leaf("total", total.min(u64::from(u32::MAX)))
}

/// `pool-utilization`: `above` is a rising crossing.
fn pool_utilization_event(pool: &str, above: bool, used: u64, total: u64, threshold: u8) -> Event {
    Event::new("/hotlease-dhcp-server:pool-utilization")
        .leaf("pool", pool)
        .leaf("direction", if above { "rising" } else { "falling" })
        .leaf("used", used.min(u64::from(u32::MAX)))
        .leaf("total", total.min(u64::from(u32::MAX)))
        .leaf("threshold", threshold)
}

/// `lease-conflict`: `kept` keeps the address, `lost`'s client loses it.
fn lease_conflict_event(kept: &Lease, lost: &Lease) -> Event {
    Event::new("/hotlease-dhcp-server:lease-conflict")
        .leaf("pool", &kept.pool)
        .leaf("ip-address", kept.ip)
        .leaf("kept-mac-address", mac6(&kept.hw))
        .leaf("lost-mac-address", mac6(&lost.hw))
        .leaf("kept-origin", kept.origin.as_str())
}

impl Subsystem for DhcpSubsystem {
    fn name(&self) -> &'static str {
        "dhcp"
    }

    /// Everything the runtime needs is checked by YANG and
    /// `check_cross_pool`; nothing here can fail.
    fn prepare(&mut self, _old: &Config, _new: &Config) -> Result<(), Vec<ConfigError>> {
        Ok(())
    }

    fn apply(&mut self, old: &Config, new: &Config) {
        if old.dhcp != new.dhcp || old == &Config::default() {
            let _ = self.cmd.send(Command::Config(Arc::new(new.dhcp.clone())));
        }
    }

    fn namespaces(&self) -> &'static [&'static str] {
        &[NS]
    }

    fn state_xml(&self) -> String {
        Reader::of(&self.shared).state_xml_of(None)
    }

    fn state_xml_of(&self, selected: Option<&[Selected]>) -> String {
        Reader::of(&self.shared).state_xml_of(selected)
    }

    fn state_reader(&self) -> Option<Arc<dyn StateReader>> {
        Some(Arc::new(Reader::of(&self.shared)))
    }
}

/// The DHCP state as any thread reads it: from the snapshot.
#[derive(Debug)]
struct Reader {
    counters: Arc<Counters>,
    snapshot: Arc<std::sync::Mutex<snapshot::Snapshot>>,
}

impl Reader {
    fn of(shared: &Shared) -> Reader {
        Reader {
            counters: shared.counters.clone(),
            snapshot: shared.snapshot.clone(),
        }
    }
}

impl StateReader for Reader {
    fn state_xml_of(&self, selected: Option<&[Selected]>) -> String {
        match selected {
            None => state_for(self, &snapshot::Query::all()),
            Some(sel) => state_for(self, &query(sel)),
        }
    }

    fn costly(&self, selected: Option<&[Selected]>) -> bool {
        selected.is_none_or(|sel| query(sel).leases.contains(&snapshot::LeaseQuery::All))
    }

    fn streamed(&self) -> Option<(&'static str, &'static str)> {
        Some(("dhcp-server", "lease"))
    }

    /// Every lease, or one pool's (a `pool` match): the read's chunk
    /// pointers or the pool's addresses, taken under the lock.
    fn entries(
        &self,
        list: &str,
        matches: &[(String, String)],
    ) -> Option<Box<dyn crate::config::Entries>> {
        let pool = match matches {
            _ if list != "lease" => return None,
            [] => None,
            [(leaf, p)] if leaf == "pool" => Some(p.as_str()),
            _ => return None,
        };
        let now = server::now_unix();
        let leases = self.snapshot.lock().ok()?.leases(pool, now);
        Some(Box::new(LeaseEntries(leases)))
    }
}

/// The snapshot lookups that answer a read selecting `sel` under
/// `dhcp-server`: a lease by its address, hardware address, client-id or
/// pool (the first of those the read requires), a pool's statistics by
/// its name. A value that does not parse selects nothing: the data holds
/// canonical values only, which such a value never equals.
fn query(sel: &[Selected]) -> snapshot::Query {
    use snapshot::{LeaseQuery, PoolQuery};
    let mut q = snapshot::Query::default();
    for s in sel {
        let m = |leaf: &str| {
            s.matches
                .iter()
                .find(|(n, _)| n == leaf)
                .map(|(_, v)| v.as_str())
        };
        match s.name.as_str() {
            "lease" => {
                let lookup = if let Some(v) = m("ip-address") {
                    v.parse().ok().map(LeaseQuery::Ip)
                } else if let Some(v) = m("mac-address") {
                    unhex_colon(v)
                        .and_then(|b| <[u8; 6]>::try_from(b).ok())
                        .map(LeaseQuery::Hw)
                } else if let Some(v) = m("client-id") {
                    unhex_colon(v).map(LeaseQuery::ClientId)
                } else if let Some(v) = m("pool") {
                    Some(LeaseQuery::Pool(v.to_string()))
                } else {
                    Some(LeaseQuery::All)
                };
                q.leases.extend(lookup);
            }
            "ip-pool" => q.pools.push(match m("name") {
                Some(n) => PoolQuery::Named(n.to_string()),
                None => PoolQuery::All,
            }),
            // the counters are always written; other children have no state
            _ => {}
        }
    }
    q
}

/// `02:0a:ff` as bytes (the YANG `hex-string` / `mac-address` forms).
fn unhex_colon(s: &str) -> Option<Vec<u8>> {
    s.split(':')
        .map(|b| {
            if b.len() == 2 {
                u8::from_str_radix(b, 16).ok()
            } else {
                None
            }
        })
        .collect()
}

/// The state `q` selects: key lookups under the snapshot's lock, or, for
/// the whole table, its chunks taken under the lock and walked after it is
/// released (the actor is never held for a pass).
fn state_for(shared: &Reader, q: &snapshot::Query) -> String {
    let now = server::now_unix();
    let (selected, frozen) = match shared.snapshot.lock() {
        Ok(g) => match g.select(q, now) {
            Some(v) => (Some(v), None),
            None => (None, Some(g.frozen())),
        },
        Err(_) => (Some(View::default()), None),
    };
    let view = match (selected, frozen) {
        (Some(v), _) => v,
        (None, Some(f)) => f.view(now),
        (None, None) => View::default(),
    };
    render_state(&view, &shared.counters)
}

fn hex_colon(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 3);
    for (i, x) in b.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        let _ = write!(s, "{x:02x}");
    }
    s
}

fn mac6(hw: &[u8]) -> String {
    hex_colon(&snapshot::mac_key(hw))
}

/// A `date-and-time` in UTC as libyang prints it (its canonical form:
/// `+00:00`, not `Z`), so that a streamed reply reads as the usual one;
/// past 9999 the last second of 9999. Written by hand: a whole table
/// writes 100,000 of them, and chrono's `format` costs more than the rest
/// of the entry.
fn push_date_time(x: &mut String, unix: u64) {
    let secs = unix.min(253_402_300_799);
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let t = secs % 86_400;
    push_padded(x, y as u64, 4);
    x.push('-');
    push_padded(x, u64::from(m), 2);
    x.push('-');
    push_padded(x, u64::from(d), 2);
    x.push('T');
    push_padded(x, t / 3600, 2);
    x.push(':');
    push_padded(x, t / 60 % 60, 2);
    x.push(':');
    push_padded(x, t % 60, 2);
    x.push_str("+00:00");
}

/// Year, month, day of a day count since 1970-01-01 (H. Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `n` in decimal, zero-padded to `width` digits.
fn push_padded(x: &mut String, n: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let i = i.min(buf.len().saturating_sub(width));
    x.push_str(std::str::from_utf8(&buf[i..]).unwrap_or_default());
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Bytes as `hex-string` (`02:0a:ff`).
fn push_hex_colon(x: &mut String, b: &[u8]) {
    for (i, v) in b.iter().enumerate() {
        if i > 0 {
            x.push(':');
        }
        x.push(char::from(HEX[usize::from(v >> 4)]));
        x.push(char::from(HEX[usize::from(v & 15)]));
    }
}

fn push_ip(x: &mut String, ip: std::net::Ipv4Addr) {
    for (i, o) in ip.octets().iter().enumerate() {
        if i > 0 {
            x.push('.');
        }
        push_padded(x, u64::from(*o), 1);
    }
}

/// Text content: `&`, `<`, `>` escaped (as [`escape_text`]).
fn push_escaped(x: &mut String, s: &str) {
    if !s.contains(['&', '<', '>']) {
        x.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '&' => x.push_str("&amp;"),
            '<' => x.push_str("&lt;"),
            '>' => x.push_str("&gt;"),
            c => x.push(c),
        }
    }
}

/// Client-sent text (a DHCP option is any UTF-8 the client chose) made
/// safe for a YANG `string` leaf in XML 1.0, written into `x`: control
/// characters and the characters XML cannot carry (U+FFFE, U+FFFF)
/// become '?', markup is escaped. Applied when the state is written, so
/// leases stored before this rule existed are shown cleaned too.
fn push_clean(x: &mut String, s: &str) {
    if s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && !matches!(b, b'&' | b'<' | b'>'))
    {
        x.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '&' => x.push_str("&amp;"),
            '<' => x.push_str("&lt;"),
            '>' => x.push_str("&gt;"),
            c if c.is_control() || !xml_char(c) => x.push('?'),
            c => x.push(c),
        }
    }
}

/// Whether `c` may appear in an XML 1.0 document (production `Char`):
/// libyang refuses a document holding any other character.
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

/// `s` with the characters a YANG string in XML cannot carry as '?' (as
/// `push_clean`, unescaped: a notification leaf's value).
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() || !xml_char(c) {
                '?'
            } else {
                c
            }
        })
        .collect()
}

/// `lease-event` for a lease change (`lease-notifications` on); a lease
/// removed by configuration is not an event of the client's.
fn lease_event(ev: &leases::LeaseEvent) -> Option<Event> {
    use leases::EventKind;
    let what = match ev.kind {
        EventKind::Bound => "bound",
        EventKind::Renewed => "renewed",
        EventKind::Released => "released",
        EventKind::Declined => "declined",
        EventKind::Expired => "expired",
        EventKind::Removed => return None,
    };
    let l = &ev.lease;
    let mut e = Event::new("/hotlease-dhcp-server:lease-event")
        .leaf("event", what)
        .leaf("ip-address", l.ip)
        .leaf("pool", &l.pool)
        .leaf("mac-address", mac6(&l.hw));
    if let Some(cid) = &l.client_id {
        e = e.leaf("client-id", hex_colon(cid));
    }
    if let Some(h) = &l.hostname {
        e = e.leaf("hostname", printable(h));
    }
    Some(
        e.leaf("expires", {
            let mut d = String::new();
            push_date_time(&mut d, l.expires);
            d
        })
        .leaf("origin", l.origin.as_str()),
    )
}

/// One `lease` entry as XML, as libyang prints it (a streamed read
/// writes it into the reply as it stands).
fn render_lease(x: &mut String, l: &Lease) {
    x.push_str("<lease><ip-address>");
    push_ip(x, l.ip);
    if l.pool.is_empty() {
        x.push_str("</ip-address><pool/><mac-address>");
    } else {
        x.push_str("</ip-address><pool>");
        push_escaped(x, &l.pool);
        x.push_str("</pool><mac-address>");
    }
    push_hex_colon(x, &snapshot::mac_key(&l.hw));
    x.push_str("</mac-address>");
    match &l.client_id {
        // libyang prints an empty value as an empty element
        Some(cid) if cid.is_empty() => x.push_str("<client-id/>"),
        Some(cid) => {
            x.push_str("<client-id>");
            push_hex_colon(x, cid);
            x.push_str("</client-id>");
        }
        None => {}
    }
    match &l.hostname {
        Some(h) if h.is_empty() => x.push_str("<hostname/>"),
        Some(h) => {
            x.push_str("<hostname>");
            push_clean(x, h);
            x.push_str("</hostname>");
        }
        None => {}
    }
    x.push_str("<state>");
    x.push_str(l.state.as_str());
    x.push_str("</state><valid-lifetime>");
    push_padded(x, u64::from(l.lifetime), 1);
    x.push_str("</valid-lifetime><expires>");
    push_date_time(x, l.expires);
    x.push_str("</expires><origin>");
    x.push_str(l.origin.as_str());
    x.push_str("</origin></lease>");
}

/// The leases of a streamed read (see [`config::Entries`]).
#[derive(Debug)]
struct LeaseEntries(snapshot::Leases);

impl crate::config::Entries for LeaseEntries {
    fn next_piece(&mut self, out: &mut String) -> bool {
        self.0
            .next(crate::config::PIECE_ENTRIES, |l| render_lease(out, l))
            > 0
    }
}

/// The operational state of the module as XML.
pub fn render_state(snap: &View, c: &Counters) -> String {
    let mut x = String::with_capacity(256 + snap.leases.len() * 320);
    let _ = write!(x, "<dhcp-server xmlns=\"{NS}\">");
    for (name, s) in &snap.pools {
        let _ = write!(
            x,
            "<ip-pool><name>{}</name><statistics><total>{}</total><used>{}</used><free>{}</free><offered>{}</offered><declined>{}</declined></statistics></ip-pool>",
            escape_text(name),
            s.total.min(u64::from(u32::MAX)),
            s.used.min(u64::from(u32::MAX)),
            s.free.min(u64::from(u32::MAX)),
            s.offered.min(u64::from(u32::MAX)),
            s.declined.min(u64::from(u32::MAX)),
        );
    }
    for l in &snap.leases {
        render_lease(&mut x, l);
    }
    let g = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let _ = write!(
        x,
        "<statistics><packets-received>{}</packets-received><dropped-malformed>{}</dropped-malformed><dropped-interface>{}</dropped-interface><dropped-no-pool>{}</dropped-no-pool><dropped-not-serving>{}</dropped-not-serving><exhausted>{}</exhausted><send-errors>{}</send-errors><acks-withheld>{}</acks-withheld><dropped-inform-no-address>{}</dropped-inform-no-address><dropped-bootp>{}</dropped-bootp><bootp-replies>{}</bootp-replies><lenient-requests>{}</lenient-requests><ping-checks>{}</ping-checks><ping-conflicts>{}</ping-conflicts>\
<received><discover>{}</discover><request>{}</request><decline>{}</decline><release>{}</release><inform>{}</inform><other>{}</other></received>\
<sent><offer>{}</offer><ack>{}</ack><nak>{}</nak></sent></statistics>\
<lease-store-failed>{}</lease-store-failed>",
        g(&c.received),
        g(&c.malformed),
        g(&c.wrong_interface),
        g(&c.no_pool),
        g(&c.not_serving),
        g(&c.exhausted),
        g(&c.send_errors),
        g(&c.acks_withheld),
        g(&c.inform_no_address),
        g(&c.bootp_dropped),
        g(&c.bootp_replies),
        g(&c.lenient),
        g(&c.ping_checks),
        g(&c.ping_conflicts),
        g(&c.discover),
        g(&c.request),
        g(&c.decline),
        g(&c.release),
        g(&c.inform),
        g(&c.other),
        g(&c.offer),
        g(&c.ack),
        g(&c.nak),
        c.store_failed.load(Ordering::Relaxed),
    );
    let _ = write!(
        x,
        "<wall-clock-offset>{}</wall-clock-offset>",
        clock::wall_offset_secs()
    );
    x.push_str("</dhcp-server>");
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The threads an ACK passes through run SCHED_RR: the lease writer
    /// and the ACK release at the bootstrap's priority, the actor one
    /// below (so that they preempt it under a flood); what they start (a
    /// blocking helper) does not.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ack_path_threads_run_realtime() {
        // a priority no other test uses: the tests share the process
        const PRIO: u8 = 7;
        let shutdown = CancellationToken::new();
        let dir = tempfile::tempdir().unwrap();
        let (_dhcp, hooks, task) = start(dir.path(), 0, shutdown.child_token(), PRIO).unwrap();
        let (actor, helper) = hooks
            .spawn(async {
                let helper =
                    tokio::task::spawn_blocking(|| crate::sched::current_policy().unwrap());
                (
                    crate::sched::current_policy().unwrap(),
                    helper.await.unwrap(),
                )
            })
            .await
            .unwrap();
        assert_eq!(actor, (libc::SCHED_RR, i32::from(PRIO) - 1));
        assert_eq!(helper, (libc::SCHED_OTHER, 0));
        let at = |prio: u8| {
            let mut at: Vec<String> = std::fs::read_dir("/proc/self/task")
                .unwrap()
                .filter_map(|t| {
                    let t = t.ok()?;
                    let tid: i32 = t.file_name().to_str()?.parse().ok()?;
                    let comm = std::fs::read_to_string(t.path().join("comm")).ok()?;
                    (crate::sched::policy_of(tid).ok()? == (libc::SCHED_RR, i32::from(prio)))
                        .then(|| comm.trim().to_string())
                })
                .collect();
            at.sort();
            at
        };
        assert_eq!(at(PRIO), ["lease-ack", "lease-writer"]);
        assert_eq!(at(PRIO - 1), ["dhcp"]);
        shutdown.cancel();
        task.await.unwrap();
    }

    /// A task given to `Hooks::spawn` runs on the actor's thread, and at
    /// shutdown the thread lets it finish its last word (within
    /// `TASKS_GRACE`) before the runtime goes: the DHCP task ends after it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spawned_tasks_run_on_the_actor_thread_and_finish_at_shutdown() {
        let shutdown = CancellationToken::new();
        let dir = tempfile::tempdir().unwrap();
        let (_dhcp, hooks, task) = start(dir.path(), 0, shutdown.child_token(), 0).unwrap();
        let name = hooks
            .spawn(async { std::thread::current().name().map(str::to_string) })
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("dhcp"));
        let policy = hooks.spawn(async { crate::sched::current_policy().unwrap() });
        assert_eq!(policy.await.unwrap(), (libc::SCHED_OTHER, 0));
        let said = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (stop, flag) = (shutdown.clone(), said.clone());
        let _session = hooks.spawn(async move {
            stop.cancelled().await;
            // a goodbye to the partner takes a moment
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        shutdown.cancel();
        task.await.unwrap();
        assert!(
            said.load(std::sync::atomic::Ordering::SeqCst),
            "the runtime went before the task's last word"
        );
    }

    fn clean(s: &str) -> String {
        let mut x = String::new();
        push_clean(&mut x, s);
        x
    }

    /// The hand-written date is chrono's, to the last second of 9999.
    #[test]
    fn dates_are_written_as_chrono_writes_them() {
        let chrono_date = |unix: u64| {
            let secs = i64::try_from(unix).unwrap_or(i64::MAX).min(253_402_300_799);
            chrono::DateTime::from_timestamp(secs, 0)
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%S+00:00")
                .to_string()
        };
        let mut samples = vec![
            0,
            59,
            86_399,
            86_400,
            951_782_400,
            951_868_799,
            4_102_444_800,
            4_107_542_400,
            253_402_300_799,
            253_402_300_800,
            infinite_leases_expiry(),
            u64::MAX,
        ];
        let mut v: u64 = 1;
        for _ in 0..20_000 {
            v = v
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            samples.push(v % 253_402_300_800);
        }
        for unix in samples {
            let mut x = String::new();
            push_date_time(&mut x, unix);
            assert_eq!(x, chrono_date(unix), "{unix}");
        }
    }

    fn infinite_leases_expiry() -> u64 {
        leases::infinite_expiry(1_800_000_000)
    }

    /// A lease learnt from the partner shows `origin peer` (the YANG
    /// `lease-origin`), and an infinite lease, whose expiry carries its
    /// grant, the largest date; libyang takes both.
    #[test]
    fn peer_and_infinite_leases_render_valid_state() {
        use leases::{infinite_expiry, LeaseState, Origin};
        let peer = Lease {
            ip: "10.0.0.5".parse().unwrap(),
            pool: "lan".into(),
            hw: vec![2, 0, 0, 0, 0, 1],
            client_id: None,
            hostname: None,
            state: LeaseState::Bound,
            lifetime: u32::MAX,
            expires: infinite_expiry(1_800_000_000),
            origin: Origin::Peer,
        };
        let local = Lease {
            ip: "10.0.0.6".parse().unwrap(),
            lifetime: 3600,
            expires: 1_800_003_600,
            origin: Origin::Local,
            ..peer.clone()
        };
        let view = View {
            leases: vec![Arc::new(peer), Arc::new(local)],
            pools: Vec::new(),
        };
        let x = render_state(&view, &Counters::default());
        assert!(x.contains(
            "<ip-address>10.0.0.5</ip-address><pool>lan</pool><mac-address>02:00:00:00:00:01</mac-address>\
<state>bound</state><valid-lifetime>4294967295</valid-lifetime><expires>9999-12-31T23:59:59+00:00</expires><origin>peer</origin>"
        ), "{x}");
        assert!(
            x.contains("<expires>2027-01-15T09:00:00+00:00</expires><origin>local</origin>"),
            "{x}"
        );
        crate::yang::parse_state_xml(&x).expect("valid state");
    }

    /// A read's selection becomes snapshot lookups: the first key the
    /// read requires, a value that cannot be in the data selects nothing,
    /// a lease without any of the indexed leaves is the whole table.
    #[test]
    fn selections_become_lookups() {
        use snapshot::{LeaseQuery, PoolQuery, Query};
        let sel = |name: &str, m: &[(&str, &str)]| Selected {
            name: name.into(),
            matches: m
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        };
        assert_eq!(
            query(&[
                sel(
                    "lease",
                    &[("state", "bound"), ("mac-address", "02:00:00:00:0a:ff")]
                ),
                sel(
                    "lease",
                    &[("client-id", "01:02"), ("ip-address", "10.0.0.1")]
                ),
                sel("lease", &[("client-id", "ff:00:0b")]),
                sel("lease", &[("pool", "lan")]),
                sel("ip-pool", &[("name", "lan")]),
                sel("statistics", &[]),
            ]),
            Query {
                leases: vec![
                    LeaseQuery::Hw([2, 0, 0, 0, 0x0a, 0xff]),
                    LeaseQuery::Ip("10.0.0.1".parse().unwrap()),
                    LeaseQuery::ClientId(vec![0xff, 0, 0x0b]),
                    LeaseQuery::Pool("lan".into()),
                ],
                pools: vec![PoolQuery::Named("lan".into())],
            }
        );
        for bad in [
            ("mac-address", "02:00:00:00:0a"),
            ("mac-address", "zz:00:00:00:00:00"),
            ("ip-address", "10.0.0.300"),
            ("client-id", "1:2"),
        ] {
            assert_eq!(query(&[sel("lease", &[bad])]), Query::default(), "{bad:?}");
        }
        assert_eq!(
            query(&[sel("lease", &[("state", "bound")]), sel("ip-pool", &[])]),
            Query::all()
        );
        assert_eq!(query(&[sel("interface", &[])]), Query::default());
    }

    /// Issue 9 item 2: U+FFFF passed, and libyang refused the whole state.
    #[test]
    fn clean_keeps_only_xml_characters() {
        assert_eq!(clean("box\u{FFFF}1"), "box?1");
        assert_eq!(clean("\u{FFFE}a\u{0}\u{1b}\u{85}\u{7f}"), "?a????");
        assert_eq!(
            clean("h\u{FFFD}\u{E000}\u{10FFFF}é<&>"),
            "h\u{FFFD}\u{E000}\u{10FFFF}é&lt;&amp;&gt;"
        );
        for c in ['\u{D7FF}', '\u{20}', '\u{10000}'] {
            assert!(xml_char(c));
        }
        for c in ['\u{FFFE}', '\u{FFFF}', '\u{1F}', '\u{0}'] {
            assert!(!xml_char(c));
        }
    }
}
