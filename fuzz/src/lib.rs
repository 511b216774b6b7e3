//! The fuzz entry points: one function per target, taking the fuzzer's
//! bytes and panicking on any broken property. The libFuzzer targets in
//! `fuzz_targets/` call them; `tests/fuzz_corpus.rs` in the main crate
//! includes this file (`#[path]`) and replays every committed corpus
//! file through the same functions on the stable toolchain, in CI.
//!
//! Each entry starts from a fresh state (a new lease table, a new
//! decoder, the candidate reset to running) so that an input found by the
//! fuzzer reproduces on its own.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use bytes::BytesMut;
use hotlease::backup::wire::{self, LeaseUpdate, WireCodec, MAX_FRAME};
use hotlease::dhcp::config::{OptionValue, Pool};
use hotlease::dhcp::handler::{self, Ctx, Globals};
use hotlease::dhcp::leases::{
    decode_record, encode_record, Change, Lease, LeaseState, LeaseTable, Origin,
};
use hotlease::dhcp::pool::PoolRt;
use hotlease::netconf::framing::{self, Framing};
use hotlease::vrrp::packet as vrrp;
use tokio_util::codec::{Decoder as _, Encoder as _};

/// A target: its name and its entry function.
pub type Target = (&'static str, fn(&[u8]));

/// The targets, by name (the file names under `fuzz_targets/` and the
/// corpus directories under `corpus/`).
pub const TARGETS: &[Target] = &[
    ("dhcp", dhcp),
    ("vrrp", vrrp),
    ("netconf_framing", netconf_framing),
    ("netconf_rpc", netconf_rpc),
    ("bootstrap", bootstrap),
    ("backup_wire", backup_wire),
];

/// Separates the packets of one DHCP input, and the messages of one
/// NETCONF rpc input.
pub const SEP: &[u8] = b"\n--8<--\n";

fn split<'a>(data: &'a [u8], sep: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let r = rest?;
        match find(r, sep) {
            Some(i) => {
                rest = Some(&r[i + sep.len()..]);
                Some(&r[..i])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// Where `sep` first starts in `hay`. Compared only where its first byte
/// is: a comparison at every offset is a `bcmp` call each, which
/// libFuzzer's interceptor traces (an eighth of the rpc target's time).
fn find(hay: &[u8], sep: &[u8]) -> Option<usize> {
    let (&first, _) = sep.split_first()?;
    let mut from = 0;
    while let Some(i) = hay[from..].iter().position(|&b| b == first) {
        let at = from + i;
        if hay[at..].starts_with(sep) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("address literal")
}

// ------------------------------------------------------------------ dhcp

/// The pool the DHCP target serves (the one of `tests/dhcp_fuzz.rs`).
fn pool() -> Pool {
    Pool {
        name: "fz".into(),
        gateways: vec![ip("10.9.0.1")],
        mask: ip("255.255.255.0"),
        network: ip("10.9.0.0"),
        sections: vec![(ip("10.9.0.10"), ip("10.9.0.40"))],
        excluded: vec![(ip("10.9.0.20"), ip("10.9.0.21"))],
        dns_servers: vec![ip("10.9.0.53")],
        domain_name: Some("fuzz.test".into()),
        lease_time_s: 600,
        renew_time_s: None,
        rebind_time_s: None,
        next_server: Some(ip("10.9.0.2")),
        boot_file: Some("boot".into()),
        options: BTreeMap::from([(43, OptionValue::Hex(vec![1; 40]))]),
        server_identifier: Some(ip("10.9.0.1")),
        remote_backup_profile: None,
        static_binds: BTreeMap::from([(ip("10.9.0.200"), "02:00:00:00:00:07".to_string())]),
        shared_network: None,
        utilization_threshold: 90,
    }
}

const T0: u64 = 1_000_000;

/// A table with a lease in every state, for the seeds' clients
/// (chaddr 02:00:00:00:00:05..09, the clients of `tests/dhcp_fuzz.rs`), so
/// that one packet reaches renewals, releases and declines.
fn table() -> LeaseTable {
    let mut t = LeaseTable::new();
    let states = [
        LeaseState::Bound,
        LeaseState::Bound,
        LeaseState::Released,
        LeaseState::Declined,
        LeaseState::Expired,
    ];
    for (i, state) in states.into_iter().enumerate() {
        t.insert(Lease {
            ip: Ipv4Addr::new(10, 9, 0, 11 + i as u8),
            pool: "fz".into(),
            hw: vec![2, 0, 0, 0, 0, 5 + i as u8],
            client_id: (i % 2 == 1).then(|| vec![1, 2, 3, i as u8]),
            hostname: Some("host".into()),
            state,
            lifetime: 600,
            expires: T0 + 300,
            origin: if i == 4 { Origin::Peer } else { Origin::Local },
        });
    }
    t
}

/// DHCP: the first byte picks the server settings and the clock's step,
/// the rest is one or more packets separated by [`SEP`], each decoded and,
/// when it decodes, handled by the RFC 2131 handler on one lease table.
/// Every reply must decode, fit the client's maximum message size (the
/// relay agent option's echo aside), offer or ACK an address
/// of the pool, and every change the handler logs must survive the lease
/// store's record codec.
pub fn dhcp(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let g = Globals {
        decline_probation: [0, 1, 86400, u32::MAX][usize::from(flags & 3)],
        echo_client_id: flags & 4 != 0,
        authoritative: flags & 8 != 0,
        offer_hold: [0, 30][usize::from(flags >> 4 & 1)],
        bootp_static: flags & 0x40 != 0,
    };
    let step = u64::from(flags >> 5) * 97;
    let cfg = pool();
    let pool = PoolRt::from(&cfg);
    let mut table = table();
    let mut now = T0;
    for (i, p) in split(rest, SEP).take(16).enumerate() {
        let _ = handler::raw_option(p, 82);
        let Ok(m) = handler::decode(p) else { continue };
        let ctx = Ctx {
            now,
            default_sid: ip("10.9.0.1"),
            globals: &g,
            ciaddr_on_link: i % 3 == 0,
        };
        let out = handler::handle(&mut table, &pool, &ctx, &m, p);
        if let Some(r) = &out.reply {
            let reply = handler::decode(&r.bytes).expect("a reply decodes");
            // the relay agent option's echo goes to the relay, which
            // strips it: the client's reply must fit a frame
            let relay = handler::raw_option(&r.bytes, 82)
                .filter(|_| !reply.giaddr().is_unspecified())
                .map_or(0, |v| v.len() + 2 * v.len().div_ceil(255).max(1));
            let to_client = r.bytes.len() - relay;
            // within the client's maximum (option 57, at least 576, IP
            // and UDP headers included; one frame at most)
            let max = match m.opts().get(dhcproto::v4::OptionCode::MaxMessageSize) {
                Some(dhcproto::v4::DhcpOption::MaxMessageSize(n)) => usize::from(*n).max(576),
                _ => 576,
            };
            let cap = (max - 28).min(1472);
            assert!(
                to_client <= cap,
                "reply of {to_client} bytes to the client (at most {cap})"
            );
            let yi = reply.yiaddr();
            if !yi.is_unspecified() {
                let in_net = u32::from(yi) & u32::from(cfg.mask) == u32::from(cfg.network);
                assert!(in_net, "{:?} gives {yi}, outside the pool", r.kind);
            }
        }
        for c in &out.changes {
            record_roundtrip(c);
        }
        now += step;
        let (changes, _) = table.expire(now);
        for c in &changes {
            record_roundtrip(c);
        }
    }
}

/// A change the lease store writes reads back as itself.
fn record_roundtrip(c: &Change) {
    let line = encode_record(c);
    let back = decode_record(line.trim_end_matches('\n'));
    assert_eq!(back.as_ref(), Some(c), "record {line:?}");
}

// ------------------------------------------------------------------ vrrp

/// VRRP: the bytes are an IPv4 packet from the raw socket, and (after the
/// 20-byte header) a bare VRRP message. What decodes encodes back to a
/// packet that decodes to the same advertisement.
pub fn vrrp(data: &[u8]) {
    if let Ok(r) = vrrp::decode(data) {
        let _ = r.advert.interval_ms();
        let again = vrrp::decode(&vrrp::encode_ip(&r.advert, r.src, r.checksum, 7))
            .expect("an encoded advertisement decodes");
        assert_eq!(again.advert, r.advert);
        assert_eq!(again.checksum, r.checksum);
    }
    if data.len() >= 8 {
        let src = Ipv4Addr::new(data[0], data[1], data[2], data[3]);
        let dst = Ipv4Addr::new(data[4], data[5], data[6], data[7]);
        let _ = vrrp::decode_message(&data[8..], src, dst);
    }
}

// ------------------------------------------------------- netconf framing

/// Run the framing decoder over `stream` cut into the pieces `cuts` says,
/// switching to chunked after the first message when `switch` (the hello
/// exchange). Returns the messages and the error that ended the stream.
fn deframe(
    start: Framing,
    switch: bool,
    stream: &[u8],
    mut cuts: impl FnMut(usize) -> usize,
) -> (Vec<Vec<u8>>, Option<framing::FramingError>) {
    let mut d = framing::Decoder::default();
    d.set_framing(start);
    let mut out = Vec::new();
    let mut at = 0;
    while at < stream.len() {
        let n = cuts(stream.len() - at).clamp(1, stream.len() - at);
        d.push(&stream[at..at + n]);
        at += n;
        loop {
            match d.next_message() {
                Ok(Some(m)) => {
                    out.push(m);
                    if switch && out.len() == 1 {
                        d.set_framing(Framing::Chunked);
                    }
                }
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

/// NETCONF framing: the first byte picks the framing (end-of-message,
/// chunked, or end-of-message switching to chunked after the first
/// message) and seeds the random splits; the rest is the byte stream of a
/// session. Fed whole, byte by byte and in random splits, the decoder
/// must give the same messages and the same error; each message framed
/// again decodes to itself.
pub fn netconf_framing(data: &[u8]) {
    let Some((&mode, stream)) = data.split_first() else {
        return;
    };
    let (start, switch) = match mode % 3 {
        0 => (Framing::EndOfMessage, false),
        1 => (Framing::Chunked, false),
        _ => (Framing::EndOfMessage, true),
    };
    let whole = deframe(start, switch, stream, |left| left);
    let bytes = deframe(start, switch, stream, |_| 1);
    let mut x = u64::from(mode) | 0x9e37_79b9_7f4a_7c00;
    let random = deframe(start, switch, stream, |left| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        1 + (x % left.min(64) as u64) as usize
    });
    assert_eq!(whole, bytes, "whole vs byte by byte");
    assert_eq!(whole, random, "whole vs random splits");
    for m in &whole.0 {
        assert!(m.len() <= framing::MAX_MESSAGE);
        // An empty message (end-of-message framing allows one) has no
        // chunked form: RFC 6242 §4.2 asks for at least one chunk.
        if !m.is_empty() {
            let mut out = Vec::new();
            framing::encode(Framing::Chunked, m, &mut out);
            let (again, err) = deframe(Framing::Chunked, false, &out, |left| left);
            assert_eq!((again, err), (vec![m.clone()], None), "chunked again");
        }
        // end-of-message framing cannot carry a message that holds the
        // delimiter, nor one whose end and the delimiter make one early
        // (a message ending in "]]>")
        let mut eom = m.clone();
        eom.extend_from_slice(b"]]>]]>");
        if eom.windows(6).position(|w| w == b"]]>]]>") == Some(m.len()) {
            let mut out = Vec::new();
            framing::encode(Framing::EndOfMessage, m, &mut out);
            let (again, err) = deframe(Framing::EndOfMessage, false, &out, |left| left);
            assert_eq!(
                (again, err),
                (vec![m.clone()], None),
                "end-of-message again"
            );
        }
    }
}

// ----------------------------------------------------------- netconf rpc

/// The northbound the rpc target drives, and its storage directory.
type Booted = (hotlease::northbound::Northbound, tempfile::TempDir);

thread_local! {
    /// One northbound (no subsystems, storage in a temporary directory)
    /// per thread: booting parses and validates the YANG modules' data.
    static NB: std::cell::RefCell<Option<Booted>> = const { std::cell::RefCell::new(None) };
}

/// NETCONF rpc: the bytes are messages separated by [`SEP`], each parsed
/// (`xml::parse`), decoded as an `<rpc>` (`rpc::decode`) and, when it is
/// an operation on the candidate (edit-config, get-config, validate,
/// discard-changes, lock, unlock), run by the northbound; the reply is
/// encoded. The candidate is reset to running first, so an input stands
/// alone. Operations with effects outside the candidate (commit,
/// copy-config, kill-session, ...) are decoded only.
pub fn netconf_rpc(data: &[u8]) {
    use hotlease::netconf::rpc;
    use hotlease::northbound::ops::{Datastore, Operation};

    NB.with(|cell| {
        let mut cell = cell.borrow_mut();
        let (nb, _) = cell.get_or_insert_with(|| {
            let dir = tempfile::tempdir().expect("temporary directory");
            let store = hotlease::northbound::store::Store::new(dir.path()).expect("store");
            let nb = hotlease::northbound::Northbound::boot(store, Vec::new()).expect("boot");
            (nb, dir)
        });
        let _ = nb.execute(1, Operation::DiscardChanges);
        let _ = nb.execute(
            1,
            Operation::Unlock {
                target: Datastore::Candidate,
            },
        );
        for msg in split(data, SEP).take(8) {
            let Ok(text) = std::str::from_utf8(msg) else {
                continue;
            };
            let Ok(root) = hotlease::xml::parse(text) else {
                continue;
            };
            let _ = root.to_xml();
            if root.name != "rpc" || root.ns != hotlease::xml::NC_NS {
                continue;
            }
            let req = rpc::decode(root);
            let result = match req.operation {
                Ok(
                    op @ (Operation::EditConfig { .. }
                    | Operation::GetConfig {
                        source: Datastore::Candidate,
                        ..
                    }
                    | Operation::Validate { .. }
                    | Operation::DiscardChanges
                    | Operation::Lock { .. }
                    | Operation::Unlock { .. }),
                ) => nb.execute(1, op),
                Ok(_) => continue,
                Err(e) => Err(e),
            };
            let reply = rpc::encode_reply(&req.reply_attrs, &result);
            // what we send is well-formed XML
            hotlease::xml::parse(&reply).expect("the reply parses");
        }
    });
}

// ------------------------------------------------------------- bootstrap

/// The bootstrap TOML: checked as `hotleased check` does; the errors
/// print on one line each.
pub fn bootstrap(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(errors) = hotlease::bootstrap::Bootstrap::problems(Path::new("fuzz.toml"), text) {
        assert!(!errors.is_empty());
        for e in errors {
            let line = e.to_string();
            assert!(!line.contains('\n'), "{line:?}");
        }
    }
}

// ----------------------------------------------------------- backup wire

/// The backup channel: the bytes are the stream a peer sends, fed to the
/// codec in pieces the first byte's bits choose. Every message that
/// decodes encodes and decodes to itself; buffers stay bounded; the
/// peer's leases are taken as the sync does (checked, merged into a lease
/// table) and what the merge logs survives the lease store's codec.
pub fn backup_wire(data: &[u8]) {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let mut codec = WireCodec::new();
    let mut buf = BytesMut::new();
    let mut x = u64::from(seed) | 0x2545_f491_4f6c_dd00;
    let mut at = 0;
    let mut msgs = Vec::new();
    'read: loop {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let n = (1 + (x % 97) as usize).min(stream.len() - at);
        buf.extend_from_slice(&stream[at..at + n]);
        at += n;
        let end = at == stream.len();
        loop {
            let r = if end {
                codec.decode_eof(&mut buf)
            } else {
                codec.decode(&mut buf)
            };
            assert!(
                buf.capacity() <= 2 * (MAX_FRAME + 4 + stream.len()),
                "buffer grew to {}",
                buf.capacity()
            );
            match r {
                Ok(Some(m)) => msgs.push(m),
                Ok(None) => break,
                Err(e) => {
                    let _ = e.refusal();
                    break 'read;
                }
            }
        }
        if end {
            break;
        }
    }
    let mut table = table();
    for m in msgs {
        let mut out = BytesMut::new();
        WireCodec::new().encode(&m, &mut out).expect("encode");
        let again = WireCodec::new().decode_eof(&mut out).expect("decode again");
        assert_eq!(again.as_ref(), Some(&m));
        let _ = hotlease::backup::sync::kind(&m);
        let updates: Vec<LeaseUpdate> = match m {
            wire::Message::LeaseBatch(b) => b.updates,
            wire::Message::BatchPage(p) => p.leases.into_iter().map(LeaseUpdate::Upsert).collect(),
            _ => continue,
        };
        for u in updates {
            match Change::try_from(u) {
                Ok(Change::Upsert(l)) => {
                    let (_, changes) = table.merge_peer(l);
                    changes.iter().for_each(record_roundtrip);
                }
                Ok(Change::Delete(ip)) => {
                    if let Some(c) = table.remove_peer(ip, T0) {
                        record_roundtrip(&c);
                    }
                }
                Err(_) => {}
            }
        }
    }
}
