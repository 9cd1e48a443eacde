//! The writer thread: the only code that touches the log file after open. It drains the
//! queue in batches, writes gap entries for dropped decisions, hashes the chain, signs
//! checkpoints and applies the fsync policy (SER-016). A failed write is rolled back to the
//! last good length and retried, so a full disk never leaves a torn line mid-file.

use super::entry::{
    canonical_json, checkpoint_message, encode_line, CheckpointPayload, GapPayload, Kind,
};
use super::queue::{DropRange, Item, Shared, State, WriterState};
use super::{CheckpointSigner, FsyncPolicy};
use cap_std::fs::File;
use std::borrow::Cow;
use std::io::{self, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The chain's head as committed to disk.
#[derive(Debug, Clone)]
pub(crate) struct Chain {
    /// The seq of the next entry.
    pub next: u64,
    /// The hash of the last entry.
    pub head: [u8; 32],
    /// The file length after the last good entry.
    pub len: u64,
}

/// A batch taken off the queue (in seq order), whether a sync was asked for, and whether
/// the log is closing.
type Batch = (Vec<Item>, bool, bool);

/// What one successful batch wrote.
#[derive(Debug, Default)]
pub(crate) struct Written {
    entries: u64,
    gaps: u64,
    checkpoints: u64,
    checkpoint_failures: u64,
    synced: bool,
}

pub(crate) struct Writer {
    pub shared: Arc<Shared>,
    pub file: File,
    pub chain: Chain,
    pub signer: Arc<dyn CheckpointSigner>,
    pub log_id: String,
    /// The audit directory (rotation renames and creates files in it).
    pub dir: cap_std::fs::Dir,
    /// When the active file was opened (for [`super::AuditConfig::rotate_age`]).
    pub opened: Instant,
    /// The number the next rotated file gets.
    pub next_index: u32,
    pub fault: Fault,
}

/// Test-only storage faults from `PALISADE_AUDIT_FAULT` (see the module documentation of
/// [`crate`]); inert (the default) when the variable is unset.
#[derive(Debug, Default, Clone)]
pub(crate) struct Fault {
    /// Sleep this long before every batch write (a slow disk).
    slow: Option<Duration>,
    /// Fail every write with `EIO` while this file exists (a failing disk).
    eio_while: Option<std::path::PathBuf>,
}

impl Fault {
    pub fn from_env() -> Fault {
        let Ok(spec) = std::env::var("PALISADE_AUDIT_FAULT") else {
            return Fault::default();
        };
        let mut fault = Fault::default();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                Some(("slow", ms)) => {
                    fault.slow = ms.parse().ok().map(Duration::from_millis);
                }
                Some(("eio", path)) => fault.eio_while = Some(path.into()),
                _ => tracing::warn!(part, "PALISADE_AUDIT_FAULT: unknown fault ignored"),
            }
        }
        tracing::warn!(
            ?fault,
            "audit fault injection is ON (PALISADE_AUDIT_FAULT): tests only"
        );
        fault
    }

    /// Whether a slow disk is injected: appenders then never write inline, since a slow disk
    /// is the writer thread's to wait on. (A failing disk fails an inline write as it would
    /// the thread's, which is what tests of that path need.)
    pub fn is_slow(&self) -> bool {
        self.slow.is_some()
    }

    /// A disk that fails every write while `flag` exists (what `eio=PATH` sets).
    #[cfg(test)]
    pub fn eio_while(flag: std::path::PathBuf) -> Fault {
        Fault {
            slow: None,
            eio_while: Some(flag),
        }
    }

    fn before_write(&self) -> io::Result<()> {
        if let Some(delay) = self.slow {
            std::thread::sleep(delay);
        }
        if self.eio_while.as_ref().is_some_and(|path| path.exists()) {
            return Err(io::Error::from_raw_os_error(5));
        }
        Ok(())
    }
}

fn payload_of<T: serde::Serialize>(value: &T) -> String {
    canonical_json(&serde_json::to_value(value).unwrap_or_default())
}

impl Writer {
    /// Encodes and writes a batch on a copy of the chain; commits the copy only on success.
    pub(crate) fn write_items(&mut self, items: &[Item]) -> io::Result<Written> {
        let result = self.try_write(items);
        if result.is_err() {
            // Roll back a partial write so the file ends with a whole line again.
            let _ = self.file.set_len(self.chain.len);
        }
        result
    }

    fn try_write(&mut self, items: &[Item]) -> io::Result<Written> {
        self.fault.before_write()?;
        let policy = self.shared.config.fsync;
        let clock = &self.shared.config.clock;
        let mut chain = self.chain.clone();
        let mut out = Written::default();
        let mut buf = Vec::with_capacity(items.len() * 400);
        for item in items {
            let (seq, time, kind, payload, last) = match item {
                Item::Entry {
                    seq,
                    time,
                    kind,
                    payload,
                } => {
                    out.entries += 1;
                    (*seq, *time, *kind, Cow::Borrowed(payload.as_str()), *seq)
                }
                Item::Gap(r) => {
                    out.gaps += 1;
                    let gap = GapPayload {
                        dropped: r.last_seq - r.first_seq + 1,
                        first_seq: r.first_seq,
                        last_seq: r.last_seq,
                        first_time: r.first_time,
                        last_time: r.last_time,
                    };
                    (
                        r.first_seq,
                        clock.now_ms(),
                        Kind::Gap,
                        Cow::Owned(payload_of(&gap)),
                        r.last_seq,
                    )
                }
                Item::Checkpoint { seq } => {
                    let time = clock.now_ms();
                    let (kind, payload) = self.checkpoint(*seq, time, &chain.head, &mut out);
                    (*seq, time, kind, Cow::Owned(payload), *seq)
                }
                // Taken off the batch by `run` before it is written.
                Item::Rotate { .. } => continue,
            };
            debug_assert_eq!(seq, chain.next, "audit queue out of seq order");
            let start = buf.len();
            chain.head = encode_line(&mut buf, seq, time, kind, &payload, &chain.head);
            chain.next = last + 1;
            chain.len += (buf.len() - start) as u64;
            if policy == FsyncPolicy::EveryEntry {
                self.file.write_all(&buf)?;
                self.file.sync_data()?;
                out.synced = true;
                buf.clear();
            }
        }
        if !buf.is_empty() {
            self.file.write_all(&buf)?;
        }
        if policy == FsyncPolicy::EveryCheckpoint && out.checkpoints > 0 {
            self.file.sync_data()?;
            out.synced = true;
        }
        self.chain = chain;
        Ok(out)
    }

    /// A checkpoint over the head, or a `checkpoint_failed` system entry in its place (the
    /// seq is already reserved, and the failure itself belongs in the record).
    fn checkpoint(
        &self,
        seq: u64,
        time: u64,
        head: &[u8; 32],
        out: &mut Written,
    ) -> (Kind, String) {
        let msg = checkpoint_message(&self.log_id, seq - 1, head, time);
        match self.signer.sign(&msg) {
            Ok(sig) => {
                out.checkpoints += 1;
                let cp = CheckpointPayload {
                    log_id: self.log_id.clone(),
                    head_seq: seq - 1,
                    head_hash: hex::encode(head),
                    signature: hex::encode(sig),
                    public_key: hex::encode(self.signer.public_key()),
                };
                (Kind::Checkpoint, payload_of(&cp))
            }
            Err(error) => {
                let error = palisade_types::Chain(&error).to_string();
                tracing::error!(%error, seq, "audit checkpoint not signed (SER-016)");
                out.checkpoint_failures += 1;
                let payload = serde_json::json!({
                    "event": "checkpoint_failed",
                    "error": error,
                });
                (Kind::System, canonical_json(&payload))
            }
        }
    }

    /// Writes one batch synchronously (used by open for the first entry).
    pub fn write_now(&mut self, items: &[Item]) -> io::Result<()> {
        self.write_items(items)?;
        if self.shared.config.fsync != FsyncPolicy::Never {
            self.file.sync_data()?;
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }

    /// Takes the batch that is due now (in seq order), with whether a sync and close were
    /// asked for; or, when nothing is due, the state lock and how long to wait for work, with
    /// `st.writer` saying why the thread waits, so appenders signal it only when that helps.
    ///
    /// Decisions alone are held for up to `batch_delay` after the oldest arrived, so that
    /// one wake-up and one write serve many of them; anything [`State::prompt`] (checkpoints,
    /// other kinds, flush, close, a half-full queue) is taken at once.
    ///
    /// Called with the writer locked, which is what keeps the file in seq order: an appender
    /// writing inline ([`super::AuditLog`]) drains the queue under the same lock.
    fn take_batch<'s>(
        &self,
        shared: &'s Shared,
        last_checkpoint: &mut Instant,
    ) -> Result<Batch, (MutexGuard<'s, State>, Duration)> {
        let interval = shared.config.checkpoint_interval;
        let delay = shared.config.batch_delay;
        let capacity = shared.config.queue_capacity;
        let mut st = shared.lock();
        loop {
            let elapsed = last_checkpoint.elapsed();
            // Checked before the queue, so that steady traffic (a queue never empty here)
            // still gets its time-based checkpoints.
            if elapsed >= interval {
                if st.since_checkpoint > 0 {
                    // Signs everything reserved so far; it is prompt, so taken below.
                    st.push_checkpoint();
                } else {
                    *last_checkpoint = Instant::now();
                    continue;
                }
            }
            if self.rotation_due() && !st.queue.iter().any(|i| matches!(i, Item::Rotate { .. })) {
                // The file ends with a signed checkpoint; the new one starts with the
                // rotation entry. Both reserved now, so nothing can come between them.
                if st.since_checkpoint > 0 {
                    st.push_checkpoint();
                }
                // Counted as unsigned: the next checkpoint (in the new file) signs it.
                let seq = st.reserve();
                st.queue.push_back(Item::Rotate { seq });
                st.urgent = true;
            }
            let pending = !st.queue.is_empty() || !st.drops.is_empty();
            let (state, timeout) = if pending || st.closing || st.sync_requested {
                let held = match st.first_queued_at {
                    Some(first) if !st.prompt(capacity) => first.elapsed(),
                    _ => break,
                };
                if held >= delay {
                    break;
                }
                (WriterState::Coalescing, delay - held)
            } else {
                (WriterState::Idle, interval - elapsed)
            };
            st.writer = state;
            return Err((st, timeout));
        }
        let mut items: Vec<Item> = st.queue.drain(..).collect();
        items.extend(st.drops.drain(..).map(Item::Gap));
        items.sort_by_key(Item::seq);
        st.stats.queue_len = 0;
        st.urgent = false;
        st.first_queued_at = None;
        let sync = std::mem::take(&mut st.sync_requested);
        Ok((items, sync, st.closing))
    }

    /// Whether the active file is due for rotation (by size, or by age once it holds more
    /// than its first entry).
    pub(crate) fn rotation_due(&self) -> bool {
        let config = &self.shared.config;
        (config.rotate_bytes > 0 && self.chain.len >= config.rotate_bytes)
            || (!config.rotate_age.is_zero()
                && self.opened.elapsed() >= config.rotate_age
                && self.chain.len > 1024)
    }

    /// Closes the active file (synced), renames it to the next rotated name and starts a new
    /// active file with the `log_rotated` entry `seq`, linked to the previous file's last
    /// hash. Safe to retry: a rename already done is not done again.
    fn rotate(&mut self, seq: u64, renamed: &mut Option<String>) -> io::Result<()> {
        self.fault.before_write()?;
        let name = self.shared.config.file_name.clone();
        if renamed.is_none() {
            self.file.sync_data()?;
            let target = super::appender::rotated_name(&name, self.next_index);
            if self.dir.exists(&target) {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("rotated audit file {target} already exists"),
                ));
            }
            self.dir.rename(&name, &self.dir, &target)?;
            *renamed = Some(target);
        }
        let previous = renamed.clone().unwrap_or_default();
        let mut opts = cap_std::fs::OpenOptions::new();
        // Append mode like the first file: a failed write is rolled back with `set_len`, and
        // the next write must land at the new end, not at the old cursor.
        opts.read(true).append(true).create(true);
        let file = self.dir.open_with(&name, &opts)?.into_std();
        if file.try_lock().is_err() {
            return Err(io::Error::other(
                "the new audit file is locked by another writer",
            ));
        }
        // A retry after a failed attempt starts the new file again.
        file.set_len(0)?;
        let mut file = File::from_std(file);
        let payload = canonical_json(&serde_json::json!({
            "event": "log_rotated", "log_id": self.log_id, "previous_file": previous,
        }));
        let mut buf = Vec::with_capacity(512);
        let time = self.shared.config.clock.now_ms();
        let head = encode_line(
            &mut buf,
            seq,
            time,
            Kind::System,
            &payload,
            &self.chain.head,
        );
        file.write_all(&buf)?;
        if self.shared.config.fsync != FsyncPolicy::Never {
            file.sync_data()?;
        }
        self.file = file;
        self.chain = Chain {
            next: seq + 1,
            head,
            len: buf.len() as u64,
        };
        self.next_index += 1;
        self.opened = Instant::now();
        *renamed = None;
        tracing::info!(previous = %previous, seq, "audit log rotated");
        Ok(())
    }

    /// Marks storage as failing (decisions are refused or dropped meanwhile) and counts it.
    fn failed(&self, error: &io::Error) -> bool {
        let mut st = self.lock();
        st.stats.write_errors += 1;
        st.stats.last_error = Some(error.to_string());
        st.failing = Some(error.to_string());
        st.closing
    }

    /// The thread's body: batches until closed (or until storage fails during close). It
    /// holds the writer while it writes and lets go of it while it waits, so that appenders
    /// can write their own decisions inline meanwhile.
    pub fn run(writer: Arc<Mutex<Writer>>) {
        let shared = lock_writer(&writer).shared.clone();
        let mut last_checkpoint = Instant::now();
        let mut guard = lock_writer(&writer);
        loop {
            let (mut items, sync, closing) = match guard.take_batch(&shared, &mut last_checkpoint) {
                Ok(batch) => batch,
                Err((st, timeout)) => {
                    drop(guard);
                    let mut st = shared
                        .work
                        .wait_timeout(st, timeout)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                    st.writer = WriterState::Busy;
                    drop(st);
                    guard = lock_writer(&writer);
                    continue;
                }
            };
            let this = &mut *guard;
            let rotate = match items.last() {
                Some(Item::Rotate { seq }) => Some(*seq),
                _ => None,
            };
            if rotate.is_some() {
                items.pop();
            }
            this.shared.notify_space();
            let mut backoff = Duration::from_millis(20);
            let mut attempts = 0u32;
            let written = loop {
                match this.write_items(&items) {
                    Ok(w) => break Some(w),
                    Err(error) => {
                        attempts += 1;
                        tracing::error!(%error, attempts, "audit log write failed, retrying");
                        let closing = this.failed(&error);
                        if closing && attempts >= 3 {
                            break None;
                        }
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
                }
            };
            let Some(mut w) = written else { break };
            if let Some(seq) = rotate {
                let mut renamed = None;
                let mut backoff = Duration::from_millis(20);
                let mut attempts = 0u32;
                let rotated = loop {
                    match this.rotate(seq, &mut renamed) {
                        Ok(()) => break true,
                        Err(error) => {
                            attempts += 1;
                            tracing::error!(%error, attempts, "audit log rotation failed, retrying");
                            if this.failed(&error) && attempts >= 3 {
                                break false;
                            }
                            std::thread::sleep(backoff);
                            backoff = (backoff * 2).min(Duration::from_secs(2));
                        }
                    }
                };
                if !rotated {
                    this.publish(&w);
                    break;
                }
                this.lock().stats.rotations += 1;
                w.synced = this.shared.config.fsync != FsyncPolicy::Never;
            }
            if (sync || closing) && !w.synced && this.shared.config.fsync != FsyncPolicy::Never {
                match this.file.sync_data() {
                    Ok(()) => w.synced = true,
                    Err(error) => this.lock().stats.last_error = Some(error.to_string()),
                }
            }
            if w.checkpoints + w.checkpoint_failures > 0 {
                last_checkpoint = Instant::now();
            }
            this.publish(&w);
            let st = this.lock();
            if st.closing && st.queue.is_empty() && st.drops.is_empty() {
                break;
            }
        }
        drop(guard);
        shared.lock().stopped = true;
        shared.done.notify_all();
        shared.notify_space();
    }

    /// Makes a written batch visible: counters, `written_upto`, and the waiters woken.
    pub(crate) fn publish(&self, w: &Written) {
        let mut st = self.lock();
        let s = &mut st.stats;
        s.entries_written += w.entries;
        s.gaps += w.gaps;
        s.checkpoints += w.checkpoints;
        s.checkpoint_failures += w.checkpoint_failures;
        s.written_upto = self.chain.next;
        st.failing = None;
        let s = &mut st.stats;
        if w.synced || self.shared.config.fsync == FsyncPolicy::Never {
            s.synced_upto = self.chain.next;
        }
        let waiters = st.done_waiters > 0;
        drop(st);
        self.shared.written.send_replace(self.chain.next);
        if waiters {
            self.shared.done.notify_all();
        }
    }
}

/// Locks the writer; a panic while it was held leaves the chain as last committed (a batch
/// commits its copy of the chain only once written), so the lock stays usable.
pub(crate) fn lock_writer(writer: &Mutex<Writer>) -> MutexGuard<'_, Writer> {
    writer.lock().unwrap_or_else(|e| e.into_inner())
}

impl Item {
    fn seq(&self) -> u64 {
        match self {
            Item::Entry { seq, .. } | Item::Checkpoint { seq } | Item::Rotate { seq } => *seq,
            Item::Gap(DropRange { first_seq, .. }) => *first_seq,
        }
    }
}
