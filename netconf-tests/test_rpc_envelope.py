"""The <rpc> envelope (RFC 6241 §4.1-4.3): attributes, message-id, replies."""

import pytest
from lxml import etree

from conftest import BASE_NS, NS

EX_NS = "http://example.net/content/1.0"
GET_CONFIG = "<get-config><source><running/></source></get-config>"


@pytest.fixture
def raw(module_daemon):
    r = module_daemon.raw()
    r.hello()
    yield r
    r.close()


def test_reply_copies_all_rpc_attributes(raw):
    """RFC 6241 §4.2 example: user-id in another namespace is copied."""
    reply = raw.rpc(
        GET_CONFIG,
        message_id="101",
        attrs=f' xmlns:ex="{EX_NS}" ex:user-id="fred" plain="yes" ex:other="a &amp; b"',
    )
    assert reply.tag == f"{{{BASE_NS}}}rpc-reply"
    assert reply.get("message-id") == "101"
    assert reply.get(f"{{{EX_NS}}}user-id") == "fred"
    assert reply.get(f"{{{EX_NS}}}other") == "a & b"
    assert reply.get("plain") == "yes"
    assert reply.find("nc:data", NS) is not None


def test_reply_copies_attributes_with_default_prefix_rpc(raw):
    """A prefixed <nc:rpc>; the reply is in the base namespace whatever the prefix."""
    xml = (
        f'<nc:rpc xmlns:nc="{BASE_NS}" xmlns:ex="{EX_NS}" message-id="x-7" ex:trace="t1">'
        f"<nc:get-config><nc:source><nc:running/></nc:source></nc:get-config></nc:rpc>"
    ).encode()
    raw.send(raw.frame(xml))
    reply = raw.read_xml()
    assert reply.tag == f"{{{BASE_NS}}}rpc-reply"
    assert reply.get("message-id") == "x-7"
    assert reply.get(f"{{{EX_NS}}}trace") == "t1"


def test_message_id_is_opaque_string(raw):
    mid = "id with spaces &amp; <sym>".replace("<", "&lt;").replace(">", "&gt;")
    reply = raw.rpc(GET_CONFIG, message_id=mid)
    assert reply.get("message-id") == "id with spaces & <sym>"


def test_missing_message_id(raw):
    reply = raw.rpc(GET_CONFIG, message_id=None)
    assert reply.tag == f"{{{BASE_NS}}}rpc-reply"
    assert reply.get("message-id") is None
    err = reply.find("nc:rpc-error", NS)
    assert err is not None, etree.tostring(reply)
    assert err.findtext("nc:error-type", namespaces=NS) == "rpc"
    assert err.findtext("nc:error-tag", namespaces=NS) == "missing-attribute"
    assert err.findtext("nc:error-severity", namespaces=NS) == "error"
    info = err.find("nc:error-info", NS)
    assert info is not None
    assert info.findtext("nc:bad-attribute", namespaces=NS) == "message-id"
    assert info.findtext("nc:bad-element", namespaces=NS) == "rpc"
    # the session goes on
    assert raw.rpc(GET_CONFIG, message_id="2").find("nc:data", NS) is not None


def test_missing_message_id_keeps_other_attributes(raw):
    reply = raw.rpc(GET_CONFIG, message_id=None, attrs=f' xmlns:ex="{EX_NS}" ex:user-id="fred"')
    assert reply.get(f"{{{EX_NS}}}user-id") == "fred"
    assert reply.find("nc:rpc-error", NS) is not None


def test_unknown_operation(raw):
    reply = raw.rpc('<frobnicate xmlns="urn:example:nothing"/>', message_id="3")
    err = reply.find("nc:rpc-error", NS)
    assert err is not None
    assert err.findtext("nc:error-tag", namespaces=NS) in ("operation-not-supported", "unknown-element", "unknown-namespace")
    assert reply.get("message-id") == "3"


def test_rpc_without_operation(raw):
    reply = raw.rpc("", message_id="4")
    err = reply.find("nc:rpc-error", NS)
    assert err is not None
    assert err.findtext("nc:error-tag", namespaces=NS) in ("missing-element", "operation-failed", "malformed-message")


def test_get_config_without_source(raw):
    reply = raw.rpc("<get-config/>", message_id="5")
    err = reply.find("nc:rpc-error", NS)
    assert err is not None
    assert err.findtext("nc:error-tag", namespaces=NS) == "missing-element"
    assert err.findtext("nc:error-type", namespaces=NS) in ("protocol", "application")
    info = err.find("nc:error-info", NS)
    assert info is not None and info.findtext("nc:bad-element", namespaces=NS) == "source"


def test_get_config_unknown_datastore(raw):
    reply = raw.rpc("<get-config><source><bogus/></source></get-config>", message_id="6")
    err = reply.find("nc:rpc-error", NS)
    assert err is not None
    assert err.findtext("nc:error-tag", namespaces=NS) in ("bad-element", "invalid-value", "unknown-element")


def test_unknown_parameter_in_operation(raw):
    reply = raw.rpc("<get-config><source><running/></source><frob/></get-config>", message_id="7")
    err = reply.find("nc:rpc-error", NS)
    assert err is not None
    assert err.findtext("nc:error-tag", namespaces=NS) == "unknown-element"
    info = err.find("nc:error-info", NS)
    assert info is not None and info.findtext("nc:bad-element", namespaces=NS) == "frob"
    # error-path: the unknown element's parent, the operation
    path = err.find("nc:error-path", NS)
    assert path is not None, etree.tostring(err).decode()
    prefix, _, rest = path.text.partition(":")
    assert path.text == f"/{prefix[1:]}:rpc/{prefix[1:]}:get-config", path.text
    assert path.nsmap[prefix[1:]] == BASE_NS


def test_ok_reply_shape(raw):
    reply = raw.rpc("<discard-changes/>", message_id="8")
    assert [etree.QName(c).localname for c in reply] == ["ok"]
