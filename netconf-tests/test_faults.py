"""A daemon that breaks inside stops as a whole, for systemd to restart it.

Issue 9 item 11: a panic in the northbound actor left NETCONF answering "the
daemon is shutting down" forever, and a dead lease writer made the DHCP server
drop every ACK, while the process stayed up and systemd saw nothing to
restart. Faults are injected through the debug builds' test hook
(``HOTLEASED_FAULT=<fault point>``, src/fault.rs); with a release binary the
points are compiled out and these tests skip. The lease writer's fault needs
a DHCP client: it is in test_dhcp.py.
"""

from __future__ import annotations

import re
import signal
import subprocess

import pytest

from conftest import ROOT

# systemd.service(5): with Restart=on-failure, a stop by one of these signals
# is clean and not restarted (the others are).
CLEAN_SIGNALS = {"SIGHUP", "SIGINT", "SIGTERM", "SIGPIPE"}


def restarted_by_systemd(rc: int) -> bool:
    """Whether packaging/hotleased.service restarts a daemon that ended with *rc*
    (Popen's returncode: negative for a signal)."""
    unit = (ROOT / "packaging" / "hotleased.service").read_text()
    assert re.search(r"^Restart=on-failure$", unit, re.M), "the unit no longer restarts on failure"
    prevent = set()
    for m in re.finditer(r"^RestartPreventExitStatus=(.*)$", unit, re.M):
        prevent.update(m.group(1).split())
    if rc < 0:
        name = signal.Signals(-rc).name
        return name not in CLEAN_SIGNALS and name not in prevent and name[3:] not in prevent
    return rc != 0 and str(rc) not in prevent


def armed(d, fault: str):
    if f"fault={fault}" not in d.stderr():
        pytest.skip("fault points are compiled out of this (release) build")


def wait_exit(d, timeout: float = 10.0, seen: str = "") -> int:
    """The daemon's exit status; fails if it is still running after *timeout*."""
    try:
        rc = d.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"hotleased is still running {timeout:.0f} s after the fault; {seen}")
    d.expect_dead = True
    return rc


def test_northbound_panic_aborts_the_daemon(daemon_factory, monkeypatch):
    monkeypatch.setenv("HOTLEASED_FAULT", "northbound-panic")
    d = daemon_factory()
    armed(d, "northbound-panic")
    m = d.connect()
    try:
        m.get()
        answer = "a reply"
    except Exception as e:  # the session goes down with the process
        answer = repr(e)
    rc = wait_exit(d, seen=f"<get> answered {answer}")
    assert rc == -signal.SIGABRT, (rc, answer)
    assert "fault point northbound-panic" in d.stderr()
    assert restarted_by_systemd(rc)
