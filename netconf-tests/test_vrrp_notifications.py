"""VRRP state-change notifications, black box: two hotleased routers in
network namespaces (vrrplab), transitions provoked on the wire (a master
that dies), received by a subscribed ncclient session."""

from __future__ import annotations

import datetime
import shutil

import pytest
from lxml import etree

from conftest import VRRP_NS, config, group, vrrp
from test_notifications import content, name_of, take
# the two-router lab and its fixtures, as test_vrrp.py has them
from test_vrrp import VIP, VRID, lab, routers  # noqa: F401

pytestmark = [
    pytest.mark.vrrp,
    pytest.mark.skipif(shutil.which("ip") is None, reason="iproute2 is not installed"),
]

N = {"vrrp": VRRP_NS}


def state_change(sub, timeout=10.0):
    n = take(sub, lambda n: name_of(n) == "state-change", timeout=timeout,
             skip=("netconf-session-start", "netconf-session-end", "netconf-config-change"))
    c = content(n)
    fields = {etree.QName(e).localname: e.text for e in c}
    when = n.notification_ele.findtext("{urn:ietf:params:xml:ns:netconf:notification:1.0}eventTime")
    return fields, datetime.datetime.fromisoformat(when.replace("Z", "+00:00"))


def test_state_changes_reach_the_subscriber_with_the_reason(lab, routers):
    a, b = routers(0), routers(1)
    sub = b.connect()
    sub.create_subscription(filter=("subtree", f'<state-change xmlns="{VRRP_NS}"/>'))
    ma = a.connect()
    ma.edit_config(target="candidate", config=config(vrrp(group("eth0", VRID, vips=(VIP,), priority=200, advertise_interval=100))))
    ma.commit()
    mb = b.connect()
    mb.edit_config(target="candidate", config=config(vrrp(group("eth0", VRID, vips=(VIP,), priority=100, advertise_interval=100))))
    mb.commit()
    f, _ = state_change(sub)
    assert (f["interface"], f["vrid"], f["old-state"], f["new-state"]) == ("eth0", str(VRID), "initialize", "backup")
    # the master dies: b takes over when its Master_Down timer fires
    a.kill()
    f, when = state_change(sub, timeout=5)
    assert (f["old-state"], f["new-state"], f["reason"]) == ("backup", "master", "master-down-timer")
    assert abs((datetime.datetime.now(datetime.timezone.utc) - when).total_seconds()) < 5
