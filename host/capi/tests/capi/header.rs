//! The checked-in header is what cbindgen generates from the source, so C programs never
//! compile against a stale declaration.
//!
//! cbindgen is run as a program (pinned, installed by `.ci/run`) rather than linked as a
//! library: as a dev-dependency its dependencies' features would unify with the runtime's
//! and rebuild wasmtime a second way for every test build.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `PALISADE_CBINDGEN`, else `cbindgen` on the PATH.
fn cbindgen() -> Option<PathBuf> {
    let program = std::env::var_os("PALISADE_CBINDGEN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("cbindgen"));
    Command::new(&program)
        .arg("--version")
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|_| program)
}

#[test]
fn checked_in_header_matches_cbindgen() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let Some(cbindgen) = cbindgen() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "cbindgen is not installed and CI is set (.ci/run installs it; \
             `cargo install cbindgen --version 0.29.4 --locked`)"
        );
        eprintln!(
            "SKIPPED: cbindgen is not installed (cargo install cbindgen --version 0.29.4 --locked), \
             the header was not compared"
        );
        return;
    };
    let generated = Path::new(env!("CARGO_TARGET_TMPDIR")).join("palisade.h");
    let run = Command::new(&cbindgen)
        .current_dir(crate_dir)
        .args(["--config", "cbindgen.toml", "--output"])
        .arg(&generated)
        .arg("src/lib.rs")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "cbindgen failed:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let generated = std::fs::read_to_string(&generated).unwrap();
    let checked_in =
        std::fs::read_to_string(crate_dir.join("include/palisade.h")).unwrap_or_default();
    assert!(
        checked_in == generated,
        "host/capi/include/palisade.h differs from what cbindgen generates from src/lib.rs; \
         refresh it with\n    (cd host/capi && {} --config cbindgen.toml --output include/palisade.h src/lib.rs)\n\
         and commit it",
        cbindgen.display()
    );
}
