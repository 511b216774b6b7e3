//! What the hot-backup partner's leases are to the DHCP server: the
//! updates the sync actor hands over (real-time batches and batch-backup
//! pages), what became of them, and why one was refused.
//!
//! The server applies a list of updates in one go, in order, merging each
//! into the lease table (newest lease wins, see `LeaseTable::merge_peer`),
//! writes what changed to the lease log like its own changes, and answers
//! with [`Applied`] only once all of it is durable: the sync actor then
//! acknowledges the partner's batch, so that an acknowledged lease survives
//! a crash of this router too.

use std::net::Ipv4Addr;

use super::leases::Lease;

/// One change the partner made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerUpdate {
    /// The partner's lease as it now is (its origin is set to peer here).
    Upsert(Lease),
    /// The partner deleted the lease on this address.
    Remove(Ipv4Addr),
}

impl PeerUpdate {
    pub fn ip(&self) -> Ipv4Addr {
        match self {
            PeerUpdate::Upsert(l) => l.ip,
            PeerUpdate::Remove(ip) => *ip,
        }
    }
}

/// Why an update was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerRefusal {
    /// No pool of that name here.
    UnknownPool,
    /// The pool (or, for a removal, the address) is not in a pool bound to
    /// one of the profiles the update may touch, or the address is outside
    /// the named pool.
    NotInProfile,
}

/// What became of a list of updates, sent once every change it made is
/// durable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// The partner's lease was newer (or ours was missing): taken.
    pub taken: u32,
    /// Ours was the same.
    pub unchanged: u32,
    /// Ours was newer: kept (the partner gets ours from its own batch
    /// backup, or has it already in flight).
    pub kept: u32,
    /// Removals applied, or ignored because ours is an active binding.
    pub removed: u32,
    /// Updates refused: address, pool named (empty for a removal), why.
    pub refused: Vec<(Ipv4Addr, String, PeerRefusal)>,
}
