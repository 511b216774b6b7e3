#!/usr/bin/env python3
"""SSH connection flood against hotleased (issue 9, item 1); not a test.

    bench/ssh/flood.py [--binary target/release/hotleased] [--conns 1100]
                       [--nofile 1024] [--hold 45] [--sources 1] [--reconnect]

Starts its own daemon on 127.0.0.1 (temporary directory, default [netconf]
limits unless --netconf adds keys) with RLIMIT_NOFILE soft = hard = --nofile,
then opens --conns TCP connections from 127.0.0.2 (or --sources loopback
addresses 127.0.1.x) that send an SSH banner and nothing else, and holds
them for --hold seconds.  With --reconnect every connection the daemon
closes is opened again at once (at most --rate a second).

Prints every --every seconds: descriptors the daemon holds
(/proc/PID/fd), its RSS, flood connections still open; and the time of a
legitimate public-key and password login (TCP connect to the NETCONF
server hello on the netconf subsystem) at 1 s and at --hold / 2 into the
flood; at the end the log lines about accept errors, refusals and the
login grace time.  Needs paramiko and cryptography (netconf-tests/.venv).
Traffic stays on loopback; everything runs for at most --hold seconds plus
start and stop.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import selectors
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ROOT = Path(__file__).resolve().parent.parent.parent
BANNER = b"SSH-2.0-flood_0.1\r\n"
PASSWORD = "bench-password-1"
EOM = b"]]>]]>"


def make_key(path: Path) -> str:
    key = Ed25519PrivateKey.generate()
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def login(port: int, key: Path | None, password: str | None, timeout: float) -> float | str:
    """Seconds from TCP connect to the server's NETCONF hello, or the error."""
    t0 = time.monotonic()
    t = None
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        t = paramiko.Transport(sock)
        t.banner_timeout = timeout
        t.auth_timeout = timeout
        t.connect()
        if key is not None:
            t.auth_publickey("admin", paramiko.Ed25519Key.from_private_key_file(str(key)))
        else:
            t.auth_password("admin", password)
        ch = t.open_session(timeout=timeout)
        ch.settimeout(timeout)
        ch.invoke_subsystem("netconf")
        buf = b""
        while EOM not in buf:
            d = ch.recv(65536)
            if not d:
                return "channel closed"
            buf += d
        return time.monotonic() - t0
    except Exception as e:  # noqa: BLE001 -- the figure is the failure
        return f"failed after {time.monotonic() - t0:.1f} s: {type(e).__name__} {e}"
    finally:
        if t is not None:
            t.close()


class Flood:
    def __init__(self, port: int, sources: list[str]):
        self.port = port
        self.sources = sources
        self.sel = selectors.DefaultSelector()
        self.open = 0
        self.opened = 0
        self.closed_by_server = 0
        self.connect_errors = 0
        self.last_refill = time.monotonic()

    def connect_one(self) -> bool:
        src = self.sources[self.opened % len(self.sources)]
        s = socket.socket()
        s.setblocking(True)
        s.settimeout(2)
        try:
            s.bind((src, 0))
            s.connect(("127.0.0.1", self.port))
            s.sendall(BANNER)
        except OSError:
            s.close()
            self.connect_errors += 1
            return False
        s.setblocking(False)
        self.sel.register(s, selectors.EVENT_READ)
        self.open += 1
        self.opened += 1
        return True

    def poll(self, timeout: float) -> int:
        """Read what arrived; count and drop what the server closed."""
        gone = 0
        for key, _ in self.sel.select(timeout):
            s = key.fileobj
            try:
                d = s.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                d = b""
            if not d:
                self.sel.unregister(s)
                s.close()
                self.open -= 1
                self.closed_by_server += 1
                gone += 1
        return gone

    def close(self):
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()
        self.sel.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", default=str(ROOT / "target/release/hotleased"))
    ap.add_argument("--conns", type=int, default=1100)
    ap.add_argument("--nofile", type=int, default=1024)
    ap.add_argument("--hold", type=float, default=45)
    ap.add_argument("--every", type=float, default=2.5)
    ap.add_argument("--sources", type=int, default=1)
    ap.add_argument("--reconnect", action="store_true")
    ap.add_argument("--rate", type=float, default=2000)
    ap.add_argument("--netconf", default="", help="extra [netconf] keys, e.g. 'login-grace-time = 20'")
    a = ap.parse_args()
    # paramiko logs a traceback for every failed login: the figure says it
    logging.getLogger("paramiko").setLevel(logging.CRITICAL + 1)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = a.conns + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))

    with tempfile.TemporaryDirectory(prefix="ssh-flood-") as tmp:
        d = Path(tmp)
        pub = make_key(d / "client_key")
        pw_hash = subprocess.run(
            [a.binary, "hash-password"], input=PASSWORD.encode(), capture_output=True, check=True
        ).stdout.decode().strip()
        port = free_port()
        (d / "storage").mkdir()
        (d / "hotleased.toml").write_text(
            f'[netconf]\nlisten = "127.0.0.1:{port}"\nhost-key = "{d}/host_key"\nrecovery-user = "admin"\n{a.netconf}\n'
            f'[[netconf.user]]\nname = "admin"\npassword-hash = "{pw_hash}"\n'
            f'authorized-keys = ["{pub}"]\n[storage]\ndir = "{d}/storage"\n'
            "[vrrp]\nenabled = false\n"
        )
        log = open(d / "stderr", "wb")
        nofile = a.nofile
        proc = subprocess.Popen(
            [a.binary, "--config", str(d / "hotleased.toml")],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile)),
        )
        flood = None
        try:
            deadline = time.monotonic() + 30
            while True:
                assert proc.poll() is None, (d / "stderr").read_text()
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                        if s.recv(4) == b"SSH-":
                            break
                except OSError:
                    pass
                assert time.monotonic() < deadline, "daemon did not start"
                time.sleep(0.1)
            time.sleep(0.5)
            pid = proc.pid
            print(f"binary {a.binary}, RLIMIT_NOFILE {nofile}, {a.conns} banner-only connections "
                  f"from {a.sources} address(es){', reconnecting' if a.reconnect else ''}")
            print(f"before: {fds(pid)} fds, RSS {rss_kib(pid) / 1024:.1f} MiB")
            key_idle = login(port, d / "client_key", None, 10)
            print(f"login without flood: key {fmt(key_idle)}")

            sources = (
                ["127.0.0.2"]
                if a.sources == 1
                else [f"127.0.1.{i + 1}" for i in range(a.sources)]
            )
            flood = Flood(port, sources)
            t0 = time.monotonic()
            for _ in range(a.conns):
                flood.connect_one()
                flood.poll(0)
            t_open = time.monotonic() - t0
            print(f"flood: {flood.opened} connections opened in {t_open:.1f} s, "
                  f"{flood.connect_errors} connect errors")
            logins = {1.0: False, a.hold / 2: False}
            next_print = 0.0
            peak_fds = 0
            peak_rss = 0
            print(f"{'t (s)':>6} {'fds':>5} {'RSS MiB':>8} {'flood open':>10} {'closed by server':>16}")
            while True:
                t = time.monotonic() - t0
                if t >= a.hold:
                    break
                flood.poll(0.05)
                if a.reconnect:
                    # at most --rate a second, in bursts between polls
                    now = time.monotonic()
                    budget = min(a.conns - flood.open, int((now - flood.last_refill) * a.rate))
                    if budget > 0:
                        flood.last_refill = now
                        for _ in range(budget):
                            flood.connect_one()
                f, r = fds(pid), rss_kib(pid)
                peak_fds, peak_rss = max(peak_fds, f), max(peak_rss, r)
                if t >= next_print:
                    print(f"{t:6.1f} {f:5d} {r / 1024:8.1f} {flood.open:10d} {flood.closed_by_server:16d}")
                    next_print += a.every
                for at, done in logins.items():
                    if not done and t >= at:
                        logins[at] = True
                        k = login(port, d / "client_key", None, 15)
                        p = login(port, None, PASSWORD, 15)
                        print(f"  login at {t:.1f} s into the flood: key {fmt(k)}, password {fmt(p)}")
            print(f"end: {fds(pid)} fds (peak {peak_fds}), RSS {rss_kib(pid) / 1024:.1f} MiB "
                  f"(peak {peak_rss / 1024:.1f}), flood open {flood.open}, "
                  f"closed by server {flood.closed_by_server} of {flood.opened}")
            flood.close()
            flood = None
            time.sleep(1)
            print(f"after the flood: {fds(pid)} fds, RSS {rss_kib(pid) / 1024:.1f} MiB")
            text = (d / "stderr").read_text(errors="replace")
            for what in ("accept failed", "ssh connection refused", "to make room",
                         "login grace time over"):
                print(f"log lines '{what}': {text.count(what)}")
            alive = proc.poll() is None
            print(f"daemon alive: {alive}")
        finally:
            if flood is not None:
                flood.close()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


def fmt(r) -> str:
    return f"{r * 1000:.0f} ms" if isinstance(r, float) else str(r)


if __name__ == "__main__":
    main()
