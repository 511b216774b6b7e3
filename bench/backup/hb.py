"""NETCONF side of the hot-backup benchmark (bench/backup/run.sh).

Runs inside a router's namespace (`ip netns exec ... python hb.py CMD`),
against the hotleased listening on 127.0.0.1:8830 there, with the lab's
credentials (examples/configure.py applies the seed's steps 1-4 first).

  widen          pool p1 of the seed (a /24, 191 addresses) grows to
                 10.0.0.0/14 with two more sections (261,822 addresses in all:
                 while the channel is down a router allocates from its own
                 half, which must hold the 100,000 leases of the fill)
                 so that perfdhcp's clients and 100,000 leases fit; one
                 edit-config (merge) + commit, both routers get the same
                 change, so the profile's pool fingerprints still match
  unbind         remove pool p1's remote-backup-profile binding ("hotleased
                 alone": same pools, no profile)
  lease-time N   pool p1's lease time to N s (the seed's 60 s makes every
                 lease of a long run expire during it), then running saved
                 to startup (a router restarted on its storage comes back
                 with the same pools, so the fingerprints still match)
  clock          this router's clock minus ours (s): the login-time the
                 daemon gives this session (ietf-netconf-monitoring),
                 read right after the login (a clock fault's check)
  leases         the lease table from <get>: one "ip mac origin state expires"
                 line a lease
  count          the number of leases in <get>
  state          the remote-backup service and profile state, one JSON line
  raw            the same state as <get> returns it (XML)
  wait-sync      poll the service and profile state until the profile is
                 synchronized (or --timeout s); print one JSON line with the
                 last state and the wall-clock time it was first seen
"""
import argparse
import json
import sys
import time

from ncclient import manager
from ncclient.transport import session as nc_session

NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
DHCP = "urn:hotlease:yang:dhcp-server"
RBK = "urn:hotlease:yang:remote-backup"

# ncclient's session thread waits up to TICK (0.1 s) before it sends a queued
# request; polling for a sub-second figure needs a shorter wait.
nc_session.TICK = 0.002

# the sections added to the seed's pool p1 (its own 10.1.1.10-200 stays)
WIDE_SECTIONS = [("10.0.1.0", "10.1.0.255"), ("10.1.2.0", "10.3.255.254")]
WIDE_MASK = "255.252.0.0"


def connect(port, timeout=120):
    m = manager.connect(host="127.0.0.1", port=port, username="admin", password="lab",
                        hostkey_verify=False, allow_agent=False, look_for_keys=False,
                        timeout=timeout)
    m.timeout = timeout  # the rpc replies' (connect's `timeout` is the SSH connection's)
    return m


def edit_commit(m, body):
    with m.locked("candidate"):
        m.edit_config(target="candidate", config=f'<config xmlns="{NC}">{body}</config>')
        m.commit()


def widen(m):
    sections = "".join(f"<section><start>{s}</start><end>{e}</end></section>" for s, e in WIDE_SECTIONS)
    edit_commit(m, f"""
<dhcp-server xmlns="{DHCP}"><ip-pool><name>p1</name>
  <mask>{WIDE_MASK}</mask>{sections}
</ip-pool></dhcp-server>""")
    print(f"  pool p1: mask {WIDE_MASK}, sections + {WIDE_SECTIONS}: committed")


def unbind(m):
    edit_commit(m, f"""
<dhcp-server xmlns="{DHCP}" xmlns:nc="{NC}"><ip-pool><name>p1</name>
  <remote-backup-profile nc:operation="delete"/>
</ip-pool></dhcp-server>""")
    print("  pool p1: remote-backup-profile binding removed (no hot backup): committed")


def lease_time(m, secs):
    edit_commit(m, f"""
<dhcp-server xmlns="{DHCP}"><ip-pool><name>p1</name>
  <lease-time>{secs}</lease-time>
</ip-pool></dhcp-server>""")
    m.copy_config(source="running", target="startup")
    print(f"  pool p1: lease-time {secs} s: committed, running saved to startup")


def clock_offset(m):
    t0 = time.time()
    ns = {"m": "urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"}
    data = m.get(filter=("subtree", f'<netconf-state xmlns="{ns["m"]}"><sessions/></netconf-state>')).data_ele
    for s in data.iterfind("m:netconf-state/m:sessions/m:session", ns):
        if s.findtext("m:session-id", namespaces=ns) == str(m.session_id):
            login = s.findtext("m:login-time", namespaces=ns)
            from datetime import datetime
            return datetime.fromisoformat(login.replace("Z", "+00:00")).timestamp() - t0
    raise RuntimeError("no session of ours in netconf-state/sessions")


def lease_table(m):
    ns = {"d": DHCP}
    data = m.get(filter=("subtree", f'<dhcp-server xmlns="{DHCP}"><lease/></dhcp-server>')).data_ele
    for lease in data.iterfind("d:dhcp-server/d:lease", ns):
        yield (lease.findtext("d:ip-address", namespaces=ns),
               (lease.findtext("d:mac-address", namespaces=ns) or "").lower(),
               lease.findtext("d:origin", namespaces=ns),
               lease.findtext("d:state", namespaces=ns),
               lease.findtext("d:expires", namespaces=ns))


# one <get> for both lists: a whole <filter> element (ncclient's
# ("subtree", text) form takes a single root)
STATE_FILTER = (f'<filter xmlns="{NC}" type="subtree">'
                f'<remote-backup-service xmlns="{RBK}"><state/></remote-backup-service>'
                f'<remote-backup-profile xmlns="{RBK}"><state/></remote-backup-profile></filter>')


def backup_state(m):
    ns = {"r": RBK}
    data = m.get(filter=STATE_FILTER).data_ele
    out = {}
    s = data.find("r:remote-backup-service/r:state", ns)
    if s is not None:
        t = lambda n: s.findtext(n, namespaces=ns)  # noqa: E731
        out.update(connection=t("r:connection"), last_up=t("r:last-up"),
                   sessions_up=t("r:sessions-up"),
                   last_down=t("r:last-down"), last_down_reason=t("r:last-down-reason"),
                   leases_sent=t("r:leases-sent"), leases_received=t("r:leases-received"),
                   batch_time=t("r:last-batch-backup/r:time"),
                   batch_result=t("r:last-batch-backup/r:result"),
                   batch_leases_sent=t("r:last-batch-backup/r:leases-sent"))
    p = data.find("r:remote-backup-profile/r:state", ns)
    if p is not None:
        t = lambda n: p.findtext(n, namespaces=ns)  # noqa: E731
        out.update(role=t("r:role"), peer_role=t("r:peer-role"), peer_check=t("r:peer-check"),
                   sync_state=t("r:sync-state"), leases_in_sync=t("r:leases-in-sync"))
    return out


def wait_sync(m, timeout, interval):
    """Poll until synchronized. `first_up` is the first last-up seen (the
    session that started the sync; a later last-up means it was replaced),
    `max_poll` the slowest <get> (the resolution of `seen`)."""
    deadline = time.time() + timeout
    polls = 0
    st = {}
    first_up = first_sessions = None
    max_poll = 0.0
    while time.time() < deadline:
        t0 = time.time()
        st = backup_state(m)
        polls += 1
        max_poll = max(max_poll, time.time() - t0)
        if first_up is None and st.get("last_up"):
            first_up, first_sessions = st["last_up"], st.get("sessions_up")
        if st.get("sync_state") == "synchronized":
            st.update(seen=t0, seen_end=time.time(), polls=polls, max_poll=max_poll, first_up=first_up,
                      first_sessions_up=first_sessions)
            return st
        time.sleep(interval)
    st.update(seen=None, polls=polls, max_poll=max_poll, first_up=first_up,
              first_sessions_up=first_sessions)
    return st


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["widen", "unbind", "lease-time", "clock", "leases", "count", "state", "raw", "wait-sync"])
    ap.add_argument("value", nargs="?", help="lease-time: seconds")
    ap.add_argument("--port", type=int, default=8830)
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--interval", type=float, default=0.005)
    ap.add_argument("--rpc-timeout", type=float, default=120,
                    help="seconds to wait for a reply (a whole lease table of the debug build takes minutes)")
    args = ap.parse_args()
    with connect(args.port, args.rpc_timeout) as m:
        if args.cmd == "widen":
            widen(m)
        elif args.cmd == "unbind":
            unbind(m)
        elif args.cmd == "clock":
            print(f"{clock_offset(m):.0f}")
        elif args.cmd == "lease-time":
            lease_time(m, int(args.value))
        elif args.cmd == "leases":
            for row in lease_table(m):
                print(*row)
        elif args.cmd == "count":
            print(sum(1 for _ in lease_table(m)))
        elif args.cmd == "raw":
            print(m.get(filter=STATE_FILTER).data_xml)
        elif args.cmd == "state":
            print(json.dumps(backup_state(m)))
        elif args.cmd == "wait-sync":
            print(json.dumps(wait_sync(m, args.timeout, args.interval)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
