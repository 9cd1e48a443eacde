//! What verification reports: the findings of a good log, and the first bad entry of a bad
//! one with the kind of tampering that explains it (SER-016).

use serde::Serialize;
use std::path::PathBuf;

/// What a successful verification found.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// The log's id (from entry 0).
    pub log_id: String,
    /// Entries (lines) verified.
    pub entries: u64,
    /// The seq of the last entry (for a gap, the last seq it covers).
    pub last_seq: u64,
    /// The hash of the last entry (hex).
    pub head_hash: String,
    /// Checkpoints whose signature verified.
    pub checkpoints: u64,
    /// The last checkpoint: keep a copy off the gateway to detect truncation back to it.
    pub last_checkpoint: Option<CheckpointInfo>,
    /// Gap entries, and the decision entries they stand for.
    pub gaps: u64,
    /// Decision entries dropped under overload (sum over gaps).
    pub dropped: u64,
    /// Things that are not tampering but limit what the log proves.
    pub warnings: Vec<VerifyWarning>,
    /// The files read, in order, with how many lines each holds (a rotated set; one file
    /// otherwise). Line numbers in this report and in errors count over the whole set:
    /// [`super::locate_line`] turns one into a file and a line in it.
    pub files: Vec<(String, usize)>,
    /// Where the writer resumes (internal).
    #[serde(skip)]
    pub(crate) tail: Tail,
}

impl VerifyReport {
    /// [`VerifyError::TornTail`] when the log's final line is cut short: a torn line that
    /// does not parse (ignored by the walk), or a last entry without its newline (the writer
    /// always ends a line; a cut exactly there removed it). A verifier refuses such a log
    /// unless it was told to accept a torn tail (a crash mid-write, before the gateway
    /// restarted and truncated it).
    pub fn torn_tail(&self) -> Option<VerifyError> {
        let lines: usize = self.files.iter().map(|(_, n)| n).sum();
        if self.tail.torn_bytes > 0 {
            return Some(VerifyError::TornTail {
                line: lines.max(1),
                bytes: self.tail.torn_bytes,
            });
        }
        self.tail.missing_newline.then(|| VerifyError::TornTail {
            line: lines.max(1),
            bytes: 0,
        })
    }
}

/// Resume state for the writer, from the last good entry.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tail {
    pub good_len: u64,
    pub missing_newline: bool,
    pub next_seq: u64,
    pub head: [u8; 32],
    pub torn_bytes: u64,
    pub unsigned: u64,
}

/// A verified checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckpointInfo {
    /// Its line (1-based).
    pub line: usize,
    /// Its own seq.
    pub seq: u64,
    /// The seq of the last entry it covers.
    pub head_seq: u64,
    /// The hash it signs (hex).
    pub head_hash: String,
    /// Its time (unix ms).
    pub time: u64,
}

/// Findings that are not tampering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "warning", rename_all = "snake_case")]
pub enum VerifyWarning {
    /// Entries after the last checkpoint carry no signature: they (or their truncation) can
    /// not be proven; a crash or a log still being written leaves such a tail.
    UnsignedTail {
        /// First unsigned seq.
        first_seq: u64,
        /// Last unsigned seq.
        last_seq: u64,
        /// How many entries.
        count: u64,
    },
    /// The final line has no newline and does not parse: a write torn by a crash.
    TornFinalLine {
        /// Its line (1-based).
        line: usize,
        /// Its length in bytes.
        bytes: u64,
    },
    /// Decision entries were dropped under overload (recorded by gap entries).
    Dropped {
        /// Gap entries.
        gaps: u64,
        /// Decision entries dropped.
        entries: u64,
    },
    /// The writer could not sign a checkpoint here (keystore or HSM failure).
    CheckpointFailed {
        /// Its line (1-based).
        line: usize,
        /// Its seq.
        seq: u64,
    },
}

/// Why an entry is bad.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "problem", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Problem {
    /// Not a well-formed entry line.
    #[error("malformed: {reason}")]
    Malformed {
        /// What is wrong.
        reason: String,
    },
    /// The stored hash does not match the content.
    #[error("edited: the content does not match its hash")]
    Edited,
    /// The entry was edited and re-hashed: the next entry committed to another hash.
    #[error("edited and re-hashed: line {next_line} committed to a different hash for it")]
    Rewritten {
        /// The line whose `prev_hash` no longer matches.
        next_line: usize,
    },
    /// The first entry of a piece checked from a chain point ([`super::verify_continuation`])
    /// does not link to that point's hash.
    #[error("does not continue the chain: its prev_hash is not the hash of the entry before it")]
    Unlinked,
    /// Seqs are missing and appear nowhere in the file.
    #[error("deleted: seq {expected}..={} missing, found {found}", .found - 1)]
    Missing {
        /// The seq that should come here.
        expected: u64,
        /// The seq found instead.
        found: u64,
    },
    /// An entry that is not part of the chain.
    #[error("inserted: not linked into the chain{}", fmt_line(" (seq also at line ", .conflicts_with_line, ")"))]
    Inserted {
        /// Another line with the same seq, if any.
        conflicts_with_line: Option<usize>,
    },
    /// A copy of an earlier entry.
    #[error("duplicated: a copy of line {original_line}")]
    Duplicated {
        /// The line it copies.
        original_line: usize,
    },
    /// A genuine entry out of place.
    #[error("reordered: expected seq {expected} here, which is at line {expected_at_line}")]
    Reordered {
        /// The seq that should come here.
        expected: u64,
        /// Where that seq is.
        expected_at_line: usize,
    },
    /// Entry 0 is not a proper `log_created` entry.
    #[error("bad first entry: {reason}")]
    BadGenesis {
        /// What is wrong.
        reason: String,
    },
    /// A gap entry is inconsistent.
    #[error("bad gap entry: {reason}")]
    BadGap {
        /// What is wrong.
        reason: String,
    },
    /// A checkpoint does not verify (forged, or entries before it were rewritten).
    #[error("bad checkpoint: {reason}")]
    BadCheckpoint {
        /// What is wrong.
        reason: String,
    },
}

fn fmt_line(before: &str, line: &Option<usize>, after: &str) -> String {
    line.map(|l| format!("{before}{l}{after}"))
        .unwrap_or_default()
}

/// Why a log does not verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The log could not be read.
    #[error("cannot read {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file holds no entry.
    #[error("the audit log is empty")]
    Empty,
    /// The trusted key is not a usable Ed25519 public key (invalid or small-order).
    #[error("the trusted public key is not a valid Ed25519 key")]
    BadKey,
    /// The files of a rotated set do not form one log (a file missing, misnamed, or the
    /// active file absent).
    #[error("the audit file set is broken: {0}")]
    FileSet(String),
    /// The final entry is cut short (a torn write, or a truncated file): refused unless the
    /// verifier allows a torn tail (`--allow-torn-tail`).
    #[error("the final line {line} is cut short ({bytes} bytes past the last whole entry): the log was truncated, or torn by a crash before the gateway restarted (--allow-torn-tail accepts it)")]
    TornTail {
        /// Its line (1-based, counted over the whole set).
        line: usize,
        /// The bytes of the torn line.
        bytes: u64,
    },
    /// The first bad entry.
    #[error("first bad entry at line {line}{}: {problem}", fmt_line(" (seq ", &.seq.map(|s| s as usize), ")"))]
    BadEntry {
        /// Its line (1-based).
        line: usize,
        /// Its seq, when the line has one.
        seq: Option<u64>,
        /// What is wrong.
        problem: Problem,
    },
}

impl std::fmt::Display for VerifyWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VerifyWarning::UnsignedTail {
                first_seq,
                last_seq,
                count,
            } => write!(
                f,
                "{count} entries after the last checkpoint (seq {first_seq}..={last_seq}) are \
                 not signed: their content, or a truncation of them, cannot be proven"
            ),
            VerifyWarning::TornFinalLine { line, bytes } => write!(
                f,
                "line {line} is a torn final write ({bytes} bytes, a crash mid-write); ignored"
            ),
            VerifyWarning::Dropped { gaps, entries } => write!(
                f,
                "{entries} decision entries were dropped under overload ({gaps} gap entries)"
            ),
            VerifyWarning::CheckpointFailed { line, seq } => {
                write!(
                    f,
                    "line {line} (seq {seq}): the gateway could not sign a checkpoint"
                )
            }
        }
    }
}
