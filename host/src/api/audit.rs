//! Where decisions go for the record (SER-016). Every decision the gateway makes, through the
//! decision API or the proxy, is handed to [`audit_hook`] and nowhere else, so pointing the
//! gateway at the hash-chained audit log is one [`AuditSink`] implementation.
//!
//! Records carry what the plugins saw: the originator's pseudonym unless the application
//! recorded consent (SER-011/015/018/025), the same for an authenticated subject.

use serde::Serialize;

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
