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


# -- issue 15: the classic hostile documents, with the daemon's peak RSS --

MB = 1024 * 1024
# framing::MAX_MESSAGE: the largest message the daemon takes in
MAX_MESSAGE = 64 * MB


def status_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


class Peak:
    """The daemon's peak RSS during a block: VmHWM is reset (clear_refs 5)
    at the start and read at the end; the growth over the RSS at the
    start is what the hostile input cost."""

    def __init__(self, daemon):
        self.pid = daemon.proc.pid

    def __enter__(self):
        with open(f"/proc/{self.pid}/clear_refs", "w") as f:
            f.write("5")
        self.start = status_kb(self.pid, "VmRSS")
        return self

    def __exit__(self, *exc):
        self.peak = status_kb(self.pid, "VmHWM")
        self.growth_mb = (self.peak - self.start) / 1024
        print(f"peak RSS {self.peak / 1024:.1f} MB, +{self.growth_mb:.1f} MB")
        return False


BILLION_LAUGHS_DTD = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(
        f'<!ENTITY lol{i} "{("&lol%s;" % (i - 1 if i > 1 else "")) * 10}">' for i in range(1, 10)
    )
    + "]>"
)


def expect_malformed(reply, text: str):
    err = reply.find("nc:rpc-error", NS)
    assert err is not None, reply
    assert err.findtext("nc:error-type", namespaces=NS) == "rpc"
    assert err.findtext("nc:error-tag", namespaces=NS) == "malformed-message"
    assert text in err.findtext("nc:error-message", namespaces=NS)


@pytest.mark.parametrize("case", ["billion-laughs", "doctype-only", "entity-without-dtd", "external-entity"])
def test_entities_and_doctype_get_malformed_message(daemon, case):
    """RFC 6241 App. A: a message that cannot be parsed gets malformed-message
    (base:1.1) and the session goes on; no entity is ever expanded."""
    other = daemon.connect()
    r = daemon.raw()
    r.hello()
    rpc = f'<rpc xmlns="{BASE_NS}" message-id="x"><get-config><source><running/></source>'
    if case == "billion-laughs":
        doc, text = f"{BILLION_LAUGHS_DTD}{rpc}<filter>&lol9;</filter></get-config></rpc>", "DOCTYPE"
    elif case == "doctype-only":
        doc, text = f'<!DOCTYPE rpc SYSTEM "file:///etc/passwd">{rpc}</get-config></rpc>', "DOCTYPE"
    elif case == "entity-without-dtd":
        doc, text = f"{rpc}<filter>&lol9;</filter></get-config></rpc>", "unknown entity"
    else:
        doc = ('<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
               f"{rpc}<filter>&xxe;</filter></get-config></rpc>")
        text = "DOCTYPE"
    with Peak(daemon) as p:
        r.send(chunk(doc.encode()))
        reply = r.read_xml()
    expect_malformed(reply, text)
    assert b"root:" not in r.buf
    assert p.growth_mb < 16
    assert r.rpc(GET_CONFIG, message_id="after").find("nc:data", NS) is not None
    assert other.get_config("running").ok


def send_until_closed(r, data_iter) -> int:
    """Send until the server closes the channel; returns the bytes sent."""
    sent = 0
    try:
        for data in data_iter:
            r.send(data)
            sent += len(data)
    except (OSError, EOFError) as e:  # paramiko: "Socket is closed" / EOF
        print(f"closed after {sent / MB:.1f} MB: {e!r}")
        return sent
    return sent


@pytest.mark.timeout(300)
@pytest.mark.parametrize("framing", ["chunked", "end-of-message"])
def test_100mb_config_closes_the_session_with_bounded_memory(daemon, framing):
    """A 100 MB <config> is over the 64 MiB message limit: the session is
    closed once the limit is passed (there is no rpc-error for a message
    the server never took in whole), the daemon's RSS grows by no more than
    about the limit, and another session goes on."""
    other = daemon.connect()
    r = daemon.raw(timeout=120)
    r.hello() if framing == "chunked" else r.hello((BASE10,))
    head = (f'<rpc xmlns="{BASE_NS}" message-id="big"><edit-config><target><candidate/></target>'
            f'<config xmlns="{BASE_NS}"><x xmlns="urn:hostile">').encode()
    piece = b"<a>" + b"y" * (MB - 8) + b"</a>"

    def pieces():
        yield chunk(head)[:-4] if framing == "chunked" else head
        for _ in range(100):
            yield b"\n#%d\n%s" % (len(piece), piece) if framing == "chunked" else piece
        yield b"\n##\n" if framing == "chunked" else b"</x></config></edit-config></rpc>" + EOM

    with Peak(daemon) as p:
        sent = send_until_closed(r, pieces())
        assert r.wait_closed(60)
    assert sent < 100 * MB
    assert p.growth_mb < 2.5 * MAX_MESSAGE / MB, p.growth_mb
    assert other.get_config("running").ok
    assert daemon.alive()


@pytest.mark.parametrize("header", [b"\n#4294967296\n", b"\n#4294967295\n", b"\n#99999999999\n"])
def test_huge_chunk_header_closes_at_once(daemon, header):
    """A chunk header announcing 4 GB (over the RFC 6242 maximum of
    4294967295, at it, or eleven digits) closes the session at once, before
    a byte of the chunk is buffered."""
    other = daemon.connect()
    r = daemon.raw()
    r.hello()
    with Peak(daemon) as p:
        r.send(header + b"<rpc")
        assert r.wait_closed(10)
    assert p.growth_mb < 16
    assert other.get_config("running").ok


@pytest.mark.timeout(300)
@pytest.mark.parametrize("framing", ["chunked", "end-of-message"])
def test_never_ending_message_is_cut_at_the_limit(daemon, framing):
    """A message that never ends (chunks without the end-of-chunks marker,
    or text without ]]>]]>) is taken in up to the 64 MiB limit, then the
    session is closed; memory stays bounded and another session goes on."""
    other = daemon.connect()
    r = daemon.raw(timeout=120)
    r.hello() if framing == "chunked" else r.hello((BASE10,))
    block = b"<a>x</a>" * (MB // 8)

    def forever():
        start = f'<rpc xmlns="{BASE_NS}" message-id="1"><get><filter>'.encode()
        yield b"\n#%d\n%s" % (len(start), start) if framing == "chunked" else start
        for _ in range(200):  # bounded: 200 MB, three times the limit
            yield b"\n#%d\n%s" % (len(block), block) if framing == "chunked" else block

    with Peak(daemon) as p:
        sent = send_until_closed(r, forever())
        assert r.wait_closed(60)
    assert sent < 200 * MB
    assert p.growth_mb < 2.5 * MAX_MESSAGE / MB, p.growth_mb
    assert other.get_config("running").ok
    assert daemon.alive()


@pytest.mark.timeout(300)
def test_too_many_elements_get_too_big_with_bounded_memory(daemon):
    """8 MB of empty <a/> siblings (2 million elements) in a filter: a
    parsed element costs ~40 times its 4 bytes, so the message would take
    ~330 MB parsed. Past xml::MAX_ELEMENTS (1,000,000) the parse stops with
    too-big (RFC 6241 App. A, error-type rpc), on a base:1.0 session as
    well, and the session goes on."""
    other = daemon.connect()
    for base in ("1.1", "1.0"):
        r = daemon.raw(timeout=120)
        r.hello() if base == "1.1" else r.hello((BASE10,))
        body = '<get><filter type="subtree"><x xmlns="urn:hostile">' + "<a/>" * 2_000_000 + "</x></filter></get>"
        with Peak(daemon) as p:
            reply = r.rpc(body, message_id="wide")
        err = reply.find("nc:rpc-error", NS)
        assert err is not None, reply
        assert err.findtext("nc:error-type", namespaces=NS) == "rpc"
        assert err.findtext("nc:error-tag", namespaces=NS) == "too-big"
        assert "more than 1000000 elements" in err.findtext("nc:error-message", namespaces=NS)
        assert p.growth_mb < 250, p.growth_mb
        assert r.rpc(GET_CONFIG, message_id="after").find("nc:data", NS) is not None
    assert other.get_config("running").ok
