//! TLS where Palisade is the client (SER-002/003: confidentiality and integrity on the
//! links it opens; SER-009: mutual authentication): the upstream CSE behind the proxy,
//! `palisade push` to a gateway's admin API, the group-authentication agent calling the
//! server role, the audit shipper and `palisade audit verify --collector` calling the
//! collector, and the CA roots of OCI registries. One builder ([`client_config`], or
//! [`ClientTlsFiles::for_url`] which also checks the scheme) makes the rustls configuration
//! for all of them, one connector ([`Connector`], [`http_client`]) carries `http://` and
//! `https://` for the hyper clients, and [`blocking`] wraps a synchronous socket, so the
//! links cannot drift apart. This crate is below every user: it needs rustls and hyper's
//! client traits, not the gateway, its router or its runtime.
//!
//! The server is verified against the CA file configured for that link only, never a
//! system store: a gateway talks to its own CSE, collector and operators, whose CAs are
//! private, and a public CA that could issue a certificate for the CSE's name must not be
//! trusted by default. An `https://` link without a CA file is refused before anything
//! connects. A client certificate and key are optional; when given, they are presented when
//! the server asks. The one exception is OCI registries (`palisade-oci`), which are public
//! services: without a CA file they use the system roots; with one, its certificates are
//! read by [`parse_certificates`] and are then the only roots.
//!
//! rustls with the `ring` provider, TLS 1.2 and 1.3, its safe defaults (the same as the
//! gateway's and the collector's listeners); ALPN offers `http/1.1`; TCP connects give up
//! after [`DEFAULT_CONNECT_TIMEOUT`] unless the link configures its own.

#![deny(missing_docs)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;

/// How long a TCP connect may take on links that do not configure their own (the upstream
/// CSE does: `upstream.connect_timeout_ms`): a peer that does not answer is a failed call,
/// not a stuck task.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Files that configure one client link.
#[derive(Clone, Debug, Default)]
pub struct ClientTlsFiles {
    /// PEM CA certificates the server's certificate must chain to (required for https).
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain presented to the server (leaf first), with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file` (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
}

impl ClientTlsFiles {
    /// The files of one link: the CA file, and the client certificate and its key.
    pub fn new(
        ca_file: Option<PathBuf>,
        cert_file: Option<PathBuf>,
        key_file: Option<PathBuf>,
    ) -> ClientTlsFiles {
        ClientTlsFiles {
            ca_file,
            cert_file,
            key_file,
        }
    }

    /// Whether no file is given.
    pub fn is_empty(&self) -> bool {
        self.ca_file.is_none() && self.cert_file.is_none() && self.key_file.is_none()
    }

    /// The configuration for a link to `uri`: [`client_config`] for `https://`, `None` for
    /// `http://`. Files given for an `http://` link are refused rather than ignored (an
    /// operator who names a CA expects it to be checked), as is any other scheme.
    pub fn for_url(&self, uri: &Uri) -> Result<Option<Arc<rustls::ClientConfig>>, ClientTlsError> {
        if is_https(uri)? {
            client_config(self).map(Some)
        } else if self.is_empty() {
            Ok(None)
        } else {
            Err(ClientTlsError::FilesForPlainLink)
        }
    }
}

/// Why a client TLS configuration cannot be built. Each names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientTlsError {
    /// `https://` without a CA file.
    #[error(
        "an https:// link needs a CA file to verify the server (no system CA store is trusted)"
    )]
    NoCa,
    /// A client certificate without its key, or the other way round.
    #[error("a client certificate needs its key file too (and a key its certificate)")]
    HalfIdentity,
    /// TLS files for an `http://` link.
    #[error("TLS files (CA, client certificate, key) apply to an https:// link only; this one is plain http://")]
    FilesForPlainLink,
    /// A URL that is neither `http://` nor `https://`.
    #[error("{uri}: use an http:// or https:// URL, not {scheme}")]
    Scheme {
        /// The URL.
        uri: String,
        /// Its scheme, or a note that it has none.
        scheme: String,
    },
    /// A PEM file that cannot be read or parsed.
    #[error("cannot read PEM certificates from {}: {source}", path.display())]
    Certificates {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: rustls::pki_types::pem::Error,
    },
    /// A certificate file without a certificate.
    #[error("{} holds no PEM certificate", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// A key file without a usable private key.
    #[error("no PEM private key in {}: {source}", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: rustls::pki_types::pem::Error,
    },
    /// A CA certificate rustls cannot use as a root.
    #[error("{} is not a usable CA certificate: {source}", path.display())]
    Ca {
        /// The file.
        path: PathBuf,
        /// What rustls said.
        source: rustls::Error,
    },
    /// A client key that does not belong to the client certificate.
    #[error("the client key does not fit the client certificate")]
    Identity(#[source] rustls::Error),
    /// rustls refused the configuration itself.
    #[error("TLS setup failed")]
    Setup(#[source] rustls::Error),
}

/// The certificates of a PEM text, in order; other PEM blocks (keys) are skipped.
pub fn parse_certificates(
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, rustls::pki_types::pem::Error> {
    CertificateDer::pem_slice_iter(pem).collect()
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, ClientTlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|source| ClientTlsError::Certificates {
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(ClientTlsError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The rustls client configuration for one link: servers verified against `files.ca_file`
/// only, `files.cert_file`/`key_file` presented when given. ALPN offers HTTP/1.1 (every
/// client here speaks it).
pub fn client_config(files: &ClientTlsFiles) -> Result<Arc<rustls::ClientConfig>, ClientTlsError> {
    let ca_file = files.ca_file.as_deref().ok_or(ClientTlsError::NoCa)?;
    // The identity is checked for completeness before any file is read, so that a missing
    // key is reported as such and not as whatever the CA file holds.
    let identity = match (&files.cert_file, &files.key_file) {
        (None, None) => None,
        (Some(cert_file), Some(key_file)) => Some((cert_file, key_file)),
        _ => return Err(ClientTlsError::HalfIdentity),
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(ca_file)? {
        roots.add(cert).map_err(|source| ClientTlsError::Ca {
            path: ca_file.to_path_buf(),
            source,
        })?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(ClientTlsError::Setup)?
        .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert_file, key_file)) => {
            let chain = certificates(cert_file)?;
            let key =
                PrivateKeyDer::from_pem_file(key_file).map_err(|source| ClientTlsError::Key {
                    path: key_file.clone(),
                    source,
                })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(ClientTlsError::Identity)?
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Whether `uri` is `https`; `http` is false; any other scheme is an error naming it.
pub fn is_https(uri: &Uri) -> Result<bool, ClientTlsError> {
    match uri.scheme_str() {
        Some("https") => Ok(true),
        Some("http") => Ok(false),
        other => Err(ClientTlsError::Scheme {
            uri: uri.to_string(),
            scheme: other.unwrap_or("a URL without a scheme").to_owned(),
        }),
    }
}

/// Why a connection through [`Connector`] or [`blocking`] failed, with its cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL cannot be reached by this connector.
    #[error(transparent)]
    Url(#[from] ClientTlsError),
    /// An `https://` URL on a connector made without a TLS configuration: refused rather
    /// than sent in plain text.
    #[error("an https:// link without a TLS configuration")]
    NoTls,
    /// The host is not a valid TLS server name.
    #[error("{host:?} is not a valid TLS server name")]
    ServerName {
        /// The host.
        host: String,
        /// Why.
        #[source]
        source: rustls::pki_types::InvalidDnsNameError,
    },
    /// The TCP connect failed or timed out.
    #[error("connect failed")]
    Tcp(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The TLS handshake failed (an untrusted server certificate, a refused or missing
    /// client certificate, no common protocol version).
    #[error("TLS handshake failed")]
    Handshake(#[source] std::io::Error),
    /// rustls refused to start a connection.
    #[error("TLS connection refused by rustls")]
    Tls(#[source] rustls::Error),
}

/// `host` of a URI authority without the brackets of an IPv6 literal, as a TLS name.
fn server_name(host: &str) -> Result<ServerName<'static>, ConnectError> {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    ServerName::try_from(host.clone()).map_err(|source| ConnectError::ServerName { host, source })
}

/// A hyper connector for `http://` and `https://` URIs: TCP with a connect timeout, then,
/// for `https`, a TLS handshake with the link's configuration. An `https` URI without one
/// fails (it never falls back to plain text).
#[derive(Clone)]
pub struct Connector {
    http: HttpConnector,
    tls: Option<tokio_rustls::TlsConnector>,
}

impl Connector {
    /// A connector whose TCP connects give up after `connect_timeout`.
    pub fn new(connect_timeout: Duration, tls: Option<Arc<rustls::ClientConfig>>) -> Connector {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        // The scheme is checked here, not by the HTTP connector.
        http.enforce_http(false);
        Connector {
            http,
            tls: tls.map(tokio_rustls::TlsConnector::from),
        }
    }
}

/// A pooled hyper client over a [`Connector`] (`tls` from [`client_config`]; `None` for
/// plain `http://` only). Links with their own pool settings build a `Client` around a
/// [`Connector`] themselves.
pub fn http_client<B>(
    connect_timeout: Duration,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Client<Connector, B>
where
    B: hyper::body::Body + Send,
    B::Data: Send,
{
    Client::builder(TokioExecutor::new()).build(Connector::new(connect_timeout, tls))
}

impl tower_service::Service<Uri> for Connector {
    type Response = Stream;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Stream, ConnectError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        self.http
            .poll_ready(cx)
            .map_err(|e| ConnectError::Tcp(e.into()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let https = is_https(&uri);
        let host = uri.host().unwrap_or("").to_owned();
        let tls = self.tls.clone();
        let connecting = self.http.call(uri);
        Box::pin(async move {
            let tls = match (https?, tls) {
                (false, _) => None,
                (true, Some(tls)) => Some(tls),
                (true, None) => return Err(ConnectError::NoTls),
            };
            let tcp = connecting.await.map_err(|e| ConnectError::Tcp(e.into()))?;
            match tls {
                None => Ok(Stream::Plain(tcp)),
                Some(tls) => {
                    let name = server_name(&host)?;
                    let stream = tls
                        .connect(name, tcp.into_inner())
                        .await
                        .map_err(ConnectError::Handshake)?;
                    Ok(Stream::Tls(Box::new(TokioIo::new(stream))))
                }
            }
        })
    }
}

/// A connection made by [`Connector`].
pub enum Stream {
    /// `http://`.
    Plain(TokioIo<TcpStream>),
    /// `https://`, after the handshake.
    Tls(Box<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>>),
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        match self {
            Stream::Plain(tcp) => tcp.connected(),
            Stream::Tls(tls) => tls.inner().get_ref().0.connected(),
        }
    }
}

impl hyper::rt::Read for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A blocking TLS connection over `tcp` to `host` (for `palisade push`, which is
/// synchronous). The handshake is completed here, so that an untrusted server or a refused
/// client certificate is reported as such and not as a failed write later.
pub fn blocking(
    config: Arc<rustls::ClientConfig>,
    host: &str,
    mut tcp: std::net::TcpStream,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>, ConnectError> {
    let mut connection =
        rustls::ClientConnection::new(config, server_name(host)?).map_err(ConnectError::Tls)?;
    while connection.is_handshaking() {
        connection
            .complete_io(&mut tcp)
            .map_err(ConnectError::Handshake)?;
    }
    Ok(rustls::StreamOwned::new(connection, tcp))
}
