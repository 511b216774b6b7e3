"""VRRP preemption held for the hot backup, black box: two hotleased in the
VRRP lab (test_vrrp.py).  B (priority 100) is master alone; A (priority
200, preempt, delay 0) comes up with a remote-backup-profile following its
group, and its remote-backup-service's peer never answers, so its batch
backup never completes.  A must not preempt B (it would lack the leases B
granted), must say why in its group state, and must still replace B within
the VRRP bound when B dies: a dead master is not preemption.

The release (batch backup complete -> A preempts) is driven by the sync
actor; tests/vrrp_actor.rs drives it through `PreemptHolds`.
"""

from __future__ import annotations

import shutil
import time

import pytest

from conftest import RBK_NS, config, group, vrrp
from test_vrrp import VIP, VRID, lab, rfc_bound_ms, routers, state, takeover_gap, wait_state  # noqa: F401
from vrrplab import wait_for

pytestmark = [
    pytest.mark.vrrp,
    pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed"),
]

WAITING = "waiting for the batch backup from the peer"
# Inside the lab's subnet, held by nobody: the channel never comes up.
SILENT_PEER = "10.77.0.9"


def followed_group(lab, priority: int) -> str:
    """Router 0's group, a service to a silent peer and a profile on the group."""
    return config(
        vrrp(group("eth0", VRID, vips=(VIP,), priority=priority, advertise_interval=100)),
        f'<remote-backup-service xmlns="{RBK_NS}"><name>rbs1</name>'
        f"<peer><address>{SILENT_PEER}</address><source>{lab.addr(0)}</source>"
        "<port>7070</port></peer></remote-backup-service>",
        f'<remote-backup-profile xmlns="{RBK_NS}"><name>rbp1</name>'
        f"<vrrp><vrid>{VRID}</vrid><interface>eth0</interface></vrrp>"
        "<backup-id>1</backup-id><remote-backup-service>rbs1</remote-backup-service>"
        "<service-type>dhcp-server</service-type></remote-backup-profile>",
    )


def test_a_returning_router_is_held_in_backup_and_still_replaces_a_dead_master(lab, routers, tmp_path):
    b = routers(1)
    mb = b.connect()
    mb.edit_config(target="candidate", config=config(
        vrrp(group("eth0", VRID, vips=(VIP,), priority=100, advertise_interval=100))))
    mb.commit()
    wait_state(mb, "master")
    assert state(mb)["preempt-hold"] == "false", "no profile follows B's group"
    cap = lab.capture(tmp_path / "hold.pcap")

    a = routers(0)
    ma = a.connect()
    ma.edit_config(target="candidate", config=followed_group(lab, 200))
    ma.commit()
    wait_for(lambda: state(ma).get("master-address") == lab.addr(1), 3,
             what="A following the lower-priority master B")
    # Without the hold A preempts after Master_Down_Interval (0.32 s):
    # watch for ten times that.
    deadline = time.monotonic() + 3.2
    while time.monotonic() < deadline:
        sa, sb = state(ma), state(mb)
        assert sa["state"] == "backup", f"A preempted while held: {sa}"
        assert (sa["preempt-hold"], sa.get("preempt-hold-reason")) == ("true", WAITING), sa
        assert sb["state"] == "master", sb
        time.sleep(0.1)
    assert sa["master-transitions"] == "0" and sa["adverts-sent"] == "0", sa
    assert sb["master-transitions"] == "1", sb
    assert VIP in lab.addresses(1) and VIP not in lab.addresses(0)

    b.kill()
    s = wait_state(ma, "master", timeout=5)
    assert s["master-address"] == lab.addr(0)
    assert s["preempt-hold"] == "true", "the hold stays until the hot backup lifts it"
    wait_for(lambda: VIP in lab.addresses(0), 5, what="VIP on A")
    time.sleep(0.3)
    adverts = cap.adverts()
    last_b, first_a, gap = takeover_gap(adverts, lab.addr(1), lab.addr(0))
    assert not [t for t, src, _ in adverts if src == lab.addr(0) and t < last_b], \
        "A advertised while B was alive"
    bound = rfc_bound_ms(100, 200)  # 321.9 ms
    assert bound - 2 <= gap <= bound + 30, f"takeover {gap:.1f} ms, RFC bound {bound:.1f} ms"
