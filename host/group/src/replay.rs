//! Replay caches (SER-012): remember each single-use identifier until it expires.
//!
//! Entries are kept until their own expiry; after that a replay is refused anyway by the
//! expiry check, so forgetting it is safe. When the cache is full of unexpired entries it
//! refuses new ones ([`GroupError::ReplayCacheFull`]) rather than evicting: evicting an
//! unexpired entry would reopen a replay window (SER-001 bounds the memory). Keys are fixed
//! 32-byte digests whatever the caller identifies by, and expired entries leave in expiry
//! order, so a full cache costs a heap peek per refusal, not a scan of the table.
//!
//! The same cache serves the admin API's request nonces
//! (the gateway's admin replay cache).

use super::error::GroupError;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// A bounded set of seen identifiers, each with its expiry (Unix seconds).
#[derive(Debug)]
pub struct ReplayCache {
    seen: HashMap<[u8; 32], u64>,
    /// The same entries by expiry, soonest first.
    expiries: BinaryHeap<Reverse<(u64, [u8; 32])>>,
    capacity: usize,
}

impl ReplayCache {
    /// A cache holding at most `capacity` unexpired entries (about 100 bytes each).
    pub fn new(capacity: usize) -> Self {
        ReplayCache {
            seen: HashMap::new(),
            expiries: BinaryHeap::new(),
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
        self.purge(now);
        if self.seen.len() >= self.capacity {
            return Err(GroupError::ReplayCacheFull);
        }
        self.seen.insert(id, expires_at);
        self.expiries.push(Reverse((expires_at, id)));
        Ok(true)
    }

    /// Drops the entries that have expired by `now`.
    fn purge(&mut self, now: u64) {
        while let Some(&Reverse((expiry, id))) = self.expiries.peek() {
            if expiry > now {
                break;
            }
            self.expiries.pop();
            // Every map entry has exactly one heap entry: an expired id recorded again was
            // purged here before its new entry went in.
            if self.seen.get(&id) == Some(&expiry) {
                self.seen.remove(&id);
            }
        }
    }

    /// Number of entries (expired ones included until the next insertion).
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// The entries still valid at `now`, each with its expiry (for caches persisted to disk,
    /// the gateway's token replay cache).
    pub fn entries(&self, now: u64) -> impl Iterator<Item = (&[u8; 32], u64)> + '_ {
        self.seen
            .iter()
            .filter(move |(_, &expiry)| expiry > now)
            .map(|(id, &expiry)| (id, expiry))
    }

    /// The most entries it holds.
    pub fn capacity(&self) -> usize {
        self.capacity
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

    /// The group `digest` was issued for, if it is still remembered.
    pub(crate) fn group(&self, digest: &[u8; 32]) -> Option<&str> {
        self.map.get(digest).map(|(g, _)| g.as_str())
    }

    /// The remembered groups of those digests.
    pub(crate) fn groups_of<'a>(
        &self,
        digests: impl Iterator<Item = &'a [u8; 32]>,
    ) -> HashMap<[u8; 32], String> {
        digests
            .filter_map(|d| Some((*d, self.group(d)?.to_owned())))
            .collect()
    }
}

/// Why an answer naming `digest` does not belong to the current challenge of `group`, given
/// the groups of the issued challenges the store still remembers.
pub(crate) fn classify(
    issued: &HashMap<[u8; 32], String>,
    digest: &[u8; 32],
    group: &str,
) -> super::Rejection {
    match issued.get(digest) {
        Some(g) if g == group => super::Rejection::AnswerReplayed,
        Some(_) => super::Rejection::AnswerForOtherGroup,
        None => super::Rejection::AnswerForUnknownChallenge,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: u64) -> [u8; 32] {
        let mut id = [0u8; 32];
        id[..8].copy_from_slice(&i.to_be_bytes());
        id
    }

    /// A million distinct identifiers through a cache of 4,096, each valid for 60 s, arriving
    /// faster and slower than the cache can hold: it never holds more than its capacity,
    /// never forgets an identifier within its validity (every recent one is still a replay),
    /// and refuses new ones while it is full of valid ones.
    #[test]
    fn a_million_identifiers_stay_within_the_capacity_and_nothing_valid_is_forgotten() {
        let capacity = 4096;
        let window = 60;
        let mut cache = ReplayCache::new(capacity);
        let mut accepted: Vec<(u64, u64)> = Vec::new();
        let mut refused = 0u64;
        let mut now = 1_000_000u64;
        for i in 0..1_000_000u64 {
            // 100 a second for the first half (6,000 valid at once: more than fit), then
            // 50 a second (3,000 valid at once: all fit).
            if i % if i < 500_000 { 100 } else { 50 } == 0 {
                now += 1;
            }
            match cache.insert(id(i), now + window, now) {
                Ok(true) => accepted.push((i, now + window)),
                Ok(false) => panic!("{i} is new"),
                Err(GroupError::ReplayCacheFull) => refused += 1,
                Err(other) => panic!("{other}"),
            }
            assert!(cache.len() <= capacity);
            assert!(cache.expiries.len() <= capacity);
            if i % 10_007 == 0 {
                // Every accepted identifier still valid is still known.
                for &(old, expiry) in accepted.iter().rev().take_while(|(_, e)| *e > now) {
                    assert!(
                        cache.contains(&id(old), now),
                        "{old} forgotten before {expiry}"
                    );
                    assert_eq!(cache.insert(id(old), expiry, now).ok(), Some(false));
                }
            }
        }
        assert!(refused > 0, "the first half overflows the cache");
        assert_eq!(accepted.len() as u64 + refused, 1_000_000);
        // The second half fits: nothing refused once the rate is within the capacity.
        assert!(accepted.iter().any(|(i, _)| *i == 999_999));
    }

    #[test]
    fn an_expired_identifier_may_be_recorded_again() {
        let mut cache = ReplayCache::new(2);
        assert_eq!(cache.insert(id(1), 110, 100).ok(), Some(true));
        assert_eq!(cache.insert(id(1), 110, 105).ok(), Some(false));
        assert_eq!(cache.insert(id(2), 110, 105).ok(), Some(true));
        assert!(matches!(
            cache.insert(id(3), 120, 105),
            Err(GroupError::ReplayCacheFull)
        ));
        // At 110 both have expired: room again, and id 1 is new again (its own expiry
        // check refuses a real replay of it).
        assert_eq!(cache.insert(id(1), 130, 110).ok(), Some(true));
        assert_eq!(cache.insert(id(3), 130, 110).ok(), Some(true));
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.expiries.len(), 2);
    }
}
