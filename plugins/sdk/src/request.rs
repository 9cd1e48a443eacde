//! Helpers on the oneM2M request types generated from the contract.

use crate::{Decision, Operation, Request};

impl Operation {
    /// The operation's bit in a oneM2M access-control operation mask (`acop`, TS-0004):
    /// create 1, retrieve 2, update 4, delete 8, notify 16, discovery 32.
    pub fn acop_bit(self) -> u32 {
        match self {
            Operation::Create => 1,
            Operation::Retrieve => 2,
            Operation::Update => 4,
            Operation::Delete => 8,
            Operation::Notify => 16,
            Operation::Discovery => 32,
        }
    }

    /// Retrieve and discovery read; the others change state.
    pub fn is_read(self) -> bool {
        matches!(self, Operation::Retrieve | Operation::Discovery)
    }

    /// The operation's name in lower case, as used in logs and reasons.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::Retrieve => "retrieve",
            Operation::Update => "update",
            Operation::Delete => "delete",
            Operation::Notify => "notify",
            Operation::Discovery => "discovery",
        }
    }
}

/// A set of operations as a oneM2M `acop` bitmask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OperationSet(pub u32);

impl OperationSet {
    /// All six operations (mask 63).
    pub const ALL: OperationSet = OperationSet(63);

    /// Whether the mask allows `operation`.
    pub fn allows(self, operation: Operation) -> bool {
        self.0 & operation.acop_bit() != 0
    }
}

impl Request {
    /// A request with only the three things every request has; every other field empty (no
    /// type, no roles, no source, no location, time 0). For tests of a plugin's own logic: a
    /// later contract version that adds a field to the request then changes nothing for code
    /// that builds requests this way (fill the rest in with struct update syntax,
    /// `Request { resource_type: Some(4), ..Request::new(…) }`).
    pub fn new(
        originator: impl Into<String>,
        operation: Operation,
        target: impl Into<String>,
    ) -> Request {
        Request {
            originator: originator.into(),
            operation,
            target: target.into(),
            resource_type: None,
            target_resource_type: None,
            target_specialization: None,
            authenticated: false,
            roles: Vec::new(),
            source_ip: None,
            location: None,
            request_time: 0,
            attributes: Vec::new(),
        }
    }

    /// The value of a request attribute, if present (first one wins).
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Whether the originator holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|held| held == role)
    }
}

impl Decision {
    /// A deny with a reason for operators and audit.
    pub fn deny(reason: impl Into<String>) -> Decision {
        Decision::Deny(reason.into())
    }
}
