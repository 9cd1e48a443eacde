//! Tests of the software keystore: scoping (SER-024), sealing at rest (SER-003), kinds.

use super::*;
use std::os::unix::fs::PermissionsExt as _;

fn app(a: &str) -> KeyScope {
    KeyScope::App(a.to_owned())
}

#[test]
fn sign_verify_hmac_and_public_key() {
    let ks = SoftwareKeyStore::in_memory();
    let g = KeyScope::Gateway;
    let h = ks
        .generate(&g, KeyKind::Ed25519Signing, "gw-identity")
        .unwrap();
    let sig = ks.sign(&g, &h, b"hello").unwrap();
    ks.verify(&g, &h, b"hello", &sig).unwrap();
    assert!(matches!(
        ks.verify(&g, &h, b"hellO", &sig),
        Err(KeyError::BadSignature { .. })
    ));
    let pk = ks.public_key(&g, &h).unwrap();
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&pk).unwrap();
    vk.verify_strict(b"hello", &ed25519_dalek::Signature::from_bytes(&sig))
        .unwrap();
    // The public half imported elsewhere verifies too.
    let hp = ks
        .import(&app("a"), KeyKind::Ed25519Public, "peer", &pk)
        .unwrap();
    ks.verify(&app("a"), &hp, b"hello", &sig).unwrap();

    let hm = ks
        .import(&app("a"), KeyKind::HmacSecret, "mac", &[7u8; 32])
        .unwrap();
    let tag = ks.hmac(&app("a"), &hm, b"m").unwrap();
    let mut m = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&[7u8; 32]).unwrap();
    m.update(b"m");
    assert_eq!(tag, <[u8; 32]>::from(m.finalize().into_bytes()));
}

#[test]
fn an_app_uses_only_its_own_handles() {
    let ks = SoftwareKeyStore::in_memory();
    let ha = ks.generate(&app("a"), KeyKind::HmacSecret, "k").unwrap();
    let hg = ks
        .generate(&KeyScope::Gateway, KeyKind::Ed25519Signing, "id")
        .unwrap();
    assert!(ks.hmac(&app("a"), &ha, b"x").is_ok());
    assert!(matches!(
        ks.hmac(&app("b"), &ha, b"x"),
        Err(KeyError::OutOfScope { .. })
    ));
    assert!(matches!(
        ks.sign(&app("a"), &hg, b"x"),
        Err(KeyError::OutOfScope { .. })
    ));
    assert!(matches!(
        ks.delete(&app("b"), &ha),
        Err(KeyError::OutOfScope { .. })
    ));
    assert_eq!(ks.list(&app("a")).unwrap().len(), 1);
    assert_eq!(ks.list(&app("b")).unwrap().len(), 0);
    let missing = KeyHandle::parse("k_nope").unwrap();
    assert!(matches!(
        ks.hmac(&app("a"), &missing, b"x"),
        Err(KeyError::NotFound { .. })
    ));
}

#[test]
fn kinds_and_material_are_checked() {
    let ks = SoftwareKeyStore::in_memory();
    let a = app("a");
    let hm = ks.generate(&a, KeyKind::HmacSecret, "m").unwrap();
    assert!(matches!(
        ks.sign(&a, &hm, b"x"),
        Err(KeyError::WrongKind { .. })
    ));
    assert!(matches!(
        ks.public_key(&a, &hm),
        Err(KeyError::WrongKind { .. })
    ));
    assert!(matches!(
        ks.import(&a, KeyKind::HmacSecret, "short", &[1u8; 8]),
        Err(KeyError::InvalidMaterial { .. })
    ));
    assert!(matches!(
        ks.import(&a, KeyKind::Ed25519Signing, "s", &[1u8; 31]),
        Err(KeyError::InvalidMaterial { .. })
    ));
    // The identity point is small-order: refused.
    let mut ident = [0u8; 32];
    ident[0] = 1;
    assert!(matches!(
        ks.import(&a, KeyKind::Ed25519Public, "weak", &ident),
        Err(KeyError::WeakPublicKey)
    ));
    assert!(matches!(
        ks.generate(&a, KeyKind::HmacSecret, "bad label!"),
        Err(KeyError::InvalidLabel(_))
    ));
    assert!(matches!(
        ks.generate(&app(""), KeyKind::HmacSecret, "l"),
        Err(KeyError::InvalidScope(_))
    ));
}

#[test]
fn generated_keys_do_not_leave_the_store() {
    // SER-010: a key generated in the store is never exported; imported ones may be backed up.
    let ks = SoftwareKeyStore::in_memory();
    let g = KeyScope::Gateway;
    let h = ks.generate(&g, KeyKind::Ed25519Signing, "id").unwrap();
    assert!(matches!(
        ks.export_secret(&g, &h),
        Err(KeyError::NotExtractable { .. })
    ));
    let i = ks.import(&g, KeyKind::X25519, "x", &[9u8; 32]).unwrap();
    assert_eq!(&ks.export_secret(&g, &i).unwrap()[..], &[9u8; 32]);
}

#[test]
fn x25519_agreement() {
    let ks = SoftwareKeyStore::in_memory();
    let g = KeyScope::Gateway;
    let h = ks.generate(&g, KeyKind::X25519, "box").unwrap();
    let peer = x25519_dalek::StaticSecret::random_from_rng(rand::rngs::OsRng);
    let peer_pub = x25519_dalek::PublicKey::from(&peer);
    let ours = ks.agree(&g, &h, peer_pub.as_bytes()).unwrap();
    let theirs = peer.diffie_hellman(&x25519_dalek::PublicKey::from(
        ks.public_key(&g, &h).unwrap(),
    ));
    assert_eq!(*ours, theirs.to_bytes());
    assert!(matches!(
        ks.agree(&g, &h, &[0u8; 32]),
        Err(KeyError::InvalidMaterial { .. })
    ));
}

#[test]
fn persisted_sealed_and_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    let (h, sig) = {
        let ks = SoftwareKeyStore::open(&path).unwrap();
        let h = ks
            .generate(&app("a"), KeyKind::Ed25519Signing, "signer")
            .unwrap();
        (h.clone(), ks.sign(&app("a"), &h, b"m").unwrap())
    };
    let mode = std::fs::metadata(path.join("master.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let rec = std::fs::read_to_string(path.join(format!("{h}.key"))).unwrap();
    let ks2 = SoftwareKeyStore::open(&path).unwrap();
    // Ed25519 is deterministic: the same key gives the same signature after a reopen.
    assert_eq!(ks2.sign(&app("a"), &h, b"m").unwrap(), sig);
    ks2.delete(&app("a"), &h).unwrap();
    assert!(!path.join(format!("{h}.key")).exists());
    drop(ks2);

    // Moving the key to another app by editing the record breaks its authentication.
    std::fs::write(path.join(format!("{h}.key")), rec.replace("\"a\"", "\"b\"")).unwrap();
    assert!(matches!(
        SoftwareKeyStore::open(&path),
        Err(KeyError::TamperedRecord { .. })
    ));
    std::fs::write(path.join(format!("{h}.key")), &rec).unwrap();
    assert!(SoftwareKeyStore::open(&path).is_ok());
    // The secret itself is not in the record in the clear.
    assert!(!rec.contains("signing_key"));

    // A master readable by others is refused.
    std::fs::set_permissions(
        path.join("master.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    assert!(matches!(
        SoftwareKeyStore::open(&path),
        Err(KeyError::InsecurePermissions { .. })
    ));
}

#[test]
fn wrong_master_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    {
        let ks = SoftwareKeyStore::open(&path).unwrap();
        ks.generate(&KeyScope::Gateway, KeyKind::HmacSecret, "m")
            .unwrap();
    }
    std::fs::remove_file(path.join("master.key")).unwrap();
    assert!(matches!(
        SoftwareKeyStore::open(&path),
        Err(KeyError::TamperedRecord { .. })
    ));
}
