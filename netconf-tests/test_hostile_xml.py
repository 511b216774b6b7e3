"""Hostile XML: documents built to exhaust the stack or the CPU.

A peer may send any well-formed XML of up to the 64 MiB message limit. The
daemon must answer a document nested too deeply with an error and keep the
session, and parsing must stay linear in the message, so that one session's
message never keeps the other sessions (or DHCP and VRRP, which share the
process) from running.
"""

import os
import threading
import time

import pytest

from conftest import BASE10, BASE_NS, EOM, NS, chunk, config

GET_CONFIG = "<get-config><source><running/></source></get-config>"
DEPTH = 100_000
# xml::MAX_DEPTH: the deepest document the daemon accepts (root = level 1)
MAX_DEPTH = 128


def deep(depth: int) -> str:
    """`depth` nested elements, each declaring its namespace (so that even a
    scope walk that stops at the nearest declaration stays cheap: what is
    tested here is the depth itself)."""
    return '<a xmlns="urn:hostile">' * depth + "</a>" * depth


def deep_bodies():
    return {
        "edit-config": (
            "<edit-config><target><candidate/></target>"
            f'<config xmlns="{BASE_NS}">{deep(DEPTH)}</config></edit-config>'
        ),
        "get-filter": f'<get><filter type="subtree">{deep(DEPTH)}</filter></get>',
        "get-config-filter": (
            "<get-config><source><running/></source>"
            f'<filter type="subtree">{deep(DEPTH)}</filter></get-config>'
        ),
    }


@pytest.mark.parametrize("op", ["edit-config", "get-filter", "get-config-filter"])
def test_deep_document_gets_an_error_and_the_session_lives(daemon, op):
    r = daemon.raw(timeout=60)
    r.hello()
    assert r.framing == "chunked"
    reply = r.rpc(deep_bodies()[op], message_id="deep")
    err = reply.find("nc:rpc-error", NS)
    assert err is not None, reply
    assert err.findtext("nc:error-tag", namespaces=NS) == "malformed-message"
    assert err.findtext("nc:error-type", namespaces=NS) == "rpc"
    assert "nesting deeper than" in err.findtext("nc:error-message", namespaces=NS)
    # the session goes on, and so does the daemon
    reply = r.rpc(GET_CONFIG, message_id="after")
    assert reply.get("message-id") == "after"
    assert reply.find("nc:data", NS) is not None
    assert daemon.alive()
    daemon.connect().get_config("running")


def test_deep_document_on_a_base10_session(daemon):
    """malformed-message must not go to a base:1.0 peer (RFC 6241 App. A):
    its session is closed, and the daemon goes on."""
    r = daemon.raw(timeout=60)
    r.hello((BASE10,))
    body = f'<get><filter type="subtree">{deep(DEPTH)}</filter></get>'
    r.send(f'<rpc xmlns="{BASE_NS}" message-id="1">{body}</rpc>'.encode() + EOM)
    if r.wait_closed(30):
        assert b"malformed-message" not in r.buf
    else:
        reply = r.read_xml()
        assert reply.find("nc:rpc-error", NS) is not None
    assert daemon.alive()
    daemon.connect().get_config("running")


@pytest.mark.parametrize("over", [0, 1])
def test_depth_limit(daemon, over):
    """A document exactly at the limit is served as usual (the walks over
    it fit on the stack); one level more is refused."""
    r = daemon.raw()
    r.hello()
    # <rpc><get><filter> are levels 1-3
    n = MAX_DEPTH - 3 + over
    reply = r.rpc(f'<get><filter type="subtree">{deep(n)}</filter></get>', message_id="f")
    err = reply.find("nc:rpc-error", NS)
    if over:
        assert err.findtext("nc:error-tag", namespaces=NS) == "malformed-message"
    else:
        assert err is None, reply
        data = reply.find("nc:data", NS)
        assert data is not None and len(data) == 0
    # <rpc><edit-config><config> likewise: an unknown namespace, or too deep
    body = f'<edit-config><target><candidate/></target><config>{deep(n)}</config></edit-config>'
    reply = r.rpc(body, message_id="e")
    tag = reply.find("nc:rpc-error", NS).findtext("nc:error-tag", namespaces=NS)
    assert tag == ("malformed-message" if over else "unknown-namespace")
    assert daemon.alive()


def workers() -> int:
    """tokio starts one worker per available CPU."""
    return len(os.sched_getaffinity(0))


@pytest.mark.parametrize("end", ["with-end-of-message", "without-end-of-message"])
def test_unclosed_elements_do_not_wedge_other_sessions(daemon, end):
    """One attacker per tokio worker sends 300,000 unclosed <a> (0.9 MB)
    in an <rpc>. Parsing them resolved every open element's namespace scope
    per element (quadratic): the workers were busy for tens of seconds and
    no new session got its hello. Now a legitimate client logs in and works
    meanwhile."""
    payload = f'<rpc xmlns="{BASE_NS}" message-id="1"><get><filter>'.encode()
    payload += b"<a>" * 300_000
    attackers = [daemon.raw(timeout=60) for _ in range(max(2, min(workers(), 8)))]
    for a in attackers:
        a.hello()
    errors = []

    def attack(a):
        try:
            data = chunk(payload) if end == "with-end-of-message" else b"\n#%d\n" % len(payload) + payload
            a.send(data)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=attack, args=(a,)) for a in attackers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    # the messages are in (or being taken in) by the daemon: a new client
    # must get its session (the hello exchange) and an answer promptly
    m = daemon.connect(timeout=10)
    m.get_config("running")
    assert daemon.alive()
    if end == "with-end-of-message":
        for a in attackers:
            reply = a.read_xml()
            err = reply.find("nc:rpc-error", NS)
            assert err is not None
            assert err.findtext("nc:error-tag", namespaces=NS) == "malformed-message"
            assert "nesting deeper than" in err.findtext("nc:error-message", namespaces=NS)
