"""lease-event notifications (issue 12): off by default; with the
dhcp-server's `lease-notifications` on, every lease a real client (udhcpc)
takes and releases is a notification, which NACM filters per user like
any other (RFC 8341 §3.4.6): carol, who may not read lease entries, is
also kept from lease-events by a notification rule, and receives none."""

from __future__ import annotations

import datetime
import os
import subprocess

from conftest import DHCPS_NS, PASSWORD, _finish, config
from test_dhcp import UDHCPC_SCRIPT, NsDaemon, Topo, commit, events, set_mac, wait_for, write_exec
from test_dhcp import dhcp as dhcp_server
from test_dhcp import pool as dhcp_pool
from test_nacm import NACM_NS, RULES, counters, users
from test_notifications import content, name_of, no_notification, take

N = {"d": DHCPS_NS}

LEASE_EVENT_RULE = f"""<nacm xmlns="{NACM_NS}">
  <rule-list><name>no-lease-events</name><group>no-leases</group>
    <rule><name>no-lease-events</name><module-name>hotlease-dhcp-server</module-name>
      <notification-name>lease-event</notification-name>
      <access-operations>read</access-operations><action>deny</action></rule>
  </rule-list>
</nacm>"""



def take_and_release(topo, mac: str, log):
    """udhcpc with hardware address *mac* takes a lease, then releases it
    (-R, on SIGTERM)."""
    set_mac(topo, topo.C, "lan", mac)
    script = write_exec(topo.tmp / "udhcpc.sh", UDHCPC_SCRIPT)
    p = topo.spawn(topo.C, "udhcpc", "-i", "lan", "-f", "-R", "-t", "4", "-T", "1",
                   "-s", str(script), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={**os.environ, "DHLOG": str(log)})
    try:
        assert wait_for(lambda: any(e["event"] == "bound" for e in events(log)), 15), events(log)
    finally:
        p.terminate()
        p.wait(10)


def server(on: bool | None) -> str:
    x = dhcp_server(dhcp_pool("lan", "10.77.0.1", sections=[("10.77.0.10", "10.77.0.20")]))
    if on is None:
        return x
    flag = "true" if on else "false"
    return x.replace(f'xmlns="{DHCPS_NS}">', f'xmlns="{DHCPS_NS}"><lease-notifications>{flag}</lease-notifications>', 1)


def leaves(n) -> dict:
    return {c.tag.split("}")[1]: c.text for c in content(n)}


def lease_event(m, what: str):
    return leaves(take(m, lambda n: name_of(n) == "lease-event" and leaves(n)["event"] == what,
                       skip=("netconf-session-start", "netconf-session-end", "netconf-config-change",
                             "lease-event")))


def test_lease_events_off_by_default_then_sent_and_filtered_by_nacm(tmp_path, creds, request):
    topo = Topo(tmp_path)
    made = []
    try:
        d = NsDaemon(topo.S, tmp_path / "d", creds, users=users(creds))
        made.append(d)
        d.start()
        admin = d.connect()
        commit(admin, server(None))
        admin.edit_config(target="candidate", config=config(RULES, LEASE_EVENT_RULE))
        admin.commit()
        admin.create_subscription()
        # off by default: a lease taken and released makes no notification
        take_and_release(topo, "02:00:00:00:0a:01", topo.tmp / "a.log")
        no_notification(admin, wait=2.0, skip=("netconf-session-start", "netconf-session-end",
                                               "netconf-config-change"))
        commit(admin, server(True))
        alice = d.connect(user="alice", password=PASSWORD)
        carol = d.connect(user="carol", password=PASSWORD)
        alice.create_subscription()
        carol.create_subscription()
        before = counters(admin)["denied-notifications"]
        mac = "02:00:00:00:0a:02"
        take_and_release(topo, mac, topo.tmp / "b.log")
        for m in (admin, alice):
            bound = lease_event(m, "bound")
            ip = bound["ip-address"]
            assert ip.startswith("10.77.0.") and bound["pool"] == "lan", bound
            assert bound["mac-address"] == mac and bound["origin"] == "local", bound
            left = datetime.datetime.fromisoformat(bound["expires"]) - datetime.datetime.now(datetime.timezone.utc)
            assert 3600 < left.total_seconds() <= 86400, bound
            released = lease_event(m, "released")
            assert released["ip-address"] == ip and released["mac-address"] == mac, released
        # carol may not read lease-event: none reaches her, each is counted
        no_notification(carol, wait=1.0, skip=("netconf-session-start", "netconf-session-end",
                                               "netconf-config-change"))
        assert counters(admin)["denied-notifications"] >= before + 2
        # and off again: nothing more
        commit(admin, server(False))
        take_and_release(topo, "02:00:00:00:0a:03", topo.tmp / "c.log")
        no_notification(alice, wait=2.0, skip=("netconf-session-start", "netconf-session-end",
                                               "netconf-config-change"))
    finally:
        _finish(request, made)
        topo.close()
