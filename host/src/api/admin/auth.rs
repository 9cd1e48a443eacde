//! Signed admin requests (SER-008, SER-012).
//!
//! Every admin request carries four headers: the admin key id, a timestamp (seconds since the
//! epoch), a random nonce and an Ed25519 signature over [`signed_message`]: a domain tag, the
//! method, the path with its query, the SHA-256 of the body, the timestamp and the nonce. The
//! domain tag keeps an admin signature from ever being valid as a module, delegation or
//! group-authentication signature. A request more than [`MAX_SKEW_SECS`] away from the
//! gateway's clock is stale; a nonce seen before is a replay ([`ReplayCache`]).

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine as _;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use super::error::AdminError;
use crate::registry::{key_id, KeyId};

/// Header naming the admin key (16 hex digits, as `palisade keygen` prints it).
pub const KEY_ID_HEADER: &str = "x-palisade-key-id";
/// Header with the request time, seconds since the epoch.
pub const TIMESTAMP_HEADER: &str = "x-palisade-timestamp";
/// Header with a single-use random nonce (16 to 64 hex digits).
pub const NONCE_HEADER: &str = "x-palisade-nonce";
/// Header with the base64 Ed25519 signature.
pub const SIGNATURE_HEADER: &str = "x-palisade-signature";
/// The domain tag that starts every signed admin message.
pub const DOMAIN: &str = "palisade-admin-request-v1";
/// Largest accepted distance between the request's timestamp and the gateway clock (SER-012).
pub const MAX_SKEW_SECS: u64 = 300;
/// Most nonces remembered at once; beyond it new requests are refused, never let through.
pub const REPLAY_CACHE_CAPACITY: usize = 100_000;

/// The bytes an admin signs. Fields are separated by newlines, which can appear in none of
/// them (HTTP methods and request targets cannot hold one; the others are digits and hex).
pub fn signed_message(
    method: &str,
    path_and_query: &str,
    body: &[u8],
    timestamp: u64,
    nonce: &str,
) -> Vec<u8> {
    let body_hash = hex::encode(Sha256::digest(body));
    format!("{DOMAIN}\n{method}\n{path_and_query}\n{body_hash}\n{timestamp}\n{nonce}").into_bytes()
}

/// The four headers for one request, signed with `key` (used by `palisade push`).
pub fn sign_request(
    key: &SigningKey,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    timestamp: u64,
) -> Vec<(&'static str, String)> {
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    let message = signed_message(method, path_and_query, body, timestamp, &nonce);
    let signature = key.sign(&message);
    vec![
        (KEY_ID_HEADER, key_id(&key.verifying_key()).to_string()),
        (TIMESTAMP_HEADER, timestamp.to_string()),
        (NONCE_HEADER, nonce),
        (
            SIGNATURE_HEADER,
            base64::engine::general_purpose::STANDARD.encode(signature.to_bytes()),
        ),
    ]
}

/// The admin keys this gateway accepts.
#[derive(Default)]
pub struct AdminKeys {
    keys: HashMap<KeyId, VerifyingKey>,
}

impl AdminKeys {
    /// Accepts these keys.
    pub fn new(keys: impl IntoIterator<Item = VerifyingKey>) -> AdminKeys {
        AdminKeys {
            keys: keys.into_iter().map(|k| (key_id(&k), k)).collect(),
        }
    }

    /// Checks one request's headers and signature; returns the admin key id. The nonce is
    /// consumed only after the signature verified, so forged requests cannot fill the cache.
    pub fn check(
        &self,
        replay: &ReplayCache,
        headers: &hyper::HeaderMap,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        now: u64,
    ) -> Result<KeyId, AdminError> {
        let header = |name: &'static str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .ok_or(AdminError::MissingAuth(name))
        };
        let id_text = header(KEY_ID_HEADER)?;
        let id: KeyId = id_text
            .parse()
            .map_err(|_| AdminError::BadAuth(format!("{KEY_ID_HEADER} is not a key id")))?;
        // SER-008: only configured admin keys may change what runs.
        let key = self
            .keys
            .get(&id)
            .ok_or_else(|| AdminError::UnknownAdminKey(id_text.to_string()))?;
        let timestamp: u64 = header(TIMESTAMP_HEADER)?
            .parse()
            .map_err(|_| AdminError::BadAuth(format!("{TIMESTAMP_HEADER} is not a number")))?;
        if now.abs_diff(timestamp) > MAX_SKEW_SECS {
            return Err(AdminError::Stale {
                skew: now.abs_diff(timestamp),
            });
        }
        let nonce = header(NONCE_HEADER)?;
        if !(16..=64).contains(&nonce.len()) || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(AdminError::BadAuth(format!(
                "{NONCE_HEADER} must be 16 to 64 hex digits"
            )));
        }
        let signature = base64::engine::general_purpose::STANDARD
            .decode(header(SIGNATURE_HEADER)?)
            .ok()
            .and_then(|bytes| Signature::from_slice(&bytes).ok())
            .ok_or_else(|| AdminError::BadAuth(format!("{SIGNATURE_HEADER} is not a signature")))?;
        let message = signed_message(method, path_and_query, body, timestamp, nonce);
        key.verify(&message, &signature)
            .map_err(|_| AdminError::BadSignature)?;
        replay.consume(&format!("{id}:{nonce}"), now)?;
        Ok(id)
    }
}

/// Nonces seen within the skew window (SER-012). Bounded: entries older than twice the skew
/// are dropped (their timestamps would be refused as stale anyway); when the cache is still
/// full, requests are refused rather than remembered less.
#[derive(Default)]
pub struct ReplayCache {
    seen: Mutex<HashMap<String, u64>>,
}

impl ReplayCache {
    /// Records `nonce`; a nonce already recorded is a replay.
    pub fn consume(&self, nonce: &str, now: u64) -> Result<(), AdminError> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains_key(nonce) {
            return Err(AdminError::Replayed);
        }
        if seen.len() >= REPLAY_CACHE_CAPACITY {
            seen.retain(|_, at| now.saturating_sub(*at) <= 2 * MAX_SKEW_SECS);
            if seen.len() >= REPLAY_CACHE_CAPACITY {
                return Err(AdminError::ReplayCacheFull);
            }
        }
        seen.insert(nonce.to_string(), now);
        Ok(())
    }
}
