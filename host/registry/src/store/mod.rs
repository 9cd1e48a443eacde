//! The registry store: verified modules, their versions and which one is active.
//!
//! [`ModuleStore`] is the interface the gateway uses; [`EmbeddedStore`] is the default that
//! needs no server (module bytes as content-addressed files through cap-std, metadata in
//! SQLite). A server deployment can implement the trait on PostgreSQL later.
//!
//! Rules every implementation keeps:
//! - Nothing is stored that did not verify (SER-022); the same upload twice changes nothing and
//!   reports [`PutStatus::AlreadyPresent`]; a version, once stored, never changes contents.
//! - At most one active version per (app, plugin name); activation is atomic; versions only go
//!   up unless the operator forces a rollback. Uploads not greater than the active version are
//!   refused, so a failed or stale upload leaves the active module in place.
//! - Bytes are re-hashed before use, at boot and periodically (SER-013). A version whose bytes
//!   or chain no longer verify is marked `failed-integrity` (sticky until the same module is
//!   uploaded again) and, if it was active, its plugin falls back to the last good version: the
//!   highest lower version that was active before and still verifies; if there is none the
//!   plugin has no active version and its decisions are denied (fail-closed).
//! - Removing the active version needs `force` and then falls back the same way; removing any
//!   other version is always allowed.

mod db;
mod embedded;
mod error;
mod files;
mod integrity;

use serde::Serialize;

// Only the crate's crash tests inject crashes.
#[cfg(test)]
pub(crate) use embedded::CrashPoint;
pub use embedded::{EmbeddedStore, OpenReport, StoreConfig};
pub use error::{IntegrityProblem, StoreError};

use super::{KeyId, Manifest, ModuleHash, ModuleKind, Version};

/// One upload: a signed module and what the caller expects of it.
#[derive(Clone, Copy, Debug)]
pub struct Upload<'a> {
    /// The signed component file.
    pub bytes: &'a [u8],
    /// The application the upload is for (the admin API path's); a manifest for another
    /// application is refused.
    pub expected_app: Option<&'a str>,
    /// The kind the module must be, if the caller knows it.
    pub expected_kind: Option<ModuleKind>,
    /// Activate the new version in the same transaction as storing it.
    pub activate: bool,
    /// The time of the upload (seconds since the epoch): delegations must be valid then.
    pub now: u64,
}

/// The life of one stored version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModuleState {
    /// Stored, never active.
    Stored,
    /// The version decisions are made with (at most one per app and plugin name).
    Active,
    /// Was active, replaced by another version; a candidate for rollback and fallback.
    Retired,
    /// Its bytes or chain failed a check (SER-013); never used again until re-uploaded.
    FailedIntegrity,
}

impl ModuleState {
    /// The name stored in the database and shown in listings.
    pub fn name(self) -> &'static str {
        match self {
            ModuleState::Stored => "stored",
            ModuleState::Active => "active",
            ModuleState::Retired => "retired",
            ModuleState::FailedIntegrity => "failed-integrity",
        }
    }
}

/// One stored version of one plugin of one application.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ModuleRecord {
    /// The application.
    pub app: String,
    /// The plugin name.
    pub name: String,
    /// The plugin kind.
    pub kind: ModuleKind,
    /// The version.
    pub version: Version,
    /// The content address of the component (without its signature section).
    pub sha256: ModuleHash,
    /// The component's size in bytes.
    pub size: u64,
    /// The signed manifest.
    pub manifest: Manifest,
    /// The publisher key that signed it.
    pub publisher_key_id: KeyId,
    /// The root that delegated to the publisher.
    pub root_key_id: KeyId,
    /// When it was uploaded (seconds since the epoch).
    pub uploaded_at: u64,
    /// Its state.
    pub state: ModuleState,
    /// Why it failed, for `failed-integrity`.
    pub state_reason: Option<String>,
}

impl ModuleRecord {
    /// `app/name@version`.
    pub fn label(&self) -> String {
        format!("{}/{}@{}", self.app, self.name, self.version)
    }
}

/// What an upload did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PutStatus {
    /// A new version was stored.
    Stored,
    /// This exact module was already stored: nothing was written (idempotent upload).
    AlreadyPresent,
    /// This module was stored but had failed its integrity check; its bytes were rewritten and
    /// it is usable again.
    Repaired,
}

/// The result of [`ModuleStore::put`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PutOutcome {
    /// What happened.
    pub status: PutStatus,
    /// The version as stored now.
    pub record: ModuleRecord,
    /// The version this upload replaced as active, when it activated.
    pub replaced: Option<Version>,
}

/// The result of an activation or rollback.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ActivateOutcome {
    /// The version now active.
    pub record: ModuleRecord,
    /// The version active before, if any.
    pub previous: Option<Version>,
    /// False when the version was already active (nothing changed).
    pub changed: bool,
}

/// The result of [`ModuleStore::remove`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RemoveOutcome {
    /// The removed version.
    pub removed: ModuleRecord,
    /// When the active version was removed (forced): what its plugin fell back to.
    pub fallback: Option<Fallback>,
}

/// A plugin whose active version was taken out of service, and what replaced it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Fallback {
    /// The application.
    pub app: String,
    /// The plugin name.
    pub name: String,
    /// The version taken out of service.
    pub failed: Version,
    /// The last good version now active, or `None`: the plugin denies everything.
    pub now_active: Option<Version>,
}

/// The outcome of checking one stored version.
#[derive(Debug)]
pub struct IntegrityEntry {
    /// The version checked.
    pub record: ModuleRecord,
    /// `None` when it verified; the problem when it failed now or had failed before.
    pub problem: Option<IntegrityProblem>,
}

/// The result of [`ModuleStore::integrity_check_all`].
#[derive(Debug, Default)]
pub struct IntegrityReport {
    /// One entry per stored version.
    pub entries: Vec<IntegrityEntry>,
    /// Plugins whose active version failed, and their fallbacks.
    pub fallbacks: Vec<Fallback>,
}

impl IntegrityReport {
    /// The entries that failed (now or before).
    pub fn failures(&self) -> impl Iterator<Item = &IntegrityEntry> {
        self.entries.iter().filter(|e| e.problem.is_some())
    }
}

/// Storage of signed modules. Every method is atomic: on error nothing changed, except that a
/// failed integrity check is recorded (that is its purpose).
pub trait ModuleStore: Send + Sync {
    /// Verifies and stores an upload, activating it when asked. Refused uploads change nothing.
    fn put(&self, upload: &Upload<'_>) -> Result<PutOutcome, StoreError>;

    /// Makes a stored version the active one. A version lower than the active one needs
    /// `force_rollback`; the bytes and chain are re-verified first (SER-013).
    fn activate(
        &self,
        app: &str,
        name: &str,
        version: &Version,
        force_rollback: bool,
    ) -> Result<ActivateOutcome, StoreError>;

    /// Forces activation of the highest good version below the active one.
    fn rollback(&self, app: &str, name: &str) -> Result<ActivateOutcome, StoreError>;

    /// Removes a version; the active one only with `force` (its plugin then falls back).
    fn remove(
        &self,
        app: &str,
        name: &str,
        version: &Version,
        force: bool,
    ) -> Result<RemoveOutcome, StoreError>;

    /// Every stored version, of one application or all, ordered by app, name and version.
    fn list(&self, app: Option<&str>) -> Result<Vec<ModuleRecord>, StoreError>;

    /// The active version of every plugin.
    fn active_modules(&self) -> Result<Vec<ModuleRecord>, StoreError>;

    /// The component bytes with this hash, re-hashed before they are returned (SER-013). On a
    /// mismatch every version with these bytes is marked failed, active ones fall back, and the
    /// error names the modules and the fallbacks.
    fn read_verified(&self, sha256: &ModuleHash) -> Result<Vec<u8>, StoreError>;

    /// Re-checks every stored version (bytes and chain, against the current trust anchors),
    /// marks failures and falls back; used at boot and periodically (SER-013).
    fn integrity_check_all(&self) -> Result<IntegrityReport, StoreError>;

    /// Takes every version with these bytes out of service (e.g. the compiled artifact failed
    /// its own check) and falls back for the plugins that were using them.
    fn mark_failed(&self, sha256: &ModuleHash, reason: &str) -> Result<Vec<Fallback>, StoreError>;
}
