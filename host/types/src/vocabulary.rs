//! The words the module registry and the sandbox share: plugin kinds and host capabilities.
//!
//! One enum each, so a kind a manifest or delegation names is the kind the sandbox loads, and a
//! capability a manifest asks for is the one an operator grants (SER-024), with no mapping by
//! hand between two families that could drift.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The three kinds of plugin, one per WIT world.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum PluginKind {
    /// `authorize(request) -> decision`.
    Authorizer,
    /// `authenticate(request, credential) -> auth-result`.
    Authenticator,
    /// Rewrites or redacts a response body (SER-026).
    Filter,
}

impl PluginKind {
    /// Every kind, in canonical order.
    pub const ALL: [PluginKind; 3] = [
        PluginKind::Authorizer,
        PluginKind::Authenticator,
        PluginKind::Filter,
    ];

    /// The kind's name as written in configurations, manifests, delegations and on the command
    /// line.
    pub fn name(self) -> &'static str {
        match self {
            PluginKind::Authorizer => "authorizer",
            PluginKind::Authenticator => "authenticator",
            PluginKind::Filter => "filter",
        }
    }

    /// The function a component of this kind exports.
    pub fn export(self) -> &'static str {
        match self {
            PluginKind::Authorizer => "authorize",
            PluginKind::Authenticator => "authenticate",
            PluginKind::Filter => "filter",
        }
    }
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for PluginKind {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        PluginKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| UnknownName {
                what: "plugin kind (authorizer, authenticator, filter)",
                value: s.to_owned(),
            })
    }
}

/// A capability an operator may grant to one plugin of one application.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Capability {
    /// The application's bounded key-value store.
    Kv,
    /// Group membership look-ups.
    Groups,
    /// Signature checks and HMACs with the application's keys, by handle.
    Crypto,
    /// The request's location (SER-026); without it the plugin sees no location.
    Location,
}

impl Capability {
    /// Every capability, in canonical order.
    pub const ALL: [Capability; 4] = [
        Capability::Kv,
        Capability::Groups,
        Capability::Crypto,
        Capability::Location,
    ];

    /// The capability's name as written in configurations, manifests and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Capability::Kv => "kv",
            Capability::Groups => "groups",
            Capability::Crypto => "crypto",
            Capability::Location => "location",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Capability {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        Capability::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| UnknownName {
                what: "capability (kv, groups, crypto, location)",
                value: s.to_owned(),
            })
    }
}

/// A word that is not one of the known names.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a known {what}")]
pub struct UnknownName {
    /// What kind of name was expected.
    pub what: &'static str,
    /// What was given.
    pub value: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names, `FromStr` and serde agree for every word (the registry's and the sandbox's enums
    /// were two families with their own name tables before).
    #[test]
    fn names_parse_and_serialize_alike() {
        for kind in PluginKind::ALL {
            assert_eq!(kind.name().parse::<PluginKind>(), Ok(kind));
            assert_eq!(
                serde_json::to_string(&kind).unwrap(),
                format!("{:?}", kind.name())
            );
        }
        for capability in Capability::ALL {
            assert_eq!(capability.name().parse::<Capability>(), Ok(capability));
            assert_eq!(
                serde_json::to_string(&capability).unwrap(),
                format!("{:?}", capability.name())
            );
        }
        assert!("Authorizer".parse::<PluginKind>().is_err());
        assert!("teleport".parse::<Capability>().is_err());
    }
}
