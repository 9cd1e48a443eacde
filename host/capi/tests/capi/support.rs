//! Calls into the C API as C makes them, shared by the test modules.

use std::ffi::{c_char, CStr, CString};
use std::ptr::{null, null_mut};

use palisade_capi::*;

pub const SPEC: &str = "name = \"lights\"\n[[plugin]]\nplugin = \"acp\"\n[plugin.config]\npolicies = [{ id = \"p\", pv = { acr = [{ acor = [\"CAE1\"], acop = 2 }] } }]\n";

pub fn c(text: &str) -> CString {
    CString::new(text).unwrap()
}

/// Takes the message out of `error`, freeing it.
pub fn message(error: *mut c_char) -> String {
    assert!(!error.is_null(), "a failure came without a message");
    let text = unsafe { CStr::from_ptr(error) }
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(unsafe { palisade_string_free(error) }, PalisadeStatus::Ok);
    text
}

pub fn new_runtime() -> *mut PalisadeRuntime {
    let mut runtime = null_mut();
    let mut error = null_mut();
    let status = unsafe { palisade_runtime_new(null(), 0, &mut runtime, &mut error) };
    assert_eq!(status, PalisadeStatus::Ok);
    assert!(error.is_null());
    runtime
}

pub fn install(runtime: *mut PalisadeRuntime, spec: &str, format: u32) -> (PalisadeStatus, String) {
    let mut error = null_mut();
    let status = unsafe { palisade_runtime_install(runtime, c(spec).as_ptr(), format, &mut error) };
    let text = if error.is_null() {
        String::new()
    } else {
        message(error)
    };
    (status, text)
}

pub fn decide(
    runtime: *mut PalisadeRuntime,
    request: &str,
) -> Result<*mut PalisadeDecision, (PalisadeStatus, String)> {
    let mut decision = null_mut();
    let mut error = null_mut();
    let status =
        unsafe { palisade_runtime_decide(runtime, c(request).as_ptr(), &mut decision, &mut error) };
    if status == PalisadeStatus::Ok {
        assert!(error.is_null());
        Ok(decision)
    } else {
        assert!(decision.is_null(), "out-pointer written on failure");
        Err((status, message(error)))
    }
}

pub fn read(
    decision: *mut PalisadeDecision,
    accessor: unsafe extern "C" fn(*const PalisadeDecision, *mut *const c_char) -> PalisadeStatus,
) -> Option<String> {
    let mut out = null();
    assert_eq!(unsafe { accessor(decision, &mut out) }, PalisadeStatus::Ok);
    (!out.is_null()).then(|| unsafe { CStr::from_ptr(out) }.to_str().unwrap().to_string())
}

/// The `palisade` binary for `palisade audit verify`: `PALISADE_BIN`, else the one cargo
/// builds beside the tests (`target/debug/palisade`, built by a workspace `cargo test` or
/// `cargo build --bin palisade`). `None` (with a note) when it is not built and CI is not
/// set; a failure under CI.
pub fn palisade_bin() -> Option<std::path::PathBuf> {
    if let Some(bin) = std::env::var_os("PALISADE_BIN") {
        return Some(bin.into());
    }
    let exe = std::env::current_exe().unwrap();
    let built = exe.parent().unwrap().parent().unwrap().join("palisade");
    if built.exists() {
        return Some(built);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{} is not built and CI is set: build it with `cargo build --bin palisade`",
        built.display()
    );
    eprintln!(
        "SKIPPED: {} is not built (cargo build --bin palisade), the log was not verified by it",
        built.display()
    );
    None
}

/// Runs `palisade audit verify` on the log in `dir` with its `gateway.pub`: whether it
/// accepted the log, and what it said.
pub fn verify(bin: &std::path::Path, dir: &std::path::Path) -> (bool, String) {
    palisade_test_support::audit_verify(bin, dir, &dir.join("gateway.pub"), &[])
}

/// The payloads of the `decision` entries of the active log file in `dir`.
pub fn decision_entries(dir: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("audit.log"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|entry| entry["kind"] == "decision")
        .map(|entry| entry["payload"].clone())
        .collect()
}

/// A fresh, empty folder for one test under cargo's scratch folder for tests.
pub fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("capi")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
