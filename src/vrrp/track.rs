//! Tracked objects: what a VRRP group needs to do its job as master, and
//! whether it works now.
//!
//! The one object tracked is the lease store of the DHCP server: a group
//! that a remote-backup-profile with `dhcp-server` follows elects the
//! router that grants the leases, and a master whose store cannot write
//! withholds every ACK (it never sends one it cannot keep) while the
//! backup could serve. While the store fails, such a group runs at
//! `instance::TRACKED_PRIORITY` (see `Instance::set_track`). The DHCP
//! server says how its store is through a `watch` channel
//! (`Vrrp::track_store`), the configuration which groups are tracked;
//! both live here, in the VRRP snapshot, so that `<get>` shows why a group
//! gave its mastership away.

use std::collections::BTreeSet;

use super::Key;

/// Which groups track the lease store, and whether it fails.
#[derive(Debug, Default)]
pub struct Tracks {
    /// Groups a remote-backup-profile with `dhcp-server` follows.
    bound: BTreeSet<Key>,
    /// The store's last error while it cannot write.
    store: Option<String>,
}

impl Tracks {
    /// Why group `key`'s tracked object is down, when it is.
    pub fn get(&self, key: &Key) -> Option<String> {
        match &self.store {
            Some(e) if self.bound.contains(key) => Some(e.clone()),
            _ => None,
        }
    }

    pub fn set_bound(&mut self, bound: BTreeSet<Key>) {
        self.bound = bound;
    }

    /// The store fails with this error (`Some`) or works (`None`).
    pub fn set_store(&mut self, failure: Option<String>) {
        self.store = failure;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(vrid: u8) -> Key {
        ("eth0".to_string(), vrid)
    }

    #[test]
    fn only_the_groups_of_a_dhcp_profile_track_the_store() {
        let mut t = Tracks::default();
        t.set_bound([key(1)].into());
        assert_eq!(t.get(&key(1)), None, "the store works");
        t.set_store(Some(
            "lease store /var/lib/hotlease/leases.log: No space left on device (os error 28)"
                .into(),
        ));
        assert_eq!(
            t.get(&key(1)).as_deref(),
            Some("lease store /var/lib/hotlease/leases.log: No space left on device (os error 28)")
        );
        assert_eq!(t.get(&key(2)), None);
        t.set_bound(BTreeSet::new());
        assert_eq!(t.get(&key(1)), None, "the profile is gone");
        t.set_bound([key(1)].into());
        t.set_store(None);
        assert_eq!(t.get(&key(1)), None);
    }
}
