//! The sync state machine of one remote-backup-service: what crosses the
//! session once the channel hands it over, owned by the service task
//! (`service::run_service`), which feeds it the session's frames, the
//! lease log's batches and the DHCP server's answers.
//!
//! ```text
//!  lease log ──Subscriber──► SyncSession::outgoing ──LeaseBatch{lsn, more}──► peer
//!  peer ──Ack{lsn}──► SyncSession::on_frame ──Gate::acknowledge──► ACK release (dhcp)
//!  peer ──LeaseBatch──► SyncSession::on_frame ──Hooks::apply_peer──► dhcp actor ──durable──► Applied
//!                                                     SyncSession::on_applied ──Ack{lsn}──► peer
//!  session up ──► BatchRequest pages from the peer (pull) ──apply_peer──► BatchDone ──► peer
//!  peer's BatchRequest ──Hooks::peer_leases (once per batch)──► BatchPage ──► peer
//! ```
//!
//! Real time: every batch of the lease log after the position the session
//! started at goes to the peer, reduced to the changes of the pools of the
//! profiles both sides accepted; a batch with none of them is not sent.
//! Leases that came from the peer (origin peer) are not echoed back. A
//! log batch longer than [`MAX_UPDATES`] is split over frames, `more` on all
//! but the last. The peer acknowledges cumulatively once its copy is
//! durable; each profile's [`Gate`](crate::dhcp::replication::Gate) learns the highest LSN every batch up
//! to which the peer holds (a batch not sent counts as held once every
//! batch sent before it is acknowledged), so a DHCPACK of a profile's pool
//! leaves when its lease is durable here *and* there.
//!
//! Batch backup (pull): when the session comes up each side asks the other
//! for its lease table of the accepted profiles, page by page in address
//! order (the next page is asked for as soon as one arrives; the pages are
//! merged in order behind each other), merges each lease (newest lease
//! wins, `dhcp::leases`), and once every page is durable reports its counts
//! with `BatchDone`; the profiles are then synchronized, which lets VRRP
//! preempt. The `batch-backup` rpc invites the peer to run one now. The
//! responder answers from one copy of its table per batch (pointers, taken
//! at the first request): what changes afterwards reaches the peer in real
//! time, since the session subscribed to the log before the first request.
//!
//! Nothing the peer sends can do more than close the session: an
//! undecodable update is refused (counted, reported back with
//! `LeasesRefused`), a lease of a pool outside the accepted profiles is
//! refused, a frame out of place closes the session with a reason.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::wire::{
    Ack, BatchCounts, BatchDone, BatchInvite, BatchPage, BatchRequest, LeaseBatch, LeaseRefusal,
    LeaseUpdate, LeasesRefused, Message, RefusedLease, WireLease, INVITED, MAX_UPDATES,
};
use crate::dhcp::leases::{Change, Lease, Origin};
use crate::dhcp::peer::{Applied, PeerRefusal, PeerUpdate};
use crate::dhcp::replication::{GateStats, Replicated, Subscriber};
use crate::dhcp::server::Out;
use crate::dhcp::Hooks;
use crate::event::{Event, EventSink};
use crate::vrrp::hold::PreemptHolds;

/// Frames sent and not acknowledged at most: beyond, the log waits (the
/// in-memory tail, then the log on disk, keep what is not sent yet).
const MAX_IN_FLIGHT: usize = 256;

/// Batches of the peer being applied at most: beyond, its frames wait in
/// the session's queue.
const MAX_APPLYING: usize = 256;

/// Why a profile's VRRP group may not preempt: the peer's leases are not
/// all here yet.
pub const HOLD_PULLING: &str = "batch backup from the peer in progress";
pub const HOLD_DOWN: &str =
    "the remote-backup-service is not connected: the peer's leases may be missing here";

/// Leases per batch-backup page asked for.
pub const PAGE: u32 = MAX_UPDATES as u32;

/// How long the DHCP server may take to hand its table over for a batch.
const TABLE_TIMEOUT: Duration = Duration::from_secs(10);

/// A profile as the sync needs it: its name, backup-id and the networks of
/// its pools (a removal carries only an address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncProfile {
    pub name: String,
    pub backup_id: u16,
    /// Its VRRP group (interface, vrid).
    pub group: (String, u8),
    pub pools: Vec<String>,
    /// (network, mask) of each pool.
    pub nets: Vec<(u32, u32)>,
}

impl SyncProfile {
    fn has(&self, c: &Change) -> bool {
        match c {
            Change::Upsert(l) => self.pools.contains(&l.pool),
            Change::Delete(ip) => {
                let a = u32::from(*ip);
                self.nets.iter().any(|(n, m)| a & m == *n)
            }
        }
    }
}

/// Whether a change of the local log goes to the peer: a change of the
/// pools of `profiles`, and not a lease learnt from the peer (no echo).
fn for_peer(profiles: &[SyncProfile], c: &Change) -> bool {
    !matches!(c, Change::Upsert(l) if l.origin == Origin::Peer) && profiles.iter().any(|p| p.has(c))
}

/// Synchronization of a profile with the peer (YANG `sync-state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncState {
    #[default]
    NotSynchronized,
    BatchBackup,
    Synchronized,
}

impl SyncState {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncState::NotSynchronized => "not-synchronized",
            SyncState::BatchBackup => "batch-backup",
            SyncState::Synchronized => "synchronized",
        }
    }
}

/// The last batch backup this router served (the peer pulled from it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRecord {
    pub time: SystemTime,
    pub result: &'static str,
    pub leases_sent: u64,
    /// The peer's counts, once it said it was done.
    pub counts: Option<BatchCounts>,
}

/// The last batch backup this router ran (it pulled from the peer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRecord {
    pub time: SystemTime,
    pub result: &'static str,
    pub counts: BatchCounts,
    pub duration: Option<Duration>,
}

/// What the service's and its profiles' state show of the sync; written
/// by the service task, read by `<get>` without waiting on it.
#[derive(Debug, Default)]
pub struct SyncView {
    pub leases_sent: AtomicU64,
    pub leases_received: AtomicU64,
    pub leases_acknowledged: AtomicU64,
    /// Updates of the peer refused here, and of ours refused there.
    pub refused_here: AtomicU64,
    pub refused_there: AtomicU64,
    /// Updates sent and not acknowledged yet.
    pub in_flight: AtomicU64,
    /// Changes of the profiles' pools made while no session synced them
    /// (and those in flight when the last one ended): the peer gets them
    /// with its next batch backup from this router.
    pub unsent_down: AtomicU64,
    inner: Mutex<ViewInner>,
    /// The service's name and where its batch-backup-done goes (set once
    /// by the service task).
    report: std::sync::OnceLock<(String, EventSink)>,
}

#[derive(Debug, Default)]
struct ViewInner {
    served: Option<BatchRecord>,
    pulled: Option<PullRecord>,
    profiles: BTreeMap<String, SyncState>,
    gates: Vec<(String, Arc<GateStats>)>,
    /// Per profile: leases the peer took or confirmed at its last batch
    /// backup from this router.
    in_sync: BTreeMap<String, u64>,
}

/// A profile's sync as `<get>` shows it.
#[derive(Debug, Clone, Default)]
pub struct ProfileView {
    pub state: SyncState,
    /// Serving alone (no session, not accepted), in hot backup, or with
    /// the peer not acknowledging in time.
    pub mode: &'static str,
    pub leases_in_sync: u64,
    pub unsent: u64,
}

impl SyncView {
    /// Report this service's completed batch backups to `sink`.
    pub fn report_to(&self, service: &str, sink: EventSink) {
        let _ = self.report.set((service.to_string(), sink));
    }

    /// The `batch-backup-done` notification.
    fn batch_done(&self, profiles: &[String], counts: &BatchCounts, took: Duration) {
        let Some((service, sink)) = self.report.get() else {
            return;
        };
        let mut e =
            Event::new("/hotlease-remote-backup:batch-backup-done").leaf("service", service);
        for (i, p) in profiles.iter().enumerate() {
            e = e.leaf(format!("profile[{}]", i + 1), p);
        }
        sink.emit(
            e.leaf("received", counts.received)
                .leaf("taken", counts.taken)
                .leaf("sent", counts.sent)
                .leaf("refused", counts.refused)
                .leaf(
                    "duration",
                    u32::try_from(took.as_millis()).unwrap_or(u32::MAX),
                ),
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ViewInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn served(&self) -> Option<BatchRecord> {
        self.lock().served.clone()
    }

    pub fn pulled(&self) -> Option<PullRecord> {
        self.lock().pulled.clone()
    }

    /// Changes the peer has not acknowledged: sent and in flight, plus
    /// what a degraded gate counted.
    pub fn unsent(&self) -> u64 {
        let gates = self
            .lock()
            .gates
            .iter()
            .map(|(_, g)| g.unsent.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        gates.max(self.in_flight.load(Ordering::Relaxed)) + self.unsent_down.load(Ordering::Relaxed)
    }

    /// Count what a batch of the log holds for the peer while no session
    /// syncs it.
    pub fn count_unsent(&self, profiles: &[SyncProfile], r: &Replicated) {
        let n = match r {
            Replicated::Batch { changes, .. } => {
                changes.iter().filter(|c| for_peer(profiles, c)).count()
            }
            Replicated::Snapshot { .. } => 0,
        };
        self.unsent_down.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn profile(&self, name: &str) -> ProfileView {
        let v = self.lock();
        let state = v.profiles.get(name).copied().unwrap_or_default();
        let gate = v.gates.iter().find(|(n, _)| n == name).map(|(_, g)| g);
        let mode = match gate {
            None => "alone",
            Some(g) if g.degraded.load(Ordering::Relaxed) => "degraded",
            Some(_) => "hot",
        };
        ProfileView {
            state,
            mode,
            leases_in_sync: v.in_sync.get(name).copied().unwrap_or(0),
            unsent: gate.map_or(0, |g| g.unsent.load(Ordering::Relaxed)),
        }
    }

    /// Whether every one of `names` is synchronized.
    fn profiles_synchronized(&self, names: &[String]) -> bool {
        let v = self.lock();
        names
            .iter()
            .all(|n| v.profiles.get(n) == Some(&SyncState::Synchronized))
    }

    fn set_state(&self, names: &[String], s: SyncState) {
        let mut v = self.lock();
        for n in names {
            v.profiles.insert(n.clone(), s);
        }
    }
}

/// Why the sync ends the session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Violation(pub String);

/// What a pending application of the peer's updates is for.
#[derive(Debug)]
pub enum Tag {
    /// A real-time frame: acknowledge `lsn` once applied unless `more`.
    Live { lsn: u64, more: bool, n: usize },
    /// A page of our pull `batch`; `last` on its last page.
    Page { batch: u32, last: bool },
}

/// Our pull of the peer's table.
#[derive(Debug)]
struct Pull {
    batch: u32,
    ids: Vec<u16>,
    names: Vec<String>,
    counts: BatchCounts,
    started: SystemTime,
    t0: std::time::Instant,
    /// Our own leases of these profiles, to count what the peer lacked.
    ours: Arc<Vec<Arc<Lease>>>,
    /// The last page's cursor.
    after: Option<Ipv4Addr>,
}

/// The responder's copy of its table for a batch the peer pulls.
#[derive(Debug)]
struct Serving {
    batch: u32,
    leases: Arc<Vec<Arc<Lease>>>,
    sent: u64,
}

/// A batch-backup rpc waiting for the peer's `BatchDone`.
pub type InviteReply = oneshot::Sender<Result<u64, String>>;

/// The state of one session.
pub struct SyncSession {
    hooks: Hooks,
    holds: Option<PreemptHolds>,
    view: Arc<SyncView>,
    tx: mpsc::Sender<Message>,
    /// The profiles both sides accepted.
    profiles: Vec<SyncProfile>,
    names: Arc<[String]>,
    gates: Vec<crate::dhcp::replication::Gate<Out>>,
    /// Sent and not acknowledged: (lsn, more, updates).
    in_flight: VecDeque<(u64, bool, u64)>,
    /// The last LSN the subscriber handed over.
    covered: u64,
    /// Applications of the peer's updates, in order.
    pub applying: VecDeque<(Tag, oneshot::Receiver<Applied>)>,
    pull: Option<Pull>,
    serving: Option<Serving>,
    invites: HashMap<u32, InviteReply>,
    next_batch: u32,
    /// The first pull of this session completed: the peer's leases are
    /// durable here.
    pulled: bool,
    /// The peer's lease clock minus ours (s), measured by the hellos: its
    /// lease times are moved onto our clock by it
    /// (`channel::SessionUp::clock_skew`).
    clock_skew: i64,
}

impl std::fmt::Debug for SyncSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncSession")
            .field("profiles", &self.names)
            .field("in_flight", &self.in_flight.len())
            .field("applying", &self.applying.len())
            .finish()
    }
}

fn names_of(p: &[SyncProfile]) -> Vec<String> {
    p.iter().map(|p| p.name.clone()).collect()
}

impl SyncSession {
    /// A session is up with `profiles` accepted by both sides: subscribe
    /// to the lease log from now on, gate the profiles' ACKs on the peer,
    /// and start pulling the peer's table. `clock_skew`: the peer's clock
    /// minus ours (s). Returns the subscriber the service task polls.
    pub async fn start(
        hooks: Hooks,
        holds: Option<PreemptHolds>,
        view: Arc<SyncView>,
        tx: mpsc::Sender<Message>,
        profiles: Vec<SyncProfile>,
        ack_timeout: Duration,
        clock_skew: i64,
    ) -> (SyncSession, Option<Subscriber>) {
        let names: Arc<[String]> = names_of(&profiles).into();
        let rep = hooks.replication();
        // read before the gates open: a batch published in between is sent
        // and counts as held for the gates (see `ReplicationHandle::gate`)
        let from = rep.published();
        let sub = (!profiles.is_empty()).then(|| rep.subscribe_from(from));
        let gates: Vec<_> = profiles
            .iter()
            .map(|p| rep.gate(&p.name, ack_timeout))
            .collect();
        {
            let mut v = view.lock();
            v.gates = profiles
                .iter()
                .zip(&gates)
                .map(|(p, g)| (p.name.clone(), gate_stats(g)))
                .collect();
            v.profiles.clear();
        }
        let mut s = SyncSession {
            hooks,
            holds,
            view,
            tx,
            names,
            profiles,
            gates,
            in_flight: VecDeque::new(),
            covered: from,
            applying: VecDeque::new(),
            pull: None,
            serving: None,
            invites: HashMap::new(),
            next_batch: 1,
            pulled: false,
            clock_skew,
        };
        s.begin_pull(None).await;
        (s, sub)
    }

    /// Whether the log may hand over another batch (the peer keeps up).
    pub fn wants_batches(&self) -> bool {
        self.in_flight.len() < MAX_IN_FLIGHT && self.tx.capacity() > 0
    }

    /// Whether the peer's frames may be read (its batches are applied in
    /// time).
    pub fn wants_frames(&self) -> bool {
        self.applying.len() < MAX_APPLYING
    }

    fn send(&self, m: Message) -> Result<(), Violation> {
        // the queue holds 1024 frames and batches are sent only while it
        // has room: full means the session is stuck, and its dead timer
        // ends it
        self.tx
            .try_send(m)
            .map_err(|e| Violation(format!("session queue: {e}")))
    }

    // ------------------------------------------------------- outgoing

    /// A batch of the local lease log.
    pub fn outgoing(&mut self, r: Replicated) -> Result<(), Violation> {
        let (lsn, updates) = match r {
            Replicated::Batch { lsn, changes } => {
                let u: Vec<LeaseUpdate> = changes
                    .iter()
                    .filter(|c| for_peer(&self.profiles, c))
                    .filter_map(|c| LeaseUpdate::try_from(c).ok())
                    .collect();
                (lsn, u)
            }
            Replicated::Snapshot { lsn, leases } => {
                // the log was compacted past our position: the leases as of
                // `lsn`, as upserts (what a removal removed is absent; the
                // peer's next batch backup drops it)
                let u = leases
                    .iter()
                    .map(|l| Change::Upsert(l.clone()))
                    .filter(|c| for_peer(&self.profiles, c))
                    .filter_map(|c| LeaseUpdate::try_from(&c).ok())
                    .collect();
                (lsn, u)
            }
        };
        self.covered = lsn;
        if updates.is_empty() {
            // nothing for the peer: held once everything before it is
            self.advance_gates();
            return Ok(());
        }
        let n = updates.len();
        let mut rest = updates;
        loop {
            let tail = rest.split_off(rest.len().min(MAX_UPDATES));
            let more = !tail.is_empty();
            let k = rest.len() as u64;
            self.send(Message::LeaseBatch(LeaseBatch {
                lsn,
                updates: rest,
                more,
            }))?;
            self.in_flight.push_back((lsn, more, k));
            if !more {
                break;
            }
            rest = tail;
        }
        self.view.leases_sent.fetch_add(n as u64, Ordering::Relaxed);
        self.view.in_flight.fetch_add(n as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Tell the gates the highest LSN the peer holds every batch up to.
    fn advance_gates(&self) {
        let held = match self.in_flight.front() {
            Some((lsn, _, _)) => lsn - 1,
            None => self.covered,
        };
        for g in &self.gates {
            g.acknowledge(held);
        }
    }

    /// The peer holds every batch up to `lsn` (it acknowledges a split
    /// batch after its last part only).
    fn on_ack(&mut self, lsn: u64) {
        let mut n = 0;
        while let Some(&(l, _, k)) = self.in_flight.front() {
            if l > lsn {
                break;
            }
            self.in_flight.pop_front();
            n += k;
        }
        self.view
            .leases_acknowledged
            .fetch_add(n, Ordering::Relaxed);
        self.view.in_flight.fetch_sub(n, Ordering::Relaxed);
        self.advance_gates();
    }

    // ------------------------------------------------------- incoming

    /// A frame from the peer.
    pub async fn on_frame(&mut self, m: Message) -> Result<(), Violation> {
        match m {
            Message::LeaseBatch(b) => {
                let n = b.updates.len();
                self.view
                    .leases_received
                    .fetch_add(n as u64, Ordering::Relaxed);
                let (updates, mut bad) = self.decode(b.updates);
                let rx = self.hooks.apply_peer(updates, self.names.clone());
                self.applying.push_back((
                    Tag::Live {
                        lsn: b.lsn,
                        more: b.more,
                        n,
                    },
                    rx,
                ));
                if !bad.is_empty() {
                    self.view
                        .refused_here
                        .fetch_add(bad.len() as u64, Ordering::Relaxed);
                    bad.truncate(MAX_UPDATES);
                    self.send(Message::LeasesRefused(LeasesRefused {
                        lsn: b.lsn,
                        leases: bad,
                    }))?;
                }
            }
            Message::Ack(Ack { lsn }) => self.on_ack(lsn),
            Message::LeasesRefused(r) => {
                self.view
                    .refused_there
                    .fetch_add(r.leases.len() as u64, Ordering::Relaxed);
                warn!(
                    lsn = r.lsn,
                    refused = r.leases.len(),
                    first = ?r.leases.first(),
                    "the peer refused lease updates"
                );
            }
            Message::BatchRequest(r) => self.on_request(r).await?,
            Message::BatchPage(p) => self.on_page(p)?,
            Message::BatchDone(d) => self.on_done(d),
            Message::BatchInvite(BatchInvite { batch }) => {
                if batch & INVITED == 0 {
                    return Err(Violation(format!(
                        "invitation {batch} without the invited bit"
                    )));
                }
                self.begin_pull(Some(batch)).await;
            }
            other => {
                return Err(Violation(format!("unexpected frame {}", kind(&other))));
            }
        }
        Ok(())
    }

    /// The peer's updates as the DHCP server takes them (their times on
    /// our clock), and the ones that do not decode.
    fn decode(&self, updates: Vec<LeaseUpdate>) -> (Vec<PeerUpdate>, Vec<RefusedLease>) {
        let mut ok = Vec::with_capacity(updates.len());
        let mut bad = Vec::new();
        for u in updates {
            let (ip, pool) = match &u {
                LeaseUpdate::Upsert(w) => (w.ip, w.pool.clone()),
                LeaseUpdate::Remove { ip } => (*ip, String::new()),
            };
            let u = match u {
                LeaseUpdate::Upsert(w) => LeaseUpdate::Upsert(w.to_local(self.clock_skew)),
                r => r,
            };
            match Change::try_from(u) {
                Ok(Change::Upsert(l)) => ok.push(PeerUpdate::Upsert(l)),
                Ok(Change::Delete(ip)) => ok.push(PeerUpdate::Remove(ip)),
                Err(_) => bad.push(RefusedLease {
                    ip,
                    pool,
                    reason: LeaseRefusal::Invalid,
                }),
            }
        }
        (ok, bad)
    }

    /// The front application is done (durable here).
    pub fn on_applied(&mut self, tag: Tag, applied: Applied) -> Result<(), Violation> {
        let refused: Vec<RefusedLease> = applied
            .refused
            .iter()
            .take(MAX_UPDATES)
            .map(|(ip, pool, why)| RefusedLease {
                ip: *ip,
                pool: pool.clone(),
                reason: match why {
                    PeerRefusal::UnknownPool => LeaseRefusal::UnknownPool,
                    PeerRefusal::NotInProfile => LeaseRefusal::NotInProfile,
                },
            })
            .collect();
        self.view
            .refused_here
            .fetch_add(applied.refused.len() as u64, Ordering::Relaxed);
        match tag {
            Tag::Live { lsn, more, n } => {
                debug!(lsn, n, taken = applied.taken, "peer batch durable");
                if !refused.is_empty() {
                    self.send(Message::LeasesRefused(LeasesRefused {
                        lsn,
                        leases: refused,
                    }))?;
                }
                if !more {
                    self.send(Message::Ack(Ack { lsn }))?;
                }
            }
            Tag::Page { batch, last } => {
                let Some(p) = self.pull.as_mut().filter(|p| p.batch == batch) else {
                    return Ok(());
                };
                p.counts.taken += applied.taken;
                p.counts.unchanged += applied.unchanged;
                p.counts.sent += applied.kept;
                p.counts.refused += applied.refused.len() as u32;
                if last {
                    self.finish_pull()?;
                }
            }
        }
        Ok(())
    }

    /// The front application will never finish (the DHCP server is gone
    /// or cannot write): nothing more is acknowledged on this session.
    pub fn applied_lost(&mut self) -> Violation {
        Violation("the lease store cannot make the peer's leases durable".into())
    }

    // ------------------------------------------------------- batch backup

    /// Ask the peer for its table of every accepted profile (`batch`: the
    /// number of an invitation, else one of ours).
    async fn begin_pull(&mut self, invited: Option<u32>) {
        if self.profiles.is_empty() {
            return;
        }
        let batch = invited.unwrap_or_else(|| {
            let b = self.next_batch;
            self.next_batch = (self.next_batch + 1) & !INVITED;
            b
        });
        let ours =
            match tokio::time::timeout(TABLE_TIMEOUT, self.hooks.peer_leases(self.names.clone()))
                .await
            {
                Ok(Ok(v)) => Arc::new(v),
                _ => Arc::new(Vec::new()),
            };
        let names = names_of(&self.profiles);
        // an invited batch on a synchronized session keeps the profiles in
        // sync (real time goes on meanwhile): VRRP stays free to preempt
        if !self.view.profiles_synchronized(&names) {
            self.hold(Some(HOLD_PULLING));
        }
        self.view.set_state(&names, SyncState::BatchBackup);
        let ids = self.profiles.iter().map(|p| p.backup_id).collect();
        let pull = Pull {
            batch,
            ids,
            names,
            counts: BatchCounts::default(),
            started: SystemTime::now(),
            t0: std::time::Instant::now(),
            ours,
            after: None,
        };
        info!(batch, profiles = ?pull.names, "batch backup: pulling the peer's leases");
        self.view.lock().pulled = Some(PullRecord {
            time: pull.started,
            result: "in-progress",
            counts: BatchCounts::default(),
            duration: None,
        });
        let req = BatchRequest {
            batch,
            backup_ids: pull.ids.clone(),
            after: None,
            max: PAGE,
        };
        self.pull = Some(pull);
        let _ = self.send(Message::BatchRequest(req));
    }

    fn on_page(&mut self, page: BatchPage) -> Result<(), Violation> {
        let Some(p) = self.pull.as_mut().filter(|p| p.batch == page.batch) else {
            // a page of a pull a newer one replaced: its leases still merge
            // deterministically, but its counts belong to nobody
            debug!(batch = page.batch, "page of a replaced batch dropped");
            return Ok(());
        };
        if page.leases.len() > MAX_UPDATES {
            return Err(Violation(format!("page of {} leases", page.leases.len())));
        }
        let n = page.leases.len() as u32;
        p.counts.received += n;
        self.view
            .leases_received
            .fetch_add(u64::from(n), Ordering::Relaxed);
        // our leases in the page's range the peer lacks: it takes them in
        // its own pull
        let lo = p.ours.partition_point(|l| Some(l.ip) <= p.after);
        let hi = if page.more {
            p.ours.partition_point(|l| l.ip <= page.cursor)
        } else {
            p.ours.len()
        };
        let theirs: std::collections::HashSet<Ipv4Addr> =
            page.leases.iter().map(|l| l.ip).collect();
        p.counts.sent += p.ours[lo.min(hi)..hi]
            .iter()
            .filter(|l| !theirs.contains(&l.ip))
            .count() as u32;
        p.after = Some(page.cursor);
        let batch = p.batch;
        let ids = p.ids.clone();
        let updates: Vec<LeaseUpdate> = page.leases.into_iter().map(LeaseUpdate::Upsert).collect();
        let (updates, bad) = self.decode(updates);
        if let Some(p) = self.pull.as_mut() {
            p.counts.refused += bad.len() as u32;
        }
        let rx = self.hooks.apply_peer(updates, self.names.clone());
        self.applying.push_back((
            Tag::Page {
                batch,
                last: !page.more,
            },
            rx,
        ));
        if page.more {
            self.send(Message::BatchRequest(BatchRequest {
                batch,
                backup_ids: ids,
                after: Some(page.cursor),
                max: PAGE,
            }))?;
        }
        Ok(())
    }

    fn finish_pull(&mut self) -> Result<(), Violation> {
        let Some(p) = self.pull.take() else {
            return Ok(());
        };
        let took = p.t0.elapsed();
        info!(
            batch = p.batch,
            received = p.counts.received,
            taken = p.counts.taken,
            unchanged = p.counts.unchanged,
            ours_newer_or_missing_there = p.counts.sent,
            refused = p.counts.refused,
            ms = took.as_millis() as u64,
            "batch backup done: the peer's leases are durable here"
        );
        self.view.set_state(&p.names, SyncState::Synchronized);
        self.pulled = true;
        // this router holds every lease of the peer: VRRP may preempt
        self.hold(None);
        self.view.lock().pulled = Some(PullRecord {
            time: p.started,
            result: "success",
            counts: p.counts,
            duration: Some(took),
        });
        self.view.batch_done(&p.names, &p.counts, took);
        self.send(Message::BatchDone(BatchDone {
            batch: p.batch,
            counts: p.counts,
        }))
    }

    /// The peer pulls from us: one page of our table.
    async fn on_request(&mut self, r: BatchRequest) -> Result<(), Violation> {
        let fresh = r.after.is_none() || self.serving.as_ref().is_none_or(|s| s.batch != r.batch);
        if fresh {
            let names: Arc<[String]> = self
                .profiles
                .iter()
                .filter(|p| r.backup_ids.contains(&p.backup_id))
                .map(|p| p.name.clone())
                .collect::<Vec<_>>()
                .into();
            let leases =
                match tokio::time::timeout(TABLE_TIMEOUT, self.hooks.peer_leases(names)).await {
                    Ok(Ok(v)) => v,
                    _ => {
                        return Err(Violation(
                            "the lease table could not be read for a batch backup".into(),
                        ))
                    }
                };
            if let Some(old) = self.serving.take() {
                self.record_served(old.sent, "failure", None);
            }
            self.serving = Some(Serving {
                batch: r.batch,
                leases: Arc::new(leases),
                sent: 0,
            });
            self.view.lock().served = Some(BatchRecord {
                time: SystemTime::now(),
                result: "in-progress",
                leases_sent: 0,
                counts: None,
            });
        }
        let Some(s) = self.serving.as_mut() else {
            return Ok(());
        };
        let start = match r.after {
            None => 0,
            Some(a) => s.leases.partition_point(|l| l.ip <= a),
        };
        let max = (r.max as usize).clamp(1, MAX_UPDATES);
        let end = (start + max).min(s.leases.len());
        let leases: Vec<WireLease> = s.leases[start..end]
            .iter()
            .filter_map(|l| WireLease::try_from(&**l).ok())
            .collect();
        let more = end < s.leases.len();
        let cursor = if more {
            s.leases[end - 1].ip
        } else {
            Ipv4Addr::BROADCAST
        };
        let n = leases.len() as u64;
        s.sent += n;
        let sent = s.sent;
        self.view.leases_sent.fetch_add(n, Ordering::Relaxed);
        if let Some(b) = self.view.lock().served.as_mut() {
            b.leases_sent = sent;
        }
        self.send(Message::BatchPage(BatchPage {
            batch: r.batch,
            leases,
            cursor,
            more,
        }))
    }

    fn on_done(&mut self, d: BatchDone) {
        let sent = match self.serving.take() {
            Some(s) if s.batch == d.batch => s.sent,
            other => {
                self.serving = other;
                u64::from(d.counts.received)
            }
        };
        info!(batch = d.batch, sent, counts = ?d.counts, "the peer's batch backup from here is done");
        // the peer holds everything this router had when the batch began;
        // what changed since went in real time
        self.view.unsent_down.store(0, Ordering::Relaxed);
        self.record_served(sent, "success", Some(d.counts));
        {
            let mut v = self.view.lock();
            for p in &self.profiles {
                v.in_sync
                    .insert(p.name.clone(), u64::from(d.counts.received));
            }
        }
        if let Some(reply) = self.invites.remove(&d.batch) {
            let _ = reply.send(Ok(sent));
        }
    }

    fn record_served(&self, sent: u64, result: &'static str, counts: Option<BatchCounts>) {
        let mut v = self.view.lock();
        let time = v.served.as_ref().map_or_else(SystemTime::now, |b| b.time);
        v.served = Some(BatchRecord {
            time,
            result,
            leases_sent: sent,
            counts,
        });
    }

    /// The `batch-backup` rpc: invite the peer to pull from us now.
    pub fn invite(&mut self, reply: InviteReply) {
        let batch = INVITED | self.next_batch;
        self.next_batch = (self.next_batch + 1) & !INVITED;
        match self.send(Message::BatchInvite(BatchInvite { batch })) {
            Ok(()) => {
                self.invites.insert(batch, reply);
            }
            Err(e) => {
                let _ = reply.send(Err(e.0));
            }
        }
    }

    /// The profiles both sides accepted on this session.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The profiles whose leases of the peer are all here: the accepted
    /// ones once the session's first pull completed, none before.
    pub fn reconciled(&self) -> &[String] {
        if self.pulled {
            &self.names
        } else {
            &[]
        }
    }

    /// This router took over `names` from a peer that was master: the peer
    /// stopped advertising, so it is most likely dead and its session only
    /// waits for the dead timer. Those profiles serve alone at once instead
    /// of holding their first ACKs for the ack-timeout; they are hot again
    /// as soon as the peer acknowledges everything (a peer that only
    /// resigned does).
    pub fn took_over(&self, names: &[String]) {
        for (p, g) in self.profiles.iter().zip(&self.gates) {
            if names.contains(&p.name) {
                info!(profile = %p.name, "took over from a master: serving alone until the peer acknowledges");
                g.set_degraded(true);
            }
        }
    }

    /// Hold (or release) preemption of the accepted profiles' groups.
    fn hold(&self, reason: Option<&str>) {
        if let Some(h) = &self.holds {
            for p in &self.profiles {
                h.set(&p.group.0, p.group.1, reason.map(str::to_owned));
            }
        }
    }

    /// The session ended: what was in progress failed.
    pub fn end(mut self) {
        self.hold(Some(HOLD_DOWN));
        let names = names_of(&self.profiles);
        self.view.set_state(&names, SyncState::NotSynchronized);
        if let Some(p) = self.pull.take() {
            self.view.lock().pulled = Some(PullRecord {
                time: p.started,
                result: "failure",
                counts: p.counts,
                duration: None,
            });
        }
        if let Some(s) = self.serving.take() {
            self.record_served(s.sent, "failure", None);
        }
        for (_, r) in self.invites.drain() {
            let _ = r.send(Err(
                "the session went down before the batch backup completed".into(),
            ));
        }
        // what the peer did not acknowledge waits for its next batch backup
        let inflight: u64 = self.in_flight.iter().map(|x| x.2).sum();
        self.view.in_flight.fetch_sub(inflight, Ordering::Relaxed);
        self.view.unsent_down.fetch_add(inflight, Ordering::Relaxed);
        // the gates go: held ACKs leave on durability alone (serve alone)
        self.view.lock().gates.clear();
    }
}

fn gate_stats(g: &crate::dhcp::replication::Gate<Out>) -> Arc<GateStats> {
    g.shared_stats()
}

/// The variant name of a message, for logs.
pub fn kind(m: &Message) -> String {
    let s = format!("{m:?}");
    s.split(['(', ' ', '{']).next().unwrap_or("?").to_owned()
}
