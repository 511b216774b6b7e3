//! Actor tests of the backup subsystem: two subsystems (two routers) on
//! 127.0.0.1 and 127.0.0.2, driven through `Subsystem::apply` and observed
//! through their state.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::*;
use crate::backup::config::BackupProfile;

const A: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

fn free_port() -> u16 {
    std::net::TcpListener::bind((A, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn service(name: &str, source: Ipv4Addr, peer: Ipv4Addr, port: u16) -> BackupService {
    BackupService {
        name: name.into(),
        ssl_policy: None,
        peer,
        source,
        port,
        keepalive_interval: Duration::from_millis(200),
        dead_time: Duration::from_millis(1000),
        ack_timeout: Duration::from_millis(300),
    }
}

/// A DHCP runtime of its own (a lease store in a temporary directory, no
/// interface) for a subsystem's hooks.
fn dhcp(shutdown: &CancellationToken) -> (Hooks, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (_sub, hooks, _task) =
        crate::dhcp::start(dir.path(), 0, shutdown.child_token(), 0).unwrap();
    (hooks, dir)
}

fn config(services: &[BackupService]) -> Config {
    let mut c = Config::default();
    for s in services {
        c.backup.services.insert(s.name.clone(), s.clone());
    }
    c
}

fn state(sub: &BackupSubsystem, name: &str) -> Option<ChannelState> {
    sub.services.get(name)?.view.get().map(|v| v.state())
}

async fn wait(what: &str, mut pred: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !pred() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The services as a metrics scrape reads them: (name, connection).
fn scraped(sub: &BackupSubsystem) -> Vec<(String, Connection)> {
    sub.metrics()
        .read()
        .into_iter()
        .map(|s| (s.name, s.connection))
        .collect()
}

fn connected(sub: &BackupSubsystem, name: &str) -> bool {
    state(sub, name).is_some_and(|s| s.connection == Connection::Connected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_diffs_services_by_name_and_unchanged_ones_keep_their_channel() {
    let (p1, p2, p3) = (free_port(), free_port(), free_port());
    let shutdown = CancellationToken::new();
    let (ha, _da) = dhcp(&shutdown);
    let (hb, _db) = dhcp(&shutdown);
    let (mut a, a_task) = start(shutdown.child_token(), ha);
    let (mut b, b_task) = start(shutdown.child_token(), hb);

    let a1 = config(&[service("s1", A, B, p1), service("s2", A, B, p2)]);
    let b1 = config(&[service("s1", B, A, p1)]);
    a.prepare(&Config::default(), &a1).unwrap();
    a.apply(&Config::default(), &a1);
    b.apply(&Config::default(), &b1);
    wait("s1 connected on both", || {
        connected(&a, "s1") && connected(&b, "s1")
    })
    .await;
    let xml = a.state_xml();
    crate::yang::parse_state_xml(&xml).expect("the state is valid YANG");
    assert!(
        xml.contains("<name>s1</name><state><connection>connected</connection>")
            && xml.contains("<name>s2</name>"),
        "{xml}"
    );
    // the metrics read the same channels (s2 has no peer listening)
    let m = scraped(&a);
    assert_eq!(m[0], ("s1".into(), Connection::Connected), "{m:?}");
    assert!(m[1].0 == "s2" && m[1].1 != Connection::Connected, "{m:?}");

    // s2 deleted, s3 added, a profile bound to s1: s1 keeps its channel
    // but renews its session, so that both sides judge the new hello
    let mut a2 = config(&[service("s1", A, B, p1), service("s3", A, B, p3)]);
    a2.backup.profiles.insert(
        "rbp1".into(),
        BackupProfile {
            name: "rbp1".into(),
            vrrp_interface: "eth0".into(),
            vrid: 1,
            backup_id: 7,
            service: "s1".into(),
            dhcp_server: true,
        },
    );
    a.apply(&a1, &a2);
    assert!(!a.services.contains_key("s2"));
    assert!(a.services.contains_key("s3"));
    let names: Vec<String> = scraped(&a).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["s1", "s3"]);
    wait("s1 up again with the new hello", || {
        state(&a, "s1")
            .is_some_and(|s| s.connection == Connection::Connected && s.counters.sessions_up == 2)
    })
    .await;
    let ids: Vec<u16> = a.services["s1"]
        .profiles
        .borrow()
        .iter()
        .map(|p| p.backup_id)
        .collect();
    assert_eq!(ids, [7]);
    let xml = a.state_xml();
    assert!(!xml.contains("<name>s2</name>") && xml.contains("<name>s3</name>"));
    crate::yang::parse_state_xml(&xml).expect("the state is valid YANG");
    // b has no profile 7: a says so once the session is back
    wait("rbp1 judged", || {
        a.state_xml()
            .contains("<peer-check>unknown-backup-id</peer-check>")
    })
    .await;
    assert!(a.state_xml().contains("<role>initialize</role>"));

    // a timer of s1 changed: s1 restarts, the peer sees the session go
    // down with our reason and comes back up
    let mut a3 = a2.clone();
    a3.backup.services.get_mut("s1").unwrap().keepalive_interval = Duration::from_millis(300);
    a.apply(&a2, &a3);
    wait("b sees s1 down", || {
        state(&b, "s1").is_some_and(|s| s.last_down_reason.is_some())
    })
    .await;
    let reason = state(&b, "s1").unwrap().last_down_reason.unwrap();
    assert!(
        reason.to_string().contains("Shutdown"),
        "the peer's reason: {reason}"
    );
    wait("s1 up again", || {
        // b: the first session, the renewed one, and this one
        connected(&a, "s1") && state(&b, "s1").is_some_and(|s| s.counters.sessions_up == 3)
    })
    .await;
    // the new channel of s1 is not the old one
    assert_eq!(state(&a, "s1").unwrap().counters.sessions_up, 1);

    // everything deleted: no state; shutdown ends the runtimes' tasks
    a.apply(&a3, &Config::default());
    assert_eq!(a.state_xml(), "");
    assert!(scraped(&a).is_empty());
    shutdown.cancel();
    drop((a, b));
    tokio::time::timeout(Duration::from_secs(5), async {
        a_task.await.unwrap();
        b_task.await.unwrap();
    })
    .await
    .expect("the backup tasks end after shutdown");
}

#[test]
fn outside_text_is_made_safe_for_the_state() {
    assert_eq!(text("CN=a<b>\u{0}\u{FFFF}é"), "CN=a&lt;b&gt;??é");
    assert_eq!(text(&"x".repeat(2000)).len(), MAX_TEXT);
}

#[test]
fn peer_check_names_both_fingerprints_and_each_verdict() {
    use crate::backup::wire::{ProfileHello, ProfileStatus, ProfileVerdict, Role};
    let v = |status| {
        vec![ProfileVerdict {
            backup_id: 1,
            status,
        }]
    };
    let peer = |theirs, ours| Peer {
        profiles: vec![ProfileHello {
            backup_id: 1,
            fingerprint: 0xab,
            role: Role::Backup,
        }],
        theirs,
        ours,
    };
    assert_eq!(peer_check(1, 0xcd, None).0, "not-connected");
    let ok = peer(v(ProfileStatus::Accepted), v(ProfileStatus::Accepted));
    assert_eq!(peer_check(1, 0xab, Some(&ok)).0, "accepted");
    let bad = peer(
        v(ProfileStatus::FingerprintMismatch),
        v(ProfileStatus::FingerprintMismatch),
    );
    let (check, reason) = peer_check(1, 0xcd, Some(&bad));
    assert_eq!(check, "fingerprint-mismatch");
    assert!(
        reason.contains("the pools bound to this profile differ from the peer's")
            && reason.contains("fingerprint 00000000000000cd here, 00000000000000ab there"),
        "{reason}"
    );
    // the peer lacks the backup-id (our verdict list has no entry for it)
    let unknown = peer(v(ProfileStatus::UnknownBackupId), vec![]);
    let (check, reason) = peer_check(1, 0xab, Some(&unknown));
    assert_eq!(check, "unknown-backup-id");
    assert!(reason.contains("backup-id 1"), "{reason}");
}

/// A profile that becomes master here while the peer said it was master
/// is a takeover (its gate serves alone at once); one whose peer was
/// backup, or that stays master, is not.
#[test]
fn a_takeover_is_a_role_turning_master_while_the_peer_was() {
    let spec = |name: &str, id: u16| ProfileSpec {
        name: name.into(),
        backup_id: id,
        group: ("eth0".into(), id as u8),
        fingerprint: 1,
        pools: vec![],
        nets: vec![],
    };
    let ours = vec![spec("rbp1", 1), spec("rbp2", 2), spec("rbp3", 3)];
    let hello = |roles: [Role; 3]| Hello {
        source: A,
        software: String::new(),
        unix_time: 0,
        profiles: (1..=3)
            .zip(roles)
            .map(|(id, role)| ProfileHello {
                backup_id: id,
                fingerprint: 1,
                role,
            })
            .collect(),
    };
    let peer = PeerCell::default();
    set_peer(&peer, |p| {
        *p = Some(Peer {
            profiles: hello([Role::Master, Role::Backup, Role::Master]).profiles,
            ..Peer::default()
        })
    });
    let old = hello([Role::Backup, Role::Backup, Role::Master]);
    let new = hello([Role::Master, Role::Master, Role::Master]);
    assert_eq!(took_over(&ours, &old, &new, &peer), ["rbp1"]);
    set_peer(&peer, |p| *p = None);
    assert!(took_over(&ours, &old, &new, &peer).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_up_and_down_are_reported_as_notifications() {
    let port = free_port();
    let shutdown = CancellationToken::new();
    let (ha, _da) = dhcp(&shutdown);
    let (hb, _db) = dhcp(&shutdown);
    let (mut a, _a_task) = start(shutdown.child_token(), ha);
    let (mut b, _b_task) = start(shutdown.child_token(), hb);
    let (sink, mut events) = EventSink::channel();
    a.report_events(sink);
    let a1 = config(&[service("s1", A, B, port)]);
    let b1 = config(&[service("s1", B, A, port)]);
    a.apply(&Config::default(), &a1);
    b.apply(&Config::default(), &b1);
    let up = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("an up event")
        .unwrap();
    let leaf = |e: &Event, name: &str| {
        e.leaves
            .iter()
            .find(|(p, _)| p == name)
            .and_then(|(_, v)| v.clone())
    };
    assert_eq!(
        up.notification,
        "/hotlease-remote-backup:channel-state-change"
    );
    assert_eq!(leaf(&up, "service").as_deref(), Some("s1"));
    assert_eq!(leaf(&up, "state").as_deref(), Some("up"));
    assert_eq!(leaf(&up, "peer").as_deref(), Some("127.0.0.2"));
    crate::yang::notification_xml(up.notification, &up.leaves).expect("valid YANG");
    // the peer's service goes away: down, with the reason
    b.apply(&b1, &Config::default());
    let down = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("a down event")
        .unwrap();
    assert_eq!(leaf(&down, "state").as_deref(), Some("down"));
    assert!(leaf(&down, "reason").is_some_and(|r| !r.is_empty()));
    crate::yang::notification_xml(down.notification, &down.leaves).expect("valid YANG");
    shutdown.cancel();
}

/// Router A's configuration: pool p1 (10.9.0.10 up to `last`) bound to
/// rbp1 (backup-id 1) on service s1 towards B.
pub(super) fn with_profile(port: u16, last: &str) -> Config {
    use crate::dhcp::config::{DhcpConfig, Pool};
    let mut c = config(&[service("s1", A, B, port)]);
    let pool = Pool {
        sections: vec![("10.9.0.10".parse().unwrap(), last.parse().unwrap())],
        remote_backup_profile: Some("rbp1".into()),
        ..Pool::for_test("p1", "10.9.0.0")
    };
    c.dhcp = DhcpConfig::for_test(vec![pool]);
    c.backup.profiles.insert(
        "rbp1".into(),
        BackupProfile {
            name: "rbp1".into(),
            vrrp_interface: "eth0".into(),
            vrid: 1,
            backup_id: 1,
            service: "s1".into(),
            dhcp_server: true,
        },
    );
    c
}

/// A commit that changes a profile's pools while the hellos are being
/// exchanged: the session that comes up was judged on the old hello, so
/// A ends it at once and says the new one on the next connection (it had
/// kept the session, with verdicts on fingerprints neither side has).
/// The peer is scripted on the wire: it reads A's hello, lets the commit
/// happen, then answers as a peer with the old pools would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_during_the_handshake_renews_the_session_with_the_new_hello() {
    use crate::backup::wire::{
        Hello, HelloReply, Message, ProfileHello, ProfileStatus, ProfileVerdict, Role, WireCodec,
    };
    use futures::{SinkExt, StreamExt};

    let port = free_port();
    let shutdown = CancellationToken::new();
    let (ha, _da) = dhcp(&shutdown);
    let (mut a, _a_task) = start(shutdown.child_token(), ha);
    let old = with_profile(port, "10.9.0.200");
    let new = with_profile(port, "10.9.0.100");
    let fp = |c: &Config| crate::backup::fingerprint::of_profile(&c.dhcp, "rbp1");
    assert_ne!(fp(&old), fp(&new));
    a.apply(&Config::default(), &old);

    // B dials A (A's own dials to B find nobody) and reads A's hello
    let dial = || async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let s = tokio::net::TcpSocket::new_v4().unwrap();
            s.bind((B, 0).into()).unwrap();
            if let Ok(c) = s.connect((A, port).into()).await {
                let mut wire = tokio_util::codec::Framed::new(c, WireCodec::new());
                let m = tokio::time::timeout(Duration::from_secs(5), wire.next()).await;
                if let Ok(Some(Ok(Message::Hello(h)))) = m {
                    return (wire, h);
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "A never said hello");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let (mut wire, first) = dial().await;
    assert_eq!(first.profiles[0].fingerprint, fp(&old));

    // the commit, while A waits for B's hello
    a.apply(&old, &new);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let peer_hello = Hello {
        source: B,
        software: "scripted".into(),
        unix_time: crate::dhcp::clock::now_unix(),
        profiles: vec![ProfileHello {
            backup_id: 1,
            fingerprint: fp(&old),
            role: Role::Backup,
        }],
    };
    wire.send(Message::Hello(peer_hello)).await.unwrap();
    let verdicts = vec![ProfileVerdict {
        backup_id: 1,
        status: ProfileStatus::Accepted,
    }];
    wire.send(Message::HelloReply(HelloReply::Accepted {
        profiles: verdicts,
    }))
    .await
    .unwrap();

    // A's verdict on the old hellos, then the end of that session: B
    // answers keepalives meanwhile, so only the renewal ends it
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        let mut replied = false;
        loop {
            match wire.next().await {
                Some(Ok(Message::HelloReply(HelloReply::Accepted { .. }))) => replied = true,
                Some(Ok(Message::Keepalive(k))) => {
                    let _ = wire.send(Message::KeepaliveReply(k)).await;
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break replied,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert_eq!(
        ended,
        Ok(true),
        "the session judged on the old hello stayed up"
    );
    drop(wire);

    // the next connection carries the new fingerprint
    let (_wire, second) = dial().await;
    assert_eq!(second.profiles[0].fingerprint, fp(&new));
    shutdown.cancel();
}
