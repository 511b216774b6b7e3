"""Remote backup profile, black box: two hotleased in two network
namespaces joined by a veth pair, configured over NETCONF with the seed's
steps 1-4 (VRRP group, remote-backup-service, remote-backup-profile, a
pool bound to the profile), observed through the profile's state in
<get>: its role (from the VRRP group), the peer's role, the fingerprint
of the bound pools and both routers' verdict (peer-check).  Runs with the
namespaced tests (``-m vrrp``): it needs root and iproute2.

    hbXXXXa: eth0 10.79.0.1/24 ──veth── hbXXXXb: eth0 10.79.0.2/24
             VRRP 51, VIP 10.79.0.254: A priority 200, B priority 100
"""

from __future__ import annotations

import os
import shutil

import pytest
from lxml import etree

from conftest import NS, RBK_NS, VRRP_NS, DHCPS_NS
from test_backup_service import ADDR, commit, routers, service  # noqa: F401 (fixture)
from vrrplab import wait_for

pytestmark = [
    pytest.mark.vrrp,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                       reason="needs root and iproute2 (network namespaces)"),
]

VIP = "10.79.0.254"


def group(priority: int) -> str:
    return (
        f'<vrrp xmlns="{VRRP_NS}"><group><interface>eth0</interface><vrid>51</vrid>'
        f"<virtual-ip>{VIP}</virtual-ip><priority>{priority}</priority>"
        "<advertise-interval>100</advertise-interval></group></vrrp>"
    )


PROFILE = (
    f'<remote-backup-profile xmlns="{RBK_NS}"><name>rbp1</name><peer-backup>hot</peer-backup>'
    "<vrrp><vrid>51</vrid><interface>eth0</interface></vrrp>"
    "<backup-id>1</backup-id><remote-backup-service>rbs1</remote-backup-service>"
    "<service-type>dhcp-server</service-type></remote-backup-profile>"
)


def pool(lease_time: int) -> str:
    return (
        f'<dhcp-server xmlns="{DHCPS_NS}"><interface><name>eth0</name></interface><ip-pool>'
        f"<name>p1</name><gateway>{VIP}</gateway><mask>255.255.255.0</mask>"
        "<section><start>10.79.0.10</start><end>10.79.0.200</end></section>"
        f"<dns-server>{VIP}</dns-server><lease-time>{lease_time}</lease-time>"
        f"<server-identifier>{VIP}</server-identifier>"
        "<remote-backup-profile>rbp1</remote-backup-profile></ip-pool></dhcp-server>"
    )


def rbp_state(m, name="rbp1") -> dict:
    """{leaf: text} of the profile's state; {} when the profile is absent."""
    data = m.get(filter=("subtree", f'<remote-backup-profile xmlns="{RBK_NS}"/>')).data_ele
    st = data.find(f"rbk:remote-backup-profile[rbk:name='{name}']/rbk:state", NS)
    if st is None:
        return {}
    return {etree.QName(c).localname: (c.text or "").strip() for c in st}


def wait_check(m, check: str, role: str | None = None, timeout: float = 10) -> dict:
    def ok():
        s = rbp_state(m)
        return (s.get("peer-check") == check and (role is None or s.get("role") == role)
                and s)
    return wait_for(ok, timeout, step=0.1, what=f"peer-check {check}, role {role}")


def test_profiles_accept_each_other_and_report_a_pool_mismatch(routers):
    a, b = routers
    ma, mb = a.connect(), b.connect()
    commit(ma, group(200), service(0), PROFILE, pool(3600))
    commit(mb, group(100), service(1), PROFILE, pool(3600))

    sa = wait_check(ma, "accepted", "master")
    sb = wait_check(mb, "accepted", "backup")
    # the peer's role follows its Role messages once the session is up
    sa = wait_for(lambda: (s := rbp_state(ma)).get("peer-role") == "backup" and s, 10,
                  step=0.1, what="A sees B backup")
    sb = wait_for(lambda: (s := rbp_state(mb)).get("peer-role") == "master" and s, 10,
                  step=0.1, what="B sees A master")
    assert sa["fingerprint"] == sb["fingerprint"], (sa, sb)
    assert len(sa["fingerprint"]) == 16, sa
    fp = sa["fingerprint"]

    # the pool's lease-time changed on B only: both sides say so
    commit(mb, pool(7200))
    sa = wait_check(ma, "fingerprint-mismatch")
    sb = wait_check(mb, "fingerprint-mismatch")
    assert sa["fingerprint"] == fp and sb["fingerprint"] != fp, (sa, sb)
    for s, here, there in ((sa, sa["fingerprint"], sb["fingerprint"]),
                           (sb, sb["fingerprint"], sa["fingerprint"])):
        reason = s["peer-check-reason"]
        assert "pools bound to this profile differ" in reason, s
        assert f"fingerprint {here} here, {there} there" in reason, s

    # changed back: accepted again, with the roles as before
    commit(mb, pool(3600))
    sa = wait_check(ma, "accepted", "master")
    sb = wait_check(mb, "accepted", "backup")
    assert sb["fingerprint"] == fp, sb
    assert sa.get("peer-role") == "backup" and sb.get("peer-role") == "master", (sa, sb)

    # switchover (B preempts with a higher priority): the roles travel on
    # the live session, which stays up
    sessions = rbs_sessions(ma)
    assert sessions and int(sessions) >= 1, sessions
    commit(mb, group(250))
    wait_for(lambda: (s := rbp_state(mb)).get("role") == "master"
             and s.get("peer-role") == "backup" and s, 10, step=0.1, what="B master, A backup")
    wait_for(lambda: (s := rbp_state(ma)).get("role") == "backup"
             and s.get("peer-role") == "master" and s, 10, step=0.1, what="A backup, B master")
    assert rbs_sessions(ma) == sessions
    assert rbp_state(ma)["peer-check"] == "accepted"


def rbs_sessions(m) -> str:
    data = m.get(filter=("subtree", f'<remote-backup-service xmlns="{RBK_NS}"/>')).data_ele
    return data.findtext("rbk:remote-backup-service/rbk:state/rbk:sessions-up", None, NS)
