//! The access decision (TS-0003 §7.1.2 and §7.1.5): a rule grants when its operations, its
//! originators, its authentication flag, its object details and one of its contexts all hold;
//! the policies combine permit-overrides — one granting rule anywhere permits, and anything
//! else is a deny (SER-008 default deny) whose reason says what came closest, for operators
//! and for the audit log (SER-016).
//!
//! This module never calls the host itself: group membership arrives as a closure, so the
//! whole decision runs natively in unit tests, and in the component the closure is the
//! `groups` import (SER-022: the application's own membership view).

use std::net::IpAddr;

use palisade_sdk::{Decision, Operation, Request};

use crate::cron::Civil;
use crate::net::parse_source;
use crate::policy::{Context, ObjectDetails, Policy, PolicySet, Rule};

/// Decide `request` against `set`. `is_member(group, originator)` is asked only when no rule
/// grants without it, only for rules whose every other part already holds, and at most once
/// per group: host calls are the most expensive thing a decision can do.
pub fn decide(
    set: &PolicySet,
    request: &Request,
    is_member: impl FnMut(&str, &str) -> bool,
) -> Decision {
    let mut facts = Facts::new(request, is_member);
    let mut applicable = false;
    let mut needs_group: Vec<&Rule> = Vec::new();
    for policy in set
        .policies
        .iter()
        .filter(|policy| policy.applies_to(&request.target))
    {
        applicable = true;
        for rule in &policy.rules {
            match facts.check(rule) {
                Check::Grants => return Decision::Permit,
                Check::IfMember => needs_group.push(rule),
                Check::No => {}
            }
        }
    }
    if !applicable {
        // Every policy is scoped away from this target: this plugin has no opinion, and the
        // host still denies unless another authorizer permits.
        return Decision::NotApplicable;
    }
    for rule in needs_group {
        if rule
            .originators
            .groups
            .iter()
            .any(|group| facts.member(group))
        {
            return Decision::Permit;
        }
    }
    Decision::Deny(explain(set, &mut facts))
}

/// A rule's verdict before any group look-up.
enum Check {
    Grants,
    /// Every part holds except `acor`, which names groups the originator may belong to.
    IfMember,
    No,
}

impl Policy {
    fn applies_to(&self, target: &str) -> bool {
        match &self.scope {
            None => true,
            Some(prefixes) => prefixes.iter().any(|prefix| prefix.matches(target)),
        }
    }
}

/// What the request is compared with, derived lazily and at most once per decision.
struct Facts<'r, 'p, G> {
    request: &'r Request,
    bit: u32,
    civil: Option<Civil>,
    source: Option<Option<IpAddr>>,
    is_member: G,
    memberships: Vec<(&'p str, bool)>,
}

impl<'r, 'p, G: FnMut(&str, &str) -> bool> Facts<'r, 'p, G> {
    fn new(request: &'r Request, is_member: G) -> Self {
        Facts {
            request,
            bit: request.operation.acop_bit(),
            civil: None,
            source: None,
            is_member,
            memberships: Vec::new(),
        }
    }

    /// Cheapest checks first; the group look-up (a host call) is left to the caller.
    fn check(&mut self, rule: &Rule) -> Check {
        let request = self.request;
        if rule.operations & self.bit == 0 {
            return Check::No;
        }
        let local = rule
            .originators
            .matches_locally(&request.originator, &request.roles);
        if !local && rule.originators.groups.is_empty() {
            return Check::No;
        }
        match (self.unmet(rule), local) {
            (Some(_), _) => Check::No,
            (None, true) => Check::Grants,
            (None, false) => Check::IfMember,
        }
    }

    /// The first part of `rule` other than `acor` and `acop` that does not hold.
    fn unmet(&mut self, rule: &Rule) -> Option<Unmet> {
        if rule.authenticated && !self.request.authenticated {
            return Some(Unmet::Authentication);
        }
        if let Some(objects) = &rule.objects {
            let create = matches!(self.request.operation, Operation::Create);
            if create && !objects.iter().any(|details| self.object_holds(details)) {
                return Some(Unmet::Object);
            }
        }
        if let Some(contexts) = &rule.contexts {
            let mut first = None;
            for context in contexts {
                match self.context_failure(context) {
                    None => return None,
                    Some(element) => first = first.or(Some(element)),
                }
            }
            return first.map(|element| Unmet::Context(element, contexts.len()));
        }
        None
    }

    fn member(&mut self, group: &'p str) -> bool {
        if let Some(&(_, known)) = self.memberships.iter().find(|(name, _)| *name == group) {
            return known;
        }
        let known = (self.is_member)(group, &self.request.originator);
        self.memberships.push((group, known));
        known
    }

    /// `res_objdetails` of TS-0003 §7.1.5 for a CREATE (the only operation object details
    /// apply to; the caller skips them for the others): `ty` and `spty` are matched against
    /// the target — the resource the create is addressed to — and an unknown target type or
    /// specialization does not match; `chty` against the type of the resource created.
    /// (§7.1.5 matches `spty` against the create's content while §7.1.3 says "the targeted
    /// resource"; the target's is what a gateway can know without parsing the content, and
    /// what the request carries.)
    fn object_holds(&self, details: &ObjectDetails) -> bool {
        let request = self.request;
        if let Some(ty) = details.target_type {
            if request.target_resource_type != Some(ty) {
                return false;
            }
        }
        if let Some(spty) = &details.target_specialization {
            if request.target_specialization.as_deref() != Some(&**spty) {
                return false;
            }
        }
        if !request
            .resource_type
            .is_some_and(|ty| details.child_types.contains(&ty))
        {
            return false;
        }
        if let Some(paths) = &details.paths {
            if !paths.iter().any(|path| path.matches(&request.target)) {
                return false;
            }
        }
        true
    }

    /// `None` when every element of the context holds, else the element that did not.
    fn context_failure(&mut self, context: &Context) -> Option<&'static str> {
        let request = self.request;
        if let Some(blocks) = &context.addresses {
            if request.source_ip.is_none() {
                return Some("acip (no source address)");
            }
            match self.source() {
                Some(address) if blocks.contains(address) => {}
                Some(_) => return Some("acip"),
                None => return Some("acip (unreadable source address)"),
            }
        }
        if let Some(windows) = &context.windows {
            let now = self.civil();
            if !windows.iter().any(|window| window.matches(&now)) {
                return Some("actw");
            }
        }
        if let Some(regions) = &context.regions {
            match &request.location {
                None => return Some("aclr (no location)"),
                Some(at) if !regions.contains(at.latitude, at.longitude, at.country.as_deref()) => {
                    return Some("aclr")
                }
                Some(_) => {}
            }
        }
        None
    }

    fn civil(&mut self) -> Civil {
        *self
            .civil
            .get_or_insert_with(|| Civil::from_unix(self.request.request_time))
    }

    fn source(&mut self) -> Option<IpAddr> {
        let request = self.request;
        *self
            .source
            .get_or_insert_with(|| request.source_ip.as_deref().and_then(parse_source))
    }
}

/// Why a rule that lists the originator did not grant.
#[derive(Clone, Copy)]
enum Unmet {
    Authentication,
    Object,
    /// The first failing element of the first context, and how many contexts there were.
    Context(&'static str, usize),
}

/// The deny reason: what was asked, and the closest rule — one that lists the originator
/// (without a group look-up) and got furthest before a part failed. Candidates are ranked
/// without allocating; only the winner is written out, into one buffer.
fn explain<G: FnMut(&str, &str) -> bool>(set: &PolicySet, facts: &mut Facts<'_, '_, G>) -> String {
    let request = facts.request;
    // (stage, policy, rule index, what failed): stage 1 operations, 2 acaf, 3 acod, 4 acco.
    let mut closest: Option<(u8, &Policy, usize, Option<Unmet>, u32)> = None;
    for policy in set
        .policies
        .iter()
        .filter(|policy| policy.applies_to(&request.target))
    {
        for (index, rule) in policy.rules.iter().enumerate() {
            if !rule
                .originators
                .matches_locally(&request.originator, &request.roles)
            {
                continue;
            }
            let (stage, unmet) = if rule.operations & facts.bit == 0 {
                if !rule.originators.names(&request.originator, &request.roles) {
                    continue; // "`all` may only discover" says nothing about this originator
                }
                (1, None)
            } else {
                match facts.unmet(rule) {
                    Some(unmet @ Unmet::Authentication) => (2, Some(unmet)),
                    Some(unmet @ Unmet::Object) => (3, Some(unmet)),
                    Some(unmet @ Unmet::Context(..)) => (4, Some(unmet)),
                    None => continue,
                }
            };
            if closest.is_none_or(|(best, ..)| stage > best) {
                closest = Some((stage, policy, index, unmet, rule.operations));
            }
        }
    }
    let mut reason = String::with_capacity(160 + request.originator.len() + request.target.len());
    reason.push_str("no access control rule grants ");
    reason.push_str(request.operation.name());
    reason.push_str(" to ");
    reason.push_str(&request.originator);
    reason.push_str(" on ");
    reason.push_str(&request.target);
    let Some((_, policy, index, unmet, granted)) = closest else {
        return reason;
    };
    reason.push_str("; closest: policy ");
    reason.push_str(&policy.id);
    reason.push_str(" rule ");
    reason.push_str(&index.to_string());
    match unmet {
        None => {
            reason.push_str(" lists the originator but grants only ");
            reason.push_str(&operations(granted));
        }
        Some(Unmet::Authentication) => reason.push_str(" requires an authenticated request (acaf)"),
        Some(Unmet::Object) => {
            reason.push_str(" does not allow creating resource type ");
            match request.resource_type {
                Some(ty) => reason.push_str(&ty.to_string()),
                None => reason.push_str("unknown"),
            }
            reason.push_str(" under this target (type ");
            match request.target_resource_type {
                Some(ty) => reason.push_str(&ty.to_string()),
                None => reason.push_str("unknown"),
            }
            if let Some(spty) = &request.target_specialization {
                reason.push_str(", specialization ");
                reason.push_str(spty);
            }
            reason.push_str(") (acod)");
        }
        Some(Unmet::Context(element, 1)) => {
            reason.push_str(" has a context that does not hold: ");
            reason.push_str(element);
            reason.push_str(" (acco)");
        }
        Some(Unmet::Context(element, n)) => {
            reason.push_str(" has ");
            reason.push_str(&n.to_string());
            reason.push_str(" contexts and none holds; the first fails on ");
            reason.push_str(element);
            reason.push_str(" (acco)");
        }
    }
    reason
}

/// `acop` mask as operation names, e.g. `create, retrieve`.
pub fn operations(mask: u32) -> String {
    const NAMES: [&str; 6] = [
        "create",
        "retrieve",
        "update",
        "delete",
        "notify",
        "discovery",
    ];
    let mut names = String::new();
    for (_, name) in NAMES
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1 << bit) != 0)
    {
        if !names.is_empty() {
            names.push_str(", ");
        }
        names.push_str(name);
    }
    names
}
