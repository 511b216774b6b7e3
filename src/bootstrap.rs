//! The bootstrap TOML: what must exist before the first NETCONF session
//! (listen address, host key, users, storage directory). Everything else is
//! YANG configuration in the startup datastore.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Errors reading the bootstrap file; each prints as one line.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config file {path}: no NETCONF user: add a [[netconf.user]] with name and password-hash (the line printed by `hotleased hash-password`) or authorized-keys, then restart")]
    NoUsers { path: PathBuf },
    #[error("config file {path}: user '{user}' has neither password-hash nor authorized-keys")]
    UserWithoutCredentials { path: PathBuf, user: String },
    #[error("config file {path}: user '{user}': password-hash must be SHA-512 crypt ($6$...)")]
    BadHash { path: PathBuf, user: String },
    #[error("config file {path}: [netconf] {key} must be at least 1")]
    ZeroLimit { path: PathBuf, key: &'static str },
    #[error("config file {path}: user '{user}': bad authorized key: {message}")]
    BadKey {
        path: PathBuf,
        user: String,
        message: String,
    },
}

/// The whole bootstrap file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bootstrap {
    pub netconf: NetconfSettings,
    pub storage: StorageSettings,
    #[serde(default)]
    pub vrrp: VrrpSettings,
}

/// `[vrrp]`: how the VRRP runtime runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct VrrpSettings {
    /// When false, VRRP configuration is validated and stored but no group
    /// runs (every group reports `initialize`): for a management-only test
    /// bed, or a host whose interfaces must not see advertisements.
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// SCHED_RR priority (1..=99) of the VRRP thread, so that a busy CPU
    /// does not delay advertisements (a backup would take over: two
    /// masters); 0 keeps the normal scheduler.
    #[serde(default = "realtime_priority_by_default")]
    pub realtime_priority: u8,
}

fn enabled_by_default() -> bool {
    true
}

fn realtime_priority_by_default() -> u8 {
    10
}

impl Default for VrrpSettings {
    fn default() -> Self {
        VrrpSettings {
            enabled: true,
            realtime_priority: realtime_priority_by_default(),
        }
    }
}

/// `[netconf]`: where and for whom the NETCONF server listens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NetconfSettings {
    pub listen: SocketAddr,
    pub host_key: PathBuf,
    /// SSH connections at once, logged in or not; beyond it a newcomer is
    /// closed at once unless it can take a half-open connection's place.
    #[serde(default = "max_connections_by_default")]
    pub max_connections: usize,
    /// SSH connections at once from one address, logged in or not.
    #[serde(default = "max_per_source_by_default")]
    pub max_per_source: usize,
    /// Connections that have not logged in yet (OpenSSH's MaxStartups):
    /// a flood of half-open connections holds at most this many
    /// descriptors, and a login from another address displaces one of them
    /// (`netconf::admission`).
    #[serde(default = "max_unauthenticated_by_default")]
    pub max_unauthenticated: usize,
    /// Seconds a connection has to log in before it is closed (OpenSSH's
    /// LoginGraceTime).
    #[serde(default = "login_grace_time_by_default")]
    pub login_grace_time: u64,
    /// Seconds of silence from the client after which the server sends an
    /// SSH keepalive (OpenSSH's ClientAliveInterval); 0 sends none.
    #[serde(default = "keepalive_interval_by_default")]
    pub keepalive_interval: u64,
    /// Keepalives left unanswered before the connection is dropped, its
    /// NETCONF sessions ended and their locks released (ClientAliveCountMax).
    #[serde(default = "keepalive_count_by_default")]
    pub keepalive_count: usize,
    #[serde(default)]
    pub user: Vec<User>,
}

// One controller may hold 100 sessions and open them all at once (the
// project's concurrency requirement); the caps still keep a flood far from
// the 1,024 descriptors of a default soft limit.
fn max_connections_by_default() -> usize {
    256
}

fn max_per_source_by_default() -> usize {
    128
}

fn max_unauthenticated_by_default() -> usize {
    128
}

fn login_grace_time_by_default() -> u64 {
    30
}

fn keepalive_interval_by_default() -> u64 {
    15
}

fn keepalive_count_by_default() -> usize {
    3
}

/// `[[netconf.user]]`: one NETCONF user with a password hash and/or keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct User {
    pub name: String,
    pub password_hash: Option<String>,
    #[serde(default)]
    pub authorized_keys: Vec<String>,
}

/// `[storage]`: where the startup datastore and state live.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSettings {
    pub dir: PathBuf,
}

impl Bootstrap {
    /// Read and check the file; every error is one line for the operator.
    /// The daemon stops at the first (see [`Bootstrap::check`] for all).
    pub fn load(path: &Path) -> Result<Bootstrap, BootstrapError> {
        Self::check(path).map_err(|mut errors| errors.swap_remove(0))
    }

    /// Read and check the file, reporting every problem found
    /// (`hotleased check`). A file that is not TOML, or not the shape of a
    /// bootstrap file, has only that one problem.
    pub fn check(path: &Path) -> Result<Bootstrap, Vec<BootstrapError>> {
        let text = std::fs::read_to_string(path).map_err(|source| {
            vec![BootstrapError::Read {
                path: path.to_path_buf(),
                source,
            }]
        })?;
        Self::problems(path, &text)
    }

    #[cfg(test)]
    fn from_str(path: &Path, text: &str) -> Result<Bootstrap, BootstrapError> {
        Self::problems(path, text).map_err(|mut errors| errors.swap_remove(0))
    }

    /// [`Bootstrap::check`] of a file already read (the fuzz target's
    /// entry, `fuzz/`).
    pub fn problems(path: &Path, text: &str) -> Result<Bootstrap, Vec<BootstrapError>> {
        let b: Bootstrap = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            let message = e.message().replace('\n', " ");
            vec![BootstrapError::Parse {
                path: path.to_path_buf(),
                message: match line {
                    Some(line) => format!("line {line}: {message}"),
                    None => message,
                },
            }]
        })?;
        let mut errors = Vec::new();
        let n = &b.netconf;
        for (key, value) in [
            ("max-connections", n.max_connections as u64),
            ("max-per-source", n.max_per_source as u64),
            ("max-unauthenticated", n.max_unauthenticated as u64),
            ("login-grace-time", n.login_grace_time),
            ("keepalive-count", n.keepalive_count as u64),
        ] {
            if value == 0 {
                errors.push(BootstrapError::ZeroLimit {
                    path: path.to_path_buf(),
                    key,
                });
            }
        }
        if b.netconf.user.is_empty() {
            errors.push(BootstrapError::NoUsers {
                path: path.to_path_buf(),
            });
        }
        for u in &b.netconf.user {
            if u.password_hash.is_none() && u.authorized_keys.is_empty() {
                errors.push(BootstrapError::UserWithoutCredentials {
                    path: path.to_path_buf(),
                    user: u.name.clone(),
                });
            }
            if let Some(h) = &u.password_hash {
                if !h.starts_with("$6$") {
                    errors.push(BootstrapError::BadHash {
                        path: path.to_path_buf(),
                        user: u.name.clone(),
                    });
                }
            }
            for k in &u.authorized_keys {
                if let Err(e) =
                    russh::keys::parse_public_key_base64(k.split_whitespace().nth(1).unwrap_or(""))
                {
                    errors.push(BootstrapError::BadKey {
                        path: path.to_path_buf(),
                        user: u.name.clone(),
                        message: e.to_string(),
                    });
                }
            }
        }
        if errors.is_empty() {
            Ok(b)
        } else {
            Err(errors)
        }
    }
}

/// Hash a password in /etc/shadow SHA-512-crypt form.
pub fn hash_password(password: &str) -> String {
    let params = sha_crypt::Sha512Params::default();
    sha_crypt::sha512_simple(password, &params).expect("sha512 crypt with default params")
}

/// Check a password against a `$6$` hash.
pub fn verify_password(password: &str, hash: &str) -> bool {
    sha_crypt::sha512_check(password, hash).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_round_trip() {
        let h = hash_password("s3cret");
        assert!(h.starts_with("$6$"));
        assert!(verify_password("s3cret", &h));
        assert!(!verify_password("other", &h));
    }

    #[test]
    fn rejects_unknown_keys_and_no_users() {
        let p = Path::new("x.toml");
        let base = "[netconf]\nlisten = \"127.0.0.1:8830\"\nhost-key = \"/tmp/k\"\n[storage]\ndir = \"/tmp\"\n";
        let no_users = Bootstrap::from_str(p, base).unwrap_err();
        assert!(matches!(no_users, BootstrapError::NoUsers { .. }));
        // the operator's only hint on a fresh install: one line, with the how-to
        let line = no_users.to_string();
        assert!(line.contains("[[netconf.user]]") && line.contains("hotleased hash-password"));
        assert!(!line.contains('\n'));
        let bad = format!("{base}bogus = 1\n");
        assert!(matches!(
            Bootstrap::from_str(p, &bad),
            Err(BootstrapError::Parse { .. })
        ));
        let ok = format!(
            "{base}[[netconf.user]]\nname = \"admin\"\npassword-hash = \"{}\"\n",
            hash_password("x")
        );
        let b = Bootstrap::from_str(p, &ok).unwrap();
        assert_eq!(b.netconf.user[0].name, "admin");
        assert_eq!(b.netconf.max_unauthenticated, 128);
        assert_eq!(b.netconf.login_grace_time, 30);
    }

    #[test]
    fn connection_limits_are_read_and_checked() {
        let p = Path::new("x.toml");
        let file = |limits: &str| {
            format!(
                "[netconf]\nlisten = \"127.0.0.1:8830\"\nhost-key = \"/tmp/k\"\n{limits}\n\
                 [[netconf.user]]\nname = \"admin\"\nauthorized-keys = [\"{KEY}\"]\n\
                 [storage]\ndir = \"/tmp\"\n"
            )
        };
        let b = Bootstrap::from_str(
            p,
            &file(
                "max-connections = 10\nmax-per-source = 3\nmax-unauthenticated = 4\n\
                 login-grace-time = 5\nkeepalive-interval = 0\nkeepalive-count = 2",
            ),
        )
        .unwrap();
        let n = &b.netconf;
        assert_eq!(
            (n.max_connections, n.max_per_source, n.max_unauthenticated),
            (10, 3, 4)
        );
        assert_eq!(
            (n.login_grace_time, n.keepalive_interval, n.keepalive_count),
            (5, 0, 2)
        );
        let zero = Bootstrap::from_str(p, &file("max-unauthenticated = 0")).unwrap_err();
        assert_eq!(
            zero.to_string(),
            "config file x.toml: [netconf] max-unauthenticated must be at least 1"
        );
        assert!(matches!(
            Bootstrap::from_str(p, &file("login-grace-time = -1")),
            Err(BootstrapError::Parse { .. })
        ));
    }

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDjQgHuRBcORJhEtkkzYTqFySMzhoFrG01BmV7thEpJU a@b";
}
