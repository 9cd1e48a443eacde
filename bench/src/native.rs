//! The native baseline: the acp plugin's own evaluation (`acp::eval::decide`) compiled for the
//! host and called directly, without a sandbox, on the same compiled policy.

use palisade_core::AccessRequest;
use palisade_sdk::{Decision, Location, Operation, Request};

use crate::ACP10_JSON;

/// acp10 compiled once, as the warm plugin holds it after its first call.
pub struct NativeAcp {
    set: acp::policy::PolicySet,
}

impl NativeAcp {
    /// Parses and compiles [`ACP10_JSON`] exactly as the plugin does on its first call
    /// (through `acp::config::Compiled`, the type its `Config` static deserialises).
    pub fn new() -> anyhow::Result<NativeAcp> {
        let acp::config::Compiled(set) = serde_json::from_str(ACP10_JSON)?;
        Ok(NativeAcp {
            set: set.map_err(anyhow::Error::msg)?,
        })
    }

    /// Decides a host request: converts it to the plugin's request type ([`sdk_request`]),
    /// as the host does before every call into the sandbox, then evaluates it.
    pub fn decide(&self, request: &AccessRequest) -> Decision {
        self.decide_sdk(&sdk_request(request))
    }

    /// Evaluates an already converted request: the policy evaluation alone.
    pub fn decide_sdk(&self, request: &Request) -> Decision {
        // acp10 names no `<group>`, so acp never asks; in the sandbox this would be a host
        // call to the application's group directory, which has no members here either.
        acp::eval::decide(&self.set, request, |_group: &str, _member: &str| false)
    }
}

/// The plugin's view of `request`, built the way the host builds the WIT record it lowers
/// into the sandbox (`host/core/src/sandbox/convert.rs`): the strings are copied, the location is
/// passed on (acp10's plugin is granted `location`), and a missing `request_time` is now.
pub fn sdk_request(request: &AccessRequest) -> Request {
    Request {
        originator: request.originator.clone(),
        operation: match request.operation {
            palisade_core::Operation::Create => Operation::Create,
            palisade_core::Operation::Retrieve => Operation::Retrieve,
            palisade_core::Operation::Update => Operation::Update,
            palisade_core::Operation::Delete => Operation::Delete,
            palisade_core::Operation::Notify => Operation::Notify,
            palisade_core::Operation::Discovery => Operation::Discovery,
        },
        target: request.target.clone(),
        resource_type: request.resource_type,
        target_resource_type: request.target_resource_type,
        target_specialization: request.target_specialization.clone(),
        authenticated: request.authenticated,
        roles: request.roles.clone(),
        source_ip: request.source_ip.clone(),
        location: request.location.as_ref().map(|location| Location {
            latitude: location.latitude,
            longitude: location.longitude,
            country: location.country.clone(),
        }),
        request_time: request.request_time.unwrap_or_else(palisade_core::now_unix),
        attributes: request.attributes.clone(),
    }
}
