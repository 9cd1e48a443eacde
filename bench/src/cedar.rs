//! The Cedar peer: `cedar-policy` deciding [`crate::ACP10_CEDAR`], the ten acp10 rules as
//! Cedar policies, fed the way a gateway would feed it.
//!
//! What is built once (policy set, entity store, the authorizer, entity type names and the
//! six action UIDs) lives in [`CedarPeer`]; what a gateway has to build for every request
//! (the principal and resource UIDs and the context) is [`CedarPeer::request`]. The context
//! carries everything the policies look at, derived from the request the same way acp derives
//! it: the UTC hour of `request_time`, the source address parsed and printed back with
//! IPv4-mapped IPv6 turned into IPv4 (the policies apply Cedar's `ip()` to it), the upper-case
//! country code.

use std::net::IpAddr;

use anyhow::Context as _;
use cedar_policy::{
    Authorizer, Context, Decision, Entities, EntityId, EntityTypeName, EntityUid, PolicySet,
    Request, Response, RestrictedExpression,
};
use palisade_core::{AccessRequest, Operation};

use crate::ACP10_CEDAR;

/// Cedar with acp10 loaded.
pub struct CedarPeer {
    policies: PolicySet,
    /// Empty: everything acp10 looks at arrives with the request (roles included: acp reads
    /// them from the request, not from a directory), so it travels in the context. Kept as a
    /// field so the call is the ordinary three-argument `is_authorized`.
    entities: Entities,
    authorizer: Authorizer,
    originator: EntityTypeName,
    resource: EntityTypeName,
    /// `Action::"create"` ... `Action::"discovery"`, indexed by [`action_index`].
    actions: [EntityUid; 6],
}

impl CedarPeer {
    /// Parses [`ACP10_CEDAR`] and prepares the constant parts of a request.
    pub fn new() -> anyhow::Result<CedarPeer> {
        let policies: PolicySet = ACP10_CEDAR.parse().context("parsing acp10.cedar")?;
        let action_type: EntityTypeName = "Action".parse()?;
        let actions = [
            Operation::Create,
            Operation::Retrieve,
            Operation::Update,
            Operation::Delete,
            Operation::Notify,
            Operation::Discovery,
        ]
        .map(|operation| {
            EntityUid::from_type_name_and_id(action_type.clone(), EntityId::new(operation.name()))
        });
        Ok(CedarPeer {
            policies,
            entities: Entities::empty(),
            authorizer: Authorizer::new(),
            originator: "Originator".parse()?,
            resource: "Resource".parse()?,
            actions,
        })
    }

    /// The Cedar request for `request`: principal, action, resource and the context of the
    /// module documentation. This is the per-request work a gateway using Cedar does.
    pub fn request(&self, request: &AccessRequest) -> anyhow::Result<Request> {
        let time = request.request_time.unwrap_or_else(palisade_core::now_unix);
        let hour = (time % 86_400) / 3_600;
        let mut pairs: Vec<(String, RestrictedExpression)> = Vec::with_capacity(7);
        pairs.push((
            "originator".into(),
            RestrictedExpression::new_string(request.originator.clone()),
        ));
        pairs.push((
            "roles".into(),
            RestrictedExpression::new_set(
                request
                    .roles
                    .iter()
                    .map(|role| RestrictedExpression::new_string(role.clone())),
            ),
        ));
        pairs.push(("hour".into(), RestrictedExpression::new_long(hour as i64)));
        pairs.push((
            "authenticated".into(),
            RestrictedExpression::new_bool(request.authenticated),
        ));
        if let Some(address) = request.source_ip.as_deref().and_then(source_address) {
            // A string, not `RestrictedExpression::new_ip`: that constructor runs Cedar's
            // parser on the name "ip" at every call, which costs more than the rest of the
            // request put together; the policies apply `ip()` only once the originator
            // matched.
            pairs.push((
                "source_ip".into(),
                RestrictedExpression::new_string(address.to_string()),
            ));
        }
        if let Some(country) = request.location.as_ref().and_then(|at| at.country.as_ref()) {
            pairs.push((
                "country".into(),
                RestrictedExpression::new_string(country.to_ascii_uppercase()),
            ));
        }
        if let Some(ty) = request.resource_type {
            pairs.push((
                "resource_type".into(),
                RestrictedExpression::new_long(i64::from(ty)),
            ));
        }
        let context = Context::from_pairs(pairs)?;
        let principal = EntityUid::from_type_name_and_id(
            self.originator.clone(),
            EntityId::new(&request.originator),
        );
        let resource =
            EntityUid::from_type_name_and_id(self.resource.clone(), EntityId::new(&request.target));
        let action = self.actions[action_index(request.operation)].clone();
        Ok(Request::new(principal, action, resource, context, None)?)
    }

    /// Evaluates a prepared request against the policy set and the (empty) entity store.
    pub fn is_authorized(&self, request: &Request) -> Response {
        self.authorizer
            .is_authorized(request, &self.policies, &self.entities)
    }

    /// Builds the request and evaluates it: what a gateway pays per request.
    pub fn decide(&self, request: &AccessRequest) -> anyhow::Result<Decision> {
        Ok(self.is_authorized(&self.request(request)?).decision())
    }
}

/// The position of an operation in [`CedarPeer`]'s action table.
fn action_index(operation: Operation) -> usize {
    match operation {
        Operation::Create => 0,
        Operation::Retrieve => 1,
        Operation::Update => 2,
        Operation::Delete => 3,
        Operation::Notify => 4,
        Operation::Discovery => 5,
    }
}

/// The source address as a gateway would hand it to Cedar: parsed by `std` (an unreadable one
/// is left out, so no `acip`-like rule can grant, as in acp), a bracketed IPv6 literal
/// accepted, and an IPv4-mapped IPv6 address turned into the IPv4 address it is — Cedar's
/// `isInRange` never matches across address families, acp compares it with the IPv4 list.
fn source_address(text: &str) -> Option<IpAddr> {
    let text = text
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(text);
    text.parse::<IpAddr>()
        .ok()
        .map(|address| address.to_canonical())
}
