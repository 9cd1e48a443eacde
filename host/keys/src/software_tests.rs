//! Tests of the software keystore: scoping (SER-024), sealing at rest (SER-003), kinds.

use super::*;
use std::os::unix::fs::PermissionsExt as _;
use zeroize::Zeroizing;

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

/// The files of a key directory, sorted (the lock file included).
fn files(path: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(path)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
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
    for file in ["master.key", sealed::INDEX_FILE] {
        let mode = std::fs::metadata(path.join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
    // One index, no file per key.
    assert_eq!(
        files(&path),
        [sealed::LOCK_FILE, sealed::INDEX_FILE, "master.key"]
    );
    let index = std::fs::read(path.join(sealed::INDEX_FILE)).unwrap();
    let ks2 = SoftwareKeyStore::open(&path).unwrap();
    // Ed25519 is deterministic: the same key gives the same signature after a reopen.
    assert_eq!(ks2.sign(&app("a"), &h, b"m").unwrap(), sig);
    // The secret itself is not in the index in the clear.
    let m = ks2
        .import(&app("a"), KeyKind::HmacSecret, "mac", &[0x5a; 32])
        .unwrap();
    assert!(!std::fs::read(path.join(sealed::INDEX_FILE))
        .unwrap()
        .windows(32)
        .any(|w| w == [0x5a; 32]));
    ks2.delete(&app("a"), &h).unwrap();
    drop(ks2);
    let ks3 = SoftwareKeyStore::open(&path).unwrap();
    assert!(matches!(
        ks3.sign(&app("a"), &h, b"m"),
        Err(KeyError::NotFound { .. })
    ));
    assert!(ks3.hmac(&app("a"), &m, b"x").is_ok());
    drop(ks3);

    // Any edit of the index (here one byte of the sealed part) fails authentication.
    let mut edited = index.clone();
    let last = edited.len() - 20;
    edited[last] ^= 1;
    std::fs::write(path.join(sealed::INDEX_FILE), &edited).unwrap();
    assert!(matches!(
        SoftwareKeyStore::open(&path),
        Err(KeyError::TamperedRecord { file }) if file == sealed::INDEX_FILE
    ));
    std::fs::write(path.join(sealed::INDEX_FILE), &index).unwrap();
    assert!(SoftwareKeyStore::open(&path).is_ok());

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

/// Writes `kind` keys in the older layout (one sealed `<handle>.key` record per key) into a
/// store's directory, as a gateway before the index did; returns (handle, material) pairs.
fn write_legacy(path: &std::path::Path, keys: &[(KeyScope, &str, [u8; 32])]) -> Vec<KeyHandle> {
    let dir = Dir::open_ambient_dir(path, cap_std::ambient_authority()).unwrap();
    let kek = sealed::load_or_create_master(&dir, path).unwrap();
    keys.iter()
        .map(|(scope, label, material)| {
            let handle = KeyHandle::random();
            let meta = sealed::Meta {
                handle: &handle,
                scope,
                kind: KeyKind::HmacSecret,
                label,
                public_key: None,
                extractable: true,
            };
            let rec = Record::seal(&kek, &meta, material);
            std::fs::write(
                path.join(sealed::record_file(&handle)),
                serde_json::to_vec_pretty(&rec).unwrap(),
            )
            .unwrap();
            handle
        })
        .collect()
}

fn mac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut m = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(key).unwrap();
    m.update(msg);
    m.finalize().into_bytes().into()
}

#[test]
fn the_old_layout_is_migrated_into_the_index_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    std::fs::create_dir_all(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
    let old = write_legacy(
        &path,
        &[
            (app("a"), "pseudonym", [1; 32]),
            (app("b"), "pseudonym", [2; 32]),
            (KeyScope::Gateway, "audit", [3; 32]),
        ],
    );
    let ks = SoftwareKeyStore::open(&path).unwrap();
    // Every old key answers as before, in its own scope only.
    assert_eq!(
        ks.hmac(&app("a"), &old[0], b"x").unwrap(),
        mac(&[1; 32], b"x")
    );
    assert_eq!(
        ks.hmac(&app("b"), &old[1], b"x").unwrap(),
        mac(&[2; 32], b"x")
    );
    assert_eq!(
        ks.hmac(&KeyScope::Gateway, &old[2], b"x").unwrap(),
        mac(&[3; 32], b"x")
    );
    assert!(matches!(
        ks.hmac(&app("b"), &old[0], b"x"),
        Err(KeyError::OutOfScope { .. })
    ));
    // The old files are gone once the index holds their keys.
    assert_eq!(
        files(&path),
        [sealed::LOCK_FILE, sealed::INDEX_FILE, "master.key"]
    );
    drop(ks);
    let ks = SoftwareKeyStore::open(&path).unwrap();
    assert_eq!(ks.list(&app("a")).unwrap().len(), 1);
    assert_eq!(
        ks.hmac(&app("a"), &old[0], b"x").unwrap(),
        mac(&[1; 32], b"x")
    );

    // An old record written later (an older binary run on this folder) is merged too.
    drop(ks);
    let late = write_legacy(&path, &[(app("c"), "pseudonym", [4; 32])]);
    let ks = SoftwareKeyStore::open(&path).unwrap();
    assert_eq!(
        ks.hmac(&app("c"), &late[0], b"x").unwrap(),
        mac(&[4; 32], b"x")
    );
    assert_eq!(ks.list(&app("a")).unwrap().len(), 1);
    assert!(!path.join(sealed::record_file(&late[0])).exists());
}

#[test]
fn a_tampered_old_record_stops_the_migration_and_nothing_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    std::fs::create_dir_all(&path).unwrap();
    let old = write_legacy(&path, &[(app("a"), "k", [1; 32]), (app("a"), "l", [2; 32])]);
    // Moving a key to another app by editing its record breaks its authentication (SER-003).
    let file = path.join(sealed::record_file(&old[0]));
    let rec = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, rec.replace("\"a\"", "\"b\"")).unwrap();
    assert!(matches!(
        SoftwareKeyStore::open(&path),
        Err(KeyError::TamperedRecord { .. })
    ));
    // Nothing was written or removed: the operator still has every file to look at.
    assert!(!path.join(sealed::INDEX_FILE).exists());
    assert!(path.join(sealed::record_file(&old[1])).exists());
    std::fs::write(&file, &rec).unwrap();
    let ks = SoftwareKeyStore::open(&path).unwrap();
    assert_eq!(ks.list(&app("a")).unwrap().len(), 2);
}

#[test]
fn a_crash_between_writes_keeps_the_old_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    std::fs::create_dir_all(&path).unwrap();
    let old = write_legacy(&path, &[(app("a"), "k", [1; 32]), (app("b"), "k", [2; 32])]);
    let saved: Vec<(std::path::PathBuf, Vec<u8>)> = old
        .iter()
        .map(|h| {
            let p = path.join(sealed::record_file(h));
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();

    // 1. A crash while the first index was being written: its temporary file is left half
    //    written, the old records are all there. The open reads the records, ignores and
    //    removes the temporary file.
    let stale = path.join(format!(".{}.tmp-00000000deadbeef", sealed::INDEX_FILE));
    std::fs::write(&stale, b"PKSINDX1 half a write").unwrap();
    let ks = SoftwareKeyStore::open(&path).unwrap();
    assert_eq!(
        ks.hmac(&app("a"), &old[0], b"x").unwrap(),
        mac(&[1; 32], b"x")
    );
    assert!(!stale.exists());
    drop(ks);

    // 2. A crash after the index was renamed into place but before the old files were
    //    removed: both are there. The keys are not doubled and the old files are removed.
    for (p, bytes) in &saved {
        std::fs::write(p, bytes).unwrap();
    }
    let ks = SoftwareKeyStore::open(&path).unwrap();
    assert_eq!(ks.list(&app("a")).unwrap().len(), 1);
    assert_eq!(ks.list(&app("b")).unwrap().len(), 1);
    assert!(saved.iter().all(|(p, _)| !p.exists()));

    // 3. A crash while a later write (a new key) was in flight: the old index stands.
    let index = std::fs::read(path.join(sealed::INDEX_FILE)).unwrap();
    ks.generate(&app("c"), KeyKind::HmacSecret, "k").unwrap();
    drop(ks);
    std::fs::write(path.join(sealed::INDEX_FILE), &index).unwrap();
    std::fs::write(&stale, b"PKSINDX1 the new index, cut short").unwrap();
    let ks = SoftwareKeyStore::open(&path).unwrap();
    assert_eq!(ks.list(&app("c")).unwrap().len(), 0);
    assert_eq!(
        ks.hmac(&app("b"), &old[1], b"x").unwrap(),
        mac(&[2; 32], b"x")
    );
}

#[test]
fn a_corrupt_index_is_refused_with_a_named_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    let ks = SoftwareKeyStore::open(&path).unwrap();
    let h = ks.generate(&app("a"), KeyKind::HmacSecret, "k").unwrap();
    drop(ks);
    let file = path.join(sealed::INDEX_FILE);
    let index = std::fs::read(&file).unwrap();
    let reason = |bytes: &[u8]| {
        std::fs::write(&file, bytes).unwrap();
        match SoftwareKeyStore::open(&path) {
            Err(KeyError::MalformedRecord { file, reason }) => {
                assert_eq!(file, sealed::INDEX_FILE);
                reason
            }
            Err(KeyError::TamperedRecord { file }) => {
                assert_eq!(file, sealed::INDEX_FILE);
                "tampered".to_owned()
            }
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("a corrupt index was accepted"),
        }
    };
    // Truncated: inside the sealed part it fails authentication, inside the header it is
    // named as truncated.
    assert_eq!(reason(&index[..index.len() - 1]), "tampered");
    assert!(
        reason(&index[..10]).contains("truncated"),
        "{}",
        reason(&index[..10])
    );
    assert!(reason(b"").contains("truncated"));
    // Not an index at all.
    let mut other = index.clone();
    other[0] = b'X';
    assert!(reason(&other).contains("unknown header"));
    // Larger than the bound: refused without reading it all.
    std::fs::write(&file, b"").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(sealed::MAX_INDEX_BYTES as u64 + 1)
        .unwrap();
    match SoftwareKeyStore::open(&path) {
        Err(KeyError::MalformedRecord { reason, .. }) => assert!(reason.contains("larger")),
        other => panic!("{:?}", other.err()),
    }
    // Exactly at the bound the size is fine (the contents then fail as any other edit).
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(sealed::MAX_INDEX_BYTES as u64)
        .unwrap();
    assert!(!reason(&std::fs::read(&file).unwrap()).contains("larger"));

    // Duplicated entries, even correctly sealed (a bug, or a key-holder's edit), are refused.
    let dirh = Dir::open_ambient_dir(&path, cap_std::ambient_authority()).unwrap();
    let kek = sealed::load_or_create_master(&dirh, &path).unwrap();
    let entry = || IndexEntry {
        handle: h.clone(),
        scope: app("a"),
        kind: KeyKind::HmacSecret,
        label: "k".into(),
        extractable: false,
        material: Zeroizing::new(vec![7; 32]),
    };
    let twice = sealed::seal_index(&kek, [entry(), entry()].iter());
    assert!(reason(&twice).contains("listed twice"));
    // A sealed entry whose secret has the wrong form for its kind is named too.
    let mut short = entry();
    short.material = Zeroizing::new(vec![7; 8]);
    assert!(reason(&sealed::seal_index(&kek, [short].iter())).contains("16 to 64 bytes"));
    // And the good index opens again.
    std::fs::write(&file, &index).unwrap();
    let ks = SoftwareKeyStore::open(&path).unwrap();
    assert!(ks.hmac(&app("a"), &h, b"x").is_ok());
}

#[test]
fn a_batch_is_one_unit_and_refuses_a_label_twice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    let ks = SoftwareKeyStore::open(&path).unwrap();
    let req = |scope: KeyScope, label: &str| KeyRequest {
        scope,
        kind: KeyKind::HmacSecret,
        label: label.into(),
    };
    // The same label twice in one scope: refused, and nothing was created.
    let err = ks
        .generate_many(&[req(app("a"), "p"), req(app("b"), "p"), req(app("a"), "p")])
        .unwrap_err();
    assert!(matches!(err, KeyError::DuplicateRequest { ref label, .. } if label == "p"));
    assert!(ks.list(&app("a")).unwrap().is_empty());
    assert!(ks.list(&app("b")).unwrap().is_empty());
    assert!(!path.join(sealed::INDEX_FILE).exists());
    // A bad label anywhere in the batch refuses all of it.
    assert!(matches!(
        ks.generate_many(&[req(app("a"), "p"), req(app("b"), "bad label")]),
        Err(KeyError::InvalidLabel(_))
    ));
    assert!(ks.list(&app("a")).unwrap().is_empty());
    // The same label in two scopes is two keys.
    let hs = ks
        .generate_many(&[req(app("a"), "p"), req(app("b"), "p")])
        .unwrap();
    assert_ne!(hs[0], hs[1]);
    // Two keys with one label made one at a time (allowed, as before) both survive a reopen.
    ks.generate(&app("a"), KeyKind::HmacSecret, "p").unwrap();
    drop(ks);
    let ks = SoftwareKeyStore::open(&path).unwrap();
    assert_eq!(ks.list(&app("a")).unwrap().len(), 2);
    assert_eq!(ks.list(&app("b")).unwrap()[0].handle, hs[1]);
    // An empty batch writes nothing and returns nothing.
    assert!(ks.generate_many(&[]).unwrap().is_empty());
}

#[test]
fn many_keys_in_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    let ks = SoftwareKeyStore::open(&path).unwrap();
    let requests: Vec<KeyRequest> = (0..3000)
        .map(|n| KeyRequest {
            scope: app(&format!("app-{n}")),
            kind: if n % 2 == 0 {
                KeyKind::HmacSecret
            } else {
                KeyKind::Ed25519Signing
            },
            label: "pseudonym".into(),
        })
        .collect();
    let handles = ks.generate_many(&requests).unwrap();
    assert_eq!(handles.len(), 3000);
    assert_eq!(handles.iter().collect::<HashSet<_>>().len(), 3000);
    // One index file, not 3,000 record files.
    assert_eq!(
        files(&path),
        [sealed::LOCK_FILE, sealed::INDEX_FILE, "master.key"]
    );
    let tag = ks.hmac(&app("app-10"), &handles[10], b"x").unwrap();
    let sig = ks.sign(&app("app-11"), &handles[11], b"x").unwrap();
    drop(ks);
    let ks = SoftwareKeyStore::open(&path).unwrap();
    for n in [0usize, 1, 1499, 2999] {
        let listed = ks.list(&app(&format!("app-{n}"))).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].handle, handles[n]);
    }
    assert_eq!(ks.hmac(&app("app-10"), &handles[10], b"x").unwrap(), tag);
    assert_eq!(ks.sign(&app("app-11"), &handles[11], b"x").unwrap(), sig);
    assert!(matches!(
        ks.hmac(&app("app-12"), &handles[10], b"x"),
        Err(KeyError::OutOfScope { .. })
    ));
}

#[test]
fn the_store_is_bounded() {
    let ks = SoftwareKeyStore::in_memory();
    let requests: Vec<KeyRequest> = (0..=MAX_SOFTWARE_KEYS)
        .map(|n| KeyRequest {
            scope: KeyScope::Gateway,
            kind: KeyKind::HmacSecret,
            label: format!("k{n}"),
        })
        .collect();
    assert!(matches!(
        ks.generate_many(&requests),
        Err(KeyError::TooManyKeys { held, limit }) if held == MAX_SOFTWARE_KEYS + 1 && limit == MAX_SOFTWARE_KEYS
    ));
    assert!(ks.list(&KeyScope::Gateway).unwrap().is_empty());
    ks.generate_many(&requests[..MAX_SOFTWARE_KEYS]).unwrap();
    assert!(matches!(
        ks.generate(&KeyScope::Gateway, KeyKind::HmacSecret, "one-more"),
        Err(KeyError::TooManyKeys { .. })
    ));
}

#[test]
fn two_processes_writing_one_store_keep_each_others_keys() {
    // A gateway running while `palisade provision` adds a key to the same folder: each write
    // re-reads the index under the directory lock instead of rewriting it from memory.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    let gateway = SoftwareKeyStore::open(&path).unwrap();
    let cli = SoftwareKeyStore::open(&path).unwrap();
    let a = gateway
        .generate(&app("a"), KeyKind::HmacSecret, "k")
        .unwrap();
    let b = cli
        .generate(&KeyScope::Gateway, KeyKind::X25519, "x")
        .unwrap();
    let c = gateway
        .generate(&app("c"), KeyKind::HmacSecret, "k")
        .unwrap();
    // The gateway sees the key the other store made once it wrote after it.
    assert!(gateway.public_key(&KeyScope::Gateway, &b).is_ok());
    gateway.delete(&app("a"), &a).unwrap();
    drop((gateway, cli));
    let ks = SoftwareKeyStore::open(&path).unwrap();
    assert!(ks.public_key(&KeyScope::Gateway, &b).is_ok());
    assert!(ks.hmac(&app("c"), &c, b"x").is_ok());
    assert!(matches!(
        ks.hmac(&app("a"), &a, b"x"),
        Err(KeyError::NotFound { .. })
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
