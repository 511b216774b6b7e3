"""The lease store of the real daemon on a full storage directory (issue 15).

The storage directory is a small tmpfs mounted for the test (root only;
always unmounted). A filler file takes the room the lease log needs for its
first stretch of zeros written ahead, so the first grant cannot be stored:
the client must get no ACK (silence), the daemon must count and log it and
show its store failed, recover by itself once the filler is gone, and keep
every lease whose ACK left across a restart. The end of the zeros and a
compaction on a full disk are covered by the server's unit test
(dhcp::server::tests::served_until_the_disk_is_full_no_ack_leaves_that_is_not_stored).
"""

import os

import pytest
from lxml import etree

from conftest import DHCPS_NS, _finish
from test_dhcp import NsDaemon, commit, dhcp, pool, set_mac, settled, sh, state, topo, udhcpc, wait_for  # noqa: F401 (fixture)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs: needs root")


def store_failed(m) -> bool:
    data = m.get(filter=("subtree", f'<dhcp-server xmlns="{DHCPS_NS}"><lease-store-failed/></dhcp-server>')).data_ele
    leaf = data.find(f"{{{DHCPS_NS}}}dhcp-server/{{{DHCPS_NS}}}lease-store-failed")
    assert leaf is not None, etree.tostring(data)
    return leaf.text == "true"


def test_full_storage_withholds_acks_counts_them_and_recovers(topo, creds, tmp_path, request):
    d = NsDaemon(topo.S, tmp_path / "d0", creds)
    sh("mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(d.storage))
    try:
        d.start()
        m = d.connect()
        commit(m, dhcp(pool("lan", "10.77.0.1", sections=[("10.77.0.10", "10.77.0.20")])))
        m.copy_config(source="running", target="startup")
        # leave 64 KiB: less than the log's first zeros (256 KiB)
        st = os.statvfs(d.storage)
        filler = d.storage / "filler"
        with open(filler, "wb") as f:
            f.write(b"\1" * (st.f_bavail * st.f_frsize - (64 << 10)))
        set_mac(topo, topo.C, "lan", "02:00:00:00:0f:01")
        r = udhcpc(topo, topo.C, "lan", topo.tmp / "a.log", "-t", "2")
        assert "obtained" not in r.stderr, r.stderr
        s = settled(m, lambda s: s["stats"].get("acks-withheld", 0) >= 1)
        assert s["stats"]["acks-withheld"] >= 1, s["stats"]
        assert s["stats"]["sent/ack"] == 0, s["stats"]
        assert store_failed(m)
        assert "lease store failed: ACKs withheld until it works again" in d.stderr()
        # room again: the daemon retries by itself, within its 1 s retry
        filler.unlink()
        assert wait_for(lambda: not store_failed(m), 10), d.stderr()
        assert "lease store works again" in d.stderr()
        r = udhcpc(topo, topo.C, "lan", topo.tmp / "b.log")
        assert "lease of 10.77.0.10 obtained" in r.stderr, r.stderr
        withheld = state(m)["stats"]["acks-withheld"]
        # the ACKed lease survives a crash
        d.kill9()
        d.start()
        m = d.connect()
        s = settled(m, lambda s: "10.77.0.10" in s["leases"])
        assert s["leases"]["10.77.0.10"]["state"] == "bound", s["leases"]
        assert s["leases"]["10.77.0.10"]["mac-address"] == "02:00:00:00:0f:01"
        assert set(s["leases"]) == {"10.77.0.10"}, s["leases"]
        assert withheld >= 1
    finally:
        _finish(request, [d])
        sh("umount", str(d.storage), check=False)
