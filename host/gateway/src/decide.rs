//! `POST /v1/decide`: one decision for a JSON request.
//!
//! The request is an [`AccessRequest`] in JSON with `app` optional
//! (resolved from the apps' target path prefixes when absent):
//!
//! ```json
//! {"originator": "CAE1", "operation": "retrieve", "target": "/cse-in/lights/lamp1"}
//! ```
//!
//! The answer:
//!
//! ```json
//! {"decision": "permit", "reason": "permitted by acp", "decision_id": "…32 hex…",
//!  "app": "lights", "module": {"name": "acp", "version": null, "sha256": "…"},
//!  "enforced": true, "would_deny": null, "identity": null}
//! ```
//!
//! `timings` (microseconds per stage) and `stages` (every plugin's answer) are added only when
//! asked for, with `?explain=true` (the body is the one request shape, so the question is in
//! the query): most callers want the
//! decision, and the explanation made the answer several times longer on every decision
//! (issue #18). Any other query parameter, or another value, is refused (400
//! `invalid-request`) rather than ignored.
//!
//! Errors are JSON with stable codes ([`super::error::ApiError`]).
//!
//! The decision API decides only what its caller may ask (issue 11.8):
//! - every field plugins see is bounded before they run (`[limits]`, 400 `too-long`);
//! - the target is read like the proxy reads a path ([`onem2m::normalise_path`]): encoded
//!   unreserved characters decoded, dot segments, empty segments, `;` parameters and
//!   encoded separators refused (400 `invalid-request`), so `/cse-in/lights/../meters/m1`
//!   is never decided by `lights`;
//! - a named `app` must be the one the target belongs to (400 `target-outside-app`);
//! - claims about the request (`authenticated: true`, `roles`, `request_time`, `source_ip`,
//!   `location`) are believed
//!   only on a listener with `trusted_decide_callers = true`, or from a client certificate
//!   valid for a name in the TLS listener's `trusted_decide_clients`, and refused elsewhere
//!   (403 `untrusted-field`): refused rather than ignored, so that a caller relying on them
//!   learns at once that they do not count, instead of getting a different decision than it
//!   expects. Authenticators establish authentication and roles from a `credential`
//!   everywhere.
//!
//! The answer is sent only once the decision's audit record is written (SER-016); when it
//! cannot be, the request is refused with 503 `audit-unavailable` (see `[audit] on_failure`).

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, StatusCode};
use serde::Serialize;

use super::error::{json_response, ApiError, Response};
use super::onem2m;
use super::originator::{Caller, Claim, PeerCertificate};
use super::server::read_body;
use super::Gateway;
use palisade_core::PluginKind;
use palisade_core::{now_unix, AccessRequest};
use palisade_core::{Effect, Identity, StageReport, Timing, Timings};

/// Checks a decide request, which is [`AccessRequest`] itself with `app` optional (empty:
/// the app that owns `target` decides): the fields only a trusted caller may set, refused
/// from anyone else; then every field plugins see within `[limits]`; then the target in its
/// one decoded form.
fn check(request: &mut AccessRequest, gateway: &Gateway, trusted: bool) -> Result<(), ApiError> {
    if !trusted {
        // `false` and `[]` claim nothing (a serialized AccessRequest carries them).
        let claimed = [
            ("authenticated", request.authenticated),
            ("roles", !request.roles.is_empty()),
            ("request_time", request.request_time.is_some()),
            // Where the request came from and where the device is: `acip` and `aclr`
            // grant on them as directly as `acaf` grants on `authenticated`.
            ("source_ip", request.source_ip.is_some()),
            ("location", request.location.is_some()),
        ];
        if let Some((field, _)) = claimed.into_iter().find(|(_, claimed)| *claimed) {
            return Err(ApiError::UntrustedField(field));
        }
    }
    let limits = &gateway.limits;
    let credential = request
        .credential
        .as_ref()
        .map_or(0, |c| c.scheme.len() + 1 + c.value.len());
    let attributes: usize = request
        .attributes
        .iter()
        .map(|(name, value)| name.len() + value.len() + 2)
        .sum();
    for (field, length, limit, key) in [
        (
            "originator",
            request.originator.len(),
            limits.max_originator_bytes,
            "max_originator_bytes",
        ),
        (
            "target",
            request.target.len(),
            limits.max_path_bytes,
            "max_path_bytes",
        ),
        (
            "credential",
            credential,
            limits.max_authorization_bytes,
            "max_authorization_bytes",
        ),
        (
            "attributes",
            attributes,
            limits.max_query_bytes,
            "max_query_bytes",
        ),
    ] {
        if length > limit {
            gateway.metrics.rejected("too-long");
            return Err(ApiError::TooLong {
                field,
                length,
                limit,
                key,
            });
        }
    }
    if request.attributes.len() > onem2m::MAX_QUERY_PARAMETERS {
        return Err(ApiError::InvalidRequest(format!(
            "attributes: more than {} pairs",
            onem2m::MAX_QUERY_PARAMETERS
        )));
    }
    if request.originator.is_empty() {
        return Err(ApiError::InvalidRequest("originator is empty".into()));
    }
    request.target = onem2m::normalise_path(&request.target)
        .map_err(|error| ApiError::InvalidRequest(format!("target: {}", error.message)))?
        .0;
    Ok(())
}

/// Handles `/v1/decide`. `trusted`: whether the listener (`trusted_decide_callers`) or the
/// caller's client certificate (`trusted_decide_clients`) is trusted.
pub async fn handle(
    gateway: &Arc<Gateway>,
    request: hyper::Request<Incoming>,
    peer: SocketAddr,
    trusted: bool,
) -> Response {
    let _ = peer; // The caller's address: logged by the server, not rate-limited here.
    match decide(gateway, request, trusted).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn decide(
    gateway: &Arc<Gateway>,
    request: hyper::Request<Incoming>,
    trusted: bool,
) -> Result<Response, ApiError> {
    if request.method() != Method::POST {
        return Err(ApiError::MethodNotAllowed("use POST for /v1/decide"));
    }
    // The caller of the decision API is usually the CSE itself, one address for all its
    // originators: only the per-originator limit applies here (SER-001), checked before any
    // plugin runs.
    let (parts, body) = request.into_parts();
    let explain = explain_query(parts.uri.query())?;
    let certificate = parts.extensions.get::<Arc<PeerCertificate>>().cloned();
    let body = read_body(gateway, &parts.headers, body).await?;
    let mut parsed: AccessRequest = serde_json::from_slice(&body).map_err(|error| {
        gateway.metrics.rejected("malformed");
        match error.classify() {
            serde_json::error::Category::Data => ApiError::InvalidRequest(error.to_string()),
            _ => ApiError::MalformedJson(error.to_string()),
        }
    })?;
    check(&mut parsed, gateway, trusted)?;
    // An untrusted caller with a client certificate is limited as that certificate, whatever
    // originators it asks about; a trusted one speaks for many originators, each its own.
    let limited_as = certificate.as_ref().filter(|_| !trusted).map(|c| &c.sha256);
    gateway
        .protection
        .check_client(limited_as, &parsed.originator)
        .map_err(|refusal| {
            gateway.metrics.rate_limited(refusal.key());
            ApiError::RateLimited(refusal)
        })?;
    // The app that decides is the one the proxy would pick for this target; naming another
    // must not let a caller have one app's policy judge another app's resources.
    let owner = gateway.resolve(&parsed.target);
    let route = match Some(&parsed.app).filter(|app| !app.is_empty()) {
        Some(name) => {
            let named = gateway
                .route(name)
                .ok_or_else(|| ApiError::UnknownApp(name.clone()))?;
            if !owner.is_some_and(|owner| Arc::ptr_eq(owner, named)) {
                return Err(ApiError::TargetOutsideApp {
                    app: name.clone(),
                    target: parsed.target.clone(),
                    owner: owner.map(|owner| owner.name.clone()),
                });
            }
            named
        }
        None => owner.ok_or_else(|| ApiError::NoAppForTarget(parsed.target.clone()))?,
    }
    .clone();
    let _permit = gateway.protection.admit().ok_or_else(|| {
        gateway.metrics.rejected("overloaded");
        ApiError::Overloaded
    })?;
    gateway.metrics.in_flight(1);
    let mut access = parsed;
    access.app = route.name.clone();
    // The originator is established before any plugin runs (see `super::originator` for what
    // `tls` means for a decide caller).
    let claim = Claim {
        app: &route.name,
        originator: &access.originator,
        credential: access.credential.as_ref(),
        group_proof: None,
    };
    let caller = Caller::Decide {
        trusted,
        certificate: certificate.as_deref(),
    };
    let mut evaluation = match gateway.originators.check(&claim, caller, now_unix()) {
        Ok(established) => gateway.run_plugins(&route, || {
            let timing = if explain {
                Timing::Stages
            } else {
                Timing::Total
            };
            gateway.evaluate_established(&route, access, "decide", established, timing)
        }),
        Err(refusal) => gateway.refuse(&route, access, "decide", refusal),
    };
    // SER-016: answered only once on record.
    let recorded = gateway.recorded(&mut evaluation).await;
    gateway.metrics.in_flight(-1);
    recorded.map_err(ApiError::AuditUnavailable)?;
    if let Some(refusal) = evaluation.refused.take() {
        return Err(ApiError::Originator(refusal, evaluation.decision_id));
    }
    let decision = &evaluation.decision;
    let answer = DecideAnswer {
        decision: decision.effect,
        reason: &decision.reason,
        decision_id: &evaluation.decision_id,
        app: &decision.app,
        module: decision.decided_by.as_deref().map(|label| ModuleAnswer {
            name: &label.name,
            kind: label.kind,
            version: &label.version,
            sha256: &label.sha256,
        }),
        enforced: decision.enforced,
        would_deny: &decision.would_deny,
        identity: &decision.identity,
        timings: explain.then_some(&decision.timings),
        stages: explain.then_some(&decision.stages[..]),
    };
    Ok(json_response(StatusCode::OK, &answer))
}

/// The answer's JSON, borrowed from the evaluation: serialized straight into the response
/// body, without building a `serde_json::Value` first (it is on every decision's path).
/// Fields in the documented order; absent options are `null`.
#[derive(Serialize)]
struct DecideAnswer<'a> {
    decision: Effect,
    reason: &'a str,
    decision_id: &'a str,
    app: &'a str,
    module: Option<ModuleAnswer<'a>>,
    enforced: bool,
    would_deny: &'a Option<String>,
    identity: &'a Option<Identity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timings: Option<&'a Timings>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stages: Option<&'a [StageReport]>,
}

/// Whether the query asks for the explanation: nothing, `explain=true` or `explain=false`.
/// Anything else (another parameter, another value, `explain` twice) is refused, so that a
/// caller whose parameter does nothing learns it at once.
fn explain_query(query: Option<&str>) -> Result<bool, ApiError> {
    let Some(query) = query.filter(|query| !query.is_empty()) else {
        return Ok(false);
    };
    match query {
        "explain=true" => Ok(true),
        "explain=false" => Ok(false),
        _ => Err(ApiError::InvalidRequest(
            "the only query /v1/decide takes is explain=true or explain=false".into(),
        )),
    }
}

/// The module that settled the decision (its `version` is `null` when unsigned).
#[derive(Serialize)]
struct ModuleAnswer<'a> {
    name: &'a str,
    kind: PluginKind,
    version: &'a Option<String>,
    sha256: &'a str,
}
