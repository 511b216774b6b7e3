//! The DHCP actor: owns the pools, the lease table and the sockets; turns
//! received datagrams into replies with the pure handler; hands lease
//! changes to the store writer, which makes them durable *before* the ACKs
//! that grant them leave (group commit: one `fdatasync` per batch).
//!
//! ```text
//!  UDP :67 readable ────►┐
//!  commits / hooks ─Cmd─►│ DhcpServer (this actor) ──OFFER/NAK/INFORM──► Transmitter
//!  1/4 s tick ──────────►┘        │ changes + ACKs
//!                                 ▼
//!                      store writer thread: append batch `lsn`, publish it
//!                      (replication), fdatasync, then the ACKs of pools
//!                      without a profile ──► Transmitter
//!                                 │ ACKs of profiled pools (durable)
//!                                 ▼
//!                      ACK release stage: held until the partner's ack
//!                      covers their batch (or no gate / degraded), sent by
//!                      the thread that brings the ack (or by its timer) ──► Transmitter
//! ```
//! The writer is a plain thread because `fdatasync` blocks; the actor keeps
//! serving while a batch is being synced, and the next batch collects the
//! requests that arrived meanwhile. Waiting for the hot-backup partner is
//! the release stage's alone (a held ACK costs the writer a push into it),
//! so it never holds up a sync (`replication.rs` has the ordering
//! guarantees).
//!
//! The writer fails closed: the ACKs of a batch whose sync fails, or that
//! reach no writer, never leave; they are counted (`acks-withheld`) and
//! the store shows failed (`lease-store-failed`) until a sync works
//! again, which the writer tries every second by itself. The store keeps
//! the failed records and writes them with that sync.
//!
//! The actor drains the socket itself (`network::recv_batch` decodes, the
//! actor decides) instead of a receive task forwarding each datagram over a
//! channel: profiling under perfdhcp load showed the per-packet task
//! wake-ups dominating, while draining whatever is queued at once yields
//! natural batches, and with them fewer and larger lease-log syncs. Under
//! load it also wakes at most once per `RX_INTERVAL` (1 ms): on the
//! benchmark VM a wake-up cost more CPU than the packets it served. The
//! moderation is adaptive, as a NIC's: below `RX_BUSY_RATE` datagrams a
//! second every request is handled as it comes (the ACK delay a DHCP
//! client sees at ordinary rates is the fsync's and the partner's, not a
//! wait in the socket), above it the wake-ups are paced.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dhcproto::v4::MessageType;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::activity::{Activity, DropReason, Place};
use super::config::DhcpConfig;
use super::handler::{self, Ctx, Globals, Reply, Silence};
use super::leases::{Change, EventKind, Lease, LeaseState, LeaseStore, LeaseTable, Merge};
use super::network::{self, IfInfo, Inbound, Transmitter};
use super::peer::{Applied, PeerRefusal, PeerUpdate};
use super::pool::{Half, PoolRt};
use super::replication::{self, Publisher, ReleaseMsg, ReleaseStage, ReleaseTx};
use crate::event::EventSink;

/// Commands to the actor.
#[derive(Debug)]
pub enum Command {
    /// A committed configuration.
    Config(Arc<DhcpConfig>),
    /// A remote-backup-profile became master (`true`) or stopped being it.
    Serving { profile: String, master: bool },
    /// Apply the hot-backup partner's updates to the pools bound to
    /// `profiles`; `done` gets the outcome once it is durable.
    ApplyPeer {
        updates: Vec<PeerUpdate>,
        profiles: Arc<[String]>,
        done: oneshot::Sender<Applied>,
    },
    /// The leases (no offers) of the pools bound to `profiles`, in address
    /// order.
    PeerLeases {
        profiles: Arc<[String]>,
        reply: oneshot::Sender<Vec<Arc<Lease>>>,
    },
    /// Split brain: the pools of `profile` take new addresses from `half`
    /// first (`None`: no split).
    Split { profile: String, half: Option<Half> },
    /// The half `profile`'s pools take new addresses from in a split
    /// brain: the actor applies it by itself after a stall (`stalled`).
    OwnHalf { profile: String, half: Half },
    /// Report pool exhaustion, utilization crossings and lease conflicts
    /// as notifications to `sink`.
    ReportEvents(EventSink),
}

/// Packet counters, shared with the northbound (atomics: read without the
/// actor).
#[derive(Debug, Default)]
pub struct Counters {
    pub received: AtomicU64,
    pub malformed: AtomicU64,
    pub wrong_interface: AtomicU64,
    pub no_pool: AtomicU64,
    pub not_serving: AtomicU64,
    pub exhausted: AtomicU64,
    pub discover: AtomicU64,
    pub request: AtomicU64,
    pub decline: AtomicU64,
    pub release: AtomicU64,
    pub inform: AtomicU64,
    pub other: AtomicU64,
    pub offer: AtomicU64,
    pub ack: AtomicU64,
    pub nak: AtomicU64,
    pub send_errors: AtomicU64,
    /// SELECTING / INIT-REBOOT requests without option 50, answered for
    /// `ciaddr` or the client's offer or binding.
    pub lenient: AtomicU64,
    /// DHCPINFORMs dropped for want of a `ciaddr` to answer.
    pub inform_no_address: AtomicU64,
    /// BOOTP requests dropped (bootp ignore, or no static binding).
    pub bootp_dropped: AtomicU64,
    /// BOOTREPLYs sent from static bindings.
    pub bootp_replies: AtomicU64,
    /// Ping-check probes sent.
    pub ping_checks: AtomicU64,
    /// Addresses a ping-check probe found in use.
    pub ping_conflicts: AtomicU64,
    /// ACKs not sent because the leases they grant could not be made
    /// durable (the store failed, or its writer is gone): the clients
    /// retry, and get their ACK once the store works again.
    pub acks_withheld: AtomicU64,
    /// Hot-backup ACKs released and then not sent because this router
    /// did not run for a while in between (`deliver`).
    pub acks_stale: AtomicU64,
    /// From reading a request to sending its ACK, for the ACKs that wait
    /// for their lease to be durable (the lease-log sync and, with hot
    /// backup, the partner's acknowledgement): observed where they leave
    /// (`deliver`).
    pub ack_latency: crate::metrics::histogram::Histogram,
    /// The last sync failed, or the writer is gone: no ACK goes out.
    pub store_failed: AtomicBool,
    /// `store_failed` with the error, for whoever must act on it (VRRP
    /// gives the groups of a hot-backup pair away while it is `Some`):
    /// changed with `store_failed`, by the writer.
    pub store_health: tokio::sync::watch::Sender<Option<String>>,
}

impl Counters {
    /// `n` ACKs withheld: counted, and the store shown failed; logged when
    /// the store was working until now.
    fn withhold(&self, n: usize, why: &dyn std::fmt::Display) {
        self.acks_withheld.fetch_add(n as u64, Ordering::Relaxed);
        if !self.store_failed.swap(true, Ordering::Relaxed) {
            self.store_health.send_replace(Some(why.to_string()));
            error!(reason = %why, withheld = n, "lease store failed: ACKs withheld until it works again");
        } else {
            tracing::debug!(reason = %why, withheld = n, "lease store still failing");
        }
    }
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

pub use super::snapshot::{Snapshot, View};

/// The pools of one link in the order a request tries them: a request
/// naming an address (option 50, else ciaddr) the pool whose subnet holds
/// it; a DISCOVER the pool of the client's current address first, then
/// the others in name order (the next one when a pool is exhausted);
/// anything else the first.
fn shared_order<'p>(
    pools: &[&'p PoolRt],
    msg: &dhcproto::v4::Message,
    table: &LeaseTable,
) -> Vec<&'p PoolRt> {
    if pools.len() < 2 {
        return pools.to_vec();
    }
    let named = match msg
        .opts()
        .get(dhcproto::v4::OptionCode::RequestedIpAddress)
        .cloned()
    {
        Some(dhcproto::v4::DhcpOption::RequestedIpAddress(ip)) if !ip.is_unspecified() => Some(ip),
        _ => (!msg.ciaddr().is_unspecified()).then(|| msg.ciaddr()),
    };
    if msg.opts().msg_type() != Some(MessageType::Discover) {
        let p = named
            .and_then(|a| pools.iter().find(|p| p.in_subnet(a)))
            .unwrap_or(&pools[0]);
        return vec![*p];
    }
    let key = handler::client_key(msg);
    let mine = table.client_ip(&key);
    let mut out = pools.to_vec();
    // stable: the client's pool first, the others keep name order
    out.sort_by_key(|p| !mine.is_some_and(|a| p.in_subnet(a)));
    out
}

/// Unix seconds on the lease clock ([`super::clock`]): a step of the wall
/// clock moves no lease.
pub fn now_unix() -> u64 {
    super::clock::now_unix()
}

/// Where released replies go: the sockets (a [`Transmitter`]), or a
/// test's recorder. Returns how many could not be sent.
pub trait Outbox: Send + Sync + std::fmt::Debug {
    fn send_replies(&self, replies: &mut dyn Iterator<Item = (&Reply, u32)>) -> usize;
}

impl Outbox for Transmitter {
    fn send_replies(&self, replies: &mut dyn Iterator<Item = (&Reply, u32)>) -> usize {
        self.send_batch(replies)
    }
}

/// A reply that waits for its lease to be durable (and replicated), with
/// the receiving interface and where it goes out.
pub type Out = (Reply, u32, Arc<dyn Outbox>);

/// The replication handle as the hot-backup subsystem gets it.
pub type Replication = super::replication::ReplicationHandle<Out>;

/// Send `out`, one batch per run of replies for the same sockets.
///
/// `released`: when the release stage let these ACKs out (the leases of
/// pools with hot backup). If this router did not run for a while since
/// (a stopped process: the thread stopped between the release and the
/// send), the partner may have served meanwhile and given the addresses
/// away: what is left is dropped, counted and logged; the clients ask
/// again.
fn deliver(out: &[Out], counters: &Counters, released: Option<Instant>) {
    let is_ack = |(r, _, _): &Out| r.kind == MessageType::Ack;
    let mut rest = out;
    while let Some((_, _, tx)) = rest.first() {
        // checked right before the send: the window left is the syscall's
        if released.is_some_and(|at| at.elapsed() >= STALL_GAP) {
            let n = rest.iter().filter(|o| is_ack(o)).count() as u64;
            counters.acks_stale.fetch_add(n, Ordering::Relaxed);
            warn!(
                dropped = n,
                "hot backup: ACKs released before this router stopped running for a while dropped; their clients ask again"
            );
            return;
        }
        let run = rest
            .iter()
            .take_while(|(_, _, t)| Arc::ptr_eq(t, tx))
            .count();
        let acks = rest[..run].iter().filter(|o| is_ack(o)).count();
        counters.ack.fetch_add(acks as u64, Ordering::Relaxed);
        let failed = tx.send_replies(&mut rest[..run].iter().map(|(r, i, _)| (r, *i)));
        counters
            .send_errors
            .fetch_add(failed as u64, Ordering::Relaxed);
        let sent = Instant::now();
        for (r, _, _) in &rest[..run] {
            if let (MessageType::Ack, Some(at)) = (r.kind, r.received) {
                counters
                    .ack_latency
                    .observe(sent.saturating_duration_since(at));
            }
        }
        rest = &rest[run..];
    }
}

/// A reply waiting for its lease to be durable, with the profile of its
/// pool (None: a pool without hot backup).
pub(crate) type Durable = (Reply, u32, Option<Arc<str>>);

/// Work for the store writer.
enum WriteJob {
    Batch {
        changes: Vec<Change>,
        replies: Vec<Durable>,
        tx: Option<Arc<dyn Outbox>>,
        /// When the actor made these changes: the age of their held ACKs
        /// counts from then (a stopped process may publish the batch
        /// seconds later).
        at: Instant,
    },
    /// Rewrite the log as the live leases (the store replays it itself).
    Compact,
    /// The wall clock stepped: the lease times are this many seconds
    /// behind it (`LeaseStore::clock_offset`).
    Clock(i64),
    /// Run this once everything written before it is durable (a failed
    /// sync keeps it until a sync works).
    Notify(Box<dyn FnOnce() + Send>),
}

/// Shortest time between two receive wake-ups of the actor under load
/// (interrupt moderation). Profiling under perfdhcp load showed the
/// server's CPU time following its wake-ups (about 50 µs of CPU per
/// context switch on the benchmark VM, the packet work itself being
/// smaller): waking once per packet or two costs more than the work.
/// A request that arrives after a quiet spell (no wake-up within the
/// interval) is handled at once; under load a request waits at most this
/// long in the socket before its batch is read.
const RX_INTERVAL: Duration = Duration::from_millis(1);

/// Receive rate (datagrams a second, measured over `RX_WINDOW`) above
/// which the wake-ups are paced by `RX_INTERVAL`. Below it a wake-up per
/// datagram costs little CPU (2,500 wake-ups of about 50 µs: an eighth of
/// a core on the benchmark VM) and pacing would only add up to 1 ms to
/// every reply: at 1,000 exchanges a second (2,000 datagrams) every
/// request waited in the socket for 0.5 ms on average.
const RX_BUSY_RATE: u64 = 2_500;

/// Window over which the receive rate is measured.
const RX_WINDOW: Duration = Duration::from_millis(100);

/// Adaptive moderation, as a NIC's interrupt moderation: above a busy rate
/// (events a second, measured over a window) consecutive wake-ups are
/// spaced by an interval, below it every event is handled as it comes.
/// Pure bookkeeping, fed with the wake-up times and the events each
/// wake-up handled. The actor paces its socket reads with it
/// (`RX_INTERVAL`, `RX_BUSY_RATE`), the lease writer its syncs
/// (`SYNC_INTERVAL`, `SYNC_BUSY_RATE`).
#[derive(Debug)]
struct Pacing {
    interval: Duration,
    busy_rate: u64,
    window: Duration,
    last_wake: Instant,
    window_start: Instant,
    window_count: u64,
    busy: bool,
}

impl Pacing {
    fn new(now: Instant, interval: Duration, busy_rate: u64, window: Duration) -> Pacing {
        Pacing {
            interval,
            busy_rate,
            window,
            last_wake: now,
            window_start: now,
            window_count: 0,
            busy: false,
        }
    }

    /// The receive pacing of the actor.
    fn rx(now: Instant) -> Pacing {
        Pacing::new(now, RX_INTERVAL, RX_BUSY_RATE, RX_WINDOW)
    }

    /// The group commit of the lease writer.
    fn sync(now: Instant) -> Pacing {
        Pacing::new(now, SYNC_INTERVAL, SYNC_BUSY_RATE, RX_WINDOW)
    }

    /// A wake-up at `woke` handled `n` events, and left nothing behind
    /// (`drained`) or not: how long to hold off before the next one (zero:
    /// at once).
    fn after_batch(&mut self, woke: Instant, n: usize, drained: bool) -> Duration {
        let frequent = woke.duration_since(self.last_wake) < self.interval;
        self.last_wake = woke;
        self.window_count += n as u64;
        let span = woke.duration_since(self.window_start);
        if span >= self.window {
            let per_sec = self.window_count as u128 * 1_000_000 / span.as_micros().max(1);
            self.busy = per_sec > self.busy_rate as u128;
            self.window_start = woke;
            self.window_count = 0;
        }
        if self.busy && drained && frequent {
            self.interval
        } else {
            Duration::ZERO
        }
    }

    /// Whether the rate measured last is above the busy rate.
    fn busy(&self) -> bool {
        self.busy
    }

    /// The hold is over (or skipped): the next wake-up counts from `now`.
    fn resumed(&mut self, now: Instant) {
        self.last_wake = now;
    }
}

/// A tick (every 250 ms) this late means the actor did not run meanwhile
/// (`DhcpServer::stalled`).
const STALL_GAP: Duration = Duration::from_secs(1);

/// Shortest time between two syncs of the lease log under load (group
/// commit: the changes arriving meanwhile share one sync).
const SYNC_INTERVAL: Duration = Duration::from_micros(500);

/// Sync rate (syncs a second) above which the lease writer gathers for
/// `SYNC_INTERVAL` before syncing again. Below it every batch is synced
/// as it comes: at 1,000 exchanges a second (a sync each, about 0.15 ms
/// on the benchmark VM) a batch arriving within 0.5 ms of the previous
/// sync waited for the rest of the interval, on the master and again on
/// the partner, whose sync is in the path of every held DHCPACK.
const SYNC_BUSY_RATE: u64 = 1_500;

/// How often a failed store tries again without a batch to write: the
/// records of the failed batches become durable, and the store is shown
/// working, without waiting for the next request.
const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// The store writer's state between jobs.
struct Writer {
    store: Box<dyn LeaseStore>,
    counters: Arc<Counters>,
    publisher: Publisher,
    release: ReleaseTx<Out>,
    /// LSN of the last batch begun.
    lsn: u64,
    /// Whether the last sync worked (a batch is handed out before its
    /// sync only then).
    healthy: bool,
    /// The changes of the batch being gathered (begun in the store), and
    /// when the actor made the first of them.
    open: Option<(Vec<Change>, Instant)>,
    /// Replies waiting for the sync: (batch LSN, profile of the pool,
    /// reply).
    pending: Vec<(u64, Option<Arc<str>>, Out)>,
    /// How many replies wait, with the ones that have no socket.
    waiting: usize,
    /// Notifications waiting for the next sync that works.
    notify: Vec<Box<dyn FnOnce() + Send>>,
    /// Batches published that the release stage has not heard of yet.
    announced: Vec<ReleaseMsg<Out>>,
}

impl Writer {
    fn batch(
        &mut self,
        changes: Vec<Change>,
        replies: Vec<Durable>,
        tx: Option<Arc<dyn Outbox>>,
        at: Instant,
    ) {
        if !changes.is_empty() {
            if self.open.is_none() {
                self.lsn += 1;
                self.store.begin(self.lsn);
                self.open = Some((Vec::with_capacity(changes.len()), at));
            }
            if let Err(e) = self.store.append(&changes) {
                // what they grant is not stored
                self.counters.withhold(replies.len(), &e);
                return;
            }
            if let Some((open, _)) = &mut self.open {
                open.extend(changes);
            }
        }
        self.waiting += replies.len();
        if let Some(tx) = tx {
            // a reply is covered by the batches up to the current one
            let lsn = self.lsn;
            self.pending.extend(
                replies
                    .into_iter()
                    .map(|(r, i, p)| (lsn, p, (r, i, tx.clone()))),
            );
        }
    }

    /// Publish the batch gathered (its transfer to the partner starts),
    /// sync it meanwhile, then let its ACKs go: at once for pools without
    /// a profile, through the release stage for the others.
    ///
    /// While the store fails, the batch is handed out only once a sync
    /// succeeds, and the changes of the jobs meanwhile join it: at most
    /// one batch is ever handed out and not durable.
    fn flush(&mut self) {
        if self.healthy {
            self.publish();
        }
        let n = std::mem::take(&mut self.waiting);
        match self.store.sync() {
            Ok(()) => {
                self.healthy = true;
                if self.counters.store_failed.swap(false, Ordering::Relaxed) {
                    self.counters.store_health.send_replace(None);
                    info!("lease store works again: ACKs go out");
                }
                self.publish();
                self.publisher.durable(self.lsn);
                self.announce();
                let mut now = Vec::with_capacity(self.pending.len());
                let mut gated = Vec::new();
                for (lsn, profile, out) in self.pending.drain(..) {
                    match profile {
                        None => now.push(out),
                        Some(p) => gated.push((p, lsn, out)),
                    }
                }
                deliver(&now, &self.counters, None);
                for f in self.notify.drain(..) {
                    f();
                }
                if !gated.is_empty() {
                    let k = gated.len();
                    if self.release.send(ReleaseMsg::Durable(gated)).is_err() {
                        self.counters.withhold(k, &"ack release stage is gone");
                    }
                }
            }
            Err(e) => {
                // fail closed: the store keeps the records and writes them
                // again with the next batch; the clients ask again
                self.healthy = false;
                self.counters.withhold(n, &e);
                self.pending.clear();
                // the partner may have it: the gates count it unsent
                self.announce();
            }
        }
    }

    /// Hand the batch gathered to the subscribers (its transfer to the
    /// partner starts) and note it for the release stage, which hears of it
    /// with the batch's durability (`announce`): one take of its lock per
    /// batch, not two. An acknowledgement of the partner that overtakes
    /// the announcement covers the batch already (the stage ignores a batch
    /// at or below a gate's acknowledged position).
    fn publish(&mut self) {
        if let Some((changes, at)) = self.open.take() {
            let n = changes.len() as u64;
            self.publisher.publish(self.lsn, Arc::new(changes));
            if self.publisher.gated() {
                self.announced.push(ReleaseMsg::Published {
                    lsn: self.lsn,
                    changes: n,
                    at,
                });
            }
        }
    }

    /// Tell the release stage of the batches published.
    fn announce(&mut self) {
        for m in self.announced.drain(..) {
            let _ = self.release.send(m);
        }
    }
}

/// The writer thread: group commit of lease changes, then the ACKs.
fn writer(mut w: Writer, rx: std::sync::mpsc::Receiver<WriteJob>) {
    let mut last_sync = std::time::Instant::now();
    let mut pacing = Pacing::sync(last_sync);
    loop {
        let job = if w.counters.store_failed.load(Ordering::Relaxed) {
            match rx.recv_timeout(RETRY_INTERVAL) {
                Ok(job) => job,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    w.flush();
                    continue;
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match rx.recv() {
                Ok(job) => job,
                Err(_) => break,
            }
        };
        if crate::fault::armed("lease-writer-exit") {
            return;
        }
        let mut next = Some(job);
        let mut gathered = false;
        loop {
            while let Some(job) = next.take() {
                match job {
                    WriteJob::Batch {
                        changes,
                        replies,
                        tx,
                        at,
                    } => w.batch(changes, replies, tx, at),
                    WriteJob::Notify(f) => w.notify.push(f),
                    WriteJob::Clock(offset) => w.store.clock_offset(offset),
                    WriteJob::Compact => {
                        w.flush();
                        // written by a helper thread; syncs go on meanwhile
                        if let Err(e) = w.store.compact_start() {
                            error!(error = %e, "lease store compaction failed");
                        }
                    }
                }
                next = rx.try_recv().ok();
            }
            // group commit under load: at most one sync per SYNC_INTERVAL;
            // below the busy rate, or after a quiet spell, synced at once
            let wait = SYNC_INTERVAL.saturating_sub(last_sync.elapsed());
            if gathered || wait.is_zero() || !pacing.busy() {
                break;
            }
            std::thread::sleep(wait);
            gathered = true;
            next = rx.try_recv().ok();
        }
        w.flush();
        last_sync = std::time::Instant::now();
        pacing.after_batch(last_sync, 1, true);
        if let Err(e) = w.store.compact_poll() {
            error!(error = %e, "lease store compaction failed");
        }
    }
    w.flush();
    // a compaction still being written finishes before the store closes
    while let Ok(false) = w.store.compact_poll() {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The two stages behind the actor: the store writer and the ACK release,
/// each a thread; the actor holds their handles.
struct Stages {
    writer: std::sync::mpsc::Sender<WriteJob>,
    writer_thread: std::thread::JoinHandle<()>,
    release: ReleaseTx<Out>,
    release_thread: std::thread::JoinHandle<()>,
    replication: Replication,
}

impl Stages {
    /// `tail`: how many changes the replication tail keeps in memory.
    fn start(
        store: Box<dyn LeaseStore>,
        counters: Arc<Counters>,
        tail: usize,
    ) -> Result<Stages, super::leases::StoreError> {
        let spawn_err = |source| super::leases::StoreError::Io {
            path: "lease threads".into(),
            source,
        };
        // one number skipped at each start: the batch a crash may have
        // caught handed out but not on disk keeps its number to itself
        let lsn = store.lsn() + 1;
        let rc = counters.clone();
        let (rtx, release_thread) =
            ReleaseStage::start(lsn, move |out, released| deliver(&out, &rc, Some(released)))
                .map_err(spawn_err)?;
        let (publisher, replication) = replication::channel(lsn, store.log(), rtx.clone(), tail);
        let (wtx, wrx) = std::sync::mpsc::channel();
        let w = Writer {
            store,
            counters,
            publisher,
            release: rtx.clone(),
            lsn,
            healthy: true,
            open: None,
            pending: Vec::new(),
            waiting: 0,
            notify: Vec::new(),
            announced: Vec::new(),
        };
        let writer_thread = std::thread::Builder::new()
            .name("lease-writer".into())
            .spawn(move || writer(w, wrx))
            .map_err(spawn_err)?;
        Ok(Stages {
            writer: wtx,
            writer_thread,
            release: rtx,
            release_thread,
            replication,
        })
    }
}

/// The open sockets.
struct Sockets {
    udp: Arc<tokio::io::unix::AsyncFd<socket2::Socket>>,
    tx: Arc<Transmitter>,
}

/// The actor's state.
pub struct DhcpServer {
    cfg: Arc<DhcpConfig>,
    pools: BTreeMap<String, PoolRt>,
    globals: Globals,
    table: LeaseTable,
    ifaces: HashMap<u32, IfInfo>,
    ifaces_at: Instant,
    serving: HashMap<String, bool>,
    /// Per profile, the half its pools allocate from first (split brain);
    /// kept here so that it survives a configuration re-apply.
    split: HashMap<String, Half>,
    /// `split` as the state shows it.
    splits: Splits,
    /// Per profile, the half it takes in a split brain (`stalled`).
    own_half: HashMap<String, Half>,
    counters: Arc<Counters>,
    snapshot: Arc<Mutex<Snapshot>>,
    writer: Option<std::sync::mpsc::Sender<WriteJob>>,
    writer_thread: Option<std::thread::JoinHandle<()>>,
    release: ReleaseTx<Out>,
    release_thread: Option<std::thread::JoinHandle<()>>,
    sockets: Option<Sockets>,
    socket_retry_at: Option<Instant>,
    rx: network::RecvBuf,
    exhausted_logged: HashMap<String, bool>,
    /// Where notifications go ([`Command::ReportEvents`]).
    events: EventSink,
    /// Pools whose bound share is at or above their utilization-threshold
    /// (as last reported).
    above_threshold: HashSet<String>,
    /// The log lines of drops and lease changes, and their summary.
    activity: Activity,
    cancel: CancellationToken,
    port: u16,
    appended_since_compact: u64,
    /// `ping-check`: how long a probe waits for the echo reply, when on.
    ping: Option<Duration>,
    /// The probes in flight, by address: each holds the OFFER that leaves
    /// when it finds the address free.
    probing: HashMap<Ipv4Addr, Probing>,
    /// Their tasks, owned here: a server that stops aborts them.
    probes: tokio::task::JoinSet<(Ipv4Addr, std::io::Result<bool>)>,
}

/// An address being probed before it is offered (ping-check).
struct Probing {
    /// The DISCOVER, to be answered again if the address is in use.
    inb: Inbound,
    /// Its OFFER (of the latest retransmission).
    reply: Reply,
    client: super::leases::ClientKey,
    /// Addresses found in use so far for this DISCOVER.
    conflicts: u8,
}

/// Addresses probed for one DISCOVER at most: a link where every address
/// answers pings takes an address out per probe, not the whole pool at
/// once (the client asks again).
const PROBES_PER_DISCOVER: u8 = 4;

/// The least quarantine of an address a probe found in use: with
/// `decline-probation` 0 it would be offered, and probed, again at once.
const PING_CONFLICT_PROBATION: u32 = 60;

impl std::fmt::Debug for DhcpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DhcpServer")
            .field("pools", &self.pools.len())
            .field("leases", &self.table.len())
            .finish()
    }
}

/// Shared handles of a running server.
#[derive(Debug, Clone)]
pub struct Shared {
    pub counters: Arc<Counters>,
    pub snapshot: Arc<Mutex<Snapshot>>,
    pub replication: Replication,
    /// The profiles in a split brain and their half, as the actor applies
    /// them (for the remote-backup-profile state).
    pub splits: Splits,
}

/// Per profile, the half its pools hand out while split.
pub type Splits = Arc<Mutex<HashMap<String, Half>>>;

impl DhcpServer {
    /// Load the stored leases and start the writer and ACK release
    /// threads.
    pub fn new(
        mut store: Box<dyn LeaseStore>,
        port: u16,
        cancel: CancellationToken,
    ) -> Result<(DhcpServer, Shared), super::leases::StoreError> {
        let now = now_unix();
        let mut table = LeaseTable::new();
        let loaded = store.load()?;
        let n = loaded.len();
        let records = store.records();
        for l in loaded {
            if l.state != LeaseState::Offered {
                table.insert(l);
            }
        }
        table.expire(now);
        info!(leases = n, "lease store loaded");
        let counters = Arc::new(Counters::default());
        let stages = Stages::start(store, counters.clone(), replication::TAIL_CHANGES)?;
        let snapshot = Arc::new(Mutex::new(Snapshot::default()));
        let server = DhcpServer {
            cfg: Arc::new(DhcpConfig::default()),
            pools: BTreeMap::new(),
            globals: Globals::default(),
            table,
            ifaces: HashMap::new(),
            ifaces_at: Instant::now() - Duration::from_secs(3600),
            serving: HashMap::new(),
            split: HashMap::new(),
            splits: Splits::default(),
            own_half: HashMap::new(),
            counters: counters.clone(),
            snapshot: snapshot.clone(),
            writer: Some(stages.writer),
            writer_thread: Some(stages.writer_thread),
            release: stages.release,
            release_thread: Some(stages.release_thread),
            sockets: None,
            socket_retry_at: None,
            rx: network::RecvBuf::new(),
            exhausted_logged: HashMap::new(),
            events: EventSink::discard(),
            above_threshold: HashSet::new(),
            activity: Activity::new(Instant::now()),
            cancel,
            port,
            appended_since_compact: records,
            ping: None,
            probing: HashMap::new(),
            probes: tokio::task::JoinSet::new(),
        };
        let splits = server.splits.clone();
        Ok((
            server,
            Shared {
                counters,
                snapshot,
                replication: stages.replication,
                splits,
            },
        ))
    }

    /// Run the lease writer and the ACK release threads under SCHED_RR at
    /// `priority` (`crate::sched::realtime`); the actor's own thread is its
    /// runner's to set.
    pub fn realtime(&self, priority: u8) -> std::io::Result<()> {
        use std::os::unix::thread::JoinHandleExt;
        for t in [&self.writer_thread, &self.release_thread]
            .into_iter()
            .flatten()
        {
            crate::sched::realtime(t.as_pthread_t(), priority)?;
        }
        Ok(())
    }

    /// Run until cancelled.
    pub async fn run(mut self, mut cmds: mpsc::UnboundedReceiver<Command>) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_expire = 0u64;
        // when the actor last ran (the tick refreshes it every 250 ms)
        let mut alive = Instant::now();
        let mut pacing = Pacing::rx(Instant::now());
        let mut batch: Vec<Inbound> = Vec::with_capacity(256);
        // replies of a batch that need no sync (OFFER, NAK, INFORM's ACK)
        let mut now_out: Vec<(Reply, u32)> = Vec::with_capacity(256);
        loop {
            let udp = self.sockets.as_ref().map(|s| s.udp.clone());
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => break,
                cmd = cmds.recv() => match cmd {
                    Some(c) => self.command(c),
                    None => break,
                },
                Some(done) = self.probes.join_next(), if !self.probes.is_empty() => {
                    if let Ok((ip, answered)) = done {
                        self.probed(ip, answered);
                    }
                }
                // before the socket: under constant load it must still run
                _ = tick.tick() => {
                    // without the writer no ACK can leave: stop, and let
                    // the daemon's supervision restart the whole daemon
                    if self.writer_thread.as_ref().is_some_and(|t| t.is_finished()) {
                        error!("lease writer thread ended: dhcp server stopping");
                        break;
                    }
                    self.check_alive(&mut alive);
                    if let Some(step) = super::clock::watch() {
                        // stored with the leases: the next start moves
                        // them onto its clock
                        if let Some(w) = &self.writer {
                            let _ = w.send(WriteJob::Clock(step.offset_secs()));
                        }
                    }
                    let now = now_unix();
                    if now != last_expire {
                        last_expire = now;
                        let started = Instant::now();
                        let (changes, events) = self.table.expire(now);
                        tracing::debug!(us = started.elapsed().as_micros() as u64, expired = changes.len(), "expiry scan");
                        for ev in &events {
                            self.activity.lease(ev);
                            self.lease_event(ev);
                        }
                        if !events.is_empty() {
                            self.check_utilization_all();
                        }
                        if !changes.is_empty() {
                            self.write(changes, Vec::new());
                        }
                        self.maybe_compact();
                        self.activity.tick(Instant::now());
                    }
                    if self.sockets.is_none()
                        && self.socket_retry_at.is_some_and(|t| Instant::now() >= t)
                    {
                        self.sockets_follow_config();
                    }
                    self.sync_snapshot();
                }
                ready = async {
                    match &udp {
                        Some(u) => u.readable().await,
                        None => std::future::pending().await,
                    }
                } => {
                    let mut guard = match ready {
                        Ok(g) => g,
                        Err(e) => {
                            error!(error = %e, "dhcp socket failed; reopening");
                            self.sockets = None;
                            self.socket_retry_at = Some(Instant::now() + Duration::from_secs(1));
                            continue;
                        }
                    };
                    // before the requests that queued while the actor did
                    // not run are served
                    self.check_alive(&mut alive);
                    let woke = Instant::now();
                    let drained =
                        network::recv_batch(guard.get_inner(), &mut self.rx, 256, &mut batch);
                    if drained {
                        guard.clear_ready();
                    }
                    drop(guard);
                    let pace = pacing.after_batch(woke, batch.len(), drained);
                    let mut changes = Vec::new();
                    let mut durable = Vec::new();
                    for inb in batch.drain(..) {
                        // a stop in the middle of a batch: the rest is
                        // served as after any stall
                        self.check_alive(&mut alive);
                        self.process(inb, 0, &mut changes, &mut durable, &mut now_out);
                    }
                    for (r, _, _) in &mut durable {
                        r.received = Some(woke);
                    }
                    // the ACKs to the writer first: their sync starts
                    // while the OFFERs and NAKs go out; they are as old as
                    // the batch (a stall while it was served makes the
                    // ones granted before it stale)
                    self.write_at(changes, durable, woke);
                    if !now_out.is_empty() {
                        if let Some(s) = &self.sockets {
                            let failed = s.tx.send_batch(now_out.iter().map(|(r, i)| (r, *i)));
                            self.counters
                                .send_errors
                                .fetch_add(failed as u64, Ordering::Relaxed);
                        }
                        now_out.clear();
                    }
                    self.sync_snapshot();
                    if !pace.is_zero() {
                        // under load, wake at most once per RX_INTERVAL:
                        // the requests arriving meanwhile wait in the
                        // socket and make one batch (a blocking sleep, so
                        // that they do not wake the reactor one by one;
                        // this thread runs the actor alone)
                        let hold = pace.saturating_sub(woke.elapsed());
                        if !hold.is_zero() {
                            std::thread::sleep(hold);
                        }
                        pacing.resumed(Instant::now());
                    }
                }
            }
        }
        self.sockets = None;
        // closing the channel lets the writer finish what it holds
        self.writer = None;
        if let Some(t) = self.writer_thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        // after the writer's last ACKs (the handles outlive the actor)
        let _ = self.release.send(ReleaseMsg::Stop);
        if let Some(t) = self.release_thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        info!("dhcp server stopped");
    }

    /// Offers are not replicated: an address of the other half offered
    /// here before a split began may be granted by the partner meanwhile,
    /// so those offers are forgotten when it begins. The client's REQUEST
    /// for it then gets no answer here (as for the partner's own offers of
    /// its half: both sides use one server identifier), and its next
    /// DISCOVER gets an address of this half.
    fn set_split(&mut self, profile: &str, half: Option<Half>) {
        let before = match half {
            Some(h) => self.split.insert(profile.to_string(), h),
            None => self.split.remove(profile),
        };
        if let Some(h) = half.filter(|h| before != Some(*h)) {
            let pools: HashSet<&str> = self
                .pools
                .values()
                .filter(|p| p.profile.as_deref() == Some(profile))
                .map(|p| p.name.as_str())
                .collect();
            let dropped = self
                .table
                .drop_offers(|o| pools.contains(o.pool.as_str()) && !h.contains(o.ip));
            if dropped > 0 {
                info!(%profile, dropped, "split brain: offers of the other half forgotten");
            }
        }
        *self.splits.lock().unwrap_or_else(|e| e.into_inner()) = self.split.clone();
        for p in self.pools.values_mut() {
            if p.profile.as_deref() == Some(profile) {
                p.split = half;
            }
        }
    }

    /// The actor did not run for `gap` (the process was stopped, or
    /// starved): its hot-backup partner may have taken over meanwhile and
    /// granted addresses this table lacks, while the channel here does not
    /// know yet that it is down. A profile this router serves takes new
    /// addresses from its own half (the partner's grants of the split
    /// brain came from the other) until the backup service decides again,
    /// which it does when the session goes down and once the tables are
    /// reconciled. Harmless if nothing happened: the split only orders
    /// the search for a free address (and forgets the offers of the other
    /// half, `set_split`).
    fn stalled(&mut self, gap: Duration) {
        let halves: Vec<(String, Half)> = self
            .own_half
            .iter()
            .filter(|(p, _)| self.serving.get(*p) == Some(&true) && !self.split.contains_key(*p))
            .map(|(p, h)| (p.clone(), *h))
            .collect();
        if halves.is_empty() {
            info!(
                gap_ms = gap.as_millis() as u64,
                serving = ?self.serving,
                split = ?self.split,
                "dhcp server did not run for a while (no profile served here without a split)"
            );
        }
        for (profile, half) in halves {
            warn!(%profile, ?half, gap_ms = gap.as_millis() as u64,
                "dhcp server did not run for a while: new addresses from this router's half until the partner's leases are in");
            self.set_split(&profile, Some(half));
        }
    }

    /// The actor runs again at least every tick: a longer gap since
    /// `alive` means it did not run meanwhile (`stalled`).
    fn check_alive(&mut self, alive: &mut Instant) {
        let now = Instant::now();
        let gap = now.duration_since(*alive);
        *alive = now;
        if gap >= STALL_GAP {
            self.stalled(gap);
        }
    }

    /// A lease change as a `lease-event` notification, when configured.
    fn lease_event(&self, ev: &super::leases::LeaseEvent) {
        if self.cfg.lease_events {
            if let Some(e) = super::lease_event(ev) {
                self.events.emit(e);
            }
        }
    }

    fn write(&mut self, changes: Vec<Change>, replies: Vec<Durable>) {
        self.write_at(changes, replies, Instant::now())
    }

    /// `write`, of changes made from requests read at `at`.
    fn write_at(&mut self, changes: Vec<Change>, replies: Vec<Durable>, at: Instant) {
        if changes.is_empty() && replies.is_empty() {
            return;
        }
        self.appended_since_compact += changes.len() as u64;
        let tx = self
            .sockets
            .as_ref()
            .map(|s| s.tx.clone() as Arc<dyn Outbox>);
        let n = replies.len();
        let job = WriteJob::Batch {
            changes,
            replies,
            tx,
            at,
        };
        // the writer stops only with the actor, unless it died: then
        // nothing is stored any more, and no ACK may go out
        let sent = self.writer.as_ref().is_some_and(|w| w.send(job).is_ok());
        if !sent {
            self.writer = None;
            self.counters.withhold(n, &"lease writer thread is gone");
        }
    }

    fn maybe_compact(&mut self) {
        // the writer counts records; compacting when the log holds many
        // more records than live leases keeps restart fast
        let live = self.table.len() as u64;
        if self.appended_since_compact > 50_000 + 4 * live {
            if let Some(w) = &self.writer {
                let _ = w.send(WriteJob::Compact);
            }
            self.appended_since_compact = 0;
        }
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::Config(cfg) => self.apply_config(cfg),
            Command::Serving { profile, master } => {
                info!(%profile, master, "dhcp serving gate");
                self.serving.insert(profile, master);
            }
            Command::Split { profile, half } => {
                info!(%profile, ?half, "dhcp split-brain allocation");
                self.set_split(&profile, half);
            }
            Command::OwnHalf { profile, half } => {
                self.own_half.insert(profile, half);
            }
            Command::ApplyPeer {
                updates,
                profiles,
                done,
            } => self.apply_peer(updates, &profiles, done),
            Command::ReportEvents(sink) => {
                self.events = sink;
                self.check_utilization_all();
            }
            Command::PeerLeases { profiles, reply } => {
                let mut v: Vec<Arc<Lease>> = self
                    .table
                    .shared()
                    .filter(|l| {
                        self.pools
                            .get(&l.pool)
                            .and_then(|p| p.profile.as_ref())
                            .is_some_and(|p| profiles.contains(p))
                    })
                    .cloned()
                    .collect();
                v.sort_unstable_by_key(|l| u32::from(l.ip));
                let _ = reply.send(v);
            }
        }
    }

    /// Merge the partner's updates (see `dhcp::peer`), log what changed,
    /// and answer once it is durable: behind the changes in the writer's
    /// queue, so after every earlier change too.
    fn apply_peer(
        &mut self,
        updates: Vec<PeerUpdate>,
        profiles: &[String],
        done: oneshot::Sender<Applied>,
    ) {
        let mut out = Applied::default();
        let mut changes = Vec::new();
        let now = now_unix();
        let in_profile = |p: &PoolRt| p.profile.as_ref().is_some_and(|x| profiles.contains(x));
        for u in updates {
            match u {
                PeerUpdate::Upsert(mut l) => {
                    let Some(pool) = self.pools.get(&l.pool) else {
                        out.refused.push((l.ip, l.pool, PeerRefusal::UnknownPool));
                        continue;
                    };
                    if !in_profile(pool) || !pool.owns(l.ip) {
                        out.refused.push((l.ip, l.pool, PeerRefusal::NotInProfile));
                        continue;
                    }
                    l.origin = super::leases::Origin::Peer;
                    // both routers bound the address, to different
                    // clients (a split brain): one of them loses it
                    let conflict = self
                        .table
                        .get(l.ip)
                        .filter(|o| {
                            o.state == LeaseState::Bound
                                && o.expires > now
                                && l.state == LeaseState::Bound
                                && l.expires > now
                                && o.key() != l.key()
                        })
                        .cloned()
                        .map(|o| (o, l.clone()));
                    let (merge, mut c) = self.table.merge_peer(l);
                    match merge {
                        Merge::Taken => out.taken += 1,
                        Merge::Unchanged => out.unchanged += 1,
                        Merge::KeptOurs => out.kept += 1,
                    }
                    if let Some((ours, theirs)) = conflict {
                        let (kept, lost) = match merge {
                            Merge::Taken => (&theirs, &ours),
                            _ => (&ours, &theirs),
                        };
                        warn!(ip = %kept.ip, pool = %kept.pool, kept = ?kept.origin, "lease conflict after a split brain");
                        self.events.emit(super::lease_conflict_event(kept, lost));
                    }
                    changes.append(&mut c);
                }
                PeerUpdate::Remove(ip) => {
                    if !self.pools.values().any(|p| in_profile(p) && p.owns(ip)) {
                        out.refused
                            .push((ip, String::new(), PeerRefusal::NotInProfile));
                        continue;
                    }
                    out.removed += 1;
                    changes.extend(self.table.remove_peer(ip, now));
                }
            }
        }
        self.write(changes, Vec::new());
        self.sync_snapshot();
        self.check_utilization_all();
        let notify = WriteJob::Notify(Box::new(move || {
            let _ = done.send(out);
        }));
        // without a writer nothing becomes durable: `done` is dropped and
        // the sync actor acknowledges nothing
        if let Some(w) = &self.writer {
            let _ = w.send(notify);
        }
    }

    fn apply_config(&mut self, cfg: Arc<DhcpConfig>) {
        // a pool the commit did not touch is the same Arc: keep its runtime
        let mut old = std::mem::take(&mut self.pools);
        let old_empty = old.is_empty();
        // pools replaced by this commit, as they were
        let mut changed: Vec<(String, PoolRt)> = Vec::new();
        let pools: BTreeMap<String, PoolRt> = cfg
            .pools
            .iter()
            .map(|(n, p)| {
                let same = self.cfg.pools.get(n).is_some_and(|o| Arc::ptr_eq(o, p));
                let mut rt = match old.remove(n) {
                    Some(rt) if same => rt,
                    Some(before) => {
                        changed.push((n.clone(), before));
                        PoolRt::from(&**p)
                    }
                    None => PoolRt::from(&**p),
                };
                rt.split = rt
                    .profile
                    .as_ref()
                    .and_then(|pr| self.split.get(pr))
                    .copied();
                (n.clone(), rt)
            })
            .collect();
        // a pass over the leases only when an address may have left its
        // pool: a pool removed, or one whose addresses changed (a commit
        // of a lease time or an option must not cost a pass over 100,000
        // leases); the first configuration checks what the store held
        let passes = old_empty
            || !old.is_empty()
            || changed
                .iter()
                .any(|(n, before)| pools.get(n).is_none_or(|p| !p.same_addresses(before)));
        let removed = if passes {
            self.table
                .retain(|l| pools.get(&l.pool).is_some_and(|p| p.owns(l.ip)))
        } else {
            Vec::new()
        };
        if !removed.is_empty() {
            info!(
                removed = removed.len(),
                "leases outside the new pools removed"
            );
        }
        let changes = removed.iter().map(|l| Change::Delete(l.ip)).collect();
        self.write(changes, Vec::new());
        self.table.reset_hints();
        let room: u64 = pools.values().map(|p| p.total()).sum();
        self.table.reserve(room.min(1 << 20) as usize);
        self.globals = Globals {
            decline_probation: cfg.decline_probation_s,
            echo_client_id: cfg.echo_client_id,
            authoritative: cfg.authoritative,
            bootp_static: cfg.bootp_static,
            ..Globals::default()
        };
        self.ping = cfg
            .ping_check_ms
            .map(|ms| Duration::from_millis(u64::from(ms)));
        self.table.set_statics(
            pools
                .values()
                .flat_map(|p| p.static_by_ip.keys().copied())
                .collect(),
        );
        if let Ok(mut g) = self.snapshot.lock() {
            g.set_pools(
                pools
                    .values()
                    .map(|p| (p.name.clone(), p.total(), self.table.counts(&p.name))),
            );
        }
        self.pools = pools;
        self.exhausted_logged.clear();
        self.cfg = cfg;
        self.sockets_follow_config();
        self.sync_snapshot();
        self.check_utilization_all();
    }

    /// Open the sockets when there is something to serve, close them when
    /// not.
    fn sockets_follow_config(&mut self) {
        let wanted =
            !self.pools.is_empty() && (self.cfg.all_interfaces || !self.cfg.interfaces.is_empty());
        if !wanted {
            if self.sockets.take().is_some() {
                info!("dhcp sockets closed");
            }
            self.socket_retry_at = None;
            return;
        }
        if self.sockets.is_some() {
            return;
        }
        let opened = network::open_udp(self.port).and_then(|s| network::register(s).map(Arc::new));
        match opened {
            Ok(udp) => {
                let packet = match network::open_packet() {
                    Ok(p) => Some(p),
                    Err(e) => {
                        warn!(error = %e, "no packet socket: unicast replies to new clients go broadcast");
                        None
                    }
                };
                let tx = Arc::new(Transmitter::new(udp.clone(), packet));
                info!(port = self.port, "dhcp server listening");
                self.sockets = Some(Sockets { udp, tx });
                self.socket_retry_at = None;
            }
            Err(e) => {
                error!(error = %e, port = self.port, "cannot open the dhcp socket; retrying");
                self.socket_retry_at = Some(Instant::now() + Duration::from_secs(5));
            }
        }
    }

    /// Reload the interface table when it is old or lacks `ifindex`.
    fn refresh_ifaces(&mut self, ifindex: u32) {
        let stale = self.ifaces_at.elapsed() > Duration::from_secs(2);
        if stale || !self.ifaces.contains_key(&ifindex) {
            // at most a few refreshes a second even for unknown indexes
            if stale || self.ifaces_at.elapsed() > Duration::from_millis(200) {
                self.ifaces = network::interfaces();
                self.ifaces_at = Instant::now();
            }
        }
    }

    /// Handle one datagram: lease changes go to `changes`, replies that
    /// wait for them to be durable to `durable`, the others to `now_out`
    /// (sent by the caller once the batch is handled). `conflicts`: the
    /// addresses ping-check found in use for this request so far (not 0:
    /// it is a DISCOVER handled again, already counted).
    fn process(
        &mut self,
        inb: Inbound,
        conflicts: u8,
        changes: &mut Vec<Change>,
        durable: &mut Vec<Durable>,
        now_out: &mut Vec<(Reply, u32)>,
    ) {
        let c = self.counters.clone();
        if conflicts == 0 {
            inc(&c.received);
        }
        self.refresh_ifaces(inb.ifindex);
        let msg = match inb.msg {
            Ok(m) => m,
            Err(e) => {
                inc(&c.malformed);
                let name = self.ifaces.get(&inb.ifindex).map(|i| i.name.as_str());
                let place = Place::Interface(name.unwrap_or("unknown"));
                self.activity
                    .dropped(Instant::now(), place, DropReason::Malformed, &e, || None);
                return;
            }
        };
        // the client of a dropped request (rendered for a log line only:
        // this is the per-packet path)
        let hw = || Some(handler::hw_of(&msg));
        let Some(iface) = self.ifaces.get(&inb.ifindex) else {
            inc(&c.wrong_interface);
            let why = format_args!("no interface has index {}", inb.ifindex);
            let place = Place::Interface("unknown");
            self.activity
                .dropped(Instant::now(), place, DropReason::Interface, &why, hw);
            return;
        };
        if !self.cfg.all_interfaces && !self.cfg.interfaces.contains(&iface.name) {
            inc(&c.wrong_interface);
            let place = Place::Interface(&iface.name);
            let why = "the dhcp server is not enabled on this interface";
            self.activity
                .dropped(Instant::now(), place, DropReason::Interface, &why, hw);
            return;
        }
        match msg.opts().msg_type() {
            _ if conflicts > 0 => {}
            Some(MessageType::Discover) => inc(&c.discover),
            Some(MessageType::Request) => inc(&c.request),
            Some(MessageType::Decline) => inc(&c.decline),
            Some(MessageType::Release) => inc(&c.release),
            Some(MessageType::Inform) => inc(&c.inform),
            Some(_) => inc(&c.other),
            None if self.globals.bootp_static => {}
            None => {
                inc(&c.bootp_dropped);
                let place = Place::Interface(&iface.name);
                let why = "a BOOTP request (no dhcp message type): bootp is ignore";
                self.activity
                    .dropped(Instant::now(), place, DropReason::Ignored, &why, hw);
                return;
            }
        }
        let giaddr = msg.giaddr();
        let ciaddr = msg.ciaddr();
        let on_link = |ip: Ipv4Addr| {
            iface
                .addrs
                .iter()
                .any(|(a, m)| u32::from(*a) & u32::from(*m) == u32::from(ip) & u32::from(*m))
        };
        let ciaddr_on_link = giaddr.is_unspecified() && !ciaddr.is_unspecified() && on_link(ciaddr);
        // a renewal unicast by a client behind a relay reaches the server
        // routed, without giaddr: its pool is the one of its address
        let routed = giaddr.is_unspecified()
            && !ciaddr.is_unspecified()
            && !ciaddr_on_link
            && iface.addrs.iter().any(|(a, _)| *a == inb.dst);
        // RFC 3527: a relay agent names the client's subnet when giaddr
        // (its address towards the server) is not on it
        let link = handler::relay_address(&inb.raw, handler::relay::LINK_SELECTION);
        let first = if let Some(link) = link {
            self.pools.values().find(|p| p.in_subnet(link))
        } else if !giaddr.is_unspecified() {
            self.pools.values().find(|p| p.in_subnet(giaddr))
        } else if routed {
            self.pools.values().find(|p| p.in_subnet(ciaddr))
        } else {
            self.pools
                .values()
                .find(|p| iface.addrs.iter().any(|(a, _)| p.in_subnet(*a)))
        };
        let Some(first) = first else {
            inc(&c.no_pool);
            let place = Place::Interface(&iface.name);
            let (of, at): (&str, &dyn std::fmt::Display) = if giaddr.is_unspecified() {
                ("an address of", &iface.name)
            } else {
                ("the relay address", &giaddr)
            };
            let why = format_args!("no pool's subnet holds {of} {at}");
            self.activity
                .dropped(Instant::now(), place, DropReason::NoPool, &why, hw);
            return;
        };
        // the pools of the link, in name order: a shared network, or the
        // subnets of the receiving interface's addresses
        let direct = link.is_none() && giaddr.is_unspecified() && !routed;
        let link_pools: Vec<&PoolRt> = if first.shared_network.is_none()
            && !(direct && iface.addrs.len() > 1)
        {
            vec![first]
        } else {
            self.pools
                .values()
                .filter(|p| {
                    std::ptr::eq(*p, first)
                        || (p.shared_network.is_some() && p.shared_network == first.shared_network)
                        || (direct && iface.addrs.iter().any(|(a, _)| p.in_subnet(*a)))
                })
                .collect()
        };
        let order = shared_order(&link_pools, &msg, &self.table);
        let now = now_unix();
        let mut served = None;
        for (i, pool) in order.iter().enumerate() {
            if let Some(profile) = &pool.profile {
                if !self.serving.get(profile).copied().unwrap_or(false) {
                    if i + 1 < order.len() {
                        continue;
                    }
                    if served.is_some() {
                        break;
                    }
                    inc(&c.not_serving);
                    let why = format_args!("remote-backup-profile {profile} is not master");
                    let place = Place::Pool(&pool.name);
                    self.activity
                        .dropped(Instant::now(), place, DropReason::NotServing, &why, hw);
                    return;
                }
            }
            let default_sid = if !inb.dst.is_unspecified()
                && !inb.dst.is_broadcast()
                && iface.addrs.iter().any(|(a, _)| *a == inb.dst)
            {
                inb.dst
            } else {
                iface
                    .addrs
                    .iter()
                    .find(|(a, _)| pool.in_subnet(*a))
                    .or(iface.addrs.first())
                    .map(|(a, _)| *a)
                    .unwrap_or(Ipv4Addr::UNSPECIFIED)
            };
            let ctx = Ctx {
                now,
                default_sid,
                ciaddr_on_link,
                globals: &self.globals,
            };
            let out = handler::handle(&mut self.table, pool, &ctx, &msg, &inb.raw);
            let exhausted = out.silence == Some(Silence::Exhausted);
            served = Some((*pool, out));
            if !exhausted {
                break;
            }
        }
        let Some((pool, out)) = served else { return };
        let dropped = match out.silence {
            Some(Silence::Malformed) => Some((DropReason::Malformed, "not a valid request")),
            Some(Silence::Unexpected) => Some((
                DropReason::Unexpected,
                "a message type servers do not answer",
            )),
            Some(Silence::OtherServer) => {
                Some((DropReason::OtherServer, "the client chose another server"))
            }
            // counted for the summary; the pool has a warning of its own
            // below, once until an address frees up
            Some(Silence::Exhausted) => {
                self.activity.count(DropReason::Exhausted);
                None
            }
            // a RELEASE or DECLINE done has its lease line
            Some(Silence::Nothing) if out.events.is_empty() => Some((
                DropReason::Ignored,
                "nothing to answer (RFC 2131: no record of the client or its address, \
                 not authoritative, or not the client's address)",
            )),
            Some(Silence::Nothing) | None => None,
            Some(Silence::Bootp) => Some((
                DropReason::Ignored,
                "a BOOTP request of a client without a static binding",
            )),
            Some(Silence::InformNoAddress) => Some((
                DropReason::Malformed,
                "a DHCPINFORM without ciaddr: no address to answer (RFC 2131 §4.3.5)",
            )),
        };
        if let Some((reason, why)) = dropped {
            let place = Place::Pool(&pool.name);
            self.activity
                .dropped(Instant::now(), place, reason, &why, hw);
        }
        for ev in &out.events {
            self.activity.lease(ev);
            self.lease_event(ev);
        }
        if out.lenient {
            inc(&c.lenient);
        }
        match out.silence {
            Some(Silence::Malformed) => inc(&c.malformed),
            Some(Silence::InformNoAddress) => inc(&c.inform_no_address),
            Some(Silence::Bootp) => inc(&c.bootp_dropped),
            Some(Silence::Exhausted) => {
                inc(&c.exhausted);
                let logged = self
                    .exhausted_logged
                    .entry(pool.name.clone())
                    .or_insert(false);
                if !*logged {
                    *logged = true;
                    warn!(pool = %pool.name, "pool exhausted: no address to offer");
                    self.events
                        .emit(super::pool_exhausted_event(&pool.name, pool.total()));
                }
            }
            _ => {}
        }
        if out.events.iter().any(|e| {
            matches!(
                e.kind,
                EventKind::Released | EventKind::Expired | EventKind::Removed
            )
        }) {
            self.exhausted_logged.remove(&pool.name);
        }
        changes.extend(out.changes);
        if let (Some(ip), Some(wait), Some(r)) = (out.offered, self.ping, &out.reply) {
            if let Some(p) = self.probing.get_mut(&ip) {
                // a retransmitted DISCOVER: the probe's end answers it
                p.reply = r.clone();
                p.inb.ifindex = inb.ifindex;
                return;
            }
            if out.fresh {
                let client = handler::client_key(&msg);
                if conflicts >= PROBES_PER_DISCOVER {
                    // no unprobed address may go out, also not to a
                    // retransmission: the client starts over
                    self.table.drop_offer(&client);
                    return;
                }
                inc(&c.ping_checks);
                self.probes
                    .spawn(async move { (ip, super::probe::probe(ip, wait).await) });
                let again = Inbound {
                    msg: Ok(msg.clone()),
                    raw: inb.raw.clone(),
                    ifindex: inb.ifindex,
                    src: inb.src,
                    dst: inb.dst,
                };
                let reply = r.clone();
                self.probing.insert(
                    ip,
                    Probing {
                        inb: again,
                        reply,
                        client,
                        conflicts,
                    },
                );
                return;
            }
        }
        if let Some(r) = out.reply {
            match r.kind {
                _ if msg.opts().msg_type().is_none() => inc(&c.bootp_replies),
                MessageType::Offer => inc(&c.offer),
                // an ACK that waits for its lease to be durable is counted
                // when it leaves (`deliver`): a withheld one never does
                MessageType::Ack if !r.durable => inc(&c.ack),
                MessageType::Nak => inc(&c.nak),
                _ => {}
            }
            if r.durable {
                durable.push((r, inb.ifindex, pool.profile.as_deref().map(Arc::from)));
            } else {
                now_out.push((r, inb.ifindex));
            }
        }
        if !out.events.is_empty() {
            let name = pool.name.clone();
            self.check_utilization(&name);
        }
    }

    /// A ping-check probe of `ip` ended. No answer: its OFFER leaves (if the
    /// address is still held for the client). An answer: another host uses
    /// the address; it is taken out as declined, and the DISCOVER handled
    /// again, for the next address. A probe that could not be sent is no
    /// reason to refuse the client: the OFFER leaves.
    fn probed(&mut self, ip: Ipv4Addr, answered: std::io::Result<bool>) {
        let Some(p) = self.probing.remove(&ip) else {
            return;
        };
        let held = self
            .table
            .offer(ip)
            .filter(|o| o.is_client(&p.client))
            .cloned();
        let Some(offer) = held else {
            // the offer is gone (its pool changed): nothing to send
            return;
        };
        let serving = self.pools.get(&offer.pool).is_some_and(|pool| {
            pool.profile
                .as_ref()
                .is_none_or(|pr| self.serving.get(pr).copied().unwrap_or(false))
        });
        if !serving {
            // the pool stopped serving meanwhile (its profile is no
            // longer master): the partner answers now
            return;
        }
        let in_use = match answered {
            Ok(a) => a,
            Err(e) => {
                warn!(%ip, error = %e, "ping-check probe not sent: offering without it");
                false
            }
        };
        if !in_use {
            if let Some(s) = &self.sockets {
                let failed = s.tx.send_batch(std::iter::once((&p.reply, p.inb.ifindex)));
                self.counters
                    .send_errors
                    .fetch_add(failed as u64, Ordering::Relaxed);
                inc(&self.counters.offer);
            }
            return;
        }
        inc(&self.counters.ping_conflicts);
        warn!(%ip, pool = %offer.pool, "ping-check: the address answered, another host uses it; taken out");
        let probation = self.globals.decline_probation.max(PING_CONFLICT_PROBATION);
        let mut lease = offer;
        lease.state = LeaseState::Declined;
        lease.lifetime = probation;
        lease.expires = now_unix() + u64::from(probation);
        lease.hostname = None;
        self.table.insert(lease.clone());
        self.activity.lease(&super::leases::LeaseEvent {
            kind: EventKind::Declined,
            lease: lease.clone(),
        });
        let mut changes = vec![Change::Upsert(lease)];
        let mut durable = Vec::new();
        let mut now_out = Vec::new();
        self.process(
            p.inb,
            p.conflicts + 1,
            &mut changes,
            &mut durable,
            &mut now_out,
        );
        self.write(changes, durable);
        if let Some(s) = &self.sockets {
            let failed = s.tx.send_batch(now_out.iter().map(|(r, i)| (r, *i)));
            self.counters
                .send_errors
                .fetch_add(failed as u64, Ordering::Relaxed);
        }
        self.sync_snapshot();
    }

    /// Report a crossing of `pool`'s utilization-threshold (a lookup and
    /// a comparison: its bound leases are counted as they change).
    fn check_utilization(&mut self, name: &str) {
        let Some(pool) = self.pools.get(name) else {
            self.above_threshold.remove(name);
            return;
        };
        let total = pool.total() + pool.static_by_ip.len() as u64;
        let used = self.table.bound(name);
        let above = total > 0 && used * 100 >= u64::from(pool.threshold) * total;
        let was = self.above_threshold.contains(name);
        if above == was {
            return;
        }
        if above {
            self.above_threshold.insert(name.to_string());
        } else {
            self.above_threshold.remove(name);
        }
        info!(pool = %name, used, total, threshold = pool.threshold, above, "pool utilization crossed its threshold");
        self.events.emit(super::pool_utilization_event(
            name,
            above,
            used,
            total,
            pool.threshold,
        ));
    }

    fn check_utilization_all(&mut self) {
        let names: Vec<String> = self.pools.keys().cloned().collect();
        self.above_threshold.retain(|n| names.contains(n));
        for n in names {
            self.check_utilization(&n);
        }
    }

    /// Bring the `<get>` mirror up to date with what changed: the
    /// addresses touched and the counts of their pools (a few map updates
    /// each, under the lock).
    fn sync_snapshot(&mut self) {
        let touched = self.table.take_touched();
        let counted = self.table.take_counted();
        if touched.is_empty() && counted.is_empty() {
            return;
        }
        let Ok(mut g) = self.snapshot.lock() else {
            return;
        };
        for ip in touched {
            g.set(ip, self.table.get_shared(ip), self.table.offer_shared(ip));
        }
        for pool in counted {
            g.set_counts(&pool, self.table.counts(&pool));
        }
    }
}

/// Open the store in `dir`.
pub fn file_store(dir: &Path) -> Box<dyn LeaseStore> {
    Box::new(super::leases::FileStore::new(dir))
}

#[cfg(test)]
mod tests {
    #[test]
    fn pacing_holds_only_above_the_busy_rate() {
        use super::{Pacing, RX_INTERVAL};
        let t0 = std::time::Instant::now();
        let ms = |n: u64| t0 + std::time::Duration::from_micros(n * 1000);
        let us = |n: u64| t0 + std::time::Duration::from_micros(n);
        // 2,000 datagrams a second, one every 0.5 ms: never held
        let mut p = Pacing::rx(t0);
        for i in 1..=1_000u64 {
            assert!(
                p.after_batch(us(i * 500), 1, true).is_zero(),
                "held at datagram {i}"
            );
        }
        // 8,000 a second, four every 0.5 ms: held once the window saw it
        let mut p = Pacing::rx(t0);
        let mut held = 0;
        for i in 1..=1_000u64 {
            let d = p.after_batch(us(i * 500), 4, true);
            if !d.is_zero() {
                assert_eq!(d, RX_INTERVAL);
                held += 1;
            }
            p.resumed(us(i * 500));
        }
        // (the first window of 100 ms, 200 wake-ups, measures the rate)
        assert!(held > 750, "held {held} of 1000 wake-ups");
        // a socket not drained is read again at once, busy or not
        assert!(p.after_batch(us(500_250), 256, false).is_zero());
        // the load stops: after a quiet window nothing is held any more
        assert!(p.after_batch(ms(1_000), 1, true).is_zero());
        assert!(p
            .after_batch(ms(1_001) - std::time::Duration::from_micros(500), 1, true)
            .is_zero());
    }

    #[test]
    fn group_commit_gathers_only_above_the_busy_sync_rate() {
        use super::{Pacing, SYNC_INTERVAL};
        let t0 = std::time::Instant::now();
        let us = |n: u64| t0 + std::time::Duration::from_micros(n);
        // 1,000 syncs a second (one exchange a millisecond): each batch
        // is synced as it comes, the first window and every later one
        let mut p = Pacing::sync(t0);
        for i in 1..=1_000u64 {
            p.after_batch(us(i * 1_000), 1, true);
            assert!(!p.busy(), "gathering at sync {i}");
        }
        // 4,000 a second: gathering once the window saw it
        let mut p = Pacing::sync(t0);
        for i in 1..=1_000u64 {
            let d = p.after_batch(us(i * 250), 1, true);
            if i > 400 + 1 {
                assert!(p.busy(), "not gathering at sync {i}");
                assert_eq!(d, SYNC_INTERVAL);
            }
            p.resumed(us(i * 250));
        }
        // quiet again: the next window ends the gathering
        p.after_batch(us(2_000_000), 1, true);
        assert!(!p.busy());
    }

    use super::*;
    use crate::dhcp::config::Pool;
    use crate::dhcp::leases::{MemStore, Origin};
    use crate::dhcp::replication::{Replicated, Subscriber};
    use std::sync::atomic::AtomicBool;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn lease(addr: &str, pool: &str, mac: u8) -> Lease {
        Lease {
            ip: ip(addr),
            pool: pool.into(),
            hw: vec![2, 0, 0, 0, 0, mac],
            client_id: None,
            hostname: None,
            state: LeaseState::Bound,
            lifetime: 3600,
            expires: now_unix() + 3600,
            origin: Origin::Local,
        }
    }

    fn pool(name: &str, net: &str, start: &str, end: &str) -> Pool {
        Pool {
            sections: vec![(ip(start), ip(end))],
            ..Pool::for_test(name, net)
        }
    }

    fn cfg(pools: Vec<Pool>) -> Arc<DhcpConfig> {
        Arc::new(DhcpConfig {
            decline_probation_s: 86400,
            echo_client_id: true,
            authoritative: true,
            // no interface: the actor opens no socket
            ..DhcpConfig::for_test(pools)
        })
    }

    /// Pool exhaustion, threshold crossings both ways and a lease
    /// conflict with the partner are reported as notifications.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pool_and_conflict_events_are_reported() {
        use dhcproto::v4::DhcpOption;
        let (mut srv, _shared) =
            DhcpServer::new(Box::new(MemStore::default()), 0, CancellationToken::new()).unwrap();
        let mut p = pool("p", "10.0.0.0", "10.0.0.10", "10.0.0.13");
        p.remote_backup_profile = Some("rbp".into());
        p.utilization_threshold = 50;
        let mut c = (*cfg(vec![p])).clone();
        c.all_interfaces = true;
        srv.apply_config(Arc::new(c));
        srv.ifaces.insert(
            1,
            IfInfo {
                name: "eth0".into(),
                addrs: vec![(ip("192.0.2.1"), ip("255.255.255.0"))],
            },
        );
        srv.ifaces_at = Instant::now();
        srv.command(Command::Serving {
            profile: "rbp".into(),
            master: true,
        });
        let (sink, mut events) = EventSink::channel();
        srv.command(Command::ReportEvents(sink));
        let mut next = || {
            events.try_recv().ok().map(|e| {
                let leaves: std::collections::BTreeMap<String, String> = e
                    .leaves
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone().unwrap_or_default()))
                    .collect();
                crate::yang::notification_xml(e.notification, &e.leaves).expect("valid YANG");
                (e.notification, leaves)
            })
        };
        assert_eq!(next(), None, "an empty pool is below its threshold");
        async fn peer(srv: &mut DhcpServer, leases: Vec<Lease>) {
            let (done, applied) = oneshot::channel();
            srv.command(Command::ApplyPeer {
                updates: leases.into_iter().map(PeerUpdate::Upsert).collect(),
                profiles: Arc::from(vec!["rbp".to_string()]),
                done,
            });
            tokio::time::timeout(Duration::from_secs(10), applied)
                .await
                .expect("applied in time")
                .expect("applied");
        }
        // a local binding of .10, then the partner's newer one of the same
        // address to another client: a conflict the partner wins
        srv.table.insert(lease("10.0.0.10", "p", 9));
        let mut theirs = lease("10.0.0.10", "p", 1);
        theirs.expires += 10;
        peer(&mut srv, vec![theirs, lease("10.0.0.11", "p", 2)]).await;
        let (n, l) = next().expect("a conflict");
        assert_eq!(n, "/hotlease-dhcp-server:lease-conflict");
        assert_eq!(l["ip-address"], "10.0.0.10");
        assert_eq!(l["kept-mac-address"], "02:00:00:00:00:01");
        assert_eq!(l["lost-mac-address"], "02:00:00:00:00:09");
        assert_eq!(l["kept-origin"], "peer");
        // two of four addresses bound: 50 % reached
        let (n, l) = next().expect("a crossing");
        assert_eq!(n, "/hotlease-dhcp-server:pool-utilization");
        assert_eq!(
            (
                l["direction"].as_str(),
                l["used"].as_str(),
                l["total"].as_str()
            ),
            ("rising", "2", "4")
        );
        assert_eq!(next(), None);
        // the pool full: a new client's DISCOVER finds nothing
        peer(
            &mut srv,
            vec![lease("10.0.0.12", "p", 3), lease("10.0.0.13", "p", 4)],
        )
        .await;
        assert_eq!(next(), None, "still above: no second rising");
        let mut m = dhcproto::v4::Message::default();
        m.set_chaddr(&[2, 0, 0, 0, 0, 77])
            .set_giaddr(ip("10.0.0.1"));
        m.opts_mut()
            .insert(DhcpOption::MessageType(MessageType::Discover));
        let raw = dhcproto::Encodable::to_vec(&m).unwrap();
        for _ in 0..2 {
            let inb = Inbound {
                msg: handler::decode(&raw),
                raw: raw.clone(),
                ifindex: 1,
                src: std::net::SocketAddrV4::new(ip("10.0.0.1"), 67),
                dst: ip("192.0.2.1"),
            };
            let (mut ch, mut du, mut no) = (Vec::new(), Vec::new(), Vec::new());
            srv.process(inb, 0, &mut ch, &mut du, &mut no);
        }
        let (n, l) = next().expect("exhausted");
        assert_eq!(n, "/hotlease-dhcp-server:pool-exhausted");
        assert_eq!((l["pool"].as_str(), l["total"].as_str()), ("p", "4"));
        assert_eq!(next(), None, "reported once");
        // three released: below again
        let released: Vec<Lease> = ["10.0.0.11", "10.0.0.12", "10.0.0.13"]
            .iter()
            .zip([2u8, 3, 4])
            .map(|(a, mac)| {
                let mut l = lease(a, "p", mac);
                l.state = LeaseState::Released;
                l.expires = now_unix() + 20;
                l
            })
            .collect();
        peer(&mut srv, released).await;
        let (n, l) = next().expect("a falling crossing");
        assert_eq!(n, "/hotlease-dhcp-server:pool-utilization");
        assert_eq!(
            (l["direction"].as_str(), l["used"].as_str()),
            ("falling", "1")
        );
    }

    fn leases(shared: &Shared) -> Vec<(Ipv4Addr, Origin)> {
        let v = shared.snapshot.lock().unwrap().frozen().view(now_unix());
        v.leases.iter().map(|l| (l.ip, l.origin)).collect()
    }

    #[tokio::test]
    async fn commits_keep_unrelated_leases_and_drop_removed_ones() {
        let mut store = MemStore::default();
        for l in [
            lease("10.0.0.10", "a", 1),
            lease("10.0.0.50", "a", 2),
            lease("10.1.0.10", "b", 3),
        ] {
            store.leases.insert(l.ip, l);
        }
        let (mut srv, shared) =
            DhcpServer::new(Box::new(store), 0, CancellationToken::new()).unwrap();
        let mut log = shared.replication.subscribe_from(0);
        let a = pool("a", "10.0.0.0", "10.0.0.10", "10.0.0.60");
        let b = pool("b", "10.1.0.0", "10.1.0.10", "10.1.0.20");
        srv.apply_config(cfg(vec![a.clone(), b.clone()]));
        assert_eq!(leases(&shared).len(), 3);
        // an option edit of pool a keeps everything, without a pass over
        // the leases
        let passes = srv.table.retain_passes();
        let mut a2 = a.clone();
        a2.dns_servers = vec![ip("10.0.0.53")];
        a2.lease_time_s = 600;
        srv.apply_config(cfg(vec![a2.clone(), b.clone()]));
        assert_eq!(leases(&shared).len(), 3);
        assert_eq!(
            srv.table.retain_passes(),
            passes,
            "no pass for an option edit"
        );
        // a pool added: no pass either; an excluded range: a pass
        let c = pool("c", "10.2.0.0", "10.2.0.10", "10.2.0.20");
        srv.apply_config(cfg(vec![a2.clone(), b.clone(), c]));
        assert_eq!(srv.table.retain_passes(), passes);
        let mut a2x = a2.clone();
        a2x.excluded = vec![(ip("10.0.0.55"), ip("10.0.0.55"))];
        srv.apply_config(cfg(vec![a2x, b.clone()]));
        assert_eq!(srv.table.retain_passes(), passes + 1);
        assert_eq!(leases(&shared).len(), 3);
        a2.excluded = vec![];
        srv.apply_config(cfg(vec![a2.clone(), b.clone()]));
        // shrink a (keeps .10, drops .50) and delete b
        let mut a3 = a2;
        a3.sections = vec![(ip("10.0.0.10"), ip("10.0.0.20"))];
        srv.apply_config(cfg(vec![a3]));
        assert_eq!(leases(&shared), vec![(ip("10.0.0.10"), Origin::Local)]);
        // the removals are the log's first batch (the commits before
        // changed no lease; a start skips a number)
        let mut removed = match next(&mut log).await {
            Replicated::Batch { lsn: 2, changes } => (*changes).clone(),
            r => panic!("{r:?}"),
        };
        removed.sort_by_key(|c| format!("{c:?}"));
        assert_eq!(
            removed,
            [
                Change::Delete(ip("10.0.0.50")),
                Change::Delete(ip("10.1.0.10"))
            ]
        );
        // leases from the partner land with origin peer; unknown pools
        // and pools outside the profiles are refused; the answer comes
        // once the change is durable
        let mut peer = lease("10.0.0.11", "a", 4);
        let (done, applied) = oneshot::channel();
        srv.command(Command::ApplyPeer {
            updates: vec![
                PeerUpdate::Upsert(peer.clone()),
                PeerUpdate::Upsert(lease("10.9.0.1", "zz", 5)),
            ],
            profiles: Arc::from(vec![]),
            done,
        });
        let out = tokio::time::timeout(Duration::from_secs(10), applied)
            .await
            .expect("applied in time")
            .expect("applied");
        assert_eq!(out.taken, 0);
        assert_eq!(
            out.refused,
            vec![
                (ip("10.0.0.11"), "a".into(), PeerRefusal::NotInProfile),
                (ip("10.9.0.1"), "zz".into(), PeerRefusal::UnknownPool)
            ]
        );
        srv.pools.get_mut("a").unwrap().profile = Some("rbp".into());
        let (done, applied) = oneshot::channel();
        srv.command(Command::ApplyPeer {
            updates: vec![PeerUpdate::Upsert(peer.clone())],
            profiles: Arc::from(vec!["rbp".to_string()]),
            done,
        });
        let out = applied.await.expect("applied");
        assert_eq!((out.taken, out.refused.len()), (1, 0));
        srv.sync_snapshot();
        assert_eq!(
            leases(&shared),
            vec![
                (ip("10.0.0.10"), Origin::Local),
                (ip("10.0.0.11"), Origin::Peer)
            ]
        );
        peer.origin = Origin::Peer;
        assert_eq!(
            next(&mut log).await,
            Replicated::Batch {
                lsn: 3,
                changes: Arc::new(vec![Change::Upsert(peer)])
            }
        );
    }

    /// The next batch of `log` (within a few seconds).
    async fn next(log: &mut Subscriber) -> Replicated {
        tokio::time::timeout(Duration::from_secs(10), log.next())
            .await
            .expect("a batch in time")
            .unwrap()
    }

    /// A commit rebuilds the runtime of the pools it changed and keeps the
    /// others' (the same `Arc`).
    #[tokio::test]
    async fn commits_rebuild_only_changed_pools() {
        let (mut srv, _shared) =
            DhcpServer::new(Box::new(MemStore::default()), 0, CancellationToken::new()).unwrap();
        let c1 = cfg(vec![
            pool("a", "10.0.0.0", "10.0.0.10", "10.0.0.60"),
            pool("b", "10.1.0.0", "10.1.0.10", "10.1.0.60"),
        ]);
        srv.apply_config(c1.clone());
        let mut c2 = (*c1).clone();
        Arc::make_mut(c2.pools.get_mut("b").unwrap()).lease_time_s = 600;
        Arc::make_mut(c2.pools.get_mut("b").unwrap()).sections =
            vec![(ip("10.1.0.20"), ip("10.1.0.30"))];
        srv.apply_config(Arc::new(c2));
        assert_eq!(srv.pools["b"].lease_time, 600);
        assert_eq!(
            srv.pools["b"].sections,
            [(u32::from(ip("10.1.0.20")), u32::from(ip("10.1.0.30")))]
        );
        assert_eq!(srv.pools["a"].lease_time, c1.pools["a"].lease_time_s);
        assert_eq!(srv.pools.len(), 2);
        // a pool added and one removed
        let mut c3 = (*srv.cfg).clone();
        c3.pools.remove("a");
        c3.pools.insert(
            "c".into(),
            Arc::new(pool("c", "10.2.0.0", "10.2.0.10", "10.2.0.60")),
        );
        srv.apply_config(Arc::new(c3));
        assert_eq!(srv.pools.keys().collect::<Vec<_>>(), ["b", "c"]);
        assert_eq!(srv.pools["b"].lease_time, 600);
    }

    /// Ping-check in the actor, on loopback (every address of 127/8
    /// answers an echo request): the DISCOVER gets no OFFER while its
    /// address is probed; each answer takes the address out as declined
    /// and probes the next, at most `PROBES_PER_DISCOVER` for one DISCOVER;
    /// then the offer is dropped, so no unprobed address goes out.
    #[tokio::test]
    async fn ping_check_takes_answering_addresses_out_and_stops_after_a_few() {
        if let Err(e) = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::RAW,
            Some(socket2::Protocol::ICMPV4),
        ) {
            eprintln!("no raw ICMP socket ({e}): ping-check not testable here");
            return;
        }
        let (mut srv, shared) =
            DhcpServer::new(Box::new(MemStore::default()), 0, CancellationToken::new()).unwrap();
        let mut c = (*cfg(vec![pool("lo", "127.0.0.0", "127.0.0.10", "127.0.0.30")])).clone();
        c.all_interfaces = true;
        // as a commit sets them, without opening the sockets
        srv.pools = c
            .pools
            .iter()
            .map(|(n, p)| (n.clone(), PoolRt::from(&**p)))
            .collect();
        srv.cfg = Arc::new(c);
        srv.ping = Some(Duration::from_secs(2));
        srv.ifaces.insert(
            1,
            IfInfo {
                name: "eth0".into(),
                addrs: vec![(ip("192.0.2.1"), ip("255.255.255.0"))],
            },
        );
        srv.ifaces_at = Instant::now();
        // a DISCOVER relayed from 127.0.0.1: pool lo
        let mut m = dhcproto::v4::Message::default();
        m.set_chaddr(&[2, 0, 0, 0, 0, 1])
            .set_giaddr(ip("127.0.0.1"));
        m.opts_mut()
            .insert(dhcproto::v4::DhcpOption::MessageType(MessageType::Discover));
        let raw = dhcproto::Encodable::to_vec(&m).unwrap();
        let inb = Inbound {
            msg: handler::decode(&raw),
            raw: raw.clone(),
            ifindex: 1,
            src: std::net::SocketAddrV4::new(ip("127.0.0.1"), 67),
            dst: ip("192.0.2.1"),
        };
        let (mut ch, mut du, mut no) = (Vec::new(), Vec::new(), Vec::new());
        srv.process(inb, 0, &mut ch, &mut du, &mut no);
        assert!(no.is_empty(), "no OFFER before the probe's end");
        assert_eq!(srv.probing.len(), 1);
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        assert_eq!(n(&shared.counters.ping_checks), 1);
        let mut ended = 0;
        while let Some(done) = srv.probes.join_next().await {
            let (ip, answered) = done.unwrap();
            srv.probed(ip, answered);
            ended += 1;
            assert!(ended <= usize::from(PROBES_PER_DISCOVER), "probing goes on");
        }
        let c = &shared.counters;
        assert_eq!(ended, usize::from(PROBES_PER_DISCOVER));
        assert_eq!(n(&c.ping_checks), u64::from(PROBES_PER_DISCOVER));
        assert_eq!(n(&c.ping_conflicts), u64::from(PROBES_PER_DISCOVER));
        assert_eq!((n(&c.offer), n(&c.discover), n(&c.received)), (0, 1, 1));
        let declined: Vec<_> = srv
            .table
            .leases()
            .filter(|l| l.state == LeaseState::Declined && l.expires > now_unix() + 59)
            .map(|l| l.ip)
            .collect();
        assert_eq!(
            declined.len(),
            usize::from(PROBES_PER_DISCOVER),
            "{declined:?}"
        );
        assert_eq!(srv.table.offers().count(), 0, "no unprobed offer left");
        assert!(srv.probing.is_empty());
    }

    #[tokio::test]
    async fn pools_of_a_profile_serve_only_while_master() {
        let (mut srv, shared) =
            DhcpServer::new(Box::new(MemStore::default()), 0, CancellationToken::new()).unwrap();
        let mut p = pool("a", "10.0.0.0", "10.0.0.10", "10.0.0.60");
        p.remote_backup_profile = Some("rbp".into());
        let mut c = (*cfg(vec![p])).clone();
        c.all_interfaces = true;
        Arc::make_mut(c.pools.get_mut("a").unwrap()).gateways = vec![];
        srv.cfg = Arc::new(c.clone());
        srv.pools = c
            .pools
            .iter()
            .map(|(n, p)| (n.clone(), PoolRt::from(&**p)))
            .collect();
        // a relayed DISCOVER for pool a, as the socket hands it over
        let mut m = dhcproto::v4::Message::default();
        m.set_chaddr(&[2, 0, 0, 0, 0, 1]).set_giaddr(ip("10.0.0.1"));
        m.opts_mut()
            .insert(dhcproto::v4::DhcpOption::MessageType(MessageType::Discover));
        let raw = dhcproto::Encodable::to_vec(&m).unwrap();
        srv.ifaces.insert(
            1,
            IfInfo {
                name: "eth0".into(),
                addrs: vec![(ip("192.0.2.1"), ip("255.255.255.0"))],
            },
        );
        srv.ifaces_at = Instant::now();
        let inbound = || Inbound {
            msg: handler::decode(&raw),
            raw: raw.clone(),
            ifindex: 1,
            src: std::net::SocketAddrV4::new(ip("10.0.0.1"), 67),
            dst: ip("192.0.2.1"),
        };
        let (mut ch, mut du, mut no) = (Vec::new(), Vec::new(), Vec::new());
        srv.process(inbound(), 0, &mut ch, &mut du, &mut no);
        assert_eq!(shared.counters.not_serving.load(Ordering::Relaxed), 1);
        assert_eq!(shared.counters.offer.load(Ordering::Relaxed), 0);
        srv.command(Command::Serving {
            profile: "rbp".into(),
            master: true,
        });
        srv.process(inbound(), 0, &mut ch, &mut du, &mut no);
        assert_eq!(shared.counters.offer.load(Ordering::Relaxed), 1);
        srv.command(Command::Serving {
            profile: "rbp".into(),
            master: false,
        });
        srv.process(inbound(), 0, &mut ch, &mut du, &mut no);
        assert_eq!(shared.counters.not_serving.load(Ordering::Relaxed), 2);
    }

    /// Every request that gets no reply is counted (and logged) with its
    /// reason: the pool not serving, a message type servers do not
    /// answer, a REQUEST for another server, one RFC 2131 leaves
    /// unanswered; a DISCOVER answered is no drop.
    #[tokio::test]
    async fn requests_without_a_reply_are_recorded_with_their_reason() {
        use crate::dhcp::activity::DropReason;
        use dhcproto::v4::DhcpOption;
        let (mut srv, _shared) =
            DhcpServer::new(Box::new(MemStore::default()), 0, CancellationToken::new()).unwrap();
        let mut held = pool("held", "10.1.0.0", "10.1.0.10", "10.1.0.60");
        held.remote_backup_profile = Some("rbp".into());
        let mut c = (*cfg(vec![pool("a", "10.0.0.0", "10.0.0.10", "10.0.0.60"), held])).clone();
        c.all_interfaces = true;
        srv.cfg = Arc::new(c.clone());
        srv.pools = c
            .pools
            .iter()
            .map(|(n, p)| (n.clone(), PoolRt::from(&**p)))
            .collect();
        srv.ifaces.insert(
            1,
            IfInfo {
                name: "eth0".into(),
                addrs: vec![(ip("192.0.2.1"), ip("255.255.255.0"))],
            },
        );
        srv.ifaces_at = Instant::now();
        let send = |srv: &mut DhcpServer, relay: &str, opts: Vec<DhcpOption>| {
            let mut m = dhcproto::v4::Message::default();
            m.set_chaddr(&[2, 0, 0, 0, 0, 1]).set_giaddr(ip(relay));
            for o in opts {
                m.opts_mut().insert(o);
            }
            let raw = dhcproto::Encodable::to_vec(&m).unwrap();
            let inb = Inbound {
                msg: handler::decode(&raw),
                raw,
                ifindex: 1,
                src: std::net::SocketAddrV4::new(ip(relay), 67),
                dst: ip("192.0.2.1"),
            };
            let (mut ch, mut du, mut no) = (Vec::new(), Vec::new(), Vec::new());
            srv.process(inb, 0, &mut ch, &mut du, &mut no);
        };
        let kind = DhcpOption::MessageType;
        send(&mut srv, "10.0.0.1", vec![kind(MessageType::Discover)]);
        assert!(
            srv.activity.period().dropped.is_empty(),
            "an OFFER went out"
        );
        send(&mut srv, "10.1.0.1", vec![kind(MessageType::Discover)]);
        send(&mut srv, "10.9.0.1", vec![kind(MessageType::Discover)]);
        send(&mut srv, "10.0.0.1", vec![kind(MessageType::Offer)]);
        send(
            &mut srv,
            "10.0.0.1",
            vec![
                kind(MessageType::Request),
                DhcpOption::ServerIdentifier(ip("10.0.0.254")),
                DhcpOption::RequestedIpAddress(ip("10.0.0.11")),
            ],
        );
        // INIT-REBOOT for an address nobody holds: RFC 2131 silence
        send(
            &mut srv,
            "10.0.0.1",
            vec![
                kind(MessageType::Request),
                DhcpOption::RequestedIpAddress(ip("10.0.0.40")),
            ],
        );
        let got = &srv.activity.period().dropped;
        let want = BTreeMap::from([
            (DropReason::NotServing, 1),
            (DropReason::NoPool, 1),
            (DropReason::Unexpected, 1),
            (DropReason::OtherServer, 1),
            (DropReason::Ignored, 1),
        ]);
        assert_eq!(*got, want);
    }

    /// A stall (the actor did not run for seconds: a stopped process)
    /// makes a profile this router serves take new addresses from its own
    /// half, as in a split brain, until the backup service decides again;
    /// a profile not served here, or one already split, is left alone.
    /// Offers of the other half made before the split (stall or service)
    /// are forgotten (the partner may grant those addresses meanwhile);
    /// offers of the own half, and of pools not served here, stay.
    #[tokio::test]
    async fn a_stall_takes_new_addresses_from_the_own_half() {
        let (mut srv, _shared) =
            DhcpServer::new(Box::new(MemStore::default()), 0, CancellationToken::new()).unwrap();
        let mut a = pool("a", "10.0.0.0", "10.0.0.10", "10.0.0.60");
        a.remote_backup_profile = Some("rbp".into());
        let mut b = pool("b", "10.1.0.0", "10.1.0.10", "10.1.0.60");
        b.remote_backup_profile = Some("other".into());
        srv.apply_config(cfg(vec![a, b]));
        for (profile, master) in [("rbp", true), ("other", false)] {
            srv.command(Command::Serving {
                profile: profile.into(),
                master,
            });
            srv.command(Command::OwnHalf {
                profile: profile.into(),
                half: Half::Even,
            });
        }
        let offer = |addr: &str, pool: &str, mac: u8| Lease {
            state: LeaseState::Offered,
            ..lease(addr, pool, mac)
        };
        for (addr, pool, mac) in [
            ("10.0.0.21", "a", 1),
            ("10.0.0.22", "a", 2),
            ("10.1.0.21", "b", 3),
        ] {
            srv.table.hold(offer(addr, pool, mac));
        }
        srv.stalled(Duration::from_secs(8));
        assert_eq!(srv.pools["a"].split, Some(Half::Even));
        assert_eq!(srv.pools["b"].split, None, "not served here");
        assert!(
            srv.table.offer(ip("10.0.0.21")).is_none(),
            "the other half's offer goes"
        );
        assert!(
            srv.table.offer(ip("10.0.0.22")).is_some(),
            "the own half's offer stays"
        );
        assert!(
            srv.table.offer(ip("10.1.0.21")).is_some(),
            "a pool not served here"
        );
        // the service decides again (the tables reconciled): no split
        srv.command(Command::Split {
            profile: "rbp".into(),
            half: None,
        });
        assert_eq!(srv.pools["a"].split, None);
        // a split the service sets forgets the other half's offers too
        srv.table.hold(offer("10.0.0.24", "a", 4));
        srv.table.hold(offer("10.0.0.25", "a", 5));
        srv.command(Command::Split {
            profile: "rbp".into(),
            half: Some(Half::Odd),
        });
        assert!(srv.table.offer(ip("10.0.0.24")).is_none());
        assert!(srv.table.offer(ip("10.0.0.25")).is_some());
        // and stays as it is
        srv.stalled(Duration::from_secs(8));
        assert_eq!(srv.pools["a"].split, Some(Half::Odd));
    }

    /// Split brain: `Command::Split` makes the pools of its profile (and
    /// only those) offer from its half, also after a commit rebuilt them,
    /// until the split ends.
    #[tokio::test]
    async fn a_split_survives_a_commit_and_steers_offers() {
        let (mut srv, _shared) =
            DhcpServer::new(Box::new(MemStore::default()), 0, CancellationToken::new()).unwrap();
        let mut a = pool("a", "10.0.0.0", "10.0.0.10", "10.0.0.60");
        a.remote_backup_profile = Some("rbp".into());
        // commits without interfaces (no socket); the packets are handed
        // to `process` as if received on every interface
        let mut c = (*cfg(vec![a, pool("b", "10.1.0.0", "10.1.0.10", "10.1.0.60")])).clone();
        let on_all = |srv: &mut DhcpServer| {
            let mut served = (*srv.cfg).clone();
            served.all_interfaces = true;
            srv.cfg = Arc::new(served);
        };
        srv.apply_config(Arc::new(c.clone()));
        srv.command(Command::Serving {
            profile: "rbp".into(),
            master: true,
        });
        srv.command(Command::Split {
            profile: "rbp".into(),
            half: Some(Half::Odd),
        });
        assert_eq!(srv.pools["a"].split, Some(Half::Odd));
        assert_eq!(srv.pools["b"].split, None);
        // a commit that rebuilds pool a
        Arc::make_mut(c.pools.get_mut("a").unwrap()).lease_time_s = 600;
        srv.apply_config(Arc::new(c.clone()));
        assert_eq!(srv.pools["a"].lease_time, 600);
        assert_eq!(srv.pools["a"].split, Some(Half::Odd));
        srv.ifaces.insert(
            1,
            IfInfo {
                name: "eth0".into(),
                addrs: vec![(ip("10.0.0.1"), ip("255.255.255.0"))],
            },
        );
        srv.ifaces_at = Instant::now();
        on_all(&mut srv);
        let offers = |srv: &mut DhcpServer, macs: std::ops::Range<u8>| -> Vec<Ipv4Addr> {
            let (mut ch, mut du, mut now_out) = (Vec::new(), Vec::new(), Vec::new());
            for mac in macs {
                let mut m = dhcproto::v4::Message::default();
                m.set_chaddr(&[2, 0, 0, 0, 0, mac]);
                m.opts_mut()
                    .insert(dhcproto::v4::DhcpOption::MessageType(MessageType::Discover));
                let raw = dhcproto::Encodable::to_vec(&m).unwrap();
                srv.process(
                    Inbound {
                        msg: handler::decode(&raw),
                        raw,
                        ifindex: 1,
                        src: std::net::SocketAddrV4::new(ip("0.0.0.0"), 68),
                        dst: ip("255.255.255.255"),
                    },
                    0,
                    &mut ch,
                    &mut du,
                    &mut now_out,
                );
            }
            now_out
                .iter()
                .map(|(r, _)| {
                    dhcproto::Decodable::decode(&mut dhcproto::Decoder::new(&r.bytes))
                        .map(|m: dhcproto::v4::Message| m.yiaddr())
                        .unwrap()
                })
                .collect()
        };
        let got = offers(&mut srv, 1..6);
        assert_eq!(got.len(), 5);
        assert!(got.iter().all(|ip| Half::Odd.contains(*ip)), "{got:?}");
        srv.command(Command::Split {
            profile: "rbp".into(),
            half: None,
        });
        srv.apply_config(Arc::new(c));
        on_all(&mut srv);
        assert_eq!(srv.pools["a"].split, None);
        let got = offers(&mut srv, 10..14);
        assert!(got.iter().any(|ip| Half::Even.contains(*ip)), "{got:?}");
    }

    fn ack() -> Durable {
        let reply = Reply {
            kind: MessageType::Ack,
            bytes: vec![2; 300],
            to: handler::Delivery::Broadcast,
            from: ip("10.0.0.1"),
            durable: true,
            received: Some(Instant::now()),
        };
        (reply, 1, None)
    }

    /// Wait (a few seconds at most) for the writer thread to do something.
    fn until(what: &str, mut done: impl FnMut() -> bool) {
        let t = Instant::now();
        while !done() {
            assert!(t.elapsed() < Duration::from_secs(10), "{what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// A store with a bug: it panics at the first sync, which ends its
    /// writer thread.
    #[derive(Debug)]
    struct PanicsAtSync;

    impl LeaseStore for PanicsAtSync {
        fn load(&mut self) -> Result<Vec<Lease>, crate::dhcp::leases::StoreError> {
            Ok(Vec::new())
        }
        fn append(&mut self, _: &[Change]) -> Result<(), crate::dhcp::leases::StoreError> {
            Ok(())
        }
        fn begin(&mut self, _: u64) {}
        fn lsn(&self) -> u64 {
            0
        }
        fn sync(&mut self) -> Result<(), crate::dhcp::leases::StoreError> {
            panic!("lease store bug (test)");
        }
        fn compact(&mut self, _: &[Lease]) -> Result<(), crate::dhcp::leases::StoreError> {
            Ok(())
        }
        fn records(&self) -> u64 {
            0
        }
    }

    /// Item 11 of issue 9 (the writer's side): once the writer thread is
    /// gone, every ACK is withheld, counted and shown in `<get>`, not
    /// dropped silently.
    #[test]
    fn acks_are_withheld_counted_and_shown_once_the_writer_is_gone() {
        let (mut srv, shared) =
            DhcpServer::new(Box::new(PanicsAtSync), 0, CancellationToken::new()).unwrap();
        srv.write(vec![Change::Delete(ip("10.0.0.9"))], vec![ack()]);
        until("the writer ends", || {
            srv.writer_thread.as_ref().unwrap().is_finished()
        });
        let c = &shared.counters;
        let l = lease("10.0.0.10", "a", 1);
        srv.write(vec![Change::Upsert(l.clone())], vec![ack(), ack()]);
        assert_eq!(c.acks_withheld.load(Ordering::Relaxed), 2);
        assert!(c.store_failed.load(Ordering::Relaxed));
        srv.write(vec![Change::Upsert(l)], vec![ack()]);
        assert_eq!(c.acks_withheld.load(Ordering::Relaxed), 3);
        let xml = crate::dhcp::render_state(&View::default(), c);
        assert!(
            xml.contains("<acks-withheld>3</acks-withheld>")
                && xml.contains("<lease-store-failed>true</lease-store-failed>"),
            "{xml}"
        );
    }

    /// A store that cannot sync (a real ENOSPC: a full 1 MiB tmpfs in a
    /// private mount namespace) gets no ACK out, counts the withheld ones
    /// and shows itself failed until a sync works again, which it tries
    /// by itself; the changes of the failed batch are stored then.
    #[test]
    fn a_full_disk_withholds_acks_until_the_store_works_again() {
        crate::dhcp::leases::tests::in_child(
            "dhcp::server::tests::a_full_disk_withholds_acks_until_the_store_works_again",
            &["unshare", "--mount", "--propagation", "private"],
            || {
                use std::io::Write;
                let dir = tempfile::tempdir().unwrap();
                let d = dir.path();
                crate::dhcp::leases::tests::mount_small_tmpfs(d);
                let mut f = std::fs::File::create(d.join("filler")).unwrap();
                while f.write_all(&[1u8; 4096]).is_ok() {}
                drop(f);
                let (mut srv, shared) =
                    DhcpServer::new(file_store(d), 0, CancellationToken::new()).unwrap();
                let c = shared.counters.clone();
                // what VRRP tracks (issue 15: the master gives the group away)
                let health = c.store_health.subscribe();
                let x = lease("10.0.0.10", "a", 1);
                let y = lease("10.0.0.11", "a", 2);
                srv.write(vec![Change::Upsert(x.clone())], vec![ack()]);
                until("the ACK withheld", || {
                    c.acks_withheld.load(Ordering::Relaxed) == 1
                });
                assert!(c.store_failed.load(Ordering::Relaxed));
                until("the failure told", || health.borrow().is_some());
                let said = health.borrow().clone().unwrap_or_default();
                assert!(said.contains("No space left on device"), "{said}");
                // room again: the writer tries again by itself
                std::fs::remove_file(d.join("filler")).unwrap();
                until("the store works again", || {
                    !c.store_failed.load(Ordering::Relaxed)
                });
                until("the recovery told", || health.borrow().is_none());
                let log = std::fs::read(d.join("leases.log")).unwrap();
                let rec = crate::dhcp::leases::encode_record(&Change::Upsert(x.clone()));
                let rec = rec.as_bytes();
                assert!(log.windows(rec.len()).any(|w| w == rec), "x stored");
                srv.write(vec![Change::Upsert(y.clone())], vec![ack()]);
                assert_eq!(c.acks_withheld.load(Ordering::Relaxed), 1);
                srv.writer = None;
                srv.writer_thread.take().unwrap().join().unwrap();
                let mut got = crate::dhcp::leases::FileStore::new(d).load().unwrap();
                got.sort_by_key(|l| l.ip);
                assert_eq!(got, vec![x, y]);
                drop(srv);
                let ok = std::process::Command::new("umount").arg(d).status();
                assert!(ok.unwrap().success());
            },
        );
    }

    /// Replies as they leave, each with what had happened by then: (its
    /// ifindex, the syncs the store had completed, whether the test had
    /// let the partner acknowledge).
    #[derive(Debug)]
    struct Recorder {
        sent: std::sync::mpsc::Sender<(u32, u64, bool)>,
        synced: Arc<AtomicU64>,
        acked: Arc<AtomicBool>,
    }

    impl Outbox for Recorder {
        fn send_replies(&self, replies: &mut dyn Iterator<Item = (&Reply, u32)>) -> usize {
            for (_, i) in replies {
                let state = (
                    i,
                    self.synced.load(Ordering::SeqCst),
                    self.acked.load(Ordering::SeqCst),
                );
                let _ = self.sent.send(state);
            }
            0
        }
    }

    /// A store in memory whose syncs are counted and, with `go`, each wait
    /// for the test's word; they fail (EIO) while `fail` is set.
    #[derive(Debug, Default)]
    struct Paced {
        mem: MemStore,
        go: Option<std::sync::mpsc::Receiver<()>>,
        synced: Arc<AtomicU64>,
        fail: Arc<AtomicBool>,
    }

    impl LeaseStore for Paced {
        fn load(&mut self) -> Result<Vec<Lease>, crate::dhcp::leases::StoreError> {
            self.mem.load()
        }
        fn append(&mut self, c: &[Change]) -> Result<(), crate::dhcp::leases::StoreError> {
            self.mem.append(c)
        }
        fn begin(&mut self, lsn: u64) {
            self.mem.begin(lsn)
        }
        fn lsn(&self) -> u64 {
            self.mem.lsn()
        }
        fn sync(&mut self) -> Result<(), crate::dhcp::leases::StoreError> {
            if let Some(go) = &self.go {
                let _ = go.recv();
            }
            if self.fail.load(Ordering::SeqCst) {
                return Err(crate::dhcp::leases::StoreError::Io {
                    path: "paced".into(),
                    source: std::io::Error::from_raw_os_error(libc::EIO),
                });
            }
            self.synced.fetch_add(1, Ordering::SeqCst);
            self.mem.sync()
        }
        fn compact(&mut self, live: &[Lease]) -> Result<(), crate::dhcp::leases::StoreError> {
            self.mem.compact(live)
        }
        fn records(&self) -> u64 {
            self.mem.records()
        }
    }

    /// The stages around `store`, a recorder of what they send, and the
    /// flags it records.
    struct Rig {
        st: Stages,
        counters: Arc<Counters>,
        out: Arc<dyn Outbox>,
        sent: std::sync::mpsc::Receiver<(u32, u64, bool)>,
        acked: Arc<AtomicBool>,
    }

    impl Rig {
        fn new(store: Box<dyn LeaseStore>, synced: Arc<AtomicU64>, tail: usize) -> Rig {
            let counters = Arc::new(Counters::default());
            let st = Stages::start(store, counters.clone(), tail).unwrap();
            let acked = Arc::new(AtomicBool::new(false));
            let (tx, sent) = std::sync::mpsc::channel();
            let out = Arc::new(Recorder {
                sent: tx,
                synced,
                acked: acked.clone(),
            });
            Rig {
                st,
                counters,
                out,
                sent,
                acked,
            }
        }

        /// A rig whose store syncs at once and never fails.
        fn unpaced(tail: usize) -> Rig {
            let synced = Arc::new(AtomicU64::new(0));
            let store = Paced {
                synced: synced.clone(),
                ..Default::default()
            };
            Rig::new(Box::new(store), synced, tail)
        }

        /// One write job: `changes`, and an ACK on `ifindex` per entry of
        /// `acks` for a pool of that profile.
        fn write(&self, changes: Vec<Change>, acks: &[(u32, Option<&str>)]) {
            self.write_at(changes, acks, Instant::now())
        }

        /// `write`, of changes the actor made at `at`.
        fn write_at(&self, changes: Vec<Change>, acks: &[(u32, Option<&str>)], at: Instant) {
            let replies = acks
                .iter()
                .map(|(i, p)| (ack().0, *i, p.map(Arc::from)))
                .collect();
            let job = WriteJob::Batch {
                changes,
                replies,
                tx: Some(self.out.clone()),
                at,
            };
            self.st.writer.send(job).unwrap();
        }

        fn sent(&self) -> (u32, u64, bool) {
            self.sent
                .recv_timeout(Duration::from_secs(10))
                .expect("an ACK sent")
        }

        fn stop(self) {
            drop(self.st.writer);
            self.st.writer_thread.join().unwrap();
            let _ = self.st.release.send(ReleaseMsg::Stop);
            self.st.release_thread.join().unwrap();
        }
    }

    /// Bytes free on the file system of `d` (`stat -f`: no unsafe statvfs
    /// call in this module).
    fn free_bytes(d: &Path) -> u64 {
        let out = std::process::Command::new("stat")
            .args(["-f", "-c", "%a %S"])
            .arg(d)
            .output()
            .unwrap();
        let s = String::from_utf8(out.stdout).unwrap();
        let v: Vec<u64> = s.split_whitespace().map(|x| x.parse().unwrap()).collect();
        v[0] * v[1]
    }

    /// Issue 15: clients served while the storage directory (a real 1 MiB
    /// tmpfs in a private mount namespace) fills up. The log's zeros
    /// written ahead hold batches until they run out; a compaction on the
    /// full disk fails, is logged, leaves no file behind and stops no
    /// ACK; at the end of the zeros the next sync fails (ENOSPC) and from
    /// then on no ACK leaves, each counted; when room returns the writer
    /// recovers by itself. After a restart every lease whose ACK left is
    /// stored and nothing else is.
    #[test]
    fn served_until_the_disk_is_full_no_ack_leaves_that_is_not_stored() {
        crate::dhcp::leases::tests::in_child(
            "dhcp::server::tests::served_until_the_disk_is_full_no_ack_leaves_that_is_not_stored",
            &["unshare", "--mount", "--propagation", "private"],
            || {
                use std::collections::BTreeSet;
                use std::io::Write;
                let dir = tempfile::tempdir().unwrap();
                let d = dir.path();
                crate::dhcp::leases::tests::mount_small_tmpfs(d);
                // room for the log's first stretch of zeros (256 KiB) and
                // 96 KiB more: less than a compaction of the leases needs
                let leave = (256 + 96) << 10;
                let filler = d.join("filler");
                let mut f = std::fs::File::create(&filler).unwrap();
                f.write_all(&vec![1u8; (free_bytes(d) - leave) as usize])
                    .unwrap();
                f.sync_all().unwrap();
                drop(f);
                let lease_of = |i: u32| {
                    let mut l = lease("10.0.0.1", "a", (i % 251) as u8);
                    l.ip = Ipv4Addr::from(0x0a10_0000 + i);
                    l.expires = 2_000_000_000;
                    l
                };
                let rig = Rig::new(file_store(d), Arc::new(AtomicU64::new(0)), 64);
                let withheld = || rig.counters.acks_withheld.load(Ordering::SeqCst);
                let mut acked = BTreeSet::new();
                let mut written = 0u32;
                // `n` clients served, one write job each; wait until each
                // ACK left or was withheld
                let mut serve = |n: u32, acked: &mut BTreeSet<u32>| -> usize {
                    let before = acked.len();
                    for _ in 0..n {
                        rig.write(vec![Change::Upsert(lease_of(written))], &[(written, None)]);
                        written += 1;
                    }
                    until("every ACK sent or withheld", || {
                        while let Ok((i, _, _)) = rig.sent.try_recv() {
                            acked.insert(i);
                        }
                        acked.len() as u64 + withheld() == u64::from(written)
                    });
                    acked.len() - before
                };
                assert_eq!(serve(1200, &mut acked), 1200, "room in the zeros");
                // a compaction on the full disk: its file does not fit
                rig.st.writer.send(WriteJob::Compact).unwrap();
                let tmp = d.join("leases.log.tmp");
                assert_eq!(serve(50, &mut acked), 50, "serving goes on");
                // up to the end of the zeros written ahead
                for _ in 0..40 {
                    if withheld() > 0 {
                        break;
                    }
                    serve(100, &mut acked);
                }
                assert!(withheld() > 0, "the disk filled up");
                assert!(acked.len() > 2000, "the zeros held {}", acked.len());
                assert!(rig.counters.store_failed.load(Ordering::SeqCst));
                let full = acked.len();
                assert_eq!(serve(20, &mut acked), 0, "no ACK on a full disk");
                assert_eq!(acked.len(), full);
                // room again: the writer recovers by itself
                std::fs::remove_file(&filler).unwrap();
                until("the store works again", || {
                    !rig.counters.store_failed.load(Ordering::SeqCst)
                });
                assert_eq!(serve(20, &mut acked), 20, "ACKs again");
                assert_eq!(
                    rig.counters.ack.load(Ordering::SeqCst),
                    acked.len() as u64,
                    "sent ACKs counted as they leave, withheld ones not"
                );
                println!(
                    "served {written}: {} ACKed ({full} before the disk was full), {} withheld",
                    acked.len(),
                    withheld()
                );
                let total = written;
                // the writer waits for the compaction before it ends
                rig.stop();
                assert!(!tmp.exists(), "the failed compaction left its file");
                let got = crate::dhcp::leases::FileStore::new(d).load().unwrap();
                let got: HashMap<Ipv4Addr, Lease> = got.into_iter().map(|l| (l.ip, l)).collect();
                for i in &acked {
                    let l = lease_of(*i);
                    assert_eq!(got.get(&l.ip), Some(&l), "ACKed lease {i} stored");
                }
                assert!(
                    got.values().all(|l| (0..total).any(|i| lease_of(i) == *l)),
                    "nothing stored that was not written"
                );
                let ok = std::process::Command::new("umount").arg(d).status();
                assert!(ok.unwrap().success());
            },
        );
    }

    /// Issue 10: the batch reaches the replicator before its sync is done
    /// (the two run in parallel), and an ACK of a gated profile leaves only
    /// once its batch is both synced and acknowledged by the partner,
    /// whichever comes last; without a profile, or without a gate, the
    /// sync is enough.
    #[tokio::test]
    async fn a_gated_ack_waits_for_the_sync_and_the_partner() {
        let (go, go_rx) = std::sync::mpsc::channel();
        let synced = Arc::new(AtomicU64::new(0));
        let store = Paced {
            mem: MemStore::default(),
            go: Some(go_rx),
            synced: synced.clone(),
            ..Default::default()
        };
        let rig = Rig::new(Box::new(store), synced.clone(), replication::TAIL_CHANGES);
        let gate = rig.st.replication.gate("rbp", Duration::from_secs(3600));
        let mut log = rig.st.replication.subscribe_from(0);
        let x = lease("10.0.0.10", "a", 1);
        let y = lease("10.0.0.11", "a", 2);
        // replicated first, then durable
        rig.write(vec![Change::Upsert(x.clone())], &[(1, Some("rbp"))]);
        let b1 = next(&mut log).await;
        assert_eq!(
            synced.load(Ordering::SeqCst),
            0,
            "handed out before its sync"
        );
        assert_eq!(
            b1,
            Replicated::Batch {
                lsn: 2,
                changes: Arc::new(vec![Change::Upsert(x)])
            }
        );
        rig.acked.store(true, Ordering::SeqCst);
        gate.acknowledge(2);
        until("the partner's ack seen", || {
            gate.stats().acked.load(Ordering::SeqCst) == 2
        });
        go.send(()).unwrap();
        assert_eq!(rig.sent(), (1, 1, true), "sent after the sync");
        // durable first, then replicated (a start skipped number 1)
        rig.acked.store(false, Ordering::SeqCst);
        rig.write(vec![Change::Upsert(y)], &[(2, Some("rbp"))]);
        assert!(matches!(
            next(&mut log).await,
            Replicated::Batch { lsn: 3, .. }
        ));
        go.send(()).unwrap();
        until("batch 3 durable", || rig.st.replication.durable() == 3);
        rig.acked.store(true, Ordering::SeqCst);
        gate.acknowledge(3);
        assert_eq!(rig.sent(), (2, 2, true), "sent after the partner's ack");
        // no profile, or a profile without a gate: durable is enough
        rig.acked.store(false, Ordering::SeqCst);
        rig.write(
            vec![Change::Delete(ip("10.0.0.10"))],
            &[(3, None), (4, Some("other"))],
        );
        go.send(()).unwrap();
        let mut got = [rig.sent(), rig.sent()];
        got.sort();
        assert_eq!(got, [(3, 3, false), (4, 3, false)]);
        assert_eq!(gate.stats().unsent.load(Ordering::SeqCst), 1);
        drop(go);
        rig.stop();
    }

    /// Issue 14: the ACK latency runs from reading the request to sending
    /// the ACK, the wait for the partner's acknowledgement included; an
    /// ACK still held is not observed yet.
    #[tokio::test]
    async fn the_ack_latency_includes_the_partners_acknowledgement() {
        let rig = Rig::unpaced(replication::TAIL_CHANGES);
        let gate = rig.st.replication.gate("rbp", Duration::from_secs(3600));
        rig.write(
            vec![Change::Upsert(lease("10.0.0.10", "a", 1))],
            &[(1, Some("rbp"))],
        );
        until("batch durable", || rig.st.replication.durable() == 2);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(rig.counters.ack_latency.snapshot().count, 0, "held");
        rig.acked.store(true, Ordering::SeqCst);
        gate.acknowledge(2);
        assert_eq!(rig.sent().0, 1);
        // observed once the sockets took it (the recorder hears it first)
        until("the ACK observed", || {
            rig.counters.ack_latency.snapshot().count == 1
        });
        let h = rig.counters.ack_latency.snapshot();
        assert!(h.sum >= 0.03, "{h:?}");
        // the observation is in the first bucket at or above 30 ms
        assert!(
            h.buckets
                .iter()
                .all(|(le, n)| *n == u64::from(*le >= h.sum)),
            "{h:?}"
        );
        rig.stop();
    }

    /// Issue 10: a partner that does not acknowledge within the ack
    /// timeout degrades the gate: its ACKs leave on the sync alone and the
    /// changes it has not acknowledged are counted; its acknowledgement
    /// of everything brings the gate back. The backup side can also
    /// declare the channel degraded at once, and dropping a gate lets its
    /// held ACKs go.
    #[tokio::test]
    async fn a_degraded_gate_serves_alone_and_counts_what_is_unsent() {
        let rig = Rig::unpaced(replication::TAIL_CHANGES);
        let gate = rig.st.replication.gate("rbp", Duration::from_millis(50));
        let three: Vec<Change> = (1..=3)
            .map(|i| Change::Upsert(lease(&format!("10.0.0.{i}"), "a", i)))
            .collect();
        rig.write(three, &[(1, Some("rbp"))]);
        assert_eq!(rig.sent(), (1, 1, false));
        let st = gate.stats();
        assert!(st.degraded.load(Ordering::SeqCst));
        assert_eq!(st.unsent.load(Ordering::SeqCst), 3);
        assert_eq!(st.released_degraded.load(Ordering::SeqCst), 1);
        // the partner catches up
        gate.acknowledge(2);
        until("up again", || {
            !st.degraded.load(Ordering::SeqCst) && st.unsent.load(Ordering::SeqCst) == 0
        });
        // declared degraded by the backup side: no waiting
        let slow = rig.st.replication.gate("rbp2", Duration::from_secs(3600));
        slow.set_degraded(true);
        rig.write(vec![Change::Delete(ip("10.0.0.1"))], &[(5, Some("rbp2"))]);
        assert_eq!(rig.sent().0, 5);
        // up again: held; the gate dropped: let go
        slow.set_degraded(false);
        until("rbp2 up", || !slow.stats().degraded.load(Ordering::SeqCst));
        rig.write(vec![Change::Delete(ip("10.0.0.2"))], &[(6, Some("rbp2"))]);
        until("batch 4 durable", || rig.st.replication.durable() == 4);
        drop(slow);
        assert_eq!(rig.sent(), (6, 3, false));
        drop(gate);
        rig.stop();
    }

    /// A thread stopped between the release of hot-backup ACKs and their
    /// send (a stopped process): when it runs again they are dropped,
    /// counted, not sent; ACKs released just now go.
    #[test]
    fn acks_released_before_a_stall_are_not_sent_after_it() {
        let (tx, sent) = std::sync::mpsc::channel();
        let out: Arc<dyn Outbox> = Arc::new(Recorder {
            sent: tx,
            synced: Arc::default(),
            acked: Arc::default(),
        });
        let counters = Counters::default();
        let two = || -> Vec<Out> {
            (1..=2)
                .map(|i| {
                    let (r, _, _) = ack();
                    (r, i, out.clone())
                })
                .collect()
        };
        deliver(
            &two(),
            &counters,
            Some(Instant::now() - Duration::from_secs(8)),
        );
        assert!(
            sent.try_recv().is_err(),
            "an ACK released before the stall left"
        );
        assert_eq!(counters.acks_stale.load(Ordering::Relaxed), 2);
        assert_eq!(counters.ack.load(Ordering::Relaxed), 0);
        deliver(&two(), &counters, Some(Instant::now()));
        assert_eq!(sent.try_iter().count(), 2);
        assert_eq!(counters.ack.load(Ordering::Relaxed), 2);
        // no release time (pools without hot backup): always sent
        deliver(&two(), &counters, None);
        assert_eq!(sent.try_iter().count(), 2);
    }

    /// A stopped process: the actor granted a lease, then everything
    /// stopped before the writer published it. When the process runs
    /// again the batch is published seconds after the grant, and the
    /// partner, which served meanwhile, may have given the address away:
    /// its held ACK is as old as the grant, so a degraded gate drops it
    /// (stale) instead of sending it; a fresh one goes.
    #[tokio::test]
    async fn an_ack_granted_before_a_stall_is_stale_when_published_after_it() {
        let rig = Rig::unpaced(replication::TAIL_CHANGES);
        let gate = rig.st.replication.gate("rbp", Duration::from_millis(50));
        gate.set_degraded(true);
        until("degraded", || gate.stats().degraded.load(Ordering::SeqCst));
        let before_the_stall = Instant::now() - Duration::from_secs(8);
        rig.write_at(
            vec![Change::Upsert(lease("10.0.0.1", "a", 1))],
            &[(1, Some("rbp"))],
            before_the_stall,
        );
        until("the stale batch durable", || {
            gate.stats().dropped_stale.load(Ordering::SeqCst) == 1
        });
        rig.write(
            vec![Change::Upsert(lease("10.0.0.2", "a", 2))],
            &[(2, Some("rbp"))],
        );
        assert_eq!(
            rig.sent().0,
            2,
            "the fresh ACK goes, the stale one does not"
        );
        assert_eq!(gate.stats().dropped_stale.load(Ordering::SeqCst), 1);
        drop(gate);
        rig.stop();
    }

    /// Issue 10: a subscriber that reads nothing holds up no sync (the
    /// writer goes on, the in-memory tail drops its old batches), then
    /// catches up from the log, in order; after a compaction it gets the
    /// snapshot, then the batches; LSNs go on across the compaction and a
    /// restart.
    #[tokio::test]
    async fn a_replica_that_falls_behind_catches_up_from_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut store = file_store(d);
        store.load().unwrap();
        let rig = Rig::new(store, Arc::new(AtomicU64::new(0)), 2);
        let mut idle = rig.st.replication.subscribe_from(0);
        let leases: Vec<Lease> = (1..=250u8)
            .map(|i| lease(&format!("10.0.1.{i}"), "a", i))
            .collect();
        let mut batch = 0u64;
        // batch n (from 2: a start skips a number) upserts leases[n - 2]
        let put = |rig: &Rig, batch: &mut u64| {
            let l = &leases[*batch as usize];
            *batch += 1;
            rig.write(vec![Change::Upsert(l.clone())], &[]);
            until("durable", || rig.st.replication.durable() == *batch + 1);
        };
        for _ in 0..20 {
            put(&rig, &mut batch);
        }
        for lsn in 2..=21u64 {
            let want = Change::Upsert(leases[lsn as usize - 2].clone());
            assert_eq!(
                next(&mut idle).await,
                Replicated::Batch {
                    lsn,
                    changes: Arc::new(vec![want])
                }
            );
        }
        // compaction: syncs go on until the new log is in place
        rig.st.writer.send(WriteJob::Compact).unwrap();
        let snapshot = |d: &Path| {
            let log = std::fs::read(d.join("leases.log")).unwrap();
            log.get(9..11) == Some(b"S ".as_slice())
        };
        while !snapshot(d) {
            assert!(batch < 200, "compacted");
            put(&rig, &mut batch);
        }
        let last = batch + 1;
        let mut late = rig.st.replication.subscribe_from(1);
        let Replicated::Snapshot {
            lsn: s,
            leases: mut got,
        } = next(&mut late).await
        else {
            panic!("a snapshot first");
        };
        assert!((21..last).contains(&s), "{s} {last}");
        got.sort_by_key(|l| l.ip);
        assert_eq!(got, leases[..s as usize - 1]);
        for lsn in s + 1..=last {
            assert!(matches!(next(&mut late).await, Replicated::Batch { lsn: n, .. } if n == lsn));
        }
        rig.stop();
        // a restart goes on from the last LSN
        let mut store = file_store(d);
        assert_eq!(store.load().unwrap().len(), last as usize - 1);
        assert_eq!(store.lsn(), last);
        let rig = Rig::new(store, Arc::new(AtomicU64::new(0)), 2);
        assert_eq!(rig.st.replication.durable(), last + 1);
        let mut after = rig.st.replication.subscribe_from(last);
        rig.write(vec![Change::Delete(leases[0].ip)], &[]);
        assert_eq!(
            next(&mut after).await,
            Replicated::Batch {
                lsn: last + 2,
                changes: Arc::new(vec![Change::Delete(leases[0].ip)])
            }
        );
        rig.stop();
    }

    /// A gate opened again for a profile replaces the first: the first
    /// one's held ACKs leave, and dropping it later leaves the new one in
    /// place. A replica of a store that keeps no log cannot catch up (an
    /// error, never a gap), and learns when the writer is gone.
    #[tokio::test]
    async fn a_reopened_gate_replaces_the_old_one() {
        let rig = Rig::unpaced(1);
        let h = rig.st.replication.clone();
        let old = h.gate("rbp", Duration::from_secs(3600));
        rig.write(vec![Change::Delete(ip("10.0.0.1"))], &[(1, Some("rbp"))]);
        until("batch 2 durable", || h.durable() == 2);
        let new = h.gate("rbp", Duration::from_secs(3600));
        assert_eq!(rig.sent(), (1, 1, false));
        drop(old);
        rig.write(vec![Change::Delete(ip("10.0.0.2"))], &[(2, Some("rbp"))]);
        until("batch 3 durable", || h.durable() == 3);
        rig.acked.store(true, Ordering::SeqCst);
        new.acknowledge(3);
        assert_eq!(rig.sent(), (2, 2, true), "held by the new gate");
        let mut behind = h.subscribe_from(0);
        assert!(matches!(
            behind.next().await,
            Err(replication::ReplicationError::NoLog)
        ));
        let mut ahead = h.subscribe_from(3);
        rig.stop();
        assert!(matches!(
            ahead.next().await,
            Err(replication::ReplicationError::Closed)
        ));
    }

    /// Issue 10: while the store fails, the changes written meanwhile
    /// gather in one batch, handed out only once a sync works: at most one
    /// batch is ever out and not durable (the one a crash may lose, whose
    /// number the next start skips).
    #[tokio::test]
    async fn a_failing_store_hands_out_no_new_batch_until_it_works() {
        let synced = Arc::new(AtomicU64::new(0));
        let fail = Arc::new(AtomicBool::new(true));
        let store = Paced {
            synced: synced.clone(),
            fail: fail.clone(),
            ..Default::default()
        };
        let rig = Rig::new(Box::new(store), synced, replication::TAIL_CHANGES);
        let mut log = rig.st.replication.subscribe_from(0);
        let (a, b, c) = (
            Change::Delete(ip("10.0.0.1")),
            Change::Delete(ip("10.0.0.2")),
            Change::Delete(ip("10.0.0.3")),
        );
        rig.write(vec![a.clone()], &[(1, None)]);
        // handed out before its sync, which fails
        let b2 = next(&mut log).await;
        assert_eq!(
            b2,
            Replicated::Batch {
                lsn: 2,
                changes: Arc::new(vec![a])
            }
        );
        // each synced in vain, one after the other
        let withheld = |n| {
            until("withheld", || {
                rig.counters.acks_withheld.load(Ordering::SeqCst) == n
            })
        };
        rig.write(vec![b.clone()], &[(2, None)]);
        withheld(2);
        rig.write(vec![c.clone()], &[(3, None)]);
        withheld(3);
        fail.store(false, Ordering::SeqCst);
        assert_eq!(
            next(&mut log).await,
            Replicated::Batch {
                lsn: 3,
                changes: Arc::new(vec![b, c])
            }
        );
        until("durable", || rig.st.replication.durable() == 3);
        assert!(
            rig.sent.try_recv().is_err(),
            "the failed batch's ACK withheld"
        );
        rig.stop();
    }
}
