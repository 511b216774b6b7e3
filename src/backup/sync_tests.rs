//! Actor tests of the sync: router A is a backup subsystem with a real
//! DHCP runtime (lease store in a temporary directory, no interface),
//! router B a scripted peer: a channel of its own whose session the test
//! drives frame by frame, on 127.0.0.1 / 127.0.0.2.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::*;
use crate::backup::channel::{ChannelConfig, ChannelEvent};
use crate::backup::wire::{
    Ack, BatchCounts, BatchDone, BatchPage, BatchRequest, LeaseBatch, LeaseRefusal, LeaseUpdate,
    WireLease,
};
use crate::dhcp::leases::{Change, Lease, LeaseState, Origin};

const A: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const WITHIN: Duration = Duration::from_secs(10);

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn free_port() -> u16 {
    loop {
        let l = std::net::TcpListener::bind((A, 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        if std::net::TcpListener::bind((B, port)).is_ok() {
            return port;
        }
    }
}

/// Router A's configuration: pool p1 bound to rbp1 (backup-id 1) on
/// service s1 towards B (dead time 2 s).
fn config(port: u16) -> Config {
    let mut c = super::tests::with_profile(port, "10.9.0.200");
    if let Some(s) = c.backup.services.get_mut("s1") {
        s.dead_time = Duration::from_millis(2000);
    }
    c
}

/// Profile rbp1 of `config` as a sync session takes it.
fn sync_profile() -> crate::backup::sync::SyncProfile {
    crate::backup::sync::SyncProfile {
        name: "rbp1".into(),
        backup_id: 1,
        group: ("eth0".into(), 1),
        pools: vec!["p1".into()],
        nets: vec![(u32::from(ip("10.9.0.0")), 0xffff_0000)],
    }
}

fn lease(addr: &str, pool: &str) -> WireLease {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let l = Lease {
        ip: ip(addr),
        pool: pool.into(),
        hw: vec![2, 0, 0, 0, 0, ip(addr).octets()[3]],
        client_id: None,
        hostname: Some("h".into()),
        state: LeaseState::Bound,
        lifetime: 3600,
        expires: now + 3600,
        origin: Origin::Local,
    };
    WireLease::try_from(&l).unwrap()
}

/// The hello of a scripted peer with profile rbp1 (backup-id 1) of
/// `cfg`'s pools, in `role`.
fn scripted_hello(cfg: &Config, role: Role) -> Hello {
    Hello {
        source: Ipv4Addr::UNSPECIFIED,
        software: "scripted".into(),
        unix_time: 0,
        profiles: vec![ProfileHello {
            backup_id: 1,
            fingerprint: crate::backup::fingerprint::of_profile(&cfg.dhcp, "rbp1"),
            role,
        }],
    }
}

/// The scripted peer's next frame that is not a role or a keepalive.
async fn frame(s: &mut crate::backup::channel::Session) -> Message {
    loop {
        let m = tokio::time::timeout(WITHIN, s.recv())
            .await
            .expect("a frame in time")
            .expect("the session is up");
        if !matches!(m, Message::Role(_)) {
            return m;
        }
    }
}

async fn send(s: &crate::backup::channel::Session, m: Message) {
    s.send(m).await.expect("session up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_pulls_pushes_and_is_refused_what_is_not_its_own() {
    let shutdown = CancellationToken::new();
    let dir = tempfile::tempdir().unwrap();
    let (mut dhcp, hooks, _task) =
        crate::dhcp::start(dir.path(), 0, shutdown.child_token(), 0).unwrap();
    let port = free_port();
    let cfg = config(port);
    dhcp.apply(&Config::default(), &cfg);
    let vrrp_settings = crate::bootstrap::VrrpSettings {
        enabled: false,
        realtime_priority: 0,
    };
    let (mut vrrp, _v_task) = crate::vrrp::Vrrp::start(&vrrp_settings, shutdown.child_token());
    vrrp.apply(&Config::default(), &cfg);
    let (mut a, _a_task) = start(shutdown.child_token(), hooks.clone());
    a.hold_preemption(vrrp.preempt_holds());
    let (sink, mut notifications) = crate::event::EventSink::channel();
    a.report_events(sink);
    a.apply(&Config::default(), &cfg);
    // held from the start: this router lacks the peer's leases
    let xml = a.state_xml();
    assert!(
        xml.contains(
            "<preempt-hold>true</preempt-hold><preempt-hold-reason>waiting for the batch backup"
        ),
        "{xml}"
    );

    // B: same pools (same fingerprint), master of backup-id 1
    let hello = scripted_hello(&cfg, Role::Master);
    let (b, mut events) = Channel::spawn(ChannelConfig::new("s1", B, A, port, hello));
    let up = match tokio::time::timeout(WITHIN, events.recv()).await.unwrap() {
        Some(ChannelEvent::Up(up)) => up,
        other => panic!("{other:?}"),
    };
    let mut s = up.session;

    // A pulls B's table: one lease of p1, one of a pool A does not have
    let Message::BatchRequest(req) = frame(&mut s).await else {
        panic!("A did not ask for B's leases")
    };
    assert_eq!((req.backup_ids.clone(), req.after), (vec![1], None));
    send(
        &s,
        Message::BatchPage(BatchPage {
            batch: req.batch,
            leases: vec![lease("10.9.0.20", "p1"), lease("10.77.0.1", "zz")],
            cursor: Ipv4Addr::BROADCAST,
            more: false,
        }),
    )
    .await;
    let Message::BatchDone(done) = frame(&mut s).await else {
        panic!("no BatchDone")
    };
    // every lease of the peer is here: VRRP may preempt
    assert!(a.state_xml().contains("<preempt-hold>false</preempt-hold>"));
    // and the batch-backup-done notification says so (after the
    // session's channel-state-change up)
    let done_event = loop {
        let e = tokio::time::timeout(WITHIN, notifications.recv())
            .await
            .expect("a notification")
            .unwrap();
        crate::yang::notification_xml(e.notification, &e.leaves).expect("valid YANG");
        if e.notification == "/hotlease-remote-backup:batch-backup-done" {
            break e;
        }
    };
    let leaf = |name: &str| {
        done_event
            .leaves
            .iter()
            .find(|(p, _)| p == name)
            .and_then(|(_, v)| v.clone())
    };
    assert_eq!(leaf("service").as_deref(), Some("s1"));
    assert_eq!(leaf("profile[1]").as_deref(), Some("rbp1"));
    assert_eq!(
        (leaf("received"), leaf("taken"), leaf("refused")),
        (Some("2".into()), Some("1".into()), Some("1".into()))
    );
    assert_eq!(
        (done.batch, done.counts),
        (
            req.batch,
            BatchCounts {
                received: 2,
                taken: 1,
                sent: 0,
                unchanged: 0,
                refused: 1
            }
        )
    );

    // real time: a lease of p1 is acknowledged once durable; one of an
    // unknown pool is refused (reported before the ack) and counted
    let batch = |lsn, l| {
        Message::LeaseBatch(LeaseBatch {
            lsn,
            updates: vec![LeaseUpdate::Upsert(l)],
            more: false,
        })
    };
    send(&s, batch(7, lease("10.9.0.21", "p1"))).await;
    assert_eq!(frame(&mut s).await, Message::Ack(Ack { lsn: 7 }));
    send(&s, batch(8, lease("10.78.0.1", "zz"))).await;
    match frame(&mut s).await {
        Message::LeasesRefused(r) => {
            assert_eq!(r.lsn, 8);
            assert_eq!(r.leases[0].reason, LeaseRefusal::UnknownPool);
        }
        m => panic!("{m:?}"),
    }
    assert_eq!(frame(&mut s).await, Message::Ack(Ack { lsn: 8 }));
    let held = hooks
        .peer_leases(Arc::from(vec!["rbp1".to_string()]))
        .await
        .unwrap();
    let got: Vec<(Ipv4Addr, Origin)> = held.iter().map(|l| (l.ip, l.origin)).collect();
    assert_eq!(
        got,
        [
            (ip("10.9.0.20"), Origin::Peer),
            (ip("10.9.0.21"), Origin::Peer)
        ]
    );

    // B pulls A's table one lease per page
    let mut after = None;
    let mut pulled = Vec::new();
    loop {
        send(
            &s,
            Message::BatchRequest(BatchRequest {
                batch: 5,
                backup_ids: vec![1],
                after,
                max: 1,
            }),
        )
        .await;
        let Message::BatchPage(p) = frame(&mut s).await else {
            panic!("no page")
        };
        pulled.extend(p.leases.iter().map(|l| l.ip));
        after = Some(p.cursor);
        if !p.more {
            break;
        }
    }
    assert_eq!(pulled, [ip("10.9.0.20"), ip("10.9.0.21")]);
    send(
        &s,
        Message::BatchDone(BatchDone {
            batch: 5,
            counts: BatchCounts {
                received: 2,
                ..BatchCounts::default()
            },
        }),
    )
    .await;

    // the batch-backup rpc invites B to pull, and answers with the count
    let rpc = Rpc::BatchBackup {
        service: "s1".into(),
        service_type: "dhcp-server".into(),
    };
    let answer = tokio::spawn(a.call(&rpc).expect("the backup subsystem carries it out"));
    let Message::BatchInvite(inv) = frame(&mut s).await else {
        panic!("no invitation")
    };
    assert_ne!(inv.batch & crate::backup::wire::INVITED, 0);
    send(
        &s,
        Message::BatchRequest(BatchRequest {
            batch: inv.batch,
            backup_ids: vec![1],
            after: None,
            max: 4096,
        }),
    )
    .await;
    let Message::BatchPage(p) = frame(&mut s).await else {
        panic!("no page")
    };
    assert_eq!((p.leases.len(), p.more), (2, false));
    send(
        &s,
        Message::BatchDone(BatchDone {
            batch: inv.batch,
            counts: BatchCounts {
                received: 2,
                unchanged: 2,
                ..BatchCounts::default()
            },
        }),
    )
    .await;
    let out = tokio::time::timeout(WITHIN, answer)
        .await
        .unwrap()
        .unwrap()
        .expect("the rpc succeeds");
    assert_eq!(out, format!("<leases-sent xmlns=\"{NS}\">2</leases-sent>"));

    // what <get> shows: valid YANG, the counts above
    let xml = a.state_xml();
    crate::yang::parse_state_xml(&xml).expect("the state is valid YANG");
    for want in [
        "<leases-refused-here>2</leases-refused-here>",
        "<last-batch-backup><time>",
        "<result>success</result><leases-sent>2</leases-sent><leases-taken>0</leases-taken><leases-unchanged>2</leases-unchanged>",
        "<last-batch-received><time>",
        "<sync-state>synchronized</sync-state>",
    ] {
        assert!(xml.contains(want), "{want} not in {xml}");
    }

    // an invitation without its bit breaks the protocol: the session ends
    send(
        &s,
        Message::BatchInvite(crate::backup::wire::BatchInvite { batch: 3 }),
    )
    .await;
    match tokio::time::timeout(WITHIN, events.recv()).await.unwrap() {
        Some(ChannelEvent::Down { .. }) => {}
        Some(ChannelEvent::Up(_)) => panic!("up again before down"),
        None => panic!("channel gone"),
    }
    // held again until the next batch backup (the channel reconnects at
    // once: the reason may already be the new pull in progress)
    let deadline = tokio::time::Instant::now() + WITHIN;
    while !a.state_xml().contains("<preempt-hold>true</preempt-hold>") {
        assert!(tokio::time::Instant::now() < deadline, "{}", a.state_xml());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    b.shutdown().await;
    shutdown.cancel();
}

/// A log batch longer than a frame holds goes in parts with one LSN,
/// `more` on all but the last; the peer's ack of that LSN covers them all
/// and nothing is left in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_log_batch_goes_in_parts_acknowledged_once() {
    let shutdown = CancellationToken::new();
    let dir = tempfile::tempdir().unwrap();
    let (mut dhcp, hooks, _task) =
        crate::dhcp::start(dir.path(), 0, shutdown.child_token(), 0).unwrap();
    // the DHCP actor answers once it has its first configuration
    dhcp.apply(&Config::default(), &config(free_port()));
    let view = Arc::new(SyncView::default());
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let profile = sync_profile();
    let (mut s, _sub) = SyncSession::start(
        hooks,
        None,
        view.clone(),
        tx,
        vec![profile],
        Duration::from_millis(300),
        0,
    )
    .await;
    assert!(matches!(
        recv_within(&mut rx).await,
        Some(Message::BatchRequest(_))
    ));
    let n = crate::backup::wire::MAX_UPDATES + 10;
    let changes: Vec<Change> = (0..n)
        .map(|i| {
            let mut l = Lease::try_from(lease("10.9.0.1", "p1")).unwrap();
            l.ip = Ipv4Addr::from(u32::from(ip("10.9.16.0")) + i as u32);
            // a lease this router granted (one from the peer is not echoed)
            l.origin = Origin::Local;
            Change::Upsert(l)
        })
        .collect();
    s.outgoing(crate::dhcp::replication::Replicated::Batch {
        lsn: 9,
        changes: Arc::new(changes),
    })
    .unwrap();
    let parts: Vec<(u64, usize, bool)> = [recv_within(&mut rx).await, recv_within(&mut rx).await]
        .into_iter()
        .map(|m| match m {
            Some(Message::LeaseBatch(b)) => (b.lsn, b.updates.len(), b.more),
            m => panic!("{m:?}"),
        })
        .collect();
    assert_eq!(
        parts,
        [(9, crate::backup::wire::MAX_UPDATES, true), (9, 10, false)]
    );
    assert_eq!(view.unsent(), n as u64);
    s.on_frame(Message::Ack(Ack { lsn: 9 })).await.unwrap();
    assert_eq!(view.unsent(), 0);
    assert_eq!(
        view.leases_acknowledged
            .load(std::sync::atomic::Ordering::Relaxed),
        n as u64
    );
    shutdown.cancel();
}

/// A peer whose clock is an hour ahead, or an hour behind: the leases it
/// grants (a live batch, and its table in the batch backup) keep their
/// remaining lifetime here, on this router's clock. Before the hellos'
/// skew was applied, +1 h kept them an hour too long here and -1 h
/// expired them on arrival (the peer's ACKed leases lost here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skewed_peers_leases_keep_their_lifetime_here() {
    for skew in [3600i64, -3600] {
        let shutdown = CancellationToken::new();
        let dir = tempfile::tempdir().unwrap();
        let (mut dhcp, hooks, _task) =
            crate::dhcp::start(dir.path(), 0, shutdown.child_token(), 0).unwrap();
        dhcp.apply(&Config::default(), &config(free_port()));
        let view = Arc::new(SyncView::default());
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        let profile = sync_profile();
        let (mut s, _sub) = SyncSession::start(
            hooks.clone(),
            None,
            view,
            tx,
            vec![profile],
            Duration::from_millis(300),
            skew,
        )
        .await;
        let Some(Message::BatchRequest(req)) = recv_within(&mut rx).await else {
            panic!("no batch request")
        };
        // granted just now for an hour, on the peer's clock
        let theirs = |addr: &str| {
            let mut w = lease(addr, "p1");
            w.expires = w.expires.checked_add_signed(skew).unwrap();
            w
        };
        s.on_frame(Message::BatchPage(BatchPage {
            batch: req.batch,
            leases: vec![theirs("10.9.0.20")],
            cursor: Ipv4Addr::BROADCAST,
            more: false,
        }))
        .await
        .unwrap();
        s.on_frame(Message::LeaseBatch(LeaseBatch {
            lsn: 1,
            updates: vec![LeaseUpdate::Upsert(theirs("10.9.0.21"))],
            more: false,
        }))
        .await
        .unwrap();
        while let Some((tag, done)) = s.applying.pop_front() {
            let applied = tokio::time::timeout(WITHIN, done).await.unwrap().unwrap();
            s.on_applied(tag, applied).unwrap();
        }
        // past an expiry scan of the DHCP actor (every second)
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let now = crate::dhcp::clock::now_unix();
        let names: Arc<[String]> = vec!["rbp1".to_string()].into();
        let here = hooks.peer_leases(names).await.unwrap();
        assert_eq!(here.len(), 2, "skew {skew}: {here:?}");
        for l in &here {
            assert_eq!(l.state, LeaseState::Bound, "skew {skew}: {l:?}");
            assert!(
                l.expires <= now + 3600 && l.expires + 5 >= now + 3600,
                "skew {skew}: expires {} s from now, granted for 3600 s",
                l.expires as i64 - now as i64
            );
        }
        shutdown.cancel();
    }
}

async fn recv_within(rx: &mut tokio::sync::mpsc::Receiver<Message>) -> Option<Message> {
    tokio::time::timeout(WITHIN, rx.recv())
        .await
        .expect("a frame in time")
}

/// A master whose peer may have served (here: no session yet) hands out
/// only its half, and stays on it after the session comes up until the
/// session's pull has brought the peer's leases in: a peer that served
/// while this router was stopped granted addresses of its half that this
/// table lacks until then (the stop-master fault campaign found them
/// granted twice when the split ended at session up). The state shows
/// the half.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_keeps_to_its_half_until_the_peers_leases_are_in() {
    let shutdown = CancellationToken::new();
    let dir = tempfile::tempdir().unwrap();
    let (mut dhcp, hooks, _task) =
        crate::dhcp::start(dir.path(), 0, shutdown.child_token(), 0).unwrap();
    let port = free_port();
    let cfg = config(port);
    dhcp.apply(&Config::default(), &cfg);
    let (mut a, _a_task) = start(shutdown.child_token(), hooks.clone());
    // A is master of the profile's group (eth0, vrid 1)
    let (_vrrp_events, rx) = tokio::sync::broadcast::channel(4);
    a.follow_vrrp(rx, || {
        std::collections::BTreeMap::from([(("eth0".to_string(), 1u8), VrrpState::Master)])
    });
    a.apply(&Config::default(), &cfg);
    let half = |a: &BackupSubsystem| {
        let xml = a.state_xml();
        ["even", "odd"]
            .into_iter()
            .find(|h| xml.contains(&format!("<split-brain-half>{h}</split-brain-half>")))
    };
    let settle = |what: &'static str, want: Option<&'static str>| {
        let a = &a;
        async move {
            let t0 = std::time::Instant::now();
            while half(a) != want {
                assert!(t0.elapsed() < WITHIN, "{what}: {}", a.state_xml());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    // no session: A (127.0.0.1, the lower source address) takes the even half
    settle("alone", Some("even")).await;

    // B (backup) connects; A asks for B's leases, which B holds back
    let hello = scripted_hello(&cfg, Role::Backup);
    let (_b, mut events) = Channel::spawn(ChannelConfig::new("s1", B, A, port, hello));
    let mut s = match tokio::time::timeout(WITHIN, events.recv()).await.unwrap() {
        Some(ChannelEvent::Up(up)) => up.session,
        other => panic!("{other:?}"),
    };
    let Message::BatchRequest(req) = frame(&mut s).await else {
        panic!("A did not ask for B's leases")
    };
    assert!(a
        .state_xml()
        .contains("<sync-state>batch-backup</sync-state>"));
    // the session is up and B is backup, but B's leases are not here yet
    for _ in 0..30 {
        assert_eq!(half(&a), Some("even"), "{}", a.state_xml());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // B's table: one lease of its (odd) half; then A serves from the whole pool
    send(
        &s,
        Message::BatchPage(BatchPage {
            batch: req.batch,
            leases: vec![lease("10.9.0.21", "p1")],
            cursor: Ipv4Addr::BROADCAST,
            more: false,
        }),
    )
    .await;
    let Message::BatchDone(_) = frame(&mut s).await else {
        panic!("no BatchDone")
    };
    settle("after the pull", None).await;
    shutdown.cancel();
}
