//! Key files and delegation files.

use std::os::unix::fs::PermissionsExt;

use crate::trust::{
    decode_public_key, encode_public_key, generate_key, read_private_key, read_public_key,
    write_key_pair, KeyFileError,
};
use crate::{key_id, Delegation, FormatError, ModuleKind};

#[test]
fn keygen_writes_a_0600_private_key_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("root");
    let key = generate_key();
    let (private, public) = write_key_pair(&prefix, &key).unwrap();
    let mode = std::fs::metadata(&private).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(
        read_private_key(&private).unwrap().to_bytes(),
        key.to_bytes()
    );
    assert_eq!(read_public_key(&public).unwrap(), key.verifying_key());
    assert!(matches!(
        write_key_pair(&prefix, &generate_key()),
        Err(KeyFileError::Exists { .. })
    ));
    assert_eq!(
        read_private_key(&private).unwrap().to_bytes(),
        key.to_bytes(),
        "unchanged"
    );
    // No temporary files are left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}

#[test]
fn a_private_key_readable_by_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (private, _) = write_key_pair(&dir.path().join("k"), &generate_key()).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(
        read_private_key(&private),
        Err(KeyFileError::InsecurePermissions { .. })
    ));
}

#[test]
fn key_files_state_their_id_and_it_must_match() {
    let key = generate_key().verifying_key();
    let text = encode_public_key(&key);
    assert!(text.contains(&key_id(&key).to_string()));
    assert_eq!(decode_public_key(&text).unwrap(), key);
    let other = key_id(&generate_key().verifying_key()).to_string();
    let forged = text.replace(&key_id(&key).to_string(), &other);
    assert!(matches!(
        decode_public_key(&forged),
        Err(FormatError::KeyIdMismatch { .. })
    ));
    let private_text = crate::trust::encode_private_key(&generate_key());
    assert!(matches!(
        decode_public_key(&private_text),
        Err(FormatError::Json(_))
    ));
}

#[test]
fn delegations_round_trip_and_every_field_is_mandatory() {
    let root = generate_key();
    let publisher = generate_key().verifying_key();
    let d = Delegation::issue(
        &root,
        publisher,
        "lights",
        &[ModuleKind::Filter, ModuleKind::Authorizer],
        10,
        20,
    )
    .unwrap();
    assert_eq!(
        d.kinds,
        vec![ModuleKind::Authorizer, ModuleKind::Filter],
        "canonical order"
    );
    let json = d.to_json();
    assert_eq!(Delegation::from_json(&json).unwrap(), d);
    let mut value: serde_json::Value = serde_json::from_str(&json).unwrap();
    value.as_object_mut().unwrap().remove("not_before");
    assert!(matches!(
        Delegation::from_json(&value.to_string()),
        Err(FormatError::Json(_))
    ));
    assert!(matches!(
        Delegation::issue(&root, publisher, "lights", &[], 10, 20),
        Err(FormatError::Empty { .. })
    ));
    assert!(matches!(
        Delegation::issue(&root, publisher, "lights", &[ModuleKind::Filter], 20, 20),
        Err(FormatError::EmptyValidity { .. })
    ));
    assert!(matches!(
        Delegation::issue(&root, publisher, "../x", &[ModuleKind::Filter], 10, 20),
        Err(FormatError::InvalidName(_))
    ));
}

#[test]
fn weak_publisher_keys_are_refused() {
    let root = generate_key();
    let publisher = generate_key().verifying_key();
    let d = Delegation::issue(&root, publisher, "lights", &[ModuleKind::Filter], 10, 20).unwrap();
    // The identity point is a small-order key: any signature "verifies" under it.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let json = d
        .to_json()
        .replace(&hex::encode(publisher.as_bytes()), &hex::encode(identity));
    assert!(matches!(
        Delegation::from_json(&json),
        Err(FormatError::BadPublicKey { .. })
    ));
}
