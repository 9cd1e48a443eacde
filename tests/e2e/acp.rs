//! The table-driven plugin tests: every case file under examples/ run through the real
//! `palisade test` binary against the real plugins. The acp tables cover every element of
//! the oneM2M accessControlPolicy (acor, acop, acco/actw/acip/aclr, acaf, acod,
//! permit-overrides) and its edge cases; token-auth and geo-privacy have their own tables.

use std::path::{Path, PathBuf};
use std::process::Command;

fn case_files(plugin: &str) -> Vec<PathBuf> {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(plugin);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
        .unwrap_or_else(|error| panic!("{}: {error}", folder.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no case files in {}", folder.display());
    files
}

/// Runs `palisade test --json` and returns (passed, failed), printing failures.
fn run_cases(plugin: &str) -> (u64, u64) {
    run_cases_with(plugin, &[])
}

fn run_cases_with(plugin: &str, extra: &[&str]) -> (u64, u64) {
    let output = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .arg("test")
        .arg("--json")
        .args(extra)
        .args(case_files(plugin))
        .output()
        .expect("running palisade test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|error| {
        panic!(
            "palisade test printed no JSON ({error}): {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    for file in report["files"].as_array().unwrap() {
        for case in file["cases"].as_array().unwrap() {
            if case["passed"] != true {
                eprintln!(
                    "FAIL {} / {}: {}",
                    file["file"], case["name"], case["problems"]
                );
            }
        }
    }
    let passed = report["passed"].as_u64().unwrap();
    let failed = report["failed"].as_u64().unwrap();
    assert_eq!(
        output.status.success(),
        failed == 0,
        "exit status must follow the failures"
    );
    (passed, failed)
}

#[test]
fn acp_case_tables_pass() {
    let (passed, failed) = run_cases("acp");
    assert_eq!(failed, 0);
    assert!(passed >= 80, "the acp tables shrank to {passed} cases");
}

#[test]
fn token_auth_case_tables_pass() {
    let (passed, failed) = run_cases("token-auth");
    assert_eq!(failed, 0);
    assert!(
        passed >= 25,
        "the token-auth tables shrank to {passed} cases"
    );
}

#[test]
fn geo_privacy_case_tables_pass() {
    let (passed, failed) = run_cases("geo-privacy");
    assert_eq!(failed, 0);
    assert!(
        passed >= 25,
        "the geo-privacy tables shrank to {passed} cases"
    );
}

/// A fresh instance per request starts from the snapshot `prepare` left: every decision must
/// be the same as with a warm instance that parsed its configuration on first use.
#[test]
fn every_case_table_passes_with_fresh_pre_initialised_instances() {
    for (plugin, at_least) in [("acp", 80), ("token-auth", 25), ("geo-privacy", 25)] {
        // The time limit is not what this checks: a generous one keeps a loaded machine from
        // failing a case on the 50 ms default.
        let (passed, failed) = run_cases_with(
            plugin,
            &["--isolation", "fresh-per-request", "--deadline-ms", "10000"],
        );
        assert_eq!(failed, 0, "{plugin}");
        assert!(passed >= at_least, "{plugin}: {passed} cases");
    }
}
