//! The VRRP runtime: one state machine per configured (interface, vrid),
//! driven by the committed configuration.
//!
//! ```text
//!  northbound ──apply: Command::Apply(groups)──► VRRP actor (owns every Instance)
//!      ▲ state_xml reads Snapshot (Arc<Mutex>)      │  ▲ Inbound (decoded packets)
//!      │                                            │  └── reader task per interface (network.rs)
//!      └──────────── snapshot updates ◄─────────────┤  ▲ IfaceEvent
//!                                                   │  └── netlink monitor task (host.rs)
//!                                                   ├──► tx socket per interface (adverts)
//!                                                   ├──► host task: VIPs, gratuitous ARP
//!                                                   └──► broadcast: StateChange (events.rs)
//! ```
//! The actor and its tasks run on a `vrrp` thread with its own
//! single-threaded runtime, so that NETCONF load never delays a timer.
//! The actor diffs configuration by key: a priority, interval or address
//! change updates the running instance (a master stays master); only a
//! version change restarts a group. On shutdown (the daemon's cancellation
//! token) every master resigns with priority 0 and removes its addresses
//! before the actor returns.
//!
//! `config` holds the typed configuration of the groups (read from the
//! YANG tree); refusals in `prepare` are `config::ConfigError`s.
//!
//! `hold` holds the preemption of the groups that remote-backup-profiles
//! follow until the hot backup releases them ([`Vrrp::preempt_holds`]):
//! `apply` records which groups are followed, the backup subsystem says
//! which are released, and the actor, woken by a `Notify`, hands each
//! group's hold to its state machine.
//!
//! `track` lowers the priority of the groups that remote-backup-profiles
//! with a DHCP server follow while the lease store cannot write
//! ([`Vrrp::track_store`]): the actor watches the store's health and
//! hands each tracked group its state.

pub mod config;
pub mod events;
pub mod hold;
pub mod host;
pub mod instance;
pub mod network;
pub mod packet;
pub mod timer;
pub mod track;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{broadcast, mpsc, oneshot, watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, info_span, warn, Instrument};

use crate::bootstrap::VrrpSettings;
use crate::config::{Config, ConfigError};
use crate::event::{Event, EventSink};
use crate::xml::escape_text;
use config::{ChecksumMode, VrrpGroup, VrrpVersion};
use events::StateChange;
use hold::{Holds, PreemptHolds};
use host::{AbortOnDrop, HostCmd, Link};
use instance::{Action, Instance, Params, Reason, State, Stats};
use network::Inbound;
use packet::{ChecksumForm, DecodeError, Version};
use track::Tracks;

/// A group's key: (interface, vrid).
pub type Key = (String, u8);

/// Operational state of one group, as `<get>` shows it.
#[derive(Debug, Clone)]
pub struct GroupState {
    pub state: State,
    pub master_address: Option<Ipv4Addr>,
    pub last_change: Option<String>,
    pub discontinuity: String,
    /// The priority the group runs with (see `Instance::priority`).
    pub effective_priority: u8,
    pub stats: Stats,
}

/// What `<get>` reads: written by the actor and by `apply`, read by the
/// northbound actor. A std mutex, held only to copy or update a few
/// counters and never across an `.await`.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub groups: BTreeMap<Key, GroupState>,
    pub discontinuity: String,
    pub vrid_errors: u64,
    pub malformed: u64,
    /// Preemption holds (see `hold`).
    pub holds: Holds,
    /// Tracked objects (see `track`).
    pub tracks: Tracks,
}

fn now_text() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn fresh_state(priority: u8) -> GroupState {
    GroupState {
        state: State::Initialize,
        master_address: None,
        last_change: None,
        discontinuity: now_text(),
        effective_priority: priority,
        stats: Stats::default(),
    }
}

/// The namespace of `hotlease-vrrp`.
pub const NS: &str = "urn:hotlease:yang:vrrp";

enum Command {
    Apply(BTreeMap<Key, VrrpGroup>),
    /// Follow the lease store's health: `Some(error)` while it cannot write.
    TrackStore(watch::Receiver<Option<String>>),
}

/// The subsystem the northbound drives (see `config::Subsystem`).
#[derive(Debug)]
pub struct Vrrp {
    enabled: bool,
    /// The first `prepare` is the boot: a missing capability is then
    /// logged rather than refused, so that the daemon still starts and can
    /// be reconfigured.
    booted: bool,
    commands: mpsc::UnboundedSender<Command>,
    snapshot: Arc<Mutex<Snapshot>>,
    events: broadcast::Sender<StateChange>,
    /// Wakes the actor when the preemption holds changed.
    holds_changed: Arc<Notify>,
}

impl Vrrp {
    /// Spawn the actor (unless `enabled` is false: then groups are only
    /// stored and reported as `initialize`). The returned task ends after
    /// `shutdown` fires and every master has resigned.
    pub fn start(
        settings: &VrrpSettings,
        shutdown: CancellationToken,
    ) -> (Vrrp, tokio::task::JoinHandle<()>) {
        let enabled = settings.enabled;
        let (commands, rx) = mpsc::unbounded_channel();
        let snapshot = Arc::new(Mutex::new(Snapshot {
            discontinuity: now_text(),
            ..Default::default()
        }));
        let events = events::channel();
        let holds_changed = Arc::new(Notify::new());
        let task = if enabled {
            Self::spawn_thread(
                snapshot.clone(),
                events.clone(),
                holds_changed.clone(),
                rx,
                shutdown,
                settings.realtime_priority,
            )
        } else {
            info!("vrrp runtime disabled by the bootstrap file: groups are stored, not run");
            // lives as long as a running actor would: the daemon supervises it
            tokio::spawn(async move { shutdown.cancelled().await })
        };
        let vrrp = Vrrp {
            enabled,
            booted: false,
            commands,
            snapshot,
            events,
            holds_changed,
        };
        (vrrp, task)
    }

    /// Run the actor and its I/O tasks on a thread of their own with a
    /// single-threaded runtime: the protocol's timers (10 ms intervals
    /// allowed) then never wait behind NETCONF work, such as a libyang
    /// validation of a large commit occupying the shared runtime's workers.
    fn spawn_thread(
        snapshot: Arc<Mutex<Snapshot>>,
        events: broadcast::Sender<StateChange>,
        holds_changed: Arc<Notify>,
        rx: mpsc::UnboundedReceiver<Command>,
        shutdown: CancellationToken,
        realtime_priority: u8,
    ) -> tokio::task::JoinHandle<()> {
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("vrrp".into())
            .spawn(move || {
                if realtime_priority > 0 {
                    // Reset on fork: threads the runtime starts (its blocking
                    // pool) are not protocol work and run normally.
                    match crate::sched::realtime_self(realtime_priority) {
                        Ok(()) => info!(priority = realtime_priority, "vrrp thread runs SCHED_RR"),
                        // Info, not a warning: a sandbox that forbids real-time
                        // scheduling (systemd RestrictRealtime=) chose so.
                        Err(e) => info!(error = %e, "vrrp thread keeps the normal scheduler"),
                    }
                }
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(
                        async move {
                            let actor = Actor::new(snapshot, events, holds_changed);
                            actor.run(rx, shutdown).await;
                        }
                        .instrument(info_span!("vrrp")),
                    ),
                    Err(e) => error!(error = %e, "cannot start the vrrp runtime: no group runs"),
                }
                let _ = done_tx.send(());
            });
        if let Err(e) = spawned {
            error!(error = %e, "cannot start the vrrp thread: no group runs");
        }
        // Resolves when the thread is done (or could not start).
        tokio::spawn(async move {
            let _ = done_rx.await;
        })
    }

    /// Follow the state changes of every group.
    pub fn subscribe(&self) -> broadcast::Receiver<StateChange> {
        self.events.subscribe()
    }

    /// Report every state change as the `state-change` notification, from
    /// a task of the caller's runtime (not the VRRP thread) that ends with
    /// `shutdown`; a burst beyond the broadcast's room is logged as lost.
    pub fn report_events(&self, sink: EventSink, shutdown: CancellationToken) {
        let mut rx = self.subscribe();
        tokio::spawn(async move {
            loop {
                let change = tokio::select! {
                    c = rx.recv() => c,
                    _ = shutdown.cancelled() => return,
                };
                match change {
                    Ok(c) => sink.emit(state_change_event(&c)),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        warn!(lost = n, "state-change notifications lost in a burst")
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }

    /// A reader of every configured group's state now, for subsystems
    /// that follow the groups: read it at start and after each event of
    /// [`Vrrp::subscribe`] (the snapshot is updated before the event is
    /// sent, and a lagging subscriber loses events, not states).
    pub fn state_reader(&self) -> impl Fn() -> BTreeMap<Key, State> + Send + Sync + 'static {
        let snapshot = self.snapshot.clone();
        move || {
            let snap = snapshot.lock().unwrap_or_else(|p| p.into_inner());
            snap.groups
                .iter()
                .map(|(k, g)| (k.clone(), g.state))
                .collect()
        }
    }

    /// A reader of every configured group's state and master transitions
    /// now, for the metrics endpoint (the snapshot's lock is held to copy
    /// them).
    pub fn metrics_reader(&self) -> impl Fn() -> Vec<(Key, State, u64)> + Send + Sync + 'static {
        let snapshot = self.snapshot.clone();
        move || {
            let snap = snapshot.lock().unwrap_or_else(|p| p.into_inner());
            snap.groups
                .iter()
                .map(|(k, g)| (k.clone(), g.state, g.stats.master_transitions))
                .collect()
        }
    }

    /// The handle with which the hot backup holds and releases the
    /// preemption of the groups its profiles follow (see `hold`).
    pub fn preempt_holds(&self) -> PreemptHolds {
        PreemptHolds {
            snapshot: self.snapshot.clone(),
            changed: self.holds_changed.clone(),
        }
    }

    /// Track the DHCP server's lease store (see `track`): `store` says
    /// `Some(error)` while it cannot write, `None` while it works.
    pub fn track_store(&self, store: watch::Receiver<Option<String>>) {
        if self.enabled {
            let _ = self.commands.send(Command::TrackStore(store));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Snapshot> {
        self.snapshot.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn group_path(key: &Key) -> String {
    format!(
        "/vrrp:vrrp/vrrp:group[vrrp:interface={}][vrrp:vrid='{}']",
        crate::yang::xpath_literal(&key.0),
        key.1
    )
}

impl crate::config::Subsystem for Vrrp {
    fn name(&self) -> &'static str {
        "vrrp"
    }

    fn prepare(&mut self, old: &Config, new: &Config) -> Result<(), Vec<ConfigError>> {
        let booting = !self.booted;
        self.booted = true;
        let mut errors = Vec::new();
        if self.enabled {
            let changed: Vec<&Key> = new
                .vrrp
                .iter()
                .filter(|(k, g)| old.vrrp.get(*k) != Some(*g))
                .map(|(k, _)| k)
                .collect();
            if !changed.is_empty() {
                if let Err(why) = host::check_capabilities() {
                    for key in changed {
                        let msg = format!("group {}/{} cannot run: {why}", key.0, key.1);
                        if booting {
                            error!("{msg}");
                        } else {
                            errors.push(
                                ConfigError::refused(group_path(key), msg)
                                    .with_app_tag("vrrp-not-permitted"),
                            );
                        }
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn apply(&mut self, _old: &Config, new: &Config) {
        {
            // Keep the snapshot's keys equal to the configuration's at all
            // times, so <get> never shows state for a deleted group.
            let mut snap = self.lock();
            snap.groups.retain(|k, _| new.vrrp.contains_key(k));
            for (k, g) in &new.vrrp {
                let s = snap
                    .groups
                    .entry(k.clone())
                    .or_insert_with(|| fresh_state(g.priority));
                if s.state == State::Initialize {
                    s.effective_priority = g.priority;
                }
            }
            // Before the actor hears of a new group: it starts held.
            snap.holds.set_bound(
                new.backup
                    .profiles
                    .values()
                    .map(|p| (p.vrrp_interface.clone(), p.vrid))
                    .collect(),
            );
            snap.tracks.set_bound(
                new.backup
                    .profiles
                    .values()
                    .filter(|p| p.dhcp_server)
                    .map(|p| (p.vrrp_interface.clone(), p.vrid))
                    .collect(),
            );
        }
        if self.enabled {
            let _ = self.commands.send(Command::Apply(new.vrrp.clone()));
        }
    }

    fn namespaces(&self) -> &'static [&'static str] {
        &[NS]
    }

    fn state_xml(&self) -> String {
        let snap = self.lock();
        if snap.groups.is_empty() {
            return String::new();
        }
        let mut x = format!("<vrrp xmlns=\"{NS}\">");
        for ((ifname, vrid), g) in &snap.groups {
            x += &format!(
                "<group><interface>{}</interface><vrid>{vrid}</vrid><state>{}</state>",
                escape_text(ifname),
                g.state.as_str()
            );
            if let Some(m) = g.master_address {
                x += &format!("<master-address>{m}</master-address>");
            }
            if let Some(t) = &g.last_change {
                x += &format!("<last-change>{t}</last-change>");
            }
            match snap.holds.get(&(ifname.clone(), *vrid)) {
                Some(why) => {
                    x += &format!(
                        "<preempt-hold>true</preempt-hold><preempt-hold-reason>{}</preempt-hold-reason>",
                        escape_text(&why)
                    )
                }
                None => x += "<preempt-hold>false</preempt-hold>",
            }
            x += &format!(
                "<effective-priority>{}</effective-priority>",
                g.effective_priority
            );
            match snap.tracks.get(&(ifname.clone(), *vrid)) {
                Some(why) => {
                    x += &format!(
                        "<tracked-down>true</tracked-down><tracked-down-reason>{}</tracked-down-reason>",
                        escape_text(&why)
                    )
                }
                None => x += "<tracked-down>false</tracked-down>",
            }
            let s = &g.stats;
            x += &format!(
                "<statistics><discontinuity-time>{}</discontinuity-time>\
                 <adverts-sent>{}</adverts-sent><adverts-received>{}</adverts-received>\
                 <master-transitions>{}</master-transitions><bad-packets>{}</bad-packets>\
                 <ttl-errors>{}</ttl-errors><checksum-errors>{}</checksum-errors>\
                 <version-errors>{}</version-errors><interval-errors>{}</interval-errors>\
                 <address-list-errors>{}</address-list-errors><length-errors>{}</length-errors>\
                 <type-errors>{}</type-errors><authentication-errors>{}</authentication-errors>\
                 <priority-zero-sent>{}</priority-zero-sent>\
                 <priority-zero-received>{}</priority-zero-received>\
                 <tracked-down-transitions>{}</tracked-down-transitions></statistics></group>",
                g.discontinuity,
                s.adverts_sent,
                s.adverts_received,
                s.master_transitions,
                s.bad_packets(),
                s.ttl_errors,
                s.checksum_errors,
                s.version_errors,
                s.interval_errors,
                s.address_list_errors,
                s.length_errors,
                s.type_errors,
                s.auth_errors,
                s.priority_zero_sent,
                s.priority_zero_received,
                s.tracked_down,
            );
        }
        x += &format!(
            "<statistics><discontinuity-time>{}</discontinuity-time><vrid-errors>{}</vrid-errors>\
             <malformed-packets>{}</malformed-packets></statistics></vrrp>",
            snap.discontinuity, snap.vrid_errors, snap.malformed
        );
        x
    }
}

/// Typed configuration → state machine parameters.
fn params(g: &VrrpGroup) -> Params {
    Params {
        vrid: g.vrid,
        version: match g.version {
            VrrpVersion::V2 => Version::V2,
            VrrpVersion::V3 => Version::V3,
        },
        priority: g.priority,
        preempt: g.preempt,
        preempt_delay: Duration::from_secs(u64::from(g.preempt_delay_s)),
        advert_interval: Duration::from_millis(u64::from(g.advertise_interval_ms)),
        addresses: g.virtual_ips.clone(),
        checksum: match g.checksum_mode {
            ChecksumMode::PseudoHeader => ChecksumForm::PseudoHeader,
            ChecksumMode::Rfc9568 => ChecksumForm::Plain,
        },
    }
}

struct Group {
    cfg: VrrpGroup,
    inst: Instance,
    /// The macvlan carrying the virtual MAC (use-virtual-mac), once made.
    vmac: Option<String>,
    /// Where the virtual addresses were added: (interface, index).
    vips_at: Option<(String, u32)>,
    /// Drop kinds already logged at warn level (then debug only).
    logged: HashSet<&'static str>,
}

struct Iface {
    /// A virtual MAC interface: a send socket only, no group of its own.
    vmac: bool,
    link: Option<Link>,
    tx: Option<socket2::Socket>,
    _reader: Option<AbortOnDrop<()>>,
    /// Index the sockets were opened for.
    index: u32,
    open_error: Option<String>,
}

struct Actor {
    groups: BTreeMap<Key, Group>,
    ifaces: BTreeMap<String, Iface>,
    snapshot: Arc<Mutex<Snapshot>>,
    events: broadcast::Sender<StateChange>,
    host: mpsc::UnboundedSender<HostCmd>,
    _host_task: AbortOnDrop<()>,
    watch: watch::Sender<BTreeSet<String>>,
    _monitor: AbortOnDrop<()>,
    iface_rx: mpsc::UnboundedReceiver<host::IfaceEvent>,
    inbound_tx: mpsc::Sender<Inbound>,
    inbound_rx: mpsc::Receiver<Inbound>,
    timer: timer::Timer,
    holds_changed: Arc<Notify>,
    /// The lease store's health (`Vrrp::track_store`), once given.
    store: Option<watch::Receiver<Option<String>>>,
}

impl Actor {
    fn new(
        snapshot: Arc<Mutex<Snapshot>>,
        events: broadcast::Sender<StateChange>,
        holds_changed: Arc<Notify>,
    ) -> Actor {
        let (host, host_rx) = mpsc::unbounded_channel();
        let host_task = tokio::spawn(
            async move {
                if let Err(e) = host::run(host_rx).await {
                    error!(error = %e, "vrrp host task stopped: virtual addresses are not managed");
                }
            }
            .instrument(info_span!("vrrp-host")),
        );
        let (watch, watch_rx) = watch::channel(BTreeSet::new());
        let (iface_tx, iface_rx) = mpsc::unbounded_channel();
        let monitor = tokio::spawn(
            async move {
                if let Err(e) = host::monitor(watch_rx, iface_tx).await {
                    error!(error = %e, "vrrp interface monitor stopped: groups cannot start");
                }
            }
            .instrument(info_span!("vrrp-monitor")),
        );
        let (inbound_tx, inbound_rx) = mpsc::channel(1024);
        Actor {
            groups: BTreeMap::new(),
            ifaces: BTreeMap::new(),
            snapshot,
            events,
            host,
            _host_task: AbortOnDrop(host_task),
            watch,
            _monitor: AbortOnDrop(monitor),
            iface_rx,
            inbound_tx,
            inbound_rx,
            timer: timer::Timer::new(),
            holds_changed,
            store: None,
        }
    }

    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        shutdown: CancellationToken,
    ) {
        loop {
            let deadline = self
                .groups
                .values()
                .filter_map(|g| g.inst.next_deadline())
                .min();
            self.timer.set(deadline);
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                // Packets before timers: an advertisement that arrived in
                // time must reset the master down timer before it fires.
                Some((ifname, decoded)) = self.inbound_rx.recv() => {
                    self.inbound(&ifname, decoded);
                }
                _ = self.timer.expired() => self.timers(),
                cmd = commands.recv() => match cmd {
                    Some(Command::Apply(groups)) => self.apply(groups),
                    Some(Command::TrackStore(store)) => {
                        self.store = Some(store);
                        self.store_changed();
                    }
                    None => break,
                },
                Some((name, link)) = self.iface_rx.recv() => self.iface_event(name, link),
                _ = self.holds_changed.notified() => self.refresh_holds(Instant::now()),
                alive = store_changed(&mut self.store) => {
                    if alive {
                        self.store_changed();
                    } else {
                        // the DHCP server is gone (shutdown): nothing more to track
                        self.store = None;
                    }
                }
            }
        }
        self.stop().await;
    }

    /// Resign every group, then wait (bounded) for the host task to have
    /// removed the addresses.
    async fn stop(&mut self) {
        let keys: Vec<Key> = self.groups.keys().cloned().collect();
        for key in keys {
            self.shutdown_group(&key);
            self.drop_vmac(&key);
        }
        let (done, wait) = oneshot::channel();
        if self.host.send(HostCmd::Flush(done)).is_ok()
            && tokio::time::timeout(Duration::from_secs(2), wait)
                .await
                .is_err()
        {
            warn!("virtual addresses not all removed within 2 s");
        }
        info!("vrrp stopped");
    }

    /// Interfaces the actor needs: the groups' and their macvlans.
    fn interface_names(&self) -> BTreeSet<String> {
        self.groups
            .iter()
            .flat_map(|((i, _), g)| std::iter::once(i.clone()).chain(g.vmac.clone()))
            .collect()
    }

    /// Remove a group's macvlan (after its shutdown).
    fn drop_vmac(&mut self, key: &Key) {
        if let Some(name) = self.groups.get_mut(key).and_then(|g| g.vmac.take()) {
            self.ifaces.remove(&name);
            let _ = self.host.send(HostCmd::DeleteVmac { name });
            self.publish_watch();
        }
    }

    fn publish_watch(&self) {
        let names = self.interface_names();
        self.watch.send_if_modified(|w| {
            if *w != names {
                *w = names;
                true
            } else {
                false
            }
        });
    }

    fn apply(&mut self, new: BTreeMap<Key, VrrpGroup>) {
        let now = Instant::now();
        let removed: Vec<Key> = self
            .groups
            .keys()
            .filter(|k| !new.contains_key(*k))
            .cloned()
            .collect();
        for key in removed {
            info!(ifname = %key.0, vrid = key.1, "group removed");
            self.shutdown_group(&key);
            self.drop_vmac(&key);
            self.groups.remove(&key);
        }
        for (key, cfg) in new {
            match self.groups.get_mut(&key) {
                None => {
                    info!(ifname = %key.0, vrid = key.1, priority = cfg.priority, "group added");
                    let mut inst = Instance::new(params(&cfg));
                    inst.set_hold(now, self.hold_of(&key));
                    inst.set_track(now, self.track_of(&key));
                    self.groups.insert(
                        key.clone(),
                        Group {
                            cfg,
                            inst,
                            vmac: None,
                            vips_at: None,
                            logged: HashSet::new(),
                        },
                    );
                    self.ifaces.entry(key.0.clone()).or_insert(Iface {
                        vmac: false,
                        link: None,
                        tx: None,
                        _reader: None,
                        index: 0,
                        open_error: None,
                    });
                    self.try_start(&key, now);
                }
                Some(g) if g.cfg == cfg => {}
                Some(g) => {
                    let restart = g.cfg.version != cfg.version
                        || g.cfg.use_virtual_mac != cfg.use_virtual_mac;
                    info!(ifname = %key.0, vrid = key.1, restart, "group changed");
                    g.cfg = cfg;
                    let p = params(&g.cfg);
                    if restart {
                        self.shutdown_group(&key);
                        self.drop_vmac(&key);
                        if let Some(g) = self.groups.get_mut(&key) {
                            let stats = std::mem::take(&mut g.inst.stats);
                            let hold = g.inst.preempt_hold().map(str::to_string);
                            let track = g.inst.tracked_down().map(str::to_string);
                            g.inst = Instance::new(p);
                            g.inst.set_hold(now, hold);
                            g.inst.set_track(now, track);
                            g.inst.stats = stats;
                        }
                        self.try_start(&key, now);
                    } else {
                        let actions = g.inst.update(now, p);
                        self.perform(&key, actions);
                        // an owner-ship change needs a restart to be seen
                        let owner_now = self.owner(&key);
                        if let Some(g) = self.groups.get(&key) {
                            if g.inst.state() != State::Initialize && owner_now != g.inst.is_owner()
                            {
                                self.shutdown_group(&key);
                                self.try_start(&key, now);
                            }
                        }
                    }
                }
            }
        }
        let wanted = self.interface_names();
        self.ifaces.retain(|name, _| wanted.contains(name));
        self.publish_watch();
        // profiles added or removed for groups that did not change
        self.refresh_holds(now);
        self.refresh_tracks(now);
        self.sync_all();
    }

    /// Why a group's tracked object is down now, when it is.
    fn track_of(&self, key: &Key) -> Option<String> {
        let snap = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
        snap.tracks.get(key)
    }

    /// The lease store's health changed: note it, and hand every tracked
    /// group its state.
    fn store_changed(&mut self) {
        let Some(store) = self.store.as_mut() else {
            return;
        };
        let failure = store.borrow_and_update().clone();
        {
            let mut snap = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
            snap.tracks.set_store(failure);
        }
        self.refresh_tracks(Instant::now());
    }

    /// What the snapshot says of each configured group (its track, its
    /// hold), read under one lock.
    fn per_group(
        &self,
        of: impl Fn(&Snapshot, &Key) -> Option<String>,
    ) -> Vec<(Key, Option<String>)> {
        let snap = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
        self.groups
            .keys()
            .map(|k| (k.clone(), of(&snap, k)))
            .collect()
    }

    /// Hand every group the state of its tracked object.
    fn refresh_tracks(&mut self, now: Instant) {
        for (key, track) in self.per_group(|snap, k| snap.tracks.get(k)) {
            let Some(g) = self.groups.get_mut(&key) else {
                continue;
            };
            if g.inst.tracked_down().is_some() == track.is_some() {
                continue;
            }
            let state = g.inst.state().as_str();
            match &track {
                Some(why) => {
                    warn!(ifname = %key.0, vrid = key.1, state, reason = %why, priority = instance::TRACKED_PRIORITY, "tracked object down: priority lowered, a master resigns")
                }
                None => {
                    info!(ifname = %key.0, vrid = key.1, state, priority = g.inst.params().priority, "tracked object up: configured priority again")
                }
            }
            let actions = g.inst.set_track(now, track);
            self.perform(&key, actions);
        }
    }

    /// The preemption hold a group must run with now.
    fn hold_of(&self, key: &Key) -> Option<String> {
        let snap = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
        snap.holds.get(key)
    }

    /// Hand every group the hold it must run with.
    fn refresh_holds(&mut self, now: Instant) {
        for (key, hold) in self.per_group(|snap, k| snap.holds.get(k)) {
            let Some(g) = self.groups.get_mut(&key) else {
                continue;
            };
            if g.inst.preempt_hold() == hold.as_deref() {
                continue;
            }
            match &hold {
                Some(why) => info!(ifname = %key.0, vrid = key.1, reason = %why, "preemption held"),
                None => info!(ifname = %key.0, vrid = key.1, "preemption hold lifted"),
            }
            g.inst.set_hold(now, hold);
        }
    }

    /// Whether a virtual address of `key` is an address of the interface
    /// that we did not add.
    fn owner(&self, key: &Key) -> bool {
        let (Some(g), Some(link)) = (
            self.groups.get(key),
            self.ifaces.get(&key.0).and_then(|i| i.link.as_ref()),
        ) else {
            return false;
        };
        link.addrs
            .iter()
            .any(|(a, ours)| !ours && g.cfg.virtual_ips.contains(a))
    }

    /// All virtual addresses configured on an interface.
    fn vips_on(&self, ifname: &str) -> Vec<Ipv4Addr> {
        self.groups
            .iter()
            .filter(|((i, _), _)| i == ifname)
            .flat_map(|(_, g)| g.cfg.virtual_ips.iter().copied())
            .collect()
    }

    /// Start the group if its interface is up, addressed and its sockets open.
    fn try_start(&mut self, key: &Key, now: Instant) {
        let vips = self.vips_on(&key.0);
        let owner = self.owner(key);
        let Some(iface) = self.ifaces.get(&key.0) else {
            return;
        };
        let Some(link) = &iface.link else {
            debug!(ifname = %key.0, "interface not present: group waits");
            return;
        };
        if !link.up || iface.tx.is_none() {
            return;
        }
        let Some(primary) = network::primary_address(&link.addrs, &vips) else {
            warn!(ifname = %key.0, vrid = key.1, "interface has no IPv4 address: group waits");
            return;
        };
        // Stale addresses of ours (a crash, a previous run) on a backup.
        let stale: Vec<Ipv4Addr> = link
            .addrs
            .iter()
            .filter(|(a, ours)| *ours && self.groups[key].cfg.virtual_ips.contains(a))
            .map(|(a, _)| *a)
            .collect();
        let index = link.index;
        let Some(g) = self.groups.get_mut(key) else {
            return;
        };
        if g.inst.state() != State::Initialize {
            return;
        }
        if g.cfg.use_virtual_mac && g.vmac.is_none() {
            let name = host::vmac_name(index, key.1);
            let _ = self.host.send(HostCmd::CreateVmac {
                parent: key.0.clone(),
                parent_index: index,
                name: name.clone(),
                mac: host::virtual_mac(key.1),
            });
            g.vmac = Some(name.clone());
            self.ifaces.entry(name).or_insert(Iface {
                vmac: true,
                link: None,
                tx: None,
                _reader: None,
                index: 0,
                open_error: None,
            });
            self.publish_watch();
        }
        let Some(g) = self.groups.get_mut(key) else {
            return;
        };
        let actions = g.inst.startup(now, primary, owner);
        if g.inst.state() == State::Backup && !stale.is_empty() {
            let _ = self.host.send(HostCmd::Remove {
                ifname: key.0.clone(),
                index,
                addrs: stale,
            });
        }
        self.perform(key, actions);
    }

    fn shutdown_group(&mut self, key: &Key) {
        if let Some(g) = self.groups.get_mut(key) {
            let actions = g.inst.shutdown();
            self.perform(key, actions);
        }
    }

    fn iface_event(&mut self, name: String, link: Option<Link>) {
        let now = Instant::now();
        let Some(iface) = self.ifaces.get_mut(&name) else {
            return;
        };
        iface.link = link;
        if iface.vmac {
            match &iface.link {
                Some(l) if l.up && (l.index != iface.index || iface.tx.is_none()) => {
                    match network::open_tx(&name) {
                        Ok(tx) => {
                            info!(vmac = %name, "virtual MAC send socket open");
                            iface.tx = Some(tx);
                            iface.index = l.index;
                        }
                        Err(e) => warn!(error = %e, "virtual MAC send socket not open"),
                    }
                }
                Some(_) => {}
                None => {
                    iface.tx = None;
                    iface.index = 0;
                }
            }
            return;
        }
        match &iface.link {
            Some(l) if l.index != iface.index || iface.tx.is_none() => {
                iface.tx = None;
                iface._reader = None;
                match network::open(&name, l.index) {
                    Ok(s) => {
                        info!(ifname = %name, index = l.index, "vrrp sockets open");
                        iface.index = l.index;
                        iface.tx = Some(s.tx);
                        iface.open_error = None;
                        let out = self.inbound_tx.clone();
                        let ifname = name.clone();
                        iface._reader = Some(AbortOnDrop(tokio::spawn(async move {
                            if let Err(e) = network::reader(ifname.clone(), s.rx, out).await {
                                error!(%ifname, error = %e, "vrrp receive socket failed");
                            }
                        })));
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        if iface.open_error.as_deref() != Some(msg.as_str()) {
                            error!(error = %msg, "vrrp sockets cannot be opened: groups wait");
                        }
                        iface.open_error = Some(msg);
                    }
                }
            }
            Some(_) => {}
            None => {
                iface.tx = None;
                iface._reader = None;
                iface.index = 0;
            }
        }
        let vips = self.vips_on(&name);
        let usable = self.ifaces[&name]
            .link
            .as_ref()
            .is_some_and(|l| l.up && network::primary_address(&l.addrs, &vips).is_some())
            && self.ifaces[&name].tx.is_some();
        let primary = self.ifaces[&name]
            .link
            .as_ref()
            .and_then(|l| network::primary_address(&l.addrs, &vips));
        let keys: Vec<Key> = self
            .groups
            .keys()
            .filter(|(i, _)| *i == name)
            .cloned()
            .collect();
        for key in keys {
            let running = self.groups[&key].inst.state() != State::Initialize;
            if running && (!usable || Some(self.groups[&key].inst.primary()) != primary) {
                info!(ifname = %key.0, vrid = key.1, "interface down or readdressed: group stops");
                self.shutdown_group(&key);
            }
            if usable {
                self.try_start(&key, now);
            }
            self.sync(&key);
        }
    }

    fn timers(&mut self) {
        let now = Instant::now();
        let due: Vec<Key> = self
            .groups
            .iter()
            .filter(|(_, g)| g.inst.next_deadline().is_some_and(|d| d <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            if let Some(g) = self.groups.get_mut(&key) {
                let actions = g.inst.on_timer(now);
                self.perform(&key, actions);
                self.sync(&key);
            }
        }
    }

    fn inbound(&mut self, ifname: &str, decoded: Result<packet::Received, DecodeError>) {
        let now = Instant::now();
        let vrid = match &decoded {
            Ok(r) => Some(r.advert.vrid),
            Err(e) => e.vrid(),
        };
        let key = vrid.map(|v| (ifname.to_string(), v));
        let Some(g) = key.as_ref().and_then(|k| self.groups.get_mut(k)) else {
            let mut snap = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
            match (&decoded, vrid) {
                (Err(_), None) => snap.malformed += 1,
                _ => snap.vrid_errors += 1,
            }
            debug!(%ifname, ?vrid, "vrrp packet for no group");
            return;
        };
        let key = key.unwrap_or_default();
        let kind: &'static str = match decoded {
            Err(e) => {
                let s = &mut g.inst.stats;
                match e {
                    DecodeError::Checksum { .. } => {
                        s.checksum_errors += 1;
                        "bad checksum"
                    }
                    DecodeError::Version { .. } => {
                        s.version_errors += 1;
                        "unsupported version"
                    }
                    DecodeError::Type { .. } => {
                        s.type_errors += 1;
                        "not an advertisement"
                    }
                    _ => {
                        s.length_errors += 1;
                        "bad length"
                    }
                }
            }
            Ok(rx) => match g.inst.on_advert(now, &rx) {
                Ok(actions) => {
                    if !instance_addresses_match(&g.cfg.virtual_ips, &rx.advert.addresses)
                        && g.logged.insert("address list")
                    {
                        warn!(ifname = %key.0, vrid = key.1, from = %rx.src, "advertised addresses differ from ours");
                    }
                    self.perform(&key, actions);
                    self.sync(&key);
                    return;
                }
                Err(instance::Drop::Own | instance::Drop::NotRunning) => return,
                Err(instance::Drop::Ttl(_)) => "ttl not 255",
                Err(instance::Drop::Version) => "other vrrp version",
                Err(instance::Drop::Interval(_)) => "interval mismatch",
                Err(instance::Drop::Auth(_)) => "authentication mismatch",
            },
        };
        if g.logged.insert(kind) {
            warn!(ifname = %key.0, vrid = key.1, reason = kind, "advertisement dropped (further drops at debug level)");
        } else {
            debug!(ifname = %key.0, vrid = key.1, reason = kind, "advertisement dropped");
        }
        self.sync(&key);
    }

    /// Carry out a group's actions.
    fn perform(&mut self, key: &Key, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Send(adv) => {
                    let Some(g) = self.groups.get_mut(key) else {
                        continue;
                    };
                    // From the virtual MAC when there is one.
                    let vmac_tx = g
                        .vmac
                        .as_ref()
                        .and_then(|n| self.ifaces.get(n))
                        .and_then(|i| i.tx.as_ref());
                    let Some(tx) =
                        vmac_tx.or_else(|| self.ifaces.get(&key.0).and_then(|i| i.tx.as_ref()))
                    else {
                        continue;
                    };
                    let bytes =
                        packet::encode_ip(&adv, g.inst.primary(), g.inst.params().checksum, 0);
                    if let Err(e) = network::send(tx, &bytes) {
                        if g.logged.insert("send error") {
                            warn!(ifname = %key.0, vrid = key.1, error = %e, "advertisement not sent");
                        }
                    }
                }
                Action::Take(addrs) | Action::Release(addrs) if addrs.is_empty() => {}
                Action::Take(addrs) => {
                    let Some(g) = self.groups.get_mut(key) else {
                        continue;
                    };
                    // On the macvlan when it is ready, else on the interface.
                    let target = g
                        .vmac
                        .as_ref()
                        .and_then(|n| {
                            self.ifaces
                                .get(n)
                                .and_then(|i| i.link.as_ref().map(|l| (n.clone(), l)))
                        })
                        .or_else(|| {
                            self.ifaces
                                .get(&key.0)
                                .and_then(|i| i.link.as_ref().map(|l| (key.0.clone(), l)))
                        });
                    if let Some((ifname, link)) = target {
                        g.vips_at = Some((ifname.clone(), link.index));
                        let _ = self.host.send(HostCmd::Add {
                            ifname,
                            index: link.index,
                            mac: link.mac,
                            addrs,
                        });
                    }
                }
                Action::Release(addrs) => {
                    let at = self
                        .groups
                        .get(key)
                        .and_then(|g| g.vips_at.clone())
                        .or_else(|| {
                            self.ifaces
                                .get(&key.0)
                                .and_then(|i| i.link.as_ref())
                                .map(|l| (key.0.clone(), l.index))
                        });
                    if let Some((ifname, index)) = at {
                        let _ = self.host.send(HostCmd::Remove {
                            ifname,
                            index,
                            addrs,
                        });
                    }
                }
                Action::Changed { old, new, reason } => {
                    info!(ifname = %key.0, vrid = key.1, old = old.as_str(), new = new.as_str(), reason = reason.as_str(), "state change");
                    // The snapshot first: whoever reacts to the event and
                    // reads <get> sees the new state.
                    self.sync(key);
                    {
                        let mut snap = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
                        if let Some(s) = snap.groups.get_mut(key) {
                            s.last_change = Some(now_text());
                        }
                    }
                    let _ = self.events.send(StateChange {
                        interface: key.0.clone(),
                        vrid: key.1,
                        old,
                        new,
                        reason,
                        at: SystemTime::now(),
                    });
                    if reason == Reason::Shutdown {
                        if let Some(g) = self.groups.get_mut(key) {
                            g.logged.clear();
                        }
                    }
                }
            }
        }
        self.sync(key);
    }

    /// Copy a group's state into the snapshot (only if still configured:
    /// `apply` owns the snapshot's keys).
    fn sync(&self, key: &Key) {
        let Some(g) = self.groups.get(key) else {
            return;
        };
        let mut snap = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = snap.groups.get_mut(key) {
            s.state = g.inst.state();
            s.master_address = g.inst.master_address();
            s.effective_priority = g.inst.priority();
            s.stats = g.inst.stats.clone();
        }
    }

    fn sync_all(&self) {
        for key in self.groups.keys() {
            self.sync(key);
        }
    }
}

/// Until the lease store's health changes: `true`, or `false` when its
/// sender is gone; never resolves without a store to watch.
async fn store_changed(store: &mut Option<watch::Receiver<Option<String>>>) -> bool {
    match store {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

fn instance_addresses_match(a: &[Ipv4Addr], b: &[Ipv4Addr]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x))
}

/// The YANG notification `state-change` of one transition.
pub fn state_change_event(c: &StateChange) -> Event {
    Event::new("/hotlease-vrrp:state-change")
        .leaf("interface", &c.interface)
        .leaf("vrid", c.vrid)
        .leaf("old-state", c.old.as_str())
        .leaf("new-state", c.new.as_str())
        .leaf("reason", c.reason.as_str())
        .at(c.at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Subsystem;

    fn group(ifname: &str, vrid: u8, priority: u8) -> VrrpGroup {
        VrrpGroup {
            interface: ifname.into(),
            vrid,
            virtual_ips: vec![Ipv4Addr::new(192, 0, 2, vrid)],
            priority,
            preempt: true,
            preempt_delay_s: 0,
            advertise_interval_ms: 1000,
            version: VrrpVersion::V3,
            checksum_mode: ChecksumMode::PseudoHeader,
            use_virtual_mac: false,
        }
    }

    fn disabled() -> VrrpSettings {
        VrrpSettings {
            enabled: false,
            realtime_priority: 0,
        }
    }

    fn config(groups: &[VrrpGroup]) -> Config {
        Config {
            vrrp: groups
                .iter()
                .map(|g| ((g.interface.clone(), g.vrid), g.clone()))
                .collect(),
            ..Default::default()
        }
    }

    /// The protocol thread runs SCHED_RR, and what it starts does not
    /// (reset on fork): the runtime's blocking helpers are not protocol
    /// work.
    #[tokio::test]
    async fn the_vrrp_thread_is_realtime_and_resets_on_fork() {
        let shutdown = CancellationToken::new();
        let settings = VrrpSettings {
            enabled: true,
            realtime_priority: 2,
        };
        let (_v, task) = Vrrp::start(&settings, shutdown.clone());
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let policy = loop {
            let tid = std::fs::read_dir("/proc/self/task")
                .unwrap()
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
                .find(|tid| {
                    let comm = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"));
                    comm.is_ok_and(|c| c.trim() == "vrrp")
                        && crate::sched::policy_of(*tid)
                            .is_ok_and(|(p, n)| (p, n) == (libc::SCHED_RR, 2))
                });
            if let Some(tid) = tid {
                break crate::sched::raw_policy_of(tid).unwrap();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no SCHED_RR vrrp thread"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_ne!(policy & libc::SCHED_RESET_ON_FORK, 0, "policy {policy:#x}");
        shutdown.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn state_follows_the_configured_keys_and_is_valid_yang() {
        let (mut v, _task) = Vrrp::start(&disabled(), CancellationToken::new());
        assert_eq!(v.state_xml(), "");
        let one = config(&[group("eth1", 1, 100), group("eth1", 2, 100)]);
        v.prepare(&Config::default(), &one).unwrap();
        v.apply(&Config::default(), &one);
        let xml = v.state_xml();
        assert_eq!(xml.matches("<state>initialize</state>").count(), 2, "{xml}");
        crate::yang::parse_state_xml(&xml).expect("state parses against the module");
        let two = config(&[group("eth1", 2, 120)]);
        v.apply(&one, &two);
        let xml = v.state_xml();
        assert!(
            !xml.contains("<vrid>1</vrid>") && xml.contains("<vrid>2</vrid>"),
            "{xml}"
        );
        v.apply(&two, &Config::default());
        assert_eq!(v.state_xml(), "");
    }

    fn with_profile(mut cfg: Config, name: &str, ifname: &str, vrid: u8) -> Config {
        cfg.backup.profiles.insert(
            name.into(),
            crate::backup::config::BackupProfile {
                name: name.into(),
                vrrp_interface: ifname.into(),
                vrid,
                backup_id: 1,
                service: "rbs1".into(),
                dhcp_server: true,
            },
        );
        cfg
    }

    /// (preempt-hold, preempt-hold-reason) of a group in `<get>`.
    fn hold_in_state(v: &Vrrp, vrid: u8) -> (bool, Option<String>) {
        let xml = v.state_xml();
        crate::yang::parse_state_xml(&xml).expect("state parses against the module");
        let g = xml
            .split("<group>")
            .find(|g| g.contains(&format!("<vrid>{vrid}</vrid>")))
            .unwrap_or_else(|| panic!("group {vrid} in {xml}"));
        let held = g.contains("<preempt-hold>true</preempt-hold>");
        assert!(
            held || g.contains("<preempt-hold>false</preempt-hold>"),
            "{g}"
        );
        let reason = g
            .split_once("<preempt-hold-reason>")
            .and_then(|(_, r)| r.split_once("</preempt-hold-reason>"))
            .map(|(r, _)| r.to_string());
        (held, reason)
    }

    #[tokio::test]
    async fn a_followed_group_is_held_from_its_configuration_until_released() {
        let (mut v, _task) = Vrrp::start(&disabled(), CancellationToken::new());
        let holds = v.preempt_holds();
        let plain = config(&[group("eth1", 1, 200), group("eth1", 2, 200)]);
        let followed = with_profile(plain.clone(), "rbp1", "eth1", 1);
        v.apply(&Config::default(), &followed);
        let waiting = Some(hold::WAITING.to_string());
        assert_eq!(hold_in_state(&v, 1), (true, waiting.clone()));
        assert_eq!(hold_in_state(&v, 2), (false, None), "no profile follows it");
        assert_eq!(holds.get("eth1", 1), waiting);
        holds.set("eth1", 1, Some("batch backup: 300 of 1000 leases".into()));
        holds.set("eth1", 2, Some("batch backup <b>".into()));
        assert_eq!(
            hold_in_state(&v, 1),
            (true, Some("batch backup: 300 of 1000 leases".into()))
        );
        assert_eq!(hold_in_state(&v, 2), (false, None));
        holds.clone().set("eth1", 1, None);
        assert_eq!(hold_in_state(&v, 1), (false, None));
        assert_eq!(holds.get("eth1", 1), None);
        // removing the profile releases; adding it again holds again
        let followed2 = with_profile(plain.clone(), "rbp2", "eth1", 2);
        v.apply(&followed, &followed2);
        assert_eq!(hold_in_state(&v, 1), (false, None));
        assert_eq!(
            hold_in_state(&v, 2),
            (true, Some("batch backup &lt;b&gt;".into())),
            "escaped in the XML"
        );
        v.apply(&followed2, &plain);
        assert_eq!(hold_in_state(&v, 2), (false, None));
        v.apply(&plain, &followed);
        assert_eq!(hold_in_state(&v, 1), (true, waiting));
    }

    #[tokio::test]
    async fn a_release_said_before_the_configuration_is_kept() {
        // the hot backup may speak before VRRP applied the boot config
        let (mut v, _task) = Vrrp::start(&disabled(), CancellationToken::new());
        v.preempt_holds().set("eth1", 1, None);
        v.preempt_holds()
            .set("eth1", 2, Some("channel down".into()));
        let boot = with_profile(
            with_profile(
                config(&[group("eth1", 1, 200), group("eth1", 2, 200)]),
                "a",
                "eth1",
                1,
            ),
            "b",
            "eth1",
            2,
        );
        v.apply(&Config::default(), &boot);
        assert_eq!(hold_in_state(&v, 1), (false, None));
        assert_eq!(hold_in_state(&v, 2), (true, Some("channel down".into())));
    }

    /// The tracked-down leaves of a group in `<get>`: (effective
    /// priority, tracked-down, reason).
    fn track_in_state(v: &Vrrp, vrid: u8) -> (String, bool, Option<String>) {
        let xml = v.state_xml();
        crate::yang::parse_state_xml(&xml).expect("state parses against the module");
        let g = xml
            .split("<group>")
            .find(|g| g.contains(&format!("<vrid>{vrid}</vrid>")))
            .unwrap_or_else(|| panic!("group {vrid} in {xml}"));
        let between = |a: &str, b: &str| {
            g.split_once(a)
                .and_then(|(_, r)| r.split_once(b))
                .map(|(r, _)| r.to_string())
        };
        (
            between("<effective-priority>", "</effective-priority>").unwrap_or_default(),
            g.contains("<tracked-down>true</tracked-down>"),
            between("<tracked-down-reason>", "</tracked-down-reason>"),
        )
    }

    #[tokio::test]
    async fn the_groups_of_a_dhcp_profile_show_the_store_failure() {
        let (mut v, _task) = Vrrp::start(&disabled(), CancellationToken::new());
        let mut cfg = with_profile(
            with_profile(
                config(&[group("eth1", 1, 200), group("eth1", 2, 150)]),
                "a",
                "eth1",
                1,
            ),
            "b",
            "eth1",
            2,
        );
        if let Some(p) = cfg.backup.profiles.get_mut("b") {
            p.dhcp_server = false;
        }
        v.apply(&Config::default(), &cfg);
        assert_eq!(track_in_state(&v, 1), ("200".into(), false, None));
        v.lock().tracks.set_store(Some(
            "lease store /var/lib/hotlease/leases.log: No space left on device (os error 28)"
                .into(),
        ));
        assert_eq!(
            track_in_state(&v, 1),
            (
                "200".into(),
                true,
                Some("lease store /var/lib/hotlease/leases.log: No space left on device (os error 28)".into())
            ),
            "not running (runtime disabled): the configured priority"
        );
        assert_eq!(
            track_in_state(&v, 2),
            ("150".into(), false, None),
            "its profile backs no DHCP server"
        );
        v.lock().tracks.set_store(None);
        assert_eq!(track_in_state(&v, 1), ("200".into(), false, None));
    }

    #[test]
    fn typed_config_becomes_state_machine_parameters() {
        let mut g = group("eth1", 4, 150);
        g.version = VrrpVersion::V2;
        g.checksum_mode = ChecksumMode::Rfc9568;
        g.preempt_delay_s = 600;
        let p = params(&g);
        assert_eq!(p.version, Version::V2);
        assert_eq!(p.checksum, ChecksumForm::Plain);
        assert_eq!(p.preempt_delay, Duration::from_secs(600));
        assert_eq!(p.advert_interval, Duration::from_secs(1));
        assert_eq!(p.priority, 150);
    }
}
