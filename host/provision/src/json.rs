//! The JSON forms of a bundle's contents: what `palisade provision create` reads (one file per
//! part, keys and secrets as hex) and the public view `inspect` prints (never secrets).

use super::error::ProvisionError;
use super::{BundleContents, SecretBytes};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// App → key name → hex string.
pub type PerAppHex = BTreeMap<String, BTreeMap<String, String>>;

/// One position in a positions file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PositionJson {
    /// Degrees, WGS-84, within ±90.
    pub latitude: f64,
    /// Degrees, WGS-84, within ±180.
    pub longitude: f64,
    /// ISO 3166-1 alpha-2, e.g. "FR".
    #[serde(default)]
    pub country: Option<String>,
}

/// The positions file: `{"app": {"originator": {"latitude": 48.85, "longitude": 2.35,
/// "country": "FR"}, "other-originator": null}}`; `null` removes a position.
pub type PositionsJson = BTreeMap<String, BTreeMap<String, Option<PositionJson>>>;

/// The groups file: `{"gateway": {"group": ["device", ...]}, "apps": {"app": {"group":
/// ["member", ...]}}}`; both parts optional, an empty list removes the group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupsJson {
    /// The gateway's own groups (group authentication).
    #[serde(default)]
    pub gateway: BTreeMap<String, BTreeSet<String>>,
    /// Per-application groups.
    #[serde(default)]
    pub apps: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
}

fn hex32(s: &str, item: impl FnOnce() -> String) -> Result<[u8; 32], ProvisionError> {
    hex::decode(s.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ProvisionError::invalid(item(), "expected 64 hex digits"))
}

impl BundleContents {
    /// Adds devices from `{"device-id": "<Ed25519 public key hex>"}`.
    pub fn add_devices_json(
        &mut self,
        devices: &BTreeMap<String, String>,
    ) -> Result<(), ProvisionError> {
        for (d, k) in devices {
            self.devices
                .insert(d.clone(), hex32(k, || format!("device {d:?}"))?);
        }
        Ok(())
    }

    /// Adds groups from a [`GroupsJson`].
    pub fn add_groups_json(&mut self, groups: GroupsJson) {
        self.gateway_groups.extend(groups.gateway);
        for (app, gs) in groups.apps {
            self.app_groups.entry(app).or_default().extend(gs);
        }
    }

    /// Adds application secrets from `{"app": {"name": "<hex>"}}` (SER-021: such a bundle
    /// must be encrypted).
    pub fn add_secrets_json(&mut self, secrets: &PerAppHex) -> Result<(), ProvisionError> {
        for (app, keys) in secrets {
            for (name, v) in keys {
                let bytes = hex::decode(v.trim()).map_err(|_| {
                    ProvisionError::invalid(format!("secret {name:?} of app {app:?}"), "not hex")
                })?;
                let entry = self.app_secrets.entry(app.clone()).or_default();
                entry.insert(name.clone(), SecretBytes::new(bytes));
            }
        }
        Ok(())
    }

    /// Adds application public keys from `{"app": {"name": "<Ed25519 public key hex>"}}`.
    pub fn add_public_keys_json(&mut self, keys: &PerAppHex) -> Result<(), ProvisionError> {
        for (app, ks) in keys {
            for (name, v) in ks {
                let k = hex32(v, || format!("public key {name:?} of app {app:?}"))?;
                self.app_public_keys
                    .entry(app.clone())
                    .or_default()
                    .insert(name.clone(), k);
            }
        }
        Ok(())
    }

    /// Adds originator positions from a [`PositionsJson`] (issue 13.7).
    pub fn add_positions_json(&mut self, positions: &PositionsJson) -> Result<(), ProvisionError> {
        for (app, entries) in positions {
            for (originator, position) in entries {
                let position = position
                    .as_ref()
                    .map(|p| {
                        super::Position::from_degrees(p.latitude, p.longitude, p.country.as_deref())
                    })
                    .transpose()
                    .map_err(|reason| {
                        ProvisionError::invalid(
                            format!("position of {originator:?} in app {app:?}"),
                            reason,
                        )
                    })?;
                self.app_positions
                    .entry(app.clone())
                    .or_default()
                    .insert(originator.clone(), position);
            }
        }
        Ok(())
    }

    /// Everything but the secrets, as JSON (secrets are listed by name only).
    pub fn public_view(&self) -> serde_json::Value {
        let hexmap = |m: &BTreeMap<String, [u8; 32]>| -> BTreeMap<String, String> {
            m.iter().map(|(k, v)| (k.clone(), hex::encode(v))).collect()
        };
        let public_keys: BTreeMap<_, _> = self
            .app_public_keys
            .iter()
            .map(|(a, m)| (a.clone(), hexmap(m)))
            .collect();
        let secrets: BTreeMap<_, Vec<_>> = self
            .app_secrets
            .iter()
            .map(|(a, m)| (a.clone(), m.keys().collect()))
            .collect();
        serde_json::json!({
            "devices": hexmap(&self.devices),
            "gateway_groups": self.gateway_groups,
            "app_groups": self.app_groups,
            "app_public_keys": public_keys,
            "app_secret_names": secrets,
            "app_positions": self.app_positions,
        })
    }
}
