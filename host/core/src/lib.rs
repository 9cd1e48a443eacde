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
//! The API is flat, as in wasmtime: everything public is re-exported here, and the modules
//! behind it (the engine and artifact cache; one sandbox per application with its stores,
//! limits, capabilities, failures and quarantine; the pipeline resolve → authenticate →
//! authorize → filter with monitor mode; the identity-privacy split) are private.

//!
//! Every decision can be put on record before it is returned (SER-016): install an
//! [`AuditSink`] with [`Runtime::set_audit_sink`] and each answer of
//! [`Runtime::is_authorized`] or [`Runtime::evaluate`] is first handed to it as a
//! [`DecisionRecord`]; a decision the sink cannot record comes back as a deny naming the
//! failure. `palisade-capi` provides a sink writing the signed, hash-chained audit log that
//! `palisade audit verify` checks.
//!
//! Embedders outside Rust (the C API `palisade-capi`, the Python package) install
//! applications from a [`Spec`]: one `[[app]]` table of the gateway configuration, runtime
//! keys only, in TOML or JSON, read by one parser so that a spec means the same in every
//! binding.

#![deny(missing_docs)]

mod audit;
mod engine;
mod pipeline;
mod privacy;
mod request;
mod sandbox;
mod spec;

pub use audit::{
    bound_field, AuditFailure, AuditSink, DecisionIds, DecisionRecord, ExtensionKey,
    ExtensionKeyError, OnAuditFailure, RecordExtension, FIELD_LIMIT, FIELD_LIMIT_ESCAPED,
};
pub use engine::{
    run_helper, set_default_helper, Allocation, BoxError, CacheError, CompileLimits,
    CompileSettings, CompiledComponent, Compiler, Engine, EngineConfig, EngineError,
    EngineSettings, HelperError, ModuleLimits, ModuleRefusal, HELPER_ARG, MAX_MEMORY_CEILING,
    MAX_POOL_INSTANCES, MIN_MEMORY_CEILING,
};
pub use pipeline::{
    valid_name, AppSpec, AppStatus, AuditSinkInstalled, Decision, Effect, FilteredResponse,
    Identity, InstallError, Mode, Outcome, PluginSource, PluginStatus, Runtime, SharedModules,
    Stage, StageReport, Timing, Timings,
};
pub use privacy::{
    rewrite_markers, Evaluated, PrivacySplit, PseudonymError, Pseudonyms, AUTHN_SUFFIX,
    ORIGINATOR_MARKER, UNAVAILABLE_PSEUDONYM,
};
pub use request::{now_unix, AccessRequest, Credential, Location, Operation, ResponseBody};
pub use sandbox::{
    plugin_output_dropped_bytes, AppEnvironment, AppKeys, AuthOutcome, Capabilities, Capability,
    Contract, ContractError, Failure, FilterOutcome, GroupDirectory, Isolation, KeyUseError,
    KindOfComponent, KvNamespace, LoadError, MembershipSource, Plugin, PluginHealth, PluginKind,
    PluginLabel, PluginSetup, PrepareError, QuarantineScope, Sandbox, SandboxLimits, SandboxTrap,
    SharedLinker, StaticKeys, Verdict,
};
/// The application spec the embedding bindings install from (see the [`Spec`] type).
pub use spec::{
    read_spec_file, AppDocument, PluginDocument, Spec, SpecError, SpecFormat,
    MAX_CONFIG_FILE_BYTES, MAX_MODULE_FILE_BYTES, MAX_SPEC_BYTES,
};
