"""Rules whose cross-pool part hotleased enforces at commit, not libyang.

A YANG ``must`` comparing a pool with every other pool costs O(pools²) per
commit in libyang, so the YANG modules keep only the part of such a rule that
reads the pool itself (gateway-, server-identifier- and static-bind-in-section
within the pool, section-overlap) and the daemon checks the part across pools
(yang-tests/README.md, "Rules enforced by the daemon").  It must report them
like the YANG rules they replace: error-type application, error-tag
operation-failed, the same error-app-tag and error-message, and an error-path
to the offending node; a refused commit changes nothing.

* ``test_daemon_file_refused`` commits every yang-tests/daemon/*.xml (which
  yanglint accepts) into an empty running (the whole candidate is checked)
  and on top of yang-tests/valid.xml (only the new pool changed).
* ``test_new_pool_*`` / ``test_changed_pool_*``: a pool that did not change
  holds the offending node, or the pool that changed already existed.
* ``test_*_commit``: what the rules must not refuse.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from lxml import etree
from ncclient.operations.rpc import RPCError

from conftest import DHCPS_NS, NS, ROOT, canonical_path, config, data_of, errors_of

YANG_TESTS = ROOT / "yang-tests"
DAEMON_FILES = sorted((YANG_TESTS / "daemon").glob("*.xml"))
POOL = "/dhcps:dhcp-server/dhcps:ip-pool[dhcps:name='{}']"


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def headers(path: Path) -> dict[str, list[str]]:
    """The ``<!-- key: value -->`` header lines of a yang-tests file."""
    out: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        m = re.fullmatch(r"<!-- ([a-z-]+): (.*) -->", line.strip())
        if m:
            out.setdefault(m.group(1), []).append(m.group(2).strip())
    return out


def body(path: Path) -> str:
    """The top-level elements of a yang-tests file, without its comments."""
    return re.sub(r"<!--.*?-->", "", path.read_text(), flags=re.S)


def running_c14n(m) -> bytes:
    return etree.tostring(data_of(m.get_config("running")), method="c14n")


def error_path(e: RPCError):
    pe = e.xml.find(f"{{{NS['nc']}}}error-path")
    if pe is None or not pe.text:
        return None
    return canonical_path(pe.text, {k: v for k, v in pe.nsmap.items() if k})


def describe(errs) -> list:
    return [(e.type, e.tag, e.app_tag, (e.path or "").strip(), (e.message or "").strip()) for e in errs]


def check_error(exc: RPCError, app_tag: str, message: str | None, paths=()):
    """Some rpc-error of the reply has *app_tag*; every such error is an
    application operation-failed error with *message*; when *paths* are
    given, one of them has one of those error-paths."""
    errs = errors_of(exc)
    hits = [e for e in errs if e.app_tag == app_tag]
    assert hits, f"no rpc-error with error-app-tag {app_tag!r}: {describe(errs)}"
    for e in hits:
        detail = etree.tostring(e.xml).decode()
        assert e.tag == "operation-failed", f"error-tag {e.tag!r}: {detail}"
        assert e.type == "application", f"error-type {e.type!r}: {detail}"
        assert e.severity == "error", detail
        if message is not None:
            assert (e.message or "").strip() == message, f"error-message {e.message!r}, expected {message!r}"
    if paths:
        want = [canonical_path(p, NS) for p in paths]
        got = [error_path(e) for e in hits]
        assert any(g in want for g in got), (
            f"error-path {[(e.path or '').strip() for e in hits]}, expected one of {list(paths)}"
        )


def refused(m, edit: str, app_tag: str, message: str | None, paths=()):
    """Merge *edit* into the candidate; validate and commit must both fail
    with the error; running must not change."""
    before = running_c14n(m)
    m.edit_config(target="candidate", config=config(edit))
    with pytest.raises(RPCError) as ei:
        m.validate("candidate")
    check_error(ei.value, app_tag, message, paths)
    with pytest.raises(RPCError) as ei:
        m.commit()
    check_error(ei.value, app_tag, message, paths)
    assert running_c14n(m) == before, "a refused commit changed running"
    m.discard_changes()
    assert running_c14n(m) == before


def dhcp(*pools: str) -> str:
    return f'<dhcp-server xmlns="{DHCPS_NS}">' + "".join(pools) + "</dhcp-server>"


def pool(name: str, body_: str) -> str:
    return f"<ip-pool><name>{name}</name>{body_}</ip-pool>"


def section(start: str, end: str) -> str:
    return f"<section><start>{start}</start><end>{end}</end></section>"


def static_bind(ip: str, mac: str) -> str:
    return f"<static-bind><ip-address>{ip}</ip-address><mac-address>{mac}</mac-address></static-bind>"


def pool_names(m) -> list[str]:
    data = data_of(m.get_config("running"))
    return sorted(x.text for x in data.iterfind("dhcps:dhcp-server/dhcps:ip-pool/dhcps:name", NS))


# Messages of the rules (the same as the YANG error-messages they replace).
MSG = {
    "gateway-in-section": "a gateway address cannot lie inside a dynamic section",
    "server-identifier-in-section": "the server-identifier cannot lie inside a dynamic section",
    "static-bind-in-section": "a static-bind address cannot lie inside a dynamic section",
    "section-overlap-other-pool": "a section must not overlap a section of another pool",
    "static-bind-duplicate": "an address can be statically bound in one pool only",
}


# --------------------------------------------------------------------------
# yang-tests/daemon/*.xml
# --------------------------------------------------------------------------


def test_daemon_files_present():
    assert DAEMON_FILES, "yang-tests/daemon/*.xml: no files"
    for p in DAEMON_FILES:
        h = headers(p)
        assert h.get("expect-app-tag") and h.get("expect-error"), f"{p.name}: missing headers"


@pytest.mark.parametrize("running", ["empty", "over-valid"])
@pytest.mark.parametrize("path", DAEMON_FILES, ids=lambda p: p.stem)
def test_daemon_file_refused(nc, path, running):
    """The file into the candidate, then validate and commit: refused with
    the app-tag (and message, and one of the error-paths) of its header."""
    if running == "over-valid":
        # running holds valid.xml: merging the file (valid.xml plus one
        # violation) changes only the pool(s) the violation touches.
        nc.edit_config(target="candidate", config=config(body(YANG_TESTS / "valid.xml")))
        nc.commit()
    h = headers(path)
    refused(
        nc,
        body(path),
        h["expect-app-tag"][0],
        h["expect-error"][0],
        h.get("expect-path", ()),
    )


# --------------------------------------------------------------------------
# incremental commits: the offending node is in a pool that did not change
# --------------------------------------------------------------------------

# Pool a: 10.9.1.0/24; gateway .1, server identifier .2, a static binding at
# .3, one section .10-.100.  No remote-backup-profile, so the
# server-identifier needs not be a VRRP virtual IP.
POOL_A = pool(
    "a",
    "<gateway>10.9.1.1</gateway><mask>255.255.255.0</mask><network>10.9.1.0</network>"
    + section("10.9.1.10", "10.9.1.100")
    + "<server-identifier>10.9.1.2</server-identifier>"
    + static_bind("10.9.1.3", "02:00:00:00:09:03"),
)


def pool_b(extra: str) -> str:
    """Pool b: 10.9.0.0/16, which contains pool a's subnet."""
    return pool("b", "<mask>255.255.0.0</mask><network>10.9.0.0</network>" + extra)


@pytest.fixture
def with_a(nc):
    nc.edit_config(target="candidate", config=config(dhcp(POOL_A)))
    nc.commit()
    assert pool_names(nc) == ["a"]
    return nc


@pytest.mark.parametrize(
    "extra, app_tag, paths",
    [
        pytest.param(
            section("10.9.1.1", "10.9.1.1"),
            "gateway-in-section",
            [POOL.format("a") + "/dhcps:gateway"],
            id="section-covers-gateway",
        ),
        pytest.param(
            section("10.9.1.2", "10.9.1.2"),
            "server-identifier-in-section",
            [POOL.format("a") + "/dhcps:server-identifier"],
            id="section-covers-server-identifier",
        ),
        pytest.param(
            section("10.9.1.3", "10.9.1.3"),
            "static-bind-in-section",
            [POOL.format("a") + "/dhcps:static-bind[dhcps:ip-address='10.9.1.3']"],
            id="section-covers-static-bind",
        ),
        pytest.param(
            section("10.9.1.100", "10.9.1.120"),
            "section-overlap-other-pool",
            [
                POOL.format("a") + "/dhcps:section[dhcps:start='10.9.1.10']",
                POOL.format("b") + "/dhcps:section[dhcps:start='10.9.1.100']",
            ],
            id="section-overlaps-section",
        ),
        pytest.param(
            static_bind("10.9.1.3", "02:00:00:00:09:b3"),
            "static-bind-duplicate",
            [
                POOL.format("a") + "/dhcps:static-bind[dhcps:ip-address='10.9.1.3']",
                POOL.format("b") + "/dhcps:static-bind[dhcps:ip-address='10.9.1.3']",
            ],
            id="same-static-bind",
        ),
    ],
)
def test_new_pool_against_unchanged_pool(with_a, extra, app_tag, paths):
    """Pool b is added; the node the rule is about may be in pool a, which
    the commit does not touch."""
    refused(with_a, dhcp(pool_b(extra)), app_tag, MSG[app_tag], paths)
    assert pool_names(with_a) == ["a"]


@pytest.mark.parametrize(
    "extra, app_tag, paths",
    [
        pytest.param(
            "<gateway>10.9.1.50</gateway>",
            "gateway-in-section",
            [POOL.format("b") + "/dhcps:gateway"],
            id="gateway",
        ),
        pytest.param(
            "<server-identifier>10.9.1.50</server-identifier>",
            "server-identifier-in-section",
            [POOL.format("b") + "/dhcps:server-identifier"],
            id="server-identifier",
        ),
        pytest.param(
            static_bind("10.9.1.50", "02:00:00:00:09:b5"),
            "static-bind-in-section",
            [POOL.format("b") + "/dhcps:static-bind[dhcps:ip-address='10.9.1.50']"],
            id="static-bind",
        ),
        pytest.param(
            section("10.9.1.90", "10.9.1.95"),
            "section-overlap-other-pool",
            [
                POOL.format("a") + "/dhcps:section[dhcps:start='10.9.1.10']",
                POOL.format("b") + "/dhcps:section[dhcps:start='10.9.1.90']",
            ],
            id="section",
        ),
    ],
)
def test_changed_pool_against_unchanged_pool(with_a, extra, app_tag, paths):
    """Pool b already exists (committed, valid); an edit of b alone breaks
    the rule against pool a."""
    with_a.edit_config(target="candidate", config=config(dhcp(pool_b(section("10.9.2.10", "10.9.2.20")))))
    with_a.commit()
    assert pool_names(with_a) == ["a", "b"]
    refused(with_a, dhcp(pool_b(extra)), app_tag, MSG[app_tag], paths)


# --------------------------------------------------------------------------
# what the rules must not refuse
# --------------------------------------------------------------------------

# Pool c (10.20.1.0/24) and pool d (10.20.0.0/16, containing c's subnet):
# adjacent sections (.10-.100 and .101-.200), different static bindings (d's
# in c's subnet but in no section), gateways outside both sections.
POOL_C = pool(
    "c",
    "<gateway>10.20.1.1</gateway><mask>255.255.255.0</mask>"
    + section("10.20.1.10", "10.20.1.100")
    + "<server-identifier>10.20.1.1</server-identifier>"
    + static_bind("10.20.1.250", "02:00:00:00:20:fa"),
)
POOL_D = pool(
    "d",
    "<gateway>10.20.0.1</gateway><mask>255.255.0.0</mask><network>10.20.0.0</network>"
    + section("10.20.1.101", "10.20.1.200")
    + "<server-identifier>10.20.0.1</server-identifier>"
    + static_bind("10.20.1.240", "02:00:00:00:20:f0"),
)


@pytest.mark.parametrize("steps", ["one-commit", "one-pool-per-commit"])
def test_adjacent_sections_and_distinct_static_binds_commit(nc, steps):
    edits = [dhcp(POOL_C, POOL_D)] if steps == "one-commit" else [dhcp(POOL_C), dhcp(POOL_D)]
    for edit in edits:
        nc.edit_config(target="candidate", config=config(edit))
        nc.validate("candidate")
        nc.commit()
    assert pool_names(nc) == ["c", "d"]
    data = data_of(nc.get_config("running"))
    starts = sorted(x.text for x in data.iterfind("dhcps:dhcp-server/dhcps:ip-pool/dhcps:section/dhcps:start", NS))
    assert starts == ["10.20.1.10", "10.20.1.101"]


def test_valid_extra_file_commits(nc):
    """Every corner case of yang-tests/valid-extra.xml (pools whose subnets
    contain one another, /1 and /8 pools, ...) passes the daemon's checks."""
    nc.edit_config(target="candidate", config=config(body(YANG_TESTS / "valid-extra.xml")))
    nc.validate("candidate")
    nc.commit()


def test_overlapping_excluded_ranges_commit_and_count_once(nc):
    """Issue 9 item 12: excluded ranges may overlap (the YANG description of
    ``excluded`` says so); the pool statistics count each address once
    instead of wrapping to 4294967295 (or the DHCP actor panicking in a
    debug build). .10-.30 is 21 addresses, .10-.25 are excluded: 5 remain."""
    edit = dhcp(
        pool(
            "ovl",
            "<gateway>10.30.0.1</gateway><mask>255.255.255.0</mask>"
            + section("10.30.0.10", "10.30.0.30")
            + "<excluded><start>10.30.0.10</start><end>10.30.0.20</end></excluded>"
            + "<excluded><start>10.30.0.15</start><end>10.30.0.25</end></excluded>",
        )
    )
    nc.edit_config(target="candidate", config=config(edit))
    nc.commit()
    data = data_of(nc.get_config("running"))
    starts = sorted(x.text for x in data.iterfind("dhcps:dhcp-server/dhcps:ip-pool/dhcps:excluded/dhcps:start", NS))
    assert starts == ["10.30.0.10", "10.30.0.15"]
    # the DHCP actor applies the commit on its own thread: <get> shows the
    # statistics once it has
    want = {"total": "5", "used": "0", "free": "5", "offered": "0", "declined": "0"}
    got = None
    for _ in range(50):
        st = data_of(nc.get(filter=("subtree", f'<dhcp-server xmlns="{DHCPS_NS}"/>'))).find(
            "dhcps:dhcp-server/dhcps:ip-pool[dhcps:name='ovl']/dhcps:statistics", NS
        )
        got = None if st is None else {etree.QName(c).localname: c.text for c in st}
        if got == want:
            break
        time.sleep(0.1)
    assert got == want
