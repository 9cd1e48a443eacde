//! Group membership as provisioned on the gateway (capability `groups`): the application's
//! `[app.groups]` table. Members are originator IDs as the plugin sees them (pseudonyms
//! unless the application consented to real identities, SER-015). Without the capability a
//! call traps and counts as the plugin's failure.
//!
//! ```no_run
//! use palisade_sdk::{groups, Decision, Request};
//!
//! fn decide(request: &Request) -> Decision {
//!     if groups::is_member("operators", &request.originator) {
//!         Decision::Permit
//!     } else {
//!         Decision::deny("only operators")
//!     }
//! }
//! ```

/// Whether `member` belongs to `group` in this application's view.
pub fn is_member(group: &str, member: &str) -> bool {
    crate::bindings::imports::palisade::plugin::groups::is_member(group, member)
}
