"""The Prometheus endpoint (issue 14, item 3): ``[metrics] listen`` in the
bootstrap file serves ``GET /metrics`` in the Prometheus text format.

- a real DHCP exchange (udhcpc in a namespace, as in test_dhcp.py) shows in
  the scrape: messages by type, the pool's usage, the ACK latency;
- a real Prometheus (Debian ``prometheus``, started by the test on
  loopback with its own storage) scrapes the daemon and answers a query for
  one of its series;
- a bad ``listen`` is refused by ``hotleased check`` and at boot, a busy
  port refuses the start, and only ``GET /metrics`` is served.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from conftest import HOTLEASED, config, free_port, group, vrrp
from test_dhcp import NsDaemon, Topo, dhcp, ns_socket, pool, set_mac, udhcpc

SERIES = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


def parse(text: str) -> dict[tuple[str, frozenset], float]:
    """{(name, frozenset of (label, value)): value} of an exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SERIES.match(line)
        assert m, f"not a sample line: {line!r}"
        labels = frozenset(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def value(samples, name: str, **labels) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def http(sock: socket.socket, request: bytes) -> tuple[int, dict, str]:
    """Send one HTTP/1.1 request on *sock*; (status, headers, body) of the
    reply (the server closes after it)."""
    with sock:
        sock.settimeout(10)
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body.decode()


def get(sock: socket.socket, path: str = "/metrics") -> tuple[int, dict, str]:
    return http(sock, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n".encode())


def wait_for(pred, timeout: float, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(step)


# ---------------------------------------------------------------- DHCP


needs_ns = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(c) for c in ("ip", "udhcpc")),
    reason="network namespaces (root), ip and udhcpc are needed (netconf-tests/run.sh installs them)",
)


@pytest.fixture
def topo(tmp_path):
    t = Topo(tmp_path)
    yield t
    t.close()


@needs_ns
@pytest.mark.vrrp
def test_a_dhcp_exchange_is_counted_in_the_scrape(topo, creds, tmp_path, request):
    from conftest import _finish

    mport = 9417
    d = NsDaemon(topo.S, tmp_path / "d", creds, vrrp=True,
                 extra_toml=f'[metrics]\nlisten = "127.0.0.1:{mport}"\n')
    try:
        d.start()
        scrape = lambda: get(ns_socket(topo.S, "127.0.0.1", mport, 5))  # noqa: E731
        status, headers, body = scrape()
        assert status == 200, body
        assert headers["content-type"].startswith("text/plain; version=0.0.4"), headers
        before = parse(body)
        assert value(before, "hotlease_dhcp_sent_messages_total", type="ack") == 0
        assert value(before, "hotlease_dhcp_ack_latency_seconds_count") == 0

        m = d.connect()
        # a VRRP group alone on its link, too: it becomes master
        m.edit_config(target="candidate", config=config(
            dhcp(pool("lan", "10.77.0.1", sections=[("10.77.0.10", "10.77.0.20")], lease=600)),
            vrrp(group("lan", 9, vips=("10.77.0.254",), advertise_interval=100)),
        ))
        m.commit()
        set_mac(topo, topo.C, "lan", "02:00:00:00:0e:01")
        r = udhcpc(topo, topo.C, "lan", topo.tmp / "udhcpc.log")
        assert "lease of 10.77.0.10 obtained" in r.stderr, r.stderr

        def counted():
            s = parse(scrape()[2])
            return s if value(s, "hotlease_dhcp_pool_addresses_used", pool="lan") == 1 else None

        after = wait_for(counted, 10)
        assert after, scrape()[2]
        assert value(after, "hotlease_dhcp_received_messages_total", type="discover") >= 1
        assert value(after, "hotlease_dhcp_received_messages_total", type="request") >= 1
        assert value(after, "hotlease_dhcp_sent_messages_total", type="offer") >= 1
        assert value(after, "hotlease_dhcp_sent_messages_total", type="ack") >= 1
        assert value(after, "hotlease_dhcp_packets_received_total") >= 2
        assert value(after, "hotlease_dhcp_pool_addresses_total", pool="lan") == 11
        assert value(after, "hotlease_dhcp_pool_addresses_free", pool="lan") == 10
        # the ACK waited for the lease-log sync: one observation, a real sum
        assert value(after, "hotlease_dhcp_ack_latency_seconds_count") >= 1
        assert value(after, "hotlease_dhcp_ack_latency_seconds_sum") > 0
        assert value(after, "hotlease_dhcp_ack_latency_seconds_bucket", le="+Inf") >= 1
        assert value(after, "hotlease_dhcp_dropped_requests_total", reason="no-pool") == 0
        # the commit that configured the pool
        assert value(after, "hotlease_netconf_rpcs_total", operation="commit") >= 1
        assert value(after, "hotlease_netconf_commit_duration_seconds_count") >= 1
        assert value(after, "hotlease_netconf_sessions") == 1

        def master():
            s = parse(scrape()[2])
            return s if value(s, "hotlease_vrrp_state", interface="lan", group="9", state="master") == 1 else None

        vr = wait_for(master, 10)
        assert vr, scrape()[2]
        assert value(vr, "hotlease_vrrp_state", interface="lan", group="9", state="backup") == 0
        assert value(vr, "hotlease_vrrp_master_transitions_total", interface="lan", group="9") == 1
    finally:
        _finish(request, [d])


# ---------------------------------------------------------------- Prometheus


@pytest.mark.skipif(not shutil.which("prometheus"), reason="prometheus is needed (netconf-tests/run.sh installs it)")
def test_a_real_prometheus_scrapes_hotleased(daemon_factory, tmp_path):
    mport, pport = free_port(), free_port()
    d = daemon_factory(extra_toml=f'[metrics]\nlisten = "127.0.0.1:{mport}"\n')
    d.connect().get_config(source="running")
    conf = tmp_path / "prometheus.yml"
    conf.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: hotleased\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{mport}']\n"
    )
    log = open(tmp_path / "prometheus.log", "wb")
    p = subprocess.Popen(
        ["prometheus", f"--config.file={conf}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{pport}"],
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
    )
    api = f"http://127.0.0.1:{pport}/api/v1"

    def query(q: str):
        try:
            with urllib.request.urlopen(f"{api}/query?query={urllib.parse.quote(q)}", timeout=5) as r:
                return json.load(r)["data"]["result"]
        except OSError:
            return None

    try:
        q = 'hotlease_netconf_rpcs_total{job="hotleased",operation="get-config"}'
        got = wait_for(lambda: query(q), 60, 0.5)
        assert got, (tmp_path / "prometheus.log").read_text()[-3000:]
        assert float(got[0]["value"][1]) >= 1
        assert got[0]["metric"]["instance"] == f"127.0.0.1:{mport}"
        with urllib.request.urlopen(f"{api}/targets", timeout=5) as r:
            targets = json.load(r)["data"]["activeTargets"]
        assert [(t["labels"]["job"], t["health"]) for t in targets] == [("hotleased", "up")], targets
        # the histogram arrives whole: a quantile over it is a number
        lat = wait_for(lambda: query("hotlease_dhcp_ack_latency_seconds_bucket"), 10, 0.5)
        assert lat and any(s["metric"]["le"] == "+Inf" for s in lat), lat
        # the Grafana dashboard: every expression is PromQL this Prometheus
        # accepts, and names only metrics the daemon exposes
        exposed = {
            line.split()[2]
            for line in get(socket.create_connection(("127.0.0.1", mport), timeout=5))[2].splitlines()
            if line.startswith("# TYPE ")
        }
        for expr in dashboard_exprs():
            q = expr.replace("$instance", ".*").replace("$__rate_interval", "1m")
            with urllib.request.urlopen(f"{api}/query?query={urllib.parse.quote(q)}", timeout=5) as r:
                assert json.load(r)["status"] == "success", q
            for name in re.findall(r"\bhotlease_[a-z_]+", expr):
                base = re.sub(r"_(bucket|count|sum)$", "", name)
                assert name in exposed or base in exposed, f"{name} of the dashboard is not exposed"
    finally:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
        log.close()


DASHBOARD = Path(__file__).resolve().parent.parent / "packaging" / "grafana-hotlease.json"


def dashboard_exprs() -> list[str]:
    d = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in d["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"].removeprefix("label_values(").split(",")[0]
              for v in d["templating"]["list"] if v["type"] == "query"]
    assert len(exprs) > 10
    return exprs


# ---------------------------------------------------------------- refusals


def test_a_bad_listen_is_refused_by_check_and_at_boot(daemon_factory):
    d = daemon_factory(start=False, extra_toml='[metrics]\nlisten = "localhost:9417"\n')
    for args in (["check", "--config", str(d.config)], ["--config", str(d.config)]):
        r = subprocess.run([HOTLEASED, *args], capture_output=True, text=True, timeout=30)
        assert r.returncode == 78, r  # EX_CONFIG: systemd does not restart it
        assert '[metrics] listen must be an IP address and a port' in r.stderr + r.stdout, r
        assert 'got "localhost:9417"' in r.stderr + r.stdout, r
    ok = daemon_factory(start=False, extra_toml=f'[metrics]\nlisten = "127.0.0.1:{free_port()}"\n')
    r = subprocess.run([HOTLEASED, "check", "--config", str(ok.config)], capture_output=True, text=True, timeout=30)
    assert "[metrics]" not in r.stdout + r.stderr, r


def test_a_busy_metrics_port_refuses_the_start(daemon_factory):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        d = daemon_factory(start=False, extra_toml=f'[metrics]\nlisten = "127.0.0.1:{port}"\n')
        r = subprocess.run([HOTLEASED, "--config", str(d.config)], capture_output=True, text=True, timeout=30)
        assert r.returncode == 1, r
        assert f"[metrics] listen 127.0.0.1:{port}" in r.stderr and "in use" in r.stderr, r.stderr


def test_only_get_metrics_is_served(daemon_factory):
    port = free_port()
    daemon_factory(extra_toml=f'[metrics]\nlisten = "127.0.0.1:{port}"\n')
    conn = lambda: socket.create_connection(("127.0.0.1", port), timeout=5)  # noqa: E731
    assert get(conn(), "/")[0] == 404
    assert http(conn(), b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")[0] == 405
    status, _, body = get(conn(), "/metrics?x=1")
    assert status == 200 and "hotlease_netconf_sessions " in body, body
    # Prometheus's own linter (names, suffixes, help texts) finds nothing
    if shutil.which("promtool"):
        r = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), r
    # a client that sends a request head without end is cut off, not served
    status, _, _ = http(conn(), b"GET /metrics HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 9000 + b"\r\n")
    assert status == 431


# ---------------------------------------------------------------- hot backup


@needs_ns
@pytest.mark.vrrp
def test_the_hot_backup_pair_in_the_scrape(creds, tmp_path, request):
    """Both routers of the hot-backup lab (hblab.py) scraped: A master and
    B backup, the channel connected on both, A's lease update sent and
    acknowledged, nothing unsent, and A's ACK latency observed (it waited
    for B's acknowledgement)."""
    from hblab import Udhcpc, running_pair
    from test_hot_backup import up

    mport = 9417

    def with_metrics(routers):
        for r in routers:
            r.d.extra_toml = f'[metrics]\nlisten = "127.0.0.1:{mport}"\n'
            r.d.write_config()

    with running_pair(creds, tmp_path, request, with_metrics, clients=1) as (lab, a, b):
        up(a, b)
        scrape = lambda r: parse(get(ns_socket(r.ns, "127.0.0.1", mport, 5))[2])  # noqa: E731
        bound = Udhcpc(lab, 0, tmp_path / "c0.log").once()
        assert bound["ip"].startswith("10.77.0."), bound

        def settled():
            sa = scrape(a)
            done = (value(sa, "hotlease_backup_records_acknowledged_total", service="rbs1") or 0) >= 1
            return sa if done and value(sa, "hotlease_backup_records_unsent", service="rbs1") == 0 else None

        sa = wait_for(settled, 10)
        assert sa, get(ns_socket(a.ns, "127.0.0.1", mport, 5))[2]
        sb = scrape(b)
        vrrp = dict(interface="eth0", group="51")
        assert value(sa, "hotlease_vrrp_state", state="master", **vrrp) == 1
        assert value(sb, "hotlease_vrrp_state", state="backup", **vrrp) == 1
        for s in (sa, sb):
            assert value(s, "hotlease_backup_channel_state", service="rbs1", state="connected") == 1
            assert value(s, "hotlease_backup_channel_state", service="rbs1", state="down") == 0
        assert value(sa, "hotlease_backup_records_sent_total", service="rbs1") >= 1
        count = value(sa, "hotlease_dhcp_ack_latency_seconds_count")
        assert count >= 1
        mean_ms = 1000 * value(sa, "hotlease_dhcp_ack_latency_seconds_sum") / count
        print(f"A's ACK latency with hot backup: {count:.0f} ACKs, mean {mean_ms:.2f} ms")
        # B serves nothing while A is master: its ACK histogram is empty
        assert value(sb, "hotlease_dhcp_ack_latency_seconds_count") == 0
        assert value(sb, "hotlease_dhcp_sent_messages_total", type="ack") == 0
