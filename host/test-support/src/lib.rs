//! Helpers shared by the integration tests of palisade-core (`tests/core`) and of the
//! `palisade` package (`tests/e2e`): real plugins built from `plugins/`, a real engine, and
//! requests with a fixed time. A crate of its own because two test binaries use it
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
