"""get / get-config on each datastore, commit, discard-changes, validate,
copy-config and delete-config (RFC 6241 §7.1-7.4, §8.3, §8.6, §8.7)."""

import pytest
from lxml import etree
from ncclient.operations.rpc import RPCError

from conftest import (
    inline_source as inline,
    BASE_NS,
    VRRP_NS,
    assert_rpc_error,
    config,
    data_of,
    find_groups,
    get_groups,
    group,
    vrrp,
)


def test_empty_datastores(nc):
    for source in ("running", "candidate", "startup"):
        data = data_of(nc.get_config(source))
        assert data.tag == f"{{{BASE_NS}}}data"
        assert len(data) == 0, f"{source} not empty: {etree.tostring(data)}"
    data = data_of(nc.get())
    assert find_groups(data) == {}


def test_get_returns_running_not_candidate(nc):
    nc.edit_config(target="candidate", config=config(vrrp(group(vrid=1))))
    assert find_groups(data_of(nc.get())) == {}
    nc.commit()
    assert set(find_groups(data_of(nc.get()))) == {("eth0", 1)}


def test_get_reports_no_made_up_state(nc):
    """Until a runtime reports state, <get> holds no invented values."""
    nc.edit_config(target="candidate", config=config(vrrp(group(vrid=1))))
    nc.commit()
    data = data_of(nc.get(filter=("subtree", f'<vrrp xmlns="{VRRP_NS}"/>')))
    assert set(find_groups(data)) == {("eth0", 1)}


def test_commit(nc):
    nc.edit_config(target="candidate", config=config(vrrp(group(vrid=1, priority=201))))
    assert get_groups(nc, "running") == {}
    nc.commit()
    assert get_groups(nc, "running")[("eth0", 1)]["priority"] == "201"
    assert get_groups(nc, "candidate")[("eth0", 1)]["priority"] == "201"


def test_commit_without_changes_is_ok(nc):
    nc.commit()
    nc.commit()


def test_commit_visible_to_other_sessions(daemon):
    a, b = daemon.connect(), daemon.connect()
    a.edit_config(target="candidate", config=config(vrrp(group(vrid=1))))
    # the candidate is shared
    assert ("eth0", 1) in get_groups(b, "candidate")
    a.commit()
    assert ("eth0", 1) in get_groups(b, "running")


def test_discard_changes(nc):
    nc.edit_config(target="candidate", config=config(vrrp(group(vrid=1))))
    nc.commit()
    nc.edit_config(target="candidate", config=config(vrrp(group(vrid=2), group(vrid=1, vips=(), priority=5))))
    nc.discard_changes()
    assert get_groups(nc, "candidate") == get_groups(nc, "running")
    assert set(get_groups(nc, "candidate")) == {("eth0", 1)}


def test_validate_candidate(nc):
    nc.edit_config(target="candidate", config=config(vrrp(group(vrid=1))))
    nc.validate("candidate")
    nc.validate("running")


def test_validate_inline_config(nc):
    from ncclient.xml_ import to_ele

    nc.validate(to_ele(config(vrrp(group(vrid=1)))))
    with pytest.raises(RPCError) as ei:
        nc.validate(to_ele(config(vrrp(group(vrid=1, version="v2", advertise_interval=1500)))))
    assert_rpc_error(
        ei,
        "operation-failed",
        "application",
        app_tag="v2-advertise-interval-not-seconds",
        path="/vrrp:vrrp/vrrp:group[vrrp:interface='eth0'][vrrp:vrid='1']",
    )
    # inline validation changed nothing
    assert get_groups(nc, "candidate") == {}


def test_validate_inline_bad_type(nc):
    from ncclient.xml_ import to_ele

    with pytest.raises(RPCError) as ei:
        nc.validate(to_ele(config(vrrp(group(vrid=1, priority=0)))))
    assert_rpc_error(ei, "invalid-value")


def test_validate_must_violation_in_candidate(nc):
    nc.edit_config(target="candidate", config=config(vrrp(group(vrid=1, version="v2", advertise_interval=1500))), test_option="set")
    with pytest.raises(RPCError) as ei:
        nc.validate("candidate")
    assert_rpc_error(ei, "operation-failed", "application", app_tag="v2-advertise-interval-not-seconds")


def test_commit_invalid_candidate_leaves_running(nc):
    nc.edit_config(target="candidate", config=config(vrrp(group(vrid=1, priority=111))))
    nc.commit()
    nc.edit_config(
        target="candidate",
        config=config(vrrp(group(vrid=1, vips=(), priority=112), group(vrid=2, version="v2", advertise_interval=1500))),
        test_option="set",
    )
    with pytest.raises(RPCError) as ei:
        nc.commit()
    assert_rpc_error(
        ei,
        "operation-failed",
        "application",
        app_tag="v2-advertise-interval-not-seconds",
        path="/vrrp:vrrp/vrrp:group[vrrp:interface='eth0'][vrrp:vrid='2']",
    )
    g = get_groups(nc, "running")
    assert set(g) == {("eth0", 1)} and g[("eth0", 1)]["priority"] == "111"
    # the candidate keeps the refused changes for the user to fix
    assert ("eth0", 2) in get_groups(nc, "candidate")


def test_min_elements_violation(nc):
    nc.edit_config(target="candidate", config=config(vrrp(group(vrid=1, vips=()))), test_option="set")
    with pytest.raises(RPCError) as ei:
        nc.commit()
    assert_rpc_error(ei, "operation-failed", "application", app_tag="too-few-elements")
    assert get_groups(nc, "running") == {}


def test_multiple_errors_in_one_reply(nc):
    """Several independent violations → several <rpc-error>s."""
    nc.edit_config(
        target="candidate",
        config=config(
            vrrp(
                group(vrid=1, version="v2", advertise_interval=1500),
                group(vrid=2, version="v2", advertise_interval=2500),
                group(vrid=3, advertise_interval=1005),
            )
        ),
        test_option="set",
    )
    with pytest.raises(RPCError) as ei:
        nc.validate("candidate")
    errs = getattr(ei.value, "errors", None)
    assert errs and len(errs) >= 3, f"expected one rpc-error per violation, got {ei.value!r}"
    tags = {(e.tag, e.app_tag) for e in errs}
    assert ("operation-failed", "v2-advertise-interval-not-seconds") in tags
    assert ("operation-failed", "v3-advertise-interval-not-centiseconds") in tags
    paths = {e.path.strip() for e in errs}
    assert len(paths) >= 3


def test_multiple_schema_errors_in_one_edit(nc):
    with pytest.raises(RPCError) as ei:
        nc.edit_config(
            target="candidate",
            config=config(vrrp(group(vrid=1, priority=0), group(vrid=2, priority=300))),
            error_option="rollback-on-error",
        )
    errs = getattr(ei.value, "errors", None) or [ei.value]
    assert all(e.tag == "invalid-value" for e in errs)
    assert get_groups(nc, "candidate") == {}


# --- copy-config -------------------------------------------------------------


def test_copy_running_to_startup(nc):
    nc.edit_config(target="candidate", config=config(vrrp(group(vrid=1, priority=33))))
    nc.commit()
    assert get_groups(nc, "startup") == {}
    nc.copy_config(source="running", target="startup")
    assert get_groups(nc, "startup") == get_groups(nc, "running")


def test_copy_candidate_to_startup(nc):
    nc.edit_config(target="candidate", config=config(vrrp(group(vrid=4))))
    nc.copy_config(source="candidate", target="startup")
    assert set(get_groups(nc, "startup")) == {("eth0", 4)}


def test_copy_to_running_refused(nc):
    nc.edit_config(target="candidate", config=config(vrrp(group(vrid=1))))
    with pytest.raises(RPCError) as ei:
        nc.copy_config(source="candidate", target="running")
    assert_rpc_error(ei, ("operation-not-supported", "invalid-value", "bad-element", "unknown-element"))
    assert get_groups(nc, "running") == {}


def test_copy_inline_config_to_candidate(nc):
    nc.edit_config(target="candidate", config=config(vrrp(group(vrid=1))))
    nc.copy_config(source=inline(config(vrrp(group(vrid=2), group(vrid=3)))), target="candidate")
    assert set(get_groups(nc, "candidate")) == {("eth0", 2), ("eth0", 3)}


def test_copy_inline_invalid_changes_nothing(nc):
    nc.edit_config(target="candidate", config=config(vrrp(group(vrid=1))))
    with pytest.raises(RPCError) as ei:
        nc.copy_config(source=inline(config(vrrp(group(vrid=2, priority=500)))), target="candidate")
    assert_rpc_error(ei, "invalid-value")
    assert set(get_groups(nc, "candidate")) == {("eth0", 1)}


def test_copy_startup_to_candidate(nc):
    nc.copy_config(source=inline(config(vrrp(group(vrid=8)))), target="candidate")
    nc.copy_config(source="candidate", target="startup")
    nc.discard_changes()
    assert get_groups(nc, "candidate") == {}
    nc.copy_config(source="startup", target="candidate")
    assert set(get_groups(nc, "candidate")) == {("eth0", 8)}


def test_copy_running_to_candidate(nc):
    nc.edit_config(target="candidate", config=config(vrrp(group(vrid=1))))
    nc.commit()
    nc.edit_config(target="candidate", config=config(vrrp(group(vrid=2))))
    nc.copy_config(source="running", target="candidate")
    assert set(get_groups(nc, "candidate")) == {("eth0", 1)}


def test_copy_inline_to_startup_invalid_must_refused(nc):
    """startup is validated at the end of copy-config (RFC 7950 §8.3.3)."""
    with pytest.raises(RPCError) as ei:
        nc.copy_config(source=inline(config(vrrp(group(vrid=1, version="v2", advertise_interval=1500)))), target="startup")
    assert_rpc_error(ei, "operation-failed", app_tag="v2-advertise-interval-not-seconds")
    assert get_groups(nc, "startup") == {}


# --- delete-config -------------------------------------------------------------


def test_delete_config_startup(nc):
    nc.edit_config(target="candidate", config=config(vrrp(group(vrid=1))))
    nc.commit()
    nc.copy_config(source="running", target="startup")
    assert get_groups(nc, "startup")
    nc.delete_config(target="startup")
    assert len(data_of(nc.get_config("startup"))) == 0
    assert set(get_groups(nc, "running")) == {("eth0", 1)}


def test_delete_config_running_refused(nc):
    nc.edit_config(target="candidate", config=config(vrrp(group(vrid=1))))
    nc.commit()
    with pytest.raises(RPCError):
        nc.delete_config(target="running")
    assert set(get_groups(nc, "running")) == {("eth0", 1)}
