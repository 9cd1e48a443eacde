//! The audit key in a keystore: what the gateway and every embedder sign checkpoints with
//! (SER-010, SER-016), and the public key verifiers need, written next to the log.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use palisade_keys::{KeyError, KeyHandle, KeyKind, KeyScope, KeyStore};

use super::{CheckpointSigner, SignerError};

/// The keystore label of the audit key.
pub const AUDIT_KEY_LABEL: &str = "audit";

/// The file [`write_public_key`] writes in the log's folder, for
/// `palisade audit verify --log DIR --key DIR/gateway.pub`.
pub const PUBLIC_KEY_FILE: &str = "gateway.pub";

/// Signs audit checkpoints with the Ed25519 audit key inside the keystore (or the HSM behind
/// it): the private key never leaves it (SER-010, SER-016).
pub struct KeystoreSigner {
    store: Arc<dyn KeyStore>,
    handle: KeyHandle,
    public: [u8; 32],
}

impl KeystoreSigner {
    /// The keystore's audit key, generated on first use and found by its label afterwards.
    pub fn open_or_create(store: Arc<dyn KeyStore>) -> Result<KeystoreSigner, KeyError> {
        let existing = store
            .list(&KeyScope::Gateway)?
            .into_iter()
            .find(|key| key.label == AUDIT_KEY_LABEL && key.kind == KeyKind::Ed25519Signing)
            .map(|key| key.handle);
        let handle = match existing {
            Some(handle) => handle,
            None => store.generate(&KeyScope::Gateway, KeyKind::Ed25519Signing, AUDIT_KEY_LABEL)?,
        };
        let public = store.public_key(&KeyScope::Gateway, &handle)?;
        Ok(KeystoreSigner {
            store,
            handle,
            public,
        })
    }
}

impl CheckpointSigner for KeystoreSigner {
    fn sign(&self, msg: &[u8]) -> Result<[u8; 64], SignerError> {
        self.store
            .sign(&KeyScope::Gateway, &self.handle, msg)
            .map_err(SignerError::new)
    }

    fn public_key(&self) -> [u8; 32] {
        self.public
    }
}

/// Writes `signer`'s public key (64 hex digits and a newline) to [`PUBLIC_KEY_FILE`] in `dir`,
/// through a temporary file and a rename, so a verifier never reads half a key. Returns the
/// file's path.
pub fn write_public_key(dir: &Path, signer: &dyn CheckpointSigner) -> std::io::Result<PathBuf> {
    let public = hex::encode(signer.public_key());
    let path = dir.join(PUBLIC_KEY_FILE);
    let temporary = dir.join(format!("{PUBLIC_KEY_FILE}.tmp"));
    std::fs::write(&temporary, format!("{public}\n"))?;
    std::fs::rename(&temporary, &path)?;
    Ok(path)
}
