//! SSH transport (RFC 6242) on russh: password (SHA-512 crypt) and public-key
//! authentication against the bootstrap users, and the `netconf` subsystem,
//! whose channel is handed to a NETCONF session task.
//!
//! ```text
//!  accept loop ──admit (admission: caps)──► connection task ─► russh session
//!      │ refused: closed at once              │ login grace time, then cut
//!      └ displaced: its token cut             └ slot given back at the end
//! ```
//! russh's keepalives drop a silent peer; its channels close, so the NETCONF
//! session ends and the northbound releases its locks.
//!
//! Password attempts from an address that keeps failing wait for their turn
//! (`throttle`); NETCONF sessions are bounded in total and per user
//! (`admission::Sessions`). Only the `netconf` subsystem is served: shell,
//! exec, agent and X11 requests get a channel failure, and port forwarding
//! (local, remote, stream-local) is refused by russh's defaults, which this
//! handler keeps; the connection goes on after each refusal.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use russh::keys::{Algorithm, PrivateKey, PublicKey};
use russh::server::{Auth, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, MethodKind, MethodSet};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tracing::{debug, info, warn};

use super::admission::{Admission, Admitted, Limits, LogLimiter, Sessions};
use super::throttle::{Throttle, Turn};
use crate::bootstrap::{self, NetconfSettings};
use crate::northbound::Handle;

/// Errors starting the SSH listener.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("host key {path}: {message}")]
    HostKey { path: String, message: String },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Load the ed25519 host key, generating it (mode 0600) when missing.
pub fn load_or_create_host_key(path: &Path) -> Result<PrivateKey, SshError> {
    let err = |message: String| SshError::HostKey {
        path: path.display().to_string(),
        message,
    };
    if path.exists() {
        return russh::keys::load_secret_key(path, None).map_err(|e| err(e.to_string()));
    }
    let key =
        PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).map_err(|e| err(e.to_string()))?;
    let text = key
        .to_openssh(russh::keys::ssh_key::LineEnding::LF)
        .map_err(|e| err(e.to_string()))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    }
    crate::northbound::store::write_atomic(path, text.as_bytes())
        .map_err(|e| err(e.to_string()))?;
    info!(path = %path.display(), "generated ssh host key");
    Ok(key)
}

/// A user as the SSH layer sees it: parsed keys.
#[derive(Debug)]
struct Account {
    password_hash: Option<String>,
    keys: Vec<PublicKey>,
}

/// What every connection shares.
struct Shared {
    accounts: Arc<HashMap<String, Account>>,
    northbound: Handle,
    shutdown: CancellationToken,
    config: Arc<russh::server::Config>,
    /// Held only for the few map operations of `Admission`, never across
    /// an await: the accept loop, the handlers (login) and the connection
    /// tasks (end) all update it, each in a few microseconds.
    admission: Arc<Mutex<Admission>>,
    login_grace_time: Duration,
    /// "login grace time over" of all connections (a flood ends them by the
    /// hundred at once); held for one check, like `admission`.
    grace_log: Mutex<LogLimiter>,
    /// Failed logins per address; held for one lookup, never across an
    /// await (the wait for a turn happens after the lock is dropped).
    throttle: Mutex<Throttle>,
    /// NETCONF sessions per user; held for one update.
    sessions: Mutex<Sessions>,
    /// A brute force makes these lines by the thousand: rate-limited.
    login_log: Mutex<LogLimiter>,
    throttle_log: Mutex<LogLimiter>,
    session_log: Mutex<LogLimiter>,
    idle_timeout: Option<Duration>,
}

/// Lock one of the short-lived shared sections (poisoning ignored: each
/// leaves its state consistent between statements).
fn hold<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `Some(lines held back)` when a rate-limited line may be logged now.
fn may_log(limiter: &Mutex<LogLimiter>) -> Option<u64> {
    hold(limiter).allow(Instant::now())
}

/// A NETCONF session's place in the session budgets, given back when its
/// task ends.
struct SessionSlot {
    shared: Arc<Shared>,
    user: String,
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        hold(&self.shared.sessions).close(&self.user);
    }
}

fn lock(admission: &Mutex<Admission>) -> MutexGuard<'_, Admission> {
    // the bookkeeping stays consistent even if a holder panicked
    admission.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A connection's place in the admission budgets, given back when its
/// task ends.
struct Slot {
    admission: Arc<Mutex<Admission>>,
    id: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        lock(&self.admission).release(self.id);
    }
}

/// Session channels a connection may hold open before asking for the
/// netconf subsystem (a client opens one, then asks).
const MAX_PENDING_CHANNELS: usize = 4;

/// One SSH connection.
struct Connection {
    shared: Arc<Shared>,
    accounts: Arc<HashMap<String, Account>>,
    northbound: Handle,
    shutdown: CancellationToken,
    admission: Arc<Mutex<Admission>>,
    id: u64,
    peer: Option<SocketAddr>,
    user: Option<String>,
    channels: HashMap<ChannelId, Channel<Msg>>,
    /// The stream's `Severable::armed`, cleared at login.
    severable: Arc<AtomicBool>,
}

impl Connection {
    fn reject() -> Auth {
        Auth::Reject {
            proceed_with_methods: Some(MethodSet::from(
                &[MethodKind::Password, MethodKind::PublicKey][..],
            )),
            partial_success: false,
        }
    }

    /// Accept the login unless the connection was displaced meanwhile.
    fn accept(&mut self, user: &str) -> Auth {
        if !lock(&self.admission).authenticated(self.id) {
            return Self::reject();
        }
        // logged in: no longer displaced nor cut at the grace time
        self.severable.store(false, Ordering::Relaxed);
        self.user = Some(user.to_string());
        Auth::Accept
    }

    fn key_allowed(&self, user: &str, key: &PublicKey) -> bool {
        self.accounts
            .get(user)
            .is_some_and(|a| a.keys.iter().any(|k| k.key_data() == key.key_data()))
    }
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        let shared = self.shared.clone();
        let stats = self.northbound.stats();
        let source = self.peer.map(|p| p.ip());
        if let Some(ip) = source {
            let turn = hold(&shared.throttle).turn(ip, Instant::now());
            match turn {
                Turn::After(wait) if wait.is_zero() => {}
                Turn::After(wait) => {
                    stats.login_throttled();
                    if let Some(suppressed) = may_log(&shared.throttle_log) {
                        info!(peer = %ip, wait_ms = wait.as_millis() as u64, suppressed,
                            "login attempt delayed: repeated failed logins from this address");
                    }
                    tokio::time::sleep(wait).await;
                }
                Turn::Refuse => {
                    stats.login_throttled();
                    stats.login_failed();
                    if let Some(suppressed) = may_log(&shared.throttle_log) {
                        warn!(peer = %ip, suppressed,
                            "login attempt refused unchecked: repeated failed logins from this address");
                    }
                    return Ok(Self::reject());
                }
            }
        }
        let hash = self
            .accounts
            .get(user)
            .and_then(|a| a.password_hash.clone());
        let known = hash.is_some();
        let ok = match hash {
            Some(hash) => {
                let pw = password.to_string();
                // SHA-512 crypt costs milliseconds: keep it off the async workers.
                tokio::task::spawn_blocking(move || bootstrap::verify_password(&pw, &hash))
                    .await
                    .unwrap_or(false)
            }
            None => false,
        };
        if ok {
            if let Some(ip) = source {
                hold(&shared.throttle).succeeded(ip);
            }
            info!(user, peer = ?self.peer, "password login");
            return Ok(self.accept(user));
        }
        stats.login_failed();
        let failures = source.map(|ip| hold(&shared.throttle).failed(ip, Instant::now()));
        if let Some(suppressed) = may_log(&shared.login_log) {
            let reason = if known {
                "wrong password"
            } else {
                "unknown user"
            };
            warn!(user, peer = ?self.peer, reason, failures, suppressed, "password login refused");
        }
        Ok(Self::reject())
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        if self.key_allowed(user, offer.public_key) {
            Ok(Auth::Accept)
        } else {
            Ok(Self::reject())
        }
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        if self.key_allowed(user, key.public_key) {
            info!(user, peer = ?self.peer, "public key login");
            Ok(self.accept(user))
        } else {
            warn!(user, peer = ?self.peer, "public key login refused");
            Ok(Self::reject())
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.channels.len() >= MAX_PENDING_CHANNELS {
            // the handle dropped unused refuses the channel
            debug!(peer = ?self.peer, "session channel refused: too many without a subsystem");
            return Ok(());
        }
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    /// Only the netconf subsystem is served: no shell, no exec.
    async fn shell_request(
        &mut self,
        id: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(id)?;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        id: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(id)?;
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        id: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let channel = match (name, self.channels.remove(&id)) {
            ("netconf", Some(ch)) => ch,
            _ => {
                session.channel_failure(id)?;
                return Ok(());
            }
        };
        let user = self.user.clone().unwrap_or_default();
        if let Err(reason) = hold(&self.shared.sessions).open(&user) {
            self.northbound.stats().session_refused();
            if let Some(suppressed) = may_log(&self.shared.session_log) {
                warn!(user, peer = ?self.peer, %reason, suppressed, "netconf session refused");
            }
            session.channel_failure(id)?;
            return Ok(());
        }
        let slot = SessionSlot {
            shared: self.shared.clone(),
            user: user.clone(),
        };
        session.channel_success(id)?;
        let idle = self.shared.idle_timeout;
        let nb = self.northbound.clone();
        let source = self.peer.map(|p| p.ip());
        let shutdown = self.shutdown.clone();
        // the write side is 'static: the notification bus writes to it
        // directly (`session::SubOutlet`), sealing and sending itself
        // when it can (`russh::server::DirectWriter`, third_party/russh)
        let (mut read_half, write_half) = channel.split();
        let direct = session.direct_writer(&write_half);
        tokio::spawn(async move {
            let reader = read_half.make_reader();
            let writer = write_half.make_writer();
            let reason = super::session::run(
                reader,
                writer,
                Some(direct),
                nb,
                user,
                source,
                idle,
                shutdown,
            )
            .await;
            drop(slot);
            // As OpenSSH's own subsystems end (sftp-server): exit-status,
            // EOF, close. Without the status the OpenSSH client exits 255
            // ("Exit status -1") after a clean <close-session>.
            let status = u32::from(!matches!(reason, "close-session" | "client left"));
            let _ = write_half.exit_status(status).await;
            let _ = write_half.eof().await;
            let _ = write_half.close().await;
        });
        Ok(())
    }
}

/// Bind the NETCONF listening socket. The daemon does it before any
/// runtime touches an interface, so that a busy port refuses the start
/// with nothing changed on the box.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, SshError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| SshError::Listen { addr, source })
}

/// Serve NETCONF over SSH on `listener` (from [`bind`]) until `shutdown`
/// fires.
pub async fn serve(
    settings: &NetconfSettings,
    listener: TcpListener,
    host_key: PrivateKey,
    northbound: Handle,
    shutdown: CancellationToken,
) -> Result<(), SshError> {
    let mut accounts = HashMap::new();
    for u in &settings.user {
        let keys = u
            .authorized_keys
            .iter()
            .filter_map(|k| {
                russh::keys::parse_public_key_base64(k.split_whitespace().nth(1).unwrap_or("")).ok()
            })
            .collect();
        accounts.insert(
            u.name.clone(),
            Account {
                password_hash: u.password_hash.clone(),
                keys,
            },
        );
    }
    let keepalive =
        (settings.keepalive_interval > 0).then(|| Duration::from_secs(settings.keepalive_interval));
    let config = russh::server::Config {
        keys: vec![host_key],
        auth_rejection_time: Duration::from_millis(300),
        auth_rejection_time_initial: Some(Duration::from_millis(0)),
        keepalive_interval: keepalive,
        keepalive_max: settings.keepalive_count,
        // russh bounds a write to a peer that stops reading by this time
        // only (not by keepalives): one interval more than it takes to drop
        // a silent peer. Without keepalives an idle session may idle on.
        inactivity_timeout: keepalive.map(|k| k * (settings.keepalive_count as u32 + 2)),
        nodelay: true,
        methods: MethodSet::from(&[MethodKind::Password, MethodKind::PublicKey][..]),
        ..Default::default()
    };
    info!(listen = %settings.listen, "netconf over ssh listening");
    // A flood makes these lines by the thousand: one a second at most.
    let second = Duration::from_secs(1);
    let shared = Arc::new(Shared {
        accounts: Arc::new(accounts),
        northbound,
        shutdown: shutdown.clone(),
        config: Arc::new(config),
        admission: Arc::new(Mutex::new(Admission::new(Limits {
            max_connections: settings.max_connections,
            max_per_source: settings.max_per_source,
            max_unauthenticated: settings.max_unauthenticated,
        }))),
        login_grace_time: Duration::from_secs(settings.login_grace_time),
        grace_log: Mutex::new(LogLimiter::new(second)),
        throttle: Mutex::new(Throttle::new(
            settings.login_throttle_after,
            Duration::from_secs_f64(settings.login_delay_max),
            Duration::from_secs(settings.login_grace_time),
        )),
        sessions: Mutex::new(Sessions::new(
            settings.max_sessions,
            settings.max_sessions_per_user,
        )),
        login_log: Mutex::new(LogLimiter::new(second)),
        throttle_log: Mutex::new(LogLimiter::new(second)),
        session_log: Mutex::new(LogLimiter::new(second)),
        idle_timeout: (settings.idle_timeout > 0)
            .then(|| Duration::from_secs(settings.idle_timeout)),
    });
    let mut accept_failed = LogLimiter::new(second);
    let mut refused = LogLimiter::new(second);
    let mut displaced = LogLimiter::new(second);
    // Our own accept loop: russh's `run_on_socket` returns on the first
    // accept() error (a client resetting before accept, EMFILE), which
    // would end the daemon. Here such errors are logged and survived.
    loop {
        let (socket, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    if let Some(suppressed) = accept_failed.allow(Instant::now()) {
                        warn!(error = %e, suppressed, "accept failed");
                    }
                    // EMFILE/ENFILE persist until sessions close: back off.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let admitted = lock(&shared.admission).admit(peer.ip());
        let admitted = match admitted {
            Ok(a) => a,
            Err(reason) => {
                // closed at once: a refused connection holds nothing
                drop(socket);
                if let Some(suppressed) = refused.allow(Instant::now()) {
                    let (open, unauthenticated) = lock(&shared.admission).counts();
                    warn!(%peer, %reason, open, unauthenticated, suppressed, "ssh connection refused");
                }
                continue;
            }
        };
        if let Some(source) = admitted.displaced {
            if let Some(suppressed) = displaced.allow(Instant::now()) {
                info!(%peer, %source, suppressed, "closed a connection not logged in to make room");
            }
        }
        let _ = socket.set_nodelay(true);
        tokio::spawn(connection(shared.clone(), socket, peer, admitted));
    }
    Ok(())
}

/// One connection from the first byte to the last: closed by the server
/// when it has not logged in within the login grace time or when it is
/// displaced (`admitted.kill`); its slot is given back when it ends.
async fn connection(shared: Arc<Shared>, socket: TcpStream, peer: SocketAddr, admitted: Admitted) {
    let id = admitted.id;
    let slot = Slot {
        admission: shared.admission.clone(),
        id,
    };
    let severable = Arc::new(AtomicBool::new(true));
    let handler = Connection {
        shared: shared.clone(),
        accounts: shared.accounts.clone(),
        northbound: shared.northbound.clone(),
        shutdown: shared.shutdown.clone(),
        admission: shared.admission.clone(),
        id,
        peer: Some(peer),
        user: None,
        channels: HashMap::new(),
        severable: severable.clone(),
    };
    let kill = admitted.kill;
    let shutdown = &shared.shutdown;
    // the slot goes with the stream, before its socket closes: a peer that
    // sees the close finds its place free again
    let stream = Severable::new(socket, &kill, slot, severable);
    let life = async {
        let config = shared.config.clone();
        let session = match russh::server::run_stream(config, stream, handler).await {
            Ok(s) => s,
            Err(e) => {
                debug!(%peer, error = %e, "ssh connection setup failed");
                return;
            }
        };
        let handle = session.handle();
        tokio::select! {
            r = session => {
                if let Err(e) = r {
                    debug!(%peer, error = %e, "ssh connection closed with error");
                }
            }
            _ = shutdown.cancelled() => {
                let _ = handle
                    .disconnect(russh::Disconnect::ByApplication, "shutting down".into(), "".into())
                    .await;
            }
        }
    };
    tokio::pin!(life);
    tokio::select! {
        () = &mut life => return,
        () = tokio::time::sleep(shared.login_grace_time) => {}
    }
    if !lock(&shared.admission).is_authenticated(id) {
        kill.cancel();
        let allowed = shared
            .grace_log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .allow(Instant::now());
        if let Some(suppressed) = allowed {
            info!(%peer, suppressed, "login grace time over, closing");
        }
    }
    life.await;
}

/// A connection's TCP stream that fails every read and write once its
/// token is cancelled. russh's session task owns the stream; the error
/// ends that task and closes the socket whatever the handshake's state
/// (a `disconnect` would wait for a key exchange the peer never sends).
/// Only until login (`armed`): a logged-in connection is never cut this
/// way (admission displaces, and the grace time cuts, only connections not
/// logged in), and checking the token (a lock) at every read and write of
/// a thousand sessions that each send a notification is measurable.
struct Severable<S> {
    // dropped first: the admission slot is free before the socket closes
    _slot: Slot,
    inner: S,
    armed: Arc<AtomicBool>,
    // one future per direction: each keeps its own waker (read and write
    // are polled from different tasks of russh)
    read_cut: Pin<Box<WaitForCancellationFutureOwned>>,
    write_cut: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl<S> Severable<S> {
    fn new(inner: S, token: &CancellationToken, slot: Slot, armed: Arc<AtomicBool>) -> Self {
        Severable {
            _slot: slot,
            inner,
            armed,
            read_cut: Box::pin(token.clone().cancelled_owned()),
            write_cut: Box::pin(token.clone().cancelled_owned()),
        }
    }
}

fn severed() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "closed by the server",
    )
}

impl<S: AsyncRead + Unpin> AsyncRead for Severable<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.armed.load(Ordering::Relaxed) && self.read_cut.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(severed()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Severable<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.armed.load(Ordering::Relaxed) && self.write_cut.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(severed()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        if self.armed.load(Ordering::Relaxed) && self.write_cut.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(severed()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn slot() -> Slot {
        let admission = Arc::new(Mutex::new(Admission::new(Limits {
            max_connections: 4,
            max_per_source: 4,
            max_unauthenticated: 4,
        })));
        let id = lock(&admission)
            .admit("127.0.0.1".parse().unwrap())
            .unwrap()
            .id;
        Slot { admission, id }
    }

    /// Before login the token cuts the stream, a read blocked on it
    /// included; after login (disarmed) the stream is the socket's alone.
    #[tokio::test]
    async fn the_token_cuts_a_stream_until_login() {
        let (ours, mut theirs) = tokio::io::duplex(1024);
        let token = CancellationToken::new();
        let armed = Arc::new(AtomicBool::new(true));
        let mut s = Severable::new(ours, &token, slot(), armed);
        s.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        theirs.read_exact(&mut buf).await.unwrap();
        let cut = async {
            tokio::task::yield_now().await;
            token.cancel();
        };
        let (read, ()) = tokio::join!(s.read(&mut buf), cut);
        assert_eq!(
            read.unwrap_err().kind(),
            std::io::ErrorKind::ConnectionAborted
        );
        assert!(s.write_all(b"x").await.is_err());

        let (ours, mut theirs) = tokio::io::duplex(1024);
        let token = CancellationToken::new();
        let armed = Arc::new(AtomicBool::new(true));
        let mut s = Severable::new(ours, &token, slot(), armed.clone());
        armed.store(false, Ordering::Relaxed);
        token.cancel();
        s.write_all(b"still").await.unwrap();
        theirs.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"still");
    }
}
