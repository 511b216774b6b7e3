"""<edit-config> (RFC 6241 §7.2, §8.6, §8.5): operations, defaults, options, errors."""

import pytest
from lxml import etree
from ncclient.operations.rpc import RPCError

from conftest import (
    BASE_NS,
    DHCPS_NS,
    NS,
    RBK_NS,
    VRRP_NS,
    assert_rpc_error,
    config,
    error_info,
    get_groups,
    group,
    inline_source,
    vrrp,
)

# the target is not one this server accepts (the ietf-netconf YANG makes the
# running case depend on :writable-running): tags servers use for that
NOT_A_TARGET = ("operation-not-supported", "invalid-value", "bad-element", "unknown-element")

G1 = group(vrid=1, priority=150)
G2 = group(vrid=2, priority=160)


def pool(name="p1", extra=""):
    return (
        f'<dhcp-server xmlns="{DHCPS_NS}"><ip-pool><name>{name}</name>'
        f"<gateway>10.10.0.1</gateway><mask>255.255.255.0</mask>"
        f"<section><start>10.10.0.100</start><end>10.10.0.199</end></section>{extra}"
        f"</ip-pool></dhcp-server>"
    )


def pools(m, source="candidate"):
    data = m.get_config(source).data_ele
    return [p.findtext("dhcps:name", namespaces=NS) for p in data.iterfind("dhcps:dhcp-server/dhcps:ip-pool", NS)]


@pytest.fixture
def m(nc):
    nc.edit_config(target="candidate", config=config(vrrp(G1, G2)))
    return nc


def test_edit_running_refused(nc):
    """No :writable-running: running changes only through commit."""
    with pytest.raises(RPCError) as ei:
        nc.edit_config(target="running", config=config(vrrp(G1)))
    assert_rpc_error(ei, NOT_A_TARGET)
    assert get_groups(nc, "running") == {}


def test_edit_startup_refused(nc):
    """:startup adds <startup/> to copy-config, delete-config, lock, get-config
    and validate only (RFC 6241 §8.7.5); ietf-netconf's edit-config target
    has no startup case."""
    with pytest.raises(RPCError) as ei:
        nc.edit_config(target="startup", config=config(vrrp(G1)))
    assert_rpc_error(ei, NOT_A_TARGET)
    assert get_groups(nc, "startup") == {}


def test_merge_creates_and_changes(m):
    g = get_groups(m, "candidate")
    assert g[("eth0", 1)]["priority"] == "150"
    m.edit_config(target="candidate", config=config(vrrp(group(vrid=1, vips=(), preempt={"delay": 30}))))
    g = get_groups(m, "candidate")
    assert g[("eth0", 1)]["priority"] == "150", "merge must keep siblings"
    assert g[("eth0", 1)]["preempt/delay"] == "30"
    assert g[("eth0", 1)]["virtual-ip"] == ["192.0.2.1"]
    # running untouched until commit
    assert get_groups(m, "running") == {}


def test_merge_leaf_list_adds(m):
    m.edit_config(target="candidate", config=config(vrrp(group(vrid=1, vips=("192.0.2.101",)))))
    g = get_groups(m, "candidate")
    assert g[("eth0", 1)]["virtual-ip"] == ["192.0.2.1", "192.0.2.101"]


def test_ordered_by_user_order_kept(nc):
    nc.edit_config(target="candidate", config=config(vrrp(group(vrid=5, vips=("192.0.2.9", "192.0.2.3", "192.0.2.7")))))
    assert get_groups(nc, "candidate")[("eth0", 5)]["virtual-ip"] == ["192.0.2.9", "192.0.2.3", "192.0.2.7"]


def test_replace_entry(m):
    m.edit_config(
        target="candidate",
        config=config(vrrp(group(vrid=1, vips=("192.0.2.201",), attrs=' nc:operation="replace"', advertise_interval=2000))),
    )
    g = get_groups(m, "candidate")
    assert g[("eth0", 1)]["virtual-ip"] == ["192.0.2.201"]
    assert "priority" not in g[("eth0", 1)], "replace must drop leaves not given"
    assert g[("eth0", 1)]["advertise-interval"] == "2000"
    assert g[("eth0", 2)]["priority"] == "160", "replace must not touch siblings"


def test_replace_creates_when_missing(m):
    m.edit_config(target="candidate", config=config(vrrp(group(vrid=9, attrs=' nc:operation="replace"'))))
    assert ("eth0", 9) in get_groups(m, "candidate")


def test_replace_leaf(m):
    m.edit_config(
        target="candidate",
        config=config(vrrp('<group><interface>eth0</interface><vrid>1</vrid><priority nc:operation="replace">99</priority></group>')),
    )
    assert get_groups(m, "candidate")[("eth0", 1)]["priority"] == "99"


def test_create_new(m):
    m.edit_config(target="candidate", config=config(vrrp(group(vrid=3, attrs=' nc:operation="create"'))))
    assert ("eth0", 3) in get_groups(m, "candidate")


def test_create_existing_is_data_exists(m):
    with pytest.raises(RPCError) as ei:
        m.edit_config(target="candidate", config=config(vrrp(group(vrid=1, vips=(), attrs=' nc:operation="create"'))))
    assert_rpc_error(ei, "data-exists", "application", path="/vrrp:vrrp/vrrp:group[vrrp:interface='eth0'][vrrp:vrid='1']")
    assert get_groups(m, "candidate")[("eth0", 1)]["priority"] == "150"


def test_create_existing_leaf_is_data_exists(m):
    with pytest.raises(RPCError) as ei:
        m.edit_config(
            target="candidate",
            config=config(vrrp('<group><interface>eth0</interface><vrid>1</vrid><priority nc:operation="create">5</priority></group>')),
        )
    assert_rpc_error(ei, "data-exists", "application", path="/vrrp:vrrp/vrrp:group[vrrp:interface='eth0'][vrrp:vrid='1']/vrrp:priority")


def test_delete_existing(m):
    m.edit_config(
        target="candidate",
        config=config(vrrp('<group nc:operation="delete"><interface>eth0</interface><vrid>2</vrid></group>')),
    )
    assert set(get_groups(m, "candidate")) == {("eth0", 1)}


def test_delete_missing_is_data_missing(m):
    with pytest.raises(RPCError) as ei:
        m.edit_config(
            target="candidate",
            config=config(vrrp('<group nc:operation="delete"><interface>eth0</interface><vrid>42</vrid></group>')),
        )
    assert_rpc_error(ei, "data-missing", "application", path="/vrrp:vrrp/vrrp:group[vrrp:interface='eth0'][vrrp:vrid='42']")
    assert len(get_groups(m, "candidate")) == 2


def test_delete_leaf_reverts_to_default(m):
    m.edit_config(
        target="candidate",
        config=config(vrrp('<group><interface>eth0</interface><vrid>1</vrid><priority nc:operation="delete"/></group>')),
    )
    assert "priority" not in get_groups(m, "candidate")[("eth0", 1)]
    g = get_groups(m, "candidate", with_defaults="report-all")[("eth0", 1)]
    assert g.get("priority") == "100", f"deleted leaf does not fall back to its default: {g}"


def test_delete_missing_leaf_is_data_missing(m):
    with pytest.raises(RPCError) as ei:
        m.edit_config(
            target="candidate",
            config=config(vrrp('<group><interface>eth0</interface><vrid>1</vrid><advertise-interval nc:operation="delete"/></group>')),
        )
    assert_rpc_error(ei, "data-missing")


def test_delete_leaf_list_value(m):
    m.edit_config(target="candidate", config=config(vrrp(group(vrid=1, vips=("192.0.2.101",)))))
    m.edit_config(
        target="candidate",
        config=config(vrrp('<group><interface>eth0</interface><vrid>1</vrid><virtual-ip nc:operation="delete">192.0.2.1</virtual-ip></group>')),
    )
    assert get_groups(m, "candidate")[("eth0", 1)]["virtual-ip"] == ["192.0.2.101"]


def test_remove_existing_and_missing(m):
    m.edit_config(
        target="candidate",
        config=config(vrrp('<group nc:operation="remove"><interface>eth0</interface><vrid>2</vrid></group>')),
    )
    assert set(get_groups(m, "candidate")) == {("eth0", 1)}
    # remove of something absent is silently ignored
    m.edit_config(
        target="candidate",
        config=config(vrrp('<group nc:operation="remove"><interface>eth0</interface><vrid>2</vrid></group>')),
    )
    assert set(get_groups(m, "candidate")) == {("eth0", 1)}


def test_delete_whole_container(m):
    m.edit_config(target="candidate", config=config(vrrp(attrs=' nc:operation="delete"')))
    assert get_groups(m, "candidate") == {}


def test_operation_attribute_with_any_prefix(m):
    m.edit_config(
        target="candidate",
        config=f'<config xmlns="{BASE_NS}"><vrrp xmlns="{VRRP_NS}" xmlns:xc="{BASE_NS}">'
        '<group xc:operation="delete"><interface>eth0</interface><vrid>2</vrid></group></vrrp></config>',
    )
    assert set(get_groups(m, "candidate")) == {("eth0", 1)}


def test_bad_operation_value(m):
    with pytest.raises(RPCError) as ei:
        m.edit_config(
            target="candidate",
            config=config(vrrp('<group nc:operation="frobnicate"><interface>eth0</interface><vrid>2</vrid></group>')),
        )
    e = assert_rpc_error(ei, "bad-attribute")
    info = error_info(e)
    assert info.get("bad-attribute") == "operation"
    assert info.get("bad-element") == "group"


# --- default-operation ----------------------------------------------------


def test_default_operation_merge_is_default(m):
    m.edit_config(target="candidate", config=config(vrrp(group(vrid=3))), default_operation="merge")
    assert set(get_groups(m, "candidate")) == {("eth0", 1), ("eth0", 2), ("eth0", 3)}


def test_default_operation_replace_replaces_whole_datastore(m):
    m.edit_config(target="candidate", config=config(pool()))
    assert pools(m) == ["p1"]
    m.edit_config(target="candidate", config=config(vrrp(group(vrid=4))), default_operation="replace")
    assert set(get_groups(m, "candidate")) == {("eth0", 4)}
    assert pools(m) == [], "replace: the <config> completely replaces the datastore"


def test_default_operation_none_changes_nothing_without_operation(m):
    m.edit_config(target="candidate", config=config(vrrp(group(vrid=1, vips=(), priority=10))), default_operation="none")
    assert get_groups(m, "candidate")[("eth0", 1)]["priority"] == "150"


def test_default_operation_none_with_delete(m):
    m.edit_config(
        target="candidate",
        config=config(vrrp('<group nc:operation="delete"><interface>eth0</interface><vrid>2</vrid></group>')),
        default_operation="none",
    )
    assert set(get_groups(m, "candidate")) == {("eth0", 1)}


def test_default_operation_none_with_create_and_merge(m):
    m.edit_config(
        target="candidate",
        config=config(
            vrrp(
                group(vrid=6, attrs=' nc:operation="create"'),
                '<group><interface>eth0</interface><vrid>1</vrid><priority nc:operation="merge">42</priority></group>',
            )
        ),
        default_operation="none",
    )
    g = get_groups(m, "candidate")
    assert ("eth0", 6) in g
    assert g[("eth0", 1)]["priority"] == "42"


def test_default_operation_none_missing_parent_is_data_missing(m):
    """§7.2: with none, data for which there is no corresponding level in
    the target gives data-missing."""
    with pytest.raises(RPCError) as ei:
        m.edit_config(
            target="candidate",
            config=config(vrrp('<group><interface>eth7</interface><vrid>7</vrid><priority nc:operation="merge">42</priority></group>')),
            default_operation="none",
        )
    assert_rpc_error(ei, "data-missing")
    assert ("eth7", 7) not in get_groups(m, "candidate")


# --- test-option ------------------------------------------------------------


def test_test_only_valid_changes_nothing(m):
    m.edit_config(target="candidate", config=config(vrrp(group(vrid=3))), test_option="test-only")
    assert ("eth0", 3) not in get_groups(m, "candidate")


def test_test_only_invalid_is_reported(m):
    with pytest.raises(RPCError) as ei:
        m.edit_config(target="candidate", config=config(vrrp(group(vrid=3, priority=300))), test_option="test-only")
    assert_rpc_error(ei, "invalid-value")
    assert ("eth0", 3) not in get_groups(m, "candidate")


def test_test_then_set(m):
    m.edit_config(target="candidate", config=config(vrrp(group(vrid=3))), test_option="test-then-set")
    assert ("eth0", 3) in get_groups(m, "candidate")
    with pytest.raises(RPCError) as ei:
        m.edit_config(target="candidate", config=config(vrrp(group(vrid=4, priority=0))), test_option="test-then-set")
    assert_rpc_error(ei, "invalid-value")
    assert ("eth0", 4) not in get_groups(m, "candidate")


def test_set_skips_semantic_validation(m):
    """test-option set: no validation test; the candidate may hold data that
    commit/validate will refuse (RFC 7950 §8.3.3: enforced at commit)."""
    bad = group(vrid=3, version="v2", advertise_interval=1500)
    m.edit_config(target="candidate", config=config(vrrp(bad)), test_option="set")
    assert get_groups(m, "candidate")[("eth0", 3)]["advertise-interval"] == "1500"
    with pytest.raises(RPCError) as ei:
        m.validate("candidate")
    assert_rpc_error(ei, "operation-failed", app_tag="v2-advertise-interval-not-seconds")


def test_set_still_refuses_bad_types(m):
    with pytest.raises(RPCError) as ei:
        m.edit_config(target="candidate", config=config(vrrp(group(vrid=3, priority="high"))), test_option="set")
    assert_rpc_error(ei, "invalid-value")


# --- error-option ---------------------------------------------------------


def test_rollback_on_error_changes_nothing(m):
    edit = config(
        vrrp(
            group(vrid=1, vips=(), priority=77),
            group(vrid=3),
            group(vrid=4, priority=999),
        )
    )
    with pytest.raises(RPCError) as ei:
        m.edit_config(target="candidate", config=edit, error_option="rollback-on-error")
    assert_rpc_error(ei, "invalid-value")
    g = get_groups(m, "candidate")
    assert g[("eth0", 1)]["priority"] == "150"
    assert ("eth0", 3) not in g and ("eth0", 4) not in g


def test_rollback_on_error_with_data_exists(m):
    edit = config(vrrp(group(vrid=3), group(vrid=1, vips=(), attrs=' nc:operation="create"')))
    with pytest.raises(RPCError) as ei:
        m.edit_config(target="candidate", config=edit, error_option="rollback-on-error")
    assert_rpc_error(ei, "data-exists")
    assert ("eth0", 3) not in get_groups(m, "candidate")


def test_stop_on_error_reports_error(m):
    with pytest.raises(RPCError) as ei:
        m.edit_config(target="candidate", config=config(vrrp(group(vrid=4, priority=999))), error_option="stop-on-error")
    assert_rpc_error(ei, "invalid-value")


# --- schema errors ------------------------------------------------------------


def test_unknown_element(m):
    with pytest.raises(RPCError) as ei:
        m.edit_config(
            target="candidate",
            config=config(vrrp('<group><interface>eth0</interface><vrid>1</vrid><bogus>1</bogus></group>')),
        )
    e = assert_rpc_error(ei, "unknown-element", "application")
    assert error_info(e).get("bad-element") == "bogus"


def test_unknown_namespace(m):
    with pytest.raises(RPCError) as ei:
        m.edit_config(target="candidate", config=config('<thing xmlns="urn:example:nothing"><a>1</a></thing>'))
    assert_rpc_error(ei, ("unknown-namespace", "unknown-element"), "application")


def test_state_leaf_in_config_refused(m):
    with pytest.raises(RPCError) as ei:
        m.edit_config(
            target="candidate",
            config=config(vrrp('<group><interface>eth0</interface><vrid>1</vrid><state>master</state></group>')),
        )
    assert_rpc_error(ei, ("unknown-element", "invalid-value", "bad-element"))


def test_invalid_value_with_error_path(m):
    with pytest.raises(RPCError) as ei:
        m.edit_config(target="candidate", config=config(vrrp(group(vrid=1, vips=(), priority=300))))
    assert_rpc_error(
        ei,
        "invalid-value",
        "application",
        path="/vrrp:vrrp/vrrp:group[vrrp:interface='eth0'][vrrp:vrid='1']/vrrp:priority",
    )
    assert get_groups(m, "candidate")[("eth0", 1)]["priority"] == "150"


def test_invalid_key_value(m):
    with pytest.raises(RPCError) as ei:
        m.edit_config(target="candidate", config=config(vrrp(group(vrid=0))))
    assert_rpc_error(ei, "invalid-value", "application")


def test_invalid_ip_address(m):
    with pytest.raises(RPCError) as ei:
        m.edit_config(target="candidate", config=config(vrrp(group(vrid=3, vips=("192.0.2.300",)))))
    assert_rpc_error(ei, "invalid-value", "application")


def test_pattern_error_app_tag(m):
    with pytest.raises(RPCError) as ei:
        m.edit_config(target="candidate", config=config(vrrp(group(interface="eth/0", vrid=3))))
    assert_rpc_error(ei, "invalid-value", "application", app_tag="invalid-interface-name")


def test_invalid_enum(m):
    with pytest.raises(RPCError) as ei:
        m.edit_config(target="candidate", config=config(vrrp(group(vrid=3, version="v4"))))
    assert_rpc_error(ei, "invalid-value")


def test_missing_key(m):
    with pytest.raises(RPCError) as ei:
        m.edit_config(target="candidate", config=config(vrrp("<group><interface>eth0</interface><priority>5</priority></group>")))
    assert_rpc_error(ei, ("missing-element", "data-missing", "invalid-value"))


def test_error_path_rbk_prefix(nc):
    with pytest.raises(RPCError) as ei:
        nc.edit_config(
            target="candidate",
            config=config(
                f'<remote-backup-service xmlns="{RBK_NS}"><name>s1</name>'
                "<peer><address>10.0.0.2</address><source>10.0.0.1</source><port>70000</port></peer>"
                "</remote-backup-service>"
            ),
        )
    assert_rpc_error(
        ei, "invalid-value", "application", path="/rbk:remote-backup-service[rbk:name='s1']/rbk:peer/rbk:port"
    )


def test_error_path_dhcps_prefix(nc):
    with pytest.raises(RPCError) as ei:
        nc.edit_config(target="candidate", config=config(pool(extra="<lease-time>10</lease-time>")))
    assert_rpc_error(ei, "invalid-value", "application", path="/dhcps:dhcp-server/dhcps:ip-pool[dhcps:name='p1']/dhcps:lease-time")


# --- value errors name the node, the value and what is allowed -----------------
# (the allowed values come from the YANG types through libyang: range, length,
# enumeration, typedef; a restriction's own error-message is kept)


def edit_error(nc, body, tag="invalid-value", path=None, app_tag=None):
    with pytest.raises(RPCError) as ei:
        nc.edit_config(target="candidate", config=config(body))
    return assert_rpc_error(ei, tag, "application", app_tag=app_tag, path=path)


def test_range_error_says_what_is_allowed(m):
    for value in ("255", "300", "abc"):
        e = edit_error(
            m,
            vrrp(group(vrid=1, vips=(), priority=value)),
            path="/vrrp:vrrp/vrrp:group[vrrp:interface='eth0'][vrrp:vrid='1']/vrrp:priority",
        )
        assert e.message == f'priority must be 1..254, not "{value}"'
        assert error_info(e).get("bad-element") == "priority"


def test_range_error_of_a_key_names_the_key(m):
    e = edit_error(m, vrrp(group(vrid=0)))
    assert e.message == 'vrid must be 1..255, not "0"'


def test_range_error_keeps_the_units_and_max(nc):
    e = edit_error(
        nc,
        pool(extra="<lease-time>10</lease-time>"),
        path="/dhcps:dhcp-server/dhcps:ip-pool[dhcps:name='p1']/dhcps:lease-time",
    )
    assert e.message == 'lease-time must be 60..4294967295 seconds, not "10"'
    e = edit_error(
        nc,
        f'<remote-backup-service xmlns="{RBK_NS}"><name>s1</name>'
        "<peer><address>10.0.0.2</address><source>10.0.0.1</source><port>70000</port></peer>"
        "</remote-backup-service>",
        path="/rbk:remote-backup-service[rbk:name='s1']/rbk:peer/rbk:port",
    )
    assert e.message == 'port must be 1..65535, not "70000"'


def test_bad_ipv4_address_names_its_type_not_a_regex(m):
    e = edit_error(m, vrrp(group(vrid=3, vips=("192.0.2.300",))))
    assert e.message == 'virtual-ip must be an ipv4-address-no-zone, not "192.0.2.300"'
    e = edit_error(m, pool(extra="<dns-server>10.0.0.256</dns-server>"))
    assert e.message == 'dns-server must be an ipv4-address-no-zone, not "10.0.0.256"'


def test_enum_and_length_errors_list_what_is_allowed(m):
    e = edit_error(m, vrrp(group(vrid=3, version="v4")))
    assert e.message == 'version must be one of v2, v3, not "v4"'
    e = edit_error(m, pool(name="p" * 65))
    assert e.message.startswith("name must be a string of 1..64 characters, not "), e.message
    assert "(65 characters)" in e.message


def test_restriction_with_its_own_message_keeps_it(m):
    """hotlease-vrrp's interface pattern has an error-message and app-tag."""
    e = edit_error(m, vrrp(group(interface="eth/0", vrid=3)), app_tag="invalid-interface-name")
    assert "must be a string" not in e.message and "does not conform" not in e.message, e.message


def test_value_error_through_copy_config(nc):
    with pytest.raises(RPCError) as ei:
        nc.copy_config(source=inline_source(config(vrrp(group(vrid=1, priority=255)))), target="candidate")
    e = assert_rpc_error(ei, "invalid-value", "application")
    assert e.message == 'priority must be 1..254, not "255"'


def test_unknown_element_carries_the_parents_error_path(m):
    with pytest.raises(RPCError) as ei:
        m.edit_config(
            target="candidate",
            config=config(vrrp("<group><interface>eth0</interface><vrid>1</vrid><preempt><bogus>1</bogus></preempt></group>")),
        )
    e = assert_rpc_error(
        ei,
        "unknown-element",
        "application",
        path="/vrrp:vrrp/vrrp:group[vrrp:interface='eth0'][vrrp:vrid='1']/vrrp:preempt",
    )
    assert error_info(e).get("bad-element") == "bogus"


def test_edit_config_without_config(nc):
    r = nc  # ncclient requires a config; use a raw rpc through dispatch
    with pytest.raises(RPCError) as ei:
        r.dispatch(etree.fromstring(f'<edit-config xmlns="{BASE_NS}"><target><candidate/></target></edit-config>'))
    assert_rpc_error(ei, "missing-element")


def test_edit_config_url_not_supported(nc):
    with pytest.raises(RPCError) as ei:
        nc.dispatch(
            etree.fromstring(
                f'<edit-config xmlns="{BASE_NS}"><target><candidate/></target><url>file:///etc/passwd</url></edit-config>'
            )
        )
    assert_rpc_error(ei, ("operation-not-supported", "unknown-element", "invalid-value"))


def test_large_edit(nc):
    groups = "".join(group(interface=f"e{i // 250}", vrid=i % 250 + 1, vips=(f"10.{i // 250}.{i % 250}.1",)) for i in range(1000))
    nc.edit_config(target="candidate", config=config(vrrp(groups)))
    nc.commit()
    assert len(get_groups(nc, "running")) == 1000


def test_a_leaf_given_twice_is_bad_element_and_the_daemon_lives(m):
    """A list entry with its key (or another leaf) given twice: libyang's
    merge crashed the daemon on it (found by the netconf_rpc fuzz target).
    Now bad-element naming it, nothing changed, and the session goes on."""
    before = pools(m)
    twice = (
        f'<dhcp-server xmlns="{DHCPS_NS}"><ip-pool><name>p26</name><name>8</name></ip-pool>'
        f"<ip-pool><name>p26</name></ip-pool></dhcp-server>"
    )
    with pytest.raises(RPCError) as ei:
        m.edit_config(target="candidate", config=config(twice))
    assert_rpc_error(ei, "bad-element", "application")
    assert error_info(ei.value)["bad-element"] == "name"
    assert pools(m) == before
    m.edit_config(target="candidate", config=config(pool("p2")))
    assert "p2" in pools(m)
