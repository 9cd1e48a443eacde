//! Replay caches (SER-012): remember each single-use identifier until it expires.
//!
//! Entries are kept until their own expiry; after that a replay is refused anyway by the
//! expiry check, so forgetting it is safe. When the cache is full of unexpired entries it
//! refuses new ones ([`GroupError::ReplayCacheFull`]) rather than evicting: evicting an
//! unexpired entry would reopen a replay window (SER-001 bounds the memory).

use super::error::GroupError;
use std::collections::HashMap;

/// A bounded set of seen identifiers, each with its expiry (Unix seconds).
#[derive(Debug)]
pub struct ReplayCache {
    seen: HashMap<[u8; 32], u64>,
    capacity: usize,
}

impl ReplayCache {
    /// A cache holding at most `capacity` unexpired entries.
    pub fn new(capacity: usize) -> Self {
        ReplayCache {
            seen: HashMap::new(),
            capacity,
        }
    }

    /// Whether `id` was recorded and has not expired yet.
    pub fn contains(&self, id: &[u8; 32], now: u64) -> bool {
        self.seen.get(id).is_some_and(|&exp| exp > now)
    }

    /// Records `id` until `expires_at`; `Ok(false)` if it was already recorded (a replay).
    pub fn insert(&mut self, id: [u8; 32], expires_at: u64, now: u64) -> Result<bool, GroupError> {
        if self.contains(&id, now) {
            return Ok(false);
        }
        if self.seen.len() >= self.capacity {
            self.seen.retain(|_, &mut exp| exp > now);
            if self.seen.len() >= self.capacity {
                return Err(GroupError::ReplayCacheFull);
            }
        }
        self.seen.insert(id, expires_at);
        Ok(true)
    }

    /// Number of entries (expired ones included until the next purge).
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// A log of recently issued challenges (digest → group), kept past their expiry, used only to
/// say *why* an answer with the wrong challenge digest is refused: replayed from an earlier
/// challenge of the same group, made for another group, or for a challenge never issued. Any
/// mismatch is refused whatever this log says, so evicting its oldest entries is safe.
#[derive(Debug)]
pub(crate) struct IssuedLog {
    map: HashMap<[u8; 32], (String, u64)>,
    order: std::collections::VecDeque<[u8; 32]>,
    capacity: usize,
}

impl IssuedLog {
    pub(crate) fn new(capacity: usize) -> Self {
        IssuedLog {
            map: HashMap::new(),
            order: Default::default(),
            capacity,
        }
    }

    pub(crate) fn record(&mut self, digest: [u8; 32], group: &str, issued_at: u64) {
        if self.order.len() >= self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
        self.order.push_back(digest);
        self.map.insert(digest, (group.to_owned(), issued_at));
    }

    /// Why an answer naming `digest` does not belong to the current challenge of `group`.
    pub(crate) fn classify(&self, digest: &[u8; 32], group: &str) -> super::Rejection {
        match self.map.get(digest) {
            Some((g, _)) if g == group => super::Rejection::AnswerReplayed,
            Some(_) => super::Rejection::AnswerForOtherGroup,
            None => super::Rejection::AnswerForUnknownChallenge,
        }
    }
}
