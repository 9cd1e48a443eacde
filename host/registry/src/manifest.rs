//! The manifest: what a publisher states about one module, and signs.

use serde::{Deserialize, Serialize};

use super::canon::Canon;
use super::format::{strictly_sorted, FormatError};
use super::{validate_name, ModuleCapability, ModuleHash, ModuleKind, Version};

/// The domain tag of the signed encoding of a manifest.
pub const MANIFEST_DOMAIN: &str = "palisade-manifest-v1";

/// What a module is and what it asks for. The publisher signs its canonical encoding
/// (see `canon.rs`): `"palisade-manifest-v1"`, app, kind, name, version, capabilities (a
/// counted list of names in canonical order), module sha256 (32 bytes), size (u64).
///
/// JSON form (inside the signature section, and stored by the registry), every field
/// mandatory, `capabilities` possibly empty but present:
/// `{"app":"…","kind":"authorizer","name":"…","version":"1.2.0","capabilities":["kv"],
/// "module_sha256":"<64 hex>","size":N}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The application the module is for.
    pub app: String,
    /// The plugin kind (the WIT world the component must implement).
    pub kind: ModuleKind,
    /// The plugin's name within the application.
    pub name: String,
    /// The module's version; versions of one plugin only go up.
    pub version: Version,
    /// The host capabilities the module asks for, in canonical order without duplicates.
    pub capabilities: Vec<ModuleCapability>,
    /// SHA-256 of the component without its `palisade-signature` section.
    pub module_sha256: ModuleHash,
    /// Length in bytes of the component without its `palisade-signature` section.
    pub size: u64,
}

impl Manifest {
    /// A manifest for a module not hashed yet: [`super::sign`] fills in `module_sha256` and
    /// `size`. Capabilities are put in canonical order.
    pub fn new(
        app: &str,
        kind: ModuleKind,
        name: &str,
        version: Version,
        capabilities: &[ModuleCapability],
    ) -> Manifest {
        let mut capabilities = capabilities.to_vec();
        capabilities.sort();
        capabilities.dedup();
        Manifest {
            app: app.to_owned(),
            kind,
            name: name.to_owned(),
            version,
            capabilities,
            module_sha256: ModuleHash([0; 32]),
            size: 0,
        }
    }

    /// The canonical bytes the publisher signs.
    pub fn signed_bytes(&self) -> Vec<u8> {
        Canon::new(MANIFEST_DOMAIN)
            .str(&self.app)
            .str(self.kind.name())
            .str(&self.name)
            .str(self.version.as_str())
            .list(self.capabilities.iter().map(|c| c.name()))
            .bytes(&self.module_sha256.0)
            .u64(self.size)
            .finish()
    }

    /// Checks the form: names allowed, capabilities in canonical order.
    pub fn validate(&self) -> Result<(), FormatError> {
        validate_name("application name", &self.app)?;
        validate_name("plugin name", &self.name)?;
        strictly_sorted(
            &self.capabilities,
            "capabilities",
            "kv, groups, crypto, location",
        )
    }

    /// The compact JSON form.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("plain values serialize")
    }

    /// `app/name@version`, how modules are named in errors, logs and audit records.
    pub fn label(&self) -> String {
        format!("{}/{}@{}", self.app, self.name, self.version)
    }
}
