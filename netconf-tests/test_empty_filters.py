"""Filters on empty and default-only datastores (issue 11): every datastore,
every filter kind and every with-defaults mode answers with `<data>`, empty
where nothing is selected, never with an error."""

import pytest

from conftest import DHCPS_NS, RBK_NS, VRRP_NS

FILTERS = [
    ("subtree", f'<vrrp xmlns="{VRRP_NS}"/>'),
    ("subtree", f'<vrrp xmlns="{VRRP_NS}"><group><vrid>1</vrid></group></vrrp>'),
    ("subtree", f'<dhcp-server xmlns="{DHCPS_NS}"><ip-pool><name>p1</name></ip-pool></dhcp-server>'),
    ("subtree", f'<dhcp-server xmlns="{DHCPS_NS}"/>'),
    ("subtree", f'<remote-backup-service xmlns="{RBK_NS}"><name/></remote-backup-service>'),
    ("xpath", "/vrrp"),
]
MODES = [None, "explicit", "report-all", "trim", "report-all-tagged"]


@pytest.fixture(scope="module")
def m(module_daemon):
    m = module_daemon.connect()
    yield m
    m.close_session()


def kw(mode):
    return {} if mode is None else {"with_defaults": mode}


def xpath_filter(f):
    if f[0] == "xpath":
        return ("xpath", (
            {"vrrp": VRRP_NS},
            "/vrrp:vrrp",
        ))
    return f


def only_config_free(data):
    """Nothing but defaults may come back from an empty datastore: no list
    entry (a group, a pool, a service) exists."""
    for tag in ("group", "ip-pool", "remote-backup-service"):
        assert not [e for e in data.iter() if isinstance(e.tag, str) and e.tag.endswith("}" + tag)], tag


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("f", FILTERS, ids=lambda f: f[1][:40])
@pytest.mark.parametrize("source", ["running", "candidate", "startup"])
def test_get_config_filter_on_empty_datastore(m, source, f, mode):
    data = m.get_config(source, filter=xpath_filter(f), **kw(mode)).data_ele
    assert data.tag.endswith("}data")
    only_config_free(data)
    if mode in (None, "explicit", "trim"):
        assert len(data) == 0, data


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("f", FILTERS, ids=lambda f: f[1][:40])
def test_get_filter_on_empty_datastore(m, f, mode):
    data = m.get(filter=xpath_filter(f), **kw(mode)).data_ele
    assert data.tag.endswith("}data")
    only_config_free(data)


DEFAULT_ONLY = (
    f'<config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><dhcp-server xmlns="{DHCPS_NS}">'
    "<request-packet-all-interface>false</request-packet-all-interface></dhcp-server></config>"
)
LEAF = f'<dhcp-server xmlns="{DHCPS_NS}"><request-packet-all-interface/></dhcp-server>'


@pytest.fixture
def default_only(nc):
    """Every datastore holds one leaf, set to its default value."""
    nc.edit_config(target="candidate", config=DEFAULT_ONLY)
    nc.commit()
    nc.copy_config(source="running", target="startup")
    return nc


def leaf_values(data):
    return [e.text for e in data.iter(f"{{{DHCPS_NS}}}request-packet-all-interface")]


@pytest.mark.parametrize("source", ["running", "candidate", "startup", "get"])
def test_filters_on_default_only_datastore(default_only, source):
    nc = default_only

    def read(f, mode):
        if source == "get":
            return nc.get(filter=xpath_filter(f), **kw(mode)).data_ele
        return nc.get_config(source, filter=xpath_filter(f), **kw(mode)).data_ele

    for f in FILTERS:
        for mode in MODES:
            data = read(f, mode)
            only_config_free(data)
            if f[1] != f'<dhcp-server xmlns="{DHCPS_NS}"/>':
                assert leaf_values(data) == [], (f, mode)
    # the leaf set to its default is shown where the mode shows it
    assert leaf_values(read(("subtree", LEAF), None)) == ["false"]
    assert leaf_values(read(("subtree", LEAF), "report-all")) == ["false"]
    assert leaf_values(read(("subtree", LEAF), "trim")) == []
    pools = f'<dhcp-server xmlns="{DHCPS_NS}"><ip-pool/></dhcp-server>'
    assert len(read(("subtree", pools), "trim")) == 0
    assert len(read(("subtree", pools), None)) == 0
