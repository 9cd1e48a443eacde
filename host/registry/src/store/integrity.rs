//! Integrity of stored modules (SER-013): re-checking bytes and chains, taking failed versions
//! out of service, and falling back to the last good version.

use rusqlite::{Connection, TransactionBehavior};

use super::db::{self, Row};
use super::{
    EmbeddedStore, Fallback, IntegrityEntry, IntegrityProblem, IntegrityReport, ModuleRecord,
    ModuleState, StoreError,
};
use crate::{verify_detached, ModuleHash, TrustAnchors, VerifyPolicy, Version};

impl EmbeddedStore {
    /// Re-checks one stored version: the file's size and hash, the signature chain against the
    /// current anchors (without the validity window: it was checked at upload), and that the
    /// row's metadata is the signed manifest (SER-013).
    pub(super) fn recheck(
        &self,
        row: &Row,
        anchors: &TrustAnchors,
    ) -> Result<(), IntegrityProblem> {
        let r = &row.record;
        let bytes = self.files.read_checked(&r.sha256, r.size)?;
        let policy = VerifyPolicy {
            anchors,
            now: None,
            expected_app: Some(&r.app),
            expected_kind: Some(r.kind),
            max_size: u64::MAX,
        };
        let (manifest, _) =
            verify_detached(&bytes, &row.signature, &policy).map_err(IntegrityProblem::Chain)?;
        let same = manifest == r.manifest
            && manifest.name == r.name
            && manifest.version == r.version
            && manifest.module_sha256 == r.sha256
            && manifest.size == r.size;
        if same {
            Ok(())
        } else {
            Err(IntegrityProblem::MetadataMismatch)
        }
    }

    /// Marks rows failed and, for those that were active, falls back — one transaction.
    pub(super) fn fail_and_fall_back(
        &self,
        conn: &mut Connection,
        failed: &[(&Row, String)],
        anchors: &TrustAnchors,
    ) -> Result<Vec<Fallback>, StoreError> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (row, reason) in failed {
            let r = &row.record;
            tracing::error!(module = %r.label(), %reason, "registry: integrity failure (SER-013)");
            db::set_state(
                &tx,
                &r.app,
                &r.name,
                &r.version,
                ModuleState::FailedIntegrity,
                Some(reason),
            )?;
        }
        let mut fallbacks = Vec::new();
        for (row, _) in failed
            .iter()
            .filter(|(r, _)| r.record.state == ModuleState::Active)
        {
            fallbacks.push(self.fall_back(&tx, &row.record, anchors)?);
        }
        tx.commit()?;
        Ok(fallbacks)
    }

    /// Activates the last good version of a plugin whose active version was taken out of
    /// service: the highest lower version that has been active before and still verifies.
    /// Candidates that fail their re-check are marked failed on the way. None: the plugin has
    /// no active version and its decisions are denied (fail-closed).
    pub(super) fn fall_back(
        &self,
        tx: &rusqlite::Transaction<'_>,
        out: &ModuleRecord,
        anchors: &TrustAnchors,
    ) -> Result<Fallback, StoreError> {
        let rows = db::plugin_rows(tx, &out.app, &out.name)?;
        let mut candidates: Vec<&Row> = rows
            .iter()
            .filter(|r| r.record.state == ModuleState::Retired && r.record.version < out.version)
            .collect();
        candidates.sort_by(|a, b| b.record.version.cmp(&a.record.version));
        let mut now_active = None;
        for candidate in candidates {
            let c = &candidate.record;
            match self.recheck(candidate, anchors) {
                Ok(()) => {
                    db::activate(tx, &c.app, &c.name, &c.version)?;
                    now_active = Some(c.version.clone());
                    break;
                }
                Err(problem) => {
                    let reason = problem.to_string();
                    db::set_state(
                        tx,
                        &c.app,
                        &c.name,
                        &c.version,
                        ModuleState::FailedIntegrity,
                        Some(&reason),
                    )?;
                }
            }
        }
        tracing::warn!(
            plugin = %format!("{}/{}", out.app, out.name),
            out_of_service = %out.version,
            now_active = ?now_active.as_ref().map(Version::as_str),
            "registry: fell back"
        );
        Ok(Fallback {
            app: out.app.clone(),
            name: out.name.clone(),
            failed: out.version.clone(),
            now_active,
        })
    }

    /// [`super::ModuleStore::read_verified`].
    pub(super) fn read_verified_checked(&self, sha256: &ModuleHash) -> Result<Vec<u8>, StoreError> {
        let mut conn = self.conn();
        let rows = db::sha_rows(&conn, sha256)?;
        let Some(first) = rows.first() else {
            return Err(StoreError::NotFound {
                what: format!("module {sha256}"),
            });
        };
        let usable: Vec<&Row> = rows
            .iter()
            .filter(|r| r.record.state != ModuleState::FailedIntegrity)
            .collect();
        let Some(any) = usable.first() else {
            let reason = first.record.state_reason.clone().unwrap_or_default();
            return Err(StoreError::Failed {
                label: first.record.label(),
                reason,
            });
        };
        match self.files.read_checked(sha256, any.record.size) {
            Ok(bytes) => Ok(bytes),
            Err(problem) => {
                let reason = problem.to_string();
                let failed: Vec<(&Row, String)> =
                    usable.iter().map(|r| (*r, reason.clone())).collect();
                let fallbacks = self.fail_and_fall_back(&mut conn, &failed, &self.anchors())?;
                let modules = usable.iter().map(|r| r.record.label()).collect();
                Err(StoreError::Integrity {
                    modules,
                    sha256: *sha256,
                    problem: Box::new(problem),
                    fallbacks,
                })
            }
        }
    }

    /// [`super::ModuleStore::integrity_check_all`].
    pub(super) fn check_all(&self) -> Result<IntegrityReport, StoreError> {
        let mut conn = self.conn();
        let anchors = self.anchors();
        let rows = db::select(&conn, "1 = 1", [])?;
        let mut report = IntegrityReport::default();
        let mut failed = Vec::new();
        for row in &rows {
            let mut record = row.record.clone();
            let problem = if record.state == ModuleState::FailedIntegrity {
                Some(IntegrityProblem::PreviouslyFailed(
                    record.state_reason.clone().unwrap_or_default(),
                ))
            } else if let Err(problem) = self.recheck(row, &anchors) {
                failed.push((row, problem.to_string()));
                record.state = ModuleState::FailedIntegrity;
                record.state_reason = Some(problem.to_string());
                Some(problem)
            } else {
                None
            };
            report.entries.push(IntegrityEntry { record, problem });
        }
        if !failed.is_empty() {
            report.fallbacks = self.fail_and_fall_back(&mut conn, &failed, &anchors)?;
        }
        Ok(report)
    }

    /// [`super::ModuleStore::mark_failed`].
    pub(super) fn take_out_of_service(
        &self,
        sha256: &ModuleHash,
        reason: &str,
    ) -> Result<Vec<Fallback>, StoreError> {
        let mut conn = self.conn();
        let rows = db::sha_rows(&conn, sha256)?;
        if rows.is_empty() {
            return Err(StoreError::NotFound {
                what: format!("module {sha256}"),
            });
        }
        let failed: Vec<(&Row, String)> = rows
            .iter()
            .filter(|r| r.record.state != ModuleState::FailedIntegrity)
            .map(|r| (r, reason.to_owned()))
            .collect();
        self.fail_and_fall_back(&mut conn, &failed, &self.anchors())
    }
}
