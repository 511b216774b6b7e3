//! SSH transport (RFC 6242) on russh: password (SHA-512 crypt) and public-key
//! authentication against the bootstrap users, and the `netconf` subsystem,
//! whose channel is handed to a NETCONF session task.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use russh::keys::{Algorithm, PrivateKey, PublicKey};
use russh::server::{Auth, Msg, PublicKeyOffer, Server, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, MethodKind, MethodSet};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::bootstrap::{self, User};
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

#[derive(Clone)]
struct NetconfServer {
    accounts: Arc<HashMap<String, Account>>,
    northbound: Handle,
    shutdown: CancellationToken,
}

impl Server for NetconfServer {
    type Handler = Connection;

    fn new_client(&mut self, peer: Option<SocketAddr>) -> Connection {
        Connection {
            accounts: self.accounts.clone(),
            northbound: self.northbound.clone(),
            shutdown: self.shutdown.clone(),
            peer,
            user: None,
            channels: HashMap::new(),
        }
    }
}

/// One SSH connection.
struct Connection {
    accounts: Arc<HashMap<String, Account>>,
    northbound: Handle,
    shutdown: CancellationToken,
    peer: Option<SocketAddr>,
    user: Option<String>,
    channels: HashMap<ChannelId, Channel<Msg>>,
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

    fn key_allowed(&self, user: &str, key: &PublicKey) -> bool {
        self.accounts
            .get(user)
            .is_some_and(|a| a.keys.iter().any(|k| k.key_data() == key.key_data()))
    }
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        let Some(hash) = self
            .accounts
            .get(user)
            .and_then(|a| a.password_hash.clone())
        else {
            warn!(user, peer = ?self.peer, "password login refused: unknown user");
            return Ok(Self::reject());
        };
        let pw = password.to_string();
        // SHA-512 crypt costs milliseconds: keep it off the async workers.
        let ok = tokio::task::spawn_blocking(move || bootstrap::verify_password(&pw, &hash))
            .await
            .unwrap_or(false);
        if ok {
            info!(user, peer = ?self.peer, "password login");
            self.user = Some(user.to_string());
            Ok(Auth::Accept)
        } else {
            warn!(user, peer = ?self.peer, "password login refused");
            Ok(Self::reject())
        }
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
            self.user = Some(user.to_string());
            Ok(Auth::Accept)
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
        session.channel_success(id)?;
        let user = self.user.clone().unwrap_or_default();
        let nb = self.northbound.clone();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let stream = channel.into_stream();
            super::session::run(stream, nb, user, shutdown).await;
        });
        Ok(())
    }
}

/// Serve NETCONF over SSH until `shutdown` fires.
pub async fn serve(
    listen: SocketAddr,
    host_key: PrivateKey,
    users: &[User],
    northbound: Handle,
    shutdown: CancellationToken,
) -> Result<(), SshError> {
    let mut accounts = HashMap::new();
    for u in users {
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
    let config = russh::server::Config {
        keys: vec![host_key],
        auth_rejection_time: Duration::from_millis(300),
        auth_rejection_time_initial: Some(Duration::from_millis(0)),
        inactivity_timeout: None,
        nodelay: true,
        methods: MethodSet::from(&[MethodKind::Password, MethodKind::PublicKey][..]),
        ..Default::default()
    };
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| SshError::Listen {
            addr: listen,
            source,
        })?;
    info!(%listen, "netconf over ssh listening");
    let mut server = NetconfServer {
        accounts: Arc::new(accounts),
        northbound,
        shutdown: shutdown.clone(),
    };
    let config = Arc::new(config);
    // Our own accept loop: russh's `run_on_socket` returns on the first
    // accept() error (a client resetting before accept, EMFILE), which
    // would end the daemon. Here such errors are logged and survived.
    loop {
        let (socket, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    // EMFILE/ENFILE persist until sessions close: back off.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let _ = socket.set_nodelay(true);
        let handler = server.new_client(Some(peer));
        let config = config.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let session = match russh::server::run_stream(config, socket, handler).await {
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
        });
    }
    Ok(())
}
