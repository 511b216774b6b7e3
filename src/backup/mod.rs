//! Dual-device hot backup (issue 10): the remote backup service (RBS, the
//! channel to the partner router) and the remote backup profile (RBP, which
//! pools follow which VRRP group), as in `hotlease-remote-backup.yang`.
//!
//! What exists today is the first layer only:
//! - `wire`: the pure protocol of the channel — the messages both routers
//!   exchange, their compact binary encoding (serde + postcard), the frame
//!   layout (`LengthDelimitedCodec`) and the version rule. It does no I/O
//!   and holds no state beyond one frame being read; it is tested with
//!   byte vectors both ways and fuzzed (`tests/dhcp_fuzz.rs`).
//!
//! Not built yet, and so not wired into the daemon: a pool bound to a
//! profile still never serves, and nothing listens on a service's port.
//! The layers still to come, split like `dhcp/` and `vrrp/`:
//! - typed configuration of services and profiles (its part of today's
//!   `config.rs`) and the northbound glue (prepare/apply, state, the
//!   `batch-backup` rpc);
//! - the channel: one TCP (or mutual TLS) session per service, listen on
//!   `source:port` and connect to `peer:port`, one session kept when both
//!   connect at once, reconnect with backoff, keepalive and dead time;
//!   it runs `Framed<_, wire::WireCodec>` and forwards decoded messages;
//! - the sync actor: replication from the lease log in log order, the
//!   cumulative acknowledgements that release held DHCPACKs, the degraded
//!   mode, the paged batch backup, split-brain allocation and its healing;
//! - roles: each profile following its VRRP group, and preemption held
//!   until the returning router's batch backup is complete.

pub mod channel;
pub mod tls;
pub mod wire;
