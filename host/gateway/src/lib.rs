//! The gateway service behind `palisade serve`: the decision API (`POST /v1/decide`), the
//! oneM2M HTTP-binding enforcement proxy in front of an upstream CSE, `GET /metrics` and
//! `GET /health`.
//!
//! Parts, one private module each: the TOML file ([`GatewayConfig`]), installing the apps
//! ([`install_apps`]), pseudonymous originators (SER-011/018/025), rate limits and
//! back-pressure (SER-001), the decision API, the oneM2M HTTP binding and its proxy, metrics,
//! the audit hook every decision goes through (SER-016), listeners with timeouts and graceful
//! shutdown ([`serve`]), rustls listeners with client certificates (SER-009,
//! [`tls_acceptor`]), the no-config demo gateway and `POST /v1/noop` (off unless
//! `[diagnostics] noop_endpoint = true`: the HTTP path without a decision, for benchmarks).
//!
//! Every decision is made by `Gateway::evaluate_established`, which resolves the application, applies
//! the identity-privacy split, runs the pipeline, counts it and hands it to
//! the audit hook; handlers await `Gateway::recorded` before they answer (SER-016). The
//! pipeline is synchronous and never waits; async handlers call it through
//! `Gateway::run_plugins`, inline on the worker unless the app misbehaved (`placement.rs`).
#![deny(missing_docs)]

mod admin;
mod app_groups;
mod audit;
mod config;
mod cse_lookup;
mod decide;
mod demo;
mod error;
mod group_http;
mod group_proof;
mod metrics;
mod noop;
mod onem2m;
mod originator;
mod placement;
mod privacy;
mod protect;
mod proxy;
mod registration;
mod replay;
mod server;
mod setup;
mod status;
mod tls;
mod tls_client;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use palisade_core::{now_unix, AccessRequest};
use palisade_core::{Decision, Runtime, Timing};
use palisade_core::{Engine, EngineConfig};
use palisade_core::{Evaluated, PrivacySplit, UNAVAILABLE_PSEUDONYM};
use palisade_keys::{KeyStore, SoftwareKeyStore};

use audit::audit_hook;

// The public API is this list; every module is private, so an item is public only when it
// is named here (issue #14): what the CLI, the collector, the benchmarks and the tests use.
pub use admin::oci::spawn_subscriptions as spawn_oci_subscriptions;
pub use admin::{
    auth::KEY_ID_HEADER, sign_request, spawn_periodic as spawn_admin_checks, start as start_admin,
    Admin, AdminSetupError,
};
pub use audit::{AuditHealth, AuditRefusal, AuditSink, AuditTicket, DecisionRecord, SinkFuture};
pub use config::{line_of, toml_error, ConfigError, GatewayConfig, KeystoreConfig, Rate, Service};
pub use demo::{mint_demo_token, prepare as prepare_demo, DEMO_LISTEN, DEMO_TOKEN_HOLDER};
pub use error::{json_response, ErrorBody, ErrorDetail};
pub use group_http::{
    agent_router, server_router, AgentState, Established, HttpError as GroupHttpError,
    RegistryFile, ServerClient, ServerState, CONTENT_TYPE as GROUP_CONTENT_TYPE,
    DEFAULT_ASSOCIATION_TTL, DEFAULT_SOURCE_RATE,
};
pub use onem2m::parse_content_type;
pub use proxy::Upstream;
pub use server::{serve, serve_connections, serve_router, Accepted, ConnectionLimits, Listener};
pub use setup::{install_apps, AppRoute, SetupError};
pub use status::http_status as onem2m_http_status;
pub use tls::acceptor as tls_acceptor;
pub use tls_client::{
    blocking as blocking_tls, client_config, is_https, ClientTlsError, ClientTlsFiles, Connector,
};

pub use palisade_core::AUTHN_SUFFIX;

/// Everything a running gateway shares between connections.
pub struct Gateway {
    /// The installed applications and their plugins.
    pub runtime: Arc<Runtime>,
    /// Each application's routing: name, paths and mode.
    pub routes: Vec<Arc<AppRoute>>,
    /// The CSE the proxy forwards permitted requests to, if one is configured.
    pub upstream: Option<proxy::Upstream>,
    /// Provisioned originator positions: the location of proxied requests (issue 13.7).
    pub(crate) positions: Arc<palisade_provision::PositionDirectory>,
    pub(crate) limits: config::ServerLimits,
    pub(crate) protection: protect::Protection,
    pub(crate) metrics: metrics::Metrics,
    pub(crate) audit: Arc<dyn AuditSink>,
    pub(crate) keystore: Arc<dyn KeyStore>,
    /// The admin API and module registry, when the config has an `[admin]` section.
    pub admin: Option<Arc<admin::Admin>>,
    /// Whether `POST /v1/noop` is served (`[diagnostics] noop_endpoint`).
    pub(crate) noop_endpoint: bool,
    /// How each app's originators are established, and the `tkid` replay cache.
    pub(crate) originators: originator::Originators,
    ids: palisade_core::DecisionIds,
    started: Instant,
}

/// A decision with what the gateway adds to it.
pub struct Evaluation {
    /// The pipeline's decision.
    pub decision: Decision,
    /// The id the audit record and the answer carry.
    pub decision_id: String,
    /// The request as the app's authorizers saw it (pseudonymous originator, authentication
    /// state and roles established): filters see the same.
    pub view: AccessRequest,
    /// Where the decision's audit record stands: await `Gateway::recorded` before
    /// answering (SER-016).
    pub audit: audit::AuditTicket,
    /// Set when the originator was not authenticated: answer this refusal (4106, or 503 when
    /// the token replay check is unavailable) instead of the deny.
    pub refused: Option<originator::Refusal>,
}

/// The keystore the config names (SER-023: a PKCS#11 token, or the software default).
pub fn open_keystore(
    config: &config::KeystoreConfig,
    data_dir: &Path,
) -> Result<Arc<dyn KeyStore>, SetupError> {
    match config {
        config::KeystoreConfig::Software => {
            Ok(Arc::new(SoftwareKeyStore::open(&data_dir.join("keys"))?))
        }
        #[cfg(feature = "pkcs11")]
        config::KeystoreConfig::Pkcs11 {
            module,
            token_label,
            pin_env,
        } => {
            let user_pin =
                std::env::var(pin_env).map_err(|_| SetupError::HsmPin(pin_env.clone()))?;
            let store = palisade_keys::Pkcs11KeyStore::open(&palisade_keys::Pkcs11Config {
                module: module.clone(),
                token_label: token_label.clone(),
                user_pin,
            })?;
            Ok(Arc::new(store))
        }
        #[cfg(not(feature = "pkcs11"))]
        config::KeystoreConfig::Pkcs11 { .. } => Err(SetupError::HsmUnsupported),
    }
}

/// The hash-chained audit log in `<data>/audit`, checkpoints signed by the gateway's audit
/// key in the keystore (SER-016).
fn open_audit(
    data_dir: &Path,
    keystore: &Arc<dyn KeyStore>,
    settings: &audit::AuditSettings,
) -> Result<Arc<dyn AuditSink>, SetupError> {
    let signer = Arc::new(
        audit::KeystoreSigner::open_or_create(keystore.clone())
            .map_err(audit::AuditSetupError::Key)?,
    );
    Ok(Arc::new(audit::AuditLogSink::open(
        &data_dir.join("audit"),
        signer,
        settings,
    )?))
}

impl Gateway {
    /// Opens the data folder (keystore, artifact cache), installs the config's apps and
    /// prepares the upstream client.
    pub fn build(config: &GatewayConfig, data_dir: &Path) -> Result<Gateway, SetupError> {
        std::fs::create_dir_all(data_dir).map_err(|source| SetupError::Data {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let keystore = open_keystore(&config.keystore, data_dir)?;
        let mut engine_config = EngineConfig::default().cache_dir(Some(data_dir.join("cache")));
        config.compile.apply(&mut engine_config);
        config.engine.apply(&mut engine_config);
        let engine = Engine::new(engine_config)?;
        let runtime = Arc::new(Runtime::new(engine)?);
        let routes = setup::install_apps(config, &runtime, &keystore)?;
        let upstream_tls = config.upstream_tls()?;
        let mut upstream = config
            .upstream
            .as_ref()
            .map(|upstream| proxy::Upstream::new(upstream, upstream_tls));
        let originators = originator::Originators::new(config, data_dir)?;
        if let Some(upstream) = &mut upstream {
            upstream.attach_groups(config, &runtime);
        }
        Ok(Gateway {
            runtime,
            routes,
            upstream,
            positions: Arc::new(palisade_provision::PositionDirectory::new()),
            limits: config.limits.clone(),
            protection: protect::Protection::new(&config.rate_limit, config.limits.max_in_flight),
            metrics: metrics::Metrics::default(),
            audit: open_audit(data_dir, &keystore, &config.audit)?,
            keystore,
            admin: None,
            noop_endpoint: config.diagnostics.noop_endpoint,
            originators,
            ids: palisade_core::DecisionIds::new(),
            started: Instant::now(),
        })
    }

    /// The installed application named `name`.
    pub(crate) fn route(&self, name: &str) -> Option<&Arc<AppRoute>> {
        self.routes.iter().find(|route| route.name == name)
    }

    /// The application whose longest path prefix covers `target`.
    pub fn resolve(&self, target: &str) -> Option<&Arc<AppRoute>> {
        self.routes
            .iter()
            .filter_map(|route| route.covers(target).map(|length| (length, route)))
            .max_by_key(|(length, _)| *length)
            .map(|(_, route)| route)
    }

    /// Puts `wrap`'s sink in front of the audit sink every decision and event goes through
    /// (e.g. the audit shipper's backlog bound, issue #17). Call before serving.
    pub fn wrap_audit(&mut self, wrap: impl FnOnce(Arc<dyn AuditSink>) -> Arc<dyn AuditSink>) {
        self.audit = wrap(self.audit.clone());
    }

    /// Seconds since the gateway started.
    pub(crate) fn uptime_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Runs `work` (which calls `route`'s plugins) from an async handler: inline on the
    /// worker while the app's plugins behave, off it once one failed or was slow
    /// ([`placement`]).
    pub(crate) fn run_plugins<T>(&self, route: &AppRoute, work: impl FnOnce() -> T) -> T {
        route.placement.run(work)
    }

    /// Decides `request` for `route`: privacy split, pipeline, metrics, audit. Synchronous
    /// (runs plugins): async code calls it through `Gateway::run_plugins`. The gateway's
    /// benchmark measures this path in process (bench/src/bin/gateway/http.rs). Times the
    /// decision as a whole only ([`Timing::Total`]), as `/v1/decide` without `explain` does.
    pub fn evaluate(
        &self,
        route: &AppRoute,
        request: AccessRequest,
        source: &'static str,
    ) -> Evaluation {
        self.evaluate_established(
            route,
            request,
            source,
            originator::Established::claimed(),
            Timing::Total,
        )
    }

    /// [`Gateway::evaluate`] for a request whose originator passed
    /// [`originator::Originators::check`]: after the plugins, its tokens must have been
    /// verified for the originator and are used up, or the decision becomes a refusal.
    /// `timing`: [`Timing::Stages`] only when the answer shows the explanation.
    pub(crate) fn evaluate_established(
        &self,
        route: &AppRoute,
        mut request: AccessRequest,
        source: &'static str,
        established: originator::Established,
        timing: Timing,
    ) -> Evaluation {
        request.app = route.name.clone();
        request.request_time.get_or_insert_with(now_unix);
        // A group request proof authenticated the device itself (#16.6).
        request.authenticated |= established.by_group();
        let originator = request.originator.clone();
        let split = route.pseudonyms.as_ref().map(|pseudonyms| {
            let split = PrivacySplit::new(pseudonyms);
            match &route.authn_app {
                Some(authn_app) => split.authenticators(authn_app),
                None => split,
            }
        });
        let Evaluated {
            mut decision,
            view,
            subject,
            ..
        } = self.runtime.evaluate_timed(request, split, timing);
        if decision.stages.iter().any(|stage| stage.failure.is_some()) {
            route.placement.demote();
        }
        let refused =
            self.originators
                .after_plugins(&established, &originator, &mut decision, now_unix());
        self.finish(decision, view, subject, source, established.how, refused)
    }

    /// The gateway's refusal of `request` for `route` before any plugin ran (the originator
    /// is not authenticated): audited like every decision, the originator pseudonymous
    /// unless the app has consent.
    pub(crate) fn refuse(
        &self,
        route: &AppRoute,
        mut request: AccessRequest,
        source: &'static str,
        refusal: originator::Refusal,
    ) -> Evaluation {
        let started = Instant::now();
        request.app = route.name.clone();
        request.request_time.get_or_insert_with(now_unix);
        request.credential = None;
        // An originator-less AE registration stays empty, as in `evaluate_private`.
        if let Some(pseudonyms) = route
            .pseudonyms
            .as_ref()
            .filter(|_| !request.originator.is_empty())
        {
            request.originator = pseudonyms
                .pseudonym(&request.originator)
                .unwrap_or_else(|_| UNAVAILABLE_PSEUDONYM.into());
        }
        let mut decision =
            Decision::deny_unplugged(&route.name, "", started.elapsed().as_micros() as u64);
        originator::deny(&mut decision, &refusal);
        // A refused group proof (#16.6) was a claim of `group`, whatever the app's mode.
        let how = match &refusal {
            originator::Refusal::NotAuthenticated { reason, .. }
                if reason.starts_with("group-proof") =>
            {
                "group"
            }
            _ => self.originators.mode(&route.name).name(),
        };
        self.finish(decision, request, None, source, how, Some(refusal))
    }

    /// Counts and audits a decision (SER-016).
    fn finish(
        &self,
        decision: Decision,
        view: AccessRequest,
        subject: Option<String>,
        source: &'static str,
        originator_auth: &'static str,
        refused: Option<originator::Refusal>,
    ) -> Evaluation {
        let decision_id = self.ids.next_id();
        self.metrics.decision(&decision);
        let record = audit::decision_record(
            &decision_id,
            source,
            originator_auth,
            &view,
            &decision,
            subject,
        );
        let audit = audit_hook(self.audit.as_ref(), &record);
        Evaluation {
            decision,
            decision_id,
            view,
            audit,
            refused,
        }
    }

    /// Waits until `evaluation`'s record is written (SER-016: audit is a precondition of an
    /// answer). `Err`: it cannot be recorded, and the request must be refused (503).
    pub(crate) async fn recorded(
        &self,
        evaluation: &mut Evaluation,
    ) -> Result<(), audit::AuditRefusal> {
        let ticket = std::mem::replace(&mut evaluation.audit, audit::AuditTicket::Done);
        self.audit.confirm(ticket).await
    }
}
