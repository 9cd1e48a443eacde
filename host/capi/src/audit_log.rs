//! The signed, hash-chained audit log (`palisade-audit`, what `palisade audit verify`
//! checks) as the runtime's audit sink, for embedders without the gateway (SER-016).
//!
//! The log is opened as the gateway opens its own: checkpoints signed by the Ed25519 audit
//! key kept in a software keystore (found by its label, generated on first use; the private
//! key never leaves the keystore), the public key written next to the log as `gateway.pub`,
//! and decisions refused rather than dropped when storage cannot take them. One writer per
//! log: a second runtime opening the same folder is refused.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use palisade_audit::{
    AuditConfig, AuditError, AuditLog, CanonicalJson, DecisionOverflow, KeystoreSigner, Kind,
};
use palisade_core::{AuditFailure, AuditSink, DecisionRecord};
use palisade_keys::{KeyError, SoftwareKeyStore};

/// How long a decision waits for its record to be written (and for queue space when the
/// writer is behind) before it counts as not recorded: the gateway's `[audit] max_wait_ms`
/// default.
pub const AUDIT_WAIT: Duration = Duration::from_secs(2);

/// Why the audit log could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditLogError {
    /// The keystore holding the audit key cannot be opened, or the key made.
    #[error("the audit keystore {path} cannot be used")]
    Keystore {
        /// The keystore folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: KeyError,
    },
    /// The log's folder cannot be prepared (created, or its public key written).
    #[error("cannot prepare the audit folder {path}")]
    Folder {
        /// The log folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The log cannot be opened (in use by another writer, unreadable, damaged).
    #[error("cannot open the audit log in {path}")]
    Log {
        /// The log folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: AuditError,
    },
}

/// Decisions into the hash-chained audit log, each written before the runtime returns it.
pub struct AuditLogSink {
    log: AuditLog,
    payload_limit: usize,
}

impl AuditLogSink {
    /// Opens (or resumes) the log in `log_dir`, signing checkpoints with the audit key of the
    /// software keystore in `keystore_dir` (created, mode 0700, when missing), and writes the
    /// public key verifiers need to `log_dir/gateway.pub`:
    /// `palisade audit verify --log LOG_DIR --key LOG_DIR/gateway.pub`.
    pub fn open(log_dir: &Path, keystore_dir: &Path) -> Result<AuditLogSink, AuditLogError> {
        let keystore = |source| AuditLogError::Keystore {
            path: keystore_dir.to_path_buf(),
            source,
        };
        let folder = |source| AuditLogError::Folder {
            path: log_dir.to_path_buf(),
            source,
        };
        let store = SoftwareKeyStore::open(keystore_dir).map_err(keystore)?;
        let signer = Arc::new(KeystoreSigner::open_or_create(Arc::new(store)).map_err(keystore)?);
        std::fs::create_dir_all(log_dir).map_err(folder)?;
        palisade_audit::write_public_key(log_dir, signer.as_ref()).map_err(folder)?;
        let config = AuditConfig {
            // Fail closed: a decision the log cannot take is refused, never dropped into a
            // gap (a gap's seq would read as written).
            decision_overflow: DecisionOverflow::Refuse,
            // Every decision waits for its write: holding a batch back would only add latency.
            batch_delay: Duration::ZERO,
            admin_wait: AUDIT_WAIT,
            ..AuditConfig::default()
        };
        let payload_limit = config.max_payload_bytes;
        let log = AuditLog::open(log_dir, config, signer).map_err(|source| AuditLogError::Log {
            path: log_dir.to_path_buf(),
            source,
        })?;
        Ok(AuditLogSink { log, payload_limit })
    }

    /// The log, e.g. to flush it. Dropping the sink closes the log with a signed checkpoint.
    pub fn log(&self) -> &AuditLog {
        &self.log
    }
}

impl AuditSink for AuditLogSink {
    fn record(&self, record: &DecisionRecord) -> Result<(), AuditFailure> {
        let mut payload = CanonicalJson::of(record);
        if payload.as_str().len() > self.payload_limit {
            payload = CanonicalJson::of(&record.clone().tightly_bounded());
        }
        let seq = self
            .log
            .append_canonical(Kind::Decision, self.log.now_ms(), payload)
            .map_err(AuditFailure::new)?;
        self.log
            .wait_written_blocking(seq, AUDIT_WAIT)
            .map_err(AuditFailure::new)
    }
}
