//! Replays every committed fuzz corpus file (`fuzz/corpus/<target>/`)
//! through the same entry functions the libFuzzer targets call
//! (`fuzz/src/lib.rs`), on the stable toolchain: the regression inputs of
//! every crash the fuzzing found stay fixed, and the seeds stay valid.
//! Then each target runs briefly on mutations of its corpus (no coverage
//! guidance: the stable toolchain has no libFuzzer; `fuzz/run.sh` is the
//! real campaign).

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod entries;

use std::path::Path;

mod common;
use common::Rng;

#[test]
fn every_corpus_file_replays() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for (name, run) in entries::TARGETS {
        assert!(
            root.join("fuzz_targets")
                .join(format!("{name}.rs"))
                .is_file(),
            "no fuzz target for {name}"
        );
        let dir = root.join("corpus").join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(files.len() >= 3, "{name}: only {} seeds", files.len());
        for f in files {
            let data = std::fs::read(&f).unwrap();
            let r = std::panic::catch_unwind(|| run(&data));
            assert!(r.is_ok(), "{name}: {} fails", f.display());
        }
    }
}

/// The brief run: for each target, mutations of its corpus files (bit
/// flips, random bytes, inserted, deleted and repeated runs, cuts,
/// splices of two files), `HOTLEASE_FUZZ_EXECS` of them (default 20,000)
/// or 20 s, whichever ends first. The seed changes from run to run and is
/// printed; `HOTLEASE_FUZZ_SEED` repeats a run. A failing input is written
/// to `target/fuzz-brief/<target>-<seed>-<n>` (add it to the corpus with
/// the fix).
#[test]
fn each_target_runs_briefly_on_mutations_of_its_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let execs: usize = std::env::var("HOTLEASE_FUZZ_EXECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let seed: u64 = std::env::var("HOTLEASE_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("brief fuzz run: HOTLEASE_FUZZ_SEED={seed}");
    // the targets' own panics are what we look for: keep them quiet
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut failed = Vec::new();
    for (name, run) in entries::TARGETS {
        let dir = root.join("fuzz/corpus").join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        let corpus: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
        let mut rng = Rng(seed ^ fnv(name.as_bytes()) | 1);
        let start = std::time::Instant::now();
        let mut n = 0;
        while n < execs && start.elapsed() < std::time::Duration::from_secs(20) {
            let input = mutate(&mut rng, &corpus);
            n += 1;
            if std::panic::catch_unwind(|| run(&input)).is_err() {
                let out = root.join("target/fuzz-brief");
                std::fs::create_dir_all(&out).unwrap();
                let path = out.join(format!("{name}-{seed}-{n}"));
                std::fs::write(&path, &input).unwrap();
                failed.push(path);
                break;
            }
        }
        eprintln!("{name}: {n} mutated inputs in {:?}", start.elapsed());
    }
    std::panic::set_hook(hook);
    assert!(
        failed.is_empty(),
        "failing inputs (seed {seed}): {failed:?}; replay one with the target's function"
    );
}

fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// One corpus file changed by one to four mutations.
fn mutate(rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut d = corpus[rng.below(corpus.len())].clone();
    for _ in 0..1 + rng.below(4) {
        let len = d.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                d[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                d[i] = [0, 0xff, 0x7f, 0x80, b'<', b'>', b'\n', rng.next() as u8][rng.below(8)];
            }
            2 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let fill = rng.next() as u8;
                d.splice(i..i, std::iter::repeat_n(fill, n));
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                d.drain(i..i + n);
            }
            4 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(256));
                let run = d[i..i + n].to_vec();
                let at = rng.below(len + 1);
                d.splice(at..at, run);
            }
            5 => d.truncate(rng.below(len + 1)),
            _ => {
                let other = &corpus[rng.below(corpus.len())];
                let cut = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                d.truncate(cut);
                d.extend_from_slice(&other[from..]);
            }
        }
    }
    d
}

/// Writes the seed corpora (`cargo test --test fuzz_corpus -- --ignored
/// write_seeds`): real packets, adverts, NETCONF messages, bootstrap files
/// and backup frames, built with the crate's own encoders or taken from
/// the repository's examples. Regression inputs are added by hand.
#[test]
#[ignore]
fn write_seeds() {
    use std::collections::BTreeMap;
    use std::net::Ipv4Addr;

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let corpus = root.join("fuzz/corpus");
    let put = |target: &str, name: &str, data: &[u8]| {
        let d = corpus.join(target);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(format!("seed-{name}")), data).unwrap();
    };
    let ip = |s: &str| -> Ipv4Addr { s.parse().unwrap() };

    // DHCP: one packet of every type from the clients of the lease table
    // the target starts with, then DORA sequences.
    {
        use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, OptionCode};
        use dhcproto::Encodable;
        let packet = |k: MessageType, i: u8, relayed: bool| {
            let mut m = Message::default();
            m.set_chaddr(&[2, 0, 0, 0, 0, 5 + i]);
            m.set_flags(Flags::default().set_broadcast());
            if relayed {
                m.set_ciaddr(Ipv4Addr::new(10, 9, 0, 11 + i));
                m.set_giaddr(ip("10.9.0.254"));
            }
            let o = m.opts_mut();
            o.insert(DhcpOption::MessageType(k));
            if k != MessageType::Discover {
                o.insert(DhcpOption::ServerIdentifier(ip("10.9.0.1")));
            }
            o.insert(DhcpOption::RequestedIpAddress(Ipv4Addr::new(
                10,
                9,
                0,
                11 + i,
            )));
            if i % 2 == 1 {
                o.insert(DhcpOption::ClientIdentifier(vec![1, 2, 3, i]));
            }
            o.insert(DhcpOption::Hostname("host".into()));
            o.insert(DhcpOption::MaxMessageSize(600));
            o.insert(DhcpOption::ParameterRequestList(vec![
                OptionCode::SubnetMask,
                OptionCode::Router,
                OptionCode::DomainNameServer,
                OptionCode::Unknown(43),
            ]));
            m.to_vec().unwrap()
        };
        let kinds = [
            ("discover", MessageType::Discover),
            ("request", MessageType::Request),
            ("decline", MessageType::Decline),
            ("release", MessageType::Release),
            ("inform", MessageType::Inform),
        ];
        for (i, (name, k)) in kinds.iter().enumerate() {
            for client in 0..5u8 {
                let mut d = vec![(i as u8 * 37) ^ 0x8c];
                d.extend(packet(*k, client, i % 2 == 1));
                put("dhcp", &format!("{name}-{client}"), &d);
            }
        }
        // a new client's DORA, a renewal, a decline then a new discover
        let mut dora = vec![0x8c];
        dora.extend(packet(MessageType::Discover, 9, false));
        dora.extend(entries::SEP);
        dora.extend(packet(MessageType::Request, 9, false));
        put("dhcp", "dora", &dora);
        let mut d = vec![0xe9];
        for k in [
            MessageType::Request,
            MessageType::Decline,
            MessageType::Discover,
            MessageType::Release,
        ] {
            d.extend(packet(k, 0, false));
            d.extend(entries::SEP);
        }
        put("dhcp", "renew-decline-discover-release", &d);
    }

    // VRRP: adverts as hotleased and keepalived send them.
    {
        use hotlease::vrrp::packet::{encode, encode_ip, Advert, ChecksumForm, Version};
        let v3 = Advert {
            version: Version::V3,
            vrid: 1,
            priority: 120,
            interval: 100,
            auth_type: 0,
            auth_data: [0; 8],
            addresses: vec![ip("10.1.1.1")],
        };
        let v2 = Advert {
            version: Version::V2,
            vrid: 51,
            priority: 255,
            interval: 1,
            auth_type: 1,
            auth_data: *b"secret\0\0",
            addresses: vec![ip("192.0.2.10"), ip("192.0.2.11")],
        };
        let src = ip("10.1.1.2");
        put(
            "vrrp",
            "v3-pseudo",
            &encode_ip(&v3, src, ChecksumForm::PseudoHeader, 1),
        );
        put(
            "vrrp",
            "v3-plain",
            &encode_ip(&v3, src, ChecksumForm::Plain, 2),
        );
        put(
            "vrrp",
            "v2-auth",
            &encode_ip(&v2, src, ChecksumForm::Plain, 3),
        );
        let many = Advert {
            addresses: (1..=20).map(|i| Ipv4Addr::new(10, 1, 1, i)).collect(),
            priority: 0,
            ..v3.clone()
        };
        put(
            "vrrp",
            "v3-many-priority-0",
            &encode_ip(&many, src, ChecksumForm::PseudoHeader, 4),
        );
        let mut bare = src.octets().to_vec();
        bare.extend(hotlease::vrrp::packet::VRRP_GROUP.octets());
        bare.extend(encode(&v3, src, ChecksumForm::PseudoHeader));
        put("vrrp", "v3-message", &bare);
    }

    // NETCONF: a client's hello, then rpcs, in every framing.
    let hello = r#"<?xml version="1.0" encoding="UTF-8"?><hello xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><capabilities><capability>urn:ietf:params:netconf:base:1.0</capability><capability>urn:ietf:params:netconf:base:1.1</capability></capabilities></hello>"#;
    let rpc = |id: u32, body: &str| {
        format!(
            r#"<rpc message-id="{id}" xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">{body}</rpc>"#
        )
    };
    let edit = |id: u32, cfg: &str, extra: &str| {
        rpc(
            id,
            &format!("<edit-config><target><candidate/></target>{extra}<config>{cfg}</config></edit-config>"),
        )
    };
    {
        use hotlease::netconf::framing::{encode, Framing};
        let get = rpc(2, "<get-config><source><running/></source></get-config>");
        let mut eom = Vec::new();
        encode(Framing::EndOfMessage, hello.as_bytes(), &mut eom);
        encode(Framing::EndOfMessage, get.as_bytes(), &mut eom);
        put("netconf_framing", "eom", &[&[0u8][..], &eom].concat());
        let mut switch = Vec::new();
        encode(Framing::EndOfMessage, hello.as_bytes(), &mut switch);
        encode(Framing::Chunked, get.as_bytes(), &mut switch);
        encode(
            Framing::Chunked,
            rpc(3, "<close-session/>").as_bytes(),
            &mut switch,
        );
        put(
            "netconf_framing",
            "hello-then-chunked",
            &[&[2u8][..], &switch].concat(),
        );
        // RFC 6242 §4.2's example: one message in two chunks
        let two = b"\n#4\n<rpc\n#18\n message-id=\"102\"\n\n##\n";
        put(
            "netconf_framing",
            "rfc6242-two-chunks",
            &[&[1u8][..], &two[..]].concat(),
        );
        let mut chunked = Vec::new();
        encode(Framing::Chunked, get.as_bytes(), &mut chunked);
        put(
            "netconf_framing",
            "chunked",
            &[&[4u8][..], &chunked].concat(),
        );
    }

    // NETCONF rpcs: every valid and invalid configuration of yang-tests/
    // as an edit-config of the candidate, then a validate.
    {
        let validate = rpc(9, "<validate><source><candidate/></source></validate>");
        let mut n = 0;
        for dir in ["yang-tests", "yang-tests/invalid", "yang-tests/daemon"] {
            let mut files: Vec<_> = std::fs::read_dir(root.join(dir))
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "xml"))
                .collect();
            files.sort();
            for f in files {
                let cfg = std::fs::read_to_string(&f).unwrap();
                if cfg.contains("<notification") || f.ends_with("state.xml") {
                    continue;
                }
                let msg = [edit(1, &cfg, ""), validate.clone()]
                    .join(std::str::from_utf8(entries::SEP).unwrap());
                let stem = f.file_stem().unwrap().to_string_lossy().to_string();
                put("netconf_rpc", &stem, msg.as_bytes());
                n += 1;
            }
        }
        assert!(n > 10);
        let pool = r#"<dhcp-server xmlns="urn:hotlease:yang:dhcp-server"><ip-pool><name>p1</name><gateway>10.0.1.1</gateway><mask>255.255.255.0</mask><section><start>10.0.1.10</start><end>10.0.1.20</end></section></ip-pool></dhcp-server>"#;
        let sep = std::str::from_utf8(entries::SEP).unwrap();
        let ops = [
            edit(1, pool, ""),
            edit(2, &pool.replace("<ip-pool>", r#"<ip-pool xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0" nc:operation="delete">"#), "<default-operation>none</default-operation>"),
            edit(3, pool, "<test-option>test-only</test-option><error-option>continue-on-error</error-option>"),
            rpc(4, "<get-config><source><candidate/></source><filter type=\"subtree\"><dhcp-server xmlns=\"urn:hotlease:yang:dhcp-server\"/></filter></get-config>"),
            rpc(5, "<lock><target><candidate/></target></lock>"),
            rpc(6, "<discard-changes/>"),
        ];
        put("netconf_rpc", "pool-edits", ops.join(sep).as_bytes());
        let replace = edit(7, &pool.replace("<ip-pool>", r#"<ip-pool xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0" nc:operation="replace">"#), "<default-operation>replace</default-operation>");
        put("netconf_rpc", "replace", replace.as_bytes());
        put("netconf_rpc", "hello", hello.as_bytes());
    }

    // Bootstrap files: the packaged one, the README's, and variants.
    {
        put(
            "bootstrap",
            "packaged",
            &std::fs::read(root.join("packaging/hotleased.toml")).unwrap(),
        );
        let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
        let start = readme
            .find("cat > /tmp/hl-demo/hotleased.toml <<'EOF'\n")
            .unwrap();
        let body = &readme[start..];
        let body = &body[body.find('\n').unwrap() + 1..body.find("\nEOF\n").unwrap() + 1];
        put("bootstrap", "readme", body.as_bytes());
        let full = r#"[netconf]
listen = "[::1]:830"
host-key = "/k"
max-connections = 1
max-per-source = 1
max-unauthenticated = 1
login-grace-time = 1
keepalive-interval = 0
keepalive-count = 1
[[netconf.user]]
name = "a"
authorized-keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDjQgHuRBcORJhEtkkzYTqFySMzhoFrG01BmV7thEpJU you@host"]
[[netconf.user]]
name = "b"
password-hash = "$1$bad"
authorized-keys = ["ssh-rsa AAAA"]
[storage]
dir = "/s"
[vrrp]
enabled = false
realtime-priority = 0
"#;
        put("bootstrap", "every-key", full.as_bytes());
        put("bootstrap", "zero-limits", b"[netconf]\nlisten = \"127.0.0.1:830\"\nhost-key = \"/k\"\nmax-connections = 0\n[storage]\ndir = \"/s\"\n");
    }

    // Backup frames: one of every message kind (built as the wire
    // tests build them), then streams of several.
    {
        use bytes::BytesMut;
        use hotlease::backup::wire::*;
        use tokio_util::codec::Encoder;
        let lease = WireLease {
            ip: ip("10.9.0.11"),
            pool: "fz".into(),
            hw: vec![2, 0, 0, 0, 0, 5],
            client_id: Some(vec![1, 2, 3]),
            hostname: Some("host".into()),
            state: WireState::Bound,
            lifetime: 600,
            expires: 1_000_300,
            relay_agent: Some(vec![1, 4, 0, 0, 0, 9]),
        };
        let refusal = Refusal {
            reason: Reason::UnsupportedVersion,
            text: "version 2".into(),
        };
        let msgs = BTreeMap::from([
            (
                "hello",
                Message::Hello(Hello {
                    source: ip("192.0.2.1"),
                    software: "0.1.0".into(),
                    unix_time: 1_800_000_000,
                    profiles: vec![ProfileHello {
                        backup_id: 10,
                        fingerprint: u64::MAX,
                        role: Role::Master,
                    }],
                }),
            ),
            (
                "hello-reply",
                Message::HelloReply(HelloReply::Accepted {
                    profiles: vec![ProfileVerdict {
                        backup_id: 10,
                        status: ProfileStatus::FingerprintMismatch,
                    }],
                }),
            ),
            (
                "hello-refused",
                Message::HelloReply(HelloReply::Refused(refusal.clone())),
            ),
            ("close", Message::Close(refusal)),
            ("keepalive", Message::Keepalive(Keepalive { stamp: 77 })),
            (
                "keepalive-reply",
                Message::KeepaliveReply(Keepalive { stamp: 77 }),
            ),
            (
                "role",
                Message::Role(ProfileRole {
                    backup_id: 10,
                    role: Role::Backup,
                }),
            ),
            (
                "lease-batch",
                Message::LeaseBatch(LeaseBatch {
                    lsn: 1 << 40,
                    updates: vec![
                        LeaseUpdate::Upsert(lease.clone()),
                        LeaseUpdate::Upsert(WireLease {
                            ip: ip("10.9.0.12"),
                            hw: vec![2, 0, 0, 0, 0, 5],
                            expires: 1_000_900,
                            ..lease.clone()
                        }),
                        LeaseUpdate::Remove {
                            ip: ip("10.9.0.13"),
                        },
                    ],
                    more: false,
                }),
            ),
            (
                "batch-invite",
                Message::BatchInvite(BatchInvite { batch: 7 }),
            ),
            ("ack", Message::Ack(Ack { lsn: 1 << 40 })),
            (
                "leases-refused",
                Message::LeasesRefused(LeasesRefused {
                    lsn: 3,
                    leases: vec![RefusedLease {
                        ip: ip("10.9.0.13"),
                        pool: "zz".into(),
                        reason: LeaseRefusal::UnknownPool,
                    }],
                }),
            ),
            (
                "batch-request",
                Message::BatchRequest(BatchRequest {
                    batch: 1,
                    backup_ids: vec![10, 11],
                    after: Some(ip("10.9.0.11")),
                    max: 1000,
                }),
            ),
            (
                "batch-page",
                Message::BatchPage(BatchPage {
                    batch: 1,
                    leases: vec![
                        lease.clone(),
                        WireLease {
                            state: WireState::Declined,
                            hw: vec![],
                            client_id: None,
                            ..lease.clone()
                        },
                    ],
                    cursor: ip("10.9.0.11"),
                    more: false,
                }),
            ),
            (
                "batch-done",
                Message::BatchDone(BatchDone {
                    batch: 1,
                    counts: BatchCounts {
                        received: 2,
                        taken: 1,
                        sent: 1,
                        unchanged: 0,
                        refused: 0,
                    },
                }),
            ),
        ]);
        let mut all = vec![0x5a];
        for (i, (name, m)) in msgs.iter().enumerate() {
            let mut out = BytesMut::new();
            WireCodec::new().encode(m, &mut out).unwrap();
            put("backup_wire", name, &[&[i as u8][..], &out[..]].concat());
            all.extend_from_slice(&out);
        }
        put("backup_wire", "session", &all);
    }
}
