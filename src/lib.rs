//! hotlease: a NETCONF-managed DHCPv4 server with VRRP and dual-device hot
//! backup, in one process.
//!
//! The crate is laid out as in `STYLE.md`: `netconf` speaks the protocol,
//! `northbound` owns the datastores and the commit pipeline, and each
//! subsystem (`dhcp`, `vrrp`, `backup`) receives typed configuration from it.

// `unsafe` only where libyang's C API must be called directly (yang.rs,
// northbound/edit.rs, northbound/validate.rs, northbound/allowed.rs) and for AF_PACKET addresses
// and setpriority (dhcp/network.rs, dhcp/os.rs), each with a SAFETY comment.
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_debug_implementations)]

pub mod backup;
pub mod bootstrap;
pub mod check;
pub mod config;
pub mod daemon;
pub mod dhcp;
pub mod event;
pub mod fault;
pub mod metrics;
pub mod netconf;
pub mod northbound;
pub mod sched;
pub mod vrrp;
pub mod xml;
pub mod yang;
