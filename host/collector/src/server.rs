//! The collector service: HTTPS with required client certificates (SER-009), each client
//! identified by its certificate's first DNS name (its common name without one).
//!
//! | request | who | answer |
//! |---|---|---|
//! | `POST /v1/batches` (body: log lines, `\n`-terminated) | a configured gateway | `IngestOutcome` |
//! | `GET /v1/head` | a configured gateway | its own `GatewayHead` (`null` before its first batch) |
//! | `GET /v1/entries?gateway=&app=&originator=&decision=&kind=&from_ms=&to_ms=&after=&limit=` | a query client | `QueryPage` |
//! | `GET /v1/gateways` | a query client | every `GatewayHead` |
//! | `GET /v1/gateways/{id}/chain?from_seq=&limit=` | a query client | the stored lines, as on the gateway's disk |
//!
//! Errors are the gateway's JSON error shape `{"error":{"code":..,"message":..}}`. A gateway
//! can only add to and read the head of its own log; only `query_clients` can read.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Extension, Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use hyper_util::service::TowerToHyperService;
use palisade_gateway::{serve_connections, Accepted, ConnectionLimits};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{CollectorConfig, GatewayKey};
use crate::store::{IngestError, Query, QueryError, Store, StoreError};

/// Why the collector cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// A TLS file cannot be read or used.
    #[error("{file}: {message}")]
    Tls {
        /// The file.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// The listener cannot be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The database is unusable.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Who is on the other end of a connection.
#[derive(Clone, Debug)]
enum Peer {
    Gateway(Arc<GatewayKey>),
    QueryClient(String),
    Unknown(String),
}

struct App {
    store: Store,
    max_batch_bytes: usize,
    max_batch_entries: usize,
    max_query_rows: usize,
}

/// How long a client has for the TLS handshake and for each request's headers.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client has to send a batch body (at the maximum size, 64 MiB, that is over
/// 1 MiB/s).
const BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long requests in progress may take to finish on shutdown: a batch that has started
/// arriving may finish ([`BODY_TIMEOUT`]).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(70);
/// The longest a stored chain page is (`/chain`).
const MAX_CHAIN_PAGE: usize = 10_000;

fn tls_error(file: &std::path::Path, message: impl std::fmt::Display) -> ServeError {
    ServeError::Tls {
        file: file.display().to_string(),
        message: message.to_string(),
    }
}

fn certs(file: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, ServeError> {
    let certs = CertificateDer::pem_file_iter(file)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| tls_error(file, format!("cannot read PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(tls_error(file, "holds no PEM certificate"));
    }
    Ok(certs)
}

/// The TLS acceptor: TLS 1.2/1.3 with rustls' safe defaults, a client certificate issued by
/// `client_ca_file` required before any request is read.
pub fn acceptor(config: &CollectorConfig) -> Result<tokio_rustls::TlsAcceptor, ServeError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs(&config.client_ca_file)? {
        roots
            .add(cert)
            .map_err(|e| tls_error(&config.client_ca_file, e))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| tls_error(&config.client_ca_file, e))?;
    let key = PrivateKeyDer::from_pem_file(&config.key_file)
        .map_err(|e| tls_error(&config.key_file, format!("no PEM private key: {e}")))?;
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(&config.cert_file, e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(&config.cert_file)?, key)
        .map_err(|e| {
            tls_error(
                &config.key_file,
                format!("the key does not fit the certificate: {e}"),
            )
        })?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(server)))
}

/// The id a verified client certificate names: its first DNS name, else its common name.
pub fn certificate_id(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(dns) = name {
                return Some((*dns).to_owned());
            }
        }
    }
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned);
    cn
}

/// A running collector.
pub struct Collector {
    /// The address it listens on (the configured one, with the port when 0 was asked).
    pub addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Collector {
    /// Stops accepting, lets requests in progress finish, and returns.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// Runs the collector until SIGINT or SIGTERM (`palisade collector`): prints the bound
/// address (`collector listening on ADDR`, which supervisors and tests read), then stops
/// accepting and lets requests in progress finish.
pub async fn run(config: &CollectorConfig) -> Result<(), ServeError> {
    use tokio::signal::unix::{signal, SignalKind};
    let collector = start(config).await?;
    println!("collector listening on {}", collector.addr);
    let mut term = signal(SignalKind::terminate()).map_err(|source| ServeError::Bind {
        addr: collector.addr,
        source,
    })?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    collector.stop().await;
    Ok(())
}

/// Connects to the database (applying migrations), binds, and serves in the background.
pub async fn start(config: &CollectorConfig) -> Result<Collector, ServeError> {
    let acceptor = acceptor(config)?;
    let store = Store::connect(&config.database_url, config.pool_size).await?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: config.listen,
        source,
    })?;
    let app = Arc::new(App {
        store,
        max_batch_bytes: config.max_batch_bytes,
        max_batch_entries: config.max_batch_entries,
        max_query_rows: config.max_query_rows,
    });
    let gateways: Arc<HashMap<String, Arc<GatewayKey>>> = Arc::new(
        config
            .gateways
            .iter()
            .map(|g| (g.id.clone(), Arc::new(g.clone())))
            .collect(),
    );
    let query_clients: Arc<Vec<String>> = Arc::new(config.query_clients.clone());
    let router = Router::new()
        .route("/v1/batches", post(post_batch))
        .route("/v1/head", get(get_head))
        .route("/v1/entries", get(get_entries))
        .route("/v1/gateways", get(get_gateways))
        .route("/v1/gateways/{id}/chain", get(get_chain))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not-found", "nothing is served here") })
        .with_state(app);
    let (shutdown, mut stop) = watch::channel(false);
    // Each connection is served by the router with who is on the other end, from the
    // certificate the TLS acceptor verified.
    let make_service = move |connection: Accepted<'_>| {
        let id = connection
            .certificates
            .and_then(|c| c.first())
            .and_then(|c| certificate_id(c.as_ref()))
            .unwrap_or_default();
        let peer = match gateways.get(&id) {
            Some(g) => Peer::Gateway(g.clone()),
            None if query_clients.contains(&id) => Peer::QueryClient(id),
            None => Peer::Unknown(id),
        };
        TowerToHyperService::new(router.clone().layer(Extension(peer)))
    };
    // The gateway's server stack (SER-001): a connection beyond `max_connections` is closed
    // at once; the per-address cap is the global one, since the collector's clients are
    // known gateways that may share an address (a NAT, one test host).
    let mut limits = ConnectionLimits::default();
    limits.max_connections = config.max_connections;
    limits.max_connections_per_address = config.max_connections;
    limits.header_read_timeout = HANDSHAKE_TIMEOUT;
    limits.shutdown_grace = SHUTDOWN_GRACE;
    let task = tokio::spawn(serve_connections(
        vec![(listener, Some(acceptor))],
        limits,
        make_service,
        Arc::new(|reason| tracing::info!(reason, "collector connection refused")),
        async move {
            let _ = stop.changed().await;
        },
    ));
    Ok(Collector {
        addr,
        shutdown,
        task,
    })
}

fn error(status: StatusCode, code: &str, message: impl std::fmt::Display) -> Response {
    json(
        status,
        &json!({"error": {"code": code, "message": message.to_string()}}),
    )
}

fn json<T: serde::Serialize + ?Sized>(status: StatusCode, body: &T) -> Response {
    palisade_gateway::json_response(status, body).map(Body::new)
}

fn forbidden(peer: &Peer, what: &str) -> Response {
    let who = match peer {
        Peer::Gateway(g) => format!("gateway {:?}", g.id),
        Peer::QueryClient(c) | Peer::Unknown(c) => format!("client {c:?}"),
    };
    error(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!("{who} may not {what}"),
    )
}

async fn post_batch(
    State(app): State<Arc<App>>,
    Extension(peer): Extension<Peer>,
    body: Body,
) -> Response {
    let Peer::Gateway(gateway) = &peer else {
        return forbidden(&peer, "ship audit batches (not a configured gateway)");
    };
    let bytes = match tokio::time::timeout(
        BODY_TIMEOUT,
        axum::body::to_bytes(body, app.max_batch_bytes),
    )
    .await
    {
        Err(_) => {
            return error(
                StatusCode::REQUEST_TIMEOUT,
                "body-timeout",
                "the batch did not arrive in time",
            )
        }
        Ok(Err(_)) => {
            let limit = app.max_batch_bytes;
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                format!("the batch exceeds {limit} bytes"),
            );
        }
        Ok(Ok(bytes)) => bytes,
    };
    match app
        .store
        .ingest(gateway, &bytes, app.max_batch_entries)
        .await
    {
        Ok(outcome) => json(StatusCode::OK, &outcome),
        Err(e) => ingest_error(&e),
    }
}

fn ingest_error(e: &IngestError) -> Response {
    let (status, code) = match e {
        IngestError::Empty | IngestError::Malformed { .. } => {
            (StatusCode::BAD_REQUEST, "malformed-batch")
        }
        IngestError::TooManyEntries { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too-many-entries"),
        IngestError::OutOfOrder { expected, .. } => {
            let body = json!({"error": {"code": "out-of-order", "message": palisade_types::Chain(e).to_string(), "next_seq": expected}});
            return json(StatusCode::CONFLICT, &body);
        }
        IngestError::Conflict { .. } => (StatusCode::CONFLICT, "fork"),
        IngestError::Chain(_) => (StatusCode::UNPROCESSABLE_ENTITY, "chain-broken"),
        IngestError::Store(_) => {
            tracing::error!("{}", palisade_types::Chain(e));
            (StatusCode::SERVICE_UNAVAILABLE, "storage")
        }
    };
    if status != StatusCode::SERVICE_UNAVAILABLE {
        tracing::warn!("batch refused: {}", palisade_types::Chain(e));
    }
    error(status, code, palisade_types::Chain(e))
}

fn store_error(e: &StoreError) -> Response {
    tracing::error!("{}", palisade_types::Chain(e));
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "storage",
        palisade_types::Chain(e),
    )
}

async fn get_head(State(app): State<Arc<App>>, Extension(peer): Extension<Peer>) -> Response {
    let Peer::Gateway(gateway) = &peer else {
        return forbidden(&peer, "read a gateway head here (use /v1/gateways)");
    };
    match app.store.head(&gateway.id).await {
        Ok(head) => json(StatusCode::OK, &head),
        Err(e) => store_error(&e),
    }
}

async fn get_entries(
    State(app): State<Arc<App>>,
    Extension(peer): Extension<Peer>,
    uri: Uri,
) -> Response {
    if !matches!(peer, Peer::QueryClient(_)) {
        return forbidden(&peer, "query entries");
    }
    let query = match axum::extract::Query::<Query>::try_from_uri(&uri) {
        Ok(q) => q.0,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid-request", e.body_text()),
    };
    match app.store.query(&query, app.max_query_rows).await {
        Ok(page) => json(StatusCode::OK, &page),
        Err(QueryError::Invalid(m)) => error(StatusCode::BAD_REQUEST, "invalid-request", m),
        Err(QueryError::Store(e)) => store_error(&e),
    }
}

async fn get_gateways(State(app): State<Arc<App>>, Extension(peer): Extension<Peer>) -> Response {
    if !matches!(peer, Peer::QueryClient(_)) {
        return forbidden(&peer, "list gateways");
    }
    match app.store.heads().await {
        Ok(heads) => json(StatusCode::OK, &heads),
        Err(e) => store_error(&e),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ChainParams {
    #[serde(default)]
    from_seq: u64,
    limit: Option<usize>,
}

async fn get_chain(
    State(app): State<Arc<App>>,
    Extension(peer): Extension<Peer>,
    Path(id): Path<String>,
    uri: Uri,
) -> Response {
    if !matches!(peer, Peer::QueryClient(_)) {
        return forbidden(&peer, "read stored chains");
    }
    let params = match axum::extract::Query::<ChainParams>::try_from_uri(&uri) {
        Ok(q) => q.0,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid-request", e.body_text()),
    };
    let limit = params
        .limit
        .unwrap_or(MAX_CHAIN_PAGE)
        .clamp(1, MAX_CHAIN_PAGE);
    match app.store.chain(&id, params.from_seq, limit).await {
        Ok(lines) => {
            let mut body = String::new();
            for (_, line) in lines {
                body.push_str(&line);
                body.push('\n');
            }
            let mut response = Response::new(Body::from(body));
            response.headers_mut().insert(
                axum::http::header::CONTENT_TYPE,
                "application/x-ndjson".parse().expect("valid"),
            );
            response
        }
        Err(e) => store_error(&e),
    }
}
