"""with-defaults (RFC 6243): basic-mode explicit; report-all, report-all-tagged, trim."""

import pytest
from lxml import etree

from conftest import NS, VRRP_NS, WD_NS, config, find_groups, group, vrrp

# eth0/1: nothing but keys and a VIP; eth0/2: priority set to its default
# value (100) explicitly, version set to its default, advertise-interval to a
# non-default value; eth0/3: priority 200.
SETUP = config(
    vrrp(
        group(vrid=1),
        group(vrid=2, priority=100, version="v3", advertise_interval=2000, preempt={"delay": 0}),
        group(vrid=3, priority=200),
    )
)
DEFAULTS = {
    "priority": "100",
    "advertise-interval": "1000",
    "version": "v3",
    "preempt/enabled": "true",
    "preempt/delay": "0",
}


@pytest.fixture(scope="module")
def wd(module_daemon):
    m = module_daemon.connect()
    m.edit_config(target="candidate", config=SETUP)
    m.commit()
    yield m
    m.close_session()


def groups_of(reply):
    return find_groups(reply.data_ele)


@pytest.mark.parametrize("source", ["running", "candidate"])
def test_report_all(wd, source):
    g = groups_of(wd.get_config(source, with_defaults="report-all"))
    for leaf, value in DEFAULTS.items():
        assert g[("eth0", 1)].get(leaf) == value, (leaf, g[("eth0", 1)])
    assert g[("eth0", 2)]["priority"] == "100"
    assert g[("eth0", 2)]["advertise-interval"] == "2000"
    assert g[("eth0", 3)]["priority"] == "200"
    assert g[("eth0", 3)]["preempt/enabled"] == "true"


def test_report_all_on_get(wd):
    g = groups_of(wd.get(filter=("subtree", f'<vrrp xmlns="{VRRP_NS}"/>'), with_defaults="report-all"))
    assert g[("eth0", 1)]["priority"] == "100"
    assert g[("eth0", 1)]["advertise-interval"] == "1000"


def test_explicit_is_the_default_mode(wd):
    """No with-defaults parameter = basic-mode explicit: leaves set by a
    client are reported (even at their default value), others are not."""
    for reply in (wd.get_config("running"), wd.get_config("running", with_defaults="explicit")):
        g = groups_of(reply)
        assert "priority" not in g[("eth0", 1)]
        assert "advertise-interval" not in g[("eth0", 1)]
        assert "version" not in g[("eth0", 1)]
        assert "preempt/enabled" not in g[("eth0", 1)]
        assert g[("eth0", 2)]["priority"] == "100"
        assert g[("eth0", 2)]["version"] == "v3"
        assert g[("eth0", 2)]["preempt/delay"] == "0"
        assert "preempt/enabled" not in g[("eth0", 2)]
        assert g[("eth0", 3)]["priority"] == "200"


def test_trim(wd):
    g = groups_of(wd.get_config("running", with_defaults="trim"))
    assert "priority" not in g[("eth0", 1)]
    assert "priority" not in g[("eth0", 2)], "trim must drop a leaf equal to its default"
    assert "version" not in g[("eth0", 2)]
    assert "preempt/delay" not in g[("eth0", 2)]
    assert g[("eth0", 2)]["advertise-interval"] == "2000"
    assert g[("eth0", 3)]["priority"] == "200"
    # keys are never trimmed
    assert ("eth0", 1) in g


def test_report_all_tagged(wd):
    data = wd.get_config("running", with_defaults="report-all-tagged").data_ele
    tagged = {}
    for grp in data.iterfind("vrrp:vrrp/vrrp:group", NS):
        vrid = grp.findtext("vrrp:vrid", namespaces=NS)
        for leaf in grp.iter():
            if leaf.get(f"{{{WD_NS}}}default") is not None:
                assert leaf.get(f"{{{WD_NS}}}default") == "true"
                tagged.setdefault(vrid, set()).add(etree.QName(leaf).localname)
    assert tagged, (
        "no leaf carries the RFC 6243 §6 attribute default=\"true\" in namespace "
        f"{WD_NS}: {etree.tostring(data).decode()[:600]}"
    )
    # every leaf at its default value is tagged, set explicitly or not
    assert {"priority", "advertise-interval", "version", "enabled", "delay"} <= tagged["1"]
    assert {"priority", "version", "enabled", "delay"} <= tagged["2"]
    assert "advertise-interval" not in tagged["2"]
    assert "priority" not in tagged.get("3", set())
    # keys and the VIPs are not defaults
    for leaves in tagged.values():
        assert not leaves & {"interface", "vrid", "virtual-ip"}
    g = find_groups(data)
    assert g[("eth0", 1)]["priority"] == "100"


def test_report_all_tagged_declares_namespace(wd):
    reply = wd.get_config("running", with_defaults="report-all-tagged")
    assert WD_NS in reply.xml
    # the raw reply parses on its own: the wd prefix is declared
    etree.fromstring(reply.xml.encode())


def test_with_defaults_on_startup(wd):
    wd.copy_config(source="running", target="startup")
    g = groups_of(wd.get_config("startup", with_defaults="report-all"))
    assert g[("eth0", 1)]["priority"] == "100"
    g = groups_of(wd.get_config("startup", with_defaults="trim"))
    assert "priority" not in g[("eth0", 2)]


def test_bad_with_defaults_value(module_daemon):
    r = module_daemon.raw()
    r.hello()
    reply = r.rpc(
        '<get-config><source><running/></source>'
        '<with-defaults xmlns="urn:ietf:params:xml:ns:yang:ietf-netconf-with-defaults">sometimes</with-defaults>'
        "</get-config>"
    )
    err = reply.find("nc:rpc-error", NS)
    assert err is not None
    assert err.findtext("nc:error-tag", namespaces=NS) in ("invalid-value", "bad-element")


def test_report_all_on_edited_candidate(nc):
    """Defaults are reported for nodes that only exist in an uncommitted candidate."""
    nc.edit_config(target="candidate", config=config(vrrp(group(vrid=4))))
    g = groups_of(nc.get_config("candidate", with_defaults="report-all"))
    for leaf, value in DEFAULTS.items():
        assert g[("eth0", 4)].get(leaf) == value, (leaf, g[("eth0", 4)])
