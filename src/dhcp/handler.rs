//! The DHCP server logic of RFC 2131 §4.3, pure: a decoded request, the
//! pool it belongs to and the lease table in; the reply (bytes and where
//! to deliver them), the lease changes to persist and the events to publish
//! out. No I/O, no clock (the caller passes `now`), so every path is tested
//! with plain messages.
//!
//! Replies are encoded with `dhcproto` for the fixed header; the options are
//! laid out here because the client's parameter request list dictates their
//! order (RFC 2131 §4.3.1) and its maximum message size their number, and
//! `dhcproto` always sorts options by code.

use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, Message, MessageType, Opcode};
use dhcproto::{Decodable, Decoder, Encodable};

use super::leases::{
    infinite_expiry, Change, ClientKey, EventKind, Lease, LeaseEvent, LeaseState, LeaseTable,
    Origin,
};
use super::pool::{code, PoolRt};

/// Server-wide settings the handler needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Globals {
    pub decline_probation: u32,
    pub echo_client_id: bool,
    pub authoritative: bool,
    /// How long an offered address stays reserved for its client.
    pub offer_hold: u32,
    /// Answer BOOTP requests from static bindings (RFC 1534).
    pub bootp_static: bool,
}

impl Default for Globals {
    fn default() -> Globals {
        Globals {
            decline_probation: 86400,
            echo_client_id: true,
            authoritative: true,
            offer_hold: 30,
            bootp_static: false,
        }
    }
}

/// What the handler knows about the packet's arrival.
#[derive(Debug, Clone)]
pub struct Ctx<'a> {
    /// Unix seconds.
    pub now: u64,
    /// Server identifier when the pool configures none: the address the
    /// request was received on.
    pub default_sid: Ipv4Addr,
    /// The request came straight from the client's link (no relay) and its
    /// `ciaddr` is on the receiving interface's subnet: a reply to `ciaddr`
    /// can go to the client's hardware address without ARP. A unicast
    /// renewal routed to the server has its `ciaddr` elsewhere.
    pub ciaddr_on_link: bool,
    pub globals: &'a Globals,
}

/// Where a reply goes (RFC 2131 §4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// To the relay agent, port 67.
    Relay(Ipv4Addr),
    /// To the client's configured address, port 68.
    Unicast(Ipv4Addr),
    /// To 255.255.255.255:68 on the receiving interface.
    Broadcast,
    /// To `ip`:68 at hardware address `hw`, without ARP.
    Hardware { ip: Ipv4Addr, hw: Vec<u8> },
}

/// A reply ready to send.
#[derive(Debug, Clone)]
pub struct Reply {
    pub kind: MessageType,
    pub bytes: Vec<u8>,
    pub to: Delivery,
    /// Source address: the server identifier.
    pub from: Ipv4Addr,
    /// Must not leave before the lease changes are durable (an ACK).
    pub durable: bool,
    /// When the server read the request (set by the server, not by this
    /// pure handler): the ACK latency histogram measures from here.
    pub received: Option<std::time::Instant>,
}

/// Why a request got no reply (for counters and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Silence {
    /// Not a BOOTREQUEST or no message type.
    Malformed,
    /// A message type a server does not answer.
    Unexpected,
    /// Addressed to another server.
    OtherServer,
    /// No address left in the pool.
    Exhausted,
    /// Nothing to answer (no record, release/decline done, ...).
    Nothing,
    /// A DHCPINFORM without `ciaddr`: RFC 2131 §4.3.5 answers to
    /// `ciaddr`, and there is none.
    InformNoAddress,
    /// A BOOTP request (no message type) the server does not answer: BOOTP
    /// is off, or the client has no static binding.
    Bootp,
}

/// The handler's result.
#[derive(Debug, Default)]
pub struct Outcome {
    pub reply: Option<Reply>,
    pub silence: Option<Silence>,
    pub changes: Vec<Change>,
    pub events: Vec<LeaseEvent>,
    /// A SELECTING or INIT-REBOOT REQUEST without the requested address
    /// (option 50, a MUST for the client in RFC 2131 §4.3.2) answered for
    /// `ciaddr` or the client's pending offer or binding (counted).
    pub lenient: bool,
    /// The address an OFFER names.
    pub offered: Option<Ipv4Addr>,
    /// The OFFER names an address the client held neither bound, nor
    /// offered, nor by a static binding (new, or its old one reused): the
    /// server probes it first when ping-check is on (RFC 2131 §4.3.1).
    pub fresh: bool,
}

impl Outcome {
    fn silent(s: Silence) -> Outcome {
        Outcome {
            silence: Some(s),
            ..Default::default()
        }
    }

    fn lenient(mut self, lenient: bool) -> Outcome {
        self.lenient = lenient;
        self
    }
}

/// The request options the server reads, in the order they are handed to
/// `dhcproto`, and the length each must have (0: any non-zero length).
const READ_OPTIONS: [(u8, usize); 8] = [
    (code::MESSAGE_TYPE, 1),
    (code::SERVER_ID, 4),
    (code::REQUESTED_IP, 4),
    (code::LEASE_TIME, 4),
    (57, 2),
    (code::CLIENT_ID, 0),
    (55, 0),
    (code::HOSTNAME, 0),
];

/// Decode a received datagram.
///
/// `dhcproto` trusts option lengths in a few places (debug assertions,
/// subtractions that underflow, an `unwrap` on option 121), and stops at
/// the first option it cannot read. So the option areas are walked here
/// first (`each_option`: option overload and long options), and only the
/// options the server reads, with valid lengths, are passed on: no hostile
/// packet can make the decoder panic, and a bad option cannot hide the
/// message type behind it. Option 82 is echoed from the raw bytes
/// (`raw_option`), never re-encoded.
pub fn decode(bytes: &[u8]) -> Result<Message, dhcproto::error::DecodeError> {
    use dhcproto::error::DecodeError;
    if bytes.len() < 240 {
        return Err(DecodeError::NotEnoughBytes);
    }
    if bytes[2] > 16 {
        return Err(DecodeError::InvalidData(
            u32::from(bytes[2]),
            "hlen above 16",
        ));
    }
    if bytes[236..240] != MAGIC {
        return Err(DecodeError::InvalidData(0, "no DHCP magic cookie"));
    }
    // fixed-length options: the first valid instance; the others: every
    // instance, concatenated (RFC 3396)
    let mut found: [Option<Vec<u8>>; READ_OPTIONS.len()] = Default::default();
    let overload = each_option(bytes, &mut |c, v| {
        if let Some(k) = READ_OPTIONS.iter().position(|(rc, _)| *rc == c) {
            match (READ_OPTIONS[k].1, &mut found[k]) {
                (0, Some(have)) => have.extend_from_slice(v),
                (0, slot) => *slot = Some(v.to_vec()),
                (want, slot @ None) if v.len() == want => *slot = Some(v.to_vec()),
                _ => {}
            }
        }
    });
    let mut clean = Vec::with_capacity(320);
    clean.extend_from_slice(&bytes[..240]);
    // fields that hold options are no names
    if overload & OVERLOAD_FILE != 0 {
        clean[108..236].fill(0);
    }
    if overload & OVERLOAD_SNAME != 0 {
        clean[44..108].fill(0);
    }
    for (k, v) in found.iter().enumerate() {
        let Some(v) = v else { continue };
        let ok = !v.is_empty()
            && v.len() <= 255
            && (READ_OPTIONS[k].0 != code::HOSTNAME || std::str::from_utf8(v).is_ok());
        if ok {
            clean.push(READ_OPTIONS[k].0);
            clean.push(v.len() as u8);
            clean.extend_from_slice(v);
        }
    }
    clean.push(code::END);
    Message::decode(&mut Decoder::new(&clean))
}

const MAGIC: [u8; 4] = [99, 130, 83, 99];
/// Option overload (option 52, RFC 2132 §9.3) values: bits.
const OVERLOAD_FILE: u8 = 1;
const OVERLOAD_SNAME: u8 = 2;

/// Call `f` for every option of a packet, in the order RFC 2131 §4.1
/// reads them: the options field, then `file`, then `sname` when the
/// option overload (52) says they hold options. Returns the overload
/// value. A walk stops at the end option or at an option whose length
/// runs past its field.
pub fn each_option(packet: &[u8], f: &mut dyn FnMut(u8, &[u8])) -> u8 {
    if packet.len() < 240 || packet[236..240] != MAGIC {
        return 0;
    }
    let mut overload = 0;
    walk(&packet[240..], &mut |c, v| {
        if c == code::OVERLOAD && v.len() == 1 && v[0] <= 3 {
            overload = v[0];
        }
        f(c, v)
    });
    if overload & OVERLOAD_FILE != 0 {
        walk(&packet[108..236], f);
    }
    if overload & OVERLOAD_SNAME != 0 {
        walk(&packet[44..108], f);
    }
    overload
}

fn walk(area: &[u8], f: &mut dyn FnMut(u8, &[u8])) {
    let mut i = 0;
    while i < area.len() {
        let c = area[i];
        if c == code::END {
            break;
        }
        if c == 0 {
            i += 1;
            continue;
        }
        let Some(&len) = area.get(i + 1) else { break };
        let Some(v) = area.get(i + 2..i + 2 + len as usize) else {
            break;
        };
        f(c, v);
        i += 2 + len as usize;
    }
}

/// The raw value of option `want` in a packet, every instance
/// concatenated (RFC 3396), for options read or echoed byte for byte
/// (81, 82).
pub fn raw_option(packet: &[u8], want: u8) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    each_option(packet, &mut |c, v| {
        if c == want {
            out.get_or_insert_with(Vec::new).extend_from_slice(v);
        }
    });
    out
}

/// Relay agent information sub-options (RFC 3046 §2.0) the server reads.
pub mod relay {
    /// RFC 3527: the subnet the client is on, when `giaddr` is not.
    pub const LINK_SELECTION: u8 = 5;
    /// RFC 5107: the address the client must use as server identifier.
    pub const SERVER_ID_OVERRIDE: u8 = 11;
}

/// The value of sub-option `want` of the relay agent information
/// (option 82) of a relayed packet, as an address (both sub-options the
/// server reads are one). `None` when the packet has no `giaddr`: only a
/// relay agent adds these, and a client cannot steer the server with them.
pub fn relay_address(packet: &[u8], want: u8) -> Option<Ipv4Addr> {
    if packet.get(24..28)? == [0, 0, 0, 0] {
        return None;
    }
    let info = raw_option(packet, code::RELAY_AGENT_INFO)?;
    let mut i = 0;
    while i + 1 < info.len() {
        let (c, n) = (info[i], info[i + 1] as usize);
        let v = info.get(i + 2..i + 2 + n)?;
        if c == want {
            let a: [u8; 4] = v.try_into().ok()?;
            let ip = Ipv4Addr::from(a);
            return (!ip.is_unspecified()).then_some(ip);
        }
        i += 2 + n;
    }
    None
}

fn mac_string(hw: &[u8]) -> String {
    let mut s = String::with_capacity(hw.len() * 3);
    for (i, b) in hw.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The client's hardware address (`hlen` bytes of chaddr).
pub fn hw_of(req: &Message) -> Vec<u8> {
    let n = (req.hlen() as usize).min(16);
    req.chaddr()[..n.min(req.chaddr().len())].to_vec()
}

/// The client's identity in the lease table (client identifier, else
/// hardware address).
pub fn client_key(req: &Message) -> ClientKey {
    ClientKey::new(client_id(req).as_deref(), &hw_of(req))
}

fn client_id(req: &Message) -> Option<Vec<u8>> {
    match req.opts().get(dhcproto::v4::OptionCode::ClientIdentifier) {
        Some(DhcpOption::ClientIdentifier(c)) if !c.is_empty() => Some(c.clone()),
        _ => None,
    }
}

fn requested_ip(req: &Message) -> Option<Ipv4Addr> {
    match req.opts().get(dhcproto::v4::OptionCode::RequestedIpAddress) {
        Some(DhcpOption::RequestedIpAddress(ip)) if !ip.is_unspecified() => Some(*ip),
        _ => None,
    }
}

/// The messages of the DHCPNAKs (option 56).
const WRONG_NETWORK: &str = "requested address is not on this network";
const NOT_YOURS: &str = "requested address is not available to this client";

/// The lease time the client asks for (option 51).
fn requested_lease(req: &Message) -> Option<u32> {
    match req.opts().get(dhcproto::v4::OptionCode::AddressLeaseTime) {
        Some(DhcpOption::AddressLeaseTime(t)) => Some(*t),
        _ => None,
    }
}

/// The shortest lease a client can ask for: the lowest `lease-time` the
/// YANG module allows.
pub const MIN_LEASE: u32 = 60;

/// The lease time granted and its T1 and T2 (RFC 2131 §4.3.1: a client
/// that asks for a lease time (option 51) MAY get it). The pool's
/// `lease-time` is the most a client gets; a client asking for less gets
/// what it asks, but not under `MIN_LEASE`. A shortened lease keeps the
/// pool's T1 and T2 when they still come before its end, else gets the
/// default ones (1/2 and 7/8 of it).
pub fn lease_times(pool: &PoolRt, requested: Option<u32>) -> (u32, Option<u32>, Option<u32>) {
    let Some(asked) = requested.filter(|t| *t < pool.lease_time) else {
        return (pool.lease_time, pool.t1, pool.t2);
    };
    let lease = asked.max(MIN_LEASE).min(pool.lease_time);
    if lease == pool.lease_time {
        return (pool.lease_time, pool.t1, pool.t2);
    }
    match (pool.t1, pool.t2) {
        (Some(t1), Some(t2)) if t2 < lease => (lease, Some(t1), Some(t2)),
        _ => (
            lease,
            Some(lease / 2),
            Some((u64::from(lease) * 7 / 8) as u32),
        ),
    }
}

fn server_id_opt(req: &Message) -> Option<Ipv4Addr> {
    match req.opts().get(dhcproto::v4::OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
        _ => None,
    }
}

/// The client FQDN option (81, RFC 4702 §2): its flags and domain name
/// bytes (the deprecated RCODE fields skipped).
fn client_fqdn(raw: &[u8]) -> Option<(u8, Vec<u8>)> {
    let v = raw_option(raw, code::CLIENT_FQDN)?;
    (v.len() >= 3).then(|| (v[0], v[3..].to_vec()))
}

/// The name of a client FQDN option as text, for the lease: labels
/// joined by dots (canonical wire format, E bit set) or the ASCII form
/// without its trailing dot; None when empty or malformed.
fn fqdn_text(flags: u8, name: &[u8]) -> Option<String> {
    let text = if flags & fqdn::E != 0 {
        let mut labels = Vec::new();
        let mut i = 0;
        while i < name.len() {
            let n = name[i] as usize;
            if n == 0 {
                break;
            }
            labels.push(std::str::from_utf8(name.get(i + 1..i + 1 + n)?).ok()?);
            i += 1 + n;
        }
        labels.join(".")
    } else {
        std::str::from_utf8(name)
            .ok()?
            .trim_end_matches('.')
            .to_string()
    };
    (!text.is_empty()).then_some(text)
}

/// Client FQDN flags (RFC 4702 §2.1).
mod fqdn {
    /// The server performs the A RR updates.
    pub const S: u8 = 0x01;
    /// The server overrode the client's S bit.
    pub const O: u8 = 0x02;
    /// Canonical wire format of the name.
    pub const E: u8 = 0x04;
    /// No DNS updates at all.
    pub const N: u8 = 0x08;
}

fn hostname(req: &Message) -> Option<String> {
    match req.opts().get(dhcproto::v4::OptionCode::Hostname) {
        Some(DhcpOption::Hostname(h)) if !h.is_empty() => Some(h.clone()),
        _ => None,
    }
}

/// Handle one request for `pool`. `raw` is the received datagram (for the
/// relay agent information echo).
pub fn handle(
    table: &mut LeaseTable,
    pool: &PoolRt,
    ctx: &Ctx<'_>,
    req: &Message,
    raw: &[u8],
) -> Outcome {
    if req.opcode() != Opcode::BootRequest || req.hlen() > 16 {
        return Outcome::silent(Silence::Malformed);
    }
    let kind = req.opts().msg_type();
    if kind.is_none() && !ctx.globals.bootp_static {
        return Outcome::silent(Silence::Bootp);
    }
    let hw = hw_of(req);
    let cid = client_id(req);
    let key = ClientKey::new(cid.as_deref(), &hw);
    let src = pool.server_id.unwrap_or(ctx.default_sid);
    let times = lease_times(pool, requested_lease(req));
    let h = Handler {
        times,
        pool,
        ctx,
        req,
        raw,
        sid: relay_address(raw, relay::SERVER_ID_OVERRIDE).unwrap_or(src),
        src,
        hw,
        cid,
        key,
    };
    match kind {
        None => h.bootp(),
        Some(MessageType::Discover) => h.discover(table),
        Some(MessageType::Request) => h.request(table),
        Some(MessageType::Decline) => h.decline(table),
        Some(MessageType::Release) => h.release(table),
        Some(MessageType::Inform) => h.inform(),
        _ => Outcome::silent(Silence::Unexpected),
    }
}

struct Handler<'a> {
    pool: &'a PoolRt,
    ctx: &'a Ctx<'a>,
    req: &'a Message,
    raw: &'a [u8],
    /// The server identifier the client sees (option 54): the pool's, or
    /// the relay agent's override (RFC 5107), which the client then uses
    /// in its requests.
    sid: Ipv4Addr,
    /// Source address of the replies: the pool's server identifier (an
    /// override names the relay agent's address, not one of the server's).
    src: Ipv4Addr,
    hw: Vec<u8>,
    cid: Option<Vec<u8>>,
    /// The client's identity, computed once per request.
    key: ClientKey,
    /// Lease time, T1 and T2 granted to this request (`lease_times`).
    times: (u32, Option<u32>, Option<u32>),
}

impl Handler<'_> {
    fn key(&self) -> &ClientKey {
        &self.key
    }

    /// The statically bound address of this client in the pool.
    fn static_ip(&self) -> Option<Ipv4Addr> {
        if self.pool.static_by_mac.is_empty() {
            return None;
        }
        self.pool.static_by_mac.get(&mac_string(&self.hw)).copied()
    }

    /// Whether the client may have `ip` now.
    fn grantable(&self, table: &LeaseTable, ip: Ipv4Addr) -> bool {
        if let Some(s) = self.static_ip() {
            return s == ip;
        }
        self.pool.dynamic(ip)
            && table.available(ip, self.key(), self.ctx.now)
            && self.mine_in_split(table, ip)
    }

    /// In a split (both routers may be serving, cut from each other),
    /// whether this side may give `ip` to the client: an address of its own
    /// half, or one the client holds here already (an active binding, or
    /// this side's offer, which may come from the other half once this
    /// one is used up). A free address of the other half, released or
    /// expired ones included, is the other side's to hand out: giving it
    /// back to its old client here could give it twice.
    fn mine_in_split(&self, table: &LeaseTable, ip: Ipv4Addr) -> bool {
        let Some(half) = self.pool.split else {
            return true;
        };
        let (key, now) = (self.key(), self.ctx.now);
        half.contains(ip)
            || table.get(ip).is_some_and(|l| {
                l.state == LeaseState::Bound && l.is_client(key) && l.expires > now
            })
            || table
                .offer(ip)
                .is_some_and(|o| o.is_client(key) && o.expires > now)
    }

    fn lease(&self, ip: Ipv4Addr, state: LeaseState, lifetime: u32, expires: u64) -> Lease {
        Lease {
            ip,
            pool: self.pool.name.clone(),
            hw: self.hw.clone(),
            client_id: self.cid.clone(),
            hostname: hostname(self.req).or_else(|| {
                client_fqdn(self.raw).and_then(|(flags, name)| fqdn_text(flags, &name))
            }),
            state,
            lifetime,
            expires,
            origin: Origin::Local,
        }
    }

    fn expiry(&self, lifetime: u32) -> u64 {
        if lifetime == u32::MAX {
            infinite_expiry(self.ctx.now)
        } else {
            self.ctx.now + u64::from(lifetime)
        }
    }

    /// §4.3.1: choose an address (static binding, the client's previous
    /// address, the requested one, a free one) and hold it.
    fn discover(&self, table: &mut LeaseTable) -> Outcome {
        let key = self.key();
        let now = self.ctx.now;
        let ip = if let Some(s) = self.static_ip() {
            Some(s)
        } else {
            let free = |ip: &Ipv4Addr| {
                self.pool.dynamic(*ip)
                    && table.available(*ip, key, now)
                    && self.mine_in_split(table, *ip)
            };
            let previous = table.client_ip(key).filter(free);
            let requested = requested_ip(self.req).filter(free);
            previous
                .or(requested)
                .or_else(|| table.allocate(self.pool, key, now))
        };
        let Some(ip) = ip else {
            return Outcome::silent(Silence::Exhausted);
        };
        let hold = self.ctx.globals.offer_hold;
        let bound_here = table
            .get(ip)
            .is_some_and(|l| l.state == LeaseState::Bound && l.is_client(key) && l.expires > now);
        let offered_here = table
            .offer(ip)
            .is_some_and(|o| o.is_client(key) && o.expires > now);
        if !bound_here {
            table.hold(self.lease(ip, LeaseState::Offered, self.times.0, now + u64::from(hold)));
        }
        Outcome {
            reply: Some(self.reply(MessageType::Offer, ip, true)),
            offered: Some(ip),
            fresh: !bound_here && !offered_here && self.static_ip().is_none(),
            ..Default::default()
        }
    }

    /// §4.3.2, by client state.
    fn request(&self, table: &mut LeaseTable) -> Outcome {
        let key = self.key();
        let ciaddr = self.req.ciaddr();
        if let Some(sid) = server_id_opt(self.req) {
            // SELECTING
            if sid != self.sid {
                table.drop_offer(key);
                return Outcome::silent(Silence::OtherServer);
            }
            let Some((ip, lenient)) = self.requested(table) else {
                return Outcome::silent(Silence::Malformed);
            };
            let out = if self.grantable(table, ip) && !self.bound_elsewhere(table, ip) {
                self.bind(table, ip)
            } else if !self.mine_in_split(table, ip) && !self.anothers(table, ip) {
                table.drop_offer(key);
                Outcome::silent(Silence::OtherServer)
            } else {
                self.nak(NOT_YOURS)
            };
            return out.lenient(lenient);
        }
        if ciaddr.is_unspecified() {
            // INIT-REBOOT: the client checks its remembered address
            let Some((ip, lenient)) = self.requested(table) else {
                return Outcome::silent(Silence::Malformed);
            };
            return self.verify(table, ip, true).lenient(lenient);
        }
        // RENEWING (unicast) or REBINDING (broadcast): extend ciaddr
        self.verify(table, ciaddr, false)
    }

    /// The address a SELECTING or INIT-REBOOT request asks for: option 50;
    /// without it (a client MUST send it, some do not, and relays have
    /// been seen to strip it), `ciaddr`, else the client's pending offer,
    /// else its binding in this pool. The flag says the leniency was used.
    fn requested(&self, table: &LeaseTable) -> Option<(Ipv4Addr, bool)> {
        if let Some(ip) = requested_ip(self.req) {
            return Some((ip, false));
        }
        let ciaddr = self.req.ciaddr();
        let ip = if !ciaddr.is_unspecified() {
            Some(ciaddr)
        } else {
            table
                .client_offer(self.key())
                .filter(|ip| table.offer(*ip).is_some_and(|o| o.expires > self.ctx.now))
                .or_else(|| self.binding(table).map(|l| l.ip))
        };
        ip.map(|ip| (ip, true))
    }

    /// INIT-REBOOT, RENEWING and REBINDING: the client says it has `ip`;
    /// check it (§4.3.2).
    ///
    /// An address on the wrong network is NAKed, whoever asks. A client
    /// the server has a live record of in this pool (a binding, an offer,
    /// a static binding) gets its own address and a NAK for any other: another
    /// client's, one outside the pool, or a free one while it holds a
    /// binding here (one client, one binding per subnet). `authoritative`
    /// governs only clients without a record: for an address it has no
    /// record of either, an INIT-REBOOT gets silence (§4.3.2 MUST: another
    /// server on the wire may own it); an address it knows as another
    /// client's is NAKed anyway (in hot backup, the partner's leases are
    /// records too).
    fn verify(&self, table: &mut LeaseTable, ip: Ipv4Addr, init_reboot: bool) -> Outcome {
        if !self.pool.in_subnet(ip) {
            return self.nak(WRONG_NETWORK);
        }
        if self.known(table) {
            return if self.grantable(table, ip) && !self.bound_elsewhere(table, ip) {
                self.bind(table, ip)
            } else {
                self.nak(NOT_YOURS)
            };
        }
        let address_known =
            table.get(ip).is_some() || self.pool.static_by_mac.values().any(|s| *s == ip);
        if init_reboot && !address_known {
            return Outcome::silent(Silence::Nothing);
        }
        if self.grantable(table, ip) {
            self.bind(table, ip)
        } else {
            self.nak_if(self.ctx.globals.authoritative || self.anothers(table, ip))
        }
    }

    /// The client's lease in this pool (any state), if the table has one.
    fn binding<'t>(&self, table: &'t LeaseTable) -> Option<&'t Lease> {
        table
            .client_lease(self.key())
            .filter(|l| l.pool == self.pool.name)
    }

    /// Whether the server has a live record of the client in this pool: a
    /// binding or an offer not lapsed, or a static binding. A released or
    /// expired lease does not count: the client may since have been bound
    /// by another server sharing the subnet, which a NAK would disturb.
    fn known(&self, table: &LeaseTable) -> bool {
        let now = self.ctx.now;
        self.static_ip().is_some()
            || self
                .binding(table)
                .is_some_and(|l| l.state == LeaseState::Bound && l.expires > now)
            || table.client_offer(self.key()).is_some_and(|ip| {
                self.pool.in_subnet(ip) && table.offer(ip).is_some_and(|o| o.expires > now)
            })
    }

    /// Whether the client holds an active binding in this pool on an
    /// address other than `ip`: granting `ip` would give it two.
    fn bound_elsewhere(&self, table: &LeaseTable, ip: Ipv4Addr) -> bool {
        self.binding(table)
            .is_some_and(|l| l.ip != ip && l.state == LeaseState::Bound && l.expires > self.ctx.now)
    }

    /// Whether the table holds `ip` as another client's lease. The server
    /// then knows the client's notion of its address is wrong, and RFC
    /// 2131 §4.3.2 says it SHOULD NAK (INIT-REBOOT; RENEWING and REBINDING
    /// "check 'ciaddr' for correctness"): it stays silent only when it has
    /// no record. Not being authoritative covers addresses this server
    /// knows nothing of; this one it knows. It is how the loser of a hot
    /// backup merge (the partner's binding of the address won) learns it
    /// lost, instead of keeping an address another client holds.
    fn anothers(&self, table: &LeaseTable, ip: Ipv4Addr) -> bool {
        table.get(ip).is_some_and(|l| !l.is_client(self.key()))
    }

    fn nak_if(&self, authoritative: bool) -> Outcome {
        if authoritative {
            self.nak(NOT_YOURS)
        } else {
            Outcome::silent(Silence::Nothing)
        }
    }

    fn bind(&self, table: &mut LeaseTable, ip: Ipv4Addr) -> Outcome {
        let key = self.key();
        let lifetime = self.times.0;
        let renewed = table
            .get(ip)
            .is_some_and(|l| l.state == LeaseState::Bound && l.is_client(key));
        let lease = self.lease(ip, LeaseState::Bound, lifetime, self.expiry(lifetime));
        table.insert(lease.clone());
        Outcome {
            reply: Some(self.reply(MessageType::Ack, ip, true)),
            silence: None,
            changes: vec![Change::Upsert(lease.clone())],
            events: vec![LeaseEvent {
                kind: if renewed {
                    EventKind::Renewed
                } else {
                    EventKind::Bound
                },
                lease,
            }],
            ..Default::default()
        }
    }

    /// §4.3.3: the address is in use elsewhere; quarantine it.
    fn decline(&self, table: &mut LeaseTable) -> Outcome {
        if server_id_opt(self.req) != Some(self.sid) {
            return Outcome::silent(Silence::OtherServer);
        }
        let Some(ip) = requested_ip(self.req) else {
            return Outcome::silent(Silence::Malformed);
        };
        let ours = table.get(ip).is_some_and(|l| l.is_client(self.key()))
            || table.offer(ip).is_some_and(|l| l.is_client(self.key()));
        if !self.pool.dynamic(ip) || !ours {
            return Outcome::silent(Silence::Nothing);
        }
        let probation = self.ctx.globals.decline_probation;
        let mut lease = self.lease(
            ip,
            LeaseState::Declined,
            probation,
            self.ctx.now + u64::from(probation),
        );
        lease.hostname = None;
        let mut out = Outcome::silent(Silence::Nothing);
        if probation == 0 {
            table.insert(lease.clone());
            table.remove(ip);
            out.changes.push(Change::Delete(ip));
        } else {
            table.insert(lease.clone());
            out.changes.push(Change::Upsert(lease.clone()));
        }
        out.events.push(LeaseEvent {
            kind: EventKind::Declined,
            lease,
        });
        out
    }

    /// §4.3.4: the client gives its address back.
    fn release(&self, table: &mut LeaseTable) -> Outcome {
        if server_id_opt(self.req).is_some_and(|s| s != self.sid) {
            return Outcome::silent(Silence::OtherServer);
        }
        let ip = self.req.ciaddr();
        let Some(l) = table.get(ip) else {
            return Outcome::silent(Silence::Nothing);
        };
        if !l.is_client(self.key()) || l.state != LeaseState::Bound {
            return Outcome::silent(Silence::Nothing);
        }
        let mut l = l.clone();
        l.state = LeaseState::Released;
        // a release is newer than the grant it ends, also within the
        // grant's second: the partner orders versions by their second
        // (`leases::cmp_versions`) and would keep the binding on a tie
        l.expires = self.ctx.now.max(l.changed_at() + 1);
        table.insert(l.clone());
        Outcome {
            reply: None,
            silence: Some(Silence::Nothing),
            changes: vec![Change::Upsert(l.clone())],
            events: vec![LeaseEvent {
                kind: EventKind::Released,
                lease: l,
            }],
            ..Default::default()
        }
    }

    /// RFC 1534 §2: a BOOTP client gets its static binding, for good (no
    /// lease to record: the binding is configuration), in a BOOTREPLY
    /// without DHCP options; a client without one gets nothing.
    fn bootp(&self) -> Outcome {
        let Some(ip) = self.static_ip() else {
            return Outcome::silent(Silence::Bootp);
        };
        Outcome {
            reply: Some(self.reply(MessageType::Ack, ip, false)),
            ..Default::default()
        }
    }

    /// §4.3.5: configuration only, no lease, sent to `ciaddr`; without
    /// one there is nowhere to send it.
    fn inform(&self) -> Outcome {
        if self.req.ciaddr().is_unspecified() {
            return Outcome::silent(Silence::InformNoAddress);
        }
        Outcome {
            reply: Some(self.reply(MessageType::Ack, Ipv4Addr::UNSPECIFIED, false)),
            ..Default::default()
        }
    }

    /// A DHCPNAK, with `why` as its message (option 56, a SHOULD of RFC
    /// 2131 table 3).
    fn nak(&self, why: &str) -> Outcome {
        Outcome {
            reply: Some(self.build(MessageType::Nak, Ipv4Addr::UNSPECIFIED, false, Some(why))),
            ..Default::default()
        }
    }

    fn reply(&self, kind: MessageType, yiaddr: Ipv4Addr, with_lease: bool) -> Reply {
        self.build(kind, yiaddr, with_lease, None)
    }

    /// Build a reply (RFC 2131 table 3) and choose its delivery (§4.1).
    fn build(
        &self,
        kind: MessageType,
        yiaddr: Ipv4Addr,
        with_lease: bool,
        message: Option<&str>,
    ) -> Reply {
        let req = self.req;
        let nak = kind == MessageType::Nak;
        let inform = req.opts().msg_type() == Some(MessageType::Inform);
        let mut m = Message::default();
        m.set_opcode(Opcode::BootReply)
            .set_htype(req.htype())
            .set_xid(req.xid())
            .set_giaddr(req.giaddr())
            .set_yiaddr(yiaddr);
        m.set_chaddr(&req.chaddr()[..(req.hlen() as usize).min(16)]);
        let mut flags = req.flags();
        if nak && !req.giaddr().is_unspecified() {
            flags = flags.set_broadcast();
        }
        m.set_flags(flags);
        if kind == MessageType::Ack {
            m.set_ciaddr(req.ciaddr());
        }
        if !nak {
            if let Some(s) = self.pool.siaddr {
                m.set_siaddr(s);
            }
            if let Some(f) = &self.pool.boot_file {
                m.set_fname_str(f);
            }
        }
        let mut bytes = m.to_vec().unwrap_or_default();
        // The header encoder writes no option area for an empty option
        // set: the options follow, laid out by `options`.
        bytes.truncate(240);
        self.options(&mut bytes, kind, with_lease && !inform, message);
        let to = if !req.giaddr().is_unspecified() {
            Delivery::Relay(req.giaddr())
        } else if nak {
            Delivery::Broadcast
        } else if !req.ciaddr().is_unspecified() {
            // unicast to ciaddr (§4.1); on the client's own link straight
            // to its hardware address: no ARP to wait for (a client slow
            // to answer it, a new master's cold cache after a takeover)
            if self.ctx.ciaddr_on_link && self.hw.len() == 6 {
                Delivery::Hardware {
                    ip: req.ciaddr(),
                    hw: self.hw.clone(),
                }
            } else {
                Delivery::Unicast(req.ciaddr())
            }
        } else if req.flags().broadcast() || yiaddr.is_unspecified() || self.hw.len() != 6 {
            Delivery::Broadcast
        } else {
            Delivery::Hardware {
                ip: yiaddr,
                hw: self.hw.clone(),
            }
        };
        Reply {
            kind,
            bytes,
            to,
            from: self.src,
            durable: kind == MessageType::Ack && with_lease,
            received: None,
        }
    }

    /// The option area: message type, server id and the lease times first
    /// (RFC 2131 MUSTs), then the pool's options in the order of the
    /// client's parameter request list, then the unrequested ones; the
    /// client id and relay information echoes last. Options that would make
    /// the message exceed the client's maximum size are left out.
    fn options(
        &self,
        out: &mut Vec<u8>,
        kind: MessageType,
        with_lease: bool,
        message: Option<&str>,
    ) {
        let req = self.req;
        let max_msg = match req.opts().get(dhcproto::v4::OptionCode::MaxMessageSize) {
            Some(DhcpOption::MaxMessageSize(n)) => (*n as usize).max(576),
            _ => 576,
        };
        // IP + UDP headers count in the maximum (RFC 2132 §9.10); keep one
        // byte for the end option.
        let limit = max_msg.saturating_sub(28).min(1472) - 1;
        let mut tail: Vec<(u8, Vec<u8>)> = Vec::new();
        // RFC 4702 §4: a server that updates no DNS answers the client
        // FQDN option with N set, S clear, O set when the client asked for
        // S, E as the client's, RCODEs 255, and the client's name
        if let Some((flags, name)) = client_fqdn(self.raw).filter(|_| kind != MessageType::Nak) {
            let mut f = fqdn::N | (flags & fqdn::E);
            if flags & fqdn::S != 0 {
                f |= fqdn::O;
            }
            let mut v = vec![f, 255, 255];
            v.extend_from_slice(&name);
            tail.push((code::CLIENT_FQDN, v));
        }
        if self.ctx.globals.echo_client_id {
            if let Some(c) = &self.cid {
                tail.push((code::CLIENT_ID, c.clone()));
            }
        }
        // RFC 3046 §2.2: echoed to the relay agent, last and whole; the
        // relay strips it, so it does not count against the client's
        // maximum (the reply to a relay goes by UDP, fragments allowed);
        // a reply that goes to the client directly carries none
        let relay_echo = if req.giaddr().is_unspecified() {
            None
        } else {
            raw_option(self.raw, code::RELAY_AGENT_INFO)
        };
        // a value longer than 255 bytes goes out as consecutive instances
        // (RFC 3396 §5), all of them or none
        let push = |out: &mut Vec<u8>, c: u8, v: &[u8], budget: usize| -> bool {
            let pieces = v.len().div_ceil(255).max(1);
            if out.len() + 2 * pieces + v.len() > budget {
                return false;
            }
            if v.is_empty() {
                out.extend_from_slice(&[c, 0]);
            }
            for piece in v.chunks(255) {
                out.push(c);
                out.push(piece.len() as u8);
                out.extend_from_slice(piece);
            }
            true
        };
        // a BOOTREPLY (RFC 1534) has the configuration options only
        let bootp = req.opts().msg_type().is_none();
        if !bootp {
            let mut t = Vec::with_capacity(16);
            DhcpOption::MessageType(kind)
                .encode(&mut dhcproto::Encoder::new(&mut t))
                .ok();
            out.extend_from_slice(&t);
            push(out, code::SERVER_ID, &self.sid.octets(), usize::MAX);
        }
        if let Some(m) = message {
            push(out, code::MESSAGE, m.as_bytes(), usize::MAX);
        }
        let nak = kind == MessageType::Nak;
        if with_lease {
            let (lease, t1, t2) = self.times;
            push(out, code::LEASE_TIME, &lease.to_be_bytes(), usize::MAX);
            if let (Some(t1), Some(t2)) = (t1, t2) {
                push(out, code::RENEWAL_TIME, &t1.to_be_bytes(), usize::MAX);
                push(out, code::REBINDING_TIME, &t2.to_be_bytes(), usize::MAX);
            }
        }
        // the echoes to the client (FQDN, client id) keep their room in
        // the client's maximum when they fit beside what is in already
        // (and 3 bytes for option 52); one that does not is left out
        // rather than crowding out the pool's options (found by fuzzing:
        // a 405-byte FQDN made a 1,508-byte reply)
        let mut tail_len = 0;
        tail.retain(|(_, v)| {
            let n = v.len() + 2 * v.len().div_ceil(255).max(1);
            let fits = out.len() + tail_len + n + 3 <= limit;
            if fits {
                tail_len += n;
            }
            fits
        });
        if !nak {
            // what does not fit in the options field goes to 'file' and
            // 'sname' when the reply leaves them empty (option overload,
            // RFC 2131 §4.1, RFC 2132 §9.3); 3 bytes kept for option 52
            let mut areas: Vec<(usize, usize, u8)> = Vec::new();
            if !bootp {
                if self.pool.boot_file.is_none() {
                    areas.push((108, 236, OVERLOAD_FILE));
                }
                areas.push((44, 108, OVERLOAD_SNAME));
            }
            let room = if areas.is_empty() { 0 } else { 3 };
            let budget = limit.saturating_sub(tail_len).saturating_sub(room);
            let mut overflow: Vec<(u8, &[u8])> = Vec::new();
            let mut sent = [false; 256];
            let mut order: Vec<(u8, &[u8])> = Vec::with_capacity(self.pool.options.len());
            if let Some(DhcpOption::ParameterRequestList(prl)) = req
                .opts()
                .get(dhcproto::v4::OptionCode::ParameterRequestList)
            {
                for c in prl {
                    let c = u8::from(*c);
                    if sent[c as usize] {
                        continue;
                    }
                    if let Some(v) = self.pool.options.get(&c) {
                        sent[c as usize] = true;
                        order.push((c, v));
                    }
                }
            }
            for (c, v) in &self.pool.options {
                if !sent[*c as usize] {
                    order.push((*c, v));
                }
            }
            for (c, v) in order {
                if !push(out, c, v, budget) {
                    overflow.push((c, v));
                }
            }
            let mut overload = 0;
            let mut at: Vec<usize> = areas.iter().map(|a| a.0).collect();
            for (c, v) in overflow {
                // whole options only, each area closed by an end option
                let fits = areas
                    .iter()
                    .zip(at.iter())
                    .position(|((_, end, _), pos)| pos + 2 + v.len() < *end);
                if let Some(k) = fits.filter(|_| v.len() <= 255) {
                    let p = at[k];
                    out[p] = c;
                    out[p + 1] = v.len() as u8;
                    out[p + 2..p + 2 + v.len()].copy_from_slice(v);
                    at[k] = p + 2 + v.len();
                    overload |= areas[k].2;
                }
            }
            if overload != 0 {
                for (k, (start, end, bit)) in areas.iter().enumerate() {
                    if overload & bit != 0 {
                        out[at[k]] = code::END;
                        out[at[k] + 1..*end].fill(0);
                    } else {
                        debug_assert!(out[*start..*end].iter().all(|b| *b == 0));
                    }
                }
                push(out, code::OVERLOAD, &[overload], usize::MAX);
            }
        }
        for (c, v) in &tail {
            push(out, *c, v, usize::MAX);
        }
        if let Some(r) = relay_echo {
            push(out, code::RELAY_AGENT_INFO, &r, usize::MAX);
        }
        out.push(code::END);
        // BOOTP minimum (RFC 1542 §3.3): some clients drop shorter replies
        if out.len() < 300 {
            out.resize(300, 0);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use dhcproto::v4::{DhcpOption, Flags, OptionCode};

    use super::*;
    use crate::dhcp::config::{OptionValue, Pool};
    use crate::dhcp::leases::Merge;

    pub(crate) fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    pub(crate) fn cfg_pool() -> Pool {
        Pool {
            gateways: vec![ip("10.0.0.1")],
            sections: vec![(ip("10.0.0.10"), ip("10.0.0.14"))],
            excluded: vec![(ip("10.0.0.10"), ip("10.0.0.10"))],
            dns_servers: vec![ip("10.0.0.53"), ip("10.0.0.54")],
            domain_name: Some("example.test".into()),
            next_server: Some(ip("10.0.0.2")),
            boot_file: Some("pxe.0".into()),
            options: BTreeMap::from([(42, OptionValue::Addresses(vec![ip("10.0.0.123")]))]),
            static_binds: BTreeMap::from([(ip("10.0.0.200"), "02:00:00:00:00:99".to_string())]),
            ..Pool::for_test("p1", "10.0.0.0")
        }
    }

    pub(crate) const SID: &str = "10.0.0.1";

    pub(crate) struct T {
        pub table: LeaseTable,
        pub pool: PoolRt,
        pub g: Globals,
        pub now: u64,
        /// `Ctx::ciaddr_on_link`.
        pub on_link: bool,
    }

    impl T {
        pub(crate) fn new() -> T {
            T {
                table: LeaseTable::new(),
                pool: PoolRt::from(&cfg_pool()),
                g: Globals::default(),
                now: 1_000_000,
                on_link: false,
            }
        }
        pub(crate) fn run(&mut self, m: &Message) -> Outcome {
            let raw = m.to_vec().unwrap();
            let ctx = Ctx {
                now: self.now,
                default_sid: ip(SID),
                ciaddr_on_link: self.on_link,
                globals: &self.g,
            };
            handle(&mut self.table, &self.pool, &ctx, m, &raw)
        }
        /// Like `run`, with raw options added at the end of the option
        /// area (dhcproto encodes an option 82 twice).
        pub(crate) fn run_with(&mut self, m: &Message, extra: &[u8]) -> Outcome {
            let mut raw = m.to_vec().unwrap();
            let mut end = 240;
            while raw[end] != 255 {
                end += 2 + raw[end + 1] as usize;
            }
            raw.truncate(end);
            raw.extend_from_slice(extra);
            raw.push(255);
            let ctx = Ctx {
                now: self.now,
                default_sid: ip(SID),
                ciaddr_on_link: self.on_link,
                globals: &self.g,
            };
            handle(&mut self.table, &self.pool, &ctx, m, &raw)
        }
        /// DISCOVER + REQUEST: the bound address.
        pub(crate) fn dora(&mut self, mac: u8) -> Ipv4Addr {
            let o = self.run(&msg(MessageType::Discover, mac)).reply.unwrap();
            let y = reply(&o).yiaddr();
            let mut r = msg(MessageType::Request, mac);
            let sid = self.pool.server_id.unwrap_or(ip(SID));
            r.opts_mut().insert(DhcpOption::ServerIdentifier(sid));
            r.opts_mut().insert(DhcpOption::RequestedIpAddress(y));
            let a = self.run(&r).reply.unwrap();
            assert_eq!(a.kind, MessageType::Ack);
            y
        }
    }

    pub(crate) fn msg(kind: MessageType, mac: u8) -> Message {
        let mut m = Message::default();
        m.set_chaddr(&[2, 0, 0, 0, 0, mac])
            .set_xid(0x1234_5600 + u32::from(mac));
        m.opts_mut().insert(DhcpOption::MessageType(kind));
        m
    }

    pub(crate) fn reply(r: &Reply) -> Message {
        Message::decode(&mut Decoder::new(&r.bytes)).unwrap()
    }

    /// Option codes of a reply, in wire order.
    fn codes(r: &Reply) -> Vec<u8> {
        let mut out = Vec::new();
        let b = &r.bytes;
        let mut i = 240;
        while i < b.len() && b[i] != 255 {
            out.push(b[i]);
            i += 2 + b[i + 1] as usize;
        }
        out
    }

    #[test]
    fn discover_offers_with_options_in_request_order() {
        let mut t = T::new();
        let mut d = msg(MessageType::Discover, 1);
        d.opts_mut().insert(DhcpOption::ParameterRequestList(vec![
            OptionCode::DomainName,
            OptionCode::DomainNameServer,
            OptionCode::Router,
            OptionCode::SubnetMask,
        ]));
        d.opts_mut()
            .insert(DhcpOption::ClientIdentifier(vec![1, 2, 3]));
        let out = t.run(&d);
        let r = out.reply.unwrap();
        assert_eq!(r.kind, MessageType::Offer);
        assert!(!r.durable);
        let m = reply(&r);
        // .10 is excluded
        assert_eq!(m.yiaddr(), ip("10.0.0.11"));
        assert_eq!(m.opcode(), Opcode::BootReply);
        assert_eq!(m.xid(), d.xid());
        assert_eq!(m.siaddr(), ip("10.0.0.2"));
        assert_eq!(&r.bytes[108..114], b"pxe.0\0");
        assert_eq!(
            r.to,
            Delivery::Hardware {
                ip: ip("10.0.0.11"),
                hw: vec![2, 0, 0, 0, 0, 1]
            }
        );
        assert_eq!(r.from, ip(SID));
        assert_eq!(codes(&r), vec![53, 54, 51, 58, 59, 15, 6, 3, 1, 42, 61]);
        let o = m.opts();
        assert_eq!(
            o.get(OptionCode::AddressLeaseTime),
            Some(&DhcpOption::AddressLeaseTime(3600))
        );
        assert_eq!(o.get(OptionCode::Renewal), Some(&DhcpOption::Renewal(1800)));
        assert_eq!(
            o.get(OptionCode::Rebinding),
            Some(&DhcpOption::Rebinding(3150))
        );
        assert_eq!(
            o.get(OptionCode::ClientIdentifier),
            Some(&DhcpOption::ClientIdentifier(vec![1, 2, 3]))
        );
        assert_eq!(
            o.get(OptionCode::DomainNameServer),
            Some(&DhcpOption::DomainNameServer(vec![
                ip("10.0.0.53"),
                ip("10.0.0.54")
            ]))
        );
        assert!(r.bytes.len() >= 300);
        // the offer is held: a second client gets another address
        let r2 = t.run(&msg(MessageType::Discover, 2)).reply.unwrap();
        assert_eq!(reply(&r2).yiaddr(), ip("10.0.0.12"));
        // and the first client's retransmission gets the same one
        let r3 = t.run(&d).reply.unwrap();
        assert_eq!(reply(&r3).yiaddr(), ip("10.0.0.11"));
    }

    #[test]
    fn delivery_follows_rfc2131_4_1() {
        let mut t = T::new();
        let mut d = msg(MessageType::Discover, 1);
        d.set_flags(Flags::default().set_broadcast());
        assert_eq!(t.run(&d).reply.unwrap().to, Delivery::Broadcast);
        let mut d = msg(MessageType::Discover, 2);
        d.set_giaddr(ip("10.0.0.254"));
        // relay agent information, echoed byte for byte, last
        let r = t
            .run_with(&d, &[82, 5, 1, 3, b'e', b't', b'h'])
            .reply
            .unwrap();
        assert_eq!(r.to, Delivery::Relay(ip("10.0.0.254")));
        assert_eq!(*codes(&r).last().unwrap(), 82);
        assert_eq!(raw_option(&r.bytes, 82), Some(vec![1, 3, b'e', b't', b'h']));
        assert_eq!(reply(&r).giaddr(), ip("10.0.0.254"));
    }

    fn relay_info(info: &[u8]) -> Vec<u8> {
        let mut v = vec![82, info.len() as u8];
        v.extend_from_slice(info);
        v
    }

    /// RFC 3046 §2.2: option 82 goes back to the relay agent only; RFC
    /// 5107: the relay's server identifier override is the option 54 of
    /// the replies and is accepted in the client's requests, while the
    /// replies leave from the server's own address; a client (no giaddr)
    /// can override nothing.
    #[test]
    fn relay_information_echo_and_server_identifier_override() {
        let mut t = T::new();
        let d = msg(MessageType::Discover, 1);
        let r = t
            .run_with(&d, &relay_info(&[1, 2, b'e', b'0']))
            .reply
            .unwrap();
        assert!(!codes(&r).contains(&82), "not echoed to the client");
        let over = ip("10.0.0.250");
        let info = vec![1, 2, b'e', b'0', 11, 4, 10, 0, 0, 250];
        let mut d = msg(MessageType::Discover, 2);
        d.set_giaddr(ip("10.0.0.254"));
        let o = t.run_with(&d, &relay_info(&info)).reply.unwrap();
        assert_eq!(raw_option(&o.bytes, 82), Some(info.clone()));
        assert_eq!(raw_option(&o.bytes, 54), Some(over.octets().to_vec()));
        assert_eq!(o.from, ip(SID));
        let mut r = msg(MessageType::Request, 2);
        r.set_giaddr(ip("10.0.0.254"));
        r.opts_mut().insert(DhcpOption::ServerIdentifier(over));
        r.opts_mut()
            .insert(DhcpOption::RequestedIpAddress(reply(&o).yiaddr()));
        let a = t.run_with(&r, &relay_info(&info)).reply.unwrap();
        assert_eq!(a.kind, MessageType::Ack);
        // without giaddr the sub-option is not the relay's: ignored
        let d = msg(MessageType::Discover, 3);
        let o = t.run_with(&d, &relay_info(&info)).reply.unwrap();
        assert_eq!(raw_option(&o.bytes, 54), Some(ip(SID).octets().to_vec()));
    }

    /// Found by fuzzing (`fuzz/corpus/dhcp/regression-long-echoes`): a
    /// long FQDN (RFC 3396, two instances) and a long relay agent option
    /// made a 1,508-byte reply, and the relay option's echo took the
    /// room of the pool's options in the client's 576 bytes. The relay's
    /// echo is whole and last but does not count against the client's
    /// maximum (the relay strips it); an echo to the client that does
    /// not fit is left out.
    #[test]
    fn long_echoes_neither_crowd_out_the_options_nor_exceed_the_maximum() {
        let mut t = T::new();
        let info: Vec<u8> = (0..600u32).map(|i| (i % 251) as u8).collect();
        let mut relay = Vec::new();
        for piece in info.chunks(255) {
            relay.extend_from_slice(&[82, piece.len() as u8]);
            relay.extend_from_slice(piece);
        }
        let mut d = msg(MessageType::Discover, 1);
        d.set_giaddr(ip("10.0.0.254"));
        let o = t.run_with(&d, &relay).reply.unwrap();
        assert_eq!(raw_option(&o.bytes, 82), Some(info.clone()), "echoed whole");
        assert_eq!(*codes(&o).last().unwrap(), 82);
        let m = reply(&o);
        assert!(
            m.opts().get(OptionCode::Router).is_some(),
            "{:?}",
            codes(&o)
        );
        assert!(m.opts().get(OptionCode::DomainNameServer).is_some());
        let echo = 600 + 2 * 3;
        assert!(o.bytes.len() - echo <= 576 - 28, "{}", o.bytes.len());
        // a 405-byte FQDN to a client without relay: not echoed
        let mut fqdn = vec![0, 0, 0];
        fqdn.extend(std::iter::repeat_n(b'a', 402));
        let mut extra = Vec::new();
        for piece in fqdn.chunks(255) {
            extra.extend_from_slice(&[81, piece.len() as u8]);
            extra.extend_from_slice(piece);
        }
        let d = msg(MessageType::Discover, 2);
        let o = t.run_with(&d, &extra).reply.unwrap();
        assert!(o.bytes.len() <= 576 - 28, "{}", o.bytes.len());
        assert!(raw_option(&o.bytes, 81).is_none());
        assert!(reply(&o).opts().get(OptionCode::Router).is_some());
    }

    /// RFC 4702: the FQDN option is answered as a server without DNS
    /// updates must (N set, S clear, O set when the client asked for S,
    /// E echoed, RCODEs 255, the name echoed), not in a NAK; its name is
    /// the lease's host name when the client sends no option 12.
    #[test]
    fn client_fqdn_is_echoed_without_updates_and_named_in_the_lease() {
        let mut t = T::new();
        let wire = b"\x06laptop\x07example\x03com\x00".to_vec();
        for (flags, name, want_flags) in [
            (0x05u8, wire.clone(), 0x0e_u8),
            (0x00, b"laptop.example.com.".to_vec(), 0x08),
        ] {
            let mut v = vec![flags, 0, 0];
            v.extend_from_slice(&name);
            let mut d = msg(MessageType::Discover, 1);
            d.opts_mut()
                .insert(DhcpOption::Unknown(dhcproto::v4::UnknownOption::new(
                    OptionCode::Unknown(81),
                    v.clone(),
                )));
            let o = t.run(&d).reply.unwrap();
            let echo = raw_option(&o.bytes, 81).unwrap();
            assert_eq!(echo[..3], [want_flags, 255, 255]);
            assert_eq!(&echo[3..], &name[..]);
            let mut r = d.clone();
            r.opts_mut()
                .insert(DhcpOption::MessageType(MessageType::Request));
            r.opts_mut().insert(DhcpOption::ServerIdentifier(ip(SID)));
            r.opts_mut()
                .insert(DhcpOption::RequestedIpAddress(reply(&o).yiaddr()));
            let out = t.run(&r);
            let Change::Upsert(l) = &out.changes[0] else {
                panic!()
            };
            assert_eq!(l.hostname.as_deref(), Some("laptop.example.com"));
            // a NAK carries none
            let mut n = r.clone();
            n.opts_mut()
                .insert(DhcpOption::RequestedIpAddress(ip("192.168.0.1")));
            n.opts_mut().remove(OptionCode::ServerIdentifier);
            let nak = t.run(&n).reply.unwrap();
            assert_eq!(nak.kind, MessageType::Nak);
            assert!(raw_option(&nak.bytes, 81).is_none());
        }
        assert_eq!(fqdn_text(fqdn::E, b"\x03a"), None, "label past the end");
    }

    /// RFC 2131 §4.1 / RFC 2132 §9.3: options in `file` and `sname` when
    /// option 52 says so; RFC 3396: an option split over instances is
    /// their concatenation, and a value over 255 bytes is sent split.
    #[test]
    fn overloaded_fields_and_long_options_are_read_and_sent() {
        let mut t = T::new();
        let mut raw = msg(MessageType::Discover, 1).to_vec().unwrap();
        raw.truncate(243); // the header and the message type
        raw.extend_from_slice(&[52, 1, 3]);
        raw.extend_from_slice(&[61, 3, 0xff, 1, 2, 61, 2, 3, 4]);
        raw.push(255);
        // file: the host name; sname: the end of the client id
        raw[108..116].copy_from_slice(&[12, 5, b'p', b'r', b'o', b'b', b'e', 255]);
        raw[44..49].copy_from_slice(&[61, 2, 5, 6, 255]);
        let m = decode(&raw).unwrap();
        assert_eq!(
            m.opts().get(OptionCode::ClientIdentifier),
            Some(&DhcpOption::ClientIdentifier(vec![0xff, 1, 2, 3, 4, 5, 6]))
        );
        assert_eq!(
            m.opts().get(OptionCode::Hostname),
            Some(&DhcpOption::Hostname("probe".into()))
        );
        assert!(m.fname().unwrap_or_default().is_empty());
        assert_eq!(m.opts().msg_type(), Some(MessageType::Discover));
        // a relay agent information of 300 bytes over two instances comes
        // back as 255 + 45, concatenated the same
        let info: Vec<u8> = (0..300).map(|i| (i % 250) as u8).collect();
        let mut extra = vec![82, 200];
        extra.extend_from_slice(&info[..200]);
        extra.extend_from_slice(&[82, 100]);
        extra.extend_from_slice(&info[200..]);
        let mut d = msg(MessageType::Discover, 2);
        d.set_giaddr(ip("10.0.0.254"));
        d.opts_mut().insert(DhcpOption::MaxMessageSize(1500));
        let r = t.run_with(&d, &extra).reply.unwrap();
        assert_eq!(raw_option(&r.bytes, 82), Some(info));
        let c = codes(&r);
        assert_eq!(c[c.len() - 2..], [82, 82]);
        assert!(decode(&r.bytes).is_ok());
    }

    #[test]
    fn selecting_request_binds_and_is_durable() {
        let mut t = T::new();
        let o = t.run(&msg(MessageType::Discover, 1)).reply.unwrap();
        let y = reply(&o).yiaddr();
        let mut r = msg(MessageType::Request, 1);
        r.opts_mut().insert(DhcpOption::ServerIdentifier(ip(SID)));
        r.opts_mut().insert(DhcpOption::RequestedIpAddress(y));
        r.opts_mut().insert(DhcpOption::Hostname("box".into()));
        let out = t.run(&r);
        let a = out.reply.unwrap();
        assert_eq!(a.kind, MessageType::Ack);
        assert!(a.durable);
        assert_eq!(reply(&a).yiaddr(), y);
        assert_eq!(out.events[0].kind, EventKind::Bound);
        let Change::Upsert(l) = &out.changes[0] else {
            panic!()
        };
        assert_eq!(l.state, LeaseState::Bound);
        assert_eq!(l.expires, t.now + 3600);
        assert_eq!(l.hostname.as_deref(), Some("box"));
        assert_eq!(t.table.get(y).unwrap().state, LeaseState::Bound);
    }

    /// RFC 2131 §3.1 / §4.3.1: an offered address is held for its client
    /// (`offer_hold`), and free again when no REQUEST came: another client
    /// asking for it gets it then, not before. The OFFER says whether it
    /// names an address new to the client (probed by ping-check).
    #[test]
    fn an_offer_without_a_request_frees_its_address_after_the_hold() {
        let mut t = T::new();
        let out = t.run(&msg(MessageType::Discover, 1));
        let y = reply(&out.reply.unwrap()).yiaddr();
        assert_eq!((out.offered, out.fresh), (Some(y), true));
        // the client's retransmission: the same address, not new to it
        let again = t.run(&msg(MessageType::Discover, 1));
        assert_eq!((again.offered, again.fresh), (Some(y), false));
        let mut d = msg(MessageType::Discover, 2);
        d.opts_mut().insert(DhcpOption::RequestedIpAddress(y));
        assert_ne!(reply(&t.run(&d).reply.unwrap()).yiaddr(), y, "held");
        t.now += u64::from(t.g.offer_hold) + 1;
        let mut d = msg(MessageType::Discover, 3);
        d.opts_mut().insert(DhcpOption::RequestedIpAddress(y));
        let out = t.run(&d);
        assert_eq!(
            reply(&out.reply.unwrap()).yiaddr(),
            y,
            "free after the hold"
        );
        assert!(out.fresh);
        // a static binding is the client's own: never probed
        let mut s = msg(MessageType::Discover, 0x99);
        s.set_chaddr(&[2, 0, 0, 0, 0, 0x99]);
        let out = t.run(&s);
        assert_eq!((out.offered, out.fresh), (Some(ip("10.0.0.200")), false));
        // and so is a current binding
        let b = t.dora(4);
        let out = t.run(&msg(MessageType::Discover, 4));
        assert_eq!((out.offered, out.fresh), (Some(b), false));
    }

    #[test]
    fn selecting_another_server_frees_the_offer() {
        let mut t = T::new();
        let y = reply(&t.run(&msg(MessageType::Discover, 1)).reply.unwrap()).yiaddr();
        let mut r = msg(MessageType::Request, 1);
        r.opts_mut()
            .insert(DhcpOption::ServerIdentifier(ip("10.0.0.99")));
        r.opts_mut().insert(DhcpOption::RequestedIpAddress(y));
        let out = t.run(&r);
        assert!(out.reply.is_none());
        assert_eq!(out.silence, Some(Silence::OtherServer));
        assert!(t.table.offer(y).is_none());
        // the address is free for the next client
        let mut d = msg(MessageType::Discover, 2);
        d.opts_mut().insert(DhcpOption::RequestedIpAddress(y));
        assert_eq!(reply(&t.run(&d).reply.unwrap()).yiaddr(), y);
    }

    #[test]
    fn selecting_a_taken_address_is_naked_by_broadcast() {
        let mut t = T::new();
        let y = t.dora(1);
        let mut r = msg(MessageType::Request, 2);
        r.opts_mut().insert(DhcpOption::ServerIdentifier(ip(SID)));
        r.opts_mut().insert(DhcpOption::RequestedIpAddress(y));
        let n = t.run(&r).reply.unwrap();
        assert_eq!(n.kind, MessageType::Nak);
        assert_eq!(n.to, Delivery::Broadcast);
        assert!(!n.durable);
        let m = reply(&n);
        assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(codes(&n), vec![53, 54, 56]);
        // relayed NAK: to the relay, broadcast bit set
        r.set_giaddr(ip("10.0.0.254"));
        let n = t.run(&r).reply.unwrap();
        assert_eq!(n.to, Delivery::Relay(ip("10.0.0.254")));
        assert!(reply(&n).flags().broadcast());
    }

    #[test]
    fn init_reboot_acks_own_address_and_naks_wrong_subnet() {
        let mut t = T::new();
        let y = t.dora(1);
        let mut r = msg(MessageType::Request, 1);
        r.opts_mut().insert(DhcpOption::RequestedIpAddress(y));
        let a = t.run(&r).reply.unwrap();
        assert_eq!(a.kind, MessageType::Ack);
        assert_eq!(reply(&a).yiaddr(), y);
        // wrong subnet
        let mut r = msg(MessageType::Request, 1);
        r.opts_mut()
            .insert(DhcpOption::RequestedIpAddress(ip("192.168.77.5")));
        assert_eq!(t.run(&r).reply.unwrap().kind, MessageType::Nak);
        // another client's address
        let mut r = msg(MessageType::Request, 2);
        r.opts_mut().insert(DhcpOption::RequestedIpAddress(y));
        assert_eq!(t.run(&r).reply.unwrap().kind, MessageType::Nak);
        // a client and an address the server has no record of: silent
        let mut r = msg(MessageType::Request, 3);
        r.opts_mut()
            .insert(DhcpOption::RequestedIpAddress(ip("10.0.0.77")));
        let out = t.run(&r);
        assert!(
            out.reply.is_none(),
            "RFC 2131 §4.3.2: no record, remain silent"
        );
        // the wrong network is NAKed authoritative or not, known client
        // or not
        t.g.authoritative = false;
        for mac in [1, 3] {
            let mut r = msg(MessageType::Request, mac);
            r.opts_mut()
                .insert(DhcpOption::RequestedIpAddress(ip("192.168.77.5")));
            assert_eq!(t.run(&r).reply.unwrap().kind, MessageType::Nak, "{mac}");
        }
    }

    fn init_reboot(mac: u8, want: Ipv4Addr) -> Message {
        let mut r = msg(MessageType::Request, mac);
        r.opts_mut().insert(DhcpOption::RequestedIpAddress(want));
        r
    }

    /// Issue 13 item 1: one client, one binding per subnet. A client bound
    /// to `y` asking (INIT-REBOOT) for another free address is NAKed, and
    /// keeps its one lease; so is a SELECTING or RENEWING request for one.
    #[test]
    fn a_bound_client_gets_no_second_address() {
        for authoritative in [true, false] {
            let mut t = T::new();
            t.g.authoritative = authoritative;
            let y = t.dora(1);
            let free = ip("10.0.0.13");
            assert_ne!(y, free);
            let out = t.run(&init_reboot(1, free));
            assert_eq!(out.reply.unwrap().kind, MessageType::Nak);
            assert!(out.changes.is_empty());
            let mut sel = init_reboot(1, free);
            sel.opts_mut().insert(DhcpOption::ServerIdentifier(ip(SID)));
            assert_eq!(t.run(&sel).reply.unwrap().kind, MessageType::Nak);
            let mut ren = msg(MessageType::Request, 1);
            ren.set_ciaddr(free);
            assert_eq!(t.run(&ren).reply.unwrap().kind, MessageType::Nak);
            assert!(t.table.get(free).is_none());
            assert_eq!(t.table.client_ip(&t.table.get(y).unwrap().key()), Some(y));
            // its own address it keeps
            assert_eq!(
                t.run(&init_reboot(1, y)).reply.unwrap().kind,
                MessageType::Ack
            );
            // released, it is no longer known: an address without a
            // record gets silence (§4.3.2 MUST), its old one an ACK
            let mut rel = msg(MessageType::Release, 1);
            rel.set_ciaddr(y);
            t.run(&rel);
            let out = t.run(&init_reboot(1, free));
            assert!(out.reply.is_none(), "{:?}", out.reply.map(|r| r.kind));
            assert_eq!(
                t.run(&init_reboot(1, y)).reply.unwrap().kind,
                MessageType::Ack
            );
        }
    }

    /// Issue 13 item 2: `authoritative` governs only clients without a
    /// record. A known client asking for another client's address, one
    /// outside the pool, or one of another network is NAKed either way;
    /// an unknown client asking for an address without a record gets
    /// silence (§4.3.2 MUST).
    #[test]
    fn a_known_client_with_a_wrong_address_is_naked_whatever_authoritative() {
        for authoritative in [true, false] {
            let mut t = T::new();
            t.g.authoritative = authoritative;
            t.dora(1);
            let other = t.dora(2);
            for want in [other, ip("10.0.0.77"), ip("10.0.0.10"), ip("192.168.1.7")] {
                let out = t.run(&init_reboot(1, want));
                assert_eq!(
                    out.reply.map(|r| r.kind),
                    Some(MessageType::Nak),
                    "{want} authoritative {authoritative}"
                );
            }
            let out = t.run(&init_reboot(3, ip("10.0.0.77")));
            assert!(out.reply.is_none(), "unknown client, unknown address");
            // a released lease is no live record: another server sharing
            // the subnet may have bound the client since
            let y4 = t.dora(4);
            let mut rel = msg(MessageType::Release, 4);
            rel.set_ciaddr(y4);
            t.run(&rel);
            let out = t.run(&init_reboot(4, ip("10.0.0.77")));
            assert!(
                out.reply.is_none(),
                "released client, address outside the pool"
            );
            let out = t.run(&init_reboot(3, ip("192.168.1.7")));
            assert_eq!(out.reply.unwrap().kind, MessageType::Nak);
            // an unknown client renewing an address outside the pool:
            // authoritative decides
            let mut ren = msg(MessageType::Request, 3);
            ren.set_ciaddr(ip("10.0.0.77"));
            let out = t.run(&ren);
            assert_eq!(out.reply.is_some(), authoritative);
        }
    }

    /// Issue 13 item 3: a reply to `ciaddr` on the client's own link goes
    /// to its hardware address (no ARP); routed (not on the link), by IP.
    #[test]
    fn a_renewal_on_the_link_is_answered_at_the_hardware_address() {
        let mut t = T::new();
        let y = t.dora(1);
        let mut r = msg(MessageType::Request, 1);
        r.set_ciaddr(y);
        t.on_link = true;
        let a = t.run(&r).reply.unwrap();
        assert_eq!(a.kind, MessageType::Ack);
        assert_eq!(
            a.to,
            Delivery::Hardware {
                ip: y,
                hw: vec![2, 0, 0, 0, 0, 1]
            }
        );
        let mut i = msg(MessageType::Inform, 5);
        i.set_ciaddr(ip("10.0.0.77"));
        assert!(matches!(
            t.run(&i).reply.unwrap().to,
            Delivery::Hardware { .. }
        ));
        t.on_link = false;
        assert_eq!(t.run(&r).reply.unwrap().to, Delivery::Unicast(y));
    }

    /// Issue 13 item 4: a SELECTING or INIT-REBOOT request without option
    /// 50 is answered for ciaddr, else the pending offer, else the binding,
    /// and counted as lenient; with none of them it stays malformed.
    #[test]
    fn a_request_without_option_50_uses_ciaddr_or_the_offer() {
        let mut t = T::new();
        let o = reply(&t.run(&msg(MessageType::Discover, 1)).reply.unwrap()).yiaddr();
        let mut sel = msg(MessageType::Request, 1);
        sel.opts_mut().insert(DhcpOption::ServerIdentifier(ip(SID)));
        let out = t.run(&sel);
        assert!(out.lenient);
        let a = out.reply.unwrap();
        assert_eq!(a.kind, MessageType::Ack);
        assert_eq!(reply(&a).yiaddr(), o);
        // INIT-REBOOT without option 50: its binding
        let out = t.run(&msg(MessageType::Request, 1));
        assert!(out.lenient);
        assert_eq!(reply(&out.reply.unwrap()).yiaddr(), o);
        // SELECTING with ciaddr
        let mut sel = msg(MessageType::Request, 2);
        sel.opts_mut().insert(DhcpOption::ServerIdentifier(ip(SID)));
        sel.set_ciaddr(ip("10.0.0.13"));
        let out = t.run(&sel);
        assert!(out.lenient);
        assert_eq!(reply(&out.reply.unwrap()).yiaddr(), ip("10.0.0.13"));
        // nothing to go by
        let out = t.run(&msg(MessageType::Request, 3));
        assert_eq!(out.silence, Some(Silence::Malformed));
        assert!(!out.lenient);
        // with option 50: not lenient
        let out = t.run(&init_reboot(1, o));
        assert!(!out.lenient && out.reply.is_some());
    }

    /// Issue 13 item 5: a DHCPINFORM without ciaddr has nowhere to go.
    #[test]
    fn an_inform_without_ciaddr_is_dropped() {
        let mut t = T::new();
        let out = t.run(&msg(MessageType::Inform, 1));
        assert!(out.reply.is_none());
        assert_eq!(out.silence, Some(Silence::InformNoAddress));
    }

    #[test]
    fn renewing_extends_and_answers_ciaddr() {
        let mut t = T::new();
        let y = t.dora(1);
        t.now += 1800;
        let mut r = msg(MessageType::Request, 1);
        r.set_ciaddr(y);
        let out = t.run(&r);
        let a = out.reply.unwrap();
        assert_eq!(a.kind, MessageType::Ack);
        assert_eq!(a.to, Delivery::Unicast(y));
        assert_eq!(reply(&a).ciaddr(), y);
        assert_eq!(out.events[0].kind, EventKind::Renewed);
        assert_eq!(t.table.get(y).unwrap().expires, t.now + 3600);
        // rebinding from a foreign subnet
        let mut r = msg(MessageType::Request, 1);
        r.set_ciaddr(ip("172.16.0.9"));
        assert_eq!(t.run(&r).reply.unwrap().kind, MessageType::Nak);
        // renewing someone else's address
        let mut r = msg(MessageType::Request, 3);
        r.set_ciaddr(y);
        assert_eq!(t.run(&r).reply.unwrap().kind, MessageType::Nak);
    }

    /// Hot backup: the partner's binding of `x` (client 2) won the merge
    /// over ours (client 1). Client 1's RENEWING (unicast, ciaddr), its
    /// REBINDING (broadcast, ciaddr) and its INIT-REBOOT (requested `x`)
    /// are each NAKed, authoritative or not: never an ACK, never a
    /// silence that leaves it on an address client 2 holds.
    #[test]
    fn the_loser_of_a_merge_is_naked() {
        for authoritative in [true, false] {
            let mut t = T::new();
            t.g.authoritative = authoritative;
            let x = t.dora(1);
            let mut theirs = t.table.get(x).unwrap().clone();
            theirs.hw = vec![2, 0, 0, 0, 0, 2];
            theirs.hostname = None;
            theirs.expires += 10;
            theirs.origin = Origin::Peer;
            assert_eq!(t.table.merge_peer(theirs.clone()).0, Merge::Taken);
            t.now += 1800;
            let renewing = {
                let mut r = msg(MessageType::Request, 1);
                r.set_ciaddr(x);
                r
            };
            let rebinding = {
                let mut r = renewing.clone();
                r.set_flags(Flags::default().set_broadcast());
                r
            };
            let init_reboot = {
                let mut r = msg(MessageType::Request, 1);
                r.opts_mut().insert(DhcpOption::RequestedIpAddress(x));
                r
            };
            for (what, m) in [
                ("renewing", renewing),
                ("rebinding", rebinding),
                ("init-reboot", init_reboot),
            ] {
                let out = t.run(&m);
                let r = out.reply.unwrap_or_else(|| panic!("{what}: no reply"));
                assert_eq!(
                    r.kind,
                    MessageType::Nak,
                    "{what} authoritative {authoritative}"
                );
                assert_eq!(r.to, Delivery::Broadcast);
                assert!(out.changes.is_empty());
                assert_eq!(t.table.get(x), Some(&theirs), "{what}");
            }
            // the winner renews here (after a switchover): ACK, and the
            // lease is now this router's
            let mut r = msg(MessageType::Request, 2);
            r.set_ciaddr(x);
            let out = t.run(&r);
            assert_eq!(out.reply.unwrap().kind, MessageType::Ack);
            assert_eq!(out.events[0].kind, EventKind::Renewed);
            assert_eq!(t.table.get(x).unwrap().origin, Origin::Local);
        }
    }

    /// Split brain: a new client asking for an address of the other
    /// side's half is offered one of this side's; one of this half it
    /// gets; a known client keeps its own address whatever its half.
    #[test]
    fn a_split_pool_honours_requests_in_its_own_half_only() {
        let mut t = T::new();
        let y = t.dora(1);
        let half = crate::dhcp::pool::Half::of(y).other();
        t.pool.split = Some(half);
        let want = |t: &mut T, mac: u8, ip: Ipv4Addr| {
            let mut d = msg(MessageType::Discover, mac);
            d.opts_mut().insert(DhcpOption::RequestedIpAddress(ip));
            reply(&t.run(&d).reply.unwrap()).yiaddr()
        };
        let (even_odd_a, even_odd_b) = (ip("10.0.0.13"), ip("10.0.0.14"));
        let (theirs, ours) = if half.contains(even_odd_a) {
            (even_odd_b, even_odd_a)
        } else {
            (even_odd_a, even_odd_b)
        };
        let got = want(&mut t, 2, theirs);
        assert!(half.contains(got), "{got}");
        assert_eq!(want(&mut t, 3, ours), ours);
        assert_eq!(want(&mut t, 1, theirs), y, "its own address");
    }

    /// A release in the second of its grant reaches the partner as newer
    /// than the grant: the partner, which holds the binding, takes it.
    #[test]
    fn a_release_in_the_grants_second_beats_the_grant_on_the_partner() {
        let mut t = T::new();
        let a = t.dora(1);
        let bound = t.table.get(a).unwrap().clone();
        let mut partner = LeaseTable::new();
        partner.merge_peer(bound.clone());
        let mut r = msg(MessageType::Release, 1);
        r.set_ciaddr(a);
        r.opts_mut().insert(DhcpOption::ServerIdentifier(ip(SID)));
        let out = t.run(&r);
        let released = t.table.get(a).unwrap().clone();
        assert_eq!(released.state, LeaseState::Released);
        assert_eq!(out.changes, vec![Change::Upsert(released.clone())]);
        assert!(crate::dhcp::leases::peer_wins(&bound, &released));
        partner.merge_peer(released.clone());
        assert_eq!(partner.get(a).unwrap().state, LeaseState::Released);
    }

    /// Split brain: a free address of the other half goes to nobody here,
    /// not even its old client (the other side may have given it away):
    /// not offered, and its INIT-REBOOT is NAKed; an active binding in the
    /// other half is still renewed.
    #[test]
    fn a_split_pool_gives_no_free_address_of_the_other_half_back() {
        let mut t = T::new();
        let old = t.dora(1);
        t.dora(2);
        let active = t.dora(3);
        let mut r = msg(MessageType::Release, 1);
        r.set_ciaddr(old);
        r.opts_mut().insert(DhcpOption::ServerIdentifier(ip(SID)));
        t.run(&r);
        assert_eq!(
            t.table.client_ip(&t.table.get(old).unwrap().key()),
            Some(old)
        );
        let half = crate::dhcp::pool::Half::of(old).other();
        assert!(!half.contains(active), "{old} {active}: both odd");
        t.pool.split = Some(half);
        let o = reply(&t.run(&msg(MessageType::Discover, 1)).reply.unwrap()).yiaddr();
        assert!(half.contains(o), "{o}");
        let mut ir = msg(MessageType::Request, 1);
        ir.opts_mut().insert(DhcpOption::RequestedIpAddress(old));
        let out = t.run(&ir);
        assert_eq!(out.reply.unwrap().kind, MessageType::Nak);
        assert_eq!(t.table.get(old).unwrap().state, LeaseState::Released);
        // the offered address (own half) binds; so would a fallback offer
        let mut sel = msg(MessageType::Request, 1);
        sel.opts_mut().insert(DhcpOption::ServerIdentifier(ip(SID)));
        sel.opts_mut().insert(DhcpOption::RequestedIpAddress(o));
        assert_eq!(t.run(&sel).reply.unwrap().kind, MessageType::Ack);
        let mut rn = msg(MessageType::Request, 3);
        rn.set_ciaddr(active);
        assert_eq!(t.run(&rn).reply.unwrap().kind, MessageType::Ack);
        // the even half is used up (.12, .14): a new client is offered the
        // released odd one and may take it
        assert_eq!(t.dora(4), old);
    }

    /// Split brain with clients reaching both routers: both use the VIP as
    /// server identifier, so a client selecting the other side's offer (an
    /// address of the other half, free here) also asks this side. This side
    /// stays silent (a NAK would beat the other side's ACK and the client
    /// would never bind), and forgets its own offer; an address another
    /// client holds here is still NAKed.
    #[test]
    fn a_split_pool_leaves_the_other_sides_offer_alone() {
        let mut t = T::new();
        let held = t.dora(1);
        let half = crate::dhcp::pool::Half::of(held);
        t.pool.split = Some(half);
        let o = reply(&t.run(&msg(MessageType::Discover, 2)).reply.unwrap()).yiaddr();
        assert!(half.contains(o), "{o}");
        let theirs = (10..200)
            .map(|i| Ipv4Addr::new(10, 0, 0, i))
            .find(|a| !half.contains(*a) && t.table.get(*a).is_none())
            .unwrap();
        let mut sel = msg(MessageType::Request, 2);
        sel.opts_mut().insert(DhcpOption::ServerIdentifier(ip(SID)));
        sel.opts_mut()
            .insert(DhcpOption::RequestedIpAddress(theirs));
        let out = t.run(&sel);
        assert!(out.reply.is_none(), "{:?}", out.reply.map(|r| r.kind));
        assert!(t.table.offer(o).is_none(), "its own offer is forgotten");
        assert!(t.table.get(theirs).is_none());
        // another client's address is NAKed as before
        let mut sel = msg(MessageType::Request, 3);
        sel.opts_mut().insert(DhcpOption::ServerIdentifier(ip(SID)));
        sel.opts_mut().insert(DhcpOption::RequestedIpAddress(held));
        assert_eq!(t.run(&sel).reply.unwrap().kind, MessageType::Nak);
    }

    /// An infinite lease never expires and still tells when it was granted:
    /// its renewal is a newer version for the hot-backup merge.
    /// RFC 2131 §4.3.1: option 51 is honoured up to the pool's lease-time
    /// and not under `MIN_LEASE`, in the OFFER, the ACK and the lease; a
    /// shortened lease gets T1 and T2 that come before its end.
    #[test]
    fn a_requested_lease_time_is_granted_within_the_pool_bounds() {
        let lease_opt = |r: &Reply, c: u8| {
            let m = reply(r);
            let want = match c {
                51 => dhcproto::v4::OptionCode::AddressLeaseTime,
                58 => dhcproto::v4::OptionCode::Renewal,
                _ => dhcproto::v4::OptionCode::Rebinding,
            };
            match m.opts().get(want) {
                Some(DhcpOption::AddressLeaseTime(t))
                | Some(DhcpOption::Renewal(t))
                | Some(DhcpOption::Rebinding(t)) => *t,
                o => panic!("option {c}: {o:?}"),
            }
        };
        let mut t = T::new();
        for (mac, asked, granted, t1, t2) in [
            (1, Some(600), 600, 300, 525),
            (2, Some(10), MIN_LEASE, 30, 52),
            (3, Some(1_000_000), 3600, 1800, 3150),
            (4, None, 3600, 1800, 3150),
        ] {
            let with = |mut m: Message| {
                if let Some(a) = asked {
                    m.opts_mut().insert(DhcpOption::AddressLeaseTime(a));
                }
                m
            };
            let out = t.run(&with(msg(MessageType::Discover, mac)));
            let o = out.reply.unwrap();
            assert_eq!(
                (lease_opt(&o, 51), lease_opt(&o, 58), lease_opt(&o, 59)),
                (granted, t1, t2),
                "asked {asked:?}"
            );
            let y = reply(&o).yiaddr();
            let mut r = with(msg(MessageType::Request, mac));
            r.opts_mut().insert(DhcpOption::ServerIdentifier(ip(SID)));
            r.opts_mut().insert(DhcpOption::RequestedIpAddress(y));
            let a = t.run(&r).reply.unwrap();
            assert_eq!(lease_opt(&a, 51), granted);
            let l = t.table.get(y).unwrap();
            assert_eq!(
                (l.lifetime, l.expires),
                (granted, t.now + u64::from(granted))
            );
        }
        // configured T1 and T2 stay when they come before the shorter end
        let mut p = cfg_pool();
        p.renew_time_s = Some(100);
        p.rebind_time_s = Some(200);
        let rt = PoolRt::from(&p);
        assert_eq!(lease_times(&rt, Some(300)), (300, Some(100), Some(200)));
        assert_eq!(lease_times(&rt, Some(150)), (150, Some(75), Some(131)));
    }

    #[test]
    fn an_infinite_lease_keeps_its_grant_time() {
        let mut t = T::new();
        let mut p = cfg_pool();
        p.lease_time_s = u32::MAX;
        t.pool = PoolRt::from(&p);
        let y = t.dora(1);
        let first = t.table.get(y).unwrap().clone();
        assert_eq!(first.lifetime, u32::MAX);
        assert_eq!(first.changed_at(), t.now);
        t.now += 100_000;
        assert!(t.table.expire(t.now).0.is_empty(), "never expires");
        let mut r = msg(MessageType::Request, 1);
        r.set_ciaddr(y);
        assert_eq!(t.run(&r).reply.unwrap().kind, MessageType::Ack);
        let renewed = t.table.get(y).unwrap().clone();
        assert_eq!(renewed.changed_at(), t.now);
        assert!(crate::dhcp::leases::peer_wins(&first, &renewed));
    }

    #[test]
    fn decline_needs_server_id_and_quarantines() {
        let mut t = T::new();
        t.g.decline_probation = 600;
        let y = t.dora(1);
        let mut d = msg(MessageType::Decline, 1);
        d.opts_mut().insert(DhcpOption::RequestedIpAddress(y));
        let out = t.run(&d);
        assert_eq!(out.silence, Some(Silence::OtherServer));
        assert_eq!(t.table.get(y).unwrap().state, LeaseState::Bound);
        d.opts_mut().insert(DhcpOption::ServerIdentifier(ip(SID)));
        let out = t.run(&d);
        assert!(out.reply.is_none());
        assert_eq!(out.events[0].kind, EventKind::Declined);
        assert_eq!(t.table.get(y).unwrap().state, LeaseState::Declined);
        // the client starts over and gets another address
        let o = t.run(&msg(MessageType::Discover, 1)).reply.unwrap();
        assert_ne!(reply(&o).yiaddr(), y);
        // after probation the address is free again
        t.now += 601;
        let (ch, _) = t.table.expire(t.now);
        assert_eq!(ch, vec![Change::Delete(y)]);
    }

    #[test]
    fn release_frees_and_returning_client_gets_its_address() {
        let mut t = T::new();
        let y = t.dora(1);
        let mut r = msg(MessageType::Release, 1);
        r.set_ciaddr(y);
        r.opts_mut().insert(DhcpOption::ServerIdentifier(ip(SID)));
        let out = t.run(&r);
        assert!(out.reply.is_none());
        assert_eq!(out.events[0].kind, EventKind::Released);
        assert_eq!(t.table.get(y).unwrap().state, LeaseState::Released);
        // a release by another client is ignored
        let mut r2 = msg(MessageType::Release, 2);
        r2.set_ciaddr(y);
        assert!(t.run(&r2).changes.is_empty());
        let o = t.run(&msg(MessageType::Discover, 1)).reply.unwrap();
        assert_eq!(reply(&o).yiaddr(), y);
    }

    #[test]
    fn inform_acks_options_without_lease() {
        let mut t = T::new();
        let mut i = msg(MessageType::Inform, 1);
        i.set_ciaddr(ip("10.0.0.77"));
        let r = t.run(&i).reply.unwrap();
        assert_eq!(r.kind, MessageType::Ack);
        assert!(!r.durable);
        assert_eq!(r.to, Delivery::Unicast(ip("10.0.0.77")));
        let c = codes(&r);
        assert!(!c.contains(&51) && !c.contains(&58) && c.contains(&1));
        assert_eq!(reply(&r).yiaddr(), Ipv4Addr::UNSPECIFIED);
        assert!(t.table.is_empty());
    }

    #[test]
    fn static_binding_excluded_server_id_and_exhaustion() {
        let mut t = T::new();
        // server id inside the section must never be handed out
        let mut p = cfg_pool();
        p.server_identifier = Some(ip("10.0.0.12"));
        t.pool = PoolRt::from(&p);
        let s = t.dora(0x99);
        assert_eq!(s, ip("10.0.0.200"));
        let mut got = Vec::new();
        for mac in 1..=10 {
            let out = t.run(&msg(MessageType::Discover, mac));
            match out.reply {
                Some(r) => got.push(reply(&r).yiaddr()),
                None => assert_eq!(out.silence, Some(Silence::Exhausted)),
            }
        }
        // .10 excluded, .12 server id: .11 .13 .14
        got.sort();
        assert_eq!(got, vec![ip("10.0.0.11"), ip("10.0.0.13"), ip("10.0.0.14")]);
        // a dynamic client asking for the static address is refused
        let mut r = msg(MessageType::Request, 7);
        r.opts_mut()
            .insert(DhcpOption::RequestedIpAddress(ip("10.0.0.200")));
        assert_eq!(t.run(&r).reply.unwrap().kind, MessageType::Nak);
        // offers lapse: addresses come back
        t.now += 31;
        t.table.expire(t.now);
        assert!(t.run(&msg(MessageType::Discover, 20)).reply.is_some());
    }

    #[test]
    fn client_id_is_the_identity() {
        let mut t = T::new();
        let mut a = msg(MessageType::Discover, 1);
        a.opts_mut()
            .insert(DhcpOption::ClientIdentifier(vec![9, 9]));
        let mut b = msg(MessageType::Discover, 1);
        b.opts_mut()
            .insert(DhcpOption::ClientIdentifier(vec![8, 8]));
        let ya = reply(&t.run(&a).reply.unwrap()).yiaddr();
        let yb = reply(&t.run(&b).reply.unwrap()).yiaddr();
        assert_ne!(ya, yb);
        // echo can be turned off
        t.g.echo_client_id = false;
        assert!(!codes(&t.run(&a).reply.unwrap()).contains(&61));
    }

    #[test]
    fn user_options_override_and_size_limit_drops_extras() {
        let mut t = T::new();
        let mut p = cfg_pool();
        p.options
            .insert(3, OptionValue::Addresses(vec![ip("10.0.0.9")]));
        p.options.insert(200, OptionValue::Hex(vec![0xab; 250]));
        p.options.insert(201, OptionValue::Text("x".repeat(100)));
        t.pool = PoolRt::from(&p);
        let mut d = msg(MessageType::Discover, 1);
        d.opts_mut().insert(DhcpOption::ParameterRequestList(vec![
            OptionCode::Router,
            OptionCode::Unknown(201),
        ]));
        let r = t.run(&d).reply.unwrap();
        let m = reply(&r);
        assert_eq!(
            m.opts().get(OptionCode::Router),
            Some(&DhcpOption::Router(vec![ip("10.0.0.9")]))
        );
        let c = codes(&r);
        // 576-byte default: the 250-byte unrequested option does not fit
        assert!(c.contains(&201) && !c.contains(&200), "{c:?}");
        assert!(r.bytes.len() <= 576 - 28);
        assert_eq!(&c[..7], &[53, 54, 51, 58, 59, 3, 201]);
        // a bigger maximum lets it in
        d.opts_mut().insert(DhcpOption::MaxMessageSize(1500));
        assert!(codes(&t.run(&d).reply.unwrap()).contains(&200));
    }

    /// RFC 2131 §4.1 / RFC 2132 §9.3: options that do not fit the
    /// options field of a 576-byte reply go to 'file' and 'sname' when
    /// the reply leaves them empty, with option 52 saying which; whole
    /// options only, each field closed by an end option.
    #[test]
    fn options_that_do_not_fit_overload_file_and_sname() {
        let mut t = T::new();
        let mut p = cfg_pool();
        p.boot_file = None;
        for (c, n) in [(200u8, 100usize), (201, 120), (202, 110), (203, 40)] {
            p.options.insert(c, OptionValue::Hex(vec![c; n]));
        }
        t.pool = PoolRt::from(&p);
        let r = t.run(&msg(MessageType::Discover, 1)).reply.unwrap();
        assert!(r.bytes.len() <= 576 - 28, "{}", r.bytes.len());
        let mut seen = Vec::new();
        let overload = each_option(&r.bytes, &mut |c, v| seen.push((c, v.len())));
        assert_eq!(overload, 3);
        for (c, n) in [(200u8, 100usize), (201, 120), (202, 110), (203, 40)] {
            assert!(seen.contains(&(c, n)), "{c} missing: {seen:?}");
        }
        assert!(seen.contains(&(52, 1)));
        assert_eq!(r.bytes[108], 202, "the first that did not fit, in file");
        // with a boot file only 'sname' is free: what fits there goes
        let mut p2 = p.clone();
        p2.boot_file = Some("pxe.0".into());
        t.pool = PoolRt::from(&p2);
        let r = t.run(&msg(MessageType::Discover, 2)).reply.unwrap();
        let mut seen = Vec::new();
        assert_eq!(each_option(&r.bytes, &mut |c, _| seen.push(c)), 2);
        assert!(seen.contains(&203) && !seen.contains(&202));
        assert_eq!(&r.bytes[108..114], b"pxe.0\0");
    }

    #[test]
    fn malformed_and_unexpected_are_silent() {
        let mut t = T::new();
        let mut m = msg(MessageType::Offer, 1);
        assert_eq!(t.run(&m).silence, Some(Silence::Unexpected));
        m.set_opcode(Opcode::BootReply);
        assert_eq!(t.run(&m).silence, Some(Silence::Malformed));
        let mut n = Message::default();
        n.set_chaddr(&[1, 2, 3, 4, 5, 6]);
        assert_eq!(t.run(&n).silence, Some(Silence::Bootp));
    }

    /// RFC 1534: with `bootp static-bindings` a BOOTP client (no message
    /// type) with a static binding gets a BOOTREPLY for it, with the
    /// pool's options and none of DHCP's; one without gets nothing, and
    /// neither does anyone with `bootp ignore`.
    #[test]
    fn bootp_clients_get_their_static_binding_when_enabled() {
        let mut t = T::new();
        let mut b = Message::default();
        b.set_chaddr(&[2, 0, 0, 0, 0, 0x99]).set_xid(77);
        assert_eq!(t.run(&b).silence, Some(Silence::Bootp));
        t.g.bootp_static = true;
        let r = t.run(&b).reply.unwrap();
        let m = reply(&r);
        assert_eq!(m.opcode(), Opcode::BootReply);
        assert_eq!(m.yiaddr(), ip("10.0.0.200"));
        assert_eq!(m.xid(), 77);
        let c = codes(&r);
        assert!(c.contains(&1) && c.contains(&3), "{c:?}");
        for dhcp_only in [53, 54, 51, 58, 59] {
            assert!(!c.contains(&dhcp_only), "{c:?}");
        }
        assert!(!r.durable && t.table.is_empty());
        b.set_chaddr(&[2, 0, 0, 0, 0, 0x98]);
        assert_eq!(t.run(&b).silence, Some(Silence::Bootp));
    }
}
