//! `palisade:plugin/groups`: group membership as provisioned for one application
//! (capability `groups`). Each application has its own directory (SER-024).

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

use super::Capability;
use crate::sandbox::bindings::imports::palisade::plugin::groups::Host;
use crate::sandbox::state::HostState;

/// The groups of one application: group ID → member IDs.
#[derive(Debug, Default)]
pub struct GroupDirectory {
    groups: RwLock<HashMap<String, HashSet<String>>>,
}

impl GroupDirectory {
    pub fn new(groups: HashMap<String, HashSet<String>>) -> GroupDirectory {
        GroupDirectory {
            groups: RwLock::new(groups),
        }
    }

    pub fn is_member(&self, group: &str, member: &str) -> bool {
        let groups = self
            .groups
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        groups
            .get(group)
            .is_some_and(|members| members.contains(member))
    }

    /// Replaces one group's members (provisioning).
    pub fn set_members(&self, group: String, members: HashSet<String>) {
        let mut groups = self
            .groups
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        groups.insert(group, members);
    }
}

impl Host for HostState {
    fn is_member(&mut self, group: String, member: String) -> wasmtime::Result<bool> {
        self.enter(Some(Capability::Groups))?;
        Ok(self.env.groups.is_member(&group, &member))
    }
}
