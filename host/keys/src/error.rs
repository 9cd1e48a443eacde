//! Errors of the keystore. Each variant says what went wrong and with which key, so that the
//! admin API and the CLI can report it without string matching.

use super::{KeyHandle, KeyKind, KeyScope};
use std::path::PathBuf;

/// What went wrong in a keystore operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// No key with this handle exists in any scope.
    #[error("no key with handle {handle}")]
    NotFound {
        /// The handle that was asked for.
        handle: KeyHandle,
    },
    /// The key exists but belongs to another scope: an application asked for a key that is not
    /// its own (SER-010, SER-024: one application never uses another's keys).
    #[error("key {handle} is not in scope {requested}")]
    OutOfScope {
        /// The handle that was asked for.
        handle: KeyHandle,
        /// The scope the caller acts in.
        requested: KeyScope,
    },
    /// The key exists but is of a kind that cannot do this operation (e.g. signing with an
    /// HMAC secret, or an HMAC with a public key).
    #[error("key {handle} is a {actual} key, this operation needs {expected}")]
    WrongKind {
        /// The handle that was asked for.
        handle: KeyHandle,
        /// What the operation needs.
        expected: &'static str,
        /// What the key is.
        actual: KeyKind,
    },
    /// Imported key material has the wrong length or form for its kind.
    #[error("invalid {kind} key material: {reason}")]
    InvalidMaterial {
        /// The kind the material was imported as.
        kind: KeyKind,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A public key is a small-order (weak) point and is refused: signatures under it prove
    /// nothing.
    #[error("the Ed25519 public key is a weak (small-order) point")]
    WeakPublicKey,
    /// A signature did not verify.
    #[error("signature does not verify under key {handle}")]
    BadSignature {
        /// The handle of the verifying key.
        handle: KeyHandle,
    },
    /// A label is empty, too long, or contains characters outside `[A-Za-z0-9._:-]`.
    #[error("invalid key label {0:?}")]
    InvalidLabel(String),
    /// An application name in a scope is empty, too long or has forbidden characters.
    #[error("invalid application name in key scope: {0:?}")]
    InvalidScope(String),
    /// The key would leave the store (e.g. exporting a non-extractable HSM key).
    #[error("key {handle} cannot be exported")]
    NotExtractable {
        /// The handle of the key.
        handle: KeyHandle,
    },
    /// The master secret file is readable by group or others.
    #[error("master secret {path} has mode {mode:o}; it must be 0600")]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The master secret file exists but is not exactly 32 bytes.
    #[error("master secret {path} is corrupt (expected 32 bytes)")]
    CorruptMaster {
        /// The file.
        path: PathBuf,
    },
    /// A stored key record failed to decrypt or authenticate: wrong master secret, or the file
    /// was edited (SER-003: integrity of keys at rest).
    #[error("stored key {file} failed authentication (wrong master secret or tampered file)")]
    TamperedRecord {
        /// The record's file name.
        file: String,
    },
    /// A stored key record could not be parsed.
    #[error("stored key {file} is malformed: {reason}")]
    MalformedRecord {
        /// The record's file name.
        file: String,
        /// Why.
        reason: String,
    },
    /// The software store already holds its maximum number of keys
    /// ([`crate::MAX_SOFTWARE_KEYS`]); a bigger index would be refused when reopened.
    #[error("the keystore holds {held} keys and may hold at most {limit}")]
    TooManyKeys {
        /// Keys the store would hold with this operation.
        held: usize,
        /// The bound.
        limit: usize,
    },
    /// One batch of [`crate::KeyStore::generate_many`] names the same scope and label twice.
    #[error("the batch asks twice for key {label:?} in scope {scope}")]
    DuplicateRequest {
        /// The scope.
        scope: KeyScope,
        /// The label asked for twice.
        label: String,
    },
    /// The filesystem failed.
    #[error("keystore I/O on {path}")]
    Io {
        /// What was being accessed.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The hardware security module refused or failed an operation.
    #[error("HSM: {operation} failed: {detail}")]
    Hsm {
        /// The PKCS#11 operation.
        operation: &'static str,
        /// The PKCS#11 return value or library error.
        detail: String,
    },
    /// The backend does not support this key kind or operation.
    #[error("the {backend} backend does not support {what}")]
    Unsupported {
        /// Which backend.
        backend: &'static str,
        /// What it cannot do.
        what: &'static str,
    },
}

impl KeyError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> KeyError {
        let path = path.into();
        move |source| KeyError::Io { path, source }
    }
}
