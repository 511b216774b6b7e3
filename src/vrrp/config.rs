//! Typed configuration of VRRP (`hotlease-vrrp`): the groups, read from a
//! validated tree.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use yang2::data::DataTree;

use crate::config::{addrs, flag, leaf, parse, req, top, ConfigError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VrrpVersion {
    V2,
    V3,
}

/// `vrrp/group`.
#[derive(Debug, Clone, PartialEq)]
pub struct VrrpGroup {
    pub interface: String,
    pub vrid: u8,
    pub virtual_ips: Vec<Ipv4Addr>,
    pub priority: u8,
    pub preempt: bool,
    pub preempt_delay_s: u32,
    pub advertise_interval_ms: u32,
    pub version: VrrpVersion,
    pub checksum_mode: ChecksumMode,
    pub use_virtual_mac: bool,
}

/// `vrrp/group/checksum-mode`: the VRRPv3 IPv4 checksum form sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumMode {
    /// Preceded by the IPv4 pseudo-header (keepalived, FRR).
    PseudoHeader,
    /// The VRRP message alone (RFC 9568).
    Rfc9568,
}

/// The groups of a validated tree, by (interface, vrid).
pub fn groups(tree: &DataTree<'static>) -> Result<BTreeMap<(String, u8), VrrpGroup>, ConfigError> {
    let mut groups = BTreeMap::new();
    for g in top(tree, "/hotlease-vrrp:vrrp/group") {
        let preempt = g.children().find(|c| c.schema().name() == "preempt");
        let group = VrrpGroup {
            interface: req(&g, "interface")?,
            vrid: req(&g, "vrid")?,
            virtual_ips: addrs(&g, "virtual-ip")?,
            priority: req(&g, "priority")?,
            preempt: match &preempt {
                Some(p) => parse(p, "enabled")?.unwrap_or(true),
                None => true,
            },
            preempt_delay_s: match &preempt {
                Some(p) => parse(p, "delay")?.unwrap_or(0),
                None => 0,
            },
            advertise_interval_ms: req(&g, "advertise-interval")?,
            version: match leaf(&g, "version").as_deref() {
                Some("v2") => VrrpVersion::V2,
                _ => VrrpVersion::V3,
            },
            checksum_mode: match leaf(&g, "checksum-mode").as_deref() {
                Some("rfc9568") => ChecksumMode::Rfc9568,
                _ => ChecksumMode::PseudoHeader,
            },
            use_virtual_mac: flag(&g, "use-virtual-mac")?,
        };
        groups.insert((group.interface.clone(), group.vrid), group);
    }
    Ok(groups)
}
