#!/usr/bin/env python3
"""NETCONF benchmark client: hotleased vs yuma123 netconfd, same work, same run.

Started by bench/netconf/run.sh (which starts both servers); not a test.

The client is paramiko plus its own RFC 6242 framing, synchronous: send one
RPC, read its whole reply.  It does not use ncclient's session thread, which
as shipped (0.7) polls its send queue every 0.1 s and so adds ~100 ms to every
RPC; and it sets TCP_NODELAY on the socket (ncclient and paramiko do not).
Both would otherwise hide every server-side difference (every ratio reads 1).

Figures (medians over repetitions):
  a. edit-config of POOLS pools into candidate, then commit (ms each);
  b. get-config of running holding those pools (ms);
  c. server CPU per SSH session (open + hello + close-session), from the
     servers' cgroups (netconfd: its cgroup holds netconfd, sshd and every
     per-connection sshd / netconf-subsystem child);
  d. one-leaf edit-config + commit pairs per second with the pools loaded.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import sys
import time
from dataclasses import dataclass, field

import paramiko
from lxml import etree

BASE_NS = "urn:ietf:params:xml:ns:netconf:base:1.0"
BASE10 = "urn:ietf:params:netconf:base:1.0"
BASE11 = "urn:ietf:params:netconf:base:1.1"
DHCPS_NS = "urn:hotlease:yang:dhcp-server"
EOM = b"]]>]]>"

# Targets from issue 2 for hotleased.
TARGET_RATIO = 2.0  # a, b: at least 2x netconfd
TARGET_SESSION_CPU_MS = 5.0  # c: at most
TARGET_SMALL_COMMITS = 100.0  # d: at least, per second


class BenchError(Exception):
    pass


class RpcFailed(BenchError):
    def __init__(self, server: str, what: str, request: bytes, reply: bytes, ms: float):
        self.server, self.what, self.request, self.reply, self.ms = server, what, request, reply, ms
        super().__init__(
            f"{server}: {what} failed after {ms:.1f} ms\n"
            f"  request (first 400 bytes): {request[:400]!r}\n"
            f"  reply   (first 1500 bytes): {reply[:1500]!r}"
        )


# --------------------------------------------------------------------------
# a minimal synchronous NETCONF-over-SSH client
# --------------------------------------------------------------------------


class Session:
    def __init__(self, name: str, port: int, user: str, key: paramiko.PKey,
                 timeout: float, hello_pause: float = 0.02):
        self.name = name
        self.timeout = timeout
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.transport = paramiko.Transport(sock)
        self.transport.start_client(timeout=timeout)
        self.transport.auth_publickey(user, key)
        self.chan = self.transport.open_session(timeout=timeout)
        self.chan.settimeout(timeout)
        self.chan.invoke_subsystem("netconf")
        self.buf = bytearray()
        self.pos = 0
        self.chunked = False
        self.msg_id = 0
        hello = self._read_eom()
        caps = set(re.findall(rb"<(?:\w+:)?capability>\s*([^<]*?)\s*</", hello))
        self.server_caps = {c.decode() for c in caps}
        m = re.search(rb"<(?:\w+:)?session-id>\s*(\d+)", hello)
        self.session_id = int(m.group(1)) if m else None
        self.chan.sendall(
            (
                f'<?xml version="1.0" encoding="UTF-8"?>'
                f'<hello xmlns="{BASE_NS}"><capabilities>'
                f"<capability>{BASE10}</capability><capability>{BASE11}</capability>"
                f"</capabilities></hello>"
            ).encode()
            + EOM
        )
        self.chunked = BASE11 in self.server_caps
        # yuma123 netconfd never answers an RPC that reaches it in the same
        # read as the client's hello when base:1.1 is on; pause (untimed, and
        # the same for both servers) before the first RPC.
        if hello_pause:
            time.sleep(hello_pause)

    # -- framing ---------------------------------------------------------

    def _fill(self) -> None:
        data = self.chan.recv(1 << 20)
        if not data:
            raise BenchError(f"{self.name}: session closed by the server "
                             f"(buffered: {bytes(self.buf[self.pos:self.pos + 300])!r})")
        self.buf += data

    def _compact(self) -> None:
        del self.buf[: self.pos]
        self.pos = 0

    def _read_eom(self) -> bytes:
        start = self.pos
        while True:
            i = self.buf.find(EOM, start)
            if i >= 0:
                msg = bytes(self.buf[self.pos:i])
                self.pos = i + len(EOM)
                self._compact()
                return msg
            start = max(self.pos, len(self.buf) - len(EOM) + 1)
            self._fill()

    def _read_chunked(self) -> bytes:
        parts = []
        while True:
            while True:
                nl = self.buf.find(b"\n", self.pos + 1) if len(self.buf) > self.pos + 2 else -1
                if nl >= 0:
                    break
                self._fill()
            hdr = bytes(self.buf[self.pos:nl])
            if not hdr.startswith(b"\n#"):
                raise BenchError(f"{self.name}: bad chunk header {hdr[:60]!r}")
            self.pos = nl + 1
            if hdr == b"\n##":
                self._compact()
                return b"".join(parts)
            n = int(hdr[2:])
            while len(self.buf) - self.pos < n:
                self._fill()
            parts.append(bytes(self.buf[self.pos:self.pos + n]))
            self.pos += n

    def _send(self, msg: bytes) -> None:
        if self.chunked:
            self.chan.sendall(b"\n#%d\n" % len(msg) + msg + b"\n##\n")
        else:
            self.chan.sendall(msg + EOM)

    def _read(self) -> bytes:
        return self._read_chunked() if self.chunked else self._read_eom()

    # -- RPCs --------------------------------------------------------------

    def rpc(self, body: str, what: str) -> tuple[bytes, float]:
        """Send one RPC, read its whole reply; return (reply, ms).  A reply
        with an <rpc-error> raises RpcFailed (no retry, no work-around)."""
        self.msg_id += 1
        req = f'<rpc message-id="{self.msg_id}" xmlns="{BASE_NS}">{body}</rpc>'.encode()
        t0 = time.perf_counter()
        try:
            self._send(req)
            reply = self._read()
        except BenchError:
            raise
        except (OSError, EOFError, paramiko.SSHException) as e:
            ms = (time.perf_counter() - t0) * 1000.0
            raise RpcFailed(self.name, f"{what} ({type(e).__name__}: {e or 'timeout'})",
                            req, bytes(self.buf[self.pos:]), ms) from None
        ms = (time.perf_counter() - t0) * 1000.0
        if b"rpc-error>" in reply or b"<rpc-reply" not in reply[:400] and b":rpc-reply" not in reply[:400]:
            raise RpcFailed(self.name, what, req, reply, ms)
        return reply, ms

    def close_session(self) -> float:
        _, ms = self.rpc("<close-session/>", "close-session")
        return ms

    def close(self) -> None:
        try:
            self.chan.close()
        finally:
            self.transport.close()


# --------------------------------------------------------------------------
# payloads (identical bytes for both servers)
# --------------------------------------------------------------------------


def pool_name(i: int) -> str:
    return f"pool-{i:04d}"


def pools_config(n: int) -> str:
    """n pools that satisfy every rule of the real module: pool i owns
    10.(i/256).(i%256).0/24, gateway .1, one section .10-.250, two DNS
    servers outside every section."""
    out = [f'<dhcp-server xmlns="{DHCPS_NS}">']
    for i in range(n):
        net = f"10.{i // 256}.{i % 256}"
        out.append(
            f"<ip-pool><name>{pool_name(i)}</name>"
            f"<gateway>{net}.1</gateway><mask>255.255.255.0</mask>"
            f"<section><start>{net}.10</start><end>{net}.250</end></section>"
            f"<dns-server>{net}.2</dns-server><dns-server>{net}.3</dns-server>"
            f"<domain-name>pool{i}.bench.example</domain-name>"
            f"<lease-time>3600</lease-time></ip-pool>"
        )
    out.append("</dhcp-server>")
    return "".join(out)


def probe_pool(body: str) -> str:
    return (f"<ip-pool><name>probe</name><mask>255.255.255.0</mask>{body}</ip-pool>")


# Per-pool address rules of the real module (the must rules that read only
# the pool's own nodes), each broken by one pool.
RULE_PROBES = [
    ("gateway-outside-subnet", probe_pool(
        "<network>10.9.0.0</network><gateway>10.8.0.1</gateway>")),
    ("gateway-in-section", probe_pool(
        "<gateway>10.9.0.20</gateway>"
        "<section><start>10.9.0.10</start><end>10.9.0.50</end></section>")),
    ("section-end-before-start", probe_pool(
        "<gateway>10.9.0.1</gateway>"
        "<section><start>10.9.0.50</start><end>10.9.0.10</end></section>")),
    ("section-outside-subnet", probe_pool(
        "<gateway>10.9.0.1</gateway>"
        "<section><start>10.9.0.10</start><end>10.9.1.10</end></section>")),
    ("section-overlap", probe_pool(
        "<gateway>10.9.0.1</gateway>"
        "<section><start>10.9.0.10</start><end>10.9.0.50</end></section>"
        "<section><start>10.9.0.40</start><end>10.9.0.60</end></section>")),
    ("network-host-bits-set", probe_pool("<network>10.9.0.7</network>")),
    ("excluded-outside-subnet", probe_pool(
        "<gateway>10.9.0.1</gateway><excluded><start>10.9.1.5</start></excluded>")),
    ("static-bind-in-section", probe_pool(
        "<gateway>10.9.0.1</gateway>"
        "<section><start>10.9.0.10</start><end>10.9.0.50</end></section>"
        "<static-bind><ip-address>10.9.0.20</ip-address>"
        "<mac-address>02:00:00:00:00:01</mac-address></static-bind>")),
    ("server-identifier-in-section", probe_pool(
        "<gateway>10.9.0.1</gateway><server-identifier>10.9.0.20</server-identifier>"
        "<section><start>10.9.0.10</start><end>10.9.0.50</end></section>")),
]


def edit_candidate(config: str) -> str:
    return (f"<edit-config><target><candidate/></target>"
            f"<config>{config}</config></edit-config>")


CLEAR = edit_candidate(
    f'<dhcp-server xmlns="{DHCPS_NS}" xmlns:nc="{BASE_NS}" nc:operation="remove"/>'
)
COMMIT = "<commit/>"
GET_CONFIG_ALL = "<get-config><source><running/></source></get-config>"
GET_CONFIG = (
    f'<get-config><source><running/></source>'
    f'<filter type="subtree"><dhcp-server xmlns="{DHCPS_NS}"/></filter></get-config>'
)


def one_leaf(i: int, lease: int) -> str:
    return edit_candidate(
        f'<dhcp-server xmlns="{DHCPS_NS}"><ip-pool><name>{pool_name(i)}</name>'
        f"<lease-time>{lease}</lease-time></ip-pool></dhcp-server>"
    )


def count_pools(reply: bytes) -> int:
    root = etree.fromstring(reply)
    return len(root.findall(f".//{{{DHCPS_NS}}}ip-pool"))


# --------------------------------------------------------------------------
# CPU accounting
# --------------------------------------------------------------------------


def proc_ticks(pid: int, children: bool) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime=14, stime=15, cutime=16, cstime=17
    t = int(fields[11]) + int(fields[12])
    if children:
        t += int(fields[13]) + int(fields[14])
    return t


CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class CpuMeter:
    """CPU seconds used so far by one server.  spec: 'cgroup1:DIR'
    (cpuacct.usage, ns), 'cgroup2:DIR' (cpu.stat usage_usec) or
    'proc:PID[+]...' ('+' adds the reaped children's times)."""

    spec: str

    def seconds(self) -> float:
        kind, _, arg = self.spec.partition(":")
        if kind == "cgroup1":
            with open(os.path.join(arg, "cpuacct.usage")) as f:
                return int(f.read()) / 1e9
        if kind == "cgroup2":
            with open(os.path.join(arg, "cpu.stat")) as f:
                for line in f:
                    k, v = line.split()
                    if k == "usage_usec":
                        return int(v) / 1e6
            raise BenchError(f"no usage_usec in {arg}/cpu.stat")
        if kind == "proc":
            total = 0
            for p in arg.split(","):
                kids = p.endswith("+")
                total += proc_ticks(int(p.rstrip("+")), kids)
            return total / CLK_TCK
        raise BenchError(f"bad cpu spec {self.spec}")


# --------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    port: int
    user: str
    cpu: CpuMeter
    proc_cpu: CpuMeter  # /proc cross-check of the same process tree
    sess: Session | None = None
    results: dict = field(default_factory=dict)


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hl-port", type=int, required=True)
    ap.add_argument("--hl-user", default="bench")
    ap.add_argument("--hl-cpu", required=True)
    ap.add_argument("--hl-proc", required=True)
    ap.add_argument("--nc-port", type=int, required=True)
    ap.add_argument("--nc-user", default="root")
    ap.add_argument("--nc-cpu", required=True)
    ap.add_argument("--nc-proc", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--pools", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--get-reps", type=int, default=20)
    ap.add_argument("--sessions", type=int, default=50)
    ap.add_argument("--session-reps", type=int, default=3)
    ap.add_argument("--small", type=int, default=200)
    ap.add_argument("--small-reps", type=int, default=3)
    ap.add_argument("--small-budget", type=float, default=60.0,
                    help="seconds per repetition of figure d (bounded loop)")
    ap.add_argument("--timeout", type=float, default=300.0, help="per-RPC timeout, s")
    ap.add_argument("--summary", help="write the figure lines here too")
    ap.add_argument("--dump", help="write each server's hello capabilities and first "
                    "get-config reply into this directory")
    ap.add_argument("--nc-parts", default="",
                    help="name=SPEC;... CPU specs printed as a breakdown of netconfd in figure c")
    a = ap.parse_args()

    key = paramiko.Ed25519Key.from_private_key_file(a.key)
    servers = [
        Server("hotleased", a.hl_port, a.hl_user, CpuMeter(a.hl_cpu), CpuMeter(a.hl_proc)),
        Server("netconfd", a.nc_port, a.nc_user, CpuMeter(a.nc_cpu), CpuMeter(a.nc_proc)),
    ]
    hl, nc = servers
    lines: list[str] = []
    failures: list[str] = []

    def connect(s: Server) -> Session:
        return Session(s.name, s.port, s.user, key, a.timeout)

    def fail(s: Server, e: Exception) -> None:
        """Record a failure; the session is dropped (a new one is opened for
        the next repetition, no retry of the failed request)."""
        msg = f"{time.strftime('%H:%M:%S')} {e}"
        failures.append(msg)
        print(f"# FAILED: {msg}", flush=True)
        if s.sess is not None:
            try:
                s.sess.close()
            except Exception:
                pass
            s.sess = None

    def ensure(s: Server) -> bool:
        if s.sess is None:
            try:
                s.sess = connect(s)
            except (BenchError, OSError, EOFError, paramiko.SSHException) as e:
                failures.append(f"{time.strftime('%H:%M:%S')} {s.name}: cannot open a session: {e!r}")
                print(f"# FAILED: {s.name}: cannot open a session: {e!r}", flush=True)
                return False
        return True

    for s in servers:
        if not ensure(s):
            continue
        print(f"# {s.name}: session-id {s.sess.session_id}, "
              f"chunked framing {'on' if s.sess.chunked else 'off'}, "
              f"candidate {'yes' if any(':candidate' in c for c in s.sess.server_caps) else 'NO'}",
              flush=True)

    big = edit_candidate(pools_config(a.pools))
    print(f"# edit-config payload: {len(big)} bytes, {a.pools} pools", flush=True)

    # ---- which address rules each server enforces --------------------------
    # One pool breaking each of these rules of the real module is committed
    # alone; a server that evaluates the rule refuses the commit.  Tells
    # whether figure a compares the same validation work.
    for s in servers:
        if not ensure(s):
            continue
        enforced = []
        for tag, pool in RULE_PROBES:
            try:
                s.sess.rpc(CLEAR, "clear candidate")
                s.sess.rpc(COMMIT, "commit (clear)")
                s.sess.rpc(edit_candidate(f'<dhcp-server xmlns="{DHCPS_NS}">{pool}</dhcp-server>'),
                           f"edit-config ({tag} probe)")
                s.sess.rpc(COMMIT, f"commit ({tag} probe)")
                refused = False
            except RpcFailed as e:
                if b"rpc-error" not in e.reply:
                    fail(s, e)
                    break
                refused = True
            except BenchError as e:
                fail(s, e)
                break
            if refused:
                enforced.append(tag)
            try:
                s.sess.rpc("<discard-changes/>", "discard-changes")
            except BenchError as e:
                fail(s, e)
                break
        s.results["rules"] = enforced
        print(f"# {s.name} refuses a commit breaking {len(enforced)}/{len(RULE_PROBES)} "
              f"address rules: {' '.join(enforced) or '-'}", flush=True)

    # ---- a. edit-config of POOLS pools into candidate, then commit --------
    for s in servers:
        s.results["edit"], s.results["commit"] = [], []
    for rep in range(a.reps):
        for s in servers:
            if not ensure(s):
                continue
            try:
                s.sess.rpc(CLEAR, "clear candidate")
                s.sess.rpc(COMMIT, "commit (clear)")
                _, t_edit = s.sess.rpc(big, f"edit-config {a.pools} pools")
                _, t_commit = s.sess.rpc(COMMIT, f"commit {a.pools} pools")
            except BenchError as e:
                fail(s, e)
                continue
            s.results["edit"].append(t_edit)
            s.results["commit"].append(t_commit)
            print(f"#   a rep {rep + 1}/{a.reps} {s.name}: edit-config {t_edit:.1f} ms, "
                  f"commit {t_commit:.1f} ms", flush=True)

    # ---- b. get-config of running with the pools ------------------------
    # Two forms: the whole running datastore (no filter), and a subtree
    # filter selecting the dhcp-server container (the same data from both).
    for s in servers:
        s.results["get_all"], s.results["get"] = [], []
        if not ensure(s):
            continue
        try:
            for what, req, tag in (("get-config", GET_CONFIG_ALL, "all"),
                                   ("get-config-subtree", GET_CONFIG, "subtree")):
                reply, _ = s.sess.rpc(req, what)
                if a.dump:
                    with open(os.path.join(a.dump, f"{s.name}-{what}.xml"), "wb") as f:
                        f.write(reply)
                n = count_pools(reply)
                s.results[f"bytes_{tag}"] = len(reply)
                print(f"# {s.name}: {what} of running: {n} pools, reply {len(reply)} bytes",
                      flush=True)
                if n != a.pools:
                    failures.append(f"{s.name}: {what}: running holds {n} pools, "
                                    f"expected {a.pools}")
            if a.dump:
                with open(os.path.join(a.dump, f"{s.name}-capabilities.txt"), "w") as f:
                    f.write("\n".join(sorted(s.sess.server_caps)) + "\n")
        except BenchError as e:
            fail(s, e)
    for rep in range(a.get_reps):
        for s in servers:
            if not ensure(s):
                continue
            try:
                _, t = s.sess.rpc(GET_CONFIG_ALL, "get-config")
                s.results["get_all"].append(t)
                _, t = s.sess.rpc(GET_CONFIG, "get-config-subtree")
                s.results["get"].append(t)
            except BenchError as e:
                fail(s, e)

    # ---- d. small one-leaf edit-config + commit pairs ---------------------
    for s in servers:
        s.results["small"] = []
    lease = 4000
    for rep in range(a.small_reps):
        for s in servers:
            if not ensure(s):
                continue
            done = 0
            t0 = time.perf_counter()
            lat = []
            try:
                for j in range(a.small):
                    if time.perf_counter() - t0 > a.small_budget:
                        break
                    lease += 1
                    i = (j * 37 + rep) % a.pools
                    _, t1 = s.sess.rpc(one_leaf(i, lease), "one-leaf edit-config")
                    _, t2 = s.sess.rpc(COMMIT, "one-leaf commit")
                    lat.append((t1, t2))
                    done += 1
            except BenchError as e:
                fail(s, e)
            el = time.perf_counter() - t0
            if done:
                rate = done / el
                s.results["small"].append(rate)
                print(f"#   d rep {rep + 1}/{a.small_reps} {s.name}: {done} pairs in {el:.2f} s "
                      f"= {rate:.3g}/s (median edit {med([x for x, _ in lat]):.1f} ms, "
                      f"commit {med([y for _, y in lat]):.1f} ms)", flush=True)

    for s in servers:
        if s.sess is None:
            continue
        try:
            s.sess.close_session()
        except BenchError as e:
            fail(s, e)
            continue
        s.sess.close()
        s.sess = None

    # ---- c. server CPU per SSH session ------------------------------------
    # Idle baseline first (timers, housekeeping), subtracted below.
    time.sleep(1.0)
    idle = {}
    for s in servers:
        c0 = s.cpu.seconds()
        idle[s.name] = c0
    t_idle0 = time.perf_counter()
    time.sleep(2.0)
    t_idle = time.perf_counter() - t_idle0
    for s in servers:
        idle[s.name] = (s.cpu.seconds() - idle[s.name]) / t_idle  # CPU s per s
        print(f"# {s.name}: idle CPU {idle[s.name] * 1000:.2f} ms/s", flush=True)
    parts = {"netconfd": [(n, CpuMeter(spec)) for n, _, spec in
                          (p.partition("=") for p in a.nc_parts.split(";") if p)]}
    for s in servers:
        s.results["sess_cpu"], s.results["sess_cpu_proc"], s.results["sess_wall"] = [], [], []
    for rep in range(a.session_reps):
        for s in servers:
            c0, p0 = s.cpu.seconds(), s.proc_cpu.seconds()
            parts0 = [m.seconds() for _, m in parts.get(s.name, [])]
            t0 = time.perf_counter()
            walls = []
            ok = 0
            try:
                for _ in range(a.sessions):
                    w0 = time.perf_counter()
                    sess = connect(s)
                    sess.close_session()
                    sess.close()
                    walls.append((time.perf_counter() - w0) * 1000.0 - 20.0)  # minus hello pause
                    ok += 1
            except (BenchError, paramiko.SSHException, OSError, EOFError) as e:
                failures.append(f"{s.name}: session {ok + 1}: {e!r}")
                print(f"# FAILED: {s.name}: session {ok + 1}: {e!r}", flush=True)
            time.sleep(0.5)  # let the server finish tearing the sessions down
            el = time.perf_counter() - t0
            c1, p1 = s.cpu.seconds(), s.proc_cpu.seconds()
            if ok:
                per = ((c1 - c0) - idle[s.name] * el) / ok * 1000.0
                per_proc = (p1 - p0) / ok * 1000.0
                s.results["sess_cpu"].append(per)
                s.results["sess_cpu_proc"].append(per_proc)
                s.results["sess_wall"].append(med(walls))
                brk = "".join(
                    f", {n} {(m.seconds() - v0) / ok * 1000.0:.1f}"
                    for (n, m), v0 in zip(parts.get(s.name, []), parts0))
                print(f"#   c rep {rep + 1}/{a.session_reps} {s.name}: {ok} sessions, "
                      f"{per:.2f} ms CPU/session (cgroup), {per_proc:.2f} (/proc{brk}), "
                      f"median wall {med(walls):.1f} ms", flush=True)

    # ---- report -----------------------------------------------------------
    nan = float("nan")

    def figure(name, hx, ny, unit, rate, target=None, note=None):
        ratio = (hx / ny if ny else nan) if rate else (ny / hx if hx else nan)
        line = (f"{name}: hotleased {hx:.2f} {unit}, netconfd {ny:.2f} {unit}, "
                f"ratio {'X/Y' if rate else 'Y/X'} {ratio:.2f}")
        if target:
            text, ok = target(hx, ratio)
            line += f"  [target {text}: {verdict(ok)}]"
        print(line)
        lines.append(line)
        if note:
            print(f"   ({note})")
            lines.append(f"   ({note})")

    def n_of(key):
        return f"n={len(hl.results[key])}/{len(nc.results[key])}"

    def ratio_target(hx, r):
        return f">= {TARGET_RATIO:.0f}x netconfd", r >= TARGET_RATIO

    print()
    print(f"== NETCONF figures, {a.pools} pools; X = hotleased, Y = netconfd; medians ==")
    he, ne = med(hl.results["edit"]), med(nc.results["edit"])
    hc, nc_ = med(hl.results["commit"]), med(nc.results["commit"])
    figure(f"a. edit-config {a.pools} pools into candidate (ms)", he, ne, "ms", False,
           note=f"{n_of('edit')} repetitions; payload {len(big)} bytes")
    figure("a. commit of those pools (ms)", hc, nc_, "ms", False)
    figure("a. edit-config + commit (ms)", he + hc, ne + nc_, "ms", False,
           target=ratio_target)
    figure(f"b. get-config running, no filter, {a.pools} pools (ms)",
           med(hl.results["get_all"]), med(nc.results["get_all"]), "ms", False,
           target=ratio_target,
           note=f"{n_of('get_all')}; reply bytes: hotleased {hl.results.get('bytes_all')}, "
                f"netconfd {nc.results.get('bytes_all')}")
    figure(f"b. get-config running, subtree filter <dhcp-server/>, {a.pools} pools (ms)",
           med(hl.results["get"]), med(nc.results["get"]), "ms", False,
           target=ratio_target,
           note=f"{n_of('get')}; reply bytes: hotleased {hl.results.get('bytes_subtree')}, "
                f"netconfd {nc.results.get('bytes_subtree')}")
    figure("c. server CPU per SSH session (ms)", med(hl.results["sess_cpu"]),
           med(nc.results["sess_cpu"]), "ms", False,
           target=lambda hx, r: (f"<= {TARGET_SESSION_CPU_MS:.0f} ms", hx <= TARGET_SESSION_CPU_MS),
           note=f"{a.sessions} sessions x {n_of('sess_cpu')}; /proc cross-check: hotleased "
                f"{med(hl.results['sess_cpu_proc']):.2f} ms, netconfd "
                f"{med(nc.results['sess_cpu_proc']):.2f} ms; median wall per session: "
                f"hotleased {med(hl.results['sess_wall']):.1f} ms, netconfd "
                f"{med(nc.results['sess_wall']):.1f} ms")
    figure(f"d. one-leaf edit-config + commit pairs per second, {a.pools} pools loaded",
           med(hl.results["small"]), med(nc.results["small"]), "/s", True,
           target=lambda hx, r: (f">= {TARGET_SMALL_COMMITS:.0f}/s", hx >= TARGET_SMALL_COMMITS),
           note=f"{n_of('small')} repetitions of up to {a.small} pairs or "
                f"{a.small_budget:.0f} s")
    if failures:
        print("\n== errors seen (figures above exclude the failed repetitions) ==")
        for f in failures:
            print(f)
    if a.summary:
        with open(a.summary, "w") as f:
            f.write("\n".join(lines) + "\n")
            if failures:
                f.write("errors:\n" + "\n".join(failures) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
