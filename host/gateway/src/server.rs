//! Listeners and connections: the one HTTP server stack of Palisade ([`serve_connections`];
//! the gateway's listeners through [`serve`], axum routers such as the group-authentication
//! server and agent through [`serve_router`], and the collector). Connections are driven by
//! hand, not by a framework's `serve`, because the protections against slow and greedy
//! clients (SER-001) live at this level:
//!
//! - at most `max_connections` open connections, and at most `max_connections_per_address`
//!   from one client address; beyond either a new one is closed at once (and counted), so
//!   one address cannot take the slots everyone else needs;
//! - `header_read_timeout_ms` for each request's headers (slow-loris, idle keep-alive),
//!   and a 16 KiB header buffer (431 beyond);
//! - `body_read_timeout_ms` and `max_body_bytes` for bodies ([`read_body`]);
//! - graceful shutdown: on SIGTERM or Ctrl-C the listeners close, in-flight requests finish
//!   (up to `shutdown_grace_ms`), idle connections are closed.

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, CONTENT_LENGTH};
use hyper::{Method, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use super::config::Service;
use super::error::{json_response, text_response, ApiError, Response};
use super::originator::PeerCertificate;
use super::protect::ConnectionTable;
use super::{decide, noop, proxy, Gateway};

/// Largest request head (request line and headers) a client may send.
const MAX_HEAD_BYTES: usize = 16 << 10;

/// A bound socket and what it serves.
pub struct Listener {
    /// The bound socket.
    pub socket: TcpListener,
    /// What it serves.
    pub services: HashSet<Service>,
    /// TLS (and client certificates) on this listener, if configured.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// `/v1/decide` here believes its callers' `authenticated`, `roles` and `request_time`
    /// (the listener's `trusted_decide_callers`, issue 11.8).
    pub trusted_decide_callers: bool,
    /// Or believes them from the holders of verified client certificates valid for one of
    /// these names (`trusted_decide_clients`).
    pub trusted_decide_clients: Vec<ServerName<'static>>,
}

/// What one listener offers, shared by its connections.
struct Offer {
    services: HashSet<Service>,
    trusted_decide_callers: bool,
    trusted_decide_clients: Vec<ServerName<'static>>,
}

impl Offer {
    fn contains(&self, service: &Service) -> bool {
        self.services.contains(service)
    }

    /// The offer for a TLS connection: trusted when its verified client certificate is
    /// valid for one of the trusted names (checked like a server certificate's name).
    fn for_client(self: &Arc<Offer>, certificates: Option<&[CertificateDer<'_>]>) -> Arc<Offer> {
        if self.trusted_decide_callers || self.trusted_decide_clients.is_empty() {
            return self.clone();
        }
        let Some(leaf) = certificates.and_then(|chain| chain.first()) else {
            return self.clone();
        };
        let Ok(leaf) = webpki::EndEntityCert::try_from(leaf) else {
            return self.clone();
        };
        let trusted = self
            .trusted_decide_clients
            .iter()
            .any(|name| leaf.verify_is_valid_for_subject_name(name).is_ok());
        if !trusted {
            return self.clone();
        }
        Arc::new(Offer {
            services: self.services.clone(),
            trusted_decide_callers: true,
            trusted_decide_clients: Vec::new(),
        })
    }
}

impl Listener {
    /// The address it is bound to.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }
}

/// The connection-level protections of every HTTP listener Palisade runs (SER-001): the
/// gateway's listeners, the group-authentication server and agent, and the collector all go
/// through [`serve_connections`] with these.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ConnectionLimits {
    /// Open connections; beyond it a new one is closed at once.
    pub max_connections: usize,
    /// Open connections from one client address; beyond it that address's new ones are
    /// closed at once.
    pub max_connections_per_address: usize,
    /// Time for the TLS handshake and for each request's headers.
    pub header_read_timeout: Duration,
    /// On shutdown, how long in-flight requests may take to finish.
    pub shutdown_grace: Duration,
}

impl ConnectionLimits {
    /// The connection limits of a gateway configuration's `[limits]`.
    pub fn new(limits: &super::config::ServerLimits) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: limits.max_connections,
            max_connections_per_address: limits.max_connections_per_address,
            header_read_timeout: Duration::from_millis(limits.header_read_timeout_ms),
            shutdown_grace: Duration::from_millis(limits.shutdown_grace_ms),
        }
    }
}

impl Default for ConnectionLimits {
    /// The gateway's defaults: those of the configuration's `[limits]` table.
    fn default() -> ConnectionLimits {
        ConnectionLimits::new(&super::config::ServerLimits::default())
    }
}

/// An accepted connection, as the service factory of [`serve_connections`] sees it.
#[non_exhaustive]
pub struct Accepted<'a> {
    /// The index of its listener in the list given to [`serve_connections`].
    pub listener: usize,
    /// The client's address.
    pub peer: SocketAddr,
    /// The client's certificate chain, verified by the listener's TLS acceptor (none on a
    /// plain listener or when the client presented none).
    pub certificates: Option<&'a [CertificateDer<'static>]>,
}

/// Counts a refused connection by reason (`connections`, `connections-per-address`,
/// `tls-handshake`).
pub type OnRejected = Arc<dyn Fn(&'static str) + Send + Sync>;

/// Serves `listeners` (each a socket and its TLS acceptor, if any) until `shutdown`
/// resolves, then drains in-flight requests for up to `limits.shutdown_grace`. Each
/// accepted connection gets its service from `make_service`; the limits of
/// [`ConnectionLimits`] and the 16 KiB request head apply to all of them, before the
/// service sees a request.
pub async fn serve_connections<M, S, B>(
    listeners: Vec<(TcpListener, Option<tokio_rustls::TlsAcceptor>)>,
    limits: ConnectionLimits,
    make_service: M,
    rejected: OnRejected,
    shutdown: impl std::future::Future<Output = ()>,
) where
    M: Fn(Accepted<'_>) -> S + Send + Sync + 'static,
    S: hyper::service::Service<hyper::Request<Incoming>, Response = hyper::Response<B>>
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let graceful = Arc::new(GracefulShutdown::new());
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let per_address = ConnectionTable::new(limits.max_connections_per_address);
    let make_service = Arc::new(make_service);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut accept_loops = Vec::new();
    for (index, (socket, tls)) in listeners.into_iter().enumerate() {
        accept_loops.push(tokio::spawn(accept_loop(
            Socket {
                index,
                socket,
                tls,
                header_timeout: limits.header_read_timeout,
            },
            make_service.clone(),
            rejected.clone(),
            connections.clone(),
            per_address.clone(),
            graceful.clone(),
            stop_rx.clone(),
        )));
    }
    shutdown.await;
    tracing::info!("shutting down: closing listeners, finishing in-flight requests");
    let _ = stop_tx.send(true);
    for accept in accept_loops {
        let _ = accept.await;
    }
    let grace = limits.shutdown_grace;
    // The accept loops held the other references and have ended.
    let Ok(graceful) = Arc::try_unwrap(graceful) else {
        tracing::warn!("connections could not be drained");
        return;
    };
    match tokio::time::timeout(grace, graceful.shutdown()).await {
        Ok(()) => tracing::info!("all connections closed"),
        Err(_) => tracing::warn!(
            grace_ms = grace.as_millis() as u64,
            "connections still open after the grace period; closing them"
        ),
    }
}

/// Serves an axum `router` on `listeners` through [`serve_connections`], with the same
/// limits as the gateway's own listeners. Each request carries its client's address as
/// `axum::extract::ConnectInfo<SocketAddr>` (the group agent limits work per address).
pub async fn serve_router(
    listeners: Vec<(TcpListener, Option<tokio_rustls::TlsAcceptor>)>,
    limits: ConnectionLimits,
    router: axum::Router,
    rejected: OnRejected,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let make_service = move |connection: Accepted<'_>| {
        let peer = axum::extract::ConnectInfo(connection.peer);
        hyper_util::service::TowerToHyperService::new(router.clone().layer(axum::Extension(peer)))
    };
    serve_connections(listeners, limits, make_service, rejected, shutdown).await
}

/// Serves `listeners` until `shutdown` resolves, then drains in-flight requests for up to
/// the configured grace period ([`serve_connections`] with the gateway's limits and
/// routes).
pub async fn serve(
    gateway: Arc<Gateway>,
    listeners: Vec<Listener>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut offers = Vec::new();
    let mut sockets = Vec::new();
    for listener in listeners {
        offers.push(Arc::new(Offer {
            services: listener.services,
            trusted_decide_callers: listener.trusted_decide_callers,
            trusted_decide_clients: listener.trusted_decide_clients,
        }));
        sockets.push((listener.socket, listener.tls));
    }
    let limits = ConnectionLimits::new(&gateway.limits);
    let rejected: OnRejected = {
        let gateway = gateway.clone();
        Arc::new(move |reason| gateway.metrics.rejected(reason))
    };
    let make_service = move |connection: Accepted<'_>| {
        let services = offers[connection.listener].for_client(connection.certificates);
        let certificate = client_certificate(connection.certificates, connection.peer);
        let peer = connection.peer;
        let gateway = gateway.clone();
        hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            let gateway = gateway.clone();
            let services = services.clone();
            if let Some(certificate) = &certificate {
                request.extensions_mut().insert(certificate.clone());
            }
            async move { Ok::<_, Infallible>(route(&gateway, &services, request, peer).await) }
        })
    };
    serve_connections(sockets, limits, make_service, rejected, shutdown).await
}

/// One listening socket of [`serve_connections`].
struct Socket {
    index: usize,
    socket: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    header_timeout: Duration,
}

#[allow(clippy::too_many_arguments)]
async fn accept_loop<M, S, B>(
    listener: Socket,
    make_service: Arc<M>,
    rejected: OnRejected,
    connections: Arc<Semaphore>,
    per_address: Arc<ConnectionTable>,
    graceful: Arc<GracefulShutdown>,
    mut stop: watch::Receiver<bool>,
) where
    M: Fn(Accepted<'_>) -> S + Send + Sync + 'static,
    S: hyper::service::Service<hyper::Request<Incoming>, Response = hyper::Response<B>>
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let header_timeout = listener.header_timeout;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.socket.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            rejected("connections");
            drop(stream);
            continue;
        };
        // Counted only once it holds a global slot: the table never outgrows
        // `max_connections`.
        let Some(address_slot) = per_address.open(peer.ip()) else {
            rejected("connections-per-address");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let make_service = make_service.clone();
        let rejected = rejected.clone();
        let index = listener.index;
        // A watcher per connection, so that connection tasks do not keep the shutdown
        // handle itself alive.
        let graceful = graceful.watcher();
        let tls = listener.tls.clone();
        tokio::spawn(async move {
            match tls {
                None => {
                    let service = make_service(Accepted {
                        listener: index,
                        peer,
                        certificates: None,
                    });
                    run_connection(stream, peer, header_timeout, service, graceful).await
                }
                Some(acceptor) => {
                    // The handshake gets the header timeout too: a client that stalls it is
                    // a slow-loris like any other (SER-001).
                    match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let service = make_service(Accepted {
                                listener: index,
                                peer,
                                certificates: stream.get_ref().1.peer_certificates(),
                            });
                            run_connection(stream, peer, header_timeout, service, graceful).await
                        }
                        Ok(Err(error)) => {
                            rejected("tls-handshake");
                            tracing::info!(%peer, %error, "TLS handshake refused");
                        }
                        Err(_) => rejected("tls-handshake"),
                    }
                }
            }
            drop(address_slot);
            drop(permit);
        });
    }
}

/// The verified client certificate of a TLS connection, read once for all its requests
/// (authenticated originators, [`super::originator`]). The handshake verified it against the
/// listener's `client_ca_file`; one x509-parser cannot read is treated as absent.
fn client_certificate(
    certificates: Option<&[CertificateDer<'_>]>,
    peer: SocketAddr,
) -> Option<Arc<PeerCertificate>> {
    let leaf = certificates?.first()?;
    match PeerCertificate::from_der(leaf) {
        Ok(certificate) => Some(Arc::new(certificate)),
        Err(error) => {
            tracing::warn!(%peer, %error, "verified client certificate not readable: treated as none");
            None
        }
    }
}

/// Serves one connection (plain or TLS) with `service` until it ends or shutdown closes it.
async fn run_connection<I, S, B>(
    io: I,
    peer: SocketAddr,
    header_timeout: Duration,
    service: S,
    graceful: hyper_util::server::graceful::Watcher,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<hyper::Request<Incoming>, Response = hyper::Response<B>>
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    let connection = graceful.watch(builder.serve_connection(TokioIo::new(io), service));
    if let Err(error) = connection.await {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}

/// Routes one request by path to the services this listener offers.
async fn route(
    gateway: &Arc<Gateway>,
    services: &Offer,
    request: hyper::Request<Incoming>,
    peer: SocketAddr,
) -> Response {
    let path = request.uri().path().to_string();
    let method = request.method().clone();
    let (name, response) = match path.as_str() {
        "/v1/decide" if services.contains(&Service::Decide) => {
            let trusted = services.trusted_decide_callers;
            (
                "decide",
                decide::handle(gateway, request, peer, trusted).await,
            )
        }
        "/v1/noop" if services.contains(&Service::Decide) && gateway.noop_endpoint => {
            ("noop", noop::handle(gateway, request).await)
        }
        "/metrics" if services.contains(&Service::Metrics) => {
            ("metrics", metrics(gateway, &method))
        }
        "/health" if services.contains(&Service::Health) => ("health", health(gateway, &method)),
        p if p.starts_with("/admin/v1/")
            && services.contains(&Service::Admin)
            && gateway.admin.is_some() =>
        {
            ("admin", super::admin::handle(gateway, request).await)
        }
        _ if services.contains(&Service::Proxy) => {
            ("proxy", proxy::handle(gateway, request, peer).await)
        }
        _ => ("other", ApiError::NotFound(path.clone()).into_response()),
    };
    gateway.metrics.http(name, response.status().as_u16());
    tracing::debug!(%peer, %method, %path, status = response.status().as_u16(), "request");
    response
}

fn metrics(gateway: &Gateway, method: &Method) -> Response {
    if method != Method::GET {
        return ApiError::MethodNotAllowed("use GET for /metrics").into_response();
    }
    let mut text = gateway.metrics.render(&gateway.runtime.status());
    text.push_str(&gateway.protection.metrics_text());
    text.push_str(&gateway.originators.metrics_text());
    if let Some(admin) = &gateway.admin {
        text.push_str(&admin.metrics_text());
    }
    text.push_str(&gateway.audit.metrics_text());
    text_response(StatusCode::OK, "text/plain; version=0.0.4", text)
}

/// Each application's plugins and their state (quarantine, failures).
fn health(gateway: &Gateway, method: &Method) -> Response {
    if method != Method::GET {
        return ApiError::MethodNotAllowed("use GET for /health").into_response();
    }
    let status = gateway.runtime.status();
    // By name: matching each route against every app's status was quadratic, seconds of a
    // 10,000-app gateway's first `/health` (issue #18).
    let by_name: std::collections::HashMap<&str, &palisade_core::AppStatus> =
        status.iter().map(|app| (app.app.as_str(), app)).collect();
    let mut degraded = false;
    let apps: Vec<serde_json::Value> = gateway
        .routes
        .iter()
        .map(|route| {
            let mut plugins = Vec::new();
            let main = by_name.get(route.name.as_str()).copied();
            let authn = route
                .authn_app
                .as_deref()
                .and_then(|name| by_name.get(name).copied());
            for app in main.into_iter().chain(authn) {
                for plugin in &app.plugins {
                    degraded |= plugin.health.quarantined;
                    plugins.push(serde_json::to_value(plugin).unwrap_or_default());
                }
            }
            let isolation = main.map(|app| app.isolation);
            serde_json::json!({
                "app": route.name,
                "paths": route.paths,
                "mode": route.mode,
                "isolation": isolation,
                "consent_real_identities": route.consent_real_identities,
                // How the app's originators are established (`claimed`: as sent).
                "originators": gateway.originators.mode(&route.name).name(),
                "plugins": plugins,
                // SER-022 switched off by the operator for these (allow_unsigned).
                "unsigned_plugins": route.unsigned_plugins,
            })
        })
        .collect();
    // SER-013: a registry module taken out of service degrades the gateway.
    degraded |= gateway
        .admin
        .as_ref()
        .is_some_and(|admin| admin.has_failures());
    // SER-016: a gateway that cannot record its decisions refuses them: not ok, 503.
    let audit = gateway.audit.health();
    let audit_down = audit.as_ref().is_some_and(|health| !health.ok);
    let body = serde_json::json!({
        "status": if audit_down { "audit-unavailable" } else if degraded { "degraded" } else { "ok" },
        "audit": audit,
        "uptime_s": gateway.uptime_secs(),
        "upstream": gateway.upstream.as_ref().map(|upstream| upstream.url.clone()),
        // SER-002/003: whether the CSE link is TLS; plain http:// is shown, not hidden.
        "upstream_encrypted": gateway.upstream.as_ref().map(|upstream| upstream.encrypted),
        "apps": apps,
        "registry": gateway.admin.as_ref().map(|admin| admin.health_json()),
    });
    let status = if audit_down {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    json_response(status, &body)
}

/// Reads a request body within the size and time limits (SER-001). An announced length over
/// the limit is refused before a byte is read.
pub async fn read_body(
    gateway: &Gateway,
    headers: &HeaderMap,
    body: Incoming,
) -> Result<Bytes, ApiError> {
    let limit = gateway.limits.max_body_bytes;
    let announced = headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|length| length > limit as u64) {
        gateway.metrics.rejected("body-too-large");
        return Err(ApiError::BodyTooLarge { limit });
    }
    let ms = gateway.limits.body_read_timeout_ms;
    match tokio::time::timeout(
        Duration::from_millis(ms),
        Limited::new(body, limit).collect(),
    )
    .await
    {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
            gateway.metrics.rejected("body-too-large");
            Err(ApiError::BodyTooLarge { limit })
        }
        Ok(Err(error)) => Err(ApiError::InvalidRequest(format!(
            "the body could not be read: {error}"
        ))),
        Err(_) => {
            gateway.metrics.rejected("body-timeout");
            Err(ApiError::BodyTimeout { ms })
        }
    }
}
