//! Cryptography with keys the host holds (capability `crypto`). Keys are named by handles in
//! the application's own scope; their bytes never enter the plugin (SER-010, SER-023).

use crate::bindings::imports::palisade::plugin::crypto as host;
pub use crate::bindings::imports::palisade::plugin::crypto::CryptoError;

/// Verify an Ed25519 `signature` over `message` with the public key named `key`.
pub fn verify_ed25519(key: &str, message: &[u8], signature: &[u8]) -> Result<bool, CryptoError> {
    host::verify_ed25519(key, message, signature)
}

/// HMAC-SHA-256 of `message` under the secret key named `key`.
pub fn hmac_sha256(key: &str, message: &[u8]) -> Result<Vec<u8>, CryptoError> {
    host::hmac_sha256(key, message)
}
