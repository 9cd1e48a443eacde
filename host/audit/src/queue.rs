//! The queue between appenders and the writer thread, and the state they share under one
//! mutex: reserving a seq and queueing (or dropping) under the same lock is what keeps the
//! file in seq order and lets gap entries take exactly the dropped seqs (SER-016).

use super::appender::AuditStats;
use super::entry::Kind;
use super::{AuditConfig, FsyncPolicy};
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Decision entries dropped back to back (their seqs are reserved for one gap entry).
#[derive(Debug, Clone)]
pub(crate) struct DropRange {
    pub first_seq: u64,
    pub last_seq: u64,
    pub first_time: u64,
    pub last_time: u64,
}

pub(crate) enum Item {
    Entry {
        seq: u64,
        time: u64,
        kind: Kind,
        payload: String,
    },
    Checkpoint {
        seq: u64,
    },
    Gap(DropRange),
    /// Close the active file and continue the chain in a new one (always the last item of
    /// its batch: reserved under the lock right before the writer takes the queue).
    Rotate {
        seq: u64,
    },
}

/// What the writer thread is doing, so that appenders signal it only when a signal changes
/// something: on Linux every condvar notify is a futex syscall, too much for each decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriterState {
    /// Running, or already signalled: it looks at the queue before it waits again.
    Busy,
    /// Waiting for work (or for the next time-based checkpoint).
    Idle,
    /// Holding back queued decisions for [`AuditConfig::batch_delay`] to write them as one
    /// batch; only work that must not wait ([`State::prompt`]) cuts this short.
    Coalescing,
}

pub(crate) struct State {
    pub queue: VecDeque<Item>,
    pub drops: VecDeque<DropRange>,
    pub next_seq: u64,
    pub since_checkpoint: u64,
    pub checkpoint_every: u64,
    pub sync_requested: bool,
    pub closing: bool,
    pub stopped: bool,
    pub writer: WriterState,
    /// Something queued must not wait for the batch delay (a checkpoint, or an admin,
    /// integrity or system entry); cleared when the writer takes the batch.
    pub urgent: bool,
    /// When the oldest queued entry arrived: the batch delay counts from here, so an entry
    /// that waited while the writer was busy is not held back again.
    pub first_queued_at: Option<Instant>,
    /// Set by the writer while its writes fail (the error), cleared by the next good write:
    /// decisions are refused (or dropped into a gap) meanwhile instead of queued.
    pub failing: Option<String>,
    /// An appender is writing decisions inline ([`super::AuditLog`]'s leader path): the
    /// decisions queued meanwhile are its to write, so their appenders signal nobody.
    pub leading: bool,
    /// Inline writes are paused until then, because one took longer than
    /// [`INLINE_WRITE_BUDGET`] or failed: a slow or failing disk is the writer thread's to
    /// wait on, never a caller's.
    pub inline_paused_until: Option<Instant>,
    /// Threads waiting on [`Shared::done`] (flush, close, an embedder's blocking wait): a
    /// batch notifies it only if there are any, since every notify is a futex call and
    /// decisions written inline would otherwise pay one each.
    pub done_waiters: usize,
    pub stats: AuditStats,
}

/// The longest an appender's inline write may take before inline writes pause for
/// [`INLINE_PAUSE`] and the writer thread takes every batch (a write to the page cache takes
/// microseconds; longer means a slow or throttled disk).
pub(crate) const INLINE_WRITE_BUDGET: Duration = Duration::from_millis(1);

/// How long inline writes pause after one exceeded [`INLINE_WRITE_BUDGET`] or failed.
pub(crate) const INLINE_PAUSE: Duration = Duration::from_secs(1);

/// How many batches a leading appender writes at most before it hands what is left to the
/// writer thread: it is answering a request of its own.
pub(crate) const MAX_INLINE_BATCHES: usize = 4;

impl State {
    pub fn reserve(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.since_checkpoint += 1;
        seq
    }

    /// Reserves the next seq for a checkpoint, queued behind everything before it (so it
    /// signs exactly the entries reserved before it).
    pub fn push_checkpoint(&mut self) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.push_back(Item::Checkpoint { seq });
        self.since_checkpoint = 0;
        self.urgent = true;
    }

    /// Whether the queued work must be written now rather than after the batch delay: a
    /// checkpoint or non-decision entry, a flush or close, dropped decisions, or a queue
    /// half full (waiting longer would start dropping decisions into gaps).
    pub fn prompt(&self, capacity: usize) -> bool {
        self.urgent
            || self.sync_requested
            || self.closing
            || !self.drops.is_empty()
            || self.queue.len().saturating_mul(2) >= capacity
    }

    /// Whether the queued work may be written by an appender inline, now: only decisions are
    /// queued (nothing [`State::prompt`]: no checkpoint to sign, no flush, close or gap), the
    /// writer thread is idle and nobody else leads, storage is not failing, inline writes are
    /// not paused, and the configuration writes decisions as soon as they arrive.
    pub fn may_write_inline(&self, config: &AuditConfig) -> bool {
        self.writer == WriterState::Idle
            && !self.leading
            && !self.stopped
            && self.failing.is_none()
            && config.batch_delay.is_zero()
            && config.fsync != FsyncPolicy::EveryEntry
            && !self.prompt(config.queue_capacity)
            && self
                .inline_paused_until
                .is_none_or(|until| Instant::now() >= until)
    }

    /// Whether the caller (who just changed the state) must notify the writer: only if it
    /// waits idle, or coalesces and the work became [`State::prompt`]. The writer is marked
    /// busy at once, so the appenders behind this one do not signal it again.
    #[must_use = "notify `Shared::work` (after unlocking) when true"]
    pub fn wake_writer(&mut self, capacity: usize) -> bool {
        let wake = match self.writer {
            WriterState::Busy => false,
            WriterState::Idle => true,
            WriterState::Coalescing => self.prompt(capacity),
        };
        if wake {
            self.writer = WriterState::Busy;
            self.stats.writer_wakeups += 1;
        }
        wake
    }

    /// A checkpoint once `checkpoint_every` seqs are unsigned. Not onto a full queue: while
    /// storage is stalled the count keeps growing and the next queued entry brings it, so
    /// dropped decisions never grow the queue.
    pub fn maybe_checkpoint(&mut self, capacity: usize) {
        if self.since_checkpoint >= self.checkpoint_every && self.queue.len() < capacity {
            self.push_checkpoint();
        }
    }
}

pub(crate) struct Shared {
    pub state: Mutex<State>,
    /// Wakes the writer.
    pub work: Condvar,
    /// Wakes admin appenders waiting for queue space.
    pub space: Condvar,
    /// Wakes flush and close.
    pub done: Condvar,
    pub space_async: tokio::sync::Notify,
    /// Every seq below the value is on file (`write(2)` done): what
    /// [`super::AuditLog::wait_written`] awaits. Closed when the writer stops.
    pub written: tokio::sync::watch::Sender<u64>,
    pub config: AuditConfig,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent counters; keep logging.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Releases the lock and signals the writer if [`State::wake_writer`] says so (after
    /// unlocking, or the woken writer would block on the lock straight away).
    pub fn release_and_wake(&self, mut st: MutexGuard<'_, State>) {
        let wake = st.wake_writer(self.config.queue_capacity);
        drop(st);
        if wake {
            self.work.notify_one();
        }
    }

    pub fn notify_space(&self) {
        self.space.notify_all();
        self.space_async.notify_waiters();
    }
}
