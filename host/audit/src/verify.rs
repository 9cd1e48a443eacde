//! Checking a log: every hash, the chain, seq continuity, and every checkpoint signature
//! (SER-016). Verification stops at the FIRST bad entry and says which line and seq it is and
//! what kind of tampering explains it, so an auditor knows where the trustworthy part ends.

use super::entry::{
    canonical_json, checkpoint_message, entry_hash, parse_hash, CheckpointPayload, Entry,
    GapPayload, Kind, ZERO_HASH,
};
pub(crate) use super::report::Tail;
pub use super::report::{CheckpointInfo, Problem, VerifyError, VerifyReport, VerifyWarning};
use ed25519_dalek::{Signature, VerifyingKey};
use std::path::{Path, PathBuf};

/// The log file for a path: the path itself, or `audit.log` inside it when it is a directory.
pub fn resolve_log_path(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join(super::DEFAULT_FILE_NAME)
    } else {
        path.to_path_buf()
    }
}

/// Verifies a log against the gateway's trusted Ed25519 public key: a directory is read as
/// the whole rotated set ([`verify_set`]), a file alone.
pub fn verify(path: &Path, trusted_public_key: &[u8; 32]) -> Result<VerifyReport, VerifyError> {
    if path.is_dir() {
        return verify_set(path, super::DEFAULT_FILE_NAME, trusted_public_key);
    }
    let bytes = std::fs::read(path).map_err(|source| VerifyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut report = verify_bytes(&bytes, Some(trusted_public_key))?;
    let lines = split_lines(&bytes).len();
    report.files = vec![(path.display().to_string(), lines)];
    Ok(report)
}

/// The files of the log `file_name` in `dir`, in chain order: the rotated ones
/// (`<file_name>.000001`, ...) then the active one. Numbers must run from 1 without a hole
/// (a missing file is an error, not skipped), and the active file must exist.
pub fn log_files(dir: &Path, file_name: &str) -> Result<Vec<PathBuf>, VerifyError> {
    let entries = std::fs::read_dir(dir).map_err(|source| VerifyError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut rotated: Vec<(u32, PathBuf)> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let index = super::appender::rotated_index(file_name, &name)?;
            Some((index, entry.path()))
        })
        .collect();
    rotated.sort();
    for (expected, (index, _)) in (1u32..).zip(&rotated) {
        if *index != expected {
            let missing = super::appender::rotated_name(file_name, expected);
            return Err(VerifyError::FileSet(format!(
                "{missing} is missing (the set jumps to number {index})"
            )));
        }
    }
    let active = dir.join(file_name);
    if !active.exists() {
        if rotated.is_empty() {
            return Err(VerifyError::Io {
                path: active,
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        }
        return Err(VerifyError::FileSet(format!(
            "the active file {file_name} is missing after {} rotated file(s)",
            rotated.len()
        )));
    }
    let mut files: Vec<PathBuf> = rotated.into_iter().map(|(_, path)| path).collect();
    files.push(active);
    Ok(files)
}

/// Verifies the whole set of a rotated log in `dir` as one chain: entry 0 in the first file,
/// each file continuing the previous one's seq and hash, every checkpoint signed by the key.
/// A missing, reordered, truncated or edited file breaks the chain and fails it.
pub fn verify_set(
    dir: &Path,
    file_name: &str,
    trusted_public_key: &[u8; 32],
) -> Result<VerifyReport, VerifyError> {
    let files = log_files(dir, file_name)?;
    let mut bytes = Vec::new();
    let mut counts = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let data = std::fs::read(file).map_err(|source| VerifyError::Io {
            path: file.clone(),
            source,
        })?;
        let last = i + 1 == files.len();
        if !last && !data.ends_with(b"\n") {
            let name = file.display();
            return Err(VerifyError::FileSet(format!(
                "rotated file {name} does not end with a whole line (truncated)"
            )));
        }
        counts.push((file.display().to_string(), count_lines(&data)));
        bytes.extend_from_slice(&data);
    }
    let mut report = verify_bytes(&bytes, Some(trusted_public_key))?;
    report.files = counts;
    Ok(report)
}

/// Lines as the walk counts them: each newline ends one, and a final unterminated one counts.
fn count_lines(data: &[u8]) -> usize {
    data.iter().filter(|&&b| b == b'\n').count()
        + usize::from(data.last().is_some_and(|&b| b != b'\n'))
}

/// The files of the log in `dir` with their line counts (as [`VerifyReport::files`]), to
/// place a set-wide line number of an error with [`locate_line`].
pub fn set_line_counts(dir: &Path, file_name: &str) -> Vec<(String, usize)> {
    log_files(dir, file_name)
        .unwrap_or_default()
        .iter()
        .map(|file| {
            let lines = std::fs::read(file).map(|d| count_lines(&d)).unwrap_or(0);
            (file.display().to_string(), lines)
        })
        .collect()
}

/// Which file of `files` (as in [`VerifyReport::files`]) holds set-wide line `line`, and
/// the line's number inside it.
pub fn locate_line(files: &[(String, usize)], line: usize) -> Option<(&str, usize)> {
    let mut before = 0;
    for (name, count) in files {
        if line <= before + count {
            return Some((name.as_str(), line - before));
        }
        before += count;
    }
    None
}

/// Verifies the active file of a log without a key, as the writer does when it resumes: it
/// starts the log (entry 0) or continues a rotated one (a `log_rotated` first entry, whose
/// seq and `prev_hash` are taken as given; [`verify_set`] checks the link).
pub(crate) fn verify_active(bytes: &[u8]) -> Result<VerifyReport, VerifyError> {
    let lines = split_lines(bytes);
    let mut walk = Walk::new(&lines, None);
    walk.continuation = true;
    walk.run()
}

/// Verifies a log's bytes. With no key, signatures are not checked (structure only: what the
/// writer checks when it resumes a log).
pub fn verify_bytes(
    bytes: &[u8],
    trusted_public_key: Option<&[u8; 32]>,
) -> Result<VerifyReport, VerifyError> {
    let key = match trusted_public_key {
        Some(k) => {
            let vk = VerifyingKey::from_bytes(k).map_err(|_| VerifyError::BadKey)?;
            if vk.is_weak() {
                return Err(VerifyError::BadKey);
            }
            Some(vk)
        }
        None => None,
    };
    let lines = split_lines(bytes);
    Walk::new(&lines, key).run()
}

/// Where a chain stands after some entries: the log it belongs to, the seq the next entry
/// must carry and the hash it must link to. A collector keeps one per gateway so that it can
/// check a shipped batch on arrival without the entries before it ([`verify_continuation`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainPoint {
    /// The log id from the log's `log_created` entry.
    pub log_id: String,
    /// The seq of the next entry (after a gap, the one after the gap's last seq).
    pub next_seq: u64,
    /// The hash of the last entry, which the next one must carry as `prev_hash`.
    pub head: [u8; 32],
}

/// Verifies `bytes` as the entries that follow `from` in the same log: every hash, the chain
/// from `from.head`, seq continuity from `from.next_seq`, and every checkpoint signature
/// against the trusted key (a checkpoint signs the head before it, which may be an entry
/// before these bytes). With `from` `None` the bytes must start the log (entry 0). A final
/// line without its newline is refused here (a batch is whole lines), not reported as torn.
pub fn verify_continuation(
    bytes: &[u8],
    trusted_public_key: &[u8; 32],
    from: Option<&ChainPoint>,
) -> Result<VerifyReport, VerifyError> {
    let vk = VerifyingKey::from_bytes(trusted_public_key).map_err(|_| VerifyError::BadKey)?;
    if vk.is_weak() {
        return Err(VerifyError::BadKey);
    }
    let lines = split_lines(bytes);
    if let Some(last) = lines.last().filter(|l| !l.newline) {
        return Err(VerifyError::BadEntry {
            line: last.number,
            seq: last.rec.as_ref().ok().map(|r| r.seq),
            problem: Problem::Malformed {
                reason: "the last line does not end with a newline".to_owned(),
            },
        });
    }
    let mut walk = Walk::new(&lines, Some(vk));
    if let Some(from) = from {
        walk.report.log_id = from.log_id.clone();
        walk.expected = from.next_seq;
        walk.head = from.head;
    }
    walk.run()
}

/// A parsed line: what the walk needs, without keeping payloads in memory.
struct Rec {
    seq: u64,
    time: u64,
    kind: Kind,
    prev: [u8; 32],
    stored: [u8; 32],
    computed: [u8; 32],
    /// `log_created` id, `checkpoint_failed`, gap or checkpoint payload.
    special: Special,
}

enum Special {
    None,
    Genesis(Option<String>),
    CheckpointFailed,
    /// The first entry of a file continuing a rotated log, with the log's id.
    Rotated(Option<String>),
    Gap(Result<GapPayload, String>),
    Checkpoint(Result<CheckpointPayload, String>),
}

struct Line {
    number: usize,
    start: u64,
    end: u64,
    newline: bool,
    rec: Result<Rec, String>,
}

fn split_lines(bytes: &[u8]) -> Vec<Line> {
    let mut out = Vec::new();
    let mut start = 0usize;
    while start < bytes.len() {
        let (end, newline) = match bytes[start..].iter().position(|&b| b == b'\n') {
            Some(i) => (start + i, true),
            None => (bytes.len(), false),
        };
        out.push(Line {
            number: out.len() + 1,
            start: start as u64,
            end: (end + newline as usize) as u64,
            newline,
            rec: parse_rec(&bytes[start..end]),
        });
        start = end + 1;
    }
    out
}

fn parse_rec(raw: &[u8]) -> Result<Rec, String> {
    let text = std::str::from_utf8(raw).map_err(|_| "not UTF-8".to_owned())?;
    let e: Entry = serde_json::from_str(text).map_err(|err| err.to_string())?;
    let prev = parse_hash(&e.prev_hash).ok_or("prev_hash is not 32 hex bytes")?;
    let stored = parse_hash(&e.hash).ok_or("hash is not 32 hex bytes")?;
    let computed = entry_hash(e.seq, e.time, e.kind, &canonical_json(&e.payload), &prev);
    let event = e.payload.get("event").and_then(|v| v.as_str());
    let special = match e.kind {
        Kind::Gap => Special::Gap(serde_json::from_value(e.payload).map_err(|x| x.to_string())),
        Kind::Checkpoint => {
            Special::Checkpoint(serde_json::from_value(e.payload).map_err(|x| x.to_string()))
        }
        Kind::System if event == Some("log_created") => Special::Genesis(
            e.payload
                .get("log_id")
                .and_then(|v| v.as_str())
                .map(str::to_owned),
        ),
        Kind::System if event == Some("checkpoint_failed") => Special::CheckpointFailed,
        Kind::System if event == Some("log_rotated") => Special::Rotated(
            e.payload
                .get("log_id")
                .and_then(|v| v.as_str())
                .map(str::to_owned),
        ),
        _ => Special::None,
    };
    Ok(Rec {
        seq: e.seq,
        time: e.time,
        kind: e.kind,
        prev,
        stored,
        computed,
        special,
    })
}

struct Walk<'a> {
    lines: &'a [Line],
    key: Option<VerifyingKey>,
    report: VerifyReport,
    expected: u64,
    head: [u8; 32],
    unsigned_from: Option<u64>,
    /// Accept a first entry that continues a rotated log (seq > 0, `log_rotated`).
    continuation: bool,
}

impl<'a> Walk<'a> {
    fn new(lines: &'a [Line], key: Option<VerifyingKey>) -> Self {
        let report = VerifyReport {
            log_id: String::new(),
            entries: 0,
            last_seq: 0,
            head_hash: hex::encode(ZERO_HASH),
            checkpoints: 0,
            last_checkpoint: None,
            gaps: 0,
            dropped: 0,
            warnings: Vec::new(),
            files: Vec::new(),
            tail: Tail::default(),
        };
        Walk {
            lines,
            key,
            report,
            expected: 0,
            head: ZERO_HASH,
            unsigned_from: None,
            continuation: false,
        }
    }

    fn rec(&self, i: usize) -> Option<&Rec> {
        self.lines.get(i).and_then(|l| l.rec.as_ref().ok())
    }

    fn run(mut self) -> Result<VerifyReport, VerifyError> {
        let lines = self.lines;
        for (i, line) in lines.iter().enumerate() {
            let rec = match &line.rec {
                Ok(rec) => rec,
                Err(_) if !line.newline && i + 1 == lines.len() => {
                    let bytes = line.end - line.start;
                    let torn = VerifyWarning::TornFinalLine {
                        line: line.number,
                        bytes,
                    };
                    self.report.warnings.push(torn);
                    self.report.tail.torn_bytes = bytes;
                    break;
                }
                Err(reason) => {
                    let problem = Problem::Malformed {
                        reason: reason.clone(),
                    };
                    return Err(VerifyError::BadEntry {
                        line: line.number,
                        seq: None,
                        problem,
                    });
                }
            };
            self.check(i, rec)?;
            self.report.tail.good_len = line.end;
            self.report.tail.missing_newline = !line.newline;
        }
        if self.report.entries == 0 {
            return Err(VerifyError::Empty);
        }
        self.finish()
    }

    fn bad(&self, i: usize, problem: Problem) -> VerifyError {
        let line = self.lines[i].number;
        VerifyError::BadEntry {
            line,
            seq: self.rec(i).map(|r| r.seq),
            problem,
        }
    }

    /// Checks one entry against everything before it; on success advances the chain.
    fn check(&mut self, i: usize, rec: &Rec) -> Result<(), VerifyError> {
        let number = self.lines[i].number;
        if rec.computed != rec.stored {
            return Err(self.bad(i, Problem::Edited));
        }
        if i == 0 && self.continuation && rec.seq != 0 {
            let Special::Rotated(Some(id)) = &rec.special else {
                let reason = "a file continuing a rotated log must start with a system \
                              log_rotated entry with a log_id"
                    .to_owned();
                return Err(self.bad(i, Problem::BadGenesis { reason }));
            };
            self.report.log_id = id.clone();
            self.expected = rec.seq;
            self.head = rec.prev;
        }
        if let Special::Rotated(id) = &rec.special {
            if rec.seq == 0 || id.as_deref() != Some(self.report.log_id.as_str()) {
                let reason = format!("a log_rotated entry names log {id:?}, not this log");
                return Err(self.bad(i, Problem::BadGenesis { reason }));
            }
        }
        if rec.seq > self.expected {
            return Err(self.bad(i, self.explain_ahead(i, rec)));
        }
        if rec.seq < self.expected {
            let (at, problem) = self.explain_behind(i, rec);
            return Err(self.bad(at, problem));
        }
        if rec.seq == 0 {
            match &rec.special {
                Special::Genesis(Some(id)) if rec.prev == ZERO_HASH => {
                    self.report.log_id = id.clone();
                }
                _ => {
                    let reason = "entry 0 must be a system log_created entry with a log_id and a \
                                  zero prev_hash"
                        .to_owned();
                    return Err(self.bad(i, Problem::BadGenesis { reason }));
                }
            }
        } else if rec.prev != self.head {
            // This entry's prev_hash is the commitment to the genuine previous entry. If the
            // next line repeats this seq, this line is the intruder; otherwise the previous
            // line is what changed (edited and re-hashed): it is the first bad entry.
            if self.rec(i + 1).is_some_and(|n| n.seq == rec.seq) {
                let problem = Problem::Inserted {
                    conflicts_with_line: Some(number + 1),
                };
                return Err(self.bad(i, problem));
            }
            // The first line of a piece checked from a chain point has no line before it
            // here: it simply does not continue the chain it was given.
            if i == 0 {
                return Err(self.bad(i, Problem::Unlinked));
            }
            return Err(self.bad(i - 1, Problem::Rewritten { next_line: number }));
        }
        let mut next = rec.seq + 1;
        match &rec.special {
            Special::Gap(gap) => {
                next = self.check_gap(rec, gap).map_err(|p| self.bad(i, p))? + 1;
                self.report.gaps += 1;
            }
            Special::Checkpoint(cp) => {
                self.check_checkpoint(number, rec, cp)
                    .map_err(|p| self.bad(i, p))?;
            }
            Special::CheckpointFailed => {
                let w = VerifyWarning::CheckpointFailed {
                    line: number,
                    seq: rec.seq,
                };
                self.report.warnings.push(w);
            }
            _ => {}
        }
        if rec.kind != Kind::Checkpoint {
            self.unsigned_from.get_or_insert(rec.seq);
            self.report.tail.unsigned += 1;
        }
        self.report.entries += 1;
        self.report.last_seq = next - 1;
        self.head = rec.stored;
        self.expected = next;
        Ok(())
    }

    /// A seq from the future: deleted entries, a reordered one, or an inserted one.
    fn explain_ahead(&self, i: usize, rec: &Rec) -> Problem {
        let expected = self.expected;
        let later =
            (i + 1..self.lines.len()).find(|&j| self.rec(j).is_some_and(|r| r.seq == expected));
        match later {
            None => Problem::Missing {
                expected,
                found: rec.seq,
            },
            Some(j) => {
                // A genuine entry moved here is still linked to by its successor; an
                // inserted one is linked to by nobody.
                let linked = (0..self.lines.len())
                    .any(|k| k != i && self.rec(k).is_some_and(|r| r.prev == rec.stored));
                if linked {
                    Problem::Reordered {
                        expected,
                        expected_at_line: self.lines[j].number,
                    }
                } else {
                    let conflicts_with_line = (0..self.lines.len())
                        .find(|&k| k != i && self.rec(k).is_some_and(|r| r.seq == rec.seq))
                        .map(|k| self.lines[k].number);
                    Problem::Inserted {
                        conflicts_with_line,
                    }
                }
            }
        }
    }

    /// A seq already seen: a copy of an earlier line, or two entries claiming one seq. The
    /// genuine one is linked to by its successor; the other is the inserted one and is
    /// reported, even when it is the earlier line.
    fn explain_behind(&self, i: usize, rec: &Rec) -> (usize, Problem) {
        let line = |k: usize| self.lines[k].number;
        let Some(k) = (0..i)
            .rev()
            .find(|&k| self.rec(k).is_some_and(|r| r.seq == rec.seq))
        else {
            return (
                i,
                Problem::Inserted {
                    conflicts_with_line: None,
                },
            );
        };
        let earlier = self.rec(k).map(|r| r.stored).unwrap_or_default();
        if earlier == rec.stored {
            return (
                i,
                Problem::Duplicated {
                    original_line: line(k),
                },
            );
        }
        let linked = |hash: [u8; 32]| {
            self.lines
                .iter()
                .any(|l| l.rec.as_ref().is_ok_and(|r| r.prev == hash))
        };
        if linked(rec.stored) && !linked(earlier) {
            (
                k,
                Problem::Inserted {
                    conflicts_with_line: Some(line(i)),
                },
            )
        } else {
            (
                i,
                Problem::Inserted {
                    conflicts_with_line: Some(line(k)),
                },
            )
        }
    }

    /// Returns the last seq the gap covers.
    fn check_gap(&mut self, rec: &Rec, gap: &Result<GapPayload, String>) -> Result<u64, Problem> {
        let bad = |reason: String| Problem::BadGap { reason };
        let gap = gap.as_ref().map_err(|e| bad(e.clone()))?;
        if gap.first_seq != rec.seq || gap.last_seq < gap.first_seq {
            return Err(bad(format!(
                "covers seq {}..={}",
                gap.first_seq, gap.last_seq
            )));
        }
        if gap.dropped != gap.last_seq - gap.first_seq + 1 {
            return Err(bad(format!(
                "counts {} entries for a range of other size",
                gap.dropped
            )));
        }
        self.report.dropped += gap.dropped;
        Ok(gap.last_seq)
    }

    fn check_checkpoint(
        &mut self,
        line: usize,
        rec: &Rec,
        cp: &Result<CheckpointPayload, String>,
    ) -> Result<(), Problem> {
        let bad = |reason: String| Problem::BadCheckpoint { reason };
        let cp = cp.as_ref().map_err(|e| bad(e.clone()))?;
        if cp.log_id != self.report.log_id {
            return Err(bad(format!(
                "belongs to log {:?}, not {:?}",
                cp.log_id, self.report.log_id
            )));
        }
        let head = parse_hash(&cp.head_hash).ok_or_else(|| bad("head_hash is not hex".into()))?;
        if cp.head_seq + 1 != rec.seq || head != self.head {
            return Err(bad("does not sign the entry before it".into()));
        }
        if let Some(key) = &self.key {
            let mut sig = [0u8; 64];
            hex::decode_to_slice(&cp.signature, &mut sig)
                .map_err(|_| bad("signature is not 64 hex bytes".into()))?;
            let msg = checkpoint_message(&cp.log_id, cp.head_seq, &head, rec.time);
            if key
                .verify_strict(&msg, &Signature::from_bytes(&sig))
                .is_err()
            {
                let reason = if cp.public_key != hex::encode(key.as_bytes()) {
                    format!(
                        "not signed by the trusted key (names key {})",
                        cp.public_key
                    )
                } else {
                    "signature does not verify: forged, or entries before it were rewritten"
                        .to_owned()
                };
                return Err(bad(reason));
            }
        }
        self.report.checkpoints += 1;
        self.report.last_checkpoint = Some(CheckpointInfo {
            line,
            seq: rec.seq,
            head_seq: cp.head_seq,
            head_hash: cp.head_hash.clone(),
            time: rec.time,
        });
        self.unsigned_from = None;
        self.report.tail.unsigned = 0;
        Ok(())
    }

    fn finish(mut self) -> Result<VerifyReport, VerifyError> {
        if let Some(first_seq) = self.unsigned_from {
            let last_seq = self.report.last_seq;
            let count = self.report.tail.unsigned;
            self.report.warnings.insert(
                0,
                VerifyWarning::UnsignedTail {
                    first_seq,
                    last_seq,
                    count,
                },
            );
        }
        if self.report.gaps > 0 {
            let w = VerifyWarning::Dropped {
                gaps: self.report.gaps,
                entries: self.report.dropped,
            };
            self.report.warnings.push(w);
        }
        self.report.head_hash = hex::encode(self.head);
        self.report.tail.head = self.head;
        self.report.tail.next_seq = self.expected;
        Ok(self.report)
    }
}
