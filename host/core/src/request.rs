//! The request a gateway asks Palisade about, in the host's own types.
//!
//! These mirror the WIT `request` record but stay independent of the generated bindings so
//! that embedders, the HTTP API and case files share one serde-friendly shape.

use serde::{Deserialize, Serialize};

/// oneM2M operations (TS-0001 §8.1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// Create a resource.
    Create,
    /// Retrieve a resource.
    Retrieve,
    /// Update a resource.
    Update,
    /// Delete a resource.
    Delete,
    /// Notify (a notification to the target).
    Notify,
    /// Discover resources.
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
    /// Degrees north (negative: south).
    pub latitude: f64,
    /// Degrees east (negative: west).
    pub longitude: f64,
    /// ISO 3166-1 alpha-2 code, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

/// A credential presented with the request (e.g. scheme `bearer` and a token).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    /// The credential's scheme, e.g. `bearer`.
    pub scheme: String,
    /// The credential itself (a token); only authenticators see it.
    pub value: String,
}

/// One request to decide on, in the one shape every entry point reads: the embedding API,
/// the decision API's JSON body (`POST /v1/decide`), `palisade eval` request files and the
/// `[case.request]` tables of `palisade test`. Unknown fields are refused everywhere.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRequest {
    /// The application the request belongs to; its sandbox decides. May be left out (empty)
    /// where the caller picks the app: the decision API routes by `target`, and
    /// `palisade test` decides as its one app.
    #[serde(default)]
    pub app: String,
    /// The originator (`X-M2M-Origin`).
    pub originator: String,
    /// The oneM2M operation.
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
    /// The credential presented, if any.
    pub credential: Option<Credential>,
    /// Source address, IPv4 or IPv6, without a port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Where the originator is, when known.
    pub location: Option<Location>,
    /// Seconds since the Unix epoch; the runtime fills in the current time when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_time: Option<u64>,
    /// Further request parameters as (name, value) pairs, in order, a name possibly more
    /// than once. Read from a list of pairs (`[["ty", "3"]]`, as written) or from a table
    /// (`{ ty = "3" }`, convenient in TOML case files).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "attributes::deserialize"
    )]
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
    /// The body's media type.
    pub content_type: String,
    /// The body.
    pub body: Vec<u8>,
}

/// Seconds since the Unix epoch now (0 if the system clock is before 1970): the one clock of
/// palisade-types.
pub use palisade_types::now_unix;

/// The two written forms of [`AccessRequest::attributes`].
mod attributes {
    use std::collections::BTreeMap;
    use std::fmt;

    use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};

    /// Reads either form straight from the input. (An untagged enum would buffer the whole
    /// value first to try each form in turn, on every decide request that has attributes.)
    struct Written;

    impl<'de> Visitor<'de> for Written {
        type Value = Vec<(String, String)>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of [name, value] pairs or a table of name = value")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut pairs = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
            while let Some(pair) = seq.next_element::<(String, String)>()? {
                pairs.push(pair);
            }
            Ok(pairs)
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            // A table has no order and one value per name: sorted by name, the last one kept.
            let mut table = BTreeMap::new();
            while let Some((name, value)) = map.next_entry::<String, String>()? {
                table.insert(name, value);
            }
            Ok(table.into_iter().collect())
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<(String, String)>, D::Error> {
        deserializer.deserialize_any(Written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shape_reads_attributes_as_pairs_or_a_table_and_refuses_unknown_fields() {
        let pairs: AccessRequest = serde_json::from_str(
            r#"{"originator": "C1", "operation": "create", "target": "/x",
                "attributes": [["ty", "3"], ["ty", "4"]]}"#,
        )
        .unwrap();
        assert_eq!(pairs.app, "", "app may be left to the caller");
        assert_eq!(
            pairs.attributes,
            [("ty".into(), "3".into()), ("ty".into(), "4".into())]
        );
        let table: AccessRequest = serde_json::from_str(
            r#"{"originator": "C1", "operation": "create", "target": "/x",
                "attributes": {"rcn": "1", "ty": "3"}}"#,
        )
        .unwrap();
        assert_eq!(
            table.attributes,
            [("rcn".into(), "1".into()), ("ty".into(), "3".into())]
        );
        let error = serde_json::from_str::<AccessRequest>(
            r#"{"originator": "C1", "operation": "create", "target": "/x", "atributes": []}"#,
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("unknown field `atributes`"),
            "{error}"
        );
        let error = serde_json::from_str::<AccessRequest>(
            r#"{"originator": "C1", "operation": "create", "target": "/x", "attributes": 3}"#,
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("a list of [name, value] pairs"),
            "{error}"
        );
    }
}
