//! The audit trail: an append-only, hash-chained log of decisions and admin actions with
//! checkpoints signed by the gateway key (non-repudiation, SER-016).
//!
//! # File format
//!
//! One file (default `audit.log`) of JSON lines, one entry per line:
//!
//! ```text
//! {"seq":7,"time":1718000000000,"kind":"decision","payload":{...},"prev_hash":"<hex>","hash":"<hex>"}
//! ```
//!
//! - `seq` counts from 0 without holes; `time` is unix milliseconds given by the caller (or the
//!   log's clock); `kind` is `decision`, `admin`, `integrity`, `system`, or one of the two kinds
//!   only the log writes: `gap` and `checkpoint`.
//! - `hash` = SHA-256 over a domain-separated, length-prefixed encoding of seq, time, kind, the
//!   canonical JSON of the payload (keys sorted, no spaces) and `prev_hash` (see
//!   [`entry_hash`]). `prev_hash` is the previous entry's hash, all zeros for seq 0. Editing,
//!   deleting, inserting or reordering any entry breaks the chain.
//! - Entry 0 is a `system` entry `{"event":"log_created","log_id":...}`; the log id binds every
//!   checkpoint to this one log, so a checkpoint cannot be replayed into another gateway's log.
//! - A `checkpoint` entry (every [`AuditConfig::checkpoint_every`] entries or
//!   [`AuditConfig::checkpoint_interval`], and on close) carries the head it covers
//!   (`head_seq`, `head_hash`) and an Ed25519 signature by the gateway key over
//!   [`checkpoint_message`]`(log id, head_seq, head_hash, time)`. The chain alone only proves
//!   internal consistency (anyone can re-hash an edited file); the signature proves the gateway
//!   wrote it. Entries after the last checkpoint are unsigned: [`verify`] reports them as a
//!   warning, and truncation back to a checkpoint can only be noticed against an external
//!   copy of the latest checkpoint (the report gives it, to ship off the gateway).
//!
//! # Audit before answer: write-ahead and the overflow policy (SER-016)
//!
//! [`AuditLog::append`] reserves a seq and puts the entry on a bounded in-memory queue
//! (a mutex held for a push, no I/O on the caller's thread)
//! ([`AuditConfig::queue_capacity`] entries of at most [`AuditConfig::max_payload_bytes`]
//! each, so memory is bounded); one writer thread hashes, writes and signs. A caller that
//! must not act before its entry is on file (the gateway answers no decision before its
//! record is written) awaits [`AuditLog::wait_written`]: the writer keeps batching (group
//! commit), and every batch acknowledges all the seqs it wrote with one `write(2)`.
//!
//! When storage falls behind (the queue is full) or fails (the last write failed, e.g.
//! `ENOSPC` or `EIO`), [`AuditConfig::decision_overflow`] decides what happens to a decision:
//! - [`DecisionOverflow::Refuse`] (what the gateway uses unless its operator chose
//!   otherwise): the entry is not taken ([`AuditError::Backlogged`] on a full queue, after
//!   [`AuditLog::append_canonical_async`] waited for space, or [`AuditError::Unavailable`]
//!   while writes fail), and the caller must refuse the decision. Nothing is dropped.
//! - [`DecisionOverflow::Gap`] (the library default, and the gateway's
//!   `on_failure = "permit-with-gap"`): the entry is **dropped and counted**. Its seq stays
//!   reserved, and as soon as the writer can, it writes a `gap` entry in its place
//!   (`append` still returns the reserved seq; [`AuditLog::stats`] counts the drops):
//!   `{"dropped":n,"first_seq":a,"last_seq":b,"first_time":t0,"last_time":t1}` (the gap entry
//!   has seq `a`; the next entry has seq `b + 1`). The loss is recorded in the chain and
//!   signed like everything else, never silent.
//!
//! `admin`, `integrity` and `system` entries are **never dropped**: the caller waits for
//! space (back-pressure) up to [`AuditConfig::admin_wait`], then gets
//! [`AuditError::Backlogged`] and must refuse the admin action (fail closed: an action that
//! cannot be audited is not performed).
//!
//! # Rotation
//!
//! With [`AuditConfig::rotate_bytes`] or [`AuditConfig::rotate_age`] set, the writer closes
//! the active file with a signed checkpoint once it is that large or old, renames it to
//! `<file_name>.NNNNNN` (numbered from 000001 in order) and starts a new active file whose
//! first entry is a `system` `{"event":"log_rotated","log_id":...,"previous_file":...}`
//! entry: it continues the seq and its `prev_hash` is the previous file's last hash, so the
//! chain runs through the whole set. [`verify_set`] reads the set in order and finds a
//! missing, reordered or edited file. Old files are never deleted by the gateway (archiving
//! them off the gateway is the operator's job; verification of what remains then starts
//! mid-chain and says so).
//!
//! # Batching
//!
//! Appenders wake the writer only when it sleeps with nothing to do, or when it holds back
//! decisions and something must not wait (on Linux every condvar notify is a futex syscall,
//! and a woken writer a context switch: per decision, a measurable share of the gateway's
//! CPU). Decisions alone are held for up to [`AuditConfig::batch_delay`] after the oldest
//! arrived and then written with one `write`; checkpoints, admin, integrity and system
//! entries, [`AuditLog::flush`], [`AuditLog::close`] and a queue half full are written at
//! once. [`AuditStats::writer_wakeups`] counts the signals.
//!
//! With no batch delay, a decision that finds the writer thread idle is written by its own
//! appender instead (one `write` under the writer's lock, in seq order), so it is on file
//! when the append returns and no thread is woken on either side; decisions that arrive
//! meanwhile are taken along. Checkpoints, rotation, flush, close, gaps, a failed write and a
//! slow disk (an inline write over 1 ms pauses this for a second) stay the writer thread's.
//! [`AuditStats::inline_batches`] counts these batches.
//!
//! # Durability ([`FsyncPolicy`])
//!
//! - `EveryEntry`: `fdatasync` after each line. Nothing acknowledged by [`AuditLog::flush`] is
//!   lost on power failure; costs one disk flush per entry (milliseconds on SD cards, so the
//!   queue fills sooner and decisions get dropped into gaps under load).
//! - `EveryCheckpoint` (default): `fdatasync` after each batch that contains a checkpoint, and
//!   on flush/close. A power cut loses at most the unsigned tail, which verification reports.
//! - `Never`: leave it to the OS (tests, tmpfs).
//!
//! # Crash recovery
//!
//! [`AuditLog::open`] re-reads the file: every complete line must chain correctly (a bad
//! entry mid-file refuses to open, [`AuditError::Corrupt`], never accepted silently); a final
//! line without its newline that does not parse is a write torn by a crash: it is reported
//! ([`Recovery::torn_bytes`], a tracing warning, and the `log_opened` entry), truncated away,
//! and the log resumes from the last good entry.
//!
//! One writer per log: the file is locked (advisory) while open, a second writer gets
//! [`AuditError::InUse`].
//!
//! # Fault injection (tests only)
//!
//! `PALISADE_AUDIT_FAULT` (read when a log opens; inert when unset) makes the writer slow or
//! failing so that tests can drive the gateway through a slow or broken disk without root:
//! `slow=MS` sleeps MS milliseconds before every batch write; `eio=PATH` fails every write
//! with `EIO` while the file PATH exists. Both may be given, separated by commas. It is
//! compiled in always (a test of the real binary needs it) and does nothing unless set.

#![deny(missing_docs)]

mod appender;
mod canonical;
mod entry;
mod keystore;
mod queue;
mod report;
mod signer;
mod verify;
mod writer;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_batch;
#[cfg(test)]
mod tests_continuation;
#[cfg(test)]
mod tests_inline;
#[cfg(test)]
mod tests_rotate;
#[cfg(test)]
mod tests_verify;

pub use appender::{AuditLog, AuditStats, Recovery};
pub use canonical::CanonicalJson;
pub use canonical::{canonical_object, ObjectWriter};
pub use entry::{canonical_json, checkpoint_message, entry_hash, Kind, ZERO_HASH};
pub use keystore::{write_public_key, KeystoreSigner, AUDIT_KEY_LABEL, PUBLIC_KEY_FILE};
pub use signer::{CheckpointSigner, MemorySigner, SignerError};
pub use verify::{
    locate_line, log_files, resolve_log_path, set_line_counts, verify, verify_bytes,
    verify_continuation, verify_set, ChainPoint, CheckpointInfo, Problem, VerifyError,
    VerifyReport, VerifyWarning,
};

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The default name of the log file inside the audit directory.
pub const DEFAULT_FILE_NAME: &str = "audit.log";

/// When the writer forces data to disk; see the module documentation for the costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// `fdatasync` after every entry.
    EveryEntry,
    /// `fdatasync` after every checkpoint, flush and close.
    #[default]
    EveryCheckpoint,
    /// Never; the OS writes back when it likes.
    Never,
}

/// The log's source of time in unix milliseconds; replaceable so tests are deterministic.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> u64 + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock(Arc::new(palisade_types::now_unix_ms))
    }

    /// A clock from any function (e.g. a fixed or counting clock in tests).
    pub fn from_fn(f: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        Clock(Arc::new(f))
    }

    /// The current time in unix milliseconds.
    pub fn now_ms(&self) -> u64 {
        (self.0)()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Clock")
    }
}

/// What happens to a decision entry when storage cannot take it (see the module
/// documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DecisionOverflow {
    /// Not taken: the caller gets an error and must refuse the decision (fail closed).
    Refuse,
    /// Dropped, counted, and covered by a signed gap entry.
    #[default]
    Gap,
}

/// How an [`AuditLog`] writes.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// The log file's name inside the audit directory.
    pub file_name: String,
    /// Entries the in-memory queue holds before decision entries are dropped into a gap.
    pub queue_capacity: usize,
    /// A checkpoint after this many entries (counting dropped ones).
    pub checkpoint_every: u64,
    /// A checkpoint at least this often while entries arrive.
    pub checkpoint_interval: Duration,
    /// When to force data to disk.
    pub fsync: FsyncPolicy,
    /// How long an admin, integrity or system entry waits for queue space before
    /// [`AuditError::Backlogged`].
    pub admin_wait: Duration,
    /// The largest payload accepted, as canonical JSON bytes (bounds the queue's memory).
    pub max_payload_bytes: usize,
    /// How long decision entries may wait in the queue to be written together (default
    /// 2 ms; zero writes each batch as soon as the writer gets to it). The cost: a decision
    /// reaches the file (and [`AuditStats::written_upto`]) up to this much later, so a crash
    /// of the process can lose up to this much more of the queued decisions. What it buys:
    /// one writer wake-up and one `write` per batch instead of per decision (SER-016).
    /// Checkpoints, other kinds, [`AuditLog::flush`], [`AuditLog::close`] and a queue at
    /// half of [`AuditConfig::queue_capacity`] or more never wait for it.
    pub batch_delay: Duration,
    /// What happens to a decision entry on a full queue or a failing disk.
    pub decision_overflow: DecisionOverflow,
    /// Rotate the active file once it holds this many bytes (0: never).
    pub rotate_bytes: u64,
    /// Rotate the active file once it is this old (zero: never); checked at least every
    /// [`AuditConfig::checkpoint_interval`].
    pub rotate_age: Duration,
    /// The log id written into a new log; `None` derives one from the key, time and process.
    pub log_id: Option<String>,
    /// Time for entries appended without one, checkpoints and gaps.
    pub clock: Clock,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            file_name: DEFAULT_FILE_NAME.to_owned(),
            queue_capacity: 4096,
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(10),
            fsync: FsyncPolicy::EveryCheckpoint,
            admin_wait: Duration::from_secs(5),
            max_payload_bytes: 16 * 1024,
            batch_delay: Duration::from_millis(2),
            decision_overflow: DecisionOverflow::Gap,
            rotate_bytes: 0,
            rotate_age: Duration::ZERO,
            log_id: None,
            clock: Clock::system(),
        }
    }
}

/// What went wrong opening or appending to the audit log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The audit directory or file could not be opened, read or written.
    #[error("audit log {path}")]
    Io {
        /// The directory or file.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The existing log is damaged or tampered with before its last line; it is refused
    /// rather than continued (move it aside and keep it as evidence).
    #[error("audit log {path} is not intact, refusing to continue it")]
    Corrupt {
        /// The file.
        path: String,
        /// The first bad entry.
        #[source]
        source: VerifyError,
    },
    /// Another writer (this or another process) has the log open.
    #[error("audit log {0} is already open by another writer")]
    InUse(String),
    /// A configuration value is out of range.
    #[error("invalid audit configuration: {0}")]
    InvalidConfig(&'static str),
    /// `gap` and `checkpoint` entries are written by the log itself.
    #[error("entries of kind {0} are written by the audit log itself")]
    ReservedKind(Kind),
    /// The payload's canonical JSON is larger than the configured limit.
    #[error("audit payload of {size} bytes exceeds the limit of {limit}")]
    PayloadTooLarge {
        /// The payload's size.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The queue stayed full for the whole admin wait: the entry was not logged, and the
    /// action it records must not be performed.
    #[error("audit queue full for {0:?}: storage is not keeping up")]
    Backlogged(Duration),
    /// Storage is failing (the last write failed): under [`DecisionOverflow::Refuse`] a
    /// decision is not taken while it lasts.
    #[error("the audit log cannot be written: {0}")]
    Unavailable(String),
    /// The log is closed (or its writer stopped).
    #[error("the audit log is closed")]
    Closed,
}
