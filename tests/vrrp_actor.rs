//! The VRRP runtime as a whole (actor, sockets, netlink, events) on a veth
//! pair in a private network namespace: configuration in, state-change
//! events and host changes out. Needs root and iproute2; skipped otherwise
//! (the black-box suite in netconf-tests/test_vrrp.py covers the rest).

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::Duration;

use hotlease::bootstrap::VrrpSettings;
use hotlease::config::{Config, Subsystem};
use hotlease::vrrp::config::{ChecksumMode, VrrpGroup, VrrpVersion};
use hotlease::vrrp::events::StateChange;
use hotlease::vrrp::instance::{Reason, State};
use hotlease::vrrp::Vrrp;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

fn sh(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn output(args: &[&str]) -> String {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

async fn next(events: &mut broadcast::Receiver<StateChange>) -> StateChange {
    tokio::time::timeout(Duration::from_secs(3), events.recv())
        .await
        .expect("a state change in time")
        .expect("the channel is open")
}

struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

const VIP: &str = "10.79.0.100";

#[test]
fn a_lone_group_becomes_master_publishes_its_changes_and_resigns_on_shutdown() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || output(&["ip", "-V"]).is_empty() {
        eprintln!("skipped: needs root and iproute2");
        return;
    }
    let ns = Netns(format!("vr{}act", std::process::id()));
    assert!(sh(&["ip", "netns", "add", &ns.0]));
    let n = ns.0.as_str();
    assert!(sh(&[
        "ip", "-n", n, "link", "add", "v0", "type", "veth", "peer", "name", "v1"
    ]));
    assert!(sh(&[
        "ip",
        "-n",
        n,
        "addr",
        "add",
        "10.79.0.1/24",
        "dev",
        "v0"
    ]));
    assert!(sh(&["ip", "-n", n, "link", "set", "v1", "up"]));
    assert!(sh(&["ip", "-n", n, "link", "set", "v0", "up"]));
    let name = ns.0.clone();
    // setns applies to the calling thread; the runtime's own thread,
    // spawned from it, inherits the namespace.
    std::thread::spawn(move || {
        let f = std::fs::File::open(format!("/run/netns/{name}")).unwrap();
        // SAFETY: a valid namespace descriptor, for this thread only.
        assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(run(name));
    })
    .join()
    .unwrap();
}

async fn run(ns: String) {
    let shutdown = CancellationToken::new();
    let settings = VrrpSettings {
        enabled: true,
        realtime_priority: 0,
    };
    let (mut vrrp, task) = Vrrp::start(&settings, shutdown.clone());
    let mut events = vrrp.subscribe();
    let group = VrrpGroup {
        interface: "v0".into(),
        vrid: 7,
        virtual_ips: vec![VIP.parse::<Ipv4Addr>().unwrap()],
        priority: 100,
        preempt: true,
        preempt_delay_s: 0,
        advertise_interval_ms: 100,
        version: VrrpVersion::V3,
        checksum_mode: ChecksumMode::PseudoHeader,
        use_virtual_mac: false,
    };
    let config = Config {
        vrrp: [(("v0".to_string(), 7), group)].into_iter().collect(),
        ..Default::default()
    };
    vrrp.prepare(&Config::default(), &config).unwrap();
    vrrp.apply(&Config::default(), &config);

    let backup = next(&mut events).await;
    assert_eq!(
        (
            backup.interface.as_str(),
            backup.vrid,
            backup.old,
            backup.new,
            backup.reason
        ),
        ("v0", 7, State::Initialize, State::Backup, Reason::Startup)
    );
    let master = next(&mut events).await;
    assert_eq!(
        (master.old, master.new, master.reason),
        (State::Backup, State::Master, Reason::MasterDownTimer)
    );
    let waited = master.at.duration_since(backup.at).unwrap();
    // Master_Down_Interval = 3 × 100 ms + 156/256 × 100 ms
    assert!(
        waited >= Duration::from_micros(360_900) && waited < Duration::from_millis(450),
        "{waited:?}"
    );
    let xml = vrrp.state_xml();
    assert!(xml.contains("<state>master</state>"), "{xml}");
    assert!(
        xml.contains("<master-address>10.79.0.1</master-address>"),
        "{xml}"
    );
    let has_vip =
        || output(&["ip", "-n", &ns, "-4", "-o", "addr", "show", "dev", "v0"]).contains(VIP);
    for _ in 0..100 {
        if has_vip() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(has_vip(), "the master holds the VIP");

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the runtime stops in time")
        .unwrap();
    let down = next(&mut events).await;
    assert_eq!(
        (down.old, down.new, down.reason),
        (State::Master, State::Initialize, Reason::Shutdown)
    );
    assert!(!has_vip(), "a resigning master removes the VIP");
    assert!(vrrp
        .state_xml()
        .contains("<priority-zero-sent>1</priority-zero-sent>"));
}

/// The VRRP group's `<preempt-hold>` and `<state>` in `xml`.
fn hold_and_state(xml: &str) -> (bool, String) {
    let state = xml
        .split_once("<state>")
        .and_then(|(_, r)| r.split_once("</state>"))
        .map(|(s, _)| s.to_string())
        .unwrap_or_default();
    (xml.contains("<preempt-hold>true</preempt-hold>"), state)
}

fn enter(ns: &str) {
    let f = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
    // SAFETY: a valid namespace descriptor, for the calling thread only.
    assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
}

fn held_group(priority: u8) -> Config {
    let group = VrrpGroup {
        interface: "v0".into(),
        vrid: 9,
        virtual_ips: vec!["10.79.1.100".parse::<Ipv4Addr>().unwrap()],
        priority,
        preempt: true,
        preempt_delay_s: 0,
        advertise_interval_ms: 100,
        version: VrrpVersion::V3,
        checksum_mode: ChecksumMode::PseudoHeader,
        use_virtual_mac: false,
    };
    Config {
        vrrp: [(("v0".to_string(), 9), group)].into_iter().collect(),
        ..Default::default()
    }
}

/// Run `body` with the names of two namespaces joined by a veth pair
/// `v0` (10.79.1.1/24 in the first, 10.79.1.2/24 in the second), on a
/// runtime of its own; the namespaces are removed afterwards. Skipped
/// without root and iproute2.
fn on_a_veth_pair<F: std::future::Future<Output = ()>>(
    tag: &str,
    body: impl FnOnce(String, String) -> F + Send + 'static,
) {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || output(&["ip", "-V"]).is_empty() {
        eprintln!("skipped: needs root and iproute2");
        return;
    }
    let a = Netns(format!("vr{}{tag}a", std::process::id()));
    let b = Netns(format!("vr{}{tag}b", std::process::id()));
    assert!(sh(&["ip", "netns", "add", &a.0]));
    assert!(sh(&["ip", "netns", "add", &b.0]));
    assert!(sh(&[
        "ip", "-n", &a.0, "link", "add", "v0", "type", "veth", "peer", "name", "v0", "netns", &b.0
    ]));
    for (ns, addr) in [(&a, "10.79.1.1/24"), (&b, "10.79.1.2/24")] {
        assert!(sh(&["ip", "-n", &ns.0, "addr", "add", addr, "dev", "v0"]));
    }
    for ns in [&a, &b] {
        assert!(sh(&["ip", "-n", &ns.0, "link", "set", "v0", "up"]));
    }
    let (na, nb) = (a.0.clone(), b.0.clone());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(body(na, nb));
    })
    .join()
    .unwrap();
}

/// A remote-backup profile with a DHCP server following group v0/9.
fn dhcp_profile() -> hotlease::backup::config::BackupProfile {
    hotlease::backup::config::BackupProfile {
        name: "rbp1".into(),
        vrrp_interface: "v0".into(),
        vrid: 9,
        backup_id: 1,
        service: "rbs1".into(),
        dhcp_server: true,
    }
}

/// Two runtimes in two namespaces joined by a veth pair: B (priority 100)
/// is master; A (priority 200, preempt, delay 0) comes up with a
/// remote-backup-profile following its group. A stays backup while held
/// (whatever the backup subsystem said before the group existed) and
/// preempts as soon as the hold is released.
#[test]
fn a_held_group_preempts_only_when_released() {
    on_a_veth_pair("h", held);
}

async fn held(na: String, nb: String) {
    let settings = VrrpSettings {
        enabled: true,
        realtime_priority: 0,
    };
    let shutdown = CancellationToken::new();
    // Each runtime's thread is spawned in the namespace this thread is in.
    enter(&nb);
    let (mut vb, task_b) = Vrrp::start(&settings, shutdown.clone());
    let mut eb = vb.subscribe();
    vb.apply(&Config::default(), &held_group(100));
    assert_eq!(next(&mut eb).await.new, State::Backup);
    assert_eq!(next(&mut eb).await.new, State::Master);

    enter(&na);
    let (mut va, task_a) = Vrrp::start(&settings, shutdown.clone());
    let mut ea = va.subscribe();
    let holds = va.preempt_holds();
    // said before the group and its profile exist: kept
    holds.set("v0", 9, Some("batch backup running".into()));
    let mut cfg = held_group(200);
    cfg.backup.profiles.insert("rbp1".into(), dhcp_profile());
    va.apply(&Config::default(), &cfg);
    let up = next(&mut ea).await;
    assert_eq!((up.new, up.reason), (State::Backup, Reason::Startup));
    // 15 Master_Down_Intervals of the lower master: no preemption
    let quiet = tokio::time::timeout(Duration::from_millis(5000), ea.recv()).await;
    assert!(quiet.is_err(), "a held router changed state: {quiet:?}");
    let xml = va.state_xml();
    assert_eq!(hold_and_state(&xml), (true, "backup".into()), "{xml}");
    assert!(
        xml.contains("<preempt-hold-reason>batch backup running</preempt-hold-reason>")
            && xml.contains("<master-address>10.79.1.2</master-address>"),
        "{xml}"
    );
    assert_eq!(hold_and_state(&vb.state_xml()), (false, "master".into()));
    assert!(eb.try_recv().is_err(), "B stayed master");

    holds.set("v0", 9, None);
    let released = std::time::SystemTime::now();
    let took = next(&mut ea).await;
    assert_eq!(
        (took.old, took.new, took.reason),
        (State::Backup, State::Master, Reason::Preempt)
    );
    // delay 0: at once (the actor's next turn), not a Master_Down_Interval later
    let after = took.at.duration_since(released).unwrap_or_default();
    assert!(after < Duration::from_millis(200), "{after:?}");
    let gave = next(&mut eb).await;
    assert_eq!(
        (gave.new, gave.reason),
        (State::Backup, Reason::HigherPriority)
    );
    assert_eq!(hold_and_state(&va.state_xml()), (false, "master".into()));

    shutdown.cancel();
    for task in [task_a, task_b] {
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the runtime stops in time")
            .unwrap();
    }
}

/// Issue 15, the runtime's side: A (priority 200, a profile with a DHCP
/// server following its group) is master over B (100). A's lease store
/// fails: A resigns at once (priority 0) and B takes over after its
/// Skew_Time; A stays backup at priority 1 and shows why. The store works
/// again: A preempts B (delay 0: at its master down timer).
#[test]
fn a_group_tracking_a_failed_store_hands_over_and_takes_back() {
    on_a_veth_pair("t", tracked);
}

async fn tracked(na: String, nb: String) {
    let settings = VrrpSettings {
        enabled: true,
        realtime_priority: 0,
    };
    let shutdown = CancellationToken::new();
    enter(&na);
    let (mut va, task_a) = Vrrp::start(&settings, shutdown.clone());
    let mut ea = va.subscribe();
    let (store, health) = tokio::sync::watch::channel(None::<String>);
    va.track_store(health);
    let mut cfg = held_group(200);
    cfg.backup.profiles.insert("rbp1".into(), dhcp_profile());
    va.apply(&Config::default(), &cfg);
    // released, as the hot backup does once in sync
    va.preempt_holds().set("v0", 9, None);
    assert_eq!(next(&mut ea).await.new, State::Backup);
    assert_eq!(next(&mut ea).await.new, State::Master);

    enter(&nb);
    let (mut vb, task_b) = Vrrp::start(&settings, shutdown.clone());
    let mut eb = vb.subscribe();
    vb.apply(&Config::default(), &held_group(100));
    assert_eq!(next(&mut eb).await.new, State::Backup);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(ea.try_recv().is_err() && eb.try_recv().is_err());

    let why = "lease store /x/leases.log: No space left on device (os error 28)";
    store.send_replace(Some(why.into()));
    let gave = next(&mut ea).await;
    assert_eq!(
        (gave.old, gave.new, gave.reason),
        (State::Master, State::Backup, Reason::TrackedDown)
    );
    let took = next(&mut eb).await;
    assert_eq!(
        (took.new, took.reason),
        (State::Master, Reason::PriorityZero)
    );
    // B's Skew_Time: 156/256 × 100 ms, not its Master_Down_Interval
    let after = took.at.duration_since(gave.at).unwrap_or_default();
    assert!(after < Duration::from_millis(200), "{after:?}");
    let xml = va.state_xml();
    assert!(
        xml.contains("<effective-priority>1</effective-priority>")
            && xml.contains("<tracked-down>true</tracked-down>")
            && xml.contains(&format!("<tracked-down-reason>{why}</tracked-down-reason>"))
            && xml.contains("<tracked-down-transitions>1</tracked-down-transitions>"),
        "{xml}"
    );
    // 15 Master_Down_Intervals of B: A does not preempt
    let quiet = tokio::time::timeout(Duration::from_millis(5000), ea.recv()).await;
    assert!(quiet.is_err(), "a tracked router changed state: {quiet:?}");
    assert!(va
        .state_xml()
        .contains("<master-address>10.79.1.2</master-address>"));

    store.send_replace(None);
    let back = std::time::SystemTime::now();
    let took = next(&mut ea).await;
    assert_eq!(
        (took.old, took.new, took.reason),
        (State::Backup, State::Master, Reason::Preempt)
    );
    let after = took.at.duration_since(back).unwrap_or_default();
    assert!(after < Duration::from_millis(600), "{after:?}");
    assert_eq!(next(&mut eb).await.new, State::Backup);
    let xml = va.state_xml();
    assert!(
        xml.contains("<effective-priority>200</effective-priority>")
            && xml.contains("<tracked-down>false</tracked-down>"),
        "{xml}"
    );

    shutdown.cancel();
    for task in [task_a, task_b] {
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the runtime stops in time")
            .unwrap();
    }
}
