#!/usr/bin/env python3
"""DHCP rate of hotleased with 1,000 subscribed NETCONF sessions and one
stalled subscriber, against the same daemon with no subscriber, in one run
(issue 12: "the daemon's DHCP rate unchanged (±5 %) with 1,000 subscribers
and a stalled one").

    sudo bench/netconf/dhcp_subscribers.py [--hotleased target/release/hotleased]
        [--subscribers 1000] [--rate 6000] [--period 10] [--budget 25]
        [--events 5] [--rounds 2]

Topology as bench/dhcp/run.sh: perfdhcp in relay mode (giaddr 10.200.0.2,
60,000 distinct clients) in namespace C, hotleased in namespace S with one
/16 pool; both namespaces and the cgroup are removed on exit, also on
failure. hotleased runs on CPU 0 in a cpu cgroup with a CFS quota of
--budget % of one core (cgroup v1 cpu.cfs_quota_us or v2 cpu.max, CFS
period 10 ms; "full": no quota), as a router's control plane gives its DHCP server a share of a CPU;
its NETCONF sessions and notification fan-out share that budget with DHCP,
which is what this measures. perfdhcp runs on CPU 1. The offered --rate is
above what the server completes within its budget, so the achieved 4-way
rate is the server's rate under that load.

Every measured period has the same notification load: a NETCONF session
commits a VRRP priority change --events times a second (one
netconf-config-change each); the VRRP runtime is off, the commit is only
configuration. Two kinds of period alternate, --rounds times:

  none  no subscriber: the events go nowhere;
  subs  --subscribers - 1 sessions subscribed to netconf-config-change (in
        a second process, stopped with SIGSTOP while measuring, as in
        notifications.py: their SSH windows hold the notifications sent,
        and 999 paramiko threads would otherwise take the CPUs), plus one
        stalled subscriber: a 16 KiB SSH window, subscribed to everything,
        never reading. Before the period its queue is filled (600
        netconf-confirmed-commit events from confirmed commits without
        changes, which the 999 do not select), so it overflows, the daemon
        cannot tell it (its window is full) and closes it
        notify::NOTICE_GRACE (10 s) later; the counters from the metrics
        endpoint, and whether that close came before the period, are
        printed.

Before every period the script waits until the daemon is idle (the 999
sessions' work on the burst done); the time is printed (settle_s).

Prints one line per period (with its start time, and whether another DHCP
benchmark, a kea-dhcp4 or a second perfdhcp, ran during it on this shared
machine), the mean rate of each kind, the ratio subs / none (over every
period, and over the undisturbed ones) and the load average before and
after. A benchmark, not a test: it
never fails on a miss. Needs python3 with paramiko (bench/.venv or the
test venv), perfdhcp (kea-admin), iproute2, root.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import paramiko

sys.path.insert(0, str(Path(__file__).resolve().parent))
from notifications import BASE_NS, EOM, NOTIF_NS, PASSWORD, Session, in_netns, sh  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
NCN = "urn:ietf:params:xml:ns:yang:ietf-netconf-notifications"
VRRP_NS = "urn:hotlease:yang:vrrp"
PORT = 18830
METRICS = 19417


def connect(ns: str) -> socket.socket:
    return in_netns(ns, lambda: socket.create_connection(("127.0.0.1", PORT), timeout=60))


def subscribe(s: Session, select: str = ""):
    f = f'<filter type="subtree">{select}</filter>' if select else ""
    s.rpc(f'<create-subscription xmlns="{NOTIF_NS}">{f}</create-subscription>')


def hold(ns: str, n: int) -> int:
    """Open *n* sessions subscribed to netconf-config-change, say ready,
    keep them until stdin closes."""
    from concurrent.futures import ThreadPoolExecutor

    def subscriber(_):
        s = Session(connect(ns))
        subscribe(s, f'<netconf-config-change xmlns="{NCN}"/>')
        return s

    with ThreadPoolExecutor(16) as pool:
        held = list(pool.map(subscriber, range(n)))
    print("ready", flush=True)
    sys.stdin.read()
    for s in held:
        s.close()
    return 0


class Stalled:
    """A subscriber that never reads: 16 KiB SSH window, base:1.0."""

    def __init__(self, ns: str):
        self.t = paramiko.Transport(connect(ns))
        self.t.connect(username="admin", password=PASSWORD)
        ch = self.t.open_session(window_size=16384, max_packet_size=16384)
        ch.settimeout(30)
        ch.invoke_subsystem("netconf")
        buf = b""
        while EOM not in buf:
            buf += ch.recv(65536)
        ch.sendall(
            f'<hello xmlns="{BASE_NS}"><capabilities><capability>urn:ietf:params:netconf:base:1.0'
            f"</capability></capabilities></hello>".encode() + EOM
            + f'<rpc message-id="1" xmlns="{BASE_NS}"><create-subscription xmlns="{NOTIF_NS}"/></rpc>'.encode()
            + EOM
        )
        buf = buf.split(EOM, 1)[1]
        while EOM not in buf:
            buf += ch.recv(65536)
        if b"<ok/>" not in buf:
            raise RuntimeError(f"stalled subscriber not subscribed: {buf[:300]!r}")
        # from here on nothing is read

    def close(self):
        self.t.close()


def commit_priority(ctl: Session, i: int):
    ctl.rpc(
        f'<edit-config><target><candidate/></target><config><vrrp xmlns="{VRRP_NS}"><group>'
        f"<interface>eth0</interface><vrid>1</vrid><virtual-ip>192.0.2.1</virtual-ip>"
        f"<priority>{1 + i % 200}</priority></group></vrrp></config></edit-config>"
    )
    ctl.rpc("<commit/>")


def perfdhcp(c: str, rate: int, clients: int, period: int) -> dict:
    r = subprocess.run(
        ["ip", "netns", "exec", c, "taskset", "-c", "1", "perfdhcp", "-4", "-l", "10.200.0.2",
         "-r", str(rate), "-R", str(clients), "-p", str(period), "-d", "2", "-W", "500000", "10.200.0.1"],
        capture_output=True, text=True, timeout=period + 60,
    )
    out = r.stdout + r.stderr
    m = re.findall(r"^Rate: ([0-9.]+) 4-way exchanges", out, re.M)
    res = {"rate": float(m[-1]) if m else 0.0}
    # per exchange: "Statistics for: DISCOVER-OFFER" then "drops ratio: x %", "avg delay: y ms"
    for sec in ("DISCOVER-OFFER", "REQUEST-ACK"):
        part = out.split(f"Statistics for: {sec}", 1)[-1] if f"Statistics for: {sec}" in out else ""
        d = re.search(r"drops ratio: *([0-9.]+)", part)
        a = re.search(r"avg delay: *([0-9.]+)", part)
        res[sec] = (float(d.group(1)) if d else float("nan"), float(a.group(1)) if a else float("nan"))
    return res


def foreign_dhcp_load() -> bool:
    """Another DHCP benchmark on this shared machine: a kea-dhcp4, or a
    second perfdhcp beside ours (they take the same CPUs)."""
    names = [p.read_text().strip() for p in Path("/proc").glob("[0-9]*/comm") if p.exists()]
    return "kea-dhcp4" in names or names.count("perfdhcp") > 1


def measure(ctl: Session, c: str, args, pid: int, dhcp: bool = True) -> dict:
    """One period: perfdhcp, and the commits paced at --events/s; the
    daemon's CPU use over it (% of one core), when it started, and whether
    another DHCP benchmark ran meanwhile (sampled twice a second)."""
    stop = threading.Event()
    done = [0]
    seen = [0]

    def watch():
        while not stop.wait(0.5):
            try:
                seen[0] += foreign_dhcp_load()
            except OSError:
                pass

    def events():
        t0 = time.monotonic()
        while not stop.is_set():
            commit_priority(ctl, done[0])
            done[0] += 1
            wait = t0 + done[0] / args.events - time.monotonic()
            if wait > 0:
                stop.wait(wait)

    t = threading.Thread(target=events) if args.events > 0 else None
    if t:
        t.start()
    w = threading.Thread(target=watch)
    w.start()
    started = time.strftime("%H:%M:%S", time.gmtime())
    c0, t0 = cpu_ticks(pid), time.monotonic()
    try:
        if dhcp:
            res = perfdhcp(c, args.rate, args.clients, args.period)
        else:
            time.sleep(args.period)
            res = {"rate": float("nan"), "DISCOVER-OFFER": (float("nan"),) * 2, "REQUEST-ACK": (float("nan"),) * 2}
    finally:
        stop.set()
        if t:
            t.join(60)
        w.join(5)
    res["started"] = started
    res["foreign"] = seen[0] > 0
    res["cpu_pct"] = (cpu_ticks(pid) - c0) / os.sysconf("SC_CLK_TCK") * 100 / (time.monotonic() - t0)
    res["events"] = done[0]
    return res


def policies(pid: int) -> str:
    """The daemon's threads by scheduling policy: "SCHED_RR 5: dhcp, ..."
    (the DHCP threads run SCHED_RR unless the cgroup or the bootstrap
    file refuses it)."""
    names = {0: "SCHED_OTHER", 1: "SCHED_FIFO", 2: "SCHED_RR", 3: "SCHED_BATCH", 5: "SCHED_IDLE"}
    by: dict[str, list[str]] = {}
    for t in sorted(Path(f"/proc/{pid}/task").iterdir()):
        try:
            comm = (t / "comm").read_text().strip()
            f = (t / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields 40 and 41 of stat(5): rt_priority, policy (after the comm: index - 3)
        policy, prio = int(f[38]), int(f[37])
        key = names.get(policy, str(policy)) + (f" {prio}" if policy in (1, 2) else "")
        by.setdefault(key, []).append(comm)
    return "; ".join(f"{k}: {', '.join(sorted(set(v)))}" for k, v in sorted(by.items()))


def rt_note(cg: Path, no_realtime: bool) -> str:
    if no_realtime:
        return "; [dhcp] realtime-priority = 0"
    rt = cg / "cpu.rt_runtime_us"
    if rt.exists():
        return f"; real-time runtime {rt.read_text().strip()} µs per {(cg / 'cpu.rt_period_us').read_text().strip()} µs"
    return "; real-time threads not limited by the group (no RT group scheduling)"


def cpu_ticks(pid: int) -> int:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])


def settle(pid: int, limit: float = 60) -> float:
    """Wait (bounded) until the daemon is idle: under 4 % of a CPU for
    half a second (the work an event burst queued is done); seconds
    waited."""
    t0 = time.monotonic()
    hz = os.sysconf("SC_CLK_TCK")
    last = cpu_ticks(pid)
    while time.monotonic() - t0 < limit:
        time.sleep(0.5)
        now = cpu_ticks(pid)
        if (now - last) / hz < 0.02:
            break
        last = now
    return time.monotonic() - t0


def scrape(s: str) -> dict:
    def get():
        return urllib.request.urlopen(f"http://127.0.0.1:{METRICS}/metrics", timeout=10).read().decode()

    out = {}
    for line in in_netns(s, get).splitlines():
        if line.startswith("hotlease_netconf_sub"):
            k, _, v = line.partition(" ")
            out[k] = int(float(v))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hotleased", default=str(ROOT / "target" / "release" / "hotleased"))
    ap.add_argument("--subscribers", type=int, default=1000)
    ap.add_argument("--rate", type=int, default=6000, help="offered DISCOVERs/s (above the server's rate)")
    ap.add_argument("--clients", type=int, default=60000)
    ap.add_argument("--period", type=int, default=10, help="seconds per measured period")
    ap.add_argument("--budget", default="25", help='CPU quota of the server, % of one core, or "full"')
    ap.add_argument("--events", type=float, default=5, help="config changes per second while measuring")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--no-realtime", action="store_true",
                    help="[dhcp] realtime-priority = 0: the DHCP threads share the CFS budget with the "
                         "NETCONF sessions and the fan-out (not the shipped default)")
    ap.add_argument("--hold", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--netns", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.hold is not None:
        return hold(args.netns, args.hold)
    if os.geteuid() != 0:
        print("run as root (network namespaces, cgroup)", file=sys.stderr)
        return 2
    # cgroup v1 cpu controller, or v2 with cpu (as bench/dhcp/run.sh)
    if os.access("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", os.W_OK):
        cg_ver, cg = 1, Path(f"/sys/fs/cgroup/cpu/hotlease-bench-{os.getpid()}")
    elif "cpu" in Path("/sys/fs/cgroup/cgroup.controllers").read_text().split() \
            if Path("/sys/fs/cgroup/cgroup.controllers").exists() else False:
        cg_ver, cg = 2, Path(f"/sys/fs/cgroup/hotlease-bench-{os.getpid()}")
    else:
        print("no cgroup cpu controller (v1 /sys/fs/cgroup/cpu or v2 with cpu)", file=sys.stderr)
        return 2
    tag = f"ds{os.getpid() % 100000}"
    s, c = f"{tag}s", f"{tag}c"
    tmp = Path(tempfile.mkdtemp(prefix="hl-dhcp-subs-"))
    proc = holder = stalled = None
    sessions: list[Session] = []
    load0 = Path("/proc/loadavg").read_text().split()[:3]
    try:
        sh("ip", "netns", "add", s)
        sh("ip", "netns", "add", c)
        for ns in (s, c):
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", s, "link", "add", "srv", "type", "veth", "peer", "name", "rly", "netns", c)
        sh("ip", "-n", s, "addr", "add", "10.200.0.1/16", "dev", "srv")
        sh("ip", "-n", c, "addr", "add", "10.200.0.2/16", "dev", "rly")
        sh("ip", "-n", s, "link", "set", "srv", "up")
        sh("ip", "-n", c, "link", "set", "rly", "up")
        if cg_ver == 2 and "cpu" not in Path("/sys/fs/cgroup/cgroup.subtree_control").read_text().split():
            Path("/sys/fs/cgroup/cgroup.subtree_control").write_text("+cpu")
        cg.mkdir()
        quota = -1 if args.budget == "full" else int(float(args.budget) * 100)
        if cg_ver == 1:
            (cg / "cpu.cfs_period_us").write_text("10000")
            (cg / "cpu.cfs_quota_us").write_text(str(quota))
            # With RT group scheduling (CONFIG_RT_GROUP_SCHED) a new group
            # has no real-time runtime, so the DHCP threads' SCHED_RR (the
            # shipped default, [dhcp] realtime-priority 5) is refused and
            # they run under CFS: give the group the same share of real-time
            # time as of CFS time, so that the daemon runs as shipped.
            if not args.no_realtime and (cg / "cpu.rt_runtime_us").exists():
                (cg / "cpu.rt_period_us").write_text("10000")
                (cg / "cpu.rt_runtime_us").write_text(str(9500 if quota < 0 else quota))
        else:
            (cg / "cpu.max").write_text(f"{'max' if quota < 0 else quota} 10000")
        hashed = subprocess.run([args.hotleased, "hash-password"], input=PASSWORD.encode(),
                                capture_output=True, check=True).stdout.decode().strip()
        n = args.subscribers + 20
        (tmp / "storage").mkdir(mode=0o700)
        (tmp / "storage" / "startup.xml").write_text(
            '<dhcp-server xmlns="urn:hotlease:yang:dhcp-server"><interface><name>srv</name></interface>'
            "<ip-pool><name>bench</name><gateway>10.200.0.1</gateway><mask>255.255.0.0</mask>"
            "<section><start>10.200.1.0</start><end>10.200.255.254</end></section>"
            "<dns-server>10.200.0.53</dns-server><domain-name>bench.test</domain-name></ip-pool></dhcp-server>"
        )
        (tmp / "hotleased.toml").write_text(
            f'[netconf]\nlisten = "127.0.0.1:{PORT}"\nhost-key = "{tmp}/key"\nrecovery-user = "admin"\n'
            f"max-connections = {n}\nmax-per-source = {n}\nmax-unauthenticated = {n}\n"
            f"max-sessions = {n}\nmax-sessions-per-user = {n}\n"
            # the held sessions are stopped while measuring: no keepalive
            "keepalive-interval = 0\n"
            f'[[netconf.user]]\nname = "admin"\npassword-hash = "{hashed}"\n'
            f'[storage]\ndir = "{tmp}/storage"\n[vrrp]\nenabled = false\n'
            f'[metrics]\nlisten = "127.0.0.1:{METRICS}"\n'
            + ("[dhcp]\nrealtime-priority = 0\n" if args.no_realtime else "")
        )
        log = open(tmp / "hotleased.stderr", "wb")
        proc = subprocess.Popen(
            ["sh", "-c", 'echo $$ >"$0/cgroup.procs" && exec "$@"', str(cg),
             "ip", "netns", "exec", s, "taskset", "-c", "0", args.hotleased, "--config", str(tmp / "hotleased.toml")],
            stderr=log, stdout=subprocess.DEVNULL, env={**os.environ, "HOTLEASE_LOG": "warn"},
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                ctl = Session(connect(s))
                break
            except (OSError, paramiko.SSHException, EOFError):
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.3)
        sessions.append(ctl)
        # the group the events change, once
        commit_priority(ctl, 0)
        dhcp_policy = policies(proc.pid)
        rows = []
        for rnd in range(1, args.rounds + 1):
            settled = settle(proc.pid)
            rows.append(("none", rnd, measure(ctl, c, args, proc.pid), {}))
            rows[-1][2]["settle_s"] = round(settled, 1)
            # the events alone: the daemon's CPU for them without DHCP
            settled = settle(proc.pid)
            rows.append(("none-", rnd, measure(ctl, c, args, proc.pid, dhcp=False), {}))
            rows[-1][2]["settle_s"] = round(settled, 1)
            print(f"none round {rnd}: {rows[-1][2]}", file=sys.stderr, flush=True)
            t0 = time.monotonic()
            holder = subprocess.Popen(
                [sys.executable, __file__, "--hold", str(args.subscribers - 1), "--netns", s],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            )
            ready = holder.stdout.readline()
            if ready.strip() != b"ready":
                raise RuntimeError(f"subscribers not ready: {ready!r}")
            opened = time.monotonic() - t0
            holder.send_signal(signal.SIGSTOP)
            stalled = Stalled(s)
            # fill the stalled session's window and queue (512) with events
            # the 999 do not select
            pre = scrape(s)
            for _ in range(300):
                ctl.rpc("<commit><confirmed/></commit>")
                ctl.rpc("<commit/>")
            # the 999 sessions each looked at the 600 events (and dropped
            # them: their filter): let that work finish first
            settled = settle(proc.pid)
            before = scrape(s)
            res = measure(ctl, c, args, proc.pid)
            res["settle_s"] = round(settled, 1)
            # the stalled one is closed NOTICE_GRACE (10 s) after its
            # overflow: wait for it (bounded), outside the measured period
            deadline = time.monotonic() + 25
            while True:
                after = scrape(s)
                closed = after.get("hotlease_netconf_subscribers_closed_total", 0)
                if closed > before.get("hotlease_netconf_subscribers_closed_total", 0) or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            res["opened_s"] = round(opened, 1)
            closed = "hotlease_netconf_subscribers_closed_total"
            res["stalled"] = ("closed before the period" if before.get(closed, 0) > pre.get(closed, 0)
                              else "closed during or after the period" if after.get(closed, 0) > pre.get(closed, 0)
                              else "not closed")
            rows.append(("subs", rnd, res, {k: after.get(k, 0) - pre.get(k, 0) for k in after}))
            print(f"subs round {rnd}: {res} {rows[-1][3]}", file=sys.stderr, flush=True)
            # the events alone: the fan-out's CPU without DHCP
            settled = settle(proc.pid)
            rows.append(("subs-", rnd, measure(ctl, c, args, proc.pid, dhcp=False), {}))
            rows[-1][2]["settle_s"] = round(settled, 1)
            holder.send_signal(signal.SIGCONT)
            holder.stdin.close()
            holder.wait(120)
            holder = None
            stalled.close()
            stalled = None
        load1 = Path("/proc/loadavg").read_text().split()[:3]
        final = scrape(s)
        print("# kinds: none / subs with perfdhcp; none- / subs- the same events without DHCP (daemon CPU only)")
        print(f"# hotleased {args.hotleased}; budget {args.budget} % of CPU 0 (cgroup v{cg_ver}, CFS period 10 ms"
              f"{rt_note(cg, args.no_realtime)}); "
              f"perfdhcp -r {args.rate} -R {args.clients} -p {args.period} on CPU 1; "
              f"{args.events:g} config changes/s in every period; {args.subscribers - 1} held subscribers + 1 stalled")
        print(f"# scheduling of the daemon's threads: {dhcp_policy}")
        print("period round  start_utc  foreign_dhcp  rate_4way/s  drops_D-O_%  drops_R-A_%  ack_avg_ms  daemon_cpu_%  events  settle_s  stalled_closed  overflowed")
        for kind, rnd, r, d in rows:
            print(f"{kind:6s} {rnd:5d}  {r['started']}  {'YES' if r['foreign'] else 'no':>12}  {r['rate']:11.1f}  {r['DISCOVER-OFFER'][0]:11.2f}  {r['REQUEST-ACK'][0]:11.2f}"
                  f"  {r['REQUEST-ACK'][1]:10.3f}  {r['cpu_pct']:12.1f}  {r['events']:6d}  {r['settle_s']:8.1f}  "
                  f"{d.get('hotlease_netconf_subscribers_closed_total', '-')!s:>14}  "
                  f"{d.get('hotlease_netconf_subscriptions_overflowed_total', '-')!s:>10}  {r.get('stalled', '')}")
        def summary(label, keep):
            none = [r["rate"] for k, _, r, _ in rows if k == "none" and keep(r)]
            subs = [r["rate"] for k, _, r, _ in rows if k == "subs" and keep(r)]
            if not none or not subs:
                print(f"{label}: not enough periods")
                return
            ratio = statistics.mean(subs) / statistics.mean(none)
            verdict = "PASS" if abs(ratio - 1) <= 0.05 else "MISS"
            print(f"{label}: none {statistics.mean(none):.1f}/s ({len(none)}), subs {statistics.mean(subs):.1f}/s "
                  f"({len(subs)}); ratio subs/none {ratio:.3f} -> {verdict} (target ±5 %)")

        for kind in ("none-", "subs-"):
            cpu = [r["cpu_pct"] for k, _, r, _ in rows if k == kind]
            print(f"daemon CPU with the events alone ({kind[:-1]}, no DHCP): {statistics.mean(cpu):.1f} % of a core "
                  f"(periods: {', '.join(f'{x:.1f}' for x in cpu)})")
        summary("mean rate, every period", lambda r: True)
        summary("mean rate, periods without another DHCP benchmark", lambda r: not r["foreign"])
        print(f"# load average before {' '.join(load0)}, after {' '.join(load1)}; daemon alive: {proc.poll() is None}; "
              f"counters at the end: {final}")
        return 0
    finally:
        if holder is not None and holder.poll() is None:
            holder.send_signal(signal.SIGCONT)
            holder.kill()
        if stalled is not None:
            stalled.close()
        for x in sessions:
            try:
                x.close()
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        for ns in (s, c):
            for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
                try:
                    os.kill(int(pid), 9)
                except (ProcessLookupError, ValueError):
                    pass
            sh("ip", "netns", "del", ns, check=False)
        if cg.exists():
            for _ in range(20):
                try:
                    cg.rmdir()
                    break
                except OSError:
                    time.sleep(0.25)
        if os.environ.get("KEEP"):
            print(f"# kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
