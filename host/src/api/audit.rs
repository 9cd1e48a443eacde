//! Where decisions go for the record (SER-016). Every decision the gateway makes, through the
//! decision API or the proxy, is handed to [`audit_hook`] and nowhere else, so pointing the
//! gateway at the hash-chained audit log is one [`AuditSink`] implementation.
//!
//! Records carry what the plugins saw: the originator's pseudonym unless the application
//! recorded consent (SER-011/015/018/025), the same for an authenticated subject.

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::audit::{
    canonical_object, AuditConfig, AuditLog, CanonicalJson, CheckpointSigner, Kind, ObjectWriter,
    SignerError,
};
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

    /// The record as the audit log stores it (SER-016): the bytes of
    /// `canonical_json(&serde_json::to_value(record))`, written straight from the fields
    /// because building the `Value` on every decision cost more than the rest of the audit.
    pub fn to_canonical_json(&self) -> CanonicalJson {
        // Destructured without `..`: a new field fails to compile here instead of silently
        // missing from the audit trail. Keys in byte order, optional ones omitted as the
        // `skip_serializing_if` attributes omit them.
        let DecisionRecord {
            decision_id,
            source,
            app,
            originator,
            operation,
            target,
            effect,
            reason,
            enforced,
            would_deny,
            module,
            subject,
            request_time,
        } = self;
        let written = canonical_object(512, |o| {
            o.str("app", app);
            o.str("decision_id", decision_id);
            o.scalar("effect", effect);
            o.bool("enforced", *enforced);
            if let Some(label) = module {
                o.object("module", |o| write_label(o, label));
            }
            o.str("operation", operation);
            o.str("originator", originator);
            o.str("reason", reason);
            o.u64("request_time", *request_time);
            o.str("source", source);
            o.opt_str("subject", subject.as_deref());
            o.str("target", target);
            o.opt_str("would_deny", would_deny.as_deref());
        });
        written.unwrap_or_else(|| {
            // Keys out of order: a bug the unit tests catch. Keep the record rather than
            // lose it, through the slow path that is canonical by construction.
            tracing::error!(decision_id = %self.decision_id, "decision record written out of key order");
            let value = serde_json::to_value(self).unwrap_or_default();
            CanonicalJson::from_value(&value)
        })
    }
}

/// The `module` of a record, as `PluginLabel`'s derived `Serialize` gives it (sorted).
fn write_label(o: &mut ObjectWriter<'_>, label: &PluginLabel) {
    let PluginLabel {
        name,
        kind,
        version,
        sha256,
    } = label;
    o.scalar("kind", kind);
    o.str("name", name);
    o.str("sha256", sha256);
    o.opt_str("version", version.as_deref());
}

/// Receives audit records. Implementations must not block for long: they run on the request
/// path (the audit log queues and writes on its own thread).
pub trait AuditSink: Send + Sync {
    /// A decision. Typed rather than JSON so that a sink writing the audit log can encode
    /// it once, straight to canonical JSON ([`DecisionRecord::to_canonical_json`]).
    fn decision(&self, record: &DecisionRecord);

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
    fn decision(&self, record: &DecisionRecord) {
        tracing::info!(target: "palisade::audit", record = %record.to_canonical_json(), "decision");
    }
}

/// The one place every decision goes through on its way to the audit trail.
pub fn audit_hook(sink: &dyn AuditSink, record: &DecisionRecord) {
    sink.decision(record);
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
    fn decision(&self, record: &DecisionRecord) {
        let payload = record.to_canonical_json();
        let time = self.log.now_ms();
        if let Err(error) = self.log.append_canonical(Kind::Decision, time, payload) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::canonical_json;
    use crate::sandbox::PluginKind;

    /// Every character class serde_json escapes differently: quotes, backslashes, the short
    /// escapes, other control characters (`\u00XX`), DEL and non-ASCII (both left as is).
    const AWKWARD: &str = "q\"b\\s/\u{0}\u{1}\u{8}\t\n\u{b}\u{c}\r\u{1b}\u{1f}\u{7f}é☃\u{2028}😀";

    fn record(text: &str) -> DecisionRecord {
        DecisionRecord {
            decision_id: format!("d-{text}"),
            source: "decide",
            app: format!("app{text}"),
            originator: format!("CAE{text}"),
            operation: "retrieve",
            target: format!("/cse-in/{text}"),
            effect: Effect::Deny,
            reason: format!("no privilege {text}"),
            enforced: true,
            would_deny: None,
            module: None,
            subject: None,
            request_time: 1_718_000_000,
        }
    }

    fn full(text: &str) -> DecisionRecord {
        DecisionRecord {
            effect: Effect::Permit,
            enforced: false,
            would_deny: Some(format!("would deny {text}")),
            module: Some(PluginLabel {
                name: format!("acp{text}"),
                kind: PluginKind::Authenticator,
                version: Some(format!("1.0.0-{text}")),
                sha256: "ab".repeat(32),
            }),
            subject: Some(format!("subject {text}")),
            request_time: u64::MAX,
            ..record(text)
        }
    }

    /// What the decision path wrote before SER-016's typed encoding: the bytes every
    /// existing log and verifier expect.
    fn through_value(record: &DecisionRecord) -> String {
        canonical_json(&serde_json::to_value(record).unwrap())
    }

    #[test]
    fn typed_audit_encoding_matches_the_value_path() {
        let mut label_without_version = full("x");
        if let Some(label) = &mut label_without_version.module {
            label.version = None;
            label.kind = PluginKind::Filter;
        }
        let cases = [
            record(""),
            record(AWKWARD),
            full(""),
            full(AWKWARD),
            label_without_version,
        ];
        for record in &cases {
            assert_eq!(
                record.to_canonical_json().as_str(),
                through_value(record),
                "{record:?}"
            );
        }
    }

    #[test]
    fn typed_audit_encoding_is_canonical_json() {
        let text = full(AWKWARD).to_canonical_json();
        let value: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
        assert_eq!(value["module"]["name"], format!("acp{AWKWARD}"));
        assert_eq!(value["subject"], format!("subject {AWKWARD}"));
        assert!(text.as_str().starts_with(r#"{"app":"#), "{text}");
        assert!(
            text.as_str()
                .contains(r#""module":{"kind":"authenticator","name":"#),
            "{text}"
        );
        let none = record("").to_canonical_json();
        for absent in ["module", "subject", "would_deny"] {
            assert!(!none.as_str().contains(absent), "{absent} omitted: {none}");
        }
    }
}
