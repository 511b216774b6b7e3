"""VRRP runtime, black box: real hotleased processes (and keepalived) in
network namespaces joined by a bridge, configured over NETCONF, observed on
the wire with tshark.  Select with ``-m vrrp``.

Intervals are short (100 ms) where the behaviour allows, to keep CI fast.
"""

from __future__ import annotations

import re
import shutil
import time
from datetime import datetime

import pytest

from conftest import NS, config, group, vrrp
from vrrplab import Keepalived, Lab, NsDaemon, wait_for

pytestmark = [
    pytest.mark.vrrp,
    pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed"),
]

VIP = "10.77.0.100"
VRID = 51


@pytest.fixture
def lab(tmp_path):
    lab = Lab(2, tmp_path)
    yield lab
    lab.close()


@pytest.fixture
def routers(lab, creds, tmp_path, request):
    made: list[NsDaemon] = []

    def make(i: int) -> NsDaemon:
        d = NsDaemon(lab.routers[i], tmp_path / f"r{i}", creds)
        made.append(d)
        d.start()
        return d

    yield make
    from conftest import _finish

    _finish(request, made)


def configure(d: NsDaemon, **leaves):
    """Commit one group (eth0, VRID 51, the VIP) with the given leaves."""
    m = d.connect()
    m.edit_config(target="candidate",
                  config=config(vrrp(group("eth0", VRID, vips=(VIP,), **leaves))))
    m.commit()
    return m


def state(m) -> dict:
    data = m.get(filter=("subtree", f'<vrrp xmlns="{NS["vrrp"]}"/>')).data_ele
    g = data.find(f"vrrp:vrrp/vrrp:group[vrrp:vrid='{VRID}']", NS)
    if g is None:
        return {}
    out = {}
    for c in g.iter():
        name = c.tag.split("}")[1]
        if len(c) == 0 and c.text:
            out[name] = c.text.strip()
    return out


def wait_state(m, want: str, timeout: float = 10) -> dict:
    return wait_for(lambda: (s := state(m)).get("state") == want and s, timeout,
                    what=f"state {want}")


def rfc_bound_ms(interval_ms: float, priority: int) -> float:
    """Master_Down_Interval: 3 × interval + (256 − priority) / 256 × interval."""
    return 3 * interval_ms + (256 - priority) * interval_ms / 256


def test_two_routers_elect_by_priority_vip_on_master_only_and_tshark_is_happy(lab, routers, tmp_path):
    cap = lab.capture(tmp_path / "elect.pcap")
    a, b = routers(0), routers(1)
    ma = configure(a, priority=200, advertise_interval=100)
    mb = configure(b, priority=100, advertise_interval=100)
    sa = wait_state(ma, "master")
    assert sa["master-address"] == lab.addr(0)
    # a backup knows its master once it heard an advertisement
    wait_for(lambda: (s := state(mb)).get("state") == "backup"
             and s.get("master-address") == lab.addr(0), 5, what="backup of the right master")
    wait_for(lambda: VIP in lab.addresses(0), 5, what="VIP on the master")
    time.sleep(0.5)
    assert VIP not in lab.addresses(1), "the backup must not hold the VIP"
    sa, sb = state(ma), state(mb)
    assert int(sa["adverts-sent"]) > 0 and int(sb["adverts-received"]) > 0
    assert sb["bad-packets"] == "0" and sa["master-transitions"] == "1"
    assert sa["last-change"]
    # tshark: every advertisement of ours is well formed
    rows = cap.fields("ip.src", "ip.ttl", "vrrp.version", "vrrp.checksum.status", "vrrp.prio",
                      "vrrp.ip_addr")
    ours = [r for r in rows if r[0] == lab.addr(0)]
    assert len(ours) >= 5, rows
    for src, ttl, version, status, prio, addr in ours:
        assert (ttl, version, prio, addr) == ("255", "3", "200", VIP)
        assert status == "1", f"tshark: checksum status {status} (1 = good)"
    # and the gratuitous ARP for the VIP went out
    arps = cap.fields("arp.src.proto_ipv4", "arp.dst.proto_ipv4", filter="arp")
    assert [VIP, VIP] in arps, arps


def takeover_gap(adverts, old: str, new: str) -> tuple[float, float, float]:
    """(old master's last advert, new master's first advert after it, gap ms)."""
    last_old = max(t for t, src, prio in adverts if src == old and prio > 0)
    first_new = min(t for t, src, prio in adverts if src == new and t > last_old)
    return last_old, first_new, (first_new - last_old) * 1000


def test_sigkill_of_the_master_hands_over_within_the_rfc_bound(lab, routers, tmp_path):
    a, b = routers(0), routers(1)
    ma = configure(a, priority=200, advertise_interval=100)
    mb = configure(b, priority=100, advertise_interval=100)
    wait_state(ma, "master")
    wait_state(mb, "backup")
    cap = lab.capture(tmp_path / "kill.pcap")
    time.sleep(0.5)
    a.kill()
    s = wait_state(mb, "master", timeout=5)
    assert s["master-address"] == lab.addr(1)
    wait_for(lambda: VIP in lab.addresses(1), 5, what="VIP on the new master")
    time.sleep(0.3)
    _, _, gap = takeover_gap(cap.adverts(), lab.addr(0), lab.addr(1))
    bound = rfc_bound_ms(100, 100)  # 360.9 ms
    assert bound - 2 <= gap <= bound + 30, f"takeover {gap:.1f} ms, RFC bound {bound:.1f} ms"


def test_sigterm_hands_over_after_skew_time_with_priority_zero(lab, routers, tmp_path):
    a, b = routers(0), routers(1)
    ma = configure(a, priority=200, advertise_interval=100)
    mb = configure(b, priority=100, advertise_interval=100)
    wait_state(ma, "master")
    wait_state(mb, "backup")
    wait_for(lambda: VIP in lab.addresses(0), 5, what="VIP on the master")
    cap = lab.capture(tmp_path / "term.pcap")
    time.sleep(0.3)
    assert a.term() == 0
    assert VIP not in lab.addresses(0), "a stopped master removes its VIP"
    s = wait_state(mb, "master", timeout=5)
    assert s["priority-zero-received"] == "1"
    adverts = cap.adverts()
    zero = [t for t, src, prio in adverts if src == lab.addr(0) and prio == 0]
    assert len(zero) == 1, adverts
    first_b = min(t for t, src, _ in adverts if src == lab.addr(1) and t > zero[0])
    gap = (first_b - zero[0]) * 1000
    skew = (256 - 100) * 100 / 256  # 60.9 ms
    assert skew - 2 <= gap <= skew + 30, f"takeover {gap:.1f} ms after priority 0, skew {skew:.1f} ms"


def test_preempt_delay_is_honoured(lab, routers, tmp_path):
    b = routers(1)
    mb = configure(b, priority=100, advertise_interval=100)
    wait_state(mb, "master")
    cap = lab.capture(tmp_path / "preempt.pcap")
    a = routers(0)
    ma = configure(a, priority=200, advertise_interval=100, preempt={"delay": 2})
    wait_for(lambda: state(ma).get("master-address") == lab.addr(1), 2,
             what="backup that heard the lower-priority master")
    s = state(ma)
    assert s["state"] == "backup"
    backup_since = datetime.fromisoformat(s["last-change"])
    s = wait_state(ma, "master", timeout=5)
    waited = (datetime.fromisoformat(s["last-change"]) - backup_since).total_seconds()
    # the delay runs from the first advertisement heard (≤ 1 interval after
    # startup); without it the preemption would come after
    # Master_Down_Interval (0.32 s)
    assert 2.0 <= waited <= 2.0 + 0.1 + 0.05, f"preempted {waited:.3f} s after startup, delay 2 s"
    wait_state(mb, "backup")
    time.sleep(0.3)
    adverts = cap.adverts()
    first_a = min(t for t, src, _ in adverts if src == lab.addr(0))
    late_b = [t for t, src, _ in adverts if src == lab.addr(1) and t > first_a + 0.05]
    assert not late_b, "the old master kept advertising after the preemption"
    wait_for(lambda: VIP in lab.addresses(0) and VIP not in lab.addresses(1), 5,
             what="VIP moved to the preempting router")


def test_priority_change_keeps_mastership_and_deleting_the_group_resigns(lab, routers, tmp_path):
    a, b = routers(0), routers(1)
    ma = configure(a, priority=200, advertise_interval=100)
    mb = configure(b, priority=100, advertise_interval=100)
    wait_state(ma, "master")
    wait_state(mb, "backup")
    cap = lab.capture(tmp_path / "change.pcap")
    time.sleep(0.3)
    ma.edit_config(target="candidate",
                   config=config(vrrp(group("eth0", VRID, vips=(VIP,), priority=150,
                                             advertise_interval=200))))
    ma.commit()
    time.sleep(0.8)
    sa, sb = state(ma), state(mb)
    assert sa["state"] == "master" and sa["master-transitions"] == "1", sa
    # a v3 backup learns the master's interval: no spurious takeover at
    # 3 × its own 100 ms
    assert sb["state"] == "backup" and sb["master-transitions"] == "0", sb
    ma.edit_config(target="candidate",
                   config=config(f'<vrrp xmlns="{NS["vrrp"]}" xmlns:nc="{NS["nc"]}" '
                                 f'nc:operation="remove"/>'))
    ma.commit()
    wait_state(mb, "master", timeout=3)
    wait_for(lambda: VIP not in lab.addresses(0), 3, what="VIP removed from the resigning master")
    time.sleep(0.2)
    rows = cap.fields("frame.time_epoch", "ip.src", "vrrp.prio", "vrrp.short_adver_int")
    ours = [(int(p), i) for _, src, p, i in rows if src == lab.addr(0)]
    prios = [p for p, _ in ours]
    assert prios[0] == 200 and prios[-1] == 0 and 150 in prios, prios
    assert prios == sorted(prios, reverse=True), prios
    assert ours[-2] == (150, "20"), "v3 interval in centiseconds"



COMPLAINTS = re.compile(
    r"checksum|interval|invalid|bogus|mismatch|wrong|error|not present|malformed|ttl|unknown",
    re.IGNORECASE)


@pytest.mark.skipif(shutil.which("keepalived") is None, reason="keepalived is not installed")
@pytest.mark.parametrize("version", ["v3", "v2"])
def test_keepalived_interop_in_both_roles(lab, routers, tmp_path, version):
    interval_ms = 100 if version == "v3" else 1000
    ka = Keepalived(lab, 1, tmp_path / "ka", version=int(version[1]), vrid=VRID,
                    priority=100, interval_s=interval_ms / 1000, vips=[VIP])
    try:
        a = routers(0)
        # 1. hotlease master, keepalived backup
        ma = configure(a, priority=200, advertise_interval=interval_ms, version=version)
        wait_state(ma, "master", timeout=10)
        wait_for(lambda: "Entering BACKUP STATE" in ka.text(), 10, what="keepalived backup")
        time.sleep(4 * interval_ms / 1000)
        log = ka.text()
        assert log.rstrip().splitlines()[-1:] and "MASTER" not in log.split("Entering BACKUP STATE")[-1], log
        # 2. hotlease lowers its priority: keepalived preempts, hotlease is backup
        ma.edit_config(target="candidate",
                       config=config(vrrp(group("eth0", VRID, vips=(VIP,), priority=50,
                                                 advertise_interval=interval_ms, version=version))))
        ma.commit()
        s = wait_state(ma, "backup", timeout=8 * interval_ms / 1000 + 2)
        assert s["master-address"] == lab.addr(1)
        time.sleep(3 * interval_ms / 1000)
        s = state(ma)
        assert s["state"] == "backup" and s["bad-packets"] == "0", s
        assert int(s["adverts-received"]) >= 2
        wait_for(lambda: VIP in lab.addresses(1) and VIP not in lab.addresses(0), 5,
                 what="VIP on keepalived only")
        # 3. keepalived stops (priority 0): hotlease takes over
        ka.stop()
        s = wait_state(ma, "master", timeout=3)
        assert s["priority-zero-received"] == "1"
        log = ka.text()
        assert "Entering MASTER STATE" in log
        complaints = [line for line in log.splitlines() if COMPLAINTS.search(line)]
        assert not complaints, "keepalived complained:\n" + "\n".join(complaints)
    finally:
        ka.stop()


def test_missing_capabilities_are_refused_with_the_group_named(daemon_factory):
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is not installed")
    d = daemon_factory(start=False, name="nocaps")
    d.vrrp = True
    d.write_config()
    d.cmd_prefix = ["setpriv", "--bounding-set=-net_raw,-net_admin", "--inh-caps=-all", "--"]
    d.start()
    m = d.connect()
    # an interface that does not exist: nothing could be sent even if the
    # check failed to refuse
    m.edit_config(target="candidate", config=config(vrrp(group("vrnone0", 7))))
    from conftest import RPCError, assert_rpc_error

    with pytest.raises(RPCError) as e:
        m.commit()
    err = assert_rpc_error(e, "operation-failed", app_tag="vrrp-not-permitted",
                           path="/vrrp:vrrp/vrrp:group[vrrp:interface='vrnone0'][vrrp:vrid='7']")
    assert "CAP_NET_RAW" in err.message and "vrnone0/7" in err.message
    assert d.alive()


def test_virtual_mac_moves_with_the_master_and_answers_arp(tmp_path, routers, creds, request):
    lab = Lab(3, tmp_path)  # r2: a plain host on the segment
    request.addfinalizer(lab.close)
    from conftest import _finish

    made = []

    def make(i):
        d = NsDaemon(lab.routers[i], tmp_path / f"v{i}", creds)
        made.append(d)
        d.start()
        return d

    request.addfinalizer(lambda: _finish(request, made))
    vmac = "00:00:5e:00:01:33"  # VRID 51
    cap = lab.capture(tmp_path / "vmac.pcap")
    a, b = make(0), make(1)
    ma = configure(a, priority=200, advertise_interval=100, use_virtual_mac="true")
    mb = configure(b, priority=100, advertise_interval=100, use_virtual_mac="true")
    wait_state(ma, "master")
    wait_state(mb, "backup")

    def vip_on(i):
        out = sh_out("ip", "-n", lab.routers[i], "-4", "-o", "addr", "show")
        return [line.split()[1] for line in out.splitlines() if f" {VIP}/" in line]

    wait_for(lambda: vip_on(0) == ["vm2.51"], 5, what="VIP on a's macvlan")
    assert vip_on(1) == []
    # a host on the segment resolves the VIP to the virtual MAC
    # (a datagram to the discard port makes it ARP for the VIP)
    sh_out("ip", "netns", "exec", lab.routers[2], "python3", "-c",
           "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)"
           f".sendto(b'x', ('{VIP}', 9))")
    neigh = wait_for(lambda: (n := sh_out("ip", "-n", lab.routers[2], "neigh", "show", VIP))
                     and "lladdr" in n and n, 3, what="neighbour entry of the VIP")
    assert vmac in neigh, neigh
    # the master fails over by SIGTERM: the backup takes the VIP and the MAC
    assert a.term() == 0
    wait_state(mb, "master", timeout=3)
    wait_for(lambda: vip_on(1) == ["vm2.51"], 5, what="VIP on b's macvlan")
    assert "vm2.51" not in sh_out("ip", "-n", lab.routers[0], "-o", "link", "show"), \
        "a stopped router removes its macvlan"
    time.sleep(0.3)
    rows = cap.fields("eth.src", "ip.src", "vrrp.prio")
    for src in (lab.addr(0), lab.addr(1)):
        macs = {mac for mac, ip, prio in rows if ip == src and prio != "0"}
        assert macs == {vmac}, f"adverts of {src} from {macs}"
    replies = cap.fields("eth.src", "arp.src.hw_mac",
                         filter=f"arp.opcode == 2 && arp.src.proto_ipv4 == {VIP}")
    assert replies and all(r == [vmac, vmac] for r in replies), replies
    garps = cap.fields("arp.src.hw_mac", filter=f"arp.opcode == 1 && arp.src.proto_ipv4 == {VIP}")
    assert [vmac] in garps, garps


def sh_out(*args: str) -> str:
    import subprocess

    return subprocess.run(list(args), check=True, capture_output=True, text=True,
                          timeout=20).stdout


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def craft(src: str, *, vrid=VRID, prio=50, ttl=255, version=3, pseudo=True, corrupt=False,
          interval=10, vips=(VIP,)) -> bytes:
    """A whole IPv4 VRRP packet, as another router would send it."""
    import ipaddress

    s = ipaddress.IPv4Address(src).packed
    d = ipaddress.IPv4Address("224.0.0.18").packed
    body = bytes([version << 4 | 1, vrid, prio, len(vips)])
    if version == 3:
        body += interval.to_bytes(2, "big") + b"\0\0"
    else:
        body += bytes([0, interval]) + b"\0\0"
    body += b"".join(ipaddress.IPv4Address(v).packed for v in vips)
    if version == 2:
        body += b"\0" * 8
    ph = s + d + bytes([0, 112]) + len(body).to_bytes(2, "big") if (pseudo and version == 3) else b""
    c = _csum(ph + body) ^ (1 if corrupt else 0)
    body = body[:6] + c.to_bytes(2, "big") + body[8:]
    hdr = bytes([0x45, 0xC0]) + (20 + len(body)).to_bytes(2, "big") + b"\0\0\0\0" + \
        bytes([ttl, 112]) + b"\0\0" + s + d
    return hdr + body


def test_bad_adverts_are_dropped_and_counted_and_both_checksum_forms_accepted(lab, routers):
    import socket as pysocket

    from vrrplab import in_netns

    a = routers(0)
    ma = configure(a, priority=200, advertise_interval=100)
    wait_state(ma, "master")

    def raw():
        s = pysocket.socket(pysocket.AF_INET, pysocket.SOCK_RAW, 112)
        s.setsockopt(pysocket.IPPROTO_IP, pysocket.IP_HDRINCL, 1)
        s.setsockopt(pysocket.SOL_SOCKET, pysocket.SO_BINDTODEVICE, b"eth0")
        return s

    sock = in_netns(lab.routers[1], raw)
    peer = lab.addr(1)
    sent = {
        "ttl": craft(peer, ttl=64),
        "checksum": craft(peer, corrupt=True),
        "version": craft(peer, version=2, interval=1),
        "vrid": craft(peer, vrid=99),
        "pseudo": craft(peer, pseudo=True),
        "plain": craft(peer, pseudo=False),
        "addresses": craft(peer, vips=("10.77.0.99",)),
    }
    try:
        for pkt in sent.values():
            sock.sendto(pkt, ("224.0.0.18", 0))
    finally:
        sock.close()
    want = {
        "ttl-errors": "1", "checksum-errors": "1", "version-errors": "1",
        "bad-packets": "3", "adverts-received": "3", "address-list-errors": "1",
    }
    s = wait_for(lambda: (s := state(ma)) and all(s.get(k) == v for k, v in want.items()) and s,
                 5, what=f"counters {want}")
    assert s["state"] == "master", "lower-priority adverts do not move a master"
    data = ma.get(filter=("subtree", f'<vrrp xmlns="{NS["vrrp"]}"><statistics/></vrrp>')).data_ele
    assert data.findtext("vrrp:vrrp/vrrp:statistics/vrrp:vrid-errors", namespaces=NS) == "1"


def test_interface_down_stops_the_group_and_up_restarts_it(lab, routers, tmp_path):
    from vrrplab import sh

    a, b = routers(0), routers(1)
    ma = configure(a, priority=200, advertise_interval=100)
    mb = configure(b, priority=100, advertise_interval=100)
    wait_state(ma, "master")
    wait_state(mb, "backup")
    sh("ip", "-n", lab.routers[0], "link", "set", "eth0", "down")
    wait_state(ma, "initialize", timeout=3)
    wait_state(mb, "master", timeout=3)
    assert VIP not in lab.addresses(0)
    sh("ip", "-n", lab.routers[0], "link", "set", "eth0", "up")
    # back as backup, then it preempts the lower-priority master
    s = wait_state(ma, "master", timeout=5)
    assert s["master-transitions"] == "2"
    wait_state(mb, "backup", timeout=3)
    wait_for(lambda: VIP in lab.addresses(0) and VIP not in lab.addresses(1), 5,
             what="VIP back on a only")


def test_restart_after_a_crash_removes_stale_vips_and_is_no_owner(lab, routers, tmp_path):
    a, b = routers(0), routers(1)
    ma = configure(a, priority=200, advertise_interval=100)
    ma.copy_config(source="running", target="startup")
    mb = configure(b, priority=100, advertise_interval=100)
    wait_state(ma, "master")
    wait_state(mb, "backup")
    wait_for(lambda: VIP in lab.addresses(0), 5, what="VIP on a")
    a.kill()
    wait_state(mb, "master", timeout=3)
    assert VIP in lab.addresses(0), "a crash leaves its VIP behind"
    cap = lab.capture(tmp_path / "restart.pcap")
    a.start()
    ma = a.connect()
    # its own leftover VIP must not make it the address owner (priority 255)
    wait_for(lambda: VIP not in lab.addresses(0), 3, what="stale VIP removed")
    wait_state(ma, "master", timeout=5)
    wait_state(mb, "backup", timeout=3)
    time.sleep(0.3)
    prios = {prio for _, src, prio in cap.adverts() if src == lab.addr(0)}
    assert prios == {200}, prios


def test_address_owner_advertises_255_at_once_and_keeps_its_address(lab, routers, tmp_path):
    cap = lab.capture(tmp_path / "owner.pcap")
    b = routers(1)
    mb = configure(b, priority=100, advertise_interval=100)
    wait_state(mb, "master")
    a = routers(0)
    owned = lab.addr(0)  # a's own interface address is the group's VIP
    m = a.connect()
    m.edit_config(target="candidate",
                  config=config(vrrp(group("eth0", VRID, vips=(owned,), advertise_interval=100))))
    m.commit()
    # no Master_Down_Interval for the owner: master at startup
    s = wait_state(m, "master", timeout=2)
    assert s["master-transitions"] == "1"
    wait_state(mb, "backup", timeout=2)
    time.sleep(0.5)
    assert a.term() == 0
    assert owned in lab.addresses(0), "the owner's own address is never removed"
    time.sleep(0.3)
    prios = [prio for _, src, prio in cap.adverts() if src == owned]
    assert prios and set(prios[:-1]) == {255} and prios[-1] == 0, prios
