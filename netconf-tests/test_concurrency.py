"""Many concurrent sessions (issue: at least 100) that do not block each other."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from conftest import config, find_groups, get_groups, group, vrrp

N = 100


def test_100_concurrent_sessions(daemon):
    m = daemon.connect()
    m.edit_config(target="candidate", config=config(vrrp(group(vrid=1))))
    m.commit()

    barrier = threading.Barrier(N, timeout=120)

    def one(i):
        s = daemon.connect(timeout=120, track=False)
        try:
            barrier.wait()  # all N sessions are open at the same time
            g = get_groups(s, "running")
            return int(s.session_id), g
        finally:
            s.close_session()

    with ThreadPoolExecutor(N) as pool:
        results = list(pool.map(one, range(N)))
    assert len({sid for sid, _ in results}) == N
    assert all(set(g) == {("eth0", 1)} for _, g in results)
    m.get_config("running")


def test_lock_does_not_block_readers_or_other_sessions(daemon):
    a = daemon.connect()
    a.lock("running")
    a.lock("candidate")
    t0 = time.monotonic()
    others = [daemon.connect() for _ in range(5)]
    for o in others:
        o.get_config("running")
        o.get()
    assert time.monotonic() - t0 < 20


def test_slow_client_does_not_block_others(daemon):
    """A session that sent half a message stalls nobody else."""
    r = daemon.raw()
    r.hello()
    r.send(b"\n#500\n<rpc xmlns='urn:ietf:params:xml:ns:netconf:base:1.0' message-id='1'>")
    m = daemon.connect()
    m.edit_config(target="candidate", config=config(vrrp(group(vrid=2))))
    m.commit()
    assert ("eth0", 2) in find_groups(m.get().data_ele)


def test_accept_failures_do_not_stop_the_server(daemon):
    """Out of file descriptors, accept() fails (EMFILE): the daemon logs it,
    keeps listening, and serves again once descriptors are free."""
    import socket
    import subprocess

    m = daemon.connect()
    pid = daemon.proc.pid
    soft = subprocess.run(
        ["prlimit", f"--pid={pid}", "--nofile", "--output=SOFT", "--noheadings"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    subprocess.run(["prlimit", f"--pid={pid}", "--nofile=48:"], check=True)
    socks = []
    try:
        for _ in range(80):
            s = socket.create_connection(("127.0.0.1", daemon.port), timeout=5)
            socks.append(s)
        time.sleep(0.5)
        assert daemon.proc.poll() is None, "daemon exited on accept() errors"
    finally:
        for s in socks:
            s.close()
        subprocess.run(["prlimit", f"--pid={pid}", f"--nofile={soft}:"], check=True)
    time.sleep(0.3)
    assert "accept failed" in daemon.log.read_text()
    fresh = daemon.connect()
    fresh.get_config("running")
    m.get_config("running")
