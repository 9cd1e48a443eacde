//! The embedded store: uploads, activation rules, removal and integrity (SER-013, SER-022).

use std::path::Path;

use super::{component, Chain, NOW};
use crate::store::{IntegrityProblem, PutStatus, StoreConfig};
use crate::{
    EmbeddedStore, ModuleHash, ModuleState, ModuleStore, StoreError, TrustAnchors, Upload,
    VerifyError, Version,
};

pub(super) fn open(dir: &Path, chain: &Chain) -> EmbeddedStore {
    EmbeddedStore::open(dir, StoreConfig::new(chain.anchors.clone())).unwrap()
}

pub(super) fn upload(bytes: &[u8], activate: bool) -> Upload<'_> {
    Upload {
        bytes,
        expected_app: Some("lights"),
        expected_kind: None,
        activate,
        now: NOW,
    }
}

pub(super) fn v(s: &str) -> Version {
    s.parse().unwrap()
}

pub(super) fn active(store: &EmbeddedStore) -> Option<String> {
    let active = store.active_modules().unwrap();
    assert!(active.len() <= 1);
    active.first().map(|r| r.version.to_string())
}

/// Flips one byte of a stored module file, as a disk error or an attacker would.
pub(super) fn damage(dir: &Path, sha: &ModuleHash) {
    let path = dir.join("modules").join(format!("{sha}.wasm"));
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
}

#[test]
fn happy_path_put_activate_read() {
    let dir = tempfile::tempdir().unwrap();
    let chain = Chain::new();
    let store = open(dir.path(), &chain);
    let signed = chain.signed("lights", "acp", "1.0.0", b"v1");
    let outcome = store.put(&upload(&signed, true)).unwrap();
    assert_eq!(outcome.status, PutStatus::Stored);
    assert_eq!(outcome.record.state, ModuleState::Active);
    assert_eq!(outcome.record.label(), "lights/acp@1.0.0");
    assert_eq!(active(&store).as_deref(), Some("1.0.0"));
    assert_eq!(
        store.read_verified(&outcome.record.sha256).unwrap(),
        component(b"v1")
    );
    assert_eq!(store.list(Some("lights")).unwrap().len(), 1);
    assert!(store.list(Some("doors")).unwrap().is_empty());
}

#[test]
fn the_same_upload_twice_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let chain = Chain::new();
    let store = open(dir.path(), &chain);
    let signed = chain.signed("lights", "acp", "1.0.0", b"v1");
    store.put(&upload(&signed, true)).unwrap();
    let before = store.list(None).unwrap();
    let again = store.put(&upload(&signed, true)).unwrap();
    assert_eq!(again.status, PutStatus::AlreadyPresent);
    assert_eq!(store.list(None).unwrap(), before);
    assert_eq!(
        std::fs::read_dir(dir.path().join("modules"))
            .unwrap()
            .count(),
        1
    );
    // The same version with other contents is a conflict, and changes nothing.
    let other = chain.signed("lights", "acp", "1.0.0", b"different");
    assert!(matches!(
        store.put(&upload(&other, false)),
        Err(StoreError::VersionConflict { .. })
    ));
    assert_eq!(store.list(None).unwrap(), before);
}

#[test]
fn refused_uploads_leave_the_registry_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let chain = Chain::new();
    let store = open(dir.path(), &chain);
    store
        .put(&upload(
            &chain.signed("lights", "acp", "1.0.0", b"v1"),
            true,
        ))
        .unwrap();
    let before = store.list(None).unwrap();
    let unsigned = component(b"v2");
    assert!(matches!(
        store.put(&upload(&unsigned, true)),
        Err(StoreError::Refused(VerifyError::Unsigned))
    ));
    let other_app = chain.signed("doors", "acp", "2.0.0", b"v2");
    assert!(matches!(
        store.put(&upload(&other_app, true)),
        Err(StoreError::Refused(VerifyError::AppMismatch { .. }))
    ));
    let mut damaged = chain.signed("lights", "acp", "2.0.0", b"v2");
    damaged[12] ^= 1;
    assert!(matches!(
        store.put(&upload(&damaged, true)),
        Err(StoreError::Refused(_))
    ));
    assert_eq!(store.list(None).unwrap(), before);
    assert_eq!(
        std::fs::read_dir(dir.path().join("modules"))
            .unwrap()
            .count(),
        1
    );
}

#[test]
fn versions_only_go_up_unless_a_rollback_is_forced() {
    let dir = tempfile::tempdir().unwrap();
    let chain = Chain::new();
    let store = open(dir.path(), &chain);
    store
        .put(&upload(
            &chain.signed("lights", "acp", "1.0.0", b"v1"),
            true,
        ))
        .unwrap();
    store
        .put(&upload(
            &chain.signed("lights", "acp", "1.10.0", b"v3"),
            true,
        ))
        .unwrap();
    assert_eq!(active(&store).as_deref(), Some("1.10.0"));
    // 1.9.0 < 1.10.0 (semver, not string order): refused at upload, nothing stored.
    let older = chain.signed("lights", "acp", "1.9.0", b"v2");
    assert!(matches!(
        store.put(&upload(&older, true)),
        Err(StoreError::VersionNotGreater { .. })
    ));
    assert_eq!(store.list(None).unwrap().len(), 2);
    // Activating a lower stored version needs force.
    let refused = store.activate("lights", "acp", &v("1.0.0"), false);
    assert!(matches!(refused, Err(StoreError::VersionNotGreater { .. })));
    assert_eq!(active(&store).as_deref(), Some("1.10.0"));
    let forced = store.activate("lights", "acp", &v("1.0.0"), true).unwrap();
    assert_eq!(forced.previous, Some(v("1.10.0")));
    assert_eq!(active(&store).as_deref(), Some("1.0.0"));
    // Forward again without force; re-activating the active version changes nothing.
    assert!(
        store
            .activate("lights", "acp", &v("1.10.0"), false)
            .unwrap()
            .changed
    );
    assert!(
        !store
            .activate("lights", "acp", &v("1.10.0"), false)
            .unwrap()
            .changed
    );
    // Rollback sugar: to the highest good version below the active one.
    let back = store.rollback("lights", "acp").unwrap();
    assert_eq!(back.record.version, v("1.0.0"));
    assert!(matches!(
        store.rollback("lights", "acp"),
        Err(StoreError::NoRollbackTarget { .. })
    ));
    assert!(matches!(
        store.activate("lights", "acp", &v("3.0.0"), true),
        Err(StoreError::NotFound { .. })
    ));
}

#[test]
fn a_plugin_keeps_its_kind() {
    let dir = tempfile::tempdir().unwrap();
    let chain = Chain::new();
    let store = open(dir.path(), &chain);
    store
        .put(&upload(
            &chain.signed("lights", "acp", "1.0.0", b"v1"),
            true,
        ))
        .unwrap();
    let delegation = chain.delegation("lights", &[crate::ModuleKind::Filter]);
    let m = super::manifest("lights", crate::ModuleKind::Filter, "acp", "2.0.0");
    let filter = crate::sign(&component(b"f"), &m, &chain.publisher, &delegation).unwrap();
    assert!(matches!(
        store.put(&upload(&filter, true)),
        Err(StoreError::KindConflict { .. })
    ));
}

#[test]
fn removing_versions() {
    let dir = tempfile::tempdir().unwrap();
    let chain = Chain::new();
    let store = open(dir.path(), &chain);
    store
        .put(&upload(
            &chain.signed("lights", "acp", "1.0.0", b"v1"),
            true,
        ))
        .unwrap();
    let v2 = store
        .put(&upload(
            &chain.signed("lights", "acp", "2.0.0", b"v2"),
            true,
        ))
        .unwrap();
    store
        .put(&upload(
            &chain.signed("lights", "acp", "3.0.0", b"v3"),
            false,
        ))
        .unwrap();
    // Not the active version without force.
    assert!(matches!(
        store.remove("lights", "acp", &v("2.0.0"), false),
        Err(StoreError::RemoveActive { .. })
    ));
    // A stored version: its row and its file go.
    store.remove("lights", "acp", &v("3.0.0"), false).unwrap();
    assert_eq!(store.list(None).unwrap().len(), 2);
    assert_eq!(
        std::fs::read_dir(dir.path().join("modules"))
            .unwrap()
            .count(),
        2
    );
    // The active version with force: the plugin falls back to the last good version.
    let removed = store.remove("lights", "acp", &v("2.0.0"), true).unwrap();
    assert_eq!(removed.fallback.unwrap().now_active, Some(v("1.0.0")));
    assert!(matches!(
        store.read_verified(&v2.record.sha256),
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(active(&store).as_deref(), Some("1.0.0"));
}

#[test]
fn a_changed_byte_on_disk_falls_back_to_the_last_good_version() {
    let dir = tempfile::tempdir().unwrap();
    let chain = Chain::new();
    let store = open(dir.path(), &chain);
    store
        .put(&upload(
            &chain.signed("lights", "acp", "1.0.0", b"v1"),
            true,
        ))
        .unwrap();
    let v2 = store
        .put(&upload(
            &chain.signed("lights", "acp", "2.0.0", b"v2"),
            true,
        ))
        .unwrap()
        .record;
    damage(dir.path(), &v2.sha256);
    let report = store.integrity_check_all().unwrap();
    let failed: Vec<_> = report.failures().map(|e| e.record.label()).collect();
    assert_eq!(failed, ["lights/acp@2.0.0"]);
    assert_eq!(report.fallbacks.len(), 1);
    assert_eq!(report.fallbacks[0].now_active, Some(v("1.0.0")));
    assert_eq!(active(&store).as_deref(), Some("1.0.0"));
    let rows = store.list(None).unwrap();
    assert_eq!(rows[1].state, ModuleState::FailedIntegrity);
    // A failed version cannot be activated again, even by force...
    assert!(matches!(
        store.activate("lights", "acp", &v("2.0.0"), true),
        Err(StoreError::Failed { .. })
    ));
    // ...until the same signed module is uploaded again, which repairs it.
    let repaired = store
        .put(&upload(
            &chain.signed("lights", "acp", "2.0.0", b"v2"),
            true,
        ))
        .unwrap();
    assert_eq!(repaired.status, PutStatus::Repaired);
    assert_eq!(active(&store).as_deref(), Some("2.0.0"));
}

#[test]
fn read_verified_names_the_module_and_marks_it_failed() {
    let dir = tempfile::tempdir().unwrap();
    let chain = Chain::new();
    let store = open(dir.path(), &chain);
    let v1 = store
        .put(&upload(
            &chain.signed("lights", "acp", "1.0.0", b"v1"),
            true,
        ))
        .unwrap()
        .record;
    let v2 = store
        .put(&upload(
            &chain.signed("lights", "acp", "2.0.0", b"v2"),
            true,
        ))
        .unwrap()
        .record;
    damage(dir.path(), &v1.sha256);
    damage(dir.path(), &v2.sha256);
    let Err(StoreError::Integrity {
        modules,
        problem,
        fallbacks,
        ..
    }) = store.read_verified(&v2.sha256)
    else {
        panic!("a changed byte must be an integrity failure");
    };
    assert_eq!(modules, ["lights/acp@2.0.0"]);
    assert!(matches!(*problem, IntegrityProblem::HashMismatch { .. }));
    // The previous version is damaged too: no good version is left, the plugin denies.
    assert_eq!(fallbacks[0].now_active, None);
    assert_eq!(active(&store), None);
    assert!(store
        .list(None)
        .unwrap()
        .iter()
        .all(|r| r.state == ModuleState::FailedIntegrity));
    assert!(matches!(
        store.read_verified(&v2.sha256),
        Err(StoreError::Failed { .. })
    ));
}

#[test]
fn mark_failed_takes_a_module_out_of_service() {
    let dir = tempfile::tempdir().unwrap();
    let chain = Chain::new();
    let store = open(dir.path(), &chain);
    store
        .put(&upload(
            &chain.signed("lights", "acp", "1.0.0", b"v1"),
            true,
        ))
        .unwrap();
    let v2 = store
        .put(&upload(
            &chain.signed("lights", "acp", "2.0.0", b"v2"),
            true,
        ))
        .unwrap()
        .record;
    let fallbacks = store
        .mark_failed(&v2.sha256, "compiled artifact hash mismatch")
        .unwrap();
    assert_eq!(fallbacks[0].now_active, Some(v("1.0.0")));
    let failed = &store.list(None).unwrap()[1];
    assert_eq!(
        failed.state_reason.as_deref(),
        Some("compiled artifact hash mismatch")
    );
}

#[test]
fn removing_a_root_from_the_anchors_revokes_its_modules() {
    let dir = tempfile::tempdir().unwrap();
    let chain = Chain::new();
    let store = open(dir.path(), &chain);
    store
        .put(&upload(
            &chain.signed("lights", "acp", "1.0.0", b"v1"),
            true,
        ))
        .unwrap();
    store.set_trust_anchors(TrustAnchors::new());
    let report = store.integrity_check_all().unwrap();
    let problem = report.entries[0].problem.as_ref().unwrap();
    assert!(matches!(
        problem,
        IntegrityProblem::Chain(VerifyError::UntrustedRoot { .. })
    ));
    assert_eq!(active(&store), None);
}

#[test]
fn one_component_serves_several_applications() {
    let dir = tempfile::tempdir().unwrap();
    let chain = Chain::new();
    let store = open(dir.path(), &chain);
    let lights = chain.signed("lights", "acp", "1.0.0", b"shared");
    let doors = chain.signed("doors", "acp", "1.0.0", b"shared");
    store.put(&upload(&lights, true)).unwrap();
    store
        .put(&Upload {
            expected_app: Some("doors"),
            ..upload(&doors, true)
        })
        .unwrap();
    assert_eq!(
        std::fs::read_dir(dir.path().join("modules"))
            .unwrap()
            .count(),
        1
    );
    assert_eq!(store.active_modules().unwrap().len(), 2);
    store.remove("doors", "acp", &v("1.0.0"), true).unwrap();
    assert_eq!(
        std::fs::read_dir(dir.path().join("modules"))
            .unwrap()
            .count(),
        1,
        "still used by lights"
    );
    assert_eq!(store.active_modules().unwrap().len(), 1);
}

#[test]
fn one_process_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let chain = Chain::new();
    let _store = open(dir.path(), &chain);
    let second = EmbeddedStore::open(dir.path(), StoreConfig::new(chain.anchors.clone()));
    assert!(matches!(second, Err(StoreError::Locked { .. })));
}
