//! The trust chain (SER-022): operator root keys → delegations → publisher keys.
//!
//! - A root key belongs to the gateway operator; its public half is a trust anchor
//!   ([`TrustAnchors`]), configured on the gateway.
//! - A [`Delegation`], signed by a root, lets one publisher key sign modules for one
//!   application and the listed plugin kinds, between `not_before` and `not_after`.
//! - The publisher signs each module's manifest (see [`super::signing`]).
//!
//! Keys are Ed25519. A key is named by its [`KeyId`]: the first 16 hex digits of the SHA-256 of
//! its 32-byte public key. Key files are described in [`keyfile`].

mod delegation;
pub mod keyfile;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{decode_hex, BadHex};

pub(crate) use delegation::DelegationWire;
pub use delegation::{Delegation, DELEGATION_DOMAIN, DELEGATION_FORMAT};
pub use keyfile::{
    decode_private_key, decode_public_key, encode_private_key, encode_public_key, generate_key,
    read_delegation, read_file, read_private_key, read_public_key, write_key_pair, write_replacing,
    KeyFileError, PRIVATE_KEY_FORMAT, PUBLIC_KEY_FORMAT,
};

/// The id of an Ed25519 public key: the first 8 bytes (16 hex digits) of SHA-256 over the
/// 32-byte key. Short enough to read aloud, long enough that an operator cannot mix up keys;
/// the chain itself never relies on the id alone (signatures are checked with the full key).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(pub [u8; 8]);

/// The [`KeyId`] of a public key.
pub fn key_id(key: &VerifyingKey) -> KeyId {
    let digest = Sha256::digest(key.as_bytes());
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    KeyId(id)
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl FromStr for KeyId {
    type Err = BadHex;
    fn from_str(s: &str) -> Result<KeyId, BadHex> {
        decode_hex::<8>(s, "key id").map(KeyId)
    }
}

impl Serialize for KeyId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for KeyId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The operator root public keys a gateway trusts. A delegation is accepted only when it is
/// signed by one of them; removing a root from this set revokes everything it delegated
/// (the registry re-checks stored modules against the current anchors, SER-013).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustAnchors {
    keys: BTreeMap<KeyId, VerifyingKey>,
}

impl TrustAnchors {
    /// An empty set: nothing verifies.
    pub fn new() -> TrustAnchors {
        TrustAnchors::default()
    }

    /// A set of these keys.
    pub fn from_keys(keys: impl IntoIterator<Item = VerifyingKey>) -> TrustAnchors {
        let mut anchors = TrustAnchors::new();
        for key in keys {
            anchors.insert(key);
        }
        anchors
    }

    /// Reads public key files (see `keyfile.rs`) into a set.
    pub fn from_public_key_files<P: AsRef<Path>>(
        paths: &[P],
    ) -> Result<TrustAnchors, KeyFileError> {
        let mut anchors = TrustAnchors::new();
        for path in paths {
            anchors.insert(read_public_key(path.as_ref())?);
        }
        Ok(anchors)
    }

    /// Adds a root key and returns its id.
    pub fn insert(&mut self, key: VerifyingKey) -> KeyId {
        let id = key_id(&key);
        self.keys.insert(id, key);
        id
    }

    /// The root key with this id, if trusted.
    pub fn get(&self, id: &KeyId) -> Option<&VerifyingKey> {
        self.keys.get(id)
    }

    /// The ids of the trusted roots, in order.
    pub fn key_ids(&self) -> impl Iterator<Item = KeyId> + '_ {
        self.keys.keys().copied()
    }

    /// How many roots are trusted.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no root is trusted (then no module verifies).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}
