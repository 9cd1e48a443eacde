//! Minting JWS compact tokens (RFC 7515, alg EdDSA per RFC 8037) for authenticator cases.

use anyhow::{bail, Context};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::Signer;
use serde_json::json;

use super::cases::JwsSpec;
use super::keys::TestKeys;

pub fn mint(spec: &JwsSpec, keys: &TestKeys) -> anyhow::Result<String> {
    let signing = keys.signing_key(&spec.key)?;
    let header = match &spec.header {
        Some(header) => {
            serde_json::to_value(header).context("the JWS header cannot be expressed as JSON")?
        }
        None => json!({"alg": "EdDSA", "kid": spec.key}),
    };
    let claims =
        serde_json::to_value(&spec.claims).context("the JWS claims cannot be expressed as JSON")?;
    let header_b64 = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?);
    let claims_b64 = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims)?);
    let signing_input = format!("{header_b64}.{claims_b64}");
    let mut signature = signing.sign(signing_input.as_bytes()).to_bytes().to_vec();
    let mut claims_b64 = claims_b64;
    match spec.tamper.as_deref() {
        None => {}
        Some("signature") => signature[0] ^= 0x01,
        Some("claims") => {
            // Valid JSON with one more member: the signature no longer covers what is sent.
            let mut changed = claims.clone();
            match changed.as_object_mut() {
                Some(object) => {
                    object.insert("tampered".into(), json!(true));
                }
                None => bail!("tamper = \"claims\" needs the claims to be a table"),
            }
            claims_b64 = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&changed)?);
        }
        Some(other) => bail!("unknown tamper mode {other:?}; use \"signature\" or \"claims\""),
    }
    Ok(format!(
        "{header_b64}.{claims_b64}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    ))
}
