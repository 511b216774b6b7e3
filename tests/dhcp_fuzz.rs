//! Mutation fuzzing of what peers send, on stable Rust (cargo-fuzz needs
//! nightly), steered by a small deterministic PRNG:
//! - DHCP: well-formed requests of every type are mutated (bit flips, byte
//!   overwrites, truncation, growth, option splicing), then decoded and,
//!   when they decode, handled against a live lease table. Nothing may
//!   panic, and every reply must decode.
//! - The hot-backup channel: valid frames of every message kind are
//!   mutated the same way and also get lying length prefixes and are
//!   glued into streams, then fed to `WireCodec` in random read sizes.
//!   Nothing may panic, buffers stay bounded by the frame limit, and every
//!   message that decodes encodes and decodes again to itself.
//!
//! `HOTLEASE_FUZZ_ITERS` raises the iteration counts for longer runs.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

mod common;
use common::Rng;

use bytes::BytesMut;
use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, OptionCode};
use dhcproto::Encodable;
use hotlease::backup::wire::{self, WireCodec, WireError, MAX_FRAME};
use hotlease::dhcp::config::{OptionValue, Pool};
use hotlease::dhcp::handler::{decode, handle, raw_option, Ctx, Globals};
use hotlease::dhcp::leases::LeaseTable;
use hotlease::dhcp::pool::PoolRt;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

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

fn seeds() -> Vec<Vec<u8>> {
    let kinds = [
        MessageType::Discover,
        MessageType::Request,
        MessageType::Decline,
        MessageType::Release,
        MessageType::Inform,
    ];
    let mut out = Vec::new();
    for (i, k) in kinds.iter().enumerate() {
        let mut m = Message::default();
        m.set_chaddr(&[2, 0, 0, 0, 0, i as u8 + 5]);
        m.set_flags(Flags::default().set_broadcast());
        if i % 2 == 1 {
            m.set_ciaddr(ip("10.9.0.11"));
            m.set_giaddr(ip("10.9.0.254"));
        }
        let o = m.opts_mut();
        o.insert(DhcpOption::MessageType(*k));
        o.insert(DhcpOption::ServerIdentifier(ip("10.9.0.1")));
        o.insert(DhcpOption::RequestedIpAddress(ip("10.9.0.12")));
        o.insert(DhcpOption::ClientIdentifier(vec![1, 2, 3, i as u8]));
        o.insert(DhcpOption::Hostname("host".into()));
        o.insert(DhcpOption::MaxMessageSize(600));
        o.insert(DhcpOption::ParameterRequestList(vec![
            OptionCode::SubnetMask,
            OptionCode::Router,
            OptionCode::DomainNameServer,
            OptionCode::Unknown(43),
        ]));
        out.push(m.to_vec().unwrap());
    }
    out
}

fn iterations(default: usize) -> usize {
    std::env::var("HOTLEASE_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn mutate(rng: &mut Rng, p: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    for _ in 0..=rng.below(6) {
        match rng.below(7) {
            0 if !p.is_empty() => {
                let i = rng.below(p.len());
                p[i] ^= 1 << rng.below(8);
            }
            1 if !p.is_empty() => {
                let i = rng.below(p.len());
                p[i] = [0, 1, 0x7f, 0x80, 0xff, 16, 17, 255][rng.below(8)];
            }
            2 => {
                let n = rng.below(p.len() + 1);
                p.truncate(n);
            }
            3 => {
                let n = rng.below(64);
                for _ in 0..n {
                    p.push(rng.next() as u8);
                }
            }
            4 if p.len() > 240 => {
                // an option with a random code and a lying length
                let i = 240 + rng.below(p.len() - 240);
                let opt = [rng.next() as u8, rng.next() as u8, rng.next() as u8];
                p.splice(i..i, opt);
            }
            5 => {
                // splice a piece of another seed
                let o = &corpus[rng.below(corpus.len())];
                if !o.is_empty() && !p.is_empty() {
                    let a = rng.below(o.len());
                    let b = a + rng.below(o.len() - a);
                    let at = rng.below(p.len());
                    p.splice(at..at, o[a..b].iter().copied());
                }
            }
            _ => {
                // hlen, the field dhcproto indexes chaddr with
                if p.len() > 2 {
                    p[2] = rng.next() as u8;
                }
            }
        }
    }
}

#[test]
fn malformed_packets_never_panic() {
    let iters = iterations(200_000);
    let corpus = seeds();
    let pool = PoolRt::from(&pool());
    let mut table = LeaseTable::new();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut decoded = 0usize;
    let mut replies = 0usize;
    for i in 0..iters {
        let mut p = corpus[rng.below(corpus.len())].clone();
        mutate(&mut rng, &mut p, &corpus);
        let _ = raw_option(&p, 82);
        let Ok(m) = decode(&p) else { continue };
        decoded += 1;
        let g = Globals {
            decline_probation: (i % 3) as u32,
            authoritative: i % 2 == 0,
            ..Globals::default()
        };
        let now = 1_000_000 + (i as u64 / 50);
        let ctx = Ctx {
            now,
            default_sid: ip("10.9.0.1"),
            ciaddr_on_link: i % 3 == 0,
            globals: &g,
        };
        let out = handle(&mut table, &pool, &ctx, &m, &p);
        if let Some(r) = out.reply {
            replies += 1;
            assert!(decode(&r.bytes).is_ok(), "reply does not decode");
            assert!(r.bytes.len() <= 1500);
        }
        if i % 1000 == 0 {
            table.expire(now);
        }
    }
    // the mutations must leave enough valid packets to reach the handler
    assert!(decoded > iters / 10, "decoded {decoded} of {iters}");
    assert!(replies > 0);
}

/// One valid frame of every backup message kind.
fn backup_seeds() -> Vec<Vec<u8>> {
    use tokio_util::codec::Encoder;
    use wire::*;

    let lease = WireLease {
        ip: ip("10.9.0.11"),
        pool: "fz".into(),
        hw: vec![2, 0, 0, 0, 0, 5],
        client_id: Some(vec![1, 2, 3]),
        hostname: Some("host".into()),
        state: WireState::Bound,
        lifetime: 600,
        expires: 1_800_000_000,
        relay_agent: Some(vec![1, 4, 0, 0, 0, 9]),
    };
    let refusal = Refusal {
        reason: Reason::UnsupportedVersion,
        text: "version 2".into(),
    };
    let msgs = [
        wire::Message::Hello(Hello {
            source: ip("192.0.2.1"),
            software: "0.1.0".into(),
            unix_time: 1_800_000_000,
            profiles: vec![ProfileHello {
                backup_id: 10,
                fingerprint: u64::MAX,
                role: Role::Master,
            }],
        }),
        wire::Message::HelloReply(HelloReply::Accepted {
            profiles: vec![ProfileVerdict {
                backup_id: 10,
                status: ProfileStatus::FingerprintMismatch,
            }],
        }),
        wire::Message::HelloReply(HelloReply::Refused(refusal.clone())),
        wire::Message::Close(refusal),
        wire::Message::Keepalive(Keepalive { stamp: 77 }),
        wire::Message::KeepaliveReply(Keepalive { stamp: 77 }),
        wire::Message::Role(ProfileRole {
            backup_id: 10,
            role: Role::Backup,
        }),
        wire::Message::LeaseBatch(LeaseBatch {
            lsn: 1 << 40,
            updates: vec![
                LeaseUpdate::Upsert(lease.clone()),
                LeaseUpdate::Remove {
                    ip: ip("10.9.0.12"),
                },
            ],
            more: false,
        }),
        wire::Message::BatchInvite(wire::BatchInvite { batch: 7 }),
        wire::Message::Ack(Ack { lsn: 1 << 40 }),
        wire::Message::LeasesRefused(LeasesRefused {
            lsn: 3,
            leases: vec![RefusedLease {
                ip: ip("10.9.0.13"),
                pool: "zz".into(),
                reason: LeaseRefusal::UnknownPool,
            }],
        }),
        wire::Message::BatchRequest(BatchRequest {
            batch: 1,
            backup_ids: vec![10, 11],
            after: Some(ip("10.9.0.11")),
            max: 1000,
        }),
        wire::Message::BatchPage(BatchPage {
            batch: 1,
            leases: vec![lease.clone(), lease],
            cursor: ip("10.9.0.11"),
            more: false,
        }),
        wire::Message::BatchDone(BatchDone {
            batch: 1,
            counts: BatchCounts {
                received: 2,
                taken: 1,
                sent: 1,
                unchanged: 0,
                refused: 0,
            },
        }),
    ];
    msgs.iter()
        .map(|m| {
            let mut out = BytesMut::new();
            WireCodec::new().encode(m, &mut out).unwrap();
            out.to_vec()
        })
        .collect()
}

/// Feed `stream` to a fresh codec in random read sizes, then end it.
/// Returns the messages decoded and whether it ended in an error.
fn feed(rng: &mut Rng, stream: &[u8]) -> (Vec<wire::Message>, Option<WireError>) {
    use tokio_util::codec::Decoder;

    let mut codec = WireCodec::new();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let n = (1 + rng.below(64)).min(stream.len() - at);
        buf.extend_from_slice(&stream[at..at + n]);
        at += n;
        let end = at == stream.len();
        loop {
            let r = if end {
                codec.decode_eof(&mut buf)
            } else {
                codec.decode(&mut buf)
            };
            // what a frame can make the reader hold: its announced
            // length (bounded) plus what was read ahead, doubled at worst
            // by the buffer's growth
            assert!(
                buf.capacity() <= 2 * (MAX_FRAME + 4 + stream.len()),
                "buffer grew to {}",
                buf.capacity()
            );
            match r {
                Ok(Some(m)) => out.push(m),
                Ok(None) => break,
                // a decode error ends the session
                Err(e) => return (out, Some(e)),
            }
        }
        if end {
            return (out, None);
        }
    }
}

#[test]
fn malformed_backup_frames_never_panic() {
    use tokio_util::codec::{Decoder, Encoder};

    let iters = iterations(100_000);
    let corpus = backup_seeds();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let (mut decoded, mut errors, mut too_long) = (0usize, 0usize, 0usize);
    for _ in 0..iters {
        // one to three frames back to back, one of them mutated
        let mut frames: Vec<Vec<u8>> = (0..1 + rng.below(3))
            .map(|_| corpus[rng.below(corpus.len())].clone())
            .collect();
        let k = rng.below(frames.len());
        let mut f = std::mem::take(&mut frames[k]);
        mutate(&mut rng, &mut f, &corpus);
        if f.len() >= 4 && rng.below(8) == 0 {
            // a length prefix that lies, often beyond the limit
            let len: u32 = match rng.below(4) {
                0 => u32::MAX,
                1 => MAX_FRAME as u32 + 1,
                2 => MAX_FRAME as u32,
                _ => rng.next() as u32,
            };
            f[..4].copy_from_slice(&len.to_be_bytes());
        }
        frames[k] = f;
        let stream = frames.concat();

        let (msgs, err) = feed(&mut rng, &stream);
        decoded += msgs.len();
        match err {
            Some(WireError::FrameTooLong) => too_long += 1,
            Some(_) => errors += 1,
            None => {}
        }
        // whatever decoded is a message we can send and read back as is
        for m in msgs {
            let mut out = BytesMut::new();
            WireCodec::new().encode(&m, &mut out).unwrap();
            let again = WireCodec::new().decode_eof(&mut out).unwrap();
            assert_eq!(again, Some(m));
        }
    }
    // the mutations must leave both frames that decode and frames that
    // do not, including refused lengths
    assert!(decoded > iters / 4, "decoded {decoded} in {iters} streams");
    assert!(errors > iters / 10, "{errors} errors in {iters} streams");
    assert!(too_long > 0);
}
