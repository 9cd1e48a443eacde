//! The server's registry as a file: the devices' public keys, the groups, and the gateways
//! with the groups each may represent (SER-027). The `devices` and `groups` parts have the
//! shapes of the provisioning files (`palisade provision create --devices`, the `gateway`
//! part of `--groups`), so a service provider can feed the server and its gateways from the
//! same data.
//!
//! ```json
//! {
//!   "server_id": "m2m-server",
//!   "devices": {"dev-1": "<Ed25519 public key, 64 hex digits>"},
//!   "groups": {"grp-a": ["dev-1"]},
//!   "gateways": {"gw-1": {"public_key": "<64 hex digits>", "represents": ["grp-a"]}}
//! }
//! ```

use super::error::RegistryError;
use super::server::ServerState;
use palisade_group::ServerRegistry;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A gateway as the server knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayEntry {
    /// Its Ed25519 identity key (signs challenge requests, assertions, answer batches).
    pub public_key: String,
    /// Groups it may represent (SER-027); independent mode needs no such right (SER-028).
    #[serde(default)]
    pub represents: BTreeSet<String>,
}

/// The registry file of `palisade group server`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryFile {
    /// The server's id (named in every challenge).
    pub server_id: String,
    /// Device id → Ed25519 public key (hex).
    #[serde(default)]
    pub devices: BTreeMap<String, String>,
    /// Group → member device ids.
    #[serde(default)]
    pub groups: BTreeMap<String, BTreeSet<String>>,
    /// Gateway id → entry.
    #[serde(default)]
    pub gateways: BTreeMap<String, GatewayEntry>,
}

fn key(hex_key: &str, what: impl FnOnce() -> String) -> Result<[u8; 32], RegistryError> {
    hex::decode(hex_key.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| RegistryError::BadKey(what()))
}

impl RegistryFile {
    /// Registers everything in `state` (the server's registry, whose gateway keys also check
    /// challenge requests), replacing what its store held: the file is the registry, so a
    /// device or right removed from it is gone (in a shared store, for every instance). Weak
    /// device keys are refused here, before any batch verification; nothing is replaced
    /// unless the whole file is valid.
    pub fn load_into(&self, state: &mut ServerState) -> Result<(), RegistryError> {
        let registry = self.to_registry()?;
        state
            .server_mut()
            .registry()
            .replace(&registry)
            .map_err(|source| RegistryError::Invalid {
                what: "storing the registry".into(),
                source,
            })
    }

    /// The registry this file describes, checked whole.
    pub fn to_registry(&self) -> Result<ServerRegistry, RegistryError> {
        let invalid = |what: String| move |source| RegistryError::Invalid { what, source };
        let mut registry = ServerRegistry::default();
        for (group, members) in &self.groups {
            for device in members {
                let hex_key =
                    self.devices
                        .get(device)
                        .ok_or_else(|| RegistryError::UnknownDevice {
                            group: group.clone(),
                            device: device.clone(),
                        })?;
                let k = key(hex_key, || format!("device {device}"))?;
                registry
                    .add_member(group, device, &k)
                    .map_err(invalid(format!("device {device} of group {group}")))?;
            }
        }
        for (gateway, entry) in &self.gateways {
            let k = key(&entry.public_key, || format!("gateway {gateway}"))?;
            registry
                .add_gateway(gateway, &k)
                .map_err(invalid(format!("gateway {gateway}")))?;
            for group in &entry.represents {
                if !self.groups.contains_key(group) {
                    return Err(RegistryError::UnknownGroup {
                        gateway: gateway.clone(),
                        group: group.clone(),
                    });
                }
                registry
                    .allow_representation(group, gateway)
                    .map_err(invalid(format!("gateway {gateway}, group {group}")))?;
            }
        }
        Ok(registry)
    }
}
