//! Signed policy modules: the trust chain, module signing and the registry store.
//!
//! Only a module signed by a key entitled to its application may ever run (SER-022): an
//! operator root key (a [`TrustAnchors`] entry) signs a [`Delegation`] that lets one publisher
//! key sign modules for one application and the listed kinds, until an expiry; the publisher
//! signs the module's [`Manifest`] (app, kind, name, version, requested capabilities, sha256 and
//! size of the component); [`sign`] embeds manifest, signature and delegation into the
//! component as one custom section, `palisade-signature`, so that one file travels.
//! [`verify`] checks the whole chain before the bytes are ever compiled and names the exact
//! reason when it fails ([`VerifyError`]).
//!
//! The store ([`ModuleStore`], [`EmbeddedStore`]) keeps verified modules content-addressed on disk with their metadata in
//! SQLite, activates versions atomically (versions only go up unless an operator forces a
//! rollback) and re-checks the bytes at boot, periodically and before use (SER-013).
//!
//! Every signed encoding is a length-prefixed binary form (see `canon.rs`; never JSON) that
//! starts with a domain tag (`palisade-delegation-v1`, `palisade-manifest-v1`), so that a
//! signature made for one purpose can never be replayed as another, and has no optional field:
//! leaving a field out of a file makes it unreadable, it never relaxes a check.
//!
//! This module depends on crates only (no other Palisade module); the host maps
//! [`ModuleKind`] and [`ModuleCapability`] onto its sandbox types and checks the component's
//! WIT world against the declared kind when it compiles the module.

#![deny(missing_docs)]

mod canon;
mod format;
mod manifest;
mod section;
mod signing;
mod store;
mod time;
mod trust;
mod verify_error;
mod version;

#[cfg(test)]
pub(crate) mod tests;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

// The public API is this list; every module is private, so an item is public only when it
// is named here (issue #14).
pub use format::FormatError;
pub use manifest::{Manifest, MANIFEST_DOMAIN};
pub use section::{strip_signature, SectionError, SIGNATURE_SECTION};
pub use signing::{
    read_unverified, sign, verify, verify_detached, verify_with, SignError, UnverifiedSignature,
    VerifiedModule, VerifyError, VerifyPolicy, DEFAULT_MAX_MODULE_SIZE, SIGNATURE_FORMAT,
};
pub use store::{
    ActivateOutcome, EmbeddedStore, Fallback, IntegrityEntry, IntegrityProblem, IntegrityReport,
    ModuleRecord, ModuleState, ModuleStore, OpenReport, PutOutcome, PutStatus, RemoveOutcome,
    StoreConfig, StoreError, Upload,
};
pub use time::{format_rfc3339, now_unix, parse_duration, parse_timestamp, TimeError};
pub use trust::{
    decode_private_key, decode_public_key, encode_private_key, encode_public_key, generate_key,
    key_id, read_delegation, read_file, read_private_key, read_public_key, write_key_pair,
    write_replacing, Delegation, KeyFileError, KeyId, TrustAnchors, DELEGATION_DOMAIN,
    DELEGATION_FORMAT, PRIVATE_KEY_FORMAT, PUBLIC_KEY_FORMAT,
};
pub use version::{Version, VersionError};

// One vocabulary with the sandbox (issue #14.3): a manifest's kind is the kind the sandbox
// loads, a requested capability the one an operator grants, with no mapping between them.
pub use palisade_types::{Capability as ModuleCapability, PluginKind as ModuleKind, UnknownName};

/// The SHA-256 of a component without its signature section: the module's content address.
/// Written as 64 lowercase hex digits; any other spelling is refused, so that one hash has
/// exactly one text form (a changed letter case must never verify, SER-013).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModuleHash(pub [u8; 32]);

impl ModuleHash {
    /// The hash of these bytes.
    pub fn of(bytes: &[u8]) -> ModuleHash {
        ModuleHash(Sha256::digest(bytes).into())
    }

    /// The 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for ModuleHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ModuleHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ModuleHash({})", self.to_hex())
    }
}

impl FromStr for ModuleHash {
    type Err = BadHex;
    fn from_str(s: &str) -> Result<Self, BadHex> {
        decode_hex::<32>(s, "module sha256").map(ModuleHash)
    }
}

impl Serialize for ModuleHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for ModuleHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A hex field that is not exactly N bytes written as lowercase hex digits.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the {field} must be {len} lowercase hex digits")]
pub struct BadHex {
    /// The field that was being read.
    pub field: &'static str,
    /// The number of hex digits it must have.
    pub len: usize,
}

/// Decodes exactly `N` bytes from lowercase hex, refusing upper case so that every value has
/// one spelling and a signed file cannot be changed without breaking it.
pub(crate) fn decode_hex<const N: usize>(s: &str, field: &'static str) -> Result<[u8; N], BadHex> {
    let bad = BadHex { field, len: 2 * N };
    if s.len() != 2 * N || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(bad);
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).map_err(|_| bad)?;
    Ok(out)
}

// The one name rule (issue #14.3): the gateway configuration and the runtime's installer use
// the same function, so an app the config accepts is one the registry accepts.
pub use palisade_types::{validate_name, NameError};
