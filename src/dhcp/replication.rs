//! Replication of the lease log (issue 10, "real-time backup, with nothing
//! lost"): the numbered sync batches go to the hot-backup partner in log
//! order, and a DHCPACK of a pool bound to a remote-backup-profile leaves
//! only when its batch is durable here *and* acknowledged by the partner.
//!
//! ```text
//!  DHCP actor ──changes + ACKs──► lease writer (thread)
//!                                   │ 1. append batch `lsn` (marker `B lsn` + changes)
//!                                   │ 2. publish it: tail ──► Subscriber::next (backup actor) ──► partner
//!                                   │ 3. fsync   (in parallel with 2's transfer)
//!                                   │ 4. durable = lsn; ACKs of pools without a profile go out
//!                                   ▼
//!                      ACK release stage ◄── Gate::acknowledge / set_degraded (backup actor)
//!                        ACKs of a profile go out when the partner's acked LSN covers
//!                        their batch, or at once without a gate, or when the gate is degraded
//!                        (its timer thread), sent by the thread that made it so
//! ```
//!
//! Ordering guarantees:
//! - LSNs are strictly increasing, one per sync batch with changes, never
//!   given to two batches (the log records them, see `leases.rs`), across
//!   restarts and compactions. A batch's content never changes after it is
//!   published: a failed sync keeps its records and writes them again,
//!   under the same marker, with the next sync (a long outage may drop
//!   records that a later batch supersedes, never the later one).
//! - A batch is published *before* its fsync, so that the transfer to the
//!   partner and the local fsync run at the same time. At most one batch is
//!   ever published and not durable: the writer syncs one batch at a time,
//!   and while the store fails, new changes gather in one batch published
//!   once a sync works. The partner may thus hold one batch this router
//!   loses in a crash before its fsync; no ACK of it left, the batch backup
//!   reconciles it, and since each start skips one number, that batch's
//!   number is never given to another.
//! - An ACK is handed to the release stage only once its batch is durable
//!   (a failed sync withholds it, as before); the release stage only waits
//!   for the partner. Waiting for the partner never holds up the writer:
//!   the writer only hands the release stage its ACKs, and the tail drops
//!   its oldest batches rather than wait for a slow subscriber.
//! - A subscriber sees every batch after its starting point, in order,
//!   without gaps: from the in-memory tail while it keeps up, else from the
//!   log on disk (batches up to the durable LSN), and when the log was
//!   compacted past it, from the compaction snapshot first. (A number a
//!   start skipped carries nothing; records written before the log had
//!   markers belong to no batch and reach the partner by batch backup.)
//! - Acknowledgements are cumulative: `acknowledge(n)` covers every batch up
//!   to `n`. A gate that hears nothing for a published batch within its ack
//!   timeout is degraded: its held ACKs go out on durability alone and it
//!   counts the changes the partner has not acknowledged (`unsent`); it is
//!   up again once the partner has acknowledged every published batch.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::leases::{Change, LogReader, Logged, StoreError};

/// Errors of a replication subscriber.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// The subscriber fell behind the in-memory tail and the store keeps no
    /// log to catch up from.
    #[error("replica fell behind and the lease store keeps no log")]
    NoLog,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("lease writer is gone")]
    Closed,
    #[error("lease log reader failed")]
    Reader,
}

/// What a subscriber receives, in log order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replicated {
    /// Sync batch `lsn`: every change of it, in order.
    Batch { lsn: u64, changes: Arc<Vec<Change>> },
    /// The leases as of batch `lsn`: the log was compacted past the
    /// subscriber's position; batches after `lsn` follow.
    Snapshot {
        lsn: u64,
        leases: Vec<super::leases::Lease>,
    },
}

/// How many changes the in-memory tail keeps at most (it keeps at least
/// the newest batch): a few seconds of changes at full load (a few MB),
/// enough for a replica that keeps up; one that does not reads the log.
pub(crate) const TAIL_CHANGES: usize = 16 * 1024;

/// The newest published batches, shared by the writer (which appends) and
/// the subscribers (which read). The lock is held to push or look up one
/// batch, never across an `.await` or an I/O.
#[derive(Debug)]
struct Tail {
    batches: Mutex<Batches>,
    max_changes: usize,
    /// Last LSN published (handed out, maybe not durable yet); the writer
    /// holds the sender, so subscribers learn when it is gone.
    published: watch::Receiver<u64>,
    /// Last LSN durable in the local store.
    durable: watch::Receiver<u64>,
    log: Option<LogReader>,
    /// Numbers the gates, so that a gate replaced by another of the same
    /// profile no longer speaks for it.
    gate_ids: AtomicU64,
    /// The number this start skipped (no batch has it).
    skipped: u64,
    /// Gates open: without any, the writer tells the release stage
    /// nothing about the batches (no wake-up of its thread per batch).
    gates: AtomicUsize,
}

/// Consecutive batches, and how many changes they hold.
#[derive(Debug, Default)]
struct Batches {
    list: VecDeque<(u64, Arc<Vec<Change>>)>,
    changes: usize,
}

/// Where a subscriber's next batch is.
enum Lookup {
    Found(Arc<Vec<Change>>),
    /// Not published yet.
    Ahead,
    /// Dropped from the tail: in the log only.
    Gone,
}

impl Tail {
    fn lookup(&self, lsn: u64) -> Lookup {
        let b = self.batches.lock().unwrap_or_else(|e| e.into_inner());
        let b = &b.list;
        match (b.front(), b.back()) {
            (Some((first, _)), Some((last, _))) if lsn >= *first && lsn <= *last => {
                Lookup::Found(b[(lsn - first) as usize].1.clone())
            }
            (Some((first, _)), _) if lsn < *first => Lookup::Gone,
            _ if lsn > *self.published.borrow() => Lookup::Ahead,
            _ => Lookup::Gone,
        }
    }
}

/// The writer's end: publishes batches and the durable position.
#[derive(Debug)]
pub(crate) struct Publisher {
    tail: Arc<Tail>,
    published: watch::Sender<u64>,
    durable: watch::Sender<u64>,
}

impl Publisher {
    /// Hand batch `lsn` (the next LSN) to the subscribers. Never waits:
    /// the oldest batches beyond the tail's bound are dropped (the log
    /// has them).
    pub(crate) fn publish(&self, lsn: u64, changes: Arc<Vec<Change>>) {
        // dropped outside the lock
        let mut gone = Vec::new();
        {
            let mut b = self.tail.batches.lock().unwrap_or_else(|e| e.into_inner());
            b.changes += changes.len();
            b.list.push_back((lsn, changes));
            while b.list.len() > 1 && b.changes > self.tail.max_changes {
                if let Some((_, c)) = b.list.pop_front() {
                    b.changes -= c.len();
                    gone.push(c);
                }
            }
        }
        self.published.send_replace(lsn);
        drop(gone);
    }

    /// Every batch up to `lsn` is durable.
    pub(crate) fn durable(&self, lsn: u64) {
        self.durable.send_replace(lsn);
    }

    /// Whether a gate is open (asked after `publish`): a gate opened
    /// later counts the batches published before it as covered.
    pub(crate) fn gated(&self) -> bool {
        self.tail.gates.load(Ordering::SeqCst) > 0
    }
}

/// Messages to the ACK release stage.
#[derive(Debug)]
pub(crate) enum ReleaseMsg<T> {
    /// Batch `lsn` of `changes` changes was handed to the subscribers;
    /// `at`: when the actor made the first of them.
    Published {
        lsn: u64,
        changes: u64,
        at: Instant,
    },
    /// ACKs whose batches are durable, by profile (`lsn`: their batch).
    Durable(Vec<(Arc<str>, u64, T)>),
    Open {
        gate: GateKey,
        timeout: Duration,
        stats: Arc<GateStats>,
        /// The last LSN published when the gate opened.
        published: u64,
    },
    Close(GateKey),
    Acked(GateKey, u64),
    Degraded(GateKey, bool),
    Stop,
}

/// A gate: its profile, and which of the gates opened for it.
#[derive(Debug, Clone)]
pub(crate) struct GateKey {
    profile: Arc<str>,
    id: u64,
}

/// What a gate shows (read without the release stage).
#[derive(Debug, Default)]
pub struct GateStats {
    pub acked: AtomicU64,
    pub degraded: AtomicBool,
    /// Changes of published batches the partner has not acknowledged.
    pub unsent: AtomicU64,
    /// ACKs released because the gate was degraded.
    pub released_degraded: AtomicU64,
    /// Held ACKs dropped as stale when the gate was degraded.
    pub dropped_stale: AtomicU64,
}

/// How long beyond its ack timeout a held ACK may still leave when its
/// gate is degraded (see `GateState::release`).
const STALE_MARGIN: Duration = Duration::from_secs(1);

/// Unacknowledged batches a gate keeps apart; beyond, the two oldest are
/// merged (the count stays exact, the timing uses the older one).
const GATE_BATCHES: usize = 4096;

#[derive(Debug)]
struct GateState<T> {
    id: u64,
    timeout: Duration,
    acked: u64,
    degraded: bool,
    /// Published batches above `acked`: (lsn, changes, published at).
    batches: VecDeque<(u64, u64, Instant)>,
    /// Their changes.
    unsent: u64,
    /// Durable ACKs waiting for the partner, in batch order.
    held: VecDeque<(u64, T)>,
    stats: Arc<GateStats>,
}

impl<T> GateState<T> {
    fn show(&self) {
        self.stats.unsent.store(self.unsent, Ordering::Relaxed);
        self.stats.acked.store(self.acked, Ordering::Relaxed);
        self.stats.degraded.store(self.degraded, Ordering::Relaxed);
    }

    /// When the batch holding `lsn` was published (the merged record of
    /// older batches when it was merged).
    fn published_at(&self, lsn: u64) -> Option<Instant> {
        self.batches.iter().rev().find(|b| b.0 <= lsn).map(|b| b.2)
    }

    /// The held ACKs the gate lets out at `now`: all of them when it is
    /// degraded, those the partner acknowledged otherwise. Those held
    /// longer than the ack timeout allows (`STALE_MARGIN` beyond it,
    /// counted from the grant: this router did not run meanwhile, a
    /// stopped process) are dropped: the partner may have served their
    /// clients since (an acknowledgement does not say it took the lease:
    /// it may have kept its own binding of the address), and the clients
    /// have asked again.
    fn release(&mut self, now: Instant, out: &mut Vec<T>) {
        let limit = self.timeout + STALE_MARGIN;
        let (mut stale, mut sent) = (0u64, 0u64);
        while let Some((lsn, _)) = self.held.front() {
            if !self.degraded && *lsn > self.acked {
                break;
            }
            let old = self
                .published_at(*lsn)
                .is_some_and(|at| now.saturating_duration_since(at) > limit);
            let Some((_, t)) = self.held.pop_front() else {
                break;
            };
            if old {
                stale += 1;
            } else {
                out.push(t);
                sent += 1;
            }
        }
        if self.degraded {
            self.stats
                .released_degraded
                .fetch_add(sent, Ordering::Relaxed);
        }
        if stale > 0 {
            self.stats.dropped_stale.fetch_add(stale, Ordering::Relaxed);
            tracing::warn!(
                dropped = stale,
                "hot backup: ACKs held past the ack timeout (this router did not run meanwhile) dropped; their clients ask again"
            );
        }
    }
}

/// The ACK release logic (pure: [`ReleaseStage`] feeds it and sends what
/// it returns).
#[derive(Debug)]
pub(crate) struct Release<T> {
    gates: HashMap<Arc<str>, GateState<T>>,
    published: u64,
}

impl<T> Release<T> {
    pub(crate) fn new(published: u64) -> Release<T> {
        Release {
            gates: HashMap::new(),
            published,
        }
    }

    /// The gate `key` names, unless another replaced it since.
    fn gate(&mut self, key: &GateKey) -> Option<&mut GateState<T>> {
        self.gates.get_mut(&key.profile).filter(|g| g.id == key.id)
    }

    /// Apply one message at `now`; the ACKs that may leave go to `out`.
    pub(crate) fn handle(&mut self, msg: ReleaseMsg<T>, now: Instant, out: &mut Vec<T>) {
        match msg {
            ReleaseMsg::Published { lsn, changes, at } => {
                self.published = self.published.max(lsn);
                for g in self.gates.values_mut() {
                    if lsn > g.acked {
                        g.batches.push_back((lsn, changes, at));
                        g.unsent += changes;
                        if g.batches.len() > GATE_BATCHES {
                            let (_, n0, at0) = g.batches.pop_front().expect("over the bound");
                            if let Some(b) = g.batches.front_mut() {
                                b.1 += n0;
                                b.2 = at0;
                            }
                        }
                        g.show();
                    }
                }
            }
            ReleaseMsg::Durable(acks) => {
                for (profile, lsn, t) in acks {
                    match self.gates.get_mut(&profile) {
                        Some(g) => g.held.push_back((lsn, t)),
                        // no gate: durable is enough
                        None => out.push(t),
                    }
                }
                for g in self.gates.values_mut() {
                    g.release(now, out);
                }
            }
            ReleaseMsg::Open {
                gate,
                timeout,
                stats,
                published,
            } => {
                // what was published before the gate opened is not its to
                // wait for (the batch backup covers it)
                self.published = self.published.max(published);
                let g = GateState {
                    id: gate.id,
                    unsent: 0,
                    timeout,
                    acked: self.published,
                    degraded: false,
                    batches: VecDeque::new(),
                    held: VecDeque::new(),
                    stats,
                };
                g.show();
                if let Some(mut old) = self.gates.insert(gate.profile, g) {
                    old.degraded = true;
                    old.release(now, out);
                }
            }
            ReleaseMsg::Close(key) => {
                if self.gate(&key).is_some() {
                    if let Some(mut g) = self.gates.remove(&key.profile) {
                        g.degraded = true;
                        g.release(now, out);
                    }
                }
            }
            ReleaseMsg::Acked(key, lsn) => {
                let published = self.published;
                if let Some(g) = self.gate(&key) {
                    g.acked = g.acked.max(lsn);
                    // while the batches still say when their leases were
                    // granted (stale ACKs are dropped)
                    g.release(now, out);
                    while let Some(b) = g.batches.front().filter(|b| b.0 <= g.acked) {
                        g.unsent -= b.1;
                        g.batches.pop_front();
                    }
                    if g.degraded && g.acked >= published {
                        // the partner caught up with everything
                        g.degraded = false;
                    }
                    g.show();
                }
            }
            ReleaseMsg::Degraded(key, on) => {
                if let Some(g) = self.gate(&key) {
                    g.degraded = on;
                    g.release(now, out);
                    g.show();
                }
            }
            ReleaseMsg::Stop => {}
        }
        self.poll(now, out);
    }

    /// Declare degraded the gates whose oldest unacknowledged batch is
    /// older than their ack timeout.
    pub(crate) fn poll(&mut self, now: Instant, out: &mut Vec<T>) {
        for g in self.gates.values_mut() {
            let late = g
                .batches
                .front()
                .is_some_and(|b| now.duration_since(b.2) >= g.timeout);
            if !g.degraded && late {
                g.degraded = true;
                // a warning when a client's ACK was waiting; without one
                // (a backup router writing the partner's own leases, whose
                // batches the partner acknowledges only as "nothing for
                // me") nobody was served alone
                if g.held.is_empty() {
                    tracing::debug!(
                        unsent = g.unsent,
                        acked = g.acked,
                        "hot backup: partner acknowledgement late, no ACK held"
                    );
                } else {
                    tracing::warn!(
                        unsent = g.unsent,
                        acked = g.acked,
                        held = g.held.len(),
                        "hot backup: partner did not acknowledge in time, serving alone"
                    );
                }
                g.release(now, out);
                g.show();
            }
        }
    }

    /// When `poll` has something to do next.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.gates
            .values()
            .filter(|g| !g.degraded)
            .filter_map(|g| g.batches.front().map(|b| b.2 + g.timeout))
            .min()
    }
}

/// The ACK release stage: the release logic behind a lock, driven inline
/// by whoever learns something — the lease writer that a batch is durable,
/// the backup actor that the partner acknowledged one — which sends what
/// it releases at once, from its own thread. A DHCPACK held for the
/// partner thus leaves from the task that read the partner's
/// acknowledgement, with no thread hand-off in its path (on the benchmark
/// VM every hand-off costs a wake-up of some tens of µs, more under
/// load). A timer thread only declares gates degraded on time, and wakes
/// for nothing else.
pub(crate) struct ReleaseStage<T> {
    inner: Mutex<StageInner<T>>,
    /// Wakes the timer thread (an earlier deadline, or the stop).
    timer: std::sync::Condvar,
    /// Sends what a message released, with when it was released.
    send: Box<dyn Fn(Vec<T>, Instant) + Send + Sync>,
}

struct StageInner<T> {
    rel: Release<T>,
    stopped: bool,
    /// When the timer thread wakes next (None: it waits for a deadline).
    timer_at: Option<Instant>,
}

impl<T> std::fmt::Debug for ReleaseStage<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReleaseStage").finish_non_exhaustive()
    }
}

/// The release stage was stopped: what was handed to it is not sent.
#[derive(Debug)]
pub(crate) struct Stopped;

/// How the stage is reached.
pub(crate) type ReleaseTx<T> = Arc<ReleaseStage<T>>;

impl<T> ReleaseStage<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, StageInner<T>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Apply `msg` and send what it releases, from the caller's thread.
    pub(crate) fn send(&self, msg: ReleaseMsg<T>) -> Result<(), Stopped> {
        let mut out = Vec::new();
        let now = Instant::now();
        {
            let mut g = self.lock();
            if g.stopped {
                return Err(Stopped);
            }
            if let ReleaseMsg::Stop = msg {
                // closing: the ACKs still held wait for a partner that
                // will not be heard any more; sending them now would grant
                // leases the partner may lack just when this router stops:
                // they stay unsent (fail closed)
                let held: usize = g.rel.gates.values().map(|g| g.held.len()).sum();
                if held > 0 {
                    tracing::info!(
                        held,
                        "ack release stopping: ACKs not acknowledged by the partner withheld"
                    );
                }
                g.stopped = true;
                self.timer.notify_one();
                return Ok(());
            }
            g.rel.handle(msg, now, &mut out);
            // the timer sleeps until its deadline: wake it only when a
            // gate's deadline now comes earlier
            if let Some(d) = g.rel.deadline() {
                if g.timer_at.is_none_or(|t| d < t) {
                    self.timer.notify_one();
                }
            }
        }
        if !out.is_empty() {
            (self.send)(out, now);
        }
        Ok(())
    }
}

impl<T: Send + 'static> ReleaseStage<T> {
    /// The stage and its timer thread; `published` is the number this
    /// start skipped, `send` what sends the ACKs a message releases.
    pub(crate) fn start(
        published: u64,
        send: impl Fn(Vec<T>, Instant) + Send + Sync + 'static,
    ) -> std::io::Result<(ReleaseTx<T>, std::thread::JoinHandle<()>)> {
        let stage = Arc::new(ReleaseStage {
            inner: Mutex::new(StageInner {
                rel: Release::new(published),
                stopped: false,
                timer_at: None,
            }),
            timer: std::sync::Condvar::new(),
            send: Box::new(send),
        });
        let s = stage.clone();
        let thread = std::thread::Builder::new()
            .name("lease-ack".into())
            .spawn(move || s.timer_loop())?;
        Ok((stage, thread))
    }

    /// The timer thread: declares gates degraded on time, until stopped.
    fn timer_loop(&self) {
        let mut g = self.lock();
        loop {
            if g.stopped {
                return;
            }
            let now = Instant::now();
            let mut out = Vec::new();
            g.rel.poll(now, &mut out);
            if !out.is_empty() {
                drop(g);
                (self.send)(out, now);
                g = self.lock();
                continue;
            }
            g.timer_at = g.rel.deadline();
            g = match g.timer_at {
                Some(d) => {
                    self.timer
                        .wait_timeout(g, d.saturating_duration_since(now))
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
                None => self.timer.wait(g).unwrap_or_else(|p| p.into_inner()),
            };
        }
    }
}

/// The narrow handle the hot-backup subsystem uses (holo's `ibus` style):
/// stream the lease log, and gate a profile's ACKs on the partner.
#[derive(Debug, Clone)]
pub struct ReplicationHandle<T> {
    tail: Arc<Tail>,
    release: ReleaseTx<T>,
}

/// Build the writer's publisher and the handle around the stage's channel;
/// `published` is the number this start skipped (the store's LSN + 1),
/// `max_changes` the tail's bound ([`TAIL_CHANGES`]).
pub(crate) fn channel<T>(
    published: u64,
    log: Option<LogReader>,
    release: ReleaseTx<T>,
    max_changes: usize,
) -> (Publisher, ReplicationHandle<T>) {
    let (published_tx, published_rx) = watch::channel(published);
    let (durable_tx, durable_rx) = watch::channel(published);
    let tail = Arc::new(Tail {
        batches: Mutex::new(Batches::default()),
        max_changes,
        published: published_rx,
        durable: durable_rx,
        log,
        gate_ids: AtomicU64::new(0),
        skipped: published,
        gates: AtomicUsize::new(0),
    });
    (
        Publisher {
            tail: tail.clone(),
            published: published_tx,
            durable: durable_tx,
        },
        ReplicationHandle { tail, release },
    )
}

impl<T> ReplicationHandle<T> {
    /// Every batch after `lsn` (the last one the partner holds), in order.
    pub fn subscribe_from(&self, lsn: u64) -> Subscriber {
        Subscriber {
            tail: self.tail.clone(),
            next: lsn + 1,
            published: self.tail.published.clone(),
            durable: self.tail.durable.clone(),
            caught_up: VecDeque::new(),
        }
    }

    /// The last LSN published (handed to the subscribers).
    pub fn published(&self) -> u64 {
        *self.tail.published.borrow()
    }

    /// The last LSN durable in the local store.
    pub fn durable(&self) -> u64 {
        *self.tail.durable.borrow()
    }

    /// Hold the ACKs of `profile`'s pools until the partner acknowledges
    /// their batch (or the gate is degraded: no acknowledgement within
    /// `ack_timeout`). Dropping the gate releases them on durability alone.
    /// A second gate for the same profile replaces the first (whose held
    /// ACKs leave then), and the first one's calls no longer count.
    pub fn gate(&self, profile: &str, ack_timeout: Duration) -> Gate<T> {
        let key = GateKey {
            profile: profile.into(),
            id: self.tail.gate_ids.fetch_add(1, Ordering::Relaxed),
        };
        let stats = Arc::new(GateStats::default());
        // counted before the position is read: a batch published after
        // the read is announced to the release stage (see `gated`)
        self.tail.gates.fetch_add(1, Ordering::SeqCst);
        let _ = self.release.send(ReleaseMsg::Open {
            gate: key.clone(),
            timeout: ack_timeout,
            stats: stats.clone(),
            published: *self.tail.published.borrow(),
        });
        Gate {
            key,
            tail: self.tail.clone(),
            release: self.release.clone(),
            stats,
        }
    }
}

/// A profile's ACK gate (see [`ReplicationHandle::gate`]).
#[derive(Debug)]
pub struct Gate<T> {
    key: GateKey,
    tail: Arc<Tail>,
    release: ReleaseTx<T>,
    stats: Arc<GateStats>,
}

impl<T> Gate<T> {
    /// The partner holds every batch up to `lsn` durably (cumulative).
    pub fn acknowledge(&self, lsn: u64) {
        let _ = self.release.send(ReleaseMsg::Acked(self.key.clone(), lsn));
    }

    /// The channel is down (`true`: serve alone at once, without waiting
    /// for the timeout) or up again.
    pub fn set_degraded(&self, on: bool) {
        let _ = self
            .release
            .send(ReleaseMsg::Degraded(self.key.clone(), on));
    }

    pub fn stats(&self) -> &GateStats {
        &self.stats
    }

    /// The gate's figures, to read after the gate is gone.
    pub fn shared_stats(&self) -> Arc<GateStats> {
        self.stats.clone()
    }
}

impl<T> Drop for Gate<T> {
    fn drop(&mut self) {
        let _ = self.release.send(ReleaseMsg::Close(self.key.clone()));
        self.tail.gates.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A reader of the log's batches from a position on (see
/// [`ReplicationHandle::subscribe_from`]).
#[derive(Debug)]
pub struct Subscriber {
    tail: Arc<Tail>,
    /// The LSN wanted next.
    next: u64,
    published: watch::Receiver<u64>,
    durable: watch::Receiver<u64>,
    /// What the last read of the log returned, not handed out yet.
    caught_up: VecDeque<Replicated>,
}

impl Subscriber {
    /// The next batch (or snapshot), waiting for it to be published.
    pub async fn next(&mut self) -> Result<Replicated, ReplicationError> {
        loop {
            if let Some(r) = self.caught_up.pop_front() {
                self.next = match &r {
                    Replicated::Batch { lsn, .. } | Replicated::Snapshot { lsn, .. } => lsn + 1,
                };
                return Ok(r);
            }
            if self.next == self.tail.skipped {
                self.next += 1;
            }
            // seen before the look-up: a batch published after it wakes us
            self.published.borrow_and_update();
            match self.tail.lookup(self.next) {
                Lookup::Found(changes) => {
                    let lsn = self.next;
                    self.next += 1;
                    return Ok(Replicated::Batch { lsn, changes });
                }
                Lookup::Ahead => {
                    self.published
                        .changed()
                        .await
                        .map_err(|_| ReplicationError::Closed)?;
                }
                Lookup::Gone => {
                    // the log holds it once it is durable
                    let durable = *self.durable.borrow_and_update();
                    if durable < self.next {
                        self.durable
                            .changed()
                            .await
                            .map_err(|_| ReplicationError::Closed)?;
                        continue;
                    }
                    let log = self.tail.log.clone().ok_or(ReplicationError::NoLog)?;
                    let after = self.next - 1;
                    let read = tokio::task::spawn_blocking(move || log.read(after, durable))
                        .await
                        .map_err(|_| ReplicationError::Reader)??;
                    self.caught_up.extend(read.into_iter().map(|l| match l {
                        Logged::Batch { lsn, changes } => Replicated::Batch {
                            lsn,
                            changes: Arc::new(changes),
                        },
                        Logged::Snapshot { lsn, leases } => Replicated::Snapshot { lsn, leases },
                    }));
                    if self.caught_up.is_empty() {
                        // nothing numbered there (a log of no batch yet)
                        self.next = durable + 1;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Warnings logged while `f` runs.
    fn warnings_of(f: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let w = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_writer(move || w.clone())
            .finish();
        tracing::subscriber::with_default(sub, f);
        let out = buf.0.lock().unwrap().clone();
        String::from_utf8(out).unwrap()
    }

    /// A late acknowledgement is a warning only when a client's ACK was
    /// waiting for it (a backup router writing its partner's leases holds
    /// none, and serves nobody alone).
    #[test]
    fn a_late_partner_warns_only_when_an_ack_was_held() {
        let t0 = Instant::now();
        let late = t0 + Duration::from_secs(1);
        let p = GateKey {
            profile: "p".into(),
            id: 0,
        };
        let opened = |rel: &mut Release<u32>, out: &mut Vec<u32>| {
            let open = ReleaseMsg::Open {
                published: 0,
                gate: p.clone(),
                timeout: Duration::from_millis(300),
                stats: Arc::new(GateStats::default()),
            };
            rel.handle(open, t0, out);
            let published = ReleaseMsg::Published {
                lsn: 1,
                changes: 3,
                at: t0,
            };
            rel.handle(published, t0, out);
        };
        let mut out = Vec::new();
        let mut rel: Release<u32> = Release::new(0);
        opened(&mut rel, &mut out);
        let quiet = warnings_of(|| rel.poll(late, &mut out));
        assert!(rel.gates["p"].degraded);
        assert_eq!(quiet, "", "nothing was held");
        let mut rel: Release<u32> = Release::new(0);
        opened(&mut rel, &mut out);
        rel.handle(ReleaseMsg::Durable(vec![("p".into(), 1, 7)]), t0, &mut out);
        assert!(out.is_empty(), "held for the partner");
        let loud = warnings_of(|| rel.poll(late, &mut out));
        assert_eq!(out, vec![7]);
        assert!(loud.contains("serving alone"), "{loud}");
    }

    /// A gate found late long after its timeout (this router did not run:
    /// a stopped process) drops the ACKs it held since before, counted,
    /// instead of granting leases the partner may have given away since;
    /// found late on time, it lets them out.
    #[test]
    fn a_gate_degraded_after_a_stall_drops_its_stale_acks() {
        let t0 = Instant::now();
        let p = GateKey {
            profile: "p".into(),
            id: 0,
        };
        let held = |published: Instant| {
            let mut rel: Release<u32> = Release::new(0);
            let stats = Arc::new(GateStats::default());
            let mut out = Vec::new();
            let open = ReleaseMsg::Open {
                published: 0,
                gate: p.clone(),
                timeout: Duration::from_millis(300),
                stats: stats.clone(),
            };
            rel.handle(open, published, &mut out);
            let b = ReleaseMsg::Published {
                lsn: 1,
                changes: 1,
                at: published,
            };
            rel.handle(b, published, &mut out);
            rel.handle(
                ReleaseMsg::Durable(vec![("p".into(), 1, 7)]),
                published,
                &mut out,
            );
            assert!(out.is_empty());
            (rel, stats)
        };
        let mut out = Vec::new();
        let (mut rel, stats) = held(t0);
        rel.poll(t0 + Duration::from_secs(8), &mut out);
        assert!(out.is_empty(), "an ACK held across an 8 s stall left");
        assert_eq!(stats.dropped_stale.load(Ordering::Relaxed), 1);
        assert!(stats.degraded.load(Ordering::Relaxed));
        let (mut rel, stats) = held(t0);
        rel.poll(t0 + Duration::from_millis(400), &mut out);
        assert_eq!(out, vec![7]);
        assert_eq!(stats.dropped_stale.load(Ordering::Relaxed), 0);
        // the channel found down after the stall: the same
        let (mut rel, stats) = held(t0);
        let mut out = Vec::new();
        rel.handle(
            ReleaseMsg::Degraded(p.clone(), true),
            t0 + Duration::from_secs(8),
            &mut out,
        );
        assert!(out.is_empty());
        assert_eq!(stats.dropped_stale.load(Ordering::Relaxed), 1);
        // the partner's acknowledgement read only after the stall: the
        // same (it may have kept its own binding of the address)
        let (mut rel, stats) = held(t0);
        let mut out = Vec::new();
        rel.handle(
            ReleaseMsg::Acked(p.clone(), 1),
            t0 + Duration::from_secs(8),
            &mut out,
        );
        assert!(out.is_empty());
        assert_eq!(stats.dropped_stale.load(Ordering::Relaxed), 1);
        // acknowledged in time: sent
        let (mut rel, _) = held(t0);
        rel.handle(
            ReleaseMsg::Acked(p.clone(), 1),
            t0 + Duration::from_millis(20),
            &mut out,
        );
        assert_eq!(out, vec![7]);
    }

    /// A gate kept unacknowledged for long (a partner gone, many batches)
    /// keeps a bounded record of them, and its count of unsent changes
    /// stays exact once the partner acknowledges past the merged ones.
    #[test]
    fn a_long_outage_costs_bounded_memory_and_counts_exactly() {
        let mut rel: Release<u32> = Release::new(0);
        let stats = Arc::new(GateStats::default());
        let t0 = Instant::now();
        let mut out = Vec::new();
        let p = GateKey {
            profile: "p".into(),
            id: 0,
        };
        let open = ReleaseMsg::Open {
            published: 0,
            gate: p.clone(),
            timeout: Duration::from_secs(3600),
            stats: stats.clone(),
        };
        rel.handle(open, t0, &mut out);
        for lsn in 1..=5000 {
            let published = ReleaseMsg::Published {
                lsn,
                changes: 2,
                at: t0,
            };
            rel.handle(published, t0, &mut out);
        }
        assert_eq!(rel.gates["p"].batches.len(), GATE_BATCHES);
        assert_eq!(stats.unsent.load(Ordering::Relaxed), 10_000);
        rel.handle(ReleaseMsg::Acked(p, 4000), t0, &mut out);
        assert_eq!(stats.unsent.load(Ordering::Relaxed), 2000);
        // the timeout runs from the oldest unacknowledged batch
        assert_eq!(rel.deadline(), Some(t0 + Duration::from_secs(3600)));
        rel.poll(t0 + Duration::from_secs(3600), &mut out);
        assert!(stats.degraded.load(Ordering::Relaxed));
        assert_eq!(rel.deadline(), None);
        assert!(out.is_empty());
    }

    /// What a recording stage sent, with the sending thread.
    type Sent = std::sync::mpsc::Receiver<(std::thread::ThreadId, Vec<u32>)>;

    /// A stage whose sends are recorded with the sending thread.
    fn recording_stage() -> (ReleaseTx<u32>, std::thread::JoinHandle<()>, Sent) {
        let (tx, rx) = std::sync::mpsc::channel();
        let tx = Mutex::new(tx);
        let (stage, timer) = ReleaseStage::start(0, move |out: Vec<u32>, _| {
            let _ = tx.lock().unwrap().send((std::thread::current().id(), out));
        })
        .unwrap();
        (stage, timer, rx)
    }

    fn open_and_hold(stage: &ReleaseTx<u32>, timeout: Duration, lsn: u64) -> GateKey {
        let p = GateKey {
            profile: "p".into(),
            id: 0,
        };
        let open = ReleaseMsg::Open {
            published: 0,
            gate: p.clone(),
            timeout,
            stats: Arc::new(GateStats::default()),
        };
        stage.send(open).unwrap();
        let published = ReleaseMsg::Published {
            lsn,
            changes: 1,
            at: Instant::now(),
        };
        stage.send(published).unwrap();
        stage
            .send(ReleaseMsg::Durable(vec![("p".into(), lsn, 7)]))
            .unwrap();
        p
    }

    /// The partner's acknowledgement sends the held ACK from the thread
    /// that brings it, before `send` returns: no hand-off to another
    /// thread in a held DHCPACK's path.
    #[test]
    fn an_acknowledgement_sends_the_held_ack_from_its_own_thread() {
        let (stage, timer, rx) = recording_stage();
        let p = open_and_hold(&stage, Duration::from_secs(3600), 1);
        assert!(rx.try_recv().is_err(), "held for the partner");
        stage.send(ReleaseMsg::Acked(p, 1)).unwrap();
        let (by, acks) = rx.try_recv().expect("sent before acknowledge returned");
        assert_eq!(acks, vec![7]);
        assert_eq!(by, std::thread::current().id());
        // without a gate, durability alone sends at once, here too
        stage
            .send(ReleaseMsg::Durable(vec![("other".into(), 2, 8)]))
            .unwrap();
        assert_eq!(rx.try_recv().unwrap().1, vec![8]);
        stage.send(ReleaseMsg::Stop).unwrap();
        timer.join().unwrap();
    }

    /// The timer thread, asleep without a deadline when the batch is
    /// published, still declares the gate degraded on time and sends the
    /// held ACK; after the stop nothing is taken and what is held stays.
    #[test]
    fn the_timer_degrades_a_silent_gate_and_the_stop_withholds() {
        let (stage, timer, rx) = recording_stage();
        open_and_hold(&stage, Duration::from_millis(50), 1);
        let (by, acks) = rx.recv_timeout(Duration::from_secs(10)).expect("degraded");
        assert_eq!(acks, vec![7]);
        assert_ne!(by, std::thread::current().id());
        let p = open_and_hold(&stage, Duration::from_secs(3600), 2);
        assert!(rx.try_recv().is_err(), "held for the partner");
        stage.send(ReleaseMsg::Stop).unwrap();
        timer.join().unwrap();
        assert!(stage.send(ReleaseMsg::Acked(p, 2)).is_err());
        assert!(rx.try_recv().is_err(), "a held ACK left after the stop");
    }
}
