"""Hello exchange (RFC 6241 §8.1): capabilities and session-id."""

from urllib.parse import parse_qs, urlsplit

import pytest

from conftest import BASE10, BASE11, BASE_NS, EOM, MODULES, hello_xml, yang_revision

CAPS = [
    "urn:ietf:params:netconf:base:1.0",
    "urn:ietf:params:netconf:base:1.1",
    "urn:ietf:params:netconf:capability:candidate:1.0",
    "urn:ietf:params:netconf:capability:confirmed-commit:1.1",
    "urn:ietf:params:netconf:capability:validate:1.1",
    "urn:ietf:params:netconf:capability:rollback-on-error:1.0",
    "urn:ietf:params:netconf:capability:startup:1.0",
    "urn:ietf:params:netconf:capability:xpath:1.0",
]
WD_CAP = "urn:ietf:params:netconf:capability:with-defaults:1.0"


def server_caps(m):
    return [c for c in m.server_capabilities]


@pytest.fixture(scope="module")
def caps(module_daemon):
    """The capability list exactly as the server's hello sends it."""
    r = module_daemon.raw()
    hello = r.hello()
    r.close()
    return [c.text.strip() for c in hello.iter(f"{{{BASE_NS}}}capability")], hello


def test_ncclient_sees_capabilities(module_daemon):
    m = module_daemon.connect()
    for cap in CAPS:
        assert cap in server_caps(m)
    m.close_session()


@pytest.mark.parametrize("cap", CAPS)
def test_base_capabilities(caps, cap):
    assert cap in caps[0]


def test_no_writable_running(caps):
    # running is changed only through candidate + commit
    assert not any(c.startswith("urn:ietf:params:netconf:capability:writable-running") for c in caps[0])


def test_with_defaults_capability(caps):
    wd = [c for c in caps[0] if c.startswith(WD_CAP)]
    assert len(wd) == 1, caps[0]
    q = parse_qs(urlsplit(wd[0]).query)
    assert q["basic-mode"] == ["explicit"]
    assert set(q["also-supported"][0].split(",")) == {"report-all", "report-all-tagged", "trim"}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_capability(caps, module):
    ns = MODULES[module]
    mine = [c for c in caps[0] if urlsplit(c)._replace(query="").geturl() == ns]
    assert len(mine) == 1, f"no capability for {ns}: {caps[0]}"
    q = parse_qs(urlsplit(mine[0]).query)
    assert q["module"] == [module]
    rev = yang_revision(module) or "2026-11-25"
    assert q["revision"] == [rev]


def test_no_duplicate_capabilities(caps):
    assert len(caps[0]) == len(set(caps[0]))


def test_session_id_positive_and_unique(module_daemon):
    ms = [module_daemon.connect() for _ in range(3)]
    ids = [int(m.session_id) for m in ms]
    assert all(i > 0 for i in ids)
    assert len(set(ids)) == 3
    for m in ms:
        m.close_session()


def test_server_hello_is_eom_framed_with_session_id(module_daemon):
    r = module_daemon.raw()
    hello = r.hello((BASE10, BASE11))
    assert hello.tag == f"{{{BASE_NS}}}hello"
    sid = hello.findtext(f"{{{BASE_NS}}}session-id")
    assert sid and int(sid) > 0
    caps = [c.text.strip() for c in hello.iter(f"{{{BASE_NS}}}capability")]
    assert BASE10 in caps and BASE11 in caps
    r.close()


def test_server_hello_sent_without_waiting_for_client(module_daemon):
    """The server sends its hello as soon as the channel opens (§8.1)."""
    r = module_daemon.raw()
    hello = r.read_server_hello()
    assert hello.findtext(f"{{{BASE_NS}}}session-id")
    r.close()


def test_client_hello_with_session_id_terminates(module_daemon):
    """§8.1: a client hello containing a session-id → server ends the session."""
    r = module_daemon.raw()
    r.read_server_hello()
    r.send(hello_xml((BASE10, BASE11), session_id="4") + EOM)
    assert r.wait_closed(5), "session kept after a client hello with session-id"
    module_daemon.connect().get_config("running")


def test_client_hello_without_common_base_terminates(module_daemon):
    r = module_daemon.raw()
    r.read_server_hello()
    r.send(hello_xml(("urn:ietf:params:netconf:base:9.9",)) + EOM)
    assert r.wait_closed(5), "session kept without a common base version"


def test_rpc_before_hello_terminates(module_daemon):
    """The first message must be a hello; anything else ends the session."""
    r = module_daemon.raw()
    r.read_server_hello()
    r.send(f'<rpc xmlns="{BASE_NS}" message-id="1"><get-config><source><running/></source></get-config></rpc>'.encode() + EOM)
    assert r.wait_closed(5)
    assert b"<data" not in r.buf, "server answered an rpc sent before the hello"
