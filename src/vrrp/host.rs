//! The host side of VRRP: interface state read from netlink, virtual
//! addresses added and removed through netlink, gratuitous ARP through an
//! `AF_PACKET` socket.
//!
//! ```text
//!  kernel ──RTNLGRP_LINK / IPV4_IFADDR──► monitor task ──IfaceEvent──► actor
//!  actor ──HostCmd (in order)──► host task ──RTM_NEWADDR/DELADDR, ARP──► kernel
//! ```
//! Both tasks only carry out and report; the actor decides.

// AF_PACKET needs a `sockaddr_ll`, which neither std nor socket2 builds.
#![allow(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use futures::stream::{StreamExt, TryStreamExt};
use rtnetlink::packet_route::address::{AddressAttribute, AddressProtocol};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, MacVlanMode};
use rtnetlink::{AddressMessageBuilder, Handle, LinkMacVlan, LinkUnspec, MulticastGroup};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

/// Marks the addresses hotleased adds (`IFA_PROTO`), so that a restart
/// after a crash tells its own stale virtual addresses from an address the
/// operator configured (which makes this router the address owner).
pub const ADDRESS_PROTO: u8 = 0x68; // 'h'

/// What the actor needs to know of an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub up: bool,
    pub mac: [u8; 6],
    /// IPv4 addresses, in the kernel's order (primary first), with whether
    /// hotleased added them.
    pub addrs: Vec<(Ipv4Addr, bool)>,
}

/// Interface changes, by name (`None`: it does not exist).
pub type IfaceEvent = (String, Option<Link>);

/// Commands for the host task, carried out in order.
#[derive(Debug)]
pub enum HostCmd {
    /// Add /32 addresses and announce each with a gratuitous ARP.
    Add {
        ifname: String,
        index: u32,
        mac: [u8; 6],
        addrs: Vec<Ipv4Addr>,
    },
    Remove {
        ifname: String,
        index: u32,
        addrs: Vec<Ipv4Addr>,
    },
    /// Make sure the macvlan `name` on `parent` exists with `mac`, is up,
    /// and neither it nor its parent answers ARP for the other's addresses.
    CreateVmac {
        parent: String,
        parent_index: u32,
        name: String,
        mac: [u8; 6],
    },
    /// Remove the macvlan `name` (and so its addresses).
    DeleteVmac { name: String },
    /// Answered when every command before it is done.
    Flush(oneshot::Sender<()>),
}

/// RFC 5798 section 7.3: the virtual router MAC address of IPv4 VRID `vrid`.
pub fn virtual_mac(vrid: u8) -> [u8; 6] {
    [0x00, 0x00, 0x5e, 0x00, 0x01, vrid]
}

/// Name of the macvlan carrying the virtual MAC of `vrid` on the interface
/// of index `parent_index` (unique per interface and VRID, at most 15
/// characters for any realistic index).
pub fn vmac_name(parent_index: u32, vrid: u8) -> String {
    format!("vm{parent_index}.{vrid}")
}

/// Write a sysctl of this network namespace; a missing one is not an error
/// (no IPv6 in the kernel, say).
fn sysctl(path: &str, value: &str) {
    match std::fs::write(path, value) {
        Ok(()) => debug!(path, value, "sysctl set"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => warn!(path, error = %e, "cannot set sysctl"),
    }
}

async fn link_index(handle: &Handle, name: &str) -> Option<u32> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(m)) => Some(m.header.index),
        _ => None,
    }
}

async fn create_vmac(
    handle: &Handle,
    parent: &str,
    parent_index: u32,
    name: &str,
    mac: [u8; 6],
) -> Result<(), HostError> {
    if link_index(handle, name).await.is_none() {
        let msg = LinkMacVlan::new(name, parent_index, MacVlanMode::Private)
            .address(mac.to_vec())
            .build();
        handle.link().add(msg).execute().await?;
    }
    let index = link_index(handle, name)
        .await
        .ok_or_else(|| HostError::Io(std::io::Error::other("macvlan vanished")))?;
    // Silent until it holds addresses: no IPv6 link-local traffic that would
    // teach the switches the virtual MAC on a backup's port.
    sysctl(&format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1");
    // Each interface answers ARP only for its own addresses: the parent not
    // for the virtual IPs (with its real MAC), the macvlan not for the
    // parent's addresses (with the virtual MAC).
    sysctl(&format!("/proc/sys/net/ipv4/conf/{parent}/arp_ignore"), "1");
    sysctl(&format!("/proc/sys/net/ipv4/conf/{name}/arp_ignore"), "1");
    // Replies sourced from a virtual IP leave through the parent: its ARP
    // requests must name the parent's own address, or they would teach
    // the neighbours the virtual IP at the real MAC.
    sysctl(
        &format!("/proc/sys/net/ipv4/conf/{parent}/arp_announce"),
        "2",
    );
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await?;
    info!(%parent, vmac = %name, "virtual MAC interface ready");
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("netlink: {0}")]
    Netlink(#[from] rtnetlink::Error),
    #[error("netlink socket: {0}")]
    Io(#[from] std::io::Error),
}

/// Read one interface's state.
async fn read_link(handle: &Handle, name: &str) -> Result<Option<Link>, HostError> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    let msg = match links.try_next().await {
        Ok(Some(m)) => m,
        Ok(None) => return Ok(None),
        // ENODEV comes back as an error
        Err(rtnetlink::Error::NetlinkError(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let index = msg.header.index;
    let flags = msg.header.flags;
    let mut mac = [0u8; 6];
    for a in &msg.attributes {
        if let LinkAttribute::Address(m) = a {
            if m.len() == 6 {
                mac.copy_from_slice(m);
            }
        }
    }
    let mut addrs = Vec::new();
    let mut stream = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute();
    while let Some(a) = stream.try_next().await? {
        if a.header.index != index {
            continue;
        }
        let mut local = None;
        let mut ours = false;
        for attr in &a.attributes {
            match attr {
                AddressAttribute::Local(IpAddr::V4(v4)) => local = Some(*v4),
                AddressAttribute::Address(IpAddr::V4(v4)) if local.is_none() => local = Some(*v4),
                AddressAttribute::Protocol(p) => ours = u8::from(*p) == ADDRESS_PROTO,
                _ => {}
            }
        }
        if let Some(l) = local {
            addrs.push((l, ours));
        }
    }
    Ok(Some(Link {
        index,
        up: flags.contains(LinkFlags::Up) && flags.contains(LinkFlags::Running),
        mac,
        addrs,
    }))
}

/// Watch the interfaces named in `watch` and report every change.
///
/// Any link or IPv4 address notification triggers a re-read of the watched
/// interfaces (a handful): simpler and more robust than patching state
/// from individual messages, and cheap at the rate interfaces change.
pub async fn monitor(
    mut watch: watch::Receiver<BTreeSet<String>>,
    events: mpsc::UnboundedSender<IfaceEvent>,
) -> Result<(), HostError> {
    let (conn, handle, mut messages) =
        rtnetlink::new_multicast_connection(&[MulticastGroup::Link, MulticastGroup::Ipv4Ifaddr])?;
    let _conn = AbortOnDrop(tokio::spawn(conn));
    let mut known: BTreeMap<String, Option<Link>> = BTreeMap::new();
    loop {
        let names = watch.borrow_and_update().clone();
        known.retain(|n, _| names.contains(n));
        for name in &names {
            let link = read_link(&handle, name).await?;
            if known.get(name) != Some(&link) {
                debug!(ifname = %name, ?link, "interface changed");
                known.insert(name.clone(), link.clone());
                if events.send((name.clone(), link)).is_err() {
                    return Ok(());
                }
            }
        }
        tokio::select! {
            m = messages.next() => if m.is_none() { return Ok(()) },
            c = watch.changed() => if c.is_err() { return Ok(()) },
        }
        // Coalesce a burst of notifications into one re-read.
        tokio::time::sleep(Duration::from_millis(2)).await;
        while let Ok(Some(_)) = tokio::time::timeout(Duration::ZERO, messages.next()).await {}
    }
}

/// Carry out host commands in order until the channel closes.
pub async fn run(mut cmds: mpsc::UnboundedReceiver<HostCmd>) -> Result<(), HostError> {
    let (conn, handle, _) = rtnetlink::new_connection()?;
    let _conn = AbortOnDrop(tokio::spawn(conn));
    let mut arp = None;
    while let Some(cmd) = cmds.recv().await {
        match cmd {
            HostCmd::Add {
                ifname,
                index,
                mac,
                addrs,
            } => {
                for a in &addrs {
                    let mut req = handle.address().add(index, IpAddr::V4(*a), 32).replace();
                    req.message_mut()
                        .attributes
                        .push(AddressAttribute::Protocol(AddressProtocol::from(
                            ADDRESS_PROTO,
                        )));
                    match req.execute().await {
                        Ok(()) => info!(%ifname, addr = %a, "virtual address added"),
                        Err(e) => {
                            warn!(%ifname, addr = %a, error = %e, "cannot add virtual address")
                        }
                    }
                }
                if arp.is_none() {
                    arp = match ArpSocket::open() {
                        Ok(s) => Some(s),
                        Err(e) => {
                            warn!(error = %e, "cannot open the gratuitous ARP socket");
                            None
                        }
                    };
                }
                if let Some(s) = &arp {
                    for a in &addrs {
                        if let Err(e) = s.send(index, &garp_frame(mac, *a)) {
                            warn!(%ifname, addr = %a, error = %e, "gratuitous ARP not sent");
                        }
                    }
                }
            }
            HostCmd::Remove {
                ifname,
                index,
                addrs,
            } => {
                for a in &addrs {
                    let msg = AddressMessageBuilder::<Ipv4Addr>::new()
                        .index(index)
                        .address(*a, 32)
                        .build();
                    match handle.address().del(msg).execute().await {
                        Ok(()) => info!(%ifname, addr = %a, "virtual address removed"),
                        // already gone (interface removed, or never added)
                        Err(rtnetlink::Error::NetlinkError(e)) => {
                            debug!(%ifname, addr = %a, error = %e, "virtual address not removed")
                        }
                        Err(e) => {
                            warn!(%ifname, addr = %a, error = %e, "cannot remove virtual address")
                        }
                    }
                }
            }
            HostCmd::CreateVmac {
                parent,
                parent_index,
                name,
                mac,
            } => {
                if let Err(e) = create_vmac(&handle, &parent, parent_index, &name, mac).await {
                    warn!(%parent, vmac = %name, error = %e, "cannot create the virtual MAC interface");
                }
            }
            HostCmd::DeleteVmac { name } => {
                if let Some(index) = link_index(&handle, &name).await {
                    match handle.link().del(index).execute().await {
                        Ok(()) => info!(vmac = %name, "virtual MAC interface removed"),
                        Err(e) => {
                            warn!(vmac = %name, error = %e, "cannot remove the virtual MAC interface")
                        }
                    }
                }
            }
            HostCmd::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
    Ok(())
}

/// A task aborted when its handle is dropped (STYLE rule 3).
#[derive(Debug)]
pub struct AbortOnDrop<T>(pub tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A gratuitous ARP request announcing `addr` at `mac` (RFC 5798 section
/// 6.4.1, RFC 5227 section 3): broadcast, sender and target address both
/// `addr`.
///
/// ```text
///  Ethernet: dst ff:ff:ff:ff:ff:ff | src mac | type 0x0806
///  ARP: htype 1 | ptype 0x0800 | hlen 6 | plen 4 | op 1 (request)
///       sha mac | spa addr | tha 00:00:00:00:00:00 | tpa addr
/// ```
pub fn garp_frame(mac: [u8; 6], addr: Ipv4Addr) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    f[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&addr.octets());
    f[38..42].copy_from_slice(&addr.octets());
    f
}

/// An `AF_PACKET` raw socket that sends whole Ethernet frames.
struct ArpSocket(std::os::fd::OwnedFd);

impl ArpSocket {
    fn open() -> std::io::Result<ArpSocket> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain socket(2) call; the result is checked before use.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd is a freshly created descriptor that nothing else owns.
        Ok(ArpSocket(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }))
    }

    fn send(&self, ifindex: u32, frame: &[u8]) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ARP as u16).to_be();
        sll.sll_ifindex = ifindex as i32;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&frame[0..6]);
        // SAFETY: the buffer and the address point to live memory of the
        // given lengths for the duration of the call.
        let n = unsafe {
            libc::sendto(
                self.0.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                libc::MSG_DONTWAIT,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Whether this process holds CAP_NET_RAW and CAP_NET_ADMIN (effective),
/// read from /proc/self/status; the error names what is missing.
pub fn check_capabilities() -> Result<(), String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("cannot read /proc/self/status: {e}"))?;
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .ok_or("no CapEff line in /proc/self/status")?;
    missing_capabilities(eff)
}

fn missing_capabilities(eff: u64) -> Result<(), String> {
    const CAP_NET_ADMIN: u32 = 12;
    const CAP_NET_RAW: u32 = 13;
    let missing: Vec<&str> = [
        (CAP_NET_RAW, "CAP_NET_RAW"),
        (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
    ]
    .into_iter()
    .filter(|(bit, _)| eff & (1 << bit) == 0)
    .map(|(_, n)| n)
    .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "hotleased lacks {} (VRRP needs raw sockets and address changes)",
            missing.join(" and ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garp_bytes() {
        let f = garp_frame([2, 0, 0, 0, 0, 1], Ipv4Addr::new(10, 0, 0, 100));
        let expect: [u8; 42] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x08, 0x06, // ethernet
            0, 1, 8, 0, 6, 4, 0, 1, // arp request
            2, 0, 0, 0, 0, 1, 10, 0, 0, 100, // sender
            0, 0, 0, 0, 0, 0, 10, 0, 0, 100, // target
        ];
        assert_eq!(f, expect);
    }

    #[test]
    fn virtual_mac_and_its_interface_name() {
        assert_eq!(virtual_mac(51), [0, 0, 0x5e, 0, 1, 51]);
        assert_eq!(vmac_name(2, 51), "vm2.51");
        assert!(vmac_name(99_999, 255).len() <= 15);
    }

    #[test]
    fn capabilities_are_named_when_missing() {
        assert!(missing_capabilities(u64::MAX).is_ok());
        let e = missing_capabilities(1 << 12).unwrap_err();
        assert!(
            e.contains("CAP_NET_RAW") && !e.contains("CAP_NET_ADMIN"),
            "{e}"
        );
        let e = missing_capabilities(0).unwrap_err();
        assert!(e.contains("CAP_NET_RAW and CAP_NET_ADMIN"), "{e}");
    }
}
