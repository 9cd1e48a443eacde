//! What a plugin may ask of the host, one small unit per capability, each denied by default
//! (SER-024): `config` and `log` come with every plugin; `kv`, `groups`, `crypto` and
//! `location` only when the operator grants them. A plugin that calls an import it was not
//! granted traps, and its call ends in a deny that names the capability.
//!
//! Every import call also spends one unit of the call's host-call budget (SER-001).

mod config;
mod crypto;
mod groups;
mod kv;
mod log;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use crypto::{AppKeys, KeyUseError, StaticKeys};
pub use groups::{GroupDirectory, MembershipSource};
pub use kv::KvNamespace;

use super::state::{HostState, SandboxTrap};

/// A capability an operator may grant to one plugin of one application.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
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
    pub const ALL: [Capability; 4] = [
        Capability::Kv,
        Capability::Groups,
        Capability::Crypto,
        Capability::Location,
    ];

    fn bit(self) -> u8 {
        match self {
            Capability::Kv => 1,
            Capability::Groups => 2,
            Capability::Crypto => 4,
            Capability::Location => 8,
        }
    }

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
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

impl std::str::FromStr for Capability {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Capability::ALL
            .into_iter()
            .find(|capability| capability.name() == text)
            .ok_or_else(|| {
                format!("unknown capability {text:?}; expected kv, groups, crypto or location")
            })
    }
}

/// The set of capabilities granted to a plugin. Empty by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities(u8);

impl Capabilities {
    pub const NONE: Capabilities = Capabilities(0);

    pub fn all() -> Capabilities {
        Capability::ALL.into_iter().collect()
    }

    pub fn grant(&mut self, capability: Capability) {
        self.0 |= capability.bit();
    }

    pub fn allows(self, capability: Capability) -> bool {
        self.0 & capability.bit() != 0
    }

    pub fn iter(self) -> impl Iterator<Item = Capability> {
        Capability::ALL
            .into_iter()
            .filter(move |capability| self.allows(*capability))
    }
}

impl FromIterator<Capability> for Capabilities {
    fn from_iter<I: IntoIterator<Item = Capability>>(iter: I) -> Self {
        let mut set = Capabilities::NONE;
        for capability in iter {
            set.grant(capability);
        }
        set
    }
}

impl Serialize for Capabilities {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for Capabilities {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Vec::<Capability>::deserialize(deserializer)?
            .into_iter()
            .collect())
    }
}

impl HostState {
    /// Spends one host call and checks the capability; the error becomes a trap.
    fn enter(&mut self, capability: Option<Capability>) -> wasmtime::Result<()> {
        self.spend_host_call()?;
        if let Some(capability) = capability {
            if !self.plugin.capabilities.allows(capability) {
                return Err(wasmtime::Error::new(SandboxTrap::CapabilityDenied(
                    capability,
                )));
            }
        }
        Ok(())
    }
}

/// `palisade:plugin/types` declares types only; there is nothing to implement.
impl crate::sandbox::bindings::imports::palisade::plugin::types::Host for HostState {}
