//! Shared helpers for the end-to-end tests: real plugins built from `plugins/`, a real
//! engine, and requests with a fixed time.
#![allow(dead_code)]

use std::time::Duration;

use palisade_core::{
    AccessRequest, AppSpec, Engine, EngineConfig, Isolation, Operation, PluginSetup, Runtime,
    SandboxLimits,
};

/// 2026-11-28T10:15:00Z, a Saturday.
pub const TEST_TIME: u64 = 1_795_860_900;

pub fn runtime() -> Runtime {
    let engine = Engine::new(EngineConfig::default()).expect("engine");
    Runtime::new(engine).expect("runtime")
}

pub fn hostile_bytes() -> Vec<u8> {
    std::fs::read(palisade_artifacts::HOSTILE_PATH)
        .expect("the hostile fixture is built by host/build.rs")
}

/// Limits small enough that attacks end quickly.
pub fn tight_limits() -> SandboxLimits {
    SandboxLimits {
        memory_bytes: 16 << 20,
        deadline: Duration::from_millis(50),
        host_calls: 1_000,
        ..SandboxLimits::default()
    }
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

pub fn request(app: &str, originator: &str, operation: Operation, target: &str) -> AccessRequest {
    let mut request = AccessRequest::new(app, originator, operation, target);
    request.request_time = Some(TEST_TIME);
    request
}
