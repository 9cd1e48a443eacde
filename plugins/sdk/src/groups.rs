//! Group membership as provisioned on the gateway (capability `groups`).

/// Whether `member` belongs to `group` in this application's view.
pub fn is_member(group: &str, member: &str) -> bool {
    crate::bindings::imports::palisade::plugin::groups::is_member(group, member)
}
