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

use serde::{Deserialize, Serialize};

pub use crypto::{AppKeys, KeyUseError, StaticKeys};
pub use groups::{GroupDirectory, MembershipSource};
pub use kv::KvNamespace;

use super::state::{HostState, SandboxTrap};

/// The capabilities are palisade-types' (one vocabulary with the module registry, #14.3).
pub use palisade_types::Capability;

/// The bit of a capability in [`Capabilities`].
fn bit(capability: Capability) -> u8 {
    match capability {
        Capability::Kv => 1,
        Capability::Groups => 2,
        Capability::Crypto => 4,
        Capability::Location => 8,
    }
}

/// The set of capabilities granted to a plugin. Empty by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities(u8);

impl Capabilities {
    /// No capability.
    pub const NONE: Capabilities = Capabilities(0);

    /// Every capability.
    pub fn all() -> Capabilities {
        Capability::ALL.into_iter().collect()
    }

    /// Adds `capability`.
    pub fn grant(&mut self, capability: Capability) {
        self.0 |= bit(capability);
    }

    /// Whether `capability` is granted.
    pub fn allows(self, capability: Capability) -> bool {
        self.0 & bit(capability) != 0
    }

    /// The granted capabilities.
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
