//! The gateway side: ships the audit log, as it is on disk, to the collector (SER-016 across
//! a fleet).
//!
//! What it ships is the log's own lines, read from the rotated set (`audit.log.000001`, ...,
//! `audit.log`) in chain order: nothing is re-encoded, so the collector checks the very
//! bytes the gateway signed, and nothing is left out (a decision that was dropped under
//! overload is the signed `gap` entry the log wrote in its place). Only whole lines are
//! read, so a write in progress or a torn final line is never shipped.
//!
//! Where it stands is kept in a cursor file (`ship.cursor`: the next seq, the file and byte
//! offset of it, the last shipped hash), rewritten by temp file + fsync + rename after each
//! acknowledged batch. At start and after every failure the shipper also asks the collector
//! where the gateway's chain stands (`GET /v1/head`) and starts from there, so a crash
//! between an acknowledgement and the cursor write does not ship anything twice; the
//! collector stores a re-sent entry once anyway. A cursor that no longer fits the files (the
//! log was moved, rotated away or edited) is not trusted: the position is found again by
//! seq.
//!
//! While the collector is unreachable the shipper retries with back-off (doubling from
//! `poll_interval` to `retry_max`) and the unshipped part of the log grows on disk. It is
//! measured every `poll_interval`; above `max_backlog_bytes` the shipper is backlogged
//! ([`ShipStatus`], in `/health` and the metrics) and, with `on_backlog_full = "deny"` (the
//! default), [`ShipGuard`] refuses new decisions until the collector has caught up (SER-016:
//! no decision without its record on its way to the collector, and a bounded disk).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use palisade_audit::log_files;
use palisade_tls::{client_config, ClientTlsError, ClientTlsFiles, Connector};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use palisade_audit::Kind;
use palisade_gateway::{
    AuditHealth, AuditRefusal, AuditSink, AuditTicket, DecisionRecord, SinkFuture,
};

use crate::config::{OnBacklogFull, ShipConfig};
use crate::store::{GatewayHead, IngestOutcome};

/// Why a shipping round failed (it is retried).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShipError {
    /// The TLS files cannot be used (not retried: a configuration error).
    #[error("the shipper's TLS files cannot be used")]
    Tls(#[from] ClientTlsError),
    /// Reading the log or writing the cursor failed.
    #[error("cannot read or write {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A line is longer than `batch_bytes`.
    #[error("a line at {path}:{offset} is longer than batch_bytes ({limit})")]
    LineTooLong {
        /// The file.
        path: PathBuf,
        /// Where it starts.
        offset: u64,
        /// The bound.
        limit: usize,
    },
    /// The collector expects an entry this log does not hold (it has more than the disk:
    /// the log lost entries after shipping them, or is another gateway's).
    #[error("the collector expects seq {0}, which is not in the log on disk")]
    NotInLog(u64),
    /// The collector could not be reached or did not answer in time.
    #[error("collector unreachable: {0}")]
    Unreachable(String),
    /// The collector refused (status and its message).
    #[error("collector refused ({status}): {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// Its error message.
        message: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ShipError + '_ {
    move |source| ShipError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where the shipper stands, as persisted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cursor {
    /// The seq of the next entry to ship.
    pub next_seq: u64,
    /// The file it is in, by position in the set's chain order (rotated files first; a
    /// rotation keeps positions, it appends a new active file).
    pub file_index: usize,
    /// Its byte offset in that file.
    pub offset: u64,
    /// The hash of the last entry shipped (hex), which ends the bytes before `offset`.
    pub last_hash: Option<String>,
}

impl Cursor {
    /// Reads a cursor file; a missing one is the start of the log.
    pub fn load(path: &Path) -> Result<Option<Cursor>, ShipError> {
        match std::fs::read(path) {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(path)(e)),
        }
    }

    /// Writes the cursor whole or not at all: temp file, fsync, rename, fsync of the dir.
    pub fn store(&self, path: &Path) -> Result<(), ShipError> {
        use std::io::Write;
        let tmp = path.with_extension("tmp");
        let mut file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        let text = serde_json::to_vec(self).unwrap_or_default();
        file.write_all(&text).map_err(io(&tmp))?;
        file.sync_data().map_err(io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io(path))?;
        if let Some(dir) = path.parent() {
            if let Ok(dir) = std::fs::File::open(dir) {
                let _ = dir.sync_all();
            }
        }
        Ok(())
    }
}

/// What the shipper is doing, for `/health` and metrics (SER-016 across a fleet: an
/// operator sees how far behind each gateway's record at the collector is, and why).
#[derive(Debug, Default)]
pub struct ShipStatus {
    next_seq: AtomicU64,
    shipped: AtomicU64,
    duplicates: AtomicU64,
    batches: AtomicU64,
    failures: AtomicU64,
    consecutive_failures: AtomicU64,
    backlog_bytes: AtomicU64,
    pending_entries: AtomicU64,
    backlogged: AtomicBool,
    last_success_ms: AtomicU64,
    last_error_ms: AtomicU64,
    refusals: AtomicU64,
    last_error: Mutex<Option<String>>,
    collector: String,
    max_backlog_bytes: u64,
    on_backlog_full: OnBacklogFull,
}

/// A copy of [`ShipStatus`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShipSnapshot {
    /// The collector shipped to.
    pub collector: String,
    /// The seq the collector has acknowledged up to (exclusive).
    pub next_seq: u64,
    /// The last seq the collector acknowledged; `None` before the first.
    pub last_shipped_seq: Option<u64>,
    /// Entries the collector stored from this shipper since it started.
    pub shipped: u64,
    /// Entries the collector already had (re-sent); zero unless a cursor was lost.
    pub duplicates: u64,
    /// Batches acknowledged.
    pub batches: u64,
    /// Rounds that failed (and were retried), since start.
    pub failures: u64,
    /// Rounds that failed since the last success.
    pub consecutive_failures: u64,
    /// Bytes of the log on disk not yet acknowledged.
    pub backlog_bytes: u64,
    /// Entries on disk not yet acknowledged.
    pub pending_entries: u64,
    /// Whether `backlog_bytes` is over `max_backlog_bytes`.
    pub backlogged: bool,
    /// The bound.
    pub max_backlog_bytes: u64,
    /// What the gateway does while backlogged.
    pub on_backlog_full: OnBacklogFull,
    /// Whether decisions are refused now (backlogged with `on_backlog_full = "deny"`).
    pub refusing: bool,
    /// Decisions refused because of the backlog, since start.
    pub refusals: u64,
    /// When the collector last acknowledged a batch or had everything (unix ms).
    pub last_success_ms: Option<u64>,
    /// The last failure with its causes, cleared by the next success.
    pub last_error: Option<String>,
    /// When it happened (unix ms).
    pub last_error_ms: Option<u64>,
}

impl ShipStatus {
    fn new(config: &ShipConfig) -> ShipStatus {
        ShipStatus {
            collector: config.collector.to_string(),
            max_backlog_bytes: config.max_backlog_bytes,
            on_backlog_full: config.on_backlog_full,
            ..ShipStatus::default()
        }
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> ShipSnapshot {
        let next_seq = self.next_seq.load(Ordering::Relaxed);
        let ms = |a: &AtomicU64| Some(a.load(Ordering::Relaxed)).filter(|&t| t > 0);
        let backlogged = self.backlogged.load(Ordering::Relaxed);
        ShipSnapshot {
            collector: self.collector.clone(),
            next_seq,
            last_shipped_seq: next_seq.checked_sub(1),
            shipped: self.shipped.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            consecutive_failures: self.consecutive_failures.load(Ordering::Relaxed),
            backlog_bytes: self.backlog_bytes.load(Ordering::Relaxed),
            pending_entries: self.pending_entries.load(Ordering::Relaxed),
            backlogged,
            max_backlog_bytes: self.max_backlog_bytes,
            on_backlog_full: self.on_backlog_full,
            refusing: self.refusing(),
            refusals: self.refusals.load(Ordering::Relaxed),
            last_success_ms: ms(&self.last_success_ms),
            last_error: self.last_error.lock().map(|e| e.clone()).unwrap_or(None),
            last_error_ms: ms(&self.last_error_ms),
        }
    }

    /// Whether new decisions must be refused now: the backlog is over the bound and the
    /// operator chose `on_backlog_full = "deny"`.
    pub fn refusing(&self) -> bool {
        self.on_backlog_full == OnBacklogFull::Deny && self.backlogged.load(Ordering::Relaxed)
    }

    fn succeeded(&self) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.last_success_ms
            .store(palisade_types::now_unix_ms(), Ordering::Relaxed);
        if let Ok(mut last) = self.last_error.lock() {
            *last = None;
        }
    }

    fn failed(&self, error: &ShipError) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.consecutive_failures.fetch_add(1, Ordering::Relaxed);
        self.last_error_ms
            .store(palisade_types::now_unix_ms(), Ordering::Relaxed);
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(palisade_types::Chain(error).to_string());
        }
    }

    /// Why decisions are refused, for the 503 answer and `/health`.
    fn refusal_detail(&self) -> String {
        let s = self.snapshot();
        let why = s.last_error.map_or_else(
            || "it is not keeping up".to_owned(),
            |e| format!("last error: {e}"),
        );
        format!(
            "{} bytes ({} entries) of the audit log are not shipped to the collector {}, over [audit.ship] max_backlog_bytes = {} (on_backlog_full = \"deny\"): decisions are refused until it catches up ({why})",
            s.backlog_bytes, s.pending_entries, s.collector, s.max_backlog_bytes
        )
    }

    /// The shipper's part of `/health`.
    pub fn health_json(&self) -> serde_json::Value {
        serde_json::to_value(self.snapshot()).unwrap_or_default()
    }

    /// The shipper's Prometheus lines (`palisade_audit_ship_*`).
    pub fn metrics_text(&self) -> String {
        use std::fmt::Write as _;
        let s = self.snapshot();
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP palisade_audit_ship_{name} {help}\n# TYPE palisade_audit_ship_{name} {kind}\npalisade_audit_ship_{name} {value}"
            );
        };
        family(
            "next_seq",
            "gauge",
            "The seq the collector expects next from this gateway (acknowledged up to, exclusive).",
            s.next_seq,
        );
        family(
            "entries_total",
            "counter",
            "Audit entries the collector stored from this gateway since start.",
            s.shipped,
        );
        family(
            "duplicates_total",
            "counter",
            "Audit entries re-sent that the collector already had.",
            s.duplicates,
        );
        family(
            "batches_total",
            "counter",
            "Batches the collector acknowledged.",
            s.batches,
        );
        family(
            "failures_total",
            "counter",
            "Shipping rounds that failed (retried).",
            s.failures,
        );
        family(
            "consecutive_failures",
            "gauge",
            "Shipping rounds failed since the last success.",
            s.consecutive_failures,
        );
        family(
            "backlog_bytes",
            "gauge",
            "Bytes of the audit log on disk the collector has not acknowledged.",
            s.backlog_bytes,
        );
        family(
            "pending_entries",
            "gauge",
            "Audit entries on disk the collector has not acknowledged.",
            s.pending_entries,
        );
        family(
            "max_backlog_bytes",
            "gauge",
            "The bound on the unshipped audit log ([audit.ship] max_backlog_bytes).",
            s.max_backlog_bytes,
        );
        family(
            "backlogged",
            "gauge",
            "1 while the unshipped audit log is over its bound.",
            u64::from(s.backlogged),
        );
        family(
            "refusing",
            "gauge",
            "1 while decisions are refused for the backlog (on_backlog_full = \"deny\").",
            u64::from(s.refusing),
        );
        family(
            "refusals_total",
            "counter",
            "Decisions refused because the unshipped audit log was over its bound.",
            s.refusals,
        );
        family(
            "last_success_seconds",
            "gauge",
            "When the collector last acknowledged this gateway (unix seconds; 0 never).",
            s.last_success_ms.unwrap_or(0) / 1000,
        );
        out
    }
}

/// The gateway's audit sink with the shipper's bound in front of it (`on_backlog_full =
/// "deny"`, SER-016): while more of the log than `max_backlog_bytes` is unshipped, a new
/// decision is refused before it is written (the gateway answers 503 `audit-unavailable`,
/// reason `ship-backlog`), so the unshipped log stops growing with decisions and every
/// decision that was answered is on its way to the collector. Admin and integrity events
/// are still written (they are few and never dropped). `/health` and the metrics carry
/// the shipper's status.
pub struct ShipGuard {
    inner: Arc<dyn AuditSink>,
    status: Arc<ShipStatus>,
}

/// The [`AuditRefusal::reason`] of a decision refused for the backlog.
pub const SHIP_BACKLOG: &str = "ship-backlog";

impl ShipGuard {
    /// `inner` (the gateway's audit log) guarded by the shipper whose status is `status`.
    pub fn new(inner: Arc<dyn AuditSink>, status: Arc<ShipStatus>) -> ShipGuard {
        ShipGuard { inner, status }
    }
}

impl AuditSink for ShipGuard {
    fn decision(&self, record: &DecisionRecord) -> AuditTicket {
        if self.status.refusing() {
            return AuditTicket::Refused(AuditRefusal {
                reason: SHIP_BACKLOG,
                detail: self.status.refusal_detail(),
            });
        }
        self.inner.decision(record)
    }

    fn confirm(&self, ticket: AuditTicket) -> SinkFuture<'_> {
        match ticket {
            // Ours: refused whatever the log's own `on_failure` says (that policy is about
            // the disk failing, not the collector).
            AuditTicket::Refused(refusal) if refusal.reason == SHIP_BACKLOG => {
                self.status.refusals.fetch_add(1, Ordering::Relaxed);
                Box::pin(async move { Err(refusal) })
            }
            ticket => self.inner.confirm(ticket),
        }
    }

    fn event(&self, kind: Kind, payload: serde_json::Value) {
        self.inner.event(kind, payload)
    }

    fn event_recorded(&self, kind: Kind, payload: serde_json::Value) -> SinkFuture<'_> {
        self.inner.event_recorded(kind, payload)
    }

    fn health(&self) -> Option<AuditHealth> {
        let mut health = self.inner.health().unwrap_or(AuditHealth {
            ok: true,
            reason: None,
            on_failure: Default::default(),
            ship: None,
        });
        if self.status.refusing() && health.ok {
            health.ok = false;
            health.reason = Some(self.status.refusal_detail());
        }
        health.ship = Some(self.status.health_json());
        Some(health)
    }

    fn metrics_text(&self) -> String {
        self.inner.metrics_text() + &self.status.metrics_text()
    }
}

/// One round's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    /// A batch of this many entries was acknowledged (new or already stored).
    Shipped(u64),
    /// Everything on disk is shipped.
    Idle,
}

/// A place in the log set: the file's index in chain order and a byte offset in it.
type Position = (usize, u64);

/// The largest answer read from the collector.
const MAX_ANSWER: usize = 64 << 10;

/// Ships one gateway's audit log.
pub struct Shipper {
    config: ShipConfig,
    client: Client<Connector, Full<Bytes>>,
    cursor: Cursor,
    /// Ask the collector where it stands before the next batch.
    resync: bool,
    status: Arc<ShipStatus>,
}

impl Shipper {
    /// A shipper from its configuration; reads the cursor (no network yet).
    pub fn new(config: ShipConfig) -> Result<Shipper, ShipError> {
        let tls = client_config(&ClientTlsFiles::new(
            Some(config.ca_file.clone()),
            Some(config.cert_file.clone()),
            Some(config.key_file.clone()),
        ))?;
        let client = palisade_tls::http_client(palisade_tls::DEFAULT_CONNECT_TIMEOUT, Some(tls));
        let cursor = Cursor::load(&config.cursor_file)?.unwrap_or_default();
        let status = Arc::new(ShipStatus::new(&config));
        status.next_seq.store(cursor.next_seq, Ordering::Relaxed);
        Ok(Shipper {
            config,
            client,
            cursor,
            resync: true,
            status,
        })
    }

    /// The live status, shared.
    pub fn status(&self) -> Arc<ShipStatus> {
        self.status.clone()
    }

    /// The cursor as it stands.
    pub fn cursor(&self) -> &Cursor {
        &self.cursor
    }

    /// Ships until `shutdown` turns true, retrying failures with back-off. The backlog is
    /// measured every `poll_interval` meanwhile, also while the collector is unreachable:
    /// the bound holds (and is released) without the collector's help.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = self.config.poll_interval;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let wait = match self.round().await {
                Ok(Round::Shipped(_)) => {
                    backoff = self.config.poll_interval;
                    continue;
                }
                Ok(Round::Idle) => {
                    backoff = self.config.poll_interval;
                    self.config.poll_interval
                }
                Err(e) => {
                    tracing::warn!(
                        "audit shipping: {}; retrying in {backoff:?}",
                        palisade_types::Chain(&e)
                    );
                    self.status.failed(&e);
                    self.resync = true;
                    let wait = backoff;
                    backoff = (backoff * 2).min(self.config.retry_max);
                    wait
                }
            };
            let until = tokio::time::Instant::now() + wait;
            loop {
                let now = tokio::time::Instant::now();
                if now >= until {
                    break;
                }
                let slice = (until - now).min(self.config.poll_interval);
                tokio::select! {
                    _ = tokio::time::sleep(slice) => {}
                    _ = shutdown.changed() => {}
                }
                if *shutdown.borrow() {
                    return;
                }
                self.measure_backlog();
            }
        }
    }

    /// Measures the unshipped part of the log on disk now.
    pub fn measure_backlog(&self) {
        if let Ok(files) = log_files(&self.config.audit_dir, &self.config.file_name) {
            self.update_backlog(&files);
        }
    }

    /// Ships at most one batch.
    pub async fn round(&mut self) -> Result<Round, ShipError> {
        self.measure_backlog();
        if self.resync {
            let head: Option<GatewayHead> = self.call(Method::GET, "/v1/head", None).await?;
            self.status.succeeded();
            let expected = head.map_or(0, |h| h.next_seq);
            if expected != self.cursor.next_seq || !self.cursor_fits()? {
                self.cursor = self.locate(expected)?;
                self.cursor.store(&self.config.cursor_file)?;
            }
            self.resync = false;
        }
        let files = match log_files(&self.config.audit_dir, &self.config.file_name) {
            Ok(files) => files,
            // No log yet: nothing to ship.
            Err(palisade_audit::VerifyError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Ok(Round::Idle)
            }
            Err(e) => {
                return Err(ShipError::Io {
                    path: self.config.audit_dir.clone(),
                    source: std::io::Error::other(e.to_string()),
                })
            }
        };
        self.update_backlog(&files);
        let Some((batch, end)) = self.read_batch(&files)? else {
            return Ok(Round::Idle);
        };
        let count = batch.iter().filter(|&&b| b == b'\n').count() as u64;
        let outcome: IngestOutcome = match self.call(Method::POST, "/v1/batches", Some(batch)).await
        {
            Ok(outcome) => outcome,
            Err(ShipError::Refused {
                status: 409,
                message,
            }) if message.contains("next_seq") => {
                // The collector stands elsewhere (it lost entries, or has more): start again
                // from what it says.
                self.resync = true;
                return Err(ShipError::Refused {
                    status: 409,
                    message,
                });
            }
            Err(e) => return Err(e),
        };
        self.cursor = Cursor {
            next_seq: outcome.next_seq,
            file_index: end.0,
            offset: end.1,
            last_hash: Some(outcome.head_hash.clone()),
        };
        self.cursor.store(&self.config.cursor_file)?;
        let s = &self.status;
        s.next_seq.store(outcome.next_seq, Ordering::Relaxed);
        s.shipped.fetch_add(outcome.stored, Ordering::Relaxed);
        s.duplicates
            .fetch_add(outcome.duplicates, Ordering::Relaxed);
        s.batches.fetch_add(1, Ordering::Relaxed);
        s.succeeded();
        self.update_backlog(&files);
        Ok(Round::Shipped(count))
    }

    fn update_backlog(&self, files: &[PathBuf]) {
        let size = |p: &PathBuf| std::fs::metadata(p).map_or(0, |m| m.len());
        let c = &self.cursor;
        let backlog: u64 = files
            .iter()
            .enumerate()
            .skip(c.file_index)
            .map(|(i, p)| {
                if i == c.file_index {
                    size(p).saturating_sub(c.offset)
                } else {
                    size(p)
                }
            })
            .sum();
        self.status.backlog_bytes.store(backlog, Ordering::Relaxed);
        let pending =
            last_seq_on_disk(files).map_or(0, |last| (last + 1).saturating_sub(c.next_seq));
        self.status
            .pending_entries
            .store(pending, Ordering::Relaxed);
        let over = backlog > self.config.max_backlog_bytes;
        let was = self.status.backlogged.swap(over, Ordering::Relaxed);
        let refuse = self.config.on_backlog_full == OnBacklogFull::Deny;
        if over && !was {
            tracing::warn!(
                "audit shipping is {backlog} bytes behind (over max_backlog_bytes = {}): the collector is not keeping up or not reachable{}",
                self.config.max_backlog_bytes,
                if refuse { "; decisions are refused until it catches up (on_backlog_full = \"deny\")" } else { "" }
            );
        } else if was && !over {
            tracing::warn!(
                "audit shipping is back under max_backlog_bytes ({backlog} bytes behind){}",
                if refuse {
                    "; decisions are served again"
                } else {
                    ""
                }
            );
        }
    }

    /// Whether the cursor's bytes before its offset end with its last hash, i.e. it still
    /// points into the same log at the same place.
    fn cursor_fits(&self) -> Result<bool, ShipError> {
        let c = &self.cursor;
        if c.offset == 0 {
            return Ok(c.file_index == 0 && c.next_seq == 0);
        }
        let Some(hash) = &c.last_hash else {
            return Ok(false);
        };
        let Ok(files) = log_files(&self.config.audit_dir, &self.config.file_name) else {
            return Ok(false);
        };
        let Some(path) = files.get(c.file_index) else {
            return Ok(false);
        };
        let tail = format!("\"{hash}\"}}\n");
        let Some(start) = c.offset.checked_sub(tail.len() as u64) else {
            return Ok(false);
        };
        let mut file = std::fs::File::open(path).map_err(io(path))?;
        file.seek(SeekFrom::Start(start)).map_err(io(path))?;
        let mut buf = vec![0; tail.len()];
        Ok(file.read_exact(&mut buf).is_ok() && buf == tail.as_bytes())
    }

    /// The position of the entry with `seq` in the files on disk (reading them from the
    /// start); the end of the log when `seq` is the one after its last entry.
    fn locate(&self, seq: u64) -> Result<Cursor, ShipError> {
        if seq == 0 {
            return Ok(Cursor::default());
        }
        let files = log_files(&self.config.audit_dir, &self.config.file_name)
            .map_err(|_| ShipError::NotInLog(seq))?;
        let mut after_last = None;
        for (index, path) in files.iter().enumerate() {
            // Line by line: an unrotated active file can be large.
            let mut reader = std::io::BufReader::new(std::fs::File::open(path).map_err(io(path))?);
            let mut line = Vec::new();
            let mut offset = 0u64;
            loop {
                line.clear();
                let read = std::io::BufRead::read_until(&mut reader, b'\n', &mut line)
                    .map_err(io(path))?;
                if read == 0 || line.last() != Some(&b'\n') {
                    break;
                }
                let value: serde_json::Value = serde_json::from_slice(&line).unwrap_or_default();
                let this = value.get("seq").and_then(|v| v.as_u64());
                if this == Some(seq) {
                    return Ok(Cursor {
                        next_seq: seq,
                        file_index: index,
                        offset,
                        last_hash: value
                            .get("prev_hash")
                            .and_then(|v| v.as_str())
                            .map(str::to_owned),
                    });
                }
                let next = match value.get("kind").and_then(|v| v.as_str()) {
                    Some("gap") => value
                        .pointer("/payload/last_seq")
                        .and_then(|v| v.as_u64())
                        .map(|l| l + 1),
                    _ => this.map(|s| s + 1),
                };
                offset += read as u64;
                let hash = value
                    .get("hash")
                    .and_then(|v| v.as_str())
                    .map(str::to_owned);
                after_last = Some((next, index, offset, hash));
            }
        }
        match after_last {
            Some((Some(next), index, offset, hash)) if next == seq => Ok(Cursor {
                next_seq: seq,
                file_index: index,
                offset,
                last_hash: hash,
            }),
            _ => Err(ShipError::NotInLog(seq)),
        }
    }

    /// The next whole lines from the cursor (at most `batch_entries` and `batch_bytes`), and
    /// the position after them; `None` when there are none yet.
    fn read_batch(&mut self, files: &[PathBuf]) -> Result<Option<(Vec<u8>, Position)>, ShipError> {
        let limit = self.config.batch_bytes;
        let (mut index, mut offset) = (self.cursor.file_index, self.cursor.offset);
        loop {
            let Some(path) = files.get(index) else {
                // Fewer files than the cursor says: the set was changed; find the place again.
                self.resync = true;
                return Ok(None);
            };
            let mut file = std::fs::File::open(path).map_err(io(path))?;
            file.seek(SeekFrom::Start(offset)).map_err(io(path))?;
            let mut buf = Vec::with_capacity(limit.min(1 << 20));
            file.by_ref()
                .take(limit as u64)
                .read_to_end(&mut buf)
                .map_err(io(path))?;
            let mut end = 0;
            let mut lines = 0;
            while lines < self.config.batch_entries {
                match buf[end..].iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        end += i + 1;
                        lines += 1;
                    }
                    None => break,
                }
            }
            if lines == 0 {
                if buf.len() == limit {
                    return Err(ShipError::LineTooLong {
                        path: path.clone(),
                        offset,
                        limit,
                    });
                }
                // A rotated file is complete: move on to the next one.
                if index + 1 < files.len() {
                    index += 1;
                    offset = 0;
                    continue;
                }
                return Ok(None);
            }
            buf.truncate(end);
            // The active file may have been rotated since the list was taken; a first line
            // that is not the expected seq means the position is stale.
            let first: serde_json::Value =
                serde_json::from_slice(&buf[..buf.iter().position(|&b| b == b'\n').unwrap_or(0)])
                    .unwrap_or_default();
            if first.get("seq").and_then(|v| v.as_u64()) != Some(self.cursor.next_seq) {
                self.resync = true;
                return Err(ShipError::Unreachable(format!(
                    "the log at {}:{offset} does not hold seq {} (moved or rotated); finding it again",
                    path.display(),
                    self.cursor.next_seq
                )));
            }
            return Ok(Some((buf, (index, offset + end as u64))));
        }
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ShipError> {
        let base = self.config.collector.to_string();
        let uri = format!("{}{path}", base.trim_end_matches('/'));
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(hyper::header::CONTENT_TYPE, "application/x-ndjson")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ShipError::Unreachable(e.to_string()))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| ShipError::Unreachable(palisade_types::Chain(&e).to_string()))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| ShipError::Unreachable(e.to_string()))?
                .to_bytes();
            Ok::<_, ShipError>((status, body))
        };
        let (status, body) = tokio::time::timeout(self.config.request_timeout, exchange)
            .await
            .map_err(|_| {
                ShipError::Unreachable(format!(
                    "no answer within {:?}",
                    self.config.request_timeout
                ))
            })??;
        if status != StatusCode::OK {
            return Err(ShipError::Refused {
                status: status.as_u16(),
                message: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        serde_json::from_slice(&body)
            .map_err(|e| ShipError::Unreachable(format!("unreadable answer: {e}")))
    }
}

/// The seq of the last whole entry in the log set (for a gap, the last seq it covers), read
/// from the end of the last file that has one.
fn last_seq_on_disk(files: &[PathBuf]) -> Option<u64> {
    // An audit line is at most the payload limit (16 KiB) plus its envelope.
    const TAIL: u64 = 64 << 10;
    for path in files.iter().rev() {
        let Ok(mut file) = std::fs::File::open(path) else {
            continue;
        };
        let len = file.metadata().map_or(0, |m| m.len());
        let start = len.saturating_sub(TAIL);
        if file.seek(SeekFrom::Start(start)).is_err() {
            continue;
        }
        let mut buf = Vec::new();
        if file.read_to_end(&mut buf).is_err() {
            continue;
        }
        // Whole lines only: what follows the last newline may be a write in progress.
        let Some(end) = buf.iter().rposition(|&b| b == b'\n') else {
            continue;
        };
        let begin = buf[..end]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let value: serde_json::Value = serde_json::from_slice(&buf[begin..end]).unwrap_or_default();
        let seq = match value.get("kind").and_then(|v| v.as_str()) {
            Some("gap") => value.pointer("/payload/last_seq").and_then(|v| v.as_u64()),
            _ => value.get("seq").and_then(|v| v.as_u64()),
        };
        if seq.is_some() {
            return seq;
        }
    }
    None
}
