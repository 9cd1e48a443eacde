//! The oneM2M request a plugin sees, and helpers on the types generated from the contract.

use crate::bindings::imports::palisade::plugin::types as wire;
use crate::{Decision, Operation};

/// A WGS-84 position with its country when the gateway knows it. Only plugins granted the
/// `location` capability ever see one (SER-026).
#[derive(Clone, Debug, PartialEq)]
pub struct Location {
    pub latitude: f64,
    pub longitude: f64,
    /// ISO 3166-1 alpha-2 country code, upper case, when the gateway knows it.
    pub country: Option<String>,
}

/// The oneM2M view of one request, as a plugin sees it.
///
/// The contract carries the request's strings as one text split at offsets (so that a request
/// crosses into the plugin with two allocations, `palisade:plugin@0.2.0`); this is that request
/// with ordinary fields, built once when the call arrives.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// The originator (`X-M2M-Origin`). Unless the application recorded consent (SER-015),
    /// this is a stable per-application pseudonym (SER-011/018/025).
    pub originator: String,
    pub operation: Operation,
    /// The target resource, e.g. `/cse-in/lights/switch1`.
    pub target: String,
    /// The oneM2M resource type (`ty`) of a create: the type of the resource it would make.
    pub resource_type: Option<u32>,
    /// The resource type of the target itself (for a create, the parent), when the gateway
    /// knows it. Since contract 0.2.
    pub target_resource_type: Option<u32>,
    /// The target's specialization (`containerDefinition` / `mgmtDefinition`), when known.
    /// Since contract 0.2.
    pub target_specialization: Option<String>,
    /// True when an authenticator of this application accepted the request's credential.
    pub authenticated: bool,
    /// Roles established for the originator by authentication.
    pub roles: Vec<String>,
    /// The source address as text (IPv4 or IPv6, no port), when known.
    pub source_ip: Option<String>,
    /// `None` unless the plugin is granted `location` and the gateway knows it.
    pub location: Option<Location>,
    /// Seconds since the Unix epoch, UTC. The only clock a plugin has.
    pub request_time: u64,
    /// Further request parameters as (name, value) pairs, e.g. oneM2M `fu`, `rcn`.
    pub attributes: Vec<(String, String)>,
}

impl From<wire::Request> for Request {
    /// Splits the contract's `text` at its `ends` (layout in `wit/palisade.wit`). A layout
    /// that does not add up is a host bug; the plugin traps rather than decide on a request it
    /// cannot read (the host turns the trap into a deny).
    fn from(wire: wire::Request) -> Request {
        let wire::Request {
            mut text,
            ends,
            operation,
            resource_type,
            target_resource_type,
            authenticated,
            present,
            role_count,
            attribute_count,
            position,
            request_time,
        } = wire;
        let originator_end = *ends.first().expect("the request's ends list every piece") as usize;
        let mut start = originator_end;
        let mut rest = ends.iter().skip(1);
        let mut next = || -> String {
            let end = *rest.next().expect("the request's ends list every piece") as usize;
            let piece = text
                .get(start..end)
                .expect("the request's ends fall on character boundaries");
            start = end;
            piece.to_owned()
        };
        let target = next();
        let mut optional =
            |flag: wire::Present| (present.bits() & flag.bits() != 0).then(&mut next);
        let target_specialization = optional(wire::Present::TARGET_SPECIALIZATION);
        let source_ip = optional(wire::Present::SOURCE_IP);
        let country = optional(wire::Present::COUNTRY);
        let roles = (0..role_count).map(|_| next()).collect();
        let attributes = (0..attribute_count).map(|_| (next(), next())).collect();
        // The originator comes first: it keeps `text`'s allocation rather than a copy of it.
        assert!(
            text.is_char_boundary(originator_end),
            "the request's ends fall on character boundaries"
        );
        text.truncate(originator_end);
        Request {
            originator: text,
            operation,
            target,
            resource_type,
            target_resource_type,
            target_specialization,
            authenticated,
            roles,
            source_ip,
            location: position.map(|at| Location {
                latitude: at.latitude,
                longitude: at.longitude,
                country,
            }),
            request_time,
            attributes,
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    /// The host's side of this layout is `host/src/sandbox/convert.rs`, whose unit test
    /// builds this same request.
    #[test]
    fn a_request_is_split_at_its_ends() {
        let wire = wire::Request {
            text: "CAE1/cse-in/äorg.example.lamp::1FRr1fu1".into(),
            ends: vec![4, 14, 30, 33, 35, 37, 37, 39, 40],
            operation: Operation::Create,
            resource_type: Some(4),
            target_resource_type: Some(28),
            authenticated: true,
            present: wire::Present::TARGET_SPECIALIZATION
                | wire::Present::SOURCE_IP
                | wire::Present::COUNTRY,
            role_count: 2,
            attribute_count: 1,
            position: Some(wire::Position {
                latitude: 1.5,
                longitude: -2.0,
            }),
            request_time: 7,
        };
        let request = Request::from(wire);
        assert_eq!(
            request,
            Request {
                resource_type: Some(4),
                target_resource_type: Some(28),
                target_specialization: Some("org.example.lamp".into()),
                authenticated: true,
                roles: vec!["r1".into(), "".into()],
                source_ip: Some("::1".into()),
                location: Some(Location {
                    latitude: 1.5,
                    longitude: -2.0,
                    country: Some("FR".into()),
                }),
                request_time: 7,
                attributes: vec![("fu".into(), "1".into())],
                ..Request::new("CAE1", Operation::Create, "/cse-in/ä")
            }
        );
        let bare = Request::from(wire::Request {
            text: "CAE1/x".into(),
            ends: vec![4, 6],
            present: wire::Present::empty(),
            role_count: 0,
            attribute_count: 0,
            position: None,
            ..wire_defaults()
        });
        assert_eq!(bare, Request::new("CAE1", Operation::Create, "/x"));
    }

    fn wire_defaults() -> wire::Request {
        wire::Request {
            text: String::new(),
            ends: Vec::new(),
            operation: Operation::Create,
            resource_type: None,
            target_resource_type: None,
            authenticated: false,
            present: wire::Present::empty(),
            role_count: 0,
            attribute_count: 0,
            position: None,
            request_time: 0,
        }
    }
}
