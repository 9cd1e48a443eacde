//! Credential provisioning by service providers (SER-019, SER-020, SER-021, SER-022, SER-012).
//!
//! A service provider sends a gateway a *bundle*: device public keys, group memberships (for
//! the gateway's own group authentication or for one application's group look-up),
//! application secrets (HMAC keys) and application public keys. The bundle is signed by the
//! provider's Ed25519 key, addressed to one gateway, valid for a bounded time window and
//! numbered per provider; when it carries secrets it must be encrypted to the gateway's X25519
//! key (ephemeral X25519 + HKDF-SHA256 + ChaCha20-Poly1305, header bound as associated data),
//! so that only that gateway can open it (SER-021).
//!
//! - [`create_bundle`] builds one (provider side), [`SignedBundle::parse`] reads its header
//!   without any key (inspection), and [`Provisioner::apply`] checks and applies it on the
//!   gateway: trusted provider, signature, addressee, validity, replay (SER-012), decryption,
//!   the provider's rights over each application (SER-022), every item; then it imports keys
//!   into the [`palisade_keys::KeyStore`] and commits, all or nothing (see `apply`).
//! - Group and device changes reach the runtime through the [`MemberDirectory`] trait.
//!
//! The encoding (see `codec`) is deterministic CBOR through palisade-codec (the same bounded
//! codec as the group protocol's), behind a versioned 5-byte prefix: size-bounded and
//! canonical, one bundle has exactly one encoding, which is what the provider signs.
#![deny(missing_docs)]

mod apply;
mod bundle;
mod codec;
mod directory;
mod error;
mod json;
mod plan;
mod positions;
mod seal;
mod state;
mod trust;

/// The keystore label of the gateway's X25519 key that provisioning bundles are encrypted
/// to (made by `palisade provision init`, found by the gateway at start).
pub const GATEWAY_X25519_LABEL: &str = "provisioning-x25519";

// The public API is this list; every module is private, so an item is public only when it
// is named here (issue #14).
pub use apply::{ProvisionReport, ProvisionedKey, Provisioner};
pub use bundle::{create_bundle, BundleSpec, SignedBundle};
#[cfg(test)]
pub(crate) use directory::MemoryDirectory;
pub use directory::{DirectoryUpdate, MemberDirectory};
pub use error::{DecodeError, ProvisionError};
pub use json::{GroupsJson, PerAppHex, PositionJson, PositionsJson};
pub use positions::{Position, PositionDirectory};
pub use seal::GatewayKey;
pub use state::{
    AppKeyRecord, DeviceRecord, GroupRecord, ProviderProgress, ProvisionState, StateFile, StrayKey,
};
pub use trust::{ProviderEntry, TrustConfig, TrustedProvider};

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use zeroize::Zeroizing;

/// The bundle format version this build writes and reads (format 1, hand-written length
/// prefixes, is refused by name: bundles live at most 90 days, so no old reader is kept).
pub(crate) const FORMAT_VERSION: u8 = 2;
/// No bundle may be larger (SER-001): checked before anything is decoded.
pub(crate) const MAX_BUNDLE_LEN: usize = 4 << 20;
/// Longest validity window of a bundle, so that remembered bundle ids can be forgotten once
/// they expire (SER-012) and a leaked bundle does not stay usable for long.
pub(crate) const MAX_VALIDITY: u64 = 90 * 24 * 3600;
/// Allowed clock skew between provider and gateway on `issued_at`, in seconds.
pub(crate) const CLOCK_SKEW: u64 = 300;
/// Most devices in one bundle.
pub(crate) const MAX_DEVICES: usize = 16_384;
/// Most members in one group (the group-authentication limit).
pub(crate) const MAX_MEMBERS: usize = palisade_group::MAX_MEMBERS;
/// Most groups per scope, applications per bundle, and keys per application.
pub(crate) const MAX_ENTRIES: usize = 4096;

/// How an encrypted bundle was sealed: to which gateway key, with which ephemeral key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Encryption {
    /// The gateway's X25519 public key the bundle is sealed to.
    #[serde(with = "hex32")]
    pub recipient: [u8; 32],
    /// The provider's ephemeral X25519 public key for this bundle.
    #[serde(with = "hex32")]
    pub ephemeral: [u8; 32],
}

/// The clear, signed header of a bundle: readable without any key (`provision inspect`) and,
/// for encrypted bundles, bound to the ciphertext as associated data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BundleHeader {
    /// The format version (2 is the only one this build writes and reads).
    pub version: u8,
    /// A random id; a gateway applies a given bundle id at most once (SER-012).
    #[serde(serialize_with = "hex_ser")]
    pub bundle_id: [u8; 16],
    /// The service provider that signed it.
    pub provider: String,
    /// The gateway it is addressed to.
    pub gateway: String,
    /// Start of validity, Unix seconds.
    pub issued_at: u64,
    /// End of validity (exclusive), Unix seconds.
    pub expires_at: u64,
    /// Monotonic per provider: a gateway applies only increasing sequence numbers (SER-012).
    pub sequence: u64,
    /// Present when the contents are encrypted to a gateway key (SER-021).
    pub encryption: Option<Encryption>,
}

impl BundleHeader {
    /// The bundle id as hex.
    pub fn id_hex(&self) -> String {
        hex::encode(self.bundle_id)
    }
}

/// Secret bytes (an application's HMAC key); zeroized on drop and never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Wraps secret bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretBytes(Zeroizing::new(bytes))
    }
    /// The secret.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBytes({} bytes)", self.0.len())
    }
}

/// What a bundle provisions. Maps are ordered so that the encoding is canonical. A group with
/// no members removes that group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BundleContents {
    /// Device id → Ed25519 public key (SER-020: device credentials for group authentication).
    pub devices: BTreeMap<String, [u8; 32]>,
    /// The gateway's own groups for group authentication (SER-027/028): group → device ids.
    pub gateway_groups: BTreeMap<String, BTreeSet<String>>,
    /// Per-application groups for the plugins' group look-up: app → group → member ids.
    pub app_groups: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    /// Application secrets: app → key name → secret (HMAC keys, 16..=64 bytes; SER-021).
    pub app_secrets: BTreeMap<String, BTreeMap<String, SecretBytes>>,
    /// Application public keys: app → key name → Ed25519 public key.
    pub app_public_keys: BTreeMap<String, BTreeMap<String, [u8; 32]>>,
    /// Device positions per application, the location source of proxied requests (`aclr`,
    /// issue 13.7): app → originator → position; `None` removes the originator's position.
    pub app_positions: BTreeMap<String, BTreeMap<String, Option<Position>>>,
}

impl BundleContents {
    /// Whether there is anything secret in it (then it must be encrypted).
    pub fn has_secrets(&self) -> bool {
        self.app_secrets.values().any(|m| !m.is_empty())
    }

    /// Every application the bundle touches, for the SER-022 check.
    pub fn apps(&self) -> BTreeSet<&str> {
        self.app_groups
            .keys()
            .chain(self.app_secrets.keys())
            .chain(self.app_public_keys.keys())
            .chain(self.app_positions.keys())
            .map(String::as_str)
            .collect()
    }
}

fn hex_ser<S: serde::Serializer>(b: &[u8; 16], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(b))
}

mod hex32 {
    pub fn serialize<S: serde::Serializer>(b: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_apply;
#[cfg(test)]
mod tests_format;
