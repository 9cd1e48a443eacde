//! Cryptography with keys the host holds (capability `crypto`). Keys are named by handles in
//! the application's own scope (`[[app.key]] handle = "issuer"` in the gateway config);
//! their bytes never enter the plugin (SER-010, SER-023). Without the capability a call
//! traps and counts as the plugin's failure.
//!
//! ```no_run
//! use palisade_sdk::crypto::{self, CryptoError};
//!
//! # let (payload, signature) = (b"header.claims".as_slice(), [0u8; 64]);
//! // A token signed by the issuer whose public key the operator configured as "issuer".
//! match crypto::verify_ed25519("issuer", payload, &signature) {
//!     Ok(true) => { /* authentic */ }
//!     Ok(false) => { /* forged, or a malformed signature */ }
//!     Err(CryptoError::UnknownKey) => { /* the operator configured no such key */ }
//!     Err(CryptoError::WrongKeyType) => { /* "issuer" is an HMAC secret */ }
//! }
//! // A MAC with a secret generated inside the gateway's keystore.
//! let tag: Result<Vec<u8>, CryptoError> = crypto::hmac_sha256("session-secret", b"CAE1");
//! ```

use crate::bindings::imports::palisade::plugin::crypto as host;
pub use crate::bindings::imports::palisade::plugin::crypto::CryptoError;

/// Verify an Ed25519 `signature` over `message` with the public key named `key`. A malformed
/// signature (wrong length) verifies as `false`, not as an error.
pub fn verify_ed25519(key: &str, message: &[u8], signature: &[u8]) -> Result<bool, CryptoError> {
    host::verify_ed25519(key, message, signature)
}

/// HMAC-SHA-256 of `message` under the secret key named `key` (32 bytes).
pub fn hmac_sha256(key: &str, message: &[u8]) -> Result<Vec<u8>, CryptoError> {
    host::hmac_sha256(key, message)
}
