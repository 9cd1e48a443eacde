//! The public handle: open (with crash recovery), append without blocking decisions, flush,
//! close. See the module documentation of [`crate`] for the overflow policy (SER-016).

use super::canonical::CanonicalJson;
use super::entry::{canonical_json, Kind, ZERO_HASH};
use super::queue::{
    DropRange, Item, Shared, State, WriterState, INLINE_PAUSE, INLINE_WRITE_BUDGET,
    MAX_INLINE_BATCHES,
};
use super::verify::{verify_active, Tail, VerifyError};
use super::writer::{Chain, Writer};
use super::{AuditConfig, AuditError, CheckpointSigner, DecisionOverflow};
use cap_std::fs::{Dir, OpenOptions};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Counters for metrics and health.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditStats {
    /// The seq the next entry gets.
    pub next_seq: u64,
    /// Every seq below this is written to the file.
    pub written_upto: u64,
    /// Every seq below this is synced to disk (per the fsync policy).
    pub synced_upto: u64,
    /// Entries written (not counting gaps and checkpoints).
    pub entries_written: u64,
    /// Decision entries dropped because the queue was full.
    pub dropped: u64,
    /// Gap entries written.
    pub gaps: u64,
    /// Checkpoints signed and written.
    pub checkpoints: u64,
    /// Checkpoints the signer refused.
    pub checkpoint_failures: u64,
    /// Failed writes (each retried).
    pub write_errors: u64,
    /// Times an appender signalled the writer thread (a futex syscall each); far fewer than
    /// entries when batching works.
    pub writer_wakeups: u64,
    /// Batches of decisions an appender wrote itself while the writer thread was idle (no
    /// wake-up on either side).
    pub inline_batches: u64,
    /// Entries waiting in the queue.
    pub queue_len: usize,
    /// The last storage or signing error.
    pub last_error: Option<String>,
    /// Whether the last write failed (storage is failing now).
    pub failing: bool,
    /// Decision entries refused ([`super::DecisionOverflow::Refuse`]): queue full or storage
    /// failing.
    pub refused: u64,
    /// Files rotated away.
    pub rotations: u64,
}

/// What [`AuditLog::open`] found.
#[derive(Debug, Clone, Serialize)]
pub struct Recovery {
    /// A new log was started.
    pub created: bool,
    /// The log's id.
    pub log_id: String,
    /// Entries found in an existing log.
    pub resumed_entries: u64,
    /// Bytes of a torn final line removed (a crash mid-write).
    pub torn_bytes: u64,
    /// Entries after the last checkpoint when opened (a checkpoint is written at once).
    pub unsigned_entries: u64,
}

/// An open audit log. Share it (`Arc<AuditLog>`); every method takes `&self`.
pub struct AuditLog {
    shared: Arc<Shared>,
    /// The file and its chain: the writer thread holds it while it writes a batch, and an
    /// appender may take it to write decisions inline while the thread waits. Owned by the
    /// thread, so that the file (and its lock) is closed when the thread ends.
    writer: Weak<Mutex<Writer>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    recovery: Recovery,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("recovery", &self.recovery)
            .finish_non_exhaustive()
    }
}

fn io_err(path: &str) -> impl FnOnce(std::io::Error) -> AuditError + '_ {
    move |source| AuditError::Io {
        path: path.to_owned(),
        source,
    }
}

impl AuditLog {
    /// Opens (creating if needed) the log in directory `dir` and starts its writer thread.
    /// An existing log resumes after its last good entry; see [`Recovery`].
    pub fn open(
        dir: impl AsRef<Path>,
        config: AuditConfig,
        signer: Arc<dyn CheckpointSigner>,
    ) -> Result<AuditLog, AuditError> {
        let path = dir.as_ref().display().to_string();
        std::fs::create_dir_all(dir.as_ref()).map_err(io_err(&path))?;
        let dir = Dir::open_ambient_dir(dir.as_ref(), cap_std::ambient_authority())
            .map_err(io_err(&path))?;
        Self::open_in(&dir, config, signer)
    }

    /// Like [`AuditLog::open`], inside a cap-std directory handle.
    pub fn open_in(
        dir: &Dir,
        config: AuditConfig,
        signer: Arc<dyn CheckpointSigner>,
    ) -> Result<AuditLog, AuditError> {
        validate(&config)?;
        let path = config.file_name.clone();
        let mut opts = OpenOptions::new();
        opts.read(true).append(true).create(true);
        let file = dir.open_with(&path, &opts).map_err(io_err(&path))?;
        // One writer per log: a second one would fork the chain. The advisory lock lives as
        // long as the file handle (the writer thread's).
        let std_file = file.into_std();
        if let Err(error) = std_file.try_lock() {
            return Err(match error {
                std::fs::TryLockError::WouldBlock => AuditError::InUse(path),
                std::fs::TryLockError::Error(source) => AuditError::Io { path, source },
            });
        }
        let mut file = cap_std::fs::File::from_std(std_file);
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io_err(&path))?;
        let now = config.clock.now_ms();

        // The active file starts the log (seq 0) or continues a rotated one; empty, it
        // continues the last rotated file if there is one (a crash between renaming the
        // full file away and starting the new one).
        let (created, log_id, tail, resumed, continues) = match verify_active(&bytes) {
            Ok(report) => (false, report.log_id, report.tail, report.entries, None),
            Err(VerifyError::Empty) => {
                let torn_bytes = bytes.len() as u64;
                match last_rotated(dir, &path)? {
                    Some((name, report)) => {
                        let tail = Tail {
                            torn_bytes,
                            good_len: 0,
                            missing_newline: false,
                            unsigned: 0,
                            ..report.tail
                        };
                        (false, report.log_id, tail, 0, Some(name))
                    }
                    None => {
                        let id = config
                            .log_id
                            .clone()
                            .unwrap_or_else(|| new_log_id(&*signer, now));
                        let tail = Tail {
                            torn_bytes,
                            ..Tail::default()
                        };
                        (true, id, tail, 0, None)
                    }
                }
            }
            Err(source) => return Err(AuditError::Corrupt { path, source }),
        };
        if tail.torn_bytes > 0 {
            tracing::warn!(
                file = %path, bytes = tail.torn_bytes, resume_seq = tail.next_seq,
                "audit log ends with a line torn by a crash; truncating it (SER-016)"
            );
            file.set_len(tail.good_len).map_err(io_err(&path))?;
        }
        let mut good_len = tail.good_len;
        if tail.missing_newline {
            std::io::Write::write_all(&mut file, b"\n").map_err(io_err(&path))?;
            good_len += 1;
        }
        let head = if created { ZERO_HASH } else { tail.head };
        let chain = Chain {
            next: tail.next_seq,
            head,
            len: good_len,
        };
        let payload = if created {
            json!({"event": "log_created", "log_id": log_id, "format": 1,
                   "public_key": hex::encode(signer.public_key())})
        } else if let Some(previous) = &continues {
            json!({"event": "log_rotated", "log_id": log_id, "previous_file": previous,
                   "resumed": true})
        } else {
            json!({"event": "log_opened", "resumed_entries": resumed,
                   "torn_bytes_truncated": tail.torn_bytes, "unsigned_entries": tail.unsigned})
        };
        let first = Item::Entry {
            seq: chain.next,
            time: now,
            kind: Kind::System,
            payload: canonical_json(&payload),
        };
        let state = State {
            queue: VecDeque::with_capacity(config.queue_capacity.min(65_536) + 1),
            drops: VecDeque::new(),
            next_seq: chain.next + 1,
            since_checkpoint: 1,
            checkpoint_every: config.checkpoint_every,
            sync_requested: false,
            closing: false,
            stopped: false,
            writer: WriterState::Busy,
            urgent: false,
            first_queued_at: None,
            failing: None,
            leading: false,
            inline_paused_until: None,
            done_waiters: 0,
            stats: AuditStats::default(),
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            work: Condvar::new(),
            space: Condvar::new(),
            done: Condvar::new(),
            space_async: tokio::sync::Notify::new(),
            written: tokio::sync::watch::Sender::new(0),
            config,
        });
        let mut writer = Writer {
            shared: shared.clone(),
            file,
            chain,
            signer,
            log_id: log_id.clone(),
            dir: dir.try_clone().map_err(io_err(&path))?,
            opened: Instant::now(),
            next_index: next_rotation_index(dir, &path),
            fault: super::writer::Fault::from_env(),
        };
        writer.write_now(&[first]).map_err(io_err(&path))?;
        {
            let mut st = shared.lock();
            st.stats.written_upto = writer.chain.next;
            st.stats.synced_upto = writer.chain.next;
            st.stats.entries_written = 1;
            shared.written.send_replace(writer.chain.next);
            // Sign a tail left unsigned by a crash right away.
            if !created && tail.unsigned > 0 {
                st.push_checkpoint();
            }
        }
        let thread_writer = Arc::new(Mutex::new(writer));
        let writer = Arc::downgrade(&thread_writer);
        let thread = std::thread::Builder::new()
            .name("palisade-audit".into())
            .spawn(move || Writer::run(thread_writer))
            .map_err(io_err(&path))?;
        let recovery = Recovery {
            created,
            log_id,
            resumed_entries: resumed,
            torn_bytes: tail.torn_bytes,
            unsigned_entries: tail.unsigned,
        };
        Ok(AuditLog {
            shared,
            writer,
            thread: Mutex::new(Some(thread)),
            recovery,
        })
    }

    /// Replaces the writer's injected storage fault (tests of the inline path, which cannot
    /// set `PALISADE_AUDIT_FAULT` without affecting every test in the process).
    #[cfg(test)]
    pub(crate) fn inject_fault(&self, fault: super::writer::Fault) {
        if let Some(writer) = self.writer.upgrade() {
            super::writer::lock_writer(&writer).fault = fault;
        }
    }

    /// Whether the writer thread waits idle (tests of the inline path wait for it, so that
    /// what they check does not depend on scheduling).
    #[cfg(test)]
    pub(crate) fn writer_is_idle(&self) -> bool {
        self.shared.lock().writer == WriterState::Idle
    }

    /// What opening found (torn tail, unsigned entries, new or resumed).
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// Appends an entry timed by the log's clock; see [`AuditLog::append_at`].
    pub fn append(&self, kind: Kind, payload: Value) -> Result<u64, AuditError> {
        self.append_at(kind, self.shared.config.clock.now_ms(), payload)
    }

    /// Appends an entry with its time (unix ms) and returns its seq. A `decision` entry never
    /// waits: when the queue is full it is dropped, counted, and its seq covered by a gap
    /// entry. Other kinds wait for space up to [`AuditConfig::admin_wait`] (from async code,
    /// prefer [`AuditLog::append_async`]).
    pub fn append_at(&self, kind: Kind, time: u64, payload: Value) -> Result<u64, AuditError> {
        let payload = self.prepare(kind, CanonicalJson::from_value(&payload))?;
        self.enqueue(kind, time, payload)
    }

    /// [`AuditLog::append_at`] for a payload already in canonical JSON (e.g. a decision
    /// written straight from its typed record, without a `serde_json::Value`): the same
    /// checks, seq and queueing.
    pub fn append_canonical(
        &self,
        kind: Kind,
        time: u64,
        payload: CanonicalJson,
    ) -> Result<u64, AuditError> {
        let payload = self.prepare(kind, payload)?;
        self.enqueue(kind, time, payload)
    }

    /// A decision that never waits: `Ok(seq)` queued (or dropped into a gap in gap mode);
    /// on a full queue in refuse mode the payload comes back with
    /// [`AuditError::Backlogged`], for the caller to wait for space asynchronously
    /// ([`AuditLog::append_canonical_async`]); other errors refuse it.
    #[allow(clippy::result_large_err)]
    pub fn try_append_decision(
        &self,
        time: u64,
        payload: CanonicalJson,
    ) -> Result<u64, (AuditError, Option<CanonicalJson>)> {
        let limit = self.shared.config.max_payload_bytes;
        let size = payload.as_str().len();
        if size > limit {
            return Err((AuditError::PayloadTooLarge { size, limit }, None));
        }
        let st = self.shared.lock();
        match self.admission(&st, Kind::Decision) {
            Some(Ok(dropped)) => {
                Ok(self.push(st, Kind::Decision, time, payload.into_string(), dropped))
            }
            Some(Err(error)) => Err((self.refused(st, Kind::Decision, error), None)),
            None => Err((AuditError::Backlogged(Duration::ZERO), Some(payload))),
        }
    }

    /// The time the log's clock gives now (unix ms), as [`AuditLog::append`] stamps entries.
    pub fn now_ms(&self) -> u64 {
        self.shared.config.clock.now_ms()
    }

    /// What to do with an entry of `kind` now: `Some(Ok(drop))` take it (`drop`: as a
    /// dropped decision, covered by a gap), `Some(Err)` refuse it, `None` wait for space.
    fn admission(&self, st: &State, kind: Kind) -> Option<Result<bool, AuditError>> {
        if st.closing || st.stopped {
            return Some(Err(AuditError::Closed));
        }
        let full = st.queue.len() >= self.shared.config.queue_capacity;
        if kind != Kind::Decision {
            return (!full).then_some(Ok(false));
        }
        match (self.shared.config.decision_overflow, &st.failing) {
            (DecisionOverflow::Gap, failing) => Some(Ok(full || failing.is_some())),
            (DecisionOverflow::Refuse, Some(error)) => {
                Some(Err(AuditError::Unavailable(error.clone())))
            }
            (DecisionOverflow::Refuse, None) => (!full).then_some(Ok(false)),
        }
    }

    fn enqueue(&self, kind: Kind, time: u64, payload: String) -> Result<u64, AuditError> {
        // Only an entry that has to wait needs a deadline; a decision never waits here (a
        // refused one is the caller's to wait for, asynchronously).
        let mut deadline = None;
        let mut st = self.shared.lock();
        loop {
            match self.admission(&st, kind) {
                Some(Ok(dropped)) => return Ok(self.push(st, kind, time, payload, dropped)),
                Some(Err(error)) => return Err(self.refused(st, kind, error)),
                None if kind == Kind::Decision => {
                    let error = AuditError::Backlogged(Duration::ZERO);
                    return Err(self.refused(st, kind, error));
                }
                None => {}
            }
            let now = Instant::now();
            let deadline = *deadline.get_or_insert(now + self.shared.config.admin_wait);
            if now >= deadline {
                return Err(AuditError::Backlogged(self.shared.config.admin_wait));
            }
            st = self
                .shared
                .space
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Counts a refused decision.
    fn refused(&self, mut st: MutexGuard<'_, State>, kind: Kind, error: AuditError) -> AuditError {
        if kind == Kind::Decision {
            st.stats.refused += 1;
        }
        error
    }

    /// [`AuditLog::append_at`] for async callers: waiting for space yields instead of
    /// blocking a runtime thread; waits up to [`AuditConfig::admin_wait`].
    pub async fn append_async(
        &self,
        kind: Kind,
        time: u64,
        payload: Value,
    ) -> Result<u64, AuditError> {
        let payload = self.prepare(kind, CanonicalJson::from_value(&payload))?;
        self.enqueue_async(kind, time, payload, self.shared.config.admin_wait)
            .await
    }

    /// [`AuditLog::append_canonical`] for async callers, waiting up to `wait` for queue space
    /// (a decision too: under [`DecisionOverflow::Refuse`] this is the back-pressure before
    /// [`AuditError::Backlogged`]).
    pub async fn append_canonical_async(
        &self,
        kind: Kind,
        time: u64,
        payload: CanonicalJson,
        wait: Duration,
    ) -> Result<u64, AuditError> {
        let payload = self.prepare(kind, payload)?;
        self.enqueue_async(kind, time, payload, wait).await
    }

    async fn enqueue_async(
        &self,
        kind: Kind,
        time: u64,
        payload: String,
        wait: Duration,
    ) -> Result<u64, AuditError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let mut notified = std::pin::pin!(self.shared.space_async.notified());
            notified.as_mut().enable();
            {
                let st = self.shared.lock();
                match self.admission(&st, kind) {
                    Some(Ok(dropped)) => return Ok(self.push(st, kind, time, payload, dropped)),
                    Some(Err(error)) => return Err(self.refused(st, kind, error)),
                    None => {}
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let st = self.shared.lock();
                return Err(self.refused(st, kind, AuditError::Backlogged(wait)));
            }
        }
    }

    /// Waits until the entry `seq` (and everything before it) is written to the file
    /// (`write(2)` returned; synced per the fsync policy only), or `timeout` passes
    /// ([`AuditError::Backlogged`], or [`AuditError::Unavailable`] while writes fail). SER-016:
    /// the gateway answers a decision only after this.
    pub async fn wait_written(&self, seq: u64, timeout: Duration) -> Result<(), AuditError> {
        let mut written = self.shared.written.subscribe();
        if *written.borrow_and_update() > seq {
            return Ok(());
        }
        // While writes fail, say so at once rather than after the whole wait.
        if let Some(error) = &self.shared.lock().failing {
            return Err(AuditError::Unavailable(error.clone()));
        }
        let waited = tokio::time::timeout(timeout, written.wait_for(|upto| *upto > seq)).await;
        match waited {
            Ok(Ok(_)) => Ok(()),
            _ => {
                let st = self.shared.lock();
                if st.stats.written_upto > seq {
                    Ok(())
                } else if st.stopped {
                    Err(AuditError::Closed)
                } else if let Some(error) = &st.failing {
                    Err(AuditError::Unavailable(error.clone()))
                } else {
                    Err(AuditError::Backlogged(timeout))
                }
            }
        }
    }

    /// [`AuditLog::wait_written`] for a caller without an async runtime (an embedder's
    /// decision thread, `palisade-capi`): blocks this thread until the entry `seq` (and
    /// everything before it) is written, or `timeout` passes. The same errors.
    pub fn wait_written_blocking(&self, seq: u64, timeout: Duration) -> Result<(), AuditError> {
        let st = self.shared.lock();
        self.wait_until(st, timeout, |st| {
            if st.stats.written_upto > seq {
                Some(Ok(()))
            } else if st.stopped {
                Some(Err(AuditError::Closed))
            } else {
                st.failing
                    .as_ref()
                    .map(|error| Err(AuditError::Unavailable(error.clone())))
            }
        })
    }

    /// Waits on the writer's progress until `done` gives an answer for the state, the writer
    /// stops ([`AuditError::Closed`]) or `timeout` passes ([`AuditError::Backlogged`]).
    fn wait_until(
        &self,
        mut st: MutexGuard<'_, State>,
        timeout: Duration,
        done: impl Fn(&State) -> Option<Result<(), AuditError>>,
    ) -> Result<(), AuditError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(answer) = done(&st) {
                return answer;
            }
            if st.stopped {
                return Err(AuditError::Closed);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(AuditError::Backlogged(timeout));
            }
            st.done_waiters += 1;
            st = self
                .shared
                .done
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            st.done_waiters -= 1;
        }
    }

    fn prepare(&self, kind: Kind, payload: CanonicalJson) -> Result<String, AuditError> {
        if matches!(kind, Kind::Gap | Kind::Checkpoint) {
            return Err(AuditError::ReservedKind(kind));
        }
        let text = payload.into_string();
        let limit = self.shared.config.max_payload_bytes;
        if text.len() > limit {
            return Err(AuditError::PayloadTooLarge {
                size: text.len(),
                limit,
            });
        }
        Ok(text)
    }

    /// Queues the entry, or (`dropped`: a decision on a full queue or failing storage, in
    /// gap mode) records it as dropped; then releases the lock and wakes the writer only if
    /// it needs waking (SER-016: no futex syscall per decision while the writer is awake or
    /// collecting a batch).
    fn push(
        &self,
        mut st: MutexGuard<'_, State>,
        kind: Kind,
        time: u64,
        payload: String,
        dropped: bool,
    ) -> u64 {
        let seq = st.reserve();
        if dropped {
            st.stats.dropped += 1;
            match st.drops.back_mut() {
                Some(r) if r.last_seq + 1 == seq => {
                    r.last_seq = seq;
                    r.last_time = time;
                }
                _ => st.drops.push_back(DropRange {
                    first_seq: seq,
                    last_seq: seq,
                    first_time: time,
                    last_time: time,
                }),
            }
        } else {
            if st.queue.is_empty() {
                st.first_queued_at = Some(Instant::now());
            }
            if kind != Kind::Decision {
                st.urgent = true;
            }
            st.queue.push_back(Item::Entry {
                seq,
                time,
                kind,
                payload,
            });
        }
        st.maybe_checkpoint(self.shared.config.queue_capacity);
        st.stats.queue_len = st.queue.len();
        if kind == Kind::Decision && !dropped {
            if st.leading && !st.prompt(self.shared.config.queue_capacity) {
                // The appender writing inline takes this one along before it stops.
                return seq;
            }
            if st.may_write_inline(&self.shared.config) {
                st.leading = true;
                drop(st);
                self.write_inline();
                return seq;
            }
        }
        self.shared.release_and_wake(st);
        seq
    }

    /// The leader path: writes the queued decisions from the appender's own thread while the
    /// writer thread waits idle, so that a decision is on file when its append returns with
    /// no thread woken on either side (a wake-up is a futex call and a context switch each
    /// way: most of what recording a decision cost the gateway, BENCHMARKS.md). Decisions
    /// that arrive meanwhile are taken along, up to [`MAX_INLINE_BATCHES`] batches; anything
    /// else (a checkpoint to sign, a rotation, a flush, a failed write, a slow disk) is left
    /// to the writer thread, which is then woken. Called with `State::leading` set; clears
    /// it.
    fn write_inline(&self) {
        let capacity = self.shared.config.queue_capacity;
        let owner = self.writer.upgrade();
        // Never wait for the writer here: whoever holds it is writing, and will see the queue.
        let writer = owner.as_ref().and_then(|owner| match owner.try_lock() {
            Ok(writer) => Some(writer),
            Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        });
        let mut writer = writer.filter(|w| !w.fault.is_slow() && !w.rotation_due());
        let mut rotation_due = false;
        for _ in 0..MAX_INLINE_BATCHES {
            let Some(w) = writer.as_mut() else { break };
            let mut st = self.shared.lock();
            let only_decisions = st
                .queue
                .iter()
                .all(|item| matches!(item, Item::Entry { kind, .. } if *kind == Kind::Decision));
            if st.queue.is_empty() || st.prompt(capacity) || !only_decisions {
                break;
            }
            let items: Vec<Item> = st.queue.drain(..).collect();
            st.stats.queue_len = 0;
            st.first_queued_at = None;
            drop(st);
            let started = Instant::now();
            match w.write_items(&items) {
                Ok(written) => {
                    let slow = started.elapsed() > INLINE_WRITE_BUDGET;
                    {
                        let mut st = self.shared.lock();
                        st.stats.inline_batches += 1;
                        if slow {
                            st.inline_paused_until = Some(Instant::now() + INLINE_PAUSE);
                        }
                    }
                    w.publish(&written);
                    rotation_due = w.rotation_due();
                    if slow || rotation_due {
                        break;
                    }
                }
                Err(error) => {
                    // Rolled back to the last good length by `write_items`: the batch goes
                    // back to the head of the queue for the writer thread, whose retries and
                    // failure accounting apply as to any batch.
                    tracing::warn!(%error, "inline audit write failed; the writer thread retries it");
                    let mut st = self.shared.lock();
                    for item in items.into_iter().rev() {
                        st.queue.push_front(item);
                    }
                    st.stats.queue_len = st.queue.len();
                    st.inline_paused_until = Some(Instant::now() + INLINE_PAUSE);
                    break;
                }
            }
        }
        drop(writer);
        let mut st = self.shared.lock();
        st.leading = false;
        if !st.queue.is_empty() {
            // What is left (or was never the leader's to write) is the thread's, at once.
            st.first_queued_at.get_or_insert_with(Instant::now);
            st.urgent = true;
        } else if !rotation_due {
            // All written: the thread sleeps on, as it would have without these decisions.
            return;
        }
        self.shared.release_and_wake(st);
    }

    /// Asks for a checkpoint now (if anything is unsigned); it is written after the entries
    /// already queued.
    pub fn checkpoint_now(&self) {
        let mut st = self.shared.lock();
        if st.since_checkpoint > 0 && !st.closing {
            st.push_checkpoint();
            self.shared.release_and_wake(st);
        }
    }

    /// Waits until everything appended so far is written and synced (per the fsync policy),
    /// or `timeout` passes ([`AuditError::Backlogged`]).
    pub fn flush(&self, timeout: Duration) -> Result<(), AuditError> {
        let mut st = self.shared.lock();
        let target = st.next_seq;
        st.sync_requested = true;
        self.shared.release_and_wake(st);
        let st = self.shared.lock();
        self.wait_until(st, timeout, |st| {
            (st.stats.synced_upto >= target).then_some(Ok(()))
        })
    }

    /// Whether the writer has stopped (closed, or gave up on failing storage while closing).
    pub fn is_stopped(&self) -> bool {
        let st = self.shared.lock();
        st.stopped || st.closing
    }

    /// Counters for metrics and health.
    pub fn stats(&self) -> AuditStats {
        let st = self.shared.lock();
        AuditStats {
            next_seq: st.next_seq,
            queue_len: st.queue.len(),
            failing: st.failing.is_some(),
            ..st.stats.clone()
        }
    }

    /// Stops accepting entries, writes everything queued (gaps included), a final checkpoint
    /// and syncs; then stops the writer. Idempotent; also done on drop.
    pub fn close(&self) -> Result<(), AuditError> {
        {
            let mut st = self.shared.lock();
            if !st.closing {
                if st.since_checkpoint > 0 {
                    st.push_checkpoint();
                }
                st.closing = true;
            }
            self.shared.release_and_wake(st);
        }
        self.shared.notify_space();
        let handle = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
        let st = self.shared.lock();
        if st.stats.written_upto < st.next_seq {
            let path = self.shared.config.file_name.clone();
            let msg = st
                .stats
                .last_error
                .clone()
                .unwrap_or_else(|| "writer stopped".into());
            return Err(AuditError::Io {
                path,
                source: std::io::Error::other(msg),
            });
        }
        Ok(())
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

fn validate(c: &AuditConfig) -> Result<(), AuditError> {
    let bad = AuditError::InvalidConfig;
    if c.queue_capacity == 0 {
        return Err(bad("queue_capacity must be at least 1"));
    }
    if c.checkpoint_every == 0 {
        return Err(bad("checkpoint_every must be at least 1"));
    }
    if c.checkpoint_interval.is_zero() {
        return Err(bad("checkpoint_interval must be positive"));
    }
    if c.file_name.is_empty() || c.file_name.contains(['/', '\\']) || c.file_name.starts_with('.') {
        return Err(bad("file_name must be a plain file name"));
    }
    if let Some(id) = &c.log_id {
        if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad("log_id must be 1..=128 printable ASCII characters"));
        }
    }
    Ok(())
}

/// A log id unique per key, time and process: an identifier, not a secret.
fn new_log_id(signer: &dyn CheckpointSigner, now: u64) -> String {
    let mut h = Sha256::new();
    h.update(b"palisade/audit/log-id\0");
    h.update(signer.public_key());
    h.update(now.to_be_bytes());
    h.update(std::process::id().to_be_bytes());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    h.update(nanos.to_be_bytes());
    hex::encode(&h.finalize()[..16])
}

/// The name `<file_name>.NNNNNN` of rotated file number `index`.
pub(crate) fn rotated_name(file_name: &str, index: u32) -> String {
    format!("{file_name}.{index:06}")
}

/// The number in a rotated file's name, if `name` is one of `file_name`'s.
pub(crate) fn rotated_index(file_name: &str, name: &str) -> Option<u32> {
    let digits = name.strip_prefix(file_name)?.strip_prefix('.')?;
    if digits.len() != 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The rotated files of `file_name` in `dir`, in order.
fn rotated_files(dir: &Dir, file_name: &str) -> Vec<(u32, String)> {
    let mut found: Vec<(u32, String)> = dir
        .entries()
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            Some((rotated_index(file_name, &name)?, name))
        })
        .collect();
    found.sort();
    found
}

/// The number the next rotated file gets.
fn next_rotation_index(dir: &Dir, file_name: &str) -> u32 {
    rotated_files(dir, file_name)
        .last()
        .map_or(1, |(index, _)| index + 1)
}

/// The last rotated file and where its chain ends, if there is one.
fn last_rotated(
    dir: &Dir,
    file_name: &str,
) -> Result<Option<(String, super::VerifyReport)>, AuditError> {
    let Some((_, name)) = rotated_files(dir, file_name).pop() else {
        return Ok(None);
    };
    let bytes = dir.read(&name).map_err(io_err(&name))?;
    match verify_active(&bytes) {
        Ok(report) => Ok(Some((name, report))),
        Err(source) => Err(AuditError::Corrupt { path: name, source }),
    }
}
