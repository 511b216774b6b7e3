//! NETCONF notifications (RFC 5277): the bus that carries events from the
//! runtimes and the northbound to the subscribed sessions, the replay log
//! kept in the storage directory, and what a subscription selects.
//!
//! ```text
//!  runtimes, northbound ──EventSink (bounded, try_send)──► Pump task
//!                                                            │ libyang builds + validates
//!                                                            │ replay log (memory + file)
//!                                                            │ each distinct filter, once
//!                                                            │ NACM, once per user
//!                                                            ▼
//!     session writing nothing? ──yes──► Outlet: framed bytes straight into its SSH channel
//!                              └─no───► per-session queue (bounded, try_send) ──► session task
//! ```
//! The fan-out costs per session only what cannot be shared: the bus
//! evaluates each distinct filter once per notification (subscriptions
//! with equal filters share one) and NACM once per user, and hands the
//! notification only to the sessions it selects; the message is printed
//! once, and framed once per framing (`Notification::framed`), for all
//! the sessions that send it. A session that is writing nothing and has
//! nothing queued gets it written by the bus itself, into its SSH channel
//! (`Outlet`), without a wake-up of its task; otherwise it is queued to
//! the task, which writes it after what it is writing, so it never splits
//! nor overtakes a reply. The fan-out starts at a different session each
//! time: none is always last.
//! Nobody waits for a subscriber: a session whose queue is full (its
//! client reads slower than events come) loses its subscription and is
//! told by its overflow token. The session then tells its client with
//! `notificationComplete` and stays open; if that notice cannot be
//! written within `NOTICE_GRACE` (the client's SSH window is stalled),
//! the session is closed (`netconf::session`). The bus writes directly
//! only what the client's SSH window takes at once, so a stalled client
//! fills its queue as before. The bus state is
//! behind a std `Mutex` held only to append a record and fan it out, never
//! across an `.await`: subscribing must see the log and the live stream
//! with no gap and no duplicate between them.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::error::{ErrorTag, ErrorType, RpcError};
use super::nacm;
use super::ops::Filter;
use crate::event::{Event, EventSink};
use crate::xml::{self, Element};
use crate::yang;

/// The RFC 5277 notification namespace (envelope and create-subscription).
pub const NOTIF_NS: &str = "urn:ietf:params:xml:ns:netconf:notification:1.0";
/// Namespace of nc-notifications (`netconf/streams`).
pub const STREAMS_NS: &str = "urn:ietf:params:xml:ns:netmod:notification";
/// The only stream: every notification the server sends.
pub const STREAM: &str = "NETCONF";
/// Notifications queued per subscribed session before it counts as
/// unable to keep up.
pub const SESSION_QUEUE: usize = 512;
/// How long a session whose queue overflowed may take to write what it
/// was writing and the `notificationComplete` that tells its client the
/// subscription ended; a client that has read nothing for that long is
/// stalled, and its session is closed. A protocol timer: long enough for
/// a client that is only slow (a scheduler hiccup on a loaded controller),
/// short enough that a dead one does not hold its buffers for minutes.
pub const NOTICE_GRACE: std::time::Duration = std::time::Duration::from_secs(10);
/// Name of the replay log in the storage directory.
pub const REPLAY_FILE: &str = "notifications.log";

/// One notification, built and validated.
#[derive(Debug)]
pub struct Notification {
    pub time: DateTime<Utc>,
    /// The notification's element (content of `<notification>`).
    pub xml: String,
    /// The whole `<notification>` message, printed once for every
    /// session that sends it.
    message: String,
    /// `xml` parsed, once, by the first subtree filter that needs it.
    parsed: std::sync::OnceLock<Option<Element>>,
    /// `message` framed, once per framing (end-of-message, chunked), by
    /// the first session that sends it that way; `Bytes`, so that the
    /// SSH layer takes the same buffer for every session (no copy).
    frames: [std::sync::OnceLock<Bytes>; 2],
}

impl Notification {
    pub fn new(time: DateTime<Utc>, xml: String) -> Notification {
        let message = format!(
            "<notification xmlns=\"{NOTIF_NS}\"><eventTime>{}</eventTime>{xml}</notification>",
            time.to_rfc3339_opts(SecondsFormat::Micros, true),
        );
        Notification {
            time,
            xml,
            message,
            parsed: std::sync::OnceLock::new(),
            frames: Default::default(),
        }
    }

    /// The message framed as `frame` does it, computed once for framing
    /// `slot` (0 or 1) and shared by every session that frames that way.
    pub fn framed(&self, slot: usize, frame: impl FnOnce(&[u8]) -> Vec<u8>) -> &Bytes {
        self.frames[slot.min(1)].get_or_init(|| Bytes::from(frame(self.message.as_bytes())))
    }

    fn event_time(&self) -> String {
        self.time.to_rfc3339_opts(SecondsFormat::Micros, true)
    }

    /// The `<notification>` message.
    pub fn message(&self) -> &str {
        &self.message
    }

    fn parsed(&self) -> Option<&Element> {
        self.parsed
            .get_or_init(|| xml::parse(&self.xml).ok())
            .as_ref()
    }
}

/// Build a notification of the `nc-notifications` module with no leaves
/// (`replayComplete`, `notificationComplete`).
pub fn marker(name: &str) -> Notification {
    let xml =
        yang::notification_xml(&format!("/nc-notifications:{name}"), &[]).unwrap_or_else(|_| {
            format!("<{name} xmlns=\"urn:ietf:params:xml:ns:netmod:notification\"/>")
        });
    Notification::new(Utc::now(), xml)
}

/// The replay log: the last `cap` notifications, in memory and in a file
/// of the storage directory (0600) that a restart reads back. Appends are
/// not fsynced (a notification is not a lease); the file is rewritten
/// with the newest `cap` records when it holds twice that many.
#[derive(Debug)]
struct ReplayLog {
    cap: usize,
    records: VecDeque<Arc<Notification>>,
    created: DateTime<Utc>,
    file: Option<(PathBuf, File)>,
    on_disk: usize,
}

fn escape_line(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

fn unescape_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some(o) => out.push(o),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

const HEADER: &str = "hotlease-notification-log 1";

fn open_private(path: &Path, append: bool) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(append)
        .write(true)
        .truncate(!append)
        .mode(0o600)
        .open(path)
}

impl ReplayLog {
    fn memory(cap: usize) -> ReplayLog {
        ReplayLog {
            cap,
            records: VecDeque::new(),
            created: Utc::now(),
            file: None,
            on_disk: 0,
        }
    }

    /// Read the log back (records that do not parse are skipped and
    /// counted in the log), keep the newest `cap`, and rewrite the file.
    fn open(dir: &Path, cap: usize) -> std::io::Result<ReplayLog> {
        let path = dir.join(REPLAY_FILE);
        let mut log = ReplayLog::memory(cap);
        if cap == 0 {
            let _ = std::fs::remove_file(&path);
            return Ok(log);
        }
        match File::open(&path) {
            Ok(f) => {
                let mut skipped = 0usize;
                for (i, line) in BufReader::new(f).lines().enumerate() {
                    let line = line?;
                    if i == 0 {
                        match line.strip_prefix(HEADER).map(str::trim) {
                            Some(t) => {
                                if let Ok(t) = DateTime::parse_from_rfc3339(t) {
                                    log.created = t.with_timezone(&Utc);
                                }
                            }
                            None => skipped += 1,
                        }
                        continue;
                    }
                    let parsed = line.split_once('\t').and_then(|(t, x)| {
                        let time = DateTime::parse_from_rfc3339(t).ok()?;
                        Some(Notification::new(
                            time.with_timezone(&Utc),
                            unescape_line(x),
                        ))
                    });
                    match parsed {
                        Some(n) => {
                            log.records.push_back(Arc::new(n));
                            if log.records.len() > cap {
                                log.records.pop_front();
                            }
                        }
                        None => skipped += 1,
                    }
                }
                if skipped > 0 {
                    warn!(skipped, file = %path.display(), "replay log: unreadable records skipped");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        log.file = Some((path.clone(), open_private(&path, false)?));
        log.rewrite()?;
        Ok(log)
    }

    fn write_record(f: &mut File, n: &Notification) -> std::io::Result<()> {
        writeln!(f, "{}\t{}", n.event_time(), escape_line(&n.xml))
    }

    /// Write the header and the records held to a new file, then put it
    /// in place of the old one.
    fn rewrite(&mut self) -> std::io::Result<()> {
        let Some((path, _)) = &self.file else {
            return Ok(());
        };
        let tmp = path.with_extension("log.tmp");
        let mut f = open_private(&tmp, false)?;
        let mut buf = std::io::BufWriter::new(&mut f);
        writeln!(
            buf,
            "{HEADER} {}",
            self.created.to_rfc3339_opts(SecondsFormat::Micros, true)
        )?;
        for n in &self.records {
            ReplayLog::write_record(buf.get_mut(), n)?;
        }
        buf.flush()?;
        drop(buf);
        std::fs::rename(&tmp, path)?;
        let path = path.clone();
        self.file = Some((path.clone(), open_private(&path, true)?));
        self.on_disk = self.records.len();
        Ok(())
    }

    fn push(&mut self, n: Arc<Notification>) {
        if self.cap == 0 {
            return;
        }
        self.records.push_back(n.clone());
        if self.records.len() > self.cap {
            self.records.pop_front();
        }
        let r = if self.on_disk + 1 >= 2 * self.cap {
            self.rewrite()
        } else if let Some((_, f)) = &mut self.file {
            self.on_disk += 1;
            ReplayLog::write_record(f, &n)
        } else {
            return;
        };
        if let Err(e) = r {
            warn!(error = %e, "replay log cannot be written");
        }
    }
}

/// A subscribed session's output as the bus sees it. The bus writes a
/// notification straight into it when the session writes nothing and has
/// nothing queued, without waking the session task; otherwise it queues
/// the notification to the task, which writes it after what it is
/// writing. So a notification never splits a reply nor overtakes one
/// queued before it (`netconf::session` implements it).
///
/// A large fan-out's helper threads hold the outlets too, and the last
/// reference to one may be dropped there, outside the async runtime:
/// dropping an outlet must not need one (the session's is tokio's sync
/// primitives and russh's `ChannelTx` and `DirectWriter`, which do not).
pub trait Outlet: Send + Sync + std::fmt::Debug {
    /// Write `n` now, whole, if the session is not writing and has
    /// nothing queued (and its subscription is still on); false: queue it.
    fn try_deliver(&self, n: &Arc<Notification>) -> bool;
    /// `n` is going to the queue: counted before the task can see it, so
    /// that no later notification is written directly before it.
    fn queuing(&self);
    /// It did not go after all (queue full or closed).
    fn not_queued(&self);
}

/// Who may receive which notification (RFC 8341 §3.4.6): the NACM rules
/// of running, the recovery user, the denial counter. The bus asks it
/// once per notification and user, not once per session.
#[derive(Debug, Clone)]
pub struct Access {
    pub nacm: Arc<std::sync::RwLock<Arc<nacm::Config>>>,
    pub recovery_user: Option<String>,
    pub counters: Arc<nacm::Counters>,
}

impl Access {
    /// The verdicts about `n`, made on demand: the rules as of now, the
    /// notification parsed at most once, each user's verdict once.
    pub fn check<'n>(&self, n: &'n Notification) -> AccessCheck<'n> {
        let cfg = self.nacm.read().unwrap_or_else(|p| p.into_inner()).clone();
        AccessCheck {
            access: self.clone(),
            n,
            cfg,
            tree: None,
            verdicts: Vec::new(),
        }
    }
}

/// [`Access::check`] of one notification.
pub struct AccessCheck<'a> {
    access: Access,
    n: &'a Notification,
    cfg: Arc<nacm::Config>,
    /// `n` parsed by libyang, on the first user NACM applies to.
    tree: Option<Option<yang2::data::DataTree<'static>>>,
    verdicts: Vec<(String, bool)>,
}

impl std::fmt::Debug for AccessCheck<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessCheck")
            .field("verdicts", &self.verdicts)
            .finish()
    }
}

impl AccessCheck<'_> {
    /// Whether `user` may receive the notification; a denial is counted
    /// (each time: one per session that does not get it).
    pub fn allowed(&mut self, user: &str) -> bool {
        if !self.cfg.enabled || self.access.recovery_user.as_deref() == Some(user) {
            return true;
        }
        let allowed = match self.verdicts.iter().find(|(u, _)| u == user) {
            Some(&(_, v)) => v,
            None => {
                let n = self.n;
                let tree = self.tree.get_or_insert_with(|| {
                    let t = yang::parse_notification(&n.xml).ok();
                    yang::clear_errors();
                    t
                });
                let v = tree
                    .as_ref()
                    .is_some_and(|t| self.cfg.rules_for(user).notification_allowed(t));
                yang::clear_errors();
                self.verdicts.push((user.to_string(), v));
                v
            }
        };
        if !allowed {
            self.access
                .counters
                .denied_notifications
                .fetch_add(1, Ordering::Relaxed);
            debug!(%user, "access denied: notification not sent");
        }
        allowed
    }
}

/// Who subscribes: what the bus checks and where it writes for them.
#[derive(Debug, Default)]
pub struct Subscriber {
    /// The session's user and the NACM rules it is under (none: every
    /// notification may be sent).
    pub access: Option<(String, Access)>,
    /// Where the bus may write directly (none: everything is queued).
    pub outlet: Option<Arc<dyn Outlet>>,
}

#[derive(Debug)]
struct Sub {
    id: u64,
    /// Shared by the subscriptions whose filters are equal: the bus
    /// evaluates it once per notification for all of them.
    filter: Arc<NotifFilter>,
    stop: Option<DateTime<Utc>>,
    tx: mpsc::Sender<Arc<Notification>>,
    overflow: CancellationToken,
    access: Option<(String, Access)>,
    outlet: Option<Arc<dyn Outlet>>,
}

#[derive(Debug)]
struct State {
    log: ReplayLog,
    subs: Vec<Sub>,
    next_id: u64,
    /// Notifications fanned out so far: where the next fan-out starts.
    published: u64,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    refused: AtomicU64,
    overflowed: AtomicU64,
}

/// A fan-out to at least this many sessions is split across threads.
const PARALLEL_MIN: usize = 64;

/// Threads a large fan-out uses: the cores the process may run on, at
/// most 8 (the process's, not those of the thread that asks first).
fn fanout_threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| crate::sched::allowed_cpus().len().clamp(1, 8))
}

/// Outlets a fan-out thread takes at a time.
const STEP: usize = 8;

/// One large fan-out, shared by the bus thread and the pool: each takes
/// the next [`STEP`] outlets until none is left, and the bus thread
/// waits until every outlet taken is done.
struct Job {
    outlets: Vec<Option<Arc<dyn Outlet>>>,
    n: Arc<Notification>,
    next: AtomicUsize,
    delivered: Vec<AtomicBool>,
    /// Outlets done, whichever thread took them.
    finished: AtomicUsize,
    /// The bus thread, woken when the last outlet is done.
    waiter: std::thread::Thread,
}

impl Job {
    fn work(&self) {
        let len = self.outlets.len();
        loop {
            let from = self.next.fetch_add(STEP, Ordering::Relaxed);
            let Some(part) = self
                .outlets
                .get(from..(from + STEP).min(len))
                .filter(|p| !p.is_empty())
            else {
                return;
            };
            for (o, d) in part.iter().zip(&self.delivered[from..]) {
                if o.as_ref().is_some_and(|o| o.try_deliver(&self.n)) {
                    d.store(true, Ordering::Relaxed);
                }
            }
            if self.finished.fetch_add(part.len(), Ordering::AcqRel) + part.len() == len {
                self.waiter.unpark();
            }
        }
    }
}

/// A thread that shares large fan-outs with the bus thread, and the CPU
/// it runs on (none: it could not be pinned).
struct Helper {
    cpu: Option<usize>,
    jobs: std::sync::mpsc::Sender<Arc<Job>>,
}

/// The threads that share large fan-outs with the bus thread, one per
/// core (at most [`fanout_threads`]), each pinned to its core: started
/// once, at the first large fan-out, then parked until the bus hands
/// them the next one. Not new threads per fan-out, and not unpinned
/// ones: the kernel often placed those on the CPU of the thread that
/// woke or started them (the bus thread, busy with the fan-out), where
/// they waited up to a scheduler slice (3 ms measured) while the other
/// CPU idled. The bus thread wakes those of the other cores.
fn pool() -> &'static [Helper] {
    static POOL: std::sync::OnceLock<Vec<Helper>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let mut cpus: Vec<Option<usize>> =
            crate::sched::allowed_cpus().into_iter().map(Some).collect();
        cpus.resize(fanout_threads(), None);
        cpus.into_iter()
            .filter_map(|cpu| {
                let (jobs, rx) = std::sync::mpsc::channel::<Arc<Job>>();
                // a thread the system refuses leaves its share to the others
                std::thread::Builder::new()
                    .name("fanout".into())
                    .spawn(move || {
                        if let Some(c) = cpu {
                            // unpinned, it still takes its share
                            let _ = crate::sched::pin(c);
                        }
                        for job in rx {
                            job.work();
                        }
                    })
                    .ok()
                    .map(|_| Helper { cpu, jobs })
            })
            .collect()
    })
}

/// Write `n` to each outlet where it goes at once (`Outlet::try_deliver`);
/// which did. Each delivery is one sealed SSH packet and one TCP send
/// (the session's direct writer), the same work on any thread, so a
/// large fan-out is shared by the caller and the pool, one thread per
/// core (a thread that starts late, or is preempted, leaves its share to
/// the others), and all are done before it returns (the bus holds its
/// lock until then: no later notification overtakes).
fn deliver(outlets: Vec<Option<Arc<dyn Outlet>>>, n: &Arc<Notification>) -> Vec<bool> {
    let threads = fanout_threads().min(outlets.len() / PARALLEL_MIN).max(1);
    if threads == 1 {
        return outlets
            .iter()
            .map(|o| o.as_ref().is_some_and(|o| o.try_deliver(n)))
            .collect();
    }
    let len = outlets.len();
    let job = Arc::new(Job {
        delivered: outlets.iter().map(|_| AtomicBool::new(false)).collect(),
        outlets,
        n: n.clone(),
        next: AtomicUsize::new(0),
        finished: AtomicUsize::new(0),
        waiter: std::thread::current(),
    });
    let here = crate::sched::current_cpu();
    for h in pool()
        .iter()
        .filter(|h| h.cpu.is_none() || h.cpu != here)
        .take(threads - 1)
    {
        let _ = h.jobs.send(job.clone());
    }
    job.work();
    // what the others took is done: every outlet is taken by now, and a
    // thread finishes what it took (a helper that took none is not
    // waited for; it may hold the job, and drop it, a little later)
    while job.finished.load(Ordering::Acquire) < len {
        std::thread::park();
    }
    job.delivered
        .iter()
        .map(|d| d.load(Ordering::Relaxed))
        .collect()
}

/// The notification bus; cheap to clone.
#[derive(Debug, Clone)]
pub struct Bus {
    shared: Arc<Shared>,
    sink: EventSink,
}

/// Receives the events and publishes them; run it as a task.
#[derive(Debug)]
pub struct Pump {
    rx: mpsc::Receiver<Event>,
    bus: Bus,
}

impl Pump {
    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                e = self.rx.recv() => match e {
                    Some(e) => self.bus.publish(&e),
                    None => break,
                },
                _ = shutdown.cancelled() => break,
            }
        }
    }
}

#[cfg(test)]
impl Pump {
    /// Publish every event queued so far (tests drive the pump by hand).
    pub fn drain(&mut self) {
        while let Ok(e) = self.rx.try_recv() {
            self.bus.publish(&e);
        }
    }
}

/// What a `create-subscription` asks for, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscribeRequest {
    pub stream: String,
    pub filter: Option<Filter>,
    pub start: Option<String>,
    pub stop: Option<String>,
}

/// A subscription's filter, checked at subscribe time.
#[derive(Debug, Clone, PartialEq)]
pub enum NotifFilter {
    All,
    Subtree(Element),
    /// libyang XPath (module-name prefixes).
    XPath(String),
}

impl NotifFilter {
    /// Whether the notification passes (RFC 5277 §3.6: the filter is
    /// applied to the notification content, as a `<get>` filter to data).
    pub fn matches(&self, n: &Notification) -> bool {
        match self {
            NotifFilter::All => true,
            NotifFilter::Subtree(f) => {
                let Some(root) = n.parsed() else {
                    return false;
                };
                let tops: Vec<&Element> = f.elements().collect();
                !super::filter::apply(&tops, std::slice::from_ref(root), &|_| None).is_empty()
            }
            NotifFilter::XPath(expr) => match yang::parse_notification(&n.xml) {
                Ok(tree) => {
                    yang::clear_errors();
                    yang::find_xpath(&tree, expr).is_ok_and(|set| !set.is_empty())
                }
                Err(_) => false,
            },
        }
    }
}

/// A subscription: what the log holds for it, then the live queue.
#[derive(Debug)]
pub struct Subscription {
    pub replay: Vec<Arc<Notification>>,
    /// A startTime was given: `replayComplete` follows the replay.
    pub replaying: bool,
    pub stop: Option<DateTime<Utc>>,
    /// What the replay is filtered with (the live queue gets only what
    /// the bus found it selects).
    pub filter: Arc<NotifFilter>,
    /// None when the stop time has passed already.
    pub live: Option<mpsc::Receiver<Arc<Notification>>>,
    /// Cancelled when the session's queue overflowed.
    pub overflow: CancellationToken,
}

fn bad_element(tag: ErrorTag, name: &str, msg: &str) -> RpcError {
    RpcError::bad_element(ErrorType::Protocol, tag, name, msg)
}

fn parse_time(name: &str, v: &str) -> Result<DateTime<Utc>, RpcError> {
    DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            bad_element(
                ErrorTag::InvalidValue,
                name,
                &format!("{name} '{v}' is not a yang:date-and-time"),
            )
        })
}

impl Bus {
    /// A bus with a replay log of `replay` notifications in `dir` (none:
    /// kept in memory only), and its pump.
    pub fn open(dir: Option<&Path>, replay: usize) -> std::io::Result<(Bus, Pump)> {
        let log = match dir {
            Some(d) => ReplayLog::open(d, replay)?,
            None => ReplayLog::memory(replay),
        };
        let (sink, rx) = EventSink::channel();
        let bus = Bus {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    log,
                    subs: Vec::new(),
                    next_id: 1,
                    published: 0,
                }),
                refused: AtomicU64::new(0),
                overflowed: AtomicU64::new(0),
            }),
            sink,
        };
        Ok((bus.clone(), Pump { rx, bus }))
    }

    /// A bus without a pump or a file: what a northbound booted outside
    /// the daemon (tests) sends to.
    pub fn memory() -> Bus {
        Bus::open(None, 0).expect("no file to open").0
    }

    /// Where events go.
    pub fn sink(&self) -> EventSink {
        self.sink.clone()
    }

    /// Queue an event (never waits).
    pub fn emit(&self, e: Event) {
        self.sink.emit(e)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Build, log and fan out one event. An event libyang refuses (a
    /// runtime's bug) is logged and dropped.
    pub fn publish(&self, e: &Event) {
        let xml = match yang::notification_xml(e.notification, &e.leaves) {
            Ok(x) => x,
            Err(errs) => {
                if self.shared.refused.fetch_add(1, Ordering::Relaxed) < 10 {
                    warn!(notification = e.notification, error = ?errs.first(), "notification refused by its YANG module");
                }
                return;
            }
        };
        let n = Arc::new(Notification::new(DateTime::<Utc>::from(e.at), xml));
        let mut st = self.state();
        st.log.push(n.clone());
        // each distinct filter once (few distinct ones: a linear search
        // by address beats hashing), NACM once per user
        let mut verdicts: Vec<(*const NotifFilter, bool)> = Vec::new();
        let mut checks: Vec<(*const (), AccessCheck<'_>)> = Vec::new();
        // Where the fan-out starts moves from one notification to the
        // next (a multiplicative hash of the count spreads the starts): a
        // session is written to after the others by turns, never always
        // last (the last one of 1,000 waits for the 999 before it).
        let len = st.subs.len();
        let start = match len {
            0 => 0,
            len => (st.published.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize % len,
        };
        st.published += 1;
        let mut gone = vec![false; len];
        // the sessions this notification goes to, in fan-out order
        let mut targets: Vec<usize> = Vec::with_capacity(len);
        for i in (start..len).chain(0..start) {
            let s = &st.subs[i];
            let key = Arc::as_ptr(&s.filter);
            let selected = match verdicts.iter().find(|(k, _)| *k == key) {
                Some(&(_, v)) => v,
                None => {
                    let v = s.filter.matches(&n);
                    verdicts.push((key, v));
                    v
                }
            };
            if !selected || s.stop.is_some_and(|stop| n.time > stop) {
                // gone sessions are dropped at the next event (one
                // they select: by the queue, which is closed)
                gone[i] = s.tx.is_closed();
                continue;
            }
            if let Some((user, access)) = &s.access {
                let key = Arc::as_ptr(&access.nacm).cast::<()>();
                let c = match checks.iter().position(|(k, _)| *k == key) {
                    Some(c) => c,
                    None => {
                        checks.push((key, access.check(&n)));
                        checks.len() - 1
                    }
                };
                if !checks[c].1.allowed(user) {
                    continue;
                }
            }
            targets.push(i);
        }
        drop(checks);
        let outlets: Vec<_> = targets.iter().map(|&i| st.subs[i].outlet.clone()).collect();
        let delivered = deliver(outlets, &n);
        for (&i, delivered) in targets.iter().zip(delivered) {
            if delivered {
                continue;
            }
            let s = &st.subs[i];
            if let Some(o) = &s.outlet {
                o.queuing();
            }
            if let Err(e) = s.tx.try_send(n.clone()) {
                gone[i] = true;
                if let Some(o) = &s.outlet {
                    o.not_queued();
                }
                if let mpsc::error::TrySendError::Full(_) = e {
                    self.shared.overflowed.fetch_add(1, Ordering::Relaxed);
                    warn!(
                        subscription = s.id,
                        queue = SESSION_QUEUE,
                        "subscriber cannot keep up: subscription ended"
                    );
                    s.overflow.cancel();
                }
            }
        }
        let mut gone = gone.into_iter();
        st.subs.retain(|_| !gone.next().unwrap_or(false));
    }

    /// Subscriptions that ended because their session could not keep up.
    pub fn overflowed(&self) -> u64 {
        self.shared.overflowed.load(Ordering::Relaxed)
    }

    /// RFC 5277 §2.1.1 create-subscription, of nobody in particular:
    /// everything the filter selects is queued.
    pub fn subscribe(&self, req: &SubscribeRequest) -> Result<Subscription, RpcError> {
        self.subscribe_as(req, Subscriber::default())
    }

    /// RFC 5277 §2.1.1 create-subscription of `who`: the bus checks NACM
    /// for them, and writes to their outlet directly when it can.
    pub fn subscribe_as(
        &self,
        req: &SubscribeRequest,
        who: Subscriber,
    ) -> Result<Subscription, RpcError> {
        if req.stream != STREAM {
            return Err(bad_element(
                ErrorTag::InvalidValue,
                "stream",
                &format!("no stream '{}' (the only stream is {STREAM})", req.stream),
            ));
        }
        let now = Utc::now();
        let start = req
            .start
            .as_deref()
            .map(|v| parse_time("startTime", v))
            .transpose()?;
        let stop = req
            .stop
            .as_deref()
            .map(|v| parse_time("stopTime", v))
            .transpose()?;
        match (start, stop) {
            (None, Some(_)) => {
                return Err(bad_element(
                    ErrorTag::MissingElement,
                    "startTime",
                    "stopTime needs a startTime",
                ))
            }
            (Some(s), _) if s > now => {
                return Err(bad_element(
                    ErrorTag::BadElement,
                    "startTime",
                    "startTime is in the future",
                ))
            }
            (Some(s), Some(e)) if e < s => {
                return Err(bad_element(
                    ErrorTag::BadElement,
                    "stopTime",
                    "stopTime is earlier than startTime",
                ))
            }
            _ => {}
        }
        let filter = match &req.filter {
            None => NotifFilter::All,
            Some(Filter::Subtree(f)) => NotifFilter::Subtree(f.clone()),
            Some(Filter::XPath { select, namespaces }) => {
                let expr =
                    super::translate_xpath(select, namespaces).map_err(|mut e| e.remove(0))?;
                // compiled once against a notification: a syntax error is
                // the subscriber's, now, not a silent mismatch later
                let probe = marker("replayComplete");
                let tree = yang::parse_notification(&probe.xml)
                    .map_err(|_| RpcError::operation_failed("cannot check the XPath filter"))?;
                yang::clear_errors();
                if let Err(e) = yang::find_xpath(&tree, &expr) {
                    return Err(RpcError::bad_element(
                        ErrorType::Application,
                        ErrorTag::InvalidValue,
                        "filter",
                        &format!("bad XPath: {}", e.msg.unwrap_or_default()),
                    ));
                }
                NotifFilter::XPath(expr)
            }
        };
        let mut st = self.state();
        if start.is_some() && st.log.cap == 0 {
            return Err(RpcError::protocol(
                ErrorTag::OperationFailed,
                "the NETCONF stream keeps no replay log ([netconf] notification-replay = 0)",
            ));
        }
        let replay: Vec<Arc<Notification>> = match start {
            None => Vec::new(),
            Some(s) => st
                .log
                .records
                .iter()
                .filter(|n| n.time >= s && stop.is_none_or(|e| n.time <= e))
                .cloned()
                .collect(),
        };
        // one filter shared by the subscriptions that ask the same
        let filter = st
            .subs
            .iter()
            .find(|s| *s.filter == filter)
            .map_or_else(|| Arc::new(filter), |s| s.filter.clone());
        let overflow = CancellationToken::new();
        let live = if stop.is_some_and(|e| e <= now) {
            None
        } else {
            let (tx, rx) = mpsc::channel(SESSION_QUEUE);
            let id = st.next_id;
            st.next_id += 1;
            st.subs.push(Sub {
                id,
                filter: filter.clone(),
                stop,
                tx,
                overflow: overflow.clone(),
                access: who.access,
                outlet: who.outlet,
            });
            debug!(subscription = id, replay = replay.len(), "subscribed");
            Some(rx)
        };
        Ok(Subscription {
            replay,
            replaying: start.is_some(),
            stop,
            filter,
            live,
            overflow,
        })
    }

    /// `netconf/streams` of nc-notifications, for `<get>`.
    pub fn streams_xml(&self) -> String {
        let st = self.state();
        let replay = st.log.cap > 0;
        let mut out = format!(
            "<netconf xmlns=\"{STREAMS_NS}\"><streams><stream>\
             <name>{STREAM}</name><description>every notification of hotleased: RFC 6470 \
             base notifications and the events of the hotlease modules</description>\
             <replaySupport>{replay}</replaySupport>"
        );
        if replay {
            out.push_str(&format!(
                "<replayLogCreationTime>{}</replayLogCreationTime>",
                st.log.created.to_rfc3339_opts(SecondsFormat::Micros, true)
            ));
        }
        out.push_str("</stream></streams></netconf>");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vrrp_event(vrid: u8, new: &str) -> Event {
        Event::new("/hotlease-vrrp:state-change")
            .leaf("interface", "eth0")
            .leaf("vrid", vrid)
            .leaf("old-state", "backup")
            .leaf("new-state", new)
            .leaf("reason", "master-down-timer")
    }

    fn req(start: Option<&str>, stop: Option<&str>) -> SubscribeRequest {
        SubscribeRequest {
            stream: STREAM.into(),
            filter: None,
            start: start.map(Into::into),
            stop: stop.map(Into::into),
        }
    }

    #[test]
    fn events_are_built_by_libyang_and_refused_when_invalid() {
        let (bus, _pump) = Bus::open(None, 10).unwrap();
        let mut sub = bus.subscribe(&req(None, None)).unwrap();
        bus.publish(&vrrp_event(7, "master"));
        // a leaf the module does not have, and a value out of range
        bus.publish(&vrrp_event(7, "master").leaf("bogus", "1"));
        bus.publish(&vrrp_event(0, "master"));
        let n = sub.live.as_mut().unwrap().try_recv().unwrap();
        assert!(
            n.xml
                .starts_with("<state-change xmlns=\"urn:hotlease:yang:vrrp\">"),
            "{}",
            n.xml
        );
        assert!(n.xml.contains("<vrid>7</vrid>"));
        assert!(sub.live.as_mut().unwrap().try_recv().is_err());
        assert!(xml::parse(n.message()).is_ok());
    }

    #[test]
    fn rfc6470_notifications_validate() {
        let (bus, _pump) = Bus::open(None, 10).unwrap();
        let mut sub = bus.subscribe(&req(None, None)).unwrap();
        let events = [
            Event::new("/ietf-netconf-notifications:netconf-config-change")
                .leaf("changed-by/username", "admin")
                .leaf("changed-by/session-id", 3)
                .leaf("datastore", "running")
                .leaf(
                    "edit[1]/target",
                    "/hotlease-vrrp:vrrp/group[interface='eth0'][vrid='7']/priority",
                )
                .leaf("edit[1]/operation", "replace")
                .leaf("edit[2]/target", "/hotlease-dhcp-server:dhcp-server")
                .leaf("edit[2]/operation", "create"),
            Event::new("/ietf-netconf-notifications:netconf-config-change")
                .flag("changed-by/server")
                .leaf("edit[1]/target", "/hotlease-dhcp-server:dhcp-server")
                .leaf("edit[1]/operation", "delete"),
            Event::new("/ietf-netconf-notifications:netconf-session-start")
                .leaf("username", "admin")
                .leaf("session-id", 3),
            Event::new("/ietf-netconf-notifications:netconf-session-end")
                .leaf("username", "admin")
                .leaf("session-id", 3)
                .leaf("killed-by", 4)
                .leaf("termination-reason", "killed"),
            Event::new("/ietf-netconf-notifications:netconf-confirmed-commit")
                .leaf("username", "admin")
                .leaf("session-id", 3)
                .leaf("confirm-event", "start")
                .leaf("timeout", 30),
            Event::new("/ietf-netconf-notifications:netconf-confirmed-commit")
                .leaf("confirm-event", "timeout"),
        ];
        for e in &events {
            if let Err(errs) = yang::notification_xml(e.notification, &e.leaves) {
                panic!("{e:?}: {errs:?}");
            }
            bus.publish(e);
            let got = sub.live.as_mut().unwrap().try_recv();
            assert!(got.is_ok(), "{e:?} refused");
            let got = got.unwrap();
            assert!(got
                .xml
                .contains("urn:ietf:params:xml:ns:yang:ietf-netconf-notifications"));
            if e.leaves.iter().any(|(p, _)| p == "edit[1]/target") {
                assert!(got.xml.contains("<target xmlns:"), "{}", got.xml);
            }
        }
    }

    #[test]
    fn filters_select_on_the_content() {
        let (bus, _pump) = Bus::open(None, 10).unwrap();
        bus.publish(&vrrp_event(7, "master"));
        bus.publish(&vrrp_event(8, "backup"));
        let sub = bus
            .subscribe(&req(Some("2000-01-01T00:00:00Z"), None))
            .unwrap();
        assert_eq!(sub.replay.len(), 2);
        let subtree = xml::parse(
            r#"<filter xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><state-change xmlns="urn:hotlease:yang:vrrp"><new-state>master</new-state></state-change></filter>"#,
        )
        .unwrap();
        let f = NotifFilter::Subtree(subtree);
        assert!(f.matches(&sub.replay[0]));
        assert!(!f.matches(&sub.replay[1]));
        let x = NotifFilter::XPath("/hotlease-vrrp:state-change[vrid=8]".into());
        assert!(!x.matches(&sub.replay[0]));
        assert!(x.matches(&sub.replay[1]));
    }

    #[test]
    fn replay_survives_a_restart_and_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (bus, _pump) = Bus::open(Some(dir.path()), 3).unwrap();
            for v in 1..=10 {
                bus.publish(&vrrp_event(v, "master"));
            }
        }
        let path = dir.path().join(REPLAY_FILE);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines <= 1 + 2 * 3, "{lines} lines");
        let (bus, _pump) = Bus::open(Some(dir.path()), 3).unwrap();
        let sub = bus
            .subscribe(&req(Some("2000-01-01T00:00:00Z"), None))
            .unwrap();
        let vrids: Vec<bool> = sub
            .replay
            .iter()
            .map(|n| {
                n.xml.contains("<vrid>8</vrid>")
                    || n.xml.contains("<vrid>9</vrid>")
                    || n.xml.contains("<vrid>10</vrid>")
            })
            .collect();
        assert_eq!(vrids, vec![true, true, true]);
        assert!(bus
            .streams_xml()
            .contains("<replaySupport>true</replaySupport>"));
    }

    #[test]
    fn subscribe_checks_its_parameters() {
        let bus = Bus::memory();
        let e = bus
            .subscribe(&req(None, Some("2000-01-01T00:00:00Z")))
            .unwrap_err();
        assert_eq!(e.tag, ErrorTag::MissingElement);
        let e = bus
            .subscribe(&req(Some("2000-01-01T00:00:00Z"), None))
            .unwrap_err();
        assert_eq!(e.tag, ErrorTag::OperationFailed, "no replay log");
        let (bus, _pump) = Bus::open(None, 5).unwrap();
        let e = bus
            .subscribe(&req(Some("2999-01-01T00:00:00Z"), None))
            .unwrap_err();
        assert_eq!(e.tag, ErrorTag::BadElement);
        let e = bus
            .subscribe(&req(
                Some("2001-01-01T00:00:00Z"),
                Some("2000-01-01T00:00:00Z"),
            ))
            .unwrap_err();
        assert_eq!(e.tag, ErrorTag::BadElement);
        let e = bus.subscribe(&req(Some("yesterday"), None)).unwrap_err();
        assert_eq!(e.tag, ErrorTag::InvalidValue);
        let mut r = req(None, None);
        r.stream = "other".into();
        assert_eq!(bus.subscribe(&r).unwrap_err().tag, ErrorTag::InvalidValue);
        // a stop time already past: replay only, nothing live
        let s = bus
            .subscribe(&req(
                Some("2000-01-01T00:00:00Z"),
                Some("2001-01-01T00:00:00Z"),
            ))
            .unwrap();
        assert!(s.live.is_none() && s.replaying);
    }

    /// Subscriptions with equal filters share one, which the bus
    /// evaluates once per notification; a session is queued only what
    /// its filter selects (one whose filter rejects an event is not
    /// woken), in order.
    #[test]
    fn the_bus_queues_only_what_each_filter_selects() {
        let (bus, _pump) = Bus::open(None, 0).unwrap();
        let subtree = |state: &str| {
            let f = xml::parse(&format!(
                r#"<filter xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><state-change xmlns="urn:hotlease:yang:vrrp"><new-state>{state}</new-state></state-change></filter>"#
            ))
            .unwrap();
            SubscribeRequest {
                filter: Some(Filter::Subtree(f)),
                ..req(None, None)
            }
        };
        let mut masters: Vec<Subscription> = (0..3)
            .map(|_| bus.subscribe(&subtree("master")).unwrap())
            .collect();
        let mut backup = bus.subscribe(&subtree("backup")).unwrap();
        let mut all = bus.subscribe(&req(None, None)).unwrap();
        assert!(Arc::ptr_eq(&masters[0].filter, &masters[2].filter));
        assert!(!Arc::ptr_eq(&masters[0].filter, &backup.filter));
        bus.publish(&vrrp_event(1, "master"));
        bus.publish(&vrrp_event(2, "backup"));
        bus.publish(&vrrp_event(3, "master"));
        let vrids = |s: &mut Subscription| {
            let mut out = Vec::new();
            while let Ok(n) = s.live.as_mut().unwrap().try_recv() {
                let v = n.xml.split("<vrid>").nth(1).unwrap();
                out.push(v[..v.find('<').unwrap()].parse::<u8>().unwrap());
            }
            out
        };
        for m in &mut masters {
            assert_eq!(vrids(m), [1, 3]);
        }
        assert_eq!(vrids(&mut backup), [2]);
        assert_eq!(vrids(&mut all), [1, 2, 3]);
    }

    /// A message is framed once per framing, whatever the sessions that
    /// send it.
    #[test]
    fn a_message_is_framed_once_per_framing() {
        let n = marker("replayComplete");
        let calls = std::cell::Cell::new(0);
        let frame = |m: &[u8]| {
            calls.set(calls.get() + 1);
            [m, b"]]>]]>"].concat()
        };
        let first = n.framed(0, frame).as_ptr();
        assert_eq!(n.framed(0, frame).as_ptr(), first);
        assert!(n.framed(0, frame).ends_with(b"</notification>]]>]]>"));
        n.framed(1, frame);
        assert_eq!(calls.get(), 2);
    }

    /// An outlet that takes every notification offered, and counts them.
    #[derive(Debug, Default)]
    struct Taking {
        taken: std::sync::atomic::AtomicUsize,
    }

    impl Outlet for Taking {
        fn try_deliver(&self, _n: &Arc<Notification>) -> bool {
            self.taken.fetch_add(1, Ordering::Relaxed);
            true
        }
        fn queuing(&self) {}
        fn not_queued(&self) {}
    }

    /// NACM is the bus's: a user whose rules deny a notification gets it
    /// neither written nor queued, each such session counted; the others
    /// and the recovery user get it; a denial by the notification rule
    /// holds whatever path the event takes.
    #[test]
    fn the_bus_sends_nothing_nacm_denies() {
        let rules = r#"<nacm xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-acm"><groups><group><name>g</name><user-name>carol</user-name><user-name>root</user-name></group></groups><rule-list><name>l</name><group>g</group><rule><name>no-vrrp</name><module-name>hotlease-vrrp</module-name><notification-name>state-change</notification-name><access-operations>read</access-operations><action>deny</action></rule></rule-list></nacm>"#;
        let mut tree = yang::parse_config_xml(rules).unwrap();
        yang::validate(&mut tree).unwrap();
        let access = Access {
            nacm: Arc::new(std::sync::RwLock::new(Arc::new(nacm::Config::from_tree(
                &tree,
            )))),
            recovery_user: Some("root".into()),
            counters: Arc::default(),
        };
        let (bus, _pump) = Bus::open(None, 0).unwrap();
        let mut subs: Vec<(&str, Arc<Taking>, Subscription)> = ["carol", "alice", "carol", "root"]
            .into_iter()
            .map(|user| {
                let outlet = Arc::new(Taking::default());
                let who = Subscriber {
                    access: Some((user.to_string(), access.clone())),
                    outlet: Some(outlet.clone()),
                };
                (
                    user,
                    outlet,
                    bus.subscribe_as(&req(None, None), who).unwrap(),
                )
            })
            .collect();
        bus.publish(&vrrp_event(7, "master"));
        bus.publish(
            &Event::new("/ietf-netconf-notifications:netconf-session-start")
                .leaf("username", "admin")
                .leaf("session-id", 3),
        );
        for (user, outlet, sub) in &mut subs {
            let want = if *user == "carol" { 1 } else { 2 };
            assert_eq!(outlet.taken.load(Ordering::Relaxed), want, "{user}");
            assert!(
                sub.live.as_mut().unwrap().try_recv().is_err(),
                "{user}: queued"
            );
        }
        assert_eq!(
            access.counters.denied_notifications.load(Ordering::Relaxed),
            2
        );
    }

    /// An outlet that notes in `order` when it is written to.
    #[derive(Debug)]
    struct Noting {
        me: usize,
        order: Arc<Mutex<Vec<usize>>>,
    }

    impl Outlet for Noting {
        fn try_deliver(&self, _n: &Arc<Notification>) -> bool {
            self.order.lock().unwrap().push(self.me);
            true
        }
        fn queuing(&self) {}
        fn not_queued(&self) {}
    }

    /// The fan-out starts at a different session from one notification
    /// to the next: no session is always written to last; each one still
    /// gets every notification once.
    #[test]
    fn no_session_is_always_served_last() {
        let (bus, _pump) = Bus::open(None, 0).unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let subs: Vec<Subscription> = (0..10)
            .map(|me| {
                let who = Subscriber {
                    access: None,
                    outlet: Some(Arc::new(Noting {
                        me,
                        order: order.clone(),
                    })),
                };
                bus.subscribe_as(&req(None, None), who).unwrap()
            })
            .collect();
        let mut lasts = std::collections::BTreeSet::new();
        for v in 1..=20 {
            bus.publish(&vrrp_event(v, "master"));
            let mut got = std::mem::take(&mut *order.lock().unwrap());
            lasts.insert(*got.last().unwrap());
            got.sort_unstable();
            assert_eq!(got, (0..10).collect::<Vec<_>>());
        }
        assert!(lasts.len() >= 5, "served last: {lasts:?}");
        drop(subs);
    }

    /// An outlet that takes some notifications (every other one by its
    /// number), noting the threads that wrote to it.
    #[derive(Debug)]
    struct Threads {
        me: usize,
        calls: std::sync::atomic::AtomicUsize,
        threads: Arc<Mutex<std::collections::HashSet<std::thread::ThreadId>>>,
        /// Shared: the CPUs the writes ran on.
        cpus: Arc<Mutex<std::collections::HashSet<usize>>>,
        /// Shared: whether some call already waited for a second thread.
        waited: Arc<AtomicBool>,
    }

    impl Outlet for Threads {
        fn try_deliver(&self, _n: &Arc<Notification>) -> bool {
            self.calls.fetch_add(1, Ordering::Relaxed);
            self.threads
                .lock()
                .unwrap()
                .insert(std::thread::current().id());
            if let Some(c) = crate::sched::current_cpu() {
                self.cpus.lock().unwrap().insert(c);
            }
            // the first call waits (5 s at most) for a second thread to
            // take some outlets: however fast the others are, a thread
            // that started late cannot find the fan-out already done
            if fanout_threads() > 1 && !self.waited.swap(true, Ordering::Relaxed) {
                let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
                while self.threads.lock().unwrap().len() < 2 && std::time::Instant::now() < until {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
            self.me.is_multiple_of(2)
        }
        fn queuing(&self) {}
        fn not_queued(&self) {}
    }

    /// A large fan-out is shared by threads on other cores (on a machine
    /// with more than one), even when the bus thread may run on one core
    /// only; each outlet is offered each notification exactly once, and
    /// what an outlet did not take is queued to its session, in order.
    #[test]
    fn a_large_fan_out_is_shared_by_threads_and_misses_nobody() {
        let (bus, _pump) = Bus::open(None, 0).unwrap();
        let threads = Arc::new(Mutex::new(std::collections::HashSet::new()));
        let cpus = Arc::new(Mutex::new(std::collections::HashSet::new()));
        let waited = Arc::new(AtomicBool::new(false));
        let outlets: Vec<Arc<Threads>> = (0..500)
            .map(|me| {
                Arc::new(Threads {
                    me,
                    calls: Default::default(),
                    threads: threads.clone(),
                    cpus: cpus.clone(),
                    waited: waited.clone(),
                })
            })
            .collect();
        let mut subs: Vec<Subscription> = outlets
            .iter()
            .map(|o| {
                let who = Subscriber {
                    access: None,
                    outlet: Some(o.clone()),
                };
                bus.subscribe_as(&req(None, None), who).unwrap()
            })
            .collect();
        // the bus thread confined to one core: a thread it started would
        // be too, and share that core with it instead of using another
        let cores = crate::sched::allowed_cpus();
        assert_eq!(fanout_threads(), cores.len().clamp(1, 8));
        std::thread::scope(|s| {
            s.spawn(|| {
                assert!(crate::sched::pin(cores[0]));
                for v in 1..=3 {
                    bus.publish(&vrrp_event(v, "master"));
                }
            });
        });
        for (o, s) in outlets.iter().zip(&mut subs) {
            assert_eq!(o.calls.load(Ordering::Relaxed), 3, "outlet {}", o.me);
            let live = s.live.as_mut().unwrap();
            let mut queued = Vec::new();
            while let Ok(n) = live.try_recv() {
                queued.push(n.xml.clone());
            }
            if o.me.is_multiple_of(2) {
                assert!(queued.is_empty(), "outlet {} took them all", o.me);
            } else {
                assert_eq!(queued.len(), 3, "outlet {}", o.me);
                for (v, xml) in (1..=3).zip(&queued) {
                    assert!(xml.contains(&format!("<vrid>{v}</vrid>")), "{xml}");
                }
            }
        }
        let used = threads.lock().unwrap().len();
        if fanout_threads() > 1 {
            assert!(used > 1, "one thread did the whole fan-out");
            let cpus = cpus.lock().unwrap();
            assert!(cpus.len() > 1, "the fan-out ran on one core only: {cpus:?}");
        }
    }

    #[test]
    fn a_full_queue_ends_that_subscription_only() {
        let (bus, _pump) = Bus::open(None, 0).unwrap();
        let slow = bus.subscribe(&req(None, None)).unwrap();
        let mut fast = bus.subscribe(&req(None, None)).unwrap();
        for i in 0..SESSION_QUEUE + 1 {
            bus.publish(&vrrp_event(1 + (i % 200) as u8, "master"));
            while fast.live.as_mut().unwrap().try_recv().is_ok() {}
        }
        assert!(slow.overflow.is_cancelled());
        assert!(!fast.overflow.is_cancelled());
        assert_eq!(bus.overflowed(), 1);
    }
}
