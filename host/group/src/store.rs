//! Where the server role keeps its state: open challenges, completed ones (SER-012 replay
//! records), the challenge requests already served, the log of issued challenges, and the
//! registry of groups, member keys and gateways (SER-027).
//!
//! [`ServerStore`] is the one interface; [`MemoryStore`] (the default) keeps everything in
//! this process, bounded as before (SER-001). A store shared by several server instances
//! (`palisade-group-store`, PostgreSQL) must make every single-use step atomic across them:
//! [`ServerStore::take`] and [`ServerStore::record_request`] succeed for exactly one caller
//! whichever instance it runs in, so a nonce consumed by one instance is refused by all.
//!
//! Methods block (a shared store waits on the network); callers on an async runtime call the
//! server from a blocking thread. A store that cannot answer returns
//! [`GroupError::StateUnavailable`]: the server then refuses the request (fails closed), it
//! never decides on partial state.

use super::error::GroupError;
use super::replay::{IssuedLog, ReplayCache};
use super::server::ServerRegistry;

use super::Mode;
use ed25519_dalek::VerifyingKey;
use std::collections::HashMap;
use std::sync::Mutex;

/// Most challenges open at once (SER-001); beyond it, challenges are refused until some expire.
pub const MAX_OPEN_CHALLENGES: usize = 4096;
/// Most completed challenges remembered until their expiry (SER-012).
pub const MAX_COMPLETED: usize = 4 * MAX_OPEN_CHALLENGES;
/// Most challenge requests remembered at once (SER-001, SER-012).
pub const MAX_REQUESTS: usize = 16_384;
/// Issued challenges remembered to name an answer's replay (the in-memory log's size).
pub const MAX_ISSUED: usize = 4 * MAX_OPEN_CHALLENGES;

/// An issued challenge waiting for its answer.
pub struct PendingChallenge {
    /// Its mode.
    pub mode: Mode,
    /// The group challenged.
    pub group: String,
    /// The gateway it was issued to.
    pub gateway: String,
    /// The challenge's digest (what answers sign).
    pub digest: [u8; 32],
    /// Its expiry (Unix seconds).
    pub expires_at: u64,
    /// Independent mode: the server's ephemeral X25519 secret (SER-028). A shared store
    /// must protect it as it protects the server's keys (it opens the round's sessions).
    pub ephemeral: Option<x25519_dalek::StaticSecret>,
}

/// What a store knows of a nonce.
pub enum Lookup {
    /// An open (possibly expired) challenge.
    Open(PendingChallenge),
    /// Completed already: its nonce is spent (SER-012).
    Used,
    /// Never issued here, or forgotten after its expiry.
    Unknown,
}

/// Why a store could not answer. The request is refused; the server never falls back to
/// state of its own.
#[derive(Debug, thiserror::Error)]
#[error("{what}")]
pub struct StoreError {
    what: String,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl StoreError {
    /// A failure of `what` (e.g. "shared state postgres://db/palisade"), keeping its cause.
    pub fn new(
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        StoreError {
            what: what.into(),
            source: source.into(),
        }
    }
}

impl From<StoreError> for GroupError {
    fn from(e: StoreError) -> Self {
        GroupError::StateUnavailable(e)
    }
}

/// The server role's state (see the module documentation). Every method may fail with
/// [`GroupError::StateUnavailable`].
pub trait ServerStore: Send + Sync {
    /// Registers (or replaces) a gateway's identity key.
    fn add_gateway(&self, gateway: &str, key: &VerifyingKey) -> Result<(), GroupError>;
    /// A gateway's identity key, if registered.
    fn gateway_key(&self, gateway: &str) -> Result<Option<VerifyingKey>, GroupError>;
    /// Registers a member key in a group (creating the group); at most [`MAX_MEMBERS`](crate::wire::MAX_MEMBERS)
    /// members a group ([`GroupError::TooManyMembers`]).
    fn add_member(&self, group: &str, device: &str, key: &VerifyingKey) -> Result<(), GroupError>;
    /// Whether the group is registered.
    fn has_group(&self, group: &str) -> Result<bool, GroupError>;
    /// A group's members and their keys, if the group is registered.
    fn members(&self, group: &str) -> Result<Option<HashMap<String, VerifyingKey>>, GroupError>;
    /// Grants (`true`) or withdraws a representation right (SER-027). Granting needs a
    /// registered group and gateway.
    fn set_representation(
        &self,
        group: &str,
        gateway: &str,
        allowed: bool,
    ) -> Result<(), GroupError>;
    /// Whether `gateway` may represent `group`.
    fn may_represent(&self, group: &str, gateway: &str) -> Result<bool, GroupError>;
    /// Replaces the whole registry with `registry`, at once (a registry file loaded at start).
    fn replace_registry(&self, registry: &ServerRegistry) -> Result<(), GroupError>;

    /// Opens a challenge under `nonce`; [`GroupError::ReplayCacheFull`] when
    /// [`MAX_OPEN_CHALLENGES`] unexpired ones are open.
    fn open(
        &self,
        nonce: [u8; 32],
        challenge: PendingChallenge,
        now: u64,
    ) -> Result<(), GroupError>;
    /// What is known of `nonce` (nothing is consumed).
    fn lookup(&self, nonce: &[u8; 32], now: u64) -> Result<Lookup, GroupError>;
    /// Consumes the open challenge of `nonce` and records it completed until its expiry,
    /// atomically: of any number of concurrent callers (in any instance sharing the store)
    /// exactly one gets it; the others get `None`.
    fn take(&self, nonce: &[u8; 32], now: u64) -> Result<Option<PendingChallenge>, GroupError>;
    /// Logs an issued challenge's digest and group (to name replayed answers).
    fn record_issued(
        &self,
        digest: [u8; 32],
        group: &str,
        issued_at: u64,
    ) -> Result<(), GroupError>;
    /// The groups of those `digests` that were issued and are still remembered.
    fn issued_groups(&self, digests: &[[u8; 32]]) -> Result<HashMap<[u8; 32], String>, GroupError>;
    /// Records a signed challenge request's nonce until `expires_at`: `Ok(true)` for the one
    /// caller that recorded it first, `Ok(false)` for a replay (SER-012), atomically across
    /// instances; [`GroupError::ReplayCacheFull`] when [`MAX_REQUESTS`] are remembered.
    fn record_request(
        &self,
        nonce: [u8; 32],
        expires_at: u64,
        now: u64,
    ) -> Result<bool, GroupError>;
}

struct Exchanges {
    pending: HashMap<[u8; 32], PendingChallenge>,
    completed: ReplayCache,
    issued: IssuedLog,
    requests: ReplayCache,
}

/// The default store: this process's memory, lost at exit, seen by no other instance.
pub struct MemoryStore {
    registry: Mutex<ServerRegistry>,
    exchanges: Mutex<Exchanges>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            registry: Mutex::default(),
            exchanges: Mutex::new(Exchanges {
                pending: HashMap::new(),
                completed: ReplayCache::new(MAX_COMPLETED),
                issued: IssuedLog::new(MAX_ISSUED),
                requests: ReplayCache::new(MAX_REQUESTS),
            }),
        }
    }
}

/// A panic elsewhere must not take the store down: each step leaves it consistent.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ServerStore for MemoryStore {
    fn add_gateway(&self, gateway: &str, key: &VerifyingKey) -> Result<(), GroupError> {
        lock(&self.registry).add_gateway(gateway, key.as_bytes())
    }
    fn gateway_key(&self, gateway: &str) -> Result<Option<VerifyingKey>, GroupError> {
        Ok(lock(&self.registry).gateway(gateway))
    }
    fn add_member(&self, group: &str, device: &str, key: &VerifyingKey) -> Result<(), GroupError> {
        lock(&self.registry).add_member(group, device, key.as_bytes())
    }
    fn has_group(&self, group: &str) -> Result<bool, GroupError> {
        Ok(lock(&self.registry).members(group).is_some())
    }
    fn members(&self, group: &str) -> Result<Option<HashMap<String, VerifyingKey>>, GroupError> {
        Ok(lock(&self.registry).members(group).cloned())
    }
    fn set_representation(
        &self,
        group: &str,
        gateway: &str,
        allowed: bool,
    ) -> Result<(), GroupError> {
        let mut r = lock(&self.registry);
        if allowed {
            r.allow_representation(group, gateway)
        } else {
            r.revoke_representation(group, gateway);
            Ok(())
        }
    }
    fn may_represent(&self, group: &str, gateway: &str) -> Result<bool, GroupError> {
        Ok(lock(&self.registry).may_represent(group, gateway))
    }
    fn replace_registry(&self, registry: &ServerRegistry) -> Result<(), GroupError> {
        *lock(&self.registry) = registry.clone();
        Ok(())
    }

    fn open(
        &self,
        nonce: [u8; 32],
        challenge: PendingChallenge,
        now: u64,
    ) -> Result<(), GroupError> {
        let mut x = lock(&self.exchanges);
        x.pending.retain(|_, p| p.expires_at > now);
        if x.pending.len() >= MAX_OPEN_CHALLENGES {
            return Err(GroupError::ReplayCacheFull);
        }
        x.pending.insert(nonce, challenge);
        Ok(())
    }
    fn lookup(&self, nonce: &[u8; 32], now: u64) -> Result<Lookup, GroupError> {
        let x = lock(&self.exchanges);
        if x.completed.contains(nonce, now) {
            return Ok(Lookup::Used);
        }
        Ok(match x.pending.get(nonce) {
            Some(p) => Lookup::Open(PendingChallenge {
                mode: p.mode,
                group: p.group.clone(),
                gateway: p.gateway.clone(),
                digest: p.digest,
                expires_at: p.expires_at,
                ephemeral: p.ephemeral.clone(),
            }),
            None => Lookup::Unknown,
        })
    }
    fn take(&self, nonce: &[u8; 32], now: u64) -> Result<Option<PendingChallenge>, GroupError> {
        let mut x = lock(&self.exchanges);
        let Some(p) = x.pending.remove(nonce) else {
            return Ok(None);
        };
        x.completed.insert(*nonce, p.expires_at, now)?;
        Ok(Some(p))
    }
    fn record_issued(
        &self,
        digest: [u8; 32],
        group: &str,
        issued_at: u64,
    ) -> Result<(), GroupError> {
        lock(&self.exchanges)
            .issued
            .record(digest, group, issued_at);
        Ok(())
    }
    fn issued_groups(&self, digests: &[[u8; 32]]) -> Result<HashMap<[u8; 32], String>, GroupError> {
        let x = lock(&self.exchanges);
        Ok(digests
            .iter()
            .filter_map(|d| Some((*d, x.issued.group(d)?.to_owned())))
            .collect())
    }
    fn record_request(
        &self,
        nonce: [u8; 32],
        expires_at: u64,
        now: u64,
    ) -> Result<bool, GroupError> {
        lock(&self.exchanges)
            .requests
            .insert(nonce, expires_at, now)
    }
}
