//! Signing and verification (SER-022, SER-013): the happy path and one test per refusal, each
//! asserting the exact `VerifyError` variant.

use super::{component, manifest, Chain, NOW};
use crate::section::{append_custom_section, SIGNATURE_SECTION};
use crate::signing::sign_raw;
use crate::{
    sign, validate_name, verify, verify_with, Delegation, FormatError, ModuleCapability,
    ModuleHash, ModuleKind, SignError, TrustAnchors, VerifyError, VerifyPolicy,
};

const AUTH: ModuleKind = ModuleKind::Authorizer;

fn check(bytes: &[u8], chain: &Chain) -> Result<crate::VerifiedModule, VerifyError> {
    verify(bytes, &chain.anchors, NOW, Some(("lights", AUTH)))
}

/// The signature section's JSON, to edit in tests.
fn block_of(signed: &[u8]) -> serde_json::Value {
    let split = crate::section::split(signed).unwrap();
    serde_json::from_slice(split.signature.unwrap()).unwrap()
}

/// The component with its signature section replaced by `block`.
fn with_block(signed: &[u8], block: &[u8]) -> Vec<u8> {
    let mut out = crate::section::split(signed)
        .unwrap()
        .component
        .into_owned();
    append_custom_section(&mut out, SIGNATURE_SECTION, block);
    out
}

#[test]
fn a_signed_module_verifies_with_its_chain() {
    let chain = Chain::new();
    let signed = chain.signed("lights", "acp", "1.2.0", b"code");
    let module = check(&signed, &chain).unwrap();
    assert_eq!(module.manifest.app, "lights");
    assert_eq!(module.manifest.name, "acp");
    assert_eq!(module.manifest.version.as_str(), "1.2.0");
    assert_eq!(module.manifest.capabilities, vec![ModuleCapability::Kv]);
    assert_eq!(
        module.component,
        component(b"code"),
        "the hash covers the component without the section"
    );
    assert_eq!(
        module.manifest.module_sha256,
        ModuleHash::of(&component(b"code"))
    );
    assert_eq!(
        module.root_key_id(),
        crate::key_id(&chain.root.verifying_key())
    );
    // Re-signing replaces the section rather than adding a second one.
    let delegation = chain.delegation("lights", &[AUTH]);
    let again = sign(
        &signed,
        &manifest("lights", AUTH, "acp", "1.2.0"),
        &chain.publisher,
        &delegation,
    )
    .unwrap();
    assert_eq!(again, signed);
}

#[test]
fn unsigned() {
    let chain = Chain::new();
    // The nested module's own palisade-signature section does not count as a signature.
    assert!(matches!(
        check(&component(b"code"), &chain),
        Err(VerifyError::Unsigned)
    ));
}

#[test]
fn malformed_signature_section() {
    let chain = Chain::new();
    let signed = chain.signed("lights", "acp", "1.0.0", b"code");
    let bad = with_block(&signed, b"{not json");
    assert!(matches!(
        check(&bad, &chain),
        Err(VerifyError::MalformedSignature(FormatError::Json(_)))
    ));
    // Pretty-printed JSON says the same thing but is not the canonical form.
    let pretty = serde_json::to_vec_pretty(&block_of(&signed)).unwrap();
    let bad = with_block(&signed, &pretty);
    assert!(matches!(
        check(&bad, &chain),
        Err(VerifyError::MalformedSignature(
            FormatError::NotCanonical { .. }
        ))
    ));
}

#[test]
fn leaving_a_field_out_never_bypasses_the_signature() {
    let chain = Chain::new();
    let signed = chain.signed("lights", "acp", "1.0.0", b"code");
    for path in [
        &["delegation"][..],
        &["signature"],
        &["publisher_key"],
        &["manifest", "module_sha256"],
        &["manifest", "capabilities"],
        &["delegation", "not_after"],
        &["delegation", "signature"],
    ] {
        let mut block = block_of(&signed);
        let mut target = &mut block;
        for key in &path[..path.len() - 1] {
            target = &mut target[*key];
        }
        target.as_object_mut().unwrap().remove(path[path.len() - 1]);
        let bad = with_block(&signed, &serde_json::to_vec(&block).unwrap());
        assert!(
            matches!(
                check(&bad, &chain),
                Err(VerifyError::MalformedSignature(FormatError::Json(_)))
            ),
            "without {path:?}"
        );
    }
    // An unknown extra field is refused too.
    let mut block = block_of(&signed);
    block["manifest"]["optional"] = serde_json::json!(true);
    let bad = with_block(&signed, &serde_json::to_vec(&block).unwrap());
    assert!(matches!(
        check(&bad, &chain),
        Err(VerifyError::MalformedSignature(_))
    ));
}

#[test]
fn duplicate_signature_section() {
    let chain = Chain::new();
    let mut signed = chain.signed("lights", "acp", "1.0.0", b"code");
    let block = crate::section::split(&signed)
        .unwrap()
        .signature
        .unwrap()
        .to_vec();
    append_custom_section(&mut signed, SIGNATURE_SECTION, &block);
    assert!(matches!(
        check(&signed, &chain),
        Err(VerifyError::DuplicateSignatureSection { count: 2 })
    ));
}

#[test]
fn signature_by_a_key_not_delegated_for_this_app() {
    let chain = Chain::new();
    let intruder = Chain::with_seeds(1, 9).publisher;
    // The intruder attaches the real publisher's delegation to a module it signed itself.
    let delegation = chain.delegation("lights", &[AUTH]);
    let bad = sign_raw(
        &component(b"evil"),
        &manifest("lights", AUTH, "acp", "9.0.0"),
        &intruder,
        &delegation,
        |_| {},
    );
    assert!(matches!(
        check(&bad, &chain),
        Err(VerifyError::KeyNotDelegated { .. })
    ));
    // `sign` itself refuses to produce such a file.
    let refused = sign(
        &component(b"evil"),
        &manifest("lights", AUTH, "acp", "9.0.0"),
        &intruder,
        &delegation,
    );
    assert!(matches!(refused, Err(SignError::KeyNotDelegated { .. })));
}

#[test]
fn delegation_for_another_app() {
    let chain = Chain::new();
    let doors = chain.delegation("doors", &[AUTH]);
    let bad = sign_raw(
        &component(b"c"),
        &manifest("lights", AUTH, "acp", "1.0.0"),
        &chain.publisher,
        &doors,
        |_| {},
    );
    assert!(matches!(
        check(&bad, &chain),
        Err(VerifyError::DelegationForOtherApp { .. })
    ));
}

#[test]
fn delegation_for_another_kind() {
    let chain = Chain::new();
    let filters = chain.delegation("lights", &[ModuleKind::Filter, ModuleKind::Authenticator]);
    let bad = sign_raw(
        &component(b"c"),
        &manifest("lights", AUTH, "acp", "1.0.0"),
        &chain.publisher,
        &filters,
        |_| {},
    );
    assert!(matches!(
        check(&bad, &chain),
        Err(VerifyError::DelegationForOtherKind { kind: AUTH, .. })
    ));
}

#[test]
fn delegation_expired_and_not_yet_valid() {
    let chain = Chain::new();
    let signed = chain.signed("lights", "acp", "1.0.0", b"c");
    let expired = verify(&signed, &chain.anchors, NOW + 3600, None);
    assert!(
        matches!(expired, Err(VerifyError::DelegationExpired { .. })),
        "not_after is exclusive"
    );
    let early = verify(&signed, &chain.anchors, NOW - 3601, None);
    assert!(matches!(
        early,
        Err(VerifyError::DelegationNotYetValid { .. })
    ));
    assert!(
        verify(&signed, &chain.anchors, NOW - 3600, None).is_ok(),
        "not_before is inclusive"
    );
}

#[test]
fn delegation_signed_by_an_untrusted_root() {
    let chain = Chain::new();
    let signed = chain.signed("lights", "acp", "1.0.0", b"c");
    let other_anchors = TrustAnchors::from_keys([Chain::with_seeds(7, 2).root.verifying_key()]);
    let result = verify(&signed, &other_anchors, NOW, None);
    assert!(matches!(result, Err(VerifyError::UntrustedRoot { .. })));
    assert!(matches!(
        verify(&signed, &TrustAnchors::new(), NOW, None),
        Err(VerifyError::UntrustedRoot { .. })
    ));
}

#[test]
fn bad_delegation_signature() {
    let chain = Chain::new();
    // The delegation's window is stretched after the root signed it.
    let mut stretched = chain.delegation("lights", &[AUTH]);
    stretched.not_after += 10 * 365 * 86_400;
    let bad = sign_raw(
        &component(b"c"),
        &manifest("lights", AUTH, "acp", "1.0.0"),
        &chain.publisher,
        &stretched,
        |_| {},
    );
    assert!(matches!(
        check(&bad, &chain),
        Err(VerifyError::BadDelegationSignature { .. })
    ));
}

#[test]
fn bad_module_signature() {
    let chain = Chain::new();
    let delegation = chain.delegation("lights", &[AUTH]);
    // Capabilities added to the manifest after it was signed.
    let bad = sign_raw(
        &component(b"c"),
        &manifest("lights", AUTH, "acp", "1.0.0"),
        &chain.publisher,
        &delegation,
        |m| m.capabilities.push(ModuleCapability::Location),
    );
    assert!(matches!(
        check(&bad, &chain),
        Err(VerifyError::BadModuleSignature { .. })
    ));
}

#[test]
fn module_hash_mismatch_on_one_changed_byte() {
    let chain = Chain::new();
    let signed = chain.signed("lights", "acp", "1.0.0", b"code");
    let mut bad = signed.clone();
    let at = bad.windows(4).position(|w| w == b"code").unwrap();
    bad[at] ^= 0x01;
    assert!(matches!(
        check(&bad, &chain),
        Err(VerifyError::ModuleHashMismatch { .. })
    ));
}

#[test]
fn one_byte_changed_anywhere_never_verifies() {
    let chain = Chain::new();
    let signed = chain.signed("lights", "acp", "1.0.0", b"code");
    for i in 0..signed.len() {
        for flip in [0x01u8, 0x20, 0x80, 0xff] {
            let mut bad = signed.clone();
            bad[i] ^= flip;
            assert!(
                check(&bad, &chain).is_err(),
                "byte {i} ^ {flip:#x} still verifies"
            );
        }
    }
}

#[test]
fn truncated_file() {
    let chain = Chain::new();
    let signed = chain.signed("lights", "acp", "1.0.0", b"code");
    for len in [0, 3, 6, 9, 20, signed.len() / 2, signed.len() - 1] {
        assert!(
            matches!(
                check(&signed[..len], &chain),
                Err(VerifyError::Truncated { .. })
            ),
            "cut at {len}: {:?}",
            check(&signed[..len], &chain).err()
        );
    }
}

#[test]
fn not_a_webassembly_component() {
    let chain = Chain::new();
    let core = b"\0asm\x01\x00\x00\x00".to_vec();
    assert!(matches!(
        check(&core, &chain),
        Err(VerifyError::NotAComponent(_))
    ));
    let future = b"\0asm\x0e\x00\x01\x00".to_vec();
    assert!(matches!(
        check(&future, &chain),
        Err(VerifyError::NotAComponent(_))
    ));
    assert!(matches!(
        check(b"#!/bin/sh\necho hi\n", &chain),
        Err(VerifyError::NotWebAssembly)
    ));
    // A valid header followed by a section id that does not exist in components.
    let mut bad = b"\0asm\x0d\x00\x01\x00".to_vec();
    bad.extend_from_slice(&[0x7f, 0x01, 0x00]);
    assert!(matches!(
        check(&bad, &chain),
        Err(VerifyError::MalformedComponent { .. })
    ));
    // A custom section whose name is longer than the section.
    let mut bad = b"\0asm\x0d\x00\x01\x00".to_vec();
    bad.extend_from_slice(&[0x00, 0x02, 0x05, b'a']);
    assert!(matches!(
        check(&bad, &chain),
        Err(VerifyError::MalformedComponent { .. })
    ));
}

#[test]
fn manifest_app_differs_from_the_expected_app() {
    let chain = Chain::new();
    let signed = chain.signed("doors", "acp", "1.0.0", b"c");
    assert!(matches!(
        check(&signed, &chain),
        Err(VerifyError::AppMismatch { .. })
    ));
}

#[test]
fn manifest_kind_differs_from_the_expected_kind() {
    let chain = Chain::new();
    let signed = chain.signed("lights", "acp", "1.0.0", b"c");
    let result = verify(
        &signed,
        &chain.anchors,
        NOW,
        Some(("lights", ModuleKind::Filter)),
    );
    assert!(matches!(result, Err(VerifyError::KindMismatch { .. })));
}

#[test]
fn over_the_size_limit() {
    let chain = Chain::new();
    let signed = chain.signed("lights", "acp", "1.0.0", &[0u8; 4096]);
    let mut policy = VerifyPolicy::new(&chain.anchors, NOW);
    policy.max_size = 4000;
    assert!(matches!(
        verify_with(&signed, &policy),
        Err(VerifyError::TooLarge { limit: 4000, .. })
    ));
}

#[test]
fn names_with_path_separators_or_dot_dot() {
    let chain = Chain::new();
    for (app, name) in [
        ("../etc", "acp"),
        ("lights", "a/b"),
        ("lights", "a..b"),
        ("lights", "a\\b"),
        (".hidden", "p"),
    ] {
        let delegation = Delegation {
            app: app.to_owned(),
            ..chain.delegation("lights", &[AUTH])
        };
        let m = crate::Manifest {
            app: app.to_owned(),
            name: name.to_owned(),
            ..manifest("lights", AUTH, "acp", "1.0.0")
        };
        let bad = sign_raw(&component(b"c"), &m, &chain.publisher, &delegation, |_| {});
        assert!(
            matches!(check(&bad, &chain), Err(VerifyError::InvalidName(_))),
            "{app}/{name}"
        );
        assert!(matches!(
            sign(&component(b"c"), &m, &chain.publisher, &delegation),
            Err(SignError::Format(_))
        ));
    }
    for good in ["a", "lights", "A-1.b_2", &"x".repeat(64)] {
        assert!(validate_name("plugin name", good).is_ok(), "{good}");
    }
    for bad in ["", "-a", "a b", "a/b", "..", "a..", "é", &"x".repeat(65)] {
        assert!(validate_name("plugin name", bad).is_err(), "{bad}");
    }
}

#[test]
fn every_refusal_has_its_own_stable_code() {
    let codes: std::collections::HashSet<_> = [
        VerifyError::Unsigned.code(),
        VerifyError::NotWebAssembly.code(),
        VerifyError::Truncated { len: 0 }.code(),
        VerifyError::TooLarge { size: 1, limit: 0 }.code(),
    ]
    .into_iter()
    .collect();
    assert_eq!(codes.len(), 4);
}
