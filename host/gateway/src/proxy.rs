//! The enforcement proxy: oneM2M HTTP requests ([`super::onem2m`]) are decided by their
//! application's plugins; a permitted one goes to the upstream CSE and its answer comes back
//! through the application's filters (SER-026); a denied one is answered by the gateway with
//! `X-M2M-RSC: 4103`. Deny answers carry the decision id, not the reason: reasons name policy
//! details an attacker should not learn; operators find them in the audit trail.
//!
//! An unreachable or silent CSE is answered with `X-M2M-RSC: 5103` (target not reachable,
//! HTTP 404 by TS-0009's table, [`super::status`]) within the configured timeouts: never a
//! hang (SER-007). Decisions do not
//! depend on the CSE, so `/v1/decide` keeps working while it is away.
//!
//! With `[upstream.lookup]`, what a proxied decision needs from the CSE itself (a CREATE's
//! target type, the app's `cse_groups`) is asked first, as the gateway ([`super::cse_lookup`]);
//! a successful DELETE or UPDATE then drops what it may have made stale.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use hyper::{StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::config::{GatewayConfig, UpstreamConfig};
use super::cse_lookup::{self, CseGroups, CseView};
use super::error::{ApiError, Response};
use super::group_proof::ProofClaim;
use super::onem2m::{self, gateway_answer, rsc, Echo, X_M2M_RSC};
use super::originator::{Caller, Claim, PeerCertificate, Refusal};
use super::server::read_body;
use super::Gateway;
use palisade_core::{now_unix, AccessRequest, ResponseBody, Timing};
use palisade_core::{FilteredResponse, Runtime};

/// The header naming the decision behind a proxied answer (for audit look-ups).
pub const DECISION_ID_HEADER: &str = "x-palisade-decision-id";

/// Headers of the CSE's answer that belong to one connection and are not passed back
/// (RFC 9110 §7.6.1), plus those the proxy recomputes. (Requests need no such list: what
/// the CSE receives is rebuilt from an allow-list, [`onem2m::BindingRequest`].)
const HOP_BY_HOP: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

/// The upstream CSE and the client that reaches it (plain or TLS, [`crate::client_config`]).
pub struct Upstream {
    /// The CSE's base URL.
    pub url: String,
    /// Whether the link to the CSE is TLS (`https://`); `/health` reports it.
    pub encrypted: bool,
    base: Uri,
    client: Client<crate::tls_client::Connector, Full<Bytes>>,
    timeout: Duration,
    max_response_bytes: usize,
    /// The gateway's own look-ups (`[upstream.lookup]`), when configured.
    view: Option<Arc<CseView>>,
    /// Each app's `cse_groups`, by app name.
    groups: HashMap<String, Arc<CseGroups>>,
}

impl Upstream {
    /// Checks an upstream URL: `http://host:port[/prefix]` or `https://...`.
    pub fn check_url(url: &str) -> Result<(), String> {
        let uri: Uri = url
            .parse()
            .map_err(|error| format!("{url:?} is not a URL: {error}"))?;
        crate::tls_client::is_https(&uri).map_err(|error| error.to_string())?;
        if uri.authority().is_none() {
            return Err(format!("{url:?}: use an http(s)://host:port URL"));
        }
        if uri.query().is_some() {
            return Err(format!("{url:?}: no query allowed in the upstream URL"));
        }
        Ok(())
    }

    /// The client for a checked configuration; `tls` from
    /// [`super::config::GatewayConfig::upstream_tls`] (None: plain `http://`).
    pub fn new(config: &UpstreamConfig, tls: Option<Arc<rustls::ClientConfig>>) -> Upstream {
        let encrypted = tls.is_some();
        let connector = crate::tls_client::Connector::new(
            Duration::from_millis(config.connect_timeout_ms),
            tls,
        );
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        let url = config.url.get_ref().trim_end_matches('/').to_string();
        if !encrypted {
            tracing::warn!(upstream = %url, "the link to the upstream CSE is plain http://: requests, answers and credentials cross it unencrypted (configure https:// with upstream.ca_file)");
        }
        Upstream {
            encrypted,
            base: url.parse().expect("checked by the config"),
            url,
            client,
            timeout: Duration::from_millis(config.timeout_ms),
            max_response_bytes: config.max_response_bytes,
            view: config
                .lookup
                .as_ref()
                .map(|lookup| Arc::new(CseView::new(lookup))),
            groups: HashMap::new(),
        }
    }

    /// Gives each app with `cse_groups` its view of them, read by its plugins' `groups`
    /// capability beside the app's own directory.
    pub fn attach_groups(&mut self, config: &GatewayConfig, runtime: &Runtime) {
        let Some(view) = &self.view else { return };
        for app in config.apps.iter().filter(|app| !app.cse_groups.is_empty()) {
            let ids: Vec<String> = app
                .cse_groups
                .iter()
                .map(|id| id.get_ref().clone())
                .collect();
            let groups = Arc::new(CseGroups::new(view, &ids));
            if let Some(installed) = runtime.app(app.name.get_ref()) {
                installed
                    .sandbox()
                    .environment()
                    .groups
                    .attach(groups.clone());
            }
            self.groups.insert(app.name.get_ref().clone(), groups);
        }
    }

    /// The look-ups, when `[upstream.lookup]` is configured.
    pub fn view(&self) -> Option<&CseView> {
        self.view.as_deref()
    }

    /// `app`'s `cse_groups`, if it has any.
    pub fn groups(&self, app: &str) -> Option<&CseGroups> {
        self.groups.get(app).map(Arc::as_ref)
    }

    /// A GET of the gateway's own ([`super::cse_lookup`]) through the same client as
    /// forwarded requests: `path_and_query` under the upstream URL, the answer's body cut at
    /// `max_bytes`. The caller bounds the time.
    pub(crate) async fn lookup(
        &self,
        path_and_query: &str,
        headers: HeaderMap,
        max_bytes: usize,
    ) -> Result<(StatusCode, HeaderMap, Bytes), cse_lookup::LookupError> {
        use cse_lookup::LookupError;
        let mut request = hyper::Request::new(Full::new(Bytes::new()));
        *request.uri_mut() = self
            .target(path_and_query)
            .map_err(|_| LookupError::BadId(path_and_query.to_string()))?;
        *request.headers_mut() = headers;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|error| LookupError::Unreachable(error.to_string()))?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, max_bytes)
            .collect()
            .await
            .map_err(|error| {
                if error.is::<http_body_util::LengthLimitError>() {
                    LookupError::TooLarge(max_bytes)
                } else {
                    LookupError::Unreachable(error.to_string())
                }
            })?
            .to_bytes();
        Ok((parts.status, parts.headers, body))
    }

    fn target(&self, path_and_query: &str) -> Result<Uri, String> {
        let prefix = self.base.path().trim_end_matches('/');
        Uri::builder()
            .scheme(self.base.scheme_str().unwrap_or("http"))
            .authority(self.base.authority().expect("checked").clone())
            .path_and_query(format!("{prefix}{path_and_query}"))
            .build()
            .map_err(|error| error.to_string())
    }
}

/// Handles a request for the proxy.
pub async fn handle(
    gateway: &Arc<Gateway>,
    request: hyper::Request<Incoming>,
    peer: SocketAddr,
) -> Response {
    let echo = Echo::from_headers(request.headers(), &gateway.limits);
    let refused = |error: ApiError, rsc: u32| {
        let mut response = gateway_answer(rsc, &error.to_string(), &echo);
        if let Some(seconds) = error.retry_after() {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    };
    // SER-001: the cheap checks first.
    if let Err(refusal) = gateway.protection.check_ip(peer.ip()) {
        gateway.metrics.rate_limited(refusal.key());
        return refused(ApiError::RateLimited(refusal), rsc::INTERNAL_SERVER_ERROR);
    }
    let binding = match onem2m::parse(
        request.method(),
        request.uri(),
        request.headers(),
        &gateway.limits,
    ) {
        Ok(binding) => binding,
        Err(error) => {
            let reason = if error.too_long {
                "too-long"
            } else {
                "malformed"
            };
            gateway.metrics.rejected(reason);
            return gateway_answer(error.rsc, &error.message, &echo);
        }
    };
    // Keyed on the verified client certificate where there is one.
    let certificate = request.extensions().get::<Arc<PeerCertificate>>().cloned();
    if let Err(refusal) = gateway
        .protection
        .check_client(certificate.as_ref().map(|c| &c.sha256), &binding.originator)
    {
        gateway.metrics.rate_limited(refusal.key());
        return refused(ApiError::RateLimited(refusal), rsc::INTERNAL_SERVER_ERROR);
    }
    // Default deny (SER-008): a path no application covers is not forwarded.
    let Some(route) = gateway.resolve(&binding.target).cloned() else {
        return gateway_answer(
            rsc::ORIGINATOR_HAS_NO_PRIVILEGE,
            "access denied: no application covers this target",
            &echo,
        );
    };
    // Issue 13.6: an AE registration passes only in the forms its app allows; the plugins
    // then decide it like any create.
    if super::registration::is_registration(&binding) {
        if let Err(refusal) = route.registration.check(&binding.originator) {
            gateway.metrics.rejected("registration");
            tracing::info!(app = %route.name, %refusal, "AE registration refused");
            return gateway_answer(
                rsc::ORIGINATOR_HAS_NO_PRIVILEGE,
                &refusal.to_string(),
                &echo,
            );
        }
    }
    let (parts, body) = request.into_parts();
    let body = match read_body(gateway, &parts.headers, body).await {
        Ok(body) => body,
        Err(error) => {
            let code = match error {
                ApiError::BodyTimeout { .. } => rsc::REQUEST_TIMEOUT,
                _ => rsc::BAD_REQUEST,
            };
            return refused(error, code);
        }
    };
    let Some(_permit) = gateway.protection.admit() else {
        gateway.metrics.rejected("overloaded");
        return refused(ApiError::Overloaded, rsc::INTERNAL_SERVER_ERROR);
    };
    gateway.metrics.in_flight(1);
    let response = enforce(
        gateway,
        &route,
        binding,
        parts,
        body,
        peer,
        certificate.as_deref(),
        &echo,
    )
    .await;
    gateway.metrics.in_flight(-1);
    response
}

#[allow(clippy::too_many_arguments)]
async fn enforce(
    gateway: &Arc<Gateway>,
    route: &Arc<super::AppRoute>,
    binding: onem2m::BindingRequest,
    parts: hyper::http::request::Parts,
    body: Bytes,
    peer: SocketAddr,
    certificate: Option<&PeerCertificate>,
    echo: &Echo,
) -> Response {
    let mut access = AccessRequest::new(
        route.name.clone(),
        binding.originator.clone(),
        binding.operation,
        binding.target.clone(),
    );
    access.resource_type = binding.resource_type;
    access.credential = binding.credential.clone();
    access.attributes = binding.attributes.clone();
    access.source_ip = Some(peer.ip().to_string());
    // The provisioned position of the originator (issue 13.7): `aclr` can match on the proxy.
    // Unknown stays unknown (an `aclr` context is then unmet); only plugins granted
    // `location` see it (SER-026, enforced by the runtime's view).
    access.location = gateway.positions.location(&route.name, &binding.originator);
    // The originator is established before any plugin runs (4106 otherwise), and before the
    // gateway asks the CSE anything for this request: an unauthenticated client cannot make
    // the gateway query the CSE.
    // A group request proof (#16.6) covers the request as the device sent it: the method,
    // the request-target, the request id and the body; never forwarded (the CSE receives an
    // allow-list of headers).
    let proofs: Vec<&[u8]> = parts
        .headers
        .get_all(palisade_group::request_proof::PROOF_HEADER)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    let target = parts
        .uri
        .path_and_query()
        .map_or(parts.uri.path(), |p| p.as_str());
    let group_proof = (!proofs.is_empty()).then(|| ProofClaim {
        headers: &proofs,
        method: parts.method.as_str(),
        target,
        request_id: &binding.request_id,
        body_digest: palisade_group::ProofRequest::body_digest(&body),
    });
    let claim = Claim {
        app: &route.name,
        originator: &binding.originator,
        credential: binding.credential.as_ref(),
        group_proof,
    };
    let established = gateway
        .originators
        .check(&claim, Caller::Proxy(certificate), now_unix());
    let mut prepared = cse_lookup::Prepared::default();
    let mut evaluation = match established {
        Ok(established) => {
            // What the decision needs from the CSE itself (the target's type, the app's CSE
            // groups), asked as the gateway, bounded in time; unknown stays unknown.
            if let Some(upstream) = &gateway.upstream {
                prepared = cse_lookup::prepare(
                    upstream,
                    &gateway.metrics,
                    route,
                    &mut access,
                    &binding.path,
                )
                .await;
            }
            gateway.run_plugins(route, || {
                gateway.evaluate_established(route, access, "proxy", established, Timing::Total)
            })
        }
        Err(refusal) => gateway.refuse(route, access, "proxy", refusal),
    };
    if let Some(error) = &prepared.type_unknown {
        tracing::warn!(app = %route.name, decision_id = %evaluation.decision_id, target = %binding.target, %error, "the target's resource type is unknown to this decision: the CSE look-up failed");
    }
    for (group, error) in &prepared.groups_unknown {
        tracing::warn!(app = %route.name, decision_id = %evaluation.decision_id, %group, %error, "the CSE group's members are unknown to this decision: the look-up failed");
    }
    let decision_id = HeaderValue::from_str(&evaluation.decision_id).expect("hex");
    let with_id = |mut response: Response| {
        response
            .headers_mut()
            .insert(DECISION_ID_HEADER, decision_id.clone());
        response
    };
    // SER-016: nothing is forwarded or answered before its record is written. Refused with
    // RSC 5000 (INTERNAL_SERVER_ERROR, TS-0004 §6.6: the receiver failed to handle the
    // request for a reason of its own; TS-0004 has no "service unavailable" code, and 5103
    // would wrongly blame the CSE), so HTTP 500 by TS-0009's table, with `Retry-After`.
    if let Err(refusal) = gateway.recorded(&mut evaluation).await {
        let error = ApiError::AuditUnavailable(refusal);
        let mut response = gateway_answer(rsc::INTERNAL_SERVER_ERROR, &error.to_string(), echo);
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(1u64));
        return with_id(response);
    }
    if let Some(refusal) = &evaluation.refused {
        return with_id(originator_refused(refusal, &evaluation.decision_id, echo));
    }
    if !evaluation.decision.is_permit() {
        return with_id(gateway_answer(
            rsc::ORIGINATOR_HAS_NO_PRIVILEGE,
            &format!(
                "access denied by application {} (decision {})",
                route.name, evaluation.decision_id
            ),
            echo,
        ));
    }
    let Some(upstream) = &gateway.upstream else {
        return with_id(gateway_answer(
            rsc::TARGET_NOT_REACHABLE,
            "no upstream CSE is configured",
            echo,
        ));
    };
    let (status, mut headers, body) = match forward(gateway, upstream, &binding, parts, body).await
    {
        Ok(answer) => {
            if answer.0.is_success() {
                if let Some(view) = upstream.view() {
                    view.after(binding.operation, &binding.path);
                }
            }
            answer
        }
        Err((code, message)) => return with_id(gateway_answer(code, &message, echo)),
    };
    let body = if route.has_filters {
        let rsc_value = headers
            .get(X_M2M_RSC)
            .and_then(|value| value.to_str().ok()?.parse().ok())
            .unwrap_or(if status.is_success() {
                rsc::OK
            } else {
                rsc::INTERNAL_SERVER_ERROR
            });
        let response = ResponseBody {
            status: rsc_value,
            content_type: headers
                .get(CONTENT_TYPE)
                .and_then(|value| value.to_str().ok())
                .unwrap_or("")
                .to_string(),
            body: body.to_vec(),
        };
        let view = &evaluation.view;
        match gateway.run_plugins(route, || gateway.runtime.filter_response(view, response)) {
            FilteredResponse::Deliver { body, .. } => Bytes::from(body),
            FilteredResponse::Blocked { reason, stages } => {
                gateway.metrics.filter_blocked(&route.name);
                for stage in stages.iter().filter(|stage| stage.failure.is_some()) {
                    route.placement.demote();
                    gateway.metrics.plugin_failure(
                        &route.name,
                        &stage.plugin.name,
                        stage.failure.unwrap_or("unknown"),
                    );
                }
                tracing::info!(app = %route.name, decision_id = %evaluation.decision_id, %reason, "response withheld by a filter");
                return with_id(gateway_answer(
                    rsc::ORIGINATOR_HAS_NO_PRIVILEGE,
                    &format!(
                        "response withheld by application {} (decision {})",
                        route.name, evaluation.decision_id
                    ),
                    echo,
                ));
            }
        }
    } else {
        body
    };
    let mut response = hyper::Response::new(Full::new(body));
    *response.status_mut() = status;
    strip_hop_by_hop(&mut headers);
    headers.remove(hyper::header::CONTENT_LENGTH);
    *response.headers_mut() = headers;
    echo.apply(response.headers_mut());
    with_id(response)
}

/// The answer to a request whose originator was not established: 4106 (HTTP 403), or 5000
/// (HTTP 500 by TS-0009's table, with `Retry-After`) when the token replay check could not
/// take its token. Like a deny, it names the decision, not the reason (the audit has it).
fn originator_refused(refusal: &Refusal, decision_id: &str, echo: &Echo) -> Response {
    match refusal {
        Refusal::NotAuthenticated { .. } => gateway_answer(
            rsc::ORIGINATOR_NOT_AUTHENTICATED,
            &format!("originator not authenticated (decision {decision_id})"),
            echo,
        ),
        Refusal::ReplayUnavailable(_) => {
            let mut response = gateway_answer(
                rsc::INTERNAL_SERVER_ERROR,
                &format!("the token replay check is unavailable (decision {decision_id})"),
                echo,
            );
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(1u64));
            response
        }
    }
}

/// One exchange with the CSE, bounded in time and size. The request is rebuilt from what
/// was decided (issue 11.7): the method, the canonical path and query, the decided
/// originator and `ty`, and the allow-listed headers; nothing else the client sent.
async fn forward(
    gateway: &Gateway,
    upstream: &Upstream,
    binding: &onem2m::BindingRequest,
    parts: hyper::http::request::Parts,
    body: Bytes,
) -> Result<(StatusCode, HeaderMap, Bytes), (u32, String)> {
    let uri = upstream
        .target(&binding.path_and_query())
        .map_err(|error| (rsc::BAD_REQUEST, error))?;
    let mut outgoing = hyper::Request::new(Full::new(body));
    *outgoing.method_mut() = parts.method;
    *outgoing.uri_mut() = uri;
    *outgoing.headers_mut() = binding.forwarded_headers();
    let started = Instant::now();
    let exchange = async {
        let response = upstream.client.request(outgoing).await.map_err(|error| {
            let kind = if error.is_connect() {
                "connect"
            } else {
                "exchange"
            };
            (kind, error.to_string())
        })?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, upstream.max_response_bytes)
            .collect()
            .await
            .map_err(|error| ("body", error.to_string()))?
            .to_bytes();
        Ok::<_, (&'static str, String)>((parts.status, parts.headers, body))
    };
    match tokio::time::timeout(upstream.timeout, exchange).await {
        Ok(Ok(answer)) => {
            gateway.metrics.upstream("ok", started.elapsed());
            Ok(answer)
        }
        Ok(Err((kind, error))) => {
            gateway.metrics.upstream("unreachable", started.elapsed());
            tracing::warn!(upstream = %upstream.url, kind, %error, "upstream CSE exchange failed");
            Err((
                rsc::TARGET_NOT_REACHABLE,
                format!("target not reachable: the upstream CSE failed ({kind})"),
            ))
        }
        Err(_) => {
            gateway.metrics.upstream("timeout", started.elapsed());
            Err((
                rsc::TARGET_NOT_REACHABLE,
                format!(
                    "target not reachable: the upstream CSE did not answer within {} ms",
                    upstream.timeout.as_millis()
                ),
            ))
        }
    }
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers named in `Connection` are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(hyper::header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}
