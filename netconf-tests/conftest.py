"""Fixtures and helpers for the black-box NETCONF tests of hotleased.

Every test talks to a real ``hotleased`` process over real SSH:

* ``daemon``          -- a fresh daemon (own temp dir, port, host key, startup
                          datastore) for one test; stopped at teardown.
* ``daemon_factory``  -- make more daemons (e.g. one with odd bootstrap TOML).
* ``shared_daemon``   -- one daemon for the whole run, for read-only tests.

Each daemon object can ``connect()`` with ncclient (chunked base:1.1 by
default, ``base10=True`` for a base:1.0-only client), open a ``raw()`` paramiko
channel that speaks the framing by hand, ``restart()`` on the same storage
dir, and ``stop()`` with SIGTERM.

The daemon binary is ``$HOTLEASED`` (default target/debug/hotleased).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import paramiko
import pytest
from lxml import etree
from ncclient import manager
from ncclient.devices.default import DefaultDeviceHandler
from ncclient.operations.rpc import RPCError
from ncclient.transport import session as nc_session

ROOT = Path(__file__).resolve().parent.parent
HOTLEASED = os.environ.get("HOTLEASED", str(ROOT / "target" / "debug" / "hotleased"))
YANG_DIR = ROOT / "yang"

# ncclient's session thread polls its send queue every TICK (0.1 s), which adds
# about 100 ms to every RPC.  Polling faster changes nothing on the wire and
# keeps the whole suite well inside its time budget.
nc_session.TICK = 0.005

PASSWORD = "lab-password-1"
USER = "admin"
KEY_USER = "keyonly"  # a user with an authorized key but no password

BASE_NS = "urn:ietf:params:xml:ns:netconf:base:1.0"
BASE10 = "urn:ietf:params:netconf:base:1.0"
BASE11 = "urn:ietf:params:netconf:base:1.1"
WD_NS = "urn:ietf:params:xml:ns:netconf:default:1.0"
WD_YANG_NS = "urn:ietf:params:xml:ns:yang:ietf-netconf-with-defaults"
MON_NS = "urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"
VRRP_NS = "urn:hotlease:yang:vrrp"
RBK_NS = "urn:hotlease:yang:remote-backup"
DHCPS_NS = "urn:hotlease:yang:dhcp-server"
NS = {
    "nc": BASE_NS,
    "vrrp": VRRP_NS,
    "rbk": RBK_NS,
    "dhcps": DHCPS_NS,
    "wd": WD_NS,
    "mon": MON_NS,
}
MODULES = {
    "hotlease-vrrp": VRRP_NS,
    "hotlease-remote-backup": RBK_NS,
    "hotlease-dhcp-server": DHCPS_NS,
}
EOM = b"]]>]]>"


# --------------------------------------------------------------------------
# keys and passwords
# --------------------------------------------------------------------------


def make_ed25519_key(path: Path) -> str:
    """Write an OpenSSH ed25519 private key to *path*; return the public line."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    pub = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()
    line = f"{pub} test@{path.name}"
    (path.parent / (path.name + ".pub")).write_text(line + "\n")
    return line


def hash_password(password: str) -> str:
    out = subprocess.run(
        [HOTLEASED, "hash-password"],
        input=password.encode(),
        capture_output=True,
        timeout=30,
    )
    assert out.returncode == 0, f"hash-password failed: {out.stderr.decode()}"
    line = out.stdout.decode().strip()
    assert line.startswith("$6$"), line
    return line


@pytest.fixture(scope="session")
def binary():
    if not os.access(HOTLEASED, os.X_OK):
        pytest.exit(f"daemon binary {HOTLEASED} not found (run cargo build)", 2)
    return HOTLEASED


@pytest.fixture(scope="session")
def creds(binary, tmp_path_factory):
    """Client keys and the password hash, made once for the run."""
    d = tmp_path_factory.mktemp("keys")
    admin_pub = make_ed25519_key(d / "admin_ed25519")
    keyonly_pub = make_ed25519_key(d / "keyonly_ed25519")
    stranger_pub = make_ed25519_key(d / "stranger_ed25519")
    return {
        "password_hash": hash_password(PASSWORD),
        "admin_key": str(d / "admin_ed25519"),
        "admin_pub": admin_pub,
        "keyonly_key": str(d / "keyonly_ed25519"),
        "keyonly_pub": keyonly_pub,
        "stranger_key": str(d / "stranger_ed25519"),
        "stranger_pub": stranger_pub,
    }


_PORTS_GIVEN: set[int] = set()
# Below Linux's ephemeral range (32768-60999): a port handed out here is
# never also picked by the kernel for a bind to port 0 or an outgoing
# connection, and never handed out twice in one test run (two sockets bound
# to port 0 one after the other may get the same port: CI once gave the
# metrics endpoint and Prometheus the same one).
_PORT_LOW, _PORT_HIGH = 20000, 32700


def free_port() -> int:
    span = _PORT_HIGH - _PORT_LOW
    start = (os.getpid() * 7919 + len(_PORTS_GIVEN)) % span
    for i in range(span):
        port = _PORT_LOW + (start + i) % span
        if port in _PORTS_GIVEN:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _PORTS_GIVEN.add(port)
        return port
    raise RuntimeError("no free TCP port left below the ephemeral range")


def toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --------------------------------------------------------------------------
# the daemon
# --------------------------------------------------------------------------


class Base10Handler(DefaultDeviceHandler):
    """ncclient device handler whose hello offers base:1.0 only (EOM framing)."""

    _BASE_CAPABILITIES = [
        c for c in DefaultDeviceHandler._BASE_CAPABILITIES if c != BASE11
    ]


class Daemon:
    # Command run in front of the daemon (e.g. ``ip netns exec NS``).
    cmd_prefix: list = []

    def __init__(
        self,
        workdir: Path,
        creds: dict,
        users=None,
        extra_toml: str = "",
        vrrp: bool = False,
        netconf_toml: str = "",
        nofile: int | None = None,
    ):
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.storage = self.dir / "storage"
        self.storage.mkdir(exist_ok=True)
        self.creds = creds
        self.port = free_port()
        self.config = self.dir / "hotleased.toml"
        self.log = self.dir / "hotleased.stderr"
        self.proc: subprocess.Popen | None = None
        self.sessions: list = []
        self.expect_dead = False
        if users is None:
            users = [
                {
                    "name": USER,
                    "password-hash": creds["password_hash"],
                    "authorized-keys": [creds["admin_pub"]],
                },
                {"name": KEY_USER, "authorized-keys": [creds["keyonly_pub"]]},
            ]
        self.users = users
        self.extra_toml = extra_toml
        # more keys of the [netconf] table (it cannot be reopened after the
        # [[netconf.user]] entries)
        self.netconf_toml = netconf_toml
        # RLIMIT_NOFILE (soft and hard) of the daemon, e.g. a small one to
        # show what a connection flood does to its descriptors
        self.nofile = nofile
        # The VRRP runtime would advertise on this host's real interfaces:
        # only the namespaced VRRP tests (test_vrrp.py) turn it on.
        self.vrrp = vrrp
        self.write_config()

    def write_config(self):
        lines = [
            "[netconf]",
            f'listen = "127.0.0.1:{self.port}"',
            f"host-key = {toml_str(str(self.dir / 'ssh_host_ed25519_key'))}",
        ]
        if self.netconf_toml:
            lines.append(self.netconf_toml)
        if "recovery-user" not in self.netconf_toml and any(u.get("name") == USER for u in self.users):
            # RFC 8341's write-default is deny: the suite's admin is the
            # recovery user, whom NACM never restricts (test_nacm.py tests
            # the users NACM does restrict)
            lines.append(f"recovery-user = {toml_str(USER)}")
        for u in self.users:
            lines.append("[[netconf.user]]")
            for k, v in u.items():
                if isinstance(v, list):
                    lines.append(f"{k} = [" + ", ".join(toml_str(x) for x in v) + "]")
                else:
                    lines.append(f"{k} = {toml_str(v)}")
        lines += ["[storage]", f"dir = {toml_str(str(self.storage))}"]
        extra = self.extra_toml
        if "[vrrp]" not in extra:
            extra += f"\n[vrrp]\nenabled = {'true' if self.vrrp else 'false'}\n"
        self.config.write_text("\n".join(lines) + "\n" + extra)

    def open_socket(self, timeout: float) -> socket.socket:
        """A TCP connection to the NETCONF port (overridden for namespaces)."""
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    # -- process control ---------------------------------------------------

    def start(self, timeout: float = 30.0):
        assert self.proc is None or self.proc.poll() is not None
        with open(self.log, "ab") as logf:
            logf.write(f"==== start {time.strftime('%H:%M:%S')} ====\n".encode())
            logf.flush()
            self.proc = subprocess.Popen(
                self.cmd_prefix + [HOTLEASED, "--config", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=logf,
                env={**os.environ, "RUST_BACKTRACE": "1"},
                preexec_fn=self._limit_nofile if self.nofile else None,
            )
        self.expect_dead = False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"hotleased exited with {self.proc.returncode} at start:\n{self.stderr()}"
                )
            try:
                with self.open_socket(0.5) as s:
                    s.settimeout(5)
                    # wait for the SSH banner: the listener is really serving
                    if s.recv(4).startswith(b"SSH-"):
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"hotleased did not listen on {self.port}:\n{self.stderr()}")

    def _limit_nofile(self):
        import resource

        resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait, then SIGKILL. Returns the exit code (None if killed)."""
        self.close_sessions()
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.expect_dead = True
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            return None

    def restart(self):
        rc = self.stop()
        assert rc == 0, f"hotleased exited with {rc} on SIGTERM:\n{self.stderr()}"
        return self.start()

    def stderr(self, tail: int = 300) -> str:
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return ""
        return "\n".join(lines[-tail:])

    # -- clients -----------------------------------------------------------

    def connect(
        self,
        user: str = USER,
        password: str | None = PASSWORD,
        key: str | None = None,
        base10: bool = False,
        timeout: float = 30,
        track: bool = True,
    ):
        kw = dict(
            host="127.0.0.1",
            port=self.port,
            username=user,
            hostkey_verify=False,
            allow_agent=False,
            look_for_keys=False,
            timeout=timeout,
        )
        if key is not None:
            kw["key_filename"] = key
        if password is not None:
            kw["password"] = password
        if base10:
            kw["device_params"] = {"handler": Base10Handler}
        if self.cmd_prefix:
            kw["sock"] = self.open_socket(timeout)
        m = manager.connect(**kw)
        if track:
            self.sessions.append(m)
        return m

    def raw(self, user: str = USER, password: str = PASSWORD, timeout: float = 10):
        r = RawSession(self.port, user, password, timeout)
        self.sessions.append(r)
        return r

    def close_sessions(self):
        for s in self.sessions:
            try:
                if isinstance(s, RawSession):
                    s.close()
                elif s.connected:
                    s._session.close()
            except Exception:
                pass
        self.sessions.clear()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    setattr(item, "rep_" + rep.when, rep)
    return rep


def _finish(request, daemons):
    failed = any(
        getattr(request.node, "rep_" + w, None) is not None
        and getattr(request.node, "rep_" + w).failed
        for w in ("setup", "call")
    )
    died = []
    for d in daemons:
        if d.proc is not None and not d.expect_dead and d.proc.poll() is not None:
            died.append(d)
    for d in daemons:
        d.stop()
    if failed or died:
        for d in daemons:
            print(f"\n---- hotleased stderr ({d.dir}) ----\n{d.stderr()}")
    if died:
        pytest.fail(
            "hotleased died during the test: "
            + ", ".join(f"rc={d.proc.returncode}" for d in died)
        )


@pytest.fixture
def daemon_factory(binary, creds, tmp_path, request):
    """Make daemons; ``make(start=True, users=None, extra_toml='')``, and
    ``netconf_toml`` (keys of [netconf]), ``nofile`` (RLIMIT_NOFILE)."""
    made: list[Daemon] = []

    def make(
        start: bool = True,
        users=None,
        extra_toml: str = "",
        name: str | None = None,
        netconf_toml: str = "",
        nofile: int | None = None,
    ):
        d = Daemon(
            tmp_path / (name or f"d{len(made)}"),
            creds,
            users,
            extra_toml,
            netconf_toml=netconf_toml,
            nofile=nofile,
        )
        made.append(d)
        if start:
            d.start()
        return d

    yield make
    _finish(request, made)


@pytest.fixture
def daemon(daemon_factory):
    """A fresh daemon for this test."""
    return daemon_factory()


@pytest.fixture(scope="module")
def module_daemon(binary, creds, tmp_path_factory, request):
    """A daemon shared by one test module (tests must leave it as they found it)."""
    d = Daemon(tmp_path_factory.mktemp("module-daemon"), creds)
    d.start()
    yield d
    alive = d.alive()
    d.stop()
    if not alive:
        print(f"\n---- hotleased stderr ----\n{d.stderr()}")
        pytest.fail(f"shared daemon died: rc={d.proc.returncode}")


@pytest.fixture
def nc(daemon):
    """An ncclient session (base:1.1, password login) on a fresh daemon."""
    return daemon.connect()


# --------------------------------------------------------------------------
# raw NETCONF over a paramiko channel
# --------------------------------------------------------------------------


def hello_xml(caps=(BASE10, BASE11), session_id: str | None = None) -> bytes:
    c = "".join(f"<capability>{x}</capability>" for x in caps)
    sid = f"<session-id>{session_id}</session-id>" if session_id else ""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>'
        f'<hello xmlns="{BASE_NS}"><capabilities>{c}</capabilities>{sid}</hello>'
    ).encode()


def chunk(data: bytes, sizes=None) -> bytes:
    """Chunked framing (RFC 6242 §4.2), optionally split into several chunks."""
    if not sizes:
        return b"\n#%d\n%s\n##\n" % (len(data), data)
    out, i = b"", 0
    for n in sizes:
        if i >= len(data):
            break
        part = data[i : i + n]
        out += b"\n#%d\n%s" % (len(part), part)
        i += n
    if i < len(data):
        out += b"\n#%d\n%s" % (len(data) - i, data[i:])
    return out + b"\n##\n"


class RawSession:
    """A NETCONF SSH subsystem channel driven by hand."""

    def __init__(self, port: int, user: str, password: str, timeout: float = 10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.t = paramiko.Transport(self.sock)
        self.t.connect(username=user, password=password)
        self.ch = self.t.open_session()
        self.ch.settimeout(timeout)
        self.ch.invoke_subsystem("netconf")
        self.buf = b""
        self.server_hello: etree._Element | None = None
        self.framing = "eom"

    def close(self):
        try:
            self.ch.close()
        finally:
            self.t.close()

    def send(self, data: bytes):
        self.ch.sendall(data)

    def _more(self):
        d = self.ch.recv(65536)
        if not d:
            raise EOFError("channel closed by server")
        self.buf += d

    def read_eom(self) -> bytes:
        while EOM not in self.buf:
            self._more()
        msg, self.buf = self.buf.split(EOM, 1)
        return msg

    def read_chunked(self) -> bytes:
        """One chunked message; strict RFC 6242 §4.2 grammar."""
        msg = b""
        while True:
            while True:
                m = re.match(rb"\n#(\d+)\n", self.buf)
                e = self.buf.startswith(b"\n##\n")
                if m or e:
                    break
                if len(self.buf) >= 14 and not re.match(rb"\n#\d*$", self.buf[:14]):
                    raise AssertionError(f"bad chunk header from server: {self.buf[:40]!r}")
                self._more()
            if e:
                self.buf = self.buf[4:]
                if not msg:
                    raise AssertionError("end-of-chunks with no chunk")
                return msg
            n = int(m.group(1))
            assert 1 <= n <= 4294967295
            self.buf = self.buf[m.end() :]
            while len(self.buf) < n:
                self._more()
            msg += self.buf[:n]
            self.buf = self.buf[n:]

    def read(self) -> bytes:
        return self.read_chunked() if self.framing == "chunked" else self.read_eom()

    def read_xml(self) -> etree._Element:
        return etree.fromstring(self.read())

    def frame(self, data: bytes) -> bytes:
        return chunk(data) if self.framing == "chunked" else data + EOM

    def hello(self, caps=(BASE10, BASE11)) -> etree._Element:
        """Exchange hellos; chooses the framing from the common base."""
        self.send(hello_xml(caps) + EOM)
        return self.read_server_hello(caps)

    def read_server_hello(self, caps=(BASE10, BASE11)) -> etree._Element:
        self.server_hello = etree.fromstring(self.read_eom())
        server_caps = [c.text.strip() for c in self.server_hello.iter(f"{{{BASE_NS}}}capability")]
        if BASE11 in caps and BASE11 in server_caps:
            self.framing = "chunked"
        return self.server_hello

    def rpc(self, body: str, message_id: str | None = "1", attrs: str = "") -> etree._Element:
        mid = f' message-id="{message_id}"' if message_id is not None else ""
        xml = f'<rpc xmlns="{BASE_NS}"{mid}{attrs}>{body}</rpc>'.encode()
        self.send(self.frame(xml))
        return self.read_xml()

    def wait_closed(self, timeout: float = 5.0) -> bool:
        """True when the server closes the channel within *timeout*.

        Whatever arrives meanwhile is kept in ``self.buf``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.ch.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                d = self.ch.recv(65536)
            except socket.timeout:
                return False
            except (EOFError, OSError, paramiko.SSHException):
                return True
            if not d:
                return True
            self.buf += d
        return False


# --------------------------------------------------------------------------
# payload and reply helpers
# --------------------------------------------------------------------------


def config(*parts: str) -> str:
    """Wrap data in an edit-config <config> element (nc prefix declared)."""
    return f'<config xmlns="{BASE_NS}" xmlns:nc="{BASE_NS}">' + "".join(parts) + "</config>"


def inline_source(cfg: str) -> str:
    """copy-config source holding an inline <config> (ncclient wants <source>)."""
    return f'<source xmlns="{BASE_NS}">{cfg}</source>'


def vrrp(*groups: str, attrs: str = "") -> str:
    return f'<vrrp xmlns="{VRRP_NS}"{attrs}>' + "".join(groups) + "</vrrp>"


def group(interface="eth0", vrid=1, vips=None, attrs: str = "", **leaves) -> str:
    """A vrrp group entry; leaves given as keyword args (underscores → dashes).

    ``preempt={'enabled': 'false'}`` makes the preempt container.  The
    default virtual IP is 192.0.2.<vrid> (a VIP belongs to one group only)."""
    if vips is None:
        vips = (f"192.0.2.{vrid}",)
    body = f"<interface>{interface}</interface><vrid>{vrid}</vrid>"
    body += "".join(f"<virtual-ip>{v}</virtual-ip>" for v in vips)
    for k, v in leaves.items():
        name = k.replace("_", "-")
        if isinstance(v, dict):
            inner = "".join(f"<{a.replace('_', '-')}>{b}</{a.replace('_', '-')}>" for a, b in v.items())
            body += f"<{name}>{inner}</{name}>"
        else:
            body += f"<{name}>{v}</{name}>"
    return f"<group{attrs}>{body}</group>"


def data_of(reply) -> etree._Element:
    """The <data> element of a get/get-config reply (ncclient GetReply)."""
    return reply.data_ele


def find_groups(data) -> dict:
    """{(interface, vrid): {leaf: text}} from a <data> element."""
    out = {}
    for g in data.iterfind("vrrp:vrrp/vrrp:group", NS):
        vrid = g.findtext("vrrp:vrid", namespaces=NS)
        key = (g.findtext("vrrp:interface", namespaces=NS), int(vrid) if vrid else None)
        leaves = {}
        for c in g:
            name = etree.QName(c).localname
            if len(c):
                for cc in c:
                    leaves[name + "/" + etree.QName(cc).localname] = (cc.text or "").strip()
            elif name == "virtual-ip":
                leaves.setdefault("virtual-ip", []).append(c.text.strip())
            else:
                leaves[name] = (c.text or "").strip()
        out[key] = leaves
    return out


def get_groups(m, source="running", **kw) -> dict:
    return find_groups(data_of(m.get_config(source, **kw)))


def errors_of(exc: RPCError) -> list[RPCError]:
    errs = getattr(exc, "errors", None)
    return list(errs) if errs else [exc]


def error_info(err: RPCError) -> dict:
    """{localname: text} of the error-info children."""
    ei = err.xml.find(f"{{{BASE_NS}}}error-info")
    if ei is None:
        return {}
    return {etree.QName(c).localname: (c.text or "").strip() for c in ei}


def assert_rpc_error(excinfo_or_exc, tag, type_=None, app_tag=None, path=None):
    """Check the (first) rpc-error; return it."""
    exc = getattr(excinfo_or_exc, "value", excinfo_or_exc)
    errs = errors_of(exc)
    e = errs[0]
    detail = etree.tostring(e.xml).decode() if e.xml is not None else str(e)
    tags = [tag] if isinstance(tag, str) else list(tag)
    assert e.tag in tags, f"error-tag {e.tag!r}, expected {tags}: {detail}"
    if type_ is not None:
        types = [type_] if isinstance(type_, str) else list(type_)
        assert e.type in types, f"error-type {e.type!r}, expected {types}: {detail}"
    assert e.severity == "error", detail
    if app_tag is not None:
        assert e.app_tag == app_tag, f"error-app-tag {e.app_tag!r}, expected {app_tag!r}: {detail}"
    if path is not None:
        assert_error_path(e, path)
    return e


_STEP = re.compile(r"/([A-Za-z_][\w.-]*):([A-Za-z_][\w.-]*)((?:\[[^\]]*\])*)")
_PRED = re.compile(r"\[\s*(?:([A-Za-z_][\w.-]*):)?([A-Za-z_][\w.-]*)\s*=\s*(?:'([^']*)'|\"([^\"]*)\")\s*\]")


def canonical_path(path: str, nsmap: dict) -> list:
    """Instance-identifier → [(ns, name, ((ns, key, value), ...)), ...].

    Every prefix must be declared in *nsmap* (the error-path element's)."""
    path = path.strip()
    assert path.startswith("/"), f"error-path {path!r} is not absolute"
    steps, pos = [], 0
    while pos < len(path):
        m = _STEP.match(path, pos)
        assert m, f"error-path {path!r}: unprefixed or bad step at {path[pos:]!r}"
        prefix, name, preds = m.group(1), m.group(2), m.group(3)
        assert prefix in nsmap, f"error-path prefix {prefix!r} not declared (nsmap {nsmap})"
        keys = []
        for p in _PRED.finditer(preds):
            kp = p.group(1) or prefix
            assert kp in nsmap, f"error-path prefix {kp!r} not declared"
            keys.append((nsmap[kp], p.group(2), p.group(3) if p.group(3) is not None else p.group(4)))
        steps.append((nsmap[prefix], name, tuple(sorted(keys))))
        pos = m.end()
    return steps


def assert_error_path(err: RPCError, expected: str):
    """Compare error-path with *expected* (written with vrrp:/rbk:/dhcps:
    prefixes), resolving the reply's own prefix declarations."""
    pe = err.xml.find(f"{{{BASE_NS}}}error-path")
    assert pe is not None and pe.text, f"no error-path: {etree.tostring(err.xml).decode()}"
    got = canonical_path(pe.text, {k: v for k, v in pe.nsmap.items() if k})
    want = canonical_path(expected, NS)
    assert got == want, f"error-path {pe.text.strip()!r}, expected {expected!r}"


def yang_revision(module: str) -> str | None:
    """Newest revision date in yang/<module>.yang (None if not there)."""
    for p in sorted(YANG_DIR.glob(f"{module}*.yang")):
        text = p.read_text()
        if re.search(rf"\bmodule\s+{re.escape(module)}\b", text):
            revs = re.findall(r"\brevision\s+\"?(\d{4}-\d{2}-\d{2})", text)
            return max(revs) if revs else None
    return None


def unique() -> str:
    return uuid.uuid4().hex[:8]
