"""<lock>/<unlock>, <close-session>, <kill-session> (RFC 6241 §7.5-7.9)."""

import time

import pytest
from ncclient.operations.rpc import RPCError
from ncclient.transport.errors import TransportError

from conftest import inline_source as inline, assert_rpc_error, config, error_info, get_groups, group, vrrp


def sid(m):
    return int(m.session_id)


def assert_lock_denied(ei, holder=None):
    e = assert_rpc_error(ei, "lock-denied", "protocol")
    info = error_info(e)
    assert "session-id" in info, "lock-denied must carry the holder's session-id in error-info"
    if holder is not None:
        assert int(info["session-id"]) == holder
    return e


def wait_gone(m, timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and m.connected:
        time.sleep(0.05)
    return not m.connected


@pytest.mark.parametrize("target", ["running", "candidate", "startup"])
def test_lock_held_by_other_session(daemon, target):
    a, b = daemon.connect(), daemon.connect()
    a.lock(target)
    with pytest.raises(RPCError) as ei:
        b.lock(target)
    assert_lock_denied(ei, sid(a))
    a.unlock(target)
    b.lock(target)
    b.unlock(target)


def test_lock_twice_same_session(nc):
    nc.lock("running")
    with pytest.raises(RPCError) as ei:
        nc.lock("running")
    assert_lock_denied(ei, sid(nc))


def test_unlock_not_locked(nc):
    with pytest.raises(RPCError) as ei:
        nc.unlock("candidate")
    # §7.6 names no error-tag for this
    assert_rpc_error(ei, ("operation-failed", "invalid-value", "lock-denied"))


def test_unlock_by_non_owner(daemon):
    a, b = daemon.connect(), daemon.connect()
    a.lock("candidate")
    with pytest.raises(RPCError) as ei:
        b.unlock("candidate")
    assert_rpc_error(ei, ("operation-failed", "invalid-value", "lock-denied", "in-use"))
    # still locked by a
    with pytest.raises(RPCError) as ei:
        b.lock("candidate")
    assert_lock_denied(ei, sid(a))


def test_locked_candidate_refuses_others_edits(daemon):
    a, b = daemon.connect(), daemon.connect()
    a.lock("candidate")
    with pytest.raises(RPCError) as ei:
        b.edit_config(target="candidate", config=config(vrrp(group(vrid=1))))
    assert_rpc_error(ei, "in-use")
    with pytest.raises(RPCError) as ei:
        b.copy_config(source=inline(config(vrrp(group(vrid=1)))), target="candidate")
    assert_rpc_error(ei, "in-use")
    with pytest.raises(RPCError) as ei:
        b.discard_changes()
    assert_rpc_error(ei, "in-use")
    # the holder may edit; others may still read
    a.edit_config(target="candidate", config=config(vrrp(group(vrid=2))))
    assert ("eth0", 2) in get_groups(b, "candidate")


def test_locked_running_refuses_others_commit(daemon):
    a, b = daemon.connect(), daemon.connect()
    a.lock("running")
    b.edit_config(target="candidate", config=config(vrrp(group(vrid=1))))
    with pytest.raises(RPCError) as ei:
        b.commit()
    assert_rpc_error(ei, "in-use")
    assert get_groups(a, "running") == {}
    # the lock holder can commit
    a.commit()
    assert ("eth0", 1) in get_groups(b, "running")


def test_locked_startup_refuses_others_copy(daemon):
    a, b = daemon.connect(), daemon.connect()
    a.lock("startup")
    with pytest.raises(RPCError) as ei:
        b.copy_config(source="running", target="startup")
    assert_rpc_error(ei, "in-use")
    with pytest.raises(RPCError) as ei:
        b.delete_config(target="startup")
    assert_rpc_error(ei, "in-use")
    a.copy_config(source="running", target="startup")


def test_candidate_lock_refused_while_dirty_by_other(daemon):
    """§7.5: no candidate lock while it holds uncommitted changes."""
    a, b = daemon.connect(), daemon.connect()
    b.edit_config(target="candidate", config=config(vrrp(group(vrid=1))))
    with pytest.raises(RPCError) as ei:
        a.lock("candidate")
    assert_rpc_error(ei, "lock-denied", "protocol")
    b.discard_changes()
    a.lock("candidate")


def test_running_lock_refused_during_others_confirmed_commit(daemon):
    a, b = daemon.connect(), daemon.connect()
    a.edit_config(target="candidate", config=config(vrrp(group(vrid=1))))
    a.commit(confirmed=True, timeout="60")
    with pytest.raises(RPCError) as ei:
        b.lock("running")
    assert_rpc_error(ei, "lock-denied", "protocol")
    a.commit()
    b.lock("running")


def test_lock_released_on_close_session(daemon):
    a, b = daemon.connect(), daemon.connect()
    a.lock("running")
    a.lock("candidate")
    a.close_session()
    b.lock("running")
    b.lock("candidate")


def test_lock_released_when_transport_drops(daemon):
    a, b = daemon.connect(), daemon.connect()
    a.lock("running")
    a.lock("candidate")
    # no close-session: just drop the SSH connection
    a._session._transport.close()
    deadline = time.monotonic() + 5
    while True:
        try:
            b.lock("running")
            break
        except RPCError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    b.lock("candidate")


def test_lockers_candidate_changes_discarded_on_session_end(daemon):
    a, b = daemon.connect(), daemon.connect()
    a.edit_config(target="candidate", config=config(vrrp(group(vrid=1))))
    a.commit()
    a.lock("candidate")
    a.edit_config(target="candidate", config=config(vrrp(group(vrid=2), group(vrid=1, vips=(), priority=9))))
    a.close_session()
    g = get_groups(b, "candidate")
    assert set(g) == {("eth0", 1)}, "the locker's uncommitted changes must be discarded"
    assert "priority" not in g[("eth0", 1)]
    b.lock("candidate")


def test_lockers_candidate_changes_discarded_on_transport_drop(daemon):
    a, b = daemon.connect(), daemon.connect()
    a.lock("candidate")
    a.edit_config(target="candidate", config=config(vrrp(group(vrid=2))))
    a._session._transport.close()
    deadline = time.monotonic() + 5
    while get_groups(b, "candidate") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert get_groups(b, "candidate") == {}


def test_unlocked_candidate_changes_survive_session_end(daemon):
    """Without a lock the candidate is shared: a session's end keeps its edits."""
    a, b = daemon.connect(), daemon.connect()
    a.edit_config(target="candidate", config=config(vrrp(group(vrid=3))))
    a.close_session()
    assert ("eth0", 3) in get_groups(b, "candidate")


def test_kill_session_releases_locks(daemon):
    a, b = daemon.connect(), daemon.connect()
    a.lock("running")
    a.lock("candidate")
    a.edit_config(target="candidate", config=config(vrrp(group(vrid=4))))
    b.kill_session(a.session_id)
    # a is gone
    assert wait_gone(a), "killed session still connected"
    with pytest.raises((TransportError, RPCError, Exception)):
        a.get_config("running")
    b.lock("running")
    b.lock("candidate")
    assert get_groups(b, "candidate") == {}, "the killed locker's candidate changes must be discarded"


def test_kill_own_session_is_invalid_value(nc):
    with pytest.raises(RPCError) as ei:
        nc.kill_session(nc.session_id)
    assert_rpc_error(ei, "invalid-value", ("protocol", "application"))
    nc.get_config("running")


def test_kill_unknown_session(nc):
    with pytest.raises(RPCError) as ei:
        nc.kill_session("999999")
    assert_rpc_error(ei, ("invalid-value", "operation-failed"))


def test_kill_session_rolls_back_its_confirmed_commit(daemon):
    a, b = daemon.connect(), daemon.connect()
    a.edit_config(target="candidate", config=config(vrrp(group(vrid=5))))
    a.commit(confirmed=True, timeout="60")
    assert ("eth0", 5) in get_groups(b, "running")
    b.kill_session(a.session_id)
    deadline = time.monotonic() + 5
    while get_groups(b, "running") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert get_groups(b, "running") == {}


def test_close_session(daemon):
    m = daemon.connect()
    reply = m.close_session()
    assert reply.ok
    assert wait_gone(m), "server did not close the session after <close-session>"


def test_close_session_raw_gets_ok_then_eof(daemon):
    r = daemon.raw()
    r.hello()
    reply = r.rpc("<close-session/>", message_id="cs")
    assert reply.get("message-id") == "cs"
    assert reply.find("{urn:ietf:params:xml:ns:netconf:base:1.0}ok") is not None
    assert r.wait_closed(5)
