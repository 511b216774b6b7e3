//! The backup channel: one TCP (or mutual TLS) session per
//! remote-backup-service between `source` and `peer` on `port`, kept up,
//! and handed to its owner (the sync actor) as a typed handle.
//!
//! The channel decides nothing about leases: it connects, runs the hello
//! exchange, keeps the session alive (keepalive, round-trip time, dead
//! time), and forwards every other [`Message`] both ways. It is configured
//! by a [`ChannelConfig`] of its own; mapping the typed YANG configuration
//! onto it is the owner's business.
//!
//! # Tasks
//!
//! ```text
//!            ┌──────────────── Channel (owner's handle: state(), shutdown(), drop = abort)
//!            ▼
//!   supervisor task ── listener on source:port, dialer to peer:port from source,
//!     │  ▲              arbitration, backoff, state, ChannelEvent::{Up, Down} ──► owner
//!     │  │ Report::{Ready, Established, Ended}
//!     ▼  │
//!   connection task (one per TCP connection, in the supervisor's JoinSet):
//!     TLS handshake → Hello/HelloReply → session loop (keepalive, dead timer)
//!       ▲ Session::send            Session::recv ▼        (the owner's SessionHandle)
//! ```
//!
//! # Who talks to whom
//!
//! Both routers listen on `source:port` (SO_REUSEADDR, bound to the source
//! address) and dial `peer:port` from a socket bound to `source`, so the
//! listener can check who calls: a connection from any other address is
//! closed at once, counted, and logged (at most once per
//! [`REFUSED_LOG_EVERY`]). The hello's `source` must be the configured peer
//! too.
//!
//! # One session when both dial at once
//!
//! The router with the higher `source` address (both routers compute the
//! same, since one's source is the other's peer) is the *arbiter*: it
//! alone decides which connection becomes the session, and the other
//! router follows its verdict. Each side sends its `Hello` at once; the
//! non-arbiter answers every acceptable hello with `HelloReply::Accepted`
//! straight away, the arbiter only on the connection it keeps. The arbiter
//! keeps:
//! - no new connection while it has a session up or a connection chosen
//!   (BGP's "established wins": a duplicate gets `Close(DuplicateSession)`);
//! - otherwise the connection *it* initiated: an inbound hello that
//!   arrives while its own dial is in progress is held until that dial
//!   is either chosen (the inbound is then closed as a duplicate) or has
//!   failed (the inbound is then chosen);
//! - otherwise the first acceptable hello.
//!
//! A session is up on a side when it sent `Accepted` and received
//! `Accepted`; since the arbiter sends `Accepted` on one connection at a
//! time, both sides raise the same connection, and when both routers dial
//! at once it is the one the higher address initiated. The arbiter's
//! decisions are serialized in its supervisor, so there is no window in
//! which two connections are both accepted. A non-arbiter that sees the
//! arbiter accept a new connection while it still holds an older session
//! (the arbiter saw the old one die first) takes the new one and closes
//! the old: the arbiter is the source of truth.
//!
//! # Keepalive and reconnection
//!
//! Once up, each side sends `Keepalive{stamp}` every `keepalive_interval`
//! and answers the peer's at once; the echo gives the round-trip time.
//! Any frame resets the dead timer; when nothing arrives for `dead_time`
//! the session is closed with `Close(DeadTimer)` and goes down with that
//! reason. A send that cannot complete within `dead_time` (a peer that
//! stops reading) ends the session the same way. After a session goes
//! down, the dialer tries again after `backoff_initial` (jittered, ×0.5 to
//! ×1); each failed attempt doubles the delay up to `backoff_max`.
//!
//! # Bad input
//!
//! A frame that does not decode closes the session with `Close` (reason
//! from [`WireError::refusal`]) or, during the hello,
//! `HelloReply::Refused` (an unknown protocol version is refused this
//! way, with both versions named). It is counted
//! (`undecodable_frames`) and the reason is in the state; nothing is
//! forwarded to the owner.
//!
//! TLS: see [`super::tls`] for the identity check (chain to `trusted-ca`
//! and the peer address as an IP subjectAltName).

use std::collections::{HashSet, VecDeque};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use super::tls::{self, TlsPaths, TlsSetup};
use super::wire::{
    Hello, HelloReply, Keepalive, Message, ProfileHello, ProfileStatus, ProfileVerdict, Reason,
    Refusal, WireCodec, WireError,
};

/// At most one log line per this period about connections refused for
/// their source address (a scan or a misconfigured third router).
pub const REFUSED_LOG_EVERY: Duration = Duration::from_secs(10);

/// Arbiter: inbound connections held at most while its own dial resolves
/// (more are duplicates at once).
const MAX_HELD: usize = 4;

/// Frames buffered between a session and its owner, each way.
pub const SESSION_QUEUE: usize = 1024;

/// Largest difference between the two routers' lease clocks a session
/// accepts. Leases carry absolute times in the sender's clock; the
/// receiver moves them onto its own by the skew the hellos measured
/// ([`clock_skew`]), so a skewed partner neither expires a lease early nor
/// keeps it late, and both order two versions of an address alike. A day
/// bounds what a peer can claim (a year-2500 clock is a fault, not a skew).
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(86_400);

/// A skew beyond this is logged as a warning at each session (routers run
/// NTP; the session still works).
pub const WARN_CLOCK_SKEW: Duration = Duration::from_secs(30);

/// The hellos carry whole seconds, so two clocks in step measure a skew of
/// -1, 0 or 1 s: within this, the skew is taken as 0 (no correction). Both
/// routers compare the same two hellos, so they take opposite skews (or
/// both 0).
pub const CLOCK_SKEW_TOLERANCE: u64 = 2;

/// The skew to correct the peer's lease times by (peer minus ours, s):
/// 0 within [`CLOCK_SKEW_TOLERANCE`].
pub fn clock_skew(peer_unix: u64, our_unix: u64) -> i64 {
    if peer_unix.abs_diff(our_unix) <= CLOCK_SKEW_TOLERANCE {
        return 0;
    }
    let d = i128::from(peer_unix) - i128::from(our_unix);
    d.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// What a channel needs to know; built by the owner from the typed
/// configuration of a remote-backup-service (and its profiles).
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    /// The service name, for logs.
    pub name: String,
    pub source: Ipv4Addr,
    pub peer: Ipv4Addr,
    pub port: u16,
    /// The bound ssl-policy's files; `None`: plain TCP.
    pub tls: Option<TlsPaths>,
    pub keepalive_interval: Duration,
    pub dead_time: Duration,
    /// Bound of each step of setting a connection up: TCP connect, TLS
    /// handshake, the peer's hello, the peer's reply.
    pub hello_timeout: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// What to say in the hello: its profiles (its `source` is set to
    /// `source`, its `unix_time` to the clock at each connection). The
    /// owner keeps it current with [`Channel::set_hello`].
    pub hello: Hello,
}

impl ChannelConfig {
    /// A plain TCP channel with the default timers (keepalive 1 s, dead
    /// time 3 s, hello 3 s, backoff 100 ms doubling to 5 s).
    pub fn new(name: &str, source: Ipv4Addr, peer: Ipv4Addr, port: u16, hello: Hello) -> Self {
        ChannelConfig {
            name: name.to_owned(),
            source,
            peer,
            port,
            tls: None,
            keepalive_interval: Duration::from_secs(1),
            dead_time: Duration::from_secs(3),
            hello_timeout: Duration::from_secs(3),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            hello,
        }
    }

    /// This router decides which connection is kept (see the module
    /// header).
    fn arbiter(&self) -> bool {
        self.source > self.peer
    }
}

// ------------------------------------------------------------- state

/// State of the connection, as the YANG's `connection` leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    Down,
    Connecting,
    Connected,
}

/// What ended a session, or an attempt at one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// This router closed it, telling the peer this reason.
    Local(Reason),
    /// The peer closed or refused it with this reason.
    Peer(Reason),
    /// The TCP connection ended or failed without a word.
    ConnectionLost,
    /// The TCP connection could not be made.
    Connect,
    /// The TLS handshake failed (a certificate refused here or by the
    /// peer).
    Tls,
    /// The ssl-policy's files cannot be used.
    TlsFiles,
    /// A step of the setup took longer than `hello_timeout`.
    Timeout,
}

/// A [`Cause`] with its text for logs and the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownReason {
    pub cause: Cause,
    pub text: String,
}

impl DownReason {
    fn new(cause: Cause, text: impl Into<String>) -> DownReason {
        DownReason {
            cause,
            text: text.into(),
        }
    }

    fn local(r: &Refusal) -> DownReason {
        DownReason::new(Cause::Local(r.reason), r.text.clone())
    }

    fn peer(r: &Refusal) -> DownReason {
        DownReason::new(Cause::Peer(r.reason), r.text.clone())
    }

    /// The normal end of the connection the arbitration drops: not a
    /// failure worth a log line or the state.
    fn is_duplicate(&self) -> bool {
        matches!(
            self.cause,
            Cause::Local(Reason::DuplicateSession) | Cause::Peer(Reason::DuplicateSession)
        )
    }

    /// An I/O error of the stream; TLS alerts and certificate errors
    /// surface here wrapped in `io::Error`.
    fn io(e: &io::Error) -> DownReason {
        if let Some(t) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            return DownReason::new(Cause::Tls, t.to_string());
        }
        DownReason::new(Cause::ConnectionLost, e.to_string())
    }
}

impl std::fmt::Display for DownReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.cause {
            Cause::Local(r) => write!(f, "closed here ({r:?}): {}", self.text),
            Cause::Peer(r) => write!(f, "closed by the peer ({r:?}): {}", self.text),
            Cause::ConnectionLost => write!(f, "connection lost: {}", self.text),
            Cause::Connect => write!(f, "cannot connect: {}", self.text),
            Cause::Tls => write!(f, "tls: {}", self.text),
            Cause::TlsFiles => write!(f, "ssl-policy: {}", self.text),
            Cause::Timeout => write!(f, "timeout: {}", self.text),
        }
    }
}

/// A snapshot of a channel's state (`Channel::state`).
#[derive(Debug, Clone)]
pub struct ChannelState {
    pub connection: Connection,
    /// When `connection` took its value.
    pub since: SystemTime,
    pub source: Ipv4Addr,
    pub peer: Ipv4Addr,
    pub port: u16,
    /// An ssl-policy is bound: sessions are mutual TLS.
    pub tls: bool,
    /// Subject of the current session's peer certificate.
    pub peer_certificate: Option<String>,
    /// The current session's local and remote TCP addresses.
    pub session_local: Option<SocketAddrV4>,
    pub session_remote: Option<SocketAddrV4>,
    pub last_up: Option<SystemTime>,
    pub last_down: Option<SystemTime>,
    pub last_down_reason: Option<DownReason>,
    /// The last attempt that failed before its session came up (connect,
    /// TLS, hello), with its time: a refused certificate shows here.
    pub last_failure: Option<(SystemTime, DownReason)>,
    /// Round-trip time of the last keepalive.
    pub rtt: Option<Duration>,
    /// The current session's [`SessionUp::clock_skew`].
    pub clock_skew: Option<i64>,
    pub counters: Counts,
}

/// Counters of a channel, over its lifetime.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub frames_in: u64,
    pub frames_out: u64,
    /// Bytes on the wire (TLS records included).
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Connections closed at once because they came from another address
    /// than the configured peer.
    pub refused_connections: u64,
    /// Frames that did not decode (each closed its session).
    pub undecodable_frames: u64,
    /// Sessions that came up.
    pub sessions_up: u64,
}

/// Counters are atomics: connection tasks bump them as frames go by.
#[derive(Debug, Default)]
struct Counters {
    frames_in: AtomicU64,
    frames_out: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    refused_connections: AtomicU64,
    undecodable_frames: AtomicU64,
    sessions_up: AtomicU64,
}

impl Counters {
    fn bump(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    fn snapshot(&self) -> Counts {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counts {
            frames_in: g(&self.frames_in),
            frames_out: g(&self.frames_out),
            bytes_in: g(&self.bytes_in),
            bytes_out: g(&self.bytes_out),
            refused_connections: g(&self.refused_connections),
            undecodable_frames: g(&self.undecodable_frames),
            sessions_up: g(&self.sessions_up),
        }
    }
}

#[derive(Debug)]
struct Shared {
    /// Read by `Channel::state` from any thread without going through the
    /// supervisor; every section is a few field writes, never held across
    /// an `.await`.
    state: Mutex<ChannelState>,
    counters: Counters,
}

impl Shared {
    fn with<R>(&self, f: impl FnOnce(&mut ChannelState) -> R) -> R {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

// ------------------------------------------------------ owner's handle

/// What the channel tells its owner.
#[derive(Debug)]
pub enum ChannelEvent {
    Up(Box<SessionUp>),
    /// The session `id` (of an earlier `Up`) is gone.
    Down {
        id: u64,
        reason: DownReason,
    },
}

/// A session that just came up.
#[derive(Debug)]
pub struct SessionUp {
    pub id: u64,
    pub session: Session,
    /// The hello this router sent (the verdicts are made on it).
    pub our_hello: Hello,
    pub peer_hello: Hello,
    /// The peer's verdicts on our profiles, and ours on its.
    pub peer_verdicts: Vec<ProfileVerdict>,
    pub our_verdicts: Vec<ProfileVerdict>,
    pub local: SocketAddrV4,
    pub remote: SocketAddrV4,
    /// This router dialed the connection.
    pub initiated_here: bool,
    pub peer_certificate: Option<String>,
    /// The peer's lease clock minus ours at the hellos (s; 0 within
    /// [`CLOCK_SKEW_TOLERANCE`]): what its lease times are corrected by.
    pub clock_skew: i64,
}

/// The owner's end of an established session. Keepalives are the
/// channel's business: `recv` yields every other message, in order.
/// Dropping the `Session` (all its senders) closes the session.
///
/// The owner must keep reading: while its queue ([`SESSION_QUEUE`]
/// frames) is full the session reads nothing more, so it answers no
/// keepalive either, and the peer's dead timer ends the session. That is
/// the backpressure: a stuck owner shows as a dead session, not as
/// unbounded memory.
#[derive(Debug)]
pub struct Session {
    tx: mpsc::Sender<Message>,
    rx: mpsc::Receiver<Message>,
}

/// The session has ended (its `Down` event says why).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("backup session closed")]
pub struct SessionClosed;

impl Session {
    /// Queue a message for the peer; waits while the queue is full.
    pub async fn send(&self, msg: Message) -> Result<(), SessionClosed> {
        self.tx.send(msg).await.map_err(|_| SessionClosed)
    }

    /// A sender that can be cloned into other tasks.
    pub fn sender(&self) -> mpsc::Sender<Message> {
        self.tx.clone()
    }

    /// The next message from the peer; `None` once the session ended.
    pub async fn recv(&mut self) -> Option<Message> {
        self.rx.recv().await
    }
}

/// A running channel. Dropping it aborts every task of the channel at
/// once (connections are reset, not closed with a reason); `shutdown`
/// closes the session with `Close(Shutdown)` first.
#[derive(Debug)]
pub struct Channel {
    shared: Arc<Shared>,
    hello: watch::Sender<Hello>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Channel {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Channel {
    /// Start the channel: bind the listener (now, so that the port is
    /// taken when this returns, or retried with backoff if it cannot be)
    /// and start the first dial. Must be called inside a tokio runtime.
    pub fn spawn(mut cfg: ChannelConfig) -> (Channel, mpsc::UnboundedReceiver<ChannelEvent>) {
        cfg.hello.source = cfg.source;
        let (hello, _) = watch::channel(cfg.hello.clone());
        let now = SystemTime::now();
        let shared = Arc::new(Shared {
            state: Mutex::new(ChannelState {
                connection: Connection::Down,
                since: now,
                source: cfg.source,
                peer: cfg.peer,
                port: cfg.port,
                tls: cfg.tls.is_some(),
                peer_certificate: None,
                session_local: None,
                session_remote: None,
                last_up: None,
                last_down: None,
                last_down_reason: None,
                last_failure: None,
                rtt: None,
                clock_skew: None,
                counters: Counts::default(),
            }),
            counters: Counters::default(),
        });
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (reports_tx, reports_rx) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        let span = tracing::info_span!("backup_channel", service = %cfg.name, peer = %cfg.peer);
        let cfg = Arc::new(cfg);
        let mut sup = Supervisor {
            ctx: Ctx {
                cfg: cfg.clone(),
                shared: shared.clone(),
                reports: reports_tx,
                base: Instant::now(),
                hello: hello.clone(),
            },
            events: events_tx,
            reports: reports_rx,
            tasks: JoinSet::new(),
            listener: None,
            listen_retry: Instant::now(),
            listen_backoff: cfg.backoff_initial,
            next_id: 1,
            outbound: None,
            chosen: None,
            held: VecDeque::new(),
            up: None,
            pending: HashSet::new(),
            backoff: cfg.backoff_initial,
            next_dial: Instant::now(),
            tls: None,
            refused_logged: None,
            refused_since_log: 0,
            skew_logged: 0,
            span: span.clone(),
        };
        // Listen and dial before the task first runs: when both routers
        // start together, both dials are under way before either hello is
        // read, and the arbitration keeps the arbiter's.
        span.in_scope(|| {
            sup.bind();
            sup.dial();
        });
        let task = tokio::spawn(sup.run(cancel.clone()).instrument(span));
        (
            Channel {
                shared,
                hello,
                cancel,
                task,
            },
            events_rx,
        )
    }

    /// The hello of the connections made from now on (the profiles, and
    /// their roles, as they are now); a session that is up is not touched
    /// (role changes travel as `Message::Role`).
    pub fn set_hello(&self, hello: Hello) {
        self.view().set_hello(hello);
    }

    /// The channel's state now (never waits for the channel's tasks).
    pub fn state(&self) -> ChannelState {
        self.view().state()
    }

    /// A handle that reads the state and updates the hello without
    /// owning the channel: the task that owns it (and alone may shut it
    /// down) and the readers of its state are not the same.
    pub fn view(&self) -> ChannelView {
        ChannelView {
            shared: self.shared.clone(),
            hello: self.hello.clone(),
        }
    }

    /// Close the session (if any) with `Close(Shutdown)` and stop, waiting
    /// at most about a second for the connection tasks.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        let _ = (&mut self.task).await;
    }
}

/// A channel's state and hello, shared with whoever shows them
/// ([`Channel::view`]); it keeps no task alive.
#[derive(Debug, Clone)]
pub struct ChannelView {
    shared: Arc<Shared>,
    hello: watch::Sender<Hello>,
}

impl ChannelView {
    /// See [`Channel::set_hello`].
    pub fn set_hello(&self, mut hello: Hello) {
        hello.source = self.shared.with(|s| s.source);
        self.hello.send_replace(hello);
    }

    /// See [`Channel::state`].
    pub fn state(&self) -> ChannelState {
        let mut s = self.shared.with(|s| s.clone());
        s.counters = self.shared.counters.snapshot();
        s
    }
}

// ------------------------------------------------------------- supervisor

/// What connection tasks need, cloned into each.
#[derive(Debug, Clone)]
struct Ctx {
    cfg: Arc<ChannelConfig>,
    shared: Arc<Shared>,
    reports: mpsc::UnboundedSender<Report>,
    /// Origin of keepalive stamps.
    base: Instant,
    hello: watch::Sender<Hello>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    Out,
    In,
}

/// The arbiter's answer to a connection whose peer hello is acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Accept,
    Duplicate,
}

#[derive(Debug)]
enum Report {
    /// The peer's hello is acceptable: may this connection answer
    /// `Accepted`?
    Ready {
        id: u64,
        dir: Dir,
        decide: oneshot::Sender<Decision>,
    },
    /// Both replies said `Accepted`.
    Established {
        up: Box<SessionUp>,
        close: oneshot::Sender<Refusal>,
    },
    /// The connection is gone (before or after it was established).
    Ended { id: u64, reason: DownReason },
}

#[derive(Debug)]
struct Supervisor {
    ctx: Ctx,
    events: mpsc::UnboundedSender<ChannelEvent>,
    reports: mpsc::UnboundedReceiver<Report>,
    /// Every connection task; dropped (so aborted) with the supervisor.
    tasks: JoinSet<()>,
    listener: Option<TcpListener>,
    listen_retry: Instant,
    listen_backoff: Duration,
    next_id: u64,
    /// Our dial in progress, or the session it became.
    outbound: Option<u64>,
    /// Arbiter: the connection it answered `Accepted`, not yet up.
    chosen: Option<u64>,
    /// Arbiter: inbound connections waiting for our own dial to resolve.
    held: VecDeque<(u64, oneshot::Sender<Decision>)>,
    /// The session, and how to close it.
    up: Option<(u64, oneshot::Sender<Refusal>)>,
    /// Connections not yet up or ended.
    pending: HashSet<u64>,
    backoff: Duration,
    next_dial: Instant,
    tls: Option<Arc<TlsSetup>>,
    refused_logged: Option<Instant>,
    refused_since_log: u64,
    /// The last skew logged: a skew is logged when it changes, not at
    /// every session (configuration changes restart sessions).
    skew_logged: i64,
    span: tracing::Span,
}

/// What woke the supervisor.
enum Wake {
    Cancelled,
    Report(Report),
    Accepted(io::Result<(TcpStream, SocketAddr)>),
    Dial,
    Bind,
    Reaped,
}

fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.5 + rand::random::<f64>() * 0.5)
}

async fn accept(l: &Option<TcpListener>) -> io::Result<(TcpStream, SocketAddr)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

impl Supervisor {
    async fn run(mut self, cancel: CancellationToken) {
        loop {
            self.publish();
            let dial_due = self.up.is_none() && self.outbound.is_none() && self.chosen.is_none();
            let wake = tokio::select! {
                _ = cancel.cancelled() => Wake::Cancelled,
                Some(r) = self.reports.recv() => Wake::Report(r),
                a = accept(&self.listener) => Wake::Accepted(a),
                _ = sleep_until(self.next_dial), if dial_due => Wake::Dial,
                _ = sleep_until(self.listen_retry), if self.listener.is_none() => Wake::Bind,
                Some(_) = self.tasks.join_next(), if !self.tasks.is_empty() => Wake::Reaped,
            };
            match wake {
                Wake::Cancelled => break,
                Wake::Report(r) => self.on_report(r),
                Wake::Accepted(Ok((tcp, from))) => self.on_accept(tcp, from),
                Wake::Accepted(Err(e)) => {
                    // (out of descriptors, say): listen again after a pause
                    // rather than spin on an accept that fails at once
                    warn!(error = %e, "accept failed");
                    self.listener = None;
                    self.listen_retry = Instant::now() + jitter(self.listen_backoff);
                    self.listen_backoff = (self.listen_backoff * 2).min(self.ctx.cfg.backoff_max);
                }
                Wake::Dial => self.dial(),
                Wake::Bind => self.bind(),
                Wake::Reaped => {}
            }
        }
        // Shutdown: say goodbye on the session, refuse what waits, give the
        // connection tasks a bounded time to send it.
        if let Some((_, close)) = self.up.take() {
            let _ = close.send(Refusal {
                reason: Reason::Shutdown,
                text: "the backup channel is stopping".into(),
            });
        }
        for (_, decide) in self.held.drain(..) {
            let _ = decide.send(Decision::Duplicate);
        }
        self.listener = None;
        let _ = timeout(Duration::from_secs(1), async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
    }

    /// Bind the listener on source:port; on failure retry with backoff
    /// (the source address may not be configured yet, or the port busy).
    fn bind(&mut self) {
        let cfg = self.ctx.cfg.clone();
        let addr = SocketAddr::V4(SocketAddrV4::new(cfg.source, cfg.port));
        let listen = || -> io::Result<TcpListener> {
            let s = TcpSocket::new_v4()?;
            s.set_reuseaddr(true)?;
            s.bind(addr)?;
            s.listen(16)
        };
        match listen() {
            Ok(l) => {
                info!(%addr, "listening");
                self.listener = Some(l);
                self.listen_backoff = cfg.backoff_initial;
            }
            Err(e) => {
                warn!(%addr, error = %e, "cannot listen, will retry");
                self.record_failure(DownReason::new(
                    Cause::Connect,
                    format!("cannot listen on {addr}: {e}"),
                ));
                self.listen_retry = Instant::now() + jitter(self.listen_backoff);
                self.listen_backoff = (self.listen_backoff * 2).min(cfg.backoff_max);
            }
        }
    }

    /// The TLS material, read anew (for a dial) or as last read (for an
    /// accept); `Err` is recorded and the attempt dropped.
    fn tls(&mut self, reload: bool) -> Result<Option<Arc<TlsSetup>>, ()> {
        let Some(paths) = &self.ctx.cfg.tls else {
            return Ok(None);
        };
        if reload || self.tls.is_none() {
            match TlsSetup::load(paths, self.ctx.cfg.peer) {
                Ok(t) => self.tls = Some(Arc::new(t)),
                Err(e) => {
                    self.tls = None;
                    self.record_failure(DownReason::new(Cause::TlsFiles, e.to_string()));
                    return Err(());
                }
            }
        }
        Ok(self.tls.clone())
    }

    fn on_accept(&mut self, tcp: TcpStream, from: SocketAddr) {
        if from.ip() != self.ctx.cfg.peer {
            drop(tcp);
            Counters::bump(&self.ctx.shared.counters.refused_connections, 1);
            self.refused_since_log += 1;
            let now = Instant::now();
            if self
                .refused_logged
                .is_none_or(|t| now.duration_since(t) >= REFUSED_LOG_EVERY)
            {
                warn!(
                    %from,
                    refused = self.refused_since_log,
                    "connection from an address other than the peer refused"
                );
                self.refused_logged = Some(now);
                self.refused_since_log = 0;
            }
            return;
        }
        let Ok(tls) = self.tls(false) else { return };
        let id = self.new_id();
        debug!(id, %from, "accepted");
        let ctx = self.ctx.clone();
        let span = tracing::debug_span!(parent: &self.span, "conn", id, dir = "in");
        self.tasks.spawn(
            async move {
                let reason = connection(&ctx, id, Dir::In, tcp, tls).await;
                let _ = ctx.reports.send(Report::Ended { id, reason });
            }
            .instrument(span),
        );
    }

    fn dial(&mut self) {
        let Ok(tls) = self.tls(true) else {
            self.next_attempt_later();
            return;
        };
        let id = self.new_id();
        self.outbound = Some(id);
        let ctx = self.ctx.clone();
        let span = tracing::debug_span!(parent: &self.span, "conn", id, dir = "out");
        self.tasks.spawn(
            async move {
                let cfg = &ctx.cfg;
                let reason = match timeout(cfg.hello_timeout, connect(cfg)).await {
                    Err(_) => DownReason::new(
                        Cause::Timeout,
                        format!(
                            "no TCP connection to {}:{} within {:?}",
                            cfg.peer, cfg.port, cfg.hello_timeout
                        ),
                    ),
                    Ok(Err(e)) => DownReason::new(
                        Cause::Connect,
                        format!("{}:{} from {}: {e}", cfg.peer, cfg.port, cfg.source),
                    ),
                    Ok(Ok(tcp)) => connection(&ctx, id, Dir::Out, tcp, tls).await,
                };
                let _ = ctx.reports.send(Report::Ended { id, reason });
            }
            .instrument(span),
        );
    }

    fn new_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.pending.insert(id);
        id
    }

    fn next_attempt_later(&mut self) {
        self.next_dial = Instant::now() + jitter(self.backoff);
        self.backoff = (self.backoff * 2).min(self.ctx.cfg.backoff_max);
    }

    fn on_report(&mut self, r: Report) {
        match r {
            Report::Ready { id, dir, decide } => {
                let decision = if !self.ctx.cfg.arbiter() {
                    Decision::Accept
                } else if self.up.is_some() || self.chosen.is_some() {
                    Decision::Duplicate
                } else if dir == Dir::In && self.outbound.is_some() {
                    if self.held.len() >= MAX_HELD {
                        Decision::Duplicate
                    } else {
                        debug!(id, "inbound hello held while our own dial is in progress");
                        self.held.push_back((id, decide));
                        return;
                    }
                } else {
                    self.chosen = Some(id);
                    Decision::Accept
                };
                debug!(id, ?dir, ?decision, "hello");
                let _ = decide.send(decision);
                if self.chosen == Some(id) {
                    // our own dial was chosen: what waited is a duplicate
                    for (_, d) in self.held.drain(..) {
                        let _ = d.send(Decision::Duplicate);
                    }
                }
            }
            Report::Established { up, close } => {
                let id = up.id;
                self.pending.remove(&id);
                if self.chosen == Some(id) {
                    self.chosen = None;
                }
                if let Some((old, old_close)) = self.up.take() {
                    // the arbiter moved on to a newer connection
                    let _ = old_close.send(Refusal {
                        reason: Reason::DuplicateSession,
                        text: "replaced by a newer session the arbiter accepted".into(),
                    });
                    self.went_down(
                        old,
                        DownReason::new(
                            Cause::Local(Reason::DuplicateSession),
                            "replaced by a newer session",
                        ),
                    );
                }
                info!(id, local = %up.local, remote = %up.remote, "session up");
                if up.clock_skew.abs_diff(self.skew_logged) > CLOCK_SKEW_TOLERANCE {
                    self.skew_logged = up.clock_skew;
                    if up.clock_skew.unsigned_abs() > WARN_CLOCK_SKEW.as_secs() {
                        warn!(
                            id,
                            skew_s = up.clock_skew,
                            "the peer's clock differs from ours: the lease times it sends are \
                             corrected by the skew; check NTP on both routers"
                        );
                    } else if up.clock_skew == 0 {
                        info!(id, "the peer's clock agrees with ours again");
                    } else {
                        info!(id, skew_s = up.clock_skew, "peer clock skew corrected");
                    }
                }
                let now = SystemTime::now();
                self.ctx.shared.with(|s| {
                    s.last_up = Some(now);
                    s.peer_certificate = up.peer_certificate.clone();
                    s.session_local = Some(up.local);
                    s.session_remote = Some(up.remote);
                    s.rtt = None;
                    s.clock_skew = Some(up.clock_skew);
                });
                Counters::bump(&self.ctx.shared.counters.sessions_up, 1);
                self.backoff = self.ctx.cfg.backoff_initial;
                self.up = Some((id, close));
                let _ = self.events.send(ChannelEvent::Up(up));
                for (_, d) in self.held.drain(..) {
                    let _ = d.send(Decision::Duplicate);
                }
            }
            Report::Ended { id, reason } => {
                self.pending.remove(&id);
                if self.chosen == Some(id) {
                    self.chosen = None;
                }
                let was_out = self.outbound == Some(id);
                if was_out {
                    self.outbound = None;
                }
                if self.up.as_ref().is_some_and(|(u, _)| *u == id) {
                    self.up = None;
                    self.went_down(id, reason);
                    self.backoff = self.ctx.cfg.backoff_initial;
                    self.next_attempt_later();
                } else {
                    // never came up (or replaced: already reported down)
                    if !reason.is_duplicate() {
                        self.record_failure(reason);
                    }
                    if was_out {
                        self.next_attempt_later();
                    }
                }
                self.release_held();
            }
        }
    }

    /// Arbiter: our dial failed (or the chosen connection did); take the
    /// first held inbound connection.
    fn release_held(&mut self) {
        if self.up.is_some() || self.chosen.is_some() || self.outbound.is_some() {
            return;
        }
        while let Some((id, d)) = self.held.pop_front() {
            if d.send(Decision::Accept).is_ok() {
                debug!(id, "held inbound hello accepted");
                self.chosen = Some(id);
                return;
            }
        }
    }

    fn went_down(&mut self, id: u64, reason: DownReason) {
        warn!(id, %reason, "session down");
        let now = SystemTime::now();
        self.ctx.shared.with(|s| {
            s.last_down = Some(now);
            s.last_down_reason = Some(reason.clone());
            s.peer_certificate = None;
            s.session_local = None;
            s.session_remote = None;
            s.clock_skew = None;
        });
        let _ = self.events.send(ChannelEvent::Down { id, reason });
    }

    fn record_failure(&mut self, reason: DownReason) {
        let now = SystemTime::now();
        let repeated = self.ctx.shared.with(|s| {
            let repeated = s.last_failure.as_ref().is_some_and(|(_, r)| *r == reason);
            s.last_failure = Some((now, reason.clone()));
            repeated
        });
        if repeated {
            debug!(%reason, "attempt failed");
        } else {
            warn!(%reason, "attempt failed");
        }
    }

    /// Keep `connection` and `since` current.
    fn publish(&self) {
        let c = if self.up.is_some() {
            Connection::Connected
        } else if self.outbound.is_some() || !self.pending.is_empty() {
            Connection::Connecting
        } else {
            Connection::Down
        };
        self.ctx.shared.with(|s| {
            if s.connection != c {
                s.connection = c;
                s.since = SystemTime::now();
            }
        });
    }
}

/// A TCP connection to peer:port from source (an ephemeral port), so that
/// the peer sees the configured address.
async fn connect(cfg: &ChannelConfig) -> io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.set_reuseaddr(true)?;
    s.bind(SocketAddr::V4(SocketAddrV4::new(cfg.source, 0)))?;
    s.connect(SocketAddr::V4(SocketAddrV4::new(cfg.peer, cfg.port)))
        .await
}

// ------------------------------------------------------------ connection

/// The stream under the codec: TCP, or TLS over TCP.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Wire = Framed<Box<dyn Io>, WireCodec>;

/// Counts the bytes of the TCP stream into the channel's counters.
struct Counted {
    inner: TcpStream,
    shared: Arc<Shared>,
}

impl AsyncRead for Counted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            let n = (buf.filled().len() - before) as u64;
            Counters::bump(&this.shared.counters.bytes_in, n);
        }
        r
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            Counters::bump(&this.shared.counters.bytes_out, n as u64);
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

fn v4(a: io::Result<SocketAddr>) -> SocketAddrV4 {
    match a {
        Ok(SocketAddr::V4(a)) => a,
        _ => SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
    }
}

/// Our verdict on each profile of the peer's hello.
pub fn verdicts(ours: &[ProfileHello], theirs: &[ProfileHello]) -> Vec<ProfileVerdict> {
    theirs
        .iter()
        .map(|t| ProfileVerdict {
            backup_id: t.backup_id,
            status: match ours.iter().find(|o| o.backup_id == t.backup_id) {
                None => ProfileStatus::UnknownBackupId,
                Some(o) if o.fingerprint != t.fingerprint => ProfileStatus::FingerprintMismatch,
                Some(_) => ProfileStatus::Accepted,
            },
        })
        .collect()
}

async fn send(ctx: &Ctx, wire: &mut Wire, msg: Message) -> Result<(), DownReason> {
    let r = timeout(ctx.cfg.dead_time, wire.send(msg)).await;
    written(ctx, r, 1)
}

/// What a write of `n` frames within the dead time came to.
fn written(
    ctx: &Ctx,
    r: Result<Result<(), WireError>, tokio::time::error::Elapsed>,
    n: u64,
) -> Result<(), DownReason> {
    match r {
        Err(_) => Err(DownReason::new(
            Cause::Local(Reason::DeadTimer),
            format!("the peer read nothing for {:?}", ctx.cfg.dead_time),
        )),
        Ok(Err(e)) => Err(match e {
            WireError::Io(e) => DownReason::io(&e),
            e => DownReason::new(Cause::ConnectionLost, e.to_string()),
        }),
        Ok(Ok(())) => {
            Counters::bump(&ctx.shared.counters.frames_out, n);
            Ok(())
        }
    }
}

/// Most frames written with one flush (one write to the socket under
/// load instead of one per frame).
const COALESCE: usize = 64;

/// Send `first` and the frames queued behind it (at most [`COALESCE`]),
/// flushed once.
async fn send_queued(
    ctx: &Ctx,
    wire: &mut Wire,
    first: Message,
    out_rx: &mut mpsc::Receiver<Message>,
) -> Result<(), DownReason> {
    let mut n = 0u64;
    let feed = async {
        wire.feed(first).await?;
        n += 1;
        while n < COALESCE as u64 {
            match out_rx.try_recv() {
                Ok(m) => {
                    wire.feed(m).await?;
                    n += 1;
                }
                Err(_) => break,
            }
        }
        SinkExt::<Message>::flush(wire).await
    };
    let r = timeout(ctx.cfg.dead_time, feed).await;
    written(ctx, r, n)
}

/// Send a last frame, without caring whether it arrives.
async fn last_word(ctx: &Ctx, wire: &mut Wire, msg: Message) {
    let _ = timeout(Duration::from_millis(500), send(ctx, wire, msg)).await;
}

/// Where a frame that does not decode is answered with `HelloReply::
/// Refused` (during the hello) or with `Close` (after).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Hello,
    Reply,
    Session,
}

/// The next message within `within`, or why there is none.
async fn recv_within(
    ctx: &Ctx,
    wire: &mut Wire,
    phase: Phase,
    within: Duration,
) -> Result<Message, DownReason> {
    match timeout(within, wire.next()).await {
        Err(_) => {
            let what = if phase == Phase::Hello {
                "hello"
            } else {
                "hello reply"
            };
            Err(DownReason::new(
                Cause::Timeout,
                format!("no {what} from the peer within {within:?}"),
            ))
        }
        Ok(next) => received(ctx, wire, phase, next).await,
    }
}

/// What the stream yielded: a message, or why there is none; an
/// undecodable frame is answered, counted and ends the connection.
async fn received(
    ctx: &Ctx,
    wire: &mut Wire,
    phase: Phase,
    next: Option<Result<Message, WireError>>,
) -> Result<Message, DownReason> {
    match next {
        None => Err(DownReason::new(
            Cause::ConnectionLost,
            "the peer closed the connection",
        )),
        Some(Ok(m)) => {
            Counters::bump(&ctx.shared.counters.frames_in, 1);
            Ok(m)
        }
        Some(Err(e)) => Err(match e.refusal() {
            Some(r) => {
                Counters::bump(&ctx.shared.counters.undecodable_frames, 1);
                refuse(ctx, wire, phase, r).await
            }
            None => match e {
                WireError::Io(e) => DownReason::io(&e),
                e => DownReason::new(Cause::ConnectionLost, e.to_string()),
            },
        }),
    }
}

/// Refuse with `r` (a reply during the hello, a close after) and end.
async fn refuse(ctx: &Ctx, wire: &mut Wire, phase: Phase, r: Refusal) -> DownReason {
    let msg = if phase == Phase::Hello {
        Message::HelloReply(HelloReply::Refused(r.clone()))
    } else {
        Message::Close(r.clone())
    };
    last_word(ctx, wire, msg).await;
    DownReason::local(&r)
}

fn violation(what: &str, m: &Message) -> Refusal {
    let kind = format!("{m:?}");
    let kind = kind.split(['(', ' ', '{']).next().unwrap_or("?");
    Refusal {
        reason: Reason::ProtocolViolation,
        text: format!("{kind} received {what}"),
    }
}

/// One connection, from TCP to its end; returns why it ended.
async fn connection(
    ctx: &Ctx,
    id: u64,
    dir: Dir,
    tcp: TcpStream,
    tls: Option<Arc<TlsSetup>>,
) -> DownReason {
    match connection_inner(ctx, id, dir, tcp, tls).await {
        Ok(r) | Err(r) => r,
    }
}

async fn connection_inner(
    ctx: &Ctx,
    id: u64,
    dir: Dir,
    tcp: TcpStream,
    tls: Option<Arc<TlsSetup>>,
) -> Result<DownReason, DownReason> {
    let cfg = &ctx.cfg;
    let _ = tcp.set_nodelay(true);
    let local = v4(tcp.local_addr());
    let remote = v4(tcp.peer_addr());
    let counted = Counted {
        inner: tcp,
        shared: ctx.shared.clone(),
    };
    let handshake_timeout = |_| {
        DownReason::new(
            Cause::Timeout,
            format!("no TLS handshake within {:?}", cfg.hello_timeout),
        )
    };
    let (stream, peer_certificate): (Box<dyn Io>, Option<String>) = match (tls, dir) {
        (None, _) => (Box::new(counted), None),
        (Some(t), Dir::Out) => {
            let connector = tokio_rustls::TlsConnector::from(t.client.clone());
            let s = timeout(
                cfg.hello_timeout,
                connector.connect(t.server_name.clone(), counted),
            )
            .await
            .map_err(handshake_timeout)?
            .map_err(|e| DownReason::io(&e))?;
            let subject = tls::peer_subject(s.get_ref().1);
            (Box::new(s), subject)
        }
        (Some(t), Dir::In) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(t.server.clone());
            let s = timeout(cfg.hello_timeout, acceptor.accept(counted))
                .await
                .map_err(handshake_timeout)?
                .map_err(|e| DownReason::io(&e))?;
            let subject = tls::peer_subject(s.get_ref().1);
            (Box::new(s), subject)
        }
    };
    let mut wire: Wire = Framed::new(stream, WireCodec::new());

    // Both hellos at once.
    let mut hello = ctx.hello.borrow().clone();
    // the lease clock: the one the leases we send are written in
    hello.unix_time = crate::dhcp::clock::now_unix();
    send(ctx, &mut wire, Message::Hello(hello.clone())).await?;
    let peer_hello = match recv_within(ctx, &mut wire, Phase::Hello, cfg.hello_timeout).await? {
        Message::Hello(h) => h,
        Message::HelloReply(HelloReply::Refused(r)) | Message::Close(r) => {
            return Err(DownReason::peer(&r))
        }
        m => {
            let r = violation("instead of a hello", &m);
            return Err(refuse(ctx, &mut wire, Phase::Hello, r).await);
        }
    };
    let skew = peer_hello.unix_time.abs_diff(hello.unix_time);
    if skew > MAX_CLOCK_SKEW.as_secs() {
        let r = Refusal {
            reason: Reason::ClockSkew,
            text: format!(
                "the two clocks differ by {skew} s (at most {} s): leases carry absolute times; \
                 check NTP on both routers",
                MAX_CLOCK_SKEW.as_secs()
            ),
        };
        return Err(refuse(ctx, &mut wire, Phase::Hello, r).await);
    }
    let clock_skew = clock_skew(peer_hello.unix_time, hello.unix_time);
    if peer_hello.source != cfg.peer {
        let r = Refusal {
            reason: Reason::UnexpectedPeer,
            text: format!(
                "hello from {}, the configured peer is {}",
                peer_hello.source, cfg.peer
            ),
        };
        return Err(refuse(ctx, &mut wire, Phase::Hello, r).await);
    }

    // The arbiter decides which connection answers `Accepted`.
    let (decide, decision) = oneshot::channel();
    let _ = ctx.reports.send(Report::Ready { id, dir, decide });
    if decision.await != Ok(Decision::Accept) {
        let r = Refusal {
            reason: Reason::DuplicateSession,
            text: "another session between the two routers is kept".into(),
        };
        return Err(refuse(ctx, &mut wire, Phase::Reply, r).await);
    }
    let our_verdicts = verdicts(&hello.profiles, &peer_hello.profiles);
    send(
        ctx,
        &mut wire,
        Message::HelloReply(HelloReply::Accepted {
            profiles: our_verdicts.clone(),
        }),
    )
    .await?;
    // The arbiter may hold our hello while its own dial resolves: wait
    // for two setup steps.
    let peer_verdicts =
        match recv_within(ctx, &mut wire, Phase::Reply, cfg.hello_timeout * 2).await? {
            Message::HelloReply(HelloReply::Accepted { profiles }) => profiles,
            Message::HelloReply(HelloReply::Refused(r)) | Message::Close(r) => {
                return Err(DownReason::peer(&r))
            }
            m => {
                let r = violation("instead of a hello reply", &m);
                return Err(refuse(ctx, &mut wire, Phase::Reply, r).await);
            }
        };

    // Up: hand the session to the owner.
    let (out_tx, out_rx) = mpsc::channel(SESSION_QUEUE);
    let (in_tx, in_rx) = mpsc::channel(SESSION_QUEUE);
    let (close_tx, close_rx) = oneshot::channel();
    let up = SessionUp {
        id,
        session: Session {
            tx: out_tx,
            rx: in_rx,
        },
        our_hello: hello.clone(),
        peer_hello,
        peer_verdicts,
        our_verdicts,
        local,
        remote,
        initiated_here: dir == Dir::Out,
        peer_certificate,
        clock_skew,
    };
    let _ = ctx.reports.send(Report::Established {
        up: Box::new(up),
        close: close_tx,
    });
    Ok(session(ctx, &mut wire, out_rx, in_tx, close_rx).await)
}

/// The established session: keepalives, dead timer, frames both ways.
async fn session(
    ctx: &Ctx,
    wire: &mut Wire,
    mut out_rx: mpsc::Receiver<Message>,
    in_tx: mpsc::Sender<Message>,
    mut close_rx: oneshot::Receiver<Refusal>,
) -> DownReason {
    let cfg = &ctx.cfg;
    let stamp = || ctx.base.elapsed().as_micros() as u64;
    let mut keepalive = tokio::time::interval_at(
        Instant::now() + cfg.keepalive_interval,
        cfg.keepalive_interval,
    );
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let dead = tokio::time::sleep(cfg.dead_time);
    tokio::pin!(dead);

    enum Ev {
        Close(Refusal),
        Dead,
        Tick,
        Out(Option<Message>),
        In(Option<Result<Message, WireError>>),
    }
    loop {
        let ev = tokio::select! {
            biased;
            r = &mut close_rx => Ev::Close(r.unwrap_or(Refusal {
                reason: Reason::Shutdown,
                text: "the backup channel stopped".into(),
            })),
            _ = &mut dead => Ev::Dead,
            _ = keepalive.tick() => Ev::Tick,
            m = out_rx.recv() => Ev::Out(m),
            // cancel-safe: a frame being read stays in the codec's buffer
            m = wire.next() => Ev::In(m),
        };
        let result = match ev {
            Ev::Close(r) => return refuse(ctx, wire, Phase::Session, r).await,
            Ev::Dead => {
                let r = Refusal {
                    reason: Reason::DeadTimer,
                    text: format!("nothing heard from the peer for {:?}", cfg.dead_time),
                };
                return refuse(ctx, wire, Phase::Session, r).await;
            }
            Ev::Tick => send(ctx, wire, Message::Keepalive(Keepalive { stamp: stamp() })).await,
            Ev::Out(Some(m)) => send_queued(ctx, wire, m, &mut out_rx).await,
            Ev::Out(None) => {
                let r = Refusal {
                    reason: Reason::Shutdown,
                    text: "the owner of the session let it go".into(),
                };
                return refuse(ctx, wire, Phase::Session, r).await;
            }
            Ev::In(next) => {
                let m = match received(ctx, wire, Phase::Session, next).await {
                    Ok(m) => m,
                    Err(reason) => return reason,
                };
                dead.as_mut().reset(Instant::now() + cfg.dead_time);
                match m {
                    Message::Keepalive(k) => send(ctx, wire, Message::KeepaliveReply(k)).await,
                    Message::KeepaliveReply(k) => {
                        let rtt = Duration::from_micros(stamp().saturating_sub(k.stamp));
                        ctx.shared.with(|s| s.rtt = Some(rtt));
                        Ok(())
                    }
                    Message::Close(r) => return DownReason::peer(&r),
                    m @ (Message::Hello(_) | Message::HelloReply(_)) => {
                        let r = violation("on an established session", &m);
                        return refuse(ctx, wire, Phase::Session, r).await;
                    }
                    m => {
                        if in_tx.send(m).await.is_err() {
                            let r = Refusal {
                                reason: Reason::Shutdown,
                                text: "the owner of the session let it go".into(),
                            };
                            return refuse(ctx, wire, Phase::Session, r).await;
                        }
                        Ok(())
                    }
                }
            }
        };
        if let Err(reason) = result {
            return reason;
        }
    }
}

#[cfg(test)]
#[path = "channel_tests.rs"]
mod tests;
