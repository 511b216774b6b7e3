//! Typed configuration of the DHCP server (`hotlease-dhcp-server`): the
//! server leaves and the pools, read from a validated tree, and the rules
//! that compare a pool with every other pool (`check_cross_pool`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use yang2::data::DataTree;

use crate::config::{addrs, bad, children, flag, leaf, parse, req, top, ConfigError, Node};
use crate::yang::EntryList;

/// `dhcp-server`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DhcpConfig {
    pub all_interfaces: bool,
    pub interfaces: Vec<String>,
    pub decline_probation_s: u32,
    pub echo_client_id: bool,
    pub authoritative: bool,
    /// BOOTP requests (no message type) are answered from static bindings
    /// (RFC 1534) instead of dropped.
    pub bootp_static: bool,
    /// `ping-check`: the echo reply timeout in milliseconds when enabled
    /// (RFC 2131 §4.3.1: probe an address before offering it).
    pub ping_check_ms: Option<u16>,
    /// `lease-notifications`: every lease change is also a `lease-event`.
    pub lease_events: bool,
    /// Shared, so that copying a configuration of thousands of pools (each
    /// commit does) costs a pointer per pool, and a runtime can tell an
    /// unchanged pool by `Arc::ptr_eq`.
    pub pools: BTreeMap<String, Arc<Pool>>,
}

/// A user-defined DHCP option value.
#[derive(Debug, Clone, PartialEq)]
pub enum OptionValue {
    Addresses(Vec<Ipv4Addr>),
    Text(String),
    Hex(Vec<u8>),
}

/// `dhcp-server/ip-pool`.
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    pub name: String,
    pub gateways: Vec<Ipv4Addr>,
    pub mask: Ipv4Addr,
    /// Network address (from `network`, else the first gateway) and mask.
    pub network: Ipv4Addr,
    pub sections: Vec<(Ipv4Addr, Ipv4Addr)>,
    pub excluded: Vec<(Ipv4Addr, Ipv4Addr)>,
    pub dns_servers: Vec<Ipv4Addr>,
    pub domain_name: Option<String>,
    pub lease_time_s: u32,
    pub renew_time_s: Option<u32>,
    pub rebind_time_s: Option<u32>,
    pub next_server: Option<Ipv4Addr>,
    pub boot_file: Option<String>,
    pub options: BTreeMap<u8, OptionValue>,
    pub server_identifier: Option<Ipv4Addr>,
    pub remote_backup_profile: Option<String>,
    pub static_binds: BTreeMap<Ipv4Addr, String>,
    /// Pools of one link (a multi-netted segment behind one relay).
    pub shared_network: Option<String>,
    /// `utilization-threshold`, percent (pool-utilization notification).
    pub utilization_threshold: u8,
}

#[cfg(test)]
impl Pool {
    /// A pool with only a name and a /24 network, for tests to fill in with
    /// struct update syntax.
    pub(crate) fn for_test(name: &str, network: &str) -> Pool {
        Pool {
            name: name.into(),
            gateways: vec![],
            mask: Ipv4Addr::new(255, 255, 255, 0),
            network: network.parse().expect("test network"),
            sections: vec![],
            excluded: vec![],
            dns_servers: vec![],
            domain_name: None,
            lease_time_s: 3600,
            renew_time_s: None,
            rebind_time_s: None,
            next_server: None,
            boot_file: None,
            options: BTreeMap::new(),
            server_identifier: None,
            remote_backup_profile: None,
            static_binds: BTreeMap::new(),
            shared_network: None,
            utilization_threshold: 90,
        }
    }
}

impl DhcpConfig {
    /// These pools and the defaults of everything else, for tests.
    #[cfg(test)]
    pub(crate) fn for_test(pools: Vec<Pool>) -> DhcpConfig {
        DhcpConfig {
            pools: pools
                .into_iter()
                .map(|p| (p.name.clone(), Arc::new(p)))
                .collect(),
            ..Default::default()
        }
    }
}

fn ranges(n: &Node<'_>, name: &str) -> Result<Vec<(Ipv4Addr, Ipv4Addr)>, ConfigError> {
    let mut out = Vec::new();
    for r in children(n, name) {
        let start: Ipv4Addr = req(&r, "start")?;
        let end: Ipv4Addr = parse(&r, "end")?.unwrap_or(start);
        if u32::from(end) < u32::from(start) {
            return Err(bad(
                &r,
                format!("range {start}-{end} ends before it starts"),
            ));
        }
        out.push((start, end));
    }
    Ok(out)
}

fn hex_bytes(n: &Node<'_>, s: &str) -> Result<Vec<u8>, ConfigError> {
    let digits: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    if !digits.len().is_multiple_of(2) {
        return Err(bad(
            n,
            format!("hex value '{s}' has an odd number of digits"),
        ));
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&digits[i..i + 2], 16)
                .map_err(|_| bad(n, format!("bad hex value '{s}'")))
        })
        .collect()
}

pub(crate) fn pool(p: &Node<'_>) -> Result<Pool, ConfigError> {
    let name: String = req(p, "name")?;
    let gateways = addrs(p, "gateway")?;
    let mask: Ipv4Addr = req(p, "mask")?;
    let base: Ipv4Addr = match parse(p, "network")? {
        Some(n) => n,
        None => *gateways.first().ok_or_else(|| {
            bad(
                p,
                format!("pool {name}: neither network nor gateway is set"),
            )
        })?,
    };
    let network = Ipv4Addr::from(u32::from(base) & u32::from(mask));
    let mut options = BTreeMap::new();
    for o in children(p, "option") {
        let code: u8 = req(&o, "code")?;
        let ips = addrs(&o, "ip-address")?;
        let value = if !ips.is_empty() {
            OptionValue::Addresses(ips)
        } else if let Some(t) = leaf(&o, "text") {
            OptionValue::Text(t)
        } else if let Some(h) = leaf(&o, "hex") {
            OptionValue::Hex(hex_bytes(&o, &h)?)
        } else {
            return Err(bad(&o, format!("option {code} has no value")));
        };
        options.insert(code, value);
    }
    let mut static_binds = BTreeMap::new();
    for s in children(p, "static-bind") {
        let ip: Ipv4Addr = req(&s, "ip-address")?;
        let mac: String = req(&s, "mac-address")?;
        static_binds.insert(ip, mac);
    }
    Ok(Pool {
        gateways,
        mask,
        network,
        sections: ranges(p, "section")?,
        excluded: ranges(p, "excluded")?,
        dns_servers: addrs(p, "dns-server")?,
        domain_name: leaf(p, "domain-name"),
        lease_time_s: req(p, "lease-time")?,
        renew_time_s: parse(p, "renew-time")?,
        rebind_time_s: parse(p, "rebind-time")?,
        next_server: parse(p, "next-server")?,
        boot_file: leaf(p, "boot-file"),
        options,
        server_identifier: parse(p, "server-identifier")?,
        remote_backup_profile: leaf(p, "remote-backup-profile"),
        static_binds,
        shared_network: leaf(p, "shared-network"),
        utilization_threshold: req(p, "utilization-threshold")?,
        name,
    })
}

/// The pools, as a list whose entries are parsed, validated and converted
/// one by one: no YANG rule of a pool reads another pool (those rules are
/// `check_cross_pool`).
pub const POOLS: EntryList = EntryList {
    module: "hotlease-dhcp-server",
    namespace: super::NS,
    container: "dhcp-server",
    list: "ip-pool",
    key: "name",
};

impl DhcpConfig {
    /// This configuration with the named pools replaced by those found in
    /// `trees` (absent from all: deleted). Only those pools are converted.
    pub fn with_pools(
        &self,
        trees: &[DataTree<'static>],
        names: &BTreeSet<String>,
    ) -> Result<DhcpConfig, ConfigError> {
        let mut cfg = self.clone();
        for name in names {
            cfg.pools.remove(name);
        }
        for tree in trees {
            for p in top(tree, "/hotlease-dhcp-server:dhcp-server/ip-pool") {
                if leaf(&p, "name").is_some_and(|n| names.contains(&n)) {
                    let pool = pool(&p)?;
                    cfg.pools.insert(pool.name.clone(), Arc::new(pool));
                }
            }
        }
        Ok(cfg)
    }
}

impl TryFrom<&DataTree<'static>> for DhcpConfig {
    type Error = ConfigError;

    fn try_from(tree: &DataTree<'static>) -> Result<DhcpConfig, ConfigError> {
        let mut cfg = DhcpConfig::default();
        for d in top(tree, "/hotlease-dhcp-server:dhcp-server") {
            cfg.all_interfaces = flag(&d, "request-packet-all-interface")?;
            cfg.interfaces = children(&d, "interface")
                .filter_map(|i| leaf(&i, "name"))
                .collect();
            cfg.decline_probation_s = parse(&d, "decline-probation")?.unwrap_or(0);
            cfg.echo_client_id = parse(&d, "echo-client-id")?.unwrap_or(true);
            cfg.authoritative = parse(&d, "authoritative")?.unwrap_or(true);
            cfg.bootp_static = leaf(&d, "bootp").as_deref() == Some("static-bindings");
            cfg.lease_events = parse(&d, "lease-notifications")?.unwrap_or(false);
            for pc in children(&d, "ping-check") {
                if parse(&pc, "enabled")?.unwrap_or(false) {
                    cfg.ping_check_ms = Some(parse(&pc, "timeout")?.unwrap_or(500));
                }
            }
            for p in children(&d, "ip-pool") {
                let pool = pool(&p)?;
                cfg.pools.insert(pool.name.clone(), Arc::new(pool));
            }
        }
        Ok(cfg)
    }
}

/// XML instance-identifier of a pool (and optionally a node in it).
fn pool_path(pool: &str, rest: &str) -> String {
    let q = crate::yang::xpath_literal(pool);
    format!("/dhcps:dhcp-server/dhcps:ip-pool[dhcps:name={q}]{rest}")
}

fn cross_pool_error(app_tag: &str, message: &str, path: String) -> ConfigError {
    ConfigError::refused(path, message).with_app_tag(app_tag)
}

impl DhcpConfig {
    /// Rules that compare a pool with every other pool. YANG states them,
    /// but as `must` expressions libyang would evaluate them for every node
    /// of every pool on each commit (quadratic in the number of pools); here
    /// one sorted pass over all sections checks them in O(n log n).
    /// Own-pool cases are caught by the YANG `must`s first.
    pub fn check_cross_pool(&self) -> Result<(), Vec<ConfigError>> {
        let mut errors = Vec::new();
        // (start, end, pool) for every dynamic section, by start address.
        let mut sections: Vec<(u32, u32, &str)> = self
            .pools
            .values()
            .flat_map(|p| {
                p.sections
                    .iter()
                    .map(move |(s, e)| (u32::from(*s), u32::from(*e), p.name.as_str()))
            })
            .collect();
        sections.sort_unstable();
        // Sweep by start address, keeping the sections still open at the
        // current start: any open one of another pool overlaps.
        let mut flagged = std::collections::BTreeSet::new();
        let mut open: Vec<(u32, u32, &str)> = Vec::new();
        for &(start, end, pool) in &sections {
            open.retain(|(_, e, _)| *e >= start);
            for &(os, _, op) in &open {
                if op != pool {
                    flagged.insert((pool, start));
                    flagged.insert((op, os));
                }
            }
            open.push((start, end, pool));
        }
        for (pool, start) in flagged {
            errors.push(cross_pool_error(
                "section-overlap-other-pool",
                "a section must not overlap a section of another pool",
                pool_path(
                    pool,
                    &format!("/dhcps:section[dhcps:start='{}']", Ipv4Addr::from(start)),
                ),
            ));
        }
        // Whether another pool's section holds `addr`. Without overlaps (which
        // are reported above) only the last section starting at or below the
        // address can hold it.
        let in_other_section = |addr: Ipv4Addr, own: &str| -> bool {
            let a = u32::from(addr);
            let idx = sections.partition_point(|(s, _, _)| *s <= a);
            idx > 0 && {
                let (_, e, p) = sections[idx - 1];
                e >= a && p != own
            }
        };
        let mut bound: BTreeMap<Ipv4Addr, Vec<&str>> = BTreeMap::new();
        for p in self.pools.values() {
            for g in &p.gateways {
                if in_other_section(*g, &p.name) {
                    errors.push(cross_pool_error(
                        "gateway-in-section",
                        "a gateway address cannot lie inside a dynamic section",
                        pool_path(&p.name, &format!("/dhcps:gateway[.='{g}']")),
                    ));
                }
            }
            if let Some(sid) = p.server_identifier {
                if in_other_section(sid, &p.name) {
                    errors.push(cross_pool_error(
                        "server-identifier-in-section",
                        "the server-identifier cannot lie inside a dynamic section",
                        pool_path(&p.name, "/dhcps:server-identifier"),
                    ));
                }
            }
            for ip in p.static_binds.keys() {
                if in_other_section(*ip, &p.name) {
                    errors.push(cross_pool_error(
                        "static-bind-in-section",
                        "a static-bind address cannot lie inside a dynamic section",
                        pool_path(
                            &p.name,
                            &format!("/dhcps:static-bind[dhcps:ip-address='{ip}']"),
                        ),
                    ));
                }
                bound.entry(*ip).or_default().push(&p.name);
            }
        }
        for (ip, pools) in bound {
            if pools.len() > 1 {
                for pool in pools {
                    errors.push(cross_pool_error(
                        "static-bind-duplicate",
                        "an address can be statically bound in one pool only",
                        pool_path(
                            pool,
                            &format!("/dhcps:static-bind[dhcps:ip-address='{ip}']"),
                        ),
                    ));
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(name: &str, sections: &[(&str, &str)], gw: &str, binds: &[&str]) -> Pool {
        Pool {
            gateways: vec![gw.parse().unwrap()],
            sections: sections
                .iter()
                .map(|(s, e)| (s.parse().unwrap(), e.parse().unwrap()))
                .collect(),
            static_binds: binds
                .iter()
                .map(|b| (b.parse().unwrap(), "02:00:00:00:00:01".to_string()))
                .collect(),
            ..Pool::for_test(name, gw)
        }
    }

    fn dhcp(pools: Vec<Pool>) -> DhcpConfig {
        DhcpConfig::for_test(pools)
    }

    fn tags(r: Result<(), Vec<ConfigError>>) -> Vec<(String, String)> {
        r.err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.app_tag.unwrap_or_default(), e.path))
            .collect()
    }

    #[test]
    fn adjacent_sections_of_two_pools_are_fine() {
        let d = dhcp(vec![
            pool(
                "a",
                &[("10.1.1.10", "10.1.1.99")],
                "10.1.1.1",
                &["10.1.1.250"],
            ),
            pool(
                "b",
                &[("10.1.1.100", "10.1.1.200")],
                "10.1.1.2",
                &["10.1.1.251"],
            ),
        ]);
        assert!(d.check_cross_pool().is_ok());
    }

    #[test]
    fn overlaps_and_foreign_addresses_are_reported_on_the_right_nodes() {
        let d = dhcp(vec![
            pool(
                "a",
                &[("10.1.1.10", "10.1.1.100")],
                "10.1.1.1",
                &["10.1.1.250"],
            ),
            pool(
                "b",
                &[("10.1.1.50", "10.1.1.60")],
                "10.1.1.20",
                &["10.1.1.250", "10.1.1.55"],
            ),
        ]);
        let t = tags(d.check_cross_pool());
        let has = |tag: &str, path: &str| t.iter().any(|(a, p)| a == tag && p.contains(path));
        assert!(has(
            "section-overlap-other-pool",
            "[dhcps:name='a']/dhcps:section[dhcps:start='10.1.1.10']"
        ));
        assert!(has(
            "section-overlap-other-pool",
            "[dhcps:name='b']/dhcps:section[dhcps:start='10.1.1.50']"
        ));
        assert!(has("gateway-in-section", "[dhcps:name='b']/dhcps:gateway"));
        assert!(has(
            "static-bind-duplicate",
            "[dhcps:name='a']/dhcps:static-bind"
        ));
        assert!(has(
            "static-bind-duplicate",
            "[dhcps:name='b']/dhcps:static-bind"
        ));
    }

    #[test]
    fn five_thousand_disjoint_pools_pass() {
        let pools: Vec<Pool> = (0..5000u32)
            .map(|i| {
                let b = format!("10.{}.{}", i / 256, i % 256);
                let (s, e, g) = (format!("{b}.10"), format!("{b}.200"), format!("{b}.1"));
                pool(&format!("p{i}"), &[(&s, &e)], &g, &[])
            })
            .collect();
        assert!(dhcp(pools).check_cross_pool().is_ok());
    }
}
