//! Who signs checkpoints. A trait rather than a key, so the gateway key can stay inside the
//! keystore or a hardware security module (SER-010, SER-023) while the audit log signs its
//! checkpoints with it (SER-016).
//!
//! Backing it with the keystore (the adapter lives with the wiring, not here, so this module
//! depends on nothing else in the crate):
//!
//! ```ignore
//! struct KeyStoreSigner { store: Arc<dyn KeyStore>, handle: KeyHandle, public: [u8; 32] }
//! impl CheckpointSigner for KeyStoreSigner {
//!     fn sign(&self, msg: &[u8]) -> Result<[u8; 64], SignerError> {
//!         self.store.sign(&KeyScope::Gateway, &self.handle, msg).map_err(SignerError::new)
//!     }
//!     fn public_key(&self) -> [u8; 32] { self.public }
//! }
//! ```

use ed25519_dalek::{Signer, SigningKey};

/// A failure to sign (the HSM is unreachable, the key was deleted...). The writer records it
/// as a `checkpoint_failed` system entry and tries again at the next checkpoint.
#[derive(Debug, Clone, thiserror::Error)]
#[error("checkpoint signing failed: {0}")]
pub struct SignerError(pub String);

impl SignerError {
    /// Wraps any error's message.
    pub fn new(error: impl std::fmt::Display) -> Self {
        SignerError(error.to_string())
    }
}

/// Signs checkpoint messages with the gateway's Ed25519 key.
pub trait CheckpointSigner: Send + Sync {
    /// An Ed25519 signature over `msg`.
    fn sign(&self, msg: &[u8]) -> Result<[u8; 64], SignerError>;
    /// The public key verifiers must trust (recorded in each checkpoint for information).
    fn public_key(&self) -> [u8; 32];
}

/// An in-memory Ed25519 signer, for tests and tools; production uses the keystore.
pub struct MemorySigner {
    key: SigningKey,
}

impl MemorySigner {
    /// A signer from a 32-byte Ed25519 seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        MemorySigner {
            key: SigningKey::from_bytes(&seed),
        }
    }
}

impl std::fmt::Debug for MemorySigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemorySigner({})", hex::encode(self.public_key()))
    }
}

impl CheckpointSigner for MemorySigner {
    fn sign(&self, msg: &[u8]) -> Result<[u8; 64], SignerError> {
        Ok(self.key.sign(msg).to_bytes())
    }

    fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }
}
