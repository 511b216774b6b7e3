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
    #[error("config file {path}: [netconf] recovery-user '{user}' is not a [[netconf.user]]")]
    UnknownRecoveryUser { path: PathBuf, user: String },
    #[error("config file {path}: [netconf] {key} must be at least 1")]
    ZeroLimit { path: PathBuf, key: &'static str },
    #[error("config file {path}: [netconf] login-delay-max must be a number of seconds from 0.001 to 3600")]
    BadLoginDelay { path: PathBuf },
    #[error("config file {path}: user '{user}': group '{group}' is not a NACM group name (RFC 8341: not empty, not starting with '*')")]
    BadGroup {
        path: PathBuf,
        user: String,
        group: String,
    },
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
    #[serde(default)]
    pub dhcp: DhcpSettings,
    /// `[metrics]`: absent, no metrics endpoint.
    pub metrics: Option<MetricsSettings>,
}

/// `[metrics]`: the Prometheus endpoint (`crate::metrics`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// Where `GET /metrics` is served: an IP address and a port.
    #[serde(deserialize_with = "metrics_listen")]
    pub listen: SocketAddr,
}

/// `listen` as an operator can read the refusal: what is allowed, and
/// what was given.
fn metrics_listen<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    match text.parse::<SocketAddr>() {
        Ok(a) if a.port() != 0 => Ok(a),
        _ => Err(serde::de::Error::custom(format!(
            "[metrics] listen must be an IP address and a port 1..65535, \
             as \"127.0.0.1:9417\" or \"[::1]:9417\"; got \"{text}\""
        ))),
    }
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

/// `[dhcp]`: how the DHCP runtime runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DhcpSettings {
    /// SCHED_RR priority (1..=99) of the threads an ACK passes through
    /// (the DHCP actor, the lease writer, the ACK release), so that a CPU
    /// busy with NETCONF replies does not delay ACKs; below VRRP's (10 by
    /// default) so that a DHCP flood never delays advertisements. The lease
    /// writer and the ACK release run at it, the actor one below
    /// (`dhcp::actor_priority`). 0 keeps the normal scheduler.
    #[serde(default = "dhcp_realtime_priority_by_default")]
    pub realtime_priority: u8,
}

fn dhcp_realtime_priority_by_default() -> u8 {
    5
}

impl Default for DhcpSettings {
    fn default() -> Self {
        DhcpSettings {
            realtime_priority: dhcp_realtime_priority_by_default(),
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
    /// Notifications of the NETCONF stream kept for replay (RFC 5277
    /// startTime), in the storage directory across restarts; 0 keeps none
    /// (the stream then announces no replay support).
    #[serde(default = "notification_replay_by_default")]
    pub notification_replay: usize,
    /// Failed logins from one address (IPv6: one /64) before its login
    /// attempts are spaced out (`netconf::throttle`); 0 throttles from the
    /// first failure.
    #[serde(default = "login_throttle_after_by_default")]
    pub login_throttle_after: u32,
    /// Seconds (fractions allowed): the longest spacing between two login
    /// attempts of a throttled address; the spacing doubles from 0.5 s
    /// (or this, if smaller) with each further failure.
    #[serde(default = "login_delay_max_by_default")]
    pub login_delay_max: f64,
    /// NETCONF sessions at once, all users together (a connection may
    /// carry several); beyond it the subsystem request is refused.
    #[serde(default = "max_sessions_by_default")]
    pub max_sessions: usize,
    /// NETCONF sessions at once of one user.
    #[serde(default = "max_sessions_per_user_by_default")]
    pub max_sessions_per_user: usize,
    /// Seconds without a complete message from the client after which its
    /// NETCONF session is closed; 0 (the default) never closes one.
    #[serde(default)]
    pub idle_timeout: u64,
    /// RFC 8341 §2.5 recovery session: this user (one of `user`) is never
    /// restricted by NACM, so that a wrong rule cannot lock every operator
    /// out. Absent: every user is under NACM.
    #[serde(default)]
    pub recovery_user: Option<String>,
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

// A day of a busy router's state changes and commits; a record is a few
// hundred bytes, the log at most twice this many records on disk.
fn notification_replay_by_default() -> usize {
    10_000
}

fn login_throttle_after_by_default() -> u32 {
    5
}

fn login_delay_max_by_default() -> f64 {
    30.0
}

fn max_sessions_by_default() -> usize {
    256
}

fn max_sessions_per_user_by_default() -> usize {
    128
}

/// `[[netconf.user]]`: one NETCONF user with a password hash and/or keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct User {
    pub name: String,
    pub password_hash: Option<String>,
    #[serde(default)]
    pub authorized_keys: Vec<String>,
    /// NACM groups the "transport" puts this user in (RFC 8341 §3.3.2
    /// external groups, as a RADIUS or TACACS+ server would give them):
    /// used besides the `nacm/groups` of running when its
    /// `enable-external-groups` is true (the YANG default).
    #[serde(default)]
    pub groups: Vec<String>,
}

impl NetconfSettings {
    /// Each user's `groups`, for NACM's external groups.
    pub fn user_groups(&self) -> std::collections::HashMap<String, Vec<String>> {
        self.user
            .iter()
            .filter(|u| !u.groups.is_empty())
            .map(|u| (u.name.clone(), u.groups.clone()))
            .collect()
    }
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
            ("max-sessions", n.max_sessions as u64),
            ("max-sessions-per-user", n.max_sessions_per_user as u64),
        ] {
            if value == 0 {
                errors.push(BootstrapError::ZeroLimit {
                    path: path.to_path_buf(),
                    key,
                });
            }
        }
        if !(0.001..=3600.0).contains(&n.login_delay_max) {
            errors.push(BootstrapError::BadLoginDelay {
                path: path.to_path_buf(),
            });
        }
        if b.netconf.user.is_empty() {
            errors.push(BootstrapError::NoUsers {
                path: path.to_path_buf(),
            });
        }
        // with no user at all, that is the one problem to fix (a fresh
        // install: the packaged file names its recovery user already)
        if let Some(r) = b
            .netconf
            .recovery_user
            .as_ref()
            .filter(|_| !b.netconf.user.is_empty())
        {
            if !b.netconf.user.iter().any(|u| &u.name == r) {
                errors.push(BootstrapError::UnknownRecoveryUser {
                    path: path.to_path_buf(),
                    user: r.clone(),
                });
            }
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
            // group-name-type of ietf-netconf-acm
            for g in u
                .groups
                .iter()
                .filter(|g| g.is_empty() || g.starts_with('*'))
            {
                errors.push(BootstrapError::BadGroup {
                    path: path.to_path_buf(),
                    user: u.name.clone(),
                    group: g.clone(),
                });
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
    fn recovery_user_must_be_a_user() {
        let p = Path::new("x.toml");
        let text = |r: &str| {
            format!("[netconf]\nlisten = \"127.0.0.1:8830\"\nhost-key = \"/tmp/k\"\nrecovery-user = \"{r}\"\n[[netconf.user]]\nname = \"admin\"\npassword-hash = \"$6$x$y\"\n[storage]\ndir = \"/tmp\"\n")
        };
        let b = Bootstrap::from_str(p, &text("admin")).expect("valid");
        assert_eq!(b.netconf.recovery_user.as_deref(), Some("admin"));
        let e = Bootstrap::from_str(p, &text("root")).unwrap_err();
        assert!(
            matches!(e, BootstrapError::UnknownRecoveryUser { .. }),
            "{e}"
        );
        // without any user, only that is said (the packaged file)
        let no_user = "[netconf]\nlisten = \"127.0.0.1:8830\"\nhost-key = \"/tmp/k\"\nrecovery-user = \"admin\"\n[storage]\ndir = \"/tmp\"\n";
        let problems = Bootstrap::problems(p, no_user).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            matches!(problems[0], BootstrapError::NoUsers { .. }),
            "{problems:?}"
        );
    }

    #[test]
    fn user_groups_are_read_and_checked() {
        let p = Path::new("/etc/hotlease/hotleased.toml");
        let file = |groups: &str| {
            format!("[netconf]\nlisten = \"127.0.0.1:8830\"\nhost-key = \"/tmp/k\"\n[[netconf.user]]\nname = \"alice\"\npassword-hash = \"$6$x$y\"\n{groups}[[netconf.user]]\nname = \"bob\"\npassword-hash = \"$6$x$y\"\n[storage]\ndir = \"/tmp\"\n")
        };
        let b = Bootstrap::from_str(p, &file("groups = [\"ops\", \"noc\"]\n")).unwrap();
        let g = b.netconf.user_groups();
        assert_eq!(
            g.get("alice"),
            Some(&vec!["ops".to_string(), "noc".to_string()])
        );
        assert!(!g.contains_key("bob"));
        for bad in ["\"\"", "\"*\"", "\"*ops\""] {
            let e = Bootstrap::from_str(p, &file(&format!("groups = [{bad}]\n"))).unwrap_err();
            assert!(matches!(e, BootstrapError::BadGroup { .. }), "{bad}: {e}");
            assert!(e.to_string().contains("user 'alice': group"), "{e}");
        }
        let e = Bootstrap::from_str(p, &file("groups = \"ops\"\n")).unwrap_err();
        assert!(matches!(e, BootstrapError::Parse { .. }), "{e}");
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
        assert_eq!(b.netconf.notification_replay, 10_000);
        let n = &b.netconf;
        assert_eq!((n.login_throttle_after, n.login_delay_max), (5, 30.0));
        assert_eq!(
            (n.max_sessions, n.max_sessions_per_user, n.idle_timeout),
            (256, 128, 0)
        );
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
        let b = Bootstrap::from_str(
            p,
            &file(
                "login-throttle-after = 0\nlogin-delay-max = 0.05\nmax-sessions = 4\n\
                 max-sessions-per-user = 2\nidle-timeout = 60",
            ),
        )
        .unwrap();
        let n = &b.netconf;
        assert_eq!((n.login_throttle_after, n.login_delay_max), (0, 0.05));
        assert_eq!(
            (n.max_sessions, n.max_sessions_per_user, n.idle_timeout),
            (4, 2, 60)
        );
        for bad in ["0", "0.0", "-1.0", "nan", "inf", "3601.0"] {
            let e = Bootstrap::from_str(p, &file(&format!("login-delay-max = {bad}")))
                .unwrap_err()
                .to_string();
            assert!(e.contains("login-delay-max must be"), "{bad}: {e}");
        }
        let zero = Bootstrap::from_str(p, &file("max-sessions-per-user = 0")).unwrap_err();
        assert!(zero
            .to_string()
            .contains("max-sessions-per-user must be at least 1"));
    }

    #[test]
    fn metrics_listen_is_optional_and_checked() {
        let p = Path::new("x.toml");
        let file = |metrics: &str| {
            format!(
                "[netconf]\nlisten = \"127.0.0.1:8830\"\nhost-key = \"/tmp/k\"\n\
                 [[netconf.user]]\nname = \"admin\"\nauthorized-keys = [\"{KEY}\"]\n\
                 [storage]\ndir = \"/tmp\"\n{metrics}"
            )
        };
        assert!(Bootstrap::from_str(p, &file("")).unwrap().metrics.is_none());
        let b = Bootstrap::from_str(p, &file("[metrics]\nlisten = \"127.0.0.1:9417\"\n")).unwrap();
        assert_eq!(
            b.metrics.unwrap().listen,
            "127.0.0.1:9417".parse::<SocketAddr>().unwrap()
        );
        for bad in [
            "localhost:9417",
            "127.0.0.1",
            "127.0.0.1:0",
            "127.0.0.1:70000",
        ] {
            let e = Bootstrap::from_str(p, &file(&format!("[metrics]\nlisten = \"{bad}\"\n")))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("line 10")
                    && e.contains("[metrics] listen must be an IP address and a port")
                    && e.contains(&format!("got \"{bad}\"")),
                "{e}"
            );
        }
        let e = Bootstrap::from_str(p, &file("[metrics]\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen"), "{e}");
    }

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDjQgHuRBcORJhEtkkzYTqFySMzhoFrG01BmV7thEpJU a@b";
}
