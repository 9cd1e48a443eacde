//! Bundle format tests: round trips, encryption to one gateway (SER-021), signatures
//! (SER-020), and decoding of garbage without panics (SER-001).

use super::bundle;
use super::codec;
use super::*;
use ed25519_dalek::SigningKey;
use palisade_codec::{CodecError, Writer};
use palisade_keys::{KeyError, KeyHandle, KeyInfo, KeyKind, KeyScope, KeyStore, SoftwareKeyStore};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use zeroize::Zeroizing;

pub(super) const NOW: u64 = 1_800_000_000;
pub(super) const GW: &str = "gw-1";
pub(super) const SP: &str = "sp-acme";

pub(super) fn provider_key() -> SigningKey {
    SigningKey::from_bytes(&[7u8; 32])
}

pub(super) fn gateway_secret() -> x25519_dalek::StaticSecret {
    x25519_dalek::StaticSecret::from([9u8; 32])
}

pub(super) fn gateway_public() -> [u8; 32] {
    x25519_dalek::PublicKey::from(&gateway_secret()).to_bytes()
}

pub(super) fn device_key(i: u8) -> [u8; 32] {
    SigningKey::from_bytes(&[100 + i; 32])
        .verifying_key()
        .to_bytes()
}

/// Devices d1, d2; gateway group g1 = {d1, d2}; app "lights": group admins = {CAE1}, an HMAC
/// secret and a public key.
pub(super) fn sample_contents() -> BundleContents {
    let mut c = BundleContents::default();
    c.devices.insert("d1".into(), device_key(1));
    c.devices.insert("d2".into(), device_key(2));
    c.gateway_groups
        .insert("g1".into(), ["d1".to_string(), "d2".to_string()].into());
    c.app_groups
        .entry("lights".into())
        .or_default()
        .insert("admins".into(), ["CAE1".to_string()].into());
    c.app_secrets
        .entry("lights".into())
        .or_default()
        .insert("token_key".into(), SecretBytes::new(vec![0x42; 32]));
    c.app_public_keys
        .entry("lights".into())
        .or_default()
        .insert("issuer".into(), device_key(9));
    c
}

pub(super) fn spec(sequence: u64, contents: BundleContents) -> BundleSpec {
    BundleSpec {
        provider: SP.into(),
        gateway: GW.into(),
        issued_at: NOW - 10,
        expires_at: NOW + 3600,
        sequence,
        contents,
        encrypt_to: Some(gateway_public()),
    }
}

pub(super) fn header(sequence: u64) -> BundleHeader {
    BundleHeader {
        version: FORMAT_VERSION,
        bundle_id: rand::random(),
        provider: SP.into(),
        gateway: GW.into(),
        issued_at: NOW - 10,
        expires_at: NOW + 3600,
        sequence,
        encryption: None,
    }
}

/// Builds a signed bundle with none of the builder's checks, so tests can send what an honest
/// builder refuses to make. `encrypt_to` seals the payload; `tweak` edits the payload bytes
/// before signing.
pub(super) fn craft(
    mut h: BundleHeader,
    contents: &BundleContents,
    encrypt_to: Option<[u8; 32]>,
    tweak: impl FnOnce(&mut Vec<u8>),
) -> Vec<u8> {
    let eph = encrypt_to.map(|r| (r, seal::ephemeral()));
    h.encryption = eph.as_ref().map(|(r, (_, p))| Encryption {
        recipient: *r,
        ephemeral: *p,
    });
    let plain = codec::encode_contents(contents);
    bundle::assemble(&h, &provider_key(), |aad| {
        let mut payload = match &eph {
            None => plain.to_vec(),
            Some((r, (s, p))) => seal::seal(s, p, r, aad, &plain).unwrap(),
        };
        tweak(&mut payload);
        Ok(payload)
    })
    .unwrap()
}

/// A keystore that can be told to fail its next imports or deletes (`usize::MAX` = never).
pub(super) struct Flaky {
    inner: SoftwareKeyStore,
    pub imports_left: AtomicUsize,
    pub fail_deletes: std::sync::atomic::AtomicBool,
}

impl Flaky {
    pub fn new(inner: SoftwareKeyStore) -> Arc<Self> {
        Arc::new(Flaky {
            inner,
            imports_left: AtomicUsize::new(usize::MAX),
            fail_deletes: Default::default(),
        })
    }
    fn io() -> KeyError {
        KeyError::Io {
            path: "flaky".into(),
            source: std::io::Error::other("injected"),
        }
    }
}

impl KeyStore for Flaky {
    fn generate(&self, s: &KeyScope, k: KeyKind, l: &str) -> Result<KeyHandle, KeyError> {
        self.inner.generate(s, k, l)
    }
    fn import(&self, s: &KeyScope, k: KeyKind, l: &str, m: &[u8]) -> Result<KeyHandle, KeyError> {
        let left = self.imports_left.load(Ordering::SeqCst);
        if left == 0 {
            return Err(Self::io());
        }
        if left != usize::MAX {
            self.imports_left.store(left - 1, Ordering::SeqCst);
        }
        self.inner.import(s, k, l, m)
    }
    fn sign(&self, s: &KeyScope, h: &KeyHandle, m: &[u8]) -> Result<[u8; 64], KeyError> {
        self.inner.sign(s, h, m)
    }
    fn verify(&self, s: &KeyScope, h: &KeyHandle, m: &[u8], g: &[u8; 64]) -> Result<(), KeyError> {
        self.inner.verify(s, h, m, g)
    }
    fn hmac(&self, s: &KeyScope, h: &KeyHandle, m: &[u8]) -> Result<[u8; 32], KeyError> {
        self.inner.hmac(s, h, m)
    }
    fn public_key(&self, s: &KeyScope, h: &KeyHandle) -> Result<[u8; 32], KeyError> {
        self.inner.public_key(s, h)
    }
    fn agree(
        &self,
        s: &KeyScope,
        h: &KeyHandle,
        p: &[u8; 32],
    ) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        self.inner.agree(s, h, p)
    }
    fn export_secret(&self, s: &KeyScope, h: &KeyHandle) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        self.inner.export_secret(s, h)
    }
    fn list(&self, s: &KeyScope) -> Result<Vec<KeyInfo>, KeyError> {
        self.inner.list(s)
    }
    fn delete(&self, s: &KeyScope, h: &KeyHandle) -> Result<(), KeyError> {
        if self.fail_deletes.load(Ordering::SeqCst) {
            return Err(Self::io());
        }
        self.inner.delete(s, h)
    }
}

fn gw_key() -> GatewayKey {
    GatewayKey::from_secret(gateway_secret())
}

#[test]
fn clear_round_trip() {
    let mut c = sample_contents();
    c.app_secrets.clear();
    let mut s = spec(1, c.clone());
    s.encrypt_to = None;
    let bytes = create_bundle(&s, &provider_key()).unwrap();
    let b = SignedBundle::parse(&bytes).unwrap();
    assert_eq!(b.header().provider, SP);
    assert_eq!(b.header().encryption, None);
    b.verify(&provider_key().verifying_key()).unwrap();
    assert_eq!(b.contents(None).unwrap(), c);
}

#[test]
fn encrypted_round_trip() {
    let c = sample_contents();
    let bytes = create_bundle(&spec(1, c.clone()), &provider_key()).unwrap();
    let b = SignedBundle::parse(&bytes).unwrap();
    b.verify(&provider_key().verifying_key()).unwrap();
    let e = b.header().encryption.expect("encrypted");
    assert_eq!(e.recipient, gateway_public());
    assert_eq!(b.contents(Some(&gw_key())).unwrap(), c);
    // The secret never appears in clear on the wire (SER-021).
    assert!(!bytes.windows(32).any(|w| w == [0x42; 32]));
    // Without a key only the header is readable.
    assert!(matches!(
        b.contents(None),
        Err(ProvisionError::NoDecryptionKey)
    ));
}

#[test]
fn secrets_without_encryption_are_refused() {
    let mut s = spec(1, sample_contents());
    s.encrypt_to = None;
    assert!(matches!(
        create_bundle(&s, &provider_key()),
        Err(ProvisionError::SecretsInClear)
    ));
    // And a clear bundle carrying secrets, made by hand, is refused when read.
    let bytes = craft(header(1), &sample_contents(), None, |_| {});
    let b = SignedBundle::parse(&bytes).unwrap();
    b.verify(&provider_key().verifying_key()).unwrap();
    assert!(matches!(
        b.contents(None),
        Err(ProvisionError::SecretsInClear)
    ));
}

#[test]
fn wrong_gateway_key_cannot_open() {
    let bytes = create_bundle(&spec(1, sample_contents()), &provider_key()).unwrap();
    let b = SignedBundle::parse(&bytes).unwrap();
    let other = GatewayKey::from_secret(x25519_dalek::StaticSecret::from([3u8; 32]));
    assert!(matches!(
        b.contents(Some(&other)),
        Err(ProvisionError::WrongRecipient { .. })
    ));
    // Even ignoring the header's recipient, the other key does not decrypt the payload.
    let e = b.header().encryption.unwrap();
    let r = seal::open(&other, &e.ephemeral, b.header_bytes(), b.payload_bytes());
    assert!(matches!(r, Err(ProvisionError::DecryptionFailed)));
    // Rewriting the recipient to another key breaks the provider's signature.
    let mut forged = bytes.clone();
    let pos = forged
        .windows(32)
        .position(|w| w == gateway_public())
        .unwrap();
    forged[pos..pos + 32].copy_from_slice(&other.public());
    let f = SignedBundle::parse(&forged).unwrap();
    assert!(matches!(
        f.verify(&provider_key().verifying_key()),
        Err(ProvisionError::BadSignature { .. })
    ));
}

#[test]
fn header_is_bound_to_the_ciphertext() {
    // A provider-signed bundle whose header was changed after sealing (re-signed, so the
    // signature holds) does not decrypt: the header is the AEAD's associated data.
    let bytes = create_bundle(&spec(1, sample_contents()), &provider_key()).unwrap();
    let b = SignedBundle::parse(&bytes).unwrap();
    let mut changed = b.header().clone();
    changed.sequence ^= 1;
    let body = bundle::assemble(&changed, &provider_key(), |_| {
        Ok(b.payload_bytes().to_vec())
    })
    .unwrap();
    let t = SignedBundle::parse(&body).unwrap();
    t.verify(&provider_key().verifying_key()).unwrap();
    assert_eq!(t.header().sequence, 0);
    assert!(matches!(
        t.contents(Some(&gw_key())),
        Err(ProvisionError::DecryptionFailed)
    ));
}

#[test]
fn tampered_ciphertext_signed_by_the_provider_fails_aead() {
    let bytes = craft(header(1), &sample_contents(), Some(gateway_public()), |p| {
        p[5] ^= 0x80
    });
    let b = SignedBundle::parse(&bytes).unwrap();
    b.verify(&provider_key().verifying_key()).unwrap();
    assert!(matches!(
        b.contents(Some(&gw_key())),
        Err(ProvisionError::DecryptionFailed)
    ));
}

#[test]
fn every_flipped_byte_is_caught() {
    let bytes = create_bundle(&spec(1, sample_contents()), &provider_key()).unwrap();
    let vk = provider_key().verifying_key();
    for i in 0..bytes.len() {
        let mut t = bytes.clone();
        t[i] ^= 0x01;
        let ok = SignedBundle::parse(&t).and_then(|b| b.verify(&vk));
        assert!(ok.is_err(), "flip at {i} went unnoticed");
    }
}

#[test]
fn garbage_and_truncations_are_errors_not_panics() {
    let bytes = create_bundle(&spec(1, sample_contents()), &provider_key()).unwrap();
    for n in 0..bytes.len() {
        assert!(
            SignedBundle::parse(&bytes[..n]).is_err(),
            "prefix of {n} bytes parsed"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        SignedBundle::parse(&longer),
        Err(ProvisionError::Malformed(DecodeError::Encoding(
            CodecError::TrailingBytes { count: 1 }
        )))
    ));
    assert!(matches!(
        SignedBundle::parse(b"hello world"),
        Err(ProvisionError::Malformed(DecodeError::BadMagic))
    ));
    let mut v3 = bytes.clone();
    v3[4] = 3;
    assert!(matches!(
        SignedBundle::parse(&v3),
        Err(ProvisionError::Malformed(DecodeError::UnsupportedVersion(
            3
        )))
    ));
    let mut seed = 0x1234_5678_9abc_def0_u64;
    for _ in 0..20_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = (seed % 300) as usize;
        let mut junk: Vec<u8> = (0..len).map(|i| (seed >> (i % 56)) as u8).collect();
        if seed.is_multiple_of(3) && junk.len() > 5 {
            junk[..4].copy_from_slice(codec::MAGIC);
            junk[4] = FORMAT_VERSION;
        }
        let _ = SignedBundle::parse(&junk);
        let _ = codec::decode_contents(&junk);
    }
}

/// Contents written by hand: `devices` writes the devices map, four empty maps follow.
fn contents_with(devices: impl FnOnce(&mut Writer)) -> Vec<u8> {
    let mut w = Writer::new();
    w.array(5);
    devices(&mut w);
    for _ in 0..4 {
        w.map(0);
    }
    w.into_vec()
}

#[test]
fn contents_decoding_is_bounded_and_canonical() {
    // A count of 2^32-1 devices in a few bytes: over the cap; 4096 devices: over what the
    // bytes left could hold. Both before anything is allocated.
    let r = codec::decode_contents(&[0x85, 0xba, 0xff, 0xff, 0xff, 0xff, 0]);
    assert!(matches!(
        r,
        Err(DecodeError::Encoding(CodecError::TooMany {
            field: "devices",
            ..
        }))
    ));
    let r = codec::decode_contents(&[0x85, 0xb9, 0x10, 0, 0xa0, 0xa0, 0xa0, 0xa0]);
    assert_eq!(
        r,
        Err(DecodeError::Encoding(CodecError::Truncated {
            field: "devices"
        }))
    );
    // Two devices out of order, and one twice.
    for ids in [["d2", "d1"], ["d1", "d1"]] {
        let b = contents_with(|w| {
            w.map(2);
            for d in ids {
                w.str(d);
                w.bytes(&device_key(1));
            }
        });
        assert!(matches!(
            codec::decode_contents(&b),
            Err(DecodeError::Encoding(CodecError::NotCanonical {
                field: "devices",
                ..
            }))
        ));
    }
    // An identifier with a space.
    let b = contents_with(|w| {
        w.map(1);
        w.str("d 1");
        w.bytes(&device_key(1));
    });
    assert!(matches!(
        codec::decode_contents(&b),
        Err(DecodeError::InvalidIdentifier { .. })
    ));
}

#[test]
fn oversize_is_refused_before_decoding() {
    let big = vec![0u8; MAX_BUNDLE_LEN + 1];
    assert!(matches!(
        SignedBundle::parse(&big),
        Err(ProvisionError::TooLarge { .. })
    ));
}

#[test]
fn builder_refuses_bad_items() {
    let k = provider_key();
    let mut c = sample_contents();
    c.devices.insert("weak".into(), [0u8; 32]); // the identity point: small order
    assert!(matches!(
        create_bundle(&spec(1, c), &k),
        Err(ProvisionError::InvalidItem { .. })
    ));
    let mut c = sample_contents();
    c.app_secrets
        .get_mut("lights")
        .unwrap()
        .insert("short".into(), SecretBytes::new(vec![1; 8]));
    assert!(matches!(
        create_bundle(&spec(1, c), &k),
        Err(ProvisionError::InvalidItem { .. })
    ));
    let mut c = sample_contents();
    c.app_public_keys
        .get_mut("lights")
        .unwrap()
        .insert("bad name!".into(), device_key(3));
    assert!(matches!(
        create_bundle(&spec(1, c), &k),
        Err(ProvisionError::InvalidItem { .. })
    ));
    let mut s = spec(1, sample_contents());
    s.expires_at = s.issued_at + MAX_VALIDITY + 1;
    assert!(matches!(
        create_bundle(&s, &k),
        Err(ProvisionError::InvalidValidity { .. })
    ));
    assert!(matches!(
        create_bundle(&spec(0, sample_contents()), &k),
        Err(ProvisionError::InvalidItem { .. })
    ));
    let mut s = spec(1, sample_contents());
    s.encrypt_to = Some([0u8; 32]); // low-order recipient
    assert!(matches!(
        create_bundle(&s, &k),
        Err(ProvisionError::InvalidItem { .. })
    ));
}
