"""Confirmed commit (RFC 6241 §8.4, :confirmed-commit:1.1)."""

import time

import pytest
from ncclient.operations.rpc import RPCError

from conftest import assert_rpc_error, config, get_groups, group, vrrp

BEFORE = config(vrrp(group(vrid=1, priority=10)))
CHANGE = config(vrrp(group(vrid=1, vips=(), priority=20), group(vrid=2)))


def before_state(g):
    return set(g) == {("eth0", 1)} and g[("eth0", 1)]["priority"] == "10"


def changed_state(g):
    return set(g) == {("eth0", 1), ("eth0", 2)} and g[("eth0", 1)]["priority"] == "20"


def setup_before(m, to_startup=True):
    m.edit_config(target="candidate", config=BEFORE)
    m.commit()
    if to_startup:
        m.copy_config(source="running", target="startup")


def wait_for(m, pred, timeout):
    deadline = time.monotonic() + timeout
    while True:
        g = get_groups(m, "running")
        if pred(g) or time.monotonic() > deadline:
            return g
        time.sleep(0.1)


def test_rollback_on_timeout(nc):
    setup_before(nc)
    nc.edit_config(target="candidate", config=CHANGE)
    t0 = time.monotonic()
    nc.commit(confirmed=True, timeout="2")
    assert changed_state(get_groups(nc, "running"))
    g = wait_for(nc, before_state, 6)
    assert before_state(g), f"not rolled back: {g}"
    assert time.monotonic() - t0 >= 1.5, "rolled back before the confirm-timeout"
    # the pending commit is over: a plain commit is a normal commit again
    nc.discard_changes()
    nc.commit()


def test_confirming_commit(nc):
    setup_before(nc)
    nc.edit_config(target="candidate", config=CHANGE)
    nc.commit(confirmed=True, timeout="2")
    nc.commit()
    time.sleep(3)
    assert changed_state(get_groups(nc, "running"))
    with pytest.raises(RPCError):
        nc.cancel_commit()


def test_follow_up_confirmed_commit_extends_and_keeps_rollback_point(nc):
    """A second confirmed commit resets the timer and adds its changes;
    a rollback returns to the state before the *first* one."""
    setup_before(nc)
    nc.edit_config(target="candidate", config=CHANGE)
    nc.commit(confirmed=True, timeout="2")
    nc.edit_config(target="candidate", config=config(vrrp(group(vrid=3))))
    nc.commit(confirmed=True, timeout="4")
    time.sleep(2.5)
    g = get_groups(nc, "running")
    assert ("eth0", 3) in g and changed_state({k: v for k, v in g.items() if k != ("eth0", 3)}), g
    g = wait_for(nc, before_state, 6)
    assert before_state(g), f"rollback must return to the state before the first confirmed commit: {g}"


def test_cancel_commit(nc):
    setup_before(nc)
    nc.edit_config(target="candidate", config=CHANGE)
    nc.commit(confirmed=True, timeout="60")
    assert changed_state(get_groups(nc, "running"))
    nc.cancel_commit()
    assert before_state(get_groups(nc, "running"))


def test_cancel_commit_without_pending(nc):
    with pytest.raises(RPCError):
        nc.cancel_commit()


def test_rollback_when_session_ends_without_persist(daemon):
    a, b = daemon.connect(), daemon.connect()
    setup_before(a)
    a.edit_config(target="candidate", config=CHANGE)
    a.commit(confirmed=True, timeout="60")
    assert changed_state(get_groups(b, "running"))
    a.close_session()
    g = wait_for(b, before_state, 5)
    assert before_state(g), f"confirmed commit not rolled back when its session ended: {g}"


def test_rollback_when_transport_drops(daemon):
    a, b = daemon.connect(), daemon.connect()
    setup_before(a)
    a.edit_config(target="candidate", config=CHANGE)
    a.commit(confirmed=True, timeout="60")
    a._session._transport.close()
    g = wait_for(b, before_state, 5)
    assert before_state(g), g


def test_other_session_cannot_confirm_without_persist(daemon):
    a, b = daemon.connect(), daemon.connect()
    setup_before(a)
    a.edit_config(target="candidate", config=CHANGE)
    a.commit(confirmed=True, timeout="60")
    with pytest.raises(RPCError):
        b.commit()
    with pytest.raises(RPCError):
        b.cancel_commit()
    with pytest.raises(RPCError):
        b.commit(confirmed=True, timeout="60")
    assert changed_state(get_groups(b, "running"))
    a.commit()
    assert changed_state(get_groups(b, "running"))


def test_persist_survives_session_and_is_confirmed_by_persist_id(daemon):
    a, b = daemon.connect(), daemon.connect()
    setup_before(a)
    a.edit_config(target="candidate", config=CHANGE)
    a.commit(confirmed=True, timeout="60", persist="tok-1")
    a.close_session()
    time.sleep(1)
    assert changed_state(get_groups(b, "running")), "persisted confirmed commit rolled back at session end"
    b.commit(persist_id="tok-1")
    assert changed_state(get_groups(b, "running"))
    # nothing pending any more
    with pytest.raises(RPCError):
        b.cancel_commit(persist_id="tok-1")


def test_persist_wrong_persist_id(daemon):
    a, b = daemon.connect(), daemon.connect()
    setup_before(a)
    a.edit_config(target="candidate", config=CHANGE)
    a.commit(confirmed=True, timeout="60", persist="tok-2")
    with pytest.raises(RPCError) as ei:
        b.commit(persist_id="not-it")
    assert_rpc_error(ei, "invalid-value")
    with pytest.raises(RPCError) as ei:
        b.cancel_commit(persist_id="not-it")
    assert_rpc_error(ei, "invalid-value")
    assert changed_state(get_groups(b, "running"))


def test_persist_plain_commit_from_other_session_refused(daemon):
    a, b = daemon.connect(), daemon.connect()
    setup_before(a)
    a.edit_config(target="candidate", config=CHANGE)
    a.commit(confirmed=True, timeout="60", persist="tok-3")
    with pytest.raises(RPCError):
        b.commit()
    assert changed_state(get_groups(b, "running"))
    b.cancel_commit(persist_id="tok-3")
    assert before_state(get_groups(b, "running"))


def test_persist_rolls_back_on_timeout_after_session_end(daemon):
    a, b = daemon.connect(), daemon.connect()
    setup_before(a)
    a.edit_config(target="candidate", config=CHANGE)
    a.commit(confirmed=True, timeout="2", persist="tok-4")
    a.close_session()
    g = wait_for(b, before_state, 6)
    assert before_state(g), g


def test_confirm_timeout_zero_invalid(nc):
    nc.edit_config(target="candidate", config=CHANGE)
    with pytest.raises(RPCError) as ei:
        nc.commit(confirmed=True, timeout="0")
    assert_rpc_error(ei, ("invalid-value", "bad-element"))
    assert get_groups(nc, "running") == {}


def test_confirmed_commit_of_invalid_candidate(daemon):
    a, b = daemon.connect(), daemon.connect()
    a.edit_config(target="candidate", config=config(vrrp(group(vrid=1, version="v2", advertise_interval=1500))), test_option="set")
    with pytest.raises(RPCError) as ei:
        a.commit(confirmed=True, timeout="60")
    assert_rpc_error(ei, "operation-failed", app_tag="v2-advertise-interval-not-seconds")
    assert get_groups(b, "running") == {}
    # nothing pending: another session can lock running
    b.lock("running")


# --- across a daemon restart ------------------------------------------------


def test_persisted_confirmed_commit_survives_restart_and_is_confirmed(daemon):
    m = daemon.connect()
    setup_before(m)
    m.edit_config(target="candidate", config=CHANGE)
    m.commit(confirmed=True, timeout="120", persist="restart-1")
    daemon.restart()
    b = daemon.connect()
    assert changed_state(get_groups(b, "running")), "pending persisted commit lost on restart"
    # still pending: the wrong id is refused, the right one confirms
    with pytest.raises(RPCError):
        b.commit(persist_id="other")
    b.commit(persist_id="restart-1")
    assert changed_state(get_groups(b, "running"))
    with pytest.raises(RPCError):
        b.cancel_commit(persist_id="restart-1")


def test_persisted_confirmed_commit_rolls_back_after_restart(daemon):
    m = daemon.connect()
    setup_before(m)
    m.edit_config(target="candidate", config=CHANGE)
    m.commit(confirmed=True, timeout="4", persist="restart-2")
    daemon.restart()
    b = daemon.connect()
    g = get_groups(b, "running")
    assert changed_state(g), f"pending persisted commit lost on restart: {g}"
    g = wait_for(b, before_state, 8)
    assert before_state(g), f"not rolled back after restart: {g}"


def test_persisted_rollback_point_not_only_startup(daemon):
    """The rollback point is running as it was before the confirmed commit,
    even when that state was never copied to startup."""
    m = daemon.connect()
    setup_before(m, to_startup=False)
    m.edit_config(target="candidate", config=CHANGE)
    m.commit(confirmed=True, timeout="60", persist="restart-3")
    daemon.restart()
    b = daemon.connect()
    assert changed_state(get_groups(b, "running"))
    b.cancel_commit(persist_id="restart-3")
    assert before_state(get_groups(b, "running"))


def test_persisted_cancel_after_restart(daemon):
    m = daemon.connect()
    setup_before(m)
    m.edit_config(target="candidate", config=CHANGE)
    m.commit(confirmed=True, timeout="60", persist="restart-4")
    daemon.restart()
    b = daemon.connect()
    b.cancel_commit(persist_id="restart-4")
    assert before_state(get_groups(b, "running"))
    daemon.restart()
    assert before_state(get_groups(daemon.connect(), "running"))


def test_non_persisted_confirmed_commit_rolled_back_by_restart(daemon):
    """Without persist the pending commit dies with its session, and a
    restart (which ends every session) brings back the previous state."""
    m = daemon.connect()
    setup_before(m)
    m.edit_config(target="candidate", config=CHANGE)
    m.commit(confirmed=True, timeout="120")
    daemon.restart()
    assert before_state(get_groups(daemon.connect(), "running"))
