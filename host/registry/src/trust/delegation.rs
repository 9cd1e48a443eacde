//! A delegation: an operator root lets one publisher key sign modules for one application and
//! some plugin kinds, for a limited time (SER-022: application service providers authorize
//! their own applications, and only those).

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::{key_id, KeyId, TrustAnchors};
use crate::canon::Canon;
use crate::format::{self, expect_format, strictly_sorted, FormatError};
use crate::signing::VerifyError;
use crate::{validate_name, ModuleKind};

/// The domain tag of the signed encoding of a delegation.
pub const DELEGATION_DOMAIN: &str = "palisade-delegation-v1";
/// The `format` field of a delegation's JSON form.
pub const DELEGATION_FORMAT: &str = "palisade-delegation-v1";

/// A root's signed statement "this publisher key may sign modules of these kinds for this
/// application, from `not_before` until `not_after`" (seconds since the epoch, UTC).
///
/// The root signs the canonical encoding (see `canon.rs`):
/// `"palisade-delegation-v1"`, root key id (8 bytes), publisher public key (32 bytes), app,
/// kinds (a counted list of names, in canonical order), not_before (u64), not_after (u64).
///
/// JSON form (a `delegate` output file and inside a signature section), every field mandatory:
/// `{"format":"palisade-delegation-v1","root_key_id":"<16 hex>","publisher_key":"<64 hex>",
/// "app":"…","kinds":["authorizer",…],"not_before":N,"not_after":N,"signature":"<128 hex>"}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delegation {
    /// The root that signed this delegation.
    pub root_key_id: KeyId,
    /// The publisher key allowed to sign modules.
    pub publisher_key: VerifyingKey,
    /// The one application it may sign for.
    pub app: String,
    /// The plugin kinds it may sign, in canonical order without duplicates.
    pub kinds: Vec<ModuleKind>,
    /// Start of validity, seconds since the epoch (inclusive).
    pub not_before: u64,
    /// End of validity, seconds since the epoch (exclusive).
    pub not_after: u64,
    /// The root's signature over the canonical encoding.
    pub signature: Signature,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DelegationWire {
    format: String,
    root_key_id: String,
    publisher_key: String,
    app: String,
    kinds: Vec<ModuleKind>,
    not_before: u64,
    not_after: u64,
    signature: String,
}

impl Delegation {
    /// Signs a delegation with a root key. Kinds are put in canonical order; an invalid app
    /// name, an empty kind list or an empty validity window are refused.
    pub fn issue(
        root: &SigningKey,
        publisher: VerifyingKey,
        app: &str,
        kinds: &[ModuleKind],
        not_before: u64,
        not_after: u64,
    ) -> Result<Delegation, FormatError> {
        let mut kinds = kinds.to_vec();
        kinds.sort();
        kinds.dedup();
        let mut delegation = Delegation {
            root_key_id: key_id(&root.verifying_key()),
            publisher_key: publisher,
            app: app.to_owned(),
            kinds,
            not_before,
            not_after,
            signature: Signature::from_bytes(&[0; 64]),
        };
        delegation.validate()?;
        delegation.signature = root.sign(&delegation.signed_bytes());
        Ok(delegation)
    }

    /// The canonical bytes the root signs.
    pub fn signed_bytes(&self) -> Vec<u8> {
        Canon::new(DELEGATION_DOMAIN)
            .bytes(&self.root_key_id.0)
            .bytes(self.publisher_key.as_bytes())
            .str(&self.app)
            .list(self.kinds.iter().map(|k| k.name()))
            .u64(self.not_before)
            .u64(self.not_after)
            .finish()
    }

    /// Checks the form: app name, kinds non-empty and canonical, a non-empty window.
    pub fn validate(&self) -> Result<(), FormatError> {
        validate_name("application name", &self.app)?;
        if self.kinds.is_empty() {
            return Err(FormatError::Empty {
                field: "delegation kinds",
            });
        }
        strictly_sorted(
            &self.kinds,
            "delegation kinds",
            "authorizer, authenticator, filter",
        )?;
        if self.not_before >= self.not_after {
            return Err(FormatError::EmptyValidity {
                not_before: self.not_before,
                not_after: self.not_after,
            });
        }
        Ok(())
    }

    /// The id of the publisher key.
    pub fn publisher_key_id(&self) -> KeyId {
        key_id(&self.publisher_key)
    }

    /// The compact JSON form (see the type's documentation).
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.to_wire()).expect("plain values serialize")
    }

    /// Reads the JSON form; any spacing is accepted here, every field is mandatory.
    pub fn from_json(text: &str) -> Result<Delegation, FormatError> {
        Delegation::from_wire(serde_json::from_str(text)?)
    }

    pub(crate) fn to_wire(&self) -> DelegationWire {
        DelegationWire {
            format: DELEGATION_FORMAT.to_owned(),
            root_key_id: self.root_key_id.to_string(),
            publisher_key: hex::encode(self.publisher_key.as_bytes()),
            app: self.app.clone(),
            kinds: self.kinds.clone(),
            not_before: self.not_before,
            not_after: self.not_after,
            signature: hex::encode(self.signature.to_bytes()),
        }
    }

    pub(crate) fn from_wire(wire: DelegationWire) -> Result<Delegation, FormatError> {
        expect_format(&wire.format, DELEGATION_FORMAT)?;
        let delegation = Delegation {
            root_key_id: wire.root_key_id.parse()?,
            publisher_key: format::public_key(&wire.publisher_key, "delegation publisher key")?,
            app: wire.app,
            kinds: wire.kinds,
            not_before: wire.not_before,
            not_after: wire.not_after,
            signature: format::signature(&wire.signature, "delegation signature")?,
        };
        delegation.validate()?;
        Ok(delegation)
    }

    /// Checks the delegation against the trust anchors: signed by a trusted root, and valid at
    /// `now` when a time is given. `now: None` skips the validity window: the registry uses it
    /// to re-check modules it accepted while their delegation was valid, so that a gateway cut
    /// off from its operator keeps running what it has (SER-007); uploads always pass a time.
    pub fn verify(&self, anchors: &TrustAnchors, now: Option<u64>) -> Result<(), VerifyError> {
        let root = anchors
            .get(&self.root_key_id)
            .ok_or(VerifyError::UntrustedRoot {
                root_key_id: self.root_key_id,
            })?;
        root.verify_strict(&self.signed_bytes(), &self.signature)
            .map_err(|_| VerifyError::BadDelegationSignature {
                root_key_id: self.root_key_id,
            })?;
        if let Some(now) = now {
            if now < self.not_before {
                return Err(VerifyError::DelegationNotYetValid {
                    not_before: self.not_before,
                    now,
                });
            }
            if now >= self.not_after {
                return Err(VerifyError::DelegationExpired {
                    not_after: self.not_after,
                    now,
                });
            }
        }
        Ok(())
    }
}
