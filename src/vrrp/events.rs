//! State changes of VRRP groups, published inside the process: the
//! hot-backup runtime follows its group's role, NETCONF notifications
//! report them. A `broadcast` channel: a slow subscriber lags (and is told
//! so by `RecvError::Lagged`) instead of slowing the protocol down.

use std::time::SystemTime;

use tokio::sync::broadcast;

use super::instance::{Reason, State};

/// One transition of one group (the YANG notification `state-change`).
#[derive(Debug, Clone, PartialEq)]
pub struct StateChange {
    pub interface: String,
    pub vrid: u8,
    pub old: State,
    pub new: State,
    pub reason: Reason,
    pub at: SystemTime,
}

/// Room for bursts (every group changing at once at startup).
pub const CAPACITY: usize = 256;

pub fn channel() -> broadcast::Sender<StateChange> {
    broadcast::channel(CAPACITY).0
}
