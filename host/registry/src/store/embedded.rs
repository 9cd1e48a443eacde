//! The embedded [`ModuleStore`]: SQLite metadata and content-addressed module files in one data
//! folder, for gateways without a database server.
//!
//! Layout of the data folder:
//! - `modules/<sha256>.wasm` — component bytes without their signature section (see `files`);
//! - `registry.sqlite3` (+ `-wal`, `-shm`) — one row per version (see `db`);
//! - `registry.lock` — held (advisory lock) while a process has the store open, because the
//!   clean-up at open must not race another process's upload.
//!
//! Crash safety: bytes are written (temp file, fsync, rename, fsync) before the row that refers
//! to them is committed, and deleted only after the row is gone; every metadata change is one
//! SQLite transaction. A crash at any point therefore leaves either the old or the new state,
//! plus at most an unreferenced file, which the next open removes. SQLite is opened by path
//! (it cannot use a directory handle); every other file goes through cap-std handles.

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};

use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions};
use rusqlite::{Connection, TransactionBehavior};

use super::db;
use super::files::ContentFiles;
use super::{
    ActivateOutcome, Fallback, IntegrityReport, ModuleRecord, ModuleState, ModuleStore, PutOutcome,
    PutStatus, RemoveOutcome, StoreError, Upload,
};
use crate::{
    verify_with, ModuleHash, TrustAnchors, VerifyPolicy, Version, DEFAULT_MAX_MODULE_SIZE,
};

/// How the embedded store verifies uploads.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// The operator root keys uploads must chain to (SER-022).
    pub anchors: TrustAnchors,
    /// Module files larger than this are refused (SER-001).
    pub max_module_size: u64,
}

impl StoreConfig {
    /// These anchors and the default size limit.
    pub fn new(anchors: TrustAnchors) -> StoreConfig {
        StoreConfig {
            anchors,
            max_module_size: DEFAULT_MAX_MODULE_SIZE,
        }
    }
}

/// What opening the store cleaned up after an earlier crash.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Temporary files of interrupted writes.
    pub removed_temp_files: usize,
    /// Complete module files no row refers to (a crash between file and row, or after a row
    /// was deleted).
    pub removed_orphans: usize,
}

/// Test hook: where a simulated crash stops an operation (test builds only inject them).
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashPoint {
    /// The temporary file is written, not yet fsynced or renamed.
    TempWritten,
    /// The content file is in place, its row not committed.
    FileInPlace,
    /// The row is committed.
    RowCommitted,
    /// A removal's row is deleted, its file not yet.
    RowDeleted,
}

/// The embedded registry store.
pub struct EmbeddedStore {
    pub(super) files: ContentFiles,
    db: Mutex<Connection>,
    anchors: RwLock<TrustAnchors>,
    max_module_size: u64,
    report: OpenReport,
    _lock: std::fs::File,
    #[cfg(test)]
    crash_at: Mutex<Option<CrashPoint>>,
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `data_dir`, removes what an earlier crash left
    /// behind, and refuses if another process has it open.
    pub fn open(data_dir: &Path, config: StoreConfig) -> Result<EmbeddedStore, StoreError> {
        Dir::create_ambient_dir_all(data_dir, ambient_authority())
            .map_err(StoreError::io("create the registry folder"))?;
        let root = Dir::open_ambient_dir(data_dir, ambient_authority())
            .map_err(StoreError::io("open the registry folder"))?;
        let lock = root
            .open_with(
                "registry.lock",
                OpenOptions::new().create(true).truncate(false).write(true),
            )
            .map_err(StoreError::io("open the registry lock file"))?
            .into_std();
        if lock.try_lock().is_err() {
            return Err(StoreError::Locked {
                path: data_dir.display().to_string(),
            });
        }
        root.create_dir_all("modules")
            .map_err(StoreError::io("create the modules folder"))?;
        let files = ContentFiles::new(
            root.open_dir("modules")
                .map_err(StoreError::io("open the modules folder"))?,
        );
        let conn = db::open(&data_dir.join("registry.sqlite3"))?;
        let cleanup = files.clean(&db::referenced(&conn)?)?;
        if cleanup.temp_files + cleanup.orphans > 0 {
            tracing::warn!(
                temp_files = cleanup.temp_files,
                orphans = cleanup.orphans,
                "registry: removed files left by an interrupted operation"
            );
        }
        Ok(EmbeddedStore {
            files,
            db: Mutex::new(conn),
            anchors: RwLock::new(config.anchors),
            max_module_size: config.max_module_size,
            report: OpenReport {
                removed_temp_files: cleanup.temp_files,
                removed_orphans: cleanup.orphans,
            },
            _lock: lock,
            #[cfg(test)]
            crash_at: Mutex::new(None),
        })
    }

    /// What opening cleaned up.
    pub fn open_report(&self) -> OpenReport {
        self.report
    }

    /// Replaces the trust anchors (operator configuration reload). Stored modules are checked
    /// against the new set at the next [`ModuleStore::integrity_check_all`].
    pub fn set_trust_anchors(&self, anchors: TrustAnchors) {
        *self.anchors.write().unwrap_or_else(PoisonError::into_inner) = anchors;
    }

    /// The current trust anchors.
    pub fn trust_anchors(&self) -> TrustAnchors {
        self.anchors
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    #[cfg(test)]
    pub(crate) fn crash_at(&self, point: Option<CrashPoint>) {
        *self.crash_at.lock().unwrap() = point;
    }

    fn crash(&self, _point: CrashPoint) -> Result<(), StoreError> {
        #[cfg(test)]
        if *self.crash_at.lock().unwrap() == Some(_point) {
            return Err(StoreError::SimulatedCrash(_point));
        }
        Ok(())
    }

    pub(super) fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic inside a transaction rolled it back when the transaction was dropped, so the
        // connection is consistent even if the lock is poisoned.
        self.db.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn anchors(&self) -> std::sync::RwLockReadGuard<'_, TrustAnchors> {
        self.anchors.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn fetch(
        conn: &Connection,
        app: &str,
        name: &str,
        version: &Version,
    ) -> Result<ModuleRecord, StoreError> {
        db::plugin_rows(conn, app, name)?
            .into_iter()
            .find(|r| r.record.version == *version)
            .map(|r| r.record)
            .ok_or_else(|| StoreError::NotFound {
                what: format!("{app}/{name}@{version}"),
            })
    }

    fn activate_locked(
        &self,
        conn: &mut Connection,
        app: &str,
        name: &str,
        version: &Version,
        force_rollback: bool,
    ) -> Result<ActivateOutcome, StoreError> {
        let rows = db::plugin_rows(conn, app, name)?;
        let label = format!("{app}/{name}@{version}");
        let target = rows
            .iter()
            .find(|r| r.record.version == *version)
            .ok_or_else(|| StoreError::NotFound {
                what: label.clone(),
            })?;
        if target.record.state == ModuleState::FailedIntegrity {
            let reason = target.record.state_reason.clone().unwrap_or_default();
            return Err(StoreError::Failed { label, reason });
        }
        let active = rows.iter().find(|r| r.record.state == ModuleState::Active);
        let previous = active.map(|a| a.record.version.clone());
        if let Some(active) = active {
            if active.record.version == *version {
                return Ok(ActivateOutcome {
                    record: target.record.clone(),
                    previous,
                    changed: false,
                });
            }
            if *version < active.record.version && !force_rollback {
                return Err(StoreError::VersionNotGreater {
                    app: app.to_owned(),
                    name: name.to_owned(),
                    version: version.to_string(),
                    active: active.record.version.to_string(),
                });
            }
        }
        // Upgrades (and rollbacks) verify before activation (SER-013).
        let anchors = self.anchors();
        if let Err(problem) = self.recheck(target, &anchors) {
            self.fail_and_fall_back(conn, &[(target, problem.to_string())], &anchors)?;
            let sha256 = target.record.sha256;
            let problem = Box::new(problem);
            return Err(StoreError::Integrity {
                modules: vec![label],
                sha256,
                problem,
                fallbacks: vec![],
            });
        }
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        db::activate(&tx, app, name, version)?;
        tx.commit()?;
        let record = Self::fetch(conn, app, name, version)?;
        Ok(ActivateOutcome {
            record,
            previous,
            changed: true,
        })
    }
}

impl ModuleStore for EmbeddedStore {
    fn put(&self, upload: &Upload<'_>) -> Result<PutOutcome, StoreError> {
        let verified = {
            let anchors = self.anchors();
            let policy = VerifyPolicy {
                anchors: &anchors,
                now: Some(upload.now),
                expected_app: upload.expected_app,
                expected_kind: upload.expected_kind,
                max_size: self.max_module_size,
            };
            verify_with(upload.bytes, &policy)?
        };
        let m = &verified.manifest;
        let (app, name, version) = (m.app.as_str(), m.name.as_str(), &m.version);
        let mut conn = self.conn();
        let rows = db::plugin_rows(&conn, app, name)?;
        let active = rows.iter().find(|r| r.record.state == ModuleState::Active);
        if let Some(existing) = rows.iter().find(|r| r.record.version == *version) {
            if existing.record.manifest != *m {
                let (app, name, version) = (app.to_owned(), name.to_owned(), version.to_string());
                return Err(StoreError::VersionConflict { app, name, version });
            }
            let mut status = PutStatus::AlreadyPresent;
            if existing.record.state == ModuleState::FailedIntegrity {
                // The same signed module again repairs a version whose bytes were damaged.
                self.files
                    .write(&m.module_sha256, &verified.component, &|p| self.crash(p))?;
                let state = match existing.activated_seq {
                    Some(_) => ModuleState::Retired,
                    None => ModuleState::Stored,
                };
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                db::set_state(&tx, app, name, version, state, None)?;
                tx.commit()?;
                status = PutStatus::Repaired;
            }
            let mut replaced = None;
            if upload.activate && existing.record.state != ModuleState::Active {
                replaced = self
                    .activate_locked(&mut conn, app, name, version, false)?
                    .previous;
            }
            let record = Self::fetch(&conn, app, name, version)?;
            return Ok(PutOutcome {
                status,
                record,
                replaced,
            });
        }
        if let Some(first) = rows.first() {
            if first.record.kind != m.kind {
                let (app, name) = (app.to_owned(), name.to_owned());
                return Err(StoreError::KindConflict {
                    app,
                    name,
                    existing: first.record.kind,
                    uploaded: m.kind,
                });
            }
        }
        if let Some(active) = active {
            if *version <= active.record.version {
                return Err(StoreError::VersionNotGreater {
                    app: app.to_owned(),
                    name: name.to_owned(),
                    version: version.to_string(),
                    active: active.record.version.to_string(),
                });
            }
        }
        // Bytes first, then the row that refers to them: a crash in between leaves an orphan
        // file that the next open removes, never a row without its bytes.
        self.files
            .write(&m.module_sha256, &verified.component, &|p| self.crash(p))?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        db::insert(&tx, &verified, upload.now)?;
        if upload.activate {
            db::activate(&tx, app, name, version)?;
        }
        tx.commit()?;
        self.crash(CrashPoint::RowCommitted)?;
        let replaced = if upload.activate {
            active.map(|a| a.record.version.clone())
        } else {
            None
        };
        let record = Self::fetch(&conn, app, name, version)?;
        Ok(PutOutcome {
            status: PutStatus::Stored,
            record,
            replaced,
        })
    }

    fn activate(
        &self,
        app: &str,
        name: &str,
        version: &Version,
        force_rollback: bool,
    ) -> Result<ActivateOutcome, StoreError> {
        self.activate_locked(&mut self.conn(), app, name, version, force_rollback)
    }

    fn rollback(&self, app: &str, name: &str) -> Result<ActivateOutcome, StoreError> {
        let mut conn = self.conn();
        let rows = db::plugin_rows(&conn, app, name)?;
        let (app_s, name_s) = (app.to_owned(), name.to_owned());
        let active = rows
            .iter()
            .find(|r| r.record.state == ModuleState::Active)
            .ok_or(StoreError::NoActiveVersion {
                app: app_s.clone(),
                name: name_s.clone(),
            })?;
        let target = rows
            .iter()
            .rev()
            .find(|r| {
                r.record.version < active.record.version
                    && r.record.state != ModuleState::FailedIntegrity
            })
            .ok_or_else(|| StoreError::NoRollbackTarget {
                app: app_s,
                name: name_s,
                active: active.record.version.to_string(),
            })?;
        let version = target.record.version.clone();
        self.activate_locked(&mut conn, app, name, &version, true)
    }

    fn remove(
        &self,
        app: &str,
        name: &str,
        version: &Version,
        force: bool,
    ) -> Result<RemoveOutcome, StoreError> {
        let mut conn = self.conn();
        let removed = Self::fetch(&conn, app, name, version)?;
        let is_active = removed.state == ModuleState::Active;
        if is_active && !force {
            return Err(StoreError::RemoveActive {
                label: removed.label(),
            });
        }
        let anchors = self.anchors();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        db::delete(&tx, app, name, version)?;
        let fallback = if is_active {
            Some(self.fall_back(&tx, &removed, &anchors)?)
        } else {
            None
        };
        tx.commit()?;
        self.crash(CrashPoint::RowDeleted)?;
        // The row is gone first: a crash here leaves an orphan file the next open removes.
        if !db::sha_in_use(&conn, &removed.sha256)? {
            self.files.remove(&removed.sha256)?;
        }
        Ok(RemoveOutcome { removed, fallback })
    }

    fn list(&self, app: Option<&str>) -> Result<Vec<ModuleRecord>, StoreError> {
        let conn = self.conn();
        let rows = match app {
            Some(app) => db::select(&conn, "app = ?1", [app])?,
            None => db::select(&conn, "1 = 1", [])?,
        };
        Ok(rows.into_iter().map(|r| r.record).collect())
    }

    fn active_modules(&self) -> Result<Vec<ModuleRecord>, StoreError> {
        let rows = db::select(&self.conn(), "state = 'active'", [])?;
        Ok(rows.into_iter().map(|r| r.record).collect())
    }

    fn read_verified(&self, sha256: &ModuleHash) -> Result<Vec<u8>, StoreError> {
        self.read_verified_checked(sha256)
    }

    fn integrity_check_all(&self) -> Result<IntegrityReport, StoreError> {
        self.check_all()
    }

    fn mark_failed(&self, sha256: &ModuleHash, reason: &str) -> Result<Vec<Fallback>, StoreError> {
        self.take_out_of_service(sha256, reason)
    }
}
