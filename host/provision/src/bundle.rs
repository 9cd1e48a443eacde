//! Building (provider side) and reading (gateway side) signed bundles (SER-020/021).
//!
//! The provider signs everything on the wire before the signature, after encrypting (prefix,
//! header, payload; see `codec` for the layout), prefixed by a domain-separation context so that this signature can never be taken for one the same key
//! made elsewhere. The gateway therefore checks the signature before doing any X25519 work,
//! and the header's provider and addressee are covered twice: by the signature and, for
//! encrypted bundles, as the AEAD's associated data.

use super::codec;
use super::error::{DecodeError, ProvisionError};
use super::seal::{self, GatewayKey};
use super::{
    BundleContents, BundleHeader, Encryption, FORMAT_VERSION, MAX_BUNDLE_LEN, MAX_DEVICES,
    MAX_ENTRIES, MAX_VALIDITY,
};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use palisade_codec::{Reader, Writer};
use palisade_keys::{check_ed25519_public, HMAC_SECRET_LEN};
use rand::RngCore;
use std::ops::Range;

/// Context prefix of every provisioning signature.
pub(crate) const SIGNING_CONTEXT: &[u8] = b"palisade/provisioning-bundle/v1\0";

/// What the provider wants to send.
#[derive(Debug, Clone)]
pub struct BundleSpec {
    /// The provider's id (the gateway trusts it under this name).
    pub provider: String,
    /// The addressee gateway.
    pub gateway: String,
    /// Start of validity, Unix seconds.
    pub issued_at: u64,
    /// End of validity, Unix seconds (at most 90 days after `issued_at`).
    pub expires_at: u64,
    /// The provider's sequence number for this gateway, at least 1 and above every earlier one.
    pub sequence: u64,
    /// What to provision.
    pub contents: BundleContents,
    /// The gateway's X25519 public key to encrypt to; required when there are secrets (SER-021).
    pub encrypt_to: Option<[u8; 32]>,
}

/// Checks the form of everything in `c`: identifiers, names, sizes, key validity (weak
/// Ed25519 keys are refused: signatures under them prove nothing). Used by the builder and
/// again by the gateway, which trusts nothing it did not check itself.
pub(crate) fn check_contents(c: &BundleContents) -> Result<(), ProvisionError> {
    let id = |what: &str, s: &str| {
        if codec::valid_id(s) {
            Ok(())
        } else {
            Err(ProvisionError::invalid(
                format!("{what} {s:?}"),
                "identifiers are 1..=128 printable ASCII characters",
            ))
        }
    };
    let name = |app: &str, n: &str| {
        if codec::valid_name(n) {
            Ok(())
        } else {
            Err(ProvisionError::invalid(
                format!("key {n:?} of app {app:?}"),
                "key names are 1..=64 characters of [A-Za-z0-9._:-]",
            ))
        }
    };
    let many = |what: &str, n: usize, max: usize| {
        if n <= max {
            Ok(())
        } else {
            Err(ProvisionError::invalid(
                what,
                format!("{n} entries, the limit is {max}"),
            ))
        }
    };
    many("devices", c.devices.len(), MAX_DEVICES)?;
    for (d, k) in &c.devices {
        id("device", d)?;
        check_ed25519_public(k)
            .map_err(|e| ProvisionError::invalid(format!("device {d:?}"), e.to_string()))?;
    }
    let groups = c.app_groups.iter().map(|(a, g)| (Some(a), g));
    many("gateway groups", c.gateway_groups.len(), MAX_ENTRIES)?;
    for (app, set) in std::iter::once((None, &c.gateway_groups)).chain(groups) {
        if let Some(app) = app {
            id("application", app)?;
            many(&format!("groups of app {app:?}"), set.len(), MAX_ENTRIES)?;
        }
        for (g, members) in set {
            id("group", g)?;
            many(
                &format!("members of group {g:?}"),
                members.len(),
                super::MAX_MEMBERS,
            )?;
            members.iter().try_for_each(|m| id("member", m))?;
        }
    }
    many("applications", c.apps().len(), MAX_ENTRIES)?;
    for (app, positions) in &c.app_positions {
        id("application", app)?;
        many(
            &format!("positions of app {app:?}"),
            positions.len(),
            MAX_DEVICES,
        )?;
        if positions.is_empty() {
            return Err(ProvisionError::invalid(
                format!("positions of app {app:?}"),
                "empty: leave the app out",
            ));
        }
        for (originator, position) in positions {
            id("originator", originator)?;
            if let Some(position) = position {
                position.check().map_err(|reason| {
                    ProvisionError::invalid(
                        format!("position of {originator:?} in app {app:?}"),
                        reason,
                    )
                })?;
            }
        }
    }
    for (app, keys) in &c.app_secrets {
        id("application", app)?;
        many(&format!("secrets of app {app:?}"), keys.len(), MAX_ENTRIES)?;
        for (n, s) in keys {
            name(app, n)?;
            if !HMAC_SECRET_LEN.contains(&s.expose().len()) {
                return Err(ProvisionError::invalid(
                    format!("secret {n:?} of app {app:?}"),
                    format!(
                        "{} bytes; HMAC secrets are 16 to 64 bytes",
                        s.expose().len()
                    ),
                ));
            }
        }
    }
    for (app, keys) in &c.app_public_keys {
        id("application", app)?;
        many(
            &format!("public keys of app {app:?}"),
            keys.len(),
            MAX_ENTRIES,
        )?;
        for (n, k) in keys {
            name(app, n)?;
            if c.app_secrets.get(app).is_some_and(|s| s.contains_key(n)) {
                return Err(ProvisionError::invalid(
                    format!("key {n:?} of app {app:?}"),
                    "named both as a secret and as a public key",
                ));
            }
            check_ed25519_public(k).map_err(|e| {
                ProvisionError::invalid(format!("public key {n:?} of app {app:?}"), e.to_string())
            })?;
        }
    }
    Ok(())
}

/// Checks the validity window's shape (not the clock).
pub(crate) fn check_window(issued_at: u64, expires_at: u64) -> Result<(), ProvisionError> {
    if expires_at <= issued_at || expires_at - issued_at > MAX_VALIDITY {
        return Err(ProvisionError::InvalidValidity {
            issued_at,
            expires_at,
        });
    }
    Ok(())
}

/// Builds, encrypts (if asked) and signs a bundle. Refuses secrets without encryption
/// (SER-021), bad items, an empty or overlong validity window, and a result over
/// 4 MiB.
pub fn create_bundle(
    spec: &BundleSpec,
    provider_key: &SigningKey,
) -> Result<Vec<u8>, ProvisionError> {
    for (what, v) in [
        ("provider id", &spec.provider),
        ("gateway id", &spec.gateway),
    ] {
        if !codec::valid_id(v) {
            return Err(ProvisionError::invalid(
                format!("{what} {v:?}"),
                "identifiers are 1..=128 printable ASCII characters",
            ));
        }
    }
    if spec.sequence == 0 {
        return Err(ProvisionError::invalid(
            "sequence 0",
            "sequence numbers start at 1",
        ));
    }
    check_window(spec.issued_at, spec.expires_at)?;
    check_contents(&spec.contents)?;
    if spec.contents.has_secrets() && spec.encrypt_to.is_none() {
        return Err(ProvisionError::SecretsInClear);
    }
    let mut bundle_id = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bundle_id);
    let eph = spec
        .encrypt_to
        .map(|recipient| (recipient, seal::ephemeral()));
    let header = BundleHeader {
        version: FORMAT_VERSION,
        bundle_id,
        provider: spec.provider.clone(),
        gateway: spec.gateway.clone(),
        issued_at: spec.issued_at,
        expires_at: spec.expires_at,
        sequence: spec.sequence,
        encryption: eph.as_ref().map(|(recipient, (_, public))| Encryption {
            recipient: *recipient,
            ephemeral: *public,
        }),
    };
    let plaintext = codec::encode_contents(&spec.contents);
    assemble(&header, provider_key, |aad| match &eph {
        None => Ok(plaintext.to_vec()),
        Some((recipient, (secret, public))) => {
            seal::seal(secret, public, recipient, aad, &plaintext)
        }
    })
}

/// Encodes and signs a bundle: `payload` gets the bytes before it (the prefix and header,
/// the AEAD's associated data) and returns the payload, sealed or not. Refuses a result over
/// [`MAX_BUNDLE_LEN`] before signing.
pub(crate) fn assemble(
    header: &BundleHeader,
    provider_key: &SigningKey,
    payload: impl FnOnce(&[u8]) -> Result<Vec<u8>, ProvisionError>,
) -> Result<Vec<u8>, ProvisionError> {
    let mut w = Writer::with_capacity(1024);
    w.array(3);
    codec::put_header(&mut w, header);
    let head = [&codec::PREFIX[..], w.as_bytes()].concat();
    let payload = payload(&head)?;
    // The payload's header is at most 5 bytes and the signature's is 2.
    let len = head.len() + 5 + payload.len() + 2 + 64;
    if len > MAX_BUNDLE_LEN {
        return Err(ProvisionError::TooLarge {
            len,
            max: MAX_BUNDLE_LEN,
        });
    }
    w.bytes(&payload);
    let sig = provider_key.sign(&[SIGNING_CONTEXT, &codec::PREFIX, w.as_bytes()].concat());
    w.bytes(&sig.to_bytes());
    Ok([&codec::PREFIX[..], w.as_bytes()].concat())
}

/// A bundle whose structure has been read but nothing verified yet.
#[derive(Debug, Clone)]
pub struct SignedBundle {
    raw: Vec<u8>,
    header: BundleHeader,
    /// The prefix and header: the AEAD's associated data.
    header_len: usize,
    payload: Range<usize>,
    /// Where the signature item starts: the signature covers every byte before it.
    signed_len: usize,
    signature: [u8; 64],
}

impl SignedBundle {
    /// Reads the structure: size, prefix (magic and format), header, payload and signature.
    /// No key is needed; nothing in it is trusted yet.
    pub fn parse(bytes: &[u8]) -> Result<Self, ProvisionError> {
        if bytes.len() > MAX_BUNDLE_LEN {
            return Err(ProvisionError::TooLarge {
                len: bytes.len(),
                max: MAX_BUNDLE_LEN,
            });
        }
        let body = codec::strip_prefix(bytes)?;
        let at = |r: &Reader<'_>| codec::PREFIX.len() + r.position();
        let mut r = Reader::new(body);
        r.tuple("bundle", 3).map_err(DecodeError::from)?;
        let header = codec::get_header(&mut r)?;
        let header_len = at(&r);
        let payload = r
            .bytes("payload", MAX_BUNDLE_LEN)
            .map_err(DecodeError::from)?
            .len();
        let signed_len = at(&r);
        let signature = r.arr("signature").map_err(DecodeError::from)?;
        r.end().map_err(DecodeError::from)?;
        Ok(SignedBundle {
            raw: bytes.to_vec(),
            header,
            header_len,
            payload: signed_len - payload..signed_len,
            signed_len,
            signature,
        })
    }

    /// The header (unverified until [`SignedBundle::verify`] succeeds).
    pub fn header(&self) -> &BundleHeader {
        &self.header
    }

    /// The payload's size in bytes (ciphertext for an encrypted bundle).
    pub fn payload_len(&self) -> usize {
        self.payload.len()
    }

    /// Checks the provider's signature over everything before it (strict verification:
    /// non-canonical and small-order signature parts are refused).
    pub fn verify(&self, provider_key: &VerifyingKey) -> Result<(), ProvisionError> {
        provider_key
            .verify_strict(
                &[SIGNING_CONTEXT, &self.raw[..self.signed_len]].concat(),
                &ed25519_dalek::Signature::from_bytes(&self.signature),
            )
            .map_err(|_| ProvisionError::BadSignature {
                provider: self.header.provider.clone(),
            })
    }

    /// The prefix and header as they arrived (the AEAD's associated data).
    #[cfg(test)]
    pub(crate) fn header_bytes(&self) -> &[u8] {
        &self.raw[..self.header_len]
    }

    /// The payload as it arrived.
    #[cfg(test)]
    pub(crate) fn payload_bytes(&self) -> &[u8] {
        &self.raw[self.payload.clone()]
    }

    /// The contents: decrypted with `key` if the bundle is encrypted. A clear bundle that
    /// carries secrets is refused here too (SER-021).
    pub fn contents(&self, key: Option<&GatewayKey>) -> Result<BundleContents, ProvisionError> {
        let payload = &self.raw[self.payload.clone()];
        let contents = match &self.header.encryption {
            None => codec::decode_contents(payload)?,
            Some(e) => {
                let key = key.ok_or(ProvisionError::NoDecryptionKey)?;
                if e.recipient != key.public() {
                    return Err(ProvisionError::WrongRecipient {
                        recipient: hex::encode(e.recipient),
                        ours: hex::encode(key.public()),
                    });
                }
                let header = &self.raw[..self.header_len];
                let plain = seal::open(key, &e.ephemeral, header, payload)?;
                codec::decode_contents(&plain)?
            }
        };
        if self.header.encryption.is_none() && contents.has_secrets() {
            return Err(ProvisionError::SecretsInClear);
        }
        Ok(contents)
    }
}
