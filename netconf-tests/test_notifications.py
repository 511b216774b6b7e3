"""NETCONF notifications: RFC 5277 subscriptions (filters, replay across a
restart, interleave) and the RFC 6470 base notifications, received with
ncclient's take_notification from a real daemon."""

import datetime
import time

import pytest
from lxml import etree
from ncclient.operations.rpc import RPCError

from conftest import BASE_NS, EOM, VRRP_NS, assert_rpc_error, config, group, vrrp

NCN = "urn:ietf:params:xml:ns:yang:ietf-netconf-notifications"
NOTIF = "urn:ietf:params:xml:ns:netconf:notification:1.0"
STREAMS = "urn:ietf:params:xml:ns:netmod:notification"
N = {"ncn": NCN, "n": NOTIF, "s": STREAMS, "vrrp": VRRP_NS}


def content(notif):
    """The notification's element (after eventTime)."""
    ele = notif.notification_ele
    for c in ele:
        if etree.QName(c).localname != "eventTime":
            return c
    raise AssertionError(notif.notification_xml)


def name_of(notif) -> str:
    return etree.QName(content(notif)).localname


def take(m, pred=lambda n: True, timeout=10.0, skip=("netconf-session-start", "netconf-session-end")):
    """The next notification that satisfies *pred* (others of the *skip*
    kinds are passed over; any other kind fails the test)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, "no matching notification"
        n = m.take_notification(block=True, timeout=left)
        assert n is not None, "no notification"
        if pred(n):
            return n
        assert name_of(n) in skip, n.notification_xml


def kind(name):
    return lambda n: name_of(n) == name


def no_notification(m, wait=1.0, skip=()):
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        n = m.take_notification(block=True, timeout=max(0.05, deadline - time.monotonic()))
        if n is not None and name_of(n) not in skip:
            raise AssertionError("unexpected " + n.notification_xml)


def now_utc():
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def test_capabilities_and_stream_list(daemon):
    m = daemon.connect()
    caps = set(m.server_capabilities)
    assert "urn:ietf:params:netconf:capability:notification:1.0" in caps
    assert "urn:ietf:params:netconf:capability:interleave:1.0" in caps
    data = m.get(filter=("subtree", f'<netconf xmlns="{STREAMS}"/>')).data_ele
    streams = data.findall("s:netconf/s:streams/s:stream", N)
    assert [s.findtext("s:name", namespaces=N) for s in streams] == ["NETCONF"]
    assert streams[0].findtext("s:replaySupport", namespaces=N) == "true"
    assert streams[0].findtext("s:replayLogCreationTime", namespaces=N)


def test_config_change_names_paths_operation_user_and_session(daemon):
    sub = daemon.connect()
    sub.create_subscription()
    m = daemon.connect()
    m.edit_config(target="candidate", config=config(vrrp(group(vrid=7, priority=50))))
    m.commit()
    n = take(sub, kind("netconf-config-change"))
    c = content(n)
    assert c.findtext("ncn:changed-by/ncn:username", namespaces=N) == "admin"
    assert c.findtext("ncn:changed-by/ncn:session-id", namespaces=N) == str(m.session_id)
    assert c.findtext("ncn:datastore", namespaces=N) == "running"
    edits = [
        (e.findtext("ncn:target", namespaces=N), e.findtext("ncn:operation", namespaces=N))
        for e in c.findall("ncn:edit", N)
    ]
    assert len(edits) == 1, edits
    target, op = edits[0]
    assert op == "create"
    # an instance-identifier whose prefixes are declared on the element
    t = c.find("ncn:edit/ncn:target", N)
    assert target.startswith("/"), target
    prefixes = {p: u for p, u in t.nsmap.items() if p}
    assert VRRP_NS in prefixes.values(), (target, t.nsmap)
    # a change of one leaf is a replace of that leaf; a deletion a delete
    m.edit_config(target="candidate", config=config(vrrp(group(vrid=7, priority=60))))
    m.commit()
    c = content(take(sub, kind("netconf-config-change")))
    ops = [(e.findtext("ncn:target", namespaces=N), e.findtext("ncn:operation", namespaces=N)) for e in c.findall("ncn:edit", N)]
    assert len(ops) == 1 and ops[0][1] == "replace" and ops[0][0].endswith("priority"), ops
    m.edit_config(
        target="candidate",
        config=config(vrrp(group(vrid=7, attrs=' nc:operation="delete"'))),
    )
    m.commit()
    c = content(take(sub, kind("netconf-config-change")))
    ops = [e.findtext("ncn:operation", namespaces=N) for e in c.findall("ncn:edit", N)]
    assert ops == ["delete"], etree.tostring(c)
    # a commit that changes nothing sends nothing
    m.commit()
    no_notification(sub, 0.5, skip=("netconf-session-start",))


def test_session_start_and_end_with_reasons(daemon):
    sub = daemon.connect()
    sub.create_subscription()
    m = daemon.connect()
    c = content(take(sub, kind("netconf-session-start"), skip=()))
    assert c.findtext("ncn:session-id", namespaces=N) == str(m.session_id)
    assert c.findtext("ncn:username", namespaces=N) == "admin"
    sid = m.session_id
    m.close_session()
    c = content(take(sub, kind("netconf-session-end"), skip=()))
    assert c.findtext("ncn:session-id", namespaces=N) == str(sid)
    assert c.findtext("ncn:termination-reason", namespaces=N) == "closed"
    victim = daemon.connect()
    take(sub, kind("netconf-session-start"), skip=())
    sub.kill_session(victim.session_id)
    c = content(take(sub, kind("netconf-session-end"), skip=()))
    assert c.findtext("ncn:session-id", namespaces=N) == str(victim.session_id)
    assert c.findtext("ncn:termination-reason", namespaces=N) == "killed"
    assert c.findtext("ncn:killed-by", namespaces=N) == str(sub.session_id)


def confirm_events(sub, count, changes=None):
    """The next *count* confirmed-commit events; the config changes seen
    on the way are appended to *changes*."""
    out = []
    while len(out) < count:
        n = take(sub)
        c = content(n)
        if name_of(n) == "netconf-session-start":
            continue
        if name_of(n) == "netconf-config-change":
            if changes is not None:
                changes.append(c)
            continue
        assert name_of(n) == "netconf-confirmed-commit", n.notification_xml
        out.append(
            (
                c.findtext("ncn:confirm-event", namespaces=N),
                c.findtext("ncn:timeout", namespaces=N),
                c.findtext("ncn:username", namespaces=N),
            )
        )
    return out


def test_confirmed_commit_start_extend_complete_cancel_timeout(daemon):
    sub = daemon.connect()
    sub.create_subscription()
    m = daemon.connect()
    m.edit_config(target="candidate", config=config(vrrp(group(vrid=3))))
    m.commit(confirmed=True, timeout="60")
    m.commit(confirmed=True, timeout="30")
    m.commit()
    assert confirm_events(sub, 3) == [
        ("start", "60", "admin"),
        ("extend", "30", "admin"),
        ("complete", None, "admin"),
    ]
    m.edit_config(target="candidate", config=config(vrrp(group(vrid=4))))
    m.commit(confirmed=True, timeout="60")
    m.cancel_commit()
    assert confirm_events(sub, 2) == [("start", "60", "admin"), ("cancel", None, "admin")]
    m.edit_config(target="candidate", config=config(vrrp(group(vrid=5))))
    m.commit(confirmed=True, timeout="1")
    # the timeout is the server's: no session, no user
    changes = []
    assert confirm_events(sub, 2, changes) == [("start", "1", "admin"), ("timeout", None, None)]
    # and the rollback is a config change made by the server
    assert len(changes) == 2
    c = changes[1]
    assert c.find("ncn:changed-by/ncn:server", N) is not None
    assert c.find("ncn:changed-by/ncn:username", N) is None
    assert [e.findtext("ncn:operation", namespaces=N) for e in c.findall("ncn:edit", N)] == ["delete"]


def test_subtree_and_xpath_filters(daemon):
    only_start = daemon.connect()
    only_start.create_subscription(filter=("subtree", f'<netconf-session-start xmlns="{NCN}"/>'))
    by_xpath = daemon.connect()
    by_xpath.create_subscription(
        filter=("xpath", ({"ncn": NCN}, "/ncn:netconf-config-change[ncn:edit/ncn:operation='create']"))
    )
    m = daemon.connect()
    m.edit_config(target="candidate", config=config(vrrp(group(vrid=9, priority=50))))
    m.commit()
    m.edit_config(target="candidate", config=config(vrrp(group(vrid=9, priority=77))))
    m.commit()
    m.close_session()
    for who in (by_xpath, m):
        c = content(take(only_start, skip=()))
        assert etree.QName(c).localname == "netconf-session-start"
        assert c.findtext("ncn:session-id", namespaces=N) == str(who.session_id)
    n = take(by_xpath, skip=())
    assert name_of(n) == "netconf-config-change"
    # neither the replace, nor the session end, nor anything else passes
    no_notification(only_start, 1.0)
    no_notification(by_xpath, 0.5)
    # a filter that is not XPath is refused at once
    bad = daemon.connect()
    with pytest.raises(RPCError) as e:
        bad.create_subscription(filter=("xpath", ({"ncn": NCN}, "/ncn:netconf-config-change[")))
    assert_rpc_error(e, "invalid-value")


def test_interleave_rpcs_with_notifications(daemon):
    sub = daemon.connect()
    sub.create_subscription()
    m = daemon.connect()
    for prio in (10, 20, 30):
        m.edit_config(target="candidate", config=config(vrrp(group(vrid=2, priority=prio))))
        m.commit()
        # the subscribed session still answers rpcs, between notifications
        got = sub.get_config("running").data_ele
        assert got.find(".//vrrp:priority", N).text == str(prio)
        take(sub, kind("netconf-config-change"))
    sub.edit_config(target="candidate", config=config(vrrp(group(vrid=2, priority=40))))
    sub.commit()
    c = content(take(sub, kind("netconf-config-change")))
    assert c.findtext("ncn:changed-by/ncn:session-id", namespaces=N) == str(sub.session_id)


def test_notifications_sent_are_counted_per_session_and_in_total(daemon):
    """RFC 6022 outNotifications: every notification a session sent (the
    replayed ones and replayComplete included), in its session entry and
    in the statistics."""
    MON = "urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"
    t0 = now_utc()
    m = daemon.connect()
    m.edit_config(target="candidate", config=config(vrrp(group(vrid=3, priority=10))))
    m.commit()
    sub = daemon.connect()
    sub.create_subscription(start_time=t0)
    for prio in (20, 30):
        m.edit_config(target="candidate", config=config(vrrp(group(vrid=3, priority=prio))))
        m.commit()
    sid = m.session_id
    m.close_session()
    received, names = 0, []
    while True:
        n = sub.take_notification(block=True, timeout=10)
        assert n is not None, names
        received += 1
        names.append(name_of(n))
        if name_of(n) == "netconf-session-end" and content(n).findtext("ncn:session-id", namespaces=N) == str(sid):
            break
    assert names.count("netconf-config-change") == 3 and "replayComplete" in names, names
    st = sub.get(filter=("subtree", f'<netconf-state xmlns="{MON}"><sessions/><statistics/></netconf-state>')).data_ele
    mine = [s for s in st.iterfind(f".//{{{MON}}}session") if s.findtext(f"{{{MON}}}session-id") == str(sub.session_id)]
    assert len(mine) == 1
    assert mine[0].findtext(f"{{{MON}}}out-notifications") == str(received), (names, etree.tostring(mine[0]))
    assert int(st.findtext(f".//{{{MON}}}statistics/{{{MON}}}out-notifications")) >= received


def test_subscription_errors(daemon):
    m = daemon.connect()
    with pytest.raises(RPCError) as e:
        m.create_subscription(stream_name="OTHER")
    assert_rpc_error(e, "invalid-value")
    future = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)).isoformat()
    with pytest.raises(RPCError) as e:
        m.create_subscription(start_time=future)
    assert_rpc_error(e, "bad-element")
    with pytest.raises(RPCError) as e:
        m.create_subscription(start_time="yesterday")
    assert_rpc_error(e, "invalid-value")
    m.create_subscription()
    with pytest.raises(RPCError) as e:
        m.create_subscription()
    assert_rpc_error(e, "in-use")


def test_replay_across_a_restart_with_start_and_stop_time(daemon):
    m = daemon.connect()
    m.edit_config(target="candidate", config=config(vrrp(group(vrid=10))))
    m.commit()
    time.sleep(0.05)
    t0 = now_utc()
    for vrid in (11, 12):
        m.edit_config(target="candidate", config=config(vrrp(group(vrid=vrid))))
        m.commit()
    time.sleep(0.05)
    t1 = now_utc()
    m.edit_config(target="candidate", config=config(vrrp(group(vrid=13))))
    m.commit()
    daemon.restart()
    log = daemon.storage / "notifications.log"
    assert log.stat().st_mode & 0o777 == 0o600
    r = daemon.connect()
    r.create_subscription(
        filter=("subtree", f'<netconf-config-change xmlns="{NCN}"/>'), start_time=t0
    )
    targets = []
    for _ in range(3):
        c = content(take(r, kind("netconf-config-change"), skip=()))
        targets.append(c.findtext("ncn:edit/ncn:target", namespaces=N))
    assert [("'11'" in t or "=11]" in t, "'12'" in t or "=12]" in t, "'13'" in t or "=13]" in t) for t in targets] == [
        (True, False, False),
        (False, True, False),
        (False, False, True),
    ], targets
    assert name_of(take(r, skip=())) == "replayComplete"
    # live notifications follow the replay on the same subscription
    r2 = daemon.connect()
    r2.edit_config(target="candidate", config=config(vrrp(group(vrid=14))))
    r2.commit()
    c = content(take(r, kind("netconf-config-change"), skip=()))
    assert c.findtext("ncn:changed-by/ncn:session-id", namespaces=N) == str(r2.session_id)
    # a window in the past: replay, replayComplete, notificationComplete
    w = daemon.connect()
    w.create_subscription(
        filter=("subtree", f'<netconf-config-change xmlns="{NCN}"/>'), start_time=t0, stop_time=t1
    )
    got = [name_of(take(w, skip=())) for _ in range(4)]
    assert got == ["netconf-config-change", "netconf-config-change", "replayComplete", "notificationComplete"]
    # the session goes on, and may subscribe again
    w.get_config("running")
    w.create_subscription()


def test_replay_log_size_from_the_bootstrap_file(daemon_factory):
    # the log keeps the newest 3: two of the changes, and the
    # session-start of the replaying session
    d = daemon_factory(netconf_toml="notification-replay = 3")
    m = d.connect()
    t0 = now_utc()
    for vrid in (21, 22, 23):
        m.edit_config(target="candidate", config=config(vrrp(group(vrid=vrid))))
        m.commit()
    r = d.connect()
    r.create_subscription(filter=("subtree", f'<netconf-config-change xmlns="{NCN}"/>'), start_time=t0)
    got = [content(take(r, kind("netconf-config-change"), skip=())).findtext("ncn:edit/ncn:target", namespaces=N) for _ in range(2)]
    assert "22" in got[0] and "23" in got[1], got
    assert name_of(take(r, skip=())) == "replayComplete"
    off = daemon_factory(netconf_toml="notification-replay = 0")
    m = off.connect()
    data = m.get(filter=("subtree", f'<netconf xmlns="{STREAMS}"/>')).data_ele
    assert data.findtext("s:netconf/s:streams/s:stream/s:replaySupport", namespaces=N) == "false"
    with pytest.raises(RPCError) as e:
        m.create_subscription(start_time=t0)
    assert_rpc_error(e, "operation-failed")
    m.create_subscription()


def metrics_of(port: int) -> dict:
    """The scrape's unlabelled series, name -> value."""
    import urllib.request

    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = {}
    for line in body.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            k, _, v = line.partition(" ")
            out[k] = float(v)
    return out


def metrics_daemon(daemon_factory):
    from conftest import free_port

    mport = free_port()
    return daemon_factory(extra_toml=f'[metrics]\nlisten = "127.0.0.1:{mport}"\n'), mport


OVERFLOWED = "hotlease_netconf_subscriptions_overflowed_total"
CLOSED = "hotlease_netconf_subscribers_closed_total"


def stalled_subscriber(daemon):
    """A raw base:1.0 session with a 16 KiB SSH window that subscribes and
    then reads nothing: (transport, channel, session-id)."""
    import paramiko
    import socket as socketlib

    sock = socketlib.create_connection(("127.0.0.1", daemon.port), timeout=10)
    t = paramiko.Transport(sock)
    t.connect(username="admin", password="lab-password-1")
    ch = t.open_session(window_size=16384, max_packet_size=16384)
    ch.settimeout(10)
    ch.invoke_subsystem("netconf")
    buf = b""
    while EOM not in buf:
        buf += ch.recv(65536)
    hello = etree.fromstring(buf.split(EOM)[0])
    ch.sendall(
        f'<hello xmlns="{BASE_NS}"><capabilities><capability>urn:ietf:params:netconf:base:1.0</capability></capabilities></hello>'.encode()
        + EOM
        + f'<rpc message-id="1" xmlns="{BASE_NS}"><create-subscription xmlns="{NOTIF}"/></rpc>'.encode()
        + EOM
    )
    return t, ch, hello.findtext(f"{{{BASE_NS}}}session-id")


def commit_until_overflow(daemon, m, limit=3000):
    """Commit (one netconf-config-change each) until the daemon logs a
    subscription's queue overflow; how many commits that took."""
    for i in range(limit):
        m.edit_config(target="candidate", config=config(vrrp(group(vrid=1, priority=1 + i % 200))))
        m.commit()
        if i >= 500 and i % 10 == 0 and "subscriber cannot keep up" in daemon.stderr(tail=50):
            return i + 1
    raise AssertionError("no overflow after %d commits" % limit)


def slow_subscriber_counters(m):
    """hotlease-vrrp's augment of RFC 6022 statistics: (subscriptions
    ended for a full queue with the client told, sessions closed)."""
    mon = "urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"
    st = m.get(filter=("subtree", f'<netconf-state xmlns="{mon}"><statistics/></netconf-state>')).data_ele
    stats = st.find(f".//{{{mon}}}statistics")
    assert stats is not None, etree.tostring(st)
    got = tuple(stats.findtext(f"{{{VRRP_NS}}}{leaf}") for leaf in ("slow-subscriptions-ended", "slow-subscribers-closed"))
    assert None not in got, etree.tostring(stats)
    return tuple(int(v) for v in got)


def test_a_stalled_subscriber_is_closed_and_slows_no_commit(daemon_factory):
    """A client that subscribes and then never reads: its SSH window fills,
    then its queue; commits go on, the other subscriber gets every
    notification, and the stalled session, which cannot even be told its
    subscription ended, is closed (netconf-session-end) and counted."""
    daemon, mport = metrics_daemon(daemon_factory)
    watcher = daemon.connect()
    watcher.create_subscription()
    assert slow_subscriber_counters(watcher) == (0, 0)
    t, ch, stalled_id = stalled_subscriber(daemon)
    try:
        # from now on the stalled client reads nothing
        m = daemon.connect()
        commits = 700  # > the 512 notifications a session may have queued
        for i in range(commits):
            m.edit_config(target="candidate", config=config(vrrp(group(vrid=1, priority=1 + i % 200))))
            m.commit()
        seen = 0
        ended = None
        deadline = time.monotonic() + 60
        while (seen < commits or ended is None) and time.monotonic() < deadline:
            n = watcher.take_notification(block=True, timeout=5)
            if n is None:
                continue
            c = content(n)
            if name_of(n) == "netconf-config-change":
                seen += 1
            elif name_of(n) == "netconf-session-end" and c.findtext("ncn:session-id", namespaces=N) == stalled_id:
                ended = c.findtext("ncn:termination-reason", namespaces=N)
        assert seen == commits
        assert ended == "other"
        log = daemon.stderr(tail=100_000)
        assert "the client cannot be told: closing the session" in log
        assert "reason=\"notification overflow\"" in log
        got = metrics_of(mport)
        assert (got[OVERFLOWED], got[CLOSED]) == (0, 1), got
        # and in state: RFC 6022 counts it as a dropped session
        mon = "urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"
        st = watcher.get(filter=("subtree", f'<netconf-state xmlns="{mon}"><statistics/></netconf-state>')).data_ele
        assert st.findtext(f".//{{{mon}}}dropped-sessions") == "1", etree.tostring(st)
        # and what RFC 6022 does not say: why (hotlease-vrrp's augment)
        assert slow_subscriber_counters(watcher) == (0, 1)
    finally:
        t.close()


def test_a_slow_subscriber_is_told_its_subscription_ended_and_keeps_its_session(daemon_factory):
    """A client that stops reading long enough for its queue to overflow,
    then reads again: what was on its way arrives, then RFC 5277
    notificationComplete ends the subscription; the session still answers
    rpcs and may subscribe again; the overflow is counted."""
    daemon, mport = metrics_daemon(daemon_factory)
    t, ch, _ = stalled_subscriber(daemon)
    try:
        m = daemon.connect()
        commit_until_overflow(daemon, m)
        # it reads again, well within the grace the daemon gives it
        buf = b""
        while b"notificationComplete" not in buf or not buf.endswith(EOM):
            more = ch.recv(65536)
            assert more, "session closed: " + buf[-300:].decode(errors="replace")
            buf += more
        messages = [etree.fromstring(x) for x in buf.split(EOM) if x.strip()]
        last = messages[-1]
        assert etree.QName(last).localname == "notification"
        assert last.find(f"{{{STREAMS}}}notificationComplete") is not None, etree.tostring(last)
        # the subscription is over: nothing follows it, while events go on
        m.edit_config(target="candidate", config=config(vrrp(group(vrid=2))))
        m.commit()
        ch.sendall(f'<rpc message-id="2" xmlns="{BASE_NS}"><get-config><source><running/></source></get-config></rpc>'.encode() + EOM)
        rest = b""
        while EOM not in rest:
            rest += ch.recv(65536)
        reply = etree.fromstring(rest.split(EOM)[0])
        assert etree.QName(reply).localname == "rpc-reply" and reply.get("message-id") == "2", rest[:300]
        got = metrics_of(mport)
        assert (got[OVERFLOWED], got[CLOSED]) == (1, 0), got
        # in state as well (hotlease-vrrp's augment of RFC 6022 statistics)
        assert slow_subscriber_counters(m) == (1, 0)
        # and it may subscribe again
        ch.sendall(f'<rpc message-id="3" xmlns="{BASE_NS}"><create-subscription xmlns="{NOTIF}"/></rpc>'.encode() + EOM)
        rest = rest.split(EOM, 1)[1]
        while EOM not in rest:
            rest += ch.recv(65536)
        assert b"<ok/>" in rest.split(EOM)[0], rest[:300]
        assert "subscription ended, client told" in daemon.stderr(tail=100_000)
    finally:
        t.close()
