//! Provisioned group memberships reach the apps' `groups` capability (SER-019..021, SER-024):
//! a committed bundle's `app_groups` (and, at start, everything provisioned before) are set
//! in each installed app's group directory, members as its authorizers see originators —
//! pseudonyms unless the app has consent (SER-011), as for the config's `groups`.
//!
//! A provisioned group replaces a config group of the same name (the bundle is the newer
//! word); an empty member list leaves the group with no members. Groups of apps this gateway
//! does not run are kept by the provisioning state only.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::privacy::Pseudonymizer;
use super::Gateway;
use palisade_core::pipeline::Runtime;
use palisade_provision::{DirectoryUpdate, MemberDirectory};

/// The [`MemberDirectory`] of the running apps' group directories.
pub struct ProvisionedGroups {
    runtime: Arc<Runtime>,
    /// App → its pseudonymizer (`None`: consent, real IDs).
    apps: HashMap<String, Option<Pseudonymizer>>,
}

impl ProvisionedGroups {
    pub fn new(gateway: &Gateway) -> ProvisionedGroups {
        ProvisionedGroups {
            runtime: gateway.runtime.clone(),
            apps: gateway
                .routes
                .iter()
                .map(|route| (route.name.clone(), route.pseudonyms.clone()))
                .collect(),
        }
    }
}

impl MemberDirectory for ProvisionedGroups {
    fn apply(&self, update: &DirectoryUpdate) {
        for (app, groups) in &update.app_groups {
            let (Some(pseudonyms), Some(installed)) = (self.apps.get(app), self.runtime.app(app))
            else {
                continue;
            };
            let directory = &installed.sandbox().environment().groups;
            for (group, members) in groups {
                let members: HashSet<String> = members
                    .iter()
                    .filter_map(|member| match pseudonyms {
                        None => Some(member.clone()),
                        // A member whose pseudonym cannot be computed is left out: fail closed.
                        Some(pseudonyms) => pseudonyms.pseudonym(member).ok(),
                    })
                    .collect();
                directory.set_members(group.clone(), members);
            }
        }
    }
}
