//! The remote-backup-service runtime as the northbound sees it: one
//! [`Channel`] per configured service, started, restarted and stopped by
//! the commits, and its state for `<get>`.
//!
//! ```text
//!  northbound ──prepare/apply──► BackupSubsystem ──spawn / cancel──► service task (one per service)
//!  northbound <get> ──state_xml──► ChannelView::state()                 │ owns the Channel:
//!                                  (a snapshot, never waits)            │ ChannelEvent::{Up, Down},
//!                                                                       │ drains the session,
//!                                                                       ▼ Channel::shutdown at the end
//!  daemon ◄── the task of `start`: ends when every service task has ended after shutdown
//! ```
//!
//! `apply` diffs the old and new services *by name*: a new service gets a
//! channel, a deleted one is stopped (its session closed with
//! `Close(Shutdown)`, so the peer shows that reason), a service whose own
//! configuration changed (peer, source, port, timers, its ssl-policy or
//! that policy's files) is restarted, and every other service keeps its
//! session. A change of the profiles bound to a service (or of their
//! pools) changes its hello ([`Channel::set_hello`]) and renews its
//! session, see below. A restarted
//! service's new channel starts once the old one has released
//! `source:port`.
//!
//! The hello carries, per profile bound to the service, its backup-id,
//! the fingerprint of its bound pools ([`fingerprint`](super::fingerprint))
//! and its role, from its VRRP group ([`BackupSubsystem::follow_vrrp`]).
//! The service task rebuilds the hello whenever a commit or a VRRP
//! transition changes it; a role change also travels on the live session
//! as `Message::Role`, and a change of the profiles or fingerprints ends
//! the live session (the channel reconnects at once), so that both sides
//! judge the new hellos. Each profile shows its role, the peer's role and
//! both sides' verdicts (`peer-check`) in its state.
//!
//! Nobody consumes the sessions yet: the sync actor (lease batches,
//! acknowledgements, batch backup) will own them. Until then the service
//! task keeps each session it is handed and reads it, so that it stays
//! healthy (a session whose owner stops reading is ended by the peer's
//! dead timer, see [`Session`]); keepalives are the channel's own, and
//! every other frame is counted and dropped with a debug line.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use crate::event::{Event, EventSink};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use super::channel::{
    Channel, ChannelConfig, ChannelEvent, ChannelState, ChannelView, Connection, Session, SessionUp,
};
use super::config::{BackupConfig, BackupService};
use super::sync::{InviteReply, SyncProfile, SyncSession, SyncView, Tag, Violation};
use super::tls::TlsPaths;
use super::wire::{Hello, Message, ProfileHello, ProfileRole, ProfileStatus, ProfileVerdict, Role};
use crate::config::{Config, ConfigError, Rpc, RpcFailure, RpcFuture, Subsystem};
use crate::dhcp::peer::Applied;
use crate::dhcp::pool::Half;
use crate::dhcp::replication::{Replicated, Subscriber};
use crate::dhcp::Hooks;
use crate::vrrp::hold::PreemptHolds;
use crate::vrrp::instance::State as VrrpState;
use crate::xml::escape_text;

pub const NS: &str = "urn:hotlease:yang:remote-backup";

/// How long a restarted service waits for its previous channel to let
/// `source:port` go (`Channel::shutdown` takes about a second at most).
const PREVIOUS_STOP: Duration = Duration::from_secs(3);

/// How long the `batch-backup` rpc waits for the peer's batch to be done.
const BATCH_RPC_TIMEOUT: Duration = Duration::from_secs(120);

/// Longest text of a reason or certificate subject shown in the state.
const MAX_TEXT: usize = 512;

/// What a running channel was started from: when it changes, the service
/// is restarted.
#[derive(Debug, Clone, PartialEq)]
struct Spec {
    service: BackupService,
    tls: Option<TlsPaths>,
}

impl Spec {
    fn of(svc: &BackupService, cfg: &BackupConfig) -> Spec {
        let tls = svc
            .ssl_policy
            .as_ref()
            .and_then(|p| cfg.ssl_policies.get(p))
            .map(|p| TlsPaths {
                certificate: p.certificate.clone().into(),
                private_key: p.private_key.clone().into(),
                trusted_ca: p.trusted_ca.clone().map(Into::into),
            });
        Spec {
            service: svc.clone(),
            tls,
        }
    }

    fn channel_config(&self, hello: Hello) -> ChannelConfig {
        let s = &self.service;
        let mut c = ChannelConfig::new(&s.name, s.source, s.peer, s.port, hello);
        c.tls = self.tls.clone();
        c.keepalive_interval = s.keepalive_interval;
        c.dead_time = s.dead_time;
        c
    }
}

/// The role of every VRRP group, by (interface, vrid); a group missing
/// is in initialize.
pub type Roles = BTreeMap<(String, u8), Role>;

fn role_of(s: VrrpState) -> Role {
    match s {
        VrrpState::Initialize => Role::Initialize,
        VrrpState::Master => Role::Master,
        VrrpState::Backup => Role::Backup,
    }
}

fn role_str(r: Role) -> &'static str {
    match r {
        Role::Initialize => "initialize",
        Role::Master => "master",
        Role::Backup => "backup",
    }
}

/// A profile as its service's hello needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ProfileSpec {
    name: String,
    backup_id: u16,
    group: (String, u8),
    fingerprint: u64,
    /// Its pools, and their networks.
    pools: Vec<String>,
    nets: Vec<(u32, u32)>,
}

impl ProfileSpec {
    fn sync(&self) -> SyncProfile {
        SyncProfile {
            name: self.name.clone(),
            backup_id: self.backup_id,
            group: self.group.clone(),
            pools: self.pools.clone(),
            nets: self.nets.clone(),
        }
    }
}

/// The profiles bound to service `name`, by backup-id, with the
/// fingerprints of their pools.
fn profiles_of(name: &str, cfg: &Config) -> Vec<ProfileSpec> {
    let mut v: Vec<ProfileSpec> = cfg
        .backup
        .profiles
        .values()
        .filter(|p| p.service == name)
        .map(|p| ProfileSpec {
            name: p.name.clone(),
            backup_id: p.backup_id,
            group: (p.vrrp_interface.clone(), p.vrid),
            fingerprint: super::fingerprint::of_profile(&cfg.dhcp, &p.name),
            pools: cfg
                .dhcp
                .pools
                .values()
                .filter(|x| x.remote_backup_profile.as_deref() == Some(p.name.as_str()))
                .map(|x| x.name.clone())
                .collect(),
            nets: cfg
                .dhcp
                .pools
                .values()
                .filter(|x| x.remote_backup_profile.as_deref() == Some(p.name.as_str()))
                .map(|x| {
                    let m = u32::from(x.mask);
                    (u32::from(x.network) & m, m)
                })
                .collect(),
        })
        .collect();
    v.sort_by_key(|p| p.backup_id);
    v
}

/// What the verdicts of a session are made on: each profile's backup-id
/// and pool fingerprint.
fn judged(h: &Hello) -> Vec<(u16, u64)> {
    h.profiles
        .iter()
        .map(|p| (p.backup_id, p.fingerprint))
        .collect()
}

/// The hello of a service with these profiles and roles.
fn hello_of(profiles: &[ProfileSpec], roles: &Roles) -> Hello {
    Hello {
        // set by the channel to its source address
        source: std::net::Ipv4Addr::UNSPECIFIED,
        software: env!("CARGO_PKG_VERSION").to_owned(),
        unix_time: 0,
        profiles: profiles
            .iter()
            .map(|p| ProfileHello {
                backup_id: p.backup_id,
                fingerprint: p.fingerprint,
                role: roles.get(&p.group).copied().unwrap_or(Role::Initialize),
            })
            .collect(),
    }
}

/// What the current session of a service says about the peer.
#[derive(Debug, Clone, Default)]
struct Peer {
    /// The peer's profiles (from its hello, roles kept current by its
    /// `Role` messages).
    profiles: Vec<ProfileHello>,
    /// The peer's verdicts on our profiles, and ours on its.
    theirs: Vec<ProfileVerdict>,
    ours: Vec<ProfileVerdict>,
}

type PeerCell = Arc<std::sync::Mutex<Option<Peer>>>;

fn set_peer(cell: &PeerCell, f: impl FnOnce(&mut Option<Peer>)) {
    f(&mut cell.lock().unwrap_or_else(|p| p.into_inner()));
}

/// A configured service and its task.
#[derive(Debug)]
struct Service {
    spec: Spec,
    profiles: watch::Sender<Vec<ProfileSpec>>,
    peer: PeerCell,
    /// Set by the task once its channel runs (a restarted service first
    /// waits for its previous channel to stop).
    view: Arc<OnceLock<ChannelView>>,
    /// When the service was (re)configured: `since` until the channel runs.
    created: SystemTime,
    sync: Arc<SyncView>,
    cmds: mpsc::Sender<ServiceCmd>,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Drop for Service {
    /// A deleted or replaced service stops its channel (gracefully: the
    /// task closes the session with `Close(Shutdown)`).
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The backup subsystem: the remote-backup-services' channels.
#[derive(Debug)]
pub struct BackupSubsystem {
    services: BTreeMap<String, Service>,
    shutdown: CancellationToken,
    /// Held by every service task (and by this subsystem), so that the
    /// task of [`start`] knows when they have all ended.
    done: mpsc::Sender<()>,
    /// The configured profiles, for their state.
    profiles: Vec<super::config::BackupProfile>,
    /// The VRRP groups' roles ([`BackupSubsystem::follow_vrrp`]).
    roles: watch::Sender<Roles>,
    hooks: Hooks,
    /// VRRP's preemption holds ([`BackupSubsystem::hold_preemption`]).
    holds: Option<PreemptHolds>,
    /// The services as the metrics endpoint reads them.
    metrics: MetricsReader,
    /// Where the services report their sessions ([`BackupSubsystem::report_events`]).
    events: EventSink,
}

/// One service's channel and sync figures, as the metrics endpoint reads
/// them.
type MetricsSource = (String, Arc<OnceLock<ChannelView>>, Arc<SyncView>);

/// What the metrics endpoint reads of the services (`crate::metrics`):
/// their list, refreshed by each commit, whose channel state and sync
/// figures are read without the service tasks. A std mutex, held to copy
/// the list.
#[derive(Debug, Clone, Default)]
pub struct MetricsReader {
    services: Arc<std::sync::Mutex<Vec<MetricsSource>>>,
}

/// One service's figures for a scrape.
#[derive(Debug, Clone)]
pub struct ServiceMetrics {
    pub name: String,
    pub connection: Connection,
    pub leases_sent: u64,
    pub leases_acknowledged: u64,
    pub unsent: u64,
    /// How long the last batch backup received from the peer took.
    pub last_batch_duration: Option<Duration>,
}

impl MetricsReader {
    pub fn read(&self) -> Vec<ServiceMetrics> {
        use std::sync::atomic::Ordering::Relaxed;
        let services = self
            .services
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        services
            .into_iter()
            .map(|(name, view, sync)| ServiceMetrics {
                name,
                connection: view
                    .get()
                    .map_or(Connection::Down, |v| v.state().connection),
                leases_sent: sync.leases_sent.load(Relaxed),
                leases_acknowledged: sync.leases_acknowledged.load(Relaxed),
                unsent: sync.unsent(),
                last_batch_duration: sync.pulled().and_then(|p| p.duration),
            })
            .collect()
    }
}

/// Start the backup runtime (no service runs until a commit configures
/// one). The task ends once `shutdown` is cancelled and every service
/// task has closed its session; the daemon supervises and awaits it.
pub fn start(shutdown: CancellationToken, hooks: Hooks) -> (BackupSubsystem, JoinHandle<()>) {
    let (done, mut all_done) = mpsc::channel::<()>(1);
    let token = shutdown.clone();
    let task = tokio::spawn(async move {
        token.cancelled().await;
        // None once the subsystem and every service task let go of `done`
        let _ = all_done.recv().await;
    });
    (
        BackupSubsystem {
            services: BTreeMap::new(),
            shutdown,
            done,
            profiles: Vec::new(),
            roles: watch::channel(Roles::new()).0,
            hooks,
            holds: None,
            metrics: MetricsReader::default(),
            events: EventSink::discard(),
        },
        task,
    )
}

impl BackupSubsystem {
    /// The services as the metrics endpoint reads them.
    pub fn metrics(&self) -> MetricsReader {
        self.metrics.clone()
    }

    /// Report each service's session going up or down as the
    /// `channel-state-change` notification (services configured later).
    pub fn report_events(&mut self, sink: EventSink) {
        self.events = sink;
    }

    /// Follow the VRRP groups' states: each profile's role is its group's.
    /// `states` reads every group's state now; `events` wakes us on each
    /// transition (a lagging receiver just reads the states again).
    pub fn follow_vrrp(
        &self,
        mut events: tokio::sync::broadcast::Receiver<crate::vrrp::events::StateChange>,
        states: impl Fn() -> BTreeMap<(String, u8), VrrpState> + Send + Sync + 'static,
    ) {
        let roles = self.roles.clone();
        let stop = self.shutdown.clone();
        let read =
            move || -> Roles { states().into_iter().map(|(k, s)| (k, role_of(s))).collect() };
        roles.send_replace(read());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    ev = events.recv() => {
                        if let Err(tokio::sync::broadcast::error::RecvError::Closed) = ev {
                            break;
                        }
                        let now = read();
                        roles.send_if_modified(|r| {
                            let changed = *r != now;
                            *r = now;
                            changed
                        });
                    }
                }
            }
        });
    }

    /// Hold each profile's VRRP group from preempting until this router
    /// holds every lease of the peer (its batch backup from the peer is
    /// complete); services configured from now on use `holds`.
    pub fn hold_preemption(&mut self, holds: PreemptHolds) {
        self.holds = Some(holds);
    }

    fn spawn(
        &self,
        spec: Spec,
        profiles: Vec<ProfileSpec>,
        previous: Option<JoinHandle<()>>,
    ) -> Service {
        let (profiles_tx, profiles_rx) = watch::channel(profiles);
        let peer = PeerCell::default();
        let view = Arc::new(OnceLock::new());
        let sync = Arc::new(SyncView::default());
        sync.report_to(&spec.service.name, self.events.clone());
        let (cmds, cmds_rx) = mpsc::channel(8);
        let stop = self.shutdown.child_token();
        let span = tracing::info_span!("backup_service", service = %spec.service.name);
        let service = run_service(Task {
            spec: spec.clone(),
            profiles: profiles_rx,
            roles: self.roles.subscribe(),
            peer: peer.clone(),
            view: view.clone(),
            sync_view: sync.clone(),
            hooks: self.hooks.clone(),
            holds: self.holds.clone(),
            cmds: cmds_rx,
            stop: stop.clone(),
            previous,
            events: self.events.clone(),
            _done: self.done.clone(),
        })
        .instrument(span);
        // on the DHCP actor's thread: a partner's batch reaches the actor,
        // and its acknowledgement the held DHCPACKs, with no thread
        // hand-off (under load the ACK delay of the pair fell from 2.8-3.4
        // to 0.7-0.8 ms at 1,000/s, see BENCHMARKS.md)
        let task = self.hooks.spawn(service);
        Service {
            spec,
            profiles: profiles_tx,
            peer,
            view,
            created: SystemTime::now(),
            sync,
            cmds,
            stop,
            task: Some(task),
        }
    }
}

/// What a service task is told besides its configuration.
#[derive(Debug)]
pub(crate) enum ServiceCmd {
    /// The `batch-backup` rpc.
    BatchBackup(InviteReply),
}

/// What a service task works with.
struct Task {
    spec: Spec,
    profiles: watch::Receiver<Vec<ProfileSpec>>,
    roles: watch::Receiver<Roles>,
    peer: PeerCell,
    view: Arc<OnceLock<ChannelView>>,
    sync_view: Arc<SyncView>,
    hooks: Hooks,
    holds: Option<PreemptHolds>,
    cmds: mpsc::Receiver<ServiceCmd>,
    stop: CancellationToken,
    previous: Option<JoinHandle<()>>,
    events: EventSink,
    _done: mpsc::Sender<()>,
}

/// The profiles both sides accepted on this session.
fn accepted(ours: &[ProfileSpec], up: &SessionUp) -> Vec<SyncProfile> {
    let ok = |v: &[ProfileVerdict], id: u16| {
        v.iter()
            .any(|v| v.backup_id == id && v.status == ProfileStatus::Accepted)
    };
    ours.iter()
        .filter(|p| ok(&up.peer_verdicts, p.backup_id) && ok(&up.our_verdicts, p.backup_id))
        .map(ProfileSpec::sync)
        .collect()
}

/// The profiles of this service the session does not sync (not accepted
/// by both sides) keep their groups held, with the reason in plain words.
fn hold_refused(
    holds: Option<&PreemptHolds>,
    ours: &[ProfileSpec],
    agreed: &[SyncProfile],
    peer: &PeerCell,
) {
    let Some(h) = holds else { return };
    let peer = peer.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for p in ours
        .iter()
        .filter(|p| !agreed.iter().any(|a| a.name == p.name))
    {
        let (_, reason) = peer_check(p.backup_id, p.fingerprint, peer.as_ref());
        h.set(&p.group.0, p.group.1, Some(reason));
    }
}

/// Split brain: a profile that is master here while its peer may be
/// master too (no session syncs it, or the peer says it is master), or
/// may have been (the session's first pull has not brought the peer's
/// leases in yet: a partner that served during a stall here, say), takes
/// new addresses from this router's half first; the router with the lower
/// source address takes the even addresses. Otherwise no split.
fn split(
    hooks: &Hooks,
    spec: &Spec,
    ours: &[ProfileSpec],
    roles: &Roles,
    synced: &[String],
    peer: &PeerCell,
) {
    let half = if spec.service.source < spec.service.peer {
        Half::Even
    } else {
        Half::Odd
    };
    let peer = peer.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for p in ours {
        let master = roles.get(&p.group) == Some(&Role::Master);
        let peer_master = peer.as_ref().is_some_and(|x| {
            x.profiles
                .iter()
                .any(|h| h.backup_id == p.backup_id && h.role == Role::Master)
        });
        let alone = !synced.contains(&p.name) || peer_master;
        hooks.own_half(&p.name, half);
        hooks.set_split(&p.name, (master && alone).then_some(half));
    }
}

/// The profiles that became master here (from `old` to `new` hello) while
/// the peer's last word was that it was master of them.
fn took_over(ours: &[ProfileSpec], old: &Hello, new: &Hello, peer: &PeerCell) -> Vec<String> {
    let peer = peer.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let peer_master = |id: u16| {
        peer.as_ref().is_some_and(|p| {
            p.profiles
                .iter()
                .any(|h| h.backup_id == id && h.role == Role::Master)
        })
    };
    old.profiles
        .iter()
        .zip(&new.profiles)
        .filter(|(o, n)| {
            o.role != Role::Master && n.role == Role::Master && peer_master(n.backup_id)
        })
        .filter_map(|(_, n)| ours.iter().find(|p| p.backup_id == n.backup_id))
        .map(|p| p.name.clone())
        .collect()
}

/// Open or close each profile's pools for serving: they serve while the
/// profile's VRRP group is master here.
fn serve(hooks: &Hooks, ours: &[ProfileSpec], roles: &Roles) {
    for p in ours {
        let master = roles.get(&p.group) == Some(&Role::Master);
        hooks.set_serving(&p.name, master);
    }
}

/// A `channel-state-change` of `spec`'s service.
fn channel_event(spec: &Spec, state: &str, reason: Option<&str>) -> Event {
    let e = Event::new("/hotlease-remote-backup:channel-state-change")
        .leaf("service", &spec.service.name)
        .leaf("state", state)
        .leaf("peer", spec.service.peer);
    match reason {
        Some(r) => e.leaf("reason", r),
        None => e,
    }
}

/// One service: run its channel until the service is deleted, replaced or
/// the daemon stops; run the sync on each session it hands over.
async fn run_service(t: Task) {
    let Task {
        spec,
        mut profiles,
        mut roles,
        peer,
        view,
        sync_view,
        hooks,
        holds,
        mut cmds,
        stop,
        previous,
        events: sink,
        _done,
    } = t;
    if let Some(prev) = previous {
        // the previous channel of this service releases source:port first
        let _ = tokio::time::timeout(PREVIOUS_STOP, prev).await;
    }
    if stop.is_cancelled() {
        return;
    }
    let ack_timeout = spec.service.ack_timeout;
    let mut ours = profiles.borrow_and_update().clone();
    let mut hello = hello_of(&ours, &roles.borrow_and_update());
    serve(&hooks, &ours, &roles.borrow());
    let (channel, mut events) = Channel::spawn(spec.channel_config(hello.clone()));
    let rep = hooks.replication();
    let _ = view.set(channel.view());
    let mut session: Option<(u64, Session)> = None;
    // the session whose channel-state-change up was sent
    let mut announced: Option<u64> = None;
    let mut sync: Option<SyncSession> = None;
    // counts what the peer misses until a session takes it over
    let mut sub: Option<Subscriber> = Some(rep.subscribe_from(rep.published()));
    let mut profiles_open = true;
    let mut roles_open = true;
    let mut cmds_open = true;
    // ends the session's sync (what was in progress failed)
    // (the subscriber stays: it counts what the peer misses meanwhile)
    let end = |sync: &mut Option<SyncSession>, peer: &PeerCell| {
        if let Some(s) = sync.take() {
            s.end();
        }
        set_peer(peer, |p| *p = None);
    };
    let mut last_split = None;
    // set by every branch that may change the split (not by the lease
    // traffic, the hot path)
    let mut recheck = true;
    loop {
        // the split follows roles, the session and the peer's roles
        if recheck {
            let now = (
                roles.borrow().clone(),
                sync.as_ref().map(|s| s.reconciled().to_vec()),
                peer.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_ref()
                    .map(|p| p.profiles.clone()),
                ours.clone(),
            );
            if last_split.as_ref() != Some(&now) {
                split(
                    &hooks,
                    &spec,
                    &ours,
                    &now.0,
                    now.1.as_deref().unwrap_or(&[]),
                    &peer,
                );
                last_split = Some(now);
            }
            recheck = false;
        }
        // without a session the log is only counted (unsent updates)
        let wants_batches = sync.as_ref().is_none_or(SyncSession::wants_batches);
        let wants_frames = sync.as_ref().is_none_or(SyncSession::wants_frames);
        tokio::select! {
            _ = stop.cancelled() => break,
            changed = profiles.changed(), if profiles_open => match changed {
                Ok(()) => {
                    recheck = true;
                    ours = profiles.borrow_and_update().clone();
                    serve(&hooks, &ours, &roles.borrow());
                    let next = hello_of(&ours, &roles.borrow());
                    if judged(&next) != judged(&hello) && session.is_some() {
                        // the verdicts of both sides are made on the hellos:
                        // a new session exchanges the new ones
                        info!("profiles or pool fingerprints changed: renewing the session");
                        session = None;
                        end(&mut sync, &peer);
                    recheck = true;
                    }
                    hello = next;
                    channel.set_hello(hello.clone());
                }
                Err(_) => profiles_open = false,
            },
            changed = roles.changed(), if roles_open => match changed {
                Ok(()) => {
                    recheck = true;
                    serve(&hooks, &ours, &roles.borrow_and_update());
                    let next = hello_of(&ours, &roles.borrow());
                    if let Some(s) = &sync {
                        let taken = took_over(&ours, &hello, &next, &peer);
                        if !taken.is_empty() {
                            s.took_over(&taken);
                        }
                    }
                    if let Some((_, s)) = &session {
                        for (old, new) in hello.profiles.iter().zip(&next.profiles) {
                            if old.role != new.role {
                                let m = Message::Role(ProfileRole {
                                    backup_id: new.backup_id,
                                    role: new.role,
                                });
                                // a full queue: the session is stuck and its
                                // dead timer ends it; the next hello has the role
                                let _ = s.sender().try_send(m);
                            }
                        }
                    }
                    if next != hello {
                        hello = next;
                        channel.set_hello(hello.clone());
                    }
                }
                Err(_) => roles_open = false,
            },
            cmd = cmds.recv(), if cmds_open => match cmd {
                Some(ServiceCmd::BatchBackup(reply)) => match sync.as_mut() {
                    Some(s) if !s.names().is_empty() => s.invite(reply),
                    Some(_) => {
                        let _ = reply.send(Err("no remote-backup-profile of this service is accepted by both routers".into()));
                    }
                    None => {
                        let _ = reply.send(Err("the remote-backup-service is not connected".into()));
                    }
                },
                None => cmds_open = false,
            },
            ev = events.recv() => match ev {
                Some(ChannelEvent::Up(up)) => {
                    recheck = true;
                    end(&mut sync, &peer);
                    let up = *up;
                    if judged(&up.our_hello) != judged(&hello) {
                        // a commit changed the profiles while the hellos
                        // were exchanged: the verdicts were made on the
                        // old ones; dropping the session ends it, and the
                        // channel connects again with the new hello
                        info!(id = up.id, "profiles or pool fingerprints changed during the handshake: renewing the session");
                        session = None;
                        continue;
                    }
                    if announced.take().is_some() {
                        // its own Down has not arrived yet
                        sink.emit(channel_event(&spec, "down", Some("replaced by a new session")));
                    }
                    sink.emit(channel_event(&spec, "up", None));
                    announced = Some(up.id);
                    let agreed = accepted(&ours, &up);
                    info!(
                        id = up.id,
                        peer_software = %up.peer_hello.software,
                        accepted = ?agreed.iter().map(|p| &p.name).collect::<Vec<_>>(),
                        "session up: syncing"
                    );
                    set_peer(&peer, |p| {
                        *p = Some(Peer {
                            profiles: up.peer_hello.profiles.clone(),
                            theirs: up.peer_verdicts.clone(),
                            ours: up.our_verdicts.clone(),
                        })
                    });
                    // a transition between the hello the channel sent and
                    // this hand-over would be lost: the roles now, once more
                    for p in &hello.profiles {
                        let m = Message::Role(ProfileRole {
                            backup_id: p.backup_id,
                            role: p.role,
                        });
                        let _ = up.session.sender().try_send(m);
                    }
                    hold_refused(holds.as_ref(), &ours, &agreed, &peer);
                    let (s, log) = SyncSession::start(
                        hooks.clone(),
                        holds.clone(),
                        sync_view.clone(),
                        up.session.sender(),
                        agreed,
                        ack_timeout,
                        up.clock_skew,
                    )
                    .await;
                    sync = Some(s);
                    if log.is_some() {
                        sub = log;
                    }
                    session = Some((up.id, up.session));
                }
                Some(ChannelEvent::Down { id, reason }) => {
                    debug!(id, %reason, "session gone");
                    // (a session this task ended itself is already None
                    // here; the notification waits for the channel's word)
                    if announced == Some(id) {
                        announced = None;
                        sink.emit(channel_event(&spec, "down", Some(&reason.to_string())));
                    }
                    if session.as_ref().is_some_and(|(s, _)| *s == id) {
                        session = None;
                        end(&mut sync, &peer);
                    recheck = true;
                    }
                }
                None => break,
            },
            r = next_batch(&mut sub), if wants_batches => {
                let r = match (r, sync.as_mut()) {
                    (Ok(r), Some(s)) => Some(s.outgoing(r)),
                    (Ok(r), None) => {
                        let profiles: Vec<SyncProfile> = ours.iter().map(ProfileSpec::sync).collect();
                        sync_view.count_unsent(&profiles, &r);
                        None
                    }
                    (Err(e), None) => {
                        warn!(error = %e, "lease log: unsent updates are no longer counted");
                        sub = None;
                        None
                    }
                    (Err(e), Some(_)) => Some(Err(Violation(format!("lease log: {e}")))),
                };
                if let Some(Err(v)) = r {
                    warn!(reason = %v, "ending the session");
                    session = None;
                    end(&mut sync, &peer);
                    recheck = true;
                }
            },
            a = next_applied(&mut sync) => {
                // the last page of a pull may end a split
                recheck |= matches!(a, Some((Tag::Page { last: true, .. }, _)));
                let r = match (sync.as_mut(), a) {
                    (Some(s), Some((tag, Ok(applied)))) => s.on_applied(tag, applied),
                    (Some(s), Some((_, Err(_)))) => Err(s.applied_lost()),
                    _ => Ok(()),
                };
                if let Err(v) = r {
                    warn!(reason = %v, "ending the session");
                    session = None;
                    end(&mut sync, &peer);
                    recheck = true;
                }
            },
            m = next_frame(&mut session), if wants_frames => match m {
                Some(Message::Role(r)) => {
                    recheck = true;
                    set_peer(&peer, |p| {
                        if let Some(p) = p {
                            for x in p.profiles.iter_mut().filter(|x| x.backup_id == r.backup_id) {
                                x.role = r.role;
                            }
                        }
                    })
                }
                Some(m) => {
                    let r = match sync.as_mut() {
                        Some(s) => s.on_frame(m).await,
                        None => Ok(()),
                    };
                    if let Err(v) = r {
                        warn!(reason = %v, "the peer broke the protocol: ending the session");
                        session = None;
                        end(&mut sync, &peer);
                    recheck = true;
                    }
                }
                // the session ended; its Down event follows
                None => {
                    session = None;
                    end(&mut sync, &peer);
                    recheck = true;
                }
            },
        }
    }
    drop(session);
    end(&mut sync, &peer);
    channel.shutdown().await;
}

/// The next frame of the session, if there is one (pending otherwise).
async fn next_frame(session: &mut Option<(u64, Session)>) -> Option<Message> {
    match session {
        Some((_, s)) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// The next batch of the lease log (pending without a subscriber).
async fn next_batch(
    sub: &mut Option<Subscriber>,
) -> Result<Replicated, crate::dhcp::replication::ReplicationError> {
    match sub {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

/// The front application of the peer's updates, once done (pending
/// while there is none).
async fn next_applied(
    sync: &mut Option<SyncSession>,
) -> Option<(Tag, Result<Applied, oneshot::error::RecvError>)> {
    let Some(s) = sync.as_mut() else {
        return std::future::pending().await;
    };
    let Some((_, rx)) = s.applying.front_mut() else {
        return std::future::pending().await;
    };
    let r = rx.await;
    let (tag, _) = s.applying.pop_front()?;
    Some((tag, r))
}

impl Subsystem for BackupSubsystem {
    fn name(&self) -> &'static str {
        "backup"
    }

    /// Nothing is refused here: an address not (yet) configured on the
    /// router, a busy port or unreadable TLS files are retried with backoff
    /// and shown in the service's state (`last-failure-reason`), since they
    /// can be fixed outside this configuration (an address added later, a
    /// certificate installed) and checking them now would be a guess.
    fn prepare(&mut self, _old: &Config, _new: &Config) -> Result<(), Vec<ConfigError>> {
        Ok(())
    }

    fn apply(&mut self, _old: &Config, new: &Config) {
        let cfg = &new.backup;
        self.profiles = cfg.profiles.values().cloned().collect();
        // deleted services stop (Service::drop)
        self.services
            .retain(|name, _| cfg.services.contains_key(name));
        for (name, svc) in &cfg.services {
            let spec = Spec::of(svc, cfg);
            let profiles = profiles_of(name, new);
            match self.services.get_mut(name) {
                Some(s) if s.spec == spec => {
                    // profiles changed at most: the hello says so
                    s.profiles.send_if_modified(|p| {
                        let changed = *p != profiles;
                        *p = profiles;
                        changed
                    });
                }
                existing => {
                    let previous = existing.and_then(|s| {
                        info!(service = %name, "configuration changed: restarting the channel");
                        s.stop.cancel();
                        s.task.take()
                    });
                    let s = self.spawn(spec, profiles, previous);
                    self.services.insert(name.clone(), s);
                }
            }
        }
        *self
            .metrics
            .services
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = self
            .services
            .iter()
            .map(|(n, s)| (n.clone(), s.view.clone(), s.sync.clone()))
            .collect();
    }

    /// `batch-backup`: the peer pulls this router's leases of the
    /// service's profiles now; answers with how many were sent once the
    /// peer has made them durable.
    fn call(&mut self, rpc: &Rpc) -> Option<RpcFuture> {
        let Rpc::BatchBackup {
            service,
            service_type,
        } = rpc;
        let failure = |element, message: String| -> Option<RpcFuture> {
            Some(Box::pin(std::future::ready(Err(RpcFailure {
                element,
                message,
            }))))
        };
        if service_type != "dhcp-server" {
            return failure(
                Some("service-type"),
                format!("unknown service-type '{service_type}'"),
            );
        }
        let Some(s) = self.services.get(service) else {
            return failure(
                Some("service"),
                format!("no remote-backup-service '{service}'"),
            );
        };
        let cmds = s.cmds.clone();
        Some(Box::pin(async move {
            let failed = |m: &str| RpcFailure {
                element: None,
                message: m.to_owned(),
            };
            let (tx, rx) = oneshot::channel();
            cmds.send(ServiceCmd::BatchBackup(tx))
                .await
                .map_err(|_| failed("the remote-backup-service is stopping"))?;
            match tokio::time::timeout(BATCH_RPC_TIMEOUT, rx).await {
                Ok(Ok(Ok(sent))) => Ok(format!(
                    "<leases-sent xmlns=\"{NS}\">{}</leases-sent>",
                    sent.min(u64::from(u32::MAX))
                )),
                Ok(Ok(Err(m))) => Err(failed(&m)),
                Ok(Err(_)) => Err(failed("the remote-backup-service stopped")),
                Err(_) => Err(failed("the peer did not complete the batch backup in time")),
            }
        }))
    }

    fn namespaces(&self) -> &'static [&'static str] {
        &[NS]
    }

    fn state_xml(&self) -> String {
        let mut x = String::new();
        for (name, s) in &self.services {
            let _ = write!(
                x,
                "<remote-backup-service xmlns=\"{NS}\"><name>{}</name><state>",
                escape_text(name)
            );
            match s.view.get() {
                Some(v) => render_state(&mut x, &v.state()),
                None => render_not_started(&mut x, s),
            }
            render_sync(&mut x, &s.sync);
            x.push_str("</state></remote-backup-service>");
        }
        let roles = self.roles.borrow().clone();
        for p in &self.profiles {
            let svc = self.services.get(&p.service);
            let spec = svc.and_then(|s| {
                s.profiles
                    .borrow()
                    .iter()
                    .find(|x| x.name == p.name)
                    .cloned()
            });
            let peer = svc.and_then(|s| s.peer.lock().unwrap_or_else(|e| e.into_inner()).clone());
            let sync = svc.map(|s| s.sync.profile(&p.name));
            let _ = write!(
                x,
                "<remote-backup-profile xmlns=\"{NS}\"><name>{}</name><state>",
                escape_text(&p.name)
            );
            render_profile(
                &mut x,
                p.backup_id,
                &(p.vrrp_interface.clone(), p.vrid),
                spec.as_ref(),
                peer.as_ref(),
                &roles,
            );
            let hold = self
                .holds
                .as_ref()
                .map(|h| h.get(&p.vrrp_interface, p.vrid));
            if let Some(v) = sync {
                let _ = write!(
                    x,
                    "<sync-state>{}</sync-state><leases-in-sync>{}</leases-in-sync>",
                    v.state.as_str(),
                    v.leases_in_sync.min(u64::from(u32::MAX)),
                );
                match hold {
                    Some(Some(r)) => {
                        let _ = write!(
                            x,
                            "<preempt-hold>true</preempt-hold><preempt-hold-reason>{}</preempt-hold-reason>",
                            text(&r)
                        );
                    }
                    Some(None) => x.push_str("<preempt-hold>false</preempt-hold>"),
                    None => {}
                }
                let _ = write!(
                    x,
                    "<backup-mode>{}</backup-mode><unsent-updates>{}</unsent-updates>",
                    v.mode, v.unsent
                );
            }
            if let Some(h) = self.hooks.split_half(&p.name) {
                let _ = write!(x, "<split-brain-half>{}</split-brain-half>", h.as_str());
            }
            x.push_str("</state></remote-backup-profile>");
        }
        x
    }
}

/// A profile's verdict with the peer, and why in plain words.
fn peer_check(backup_id: u16, fp: u64, peer: Option<&Peer>) -> (&'static str, String) {
    let Some(peer) = peer else {
        return (
            "not-connected",
            "the remote-backup-service is not connected".into(),
        );
    };
    let status = |v: &[ProfileVerdict]| {
        v.iter()
            .find(|v| v.backup_id == backup_id)
            .map(|v| v.status)
    };
    let theirs = peer.profiles.iter().find(|p| p.backup_id == backup_id);
    let mismatch = || {
        let there = theirs.map_or_else(
            || "unknown".to_owned(),
            |t| format!("{:016x}", t.fingerprint),
        );
        (
            "fingerprint-mismatch",
            format!(
                "the pools bound to this profile differ from the peer's \
                 (fingerprint {fp:016x} here, {there} there): this profile does not sync"
            ),
        )
    };
    match (status(&peer.theirs), status(&peer.ours)) {
        (Some(ProfileStatus::FingerprintMismatch), _) | (_, Some(ProfileStatus::FingerprintMismatch)) => mismatch(),
        (Some(ProfileStatus::UnknownBackupId), _) | (_, None) => (
            "unknown-backup-id",
            format!("the peer has no profile with backup-id {backup_id} on this remote-backup-service: this profile does not sync"),
        ),
        _ => ("accepted", "the peer has this backup-id with the same pool configuration".into()),
    }
}

fn render_profile(
    x: &mut String,
    backup_id: u16,
    group: &(String, u8),
    spec: Option<&ProfileSpec>,
    peer: Option<&Peer>,
    roles: &Roles,
) {
    let role = roles.get(group).copied().unwrap_or(Role::Initialize);
    let _ = write!(x, "<role>{}</role>", role_str(role));
    if let Some(r) = peer.and_then(|p| p.profiles.iter().find(|p| p.backup_id == backup_id)) {
        let _ = write!(x, "<peer-role>{}</peer-role>", role_str(r.role));
    }
    let Some(spec) = spec else { return };
    let _ = write!(x, "<fingerprint>{:016x}</fingerprint>", spec.fingerprint);
    let (check, reason) = peer_check(backup_id, spec.fingerprint, peer);
    let _ = write!(
        x,
        "<peer-check>{check}</peer-check><peer-check-reason>{}</peer-check-reason>",
        text(&reason)
    );
}

fn connection_str(c: Connection) -> &'static str {
    match c {
        Connection::Down => "down",
        Connection::Connecting => "connecting",
        Connection::Connected => "connected",
    }
}

fn date_time(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Text from outside (a peer's close reason, an OS error, a certificate
/// subject) made safe for a YANG string in XML 1.0: characters XML cannot
/// carry and control characters become '?', and it is cut at
/// [`MAX_TEXT`] characters, so that no peer can make libyang refuse the
/// state.
fn text(s: &str) -> String {
    let c: String = s
        .chars()
        .take(MAX_TEXT)
        .map(|c| {
            let xml = matches!(c, '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}');
            if xml && !c.is_control() {
                c
            } else {
                '?'
            }
        })
        .collect();
    escape_text(&c)
}

fn render_state(x: &mut String, st: &ChannelState) {
    let _ = write!(
        x,
        "<connection>{}</connection><since>{}</since><peer-address>{}</peer-address>\
         <source-address>{}</source-address><port>{}</port><tls>{}</tls>",
        connection_str(st.connection),
        date_time(st.since),
        st.peer,
        st.source,
        st.port,
        st.tls
    );
    if let Some(s) = &st.peer_certificate {
        let _ = write!(
            x,
            "<peer-certificate-subject>{}</peer-certificate-subject>",
            text(s)
        );
    }
    if let Some(t) = st.last_up {
        let _ = write!(x, "<last-up>{}</last-up>", date_time(t));
    }
    if let Some(t) = st.last_down {
        let _ = write!(x, "<last-down>{}</last-down>", date_time(t));
    }
    if let Some(r) = &st.last_down_reason {
        let _ = write!(
            x,
            "<last-down-reason>{}</last-down-reason>",
            text(&r.to_string())
        );
    }
    if let Some((t, r)) = &st.last_failure {
        let _ = write!(
            x,
            "<last-failure>{}</last-failure><last-failure-reason>{}</last-failure-reason>",
            date_time(*t),
            text(&r.to_string())
        );
    }
    if let (Connection::Connected, Some(rtt)) = (st.connection, st.rtt) {
        let us = u32::try_from(rtt.as_micros()).unwrap_or(u32::MAX);
        let _ = write!(x, "<round-trip-time>{us}</round-trip-time>");
    }
    if let (Connection::Connected, Some(skew)) = (st.connection, st.clock_skew) {
        let _ = write!(x, "<peer-clock-skew>{skew}</peer-clock-skew>");
    }
    let c = &st.counters;
    let _ = write!(
        x,
        "<sessions-up>{}</sessions-up><connections-refused>{}</connections-refused>\
         <frames-sent>{}</frames-sent><frames-received>{}</frames-received>\
         <bytes-sent>{}</bytes-sent><bytes-received>{}</bytes-received>\
         <undecodable-frames>{}</undecodable-frames>",
        c.sessions_up,
        c.refused_connections,
        c.frames_out,
        c.frames_in,
        c.bytes_out,
        c.bytes_in,
        c.undecodable_frames
    );
}

fn counts_xml(x: &mut String, c: &super::wire::BatchCounts) {
    let _ = write!(
        x,
        "<leases-taken>{}</leases-taken><leases-unchanged>{}</leases-unchanged>\
         <leases-kept>{}</leases-kept><leases-refused>{}</leases-refused>",
        c.taken, c.unchanged, c.sent, c.refused
    );
}

/// The service's replication figures and its last batch backups.
fn render_sync(x: &mut String, v: &SyncView) {
    use std::sync::atomic::Ordering::Relaxed;
    let _ = write!(
        x,
        "<leases-sent>{}</leases-sent><leases-received>{}</leases-received>\
         <leases-acknowledged>{}</leases-acknowledged><unsent-updates>{}</unsent-updates>\
         <leases-refused-here>{}</leases-refused-here>\
         <leases-refused-by-peer>{}</leases-refused-by-peer>",
        v.leases_sent.load(Relaxed),
        v.leases_received.load(Relaxed),
        v.leases_acknowledged.load(Relaxed),
        v.unsent(),
        v.refused_here.load(Relaxed),
        v.refused_there.load(Relaxed),
    );
    if let Some(b) = v.served() {
        let _ = write!(
            x,
            "<last-batch-backup><time>{}</time><result>{}</result><leases-sent>{}</leases-sent>",
            date_time(b.time),
            b.result,
            b.leases_sent.min(u64::from(u32::MAX))
        );
        if let Some(c) = &b.counts {
            counts_xml(x, c);
        }
        x.push_str("</last-batch-backup>");
    }
    if let Some(p) = v.pulled() {
        let _ = write!(
            x,
            "<last-batch-received><time>{}</time><result>{}</result>\
             <leases-received>{}</leases-received>",
            date_time(p.time),
            p.result,
            p.counts.received
        );
        counts_xml(x, &p.counts);
        if let Some(d) = p.duration {
            let _ = write!(
                x,
                "<duration>{}</duration>",
                u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
            );
        }
        x.push_str("</last-batch-received>");
    }
}

/// A restarted service whose previous channel is still stopping.
fn render_not_started(x: &mut String, s: &Service) {
    let svc = &s.spec.service;
    let _ = write!(
        x,
        "<connection>down</connection><since>{}</since><peer-address>{}</peer-address>\
         <source-address>{}</source-address><port>{}</port><tls>{}</tls>",
        date_time(s.created),
        svc.peer,
        svc.source,
        svc.port,
        s.spec.tls.is_some()
    );
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "sync_tests.rs"]
mod sync_tests;
