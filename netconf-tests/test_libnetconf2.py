"""A C client on libnetconf2 (clients/nc2_client.c), the strictest client
here: it starts with an empty schema search path, so libyang must load
every module from hotleased (hello, YANG library, get-schema), and it
parses every reply against those schemas (issue 12); then it subscribes,
makes a VRRP group change state (the daemon runs VRRP in a network
namespace) and receives the state-change, parsed against the same
schemas."""

import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import MODULES, PASSWORD, USER, group, vrrp

SRC = Path(__file__).resolve().parent / "clients" / "nc2_client.c"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    if not shutil.which("pkg-config") or subprocess.run(["pkg-config", "--exists", "libnetconf2"]).returncode:
        pytest.fail("libnetconf2-dev is not installed (netconf-tests/run.sh installs it)")
    exe = tmp_path_factory.mktemp("nc2") / "nc2_client"
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "libnetconf2", "libyang"], capture_output=True, text=True, check=True).stdout.split()
    r = subprocess.run(["gcc", "-Wall", "-Wextra", "-Werror", "-o", str(exe), str(SRC), *flags, "-lssh"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return exe


@pytest.fixture
def router(tmp_path, creds, request):
    """A hotleased with its VRRP runtime on, alone in a network namespace
    of a one-router lab (vrrplab): a group it is given goes from
    initialize to backup at once, then to master."""
    from conftest import _finish
    from vrrplab import Lab, NsDaemon

    if shutil.which("ip") is None:
        pytest.fail("iproute2 is not installed (netconf-tests/run.sh installs it)")
    lab = Lab(1, tmp_path)
    made = []
    try:
        d = NsDaemon(lab.routers[0], tmp_path / "r0", creds)
        made.append(d)
        d.start()
        yield d
    finally:
        _finish(request, made)
        lab.close()


@pytest.mark.vrrp
def test_libnetconf2_client_with_an_empty_schema_dir(client, router, tmp_path):
    daemon = router
    empty = tmp_path / "schemas"
    empty.mkdir()
    edit = vrrp(group(interface="eth0", vrid=7, priority=120))
    check = "/hotlease-vrrp:vrrp/group[interface='eth0'][vrid='7']/priority"
    # once subscribed, the client creates group 8: it leaves initialize
    sub_edit = vrrp(group(interface="eth0", vrid=8, advertise_interval=100))
    r = subprocess.run(
        ["ip", "netns", "exec", daemon.ns, str(client), "127.0.0.1", str(daemon.port), USER, PASSWORD, str(empty),
         edit, check, sub_edit, "8"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = r.stdout
    assert r.returncode == 0, out + r.stderr + daemon.stderr(40)
    modules = {line.split()[1].split("@")[0]: line.split()[2] for line in out.splitlines() if line.startswith("MODULE ")}
    for name in [*MODULES, "ietf-netconf-monitoring", "ietf-netconf-with-defaults"]:
        assert modules.get(name) == "implemented", (name, out)
    for step in ["connect", "get", "get-config", "lock", "edit-config", "validate", "commit", "unlock", "get-config-after",
                 "create-subscription", "edit-config-vrrp", "commit-vrrp", "notification", "done"]:
        assert f"OK {step}\n" in out, out
    # what it received, each parsed strictly against the schemas it
    # downloaded: the commit's config-change and group 8's state-change
    notifs = [line.split()[1:] for line in out.splitlines() if line.startswith("NOTIF ")]
    assert ["ietf-netconf-notifications:netconf-config-change"] in notifs, out
    assert ["hotlease-vrrp:state-change", "eth0", "8", "initialize", "backup", "startup"] in notifs, out
    # the dir was empty: libnetconf2 stored there what get-schema gave it,
    # our modules as shipped
    from conftest import YANG_DIR

    for name in MODULES:
        got = empty / f"{name}@2026-11-25.yang"
        assert got.read_text().strip() == (YANG_DIR / f"{name}.yang").read_text().strip(), name
    # and libnetconf2 never had to complain about a reply. Its one expected
    # error: seeing yang-library:1.1 it probes ietf-netconf-nmda (for
    # <get-data>), which we do not implement, and logs the refused
    # get-schema; it then reads the YANG library with <get> (XPath
    # /yanglib:*).
    errors = [line for line in r.stderr.splitlines() if line.startswith("libnetconf2[0]")]
    probe = "libnetconf2[0]: Failed to receive a reply to <get-schema>."
    assert errors.count(probe) <= 1 and all(e == probe for e in errors), r.stderr


@pytest.mark.vrrp
def test_a_notification_that_does_not_match_the_clients_schema_fails_it(client, router, tmp_path):
    """The check can fail: given a hotlease-vrrp whose state-change reason
    has no 'startup' (found in its schema dir before any get-schema), the
    client refuses the state-change hotleased sends."""
    from conftest import YANG_DIR

    schemas = tmp_path / "schemas"
    schemas.mkdir()
    text = (YANG_DIR / "hotlease-vrrp.yang").read_text()
    assert text.count("enum startup {") == 1
    (schemas / "hotlease-vrrp@2026-11-25.yang").write_text(text.replace("enum startup {", "enum started {"))
    r = subprocess.run(
        ["ip", "netns", "exec", router.ns, str(client), "127.0.0.1", str(router.port), USER, PASSWORD, str(schemas),
         vrrp(group(interface="eth0", vrid=7)), "/hotlease-vrrp:vrrp/group[interface='eth0'][vrid='7']",
         vrrp(group(interface="eth0", vrid=8)), "8"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert "OK create-subscription\n" in r.stdout, r.stdout + r.stderr
    assert "FAIL notification" in r.stderr, r.stderr
    assert "NOTIF hotlease-vrrp:state-change" not in r.stdout, r.stdout
