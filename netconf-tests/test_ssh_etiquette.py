"""SSH etiquette (issue 14, item 7): the OpenSSH client ends a NETCONF
session the way it ends an sftp session.

After ``<close-session>`` (or when the client's input ends) the server sends
``exit-status 0`` and EOF before it closes the channel, as OpenSSH's own
subsystems do; without the status, ``ssh`` reports "Exit status -1" and
exits 255, which breaks scripts that check it. A session that ends any
other way (killed by another session) gives exit status 1.
"""

from __future__ import annotations

import re
import subprocess
import time

from conftest import BASE10, BASE_NS, EOM, USER

HELLO = (
    f'<?xml version="1.0" encoding="UTF-8"?>'
    f'<hello xmlns="{BASE_NS}"><capabilities>'
    f"<capability>{BASE10}</capability></capabilities></hello>"
).encode() + EOM
CLOSE = (
    f'<rpc message-id="1" xmlns="{BASE_NS}"><close-session/></rpc>'.encode() + EOM
)


def ssh_args(daemon, creds) -> list[str]:
    return [
        "ssh",
        "-p", str(daemon.port),
        "-i", creds["admin_key"],
        "-o", "BatchMode=yes",
        "-o", "IdentitiesOnly=yes",
        "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null",
        "-o", "LogLevel=ERROR",
        "-F", "/dev/null",
        "-s",
        f"{USER}@127.0.0.1",
        "netconf",
    ]


def openssh(daemon, creds, stdin: bytes) -> subprocess.CompletedProcess:
    """Run the OpenSSH client on the netconf subsystem with *stdin*."""
    return subprocess.run(ssh_args(daemon, creds), input=stdin, capture_output=True, timeout=30)


def test_close_session_exits_zero(daemon, creds):
    r = openssh(daemon, creds, HELLO + CLOSE)
    out = r.stdout.decode(errors="replace")
    # the session really ran: the server's hello and the <ok/> came back
    assert "<session-id>" in out, out
    assert "<ok/>" in out, out
    assert r.returncode == 0, (r.returncode, r.stderr.decode(errors="replace"))


def test_client_eof_exits_zero(daemon, creds):
    """A client whose input ends (a script piping a file) also ends cleanly."""
    r = openssh(daemon, creds, HELLO)
    assert "<session-id>" in r.stdout.decode(errors="replace")
    assert r.returncode == 0, (r.returncode, r.stderr.decode(errors="replace"))


def test_killed_session_exits_non_zero(daemon, creds):
    """A session ended by another one's <kill-session> is no clean end: the
    client sees exit status 1, not 0."""
    p = subprocess.Popen(ssh_args(daemon, creds), stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        p.stdin.write(HELLO)
        p.stdin.flush()
        out = b""
        deadline = time.monotonic() + 20
        while b"</hello>" not in out and time.monotonic() < deadline:
            chunk = p.stdout.read1(4096)
            if not chunk:
                break
            out += chunk
        sid = re.search(rb"<session-id>(\d+)</session-id>", out)
        assert sid, out
        m = daemon.connect()
        m.kill_session(sid.group(1).decode())
        # stdin stays open: only the server can end this session
        assert p.wait(20) == 1, p.stderr.read().decode(errors="replace")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(5)
