//! The decision record and the audit sink, for every embedder (SER-016: every decision is
//! on record before it takes effect).
//!
//! An embedder installs an [`AuditSink`] with [`Runtime::set_audit_sink`]; from then on every
//! decision the runtime returns, through [`Runtime::is_authorized`] or the privacy split's
//! [`Runtime::evaluate`] (its authentication sandbox included), was handed to the sink first
//! as one [`DecisionRecord`]. A sink that cannot record turns the decision into a deny naming
//! the failure ([`OnAuditFailure::Deny`], the default), so no permit is ever returned that is
//! not on record.
//!
//! The record carries what the plugins saw: the originator's pseudonym unless the
//! application recorded consent (SER-011/015/018/025), the same for an authenticated subject.
//! Fields a client or plugin controls are bounded ([`FIELD_LIMIT`]): an overlong one is cut
//! and the record keeps the SHA-256 of the original, so a large request can never make its
//! record unwritable. What only the embedder knows (the gateway's `source` and
//! `originator_auth`) travels in the record's [`RecordExtension`]: one record type, encoded
//! the same way everywhere.
//!
//! [`Runtime::set_audit_sink`]: crate::Runtime::set_audit_sink
//! [`Runtime::is_authorized`]: crate::Runtime::is_authorized
//! [`Runtime::evaluate`]: crate::Runtime::evaluate

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::ser::{Serialize, SerializeMap, Serializer};
use sha2::{Digest, Sha256};

use crate::pipeline::{Decision, Effect};
use crate::request::AccessRequest;
use crate::sandbox::PluginLabel;

/// The longest value (bytes) a record keeps of a field a client, plugin or embedder controls
/// (originator, target, reason, would_deny, subject, extension values); longer ones are cut
/// at a character boundary and their hash kept (SER-016: a record is never dropped for its
/// size).
pub const FIELD_LIMIT: usize = 1024;

/// The cut [`DecisionRecord::tightly_bounded`] uses, for a log whose entry limit even a
/// [`FIELD_LIMIT`]-bounded record exceeds (control characters escape to six bytes each).
pub const FIELD_LIMIT_ESCAPED: usize = 128;

/// The record's own keys: an [`ExtensionKey`] must not be one of them.
const CORE_KEYS: [&str; 13] = [
    "app",
    "decision_id",
    "effect",
    "enforced",
    "module",
    "operation",
    "originator",
    "reason",
    "request_time",
    "subject",
    "target",
    "truncated",
    "would_deny",
];

/// The name of a field an embedder adds to every record ([`RecordExtension`]): lowercase
/// ASCII letters, digits and `_`, at most 64 bytes, and not a key of [`DecisionRecord`].
/// Checked by a `const fn`, so a key defined as a `const` that breaks the rule does not
/// compile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExtensionKey(&'static str);

impl ExtensionKey {
    /// The key `name`. Panics (at compile time in a `const`) when `name` breaks the rule.
    pub const fn new(name: &'static str) -> ExtensionKey {
        match ExtensionKey::check(name) {
            Ok(key) => key,
            Err(_) => panic!("an extension key is 1..=64 of [a-z0-9_] and not a record key"),
        }
    }

    /// The key `name`, or why it cannot be one.
    pub const fn check(name: &'static str) -> Result<ExtensionKey, ExtensionKeyError> {
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() > 64 {
            return Err(ExtensionKeyError::Length);
        }
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if !(b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
                return Err(ExtensionKeyError::Character);
            }
            i += 1;
        }
        let mut k = 0;
        while k < CORE_KEYS.len() {
            if const_eq(CORE_KEYS[k].as_bytes(), bytes) {
                return Err(ExtensionKeyError::Reserved);
            }
            k += 1;
        }
        Ok(ExtensionKey(name))
    }

    /// The key as written.
    pub const fn as_str(self) -> &'static str {
        self.0
    }
}

const fn const_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Why a name cannot be an [`ExtensionKey`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExtensionKeyError {
    /// Empty, or longer than 64 bytes.
    #[error("an extension key has 1 to 64 bytes")]
    Length,
    /// A byte other than `a-z`, `0-9`, `_` (so keys never need escaping and sort as written).
    #[error("an extension key is made of a-z, 0-9 and _")]
    Character,
    /// One of the record's own keys: the two would collide in the encoded record.
    #[error("an extension key must not be one of the decision record's own keys")]
    Reserved,
}

/// Fields an embedder adds to every record it makes, beside the decision's own (the gateway:
/// `source`, `decide` or `proxy`, and `originator_auth`, how the originator was established).
/// Kept sorted by key, one value per key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordExtension {
    fields: Vec<(ExtensionKey, Cow<'static, str>)>,
}

impl RecordExtension {
    /// No fields.
    pub fn new() -> RecordExtension {
        RecordExtension::default()
    }

    /// Sets `key` to `value`, replacing an earlier value of `key`.
    pub fn set(&mut self, key: ExtensionKey, value: impl Into<Cow<'static, str>>) {
        let value = value.into();
        match self.fields.binary_search_by(|(k, _)| k.0.cmp(key.0)) {
            Ok(at) => self.fields[at].1 = value,
            Err(at) => self.fields.insert(at, (key, value)),
        }
    }

    /// This extension with `key` set to `value`.
    pub fn with(mut self, key: ExtensionKey, value: impl Into<Cow<'static, str>>) -> Self {
        self.set(key, value);
        self
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .binary_search_by(|(k, _)| k.0.cmp(key))
            .ok()
            .map(|at| self.fields[at].1.as_ref())
    }

    /// The fields, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.fields.iter().map(|(k, v)| (k.0, v.as_ref()))
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

/// One decision, as an audit trail records it (SER-016).
///
/// It serializes (serde) as one JSON object whose keys, the extension's among them, come in
/// ascending byte order at every level, optional fields omitted when absent: the order
/// canonical JSON asks for, so an audit log can encode it without sorting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecisionRecord {
    /// The decision's id, as the embedder's answer carries it.
    pub decision_id: String,
    /// The application that decided.
    pub app: String,
    /// The originator as the app's plugins saw it (a pseudonym unless consent).
    pub originator: String,
    /// The oneM2M operation.
    pub operation: &'static str,
    /// The target path, decoded.
    pub target: String,
    /// Permit or deny.
    pub effect: Effect,
    /// Why, in words.
    pub reason: String,
    /// False when the app runs in monitor mode (the deny was not enforced).
    pub enforced: bool,
    /// In monitor mode, the deny that was not enforced.
    pub would_deny: Option<String>,
    /// The module that decided (name, kind, version, digest).
    pub module: Option<PluginLabel>,
    /// The authenticated subject (a pseudonym unless consent), when a credential was accepted.
    pub subject: Option<String>,
    /// Seconds since the Unix epoch, as the plugins saw it.
    pub request_time: u64,
    /// What the embedder adds (see [`RecordExtension`]).
    pub extension: RecordExtension,
    /// The fields cut to the limit, each with the SHA-256 (hex) of its whole value; `None`
    /// when nothing was cut.
    pub truncated: Option<BTreeMap<&'static str, String>>,
}

impl DecisionRecord {
    /// The record of `decision` on `view` (the request as the plugins saw it), bounded to
    /// [`FIELD_LIMIT`]. A request without a time is recorded at the current second.
    pub fn new(
        decision_id: impl Into<String>,
        view: &AccessRequest,
        decision: &Decision,
        subject: Option<String>,
        extension: RecordExtension,
    ) -> DecisionRecord {
        DecisionRecord {
            decision_id: decision_id.into(),
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
            request_time: view.request_time.unwrap_or_else(crate::request::now_unix),
            extension,
            truncated: None,
        }
        .bounded(FIELD_LIMIT)
    }

    /// This record with every client-, plugin- or embedder-controlled field cut to `limit`
    /// bytes (the hashes of cut values in `truncated`; a value cut before keeps its first
    /// hash).
    pub fn bounded(mut self, limit: usize) -> DecisionRecord {
        let t = &mut self.truncated;
        bound_field(&mut self.originator, "originator", limit, t);
        bound_field(&mut self.target, "target", limit, t);
        bound_field(&mut self.reason, "reason", limit, t);
        if let Some(value) = &mut self.would_deny {
            bound_field(value, "would_deny", limit, t);
        }
        if let Some(value) = &mut self.subject {
            bound_field(value, "subject", limit, t);
        }
        for (key, value) in &mut self.extension.fields {
            if value.len() > limit {
                let mut owned = std::mem::take(value).into_owned();
                bound_field(&mut owned, key.0, limit, t);
                *value = Cow::Owned(owned);
            }
        }
        self
    }

    /// [`DecisionRecord::bounded`] to [`FIELD_LIMIT_ESCAPED`]: for a log whose entry limit the
    /// record still exceeds.
    pub fn tightly_bounded(self) -> DecisionRecord {
        self.bounded(FIELD_LIMIT_ESCAPED)
    }
}

/// Cuts `value` to at most `limit` bytes at a character boundary; when it cut, records the
/// SHA-256 (hex) of the whole value under `key` in `truncated` (an earlier hash of `key`
/// stays). The rule of [`DecisionRecord::bounded`], for other records an embedder keeps
/// (the gateway's admin records).
pub fn bound_field(
    value: &mut String,
    key: &'static str,
    limit: usize,
    truncated: &mut Option<BTreeMap<&'static str, String>>,
) {
    if value.len() <= limit {
        return;
    }
    let hash = hex::encode(Sha256::digest(value.as_bytes()));
    value.truncate(value.floor_char_boundary(limit));
    truncated
        .get_or_insert_with(BTreeMap::new)
        .entry(key)
        .or_insert(hash);
}

impl Serialize for DecisionRecord {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Destructured without `..`: a new field fails to compile here instead of silently
        // missing from the audit trail.
        let DecisionRecord {
            decision_id,
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
            extension,
            truncated,
        } = self;
        let mut map = serializer.serialize_map(None)?;
        let mut extra = extension.fields.iter().peekable();
        // Each core key in ascending order, the extension's keys merged in before the first
        // core key they sort below.
        macro_rules! entry {
            ($key:literal, $value:expr) => {{
                while let Some((key, value)) = extra.next_if(|(key, _)| key.0 < $key) {
                    map.serialize_entry(key.0, value.as_ref())?;
                }
                map.serialize_entry($key, $value)?;
            }};
        }
        entry!("app", app);
        entry!("decision_id", decision_id);
        entry!("effect", effect);
        entry!("enforced", enforced);
        if let Some(label) = module {
            entry!("module", &SortedLabel(label));
        }
        entry!("operation", operation);
        entry!("originator", originator);
        entry!("reason", reason);
        entry!("request_time", request_time);
        if let Some(subject) = subject {
            entry!("subject", subject);
        }
        entry!("target", target);
        if let Some(cut) = truncated {
            entry!("truncated", cut);
        }
        if let Some(deny) = would_deny {
            entry!("would_deny", deny);
        }
        for (key, value) in extra {
            map.serialize_entry(key.0, value.as_ref())?;
        }
        map.end()
    }
}

/// A [`PluginLabel`] with its keys in ascending order.
struct SortedLabel<'a>(&'a PluginLabel);

impl Serialize for SortedLabel<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let PluginLabel {
            name,
            kind,
            version,
            sha256,
        } = self.0;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("kind", kind)?;
        map.serialize_entry("name", name)?;
        map.serialize_entry("sha256", sha256)?;
        if let Some(version) = version {
            map.serialize_entry("version", version)?;
        }
        map.end()
    }
}

/// Why a sink could not record a decision.
#[derive(Debug, thiserror::Error)]
#[error("the audit sink could not record the decision")]
pub struct AuditFailure {
    #[source]
    source: Box<dyn StdError + Send + Sync>,
}

impl AuditFailure {
    /// A failure caused by `source` (a full disk, a closed log, a refused write).
    pub fn new(source: impl Into<Box<dyn StdError + Send + Sync>>) -> AuditFailure {
        AuditFailure {
            source: source.into(),
        }
    }
}

/// Where an embedder's decisions are recorded (SER-016), installed with
/// [`Runtime::set_audit_sink`](crate::Runtime::set_audit_sink).
///
/// [`AuditSink::record`] runs on the deciding thread, after the plugins and before the
/// decision is returned: its time is added to every decision. It must return `Ok` only once
/// the record is as durable as the embedder needs (the audit log of `palisade-capi` returns
/// once the entry is written), and `Err` when it cannot say so; it may be called from many
/// threads at once.
pub trait AuditSink: Send + Sync {
    /// Records one decision; `Err` when it could not be recorded.
    fn record(&self, record: &DecisionRecord) -> Result<(), AuditFailure>;
}

/// What the runtime returns for a decision its sink could not record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnAuditFailure {
    /// A deny whose reason names the failure, whatever was decided (the default; SER-016,
    /// fail closed: no permit that is not on record).
    #[default]
    Deny,
    /// The decision as made, unrecorded: logged (`tracing` error) and counted in
    /// [`Runtime::unrecorded_decisions`](crate::Runtime::unrecorded_decisions). For an
    /// embedder that prefers availability to a complete trail, and records that choice.
    AnswerUnrecorded,
}

/// Decision ids: a random 64-bit boot nonce and a counter, 32 hex digits. Unique across
/// restarts (the nonce), ordered within one run (the counter), never reused.
#[derive(Debug)]
pub struct DecisionIds {
    boot: u64,
    next: AtomicU64,
}

impl Default for DecisionIds {
    fn default() -> Self {
        DecisionIds::new()
    }
}

impl DecisionIds {
    /// A fresh sequence (a new boot nonce).
    pub fn new() -> DecisionIds {
        DecisionIds {
            boot: rand::random(),
            next: AtomicU64::new(1),
        }
    }

    /// The next id.
    pub fn next_id(&self) -> String {
        // Hex by hand: `format!` was a visible share of a decision's CPU (perf).
        let sequence = self.next.fetch_add(1, Ordering::Relaxed);
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.boot.to_be_bytes());
        id[8..].copy_from_slice(&sequence.to_be_bytes());
        hex::encode(id)
    }
}

/// The sink a runtime hands its decisions to, with its policy.
pub(crate) struct Recorder {
    sink: Arc<dyn AuditSink>,
    on_failure: OnAuditFailure,
    ids: DecisionIds,
    pub(crate) unrecorded: AtomicU64,
}

impl Recorder {
    pub(crate) fn new(sink: Arc<dyn AuditSink>, on_failure: OnAuditFailure) -> Recorder {
        Recorder {
            sink,
            on_failure,
            ids: DecisionIds::new(),
            unrecorded: AtomicU64::new(0),
        }
    }

    /// `decision` once its record (of `view`, as the plugins saw it) is with the sink, or the
    /// deny that replaces it when it is not.
    pub(crate) fn settle(
        &self,
        mut decision: Decision,
        view: &AccessRequest,
        subject: Option<String>,
    ) -> Decision {
        let id = self.ids.next_id();
        let record =
            DecisionRecord::new(id.clone(), view, &decision, subject, RecordExtension::new());
        decision.decision_id = Some(id);
        let Err(failure) = self.sink.record(&record) else {
            return decision;
        };
        let cause = palisade_types::Chain(&failure).to_string();
        if self.on_failure == OnAuditFailure::AnswerUnrecorded {
            self.unrecorded.fetch_add(1, Ordering::Relaxed);
            tracing::error!(app = %decision.app, decision_id = ?decision.decision_id, error = %cause, "decision answered without its audit record");
            return decision;
        }
        tracing::error!(app = %decision.app, decision_id = ?decision.decision_id, error = %cause, "decision denied: it cannot be recorded");
        decision.reason = format!(
            "denied because the decision could not be recorded (SER-016): {cause}; it was {}: {}",
            match decision.effect {
                Effect::Permit => "permit",
                Effect::Deny => "deny",
            },
            decision.reason
        );
        decision.effect = Effect::Deny;
        decision.enforced = true;
        decision.would_deny = None;
        decision.decided_by = None;
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_keys_are_checked() {
        assert_eq!(
            ExtensionKey::check("source").map(|k| k.as_str()),
            Ok("source")
        );
        assert_eq!(
            ExtensionKey::check("reason"),
            Err(ExtensionKeyError::Reserved)
        );
        assert_eq!(ExtensionKey::check(""), Err(ExtensionKeyError::Length));
        assert_eq!(
            ExtensionKey::check("Source"),
            Err(ExtensionKeyError::Character)
        );
        assert_eq!(
            ExtensionKey::check("x\"y"),
            Err(ExtensionKeyError::Character)
        );
        let long: &'static str = "a".repeat(65).leak();
        assert_eq!(ExtensionKey::check(long), Err(ExtensionKeyError::Length));
    }

    #[test]
    fn extension_fields_stay_sorted_and_unique() {
        const B: ExtensionKey = ExtensionKey::new("b");
        const A: ExtensionKey = ExtensionKey::new("a");
        let mut extension = RecordExtension::new().with(B, "1").with(A, "2");
        extension.set(B, "3");
        assert_eq!(
            extension.iter().collect::<Vec<_>>(),
            [("a", "2"), ("b", "3")]
        );
        assert_eq!(extension.get("b"), Some("3"));
        assert_eq!(extension.get("c"), None);
    }
}
