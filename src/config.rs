//! Typed configuration, the whole of it: the validated YANG trees turned
//! into plain Rust values (`TryFrom<&DataTree>`), which the runtimes consume
//! without knowing libyang. Each subsystem owns its part and how it is read
//! from the tree (`dhcp::config`, `vrrp::config`, `backup::config`); this
//! module puts them together, and holds the contract between the northbound
//! and the subsystems: the `Subsystem` trait the northbound commits through,
//! the refusal of a configuration (`ConfigError`, which the northbound turns
//! into an `<rpc-error>`), the lists a commit handles entry by entry
//! (`ENTRY_LISTS`), and the readers of validated data nodes the parts share.
//! So the northbound never names a runtime, and no runtime imports the
//! northbound or `netconf`.
//!
//! Defaults come from the YANG modules: libyang fills them in during
//! validation, so every leaf with a default is present here and no default
//! is repeated in Rust.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::str::FromStr;

use yang2::data::{DataNodeRef, DataTree};

use crate::backup::config::BackupConfig;
use crate::dhcp::config::DhcpConfig;
use crate::vrrp::config::VrrpGroup;
use crate::yang::{xml_path, Entry, EntryList};

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
    crate::yang::find_xpath(tree, path).unwrap_or_default()
}

/// A runtime that receives configuration from the northbound's commits
/// (DHCP, VRRP, backup). The northbound drives it through this trait and
/// never names a runtime; the daemon hands it the runtimes at start.
///
/// `prepare` checks the new configuration and must not change anything;
/// `apply` is called only when every subsystem prepared successfully.
pub trait Subsystem: Send {
    fn name(&self) -> &'static str;
    fn prepare(&mut self, old: &Config, new: &Config) -> Result<(), Vec<ConfigError>>;
    fn apply(&mut self, old: &Config, new: &Config);
    /// Operational state as XML top-level elements of the subsystem's
    /// module (keys included so it merges into the configuration), empty
    /// when there is none. Read from a snapshot: it must not block.
    fn state_xml(&self) -> String {
        String::new()
    }
    /// The state of the children of the module's top node that a read
    /// selects (`None`: everything, as `state_xml`), for a subsystem to
    /// answer with key lookups. It may hold more than selected (the filter
    /// is applied to it), never less.
    fn state_xml_of(&self, selected: Option<&[Selected]>) -> String {
        let _ = selected;
        self.state_xml()
    }
    /// A handle that reads the subsystem's state from any thread (its
    /// snapshot), so that a `<get>` is answered off the northbound actor
    /// and never holds up another session's commit. `None`: the state is
    /// read on the actor (`state_xml_of`), which suits a small one.
    fn state_reader(&self) -> Option<std::sync::Arc<dyn StateReader>> {
        None
    }
    /// The namespaces of the top-level nodes `state_xml` produces: a
    /// `<get>` whose filter selects none of them does not ask for it.
    /// Empty: unknown, always asked.
    fn namespaces(&self) -> &'static [&'static str] {
        &[]
    }
    /// Carry out a YANG rpc of the subsystem's module, if it is one: the
    /// answer comes later, so that the northbound goes on meanwhile.
    fn call(&mut self, _rpc: &Rpc) -> Option<RpcFuture> {
        None
    }
}

/// A subsystem's state as any thread reads it (see
/// [`Subsystem::state_reader`]); the same answer as `state_xml_of`.
pub trait StateReader: Send + Sync + std::fmt::Debug {
    fn state_xml_of(&self, selected: Option<&[Selected]>) -> String;
    /// Whether reading `selected` walks a large table (it is then read on
    /// a background thread; a key lookup is answered at once).
    fn costly(&self, selected: Option<&[Selected]>) -> bool {
        selected.is_none()
    }
    /// The entries of the large list `list` (a child of the module's top
    /// node) whose leaves have the values `matches`, to be written into a
    /// reply piece by piece instead of through libyang (`None`: this list
    /// or this selection is not streamed; the read takes the usual path).
    /// Taken in O(1)/O(pieces): the writing happens later, on the session.
    fn entries(&self, list: &str, matches: &[(String, String)]) -> Option<Box<dyn Entries>> {
        let _ = (list, matches);
        None
    }
    /// The list it streams (see [`StateReader::entries`]): the name of
    /// the module's top node and of the list under it.
    fn streamed(&self) -> Option<(&'static str, &'static str)> {
        None
    }
}

/// List entries written straight into a reply (see
/// [`StateReader::entries`]): each piece is XML the module's schema
/// accepts as it stands, as libyang would print it (no namespace on the
/// entries: they are written inside their parent).
pub trait Entries: Send + std::fmt::Debug {
    /// Append the next entries (at most [`PIECE_ENTRIES`]) to `out`;
    /// false when there are none left (`out` unchanged).
    fn next_piece(&mut self, out: &mut String) -> bool;
}

/// The most entries one piece of [`Entries`] holds: what a streamed reply
/// holds in memory at once (about 300 bytes each).
pub const PIECE_ENTRIES: usize = 512;

/// A child of a module's top node that a read selects, with the values
/// its leaves must have (a subtree filter's content matches, an XPath
/// filter's `[leaf='value']` predicates; all of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    pub name: String,
    pub matches: Vec<(String, String)>,
}

/// A YANG rpc of a subsystem's module, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rpc {
    /// `hotlease-remote-backup:batch-backup`.
    BatchBackup {
        service: String,
        service_type: String,
    },
}

/// Why an rpc failed: the input element at fault (an `invalid-value`),
/// or the operation itself (`operation-failed`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcFailure {
    pub element: Option<&'static str>,
    pub message: String,
}

/// The outcome of an rpc: its output as XML elements of the module.
pub type RpcFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, RpcFailure>> + Send>>;

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

/// The lists whose entries a commit converts (and the northbound parses and
/// validates) one by one; see `yang::EntryList`. A subsystem lists one
/// here when its YANG rules never compare two entries (it checks those
/// rules itself, like `DhcpConfig::check_cross_pool`).
pub const ENTRY_LISTS: &[EntryList] = &[crate::dhcp::config::POOLS];

impl Config {
    /// The rules that compare list entries with each other, which YANG
    /// does not check on a commit of `ENTRY_LISTS` entries (and checks too
    /// slowly otherwise): each subsystem's own.
    pub fn check(&self) -> Result<(), Vec<ConfigError>> {
        self.dhcp.check_cross_pool()
    }

    /// This configuration with the named entries replaced by those found
    /// in `trees` (absent from all: deleted). Only those entries are
    /// converted, so a commit touching one pool of thousands pays for that
    /// one.
    pub fn with_entries(
        &self,
        trees: &[DataTree<'static>],
        entries: &BTreeSet<Entry>,
    ) -> Result<Config, ConfigError> {
        let mut cfg = self.clone();
        let keys = |list: &EntryList| -> BTreeSet<String> {
            entries
                .iter()
                .filter(|e| e.list == *list)
                .map(|e| e.key.clone())
                .collect()
        };
        let pools = keys(&crate::dhcp::config::POOLS);
        if !pools.is_empty() {
            cfg.dhcp = cfg.dhcp.with_pools(trees, &pools)?;
        }
        Ok(cfg)
    }
}
