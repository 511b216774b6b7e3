"""Subtree (RFC 6241 §6) and XPath (§8.9) filtering on get and get-config."""

import pytest
from ncclient.operations.rpc import RPCError

from conftest import (
    NS,
    RBK_NS,
    VRRP_NS,
    assert_rpc_error,
    config,
    find_groups,
    group,
    vrrp,
)

SETUP = config(
    vrrp(
        group(interface="eth0", vrid=1, vips=("192.0.2.1", "192.0.2.11"), priority=110),
        group(interface="eth0", vrid=2, vips=("192.0.2.2",), priority=120),
        group(interface="eth1", vrid=2, vips=("198.51.100.2",), priority=130),
    ),
    f'<remote-backup-service xmlns="{RBK_NS}"><name>rbs1</name>'
    "<peer><address>10.1.1.2</address><source>10.1.1.1</source><port>7000</port></peer>"
    "</remote-backup-service>",
)


@pytest.fixture(scope="module")
def m(module_daemon):
    m = module_daemon.connect()
    m.edit_config(target="candidate", config=SETUP)
    m.commit()
    yield m
    m.close_session()


def subtree(m, xml, op="get_config"):
    if op == "get_config":
        return m.get_config("running", filter=("subtree", xml)).data_ele
    return m.get(filter=("subtree", xml)).data_ele


def top_names(data):
    return sorted(c.tag for c in data)


@pytest.mark.parametrize("op", ["get_config", "get"])
def test_no_filter_returns_everything(m, op):
    data = (m.get_config("running") if op == "get_config" else m.get()).data_ele
    assert f"{{{VRRP_NS}}}vrrp" in top_names(data)
    assert f"{{{RBK_NS}}}remote-backup-service" in top_names(data)
    assert len(find_groups(data)) == 3


@pytest.mark.parametrize("op", ["get_config", "get"])
def test_selection_node(m, op):
    data = subtree(m, f'<vrrp xmlns="{VRRP_NS}"/>', op)
    assert top_names(data) == [f"{{{VRRP_NS}}}vrrp"]
    g = find_groups(data)
    assert len(g) == 3
    assert g[("eth0", 1)]["virtual-ip"] == ["192.0.2.1", "192.0.2.11"]


def test_empty_filter_selects_nothing(m):
    """§6.4.2: an empty filter selects nothing."""
    from ncclient.xml_ import new_ele

    f = new_ele("filter", type="subtree")
    data = m.get_config("running", filter=f).data_ele
    assert len(data) == 0


def test_unknown_top_level_element_gives_empty_data(m):
    data = subtree(m, '<nothing-here xmlns="urn:example:unknown"/>')
    assert len(data) == 0


def test_wrong_namespace_matches_nothing(m):
    data = subtree(m, '<vrrp xmlns="urn:example:other"/>')
    assert len(data) == 0


def test_unknown_child_of_known_container_gives_empty(m):
    data = subtree(m, f'<vrrp xmlns="{VRRP_NS}"><no-such-list/></vrrp>')
    assert find_groups(data) == {}


def test_content_match_on_key(m):
    data = subtree(m, f'<vrrp xmlns="{VRRP_NS}"><group><vrid>2</vrid></group></vrrp>')
    g = find_groups(data)
    assert set(g) == {("eth0", 2), ("eth1", 2)}
    # no selection node beside the content match: the whole entry is returned
    assert g[("eth1", 2)]["priority"] == "130"
    assert g[("eth1", 2)]["virtual-ip"] == ["198.51.100.2"]


def test_content_match_two_keys(m):
    data = subtree(m, f'<vrrp xmlns="{VRRP_NS}"><group><interface>eth1</interface><vrid>2</vrid></group></vrrp>')
    assert set(find_groups(data)) == {("eth1", 2)}


def test_content_match_with_selection(m):
    """§6.4.5-style: content match plus a selection node returns the
    content-match node(s) and the selected leaf, nothing else."""
    data = subtree(m, f'<vrrp xmlns="{VRRP_NS}"><group><interface>eth0</interface><priority/></group></vrrp>')
    g = find_groups(data)
    assert set(g) == {("eth0", 1), ("eth0", 2)}
    assert g[("eth0", 1)]["priority"] == "110"
    assert "virtual-ip" not in g[("eth0", 1)]


def test_content_match_on_non_key_leaf(m):
    data = subtree(m, f'<vrrp xmlns="{VRRP_NS}"><group><priority>120</priority></group></vrrp>')
    g = find_groups(data)
    assert set(g) == {("eth0", 2)}


def test_content_match_with_no_hit(m):
    data = subtree(m, f'<vrrp xmlns="{VRRP_NS}"><group><vrid>99</vrid></group></vrrp>')
    assert find_groups(data) == {}


def test_content_match_whitespace_is_ignored(m):
    data = subtree(m, f'<vrrp xmlns="{VRRP_NS}"><group><vrid>\n  1 \n</vrid></group></vrrp>')
    assert set(find_groups(data)) == {("eth0", 1)}


def test_several_subtrees(m):
    data = m.get_config(
        "running",
        filter=[
            f'<vrrp xmlns="{VRRP_NS}"><group><vrid>1</vrid></group></vrrp>',
            f'<remote-backup-service xmlns="{RBK_NS}"><name>rbs1</name><peer><port/></peer></remote-backup-service>',
        ],
    ).data_ele
    assert set(find_groups(data)) == {("eth0", 1)}
    rbs = data.find("rbk:remote-backup-service", NS)
    assert rbs is not None
    assert rbs.findtext("rbk:peer/rbk:port", namespaces=NS) == "7000"
    assert rbs.find("rbk:peer/rbk:address", NS) is None


def test_filter_with_prefixed_namespace(m):
    data = subtree(m, f'<v:vrrp xmlns:v="{VRRP_NS}"><v:group><v:vrid>1</v:vrid></v:group></v:vrrp>')
    assert set(find_groups(data)) == {("eth0", 1)}


def test_subtree_filter_on_candidate(m):
    data = m.get_config("candidate", filter=("subtree", f'<vrrp xmlns="{VRRP_NS}"><group><vrid>1</vrid></group></vrrp>')).data_ele
    assert set(find_groups(data)) == {("eth0", 1)}


# --- XPath --------------------------------------------------------------


def xpath(m, expr, op="get_config", ns=None):
    ns = ns or {"vrrp": VRRP_NS, "rbk": RBK_NS}
    spec = ("xpath", (ns, expr))
    if op == "get_config":
        return m.get_config("running", filter=spec).data_ele
    return m.get(filter=spec).data_ele


@pytest.mark.parametrize("op", ["get_config", "get"])
def test_xpath_whole_container(m, op):
    data = xpath(m, "/vrrp:vrrp", op)
    assert top_names(data) == [f"{{{VRRP_NS}}}vrrp"]
    assert len(find_groups(data)) == 3


def test_xpath_predicate(m):
    data = xpath(m, "/vrrp:vrrp/vrrp:group[vrrp:vrid=2]")
    assert set(find_groups(data)) == {("eth0", 2), ("eth1", 2)}


def test_xpath_two_predicates(m):
    data = xpath(m, "/vrrp:vrrp/vrrp:group[vrrp:interface='eth0'][vrrp:vrid='2']")
    g = find_groups(data)
    assert set(g) == {("eth0", 2)}
    assert g[("eth0", 2)]["priority"] == "120"


def test_xpath_leaf_returns_ancestors_and_keys(m):
    data = xpath(m, "/vrrp:vrrp/vrrp:group[vrrp:vrid=1]/vrrp:priority")
    g = find_groups(data)
    assert set(g) == {("eth0", 1)}
    assert g[("eth0", 1)]["priority"] == "110"
    assert "virtual-ip" not in g[("eth0", 1)]


def test_xpath_union(m):
    data = xpath(m, "/vrrp:vrrp/vrrp:group[vrrp:vrid=1] | /rbk:remote-backup-service")
    assert set(find_groups(data)) == {("eth0", 1)}
    assert data.find("rbk:remote-backup-service", NS) is not None


def test_xpath_descendant_and_comparison(m):
    data = xpath(m, "//vrrp:group[vrrp:priority > 115]")
    assert set(find_groups(data)) == {("eth0", 2), ("eth1", 2)}


def test_xpath_own_prefix_names(m):
    """The client's prefixes are its own: any prefix bound to the namespace works."""
    data = xpath(m, "/zz:vrrp/zz:group[zz:vrid=1]", ns={"zz": VRRP_NS})
    assert set(find_groups(data)) == {("eth0", 1)}


def test_xpath_selecting_nothing(m):
    data = xpath(m, "/vrrp:vrrp/vrrp:group[vrrp:vrid=77]")
    assert find_groups(data) == {}


def test_xpath_not_a_node_set(m):
    """§8.9.1: the expression must yield a node-set, else invalid-value."""
    with pytest.raises(RPCError) as ei:
        xpath(m, "count(/vrrp:vrrp/vrrp:group)")
    assert_rpc_error(ei, "invalid-value")


def test_xpath_syntax_error(m):
    with pytest.raises(RPCError) as ei:
        xpath(m, "/vrrp:vrrp/vrrp:group[")
    assert_rpc_error(ei, "invalid-value")


def test_xpath_missing_select(m):
    from ncclient.xml_ import new_ele

    f = new_ele("filter", type="xpath")
    with pytest.raises(RPCError) as ei:
        m.get_config("running", filter=f)
    assert_rpc_error(ei, ("missing-attribute", "invalid-value", "bad-attribute"))


def test_unknown_filter_type(m):
    from ncclient.xml_ import new_ele

    f = new_ele("filter", type="regex")
    with pytest.raises(RPCError) as ei:
        m.get_config("running", filter=f)
    assert_rpc_error(ei, ("bad-attribute", "invalid-value", "operation-not-supported"))
