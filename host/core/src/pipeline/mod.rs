//! The decision pipeline: resolve the application → authenticate → authorize → (later, on
//! the response) filter. [`Runtime::is_authorized`] is the one entry point.
//!
//! Every stage fails closed (SER-008): an unknown application, a rejected credential, a
//! plugin that fails, an authorizer that denies, or authorizers that all answer
//! not-applicable make a deny whose reason names the cause. Monitor mode reports the deny and
//! permits.

mod app;
mod decision;
mod shared;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Instant;

use crate::audit::{AuditSink, OnAuditFailure, Recorder};
use crate::engine::{Engine, EngineError};
use crate::request::{now_unix, AccessRequest, ResponseBody};
use crate::sandbox::{AuthOutcome, Failure, FilterOutcome, Plugin, SharedLinker, Verdict};

pub use app::{
    valid_name, App, AppSpec, AppStatus, InstallError, Mode, PluginSource, PluginStatus,
};
pub use decision::{
    Decision, Effect, FilteredResponse, Identity, Outcome, Stage, StageReport, Timing, Timings,
};
pub use shared::SharedModules;

/// The runtime: one engine, many applications. Cheap to share across threads (`Arc`).
pub struct Runtime {
    engine: Engine,
    linker: Arc<SharedLinker>,
    apps: RwLock<HashMap<String, Arc<App>>>,
    /// Serialises changes (install, swap, removal) so two concurrent changes to one
    /// application cannot lose each other; decisions never take it.
    changes: Mutex<()>,
    /// Where decisions are recorded (SER-016), once an embedder installs a sink.
    audit: OnceLock<Recorder>,
}

/// [`Runtime::set_audit_sink`] was called before: the sink in place stays.
#[derive(Debug, Default, thiserror::Error)]
#[error("this runtime has an audit sink already: it cannot be replaced or removed")]
#[non_exhaustive]
pub struct AuditSinkInstalled;

impl Runtime {
    /// A runtime with no applications on `engine`.
    pub fn new(engine: Engine) -> Result<Runtime, EngineError> {
        let linker = SharedLinker::new(&engine).map_err(|error| EngineError::Configure {
            what: "linking the host imports",
            source: error.into(),
        })?;
        Ok(Runtime {
            engine,
            linker: Arc::new(linker),
            apps: RwLock::new(HashMap::new()),
            changes: Mutex::new(()),
            audit: OnceLock::new(),
        })
    }

    /// Hands every decision to `sink` before it is returned (SER-016).
    ///
    /// - **Meaning**: from this call on, [`Runtime::is_authorized`] and
    ///   [`Runtime::evaluate`] (every path: unknown application, the authentication sandbox,
    ///   a pseudonym that cannot be computed) build one [`crate::DecisionRecord`] per answer,
    ///   of the request as the plugins saw it, and call [`AuditSink::record`] before
    ///   returning; the answer carries the record's id ([`Decision::decision_id`]). When the
    ///   sink fails, `on_failure` decides: [`OnAuditFailure::Deny`] returns a deny whose
    ///   reason names the failure, [`OnAuditFailure::AnswerUnrecorded`] the decision as made.
    /// - **Default**: no sink; decisions are returned unrecorded, and recording them is the
    ///   embedder's job (the gateway records through its own asynchronous path).
    /// - **Cost**: the sink's time on every decision, on the deciding thread, plus building
    ///   the record (a few small allocations).
    ///
    /// Once installed a sink stays for the runtime's life: a second call is refused, so no
    /// later caller can switch the recording off.
    pub fn set_audit_sink(
        &self,
        sink: Arc<dyn AuditSink>,
        on_failure: OnAuditFailure,
    ) -> Result<(), AuditSinkInstalled> {
        let mut installed = false;
        self.audit.get_or_init(|| {
            installed = true;
            Recorder::new(sink, on_failure)
        });
        if installed {
            Ok(())
        } else {
            Err(AuditSinkInstalled)
        }
    }

    /// Whether an audit sink is installed.
    pub fn has_audit_sink(&self) -> bool {
        self.audit.get().is_some()
    }

    /// Decisions answered although their sink could not record them
    /// ([`OnAuditFailure::AnswerUnrecorded`]); 0 without a sink.
    pub fn unrecorded_decisions(&self) -> u64 {
        self.audit
            .get()
            .map_or(0, |audit| audit.unrecorded.load(Ordering::Relaxed))
    }

    /// `decision` on `view` (as the plugins saw it) once the audit sink has it, if one is
    /// installed (see [`Runtime::set_audit_sink`]).
    pub(crate) fn recorded(
        &self,
        decision: Decision,
        view: &AccessRequest,
        subject: Option<String>,
    ) -> Decision {
        match self.audit.get() {
            Some(audit) => audit.settle(decision, view, subject),
            None => decision,
        }
    }

    /// The engine the runtime compiles and runs plugins on.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles and loads every plugin of `spec`, then makes the application live in one step,
    /// replacing any earlier installation of the same name. Decisions already running finish
    /// on the old installation; on error nothing changes.
    pub fn install(&self, spec: AppSpec) -> Result<(), InstallError> {
        let _change = self
            .changes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let app = App::build(&self.engine, &self.linker, spec, |bytes| {
            self.engine.compile(bytes)
        })?;
        self.put(app);
        Ok(())
    }

    /// Like [`Runtime::install`] with already compiled components (shared between apps);
    /// a module not among them is compiled.
    pub fn install_compiled(
        &self,
        spec: AppSpec,
        compiled: &SharedModules,
    ) -> Result<(), InstallError> {
        let _change = self
            .changes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let app = App::build(&self.engine, &self.linker, spec, |bytes| {
            match compiled.find(bytes) {
                Some(component) => Ok(component.clone()),
                None => self.engine.compile(bytes),
            }
        })?;
        self.put(app);
        Ok(())
    }

    /// Replaces (or adds) one plugin of an installed application without touching the rest:
    /// the new version is compiled and type-checked first, then takes over in one step.
    /// Decisions in flight finish on the old version; none fails (hot swap). On error the
    /// application is unchanged.
    pub fn swap_plugin(&self, app: &str, source: PluginSource) -> Result<(), InstallError> {
        let _change = self
            .changes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let current = self
            .app(app)
            .ok_or_else(|| InstallError::UnknownApp(app.to_string()))?;
        let next = current.with_plugin(source, |bytes| self.engine.compile(bytes))?;
        self.put(next);
        Ok(())
    }

    /// Removes one plugin of an installed application; returns whether it was there.
    pub fn remove_plugin(&self, app: &str, plugin: &str) -> bool {
        let _change = self
            .changes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(current) = self.app(app) else {
            return false;
        };
        let next = current.without_plugin(plugin);
        let removed = next.plugins().count() != current.plugins().count();
        if removed {
            self.put(next);
        }
        removed
    }

    fn put(&self, app: App) {
        let name = app.name().to_string();
        self.apps
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(name, Arc::new(app));
    }

    /// Removes an application; its requests are denied as unknown from then on.
    pub fn remove(&self, app: &str) -> bool {
        let _change = self
            .changes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.apps
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(app)
            .is_some()
    }

    /// The installed application named `app`.
    pub fn app(&self, app: &str) -> Option<Arc<App>> {
        self.apps
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(app)
            .cloned()
    }

    /// Names of the installed applications, sorted.
    pub fn app_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .apps
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    }

    /// Every application's plugins and their health.
    pub fn status(&self) -> Vec<AppStatus> {
        self.app_names()
            .iter()
            .filter_map(|name| self.app(name))
            .map(|app| app.status())
            .collect()
    }

    /// Decides whether `request` may proceed, timing every stage and plugin call
    /// ([`Timing::Stages`]); with an audit sink, the decision is on record (or a deny naming
    /// why not) when it returns ([`Runtime::set_audit_sink`]). The plugins and the record see
    /// the originator as given: see [`Runtime::evaluate`] for the identity-privacy split.
    pub fn is_authorized(&self, request: &AccessRequest) -> Decision {
        self.is_authorized_timed(request, Timing::Stages)
    }

    /// [`Runtime::is_authorized`], measuring only what `timing` asks for: with
    /// [`Timing::Total`] the decision's `timings.total_us` is set and the per-stage and
    /// per-plugin times stay 0, which spares a warm decision four clock reads.
    pub fn is_authorized_timed(&self, request: &AccessRequest, timing: Timing) -> Decision {
        let decision = self.decide_unrecorded(request, timing);
        if self.audit.get().is_none() {
            return decision;
        }
        let subject = decision.identity.as_ref().map(|i| i.subject.clone());
        self.recorded(decision, request, subject)
    }

    /// [`Runtime::is_authorized_timed`] without the audit sink: for the steps of a decision
    /// that is recorded once, as a whole.
    pub(crate) fn decide_unrecorded(&self, request: &AccessRequest, timing: Timing) -> Decision {
        let started = Instant::now();
        let Some(app) = self.app(&request.app) else {
            return Decision::deny_unplugged(
                &request.app,
                format!("unknown application {:?}", request.app),
                micros_since(started),
            );
        };
        let mut decision = decide(&app, request, timing);
        if app.mode == Mode::Monitor && decision.effect == Effect::Deny {
            tracing::info!(app = %request.app, reason = %decision.reason, "monitor mode: would deny");
            decision.would_deny = Some(std::mem::take(&mut decision.reason));
            decision.reason = "monitor mode: permitted without enforcement".into();
            decision.effect = Effect::Permit;
            decision.enforced = false;
        }
        decision.timings.total_us = micros_since(started);
        decision
    }

    /// Passes a permitted request's response through the application's filters, in order.
    /// A filter that blocks or fails stops delivery (fail-closed, SER-026).
    pub fn filter_response(
        &self,
        request: &AccessRequest,
        response: ResponseBody,
    ) -> FilteredResponse {
        let Some(app) = self.app(&request.app) else {
            return FilteredResponse::Blocked {
                reason: format!("unknown application {:?}", request.app),
                stages: Vec::new(),
            };
        };
        let now = request.request_time.unwrap_or_else(now_unix);
        let mut body = response.body;
        let mut stages = Vec::new();
        for plugin in &app.filters {
            let started = Instant::now();
            let current = ResponseBody {
                status: response.status,
                content_type: response.content_type.clone(),
                body,
            };
            let outcome = app.sandbox.filter(plugin, request, &current, now);
            body = current.body;
            let micros = micros_since(started);
            match outcome {
                Ok(FilterOutcome::Unchanged) => stages.push(report(
                    Stage::Filter,
                    plugin,
                    Outcome::Unchanged,
                    None,
                    None,
                    micros,
                )),
                Ok(FilterOutcome::Rewrite(new_body)) => {
                    stages.push(report(
                        Stage::Filter,
                        plugin,
                        Outcome::Rewrite,
                        None,
                        None,
                        micros,
                    ));
                    body = new_body;
                }
                Ok(FilterOutcome::Block(reason)) => {
                    stages.push(report(
                        Stage::Filter,
                        plugin,
                        Outcome::Block,
                        Some(reason.clone()),
                        None,
                        micros,
                    ));
                    return FilteredResponse::Blocked {
                        reason: format!(
                            "filter {} blocked the response: {reason}",
                            plugin.label().name
                        ),
                        stages,
                    };
                }
                Err(failure) => {
                    let reason = failure_reason(plugin, &failure);
                    stages.push(failed(Stage::Filter, plugin, &failure, micros));
                    return FilteredResponse::Blocked { reason, stages };
                }
            }
        }
        FilteredResponse::Deliver { body, stages }
    }
}

/// The enforce-mode decision for a resolved application.
fn decide(app: &App, request: &AccessRequest, timing: Timing) -> Decision {
    let now = request.request_time.unwrap_or_else(now_unix);
    // Clock reads for the explanation only; `total_us` is the caller's (see `Timing`).
    let clock = || (timing == Timing::Stages).then(Instant::now);
    let mut decision = Decision {
        effect: Effect::Deny,
        reason: String::new(),
        app: request.app.clone(),
        decided_by: None,
        enforced: true,
        would_deny: None,
        identity: None,
        // One report per plugin that runs: sized once, no growth on the decision path.
        stages: Vec::with_capacity(app.authenticators.len() + app.authorizers.len()),
        timings: Timings::default(),
        decision_id: None,
    };

    // Authenticate: only when a credential was presented. The first authenticator that
    // accepts it settles the identity; a rejection or a failure denies at once.
    let mut effective = std::borrow::Cow::Borrowed(request);
    if let Some(credential) = &request.credential {
        let stage_started = clock();
        for plugin in &app.authenticators {
            let call_started = clock();
            let outcome = app.sandbox.authenticate(plugin, request, credential, now);
            let micros = micros_if(call_started);
            match outcome {
                Ok(AuthOutcome::Authenticated {
                    subject,
                    roles,
                    expires_at,
                }) => {
                    decision.stages.push(report(
                        Stage::Authenticate,
                        plugin,
                        Outcome::Authenticated,
                        None,
                        None,
                        micros,
                    ));
                    if expires_at.is_some_and(|expiry| expiry < now) {
                        return deny(
                            decision,
                            plugin,
                            format!(
                                "authenticator {} returned an identity that expired",
                                plugin.label().name
                            ),
                        );
                    }
                    let request = effective.to_mut();
                    request.authenticated = true;
                    for role in &roles {
                        if !request.roles.contains(role) {
                            request.roles.push(role.clone());
                        }
                    }
                    decision.identity = Some(Identity {
                        subject,
                        roles,
                        expires_at,
                        authenticator: plugin.label().name.clone(),
                    });
                    break;
                }
                Ok(AuthOutcome::Rejected { reason }) => {
                    decision.stages.push(report(
                        Stage::Authenticate,
                        plugin,
                        Outcome::Rejected,
                        Some(reason.clone()),
                        None,
                        micros,
                    ));
                    let reason =
                        format!("credential rejected by {}: {reason}", plugin.label().name);
                    return deny(decision, plugin, reason);
                }
                Ok(AuthOutcome::NotApplicable) => decision.stages.push(report(
                    Stage::Authenticate,
                    plugin,
                    Outcome::NotApplicable,
                    None,
                    None,
                    micros,
                )),
                Err(failure) => {
                    decision
                        .stages
                        .push(failed(Stage::Authenticate, plugin, &failure, micros));
                    let reason = failure_reason(plugin, &failure);
                    return deny(decision, plugin, reason);
                }
            }
        }
        decision.timings.authenticate_us = micros_if(stage_started);
    }

    // Authorize: every authorizer must permit; one deny or failure denies; not-applicable
    // from all (or no authorizer at all) denies.
    let stage_started = clock();
    let mut first_permit: Option<&Plugin> = None;
    for plugin in &app.authorizers {
        let call_started = clock();
        let outcome = app.sandbox.authorize(plugin, &effective, now);
        let micros = micros_if(call_started);
        match outcome {
            Ok(Verdict::Permit) => {
                decision.stages.push(report(
                    Stage::Authorize,
                    plugin,
                    Outcome::Permit,
                    None,
                    None,
                    micros,
                ));
                first_permit.get_or_insert(plugin);
            }
            Ok(Verdict::NotApplicable) => decision.stages.push(report(
                Stage::Authorize,
                plugin,
                Outcome::NotApplicable,
                None,
                None,
                micros,
            )),
            Ok(Verdict::Deny(reason)) => {
                decision.stages.push(report(
                    Stage::Authorize,
                    plugin,
                    Outcome::Deny,
                    Some(reason.clone()),
                    None,
                    micros,
                ));
                decision.timings.authorize_us = micros_if(stage_started);
                return deny(decision, plugin, reason);
            }
            Err(failure) => {
                decision
                    .stages
                    .push(failed(Stage::Authorize, plugin, &failure, micros));
                decision.timings.authorize_us = micros_if(stage_started);
                let reason = failure_reason(plugin, &failure);
                return deny(decision, plugin, reason);
            }
        }
    }
    decision.timings.authorize_us = micros_if(stage_started);
    match first_permit {
        Some(plugin) => {
            decision.effect = Effect::Permit;
            decision.reason = plugin.permit_reason().to_string();
            decision.decided_by = Some(plugin.label().clone());
        }
        None if app.authorizers.is_empty() => {
            decision.reason = format!("application {:?} has no authorizer", request.app);
        }
        None => {
            decision.reason =
                "no authorizer permitted the request (all answered not-applicable)".into();
        }
    }
    decision
}

/// A deny settled by `plugin` (`timings.total_us` is set by the caller, for every decision).
fn deny(mut decision: Decision, plugin: &Plugin, reason: String) -> Decision {
    decision.effect = Effect::Deny;
    decision.reason = reason;
    decision.decided_by = Some(plugin.label().clone());
    decision
}

fn failure_reason(plugin: &Plugin, failure: &Failure) -> String {
    format!("plugin {} {failure}", plugin.label().name)
}

fn report(
    stage: Stage,
    plugin: &Plugin,
    outcome: Outcome,
    detail: Option<String>,
    failure: Option<&'static str>,
    micros: u64,
) -> StageReport {
    StageReport {
        stage,
        plugin: plugin.label().clone(),
        outcome,
        detail,
        failure,
        micros,
    }
}

fn failed(stage: Stage, plugin: &Plugin, failure: &Failure, micros: u64) -> StageReport {
    report(
        stage,
        plugin,
        Outcome::Failed,
        Some(failure.to_string()),
        Some(failure.code()),
        micros,
    )
}

fn micros_since(started: Instant) -> u64 {
    started.elapsed().as_micros() as u64
}

/// Microseconds since `started`, or 0 when the stage was not timed.
fn micros_if(started: Option<Instant>) -> u64 {
    started.map_or(0, micros_since)
}
