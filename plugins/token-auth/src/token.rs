//! Parsing of the bearer token: a JWS compact serialization (RFC 7515 §7.1) signed with EdDSA
//! over Ed25519 (RFC 8037) whose payload is a oneM2M dynamic-authorization token (TS-0003 §7.3).
//!
//! ```text
//! base64url(header) "." base64url(claims) "." base64url(signature)
//! header: {"alg":"EdDSA","kid":"<key handle>"}       signature over "header_b64.claims_b64"
//! claims: {"version":"1","tkid":"…","tkhd":"CAE1","tkis":"issuer-A","tknb":1795824000,
//!          "tkna":1795910400,"tknm":"…","tkau":["/id-mn1"],"tkps":[{"rids":["reader"]}]}
//! ```
//!
//! Decisions on the claim shapes (documented in the crate README):
//! - `tknb` / `tkna` are seconds since the Unix epoch (UTC) as non-negative integers — the
//!   same clock as `request.request-time`. TS-0003 uses oneM2M timestamps there; a token in
//!   that form is refused as malformed rather than guessed at.
//! - `tkau` is a list of CSE IDs; a single string is accepted as a one-element list.
//! - `tkps` is a list of permission objects; each may carry `rids` (TS-0004 short name of
//!   roleIDs), a list of role IDs. Their union becomes the identity's roles. Other members of
//!   a permission (`pv`, `ri`, …) are the authorizers' business and are left alone.
//! - `tkhd`, `tkis`, `tknb`, `tkna` and `tkau` are required; `version`, `tkid`, `tknm` and
//!   `tkps` are optional but must be well-formed when present; unknown claims (`tkex`, vendor
//!   extensions) are ignored.
//!
//! Nothing here is trusted yet: this only gives the claims a shape. The signature, issuer and
//! validity checks are in `check` (SER-010).

use serde_json::{Map, Value};

use crate::{b64, json};

/// A parsed, not yet verified token.
#[derive(Debug)]
pub struct Token<'a> {
    /// The key handle from the header (`kid`), resolved by the host in this app's key scope.
    pub kid: String,
    /// The bytes the signature covers: `header_b64.claims_b64`.
    pub signing_input: &'a str,
    pub signature: Vec<u8>,
    pub claims: Claims,
}

/// The oneM2M token claims this authenticator understands (TS-0003 §7.3.2).
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    pub version: Option<String>,
    pub id: Option<String>,
    pub holder: String,
    pub issuer: String,
    pub not_before: u64,
    pub not_after: u64,
    pub name: Option<String>,
    pub audience: Vec<String>,
    pub roles: Vec<String>,
}

/// Split, decode and shape-check a token; every error is a rejection reason.
pub fn parse(token: &str) -> Result<Token<'_>, String> {
    let mut parts = token.split('.');
    let (header_b64, claims_b64, signature_b64) =
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(h), Some(c), Some(s), None) => (h, c, s),
            _ => {
                return Err("malformed token: not a JWS compact serialization \
                            (three base64url parts separated by '.')"
                    .into())
            }
        };

    let header = b64::decode(header_b64)
        .and_then(|bytes| json::object(&bytes))
        .map_err(|e| format!("malformed token header: {e}"))?;
    // The algorithm is fixed by this authenticator, never chosen by the token (RFC 8725 §3.1):
    // `none`, HMAC and every other algorithm are refused before anything else is looked at.
    let alg = match header.get("alg") {
        None => return Err("malformed token header: no alg".into()),
        Some(Value::String(alg)) => alg.as_str(),
        Some(_) => return Err("malformed token header: alg is not a string".into()),
    };
    if alg.eq_ignore_ascii_case("none") {
        return Err("unsigned token (alg none) is not accepted".into());
    }
    if alg != "EdDSA" {
        return Err(format!(
            "algorithm {alg} is not accepted: only EdDSA (Ed25519) is"
        ));
    }
    // RFC 7515 §4.1.11: extensions listed in crit must be understood; this plugin knows none.
    if header.contains_key("crit") {
        return Err(
            "token header lists critical extensions (crit), none of which are supported".into(),
        );
    }
    let kid = match header.get("kid") {
        None => {
            return Err("malformed token header: no kid (the handle of the signing key)".into())
        }
        Some(Value::String(kid)) if !kid.is_empty() => kid.clone(),
        Some(_) => return Err("malformed token header: kid is not a non-empty string".into()),
    };

    let claims = b64::decode(claims_b64)
        .and_then(|bytes| json::object(&bytes))
        .map_err(|e| format!("malformed token claims: {e}"))?;
    let signature =
        b64::decode(signature_b64).map_err(|e| format!("malformed token signature: {e}"))?;
    if signature.len() != 64 {
        return Err(format!(
            "malformed token signature: {} bytes, an Ed25519 signature has 64",
            signature.len()
        ));
    }
    Ok(Token {
        kid,
        signing_input: &token[..header_b64.len() + 1 + claims_b64.len()],
        signature,
        claims: claims_from(&claims)?,
    })
}

fn required<'m>(
    map: &'m Map<String, Value>,
    name: &str,
    meaning: &str,
) -> Result<&'m Value, String> {
    map.get(name)
        .ok_or_else(|| format!("missing claim {name} ({meaning})"))
}

fn malformed(name: &str, meaning: &str, expected: &str) -> String {
    format!("malformed claim {name} ({meaning}): expected {expected}")
}

fn text(value: &Value, name: &str, meaning: &str) -> Result<String, String> {
    match value {
        Value::String(s) if !s.is_empty() => Ok(s.clone()),
        _ => Err(malformed(name, meaning, "a non-empty string")),
    }
}

fn optional_text(
    map: &Map<String, Value>,
    name: &str,
    meaning: &str,
) -> Result<Option<String>, String> {
    map.get(name).map(|v| text(v, name, meaning)).transpose()
}

fn seconds(value: &Value, name: &str, meaning: &str) -> Result<u64, String> {
    value.as_u64().ok_or_else(|| {
        malformed(
            name,
            meaning,
            "seconds since the Unix epoch as a non-negative integer",
        )
    })
}

fn string_list(value: &Value) -> Option<Vec<String>> {
    match value {
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(s) if !s.is_empty() => Some(s.clone()),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// Give the claim set its shape; any known claim of the wrong type is a rejection.
pub fn claims_from(map: &Map<String, Value>) -> Result<Claims, String> {
    let version = match map.get("version") {
        None => None,
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) if n.is_u64() => Some(n.to_string()),
        Some(_) => {
            return Err(malformed(
                "version",
                "token version",
                "a string or an integer",
            ))
        }
    };
    let audience = match required(map, "tkau", "audience")? {
        Value::String(s) if !s.is_empty() => vec![s.clone()],
        value => {
            string_list(value).ok_or_else(|| malformed("tkau", "audience", "a list of CSE IDs"))?
        }
    };
    let mut roles: Vec<String> = Vec::new();
    if let Some(permissions) = map.get("tkps") {
        let Value::Array(permissions) = permissions else {
            return Err(malformed(
                "tkps",
                "permissions",
                "a list of permission objects",
            ));
        };
        for (index, permission) in permissions.iter().enumerate() {
            let Value::Object(permission) = permission else {
                return Err(malformed(
                    "tkps",
                    "permissions",
                    "a list of permission objects",
                ));
            };
            let Some(rids) = permission.get("rids") else {
                continue;
            };
            let rids = string_list(rids).ok_or_else(|| {
                malformed(
                    "tkps",
                    "permissions",
                    &format!("rids of permission {index} to be a list of role IDs"),
                )
            })?;
            for role in rids {
                if !roles.contains(&role) {
                    roles.push(role);
                }
            }
        }
    }
    Ok(Claims {
        version,
        id: optional_text(map, "tkid", "token ID")?,
        holder: text(required(map, "tkhd", "holder")?, "tkhd", "holder")?,
        issuer: text(required(map, "tkis", "issuer")?, "tkis", "issuer")?,
        not_before: seconds(required(map, "tknb", "not before")?, "tknb", "not before")?,
        not_after: seconds(required(map, "tkna", "not after")?, "tkna", "not after")?,
        name: optional_text(map, "tknm", "token name")?,
        audience,
        roles,
    })
}
