//! One NETCONF session: hello exchange, framing switch, and the request loop.
//!
//! ```text
//!  ssh channel ──bytes──► Decoder ──message──► xml::parse ──► rpc::decode
//!                                                               │ Operation
//!  ssh channel ◄──framed reply◄── rpc::encode_reply ◄── northbound actor
//!  ssh channel ◄──one chunk per piece◄── Writer::send_stream ◄── Reply::Stream
//! ```
//! A streamed reply (a whole lease table) is written piece by piece as it
//! is produced, each piece before the next is made: the SSH window paces
//! it and the session holds one piece, never the whole reply.
//! RPCs of one session are answered in order, one at a time; sessions never
//! wait for each other except through the northbound's locks.
//!
//! The write side (`Output`) is shared with the notification bus: the bus
//! writes a notification into the SSH channel itself when the task is
//! writing nothing and has nothing queued (`SubOutlet`), so a fan-out to a
//! thousand sessions does not wake a thousand tasks; each message, the
//! task's or the bus's, is written whole under the writer's lock.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures::FutureExt;

use chrono::{DateTime, Utc};
use russh::server::{DirectWrite, DirectWriter};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, Mutex, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};

use super::framing::{encode, encode_end, encode_piece, Decoder, Framing};
use super::rpc;
use crate::northbound::error::{ErrorTag, ErrorType, RpcError};
use crate::northbound::monitoring::SessionCounters;
use crate::northbound::notify::{self, Notification, SubscribeRequest};
use crate::northbound::ops::{Operation, Reply, StreamedData, Writes};
use crate::northbound::Handle;
use crate::xml::{self, escape_text, Element, NC_NS};
use crate::yang;

pub const BASE_10: &str = "urn:ietf:params:netconf:base:1.0";
pub const BASE_11: &str = "urn:ietf:params:netconf:base:1.1";
const YANG_LIBRARY_10: &str = "urn:ietf:params:netconf:capability:yang-library:1.0";
const YANG_LIBRARY_11: &str = "urn:ietf:params:netconf:capability:yang-library:1.1";

/// The capabilities we announce (RFC 6241 §8, RFC 6243, RFC 6022, RFC 8526).
pub fn capabilities() -> Vec<String> {
    let mut caps: Vec<String> = [
        BASE_10,
        BASE_11,
        "urn:ietf:params:netconf:capability:candidate:1.0",
        "urn:ietf:params:netconf:capability:confirmed-commit:1.0",
        "urn:ietf:params:netconf:capability:confirmed-commit:1.1",
        "urn:ietf:params:netconf:capability:validate:1.0",
        "urn:ietf:params:netconf:capability:validate:1.1",
        "urn:ietf:params:netconf:capability:rollback-on-error:1.0",
        "urn:ietf:params:netconf:capability:startup:1.0",
        "urn:ietf:params:netconf:capability:xpath:1.0",
        "urn:ietf:params:netconf:capability:notification:1.0",
        "urn:ietf:params:netconf:capability:interleave:1.0",
        "urn:ietf:params:netconf:capability:with-defaults:1.0?basic-mode=explicit&also-supported=report-all,report-all-tagged,trim",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // RFC 8525 §2 / RFC 7950 §5.6.4 (1.1 for NMDA-aware clients, 1.0 and
    // modules-state for the others), then every module we implement.
    let id = yang::content_id();
    caps.push(format!(
        "{YANG_LIBRARY_10}?revision=2019-01-04&module-set-id={id}"
    ));
    caps.push(format!(
        "{YANG_LIBRARY_11}?revision=2019-01-04&content-id={id}"
    ));
    caps.extend(yang::module_capabilities().iter().cloned());
    caps
}

fn server_hello(session_id: u32) -> String {
    let mut s = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><hello xmlns=\"{NC_NS}\"><capabilities>"
    );
    for c in capabilities() {
        s.push_str("<capability>");
        s.push_str(&escape_text(&c));
        s.push_str("</capability>");
    }
    s.push_str(&format!(
        "</capabilities><session-id>{session_id}</session-id></hello>"
    ));
    s
}

/// Why a client hello is refused (the session is closed, RFC 6241 §8.1).
async fn check_client_hello(msg: Vec<u8>) -> Result<bool, String> {
    let root = parse_message(msg).await.map_err(|(_, m)| m)?;
    if root.ns != NC_NS || root.name != "hello" {
        return Err(format!("expected <hello>, got <{}>", root.name));
    }
    if root.nc_child("session-id").is_some() {
        return Err("client hello must not carry a session-id".into());
    }
    let caps = root
        .nc_child("capabilities")
        .ok_or("hello without capabilities")?;
    let list: Vec<String> = caps
        .elements()
        .filter(|c| c.name == "capability")
        .map(|c| c.text_trimmed())
        .collect();
    let v11 = list.iter().any(|c| c == BASE_11);
    let v10 = list.iter().any(|c| c == BASE_10);
    if !v10 && !v11 {
        return Err("no common base capability".into());
    }
    Ok(v11)
}

struct Writer<W> {
    w: W,
    framing: Framing,
    buf: Vec<u8>,
    /// What is left of a notification the bus began to write and could
    /// not finish at once (`SubOutlet::try_deliver`): written before
    /// anything else.
    tail: Bytes,
}

impl<W: AsyncWrite + Unpin> Writer<W> {
    fn new(w: W) -> Writer<W> {
        Writer {
            w,
            framing: Framing::EndOfMessage,
            buf: Vec::new(),
            tail: Bytes::new(),
        }
    }

    async fn send(&mut self, msg: &str) -> std::io::Result<()> {
        self.finish_tail().await?;
        self.buf.clear();
        encode(self.framing, msg.as_bytes(), &mut self.buf);
        self.w.write_all(&self.buf).await?;
        self.w.flush().await
    }

    /// `n` framed as this session frames, shared with every session that
    /// frames the same way (`Notification::framed`).
    fn framed<'n>(&self, n: &'n Notification) -> &'n Bytes {
        let framing = self.framing;
        let slot = usize::from(framing == Framing::Chunked);
        n.framed(slot, |m: &[u8]| {
            let mut out = Vec::with_capacity(m.len() + 16);
            encode(framing, m, &mut out);
            out
        })
    }

    /// Write what is left of a notification begun by the bus.
    async fn finish_tail(&mut self) -> std::io::Result<()> {
        while !self.tail.is_empty() {
            let k = self.w.write(&self.tail).await?;
            if k == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            self.tail.advance(k);
        }
        Ok(())
    }

    /// Write `bytes` as far as it goes without waiting, from a task that
    /// is not the session's (the bus): what does not go at once stays in
    /// `tail`, for the session task to finish. `true` when all went.
    /// Outside tokio's cooperative budget: the bus writes to a thousand
    /// sessions in one turn of its task, and a write refused for budget
    /// would push every later session to the slow path.
    fn push(&mut self, bytes: Bytes) -> bool {
        debug_assert!(self.tail.is_empty());
        self.tail = bytes;
        self.push_tail()
    }

    /// [`Writer::push`] of what is left in `tail`.
    fn push_tail(&mut self) -> bool {
        let Writer { w, tail, .. } = self;
        let step = std::future::poll_fn(|cx| {
            while !tail.is_empty() {
                match Pin::new(&mut *w).poll_write(cx, tail) {
                    Poll::Ready(Ok(k)) if k > 0 => tail.advance(k),
                    // the session ends: its own next write says so
                    Poll::Ready(_) => return Poll::Ready(false),
                    Poll::Pending => return Poll::Pending,
                }
            }
            Pin::new(&mut *w).poll_flush(cx).map(|r| r.is_ok())
        });
        tokio::task::unconstrained(step).now_or_never() == Some(true)
    }

    /// Write notifications in one write: each framed once for every
    /// session that frames the same way (`Notification::framed`), copied
    /// here only when several go together.
    async fn send_notifications(&mut self, batch: &[Arc<Notification>]) -> std::io::Result<()> {
        self.finish_tail().await?;
        match batch {
            [] => return Ok(()),
            [one] => {
                let bytes = self.framed(one).clone();
                self.w.write_all(&bytes).await?
            }
            many => {
                let mut buf = std::mem::take(&mut self.buf);
                buf.clear();
                for n in many {
                    buf.extend_from_slice(self.framed(n));
                }
                let r = self.w.write_all(&buf).await;
                self.buf = buf;
                r?;
            }
        }
        self.w.flush().await
    }

    /// Write a `<data>` reply piece by piece as it is produced: each piece
    /// is written (a chunk of its own with chunked framing) before the
    /// next is made, so the output's back-pressure (the SSH window) paces
    /// the producer and one piece is all that is held.
    /// Between pieces it gives way to another session's write under way
    /// on the actor (`writes`, for at most its bound each time).
    async fn send_stream(
        &mut self,
        reply_attrs: &str,
        data: &mut StreamedData,
        writes: &Writes,
    ) -> std::io::Result<()> {
        let start = rpc::reply_start(reply_attrs);
        self.finish_tail().await?;
        if data.is_empty() {
            return self.send(&format!("{start}<data/></rpc-reply>")).await;
        }
        self.buf.clear();
        encode_piece(
            self.framing,
            format!("{start}<data>").as_bytes(),
            &mut self.buf,
        );
        let mut piece = String::new();
        let (t0, mut pieces, mut gave_way) = (tokio::time::Instant::now(), 0u32, Duration::ZERO);
        loop {
            // the SSH window takes megabytes before it pushes back: let
            // the other sessions and the actor run between pieces (with
            // the daemon on one CPU, the runtime has one worker), and
            // leave the CPU to a commit under way
            let w0 = tokio::time::Instant::now();
            writes.give_way().await;
            gave_way += w0.elapsed();
            tokio::task::yield_now().await;
            if !data.next_piece(&mut piece) {
                break;
            }
            pieces += 1;
            encode_piece(self.framing, piece.as_bytes(), &mut self.buf);
            self.w.write_all(&self.buf).await?;
            self.buf.clear();
        }
        encode_piece(self.framing, b"</data></rpc-reply>", &mut self.buf);
        encode_end(self.framing, &mut self.buf);
        self.w.write_all(&self.buf).await?;
        self.w.flush().await?;
        debug!(
            pieces,
            us = t0.elapsed().as_micros() as u64,
            gave_way_us = gave_way.as_micros() as u64,
            "stream written"
        );
        Ok(())
    }
}

/// What a session writes: a message whole, or a `<data>` reply streamed.
enum Out {
    Msg(String),
    Stream {
        reply_attrs: String,
        data: Box<StreamedData>,
    },
}

impl From<String> for Out {
    fn from(m: String) -> Out {
        Out::Msg(m)
    }
}

/// Who handles a message: the session, its user and its counters.
#[derive(Clone, Copy)]
struct Me<'a> {
    nb: &'a Handle,
    user: &'a str,
    session_id: u32,
    counters: &'a Arc<SessionCounters>,
}

/// The session's subscription (RFC 5277): one at a time. Its filter, its
/// stop time and NACM stay with the bus, which writes or queues only what
/// the session may send.
struct Active<W> {
    stop: Option<DateTime<Utc>>,
    live: mpsc::Receiver<Arc<Notification>>,
    outlet: Arc<SubOutlet<W>>,
}

/// The session's write side, shared by its task and the notification bus
/// (through [`SubOutlet`]). Whoever writes holds the lock for a whole
/// message: the task for each of its writes (replies, notices, queued
/// notifications), the bus for a notification, only when the lock is free
/// at once (it never waits for a session).
struct Output<W> {
    writer: Mutex<Writer<W>>,
    /// Rung by the bus when it left part of a notification in the
    /// writer's `tail` (the SSH window or russh's queue was full): the
    /// task finishes it, waiting as its own writes do.
    nudge: Notify,
    /// The SSH session's direct writer (`third_party/russh`): the bus
    /// seals and sends a notification itself, without russh's session
    /// task, when it can go whole and in order; `None` in the tests that
    /// run the session over a pipe.
    direct: Option<DirectWriter>,
}

impl<W: AsyncWrite + Unpin> Output<W> {
    /// Write `msg` after whatever the bus left unfinished.
    async fn send(&self, msg: &str) -> std::io::Result<()> {
        self.writer.lock().await.send(msg).await
    }
}

/// A subscription's outlet (`notify::Outlet`): the bus writes a
/// notification straight to the session's SSH channel when the session
/// task is writing nothing and has nothing of this subscription queued,
/// without waking the task; otherwise it queues it to the task. So a
/// notification never splits a reply's bytes, never overtakes one queued
/// before it, and a session that cannot keep up still fills its queue
/// (and is told, or closed) as before: the bus writes only what the SSH
/// window takes at once.
struct SubOutlet<W> {
    out: Arc<Output<W>>,
    /// Notifications queued to the task and not written yet (counted by
    /// the bus before the task can see them, uncounted by the task after
    /// it wrote them, under the writer's lock).
    queued: AtomicUsize,
    /// Set once the reply to create-subscription (and the replay) is
    /// written, cleared before the notice that ends the subscription:
    /// the bus writes nothing directly before the one or after the other.
    on: AtomicBool,
    counters: Arc<SessionCounters>,
}

impl<W> Drop for Active<W> {
    /// The session or its subscription ended: the bus writes nothing more
    /// to it directly (it finds the queue closed and lets go).
    fn drop(&mut self) {
        self.outlet.on.store(false, Ordering::Release);
    }
}

impl<W> std::fmt::Debug for SubOutlet<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubOutlet")
            .field("queued", &self.queued)
            .field("on", &self.on)
            .finish()
    }
}

impl<W: AsyncWrite + Unpin + Send + 'static> notify::Outlet for SubOutlet<W> {
    fn try_deliver(&self, n: &Arc<Notification>) -> bool {
        if self.queued.load(Ordering::Acquire) != 0 {
            return false;
        }
        let Ok(mut w) = self.out.writer.try_lock() else {
            return false;
        };
        // under the lock: what the task took from the queue is written
        if self.queued.load(Ordering::Acquire) != 0 || !self.on.load(Ordering::Acquire) {
            return false;
        }
        // a notification the bus could not finish before: still stuck
        if !w.tail.is_empty() && !w.push_tail() {
            return false;
        }
        let bytes = w.framed(n);
        // the writer's tail is empty here: nothing of ours is on its way
        // through the channel (russh refuses while its queue holds any)
        let direct = self
            .out
            .direct
            .as_ref()
            .is_some_and(|d| d.try_data(bytes) != DirectWrite::Refused);
        if !direct && !w.push(bytes.clone()) {
            self.out.nudge.notify_one();
        }
        SessionCounters::bump(&self.counters.out_notifications);
        true
    }

    fn queuing(&self) {
        self.queued.fetch_add(1, Ordering::AcqRel);
    }

    fn not_queued(&self) {
        self.queued.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Queued notifications a session writes together, in one write, when
/// several are waiting (a burst): one SSH packet and one TCP send for
/// them instead of one each. Bounded so that one write stays small; the
/// queue (`notify::SESSION_QUEUE`) bounds how many batches an rpc read
/// may wait behind.
const NOTIFY_BATCH: usize = 32;

/// How long until `stop` (now when it has passed).
fn until(stop: DateTime<Utc>) -> Duration {
    (stop - Utc::now()).to_std().unwrap_or(Duration::ZERO)
}

/// Why a write did not complete: a client that does not read blocks the
/// write, and the session must still end when it is killed, or when its
/// subscription overflowed and the write is still blocked
/// `notify::NOTICE_GRACE` later (the client is stalled: it cannot even
/// be told). A write is never abandoned half done otherwise: the framing
/// of what follows depends on it.
async fn send_or_stop<W: AsyncWrite + Unpin>(
    out: &Output<W>,
    msg: &str,
    kill: &CancellationToken,
    overflow: &Overflow,
) -> Result<(), &'static str> {
    tokio::select! {
        r = out.send(msg) => r.map_err(|_| "write failed"),
        _ = kill.cancelled() => Err("killed"),
        _ = overflow.grace_over() => Err(STALLED),
    }
}

/// [`send_or_stop`] for a batch of notifications taken from the queue
/// of `outlet`, uncounted from it once written (still under the lock:
/// the bus writes the next one directly only after these).
async fn notify_or_stop<W: AsyncWrite + Unpin>(
    out: &Output<W>,
    outlet: &SubOutlet<W>,
    batch: &[Arc<Notification>],
    kill: &CancellationToken,
    overflow: &Overflow,
) -> Result<(), &'static str> {
    let write = async {
        let mut w = out.writer.lock().await;
        w.send_notifications(batch).await?;
        outlet.queued.fetch_sub(batch.len(), Ordering::AcqRel);
        Ok::<(), std::io::Error>(())
    };
    tokio::select! {
        r = write => r.map_err(|_| "write failed"),
        _ = kill.cancelled() => Err("killed"),
        _ = overflow.grace_over() => Err(STALLED),
    }
}

/// Finish a notification the bus began (`Output::nudge`).
async fn finish_or_stop<W: AsyncWrite + Unpin>(
    out: &Output<W>,
    kill: &CancellationToken,
    overflow: &Overflow,
) -> Result<(), &'static str> {
    let write = async {
        let mut w = out.writer.lock().await;
        w.finish_tail().await?;
        w.w.flush().await
    };
    tokio::select! {
        r = write => r.map_err(|_| "write failed"),
        _ = kill.cancelled() => Err("killed"),
        _ = overflow.grace_over() => Err(STALLED),
    }
}

/// The bus's overflow token of the session's subscription, and when the
/// session first saw it cancelled: the write it was blocked in and the
/// notice that follows share one `notify::NOTICE_GRACE` from then.
#[derive(Debug, Default)]
struct Overflow {
    token: CancellationToken,
    since: std::sync::OnceLock<tokio::time::Instant>,
}

impl Overflow {
    fn new(token: CancellationToken) -> Overflow {
        Overflow {
            token,
            since: std::sync::OnceLock::new(),
        }
    }

    fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves `NOTICE_GRACE` after the overflow; never without one.
    async fn grace_over(&self) {
        self.token.cancelled().await;
        let since = *self.since.get_or_init(tokio::time::Instant::now);
        tokio::time::sleep_until(since + notify::NOTICE_GRACE).await
    }
}

/// A session closed because its client read neither its notifications
/// nor the notice that they stopped (netconf-session-end says "other").
const STALLED: &str = "notification overflow";

/// The subscription's queue overflowed (`overflow` is cancelled): end the
/// subscription and tell the client, within `notify::NOTICE_GRACE`.
///
/// The notice is RFC 5277's `notificationComplete`, which every RFC 5277
/// client (ncclient, libnetconf2, OpenDaylight, NSO) already understands
/// as "this subscription is over": they stop waiting on it and may
/// subscribe again, with a startTime to replay what they missed from the
/// log. A notification of our own (or RFC 8639's `subscription-terminated`,
/// of a subscription model we do not implement) would reach only clients
/// written for it; the reason is in the log and the counters.
async fn end_overflowed<W: AsyncWrite + Unpin>(
    out: &Output<W>,
    nb: &Handle,
    counters: &SessionCounters,
    sub: &mut Option<Active<W>>,
    overflow: &mut Overflow,
    kill: &CancellationToken,
) -> Result<(), &'static str> {
    // the queued notifications go with the subscription
    end_subscription(sub);
    let expired = std::mem::take(overflow);
    let done = notify::marker("notificationComplete");
    match send_or_stop(out, done.message(), kill, &expired).await {
        Ok(()) => {
            SessionCounters::bump(&counters.out_notifications);
            nb.stats().subscription_overflowed(false);
            warn!(
                queue = notify::SESSION_QUEUE,
                "notifications not read fast enough: subscription ended, client told"
            );
            Ok(())
        }
        // a stalled client is counted where the session ends
        Err(why) => Err(why),
    }
}

/// End the subscription: the bus writes nothing more directly (before the
/// notice the caller writes), and the queued notifications go with it.
fn end_subscription<W>(sub: &mut Option<Active<W>>) {
    // `Active`'s drop turns the outlet off
    *sub = None;
}

/// [`send_or_stop`] for what a message is answered with.
async fn write_or_stop<W: AsyncWrite + Unpin>(
    writer: &Output<W>,
    out: Out,
    writes: &Writes,
    kill: &CancellationToken,
    overflow: &Overflow,
) -> Result<(), &'static str> {
    match out {
        Out::Msg(m) => send_or_stop(writer, &m, kill, overflow).await,
        Out::Stream {
            reply_attrs,
            mut data,
        } => tokio::select! {
            r = async {
                writer.writer.lock().await.send_stream(&reply_attrs, &mut data, writes).await
            } => r.map_err(|_| "write failed"),
            _ = kill.cancelled() => Err("killed"),
            _ = overflow.grace_over() => Err(STALLED),
        },
    }
}

/// Run a session on a byte stream until the client leaves, closes the
/// session, is killed, or the daemon shuts down; returns why it ended
/// ("close-session", "client left", ...), which the SSH layer turns into
/// the channel's exit status. With `idle`, a session that sends no
/// complete message for that long is closed ("idle timeout").
#[allow(clippy::too_many_arguments)]
pub async fn run<R, W>(
    reader: R,
    writer: W,
    direct: Option<DirectWriter>,
    northbound: Handle,
    user: String,
    source: Option<std::net::IpAddr>,
    idle: Option<std::time::Duration>,
    shutdown: CancellationToken,
) -> &'static str
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let kill = shutdown.child_token();
    let (session_id, counters) = northbound
        .register(user.clone(), source, kill.clone())
        .await;
    northbound.stats().session_started();
    let span = info_span!("session", session_id, user = %user);
    let reason = async {
        info!("session started");
        let reason = serve(
            reader,
            writer,
            direct,
            &northbound,
            &user,
            session_id,
            &counters,
            idle,
            &kill,
        )
        .await;
        if reason == STALLED {
            northbound.stats().subscription_overflowed(true);
            warn!(
                grace = ?notify::NOTICE_GRACE,
                "notifications not read fast enough and the client cannot be told: closing the session"
            );
        }
        info!(reason, "session ended");
        reason
    }
    .instrument(span)
    .await;
    northbound.unregister(session_id, reason).await;
    northbound.stats().session_ended();
    reason
}

#[allow(clippy::too_many_arguments)]
async fn serve<R, W>(
    mut r: R,
    w: W,
    direct: Option<DirectWriter>,
    nb: &Handle,
    user: &str,
    session_id: u32,
    counters: &Arc<SessionCounters>,
    idle: Option<std::time::Duration>,
    kill: &CancellationToken,
) -> &'static str
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let mut writer = Writer::new(w);
    if writer.send(&server_hello(session_id)).await.is_err() {
        return "write failed";
    }
    let out = Arc::new(Output {
        writer: Mutex::new(writer),
        nudge: Notify::new(),
        direct,
    });
    let mut decoder = Decoder::default();
    let mut hello_done = false;
    let mut sub: Option<Active<W>> = None;
    // cancelled by the bus when `sub`'s queue overflows
    let mut overflow = Overflow::default();
    let mut readbuf = vec![0u8; 64 * 1024];
    // the notifications of one write (kept for its capacity)
    let mut batch: Vec<Arc<Notification>> = Vec::with_capacity(NOTIFY_BATCH);
    // the last complete message: partial bytes (a message that never ends)
    // do not keep a session from its idle timeout
    let mut last_message = tokio::time::Instant::now();
    // kept across the loop's turns, each of which a notification may
    // cause: made and registered once, not at every turn
    let idle_timer = tokio::time::sleep_until(last_message + idle.unwrap_or_default());
    tokio::pin!(idle_timer);
    let killed = kill.cancelled();
    tokio::pin!(killed);
    loop {
        if overflow.is_cancelled() {
            if let Err(why) =
                end_overflowed(&out, nb, counters, &mut sub, &mut overflow, kill).await
            {
                return why;
            }
        }
        // Drain every complete message already buffered.
        loop {
            let msg = match decoder.next_message() {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => {
                    warn!(error = %e, "framing error, closing session");
                    return "framing error";
                }
            };
            last_message = tokio::time::Instant::now();
            debug!(bytes = msg.len(), "message in");
            if let Some(idle) = idle {
                idle_timer.as_mut().reset(last_message + idle);
            }
            if !hello_done {
                match check_client_hello(msg).await {
                    Ok(v11) => {
                        hello_done = true;
                        if v11 {
                            decoder.set_framing(Framing::Chunked);
                            out.writer.lock().await.framing = Framing::Chunked;
                        }
                        debug!(base11 = v11, "hello exchanged");
                        continue;
                    }
                    Err(e) => {
                        warn!(error = %e, "bad client hello, closing session");
                        counters.bad_hello.store(true, Ordering::Relaxed);
                        return "bad hello";
                    }
                }
            }
            let base11 = decoder.framing() == Framing::Chunked;
            let me = Me {
                nb,
                user,
                session_id,
                counters,
            };
            let Some((replies, close)) =
                handle_message(msg, me, base11, &out, &mut sub, &mut overflow).await
            else {
                // malformed-message is base:1.1 only (RFC 6241 App. A): a
                // base:1.0 peer that sends garbage loses the session.
                warn!("malformed message on a base:1.0 session, closing");
                return "malformed message";
            };
            for reply in replies {
                if let Err(why) = write_or_stop(&out, reply, nb.writes(), kill, &overflow).await {
                    return why;
                }
            }
            debug!(us = last_message.elapsed().as_micros() as u64, "reply out");
            // the reply to create-subscription and the replay are out:
            // the bus may write to the session directly from now on
            if let Some(a) = &sub {
                a.outlet.on.store(true, Ordering::Release);
            }
            if close {
                return "close-session";
            }
        }
        let stop = sub.as_ref().and_then(|s| s.stop);
        let n = tokio::select! {
            // A notification first: the other branches are then neither
            // polled nor registered (a fan-out wakes every subscribed
            // session at once, and this is all most of them do). A batch
            // usually empties the queue, so the read comes next; after a
            // burst, once the (bounded) queue is drained.
            biased;
            n = async { sub.as_mut().expect("guarded").live.recv().await }, if sub.is_some() => {
                let Some(n) = n else {
                    // the bus let go: the stop time, or an overflow that
                    // the loop's head tells the client about
                    if !overflow.is_cancelled() {
                        end_subscription(&mut sub);
                    }
                    continue;
                };
                if overflow.is_cancelled() {
                    continue;
                }
                // what the bus selected for this session (in time, NACM
                // checked), with those queued behind it, in order
                let active = sub.as_mut().expect("guarded");
                batch.push(n);
                while batch.len() < NOTIFY_BATCH {
                    match active.live.try_recv() {
                        Ok(n) => batch.push(n),
                        Err(_) => break,
                    }
                }
                let outlet = active.outlet.clone();
                if let Err(why) = notify_or_stop(&out, &outlet, &batch, kill, &overflow).await {
                    return why;
                }
                for _ in batch.drain(..) {
                    SessionCounters::bump(&counters.out_notifications);
                }
                continue;
            }
            // a notification the bus began and could not finish
            _ = out.nudge.notified() => {
                if let Err(why) = finish_or_stop(&out, kill, &overflow).await {
                    return why;
                }
                continue;
            }
            n = r.read(&mut readbuf) => n,
            _ = tokio::time::sleep(stop.map(until).unwrap_or_default()), if stop.is_some() => {
                end_subscription(&mut sub);
                let done = notify::marker("notificationComplete").message().to_string();
                if let Err(why) = send_or_stop(&out, &done, kill, &overflow).await {
                    return why;
                }
                SessionCounters::bump(&counters.out_notifications);
                continue;
            }
            // the loop's head ends the subscription and tells the client
            _ = overflow.token.cancelled() => continue,
            _ = &mut killed => return "killed",
            _ = &mut idle_timer, if idle.is_some() => {
                info!("no message within the idle timeout, closing");
                return "idle timeout";
            }
        };
        match n {
            Ok(0) | Err(_) => return "client left",
            Ok(n) => decoder.push(&readbuf[..n]),
        }
    }
}

/// Messages larger than this are parsed on the blocking pool. Parsing is
/// linear, but a message of tens of megabytes takes seconds, and a tokio
/// worker busy for seconds stalls the other sessions and VRRP's timers.
const PARSE_INLINE_MAX: usize = 256 * 1024;

/// Large messages parsed at once, all sessions together: each may peak at
/// `xml::MAX_ELEMENTS` parsed elements (~160 MB), so the daemon's memory
/// stays bounded however many sessions send one at the same time. A
/// process-wide semaphore rather than a northbound message: parsing
/// happens before anything reaches the actor.
static LARGE_PARSES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// Why a message could not be parsed: `too-big` for one over
/// `xml::MAX_ELEMENTS`, `malformed-message` for everything else (a
/// document nested deeper than `xml::MAX_DEPTH` included).
type ParseFailure = (ErrorTag, String);

async fn parse_message(msg: Vec<u8>) -> Result<Element, ParseFailure> {
    let malformed = |m: String| (ErrorTag::MalformedMessage, m);
    let text = String::from_utf8(msg).map_err(|_| malformed("message is not UTF-8".into()))?;
    let parsed = if text.len() <= PARSE_INLINE_MAX {
        xml::parse(&text)
    } else {
        let _permit = LARGE_PARSES.acquire().await.expect("never closed");
        tokio::task::spawn_blocking(move || xml::parse(&text))
            .await
            .map_err(|e| malformed(format!("message could not be parsed: {e}")))?
    };
    parsed.map_err(|e| match e {
        xml::XmlError::TooManyElements => (ErrorTag::TooBig, e.to_string()),
        e => malformed(e.to_string()),
    })
}

/// Handle one framed message; returns what to send (the reply, then the
/// replayed notifications of a new subscription) and whether to close, or
/// None when the message is malformed on a base:1.0 session.
async fn handle_message<W: AsyncWrite + Unpin + Send + 'static>(
    msg: Vec<u8>,
    me: Me<'_>,
    base11: bool,
    out: &Arc<Output<W>>,
    sub: &mut Option<Active<W>>,
    overflow: &mut Overflow,
) -> Option<(Vec<Out>, bool)> {
    let Me {
        nb,
        user,
        session_id,
        counters,
    } = me;
    let refuse = |tag: ErrorTag, m: String| {
        SessionCounters::bump(&counters.in_bad_rpcs);
        // too-big is an rpc-error of base:1.0 as well; malformed-message
        // is base:1.1 only (RFC 6241 App. A)
        (base11 || tag != ErrorTag::MalformedMessage).then(|| {
            SessionCounters::bump(&counters.out_rpc_errors);
            let e = RpcError::new(ErrorType::Rpc, tag, m);
            (vec![rpc::encode_reply("", &Err(vec![e])).into()], false)
        })
    };
    let root = match parse_message(msg).await {
        Ok(r) => r,
        Err((tag, e)) => return refuse(tag, e),
    };
    if root.ns != NC_NS || root.name != "rpc" {
        return refuse(
            ErrorTag::MalformedMessage,
            format!("expected <rpc>, got <{}>", root.name),
        );
    }
    // the operation's name for the counters, before decoding consumes it
    let name = root
        .elements()
        .next()
        .map(|op| op.name.clone())
        .unwrap_or_default();
    let req = rpc::decode(root);
    SessionCounters::bump(if req.operation.is_ok() {
        &counters.in_rpcs
    } else {
        &counters.in_bad_rpcs
    });
    let (result, close) = match req.operation {
        Err(errors) => (Err(errors), false),
        Ok(Operation::CloseSession) => (Ok(Reply::Ok), true),
        Ok(Operation::CreateSubscription(r)) => {
            // the session runs it itself: the exec rule is checked here
            if let Err(e) = nb.check_exec(user, &Operation::CreateSubscription(r.clone())) {
                nb.stats().rpc(&name, true);
                SessionCounters::bump(&counters.out_rpc_errors);
                return Some((
                    vec![rpc::encode_reply(&req.reply_attrs, &Err(e)).into()],
                    false,
                ));
            }
            let replies = subscribe(me, &req.reply_attrs, &r, out, sub, overflow);
            nb.stats().rpc(&name, sub.is_none());
            // RFC 6022 outNotifications: the replayed ones and the markers
            // that follow the reply
            for _ in 1..replies.len() {
                SessionCounters::bump(&counters.out_notifications);
            }
            return Some((replies.into_iter().map(Out::Msg).collect(), false));
        }
        Ok(op) => (nb.rpc(session_id, op).await, false),
    };
    if result.is_err() {
        SessionCounters::bump(&counters.out_rpc_errors);
    }
    nb.stats().rpc(&name, result.is_err());
    let out = match result {
        Ok(Reply::Stream(data)) => Out::Stream {
            reply_attrs: req.reply_attrs,
            data,
        },
        result => rpc::encode_reply(&req.reply_attrs, &result).into(),
    };
    Some((vec![out], close))
}

/// RFC 5277 create-subscription: the reply, the replayed notifications
/// that pass the filter, `replayComplete` after a replay and
/// `notificationComplete` when the stop time has passed already.
fn subscribe<W: AsyncWrite + Unpin + Send + 'static>(
    me: Me<'_>,
    reply_attrs: &str,
    r: &SubscribeRequest,
    out: &Arc<Output<W>>,
    sub: &mut Option<Active<W>>,
    overflow: &mut Overflow,
) -> Vec<String> {
    let Me {
        nb, user, counters, ..
    } = me;
    if sub.is_some() {
        let e = RpcError::protocol(
            ErrorTag::InUse,
            "this session has a subscription already (one per session, RFC 5277)",
        );
        return vec![rpc::encode_reply(reply_attrs, &Err(vec![e]))];
    }
    // off until the reply and the replay are written
    let outlet = Arc::new(SubOutlet {
        out: out.clone(),
        queued: AtomicUsize::new(0),
        on: AtomicBool::new(false),
        counters: counters.clone(),
    });
    let who = notify::Subscriber {
        access: Some((user.to_string(), nb.notification_access())),
        outlet: Some(outlet.clone()),
    };
    let s = match nb.notifications().subscribe_as(r, who) {
        Ok(s) => s,
        Err(e) => return vec![rpc::encode_reply(reply_attrs, &Err(vec![e]))],
    };
    let mut out = vec![rpc::encode_reply(reply_attrs, &Ok(Reply::Ok))];
    out.extend(
        s.replay
            .iter()
            .filter(|n| s.filter.matches(n) && nb.notification_allowed(user, n))
            .map(|n| n.message().to_string()),
    );
    if s.replaying {
        out.push(notify::marker("replayComplete").message().to_string());
    }
    match s.live {
        Some(live) => {
            *overflow = Overflow::new(s.overflow);
            *sub = Some(Active {
                stop: s.stop,
                live,
                outlet,
            });
        }
        None => out.push(notify::marker("notificationComplete").message().to_string()),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Entries of `PIECE` bytes each, counting the pieces made.
    #[derive(Debug)]
    struct Counted {
        left: usize,
        made: Arc<AtomicUsize>,
    }

    const PIECE: usize = 16 * 1024;

    impl crate::config::Entries for Counted {
        fn next_piece(&mut self, out: &mut String) -> bool {
            if self.left == 0 {
                return false;
            }
            self.left -= 1;
            let n = self.made.fetch_add(1, Ordering::SeqCst);
            out.push_str(&format!("<e>{:0w$}</e>", n, w = PIECE - 7));
            true
        }
    }

    /// A streamed reply is made as the client reads it: the writer is
    /// never more than a few pieces ahead of what the client received
    /// (the output's back-pressure paces it), holds one piece at a time,
    /// and the client decodes one well-framed reply of everything, in
    /// both framings; an empty one is `<data/>`.
    #[tokio::test]
    async fn a_streamed_reply_is_made_as_the_client_reads_it() {
        for framing in [Framing::Chunked, Framing::EndOfMessage] {
            let (ours, mut theirs) = tokio::io::duplex(8 * 1024);
            let made = Arc::new(AtomicUsize::new(0));
            let pieces = 200;
            let mut data = StreamedData::new(
                "<head/>".into(),
                "<top>".into(),
                Box::new(Counted {
                    left: pieces,
                    made: made.clone(),
                }),
                "</top>".into(),
                "<tail/>".into(),
            );
            let mut writer = Writer {
                w: ours,
                framing,
                buf: Vec::new(),
                tail: Bytes::new(),
            };
            let client = async {
                let mut dec = Decoder::default();
                dec.set_framing(framing);
                let mut buf = vec![0u8; 4096];
                let (mut got, mut most_ahead) = (0usize, 0isize);
                loop {
                    let n = theirs.read(&mut buf).await.unwrap();
                    assert!(n > 0, "the reply ended early");
                    got += n;
                    dec.push(&buf[..n]);
                    let ahead = made.load(Ordering::SeqCst) as isize - (got / PIECE) as isize;
                    most_ahead = most_ahead.max(ahead);
                    if let Some(m) = dec.next_message().unwrap() {
                        return (String::from_utf8(m).unwrap(), most_ahead);
                    }
                    // a slow client
                    tokio::task::yield_now().await;
                }
            };
            let writes = Writes::default();
            let (sent, (msg, ahead)) = tokio::join!(
                writer.send_stream(r#" message-id="7""#, &mut data, &writes),
                client
            );
            sent.unwrap();
            assert!(
                ahead <= 3,
                "{framing:?}: the writer ran {ahead} pieces ahead"
            );
            assert!(
                writer.buf.capacity() < 3 * PIECE,
                "{framing:?}: the writer held {} bytes",
                writer.buf.capacity()
            );
            let body: String = (0..pieces)
                .map(|n| format!("<e>{:0w$}</e>", n, w = PIECE - 7))
                .collect();
            assert_eq!(
                msg,
                format!(
                    r#"<rpc-reply xmlns="{NC_NS}" message-id="7"><data><head/><top>{body}</top><tail/></data></rpc-reply>"#
                ),
                "{framing:?}"
            );
            assert_eq!(made.load(Ordering::SeqCst), pieces);
        }
        // nothing to write: <data/>, as the usual path
        let (ours, mut theirs) = tokio::io::duplex(8 * 1024);
        let mut writer = Writer {
            w: ours,
            framing: Framing::EndOfMessage,
            buf: Vec::new(),
            tail: Bytes::new(),
        };
        let mut empty = StreamedData::new(
            String::new(),
            "<top>".into(),
            Box::new(Counted {
                left: 0,
                made: Arc::default(),
            }),
            "</top>".into(),
            String::new(),
        );
        writer
            .send_stream("", &mut empty, &Writes::default())
            .await
            .unwrap();
        drop(writer);
        let mut got = String::new();
        theirs.read_to_string(&mut got).await.unwrap();
        assert_eq!(
            got,
            format!(r#"<rpc-reply xmlns="{NC_NS}"><data/></rpc-reply>]]>]]>"#)
        );
    }

    /// A streamed reply gives way to a write under way on the actor: no
    /// piece after the first (made to know the reply is not empty) while
    /// one runs, all of them once it ends; a write that never ends does
    /// not stop it (it waits at most its bound before each piece).
    #[tokio::test]
    async fn a_streamed_reply_gives_way_to_writes() {
        let pieces = 20;
        let stream = |made: &Arc<AtomicUsize>| {
            StreamedData::new(
                String::new(),
                String::new(),
                Box::new(Counted {
                    left: pieces,
                    made: made.clone(),
                }),
                String::new(),
                String::new(),
            )
        };
        async fn read_all(mut theirs: tokio::io::DuplexStream) -> usize {
            let mut got = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            while !got.ends_with(b"]]>]]>") {
                let n = theirs.read(&mut buf).await.unwrap();
                assert!(n > 0);
                got.extend_from_slice(&buf[..n]);
            }
            got.len()
        }
        for (writes, ends) in [
            (Writes::giving_way_at_most(Duration::from_secs(3600)), true),
            (Writes::giving_way_at_most(Duration::from_millis(1)), false),
        ] {
            let made = Arc::new(AtomicUsize::new(0));
            let mut data = stream(&made);
            let (ours, theirs) = tokio::io::duplex(1 << 20);
            let mut writer = Writer {
                w: ours,
                framing: Framing::EndOfMessage,
                buf: Vec::new(),
                tail: Bytes::new(),
            };
            let write = writes.start();
            let control = async {
                if ends {
                    for _ in 0..100 {
                        tokio::task::yield_now().await;
                    }
                    assert_eq!(made.load(Ordering::SeqCst), 1, "pieces made during a write");
                    drop(write);
                } else {
                    std::mem::forget(write);
                }
            };
            let (sent, got, ()) = tokio::join!(
                writer.send_stream("", &mut data, &writes),
                read_all(theirs),
                control
            );
            sent.unwrap();
            assert!(got > pieces * PIECE);
            assert_eq!(made.load(Ordering::SeqCst), pieces);
        }
    }

    /// Notifications waiting together go out in one write, in order, each
    /// framed as the session frames (in both framings), and the client
    /// decodes each one whole.
    #[tokio::test]
    async fn queued_notifications_go_out_in_one_write_in_order() {
        for framing in [Framing::Chunked, Framing::EndOfMessage] {
            let batch: Vec<Arc<Notification>> = ["replayComplete", "notificationComplete"]
                .iter()
                .cycle()
                .take(5)
                .map(|name| Arc::new(notify::marker(name)))
                .collect();
            let (ours, mut theirs) = tokio::io::duplex(1 << 20);
            let mut writer = Writer {
                w: Counting { w: ours, writes: 0 },
                framing,
                buf: Vec::new(),
                tail: Bytes::new(),
            };
            writer.send_notifications(&batch).await.unwrap();
            writer.send_notifications(&batch[..1]).await.unwrap();
            assert_eq!(writer.w.writes, 2, "{framing:?}");
            drop(writer);
            let mut got = Vec::new();
            theirs.read_to_end(&mut got).await.unwrap();
            let mut dec = Decoder::default();
            dec.set_framing(framing);
            dec.push(&got);
            let mut msgs = Vec::new();
            while let Some(m) = dec.next_message().unwrap() {
                msgs.push(String::from_utf8(m).unwrap());
            }
            let want: Vec<&str> = batch
                .iter()
                .chain(&batch[..1])
                .map(|n| n.message())
                .collect();
            assert_eq!(msgs, want, "{framing:?}");
        }
    }

    /// A writer that counts its writes.
    struct Counting<W> {
        w: W,
        writes: usize,
    }

    impl<W: AsyncWrite + Unpin> AsyncWrite for Counting<W> {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            self.writes += 1;
            std::pin::Pin::new(&mut self.w).poll_write(cx, buf)
        }

        fn poll_flush(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.w).poll_flush(cx)
        }

        fn poll_shutdown(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.w).poll_shutdown(cx)
        }
    }

    fn vrrp_event(vrid: u8) -> crate::event::Event {
        crate::event::Event::new("/hotlease-vrrp:state-change")
            .leaf("interface", "eth0")
            .leaf("vrid", vrid)
            .leaf("old-state", "backup")
            .leaf("new-state", "master")
            .leaf("reason", "master-down-timer")
    }

    fn everything() -> SubscribeRequest {
        SubscribeRequest {
            stream: notify::STREAM.into(),
            filter: None,
            start: None,
            stop: None,
        }
    }

    /// A session's output on `w` and a subscription of it to `bus`, the
    /// reply to create-subscription written (the outlet on).
    fn subscribed<W: AsyncWrite + Unpin + Send + 'static>(
        bus: &notify::Bus,
        w: W,
    ) -> (Arc<Output<W>>, Arc<SubOutlet<W>>, notify::Subscription) {
        let out = Arc::new(Output {
            writer: Mutex::new(Writer::new(w)),
            nudge: Notify::new(),
            direct: None,
        });
        let outlet = Arc::new(SubOutlet {
            out: out.clone(),
            queued: AtomicUsize::new(0),
            on: AtomicBool::new(true),
            counters: Arc::default(),
        });
        let who = notify::Subscriber {
            access: None,
            outlet: Some(outlet.clone()),
        };
        let sub = bus.subscribe_as(&everything(), who).unwrap();
        (out, outlet, sub)
    }

    /// The vrids of the state-changes among `msgs`, and "reply" for a
    /// reply, in the order the client read them.
    fn order(msgs: &[String]) -> Vec<String> {
        msgs.iter()
            .map(|m| match m.split("<vrid>").nth(1) {
                Some(v) => v[..v.find('<').unwrap()].to_string(),
                None => "reply".to_string(),
            })
            .collect()
    }

    /// The bus writes a notification itself when the session writes
    /// nothing (the task is not woken: nothing is queued); while the task
    /// writes a reply it queues it, and once something is queued every
    /// later notification queues behind it until the task has written
    /// it: the client reads each message whole, in publishing order.
    #[tokio::test]
    async fn the_bus_writes_directly_only_between_messages_and_in_order() {
        let (bus, _pump) = notify::Bus::open(None, 0).unwrap();
        let (ours, mut theirs) = tokio::io::duplex(2048);
        let (out, outlet, mut sub) = subscribed(&bus, ours);
        let live = sub.live.as_mut().unwrap();
        bus.publish(&vrrp_event(1));
        assert!(live.try_recv().is_err(), "written by the bus, not queued");
        assert_eq!(outlet.counters.out_notifications.load(Ordering::Relaxed), 1);
        // a reply larger than what the client's window takes: its write
        // blocks halfway
        let reply = format!(
            "<rpc-reply xmlns=\"{NC_NS}\" message-id=\"9\"><data>{}</data></rpc-reply>",
            "x".repeat(16 * 1024)
        );
        let writing = tokio::spawn({
            let out = out.clone();
            async move { out.send(&reply).await }
        });
        while out.writer.try_lock().is_ok() {
            tokio::task::yield_now().await;
        }
        bus.publish(&vrrp_event(2));
        let queued: Vec<_> = std::iter::from_fn(|| live.try_recv().ok()).collect();
        assert_eq!(queued.len(), 1, "queued while the reply is written");
        // the client reads from now on
        let reader = tokio::spawn(async move {
            let mut dec = Decoder::default();
            let mut buf = vec![0u8; 4096];
            let mut msgs = Vec::new();
            while msgs.len() < 5 {
                let n = theirs.read(&mut buf).await.unwrap();
                assert!(n > 0);
                dec.push(&buf[..n]);
                while let Some(m) = dec.next_message().unwrap() {
                    msgs.push(String::from_utf8(m).unwrap());
                }
            }
            msgs
        });
        writing.await.unwrap().unwrap();
        // the writer is free, but 2 is not written yet: 3 queues behind it
        bus.publish(&vrrp_event(3));
        let mut batch = queued;
        batch.extend(std::iter::from_fn(|| live.try_recv().ok()));
        assert_eq!(batch.len(), 2, "3 queued behind 2");
        // the session task writes them
        let kill = CancellationToken::new();
        notify_or_stop(&out, &outlet, &batch, &kill, &Overflow::default())
            .await
            .unwrap();
        assert_eq!(outlet.queued.load(Ordering::Relaxed), 0);
        bus.publish(&vrrp_event(4));
        assert!(live.try_recv().is_err(), "written by the bus again");
        let msgs = reader.await.unwrap();
        assert_eq!(order(&msgs), ["1", "reply", "2", "3", "4"]);
    }

    /// The bus writes only what the client's window takes at once: a
    /// client that reads nothing gets the start of a notification written
    /// by the bus (the task is nudged to finish it), then everything is
    /// queued, the queue fills and the subscription ends as before; what
    /// the client reads later is whole messages.
    #[tokio::test]
    async fn a_stalled_client_still_fills_the_queue_with_the_direct_path() {
        let (bus, _pump) = notify::Bus::open(None, 0).unwrap();
        let (ours, mut theirs) = tokio::io::duplex(1000);
        let (out, outlet, sub) = subscribed(&bus, ours);
        let mut published = 0;
        while !sub.overflow.is_cancelled() {
            published += 1;
            assert!(published <= notify::SESSION_QUEUE + 10, "never overflowed");
            bus.publish(&vrrp_event(1 + (published % 200) as u8));
        }
        let direct = outlet.counters.out_notifications.load(Ordering::Relaxed) as usize;
        assert!(direct >= 1, "the first ones went directly");
        assert_eq!(published, direct + notify::SESSION_QUEUE + 1);
        assert!(
            out.nudge.notified().now_or_never().is_some(),
            "the task was told to finish what the bus began"
        );
        assert!(!out.writer.lock().await.tail.is_empty());
        // the task finishes the notification begun; the client gets whole
        // messages, as many as went directly
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            theirs.read_to_end(&mut got).await.unwrap();
            got
        });
        let kill = CancellationToken::new();
        finish_or_stop(&out, &kill, &Overflow::default())
            .await
            .unwrap();
        drop(sub);
        drop(outlet);
        let Ok(out) = Arc::try_unwrap(out) else {
            panic!("the output has other owners")
        };
        drop(out);
        let got = reader.await.unwrap();
        let mut dec = Decoder::default();
        dec.push(&got);
        let mut msgs = 0;
        while let Some(m) = dec.next_message().unwrap() {
            assert!(String::from_utf8(m).unwrap().ends_with("</notification>"));
            msgs += 1;
        }
        assert_eq!(msgs, direct);
    }

    #[tokio::test]
    async fn hello_checks() {
        let h = |caps: &str| {
            format!("<hello xmlns=\"{NC_NS}\"><capabilities>{caps}</capabilities></hello>")
        };
        let check = |s: String| check_client_hello(s.into_bytes());
        assert_eq!(
            check(h(&format!("<capability>{BASE_10}</capability>"))).await,
            Ok(false)
        );
        assert_eq!(
            check(h(&format!(
                "<capability>{BASE_10}</capability><capability>{BASE_11}</capability>"
            )))
            .await,
            Ok(true)
        );
        assert!(check(h("<capability>urn:x</capability>")).await.is_err());
        assert!(check("<hello/>".into()).await.is_err());
        // a hello large enough to be parsed off the worker, and too deep
        let deep = format!("{}{}", "<a>".repeat(100_000), "</a>".repeat(100_000));
        assert!(deep.len() > PARSE_INLINE_MAX);
        let err = check(deep).await.unwrap_err();
        assert!(err.contains("nesting deeper than"), "{err}");
        let hello = server_hello(7);
        assert!(xml::parse(&hello).is_ok());
        assert!(hello.contains("<session-id>7</session-id>"));
    }
}
