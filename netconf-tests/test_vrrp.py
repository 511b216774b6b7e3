"""VRRP runtime, black box: real hotleased processes (and keepalived) in
network namespaces joined by a bridge, configured over NETCONF, observed on
the wire with tshark.  Select with ``-m vrrp``.

Intervals are short (100 ms) where the behaviour allows, to keep CI fast.
"""

from __future__ import annotations

import re
import shutil
import time

import pytest

from conftest import NS, config, group, vrrp
from vrrplab import Keepalived, Lab, NsDaemon, wait_for

pytestmark = [
    pytest.mark.vrrp,
    pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed"),
]

VIP = "10.77.0.100"
VRID = 51


@pytest.fixture
def lab(tmp_path):
    lab = Lab(2, tmp_path)
    yield lab
    lab.close()


@pytest.fixture
def routers(lab, creds, tmp_path, request):
    made: list[NsDaemon] = []

    def make(i: int) -> NsDaemon:
        d = NsDaemon(lab.routers[i], tmp_path / f"r{i}", creds)
        made.append(d)
        d.start()
        return d

    yield make
    from conftest import _finish

    _finish(request, made)


def configure(d: NsDaemon, **leaves):
    """Commit one group (eth0, VRID 51, the VIP) with the given leaves."""
    m = d.connect()
    m.edit_config(target="candidate",
                  config=config(vrrp(group("eth0", VRID, vips=(VIP,), **leaves))))
    m.commit()
    return m


def state(m) -> dict:
    data = m.get(filter=("subtree", f'<vrrp xmlns="{NS["vrrp"]}"/>')).data_ele
    g = data.find(f"vrrp:vrrp/vrrp:group[vrrp:vrid='{VRID}']", NS)
    if g is None:
        return {}
    out = {}
    for c in g.iter():
        name = c.tag.split("}")[1]
        if len(c) == 0 and c.text:
            out[name] = c.text.strip()
    return out


def wait_state(m, want: str, timeout: float = 10) -> dict:
    return wait_for(lambda: (s := state(m)).get("state") == want and s, timeout,
                    what=f"state {want}")


def rfc_bound_ms(interval_ms: float, priority: int) -> float:
    """Master_Down_Interval: 3 × interval + (256 − priority) / 256 × interval."""
    return 3 * interval_ms + (256 - priority) * interval_ms / 256


def test_two_routers_elect_by_priority_vip_on_master_only_and_tshark_is_happy(lab, routers, tmp_path):
    cap = lab.capture(tmp_path / "elect.pcap")
    a, b = routers(0), routers(1)
    ma = configure(a, priority=200, advertise_interval=100)
    mb = configure(b, priority=100, advertise_interval=100)
    sa = wait_state(ma, "master")
    sb = wait_state(mb, "backup")
    assert sa["master-address"] == lab.addr(0)
    assert sb["master-address"] == lab.addr(0)
    wait_for(lambda: VIP in lab.addresses(0), 5, what="VIP on the master")
    time.sleep(0.5)
    assert VIP not in lab.addresses(1), "the backup must not hold the VIP"
    sa, sb = state(ma), state(mb)
    assert int(sa["adverts-sent"]) > 0 and int(sb["adverts-received"]) > 0
    assert sb["bad-packets"] == "0" and sa["master-transitions"] == "1"
    assert sa["last-change"]
    # tshark: every advertisement of ours is well formed
    rows = cap.fields("ip.src", "ip.ttl", "vrrp.version", "vrrp.checksum.status", "vrrp.prio",
                      "vrrp.ip_addr")
    ours = [r for r in rows if r[0] == lab.addr(0)]
    assert len(ours) >= 5, rows
    for src, ttl, version, status, prio, addr in ours:
        assert (ttl, version, prio, addr) == ("255", "3", "200", VIP)
        assert status == "1", f"tshark: checksum status {status} (1 = good)"
    # and the gratuitous ARP for the VIP went out
    arps = cap.fields("arp.src.proto_ipv4", "arp.dst.proto_ipv4", filter="arp")
    assert [VIP, VIP] in arps, arps
