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
