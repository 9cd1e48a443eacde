//! # Palisade core
//!
//! A security runtime for M2M/IoT gateways. Each application's authentication and
//! authorization decisions are made by sandboxed WebAssembly plugins (the WIT contract in
//! `plugins/sdk/wit/palisade.wit`), one segregated security environment per application (SER-024), while
//! native code keeps what must not be left to plugins: keys, group authentication, module
//! signatures, audit and denial-of-service protection.
//!
//! The one entry point is [`Runtime::is_authorized`]:
//!
//! ```no_run
//! use palisade_core::{AccessRequest, AppSpec, Engine, EngineConfig, Operation, PluginSetup, Runtime};
//!
//! let runtime = Runtime::new(Engine::new(EngineConfig::default())?)?;
//! let policy = r#"{"policies":[{"id":"p","pv":{"acr":[{"acor":["all"],"acop":2}]}}]}"#;
//! runtime.install(AppSpec::new("lights").plugin(
//!     PluginSetup::new("acp", policy),
//!     palisade_artifacts::ACP,
//! ))?;
//! let decision = runtime.is_authorized(&AccessRequest::new(
//!     "lights", "CAE1", Operation::Retrieve, "/cse-in/lights/switch1",
//! ));
//! println!("{:?}: {}", decision.effect, decision.reason);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Parts, one module each: [`engine`] (the process-wide wasmtime engine and artifact cache),
//! [`sandbox`] (one per application: stores, limits, capabilities, failures, quarantine),
//! and [`pipeline`] (resolve → authenticate → authorize → filter, monitor mode).

pub mod engine;
pub mod pipeline;
pub mod request;
pub mod sandbox;

pub use engine::{Engine, EngineConfig, EngineError};
pub use pipeline::{AppSpec, Decision, Effect, FilteredResponse, InstallError, Mode, Runtime};
pub use request::{AccessRequest, Credential, Location, Operation, ResponseBody};
pub use sandbox::{
    Capabilities, Capability, Failure, Isolation, PluginKind, PluginSetup, SandboxLimits,
    StaticKeys,
};
