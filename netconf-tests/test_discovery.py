"""Schema discovery as a controller does it (issue 12): the hello's
capabilities, the YANG library (RFC 8525 yang-library, RFC 7895
modules-state), RFC 6022 netconf-state and get-schema of every module
listed, each schema parsed back by yanglint into one complete set."""

import shutil
import subprocess
import time
from urllib.parse import parse_qs, urlparse

import pytest
from lxml import etree

from conftest import MON_NS, MODULES, USER, config, group, vrrp

YL_NS = "urn:ietf:params:xml:ns:yang:ietf-yang-library"
NC_FEATURES = {"candidate", "confirmed-commit", "rollback-on-error", "validate", "startup", "xpath"}
N = {"yl": YL_NS, "mon": MON_NS}


@pytest.fixture(scope="module")
def m(module_daemon):
    m = module_daemon.connect()
    yield m
    m.close_session()


def module_caps(caps):
    """{module: (namespace, {param: value})} from the hello's module capabilities."""
    out = {}
    for c in caps:
        u = urlparse(c)
        q = parse_qs(u.query)
        if "module" in q:
            ns = c.split("?", 1)[0]
            out[q["module"][0]] = (ns, {k: v[0] for k, v in q.items()})
    return out


def get_data(m, subtree):
    reply = m.get(filter=("subtree", subtree))
    return etree.fromstring(reply.xml.encode()).find("{urn:ietf:params:xml:ns:netconf:base:1.0}data")


def test_hello_announces_modules_features_and_yang_library(m):
    caps = list(m.server_capabilities)
    mods = module_caps(caps)
    ns, nc = mods["ietf-netconf"]
    assert ns == "urn:ietf:params:xml:ns:netconf:base:1.0"
    assert nc["revision"] == "2011-06-01"
    assert set(nc["features"].split(",")) == NC_FEATURES
    assert mods["ietf-netconf-monitoring"] == (MON_NS, {"module": "ietf-netconf-monitoring", "revision": "2010-10-04"})
    for name, ns in MODULES.items():
        assert mods[name][0] == ns
    lib11 = [c for c in caps if c.startswith("urn:ietf:params:netconf:capability:yang-library:1.1?")]
    lib10 = [c for c in caps if c.startswith("urn:ietf:params:netconf:capability:yang-library:1.0?")]
    assert len(lib11) == 1 and len(lib10) == 1, caps
    q11, q10 = parse_qs(urlparse(lib11[0]).query), parse_qs(urlparse(lib10[0]).query)
    assert q11["revision"] == ["2019-01-04"] and q11["content-id"][0]
    assert q10["module-set-id"] == q11["content-id"]


def test_yang_library_lists_every_module(m):
    data = get_data(m, f'<yang-library xmlns="{YL_NS}"/>')
    lib = data.find("yl:yang-library", N)
    assert lib is not None, etree.tostring(data)
    caps = list(m.server_capabilities)
    cid = parse_qs(urlparse([c for c in caps if "yang-library:1.1" in c][0]).query)["content-id"][0]
    assert lib.findtext("yl:content-id", namespaces=N) == cid
    mods = {e.findtext("yl:name", namespaces=N): e for e in lib.findall("yl:module-set/yl:module", N)}
    imports = {e.findtext("yl:name", namespaces=N): e for e in lib.findall("yl:module-set/yl:import-only-module", N)}
    for name in [*MODULES, "ietf-netconf", "ietf-netconf-monitoring", "ietf-netconf-with-defaults", "ietf-yang-library", "ietf-netconf-acm"]:
        assert name in mods, sorted(mods)
    for name in ["ietf-inet-types", "ietf-yang-types"]:
        assert name in imports, sorted(imports)
    feats = {f.text for f in mods["ietf-netconf"].findall("yl:feature", N)}
    assert feats == NC_FEATURES
    assert mods["hotlease-vrrp"].findtext("yl:revision", namespaces=N) == "2026-11-25"
    dss = {d.findtext("yl:name", namespaces=N).split(":")[-1] for d in lib.findall("yl:datastore", N)}
    assert {"running", "candidate", "startup"} <= dss


def test_modules_state_for_rfc7895_clients(m):
    data = get_data(m, f'<modules-state xmlns="{YL_NS}"/>')
    st = data.find("yl:modules-state", N)
    assert st is not None
    caps = list(m.server_capabilities)
    msid = parse_qs(urlparse([c for c in caps if "yang-library:1.0" in c][0]).query)["module-set-id"][0]
    assert st.findtext("yl:module-set-id", namespaces=N) == msid
    mods = {e.findtext("yl:name", namespaces=N): e for e in st.findall("yl:module", N)}
    assert mods["ietf-netconf"].findtext("yl:conformance-type", namespaces=N) == "implement"
    assert mods["ietf-inet-types"].findtext("yl:conformance-type", namespaces=N) == "import"
    assert mods["hotlease-dhcp-server"].findtext("yl:namespace", namespaces=N) == MODULES["hotlease-dhcp-server"]


def test_netconf_state_capabilities_are_the_hello(m):
    data = get_data(m, f'<netconf-state xmlns="{MON_NS}"><capabilities/></netconf-state>')
    caps = [c.text for c in data.findall("mon:netconf-state/mon:capabilities/mon:capability", N)]
    assert sorted(caps) == sorted(m.server_capabilities)


def test_netconf_state_schemas_and_get_schema_of_each(m, tmp_path):
    data = get_data(m, f'<netconf-state xmlns="{MON_NS}"><schemas/></netconf-state>')
    schemas = data.findall("mon:netconf-state/mon:schemas/mon:schema", N)
    by = {}
    for s in schemas:
        assert s.findtext("mon:location", namespaces=N) == "NETCONF"
        fmt = s.findtext("mon:format", namespaces=N).split(":")[-1]
        by.setdefault((s.findtext("mon:identifier", namespaces=N), s.findtext("mon:version", namespaces=N)), set()).add(fmt)
    # every module of the YANG library is listed, in yang and yin
    lib = get_data(m, f'<modules-state xmlns="{YL_NS}"/>')
    listed = {(e.findtext("yl:name", namespaces=N), e.findtext("yl:revision", namespaces=N)) for e in lib.findall("yl:modules-state/yl:module", N)}
    assert len(listed) >= 10 and listed <= set(by), (listed, set(by))
    for key, fmts in by.items():
        assert fmts == {"yang", "yin"}, key
    # get-schema of each, written out and parsed back by yanglint
    files = []
    for (ident, version) in sorted(by):
        text = m.get_schema(ident, version=version or None).data
        assert f"module {ident}" in text, ident
        p = tmp_path / (f"{ident}@{version}.yang" if version else f"{ident}.yang")
        p.write_text(text)
        files.append(p)
        yin = m.get_schema(ident, version=version or None, format="yin").data
        assert f'module name="{ident}"' in yin, ident
    if not shutil.which("yanglint"):
        pytest.skip("yanglint not installed")
    # yanglint with only what the server gave: every import resolves
    ours = [p for p in files if p.name.split("@")[0] in MODULES or p.name.startswith("ietf-netconf")]
    r = subprocess.run(["yanglint", "-D", "-p", str(tmp_path), *map(str, ours)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_get_schema_of_imported_ietf_modules(m):
    for name in ["ietf-inet-types", "ietf-yang-types", "ietf-netconf-monitoring", "ietf-yang-library", "ietf-datastores", "ietf-netconf-acm"]:
        assert f"module {name}" in m.get_schema(name).data


def test_netconf_state_sessions_datastores_statistics(module_daemon):
    a = module_daemon.connect()
    b = module_daemon.connect()
    try:
        a.lock("candidate")
        a.get_config("running")
        b.get_config("running")
        try:
            b.dispatch(etree.fromstring('<no-such-op xmlns="urn:x"/>'))
        except Exception:
            pass
        data = get_data(b, f'<netconf-state xmlns="{MON_NS}"/>')
        st = data.find("mon:netconf-state", N)
        sessions = {int(s.findtext("mon:session-id", namespaces=N)): s for s in st.findall("mon:sessions/mon:session", N)}
        sa, sb = sessions[int(a.session_id)], sessions[int(b.session_id)]
        for s in (sa, sb):
            assert s.findtext("mon:username", namespaces=N) == USER
            assert s.findtext("mon:source-host", namespaces=N) == "127.0.0.1"
            assert s.findtext("mon:transport", namespaces=N).endswith("netconf-ssh")
            assert s.findtext("mon:login-time", namespaces=N).startswith(time.strftime("%Y-", time.gmtime()))
        assert int(sa.findtext("mon:in-rpcs", namespaces=N)) == 2
        assert int(sa.findtext("mon:out-rpc-errors", namespaces=N)) == 0
        assert int(sb.findtext("mon:in-rpcs", namespaces=N)) >= 1
        assert int(sb.findtext("mon:out-rpc-errors", namespaces=N)) == 1
        assert int(sb.findtext("mon:in-bad-rpcs", namespaces=N)) == 1
        assert int(sa.findtext("mon:in-bad-rpcs", namespaces=N)) == 0
        ds = {d.findtext("mon:name", namespaces=N): d for d in st.findall("mon:datastores/mon:datastore", N)}
        assert set(ds) == {"running", "candidate", "startup"}
        assert ds["candidate"].findtext("mon:locks/mon:global-lock/mon:locked-by-session", namespaces=N) == str(a.session_id)
        assert ds["candidate"].findtext("mon:locks/mon:global-lock/mon:locked-time", namespaces=N)
        assert ds["running"].find("mon:locks", N) is None
        stats = st.find("mon:statistics", N)
        assert int(stats.findtext("mon:in-sessions", namespaces=N)) >= 2
        assert int(stats.findtext("mon:in-rpcs", namespaces=N)) >= 4
        assert int(stats.findtext("mon:out-rpc-errors", namespaces=N)) >= 1
        assert stats.findtext("mon:netconf-start-time", namespaces=N)
        before = int(stats.findtext("mon:dropped-sessions", namespaces=N))
        # a client that goes away without close-session is a dropped session
        a._session.close()
        for _ in range(100):
            data = get_data(b, f'<netconf-state xmlns="{MON_NS}"><statistics/></netconf-state>')
            dropped = int(data.findtext("mon:netconf-state/mon:statistics/mon:dropped-sessions", namespaces=N))
            if dropped > before:
                break
            time.sleep(0.05)
        assert dropped == before + 1
        # and its lock is gone from the datastores
        data = get_data(b, f'<netconf-state xmlns="{MON_NS}"><datastores/></netconf-state>')
        assert data.find(".//mon:global-lock", N) is None
    finally:
        b.close_session()


def test_xpath_filter_on_netconf_state(m):
    reply = m.get(filter=("xpath", ({"ncm": MON_NS}, "/ncm:netconf-state/ncm:schemas/ncm:schema[ncm:identifier='hotlease-vrrp']")))
    data = etree.fromstring(reply.xml.encode())
    idents = {e.text for e in data.iter(f"{{{MON_NS}}}identifier")}
    assert idents == {"hotlease-vrrp"}


def test_get_config_carries_no_discovery_state(m):
    m.edit_config(target="candidate", config=config(vrrp(group())))
    m.commit()
    xml = m.get_config("running").xml
    assert "netconf-state" not in xml and "yang-library" not in xml


def test_statistics_count_sessions_bad_hellos_and_dropped_sessions(daemon):
    from conftest import BASE10, EOM, hello_xml

    m = daemon.connect()

    def stats():
        data = get_data(m, f'<netconf-state xmlns="{MON_NS}"><statistics/></netconf-state>')
        st = data.find("mon:netconf-state/mon:statistics", N)
        return {e.tag.split("}")[1]: e.text for e in st}

    s0 = stats()
    assert s0["in-sessions"] == "1" and s0["in-bad-hellos"] == "0" and s0["dropped-sessions"] == "0"
    # a hello without a common base: the session is dropped as a bad hello
    r = daemon.raw()
    r.read_eom()
    r.send(hello_xml(("urn:ietf:params:netconf:base:9.9",)) + EOM)
    with pytest.raises(EOFError):
        while True:
            r._more()
    r.close()
    # a good base:1.0 session that sends a message that is no <rpc>, then leaves
    r = daemon.raw()
    r.read_eom()
    r.send(hello_xml((BASE10,)) + EOM)
    r.send(b'<rpc message-id="1" xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><get/></rpc>' + EOM)
    r.read_eom()
    r.close()
    polls = 0
    for _ in range(100):
        s = stats()
        polls += 1
        if s["dropped-sessions"] == "1":
            break
        time.sleep(0.05)
    assert s["in-sessions"] == "3", s
    assert s["in-bad-hellos"] == "1", s
    assert s["dropped-sessions"] == "1", s
    # the raw session's <get> and our own polls (each <get> counts itself)
    assert int(s["in-rpcs"]) == int(s0["in-rpcs"]) + 1 + polls, (s0, s, polls)
    m.close_session()
