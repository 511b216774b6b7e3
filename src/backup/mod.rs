//! Dual-device hot backup (issue 10): the remote backup service (RBS, the
//! channel to the partner router) and the remote backup profile (RBP, which
//! pools follow which VRRP group), as in `hotlease-remote-backup.yang`.
//!
//! The layers, split like `dhcp/` and `vrrp/`:
//! - `service`: the subsystem the daemon runs and the northbound commits
//!   to: one task per remote-backup-service (on the DHCP actor's thread,
//!   `dhcp::Hooks::spawn`, with its channel's tasks), diffed by name on each
//!   commit, owning the service's channel and, per session, its sync; the
//!   state for `<get>` (connection, addresses, TLS, last up/down and
//!   reasons, round-trip time, lease counters, last batch backups, and per
//!   profile role, peer role, peer check, sync state, backup mode); the
//!   `batch-backup` rpc (`Subsystem::call`). It also drives the DHCP
//!   server's per-profile gates: a profile's pools serve while its VRRP
//!   group is master here, and take new addresses from this router's half
//!   while the peer may be master too (split brain);
//! - `config`: the typed configuration of SSL policies, services and
//!   profiles, read from the validated tree (`TryFrom`), part of
//!   `config::Config`;
//! - `sync`: the sync state machine of one session, owned by the service
//!   task: the lease log's batches to the peer (acknowledged once durable
//!   there; the profiles' ACK gates fed from the acks), the peer's batches
//!   applied (newest lease wins, origin peer) and acknowledged once
//!   durable here, the paged batch backup both ways when the session comes
//!   up and on invitation, the preemption hold of each profile's VRRP
//!   group until this router holds every lease of the peer;
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
//! - `fingerprint`: the hash of a profile's pool configuration both
//!   routers compare in the hello.
//!
//! The DHCP side is reached through `dhcp::Hooks`: the lease log's
//! numbered batches and the per-profile ACK gates (`dhcp::replication`),
//! the merge of the peer's leases (`dhcp::peer`, `LeaseTable::merge_peer`),
//! the serving gate and the split-brain half. The VRRP side through
//! `vrrp::hold::PreemptHolds`.

pub mod channel;
pub mod config;
pub mod fingerprint;
pub mod service;
pub mod sync;
pub mod tls;
pub mod wire;
