//! The queue between appenders and the writer thread, and the state they share under one
//! mutex: reserving a seq and queueing (or dropping) under the same lock is what keeps the
//! file in seq order and lets gap entries take exactly the dropped seqs (SER-016).

use super::appender::AuditStats;
use super::entry::Kind;
use super::AuditConfig;
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};

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
    pub stats: AuditStats,
}

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
    pub config: AuditConfig,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent counters; keep logging.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn notify_space(&self) {
        self.space.notify_all();
        self.space_async.notify_waiters();
    }
}
