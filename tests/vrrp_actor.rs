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
