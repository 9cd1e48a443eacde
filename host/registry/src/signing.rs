//! Signing a component and verifying one (SER-022, SER-013).
//!
//! A signed component is the component plus one top-level custom section named
//! `palisade-signature` whose contents are compact JSON, every field mandatory:
//!
//! ```text
//! {"format":"palisade-signature-v1","manifest":{…},"publisher_key":"<64 hex>",
//!  "signature":"<128 hex: Ed25519 over the manifest's canonical encoding>","delegation":{…}}
//! ```
//!
//! The section must be byte-for-byte the canonical serialization of what it contains, so a
//! signed file has exactly one form: any changed byte anywhere in the file makes it fail
//! (inside the section: not canonical, or a signature fails; elsewhere: the module hash).

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::format::{self, expect_format, FormatError};
use super::section::{self, append_custom_section, SectionError, SIGNATURE_SECTION};
use super::trust::DelegationWire;
use super::{key_id, Delegation, KeyId, Manifest, ModuleHash, ModuleKind, NameError, TrustAnchors};

pub use super::verify_error::VerifyError;

/// The `format` field of the signature section.
pub const SIGNATURE_FORMAT: &str = "palisade-signature-v1";
/// The default upper bound on a module file: larger uploads are refused before parsing.
pub const DEFAULT_MAX_MODULE_SIZE: u64 = 16 * 1024 * 1024;
/// No valid signature section is anywhere near this large.
const MAX_SIGNATURE_SECTION: usize = 64 * 1024;

/// What a verification checks against.
#[derive(Clone, Debug)]
pub struct VerifyPolicy<'a> {
    /// The operator root keys.
    pub anchors: &'a TrustAnchors,
    /// The current time (seconds since the epoch) for the delegation's validity window, or
    /// `None` to skip the window (re-checking modules already accepted, see
    /// [`Delegation::verify`]).
    pub now: Option<u64>,
    /// The application the module must be for (e.g. the upload path's application).
    pub expected_app: Option<&'a str>,
    /// The kind the module must be.
    pub expected_kind: Option<ModuleKind>,
    /// Files larger than this are refused (SER-001).
    pub max_size: u64,
}

impl<'a> VerifyPolicy<'a> {
    /// A policy at this time, with no expectation and the default size limit.
    pub fn new(anchors: &'a TrustAnchors, now: u64) -> VerifyPolicy<'a> {
        VerifyPolicy {
            anchors,
            now: Some(now),
            expected_app: None,
            expected_kind: None,
            max_size: DEFAULT_MAX_MODULE_SIZE,
        }
    }
}

/// A module whose whole chain verified: safe to store and to hand to the compiler.
#[derive(Clone, Debug)]
pub struct VerifiedModule {
    /// The signed manifest.
    pub manifest: Manifest,
    /// The key that signed the manifest.
    pub publisher_key: VerifyingKey,
    /// The delegation that entitles that key, signed by a trusted root.
    pub delegation: Delegation,
    /// The component without its signature section: the bytes the manifest hash covers and
    /// the bytes to compile.
    pub component: Vec<u8>,
    /// The signature section's contents, kept so the chain can be re-checked later.
    pub signature_block: Vec<u8>,
}

impl VerifiedModule {
    /// The id of the publisher key.
    pub fn publisher_key_id(&self) -> KeyId {
        key_id(&self.publisher_key)
    }

    /// The id of the root that signed the delegation.
    pub fn root_key_id(&self) -> KeyId {
        self.delegation.root_key_id
    }
}

/// Why a component could not be signed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The input is not a component whose sections can be read.
    #[error("cannot sign")]
    Component(#[from] SectionError),
    /// The manifest or delegation is not well-formed (names, lists, validity window).
    #[error("cannot sign")]
    Format(#[from] FormatError),
    /// The signing key is not the one the delegation names.
    #[error("cannot sign: the delegation is for publisher key {delegated}, not for key {signer}")]
    KeyNotDelegated {
        /// The key given to sign with.
        signer: KeyId,
        /// The key the delegation names.
        delegated: KeyId,
    },
    /// The delegation is for another application.
    #[error("cannot sign: the delegation is for application {delegated:?}, not {app:?}")]
    WrongApp {
        /// The delegation's application.
        delegated: String,
        /// The manifest's application.
        app: String,
    },
    /// The delegation does not cover the manifest's kind.
    #[error("cannot sign: the delegation does not allow {kind} modules")]
    WrongKind {
        /// The manifest's kind.
        kind: ModuleKind,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BlockWire {
    format: String,
    manifest: Manifest,
    publisher_key: String,
    signature: String,
    delegation: DelegationWire,
}

/// Signs a component: computes the module hash and size into a copy of `manifest`, signs its
/// canonical encoding with the publisher key and appends one `palisade-signature` section with
/// manifest, signature and delegation. A signature section already in the input is replaced
/// (re-signing); the key must be the delegation's publisher, for the manifest's app and kind.
pub fn sign(
    component: &[u8],
    manifest: &Manifest,
    publisher: &SigningKey,
    delegation: &Delegation,
) -> Result<Vec<u8>, SignError> {
    let split = section::split(component)?;
    let mut manifest = manifest.clone();
    manifest.module_sha256 = ModuleHash::of(&split.component);
    manifest.size = split.component.len() as u64;
    manifest.validate()?;
    delegation.validate()?;
    let signer = publisher.verifying_key();
    if signer != delegation.publisher_key {
        return Err(SignError::KeyNotDelegated {
            signer: key_id(&signer),
            delegated: delegation.publisher_key_id(),
        });
    }
    if delegation.app != manifest.app {
        let (delegated, app) = (delegation.app.clone(), manifest.app.clone());
        return Err(SignError::WrongApp { delegated, app });
    }
    if !delegation.kinds.contains(&manifest.kind) {
        return Err(SignError::WrongKind {
            kind: manifest.kind,
        });
    }
    let signature = publisher.sign(&manifest.signed_bytes());
    let block = BlockWire {
        format: SIGNATURE_FORMAT.to_owned(),
        manifest,
        publisher_key: hex::encode(signer.as_bytes()),
        signature: hex::encode(signature.to_bytes()),
        delegation: delegation.to_wire(),
    };
    let block = serde_json::to_vec(&block).expect("plain values serialize");
    let mut out = split.component.into_owned();
    append_custom_section(&mut out, SIGNATURE_SECTION, &block);
    Ok(out)
}

/// Verifies a signed component at time `now` against the trust anchors, optionally expecting
/// an application and kind, with the default size limit. See [`verify_with`].
pub fn verify(
    bytes: &[u8],
    anchors: &TrustAnchors,
    now: u64,
    expected: Option<(&str, ModuleKind)>,
) -> Result<VerifiedModule, VerifyError> {
    let mut policy = VerifyPolicy::new(anchors, now);
    if let Some((app, kind)) = expected {
        policy.expected_app = Some(app);
        policy.expected_kind = Some(kind);
    }
    verify_with(bytes, &policy)
}

/// Verifies a signed component: size, component header and sections, exactly one signature
/// section, its form, the delegation (trusted root, signature, validity window), that the
/// signer is the delegated key for the manifest's app and kind, the manifest signature, the
/// module hash, and finally the expected app and kind. The chain is checked before the hash
/// and before the expectations, so an error about the app or kind is only ever reported for
/// an authentic module. Every failure is its own [`VerifyError`] variant.
pub fn verify_with(bytes: &[u8], policy: &VerifyPolicy<'_>) -> Result<VerifiedModule, VerifyError> {
    check_size(bytes.len(), policy)?;
    let split = section::split(bytes)?;
    let block = split.signature.ok_or(VerifyError::Unsigned)?;
    let (manifest, publisher_key, delegation) = check_chain(&split.component, block, policy)?;
    Ok(VerifiedModule {
        manifest,
        publisher_key,
        delegation,
        component: split.component.into_owned(),
        signature_block: block.to_vec(),
    })
}

/// Verifies a component stored apart from its signature section (as the registry keeps
/// them): the same checks as [`verify_with`] on `component` plus `signature_block`.
pub fn verify_detached(
    component: &[u8],
    signature_block: &[u8],
    policy: &VerifyPolicy<'_>,
) -> Result<(Manifest, Delegation), VerifyError> {
    check_size(component.len(), policy)?;
    let (manifest, _, delegation) = check_chain(component, signature_block, policy)?;
    Ok((manifest, delegation))
}

fn check_size(size: usize, policy: &VerifyPolicy<'_>) -> Result<(), VerifyError> {
    if size as u64 > policy.max_size {
        return Err(VerifyError::TooLarge {
            size: size as u64,
            limit: policy.max_size,
        });
    }
    Ok(())
}

fn check_chain(
    component: &[u8],
    block: &[u8],
    policy: &VerifyPolicy<'_>,
) -> Result<(Manifest, VerifyingKey, Delegation), VerifyError> {
    let (manifest, publisher_key, signature, delegation) = parse_block(block)?;
    delegation.verify(policy.anchors, policy.now)?;
    if publisher_key != delegation.publisher_key {
        return Err(VerifyError::KeyNotDelegated {
            signer: key_id(&publisher_key),
            app: manifest.app.clone(),
        });
    }
    if delegation.app != manifest.app {
        return Err(VerifyError::DelegationForOtherApp {
            delegated: delegation.app.clone(),
            app: manifest.app.clone(),
        });
    }
    if !delegation.kinds.contains(&manifest.kind) {
        return Err(VerifyError::DelegationForOtherKind {
            delegated: delegation.kinds.clone(),
            kind: manifest.kind,
        });
    }
    publisher_key
        .verify_strict(&manifest.signed_bytes(), &signature)
        .map_err(|_| VerifyError::BadModuleSignature {
            publisher: key_id(&publisher_key),
        })?;
    let actual = ModuleHash::of(component);
    if actual != manifest.module_sha256 || component.len() as u64 != manifest.size {
        return Err(VerifyError::ModuleHashMismatch {
            expected: manifest.module_sha256,
            actual,
            expected_size: manifest.size,
            actual_size: component.len() as u64,
        });
    }
    if let Some(expected) = policy.expected_app {
        if expected != manifest.app {
            let found = manifest.app.clone();
            return Err(VerifyError::AppMismatch {
                expected: expected.to_owned(),
                found,
            });
        }
    }
    if let Some(expected) = policy.expected_kind {
        if expected != manifest.kind {
            return Err(VerifyError::KindMismatch {
                expected,
                found: manifest.kind,
            });
        }
    }
    Ok((manifest, publisher_key, delegation))
}

fn parse_block(
    block: &[u8],
) -> Result<(Manifest, VerifyingKey, Signature, Delegation), VerifyError> {
    if block.len() > MAX_SIGNATURE_SECTION {
        let limit = MAX_SIGNATURE_SECTION;
        let error = FormatError::TooLarge {
            what: "signature section",
            size: block.len(),
            limit,
        };
        return Err(VerifyError::MalformedSignature(error));
    }
    let wire: BlockWire = serde_json::from_slice(block).map_err(FormatError::from)?;
    if serde_json::to_vec(&wire).map_err(FormatError::from)? != block {
        return Err(FormatError::NotCanonical {
            what: "signature section",
        }
        .into());
    }
    expect_format(&wire.format, SIGNATURE_FORMAT)?;
    wire.manifest.validate()?;
    let publisher_key = format::public_key(&wire.publisher_key, "publisher key")?;
    let signature = format::signature(&wire.signature, "module signature")?;
    let delegation = Delegation::from_wire(wire.delegation)?;
    Ok((wire.manifest, publisher_key, signature, delegation))
}

impl From<FormatError> for VerifyError {
    /// A name refused anywhere in the section is reported as such (path separators, `..`);
    /// every other form problem is a malformed signature section.
    fn from(e: FormatError) -> VerifyError {
        match e {
            FormatError::InvalidName(name) => VerifyError::InvalidName(name),
            other => VerifyError::MalformedSignature(other),
        }
    }
}

impl From<NameError> for VerifyError {
    fn from(e: NameError) -> VerifyError {
        VerifyError::InvalidName(e)
    }
}

/// Builds a signed file without any of [`sign`]'s checks, so tests can forge every kind of bad
/// chain: `tamper` changes the manifest after it was signed.
#[cfg(test)]
pub(crate) fn sign_raw(
    component: &[u8],
    manifest: &Manifest,
    signer: &SigningKey,
    delegation: &Delegation,
    tamper: impl FnOnce(&mut Manifest),
) -> Vec<u8> {
    let mut manifest = manifest.clone();
    manifest.module_sha256 = ModuleHash::of(component);
    manifest.size = component.len() as u64;
    let signature = signer.sign(&manifest.signed_bytes());
    tamper(&mut manifest);
    let block = BlockWire {
        format: SIGNATURE_FORMAT.to_owned(),
        manifest,
        publisher_key: hex::encode(signer.verifying_key().as_bytes()),
        signature: hex::encode(signature.to_bytes()),
        delegation: delegation.to_wire(),
    };
    let mut out = component.to_vec();
    append_custom_section(
        &mut out,
        SIGNATURE_SECTION,
        &serde_json::to_vec(&block).unwrap(),
    );
    out
}

/// A module's signature section as read without a trust root, for `palisade inspect`: what the
/// section claims, none of it verified. Never a reason to trust the module; [`verify_with`] is.
#[derive(Clone, Debug)]
pub struct UnverifiedSignature {
    /// The manifest as written in the section.
    pub manifest: Manifest,
    /// The key the section says signed the manifest.
    pub publisher_key: VerifyingKey,
    /// The delegation the section carries (its root signature not checked).
    pub delegation: Delegation,
    /// Whether the manifest's hash and size match the component: the one part of the chain
    /// that needs no trust root.
    pub hash_matches: bool,
}

/// Reads the signature section of `bytes`, if there is one, checking its form only (the same
/// parser as [`verify_with`], so a section this refuses, verification refuses too).
pub fn read_unverified(bytes: &[u8]) -> Result<Option<UnverifiedSignature>, VerifyError> {
    let split = section::split(bytes)?;
    let Some(block) = split.signature else {
        return Ok(None);
    };
    let (manifest, publisher_key, _, delegation) = parse_block(block)?;
    let hash_matches = ModuleHash::of(&split.component) == manifest.module_sha256
        && split.component.len() as u64 == manifest.size;
    Ok(Some(UnverifiedSignature {
        manifest,
        publisher_key,
        delegation,
        hash_matches,
    }))
}
