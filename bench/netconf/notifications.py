#!/usr/bin/env python3
"""Notification latency: a VRRP transition on the wire to the state-change
notification at a subscribed NETCONF client, with 1 and with N subscribed
sessions.

    sudo bench/netconf/notifications.py [--hotleased target/release/hotleased]
                                        [--subscribers 1000] [--transitions 200]

Two network namespaces joined by a veth pair (removed on exit, also on
failure): hotleased in one (VRRP group eth0/51, priority 100, 100 ms
adverts), a scripted peer in the other. Each measured transition: the peer
sends one VRRPv3 advertisement with priority 255 from a raw socket; the
master hotleased turns backup at once (reason
higher-priority-advertisement); the time runs from just before sendto() to
the moment the probe client has read the whole <notification> (one Python
process, one monotonic clock). The peer then falls silent and hotleased
takes the group back after Master_Down_Interval (not measured).

The bus starts each fan-out at a different session, so the probe's place
in it moves from one notification to the next: p50 is about the middle of
the fan-out, p99 and max its end. With many subscribers each measured
transition starts --settle-ms after the previous notification was read,
so that it does not wait behind the rest of that fan-out; the probe runs
SCHED_FIFO 1 while it measures (--probe-priority, see probe_priority). The other sessions live in a second
process, which is stopped (SIGSTOP) while the probe measures: their SSH
windows (2 MB) and socket receive buffers (RCVBUF) hold every notification
of a run, the daemon's SSH keepalive is off (a stopped client cannot
answer it), and 999 paramiko threads decrypting each one in Python would
otherwise take the two CPUs from the daemon (--holders-run leaves them
running). Needs python3 with paramiko and lxml (bench/.venv or the test venv).

The anchor, measured in the same run right after the many-subscriber row
(--no-floor skips it): fanout_floor.c, built here with cc, makes in the
daemon's namespace the same number of loopback TCP connections, never
read, and per round one send() of the state-change's SSH packet to each
from as many threads as the daemon has workers. That is the kernel's cost
of the fan-out with nothing of ours around it. The script prints its
p50/p99 at a random place and at the end of the round, and hotleased /
floor.
"""

from __future__ import annotations

import argparse
import ctypes
import ipaddress
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paramiko

ROOT = Path(__file__).resolve().parents[2]
BASE_NS = "urn:ietf:params:xml:ns:netconf:base:1.0"
NOTIF_NS = "urn:ietf:params:xml:ns:netconf:notification:1.0"
VRRP_NS = "urn:hotlease:yang:vrrp"
EOM = b"]]>]]>"
PASSWORD = "bench-password-1"
VIP = "10.88.0.100"
VRID = 51
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), check=check, capture_output=True, text=True, timeout=30)


def in_netns(ns: str, fn):
    """fn() in a thread that entered netns *ns* (sockets keep their netns)."""
    out: dict = {}

    def run():
        fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns")
            out["v"] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised below
            out["e"] = e
        finally:
            os.close(fd)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if "e" in out:
        raise out["e"]
    return out["v"]


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def advert(src: str, prio: int) -> bytes:
    """A VRRPv3 advertisement (IPv4 header included), 100 ms interval."""
    s = ipaddress.IPv4Address(src).packed
    d = ipaddress.IPv4Address("224.0.0.18").packed
    body = bytes([0x31, VRID, prio, 1]) + (10).to_bytes(2, "big") + b"\0\0"
    body += ipaddress.IPv4Address(VIP).packed
    ph = s + d + bytes([0, 112]) + len(body).to_bytes(2, "big")
    c = csum(ph + body)
    body = body[:6] + c.to_bytes(2, "big") + body[8:]
    hdr = bytes([0x45, 0xC0]) + (20 + len(body)).to_bytes(2, "big") + b"\0\0\0\0"
    return hdr + bytes([255, 112]) + b"\0\0" + s + d + body


class Session:
    """A NETCONF session over paramiko, base:1.0 (end-of-message framing)."""

    def __init__(self, sock: socket.socket):
        self.t = paramiko.Transport(sock)
        self.t.connect(username="admin", password=PASSWORD)
        self.ch = self.t.open_session()
        self.ch.invoke_subsystem("netconf")
        self.buf = b""
        self.last = 0
        self.read()  # server hello
        self.ch.sendall(
            f'<hello xmlns="{BASE_NS}"><capabilities><capability>'
            f"urn:ietf:params:netconf:base:1.0</capability></capabilities></hello>".encode()
            + EOM
        )

    def read(self) -> bytes:
        while EOM not in self.buf:
            d = self.ch.recv(1 << 16)
            if not d:
                raise EOFError("session closed")
            self.buf += d
        msg, self.buf = self.buf.split(EOM, 1)
        self.last = len(msg)
        return msg

    def rpc(self, body: str) -> bytes:
        self.ch.sendall(f'<rpc message-id="1" xmlns="{BASE_NS}">{body}</rpc>'.encode() + EOM)
        while True:
            m = self.read()
            if b"<rpc-reply" in m:
                if b"<ok/>" not in m:
                    raise RuntimeError(m.decode())
                return m

    def subscribe(self):
        self.rpc(
            f'<create-subscription xmlns="{NOTIF_NS}"><filter type="subtree">'
            f'<state-change xmlns="{VRRP_NS}"/></filter></create-subscription>'
        )

    def close(self):
        self.t.close()


def wait_state(probe: Session, state: str, timeout: float) -> float:
    """Read notifications until a state-change to *state*; its read time."""
    probe.ch.settimeout(timeout)
    while True:
        m = probe.read()
        if f"<new-state>{state}</new-state>".encode() in m:
            return time.perf_counter()


def pct(v: list[float], p: float) -> float:
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def probe_priority(rt: bool) -> None:
    """Every thread of this process (the probe's and its paramiko
    transport's) SCHED_FIFO 1, or back to the normal scheduler. The probe
    stands for a client on another machine: on this 2-core machine it
    shares the CPUs with the daemon, and at normal priority its wake-up
    waits while the daemon's workers fan the notification out to the
    other sessions (their slice, up to a few ms), so every probe read
    looks like the end of the fan-out. At FIFO 1 (above every thread of
    the normal scheduler, below the daemon's real-time VRRP and DHCP
    threads) it reads the notification when it arrives."""
    policy, prio = (os.SCHED_FIFO, 1) if rt else (os.SCHED_OTHER, 0)
    for t in Path("/proc/self/task").iterdir():
        try:
            os.sched_setscheduler(int(t.name), policy, os.sched_param(prio))
        except (ProcessLookupError, PermissionError):
            pass


def measure(probe: Session, peer_sock: socket.socket, n: int, rt: bool, settle: float) -> list[float]:
    probe_priority(rt)
    try:
        return measure_at(probe, peer_sock, n, settle)
    finally:
        probe_priority(False)


def measure_at(probe: Session, peer_sock: socket.socket, n: int, settle: float) -> list[float]:
    lat = []
    pkt = advert("10.88.0.2", 255)
    for _ in range(n):
        # the fan-out of the previous notification (master) to the other
        # sessions is over before the next transition starts: the probe
        # reads it at its place in the fan-out, and without this pause the
        # next state-change waited behind the rest of that fan-out
        time.sleep(settle)
        t0 = time.perf_counter()
        peer_sock.sendto(pkt, ("224.0.0.18", 0))
        t1 = wait_state(probe, "backup", 5)
        lat.append((t1 - t0) * 1000)
        wait_state(probe, "master", 5)
    return lat


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process *pid* so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """Per thread of *pid*: its name and its user + system CPU seconds."""
    out = {}
    for t in Path(f"/proc/{pid}/task").iterdir():
        try:
            text = (t / "stat").read_text()
        except OSError:
            continue
        name = text.split("(", 1)[1].rsplit(")", 1)[0]
        fields = text.rsplit(")", 1)[1].split()
        out[int(t.name)] = (name, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
    return out


def thread_cpu_diff(before: dict, after: dict) -> str:
    """The threads that used CPU between two `thread_cpu` readings, most first."""
    rows = [(after[t][1] - before.get(t, ("", 0.0))[1], after[t][0], t) for t in after]
    rows = [r for r in sorted(rows, reverse=True) if r[0] > 0]
    return ", ".join(f"{name}[{tid}] {secs:.2f} s" for secs, name, tid in rows)


def ssh_packet_size(message: int) -> int:
    """Bytes on the wire of one NETCONF message of *message* bytes (its
    end-of-message mark added) in one SSH channel-data packet with a
    16-byte block cipher and a 32-byte MAC (what the paramiko clients
    negotiate: aes128-ctr, hmac-sha2-256)."""
    payload = 9 + message + len(EOM)
    pad = 4
    while (5 + payload + pad) % 16:
        pad += 1
    return 4 + 1 + payload + pad + 32


def floor(ns: str, tmp: Path, n: int, rounds: int, size: int, pause_ms: float, threads: int) -> list[tuple[float, float]] | None:
    """The anchor: bench/netconf/fanout_floor.c, built here, run in the
    daemon's namespace; per round (time to the send at a random place,
    time to the end of the round) in ms. None without a C compiler."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    exe = tmp / "fanout_floor"
    subprocess.run([cc, "-O2", "-pthread", "-o", str(exe), str(Path(__file__).with_name("fanout_floor.c"))],
                   check=True, capture_output=True)

    def fds():
        import resource
        resource.setrlimit(resource.RLIMIT_NOFILE, (2 * n + 64, 2 * n + 64))

    out = subprocess.run(["ip", "netns", "exec", ns, str(exe), str(n), str(rounds), str(size),
                          str(int(pause_ms)), str(threads)],
                         check=True, capture_output=True, text=True, preexec_fn=fds,
                         timeout=60 + rounds * (pause_ms / 1000 + 1))
    return [(float(a), float(b)) for a, b in (line.split() for line in out.stdout.splitlines())]


# The receive buffer of a held session's socket (SO_RCVBUFFORCE, root):
# room for every notification of a run (about 2 KiB of kernel memory
# each on loopback) while the holders are stopped, so that the daemon
# writes to 1,000 open TCP windows all along. With the default 128 KiB,
# the windows closed after some tens of transitions: the daemon's sends
# to those sessions would block (and then their subscriptions end), and
# the later transitions went to fewer and fewer live sessions (fanout_floor.c
# uses the same size).
RCVBUF = 4 << 20


def held_socket() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, 33, RCVBUF)  # SO_RCVBUFFORCE
    s.settimeout(60)
    s.connect(("127.0.0.1", 8830))
    return s


def hold(ns: str, n: int) -> int:
    """Open *n* subscribed sessions, say ready, keep them until stdin
    closes."""
    from concurrent.futures import ThreadPoolExecutor

    def subscriber(_):
        s = Session(in_netns(ns, held_socket))
        s.subscribe()
        return s

    with ThreadPoolExecutor(16) as pool:
        held = list(pool.map(subscriber, range(n)))
    print("ready", flush=True)
    sys.stdin.read()
    for s in held:
        s.close()
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hotleased", default=str(ROOT / "target" / "release" / "hotleased"))
    ap.add_argument("--subscribers", type=int, default=1000)
    ap.add_argument("--transitions", type=int, default=200)
    ap.add_argument("--probe-priority", choices=["rt", "normal"], default="rt",
                    help="the probe's scheduling while it measures (rt: SCHED_FIFO 1, see probe_priority)")
    ap.add_argument("--tcp-cc", help="TCP congestion control in the daemon's namespace (default: the "
                    "machine's; Debian 12's is cubic; this benchmark VM's kernel has bbr, and its namespaces may choose only bbr or reno)")
    ap.add_argument("--settle-ms", type=float, default=100,
                    help="pause before each measured transition (the previous fan-out ends first; 0: none, as before)")
    ap.add_argument("--holders-run", action="store_true",
                    help="leave the other subscribers' process running while measuring")
    ap.add_argument("--netconf", action="append", default=[], metavar="LINE",
                    help="a line added to the bootstrap file's [netconf] table (e.g. 'keepalive-interval = 0')")
    ap.add_argument("--samples", metavar="FILE",
                    help="write every measured time (ms) of each row and of the floor to FILE, as JSON")
    ap.add_argument("--no-floor", action="store_true",
                    help="skip the anchor (fanout_floor.c: the same TCP sends with nothing of ours around them)")
    ap.add_argument("--hold", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--netns", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.hold is not None:
        return hold(args.netns, args.hold)
    if os.geteuid() != 0:
        print("run as root (network namespaces)", file=sys.stderr)
        return 2
    tag = f"nb{os.getpid() % 100000}"
    r, p = f"{tag}r", f"{tag}p"
    tmp = Path(tempfile.mkdtemp(prefix="hl-notif-bench-"))
    proc = None
    holder = None
    sessions: list[Session] = []
    try:
        sh("ip", "netns", "add", r)
        sh("ip", "netns", "add", p)
        if args.tcp_cc:
            # the daemon's and the clients' TCP (loopback in netns r)
            sh("ip", "netns", "exec", r, "sysctl", "-qw", f"net.ipv4.tcp_congestion_control={args.tcp_cc}")
        sh("ip", "-n", r, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", p)
        for ns, addr in ((r, "10.88.0.1"), (p, "10.88.0.2")):
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
        hashed = subprocess.run([args.hotleased, "hash-password"], input=PASSWORD.encode(),
                                capture_output=True, check=True).stdout.decode().strip()
        n = args.subscribers + 10
        (tmp / "storage").mkdir()
        (tmp / "hotleased.toml").write_text(
            f'[netconf]\nlisten = "127.0.0.1:8830"\nhost-key = "{tmp}/key"\nrecovery-user = "admin"\n'
            f"max-connections = {n}\nmax-per-source = {n}\nmax-unauthenticated = {n}\n"
            f"max-sessions = {n}\nmax-sessions-per-user = {n}\n"
            # The held sessions are stopped while the probe measures and
            # cannot answer SSH keepalives: with the default (15 s, 3) the
            # daemon closed them ~45 s into the row, so that the later
            # transitions went to ever fewer sessions. Keepalives are
            # idle-peer detection, not part of a delivery's cost.
            + ("" if any(x.replace(" ", "").startswith("keepalive-interval=") for x in args.netconf)
               else "keepalive-interval = 0\n")
            + "".join(f"{line}\n" for line in args.netconf)
            + f'[[netconf.user]]\nname = "admin"\npassword-hash = "{hashed}"\n'
            f'[storage]\ndir = "{tmp}/storage"\n[vrrp]\nenabled = true\n'
        )
        log = open(tmp / "hotleased.stderr", "wb")
        proc = subprocess.Popen(
            ["ip", "netns", "exec", r, args.hotleased, "--config", str(tmp / "hotleased.toml")],
            stderr=log, stdout=subprocess.DEVNULL,
        )
        connect = lambda: in_netns(r, lambda: socket.create_connection(("127.0.0.1", 8830), timeout=30))  # noqa: E731
        deadline = time.monotonic() + 30
        while True:
            try:
                ctl = Session(connect())
                break
            except (OSError, paramiko.SSHException, EOFError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        sessions.append(ctl)

        def raw():
            s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
            s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
            return s

        peer_sock = in_netns(p, raw)
        probe = Session(connect())
        sessions.append(probe)
        probe.subscribe()
        ctl.rpc(
            f'<edit-config><target><candidate/></target><config><vrrp xmlns="{VRRP_NS}">'
            f"<group><interface>eth0</interface><vrid>{VRID}</vrid><virtual-ip>{VIP}</virtual-ip>"
            f"<priority>100</priority><advertise-interval>100</advertise-interval></group>"
            f"</vrrp></config></edit-config>"
        )
        ctl.rpc("<commit/>")
        wait_state(probe, "master", 10)
        results = {}
        # the daemon's CPU per notification delivered (two state-changes
        # per transition, to every subscriber): the fan-out's cost, far
        # less sensitive to the other load on the machine than the times
        cpu = {}
        c0 = cpu_seconds(proc.pid)
        one = measure(probe, peer_sock, args.transitions, args.probe_priority == "rt", 0)  # no fan-out to wait for
        cpu[1] = cpu_seconds(proc.pid) - c0
        results[1] = one
        # the others subscribe before the probe, which must be last
        probe.close()
        sessions.remove(probe)
        # in a process of their own: their transport threads must not
        # compete with the probe's for this interpreter
        t0 = time.monotonic()
        holder = subprocess.Popen(
            [sys.executable, __file__, "--hold", str(args.subscribers - 1), "--netns", r],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )
        ready = holder.stdout.readline()
        if ready.strip() != b"ready":
            raise RuntimeError(f"subscribers not ready: {ready!r}")
        opened = time.monotonic() - t0
        # stopped while measuring: 999 paramiko transport threads decrypting
        # every notification in Python would take the CPUs from the daemon
        # (the daemon's writes go to their SSH windows, 2 MB each)
        if not args.holders_run:
            holder.send_signal(signal.SIGSTOP)
        probe = Session(connect())
        sessions.append(probe)
        probe.subscribe()
        c0 = cpu_seconds(proc.pid)
        threads0 = thread_cpu(proc.pid)
        results[args.subscribers] = measure(probe, peer_sock, args.transitions, args.probe_priority == "rt", args.settle_ms / 1000)
        cpu[args.subscribers] = cpu_seconds(proc.pid) - c0
        threads = thread_cpu_diff(threads0, thread_cpu(proc.pid))
        # the anchor, while the held sessions are still stopped and the
        # daemon idle: the same sends with nothing of ours around them
        workers = len(os.sched_getaffinity(proc.pid))  # tokio's default: a worker per CPU
        size = ssh_packet_size(probe.last)
        anchor = None if args.no_floor else floor(
            r, tmp, args.subscribers, args.transitions, size, max(args.settle_ms, 1), max(workers, 1))
        holder.send_signal(signal.SIGCONT)
        if args.samples:
            import json
            Path(args.samples).write_text(json.dumps(
                {"rows": {str(k): v for k, v in results.items()}, "floor": anchor}))
        print(f"# hotleased {args.hotleased}; {args.transitions} transitions per row; probe priority {args.probe_priority}, TCP {args.tcp_cc or 'default'}, {args.settle_ms:g} ms pause before each transition with many subscribers; "
              f"{args.subscribers - 1} extra sessions opened and subscribed in {opened:.0f} s")
        print("subscribers  p50_ms  p99_ms  max_ms  daemon_cpu_s  cpu_us_per_delivery")
        for k, v in results.items():
            per = cpu[k] / (2 * args.transitions * k) * 1e6
            print(f"{k:11d}  {statistics.median(v):6.2f}  {pct(v, 99):6.2f}  {max(v):6.2f}"
                  f"  {cpu[k]:12.2f}  {per:19.1f}")
        if anchor:
            pos = [a for a, _ in anchor]
            end = [b for _, b in anchor]
            print(f"# anchor (bench/netconf/fanout_floor.c): the kernel's floor, one send() of {size} bytes (one SSH "
                  f"packet of the state-change) to each of {args.subscribers} loopback TCP connections never read, "
                  f"by {max(workers, 1)} threads (the daemon's workers); no SSH, no XML, no VRRP")
            print("floor        p50_ms  p99_ms  max_ms")
            print(f"{'place':11s}  {statistics.median(pos):6.2f}  {pct(pos, 99):6.2f}  {max(pos):6.2f}")
            print(f"{'end':11s}  {statistics.median(end):6.2f}  {pct(end, 99):6.2f}  {max(end):6.2f}")
            v = results[args.subscribers]
            print(f"# hotleased / floor ({args.subscribers} subscribers, at a random place): "
                  f"p50 {statistics.median(v) / statistics.median(pos):.2f}, p99 {pct(v, 99) / pct(pos, 99):.2f}; "
                  f"the target (p99 <= 10 ms) is {'above' if pct(pos, 99) < 10 else 'AT OR BELOW'} the floor's p99 here")
        elif not args.no_floor:
            print("# anchor not measured: no C compiler (cc)")
        print(f"# the daemon's threads during the {args.subscribers}-subscriber row: {threads}")
        print(f"# load average at the end: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
        print(f"# daemon alive: {proc.poll() is None}")
        # resumed, the 999 paramiko clients decrypt what they were sent
        # before they see stdin close: on a busy machine, minutes
        holder.stdin.close()
        try:
            holder.wait(60)
        except subprocess.TimeoutExpired:
            holder.kill()
        return 0
    finally:
        if holder is not None and holder.poll() is None:
            holder.send_signal(signal.SIGCONT)
            holder.kill()
        for s in sessions:
            try:
                s.close()
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        for ns in (r, p):
            for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
                try:
                    os.kill(int(pid), 9)
                except (ProcessLookupError, ValueError):
                    pass
            sh("ip", "netns", "del", ns, check=False)
        if os.environ.get("KEEP"):
            print(f"# kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
