//! Where decisions go for the record (SER-016). Every decision the gateway makes, through the
//! decision API or the proxy, is handed to [`audit_hook`] and nowhere else, so pointing the
//! gateway at the hash-chained audit log is one [`AuditSink`] implementation.
//!
//! SER-016, audit before answer: [`Gateway::evaluate`](super::Gateway::evaluate) queues the
//! record and keeps its [`AuditTicket`]; the handler awaits
//! [`Gateway::recorded`](super::Gateway::recorded) before it answers, and refuses the
//! request (503) when the record cannot be written, unless the operator chose
//! `[audit] on_failure = "permit-with-gap"` ([`AuditSettings`]). Fields a client controls
//! are bounded: an overlong one is cut and the record keeps the SHA-256 of the original
//! (`truncated`), so a large request can never make its record unwritable.
//!
//! The record is palisade-core's [`DecisionRecord`] (what every embedder records) with the
//! two fields only the HTTP layer knows in its extension ([`SOURCE`], [`ORIGINATOR_AUTH`]);
//! its fields and their bounds are described there. Records carry what the plugins saw: the
//! originator's pseudonym unless the application recorded consent (SER-011/015/018/025), the
//! same for an authenticated subject.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub(crate) use palisade_audit::KeystoreSigner;
use palisade_audit::{AuditConfig, AuditError, AuditLog, CanonicalJson, DecisionOverflow, Kind};
use palisade_core::{Decision, ExtensionKey, RecordExtension};
use palisade_keys::KeyError;

pub(crate) use palisade_core::bound_field as bound;
/// The record of one decision: the core's ([`palisade_core::DecisionRecord`], the same
/// fields and encoding for every embedder) with the gateway's two fields in its
/// [`RecordExtension`]: `source` and `originator_auth`.
pub use palisade_core::{DecisionRecord, FIELD_LIMIT};

/// `decide` (the decision API) or `proxy` (the enforcement proxy).
pub const SOURCE: ExtensionKey = ExtensionKey::new("source");

/// How the originator was established ([`super::originator`]): `claimed` (believed as sent),
/// `tls`, `vouched` (by a trusted decide caller), `token`, `tls+token`, `vouched+token`,
/// `group`, or, on a refusal before the plugins, the app's required mode (`tls`, `token`, ...).
pub const ORIGINATOR_AUTH: ExtensionKey = ExtensionKey::new("originator_auth");

/// The gateway's record of `decision` on `view` (the request as the plugins saw it).
pub fn decision_record(
    decision_id: &str,
    source: &'static str,
    originator_auth: &'static str,
    view: &palisade_core::AccessRequest,
    decision: &Decision,
    subject: Option<String>,
) -> DecisionRecord {
    let extension = RecordExtension::new()
        .with(ORIGINATOR_AUTH, originator_auth)
        .with(SOURCE, source);
    DecisionRecord::new(decision_id, view, decision, subject, extension)
}

/// A future a sink returns (boxed: [`AuditSink`] is used as a trait object).
pub type SinkFuture<'a> = Pin<Box<dyn Future<Output = Result<(), AuditRefusal>> + Send + 'a>>;

/// Where a decision's record stands after [`AuditSink::decision`]; awaited through
/// [`AuditSink::confirm`] before the decision is answered (SER-016).
#[derive(Debug)]
pub enum AuditTicket {
    /// Nothing to wait for (a sink without a file).
    Done,
    /// Queued as this seq: answer once it is written.
    Queued(u64),
    /// The queue was full: wait (bounded) for space, then for the write.
    Waiting {
        /// The record's time (milliseconds since the Unix epoch).
        time: u64,
        /// The record, encoded once.
        payload: CanonicalJson,
    },
    /// Cannot be recorded (storage failing, log closed): refuse.
    Refused(AuditRefusal),
}

/// Why a decision or admin action cannot be recorded, so it must not take effect.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the audit trail cannot record this ({reason}): {detail}")]
pub struct AuditRefusal {
    /// `backlogged` (storage too slow), `unavailable` (writes fail), `closed`, `too-large`.
    pub reason: &'static str,
    /// The underlying error.
    pub detail: String,
}

impl From<AuditError> for AuditRefusal {
    fn from(error: AuditError) -> AuditRefusal {
        let reason = match &error {
            AuditError::Backlogged(_) => "backlogged",
            AuditError::Unavailable(_) | AuditError::Io { .. } => "unavailable",
            AuditError::Closed => "closed",
            AuditError::PayloadTooLarge { .. } => "too-large",
            _ => "error",
        };
        AuditRefusal {
            reason,
            detail: palisade_types::Chain(&error).to_string(),
        }
    }
}

/// Whether the audit trail can write now (for `/health`).
#[derive(Debug, Clone, Serialize)]
pub struct AuditHealth {
    /// False while records cannot be written (storage failing, writer stopped).
    pub ok: bool,
    /// Why not, when not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What the gateway does with a decision it cannot record.
    pub on_failure: OnFailure,
    /// The `[audit.ship]` shipper's status (issue #17), when the gateway ships its log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ship: Option<serde_json::Value>,
}

/// Receives audit records: the gateway's asynchronous counterpart of
/// [`palisade_core::AuditSink`] (same [`DecisionRecord`], same encoding), so that waiting
/// for a write never holds a request thread; the gateway installs no core sink on its
/// runtime. Implementations must not block for long: they run on the request path (the
/// audit log queues and writes on its own thread).
pub trait AuditSink: Send + Sync {
    /// A decision. Typed rather than JSON so that a sink writing the audit log can encode
    /// it once, straight to canonical JSON (`palisade_audit::CanonicalJson::of`). Never
    /// waits; the ticket says what to await before answering.
    fn decision(&self, record: &DecisionRecord) -> AuditTicket;

    /// Waits until the decision behind `ticket` is recorded (SER-016): `Err` means it must
    /// not be answered as decided (the gateway answers 503), unless the operator chose
    /// to permit with a gap, in which case the sink answers `Ok` and counts it.
    fn confirm(&self, ticket: AuditTicket) -> SinkFuture<'_> {
        Box::pin(async move {
            match ticket {
                AuditTicket::Refused(refusal) => Err(refusal),
                _ => Ok(()),
            }
        })
    }

    /// An admin or integrity event (module upload, activation, a module failing its
    /// re-check, SER-013/SER-016); sinks that keep a trail never drop these.
    fn event(&self, kind: Kind, payload: serde_json::Value) {
        tracing::info!(target: "palisade::audit", ?kind, record = %payload, "event");
    }

    /// An event that must be on record before what it records takes effect (an admin
    /// action): `Err` means the action must be refused.
    fn event_recorded(&self, kind: Kind, payload: serde_json::Value) -> SinkFuture<'_> {
        self.event(kind, payload);
        Box::pin(async { Ok(()) })
    }

    /// Whether records can be written now; `None` for a sink without storage.
    fn health(&self) -> Option<AuditHealth> {
        None
    }

    /// Prometheus text for the audit trail (empty for a sink without storage).
    fn metrics_text(&self) -> String {
        String::new()
    }
}

/// The one place every decision goes through on its way to the audit trail.
pub fn audit_hook(sink: &dyn AuditSink, record: &DecisionRecord) -> AuditTicket {
    sink.decision(record)
}

/// What the gateway does with a decision whose record cannot be written (`[audit]
/// on_failure`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum OnFailure {
    /// Refuse the request: 503 (the default; SER-016, fail closed).
    #[default]
    Deny,
    /// Answer it as decided, and record a signed gap entry in place of its record (counted
    /// in `palisade_audit_gaps_total`); a crash before storage recovers loses even the gap.
    PermitWithGap,
}

/// The `[audit]` section of the gateway config.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// `"deny"` (default) or `"permit-with-gap"`: see [`OnFailure`].
    pub on_failure: OnFailure,
    /// Rotate the active file at this size in bytes; 0 never. Default 64 MiB. At least
    /// 65,536 when set.
    #[serde(deserialize_with = "rotate_bytes")]
    pub rotate_bytes: u64,
    /// Rotate the active file at this age in seconds (checked at least every 10 s); 0 never.
    /// Default 86,400 (a day).
    pub rotate_age_s: u64,
    /// How long a decision waits for its record to be written (and for queue space when the
    /// writer is behind) before it is refused (or, with `permit-with-gap`, answered
    /// unrecorded). Default 2,000 ms; 1..=60,000. The cost of a larger value: requests hang
    /// that long on a stalled disk.
    #[serde(deserialize_with = "max_wait_ms")]
    pub max_wait_ms: u64,
    /// Free space (bytes) the audit folder must have at start, checked by writing and
    /// removing a file that large: the gateway refuses to start on a full disk. Default
    /// 1 MiB; 0 skips the check.
    pub min_free_bytes: u64,
    /// `[audit.ship]`: ship this log to a fleet collector (issue #17; none by default, and
    /// then nothing leaves the gateway). Its keys (`collector`, `ca_file`, `cert_file`,
    /// `key_file`, `batch_entries`, `batch_bytes`, `poll_interval_ms`, `retry_max_ms`,
    /// `request_timeout_ms`, `max_backlog_bytes`, `on_backlog_full`) are checked by
    /// `palisade_collector`'s `ShipConfig::from_gateway` when `palisade serve` starts, with
    /// file:line:key errors.
    #[schemars(with = "Option<std::collections::BTreeMap<String, serde_json::Value>>")]
    pub ship: Option<toml::Table>,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            on_failure: OnFailure::Deny,
            rotate_bytes: 64 << 20,
            rotate_age_s: 86_400,
            max_wait_ms: 2_000,
            min_free_bytes: 1 << 20,
            ship: None,
        }
    }
}

fn rotate_bytes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let value = u64::deserialize(d)?;
    if value != 0 && value < 65_536 {
        return Err(serde::de::Error::custom(format!(
            "{value} is too small: use 0 (never rotate) or at least 65536 bytes"
        )));
    }
    Ok(value)
}

fn max_wait_ms<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let value = u64::deserialize(d)?;
    if !(1..=60_000).contains(&value) {
        return Err(serde::de::Error::custom(format!(
            "{value} is out of range: use 1..=60000 milliseconds"
        )));
    }
    Ok(value)
}

/// Decisions into the hash-chained audit log, each written before it is answered
/// (SER-016); see [`AuditSettings`] for what happens when that is not possible.
pub struct AuditLogSink {
    log: AuditLog,
    settings: AuditSettings,
    /// Decisions or admin actions refused because their record could not be written.
    refusals: AtomicU64,
    /// Decisions answered without their record on file (`permit-with-gap`).
    unrecorded: AtomicU64,
    /// The log's largest entry payload ([`AuditConfig::max_payload_bytes`]).
    payload_limit: usize,
}

impl AuditLogSink {
    /// Opens (or resumes) the log in `dir` and writes the key verifiers need next to it as
    /// `gateway.pub` (64 hex digits), for `palisade audit verify --log DIR --key DIR/gateway.pub`.
    /// Fails when the folder cannot take [`AuditSettings::min_free_bytes`] (a full disk):
    /// a gateway that cannot record must not start.
    pub fn open(
        dir: &Path,
        signer: Arc<KeystoreSigner>,
        settings: &AuditSettings,
    ) -> Result<AuditLogSink, AuditSetupError> {
        std::fs::create_dir_all(dir).map_err(AuditSetupError::Io)?;
        check_space(dir, settings.min_free_bytes)?;
        palisade_audit::write_public_key(dir, signer.as_ref()).map_err(AuditSetupError::Io)?;
        let config = AuditConfig {
            decision_overflow: match settings.on_failure {
                OnFailure::Deny => DecisionOverflow::Refuse,
                OnFailure::PermitWithGap => DecisionOverflow::Gap,
            },
            rotate_bytes: settings.rotate_bytes,
            rotate_age: Duration::from_secs(settings.rotate_age_s),
            // Every decision waits for its write: holding a batch back would only add
            // latency. Batches form by themselves from what arrives during a write.
            batch_delay: Duration::ZERO,
            admin_wait: Duration::from_millis(settings.max_wait_ms),
            ..AuditConfig::default()
        };
        let payload_limit = config.max_payload_bytes;
        let log = AuditLog::open(dir, config, signer)?;
        Ok(AuditLogSink {
            log,
            payload_limit,
            settings: settings.clone(),
            refusals: AtomicU64::new(0),
            unrecorded: AtomicU64::new(0),
        })
    }

    fn max_wait(&self) -> Duration {
        Duration::from_millis(self.settings.max_wait_ms)
    }

    /// The outcome of a decision whose record could not be written: refused (counted), or
    /// in `permit-with-gap` mode answered and counted.
    fn failed(&self, error: AuditRefusal) -> Result<(), AuditRefusal> {
        if self.settings.on_failure == OnFailure::PermitWithGap {
            self.unrecorded.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%error, "decision answered without its audit record (permit-with-gap)");
            return Ok(());
        }
        self.refusals.fetch_add(1, Ordering::Relaxed);
        Err(error)
    }
}

/// Writes and removes a file of `bytes` in `dir`: proof the audit folder has that much room.
fn check_space(dir: &Path, bytes: u64) -> Result<(), AuditSetupError> {
    if bytes == 0 {
        return Ok(());
    }
    let probe = dir.join(".space-probe");
    let result = (|| {
        use std::io::Write;
        let mut file = std::fs::File::create(&probe)?;
        let chunk = vec![0u8; 64 << 10];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            file.write_all(&chunk[..n])?;
            left -= n as u64;
        }
        file.sync_all()
    })();
    let _ = std::fs::remove_file(&probe);
    result.map_err(|source| AuditSetupError::NoSpace {
        dir: dir.display().to_string(),
        bytes,
        source,
    })
}

impl AuditSink for AuditLogSink {
    fn decision(&self, record: &DecisionRecord) -> AuditTicket {
        let mut payload = CanonicalJson::of(record);
        if payload.as_str().len() > self.payload_limit {
            payload = CanonicalJson::of(&record.clone().tightly_bounded());
        }
        let time = self.log.now_ms();
        match self.log.try_append_decision(time, payload) {
            Ok(seq) => AuditTicket::Queued(seq),
            Err((_, Some(payload))) => AuditTicket::Waiting { time, payload },
            Err((error, None)) => AuditTicket::Refused(error.into()),
        }
    }

    fn confirm(&self, ticket: AuditTicket) -> SinkFuture<'_> {
        Box::pin(async move {
            let wait = self.max_wait();
            let outcome = match ticket {
                AuditTicket::Done => return Ok(()),
                AuditTicket::Queued(seq) => self.log.wait_written(seq, wait).await,
                AuditTicket::Waiting { time, payload } => {
                    let started = tokio::time::Instant::now();
                    match self
                        .log
                        .append_canonical_async(Kind::Decision, time, payload, wait)
                        .await
                    {
                        Ok(seq) => {
                            let left = wait.saturating_sub(started.elapsed());
                            self.log.wait_written(seq, left).await
                        }
                        Err(error) => Err(error),
                    }
                }
                AuditTicket::Refused(refusal) => return self.failed(refusal),
            };
            outcome.or_else(|error| self.failed(error.into()))
        })
    }

    fn event(&self, kind: Kind, payload: serde_json::Value) {
        if let Err(error) = self.log.append(kind, payload) {
            tracing::error!(error = %palisade_types::Chain(&error), ?kind, "an event could not be appended to the audit log");
        }
    }

    fn event_recorded(&self, kind: Kind, payload: serde_json::Value) -> SinkFuture<'_> {
        Box::pin(async move {
            let time = self.log.now_ms();
            let written = match self.log.append_async(kind, time, payload).await {
                Ok(seq) => self.log.wait_written(seq, self.max_wait()).await,
                Err(error) => Err(error),
            };
            written.map_err(|error| {
                self.refusals.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %palisade_types::Chain(&error), ?kind, "refused: the action cannot be recorded");
                AuditRefusal::from(error)
            })
        })
    }

    fn health(&self) -> Option<AuditHealth> {
        let stats = self.log.stats();
        let reason = if stats.failing {
            Some(format!(
                "the audit log cannot be written: {}",
                stats.last_error.as_deref().unwrap_or("write failed")
            ))
        } else if self.log.is_stopped() {
            Some("the audit writer has stopped".to_owned())
        } else {
            None
        };
        Some(AuditHealth {
            ok: reason.is_none(),
            reason,
            on_failure: self.settings.on_failure,
            ship: None,
        })
    }

    fn metrics_text(&self) -> String {
        let stats = self.log.stats();
        let writable = u8::from(!stats.failing && !self.log.is_stopped());
        format!(
            "# HELP palisade_audit_writable Whether the audit log can be written now (0 while writes fail).\n\
             # TYPE palisade_audit_writable gauge\n\
             palisade_audit_writable {writable}\n\
             # HELP palisade_audit_write_failures_total Audit writes that failed (each retried).\n\
             # TYPE palisade_audit_write_failures_total counter\n\
             palisade_audit_write_failures_total {}\n\
             # HELP palisade_audit_refusals_total Decisions and admin actions refused because their record could not be written.\n\
             # TYPE palisade_audit_refusals_total counter\n\
             palisade_audit_refusals_total {}\n\
             # HELP palisade_audit_gaps_total Decision records dropped into signed gap entries (permit-with-gap).\n\
             # TYPE palisade_audit_gaps_total counter\n\
             palisade_audit_gaps_total {}\n\
             # HELP palisade_audit_unrecorded_answers_total Decisions answered before their record was written (permit-with-gap).\n\
             # TYPE palisade_audit_unrecorded_answers_total counter\n\
             palisade_audit_unrecorded_answers_total {}\n\
             # HELP palisade_audit_entries_written_total Entries written to the audit log.\n\
             # TYPE palisade_audit_entries_written_total counter\n\
             palisade_audit_entries_written_total {}\n\
             # HELP palisade_audit_rotations_total Audit files rotated.\n\
             # TYPE palisade_audit_rotations_total counter\n\
             palisade_audit_rotations_total {}\n\
             # HELP palisade_audit_queue_len Entries waiting for the audit writer.\n\
             # TYPE palisade_audit_queue_len gauge\n\
             palisade_audit_queue_len {}\n\
             # HELP palisade_audit_writer_wakeups_total Times a decision or event woke the audit writer thread.\n\
             # TYPE palisade_audit_writer_wakeups_total counter\n\
             palisade_audit_writer_wakeups_total {}\n\
             # HELP palisade_audit_inline_batches_total Batches of decisions written by a request that found the audit writer idle (no thread woken).\n\
             # TYPE palisade_audit_inline_batches_total counter\n\
             palisade_audit_inline_batches_total {}\n",
            stats.write_errors,
            self.refusals.load(Ordering::Relaxed),
            stats.dropped,
            self.unrecorded.load(Ordering::Relaxed),
            stats.entries_written,
            stats.rotations,
            stats.queue_len,
            stats.writer_wakeups,
            stats.inline_batches,
        )
    }
}

/// Why the audit log could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AuditSetupError {
    #[error("cannot prepare the audit folder: {0}")]
    Io(std::io::Error),
    #[error(transparent)]
    Log(#[from] palisade_audit::AuditError),
    #[error("the gateway's audit key is unusable")]
    Key(#[from] KeyError),
    /// The audit folder has no room: the gateway does not start without its audit.
    #[error("the audit folder {dir} cannot take {bytes} bytes ([audit] min_free_bytes), refusing to start without a writable audit log")]
    NoSpace {
        dir: String,
        bytes: u64,
        #[source]
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_audit::canonical_json;
    use palisade_core::{Effect, PluginKind, PluginLabel, FIELD_LIMIT_ESCAPED};
    use serde_json::{json, Value};
    use sha2::{Digest, Sha256};

    /// Every character class serde_json escapes differently: quotes, backslashes, the short
    /// escapes, other control characters (`\u00XX`), DEL and non-ASCII (both left as is).
    const AWKWARD: &str = "q\"b\\s/\u{0}\u{1}\u{8}\t\n\u{b}\u{c}\r\u{1b}\u{1f}\u{7f}é☃\u{2028}😀";

    fn record(text: &str) -> DecisionRecord {
        DecisionRecord {
            decision_id: format!("d-{text}"),
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
            extension: RecordExtension::new()
                .with(SOURCE, "decide")
                .with(ORIGINATOR_AUTH, "claimed"),
            truncated: None,
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

    /// The gateway's record as it was before the record moved to palisade-core (a derived
    /// `Serialize` of these fields, `None`s omitted): the shape every existing log, collector
    /// and verifier expects.
    fn old_shape(record: &DecisionRecord) -> Value {
        let mut value = json!({
            "decision_id": record.decision_id,
            "source": record.extension.get("source").unwrap(),
            "app": record.app,
            "originator": record.originator,
            "originator_auth": record.extension.get("originator_auth").unwrap(),
            "operation": record.operation,
            "target": record.target,
            "effect": record.effect,
            "reason": record.reason,
            "enforced": record.enforced,
            "request_time": record.request_time,
        });
        let map = value.as_object_mut().unwrap();
        if let Some(deny) = &record.would_deny {
            map.insert("would_deny".into(), json!(deny));
        }
        if let Some(label) = &record.module {
            map.insert("module".into(), serde_json::to_value(label).unwrap());
        }
        if let Some(subject) = &record.subject {
            map.insert("subject".into(), json!(subject));
        }
        if let Some(cut) = &record.truncated {
            map.insert("truncated".into(), json!(cut));
        }
        value
    }

    #[test]
    fn the_core_record_encodes_as_the_gateway_record_did() {
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
            let fast = CanonicalJson::from_sorted(record).expect("written in canonical order");
            assert_eq!(
                fast.as_str(),
                canonical_json(&old_shape(record)),
                "{record:?}"
            );
            assert_eq!(CanonicalJson::of(record), fast);
        }
        // Pinned bytes: a change here changes every audit file the gateway writes.
        assert_eq!(
            CanonicalJson::of(&record("")).as_str(),
            r#"{"app":"app","decision_id":"d-","effect":"deny","enforced":true,"operation":"retrieve","originator":"CAE","originator_auth":"claimed","reason":"no privilege ","request_time":1718000000,"source":"decide","target":"/cse-in/"}"#
        );
    }

    #[test]
    fn typed_audit_encoding_is_canonical_json() {
        let text = CanonicalJson::of(&full(AWKWARD));
        let value: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
        assert_eq!(value["module"]["name"], format!("acp{AWKWARD}"));
        assert_eq!(value["subject"], format!("subject {AWKWARD}"));
        assert!(text.as_str().starts_with(r#"{"app":"#), "{text}");
        assert!(
            text.as_str()
                .contains(r#""module":{"kind":"authenticator","name":"#),
            "{text}"
        );
        let none = CanonicalJson::of(&record(""));
        for absent in ["module", "subject", "would_deny"] {
            assert!(!none.as_str().contains(absent), "{absent} omitted: {none}");
        }
    }

    #[test]
    fn overlong_fields_are_cut_at_a_character_boundary_with_the_hash_of_the_original() {
        let long = "é".repeat(FIELD_LIMIT); // 2 bytes each: cut inside a character
        let mut big = full(&long);
        big.reason = "r".repeat(FIELD_LIMIT); // exactly at the limit: kept whole
        let cut = big.clone().bounded(FIELD_LIMIT);
        for value in [&cut.originator, &cut.target, cut.subject.as_ref().unwrap()] {
            assert!(
                value.len() <= FIELD_LIMIT && value.len() > FIELD_LIMIT - 4,
                "{}",
                value.len()
            );
        }
        let hashes = cut.truncated.clone().unwrap();
        assert_eq!(
            hashes.keys().copied().collect::<Vec<_>>(),
            ["originator", "subject", "target", "would_deny"]
        );
        assert_eq!(
            hashes["originator"],
            hex::encode(Sha256::digest(big.originator.as_bytes()))
        );
        assert_eq!(cut.reason, big.reason);
        // Cutting again (tighter) keeps the hash of the original, not of the first cut.
        let tighter = cut.clone().tightly_bounded();
        assert_eq!(
            tighter.truncated.as_ref().unwrap()["originator"],
            hashes["originator"]
        );
        assert!(tighter.reason.len() <= FIELD_LIMIT_ESCAPED);
        // The typed encoding still matches the old shape, `truncated` included.
        assert_eq!(
            CanonicalJson::of(&cut).as_str(),
            canonical_json(&old_shape(&cut))
        );
        let untouched = record("short").bounded(FIELD_LIMIT);
        assert!(untouched.truncated.is_none());
        assert!(!CanonicalJson::of(&untouched).as_str().contains("truncated"));
    }
}
