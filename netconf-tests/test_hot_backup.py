"""Hot backup end to end (issue 10), black box: two hotleased routers and
real DHCP clients (busybox udhcpc, ISC dhclient) on one bridge, a direct
link between the routers for the remote-backup-service, both routers
configured over NETCONF with the seed's steps 1-4 (``examples/configure.py``,
the lab's own procedure), the clients' view checked on the wire with a
capture in each client's namespace.  The lab is ``hblab.HbLab``; it needs
root, iproute2, nftables, udhcpc, dhclient and tshark (``netconf-tests/run.sh``
installs them) and runs with the namespaced tests (``-m vrrp``).

Short timers keep it quick: VRRP adverts every 200 ms (Master_Down_Interval
of B 722 ms), 60 s leases (the module's minimum) with T1 after 8 s; busybox
udhcpc renews at lease/2 whatever T1 says, so at "T1" it gets SIGUSR1, which
sends the same unicast renewal now.
"""

from __future__ import annotations

import os
import shutil
import signal
import time

import pytest
from ncclient.operations.rpc import RPCError

from conftest import RBK_NS
from hblab import (ACK, ADVERT_MS, DECLINE, DISCOVER, HB, LEASE, NAK, REQUEST, VIP, Dhclient,
                   Router, T1, Udhcpc, dhcp_packets, instant, rfc_bound_s, running_pair,
                   show)
from test_backup_service import commit, make_ca, make_router_cert, ssl_policy
from test_vrrp import takeover_gap
from vrrplab import Capture, wait_for

pytestmark = [
    pytest.mark.vrrp,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(
        not all(shutil.which(c) for c in ("ip", "nft", "udhcpc", "dhclient", "tshark", "dumpcap")),
        reason="iproute2, nftables, udhcpc, dhclient and tshark are needed "
               "(netconf-tests/run.sh installs them)",
    ),
]

# Everything a client may log that is not a quiet renewal.
TROUBLE = ("nak", "deconfig", "leasefail", "expire", "fail", "rebind", "bound", "reboot")


@pytest.fixture
def pair(creds, tmp_path, request):
    """The lab with both routers' daemons running, not configured yet."""
    with running_pair(creds, tmp_path, request) as p:
        yield p


def up(a: Router, b: Router, tls=(None, None), synced: bool = True):
    """Seed steps 1-4 on A, then on B; wait until A is master, B backup,
    the channel connected, the profile accepted (and synchronized)."""
    a.configure(tls[0])
    a.wait(lambda: a.vrrp().get("state") == "master", 10, "VRRP master")
    b.configure(tls[1])
    b.wait(lambda: (s := b.vrrp()).get("state") == "backup"
           and s.get("master-address") == a.addr, 10, "VRRP backup of A")
    for r in (a, b):
        r.wait(lambda r=r: r.rbs().get("connection") == "connected", 10, "channel connected")
        r.wait(lambda r=r: r.rbp().get("peer-check") == "accepted", 10, "profile accepted")
        if synced:
            r.wait(lambda r=r: r.rbp().get("sync-state") == "synchronized", 10, "synchronized")
    assert a.rbp()["role"] == "master" and b.rbp()["role"] == "backup"


def mirrored(a: Router, b: Router, ev: dict, mac: str) -> dict:
    """The client's lease on the master A (origin local) and, within a
    second of the client's bind, on B (origin peer, same expiry); B's."""
    ip = ev["ip"]
    mine = a.wait_lease(ip, 2, state="bound", origin="local")
    assert mine["mac-address"] == mac, mine
    left = float(ev["t"]) + 1.0 - time.time()
    theirs = b.wait_lease(ip, max(left, 0.05), state="bound", origin="peer")
    assert theirs["mac-address"] == mac, theirs
    assert theirs["expires"] == mine["expires"], (mine, theirs)
    assert theirs["valid-lifetime"] == mine["valid-lifetime"] == str(LEASE), (mine, theirs)
    return theirs


def bound(r: Router) -> dict:
    """{ip: mac} of the router's bound leases."""
    return {ip: lease["mac-address"] for ip, lease in r.leases().items()
            if lease["state"] == "bound"}


def quiet_renewal(c, ip: str, since: float) -> dict:
    """The client's first event after *since*, at its T1: a renewal of
    *ip* from the VIP."""
    c.renewal_due()
    ev = c.wait_event(("renew",) + TROUBLE, T1 + 5, since=since)
    assert (ev["event"], ev["ip"], ev["serverid"]) == ("renew", ip, VIP), (c.name, c.events())
    return ev


def test_switchover_keeps_every_client_and_the_master_returns_only_in_sync(pair):
    lab, a, b = pair
    up(a, b)
    caps = [lab.client_capture(0), lab.client_capture(1)]
    clients = [Udhcpc(lab, 0, lab.tmp / "c0.log").start(),
               Dhclient(lab, 1, lab.tmp / "c1.log").start()]

    # 1. each client's lease is on B within a second, origin peer, same expiry
    ips = []
    for c in clients:
        ev = c.wait_bound()
        assert ev["serverid"] == VIP and ev["lease"] == str(LEASE), (c.name, ev)
        mirrored(a, b, ev, c.mac)
        ips.append(ev["ip"])
    assert len(set(ips)) == 2, ips
    s = a.wait(lambda: (s := a.rbs()) and int(s.get("leases-acknowledged") or 0) >= 2 and s,
               5, "leases acknowledged")
    assert int(s["leases-sent"]) >= 2 and s["unsent-updates"] == "0", s
    assert int(b.rbs()["leases-received"]) >= 2
    assert a.rbp()["backup-mode"] == "hot", a.rbp()

    # 2. A fails (kill -9, links down): B owns the VIP within the VRRP bound
    vcap = Capture(lab, lab.tmp / "vrrp.pcap", prog="dumpcap")
    lab.procs.append(vcap.proc)
    time.sleep(3 * ADVERT_MS / 1000)
    t_crash = time.time()
    a.crash()
    b.wait(lambda: b.holds_vip(), 5, "VIP after A's crash", step=0.02)
    # a few adverts of B's before the capture stops, so that it holds them
    b.wait(lambda: (s := b.vrrp()).get("state") == "master" and int(s["adverts-sent"]) >= 3,
           5, "master, three adverts sent")
    _, _, gap = takeover_gap(vcap.adverts(), a.addr, b.addr)
    assert gap <= rfc_bound_s() * 1000 + 50, f"takeover {gap:.0f} ms, bound {rfc_bound_s() * 1000:.0f} ms"

    # 3. each client renews at T1, unicast to the VIP: B ACKs the same
    #    address with the same server identifier
    for c, ip in zip(clients, ips):
        quiet_renewal(c, ip, t_crash)
        lease = b.wait_lease(ip, 2, state="bound")
        assert lease["mac-address"] == c.mac, lease
    renewed_on_b = {ip: instant(b.leases()[ip]["expires"]) for ip in ips}

    # 4. a new client gets an address no other client holds
    new = Udhcpc(lab, 2, lab.tmp / "c2.log").once()
    assert new["ip"] not in ips and new["serverid"] == VIP, new
    b.wait_lease(new["ip"], 2, state="bound", origin="local")
    assert bound(b) == {ips[0]: lab.mac(0), ips[1]: lab.mac(1), new["ip"]: lab.mac(2)}, b.leases()

    # 5. A comes back (priority 200 > 100) with its backup link still down:
    #    it kept its own leases, and it stays backup with preemption held
    #    (the daemon first: it removes the virtual IP its crash left on eth0)
    a.start()
    lab.link(0, "eth0", True)
    held = a.wait(lambda: (s := a.vrrp()).get("state") == "backup"
                  and s.get("preempt-hold") == "true" and s, 10, "backup, preemption held")
    assert held.get("preempt-hold-reason"), held
    assert {ips[0], ips[1]} <= set(bound(a)), a.leases()
    time.sleep(2)  # far past A's Master_Down_Interval; preempt delay 0
    s = a.vrrp()
    assert s["state"] == "backup" and s["preempt-hold"] == "true", s
    assert b.vrrp()["state"] == "master" and b.holds_vip() and not a.holds_vip()
    assert new["ip"] not in a.leases()

    # 6. the link back: A takes over only once it holds every lease B
    #    granted meanwhile (read after A reports master: it must be there)
    lab.link(0, "hb", True)

    def master_with_leases():
        s = a.vrrp()
        return s.get("state") == "master" and (s, a.leases())

    s, leases = a.wait(master_with_leases, 15, "master again", step=0.05)
    assert new["ip"] in leases, f"A took over without the lease B granted: {leases}"
    assert leases[new["ip"]]["mac-address"] == lab.mac(2) and leases[new["ip"]]["state"] == "bound"
    for ip in ips:
        assert instant(leases[ip]["expires"]) >= renewed_on_b[ip], (ip, leases[ip], renewed_on_b)
    assert s.get("preempt-hold") != "true", s
    a.wait(lambda: a.holds_vip(), 5, "VIP back on A")
    b.wait(lambda: b.vrrp().get("state") == "backup", 5, "B backup again")

    # 7. no client notices: the next renewals are ACKed by A, same address
    t_back = time.time()
    for c, ip in zip(clients, ips):
        quiet_renewal(c, ip, t_back)
        a.wait_lease(ip, 2, state="bound", origin="local")

    # on the wire, as each client saw it: after its first ACK only unicast
    # renewals to the VIP and ACKs of the same address from the VIP; no
    # DISCOVER, no NAK, no DECLINE
    for c, ip, cap in zip(clients, ips, caps):
        pkts = dhcp_packets(cap, c.mac)
        first = next(p for p in pkts if p["type"] == ACK and p["yiaddr"] == ip)
        later = [p for p in pkts if p["t"] > first["t"]]
        bad = [p for p in later if p["type"] in (DISCOVER, NAK, DECLINE)]
        assert not bad, f"{c.name}:\n{show(pkts)}"
        for phase, t0, t1 in (("after the crash", t_crash, t_back), ("after A's return", t_back, 1e12)):
            reqs = [p for p in later if t0 < p["t"] < t1 and p["type"] == REQUEST]
            acks = [p for p in later if t0 < p["t"] < t1 and p["type"] == ACK]
            assert reqs and all(p["dst"] == VIP and p["ciaddr"] == ip for p in reqs), \
                f"{c.name} {phase}:\n{show(pkts)}"
            assert acks and all(p["yiaddr"] == ip and p["sid"] == VIP for p in acks), \
                f"{c.name} {phase}:\n{show(pkts)}"


def test_batch_backup_rpc_over_mutual_tls_and_a_wrong_ca_refused(pair):
    lab, a, b = pair
    d = lab.tmp / "tls"
    d.mkdir()
    ca, other = make_ca(d, "lab-ca"), make_ca(d, "other-ca")
    certs = [make_router_cert(d, f"rtr-{n}", ip, ca) for n, ip in zip("ab", HB)]
    tls = [{"name": "tls", "certificate": crt, "private-key": key, "trusted-ca": ca[2]}
           for crt, key in certs]
    up(a, b, tls=tls)
    sa, sb = a.rbs(), b.rbs()
    assert sa["tls"] == "true" and "CN=rtr-b" in sa["peer-certificate-subject"], sa
    assert sb["tls"] == "true" and "CN=rtr-a" in sb["peer-certificate-subject"], sb

    # two clients through A: their leases cross the TLS channel
    got = [Udhcpc(lab, i, lab.tmp / f"c{i}.log").once() for i in (0, 1)]
    for i, ev in enumerate(got):
        mirrored(a, b, ev, lab.mac(i))

    # batch-backup service-type dhcp-server now: every lease, counted
    before = a.rbs().get("last-batch-backup/time")
    assert a.batch_backup() == 2
    s = a.wait(lambda: (s := a.rbs()).get("last-batch-backup/result") == "success"
               and s.get("last-batch-backup/time") != before and s, 5, "batch backup success")
    assert s["last-batch-backup/leases-sent"] == "2", s
    # B had both already (real time): unchanged, none refused
    assert s.get("last-batch-backup/leases-unchanged") == "2", s
    assert s.get("last-batch-backup/leases-refused") == "0", s
    assert a.rbp()["leases-in-sync"] == "2", a.rbp()
    assert {ev["ip"] for ev in got} <= set(bound(b))

    # B trusts another CA only: A's certificate is refused, the profile
    # is not synchronized, and the rpc says why it cannot run
    commit(b.m, ssl_policy("tls", certs[1][0], certs[1][1], other[2]))
    b.wait(lambda: (s := b.rbs()).get("connection") != "connected"
           and "certificate" in s.get("last-failure-reason", "").lower(), 10, "A's certificate refused")
    a.wait(lambda: a.rbs().get("connection") != "connected", 10, "not connected")
    for r in (a, b):
        r.wait(lambda r=r: r.rbp().get("sync-state") == "not-synchronized", 5, "not synchronized")
    with pytest.raises(RPCError) as e:
        a.batch_backup()
    assert "connected" in str(e.value), e.value

    # A serves alone; the partner has not seen the new lease
    assert a.rbp()["backup-mode"] == "alone", a.rbp()
    ev = Udhcpc(lab, 2, lab.tmp / "c2.log").once()
    a.wait_lease(ev["ip"], 2, state="bound", origin="local")
    assert ev["ip"] not in b.leases()

    # the right CA again: up, and B's batch backup brings it the lease
    commit(b.m, ssl_policy("tls", certs[1][0], certs[1][1], ca[2]))
    b.wait_lease(ev["ip"], 10, state="bound", origin="peer")
    for r in (a, b):
        r.wait(lambda r=r: r.rbp().get("sync-state") == "synchronized", 5, "synchronized again")
    assert b.rbs().get("last-batch-received/result") == "success", b.rbs()
    a.wait(lambda: (s := a.rbp()).get("backup-mode") == "hot" and s.get("unsent-updates") == "0",
           5, "hot backup again, nothing unsent")


def test_a_pool_mismatch_is_reported_and_stops_the_profile_sync(pair):
    lab, a, b = pair
    up(a, b)
    ev = Udhcpc(lab, 0, lab.tmp / "c0.log").once()
    mirrored(a, b, ev, lab.mac(0))

    # B's pool differs (lease time): both routers say so, the profile stops
    b.configure(lease_time=LEASE * 2)
    for r in (a, b):
        s = r.wait(lambda r=r: (s := r.rbp()).get("peer-check") == "fingerprint-mismatch" and s,
                   10, "fingerprint-mismatch")
        assert "pools bound to this profile differ" in s["peer-check-reason"], s
        assert s.get("sync-state") != "synchronized", s
    received = int(b.rbs().get("leases-received") or 0)
    assert a.rbp()["backup-mode"] == "alone", a.rbp()

    # A, master, serves alone; nothing of it reaches B
    ev2 = Udhcpc(lab, 1, lab.tmp / "c1.log").once()
    a.wait_lease(ev2["ip"], 2, state="bound", origin="local")
    time.sleep(1)
    assert ev2["ip"] not in b.leases(), b.leases()
    assert int(b.rbs().get("leases-received") or 0) == received

    # the same pools again: accepted, synchronized, the lease on B
    b.configure(lease_time=LEASE)
    for r in (a, b):
        r.wait(lambda r=r: r.rbp().get("peer-check") == "accepted", 10, "accepted again")
        r.wait(lambda r=r: r.rbp().get("sync-state") == "synchronized", 10, "synchronized again")
    b.wait_lease(ev2["ip"], 5, state="bound", origin="peer")


def req_to_ack(pkts: list[dict]) -> float:
    """Seconds from the client's first REQUEST to the ACK of its first bind
    (a held ACK answers the first REQUEST; the client may ask again while
    it waits, and the retransmission is answered with it)."""
    ack = next(p for p in pkts if p["type"] == ACK)
    req = [p for p in pkts if p["type"] == REQUEST and p["t"] <= ack["t"]][0]
    return ack["t"] - req["t"]


def test_a_silent_partner_holds_the_ack_for_the_ack_timeout_then_the_master_serves_alone(pair):
    lab, a, b = pair
    up(a, b)
    # a long dead time: B frozen for a while keeps its session
    for r in (a, b):
        commit(r.m, f'<remote-backup-service xmlns="{RBK_NS}"><name>rbs1</name>'
                    "<dead-time>10000</dead-time></remote-backup-service>")
    for r in (a, b):
        r.wait(lambda r=r: r.rbs().get("connection") == "connected"
               and r.rbp().get("sync-state") == "synchronized", 10, "synchronized")
    cap = lab.client_capture(1)
    ev0 = Udhcpc(lab, 0, lab.tmp / "c0.log").once()
    mirrored(a, b, ev0, lab.mac(0))

    # B freezes: the session stays up but B acknowledges nothing; A's ACK
    # waits for it ack-timeout (300 ms), then A serves alone and counts
    os.kill(b.d.proc.pid, signal.SIGSTOP)
    try:
        ev1 = Udhcpc(lab, 1, lab.tmp / "c1.log").once()
        a.wait_lease(ev1["ip"], 2, state="bound", origin="local")
        s = a.rbp()
        assert s["backup-mode"] == "degraded" and int(s["unsent-updates"]) >= 1, s
        assert int(a.rbs()["unsent-updates"]) >= 1, a.rbs()
    finally:
        os.kill(b.d.proc.pid, signal.SIGCONT)
    # B wakes up: it catches up, A goes back to hot backup
    b.wait_lease(ev1["ip"], 5, state="bound", origin="peer")
    a.wait(lambda: (s := a.rbp()).get("backup-mode") == "hot" and s.get("unsent-updates") == "0"
           and a.rbs().get("unsent-updates") == "0", 5, "hot backup, nothing unsent")
    assert a.rbs()["connection"] == "connected"
    # on the wire: the frozen partner held client 1's ACK for the ack-timeout
    pkts = dhcp_packets(cap, lab.mac(1))
    held = req_to_ack(pkts)
    assert held >= 0.29, f"ACK {held * 1000:.0f} ms after the REQUEST, ack-timeout 300 ms:\n{show(pkts)}"


@pytest.mark.parametrize("reach", ["clients-reach-both", "clients-reach-one"])
def test_split_brain_heals_with_no_address_on_two_clients(pair, reach):
    lab, a, b = pair
    up(a, b)
    # A and B lose each other: the backup link down, and nothing between
    # them on the bridge (VRRP adverts included); the clients reach both,
    # or each only its side (client 0 A, client 1 B)
    lab.link(0, "hb", False)
    cuts = [("p0", "p1")] + ([("q0", "p1"), ("q1", "p0")] if reach == "clients-reach-one" else [])
    lab.cut_bridge(*cuts)
    b.wait(lambda: b.vrrp().get("state") == "master", 5, "master (split brain)")
    assert a.vrrp()["state"] == "master"
    for r in (a, b):
        r.wait(lambda r=r: r.rbs().get("connection") != "connected", 10, "channel down")
    # each hands out only its half (A has the lower source address)
    for r, half in ((a, "even"), (b, "odd")):
        r.wait(lambda r=r, half=half: r.rbp().get("split-brain-half") == half, 5, f"split: {half} half")

    # two new clients while both routers are master
    clients = [Udhcpc(lab, 0, lab.tmp / "c0.log").start(),
               Dhclient(lab, 1, lab.tmp / "c1.log").start()]
    during = [c.wait_bound()["ip"] for c in clients]
    assert during[0] != during[1], f"split brain gave {during[0]} to both clients"

    # heal: one master (A), the channel up, the tables reconciled
    lab.heal_bridge()
    lab.link(0, "hb", True)
    b.wait(lambda: b.vrrp().get("state") == "backup", 10, "backup again")
    for r in (a, b):
        r.wait(lambda r=r: r.rbp().get("sync-state") == "synchronized", 10, "synchronized")
    a.wait(lambda: "split-brain-half" not in a.rbp(), 5, "the split over")

    # every client renews (or, NAKed as the loser of a conflict, binds
    # anew) after the heal; then no address is on two clients, and both
    # routers bind each client's address to that client
    t_heal = time.time()
    for c in clients:
        c.renewal_due()
        c.wait_event(("renew", "bound", "reboot"), T1 + 10, since=t_heal)
    held = wait_for(lambda: all(x := [c.address() for c in clients]) and x, 5,
                    what="both clients configured")
    assert len(set(held)) == 2, f"address on two clients: {held}"
    for r in (a, b):
        r.wait(lambda r=r: all(bound(r).get(ip) == c.mac for ip, c in zip(held, clients)),
               10, f"{held} bound to their clients")
    a.wait(lambda: bound(a) == bound(b), 5, "the same bindings as B")


def test_restart_of_either_router_keeps_its_leases_and_resyncs(pair):
    lab, a, b = pair
    up(a, b)
    ev0 = Udhcpc(lab, 0, lab.tmp / "c0.log").once()
    mirrored(a, b, ev0, lab.mac(0))

    # B (backup) restarts with its backup link down: its leases come from
    # its own disk
    b.stop()
    lab.link(1, "hb", False)
    b.start()
    b.wait_lease(ev0["ip"], 5, state="bound", origin="peer")
    ev1 = Udhcpc(lab, 1, lab.tmp / "c1.log").once()  # A serves alone meanwhile
    a.wait_lease(ev1["ip"], 2, state="bound", origin="local")
    assert ev1["ip"] not in b.leases()
    # the link back: B resyncs
    lab.link(1, "hb", True)
    b.wait_lease(ev1["ip"], 10, state="bound", origin="peer")
    for r in (a, b):
        r.wait(lambda r=r: r.rbp().get("sync-state") == "synchronized", 10, "synchronized")

    # A (master) restarts: B serves meanwhile; A comes back with its own
    # leases (backup link down), then resyncs and takes over again
    a.stop()
    b.wait(lambda: b.vrrp().get("state") == "master", 5, "master while A is down")
    lab.link(0, "hb", False)
    a.start()
    a.wait(lambda: {ev0["ip"], ev1["ip"]} <= set(bound(a)), 5, "own leases after restart")
    a.wait(lambda: (s := a.vrrp()).get("state") == "backup" and s.get("preempt-hold") == "true",
           10, "backup, preemption held")
    ev2 = Udhcpc(lab, 2, lab.tmp / "c2.log").once()
    b.wait_lease(ev2["ip"], 2, state="bound", origin="local")
    assert ev2["ip"] not in a.leases()
    s = a.vrrp()
    assert s["state"] == "backup" and s["preempt-hold"] == "true", s
    lab.link(0, "hb", True)
    a.wait_lease(ev2["ip"], 10, state="bound", origin="peer")
    a.wait(lambda: a.vrrp().get("state") == "master", 10, "master again")
    want = {ev0["ip"]: lab.mac(0), ev1["ip"]: lab.mac(1), ev2["ip"]: lab.mac(2)}
    a.wait(lambda: bound(a) == bound(b) == want, 5, f"both routers binding {want}")
