"""A second, independent client: netconf-console2 (PyPI) drives one scripted
session (hello + get-config + edit-config + commit)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PASSWORD, USER, VRRP_NS, get_groups


def console():
    exe = Path(sys.executable).parent / "netconf-console2"
    if exe.exists():
        return str(exe)
    found = shutil.which("netconf-console2")
    if not found:
        pytest.fail("netconf-console2 not installed (netconf-tests/requirements.txt)")
    return found


def run(daemon, *args, timeout=60):
    cmd = [console(), "--host", "127.0.0.1", "--port", str(daemon.port), "-u", USER, "-p", PASSWORD, *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert out.returncode == 0, f"{cmd}\nstdout:\n{out.stdout}\nstderr:\n{out.stderr}"
    return out.stdout


def test_hello(daemon):
    out = run(daemon, "--hello")
    assert "urn:ietf:params:netconf:capability:candidate:1.0" in out
    assert "urn:hotlease:yang:vrrp?module=hotlease-vrrp" in out.replace("&amp;", "&")


def test_scripted_session(daemon, tmp_path):
    edit = tmp_path / "edit.xml"
    edit.write_text(
        f'<vrrp xmlns="{VRRP_NS}"><group><interface>eth3</interface><vrid>33</vrid>'
        "<virtual-ip>203.0.113.33</virtual-ip><priority>133</priority></group></vrrp>"
    )
    # one SSH session: hello, get-config, edit-config, commit, get-config
    out = run(
        daemon,
        "--db", "candidate",
        "--get-config",
        "--edit-config", str(edit),
        "--commit",
        "--get-config",
    )
    assert "<priority>133</priority>" in out
    m = daemon.connect()
    g = get_groups(m, "running")
    assert g[("eth3", 33)]["priority"] == "133"
    # and the console reads running back
    out = run(daemon, "--get-config", "-x", "/vrrp:vrrp/vrrp:group[vrrp:vrid=33]", "--ns", f"vrrp={VRRP_NS}")
    assert "203.0.113.33" in out


def test_netconf_console_base10(daemon):
    out = run(daemon, "-v", "1.0", "--get-config")
    assert "data" in out
