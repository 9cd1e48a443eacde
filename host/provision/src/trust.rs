//! Which service providers a gateway trusts, and for what (SER-020 provider authentication,
//! SER-022: a provider provisions only its own applications).

use super::codec;
use super::error::ProvisionError;
use ed25519_dalek::VerifyingKey;
use palisade_keys::check_ed25519_public;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// One trusted provider: its signing key and its entitlements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedProvider {
    /// The key its bundles must be signed with.
    pub key: VerifyingKey,
    /// The applications it may provision (groups, secrets, public keys).
    pub apps: BTreeSet<String>,
    /// Whether it may set the gateway's own groups for group authentication (SER-027/028).
    /// Devices it registers are its own either way: no other provider can re-key them.
    pub gateway_groups: bool,
}

impl TrustedProvider {
    /// A provider with no entitlements yet. Weak (small-order) keys are refused: anyone could
    /// forge signatures under them.
    pub fn new(key: &[u8; 32]) -> Result<Self, ProvisionError> {
        Ok(TrustedProvider {
            key: check_ed25519_public(key)
                .map_err(|e| ProvisionError::invalid("provider key", e.to_string()))?,
            apps: BTreeSet::new(),
            gateway_groups: false,
        })
    }

    /// Entitles it to provision `app`.
    pub fn app(mut self, app: impl Into<String>) -> Self {
        self.apps.insert(app.into());
        self
    }

    /// Entitles it (or not) to set the gateway's own groups.
    pub fn gateway_groups(mut self, allowed: bool) -> Self {
        self.gateway_groups = allowed;
        self
    }
}

/// The trust configuration as stored (JSON or a TOML section): this gateway's id and its
/// providers. `palisade provision trust` writes it; `palisade serve` can embed it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TrustConfig {
    /// This gateway's id: bundles addressed elsewhere are refused.
    pub gateway_id: String,
    /// Provider id → entry.
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderEntry>,
}

/// A provider as stored in a [`TrustConfig`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderEntry {
    /// Ed25519 public key, 64 hex digits.
    pub public_key: String,
    /// Applications it may provision.
    #[serde(default)]
    pub apps: BTreeSet<String>,
    /// Whether it may set the gateway's own groups.
    #[serde(default)]
    pub gateway_groups: bool,
}

impl TrustConfig {
    /// The configuration of gateway `gateway_id`, trusting no provider yet.
    pub fn new(gateway_id: impl Into<String>) -> TrustConfig {
        TrustConfig {
            gateway_id: gateway_id.into(),
            providers: BTreeMap::new(),
        }
    }

    /// Checks every entry and returns the providers.
    pub fn providers(&self) -> Result<BTreeMap<String, TrustedProvider>, ProvisionError> {
        if !codec::valid_id(&self.gateway_id) {
            return Err(ProvisionError::invalid(
                format!("gateway id {:?}", self.gateway_id),
                "not a valid identifier",
            ));
        }
        let mut out = BTreeMap::new();
        for (id, p) in &self.providers {
            let item = || format!("trusted provider {id:?}");
            if !codec::valid_id(id) {
                return Err(ProvisionError::invalid(item(), "not a valid identifier"));
            }
            let key: [u8; 32] = hex::decode(p.public_key.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| {
                    ProvisionError::invalid(item(), "public_key must be 64 hex digits")
                })?;
            let mut t = TrustedProvider::new(&key)
                .map_err(|e| ProvisionError::invalid(item(), e.to_string()))?
                .gateway_groups(p.gateway_groups);
            for app in &p.apps {
                if !codec::valid_id(app) {
                    return Err(ProvisionError::invalid(
                        item(),
                        format!("application {app:?} is not a valid identifier"),
                    ));
                }
                t = t.app(app.clone());
            }
            out.insert(id.clone(), t);
        }
        Ok(out)
    }
}
