//! `palisade:plugin/crypto`: cryptography with the application's keys, addressed by handle
//! (capability `crypto`). Handles are looked up in the serving application's own key set
//! only, so a plugin cannot reach another application's keys by forging a name (SER-024),
//! and no key bytes ever cross into the sandbox (SER-010, SER-023).

use std::collections::HashMap;

use ed25519_dalek::{Signature, VerifyingKey};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::Capability;
use crate::sandbox::bindings::imports::palisade::plugin::crypto::{CryptoError, Host};
use crate::sandbox::state::HostState;

/// Why a key could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyUseError {
    #[error("no key with this handle in the application's scope")]
    UnknownKey,
    #[error("the key cannot do this operation")]
    WrongKeyType,
}

/// The keys one application's plugins may use. The keystore implements this for each
/// application scope; tests and `palisade test` use [`StaticKeys`].
pub trait AppKeys: Send + Sync {
    /// Verifies an Ed25519 signature with the public key `handle`. A malformed signature is
    /// `Ok(false)`, not an error.
    fn verify_ed25519(
        &self,
        handle: &str,
        message: &[u8],
        signature: &[u8],
    ) -> Result<bool, KeyUseError>;

    /// HMAC-SHA-256 under the secret key `handle`.
    fn hmac_sha256(&self, handle: &str, message: &[u8]) -> Result<[u8; 32], KeyUseError>;
}

/// A key held in memory for one application.
pub enum StaticKey {
    Ed25519Public(VerifyingKey),
    HmacSecret(Zeroizing<Vec<u8>>),
}

/// An in-memory key set for one application.
#[derive(Default)]
pub struct StaticKeys {
    keys: HashMap<String, StaticKey>,
}

impl StaticKeys {
    pub fn new() -> StaticKeys {
        StaticKeys::default()
    }

    pub fn insert_ed25519_public(&mut self, handle: impl Into<String>, key: VerifyingKey) {
        self.keys
            .insert(handle.into(), StaticKey::Ed25519Public(key));
    }

    pub fn insert_hmac_secret(&mut self, handle: impl Into<String>, secret: Vec<u8>) {
        self.keys
            .insert(handle.into(), StaticKey::HmacSecret(Zeroizing::new(secret)));
    }
}

impl AppKeys for StaticKeys {
    fn verify_ed25519(
        &self,
        handle: &str,
        message: &[u8],
        signature: &[u8],
    ) -> Result<bool, KeyUseError> {
        match self.keys.get(handle) {
            Some(StaticKey::Ed25519Public(key)) => Ok(Signature::from_slice(signature)
                .is_ok_and(|signature| key.verify_strict(message, &signature).is_ok())),
            Some(StaticKey::HmacSecret(_)) => Err(KeyUseError::WrongKeyType),
            None => Err(KeyUseError::UnknownKey),
        }
    }

    fn hmac_sha256(&self, handle: &str, message: &[u8]) -> Result<[u8; 32], KeyUseError> {
        match self.keys.get(handle) {
            Some(StaticKey::HmacSecret(secret)) => {
                let mut mac = Hmac::<Sha256>::new_from_slice(secret)
                    .map_err(|_| KeyUseError::WrongKeyType)?;
                mac.update(message);
                Ok(mac.finalize().into_bytes().into())
            }
            Some(StaticKey::Ed25519Public(_)) => Err(KeyUseError::WrongKeyType),
            None => Err(KeyUseError::UnknownKey),
        }
    }
}

fn to_wit(error: KeyUseError) -> CryptoError {
    match error {
        KeyUseError::UnknownKey => CryptoError::UnknownKey,
        KeyUseError::WrongKeyType => CryptoError::WrongKeyType,
    }
}

impl Host for HostState {
    fn verify_ed25519(
        &mut self,
        key: String,
        message: Vec<u8>,
        signature: Vec<u8>,
    ) -> wasmtime::Result<Result<bool, CryptoError>> {
        self.enter(Some(Capability::Crypto))?;
        Ok(self
            .env
            .keys
            .verify_ed25519(&key, &message, &signature)
            .map_err(to_wit))
    }

    fn hmac_sha256(
        &mut self,
        key: String,
        message: Vec<u8>,
    ) -> wasmtime::Result<Result<Vec<u8>, CryptoError>> {
        self.enter(Some(Capability::Crypto))?;
        Ok(self
            .env
            .keys
            .hmac_sha256(&key, &message)
            .map(|mac| mac.to_vec())
            .map_err(to_wit))
    }
}
