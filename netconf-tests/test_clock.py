"""A step of the daemon's wall clock moves no lease (issue 15, the fault
campaign's clock+1h / clock-1h).

Lease expiries are absolute times. Before the lease clock (src/dhcp/clock.rs)
a step of the wall clock moved every lease at once: +1 h expired every lease
granted in the last hour (its address free for another client), -1 h made
every lease granted meanwhile run out an hour early once the clock was back.
Here the daemon runs under libfaketime (``FAKETIME_TIMESTAMP_FILE``, re-read
every second; ``FAKETIME_DONT_FAKE_MONOTONIC=1``: CLOCK_MONOTONIC untouched,
as a real step leaves it), udhcpc takes a lease of 600 s, and the daemon's
wall clock jumps +1 h, then -1 h, then back: the lease stays bound with the
same expiry throughout, each step is logged, and ``wall-clock-offset`` shows
the step while it lasts. And a step that stays across a restart: the lease
log records it, and the next start (whose lease clock is the stepped wall
clock) moves the lease by it, so it still runs out when it was granted to.
"""

import os
import subprocess
import time
from datetime import datetime

import pytest

from conftest import DHCPS_NS, _finish
from test_dhcp import NsDaemon, commit, dhcp, pool, set_mac, settled, state, topo, udhcpc, wait_for  # noqa: F401 (fixture)


def libfaketime() -> str | None:
    r = subprocess.run(["dpkg", "-L", "libfaketime"], capture_output=True, text=True)
    return next((p for p in r.stdout.split() if p.endswith("/libfaketimeMT.so.1")), None)


LIB = libfaketime()
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces: needs root"),
    pytest.mark.skipif(LIB is None, reason="libfaketime (package faketime) not installed"),
]


def faked(d_tmp, creds, topo, clock):
    wrap = ["env", f"LD_PRELOAD={LIB}", f"FAKETIME_TIMESTAMP_FILE={clock}",
            "FAKETIME_CACHE_DURATION=1", "FAKETIME_DONT_FAKE_MONOTONIC=1"]
    return NsDaemon(topo.S, d_tmp, creds, wrap=wrap)


def granted_lease(m, topo):
    commit(m, dhcp(pool("lan", "10.77.0.1", sections=[("10.77.0.10", "10.77.0.20")], lease=600)))
    m.copy_config(source="running", target="startup")
    set_mac(topo, topo.C, "lan", "02:00:00:00:0c:01")
    r = udhcpc(topo, topo.C, "lan", topo.tmp / "a.log")
    assert "lease of 10.77.0.10 obtained" in r.stderr, r.stderr
    s = settled(m, lambda s: s["leases"].get("10.77.0.10", {}).get("state") == "bound")
    granted = s["leases"]["10.77.0.10"]
    assert granted["state"] == "bound", granted
    return granted


def epoch(date_time: str) -> float:
    return datetime.fromisoformat(date_time.replace("Z", "+00:00")).timestamp()


def offset(m) -> int:
    data = m.get(filter=("subtree", f'<dhcp-server xmlns="{DHCPS_NS}"><wall-clock-offset/></dhcp-server>')).data_ele
    return int(data.findtext(f"{{{DHCPS_NS}}}dhcp-server/{{{DHCPS_NS}}}wall-clock-offset"))


def test_a_step_of_the_wall_clock_moves_no_lease(topo, creds, tmp_path, request):
    clock = tmp_path / "faketime"
    clock.write_text("+0\n")
    d = faked(tmp_path / "d0", creds, topo, clock)
    try:
        d.start()
        m = d.connect()
        assert offset(m) == 0
        granted = granted_lease(m, topo)

        for step, logged, want in (("+1h", 1, 3600), ("-1h", 2, -3600), ("+0", 3, 0)):
            clock.write_text(step + "\n")
            # faketime re-reads the file within a second; the DHCP actor's
            # tick (every second) sees the step, logs it and runs its
            # expiry scan
            assert wait_for(lambda: abs(offset(m) - want) <= 1, 10), (step, offset(m))
            assert wait_for(lambda: d.stderr().count("the wall clock stepped") >= logged, 10), d.stderr()
            time.sleep(1.5)
            now = state(m)["leases"].get("10.77.0.10")
            assert now is not None, (step, state(m)["leases"])
            assert now["state"] == "bound", (step, now)
            assert now["expires"] == granted["expires"], (step, now, granted)
        assert "the wall clock stepped back in line with the lease clock" in d.stderr()
        assert "lease clock and wall clock differ until the daemon restarts" in d.stderr()
    finally:
        _finish(request, [d])


def test_a_step_that_stays_moves_the_stored_leases_at_the_restart(topo, creds, tmp_path, request):
    clock = tmp_path / "faketime"
    clock.write_text("+0\n")
    d = faked(tmp_path / "d0", creds, topo, clock)
    try:
        d.start()
        m = d.connect()
        granted = granted_lease(m, topo)
        clock.write_text("+1h\n")
        assert wait_for(lambda: "the wall clock stepped" in d.stderr(), 10), d.stderr()
        # the step's record is written with the next sync (the writer's
        # job loop ends in one)
        time.sleep(1.5)
        d.stop()
        d.start()
        m = d.connect()
        assert offset(m) == 0
        s = settled(m, lambda s: "10.77.0.10" in s["leases"])
        now = s["leases"].get("10.77.0.10")
        assert now is not None, s["leases"]
        assert now["state"] == "bound", now
        # the same moment, on the new lease clock (an hour ahead)
        assert epoch(now["expires"]) - epoch(granted["expires"]) == 3600, (now, granted)
        assert "lease log written while the wall clock was stepped" in d.stderr()
    finally:
        _finish(request, [d])
