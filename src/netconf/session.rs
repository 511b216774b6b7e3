//! One NETCONF session: hello exchange, framing switch, and the request loop.
//!
//! ```text
//!  ssh channel ──bytes──► Decoder ──message──► xml::parse ──► rpc::decode
//!                                                               │ Operation
//!  ssh channel ◄──framed reply◄── rpc::encode_reply ◄── northbound actor
//! ```
//! RPCs of one session are answered in order, one at a time; sessions never
//! wait for each other except through the northbound's locks.

use std::sync::atomic::Ordering;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};

use super::framing::{encode, Decoder, Framing};
use super::rpc;
use crate::northbound::error::{ErrorTag, ErrorType, RpcError};
use crate::northbound::monitoring::SessionCounters;
use crate::northbound::ops::{Operation, Reply};
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
    let root = parse_message(msg).await?;
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
}

impl<W: AsyncWrite + Unpin> Writer<W> {
    async fn send(&mut self, msg: &str) -> std::io::Result<()> {
        self.buf.clear();
        encode(self.framing, msg.as_bytes(), &mut self.buf);
        self.w.write_all(&self.buf).await?;
        self.w.flush().await
    }
}

/// Run a session on a byte stream until the client leaves, closes the
/// session, is killed, or the daemon shuts down; returns why it ended
/// ("close-session", "client left", ...), which the SSH layer turns into
/// the channel's exit status.
pub async fn run<S>(
    stream: S,
    northbound: Handle,
    user: String,
    source: Option<std::net::IpAddr>,
    shutdown: CancellationToken,
) -> &'static str
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let kill = shutdown.child_token();
    let (session_id, counters) = northbound
        .register(user.clone(), source, kill.clone())
        .await;
    northbound.stats().session_started();
    let span = info_span!("session", session_id, user = %user);
    let reason = async {
        info!("session started");
        let reason = serve(stream, &northbound, session_id, &counters, &kill).await;
        info!(reason, "session ended");
        reason
    }
    .instrument(span)
    .await;
    let dropped = !matches!(reason, "close-session" | "killed");
    northbound.unregister(session_id, dropped).await;
    northbound.stats().session_ended();
    reason
}

async fn serve<S>(
    stream: S,
    nb: &Handle,
    session_id: u32,
    counters: &SessionCounters,
    kill: &CancellationToken,
) -> &'static str
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (mut r, w) = tokio::io::split(stream);
    let mut writer = Writer {
        w,
        framing: Framing::EndOfMessage,
        buf: Vec::new(),
    };
    if writer.send(&server_hello(session_id)).await.is_err() {
        return "write failed";
    }
    let mut decoder = Decoder::default();
    let mut hello_done = false;
    let mut readbuf = vec![0u8; 64 * 1024];
    loop {
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
            if !hello_done {
                match check_client_hello(msg).await {
                    Ok(v11) => {
                        hello_done = true;
                        if v11 {
                            decoder.set_framing(Framing::Chunked);
                            writer.framing = Framing::Chunked;
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
            let Some((reply, close)) = handle_message(msg, nb, session_id, counters, base11).await
            else {
                // malformed-message is base:1.1 only (RFC 6241 App. A): a
                // base:1.0 peer that sends garbage loses the session.
                warn!("malformed message on a base:1.0 session, closing");
                return "malformed message";
            };
            if writer.send(&reply).await.is_err() {
                return "write failed";
            }
            if close {
                return "close-session";
            }
        }
        let n = tokio::select! {
            n = r.read(&mut readbuf) => n,
            _ = kill.cancelled() => return "killed",
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

/// Parse one message (a document nested deeper than `xml::MAX_DEPTH` is
/// refused like any other that cannot be parsed).
async fn parse_message(msg: Vec<u8>) -> Result<Element, String> {
    let text = String::from_utf8(msg).map_err(|_| "message is not UTF-8".to_string())?;
    let parsed = if text.len() <= PARSE_INLINE_MAX {
        xml::parse(&text)
    } else {
        tokio::task::spawn_blocking(move || xml::parse(&text))
            .await
            .map_err(|e| format!("message could not be parsed: {e}"))?
    };
    parsed.map_err(|e| e.to_string())
}

/// Handle one framed message; returns the reply and whether to close, or
/// None when the message is malformed on a base:1.0 session.
async fn handle_message(
    msg: Vec<u8>,
    nb: &Handle,
    session_id: u32,
    counters: &SessionCounters,
    base11: bool,
) -> Option<(String, bool)> {
    let malformed = |m: String| {
        SessionCounters::bump(&counters.in_bad_rpcs);
        base11.then(|| {
            SessionCounters::bump(&counters.out_rpc_errors);
            let e = RpcError::new(ErrorType::Rpc, ErrorTag::MalformedMessage, m);
            (rpc::encode_reply("", &Err(vec![e])), false)
        })
    };
    let root = match parse_message(msg).await {
        Ok(r) => r,
        Err(e) => return malformed(e),
    };
    if root.ns != NC_NS || root.name != "rpc" {
        return malformed(format!("expected <rpc>, got <{}>", root.name));
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
        Ok(op) => (nb.rpc(session_id, op).await, false),
    };
    if result.is_err() {
        SessionCounters::bump(&counters.out_rpc_errors);
    }
    nb.stats().rpc(&name, result.is_err());
    Some((rpc::encode_reply(&req.reply_attrs, &result), close))
}

#[cfg(test)]
mod tests {
    use super::*;

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
