"""Configure one lab router over NETCONF with the seed procedure.

Each step of ../shared/seeds (VRRP group, remote-backup service, profile,
DHCP pool bound to the profile) is its own edit-config on the candidate
followed by a commit, as an operator following the procedure would do.
"""
import argparse

from ncclient import manager

NC = "urn:ietf:params:xml:ns:netconf:base:1.0"

ROUTERS = {
    "a": dict(addr="10.1.1.2", prio=120, delay=1200, peer="10.0.0.2", src="10.0.0.1"),
    "b": dict(addr="10.1.1.3", prio=100, delay=0, peer="10.0.0.1", src="10.0.0.2"),
}


def steps(r):
    yield "1. VRRP group on eth1 (vrrp vrid 1 virtual-ip 10.1.1.1)", f"""
<vrrp xmlns="urn:hotlease:yang:vrrp"><group>
  <interface>eth1</interface><vrid>1</vrid><virtual-ip>10.1.1.1</virtual-ip>
  <priority>{r['prio']}</priority>
  <preempt><enabled>true</enabled><delay>{r['delay']}</delay></preempt>
  <advertise-interval>1000</advertise-interval>
</group></vrrp>"""
    yield "2. remote-backup-service rbs1 (peer/source/port)", f"""
<remote-backup-service xmlns="urn:hotlease:yang:remote-backup">
  <name>rbs1</name>
  <peer><address>{r['peer']}</address><source>{r['src']}</source><port>7000</port></peer>
</remote-backup-service>"""
    yield "3. remote-backup-profile rbp1 (peer-backup hot, vrrp-id 1 interface eth1, backup-id 1)", """
<remote-backup-profile xmlns="urn:hotlease:yang:remote-backup">
  <name>rbp1</name><peer-backup>hot</peer-backup>
  <vrrp><vrid>1</vrid><interface>eth1</interface></vrrp>
  <backup-id>1</backup-id><remote-backup-service>rbs1</remote-backup-service>
</remote-backup-profile>"""
    yield "4. service-type dhcp-server, ip pool p1 bound to rbp1, server identifier = VIP", """
<remote-backup-profile xmlns="urn:hotlease:yang:remote-backup">
  <name>rbp1</name><service-type>dhcp-server</service-type>
</remote-backup-profile>
<dhcp-server xmlns="urn:hotlease:yang:dhcp-server">
  <interface><name>eth1</name></interface>
  <ip-pool>
    <name>p1</name><gateway>10.1.1.1</gateway><mask>255.255.255.0</mask>
    <section><start>10.1.1.10</start><end>10.1.1.200</end></section>
    <dns-server>10.1.1.1</dns-server><lease-time>3600</lease-time>
    <server-identifier>10.1.1.1</server-identifier>
    <remote-backup-profile>rbp1</remote-backup-profile>
  </ip-pool>
</dhcp-server>"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--router", choices=sorted(ROUTERS), required=True)
    ap.add_argument("--port", type=int, default=8830)
    ap.add_argument("--vrrp-status", action="store_true",
                    help="only print the VRRP group's and the remote-backup-service's "
                         "state (from <get>)")
    args = ap.parse_args()
    r = ROUTERS[args.router]
    if args.vrrp_status:
        return vrrp_status(args)
    with manager.connect(host="127.0.0.1", port=args.port, username="admin",
                         password="lab", hostkey_verify=False,
                         allow_agent=False, look_for_keys=False) as m:
        print(f"router {args.router}: NETCONF session {m.session_id}")
        with m.locked("candidate"):
            for title, body in steps(r):
                m.edit_config(target="candidate", config=f'<config xmlns="{NC}">{body}</config>')
                m.commit()
                print(f"  {title}: committed")
        m.copy_config(source="running", target="startup")
        print("  running saved to startup")
        running = m.get_config("running").data_xml
        print(f"  running config: {len(running)} bytes, "
              f"{running.count('<ip-pool>')} pool(s), {running.count('<group>')} VRRP group(s)")


def vrrp_status(args):
    ns = {"v": "urn:hotlease:yang:vrrp"}
    with manager.connect(host="127.0.0.1", port=args.port, username="admin",
                         password="lab", hostkey_verify=False,
                         allow_agent=False, look_for_keys=False) as m:
        data = m.get(filter=("subtree", '<vrrp xmlns="urn:hotlease:yang:vrrp"/>')).data_ele
        for g in data.iterfind("v:vrrp/v:group", ns):
            t = lambda n: g.findtext(n, default="-", namespaces=ns)  # noqa: E731
            print(f"router {args.router}: vrrp {t('v:interface')}/{t('v:vrid')}: "
                  f"{t('v:state')}, master {t('v:master-address')}, "
                  f"adverts sent {t('v:statistics/v:adverts-sent')} "
                  f"received {t('v:statistics/v:adverts-received')}")
        rns = {"r": "urn:hotlease:yang:remote-backup"}
        data = m.get(filter=("subtree",
                             '<remote-backup-service xmlns="urn:hotlease:yang:remote-backup"/>')).data_ele
        for s in data.iterfind("r:remote-backup-service", rns):
            t = lambda n: s.findtext(n, default="-", namespaces=rns)  # noqa: E731
            print(f"router {args.router}: remote-backup-service {t('r:name')}: "
                  f"{t('r:state/r:connection')} to {t('r:state/r:peer-address')} "
                  f"port {t('r:state/r:port')}, tls {t('r:state/r:tls')}, "
                  f"round trip {t('r:state/r:round-trip-time')} us")
        data = m.get(filter=("subtree",
                             '<remote-backup-profile xmlns="urn:hotlease:yang:remote-backup"/>')).data_ele
        for p in data.iterfind("r:remote-backup-profile", rns):
            t = lambda n: p.findtext(n, default="-", namespaces=rns)  # noqa: E731
            print(f"router {args.router}: remote-backup-profile {t('r:name')}: "
                  f"role {t('r:state/r:role')}, peer {t('r:state/r:peer-role')}, "
                  f"pools {t('r:state/r:peer-check')} (fingerprint {t('r:state/r:fingerprint')})")


if __name__ == "__main__":
    main()
