//! The `tkid` replay cache (SER-012): a oneM2M token accepted by an app whose originators are
//! authenticated by `token` is used once. Its ID is remembered until the token's own expiry
//! (`tkna`); after that the token is refused as expired anyway, so forgetting it is safe.
//!
//! - **Shared and host-side.** One cache for the whole gateway, outside every sandbox: every
//!   instance of every app consults the same entries, and no plugin can forget or forge one.
//!   Entries are SHA-256 digests of issuer and token ID, so a long `tkid` costs no more than a
//!   short one and two issuers' IDs never collide.
//! - **Bounded.** At most `[token_replay] max_entries` entries (the in-memory part is
//!   [`palisade_group::ReplayCache`], the same cache the group and admin replay checks
//!   use). When it is full of unexpired entries a new token is refused (fail closed, counted
//!   in `palisade_token_replay_refused_total{reason="full"}`): an unexpired ID is never
//!   evicted to make room, which would reopen its replay window.
//! - **Surviving restart.** Each accepted ID is appended to `<data>/token-replay.log` and
//!   synced to disk before the request it came with is answered, so a replay after a restart
//!   (or a crash) is caught. The log is compacted (live entries written to a temporary file,
//!   synced, renamed over it) at start and whenever it holds more than twice the live
//!   entries, so it never grows past about twice the cache. A torn last line (a crash while
//!   appending) is skipped at start; its token was never answered. A token whose ID cannot
//!   be written is refused (`reason="unwritable"`), like a full cache.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use palisade_group::{GroupError, ReplayCache};

/// The log's file name under the data folder.
pub const LOG_FILE: &str = "token-replay.log";

/// `[token_replay]`: the `tkid` replay cache.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TokenReplayConfig {
    /// Token IDs remembered at once, each until its token's `tkna` (about 100 bytes of memory
    /// and 90 bytes of log each; 6.4 MiB and 5.8 MiB at the default). When it is full of
    /// unexpired IDs, new tokens are refused (5000 / HTTP 500, decide 503) until some expire: size it for the
    /// tokens accepted within the longest token lifetime your issuers grant. Default 65,536;
    /// 0 is refused.
    pub max_entries: usize,
}

impl Default for TokenReplayConfig {
    fn default() -> Self {
        TokenReplayConfig {
            max_entries: 65_536,
        }
    }
}

/// A token's entry: who issued it, its ID, and until when it is remembered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenId {
    digest: [u8; 32],
    /// `tkna`, seconds since the Unix epoch.
    pub expires_at: u64,
}

impl TokenId {
    /// The entry of token `tkid` of issuer `tkis`, valid until `expires_at`.
    pub fn new(issuer: &str, tkid: &str, expires_at: u64) -> TokenId {
        let mut hash = Sha256::new();
        hash.update(b"palisade tkid\0");
        hash.update((issuer.len() as u64).to_be_bytes());
        hash.update(issuer.as_bytes());
        hash.update(tkid.as_bytes());
        TokenId {
            digest: hash.finalize().into(),
            expires_at,
        }
    }
}

/// Why a token's ID was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The ID was accepted before and has not expired: a replay.
    #[error("token {0} was already used (tkid replay)")]
    Replayed(usize),
    /// The cache is full of unexpired IDs.
    #[error("the token replay cache is full ({0} unexpired token IDs, [token_replay] max_entries): tokens are refused until some expire")]
    Full(usize),
    /// The ID could not be made durable.
    #[error("the token replay log {path} cannot be written")]
    Unwritable {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The gateway's `tkid` cache (see the module documentation).
pub struct TokenReplayCache {
    state: Mutex<State>,
    path: PathBuf,
    replayed: AtomicU64,
    full: AtomicU64,
    unwritable: AtomicU64,
}

struct State {
    cache: ReplayCache,
    log: File,
    /// Lines in the log (live or not).
    lines: usize,
}

impl TokenReplayCache {
    /// Opens (or creates) the log in `data_dir`, keeping the entries unexpired at `now`.
    pub fn open(
        data_dir: &Path,
        config: &TokenReplayConfig,
        now: u64,
    ) -> std::io::Result<TokenReplayCache> {
        let path = data_dir.join(LOG_FILE);
        let mut cache = ReplayCache::new(config.max_entries.max(1));
        let mut skipped = 0usize;
        match File::open(&path) {
            Ok(file) => {
                for line in BufReader::new(file).split(b'\n') {
                    let line = line?;
                    match parse_line(&line) {
                        // More unexpired entries than the capacity (it was lowered): the
                        // rest still count (a replay must not pass because the operator
                        // shrank the cache), so the capacity grows to hold them.
                        // Expired: refused by the expiry check, nothing to remember.
                        Some((_, expires_at)) if expires_at <= now => {}
                        Some((digest, expires_at)) => {
                            if matches!(
                                cache.insert(digest, expires_at, now),
                                Err(GroupError::ReplayCacheFull)
                            ) {
                                let mut grown = ReplayCache::new(cache.capacity() * 2);
                                for (id, expiry) in cache.entries(now) {
                                    let _ = grown.insert(*id, expiry, now);
                                }
                                let _ = grown.insert(digest, expires_at, now);
                                cache = grown;
                            }
                        }
                        None => skipped += 1,
                    }
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
        if skipped > 0 {
            tracing::warn!(path = %path.display(), skipped, "token replay log: unreadable lines skipped (a crash while appending leaves one)");
        }
        let (log, lines) = compact(&path, &cache, now)?;
        Ok(TokenReplayCache {
            state: Mutex::new(State { cache, log, lines }),
            path,
            replayed: AtomicU64::new(0),
            full: AtomicU64::new(0),
            unwritable: AtomicU64::new(0),
        })
    }

    /// The index of the first of `tokens` already used, if any (a cheap look-up before the
    /// plugins run; [`Self::accept`] decides for good).
    pub fn used(&self, tokens: &[TokenId], now: u64) -> Option<usize> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        tokens
            .iter()
            .position(|token| state.cache.contains(&token.digest, now))
    }

    /// Records every one of `tokens` as used, durably, or none of them: refused when one was
    /// used before (also within `tokens`), when the cache has no room for all, or when the
    /// log cannot be written.
    pub fn accept(&self, tokens: &[TokenId], now: u64) -> Result<(), ReplayError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for (index, token) in tokens.iter().enumerate() {
            let repeated = tokens[..index].iter().any(|t| t.digest == token.digest);
            if repeated || state.cache.contains(&token.digest, now) {
                self.replayed.fetch_add(1, Ordering::Relaxed);
                return Err(ReplayError::Replayed(index + 1));
            }
        }
        // Room for all before any goes in: a request is accepted whole or not at all.
        // `insert` purges expired entries first, so count what is live.
        let live = state.cache.entries(now).count();
        if live + tokens.len() > state.cache.capacity() {
            self.full.fetch_add(1, Ordering::Relaxed);
            return Err(ReplayError::Full(live));
        }
        let mut text = String::with_capacity(tokens.len() * 90);
        for token in tokens {
            text.push_str(&format!(
                "{} {}\n",
                hex::encode(token.digest),
                token.expires_at
            ));
        }
        // Durable before the answer: a crash after it still remembers the token.
        let written = state
            .log
            .write_all(text.as_bytes())
            .and_then(|()| state.log.sync_data());
        if let Err(source) = written {
            self.unwritable.fetch_add(1, Ordering::Relaxed);
            return Err(ReplayError::Unwritable {
                path: self.path.clone(),
                source,
            });
        }
        for token in tokens {
            // Room was checked above and the lock is held: this cannot be full.
            let _ = state.cache.insert(token.digest, token.expires_at, now);
        }
        state.lines += tokens.len();
        let live = state.cache.len();
        if state.lines > 2 * live + 1024 {
            match compact(&self.path, &state.cache, now) {
                Ok((log, lines)) => {
                    state.log = log;
                    state.lines = lines;
                }
                // The old log is still whole and appended to: nothing is lost, only space.
                Err(error) => {
                    tracing::warn!(path = %self.path.display(), %error, "token replay log not compacted")
                }
            }
        }
        Ok(())
    }

    /// Entries held (expired ones included until the next acceptance).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.cache.len()
    }

    /// The cache's Prometheus lines.
    pub fn metrics_text(&self) -> String {
        let (len, capacity) = {
            let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            (state.cache.len(), state.cache.capacity())
        };
        let mut out = String::from(
            "# HELP palisade_token_replay_entries Token IDs held by the tkid replay cache (SER-012).\n\
             # TYPE palisade_token_replay_entries gauge\n",
        );
        out.push_str(&format!("palisade_token_replay_entries {len}\n"));
        out.push_str(
            "# HELP palisade_token_replay_capacity Token IDs the tkid replay cache can hold ([token_replay] max_entries).\n\
             # TYPE palisade_token_replay_capacity gauge\n",
        );
        out.push_str(&format!("palisade_token_replay_capacity {capacity}\n"));
        out.push_str(
            "# HELP palisade_token_replay_refused_total Tokens refused by the tkid replay cache: replayed, full (fail closed), unwritable (log not durable).\n\
             # TYPE palisade_token_replay_refused_total counter\n",
        );
        for (reason, count) in [
            ("replayed", &self.replayed),
            ("full", &self.full),
            ("unwritable", &self.unwritable),
        ] {
            out.push_str(&format!(
                "palisade_token_replay_refused_total{{reason=\"{reason}\"}} {}\n",
                count.load(Ordering::Relaxed)
            ));
        }
        out
    }
}

/// `<64 hex> <expiry>`; `None` for anything else (a torn or damaged line).
fn parse_line(line: &[u8]) -> Option<([u8; 32], u64)> {
    let text = std::str::from_utf8(line).ok()?;
    let (digest, expiry) = text.split_once(' ')?;
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(digest, &mut bytes).ok()?;
    Some((bytes, expiry.parse().ok()?))
}

/// Writes the live entries to a temporary file, syncs it, renames it over `path` and syncs
/// the folder; returns the new log opened for appending and its line count.
fn compact(path: &Path, cache: &ReplayCache, now: u64) -> std::io::Result<(File, usize)> {
    let temporary = path.with_extension("log.tmp");
    let mut text = String::new();
    let mut lines = 0;
    for (digest, expiry) in cache.entries(now) {
        text.push_str(&format!("{} {expiry}\n", hex::encode(digest)));
        lines += 1;
    }
    {
        let mut file = File::create(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
    }
    std::fs::rename(&temporary, path)?;
    if let Some(folder) = path.parent() {
        // The rename itself durable (POSIX: sync the directory).
        File::open(folder)?.sync_all()?;
    }
    let log = OpenOptions::new().append(true).open(path)?;
    Ok((log, lines))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(dir: &Path, max_entries: usize, now: u64) -> TokenReplayCache {
        TokenReplayCache::open(dir, &TokenReplayConfig { max_entries }, now).unwrap()
    }

    #[test]
    fn a_token_is_accepted_once_and_remembered_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let now = 1_000;
        let first = TokenId::new("/id-in/das", "t-1", now + 60);
        let replays = cache(dir.path(), 8, now);
        replays.accept(std::slice::from_ref(&first), now).unwrap();
        assert!(matches!(
            replays.accept(std::slice::from_ref(&first), now + 1),
            Err(ReplayError::Replayed(1))
        ));
        drop(replays);
        let reopened = cache(dir.path(), 8, now + 2);
        assert_eq!(
            reopened.used(std::slice::from_ref(&first), now + 2),
            Some(0)
        );
        // Another issuer's token with the same tkid is another token.
        let other = TokenId::new("/id-in/other", "t-1", now + 60);
        reopened.accept(&[other], now + 2).unwrap();
        // After the token's expiry its ID may leave (the token is refused as expired anyway).
        let later = cache(dir.path(), 8, now + 61);
        assert_eq!(later.len(), 0);
    }

    #[test]
    fn a_full_cache_refuses_rather_than_forgets_and_takes_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let now = 1_000;
        let replays = cache(dir.path(), 2, now);
        let ids: Vec<TokenId> = (0..4)
            .map(|i| TokenId::new("i", &format!("t{i}"), now + 10 + i))
            .collect();
        replays.accept(&ids[..1], now).unwrap();
        assert!(matches!(
            replays.accept(&ids[1..3], now),
            Err(ReplayError::Full(1))
        ));
        assert_eq!(replays.used(&ids[1..3], now), None, "nothing half-taken");
        replays.accept(&ids[1..2], now).unwrap();
        assert!(matches!(
            replays.accept(&ids[2..3], now),
            Err(ReplayError::Full(2))
        ));
        // Both earlier ones are still refused: nothing valid was forgotten.
        assert!(replays.accept(&ids[..1], now).is_err());
        // Once one expires there is room again.
        replays.accept(&ids[2..3], now + 11).unwrap();
        assert!(replays.metrics_text().contains("reason=\"full\"} 2"));
        // The same token twice in one request is a replay of itself.
        let twice = [ids[3].clone(), ids[3].clone()];
        assert!(matches!(
            replays.accept(&twice, now + 12),
            Err(ReplayError::Replayed(2))
        ));
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_the_log_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let now = 1_000;
        let kept = TokenId::new("i", "kept", now + 1_000_000);
        {
            let replays = cache(dir.path(), 4, now);
            replays.accept(std::slice::from_ref(&kept), now).unwrap();
        }
        let mut log = OpenOptions::new()
            .append(true)
            .open(dir.path().join(LOG_FILE))
            .unwrap();
        log.write_all(b"abcdef").unwrap();
        drop(log);
        let replays = cache(dir.path(), 4, now);
        assert_eq!(replays.used(std::slice::from_ref(&kept), now), Some(0));
        // 1,500 short-lived tokens through a cache of 4: the log is compacted as it
        // goes and never holds much more than the live entries.
        for i in 0..1_500u64 {
            let at = now + 10 * i;
            replays
                .accept(&[TokenId::new("i", &format!("short-{i}"), at + 5)], at)
                .unwrap();
        }
        let lines = std::fs::read_to_string(dir.path().join(LOG_FILE))
            .unwrap()
            .lines()
            .count();
        assert!(lines <= 2 * 4 + 1024 + 1, "{lines} lines");
        let reopened = cache(dir.path(), 4, now + 50_000);
        assert_eq!(
            reopened.used(std::slice::from_ref(&kept), now + 50_000),
            Some(0)
        );
    }
}
