//! Both sides of a client link (`palisade-tls`, the one client TLS builder) through real TLS
//! on loopback: a rustls server made from the test PKI answers one HTTP/1.1 request per
//! connection, and the clients every link uses (the pooled hyper client and the blocking
//! stream of `palisade push`) call it.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Uri;
use palisade_test_support::pki::Pki;
use palisade_tls::*;
use rustls::pki_types::PrivateKeyDer;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Certificates on disk for one test: the server's CA, a second CA the server does not
/// chain to, and the client CA the server may require.
struct Files {
    dir: tempfile::TempDir,
    server_ca: Pki,
    client_ca: Pki,
}

impl Files {
    fn new() -> Files {
        Files {
            dir: tempfile::tempdir().unwrap(),
            server_ca: Pki::new("server CA"),
            client_ca: Pki::new("client CA"),
        }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The client's files: trusting `ca`, with a certificate from `identity` when given.
    fn client(&self, ca: &Pki, identity: Option<&Pki>) -> ClientTlsFiles {
        let ca_file = self.write("ca.pem", &ca.ca.pem());
        let (cert_file, key_file) = match identity {
            None => (None, None),
            Some(issuer) => {
                let (cert, key) = issuer.leaf(&["device-7"], true);
                (
                    Some(self.write("client.pem", &cert.pem())),
                    Some(self.write("client.key", &key.serialize_pem())),
                )
            }
        };
        ClientTlsFiles::new(Some(ca_file), cert_file, key_file)
    }

    /// A loopback server with a certificate from the server CA, requiring a client
    /// certificate from the client CA when `require_client`. Returns its port.
    async fn server(&self, require_client: bool) -> u16 {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (cert, key) = self.server_ca.leaf(&["localhost", "127.0.0.1"], false);
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if require_client {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(self.client_ca.ca.der().clone()).unwrap();
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let config = builder
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            // Bounded: no test makes more than a few connections.
            for _ in 0..8 {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
                        if tls.read(&mut byte).await.unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let _ = tls
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                        )
                        .await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        port
    }
}

/// GET `https://localhost:PORT/` through the pooled client; the body or the error chain.
async fn get(port: u16, files: &ClientTlsFiles) -> Result<String, String> {
    let uri: Uri = format!("https://localhost:{port}/").parse().unwrap();
    let tls = files.for_url(&uri).map_err(|e| e.to_string())?;
    let client = http_client::<Empty<Bytes>>(DEFAULT_CONNECT_TIMEOUT, tls);
    let request = hyper::Request::get(uri).body(Empty::new()).unwrap();
    match client.request(request).await {
        Ok(answer) => {
            assert_eq!(answer.status(), 200);
            let body = answer.into_body().collect().await.unwrap().to_bytes();
            Ok(String::from_utf8_lossy(&body).into_owned())
        }
        Err(error) => {
            let mut chain = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                chain.push_str(": ");
                chain.push_str(&cause.to_string());
                source = cause.source();
            }
            Err(chain)
        }
    }
}

/// The same request over the blocking stream (`palisade push`).
fn get_blocking(port: u16, files: &ClientTlsFiles) -> Result<String, String> {
    let config = client_config(files).map_err(|e| palisade_types::Chain(&e).to_string())?;
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut stream =
        blocking(config, "127.0.0.1", tcp).map_err(|e| palisade_types::Chain(&e).to_string())?;
    let attempt = stream
        .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .and_then(|()| {
            let mut answer = String::new();
            stream.read_to_string(&mut answer).map(|_| answer)
        });
    match attempt {
        Ok(answer) if answer.starts_with("HTTP/1.1 200") => {
            Ok(answer.rsplit("\r\n").next().unwrap().to_owned())
        }
        Ok(answer) => Err(format!("answer: {answer:?}")),
        Err(error) => Err(error.to_string()),
    }
}

#[tokio::test]
async fn a_server_from_the_configured_ca_is_trusted() {
    let files = Files::new();
    let port = files.server(false).await;
    let client = files.client(&files.server_ca, None);
    assert_eq!(get(port, &client).await.unwrap(), "ok");
    let blocking = tokio::task::spawn_blocking(move || get_blocking(port, &client));
    assert_eq!(blocking.await.unwrap().unwrap(), "ok");
}

#[tokio::test]
async fn a_server_from_another_ca_is_refused_at_the_handshake() {
    let files = Files::new();
    let port = files.server(false).await;
    // The client trusts the client CA only: the server's certificate does not chain to it.
    let client = files.client(&files.client_ca, None);
    let error = get(port, &client).await.unwrap_err();
    assert!(error.contains("TLS handshake"), "{error}");
    assert!(error.contains("UnknownIssuer"), "{error}");
    let blocking = tokio::task::spawn_blocking(move || get_blocking(port, &client));
    let error = blocking.await.unwrap().unwrap_err();
    assert!(error.contains("UnknownIssuer"), "{error}");
}

#[tokio::test]
async fn a_required_client_certificate_is_presented() {
    let files = Files::new();
    let port = files.server(true).await;
    let client = files.client(&files.server_ca, Some(&files.client_ca));
    assert_eq!(get(port, &client).await.unwrap(), "ok");
    let blocking = tokio::task::spawn_blocking(move || get_blocking(port, &client));
    assert_eq!(blocking.await.unwrap().unwrap(), "ok");
}

#[tokio::test]
async fn without_the_required_client_certificate_there_is_no_answer() {
    let files = Files::new();
    let port = files.server(true).await;
    let anonymous = files.client(&files.server_ca, None);
    // With TLS 1.3 the client finishes its side first; the server's refusal arrives as an
    // alert instead of the answer. Either way no answer is read.
    let error = get(port, &anonymous).await.unwrap_err();
    assert!(error.contains("CertificateRequired"), "{error}");
    let stranger = files.client(&files.server_ca, Some(&files.server_ca));
    let error = get(port, &stranger).await.unwrap_err();
    assert!(!error.is_empty());
    let blocking = tokio::task::spawn_blocking(move || get_blocking(port, &anonymous));
    let error = blocking.await.unwrap().unwrap_err();
    assert!(error.contains("CertificateRequired"), "{error}");
}

#[test]
fn links_are_checked_before_anything_connects() {
    let files = Files::new();
    let https: Uri = "https://localhost:1/".parse().unwrap();
    let http: Uri = "http://localhost:1/".parse().unwrap();
    assert!(matches!(
        ClientTlsFiles::default().for_url(&https),
        Err(ClientTlsError::NoCa)
    ));
    assert!(ClientTlsFiles::default().for_url(&http).unwrap().is_none());
    let trusted = files.client(&files.server_ca, None);
    assert!(matches!(
        trusted.for_url(&http),
        Err(ClientTlsError::FilesForPlainLink)
    ));
    assert!(trusted.for_url(&https).unwrap().is_some());
    let ftp: Uri = "ftp://localhost:1/".parse().unwrap();
    assert!(matches!(
        trusted.for_url(&ftp),
        Err(ClientTlsError::Scheme { .. })
    ));
    let mut half = files.client(&files.server_ca, Some(&files.client_ca));
    half.key_file = None;
    assert!(matches!(
        client_config(&half),
        Err(ClientTlsError::HalfIdentity)
    ));
    let empty = ClientTlsFiles::new(Some(files.write("empty.pem", "")), None, None);
    assert!(matches!(
        client_config(&empty),
        Err(ClientTlsError::Empty { .. })
    ));
    let mut wrong_key = files.client(&files.server_ca, Some(&files.client_ca));
    let (_, other) = files.client_ca.leaf(&["other"], true);
    wrong_key.key_file = Some(files.write("other.key", &other.serialize_pem()));
    assert!(matches!(
        client_config(&wrong_key),
        Err(ClientTlsError::Identity(_))
    ));
    let config = client_config(&trusted).unwrap();
    assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    let pem = format!("{}{}", files.server_ca.ca.pem(), files.client_ca.ca.pem());
    assert_eq!(parse_certificates(pem.as_bytes()).unwrap().len(), 2);
}
