//! `palisade:plugin/groups`: group membership as provisioned for one application
//! (capability `groups`). Each application has its own directory (SER-024).
//!
//! Two sources answer `is-member`: the directory itself (the app's configured and provisioned
//! groups) and, when attached, a [`MembershipSource`] the embedder keeps up to date outside
//! the call (the gateway's view of the upstream CSE's `<group>` resources, in
//! `api::cse_lookup`). A member of either is a member. Neither ever waits: a plugin call runs
//! under an epoch deadline that cannot reach a host thread blocked on I/O.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock, RwLock};

use super::Capability;
use crate::sandbox::bindings::imports::palisade::plugin::groups::Host;
use crate::sandbox::state::HostState;

/// Group membership kept outside the directory. Answers from what it already holds and
/// never blocks; what it does not know is not a membership (fail closed, SER-008).
pub trait MembershipSource: Send + Sync + std::fmt::Debug {
    /// Whether `member` (as the app's authorizers see originators) is in `group`.
    fn is_member(&self, group: &str, member: &str) -> bool;
}

/// The groups of one application: group ID → member IDs, and an optional outside source.
#[derive(Debug, Default)]
pub struct GroupDirectory {
    groups: RwLock<HashMap<String, HashSet<String>>>,
    source: OnceLock<Arc<dyn MembershipSource>>,
}

impl GroupDirectory {
    pub fn new(groups: HashMap<String, HashSet<String>>) -> GroupDirectory {
        GroupDirectory {
            groups: RwLock::new(groups),
            source: OnceLock::new(),
        }
    }

    /// Whether `member` is in `group`: in the directory, or per the attached source.
    pub fn is_member(&self, group: &str, member: &str) -> bool {
        let listed = self
            .groups
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(group)
            .is_some_and(|members| members.contains(member));
        listed
            || self
                .source
                .get()
                .is_some_and(|source| source.is_member(group, member))
    }

    /// Attaches the outside source, once. `false` if one was attached already (the first
    /// stays: a directory's answers never change source under a running plugin).
    pub fn attach(&self, source: Arc<dyn MembershipSource>) -> bool {
        self.source.set(source).is_ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fixed(&'static str, &'static str);

    impl MembershipSource for Fixed {
        fn is_member(&self, group: &str, member: &str) -> bool {
            (group, member) == (self.0, self.1)
        }
    }

    #[test]
    fn the_directory_and_an_attached_source_both_answer_and_the_first_source_stays() {
        let directory = GroupDirectory::new(HashMap::from([(
            "grp-a".to_string(),
            HashSet::from(["CAE1".to_string()]),
        )]));
        assert!(directory.is_member("grp-a", "CAE1"));
        assert!(!directory.is_member("/id-in/grp1", "CAE2"));
        assert!(directory.attach(Arc::new(Fixed("/id-in/grp1", "CAE2"))));
        assert!(directory.is_member("/id-in/grp1", "CAE2"));
        assert!(directory.is_member("grp-a", "CAE1"));
        assert!(!directory.is_member("/id-in/grp1", "CAE1"));
        assert!(!directory.attach(Arc::new(Fixed("/id-in/grp1", "CAE9"))));
        assert!(!directory.is_member("/id-in/grp1", "CAE9"));
    }
}
