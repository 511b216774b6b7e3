//! Typed configuration, the whole of it: the validated YANG trees turned
//! into plain Rust values (`TryFrom<&DataTree>`), which the runtimes consume
//! without knowing libyang. Each subsystem owns its part and how it is read
//! from the tree (`dhcp::config`, `vrrp::config`, `backup::config`); this
//! module puts them together, and holds what they share: the refusal of a
//! configuration (`ConfigError`, which the northbound turns into an
//! `<rpc-error>`) and the readers of validated data nodes.
//!
//! Defaults come from the YANG modules: libyang fills them in during
//! validation, so every leaf with a default is present here and no default
//! is repeated in Rust.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::str::FromStr;
use std::sync::Arc;

use yang2::data::{Data, DataNodeRef, DataTree};

use crate::backup::config::BackupConfig;
use crate::dhcp::config::DhcpConfig;
use crate::vrrp::config::VrrpGroup;
use crate::yang::xml_path;

/// The whole configuration of the daemon.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    pub vrrp: BTreeMap<(String, u8), VrrpGroup>,
    pub dhcp: DhcpConfig,
    pub backup: BackupConfig,
}

/// A configuration refused by a subsystem: the node at fault, as an XML
/// instance-identifier (`/dhcps:dhcp-server/dhcps:ip-pool[dhcps:name='a']`),
/// an optional machine-readable tag and a message for the operator. The
/// northbound answers it as an `<rpc-error>` (error-path, error-app-tag,
/// error-message); nothing here knows NETCONF.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    pub kind: Refusal,
    pub path: String,
    pub app_tag: Option<String>,
    pub message: String,
}

/// Why a configuration is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A value the subsystem cannot use (a bad range, a missing leaf).
    Invalid,
    /// Valid values that a rule or the host refuses (overlapping pools,
    /// missing capabilities).
    Refused,
}

impl ConfigError {
    pub fn invalid(path: String, message: impl Into<String>) -> ConfigError {
        ConfigError {
            kind: Refusal::Invalid,
            path,
            app_tag: None,
            message: message.into(),
        }
    }

    pub fn refused(path: String, message: impl Into<String>) -> ConfigError {
        ConfigError {
            kind: Refusal::Refused,
            path,
            app_tag: None,
            message: message.into(),
        }
    }

    pub fn with_app_tag(mut self, tag: &str) -> ConfigError {
        self.app_tag = Some(tag.to_string());
        self
    }
}

pub(crate) type Node<'a> = DataNodeRef<'a, 'static>;

pub(crate) fn children<'a>(n: &Node<'a>, name: &'a str) -> impl Iterator<Item = Node<'a>> + 'a {
    n.children().filter(move |c| c.schema().name() == name)
}

pub(crate) fn leaf(n: &Node<'_>, name: &str) -> Option<String> {
    n.children()
        .find(|c| c.schema().name() == name)
        .and_then(|c| c.value_canonical())
}

pub(crate) fn leaves(n: &Node<'_>, name: &str) -> Vec<String> {
    n.children()
        .filter(|c| c.schema().name() == name)
        .filter_map(|c| c.value_canonical())
        .collect()
}

/// A value of `n` that cannot be used.
pub(crate) fn bad(n: &Node<'_>, msg: String) -> ConfigError {
    ConfigError::invalid(xml_path(&n.path()), msg)
}

pub(crate) fn parse<T: FromStr>(n: &Node<'_>, name: &str) -> Result<Option<T>, ConfigError> {
    match leaf(n, name) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| bad(n, format!("{name}: cannot use value '{v}'"))),
    }
}

pub(crate) fn req<T: FromStr>(n: &Node<'_>, name: &str) -> Result<T, ConfigError> {
    parse(n, name)?.ok_or_else(|| bad(n, format!("{name} is missing")))
}

pub(crate) fn addrs(n: &Node<'_>, name: &str) -> Result<Vec<Ipv4Addr>, ConfigError> {
    leaves(n, name)
        .iter()
        .map(|v| {
            v.parse()
                .map_err(|_| bad(n, format!("{name}: '{v}' is not an IPv4 address")))
        })
        .collect()
}

pub(crate) fn flag(n: &Node<'_>, name: &str) -> Result<bool, ConfigError> {
    Ok(parse::<bool>(n, name)?.unwrap_or(false))
}

pub(crate) fn top<'a>(tree: &'a DataTree<'static>, path: &str) -> Vec<Node<'a>> {
    tree.find_xpath(path)
        .map(|set| set.collect())
        .unwrap_or_default()
}

impl TryFrom<&DataTree<'static>> for Config {
    type Error = ConfigError;

    /// Build the typed configuration from a *validated* tree (defaults
    /// present). Errors name the offending node.
    fn try_from(tree: &DataTree<'static>) -> Result<Config, ConfigError> {
        Ok(Config {
            vrrp: crate::vrrp::config::groups(tree)?,
            dhcp: DhcpConfig::try_from(tree)?,
            backup: BackupConfig::try_from(tree)?,
        })
    }
}

impl Config {
    /// This configuration with the named pools replaced by those found in
    /// `trees` (absent from all: deleted). Only those pools are converted, so a
    /// commit touching one pool of thousands pays for that one.
    pub fn with_pools(
        &self,
        trees: &[DataTree<'static>],
        names: &std::collections::BTreeSet<String>,
    ) -> Result<Config, ConfigError> {
        let mut cfg = self.clone();
        for name in names {
            cfg.dhcp.pools.remove(name);
        }
        for tree in trees {
            for p in top(tree, "/hotlease-dhcp-server:dhcp-server/ip-pool") {
                if leaf(&p, "name").is_some_and(|n| names.contains(&n)) {
                    let pool = crate::dhcp::config::pool(&p)?;
                    cfg.dhcp.pools.insert(pool.name.clone(), Arc::new(pool));
                }
            }
        }
        Ok(cfg)
    }
}
