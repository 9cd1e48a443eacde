//! Crash safety: a crash at any point of an upload, activation or removal leaves a store that
//! opens consistent — at most one active version per plugin, every row's bytes complete and
//! verified, no temporary or orphan file served or kept.

use std::collections::HashMap;
use std::path::Path;

use super::store_tests::{active, damage, open, upload, v};
use super::Chain;
use crate::store::CrashPoint;
use crate::{ModuleState, ModuleStore, StoreError};

/// Checks every invariant of a freshly opened store.
fn assert_consistent(dir: &Path, chain: &Chain) -> crate::EmbeddedStore {
    let store = open(dir, chain);
    let rows = store.list(None).unwrap();
    let mut actives: HashMap<(String, String), usize> = HashMap::new();
    for row in &rows {
        if row.state == ModuleState::Active {
            *actives
                .entry((row.app.clone(), row.name.clone()))
                .or_default() += 1;
        }
        if row.state != ModuleState::FailedIntegrity {
            let bytes = store
                .read_verified(&row.sha256)
                .expect("every usable row has complete bytes");
            assert_eq!(bytes.len() as u64, row.size);
        }
    }
    assert!(
        actives.values().all(|&n| n == 1),
        "at most one active version per plugin"
    );
    let report = store.integrity_check_all().unwrap();
    assert_eq!(report.failures().count(), 0);
    let referenced: Vec<String> = rows.iter().map(|r| format!("{}.wasm", r.sha256)).collect();
    for entry in std::fs::read_dir(dir.join("modules")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(referenced.contains(&name), "stray file {name} after open");
    }
    store
}

#[test]
fn a_crash_at_any_point_of_an_upload_leaves_old_or_new() {
    let chain = Chain::new();
    let v2 = chain.signed("lights", "acp", "2.0.0", b"v2");
    for point in [
        CrashPoint::TempWritten,
        CrashPoint::FileInPlace,
        CrashPoint::RowCommitted,
    ] {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(dir.path(), &chain);
            store
                .put(&upload(
                    &chain.signed("lights", "acp", "1.0.0", b"v1"),
                    true,
                ))
                .unwrap();
            store.crash_at(Some(point));
            let crashed = store.put(&upload(&v2, true));
            assert!(matches!(crashed, Err(StoreError::SimulatedCrash(p)) if p == point));
        }
        let store = assert_consistent(dir.path(), &chain);
        let expected = if point == CrashPoint::RowCommitted {
            "2.0.0"
        } else {
            "1.0.0"
        };
        assert_eq!(
            active(&store).as_deref(),
            Some(expected),
            "crash at {point:?}"
        );
        if point == CrashPoint::TempWritten {
            assert_eq!(store.open_report().removed_temp_files, 1);
        }
        if point == CrashPoint::FileInPlace {
            assert_eq!(store.open_report().removed_orphans, 1);
        }
        // The interrupted upload can simply be retried.
        store.put(&upload(&v2, true)).unwrap();
        assert_eq!(active(&store).as_deref(), Some("2.0.0"));
    }
}

#[test]
fn a_crash_during_removal_leaves_no_orphan() {
    let chain = Chain::new();
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), &chain);
        store
            .put(&upload(
                &chain.signed("lights", "acp", "1.0.0", b"v1"),
                true,
            ))
            .unwrap();
        store
            .put(&upload(
                &chain.signed("lights", "acp", "2.0.0", b"v2"),
                false,
            ))
            .unwrap();
        store.crash_at(Some(CrashPoint::RowDeleted));
        let crashed = store.remove("lights", "acp", &v("2.0.0"), false);
        assert!(matches!(crashed, Err(StoreError::SimulatedCrash(_))));
    }
    let store = assert_consistent(dir.path(), &chain);
    assert_eq!(store.open_report().removed_orphans, 1);
    assert_eq!(store.list(None).unwrap().len(), 1);
}

#[test]
fn leftovers_and_damaged_files_found_at_open() {
    let chain = Chain::new();
    let dir = tempfile::tempdir().unwrap();
    let v2_sha;
    {
        let store = open(dir.path(), &chain);
        store
            .put(&upload(
                &chain.signed("lights", "acp", "1.0.0", b"v1"),
                true,
            ))
            .unwrap();
        v2_sha = store
            .put(&upload(
                &chain.signed("lights", "acp", "2.0.0", b"v2"),
                true,
            ))
            .unwrap()
            .record
            .sha256;
    }
    let modules = dir.path().join("modules");
    // A half-written temporary file, a partial file nobody refers to, and a file we do not own.
    std::fs::write(modules.join(".tmp-deadbeef"), b"\0asm\x0d").unwrap();
    std::fs::write(modules.join(format!("{}.wasm", "ab".repeat(32))), b"\0asm").unwrap();
    std::fs::write(modules.join("README"), b"not ours").unwrap();
    // The active version's file cut short (a disk that lost the end of a file).
    let path = modules.join(format!("{v2_sha}.wasm"));
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();

    let store = open(dir.path(), &chain);
    assert_eq!(store.open_report().removed_temp_files, 1);
    assert_eq!(store.open_report().removed_orphans, 1);
    assert!(
        modules.join("README").exists(),
        "files that are not the registry's are left alone"
    );
    // The boot check finds the cut file, takes it out of service and falls back.
    let report = store.integrity_check_all().unwrap();
    assert_eq!(report.failures().count(), 1);
    assert_eq!(report.fallbacks[0].now_active, Some(v("1.0.0")));
    std::fs::remove_file(modules.join("README")).unwrap();
    drop(store);
    let store = open(dir.path(), &chain);
    assert_eq!(active(&store).as_deref(), Some("1.0.0"));
}

#[test]
fn reopening_after_every_step_of_a_sequence() {
    let chain = Chain::new();
    let dir = tempfile::tempdir().unwrap();
    let signed: Vec<Vec<u8>> = ["1.0.0", "1.1.0", "2.0.0"]
        .iter()
        .map(|ver| chain.signed("lights", "acp", ver, ver.as_bytes()))
        .collect();
    type Step<'a> = Box<dyn Fn(&crate::EmbeddedStore) + 'a>;
    let steps: Vec<(Step, Option<&str>)> = vec![
        (
            Box::new(|s| {
                s.put(&upload(&signed[0], false)).unwrap();
            }),
            None,
        ),
        (
            Box::new(|s| {
                s.activate("lights", "acp", &v("1.0.0"), false).unwrap();
            }),
            Some("1.0.0"),
        ),
        (
            Box::new(|s| {
                s.put(&upload(&signed[1], true)).unwrap();
            }),
            Some("1.1.0"),
        ),
        (
            Box::new(|s| {
                s.put(&upload(&signed[2], false)).unwrap();
            }),
            Some("1.1.0"),
        ),
        (
            Box::new(|s| {
                s.activate("lights", "acp", &v("2.0.0"), false).unwrap();
            }),
            Some("2.0.0"),
        ),
        (
            Box::new(|s| {
                s.rollback("lights", "acp").unwrap();
            }),
            Some("1.1.0"),
        ),
        (
            Box::new(|s| {
                s.activate("lights", "acp", &v("2.0.0"), false).unwrap();
            }),
            Some("2.0.0"),
        ),
        (
            Box::new(|s| {
                s.remove("lights", "acp", &v("1.0.0"), false).unwrap();
            }),
            Some("2.0.0"),
        ),
        (
            Box::new(|s| {
                s.remove("lights", "acp", &v("2.0.0"), true).unwrap();
            }),
            Some("1.1.0"),
        ),
    ];
    for (i, (step, expected)) in steps.iter().enumerate() {
        {
            let store = open(dir.path(), &chain);
            step(&store);
        }
        let store = assert_consistent(dir.path(), &chain);
        assert_eq!(active(&store).as_deref(), *expected, "after step {i}");
    }
    let store = open(dir.path(), &chain);
    damage(dir.path(), &store.active_modules().unwrap()[0].sha256);
    drop(store);
    let store = open(dir.path(), &chain);
    let report = store.integrity_check_all().unwrap();
    assert_eq!(
        report.fallbacks[0].now_active, None,
        "1.0.0 was removed: nothing good is left"
    );
}

#[test]
fn the_schema_itself_refuses_two_active_versions() {
    let chain = Chain::new();
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), &chain);
        store
            .put(&upload(
                &chain.signed("lights", "acp", "1.0.0", b"v1"),
                true,
            ))
            .unwrap();
        store
            .put(&upload(
                &chain.signed("lights", "acp", "2.0.0", b"v2"),
                false,
            ))
            .unwrap();
    }
    let conn = rusqlite::Connection::open(dir.path().join("registry.sqlite3")).unwrap();
    let second = conn.execute(
        "UPDATE modules SET state = 'active' WHERE version = '2.0.0'",
        [],
    );
    assert!(
        second.is_err(),
        "the partial unique index refuses a second active version"
    );
    // An uncommitted transaction (a crash mid-change) leaves nothing behind.
    conn.execute_batch("BEGIN; UPDATE modules SET state = 'retired' WHERE version = '1.0.0';")
        .unwrap();
    drop(conn);
    let store = assert_consistent(dir.path(), &chain);
    assert_eq!(active(&store).as_deref(), Some("1.0.0"));
}
