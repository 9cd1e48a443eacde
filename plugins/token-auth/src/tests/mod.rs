//! Unit tests of the whole decision with a stand-in verifier: tokens are "signed" by a keyed
//! hash that only the closure below accepts, which is enough to test everything but Ed25519
//! itself (that is the host's job, tested there).

mod claims;
mod decision;

use palisade_sdk::crypto::CryptoError;
use palisade_sdk::Identity;
use serde_json::{json, Value};

use crate::b64::encode;
use crate::check::{check, Config};

pub(super) const NOW: u64 = 1_795_860_900; // 2026-11-28T10:15:00Z
pub(super) const NB: u64 = 1_795_824_000; // 2026-11-28T00:00:00Z
pub(super) const NA: u64 = 1_795_910_400; // 2026-11-29T00:00:00Z

pub(super) fn fake_sign(key: &str, message: &[u8]) -> Vec<u8> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key.as_bytes().iter().chain(b"|").chain(message) {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    (0..64u64)
        .map(|i| (h.rotate_left(i as u32) ^ i) as u8)
        .collect()
}

pub(super) fn verifier(key: &str, message: &[u8], signature: &[u8]) -> Result<bool, CryptoError> {
    match key {
        "issuer-1" | "issuer-1-next" | "issuer-2" => Ok(signature == fake_sign(key, message)),
        "mac-1" => Err(CryptoError::WrongKeyType),
        _ => Err(CryptoError::UnknownKey),
    }
}

pub(super) fn config() -> Config {
    serde_json::from_value(json!({
        "audience": "/id-mn1",
        "trusted_issuers": {
            "/id-in/das": ["issuer-1", "issuer-1-next", "gone-1"],
            "/id-in/other": ["issuer-2"],
            "/id-in/hmac": ["mac-1"]
        }
    }))
    .unwrap()
}

pub(super) fn claims() -> Value {
    json!({
        "version": "1", "tkid": "tok-1", "tkhd": "CAE1", "tkis": "/id-in/das",
        "tknb": NB, "tkna": NA, "tknm": "lights", "tkau": ["/id-mn1", "/id-mn2"],
        "tkps": [{"rids": ["reader", "writer"], "pv": {"acr": []}}, {"rids": ["reader"]}]
    })
}

pub(super) fn mint_with(header: &Value, claims: &Value, key: &str) -> String {
    let input = format!(
        "{}.{}",
        encode(header.to_string().as_bytes()),
        encode(claims.to_string().as_bytes())
    );
    let signature = fake_sign(key, input.as_bytes());
    format!("{input}.{}", encode(&signature))
}

pub(super) fn mint(claims: &Value) -> String {
    mint_with(
        &json!({"alg": "EdDSA", "kid": "issuer-1"}),
        claims,
        "issuer-1",
    )
}

pub(super) fn run(token: &str) -> Result<Identity, String> {
    check(&config(), token, "CAE1", NOW, verifier)
}

pub(super) fn with(
    change: impl FnOnce(&mut serde_json::Map<String, Value>),
) -> Result<Identity, String> {
    let mut c = claims();
    change(c.as_object_mut().unwrap());
    run(&mint(&c))
}

pub(super) fn rejected(result: Result<Identity, String>, needle: &str) {
    match result {
        Err(reason) => assert!(
            reason.contains(needle),
            "reason {reason:?} lacks {needle:?}"
        ),
        Ok(identity) => panic!("accepted {identity:?}, expected a rejection with {needle:?}"),
    }
}

/// What `prepare` refuses at load: configurations under which no token can ever pass.
#[test]
fn configurations_that_cannot_authenticate_anyone_are_named() {
    assert_eq!(config().problem(), None);
    for (document, needle) in [
        (
            json!({"audience": "", "trusted_issuers": {"i": ["k"]}}),
            "audience names no CSE ID",
        ),
        (
            json!({"audience": ["", ""], "trusted_issuers": {"i": ["k"]}}),
            "audience names no CSE ID",
        ),
        (
            json!({"audience": "/id-mn1", "trusted_issuers": {}}),
            "trusted_issuers is empty",
        ),
        (
            json!({"audience": "/id-mn1", "trusted_issuers": {"i": []}}),
            "trusted_issuers.i lists no key",
        ),
        (
            json!({"audience": "/id-mn1", "trusted_issuers": {"i": ["k"]}, "max_token_length": 0}),
            "max_token_length = 0",
        ),
    ] {
        let config: Config = serde_json::from_value(document.clone()).unwrap();
        let problem = config.problem().unwrap_or_default();
        assert!(problem.contains(needle), "{document}: {problem:?}");
    }
}
