//! Helpers shared by the integration tests of palisade-core (`tests/core`), of the
//! `palisade` package (`tests/e2e`) and of palisade-capi (`host/capi/tests/capi`): real
//! plugins built from `plugins/`, a real engine, requests with a fixed time, and the real
//! `palisade audit verify`. A crate of its own because several test binaries use it
//! (issue #14.5); never published.
#![deny(missing_docs)]

#[cfg(feature = "pg")]
pub mod pg;
pub mod pki;
pub mod registry;

use std::time::Duration;

use palisade_core::{
    AccessRequest, AppSpec, Engine, EngineConfig, Isolation, Operation, PluginSetup, Runtime,
    SandboxLimits,
};

/// Runs `<bin> audit verify --log <log> --key <key> [extra...]` (the real `palisade`
/// command an operator runs): whether it accepted the log, and what it printed (stdout,
/// then stderr).
pub fn audit_verify(
    bin: &std::path::Path,
    log: &std::path::Path,
    key: &std::path::Path,
    extra: &[&str],
) -> (bool, String) {
    let output = std::process::Command::new(bin)
        .args(["audit", "verify", "--log"])
        .arg(log)
        .arg("--key")
        .arg(key)
        .args(extra)
        .output()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", bin.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// 2026-11-28T10:15:00Z, a Saturday.
pub const TEST_TIME: u64 = 1_795_860_900;

/// A runtime on an engine with the default configuration.
pub fn runtime() -> Runtime {
    let engine = Engine::new(EngineConfig::default()).expect("engine");
    Runtime::new(engine).expect("runtime")
}

/// The hostile fixture (`plugins/hostile`), as built by palisade-artifacts.
pub fn hostile_bytes() -> Vec<u8> {
    std::fs::read(palisade_artifacts::HOSTILE_PATH)
        .expect("the hostile fixture is built by host/artifacts/build.rs")
}

/// Limits small enough that attacks end quickly.
pub fn tight_limits() -> SandboxLimits {
    SandboxLimits::default()
        .memory_bytes(16 << 20)
        .deadline(Duration::from_millis(50))
        .host_calls(1_000)
}

/// An application whose only authorizer is the hostile fixture running `attack`.
pub fn hostile_app(name: &str, config: serde_json::Value, isolation: Isolation) -> AppSpec {
    let mut spec = AppSpec::new(name).plugin(
        PluginSetup::new("hostile", config.to_string()),
        hostile_bytes(),
    );
    spec.isolation = isolation;
    spec.limits = tight_limits();
    spec
}

/// A request at [`TEST_TIME`].
pub fn request(app: &str, originator: &str, operation: Operation, target: &str) -> AccessRequest {
    let mut request = AccessRequest::new(app, originator, operation, target);
    request.request_time = Some(TEST_TIME);
    request
}
