//! The request a gateway asks Palisade about, in the host's own types.
//!
//! These mirror the WIT `request` record but stay independent of the generated bindings so
//! that embedders, the HTTP API and case files share one serde-friendly shape.

use serde::{Deserialize, Serialize};

/// oneM2M operations (TS-0001 §8.1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    Create,
    Retrieve,
    Update,
    Delete,
    Notify,
    Discovery,
}

impl Operation {
    /// The lower-case name used in logs, reasons and JSON.
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

impl std::str::FromStr for Operation {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(match text.to_ascii_lowercase().as_str() {
            "create" => Operation::Create,
            "retrieve" => Operation::Retrieve,
            "update" => Operation::Update,
            "delete" => Operation::Delete,
            "notify" => Operation::Notify,
            "discovery" => Operation::Discovery,
            _ => {
                return Err(format!(
                    "unknown operation {text:?}; expected create, retrieve, update, delete, notify or discovery"
                ))
            }
        })
    }
}

/// A WGS-84 position; only plugins granted the `location` capability see it (SER-026).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Location {
    pub latitude: f64,
    pub longitude: f64,
    /// ISO 3166-1 alpha-2 code, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

/// A credential presented with the request (e.g. scheme `bearer` and a token).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    pub scheme: String,
    pub value: String,
}

/// One request to decide on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRequest {
    /// The application the request belongs to; its sandbox decides.
    pub app: String,
    /// The originator (`X-M2M-Origin`).
    pub originator: String,
    pub operation: Operation,
    /// The target resource path.
    pub target: String,
    /// oneM2M resource type (`ty`) of a create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<u32>,
    /// The resource type of the target itself (for a create, the parent), when known.
    /// TS-0003 §7.1.5 matches an `acod`'s `ty`/`spty` against the target, not the new child.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_resource_type: Option<u32>,
    /// The target's specialization type (`spty`: a `<flexContainer>`'s containerDefinition,
    /// a `<mgmtObj>`'s `mgd`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_specialization: Option<String>,
    /// Already authenticated by the caller (e.g. the CSE checked a TLS client certificate).
    /// Authenticators can establish it too; nothing can take it away.
    #[serde(default)]
    pub authenticated: bool,
    /// Roles the caller vouches for; authenticators add theirs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<Credential>,
    /// Source address, IPv4 or IPv6, without a port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// Seconds since the Unix epoch; the runtime fills in the current time when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_time: Option<u64>,
    /// Further request parameters as (name, value) pairs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<(String, String)>,
}

impl AccessRequest {
    /// A request with only the required fields; the rest default to "not known".
    pub fn new(
        app: impl Into<String>,
        originator: impl Into<String>,
        operation: Operation,
        target: impl Into<String>,
    ) -> AccessRequest {
        AccessRequest {
            app: app.into(),
            originator: originator.into(),
            operation,
            target: target.into(),
            resource_type: None,
            target_resource_type: None,
            target_specialization: None,
            authenticated: false,
            roles: Vec::new(),
            credential: None,
            source_ip: None,
            location: None,
            request_time: None,
            attributes: Vec::new(),
        }
    }
}

/// A response on its way back to the originator, for the filter stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResponseBody {
    /// oneM2M response status code (`X-M2M-RSC`).
    pub status: u32,
    pub content_type: String,
    pub body: Vec<u8>,
}

/// Seconds since the Unix epoch now (0 if the system clock is before 1970).
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}
