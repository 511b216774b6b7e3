"""Keyed reads of the DHCP state (issue 11): one lease by its address, by
its MAC address or client-id, the leases of a pool, one pool's
statistics, by subtree and by XPath filter, answer exactly the part of the
whole state they select (the server answers them with key lookups); a
keyed get-config of one pool among many returns that pool alone.

Real clients (udhcpc) in network namespaces, as in test_dhcp.py."""

from __future__ import annotations

import re

import pytest
from lxml import etree

from conftest import DHCPS_NS, NS
from test_dhcp import commit, dhcp, dhcpd, pool, pytestmark, set_mac, settled, topo, udhcpc  # noqa: F401

CLIENTS = [
    # mac, client-id sent (option 61 as udhcpc -x takes it), its hex-string
    ("02:00:00:00:0b:01", None, None),
    ("02:00:00:00:0b:02", "0x3d:ff000b0002", "ff:00:0b:00:02"),
    ("02:00:00:00:0b:03", None, None),
]


def canon(el) -> bytes:
    return etree.tostring(el, method="c14n")


def leases_of(data) -> dict:
    return {
        l.findtext("dhcps:ip-address", namespaces=NS): canon(l)
        for l in data.iterfind("dhcps:dhcp-server/dhcps:lease", NS)
    }


def pools_of(data) -> dict:
    return {p.findtext("dhcps:name", namespaces=NS): p for p in data.iterfind("dhcps:dhcp-server/dhcps:ip-pool", NS)}


@pytest.fixture
def served(topo, dhcpd):
    d = dhcpd()
    m = d.connect()
    others = [pool(f"o{i}", f"10.90.{i}.1", sections=[(f"10.90.{i}.10", f"10.90.{i}.20")]) for i in range(20)]
    commit(m, dhcp(pool("lan", "10.77.0.1", sections=[("10.77.0.10", "10.77.0.40")], sid="10.77.0.1"), *others))
    got = {}
    for i, (mac, opt, cid) in enumerate(CLIENTS):
        set_mac(topo, topo.C, "lan", mac)
        extra = ("-x", opt) if opt else ()
        r = udhcpc(topo, topo.C, "lan", topo.tmp / f"k{i}.log", *extra)
        found = re.search(r"lease of (\S+) obtained", r.stderr)
        assert found, r.stderr
        got[found.group(1)] = (mac, cid)
    st = settled(m, lambda s: len(s["leases"]) == len(CLIENTS))
    assert set(st["leases"]) == set(got)
    return m, got


def sub(m, inner):
    return m.get(filter=("subtree", f'<dhcp-server xmlns="{DHCPS_NS}">{inner}</dhcp-server>')).data_ele


def xp(m, path):
    return m.get(filter=("xpath", ({"d": DHCPS_NS}, path))).data_ele


def test_lease_lookups_answer_what_the_whole_state_holds(served):
    m, got = served
    whole = m.get(filter=("subtree", f'<dhcp-server xmlns="{DHCPS_NS}"/>')).data_ele
    everything = leases_of(whole)
    assert set(everything) == set(got)
    for ip, (mac, cid) in got.items():
        want = {ip: everything[ip]}
        assert leases_of(sub(m, f"<lease><ip-address>{ip}</ip-address></lease>")) == want
        assert leases_of(xp(m, f"/d:dhcp-server/d:lease[d:ip-address='{ip}']")) == want
        assert leases_of(sub(m, f"<lease><mac-address>{mac}</mac-address></lease>")) == want
        assert leases_of(xp(m, f"/d:dhcp-server/d:lease[d:mac-address='{mac}']")) == want
        if cid:
            assert leases_of(sub(m, f"<lease><client-id>{cid}</client-id></lease>")) == want
            assert leases_of(xp(m, f"/d:dhcp-server/d:lease[d:client-id='{cid}']")) == want
        # a leaf of the entry, by its key
        data = sub(m, f"<lease><ip-address>{ip}</ip-address><state/></lease>")
        assert [e.text for e in data.iterfind("dhcps:dhcp-server/dhcps:lease/dhcps:state", NS)] == ["bound"]
    # the leases of one pool, of a pool without any, of no such address
    assert leases_of(sub(m, "<lease><pool>lan</pool></lease>")) == everything
    assert leases_of(sub(m, "<lease><pool>o3</pool></lease>")) == {}
    assert len(sub(m, "<lease><ip-address>10.77.0.99</ip-address></lease>")) == 0
    assert len(sub(m, "<lease><mac-address>02:00:00:00:0b:99</mac-address></lease>")) == 0
    assert len(xp(m, "/d:dhcp-server/d:lease[d:mac-address='not a mac']")) == 0
    # two content matches: both must hold
    mac0 = CLIENTS[0][0]
    ip0 = next(ip for ip, (mac, _) in got.items() if mac == mac0)
    assert set(leases_of(sub(m, f"<lease><mac-address>{mac0}</mac-address><pool>lan</pool></lease>"))) == {ip0}
    assert leases_of(sub(m, f"<lease><mac-address>{mac0}</mac-address><pool>o1</pool></lease>")) == {}


def test_one_pools_statistics_and_keyed_get_config(served):
    m, got = served
    whole = pools_of(m.get(filter=("subtree", f'<dhcp-server xmlns="{DHCPS_NS}"/>')).data_ele)
    for name in ("lan", "o7"):
        for data in (
            sub(m, f"<ip-pool><name>{name}</name><statistics/></ip-pool>"),
            xp(m, f"/d:dhcp-server/d:ip-pool[d:name='{name}']/d:statistics"),
        ):
            pools = pools_of(data)
            assert list(pools) == [name]
            st = pools[name].find("dhcps:statistics", NS)
            assert canon(st) == canon(whole[name].find("dhcps:statistics", NS))
            # the statistics and the key, nothing else of the entry
            assert [etree.QName(c).localname for c in pools[name]] == ["name", "statistics"]
    lan = pools_of(sub(m, "<ip-pool><name>lan</name><statistics/></ip-pool>"))["lan"]
    assert int(lan.findtext("dhcps:statistics/dhcps:used", namespaces=NS)) == len(got)
    assert int(lan.findtext("dhcps:statistics/dhcps:total", namespaces=NS)) == 31
    # a keyed get-config: that pool's configuration, alone
    data = m.get_config("running", filter=("subtree", f'<dhcp-server xmlns="{DHCPS_NS}"><ip-pool><name>o7</name></ip-pool></dhcp-server>')).data_ele
    pools = pools_of(data)
    assert list(pools) == ["o7"]
    assert pools["o7"].findtext("dhcps:gateway", namespaces=NS) == "10.90.7.1"
    assert pools["o7"].find("dhcps:statistics", NS) is None
    full = pools_of(m.get_config("running").data_ele)["o7"]
    assert canon(pools["o7"]) == canon(full)
    assert len(m.get_config("running", filter=("subtree", f'<dhcp-server xmlns="{DHCPS_NS}"><ip-pool><name>zz</name></ip-pool></dhcp-server>')).data_ele) == 0
