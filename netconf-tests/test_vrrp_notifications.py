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
from vrrplab import Lab, NsDaemon

pytestmark = [
    pytest.mark.vrrp,
    pytest.mark.skipif(shutil.which("ip") is None, reason="iproute2 is not installed"),
]

VIP = "10.77.0.100"
VRID = 51
N = {"vrrp": VRRP_NS}


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
