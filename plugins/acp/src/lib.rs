//! # acp — the oneM2M accessControlPolicy authorizer
//!
//! The reference Palisade authorizer: it evaluates an application's `<accessControlPolicy>`
//! privileges exactly as TS-0003 §7.1 describes them, with the TS-0004 short names, so an
//! application service provider can enforce the policies it already writes for its CSE in
//! its own sandbox (SER-022, SER-024). Default deny throughout (SER-008): a request is
//! permitted only by a rule that positively grants it, and an invalid, unknown or
//! indeterminate part of a policy is a deny, never a guess.
//!
//! ## Configuration (the application's config, JSON; SER-014)
//!
//! ```json
//! { "policies": [ {
//!     "id": "acp1",                     // optional; named in deny reasons
//!     "scope": ["/cse-in/app1"],        // optional Palisade extension: target path prefixes
//!     "pv": { "acr": [ {
//!         "acor": ["CAE1", "C*", "<grp-lights>", "role:operator", "all"],
//!         "acop": 1,
//!         "acco": [ { "actw": ["* 0-30 8-17 * * 1-5 *"],
//!                     "acip": { "ipv4": ["192.168.1.0/24"], "ipv6": ["2001:db8::/32"] },
//!                     "aclr": { "accc": ["DE", "FR"], "accr": [[48.85, 2.35, 5000]] } } ],
//!         "acaf": true,
//!         "acod": [ { "ty": 3, "chty": [4], "sbpt": ["/cse-in/app1/**"] } ]
//!     } ] } } ] }
//! ```
//!
//! - `policies` (required, non-empty): combined permit-overrides — any granting rule of any
//!   applicable policy permits. `scope` entries are path prefixes on `/` boundaries
//!   (`/cse-in/app1` covers `/cse-in/app1/c1`, not `/cse-in/app10`; `*` allowed per segment). A
//!   request that no policy's scope covers is **not-applicable**; otherwise a request no rule
//!   grants is **denied** with a reason naming the operation, originator, target and the
//!   closest rule.
//! - `pv.acr` (required, may be empty): the rules. A rule grants when EVERY present part holds.
//! - `acor` (required): `all` = any originator; `<group-id>` = a member of that group per
//!   the host's group look-up (grant the `groups` capability); `role:<role-id>` = the request
//!   holds that role; an ID containing `*` = wildcard where `*` matches any run of characters
//!   except `/`; anything else = exact, literal ID (regex metacharacters mean themselves). An
//!   SP-relative or absolute ID (`/id-in/grp1`, `//sp/id-in/grp1`) is also a group resource
//!   ID (TS-0003 §7.1.2): when it is not the originator itself, the host's group look-up is
//!   asked whether the originator is a member, as for `<group-id>` (grant `groups`).
//!   `<group-id>` stays as Palisade's name for a group of the app's own directory.
//! - `acop` (required): bitmask CREATE 1, RETRIEVE 2, UPDATE 4, DELETE 8, NOTIFY 16,
//!   DISCOVERY 32; 1..=63.
//! - `acco` (optional, non-empty list): ANY context holding suffices; within a context every
//!   present element must hold. `actw`: 7-field UTC cron windows
//!   (`second minute hour day-of-month month day-of-week year`, see [`cron`]), any matches,
//!   against `request_time`. `acip`: `ipv4`/`ipv6` addresses or CIDR blocks vs `source_ip`
//!   (none or unreadable: does not hold). `aclr`: one region object or a list; a region has
//!   `accc` (ISO alpha-2 codes vs `location.country`) and/or `accr` (one circle
//!   `[lat, lon, radius-m]` or a list of them, haversine); the location must lie in ANY of
//!   them (no location: does not hold).
//! - `acaf` (optional bool): the request must be authenticated.
//! - `acod` (optional, non-empty list): object details, applied to a CREATE only (TS-0003
//!   §7.1.5; a rule's other operations ignore them). ANY entry holding suffices; within one,
//!   every present element must hold. `chty` (mandatory): the types the create may make
//!   (`resource_type`; unknown: does not hold). `ty` / `spty`: the type / specialization of the
//!   *target*, the parent the create is addressed to (`target_resource_type`,
//!   `target_specialization`; unknown: does not hold); a `ty` of 13 or 28 needs its `spty`.
//!   `sbpt` (Palisade extension): target path patterns, `*` per segment, a trailing `/**` for
//!   the whole subtree. Policies of this plugin's earlier reading (`ty` on other operations,
//!   `chty` optional) are refused at load, naming the rule: `acod` on a rule without create,
//!   `ty`/`spty`/`sbpt` on a rule that also grants other operations, an entry without `chty`.
//!
//! Any other key, an empty list or a malformed value makes the configuration invalid, and
//! `prepare` refuses it with a reason naming the place (`policies[0].pv.acr[0].acop: 64 is
//! not an operation mask in 1..=63`): the host then does not load the plugin, so the gateway
//! does not start with it. A host that never calls `prepare` gets the same reason with every
//! deny.

pub mod config;
pub mod cron;
pub mod eval;
pub mod geo;
pub mod net;
pub mod pattern;
pub mod policy;

#[cfg(test)]
mod tests;

use palisade_sdk::{Authorizer, Decision, Request};

use crate::config::Compiled;

/// Parsed and compiled once per instance; warm decisions read it for free.
static POLICIES: palisade_sdk::config::Config<Compiled> = palisade_sdk::config::Config::new();

/// The component's entry point: the only place that touches host imports.
pub struct AccessControlPolicy;

impl Authorizer for AccessControlPolicy {
    fn authorize(request: Request) -> Decision {
        let set = match POLICIES.get() {
            Ok(Compiled(Ok(set))) => set,
            Ok(Compiled(Err(problem))) => return Decision::deny(problem.as_str()),
            Err(problem) => return Decision::deny(problem),
        };
        eval::decide(set, &request, palisade_sdk::groups::is_member)
    }

    /// Parse and compile the policies when the host loads the plugin: an invalid policy is
    /// refused there, with the place and the problem, so the gateway does not start (or the
    /// push is refused) rather than deny everything while reporting healthy. In fresh-instance
    /// isolation the compiled policies are then snapshotted, so no request parses them again.
    /// A host that never calls `prepare` still gets the problem as every deny's reason.
    fn prepare() {
        let problem = match POLICIES.get() {
            Ok(Compiled(Ok(_))) => return,
            Ok(Compiled(Err(problem))) => problem.as_str(),
            Err(problem) => problem,
        };
        palisade_sdk::config::refuse(problem);
    }
}

palisade_sdk::export_authorizer!(AccessControlPolicy);
