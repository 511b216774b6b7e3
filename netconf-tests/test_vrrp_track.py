"""A master whose lease store cannot write gives its VRRP group away (issue
15), black box: the hot-backup lab (hblab.py: A priority 200, B 100,
preempt with delay 0, adverts every 200 ms) with A's storage directory on
a small tmpfs mounted for the test (root only; always unmounted).

A filler file takes the room A's lease log needs for its first stretch of
zeros written ahead, so A cannot store the first lease it grants: it
withholds the ACK (never one it cannot keep, see test_lease_store.py) and,
since a remote-backup-profile with a DHCP server follows its group, runs
the group at priority 1 and resigns (priority 0). B takes over and serves
the client. A shows why in its group state (tracked-down, the reason,
effective-priority 1, counted) and logs it. When the filler is gone A's
store works again (its writer retries every second), the configured
priority applies, and A takes the group back once its hot backup released
the preemption hold, with the lease B granted in its table.
"""

from __future__ import annotations

import os
import shutil
import time

import pytest

from hblab import VIP, Udhcpc, rfc_bound_s, running_pair
from test_hot_backup import up
from vrrplab import sh

pytestmark = [
    pytest.mark.vrrp,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces and a tmpfs need root"),
    pytest.mark.skipif(
        not all(shutil.which(c) for c in ("ip", "nft", "udhcpc", "dhclient", "tshark", "dumpcap")),
        reason="iproute2, nftables, udhcpc, dhclient and tshark are needed "
               "(netconf-tests/run.sh installs them)",
    ),
]


@pytest.fixture
def pair(creds, tmp_path, request):
    """The lab with both routers running, A's storage on a 2 MiB tmpfs."""
    mounted = []

    def small_storage(routers):
        mounted.append(routers[0].d.storage)
        sh("mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(mounted[0]))

    try:
        with running_pair(creds, tmp_path, request, small_storage) as p:
            yield p
    finally:
        for m in mounted:
            sh("umount", str(m), check=False)


def fill(storage, leave: int):
    """Take the tmpfs's room but *leave* bytes; the filler's path."""
    st = os.statvfs(storage)
    filler = storage / "filler"
    with open(filler, "wb") as f:
        f.write(b"\1" * max(st.f_bavail * st.f_frsize - leave, 0))
    return filler


def test_a_master_that_cannot_store_leases_hands_the_group_over_and_takes_it_back(pair):
    lab, a, b = pair
    up(a, b)
    s = a.vrrp()
    assert (s["state"], s["effective-priority"], s["tracked-down"]) == ("master", "200", "false"), s
    assert "tracked-down-reason" not in s, s
    assert not (a.d.storage / "leases.log").exists(), "nothing stored yet: the log's zeros are not written"
    # leave 64 KiB: less than the lease log's first zeros (256 KiB)
    filler = fill(a.d.storage, 64 << 10)

    c0 = Udhcpc(lab, 0, lab.tmp / "c0.log")
    t0 = time.time()
    c0.start()
    # A cannot store the client's lease: it withholds the ACK and resigns
    s = a.wait(lambda: (s := a.vrrp()).get("tracked-down") == "true" and s, 15, "tracked down")
    why = s["tracked-down-reason"]
    assert why.startswith("lease store ") and "No space left on device" in why, s
    assert s["effective-priority"] == "1", s
    assert s["tracked-down-transitions"] == "1" and s["priority-zero-sent"] == "1", s
    b.wait(lambda: b.vrrp().get("state") == "master", 5, "master after A resigned")
    s = a.vrrp()
    assert (s["state"], s.get("master-address")) == ("backup", b.addr), s
    assert "tracked object down: priority lowered, a master resigns" in a.d.stderr()
    assert a.dhcp()["stats"].get("sent/ack", 0) == 0, "A sent no ACK it could not store"

    # B serves the client (its first DISCOVERs went to A)
    ev = c0.wait_bound(30)
    assert ev["serverid"] == VIP, ev
    lease = b.wait_lease(ev["ip"], 2, state="bound", origin="local")
    assert lease["mac-address"] == c0.mac, lease
    assert b.holds_vip() and not a.holds_vip()
    # A stays backup (priority 1, no preemption) while its store fails
    time.sleep(10 * rfc_bound_s(200))
    s = a.vrrp()
    assert (s["state"], s["tracked-down"], s["tracked-down-transitions"]) == ("backup", "true", "1"), s
    assert b.vrrp()["state"] == "master"
    print(f"client bound by B {float(ev['t']) - t0:.2f} s after its start")

    # room again: A's store works, its priority is 200 again, and it takes
    # the group back once its batch backup from B released the hold
    filler.unlink()
    s = a.wait(lambda: (s := a.vrrp()).get("state") == "master" and s, 30, "master again")
    assert (s["tracked-down"], s["effective-priority"]) == ("false", "200"), s
    assert "tracked-down-reason" not in s, s
    assert s["tracked-down-transitions"] == "1", s
    assert "tracked object up: configured priority again" in a.d.stderr()
    b.wait(lambda: b.vrrp().get("state") == "backup", 5, "backup of A again")
    a.wait(lambda: a.holds_vip(), 5, "VIP on A")
    # the lease B granted is A's too, and A serves a new client
    theirs = a.wait_lease(ev["ip"], 5, state="bound")
    assert theirs["mac-address"] == c0.mac, theirs
    ev1 = Udhcpc(lab, 1, lab.tmp / "c1.log").once()
    assert ev1["serverid"] == VIP and ev1["ip"] != ev["ip"], ev1
    mine = a.wait_lease(ev1["ip"], 2, state="bound", origin="local")
    assert mine["mac-address"] == lab.mac(1), mine
