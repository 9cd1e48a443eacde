//! The runtime as the bindings hold it: one [`EmbeddedRuntime`] per handle of the C API and
//! per `palisade.Runtime` of the Python package, so both apply the same rules to engine
//! settings, specs, installs and requests.

use std::path::Path;
use std::sync::Mutex;

use palisade_core::{
    AccessRequest, Decision, Engine, EngineConfig, InstallError, OnAuditFailure, PluginKind,
    Runtime,
};

use crate::audit_log::{AuditLogError, AuditLogSink};

use palisade_core::{read_spec_file, Spec, SpecError, SpecFormat, MAX_SPEC_BYTES};

/// Largest request document accepted: the gateway's default body limit for `/v1/decide`
/// (`[limits] max_body_bytes`). Every field plugins see is inside it, so none can be larger.
pub const MAX_REQUEST_BYTES: usize = 64 << 10;

/// Why a binding call failed. Each message names the problem in a sentence.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmbedError {
    /// The engine settings document cannot be used.
    #[error("engine settings: {0}")]
    Settings(String),
    /// The engine or runtime could not be created.
    #[error("cannot create the engine")]
    Engine(#[source] palisade_core::EngineError),
    /// The spec cannot be read or describes an application that cannot work.
    #[error(transparent)]
    Spec(Box<SpecError>),
    /// The spec's application name is not allowed.
    #[error("name")]
    Name(#[source] Box<InstallError>),
    /// An application of that name is installed already.
    #[error("application {0:?} is installed already: remove it first")]
    AlreadyInstalled(String),
    /// The application has no authorizer, so every request would be denied.
    #[error("application {0:?} has no authorizer (only authenticators or filters), so every request would be denied: add one, e.g. plugin = \"acp\"")]
    NoAuthorizer(String),
    /// A plugin could not be compiled or loaded (e.g. it refused its configuration).
    #[error(transparent)]
    Install(Box<InstallError>),
    /// No application of that name is installed.
    #[error("no application {0:?} is installed")]
    NotInstalled(String),
    /// The request document is longer than [`MAX_REQUEST_BYTES`].
    #[error("request is {0} bytes, more than the {MAX_REQUEST_BYTES} accepted")]
    RequestTooLarge(usize),
    /// The request document is not JSON in the request shape.
    #[error("request")]
    RequestJson(#[source] serde_json::Error),
    /// The request is JSON in the request shape but cannot be decided.
    #[error("request: {0}")]
    Request(&'static str),
    /// The audit log cannot be opened.
    #[error(transparent)]
    AuditLog(Box<AuditLogError>),
    /// The runtime records its decisions already: a sink is never replaced.
    #[error(transparent)]
    AuditInstalled(palisade_core::AuditSinkInstalled),
}

impl From<SpecError> for EmbedError {
    fn from(error: SpecError) -> EmbedError {
        EmbedError::Spec(Box::new(error))
    }
}

/// The engine configuration from the gateway's `[engine]` table, as a TOML or JSON
/// document (`max_memory_bytes = 134217728`), checked as the gateway checks it.
pub fn engine_config(settings: &str, format: SpecFormat) -> Result<EngineConfig, EmbedError> {
    if settings.len() > MAX_SPEC_BYTES {
        return Err(EmbedError::Settings(format!(
            "the document is more than {MAX_SPEC_BYTES} bytes"
        )));
    }
    let parsed: Result<palisade_core::EngineSettings, String> = match format {
        SpecFormat::Toml => toml::from_str(settings).map_err(|e| e.message().trim().to_string()),
        SpecFormat::Json => serde_json::from_str(settings).map_err(|e| e.to_string()),
    };
    let settings = parsed.map_err(EmbedError::Settings)?;
    if let Some(problem) = settings.problem() {
        return Err(EmbedError::Settings(problem));
    }
    let mut config = EngineConfig::default();
    settings.apply(&mut config);
    Ok(config)
}

/// A runtime with the install rules of the bindings: installs refuse a name already in use
/// (instead of replacing it) and an application without an authorizer, as the gateway's
/// configuration does. `Sync`: decide from any number of threads.
pub struct EmbeddedRuntime {
    runtime: Runtime,
    /// Serialises installs and removals, so "already installed" is checked and acted on in
    /// one step. Decisions never take it.
    changes: Mutex<()>,
}

impl EmbeddedRuntime {
    /// A runtime with no applications on an engine built from `config`.
    pub fn new(config: EngineConfig) -> Result<EmbeddedRuntime, EmbedError> {
        let engine = Engine::new(config).map_err(EmbedError::Engine)?;
        let runtime = Runtime::new(engine).map_err(EmbedError::Engine)?;
        Ok(EmbeddedRuntime {
            runtime,
            changes: Mutex::new(()),
        })
    }

    /// The runtime inside, for what the bindings do not wrap.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Installs the application of a spec document; relative paths in it are resolved
    /// against `base_dir`. On error nothing changes.
    pub fn install(
        &self,
        text: &str,
        format: SpecFormat,
        base_dir: &Path,
    ) -> Result<String, EmbedError> {
        let spec = Spec::parse(text, format, base_dir)?;
        self.install_spec(spec)
    }

    /// Installs the application of a spec file: JSON when its name ends in `.json`, TOML
    /// otherwise; relative paths in it are resolved against its folder.
    pub fn install_file(&self, path: &Path) -> Result<String, EmbedError> {
        let format = match path.extension() {
            Some(extension) if extension == "json" => SpecFormat::Json,
            _ => SpecFormat::Toml,
        };
        let text = read_spec_file(path)?;
        let base_dir = path.parent().unwrap_or(Path::new("."));
        self.install(&text, format, base_dir)
    }

    /// Installs a parsed spec; returns the application's name.
    pub fn install_spec(&self, spec: Spec) -> Result<String, EmbedError> {
        let _change = self
            .changes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let name = spec.name().to_string();
        if self.runtime.app(&name).is_some() {
            return Err(EmbedError::AlreadyInstalled(name));
        }
        let ceiling = self.runtime.engine().config().max_memory_bytes;
        let app = spec.into_app_spec(ceiling, &palisade_artifacts::reference)?;
        self.runtime.install(app).map_err(|error| match error {
            InstallError::BadName(_) => EmbedError::Name(Box::new(error)),
            other => EmbedError::Install(Box::new(other)),
        })?;
        // Known only once the components are loaded. Until the removal below, the app denies
        // every request (it has no authorizer), so the moment in between fails closed.
        let has_authorizer = self.runtime.app(&name).is_some_and(|app| {
            app.status()
                .plugins
                .iter()
                .any(|plugin| plugin.label.kind == PluginKind::Authorizer)
        });
        if !has_authorizer {
            self.runtime.remove(&name);
            return Err(EmbedError::NoAuthorizer(name));
        }
        Ok(name)
    }

    /// Removes an installed application; its requests are denied as unknown from then on.
    pub fn remove(&self, app: &str) -> Result<(), EmbedError> {
        let _change = self
            .changes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if self.runtime.remove(app) {
            Ok(())
        } else {
            Err(EmbedError::NotInstalled(app.to_string()))
        }
    }

    /// Names of the installed applications, sorted.
    pub fn apps(&self) -> Vec<String> {
        self.runtime.app_names()
    }

    /// Records every decision of this runtime in the signed audit log in `log_dir` before it
    /// is returned (SER-016; [`AuditLogSink::open`] says how the log and its key in
    /// `keystore_dir` are opened). A decision the log cannot take comes back as a deny naming
    /// why, unless `on_failure` is [`OnAuditFailure::AnswerUnrecorded`]. Once set, for the
    /// runtime's life: a second call is refused.
    pub fn set_audit_log(
        &self,
        log_dir: &Path,
        keystore_dir: &Path,
        on_failure: OnAuditFailure,
    ) -> Result<(), EmbedError> {
        let _change = self
            .changes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Checked first, so a refused second call never opens (and locks) a log.
        if self.runtime.has_audit_sink() {
            return Err(EmbedError::AuditInstalled(
                palisade_core::AuditSinkInstalled::default(),
            ));
        }
        let sink = AuditLogSink::open(log_dir, keystore_dir)
            .map_err(|error| EmbedError::AuditLog(Box::new(error)))?;
        self.runtime
            .set_audit_sink(std::sync::Arc::new(sink), on_failure)
            .map_err(EmbedError::AuditInstalled)
    }

    /// Decides on a request in the JSON shape of `/v1/decide` with `app` required. An
    /// application that is not installed is decided (denied), not an error.
    pub fn decide_json(&self, request: &str) -> Result<Decision, EmbedError> {
        Ok(self.runtime.is_authorized(&parse_request(request)?))
    }
}

/// The request shape shared with `/v1/decide` and case files ([`AccessRequest`]'s serde).
pub fn parse_request(text: &str) -> Result<AccessRequest, EmbedError> {
    if text.len() > MAX_REQUEST_BYTES {
        return Err(EmbedError::RequestTooLarge(text.len()));
    }
    // serde would also read a struct from a JSON array of its fields in order: only the
    // object form is the request shape.
    if !text.trim_start().starts_with('{') {
        return Err(EmbedError::Request("expected a JSON object"));
    }
    let request: AccessRequest = serde_json::from_str(text).map_err(EmbedError::RequestJson)?;
    if request.originator.is_empty() {
        return Err(EmbedError::Request("originator is empty"));
    }
    Ok(request)
}
