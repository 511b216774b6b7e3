//! Ping check (RFC 2131 §4.3.1: "the server SHOULD probe the reused
//! address before allocating the address, e.g., with an ICMP echo
//! request"): one ICMP echo request to an address about to be offered, and
//! whether its echo reply comes back within the timeout.
//!
//! ```text
//!  DHCP actor ──spawn (JoinSet owned by the actor)──► probe(ip, timeout) ──echo request──► ip
//!      ▲                                                   │ echo reply from ip, or the timeout
//!      └──────────────── (ip, in use or not) ──────────────┘
//! ```
//! The actor keeps serving while a probe waits; the OFFER it holds leaves
//! when the probe says the address is free (`server`). A probe makes no
//! decision: it says whether the address answered.
//!
//! Each probe has a raw ICMP socket of its own, open for as long as it
//! waits: the kernel hands every ICMP packet to every raw ICMP socket, and
//! the probe's answer is the echo reply from the probed address carrying
//! its identifier and sequence number. Raw sockets need `CAP_NET_RAW`,
//! which the daemon holds for its `AF_PACKET` socket anyway; an ICMP
//! datagram socket would need `net.ipv4.ping_group_range`, which a
//! fresh network namespace does not grant.

use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

const ECHO_REPLY: u8 = 0;
const ECHO_REQUEST: u8 = 8;
/// The payload of our echo requests (and so of the replies).
const PAYLOAD: &[u8; 16] = b"hotleased probe\0";

/// Sequence numbers of the probes of this process.
static SEQ: AtomicU16 = AtomicU16::new(1);

/// The RFC 1071 Internet checksum of `data`.
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An ICMP echo request (RFC 792):
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |     Type      |     Code      |          Checksum             |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |           Identifier          |        Sequence Number        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |     Data ...
/// +-+-+-+-+-
/// ```
pub fn echo_request(id: u16, seq: u16) -> Vec<u8> {
    let mut p = Vec::with_capacity(8 + PAYLOAD.len());
    p.extend_from_slice(&[ECHO_REQUEST, 0, 0, 0]);
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(PAYLOAD);
    let c = checksum(&p);
    p[2..4].copy_from_slice(&c.to_be_bytes());
    p
}

/// Whether `packet` (as a raw IPv4 socket reads it: the IP header, then
/// ICMP) is the echo reply of `from` to the request (`id`, `seq`), with a
/// valid checksum.
pub fn is_echo_reply(packet: &[u8], from: Ipv4Addr, id: u16, seq: u16) -> bool {
    let Some(&vihl) = packet.first() else {
        return false;
    };
    let ihl = usize::from(vihl & 0x0f) * 4;
    if vihl >> 4 != 4 || ihl < 20 || packet.len() < ihl + 8 {
        return false;
    }
    let src = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
    let icmp = &packet[ihl..];
    src == from
        && icmp[0] == ECHO_REPLY
        && icmp[1] == 0
        && icmp[4..6] == id.to_be_bytes()
        && icmp[6..8] == seq.to_be_bytes()
        && checksum(icmp) == 0
}

/// Send one echo request to `ip` and wait up to `timeout` for its reply:
/// `Ok(true)` when another host answered (the address is in use).
pub async fn probe(ip: Ipv4Addr, timeout: Duration) -> io::Result<bool> {
    let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))?;
    s.set_nonblocking(true)?;
    let fd = super::network::register(s)?;
    let id = std::process::id() as u16;
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    fd.get_ref().send_to(
        &echo_request(id, seq),
        &SockAddr::from(SocketAddrV4::new(ip, 0)),
    )?;
    let answered = async {
        let mut buf = [0u8; 1500];
        loop {
            let mut ready = fd.readable().await?;
            match ready.try_io(|s| {
                let mut sock: &Socket = s.get_ref();
                sock.read(&mut buf)
            }) {
                Ok(Ok(n)) if is_echo_reply(&buf[..n], ip, id, seq) => return Ok(true),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => {}
            }
        }
    };
    match tokio::time::timeout(timeout, answered).await {
        Ok(r) => r,
        Err(_elapsed) => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 header (no options) from `src` in front of `icmp`.
    fn ip_packet(src: Ipv4Addr, icmp: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0];
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&[127, 0, 0, 1]);
        p.extend_from_slice(icmp);
        p
    }

    /// What a host answering `request` sends back.
    fn reply_to(request: &[u8]) -> Vec<u8> {
        let mut r = request.to_vec();
        r[0] = ECHO_REPLY;
        r[2..4].fill(0);
        let c = checksum(&r);
        r[2..4].copy_from_slice(&c.to_be_bytes());
        r
    }

    #[test]
    fn echo_request_bytes() {
        let p = echo_request(0x1234, 7);
        assert_eq!(&p[..8], &[8, 0, 0x87, 0x2c, 0x12, 0x34, 0, 7]);
        assert_eq!(&p[8..], PAYLOAD);
        assert_eq!(checksum(&p), 0, "a packet with its checksum sums to 0");
    }

    #[test]
    fn only_the_reply_of_the_probed_address_to_this_probe_counts() {
        let a = Ipv4Addr::new(10, 77, 0, 77);
        let reply = reply_to(&echo_request(0x1234, 7));
        assert!(is_echo_reply(&ip_packet(a, &reply), a, 0x1234, 7));
        // another host, another probe, our own request, a damaged reply
        assert!(!is_echo_reply(
            &ip_packet(Ipv4Addr::new(10, 77, 0, 78), &reply),
            a,
            0x1234,
            7
        ));
        assert!(!is_echo_reply(&ip_packet(a, &reply), a, 0x1234, 8));
        assert!(!is_echo_reply(&ip_packet(a, &reply), a, 0x4321, 7));
        assert!(!is_echo_reply(
            &ip_packet(a, &echo_request(0x1234, 7)),
            a,
            0x1234,
            7
        ));
        let mut bad = reply.clone();
        bad[9] ^= 1;
        assert!(!is_echo_reply(&ip_packet(a, &bad), a, 0x1234, 7));
        // truncated and empty packets
        assert!(!is_echo_reply(&ip_packet(a, &reply)[..26], a, 0x1234, 7));
        assert!(!is_echo_reply(&[], a, 0x1234, 7));
    }

    /// Loopback answers pings: a probe of 127.0.0.1 finds it in use. (A
    /// silent address is the wire test's: on loopback every address of
    /// 127/8 answers.)
    #[tokio::test]
    async fn a_probe_of_an_address_that_answers_finds_it_in_use() {
        let r = probe(Ipv4Addr::LOCALHOST, Duration::from_secs(2)).await;
        match r {
            Ok(in_use) => assert!(in_use, "127.0.0.1 did not answer the echo request"),
            // without CAP_NET_RAW there is no raw socket to test with
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {}
            Err(e) => panic!("probe failed: {e}"),
        }
    }
}
