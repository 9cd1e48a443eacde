//! Between the host's request types and the WIT records, and the checks every plugin answer
//! passes before the host believes it (a malformed answer is a failure, never a decision).

use serde::Serialize;

use super::bindings::wit;
use super::capabilities::{Capabilities, Capability};
use super::limits::SandboxLimits;
use crate::request::{AccessRequest, Operation};

/// The WIT request a plugin sees. Location goes only to plugins granted it (SER-026).
pub(crate) fn request(request: &AccessRequest, now: u64, grant: Capabilities) -> wit::Request {
    wit::Request {
        originator: request.originator.clone(),
        operation: match request.operation {
            Operation::Create => wit::Operation::Create,
            Operation::Retrieve => wit::Operation::Retrieve,
            Operation::Update => wit::Operation::Update,
            Operation::Delete => wit::Operation::Delete,
            Operation::Notify => wit::Operation::Notify,
            Operation::Discovery => wit::Operation::Discovery,
        },
        target: request.target.clone(),
        resource_type: request.resource_type,
        authenticated: request.authenticated,
        roles: request.roles.clone(),
        source_ip: request.source_ip.clone(),
        location: if grant.allows(Capability::Location) {
            request.location.as_ref().map(|location| wit::Location {
                latitude: location.latitude,
                longitude: location.longitude,
                country: location.country.clone(),
            })
        } else {
            None
        },
        request_time: request.request_time.unwrap_or(now),
        attributes: request.attributes.clone(),
    }
}

/// An authorizer's answer, checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", content = "reason", rename_all = "kebab-case")]
pub enum Verdict {
    Permit,
    Deny(String),
    NotApplicable,
}

/// An authenticator's answer, checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum AuthOutcome {
    Authenticated {
        subject: String,
        roles: Vec<String>,
        expires_at: Option<u64>,
    },
    Rejected {
        reason: String,
    },
    NotApplicable,
}

/// A filter's answer, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilterOutcome {
    Unchanged,
    Rewrite(Vec<u8>),
    Block(String),
}

pub(crate) fn verdict(decision: wit::Decision, limits: &SandboxLimits) -> Result<Verdict, String> {
    Ok(match decision {
        wit::Decision::Permit => Verdict::Permit,
        wit::Decision::Deny(reason) => Verdict::Deny(reason_text(reason, limits)?),
        wit::Decision::NotApplicable => Verdict::NotApplicable,
    })
}

pub(crate) fn auth_outcome(
    result: wit::AuthResult,
    limits: &SandboxLimits,
) -> Result<AuthOutcome, String> {
    Ok(match result {
        wit::AuthResult::Authenticated(identity) => {
            if identity.subject.is_empty() {
                return Err("the identity has an empty subject".into());
            }
            check_len(
                "the identity's subject",
                identity.subject.len(),
                limits.max_reason_bytes,
            )?;
            if identity.roles.len() > 256 {
                return Err(format!(
                    "the identity has {} roles; at most 256 are accepted",
                    identity.roles.len()
                ));
            }
            for role in &identity.roles {
                check_len("a role", role.len(), 256)?;
            }
            AuthOutcome::Authenticated {
                subject: identity.subject,
                roles: identity.roles,
                expires_at: identity.expires_at,
            }
        }
        wit::AuthResult::Rejected(reason) => AuthOutcome::Rejected {
            reason: reason_text(reason, limits)?,
        },
        wit::AuthResult::NotApplicable => AuthOutcome::NotApplicable,
    })
}

pub(crate) fn filter_outcome(
    result: wit::FilterResult,
    limits: &SandboxLimits,
) -> Result<FilterOutcome, String> {
    Ok(match result {
        wit::FilterResult::Unchanged => FilterOutcome::Unchanged,
        wit::FilterResult::Rewrite(body) => {
            check_len("the rewritten body", body.len(), limits.max_body_bytes)?;
            FilterOutcome::Rewrite(body)
        }
        wit::FilterResult::Block(reason) => FilterOutcome::Block(reason_text(reason, limits)?),
    })
}

/// A reason must be short enough to log and audit, and must say something.
fn reason_text(reason: String, limits: &SandboxLimits) -> Result<String, String> {
    check_len("the reason", reason.len(), limits.max_reason_bytes)?;
    if reason.trim().is_empty() {
        return Err("the reason is empty".into());
    }
    if reason
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err("the reason contains control characters".into());
    }
    Ok(reason)
}

fn check_len(what: &str, len: usize, limit: usize) -> Result<(), String> {
    if len > limit {
        return Err(format!("{what} is {len} bytes; the limit is {limit}"));
    }
    Ok(())
}
