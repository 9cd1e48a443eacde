//! Stakeholder identity privacy (SER-011, SER-018, SER-025).
//!
//! An application's plugins are often written by its service provider, a third party to the
//! originators that talk to it. Unless the application's configuration records that those
//! stakeholders consented (`consent_real_identities = true`, SER-015), its **authorizers,
//! filters and the audit log** see a stable pseudonym instead of the originator ID:
//! `anon-` followed by the first 128 bits of HMAC-SHA256(app secret, originator), in hex.
//!
//! - Stable: the same originator gets the same pseudonym in one application across restarts,
//!   so policies, rate-limit forensics and audit trails still correlate.
//! - Unlinkable across applications: each application has its own secret, generated in the
//!   gateway keystore on first start (label `pseudonym`, scope of the app, encrypted at rest,
//!   never exported: SER-010). Two applications cannot join their views of one originator.
//! - **Authenticators see the real originator.** A credential is bound to a real identity (a
//!   token's holder `tkhd` is the real originator ID) and checking that binding is the
//!   authenticator's job; so the gateway runs an application's authenticators in a separate
//!   sandbox (`<app>.authn`) with the real request, then hands the authorizers the pseudonym,
//!   the authenticated flag and the roles it established — never the credential. That split
//!   lives in core ([`palisade_core::Runtime::evaluate`]), so every embedder gets it; this module
//!   supplies the keystore-backed [`Pseudonymizer`] it runs on.
//! - Policies name originators through the marker `"originator:<ID>"` in plugin configuration
//!   (and plainly in `groups`): the gateway replaces it with the pseudonym (or the real ID
//!   with consent) when it installs the plugin, so one policy text works both ways. Wildcard
//!   originator patterns (`C*`) cannot match pseudonyms by design; use roles or groups.
//! - Computed once per originator while it is recent: an HMAC through the keystore on every
//!   decision cost more than the rest of the gateway's share of it, so pseudonyms are kept in
//!   one bounded cache for all applications ([`PseudonymCache`], issue #18), keyed by the
//!   secret they were computed with; a new secret (a new [`Pseudonymizer`]) never finds the
//!   old one's entries.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use palisade_core::{PseudonymError, Pseudonyms};
use palisade_keys::{KeyError, KeyHandle, KeyKind, KeyScope, KeyStore};

pub use palisade_core::rewrite_markers;

/// The keystore label of each application's pseudonym secret.
pub(crate) const SECRET_LABEL: &str = "pseudonym";

/// What every pseudonym starts with.
const PSEUDONYM_PREFIX: &str = "anon-";

/// Computes one application's pseudonyms.
#[derive(Clone)]
pub struct Pseudonymizer {
    store: Arc<dyn KeyStore>,
    scope: KeyScope,
    handle: KeyHandle,
    /// This secret's key in the pseudonym cache: unique to the (keystore, scope, handle) this
    /// pseudonymizer was opened on, shared by its clones only.
    secret: u64,
}

/// The most pseudonyms the process keeps computed (all applications together). At most
/// [`MAX_CACHED_ORIGINATOR_BYTES`] + the 37-byte pseudonym + map overhead each: ~6 MiB in the
/// worst case.
pub const PSEUDONYM_CACHE_ENTRIES: usize = 16_384;

/// Originators longer than this are not cached (computed every time), so that the cache's
/// memory is bounded whatever a caller's originator limit.
pub const MAX_CACHED_ORIGINATOR_BYTES: usize = 256;

/// Independently locked parts of the cache, so that decisions of different originators
/// rarely wait for each other.
const SHARDS: usize = 16;

/// Recently computed pseudonyms, keyed by (secret, originator): an approximate LRU of two
/// generations per shard. Lookups search the current generation, then the previous one (a
/// hit there moves into the current one); when the current generation is full, it becomes
/// the previous one and the old previous one is dropped. So the most recently used half of
/// the capacity always stays, and the cache never holds more than its capacity.
pub struct PseudonymCache {
    shards: Vec<Mutex<Generations>>,
    /// Entries per generation per shard.
    generation_entries: usize,
    hasher: RandomState,
}

type BySecret = HashMap<u64, HashMap<Box<str>, Box<str>>>;

#[derive(Default)]
struct Generations {
    current: BySecret,
    current_entries: usize,
    previous: BySecret,
}

impl Generations {
    fn insert(&mut self, secret: u64, originator: &str, pseudonym: &str, limit: usize) {
        if self.current_entries >= limit {
            self.previous = std::mem::take(&mut self.current);
            self.current_entries = 0;
        }
        let previous = self
            .current
            .entry(secret)
            .or_default()
            .insert(originator.into(), pseudonym.into());
        if previous.is_none() {
            self.current_entries += 1;
        }
    }
}

impl PseudonymCache {
    /// A cache of at most `capacity` pseudonyms (rounded up to a multiple of twice the
    /// shard count).
    pub fn new(capacity: usize) -> PseudonymCache {
        PseudonymCache {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            generation_entries: capacity.div_ceil(2 * SHARDS).max(1),
            hasher: RandomState::new(),
        }
    }

    /// The process's cache, shared by every application.
    pub fn global() -> &'static PseudonymCache {
        static CACHE: OnceLock<PseudonymCache> = OnceLock::new();
        CACHE.get_or_init(|| PseudonymCache::new(PSEUDONYM_CACHE_ENTRIES))
    }

    fn shard(&self, secret: u64, originator: &str) -> std::sync::MutexGuard<'_, Generations> {
        let index = self.hasher.hash_one((secret, originator)) as usize % SHARDS;
        // A map is consistent between statements; a panic elsewhere cannot leave it half-made.
        self.shards[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The pseudonym of `originator` under `secret`: from the cache, or computed by
    /// `compute` and kept (errors are not kept: the next call tries again).
    pub fn get_or_compute<E>(
        &self,
        secret: u64,
        originator: &str,
        compute: impl FnOnce() -> Result<String, E>,
    ) -> Result<String, E> {
        if originator.len() > MAX_CACHED_ORIGINATOR_BYTES {
            return compute();
        }
        {
            let mut shard = self.shard(secret, originator);
            if let Some(found) = shard
                .current
                .get(&secret)
                .and_then(|by_originator| by_originator.get(originator))
            {
                return Ok(found.to_string());
            }
            let promoted = shard
                .previous
                .get_mut(&secret)
                .and_then(|by_originator| by_originator.remove(originator));
            if let Some(found) = promoted {
                let limit = self.generation_entries;
                shard.insert(secret, originator, &found, limit);
                return Ok(found.into());
            }
        }
        // Computed outside the lock: the keystore may be slow (an HSM).
        let pseudonym = compute()?;
        self.shard(secret, originator).insert(
            secret,
            originator,
            &pseudonym,
            self.generation_entries,
        );
        Ok(pseudonym)
    }

    /// Pseudonyms held now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                let shard = shard
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                let count = |map: &BySecret| map.values().map(HashMap::len).sum::<usize>();
                count(&shard.current) + count(&shard.previous)
            })
            .sum()
    }
}

/// Numbers every opened secret, so that cache entries of one never answer for another.
static NEXT_SECRET: AtomicU64 = AtomicU64::new(0);

impl Pseudonymizer {
    /// The application's pseudonymizer, generating its secret in `store` on first use.
    pub fn open(store: Arc<dyn KeyStore>, app: &str) -> Result<Pseudonymizer, KeyError> {
        let scope = KeyScope::App(app.to_string());
        let existing = store
            .list(&scope)?
            .into_iter()
            .find(|info| info.label == SECRET_LABEL && info.kind == KeyKind::HmacSecret);
        let handle = match existing {
            Some(info) => info.handle,
            None => store.generate(&scope, KeyKind::HmacSecret, SECRET_LABEL)?,
        };
        Ok(Pseudonymizer {
            store,
            scope,
            handle,
            secret: NEXT_SECRET.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// The pseudonym of `originator` in this application (from the process's cache when it
    /// was computed recently).
    pub fn pseudonym(&self, originator: &str) -> Result<String, KeyError> {
        self.pseudonym_in(PseudonymCache::global(), originator)
    }

    fn pseudonym_in(&self, cache: &PseudonymCache, originator: &str) -> Result<String, KeyError> {
        cache.get_or_compute(self.secret, originator, || self.compute(originator))
    }

    /// `anon-` and the first 128 bits of HMAC-SHA256(secret, originator), in hex.
    fn compute(&self, originator: &str) -> Result<String, KeyError> {
        let mac = self
            .store
            .hmac(&self.scope, &self.handle, originator.as_bytes())?;
        let mut pseudonym = String::with_capacity(PSEUDONYM_PREFIX.len() + 32);
        pseudonym.push_str(PSEUDONYM_PREFIX);
        pseudonym.push_str(&hex::encode(&mac[..16]));
        Ok(pseudonym)
    }

    /// Replaces every `"originator:<ID>"` string in a plugin configuration with the ID's
    /// pseudonym.
    pub fn rewrite_config(&self, value: &mut serde_json::Value) -> Result<(), KeyError> {
        rewrite_markers(value, &mut |id| self.pseudonym(id))
    }
}

impl Pseudonyms for Pseudonymizer {
    fn pseudonym(&self, originator: &str) -> Result<String, PseudonymError> {
        Pseudonymizer::pseudonym(self, originator).map_err(PseudonymError::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_keys::SoftwareKeyStore;

    #[test]
    fn pseudonyms_are_stable_per_app_and_differ_across_apps() {
        let store: Arc<dyn KeyStore> = Arc::new(SoftwareKeyStore::in_memory());
        let lights = Pseudonymizer::open(store.clone(), "lights").unwrap();
        let again = Pseudonymizer::open(store.clone(), "lights").unwrap();
        let meters = Pseudonymizer::open(store, "meters").unwrap();
        let a = lights.pseudonym("CAE1").unwrap();
        assert_eq!(a, again.pseudonym("CAE1").unwrap());
        assert_ne!(a, meters.pseudonym("CAE1").unwrap());
        assert_ne!(a, lights.pseudonym("CAE2").unwrap());
        assert!(a.starts_with("anon-") && a.len() == 37, "{a}");
    }

    #[test]
    fn cached_pseudonyms_are_the_computed_ones_and_a_new_secret_never_sees_old_entries() {
        let store: Arc<dyn KeyStore> = Arc::new(SoftwareKeyStore::in_memory());
        let cache = PseudonymCache::new(64);
        let lights = Pseudonymizer::open(store.clone(), "lights").unwrap();
        let first = lights.pseudonym_in(&cache, "CAE1").unwrap();
        assert_eq!(first, lights.compute("CAE1").unwrap());
        assert_eq!(lights.pseudonym_in(&cache, "CAE1").unwrap(), first, "a hit");
        assert_eq!(cache.len(), 1);
        // A clone shares the secret and its entries; another app's secret has its own.
        assert_eq!(lights.clone().pseudonym_in(&cache, "CAE1").unwrap(), first);
        let meters = Pseudonymizer::open(store.clone(), "meters").unwrap();
        assert_ne!(meters.pseudonym_in(&cache, "CAE1").unwrap(), first);
        assert_eq!(cache.len(), 2);

        // The secret is rotated: the old one deleted, a new one generated and opened.
        store
            .delete(&KeyScope::App("lights".into()), &lights.handle)
            .unwrap();
        let rotated = Pseudonymizer::open(store.clone(), "lights").unwrap();
        assert_ne!(rotated.handle, lights.handle);
        let after = rotated.pseudonym_in(&cache, "CAE1").unwrap();
        assert_ne!(after, first, "not the old secret's cached pseudonym");
        assert_eq!(after, rotated.compute("CAE1").unwrap());

        // An originator too long to cache is computed every time, and still right.
        let long = "C".repeat(MAX_CACHED_ORIGINATOR_BYTES + 1);
        assert_eq!(
            rotated.pseudonym_in(&cache, &long).unwrap(),
            rotated.compute(&long).unwrap()
        );
        assert_eq!(cache.len(), 3);
    }

    #[test]
    fn the_cache_stays_within_its_capacity_and_keeps_what_is_used() {
        let store: Arc<dyn KeyStore> = Arc::new(SoftwareKeyStore::in_memory());
        let app = Pseudonymizer::open(store, "lights").unwrap();
        let capacity = 4 * SHARDS;
        let cache = PseudonymCache::new(capacity);
        for n in 0..10 * capacity {
            let originator = format!("C{n}");
            assert_eq!(
                app.pseudonym_in(&cache, &originator).unwrap(),
                app.compute(&originator).unwrap()
            );
            // One originator in constant use is never dropped.
            let kept = app.pseudonym_in(&cache, "CAE-busy").unwrap();
            assert_eq!(kept, app.compute("CAE-busy").unwrap());
            assert!(cache.len() <= capacity, "{} > {capacity}", cache.len());
        }
        let mut computed = 0;
        let counted = cache
            .get_or_compute(app.secret, "CAE-busy", || {
                computed += 1;
                app.compute("CAE-busy")
            })
            .unwrap();
        assert_eq!((computed, counted), (0, app.compute("CAE-busy").unwrap()));
        // Errors are not kept.
        let failed: Result<String, &str> = cache.get_or_compute(app.secret, "CAE-x", || Err("hsm"));
        assert!(failed.is_err());
        assert_eq!(
            cache.get_or_compute(app.secret, "CAE-x", || Ok::<_, ()>("anon-x".into())),
            Ok("anon-x".to_string())
        );
    }
}
