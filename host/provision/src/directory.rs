//! How provisioned devices and groups reach the parts of the runtime that use them: each
//! application's group look-up (the plugins' `groups` import) and the gateway agent of group
//! authentication (SER-027/028), through one small trait.
//!
//! Why two steps: `check` may refuse (before anything is changed), `apply` may not. The
//! provisioning state file is the source of truth and is committed first; directories are
//! views of it, updated after the commit and rebuilt from it at start
//! ([`super::Provisioner::add_directory`]), so a directory can never be left half-updated.

use std::collections::{BTreeMap, BTreeSet};
#[cfg(test)]
use std::sync::RwLock;

/// What one committed bundle changes in the member directories.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectoryUpdate {
    /// Device keys set or replaced (SER-020).
    pub devices: BTreeMap<String, [u8; 32]>,
    /// Gateway groups set, each member with its current key; an empty map removes the group.
    /// A group also appears here when one of its members was re-keyed.
    pub gateway_groups: BTreeMap<String, BTreeMap<String, [u8; 32]>>,
    /// App → group → members; an empty set removes the group.
    pub app_groups: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    /// App → originator → position; `None` removes it ([`super::PositionDirectory`]).
    pub app_positions: BTreeMap<String, BTreeMap<String, Option<super::Position>>>,
}

impl DirectoryUpdate {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
            && self.gateway_groups.is_empty()
            && self.app_groups.is_empty()
            && self.app_positions.is_empty()
    }
}

/// A group/member directory that provisioning updates. Implement it for the runtime's
/// per-application group directories and for the group-authentication agent.
pub trait MemberDirectory: Send + Sync {
    /// Whether the directory can take `update` (capacity, names it cannot hold...). Called
    /// before anything is changed; an error refuses the whole bundle.
    fn check(&self, update: &DirectoryUpdate) -> Result<(), String> {
        let _ = update;
        Ok(())
    }

    /// Applies a committed update. Cannot fail: everything was validated and the state is
    /// already committed.
    fn apply(&self, update: &DirectoryUpdate);
}

#[cfg(test)]
#[derive(Debug, Default)]
struct Inner {
    devices: BTreeMap<String, [u8; 32]>,
    gateway_groups: BTreeMap<String, BTreeMap<String, [u8; 32]>>,
    app_groups: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
}

/// A [`MemberDirectory`] in memory, for this crate's tests.
#[cfg(test)]
#[derive(Debug, Default)]
pub struct MemoryDirectory {
    inner: RwLock<Inner>,
}

#[cfg(test)]
impl MemoryDirectory {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    /// A device's key.
    pub fn device_key(&self, device: &str) -> Option<[u8; 32]> {
        self.read().devices.get(device).copied()
    }

    /// A gateway group's members and their keys.
    pub fn gateway_group(&self, group: &str) -> Option<BTreeMap<String, [u8; 32]>> {
        self.read().gateway_groups.get(group).cloned()
    }

    /// Whether `member` is in `group` of `app`.
    pub fn is_member(&self, app: &str, group: &str, member: &str) -> bool {
        self.read()
            .app_groups
            .get(app)
            .and_then(|g| g.get(group))
            .is_some_and(|m| m.contains(member))
    }

    /// The number of devices, gateway groups and application groups held.
    pub fn counts(&self) -> (usize, usize, usize) {
        let i = self.read();
        (
            i.devices.len(),
            i.gateway_groups.len(),
            i.app_groups.values().map(BTreeMap::len).sum(),
        )
    }
}

#[cfg(test)]
impl MemberDirectory for MemoryDirectory {
    fn apply(&self, u: &DirectoryUpdate) {
        let mut i = self.inner.write().unwrap_or_else(|e| e.into_inner());
        i.devices
            .extend(u.devices.iter().map(|(d, k)| (d.clone(), *k)));
        for (g, members) in &u.gateway_groups {
            if members.is_empty() {
                i.gateway_groups.remove(g);
            } else {
                i.gateway_groups.insert(g.clone(), members.clone());
            }
        }
        for (app, groups) in &u.app_groups {
            let entry = i.app_groups.entry(app.clone()).or_default();
            for (g, members) in groups {
                if members.is_empty() {
                    entry.remove(g);
                } else {
                    entry.insert(g.clone(), members.clone());
                }
            }
        }
    }
}
