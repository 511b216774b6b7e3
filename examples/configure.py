"""Configure one hot-backup router over NETCONF with the seed procedure, and
show what it does.

Each step of ../shared/seeds (VRRP group, remote-backup service, profile,
DHCP pool bound to the profile) is its own edit-config on the candidate
followed by a commit, as an operator following the procedure would do.
``steps()`` and ``apply()`` are also what the black-box tests
(netconf-tests/test_hot_backup.py) configure their routers with, so the lab
and the tests run the same procedure.

    configure.py --router a              apply steps 1-4, save running to startup
    configure.py --router a --status     VRRP group, service, profile (from <get>)
    configure.py --router a --leases     the lease table
    configure.py --router a --batch-backup   'batch-backup service-type dhcp-server now'
    configure.py --router a --wait vrrp.state=master rbp.sync-state=synchronized
"""
from __future__ import annotations

import argparse

NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
VRRP_NS = "urn:hotlease:yang:vrrp"
RBK_NS = "urn:hotlease:yang:remote-backup"
DHCPS_NS = "urn:hotlease:yang:dhcp-server"

# The lab's segment: the clients and both routers' eth1 on one bridge, the
# VRRP virtual IP as gateway and DHCP server identifier.  The shortest lease
# the module allows (60 s) makes renewals come every 30 s (T1); renew_time
# (option 58) sets T1 apart.
SITE = dict(interface="eth1", vrid=1, vip="10.1.1.1", mask="255.255.255.0",
            pool=("10.1.1.10", "10.1.1.200"), lease_time=60, renew_time=None,
            advertise_interval=1000, port=7000)

# A has the higher priority.  The seed advises a preempt delay above 600 s
# on the master so that it does not take over before it holds the backup's
# leases; hotleased holds preemption until the returning router's batch
# backup is complete (the group's preempt-hold), so no delay is needed.
ROUTERS = {
    "a": dict(prio=120, delay=0, peer="10.0.0.2", src="10.0.0.1"),
    "b": dict(prio=100, delay=0, peer="10.0.0.1", src="10.0.0.2"),
}


def steps(r: dict, site: dict = SITE, tls: dict | None = None):
    """(title, XML) of the seed's steps 1-4 for router *r* on *site*.

    *tls* (name, certificate, private-key, trusted-ca) binds an ssl-policy
    to the service (the seed's optional 'bind ssl-policy')."""
    s = site
    yield f"1. VRRP group on {s['interface']} (vrrp vrid {s['vrid']} virtual-ip {s['vip']})", f"""
<vrrp xmlns="{VRRP_NS}"><group>
  <interface>{s['interface']}</interface><vrid>{s['vrid']}</vrid><virtual-ip>{s['vip']}</virtual-ip>
  <priority>{r['prio']}</priority>
  <preempt><enabled>true</enabled><delay>{r['delay']}</delay></preempt>
  <advertise-interval>{s['advertise_interval']}</advertise-interval>
</group></vrrp>"""
    policy, bind = "", ""
    if tls:
        policy = (f'<ssl-policy xmlns="{RBK_NS}"><name>{tls["name"]}</name>'
                  f'<certificate>{tls["certificate"]}</certificate>'
                  f'<private-key>{tls["private-key"]}</private-key>'
                  f'<trusted-ca>{tls["trusted-ca"]}</trusted-ca></ssl-policy>')
        bind = f"<ssl-policy>{tls['name']}</ssl-policy>"
    yield "2. remote-backup-service rbs1 (" + ("bind ssl-policy, " if tls else "") + \
        "peer/source/port)", f"""{policy}
<remote-backup-service xmlns="{RBK_NS}">
  <name>rbs1</name>{bind}
  <peer><address>{r['peer']}</address><source>{r['src']}</source><port>{s['port']}</port></peer>
</remote-backup-service>"""
    yield (f"3. remote-backup-profile rbp1 (peer-backup hot, vrrp-id {s['vrid']} "
           f"interface {s['interface']}, backup-id 1)"), f"""
<remote-backup-profile xmlns="{RBK_NS}">
  <name>rbp1</name><peer-backup>hot</peer-backup>
  <vrrp><vrid>{s['vrid']}</vrid><interface>{s['interface']}</interface></vrrp>
  <backup-id>1</backup-id><remote-backup-service>rbs1</remote-backup-service>
</remote-backup-profile>"""
    renew = f"<renew-time>{s['renew_time']}</renew-time>" if s.get("renew_time") else ""
    yield "4. service-type dhcp-server, ip pool p1 bound to rbp1, server identifier = VIP", f"""
<remote-backup-profile xmlns="{RBK_NS}">
  <name>rbp1</name><service-type>dhcp-server</service-type>
</remote-backup-profile>
<dhcp-server xmlns="{DHCPS_NS}">
  <interface><name>{s['interface']}</name></interface>
  <ip-pool>
    <name>p1</name><gateway>{s['vip']}</gateway><mask>{s['mask']}</mask>
    <section><start>{s['pool'][0]}</start><end>{s['pool'][1]}</end></section>
    <dns-server>{s['vip']}</dns-server><lease-time>{s['lease_time']}</lease-time>{renew}
    <server-identifier>{s['vip']}</server-identifier>
    <remote-backup-profile>rbp1</remote-backup-profile>
  </ip-pool>
</dhcp-server>"""


def apply(m, r: dict, site: dict = SITE, tls: dict | None = None, say=print):
    """Run the steps on ncclient session *m*: one candidate edit + commit
    each, under the candidate lock; then save running to startup."""
    with m.locked("candidate"):
        for title, body in steps(r, site, tls):
            m.edit_config(target="candidate", config=f'<config xmlns="{NC}">{body}</config>')
            m.commit()
            say(f"  {title}: committed")
    m.copy_config(source="running", target="startup")
    say("  running saved to startup")


def batch_backup(m, service: str = "rbs1") -> int:
    """The seed's 'batch-backup service-type dhcp-server now'; returns
    leases-sent of the reply."""
    from lxml import etree

    rpc = (f'<batch-backup xmlns="{RBK_NS}"><service>{service}</service>'
           "<service-type>dhcp-server</service-type></batch-backup>")
    reply = m.dispatch(etree.fromstring(rpc))
    sent = etree.fromstring(reply.xml.encode()).findtext(f".//{{{RBK_NS}}}leases-sent")
    if sent is None:
        raise RuntimeError(f"batch-backup reply without leases-sent: {reply.xml}")
    return int(sent)


def leaves(el) -> dict:
    """{leaf: text} of an element's children, 'parent/leaf' one level down."""
    from lxml import etree

    out = {}
    if el is None:
        return out
    for c in el:
        name = etree.QName(c).localname
        if len(c):
            for cc in c:
                if not len(cc):
                    out[f"{name}/{etree.QName(cc).localname}"] = (cc.text or "").strip()
        else:
            out[name] = (c.text or "").strip()
    return out


def snapshot(m) -> dict:
    """{'vrrp': group leaves, 'rbs': service state, 'rbp': profile state}
    of the (first) VRRP group, service and profile, from one <get> each."""
    ns = {"v": VRRP_NS, "r": RBK_NS}
    data = m.get(filter=("subtree", f'<vrrp xmlns="{VRRP_NS}"/>')).data_ele
    out = {"vrrp": leaves(data.find("v:vrrp/v:group", ns))}
    for key, lst in (("rbs", "remote-backup-service"), ("rbp", "remote-backup-profile")):
        data = m.get(filter=("subtree", f'<{lst} xmlns="{RBK_NS}"/>')).data_ele
        out[key] = leaves(data.find(f"r:{lst}/r:state", ns))
    return out


def status(m, router: str):
    snap = snapshot(m)
    t = snap["vrrp"].get
    hold = f", preemption held: {t('preempt-hold-reason')}" if t("preempt-hold") == "true" else ""
    print(f"router {router}: vrrp {t('interface')}/{t('vrid')}: {t('state', '-')}, "
          f"priority {t('priority', '-')}, master {t('master-address', '-')}{hold}")
    t = snap["rbs"].get
    print(f"router {router}: remote-backup-service rbs1: "
          f"{t('connection', '-')} to {t('peer-address', '-')} port {t('port', '-')}, "
          f"tls {t('tls', '-')}, round trip {t('round-trip-time', '-')} us, "
          f"leases sent {t('leases-sent', '-')} received {t('leases-received', '-')} "
          f"acknowledged {t('leases-acknowledged', '-')}, unsent {t('unsent-updates', '-')}, "
          f"last batch backup {t('last-batch-backup/result', '-')} "
          f"({t('last-batch-backup/leases-sent', '-')} leases)")
    t = snap["rbp"].get
    print(f"router {router}: remote-backup-profile rbp1: "
          f"role {t('role', '-')}, peer {t('peer-role', '-')}, "
          f"pools {t('peer-check', '-')}, sync {t('sync-state', '-')}, "
          f"leases in sync {t('leases-in-sync', '-')}")


def wait(m, router: str, conditions: list[str], timeout: float):
    """Poll until every 'part.leaf=value' (part vrrp, rbs or rbp) holds."""
    import time

    want = []
    for c in conditions:
        key, _, value = c.partition("=")
        part, _, leaf = key.partition(".")
        want.append((part, leaf, value))
    deadline = time.monotonic() + timeout
    while True:
        snap = snapshot(m)
        if all(snap.get(p, {}).get(leaf) == v for p, leaf, v in want):
            return
        if time.monotonic() > deadline:
            now = ", ".join(f"{p}.{leaf}={snap.get(p, {}).get(leaf, '-')}" for p, leaf, _ in want)
            raise SystemExit(f"router {router}: waited {timeout:.0f} s for "
                             f"{' '.join(conditions)}; now {now}")
        time.sleep(0.05)


def lease_table(m, router: str):
    ns = {"d": DHCPS_NS}
    data = m.get(filter=("subtree", f'<dhcp-server xmlns="{DHCPS_NS}"><lease/></dhcp-server>')).data_ele
    rows = [leaves(lease) for lease in data.iterfind("d:dhcp-server/d:lease", ns)]
    if not rows:
        print(f"router {router}: no lease")
    for t in rows:
        print(f"router {router}: lease {t.get('ip-address')} {t.get('mac-address')} "
              f"{t.get('state')}, expires {t.get('expires')}, origin {t.get('origin')}")


def main():
    from ncclient import manager

    ap = argparse.ArgumentParser()
    ap.add_argument("--router", choices=sorted(ROUTERS), required=True)
    ap.add_argument("--port", type=int, default=8830)
    what = ap.add_mutually_exclusive_group()
    what.add_argument("--status", "--vrrp-status", action="store_true",
                      help="print the VRRP group's, the service's and the profile's state")
    what.add_argument("--leases", action="store_true", help="print the lease table")
    what.add_argument("--batch-backup", action="store_true",
                      help="batch-backup service-type dhcp-server now (rpc)")
    what.add_argument("--wait", nargs="+", metavar="PART.LEAF=VALUE",
                      help="wait until the state says so, e.g. vrrp.state=master "
                           "rbp.sync-state=synchronized (parts: vrrp, rbs, rbp)")
    ap.add_argument("--timeout", type=float, default=30)
    args = ap.parse_args()
    with manager.connect(host="127.0.0.1", port=args.port, username="admin",
                         password="lab", hostkey_verify=False,
                         allow_agent=False, look_for_keys=False) as m:
        if args.status:
            return status(m, args.router)
        if args.leases:
            return lease_table(m, args.router)
        if args.wait:
            return wait(m, args.router, args.wait, args.timeout)
        if args.batch_backup:
            n = batch_backup(m)
            print(f"router {args.router}: batch backup done, {n} lease(s) sent")
            return
        print(f"router {args.router}: NETCONF session {m.session_id}")
        apply(m, ROUTERS[args.router])


if __name__ == "__main__":
    main()
