//! The authentication decision, free of host calls so that it runs in native unit tests: the
//! signature check is passed in as a closure, which the plugin entry point binds to the host's
//! `crypto.verify-ed25519` (SER-010: the key bytes stay with the host; the token only names a
//! handle, and this plugin only accepts handles the configuration lists for the issuer).

use std::collections::BTreeMap;

use palisade_sdk::crypto::CryptoError;
use palisade_sdk::{AuthResult, Credential, Identity};
use serde::Deserialize;

use crate::token;

/// The application's configuration for this authenticator (SER-014), JSON:
///
/// ```json
/// { "audience": "/id-mn1",
///   "trusted_issuers": { "/id-in/das": ["issuer-1", "issuer-1-next"] },
///   "leeway_seconds": 30,
///   "max_token_length": 8192 }
/// ```
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This gateway's CSE ID (or several spellings of it); `tkau` must name one of them.
    pub audience: Audience,
    /// Issuer ID (`tkis`) → the key handles that issuer may sign with. An issuer missing here
    /// is unknown; a key of another issuer cannot vouch for this one.
    pub trusted_issuers: BTreeMap<String, Vec<String>>,
    /// Tolerated clock difference between issuer and gateway, applied to both ends.
    #[serde(default)]
    pub leeway_seconds: u64,
    /// Longer credentials are refused before any parsing (SER-001: bounded work per request).
    #[serde(default = "default_max_token_length")]
    pub max_token_length: usize,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn names(&self) -> &[String] {
        match self {
            Audience::One(name) => std::slice::from_ref(name),
            Audience::Many(names) => names,
        }
    }
}

impl Config {
    /// Why this configuration cannot authenticate anyone, if it cannot: checked by `prepare`
    /// when the host loads the plugin, so such a configuration fails the load.
    pub fn problem(&self) -> Option<String> {
        if self.audience.names().iter().all(|name| name.is_empty()) {
            return Some("invalid plugin configuration: audience names no CSE ID".into());
        }
        if self.trusted_issuers.is_empty() {
            return Some(
                "invalid plugin configuration: trusted_issuers is empty, so every token is from an unknown issuer"
                    .into(),
            );
        }
        if let Some((issuer, _)) = self
            .trusted_issuers
            .iter()
            .find(|(_, keys)| keys.iter().all(|key| key.is_empty()))
        {
            return Some(format!(
                "invalid plugin configuration: trusted_issuers.{issuer} lists no key handle"
            ));
        }
        if self.max_token_length == 0 {
            return Some(
                "invalid plugin configuration: max_token_length = 0 refuses every token".into(),
            );
        }
        None
    }
}

fn default_max_token_length() -> usize {
    8192
}

/// Most tokens one credential may carry (TS-0009 §6.4.19 joins several with `+`).
pub const MAX_TOKENS: usize = 16;

/// The whole decision for one credential. `config` is the parsed configuration or the reason
/// it does not parse; `verify` checks an Ed25519 signature with a host-held key.
///
/// The credential holds one token or several joined by `+` (TS-0009 §6.4.19: `Authorization:
/// <jws>+<jws>`, which the host passes as a `bearer` credential; base64url has no `+`, so
/// the split is unambiguous). Every token must pass every check: one bad token rejects the
/// request, rather than being skipped. The identity's roles are the union of the tokens'
/// roles and it expires with the first of them to expire.
pub fn decide(
    config: Result<&Config, &str>,
    credential: &Credential,
    originator: &str,
    request_time: u64,
    verify: impl Fn(&str, &[u8], &[u8]) -> Result<bool, CryptoError>,
) -> AuthResult {
    // Only bearer tokens are ours (RFC 6750 §2.1: the scheme is case-insensitive); another
    // authenticator of the application may handle other schemes.
    if !credential.scheme.eq_ignore_ascii_case("bearer") {
        return AuthResult::NotApplicable;
    }
    let config = match config {
        Ok(config) => config,
        Err(reason) => return AuthResult::Rejected(reason.to_string()),
    };
    let value = credential.value.trim();
    if value.len() > config.max_token_length {
        return AuthResult::Rejected(format!(
            "token is {} bytes, more than the {} allowed",
            value.len(),
            config.max_token_length
        ));
    }
    let tokens: Vec<&str> = value.split('+').collect();
    if tokens.len() > MAX_TOKENS {
        return AuthResult::Rejected(format!(
            "{} tokens, more than the {MAX_TOKENS} a credential may carry",
            tokens.len()
        ));
    }
    let mut merged: Option<Identity> = None;
    for (index, token) in tokens.iter().enumerate() {
        let identity = match check(config, token, originator, request_time, &verify) {
            Ok(identity) => identity,
            Err(reason) if tokens.len() == 1 => return AuthResult::Rejected(reason),
            Err(reason) => return AuthResult::Rejected(format!("token {}: {reason}", index + 1)),
        };
        merged = Some(match merged {
            None => identity,
            Some(mut so_far) => {
                for role in identity.roles {
                    if !so_far.roles.contains(&role) {
                        so_far.roles.push(role);
                    }
                }
                so_far.expires_at = match (so_far.expires_at, identity.expires_at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                so_far
            }
        });
    }
    match merged {
        Some(identity) => AuthResult::Authenticated(identity),
        None => AuthResult::Rejected("empty bearer token".into()),
    }
}

/// Every check in order; the first failure is the rejection reason.
pub fn check(
    config: &Config,
    token: &str,
    originator: &str,
    now: u64,
    verify: impl FnOnce(&str, &[u8], &[u8]) -> Result<bool, CryptoError>,
) -> Result<Identity, String> {
    if config.audience.names().iter().all(|name| name.is_empty()) {
        return Err("invalid plugin configuration: audience names no CSE ID".into());
    }
    if token.len() > config.max_token_length {
        return Err(format!(
            "token is {} bytes, more than the {} allowed",
            token.len(),
            config.max_token_length
        ));
    }
    if token.is_empty() {
        return Err("empty bearer token".into());
    }
    let token = token::parse(token)?;
    let claims = &token.claims;

    // Trust: the issuer must be configured and the signing key must be one of its keys, or a
    // key trusted for issuer A could mint tokens that claim to come from issuer B.
    let Some(keys) = config.trusted_issuers.get(&claims.issuer) else {
        return Err(format!("unknown issuer {}", claims.issuer));
    };
    if !keys.contains(&token.kid) {
        return Err(format!(
            "key {} is not a key of issuer {}",
            token.kid, claims.issuer
        ));
    }
    match verify(&token.kid, token.signing_input.as_bytes(), &token.signature) {
        Ok(true) => {}
        Ok(false) => return Err(format!("signature does not verify with key {}", token.kid)),
        Err(CryptoError::UnknownKey) => {
            return Err(format!("key {} is not held by this gateway", token.kid))
        }
        Err(CryptoError::WrongKeyType) => {
            return Err(format!("key {} is not an Ed25519 public key", token.kid))
        }
    }

    // Binding: a token is good for its holder only, at this gateway only, in its window only.
    if claims.holder != originator {
        return Err(format!(
            "holder {} is not the originator {}",
            claims.holder, originator
        ));
    }
    if !config
        .audience
        .names()
        .iter()
        .any(|name| claims.audience.contains(name))
    {
        return Err(format!(
            "audience {:?} does not include this gateway {}",
            claims.audience,
            config.audience.names().join(" / ")
        ));
    }
    if now.saturating_add(config.leeway_seconds) < claims.not_before {
        return Err(format!(
            "token not valid before {} (request time {})",
            timestamp(claims.not_before),
            timestamp(now)
        ));
    }
    if now > claims.not_after.saturating_add(config.leeway_seconds) {
        return Err(format!(
            "token expired at {} (request time {})",
            timestamp(claims.not_after),
            timestamp(now)
        ));
    }
    Ok(Identity {
        subject: claims.holder.clone(),
        roles: claims.roles.clone(),
        expires_at: Some(claims.not_after),
    })
}

/// `seconds` as an RFC 3339 UTC timestamp, for reasons an operator can read.
pub fn timestamp(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let rest = seconds % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant, "chrono-compatible date algorithms").
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}
