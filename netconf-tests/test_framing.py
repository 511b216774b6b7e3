"""RFC 6242 framing: end-of-message (base:1.0) and chunked (base:1.1)."""

import time

import pytest
from lxml import etree
from ncclient.transport.session import NetconfBase

from conftest import (
    BASE10,
    BASE11,
    BASE_NS,
    EOM,
    NS,
    chunk,
    config,
    find_groups,
    group,
    hello_xml,
    vrrp,
)

GET_CONFIG = "<get-config><source><running/></source></get-config>"


def rpc_bytes(body=GET_CONFIG, mid="1"):
    return f'<rpc xmlns="{BASE_NS}" message-id="{mid}">{body}</rpc>'.encode()


def is_reply(el, mid):
    return el.tag == f"{{{BASE_NS}}}rpc-reply" and el.get("message-id") == mid


def test_ncclient_uses_chunked_framing(daemon):
    m = daemon.connect()
    assert m._session._base == NetconfBase.BASE_11
    m.edit_config(target="candidate", config=config(vrrp(group(vrid=7))))
    m.commit()
    assert (("eth0", 7)) in find_groups(m.get_config("running").data_ele)


def test_base10_only_ncclient_client(daemon):
    m = daemon.connect(base10=True)
    assert m._session._base == NetconfBase.BASE_10
    assert BASE11 not in list(m.client_capabilities)
    m.edit_config(target="candidate", config=config(vrrp(group(vrid=8))))
    m.commit()
    assert ("eth0", 8) in find_groups(m.get_config("running").data_ele)
    m.close_session()


def test_raw_eom_session(daemon):
    r = daemon.raw()
    r.hello((BASE10,))
    assert r.framing == "eom"
    r.send(rpc_bytes(mid="a1") + EOM)
    raw = r.read_eom()
    assert not raw.lstrip().startswith(b"#"), "chunked reply on a base:1.0 session"
    assert is_reply(etree.fromstring(raw), "a1")


def test_raw_chunked_session(daemon):
    r = daemon.raw()
    r.hello((BASE10, BASE11))
    assert r.framing == "chunked"
    r.send(chunk(rpc_bytes(mid="c1")))
    assert is_reply(etree.fromstring(r.read_chunked()), "c1")


@pytest.mark.parametrize("base", ["1.0", "1.1"])
def test_hello_and_rpc_in_one_write(daemon, base):
    """netconfd never answers an rpc that arrives in the same read as the
    hello when base:1.1 is on; hotleased must."""
    r = daemon.raw()
    caps = (BASE10, BASE11) if base == "1.1" else (BASE10,)
    framed = chunk(rpc_bytes(mid="same")) if base == "1.1" else rpc_bytes(mid="same") + EOM
    r.send(hello_xml(caps) + EOM + framed)
    r.read_server_hello(caps)
    assert r.framing == ("chunked" if base == "1.1" else "eom")
    assert is_reply(etree.fromstring(r.read()), "same")


def test_two_rpcs_in_one_write_answered_in_order(daemon):
    r = daemon.raw()
    r.hello()
    r.send(chunk(rpc_bytes(mid="x1")) + chunk(rpc_bytes(mid="x2")))
    assert is_reply(r.read_xml(), "x1")
    assert is_reply(r.read_xml(), "x2")


def test_rpc_in_many_chunks_dribbled(daemon):
    """A message split into several chunks, sent a few bytes per write."""
    r = daemon.raw()
    r.hello()
    data = chunk(rpc_bytes(mid="drip"), sizes=[1, 7, 30, 2])
    for i in range(0, len(data), 5):
        r.send(data[i : i + 5])
        time.sleep(0.002)
    assert is_reply(r.read_xml(), "drip")


def test_eom_rpc_dribbled(daemon):
    r = daemon.raw()
    r.hello((BASE10,))
    data = rpc_bytes(mid="drip0") + EOM
    for i in range(0, len(data), 3):
        r.send(data[i : i + 3])
    assert is_reply(r.read_xml(), "drip0")


def test_large_reply_chunked(daemon):
    m = daemon.connect()
    groups = "".join(group(interface=f"ve{i // 200}", vrid=i % 200 + 1, vips=(f"10.{i // 200}.{i % 200}.1",)) for i in range(400))
    m.edit_config(target="candidate", config=config(vrrp(groups)))
    m.commit()
    r = daemon.raw()
    r.hello()
    r.send(chunk(rpc_bytes(mid="big")))
    reply = r.read_xml()
    assert is_reply(reply, "big")
    assert len(reply.findall(".//vrrp:group", NS)) == 400


BAD_HEADERS = {
    "letters": b"\n#abc\n",
    "zero": b"\n#0\n",
    "leading-zero": b"\n#012\n",
    "too-big": b"\n#4294967296\n",
    "no-leading-lf": b"#12\n",
    "no-hash": b"\n12\n",
    "negative": b"\n#-5\n",
}


@pytest.mark.parametrize("header", list(BAD_HEADERS), ids=list(BAD_HEADERS))
def test_bad_chunk_header_closes_session(daemon, header):
    r = daemon.raw()
    r.hello()
    r.send(BAD_HEADERS[header] + b"<rpc/>\n##\n" + b"x" * 64)
    assert r.wait_closed(5), f"session still open after bad chunk header {BAD_HEADERS[header]!r}"
    # the daemon itself is fine
    daemon.connect().get_config("running")


def test_bad_end_of_chunks_closes_session(daemon):
    r = daemon.raw()
    r.hello()
    msg = rpc_bytes(mid="e")
    r.send(b"\n#%d\n%s\n#X\n" % (len(msg), msg))
    assert r.wait_closed(5)


def error_tags(reply):
    return [e.findtext("nc:error-tag", namespaces=NS) for e in reply.iterfind("nc:rpc-error", NS)]


@pytest.mark.parametrize(
    "payload",
    [
        b'<rpc xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="9"><get-config><source><running/></source></get-config>',
        b"this is not xml at all",
        b'<rpc xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="9"><get-config></source></get-config></rpc>',
        b'<?xml version="1.0"?><rpc message-id="9" xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><get/></rpc><extra/>',
    ],
    ids=["unterminated", "not-xml", "mismatched-tag", "two-roots"],
)
def test_malformed_xml_gets_malformed_message_and_session_lives(daemon, payload):
    r = daemon.raw()
    r.hello()
    r.send(chunk(payload))
    reply = r.read_xml()
    assert reply.tag == f"{{{BASE_NS}}}rpc-reply"
    err = reply.find("nc:rpc-error", NS)
    assert err is not None, etree.tostring(reply)
    assert err.findtext("nc:error-tag", namespaces=NS) == "malformed-message"
    assert err.findtext("nc:error-type", namespaces=NS) == "rpc"
    assert err.findtext("nc:error-severity", namespaces=NS) == "error"
    # framing is intact, so the session goes on
    r.send(chunk(rpc_bytes(mid="after")))
    assert is_reply(r.read_xml(), "after")


def test_malformed_xml_on_base10_session(daemon):
    """malformed-message is new in base:1.1 and MUST NOT be sent to base:1.0
    clients (RFC 6241 App. A): the server closes or answers another tag."""
    r = daemon.raw()
    r.hello((BASE10,))
    r.send(b"<rpc xmlns='urn:ietf:params:xml:ns:netconf:base:1.0' message-id='1'><get>" + EOM)
    if r.wait_closed(3):
        assert b"malformed-message" not in r.buf
    else:
        reply = r.read_xml()
        assert error_tags(reply) and "malformed-message" not in error_tags(reply)
    daemon.connect().get_config("running")


def test_huge_garbage_message_does_not_wedge(daemon):
    r = daemon.raw()
    r.hello()
    blob = b"<" * (2 * 1024 * 1024)
    try:
        r.send(chunk(blob))
        r.wait_closed(5)
    except (OSError, EOFError):
        pass
    m = daemon.connect()
    m.get_config("running")


def test_unknown_top_level_element(daemon):
    """A well-formed message that is not <rpc>: the server must not crash."""
    r = daemon.raw()
    r.hello()
    r.send(chunk(f'<frobnicate xmlns="{BASE_NS}"/>'.encode()))
    if not r.wait_closed(2):
        reply = r.read_xml()
        assert reply.find("nc:rpc-error", NS) is not None
    daemon.connect().get_config("running")
