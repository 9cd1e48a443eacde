//! TLS where Palisade is the client (SER-002/003: confidentiality and integrity on the
//! links it opens; SER-009: mutual authentication): the upstream CSE behind the proxy,
//! `palisade push` to a gateway's admin API, and the group-authentication agent calling the
//! server role. One builder ([`client_config`]) makes the rustls configuration for all
//! three, and one connector ([`Connector`]) carries `http://` and `https://` for the two
//! hyper clients, so the three cannot drift apart.
//!
//! The server is verified against the CA file configured for that link only, never a
//! system store: a gateway talks to its own CSE and operators, whose CAs are private, and a
//! public CA that could issue a certificate for the CSE's name must not be trusted by
//! default. An `https://` link without a CA file is refused at start. A client certificate
//! and key are optional; when given, they are presented when the server asks.
//!
//! rustls with the `ring` provider, TLS 1.2 and 1.3, its safe defaults (the same as the
//! listeners, [`crate::tls`]).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;

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

/// Why a client TLS configuration cannot be built. Each names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientTlsError {
    /// An `https://` link without a CA file.
    #[error(
        "an https:// link needs a CA file to verify the server (no system CA store is trusted)"
    )]
    NoCa,
    /// A client certificate without its key, or a key without its certificate.
    #[error("a client certificate needs its key file too (and a key its certificate)")]
    HalfIdentity,
    /// A certificate file cannot be read as PEM.
    #[error("cannot read PEM certificates from {}", path.display())]
    Certificates {
        /// The file.
        path: PathBuf,
        /// Why.
        source: rustls::pki_types::pem::Error,
    },
    /// A certificate file holds no certificate.
    #[error("{} holds no PEM certificate", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no usable private key.
    #[error("no PEM private key in {}", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// Why.
        source: rustls::pki_types::pem::Error,
    },
    /// A CA file's certificate cannot be a trust anchor.
    #[error("{} is not a usable CA certificate", path.display())]
    Ca {
        /// The file.
        path: PathBuf,
        /// Why.
        source: rustls::Error,
    },
    /// The client key and certificate do not belong together.
    #[error("the client key does not fit the client certificate")]
    Identity(#[source] rustls::Error),
    /// rustls refused the configuration.
    #[error("TLS setup failed")]
    Setup(#[source] rustls::Error),
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
    let mut config = match (&files.cert_file, &files.key_file) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert_file), Some(key_file)) => {
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
        _ => return Err(ClientTlsError::HalfIdentity),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Whether `uri` is `https`; `http` is false; any other scheme is an error naming it.
pub fn is_https(uri: &Uri) -> Result<bool, String> {
    match uri.scheme_str() {
        Some("https") => Ok(true),
        Some("http") => Ok(false),
        other => Err(format!(
            "{uri}: use an http:// or https:// URL, not {}",
            other.unwrap_or("a URL without a scheme")
        )),
    }
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

/// Errors of a [`Connector`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<Uri> for Connector {
    type Response = Stream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Stream, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let https = is_https(&uri);
        let host = uri
            .host()
            .unwrap_or("")
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let tls = self.tls.clone();
        let connecting = self.http.call(uri);
        Box::pin(async move {
            let https = https?;
            let tls = match (https, tls) {
                (false, _) => None,
                (true, Some(tls)) => Some(tls),
                (true, None) => {
                    return Err("an https:// link without a TLS configuration".into());
                }
            };
            let tcp = connecting.await?;
            match tls {
                None => Ok(Stream::Plain(tcp)),
                Some(tls) => {
                    let name = ServerName::try_from(host)?;
                    let stream = tls.connect(name, tcp.into_inner()).await?;
                    Ok(Stream::Tls(Box::new(TokioIo::new(stream))))
                }
            }
        })
    }
}

/// A connection made by [`Connector`].
pub enum Stream {
    Plain(TokioIo<TcpStream>),
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
/// synchronous).
pub fn blocking(
    config: Arc<rustls::ClientConfig>,
    host: &str,
    tcp: std::net::TcpStream,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>, BoxError> {
    let name = ServerName::try_from(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
    )?;
    let connection = rustls::ClientConnection::new(config, name)?;
    Ok(rustls::StreamOwned::new(connection, tcp))
}
