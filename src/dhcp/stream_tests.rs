//! A streamed `<get>` of the lease table (issue 11) against the usual
//! path (the state rendered whole, parsed by libyang, merged with running,
//! filtered, printed): the same reply for the same data, byte for byte,
//! and one libyang parses.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use super::leases::{Lease, LeaseState, Origin, PoolCounts};
use super::snapshot::Snapshot;
use super::{Reader, NS};
use crate::config::{Config, ConfigError, Selected, StateReader, Subsystem};
use crate::northbound::ops::{Filter, Operation, Reply};
use crate::northbound::store::Store;
use crate::northbound::Northbound;
use crate::xml::{self, NC_NS};
use crate::yang::WithDefaults;

/// The production reader, without its stream: the usual path.
#[derive(Debug)]
struct Whole(Reader);

impl StateReader for Whole {
    fn state_xml_of(&self, selected: Option<&[Selected]>) -> String {
        self.0.state_xml_of(selected)
    }
    fn costly(&self, selected: Option<&[Selected]>) -> bool {
        self.0.costly(selected)
    }
}

/// The DHCP subsystem's reads over a snapshot the test fills.
struct Dhcp {
    snapshot: Arc<Mutex<Snapshot>>,
    stream: bool,
}

impl Dhcp {
    fn reader(&self) -> Reader {
        Reader {
            counters: Arc::default(),
            snapshot: self.snapshot.clone(),
        }
    }
}

impl Subsystem for Dhcp {
    fn name(&self) -> &'static str {
        "dhcp"
    }
    fn prepare(&mut self, _old: &Config, _new: &Config) -> Result<(), Vec<ConfigError>> {
        Ok(())
    }
    fn apply(&mut self, _old: &Config, _new: &Config) {}
    fn namespaces(&self) -> &'static [&'static str] {
        &[NS]
    }
    fn state_xml_of(&self, selected: Option<&[Selected]>) -> String {
        self.reader().state_xml_of(selected)
    }
    fn state_reader(&self) -> Option<Arc<dyn StateReader>> {
        Some(if self.stream {
            Arc::new(self.reader())
        } else {
            Arc::new(Whole(self.reader()))
        })
    }
}

const POOLS: &str = r#"<ip-pool><name>lan</name><gateway>10.1.0.1</gateway><mask>255.255.0.0</mask><section><start>10.1.0.10</start><end>10.1.255.250</end></section></ip-pool><ip-pool><name>wifi</name><gateway>10.2.0.1</gateway><mask>255.255.0.0</mask><section><start>10.2.0.10</start><end>10.2.255.250</end></section></ip-pool>"#;

fn booted(snapshot: &Arc<Mutex<Snapshot>>, stream: bool) -> (Northbound, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut nb = Northbound::boot(
        Store::new(dir.path()).unwrap(),
        vec![Box::new(Dhcp {
            snapshot: snapshot.clone(),
            stream,
        })],
    )
    .unwrap();
    let rpc = |body: &str| {
        crate::netconf::rpc::decode(
            xml::parse(&format!(
                r#"<rpc message-id="1" xmlns="{NC_NS}">{body}</rpc>"#
            ))
            .unwrap(),
        )
        .operation
        .unwrap()
    };
    nb.execute(
        1,
        rpc(&format!(
            r#"<edit-config><target><candidate/></target><config><dhcp-server xmlns="{NS}">{POOLS}</dhcp-server></config></edit-config>"#
        )),
    )
    .unwrap();
    nb.execute(1, rpc("<commit/>")).unwrap();
    (nb, dir)
}

/// Hostnames a client may send: markup, framing markers, characters XML
/// cannot carry, blanks, nothing.
const HOSTNAMES: &[&str] = &[
    "plain",
    "a&b<c>d\"e'f",
    "]]>]]>",
    "\u{1}ctl\ttab\r\n",
    "bad\u{FFFE}\u{FFFF}char",
    "  two spaces  ",
    "   ",
    "",
    "ünïcödé 名前 🙂",
];

/// `n` leases in pools lan and wifi (and one of a pool removed since),
/// with odd hostnames and client-ids, live and expired offers.
fn filled(n: u32) -> Arc<Mutex<Snapshot>> {
    let now = super::server::now_unix();
    let mut s = Snapshot::default();
    s.set_pools(
        [
            ("lan".to_string(), 65_000, PoolCounts::default()),
            ("wifi".to_string(), 65_000, PoolCounts::default()),
        ]
        .into_iter(),
    );
    for i in 0..n {
        let pool = match i % 7 {
            0 => "wifi",
            5 if i % 2 == 1 => "gone & <removed>",
            _ => "lan",
        };
        let net = if pool == "wifi" { 2 } else { 1 };
        let ip = Ipv4Addr::new(10, net, (i / 200) as u8, 10 + (i % 200) as u8);
        let state = [
            LeaseState::Bound,
            LeaseState::Released,
            LeaseState::Declined,
        ][(i % 3) as usize];
        let l = Arc::new(Lease {
            ip,
            pool: pool.into(),
            hw: vec![2, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8, 7],
            client_id: match i % 4 {
                0 => None,
                1 => Some(Vec::new()),
                _ => Some(vec![0xff, (i >> 8) as u8, i as u8]),
            },
            hostname: (i % 5 != 0).then(|| HOSTNAMES[(i as usize) % HOSTNAMES.len()].to_string()),
            state,
            lifetime: if i % 11 == 0 { u32::MAX } else { 3600 },
            expires: now + 3600,
            origin: if i % 2 == 0 {
                Origin::Local
            } else {
                Origin::Peer
            },
        });
        match i % 13 {
            // an offer on a free address, live or past its hold
            3 | 4 => {
                let o = Arc::new(Lease {
                    state: LeaseState::Offered,
                    expires: if i % 13 == 3 { now + 60 } else { now - 60 },
                    ..(*l).clone()
                });
                s.set(ip, None, Some(&o));
            }
            _ => s.set(ip, Some(&l), None),
        }
    }
    Arc::new(Mutex::new(s))
}

fn subtree(body: &str) -> Option<Filter> {
    Some(Filter::Subtree(
        xml::parse(&format!(r#"<filter xmlns="{NC_NS}">{body}</filter>"#)).unwrap(),
    ))
}

fn xpath(select: &str) -> Option<Filter> {
    Some(Filter::XPath {
        select: select.into(),
        namespaces: vec![("d".into(), NS.into())],
    })
}

/// The reads that stream the table (or one pool's leases).
fn streamed_reads() -> Vec<(&'static str, Option<Filter>, WithDefaults)> {
    vec![
        ("no filter", None, WithDefaults::Explicit),
        ("no filter, report-all", None, WithDefaults::ReportAll),
        (
            "no filter, report-all-tagged",
            None,
            WithDefaults::ReportAllTagged,
        ),
        ("no filter, trim", None, WithDefaults::Trim),
        (
            "dhcp-server",
            subtree(&format!(r#"<dhcp-server xmlns="{NS}"/>"#)),
            WithDefaults::Explicit,
        ),
        (
            "lease",
            subtree(&format!(
                r#"<dhcp-server xmlns="{NS}"><lease/></dhcp-server>"#
            )),
            WithDefaults::Explicit,
        ),
        (
            "lease, statistics",
            subtree(&format!(
                r#"<dhcp-server xmlns="{NS}"><statistics/><lease/></dhcp-server>"#
            )),
            WithDefaults::Explicit,
        ),
        (
            "lease, ip-pool wifi",
            subtree(&format!(
                r#"<dhcp-server xmlns="{NS}"><lease/><ip-pool><name>wifi</name></ip-pool></dhcp-server>"#
            )),
            WithDefaults::ReportAll,
        ),
        (
            "lan's leases",
            subtree(&format!(
                r#"<dhcp-server xmlns="{NS}"><lease><pool> lan </pool></lease></dhcp-server>"#
            )),
            WithDefaults::Explicit,
        ),
        (
            "a removed pool's leases",
            subtree(&format!(
                r#"<dhcp-server xmlns="{NS}"><lease><pool>gone &amp; &lt;removed&gt;</pool></lease></dhcp-server>"#
            )),
            WithDefaults::Explicit,
        ),
        (
            "no pool's leases",
            subtree(&format!(
                r#"<dhcp-server xmlns="{NS}"><lease><pool>none</pool></lease></dhcp-server>"#
            )),
            WithDefaults::Explicit,
        ),
        (
            "XPath dhcp-server",
            xpath("/d:dhcp-server"),
            WithDefaults::Explicit,
        ),
        (
            "XPath lease",
            xpath("/d:dhcp-server/d:lease"),
            WithDefaults::Explicit,
        ),
        (
            "XPath wifi's leases",
            xpath("/d:dhcp-server/d:lease[d:pool='wifi']"),
            WithDefaults::Explicit,
        ),
        (
            "XPath no pool's leases",
            xpath("/d:dhcp-server/d:lease[d:pool='none']"),
            WithDefaults::Explicit,
        ),
    ]
}

fn get(nb: &mut Northbound, filter: Option<Filter>, wd: WithDefaults) -> Reply {
    nb.execute(
        1,
        Operation::Get {
            filter,
            with_defaults: wd,
        },
    )
    .unwrap()
}

/// Every read that streams gives the reply of the usual path, byte for
/// byte: a small table (listed in address order) and a large one (chunk
/// order), odd hostnames and client-ids, offers, a removed pool.
#[test]
fn streamed_replies_equal_the_usual_path() {
    for n in [40, 6_000] {
        let snapshot = filled(n);
        let (mut usual, _d1) = booted(&snapshot, false);
        let (mut streaming, _d2) = booted(&snapshot, true);
        for (what, filter, wd) in streamed_reads() {
            let Reply::Data(want) = get(&mut usual, filter.clone(), wd) else {
                panic!("{what}: the usual path answers whole");
            };
            let Reply::Stream(got) = get(&mut streaming, filter, wd) else {
                panic!("{what}: not streamed");
            };
            let got = got.collect();
            if got != want {
                let at = got
                    .bytes()
                    .zip(want.bytes())
                    .position(|(a, b)| a != b)
                    .unwrap_or(got.len().min(want.len()));
                panic!(
                    "{what} ({n} leases): differs at {at}:\nstreamed …{}\nusual    …{}",
                    &got[at.saturating_sub(200)..(at + 200).min(got.len())],
                    &want[at.saturating_sub(200)..(at + 200).min(want.len())]
                );
            }
            if what.contains("no pool") {
                assert!(got.is_empty(), "{what}: {got}");
            } else {
                assert!(got.contains("<lease>"), "{what}");
            }
        }
    }
}

/// Reads finer than whole entries, and NACM that may take something
/// out, keep the usual path.
#[test]
fn finer_reads_are_not_streamed() {
    let snapshot = filled(40);
    let (mut nb, _d) = booted(&snapshot, true);
    for filter in [
        subtree(&format!(
            r#"<dhcp-server xmlns="{NS}"><lease><pool>lan</pool><state/></lease></dhcp-server>"#
        )),
        subtree(&format!(
            r#"<dhcp-server xmlns="{NS}"><lease><state>bound</state></lease></dhcp-server>"#
        )),
        subtree(&format!(
            r#"<dhcp-server xmlns="{NS}"><lease><ip-address>10.1.0.11</ip-address></lease></dhcp-server>"#
        )),
        subtree(&format!(
            r#"<dhcp-server xmlns="{NS}"><lease-store-failed>false</lease-store-failed><lease/></dhcp-server>"#
        )),
        subtree(r#"<dhcp-server xmlns=""><lease/></dhcp-server>"#),
        subtree(&format!(
            r#"<dhcp-server xmlns="{NS}"><statistics/></dhcp-server>"#
        )),
        xpath("/d:dhcp-server/d:lease[d:state='bound']"),
        xpath("/d:dhcp-server/d:lease/d:hostname"),
        xpath("//d:lease"),
    ] {
        let r = get(&mut nb, filter.clone(), WithDefaults::Explicit);
        assert!(matches!(r, Reply::Data(_)), "{filter:?}: {r:?}");
    }
}

/// A streamed reply is one libyang parses with the schema (strict: every
/// element known, every value of its type), however odd the hostnames.
#[test]
fn a_streamed_reply_parses_with_libyang() {
    let snapshot = filled(300);
    let (mut nb, _d) = booted(&snapshot, true);
    let Reply::Stream(d) = get(&mut nb, None, WithDefaults::Explicit) else {
        panic!("not streamed");
    };
    let xml = d.collect();
    let tree = crate::yang::parse_state_xml(&xml).expect("libyang parses the streamed reply");
    let leases = crate::yang::find_xpath(&tree, "/hotlease-dhcp-server:dhcp-server/lease")
        .unwrap()
        .len();
    let shown = (0..300).filter(|i| i % 13 != 4).count();
    assert_eq!(leases, shown, "every lease and live offer");
    let hostnames: Vec<String> =
        crate::yang::find_xpath(&tree, "/hotlease-dhcp-server:dhcp-server/lease/hostname")
            .unwrap()
            .iter()
            .filter_map(|n| n.value_canonical())
            .collect();
    assert!(
        hostnames.iter().any(|h| h == "a&b<c>d\"e'f"),
        "{hostnames:?}"
    );
    assert!(hostnames.iter().any(|h| h == "]]>]]>"));
    assert!(hostnames.iter().any(|h| h == "?ctl?tab??"));
    assert!(hostnames.iter().any(|h| h == "bad??char"));
}
