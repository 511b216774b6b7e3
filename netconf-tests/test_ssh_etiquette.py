"""SSH etiquette (issue 14, item 7): the OpenSSH client ends a NETCONF
session the way it ends an sftp session.

After ``<close-session>`` (or when the client's input ends) the server sends
``exit-status 0`` and EOF before it closes the channel, as OpenSSH's own
subsystems do; without the status, ``ssh`` reports "Exit status -1" and
exits 255, which breaks scripts that check it.
"""

from __future__ import annotations

import subprocess

from conftest import BASE10, BASE_NS, EOM, USER

HELLO = (
    f'<?xml version="1.0" encoding="UTF-8"?>'
    f'<hello xmlns="{BASE_NS}"><capabilities>'
    f"<capability>{BASE10}</capability></capabilities></hello>"
).encode() + EOM
CLOSE = (
    f'<rpc message-id="1" xmlns="{BASE_NS}"><close-session/></rpc>'.encode() + EOM
)


def openssh(daemon, creds, stdin: bytes) -> subprocess.CompletedProcess:
    """Run the OpenSSH client on the netconf subsystem with *stdin*."""
    return subprocess.run(
        [
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
        ],
        input=stdin,
        capture_output=True,
        timeout=30,
    )


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
