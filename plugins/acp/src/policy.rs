//! The compiled form of an accessControlPolicy set: what the decision path reads.
//!
//! Everything the request is compared with — wildcards, CIDR blocks, cron bitsets, circle
//! thresholds — is prepared here once per instance, so a warm decision only does integer,
//! string and (for `accr`) a few floating-point operations, and allocates nothing unless it
//! denies and has to write a reason.

use crate::cron::Window;
use crate::geo::Regions;
use crate::net::AddressBlocks;
use crate::pattern::Pattern;

/// All policies of the application, combined permit-overrides (TS-0003 §7.1.2).
#[derive(Debug, Clone, PartialEq)]
pub struct PolicySet {
    pub policies: Vec<Policy>,
}

/// One `<accessControlPolicy>`: its `privileges` (`pv`) and, as a Palisade extension, the
/// target paths it governs.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub id: Box<str>,
    /// `None`: every target. Otherwise the policy applies only to targets under one of these
    /// prefixes; a request no policy applies to is not-applicable.
    pub scope: Option<Vec<Pattern>>,
    pub rules: Vec<Rule>,
}

/// One `accessControlRule` (`acr`). It grants when every part holds (TS-0003 §7.1.5).
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// `acop`, 1..=63.
    pub operations: u32,
    pub originators: Originators,
    /// `acaf`: the request must be authenticated.
    pub authenticated: bool,
    /// `acco`: `None` = no context restriction; otherwise ANY context must hold.
    pub contexts: Option<Vec<Context>>,
    /// `acod`: `None` = every object; otherwise, for a CREATE, ANY entry must hold.
    pub objects: Option<Vec<ObjectDetails>>,
}

/// `acor`, sorted by cost: everything but groups is decided inside the plugin; groups need a
/// host call and are looked up last, only when the rest of the rule already holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Originators {
    pub all: bool,
    pub exact: Vec<Box<str>>,
    pub wildcards: Vec<Pattern>,
    pub roles: Vec<Box<str>>,
    pub groups: Vec<Box<str>>,
}

impl Originators {
    /// Whether the originator is listed without asking the host (everything but groups).
    pub fn matches_locally(&self, originator: &str, roles: &[String]) -> bool {
        self.all || self.names(originator, roles)
    }

    /// Whether an exact ID, a wildcard or a role names the originator (`all` aside).
    pub fn names(&self, originator: &str, roles: &[String]) -> bool {
        self.exact.iter().any(|id| **id == *originator)
            || self
                .wildcards
                .iter()
                .any(|pattern| pattern.matches(originator))
            || self
                .roles
                .iter()
                .any(|role| roles.iter().any(|held| **role == **held))
    }
}

/// One `accessControlContexts` entry: every present element must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Context {
    /// `actw`: any window matches.
    pub windows: Option<Vec<Window>>,
    /// `acip`.
    pub addresses: Option<AddressBlocks>,
    /// `aclr`.
    pub regions: Option<Regions>,
}

/// One `accessControlObjectDetails` entry (TS-0003 §7.1.3 table 7.1.3-4, evaluated as
/// `res_objdetails` of §7.1.5): every present element must hold. Object details apply to a
/// CREATE only; the request's other operations ignore them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObjectDetails {
    /// `ty` (resourceType): the type of the *target*, the parent the create is addressed to.
    pub target_type: Option<u32>,
    /// `spty` (specializationType): the target's `containerDefinition` or `mgmtDefinition`.
    pub target_specialization: Option<Box<str>>,
    /// `chty` (childResourceType, mandatory): the types the create may make.
    pub child_types: Vec<u32>,
    /// `sbpt` (Palisade extension): target path patterns.
    pub paths: Option<Vec<Pattern>>,
}
