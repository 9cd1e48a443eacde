//! The decision: applicability, configuration, trust, signature, binding and validity window.

use palisade_sdk::{AuthResult, Credential};
use serde_json::json;

use super::*;
use crate::b64::encode;
use crate::check::{check, decide, timestamp, Config};

#[test]
fn a_valid_token_becomes_an_identity() {
    let identity = run(&mint(&claims())).unwrap();
    assert_eq!(identity.subject, "CAE1");
    assert_eq!(identity.roles, ["reader", "writer"]);
    assert_eq!(identity.expires_at, Some(NA));
}

#[test]
fn scheme_decides_applicability() {
    let cfg = config();
    let token = mint(&claims());
    for scheme in ["bearer", "Bearer", "BEARER"] {
        let credential = Credential {
            scheme: scheme.into(),
            value: format!(" {token} "),
        };
        assert!(matches!(
            decide(Ok(&cfg), &credential, "CAE1", NOW, verifier),
            AuthResult::Authenticated(_)
        ));
    }
    let basic = Credential {
        scheme: "basic".into(),
        value: token,
    };
    assert!(matches!(
        decide(Ok(&cfg), &basic, "CAE1", NOW, verifier),
        AuthResult::NotApplicable
    ));
    assert!(matches!(
        decide(Err("bad config"), &basic, "CAE1", NOW, verifier),
        AuthResult::NotApplicable
    ));
}

#[test]
fn an_unreadable_configuration_rejects() {
    let credential = Credential {
        scheme: "bearer".into(),
        value: mint(&claims()),
    };
    match decide(
        Err("invalid plugin configuration: x"),
        &credential,
        "CAE1",
        NOW,
        verifier,
    ) {
        AuthResult::Rejected(reason) => assert!(reason.contains("invalid plugin configuration")),
        other => panic!("{other:?}"),
    }
    assert!(serde_json::from_value::<Config>(json!({"trusted_issuers": {}})).is_err());
    assert!(serde_json::from_value::<Config>(
        json!({"audience": "a", "trusted_issuers": {}, "leway": 1})
    )
    .is_err());
}

#[test]
fn trust_is_per_issuer_and_key() {
    rejected(
        with(|c| {
            c.insert("tkis".into(), json!("/id-in/evil"));
        }),
        "unknown issuer /id-in/evil",
    );
    // issuer-2 belongs to another issuer: it cannot sign for /id-in/das.
    let c = claims();
    rejected(
        run(&mint_with(
            &json!({"alg": "EdDSA", "kid": "issuer-2"}),
            &c,
            "issuer-2",
        )),
        "key issuer-2 is not a key of issuer /id-in/das",
    );
    // A second key of the same issuer (rotation) works.
    assert!(run(&mint_with(
        &json!({"alg": "EdDSA", "kid": "issuer-1-next"}),
        &c,
        "issuer-1-next"
    ))
    .is_ok());
    // Signed with one key, labelled as another.
    rejected(
        run(&mint_with(
            &json!({"alg": "EdDSA", "kid": "issuer-1-next"}),
            &c,
            "issuer-1",
        )),
        "signature does not verify with key issuer-1-next",
    );
    rejected(
        run(&mint_with(
            &json!({"alg": "EdDSA", "kid": "gone-1"}),
            &c,
            "gone-1",
        )),
        "key gone-1 is not held by this gateway",
    );
    let mut h = claims();
    h["tkis"] = json!("/id-in/hmac");
    rejected(
        run(&mint_with(
            &json!({"alg": "EdDSA", "kid": "mac-1"}),
            &h,
            "mac-1",
        )),
        "key mac-1 is not an Ed25519 public key",
    );
}

#[test]
fn tampering_breaks_the_signature() {
    let token = mint(&claims());
    let (input, signature) = token.rsplit_once('.').unwrap();
    let mut other = claims();
    other["tkps"] = json!([{"rids": ["admin"]}]);
    let forged_claims = encode(other.to_string().as_bytes());
    let header = input.split('.').next().unwrap();
    rejected(
        run(&format!("{header}.{forged_claims}.{signature}")),
        "signature does not verify with key issuer-1",
    );
    let mut sig = crate::b64::decode(signature).unwrap();
    sig[0] ^= 1;
    rejected(
        run(&format!("{input}.{}", encode(&sig))),
        "signature does not verify",
    );
}

#[test]
fn holder_and_audience_bind_the_token() {
    rejected(
        with(|c| {
            c.insert("tkhd".into(), json!("CAE2"));
        }),
        "holder CAE2 is not the originator CAE1",
    );
    rejected(
        with(|c| {
            c.insert("tkau".into(), json!(["/id-other"]));
        }),
        "does not include this gateway /id-mn1",
    );
    rejected(
        with(|c| {
            c.insert("tkau".into(), json!([]));
        }),
        "does not include this gateway",
    );
    assert!(with(|c| {
        c.insert("tkau".into(), json!("/id-mn1"));
    })
    .is_ok());
    let cfg: Config = serde_json::from_value(json!({"audience": ["/id-mn1", "//sp/id-mn1"], "trusted_issuers": {"/id-in/das": ["issuer-1"]}})).unwrap();
    let mut c = claims();
    c["tkau"] = json!(["//sp/id-mn1"]);
    assert!(check(&cfg, &mint(&c), "CAE1", NOW, verifier).is_ok());
}

#[test]
fn validity_window_with_and_without_leeway() {
    rejected(
        with(|c| {
            c.insert("tkna".into(), json!(NOW - 900));
        }),
        "token expired at 2026-11-28T10:00:00Z (request time 2026-11-28T10:15:00Z)",
    );
    rejected(
        with(|c| {
            c.insert("tknb".into(), json!(NOW + 300));
        }),
        "token not valid before 2026-11-28T10:20:00Z",
    );
    assert!(with(|c| {
        c.insert("tkna".into(), json!(NOW));
    })
    .is_ok());
    assert!(with(|c| {
        c.insert("tknb".into(), json!(NOW));
    })
    .is_ok());
    let mut cfg = config();
    cfg.leeway_seconds = 60;
    let mut c = claims();
    c["tkna"] = json!(NOW - 60);
    assert!(check(&cfg, &mint(&c), "CAE1", NOW, verifier).is_ok());
    c["tkna"] = json!(NOW - 61);
    assert!(check(&cfg, &mint(&c), "CAE1", NOW, verifier)
        .unwrap_err()
        .contains("expired"));
    c["tkna"] = json!(NA);
    c["tknb"] = json!(NOW + 60);
    assert!(check(&cfg, &mint(&c), "CAE1", NOW, verifier).is_ok());
}

#[test]
fn timestamps_are_rfc3339() {
    assert_eq!(timestamp(0), "1970-01-01T00:00:00Z");
    assert_eq!(timestamp(NOW), "2026-11-28T10:15:00Z");
    assert_eq!(timestamp(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(timestamp(4_102_444_799), "2099-12-31T23:59:59Z");
}

/// TS-0009 §6.4.19: several tokens joined by `+`; every one must pass, roles are their union
/// and the identity expires with the first.
#[test]
fn every_token_of_a_joined_credential_must_pass() {
    let cfg = config();
    let mut second = claims();
    second["tkid"] = json!("tok-2");
    second["tkna"] = json!(NA - 10);
    second["tkps"] = json!([{"rids": ["auditor"]}]);
    let joined = Credential {
        scheme: "bearer".into(),
        value: format!("{}+{}", mint(&claims()), mint(&second)),
    };
    match decide(Ok(&cfg), &joined, "CAE1", NOW, verifier) {
        AuthResult::Authenticated(identity) => {
            assert_eq!(identity.roles, ["reader", "writer", "auditor"]);
            assert_eq!(identity.expires_at, Some(NA - 10));
        }
        other => panic!("{other:?}"),
    }
    // One token held by someone else rejects the whole credential.
    let mut foreign = claims();
    foreign["tkhd"] = json!("CAE2");
    let mixed = Credential {
        scheme: "bearer".into(),
        value: format!("{}+{}", mint(&claims()), mint(&foreign)),
    };
    match decide(Ok(&cfg), &mixed, "CAE1", NOW, verifier) {
        AuthResult::Rejected(reason) => assert!(reason.starts_with("token 2: holder"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // An empty part (`a++b`) and too many tokens are refused.
    let empty_part = Credential {
        scheme: "bearer".into(),
        value: format!("{}++{}", mint(&claims()), mint(&claims())),
    };
    assert!(matches!(
        decide(Ok(&cfg), &empty_part, "CAE1", NOW, verifier),
        AuthResult::Rejected(reason) if reason.starts_with("token 2: empty")
    ));
    let many = Credential {
        scheme: "bearer".into(),
        value: vec!["x"; 17].join("+"),
    };
    assert!(matches!(
        decide(Ok(&cfg), &many, "CAE1", NOW, verifier),
        AuthResult::Rejected(reason) if reason.contains("17 tokens")
    ));
}
