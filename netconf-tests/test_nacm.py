"""RFC 8341 access control (issue 12): ietf-netconf-acm configured over
NETCONF like any module, and enforced for every user but the bootstrap
file's recovery-user (admin here, as for the whole suite):

* alice (group pool-operators) reads everything, writes only DHCP pools;
* bob (group limited) may not run batch-backup or kill-session, and has
  no write rule at all (write-default deny);
* carol (group no-leases) may not read lease entries nor the VRRP tree.
"""

from __future__ import annotations

import subprocess

import pytest
from lxml import etree
from ncclient.operations import RPCError

from conftest import (
    DHCPS_NS,
    HOTLEASED,
    PASSWORD,
    RBK_NS,
    USER,
    VRRP_NS,
    assert_rpc_error,
    config,
    group,
    vrrp,
)

NACM_NS = "urn:ietf:params:xml:ns:yang:ietf-netconf-acm"
N = {"n": NACM_NS, "d": DHCPS_NS, "v": VRRP_NS}

RULES = f"""<nacm xmlns="{NACM_NS}">
  <groups>
    <group><name>pool-operators</name><user-name>alice</user-name></group>
    <group><name>limited</name><user-name>bob</user-name></group>
    <group><name>no-leases</name><user-name>carol</user-name></group>
  </groups>
  <rule-list><name>pool-operators</name><group>pool-operators</group>
    <rule><name>write-pools</name><module-name>hotlease-dhcp-server</module-name>
      <path xmlns:dhcps="{DHCPS_NS}">/dhcps:dhcp-server/dhcps:ip-pool</path>
      <access-operations>create update delete</access-operations><action>permit</action></rule>
    <rule><name>read-all</name><module-name>*</module-name>
      <access-operations>read</access-operations><action>permit</action></rule>
  </rule-list>
  <rule-list><name>limited</name><group>limited</group>
    <rule><name>no-batch-backup</name><module-name>hotlease-remote-backup</module-name>
      <rpc-name>batch-backup</rpc-name><access-operations>exec</access-operations><action>deny</action></rule>
    <rule><name>no-kill</name><module-name>ietf-netconf</module-name>
      <rpc-name>kill-session</rpc-name><access-operations>exec</access-operations><action>deny</action></rule>
  </rule-list>
  <rule-list><name>no-leases</name><group>no-leases</group>
    <rule><name>hide-leases</name><module-name>hotlease-dhcp-server</module-name>
      <path xmlns:dhcps="{DHCPS_NS}">/dhcps:dhcp-server/dhcps:lease</path>
      <access-operations>read</access-operations><action>deny</action></rule>
    <rule><name>hide-vrrp</name><module-name>hotlease-vrrp</module-name>
      <path xmlns:vrrp="{VRRP_NS}">/vrrp:vrrp</path>
      <access-operations>read</access-operations><action>deny</action></rule>
  </rule-list>
</nacm>"""


def ip_pool(name: str, i: int) -> str:
    return (f"<ip-pool><name>{name}</name><gateway>10.0.{i}.1</gateway><mask>255.255.255.0</mask>"
            f"<section><start>10.0.{i}.10</start><end>10.0.{i}.20</end></section></ip-pool>")


def dhcp(*pools: str) -> str:
    return f'<dhcp-server xmlns="{DHCPS_NS}">{"".join(pools)}</dhcp-server>'


def users(creds) -> list:
    h = creds["password_hash"]
    return [{"name": n, "password-hash": h} for n in (USER, "alice", "bob", "carol")]


@pytest.fixture
def d(daemon_factory, creds):
    """A daemon whose admin (the recovery user) set the rules, one pool
    and one VRRP group."""
    d = daemon_factory(users=users(creds))
    admin = d.connect()
    admin.edit_config(target="candidate", config=config(RULES, dhcp(ip_pool("p1", 1)), vrrp(group())))
    admin.commit()
    return d


def running(m) -> etree._Element:
    return m.get_config("running").data_ele


def priorities(data) -> list:
    return [p.text for p in data.iterfind("v:vrrp/v:group/v:priority", N)]


def counters(admin) -> dict:
    data = admin.get(filter=("subtree", f'<nacm xmlns="{NACM_NS}"/>')).data_ele
    n = data.find("n:nacm", N)
    return {k: int(n.findtext(f"n:{k}", namespaces=N)) for k in
            ("denied-operations", "denied-data-writes", "denied-notifications")}


def test_rules_are_configuration_and_nacm_is_protected(d):
    admin = d.connect()
    nacm = running(admin).find("n:nacm", N)
    assert {g.findtext("n:name", namespaces=N) for g in nacm.iterfind("n:groups/n:group", N)} == {
        "pool-operators", "limited", "no-leases"}
    # RFC 8341 defaults, from the YANG module
    full = admin.get_config("running", with_defaults="report-all").data_ele.find("n:nacm", N)
    assert [full.findtext(f"n:{k}", namespaces=N) for k in
            ("enable-nacm", "read-default", "write-default", "exec-default")] == ["true", "permit", "deny", "permit"]
    # ietf-netconf-acm is default-deny-all: bob neither sees nor changes it
    bob = d.connect(user="bob", password=PASSWORD)
    assert running(bob).find("n:nacm", N) is None
    assert running(bob).find("v:vrrp", N) is not None
    with pytest.raises(RPCError) as e:
        bob.edit_config(target="candidate", config=config(f'<nacm xmlns="{NACM_NS}"><enable-nacm>false</enable-nacm></nacm>'))
    assert_rpc_error(e, "access-denied", "application")
    # alice may read it (read-all), not write it
    alice = d.connect(user="alice", password=PASSWORD)
    assert running(alice).find("n:nacm", N) is not None
    with pytest.raises(RPCError) as e:
        alice.edit_config(target="candidate", config=config(f'<nacm xmlns="{NACM_NS}"><read-default>deny</read-default></nacm>'))
    err = assert_rpc_error(e, "access-denied", "application")
    pe = err.xml.find("{urn:ietf:params:xml:ns:netconf:base:1.0}error-path")
    assert pe.text.strip() == "/nacm:nacm/nacm:read-default" and pe.nsmap["nacm"] == NACM_NS


def test_pool_operator_writes_pools_only(d):
    admin = d.connect()
    alice = d.connect(user="alice", password=PASSWORD)
    before = counters(admin)
    alice.edit_config(target="candidate", config=config(dhcp(ip_pool("p2", 2))))
    alice.commit()
    pools = {p.findtext("d:name", namespaces=N) for p in running(alice).iterfind("d:dhcp-server/d:ip-pool", N)}
    assert pools == {"p1", "p2"}
    alice.edit_config(target="candidate", config=config(
        f'<dhcp-server xmlns="{DHCPS_NS}"><ip-pool xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0" nc:operation="delete"><name>p2</name></ip-pool></dhcp-server>'))
    alice.commit()
    # a VRRP change is refused, and the candidate keeps nothing of it
    with pytest.raises(RPCError) as e:
        alice.edit_config(target="candidate", config=config(vrrp(group(priority=150))))
    err = assert_rpc_error(e, "access-denied", "application")
    assert "vrrp" in (err.path or ""), err.path
    assert "150" not in priorities(alice.get_config("candidate").data_ele)
    after = counters(admin)
    assert after["denied-data-writes"] == before["denied-data-writes"] + 1
    assert after["denied-operations"] == before["denied-operations"] + 1


def test_limited_user_cannot_batch_backup_or_kill(d):
    admin = d.connect()
    bob = d.connect(user="bob", password=PASSWORD)
    alice = d.connect(user="alice", password=PASSWORD)
    before = counters(admin)
    rpc = (f'<batch-backup xmlns="{RBK_NS}"><service>none</service>'
           "<service-type>dhcp-server</service-type></batch-backup>")
    with pytest.raises(RPCError) as e:
        bob.dispatch(etree.fromstring(rpc))
    assert_rpc_error(e, "access-denied", "protocol")
    # alice may run it: what stops her is that the service does not exist
    with pytest.raises(RPCError) as e:
        alice.dispatch(etree.fromstring(rpc))
    assert errors_tag(e) != "access-denied"
    victim = d.connect(user="carol", password=PASSWORD)
    sid = victim.session_id
    with pytest.raises(RPCError) as e:
        bob.kill_session(sid)
    assert_rpc_error(e, "access-denied", "protocol")
    # kill-session is default-deny-all: alice has no rule for it either
    with pytest.raises(RPCError) as e:
        alice.kill_session(sid)
    assert_rpc_error(e, "access-denied", "protocol")
    assert victim.get_config("running").ok
    # bob may still read and close
    assert running(bob).find("d:dhcp-server", N) is not None
    after = counters(admin)
    assert after["denied-operations"] == before["denied-operations"] + 3
    assert after["denied-data-writes"] == before["denied-data-writes"]
    admin.kill_session(sid)
    bob.close_session()


def errors_tag(excinfo) -> str:
    return excinfo.value.tag


def test_unreadable_data_is_omitted_and_not_leaked(d):
    carol = d.connect(user="carol", password=PASSWORD)
    data = carol.get().data_ele
    assert data.find("v:vrrp", N) is None
    assert data.find("d:dhcp-server/d:ip-pool", N) is not None
    assert data.find("n:nacm", N) is None
    assert carol.get_config("running", filter=("subtree", f'<vrrp xmlns="{VRRP_NS}"/>')).data_ele.find("v:vrrp", N) is None
    assert carol.get(filter=("xpath", ({"vrrp": VRRP_NS}, "/vrrp:vrrp"))).data_ele.find("v:vrrp", N) is None
    # a replace of the whole configuration would delete the VRRP group she
    # may not read: refused, and the error names no VRRP node
    with pytest.raises(RPCError) as e:
        carol.edit_config(target="candidate", default_operation="replace",
                          config=config(dhcp(ip_pool("p1", 1))))
    err = assert_rpc_error(e, "access-denied", "application")
    assert err.path is None and "vrrp" not in (err.message or ""), etree.tostring(err.xml)


def test_recovery_user_bypasses_everything(d):
    admin = d.connect()
    deny_all = f"""<nacm xmlns="{NACM_NS}"><rule-list><name>lockout</name><group>*</group>
      <rule><name>nothing</name><module-name>*</module-name><access-operations>*</access-operations>
      <action>deny</action></rule></rule-list></nacm>"""
    admin.edit_config(target="candidate", config=config(deny_all))
    admin.commit()
    alice = d.connect(user="alice", password=PASSWORD)
    for call in (lambda: alice.get_config("running"), lambda: alice.get(), lambda: alice.lock("candidate")):
        with pytest.raises(RPCError) as e:
            call()
        assert_rpc_error(e, "access-denied", "protocol")
    alice.close_session()  # always allowed
    # the recovery user reads, writes and repairs
    assert running(admin).find("n:nacm/n:rule-list", N) is not None
    admin.edit_config(target="candidate", config=config(vrrp(group(priority=120))))
    admin.edit_config(target="candidate", config=config(
        f'<nacm xmlns="{NACM_NS}"><rule-list xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0" nc:operation="delete"><name>lockout</name></rule-list></nacm>'))
    admin.commit()
    assert "<priority>120</priority>" in admin.get_config("running").xml
    alice = d.connect(user="alice", password=PASSWORD)
    assert running(alice).find("v:vrrp", N) is not None


def test_nacm_disabled_checks_nothing(d):
    admin = d.connect()
    admin.edit_config(target="candidate", config=config(f'<nacm xmlns="{NACM_NS}"><enable-nacm>false</enable-nacm></nacm>'))
    admin.commit()
    bob = d.connect(user="bob", password=PASSWORD)
    bob.edit_config(target="candidate", config=config(vrrp(group(priority=130))))
    bob.commit()
    assert running(bob).find("n:nacm", N) is not None
    assert "<priority>130</priority>" in admin.get_config("running").xml


def test_refused_commit_changes_nothing(d):
    admin = d.connect()
    alice = d.connect(user="alice", password=PASSWORD)
    before = etree.tostring(running(admin))
    writes = counters(admin)["denied-data-writes"]
    # the admin's uncommitted VRRP change is in the shared candidate: alice's
    # commit would write it to running, which she may not
    admin.edit_config(target="candidate", config=config(vrrp(group(priority=140))))
    alice.edit_config(target="candidate", config=config(dhcp(ip_pool("p3", 3))))
    with pytest.raises(RPCError) as e:
        alice.commit()
    assert_rpc_error(e, "access-denied", "application")
    assert etree.tostring(running(admin)) == before
    assert counters(admin)["denied-data-writes"] == writes + 1
    # the candidate still holds both changes; the admin commits them
    admin.commit()
    r = admin.get_config("running").xml
    assert "<priority>140</priority>" in r and "<name>p3</name>" in r


def test_hidden_leases_in_a_real_dhcp_exchange(tmp_path, creds, request):
    """carol may not read lease entries: after udhcpc got a lease, the
    admin sees it, carol sees the pool's statistics but no lease."""
    from conftest import _finish
    from test_dhcp import NsDaemon, Topo, commit, set_mac, settled, state, udhcpc
    from test_dhcp import dhcp as dhcp_server
    from test_dhcp import pool as dhcp_pool

    topo = Topo(tmp_path)
    made = []
    try:
        d = NsDaemon(topo.S, tmp_path / "d", creds, users=users(creds))
        made.append(d)
        d.start()
        admin = d.connect()
        commit(admin, dhcp_server(dhcp_pool("lan", "10.77.0.1", sections=[("10.77.0.10", "10.77.0.20")])))
        admin.edit_config(target="candidate", config=config(RULES))
        admin.commit()
        set_mac(topo, topo.C, "lan", "02:00:00:00:0a:0a")
        r = udhcpc(topo, topo.C, "lan", topo.tmp / "a.log")
        assert "lease of 10.77.0.10 obtained" in r.stderr, r.stderr
        st = settled(admin, lambda s: len(s["leases"]) == 1)
        assert st["leases"]["10.77.0.10"]["state"] == "bound"
        carol = d.connect(user="carol", password=PASSWORD)
        cs = state(carol)
        assert cs["leases"] == {} and cs["pools"]["lan"]["used"] == 1, cs
        sel = ({"dhcps": DHCPS_NS}, "/dhcps:dhcp-server/dhcps:lease")
        assert carol.get(filter=("xpath", sel)).data_ele.find("d:dhcp-server/d:lease", N) is None
        assert admin.get(filter=("xpath", sel)).data_ele.find("d:dhcp-server/d:lease", N) is not None
        # alice (read-all) sees it
        alice = d.connect(user="alice", password=PASSWORD)
        assert "10.77.0.10" in state(alice)["leases"]
    finally:
        _finish(request, made)
        topo.close()


NOTIF_RULES = f"""<nacm xmlns="{NACM_NS}">
  <rule-list><name>no-config-change</name><group>no-leases</group>
    <rule><name>no-config-change</name><module-name>ietf-netconf-notifications</module-name>
      <notification-name>netconf-config-change</notification-name>
      <access-operations>read</access-operations><action>deny</action></rule>
  </rule-list>
  <rule-list><name>no-subscribe</name><group>limited</group>
    <rule><name>no-subscribe</name><module-name>notifications</module-name>
      <rpc-name>create-subscription</rpc-name><access-operations>exec</access-operations><action>deny</action></rule>
  </rule-list>
</nacm>"""


def config_changes(m, wait: float) -> int:
    """config-change notifications taken within `wait` seconds."""
    n = 0
    while True:
        note = m.take_notification(block=True, timeout=wait)
        if note is None:
            return n
        if "netconf-config-change" in note.notification_xml:
            n += 1


def test_notifications_follow_the_notification_and_exec_rules(d):
    """RFC 8341 §3.4.6: carol's notification rule keeps the config-change
    notifications from her (counted), alice gets them; bob may not run
    create-subscription (an exec rule), the session lives on."""
    admin = d.connect()
    admin.edit_config(target="candidate", config=config(NOTIF_RULES))
    admin.commit()
    before = counters(admin)
    carol = d.connect(user="carol", password=PASSWORD)
    alice = d.connect(user="alice", password=PASSWORD)
    carol.create_subscription()
    alice.create_subscription()
    admin.edit_config(target="candidate", config=config(dhcp(ip_pool("p2", 2))))
    admin.commit()
    assert config_changes(alice, 5) == 1
    assert config_changes(carol, 1) == 0
    bob = d.connect(user="bob", password=PASSWORD)
    with pytest.raises(RPCError) as e:
        bob.create_subscription()
    assert_rpc_error(e, "access-denied", "protocol")
    assert running(bob).find("d:dhcp-server", N) is not None
    after = counters(admin)
    assert after["denied-notifications"] >= before["denied-notifications"] + 1
    assert after["denied-operations"] == before["denied-operations"] + 1


def test_external_groups_from_the_bootstrap_file(daemon_factory, creds):
    """RFC 8341 enable-external-groups: dave is in no group of running, but
    the bootstrap file (his "transport") puts him in pool-operators and in
    a group running does not know. While enable-external-groups is true
    (the YANG default) that group's rules are his: he may write pools and
    read /nacm (read-all); set to false, the transport's groups are ignored
    and dave gets the defaults (write denied, /nacm hidden)."""
    h = creds["password_hash"]
    d = daemon_factory(users=[{"name": USER, "password-hash": h},
                              {"name": "dave", "password-hash": h, "groups": ["pool-operators", "radius-only"]}])
    admin = d.connect()
    admin.edit_config(target="candidate", config=config(RULES, dhcp(ip_pool("p1", 1))))
    admin.commit()
    dave = d.connect(user="dave", password=PASSWORD)
    assert running(dave).find("n:nacm", N) is not None
    dave.edit_config(target="candidate", config=config(dhcp(ip_pool("p2", 2))))
    dave.commit()
    assert "<name>p2</name>" in admin.get_config("running").xml
    # still only pools: the VRRP tree is not his to write
    with pytest.raises(RPCError) as e:
        dave.edit_config(target="candidate", config=config(vrrp(group(priority=150))))
    assert_rpc_error(e, "access-denied", "application")

    admin.edit_config(target="candidate", config=config(f'<nacm xmlns="{NACM_NS}"><enable-external-groups>false</enable-external-groups></nacm>'))
    admin.commit()
    writes = counters(admin)["denied-data-writes"]
    assert running(dave).find("n:nacm", N) is None
    with pytest.raises(RPCError) as e:
        dave.edit_config(target="candidate", config=config(dhcp(ip_pool("p3", 3))))
    assert_rpc_error(e, "access-denied", "application")
    assert counters(admin)["denied-data-writes"] == writes + 1
    assert "<name>p3</name>" not in admin.get_config("running").xml
    # back on: his groups count again, in the session he already has
    admin.edit_config(target="candidate", config=config(f'<nacm xmlns="{NACM_NS}"><enable-external-groups>true</enable-external-groups></nacm>'))
    admin.commit()
    dave.edit_config(target="candidate", config=config(dhcp(ip_pool("p3", 3))))
    dave.commit()
    assert "<name>p3</name>" in admin.get_config("running").xml


def test_a_bad_group_name_in_the_bootstrap_file_is_refused(daemon_factory, creds):
    d = daemon_factory(start=False, users=[{"name": USER, "password-hash": creds["password_hash"], "groups": ["*"]}])
    r = subprocess.run([HOTLEASED, "check", "--config", str(d.config)], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "user 'admin': group '*' is not a NACM group name" in r.stderr + r.stdout, r.stderr
