//! Runtime form of an `ip-pool`: the typed configuration reduced to what the
//! handler needs on every packet (integer ranges, pre-encoded options, the
//! static bindings indexed by hardware address). Built once per commit;
//! the split-brain [`Half`] is set on it by the actor.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use super::config::{OptionValue, Pool};

/// Option codes the handler fills in itself.
pub mod code {
    pub const SUBNET_MASK: u8 = 1;
    pub const ROUTER: u8 = 3;
    pub const DNS: u8 = 6;
    pub const HOSTNAME: u8 = 12;
    pub const DOMAIN_NAME: u8 = 15;
    pub const REQUESTED_IP: u8 = 50;
    pub const LEASE_TIME: u8 = 51;
    pub const OVERLOAD: u8 = 52;
    pub const MESSAGE_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const MESSAGE: u8 = 56;
    pub const RENEWAL_TIME: u8 = 58;
    pub const REBINDING_TIME: u8 = 59;
    pub const CLIENT_ID: u8 = 61;
    pub const CLIENT_FQDN: u8 = 81;
    pub const RELAY_AGENT_INFO: u8 = 82;
    pub const END: u8 = 255;
}

/// One of two halves of a pool's addresses, for split-brain allocation:
/// while the channel to the partner is down and both routers may be
/// master, each takes new addresses from its own half first (the sync
/// actor decides which side is which).
///
/// The halves are the even and the odd address values. Both routers
/// compute them alike from the address alone (no configuration, no
/// table); parity splits every section, excluded range and run of free
/// addresses about evenly, which a split of the range in two does not (a
/// pool whose low addresses are used or excluded would leave one side with
/// far fewer); and the cursor scan stays amortised O(1), stepping over one
/// address of the other half per address of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Half {
    Even,
    Odd,
}

impl Half {
    pub fn of(ip: Ipv4Addr) -> Half {
        if u32::from(ip) % 2 == 0 {
            Half::Even
        } else {
            Half::Odd
        }
    }

    /// As the YANG state names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Half::Even => "even",
            Half::Odd => "odd",
        }
    }

    pub fn contains(self, ip: Ipv4Addr) -> bool {
        Half::of(ip) == self
    }

    pub fn other(self) -> Half {
        match self {
            Half::Even => Half::Odd,
            Half::Odd => Half::Even,
        }
    }
}

/// A pool ready for serving.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolRt {
    pub name: String,
    pub network: u32,
    pub mask: u32,
    /// Dynamic ranges, inclusive, sorted.
    pub sections: Vec<(u32, u32)>,
    /// Never handed out, inclusive; merged (sorted, disjoint), since the
    /// configured ranges may overlap.
    pub excluded: Vec<(u32, u32)>,
    pub gateways: Vec<Ipv4Addr>,
    pub server_id: Option<Ipv4Addr>,
    pub lease_time: u32,
    pub t1: Option<u32>,
    pub t2: Option<u32>,
    pub siaddr: Option<Ipv4Addr>,
    pub boot_file: Option<String>,
    /// Options sent in every reply (built-ins overridden by user options),
    /// by code, already encoded.
    pub options: BTreeMap<u8, Vec<u8>>,
    /// Static bindings: hardware address (lowercase `aa:bb:..`) → address.
    pub static_by_mac: HashMap<String, Ipv4Addr>,
    /// Static bindings: address → hardware address.
    pub static_by_ip: BTreeMap<Ipv4Addr, String>,
    pub profile: Option<String>,
    /// Pools with the same name serve one link.
    pub shared_network: Option<String>,
    /// Split brain: new addresses from this half first, from the other
    /// only when it has none left (`None`: no split). Set by the actor
    /// from its profile, not by configuration.
    pub split: Option<Half>,
    /// `utilization-threshold`, percent.
    pub threshold: u8,
}

impl From<&Pool> for PoolRt {
    fn from(p: &Pool) -> PoolRt {
        let mask = u32::from(p.mask);
        let mut options = BTreeMap::new();
        options.insert(code::SUBNET_MASK, p.mask.octets().to_vec());
        if !p.gateways.is_empty() {
            options.insert(code::ROUTER, addrs(&p.gateways));
        }
        if !p.dns_servers.is_empty() {
            options.insert(code::DNS, addrs(&p.dns_servers));
        }
        if let Some(d) = &p.domain_name {
            options.insert(code::DOMAIN_NAME, d.as_bytes().to_vec());
        }
        for (c, v) in &p.options {
            let bytes = match v {
                OptionValue::Addresses(a) => addrs(a),
                OptionValue::Text(t) => t.as_bytes().to_vec(),
                OptionValue::Hex(h) => h.clone(),
            };
            options.insert(*c, bytes);
        }
        let mut sections: Vec<(u32, u32)> = p
            .sections
            .iter()
            .map(|(s, e)| (u32::from(*s), u32::from(*e)))
            .collect();
        sections.sort_unstable();
        let excluded = merge(
            p.excluded
                .iter()
                .map(|(s, e)| (u32::from(*s), u32::from(*e)))
                .collect(),
        );
        let (t1, t2) = if p.lease_time_s == u32::MAX {
            (None, None)
        } else {
            (
                Some(p.renew_time_s.unwrap_or(p.lease_time_s / 2)),
                Some(
                    p.rebind_time_s
                        .unwrap_or((u64::from(p.lease_time_s) * 7 / 8) as u32),
                ),
            )
        };
        PoolRt {
            name: p.name.clone(),
            network: u32::from(p.network) & mask,
            mask,
            sections,
            excluded,
            gateways: p.gateways.clone(),
            server_id: p.server_identifier,
            lease_time: p.lease_time_s,
            t1,
            t2,
            siaddr: p.next_server,
            boot_file: p.boot_file.clone(),
            shared_network: p.shared_network.clone(),
            options,
            static_by_mac: p
                .static_binds
                .iter()
                .map(|(ip, mac)| (mac.to_ascii_lowercase(), *ip))
                .collect(),
            static_by_ip: p
                .static_binds
                .iter()
                .map(|(ip, mac)| (*ip, mac.to_ascii_lowercase()))
                .collect(),
            profile: p.remote_backup_profile.clone(),
            split: None,
            threshold: p.utilization_threshold,
        }
    }
}

/// Inclusive ranges sorted, with overlapping and adjacent ones joined:
/// counting over the result counts every address once.
fn merge(mut ranges: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
    ranges.sort_unstable();
    let mut out: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
    for (s, e) in ranges {
        match out.last_mut() {
            Some(last) if s <= last.1.saturating_add(1) => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

fn addrs(a: &[Ipv4Addr]) -> Vec<u8> {
    a.iter().flat_map(|ip| ip.octets()).collect()
}

impl PoolRt {
    /// Whether `ip` is in the pool subnet.
    pub fn in_subnet(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask == self.network
    }

    fn in_ranges(ranges: &[(u32, u32)], a: u32) -> bool {
        ranges.iter().any(|(s, e)| *s <= a && a <= *e)
    }

    /// Whether `ip` may be handed out dynamically: inside a section, not
    /// excluded, not a gateway, not the server identifier.
    pub fn dynamic(&self, ip: Ipv4Addr) -> bool {
        let a = u32::from(ip);
        Self::in_ranges(&self.sections, a)
            && !Self::in_ranges(&self.excluded, a)
            && !self.gateways.contains(&ip)
            && self.server_id != Some(ip)
    }

    /// Whether both own the same addresses (`owns` answers alike).
    pub fn same_addresses(&self, other: &PoolRt) -> bool {
        self.sections == other.sections
            && self.excluded == other.excluded
            && self.gateways == other.gateways
            && self.server_id == other.server_id
            && self.static_by_ip.keys().eq(other.static_by_ip.keys())
    }

    /// Whether a lease on `ip` still belongs to this pool (dynamic or
    /// statically bound).
    pub fn owns(&self, ip: Ipv4Addr) -> bool {
        self.dynamic(ip) || self.static_by_ip.contains_key(&ip)
    }

    /// Addresses that can be handed out dynamically. Sections never
    /// overlap (a YANG rule) and `excluded` is merged, so each address is
    /// counted once.
    pub fn total(&self) -> u64 {
        let size = |s: u32, e: u32| u64::from(e.saturating_sub(s)) + 1;
        let mut n: u64 = 0;
        for &(s, e) in &self.sections {
            n += size(s, e);
            for &(xs, xe) in &self.excluded {
                let (lo, hi) = (s.max(xs), e.min(xe));
                if lo <= hi {
                    n = n.saturating_sub(size(lo, hi));
                }
            }
        }
        // the server identifier may also be a gateway: count it once
        let mut reserved: Vec<Ipv4Addr> = self
            .gateways
            .iter()
            .copied()
            .chain(self.server_id)
            .collect();
        reserved.sort_unstable();
        reserved.dedup();
        let extra = reserved
            .into_iter()
            .filter(|ip| {
                let a = u32::from(*ip);
                Self::in_ranges(&self.sections, a) && !Self::in_ranges(&self.excluded, a)
            })
            .count() as u64;
        n.saturating_sub(extra)
    }

    /// The next section address after `a` (wrapping to the first section),
    /// for the allocation cursor.
    pub fn next_in_sections(&self, a: u32) -> Option<u32> {
        let first = self.sections.first()?.0;
        for (s, e) in &self.sections {
            if a < *s {
                return Some(*s);
            }
            if a < *e {
                return Some(a + 1);
            }
        }
        Some(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn pool() -> Pool {
        Pool {
            gateways: vec!["10.0.0.1".parse().unwrap()],
            sections: vec![
                ("10.0.0.100".parse().unwrap(), "10.0.0.109".parse().unwrap()),
                ("10.0.0.10".parse().unwrap(), "10.0.0.12".parse().unwrap()),
            ],
            excluded: vec![("10.0.0.101".parse().unwrap(), "10.0.0.102".parse().unwrap())],
            ..Pool::for_test("p1", "10.0.0.0")
        }
    }

    #[test]
    fn totals_and_cursor() {
        let p = PoolRt::from(&pool());
        assert_eq!(p.total(), 13 - 2);
        assert_eq!(p.t1, Some(1800));
        assert_eq!(p.t2, Some(3150));
        let a = |s: &str| u32::from(s.parse::<Ipv4Addr>().unwrap());
        assert_eq!(p.next_in_sections(a("10.0.0.11")), Some(a("10.0.0.12")));
        assert_eq!(p.next_in_sections(a("10.0.0.12")), Some(a("10.0.0.100")));
        assert_eq!(p.next_in_sections(a("10.0.0.109")), Some(a("10.0.0.10")));
        assert!(!p.dynamic("10.0.0.101".parse().unwrap()));
        assert!(p.dynamic("10.0.0.103".parse().unwrap()));
    }

    /// Issue 9 item 12: overlapping excluded ranges were subtracted twice
    /// (u64 underflow: a panic in debug builds, 2^64 - 1 shown as
    /// 4294967295 in release builds).
    #[test]
    fn overlapping_exclusions_count_once() {
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        let mut cfg = Pool {
            sections: vec![(ip("10.0.0.10"), ip("10.0.0.30"))],
            excluded: vec![
                (ip("10.0.0.10"), ip("10.0.0.20")),
                (ip("10.0.0.15"), ip("10.0.0.25")),
            ],
            ..Pool::for_test("p1", "10.0.0.0")
        };
        // .10-.30 is 21 addresses, .10-.25 excluded: .26-.30 remain
        let p = PoolRt::from(&cfg);
        assert_eq!(p.total(), 5);
        assert_eq!(
            p.excluded,
            [(u32::from(ip("10.0.0.10")), u32::from(ip("10.0.0.25")))]
        );
        // one range inside another, a duplicate, an adjacent one
        cfg.excluded = vec![
            (ip("10.0.0.12"), ip("10.0.0.14")),
            (ip("10.0.0.11"), ip("10.0.0.20")),
            (ip("10.0.0.11"), ip("10.0.0.20")),
            (ip("10.0.0.21"), ip("10.0.0.21")),
        ];
        assert_eq!(PoolRt::from(&cfg).total(), 21 - 11);
        // a gateway that is also the server identifier is one address
        cfg.excluded = vec![];
        cfg.gateways = vec![ip("10.0.0.30")];
        cfg.server_identifier = Some(ip("10.0.0.30"));
        assert_eq!(PoolRt::from(&cfg).total(), 20);
    }
}
