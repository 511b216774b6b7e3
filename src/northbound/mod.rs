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
//! locks shared across tasks; each operation is short (no I/O but the atomic
//! startup write), so sessions only wait for each other's operations, never
//! for each other's network.
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
pub mod ops;
pub mod store;
pub mod validate;

use std::collections::{BTreeSet, HashMap};
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
use crate::xml::{self, escape_text, Element, NC_NS};
use crate::yang::{self, WithDefaults};
use edit::{find_child, top_schema};
use error::{ErrorTag, ErrorType, RpcError};
use ops::{Commit, Datastore, EditOp, ErrorOption, Filter, Operation, Reply, Source, TestOption};
use store::{PersistedConfirm, Store};

type RpcResult = Result<Reply, Vec<RpcError>>;

enum Request {
    Register {
        user: String,
        kill: CancellationToken,
        reply: oneshot::Sender<u32>,
    },
    Unregister {
        session: u32,
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
}

impl Handle {
    /// Register a new session; returns its session-id.
    pub async fn register(&self, user: String, kill: CancellationToken) -> u32 {
        let (reply, rx) = oneshot::channel();
        if self
            .tx
            .send(Request::Register { user, kill, reply })
            .await
            .is_err()
        {
            return self.next_id.fetch_add(1, Ordering::Relaxed);
        }
        rx.await
            .unwrap_or_else(|_| self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    pub async fn unregister(&self, session: u32) {
        let _ = self.tx.send(Request::Unregister { session }).await;
    }

    pub async fn rpc(&self, session: u32, op: Operation) -> RpcResult {
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
    let mut tree =
        yang::parse_config_xml(xml).map_err(|e| invalid(e.first().map(error::from_ly)))?;
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
        };
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

    /// Start the actor; it runs until `shutdown` fires.
    pub fn spawn(self, shutdown: CancellationToken) -> (Handle, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(256);
        let handle = Handle {
            tx,
            next_id: self.next_id.clone(),
        };
        let task = tokio::spawn(self.run(rx, shutdown));
        (handle, task)
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Request>, shutdown: CancellationToken) {
        loop {
            let deadline = self.pending.as_ref().map(|p| p.deadline);
            tokio::select! {
                req = rx.recv() => match req {
                    Some(req) => self.handle(req),
                    None => break,
                },
                _ = async { tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)).await }, if deadline.is_some() => {
                    info!("confirmed commit timed out: rolling back");
                    // a refusal is logged and retried
                    let _ = self.rollback_pending();
                }
                _ = shutdown.cancelled() => break,
            }
        }
    }

    fn handle(&mut self, req: Request) {
        match req {
            Request::Register { user, kill, reply } => {
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                self.sessions.insert(id, SessionInfo { user, kill });
                let _ = reply.send(id);
            }
            Request::Unregister { session } => self.session_ended(session),
            Request::Rpc { session, op, reply } => {
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
                let t0 = std::time::Instant::now();
                let r = blocking(|| self.operation(session, *op));
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

    /// RFC 6241 §7.5/§8.4: what a session's end releases.
    fn session_ended(&mut self, session: u32) {
        self.sessions.remove(&session);
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
            let _ = self.rollback_pending();
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
            } => {
                let tree = self.operational(selected_namespaces(filter.as_ref()).as_ref());
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
                source: Datastore::Running,
                filter,
                with_defaults,
            } => filtered(
                &self.running,
                filter.as_ref(),
                with_defaults,
                Some(&mut self.running_nodes),
            ),
            Operation::GetConfig {
                source,
                filter,
                with_defaults,
            } => filtered(self.tree(source), filter.as_ref(), with_defaults, None),
            Operation::EditConfig {
                target,
                default_operation,
                test_option,
                error_option,
                config,
            } => self.edit_config(session, target, default_operation, test_option, error_option, &config),
            Operation::CopyConfig { target, source } => self.copy_config(session, target, source),
            Operation::DeleteConfig { target } => match target {
                Datastore::Startup => {
                    self.check_lock(session, target)?;
                    self.store.delete_startup().map_err(io_error)?;
                    self.startup = yang::empty();
                    Ok(Reply::Ok)
                }
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
                self.session_ended(session_id);
                Ok(Reply::Ok)
            }
            Operation::Commit(c) => self.commit(session, c),
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
            // carried out by its subsystem (see `call`)
            Operation::BatchBackup { service, .. } => Err(vec![RpcError::operation_failed(
                format!("remote-backup-service '{service}': batch-backup is not an operation on the datastores"),
            )]),
        }
    }

    /// Running configuration merged with every subsystem's state. An
    /// entry libyang refuses (one lease with text the schema cannot hold)
    /// is left out alone; the rest of the subsystem's state is shown.
    /// Running merged with the state of the subsystems `selected` names a
    /// namespace of (every subsystem when `None`).
    fn operational(&self, selected: Option<&BTreeSet<String>>) -> DataTree<'static> {
        // the same bad entry is refused at every <get>: warn once, then debug
        static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if crate::fault::armed("northbound-panic") {
            panic!("fault point northbound-panic");
        }
        let mut tree = yang::dup(&self.running);
        for s in &self.subsystems {
            let ns = s.namespaces();
            if let Some(sel) = selected {
                if !ns.is_empty() && !ns.iter().any(|n| sel.contains(*n)) {
                    continue;
                }
            }
            let xml = s.state_xml();
            if xml.is_empty() {
                continue;
            }
            let (parts, refused) = yang::parse_state_entries(&xml);
            for state in &parts {
                if tree.merge(state).is_err() {
                    warn!(subsystem = s.name(), "cannot merge operational state");
                }
                yang::rewind(&mut tree);
            }
            if let Some(e) = refused.first() {
                if WARNED.swap(true, Ordering::Relaxed) {
                    tracing::debug!(subsystem = s.name(), refused = refused.len(), error = ?e, "operational state entries left out");
                } else {
                    warn!(subsystem = s.name(), refused = refused.len(), error = ?e, "operational state entries left out");
                }
            }
        }
        tree
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
        let mut copy = test_only.then(|| yang::dup(&self.candidate));
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

    fn copy_config(&mut self, session: u32, target: Datastore, source: Source) -> RpcResult {
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
        let mut tree = match source {
            Source::Datastore(d) => yang::dup(self.tree(d)),
            Source::Config(cfg) => config_tree(&cfg)?,
        };
        self.check_lock(session, target)?;
        match target {
            Datastore::Running => Err(vec![RpcError::protocol(
                ErrorTag::OperationNotSupported,
                "running is not writable (no :writable-running): copy to the candidate and commit",
            )]),
            Datastore::Candidate => {
                self.candidate = tree;
                self.scope = validate::Scope::all();
                self.candidate_edited(session);
                Ok(Reply::Ok)
            }
            Datastore::Startup => {
                validate::full(&mut tree)?;
                self.store
                    .write_startup(&yang::print_xml(&tree, WithDefaults::Explicit))
                    .map_err(io_error)?;
                self.startup = tree;
                info!(session, "startup datastore saved");
                Ok(Reply::Ok)
            }
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
        Ok(Reply::Ok)
    }

    fn commit(&mut self, session: u32, c: Commit) -> RpcResult {
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
        let new = validate::candidate(&self.running_config, &self.candidate, &self.scope)?;
        self.prepare(&new)?;
        // What the confirmed-commit file must say once this commit is in
        // effect is written before anything changes: a commit that cannot
        // be persisted is refused and changes nothing.
        if c.confirmed {
            let deadline = Instant::now() + Duration::from_secs(c.confirm_timeout as u64);
            let persist = c
                .persist
                .clone()
                .or_else(|| self.pending.as_ref().and_then(|p| p.persist.clone()));
            if let Some(id) = &persist {
                // A follow-up confirmed commit keeps the original rollback
                // point; the configuration under test is the candidate
                // (running once this commit is installed).
                let rollback = self.pending.as_ref().map_or(&self.running, |p| &p.rollback);
                let rec = PersistedConfirm {
                    persist_id: id.clone(),
                    deadline_unix_ms: now_unix_ms() + c.confirm_timeout as u64 * 1000,
                    rollback_xml: yang::print_xml(rollback, WithDefaults::Explicit),
                    pending_xml: yang::print_xml(&self.candidate, WithDefaults::Explicit),
                };
                self.store.write_confirm(&rec).map_err(io_error)?;
            }
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
            self.apply(new);
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
            self.apply(new);
            self.pending = None;
            info!(session, "confirmed commit confirmed");
        } else {
            self.apply(new);
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
        self.rollback_pending()?;
        Ok(Reply::Ok)
    }

    /// Roll back to the configuration before the pending confirmed commit.
    /// The rollback is installed before the persisted record goes, so that
    /// a refused rollback leaves the commit pending (and retried after
    /// `ROLLBACK_RETRY`), never the unconfirmed configuration forever.
    fn rollback_pending(&mut self) -> Result<(), Vec<RpcError>> {
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
        self.apply(rollback);
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
    fn apply(&mut self, new: validate::Validated) {
        if new.changed() {
            for s in self.subsystems.iter_mut() {
                s.apply(&self.running_config, &new.config);
            }
            self.running_xml.clear();
            self.running_nodes.clear();
        }
        self.running_config = new.install(&mut self.running, &mut self.candidate);
        self.candidate_modified = false;
        self.candidate_editors.clear();
        self.scope = validate::Scope::default();
    }
}

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
                let root = xml::parse(&node_xml)
                    .map_err(|e| vec![RpcError::operation_failed(e.to_string())])?;
                for e in filter::apply(&matching, std::slice::from_ref(&root), &keys_of) {
                    e.write_xml(&mut out, NC_NS);
                }
            }
            Ok(Reply::Data(out))
        }
        Some(Filter::XPath { select, namespaces }) => {
            let expr = translate_xpath(select, namespaces)?;
            yang::clear_errors();
            let set = yang::find_xpath(tree, &expr).map_err(|e| {
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
            Ok(Reply::Data(yang::print_xml(&result, wd)))
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
                let module = ns.and_then(yang::module_by_ns).ok_or_else(|| {
                    vec![RpcError::bad_element(
                        ErrorType::Application,
                        ErrorTag::InvalidValue,
                        "filter",
                        &format!("XPath prefix '{word}' is not bound to a known module namespace"),
                    )]
                })?;
                out.push_str(module.name);
            } else {
                out.push_str(word);
            }
            continue;
        }
        out.push(c);
    }
    Ok(out)
}

/// RFC 6022 get-schema for our embedded modules.
fn get_schema(identifier: &str, version: Option<&str>, format: Option<&str>) -> RpcResult {
    let invalid = |m: String| {
        vec![RpcError::bad_element(
            ErrorType::Application,
            ErrorTag::InvalidValue,
            "identifier",
            &m,
        )]
    };
    let Some(m) = yang::module_by_name(identifier) else {
        return Err(invalid(format!("no schema '{identifier}'")));
    };
    if let Some(v) = version {
        if !v.is_empty() && v != m.revision {
            return Err(invalid(format!("no revision {v} of '{identifier}'")));
        }
    }
    if let Some(f) = format {
        let f = f.rsplit(':').next().unwrap_or(f);
        if f != "yang" {
            return Err(invalid(format!("schema format '{f}' is not available")));
        }
    }
    Ok(Reply::Raw(format!(
        "<data xmlns=\"{}\">{}</data>",
        ops::MONITORING_NS,
        escape_text(m.text)
    )))
}

/// Run an operation of the actor (a large `<get>`, the validation of a big
/// commit: up to seconds of CPU) without holding up the other tasks of
/// the runtime's worker: the backup channels' keepalives, the NETCONF
/// sessions. `block_in_place` hands the worker's queued tasks to another
/// worker first (a current-thread runtime, in tests, just runs it).
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// The namespaces a `<get>` filter selects at its top: a subtree filter
/// names each top node's namespace (a node without one selects every
/// namespace, RFC 6241 §6.2.1); an XPath filter is not analysed (`None`:
/// every namespace).
fn selected_namespaces(filter: Option<&Filter>) -> Option<BTreeSet<String>> {
    match filter? {
        Filter::Subtree(top) => top
            .elements()
            .map(|e| {
                let ns = e.ns.as_str();
                (!ns.is_empty()).then(|| ns.to_owned())
            })
            .collect(),
        Filter::XPath { .. } => None,
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
    }

    fn group_edit(prio: u8) -> Operation {
        let cfg = xml::parse(&format!(
            r#"<config xmlns="{NC_NS}"><vrrp xmlns="urn:hotlease:yang:vrrp"><group><interface>eth1</interface><vrid>1</vrid><virtual-ip>10.1.1.1</virtual-ip><priority>{prio}</priority></group></vrrp></config>"#
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
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
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
        let running = data(nb.operation(
            1,
            Operation::GetConfig {
                source: Datastore::Running,
                filter: None,
                with_defaults: WithDefaults::Explicit,
            },
        ));
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
        nb.session_ended(1);
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
