//! The PKCS#11 backend against a real SoftHSM2 token initialized in a temporary directory
//! (SER-023). Skipped with a message when SoftHSM2 is not installed, unless
//! `PALISADE_REQUIRE_HSM=1` (set by CI) makes that a failure.

use super::*;
use hmac::Mac;

fn softhsm_module() -> Option<PathBuf> {
    let env = std::env::var_os("PALISADE_PKCS11_MODULE").map(PathBuf::from);
    env.into_iter()
        .chain(
            [
                "/usr/lib/softhsm/libsofthsm2.so",
                "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
                "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
                "/usr/local/lib/softhsm/libsofthsm2.so",
            ]
            .map(PathBuf::from),
        )
        .find(|p| p.exists())
}

/// Creates a token labelled `palisade-test` with user PIN 1234 in `dir`.
fn init_token(module: &std::path::Path, dir: &std::path::Path) {
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    // Read by SoftHSM2 at C_Initialize; this is the only test in the process that loads it.
    std::env::set_var("SOFTHSM2_CONF", &conf);
    let ctx = Pkcs11::new(module).unwrap();
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .unwrap();
    let slot = ctx.get_all_slots().unwrap()[0];
    let so = AuthPin::from("5678");
    ctx.init_token(slot, &so, "palisade-test").unwrap();
    let slot = ctx
        .get_slots_with_initialized_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label() == "palisade-test")
        .unwrap();
    let s = ctx.open_rw_session(slot).unwrap();
    s.login(UserType::So, Some(&so)).unwrap();
    s.init_pin(&AuthPin::from("1234")).unwrap();
    drop(s);
    ctx.finalize().unwrap();
}

#[test]
fn softhsm_keys_are_used_in_the_token_and_never_exported() {
    let Some(module) = softhsm_module() else {
        assert!(
            std::env::var_os("PALISADE_REQUIRE_HSM").is_none(),
            "SoftHSM2 is required but not installed"
        );
        eprintln!("SKIPPED: SoftHSM2 not installed (apt-get install softhsm2)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    init_token(&module, dir.path());
    let cfg = Pkcs11Config {
        module,
        token_label: "palisade-test".into(),
        user_pin: "1234".into(),
    };
    let ks = Pkcs11KeyStore::open(&cfg).unwrap();
    let g = KeyScope::Gateway;

    // The gateway identity: generated in the token, signs there, verifies anywhere.
    let h = ks
        .generate(&g, KeyKind::Ed25519Signing, "gateway-identity")
        .unwrap();
    let sig = ks.sign(&g, &h, b"group assertion").unwrap();
    let pk = ks.public_key(&g, &h).unwrap();
    ed25519_dalek::VerifyingKey::from_bytes(&pk)
        .unwrap()
        .verify_strict(
            b"group assertion",
            &ed25519_dalek::Signature::from_bytes(&sig),
        )
        .unwrap();
    ks.verify(&g, &h, b"group assertion", &sig).unwrap();
    assert!(matches!(
        ks.verify(&g, &h, b"other", &sig),
        Err(KeyError::BadSignature { .. })
    ));

    // Marked non-extractable in the token, and an export attempt fails.
    let info = ks.list(&g).unwrap();
    let me = info.iter().find(|k| k.handle == h).unwrap();
    assert_eq!(me.kind, KeyKind::Ed25519Signing);
    assert!(!me.extractable);
    assert_eq!(me.public_key.as_deref(), Some(hex::encode(pk).as_str()));
    assert!(matches!(
        ks.export_secret(&g, &h),
        Err(KeyError::NotExtractable { .. })
    ));

    // Scoping holds in the token too (SER-024).
    let app = KeyScope::App("lights".into());
    assert!(matches!(
        ks.sign(&app, &h, b"x"),
        Err(KeyError::OutOfScope { .. })
    ));
    assert!(ks.list(&app).unwrap().is_empty());

    // HMAC secrets: imported, used in the token, not exportable.
    let secret = [0x42u8; 32];
    let hm = ks
        .import(&app, KeyKind::HmacSecret, "token-key", &secret)
        .unwrap();
    let mut m = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&secret).unwrap();
    m.update(b"msg");
    assert_eq!(
        ks.hmac(&app, &hm, b"msg").unwrap(),
        <[u8; 32]>::from(m.finalize().into_bytes())
    );
    assert!(matches!(
        ks.export_secret(&app, &hm),
        Err(KeyError::NotExtractable { .. })
    ));
    assert!(matches!(
        ks.sign(&app, &hm, b"x"),
        Err(KeyError::WrongKind { .. })
    ));
    let gen = ks.generate(&app, KeyKind::HmacSecret, "generated").unwrap();
    assert_eq!(ks.hmac(&app, &gen, b"m").unwrap().len(), 32);

    // Private keys cannot be imported: they are born in the token.
    assert!(matches!(
        ks.import(&g, KeyKind::Ed25519Signing, "x", &[1; 32]),
        Err(KeyError::Unsupported { .. })
    ));

    // The token keeps keys across sessions; delete removes them.
    drop(ks);
    let ks = Pkcs11KeyStore::open(&cfg).unwrap();
    assert_eq!(ks.public_key(&g, &h).unwrap(), pk);
    ks.delete(&g, &h).unwrap();
    assert!(matches!(
        ks.sign(&g, &h, b"x"),
        Err(KeyError::NotFound { .. })
    ));
}
