#!/usr/bin/env python3
"""Hostile XML against hotleased: what one peer's message costs the others.

    HOTLEASED=target/release/hotleased \\
        netconf-tests/.venv/bin/python bench/hostile-xml.py [--attackers 2]

Starts its own daemon on loopback (the netconf-tests harness, temp dir) and
runs, one after the other:

  unclosed   ATTACKERS sessions each send <rpc><get><filter> followed by
             300,000 unclosed <a> (0.9 MB) and the end of the message;
  partial    the same without the end of the message (the daemon holds it);
  wide       one session sends a filter of --wide-mb MB of empty <a/>
             siblings (a parse that is long because the message is big);
  deep       a 100,000-deep <edit-config> and <get> filter.

For each: seconds until every attacker has its reply, the daemon's RSS
(current and peak) and open descriptors, and the time for a legitimate
login (SSH, password, hello, one <get-config>) started once every attack
message has been sent (while it is parsed), next to the same login on the idle daemon. Not a test:
the pass/fail checks are in netconf-tests/test_hostile_xml.py.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "netconf-tests"))
os.environ.setdefault("HOTLEASED", str(ROOT / "target" / "debug" / "hotleased"))

import conftest  # noqa: E402  (reads HOTLEASED at import)
from conftest import BASE_NS, NS, PASSWORD, Daemon, chunk  # noqa: E402


def proc_status(pid: int) -> dict:
    out = {"VmRSS": None, "VmHWM": None, "fds": None}
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:  # the daemon died
        return out
    for line in status.splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM"):
            out[k] = int(v.split()[0]) // 1024  # MiB
    return out


def login(d: Daemon) -> float | str:
    """Seconds for SSH + password + hello + one get-config (or the failure)."""
    t = time.monotonic()
    try:
        m = d.connect(timeout=600, track=False)
        m.get_config("running")
    except Exception as e:  # noqa: BLE001 - reported
        return f"failed after {time.monotonic() - t:.2f} s: {type(e).__name__}: {e}"
    dt = time.monotonic() - t
    m.close_session()
    return round(dt, 2)


def attack(d: Daemon, payloads: list[bytes], expect_reply: bool) -> dict:
    sessions = [d.raw(timeout=600) for _ in payloads]
    for s in sessions:
        s.hello()
    before = proc_status(d.proc.pid)
    replies: list[float] = []
    errors: list[str] = []
    t0 = time.monotonic()

    sent = threading.Barrier(len(payloads) + 1)

    def run(s, p):
        try:
            s.send(p)
        except Exception as e:  # noqa: BLE001 - reported
            errors.append(f"send: {type(e).__name__}: {e}")
            expect = False
        else:
            expect = expect_reply
        finally:
            sent.wait()
        if not expect:
            return
        try:
            r = s.read_xml()
            replies.append(time.monotonic() - t0)
            err = r.find("nc:rpc-error", NS)
            if err is not None:
                errors.append(err.findtext("nc:error-message", namespaces=NS))
        except Exception as e:  # noqa: BLE001 - reported
            errors.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=run, args=(s, p)) for s, p in zip(sessions, payloads)]
    for t in threads:
        t.start()
    # every message is with the daemon: the login competes with their parse
    sent.wait()
    sent_s = time.monotonic() - t0
    during = proc_status(d.proc.pid)
    login_s = login(d)
    for t in threads:
        t.join(3600)
    total = time.monotonic() - t0
    after = proc_status(d.proc.pid)
    for s in sessions:
        s.close()
    return {
        "sent_s": round(sent_s, 2),
        "replies_s": [round(x, 2) for x in sorted(replies)],
        "total_s": round(total, 2),
        "login_during_s": login_s,
        "rss_mib": (before["VmRSS"], during["VmRSS"], after["VmRSS"]),
        "peak_rss_mib": after["VmHWM"],
        "fds": (before["fds"], during["fds"], after["fds"]),
        "errors": sorted(set(errors)),
        "alive": d.alive(),
    }


def rpc(body: bytes) -> bytes:
    return f'<rpc xmlns="{BASE_NS}" message-id="1">'.encode() + body


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--attackers", type=int, default=2)
    ap.add_argument("--unclosed", type=int, default=300_000)
    ap.add_argument("--wide-mb", type=int, default=16)
    ap.add_argument("--deep", type=int, default=100_000)
    ap.add_argument("--only", nargs="*", default=["unclosed", "partial", "wide", "deep"])
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="hostile-xml-") as tmp:
        tmp = Path(tmp)
        (tmp / "keys").mkdir()
        creds = {
            "password_hash": conftest.hash_password(PASSWORD),
            "admin_pub": conftest.make_ed25519_key(tmp / "keys" / "admin"),
            "keyonly_pub": conftest.make_ed25519_key(tmp / "keys" / "keyonly"),
        }
        d = Daemon(tmp / "daemon", creds).start()
        try:
            print(f"binary: {conftest.HOTLEASED}")
            print(f"idle login: {login(d)} s; idle: {proc_status(d.proc.pid)}")
            unclosed = b"<get><filter>" + b"<a>" * args.unclosed
            cases = {
                "unclosed": ([chunk(rpc(unclosed))] * args.attackers, True),
                "partial": (
                    [b"\n#%d\n" % len(rpc(unclosed)) + rpc(unclosed)] * args.attackers,
                    False,
                ),
                "wide": (
                    [chunk(rpc(b"<get><filter>" + b"<a/>" * (args.wide_mb << 18) + b"</filter></get></rpc>"))],
                    True,
                ),
                "deep": (
                    [
                        chunk(rpc(
                            b"<edit-config><target><candidate/></target><config>"
                            + b'<a xmlns="urn:x">' * args.deep + b"</a>" * args.deep
                            + b"</config></edit-config></rpc>"
                        )),
                        chunk(rpc(
                            b'<get><filter type="subtree">'
                            + b'<a xmlns="urn:x">' * args.deep + b"</a>" * args.deep
                            + b"</filter></get></rpc>"
                        )),
                    ],
                    True,
                ),
            }
            for name in args.only:
                payloads, expect = cases[name]
                mb = sum(len(p) for p in payloads) / 1e6
                print(f"\n== {name}: {len(payloads)} message(s), {mb:.1f} MB")
                if not d.alive():
                    print("daemon is dead")
                    break
                for k, v in attack(d, payloads, expect).items():
                    print(f"  {k}: {v}")
        finally:
            d.stop()


if __name__ == "__main__":
    main()
