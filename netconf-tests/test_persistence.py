"""Startup datastore and restarts (RFC 6241 §8.7)."""

from conftest import DHCPS_NS, config, data_of, get_groups, group, vrrp


def test_running_loaded_from_startup_after_restart(daemon):
    m = daemon.connect()
    m.edit_config(target="candidate", config=config(vrrp(group(vrid=1, priority=77), group(vrid=2))))
    m.commit()
    m.copy_config(source="running", target="startup")
    before = get_groups(m, "running")
    daemon.restart()
    m = daemon.connect()
    assert get_groups(m, "running") == before
    assert get_groups(m, "startup") == before
    # the candidate starts as a copy of running
    assert get_groups(m, "candidate") == before


def test_commit_alone_is_not_persisted(daemon):
    """Operations on running are not copied to startup automatically."""
    m = daemon.connect()
    m.edit_config(target="candidate", config=config(vrrp(group(vrid=1))))
    m.commit()
    m.copy_config(source="running", target="startup")
    m.edit_config(target="candidate", config=config(vrrp(group(vrid=2))))
    m.commit()
    assert set(get_groups(m, "startup")) == {("eth0", 1)}
    daemon.restart()
    m = daemon.connect()
    assert set(get_groups(m, "running")) == {("eth0", 1)}


def test_uncommitted_candidate_not_persisted(daemon):
    m = daemon.connect()
    m.edit_config(target="candidate", config=config(vrrp(group(vrid=3))))
    daemon.restart()
    m = daemon.connect()
    assert get_groups(m, "candidate") == {}


def test_delete_config_startup_then_restart(daemon):
    m = daemon.connect()
    m.edit_config(target="candidate", config=config(vrrp(group(vrid=1))))
    m.commit()
    m.copy_config(source="running", target="startup")
    m.delete_config(target="startup")
    daemon.restart()
    m = daemon.connect()
    assert len(data_of(m.get_config("running"))) == 0


def test_full_config_round_trip(daemon):
    pool = (
        f'<dhcp-server xmlns="{DHCPS_NS}"><ip-pool><name>p1</name>'
        "<gateway>10.10.0.1</gateway><gateway>10.10.0.2</gateway><mask>255.255.255.0</mask>"
        "<section><start>10.10.0.100</start><end>10.10.0.199</end></section>"
        "<dns-server>10.10.0.53</dns-server><dns-server>10.10.0.3</dns-server>"
        "<lease-time>7200</lease-time></ip-pool></dhcp-server>"
    )
    m = daemon.connect()
    m.edit_config(target="candidate", config=config(vrrp(group(vrid=1, vips=("10.10.0.1",))), pool))
    m.commit()
    m.copy_config(source="running", target="startup")
    from lxml import etree

    before = etree.tostring(data_of(m.get_config("running")), method="c14n")
    daemon.restart()
    m = daemon.connect()
    after = etree.tostring(data_of(m.get_config("running")), method="c14n")
    assert after == before


def test_startup_written_atomically(daemon):
    """No temp files left behind in the storage dir after copy-config."""
    m = daemon.connect()
    m.edit_config(target="candidate", config=config(vrrp(group(vrid=1))))
    m.commit()
    for _ in range(5):
        m.copy_config(source="running", target="startup")
    leftovers = [p.name for p in daemon.storage.iterdir() if p.name.endswith((".tmp", "~")) or p.name.startswith(".tmp")]
    assert not leftovers, leftovers


def test_a_bad_value_in_startup_says_what_is_allowed(daemon_factory):
    """A startup file with a value its YANG type refuses: the daemon does
    not start and says which node, which value and what is allowed, like an
    edit-config would (issue 14: errors that say what is allowed)."""
    import pytest

    d = daemon_factory(start=False)
    (d.storage / "startup.xml").write_text(vrrp(group(vrid=1, priority=255)))
    with pytest.raises(AssertionError) as ei:
        d.start(timeout=15)
    d.expect_dead = True
    log = d.stderr()
    assert d.proc.returncode != 0, log
    assert 'priority must be 1..254, not "255"' in log, str(ei.value)
    assert "/vrrp:vrrp/vrrp:group[vrrp:interface='eth0'][vrrp:vrid='1']/vrrp:priority" in log, log
