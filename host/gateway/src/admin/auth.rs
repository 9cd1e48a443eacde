//! Signed admin requests (SER-008, SER-012), authenticated from their headers alone.
//!
//! Every admin request carries five headers: the admin key id, a timestamp (seconds since the
//! epoch), a random nonce, the SHA-256 of the body, and an Ed25519 signature over
//! [`signed_message`]: a domain tag, the key id, the method, the path with its query, the
//! body's SHA-256 and length (its `Content-Length`), the timestamp and the nonce. The domain
//! tag keeps an admin signature from ever being valid as a module, delegation or
//! group-authentication signature. A request more than [`MAX_SKEW_SECS`] away from the
//! gateway's clock is stale; a nonce seen before is a replay ([`ReplayCache`]).
//!
//! Because the body is represented by its hash and length, a request is authenticated
//! ([`AdminKeys::check_headers`]) before a byte of its body is read: an unsigned, unknown-key,
//! stale, replayed or forged request costs the gateway its headers and one signature check,
//! never a buffered upload (SER-001). The body is then read as a stream and must match the
//! signed hash and length ([`SignedBody`]).

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine as _;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use hyper::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use sha2::{Digest, Sha256};

use super::error::AdminError;
use palisade_registry::{key_id, KeyId};

/// Header naming the admin key (16 hex digits, as `palisade keygen` prints it).
pub const KEY_ID_HEADER: &str = "x-palisade-key-id";
/// Header with the request time, seconds since the epoch.
pub const TIMESTAMP_HEADER: &str = "x-palisade-timestamp";
/// Header with a single-use random nonce (16 to 64 hex digits).
pub const NONCE_HEADER: &str = "x-palisade-nonce";
/// Header with the SHA-256 of the body, 64 hex digits (that of nothing for a bodiless request).
pub const BODY_HASH_HEADER: &str = "x-palisade-content-sha256";
/// Header with the base64 Ed25519 signature.
pub const SIGNATURE_HEADER: &str = "x-palisade-signature";
/// The domain tag that starts every signed admin message. Version 2 signs the body's hash
/// and length from the headers (version 1 needed the whole body before it could check).
pub const DOMAIN: &str = "palisade-admin-request-v2";
/// Largest accepted distance between the request's timestamp and the gateway clock (SER-012).
pub const MAX_SKEW_SECS: u64 = 300;
/// Most nonces remembered at once; beyond it new requests are refused, never let through.
pub const REPLAY_CACHE_CAPACITY: usize = 100_000;

/// What an authenticated request's headers promise about its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignedBody {
    /// The body's SHA-256.
    pub sha256: [u8; 32],
    /// The body's length in bytes.
    pub length: u64,
}

impl SignedBody {
    /// The hash and length of `body`.
    pub fn of(body: &[u8]) -> SignedBody {
        SignedBody {
            sha256: Sha256::digest(body).into(),
            length: body.len() as u64,
        }
    }
}

/// The bytes an admin signs. Fields are separated by newlines, which can appear in none of
/// them (HTTP methods and request targets cannot hold one; the others are digits and hex).
pub fn signed_message(
    key: KeyId,
    method: &str,
    path_and_query: &str,
    body: &SignedBody,
    timestamp: u64,
    nonce: &str,
) -> Vec<u8> {
    format!(
        "{DOMAIN}\n{key}\n{method}\n{path_and_query}\n{}\n{}\n{timestamp}\n{nonce}",
        hex::encode(body.sha256),
        body.length
    )
    .into_bytes()
}

/// The five headers for one request, signed with `key` (used by `palisade push`). The request
/// must be sent with `Content-Length: body.len()`.
pub fn sign_request(
    key: &SigningKey,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    timestamp: u64,
) -> Vec<(&'static str, String)> {
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    let id = key_id(&key.verifying_key());
    let signed = SignedBody::of(body);
    let message = signed_message(id, method, path_and_query, &signed, timestamp, &nonce);
    let signature = key.sign(&message);
    vec![
        (KEY_ID_HEADER, id.to_string()),
        (TIMESTAMP_HEADER, timestamp.to_string()),
        (NONCE_HEADER, nonce),
        (BODY_HASH_HEADER, hex::encode(signed.sha256)),
        (
            SIGNATURE_HEADER,
            base64::engine::general_purpose::STANDARD.encode(signature.to_bytes()),
        ),
    ]
}

/// An authenticated request: who signed it and what its body must be.
#[derive(Clone, Copy, Debug)]
pub struct Authenticated {
    /// The admin key that signed it.
    pub key_id: KeyId,
    /// The body it announced.
    pub body: SignedBody,
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

    /// Checks one request's headers and signature, before its body is read; returns the
    /// admin key id and the body the request must carry. Cheap refusals come first (no
    /// header, unknown key, stale), then the one signature check; the nonce is consumed only
    /// after the signature verified, so forged requests cannot fill the cache.
    pub fn check_headers(
        &self,
        replay: &ReplayCache,
        headers: &hyper::HeaderMap,
        method: &str,
        path_and_query: &str,
        now: u64,
    ) -> Result<Authenticated, AdminError> {
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
        let mut sha256 = [0u8; 32];
        hex::decode_to_slice(header(BODY_HASH_HEADER)?, &mut sha256).map_err(|_| {
            AdminError::BadAuth(format!("{BODY_HASH_HEADER} must be 64 hex digits"))
        })?;
        let body = SignedBody {
            sha256,
            length: body_length(headers)?,
        };
        let signature = base64::engine::general_purpose::STANDARD
            .decode(header(SIGNATURE_HEADER)?)
            .ok()
            .and_then(|bytes| Signature::from_slice(&bytes).ok())
            .ok_or_else(|| AdminError::BadAuth(format!("{SIGNATURE_HEADER} is not a signature")))?;
        let message = signed_message(id, method, path_and_query, &body, timestamp, nonce);
        key.verify(&message, &signature)
            .map_err(|_| AdminError::BadSignature)?;
        replay.consume(id, nonce, timestamp, now)?;
        Ok(Authenticated { key_id: id, body })
    }
}

/// The body length a request announces: its `Content-Length`, or 0 without one. A body
/// without a length (chunked) cannot be signed in advance and is refused.
fn body_length(headers: &hyper::HeaderMap) -> Result<u64, AdminError> {
    match headers.get(CONTENT_LENGTH) {
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|text| text.parse().ok())
            .ok_or_else(|| AdminError::BadAuth("Content-Length is not a number".into())),
        None if headers.contains_key(TRANSFER_ENCODING) => Err(AdminError::LengthRequired),
        None => Ok(0),
    }
}

/// Nonces seen within their validity (SER-012), per admin key: a nonce is remembered until
/// its request's timestamp is stale, then forgotten (a replay is refused as stale by then).
/// Fixed-size entries (a digest of key id and nonce); when full of nonces still valid, new
/// requests are refused rather than any nonce forgotten early.
pub struct ReplayCache {
    seen: Mutex<palisade_group::ReplayCache>,
}

impl Default for ReplayCache {
    fn default() -> ReplayCache {
        ReplayCache::with_capacity(REPLAY_CACHE_CAPACITY)
    }
}

impl ReplayCache {
    /// A cache of at most `capacity` nonces.
    pub fn with_capacity(capacity: usize) -> ReplayCache {
        ReplayCache {
            seen: Mutex::new(palisade_group::ReplayCache::new(capacity)),
        }
    }

    /// Records the nonce of a request signed by `key` at `timestamp`; a nonce already
    /// recorded is a replay.
    pub fn consume(
        &self,
        key: KeyId,
        nonce: &str,
        timestamp: u64,
        now: u64,
    ) -> Result<(), AdminError> {
        let id: [u8; 32] = Sha256::new()
            .chain_update(key.0)
            .chain_update(nonce.to_ascii_lowercase())
            .finalize()
            .into();
        // Valid while now <= timestamp + MAX_SKEW_SECS.
        let expires_at = timestamp.saturating_add(MAX_SKEW_SECS + 1);
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        match seen.insert(id, expires_at, now) {
            Ok(true) => Ok(()),
            Ok(false) => Err(AdminError::Replayed),
            Err(_) => Err(AdminError::ReplayCacheFull),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> KeyId {
        KeyId([7; 8])
    }

    #[test]
    fn nonces_are_single_use_until_their_request_is_stale() {
        let cache = ReplayCache::with_capacity(10);
        let t = 1_000_000;
        cache.consume(key(), "00112233445566778899", t, t).unwrap();
        // Hex case does not make a second nonce.
        assert!(matches!(
            cache.consume(key(), "00112233445566778899", t, t + 300),
            Err(AdminError::Replayed)
        ));
        // Another admin key may use the same nonce.
        cache
            .consume(KeyId([8; 8]), "00112233445566778899", t, t)
            .unwrap();
        // Past the skew the request is stale anyway: the nonce may be forgotten.
        cache
            .consume(key(), "00112233445566778899", t + 400, t + 400)
            .unwrap();
    }

    /// A million distinct nonces: the cache never holds more than its capacity, refuses while
    /// full of valid nonces, and never forgets one within its validity.
    #[test]
    fn a_million_nonces_refuse_rather_than_forget() {
        let capacity = 10_000;
        let cache = ReplayCache::with_capacity(capacity);
        let start = 2_000_000;
        let mut accepted = Vec::new();
        let mut full = 0;
        for i in 0..1_000_000u64 {
            let now = start + i / 1000; // a thousand requests a second
            let nonce = format!("{i:032x}");
            match cache.consume(key(), &nonce, now, now) {
                Ok(()) => accepted.push((nonce, now)),
                Err(AdminError::ReplayCacheFull) => full += 1,
                Err(other) => panic!("{other}"),
            }
            assert!(cache.seen.lock().unwrap().len() <= capacity);
        }
        assert!(full > 0);
        let now = start + 999;
        for (nonce, at) in accepted.iter().rev().take(capacity) {
            if now <= at + MAX_SKEW_SECS {
                assert!(matches!(
                    cache.consume(key(), nonce, *at, now),
                    Err(AdminError::Replayed)
                ));
            }
        }
    }

    #[test]
    fn the_signature_covers_the_body_hash_and_length() {
        let signing = SigningKey::from_bytes(&[3; 32]);
        let keys = AdminKeys::new([signing.verifying_key()]);
        let replay = ReplayCache::default();
        let now = 1_800_000_000;
        let path = "/admin/v1/apps/a/plugins/p";
        let request = |signed_body: &[u8], length: usize| {
            let mut headers = hyper::HeaderMap::new();
            for (name, value) in sign_request(&signing, "PUT", path, signed_body, now) {
                headers.insert(name, value.parse().unwrap());
            }
            headers.insert(CONTENT_LENGTH, length.into());
            headers
        };
        let good = keys
            .check_headers(&replay, &request(b"module", 6), "PUT", path, now)
            .unwrap();
        assert_eq!(good.body, SignedBody::of(b"module"));
        // A different length than signed: the signature does not verify.
        assert!(matches!(
            keys.check_headers(&replay, &request(b"module", 7), "PUT", path, now),
            Err(AdminError::BadSignature)
        ));
        // A chunked body has no length to sign.
        let mut chunked = request(b"", 0);
        chunked.remove(CONTENT_LENGTH);
        chunked.insert(TRANSFER_ENCODING, "chunked".parse().unwrap());
        assert!(matches!(
            keys.check_headers(&replay, &chunked, "PUT", path, now),
            Err(AdminError::LengthRequired)
        ));
    }
}
