"""yuma123's yangcli (Debian yangcli 2.13) as a client (issue 12): with an
empty home it downloads every module the server announces (get-schema)
and must load all three of ours, then runs a scripted edit + commit in
batch mode.  Before issue 12 it refused `modifier invert-match` and
crashed (segfault) on the subnet rules of hotlease-dhcp-server."""

import os
import shutil
import subprocess

import pytest
from lxml import etree

from conftest import DHCPS_NS, PASSWORD, USER, VRRP_NS

SCRIPT = """\
create /vrrp/group[interface='eth0'][vrid='5']/virtual-ip value=192.0.2.5
create /dhcp-server/ip-pool[name='yc']/gateway value=10.7.0.1
create /dhcp-server/ip-pool[name='yc']/mask value=255.255.255.0
create /dhcp-server/ip-pool[name='yc']/section[start='10.7.0.10']/end value=10.7.0.20
commit
sget-config /dhcp-server source=running
quit
"""


def test_yangcli_loads_our_schemas_and_commits(daemon, tmp_path):
    if not shutil.which("yangcli"):
        pytest.fail("yangcli is not installed (netconf-tests/run.sh installs it)")
    home = tmp_path / "home"
    home.mkdir()
    script = tmp_path / "edit.yc"
    script.write_text(SCRIPT)
    r = subprocess.run(
        ["yangcli", "--server=127.0.0.1", f"--ncport={daemon.port}", f"--user={USER}", f"--password={PASSWORD}",
         "--batch-mode", f"--run-script={script}"],
        capture_output=True, text=True, timeout=120, env=dict(os.environ, HOME=str(home)), stdin=subprocess.DEVNULL,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    for m in ["hotlease-vrrp", "hotlease-remote-backup", "hotlease-dhcp-server"]:
        assert f"Auto-load for module '{m}' failed" not in out, out[-4000:]
    assert "wrong token" not in out, out[-4000:]
    assert "rpc-error" not in out, out[-4000:]
    # nor an internal error of its XPath parser on our must rules
    assert "Internal Error" not in out and "xpath.c" not in out, out[-4000:]
    # edit-config, commit (two OK replies), then the pool read back
    assert out.count("RPC OK Reply") >= 2, out[-4000:]
    assert "ip-pool yc" in out and "10.7.0.20" in out, out[-4000:]
    # and the server holds what yangcli committed
    m = daemon.connect()
    data = etree.fromstring(m.get_config("running").xml.encode())
    assert data.find(f".//{{{VRRP_NS}}}group/{{{VRRP_NS}}}virtual-ip").text == "192.0.2.5"
    ends = [e.text for e in data.iter(f"{{{DHCPS_NS}}}end")]
    assert "10.7.0.20" in ends
