"""Black-box tests of the DHCP server: a real hotleased in a network
namespace, configured over NETCONF, serving real clients (busybox udhcpc,
ISC dhclient, dhcpcd) directly and through ISC dhcrelay.

Topology, built per test and always torn down (namespaces named dh<pid><n>*):

    C (client) lan ── lan S (hotleased) uplk ── uplk R (dhcrelay) dnlk ── cli C2 (client)
               10.77.0.1/24      10.78.0.1/24    10.78.0.2/24   10.79.0.1/24

NETCONF reaches the daemon inside S through a socket opened in S (setns in a
helper thread), so nothing is added to the host's namespace.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from lxml import etree
from ncclient import manager

from conftest import DHCPS_NS, HOTLEASED, NS, PASSWORD, RBK_NS, USER, VRRP_NS, Daemon, config

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(
        not all(shutil.which(c) for c in ("ip", "udhcpc", "dhclient", "dhcrelay")),
        reason="udhcpc, dhclient and dhcrelay are needed (netconf-tests/run.sh installs them)",
    ),
]

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000
_seq = itertools.count()


def ns_socket(ns: str, host: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection made from inside namespace *ns*."""
    out: dict = {}

    def run():
        fd = os.open(f"/var/run/netns/{ns}", os.O_RDONLY)
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns {ns}")
            out["sock"] = socket.create_connection((host, port), timeout=timeout)
        except Exception as e:  # handed to the caller
            out["err"] = e
        finally:
            os.close(fd)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if "err" in out:
        raise out["err"]
    return out["sock"]


def sh(*args, check=True, timeout=30, **kw):
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=timeout, **kw)


class NsDaemon(Daemon):
    """hotleased started inside a network namespace (``wrap``: words put
    before its command line, e.g. libfaketime's environment)."""

    def __init__(self, ns: str, *a, wrap=(), **kw):
        self.ns = ns
        self.wrap = list(wrap)
        super().__init__(*a, **kw)

    def start(self, timeout: float = 30.0):
        with open(self.log, "ab") as logf:
            logf.write(f"==== start {time.strftime('%H:%M:%S')} ====\n".encode())
            logf.flush()
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.ns, *self.wrap, HOTLEASED, "--config", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=logf,
                env={**os.environ, "RUST_BACKTRACE": "1"},
            )
        self.expect_dead = False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"hotleased exited with {self.proc.returncode}:\n{self.stderr()}")
            try:
                with ns_socket(self.ns, "127.0.0.1", self.port, 0.5) as s:
                    s.settimeout(5)
                    if s.recv(4).startswith(b"SSH-"):
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"hotleased did not listen:\n{self.stderr()}")

    def connect(self, user=USER, password=PASSWORD, **_kw):
        sock = ns_socket(self.ns, "127.0.0.1", self.port, 10)
        m = manager.connect(
            host="127.0.0.1",
            port=self.port,
            sock=sock,
            username=user,
            password=password,
            hostkey_verify=False,
            allow_agent=False,
            look_for_keys=False,
            timeout=30,
        )
        self.sessions.append(m)
        return m

    def kill9(self):
        self.expect_dead = True
        self.close_sessions()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


class Topo:
    """The four namespaces, their links, and the processes run in them."""

    def __init__(self, tmp: Path):
        n = next(_seq)
        base = f"dh{os.getpid() % 100000}{n}"
        self.S, self.C, self.R, self.C2 = (base + x for x in "scrd")
        self.tmp = tmp
        self.procs: list[subprocess.Popen] = []
        self.made: list[str] = []
        try:
            self._build()
        except Exception:
            self.close()
            raise

    def _build(self):
        for ns in (self.S, self.C, self.R, self.C2):
            sh("ip", "netns", "add", ns)
            self.made.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", self.S, "link", "add", "lan", "type", "veth", "peer", "name", "lan", "netns", self.C)
        sh("ip", "-n", self.S, "link", "add", "uplk", "type", "veth", "peer", "name", "uplk", "netns", self.R)
        sh("ip", "-n", self.R, "link", "add", "dnlk", "type", "veth", "peer", "name", "cli", "netns", self.C2)
        sh("ip", "-n", self.S, "addr", "add", "10.77.0.1/24", "dev", "lan")
        sh("ip", "-n", self.S, "addr", "add", "10.78.0.1/24", "dev", "uplk")
        sh("ip", "-n", self.R, "addr", "add", "10.78.0.2/24", "dev", "uplk")
        sh("ip", "-n", self.R, "addr", "add", "10.79.0.1/24", "dev", "dnlk")
        for ns, dev in ((self.S, "lan"), (self.S, "uplk"), (self.C, "lan"), (self.R, "uplk"), (self.R, "dnlk"), (self.C2, "cli")):
            sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", self.S, "route", "add", "10.79.0.0/24", "via", "10.78.0.2")

    def spawn(self, ns: str, *args, **kw) -> subprocess.Popen:
        p = subprocess.Popen(["ip", "netns", "exec", ns, *args], **kw)
        self.procs.append(p)
        return p

    def run(self, ns: str, *args, timeout=60, check=False):
        return sh("ip", "netns", "exec", ns, *args, timeout=timeout, check=check)

    def relay(self):
        """dhcrelay in R: clients on 'dnlk', the server behind 'uplk'; adds option 82."""
        log = open(self.tmp / "dhcrelay.log", "wb")
        p = self.spawn(self.R, "dhcrelay", "-4", "-d", "-a", "-iu", "uplk", "-id", "dnlk", "10.78.0.1",
                       stdout=log, stderr=subprocess.STDOUT)
        time.sleep(0.5)
        return p

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
        for ns in self.made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.fixture
def topo(tmp_path):
    t = Topo(tmp_path)
    yield t
    t.close()


@pytest.fixture
def dhcpd(topo, creds, tmp_path, request):
    from conftest import _finish

    made = []

    def make():
        d = NsDaemon(topo.S, tmp_path / f"d{len(made)}", creds)
        made.append(d)
        return d.start()

    yield make
    _finish(request, made)


# ---------------------------------------------------------------- config


def pool(name, gw, sections=(), excluded=(), dns=(), domain=None, lease=None, renew=None,
         rebind=None, options=(), static=(), sid=None, network=None, mask="255.255.255.0", attrs=""):
    x = f"<ip-pool{attrs}><name>{name}</name><gateway>{gw}</gateway><mask>{mask}</mask>"
    if network:
        x += f"<network>{network}</network>"
    x += "".join(f"<section><start>{s}</start><end>{e}</end></section>" for s, e in sections)
    x += "".join(f"<excluded><start>{s}</start><end>{e}</end></excluded>" for s, e in excluded)
    x += "".join(f"<dns-server>{d}</dns-server>" for d in dns)
    if domain:
        x += f"<domain-name>{domain}</domain-name>"
    for tag, v in (("lease-time", lease), ("renew-time", renew), ("rebind-time", rebind), ("server-identifier", sid)):
        if v is not None:
            x += f"<{tag}>{v}</{tag}>"
    for code, ips in options:
        x += f"<option><code>{code}</code>" + "".join(f"<ip-address>{i}</ip-address>" for i in ips) + "</option>"
    x += "".join(f"<static-bind><ip-address>{i}</ip-address><mac-address>{m}</mac-address></static-bind>" for i, m in static)
    return x + "</ip-pool>"


def dhcp(*pools, interfaces=("lan", "uplk"), probation=None):
    x = f'<dhcp-server xmlns="{DHCPS_NS}">'
    x += "".join(f"<interface><name>{i}</name></interface>" for i in interfaces)
    if probation is not None:
        x += f"<decline-probation>{probation}</decline-probation>"
    return x + "".join(pools) + "</dhcp-server>"


def commit(m, xml):
    m.edit_config(target="candidate", config=config(xml))
    m.commit()


def state(m) -> dict:
    """{'leases': {ip: {leaf: text}}, 'pools': {name: {stat: int}}, 'stats': {path: int}}."""
    data = m.get(filter=("subtree", f'<dhcp-server xmlns="{DHCPS_NS}"/>')).data_ele
    out = {"leases": {}, "pools": {}, "stats": {}}
    for lease in data.iterfind("dhcps:dhcp-server/dhcps:lease", NS):
        leaves = {etree.QName(c).localname: (c.text or "") for c in lease}
        out["leases"][leaves["ip-address"]] = leaves
    for p in data.iterfind("dhcps:dhcp-server/dhcps:ip-pool", NS):
        st = p.find("dhcps:statistics", NS)
        if st is not None:
            out["pools"][p.findtext("dhcps:name", namespaces=NS)] = {etree.QName(c).localname: int(c.text) for c in st}
    st = data.find("dhcps:dhcp-server/dhcps:statistics", NS)
    if st is not None:
        for c in st:
            name = etree.QName(c).localname
            if len(c):
                for g in c:
                    out["stats"][f"{name}/{etree.QName(g).localname}"] = int(g.text)
            else:
                out["stats"][name] = int(c.text)
    return out


def settled(m, pred, timeout=5.0):
    """The state once *pred* holds on it (replies may leave a moment before
    the state mirror behind <get> is updated)."""
    st = wait_for(lambda: (lambda s: s if pred(s) else None)(state(m)), timeout)
    return st if st is not None else state(m)


def wait_for(pred, timeout=10.0, step=0.1):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(step)


# ---------------------------------------------------------------- clients

UDHCPC_SCRIPT = """#!/bin/sh
case "$1" in
  bound|renew) ip addr flush dev "$interface"; ip addr add "$ip/$subnet" dev "$interface" ;;
  deconfig) ip addr flush dev "$interface" ;;
esac
printf '%s\tip=%s\tsubnet=%s\trouter=%s\tdns=%s\tdomain=%s\tlease=%s\tserverid=%s\tntpsrv=%s\n' "$1" "$ip" "$subnet" "$router" "$dns" "$domain" "$lease" "$serverid" "$ntpsrv" >> "$DHLOG"
"""

DHCLIENT_SCRIPT = """#!/bin/sh
case "$reason" in
  PREINIT) ip link set "$interface" up ;;
  BOUND|RENEW|REBIND|REBOOT) ip addr flush dev "$interface"; ip addr add "$new_ip_address/$new_subnet_mask" dev "$interface" ;;
  EXPIRE|FAIL|RELEASE|STOP) ip addr flush dev "$interface" ;;
esac
echo "$reason ip=$new_ip_address mask=$new_subnet_mask routers=$new_routers dns=$new_domain_name_servers domain=$new_domain_name ntp=$new_ntp_servers" >> LOGFILE
exit 0
"""

DHCLIENT_CONF = """timeout 20;
retry 1;
initial-interval 1;
send dhcp-client-identifier = hardware;
request subnet-mask, broadcast-address, routers, domain-name, domain-name-servers, ntp-servers;
"""


def write_exec(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


def udhcpc(topo, ns, dev, log: Path, *extra, timeout=30):
    """One udhcpc run that obtains a lease and exits (-n -q); returns its stderr."""
    script = write_exec(topo.tmp / "udhcpc.sh", UDHCPC_SCRIPT)
    r = sh("ip", "netns", "exec", ns, "env", f"DHLOG={log}", "udhcpc", "-i", dev, "-f", "-n", "-q",
           "-t", "4", "-T", "1", "-A", "1", "-s", str(script), *extra, check=False, timeout=timeout)
    return r


def events(log: Path) -> list[dict]:
    out = []
    if not log.exists():
        return out
    for line in log.read_text().splitlines():
        ev, *kv = line.split("\t")
        d = {"event": ev}
        for x in kv:
            k, _, v = x.partition("=")
            d[k] = v
        out.append(d)
    return out


def set_mac(topo, ns, dev, mac):
    topo.run(ns, "ip", "link", "set", dev, "address", mac, check=True)


# ---------------------------------------------------------------- tests


def test_udhcpc_binds_with_options_renews_and_releases(topo, dhcpd):
    d = dhcpd()
    m = d.connect()
    commit(m, dhcp(pool("lan", "10.77.0.1", sections=[("10.77.0.10", "10.77.0.20")], dns=["10.77.0.53", "10.77.0.54"],
                        domain="lab.test", lease=60, renew=2, rebind=50, options=[(42, ["10.77.0.123"])])))
    set_mac(topo, topo.C, "lan", "02:00:00:00:01:01")
    log = topo.tmp / "udhcpc.log"
    script = write_exec(topo.tmp / "udhcpc.sh", UDHCPC_SCRIPT)
    # stays in the foreground, releases on SIGTERM (-R); busybox renews at
    # lease/2 whatever T1 says, so SIGUSR1 asks it to renew now
    p = topo.spawn(topo.C, "udhcpc", "-i", "lan", "-f", "-R", "-t", "4", "-T", "1",
                   "-s", str(script), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={**os.environ, "DHLOG": str(log)})
    assert wait_for(lambda: any(e["event"] == "bound" for e in events(log)), 15), events(log)
    p.send_signal(signal.SIGUSR1)
    assert wait_for(lambda: any(e["event"] == "renew" for e in events(log)), 20), events(log)
    bound = [e for e in events(log) if e["event"] == "bound"][0]
    assert bound["ip"] == "10.77.0.10"
    assert bound["subnet"] == "255.255.255.0"
    assert bound["router"] == "10.77.0.1"
    assert bound["dns"] == "10.77.0.53 10.77.0.54"
    assert bound["domain"] == "lab.test"
    assert bound["lease"] == "60"
    assert bound["serverid"] == "10.77.0.1"
    assert bound["ntpsrv"] == "10.77.0.123"
    renew = [e for e in events(log) if e["event"] == "renew"][0]
    assert renew["ip"] == "10.77.0.10"
    st = settled(m, lambda s: s["leases"].get("10.77.0.10", {}).get("state") == "bound" and s["stats"].get("sent/ack", 0) >= 2)
    lease = st["leases"]["10.77.0.10"]
    assert lease["state"] == "bound" and lease["pool"] == "lan" and lease["origin"] == "local"
    assert lease["mac-address"] == "02:00:00:00:01:01"
    assert lease["client-id"] == "01:02:00:00:00:01:01"
    assert lease["valid-lifetime"] == "60"
    assert st["pools"]["lan"]["used"] == 1 and st["pools"]["lan"]["total"] == 11
    assert st["stats"]["received/discover"] >= 1 and st["stats"]["received/request"] >= 2
    assert st["stats"]["sent/offer"] >= 1 and st["stats"]["sent/ack"] >= 2
    p.terminate()
    p.wait(10)
    assert wait_for(lambda: state(m)["leases"]["10.77.0.10"]["state"] == "released", 5)
    assert state(m)["stats"]["received/release"] == 1
    # the returning client gets its address back
    r = udhcpc(topo, topo.C, "lan", topo.tmp / "again.log")
    assert "lease of 10.77.0.10 obtained" in r.stderr, r.stderr


def test_dhclient_binds_renews_and_releases(topo, dhcpd):
    d = dhcpd()
    m = d.connect()
    commit(m, dhcp(pool("lan", "10.77.0.1", sections=[("10.77.0.30", "10.77.0.40")], dns=["10.77.0.53"],
                        domain="lab.test", lease=60, renew=2, rebind=50, options=[(42, ["10.77.0.123"])])))
    set_mac(topo, topo.C, "lan", "02:00:00:00:02:02")
    log = topo.tmp / "dhclient.events"
    script = write_exec(topo.tmp / "dhclient.sh", DHCLIENT_SCRIPT.replace("LOGFILE", str(log)))
    conf = topo.tmp / "dhclient.conf"
    conf.write_text(DHCLIENT_CONF)
    leases, pid = topo.tmp / "dhclient.leases", topo.tmp / "dhclient.pid"
    common = ["-cf", str(conf), "-lf", str(leases), "-pf", str(pid), "-sf", str(script)]
    out = open(topo.tmp / "dhclient.out", "wb")
    p = topo.spawn(topo.C, "dhclient", "-d", "-v", *common, "lan", stdout=out, stderr=subprocess.STDOUT)

    def evs():
        return [line.split(" ", 1) for line in (log.read_text().splitlines() if log.exists() else [])]

    assert wait_for(lambda: any(e[0] == "RENEW" for e in evs()), 25), (topo.tmp / "dhclient.out").read_text()
    bound = [e[1] for e in evs() if e[0] == "BOUND"][0]
    assert "ip=10.77.0.30 " in bound and "mask=255.255.255.0" in bound
    assert "routers=10.77.0.1" in bound and "dns=10.77.0.53" in bound
    assert "domain=lab.test" in bound and "ntp=10.77.0.123" in bound
    text = (topo.tmp / "dhclient.out").read_text()
    # the renewal is unicast to the server identifier
    assert "DHCPREQUEST for 10.77.0.30 on lan to 10.77.0.1 port 67" in text, text
    assert settled(m, lambda s: "10.77.0.30" in s["leases"])["leases"]["10.77.0.30"]["state"] == "bound"
    p.terminate()
    p.wait(10)
    r = topo.run(topo.C, "dhclient", "-r", "-v", *common, "lan", timeout=30)
    assert "DHCPRELEASE of 10.77.0.30" in r.stderr, r.stderr
    assert wait_for(lambda: state(m)["leases"]["10.77.0.30"]["state"] == "released", 5)


DHCPCD_SCRIPT = """#!/bin/sh
case "$reason" in
  BOUND|RENEW|REBIND|REBOOT|RELEASE|STOP|EXPIRE|NAK)
    echo "$reason ip=$new_ip_address mask=$new_subnet_mask routers=$new_routers dns=$new_domain_name_servers domain=$new_domain_name ntp=$new_ntp_servers" >> LOGFILE ;;
esac
exit 0
"""

DHCPCD_CONF = """ipv4only
noipv4ll
duid
iaid 7
nohook resolv.conf, timesyncd, hostname, ntp
hostname dhcpcd-probe
option subnet_mask, routers, domain_name_servers, domain_name, ntp_servers
release
script SCRIPT
"""


@pytest.mark.skipif(not shutil.which("dhcpcd"), reason="dhcpcd is needed (netconf-tests/run.sh installs dhcpcd-base)")
def test_dhcpcd_binds_renews_and_releases(topo, dhcpd):
    """dhcpcd, the third real client: it identifies itself with an RFC 4361
    client identifier (type 255, IAID + DUID) and sends its host name;
    binds, renews at T1 (unicast to the server, answered without ARP
    wait), and releases on exit."""
    d = dhcpd()
    m = d.connect()
    commit(m, dhcp(pool("lan", "10.77.0.1", sections=[("10.77.0.60", "10.77.0.70")], dns=["10.77.0.53"],
                        domain="lab.test", lease=60, renew=3, rebind=50, options=[(42, ["10.77.0.123"])])))
    set_mac(topo, topo.C, "lan", "02:00:00:00:04:04")
    log = topo.tmp / "dhcpcd.events"
    script = write_exec(topo.tmp / "dhcpcd.sh", DHCPCD_SCRIPT.replace("LOGFILE", str(log)))
    conf = topo.tmp / "dhcpcd.conf"
    conf.write_text(DHCPCD_CONF.replace("SCRIPT", str(script)))
    out = open(topo.tmp / "dhcpcd.out", "wb")
    p = topo.spawn(topo.C, "dhcpcd", "-f", str(conf), "-B", "-d", "-4", "-t", "20", "lan",
                   stdout=out, stderr=subprocess.STDOUT)

    def evs():
        return [line.split(" ", 1) for line in (log.read_text().splitlines() if log.exists() else [])]

    assert wait_for(lambda: any(e[0] == "RENEW" for e in evs()), 25), (topo.tmp / "dhcpcd.out").read_text()
    bound = [e[1] for e in evs() if e[0] in ("BOUND", "REBOOT")][0]
    assert "ip=10.77.0.60 " in bound and "mask=255.255.255.0" in bound, bound
    assert "routers=10.77.0.1" in bound and "dns=10.77.0.53" in bound
    assert "domain=lab.test" in bound and "ntp=10.77.0.123" in bound
    renew = [e[1] for e in evs() if e[0] == "RENEW"][0]
    assert "ip=10.77.0.60 " in renew
    st = settled(m, lambda s: s["stats"].get("sent/ack", 0) >= 2)
    lease = st["leases"]["10.77.0.60"]
    assert lease["state"] == "bound" and lease["mac-address"] == "02:00:00:00:04:04"
    assert lease.get("client-id", "").startswith("ff:00:00:00:07:"), lease
    assert lease["hostname"] == "dhcpcd-probe"
    assert st["stats"].get("lenient-requests", 0) == 0
    p.terminate()
    p.wait(15)
    assert wait_for(lambda: state(m)["leases"]["10.77.0.60"]["state"] == "released", 5), \
        (topo.tmp / "dhcpcd.out").read_text()


def test_static_binding_exclusion_and_exhaustion(topo, dhcpd):
    d = dhcpd()
    m = d.connect()
    commit(m, dhcp(pool("lan", "10.77.0.1", sections=[("10.77.0.10", "10.77.0.13")], excluded=[("10.77.0.11", "10.77.0.11")],
                        static=[("10.77.0.50", "02:00:00:00:03:50")], sid="10.77.0.1")))
    set_mac(topo, topo.C, "lan", "02:00:00:00:03:50")
    r = udhcpc(topo, topo.C, "lan", topo.tmp / "s.log")
    assert "lease of 10.77.0.50 obtained from 10.77.0.1" in r.stderr, r.stderr
    # three dynamic addresses: .10, .12, .13 (.11 excluded, .1 is the server)
    set_mac(topo, topo.C, "lan", "02:00:00:00:03:01")
    got = []
    for i in range(3):
        r = udhcpc(topo, topo.C, "lan", topo.tmp / f"c{i}.log", "-x", f"0x3d:ff00000003{i:02x}")
        found = re.search(r"lease of (\S+) obtained", r.stderr)
        assert found, r.stderr
        got.append(found.group(1))
    assert sorted(got) == ["10.77.0.10", "10.77.0.12", "10.77.0.13"]
    st = settled(m, lambda s: s["pools"]["lan"]["used"] == 3)
    assert st["pools"]["lan"] == {"total": 3, "used": 3, "free": 0, "offered": 0, "declined": 0}
    # a fourth client gets no offer at all
    r = udhcpc(topo, topo.C, "lan", topo.tmp / "x.log", "-x", "0x3d:ff0000000399", "-t", "2")
    assert "obtained" not in r.stderr and r.returncode != 0, r.stderr
    st = settled(m, lambda s: "10.77.0.50" in s["leases"])
    assert st["stats"]["exhausted"] >= 1
    assert "pool exhausted" in d.stderr()
    assert st["leases"]["10.77.0.50"]["mac-address"] == "02:00:00:00:03:50"
    assert "10.77.0.11" not in st["leases"] and "10.77.0.1" not in st["leases"]


def test_init_reboot_on_a_wrong_subnet_is_naked(topo, dhcpd):
    d = dhcpd()
    m = d.connect()
    commit(m, dhcp(pool("lan", "10.77.0.1", sections=[("10.77.0.60", "10.77.0.70")])))
    set_mac(topo, topo.C, "lan", "02:00:00:00:04:04")
    log = topo.tmp / "dhclient.events"
    script = write_exec(topo.tmp / "dhclient.sh", DHCLIENT_SCRIPT.replace("LOGFILE", str(log)))
    conf = topo.tmp / "dhclient.conf"
    conf.write_text(DHCLIENT_CONF)
    leases = topo.tmp / "dhclient.leases"
    # a lease remembered from another network: dhclient starts in INIT-REBOOT
    leases.write_text("""lease {
  interface "lan";
  fixed-address 192.168.250.5;
  option subnet-mask 255.255.255.0;
  option dhcp-server-identifier 192.168.250.1;
  option dhcp-lease-time 86400;
  renew 4 2037/01/01 00:00:00;
  rebind 4 2037/01/01 00:00:00;
  expire 4 2037/01/01 00:00:00;
}
""")
    r = topo.run(topo.C, "dhclient", "-1", "-v", "-cf", str(conf), "-lf", str(leases), "-pf", str(topo.tmp / "p.pid"),
                 "-sf", str(script), "lan", timeout=40)
    out = r.stderr + r.stdout
    assert "DHCPREQUEST for 192.168.250.5" in out, out
    assert "DHCPNAK from 10.77.0.1" in out, out
    # then it starts over and binds in the right subnet
    assert "bound to 10.77.0.60" in out, out
    assert settled(m, lambda s: s["stats"]["sent/nak"] >= 1)["stats"]["sent/nak"] >= 1
    topo.run(topo.C, "dhclient", "-x", "-pf", str(topo.tmp / "p.pid"))


def test_an_address_held_for_another_client_is_naked_even_when_not_authoritative(topo, dhcpd):
    """Issue 10: the loser of a hot-backup merge must be NAKed at its next
    request, whatever `authoritative` says. Here the other client's lease
    is granted by this router: a dhclient remembering that address (INIT-
    REBOOT) gets a DHCPNAK at once and binds another one."""
    d = dhcpd()
    m = d.connect()
    xml = dhcp(pool("lan", "10.77.0.1", sections=[("10.77.0.60", "10.77.0.70")]))
    xml = xml.replace("<interface>", "<authoritative>false</authoritative><interface>", 1)
    commit(m, xml)
    set_mac(topo, topo.C, "lan", "02:00:00:00:04:05")
    r = udhcpc(topo, topo.C, "lan", topo.tmp / "first.log")
    assert "lease of 10.77.0.60 obtained" in r.stderr, r.stderr
    # another client (another MAC, client id from it) remembers .60
    set_mac(topo, topo.C, "lan", "02:00:00:00:04:06")
    log = topo.tmp / "dhclient.events"
    script = write_exec(topo.tmp / "dhclient.sh", DHCLIENT_SCRIPT.replace("LOGFILE", str(log)))
    conf = topo.tmp / "dhclient.conf"
    conf.write_text(DHCLIENT_CONF)
    leases = topo.tmp / "dhclient.leases"
    leases.write_text("""lease {
  interface "lan";
  fixed-address 10.77.0.60;
  option subnet-mask 255.255.255.0;
  option dhcp-server-identifier 10.77.0.1;
  option dhcp-lease-time 86400;
  renew 4 2037/01/01 00:00:00;
  rebind 4 2037/01/01 00:00:00;
  expire 4 2037/01/01 00:00:00;
}
""")
    r = topo.run(topo.C, "dhclient", "-1", "-v", "-cf", str(conf), "-lf", str(leases), "-pf", str(topo.tmp / "p.pid"),
                 "-sf", str(script), "lan", timeout=40)
    out = r.stderr + r.stdout
    assert "DHCPREQUEST for 10.77.0.60" in out, out
    assert "DHCPNAK from 10.77.0.1" in out, out
    assert "bound to 10.77.0.61" in out, out
    st = settled(m, lambda s: s["stats"]["sent/nak"] >= 1 and "10.77.0.61" in s["leases"])
    assert st["leases"]["10.77.0.60"]["mac-address"] == "02:00:00:00:04:05"
    assert st["leases"]["10.77.0.60"]["state"] == "bound"
    topo.run(topo.C, "dhclient", "-x", "-pf", str(topo.tmp / "p.pid"))


def test_relayed_client_gets_an_address_of_its_subnet(topo, dhcpd):
    d = dhcpd()
    m = d.connect()
    commit(m, dhcp(pool("lan", "10.77.0.1", sections=[("10.77.0.10", "10.77.0.20")]),
                   pool("far", "10.79.0.1", sections=[("10.79.0.100", "10.79.0.110")], dns=["10.79.0.53"])))
    topo.relay()
    set_mac(topo, topo.C2, "cli", "02:00:00:00:05:05")
    log = topo.tmp / "relayed.log"
    r = udhcpc(topo, topo.C2, "cli", log)
    assert "lease of 10.79.0.100 obtained from 10.78.0.1" in r.stderr, r.stderr
    bound = [e for e in events(log) if e["event"] == "bound"][0]
    assert bound["router"] == "10.79.0.1" and bound["dns"] == "10.79.0.53"
    st = settled(m, lambda s: s["leases"].get("10.79.0.100", {}).get("state") == "bound")
    assert st["leases"]["10.79.0.100"]["pool"] == "far"
    assert st["pools"]["far"]["used"] == 1 and st["pools"]["lan"]["used"] == 0


def test_restart_after_kill_keeps_acked_leases(topo, dhcpd):
    d = dhcpd()
    m = d.connect()
    commit(m, dhcp(pool("lan", "10.77.0.1", sections=[("10.77.0.10", "10.77.0.20")])))
    m.copy_config(source="running", target="startup")
    set_mac(topo, topo.C, "lan", "02:00:00:00:06:06")
    r = udhcpc(topo, topo.C, "lan", topo.tmp / "a.log", "-x", "0x3d:ff00000006aa")
    assert "lease of 10.77.0.10 obtained" in r.stderr, r.stderr
    r = udhcpc(topo, topo.C, "lan", topo.tmp / "b.log", "-x", "0x3d:ff00000006bb")
    assert "lease of 10.77.0.11 obtained" in r.stderr, r.stderr
    # SIGKILL right after the ACKs: they were durable before they left
    d.kill9()
    d.start()
    m = d.connect()
    st = settled(m, lambda s: len(s["leases"]) == 2)
    assert st["leases"]["10.77.0.10"]["state"] == "bound"
    assert st["leases"]["10.77.0.11"]["state"] == "bound"
    r = udhcpc(topo, topo.C, "lan", topo.tmp / "c.log", "-x", "0x3d:ff00000006bb")
    assert "lease of 10.77.0.11 obtained" in r.stderr, r.stderr


def test_hostname_xml_cannot_carry_hides_nothing(topo, dhcpd):
    """Issue 9 item 2: a client's host name holding U+FFFF (UTF-8 EF BF BF,
    valid UTF-8 but no XML 1.0 character) made libyang refuse the DHCP
    state document, and <get> lost every lease, pool statistic and counter
    (also after a restart: the lease is stored). The character is shown as
    '?', and everything else stays."""
    d = dhcpd()
    m = d.connect()
    commit(m, dhcp(pool("lan", "10.77.0.1", sections=[("10.77.0.10", "10.77.0.20")])))
    m.copy_config(source="running", target="startup")
    set_mac(topo, topo.C, "lan", "02:00:00:00:09:09")
    r = udhcpc(topo, topo.C, "lan", topo.tmp / "a.log", "-x", "hostname:plain")
    assert "lease of 10.77.0.10 obtained" in r.stderr, r.stderr
    r = udhcpc(topo, topo.C, "lan", topo.tmp / "b.log", "-x", "0x3d:ff00000009bb", "-x", "hostname:box\uffffname")
    assert "lease of 10.77.0.11 obtained" in r.stderr, r.stderr

    def check(st):
        assert set(st["leases"]) == {"10.77.0.10", "10.77.0.11"}, st
        assert st["leases"]["10.77.0.10"]["hostname"] == "plain"
        assert st["leases"]["10.77.0.11"]["hostname"] == "box?name"
        assert all(x["state"] == "bound" for x in st["leases"].values())
        assert st["pools"]["lan"] == {"total": 11, "used": 2, "free": 9, "offered": 0, "declined": 0}
        assert "packets-received" in st["stats"]

    st = settled(m, lambda s: len(s["leases"]) == 2)
    check(st)
    assert st["stats"]["sent/ack"] == 2
    d.restart()
    m = d.connect()
    check(settled(m, lambda s: len(s["leases"]) == 2))


def test_dead_lease_writer_stops_the_daemon(topo, dhcpd, monkeypatch):
    """Issue 9 item 11: when the lease writer thread was gone, every ACK was
    silently dropped while the daemon stayed up. Now the DHCP server stops
    and the daemon exits non-zero (systemd restarts it: test_faults.py)."""
    from test_faults import armed, restarted_by_systemd, wait_exit

    monkeypatch.setenv("HOTLEASED_FAULT", "lease-writer-exit")
    d = dhcpd()
    armed(d, "lease-writer-exit")
    m = d.connect()
    commit(m, dhcp(pool("lan", "10.77.0.1", sections=[("10.77.0.10", "10.77.0.20")])))
    set_mac(topo, topo.C, "lan", "02:00:00:00:0b:0b")
    # the REQUEST's lease change is the writer's first batch: it ends there
    r = udhcpc(topo, topo.C, "lan", topo.tmp / "a.log", "-t", "2")
    assert "obtained" not in r.stderr, r.stderr
    rc = wait_exit(d, seen="the client got no ACK")
    assert rc == 1, rc
    assert "lease writer thread ended" in d.stderr()
    assert "the dhcp actor ended unexpectedly" in d.stderr()
    assert restarted_by_systemd(rc)


def test_pool_edits_keep_unrelated_leases(topo, dhcpd):
    d = dhcpd()
    m = d.connect()
    commit(m, dhcp(pool("lan", "10.77.0.1", sections=[("10.77.0.10", "10.77.0.20")]),
                   pool("far", "10.79.0.1", sections=[("10.79.0.100", "10.79.0.110")])))
    topo.relay()
    set_mac(topo, topo.C, "lan", "02:00:00:00:07:07")
    assert "lease of 10.77.0.10" in udhcpc(topo, topo.C, "lan", topo.tmp / "a.log").stderr
    assert "lease of 10.77.0.11" in udhcpc(topo, topo.C, "lan", topo.tmp / "b.log", "-x", "0x3d:ff0000000711").stderr
    assert "lease of 10.79.0.100" in udhcpc(topo, topo.C2, "cli", topo.tmp / "c.log").stderr
    three = {"10.77.0.10", "10.77.0.11", "10.79.0.100"}
    bound3 = lambda s: set(s["leases"]) == three and all(x["state"] == "bound" for x in s["leases"].values())  # noqa: E731
    assert set(settled(m, bound3)["leases"]) == three
    # edit one pool's options: every lease stays
    commit(m, dhcp(pool("lan", "10.77.0.1", sections=[("10.77.0.10", "10.77.0.20")], dns=["10.77.0.53"], lease=7200,
                        attrs=' nc:operation="replace"')))
    assert set(settled(m, lambda s: False, 1.0)["leases"]) == three
    # shrink the section: the lease still inside stays, the one outside goes
    commit(m, dhcp(pool("lan", "10.77.0.1", sections=[("10.77.0.11", "10.77.0.20")], attrs=' nc:operation="replace"')))
    two = {"10.77.0.11", "10.79.0.100"}
    assert set(settled(m, lambda s: set(s["leases"]) == two)["leases"]) == two
    # delete the other pool: its leases go, the first pool's stay
    m.edit_config(target="candidate", config=config(
        f'<dhcp-server xmlns="{DHCPS_NS}"><ip-pool nc:operation="delete"><name>far</name></ip-pool></dhcp-server>'))
    m.commit()
    st = settled(m, lambda s: set(s["leases"]) == {"10.77.0.11"})
    assert set(st["leases"]) == {"10.77.0.11"}
    assert st["leases"]["10.77.0.11"]["state"] == "bound"
    # and it is gone from the store too
    m.copy_config(source="running", target="startup")
    d.restart()
    m = d.connect()
    assert set(settled(m, lambda s: set(s["leases"]) == {"10.77.0.11"})["leases"]) == {"10.77.0.11"}


def test_requests_on_other_interfaces_are_ignored_and_counted(topo, dhcpd):
    d = dhcpd()
    m = d.connect()
    # enabled on the relay side only: the directly connected client is ignored
    commit(m, dhcp(pool("lan", "10.77.0.1", sections=[("10.77.0.10", "10.77.0.20")]), interfaces=("uplk",)))
    set_mac(topo, topo.C, "lan", "02:00:00:00:08:08")
    r = udhcpc(topo, topo.C, "lan", topo.tmp / "a.log", "-t", "2")
    assert "obtained" not in r.stderr, r.stderr
    st = settled(m, lambda s: s["stats"].get("dropped-interface", 0) >= 1)
    assert st["stats"]["dropped-interface"] >= 1 and st["stats"]["sent/offer"] == 0
    # request-packet-all-interface serves every interface
    m.edit_config(target="candidate", config=config(
        f'<dhcp-server xmlns="{DHCPS_NS}"><request-packet-all-interface>true</request-packet-all-interface></dhcp-server>'))
    m.commit()
    r = udhcpc(topo, topo.C, "lan", topo.tmp / "b.log")
    assert "lease of 10.77.0.10 obtained" in r.stderr, r.stderr


# ------------------------------------------------- what the log says (issue 14)

VIP = "10.77.0.254"


def drop_lines(d) -> list[str]:
    return [line for line in d.log.read_text(errors="replace").splitlines() if "dhcp request dropped" in line]


def test_requests_a_pool_does_not_serve_are_logged_with_pool_and_reason(topo, dhcpd):
    """A pool bound to a remote-backup-profile whose VRRP group is backup
    drops every DISCOVER (its partner serves): one log line names the pool,
    the reason and the profile, and says nothing more for the next ones
    (rate-limited), while the counter counts them all."""
    d = dhcpd()
    m = d.connect()
    # the test daemons run no VRRP (conftest's bootstrap): the group never
    # becomes master, so neither does the profile (and with VRRP on, the
    # longest advertisement interval keeps it backup for two minutes)
    group = (
        f'<vrrp xmlns="{VRRP_NS}"><group><interface>lan</interface><vrid>51</vrid>'
        f"<virtual-ip>{VIP}</virtual-ip><priority>100</priority>"
        "<advertise-interval>40950</advertise-interval></group></vrrp>"
    )
    service = (
        f'<remote-backup-service xmlns="{RBK_NS}"><name>rbs1</name>'
        "<peer><address>10.77.0.2</address><source>10.77.0.1</source><port>7070</port></peer>"
        "</remote-backup-service>"
    )
    profile = (
        f'<remote-backup-profile xmlns="{RBK_NS}"><name>rbp1</name><peer-backup>hot</peer-backup>'
        "<vrrp><vrid>51</vrid><interface>lan</interface></vrrp>"
        "<backup-id>1</backup-id><remote-backup-service>rbs1</remote-backup-service>"
        "<service-type>dhcp-server</service-type></remote-backup-profile>"
    )
    bound = pool("hb", "10.77.0.1", sections=[("10.77.0.10", "10.77.0.20")], sid=VIP).replace(
        "</ip-pool>", "<remote-backup-profile>rbp1</remote-backup-profile></ip-pool>")
    commit(m, group + service + profile + dhcp(bound))
    set_mac(topo, topo.C, "lan", "02:00:00:00:0e:01")
    r = udhcpc(topo, topo.C, "lan", topo.tmp / "a.log", "-t", "3")
    assert "obtained" not in r.stderr, r.stderr
    st = settled(m, lambda s: s["stats"].get("dropped-not-serving", 0) >= 3)
    assert st["stats"]["dropped-not-serving"] >= 3, st["stats"]
    lines = wait_for(lambda: drop_lines(d), 5)
    assert len(lines) == 1, f"one line for the pool and reason, not one per request: {lines}"
    line = lines[0]
    assert re.search(r'pool="?hb"?', line), line
    assert "reason=not-serving" in line, line
    assert "remote-backup-profile rbp1 is not master" in line, line
    assert "client=02:00:00:00:0e:01" in line, line
    assert " INFO " in line, line


def test_requests_without_a_pool_are_logged_with_interface_and_reason(topo, dhcpd):
    """A request on an enabled interface whose subnet no pool covers."""
    d = dhcpd()
    m = d.connect()
    commit(m, dhcp(pool("relayed", "10.79.0.1", sections=[("10.79.0.100", "10.79.0.110")])))
    r = udhcpc(topo, topo.C, "lan", topo.tmp / "a.log", "-t", "2")
    assert "obtained" not in r.stderr, r.stderr
    settled(m, lambda s: s["stats"].get("dropped-no-pool", 0) >= 2)
    lines = wait_for(lambda: drop_lines(d), 5)
    assert len(lines) == 1, lines
    assert re.search(r'interface="?lan"?', lines[0]) and "reason=no-pool" in lines[0], lines
    assert "no pool's subnet holds an address of lan" in lines[0], lines


def test_grants_and_releases_have_debug_lines(topo, dhcpd, monkeypatch):
    monkeypatch.setenv("HOTLEASE_LOG", "info,hotlease::dhcp::activity=debug")
    d = dhcpd()
    m = d.connect()
    commit(m, dhcp(pool("lan", "10.77.0.1", sections=[("10.77.0.10", "10.77.0.20")])))
    set_mac(topo, topo.C, "lan", "02:00:00:00:0e:02")
    log = topo.tmp / "udhcpc.log"
    script = write_exec(topo.tmp / "udhcpc.sh", UDHCPC_SCRIPT)
    # in the foreground; releases its lease on SIGTERM (-R)
    p = topo.spawn(topo.C, "udhcpc", "-i", "lan", "-f", "-R", "-t", "4", "-T", "1",
                   "-s", str(script), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={**os.environ, "DHLOG": str(log)})
    assert wait_for(lambda: any(e["event"] == "bound" for e in events(log)), 15), events(log)
    p.terminate()
    p.wait(10)
    assert wait_for(lambda: state(m)["leases"]["10.77.0.10"]["state"] == "released", 5)

    def lines(what):
        return [line for line in d.log.read_text(errors="replace").splitlines() if what in line]

    granted = wait_for(lambda: lines("lease granted"), 5)
    released = wait_for(lambda: lines("lease released"), 5)
    for line in granted + released:
        assert " DEBUG " in line and "10.77.0.10" in line and "client=02:00:00:00:0e:02" in line, line
        assert re.search(r'pool="?lan"?', line), line
    assert len(granted) == 1 and len(released) == 1, (granted, released)
