//! Bundle format 2 (deterministic CBOR through palisade-codec): format 1 refused by name,
//! one encoding only, counts bounded by the bytes left, every section round-tripping, and
//! mutated bundles giving errors, never panics (SER-001, SER-020).

use super::codec;
use super::tests::*;
use super::*;
use palisade_codec::{CodecError, Writer};
use std::collections::BTreeMap;

/// The sample contents with positions too: every section holds something.
fn every_section() -> BundleContents {
    let mut c = sample_contents();
    let sydney = Position::from_degrees(-33.86, 151.21, Some("AU")).unwrap();
    let somewhere = Position::from_degrees(48.1, -1.6, None).unwrap();
    c.app_positions.insert(
        "lights".into(),
        BTreeMap::from([
            ("CAE1".to_string(), Some(sydney)),
            ("CAE2".to_string(), None),
            ("CAE10".to_string(), Some(somewhere)),
        ]),
    );
    c
}

fn gw_key() -> GatewayKey {
    GatewayKey::from_secret(gateway_secret())
}

/// The contents of the sample without secrets, so they can travel in a clear bundle.
fn clear_contents() -> BundleContents {
    let mut c = every_section();
    c.app_secrets.clear();
    c
}

/// A provider-signed clear bundle whose payload is `payload` exactly.
fn signed_with_payload(payload: Vec<u8>) -> Vec<u8> {
    craft(header(1), &BundleContents::default(), None, |p| {
        *p = payload
    })
}

fn refused_contents(payload: Vec<u8>) -> DecodeError {
    let bytes = signed_with_payload(payload);
    let b = SignedBundle::parse(&bytes).unwrap();
    // The provider's signature holds: the gateway refuses the encoding itself.
    b.verify(&provider_key().verifying_key()).unwrap();
    match b.contents(None) {
        Err(ProvisionError::Malformed(e)) => e,
        other => panic!("expected a decoding error, got {other:?}"),
    }
}

fn not_canonical(e: DecodeError) -> (&'static str, &'static str) {
    match e {
        DecodeError::Encoding(CodecError::NotCanonical { field, reason }) => (field, reason),
        other => panic!("expected a non-canonical encoding, got {other:?}"),
    }
}

#[test]
fn a_bundle_with_every_section_round_trips() {
    let c = every_section();
    let bytes = create_bundle(&spec(1, c.clone()), &provider_key()).unwrap();
    assert_eq!(&bytes[..5], b"PLPB\x02");
    let b = SignedBundle::parse(&bytes).unwrap();
    assert_eq!(b.header().version, 2);
    b.verify(&provider_key().verifying_key()).unwrap();
    let back = b.contents(Some(&gw_key())).unwrap();
    assert_eq!(back, c);
    assert_eq!(back.app_positions["lights"].len(), 3);
    // One encoding: what was decoded encodes to the same bytes.
    assert_eq!(codec::encode_contents(&back), codec::encode_contents(&c));
    // In clear too (no secrets), with the positions section.
    let mut s = spec(2, clear_contents());
    s.encrypt_to = None;
    let bytes = create_bundle(&s, &provider_key()).unwrap();
    let b = SignedBundle::parse(&bytes).unwrap();
    b.verify(&provider_key().verifying_key()).unwrap();
    assert_eq!(b.contents(None).unwrap(), clear_contents());
}

#[test]
fn a_format_1_bundle_is_refused_by_name() {
    // The start of a format-1 bundle: magic, version 1, then its hand-written header.
    let mut v1 = b"PLPB\x01".to_vec();
    v1.extend_from_slice(&[0x11; 16]);
    v1.push(7);
    v1.extend_from_slice(b"sp-acme");
    let error = SignedBundle::parse(&v1).unwrap_err();
    assert!(
        matches!(
            error,
            ProvisionError::Malformed(DecodeError::RetiredFormat { version: 1 })
        ),
        "{error:?}"
    );
    let text = palisade_types::Chain(&error).to_string();
    assert!(
        text.contains("bundle format 1 is no longer read: ask the provider to re-issue it"),
        "{text}"
    );
    // Other versions and other files are named for what they are.
    assert!(matches!(
        SignedBundle::parse(b"PLPB\x07\x83"),
        Err(ProvisionError::Malformed(DecodeError::UnsupportedVersion(
            7
        )))
    ));
    assert!(matches!(
        SignedBundle::parse(b"PLPB"),
        Err(ProvisionError::Malformed(DecodeError::Encoding(
            CodecError::Truncated { field: "version" }
        )))
    ));
    assert!(matches!(
        SignedBundle::parse(b"\x83\x01\x02\x03"),
        Err(ProvisionError::Malformed(DecodeError::BadMagic))
    ));
}

#[test]
fn non_canonical_encodings_are_refused() {
    let plain = codec::encode_contents(&clear_contents()).to_vec();
    assert_eq!(plain[0], 0x86, "six sections");
    // The honest payload is accepted.
    let b = SignedBundle::parse(&signed_with_payload(plain.clone())).unwrap();
    assert_eq!(b.contents(None).unwrap(), clear_contents());

    // A longer integer header than needed: the section count 6 in two bytes.
    let longer = [&[0x98, 6][..], &plain[1..]].concat();
    assert_eq!(
        not_canonical(refused_contents(longer)),
        (
            "contents",
            "an integer or length in a longer form than needed"
        )
    );
    // An indefinite-length array.
    let indefinite = [&[0x9f][..], &plain[1..], &[0xff]].concat();
    assert_eq!(
        not_canonical(refused_contents(indefinite)),
        ("contents", "an indefinite length")
    );
    // Trailing bytes.
    let trailing = [&plain[..], &[0]].concat();
    assert_eq!(
        refused_contents(trailing),
        DecodeError::Encoding(CodecError::TrailingBytes { count: 1 })
    );
    // Map keys duplicated, or in string order rather than the canonical one ("b" sorts
    // before "aa": shorter first).
    let devices = |ids: [&str; 2]| {
        let mut w = Writer::new();
        w.array(5);
        w.map(2);
        for d in ids {
            w.str(d);
            w.bytes(&device_key(1));
        }
        for _ in 0..4 {
            w.map(0);
        }
        w.into_vec()
    };
    let b = SignedBundle::parse(&signed_with_payload(devices(["b", "aa"]))).unwrap();
    assert_eq!(b.contents(None).unwrap().devices.len(), 2);
    for wrong in [["aa", "b"], ["d1", "d1"]] {
        assert_eq!(not_canonical(refused_contents(devices(wrong))).0, "devices");
    }
    // Set members duplicated or out of order.
    let members = |ids: [&str; 2]| {
        let mut w = Writer::new();
        w.array(5);
        w.map(0);
        w.map(1);
        w.str("g1");
        w.array(2);
        for d in ids {
            w.str(d);
        }
        for _ in 0..3 {
            w.map(0);
        }
        w.into_vec()
    };
    for wrong in [["d2", "d1"], ["d1", "d1"]] {
        assert_eq!(
            not_canonical(refused_contents(members(wrong))).0,
            "gateway_groups.members"
        );
    }
    // An empty positions section is left out, never sent.
    let mut empty = codec::encode_contents(&BundleContents::default()).to_vec();
    empty[0] = 0x86;
    empty.push(0xa0);
    assert_eq!(not_canonical(refused_contents(empty)).0, "app_positions");

    // The bundle's own structure: its array header in a longer form, or indefinite.
    let mut s = spec(1, clear_contents());
    s.encrypt_to = None;
    let bytes = create_bundle(&s, &provider_key()).unwrap();
    assert_eq!(bytes[5], 0x83);
    for bad in [
        [&bytes[..5], &[0x98, 3], &bytes[6..]].concat(),
        [&bytes[..5], &[0x9f], &bytes[6..], &[0xff]].concat(),
    ] {
        assert!(matches!(
            SignedBundle::parse(&bad),
            Err(ProvisionError::Malformed(DecodeError::Encoding(
                CodecError::NotCanonical {
                    field: "bundle",
                    ..
                }
            )))
        ));
    }
}

#[test]
fn counts_larger_than_the_bytes_left_are_refused_before_allocation() {
    // 16,384 members announced in a handful of bytes.
    let mut w = Writer::new();
    w.array(5);
    w.map(0);
    w.map(1);
    w.str("g1");
    let mut b = w.into_vec();
    b.extend_from_slice(&[0x99, 0x40, 0x00, 0x61, b'a', 0xa0, 0xa0, 0xa0]);
    assert_eq!(
        codec::decode_contents(&b),
        Err(DecodeError::Encoding(CodecError::Truncated {
            field: "gateway_groups.members"
        }))
    );
    // One member over the cap.
    let mut over = b[..b.len() - 8].to_vec();
    over.extend_from_slice(&[0x99, 0x40, 0x01]);
    assert!(matches!(
        codec::decode_contents(&over),
        Err(DecodeError::Encoding(CodecError::TooMany {
            field: "gateway_groups.members",
            count: 16_385,
            ..
        }))
    ));
    // A payload announcing 4 MiB in a short bundle.
    let mut s = spec(1, clear_contents());
    s.encrypt_to = None;
    let bytes = create_bundle(&s, &provider_key()).unwrap();
    let head_len = SignedBundle::parse(&bytes).unwrap().header_bytes().len();
    let mut claim = bytes[..head_len].to_vec();
    claim.extend_from_slice(&[0x5a, 0x00, 0x40, 0x00, 0x00, 1, 2, 3]);
    assert!(matches!(
        SignedBundle::parse(&claim),
        Err(ProvisionError::Malformed(DecodeError::Encoding(
            CodecError::Truncated { field: "payload" }
        )))
    ));
}

#[test]
fn truncations_and_byte_flips_of_a_real_bundle_are_errors_never_panics() {
    let c = every_section();
    let bytes = create_bundle(&spec(1, c.clone()), &provider_key()).unwrap();
    let vk = provider_key().verifying_key();
    let key = gw_key();
    let open = |b: &[u8]| {
        SignedBundle::parse(b).and_then(|b| {
            b.verify(&vk)?;
            b.contents(Some(&key))
        })
    };
    assert_eq!(open(&bytes).unwrap(), c);
    // Bounded: every prefix, and three flips of every byte (~2,000 bundles).
    for n in 0..bytes.len() {
        assert!(open(&bytes[..n]).is_err(), "prefix of {n} bytes accepted");
    }
    for i in 0..bytes.len() {
        for flip in [0x01, 0x80, 0xff] {
            let mut t = bytes.clone();
            t[i] ^= flip;
            assert!(open(&t).is_err(), "flip {flip:#x} at {i} accepted");
        }
    }
    // The decrypted contents mutated the same way: an error, or (one encoding per value)
    // other contents, never the same contents from other bytes.
    let plain = codec::encode_contents(&c).to_vec();
    let mut refused = 0;
    for i in 0..plain.len() {
        for flip in [0x01, 0x80, 0xff] {
            let mut t = plain.clone();
            t[i] ^= flip;
            match codec::decode_contents(&t) {
                Ok(other) => assert_ne!(other, c, "flip {flip:#x} at {i}"),
                Err(_) => refused += 1,
            }
        }
    }
    assert!(refused > 0);
    for n in 0..plain.len() {
        assert!(codec::decode_contents(&plain[..n]).is_err());
    }
}
