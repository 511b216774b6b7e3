"""The whole lease table streamed (issue 11): a <get> that selects whole
lease entries is written into the session as it is produced. Over real
SSH, with both framings, the reply holds every lease of the store with
its hostname as the client sent it (made XML-safe: markup escaped, control
characters and U+FFFE/U+FFFF as '?', a framing marker that does not end a
base:1.0 message), one pool's leases are exactly that pool's entries of
the whole table, and libnetconf2's client (libyang, strict parse and
validation against the schemas it got from the server) takes the reply.

The daemon boots with a lease log the test writes (the store's own format,
`src/dhcp/leases.rs`), so no DHCP traffic is needed."""

from __future__ import annotations

import subprocess
import time
import zlib

from lxml import etree

from conftest import BASE10, BASE11, BASE_NS, DHCPS_NS, NS, PASSWORD, USER, data_of, group, vrrp
from test_libnetconf2 import client  # noqa: F401 (fixture)

LEASES = 3000
HOSTNAMES = [
    # sent, shown
    ("plain", "plain"),
    ("a&b<c>d\"e'f", "a&b<c>d\"e'f"),
    ("]]>]]>", "]]>]]>"),
    ("ctl\x01tab\tcr\r", "ctl?tab?cr?"),
    ("bad\ufffechar", "bad?char"),
    ("ünïcödé 名前", "ünïcödé 名前"),
]
STARTUP = f"""<dhcp-server xmlns="{DHCPS_NS}">
  <ip-pool><name>lan</name><gateway>10.60.0.1</gateway><mask>255.255.0.0</mask>
    <section><start>10.60.0.10</start><end>10.60.255.250</end></section></ip-pool>
  <ip-pool><name>wifi</name><gateway>10.61.0.1</gateway><mask>255.255.0.0</mask>
    <section><start>10.61.0.10</start><end>10.61.255.250</end></section></ip-pool>
</dhcp-server>
"""


def esc(s: str) -> str:
    """A text field of the lease log: bytes other than printable ASCII
    (and '%') as %xx; empty as '%'."""
    out = "".join(chr(b) if 0x21 <= b <= 0x7E and b != 0x25 else f"%{b:02x}" for b in s.encode())
    return out or "%"


def record(body: str) -> str:
    return f"{zlib.crc32(body.encode()):08x} {body}\n"


def written(d) -> dict:
    """Write the lease log: LEASES leases in pools lan and wifi; returns
    what each address must show (pool, hostname or None)."""
    expires = int(time.time()) + 7200
    want = {}
    lines = []
    for i in range(LEASES):
        pool, net = ("wifi", 61) if i % 3 == 0 else ("lan", 60)
        ip = f"10.{net}.{i // 200}.{10 + i % 200}"
        sent, shown = HOSTNAMES[i % len(HOSTNAMES)] if i % 4 else (None, None)
        hw = f"0200{i >> 16:02x}{(i >> 8) & 255:02x}{i & 255:02x}07"
        cid = f"ff{i & 255:02x}" if i % 2 else "-"
        host = esc(sent) if sent is not None else "-"
        lines.append(record(f"U {ip} {pool} {hw} {cid} {host} bound 7200 {expires} local"))
        want[ip] = (pool, shown)
    (d.storage / "leases.log").write_text("".join(lines))
    return want


def booted(daemon_factory):
    d = daemon_factory(start=False)
    (d.storage / "startup.xml").write_text(STARTUP)
    want = written(d)
    d.start()
    return d, want


def leases_of(data) -> dict:
    return {
        l.findtext("dhcps:ip-address", namespaces=NS): (
            l.findtext("dhcps:pool", namespaces=NS),
            l.findtext("dhcps:hostname", namespaces=NS),
        )
        for l in data.iterfind("dhcps:dhcp-server/dhcps:lease", NS)
    }


def canon(el) -> bytes:
    return etree.tostring(el, method="c14n", exclusive=True)


def test_the_whole_table_streams_in_both_framings(daemon_factory):
    d, want = booted(daemon_factory)
    whole = {}
    # by hand: ncclient's base:1.0 parser decodes each read on its own and
    # fails on a character split between two reads
    for base10 in (False, True):
        r = d.raw(timeout=120)
        r.hello((BASE10,) if base10 else (BASE10, BASE11))
        assert r.framing == ("eom" if base10 else "chunked")
        data = r.rpc("<get/>").find(f"{{{BASE_NS}}}data")
        got = leases_of(data)
        assert len(got) == LEASES, (base10, len(got))
        assert got == want, base10
        whole[base10] = data
        # the pool statistics and counters are in the same dhcp-server
        assert data.find("dhcps:dhcp-server/dhcps:statistics/dhcps:packets-received", NS) is not None
        names = [p.findtext("dhcps:name", namespaces=NS) for p in data.iterfind("dhcps:dhcp-server/dhcps:ip-pool", NS)]
        assert names == ["lan", "wifi"], names
        r.close()
    assert canon(whole[False].find("dhcps:dhcp-server", NS)) == canon(whole[True].find("dhcps:dhcp-server", NS))
    # one pool's leases: that pool's entries of the whole table, by XPath
    # and by subtree content match
    m = d.connect(timeout=120)
    entries = {
        l.findtext("dhcps:ip-address", namespaces=NS): canon(l)
        for l in whole[False].iterfind("dhcps:dhcp-server/dhcps:lease", NS)
        if l.findtext("dhcps:pool", namespaces=NS) == "wifi"
    }
    assert len(entries) == LEASES // 3
    for flt in [
        ("xpath", ({"d": DHCPS_NS}, "/d:dhcp-server/d:lease[d:pool='wifi']")),
        ("subtree", f'<dhcp-server xmlns="{DHCPS_NS}"><lease><pool>wifi</pool></lease></dhcp-server>'),
    ]:
        data = data_of(m.get(filter=flt))
        got = {l.findtext("dhcps:ip-address", namespaces=NS): canon(l) for l in data.iterfind("dhcps:dhcp-server/dhcps:lease", NS)}
        assert got == entries, flt[0]
        assert data.find("dhcps:dhcp-server/dhcps:statistics", NS) is None, flt[0]
    none = data_of(m.get(filter=("subtree", f'<dhcp-server xmlns="{DHCPS_NS}"><lease><pool>none</pool></lease></dhcp-server>')))
    assert len(none) == 0


def test_libnetconf2_parses_a_streamed_table(client, daemon_factory, tmp_path):  # noqa: F811
    d, _ = booted(daemon_factory)
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    edit = vrrp(group(interface="eth0", vrid=7, priority=120))
    check = "/hotlease-vrrp:vrrp/group[interface='eth0'][vrid='7']/priority"
    r = subprocess.run(
        [str(client), "127.0.0.1", str(d.port), USER, PASSWORD, str(schemas), edit, check],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr[-3000:] + d.stderr(40)
    assert "OK get\n" in r.stdout, r.stdout
