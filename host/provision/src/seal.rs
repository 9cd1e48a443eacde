//! Encryption of a bundle's contents to one gateway (SER-021): the provider makes an
//! ephemeral X25519 key, agrees a secret with the gateway's static X25519 key, derives a
//! ChaCha20-Poly1305 key and nonce with HKDF-SHA256 (salted with both public keys), and seals
//! the contents with the whole clear header as associated data — so changing the addressee,
//! the provider, the sequence or the validity breaks decryption even before the signature is
//! looked at.

use super::error::ProvisionError;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use palisade_keys::{KeyError, KeyHandle, KeyScope, KeyStore};
use std::sync::Arc;
use zeroize::Zeroizing;

const AEAD_CONTEXT: &[u8] = b"palisade/provisioning/aead/v1\0";
const HKDF_INFO: &[u8] = b"palisade/provisioning/v1 key and nonce";

/// The gateway's X25519 key that opens bundles: a key in the keystore (used through
/// [`KeyStore::agree`], so the secret never leaves the store) or a secret given directly
/// (tests, tools).
pub struct GatewayKey {
    inner: Inner,
    public: [u8; 32],
}

enum Inner {
    Store {
        store: Arc<dyn KeyStore>,
        handle: KeyHandle,
    },
    Secret(x25519_dalek::StaticSecret),
}

impl GatewayKey {
    /// Uses the X25519 key `handle` of the gateway scope of `store`.
    pub fn from_store(store: Arc<dyn KeyStore>, handle: KeyHandle) -> Result<Self, KeyError> {
        let public = store.public_key(&KeyScope::Gateway, &handle)?;
        Ok(GatewayKey {
            inner: Inner::Store { store, handle },
            public,
        })
    }

    /// Uses a secret held in memory.
    pub fn from_secret(secret: x25519_dalek::StaticSecret) -> Self {
        let public = x25519_dalek::PublicKey::from(&secret).to_bytes();
        GatewayKey {
            inner: Inner::Secret(secret),
            public,
        }
    }

    /// The public key providers encrypt to.
    pub fn public(&self) -> [u8; 32] {
        self.public
    }

    /// The shared secret with a bundle's ephemeral key. A low-order ephemeral key (no
    /// contribution from the provider) fails like a bad ciphertext.
    fn agree(&self, ephemeral: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>, ProvisionError> {
        match &self.inner {
            Inner::Store { store, handle } => {
                match store.agree(&KeyScope::Gateway, handle, ephemeral) {
                    Ok(s) => Ok(s),
                    Err(KeyError::InvalidMaterial { .. }) => Err(ProvisionError::DecryptionFailed),
                    Err(e) => Err(e.into()),
                }
            }
            Inner::Secret(s) => {
                let shared = s.diffie_hellman(&x25519_dalek::PublicKey::from(*ephemeral));
                if !shared.was_contributory() {
                    return Err(ProvisionError::DecryptionFailed);
                }
                Ok(Zeroizing::new(shared.to_bytes()))
            }
        }
    }
}

fn cipher(
    shared: &[u8; 32],
    ephemeral: &[u8; 32],
    recipient: &[u8; 32],
) -> (ChaCha20Poly1305, [u8; 12]) {
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(ephemeral);
    salt[32..].copy_from_slice(recipient);
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(&salt), shared);
    let mut okm = Zeroizing::new([0u8; 44]);
    hk.expand(HKDF_INFO, &mut *okm)
        .expect("44 bytes is a valid HKDF length");
    let nonce: [u8; 12] = okm[32..].try_into().expect("12 bytes");
    (ChaCha20Poly1305::new(Key::from_slice(&okm[..32])), nonce)
}

fn aad(header: &[u8]) -> Vec<u8> {
    [AEAD_CONTEXT, header].concat()
}

/// A fresh ephemeral key pair for one bundle.
pub(crate) fn ephemeral() -> (x25519_dalek::StaticSecret, [u8; 32]) {
    let secret = x25519_dalek::StaticSecret::random_from_rng(rand::rngs::OsRng);
    let public = x25519_dalek::PublicKey::from(&secret).to_bytes();
    (secret, public)
}

/// Seals `plaintext` to `recipient` (provider side). A low-order recipient key would give a
/// shared secret anyone knows, so it is refused.
pub(crate) fn seal(
    eph: &x25519_dalek::StaticSecret,
    eph_public: &[u8; 32],
    recipient: &[u8; 32],
    header: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, ProvisionError> {
    let shared = eph.diffie_hellman(&x25519_dalek::PublicKey::from(*recipient));
    if !shared.was_contributory() {
        return Err(ProvisionError::invalid(
            "the gateway X25519 key",
            "it is a low-order point",
        ));
    }
    let (c, nonce) = cipher(shared.as_bytes(), eph_public, recipient);
    Ok(c.encrypt(
        Nonce::from_slice(&nonce),
        Payload {
            msg: plaintext,
            aad: &aad(header),
        },
    )
    .expect("ChaCha20-Poly1305 encryption does not fail for bounded inputs"))
}

/// Opens a sealed payload with the gateway's key (gateway side).
pub(crate) fn open(
    key: &GatewayKey,
    ephemeral: &[u8; 32],
    header: &[u8],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, ProvisionError> {
    let shared = key.agree(ephemeral)?;
    let (c, nonce) = cipher(&shared, ephemeral, &key.public);
    c.decrypt(
        Nonce::from_slice(&nonce),
        Payload {
            msg: ciphertext,
            aad: &aad(header),
        },
    )
    .map(Zeroizing::new)
    .map_err(|_| ProvisionError::DecryptionFailed)
}
