//! What a controller reads to discover the server (RFC 6022
//! `netconf-state`, RFC 8525 / RFC 7895 YANG library): the per-session
//! counters the session tasks keep, and the state documents the actor
//! builds from its sessions, locks and the libyang context for `<get>`.
//!
//! The YANG library is libyang's own report of the context
//! (`yang::yang_library`); `netconf-state` is written here and parsed
//! by libyang like any subsystem's state, so a reply that does not match
//! ietf-netconf-monitoring cannot leave the server.

use std::fmt::Write;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::SystemTime;

use crate::xml::escape_text;
use crate::yang;

/// Namespace of ietf-netconf-monitoring.
pub const NS: &str = super::ops::MONITORING_NS;
/// Namespace of ietf-yang-library (`yang-library`, `modules-state`).
pub const YANG_LIBRARY_NS: &str = "urn:ietf:params:xml:ns:yang:ietf-yang-library";

/// A session's RFC 6022 counters, kept by its task (atomics: the task
/// counts, the actor reads them for `<get>`).
#[derive(Debug, Default)]
pub struct SessionCounters {
    pub in_rpcs: AtomicU32,
    pub in_bad_rpcs: AtomicU32,
    pub out_rpc_errors: AtomicU32,
    pub out_notifications: AtomicU32,
    /// The session was dropped for a bad `<hello>`.
    pub bad_hello: AtomicBool,
}

impl SessionCounters {
    /// Count one.
    pub fn bump(counter: &AtomicU32) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> Totals {
        Totals {
            in_rpcs: self.in_rpcs.load(Ordering::Relaxed),
            in_bad_rpcs: self.in_bad_rpcs.load(Ordering::Relaxed),
            out_rpc_errors: self.out_rpc_errors.load(Ordering::Relaxed),
            out_notifications: self.out_notifications.load(Ordering::Relaxed),
            ..Totals::default()
        }
    }
}

/// RFC 6022 `statistics` counters (zero-based, 32 bits: they wrap).
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    pub in_sessions: u32,
    pub in_bad_hellos: u32,
    pub dropped_sessions: u32,
    pub in_rpcs: u32,
    pub in_bad_rpcs: u32,
    pub out_rpc_errors: u32,
    pub out_notifications: u32,
    /// Subscriptions ended for a full notification queue, the client
    /// told; sessions closed because it could not be (hotlease-vrrp's
    /// augment of `statistics`: RFC 6022 has no such counters).
    pub slow_subscriptions_ended: u32,
    pub slow_subscribers_closed: u32,
}

/// Namespace of the module that augments `statistics` (hotlease-vrrp).
const HOTLEASE_NS: &str = "urn:hotlease:yang:vrrp";

impl Totals {
    /// Add a session's rpc counters (a session that ended, or a live one).
    pub fn add(&mut self, c: &SessionCounters) {
        let s = c.snapshot();
        self.in_rpcs = self.in_rpcs.wrapping_add(s.in_rpcs);
        self.in_bad_rpcs = self.in_bad_rpcs.wrapping_add(s.in_bad_rpcs);
        self.out_rpc_errors = self.out_rpc_errors.wrapping_add(s.out_rpc_errors);
        self.out_notifications = self.out_notifications.wrapping_add(s.out_notifications);
    }
}

/// RFC 3339 time, as yang:date-and-time.
pub fn date_time(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// One session as `netconf-state/sessions` shows it.
#[derive(Debug)]
pub struct SessionView<'a> {
    pub id: u32,
    pub user: &'a str,
    pub source: Option<IpAddr>,
    pub login_time: &'a str,
    pub counters: &'a SessionCounters,
}

/// One datastore and its lock, for `netconf-state/datastores`.
#[derive(Debug)]
pub struct DatastoreView<'a> {
    pub name: &'static str,
    /// (session, locked-time) of a global lock held on it.
    pub lock: Option<(u32, &'a str)>,
}

/// The `netconf-state` document (RFC 6022 §2).
pub fn netconf_state(
    capabilities: &[String],
    datastores: &[DatastoreView<'_>],
    sessions: &[SessionView<'_>],
    start_time: &str,
    totals: &Totals,
) -> String {
    let mut x = format!("<netconf-state xmlns=\"{NS}\" xmlns:ncm=\"{NS}\"><capabilities>");
    for c in capabilities {
        let _ = write!(x, "<capability>{}</capability>", escape_text(c));
    }
    x.push_str("</capabilities><datastores>");
    for d in datastores {
        let _ = write!(x, "<datastore><name>{}</name>", d.name);
        if let Some((session, time)) = d.lock {
            let _ = write!(
                x,
                "<locks><global-lock><locked-by-session>{session}</locked-by-session><locked-time>{time}</locked-time></global-lock></locks>"
            );
        }
        x.push_str("</datastore>");
    }
    x.push_str("</datastores><schemas>");
    for s in yang::schemas() {
        for format in ["yang", "yin"] {
            let _ = write!(
                x,
                "<schema><identifier>{}</identifier><version>{}</version><format>ncm:{format}</format><namespace>{}</namespace><location>NETCONF</location></schema>",
                escape_text(&s.name),
                escape_text(&s.revision),
                escape_text(&s.namespace)
            );
        }
    }
    x.push_str("</schemas><sessions>");
    for s in sessions {
        let c = s.counters.snapshot();
        let _ = write!(
            x,
            "<session><session-id>{}</session-id><transport>ncm:netconf-ssh</transport><username>{}</username>",
            s.id,
            escape_text(s.user)
        );
        if let Some(ip) = s.source {
            let _ = write!(x, "<source-host>{}</source-host>", ip.to_canonical());
        }
        let _ = write!(
            x,
            "<login-time>{}</login-time><in-rpcs>{}</in-rpcs><in-bad-rpcs>{}</in-bad-rpcs><out-rpc-errors>{}</out-rpc-errors><out-notifications>{}</out-notifications></session>",
            s.login_time, c.in_rpcs, c.in_bad_rpcs, c.out_rpc_errors, c.out_notifications
        );
    }
    let _ = write!(
        x,
        "</sessions><statistics><netconf-start-time>{start_time}</netconf-start-time><in-bad-hellos>{}</in-bad-hellos><in-sessions>{}</in-sessions><dropped-sessions>{}</dropped-sessions><in-rpcs>{}</in-rpcs><in-bad-rpcs>{}</in-bad-rpcs><out-rpc-errors>{}</out-rpc-errors><out-notifications>{}</out-notifications><slow-subscriptions-ended xmlns=\"{HOTLEASE_NS}\">{}</slow-subscriptions-ended><slow-subscribers-closed xmlns=\"{HOTLEASE_NS}\">{}</slow-subscribers-closed></statistics></netconf-state>",
        totals.in_bad_hellos,
        totals.in_sessions,
        totals.dropped_sessions,
        totals.in_rpcs,
        totals.in_bad_rpcs,
        totals.out_rpc_errors,
        totals.out_notifications,
        totals.slow_subscriptions_ended,
        totals.slow_subscribers_closed,
    );
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    /// libyang accepts what we write, for every module of the context,
    /// with a lock and a session.
    #[test]
    fn netconf_state_parses_against_the_module() {
        let counters = SessionCounters::default();
        SessionCounters::bump(&counters.in_rpcs);
        let sessions = [SessionView {
            id: 3,
            user: "admin",
            source: Some("::ffff:127.0.0.1".parse().unwrap()),
            login_time: "2026-12-06T12:00:00Z",
            counters: &counters,
        }];
        let datastores = [
            DatastoreView {
                name: "running",
                lock: Some((3, "2026-12-06T12:00:01Z")),
            },
            DatastoreView {
                name: "candidate",
                lock: None,
            },
        ];
        let xml = netconf_state(
            &["urn:ietf:params:netconf:base:1.1".into()],
            &datastores,
            &sessions,
            "2026-12-06T11:00:00Z",
            &Totals {
                slow_subscriptions_ended: 4,
                slow_subscribers_closed: 2,
                ..Totals::default()
            },
        );
        let tree = yang::parse_state_xml(&xml).expect("netconf-state parses");
        let printed = yang::print_xml(&tree, yang::WithDefaults::Explicit);
        for want in [
            "<source-host>127.0.0.1</source-host>",
            "<locked-by-session>3</locked-by-session>",
            "<identifier>ietf-yang-types</identifier>",
            "<identifier>hotlease-dhcp-server</identifier>",
            "<in-rpcs>1</in-rpcs>",
            "<slow-subscriptions-ended xmlns=\"urn:hotlease:yang:vrrp\">4</slow-subscriptions-ended>",
            "<slow-subscribers-closed xmlns=\"urn:hotlease:yang:vrrp\">2</slow-subscribers-closed>",
        ] {
            assert!(printed.contains(want), "{want} missing from {printed}");
        }
    }

    /// Every module the YANG library lists can be fetched, in both formats.
    #[test]
    fn every_listed_module_has_a_schema() {
        let tree = yang::yang_library();
        let set = yang::find_xpath(&tree, "/ietf-yang-library:modules-state/module/name").unwrap();
        let names: Vec<String> = set.iter().filter_map(|n| n.value_canonical()).collect();
        assert!(names.len() >= 10, "{names:?}");
        for n in [
            "ietf-netconf-monitoring",
            "ietf-inet-types",
            "ietf-datastores",
        ] {
            assert!(names.iter().any(|m| m == n), "{n} not in {names:?}");
        }
        for n in &names {
            for f in [yang::SchemaFormat::Yang, yang::SchemaFormat::Yin] {
                let text = yang::schema_text(n, None, f).unwrap_or_default();
                assert!(text.contains(&**n), "no {f:?} text for {n}");
            }
        }
        let caps = yang::module_capabilities();
        assert!(caps.iter().any(|c| c.starts_with("urn:ietf:params:xml:ns:netconf:base:1.0?module=ietf-netconf&revision=2011-06-01&features=")), "{caps:?}");
    }
}
