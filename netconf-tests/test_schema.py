"""<get-schema> (RFC 6022 §3.1) for the project's modules."""

import pytest
from lxml import etree
from ncclient.operations.rpc import RPCError

from conftest import MODULES, MON_NS, assert_rpc_error, yang_revision


def get_schema(m, identifier, version=None, fmt=None):
    body = f'<get-schema xmlns="{MON_NS}"><identifier>{identifier}</identifier>'
    if version is not None:
        body += f"<version>{version}</version>"
    if fmt is not None:
        body += f"<format>{fmt}</format>"
    body += "</get-schema>"
    reply = m.dispatch(etree.fromstring(body))
    data = reply.data_ele if hasattr(reply, "data_ele") else None
    if data is None or etree.QName(data).localname != "data":
        data = etree.fromstring(reply.xml.encode()).find(f"{{{MON_NS}}}data")
    assert data is not None, reply.xml
    assert etree.QName(data).namespace == MON_NS, "get-schema <data> is in the monitoring namespace"
    return data.text or ""


@pytest.fixture(scope="module")
def m(module_daemon):
    m = module_daemon.connect()
    yield m
    m.close_session()


@pytest.mark.parametrize("module", sorted(MODULES))
def test_get_schema(m, module):
    text = get_schema(m, module)
    assert f"module {module}" in text
    assert MODULES[module] in text


@pytest.mark.parametrize("module", sorted(MODULES))
def test_get_schema_with_version_and_format(m, module):
    rev = yang_revision(module) or "2026-11-25"
    text = get_schema(m, module, version=rev, fmt="yang")
    assert f"module {module}" in text
    assert rev in text


def test_get_schema_is_the_source_file(m):
    from conftest import YANG_DIR

    p = YANG_DIR / "hotlease-vrrp.yang"
    if not p.exists():
        pytest.skip("no yang/hotlease-vrrp.yang")
    assert get_schema(m, "hotlease-vrrp").strip() == p.read_text().strip()


def test_get_schema_via_ncclient(m):
    reply = m.get_schema("hotlease-dhcp-server")
    assert "module hotlease-dhcp-server" in reply.data


def test_get_schema_unknown_module(m):
    with pytest.raises(RPCError) as ei:
        get_schema(m, "no-such-module")
    assert_rpc_error(ei, "invalid-value")


def test_get_schema_wrong_version(m):
    with pytest.raises(RPCError) as ei:
        get_schema(m, "hotlease-vrrp", version="1999-01-01")
    assert_rpc_error(ei, "invalid-value")


def test_get_schema_missing_identifier(m):
    with pytest.raises(RPCError) as ei:
        m.dispatch(etree.fromstring(f'<get-schema xmlns="{MON_NS}"/>'))
    assert_rpc_error(ei, ("missing-element", "invalid-value"))
