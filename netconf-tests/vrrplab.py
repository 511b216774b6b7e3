"""Network-namespace lab for the VRRP black-box tests and the benchmark.

    vrXXXXs: bridge br0 ──p0── vrXXXXr0: eth0 10.77.0.1/24
                       ──p1── vrXXXXr1: eth0 10.77.0.2/24   (…)

Every name starts with ``vr`` and a tag unique to the run, so that parallel
runs never clash; ``Lab.close()`` (also on garbage collection of a failed
test, through the fixture) kills what runs inside and deletes the
namespaces.  Traffic stays inside these namespaces.

``NsDaemon`` is a conftest ``Daemon`` started with ``ip netns exec``; its
NETCONF port is reached by opening the TCP socket from a thread that has
entered the namespace (``setns`` applies to the calling thread only), and
handing it to ncclient.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import socket

from conftest import Daemon

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
SUBNET = "10.77.0"


def sh(*args: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), check=check, capture_output=True, text=True, timeout=timeout)


def in_netns(ns: str, fn):
    """Run fn() in a thread that has entered netns *ns*; return its result."""
    out: dict = {}

    def run():
        fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns {ns}: {os.strerror(err)}")
            out["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller
            out["error"] = e
        finally:
            os.close(fd)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


class NsDaemon(Daemon):
    """A hotleased with its VRRP runtime on, inside namespace *ns*."""

    def __init__(self, ns: str, workdir: Path, creds: dict):
        self.ns = ns
        self.cmd_prefix = ["ip", "netns", "exec", ns]
        super().__init__(workdir, creds, vrrp=True)

    def open_socket(self, timeout: float) -> socket.socket:
        return in_netns(
            self.ns, lambda: socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        )

    def kill(self):
        """SIGKILL, as a crash."""
        self.expect_dead = True
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def term(self, timeout: float = 10) -> int:
        self.close_sessions()
        self.expect_dead = True
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


class Capture:
    """tshark on the lab's bridge, writing a pcap; fields read afterwards.

    *ns*, *iface* and *bpf* capture elsewhere (e.g. DHCP in a client's
    namespace); *prog* ``dumpcap`` captures without loading the dissectors,
    which are only needed to read the file."""

    def __init__(self, lab: "Lab", path: Path, ns: str | None = None, iface: str = "br0",
                 bpf: str = "ip proto 112 or arp", prog: str = "tshark"):
        self.path = path
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns or lab.switch, prog, "-q", "-n", "-i", iface,
             "-f", bpf, "-w", str(path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        # tshark (dumpcap) says "Capturing on 'br0'" once it is ready
        deadline = time.monotonic() + 15
        buf = b""
        while time.monotonic() < deadline and b"Capturing on" not in buf:
            line = self.proc.stderr.readline()
            if not line:
                break
            buf += line
        assert b"Capturing on" in buf, f"tshark did not start: {buf!r}"

    def stop(self):
        if self.proc.poll() is None:
            time.sleep(0.2)  # let the last packets reach the file
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def fields(self, *names: str, filter: str = "vrrp") -> list[list[str]]:
        self.stop()
        out = sh("tshark", "-n", "-r", str(self.path), "-Y", filter, "-T", "fields",
                 "-E", "separator=|", *[a for n in names for a in ("-e", n)])
        return [line.split("|") for line in out.stdout.splitlines() if line]

    def adverts(self) -> list[tuple[float, str, int]]:
        """(time, source, priority) of every VRRP advertisement."""
        return [(float(t), src, int(prio))
                for t, src, prio in self.fields("frame.time_epoch", "ip.src", "vrrp.prio")]


class Lab:
    def __init__(self, routers: int = 2, tmp: Path | None = None):
        self.tag = f"vr{os.getpid() % 100000}{uuid.uuid4().hex[:4]}"
        self.switch = f"{self.tag}s"
        self.routers = [f"{self.tag}r{i}" for i in range(routers)]
        self.tmp = tmp
        self.procs: list[subprocess.Popen] = []
        try:
            sh("ip", "netns", "add", self.switch)
            sh("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge")
            sh("ip", "-n", self.switch, "link", "set", "br0", "up")
            for i, ns in enumerate(self.routers):
                sh("ip", "netns", "add", ns)
                sh("ip", "-n", self.switch, "link", "add", f"p{i}", "type", "veth",
                   "peer", "name", "eth0", "netns", ns)
                sh("ip", "-n", self.switch, "link", "set", f"p{i}", "master", "br0", "up")
                sh("ip", "-n", ns, "link", "set", "lo", "up")
                sh("ip", "-n", ns, "addr", "add", f"{self.addr(i)}/24", "dev", "eth0")
                sh("ip", "-n", ns, "link", "set", "eth0", "up")
        except BaseException:
            self.close()
            raise

    @staticmethod
    def addr(i: int) -> str:
        return f"{SUBNET}.{i + 1}"

    def addresses(self, i: int) -> list[str]:
        out = sh("ip", "-n", self.routers[i], "-4", "-o", "addr", "show", "dev", "eth0")
        return [line.split()[3].split("/")[0] for line in out.stdout.splitlines()]

    def capture(self, path: Path) -> Capture:
        c = Capture(self, path)
        self.procs.append(c.proc)
        return c

    def spawn(self, i: int, *cmd: str, **kw) -> subprocess.Popen:
        p = subprocess.Popen(["ip", "netns", "exec", self.routers[i], *cmd], **kw)
        self.procs.append(p)
        return p

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    pass
        for ns in [*self.routers, self.switch]:
            pids = sh("ip", "netns", "pids", ns, check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            sh("ip", "netns", "del", ns, check=False)


def wait_for(pred, timeout: float, step: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


class Keepalived:
    """keepalived (Debian package) as the other router, in namespace *ns*."""

    def __init__(self, lab: Lab, i: int, workdir: Path, *, version: int, vrid: int,
                 priority: int, interval_s: float, vips: list[str], preempt: bool = True):
        self.lab, self.i = lab, i
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "keepalived.conf"
        self.log = workdir / "keepalived.log"
        self.pidfile = workdir / "keepalived.pid"
        vip_lines = "\n".join(f"    {v}/32" for v in vips)
        self.conf.write_text(f"""global_defs {{
  vrrp_version {version}
  script_user root
  enable_script_security
  max_auto_priority -1
}}
vrrp_instance VI {{
  interface eth0
  state BACKUP
  virtual_router_id {vrid}
  priority {priority}
  advert_int {interval_s}
  {'' if preempt else 'nopreempt'}
  virtual_ipaddress {{
{vip_lines}
  }}
}}
""")
        self.logf = open(self.log, "wb")
        self.proc = lab.spawn(i, "keepalived", "-n", "-l", "-D", "-P", "-f", str(self.conf),
                              "-p", str(self.pidfile), "-r", str(workdir / "vrrp.pid"),
                              stdout=self.logf, stderr=subprocess.STDOUT)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.logf.close()
