//! Test keys of a case file: the plugin gets public keys and HMAC secrets by handle through
//! the host's crypto import; the runner keeps Ed25519 seeds to mint tokens.

use std::collections::HashMap;

use anyhow::{bail, Context};
use ed25519_dalek::{SigningKey, VerifyingKey};

use super::cases::TestKey;
use palisade_core::sandbox::StaticKeys;

#[derive(Default)]
pub struct TestKeys {
    signing: HashMap<String, SigningKey>,
}

impl TestKeys {
    /// The signing key behind `handle`, for minting.
    pub fn signing_key(&self, handle: &str) -> anyhow::Result<&SigningKey> {
        self.signing
            .get(handle)
            .with_context(|| format!("no test key {handle:?} with an ed25519_seed to sign with"))
    }
}

/// Splits test keys into what the plugin's host holds and what the runner keeps.
pub fn build(keys: &[TestKey]) -> anyhow::Result<(StaticKeys, TestKeys)> {
    let mut host = StaticKeys::new();
    let mut runner = TestKeys::default();
    for key in keys {
        let kinds = [&key.ed25519_seed, &key.ed25519_public, &key.hmac_secret]
            .iter()
            .filter(|kind| kind.is_some())
            .count();
        if kinds != 1 {
            bail!(
                "test key {:?} needs exactly one of ed25519_seed, ed25519_public or hmac_secret",
                key.handle
            );
        }
        if let Some(seed) = &key.ed25519_seed {
            let seed: [u8; 32] = decode_hex(seed, &key.handle)?.try_into().map_err(|_| {
                anyhow::anyhow!(
                    "test key {:?}: ed25519_seed must be 32 bytes (64 hex digits)",
                    key.handle
                )
            })?;
            let signing = SigningKey::from_bytes(&seed);
            host.insert_ed25519_public(key.handle.clone(), signing.verifying_key());
            runner.signing.insert(key.handle.clone(), signing);
        }
        if let Some(public) = &key.ed25519_public {
            let bytes: [u8; 32] = decode_hex(public, &key.handle)?.try_into().map_err(|_| {
                anyhow::anyhow!("test key {:?}: ed25519_public must be 32 bytes", key.handle)
            })?;
            let verifying = VerifyingKey::from_bytes(&bytes).with_context(|| {
                format!("test key {:?}: not a valid Ed25519 public key", key.handle)
            })?;
            host.insert_ed25519_public(key.handle.clone(), verifying);
        }
        if let Some(secret) = &key.hmac_secret {
            host.insert_hmac_secret(key.handle.clone(), decode_hex(secret, &key.handle)?);
        }
    }
    Ok((host, runner))
}

fn decode_hex(text: &str, handle: &str) -> anyhow::Result<Vec<u8>> {
    hex::decode(text.trim()).with_context(|| format!("test key {handle:?}: not valid hex"))
}
