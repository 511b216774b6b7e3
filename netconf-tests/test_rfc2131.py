"""DHCPv4 conformance on the wire: RFC 2131 §4.1, §4.3.1-§4.3.6 and §4.4,
and the relay agent, FQDN and client-identifier RFCs, against the real
hotleased in a network namespace (configured over NETCONF). Requests are
crafted with scapy and sent, and replies captured, on AF_PACKET sockets
opened inside the client namespaces; each test checks what a client would
see: the message type, the addresses, the flags, the Ethernet and IP
destination and the options. Each test is named after the section it checks.

Topology (test_dhcp.Topo; one lab per module, a fresh daemon for the tests
that need their own configuration):

    C (scapy "clients") lan ── lan S (hotleased) uplk ── uplk R (scapy "relay")
                                10.77.0.1/24     10.78.0.1/24   10.78.0.2/24
"""

from __future__ import annotations

import itertools
import os
import select
import socket
import struct
import threading
import time

import pytest

from conftest import DHCPS_NS
from test_dhcp import CLONE_NEWNET, NsDaemon, Topo, _libc, commit, pool, settled, sh, state

scapy = pytest.importorskip("scapy", reason="scapy is needed (netconf-tests/requirements.txt)")
from scapy.layers.dhcp import BOOTP  # noqa: E402
from scapy.layers.inet import IP, UDP  # noqa: E402
from scapy.layers.l2 import ARP, Ether  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")

MAGIC = b"\x63\x82\x53\x63"
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = 1, 2, 3, 4, 5, 6, 7, 8
SID = "10.77.0.1"
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
_mac = itertools.count(1)
_xid = itertools.count(0x4242_0001)


# ---------------------------------------------------------------- wire


def in_ns(ns: str, fn):
    """Run *fn* in a thread that entered namespace *ns*; its sockets stay there."""
    out: dict = {}

    def run():
        fd = os.open(f"/var/run/netns/{ns}", os.O_RDONLY)
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError("setns", ns)
            out["v"] = fn()
        except Exception as e:  # handed to the caller
            out["err"] = e
        finally:
            os.close(fd)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if "err" in out:
        raise out["err"]
    return out["v"]


def link_mac(ns: str, dev: str) -> str:
    return sh("ip", "netns", "exec", ns, "cat", f"/sys/class/net/{dev}/address").stdout.strip()


class Wire:
    """An AF_PACKET socket on one interface of a namespace: send frames,
    read what arrives (every frame seen is kept, for the ARP checks)."""

    def __init__(self, ns: str, dev: str):
        def open_():
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
            s.bind((dev, 0))
            s.setblocking(False)
            return s

        self.sock = in_ns(ns, open_)
        self.mac = link_mac(ns, dev)
        self.seen: list[Ether] = []

    def drain(self):
        while select.select([self.sock], [], [], 0)[0]:
            self.sock.recv(65535)
        self.seen = []

    def send(self, frame):
        self.sock.send(bytes(frame))

    def _frames(self, timeout: float):
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([self.sock], [], [], left)[0]:
                continue
            data, addr = self.sock.recvfrom(65535)
            if addr[2] == socket.PACKET_OUTGOING:
                continue
            e = Ether(data)
            self.seen.append(e)
            yield e

    def replies(self, xid: int, timeout: float = 2.0, port: int = 68) -> list["Reply"]:
        """Every DHCP reply with *xid* to UDP *port* within *timeout*."""
        out = []
        for e in self._frames(timeout):
            if UDP in e and e[UDP].sport == 67 and e[UDP].dport == port:
                r = Reply(e)
                if r.xid == xid:
                    out.append(r)
        return out

    def reply(self, xid: int, timeout: float = 3.0, port: int = 68) -> "Reply | None":
        """The first DHCP reply with *xid*, or None after *timeout*."""
        for e in self._frames(timeout):
            if UDP in e and e[UDP].sport == 67 and e[UDP].dport == port:
                r = Reply(e)
                if r.xid == xid:
                    return r
        return None

    def arp_for(self, ip: str) -> bool:
        return any(ARP in e and e[ARP].op == 1 and e[ARP].pdst == ip for e in self.seen)


def parse_options(area: bytes) -> list[tuple[int, bytes]]:
    out, i = [], 0
    while i < len(area):
        c = area[i]
        if c == 255:
            break
        if c == 0:
            i += 1
            continue
        n = area[i + 1]
        out.append((c, area[i + 2 : i + 2 + n]))
        i += 2 + n
    return out


class Reply:
    """A captured reply: Ethernet/IP/UDP headers and the BOOTP fields."""

    def __init__(self, e: Ether):
        self.eth_dst = e.dst.lower()
        self.ip_src, self.ip_dst = e[IP].src, e[IP].dst
        self.sport, self.dport = e[UDP].sport, e[UDP].dport
        p = bytes(e[UDP].payload)
        self.raw = p
        self.op = p[0]
        self.xid = struct.unpack("!I", p[4:8])[0]
        self.flags = struct.unpack("!H", p[10:12])[0]
        self.ciaddr, self.yiaddr, self.siaddr, self.giaddr = (socket.inet_ntoa(p[o : o + 4]) for o in (12, 16, 20, 24))
        self.chaddr = p[28:34]
        self.sname, self.file = p[44:108], p[108:236]
        assert p[236:240] == MAGIC
        self.options = parse_options(p[240:])
        self.codes = [c for c, _ in self.options]
        self.opts = {}
        for c, v in self.options:
            self.opts.setdefault(c, v)

    @property
    def kind(self) -> int:
        return self.opts[53][0]

    def ip_opt(self, code: int) -> str:
        return socket.inet_ntoa(self.opts[code][:4])

    def u32(self, code: int) -> int:
        return struct.unpack("!I", self.opts[code])[0]

    def broadcast_bit(self) -> bool:
        return bool(self.flags & 0x8000)


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def new_mac() -> str:
    n = next(_mac)
    return f"02:00:5e:{(os.getpid() >> 8) & 0xff:02x}:{(n >> 8) & 0xff:02x}:{n & 0xff:02x}"


def ipb(a: str) -> bytes:
    return socket.inet_aton(a)


def options(*items: tuple[int, bytes]) -> bytes:
    out = b""
    for c, v in items:
        out += bytes([c, len(v)]) + v
    return out + b"\xff"


def dhcp(mac: str, kind: int | None, xid: int, opts=(), *, ciaddr="0.0.0.0", giaddr="0.0.0.0", flags=0,
         raw_opts: bytes | None = None, src="0.0.0.0", dst="255.255.255.255", eth_src=None,
         eth_dst=BROADCAST_MAC, sport=68, hops=0, file=b"", sname=b""):
    """A BOOTREQUEST frame; *opts* are (code, bytes) pairs after the
    message type (none when *kind* is None: a BOOTP request); *raw_opts*
    replaces the whole option area after the cookie."""
    if raw_opts is None:
        items = ([(53, bytes([kind]))] if kind is not None else []) + list(opts)
        raw_opts = options(*items)
    bootp = BOOTP(op=1, htype=1, hlen=6, hops=hops, xid=xid, flags=flags, ciaddr=ciaddr, giaddr=giaddr,
                  chaddr=mac_bytes(mac) + b"\0" * 10, sname=sname, file=file, options=MAGIC + raw_opts)
    frame = Ether(src=eth_src or mac, dst=eth_dst) / IP(src=src, dst=dst) / UDP(sport=sport, dport=67) / bootp
    return frame


# ---------------------------------------------------------------- lab


def dhcp_server(*pools, authoritative=None, extra=""):
    x = f'<dhcp-server xmlns="{DHCPS_NS}"><interface><name>lan</name></interface><interface><name>uplk</name></interface>'
    if authoritative is not None:
        x += f"<authoritative>{str(authoritative).lower()}</authoritative>"
    return x + extra + "".join(pools) + "</dhcp-server>"


LAN_POOL = pool("lan", SID, sections=[("10.77.0.10", "10.77.0.99")], excluded=[("10.77.0.50", "10.77.0.59")],
                dns=["10.77.0.53"], domain="lab.test", lease=600, static=[("10.77.0.200", "02:00:00:aa:00:99")])
UP_POOL = pool("up", "10.78.0.1", sections=[("10.78.0.10", "10.78.0.99")], lease=600)
FAR_POOL = pool("far", "10.79.0.1", sections=[("10.79.0.10", "10.79.0.99")], lease=600)


class Lab:
    def __init__(self, topo: Topo, daemon: NsDaemon):
        self.topo, self.d = topo, daemon
        self.m = daemon.connect()
        self.c = Wire(topo.C, "lan")
        self.r = Wire(topo.R, "uplk")
        self.s_lan = link_mac(topo.S, "lan")
        self.s_uplk = link_mac(topo.S, "uplk")

    def configure(self, authoritative=True, bootp=None):
        extra = f"<bootp>{bootp}</bootp>" if bootp else ""
        commit(self.m, dhcp_server(LAN_POOL, UP_POOL, FAR_POOL, authoritative=authoritative, extra=extra))

    def stats(self) -> dict:
        return state(self.m)["stats"]

    # one exchange from C
    def ask(self, mac, kind, opts=(), timeout=3.0, **kw) -> Reply | None:
        xid = next(_xid)
        self.c.send(dhcp(mac, kind, xid, opts, **kw))
        return self.c.reply(xid, timeout)

    def bind(self, mac, extra=()) -> str:
        """DISCOVER + SELECTING REQUEST from C: the bound address."""
        o = self.ask(mac, DISCOVER, extra)
        assert o is not None and o.kind == OFFER
        a = self.ask(mac, REQUEST, [(54, ipb(o.ip_opt(54))), (50, ipb(o.yiaddr)), *extra])
        assert a is not None and a.kind == ACK, a and a.kind
        return a.yiaddr


def make_lab(tmp, creds):
    topo = Topo(tmp)
    try:
        d = NsDaemon(topo.S, tmp / "daemon", creds).start()
    except Exception:
        topo.close()
        raise
    return topo, d


@pytest.fixture(scope="module")
def lab_(tmp_path_factory, creds):
    tmp = tmp_path_factory.mktemp("rfc2131")
    topo, d = make_lab(tmp, creds)
    try:
        lab = Lab(topo, d)
        lab.configure()
        yield lab
    finally:
        died = d.proc is not None and d.proc.poll() is not None
        d.stop()
        topo.close()
        if died:
            pytest.fail(f"hotleased died:\n{d.stderr()}")


@pytest.fixture
def lab(lab_):
    lab_.configure(authoritative=True)
    lab_.c.drain()
    lab_.r.drain()
    yield lab_
    assert lab_.d.proc.poll() is None, f"hotleased died:\n{lab_.d.stderr()}"


@pytest.fixture
def lab_na(lab):
    """The module lab with authoritative false."""
    lab.configure(authoritative=False)
    return lab


@pytest.fixture
def fresh(tmp_path, creds, request):
    """A lab of its own (for configurations the shared one must not get)."""
    topo, d = make_lab(tmp_path, creds)
    try:
        yield Lab(topo, d)
    finally:
        d.stop()
        topo.close()


# ---------------------------------------------------------------- §4.1


def test_4_1_offer_goes_to_chaddr_and_yiaddr_without_broadcast_bit(lab):
    mac = new_mac()
    o = lab.ask(mac, DISCOVER)
    assert o is not None and o.kind == OFFER
    assert o.eth_dst == mac and o.ip_dst == o.yiaddr
    assert (o.sport, o.dport) == (67, 68)
    assert o.ip_src == SID
    assert not lab.c.arp_for(o.yiaddr), "no ARP for an address nobody holds"


def test_4_1_offer_is_broadcast_when_the_client_sets_the_broadcast_bit(lab):
    o = lab.ask(new_mac(), DISCOVER, flags=0x8000)
    assert o is not None and o.kind == OFFER
    assert o.eth_dst == BROADCAST_MAC and o.ip_dst == "255.255.255.255"
    assert o.broadcast_bit()


def test_4_1_nak_is_broadcast_when_giaddr_is_zero(lab):
    mac = new_mac()
    lab.bind(mac)
    # SELECTING for another client's address
    other = lab.bind(new_mac())
    n = lab.ask(mac, REQUEST, [(54, ipb(SID)), (50, ipb(other))])
    assert n is not None and n.kind == NAK
    assert n.eth_dst == BROADCAST_MAC and n.ip_dst == "255.255.255.255"


def test_4_1_relayed_replies_go_to_giaddr_port_67_and_naks_set_the_broadcast_bit(lab):
    mac, xid = new_mac(), next(_xid)
    relay = "10.78.0.2"
    lab.r.send(dhcp(mac, DISCOVER, xid, giaddr=relay, hops=1, src=relay, dst="10.78.0.1",
                    eth_src=lab.r.mac, eth_dst=lab.s_uplk, sport=67))
    o = lab.r.reply(xid, port=67)
    assert o is not None and o.kind == OFFER
    assert o.ip_dst == relay and o.eth_dst == lab.r.mac and (o.sport, o.dport) == (67, 67)
    assert o.giaddr == relay and o.yiaddr.startswith("10.78.0.")
    xid = next(_xid)
    lab.r.send(dhcp(mac, REQUEST, xid, [(54, ipb("10.78.0.1")), (50, ipb("10.78.0.250"))], giaddr=relay,
                    src=relay, dst="10.78.0.1", eth_src=lab.r.mac, eth_dst=lab.s_uplk, sport=67))
    n = lab.r.reply(xid, port=67)
    assert n is not None and n.kind == NAK
    assert n.ip_dst == relay and n.broadcast_bit()


def test_4_1_ack_to_ciaddr_goes_to_chaddr_without_arp(lab):
    """Issue 13 item 3: the RENEWING client does not answer ARP (no address
    on its interface here); the ACK still reaches it, at its hardware
    address, with ciaddr as IP destination."""
    mac = new_mac()
    y = lab.bind(mac)
    lab.c.drain()
    a = lab.ask(mac, REQUEST, ciaddr=y, src=y, dst=SID, eth_dst=lab.s_lan, timeout=4)
    assert a is not None, "no ACK: the server waited for ARP"
    assert a.kind == ACK and a.yiaddr == y and a.ciaddr == y
    assert a.eth_dst == mac and a.ip_dst == y and a.dport == 68
    assert not lab.c.arp_for(y)


def test_4_1_rebinding_broadcast_is_answered_to_ciaddr(lab):
    mac = new_mac()
    y = lab.bind(mac)
    a = lab.ask(mac, REQUEST, ciaddr=y, src=y, flags=0x8000)
    assert a is not None and a.kind == ACK
    assert a.ip_dst == y and a.eth_dst == mac


# ---------------------------------------------------------------- §4.3.1


def test_4_3_1_offer_fields_and_required_options(lab):
    mac = new_mac()
    o = lab.ask(mac, DISCOVER, [(55, bytes([1, 3, 6, 15])), (61, b"\x01" + mac_bytes(mac))], flags=0)
    assert o.op == 2 and o.chaddr == mac_bytes(mac)
    assert o.ciaddr == "0.0.0.0" and o.giaddr == "0.0.0.0"
    assert o.kind == OFFER and o.ip_opt(54) == SID and o.u32(51) == 600
    lo, hi = socket.inet_aton("10.77.0.10"), socket.inet_aton("10.77.0.99")
    assert lo <= socket.inet_aton(o.yiaddr) <= hi
    assert not "10.77.0.50" <= o.yiaddr <= "10.77.0.59"
    # table 3: MUST NOT requested address, parameter list, max size;
    # SHOULD NOT message
    for code in (50, 55, 56, 57):
        assert code not in o.codes
    # the requested options, in the client's order, after the MUSTs
    assert o.codes[:3] == [53, 54, 51]
    asked = [c for c in o.codes if c in (1, 3, 6, 15)]
    assert asked == [1, 3, 6, 15]
    assert o.ip_opt(1) == "255.255.255.0" and o.ip_opt(3) == SID and o.opts[15] == b"lab.test"
    # RFC 6842: the client identifier echoed
    assert o.opts[61] == b"\x01" + mac_bytes(mac)
    assert len(o.raw) >= 300


def test_4_3_1_reply_header_fields_follow_table_3(lab):
    """Table 3: op BOOTREPLY, htype/hlen/xid/flags/giaddr/chaddr copied,
    hops 0, secs 0, ciaddr 0 in an OFFER."""
    mac, xid = new_mac(), next(_xid)
    f = dhcp(mac, DISCOVER, xid, giaddr=RELAY, hops=3, src=RELAY, dst="10.78.0.1",
             eth_src=lab.r.mac, eth_dst=lab.s_uplk, sport=67, flags=0x8000)
    f[BOOTP].secs = 9
    lab.r.send(f)
    o = lab.r.reply(xid, port=67)
    assert o is not None and o.kind == OFFER
    p = o.raw
    assert (p[0], p[1], p[2], p[3]) == (2, 1, 6, 0), "op, htype, hlen, hops"
    assert struct.unpack("!H", p[8:10])[0] == 0, "secs"
    assert o.flags == 0x8000 and o.giaddr == RELAY and o.ciaddr == "0.0.0.0" and o.chaddr == mac_bytes(mac)


def test_4_3_1_the_requested_address_is_offered_when_free(lab):
    o = lab.ask(new_mac(), DISCOVER, [(50, ipb("10.77.0.77"))])
    assert o.yiaddr == "10.77.0.77"
    # not when excluded
    o = lab.ask(new_mac(), DISCOVER, [(50, ipb("10.77.0.55"))])
    assert o.yiaddr != "10.77.0.55"


def test_4_3_1_a_client_is_offered_its_previous_address(lab):
    """The address order of §4.3.1: the current binding, then the previous
    one (released: no longer allocated, but its record kept, §4.3.4)."""
    mac = new_mac()
    y = lab.bind(mac)
    assert lab.ask(mac, DISCOVER).yiaddr == y
    assert lab.ask(mac, RELEASE, [(54, ipb(SID))], ciaddr=y, src=y, dst=SID, eth_dst=lab.s_lan, timeout=0.5) is None
    o = lab.ask(mac, DISCOVER)
    assert o.yiaddr == y


def test_4_3_1_a_static_binding_is_offered(lab):
    o = lab.ask("02:00:00:aa:00:99", DISCOVER)
    assert o.kind == OFFER and o.yiaddr == "10.77.0.200"


def test_4_3_1_no_free_address_means_no_offer(fresh):
    commit(fresh.m, dhcp_server(pool("lan", SID, sections=[("10.77.0.10", "10.77.0.10")])))
    fresh.bind(new_mac())
    assert fresh.ask(new_mac(), DISCOVER, timeout=1.5) is None
    assert settled(fresh.m, lambda s: s["stats"].get("exhausted", 0) >= 1)["stats"]["exhausted"] >= 1


def test_4_3_1_a_requested_lease_time_is_granted_up_to_the_pool_lease_time(lab):
    """Option 51 (a MAY): the pool's lease-time (600 here) is the most a
    client gets, 60 s the least; T1 and T2 follow a shortened lease."""
    lt = lambda t: (51, struct.pack("!I", t))  # noqa: E731
    mac = new_mac()
    o = lab.ask(mac, DISCOVER, [lt(300)])
    assert (o.u32(51), o.u32(58), o.u32(59)) == (300, 150, 262)
    a = lab.ask(mac, REQUEST, [(54, ipb(SID)), (50, ipb(o.yiaddr)), lt(300)])
    assert a.kind == ACK and a.u32(51) == 300
    lease = settled(lab.m, lambda s: s["leases"].get(o.yiaddr, {}).get("state") == "bound")["leases"][o.yiaddr]
    assert lease["valid-lifetime"] == "300"
    # a renewal asking for more gets the pool's lease-time, one asking for
    # too little gets 60 s
    y = o.yiaddr
    a = lab.ask(mac, REQUEST, [lt(86400)], ciaddr=y, src=y, dst=SID, eth_dst=lab.s_lan)
    assert a.kind == ACK and a.u32(51) == 600
    a = lab.ask(mac, REQUEST, [lt(5)], ciaddr=y, src=y, dst=SID, eth_dst=lab.s_lan)
    assert a.kind == ACK and (a.u32(51), a.u32(58), a.u32(59)) == (60, 30, 52)


# ---------------------------------------------------------------- §4.3.2


def test_4_3_2_selecting_binds_the_offered_address(lab):
    mac = new_mac()
    o = lab.ask(mac, DISCOVER)
    a = lab.ask(mac, REQUEST, [(54, ipb(SID)), (50, ipb(o.yiaddr)), (12, b"probe")])
    assert a.kind == ACK and a.yiaddr == o.yiaddr and a.ciaddr == "0.0.0.0"
    assert a.eth_dst == mac and a.ip_dst == o.yiaddr
    assert a.ip_opt(54) == SID and a.u32(51) == 600
    lease = settled(lab.m, lambda s: o.yiaddr in s["leases"])["leases"][o.yiaddr]
    assert lease["state"] == "bound" and lease["mac-address"] == mac and lease["hostname"] == "probe"


def test_4_3_2_selecting_another_server_is_silent_and_frees_the_offer(lab):
    mac = new_mac()
    o = lab.ask(mac, DISCOVER)
    assert lab.ask(mac, REQUEST, [(54, ipb("10.77.0.254")), (50, ipb(o.yiaddr))], timeout=1) is None
    o2 = lab.ask(new_mac(), DISCOVER, [(50, ipb(o.yiaddr))])
    assert o2.yiaddr == o.yiaddr


def test_4_3_2_selecting_a_taken_address_is_naked(lab):
    taken = lab.bind(new_mac())
    cid = (61, b"\x01" + mac_bytes(new_mac()))
    n = lab.ask(new_mac(), REQUEST, [(54, ipb(SID)), (50, ipb(taken)), cid])
    assert n.kind == NAK
    # RFC 6842: the client identifier comes back in a NAK too
    assert n.opts[61] == cid[1]
    # table 3: a NAK has no addresses and no lease options
    assert n.yiaddr == "0.0.0.0" and n.ciaddr == "0.0.0.0" and n.siaddr == "0.0.0.0"
    assert 51 not in n.codes and 58 not in n.codes and n.ip_opt(54) == SID


def test_4_3_2_selecting_without_option_50_binds_the_pending_offer(lab):
    """Issue 13 item 4: option 50 missing (a client MUST send it; some
    do not): the server takes the client's pending offer and counts it."""
    before = lab.stats().get("lenient-requests", 0)
    mac = new_mac()
    o = lab.ask(mac, DISCOVER)
    a = lab.ask(mac, REQUEST, [(54, ipb(SID))])
    assert a is not None and a.kind == ACK and a.yiaddr == o.yiaddr
    assert settled(lab.m, lambda s: s["stats"].get("lenient-requests", 0) > before)["stats"]["lenient-requests"] == before + 1


def test_4_3_2_init_reboot_own_address_is_acked(lab):
    mac = new_mac()
    y = lab.bind(mac)
    a = lab.ask(mac, REQUEST, [(50, ipb(y))])
    assert a.kind == ACK and a.yiaddr == y and a.eth_dst == mac and a.ip_dst == y


def test_4_3_2_init_reboot_other_address_naked(lab):
    """Issue 13 item 1: a client bound to y asking for a free z gets a NAK,
    not a second binding."""
    mac = new_mac()
    y = lab.bind(mac)
    free = "10.77.0.98"
    n = lab.ask(mac, REQUEST, [(50, ipb(free))])
    assert n is not None and n.kind == NAK, n and n.kind
    st = state(lab.m)
    mine = [ip for ip, le in st["leases"].items() if le["mac-address"] == mac and le["state"] == "bound"]
    assert mine == [y] and free not in st["leases"]
    # the free address is still there for a new client
    assert lab.ask(new_mac(), DISCOVER, [(50, ipb(free))]).yiaddr == free


def test_4_3_2_init_reboot_others_address_naked_not_authoritative(lab_na):
    """Issue 13 item 2: a known client asking for another client's address."""
    lab = lab_na
    mac = new_mac()
    lab.bind(mac)
    other = lab.bind(new_mac())
    n = lab.ask(mac, REQUEST, [(50, ipb(other))])
    assert n is not None and n.kind == NAK


def test_4_3_2_init_reboot_outside_pool_naked_not_authoritative(lab_na):
    lab = lab_na
    mac = new_mac()
    lab.bind(mac)
    for want in ("10.77.0.150", "10.77.0.55"):  # outside the sections, excluded
        n = lab.ask(mac, REQUEST, [(50, ipb(want))])
        assert n is not None and n.kind == NAK, want


def test_4_3_2_init_reboot_wrong_network_naked_not_authoritative(lab_na):
    lab = lab_na
    for mac in (new_mac(), new_mac()):
        n = lab.ask(mac, REQUEST, [(50, ipb("192.168.7.7"))])
        assert n is not None and n.kind == NAK
        lab.bind(mac)  # the second one is known


def test_4_3_2_init_reboot_of_an_unknown_client_is_silent(lab):
    # no record of the client nor of the address: another server may own it
    assert lab.ask(new_mac(), REQUEST, [(50, ipb("10.77.0.97"))], timeout=1) is None


def test_4_3_2_init_reboot_without_option_50_gets_the_binding(lab):
    mac = new_mac()
    y = lab.bind(mac)
    a = lab.ask(mac, REQUEST)
    assert a is not None and a.kind == ACK and a.yiaddr == y


def test_4_3_2_renewing_extends_the_lease(lab):
    mac = new_mac()
    y = lab.bind(mac)
    a = lab.ask(mac, REQUEST, ciaddr=y, src=y, dst=SID, eth_dst=lab.s_lan)
    assert a.kind == ACK and a.yiaddr == y and a.u32(51) == 600
    # table 5: renewing with someone else's address is NAKed
    other = lab.bind(new_mac())
    n = lab.ask(mac, REQUEST, ciaddr=other, src=other, dst=SID, eth_dst=lab.s_lan)
    assert n.kind == NAK and n.eth_dst == BROADCAST_MAC


def test_4_3_2_nak_carries_a_message_and_no_lease_or_configuration(lab):
    """Table 3 for DHCPNAK: message type, server identifier and a message
    (option 56, SHOULD); no lease time, T1/T2 or other configuration
    (MUST NOT); yiaddr, ciaddr, siaddr 0 and sname/file empty. RFC 6842:
    the client identifier comes back."""
    cid = (61, b"\x01" + mac_bytes(new_mac()))
    n = lab.ask(new_mac(), REQUEST, [(50, ipb("192.168.7.7")), (55, bytes([1, 3, 6, 15, 51])), cid])
    assert n is not None and n.kind == NAK
    assert sorted(n.codes) == [53, 54, 56, 61]
    assert n.opts[56] == b"requested address is not on this network"
    assert n.opts[61] == cid[1]
    assert (n.yiaddr, n.ciaddr, n.siaddr) == ("0.0.0.0",) * 3
    assert n.sname == bytes(64) and n.file == bytes(128)
    taken = lab.bind(new_mac())
    n = lab.ask(new_mac(), REQUEST, [(54, ipb(SID)), (50, ipb(taken))])
    assert n.kind == NAK and n.opts[56] == b"requested address is not available to this client"
    assert 61 not in n.codes, "no client identifier sent, none echoed"


def test_4_3_2_rebinding_is_extended_only_when_consistent_with_the_binding(lab):
    """REBINDING (broadcast, ciaddr set): the server SHOULD extend the
    lease only if the request is consistent with its records. A client
    rebinding another client's address gets a NAK; the owner's binding is
    untouched. The ACK echoes the client identifier (RFC 6842)."""
    owner = new_mac()
    cid = (61, b"\x01" + mac_bytes(owner))
    y = lab.bind(owner, [cid])
    before = settled(lab.m, lambda s: y in s["leases"])["leases"][y]
    n = lab.ask(new_mac(), REQUEST, ciaddr=y, src=y, flags=0x8000)
    assert n is not None and n.kind == NAK
    after = state(lab.m)["leases"][y]
    assert after["mac-address"] == owner and after["expires"] == before["expires"]
    a = lab.ask(owner, REQUEST, [cid], ciaddr=y, src=y, flags=0x8000)
    assert a is not None and a.kind == ACK and a.opts.get(61) == cid[1]


# ---------------------------------------------------------------- §4.3.3 - §4.3.5


def test_4_3_3_decline_takes_the_address_out(lab):
    mac = new_mac()
    y = lab.bind(mac)
    assert lab.ask(mac, DECLINE, [(54, ipb(SID)), (50, ipb(y))], timeout=0.5) is None
    assert settled(lab.m, lambda s: s["leases"].get(y, {}).get("state") == "declined")["leases"][y]["state"] == "declined"
    o = lab.ask(new_mac(), DISCOVER, [(50, ipb(y))])
    assert o.yiaddr != y
    o = lab.ask(mac, DISCOVER)
    assert o.yiaddr != y


def test_4_3_4_release_frees_the_address_without_reply(lab):
    mac = new_mac()
    y = lab.bind(mac)
    assert lab.ask(mac, RELEASE, [(54, ipb(SID))], ciaddr=y, src=y, dst=SID, eth_dst=lab.s_lan, timeout=1) is None
    assert settled(lab.m, lambda s: s["leases"][y]["state"] == "released")["leases"][y]["state"] == "released"
    # another client's RELEASE of it changes nothing
    z = lab.bind(new_mac())
    lab.ask(new_mac(), RELEASE, [(54, ipb(SID))], ciaddr=z, src=z, dst=SID, eth_dst=lab.s_lan, timeout=0.5)
    assert state(lab.m)["leases"][z]["state"] == "bound"


def test_4_3_5_inform_is_acked_to_ciaddr_without_lease(lab):
    mac, ci = new_mac(), "10.77.0.150"
    a = lab.ask(mac, INFORM, [(55, bytes([1, 3, 6]))], ciaddr=ci, src=ci, dst=SID, eth_dst=lab.s_lan)
    assert a is not None and a.kind == ACK
    assert a.yiaddr == "0.0.0.0" and a.ciaddr == ci
    assert a.ip_dst == ci and a.eth_dst == mac
    assert 51 not in a.codes and 58 not in a.codes and 59 not in a.codes
    assert a.ip_opt(3) == SID and a.ip_opt(54) == SID
    assert ci not in state(lab.m)["leases"]


def test_4_3_5_inform_without_ciaddr_is_dropped(lab):
    """Issue 13 item 5: no ciaddr, nowhere to answer: dropped and counted."""
    before = lab.stats().get("dropped-inform-no-address", 0)
    assert lab.ask(new_mac(), INFORM, timeout=1) is None
    st = settled(lab.m, lambda s: s["stats"].get("dropped-inform-no-address", 0) > before)
    assert st["stats"]["dropped-inform-no-address"] == before + 1


# ---------------------------------------------------------------- §4.3.6 / §4.4


def test_4_3_6_requests_with_bad_fields_are_ignored(lab):
    # a BOOTREPLY sent to the server port, a hlen beyond chaddr, no message type
    mac = new_mac()
    xid = next(_xid)
    f = dhcp(mac, DISCOVER, xid)
    f[BOOTP].op = 2
    lab.c.send(f)
    f = dhcp(mac, DISCOVER, xid)
    f[BOOTP].hlen = 17
    lab.c.send(f)
    # a message type only servers send
    lab.c.send(dhcp(mac, OFFER, xid))
    assert lab.c.reply(xid, 1) is None
    assert lab.d.proc.poll() is None


def test_4_4_5_t1_and_t2_are_sent_and_ordered(lab):
    mac = new_mac()
    o = lab.ask(mac, DISCOVER)
    t1, t2, lease = o.u32(58), o.u32(59), o.u32(51)
    assert 0 < t1 < t2 < lease
    assert t1 == lease // 2 and t2 == lease * 7 // 8


# ---------------------------------------------------------------- relay agents


RELAY = "10.78.0.2"


def relayed(lab, mac, kind, opts=(), info: bytes | None = None, giaddr=RELAY):
    """A request as a relay agent in R forwards it (option 82 last); the reply to the relay."""
    xid = next(_xid)
    items = list(opts) + ([(82, info)] if info is not None else [])
    lab.r.send(dhcp(mac, kind, xid, items, giaddr=giaddr, hops=1, src=RELAY, dst="10.78.0.1",
                    eth_src=lab.r.mac, eth_dst=lab.s_uplk, sport=67))
    return lab.r.reply(xid, port=67)


def test_rfc3046_option_82_is_echoed_to_the_relay_only(lab):
    info = bytes([1, 4]) + b"eth7" + bytes([2, 3]) + b"sw1"
    o = relayed(lab, new_mac(), DISCOVER, info=info)
    assert o is not None and o.kind == OFFER
    assert o.opts[82] == info and o.codes[-1] == 82
    # the same option from a client on the link (no giaddr) is not echoed
    d = lab.ask(new_mac(), DISCOVER, [(82, info)])
    assert d is not None and 82 not in d.codes


def test_rfc3527_link_selection_chooses_the_pool(lab):
    """The relay's giaddr (10.78.0.2) is on the uplink; sub-option 5 names
    the client's subnet 10.79.0.0/24: the address comes from there, the
    reply still goes to giaddr, the sub-option is echoed."""
    mac = new_mac()
    info = bytes([1, 2]) + b"d1" + bytes([5, 4]) + ipb("10.79.0.0")
    o = relayed(lab, mac, DISCOVER, info=info)
    assert o is not None and o.kind == OFFER
    assert o.yiaddr.startswith("10.79.0.") and o.ip_dst == RELAY and o.giaddr == RELAY
    assert o.opts[82] == info
    a = relayed(lab, mac, REQUEST, [(54, ipb(o.ip_opt(54))), (50, ipb(o.yiaddr))], info=info)
    assert a is not None and a.kind == ACK and a.yiaddr == o.yiaddr
    lease = settled(lab.m, lambda s: o.yiaddr in s["leases"])["leases"][o.yiaddr]
    assert lease["pool"] == "far"


def test_rfc3046_option_82_is_not_put_in_overloaded_fields(fresh):
    """RFC 3046 §2.2: the echoed option 82 is the last option of the
    options field, never in 'sname' or 'file', also when the reply's
    other options overflow into them (the pool chosen by link selection)."""
    lab = fresh
    big = "".join(f"<option><code>{c}</code><hex>{':'.join([f'{c:02x}'] * n)}</hex></option>"
                  for c, n in ((200, 100), (201, 120), (202, 110), (203, 40)))
    commit(lab.m, dhcp_server(pool("lan", SID, sections=[("10.77.0.10", "10.77.0.20")]).replace("</ip-pool>", big + "</ip-pool>")))
    lab.r.drain()
    info = bytes([1, 40]) + b"c" * 40 + bytes([5, 4]) + ipb("10.77.0.0")
    o = relayed(lab, new_mac(), DISCOVER, info=info)
    assert o is not None and o.kind == OFFER and o.yiaddr.startswith("10.77.0.")
    assert o.opts[52] != b"\x00", "the reply overflows"
    assert o.codes[-1] == 82 and o.opts[82] == info
    assert 82 not in [c for c, _ in parse_options(o.file) + parse_options(o.sname)]


def test_rfc5107_server_identifier_override(lab):
    """Sub-option 11: the client is told the relay's address as server
    identifier (so its renewals go through the relay); its REQUEST naming
    that address is for this server; the replies leave from the server's
    own address."""
    mac, over = new_mac(), "10.79.0.1"
    info = bytes([1, 2]) + b"d1" + bytes([5, 4]) + ipb("10.79.0.0") + bytes([11, 4]) + ipb(over)
    o = relayed(lab, mac, DISCOVER, info=info)
    assert o is not None and o.ip_opt(54) == over and o.ip_src == "10.78.0.1"
    a = relayed(lab, mac, REQUEST, [(54, ipb(over)), (50, ipb(o.yiaddr))], info=info)
    assert a is not None and a.kind == ACK and a.ip_opt(54) == over
    # a renewal the relay forwards (ciaddr set, giaddr its own)
    xid = next(_xid)
    lab.r.send(dhcp(mac, REQUEST, xid, [(82, info)], ciaddr=o.yiaddr, giaddr=RELAY, src=RELAY, dst="10.78.0.1",
                    eth_src=lab.r.mac, eth_dst=lab.s_uplk, sport=67))
    r = lab.r.reply(xid, port=67)
    assert r is not None and r.kind == ACK and r.yiaddr == o.yiaddr


# ---------------------------------------------------------------- client identity and names


def test_rfc4702_client_fqdn_is_answered_without_dns_updates(lab):
    """The server does no DNS updates: N set, S clear, O set (the client
    asked for S), E echoed, RCODEs 255, the name echoed; the lease is named
    after the FQDN."""
    mac = new_mac()
    name = b"\x05probe\x03lab\x04test\x00"
    fq = (81, bytes([0x05, 0, 0]) + name)
    o = lab.ask(mac, DISCOVER, [fq])
    assert o.opts[81] == bytes([0x0e, 255, 255]) + name
    a = lab.ask(mac, REQUEST, [(54, ipb(SID)), (50, ipb(o.yiaddr)), fq])
    assert a.kind == ACK and a.opts[81][0] == 0x0e
    lease = settled(lab.m, lambda s: o.yiaddr in s["leases"])["leases"][o.yiaddr]
    assert lease["hostname"] == "probe.lab.test"


def test_rfc4361_node_specific_client_id_is_the_identity(lab):
    """Type 255 client identifiers (IAID + DUID): the identifier, not the
    hardware address, names the client: the same identifier behind two
    interfaces is one client, two IAIDs on one interface are two, and the
    identifier is echoed (RFC 6842)."""
    duid = bytes([0, 4]) + bytes(range(16))
    cid1 = (61, bytes([255, 0, 0, 0, 1]) + duid)
    cid2 = (61, bytes([255, 0, 0, 0, 2]) + duid)
    mac_a, mac_b = new_mac(), new_mac()
    y1 = lab.bind(mac_a, [cid1])
    o = lab.ask(mac_b, DISCOVER, [cid1])
    assert o.yiaddr == y1 and o.opts[61] == cid1[1]
    y2 = lab.bind(mac_a, [cid2])
    assert y2 != y1
    st = state(lab.m)["leases"]
    assert st[y1]["state"] == st[y2]["state"] == "bound"


# ---------------------------------------------------------------- option encoding


def test_rfc2131_4_1_option_overload_and_rfc3396_long_options_are_read(lab):
    """Option 52 puts options in 'file' (1) and 'sname' (2): the host name
    is in 'file'; the client identifier is split over three instances
    (RFC 3396), one of them in 'sname'. The lease gets both, whole."""
    mac = new_mac()
    cid = bytes([0xff, 0, 0, 0, 9]) + bytes(range(40, 60))
    raw = options((53, bytes([DISCOVER])), (52, b"\x03"), (61, cid[:10]), (61, cid[10:20]))
    file = bytes([12, 6]) + b"loaded" + b"\xff"
    sname = bytes([61, len(cid) - 20]) + cid[20:] + b"\xff"
    xid = next(_xid)
    lab.c.send(dhcp(mac, None, xid, raw_opts=raw, file=file, sname=sname))
    o = lab.c.reply(xid)
    assert o is not None and o.kind == OFFER
    assert o.opts[61] == cid
    raw = options((53, bytes([REQUEST])), (52, b"\x01"), (54, ipb(SID)), (50, ipb(o.yiaddr)), (61, cid[:7]), (61, cid[7:]))
    xid = next(_xid)
    lab.c.send(dhcp(mac, None, xid, raw_opts=raw, file=file))
    a = lab.c.reply(xid)
    assert a is not None and a.kind == ACK
    lease = settled(lab.m, lambda s: o.yiaddr in s["leases"])["leases"][o.yiaddr]
    assert lease["hostname"] == "loaded"
    assert lease["client-id"] == ":".join(f"{b:02x}" for b in cid)


def test_rfc3396_a_long_relay_option_is_echoed_split(lab):
    """A 300-byte relay agent information option (two instances) comes
    back to the relay split into 255 + 45 bytes, the same value."""
    info = b""
    for i in range(10):
        info += bytes([9, 28]) + bytes([0, 0, 0, 9]) + bytes([i]) * 24  # vendor-specific sub-options
    info = info[:300]
    mac, xid = new_mac(), next(_xid)
    raw = options((53, bytes([DISCOVER])), (57, struct.pack("!H", 1500)), (82, info[:150]), (82, info[150:]))
    lab.r.send(dhcp(mac, None, xid, raw_opts=raw, giaddr=RELAY, hops=1, src=RELAY, dst="10.78.0.1",
                    eth_src=lab.r.mac, eth_dst=lab.s_uplk, sport=67))
    o = lab.r.reply(xid, port=67)
    assert o is not None and o.kind == OFFER
    pieces = [v for c, v in o.options if c == 82]
    assert [len(p) for p in pieces] == [255, 45]
    assert b"".join(pieces) == info


# ---------------------------------------------------------------- shared networks


def shared(xml: str, name: str) -> str:
    return xml.replace("</ip-pool>", f"<shared-network>{name}</shared-network></ip-pool>")


def test_shared_network_second_pool_serves_when_the_first_is_exhausted(fresh):
    """Two subnets on one link: the interface holds 10.77.0.1/24 and
    10.80.0.1/24; the first pool has one address. The second client gets
    an address of the second subnet, with its router and mask and the
    server's address there as identifier; both renew in their own pool.
    Behind a relay the same needs the pools named one shared network."""
    lab = fresh
    sh("ip", "-n", lab.topo.S, "addr", "add", "10.80.0.1/24", "dev", "lan")
    sh("ip", "-n", lab.topo.S, "addr", "add", "10.81.0.1/24", "dev", "uplk")
    commit(lab.m, dhcp_server(
        pool("a-lan", SID, sections=[("10.77.0.10", "10.77.0.10")]),
        pool("b-lan", "10.80.0.1", sections=[("10.80.0.10", "10.80.0.20")], mask="255.255.255.0"),
        shared(pool("c-up", "10.78.0.1", sections=[("10.78.0.10", "10.78.0.10")]), "uplink"),
        shared(pool("d-up", "10.81.0.1", sections=[("10.81.0.10", "10.81.0.20")]), "uplink"),
    ))
    lab.c.drain()
    m1, m2 = new_mac(), new_mac()
    assert lab.bind(m1) == "10.77.0.10"
    o = lab.ask(m2, DISCOVER, [(55, bytes([1, 3]))])
    assert o is not None and o.yiaddr == "10.80.0.10"
    assert o.ip_opt(3) == "10.80.0.1" and o.ip_opt(1) == "255.255.255.0" and o.ip_opt(54) == "10.80.0.1"
    a = lab.ask(m2, REQUEST, [(54, ipb("10.80.0.1")), (50, ipb(o.yiaddr))])
    assert a is not None and a.kind == ACK and a.yiaddr == "10.80.0.10"
    # INIT-REBOOT in each pool
    assert lab.ask(m1, REQUEST, [(50, ipb("10.77.0.10"))]).kind == ACK
    assert lab.ask(m2, REQUEST, [(50, ipb("10.80.0.10"))]).kind == ACK
    # the client of the second pool is offered its address again
    assert lab.ask(m2, DISCOVER).yiaddr == "10.80.0.10"
    leases = settled(lab.m, lambda s: "10.80.0.10" in s["leases"])["leases"]
    assert leases["10.80.0.10"]["pool"] == "b-lan" and leases["10.77.0.10"]["pool"] == "a-lan"
    # relayed: giaddr in c-up, the shared network continues in d-up
    lab.r.drain()
    got = []
    for _ in range(2):
        mac = new_mac()
        o = relayed(lab, mac, DISCOVER)
        assert o is not None and o.kind == OFFER
        a = relayed(lab, mac, REQUEST, [(54, ipb(o.ip_opt(54))), (50, ipb(o.yiaddr))])
        assert a is not None and a.kind == ACK
        got.append(a.yiaddr)
    assert got == ["10.78.0.10", "10.81.0.10"]


# ---------------------------------------------------------------- BOOTP


def test_rfc1534_bootp_is_ignored_and_counted_or_served_from_static_bindings(lab):
    """bootp ignore (the default): a BOOTREQUEST without a message type
    gets nothing and is counted. bootp static-bindings: a client with a
    static binding gets a BOOTREPLY with its address and the pool's
    options, without DHCP's; one without a binding is still dropped."""
    static = "02:00:00:aa:00:99"
    before = lab.stats()
    assert lab.ask(static, None, timeout=1) is None
    st = settled(lab.m, lambda s: s["stats"].get("dropped-bootp", 0) > before.get("dropped-bootp", 0))["stats"]
    assert st["dropped-bootp"] == before.get("dropped-bootp", 0) + 1
    assert st["dropped-malformed"] == before["dropped-malformed"]
    lab.configure(bootp="static-bindings")
    try:
        bootp_served(lab, static, before)
    finally:
        lab.configure(bootp="ignore")


def bootp_served(lab, static, before):
    """The static-bindings half of the test above."""
    b = lab.ask(static, None)
    assert b is not None and b.op == 2
    assert b.yiaddr == "10.77.0.200" and b.eth_dst == static and b.ip_dst == "10.77.0.200"
    assert b.ip_opt(1) == "255.255.255.0" and b.ip_opt(3) == SID
    assert not set(b.codes) & {53, 54, 51, 58, 59}
    assert lab.ask(new_mac(), None, timeout=1) is None
    st = settled(lab.m, lambda s: s["stats"].get("bootp-replies", 0) >= 1)["stats"]
    assert st["bootp-replies"] == before.get("bootp-replies", 0) + 1
    assert st["dropped-bootp"] == before.get("dropped-bootp", 0) + 2


def test_rfc2131_4_1_options_that_do_not_fit_overload_file_and_sname(fresh):
    """A pool whose options overflow the 576-byte reply a client without a
    maximum message size accepts: the overflow goes to 'file' and 'sname'
    (no boot file configured) with option 52, and the reply stays within
    576 bytes of IP datagram."""
    lab = fresh
    big = "".join(f"<option><code>{c}</code><hex>{':'.join([f'{c:02x}'] * n)}</hex></option>"
                  for c, n in ((200, 100), (201, 120), (202, 110), (203, 40)))
    commit(lab.m, dhcp_server(pool("lan", SID, sections=[("10.77.0.10", "10.77.0.20")]).replace("</ip-pool>", big + "</ip-pool>")))
    lab.c.drain()
    o = lab.ask(new_mac(), DISCOVER)
    assert o is not None and o.kind == OFFER
    assert len(o.raw) + 28 <= 576
    assert o.opts[52] == b"\x03"
    found = dict(o.options)
    found.update(parse_options(o.file))
    found.update(parse_options(o.sname))
    for c, n in ((200, 100), (201, 120), (202, 110), (203, 40)):
        assert found.get(c) == bytes([c]) * n, c


def test_4_3_2_a_routed_renewal_is_served_from_the_pool_of_ciaddr(lab):
    """A client behind a relay renews by unicast to the server: the request
    arrives routed, without giaddr, on an interface of another subnet. It
    is served from the pool of its address (not NAKed as a wrong network)
    and answered through IP routing, not at the hardware address."""
    mac = new_mac()
    info = bytes([5, 4]) + ipb("10.79.0.0")
    o = relayed(lab, mac, DISCOVER, info=info)
    a = relayed(lab, mac, REQUEST, [(54, ipb(o.ip_opt(54))), (50, ipb(o.yiaddr))], info=info)
    assert a is not None and a.kind == ACK and a.yiaddr.startswith("10.79.0.")
    xid = next(_xid)
    lab.r.send(dhcp(mac, REQUEST, xid, ciaddr=a.yiaddr, src=a.yiaddr, dst="10.78.0.1",
                    eth_src=lab.r.mac, eth_dst=lab.s_uplk))
    r = lab.r.reply(xid)
    assert r is not None and r.kind == ACK and r.yiaddr == a.yiaddr
    assert r.ip_dst == a.yiaddr and r.eth_dst == lab.r.mac


# ---------------------------------------------------------------- §4.3.1 ping-check


PING_POOL = pool("lan", SID, sections=[("10.77.0.10", "10.77.0.30")], lease=600,
                 static=[("10.77.0.200", "02:00:00:aa:00:99")])


def ping_check(timeout_ms: int) -> str:
    return f"<ping-check><enabled>true</enabled><timeout>{timeout_ms}</timeout></ping-check>"


def icmp_echo_to(wire: Wire, ip: str) -> bool:
    """Whether the frames seen carry an ICMP echo request to *ip*."""
    from scapy.layers.inet import ICMP

    return any(ICMP in e and e[ICMP].type == 8 and e[IP].dst == ip for e in wire.seen)


def test_4_3_1_ping_check_an_address_in_use_is_not_offered(fresh):
    """RFC 2131 §4.3.1: the server SHOULD probe an address before it
    offers it. A host in C holds 10.77.0.10 (configured statically, it
    answers ping). Ping-check off (the default): the client asking for it
    is offered it, nothing is probed. On: the server pings it, gets the
    answer, takes the address out (declined, counted in ping-conflicts)
    and offers the client another one; the next client does not get it
    either."""
    lab = fresh
    held = "10.77.0.10"
    sh("ip", "-n", lab.topo.C, "addr", "add", f"{held}/24", "dev", "lan")
    commit(lab.m, dhcp_server(PING_POOL))
    lab.c.drain()
    first = new_mac()
    o = lab.ask(first, DISCOVER, [(50, ipb(held))])
    assert o is not None and o.kind == OFFER and o.yiaddr == held, "ping-check off: behaviour unchanged"
    assert not icmp_echo_to(lab.c, held)
    # the client takes another server's offer: the address is free again
    assert lab.ask(first, REQUEST, [(54, ipb("10.77.0.254")), (50, ipb(held))], timeout=0.5) is None
    st = lab.stats()
    assert st["ping-checks"] == 0 and st["ping-conflicts"] == 0

    commit(lab.m, dhcp_server(PING_POOL, extra=ping_check(1000)))
    lab.c.drain()
    mac = new_mac()
    o = lab.ask(mac, DISCOVER, [(50, ipb(held))], timeout=5)
    assert o is not None and o.kind == OFFER
    assert o.yiaddr != held and o.yiaddr.startswith("10.77.0.")
    assert icmp_echo_to(lab.c, held), "no ICMP echo request to the address on the wire"
    st = settled(lab.m, lambda s: s["stats"].get("ping-conflicts", 0) == 1)
    assert st["stats"]["ping-conflicts"] == 1 and st["stats"]["ping-checks"] >= 2
    assert st["leases"][held]["state"] == "declined"
    # the client gets the other address; nobody gets the one in use
    a = lab.ask(mac, REQUEST, [(54, ipb(SID)), (50, ipb(o.yiaddr))])
    assert a is not None and a.kind == ACK and a.yiaddr == o.yiaddr
    o2 = lab.ask(new_mac(), DISCOVER, [(50, ipb(held))], timeout=5)
    assert o2 is not None and o2.yiaddr not in (held, o.yiaddr)


def test_4_3_1_ping_check_a_silent_address_is_offered_after_the_probe(fresh):
    """Nobody holds 10.77.0.11: the probe gets no answer (the server's ARP
    for it goes unanswered) and the OFFER leaves after it. The wait does
    not hold up other clients: a client with a static binding (never
    probed) is offered its address while the probe waits. A DISCOVER
    retransmitted during the probe is answered once, by the probe's end,
    and one after it is offered the probed address without a new probe."""
    lab = fresh
    silent = "10.77.0.11"
    commit(lab.m, dhcp_server(PING_POOL, extra=ping_check(3000)))
    lab.c.drain()
    mac, xid = new_mac(), next(_xid)
    lab.c.send(dhcp(mac, DISCOVER, xid, [(50, ipb(silent))]))
    time.sleep(0.3)
    lab.c.send(dhcp(mac, DISCOVER, xid, [(50, ipb(silent))]))  # retransmission
    s = lab.ask("02:00:00:aa:00:99", DISCOVER, timeout=2)
    assert s is not None and s.kind == OFFER and s.yiaddr == "10.77.0.200"
    offers = lab.c.replies(xid, timeout=6)
    assert len(offers) == 1, f"{len(offers)} OFFERs for a DISCOVER and its retransmission"
    assert offers[0].kind == OFFER and offers[0].yiaddr == silent
    # the static client's OFFER came while the probe waited (before the
    # probe's OFFER); the probe went out first (the server's ARP for the
    # probed address, which nobody answers, before the probe's OFFER)
    order = [e for e in lab.c.seen if (ARP in e and e[ARP].pdst == silent and e[ARP].op == 1)
             or (UDP in e and e[UDP].sport == 67 and bytes(e[UDP].payload)[4:8] in (struct.pack("!I", xid), struct.pack("!I", s.xid)))]
    kinds = ["arp" if ARP in e else ("probed" if bytes(e[UDP].payload)[4:8] == struct.pack("!I", xid) else "static") for e in order]
    assert "arp" in kinds[: kinds.index("probed")] and kinds.index("static") < kinds.index("probed"), kinds
    st = settled(lab.m, lambda s: s["stats"].get("ping-checks", 0) == 1)["stats"]
    assert st["ping-checks"] == 1 and st["ping-conflicts"] == 0 and st["sent/offer"] == 2
    # offered again at once, not probed again
    o = lab.ask(mac, DISCOVER, timeout=2)
    assert o is not None and o.yiaddr == silent
    assert lab.stats()["ping-checks"] == 1
