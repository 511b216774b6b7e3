"""The YANG rules of the three modules, enforced through NETCONF.

Semantic rules (must, leafref, unique, min/max-elements, mandatory) are
checked when the candidate is validated or committed, and mapped to
rpc-errors per RFC 7950 §15; type/range/pattern errors are refused at
edit-config time with invalid-value.  Each refused commit leaves running
untouched.

The rules that compare a pool with every other pool are checked by hotleased
itself at commit, not by libyang (the YANG keeps their own-pool part): the
same app-tags and messages, error-type application, error-tag
operation-failed.  test_daemon_rules.py covers them; here the own-pool
variants of gateway-, server-identifier- and static-bind-in-section still
come from the YANG musts, and test_sections_overlap_across_pools checks that
the cross-pool rule is reported the same way whoever checks it.
"""

from pathlib import Path

import pytest
from ncclient.operations.rpc import RPCError

from conftest import (
    DHCPS_NS,
    NS,
    RBK_NS,
    ROOT,
    VRRP_NS,
    assert_error_path,
    assert_rpc_error,
    config,
    data_of,
    errors_of,
)

# The seed procedure's router A, as in yang-tests/valid.xml.
HOT = f"""
<vrrp xmlns="{VRRP_NS}">
  <group><interface>eth1</interface><vrid>1</vrid><virtual-ip>10.1.1.1</virtual-ip>
    <priority>120</priority><preempt><enabled>true</enabled><delay>1200</delay></preempt>
    <advertise-interval>1000</advertise-interval><version>v3</version></group>
</vrrp>
<ssl-policy xmlns="{RBK_NS}"><name>rbs-tls</name>
  <certificate>/etc/hotlease/tls/rtr-a.crt</certificate>
  <private-key>/etc/hotlease/tls/rtr-a.key</private-key>
  <trusted-ca>/etc/hotlease/tls/ca.crt</trusted-ca></ssl-policy>
<remote-backup-service xmlns="{RBK_NS}"><name>rbs1</name><ssl-policy>rbs-tls</ssl-policy>
  <peer><address>10.0.0.2</address><source>10.0.0.1</source><port>7000</port></peer></remote-backup-service>
<remote-backup-profile xmlns="{RBK_NS}"><name>rbp1</name><peer-backup>hot</peer-backup>
  <vrrp><vrid>1</vrid><interface>eth1</interface></vrrp><backup-id>1</backup-id>
  <remote-backup-service>rbs1</remote-backup-service><service-type>dhcp-server</service-type></remote-backup-profile>
<dhcp-server xmlns="{DHCPS_NS}"><interface><name>eth1</name></interface>
  <ip-pool><name>p1</name><gateway>10.1.1.1</gateway><mask>255.255.255.0</mask>
    <section><start>10.1.1.10</start><end>10.1.1.200</end></section>
    <excluded><start>10.1.1.100</start><end>10.1.1.109</end></excluded>
    <dns-server>10.1.1.1</dns-server><dns-server>192.0.2.53</dns-server>
    <domain-name>lab.example</domain-name><lease-time>3600</lease-time>
    <option><code>42</code><ip-address>192.0.2.123</ip-address></option>
    <option><code>60</code><text>hotlease</text></option>
    <option><code>43</code><hex>01:04:c0:00:02:01</hex></option>
    <server-identifier>10.1.1.1</server-identifier>
    <remote-backup-profile>rbp1</remote-backup-profile>
    <static-bind><ip-address>10.1.1.250</ip-address><mac-address>02:00:00:00:00:aa</mac-address></static-bind>
  </ip-pool></dhcp-server>
"""

POOL_PATH = "/dhcps:dhcp-server/dhcps:ip-pool[dhcps:name='{}']"


def dhcp(*pools):
    return f'<dhcp-server xmlns="{DHCPS_NS}">' + "".join(pools) + "</dhcp-server>"


def ip_pool(name="q1", body="<gateway>172.16.1.1</gateway><mask>255.255.255.0</mask>"):
    return f"<ip-pool><name>{name}</name>{body}</ip-pool>"


def vrrp_group(interface, vrid, vip, extra=""):
    return (
        f'<vrrp xmlns="{VRRP_NS}"><group><interface>{interface}</interface><vrid>{vrid}</vrid>'
        f"<virtual-ip>{vip}</virtual-ip>{extra}</group></vrrp>"
    )


@pytest.fixture
def m(nc):
    """A session whose running holds the seed configuration."""
    nc.edit_config(target="candidate", config=config(HOT))
    nc.commit()
    return nc


def running_xml(m):
    return data_of(m.get_config("running"))


def refused_at_commit(m, edit, tag, app_tag=None, path=None, type_="application"):
    """Put *edit* into the candidate (test-option set), expect validate and
    commit to fail with the given error, and running to be unchanged."""
    from lxml import etree

    before = etree.tostring(running_xml(m), method="c14n")
    m.edit_config(target="candidate", config=config(edit), test_option="set")
    with pytest.raises(RPCError) as ei:
        m.validate("candidate")
    check(ei.value, tag, app_tag, path, type_)
    with pytest.raises(RPCError) as ei:
        m.commit()
    check(ei.value, tag, app_tag, path, type_)
    assert etree.tostring(running_xml(m), method="c14n") == before, "a refused commit changed running"
    m.discard_changes()


def check(exc, tag, app_tag, path, type_):
    """Some rpc-error in the reply matches (tag, app_tag[, path])."""
    errs = errors_of(exc)
    tags = [tag] if isinstance(tag, str) else tag
    app_tags = [app_tag] if isinstance(app_tag, (str, type(None))) else app_tag
    hits = [e for e in errs if e.tag in tags and (app_tag is None or e.app_tag in app_tags)]
    assert hits, "no rpc-error with tag {} app-tag {}: {}".format(
        tags, app_tags, [(e.tag, e.app_tag, e.path, e.message) for e in errs]
    )
    for e in hits:
        assert e.type == type_, (e.type, e.message)
        assert e.severity == "error"
    if path is not None:
        assert_error_path(hits[0], path)


def test_seed_configuration_commits(m):
    data = running_xml(m)
    assert data.find("vrrp:vrrp/vrrp:group", NS) is not None
    assert data.findtext("rbk:remote-backup-profile/rbk:name", namespaces=NS) == "rbp1"
    assert data.findtext("dhcps:dhcp-server/dhcps:ip-pool/dhcps:server-identifier", namespaces=NS) == "10.1.1.1"
    assert [x.text for x in data.iterfind("dhcps:dhcp-server/dhcps:ip-pool/dhcps:dns-server", NS)] == [
        "10.1.1.1",
        "192.0.2.53",
    ]


def test_yang_tests_valid_file_commits(nc):
    p = ROOT / "yang-tests" / "valid.xml"
    if not p.exists():
        pytest.skip("yang-tests/valid.xml not present")
    nc.edit_config(target="candidate", config=config(Path(p).read_text().split("-->", 1)[-1]))
    nc.commit()


# --- hotlease-vrrp ------------------------------------------------------------


def test_v2_advertise_interval_whole_seconds(m):
    refused_at_commit(
        m,
        vrrp_group("eth2", 2, "10.2.2.1", "<advertise-interval>1500</advertise-interval><version>v2</version>"),
        "operation-failed",
        "v2-advertise-interval-not-seconds",
        "/vrrp:vrrp/vrrp:group[vrrp:interface='eth2'][vrrp:vrid='2']",
    )


def test_v2_group_with_whole_seconds_accepted(m):
    m.edit_config(
        target="candidate",
        config=config(vrrp_group("eth2", 2, "10.2.2.1", "<advertise-interval>3000</advertise-interval><version>v2</version>")),
    )
    m.commit()


def test_v3_advertise_interval_centiseconds(m):
    refused_at_commit(
        m,
        vrrp_group("eth2", 2, "10.2.2.1", "<advertise-interval>1005</advertise-interval>"),
        "operation-failed",
        "v3-advertise-interval-not-centiseconds",
    )


def test_virtual_ip_in_one_group_only(m):
    refused_at_commit(m, vrrp_group("eth2", 2, "10.1.1.1"), "operation-failed", "virtual-ip-in-use")


def test_advertise_interval_range(m):
    with pytest.raises(RPCError) as ei:
        m.edit_config(target="candidate", config=config(vrrp_group("eth1", 1, "10.1.1.1", "<advertise-interval>5</advertise-interval>")))
    assert_rpc_error(ei, "invalid-value", "application", path="/vrrp:vrrp/vrrp:group[vrrp:interface='eth1'][vrrp:vrid='1']/vrrp:advertise-interval")


def test_priority_255_reserved(m):
    with pytest.raises(RPCError) as ei:
        m.edit_config(target="candidate", config=config(vrrp_group("eth1", 1, "10.1.1.1", "<priority>255</priority>")))
    assert_rpc_error(ei, "invalid-value")


def test_too_many_virtual_ips(m):
    vips = "".join(f"<virtual-ip>10.9.{i // 250}.{i % 250 + 1}</virtual-ip>" for i in range(256))
    refused_at_commit(
        m,
        f'<vrrp xmlns="{VRRP_NS}"><group><interface>eth9</interface><vrid>9</vrid>{vips}</group></vrrp>',
        "operation-failed",
        "too-many-elements",
    )


def test_deleting_group_used_by_profile_refused(m):
    refused_at_commit(
        m,
        f'<vrrp xmlns="{VRRP_NS}"><group xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0" nc:operation="delete">'
        "<interface>eth1</interface><vrid>1</vrid></group></vrrp>",
        ["data-missing", "operation-failed"],
        ["instance-required", "vrrp-group-not-found", "server-identifier-not-virtual-ip"],
    )


# --- hotlease-remote-backup ------------------------------------------------------


def profile(name="rbp2", vrid=1, interface="eth1", service="rbs1", backup_id=2, types=("dhcp-server",)):
    st = "".join(f"<service-type>{t}</service-type>" for t in types)
    return (
        f'<remote-backup-profile xmlns="{RBK_NS}"><name>{name}</name><peer-backup>hot</peer-backup>'
        f"<vrrp><vrid>{vrid}</vrid><interface>{interface}</interface></vrrp><backup-id>{backup_id}</backup-id>"
        f"<remote-backup-service>{service}</remote-backup-service>{st}</remote-backup-profile>"
    )


def service(name="rbs2", address="10.0.0.3", source="10.0.0.1", port=7001, extra=""):
    return (
        f'<remote-backup-service xmlns="{RBK_NS}"><name>{name}</name>{extra}'
        f"<peer><address>{address}</address><source>{source}</source><port>{port}</port></peer></remote-backup-service>"
    )


def test_profile_with_nonexistent_vrrp_group(m):
    refused_at_commit(
        m,
        profile(vrid=9, interface="eth9"),
        ["data-missing", "operation-failed"],
        ["instance-required", "vrrp-group-not-found"],
    )


def test_profile_with_mismatched_interface_and_vrid(m):
    """vrid and interface each exist, but not as one group: the must."""
    m.edit_config(target="candidate", config=config(vrrp_group("eth2", 2, "10.2.2.1")))
    m.commit()
    refused_at_commit(
        m,
        profile(vrid=2, interface="eth1"),
        "operation-failed",
        "vrrp-group-not-found",
        "/rbk:remote-backup-profile[rbk:name='rbp2']/rbk:vrrp",
    )


def test_profile_with_nonexistent_service(m):
    refused_at_commit(
        m,
        profile(service="nope"),
        "data-missing",
        "instance-required",
        "/rbk:remote-backup-profile[rbk:name='rbp2']/rbk:remote-backup-service",
    )


def test_reference_to_nothing_says_what_exists(m):
    """A leafref without its target names the node, the value and the
    values that exist (issue 14: errors that say what is allowed)."""
    m.edit_config(target="candidate", config=config(profile(service="nope")), test_option="set")
    for rpc in (lambda: m.validate("candidate"), m.commit):
        with pytest.raises(RPCError) as ei:
            rpc()
        hits = [e for e in errors_of(ei.value) if e.app_tag == "instance-required"]
        assert hits, [(e.tag, e.app_tag, e.message) for e in errors_of(ei.value)]
        assert hits[0].message == (
            'remote-backup-service must be the name of an existing remote-backup-service (rbs1), not "nope"'
        ), hits[0].message
    m.discard_changes()


def test_profile_backup_id_unique_per_service(m):
    refused_at_commit(m, profile(backup_id=1), "operation-failed", "data-not-unique")


def test_service_peer_is_not_source(m):
    refused_at_commit(
        m,
        service(address="10.0.0.1", source="10.0.0.1"),
        "operation-failed",
        "peer-address-is-source",
        "/rbk:remote-backup-service[rbk:name='rbs2']/rbk:peer",
    )


def test_service_source_port_unique(m):
    refused_at_commit(m, service(port=7000), "operation-failed", "data-not-unique")


def test_service_dead_time_above_keepalive(m):
    """dead-time must be longer than keepalive-interval, also when it keeps
    its default (3000 ms)."""
    for extra in (
        "<keepalive-interval>2000</keepalive-interval><dead-time>2000</dead-time>",
        "<keepalive-interval>5000</keepalive-interval>",
    ):
        refused_at_commit(
            m,
            service(extra=extra),
            "operation-failed",
            "dead-time-not-above-keepalive",
            "/rbk:remote-backup-service[rbk:name='rbs2']",
        )


def test_service_missing_ssl_policy(m):
    refused_at_commit(
        m,
        service(extra="<ssl-policy>ghost</ssl-policy>"),
        "data-missing",
        "instance-required",
        "/rbk:remote-backup-service[rbk:name='rbs2']/rbk:ssl-policy",
    )


def test_service_mandatory_port_missing(m):
    from lxml import etree

    before = etree.tostring(running_xml(m), method="c14n")
    m.edit_config(
        target="candidate",
        config=config(f'<remote-backup-service xmlns="{RBK_NS}"><name>rbs3</name><peer><address>10.0.0.9</address><source>10.0.0.1</source></peer></remote-backup-service>'),
        test_option="set",
    )
    with pytest.raises(RPCError) as ei:
        m.commit()
    e = errors_of(ei.value)[0]
    assert e.type == "application" and e.severity == "error"
    assert e.tag in ("data-missing", "missing-element", "operation-failed")
    assert etree.tostring(running_xml(m), method="c14n") == before


def test_ssl_policy_relative_path(m):
    with pytest.raises(RPCError) as ei:
        m.edit_config(
            target="candidate",
            config=config(f'<ssl-policy xmlns="{RBK_NS}"><name>x</name><certificate>certs/a.crt</certificate><private-key>/k</private-key></ssl-policy>'),
        )
    assert_rpc_error(ei, "invalid-value", "application", app_tag="relative-file-path",
                     path="/rbk:ssl-policy[rbk:name='x']/rbk:certificate")


# --- hotlease-dhcp-server ------------------------------------------------------


def test_section_outside_subnet(m):
    refused_at_commit(
        m,
        dhcp(ip_pool(body="<gateway>172.16.1.1</gateway><mask>255.255.255.0</mask><section><start>172.16.2.10</start><end>172.16.2.20</end></section>")),
        "operation-failed",
        "section-outside-subnet",
        POOL_PATH.format("q1") + "/dhcps:section[dhcps:start='172.16.2.10']",
    )


def test_section_on_broadcast_address(m):
    refused_at_commit(
        m,
        dhcp(ip_pool(body="<network>172.16.1.0</network><mask>255.255.255.0</mask><section><start>172.16.1.10</start><end>172.16.1.255</end></section>")),
        "operation-failed",
        "section-outside-subnet",
    )


def test_section_end_before_start(m):
    refused_at_commit(
        m,
        dhcp(ip_pool(body="<gateway>172.16.1.1</gateway><mask>255.255.255.0</mask><section><start>172.16.1.50</start><end>172.16.1.40</end></section>")),
        "operation-failed",
        "section-end-before-start",
    )


def test_sections_overlap_in_pool(m):
    refused_at_commit(
        m,
        dhcp(ip_pool(body="<gateway>172.16.1.1</gateway><mask>255.255.255.0</mask>"
                     "<section><start>172.16.1.10</start><end>172.16.1.50</end></section>"
                     "<section><start>172.16.1.40</start><end>172.16.1.60</end></section>")),
        "operation-failed",
        "section-overlap",
    )


def test_sections_overlap_across_pools(m):
    """Cross-pool: enforced by the daemon at commit, not by a YANG must."""
    refused_at_commit(
        m,
        dhcp(ip_pool(body="<network>10.1.0.0</network><mask>255.255.0.0</mask>"
                     "<section><start>10.1.1.150</start><end>10.1.1.160</end></section>")),
        "operation-failed",
        "section-overlap-other-pool",
    )


def test_server_identifier_in_section(m):
    """Own pool: the YANG must (the cross-pool part is in test_daemon_rules.py)."""
    refused_at_commit(
        m,
        dhcp(ip_pool(body="<gateway>172.16.1.1</gateway><mask>255.255.255.0</mask>"
                     "<section><start>172.16.1.10</start><end>172.16.1.50</end></section>"
                     "<server-identifier>172.16.1.20</server-identifier>")),
        "operation-failed",
        "server-identifier-in-section",
    )


def test_static_bind_in_section(m):
    """Own pool: the YANG must (the cross-pool part is in test_daemon_rules.py)."""
    refused_at_commit(
        m,
        dhcp(ip_pool(body="<gateway>172.16.1.1</gateway><mask>255.255.255.0</mask>"
                     "<section><start>172.16.1.10</start><end>172.16.1.50</end></section>"
                     "<static-bind><ip-address>172.16.1.11</ip-address><mac-address>02:00:00:00:00:01</mac-address></static-bind>")),
        "operation-failed",
        "static-bind-in-section",
    )


def test_static_bind_outside_subnet(m):
    refused_at_commit(
        m,
        dhcp(ip_pool(body="<gateway>172.16.1.1</gateway><mask>255.255.255.0</mask>"
                     "<static-bind><ip-address>172.16.9.11</ip-address><mac-address>02:00:00:00:00:01</mac-address></static-bind>")),
        "operation-failed",
        "static-bind-outside-subnet",
    )


def test_static_bind_mac_unique(m):
    refused_at_commit(
        m,
        dhcp(ip_pool(body="<gateway>172.16.1.1</gateway><mask>255.255.255.0</mask>"
                     "<static-bind><ip-address>172.16.1.11</ip-address><mac-address>02:00:00:00:00:01</mac-address></static-bind>"
                     "<static-bind><ip-address>172.16.1.12</ip-address><mac-address>02:00:00:00:00:01</mac-address></static-bind>")),
        "operation-failed",
        "data-not-unique",
    )


def test_gateway_outside_subnet(m):
    refused_at_commit(
        m,
        dhcp(ip_pool(body="<gateway>172.16.9.1</gateway><network>172.16.1.0</network><mask>255.255.255.0</mask>")),
        "operation-failed",
        "gateway-outside-subnet",
    )


def test_gateway_in_section(m):
    """Own pool: the YANG must (the cross-pool part is in test_daemon_rules.py)."""
    refused_at_commit(
        m,
        dhcp(ip_pool(body="<gateway>172.16.1.1</gateway><gateway>172.16.1.20</gateway><mask>255.255.255.0</mask>"
                     "<section><start>172.16.1.10</start><end>172.16.1.50</end></section>")),
        "operation-failed",
        "gateway-in-section",
    )


def test_too_many_gateways(m):
    gws = "".join(f"<gateway>172.16.1.{i}</gateway>" for i in range(1, 10))
    refused_at_commit(m, dhcp(ip_pool(body=gws + "<mask>255.255.255.0</mask>")), "operation-failed", "too-many-elements")


def test_pool_subnet_missing(m):
    refused_at_commit(
        m,
        dhcp(ip_pool(body="<mask>255.255.255.0</mask>")),
        "operation-failed",
        "pool-subnet-missing",
        POOL_PATH.format("q1"),
    )


def test_network_host_bits_set(m):
    refused_at_commit(
        m,
        dhcp(ip_pool(body="<network>172.16.1.5</network><mask>255.255.255.0</mask>")),
        "operation-failed",
        "network-host-bits-set",
    )


def test_invalid_netmask(m):
    with pytest.raises(RPCError) as ei:
        m.edit_config(target="candidate", config=config(dhcp(ip_pool(body="<network>172.16.1.0</network><mask>255.0.255.0</mask>"))))
    assert_rpc_error(ei, "invalid-value", "application", app_tag="invalid-netmask", path=POOL_PATH.format("q1") + "/dhcps:mask")


def test_pool_profile_must_serve_dhcp(m):
    m.edit_config(
        target="candidate",
        config=config(vrrp_group("eth2", 2, "172.16.1.1"), service(), profile(name="rbp2", vrid=2, interface="eth2", service="rbs2", types=())),
    )
    m.commit()
    refused_at_commit(
        m,
        dhcp(ip_pool(body="<gateway>172.16.1.1</gateway><mask>255.255.255.0</mask><server-identifier>172.16.1.1</server-identifier>"
                     "<remote-backup-profile>rbp2</remote-backup-profile>")),
        "operation-failed",
        "profile-not-dhcp-server",
        POOL_PATH.format("q1") + "/dhcps:remote-backup-profile",
    )


def test_pool_profile_server_identifier_is_vip(m):
    refused_at_commit(
        m,
        dhcp(ip_pool(name="p1", body="<server-identifier>10.1.1.5</server-identifier>")),
        "operation-failed",
        "server-identifier-not-virtual-ip",
        POOL_PATH.format("p1"),
    )


def test_pool_profile_must_exist(m):
    # both the leafref and the service-type must fail; either error names the node
    refused_at_commit(
        m,
        dhcp(ip_pool(body="<gateway>172.16.1.1</gateway><mask>255.255.255.0</mask><remote-backup-profile>ghost</remote-backup-profile>")),
        ["data-missing", "operation-failed"],
        ["instance-required", "profile-not-dhcp-server"],
        POOL_PATH.format("q1") + "/dhcps:remote-backup-profile",
    )


def test_reserved_option_code(m):
    refused_at_commit(
        m,
        dhcp(ip_pool(body="<gateway>172.16.1.1</gateway><mask>255.255.255.0</mask><option><code>53</code><hex>01</hex></option>")),
        "operation-failed",
        "option-reserved",
    )


def test_option_needs_a_value(m):
    refused_at_commit(
        m,
        dhcp(ip_pool(body="<gateway>172.16.1.1</gateway><mask>255.255.255.0</mask><option><code>66</code></option>")),
        "data-missing",
        "missing-choice",
    )


def test_renew_not_before_rebind(m):
    refused_at_commit(
        m,
        dhcp(ip_pool(body="<gateway>172.16.1.1</gateway><mask>255.255.255.0</mask>"
                     "<lease-time>3600</lease-time><renew-time>3000</renew-time><rebind-time>2000</rebind-time>")),
        "operation-failed",
        ["renew-time-not-before-rebind", "rebind-time-out-of-range"],
    )


def test_rebind_beyond_lease(m):
    refused_at_commit(
        m,
        dhcp(ip_pool(body="<gateway>172.16.1.1</gateway><mask>255.255.255.0</mask>"
                     "<lease-time>3600</lease-time><rebind-time>4000</rebind-time>")),
        "operation-failed",
        "rebind-time-out-of-range",
    )


def test_dhcp_interface_name_pattern(m):
    with pytest.raises(RPCError) as ei:
        m.edit_config(target="candidate", config=config(f'<dhcp-server xmlns="{DHCPS_NS}"><interface><name>..</name></interface></dhcp-server>'))
    assert_rpc_error(ei, "invalid-value", app_tag="invalid-interface-name")
