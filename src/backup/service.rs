//! The remote-backup-service runtime as the northbound sees it: one
//! [`Channel`] per configured service, started, restarted and stopped by
//! the commits, and its state for `<get>`.
//!
//! ```text
//!  northbound ──prepare/apply──► BackupSubsystem ──spawn / cancel──► service task (one per service)
//!  northbound <get> ──state_xml──► ChannelView::state()                 │ owns the Channel:
//!                                  (a snapshot, never waits)            │ ChannelEvent::{Up, Down},
//!                                                                       │ drains the session,
//!                                                                       ▼ Channel::shutdown at the end
//!  daemon ◄── the task of `start`: ends when every service task has ended after shutdown
//! ```
//!
//! `apply` diffs the old and new services *by name*: a new service gets a
//! channel, a deleted one is stopped (its session closed with
//! `Close(Shutdown)`, so the peer shows that reason), a service whose own
//! configuration changed (peer, source, port, timers, its ssl-policy or
//! that policy's files) is restarted, and every other service keeps its
//! session. A change of the profiles bound to a service only changes the
//! hello of its next connections ([`Channel::set_hello`]). A restarted
//! service's new channel starts once the old one has released
//! `source:port`.
//!
//! The hello carries, per profile bound to the service, its backup-id;
//! its fingerprint is 0 and its role `Initialize` until the sync actor
//! computes the fingerprint of the bound pools and follows the VRRP
//! groups (issue 10), so today the peer's verdicts only compare
//! backup-ids.
//!
//! Nobody consumes the sessions yet: the sync actor (lease batches,
//! acknowledgements, batch backup) will own them. Until then the service
//! task keeps each session it is handed and reads it, so that it stays
//! healthy (a session whose owner stops reading is ended by the peer's
//! dead timer, see [`Session`]); keepalives are the channel's own, and
//! every other frame is counted and dropped with a debug line.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, Instrument};

use super::channel::{
    Channel, ChannelConfig, ChannelEvent, ChannelState, ChannelView, Connection, Session,
};
use super::config::{BackupConfig, BackupService};
use super::tls::TlsPaths;
use super::wire::{Hello, Message, ProfileHello, Role};
use crate::config::{Config, ConfigError, Subsystem};
use crate::xml::escape_text;

pub const NS: &str = "urn:hotlease:yang:remote-backup";

/// How long a restarted service waits for its previous channel to let
/// `source:port` go (`Channel::shutdown` takes about a second at most).
const PREVIOUS_STOP: Duration = Duration::from_secs(3);

/// Longest text of a reason or certificate subject shown in the state.
const MAX_TEXT: usize = 512;

/// What a running channel was started from: when it changes, the service
/// is restarted.
#[derive(Debug, Clone, PartialEq)]
struct Spec {
    service: BackupService,
    tls: Option<TlsPaths>,
}

impl Spec {
    fn of(svc: &BackupService, cfg: &BackupConfig) -> Spec {
        let tls = svc
            .ssl_policy
            .as_ref()
            .and_then(|p| cfg.ssl_policies.get(p))
            .map(|p| TlsPaths {
                certificate: p.certificate.clone().into(),
                private_key: p.private_key.clone().into(),
                trusted_ca: p.trusted_ca.clone().map(Into::into),
            });
        Spec {
            service: svc.clone(),
            tls,
        }
    }

    fn channel_config(&self, hello: Hello) -> ChannelConfig {
        let s = &self.service;
        let mut c = ChannelConfig::new(&s.name, s.source, s.peer, s.port, hello);
        c.tls = self.tls.clone();
        c.keepalive_interval = s.keepalive_interval;
        c.dead_time = s.dead_time;
        c
    }
}

/// The hello of service `name`: the backup-ids of the profiles bound to
/// it (fingerprint 0 and role `Initialize` until the sync actor exists).
fn hello_of(name: &str, cfg: &BackupConfig) -> Hello {
    let mut profiles: Vec<ProfileHello> = cfg
        .profiles
        .values()
        .filter(|p| p.service == name)
        .map(|p| ProfileHello {
            backup_id: p.backup_id,
            fingerprint: 0,
            role: Role::Initialize,
        })
        .collect();
    profiles.sort_by_key(|p| p.backup_id);
    Hello {
        // set by the channel to its source address
        source: std::net::Ipv4Addr::UNSPECIFIED,
        software: env!("CARGO_PKG_VERSION").to_owned(),
        unix_time: 0,
        profiles,
    }
}

/// A configured service and its task.
#[derive(Debug)]
struct Service {
    spec: Spec,
    hello: watch::Sender<Hello>,
    /// Set by the task once its channel runs (a restarted service first
    /// waits for its previous channel to stop).
    view: Arc<OnceLock<ChannelView>>,
    /// When the service was (re)configured: `since` until the channel runs.
    created: SystemTime,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Drop for Service {
    /// A deleted or replaced service stops its channel (gracefully: the
    /// task closes the session with `Close(Shutdown)`).
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The backup subsystem: the remote-backup-services' channels.
#[derive(Debug)]
pub struct BackupSubsystem {
    services: BTreeMap<String, Service>,
    shutdown: CancellationToken,
    /// Held by every service task (and by this subsystem), so that the
    /// task of [`start`] knows when they have all ended.
    done: mpsc::Sender<()>,
}

/// Start the backup runtime (no service runs until a commit configures
/// one). The task ends once `shutdown` is cancelled and every service
/// task has closed its session; the daemon supervises and awaits it.
pub fn start(shutdown: CancellationToken) -> (BackupSubsystem, JoinHandle<()>) {
    let (done, mut all_done) = mpsc::channel::<()>(1);
    let token = shutdown.clone();
    let task = tokio::spawn(async move {
        token.cancelled().await;
        // None once the subsystem and every service task let go of `done`
        let _ = all_done.recv().await;
    });
    (
        BackupSubsystem {
            services: BTreeMap::new(),
            shutdown,
            done,
        },
        task,
    )
}

impl BackupSubsystem {
    fn spawn(&self, spec: Spec, hello: Hello, previous: Option<JoinHandle<()>>) -> Service {
        let (hello_tx, hello_rx) = watch::channel(hello);
        let view = Arc::new(OnceLock::new());
        let stop = self.shutdown.child_token();
        let span = tracing::info_span!("backup_service", service = %spec.service.name);
        let task = tokio::spawn(
            run_service(
                spec.clone(),
                hello_rx,
                view.clone(),
                stop.clone(),
                previous,
                self.done.clone(),
            )
            .instrument(span),
        );
        Service {
            spec,
            hello: hello_tx,
            view,
            created: SystemTime::now(),
            stop,
            task: Some(task),
        }
    }
}

/// One service: run its channel until the service is deleted, replaced or
/// the daemon stops; keep and drain the sessions it hands over.
async fn run_service(
    spec: Spec,
    mut hello: watch::Receiver<Hello>,
    view: Arc<OnceLock<ChannelView>>,
    stop: CancellationToken,
    previous: Option<JoinHandle<()>>,
    _done: mpsc::Sender<()>,
) {
    if let Some(prev) = previous {
        // the previous channel of this service releases source:port first
        let _ = tokio::time::timeout(PREVIOUS_STOP, prev).await;
    }
    if stop.is_cancelled() {
        return;
    }
    let first = hello.borrow_and_update().clone();
    let (channel, mut events) = Channel::spawn(spec.channel_config(first));
    let _ = view.set(channel.view());
    let mut session: Option<(u64, Session)> = None;
    let mut dropped: u64 = 0;
    let mut hello_open = true;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            changed = hello.changed(), if hello_open => match changed {
                Ok(()) => channel.set_hello(hello.borrow_and_update().clone()),
                Err(_) => hello_open = false,
            },
            ev = events.recv() => match ev {
                Some(ChannelEvent::Up(up)) => {
                    info!(
                        id = up.id,
                        peer_software = %up.peer_hello.software,
                        profiles = up.peer_hello.profiles.len(),
                        "session handed over (no sync actor yet: its frames are dropped)"
                    );
                    session = Some((up.id, up.session));
                }
                Some(ChannelEvent::Down { id, reason }) => {
                    debug!(id, %reason, "session gone");
                    if session.as_ref().is_some_and(|(s, _)| *s == id) {
                        session = None;
                    }
                }
                None => break,
            },
            m = next_frame(&mut session) => match m {
                Some(m) => {
                    dropped += 1;
                    debug!(dropped, kind = kind(&m), "frame dropped: no sync actor yet");
                }
                // the session ended; its Down event follows
                None => session = None,
            },
        }
    }
    drop(session);
    channel.shutdown().await;
}

/// The next frame of the session, if there is one (pending otherwise).
async fn next_frame(session: &mut Option<(u64, Session)>) -> Option<Message> {
    match session {
        Some((_, s)) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// The variant name of a message, for logs.
fn kind(m: &Message) -> String {
    let s = format!("{m:?}");
    s.split(['(', ' ', '{']).next().unwrap_or("?").to_owned()
}

impl Subsystem for BackupSubsystem {
    fn name(&self) -> &'static str {
        "backup"
    }

    /// Nothing is refused here: an address not (yet) configured on the
    /// router, a busy port or unreadable TLS files are retried with backoff
    /// and shown in the service's state (`last-failure-reason`), since they
    /// can be fixed outside this configuration (an address added later, a
    /// certificate installed) and checking them now would be a guess.
    fn prepare(&mut self, _old: &Config, _new: &Config) -> Result<(), Vec<ConfigError>> {
        Ok(())
    }

    fn apply(&mut self, _old: &Config, new: &Config) {
        let cfg = &new.backup;
        // deleted services stop (Service::drop)
        self.services
            .retain(|name, _| cfg.services.contains_key(name));
        for (name, svc) in &cfg.services {
            let spec = Spec::of(svc, cfg);
            let hello = hello_of(name, cfg);
            match self.services.get_mut(name) {
                Some(s) if s.spec == spec => {
                    // profiles changed at most: the next connections say so
                    s.hello.send_if_modified(|h| {
                        let changed = *h != hello;
                        *h = hello;
                        changed
                    });
                }
                existing => {
                    let previous = existing.and_then(|s| {
                        info!(service = %name, "configuration changed: restarting the channel");
                        s.stop.cancel();
                        s.task.take()
                    });
                    let s = self.spawn(spec, hello, previous);
                    self.services.insert(name.clone(), s);
                }
            }
        }
    }

    fn state_xml(&self) -> String {
        let mut x = String::new();
        for (name, s) in &self.services {
            let _ = write!(
                x,
                "<remote-backup-service xmlns=\"{NS}\"><name>{}</name><state>",
                escape_text(name)
            );
            match s.view.get() {
                Some(v) => render_state(&mut x, &v.state()),
                None => render_not_started(&mut x, s),
            }
            x.push_str("</state></remote-backup-service>");
        }
        x
    }
}

fn connection_str(c: Connection) -> &'static str {
    match c {
        Connection::Down => "down",
        Connection::Connecting => "connecting",
        Connection::Connected => "connected",
    }
}

fn date_time(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Text from outside (a peer's close reason, an OS error, a certificate
/// subject) made safe for a YANG string in XML 1.0: characters XML cannot
/// carry and control characters become '?', and it is cut at
/// [`MAX_TEXT`] characters, so that no peer can make libyang refuse the
/// state.
fn text(s: &str) -> String {
    let c: String = s
        .chars()
        .take(MAX_TEXT)
        .map(|c| {
            let xml = matches!(c, '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}');
            if xml && !c.is_control() {
                c
            } else {
                '?'
            }
        })
        .collect();
    escape_text(&c)
}

fn render_state(x: &mut String, st: &ChannelState) {
    let _ = write!(
        x,
        "<connection>{}</connection><since>{}</since><peer-address>{}</peer-address>\
         <source-address>{}</source-address><port>{}</port><tls>{}</tls>",
        connection_str(st.connection),
        date_time(st.since),
        st.peer,
        st.source,
        st.port,
        st.tls
    );
    if let Some(s) = &st.peer_certificate {
        let _ = write!(
            x,
            "<peer-certificate-subject>{}</peer-certificate-subject>",
            text(s)
        );
    }
    if let Some(t) = st.last_up {
        let _ = write!(x, "<last-up>{}</last-up>", date_time(t));
    }
    if let Some(t) = st.last_down {
        let _ = write!(x, "<last-down>{}</last-down>", date_time(t));
    }
    if let Some(r) = &st.last_down_reason {
        let _ = write!(
            x,
            "<last-down-reason>{}</last-down-reason>",
            text(&r.to_string())
        );
    }
    if let Some((t, r)) = &st.last_failure {
        let _ = write!(
            x,
            "<last-failure>{}</last-failure><last-failure-reason>{}</last-failure-reason>",
            date_time(*t),
            text(&r.to_string())
        );
    }
    if let (Connection::Connected, Some(rtt)) = (st.connection, st.rtt) {
        let us = u32::try_from(rtt.as_micros()).unwrap_or(u32::MAX);
        let _ = write!(x, "<round-trip-time>{us}</round-trip-time>");
    }
    let c = &st.counters;
    let _ = write!(
        x,
        "<sessions-up>{}</sessions-up><connections-refused>{}</connections-refused>\
         <frames-sent>{}</frames-sent><frames-received>{}</frames-received>\
         <bytes-sent>{}</bytes-sent><bytes-received>{}</bytes-received>\
         <undecodable-frames>{}</undecodable-frames>",
        c.sessions_up,
        c.refused_connections,
        c.frames_out,
        c.frames_in,
        c.bytes_out,
        c.bytes_in,
        c.undecodable_frames
    );
}

/// A restarted service whose previous channel is still stopping.
fn render_not_started(x: &mut String, s: &Service) {
    let svc = &s.spec.service;
    let _ = write!(
        x,
        "<connection>down</connection><since>{}</since><peer-address>{}</peer-address>\
         <source-address>{}</source-address><port>{}</port><tls>{}</tls>",
        date_time(s.created),
        svc.peer,
        svc.source,
        svc.port,
        s.spec.tls.is_some()
    );
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;
