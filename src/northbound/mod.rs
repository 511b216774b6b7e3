//! The northbound actor: it owns the running, candidate and startup
//! datastores (libyang trees), the locks, the pending confirmed commit, and
//! runs every NETCONF operation against them, one at a time.
//!
//! ```text
//!  session tasks ──Request (op + oneshot)──► Northbound (this actor)
//!                                              │ commit: validate → diff →
//!                                              │ typed config → prepare all → apply all
//!                                              ▼
//!                                   subsystems (dhcp, vrrp, backup)
//! ```
//! Serialising operations here is what makes commit transactional without
//! locks shared across tasks; each operation is short (no I/O: the startup
//! file and a confirmed commit's `<persist>` record are written and
//! fsynced by `store::StorageWriter`'s thread, in order, and the session
//! that asked is answered once it is on disk), so sessions only wait for
//! each other's operations, never for each other's network or disk.
//! While a `<persist>` record is being written, the operations that change
//! something wait for it (the commit is applied once it is on disk, so a
//! confirming commit or a cancel never overtakes it); reads go on.
//!
//! The operations it runs are typed (`ops`, decoded from the wire by
//! `netconf/rpc.rs`), and so are its answers (`error::RpcError`, printed by
//! `netconf/rpc.rs`). It owns what works on datastores rather than on the
//! wire: the edit-config engine (`edit`), subtree filters (`filter`),
//! commit-time validation (`validate`) and storage (`store`). It drives the
//! subsystems through `config::Subsystem` and maps their refusals
//! (`config::ConfigError`) onto `<rpc-error>`s. Arrows run one way:
//! netconf → northbound → subsystems; nothing here imports `netconf` or a
//! runtime.

pub mod allowed;
pub mod edit;
pub mod error;
pub mod filter;
pub mod monitoring;
pub mod nacm;
pub mod notify;
pub mod ops;
pub mod select;
pub mod stats;
pub mod store;
pub mod validate;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use yang2::data::DataTree;
use yang2::schema::SchemaNodeKind;

use crate::config::{Config, Subsystem};
use crate::event::Event;
use crate::xml::{self, escape_text, Element, NC_NS};
use crate::yang::{self, WithDefaults};
use edit::{find_child, top_schema};
use error::{ErrorTag, ErrorType, RpcError};
use monitoring::{SessionCounters, Totals};
use ops::{Commit, Datastore, EditOp, ErrorOption, Filter, Operation, Reply, Source, TestOption};
use store::{PersistedConfirm, StorageWrite, StorageWriter, Store};

type RpcResult = Result<Reply, Vec<RpcError>>;

enum Request {
    Register {
        user: String,
        source: Option<IpAddr>,
        counters: Arc<SessionCounters>,
        kill: CancellationToken,
        reply: oneshot::Sender<u32>,
    },
    Unregister {
        session: u32,
        reason: &'static str,
    },
    Rpc {
        session: u32,
        op: Box<Operation>,
        reply: oneshot::Sender<RpcResult>,
    },
}

/// Cheap handle the sessions use to talk to the actor.
#[derive(Clone, Debug)]
pub struct Handle {
    tx: mpsc::Sender<Request>,
    next_id: Arc<AtomicU32>,
    stats: Arc<stats::NetconfStats>,
    bus: notify::Bus,
    /// The NACM rules of running, as of the last commit (sessions read
    /// them for the notifications they send).
    nacm: Arc<std::sync::RwLock<Arc<nacm::Config>>>,
    recovery_user: Option<String>,
    nacm_counters: Arc<nacm::Counters>,
    /// The writes under way, that streamed replies give way to.
    writes: Arc<ops::Writes>,
}

/// RFC 8341 §3.4.4 for `user` under `cfg`: `access-denied` (counted and
/// logged) when no rule lets the user run `op`.
fn exec_check(
    cfg: &nacm::Config,
    user: &str,
    op: &Operation,
    counters: &nacm::Counters,
) -> Result<(), Vec<RpcError>> {
    let (module, rpc) = op.rpc_name();
    let rules = cfg.rules_for(user);
    let (allowed, rule) = rules.exec(module, rpc);
    if allowed {
        return Ok(());
    }
    counters.denied_operations.fetch_add(1, Ordering::Relaxed);
    warn!(%user, rpc = %format!("{module}:{rpc}"), rule, "access denied: operation");
    let prefix = yang::module_by_name(module).map_or("nc", |m| m.prefix);
    Err(vec![RpcError::protocol(
        ErrorTag::AccessDenied,
        format!("access denied: the {rpc} operation"),
    )
    .with_path(Some(format!("/nc:rpc/{prefix}:{rpc}")))])
}

impl Handle {
    /// RFC 8341 §3.4.4 for an operation the session runs itself
    /// (create-subscription), with the rules of the last commit.
    pub fn check_exec(&self, user: &str, op: &Operation) -> Result<(), Vec<RpcError>> {
        let cfg = self.nacm.read().unwrap_or_else(|p| p.into_inner()).clone();
        if !cfg.enabled || self.recovery_user.as_deref() == Some(user) {
            return Ok(());
        }
        exec_check(&cfg, user, op, &self.nacm_counters)
    }

    /// RFC 8341 §3.4.6: whether `user` may receive `n` (the notification
    /// rules, and read access to every node in it); a denial is counted.
    /// No work when NACM is disabled or for the recovery user.
    pub fn notification_allowed(&self, user: &str, n: &notify::Notification) -> bool {
        self.notification_access().check(n).allowed(user)
    }

    /// The NACM rules the notification bus checks a subscriber's
    /// notifications against (once per notification and user).
    pub fn notification_access(&self) -> notify::Access {
        notify::Access {
            nacm: self.nacm.clone(),
            recovery_user: self.recovery_user.clone(),
            counters: self.nacm_counters.clone(),
        }
    }

    /// The NETCONF activity counters (sessions count themselves in).
    pub fn stats(&self) -> &Arc<stats::NetconfStats> {
        &self.stats
    }

    /// Register a new session of `user` from `source`; returns its
    /// session-id and the counters its task keeps (RFC 6022).
    pub async fn register(
        &self,
        user: String,
        source: Option<IpAddr>,
        kill: CancellationToken,
    ) -> (u32, Arc<SessionCounters>) {
        let counters = Arc::new(SessionCounters::default());
        let (reply, rx) = oneshot::channel();
        let req = Request::Register {
            user,
            source,
            counters: counters.clone(),
            kill,
            reply,
        };
        let id = if self.tx.send(req).await.is_err() {
            self.next_id.fetch_add(1, Ordering::Relaxed)
        } else {
            rx.await
                .unwrap_or_else(|_| self.next_id.fetch_add(1, Ordering::Relaxed))
        };
        (id, counters)
    }

    /// The session ended; `reason` as the session task returns it
    /// ("close-session", "client left", ...), for netconf-session-end.
    pub async fn unregister(&self, session: u32, reason: &'static str) {
        let _ = self.tx.send(Request::Unregister { session, reason }).await;
    }

    /// The notification bus (create-subscription).
    pub fn notifications(&self) -> &notify::Bus {
        &self.bus
    }

    /// The writes under way (see [`ops::Writes`]).
    pub fn writes(&self) -> &ops::Writes {
        &self.writes
    }

    pub async fn rpc(&self, session: u32, op: Operation) -> RpcResult {
        // from the request's queueing to its answer
        let _write = op.is_write().then(|| self.writes.start());
        let (reply, rx) = oneshot::channel();
        let req = Request::Rpc {
            session,
            op: Box::new(op),
            reply,
        };
        if self.tx.send(req).await.is_err() {
            return Err(vec![RpcError::operation_failed(
                "the daemon is shutting down",
            )]);
        }
        rx.await.unwrap_or_else(|_| {
            Err(vec![RpcError::operation_failed(
                "the daemon is shutting down",
            )])
        })
    }
}

/// Errors loading the stored datastores at boot.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("storage: {0}")]
    Io(#[from] std::io::Error),
    #[error("startup datastore {what} is invalid: {message}")]
    Invalid { what: &'static str, message: String },
}

struct SessionInfo {
    user: String,
    kill: CancellationToken,
    source: Option<IpAddr>,
    login_time: String,
    counters: Arc<SessionCounters>,
}

/// After a refused rollback of a confirmed commit, how long until it is
/// tried again (a subsystem may refuse for a while, e.g. a missing
/// interface).
const ROLLBACK_RETRY: Duration = Duration::from_secs(10);

/// A confirmed commit waiting for its confirmation.
struct PendingConfirm {
    rollback: DataTree<'static>,
    deadline: Instant,
    /// Session that must confirm (None once persisted: any session with the
    /// persist-id may).
    owner: Option<u32>,
    persist: Option<String>,
}

/// The actor's state.
pub struct Northbound {
    running: DataTree<'static>,
    candidate: DataTree<'static>,
    startup: DataTree<'static>,
    running_config: Config,
    /// Printed running configuration per with-defaults mode, until the
    /// next change of running.
    running_xml: HashMap<WithDefaults, String>,
    /// Printed top-level nodes of running (by with-defaults mode and
    /// "module:name"), for subtree filters that select whole ones; kept as
    /// long as `running_xml`.
    running_nodes: HashMap<(WithDefaults, String), String>,
    locks: HashMap<Datastore, u32>,
    /// The candidate differs from running by edits not yet committed or
    /// discarded (RFC 6241 §7.5: its lock must not be granted then). Kept
    /// apart from who made them: the sessions may have ended since.
    candidate_modified: bool,
    /// Live sessions whose edits are among those changes; the only ones
    /// that may still lock the candidate while it is modified.
    candidate_editors: BTreeSet<u32>,
    /// What the candidate's edits since the last commit may have changed.
    scope: validate::Scope,
    sessions: HashMap<u32, SessionInfo>,
    pending: Option<PendingConfirm>,
    store: Store,
    subsystems: Vec<Box<dyn Subsystem>>,
    next_id: Arc<AtomicU32>,
    /// The capabilities the sessions announce (`netconf-state`).
    capabilities: Vec<String>,
    /// When each lock in `locks` was taken (RFC 6022 locked-time).
    locked_at: HashMap<Datastore, String>,
    /// RFC 6022 statistics of the sessions that ended, and the session
    /// counts.
    totals: Totals,
    start_time: String,
    /// The NACM configuration of running (rebuilt when running changes).
    nacm: Arc<nacm::Config>,
    nacm_counters: Arc<nacm::Counters>,
    /// `nacm` for the sessions (`Handle::notification_allowed`).
    nacm_shared: Arc<std::sync::RwLock<Arc<nacm::Config>>>,
    /// The bootstrap file's `recovery-user`: NACM never restricts it.
    recovery_user: Option<String>,
    /// The bootstrap file's user `groups` (NACM external groups).
    transport_groups: nacm::TransportGroups,
    /// NETCONF activity for the metrics endpoint (commit durations here).
    stats: Arc<stats::NetconfStats>,
    /// Where the RFC 6470 notifications go.
    bus: notify::Bus,
    /// The thread that writes the startup file and the `<persist>` record
    /// (started with the actor; without it, as in `operation`, they are
    /// written in place).
    storage_writer: Option<StorageWriter>,
    /// Writes under way, oldest first (the writer reports in this order):
    /// what each one completes once it is on disk.
    storage_queue: VecDeque<Queued>,
    /// Requests that change something, held while a `<persist>` record is
    /// being written (see [`Northbound::holds`]); taken in order after.
    held: VecDeque<Request>,
    /// The writes under way (the sessions' [`Handle::writes`]): the rest of
    /// a large `<get>`, rendered on a thread of its own, gives way to them.
    writes: Arc<ops::Writes>,
    /// When the job under way off the actor started ([`Northbound::off_actor`]:
    /// the validation of a large change), if one is.
    off_actor: Option<std::time::Instant>,
    /// Where that job's thread hands back what the actor does next (the
    /// actor's; None before it runs: jobs then run in place).
    off_actor_tx: Option<mpsc::UnboundedSender<OnActor>>,
}

/// What a job off the actor leaves the actor to do once it is done.
type OnActor = Box<dyn FnOnce(&mut Northbound) + Send>;

/// A write of the storage writer under way.
enum Queued {
    /// `startup` becomes `tree`, and the session gets its answer.
    Startup {
        session: u32,
        tree: DataTree<'static>,
        reply: oneshot::Sender<RpcResult>,
    },
    /// A confirmed commit given `<persist>`: validated and prepared, applied
    /// once its record is on disk (a record that cannot be written changes
    /// nothing).
    Persist(Box<Persisting>),
}

/// A confirmed commit waiting for its `<persist>` record.
struct Persisting {
    session: u32,
    commit: Commit,
    new: validate::Validated,
    reply: oneshot::Sender<RpcResult>,
    started: std::time::Instant,
}

impl std::fmt::Debug for Northbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Northbound")
            .field("sessions", &self.sessions.len())
            .field("locks", &self.locks)
            .finish()
    }
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn parse_tree(xml: &str, what: &'static str) -> Result<DataTree<'static>, BootError> {
    // the first error, phrased as the northbound answers it, with its path
    let invalid = |e: Option<RpcError>| BootError::Invalid {
        what,
        message: e
            .map(|e| match e.path {
                Some(at) => format!("{} (at {at})", e.message.unwrap_or_default()),
                None => e.message.unwrap_or_default(),
            })
            .unwrap_or_default(),
    };
    if let Some(message) = edit::repeated_in_document(xml) {
        return Err(BootError::Invalid { what, message });
    }
    let mut tree =
        yang::parse_config_xml(xml).map_err(|e| invalid(e.first().map(error::from_ly)))?;
    if edit::parsed_duplicates(&tree) {
        return Err(BootError::Invalid {
            what,
            message: "a list entry or leaf-list value is given more than once".into(),
        });
    }
    yang::validate(&mut tree)
        .map_err(|e| invalid(edit::validation_errors(&tree, &e).into_iter().next()))?;
    Ok(tree)
}

impl Northbound {
    /// Load startup (and a pending persisted confirmed commit) from storage.
    pub fn boot(
        store: Store,
        subsystems: Vec<Box<dyn Subsystem>>,
    ) -> Result<Northbound, BootError> {
        let startup = match store.read_startup()? {
            Some(xml) => parse_tree(&xml, "startup.xml")?,
            // validated even when empty: running then holds its defaults
            None => parse_tree("", "empty configuration")?,
        };
        let mut running = yang::dup(&startup);
        let mut pending = None;
        if let Some(p) = store.read_confirm()? {
            let rollback = parse_tree(&p.rollback_xml, "confirmed-commit rollback")?;
            let now = now_unix_ms();
            if p.deadline_unix_ms > now {
                running = parse_tree(&p.pending_xml, "confirmed-commit pending")?;
                let left = Duration::from_millis(p.deadline_unix_ms - now);
                info!(persist_id = %p.persist_id, left_ms = left.as_millis() as u64, "restored pending confirmed commit");
                pending = Some(PendingConfirm {
                    rollback,
                    deadline: Instant::now() + left,
                    owner: None,
                    persist: Some(p.persist_id),
                });
            } else {
                warn!(persist_id = %p.persist_id, "persisted confirmed commit expired while down: rolled back");
                running = rollback;
                store.delete_confirm()?;
            }
        }
        let running_config = Config::try_from(&running).map_err(|e| BootError::Invalid {
            what: "running",
            message: e.message,
        })?;
        // the rules between entries that a commit checks too (a startup
        // file written by hand, or by an older version, may break them)
        running_config
            .check()
            .map_err(|errors| BootError::Invalid {
                what: "running",
                message: errors
                    .iter()
                    .map(|e| format!("{}: {}", e.path, e.message))
                    .collect::<Vec<_>>()
                    .join("; "),
            })?;
        let mut nb = Northbound {
            candidate: yang::dup(&running),
            running,
            startup,
            running_config: Config::default(),
            running_xml: HashMap::new(),
            running_nodes: HashMap::new(),
            locks: HashMap::new(),
            candidate_modified: false,
            candidate_editors: BTreeSet::new(),
            scope: validate::Scope::default(),
            sessions: HashMap::new(),
            pending,
            store,
            subsystems,
            next_id: Arc::new(AtomicU32::new(1)),
            capabilities: Vec::new(),
            locked_at: HashMap::new(),
            totals: Totals::default(),
            start_time: monitoring::date_time(SystemTime::now()),
            nacm: Arc::new(nacm::Config::default()),
            nacm_counters: Arc::default(),
            nacm_shared: Arc::default(),
            recovery_user: None,
            transport_groups: nacm::TransportGroups::default(),
            stats: Arc::default(),
            bus: notify::Bus::memory(),
            storage_writer: None,
            storage_queue: VecDeque::new(),
            held: VecDeque::new(),
            writes: Arc::default(),
            off_actor: None,
            off_actor_tx: None,
        };
        nb.nacm = Arc::new(nacm::Config::from_tree(&nb.running));
        nb.nacm_shared = Arc::new(std::sync::RwLock::new(nb.nacm.clone()));
        let empty = Config::default();
        for s in nb.subsystems.iter_mut() {
            if let Err(e) = s.prepare(&empty, &running_config) {
                return Err(BootError::Invalid {
                    what: "running",
                    message: format!("{}: {:?}", s.name(), e.first().map(|e| e.message.clone())),
                });
            }
        }
        for s in nb.subsystems.iter_mut() {
            s.apply(&empty, &running_config);
        }
        nb.running_config = running_config;
        Ok(nb)
    }

    /// The capabilities the sessions announce, for `netconf-state` (the
    /// NETCONF layer owns them; arrows run netconf → northbound).
    pub fn with_capabilities(mut self, capabilities: Vec<String>) -> Self {
        self.capabilities = capabilities;
        self
    }

    /// Send notifications to `bus` (the daemon's; a booted northbound has
    /// one that nobody reads).
    pub fn set_notifications(&mut self, bus: notify::Bus) {
        self.bus = bus;
    }

    /// The bootstrap file's `recovery-user` (RFC 8341 §2.5), whom NACM
    /// never restricts.
    pub fn with_recovery_user(mut self, user: Option<String>) -> Self {
        self.recovery_user = user;
        self
    }

    /// The groups the bootstrap file gives its users (RFC 8341 external
    /// groups, honoured while running's `enable-external-groups` is true).
    pub fn with_transport_groups(mut self, groups: nacm::TransportGroups) -> Self {
        self.transport_groups = groups;
        self.nacm = Arc::new(self.nacm_of_running());
        *self.nacm_shared.write().unwrap_or_else(|p| p.into_inner()) = self.nacm.clone();
        self
    }

    fn nacm_of_running(&self) -> nacm::Config {
        nacm::Config::from_tree(&self.running).with_transport_groups(self.transport_groups.clone())
    }

    /// The NACM counters, for whoever filters notifications.
    pub fn nacm_counters(&self) -> Arc<nacm::Counters> {
        self.nacm_counters.clone()
    }

    /// The NACM configuration and user name that a session's operations
    /// are checked against; `None` (no check at all, no per-node work)
    /// when NACM is disabled, for the recovery user, and for the daemon's
    /// own calls (no session).
    fn nacm_for(&self, session: u32) -> Option<(Arc<nacm::Config>, String)> {
        if !self.nacm.enabled {
            return None;
        }
        let user = &self.sessions.get(&session)?.user;
        if self.recovery_user.as_deref() == Some(user.as_str()) {
            return None;
        }
        Some((self.nacm.clone(), user.clone()))
    }

    /// RFC 8341 §3.4.4: the exec check before an operation runs.
    fn check_exec(&self, session: u32, op: &Operation) -> Result<(), Vec<RpcError>> {
        let Some((cfg, user)) = self.nacm_for(session) else {
            return Ok(());
        };
        exec_check(&cfg, &user, op, &self.nacm_counters)
    }

    /// RFC 8341 §3.4.5: the write check of a change of a datastore from
    /// `old` to `new` by `session` (nothing to do without NACM rules).
    fn check_writes(
        &self,
        session: u32,
        old: &DataTree<'static>,
        new: &DataTree<'static>,
    ) -> Result<(), Vec<RpcError>> {
        let Some((cfg, user)) = self.nacm_for(session) else {
            return Ok(());
        };
        let rules = cfg.rules_for(&user);
        let Err(denied) = rules.check_writes(old, new) else {
            return Ok(());
        };
        self.nacm_counters
            .denied_operations
            .fetch_add(1, Ordering::Relaxed);
        self.nacm_counters
            .denied_data_writes
            .fetch_add(1, Ordering::Relaxed);
        warn!(session, %user, path = %denied.path, op = denied.op, rule = denied.rule, "access denied: write");
        // the path of a node the user may not read is not told (a delete
        // of it may come from a replace of its parent)
        let tree = if denied.op == "delete" { old } else { new };
        let path = rules
            .may_read(tree, &denied.path)
            .then(|| yang::xml_path(&denied.path));
        let message = match path {
            Some(_) => format!("access denied: {} of this node", denied.op),
            None => "access denied: a change of data this user may not write".to_string(),
        };
        Err(vec![
            RpcError::application(ErrorTag::AccessDenied, message).with_path(path)
        ])
    }

    /// Remove from `tree` what the session's user may not read.
    fn prune_reads(&self, session: u32, tree: &mut DataTree<'static>) {
        if let Some((cfg, user)) = self.nacm_for(session) {
            let n = cfg.rules_for(&user).prune_reads(tree);
            if n > 0 {
                tracing::debug!(session, %user, subtrees = n, "read access: omitted");
            }
        }
    }

    /// Start the actor; it runs until `shutdown` fires.
    pub fn spawn(mut self, shutdown: CancellationToken) -> (Handle, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(256);
        let (written_tx, written) = mpsc::unbounded_channel();
        match StorageWriter::start(self.store.clone(), written_tx) {
            Ok(w) => self.storage_writer = Some(w),
            Err(e) => {
                warn!(error = %e, "no storage writer thread: startup and confirmed commits are written on the actor")
            }
        }
        let handle = Handle {
            tx,
            next_id: self.next_id.clone(),
            stats: self.stats.clone(),
            bus: self.bus.clone(),
            nacm: self.nacm_shared.clone(),
            recovery_user: self.recovery_user.clone(),
            nacm_counters: self.nacm_counters.clone(),
            writes: self.writes.clone(),
        };
        let task = tokio::spawn(self.run(rx, written, shutdown));
        (handle, task)
    }

    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Request>,
        mut written: mpsc::UnboundedReceiver<std::io::Result<()>>,
        shutdown: CancellationToken,
    ) {
        let (off_actor_tx, mut off_actor_done) = mpsc::unbounded_channel();
        self.off_actor_tx = Some(off_actor_tx);
        loop {
            // no rollback while a commit is validated or a confirmed
            // commit's record written: it goes on once that commit is
            // applied (or refused)
            let deadline = self
                .pending
                .as_ref()
                .filter(|_| !self.busy())
                .map(|p| p.deadline);
            tokio::select! {
                req = rx.recv() => match req {
                    Some(req) => self.handle(req),
                    None => break,
                },
                Some(r) = written.recv() => self.written(r),
                Some(then) = off_actor_done.recv() => self.off_actor_done(then),
                _ = async { tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)).await }, if deadline.is_some() => {
                    info!("confirmed commit timed out: rolling back");
                    // a refusal is logged and retried
                    if self.rollback_pending(&None).is_ok() {
                        self.confirmed_commit_event("timeout", &None, None);
                    }
                }
                _ = shutdown.cancelled() => break,
            }
        }
        // the writes given are made (their sessions are gone or going)
        if let Some(w) = self.storage_writer.take() {
            let _ = tokio::task::spawn_blocking(move || w.finish()).await;
        }
    }

    /// The storage writer's report of the oldest write under way; then the
    /// requests held behind a `<persist>` record, once none is left.
    fn written(&mut self, r: std::io::Result<()>) {
        let Some(q) = self.storage_queue.pop_front() else {
            return;
        };
        match q {
            Queued::Startup {
                session,
                tree,
                reply,
            } => {
                let answer = match r {
                    Ok(()) => {
                        self.startup = tree;
                        info!(session, "startup datastore saved");
                        Ok(Reply::Ok)
                    }
                    Err(e) => {
                        warn!(session, error = %e, "startup datastore not saved");
                        Err(io_error(e))
                    }
                };
                let _ = reply.send(answer);
            }
            Queued::Persist(p) => {
                let Persisting {
                    session,
                    commit,
                    new,
                    reply,
                    started,
                } = *p;
                let answer = match r {
                    Ok(()) => blocking(|| self.commit_install(session, &commit, new)),
                    Err(e) => {
                        warn!(session, error = %e, "confirmed commit not persisted: refused");
                        Err(io_error(e))
                    }
                };
                self.stats.commit_duration.observe(started.elapsed());
                let _ = reply.send(answer);
            }
        }
        self.release_held();
    }

    /// The requests held while the actor was busy with a change, in order,
    /// until one makes it busy again.
    fn release_held(&mut self) {
        while !self.busy() {
            let Some(req) = self.held.pop_front() else {
                break;
            };
            self.handle(req);
        }
    }

    /// Whether a confirmed commit's `<persist>` record is being written.
    fn persisting(&self) -> bool {
        self.storage_queue
            .iter()
            .any(|q| matches!(q, Queued::Persist(_)))
    }

    /// Whether a change is under way off the actor: a large candidate
    /// being validated, or a confirmed commit's `<persist>` record being
    /// written. What changes something waits ([`Northbound::holds`]).
    fn busy(&self) -> bool {
        self.off_actor.is_some() || self.persisting()
    }

    /// Whether `req` waits while a change is under way off the actor
    /// ([`Northbound::busy`]): it may change the datastores, the locks or
    /// the pending commit (and so must come after that change, which is
    /// not made yet). Reads, new sessions and a subsystem's rpc go on.
    fn holds(req: &Request) -> bool {
        match req {
            Request::Register { .. } => false,
            Request::Unregister { .. } => true,
            Request::Rpc { op, .. } => {
                op.is_write() || matches!(**op, Operation::KillSession { .. })
            }
        }
    }

    /// A copy-config to startup (`tree`, built from its source) or a
    /// delete-config of startup (None): checked here, validated and
    /// printed off the actor ([`Northbound::off_actor`]), written by the
    /// startup writer; the session's answer waits for the disk, the actor
    /// does not.
    fn queue_startup(
        &mut self,
        session: u32,
        tree: Result<Option<DataTree<'static>>, Vec<RpcError>>,
        reply: oneshot::Sender<RpcResult>,
    ) {
        match tree {
            Ok(Some(tree)) => match self.check_lock(session, Datastore::Startup) {
                Ok(()) => self.off_actor(move || {
                    let new = startup_validated(tree);
                    Box::new(move |nb: &mut Northbound| {
                        let change = new.and_then(|new| nb.startup_checked(session, Some(new)));
                        nb.submit_startup(session, change, reply)
                    })
                }),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            tree => {
                let change = tree.and_then(|t| blocking(|| self.startup_change(session, t)));
                self.submit_startup(session, change, reply);
            }
        }
    }

    /// Hand a checked change of startup to the startup writer.
    fn submit_startup(
        &mut self,
        session: u32,
        change: Result<(DataTree<'static>, StorageWrite), Vec<RpcError>>,
        reply: oneshot::Sender<RpcResult>,
    ) {
        let (tree, write) = match change {
            Ok(c) => c,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let queued = match &self.storage_writer {
            Some(w) => w.submit(write),
            None => Err(std::io::Error::other("no storage writer")),
        };
        match queued {
            Ok(()) => self.storage_queue.push_back(Queued::Startup {
                session,
                tree,
                reply,
            }),
            Err(e) => {
                let _ = reply.send(Err(io_error(e)));
            }
        }
    }

    /// Check a new startup datastore (`None`: deleted) against the lock,
    /// the YANG rules and the session's write access, and say what to
    /// write.
    fn startup_change(
        &self,
        session: u32,
        tree: Option<DataTree<'static>>,
    ) -> Result<(DataTree<'static>, StorageWrite), Vec<RpcError>> {
        self.check_lock(session, Datastore::Startup)?;
        let new = tree.map(startup_validated).transpose()?;
        self.startup_checked(session, new)
    }

    /// A new startup datastore, validated and printed (None: deleted),
    /// checked against the session's write access, with what to write.
    /// Access is checked against startup as the writes under way leave it.
    fn startup_checked(
        &self,
        session: u32,
        new: Option<(DataTree<'static>, String)>,
    ) -> Result<(DataTree<'static>, StorageWrite), Vec<RpcError>> {
        let base = self
            .storage_queue
            .iter()
            .rev()
            .find_map(|q| match q {
                Queued::Startup { tree, .. } => Some(tree),
                Queued::Persist(_) => None,
            })
            .unwrap_or(&self.startup);
        match new {
            Some((tree, xml)) => {
                self.check_writes(session, base, &tree)?;
                Ok((tree, StorageWrite::SaveStartup(xml)))
            }
            None => {
                let empty = yang::empty();
                self.check_writes(session, base, &empty)?;
                Ok((empty, StorageWrite::DeleteStartup))
            }
        }
    }

    /// [`startup_change`] written in place (no writer thread).
    fn write_startup_now(&mut self, session: u32, tree: Option<DataTree<'static>>) -> RpcResult {
        let (tree, write) = self.startup_change(session, tree)?;
        match write {
            StorageWrite::SaveStartup(xml) => self.store.write_startup(&xml),
            StorageWrite::DeleteStartup => self.store.delete_startup(),
            StorageWrite::SaveConfirm(rec) => self.store.write_confirm(&rec),
        }
        .map_err(io_error)?;
        self.startup = tree;
        info!(session, "startup datastore saved");
        Ok(Reply::Ok)
    }

    fn handle(&mut self, req: Request) {
        if self.busy() && Self::holds(&req) {
            self.held.push_back(req);
            return;
        }
        match req {
            Request::Register {
                user,
                source,
                counters,
                kill,
                reply,
            } => {
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                let mut start = Event::new("/ietf-netconf-notifications:netconf-session-start")
                    .leaf("username", &user)
                    .leaf("session-id", id);
                if let Some(ip) = source {
                    start = start.leaf("source-host", ip);
                }
                self.bus.emit(start);
                let login_time = monitoring::date_time(SystemTime::now());
                self.totals.in_sessions = self.totals.in_sessions.wrapping_add(1);
                self.sessions.insert(
                    id,
                    SessionInfo {
                        user,
                        kill,
                        source,
                        login_time,
                        counters,
                    },
                );
                let _ = reply.send(id);
            }
            Request::Unregister { session, reason } => {
                if let Some(info) = self.sessions.get(&session) {
                    if info.counters.bad_hello.load(Ordering::Relaxed) {
                        self.totals.in_bad_hellos = self.totals.in_bad_hellos.wrapping_add(1);
                    } else if !matches!(reason, "close-session" | "killed") {
                        // RFC 6022 dropped-sessions: not by close-session
                        // or kill-session
                        self.totals.dropped_sessions = self.totals.dropped_sessions.wrapping_add(1);
                    }
                }
                let reason = match reason {
                    "close-session" => "closed",
                    "client left" | "write failed" => "dropped",
                    "bad hello" => "bad-hello",
                    _ => "other",
                };
                self.session_ended(session, reason, None)
            }
            Request::Rpc { session, op, reply } => {
                if let Err(e) = self.check_exec(session, &op) {
                    let _ = reply.send(Err(e));
                    return;
                }
                if let Operation::BatchBackup {
                    service,
                    service_type,
                } = *op
                {
                    let rpc = crate::config::Rpc::BatchBackup {
                        service,
                        service_type,
                    };
                    self.call(session, &rpc, reply);
                    return;
                }
                let op = match *op {
                    Operation::CopyConfig {
                        target: Datastore::Startup,
                        source,
                    } if self.storage_writer.is_some() => {
                        let tree = self.source_tree(Datastore::Startup, source);
                        self.queue_startup(session, tree.map(Some), reply);
                        return;
                    }
                    Operation::DeleteConfig {
                        target: Datastore::Startup,
                    } if self.storage_writer.is_some() => {
                        self.queue_startup(session, Ok(None), reply);
                        return;
                    }
                    Operation::Commit(c) if self.storage_writer.is_some() => {
                        self.commit_queued(session, c, reply);
                        return;
                    }
                    Operation::Validate { source } => {
                        self.validate_queued(source, reply);
                        return;
                    }
                    Operation::EditConfig {
                        target: Datastore::Candidate,
                        default_operation,
                        test_option: TestOption::TestOnly,
                        error_option,
                        config,
                    } => {
                        self.edit_test_only(
                            session,
                            default_operation,
                            error_option,
                            config,
                            reply,
                        );
                        return;
                    }
                    Operation::GetConfig {
                        source,
                        filter: Some(filter @ Filter::XPath { .. }),
                        with_defaults,
                    } => {
                        // the client's XPath runs off the actor, on a copy
                        let tree = blocking(|| self.config_copy(session, source, &filter));
                        spawn_filtered(tree, filter, with_defaults, reply);
                        return;
                    }
                    Operation::Get {
                        filter,
                        with_defaults,
                    } => {
                        let t0 = std::time::Instant::now();
                        let job = blocking(|| self.get_job(session, filter, with_defaults));
                        if job.costly() {
                            job.spawn(reply, self.writes.clone());
                            tracing::debug!(
                                session,
                                us = t0.elapsed().as_micros() as u64,
                                "get taken (the rest off the actor)"
                            );
                            return;
                        }
                        let r = blocking(|| job.run());
                        tracing::debug!(session, us = t0.elapsed().as_micros() as u64, "get");
                        let _ = reply.send(r);
                        return;
                    }
                    op => op,
                };
                let t0 = std::time::Instant::now();
                let r = blocking(|| self.operation(session, op));
                tracing::debug!(
                    session,
                    us = t0.elapsed().as_micros() as u64,
                    ok = r.is_ok(),
                    "rpc"
                );
                let _ = reply.send(r);
            }
        }
    }

    /// An rpc a subsystem carries out: its answer is awaited in a task of
    /// its own, so that the other sessions go on meanwhile.
    fn call(&mut self, session: u32, rpc: &crate::config::Rpc, reply: oneshot::Sender<RpcResult>) {
        let fut = self.subsystems.iter_mut().find_map(|s| s.call(rpc));
        let Some(fut) = fut else {
            let _ = reply.send(Err(vec![RpcError::operation_failed(format!(
                "no subsystem carries out {rpc:?}"
            ))]));
            return;
        };
        info!(session, ?rpc, "rpc");
        tokio::spawn(async move {
            let r = match fut.await {
                Ok(xml) => Ok(Reply::Raw(xml)),
                Err(f) => Err(vec![match f.element {
                    Some(e) => RpcError::bad_element(
                        ErrorType::Application,
                        ErrorTag::InvalidValue,
                        e,
                        &f.message,
                    ),
                    None => RpcError::operation_failed(f.message),
                }]),
            };
            let _ = reply.send(r);
        });
    }

    /// RFC 6241 §7.5/§8.4: what a session's end releases; RFC 6470
    /// netconf-session-end says why it ended.
    fn session_ended(&mut self, session: u32, reason: &str, killed_by: Option<u32>) {
        let who = self.who(session);
        if let Some(info) = self.sessions.remove(&session) {
            let mut e = Event::new("/ietf-netconf-notifications:netconf-session-end")
                .leaf("username", &info.user)
                .leaf("session-id", session)
                .leaf("termination-reason", reason);
            if let Some(ip) = info.source {
                e = e.leaf("source-host", ip);
            }
            if let Some(by) = killed_by {
                e = e.leaf("killed-by", by);
            }
            self.bus.emit(e);
            self.totals.add(&info.counters);
        }
        let held: Vec<Datastore> = self
            .locks
            .iter()
            .filter(|(_, s)| **s == session)
            .map(|(d, _)| *d)
            .collect();
        for d in held {
            self.locks.remove(&d);
            if d == Datastore::Candidate {
                info!(
                    session,
                    "candidate lock holder left: discarding its changes"
                );
                self.discard_candidate();
            }
        }
        // Its edits (if any) stay in the candidate, unlocked: nobody may
        // lock it until they are committed or discarded.
        self.candidate_editors.remove(&session);
        if self
            .pending
            .as_ref()
            .is_some_and(|p| p.owner == Some(session))
        {
            info!(
                session,
                "session of an unconfirmed commit ended: rolling back"
            );
            // a refusal is logged and retried
            if self.rollback_pending(&who).is_ok() {
                self.confirmed_commit_event("cancel", &who, None);
            }
        }
    }

    fn discard_candidate(&mut self) {
        if !self.scope.is_empty() {
            self.candidate = yang::dup(&self.running);
        }
        self.candidate_modified = false;
        self.candidate_editors.clear();
        self.scope = validate::Scope::default();
    }

    /// `session` changed the candidate.
    fn candidate_edited(&mut self, session: u32) {
        self.candidate_modified = true;
        self.candidate_editors.insert(session);
    }

    /// What `get-config` of `source` with `filter` reads, as a copy a
    /// thread may take: the entries a keyed selection names (or the
    /// whole datastore), without what `session`'s user may not read.
    fn config_copy(&self, session: u32, source: Datastore, filter: &Filter) -> DataTree<'static> {
        let tree = self.tree(source);
        let mut copy = select::Plan::of(Some(filter))
            .narrow(tree)
            .unwrap_or_else(|| yang::dup(tree));
        self.prune_reads(session, &mut copy);
        copy
    }

    fn tree(&self, d: Datastore) -> &DataTree<'static> {
        match d {
            Datastore::Running => &self.running,
            Datastore::Candidate => &self.candidate,
            Datastore::Startup => &self.startup,
        }
    }

    /// in-use when another session holds the lock on `d`.
    fn check_lock(&self, session: u32, d: Datastore) -> Result<(), Vec<RpcError>> {
        match self.locks.get(&d) {
            Some(holder) if *holder != session => Err(vec![RpcError::protocol(
                ErrorTag::InUse,
                format!("the {} datastore is locked by session {holder}", d.name()),
            )
            .with_info("session-id", holder.to_string())]),
            _ => Ok(()),
        }
    }

    /// Run one operation for `session` as the actor does, without the
    /// actor: the fuzz targets (`fuzz/`) drive the datastores with it.
    pub fn execute(&mut self, session: u32, op: Operation) -> RpcResult {
        self.operation(session, op)
    }

    fn operation(&mut self, session: u32, op: Operation) -> RpcResult {
        match op {
            Operation::Get {
                filter,
                with_defaults,
            } => self.get_job(session, filter, with_defaults).run(),
            Operation::GetConfig {
                source,
                filter,
                with_defaults,
            } if self.nacm_for(session).is_some() => {
                // the user's view: no cached print of running
                let mut tree = yang::dup(self.tree(source));
                self.prune_reads(session, &mut tree);
                filtered(&tree, filter.as_ref(), with_defaults, None)
            }
            Operation::GetConfig {
                source: Datastore::Running,
                filter: None,
                with_defaults,
            } => {
                // Running changes only at commit: its unfiltered print is
                // kept until then (controllers poll it).
                let xml = self
                    .running_xml
                    .entry(with_defaults)
                    .or_insert_with(|| yang::print_xml(&self.running, with_defaults));
                Ok(Reply::Data(xml.clone()))
            }
            Operation::GetConfig {
                source,
                filter,
                with_defaults,
            } => {
                // a keyed selection copies its entries alone (libyang's
                // key lookup), not the whole datastore
                if let Some(part) = select::Plan::of(filter.as_ref()).narrow(self.tree(source)) {
                    return filtered(&part, filter.as_ref(), with_defaults, None);
                }
                let prints = (source == Datastore::Running).then_some(&mut self.running_nodes);
                let tree = match source {
                    Datastore::Running => &self.running,
                    Datastore::Candidate => &self.candidate,
                    Datastore::Startup => &self.startup,
                };
                filtered(tree, filter.as_ref(), with_defaults, prints)
            }
            Operation::EditConfig {
                target,
                default_operation,
                test_option,
                error_option,
                config,
            } => self.edit_config(session, target, default_operation, test_option, error_option, &config),
            Operation::CopyConfig { target, source } => self.copy_config(session, target, source),
            Operation::DeleteConfig { target } => match target {
                Datastore::Startup => self.write_startup_now(session, None),
                other => Err(vec![RpcError::bad_element(
                    ErrorType::Protocol,
                    ErrorTag::InvalidValue,
                    "target",
                    &format!("the {} datastore cannot be deleted", other.name()),
                )]),
            },
            Operation::Lock { target } => self.lock(session, target),
            Operation::Unlock { target } => match self.locks.get(&target) {
                Some(s) if *s == session => {
                    self.locks.remove(&target);
                    Ok(Reply::Ok)
                }
                Some(s) => Err(vec![RpcError::protocol(
                    ErrorTag::OperationFailed,
                    format!("the {} lock is held by session {s}", target.name()),
                )
                .with_info("session-id", s.to_string())]),
                None => Err(vec![RpcError::protocol(
                    ErrorTag::OperationFailed,
                    format!("the {} datastore is not locked", target.name()),
                )]),
            },
            Operation::CloseSession => Ok(Reply::Ok),
            Operation::KillSession { session_id } => {
                if session_id == session {
                    return Err(vec![RpcError::bad_element(
                        ErrorType::Protocol,
                        ErrorTag::InvalidValue,
                        "session-id",
                        "a session cannot kill itself; use close-session",
                    )]);
                }
                let Some(info) = self.sessions.get(&session_id) else {
                    return Err(vec![RpcError::bad_element(
                        ErrorType::Protocol,
                        ErrorTag::InvalidValue,
                        "session-id",
                        &format!("no session {session_id}"),
                    )]);
                };
                info.kill.cancel();
                info!(session, killed = session_id, user = %info.user, "kill-session");
                self.session_ended(session_id, "killed", Some(session));
                Ok(Reply::Ok)
            }
            Operation::Commit(c) => {
                let started = std::time::Instant::now();
                let r = self.commit(session, c);
                self.stats.commit_duration.observe(started.elapsed());
                r
            }
            Operation::CancelCommit { persist_id } => self.cancel_commit(session, persist_id),
            Operation::DiscardChanges => {
                self.check_lock(session, Datastore::Candidate)?;
                self.discard_candidate();
                Ok(Reply::Ok)
            }
            Operation::Validate { source } => {
                match source {
                    Source::Datastore(Datastore::Candidate) => {
                        validate::candidate(&self.running_config, &self.candidate, &self.scope)?;
                    }
                    Source::Datastore(d) => {
                        validate::full(&mut yang::dup(self.tree(d)))?;
                    }
                    Source::Config(cfg) => {
                        validate::full(&mut config_tree(&cfg)?)?;
                    }
                }
                Ok(Reply::Ok)
            }
            Operation::GetSchema {
                identifier,
                version,
                format,
            } => get_schema(&identifier, version.as_deref(), format.as_deref()),
            Operation::CreateSubscription(_) => Err(vec![RpcError::operation_failed(
                "create-subscription is carried out by the session",
            )]),
            // carried out by its subsystem (see `call`)
            Operation::BatchBackup { service, .. } => Err(vec![RpcError::operation_failed(
                format!("remote-backup-service '{service}': batch-backup is not an operation on the datastores"),
            )]),
        }
    }

    /// What a `<get>` reads, taken on the actor: running (or, for a keyed
    /// selection, its selected entries), the state of the subsystems read
    /// on the actor, and the handles of those read off it
    /// (`Subsystem::state_reader`), each with what the filter selects of
    /// it.
    fn get_job(&self, session: u32, filter: Option<Filter>, wd: WithDefaults) -> GetJob {
        if crate::fault::armed("northbound-panic") {
            panic!("fault point northbound-panic");
        }
        let (filter, stream) = match self.stream_of(session, filter.as_ref()) {
            None => (filter, None),
            Some((select::Rest::Filter(rest), part)) => (rest, Some(part)),
            Some((select::Rest::Nothing, part)) => {
                // the list's entries alone: nothing else to read
                return GetJob {
                    tree: yang::empty(),
                    states: Vec::new(),
                    filter: None,
                    wd,
                    nacm: None,
                    stream: Some(part),
                    only_stream: true,
                    writes: None,
                };
            }
        };
        let plan = select::Plan::of(filter.as_ref());
        let mut tree = plan
            .narrow(&self.running)
            .unwrap_or_else(|| yang::dup(&self.running));
        let selected = plan.namespaces();
        self.add_discovery(&mut tree, selected.as_ref());
        if selected
            .as_ref()
            .is_none_or(|sel| sel.contains(notify::STREAMS_NS))
        {
            let (parts, _) = yang::parse_state_entries(&self.bus.streams_xml());
            for state in &parts {
                if yang::merge(&mut tree, state).is_err() {
                    warn!("cannot merge the notification streams");
                }
            }
        }
        if selected.as_ref().is_none_or(|sel| sel.contains(nacm::NS)) {
            match yang::parse_state_xml(&self.nacm_counters.state_xml()) {
                Ok(state) => {
                    if yang::merge(&mut tree, &state).is_err() {
                        warn!("cannot merge the nacm counters");
                    }
                }
                Err(e) => warn!(error = ?e.first(), "nacm counters refused by libyang"),
            }
        }
        let mut states = Vec::new();
        for s in &self.subsystems {
            let ns = s.namespaces();
            if let Some(sel) = &selected {
                if !ns.is_empty() && !ns.iter().any(|n| sel.contains(*n)) {
                    continue;
                }
            }
            let mut sel = if ns.is_empty() {
                None
            } else {
                plan.state_of(ns)
            };
            if let Some(part) = stream.as_ref().filter(|p| ns.contains(&p.ns)) {
                // the streamed list is left out of the subsystem's state
                let sel = sel.get_or_insert_with(|| part.others.clone());
                sel.retain(|c| c.name != part.list);
            }
            let state = match s.state_reader() {
                Some(r) => State::Reader(r, sel),
                None => State::Xml(s.state_xml_of(sel.as_deref())),
            };
            states.push((s.name(), state));
        }
        GetJob {
            tree,
            states,
            filter,
            wd,
            nacm: self.nacm_for(session),
            stream,
            only_stream: false,
            writes: None,
        }
    }

    /// The list a `<get>` streams, when its filter selects whole entries
    /// of a list a subsystem streams (`StateReader::entries`) and NACM can
    /// take nothing out of them: the rest of the read, and the entries
    /// (taken here, in O(1)/O(pieces): written by the session).
    fn stream_of(
        &self,
        session: u32,
        filter: Option<&Filter>,
    ) -> Option<(select::Rest, StreamPart)> {
        for s in &self.subsystems {
            let Some(reader) = s.state_reader() else {
                continue;
            };
            let Some((top, list)) = reader.streamed() else {
                continue;
            };
            let Some(ns) = s.namespaces().first().copied() else {
                continue;
            };
            let Some(st) = select::streamed(filter, ns, top, list) else {
                continue;
            };
            let schema = top_schema(&Element::new(ns, top)).ok()?;
            if let Some((cfg, user)) = self.nacm_for(session) {
                if cfg.rules_for(&user).may_deny_reads()
                    || yang::default_deny(&schema) == yang::DefaultDeny::All
                {
                    return None;
                }
            }
            let names: Vec<String> = schema.children().map(|c| c.name().to_string()).collect();
            let at = names.iter().position(|n| n == list)?;
            let entries = reader.entries(list, &st.matches)?;
            let part = StreamPart {
                ns,
                top,
                list,
                after: names[at + 1..].to_vec(),
                others: names
                    .iter()
                    .filter(|n| *n != list)
                    .map(|n| crate::config::Selected {
                        name: n.clone(),
                        matches: Vec::new(),
                    })
                    .collect(),
                entries,
            };
            return Some((st.rest, part));
        }
        None
    }

    /// Add the discovery state to a `<get>` tree, when the filter selects
    /// its namespace: the YANG library and `netconf-state`.
    fn add_discovery(&self, tree: &mut DataTree<'static>, selected: Option<&BTreeSet<String>>) {
        let wanted = |ns: &str| selected.is_none_or(|sel| sel.contains(ns));
        if wanted(monitoring::YANG_LIBRARY_NS) && yang::merge(tree, &yang::yang_library()).is_err()
        {
            warn!("cannot merge the yang library");
        }
        if wanted(monitoring::NS) {
            let xml = self.netconf_state();
            match yang::parse_state_xml(&xml) {
                Ok(state) => {
                    if yang::merge(tree, &state).is_err() {
                        warn!("cannot merge netconf-state");
                    }
                }
                Err(e) => warn!(error = ?e.first(), "netconf-state refused by libyang"),
            }
        }
    }

    /// The RFC 6022 `netconf-state` document.
    fn netconf_state(&self) -> String {
        let datastores: Vec<monitoring::DatastoreView<'_>> =
            [Datastore::Running, Datastore::Candidate, Datastore::Startup]
                .into_iter()
                .map(|d| monitoring::DatastoreView {
                    name: d.name(),
                    lock: self.locks.get(&d).map(|s| {
                        (
                            *s,
                            self.locked_at
                                .get(&d)
                                .map(String::as_str)
                                .unwrap_or_default(),
                        )
                    }),
                })
                .collect();
        let mut ids: Vec<&u32> = self.sessions.keys().collect();
        ids.sort();
        let mut totals = self.totals;
        let (ended, closed) = self.stats.overflows();
        // zero-based-counter32: wraps as the RFC 6022 counters do
        totals.slow_subscriptions_ended = ended as u32;
        totals.slow_subscribers_closed = closed as u32;
        let sessions: Vec<monitoring::SessionView<'_>> = ids
            .into_iter()
            .map(|id| {
                let s = &self.sessions[id];
                totals.add(&s.counters);
                monitoring::SessionView {
                    id: *id,
                    user: &s.user,
                    source: s.source,
                    login_time: &s.login_time,
                    counters: &s.counters,
                }
            })
            .collect();
        monitoring::netconf_state(
            &self.capabilities,
            &datastores,
            &sessions,
            &self.start_time,
            &totals,
        )
    }

    fn edit_config(
        &mut self,
        session: u32,
        target: Datastore,
        default_op: EditOp,
        test_option: TestOption,
        error_option: ErrorOption,
        config: &Element,
    ) -> RpcResult {
        match target {
            Datastore::Candidate => {}
            Datastore::Running => {
                return Err(vec![RpcError::protocol(
                    ErrorTag::OperationNotSupported,
                    "running is not writable (no :writable-running): edit the candidate and commit",
                )])
            }
            Datastore::Startup => {
                return Err(vec![RpcError::protocol(
                    ErrorTag::OperationNotSupported,
                    "startup is not an edit-config target: use copy-config",
                )])
            }
        }
        self.check_lock(session, target)?;
        let mut scope_after = self.scope.clone();
        // A plain merge is libyang's merge of the parsed <config>, done on
        // copies (test-only: on a copy of the whole candidate); everything
        // else is walked node by node on a copy. Either way a failed edit
        // changes nothing.
        let test_only = test_option == TestOption::TestOnly;
        // A user NACM restricts edits a copy, checked before it replaces
        // the candidate.
        let checked = self.nacm_for(session).is_some();
        let mut copy = (test_only || checked).then(|| yang::dup(&self.candidate));
        let fast = edit::fast_path(
            copy.as_mut().unwrap_or(&mut self.candidate),
            config,
            default_op,
        );
        let (work, edit_result) = match fast {
            Some(entries) => {
                scope_after.merge(edit_scope(config, default_op, entries));
                (copy, Ok(()))
            }
            None => {
                // default-operation replace: the <config> is the whole
                // new datastore.
                let mut work = if default_op == EditOp::Replace {
                    yang::empty()
                } else {
                    copy.unwrap_or_else(|| yang::dup(&self.candidate))
                };
                let continue_on_error = error_option == ErrorOption::ContinueOnError;
                let mut entries = BTreeSet::new();
                let r = edit::apply(
                    &mut work,
                    config,
                    default_op,
                    continue_on_error,
                    &mut entries,
                );
                if let Err(errors) = &r {
                    if !continue_on_error {
                        return Err(errors.clone());
                    }
                }
                scope_after.merge(edit_scope(config, default_op, entries));
                (Some(work), r)
            }
        };
        if checked {
            let edited = work.as_ref().unwrap_or(&self.candidate);
            self.check_writes(session, &self.candidate, edited)?;
        }
        if test_only {
            // (a test-only edit always worked on a copy)
            let edited = work.as_ref().unwrap_or(&self.candidate);
            validate::candidate(&self.running_config, edited, &scope_after)?;
            return edit_result.map(|_| Reply::Ok);
        }
        if let Some(work) = work {
            self.candidate = work;
        }
        self.scope = scope_after;
        self.candidate_edited(session);
        edit_result.map(|_| Reply::Ok)
    }

    /// The tree a copy-config to `target` copies from `source`.
    fn source_tree(
        &self,
        target: Datastore,
        source: Source,
    ) -> Result<DataTree<'static>, Vec<RpcError>> {
        if let Source::Datastore(s) = &source {
            if *s == target {
                return Err(vec![RpcError::bad_element(
                    ErrorType::Protocol,
                    ErrorTag::InvalidValue,
                    "target",
                    "source and target are the same datastore",
                )]);
            }
        }
        match source {
            Source::Datastore(d) => Ok(yang::dup(self.tree(d))),
            Source::Config(cfg) => config_tree(&cfg),
        }
    }

    fn copy_config(&mut self, session: u32, target: Datastore, source: Source) -> RpcResult {
        let tree = self.source_tree(target, source)?;
        self.check_lock(session, target)?;
        match target {
            Datastore::Running => Err(vec![RpcError::protocol(
                ErrorTag::OperationNotSupported,
                "running is not writable (no :writable-running): copy to the candidate and commit",
            )]),
            Datastore::Candidate => {
                self.check_writes(session, &self.candidate, &tree)?;
                self.candidate = tree;
                self.scope = validate::Scope::all();
                self.candidate_edited(session);
                Ok(Reply::Ok)
            }
            Datastore::Startup => self.write_startup_now(session, Some(tree)),
        }
    }

    fn lock(&mut self, session: u32, target: Datastore) -> RpcResult {
        if let Some(holder) = self.locks.get(&target) {
            return Err(vec![RpcError::protocol(
                ErrorTag::LockDenied,
                format!(
                    "the {} datastore is locked by session {holder}",
                    target.name()
                ),
            )
            .with_info("session-id", holder.to_string())]);
        }
        if target == Datastore::Running {
            if let Some(p) = &self.pending {
                if p.owner != Some(session) {
                    return Err(vec![RpcError::protocol(
                        ErrorTag::LockDenied,
                        "a confirmed commit of another session is pending on running",
                    )
                    .with_info("session-id", p.owner.unwrap_or(0).to_string())]);
                }
            }
        }
        // RFC 6241 §7.5: not over uncommitted changes, unless they are all
        // the requester's own.
        let own_changes = self.candidate_editors.iter().all(|s| *s == session)
            && self.candidate_editors.contains(&session);
        if target == Datastore::Candidate && self.candidate_modified && !own_changes {
            let other = self.candidate_editors.iter().find(|s| **s != session);
            let message = match other {
                Some(_) => "the candidate has uncommitted changes of another session",
                None => "the candidate has uncommitted changes of a session that has ended: commit or discard-changes first",
            };
            return Err(vec![RpcError::protocol(ErrorTag::LockDenied, message)
                .with_info("session-id", other.copied().unwrap_or(0).to_string())]);
        }
        self.locks.insert(target, session);
        self.locked_at
            .insert(target, monitoring::date_time(SystemTime::now()));
        Ok(Reply::Ok)
    }

    /// A commit in place: the `<persist>` record (when there is one) is
    /// written here, then the commit installed.
    fn commit(&mut self, session: u32, c: Commit) -> RpcResult {
        let (new, record) = self.commit_prepared(session, &c)?;
        if let Some(rec) = &record {
            self.store.write_confirm(rec).map_err(io_error)?;
        }
        self.commit_install(session, &c, new)
    }

    /// A commit on the actor: a large change is validated on a thread of
    /// its own ([`Northbound::off_actor`]); one with a `<persist>` record
    /// is installed once the storage writer has the record on disk
    /// (`written`). The actor serves the reads meanwhile and holds what
    /// changes something.
    fn commit_queued(&mut self, session: u32, c: Commit, reply: oneshot::Sender<RpcResult>) {
        let started = std::time::Instant::now();
        if let Err(e) = blocking(|| self.commit_checks(session, &c)) {
            self.stats.commit_duration.observe(started.elapsed());
            let _ = reply.send(Err(e));
            return;
        }
        if self.large_change() {
            let (running, candidate, scope) = self.candidate_copy();
            self.off_actor(move || {
                let new = validate::candidate(&running, &candidate, &scope);
                Box::new(move |nb: &mut Northbound| {
                    nb.commit_validated(session, c, new, reply, started)
                })
            });
            return;
        }
        let new =
            blocking(|| validate::candidate(&self.running_config, &self.candidate, &self.scope));
        self.commit_validated(session, c, new, reply, started);
    }

    /// A `<validate>` on the actor: of a large change of the candidate, of
    /// running or startup, or of a `<config>`, on a thread of its own,
    /// which answers.
    fn validate_queued(&mut self, source: Source, reply: oneshot::Sender<RpcResult>) {
        let answer = move |r: Result<(), Vec<RpcError>>| -> OnActor {
            let _ = reply.send(r.map(|_| Reply::Ok));
            Box::new(|_: &mut Northbound| {})
        };
        match source {
            Source::Datastore(Datastore::Candidate) if !self.large_change() => {
                let r = blocking(|| {
                    validate::candidate(&self.running_config, &self.candidate, &self.scope)
                });
                answer(r.map(|_| ()))(self);
            }
            Source::Datastore(Datastore::Candidate) => {
                let (running, candidate, scope) = self.candidate_copy();
                self.off_actor(move || {
                    answer(validate::candidate(&running, &candidate, &scope).map(|_| ()))
                });
            }
            Source::Datastore(d) => {
                let mut tree = blocking(|| yang::dup(self.tree(d)));
                self.off_actor(move || answer(validate::full(&mut tree).map(|_| ())));
            }
            Source::Config(cfg) => self.off_actor(move || {
                answer(config_tree(&cfg).and_then(|mut t| validate::full(&mut t).map(|_| ())))
            }),
        }
    }

    /// A test-only `<edit-config>` of the candidate on the actor: the edit
    /// is made on a copy standing in for the candidate (its lock, access
    /// and edit errors answered as for any edit), which is then validated
    /// as a commit would, off the actor when the change is large; the
    /// candidate stays as it was.
    fn edit_test_only(
        &mut self,
        session: u32,
        default_op: EditOp,
        error_option: ErrorOption,
        config: Element,
        reply: oneshot::Sender<RpcResult>,
    ) {
        let copy = blocking(|| yang::dup(&self.candidate));
        let candidate = std::mem::replace(&mut self.candidate, copy);
        let scope = self.scope.clone();
        let modified = std::mem::replace(&mut self.candidate_modified, false);
        let editors = self.candidate_editors.clone();
        let edit_result = blocking(|| {
            self.edit_config(
                session,
                Datastore::Candidate,
                default_op,
                TestOption::TestThenSet,
                error_option,
                &config,
            )
        });
        // whether the edit was made (with continue-on-error, in part)
        let made = self.candidate_modified;
        let large = self.large_change();
        let edited = std::mem::replace(&mut self.candidate, candidate);
        let edited_scope = std::mem::replace(&mut self.scope, scope);
        self.candidate_modified = modified;
        self.candidate_editors = editors;
        if !made {
            let _ = reply.send(edit_result);
            return;
        }
        let answer = move |valid: Result<(), Vec<RpcError>>| -> OnActor {
            let _ = reply.send(valid.and(edit_result));
            Box::new(|_: &mut Northbound| {})
        };
        if !large {
            let valid = blocking(|| {
                validate::candidate(&self.running_config, &edited, &edited_scope).map(|_| ())
            });
            answer(valid)(self);
            return;
        }
        let running = self.running_config.clone();
        self.off_actor(move || {
            answer(validate::candidate(&running, &edited, &edited_scope).map(|_| ()))
        });
    }

    /// Whether the candidate's change is large: the whole datastore, or
    /// many entries (a thread and a copy cost more than they spare on a
    /// small one).
    fn large_change(&self) -> bool {
        self.scope.other || self.scope.entries.len() >= LARGE_CHANGE
    }

    /// What validating the candidate off the actor needs: copies of
    /// running's configuration, the candidate and its scope.
    fn candidate_copy(&self) -> (Config, DataTree<'static>, validate::Scope) {
        let t0 = std::time::Instant::now();
        let copy = (
            self.running_config.clone(),
            blocking(|| yang::dup(&self.candidate)),
            self.scope.clone(),
        );
        tracing::debug!(
            us = t0.elapsed().as_micros() as u64,
            "candidate copied for a validation off the actor"
        );
        copy
    }

    /// Run `job`, a libyang validation, on a thread of its own (at the
    /// operations' nice); what it returns then runs on the actor
    /// (`off_actor_done`). Until then the actor serves reads and holds
    /// what changes something ([`Northbound::busy`]), so that what follows
    /// the job finds the datastores as the job saw them. Without the actor
    /// (no `off_actor_tx`), or without a thread to be had, the job runs
    /// here.
    fn off_actor(&mut self, job: impl FnOnce() -> OnActor + Send + 'static) {
        let Some(tx) = self.off_actor_tx.clone() else {
            blocking(job)(self);
            return;
        };
        // (the job comes back from a thread that could not start)
        let job = Arc::new(std::sync::Mutex::new(Some(job)));
        let theirs = job.clone();
        let spawned = std::thread::Builder::new()
            .name("validate".into())
            .spawn(move || {
                let job = theirs.lock().unwrap_or_else(|p| p.into_inner()).take();
                let Some(job) = job else { return };
                let then = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    crate::sched::with_nice(crate::sched::OPERATION_NICE, job)
                }));
                let then = then.unwrap_or_else(|_| {
                    // its session's answer went with it: operation-failed
                    error!("a validation off the actor panicked");
                    Box::new(|_: &mut Northbound| {})
                });
                let _ = tx.send(then);
            });
        match spawned {
            Ok(_) => self.off_actor = Some(std::time::Instant::now()),
            Err(e) => {
                warn!(error = %e, "no thread to validate a change: validated on the actor");
                let job = job.lock().unwrap_or_else(|p| p.into_inner()).take();
                if let Some(job) = job {
                    blocking(job)(self);
                }
            }
        }
    }

    /// A job off the actor is done: what it left to do here, then the
    /// requests held meanwhile.
    fn off_actor_done(&mut self, then: OnActor) {
        if let Some(started) = self.off_actor.take() {
            tracing::debug!(
                us = started.elapsed().as_micros() as u64,
                "validated off the actor"
            );
        }
        then(self);
        self.release_held();
    }

    /// A checked commit once its candidate is validated (`new`):
    /// prepared, then installed, or queued behind its `<persist>` record.
    fn commit_validated(
        &mut self,
        session: u32,
        c: Commit,
        new: Result<validate::Validated, Vec<RpcError>>,
        reply: oneshot::Sender<RpcResult>,
        started: std::time::Instant,
    ) {
        let prepared = new.and_then(|new| {
            let t0 = std::time::Instant::now();
            let r = blocking(|| self.commit_finish(&c, new));
            tracing::debug!(us = t0.elapsed().as_micros() as u64, "commit prepared");
            r
        });
        let (new, record) = match prepared {
            Ok(p) => p,
            Err(e) => {
                self.stats.commit_duration.observe(started.elapsed());
                let _ = reply.send(Err(e));
                return;
            }
        };
        let Some(rec) = record else {
            let r = blocking(|| self.commit_install(session, &c, new));
            self.stats.commit_duration.observe(started.elapsed());
            tracing::debug!(
                session,
                us = started.elapsed().as_micros() as u64,
                ok = r.is_ok(),
                "rpc"
            );
            let _ = reply.send(r);
            return;
        };
        let queued = match &self.storage_writer {
            Some(w) => w.submit(StorageWrite::SaveConfirm(rec)),
            None => Err(std::io::Error::other("no storage writer")),
        };
        match queued {
            Ok(()) => self
                .storage_queue
                .push_back(Queued::Persist(Box::new(Persisting {
                    session,
                    commit: c,
                    new,
                    reply,
                    started,
                }))),
            Err(e) => {
                let _ = reply.send(Err(io_error(e)));
            }
        }
    }

    /// A commit's checks, validation and prepare (nothing changes yet),
    /// and the `<persist>` record to write first when it is a confirmed
    /// commit given one (or following one that was): a commit that cannot
    /// be persisted is refused and changes nothing.
    fn commit_prepared(
        &mut self,
        session: u32,
        c: &Commit,
    ) -> Result<(validate::Validated, Option<PersistedConfirm>), Vec<RpcError>> {
        self.commit_checks(session, c)?;
        let new = validate::candidate(&self.running_config, &self.candidate, &self.scope)?;
        self.commit_finish(c, new)
    }

    /// What a commit must pass before its candidate is validated: the
    /// lock, the pending confirmed commit, and the user's write access.
    fn commit_checks(&self, session: u32, c: &Commit) -> Result<(), Vec<RpcError>> {
        self.check_lock(session, Datastore::Running)?;
        if let Some(p) = &self.pending {
            match &p.persist {
                Some(id) => {
                    if c.persist_id.as_deref() != Some(id.as_str()) {
                        return Err(vec![RpcError::bad_element(
                            ErrorType::Protocol,
                            ErrorTag::InvalidValue,
                            "persist-id",
                            "a persisted confirmed commit is pending: give its persist-id",
                        )]);
                    }
                }
                None => {
                    if p.owner != Some(session) {
                        return Err(vec![RpcError::protocol(
                            ErrorTag::InUse,
                            "a confirmed commit of another session is pending",
                        )
                        .with_info("session-id", p.owner.unwrap_or(0).to_string())]);
                    }
                }
            }
        } else if c.persist_id.is_some() {
            return Err(vec![RpcError::bad_element(
                ErrorType::Protocol,
                ErrorTag::InvalidValue,
                "persist-id",
                "no confirmed commit is pending",
            )]);
        }
        // RFC 8341 §3.2.8: the commit writes the candidate's changes to
        // running; each must be writable by this user.
        self.check_writes(session, &self.running, &self.candidate)
    }

    /// A checked commit's validated candidate prepared on the subsystems,
    /// with the `<persist>` record to write before it is installed.
    fn commit_finish(
        &mut self,
        c: &Commit,
        new: validate::Validated,
    ) -> Result<(validate::Validated, Option<PersistedConfirm>), Vec<RpcError>> {
        self.prepare(&new)?;
        // What the confirmed-commit file must say once this commit is in
        // effect.
        let persist = c
            .persist
            .clone()
            .or_else(|| self.pending.as_ref().and_then(|p| p.persist.clone()))
            .filter(|_| c.confirmed);
        let record = persist.map(|id| {
            // A follow-up confirmed commit keeps the original rollback
            // point; the configuration under test is the candidate
            // (running once this commit is installed).
            let rollback = self.pending.as_ref().map_or(&self.running, |p| &p.rollback);
            PersistedConfirm {
                persist_id: id,
                deadline_unix_ms: now_unix_ms() + c.confirm_timeout as u64 * 1000,
                rollback_xml: yang::print_xml(rollback, WithDefaults::Explicit),
                pending_xml: yang::print_xml(&self.candidate, WithDefaults::Explicit),
            }
        });
        Ok((new, record))
    }

    /// Install a prepared commit (its `<persist>` record, if any, is on
    /// disk): running, the pending confirmed commit, the events.
    fn commit_install(&mut self, session: u32, c: &Commit, new: validate::Validated) -> RpcResult {
        if c.confirmed {
            let deadline = Instant::now() + Duration::from_secs(c.confirm_timeout as u64);
            let event = if self.pending.is_some() {
                "extend"
            } else {
                "start"
            };
            let p = match self.pending.take() {
                Some(mut p) => {
                    p.deadline = deadline;
                    if c.persist.is_some() {
                        p.persist = c.persist.clone();
                        p.owner = None;
                    }
                    p
                }
                None => PendingConfirm {
                    rollback: yang::dup(&self.running),
                    deadline,
                    owner: if c.persist.is_some() {
                        None
                    } else {
                        Some(session)
                    },
                    persist: c.persist.clone(),
                },
            };
            let who = self.who(session);
            self.apply(new, &who);
            self.confirmed_commit_event(event, &who, Some(c.confirm_timeout));
            info!(
                session,
                timeout = c.confirm_timeout,
                persist = p.persist.is_some(),
                "confirmed commit"
            );
            self.pending = Some(p);
        } else if let Some(p) = &self.pending {
            if p.persist.is_some() {
                self.store.delete_confirm().map_err(io_error)?;
            }
            let who = self.who(session);
            self.apply(new, &who);
            self.pending = None;
            self.confirmed_commit_event("complete", &who, None);
            info!(session, "confirmed commit confirmed");
        } else {
            self.apply(new, &self.who(session));
            info!(session, "commit");
        }
        Ok(Reply::Ok)
    }

    fn cancel_commit(&mut self, session: u32, persist_id: Option<String>) -> RpcResult {
        let Some(p) = &self.pending else {
            return Err(vec![RpcError::protocol(
                ErrorTag::OperationFailed,
                "no confirmed commit is pending",
            )]);
        };
        match (&p.persist, &persist_id) {
            (Some(id), Some(given)) if id == given => {}
            (Some(_), _) => {
                return Err(vec![RpcError::bad_element(
                    ErrorType::Protocol,
                    ErrorTag::InvalidValue,
                    "persist-id",
                    "persist-id does not match the pending confirmed commit",
                )])
            }
            (None, Some(_)) => {
                return Err(vec![RpcError::bad_element(
                    ErrorType::Protocol,
                    ErrorTag::InvalidValue,
                    "persist-id",
                    "the pending confirmed commit was not persisted",
                )])
            }
            (None, None) => {
                if p.owner != Some(session) {
                    return Err(vec![RpcError::protocol(
                        ErrorTag::InUse,
                        "the pending confirmed commit belongs to another session",
                    )]);
                }
            }
        }
        let who = self.who(session);
        self.rollback_pending(&who)?;
        self.confirmed_commit_event("cancel", &who, None);
        Ok(Reply::Ok)
    }

    /// Roll back to the configuration before the pending confirmed commit.
    /// The rollback is installed before the persisted record goes, so that
    /// a refused rollback leaves the commit pending (and retried after
    /// `ROLLBACK_RETRY`), never the unconfirmed configuration forever.
    fn rollback_pending(&mut self, by: &Who) -> Result<(), Vec<RpcError>> {
        let Some(p) = self.pending.take() else {
            return Ok(());
        };
        let prepared = validate::Validated::whole(yang::dup(&p.rollback)).and_then(|v| {
            self.prepare(&v)?;
            Ok(v)
        });
        let rollback = match prepared {
            Ok(v) => v,
            Err(e) => {
                error!(errors = ?e, retry_s = ROLLBACK_RETRY.as_secs(), "rollback of a confirmed commit was refused");
                self.pending = Some(PendingConfirm {
                    deadline: Instant::now() + ROLLBACK_RETRY,
                    ..p
                });
                return Err(e);
            }
        };
        if p.persist.is_some() {
            if let Err(e) = self.store.delete_confirm() {
                if p.deadline > Instant::now() {
                    // Cancelled before its time: a restart would bring the
                    // unconfirmed configuration back. Nothing changes; the
                    // timer still rolls back at the deadline.
                    error!(error = %e, "cannot remove the persisted confirmed commit: not rolled back yet");
                    self.pending = Some(p);
                    return Err(io_error(e));
                }
                // Past the deadline the record means "roll back" at the
                // next start too: go on.
                error!(error = %e, "cannot remove the persisted confirmed commit");
            }
        }
        self.apply(rollback, by);
        info!("confirmed commit rolled back");
        self.discard_candidate();
        Ok(())
    }

    /// Ask every subsystem whether it can take `new` (no side effects).
    fn prepare(&mut self, new: &validate::Validated) -> Result<(), Vec<RpcError>> {
        if new.changed() {
            for s in self.subsystems.iter_mut() {
                s.prepare(&self.running_config, &new.config)
                    .map_err(error::from_config)?;
            }
        }
        Ok(())
    }

    /// Make a validated and prepared candidate the running configuration:
    /// apply on every subsystem, then install the trees.
    /// `by` made the change (None: the server itself), for the RFC 6470
    /// netconf-config-change sent when running changed.
    fn apply(&mut self, new: validate::Validated, by: &Who) {
        let t0 = std::time::Instant::now();
        // what running held where it changes: the changed entries only
        // when the commit changes only entries (a commit of one pool of
        // thousands pays for that one)
        let before = if !new.changed() {
            None
        } else if let Some(entries) = new.entries() {
            let old: Vec<(yang::Entry, Option<EntryCopy>)> = entries
                .iter()
                .map(|e| (e.clone(), entry_copy(&self.running, e)))
                .collect();
            Some(Before::Entries(old))
        } else {
            Some(Before::Whole(yang::dup(&self.running)))
        };
        let t_before = t0.elapsed();
        if new.changed() {
            for s in self.subsystems.iter_mut() {
                s.apply(&self.running_config, &new.config);
            }
            self.running_xml.clear();
            self.running_nodes.clear();
        }
        let t_apply = t0.elapsed();
        self.running_config = new.install(&mut self.running, &mut self.candidate);
        let t_install = t0.elapsed();
        self.nacm = Arc::new(self.nacm_of_running());
        *self.nacm_shared.write().unwrap_or_else(|p| p.into_inner()) = self.nacm.clone();
        let t_nacm = t0.elapsed();
        let edits = match before {
            None => Vec::new(),
            Some(Before::Whole(old)) => diff_edits(&old, &self.running),
            Some(Before::Entries(old)) => old
                .into_iter()
                .flat_map(|(e, old)| match (old, entry_copy(&self.running, &e)) {
                    (None, None) => Vec::new(),
                    (None, Some(new)) => vec![(new.path, "create")],
                    (Some(old), None) => vec![(old.path, "delete")],
                    (Some(old), Some(new)) => diff_edits(&old.tree, &new.tree),
                })
                .collect(),
        };
        let t_diff = t0.elapsed();
        if !edits.is_empty() {
            self.config_change_event(edits, by);
        }
        self.candidate_modified = false;
        self.candidate_editors.clear();
        self.scope = validate::Scope::default();
        tracing::debug!(
            before_us = t_before.as_micros() as u64,
            apply_us = (t_apply - t_before).as_micros() as u64,
            install_us = (t_install - t_apply).as_micros() as u64,
            nacm_us = (t_nacm - t_install).as_micros() as u64,
            diff_us = (t_diff - t_nacm).as_micros() as u64,
            event_us = (t0.elapsed() - t_diff).as_micros() as u64,
            "running changed"
        );
    }
}

impl Northbound {
    /// A session and its user, for the RFC 6470 session parameters.
    fn who(&self, session: u32) -> Who {
        self.sessions
            .get(&session)
            .map(|i| (session, i.user.clone()))
    }

    /// RFC 6470 netconf-config-change: the edits (target path, edit
    /// operation) of a change of running, when there are any.
    fn config_change_event(&self, edits: Vec<(String, &'static str)>, by: &Who) {
        if edits.is_empty() {
            return;
        }
        let mut e = Event::new("/ietf-netconf-notifications:netconf-config-change");
        e = match by {
            Some((session, user)) => e
                .leaf("changed-by/username", user)
                .leaf("changed-by/session-id", session),
            None => e.flag("changed-by/server"),
        };
        e = e.leaf("datastore", "running");
        for (i, (target, op)) in edits.into_iter().enumerate() {
            e = e
                .leaf(format!("edit[{}]/target", i + 1), target)
                .leaf(format!("edit[{}]/operation", i + 1), op);
        }
        self.bus.emit(e);
    }

    /// RFC 6470 netconf-confirmed-commit; `by` is None for a timeout.
    fn confirmed_commit_event(&self, event: &str, by: &Who, timeout: Option<u32>) {
        let mut e = Event::new("/ietf-netconf-notifications:netconf-confirmed-commit");
        if let Some((session, user)) = by {
            e = e.leaf("username", user).leaf("session-id", session);
        }
        e = e.leaf("confirm-event", event);
        if let Some(t) = timeout {
            e = e.leaf("timeout", t);
        }
        self.bus.emit(e);
    }
}

/// Running before a change, as much as the change needs to be described.
enum Before {
    Whole(DataTree<'static>),
    /// Each changed entry as it was (None: absent).
    Entries(Vec<(yang::Entry, Option<EntryCopy>)>),
}

/// One list entry copied out of a tree (with its parents), and its path.
struct EntryCopy {
    path: String,
    tree: DataTree<'static>,
}

fn entry_copy(tree: &DataTree<'static>, e: &yang::Entry) -> Option<EntryCopy> {
    let key = yang::path_literal(&e.key)?;
    let path = format!(
        "{}/{}[{}={key}]",
        e.list.container_path(),
        e.list.list,
        e.list.key
    );
    let node = yang2::data::Data::find_path(tree, &path).ok()?;
    Some(EntryCopy {
        path: node.path(),
        tree: node.duplicate(true).ok()?,
    })
}

/// The edits that turn `before` into `after`, from libyang's diff: the
/// top node of each created, deleted or replaced subtree.
fn diff_edits(
    before: &DataTree<'static>,
    after: &DataTree<'static>,
) -> Vec<(String, &'static str)> {
    match before.diff(after, yang2::data::DataDiffFlags::empty()) {
        Ok(d) => d
            .iter()
            .map(|(op, node)| {
                let op = match op {
                    yang2::data::DataDiffOp::Create => "create",
                    yang2::data::DataDiffOp::Delete => "delete",
                    yang2::data::DataDiffOp::Replace => "replace",
                };
                (node.path(), op)
            })
            .collect(),
        Err(e) => {
            warn!(error = ?e, "no config-change notification: diff failed");
            Vec::new()
        }
    }
}

/// A session and its user; None is the server itself.
type Who = Option<(u32, String)>;

/// What an edit touched, for the next commit's validation.
fn edit_scope(
    config: &Element,
    default_op: EditOp,
    entries: impl IntoIterator<Item = yang::Entry>,
) -> validate::Scope {
    if default_op == EditOp::Replace {
        validate::Scope::all()
    } else {
        validate::Scope::of_edit(config, entries)
    }
}

fn io_error(e: std::io::Error) -> Vec<RpcError> {
    vec![RpcError::operation_failed(format!("storage: {e}"))]
}

/// Whether a subtree filter node selects its whole data subtree (RFC 6241
/// §6.2.4: empty, no attribute-match expression).
fn is_selection_node(e: &Element) -> bool {
    e.children.iter().all(|c| match c {
        xml::Node::Text(t) => t.trim().is_empty(),
        xml::Node::Element(_) => false,
    }) && e.attrs.is_empty()
}

/// The `<data>` content of a retrieval, filtered.
/// `tree` filtered; `prints` keeps the prints of top-level nodes that a
/// subtree filter selects whole (running only: it changes only at commit).
fn filtered(
    tree: &DataTree<'static>,
    filter: Option<&Filter>,
    wd: WithDefaults,
    mut prints: Option<&mut HashMap<(WithDefaults, String), String>>,
) -> RpcResult {
    match filter {
        None => Ok(Reply::Data(yang::print_xml(tree, wd))),
        Some(Filter::Subtree(f)) => {
            // Filter each top-level data node on its own: a pure selection
            // prints it straight from libyang; anything finer goes through
            // the RFC 6241 §6 matcher on that node's XML only.
            let fchildren: Vec<&Element> = f.elements().collect();
            let mut out = String::new();
            let tree = yang::printable(tree, wd);
            let Some(first) = tree.reference() else {
                return Ok(Reply::Data(out));
            };
            for top in first.inclusive_siblings() {
                let schema = top.schema();
                let module = schema.module();
                let (ns, name) = (module.namespace(), schema.name());
                let matching: Vec<&Element> = fchildren
                    .iter()
                    .copied()
                    .filter(|e| (e.ns.is_empty() || e.ns == ns) && e.name == name)
                    .collect();
                if matching.is_empty() {
                    continue;
                }
                if matching.iter().any(|e| is_selection_node(e)) {
                    match prints.as_deref_mut() {
                        Some(cache) => out.push_str(
                            cache
                                .entry((wd, format!("{}:{name}", module.name())))
                                .or_insert_with(|| yang::print_node(&top, wd)),
                        ),
                        None => out.push_str(&yang::print_node(&top, wd)),
                    }
                    continue;
                }
                let node_xml = yang::print_node(&top, wd);
                if node_xml.trim().is_empty() {
                    // a node of defaults only prints as nothing outside
                    // report-all: nothing to select from
                    continue;
                }
                let root = xml::parse_own(&node_xml)
                    .map_err(|e| vec![RpcError::operation_failed(e.to_string())])?;
                for e in filter::apply(&matching, std::slice::from_ref(&root), &keys_of) {
                    e.write_xml(&mut out, NC_NS);
                }
            }
            Ok(Reply::Data(out))
        }
        Some(Filter::XPath { select, namespaces }) => {
            let expr = translate_xpath(select, namespaces)?;
            // defaults are added before selecting, so that they are
            // selected like any node (and only where the XPath points)
            let tree = match yang::printable(tree, wd) {
                yang::Printable::Owned(t) => t,
                yang::Printable::Borrowed(t) => yang::dup(t),
            };
            xpath_selected(tree, expr, wd)
        }
    }
}

/// `filtered` on a thread of its own, answering on `reply`.
fn spawn_filtered(
    tree: DataTree<'static>,
    filter: Filter,
    wd: WithDefaults,
    reply: oneshot::Sender<RpcResult>,
) {
    let spawned = std::thread::Builder::new()
        .name("get-config".into())
        .spawn(move || {
            let _ = reply.send(filtered(&tree, Some(&filter), wd, None));
        });
    if let Err(e) = spawned {
        // the reply went with the closure: the session answers
        // operation-failed
        error!(error = %e, "cannot start a thread for a get-config");
    }
}

/// Changed list entries from which a commit's (or `<validate>`'s)
/// candidate is validated off the actor (so is a change of anything
/// else: the whole datastore is validated).
const LARGE_CHANGE: usize = 100;

/// A new startup datastore validated against the YANG rules (and those
/// between entries), and printed as it is written.
fn startup_validated(
    mut tree: DataTree<'static>,
) -> Result<(DataTree<'static>, String), Vec<RpcError>> {
    validate::full(&mut tree)?;
    let xml = yang::print_xml(&tree, WithDefaults::Explicit);
    Ok((tree, xml))
}

/// How long a client's XPath filter may take (libyang cannot bound an
/// expression's cost: `//*[count(//*) > 0]` is quadratic in the data).
const XPATH_DEADLINE: Duration = Duration::from_secs(10);

/// Client XPath evaluations running at once, those past their deadline
/// included (libyang cannot stop one: it runs on, at nice 19, until it
/// ends); one more is refused with resource-denied.
fn xpath_slots() -> usize {
    2 * yang::cpus()
}

static XPATH_RUNNING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[cfg(test)]
static XPATH_DEADLINE_TEST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn xpath_deadline() -> Duration {
    #[cfg(test)]
    {
        let ms = XPATH_DEADLINE_TEST.load(Ordering::Relaxed);
        if ms > 0 {
            return Duration::from_millis(ms);
        }
    }
    XPATH_DEADLINE
}

/// A client's XPath filter `expr` over `tree` (its own copy), on a thread
/// of its own with a deadline: past it the reply is resource-denied and
/// the evaluation goes on at nice 19 until it ends, holding its slot.
fn xpath_selected(tree: DataTree<'static>, expr: String, wd: WithDefaults) -> RpcResult {
    let taken = XPATH_RUNNING.fetch_add(1, Ordering::AcqRel);
    if taken >= xpath_slots() {
        XPATH_RUNNING.fetch_sub(1, Ordering::AcqRel);
        warn!(
            running = taken,
            "XPath filter refused: too many evaluations under way"
        );
        return Err(vec![RpcError::application(
            ErrorTag::ResourceDenied,
            "too many XPath filters are being evaluated; try again later",
        )]);
    }
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let spawned = std::thread::Builder::new()
        .name("xpath".into())
        .spawn(move || {
            let _ = tx.send(Err(crate::sched::thread_id()));
            let r = xpath_evaluate(&tree, &expr, wd);
            drop(tree);
            XPATH_RUNNING.fetch_sub(1, Ordering::AcqRel);
            let _ = tx.send(Ok(r));
        });
    if let Err(e) = spawned {
        XPATH_RUNNING.fetch_sub(1, Ordering::AcqRel);
        return Err(vec![RpcError::operation_failed(format!(
            "cannot start a thread for an XPath filter: {e}"
        ))]);
    }
    let deadline = std::time::Instant::now() + xpath_deadline();
    let mut tid = None;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(Err(t)) => tid = Some(t),
            Ok(Ok(r)) => return r,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err(vec![RpcError::operation_failed(
                    "the XPath filter's evaluation ended without a result",
                )]);
            }
        }
    }
    if let Some(t) = tid {
        let _ = crate::sched::set_thread_nice(t, 19);
    }
    warn!(
        deadline_ms = xpath_deadline().as_millis() as u64,
        "XPath filter past its deadline: refused"
    );
    Err(vec![RpcError::application(
        ErrorTag::ResourceDenied,
        format!(
            "the XPath filter took more than {} ms to evaluate",
            xpath_deadline().as_millis()
        ),
    )
    .with_app_tag("xpath-too-costly")])
}

/// Select what `expr` points to in `tree` and print it.
fn xpath_evaluate(tree: &DataTree<'static>, expr: &str, wd: WithDefaults) -> RpcResult {
    yang::clear_errors();
    let set = yang::find_xpath(tree, expr).map_err(|e| {
        vec![RpcError::bad_element(
            ErrorType::Application,
            ErrorTag::InvalidValue,
            "filter",
            &format!("bad XPath: {}", e.msg.unwrap_or_default()),
        )]
    })?;
    let mut result = yang::empty();
    for node in set {
        if let Ok(d) = node.duplicate(true) {
            let _ = result.merge(&d);
        }
    }
    Ok(Reply::Data(yang::print_selected(&result, wd)))
}

/// A subsystem's part of a `<get>`: its state, or the handle to read it.
enum State {
    Xml(String),
    Reader(
        Arc<dyn crate::config::StateReader>,
        Option<Vec<crate::config::Selected>>,
    ),
}

/// A `<get>` whose inputs the actor has taken ([`Northbound::get_job`]):
/// the rest (reading the subsystems' snapshots, libyang's parse and merge,
/// the filter, the print) needs nothing of the actor, so a large one runs
/// on a thread of its own while the actor serves the other sessions.
struct GetJob {
    tree: DataTree<'static>,
    states: Vec<(&'static str, State)>,
    filter: Option<Filter>,
    wd: WithDefaults,
    /// The NACM rules and user the reply is pruned for (None: no check).
    nacm: Option<(Arc<nacm::Config>, String)>,
    /// The list written into the reply by the session.
    stream: Option<StreamPart>,
    /// The reply is that list alone (nothing else is read).
    only_stream: bool,
    /// Run on a thread of its own ([`GetJob::spawn`]): the writes under
    /// way, that the rest gives way to between its steps (reads give way
    /// to writes: with the daemon on one CPU, a commit queued meanwhile
    /// does not share it with this read's libyang work). None on the
    /// actor, which would wait for writes it has yet to take.
    writes: Option<Arc<ops::Writes>>,
}

/// A list a `<get>` streams (see [`Northbound::stream_of`]).
#[derive(Debug)]
struct StreamPart {
    ns: &'static str,
    top: &'static str,
    list: &'static str,
    /// The top node's children after the list, in schema order (the
    /// entries go before the first of them, as libyang prints them).
    after: Vec<String>,
    /// Every child of the top node but the list.
    others: Vec<crate::config::Selected>,
    entries: Box<dyn crate::config::Entries>,
}

impl StreamPart {
    /// The reply: `rest` (the read without the list) with the entries
    /// in their place in the top node, or in a top node of their own.
    fn reply(self, rest: String) -> Reply {
        let (head, open, close, tail) = match select::splice(&rest, self.ns, self.top, &self.after)
        {
            Some(at) => {
                let tail = rest[at..].to_string();
                let mut head = rest;
                head.truncate(at);
                (head, String::new(), String::new(), tail)
            }
            None => (
                rest,
                format!("<{} xmlns=\"{}\">", self.top, self.ns),
                format!("</{}>", self.top),
                String::new(),
            ),
        };
        Reply::Stream(Box::new(ops::StreamedData::new(
            head,
            open,
            self.entries,
            close,
            tail,
        )))
    }
}

impl GetJob {
    fn costly(&self) -> bool {
        // a streamed read still reads running and the rest of the state
        // (a thousand pools): off the actor as well
        // a client's XPath as well: its cost is the client's to choose
        self.stream.is_some()
            || matches!(self.filter, Some(Filter::XPath { .. }))
            || self.states.iter().any(|(_, s)| match s {
                State::Reader(r, sel) => r.costly(sel.as_deref()),
                State::Xml(_) => false,
            })
    }

    /// The reply: [`GetJob::run_rest`], with the streamed list's entries
    /// to be written into it by the session when there is one.
    fn run(mut self) -> RpcResult {
        let stream = self.stream.take();
        let r = if self.only_stream {
            Ok(Reply::Data(String::new()))
        } else {
            self.run_rest()
        };
        match (r, stream) {
            (Ok(Reply::Data(rest)), Some(part)) => Ok(part.reply(rest)),
            (r, _) => r,
        }
    }

    /// Running merged with the subsystems' state (without the streamed
    /// list), filtered. An entry libyang refuses (one lease with text the
    /// schema cannot hold) is left out alone; the rest of the subsystem's
    /// state is shown.
    fn run_rest(self) -> RpcResult {
        // the same bad entry is refused at every <get>: warn once, then debug
        static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        let mut tree = self.tree;
        // off the actor: until no write is under way (bounded)
        let give_way = || {
            if let Some(w) = &self.writes {
                w.give_way_blocking();
            }
        };
        for (name, state) in &self.states {
            give_way();
            let read;
            let xml = match state {
                State::Xml(x) => x,
                State::Reader(r, sel) => {
                    read = r.state_xml_of(sel.as_deref());
                    &read
                }
            };
            if xml.is_empty() {
                continue;
            }
            give_way();
            let t0 = std::time::Instant::now();
            let (parts, refused) = yang::parse_state_entries(xml);
            let parsed = t0.elapsed();
            give_way();
            let m0 = std::time::Instant::now();
            for part in &parts {
                if yang::merge(&mut tree, part).is_err() {
                    warn!(subsystem = name, "cannot merge operational state");
                }
            }
            tracing::debug!(
                subsystem = name,
                bytes = xml.len(),
                parse_us = parsed.as_micros() as u64,
                merge_us = m0.elapsed().as_micros() as u64,
                "state merged"
            );
            if let Some(e) = refused.first() {
                if WARNED.swap(true, Ordering::Relaxed) {
                    tracing::debug!(subsystem = name, refused = refused.len(), error = ?e, "operational state entries left out");
                } else {
                    warn!(subsystem = name, refused = refused.len(), error = ?e, "operational state entries left out");
                }
            }
        }
        if let Some((cfg, user)) = &self.nacm {
            cfg.rules_for(user).prune_reads(&mut tree);
        }
        give_way();
        let t0 = std::time::Instant::now();
        let r = filtered(&tree, self.filter.as_ref(), self.wd, None);
        tracing::debug!(us = t0.elapsed().as_micros() as u64, "filtered");
        r
    }

    /// Run on a thread of its own (a whole lease table takes seconds of
    /// CPU), answering on `reply`. At the normal priority: at nice 19 on
    /// a busy machine a 100,000-lease read took 508 s, and commits still
    /// stalled up to 7.7 s meanwhile (most likely waiting for a lock the
    /// starved thread held, libyang's dictionary: not confirmed); the DHCP
    /// actor has a thread of its own. With the shortest slice
    /// (`sched::short_slice`): the actor woken by a commit gets the CPU at
    /// once instead of after a slice of this thread's rendering.
    fn spawn(mut self, reply: oneshot::Sender<RpcResult>, writes: Arc<ops::Writes>) {
        self.writes = Some(writes);
        let spawned = std::thread::Builder::new()
            .name("get".into())
            .spawn(move || {
                crate::sched::short_slice();
                let t0 = std::time::Instant::now();
                let r = self.run();
                tracing::debug!(us = t0.elapsed().as_micros() as u64, "get off the actor");
                let _ = reply.send(r);
            });
        if let Err(e) = spawned {
            // the reply went with the closure: the session answers
            // operation-failed
            error!(error = %e, "cannot start a thread for a <get>");
        }
    }
}

/// Turn an inline `<config>` into a tree (as a replace of everything).
fn config_tree(cfg: &Element) -> Result<DataTree<'static>, Vec<RpcError>> {
    let mut tree = yang::empty();
    if edit::fast_path(&mut tree, cfg, EditOp::Merge).is_some() {
        return Ok(tree);
    }
    edit::apply(&mut tree, cfg, EditOp::Merge, false, &mut BTreeSet::new())?;
    Ok(tree)
}

/// Key leaves of the list entry at the end of `path`, for subtree filtering.
fn keys_of(path: &[&Element]) -> Option<Vec<(String, String)>> {
    let (first, rest) = path.split_first()?;
    let mut schema = top_schema(first).ok()?;
    for el in rest {
        schema = find_child(schema.children(), el)?;
    }
    if schema.kind() != SchemaNodeKind::List {
        return None;
    }
    Some(
        schema
            .list_keys()
            .map(|k| (k.module().namespace().to_string(), k.name().to_string()))
            .collect(),
    )
}

/// Rewrite the XML prefixes of an XPath filter into libyang's module-name
/// prefixes (JSON form); string literals are left alone.
fn translate_xpath(select: &str, namespaces: &[(String, String)]) -> Result<String, Vec<RpcError>> {
    let mut out = String::with_capacity(select.len() + 32);
    let mut chars = select.char_indices().peekable();
    let bytes = select.as_bytes();
    while let Some((i, c)) = chars.next() {
        if c == '\'' || c == '"' {
            out.push(c);
            for (_, d) in chars.by_ref() {
                out.push(d);
                if d == c {
                    break;
                }
            }
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            let start = i;
            let mut end = i + c.len_utf8();
            while let Some((j, d)) = chars.peek() {
                if d.is_alphanumeric() || *d == '_' || *d == '-' || *d == '.' {
                    end = j + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            let word = &select[start..end];
            let is_prefix = bytes.get(end) == Some(&b':') && bytes.get(end + 1) != Some(&b':');
            if is_prefix {
                let ns = namespaces
                    .iter()
                    .rev()
                    .find(|(p, _)| p == word)
                    .map(|(_, u)| u.as_str());
                let module = ns.and_then(yang::module_name_by_ns).ok_or_else(|| {
                    vec![RpcError::bad_element(
                        ErrorType::Application,
                        ErrorTag::InvalidValue,
                        "filter",
                        &format!("XPath prefix '{word}' is not bound to a known module namespace"),
                    )]
                })?;
                out.push_str(&module);
            } else {
                out.push_str(word);
            }
            continue;
        }
        out.push(c);
    }
    Ok(out)
}

/// RFC 6022 get-schema, for every module of the context (the ones
/// `netconf-state/schemas` and the YANG library list).
fn get_schema(identifier: &str, version: Option<&str>, format: Option<&str>) -> RpcResult {
    let invalid = |m: String| {
        vec![RpcError::bad_element(
            ErrorType::Application,
            ErrorTag::InvalidValue,
            "identifier",
            &m,
        )]
    };
    let format = match format.map(|f| f.rsplit(':').next().unwrap_or(f)) {
        None | Some("yang") => yang::SchemaFormat::Yang,
        Some("yin") => yang::SchemaFormat::Yin,
        Some(f) => return Err(invalid(format!("schema format '{f}' is not available"))),
    };
    let Some(text) = yang::schema_text(identifier, version, format) else {
        return Err(invalid(match version {
            Some(v) if !v.is_empty() && yang::schema_text(identifier, None, format).is_some() => {
                format!("no revision {v} of '{identifier}'")
            }
            _ => format!("no schema '{identifier}'"),
        }));
    };
    Ok(Reply::Raw(format!(
        "<data xmlns=\"{}\">{}</data>",
        ops::MONITORING_NS,
        escape_text(&text)
    )))
}

/// Run an operation of the actor (a large `<get>`, the validation of a big
/// commit: up to seconds of CPU) without holding up the other tasks of
/// the runtime's worker: the backup channels' keepalives, the NETCONF
/// sessions. `block_in_place` hands the worker's queued tasks to another
/// worker first (a current-thread runtime, in tests, just runs it).
/// At `sched::OPERATION_NICE`: the thread that runs it takes most of the
/// CPU from the ones streaming a large reply (reads give way to writes).
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    let f = || crate::sched::with_nice(crate::sched::OPERATION_NICE, f);
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigError;
    use std::sync::Mutex;

    thread_local! {
        /// Makes `Recorder` refuse every configuration (a runtime that
        /// cannot take a change for a while); per test thread.
        static REFUSE_ALL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
        static STATE_READS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
        /// What `Recorder` was last asked state for.
        static STATE_ASKED: std::cell::RefCell<Option<Option<Vec<crate::config::Selected>>>> =
            const { std::cell::RefCell::new(None) };
    }

    /// A subsystem that records what it was asked to apply, refuses any
    /// VRRP priority of 13 (and everything while `REFUSE_ALL`), and reports
    /// a fixed state for group eth1/1.
    struct Recorder {
        applied: Arc<Mutex<Vec<usize>>>,
    }

    impl Subsystem for Recorder {
        fn name(&self) -> &'static str {
            "recorder"
        }
        fn prepare(&mut self, _old: &Config, new: &Config) -> Result<(), Vec<ConfigError>> {
            let refuse = |msg| vec![ConfigError::refused("/vrrp:vrrp".into(), msg)];
            if REFUSE_ALL.get() {
                return Err(refuse("refusing everything"));
            }
            if new.vrrp.values().any(|g| g.priority == 13) {
                return Err(refuse("priority 13 is unlucky"));
            }
            Ok(())
        }
        fn apply(&mut self, _old: &Config, new: &Config) {
            self.applied.lock().unwrap().push(new.vrrp.len());
        }
        fn namespaces(&self) -> &'static [&'static str] {
            &[crate::vrrp::NS]
        }
        fn state_xml(&self) -> String {
            STATE_READS.set(STATE_READS.get() + 1);
            r#"<vrrp xmlns="urn:hotlease:yang:vrrp"><group><interface>eth1</interface><vrid>1</vrid><state>master</state></group></vrrp>"#.into()
        }
        fn state_xml_of(&self, selected: Option<&[crate::config::Selected]>) -> String {
            STATE_ASKED.with(|a| *a.borrow_mut() = Some(selected.map(|s| s.to_vec())));
            self.state_xml()
        }
    }

    /// A `<get>` tells the subsystem what its filter selects (the list
    /// entry and its key values), from a subtree or a plain XPath filter;
    /// one it cannot analyse asks for everything.
    #[test]
    fn get_passes_the_selection_to_the_subsystem() {
        let (mut nb, _, _dir) = booted();
        nb.operation(1, group_edit(120)).unwrap();
        nb.operation(1, Operation::Commit(Commit::default()))
            .unwrap();
        let vrrp = crate::vrrp::NS;
        let get = |nb: &mut Northbound, filter: Filter| {
            let d = data(nb.operation(
                1,
                Operation::Get {
                    filter: Some(filter),
                    with_defaults: WithDefaults::Explicit,
                },
            ));
            (
                STATE_ASKED.with(|a| a.borrow_mut().take()).expect("asked"),
                d,
            )
        };
        let keyed = vec![crate::config::Selected {
            name: "group".into(),
            matches: vec![
                ("interface".into(), "eth1".into()),
                ("vrid".into(), "1".into()),
            ],
        }];
        let f = xml::parse(&format!(
            r#"<filter xmlns="{NC_NS}"><vrrp xmlns="{vrrp}"><group><interface>eth1</interface><vrid>1</vrid><state/></group></vrrp></filter>"#
        ))
        .unwrap();
        let (asked, d) = get(&mut nb, Filter::Subtree(f));
        assert_eq!(asked, Some(keyed.clone()));
        assert!(
            d.contains("<state>master</state>") && !d.contains("priority"),
            "{d}"
        );
        let (asked, d) = get(
            &mut nb,
            Filter::XPath {
                select: "/v:vrrp/v:group[v:interface='eth1'][v:vrid='1']".into(),
                namespaces: vec![("v".into(), vrrp.into())],
            },
        );
        assert_eq!(asked, Some(keyed));
        assert!(
            d.contains("<state>master</state>") && d.contains("<priority>120</priority>"),
            "{d}"
        );
        let (asked, _) = get(
            &mut nb,
            Filter::XPath {
                select: "/v:vrrp/v:group[v:priority > 100]".into(),
                namespaces: vec![("v".into(), vrrp.into())],
            },
        );
        assert_eq!(asked, None);
    }

    /// State whose top-level nodes are two lists of one module, as the
    /// remote backup reports its services and profiles.
    struct TwoLists;

    impl Subsystem for TwoLists {
        fn name(&self) -> &'static str {
            "two-lists"
        }
        fn prepare(&mut self, _old: &Config, _new: &Config) -> Result<(), Vec<ConfigError>> {
            Ok(())
        }
        fn apply(&mut self, _old: &Config, _new: &Config) {}
        fn namespaces(&self) -> &'static [&'static str] {
            &[crate::backup::service::NS]
        }
        fn state_xml(&self) -> String {
            let ns = crate::backup::service::NS;
            format!(
                r#"<remote-backup-service xmlns="{ns}"><name>rbs1</name><state><connection>connected</connection></state></remote-backup-service><remote-backup-profile xmlns="{ns}"><name>rbp1</name><state><sync-state>synchronized</sync-state></state></remote-backup-profile>"#
            )
        }
    }

    /// A filter that selects only state children of a top-level list
    /// starts from an empty datastore copy; the state merged into it keeps
    /// every top-level entry, not only the first list's (libyang 2.2.8
    /// drops the node after a top-level list when it duplicates siblings:
    /// the profile's state was missing, and the backup benchmarks' poll
    /// for `sync-state` never saw it).
    #[test]
    fn state_of_a_second_top_level_list_is_selected_from_an_empty_datastore() {
        let dir = tempfile::tempdir().unwrap();
        let mut nb =
            Northbound::boot(Store::new(dir.path()).unwrap(), vec![Box::new(TwoLists)]).unwrap();
        let ns = crate::backup::service::NS;
        for (body, want) in [
            (
                format!(r#"<remote-backup-profile xmlns="{ns}"><state/></remote-backup-profile>"#),
                "<sync-state>synchronized</sync-state>",
            ),
            (
                format!(
                    r#"<remote-backup-service xmlns="{ns}"><state/></remote-backup-service><remote-backup-profile xmlns="{ns}"><state/></remote-backup-profile>"#
                ),
                "<sync-state>synchronized</sync-state>",
            ),
            (
                format!(r#"<remote-backup-service xmlns="{ns}"><state/></remote-backup-service>"#),
                "<connection>connected</connection>",
            ),
        ] {
            let f = xml::parse(&format!(r#"<filter xmlns="{NC_NS}">{body}</filter>"#)).unwrap();
            let d = data(nb.operation(
                1,
                Operation::Get {
                    filter: Some(Filter::Subtree(f)),
                    with_defaults: WithDefaults::Explicit,
                },
            ));
            assert!(d.contains(want), "{body}: {d}");
        }
    }

    /// A lease table of `LEASES` entries (about 8 elements each).
    struct ManyLeases;

    const LEASES: u32 = 130_000;

    impl Subsystem for ManyLeases {
        fn name(&self) -> &'static str {
            "many-leases"
        }
        fn prepare(&mut self, _old: &Config, _new: &Config) -> Result<(), Vec<ConfigError>> {
            Ok(())
        }
        fn apply(&mut self, _old: &Config, _new: &Config) {}
        fn namespaces(&self) -> &'static [&'static str] {
            &[crate::dhcp::NS]
        }
        fn state_xml(&self) -> String {
            use std::fmt::Write as _;
            let mut x = format!(r#"<dhcp-server xmlns="{}">"#, crate::dhcp::NS);
            for n in 0..LEASES {
                let [_, a, b, c] = n.to_be_bytes();
                let _ = write!(
                    x,
                    "<lease><ip-address>10.{a}.{b}.{c}</ip-address><pool>p1</pool>\
                     <mac-address>02:00:00:{a:02x}:{b:02x}:{c:02x}</mac-address><state>bound</state>\
                     <valid-lifetime>3600</valid-lifetime><expires>2030-01-01T00:00:00+00:00</expires>\
                     <origin>local</origin></lease>"
                );
            }
            x.push_str("</dhcp-server>");
            x
        }
    }

    /// A subtree filter on the lease table works at any size: the matcher
    /// parses the daemon's own print of it, which the million-element cap
    /// on what peers send must not refuse (the soak's 125,000 leases got
    /// "document has more than 1000000 elements" for `<dhcp-server><lease/>`).
    #[test]
    fn a_subtree_filter_reads_a_lease_table_of_over_a_million_elements() {
        let dir = tempfile::tempdir().unwrap();
        let mut nb =
            Northbound::boot(Store::new(dir.path()).unwrap(), vec![Box::new(ManyLeases)]).unwrap();
        let f = xml::parse(&format!(
            r#"<filter xmlns="{NC_NS}"><dhcp-server xmlns="{}"><lease/></dhcp-server></filter>"#,
            crate::dhcp::NS
        ))
        .unwrap();
        let d = data(nb.operation(
            1,
            Operation::Get {
                filter: Some(Filter::Subtree(f)),
                with_defaults: WithDefaults::Explicit,
            },
        ));
        assert_eq!(d.matches("<lease>").count(), LEASES as usize);
    }

    fn group_edit(prio: u8) -> Operation {
        vrrp_edit(&format!(
            "<group><interface>eth1</interface><vrid>1</vrid><virtual-ip>10.1.1.1</virtual-ip><priority>{prio}</priority></group>"
        ))
    }

    /// A candidate merge of `groups` into the `vrrp` container.
    fn vrrp_edit(groups: &str) -> Operation {
        let cfg = xml::parse(&format!(
            r#"<config xmlns="{NC_NS}"><vrrp xmlns="urn:hotlease:yang:vrrp">{groups}</vrrp></config>"#
        ))
        .unwrap();
        Operation::EditConfig {
            target: Datastore::Candidate,
            default_operation: EditOp::Merge,
            test_option: TestOption::TestThenSet,
            error_option: ErrorOption::StopOnError,
            config: cfg,
        }
    }

    /// A startup datastore that breaks a rule between entries (two pools
    /// with overlapping sections: what a commit refuses) is refused at
    /// boot too, with the rule's message.
    #[test]
    fn boot_refuses_a_startup_that_breaks_a_rule_between_pools() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path()).unwrap();
        let xml = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/yang-tests/daemon/dhcp-section-overlap-other-pool.xml"
        ))
        .unwrap();
        let body = xml
            .lines()
            .filter(|l| !l.trim_start().starts_with("<!--"))
            .collect::<Vec<_>>()
            .join("\n");
        store.write_startup(&body).unwrap();
        match Northbound::boot(store, vec![]) {
            Err(BootError::Invalid { message, .. }) => {
                assert!(message.contains("overlap"), "{message}")
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("booted with overlapping pools"),
        }
    }

    /// A startup file with a list entry's key given twice (libyang's
    /// parse and validation crash on it) is refused at boot with its
    /// place.
    #[test]
    fn boot_refuses_a_startup_with_a_key_given_twice() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path()).unwrap();
        store
            .write_startup(r#"<dhcp-server xmlns="urn:hotlease:yang:dhcp-server"><ip-pool><name>p26</name><name>8</name></ip-pool><ip-pool><name>p26</name></ip-pool></dhcp-server>"#)
            .unwrap();
        match Northbound::boot(store, vec![]) {
            Err(BootError::Invalid { what, message }) => {
                assert_eq!(what, "startup.xml");
                assert_eq!(
                    message,
                    "<name> is given more than once in /dhcp-server/ip-pool: its parent holds one"
                );
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("booted"),
        }
    }

    /// A multi-threaded runtime of `workers` threads.
    fn runtime(workers: usize) -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
            .unwrap()
    }

    /// Session 1's `<get>` of everything, under way.
    fn whole_get(handle: &Handle) -> tokio::task::JoinHandle<RpcResult> {
        let h = handle.clone();
        tokio::spawn(async move {
            let get = Operation::Get {
                filter: None,
                with_defaults: WithDefaults::Explicit,
            };
            h.rpc(1, get).await
        })
    }

    /// A subsystem whose state is read from `R`.
    struct Reads<R>(Arc<R>);

    /// A state that waits for the test to let it go (a whole lease table
    /// being read).
    #[derive(Debug)]
    struct GateReader {
        entered: Mutex<Option<std::sync::mpsc::Sender<()>>>,
        release: Mutex<std::sync::mpsc::Receiver<()>>,
        /// The slice of the thread that read.
        slice: Mutex<Option<u64>>,
    }

    impl crate::config::StateReader for GateReader {
        fn state_xml_of(&self, _selected: Option<&[crate::config::Selected]>) -> String {
            *self.slice.lock().unwrap() = crate::sched::current_slice();
            if let Some(tx) = self.entered.lock().unwrap().take() {
                let _ = tx.send(());
            }
            let _ = self
                .release
                .lock()
                .unwrap()
                .recv_timeout(std::time::Duration::from_secs(20));
            r#"<vrrp xmlns="urn:hotlease:yang:vrrp"><group><interface>eth1</interface><vrid>1</vrid><state>master</state></group></vrrp>"#.into()
        }
    }

    impl<R: crate::config::StateReader + 'static> Subsystem for Reads<R> {
        fn name(&self) -> &'static str {
            "reads"
        }
        fn prepare(&mut self, _old: &Config, _new: &Config) -> Result<(), Vec<ConfigError>> {
            Ok(())
        }
        fn apply(&mut self, _old: &Config, _new: &Config) {}
        fn namespaces(&self) -> &'static [&'static str] {
            &[crate::vrrp::NS]
        }
        fn state_reader(&self) -> Option<Arc<dyn crate::config::StateReader>> {
            Some(self.0.clone())
        }
    }

    /// A `<get>` that reads a large state runs off the actor: another
    /// session's edit and commit complete while it is still reading, and
    /// it then answers with that state.
    #[test]
    fn a_large_get_does_not_hold_up_a_commit() {
        let rt = runtime(2);
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let (entered_tx, entered) = std::sync::mpsc::channel();
            let (release, release_rx) = std::sync::mpsc::channel();
            let reader = Arc::new(GateReader {
                entered: Mutex::new(Some(entered_tx)),
                release: Mutex::new(release_rx),
                slice: Mutex::new(None),
            });
            let nb = Northbound::boot(
                Store::new(dir.path()).unwrap(),
                vec![Box::new(Reads(reader.clone()))],
            )
            .unwrap();
            let stop = CancellationToken::new();
            let (handle, _task) = nb.spawn(stop.clone());
            let get = whole_get(&handle);
            tokio::task::spawn_blocking(move || {
                entered.recv_timeout(std::time::Duration::from_secs(10))
            })
            .await
            .unwrap()
            .expect("the get reads the state");
            let commit = async {
                handle.rpc(2, group_edit(120)).await.unwrap();
                handle
                    .rpc(2, Operation::Commit(Commit::default()))
                    .await
                    .unwrap();
            };
            tokio::time::timeout(std::time::Duration::from_secs(5), commit)
                .await
                .expect("the commit completes while the get reads");
            assert!(!get.is_finished(), "the get is still reading");
            // the reading thread lets a woken actor in at once
            assert_eq!(
                *reader.slice.lock().unwrap(),
                Some(crate::sched::SHORT_SLICE_NS)
            );
            release.send(()).unwrap();
            let d = data(get.await.unwrap());
            assert!(d.contains("<state>master</state>"), "{d}");
            stop.cancel();
        });
    }

    /// A state reader that counts its reads.
    #[derive(Debug, Default)]
    struct CountingReader(std::sync::atomic::AtomicUsize);

    impl crate::config::StateReader for CountingReader {
        fn state_xml_of(&self, _selected: Option<&[crate::config::Selected]>) -> String {
            self.0.fetch_add(1, Ordering::SeqCst);
            r#"<vrrp xmlns="urn:hotlease:yang:vrrp"><group><interface>eth1</interface><vrid>1</vrid><state>master</state></group></vrrp>"#.into()
        }
    }

    /// Reads give way to writes off the actor too: the rest of a large
    /// `<get>` (the subsystems' state through libyang, on its own thread)
    /// is not produced while another session's write is under way (queued
    /// at the actor or running there), and is once it has ended.
    #[test]
    fn the_rest_of_a_large_get_gives_way_to_a_write_under_way() {
        let rt = runtime(2);
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let reader = Arc::new(CountingReader::default());
            let mut nb = Northbound::boot(
                Store::new(dir.path()).unwrap(),
                vec![Box::new(Reads(reader.clone()))],
            )
            .unwrap();
            // as long as the write lasts, however long
            nb.writes = Arc::new(ops::Writes::giving_way_at_most(
                std::time::Duration::from_secs(3600),
            ));
            let stop = CancellationToken::new();
            let (handle, _task) = nb.spawn(stop.clone());
            let write = handle.writes().start();
            let get = whole_get(&handle);
            // the actor is not held up: another session's read is answered
            data(handle.rpc(2, get_running()).await);
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            assert_eq!(reader.0.load(Ordering::SeqCst), 0, "read during a write");
            assert!(!get.is_finished());
            drop(write);
            let d = data(get.await.unwrap());
            assert!(d.contains("<state>master</state>"), "{d}");
            assert_eq!(reader.0.load(Ordering::SeqCst), 1);
            stop.cancel();
        });
    }

    /// Records the nice value of the thread that applies a change.
    struct NiceRecorder(Arc<Mutex<Vec<i32>>>);

    impl Subsystem for NiceRecorder {
        fn name(&self) -> &'static str {
            "nice"
        }
        fn prepare(&mut self, _old: &Config, _new: &Config) -> Result<(), Vec<ConfigError>> {
            Ok(())
        }
        fn apply(&mut self, _old: &Config, _new: &Config) {
            self.0.lock().unwrap().push(crate::sched::current_nice());
        }
    }

    /// The actor runs an operation at `sched::OPERATION_NICE` (a commit
    /// takes most of the CPU from a large reply being streamed), and the
    /// runtime's thread is back at its nice value afterwards.
    #[test]
    fn operations_run_at_the_operation_weight() {
        let rt = runtime(1);
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let seen = Arc::new(Mutex::new(Vec::new()));
            let nb = Northbound::boot(
                Store::new(dir.path()).unwrap(),
                vec![Box::new(NiceRecorder(seen.clone()))],
            )
            .unwrap();
            let stop = CancellationToken::new();
            let (handle, _task) = nb.spawn(stop.clone());
            seen.lock().unwrap().clear();
            handle.rpc(1, group_edit(120)).await.unwrap();
            handle
                .rpc(1, Operation::Commit(Commit::default()))
                .await
                .unwrap();
            assert_eq!(*seen.lock().unwrap(), vec![crate::sched::OPERATION_NICE]);
            // the runtime's only worker runs this task again, at its nice
            let worker = tokio::spawn(async { crate::sched::current_nice() })
                .await
                .unwrap();
            assert_eq!(worker, 0);
            stop.cancel();
        });
    }

    fn copy_to_startup(prio: u8) -> Operation {
        let Operation::EditConfig { config, .. } = group_edit(prio) else {
            unreachable!()
        };
        Operation::CopyConfig {
            target: Datastore::Startup,
            source: Source::Config(config),
        }
    }

    fn get_startup() -> Operation {
        whole_config(Datastore::Startup)
    }

    /// Until `n` writes reached the gate (the writer thread took them).
    /// `op` queued for the actor now (`Handle::rpc` would wait for its
    /// answer first); its answer is awaited from the task returned.
    async fn queued(
        handle: &Handle,
        session: u32,
        op: Operation,
    ) -> tokio::task::JoinHandle<RpcResult> {
        let (reply, rx) = oneshot::channel();
        let req = Request::Rpc {
            session,
            op: Box::new(op),
            reply,
        };
        handle.tx.send(req).await.unwrap();
        tokio::spawn(async move { rx.await.unwrap() })
    }

    async fn entered(gate: &store::Gate, n: usize) {
        for _ in 0..1000 {
            if gate.entered.load(Ordering::SeqCst) >= n {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("no startup write reached the disk");
    }

    /// The startup file is written off the actor: while its write waits
    /// for the disk, another session's edit and commit complete and
    /// get-config still shows the old startup; the copies are answered
    /// once the file is written, in the order given, and startup is then
    /// the last of them, in memory and on disk.
    #[test]
    fn a_slow_startup_write_does_not_hold_up_a_commit() {
        let rt = runtime(2);
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let gate = Arc::new(store::Gate::default());
            let mut store = Store::new(dir.path()).unwrap();
            store.gate = Some(gate.clone());
            let nb = Northbound::boot(store, vec![]).unwrap();
            let stop = CancellationToken::new();
            let (handle, _task) = nb.spawn(stop.clone());
            let h = handle.clone();
            let first = tokio::spawn(async move { h.rpc(1, copy_to_startup(110)).await });
            entered(&gate, 1).await;
            let h = handle.clone();
            let second = tokio::spawn(async move { h.rpc(1, copy_to_startup(120)).await });
            let commit = async {
                handle.rpc(2, group_edit(130)).await.unwrap();
                handle
                    .rpc(2, Operation::Commit(Commit::default()))
                    .await
                    .unwrap();
                data(handle.rpc(2, get_startup()).await)
            };
            let Ok(startup) =
                tokio::time::timeout(std::time::Duration::from_secs(10), commit).await
            else {
                // let the held write go, or the runtime's end waits for it
                gate.open();
                panic!("the commit did not complete while startup was being written");
            };
            assert!(!startup.contains("<priority>"), "{startup}");
            assert!(!first.is_finished() && !second.is_finished());
            assert!(!dir.path().join("startup.xml").exists());
            gate.open();
            assert!(matches!(first.await.unwrap(), Ok(Reply::Ok)));
            assert!(matches!(second.await.unwrap(), Ok(Reply::Ok)));
            let startup = data(handle.rpc(2, get_startup()).await);
            assert!(startup.contains("<priority>120</priority>"), "{startup}");
            let file = std::fs::read_to_string(dir.path().join("startup.xml")).unwrap();
            assert!(file.contains("<priority>120</priority>"), "{file}");
            stop.cancel();
        });
    }

    fn get_running() -> Operation {
        whole_config(Datastore::Running)
    }

    /// `get-config` of the whole of `source`.
    fn whole_config(source: Datastore) -> Operation {
        Operation::GetConfig {
            source,
            filter: None,
            with_defaults: WithDefaults::Explicit,
        }
    }

    /// A confirmed commit's `<persist>` record is written off the actor:
    /// while it waits for the disk, another session's reads are answered
    /// (running as it was: the commit is not applied before its record is
    /// on disk), and what would change something (the confirming commit,
    /// an edit) waits; once on disk the commit is answered, then the
    /// confirming commit, which removes the record after it was written
    /// (it never overtakes it).
    #[test]
    fn a_slow_persist_write_does_not_hold_up_another_session() {
        let rt = runtime(2);
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let gate = Arc::new(store::Gate::default());
            let mut store = Store::new(dir.path()).unwrap();
            store.confirm_gate = Some(gate.clone());
            let applied = Arc::new(Mutex::new(Vec::new()));
            let nb = Northbound::boot(
                store,
                vec![Box::new(Recorder {
                    applied: applied.clone(),
                })],
            )
            .unwrap();
            let stop = CancellationToken::new();
            let (handle, _task) = nb.spawn(stop.clone());
            handle.rpc(1, group_edit(120)).await.unwrap();
            let h = handle.clone();
            let commit = tokio::spawn(async move { h.rpc(1, confirmed(Some("p1"), None)).await });
            entered(&gate, 1).await;
            // queued in this order (two tasks' rpcs could come in either)
            let c = Commit {
                persist_id: Some("p1".into()),
                ..Commit::default()
            };
            let confirm = queued(&handle, 2, Operation::Commit(c)).await;
            let edit = queued(&handle, 3, group_edit(130)).await;
            let reads = async {
                let running = data(handle.rpc(3, get_running()).await);
                let candidate = data(handle.rpc(3, whole_config(Datastore::Candidate)).await);
                (running, candidate)
            };
            let Ok((running, candidate)) =
                tokio::time::timeout(std::time::Duration::from_secs(10), reads).await
            else {
                gate.open();
                panic!("another session's read waited for the persist record's write");
            };
            assert!(!running.contains("<priority>"), "{running}");
            assert!(
                candidate.contains("<priority>120</priority>"),
                "{candidate}"
            );
            // the changes wait for the commit, which waits for the disk
            for _ in 0..50 {
                tokio::task::yield_now().await;
            }
            assert!(!commit.is_finished() && !confirm.is_finished() && !edit.is_finished());
            assert_eq!(
                *applied.lock().unwrap(),
                vec![0],
                "applied before its record"
            );
            let record = dir.path().join("confirmed-commit.toml");
            assert!(!record.exists());
            gate.open();
            assert!(matches!(commit.await.unwrap(), Ok(Reply::Ok)));
            assert!(matches!(confirm.await.unwrap(), Ok(Reply::Ok)));
            assert!(matches!(edit.await.unwrap(), Ok(Reply::Ok)));
            assert!(
                !record.exists(),
                "the confirming commit went before the record"
            );
            let running = data(handle.rpc(3, get_running()).await);
            assert!(running.contains("<priority>120</priority>"), "{running}");
            assert_eq!(gate.entered.load(Ordering::SeqCst), 1);
            stop.cancel();
        });
    }

    /// A `<persist>` record the writer thread cannot write: the commit is
    /// refused and changes nothing, what waited behind it goes on, and the
    /// same commit goes through once the disk is back.
    #[test]
    fn a_failed_persist_write_is_refused_and_changes_nothing() {
        let rt = runtime(2);
        rt.block_on(async {
            let (nb, applied, dir) = booted();
            let stop = CancellationToken::new();
            let (handle, _task) = nb.spawn(stop.clone());
            handle.rpc(1, group_edit(120)).await.unwrap();
            let aside = break_storage(&dir);
            let err = handle
                .rpc(1, confirmed(Some("p1"), None))
                .await
                .unwrap_err();
            assert_eq!(err[0].tag, ErrorTag::OperationFailed);
            let running = data(handle.rpc(2, get_running()).await);
            assert!(!running.contains("<priority>"), "{running}");
            assert_eq!(*applied.lock().unwrap(), vec![0], "nothing applied");
            assert!(handle
                .rpc(
                    2,
                    Operation::CancelCommit {
                        persist_id: Some("p1".into())
                    }
                )
                .await
                .is_err());
            unbreak_storage(&dir, aside);
            handle.rpc(1, confirmed(Some("p1"), None)).await.unwrap();
            let running = data(handle.rpc(2, get_running()).await);
            assert!(running.contains("<priority>120</priority>"), "{running}");
            let rec = Store::at(dir.path()).read_confirm().unwrap().unwrap();
            assert_eq!(rec.persist_id, "p1");
            stop.cancel();
        });
    }

    /// A startup write that fails is answered with the storage error and
    /// leaves startup as it was; the next one is written.
    #[test]
    fn a_failed_startup_write_is_reported_and_changes_nothing() {
        let rt = runtime(2);
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let nb = Northbound::boot(Store::new(dir.path()).unwrap(), vec![]).unwrap();
            let stop = CancellationToken::new();
            let (handle, _task) = nb.spawn(stop.clone());
            // a directory that is not empty where the file goes: the
            // rename onto it fails
            let blocker = dir.path().join("startup.xml");
            std::fs::create_dir_all(blocker.join("in-the-way")).unwrap();
            let e = match handle.rpc(1, copy_to_startup(110)).await {
                Err(e) => e,
                other => panic!("{other:?}"),
            };
            assert_eq!(e[0].tag, ErrorTag::OperationFailed);
            assert!(
                e[0].message
                    .as_deref()
                    .unwrap_or("")
                    .starts_with("storage:"),
                "{e:?}"
            );
            let startup = data(handle.rpc(1, get_startup()).await);
            assert!(!startup.contains("<priority>"), "{startup}");
            std::fs::remove_dir_all(&blocker).unwrap();
            assert!(matches!(
                handle.rpc(1, copy_to_startup(120)).await,
                Ok(Reply::Ok)
            ));
            let startup = data(handle.rpc(1, get_startup()).await);
            assert!(startup.contains("<priority>120</priority>"), "{startup}");
            assert!(matches!(
                handle
                    .rpc(
                        1,
                        Operation::DeleteConfig {
                            target: Datastore::Startup
                        }
                    )
                    .await,
                Ok(Reply::Ok)
            ));
            assert!(!blocker.exists());
            stop.cancel();
        });
    }

    /// A subsystem whose state takes long to produce (100,000 leases).
    struct Slow;

    impl Subsystem for Slow {
        fn name(&self) -> &'static str {
            "slow"
        }
        fn prepare(&mut self, _old: &Config, _new: &Config) -> Result<(), Vec<ConfigError>> {
            Ok(())
        }
        fn apply(&mut self, _old: &Config, _new: &Config) {}
        fn state_xml(&self) -> String {
            std::thread::sleep(std::time::Duration::from_millis(1500));
            String::new()
        }
    }

    /// A long `<get>` does not hold up the runtime's other tasks (a backup
    /// channel's keepalives, other sessions), even on a runtime with a
    /// single worker.
    #[test]
    fn a_long_get_does_not_stall_the_other_tasks() {
        let rt = runtime(1);
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let nb =
                Northbound::boot(Store::new(dir.path()).unwrap(), vec![Box::new(Slow)]).unwrap();
            let stop = CancellationToken::new();
            let (handle, _task) = nb.spawn(stop.clone());
            let ticker = tokio::spawn(async move {
                let mut worst = std::time::Duration::ZERO;
                let mut last = std::time::Instant::now();
                for _ in 0..40 {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    worst = worst.max(last.elapsed());
                    last = std::time::Instant::now();
                }
                worst
            });
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            let get = Operation::Get {
                filter: None,
                with_defaults: WithDefaults::Explicit,
            };
            handle.rpc(1, get).await.unwrap();
            let worst = ticker.await.unwrap();
            assert!(
                worst < std::time::Duration::from_millis(700),
                "a 50 ms ticker waited {worst:?} during the get"
            );
            stop.cancel();
        });
    }

    /// A candidate edit of `n` VRRP groups (about six nodes each).
    fn groups_edit(n: usize) -> Operation {
        let mut groups = String::new();
        for i in 0..n {
            groups.push_str(&format!(
                "<group><interface>eth{}</interface><vrid>{}</vrid><virtual-ip>10.{}.{}.1</virtual-ip><priority>100</priority></group>",
                i / 200,
                i % 200 + 1,
                i / 200,
                i % 200
            ));
        }
        vrrp_edit(&groups)
    }

    fn candidate_xpath(select: &str) -> Operation {
        Operation::GetConfig {
            source: Datastore::Candidate,
            filter: Some(Filter::XPath {
                select: select.into(),
                namespaces: vec![("v".into(), "urn:hotlease:yang:vrrp".into())],
            }),
            with_defaults: WithDefaults::Explicit,
        }
    }

    /// A client's XPath filter is evaluated off the actor with a deadline
    /// (issue 11): a quadratic expression over about 5,000 nodes is
    /// answered resource-denied at its deadline, another session's read
    /// is answered while it runs, and a cheap XPath still selects.
    #[test]
    fn a_costly_xpath_filter_is_cut_at_its_deadline_off_the_actor() {
        // the expression takes about 4 s over 800 groups here (debug build)
        XPATH_DEADLINE_TEST.store(1_000, Ordering::Relaxed);
        let rt = runtime(2);
        rt.block_on(async {
            let (nb, _applied, _dir) = booted();
            let stop = CancellationToken::new();
            let (handle, _task) = nb.spawn(stop.clone());
            handle.rpc(1, groups_edit(800)).await.unwrap();
            let cheap = data(
                handle
                    .rpc(1, candidate_xpath("/v:vrrp/v:group[v:vrid='7']"))
                    .await,
            );
            assert!(cheap.contains("<vrid>7</vrid>"), "{cheap}");
            assert!(!cheap.contains("<vrid>8</vrid>"), "{cheap}");
            let h = handle.clone();
            let t0 = std::time::Instant::now();
            let costly = tokio::spawn(async move {
                let r = h.rpc(2, candidate_xpath("//*[count(//*) > 0]")).await;
                (r, t0.elapsed())
            });
            // the actor is free meanwhile: another read is answered while
            // the XPath is still being evaluated
            tokio::time::sleep(Duration::from_millis(20)).await;
            let t1 = std::time::Instant::now();
            let other = tokio::time::timeout(
                Duration::from_secs(5),
                handle.rpc(3, whole_config(Datastore::Candidate)),
            )
            .await
            .expect("another session's read waited for the XPath");
            let other_took = t1.elapsed();
            assert!(data(other).contains("<vrid>7</vrid>"));
            // (on the actor it would wait for the deadline, 1 s)
            assert!(
                other_took < Duration::from_millis(500),
                "the other read waited {other_took:?} for the XPath"
            );
            let (r, took) = costly.await.unwrap();
            let errs = r.expect_err("the costly XPath is refused");
            assert_eq!(errs[0].tag, ErrorTag::ResourceDenied, "{errs:?}");
            assert_eq!(errs[0].app_tag.as_deref(), Some("xpath-too-costly"));
            assert!(took < Duration::from_secs(3), "answered after {took:?}");
            assert!(took >= Duration::from_secs(1), "answered after {took:?}");
            stop.cancel();
        });
        XPATH_DEADLINE_TEST.store(0, Ordering::Relaxed);
    }

    /// A large change is validated off the actor (issue 11): while a
    /// commit of 500 VRRP groups (the whole datastore validated), a
    /// `<validate>` and a test-only edit of another large change, and a
    /// copy-config of running to startup are being validated, another
    /// session's read is answered first; another session's edit waits for
    /// the commit and lands after it (the commit installs the candidate it
    /// validated, without that edit).
    #[test]
    fn a_large_change_is_validated_off_the_actor() {
        let rt = runtime(2);
        rt.block_on(async {
            let (nb, applied, _dir) = booted();
            let stop = CancellationToken::new();
            let (handle, _task) = nb.spawn(stop.clone());
            handle.rpc(1, groups_edit(500)).await.unwrap();
            let read = || whole_config(Datastore::Running);
            let timed = |session: u32, op: Operation| {
                let h = handle.clone();
                tokio::spawn(async move {
                    let r = h.rpc(session, op).await;
                    (r, std::time::Instant::now())
                })
            };
            let commit = timed(1, Operation::Commit(Commit::default()));
            tokio::time::sleep(Duration::from_millis(20)).await;
            let read_sent = std::time::Instant::now();
            let other_read = timed(2, read());
            tokio::time::sleep(Duration::from_millis(5)).await;
            let edit_sent = std::time::Instant::now();
            let other_edit = timed(3, group_edit(77));
            let (commit, commit_at) = commit.await.unwrap();
            commit.unwrap();
            // (about 0.7 s in a debug build: the others came meanwhile)
            assert!(
                edit_sent < commit_at,
                "the commit was over before the others were sent: make it larger"
            );
            let (r, read_at) = other_read.await.unwrap();
            // answered while the commit was being validated, from running
            // as it was before the commit
            assert!(
                read_at < commit_at,
                "the read waited for the commit ({:?} > {:?})",
                read_at - read_sent,
                commit_at - read_sent
            );
            assert!(!data(r).contains("<vrid>7</vrid>"));
            let (r, edit_at) = other_edit.await.unwrap();
            r.unwrap();
            assert!(edit_at > commit_at, "the edit came before the commit");
            let running = data(handle.rpc(2, read()).await);
            assert_eq!(running.matches("<group>").count(), 500);
            assert!(running.contains("<priority>100</priority>"));
            assert!(!running.contains("<priority>77</priority>"));
            assert_eq!(applied.lock().unwrap().last(), Some(&500));
            let candidate = data(
                handle.rpc(2, whole_config(Datastore::Candidate)).await,
            );
            assert!(candidate.contains("<priority>77</priority>"));

            // <validate> of a large change: the same
            handle.rpc(1, Operation::DiscardChanges).await.unwrap();
            let mut bigger = String::new();
            for i in 0..500 {
                bigger.push_str(&format!(
                    "<group><interface>eth{}</interface><vrid>{}</vrid><priority>90</priority></group>",
                    i / 200,
                    i % 200 + 1
                ));
            }
            handle.rpc(1, vrrp_edit(&bigger)).await.unwrap();
            // `op` of session 1 and, while it runs, a read of session 2:
            // when the read was sent and answered, when `op` was
            let during = |op: Operation| async {
                let op = timed(1, op);
                tokio::time::sleep(Duration::from_millis(20)).await;
                let read_sent = std::time::Instant::now();
                let other_read = timed(2, read());
                let (r, op_at) = op.await.unwrap();
                assert!(matches!(r, Ok(Reply::Ok)), "{r:?}");
                assert!(read_sent < op_at, "it was over before the read: make it larger");
                let (_, read_at) = other_read.await.unwrap();
                (read_sent, read_at, op_at)
            };
            let validate = Operation::Validate {
                source: Source::Datastore(Datastore::Candidate),
            };
            let (_, read_at, validate_at) = during(validate).await;
            assert!(read_at < validate_at, "the read waited for the validation");

            // a test-only edit of a large change: the same, and the
            // candidate stays
            handle.rpc(1, Operation::DiscardChanges).await.unwrap();
            let Operation::EditConfig { config, .. } = vrrp_edit(&bigger) else {
                unreachable!()
            };
            let test_only = Operation::EditConfig {
                target: Datastore::Candidate,
                default_operation: EditOp::Merge,
                test_option: TestOption::TestOnly,
                error_option: ErrorOption::StopOnError,
                config,
            };
            let (_, read_at, tested_at) = during(test_only).await;
            assert!(read_at < tested_at, "the read waited for the test-only edit");
            let candidate = data(
                handle.rpc(2, whole_config(Datastore::Candidate)).await,
            );
            assert!(!candidate.contains("<priority>90</priority>"));
            assert!(candidate.contains("<priority>100</priority>"));

            // copy-config of running to startup (validated as a whole
            // before it is written): the same
            let save = Operation::CopyConfig {
                target: Datastore::Startup,
                source: Source::Datastore(Datastore::Running),
            };
            let (read_sent, read_at, save_at) = during(save).await;
            // (its answer waits for the disk too: on the actor the read
            // would be answered once the validation is over, just before)
            assert!(
                read_at - read_sent < (save_at - read_sent) / 2,
                "the read waited for the copy-config's validation ({:?} of {:?})",
                read_at - read_sent,
                save_at - read_sent
            );
            let startup = data(
                handle.rpc(2, whole_config(Datastore::Startup)).await,
            );
            assert_eq!(startup.matches("<group>").count(), 500);
            stop.cancel();
        });
    }

    /// A list entry given one of its leaves twice (its key, another leaf)
    /// is refused with the node's name, and the candidate is unchanged
    /// (a top-level container given twice is merged, as before):
    /// libyang's merge (the edit's fast path) took such a parsed entry and
    /// failed an assertion on the next entry of the same list (found by
    /// the `netconf_rpc` fuzz target: one rpc aborted the daemon).
    #[test]
    fn an_entry_with_a_leaf_given_twice_is_refused() {
        let (mut nb, _applied, _dir) = booted();
        const DHCP: &str = r#"<dhcp-server xmlns="urn:hotlease:yang:dhcp-server">"#;
        let before = data(nb.operation(1, whole_config(Datastore::Candidate)));
        for (pools, twice) in [
            (
                "<ip-pool><name>p26</name><name>8</name></ip-pool><ip-pool><name>p26</name></ip-pool>",
                "name",
            ),
            (
                "<ip-pool><name>p1</name><lease-time>60</lease-time><lease-time>70</lease-time></ip-pool>",
                "lease-time",
            ),
        ] {
            let errs = nb
                .operation(1, edit(&format!("{DHCP}{pools}</dhcp-server>")))
                .expect_err(pools);
            assert_eq!(errs.len(), 1, "{errs:?}");
            assert_eq!(errs[0].tag, ErrorTag::BadElement, "{errs:?}");
            assert_eq!(
                errs[0].message.as_deref(),
                Some(format!("<{twice}> is given more than once: its parent holds one").as_str())
            );
            let after = data(nb.operation(1, whole_config(Datastore::Candidate)));
            assert_eq!(after, before, "the candidate changed");
        }
        // a list entry given twice in one edit: merged twice, by the walk
        // (libyang's merge crashed on it too)
        nb.operation(1, edit(&format!(
            "{DHCP}<ip-pool><name>p3</name><lease-time>60</lease-time></ip-pool><ip-pool><name>p4</name></ip-pool>\
             <ip-pool><name>p3</name><lease-time>70</lease-time></ip-pool></dhcp-server>"
        )))
        .unwrap();
        let after = data(nb.operation(1, whole_config(Datastore::Candidate)));
        assert_eq!(after.matches("<name>p3</name>").count(), 1, "{after}");
        assert!(after.contains("<lease-time>70</lease-time>"), "{after}");
        nb.operation(1, Operation::DiscardChanges).unwrap();
        // the fuzz target's second crash: entries of three pools given two
        // and three times, apart
        let found = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fuzz/corpus/netconf_rpc/regression-entries-given-twice"
        ))
        .unwrap();
        let (start, end) = (
            found.find("<config>").unwrap() + "<config>".len(),
            found.find("</config>").unwrap(),
        );
        let _ = nb.operation(1, edit(&found[start..end]));
        nb.operation(1, Operation::DiscardChanges).unwrap();
        // a top-level container given twice is merged, as clients send it
        // (one per part of an edit)
        nb.operation(1, edit(&format!(
            "{DHCP}<ip-pool><name>p1</name></ip-pool></dhcp-server>{DHCP}<ip-pool><name>p2</name></ip-pool></dhcp-server>"
        )))
        .unwrap();
        let after = data(nb.operation(1, whole_config(Datastore::Candidate)));
        assert!(
            after.contains("<name>p1</name>") && after.contains("<name>p2</name>"),
            "{after}"
        );
    }

    fn booted() -> (Northbound, Arc<Mutex<Vec<usize>>>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let applied = Arc::new(Mutex::new(Vec::new()));
        let nb = Northbound::boot(
            Store::new(dir.path()).unwrap(),
            vec![Box::new(Recorder {
                applied: applied.clone(),
            })],
        )
        .unwrap();
        (nb, applied, dir)
    }

    fn data(r: RpcResult) -> String {
        match r {
            Ok(Reply::Data(d)) => d,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refused_prepare_changes_nothing() {
        let (mut nb, applied, _dir) = booted();
        nb.operation(1, group_edit(120)).unwrap();
        nb.operation(1, Operation::Commit(Commit::default()))
            .unwrap();
        assert_eq!(*applied.lock().unwrap(), vec![0, 1]);
        nb.operation(1, group_edit(13)).unwrap();
        let err = nb
            .operation(1, Operation::Commit(Commit::default()))
            .unwrap_err();
        assert_eq!(err[0].message.as_deref(), Some("priority 13 is unlucky"));
        assert_eq!(*applied.lock().unwrap(), vec![0, 1], "nothing applied");
        let running = data(nb.operation(1, whole_config(Datastore::Running)));
        assert!(running.contains("<priority>120</priority>"), "{running}");
    }

    fn edit(body: &str) -> Operation {
        let cfg = xml::parse(&format!(r#"<config xmlns="{NC_NS}">{body}</config>"#)).unwrap();
        Operation::EditConfig {
            target: Datastore::Candidate,
            default_operation: EditOp::Merge,
            test_option: TestOption::TestThenSet,
            error_option: ErrorOption::StopOnError,
            config: cfg,
        }
    }

    fn get_config(nb: &mut Northbound, d: Datastore) -> String {
        data(nb.operation(
            1,
            Operation::GetConfig {
                source: d,
                filter: None,
                with_defaults: WithDefaults::ReportAll,
            },
        ))
    }

    const DHCP: &str = "urn:hotlease:yang:dhcp-server";

    fn pool_xml(i: u32, extra: &str) -> String {
        format!(
            "<ip-pool><name>p{i}</name><gateway>10.0.{i}.1</gateway><mask>255.255.255.0</mask>\
             <section><start>10.0.{i}.10</start><end>10.0.{i}.20</end></section>{extra}</ip-pool>"
        )
    }

    /// Running (tree and typed configuration) is what validating the whole
    /// candidate gives.
    fn assert_running_is_whole_validation(nb: &Northbound) {
        let mut whole = yang::dup(&nb.candidate);
        validate::full(&mut whole).unwrap();
        assert_eq!(
            yang::print_xml(&whole, WithDefaults::ReportAll),
            yang::print_xml(&nb.running, WithDefaults::ReportAll)
        );
        assert_eq!(nb.running_config, Config::try_from(&nb.running).unwrap());
    }

    /// The pool-only commit path (reduced validation, spliced pools) gives
    /// the same running and candidate as validating everything would.
    #[test]
    fn pool_only_commits_match_full_validation() {
        let (mut nb, _, _dir) = booted();
        let pools: String = (1..=3).map(|i| pool_xml(i, "")).collect();
        nb.operation(
            1,
            edit(&format!(
                r#"<dhcp-server xmlns="{DHCP}">{pools}</dhcp-server>"#
            )),
        )
        .unwrap();
        nb.operation(1, Operation::Commit(Commit::default()))
            .unwrap();
        // switch option 42 of p2 from addresses to text: the old case goes
        nb.operation(
            1,
            edit(&format!(
                r#"<dhcp-server xmlns="{DHCP}">{}</dhcp-server>"#,
                pool_xml(
                    2,
                    "<option><code>42</code><ip-address>10.9.9.9</ip-address></option>"
                )
            )),
        )
        .unwrap();
        nb.operation(1, Operation::Commit(Commit::default()))
            .unwrap();
        assert_eq!(nb.scope, validate::Scope::default());
        nb.operation(
            1,
            edit(&format!(
                r#"<dhcp-server xmlns="{DHCP}">{}</dhcp-server>"#,
                pool_xml(2, "<option><code>42</code><text>ntp</text></option>")
            )),
        )
        .unwrap();
        assert_eq!(nb.scope.entries.len(), 1);
        assert!(!nb.scope.other);
        nb.operation(1, Operation::Commit(Commit::default()))
            .unwrap();
        let running = get_config(&mut nb, Datastore::Running);
        assert!(
            running.contains("<text>ntp</text>") && !running.contains("10.9.9.9"),
            "{running}"
        );
        // every pool has its defaults, and candidate equals running
        assert_eq!(
            running.matches("<lease-time>86400</lease-time>").count(),
            3,
            "{running}"
        );
        assert_eq!(get_config(&mut nb, Datastore::Candidate), running);
        assert_running_is_whole_validation(&nb);
    }

    /// A change of many pools is validated in parts on several threads
    /// (when the machine has several CPUs): the errors of every part are
    /// reported, and the committed result equals whole-tree validation.
    /// netconf-config-change names what a commit changed, from the
    /// changed entries alone on a commit of pools, from the whole tree
    /// otherwise.
    #[test]
    fn config_change_names_each_edit() {
        // the test's user writes: NACM denies writes to others by default
        let (nb, _, _dir) = booted();
        let mut nb = nb.with_recovery_user(Some("ops".into()));
        let (bus, mut pump) = notify::Bus::open(None, 0).unwrap();
        let mut sub = bus
            .subscribe(&notify::SubscribeRequest {
                stream: notify::STREAM.into(),
                filter: None,
                start: None,
                stop: None,
            })
            .unwrap();
        nb.set_notifications(bus);
        nb.sessions.insert(
            1,
            SessionInfo {
                user: "ops".into(),
                kill: CancellationToken::new(),
                source: None,
                login_time: String::new(),
                counters: Arc::default(),
            },
        );
        let mut commit = |nb: &mut Northbound, body: String| -> Vec<(String, String)> {
            nb.operation(1, edit(&body)).unwrap();
            nb.operation(1, Operation::Commit(Commit::default()))
                .unwrap();
            pump.drain();
            let n = sub
                .live
                .as_mut()
                .unwrap()
                .try_recv()
                .expect("a config change");
            assert!(
                sub.live.as_mut().unwrap().try_recv().is_err(),
                "one per commit"
            );
            let root = xml::parse(&n.xml).unwrap();
            assert_eq!(root.name, "netconf-config-change");
            let by = root.elements().find(|e| e.name == "changed-by").unwrap();
            assert_eq!(
                by.elements().map(|e| e.text_trimmed()).collect::<Vec<_>>(),
                ["ops", "1"]
            );
            root.elements()
                .filter(|e| e.name == "edit")
                .map(|e| {
                    let f = |n: &str| e.elements().find(|c| c.name == n).unwrap().text_trimmed();
                    (f("target"), f("operation"))
                })
                .collect()
        };
        let pools: String = (1..=3).map(|i| pool_xml(i, "")).collect();
        let edits = commit(
            &mut nb,
            format!(r#"<dhcp-server xmlns="{DHCP}">{pools}</dhcp-server>"#),
        );
        let want: Vec<(String, String)> = (1..=3)
            .map(|i| {
                (
                    format!("/dhcps:dhcp-server/dhcps:ip-pool[dhcps:name='p{i}']"),
                    "create".to_string(),
                )
            })
            .collect();
        assert_eq!(edits, want);
        // one pool's leaf, another pool added: two edits, nothing else
        let body = format!(
            r#"<dhcp-server xmlns="{DHCP}">{}{}</dhcp-server>"#,
            pool_xml(2, "<lease-time>600</lease-time>"),
            pool_xml(9, "")
        );
        let edits = commit(&mut nb, body);
        assert_eq!(
            edits,
            [
                // a value set over the default is created (libyang's diff)
                (
                    "/dhcps:dhcp-server/dhcps:ip-pool[dhcps:name='p2']/dhcps:lease-time"
                        .to_string(),
                    "create".to_string()
                ),
                (
                    "/dhcps:dhcp-server/dhcps:ip-pool[dhcps:name='p9']".to_string(),
                    "create".to_string()
                )
            ]
        );
        let body = format!(
            r#"<dhcp-server xmlns="{DHCP}">{}</dhcp-server>"#,
            pool_xml(2, "<lease-time>700</lease-time>"),
        );
        let edits = commit(&mut nb, body);
        assert_eq!(
            edits,
            [(
                "/dhcps:dhcp-server/dhcps:ip-pool[dhcps:name='p2']/dhcps:lease-time".to_string(),
                "replace".to_string()
            )]
        );
        let body = format!(
            r#"<dhcp-server xmlns="{DHCP}" xmlns:nc="{NC_NS}"><ip-pool nc:operation="delete"><name>p1</name></ip-pool></dhcp-server>"#
        );
        let edits = commit(&mut nb, body);
        assert_eq!(
            edits,
            [(
                "/dhcps:dhcp-server/dhcps:ip-pool[dhcps:name='p1']".to_string(),
                "delete".to_string()
            )]
        );
    }

    #[test]
    fn large_pool_commits_validate_in_parts() {
        let (mut nb, _, _dir) = booted();
        let bad_gateway = |i: u32| {
            format!(
                "<ip-pool><name>p{i}</name><gateway>10.3.{}.255</gateway><mask>255.255.255.0</mask></ip-pool>",
                i % 256
            )
        };
        // 400 pools; the first and the last break the gateway rule, so
        // with two parts each part has one error.
        let pools: String = (1..=400)
            .map(|i| {
                if i == 1 || i == 400 {
                    bad_gateway(i)
                } else {
                    format!(
                        "<ip-pool><name>p{i}</name><gateway>10.1.{}.{}</gateway>\
                         <mask>255.255.255.248</mask></ip-pool>",
                        i / 32,
                        (i % 32) * 8 + 1
                    )
                }
            })
            .collect();
        nb.operation(
            1,
            edit(&format!(
                r#"<dhcp-server xmlns="{DHCP}">{pools}</dhcp-server>"#
            )),
        )
        .unwrap();
        assert_eq!(nb.scope.entries.len(), 400);
        let errors = nb
            .operation(1, Operation::Commit(Commit::default()))
            .unwrap_err();
        let tags: Vec<_> = errors.iter().map(|e| e.app_tag.as_deref()).collect();
        assert_eq!(tags, [Some("gateway-outside-subnet"); 2], "{errors:?}");
        assert!(!get_config(&mut nb, Datastore::Running).contains("<ip-pool>"));
        // fix both: the commit goes through and matches the whole-tree path
        let fixed: String = [1, 400]
            .iter()
            .map(|i| {
                format!(
                    r#"<ip-pool xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0" nc:operation="replace"><name>p{i}</name><gateway>10.2.{}.1</gateway><mask>255.255.255.0</mask></ip-pool>"#,
                    i % 256
                )
            })
            .collect();
        nb.operation(
            1,
            edit(&format!(
                r#"<dhcp-server xmlns="{DHCP}">{fixed}</dhcp-server>"#
            )),
        )
        .unwrap();
        nb.operation(1, Operation::Commit(Commit::default()))
            .unwrap();
        let running = get_config(&mut nb, Datastore::Running);
        assert_eq!(running.matches("<ip-pool>").count(), 400);
        // a pool-only commit that deletes two pools and edits one
        nb.operation(
            1,
            edit(&format!(
                r#"<dhcp-server xmlns="{DHCP}" xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0">
                   <ip-pool nc:operation="delete"><name>p2</name></ip-pool>
                   <ip-pool nc:operation="delete"><name>p399</name></ip-pool>
                   <ip-pool><name>p3</name><lease-time>600</lease-time></ip-pool></dhcp-server>"#
            )),
        )
        .unwrap();
        assert_eq!(nb.scope.entries.len(), 3);
        assert!(!nb.scope.other);
        nb.operation(1, Operation::Commit(Commit::default()))
            .unwrap();
        let running = get_config(&mut nb, Datastore::Running);
        assert_eq!(running.matches("<ip-pool>").count(), 398);
        assert!(!running.contains("<name>p2</name>") && !running.contains("<name>p399</name>"));
        assert_eq!(running.matches("<lease-time>600</lease-time>").count(), 1);
        assert_eq!(get_config(&mut nb, Datastore::Candidate), running);
        assert_running_is_whole_validation(&nb);
    }

    /// An edit of many pools is parsed in parts on several threads and
    /// merged: the candidate is what one parse of the whole edit gives, the
    /// container's own leaves and other top-level trees included; a bad
    /// value in a later part refuses the whole edit.
    #[test]
    fn large_edits_parse_in_parts() {
        let (mut nb, _, _dir) = booted();
        let pools: String = (0..450)
            .map(|i| {
                format!(
                    "<ip-pool><name>p{i:03}</name><gateway>10.4.{}.{}</gateway>\
                     <mask>255.255.255.248</mask></ip-pool>",
                    i / 32,
                    (i % 32) * 8 + 1
                )
            })
            .collect();
        let body = format!(
            r#"<dhcp-server xmlns="{DHCP}">{pools}<decline-probation>60</decline-probation></dhcp-server>
               <vrrp xmlns="urn:hotlease:yang:vrrp"><group><interface>eth1</interface><vrid>1</vrid><virtual-ip>10.1.1.1</virtual-ip></group></vrrp>"#
        );
        nb.operation(1, edit(&body)).unwrap();
        let whole = yang::parse_config_xml(&format!(
            r#"<dhcp-server xmlns="{DHCP}">{pools}<decline-probation>60</decline-probation></dhcp-server>
               <vrrp xmlns="urn:hotlease:yang:vrrp"><group><interface>eth1</interface><vrid>1</vrid><virtual-ip>10.1.1.1</virtual-ip></group></vrrp>"#
        ))
        .unwrap();
        assert_eq!(
            yang::print_xml(&nb.candidate, WithDefaults::Explicit),
            yang::print_xml(&whole, WithDefaults::Explicit)
        );
        nb.operation(1, Operation::Commit(Commit::default()))
            .unwrap();
        // a bad address in the last pool: nothing of the edit is applied
        let bad: String = (450..900)
            .map(|i| {
                let gw = if i == 899 { "10.5.0.256".to_string() } else { format!("10.5.{}.1", i % 200) };
                format!("<ip-pool><name>p{i:03}</name><gateway>{gw}</gateway><mask>255.255.255.0</mask></ip-pool>")
            })
            .collect();
        let errors = nb
            .operation(
                1,
                edit(&format!(
                    r#"<dhcp-server xmlns="{DHCP}">{bad}</dhcp-server>"#
                )),
            )
            .unwrap_err();
        assert_eq!(errors[0].tag, ErrorTag::InvalidValue, "{errors:?}");
        assert_eq!(
            yang::print_xml(&nb.candidate, WithDefaults::Explicit),
            yang::print_xml(&nb.running, WithDefaults::Explicit)
        );
    }

    /// A subtree filter selecting a whole top-level node of running is
    /// answered from a print kept until the next commit, never stale.
    #[test]
    fn subtree_selection_of_running_follows_commits() {
        let (mut nb, _, _dir) = booted();
        let get = |nb: &mut Northbound| {
            let f = xml::parse(&format!(
                r#"<filter xmlns="{NC_NS}" type="subtree"><dhcp-server xmlns="{DHCP}"/></filter>"#
            ))
            .unwrap();
            data(nb.operation(
                1,
                Operation::GetConfig {
                    source: Datastore::Running,
                    filter: Some(Filter::Subtree(f)),
                    with_defaults: WithDefaults::Explicit,
                },
            ))
        };
        for (i, lease) in [(1, 600), (1, 700), (2, 700)] {
            nb.operation(
                1,
                edit(&format!(
                    r#"<dhcp-server xmlns="{DHCP}">{}</dhcp-server>"#,
                    pool_xml(i, &format!("<lease-time>{lease}</lease-time>"))
                )),
            )
            .unwrap();
            let before = get(&mut nb);
            nb.operation(1, Operation::Commit(Commit::default()))
                .unwrap();
            let after = get(&mut nb);
            assert_ne!(before, after);
            assert!(
                after.contains(&format!("<lease-time>{lease}</lease-time>")),
                "{after}"
            );
            assert_eq!(get(&mut nb), after);
        }
        assert_eq!(get(&mut nb).matches("<ip-pool>").count(), 2);
    }

    /// A `<get>` asks only the subsystems whose namespaces its subtree
    /// filter selects (a reply of another module costs them nothing).
    #[test]
    fn get_asks_only_the_selected_subsystems_for_state() {
        let (mut nb, _, _dir) = booted();
        let get = |nb: &mut Northbound, f: Option<&str>| {
            let filter = f.map(|f| {
                Filter::Subtree(
                    xml::parse(&format!(
                        r#"<filter xmlns="{NC_NS}" type="subtree">{f}</filter>"#
                    ))
                    .unwrap(),
                )
            });
            let before = STATE_READS.get();
            let d = data(nb.operation(
                1,
                Operation::Get {
                    filter,
                    with_defaults: WithDefaults::Explicit,
                },
            ));
            (STATE_READS.get() - before, d)
        };
        let (reads, d) = get(
            &mut nb,
            Some(r#"<dhcp-server xmlns="urn:hotlease:yang:dhcp-server"/>"#),
        );
        assert_eq!(reads, 0, "{d}");
        let (reads, d) = get(&mut nb, Some(r#"<vrrp xmlns="urn:hotlease:yang:vrrp"/>"#));
        assert_eq!(reads, 1);
        assert!(d.contains("<state>master</state>"), "{d}");
        // a top node without a namespace selects every module
        let (reads, d) = get(&mut nb, Some(r#"<vrrp xmlns=""/>"#));
        assert_eq!(reads, 1);
        assert!(d.contains("<state>master</state>"), "{d}");
        assert_eq!(get(&mut nb, None).0, 1);
        assert_eq!(
            get(&mut nb, Some("")).0,
            0,
            "an empty filter selects nothing"
        );
    }

    #[test]
    fn get_merges_state_into_configuration() {
        let (mut nb, _, _dir) = booted();
        nb.operation(1, group_edit(120)).unwrap();
        nb.operation(1, Operation::Commit(Commit::default()))
            .unwrap();
        let all = data(nb.operation(
            1,
            Operation::Get {
                filter: None,
                with_defaults: WithDefaults::Explicit,
            },
        ));
        assert_eq!(all.matches("<vrrp ").count(), 1, "{all}");
        assert!(
            all.contains("<priority>120</priority>") && all.contains("<state>master</state>"),
            "{all}"
        );
    }

    #[test]
    fn xpath_prefixes_become_module_names() {
        let ns = vec![("v".to_string(), "urn:hotlease:yang:vrrp".to_string())];
        assert_eq!(
            translate_xpath("/v:vrrp/v:group[v:vrid='1' and v:interface=\"a:b\"]", &ns).unwrap(),
            "/hotlease-vrrp:vrrp/hotlease-vrrp:group[hotlease-vrrp:vrid='1' and hotlease-vrrp:interface=\"a:b\"]"
        );
        assert!(translate_xpath("/x:vrrp", &ns).is_err());
        assert_eq!(
            translate_xpath("/v:vrrp//*", &ns).unwrap(),
            "/hotlease-vrrp:vrrp//*"
        );
    }
    fn confirmed(persist: Option<&str>, persist_id: Option<&str>) -> Operation {
        Operation::Commit(Commit {
            confirmed: true,
            confirm_timeout: 600,
            persist: persist.map(str::to_string),
            persist_id: persist_id.map(str::to_string),
        })
    }

    /// Make the storage directory unusable for real (a file where the
    /// directory was: every write, rename and delete in it fails with
    /// ENOTDIR, as on a broken disk); undo with `unbreak`.
    fn break_storage(dir: &tempfile::TempDir) -> std::path::PathBuf {
        let aside = dir.path().with_extension("aside");
        std::fs::rename(dir.path(), &aside).unwrap();
        std::fs::write(dir.path(), b"not a directory").unwrap();
        aside
    }

    fn unbreak_storage(dir: &tempfile::TempDir, aside: std::path::PathBuf) {
        std::fs::remove_file(dir.path()).unwrap();
        std::fs::rename(aside, dir.path()).unwrap();
    }

    fn running_has(nb: &mut Northbound, text: &str) -> bool {
        get_config(nb, Datastore::Running).contains(text)
    }

    /// Issue 9 item 5: a persisted confirmed commit whose record cannot be
    /// written is refused and changes nothing (it used to be applied with
    /// no rollback pending).
    #[test]
    fn confirmed_commit_that_cannot_be_saved_changes_nothing() {
        let (mut nb, applied, dir) = booted();
        nb.operation(1, group_edit(120)).unwrap();
        let aside = break_storage(&dir);
        let err = nb.operation(1, confirmed(Some("p1"), None)).unwrap_err();
        assert_eq!(err[0].tag, ErrorTag::OperationFailed);
        assert!(!running_has(&mut nb, "<priority>120</priority>"));
        assert_eq!(*applied.lock().unwrap(), vec![0], "nothing applied");
        assert!(nb.pending.is_none());
        assert!(nb
            .operation(
                1,
                Operation::CancelCommit {
                    persist_id: Some("p1".into())
                }
            )
            .is_err());
        // the candidate keeps the edit: once the disk is back the same
        // commit goes through
        unbreak_storage(&dir, aside);
        nb.operation(1, confirmed(Some("p1"), None)).unwrap();
        assert!(running_has(&mut nb, "<priority>120</priority>"));
        assert!(nb.store.read_confirm().unwrap().is_some());
    }

    /// Item 5, the same gap when the record cannot be deleted: the
    /// confirming commit is refused, the commit stays pending and its
    /// timer still rolls it back.
    #[test]
    fn confirming_commit_that_cannot_delete_its_record_changes_nothing() {
        let (mut nb, _, dir) = booted();
        nb.operation(1, group_edit(120)).unwrap();
        nb.operation(1, confirmed(Some("p1"), None)).unwrap();
        let aside = break_storage(&dir);
        let confirm = Operation::Commit(Commit {
            persist_id: Some("p1".into()),
            ..Commit::default()
        });
        assert!(nb.operation(2, confirm.clone()).is_err());
        assert!(nb.pending.is_some(), "still pending");
        // a cancel before the deadline cannot remove the record either
        assert!(nb
            .operation(
                2,
                Operation::CancelCommit {
                    persist_id: Some("p1".into())
                }
            )
            .is_err());
        assert!(nb.pending.is_some() && running_has(&mut nb, "<priority>120</priority>"));
        unbreak_storage(&dir, aside);
        nb.operation(2, confirm).unwrap();
        assert!(nb.pending.is_none());
        assert!(nb.store.read_confirm().unwrap().is_none());
        assert!(running_has(&mut nb, "<priority>120</priority>"));
    }

    /// Item 5, `rollback_pending`: a rollback the runtime refuses leaves
    /// the commit pending (record kept, retried), not the unconfirmed
    /// configuration forever.
    #[test]
    fn refused_rollback_stays_pending() {
        let (mut nb, applied, _dir) = booted();
        nb.operation(1, group_edit(120)).unwrap();
        nb.operation(1, confirmed(Some("p1"), None)).unwrap();
        REFUSE_ALL.set(true);
        let cancel = Operation::CancelCommit {
            persist_id: Some("p1".into()),
        };
        let err = nb.operation(1, cancel.clone()).unwrap_err();
        assert_eq!(err[0].message.as_deref(), Some("refusing everything"));
        let p = nb.pending.as_ref().expect("still pending");
        assert!(
            p.deadline <= Instant::now() + ROLLBACK_RETRY,
            "retried soon"
        );
        assert!(nb.store.read_confirm().unwrap().is_some(), "record kept");
        REFUSE_ALL.set(false);
        nb.operation(1, cancel).unwrap();
        assert!(nb.pending.is_none());
        assert!(nb.store.read_confirm().unwrap().is_none());
        assert!(!running_has(&mut nb, "<priority>120</priority>"));
        assert_eq!(*applied.lock().unwrap(), vec![0, 1, 0]);
    }

    /// Issue 9 item 7 (RFC 6241 §7.5): the candidate lock is not granted
    /// over changes a session left behind when it ended.
    #[test]
    fn candidate_lock_refused_over_changes_of_an_ended_session() {
        let (mut nb, _, _dir) = booted();
        let lock = Operation::Lock {
            target: Datastore::Candidate,
        };
        nb.operation(1, group_edit(120)).unwrap();
        // its own changes do not stop a session from locking
        nb.operation(1, lock.clone()).unwrap();
        nb.operation(
            1,
            Operation::Unlock {
                target: Datastore::Candidate,
            },
        )
        .unwrap();
        nb.session_ended(1, "dropped", None);
        let err = nb.operation(2, lock.clone()).unwrap_err();
        assert_eq!(err[0].tag, ErrorTag::LockDenied);
        nb.operation(2, Operation::DiscardChanges).unwrap();
        nb.operation(2, lock).unwrap();
        assert!(!get_config(&mut nb, Datastore::Candidate).contains("<priority>120</priority>"));
    }

    /// Issue 9 item 6: a key with spaces around it (kept by libyang as
    /// part of the string) reaches running through either edit path, and
    /// running and candidate stay equal.
    #[test]
    fn pool_names_come_from_the_parsed_tree() {
        let (mut nb, _, _dir) = booted();
        let plain = pool_xml(2, "").replace("<name>p2</name>", "<name> p2 </name>");
        // the fast path (plain merge) and the walk (an operation attribute)
        let walked = pool_xml(3, "")
            .replace(
                "<ip-pool>",
                &format!("<ip-pool xmlns:nc=\"{NC_NS}\" nc:operation=\"create\">"),
            )
            .replace("<name>p3</name>", "<name> p3</name>");
        for body in [plain, walked] {
            nb.operation(
                1,
                edit(&format!(
                    r#"<dhcp-server xmlns="{DHCP}">{body}</dhcp-server>"#
                )),
            )
            .unwrap();
            nb.operation(1, Operation::Commit(Commit::default()))
                .unwrap();
        }
        let running = get_config(&mut nb, Datastore::Running);
        assert!(
            running.contains("<name> p2 </name>") && running.contains("<name> p3</name>"),
            "{running}"
        );
        assert_eq!(running, get_config(&mut nb, Datastore::Candidate));
        assert_running_is_whole_validation(&nb);
        assert_eq!(nb.running_config.dhcp.pools.len(), 2);
    }

    /// Issue 9 item 8: a key holding both quote kinds cannot be put in a
    /// path: refused with a clear error by both edit paths, nothing
    /// changes; a plain leaf may hold both.
    #[test]
    fn keys_with_both_quote_kinds_are_refused() {
        let (mut nb, _, _dir) = booted();
        let before = get_config(&mut nb, Datastore::Candidate);
        let body = pool_xml(4, "").replace("<name>p4</name>", "<name>it's \"q\"</name>");
        let with_op = body.replace(
            "<ip-pool>",
            &format!("<ip-pool xmlns:nc=\"{NC_NS}\" nc:operation=\"merge\">"),
        );
        for b in [body, with_op] {
            let err = nb
                .operation(
                    1,
                    edit(&format!(r#"<dhcp-server xmlns="{DHCP}">{b}</dhcp-server>"#)),
                )
                .unwrap_err();
            assert_eq!(err[0].tag, ErrorTag::InvalidValue);
            assert!(
                err[0].message.as_deref().unwrap().contains("both ' and \""),
                "{err:?}"
            );
            assert_eq!(get_config(&mut nb, Datastore::Candidate), before);
        }
        let leaf = pool_xml(5, "<domain-name>it's \"q\"</domain-name>");
        nb.operation(
            1,
            edit(&format!(
                r#"<dhcp-server xmlns="{DHCP}">{leaf}</dhcp-server>"#
            )),
        )
        .unwrap();
        nb.operation(1, Operation::Commit(Commit::default()))
            .unwrap();
        assert!(get_config(&mut nb, Datastore::Running).contains("it's"));
    }
}
