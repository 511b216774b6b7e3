//! Dual-device hot backup (issue 10): the remote backup service (RBS, the
//! channel to the partner router) and the remote backup profile (RBP, which
//! pools follow which VRRP group), as in `hotlease-remote-backup.yang`.
//!
//! What exists today:
//! - `service`: the subsystem the daemon runs and the northbound commits
//!   to: one channel per remote-backup-service, diffed by name on each
//!   commit, and the service's state for `<get>` (connection, addresses,
//!   TLS, last up/down and reasons, round-trip time, counters). It keeps
//!   and drains the sessions until the sync actor takes them over;
//! - `config`: the typed configuration of SSL policies, services and
//!   profiles, read from the validated tree (`TryFrom`), part of
//!   `config::Config`;
//! - `wire`: the pure protocol of the channel — the messages both routers
//!   exchange, their compact binary encoding (serde + postcard), the frame
//!   layout (`LengthDelimitedCodec`) and the version rule. It does no I/O
//!   and holds no state beyond one frame being read; it is tested with
//!   byte vectors both ways and fuzzed (`tests/dhcp_fuzz.rs`).
//! - `channel`: one session per service, configured by its own
//!   `ChannelConfig` (source, peer, port, TLS files, keepalive interval,
//!   dead time, the hello to send). It listens on `source:port`, dials
//!   `peer:port` from `source`, closes and counts connections from any
//!   other address, keeps exactly one session when both routers dial at
//!   once (the higher source address arbitrates and keeps its own dial),
//!   runs the `Hello`/`HelloReply` exchange (unknown versions refused with
//!   the codec's reason), keepalive with round-trip time and dead timer,
//!   reconnects with jittered backoff, and hands each session to its owner
//!   as `ChannelEvent::Up { Session, peer hello, verdicts }` / `Down {
//!   reason }`. Its state (connection, since, last up/down and reason,
//!   last failed attempt, TLS peer subject, RTT, counters) is read without
//!   waiting on it. Tests run two channels (or a scripted peer) over
//!   127.0.0.1/127.0.0.2.
//! - `tls`: the mutual TLS of a service with an ssl-policy (rustls,
//!   aws-lc-rs, TLS 1.3): the peer certificate must chain to `trusted-ca`
//!   and carry the peer address as an IP subjectAltName, both ways.
//!
//! The DHCP side of replication exists in `dhcp::replication` (reached
//! through `dhcp::Hooks::replication()`): log sequence numbers, a
//! subscriber that streams the lease log's batches in order, and the
//! per-profile gate that holds DHCPACKs until the partner acknowledges.
//!
//! Not built yet: a pool bound to a profile still never serves, and no
//! lease crosses the channel. The layers still to come, split like `dhcp/`
//! and `vrrp/`:
//! - the rest of the northbound glue: the `batch-backup` rpc, the
//!   profiles' state, the service's lease counters;
//! - the sync actor, owner of the channel's sessions: it subscribes to the
//!   lease log and sends its batches, opens the profiles' gates and feeds
//!   them the partner's cumulative acknowledgements, applies the partner's
//!   batches (origin peer), the degraded mode, the paged batch backup, the clock
//!   skew check on the peer's hello, profile verdicts into profile state,
//!   split-brain allocation and its healing;
//! - roles: each profile following its VRRP group (sent as
//!   `Message::Role`, and kept current in the hello with
//!   `Channel::set_hello`), and preemption held until the returning
//!   router's batch backup is complete.

pub mod channel;
pub mod config;
pub mod fingerprint;
pub mod service;
pub mod sync;
pub mod tls;
pub mod wire;
