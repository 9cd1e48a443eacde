//! Where decisions go for the record (SER-016). Every decision the gateway makes, through the
//! decision API or the proxy, is handed to [`audit_hook`] and nowhere else, so pointing the
//! gateway at the hash-chained audit log is one [`AuditSink`] implementation.
//!
//! Records carry what the plugins saw: the originator's pseudonym unless the application
//! recorded consent (SER-011/015/018/025), the same for an authenticated subject.

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::audit::{AuditConfig, AuditLog, CheckpointSigner, Kind, SignerError};
use crate::keys::{KeyError, KeyHandle, KeyKind, KeyScope, KeyStore};
use crate::pipeline::{Decision, Effect};
use crate::sandbox::PluginLabel;

/// One decision, as written to the audit trail.
#[derive(Clone, Debug, Serialize)]
pub struct DecisionRecord {
    pub decision_id: String,
    /// `decide` (the decision API) or `proxy` (the enforcement proxy).
    pub source: &'static str,
    pub app: String,
    /// The originator as the app's plugins saw it (a pseudonym unless consent).
    pub originator: String,
    pub operation: &'static str,
    pub target: String,
    pub effect: Effect,
    pub reason: String,
    pub enforced: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub would_deny: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module: Option<PluginLabel>,
    /// The authenticated subject (a pseudonym unless consent), when a credential was accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Seconds since the Unix epoch, as the plugins saw it.
    pub request_time: u64,
}

impl DecisionRecord {
    /// The record of `decision` on `view` (the request as the plugins saw it).
    pub fn new(
        decision_id: &str,
        source: &'static str,
        view: &crate::AccessRequest,
        decision: &Decision,
        subject: Option<String>,
    ) -> DecisionRecord {
        DecisionRecord {
            decision_id: decision_id.to_string(),
            source,
            app: decision.app.clone(),
            originator: view.originator.clone(),
            operation: view.operation.name(),
            target: view.target.clone(),
            effect: decision.effect,
            reason: decision.reason.clone(),
            enforced: decision.enforced,
            would_deny: decision.would_deny.clone(),
            module: decision.decided_by.as_deref().cloned(),
            subject,
            request_time: view.request_time.unwrap_or_default(),
        }
    }
}

/// Receives audit records. Implementations must not block for long: they run on the request
/// path (the audit log queues and writes on its own thread).
pub trait AuditSink: Send + Sync {
    /// A decision; `payload` is the [`DecisionRecord`] as JSON.
    fn decision(&self, payload: serde_json::Value);

    /// An admin or integrity event (module upload, activation, a module failing its
    /// re-check, SER-013/SER-016); sinks that keep a trail never drop these.
    fn event(&self, kind: Kind, payload: serde_json::Value) {
        tracing::info!(target: "palisade::audit", ?kind, record = %payload, "event");
    }
}

/// The sink used until the audit log is wired in: structured log lines on the
/// `palisade::audit` target.
pub struct LogSink;

impl AuditSink for LogSink {
    fn decision(&self, payload: serde_json::Value) {
        tracing::info!(target: "palisade::audit", record = %payload, "decision");
    }
}

/// The one place every decision goes through on its way to the audit trail.
pub fn audit_hook(sink: &dyn AuditSink, record: &DecisionRecord) {
    match serde_json::to_value(record) {
        Ok(payload) => sink.decision(payload),
        // A record that cannot be serialized is a bug; say so loudly rather than drop it
        // silently.
        Err(error) => {
            tracing::error!(%error, decision_id = %record.decision_id, "audit record not serializable")
        }
    }
}

/// The keystore label of the gateway's audit key.
pub const AUDIT_KEY_LABEL: &str = "audit";

/// Signs audit checkpoints with the gateway's Ed25519 audit key, inside the keystore (or the
/// HSM behind it): the private key never leaves it (SER-010, SER-016).
pub struct KeystoreSigner {
    store: Arc<dyn KeyStore>,
    handle: KeyHandle,
    public: [u8; 32],
}

impl KeystoreSigner {
    /// The gateway's audit key, generated on first start and found by its label afterwards.
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

/// Decisions into the hash-chained audit log. Appending never blocks a decision: under
/// overload decision entries become a counted gap (the log's stated policy).
pub struct AuditLogSink {
    log: AuditLog,
}

impl AuditLogSink {
    /// Opens (or resumes) the log in `dir` and writes the key verifiers need next to it as
    /// `gateway.pub` (64 hex digits), for `palisade audit verify --log DIR --key DIR/gateway.pub`.
    pub fn open(dir: &Path, signer: Arc<KeystoreSigner>) -> Result<AuditLogSink, AuditSetupError> {
        std::fs::create_dir_all(dir).map_err(AuditSetupError::Io)?;
        let public = hex::encode(signer.public_key());
        let temporary = dir.join("gateway.pub.tmp");
        std::fs::write(&temporary, format!("{public}\n")).map_err(AuditSetupError::Io)?;
        std::fs::rename(&temporary, dir.join("gateway.pub")).map_err(AuditSetupError::Io)?;
        let log = AuditLog::open(dir, AuditConfig::default(), signer)?;
        Ok(AuditLogSink { log })
    }

    /// The log, for admin and integrity entries (which are never dropped).
    pub fn log(&self) -> &AuditLog {
        &self.log
    }
}

impl AuditSink for AuditLogSink {
    fn decision(&self, payload: serde_json::Value) {
        if let Err(error) = self.log.append(Kind::Decision, payload) {
            tracing::warn!(%error, "a decision could not be appended to the audit log");
        }
    }

    fn event(&self, kind: Kind, payload: serde_json::Value) {
        if let Err(error) = self.log.append(kind, payload) {
            tracing::error!(%error, ?kind, "an event could not be appended to the audit log");
        }
    }
}

/// Why the audit log could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AuditSetupError {
    #[error("cannot prepare the audit folder: {0}")]
    Io(std::io::Error),
    #[error(transparent)]
    Log(#[from] crate::audit::AuditError),
    #[error("the gateway's audit key is unusable: {0}")]
    Key(#[from] KeyError),
}
