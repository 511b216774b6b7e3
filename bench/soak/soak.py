"""NETCONF side of the soak (bench/soak/run.sh): SESSIONS ncclient sessions
against the hotleased on 127.0.0.1:8830 of the namespace it runs in, each
editing and committing for DURATION s, then one JSON line of counts.

Each session owns a DHCP pool `soak-N` (10.200.N.0/24 style sections in
172.16.0.0/12, bound to no backup profile, so the pair's pool fingerprints
do not change) and loops, with THINK s (random 0.5x-1.5x) between rounds:

  lock candidate          lock-denied / in-use: expected (another session
                          holds it), counted, the round is skipped
  edit-config             its pool's lease time changed (merge); one round in
                          INVALID also sets a renew time above the lease
                          time, which the commit must refuse
  commit                  an expected validation error for the invalid
                          round (then discard-changes); any other error is
                          unexpected
  unlock

Errors are counted by kind (rpc-error tag and app-tag); a session that
drops, an rpc that times out or any other error is `unexpected:...`.
Bounded: every session stops at DURATION s; an rpc waits at most 60 s.
"""
import argparse
import json
import random
import sys
import threading
import time
from collections import Counter

from ncclient import manager
from ncclient.operations.rpc import RPCError
from ncclient.transport import session as nc_session

NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
DHCP = "urn:hotlease:yang:dhcp-server"

# ncclient's session thread waits up to TICK (0.1 s) before it sends a queued
# request; a shorter tick makes rounds cost the server, not the client.
nc_session.TICK = 0.01

counts = Counter()
lock = threading.Lock()
# when every session stops (set once all have logged in)
DEADLINE = [float("inf")]


def count(k, n=1):
    with lock:
        counts[k] += n


def pool(n, lease, renew=None):
    net = f"172.{16 + n // 256}.{n % 256}"
    r = f"<renew-time>{renew}</renew-time>" if renew else ""
    return (f'<config xmlns="{NC}"><dhcp-server xmlns="{DHCP}"><ip-pool><name>soak-{n}</name>'
            f"<gateway>{net}.1</gateway><mask>255.255.255.0</mask>"
            f"<section><start>{net}.10</start><end>{net}.200</end></section>"
            f"<lease-time>{lease}</lease-time>{r}</ip-pool></dhcp-server></config>")


def kind(e: RPCError):
    tag = e.tag or "?"
    app = e.app_tag or ""
    return f"{tag}:{app}" if app else tag


def connect(port):
    return manager.connect(host="127.0.0.1", port=port, username="admin", password="lab",
                           hostkey_verify=False, allow_agent=False, look_for_keys=False,
                           timeout=60)


def session(n, port, think, invalid_every, start_gate):
    rnd = random.Random(n)
    try:
        m = connect(port)
    except Exception as e:
        count(f"unexpected:connect:{type(e).__name__}")
        return
    count("sessions_up")
    start_gate.wait()
    deadline = DEADLINE[0]
    rounds = 0
    try:
        while time.time() < deadline:
            time.sleep(think * rnd.uniform(0.5, 1.5))
            if time.time() >= deadline:
                break
            rounds += 1
            try:
                m.lock("candidate")
            except RPCError as e:
                k = kind(e)
                count(f"expected:lock:{k}" if e.tag in ("lock-denied", "in-use") else f"unexpected:lock:{k}")
                continue
            invalid = invalid_every and rounds % invalid_every == 0
            lease = rnd.randrange(600, 86400)
            try:
                m.edit_config(target="candidate", config=pool(n, lease, lease + 10 if invalid else None))
                try:
                    m.commit()
                    count("commits" if not invalid else "unexpected:invalid-commit-accepted")
                except RPCError as e:
                    k = kind(e)
                    count(f"expected:commit:{k}" if invalid else f"unexpected:commit:{k}")
                    m.discard_changes()
            except RPCError as e:
                count(f"unexpected:edit:{kind(e)}")
                m.discard_changes()
            finally:
                m.unlock("candidate")
    except Exception as e:
        count(f"unexpected:session:{type(e).__name__}:{str(e)[:60]}")
    finally:
        count("rounds", rounds)
        try:
            m.close_session()
        except Exception:
            count("unexpected:close")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=100)
    ap.add_argument("--duration", type=float, default=600)
    ap.add_argument("--think", type=float, default=2.0)
    ap.add_argument("--invalid-every", type=int, default=10)
    ap.add_argument("--port", type=int, default=8830)
    args = ap.parse_args()
    gate = threading.Event()
    # the sessions log in first (bounded), then all start their rounds
    threads = [threading.Thread(target=session, daemon=True,
                                args=(n, args.port, args.think, args.invalid_every, gate))
               for n in range(args.sessions)]
    t0 = time.time()
    for t in threads:
        t.start()
        time.sleep(0.05)
    while counts["sessions_up"] + sum(v for k, v in counts.items() if k.startswith("unexpected:connect")) < args.sessions:
        if time.time() - t0 > 120:
            break
        time.sleep(0.2)
    login = time.time() - t0
    print(json.dumps({"event": "up", "sessions_up": counts["sessions_up"], "login_s": round(login, 1),
                      "at": time.time()}), flush=True)
    DEADLINE[0] = time.time() + args.duration
    gate.set()
    for t in threads:
        t.join(timeout=max(0, DEADLINE[0] - time.time()) + 90)
    alive = sum(1 for t in threads if t.is_alive())
    if alive:
        count("unexpected:stuck-session", alive)
    out = dict(counts)
    out.update(event="done", at=time.time())
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
