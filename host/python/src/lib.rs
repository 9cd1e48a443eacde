//! # palisade (Python)
//!
//! The Palisade runtime in a Python process, for gateways and CSEs written in Python:
//!
//! ```python
//! import palisade
//! runtime = palisade.Runtime()
//! runtime.install({"name": "lights", "plugin": [{"plugin": "acp", "config": {...}}]})
//! decision = runtime.decide({"app": "lights", "originator": "CAE1",
//!                            "operation": "retrieve", "target": "/cse-in/lights/lamp1"})
//! if decision.permitted: ...
//! ```
//!
//! Specs and requests are those of the C API (`palisade-capi`: one `[[app]]` table of the
//! gateway configuration; the `/v1/decide` request with `app`), read by the same code.
//! Errors are exceptions under `palisade.PalisadeError` whose message names the problem.
//! A `Runtime` may be used from many threads; decisions and installs release the GIL.
//! `Runtime.set_audit_log(log_dir, keystore_dir)` puts every decision in the signed audit
//! log before it is returned (SER-016).

use std::path::PathBuf;
use std::sync::Arc;

use palisade_capi::{EmbedError, EmbeddedRuntime};
use palisade_core::SpecFormat;
use palisade_core::{Decision, EngineConfig, OnAuditFailure};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

create_exception!(
    palisade,
    PalisadeError,
    PyException,
    "Base of every error the runtime raises."
);
create_exception!(
    palisade,
    SettingsError,
    PalisadeError,
    "The engine settings cannot be used."
);
create_exception!(
    palisade,
    SpecError,
    PalisadeError,
    "The spec cannot be parsed, names a file that cannot be read, or describes an application that cannot work."
);
create_exception!(
    palisade,
    AlreadyInstalledError,
    PalisadeError,
    "An application of that name is installed already (remove it first)."
);
create_exception!(
    palisade,
    InstallError,
    PalisadeError,
    "A plugin could not be compiled or loaded (e.g. it refused its configuration)."
);
create_exception!(
    palisade,
    NotInstalledError,
    PalisadeError,
    "No application of that name is installed."
);
create_exception!(
    palisade,
    RequestError,
    PalisadeError,
    "The request is not a valid request."
);
create_exception!(
    palisade,
    EngineError,
    PalisadeError,
    "The engine could not be created."
);
create_exception!(
    palisade,
    AuditLogError,
    PalisadeError,
    "The audit log cannot be opened, or the runtime has one already."
);

/// The exception an [`EmbedError`] is raised as.
fn raise(error: EmbedError) -> PyErr {
    let message = palisade_types::Chain(&error).to_string();
    match error {
        EmbedError::Settings(_) => SettingsError::new_err(message),
        EmbedError::Engine(_) => EngineError::new_err(message),
        EmbedError::Spec(_) | EmbedError::Name(_) | EmbedError::NoAuthorizer(_) => {
            SpecError::new_err(message)
        }
        EmbedError::AlreadyInstalled(_) => AlreadyInstalledError::new_err(message),
        EmbedError::Install(_) => InstallError::new_err(message),
        EmbedError::NotInstalled(_) => NotInstalledError::new_err(message),
        EmbedError::RequestTooLarge(_) | EmbedError::RequestJson(_) | EmbedError::Request(_) => {
            RequestError::new_err(message)
        }
        EmbedError::AuditLog(_) | EmbedError::AuditInstalled(_) => AuditLogError::new_err(message),
        _ => PalisadeError::new_err(message),
    }
}

/// A document given as a `str` (in `format`) or as a `dict` (made JSON with Python's `json`).
fn document(value: &Bound<'_, PyAny>, format: &str, what: &str) -> PyResult<(String, SpecFormat)> {
    if let Ok(text) = value.cast::<PyString>() {
        let format = match format {
            "toml" => SpecFormat::Toml,
            "json" => SpecFormat::Json,
            other => {
                return Err(PyTypeError::new_err(format!(
                    "format must be \"toml\" or \"json\", not {other:?}"
                )))
            }
        };
        return Ok((text.extract::<String>()?, format));
    }
    if value.cast::<PyDict>().is_ok() {
        let json = value.py().import("json")?.call_method1("dumps", (value,))?;
        return Ok((json.extract::<String>()?, SpecFormat::Json));
    }
    Err(PyTypeError::new_err(format!(
        "{what} must be a str or a dict, not {}",
        value.get_type().name()?
    )))
}

/// One engine and its applications.
///
/// `Runtime(settings=None, format="toml")`: `settings` is the gateway's `[engine]` table
/// (`{"max_memory_bytes": 134217728}` or `"max_memory_bytes = 134217728"`), or None for the
/// defaults.
#[pyclass(module = "palisade", frozen)]
struct Runtime {
    inner: Arc<EmbeddedRuntime>,
}

#[pymethods]
impl Runtime {
    #[new]
    #[pyo3(signature = (settings = None, format = "toml"))]
    fn new(settings: Option<&Bound<'_, PyAny>>, format: &str) -> PyResult<Runtime> {
        let config = match settings {
            None => EngineConfig::default(),
            Some(settings) => {
                let (text, format) = document(settings, format, "settings")?;
                palisade_capi::embedded::engine_config(&text, format).map_err(raise)?
            }
        };
        let inner = EmbeddedRuntime::new(config).map_err(raise)?;
        Ok(Runtime {
            inner: Arc::new(inner),
        })
    }

    /// Installs one application from a spec: a TOML string (or JSON with `format="json"`),
    /// or a dict. Relative paths in it are resolved against `base_dir` (default: the current
    /// directory). Returns the application's name. Raises `AlreadyInstalledError` when an
    /// application of that name is installed; on any error nothing changes.
    #[pyo3(signature = (spec, format = "toml", base_dir = None))]
    fn install(
        &self,
        py: Python<'_>,
        spec: &Bound<'_, PyAny>,
        format: &str,
        base_dir: Option<PathBuf>,
    ) -> PyResult<String> {
        let (text, format) = document(spec, format, "spec")?;
        let base_dir = base_dir.unwrap_or_else(|| PathBuf::from("."));
        let inner = self.inner.clone();
        py.detach(move || inner.install(&text, format, &base_dir))
            .map_err(raise)
    }

    /// Installs one application from a spec file (JSON when it ends in `.json`, TOML
    /// otherwise); relative paths in it are resolved against its folder.
    fn install_file(&self, py: Python<'_>, path: PathBuf) -> PyResult<String> {
        let inner = self.inner.clone();
        py.detach(move || inner.install_file(&path)).map_err(raise)
    }

    /// Removes an installed application; raises `NotInstalledError` when there is none.
    fn remove(&self, app: &str) -> PyResult<()> {
        self.inner.remove(app).map_err(raise)
    }

    /// The installed applications' names, sorted.
    #[getter]
    fn apps(&self) -> Vec<String> {
        self.inner.apps()
    }

    /// Records every decision of this runtime in the signed, hash-chained audit log in the
    /// folder `log_dir` before `decide` returns it (SER-016). Checkpoints are signed with the
    /// audit key of the software keystore in `keystore_dir` (made on first use; keep it apart
    /// from the log); the public key is written to `log_dir/gateway.pub` for
    /// `palisade audit verify --log LOG_DIR --key LOG_DIR/gateway.pub`.
    ///
    /// `on_failure`: `"deny"` (default) returns a deny naming the failure for a decision the
    /// log cannot take within 2 s; `"answer-unrecorded"` returns it as decided (logged and
    /// counted). Cost: each decision waits for its record's write. Once set, for the
    /// runtime's life: a second call raises `AuditLogError`, as does a log that cannot be
    /// opened (e.g. another writer has it).
    #[pyo3(signature = (log_dir, keystore_dir, on_failure = "deny"))]
    fn set_audit_log(
        &self,
        py: Python<'_>,
        log_dir: PathBuf,
        keystore_dir: PathBuf,
        on_failure: &str,
    ) -> PyResult<()> {
        let on_failure = match on_failure {
            "deny" => OnAuditFailure::Deny,
            "answer-unrecorded" => OnAuditFailure::AnswerUnrecorded,
            other => {
                return Err(PyTypeError::new_err(format!(
                    "on_failure must be \"deny\" or \"answer-unrecorded\", not {other:?}"
                )))
            }
        };
        let inner = self.inner.clone();
        py.detach(move || inner.set_audit_log(&log_dir, &keystore_dir, on_failure))
            .map_err(raise)
    }

    /// Decides on a request: a dict (or a JSON string) in the shape of the gateway's
    /// `/v1/decide` request with `app` required. A request for an application that is not
    /// installed is denied, not an error.
    fn decide(&self, py: Python<'_>, request: &Bound<'_, PyAny>) -> PyResult<PyDecision> {
        let (text, _) = document(request, "json", "request")?;
        let inner = self.inner.clone();
        let decision = py.detach(move || inner.decide_json(&text)).map_err(raise)?;
        Ok(PyDecision::new(decision))
    }

    fn __repr__(&self) -> String {
        format!("palisade.Runtime(apps={:?})", self.inner.apps())
    }
}

/// A decision: its effect, why, and what the pipeline did stage by stage.
#[pyclass(module = "palisade", name = "Decision", frozen)]
struct PyDecision {
    decision: Decision,
}

impl PyDecision {
    fn new(decision: Decision) -> PyDecision {
        PyDecision { decision }
    }

    /// One part of the decision's JSON, as Python objects.
    fn part<'py>(&self, py: Python<'py>, key: &str) -> PyResult<Bound<'py, PyAny>> {
        let value = serde_json::to_value(&self.decision)
            .map_err(|e| PalisadeError::new_err(format!("cannot encode the decision: {e}")))?;
        let json = serde_json::to_string(&value[key]).unwrap_or_else(|_| "null".into());
        py.import("json")?.call_method1("loads", (json,))
    }
}

#[pymethods]
impl PyDecision {
    /// `"permit"` or `"deny"`.
    #[getter]
    fn effect(&self) -> &'static str {
        match self.decision.effect {
            palisade_core::Effect::Permit => "permit",
            palisade_core::Effect::Deny => "deny",
        }
    }

    /// Whether the request may proceed.
    #[getter]
    fn permitted(&self) -> bool {
        self.decision.is_permit()
    }

    /// Why, in a sentence for operators and audit.
    #[getter]
    fn reason(&self) -> &str {
        &self.decision.reason
    }

    /// The application that decided.
    #[getter]
    fn app(&self) -> &str {
        &self.decision.app
    }

    /// False in monitor mode: then the effect is permit and `would_deny` says why enforcing
    /// would have denied.
    #[getter]
    fn enforced(&self) -> bool {
        self.decision.enforced
    }

    #[getter]
    fn would_deny(&self) -> Option<&str> {
        self.decision.would_deny.as_deref()
    }

    /// The id of the decision's audit record (32 hex digits) when the runtime has an audit
    /// log (`set_audit_log`); None otherwise.
    #[getter]
    fn decision_id(&self) -> Option<&str> {
        self.decision.decision_id.as_deref()
    }

    /// The name of the plugin whose answer settled the decision, if any did.
    #[getter]
    fn decided_by(&self) -> Option<&str> {
        self.decision
            .decided_by
            .as_ref()
            .map(|label| label.name.as_str())
    }

    /// The identity an authenticator established (dict), if any.
    #[getter]
    fn identity<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.part(py, "identity")
    }

    /// Every plugin's answer, in order (list of dicts).
    #[getter]
    fn stages<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.part(py, "stages")
    }

    /// Microseconds per stage (dict).
    #[getter]
    fn timings<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.part(py, "timings")
    }

    /// Everything above as one dict (the JSON the C API's `palisade_decision_json` gives).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let json = serde_json::to_string(&self.decision)
            .map_err(|e| PalisadeError::new_err(format!("cannot encode the decision: {e}")))?;
        py.import("json")?.call_method1("loads", (json,))
    }

    fn __repr__(&self) -> String {
        format!(
            "palisade.Decision(effect={:?}, reason={:?})",
            self.effect(),
            self.decision.reason
        )
    }
}

#[pymodule]
#[pyo3(name = "palisade")]
fn palisade_module(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    module.add_class::<Runtime>()?;
    module.add_class::<PyDecision>()?;
    for (name, exception) in [
        ("PalisadeError", py.get_type::<PalisadeError>()),
        ("SettingsError", py.get_type::<SettingsError>()),
        ("SpecError", py.get_type::<SpecError>()),
        (
            "AlreadyInstalledError",
            py.get_type::<AlreadyInstalledError>(),
        ),
        ("InstallError", py.get_type::<InstallError>()),
        ("NotInstalledError", py.get_type::<NotInstalledError>()),
        ("RequestError", py.get_type::<RequestError>()),
        ("EngineError", py.get_type::<EngineError>()),
        ("AuditLogError", py.get_type::<AuditLogError>()),
    ] {
        module.add(name, exception)?;
    }
    Ok(())
}
