//! The token's format: JWS structure, header, algorithm and the shape of each known claim.

use serde_json::json;

use super::*;
use crate::b64::encode;

#[test]
fn malformed_tokens_are_named() {
    rejected(run(""), "empty bearer token");
    rejected(run("abc.def"), "not a JWS compact serialization");
    rejected(run("a.b.c.d"), "not a JWS compact serialization");
    rejected(run("e30=.e30.AA"), "malformed token header");
    rejected(
        run(&format!("{}.e30.AA", encode(b"not json"))),
        "malformed token header",
    );
    let header = encode(br#"{"alg":"EdDSA","kid":"issuer-1"}"#);
    rejected(run(&format!("{header}.!!.AA")), "malformed token claims");
    rejected(
        run(&format!("{header}.{}.AA", encode(b"[1]"))),
        "malformed token claims: not a JSON object",
    );
    rejected(
        run(&format!("{header}.e30.AAAA")),
        "malformed token signature: 3 bytes",
    );
    let long = "a".repeat(9000);
    rejected(
        run(&long),
        "token is 9000 bytes, more than the 8192 allowed",
    );
}

#[test]
fn only_eddsa_is_accepted() {
    let c = claims();
    rejected(
        run(&mint_with(
            &json!({"alg": "none", "kid": "issuer-1"}),
            &c,
            "issuer-1",
        )),
        "alg none",
    );
    rejected(
        run(&mint_with(
            &json!({"alg": "NONE", "kid": "issuer-1"}),
            &c,
            "issuer-1",
        )),
        "alg none",
    );
    rejected(
        run(&mint_with(
            &json!({"alg": "HS256", "kid": "issuer-1"}),
            &c,
            "issuer-1",
        )),
        "algorithm HS256 is not accepted",
    );
    rejected(
        run(&mint_with(
            &json!({"alg": "eddsa", "kid": "issuer-1"}),
            &c,
            "issuer-1",
        )),
        "algorithm eddsa",
    );
    rejected(
        run(&mint_with(&json!({"kid": "issuer-1"}), &c, "issuer-1")),
        "no alg",
    );
    rejected(
        run(&mint_with(
            &json!({"alg": 1, "kid": "issuer-1"}),
            &c,
            "issuer-1",
        )),
        "alg is not a string",
    );
    rejected(
        run(&mint_with(&json!({"alg": "EdDSA"}), &c, "issuer-1")),
        "no kid",
    );
    rejected(
        run(&mint_with(
            &json!({"alg": "EdDSA", "kid": ""}),
            &c,
            "issuer-1",
        )),
        "kid is not",
    );
    let crit = json!({"alg": "EdDSA", "kid": "issuer-1", "crit": ["b64"], "b64": false});
    rejected(run(&mint_with(&crit, &c, "issuer-1")), "crit");
    // Extra, non-critical header parameters are fine.
    let typ = json!({"alg": "EdDSA", "kid": "issuer-1", "typ": "JWT"});
    assert!(run(&mint_with(&typ, &c, "issuer-1")).is_ok());
}

#[test]
fn malformed_known_claims_are_rejections() {
    rejected(
        with(|c| {
            c.remove("tkhd");
        }),
        "missing claim tkhd (holder)",
    );
    rejected(
        with(|c| {
            c.remove("tkis");
        }),
        "missing claim tkis (issuer)",
    );
    rejected(
        with(|c| {
            c.remove("tkau");
        }),
        "missing claim tkau (audience)",
    );
    rejected(
        with(|c| {
            c.remove("tkna");
        }),
        "missing claim tkna (not after)",
    );
    rejected(
        with(|c| {
            c.insert("tkna".into(), json!("20261129T000000"));
        }),
        "malformed claim tkna (not after)",
    );
    rejected(
        with(|c| {
            c.insert("tknb".into(), json!(-5));
        }),
        "malformed claim tknb (not before)",
    );
    rejected(
        with(|c| {
            c.insert("tknb".into(), json!(1.5));
        }),
        "malformed claim tknb",
    );
    rejected(
        with(|c| {
            c.insert("tkhd".into(), json!(7));
        }),
        "malformed claim tkhd (holder)",
    );
    rejected(
        with(|c| {
            c.insert("tkid".into(), json!({}));
        }),
        "malformed claim tkid (token ID)",
    );
    rejected(
        with(|c| {
            c.insert("tknm".into(), json!(null));
        }),
        "malformed claim tknm",
    );
    rejected(
        with(|c| {
            c.insert("version".into(), json!(true));
        }),
        "malformed claim version",
    );
    rejected(
        with(|c| {
            c.insert("tkau".into(), json!([1]));
        }),
        "malformed claim tkau (audience)",
    );
    rejected(
        with(|c| {
            c.insert("tkps".into(), json!({"rids": ["x"]}));
        }),
        "malformed claim tkps (permissions)",
    );
    rejected(
        with(|c| {
            c.insert("tkps".into(), json!(["reader"]));
        }),
        "malformed claim tkps",
    );
    rejected(
        with(|c| {
            c.insert("tkps".into(), json!([{}, {"rids": "reader"}]));
        }),
        "rids of permission 1",
    );
    let header = encode(br#"{"alg":"EdDSA","kid":"issuer-1"}"#);
    let dup = encode(br#"{"tkhd":"CAE1","tkhd":"CAE9"}"#);
    rejected(
        run(&format!("{header}.{dup}.AA")),
        "duplicate member name \"tkhd\"",
    );
}

#[test]
fn extensions_and_optional_claims() {
    let identity = with(|c| {
        c.insert("tkex".into(), json!({"vendor": [1, 2]}));
        c.insert("x-custom".into(), json!(true));
        c.insert("version".into(), json!(2));
        c.remove("tkps");
        c.remove("tkid");
        c.remove("tknm");
    })
    .unwrap();
    assert!(identity.roles.is_empty());
    let token = mint(&claims());
    let parsed = crate::token::parse(&token).unwrap();
    assert_eq!(parsed.kid, "issuer-1");
    assert_eq!(parsed.claims.id.as_deref(), Some("tok-1"));
    assert_eq!(parsed.claims.name.as_deref(), Some("lights"));
    assert_eq!(parsed.claims.version.as_deref(), Some("1"));
}
