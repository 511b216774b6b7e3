//! The fingerprint of a profile's pools: a u64 both routers compute from
//! the configuration of the pools bound to the profile and exchange in
//! the hello, so that a pair whose pool configuration differs is told so
//! instead of mirroring leases that mean different things on each side.
//!
//! It must be the same on every build and platform, so it is the first
//! 8 bytes (big endian) of a SHA-256 over a canonical encoding defined
//! here, never std's `DefaultHasher` or `Debug` text:
//!
//! ```text
//! "hotlease-pools-v1"  count:u32
//! per pool, by name:   str(name) addrs(gateways) addr(mask) addr(network)
//!                      ranges(sections) ranges(excluded) addrs(dns-servers)
//!                      opt(str domain-name) u32(lease-time) opt(u32 renew)
//!                      opt(u32 rebind) opt(addr next-server) opt(str boot-file)
//!                      options: count:u32, per option code:u8 value
//!                      opt(addr server-identifier)
//!                      static-binds: count:u32, per bind addr str(mac)
//! str = len:u32 bytes; addr = 4 bytes; opt = 0 | 1 value;
//! value = 0 addrs | 1 str | 2 len:u32 bytes
//! ```
//!
//! Every pool leaf is covered except `remote-backup-profile` (which pools
//! are bound is what the fingerprint is of; the profile's name is local).
//! A new pool leaf must be added here (the exhaustive destructuring below
//! does not compile until it is).

use std::net::Ipv4Addr;

use sha2::{Digest, Sha256};

use crate::dhcp::config::{DhcpConfig, OptionValue, Pool};

/// The fingerprint of the pools of `dhcp` bound to profile `profile`.
pub fn of_profile(dhcp: &DhcpConfig, profile: &str) -> u64 {
    // BTreeMap: the pools come sorted by name, whatever the config order
    let pools: Vec<&Pool> = dhcp
        .pools
        .values()
        .map(|p| p.as_ref())
        .filter(|p| p.remote_backup_profile.as_deref() == Some(profile))
        .collect();
    of_pools(&pools)
}

/// The fingerprint of `pools` (sorted by name here).
pub fn of_pools(pools: &[&Pool]) -> u64 {
    let mut pools = pools.to_vec();
    pools.sort_by(|a, b| a.name.cmp(&b.name));
    let mut e = Enc(Vec::new());
    e.0.extend_from_slice(b"hotlease-pools-v1");
    e.len(pools.len());
    for p in pools {
        e.pool(p);
    }
    let d = Sha256::digest(&e.0);
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b)
}

struct Enc(Vec<u8>);

impl Enc {
    fn len(&mut self, n: usize) {
        self.u32(u32::try_from(n).unwrap_or(u32::MAX));
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.0.extend_from_slice(b);
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    fn addr(&mut self, a: Ipv4Addr) {
        self.0.extend_from_slice(&a.octets());
    }
    fn addrs(&mut self, a: &[Ipv4Addr]) {
        self.len(a.len());
        for &x in a {
            self.addr(x);
        }
    }
    fn ranges(&mut self, r: &[(Ipv4Addr, Ipv4Addr)]) {
        self.len(r.len());
        for &(s, e) in r {
            self.addr(s);
            self.addr(e);
        }
    }
    fn opt<T>(&mut self, v: Option<T>, f: impl FnOnce(&mut Self, T)) {
        match v {
            None => self.0.push(0),
            Some(v) => {
                self.0.push(1);
                f(self, v);
            }
        }
    }

    fn pool(&mut self, p: &Pool) {
        let Pool {
            name,
            gateways,
            mask,
            network,
            sections,
            excluded,
            dns_servers,
            domain_name,
            lease_time_s,
            renew_time_s,
            rebind_time_s,
            next_server,
            boot_file,
            options,
            server_identifier,
            remote_backup_profile: _,
            static_binds,
            shared_network,
        } = p;
        self.str(name);
        self.addrs(gateways);
        self.addr(*mask);
        self.addr(*network);
        self.ranges(sections);
        self.ranges(excluded);
        self.addrs(dns_servers);
        self.opt(domain_name.as_deref(), Self::str);
        self.u32(*lease_time_s);
        self.opt(*renew_time_s, Self::u32);
        self.opt(*rebind_time_s, Self::u32);
        self.opt(*next_server, Self::addr);
        self.opt(boot_file.as_deref(), Self::str);
        self.len(options.len());
        for (code, v) in options {
            self.0.push(*code);
            match v {
                OptionValue::Addresses(a) => {
                    self.0.push(0);
                    self.addrs(a);
                }
                OptionValue::Text(t) => {
                    self.0.push(1);
                    self.str(t);
                }
                OptionValue::Hex(h) => {
                    self.0.push(2);
                    self.bytes(h);
                }
            }
        }
        self.opt(*server_identifier, Self::addr);
        self.len(static_binds.len());
        for (a, mac) in static_binds {
            self.addr(*a);
            self.str(mac);
        }
        // added later: only when set, so that the fingerprint of a
        // configuration without it stays what it was
        if let Some(s) = shared_network {
            self.0.push(b'S');
            self.str(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(name: &str, net: &str) -> Pool {
        Pool {
            remote_backup_profile: Some("rbp".into()),
            sections: vec![(
                "10.0.0.10".parse().expect("addr"),
                "10.0.0.20".parse().expect("addr"),
            )],
            ..Pool::for_test(name, net)
        }
    }

    fn cfg(pools: Vec<Pool>) -> DhcpConfig {
        DhcpConfig::for_test(pools)
    }

    #[test]
    fn equal_configs_equal_fingerprints_and_order_is_irrelevant() {
        let a = pool("a", "10.0.0.0");
        let b = pool("b", "10.0.1.0");
        let f1 = of_pools(&[&a, &b]);
        assert_eq!(f1, of_pools(&[&b, &a]));
        assert_eq!(f1, of_profile(&cfg(vec![b.clone(), a.clone()]), "rbp"));
        // the profile's (local) name does not count, only the pools bound
        let mut a2 = a.clone();
        a2.remote_backup_profile = Some("other".into());
        let mut b2 = b.clone();
        b2.remote_backup_profile = Some("other".into());
        assert_eq!(f1, of_profile(&cfg(vec![a2, b2]), "other"));
        // unbound pools do not count
        let mut c = pool("c", "10.0.2.0");
        c.remote_backup_profile = None;
        assert_eq!(f1, of_profile(&cfg(vec![a, b, c]), "rbp"));
    }

    /// A fixed value: the fingerprint is the same on every build and
    /// platform (both routers of a pair may run different builds). The
    /// value was checked against Python's hashlib over the encoding of
    /// the module header, built by hand.
    #[test]
    fn fingerprint_is_stable() {
        assert_eq!(of_pools(&[]), of_pools(&[]));
        let a = pool("a", "10.0.0.0");
        assert_eq!(format!("{:016x}", of_pools(&[&a])), STABLE_A);
    }
    const STABLE_A: &str = "b28edbfc62f779bd";

    type Change = Box<dyn Fn(&mut Pool)>;

    #[test]
    fn any_field_change_changes_the_fingerprint() {
        let base = pool("a", "10.0.0.0");
        let f = of_pools(&[&base]);
        let ip = |s: &str| -> Ipv4Addr { s.parse().expect("addr") };
        let changes: Vec<(&str, Change)> = vec![
            ("name", Box::new(|p| p.name = "b".into())),
            (
                "gateways",
                Box::new(move |p| p.gateways = vec![ip("10.0.0.1")]),
            ),
            ("mask", Box::new(move |p| p.mask = ip("255.255.0.0"))),
            ("network", Box::new(move |p| p.network = ip("10.0.9.0"))),
            (
                "sections",
                Box::new(move |p| p.sections.push((ip("10.0.0.30"), ip("10.0.0.31")))),
            ),
            (
                "excluded",
                Box::new(move |p| p.excluded = vec![(ip("10.0.0.11"), ip("10.0.0.11"))]),
            ),
            (
                "dns",
                Box::new(move |p| p.dns_servers = vec![ip("8.8.8.8")]),
            ),
            ("domain", Box::new(|p| p.domain_name = Some("x".into()))),
            ("lease", Box::new(|p| p.lease_time_s += 1)),
            ("renew", Box::new(|p| p.renew_time_s = Some(100))),
            ("rebind", Box::new(|p| p.rebind_time_s = Some(100))),
            (
                "next-server",
                Box::new(move |p| p.next_server = Some(ip("10.0.0.2"))),
            ),
            ("boot-file", Box::new(|p| p.boot_file = Some("pxe".into()))),
            (
                "option text",
                Box::new(|p| {
                    p.options.insert(66, OptionValue::Text("t".into()));
                }),
            ),
            (
                "option hex",
                Box::new(|p| {
                    p.options.insert(66, OptionValue::Hex(vec![0x74]));
                }),
            ),
            (
                "option addrs",
                Box::new(move |p| {
                    p.options
                        .insert(66, OptionValue::Addresses(vec![ip("1.2.3.4")]));
                }),
            ),
            (
                "server-id",
                Box::new(move |p| p.server_identifier = Some(ip("10.0.0.1"))),
            ),
            (
                "static",
                Box::new(move |p| {
                    p.static_binds
                        .insert(ip("10.0.0.15"), "00:11:22:33:44:55".into());
                }),
            ),
        ];
        let mut seen = std::collections::BTreeSet::new();
        for (what, change) in changes {
            let mut p = base.clone();
            change(&mut p);
            let g = of_pools(&[&p]);
            assert_ne!(g, f, "changing {what} left the fingerprint unchanged");
            assert!(
                seen.insert(g),
                "changing {what} gave another change's fingerprint"
            );
        }
        // a field boundary moved is a different encoding
        let mut p = base.clone();
        p.domain_name = Some("ab".into());
        let mut q = base;
        q.domain_name = Some("a".into());
        q.boot_file = Some("b".into());
        assert_ne!(of_pools(&[&p]), of_pools(&[&q]));
    }
}
