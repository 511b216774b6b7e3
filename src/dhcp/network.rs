//! DHCP sockets: one UDP socket on 0.0.0.0:67 receives every request (with
//! `IP_PKTINFO`, to know the receiving interface and destination address)
//! and sends the replies that IP can route (to the relay, to `ciaddr`, to
//! the broadcast address); an `AF_PACKET` socket sends the replies to a
//! client that has no address yet straight to its hardware address, since
//! a UDP send would first ARP for an address nobody holds.
//!
//! ```text
//!  UDP :67 ──recv_batch (recvmmsg, decodes)──► Inbound (decoded or error) ──► DHCP actor
//!  DHCP actor / store writer ──Transmitter::send_batch (sendmmsg)──► UDP :67 | AF_PACKET
//! ```
//! Receiving makes no decision: it decodes and hands over. Sending is
//! non-blocking, done by whoever holds the replies: the actor sends the
//! OFFERs and NAKs of a receive batch together, the store writer the ACKs
//! of a sync together, one `sendmmsg` for all of them that IP routes.
//!
//! The source address of every reply is the pool's server identifier
//! (`ipi_spec_dst`), which may be a VRRP virtual address; `IP_FREEBIND`
//! lets the send go out even in the instant the address is being moved.

// AF_PACKET addresses (sockaddr_ll) have no safe constructor in socket2.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::io::{self, IoSlice};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::sync::Arc;

use dhcproto::v4::Message;
use nix::sys::socket::{sendmsg, setsockopt, sockopt, ControlMessage, MsgFlags, SockaddrIn};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tracing::debug;

use super::handler::{decode, Delivery, Reply};

pub const SERVER_PORT: u16 = 67;
pub const CLIENT_PORT: u16 = 68;

/// A received datagram, decoded or not.
#[derive(Debug)]
pub struct Inbound {
    pub msg: Result<Message, dhcproto::error::DecodeError>,
    pub raw: Vec<u8>,
    pub ifindex: u32,
    pub src: SocketAddrV4,
    /// Destination address of the IP header.
    pub dst: Ipv4Addr,
}

/// The UDP server socket.
pub fn open_udp(port: u16) -> io::Result<Socket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_broadcast(true)?;
    s.set_freebind_v4(true)?;
    s.set_nonblocking(true)?;
    // bursts of thousands of requests must not overflow the queue
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    setsockopt(&s, sockopt::Ipv4PacketInfo, &true).map_err(io::Error::from)?;
    s.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port).into())?;
    Ok(s)
}

/// Register the UDP socket with the tokio reactor.
pub fn register(s: Socket) -> io::Result<AsyncFd<Socket>> {
    // SAFETY: a socket2::Socket owns its descriptor: it stays open and the
    // same for as long as the AsyncFd (its owner) lives.
    unsafe { AsyncFd::register_with_interest(s, tokio::io::Interest::READABLE) }
        .map_err(|e| io::Error::other(e.to_string()))
}

/// The packet socket for replies to clients without an address. Protocol 0:
/// it only sends, the kernel queues nothing on it.
pub fn open_packet() -> io::Result<Socket> {
    let s = Socket::new(Domain::PACKET, Type::DGRAM, None)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

/// Datagrams read by one `recvmmsg` call.
const RECV_SLOTS: usize = 32;
/// Room for one datagram (larger ones are truncated, as before).
const RECV_SLOT: usize = 4096;
/// Room for the `IP_PKTINFO` control message of one datagram, in `u64`s
/// (for the alignment `cmsghdr` needs).
const CMSG_WORDS: usize = 8;

/// Buffers reused across receive calls: room for `RECV_SLOTS` (32) datagrams
/// and their control messages. The `mmsghdr` array that points into them
/// is built on the stack per call (it holds raw pointers).
#[derive(Debug)]
pub struct RecvBuf {
    data: Vec<u8>,
    cmsg: Vec<u64>,
}

impl RecvBuf {
    pub fn new() -> RecvBuf {
        RecvBuf {
            data: vec![0u8; RECV_SLOTS * RECV_SLOT],
            cmsg: vec![0u64; RECV_SLOTS * CMSG_WORDS],
        }
    }
}

impl Default for RecvBuf {
    fn default() -> RecvBuf {
        RecvBuf::new()
    }
}

/// Read up to `max` queued datagrams without blocking, decoded, into
/// `out`: one `recvmmsg` per `RECV_SLOTS` (32) datagrams rather than one
/// `recvmsg` each (the receive path's system calls were a tenth of the
/// server's CPU under perfdhcp load). Returns true when the socket was
/// drained (the caller clears its readiness then): a call that returns
/// fewer datagrams than it had room for found the queue empty, as an
/// `EAGAIN` would have said.
pub fn recv_batch(sock: &Socket, b: &mut RecvBuf, max: usize, out: &mut Vec<Inbound>) -> bool {
    let fd = sock.as_raw_fd();
    let mut left = max;
    // bounded: every round reads at least one datagram or returns
    while left > 0 {
        let want = left.min(RECV_SLOTS);
        // SAFETY: all-zero iovec, sockaddr_in and mmsghdr values are valid
        // (null pointers, zero lengths); every pointer used is set below.
        let mut iov: [libc::iovec; RECV_SLOTS] = unsafe { std::mem::zeroed() };
        let mut addrs: [libc::sockaddr_in; RECV_SLOTS] = unsafe { std::mem::zeroed() };
        let mut hdrs: [libc::mmsghdr; RECV_SLOTS] = unsafe { std::mem::zeroed() };
        let data = b.data.as_mut_ptr();
        let cmsg = b.cmsg.as_mut_ptr();
        for i in 0..want {
            // SAFETY: slot i of `data` (RECV_SLOT bytes) and of `cmsg`
            // (CMSG_WORDS words) lie inside the buffers allocated in
            // RecvBuf::new.
            iov[i] = libc::iovec {
                iov_base: unsafe { data.add(i * RECV_SLOT) }.cast(),
                iov_len: RECV_SLOT,
            };
            let h = &mut hdrs[i].msg_hdr;
            h.msg_name = (&mut addrs[i] as *mut libc::sockaddr_in).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_iov = &mut iov[i];
            h.msg_iovlen = 1;
            h.msg_control = unsafe { cmsg.add(i * CMSG_WORDS) }.cast();
            h.msg_controllen = CMSG_WORDS * 8;
        }
        // SAFETY: `hdrs[..want]` describe live buffers of the lengths
        // given (the arrays above and RecvBuf's, not touched during the
        // call); the kernel writes only inside them.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                want as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN) => return true,
                Some(libc::EINTR) => continue,
                _ => {
                    debug!(error = %e, "dhcp recvmmsg");
                    return true;
                }
            }
        }
        let n = n as usize;
        for i in 0..n {
            let h = &hdrs[i].msg_hdr;
            let len = (hdrs[i].msg_len as usize).min(RECV_SLOT);
            let mut ifindex = 0;
            let mut dst = Ipv4Addr::UNSPECIFIED;
            // SAFETY: the kernel filled msg_control/msg_controllen of this
            // header; the CMSG macros walk only inside that area.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(h);
                while !c.is_null() {
                    if (*c).cmsg_level == libc::IPPROTO_IP && (*c).cmsg_type == libc::IP_PKTINFO {
                        let pi: libc::in_pktinfo =
                            std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                        ifindex = pi.ipi_ifindex as u32;
                        dst = Ipv4Addr::from(u32::from_be(pi.ipi_addr.s_addr));
                    }
                    c = libc::CMSG_NXTHDR(h, c);
                }
            }
            let src = if h.msg_namelen as usize >= std::mem::size_of::<libc::sockaddr_in>() {
                SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(addrs[i].sin_addr.s_addr)),
                    u16::from_be(addrs[i].sin_port),
                )
            } else {
                SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)
            };
            let raw = b.data[i * RECV_SLOT..i * RECV_SLOT + len].to_vec();
            out.push(Inbound {
                msg: decode(&raw),
                raw,
                ifindex,
                src,
                dst,
            });
        }
        if n < want {
            return true;
        }
        left -= n;
    }
    false
}

/// Replies sent by one `sendmmsg` call.
const SEND_SLOTS: usize = 32;

/// Sends replies; shared by the actor and the store writer.
#[derive(Debug)]
pub struct Transmitter {
    udp: Arc<AsyncFd<Socket>>,
    packet: Option<Socket>,
}

impl Transmitter {
    pub fn new(udp: Arc<AsyncFd<Socket>>, packet: Option<Socket>) -> Transmitter {
        Transmitter { udp, packet }
    }

    /// Send `reply`, which answers a request received on `ifindex`.
    pub fn send(&self, reply: &Reply, ifindex: u32) -> io::Result<()> {
        match &reply.to {
            Delivery::Relay(giaddr) => {
                self.udp_send(reply, SocketAddrV4::new(*giaddr, SERVER_PORT), 0)
            }
            Delivery::Unicast(ip) => self.udp_send(reply, SocketAddrV4::new(*ip, CLIENT_PORT), 0),
            Delivery::Broadcast => self.udp_send(
                reply,
                SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT),
                ifindex,
            ),
            Delivery::Hardware { ip, hw } => match &self.packet {
                Some(p) => packet_send(p, ifindex, hw, reply.from, *ip, &reply.bytes),
                None => self.udp_send(
                    reply,
                    SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT),
                    ifindex,
                ),
            },
        }
    }

    /// Send every reply of `batch` (reply, receiving interface): the ones
    /// IP routes go out with one `sendmmsg` per `SEND_SLOTS` (32) replies,
    /// the ones to a hardware address through the packet socket. Returns
    /// how many could not be sent.
    pub fn send_batch<'r>(&self, batch: impl IntoIterator<Item = (&'r Reply, u32)>) -> usize {
        let mut errors = 0;
        let mut udp: Vec<(&Reply, SocketAddrV4, u32)> = Vec::new();
        for (reply, ifindex) in batch {
            match self.udp_target(reply, ifindex) {
                Some((to, ifi)) => udp.push((reply, to, ifi)),
                None => {
                    if self.send(reply, ifindex).is_err() {
                        errors += 1;
                    }
                }
            }
        }
        for chunk in udp.chunks(SEND_SLOTS) {
            errors += self.udp_send_many(chunk);
        }
        errors
    }

    /// Where a reply goes over UDP (address, interface for the pktinfo),
    /// or None when it goes through the packet socket.
    fn udp_target(&self, reply: &Reply, ifindex: u32) -> Option<(SocketAddrV4, u32)> {
        let bcast = SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT);
        match &reply.to {
            Delivery::Relay(giaddr) => Some((SocketAddrV4::new(*giaddr, SERVER_PORT), 0)),
            Delivery::Unicast(ip) => Some((SocketAddrV4::new(*ip, CLIENT_PORT), 0)),
            Delivery::Broadcast => Some((bcast, ifindex)),
            Delivery::Hardware { .. } if self.packet.is_none() => Some((bcast, ifindex)),
            Delivery::Hardware { .. } => None,
        }
    }

    /// One `sendmmsg` for up to [`SEND_SLOTS`] UDP replies; a reply the
    /// kernel refuses is retried alone (for its error) and counted.
    fn udp_send_many(&self, chunk: &[(&Reply, SocketAddrV4, u32)]) -> usize {
        let n = chunk.len().min(SEND_SLOTS);
        // SAFETY: all-zero in_pktinfo, iovec, sockaddr_in, mmsghdr and
        // u64 values are valid; every pointer used is set below.
        let mut pis: [libc::in_pktinfo; SEND_SLOTS] = unsafe { std::mem::zeroed() };
        let mut iov: [libc::iovec; SEND_SLOTS] = unsafe { std::mem::zeroed() };
        let mut addrs: [libc::sockaddr_in; SEND_SLOTS] = unsafe { std::mem::zeroed() };
        let mut hdrs: [libc::mmsghdr; SEND_SLOTS] = unsafe { std::mem::zeroed() };
        let mut cmsg = [0u64; SEND_SLOTS * CMSG_WORDS];
        // SAFETY: CMSG_SPACE/CMSG_LEN only compute sizes.
        let (space, clen) = unsafe {
            let sz = std::mem::size_of::<libc::in_pktinfo>() as libc::c_uint;
            (libc::CMSG_SPACE(sz) as usize, libc::CMSG_LEN(sz) as usize)
        };
        debug_assert!(space <= CMSG_WORDS * 8);
        let cbase = cmsg.as_mut_ptr();
        for (i, (reply, to, ifindex)) in chunk[..n].iter().enumerate() {
            pis[i] = libc::in_pktinfo {
                ipi_ifindex: *ifindex as libc::c_int,
                ipi_spec_dst: libc::in_addr {
                    s_addr: u32::from(reply.from).to_be(),
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            };
            iov[i] = libc::iovec {
                iov_base: reply.bytes.as_ptr() as *mut libc::c_void,
                iov_len: reply.bytes.len(),
            };
            addrs[i] = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: to.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*to.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            let h = &mut hdrs[i].msg_hdr;
            h.msg_name = (&mut addrs[i] as *mut libc::sockaddr_in).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_iov = &mut iov[i];
            h.msg_iovlen = 1;
            // SAFETY: slot i of `cmsg` (CMSG_WORDS words, at least
            // CMSG_SPACE(in_pktinfo) bytes) holds exactly one control
            // message, written through the CMSG macros inside it.
            unsafe {
                h.msg_control = cbase.add(i * CMSG_WORDS).cast();
                h.msg_controllen = space;
                let c = libc::CMSG_FIRSTHDR(h);
                (*c).cmsg_level = libc::IPPROTO_IP;
                (*c).cmsg_type = libc::IP_PKTINFO;
                (*c).cmsg_len = clen;
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast(), pis[i]);
            }
        }
        let fd = self.udp.get_ref().as_raw_fd();
        let mut errors = 0;
        let mut at = 0;
        // bounded: every round sends or skips at least one reply
        while at < n {
            // SAFETY: hdrs[at..n] describe live buffers (the arrays above
            // and the replies' bytes, borrowed for this call).
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    hdrs.as_mut_ptr().add(at),
                    (n - at) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if r > 0 {
                at += r as usize;
                continue;
            }
            if r < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            // the reply at `at` failed: once more alone, then skip it
            let (reply, to, ifindex) = chunk[at];
            if self.udp_send(reply, to, ifindex).is_err() {
                errors += 1;
            }
            at += 1;
        }
        errors
    }

    fn udp_send(&self, reply: &Reply, to: SocketAddrV4, ifindex: u32) -> io::Result<()> {
        let pi = libc::in_pktinfo {
            ipi_ifindex: ifindex as libc::c_int,
            ipi_spec_dst: libc::in_addr {
                s_addr: u32::from(reply.from).to_be(),
            },
            ipi_addr: libc::in_addr { s_addr: 0 },
        };
        let iov = [IoSlice::new(&reply.bytes)];
        let cm = [ControlMessage::Ipv4PacketInfo(&pi)];
        let addr = SockaddrIn::from(to);
        let fd = self.udp.get_ref().as_raw_fd();
        match sendmsg(fd, &iov, &cm, MsgFlags::MSG_DONTWAIT, Some(&addr)) {
            Ok(_) => Ok(()),
            Err(e) => Err(io::Error::from(e)),
        }
    }
}

/// RFC 1071 one's complement sum.
fn csum(data: &[u8], mut sum: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        sum += u32::from(*b) << 8;
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 + UDP datagram from `src`:67 to `dst`:68 around `payload`.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-------+-------+---------------+-------------------------------+
/// |Ver=4  |IHL=5  |     TOS=0     |          Total Length         |
/// |         Identification=0      |Flags|    Fragment Offset=0    |
/// |     TTL=64    |   Proto=17    |         Header Checksum       |
/// |                    Source Address (server id)                 |
/// |                 Destination Address (yiaddr)                  |
/// +---------------------------------------------------------------+
/// |        Source Port=67         |      Destination Port=68      |
/// |            Length             |           Checksum            |
/// +---------------------------------------------------------------+
/// ```
pub fn ip_udp(src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let total = 20 + udp_len;
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        0,
        0x40,
        0,
        64,
        17,
        0,
        0,
    ]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let hc = fold(csum(&p[..20], 0));
    p[10..12].copy_from_slice(&hc.to_be_bytes());
    p.extend_from_slice(&SERVER_PORT.to_be_bytes());
    p.extend_from_slice(&CLIENT_PORT.to_be_bytes());
    p.extend_from_slice(&(udp_len as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&(udp_len as u16).to_be_bytes());
    let mut c = fold(csum(&p[20..], csum(&pseudo, 0)));
    if c == 0 {
        c = 0xffff;
    }
    p[26..28].copy_from_slice(&c.to_be_bytes());
    p
}

fn packet_send(
    sock: &Socket,
    ifindex: u32,
    hw: &[u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    payload: &[u8],
) -> io::Result<()> {
    let frame = ip_udp(src, dst, payload);
    // SAFETY: sockaddr_ll is plain old data; an all-zero value is valid and
    // every field used is set below.
    let mut ll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    ll.sll_family = libc::AF_PACKET as u16;
    ll.sll_protocol = (libc::ETH_P_IP as u16).to_be();
    ll.sll_ifindex = ifindex as i32;
    ll.sll_halen = hw.len().min(8) as u8;
    ll.sll_addr[..hw.len().min(8)].copy_from_slice(&hw[..hw.len().min(8)]);
    // SAFETY: `ll` is a fully initialised sockaddr_ll, `frame` a live
    // buffer of the length passed; sendto does not keep either pointer.
    let r = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            libc::MSG_DONTWAIT,
            (&ll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// An interface's name and IPv4 addresses (address, mask).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IfInfo {
    pub name: String,
    pub addrs: Vec<(Ipv4Addr, Ipv4Addr)>,
}

/// The interfaces of the namespace, by index.
pub fn interfaces() -> HashMap<u32, IfInfo> {
    let mut out: HashMap<u32, IfInfo> = HashMap::new();
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return out;
    };
    let mut index: HashMap<String, u32> = HashMap::new();
    for a in addrs {
        let idx = match index.get(&a.interface_name) {
            Some(i) => *i,
            None => {
                let Ok(i) = nix::net::if_::if_nametoindex(a.interface_name.as_str()) else {
                    continue;
                };
                index.insert(a.interface_name.clone(), i);
                i
            }
        };
        let e = out.entry(idx).or_insert_with(|| IfInfo {
            name: a.interface_name.clone(),
            addrs: Vec::new(),
        });
        let (Some(addr), Some(mask)) = (
            a.address.as_ref().and_then(|s| s.as_sockaddr_in()),
            a.netmask.as_ref().and_then(|s| s.as_sockaddr_in()),
        ) else {
            continue;
        };
        e.addrs.push((addr.ip(), mask.ip()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_udp_checksums_verify() {
        let p = ip_udp(
            "10.0.0.1".parse().unwrap(),
            "10.0.0.100".parse().unwrap(),
            &[1, 2, 3, 4, 5],
        );
        assert_eq!(p.len(), 20 + 8 + 5);
        assert_eq!(fold(csum(&p[..20], 0)), 0, "IP header sums to 0xffff");
        let mut pseudo = vec![10, 0, 0, 1, 10, 0, 0, 100, 0, 17, 0, 13];
        pseudo.extend_from_slice(&p[20..]);
        assert_eq!(fold(csum(&pseudo, 0)), 0, "UDP checksum verifies");
        assert_eq!(&p[20..24], &[0, 67, 0, 68]);
    }
}
