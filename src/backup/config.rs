//! Typed configuration of the hot backup (`hotlease-remote-backup`): the
//! SSL policies, the remote backup services (the channel to the partner)
//! and the remote backup profiles (which VRRP group a set of pools
//! follows), read from a validated tree.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use yang2::data::DataTree;

use crate::config::{bad, leaf, leaves, req, top, ConfigError};

/// `remote-backup-service`, `remote-backup-profile`, `ssl-policy`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackupConfig {
    pub ssl_policies: BTreeMap<String, SslPolicy>,
    pub services: BTreeMap<String, BackupService>,
    pub profiles: BTreeMap<String, BackupProfile>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SslPolicy {
    pub name: String,
    pub certificate: String,
    pub private_key: String,
    pub trusted_ca: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BackupService {
    pub name: String,
    pub ssl_policy: Option<String>,
    pub peer: Ipv4Addr,
    pub source: Ipv4Addr,
    pub port: u16,
    /// `keepalive-interval` (default 1 s in the YANG).
    pub keepalive_interval: Duration,
    /// `dead-time` (default 3 s), longer than the keepalive interval.
    pub dead_time: Duration,
    /// `ack-timeout` (default 300 ms): the peer's acknowledgements come
    /// within it, or the profiles are degraded.
    pub ack_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BackupProfile {
    pub name: String,
    pub vrrp_interface: String,
    pub vrid: u8,
    pub backup_id: u16,
    pub service: String,
    pub dhcp_server: bool,
}

impl TryFrom<&DataTree<'static>> for BackupConfig {
    type Error = ConfigError;

    fn try_from(tree: &DataTree<'static>) -> Result<BackupConfig, ConfigError> {
        let mut cfg = BackupConfig::default();
        for s in top(tree, "/hotlease-remote-backup:ssl-policy") {
            let p = SslPolicy {
                name: req(&s, "name")?,
                certificate: req(&s, "certificate")?,
                private_key: req(&s, "private-key")?,
                trusted_ca: leaf(&s, "trusted-ca"),
            };
            cfg.ssl_policies.insert(p.name.clone(), p);
        }
        for s in top(tree, "/hotlease-remote-backup:remote-backup-service") {
            let peer = s
                .children()
                .find(|c| c.schema().name() == "peer")
                .ok_or_else(|| bad(&s, "peer is missing".into()))?;
            let svc = BackupService {
                name: req(&s, "name")?,
                ssl_policy: leaf(&s, "ssl-policy"),
                peer: req(&peer, "address")?,
                source: req(&peer, "source")?,
                port: req(&peer, "port")?,
                keepalive_interval: Duration::from_millis(req(&s, "keepalive-interval")?),
                dead_time: Duration::from_millis(req(&s, "dead-time")?),
                ack_timeout: Duration::from_millis(req(&s, "ack-timeout")?),
            };
            cfg.services.insert(svc.name.clone(), svc);
        }
        for p in top(tree, "/hotlease-remote-backup:remote-backup-profile") {
            let vrrp = p
                .children()
                .find(|c| c.schema().name() == "vrrp")
                .ok_or_else(|| bad(&p, "vrrp is missing".into()))?;
            let prof = BackupProfile {
                name: req(&p, "name")?,
                vrrp_interface: req(&vrrp, "interface")?,
                vrid: req(&vrrp, "vrid")?,
                backup_id: req(&p, "backup-id")?,
                service: req(&p, "remote-backup-service")?,
                dhcp_server: leaves(&p, "service-type")
                    .iter()
                    .any(|t| t == "dhcp-server"),
            };
            cfg.profiles.insert(prof.name.clone(), prof);
        }
        Ok(cfg)
    }
}
