//! Preemption holds: which VRRP groups may not preempt now, and why.
//!
//! A group that a remote-backup-profile follows is held from the moment it
//! is configured, with [`WAITING`] as its reason, so that a router starting
//! up never preempts before the hot backup had a chance to speak. The
//! backup subsystem then says per group, through a [`PreemptHolds`]
//! handle, whether it stays held (and why) or is released (its batch
//! backup from the current master is complete). A group that no profile
//! follows is never held, whatever was said about it.
//!
//! What the backup subsystem says is kept per group even before the group
//! or its profile is configured, so that either order at boot works; it is
//! forgotten when the group stops being followed by a profile, so that a
//! profile added again starts held.
//!
//! The table lives in the VRRP snapshot (one std mutex, short sections):
//! `<get>` reads it from the northbound, the handle writes it from the
//! backup subsystem's tasks, and the VRRP actor, woken by a [`Notify`],
//! copies each group's hold into its state machine.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::{Key, Snapshot};

/// The reason of a group held because a profile follows it and the
/// backup subsystem has not said otherwise yet.
pub const WAITING: &str = "waiting for the batch backup from the peer";

/// Who is held, as the configuration and the backup subsystem say.
#[derive(Debug, Default)]
pub struct Holds {
    /// Groups some remote-backup-profile follows.
    bound: BTreeSet<Key>,
    /// What the backup subsystem said: `Some(reason)` held, `None` released.
    said: BTreeMap<Key, Option<String>>,
}

impl Holds {
    /// The hold a group runs with.
    pub fn get(&self, key: &Key) -> Option<String> {
        if !self.bound.contains(key) {
            return None;
        }
        match self.said.get(key) {
            Some(said) => said.clone(),
            None => Some(WAITING.to_string()),
        }
    }

    /// The groups the configuration's profiles follow; what was said about
    /// a group no longer followed is forgotten.
    pub fn set_bound(&mut self, bound: BTreeSet<Key>) {
        for gone in self.bound.difference(&bound) {
            self.said.remove(gone);
        }
        self.bound = bound;
    }

    pub fn say(&mut self, key: Key, hold: Option<String>) {
        self.said.insert(key, hold);
    }
}

/// The backup subsystem's handle on the holds (from `Vrrp::preempt_holds`):
/// cheap to clone, usable from any thread, never blocks on the VRRP actor.
#[derive(Debug, Clone)]
pub struct PreemptHolds {
    pub(super) snapshot: Arc<Mutex<Snapshot>>,
    pub(super) changed: Arc<Notify>,
}

impl PreemptHolds {
    /// Hold the preemption of group (`interface`, `vrid`) with a reason
    /// shown in its state (`Some`), or release it (`None`). Takes effect
    /// only while a remote-backup-profile follows the group; it may be
    /// called before the group or the profile is configured, and is then
    /// applied when they are.
    pub fn set(&self, interface: &str, vrid: u8, hold: Option<String>) {
        let key = (interface.to_string(), vrid);
        {
            let mut snap = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
            if snap.holds.said.get(&key) == Some(&hold) {
                return;
            }
            snap.holds.say(key, hold);
        }
        // A permit is stored when the actor is busy: no change is missed.
        self.changed.notify_one();
    }

    /// The hold group (`interface`, `vrid`) runs with now: `Some(reason)`
    /// when held (for the profile's state).
    pub fn get(&self, interface: &str, vrid: u8) -> Option<String> {
        let snap = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
        snap.holds.get(&(interface.to_string(), vrid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(vrid: u8) -> Key {
        ("eth0".to_string(), vrid)
    }

    #[test]
    fn a_followed_group_is_held_until_released_and_an_unfollowed_one_never() {
        let mut h = Holds::default();
        h.set_bound([key(1)].into());
        assert_eq!(h.get(&key(1)).as_deref(), Some(WAITING));
        assert_eq!(h.get(&key(2)), None);
        h.say(key(1), Some("batch backup 40 %".into()));
        h.say(key(2), Some("batch backup 40 %".into()));
        assert_eq!(h.get(&key(1)).as_deref(), Some("batch backup 40 %"));
        assert_eq!(h.get(&key(2)), None, "no profile follows it");
        h.say(key(1), None);
        assert_eq!(h.get(&key(1)), None);
    }

    #[test]
    fn what_is_said_before_the_profile_exists_applies_when_it_does() {
        let mut h = Holds::default();
        h.say(key(1), None);
        h.say(key(2), Some("sync".into()));
        h.set_bound([key(1), key(2), key(3)].into());
        assert_eq!(h.get(&key(1)), None);
        assert_eq!(h.get(&key(2)).as_deref(), Some("sync"));
        assert_eq!(h.get(&key(3)).as_deref(), Some(WAITING));
    }

    #[test]
    fn removing_the_profile_releases_and_adding_it_again_holds_again() {
        let mut h = Holds::default();
        h.set_bound([key(1)].into());
        h.set_bound(BTreeSet::new());
        assert_eq!(h.get(&key(1)), None);
        h.set_bound([key(1)].into());
        h.say(key(1), None);
        assert_eq!(h.get(&key(1)), None);
        h.set_bound(BTreeSet::new());
        h.set_bound([key(1)].into());
        assert_eq!(
            h.get(&key(1)).as_deref(),
            Some(WAITING),
            "a release is forgotten with its profile"
        );
    }
}
