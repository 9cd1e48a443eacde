//! Errors of the registry store, each naming the module and the problem, with stable codes.

use std::io;

use super::Fallback;
use crate::{ModuleHash, ModuleKind, VerifyError};

/// What is wrong with a stored module's bytes or chain (SER-013).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IntegrityProblem {
    /// The content file is gone.
    #[error("its file modules/{sha256}.wasm is missing")]
    Missing {
        /// The content address.
        sha256: ModuleHash,
    },
    /// The content file cannot be read.
    #[error("its file cannot be read: {0}")]
    Unreadable(io::Error),
    /// The file has another size than the manifest's.
    #[error("its file is {actual} bytes, the signed manifest says {expected}")]
    SizeMismatch {
        /// The signed size.
        expected: u64,
        /// The file's size.
        actual: u64,
    },
    /// The file's bytes changed.
    #[error("its bytes changed on disk: sha256 is now {actual}")]
    HashMismatch {
        /// The hash of the file now.
        actual: ModuleHash,
    },
    /// The signature chain no longer verifies (e.g. its root is no longer trusted) or the
    /// stored signature section was altered.
    #[error("its signature no longer verifies: {0}")]
    Chain(VerifyError),
    /// The stored metadata does not match the signed manifest (the database was altered).
    #[error("its stored metadata does not match its signed manifest")]
    MetadataMismatch,
    /// It had failed before; failures are sticky until the module is uploaded again.
    #[error("it failed an earlier check: {0}")]
    PreviouslyFailed(String),
}

/// Why a store operation did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The upload did not verify; nothing was stored.
    #[error("the upload was refused")]
    Refused(#[from] VerifyError),
    /// The version is not greater than the active one.
    #[error(
        "{app}/{name}@{version} is not greater than the active version {active}; versions only \
         go up unless an operator forces a rollback"
    )]
    VersionNotGreater {
        /// The application.
        app: String,
        /// The plugin name.
        name: String,
        /// The version asked for.
        version: String,
        /// The active version.
        active: String,
    },
    /// The version exists with other contents; versions never change.
    #[error(
        "{app}/{name}@{version} is already stored with a different manifest; publish a new version"
    )]
    VersionConflict {
        /// The application.
        app: String,
        /// The plugin name.
        name: String,
        /// The version.
        version: String,
    },
    /// The plugin exists with another kind.
    #[error("{app}/{name} is a {existing} plugin; this upload is a {uploaded}")]
    KindConflict {
        /// The application.
        app: String,
        /// The plugin name.
        name: String,
        /// The stored kind.
        existing: ModuleKind,
        /// The uploaded kind.
        uploaded: ModuleKind,
    },
    /// No such version (or no such plugin).
    #[error("{what} is not in the registry")]
    NotFound {
        /// `app/name@version`, `app/name` or a sha256.
        what: String,
    },
    /// Rollback needs an active version to roll back from.
    #[error("{app}/{name} has no active version")]
    NoActiveVersion {
        /// The application.
        app: String,
        /// The plugin name.
        name: String,
    },
    /// No good version below the active one.
    #[error("{app}/{name} has no good version below {active} to roll back to")]
    NoRollbackTarget {
        /// The application.
        app: String,
        /// The plugin name.
        name: String,
        /// The active version.
        active: String,
    },
    /// The active version is removed only with `force`.
    #[error(
        "{label} is active; deactivate it first or remove it with force (its plugin falls back)"
    )]
    RemoveActive {
        /// `app/name@version`.
        label: String,
    },
    /// A version that failed its integrity check cannot be activated or read.
    #[error("{label} failed its integrity check ({reason}); upload it again to repair it")]
    Failed {
        /// `app/name@version`.
        label: String,
        /// Why it failed.
        reason: String,
    },
    /// Bytes failed their check just now (SER-013): they were taken out of service.
    #[error("integrity failure of {}: {problem}", modules.join(", "))]
    Integrity {
        /// `app/name@version` of every version with these bytes.
        modules: Vec<String>,
        /// The content address.
        sha256: ModuleHash,
        /// What is wrong.
        problem: Box<IntegrityProblem>,
        /// Plugins that fell back.
        fallbacks: Vec<Fallback>,
    },
    /// Another process has this registry open.
    #[error("the registry in {path} is in use by another process")]
    Locked {
        /// The data folder.
        path: String,
    },
    /// The file system refused.
    #[error("cannot {action}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The system error.
        #[source]
        source: io::Error,
    },
    /// The database refused.
    #[error("registry database error")]
    Database(#[from] rusqlite::Error),
    /// A stored row cannot be read back (the database was altered or is damaged).
    #[error("the registry database holds an unreadable row for {what}")]
    Corrupt {
        /// Which row.
        what: String,
    },
    /// Test builds only: the operation stopped where a crash was injected.
    #[cfg(test)]
    #[error("simulated crash at {0:?}")]
    SimulatedCrash(super::embedded::CrashPoint),
}

impl StoreError {
    /// A stable machine-readable code (for JSON errors); refusals use the verify code.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::Refused(e) => e.code(),
            StoreError::VersionNotGreater { .. } => "version-not-greater",
            StoreError::VersionConflict { .. } => "version-conflict",
            StoreError::KindConflict { .. } => "kind-conflict",
            StoreError::NotFound { .. } => "not-found",
            StoreError::NoActiveVersion { .. } => "no-active-version",
            StoreError::NoRollbackTarget { .. } => "no-rollback-target",
            StoreError::RemoveActive { .. } => "remove-active",
            StoreError::Failed { .. } => "failed-integrity",
            StoreError::Integrity { .. } => "integrity-failure",
            StoreError::Locked { .. } => "locked",
            StoreError::Io { .. } => "io",
            StoreError::Database(_) => "database",
            StoreError::Corrupt { .. } => "corrupt",
            #[cfg(test)]
            StoreError::SimulatedCrash(_) => "simulated-crash",
        }
    }

    pub(crate) fn io(action: &'static str) -> impl FnOnce(io::Error) -> StoreError {
        move |source| StoreError::Io { action, source }
    }
}
