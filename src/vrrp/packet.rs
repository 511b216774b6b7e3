//! VRRP advertisement codec, IPv4 only: version 3 (RFC 5798, RFC 9568) and
//! version 2 (RFC 3768). Pure: bytes in, structs out, and back.
//!
//! Raw IPv4 sockets hand us the IP header too, so [`decode`] takes a whole
//! IPv4 packet and returns the fields the state machine needs (source, TTL)
//! beside the VRRP message. [`encode`] builds the VRRP message only: the
//! kernel writes the IP header (TTL 255 is a socket option).
//!
//! Version 3 (RFC 5798 section 5.1):
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |(rsvd) |     Max Adver Int     |          Checksum             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       IPv4 Address(es)                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//! Max Adver Int counts centiseconds (12 bits). The checksum covers the
//! VRRP message, preceded by the IPv4 pseudo-header (source, destination,
//! zero, protocol 112, VRRP length) in the form Linux implementations use
//! (keepalived, FRR) or not preceded by it in the form RFC 9568 clarifies.
//! We accept both and tell which one matched.
//!
//! Version 2 (RFC 3768 section 5.1):
//! ```text
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version| Type  | Virtual Rtr ID|   Priority    | Count IP Addrs|
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |   Auth Type   |   Adver Int   |          Checksum             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                         IP Address(es)                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                     Authentication Data (1)                   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                     Authentication Data (2)                   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//! Adver Int counts seconds; the checksum never has a pseudo-header.

use std::net::Ipv4Addr;

/// IP protocol number of VRRP.
pub const PROTO_VRRP: u8 = 112;
/// Destination of every IPv4 advertisement.
pub const VRRP_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// The only VRRP message type.
const TYPE_ADVERTISEMENT: u8 = 1;
const HEADER_LEN: usize = 8;
const V2_AUTH_LEN: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V2,
    V3,
}

/// Which form of the VRRPv3 checksum a packet carries or should carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumForm {
    /// Preceded by the IPv4 pseudo-header (keepalived, FRR; our default).
    PseudoHeader,
    /// The VRRP message alone (RFC 9568; always the case for version 2).
    Plain,
}

/// An advertisement's VRRP fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    pub version: Version,
    pub vrid: u8,
    pub priority: u8,
    /// Version 3: Max Adver Int in centiseconds. Version 2: Adver Int in
    /// seconds.
    pub interval: u16,
    /// Version 2 only: Auth Type (0 = none) and its 8 data bytes.
    pub auth_type: u8,
    pub auth_data: [u8; 8],
    pub addresses: Vec<Ipv4Addr>,
}

impl Advert {
    /// The advertisement interval in milliseconds.
    pub fn interval_ms(&self) -> u32 {
        match self.version {
            Version::V3 => u32::from(self.interval) * 10,
            Version::V2 => u32::from(self.interval) * 1000,
        }
    }
}

/// A decoded IPv4 packet carrying an advertisement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    pub advert: Advert,
    /// The checksum form that matched (always `Plain` for version 2).
    pub checksum: ChecksumForm,
}

/// Why a packet was dropped by the decoder. Variants that carry a VRID
/// let the caller count the drop against the group it was meant for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("packet too short ({0} bytes)")]
    TooShort(usize),
    #[error("not a valid IPv4 header")]
    BadIpHeader,
    #[error("IP protocol {0} is not VRRP")]
    NotVrrp(u8),
    #[error("vrid {vrid}: VRRP version {version} is not supported")]
    Version { vrid: u8, version: u8 },
    #[error("vrid {vrid}: VRRP type {ty} is not an advertisement")]
    Type { vrid: u8, ty: u8 },
    #[error("vrid {vrid}: length {len} does not match {count} addresses")]
    Length { vrid: u8, len: usize, count: u8 },
    #[error("vrid {vrid}: bad checksum")]
    Checksum { vrid: u8 },
}

impl DecodeError {
    /// The VRID of the group the packet was meant for, when it could be read.
    pub fn vrid(&self) -> Option<u8> {
        match self {
            DecodeError::Version { vrid, .. }
            | DecodeError::Type { vrid, .. }
            | DecodeError::Length { vrid, .. }
            | DecodeError::Checksum { vrid } => Some(*vrid),
            _ => None,
        }
    }
}

/// One's-complement sum of 16-bit words (RFC 1071), not yet folded.
fn sum(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for w in &mut chunks {
        acc += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

fn pseudo_header_sum(src: Ipv4Addr, dst: Ipv4Addr, len: usize) -> u32 {
    let mut ph = [0u8; 12];
    ph[0..4].copy_from_slice(&src.octets());
    ph[4..8].copy_from_slice(&dst.octets());
    ph[9] = PROTO_VRRP;
    ph[10..12].copy_from_slice(&(len as u16).to_be_bytes());
    sum(&ph, 0)
}

/// The checksum of a VRRP message (its checksum field zeroed or not: a
/// message with a correct checksum sums to zero).
pub fn checksum(msg: &[u8], form: ChecksumForm, src: Ipv4Addr, dst: Ipv4Addr) -> u16 {
    let init = match form {
        ChecksumForm::PseudoHeader => pseudo_header_sum(src, dst, msg.len()),
        ChecksumForm::Plain => 0,
    };
    fold(sum(msg, init))
}

/// Encode the VRRP message of `advert` sent from `src` to 224.0.0.18.
/// `form` applies to version 3 only; version 2 is always `Plain`.
pub fn encode(advert: &Advert, src: Ipv4Addr, form: ChecksumForm) -> Vec<u8> {
    let count = advert.addresses.len().min(255);
    let mut b = Vec::with_capacity(HEADER_LEN + 4 * count + V2_AUTH_LEN);
    let version = match advert.version {
        Version::V2 => 2u8,
        Version::V3 => 3u8,
    };
    b.push(version << 4 | TYPE_ADVERTISEMENT);
    b.push(advert.vrid);
    b.push(advert.priority);
    b.push(count as u8);
    match advert.version {
        Version::V3 => b.extend_from_slice(&(advert.interval & 0x0fff).to_be_bytes()),
        Version::V2 => {
            b.push(advert.auth_type);
            b.push(advert.interval.min(255) as u8);
        }
    }
    b.extend_from_slice(&[0, 0]);
    for a in &advert.addresses[..count] {
        b.extend_from_slice(&a.octets());
    }
    let form = match advert.version {
        Version::V2 => {
            b.extend_from_slice(&advert.auth_data);
            ChecksumForm::Plain
        }
        Version::V3 => form,
    };
    let c = checksum(&b, form, src, VRRP_GROUP);
    b[6..8].copy_from_slice(&c.to_be_bytes());
    b
}

/// A whole IPv4 packet for a raw socket with `IP_HDRINCL`: TTL 255, DSCP
/// CS6 (as keepalived sends it), to 224.0.0.18. `id` 0 lets the kernel
/// choose; it also rewrites the header checksum, computed here anyway so the
/// bytes are complete.
pub fn encode_ip(advert: &Advert, src: Ipv4Addr, form: ChecksumForm, id: u16) -> Vec<u8> {
    let msg = encode(advert, src, form);
    let total = (20 + msg.len()) as u16;
    let mut p = Vec::with_capacity(usize::from(total));
    p.extend_from_slice(&[0x45, 0xc0]);
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&[0, 0, 255, PROTO_VRRP, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&VRRP_GROUP.octets());
    let c = fold(sum(&p, 0));
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&msg);
    p
}

/// Decode an IPv4 packet as read from a raw socket of protocol 112.
///
/// The TTL is returned, not checked: the caller counts a wrong TTL against
/// the group the packet names.
pub fn decode(ip: &[u8]) -> Result<Received, DecodeError> {
    if ip.len() < 20 {
        return Err(DecodeError::TooShort(ip.len()));
    }
    if ip[0] >> 4 != 4 {
        return Err(DecodeError::BadIpHeader);
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    // Linux raw sockets hand over the packet as received; the total length
    // field is the authority, extra bytes (Ethernet padding) are not ours.
    if ihl < 20 || total < ihl || total > ip.len() {
        return Err(DecodeError::BadIpHeader);
    }
    if ip[9] != PROTO_VRRP {
        return Err(DecodeError::NotVrrp(ip[9]));
    }
    let ttl = ip[8];
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let msg = &ip[ihl..total];
    let (advert, checksum) = decode_message(msg, src, dst)?;
    Ok(Received {
        src,
        dst,
        ttl,
        advert,
        checksum,
    })
}

/// Decode a VRRP message (no IP header); `src` and `dst` are needed for
/// the pseudo-header checksum.
pub fn decode_message(
    msg: &[u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
) -> Result<(Advert, ChecksumForm), DecodeError> {
    if msg.len() < HEADER_LEN {
        return Err(DecodeError::TooShort(msg.len()));
    }
    let vrid = msg[1];
    let version = match msg[0] >> 4 {
        2 => Version::V2,
        3 => Version::V3,
        v => return Err(DecodeError::Version { vrid, version: v }),
    };
    let ty = msg[0] & 0x0f;
    if ty != TYPE_ADVERTISEMENT {
        return Err(DecodeError::Type { vrid, ty });
    }
    let count = msg[3];
    let addr_end = HEADER_LEN + 4 * usize::from(count);
    let len_ok = match version {
        Version::V3 => msg.len() == addr_end,
        // The authentication data is mandatory in RFC 3768; a few old
        // implementations leave it out, which costs nothing to accept.
        Version::V2 => msg.len() == addr_end + V2_AUTH_LEN || msg.len() == addr_end,
    };
    if !len_ok {
        return Err(DecodeError::Length {
            vrid,
            len: msg.len(),
            count,
        });
    }
    let form = match version {
        Version::V2 if checksum(msg, ChecksumForm::Plain, src, dst) == 0 => ChecksumForm::Plain,
        Version::V3 if checksum(msg, ChecksumForm::PseudoHeader, src, dst) == 0 => {
            ChecksumForm::PseudoHeader
        }
        Version::V3 if checksum(msg, ChecksumForm::Plain, src, dst) == 0 => ChecksumForm::Plain,
        _ => return Err(DecodeError::Checksum { vrid }),
    };
    let addresses = msg[HEADER_LEN..addr_end]
        .chunks_exact(4)
        .map(|a| Ipv4Addr::new(a[0], a[1], a[2], a[3]))
        .collect();
    let mut auth_data = [0u8; 8];
    let (interval, auth_type) = match version {
        Version::V3 => (u16::from_be_bytes([msg[4], msg[5]]) & 0x0fff, 0),
        Version::V2 => {
            if msg.len() == addr_end + V2_AUTH_LEN {
                auth_data.copy_from_slice(&msg[addr_end..]);
            }
            (u16::from(msg[5]), msg[4])
        }
    };
    Ok((
        Advert {
            version,
            vrid,
            priority: msg[2],
            interval,
            auth_type,
            auth_data,
            addresses,
        },
        form,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let d: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        (0..d.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&d[i..i + 2], 16).unwrap())
            .collect()
    }

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    fn v3(vrid: u8, prio: u8, cs: u16, addrs: &[&str]) -> Advert {
        Advert {
            version: Version::V3,
            vrid,
            priority: prio,
            interval: cs,
            auth_type: 0,
            auth_data: [0; 8],
            addresses: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        }
    }

    /// Wrap a VRRP message in an IPv4 header (checksum left zero: the
    /// decoder does not check the IP header checksum, the kernel did).
    fn ip(src: Ipv4Addr, ttl: u8, msg: &[u8]) -> Vec<u8> {
        let mut p = hex("45c0 0000 0000 0000 0070 0000");
        p[2..4].copy_from_slice(&((20 + msg.len()) as u16).to_be_bytes());
        p[8] = ttl;
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&VRRP_GROUP.octets());
        p.extend_from_slice(msg);
        p
    }

    #[test]
    fn v3_pseudo_header_bytes_both_ways() {
        // vrid 51, priority 100, 1 s (100 cs), one address 10.0.0.100,
        // from 10.0.0.2; checksum computed by hand over the pseudo-header
        // 0a000002 e0000012 0070 000c and the message.
        let a = v3(51, 100, 100, &["10.0.0.100"]);
        let bytes = encode(&a, SRC, ChecksumForm::PseudoHeader);
        assert_eq!(bytes, hex("31 33 64 01  00 64 75 72  0a 00 00 64"));
        let r = decode(&ip(SRC, 255, &bytes)).unwrap();
        assert_eq!(r.advert, a);
        assert_eq!(r.checksum, ChecksumForm::PseudoHeader);
        assert_eq!((r.src, r.dst, r.ttl), (SRC, VRRP_GROUP, 255));
    }

    #[test]
    fn v3_rfc9568_bytes_both_ways() {
        let a = v3(51, 100, 100, &["10.0.0.100"]);
        let bytes = encode(&a, SRC, ChecksumForm::Plain);
        assert_eq!(bytes, hex("31 33 64 01  00 64 60 03  0a 00 00 64"));
        let r = decode(&ip(SRC, 255, &bytes)).unwrap();
        assert_eq!(r.advert, a);
        assert_eq!(r.checksum, ChecksumForm::Plain);
    }

    #[test]
    fn v2_bytes_both_ways() {
        let a = Advert {
            version: Version::V2,
            vrid: 7,
            priority: 150,
            interval: 1,
            auth_type: 0,
            auth_data: [0; 8],
            addresses: vec![
                "192.168.7.1".parse().unwrap(),
                "192.168.7.2".parse().unwrap(),
            ],
        };
        let bytes = encode(&a, SRC, ChecksumForm::PseudoHeader);
        assert_eq!(
            bytes,
            hex("21 07 96 02  00 01 b9 a0  c0 a8 07 01  c0 a8 07 02  00000000 00000000")
        );
        let r = decode(&ip(SRC, 255, &bytes)).unwrap();
        assert_eq!(r.advert, a);
        assert_eq!(r.checksum, ChecksumForm::Plain);
        assert_eq!(r.advert.interval_ms(), 1000);
    }

    /// IPv4 packets as keepalived 2.2.7 (Debian 12) sent them, captured
    /// with tcpdump in a namespace: vrid 51, priority 100, advert_int 1,
    /// VIP 10.0.0.100, from 10.0.0.2.
    const KEEPALIVED_V3: &str = "45c0 0020 0001 0000 ff70 d098 0a00 0002 e000 0012
                                 3133 6401 0064 7572 0a00 0064";
    const KEEPALIVED_V2: &str = "45c0 0028 0001 0000 ff70 d090 0a00 0002 e000 0012
                                 2133 6401 0001 7066 0a00 0064 0000 0000 0000 0000";

    #[test]
    fn keepalived_packets_decode_and_reencode_identically() {
        for (capture, version, interval) in [
            (KEEPALIVED_V3, Version::V3, 100),
            (KEEPALIVED_V2, Version::V2, 1),
        ] {
            let ip_bytes = hex(capture);
            let r = decode(&ip_bytes).unwrap();
            assert_eq!(r.ttl, 255);
            assert_eq!(r.src, SRC);
            assert_eq!(r.advert.version, version);
            assert_eq!(r.advert.vrid, 51);
            assert_eq!(r.advert.priority, 100);
            assert_eq!(r.advert.interval, interval);
            assert_eq!(r.advert.addresses, vec![Ipv4Addr::new(10, 0, 0, 100)]);
            let form = if version == Version::V3 {
                assert_eq!(
                    r.checksum,
                    ChecksumForm::PseudoHeader,
                    "Debian's keepalived form"
                );
                ChecksumForm::PseudoHeader
            } else {
                ChecksumForm::Plain
            };
            assert_eq!(encode(&r.advert, SRC, form), ip_bytes[20..].to_vec());
            assert_eq!(
                encode_ip(&r.advert, SRC, form, 1),
                ip_bytes,
                "same IP header too"
            );
        }
    }

    #[test]
    fn checksum_of_a_valid_message_is_zero() {
        for form in [ChecksumForm::PseudoHeader, ChecksumForm::Plain] {
            let bytes = encode(&v3(1, 255, 1, &["1.2.3.4", "5.6.7.8"]), SRC, form);
            assert_eq!(checksum(&bytes, form, SRC, VRRP_GROUP), 0);
        }
    }

    #[test]
    fn errors_name_the_vrid_when_known() {
        let good = encode(
            &v3(9, 100, 100, &["10.0.0.9"]),
            SRC,
            ChecksumForm::PseudoHeader,
        );
        let mut bad_sum = good.clone();
        bad_sum[7] ^= 1;
        assert_eq!(
            decode(&ip(SRC, 255, &bad_sum)),
            Err(DecodeError::Checksum { vrid: 9 })
        );
        let mut v4 = good.clone();
        v4[0] = 0x41;
        assert_eq!(decode(&ip(SRC, 255, &v4)).unwrap_err().vrid(), Some(9),);
        let mut ty = good.clone();
        ty[0] = 0x32;
        assert_eq!(
            decode(&ip(SRC, 255, &ty)),
            Err(DecodeError::Type { vrid: 9, ty: 2 })
        );
        let mut long = good.clone();
        long.extend_from_slice(&[0, 0, 0, 0]);
        assert!(matches!(
            decode(&ip(SRC, 255, &long)),
            Err(DecodeError::Length { vrid: 9, .. })
        ));
        assert_eq!(decode(&good[..3]), Err(DecodeError::TooShort(3)));
        let mut udp = ip(SRC, 255, &good);
        udp[9] = 17;
        assert_eq!(decode(&udp), Err(DecodeError::NotVrrp(17)));
        assert_eq!(DecodeError::TooShort(3).vrid(), None);
    }

    #[test]
    fn ttl_is_reported_not_judged() {
        let good = encode(
            &v3(9, 100, 100, &["10.0.0.9"]),
            SRC,
            ChecksumForm::PseudoHeader,
        );
        assert_eq!(decode(&ip(SRC, 64, &good)).unwrap().ttl, 64);
    }

    #[test]
    fn ethernet_padding_after_the_ip_packet_is_ignored() {
        let good = encode(
            &v3(9, 100, 100, &["10.0.0.9"]),
            SRC,
            ChecksumForm::PseudoHeader,
        );
        let mut p = ip(SRC, 255, &good);
        p.extend_from_slice(&[0; 14]);
        assert_eq!(decode(&p).unwrap().advert.vrid, 9);
    }

    #[test]
    fn v3_interval_is_twelve_bits() {
        let a = v3(1, 100, 4095, &["10.0.0.1"]);
        let bytes = encode(&a, SRC, ChecksumForm::Plain);
        assert_eq!(&bytes[4..6], &[0x0f, 0xff]);
        // reserved bits set by a sender are ignored
        let mut b = bytes.clone();
        b[4] |= 0xf0;
        let c = checksum(
            &{
                let mut z = b.clone();
                z[6] = 0;
                z[7] = 0;
                z
            },
            ChecksumForm::Plain,
            SRC,
            VRRP_GROUP,
        );
        b[6..8].copy_from_slice(&c.to_be_bytes());
        assert_eq!(
            decode_message(&b, SRC, VRRP_GROUP).unwrap().0.interval,
            4095
        );
    }

    /// A small deterministic generator: the tests need variety, not quality.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn random_adverts_round_trip_and_random_bytes_never_panic() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..5000 {
            let r = rng.next();
            let version = if r & 1 == 0 { Version::V2 } else { Version::V3 };
            let count = (r >> 8) as usize % 20;
            let a = Advert {
                version,
                vrid: (r >> 16) as u8,
                priority: (r >> 24) as u8,
                interval: match version {
                    Version::V2 => (r >> 32) as u8 as u16,
                    Version::V3 => (r >> 32) as u16 & 0x0fff,
                },
                auth_type: if version == Version::V2 {
                    (r >> 48) as u8
                } else {
                    0
                },
                auth_data: if version == Version::V2 {
                    rng.next().to_be_bytes()
                } else {
                    [0; 8]
                },
                addresses: (0..count)
                    .map(|_| Ipv4Addr::from(rng.next() as u32))
                    .collect(),
            };
            let src = Ipv4Addr::from(rng.next() as u32);
            let form = if r & 2 == 0 {
                ChecksumForm::PseudoHeader
            } else {
                ChecksumForm::Plain
            };
            let got = decode(&encode_ip(&a, src, form, 0)).unwrap();
            assert_eq!(got.advert, a);
            assert_eq!(got.src, src);
            // random garbage behind a valid IP header
            let len = (rng.next() % 64) as usize;
            let junk: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let _ = decode(&ip(src, 255, &junk));
            let _ = decode(&junk);
        }
    }

    #[test]
    fn decoder_never_panics_on_truncations() {
        let good = ip(
            SRC,
            255,
            &encode(
                &v3(1, 100, 100, &["10.0.0.1", "10.0.0.2"]),
                SRC,
                ChecksumForm::PseudoHeader,
            ),
        );
        for n in 0..good.len() {
            let _ = decode(&good[..n]);
        }
        for i in 0..good.len() {
            for bit in 0..8 {
                let mut p = good.clone();
                p[i] ^= 1 << bit;
                let _ = decode(&p);
            }
        }
    }
}
