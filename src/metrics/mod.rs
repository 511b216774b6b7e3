//! The Prometheus endpoint (`[metrics] listen` in the bootstrap file):
//! `GET /metrics` in the Prometheus text format, written by the
//! `prometheus-client` crate from collectors that read the counters the
//! subsystems keep anyway (atomics, and the `<get>` mirrors); a scrape adds
//! no bookkeeping to the DHCP path.
//!
//! ```text
//!  scraper ──GET /metrics──► serve (one task per connection, closed after the reply)
//!                               │ encode the registry
//!                               ▼
//!   Dhcp (Counters, pool stats) · Vrrp (group states) · Backup (channels, sync) · Netconf (sessions, rpcs)
//! ```
//! The listening socket is bound with the others before any runtime
//! starts (`daemon::run`): a busy port refuses the start and changes
//! nothing.

pub mod histogram;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::backup::channel::Connection;
use crate::vrrp::instance::State as VrrpState;
use histogram::HistogramSnapshot;

/// Errors starting the endpoint.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("[metrics] listen {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Bind the endpoint's socket (before anything touches an interface).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, MetricsError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })
}

/// Where each collector reads.
pub struct Sources {
    pub dhcp: crate::dhcp::MetricsReader,
    pub vrrp: VrrpReader,
    pub backup: crate::backup::service::MetricsReader,
    pub netconf: Arc<crate::northbound::stats::NetconfStats>,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources").finish_non_exhaustive()
    }
}

/// Every VRRP group's key, state and master transitions now.
pub type VrrpReader = Box<dyn Fn() -> Vec<(crate::vrrp::Key, VrrpState, u64)> + Send + Sync>;

/// The registry of every hotlease metric (prefix `hotlease_`).
pub fn registry(s: Sources) -> Registry {
    let mut r = Registry::with_prefix("hotlease");
    r.register_collector(Box::new(Dhcp(s.dhcp)));
    r.register_collector(Box::new(Vrrp(s.vrrp)));
    r.register_collector(Box::new(Backup(s.backup)));
    r.register_collector(Box::new(Netconf(s.netconf)));
    r
}

/// The registry in the Prometheus text format (version 0.0.4).
pub fn render(registry: &Registry) -> String {
    let mut out = String::with_capacity(8 * 1024);
    // writing into a String cannot fail; a collector's error would be a bug
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, registry) {
        warn!(error = %e, "metrics encoding failed");
    }
    out
}

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Scrapes served at once; beyond, a connection waits for its accept.
const MAX_CONNECTIONS: usize = 16;

/// Time a client has to send its request and read the reply.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Serve `GET /metrics` until `shutdown`; the connections still open are
/// dropped then.
pub async fn serve(listener: TcpListener, registry: Registry, shutdown: CancellationToken) {
    let registry = Arc::new(registry);
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "metrics endpoint listening");
    }
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        if conns.len() >= MAX_CONNECTIONS {
            tokio::select! {
                _ = conns.join_next() => continue,
                _ = shutdown.cancelled() => break,
            }
        }
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.cancelled() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                let registry = registry.clone();
                conns.spawn(async move {
                    if let Err(e) =
                        tokio::time::timeout(CLIENT_TIMEOUT, respond(stream, &registry)).await
                    {
                        debug!(%peer, error = %e, "metrics client too slow");
                    }
                });
            }
            Err(e) => {
                // out of descriptors, most likely: try again shortly
                warn!(error = %e, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    conns.shutdown().await;
}

/// The longest request head read; a scraper's is a few hundred bytes.
const MAX_HEAD: usize = 8 * 1024;

/// One HTTP/1.1 exchange: read the request head, answer, close.
async fn respond(mut stream: TcpStream, registry: &Registry) {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > MAX_HEAD {
            let _ = reply(
                &mut stream,
                "431 Request Header Fields Too Large",
                "",
                false,
            )
            .await;
            return;
        }
    }
    let (status, body) = route(&head, registry);
    let _ = reply(&mut stream, status, &body, status.starts_with("200")).await;
}

/// The status and body for a request head.
fn route(head: &[u8], registry: &Registry) -> (&'static str, String) {
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|b| *b == b' ');
    let (method, target) = (parts.next(), parts.next());
    let path = target.map(|t| t.split(|b| *b == b'?').next().unwrap_or_default());
    match (method, path) {
        (Some(b"GET"), Some(b"/metrics")) => ("200 OK", render(registry)),
        (Some(b"GET"), Some(_)) => ("404 Not Found", "only /metrics is served\n".into()),
        _ => (
            "405 Method Not Allowed",
            "only GET /metrics is served\n".into(),
        ),
    }
}

async fn reply(
    stream: &mut TcpStream,
    status: &str,
    body: &str,
    metrics: bool,
) -> std::io::Result<()> {
    let kind = if metrics {
        CONTENT_TYPE
    } else {
        "text/plain; charset=utf-8"
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

// ------------------------------------------------------------- encoding

type Labels = Vec<(&'static str, String)>;

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    let m = e.encode_descriptor(name, help, None, c.metric_type())?;
    c.encode(m)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> std::fmt::Result {
    let g = ConstGauge::new(v);
    let m = e.encode_descriptor(name, help, None, g.metric_type())?;
    g.encode(m)
}

/// A metric with one series per label set (none: no series, the help and
/// type lines only).
fn family<M: EncodeMetric>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric_type: MetricType,
    rows: impl IntoIterator<Item = (Labels, M)>,
) -> std::fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, metric_type)?;
    for (labels, v) in rows {
        v.encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A histogram read from a [`histogram::Histogram`].
#[derive(Debug)]
struct Hist(HistogramSnapshot);

impl EncodeMetric for Hist {
    fn encode(&self, mut e: MetricEncoder) -> std::fmt::Result {
        e.encode_histogram::<NoLabelSet>(self.0.sum, self.0.count, &self.0.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

fn histogram(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    h: HistogramSnapshot,
) -> std::fmt::Result {
    let m = e.encode_descriptor(name, help, None, MetricType::Histogram)?;
    Hist(h).encode(m)
}

fn label(name: &'static str, value: impl ToString) -> (&'static str, String) {
    (name, value.to_string())
}

// ------------------------------------------------------------- collectors

/// The DHCP server's counters (`Counters`, the ones `<get>` shows), its
/// pools and the ACK latency.
#[derive(Debug)]
struct Dhcp(crate::dhcp::MetricsReader);

impl Collector for Dhcp {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        use std::sync::atomic::Ordering::Relaxed;
        let c = self.0.counters();
        let g = |a: &std::sync::atomic::AtomicU64| a.load(Relaxed);
        let typed = |t: &str, a| (vec![label("type", t)], ConstCounter::new(g(a)));
        family(
            &mut e,
            "dhcp_received_messages",
            "DHCP requests received, by message type (dropped ones included)",
            MetricType::Counter,
            [
                typed("discover", &c.discover),
                typed("request", &c.request),
                typed("decline", &c.decline),
                typed("release", &c.release),
                typed("inform", &c.inform),
                typed("other", &c.other),
            ],
        )?;
        family(
            &mut e,
            "dhcp_sent_messages",
            "DHCP replies handed to the sockets, by message type",
            MetricType::Counter,
            [
                typed("offer", &c.offer),
                typed("ack", &c.ack),
                typed("nak", &c.nak),
            ],
        )?;
        counter(
            &mut e,
            "dhcp_packets_received",
            "UDP datagrams read on the DHCP sockets",
            g(&c.received),
        )?;
        let reason = |r: &str, a| (vec![label("reason", r)], ConstCounter::new(g(a)));
        family(
            &mut e,
            "dhcp_dropped_requests",
            "DHCP requests dropped without a reply, by reason",
            MetricType::Counter,
            [
                reason("malformed", &c.malformed),
                reason("interface", &c.wrong_interface),
                reason("no-pool", &c.no_pool),
                reason("not-serving", &c.not_serving),
                reason("exhausted", &c.exhausted),
            ],
        )?;
        counter(
            &mut e,
            "dhcp_ping_checks",
            "ICMP echo requests sent to probe an address before offering it (ping-check)",
            g(&c.ping_checks),
        )?;
        counter(
            &mut e,
            "dhcp_ping_conflicts",
            "Addresses a ping-check probe found in use (taken out as declined)",
            g(&c.ping_conflicts),
        )?;
        counter(
            &mut e,
            "dhcp_send_errors",
            "DHCP replies the sockets refused",
            g(&c.send_errors),
        )?;
        counter(
            &mut e,
            "dhcp_acks_withheld",
            "ACKs not sent because their leases could not be made durable",
            g(&c.acks_withheld),
        )?;
        counter(
            &mut e,
            "dhcp_acks_stale",
            "Hot-backup ACKs released and then not sent: this router did not run for a while in between",
            g(&c.acks_stale),
        )?;
        gauge(
            &mut e,
            "dhcp_lease_store_failed",
            "1 while the lease store fails (no ACK leaves)",
            i64::from(c.store_failed.load(Relaxed)),
        )?;
        histogram(
            &mut e,
            "dhcp_ack_latency_seconds",
            "From reading a request to sending its ACK, lease-log sync and the hot-backup partner's acknowledgement included",
            c.ack_latency.snapshot(),
        )?;
        let pools = self.0.pools();
        let per_pool = |f: fn(&crate::dhcp::leases::PoolStats) -> u64| {
            pools
                .iter()
                .map(move |(name, s)| {
                    let v = i64::try_from(f(s)).unwrap_or(i64::MAX);
                    (vec![label("pool", name)], ConstGauge::new(v))
                })
                .collect::<Vec<_>>()
        };
        for (name, help, f) in [
            (
                "dhcp_pool_addresses_total",
                "Addresses the pool can hand out",
                (|s| s.total) as fn(&crate::dhcp::leases::PoolStats) -> u64,
            ),
            (
                "dhcp_pool_addresses_used",
                "Addresses of the pool with a bound lease",
                |s| s.used,
            ),
            (
                "dhcp_pool_addresses_free",
                "Addresses of the pool neither leased, offered nor declined",
                |s| s.free,
            ),
        ] {
            family(&mut e, name, help, MetricType::Gauge, per_pool(f))?;
        }
        Ok(())
    }
}

/// The VRRP groups: state (one series per state, 1 for the current one)
/// and master transitions.
struct Vrrp(VrrpReader);

impl std::fmt::Debug for Vrrp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vrrp")
    }
}

impl Collector for Vrrp {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let groups = (self.0)();
        let key = |(ifname, vrid): &crate::vrrp::Key| {
            vec![label("interface", ifname), label("group", vrid)]
        };
        family(
            &mut e,
            "vrrp_state",
            "1 for the VRRP group's current state, 0 for the others",
            MetricType::Gauge,
            groups.iter().flat_map(|(k, state, _)| {
                [VrrpState::Initialize, VrrpState::Backup, VrrpState::Master]
                    .into_iter()
                    .map(move |s| {
                        let mut l = key(k);
                        l.push(label("state", s.as_str()));
                        (l, ConstGauge::new(i64::from(s == *state)))
                    })
            }),
        )?;
        family(
            &mut e,
            "vrrp_master_transitions",
            "Times the VRRP group became master",
            MetricType::Counter,
            groups
                .iter()
                .map(|(k, _, n)| (key(k), ConstCounter::new(*n))),
        )
    }
}

/// The remote-backup-services: channel state, replication, batch backup.
#[derive(Debug)]
struct Backup(crate::backup::service::MetricsReader);

impl Collector for Backup {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let services = self.0.read();
        let by = |f: fn(&crate::backup::service::ServiceMetrics) -> u64| {
            services
                .iter()
                .map(move |s| (vec![label("service", &s.name)], ConstCounter::new(f(s))))
                .collect::<Vec<_>>()
        };
        family(
            &mut e,
            "backup_channel_state",
            "1 for the backup channel's current connection state, 0 for the others",
            MetricType::Gauge,
            services.iter().flat_map(|s| {
                [
                    (Connection::Down, "down"),
                    (Connection::Connecting, "connecting"),
                    (Connection::Connected, "connected"),
                ]
                .into_iter()
                .map(|(c, name)| {
                    (
                        vec![label("service", &s.name), label("state", name)],
                        ConstGauge::new(i64::from(c == s.connection)),
                    )
                })
            }),
        )?;
        family(
            &mut e,
            "backup_records_sent",
            "Lease updates sent to the hot-backup partner",
            MetricType::Counter,
            by(|s| s.leases_sent),
        )?;
        family(
            &mut e,
            "backup_records_acknowledged",
            "Lease updates the partner acknowledged",
            MetricType::Counter,
            by(|s| s.leases_acknowledged),
        )?;
        family(
            &mut e,
            "backup_records_unsent",
            "Lease updates the partner has not acknowledged (in flight, or made while no session synced)",
            MetricType::Gauge,
            services.iter().map(|s| {
                (
                    vec![label("service", &s.name)],
                    ConstGauge::new(i64::try_from(s.unsent).unwrap_or(i64::MAX)),
                )
            }),
        )?;
        family(
            &mut e,
            "backup_last_batch_duration_seconds",
            "How long the last batch backup received from the partner took",
            MetricType::Gauge,
            services.iter().filter_map(|s| {
                s.last_batch_duration.map(|d| {
                    (
                        vec![label("service", &s.name)],
                        ConstGauge::new(d.as_secs_f64()),
                    )
                })
            }),
        )
    }
}

/// NETCONF sessions, rpcs and errors by operation, commit durations.
#[derive(Debug)]
struct Netconf(Arc<crate::northbound::stats::NetconfStats>);

impl Collector for Netconf {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let (open, total) = self.0.sessions();
        gauge(
            &mut e,
            "netconf_sessions",
            "NETCONF sessions open",
            i64::try_from(open).unwrap_or(i64::MAX),
        )?;
        counter(
            &mut e,
            "netconf_sessions_started",
            "NETCONF sessions started",
            total,
        )?;
        let (failures, throttled, refused) = self.0.refusals();
        counter(
            &mut e,
            "netconf_login_failures",
            "SSH password logins refused (wrong password or unknown user)",
            failures,
        )?;
        counter(
            &mut e,
            "netconf_logins_throttled",
            "SSH login attempts delayed or refused by the per-address throttle",
            throttled,
        )?;
        counter(
            &mut e,
            "netconf_sessions_refused",
            "NETCONF sessions refused by max-sessions or max-sessions-per-user",
            refused,
        )?;
        let (told, closed) = self.0.overflows();
        counter(
            &mut e,
            "netconf_subscriptions_overflowed",
            "Notification subscriptions ended because the session could not keep up (client sent notificationComplete)",
            told,
        )?;
        counter(
            &mut e,
            "netconf_subscribers_closed",
            "NETCONF sessions closed because their client read neither its notifications nor the notice that they stopped",
            closed,
        )?;
        let ops: Vec<_> = self.0.operations().collect();
        family(
            &mut e,
            "netconf_rpcs",
            "NETCONF rpcs answered, by operation",
            MetricType::Counter,
            ops.iter()
                .map(|(o, n, _)| (vec![label("operation", o)], ConstCounter::new(*n))),
        )?;
        family(
            &mut e,
            "netconf_rpc_errors",
            "NETCONF rpcs answered with rpc-error, by operation",
            MetricType::Counter,
            ops.iter()
                .map(|(o, _, n)| (vec![label("operation", o)], ConstCounter::new(*n))),
        )?;
        histogram(
            &mut e,
            "netconf_commit_duration_seconds",
            "How long each commit took (validation, the subsystems' prepare and apply)",
            self.0.commit_duration.snapshot(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dhcp::leases::{Lease, LeaseState, Origin};
    use crate::dhcp::server::{Counters, Snapshot};
    use std::sync::atomic::Ordering::Relaxed;
    use std::sync::Mutex;

    fn lease(ip: &str, pool: &str, state: LeaseState) -> Arc<Lease> {
        Arc::new(Lease {
            ip: ip.parse().unwrap(),
            pool: pool.into(),
            hw: vec![2, 0, 0, 0, 0, 1],
            client_id: None,
            hostname: None,
            state,
            lifetime: 3600,
            expires: u64::MAX / 2,
            origin: Origin::Local,
        })
    }

    /// The registry over counters and mirrors set by hand; the NETCONF
    /// stats are returned to be bumped.
    fn rig() -> (
        Registry,
        Arc<Counters>,
        Arc<crate::northbound::stats::NetconfStats>,
    ) {
        let counters = Arc::new(Counters::default());
        let mut snap = Snapshot::default();
        // what the lease table keeps for two bound leases and a released one
        let mut counts = crate::dhcp::leases::PoolCounts {
            used: 2,
            ..Default::default()
        };
        counts.states[LeaseState::Bound.index()] = 2;
        counts.states[LeaseState::Released.index()] = 1;
        snap.set_pools(std::iter::once(("lan".to_string(), 11, counts)));
        for (ip, st) in [
            ("10.0.0.10", LeaseState::Bound),
            ("10.0.0.11", LeaseState::Bound),
            ("10.0.0.12", LeaseState::Released),
        ] {
            let ip4: std::net::Ipv4Addr = ip.parse().unwrap();
            snap.set(ip4, Some(&lease(ip, "lan", st)), None);
        }
        let netconf = Arc::new(crate::northbound::stats::NetconfStats::default());
        let registry = registry(Sources {
            dhcp: crate::dhcp::MetricsReader::new(counters.clone(), Arc::new(Mutex::new(snap))),
            vrrp: Box::new(|| {
                vec![
                    (("eth1".into(), 7), VrrpState::Master, 3),
                    (("eth2".into(), 8), VrrpState::Backup, 0),
                ]
            }),
            backup: crate::backup::service::MetricsReader::default(),
            netconf: netconf.clone(),
        });
        (registry, counters, netconf)
    }

    fn has(text: &str, line: &str) -> bool {
        text.lines().any(|l| l == line)
    }

    #[test]
    fn the_scrape_reads_the_existing_counters() {
        let (registry, c, nc) = rig();
        c.discover.fetch_add(2, Relaxed);
        c.ack.fetch_add(1, Relaxed);
        c.not_serving.fetch_add(5, Relaxed);
        c.ping_checks.fetch_add(3, Relaxed);
        c.ping_conflicts.fetch_add(1, Relaxed);
        c.ack_latency.observe(Duration::from_millis(3));
        nc.rpc("commit", false);
        nc.rpc("edit-config", true);
        nc.commit_duration.observe(Duration::from_millis(40));
        nc.subscription_overflowed(false);
        nc.subscription_overflowed(true);
        nc.subscription_overflowed(true);
        let t = render(&registry);
        for line in [
            "# TYPE hotlease_dhcp_received_messages_total counter",
            "hotlease_dhcp_received_messages_total{type=\"discover\"} 2",
            "hotlease_dhcp_received_messages_total{type=\"request\"} 0",
            "hotlease_dhcp_sent_messages_total{type=\"ack\"} 1",
            "hotlease_dhcp_dropped_requests_total{reason=\"not-serving\"} 5",
            "hotlease_dhcp_ping_checks_total 3",
            "hotlease_dhcp_ping_conflicts_total 1",
            "hotlease_dhcp_pool_addresses_total{pool=\"lan\"} 11",
            "hotlease_dhcp_pool_addresses_used{pool=\"lan\"} 2",
            "hotlease_dhcp_pool_addresses_free{pool=\"lan\"} 9",
            "# TYPE hotlease_dhcp_ack_latency_seconds histogram",
            "hotlease_dhcp_ack_latency_seconds_bucket{le=\"0.002\"} 0",
            "hotlease_dhcp_ack_latency_seconds_bucket{le=\"0.005\"} 1",
            "hotlease_dhcp_ack_latency_seconds_bucket{le=\"+Inf\"} 1",
            "hotlease_dhcp_ack_latency_seconds_count 1",
            "hotlease_vrrp_state{interface=\"eth1\",group=\"7\",state=\"master\"} 1",
            "hotlease_vrrp_state{interface=\"eth1\",group=\"7\",state=\"backup\"} 0",
            "hotlease_vrrp_state{interface=\"eth2\",group=\"8\",state=\"backup\"} 1",
            "hotlease_vrrp_master_transitions_total{interface=\"eth1\",group=\"7\"} 3",
            "# TYPE hotlease_backup_records_unsent gauge",
            "hotlease_netconf_rpcs_total{operation=\"commit\"} 1",
            "hotlease_netconf_rpc_errors_total{operation=\"edit-config\"} 1",
            "hotlease_netconf_rpc_errors_total{operation=\"commit\"} 0",
            "hotlease_netconf_commit_duration_seconds_bucket{le=\"0.05\"} 1",
            "hotlease_netconf_sessions 0",
            "hotlease_netconf_subscriptions_overflowed_total 1",
            "hotlease_netconf_subscribers_closed_total 2",
        ] {
            assert!(has(&t, line), "{line} missing from:\n{t}");
        }
        // a scrape changes nothing: the same text again
        assert_eq!(render(&registry), t);
    }

    #[test]
    fn only_get_metrics_is_routed() {
        let (registry, _, _) = rig();
        let route = |head: &str| route(head.as_bytes(), &registry).0;
        assert_eq!(route("GET /metrics HTTP/1.1\r\n\r\n"), "200 OK");
        assert_eq!(route("GET /metrics?a=b HTTP/1.1\r\n\r\n"), "200 OK");
        assert_eq!(route("GET / HTTP/1.1\r\n\r\n"), "404 Not Found");
        assert_eq!(
            route("POST /metrics HTTP/1.1\r\n\r\n"),
            "405 Method Not Allowed"
        );
        assert_eq!(route("\r\n\r\n"), "405 Method Not Allowed");
    }

    #[tokio::test]
    async fn serves_a_scrape_over_tcp_and_stops_on_shutdown() {
        let (registry, c, _) = rig();
        c.offer.fetch_add(4, Relaxed);
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve(listener, registry, stop.clone()));
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).await.unwrap();
        let (head, body) = reply.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{head}"
        );
        assert!(
            head.contains("Content-Type: text/plain; version=0.0.4"),
            "{head}"
        );
        assert!(has(
            body,
            "hotlease_dhcp_sent_messages_total{type=\"offer\"} 4"
        ));
        // a second daemon cannot take the port
        let busy = bind(addr).await.unwrap_err().to_string();
        assert!(
            busy.starts_with(&format!("[metrics] listen {addr}: ")),
            "{busy}"
        );
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }
}
