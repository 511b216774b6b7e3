"""Remote backup service, black box: two hotleased in two network namespaces
joined by a veth pair, each configured over NETCONF with a
remote-backup-service (peer and source swapped, same port), observed through
the service's state in <get>.  Runs with the namespaced tests (``-m vrrp``):
it needs root and iproute2.

    hbXXXXa: eth0 10.79.0.1/24 ──veth── hbXXXXb: eth0 10.79.0.2/24

Certificates of the mutual TLS variant are made here with ``cryptography``:
a CA, and one certificate per router with an IP subjectAltName of its
source address and no extendedKeyUsage.
"""

from __future__ import annotations

import datetime
import os
import shutil
import time
import uuid
from pathlib import Path

import pytest
from lxml import etree

from conftest import NS, RBK_NS, _finish, config
from vrrplab import NsDaemon, sh, wait_for

pytestmark = [
    pytest.mark.vrrp,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                       reason="needs root and iproute2 (network namespaces)"),
]

ADDR = ("10.79.0.1", "10.79.0.2")
PORT = 7070


class Pair:
    """Two namespaces joined by a veth pair; always removed by close()."""

    def __init__(self):
        tag = f"hb{os.getpid() % 100000}{uuid.uuid4().hex[:4]}"
        self.ns = (f"{tag}a", f"{tag}b")
        try:
            for ns in self.ns:
                sh("ip", "netns", "add", ns)
            sh("ip", "-n", self.ns[0], "link", "add", "eth0", "type", "veth",
               "peer", "name", "eth0", "netns", self.ns[1])
            for ns, addr in zip(self.ns, ADDR):
                sh("ip", "-n", ns, "link", "set", "lo", "up")
                sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
                sh("ip", "-n", ns, "link", "set", "eth0", "up")
        except BaseException:
            self.close()
            raise

    def close(self):
        import signal

        for ns in self.ns:
            for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            sh("ip", "netns", "del", ns, check=False)


@pytest.fixture
def routers(creds, tmp_path, request):
    """Two running daemons (A, B), one per namespace."""
    pair = Pair()
    made: list[NsDaemon] = []
    try:
        for i, ns in enumerate(pair.ns):
            d = NsDaemon(ns, tmp_path / f"r{i}", creds)
            made.append(d)
            d.start()
        yield made
    finally:
        try:
            _finish(request, made)
        finally:
            pair.close()


def service(i: int, name="rbs1", policy: str | None = None, op: str = "") -> str:
    """Router i's service: source its own address, peer the other's."""
    attrs = f' nc:operation="{op}"' if op else ""
    if op == "delete":
        return f'<remote-backup-service xmlns="{RBK_NS}"{attrs}><name>{name}</name></remote-backup-service>'
    pol = f"<ssl-policy>{policy}</ssl-policy>" if policy else ""
    return (
        f'<remote-backup-service xmlns="{RBK_NS}"{attrs}><name>{name}</name>{pol}'
        f"<peer><address>{ADDR[1 - i]}</address><source>{ADDR[i]}</source><port>{PORT}</port></peer>"
        "<keepalive-interval>200</keepalive-interval><dead-time>1000</dead-time>"
        "</remote-backup-service>"
    )


def ssl_policy(name: str, cert: Path, key: Path, ca: Path) -> str:
    return (
        f'<ssl-policy xmlns="{RBK_NS}"><name>{name}</name><certificate>{cert}</certificate>'
        f"<private-key>{key}</private-key><trusted-ca>{ca}</trusted-ca></ssl-policy>"
    )


def commit(m, *parts: str):
    m.edit_config(target="candidate", config=config(*parts))
    m.commit()


def rbs_state(m, name="rbs1") -> dict:
    """{leaf: text} of the service's state; {} when the service is absent."""
    data = m.get(filter=("subtree", f'<remote-backup-service xmlns="{RBK_NS}"/>')).data_ele
    st = data.find(f"rbk:remote-backup-service[rbk:name='{name}']/rbk:state", NS)
    if st is None:
        return {}
    return {etree.QName(c).localname: (c.text or "").strip() for c in st}


def wait_connected(m, timeout: float = 10) -> dict:
    return wait_for(lambda: (s := rbs_state(m)).get("connection") == "connected" and s,
                    timeout, step=0.1, what="connection connected")


def test_two_routers_connect_go_down_with_a_reason_and_reconnect(routers):
    a, b = routers
    ma, mb = a.connect(), b.connect()
    commit(ma, service(0))
    commit(mb, service(1))
    sa, sb = wait_connected(ma), wait_connected(mb)
    for s, i in ((sa, 0), (sb, 1)):
        assert s["peer-address"] == ADDR[1 - i] and s["source-address"] == ADDR[i], s
        assert s["port"] == str(PORT) and s["tls"] == "false", s
        assert s["since"] and s["last-up"] and s["sessions-up"] == "1", s
        assert "peer-certificate-subject" not in s, s
    # keepalives every 200 ms: a round-trip time, and frames both ways
    s = wait_for(lambda: (s := rbs_state(ma)).get("round-trip-time") and s, 5,
                 what="round-trip-time")
    assert int(s["frames-sent"]) > 0 and int(s["frames-received"]) > 0, s

    # deleted on A: B shows the session down with A's reason
    commit(ma, service(0, op="delete"))
    assert rbs_state(ma) == {}
    sb = wait_for(lambda: (s := rbs_state(mb)).get("connection") != "connected"
                  and s.get("last-down-reason") and s, 10, what="B down with a reason")
    assert "Shutdown" in sb["last-down-reason"], sb
    assert sb["last-down"], sb

    # re-added on A: connected again
    commit(ma, service(0))
    wait_connected(ma)
    wait_for(lambda: (s := rbs_state(mb)).get("connection") == "connected"
             and s.get("sessions-up") == "2" and s, 10, what="B connected again")

    # A stops (SIGTERM): it closes the session with its reason and exits 0
    down_before = rbs_state(mb)["last-down"]
    assert a.stop() == 0, a.stderr()
    sb = wait_for(lambda: (s := rbs_state(mb)).get("connection") != "connected"
                  and s.get("last-down") != down_before and s, 10, what="B down after A stopped")
    assert "Shutdown" in sb["last-down-reason"], sb


# ------------------------------------------------------------------ TLS


def _name(cn: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hotlease test"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(d: Path, cn: str):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn)).issuer_name(_name(cn))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = d / f"{cn}.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key, path


def make_router_cert(d: Path, cn: str, ip: str, ca):
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    ca_cert, ca_key, _ = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn)).issuer_name(ca_cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    crt, kpath = d / f"{cn}.crt", d / f"{cn}.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    kpath.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
    return crt, kpath


def test_mutual_tls_up_and_a_wrong_ca_refused(routers, tmp_path):
    a, b = routers
    d = tmp_path / "tls"
    d.mkdir()
    ca = make_ca(d, "lab-ca")
    other_ca = make_ca(d, "other-ca")
    certs = [make_router_cert(d, name, ip, ca) for name, ip in (("rtr-a", ADDR[0]), ("rtr-b", ADDR[1]))]
    ma, mb = a.connect(), b.connect()
    for m, i in ((ma, 0), (mb, 1)):
        crt, key = certs[i]
        commit(m, ssl_policy("tls", crt, key, ca[2]), service(i, policy="tls"))
    sa, sb = wait_connected(ma), wait_connected(mb)
    assert sa["tls"] == "true" and sb["tls"] == "true", (sa, sb)
    assert "CN=rtr-b" in sa["peer-certificate-subject"], sa
    assert "CN=rtr-a" in sb["peer-certificate-subject"], sb

    # B now trusts another CA only: A's certificate is refused, no session
    crt, key = certs[1]
    commit(mb, ssl_policy("tls", crt, key, other_ca[2]))
    sb = wait_for(lambda: (s := rbs_state(mb)).get("connection") != "connected"
                  and "certificate" in s.get("last-failure-reason", "").lower() and s,
                  10, what="B refusing A's certificate")
    assert sb["last-failure-reason"].startswith("tls"), sb
    sa = wait_for(lambda: (s := rbs_state(ma)).get("connection") != "connected"
                  and s.get("last-failure-reason") and s, 10, what="A not connected")
    # and it stays so (several reconnection attempts)
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        assert rbs_state(ma).get("connection") != "connected"
        assert rbs_state(mb).get("connection") != "connected"
        time.sleep(0.2)
    assert "peer-certificate-subject" not in rbs_state(ma)
