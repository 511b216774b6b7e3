//! VRRP sockets of one interface: a raw IPv4 socket of protocol 112 bound
//! to the interface that has joined 224.0.0.18 (receive), and one with
//! `IP_HDRINCL` (send: we write the TTL 255 and the source address).
//!
//! ```text
//!  interface ──► rx socket ──► reader task: decode ──(ifname, Result<Received, DecodeError>)──► actor
//!  actor ──encode_ip──► tx socket ──► interface
//! ```
//! The reader makes no decision (STYLE rule 2): every packet goes to the
//! actor, decoded or with its decode error.

// tokio registers a descriptor only through an `unsafe fn`.
#![allow(unsafe_code)]

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4};

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

use super::packet::{self, DecodeError, Received, VRRP_GROUP};

/// What a reader task forwards: the interface and the decode result.
pub type Inbound = (String, Result<Received, DecodeError>);

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("{ifname}: cannot {what}: {source}")]
    Socket {
        ifname: String,
        what: &'static str,
        source: std::io::Error,
    },
}

/// The two sockets of one interface.
#[derive(Debug)]
pub struct Sockets {
    pub rx: Socket,
    pub tx: Socket,
}

fn err<'a>(ifname: &'a str, what: &'static str) -> impl FnOnce(std::io::Error) -> NetError + 'a {
    move |source| NetError::Socket {
        ifname: ifname.to_string(),
        what,
        source,
    }
}

/// Open both sockets on `ifname` (index `ifindex`).
pub fn open(ifname: &str, ifindex: u32) -> Result<Sockets, NetError> {
    let proto = Some(Protocol::from(i32::from(packet::PROTO_VRRP)));
    let rx =
        Socket::new(Domain::IPV4, Type::RAW, proto).map_err(err(ifname, "open a raw socket"))?;
    rx.bind_device(Some(ifname.as_bytes()))
        .map_err(err(ifname, "bind to the interface"))?;
    rx.join_multicast_v4_n(&VRRP_GROUP, &InterfaceIndexOrAddress::Index(ifindex))
        .map_err(err(ifname, "join 224.0.0.18"))?;
    // Only the groups joined on this socket, not every socket's.
    rx.set_multicast_all_v4(false)
        .map_err(err(ifname, "set IP_MULTICAST_ALL"))?;
    rx.set_nonblocking(true)
        .map_err(err(ifname, "set non-blocking"))?;

    let tx = open_tx(ifname)?;
    Ok(Sockets { rx, tx })
}

/// The send socket alone, bound to `ifname` (for a virtual MAC interface,
/// whose frames then carry the virtual MAC).
pub fn open_tx(ifname: &str) -> Result<Socket, NetError> {
    let proto = Some(Protocol::from(i32::from(packet::PROTO_VRRP)));
    let tx =
        Socket::new(Domain::IPV4, Type::RAW, proto).map_err(err(ifname, "open a raw socket"))?;
    tx.set_header_included_v4(true)
        .map_err(err(ifname, "set IP_HDRINCL"))?;
    tx.bind_device(Some(ifname.as_bytes()))
        .map_err(err(ifname, "bind to the interface"))?;
    // SO_BINDTODEVICE also picks the outgoing interface of multicast.
    tx.set_multicast_loop_v4(false)
        .map_err(err(ifname, "set IP_MULTICAST_LOOP"))?;
    // Never receive on the send socket: nothing is joined and the buffer
    // stays minimal.
    let _ = tx.set_recv_buffer_size(0);
    tx.set_nonblocking(true)
        .map_err(err(ifname, "set non-blocking"))?;
    Ok(tx)
}

/// Send a whole IPv4 packet (from [`packet::encode_ip`]).
pub fn send(tx: &Socket, ip_packet: &[u8]) -> std::io::Result<()> {
    let to = SockAddr::from(SocketAddrV4::new(VRRP_GROUP, 0));
    tx.send_to(ip_packet, &to).map(|_| ())
}

/// Read packets until the actor goes away or the socket fails.
pub async fn reader(ifname: String, rx: Socket, out: mpsc::Sender<Inbound>) -> std::io::Result<()> {
    // SAFETY: the AsyncFd takes the socket by value and owns it until it
    // is dropped, so the descriptor cannot be closed while registered.
    let fd = unsafe { AsyncFd::register(rx) }.map_err(|e| e.into_parts().1)?;
    let mut buf = vec![0u8; 65536];
    loop {
        let mut guard = fd.readable().await?;
        match guard.try_io(|s| s.get_ref().read(&mut buf)) {
            Ok(Ok(n)) => {
                let decoded = packet::decode(&buf[..n]);
                if out.send((ifname.clone(), decoded)).await.is_err() {
                    return Ok(());
                }
            }
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => continue,
        }
    }
}

/// The address the advertisements of `ifname` come from: the first
/// address that is not a virtual address we manage.
pub fn primary_address(addrs: &[(Ipv4Addr, bool)], virtual_ips: &[Ipv4Addr]) -> Option<Ipv4Addr> {
    addrs
        .iter()
        .find(|(a, ours)| !ours && !virtual_ips.contains(a))
        .or_else(|| addrs.iter().find(|(_, ours)| !ours))
        .map(|(a, _)| *a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primary_skips_our_virtual_addresses() {
        let a = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        let addrs = vec![(a("10.0.0.100"), true), (a("10.0.0.2"), false)];
        assert_eq!(
            primary_address(&addrs, &[a("10.0.0.100")]),
            Some(a("10.0.0.2"))
        );
        // an owner: its only address is the virtual one
        let addrs = vec![(a("10.0.0.100"), false)];
        assert_eq!(
            primary_address(&addrs, &[a("10.0.0.100")]),
            Some(a("10.0.0.100"))
        );
        assert_eq!(primary_address(&[(a("10.0.0.100"), true)], &[]), None);
    }
}
