#!/usr/bin/env python3
"""Read benchmark client (issue 11), started by bench/reads/run.sh; not a test.

  reads.py netconf --port P --key K --pid PID [--table-kb KB] [--reps N]
      keyed reads over NETCONF (the synchronous paramiko client of
      bench/netconf/bench.py: no ncclient polling delay, TCP_NODELAY),
      keyed reads of a second session during a commit of 999 pools, then
      a whole-table <get> while a second session makes one-leaf commits;
  reads.py getloop --port P --key K --secs S
      whole-table <get>s back to back for S seconds (run.sh measures the
      DHCP ACK delay meanwhile);
  reads.py kea --socket PATH [--reps N]
      the same keyed reads on Kea's control socket (lease4-get by address
      and by hw-address, stat-lease4-get).

Every figure is a median over --reps reads of different keys unless said
otherwise; each prints one `figure NAME VALUE UNIT` line for run.sh.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import time

import paramiko

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "netconf"))
from bench import Session  # noqa: E402

DHCPS_NS = "urn:hotlease:yang:dhcp-server"
FIRST = ipaddress.IPv4Address("10.200.1.0")


def fig(name: str, value, unit: str) -> None:
    print(f"figure {name} {value} {unit}", flush=True)


def get(sub: str) -> str:
    return f'<get><filter type="subtree"><dhcp-server xmlns="{DHCPS_NS}">{sub}</dhcp-server></filter></get>'


def field(reply: bytes, leaf: str) -> str | None:
    m = re.search(rb"<(?:\w+:)?%s>([^<]*)<" % leaf.encode(), reply)
    return m.group(1).decode() if m else None


def vm(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def median_ms(xs):
    return f"{statistics.median(xs):.3f}"


def connect(a) -> Session:
    key = paramiko.Ed25519Key.from_private_key_file(a.key)
    return Session("hotleased", a.port, "bench", key, timeout=600, hello_pause=0)


def keys_of(used: int, reps: int) -> list[str]:
    """Addresses handed out in order from the pool's first one."""
    rnd = random.Random(11)
    return [str(FIRST + rnd.randrange(max(used, 1))) for _ in range(reps)]


def short_slice() -> None:
    """Ask Linux (6.12+) for the shortest slice for this process
    (sched_setattr, SCHED_OTHER, 0.1 ms): woken, it then does not wait for
    a busy neighbour's slice on the shared client CPU. Best effort."""
    import ctypes
    import platform
    import struct
    if platform.machine() != "x86_64":
        return
    attr = struct.pack("IIQiIQQQII", 56, 0, 0, os.getpriority(os.PRIO_PROCESS, 0), 0, 100_000, 0, 0, 0, 0)
    ctypes.CDLL(None, use_errno=True).syscall(314, 0, ctypes.create_string_buffer(attr, 56), 0)


def committer(a, stop, ready, out) -> None:
    """One-leaf edit + commit pairs on a session of its own until `stop`;
    the times (ms) go to `out`. A process of its own: as a thread beside
    the whole-table reader it waited for the GIL (paramiko decrypts in
    Python), up to the 5 ms switch interval at a time, which the figure
    then charged to the server."""
    short_slice()
    b = connect(a)
    ready.set()
    times, trace, i = [], [], 0
    while not stop.is_set():
        i += 1
        lt = 3600 + i % 2
        body = (f'<edit-config><target><candidate/></target><config><dhcp-server xmlns="{DHCPS_NS}">'
                f"<ip-pool><name>p0001</name><lease-time>{lt}</lease-time></ip-pool></dhcp-server></config></edit-config>")
        wall = time.time()
        t0 = time.perf_counter()
        _, edit_ms = b.rpc(body, "edit")
        _, commit_ms = b.rpc("<commit/>", "commit")
        times.append((time.perf_counter() - t0) * 1000)
        trace.append((wall, edit_ms, commit_ms))
        time.sleep(0.01)
    if a.trace:
        # when each pair started (epoch s) and its two round trips, to set
        # beside the daemon's debug log (SERVER_LOG)
        with open(a.trace, "a") as f:
            for wall, e, c in trace:
                f.write(f"commit {wall:.6f} edit {e:.3f} ms commit {c:.3f} ms\n")
    out.put(times)
    b.close()


def reader(a, stop, ready, out) -> None:
    """Keyed get-configs (one pool of 1,000) on a session of its own until
    `stop`, 2 ms apart; (start, end) of each (time.monotonic, s) go to
    `out`. A process of its own, as `committer`."""
    short_slice()
    b = connect(a)
    ready.set()
    spans, rnd = [], random.Random(5)
    while not stop.is_set():
        name = f"p{rnd.randrange(1, 1000):04d}"
        body = (f'<get-config><source><running/></source><filter type="subtree"><dhcp-server xmlns="{DHCPS_NS}">'
                f"<ip-pool><name>{name}</name></ip-pool></dhcp-server></filter></get-config>")
        t0 = time.monotonic()
        b.rpc(body, "keyed get-config")
        spans.append((t0, time.monotonic()))
        time.sleep(0.002)
    out.put(spans)
    b.close()


def worker_while(a, target, work) -> list:
    """What a `target` process (`committer`, `reader`) measured while
    `work()` ran."""
    import multiprocessing
    ctx = multiprocessing.get_context("spawn")  # not fork: paramiko threads run here
    stop, ready, out = ctx.Event(), ctx.Event(), ctx.Queue()
    p = ctx.Process(target=target, args=(a, stop, ready, out))
    p.start()
    if not ready.wait(60):
        p.kill()
        raise SystemExit(f"the {target.__name__} did not connect")
    try:
        work()
    finally:
        stop.set()
    got = out.get(timeout=120)
    p.join(30)
    return got


def commits_while(a, work) -> list[float]:
    """The commit times of a committer process while `work()` runs."""
    return worker_while(a, committer, work)


def large_commit(a, s) -> None:
    """Another session's keyed reads while a commit changes 999 pools (one
    leaf each): the commit's validation runs off the northbound actor, so
    the reads are not held up for it."""
    lt = 7200 + random.Random().randrange(1000)
    pools = "".join(f"<ip-pool><name>p{i:04d}</name><lease-time>{lt}</lease-time></ip-pool>" for i in range(1, 1000))
    edit = (f'<edit-config><target><candidate/></target><config><dhcp-server xmlns="{DHCPS_NS}">'
            f"{pools}</dhcp-server></config></edit-config>")
    got = {}

    def work():
        time.sleep(0.5)
        s.rpc(edit, "edit of 999 pools")
        time.sleep(0.2)
        got["c0"] = time.monotonic()
        _, got["ms"] = s.rpc("<commit/>", "commit of 999 pools")
        got["c1"] = time.monotonic()
        time.sleep(0.3)

    spans = worker_while(a, reader, work)
    c0, c1 = got["c0"], got["c1"]
    during = [(e - b) * 1000 for b, e in spans if b < c1 and e > c0]
    quiet = [(e - b) * 1000 for b, e in spans if e < c0 or b > c1]
    fig("large-commit-ms", f"{got['ms']:.1f}", "ms")
    fig("reads-during-large-commit", len(during), "reads")
    fig("read-during-large-commit-median-ms", median_ms(during) if during else "-", "ms")
    fig("read-during-large-commit-max-ms", f"{max(during):.1f}" if during else "-", "ms")
    fig("read-beside-large-commit-quiet-median-ms", median_ms(quiet) if quiet else "-", "ms")


def netconf(a) -> int:
    s = connect(a)
    r, _ = s.rpc(get("<ip-pool><name>bench</name><statistics/></ip-pool>"), "pool statistics")
    used = int(field(r, "used") or 0)
    fig("leases-used", used, "leases")
    # warm-up
    for _ in range(5):
        s.rpc(get("<ip-pool><name>bench</name><statistics/></ip-pool>"), "warm-up")
    ips = keys_of(used, a.reps)
    by_ip, macs, missing = [], [], 0
    for ip in ips:
        r, ms = s.rpc(get(f"<lease><ip-address>{ip}</ip-address></lease>"), "lease by ip")
        by_ip.append(ms)
        mac = field(r, "mac-address")
        if mac is None:
            missing += 1
        else:
            macs.append(mac)
    fig("lease-by-ip-ms", median_ms(by_ip), "ms")
    fig("lease-by-ip-missing", missing, "of-%d" % len(ips))
    by_mac, wrong = [], 0
    for mac in macs:
        r, ms = s.rpc(get(f"<lease><mac-address>{mac}</mac-address></lease>"), "lease by mac")
        by_mac.append(ms)
        if field(r, "mac-address") != mac:
            wrong += 1
    fig("lease-by-mac-ms", median_ms(by_mac), "ms")
    fig("lease-by-mac-not-found", wrong, "of-%d" % len(macs))
    xp = []
    for ip in ips[: len(ips) // 2]:
        body = (f'<get><filter type="xpath" xmlns:d="{DHCPS_NS}" '
                f"select=\"/d:dhcp-server/d:lease[d:ip-address='{ip}']\"/></get>")
        _, ms = s.rpc(body, "lease by xpath")
        xp.append(ms)
    fig("lease-by-ip-xpath-ms", median_ms(xp), "ms")
    stats = []
    for _ in range(a.reps):
        r, ms = s.rpc(get("<ip-pool><name>bench</name><statistics/></ip-pool>"), "pool statistics")
        stats.append(ms)
    fig("pool-statistics-ms", median_ms(stats), "ms")
    rnd = random.Random(7)
    cfg, size = [], 0
    for _ in range(a.reps):
        name = f"p{rnd.randrange(1, 1000):04d}"
        body = (f'<get-config><source><running/></source><filter type="subtree"><dhcp-server xmlns="{DHCPS_NS}">'
                f"<ip-pool><name>{name}</name></ip-pool></dhcp-server></filter></get-config>")
        r, ms = s.rpc(body, "keyed get-config")
        cfg.append(ms)
        size = len(r)
        if f"<name>{name}</name>".encode() not in r:
            raise SystemExit(f"keyed get-config: no {name} in {r[:300]!r}")
    fig("keyed-get-config-ms", median_ms(cfg), "ms")
    fig("keyed-get-config-bytes", size, "bytes")
    large_commit(a, s)
    # whole table, while another session commits one-leaf edits
    if a.trace:
        with open(a.trace, "a") as f:
            f.write("phase quiet\n")
    quiet = commits_while(a, lambda: time.sleep(2))
    if a.trace:
        with open(a.trace, "a") as f:
            f.write("phase whole-get\n")
    fig("commit-quiet-median-ms", median_ms(quiet), "ms")
    rss0 = vm(a.pid, "VmRSS")
    with open(f"/proc/{a.pid}/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    got = {}

    def whole():
        t0 = time.perf_counter()
        w0 = time.time()
        got["r"], got["ms"] = s.rpc(f'<get><filter type="subtree"><dhcp-server xmlns="{DHCPS_NS}"/></filter></get>',
                                    "whole table")
        got["wall"] = time.perf_counter() - t0
        if a.trace:
            with open(a.trace, "a") as f:
                f.write(f"whole-get {w0:.6f} {got['ms']:.3f} ms\n")

    rec = None
    if a.sched:
        # the scheduler on both CPUs during the whole-table <get> (CLOCK_MONOTONIC;
        # the trace file says how far the wall clock is from it)
        rec = subprocess.Popen(["perf", "sched", "record", "-q", "-k", "mono", "-C", a.sched_cpus, "-o", a.sched],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)
        if a.trace:
            with open(a.trace, "a") as f:
                f.write(f"clock wall-minus-monotonic {time.time() - time.monotonic():.6f}\n")
    commits = commits_while(a, whole)
    if rec:
        rec.send_signal(2)
        rec.wait(60)
    r, ms, wall = got["r"], got["ms"], got["wall"]
    peak = vm(a.pid, "VmHWM")
    n = r.count(b"<ip-address>") or r.count(b"ip-address>") // 2
    fig("whole-get-ms", f"{ms:.0f}", "ms")
    fig("whole-get-bytes", len(r), "bytes")
    fig("whole-get-leases", n, "leases")
    fig("whole-get-leases-per-s", f"{n / wall:.0f}", "leases/s")
    fig("whole-get-rss-growth-kb", peak - rss0, "kB")
    if a.table_kb:
        fig("whole-get-rss-growth-x-table", f"{(peak - rss0) / a.table_kb:.2f}", "x")
    # the kept statistics against the table just read
    for st in ("bound", "offered", "declined", "released", "expired"):
        fig(f"whole-get-{st}", len(re.findall(rb"<(?:\w+:)?state>%s<" % st.encode(), r)), "leases")
    r2, _ = s.rpc(get("<ip-pool><name>bench</name><statistics/></ip-pool>"), "pool statistics")
    for k in ("used", "offered", "declined", "free"):
        fig(f"stats-after-get-{k}", field(r2, k), "addresses")
    fig("commit-during-get-median-ms", median_ms(commits) if commits else "-", "ms")
    fig("commit-during-get-max-ms", f"{max(commits):.1f}" if commits else "-", "ms")
    fig("commits-during-get", len(commits), "commits")
    s.close()
    return 0


def getloop_openssh(a) -> int:
    """getloop with OpenSSH's client and base:1.0 framing: the SSH
    decryption in C, the reply read from a pipe and only scanned for its
    end, so that the reading client costs its CPU little (paramiko's is
    Python and takes a CPU for 28 MB a read)."""
    eom = b"]]>]]>"
    p = subprocess.Popen(
        ["ssh", "-T", "-q", "-i", a.key, "-p", str(a.port), "-o", "BatchMode=yes",
         "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "bench@127.0.0.1", "-s", "netconf"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    fd = p.stdout.fileno()

    def until_eom() -> int:
        size, tail = 0, b""
        while True:
            d = os.read(fd, 1 << 20)
            if not d:
                raise SystemExit("getloop: the server closed the session")
            size += len(d)
            if eom in tail + d[:len(eom)] or eom in d:
                return size
            tail = d[-len(eom):]

    p.stdin.write(b'<hello xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><capabilities>'
                  b"<capability>urn:ietf:params:netconf:base:1.0</capability></capabilities></hello>" + eom)
    until_eom()
    get = (f'<rpc message-id="1" xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><get><filter type="subtree">'
           f'<dhcp-server xmlns="{DHCPS_NS}"/></filter></get></rpc>').encode() + eom
    end = time.monotonic() + a.secs
    n = 0
    while time.monotonic() < end:
        p.stdin.write(get)
        until_eom()
        n += 1
    fig("getloop-gets", n, "gets")
    p.stdin.close()
    p.wait(timeout=10)
    client_cpu(a)
    return 0


def client_cpu(a) -> None:
    """The <get> client's own CPU time (this process and, for OpenSSH, the
    ssh process it ran), against the time it ran: its share of its CPU."""
    t = os.times()
    cpu = t.user + t.system + t.children_user + t.children_system
    fig("getloop-client-cpu-s", f"{cpu:.2f}", "s")
    fig("getloop-client-cpu-pct", f"{100 * cpu / a.secs:.0f}", "%")


def getloop(a) -> int:
    if a.openssh:
        return getloop_openssh(a)
    s = connect(a)
    end = time.monotonic() + a.secs
    n = 0
    while time.monotonic() < end:
        s.rpc(f'<get><filter type="subtree"><dhcp-server xmlns="{DHCPS_NS}"/></filter></get>', "whole table")
        n += 1
    fig("getloop-gets", n, "gets")
    s.close()
    client_cpu(a)
    return 0


def kea_cmd(path: str, cmd: dict) -> tuple[dict, float]:
    t0 = time.perf_counter()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.connect(path)
        c.sendall(json.dumps(cmd).encode())
        buf = b""
        while True:
            try:
                return json.loads(buf), (time.perf_counter() - t0) * 1000
            except ValueError:
                pass
            d = c.recv(1 << 16)
            if not d:
                break
            buf += d
    return json.loads(buf), (time.perf_counter() - t0) * 1000


def kea(a) -> int:
    r, _ = kea_cmd(a.socket, {"command": "stat-lease4-get", "arguments": {"subnet-id": 1}})
    cols = r["arguments"]["result-set"]["columns"]
    row = r["arguments"]["result-set"]["rows"][0]
    used = row[cols.index("assigned-addresses")]
    fig("kea-leases-used", used, "leases")
    ips = keys_of(used, a.reps)
    by_ip, macs, missing = [], [], 0
    for ip in ips:
        r, ms = kea_cmd(a.socket, {"command": "lease4-get", "arguments": {"ip-address": ip}})
        by_ip.append(ms)
        if r.get("result") == 0:
            macs.append(r["arguments"]["hw-address"])
        else:
            missing += 1
    fig("kea-lease-by-ip-ms", median_ms(by_ip), "ms")
    fig("kea-lease-by-ip-missing", missing, "of-%d" % len(ips))
    by_mac = []
    for mac in macs:
        _, ms = kea_cmd(a.socket, {"command": "lease4-get", "arguments": {
            "identifier-type": "hw-address", "identifier": mac, "subnet-id": 1}})
        by_mac.append(ms)
    fig("kea-lease-by-mac-ms", median_ms(by_mac), "ms")
    stats = []
    for _ in range(a.reps):
        _, ms = kea_cmd(a.socket, {"command": "stat-lease4-get", "arguments": {"subnet-id": 1}})
        stats.append(ms)
    fig("kea-pool-statistics-ms", median_ms(stats), "ms")
    return 0


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["netconf", "getloop", "kea"])
    p.add_argument("--port", type=int, default=18830)
    p.add_argument("--key")
    p.add_argument("--pid", type=int)
    p.add_argument("--table-kb", type=int, default=0)
    p.add_argument("--reps", type=int, default=200)
    p.add_argument("--secs", type=float, default=10)
    p.add_argument("--socket")
    p.add_argument("--sched", help="netconf: perf sched record into this file during the whole-table <get>")
    p.add_argument("--sched-cpus", default="0,1")
    p.add_argument("--trace", help="netconf: append when each commit and the whole-table <get> ran to this file")
    p.add_argument("--openssh", action="store_true", help="getloop: read with OpenSSH's client")
    a = p.parse_args()
    return {"netconf": netconf, "getloop": getloop, "kea": kea}[a.mode](a)


if __name__ == "__main__":
    sys.exit(main())
