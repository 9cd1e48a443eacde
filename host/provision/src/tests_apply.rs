//! Applying bundles on a gateway: each rejection (SER-012/020/021/022), all-or-nothing
//! application, key rotation, and replay state that survives a restart.

use super::tests::*;
use super::*;
use palisade_keys::{KeyError, KeyInfo, KeyKind, KeyScope, KeyStore, SoftwareKeyStore};
use std::sync::atomic::Ordering;
use std::sync::Arc;

struct Gw {
    p: Provisioner,
    store: Arc<Flaky>,
    dir: Arc<MemoryDirectory>,
}

fn trusted() -> TrustedProvider {
    TrustedProvider::new(&provider_key().verifying_key().to_bytes())
        .unwrap()
        .app("lights")
        .gateway_groups(true)
}

fn gateway_with(store: Arc<Flaky>, file: StateFile) -> Gw {
    let key = GatewayKey::from_secret(gateway_secret());
    let mut p = Provisioner::new(GW, key, store.clone(), file).unwrap();
    p.trust(SP, trusted());
    let dir = Arc::new(MemoryDirectory::new());
    p.add_directory(dir.clone());
    Gw { p, store, dir }
}

fn gateway() -> Gw {
    gateway_with(
        Flaky::new(SoftwareKeyStore::in_memory()),
        StateFile::in_memory(),
    )
}

fn app_keys(g: &Gw) -> Vec<KeyInfo> {
    g.store.list(&KeyScope::App("lights".into())).unwrap()
}

fn bundle(sequence: u64) -> Vec<u8> {
    create_bundle(&spec(sequence, sample_contents()), &provider_key()).unwrap()
}

/// Applies `bytes`, expects a refusal, and checks that nothing changed.
fn refused(g: &mut Gw, bytes: &[u8], now: u64) -> ProvisionError {
    let state = g.p.state().clone();
    let keys = app_keys(g);
    let counts = g.dir.counts();
    let err = g.p.apply(bytes, now).expect_err("bundle should be refused");
    assert_eq!(
        g.p.state(),
        &state,
        "state changed by a refused bundle: {err}"
    );
    assert_eq!(
        app_keys(g),
        keys,
        "keystore changed by a refused bundle: {err}"
    );
    assert_eq!(
        g.dir.counts(),
        counts,
        "directory changed by a refused bundle: {err}"
    );
    assert!(!err.to_string().is_empty());
    err
}

#[test]
fn applies_an_encrypted_bundle() {
    let mut g = gateway();
    let r = g.p.apply(&bundle(1), NOW).unwrap();
    assert!(r.encrypted);
    assert_eq!(r.devices, ["d1", "d2"]);
    assert_eq!(r.app_groups, ["lights/admins"]);
    assert_eq!(r.keys.len(), 2);
    assert!(g.dir.is_member("lights", "admins", "CAE1"));
    assert_eq!(g.dir.gateway_group("g1").unwrap().len(), 2);
    assert_eq!(g.dir.device_key("d1"), Some(device_key(1)));
    // The secret is usable through the keystore by its name, in the app's scope only.
    let scope = KeyScope::App("lights".into());
    let h = g.p.state().app_key("lights", "token_key").unwrap().clone();
    let mac = g.store.hmac(&scope, &h, b"m").unwrap();
    let mut m = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(&[0x42; 32]).unwrap();
    hmac::Mac::update(&mut m, b"m");
    assert_eq!(mac, <[u8; 32]>::from(hmac::Mac::finalize(m).into_bytes()));
    assert!(g
        .store
        .hmac(&KeyScope::App("other".into()), &h, b"m")
        .is_err());
    assert_eq!(
        app_keys(&g)
            .iter()
            .filter(|k| k.label == "token_key")
            .count(),
        1
    );
}

#[test]
fn gateway_key_in_the_keystore_opens_bundles() {
    let store = Arc::new(SoftwareKeyStore::in_memory());
    let h = store
        .generate(&KeyScope::Gateway, KeyKind::X25519, "provisioning")
        .unwrap();
    let key = GatewayKey::from_store(store.clone(), h).unwrap();
    let mut s = spec(1, sample_contents());
    s.encrypt_to = Some(key.public());
    let bytes = create_bundle(&s, &provider_key()).unwrap();
    let mut p = Provisioner::new(GW, key, store, StateFile::in_memory()).unwrap();
    p.trust(SP, trusted());
    p.apply(&bytes, NOW).unwrap();
}

#[test]
fn each_rejection_has_its_own_error() {
    use ProvisionError as E;
    let mut g = gateway();
    let vk = provider_key().verifying_key().to_bytes();
    // Untrusted provider.
    let mut s = spec(1, sample_contents());
    s.provider = "sp-other".into();
    let e = refused(&mut g, &create_bundle(&s, &provider_key()).unwrap(), NOW);
    assert!(matches!(e, E::UntrustedProvider(p) if p == "sp-other"));
    // Signed by another key.
    let e = refused(
        &mut g,
        &create_bundle(
            &spec(1, sample_contents()),
            &ed25519_dalek::SigningKey::from_bytes(&[1; 32]),
        )
        .unwrap(),
        NOW,
    );
    assert!(matches!(e, E::BadSignature { .. }));
    // Tampered payload.
    let mut t = bundle(1);
    let n = t.len();
    t[n - 80] ^= 4;
    assert!(matches!(refused(&mut g, &t, NOW), E::BadSignature { .. }));
    // Mis-addressed.
    let mut s = spec(1, sample_contents());
    s.gateway = "gw-2".into();
    let e = refused(&mut g, &create_bundle(&s, &provider_key()).unwrap(), NOW);
    assert!(matches!(e, E::MisAddressed { addressed_to, .. } if addressed_to == "gw-2"));
    // Expired, and not yet valid.
    assert!(matches!(
        refused(&mut g, &bundle(1), NOW + 3600),
        E::Expired { .. }
    ));
    assert!(matches!(
        refused(&mut g, &bundle(1), NOW - 10 - CLOCK_SKEW - 1),
        E::NotYetValid { .. }
    ));
    // A window longer than allowed (signed by the provider, refused anyway).
    let mut h = header(1);
    h.expires_at = h.issued_at + MAX_VALIDITY + 1;
    let e = refused(
        &mut g,
        &craft(h, &BundleContents::default(), None, |_| {}),
        NOW,
    );
    assert!(matches!(e, E::InvalidValidity { .. }));
    // Encrypted to another gateway key; ciphertext that fails authentication.
    let mut s = spec(1, sample_contents());
    s.encrypt_to =
        Some(x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from([3; 32])).to_bytes());
    assert!(matches!(
        refused(&mut g, &create_bundle(&s, &provider_key()).unwrap(), NOW),
        E::WrongRecipient { .. }
    ));
    let t = craft(header(1), &sample_contents(), Some(gateway_public()), |p| {
        p[0] ^= 1
    });
    assert!(matches!(refused(&mut g, &t, NOW), E::DecryptionFailed));
    // Secrets in a clear bundle.
    let t = craft(header(1), &sample_contents(), None, |_| {});
    assert!(matches!(refused(&mut g, &t, NOW), E::SecretsInClear));
    // An app the provider does not own (SER-022); the gateway's groups without the right.
    let mut c = sample_contents();
    c.app_groups
        .entry("heating".into())
        .or_default()
        .insert("x".into(), ["a".to_string()].into());
    let e = refused(
        &mut g,
        &create_bundle(&spec(1, c), &provider_key()).unwrap(),
        NOW,
    );
    assert!(matches!(e, E::AppNotAllowed { app, .. } if app == "heating"));
    g.p.trust(SP, TrustedProvider::new(&vk).unwrap().app("lights"));
    let e = refused(&mut g, &bundle(1), NOW);
    assert!(matches!(e, E::GatewayScopeNotAllowed { .. }));
    g.p.trust(SP, trusted());
    // Oversize and garbage.
    assert!(matches!(
        refused(&mut g, &vec![0; MAX_BUNDLE_LEN + 1], NOW),
        E::TooLarge { .. }
    ));
    assert!(matches!(
        refused(&mut g, b"PLPB\x01garbage", NOW),
        E::Malformed(_)
    ));
    // A gateway group whose member has no key.
    let mut c = sample_contents();
    c.gateway_groups
        .insert("g2".into(), ["ghost".to_string()].into());
    let e = refused(
        &mut g,
        &create_bundle(&spec(1, c), &provider_key()).unwrap(),
        NOW,
    );
    assert!(matches!(e, E::InvalidItem { .. }));
    // After all that, the good bundle still applies.
    g.p.apply(&bundle(1), NOW).unwrap();
}

#[test]
fn replays_are_refused() {
    let mut g = gateway();
    let b5 = bundle(5);
    g.p.apply(&b5, NOW).unwrap();
    let e = refused(&mut g, &b5, NOW + 1);
    assert!(matches!(e, ProvisionError::Replayed { .. }));
    for seq in [3, 5] {
        let e = refused(&mut g, &bundle(seq), NOW + 1);
        assert!(
            matches!(e, ProvisionError::StaleSequence { sequence, last: 5, .. } if sequence == seq)
        );
    }
    g.p.apply(&bundle(6), NOW + 1).unwrap();
}

#[test]
fn replay_state_survives_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    let open = || {
        gateway_with(
            Flaky::new(SoftwareKeyStore::open(&keys).unwrap()),
            StateFile::open(&tmp.path().join("provision")).unwrap(),
        )
    };
    let b5 = bundle(5);
    {
        let mut g = open();
        g.p.apply(&b5, NOW).unwrap();
    }
    let mut g = open();
    // The directory is rebuilt from the stored state, and the key index still resolves.
    assert!(g.dir.is_member("lights", "admins", "CAE1"));
    let h = g.p.state().app_key("lights", "token_key").unwrap().clone();
    g.store
        .hmac(&KeyScope::App("lights".into()), &h, b"m")
        .unwrap();
    assert!(matches!(
        refused(&mut g, &b5, NOW + 1),
        ProvisionError::Replayed { .. }
    ));
    assert!(matches!(
        refused(&mut g, &bundle(4), NOW + 1),
        ProvisionError::StaleSequence { .. }
    ));
    g.p.apply(&bundle(6), NOW + 1).unwrap();
}

#[test]
fn a_bad_last_item_changes_nothing() {
    let mut g = gateway();
    g.p.apply(&bundle(1), NOW).unwrap();
    // Everything valid except the very last item encoded: a weak app public key.
    let mut c = sample_contents();
    c.devices.insert("d3".into(), device_key(3));
    c.app_secrets
        .get_mut("lights")
        .unwrap()
        .insert("new_key".into(), SecretBytes::new(vec![7; 32]));
    c.app_public_keys
        .get_mut("lights")
        .unwrap()
        .insert("zz_last".into(), [0u8; 32]);
    let t = craft(header(2), &c, Some(gateway_public()), |_| {});
    let e = refused(&mut g, &t, NOW);
    assert!(
        matches!(e, ProvisionError::InvalidItem { ref item, .. } if item.contains("zz_last")),
        "{e}"
    );
    assert!(g.dir.device_key("d3").is_none());
    g.p.apply(&bundle(2), NOW).unwrap();
}

#[test]
fn a_failing_import_rolls_back_and_the_bundle_can_be_retried() {
    let mut g = gateway();
    g.store.imports_left.store(1, Ordering::SeqCst); // the second of two imports fails
    let e = refused(&mut g, &bundle(1), NOW);
    assert!(matches!(e, ProvisionError::Key(_)));
    g.store.imports_left.store(usize::MAX, Ordering::SeqCst);
    g.p.apply(&bundle(1), NOW).unwrap();
    assert_eq!(app_keys(&g).len(), 2);
}

#[test]
fn a_failing_commit_rolls_back_the_imported_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let file = StateFile::open(tmp.path()).unwrap();
    let mut g = gateway_with(Flaky::new(SoftwareKeyStore::in_memory()), file);
    g.p.apply(&bundle(1), NOW).unwrap();
    let before = g.p.state().clone();
    let store = g.store.clone();
    // Only one process (here: one StateFile) may hold the state at a time.
    assert!(matches!(
        StateFile::open(tmp.path()),
        Err(ProvisionError::StateLocked { .. })
    ));
    drop(g);
    // The note of the keys in flight is written, the commit itself fails.
    let file = StateFile::open(tmp.path()).unwrap();
    file.saves_left.store(1, Ordering::SeqCst);
    let mut g2 = gateway_with(store, file);
    let e = refused(&mut g2, &bundle(2), NOW);
    assert!(matches!(e, ProvisionError::StateIo { .. }), "{e}");
    assert_eq!(
        app_keys(&g2).len(),
        2,
        "the keys imported for the failed commit are gone"
    );
    drop(g2);
    let mut on_disk = StateFile::open(tmp.path()).unwrap().load().unwrap();
    on_disk.strays.clear(); // only the note of the keys in flight may differ
    assert_eq!(on_disk, before);
}

#[test]
fn keys_left_by_an_interrupted_apply_are_deleted_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Flaky::new(SoftwareKeyStore::in_memory());
    let mut g = gateway_with(store.clone(), StateFile::open(tmp.path()).unwrap());
    // The second import fails and the rollback cannot delete the first: a stray remains.
    store.imports_left.store(1, Ordering::SeqCst);
    store.fail_deletes.store(true, Ordering::SeqCst);
    assert!(g.p.apply(&bundle(1), NOW).is_err());
    assert_eq!(app_keys(&g).len(), 1);
    assert!(g.p.state().app_key("lights", "token_key").is_none());
    drop(g);
    store.imports_left.store(usize::MAX, Ordering::SeqCst);
    store.fail_deletes.store(false, Ordering::SeqCst);
    let mut g = gateway_with(store, StateFile::open(tmp.path()).unwrap());
    assert!(app_keys(&g).is_empty(), "stray key not cleaned at start");
    assert!(g.p.state().strays.is_empty());
    g.p.apply(&bundle(1), NOW).unwrap();
}

#[test]
fn rotation_replaces_keys_and_rekeys_groups() {
    let mut g = gateway();
    g.p.apply(&bundle(1), NOW).unwrap();
    let old = g.p.state().app_key("lights", "token_key").unwrap().clone();
    let mut c = BundleContents::default();
    c.devices.insert("d1".into(), device_key(7));
    c.app_secrets
        .entry("lights".into())
        .or_default()
        .insert("token_key".into(), SecretBytes::new(vec![0x24; 32]));
    let r =
        g.p.apply(&create_bundle(&spec(2, c), &provider_key()).unwrap(), NOW)
            .unwrap();
    assert_eq!(r.superseded_keys, 1);
    assert_eq!(
        r.gateway_groups,
        ["g1"],
        "the group of the re-keyed device is refreshed"
    );
    assert_eq!(g.dir.gateway_group("g1").unwrap()["d1"], device_key(7));
    let new = g.p.state().app_key("lights", "token_key").unwrap().clone();
    assert_ne!(old, new);
    assert!(matches!(
        g.store.hmac(&KeyScope::App("lights".into()), &old, b"m"),
        Err(KeyError::NotFound { .. })
    ));
    assert_eq!(
        app_keys(&g)
            .iter()
            .filter(|k| k.label == "token_key")
            .count(),
        1
    );
    // An empty member list removes a group.
    let mut c = BundleContents::default();
    c.app_groups
        .entry("lights".into())
        .or_default()
        .insert("admins".into(), Default::default());
    g.p.apply(&create_bundle(&spec(3, c), &provider_key()).unwrap(), NOW)
        .unwrap();
    assert!(!g.dir.is_member("lights", "admins", "CAE1"));
    assert!(g.p.state().app_groups.is_empty());
}

#[test]
fn a_provider_cannot_take_over_another_providers_devices() {
    let mut g = gateway();
    g.p.apply(&bundle(1), NOW).unwrap();
    let other = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    let vk = other.verifying_key().to_bytes();
    g.p.trust(
        "sp-other",
        TrustedProvider::new(&vk)
            .unwrap()
            .app("heating")
            .gateway_groups(true),
    );
    let mut c = BundleContents::default();
    c.devices.insert("d1".into(), device_key(8));
    let mut s = spec(1, c);
    s.provider = "sp-other".into();
    let e = refused(&mut g, &create_bundle(&s, &other).unwrap(), NOW);
    assert!(
        matches!(e, ProvisionError::ForeignItem { ref owner, .. } if owner == SP),
        "{e}"
    );
    let mut c = BundleContents::default();
    c.gateway_groups.insert("g1".into(), Default::default());
    s.contents = c;
    let e = refused(&mut g, &create_bundle(&s, &other).unwrap(), NOW);
    assert!(matches!(e, ProvisionError::ForeignItem { .. }), "{e}");
}

#[test]
fn a_directory_can_refuse_before_anything_changes() {
    struct Full;
    impl MemberDirectory for Full {
        fn check(&self, _: &DirectoryUpdate) -> Result<(), String> {
            Err("no room".into())
        }
        fn apply(&self, u: &DirectoryUpdate) {
            assert!(u.is_empty(), "apply after a refused check");
        }
    }
    let mut g = gateway();
    g.p.add_directory(Arc::new(Full));
    assert!(matches!(
        refused(&mut g, &bundle(1), NOW),
        ProvisionError::Directory(_)
    ));
}
