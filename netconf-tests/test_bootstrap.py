"""The CLI and the bootstrap TOML: hash-password, bad configs, host key, SIGTERM, the DHCP threads' scheduling."""

import stat
import subprocess
import time
from pathlib import Path

import pytest

from conftest import HOTLEASED, Daemon


def run(args, timeout=20, **kw):
    return subprocess.run([HOTLEASED, *args], capture_output=True, timeout=timeout, **kw)


def test_hash_password_prints_one_sha512_crypt_line(binary):
    out = run(["hash-password"], input=b"s3cret")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("$6$"), out.stdout
    # salted: two hashes of the same password differ
    again = run(["hash-password"], input=b"s3cret").stdout.decode().strip()
    assert again.startswith("$6$") and again != lines[0]


def test_hash_password_verifies_with_system_crypt(binary):
    crypt = pytest.importorskip("crypt")  # stdlib until Python 3.13
    h = run(["hash-password"], input=b"s3cret\n").stdout.decode().strip()
    assert crypt.crypt("s3cret", h) == h, "trailing newline must be stripped"
    assert crypt.crypt("s3cret\n", h) != h


def one_error_line(out):
    assert out.returncode != 0, f"exit 0 for a bad config: {out.stderr.decode()}"
    err = out.stderr.decode().strip()
    assert err, "no error message on stderr"
    assert len(err.splitlines()) == 1, f"expected one error line, got:\n{err}"
    return err


def test_missing_config_file(binary, tmp_path):
    out = run(["--config", str(tmp_path / "nope.toml")])
    err = one_error_line(out)
    assert "nope.toml" in err


def test_unknown_key_refused(binary, tmp_path, creds):
    d = Daemon(tmp_path / "d", creds, extra_toml="[netconf.bogus]\nfoo = 1\n")
    out = run(["--config", str(d.config)])
    err = one_error_line(out)
    assert "bogus" in err


def test_unknown_top_level_key_refused(binary, tmp_path, creds):
    d = Daemon(tmp_path / "d", creds, extra_toml="frobnicate = true\n")
    err = one_error_line(run(["--config", str(d.config)]))
    assert "frobnicate" in err


def test_no_users_refused(binary, tmp_path, creds):
    d = Daemon(tmp_path / "d", creds, users=[])
    out = run(["--config", str(d.config)])
    assert "hotleased hash-password" in one_error_line(out)
    assert out.returncode == 78, "a bad bootstrap file exits with EX_CONFIG (the unit does not restart it)"


def test_invalid_toml_refused(binary, tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[netconf\nlisten = \n")
    one_error_line(run(["--config", str(p)]))


def test_host_key_generated_0600_and_reused(daemon):
    key = daemon.dir / "ssh_host_ed25519_key"
    assert key.exists(), "host key not generated"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    first = key.read_bytes()
    m = daemon.connect()
    fp1 = m._session._transport.get_remote_server_key().get_fingerprint()
    m.close_session()
    daemon.restart()
    assert key.read_bytes() == first, "host key regenerated on restart"
    m = daemon.connect()
    assert m._session._transport.get_remote_server_key().get_fingerprint() == fp1
    assert m._session._transport.get_remote_server_key().get_name() == "ssh-ed25519"


def test_sigterm_exits_cleanly_with_open_sessions(daemon):
    m = daemon.connect()
    m.get_config("running")
    raw = daemon.raw()
    raw.hello()
    t0 = time.monotonic()
    daemon.expect_dead = True
    daemon.proc.send_signal(15)
    rc = daemon.proc.wait(10)
    assert rc == 0, f"exit {rc} on SIGTERM:\n{daemon.stderr()}"
    assert time.monotonic() - t0 < 5


def test_logs_go_to_stderr(daemon):
    daemon.connect().get_config("running")
    assert daemon.stderr().strip(), "nothing logged on stderr"


def sched_of_threads(pid: int, names: set[str]) -> dict[str, tuple[int, int]]:
    """(rt_priority, policy) per thread name (/proc stat fields 40 and 41;
    policy 2 is SCHED_RR, 0 the normal scheduler)."""
    out = {}
    for t in (Path(f"/proc/{pid}/task")).iterdir():
        try:
            name = (t / "comm").read_text().strip()
            fields = (t / "stat").read_text().rsplit(") ", 1)[1].split()
        except OSError:
            continue  # a thread that ended meanwhile
        if name in names:
            out[name] = (int(fields[37]), int(fields[38]))
    return out


ACK_PATH = {"dhcp", "lease-writer", "lease-ack"}


def ack_path_at(prio: int) -> dict:
    """SCHED_RR (policy 2): the lease writer and the ACK release at the
    bootstrap's priority, the actor one below (at least 1), so that under
    a flood they preempt it instead of waiting for its round-robin slice."""
    return {"lease-writer": (prio, 2), "lease-ack": (prio, 2), "dhcp": (max(prio - 1, 1), 2)}


def test_dhcp_answer_threads_run_realtime_by_default(daemon):
    # tests run as root: SCHED_RR is permitted
    assert sched_of_threads(daemon.proc.pid, ACK_PATH) == ack_path_at(5)
    # the NETCONF side keeps the normal scheduler
    assert set(sched_of_threads(daemon.proc.pid, {"tokio-rt-worker"}).values()) == {(0, 0)}


def test_dhcp_realtime_priority_from_the_bootstrap_file(daemon_factory):
    d = daemon_factory(extra_toml="[dhcp]\nrealtime-priority = 3\n")
    assert sched_of_threads(d.proc.pid, ACK_PATH) == ack_path_at(3)
    d.stop()
    off = daemon_factory(extra_toml="[dhcp]\nrealtime-priority = 0\n")
    assert sched_of_threads(off.proc.pid, ACK_PATH) == {n: (0, 0) for n in ACK_PATH}
