//! Channel tests over loopback: router A is 127.0.0.1, router B 127.0.0.2
//! (both on `lo`), scripted peers dial from 127.0.0.2 (or 127.0.0.3 for
//! a stranger). Timers are short so that each test is bounded to seconds.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::backup::wire::{Ack, Role};

const A: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const STRANGER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const WITHIN: Duration = Duration::from_secs(5);

/// A port free on both A and B.
fn free_port() -> u16 {
    loop {
        let l = std::net::TcpListener::bind((A, 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        if std::net::TcpListener::bind((B, port)).is_ok() {
            return port;
        }
    }
}

fn hello() -> Hello {
    Hello {
        source: Ipv4Addr::UNSPECIFIED,
        software: "test".into(),
        unix_time: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        profiles: vec![ProfileHello {
            backup_id: 10,
            fingerprint: 0xfeed,
            role: Role::Master,
        }],
    }
}

fn cfg(source: Ipv4Addr, peer: Ipv4Addr, port: u16) -> ChannelConfig {
    ChannelConfig {
        keepalive_interval: Duration::from_millis(100),
        dead_time: Duration::from_millis(500),
        hello_timeout: Duration::from_secs(1),
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        ..ChannelConfig::new("rbs1", source, peer, port, hello())
    }
}

async fn event(rx: &mut mpsc::UnboundedReceiver<ChannelEvent>) -> ChannelEvent {
    timeout(WITHIN, rx.recv())
        .await
        .expect("no channel event in time")
        .expect("channel gone")
}

async fn up(rx: &mut mpsc::UnboundedReceiver<ChannelEvent>) -> Box<SessionUp> {
    match event(rx).await {
        ChannelEvent::Up(up) => up,
        ChannelEvent::Down { reason, .. } => panic!("down instead of up: {reason}"),
    }
}

async fn down(rx: &mut mpsc::UnboundedReceiver<ChannelEvent>) -> DownReason {
    match event(rx).await {
        ChannelEvent::Down { reason, .. } => reason,
        ChannelEvent::Up(up) => panic!("up instead of down: {up:?}"),
    }
}

/// Poll the state until `pred` holds.
async fn state_until(ch: &Channel, pred: impl Fn(&ChannelState) -> bool) -> ChannelState {
    let deadline = Instant::now() + WITHIN;
    loop {
        let s = ch.state();
        if pred(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "state never matched: {s:#?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn quiet(rx: &mut mpsc::UnboundedReceiver<ChannelEvent>) {
    if let Ok(e) = rx.try_recv() {
        panic!("unexpected event {e:?}");
    }
}

#[test]
fn verdicts_per_profile() {
    let p = |backup_id, fingerprint| ProfileHello {
        backup_id,
        fingerprint,
        role: Role::Backup,
    };
    let v = verdicts(&[p(1, 5), p(2, 6)], &[p(1, 5), p(2, 7), p(3, 5)]);
    let st: Vec<_> = v.iter().map(|v| (v.backup_id, v.status)).collect();
    assert_eq!(
        st,
        [
            (1, ProfileStatus::Accepted),
            (2, ProfileStatus::FingerprintMismatch),
            (3, ProfileStatus::UnknownBackupId)
        ]
    );
}

#[tokio::test]
async fn two_channels_come_up_and_carry_frames() {
    let port = free_port();
    let (a, mut a_ev) = Channel::spawn(cfg(A, B, port));
    let (b, mut b_ev) = Channel::spawn(cfg(B, A, port));
    let mut a_up = up(&mut a_ev).await;
    let mut b_up = up(&mut b_ev).await;
    assert_eq!(a_up.peer_hello.source, B);
    assert_eq!(b_up.peer_hello.source, A);
    assert_eq!(a_up.peer_verdicts[0].status, ProfileStatus::Accepted);
    assert_eq!(a_up.our_verdicts[0].status, ProfileStatus::Accepted);
    assert_eq!((a_up.local, a_up.remote), (b_up.remote, b_up.local));

    a_up.session
        .send(Message::Ack(Ack { lsn: 7 }))
        .await
        .unwrap();
    b_up.session
        .send(Message::Ack(Ack { lsn: 9 }))
        .await
        .unwrap();
    let got = timeout(WITHIN, b_up.session.recv()).await.unwrap();
    assert_eq!(got, Some(Message::Ack(Ack { lsn: 7 })));
    let got = timeout(WITHIN, a_up.session.recv()).await.unwrap();
    assert_eq!(got, Some(Message::Ack(Ack { lsn: 9 })));

    // Keepalives keep it up past twice the dead time, and measure the RTT.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    quiet(&mut a_ev);
    quiet(&mut b_ev);
    let s = a.state();
    assert_eq!(s.connection, Connection::Connected, "{s:#?}");
    assert!(s.rtt.is_some(), "{s:#?}");
    assert!(!s.tls && s.peer_certificate.is_none());
    assert_eq!(s.session_remote, Some(a_up.remote));
    assert!(
        s.counters.frames_in >= 5 && s.counters.bytes_in > 0,
        "{s:#?}"
    );
    assert_eq!(s.counters.sessions_up, 1);
    assert_eq!(b.state().connection, Connection::Connected);
}

#[tokio::test]
async fn simultaneous_dial_keeps_one_session_the_arbiters() {
    simultaneous_dial_rounds().await;
}

/// The same with the two channels' tasks on two threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_dial_keeps_one_session_on_two_threads() {
    simultaneous_dial_rounds().await;
}

async fn simultaneous_dial_rounds() {
    for round in 0..20 {
        let port = free_port();
        // Both listen and dial before either task runs.
        let (a, mut a_ev) = Channel::spawn(cfg(A, B, port));
        let (b, mut b_ev) = Channel::spawn(cfg(B, A, port));
        let a_up = up(&mut a_ev).await;
        let b_up = up(&mut b_ev).await;
        assert_eq!(
            (a_up.local, a_up.remote),
            (b_up.remote, b_up.local),
            "round {round}: the two routers kept different sessions"
        );
        // B (the higher address) arbitrates and keeps its own dial.
        assert!(b_up.initiated_here && !a_up.initiated_here, "round {round}");
        // The duplicate was closed without a session going up or down.
        tokio::time::sleep(Duration::from_millis(200)).await;
        quiet(&mut a_ev);
        quiet(&mut b_ev);
        for ch in [&a, &b] {
            let s = ch.state();
            assert_eq!(s.connection, Connection::Connected, "round {round}");
            assert_eq!(s.counters.sessions_up, 1, "round {round}");
            // on two threads A may dial before B listens (refused, then
            // retried); no other failure, and the duplicate is not one
            assert!(
                s.last_failure
                    .as_ref()
                    .is_none_or(|(_, r)| r.cause == Cause::Connect),
                "round {round}: {s:#?}"
            );
        }
    }
}

#[tokio::test]
async fn a_connection_from_another_address_is_refused() {
    let port = free_port();
    let (a, mut a_ev) = Channel::spawn(cfg(A, B, port));
    for _ in 0..3 {
        let s = TcpSocket::new_v4().unwrap();
        s.bind(SocketAddr::V4(SocketAddrV4::new(STRANGER, 0)))
            .unwrap();
        let mut tcp = s
            .connect(SocketAddr::V4(SocketAddrV4::new(A, port)))
            .await
            .unwrap();
        // closed at once, without a hello
        let mut buf = [0u8; 64];
        let n = timeout(WITHIN, tcp.read(&mut buf)).await.unwrap();
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    }
    let s = state_until(&a, |s| s.counters.refused_connections == 3).await;
    assert_ne!(s.connection, Connection::Connected);
    quiet(&mut a_ev);
}

#[tokio::test]
async fn a_side_that_dies_is_seen_down_and_reconnects() {
    let port = free_port();
    let (a, mut a_ev) = Channel::spawn(cfg(A, B, port));
    let (b, mut b_ev) = Channel::spawn(cfg(B, A, port));
    let _a_up = up(&mut a_ev).await;
    let _b_up = up(&mut b_ev).await;

    drop(b);
    drop(b_ev);
    let reason = down(&mut a_ev).await;
    assert_eq!(reason.cause, Cause::ConnectionLost, "{reason}");
    let s = a.state();
    assert_eq!(s.last_down_reason, Some(reason));
    assert!(s.last_down.is_some() && s.session_remote.is_none());
    assert_ne!(s.connection, Connection::Connected);

    let (b, mut b_ev) = Channel::spawn(cfg(B, A, port));
    let a_up = up(&mut a_ev).await;
    let b_up = up(&mut b_ev).await;
    assert_eq!((a_up.local, a_up.remote), (b_up.remote, b_up.local));
    assert_eq!(a.state().counters.sessions_up, 2);
    assert_eq!(b.state().connection, Connection::Connected);
}

/// A scripted router B that dials A from 127.0.0.2 and sends its hello.
async fn scripted_peer(port: u16) -> Framed<TcpStream, WireCodec> {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::V4(SocketAddrV4::new(B, 0))).unwrap();
    let tcp = s
        .connect(SocketAddr::V4(SocketAddrV4::new(A, port)))
        .await
        .unwrap();
    Framed::new(tcp, WireCodec::new())
}

async fn next_frame(peer: &mut Framed<TcpStream, WireCodec>) -> Message {
    timeout(WITHIN, peer.next())
        .await
        .expect("no frame in time")
        .expect("connection closed")
        .expect("frame does not decode")
}

/// The scripted peer completes the hello (as the arbiter: B is higher).
async fn scripted_session(port: u16) -> Framed<TcpStream, WireCodec> {
    let mut peer = scripted_peer(port).await;
    let mut h = hello();
    h.source = B;
    peer.send(Message::Hello(h)).await.unwrap();
    assert!(matches!(next_frame(&mut peer).await, Message::Hello(h) if h.source == A));
    peer.send(Message::HelloReply(HelloReply::Accepted {
        profiles: vec![],
    }))
    .await
    .unwrap();
    assert!(matches!(
        next_frame(&mut peer).await,
        Message::HelloReply(HelloReply::Accepted { .. })
    ));
    peer
}

/// A peer whose clock is an hour off is accepted: the session measures
/// the skew (peer minus ours), hands it over with the session and shows
/// it in the state until the session ends. (Refused before, with 30 s.)
#[tokio::test]
async fn a_peer_clock_an_hour_off_is_accepted_with_its_skew() {
    let port = free_port();
    let (a, mut a_ev) = Channel::spawn(cfg(A, B, port));
    let mut peer = scripted_peer(port).await;
    let mut h = hello();
    h.source = B;
    h.unix_time -= 3600;
    peer.send(Message::Hello(h)).await.unwrap();
    assert!(matches!(next_frame(&mut peer).await, Message::Hello(_)));
    peer.send(Message::HelloReply(HelloReply::Accepted {
        profiles: vec![],
    }))
    .await
    .unwrap();
    assert!(matches!(
        next_frame(&mut peer).await,
        Message::HelloReply(HelloReply::Accepted { .. })
    ));
    let up = up(&mut a_ev).await;
    assert!(
        (-3601..=-3599).contains(&up.clock_skew),
        "{}",
        up.clock_skew
    );
    let st = state_until(&a, |s| s.clock_skew.is_some()).await;
    assert_eq!(st.clock_skew, Some(up.clock_skew));
    drop(peer);
    let _ = down(&mut a_ev).await;
    assert_eq!(a.state().clock_skew, None);
    quiet(&mut a_ev);
}

/// The skew within which no correction applies, and its sign.
#[test]
fn clock_skew_is_the_peer_minus_ours_beyond_the_tolerance() {
    use super::clock_skew;
    assert_eq!(clock_skew(1000, 1000), 0);
    assert_eq!(clock_skew(1002, 1000), 0);
    assert_eq!(clock_skew(998, 1000), 0);
    assert_eq!(clock_skew(1003, 1000), 3);
    assert_eq!(clock_skew(4600, 1000), 3600);
    assert_eq!(clock_skew(1000, 4600), -3600);
    assert_eq!(clock_skew(u64::MAX, 0), i64::MAX);
}

/// A peer whose clock is more than a day from ours is refused with the
/// skew.
#[tokio::test]
async fn a_peer_clock_too_far_off_is_refused_with_the_skew() {
    let port = free_port();
    let (a, mut a_ev) = Channel::spawn(cfg(A, B, port));
    let mut peer = scripted_peer(port).await;
    let mut h = hello();
    h.source = B;
    h.unix_time -= 2 * 86_400;
    peer.send(Message::Hello(h)).await.unwrap();
    assert!(matches!(next_frame(&mut peer).await, Message::Hello(_)));
    match next_frame(&mut peer).await {
        Message::HelloReply(HelloReply::Refused(r)) | Message::Close(r) => {
            assert_eq!(r.reason, Reason::ClockSkew);
            assert!(r.text.contains("differ by 172800 s"), "{}", r.text);
        }
        m => panic!("{m:?}"),
    }
    let st = state_until(&a, |s| s.last_failure.is_some()).await;
    let (_, why) = st.last_failure.unwrap();
    assert!(why.to_string().contains("172800 s"), "{why}");
    quiet(&mut a_ev);
}

#[tokio::test]
async fn dead_time_fires_when_the_peer_goes_silent() {
    let port = free_port();
    let (a, mut a_ev) = Channel::spawn(cfg(A, B, port));
    let _peer = scripted_session(port).await;
    let _up = up(&mut a_ev).await;
    let went_up = Instant::now();
    // the peer neither answers keepalives nor sends anything
    let reason = down(&mut a_ev).await;
    assert_eq!(reason.cause, Cause::Local(Reason::DeadTimer), "{reason}");
    // a protocol timer: not before the dead time
    assert!(went_up.elapsed() >= Duration::from_millis(500));
    assert_eq!(a.state().last_down_reason, Some(reason));
}

#[tokio::test]
async fn an_unknown_version_is_refused_with_its_reason() {
    let port = free_port();
    let (a, mut a_ev) = Channel::spawn(cfg(A, B, port));
    let mut peer = scripted_peer(port).await;
    // a version-2 frame: length 3, version 2, two body bytes
    peer.get_mut()
        .write_all(&[0, 0, 0, 3, 2, 0, 0])
        .await
        .unwrap();
    assert!(matches!(next_frame(&mut peer).await, Message::Hello(_)));
    match next_frame(&mut peer).await {
        Message::HelloReply(HelloReply::Refused(r)) => {
            assert_eq!(r.reason, Reason::UnsupportedVersion);
            assert!(r.text.contains("version 2"), "{}", r.text);
        }
        m => panic!("expected a refusal, got {m:?}"),
    }
    let s = state_until(&a, |s| s.last_failure.is_some()).await;
    let (_, reason) = s.last_failure.unwrap();
    assert_eq!(reason.cause, Cause::Local(Reason::UnsupportedVersion));
    assert_eq!(s.counters.undecodable_frames, 1);
    quiet(&mut a_ev);
}

#[tokio::test]
async fn a_garbage_frame_closes_the_session_with_a_counted_reason() {
    let port = free_port();
    let (a, mut a_ev) = Channel::spawn(cfg(A, B, port));
    let mut peer = scripted_session(port).await;
    let mut up = up(&mut a_ev).await;
    // version 1, then a variant index that never ends
    peer.get_mut()
        .write_all(&[0, 0, 0, 4, 1, 0xff, 0xff, 0xff])
        .await
        .unwrap();
    let close = loop {
        match next_frame(&mut peer).await {
            Message::Keepalive(_) => continue,
            m => break m,
        }
    };
    assert!(
        matches!(&close, Message::Close(r) if r.reason == Reason::Undecodable),
        "{close:?}"
    );
    let reason = down(&mut a_ev).await;
    assert_eq!(reason.cause, Cause::Local(Reason::Undecodable), "{reason}");
    assert_eq!(a.state().counters.undecodable_frames, 1);
    // nothing reached the owner
    assert_eq!(timeout(WITHIN, up.session.recv()).await.unwrap(), None);
}

// ------------------------------------------------------------------ TLS

struct Ca {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    pem: String,
}

fn ca(name: &str) -> Ca {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        params,
        key,
    }
}

/// A router certificate signed by `ca`, naming `ip`, and its policy files.
fn router(dir: &Path, file: &str, ca: &Ca, cn: &str, ip: Ipv4Addr) -> TlsPaths {
    use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, SanType};
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.subject_alt_names = vec![SanType::IpAddress(IpAddr::V4(ip))];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params
        .signed_by(&key, &Issuer::from_params(&ca.params, &ca.key))
        .unwrap();
    let path = |ext: &str| -> PathBuf { dir.join(format!("{file}.{ext}")) };
    std::fs::write(path("crt"), cert.pem()).unwrap();
    std::fs::write(path("key"), key.serialize_pem()).unwrap();
    std::fs::write(path("ca"), &ca.pem).unwrap();
    TlsPaths {
        certificate: path("crt"),
        private_key: path("key"),
        trusted_ca: Some(path("ca")),
    }
}

fn tls_cfg(source: Ipv4Addr, peer: Ipv4Addr, port: u16, tls: TlsPaths) -> ChannelConfig {
    ChannelConfig {
        tls: Some(tls),
        ..cfg(source, peer, port)
    }
}

#[tokio::test]
async fn mutual_tls_comes_up_with_the_peer_subject() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca("hotlease test CA");
    let a_tls = router(dir.path(), "a", &ca, "router-a", A);
    let b_tls = router(dir.path(), "b", &ca, "router-b", B);
    let port = free_port();
    let (a, mut a_ev) = Channel::spawn(tls_cfg(A, B, port, a_tls));
    let (b, mut b_ev) = Channel::spawn(tls_cfg(B, A, port, b_tls));
    let a_up = up(&mut a_ev).await;
    let mut b_up = up(&mut b_ev).await;
    assert_eq!(a_up.peer_certificate.as_deref(), Some("CN=router-b"));
    assert_eq!(b_up.peer_certificate.as_deref(), Some("CN=router-a"));
    a_up.session
        .send(Message::Ack(Ack { lsn: 1 }))
        .await
        .unwrap();
    let got = timeout(WITHIN, b_up.session.recv()).await.unwrap();
    assert_eq!(got, Some(Message::Ack(Ack { lsn: 1 })));
    let s = a.state();
    assert!(s.tls);
    assert_eq!(s.peer_certificate.as_deref(), Some("CN=router-b"));
    assert_eq!(b.state().peer_certificate.as_deref(), Some("CN=router-a"));
}

/// Both routers refuse, none comes up, both say why in their state.
async fn refused_both_ways(a_tls: TlsPaths, b_tls: TlsPaths) -> (DownReason, DownReason) {
    let port = free_port();
    let (a, mut a_ev) = Channel::spawn(tls_cfg(A, B, port, a_tls));
    let (b, mut b_ev) = Channel::spawn(tls_cfg(B, A, port, b_tls));
    let tls_failure = |s: &ChannelState| {
        s.last_failure
            .as_ref()
            .is_some_and(|(_, r)| r.cause == Cause::Tls)
    };
    let sa = state_until(&a, tls_failure).await;
    let sb = state_until(&b, tls_failure).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    quiet(&mut a_ev);
    quiet(&mut b_ev);
    assert_eq!(a.state().counters.sessions_up, 0);
    assert_eq!(b.state().counters.sessions_up, 0);
    (sa.last_failure.unwrap().1, sb.last_failure.unwrap().1)
}

#[tokio::test]
async fn a_certificate_of_another_ca_is_refused_on_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let ours = ca("hotlease test CA");
    let other = ca("somebody else's CA");
    let a_tls = router(dir.path(), "a", &ours, "router-a", A);
    let b_tls = router(dir.path(), "b", &other, "router-b", B);
    let (a, b) = refused_both_ways(a_tls, b_tls).await;
    // each side's own verdict on the other's certificate, or the other's
    // alert, depending on which dial got there first
    for r in [&a, &b] {
        assert!(
            r.text.contains("UnknownIssuer") || r.text.contains("alert"),
            "{r}"
        );
    }
}

#[tokio::test]
async fn a_certificate_for_another_address_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca("hotlease test CA");
    let a_tls = router(dir.path(), "a", &ca, "router-a", A);
    // right CA, but it names 127.0.0.9, not B
    let b_tls = router(
        dir.path(),
        "b",
        &ca,
        "router-b",
        Ipv4Addr::new(127, 0, 0, 9),
    );
    let (a, b) = refused_both_ways(a_tls, b_tls).await;
    // A refuses B's certificate as client (webpki names both addresses)
    // or as server (the IP check of tls.rs); B hears A's alert
    let wrong_name = |r: &DownReason| {
        r.text.contains("NotValidForName") || r.text.contains("not valid for name")
    };
    assert!(wrong_name(&a), "{a}");
    assert!(b.text.contains("alert") || wrong_name(&b), "{b}");
}

#[tokio::test]
async fn missing_tls_files_are_a_clear_failure() {
    let port = free_port();
    let tls = TlsPaths {
        certificate: "/nonexistent/router.crt".into(),
        private_key: "/nonexistent/router.key".into(),
        trusted_ca: Some("/nonexistent/ca.crt".into()),
    };
    let (a, mut a_ev) = Channel::spawn(tls_cfg(A, B, port, tls));
    let s = state_until(&a, |s| s.last_failure.is_some()).await;
    let (_, r) = s.last_failure.unwrap();
    assert_eq!(r.cause, Cause::TlsFiles);
    assert!(r.text.contains("/nonexistent/router.crt"), "{r}");
    quiet(&mut a_ev);
}

// ------------------------------------------------- arbitration, shutdown

#[tokio::test]
async fn the_arbiter_refuses_a_second_connection_while_up() {
    let port = free_port();
    let (a, mut a_ev) = Channel::spawn(cfg(A, B, port));
    let (b, mut b_ev) = Channel::spawn(cfg(B, A, port));
    let _a_up = up(&mut a_ev).await;
    let _b_up = up(&mut b_ev).await;
    // a second connection to B from A's address, with A's hello
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::V4(SocketAddrV4::new(A, 0))).unwrap();
    let tcp = s
        .connect(SocketAddr::V4(SocketAddrV4::new(B, port)))
        .await
        .unwrap();
    let mut second = Framed::new(tcp, WireCodec::new());
    let mut h = hello();
    h.source = A;
    second.send(Message::Hello(h)).await.unwrap();
    assert!(matches!(next_frame(&mut second).await, Message::Hello(_)));
    match next_frame(&mut second).await {
        Message::Close(r) => assert_eq!(r.reason, Reason::DuplicateSession),
        m => panic!("expected a duplicate-session close, got {m:?}"),
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    quiet(&mut a_ev);
    quiet(&mut b_ev);
    let s = b.state();
    assert_eq!(s.connection, Connection::Connected);
    assert_eq!(s.counters.sessions_up, 1);
    assert!(s.last_failure.is_none(), "{s:#?}");
    assert_eq!(a.state().connection, Connection::Connected);
}

#[tokio::test]
async fn the_other_router_follows_the_arbiter_to_a_newer_session() {
    let port = free_port();
    let (a, mut a_ev) = Channel::spawn(cfg(A, B, port));
    let mut first = scripted_session(port).await;
    let first_up = up(&mut a_ev).await;
    // the arbiter (scripted B) accepts a new connection: A takes it
    let _second = scripted_session(port).await;
    match event(&mut a_ev).await {
        ChannelEvent::Down { id, reason } => {
            assert_eq!(id, first_up.id);
            assert_eq!(reason.cause, Cause::Local(Reason::DuplicateSession));
        }
        e => panic!("expected the first session down, got {e:?}"),
    }
    let second_up = up(&mut a_ev).await;
    assert_ne!(second_up.id, first_up.id);
    let close = loop {
        match next_frame(&mut first).await {
            Message::Keepalive(_) => continue,
            m => break m,
        }
    };
    assert!(
        matches!(&close, Message::Close(r) if r.reason == Reason::DuplicateSession),
        "{close:?}"
    );
    let s = a.state();
    assert_eq!(s.connection, Connection::Connected);
    assert_eq!(s.session_local, Some(second_up.local));
}

#[tokio::test]
async fn shutdown_tells_the_peer() {
    let port = free_port();
    let (a, mut a_ev) = Channel::spawn(cfg(A, B, port));
    let (_b, mut b_ev) = Channel::spawn(cfg(B, A, port));
    let _a_up = up(&mut a_ev).await;
    let _b_up = up(&mut b_ev).await;
    timeout(WITHIN, a.shutdown()).await.unwrap();
    let reason = down(&mut b_ev).await;
    assert_eq!(reason.cause, Cause::Peer(Reason::Shutdown), "{reason}");
}

#[tokio::test]
async fn the_hello_says_what_the_owner_set_last() {
    let port = free_port();
    let (a, _a_ev) = Channel::spawn(cfg(A, B, port));
    let mut h = hello();
    h.profiles[0].backup_id = 11;
    h.profiles[0].role = Role::Backup;
    a.set_hello(h);
    let mut peer = scripted_peer(port).await;
    let got = match next_frame(&mut peer).await {
        Message::Hello(h) => h,
        m => panic!("expected a hello, got {m:?}"),
    };
    assert_eq!(got.source, A);
    assert_eq!(got.profiles[0].backup_id, 11);
    assert_eq!(got.profiles[0].role, Role::Backup);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(got.unix_time.abs_diff(now) < 60, "{}", got.unix_time);
}

#[tokio::test]
async fn the_arbiter_takes_the_other_dial_when_its_own_fails() {
    let port = free_port();
    // A's address answers TCP but never says hello: B's own dial hangs
    // until its hello timeout (1 s) while A's hello waits, held
    let _silent = std::net::TcpListener::bind((A, port)).unwrap();
    let (b, mut b_ev) = Channel::spawn(cfg(B, A, port));
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::V4(SocketAddrV4::new(A, 0))).unwrap();
    let tcp = s
        .connect(SocketAddr::V4(SocketAddrV4::new(B, port)))
        .await
        .unwrap();
    let mut a = Framed::new(tcp, WireCodec::new());
    let mut h = hello();
    h.source = A;
    a.send(Message::Hello(h)).await.unwrap();
    assert!(matches!(next_frame(&mut a).await, Message::Hello(_)));
    let sent = Instant::now();
    assert!(matches!(
        next_frame(&mut a).await,
        Message::HelloReply(HelloReply::Accepted { .. })
    ));
    // held until B's own dial gave up
    assert!(sent.elapsed() >= Duration::from_millis(500));
    a.send(Message::HelloReply(HelloReply::Accepted {
        profiles: vec![],
    }))
    .await
    .unwrap();
    let b_up = up(&mut b_ev).await;
    assert!(!b_up.initiated_here);
    let s = b.state();
    assert_eq!(s.connection, Connection::Connected);
    let (_, failure) = s.last_failure.expect("B's own dial failed");
    assert_eq!(failure.cause, Cause::Timeout, "{failure}");
}

#[tokio::test]
async fn without_trusted_ca_the_session_is_encrypted_only() {
    let dir = tempfile::tempdir().unwrap();
    let ca_a = ca("A's own CA");
    let ca_b = ca("B's own CA");
    let a_tls = TlsPaths {
        trusted_ca: None,
        ..router(dir.path(), "a", &ca_a, "router-a", A)
    };
    let b_tls = TlsPaths {
        trusted_ca: None,
        ..router(dir.path(), "b", &ca_b, "router-b", B)
    };
    let port = free_port();
    let (_a, mut a_ev) = Channel::spawn(tls_cfg(A, B, port, a_tls));
    let (_b, mut b_ev) = Channel::spawn(tls_cfg(B, A, port, b_tls));
    let a_up = up(&mut a_ev).await;
    let b_up = up(&mut b_ev).await;
    assert_eq!(a_up.peer_certificate.as_deref(), Some("CN=router-b"));
    assert_eq!(b_up.peer_certificate.as_deref(), Some("CN=router-a"));
}

#[tokio::test]
async fn a_file_that_is_not_pem_is_a_clear_failure() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca("hotlease test CA");
    let tls = router(dir.path(), "a", &ca, "router-a", A);
    std::fs::write(&tls.certificate, "not a certificate\n").unwrap();
    let port = free_port();
    let (a, _a_ev) = Channel::spawn(tls_cfg(A, B, port, tls));
    let s = state_until(&a, |s| s.last_failure.is_some()).await;
    let (_, r) = s.last_failure.unwrap();
    assert_eq!(r.cause, Cause::TlsFiles);
    assert!(
        r.text.contains("a.crt") && r.text.contains("no CERTIFICATE"),
        "{r}"
    );
}
