"""The hot-backup lab of the black-box tests (issue 10): two hotleased
routers and real DHCP clients on one bridge, and a direct link between the
routers that carries the remote-backup-service.

    {tag}c0 (client) eth0 ── q0 ┐
    {tag}c1 (client) eth0 ── q1 ├ br0 in {tag}s
    {tag}c2 (client) eth0 ── q2 ┤
                                ├ p0 ── {tag}r0 = A: eth0 10.77.0.1/24, hb 10.78.0.1/30 ┐
                                └ p1 ── {tag}r1 = B: eth0 10.77.0.2/24, hb 10.78.0.2/30 ┘
                                                        (hb: a direct veth A <-> B)

Both routers are configured over NETCONF with the seed's steps 1-4 as
``examples/configure.py`` writes them (the lab runs the same procedure),
on the test site below: VRRP 51 with the virtual IP 10.77.0.254 as gateway
and DHCP server identifier, A priority 200 and B 100, a 60 s lease with
T1 after 8 s, adverts every 200 ms.

Built on ``vrrplab.Lab`` (bridge, router namespaces, cleanup) with the
client namespaces and the direct link added; ``close()`` kills what runs
inside and removes every namespace, also when a test fails.  Clients are
busybox udhcpc and ISC dhclient, each logging its events (bound, renew,
nak, ...) with address and server identifier to a file; ``dumpcap`` in a
client's namespace records what that client saw on the wire.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from conftest import NS, RBK_NS, ROOT, _finish
from test_dhcp import DHCLIENT_CONF, events, state as dhcp_state, write_exec
from test_vrrp import VRID, state as vrrp_state
from vrrplab import Capture, Lab, NsDaemon, sh, wait_for

sys.path.insert(0, str(ROOT / "examples"))
import configure  # noqa: E402  (examples/configure.py: the seed's steps)

VIP = "10.77.0.254"
ADVERT_MS = 200
LEASE = 60  # the shortest lease the module allows
T1 = 8  # renew-time: dhclient renews every 8 s (busybox udhcpc at lease/2, or on SIGUSR1)
HB = ("10.78.0.1", "10.78.0.2")
SITE = dict(interface="eth0", vrid=VRID, vip=VIP, mask="255.255.255.0",
            pool=("10.77.0.10", "10.77.0.49"), lease_time=LEASE, renew_time=T1,
            advertise_interval=ADVERT_MS, port=7000)
ROUTERS = (
    dict(prio=200, delay=0, peer=HB[1], src=HB[0]),
    dict(prio=100, delay=0, peer=HB[0], src=HB[1]),
)

# DHCP message types (option 53)
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE = "1", "2", "3", "4", "5", "6", "7"

# The clients' scripts configure the address and log each event with its
# time, address and server identifier, tab-separated (test_dhcp.events).
UDHCPC_SCRIPT = """#!/bin/sh
case "$1" in
  bound|renew) ip addr flush dev "$interface"; ip addr add "$ip/$subnet" dev "$interface" ;;
  deconfig) ip addr flush dev "$interface" ;;
esac
printf '%s\\tt=%s\\tip=%s\\tserverid=%s\\tlease=%s\\n' "$1" "$(date +%s.%N)" "$ip" "$serverid" "$lease" >> "$DHLOG"
"""

DHCLIENT_SCRIPT = """#!/bin/sh
case "$reason" in
  PREINIT) ip link set "$interface" up ;;
  BOUND|RENEW|REBIND|REBOOT) ip addr flush dev "$interface"; ip addr add "$new_ip_address/$new_subnet_mask" dev "$interface" ;;
  EXPIRE|FAIL|RELEASE|STOP) ip addr flush dev "$interface" ;;
esac
ev=$(echo "$reason" | tr A-Z a-z)
printf '%s\\tt=%s\\tip=%s\\tserverid=%s\\tlease=%s\\n' "$ev" "$(date +%s.%N)" "$new_ip_address" "$new_dhcp_server_identifier" "$new_dhcp_lease_time" >> DHLOG
exit 0
"""


def rfc_bound_s(priority: int = 100) -> float:
    """VRRP Master_Down_Interval of a backup of *priority*, in seconds."""
    return (3 * ADVERT_MS + (256 - priority) * ADVERT_MS / 256) / 1000


def instant(date_and_time: str) -> datetime:
    """A yang:date-and-time as an aware datetime ('Z' or an offset)."""
    return datetime.fromisoformat(date_and_time.replace("Z", "+00:00"))


class HbLab(Lab):
    def __init__(self, tmp: Path, clients: int = 3):
        self.clients: list[str] = []
        super().__init__(2, tmp)
        try:
            a, b = self.routers
            sh("ip", "link", "add", "hb", "netns", a, "type", "veth", "peer", "name", "hb",
               "netns", b)
            for ns, addr in zip(self.routers, HB):
                sh("ip", "-n", ns, "addr", "add", f"{addr}/30", "dev", "hb")
                sh("ip", "-n", ns, "link", "set", "hb", "up")
            for i in range(clients):
                ns = f"{self.tag}c{i}"
                sh("ip", "netns", "add", ns)
                self.clients.append(ns)
                sh("ip", "-n", self.switch, "link", "add", f"q{i}", "type", "veth",
                   "peer", "name", "eth0", "netns", ns)
                sh("ip", "-n", self.switch, "link", "set", f"q{i}", "master", "br0", "up")
                sh("ip", "-n", ns, "link", "set", "lo", "up")
                sh("ip", "-n", ns, "link", "set", "eth0", "address", self.mac(i))
                sh("ip", "-n", ns, "link", "set", "eth0", "up")
        except BaseException:
            self.close()
            raise

    @staticmethod
    def mac(i: int) -> str:
        return f"02:00:00:00:77:{i:02x}"

    def spawn_in(self, ns: str, *cmd: str, **kw) -> subprocess.Popen:
        p = subprocess.Popen(["ip", "netns", "exec", ns, *cmd], **kw)
        self.procs.append(p)
        return p

    def link(self, router: int, dev: str, up: bool):
        sh("ip", "-n", self.routers[router], "link", "set", dev, "up" if up else "down")

    def client_capture(self, i: int) -> Capture:
        """DHCP as client i sees it (dumpcap in its namespace)."""
        c = Capture(self, self.tmp / f"c{i}-{time.monotonic_ns()}.pcapng", ns=self.clients[i],
                    iface="eth0", bpf="udp port 67 or udp port 68", prog="dumpcap")
        self.procs.append(c.proc)
        return c

    def cut_bridge(self, *pairs: tuple[str, str]):
        """Drop every frame the bridge would forward between the ports of
        each pair (both ways): ``("p0", "p1")`` parts the routers, ``("q0",
        "p1")`` hides client 0 from B.  ``heal_bridge()`` undoes it."""
        rules = "".join(f'    iifname "{x}" oifname "{y}" drop\n    iifname "{y}" oifname "{x}" drop\n'
                        for x, y in pairs)
        subprocess.run(["ip", "netns", "exec", self.switch, "nft", "-f", "-"], check=True,
                       input=f"table bridge hbcut {{\n  chain forward {{\n"
                             f"    type filter hook forward priority 0; policy accept;\n"
                             f"{rules}  }}\n}}\n", text=True, capture_output=True, timeout=20)

    def heal_bridge(self):
        sh("ip", "netns", "exec", self.switch, "nft", "delete", "table", "bridge", "hbcut")

    def close(self):
        super().close()
        for ns in self.clients:
            for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            sh("ip", "netns", "del", ns, check=False)


class Router:
    """A or B: its namespace, its hotleased and one NETCONF session to it
    (reopened after a restart)."""

    def __init__(self, lab: HbLab, i: int, creds: dict, tmp: Path):
        self.lab, self.i = lab, i
        self.name = "AB"[i]
        self.ns = lab.routers[i]
        self.addr = lab.addr(i)
        self.d = NsDaemon(self.ns, tmp / f"rtr-{self.name}", creds)
        self._m = None

    def start(self):
        self._m = None
        self.d.start()
        return self

    @property
    def m(self):
        if self._m is None or not self._m.connected:
            self._m = self.d.connect()
        return self._m

    def configure(self, tls: dict | None = None, **site):
        configure.apply(self.m, ROUTERS[self.i], {**SITE, **site}, tls, say=lambda *_: None)

    def vrrp(self) -> dict:
        return vrrp_state(self.m)

    def dhcp(self) -> dict:
        return dhcp_state(self.m)

    def leases(self) -> dict:
        return self.dhcp()["leases"]

    def _rbk_state(self, lst: str) -> dict:
        """{leaf: text} of the state of rbs1 / rbp1 ('container/leaf' one
        level down); {} when absent."""
        data = self.m.get(filter=("subtree", f'<{lst} xmlns="{RBK_NS}"/>')).data_ele
        return configure.leaves(data.find(f"rbk:{lst}/rbk:state", NS))

    def rbs(self) -> dict:
        return self._rbk_state("remote-backup-service")

    def rbp(self) -> dict:
        return self._rbk_state("remote-backup-profile")

    def batch_backup(self) -> int:
        return configure.batch_backup(self.m)

    def holds_vip(self) -> bool:
        return VIP in self.lab.addresses(self.i)

    def crash(self):
        """The device fails: kill -9 and both links down."""
        self.d.kill()
        self._m = None
        self.lab.link(self.i, "eth0", False)
        self.lab.link(self.i, "hb", False)

    def stop(self):
        self._m = None
        rc = self.d.stop()
        assert rc == 0, f"{self.name} exited with {rc} on SIGTERM:\n{self.d.stderr()}"

    def wait(self, pred, timeout: float, what: str, step: float = 0.05):
        return wait_for(pred, timeout, step=step, what=f"{self.name}: {what}")

    def wait_lease(self, ip: str, timeout: float = 5, **want) -> dict:
        def ok():
            lease = self.leases().get(ip)
            return lease if lease and all(lease.get(k) == v for k, v in want.items()) else None
        return self.wait(ok, timeout, f"lease {ip} with {want}")


@contextmanager
def running_pair(creds, tmp_path: Path, request, prepare=None, clients: int = 3):
    """The lab with both routers' daemons started, not configured yet:
    ``(lab, a, b)``. ``prepare(routers)`` runs before the daemons start.
    The daemons are stopped (their logs kept when the test failed) and the
    namespaces removed afterwards."""
    lab = HbLab(tmp_path, clients=clients)
    routers: list[Router] = []
    try:
        routers = [Router(lab, i, creds, tmp_path) for i in (0, 1)]
        if prepare is not None:
            prepare(routers)
        for r in routers:
            r.start()
        yield lab, routers[0], routers[1]
    finally:
        try:
            _finish(request, [r.d for r in routers])
        finally:
            lab.close()


class Client:
    """A DHCP client running in client namespace *i* until the lab closes."""

    def __init__(self, lab: HbLab, i: int, log: Path):
        self.lab, self.i, self.log = lab, i, log
        self.ns = lab.clients[i]
        self.mac = lab.mac(i)
        self.proc: subprocess.Popen | None = None

    def events(self) -> list[dict]:
        return events(self.log)

    def after(self, t: float) -> list[dict]:
        return [e for e in self.events() if float(e.get("t", 0)) > t]

    def wait_event(self, kinds: tuple[str, ...], timeout: float, since: float = 0) -> dict:
        try:
            return wait_for(lambda: next((e for e in self.after(since) if e["event"] in kinds), None),
                            timeout, step=0.1, what=f"{self.name} {kinds} after {since:.1f}")
        except AssertionError as e:
            out = self.log.with_suffix(".out")
            tail = out.read_text(errors="replace").splitlines()[-12:] if out.exists() else []
            events = [f"{x['event']} {x.get('ip', '')}" for x in self.events()]
            raise AssertionError(f"{e}\n{self.name} events: {events}\n{self.name} said:\n"
                                 + "\n".join(tail)) from None

    def wait_bound(self, timeout: float = 20) -> dict:
        return self.wait_event(("bound",), timeout)

    def renewal_due(self):
        """Nothing: the client renews by itself at T1."""

    def address(self) -> str | None:
        """The address configured on the client's interface now."""
        out = sh("ip", "-n", self.ns, "-4", "-o", "addr", "show", "dev", "eth0").stdout
        addrs = [line.split()[3].split("/")[0] for line in out.splitlines()]
        assert len(addrs) <= 1, addrs
        return addrs[0] if addrs else None


class Udhcpc(Client):
    name = "udhcpc"

    def start(self, *extra: str):
        script = write_exec(self.lab.tmp / "udhcpc.sh", UDHCPC_SCRIPT)
        self.proc = self.lab.spawn_in(
            self.ns, "env", f"DHLOG={self.log}", "udhcpc", "-i", "eth0", "-f", "-t", "5",
            "-T", "1", "-A", "1", "-s", str(script), *extra,
            stdout=subprocess.DEVNULL, stderr=open(self.log.with_suffix(".out"), "wb"))
        return self

    def renewal_due(self):
        """T1 for busybox: it renews at lease/2 whatever T1 says, and
        SIGUSR1 makes it send that same unicast renewal now."""
        self.proc.send_signal(signal.SIGUSR1)

    def once(self, *extra: str, timeout: float = 30) -> dict:
        """One udhcpc run that obtains a lease and exits; its bound event."""
        self.start("-n", "-q", *extra)
        self.proc.wait(timeout)
        return self.wait_bound(1)


class Dhclient(Client):
    name = "dhclient"

    def start(self):
        tmp = self.lab.tmp
        # dhclient runs its script with an environment of its own
        script = write_exec(tmp / f"dhclient{self.i}.sh", DHCLIENT_SCRIPT.replace("DHLOG", str(self.log)))
        conf = tmp / f"dhclient{self.i}.conf"
        conf.write_text(DHCLIENT_CONF)
        self.proc = self.lab.spawn_in(
            self.ns, "dhclient", "-d", "-v", "-cf", str(conf),
            "-lf", str(tmp / f"dhclient{self.i}.leases"), "-pf", str(tmp / f"dhclient{self.i}.pid"),
            "-sf", str(script), "eth0",
            stdout=subprocess.DEVNULL, stderr=open(self.log.with_suffix(".out"), "wb"))
        return self


def dhcp_packets(cap: Capture, mac: str) -> list[dict]:
    """The DHCP messages of a capture about client *mac* (a client also
    sees the others' broadcasts): t, src, dst, type, yiaddr, ciaddr, sid
    (server identifier), requested, chaddr."""
    names = ("t", "src", "dst", "type", "yiaddr", "ciaddr", "sid", "requested", "chaddr")
    rows = cap.fields("frame.time_epoch", "ip.src", "ip.dst", "dhcp.option.dhcp", "dhcp.ip.your",
                      "dhcp.ip.client", "dhcp.option.dhcp_server_id",
                      "dhcp.option.requested_ip_address", "dhcp.hw.mac_addr", filter="dhcp")
    out = []
    for r in rows:
        p = dict(zip(names, r))
        p["t"] = float(p["t"])
        # dhcp.hw.mac_addr is chaddr, then the client-id's hardware address
        p["chaddr"] = p["chaddr"].split(",")[0]
        if p["chaddr"] == mac:
            out.append(p)
    return out


def show(pkts: list[dict]) -> str:
    kinds = {DISCOVER: "DISCOVER", OFFER: "OFFER", REQUEST: "REQUEST", DECLINE: "DECLINE",
             ACK: "ACK", NAK: "NAK", RELEASE: "RELEASE"}
    return "\n".join(f"{p['t']:.3f} {p['src']} -> {p['dst']} {kinds.get(p['type'], p['type'])} "
                     f"yiaddr {p['yiaddr']} ciaddr {p['ciaddr']} sid {p['sid']} "
                     f"req {p['requested']}" for p in pkts)
