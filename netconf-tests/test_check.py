"""``hotleased check --config FILE`` (issue 14, item 4), like ``kea-dhcp4 -t``
and ``keepalived -t``: the bootstrap file and the startup datastore checked
against the YANG modules and the daemon's rules without starting; every
problem printed with its file and path; non-zero exit (78, EX_CONFIG).

The daemon refuses the same files with the same list and exit 78, so that
systemd does not restart it in a loop (RestartPreventExitStatus=78).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import HOTLEASED, Daemon

EX_CONFIG = 78

# Two YANG errors (a range, an unknown element) and, once they are fixed,
# a rule of the daemon's own: two pools whose sections overlap.
BROKEN = (
    '<vrrp xmlns="urn:hotlease:yang:vrrp">'
    "<group><interface>eth0</interface><vrid>1</vrid><priority>255</priority>"
    "<virtual-ip>192.0.2.1</virtual-ip></group>"
    "<group><interface>eth0</interface><vrid>2</vrid><colour>blue</colour>"
    "<virtual-ip>192.0.2.2</virtual-ip></group>"
    "</vrrp>"
)


def pool(name: str, start: int, end: int) -> str:
    return (
        f"<ip-pool><name>{name}</name><gateway>10.0.0.1</gateway><mask>255.255.255.0</mask>"
        f"<section><start>10.0.0.{start}</start><end>10.0.0.{end}</end></section></ip-pool>"
    )


OVERLAP = (
    '<dhcp-server xmlns="urn:hotlease:yang:dhcp-server">'
    + pool("a", 10, 20)
    + pool("b", 15, 30)
    + "</dhcp-server>"
)


def check(d: Daemon) -> subprocess.CompletedProcess:
    return subprocess.run(
        [HOTLEASED, "check", "--config", str(d.config)],
        capture_output=True, text=True, timeout=30,
    )


def start_fails(d: Daemon) -> subprocess.CompletedProcess:
    return subprocess.run(
        [HOTLEASED, "--config", str(d.config)],
        capture_output=True, text=True, timeout=30,
    )


def test_good_configuration_passes_and_creates_nothing(binary, tmp_path, creds):
    d = Daemon(tmp_path / "d", creds)
    d.storage.rmdir()
    r = check(d)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("configuration OK: ") and str(d.config) in r.stdout, r.stdout
    assert r.stderr == ""
    # read-only: no storage dir, no host key, no lock
    assert not d.storage.exists()
    assert not (d.dir / "ssh_host_ed25519_key").exists()


def test_broken_startup_every_problem_with_its_path(binary, tmp_path, creds):
    d = Daemon(tmp_path / "d", creds)
    startup = d.storage / "startup.xml"
    startup.write_text(BROKEN)
    r = check(d)
    assert r.returncode == EX_CONFIG, (r.returncode, r.stderr)
    lines = r.stderr.splitlines()
    problems = [line for line in lines if line.startswith(f"{startup}: ")]
    assert len(problems) == 2, lines
    assert any(
        "/vrrp:vrrp/vrrp:group[vrrp:interface='eth0'][vrrp:vrid='1']/vrrp:priority" in p
        and "255" in p
        for p in problems
    ), problems
    assert any("colour" in p for p in problems), problems
    assert lines[-1].startswith("hotleased: 2 problem(s) found"), lines
    # the daemon refuses it with the same list, EX_CONFIG, and no session
    r2 = start_fails(d)
    assert r2.returncode == EX_CONFIG, r2.stderr
    for p in problems:
        assert f"hotleased: {p}" in r2.stderr.splitlines(), r2.stderr

    # YANG-valid, but against a rule of the daemon's
    startup.write_text(OVERLAP)
    r = check(d)
    assert r.returncode == EX_CONFIG, r.stderr
    for name, start in (("a", 10), ("b", 15)):
        path = (f"/dhcps:dhcp-server/dhcps:ip-pool[dhcps:name='{name}']"
                f"/dhcps:section[dhcps:start='10.0.0.{start}']")
        assert f"{startup}: {path}: " in r.stderr, r.stderr

    # fixed: both files named as checked
    startup.write_text(
        '<dhcp-server xmlns="urn:hotlease:yang:dhcp-server">' + pool("a", 10, 20)
        + "</dhcp-server>"
    )
    r = check(d)
    assert r.returncode == 0, r.stderr
    assert str(startup) in r.stdout


def test_bootstrap_problems_are_all_listed(binary, tmp_path, creds):
    d = Daemon(
        tmp_path / "d", creds,
        users=[{"name": "admin", "password-hash": "plain"}, {"name": "nokey"}],
        netconf_toml="max-connections = 0",
    )
    r = check(d)
    assert r.returncode == EX_CONFIG, r.stderr
    want = [
        "[netconf] max-connections must be at least 1",
        "user 'admin': password-hash must be SHA-512 crypt",
        "user 'nokey' has neither password-hash nor authorized-keys",
    ]
    for w in want:
        assert any(line.startswith(f"{d.config}: ") and w in line for line in r.stderr.splitlines()), (w, r.stderr)
    # and the daemon names them all too, before it creates anything
    shutil.rmtree(d.storage)
    r = start_fails(d)
    assert r.returncode == EX_CONFIG
    assert all(w in r.stderr for w in want), r.stderr
    assert not d.storage.exists()


# --------------------------------------------------------------------------
# the yang-tests files as startup datastores: what yanglint and the daemon's
# commit refuse, check refuses with the same error; what they accept, it does
# --------------------------------------------------------------------------

YANG_TESTS = Path(__file__).resolve().parent.parent / "yang-tests"


def headers(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        m = re.fullmatch(r"<!-- ([a-z-]+): (.*) -->", line.strip())
        if m:
            out.setdefault(m.group(1), []).append(m.group(2).strip())
    return out


def refused_as(want: str, problems: list[str]) -> bool:
    """Whether a problem is the file's expected error: libyang's text, or
    the daemon's wording of a value error ("priority must be 1..254, not
    "255"", issue 14) for libyang's "... value "255" ..." or "Unsatisfied
    pattern"."""
    if any(want in p for p in problems):
        return True
    m = re.search(r'value "([^"]*)"', want)
    if m:
        return any(f'not "{m.group(1)}"' in p and " must be " in p for p in problems)
    if want.startswith("Unsatisfied pattern"):
        return any(" must be " in p for p in problems)
    return False


def body(path: Path) -> str:
    return re.sub(r"<!--.*?-->", "", path.read_text(), flags=re.S)


@pytest.fixture(scope="module")
def checker(binary, tmp_path_factory, creds):
    d = Daemon(tmp_path_factory.mktemp("check"), creds)

    def run(xml: str) -> subprocess.CompletedProcess:
        (d.storage / "startup.xml").write_text(xml)
        return check(d)

    run.startup = d.storage / "startup.xml"
    return run


@pytest.mark.parametrize("name", ["valid.xml", "valid-extra.xml"])
def test_valid_files_pass(checker, name):
    r = checker(body(YANG_TESTS / name))
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize(
    "path",
    sorted((YANG_TESTS / "invalid").glob("*.xml")) + sorted((YANG_TESTS / "daemon").glob("*.xml")),
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_invalid_files_are_refused_with_their_error(checker, path):
    h = headers(path)
    r = checker(body(path))
    assert r.returncode == EX_CONFIG, r.stderr
    problems = [line for line in r.stderr.splitlines() if line.startswith(f"{checker.startup}: ")]
    assert problems, r.stderr
    for want in h.get("expect-error", []):
        assert refused_as(want, problems), (want, problems)
    for want in h.get("expect-path", []):
        # a leaf-list's path may end in its value's predicate
        assert any(re.match(re.escape(f"{checker.startup}: {want}") + r"(\[[^]]*\])?: ", p)
                   for p in problems), (want, problems)
