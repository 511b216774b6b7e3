"""Connection floods, login grace time and keepalives (issue 9, item 1).

A flood of TCP connections that only send an SSH banner must not take the
daemon's descriptors nor lock out a login; what has not logged in within the
grace time is closed; a peer that goes silent is dropped by keepalives and its
locks go with it.  Floods come from other loopback addresses (127.0.0.2 ...)
than the legitimate client (127.0.0.1), as an attacker's would.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest
from ncclient.operations.rpc import RPCError

from conftest import KEY_USER, PASSWORD, USER, assert_rpc_error

BANNER = b"SSH-2.0-flood_0.1\r\n"


def open_idle(port: int, source: str, banner: bool = True) -> socket.socket:
    """A TCP connection from *source* that sends at most an SSH banner."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((source, 0))
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    if banner:
        s.sendall(BANNER)
    return s


def closed_by_server(s: socket.socket, timeout: float) -> bool:
    """True when the server closes *s* within *timeout* (what it sends
    before, its banner and key exchange offer, is read and dropped)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        s.settimeout(left)
        try:
            if not s.recv(65536):
                return True
        except socket.timeout:
            return False
        except ConnectionError:
            return True


def got_banner(s: socket.socket, timeout: float = 5) -> bool:
    s.settimeout(timeout)
    try:
        return s.recv(4) == b"SSH-"
    except (socket.timeout, ConnectionError):
        return False


def wait_released(port: int, timeout: float = 5.0) -> None:
    """Wait until the daemon has closed every connection its peer closed
    (no socket of *port* left in CLOSE-WAIT): the start-up probe of the
    fixture is gone and does not hold a slot of a budget under test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open("/proc/net/tcp") as f:
            rows = [line.split() for line in f.readlines()[1:]]
        # columns: sl local_address rem_address st ...; 08 = CLOSE_WAIT
        if not any(r[1].endswith(f":{port:04X}") and r[3] == "08" for r in rows):
            return
        time.sleep(0.02)
    raise AssertionError(f"the daemon kept a closed connection on port {port}")


def count_lines(daemon, text: str) -> int:
    return sum(text in line for line in daemon.stderr(tail=100000).splitlines())


def close_all(socks):
    for s in socks:
        s.close()


def test_banner_flood_does_not_lock_out_a_login(daemon_factory, creds):
    """300 banner-only connections against a 256-descriptor daemon with the
    default limits: logins by key and by password still succeed at once,
    the flood holds a bounded number of descriptors, and the log does not
    fill with accept errors."""
    d = daemon_factory(nofile=256)
    flood = []
    try:
        for _ in range(300):
            try:
                flood.append(open_idle(d.port, "127.0.0.2"))
            except OSError:
                break  # the old daemon's backlog overflowed
        time.sleep(0.5)
        t0 = time.monotonic()
        m = d.connect(user=KEY_USER, password=None, key=creds["keyonly_key"], timeout=10)
        assert m.get_config("running").ok
        m2 = d.connect(user=USER, password=PASSWORD, timeout=10)
        assert m2.get_config("running").ok
        took = time.monotonic() - t0
        fds = len(os.listdir(f"/proc/{d.proc.pid}/fd"))
        # max-unauthenticated (128) of them, and the daemon's own
        assert fds < 128 + 40, f"the daemon holds {fds} descriptors under the flood"
        # what the daemon does not hold it closed at once
        closed = sum(closed_by_server(s, 0.01) for s in flood)
        assert closed >= 300 - 128, f"only {closed} of 300 flood connections closed"
        print(f"logins took {took:.2f} s, daemon holds {fds} fds, {closed} closed")
    finally:
        close_all(flood)
    assert count_lines(d, "accept failed") <= 5
    assert count_lines(d, "ssh connection refused") <= 5


def test_unauthenticated_cap_keeps_room_for_a_login(daemon_factory, creds):
    """max-unauthenticated half-open connections at most: a newcomer from the
    flooding address is closed at once; one from another address takes the
    place of the flood's oldest connection and logs in."""
    d = daemon_factory(netconf_toml="max-unauthenticated = 4\nmax-per-source = 50")
    wait_released(d.port)
    flood = [open_idle(d.port, "127.0.0.2") for _ in range(4)]
    try:
        assert all(got_banner(s) for s in flood)
        extra = open_idle(d.port, "127.0.0.2")
        flood.append(extra)
        assert closed_by_server(extra, 2), "a 5th half-open connection was let in"
        m = d.connect(user=KEY_USER, password=None, key=creds["keyonly_key"], timeout=10)
        assert m.get_config("running").ok
        assert closed_by_server(flood[0], 2), "the flood's oldest connection stayed"
        assert not any(closed_by_server(s, 0.1) for s in flood[1:4])
    finally:
        close_all(flood)


def test_per_source_cap(daemon_factory):
    d = daemon_factory(netconf_toml="max-per-source = 3")
    socks = [open_idle(d.port, "127.0.0.2") for _ in range(3)]
    try:
        assert all(got_banner(s) for s in socks)
        fourth = open_idle(d.port, "127.0.0.2", banner=False)
        socks.append(fourth)
        assert closed_by_server(fourth, 2)
        other = open_idle(d.port, "127.0.0.3", banner=False)
        socks.append(other)
        assert got_banner(other)
        # a place given back is free again
        socks[0].close()
        time.sleep(0.3)
        again = open_idle(d.port, "127.0.0.2", banner=False)
        socks.append(again)
        assert got_banner(again)
    finally:
        close_all(socks)


def test_login_grace_time(daemon_factory):
    """Connections that do not log in within login-grace-time are closed,
    whatever they sent; a logged-in session stays."""
    d = daemon_factory(netconf_toml="login-grace-time = 2")
    m = d.connect()
    idle = [
        open_idle(d.port, "127.0.0.2", banner=False),
        open_idle(d.port, "127.0.0.2"),
        open_idle(d.port, "127.0.0.3"),
    ]
    try:
        t0 = time.monotonic()
        for s in idle:
            assert closed_by_server(s, 6), "a connection that never logged in stayed open"
        assert time.monotonic() - t0 >= 1.5
        # the session opened before outlived the grace time
        assert m.get_config("running").ok
    finally:
        close_all(idle)
    assert "login grace time over" in d.stderr()


FROZEN_CLIENT = textwrap.dedent(
    """
    import socket, sys, time
    import paramiko
    BASE = "urn:ietf:params:xml:ns:netconf:base:1.0"
    EOM = b"]]>]]>"
    t = paramiko.Transport(socket.create_connection(("127.0.0.1", int(sys.argv[1]))))
    t.connect(username=sys.argv[2], password=sys.argv[3])
    ch = t.open_session()
    ch.invoke_subsystem("netconf")
    buf = b""
    def read():
        global buf
        while EOM not in buf:
            buf += ch.recv(65536)
        msg, buf = buf.split(EOM, 1)
        return msg
    read()
    ch.sendall(b'<hello xmlns="%s"><capabilities><capability>'
               b'urn:ietf:params:netconf:base:1.0</capability></capabilities></hello>'
               % BASE.encode() + EOM)
    ch.sendall(b'<rpc xmlns="%s" message-id="1"><lock><target><candidate/></target>'
               b'</lock></rpc>' % BASE.encode() + EOM)
    print(read().decode(), flush=True)
    time.sleep(600)
    """
)


def test_keepalive_drops_a_silent_peer_and_its_lock(daemon_factory):
    """A client holding the candidate lock freezes (SIGSTOP: its TCP stays
    up, it answers nothing): keepalives drop it after keepalive-interval x
    (keepalive-count + 1) and another session takes the lock; a live idle
    session outlives several keepalive rounds."""
    d = daemon_factory(netconf_toml="keepalive-interval = 1\nkeepalive-count = 2")
    child = subprocess.Popen(
        [sys.executable, "-c", FROZEN_CLIENT, str(d.port), USER, PASSWORD],
        stdout=subprocess.PIPE,
    )
    try:
        reply = child.stdout.readline().decode()
        assert "<ok/>" in reply, reply
        m = d.connect()
        with pytest.raises(RPCError) as e:
            m.lock("candidate")
        assert_rpc_error(e, "lock-denied")
        os.kill(child.pid, signal.SIGSTOP)
        t0 = time.monotonic()
        deadline = t0 + 15
        while True:
            try:
                m.lock("candidate")
                break
            except RPCError as e:
                assert_rpc_error(e, "lock-denied")
                assert time.monotonic() < deadline, "the frozen client kept its lock"
                time.sleep(0.25)
        took = time.monotonic() - t0
        assert took >= 2, f"lock released after {took:.1f} s, before the keepalives ran out"
        # the live idle session answers keepalives: it outlives them and the
        # idle bound of interval x (count + 2) = 4 s
        time.sleep(6)
        assert m.unlock("candidate").ok
    finally:
        child.kill()
        os.kill(child.pid, signal.SIGCONT)
        child.wait(5)


def test_accept_errors_are_rate_limited(daemon_factory):
    """Caps set above the descriptor limit: accept() fails with EMFILE while
    the flood is held.  The daemon logs that at most once a second (it
    logged it 20 times a second), and serves again once the flood ends."""
    d = daemon_factory(
        nofile=48,
        netconf_toml="max-unauthenticated = 200\nmax-per-source = 200\nmax-connections = 200",
    )
    flood = []
    try:
        for _ in range(60):
            flood.append(open_idle(d.port, "127.0.0.2"))
        time.sleep(3)
        assert d.alive()
    finally:
        close_all(flood)
    failed = count_lines(d, "accept failed")
    assert 1 <= failed <= 5, f"{failed} 'accept failed' lines in 3 s"
    m = d.connect(timeout=10)
    assert m.get_config("running").ok
