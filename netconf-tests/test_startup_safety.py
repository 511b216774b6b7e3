"""Safe to start (issue 14, item 1): a daemon that cannot start changes
nothing on the box.

A VRRP master runs in a namespace (the vrrplab topology, one router); a
second hotleased is started next to it

* on the same storage directory (another NETCONF port): refused at once by
  the directory's lock, with the holder's pid in the message;
* on its own storage directory holding the same startup configuration, but
  on the NETCONF port the first one listens on: refused by the busy port.

Neither may touch the interface: the master keeps its virtual address and
its state (before the fix the second one removed the VIP at startup, and
the first went on reporting ``master`` without it). Select with ``-m vrrp``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from conftest import HOTLEASED
from test_vrrp import VIP, configure, state, wait_state
from vrrplab import Lab, NsDaemon, wait_for

pytestmark = [
    pytest.mark.vrrp,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
]


@pytest.fixture
def lab(tmp_path):
    lab = Lab(1, tmp_path)
    yield lab
    lab.close()


@pytest.fixture
def master(lab, creds, tmp_path, request):
    """hotleased in router 0, VRRP master of the VIP, config in startup."""
    from conftest import _finish

    d = NsDaemon(lab.routers[0], tmp_path / "first", creds)
    d.start()
    try:
        m = configure(d, priority=200, advertise_interval=100)
        wait_state(m, "master")
        wait_for(lambda: VIP in lab.addresses(0), 5, what="VIP on the master")
        m.copy_config(source="running", target="startup")
        yield d, m
    finally:
        _finish(request, [d])


def second(lab, creds, workdir, storage=None, port=None) -> subprocess.CompletedProcess:
    """Run a second hotleased in router 0; it must exit on its own."""
    d = NsDaemon(lab.routers[0], workdir, creds)
    if storage is not None:
        d.storage = storage
    if port is not None:
        d.port = port
    d.write_config()
    try:
        return subprocess.run(
            d.cmd_prefix + [HOTLEASED, "--config", str(d.config)],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except subprocess.TimeoutExpired as e:
        # it started: Lab.close() kills what runs in the namespace
        pytest.fail(f"the second daemon did not refuse to start: {e.stderr!r}")


def assert_master_untouched(lab, m):
    """The first daemon still holds the VIP, and says so, a while later."""
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        assert VIP in lab.addresses(0), "the second daemon removed the master's VIP"
        time.sleep(0.1)
    assert state(m)["state"] == "master"


def test_second_daemon_on_the_same_storage_dir_is_refused_with_the_holders_pid(
    lab, master, creds, tmp_path
):
    first, m = master
    r = second(lab, creds, tmp_path / "second", storage=first.storage)
    assert r.returncode != 0, r.stderr
    # `ip netns exec` execs the daemon: its pid is the holder's
    assert f"in use by hotleased pid {first.proc.pid}" in r.stderr, r.stderr
    assert str(first.storage) in r.stderr, r.stderr
    # refused before any runtime ran: not a line from VRRP or DHCP
    assert "vrrp" not in r.stderr and "lease store" not in r.stderr, r.stderr
    assert_master_untouched(lab, m)
    assert first.alive()


def test_second_daemon_on_a_busy_netconf_port_changes_nothing(lab, master, creds, tmp_path):
    first, m = master
    storage = tmp_path / "second-storage"
    storage.mkdir()
    # the same startup configuration: this daemon would run the same group
    shutil.copy(first.storage / "startup.xml", storage / "startup.xml")
    r = second(lab, creds, tmp_path / "second", storage=storage, port=first.port)
    assert r.returncode != 0, r.stderr
    # nothing left behind either: the port is taken before a host key is made
    assert not (tmp_path / "second" / "ssh_host_ed25519_key").exists()
    assert f"cannot listen on 127.0.0.1:{first.port}" in r.stderr, r.stderr
    assert "Address already in use" in r.stderr or "address in use" in r.stderr.lower(), r.stderr
    assert "vrrp" not in r.stderr, r.stderr
    assert_master_untouched(lab, m)
    assert first.alive()
