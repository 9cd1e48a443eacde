//! The C example (examples/c/main.c) compiled by the system C compiler against the checked-in
//! header and the built cdylib, run, and its output checked; then run again under valgrind
//! (leaks and invalid accesses fail it) when valgrind is installed.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The folder holding `libpalisade_capi.so`: cargo builds the library (all its crate types)
/// before the integration tests, into `deps/` beside this test binary and its parent.
fn library_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    for dir in [deps, deps.parent().unwrap()] {
        if dir.join(library_file()).exists() {
            return dir.to_path_buf();
        }
    }
    panic!(
        "{} not found beside {} (build it with `cargo build -p palisade-capi`)",
        library_file(),
        deps.display()
    );
}

fn library_file() -> &'static str {
    if cfg!(target_os = "macos") {
        "libpalisade_capi.dylib"
    } else {
        "libpalisade_capi.so"
    }
}

/// Compiled once per test binary run, by whichever test gets here first.
fn compile_example() -> PathBuf {
    static COMPILED: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    COMPILED.get_or_init(compile).clone()
}

fn compile() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let library = library_dir();
    let output = Path::new(env!("CARGO_TARGET_TMPDIR")).join("embed_c");
    let compiled = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", "-g"])
        .arg(root.join("examples/c/main.c"))
        .arg("-I")
        .arg(root.join("host/capi/include"))
        .arg("-L")
        .arg(&library)
        .arg("-lpalisade_capi")
        .arg(format!("-Wl,-rpath,{}", library.display()))
        .arg("-o")
        .arg(&output)
        .output()
        .expect("the system C compiler `cc` cannot be run");
    assert!(
        compiled.status.success(),
        "cc failed:\n{}",
        String::from_utf8_lossy(&compiled.stderr)
    );
    output
}

/// Checks the example's three lines; with an audit log, returns the record ids it printed.
fn check_output(stdout: &str, audited: bool) -> Vec<String> {
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0]
            .starts_with("install again: status 7 - application \"lights\" is installed already"),
        "{stdout}"
    );
    assert!(lines[1].starts_with("retrieve: permit - "), "{stdout}");
    assert!(lines[2].starts_with("delete: deny - "), "{stdout}");
    let mut ids = Vec::new();
    for line in &lines[1..] {
        let rest = match line.split_once("[decided by acp]") {
            Some((_, rest)) => rest,
            None => panic!("{stdout}"),
        };
        if audited {
            let id = rest
                .strip_prefix(" [record ")
                .and_then(|id| id.strip_suffix(']'))
                .unwrap_or_else(|| panic!("no record id: {stdout}"));
            ids.push(id.to_string());
        } else {
            assert_eq!(rest, "", "{stdout}");
        }
    }
    ids
}

/// The example with an audit log: each decision it printed is in the log under the id it
/// printed, and `palisade audit verify` accepts the log.
#[test]
fn c_example_records_its_decisions_in_a_log_that_verifies() {
    let example = compile_example();
    let dir = crate::support::scratch("c-example-audit");
    let (log, keys) = (dir.join("audit"), dir.join("keys"));
    let run = Command::new(&example)
        .arg(&log)
        .arg(&keys)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "the C example failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let ids = check_output(&stdout, true);
    let entries = crate::support::decision_entries(&log);
    let recorded: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["decision_id"].as_str().unwrap(),
                e["effect"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        recorded,
        [(ids[0].as_str(), "permit"), (ids[1].as_str(), "deny")],
        "{stdout}"
    );
    if let Some(bin) = crate::support::palisade_bin() {
        let (ok, report) = crate::support::verify(&bin, &log);
        assert!(ok, "the C example's log verifies: {report}");
    }
}

#[test]
fn c_example_builds_runs_and_decides() {
    let example = compile_example();
    let run = Command::new(&example).output().unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    println!("{stdout}");
    assert!(
        run.status.success(),
        "the C example failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    check_output(&stdout, false);

    let valgrind_found = Command::new("valgrind").arg("--version").output().is_ok();
    if !valgrind_found {
        assert!(
            std::env::var_os("CI").is_none(),
            "valgrind is not installed and CI is set: install it (apt-get install valgrind)"
        );
        eprintln!("SKIPPED: valgrind is not installed, the C example ran without it");
        return;
    }
    let checked = Command::new("valgrind")
        .args([
            "--error-exitcode=1",
            "--leak-check=full",
            // Only what the program leaks: the runtime's process-wide caches (the handle
            // table, the engine's lazily built statics) are reachable until exit by design.
            "--show-leak-kinds=definite,indirect",
            "--errors-for-leak-kinds=definite,indirect",
            "-q",
        ])
        .arg(&example)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&checked.stdout);
    assert!(
        checked.status.success(),
        "valgrind found errors in the C example:\n{stdout}\n{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    check_output(&stdout, false);
}
