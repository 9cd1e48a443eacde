//! TLS where Palisade is the client (issue 13.8; SER-002/003/009), with certificates made by
//! rcgen: a real `palisade serve` proxying to a real TLS CSE stand-in (verified against the
//! configured CA, a wrong CA refused, the client certificate presented when configured),
//! plain `http://` reported as unencrypted, and `palisade push` to an https admin listener.

use crate::support::pki;
use crate::support::server;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use palisade_registry::{encode_private_key, encode_public_key, generate_key};
use pki::Pki;
use rcgen::KeyPair;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use server::{Gateway, StandInCse};

/// What the TLS CSE saw of one exchange.
#[derive(Clone, Debug)]
struct Seen {
    request_line: String,
    /// The common name of the client certificate presented, if any.
    client: Option<Vec<u8>>,
}

/// A CSE stand-in behind TLS: a real rustls server on 127.0.0.1, one thread per connection,
/// answering every request `200` with `X-M2M-RSC: 2000`. With `clients`, it asks for a client
/// certificate from that CA (and requires one when `require`).
struct TlsCse {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TlsCse {
    fn start(
        cert: &rcgen::Certificate,
        key: &KeyPair,
        clients: Option<&rcgen::Certificate>,
        require: bool,
    ) -> TlsCse {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match clients {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(CertificateDer::from(ca.der().to_vec())).unwrap();
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                );
                let verifier = if require {
                    verifier
                } else {
                    verifier.allow_unauthenticated()
                };
                builder.with_client_cert_verifier(verifier.build().unwrap())
            }
        };
        let config = Arc::new(
            builder
                .with_single_cert(
                    vec![CertificateDer::from(cert.der().to_vec())],
                    PrivateKeyDer::Pkcs8(key.serialize_der().into()),
                )
                .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                // Bounded: stopped by the test, or by itself after 5 minutes.
                let deadline = Instant::now() + Duration::from_secs(300);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    match listener.accept() {
                        Ok((tcp, _)) => {
                            let (config, seen) = (config.clone(), seen.clone());
                            std::thread::spawn(move || serve_one(config, tcp, &seen));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        TlsCse {
            addr,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for TlsCse {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One connection: requests until the client closes (the gateway pools connections).
fn serve_one(config: Arc<rustls::ServerConfig>, tcp: std::net::TcpStream, seen: &Mutex<Vec<Seen>>) {
    tcp.set_nonblocking(false).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let connection = rustls::ServerConnection::new(config).unwrap();
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    for _ in 0..100 {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match tls.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                // Closed, a failed handshake (wrong CA, no certificate) or a timeout.
                _ => return,
            }
            if head.len() > 64 << 10 {
                return;
            }
        }
        let text = String::from_utf8_lossy(&head).into_owned();
        let length = text
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())
                    .flatten()
            })
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        if tls.read_exact(&mut body).is_err() {
            return;
        }
        let client = tls
            .conn
            .peer_certificates()
            .and_then(|certs| certs.first())
            .map(|cert| cert.as_ref().to_vec());
        seen.lock().unwrap().push(Seen {
            request_line: text.lines().next().unwrap_or("").to_string(),
            client,
        });
        let answer = "{\"m2m:cin\":{\"con\":\"tls\"}}";
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-M2M-RSC: 2000\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if tls.write_all(response.as_bytes()).is_err() || tls.flush().is_err() {
            return;
        }
    }
}

const APP: &str = r#"
[[app]]
name = "lights"
paths = ["/cse-in/lights"]
[[app.plugin]]
plugin = "acp"
config = { policies = [ { id = "p", pv = { acr = [ { acor = ["all"], acop = 63 } ] } } ] }
"#;

fn upstream_gateway(url: &str, tls_keys: &str, files: &[(&str, &str)]) -> Gateway {
    let config = format!(
        "[upstream]\nurl = \"{url}\"\ntimeout_ms = 3000\nconnect_timeout_ms = 1000\n{tls_keys}\n{APP}"
    );
    Gateway::start(&config, files)
}

fn retrieve(gateway: &Gateway, ri: &str) -> server::Response {
    gateway.request(
        "GET",
        "/cse-in/lights/lamp",
        &[("X-M2M-Origin", "CAE1"), ("X-M2M-RI", ri)],
        b"",
    )
}

#[test]
fn the_proxy_reaches_an_https_cse_verified_against_its_configured_ca() {
    let pki = Pki::new("CSE CA");
    let (cse_cert, cse_key) = pki.leaf(&["127.0.0.1", "localhost"], false);
    let cse = TlsCse::start(&cse_cert, &cse_key, None, false);
    let gateway = upstream_gateway(
        &cse.url(),
        "ca_file = \"cse-ca.crt\"",
        &[("cse-ca.crt", &pki.ca.pem())],
    );
    let answer = retrieve(&gateway, "tls-1");
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.header("x-m2m-rsc"), Some("2000"));
    assert_eq!(answer.json()["m2m:cin"]["con"], "tls");
    let seen = cse.seen();
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0].request_line.starts_with("GET /cse-in/lights/lamp "),
        "{seen:?}"
    );
    assert!(
        seen[0].client.is_none(),
        "no client certificate was configured"
    );
    // /health says the link is encrypted.
    let health = gateway.request("GET", "/health", &[], b"").json();
    assert_eq!(health["upstream_encrypted"], true, "{health}");
}

#[test]
fn a_cse_certificate_from_another_ca_is_refused_and_nothing_is_sent() {
    let pki = Pki::new("CSE CA");
    let (cse_cert, cse_key) = pki.leaf(&["127.0.0.1"], false);
    let cse = TlsCse::start(&cse_cert, &cse_key, None, false);
    let other = Pki::new("Someone else's CA");
    let gateway = upstream_gateway(
        &cse.url(),
        "ca_file = \"other-ca.crt\"",
        &[("other-ca.crt", &other.ca.pem())],
    );
    let answer = retrieve(&gateway, "tls-2");
    assert_eq!(
        (answer.status, answer.header("x-m2m-rsc")),
        (404, Some("5103")),
        "{}",
        answer.text()
    );
    assert!(
        cse.seen().is_empty(),
        "a request crossed an unverified link"
    );

    // A certificate for another name, from the right CA, is refused too.
    let (wrong_name, wrong_key) = pki.leaf(&["cse.example"], false);
    let misnamed = TlsCse::start(&wrong_name, &wrong_key, None, false);
    let gateway = upstream_gateway(
        &misnamed.url(),
        "ca_file = \"cse-ca.crt\"",
        &[("cse-ca.crt", &pki.ca.pem())],
    );
    let answer = retrieve(&gateway, "tls-3");
    assert_eq!(
        answer.header("x-m2m-rsc"),
        Some("5103"),
        "{}",
        answer.text()
    );
    assert!(misnamed.seen().is_empty());
}

#[test]
fn the_client_certificate_is_presented_when_configured_and_required_without_it() {
    let pki = Pki::new("CSE CA");
    let (cse_cert, cse_key) = pki.leaf(&["127.0.0.1"], false);
    let gateways = Pki::new("Gateways CA");
    let (gateway_cert, gateway_key) = gateways.leaf(&["gateway-1"], true);
    let cse = TlsCse::start(&cse_cert, &cse_key, Some(&gateways.ca), true);
    let with_cert = upstream_gateway(
        &cse.url(),
        "ca_file = \"cse-ca.crt\"\ncert_file = \"gw.crt\"\nkey_file = \"gw.key\"",
        &[
            ("cse-ca.crt", &pki.ca.pem()),
            ("gw.crt", &gateway_cert.pem()),
            ("gw.key", &gateway_key.serialize_pem()),
        ],
    );
    let answer = retrieve(&with_cert, "tls-4");
    assert_eq!(answer.status, 200, "{}", answer.text());
    let seen = cse.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].client.as_deref(), Some(gateway_cert.der().as_ref()));

    // The CSE requires a certificate: a gateway without one never gets a request through.
    let without = upstream_gateway(
        &cse.url(),
        "ca_file = \"cse-ca.crt\"",
        &[("cse-ca.crt", &pki.ca.pem())],
    );
    let answer = retrieve(&without, "tls-5");
    assert_eq!(
        answer.header("x-m2m-rsc"),
        Some("5103"),
        "{}",
        answer.text()
    );
    assert_eq!(cse.seen().len(), 1);
}

#[test]
fn plain_http_upstreams_are_reported_and_tls_settings_are_checked_at_start() {
    let cse = StandInCse::start(|_| server::Answer::json(200, 2000, "{}"));
    let gateway = upstream_gateway(&cse.url(), "", &[]);
    assert_eq!(retrieve(&gateway, "plain").status, 200);
    let health = gateway.request("GET", "/health", &[], b"").json();
    assert_eq!(health["upstream_encrypted"], false, "{health}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !gateway.stderr.lock().unwrap().contains("plain http://") {
        assert!(
            Instant::now() < deadline,
            "no warning about the plain link: {}",
            gateway.stderr.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // Refused at start, naming the key: https without a CA, TLS files for http://, a
    // certificate without its key, a CA file that holds no certificate.
    let pki = Pki::new("CA");
    let (cert, key) = pki.leaf(&["gw"], true);
    for (url, keys, files, expected) in [
        ("https://127.0.0.1:9", "", vec![], "upstream.ca_file"),
        (
            "http://127.0.0.1:9",
            "ca_file = \"ca.crt\"",
            vec![("ca.crt", pki.ca.pem())],
            "upstream.ca_file",
        ),
        (
            "https://127.0.0.1:9",
            "ca_file = \"ca.crt\"\ncert_file = \"gw.crt\"",
            vec![("ca.crt", pki.ca.pem()), ("gw.crt", cert.pem())],
            "upstream.cert_file",
        ),
        (
            "https://127.0.0.1:9",
            "ca_file = \"ca.crt\"",
            vec![("ca.crt", key.serialize_pem())],
            "upstream.ca_file",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in &files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let config = dir.path().join("gateway.toml");
        std::fs::write(
            &config,
            format!("[upstream]\nurl = \"{url}\"\n{keys}\n{APP}"),
        )
        .unwrap();
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_palisade"))
            .args(["serve", "--config"])
            .arg(&config)
            .args(["--listen", "127.0.0.1:0", "--data"])
            .arg(dir.path().join("data"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{url} {keys}: started");
        assert!(stderr.contains(expected), "{url} {keys}: {stderr}");
    }
}

#[test]
fn palisade_push_talks_to_an_https_admin_listener() {
    let pki = Pki::new("Gateway CA");
    let (server_cert, server_key) = pki.leaf(&["127.0.0.1"], false);
    let admin = generate_key();
    let root = generate_key();
    let config = format!(
        r#"
[[listener]]
address = "127.0.0.1:0"
serve = ["admin", "health"]
[listener.tls]
cert_file = "server.crt"
key_file = "server.key"

[admin]
trust_roots = ["root.pub"]
admin_keys = ["admin.pub"]
{APP}"#
    );
    let gateway = Gateway::start_with_listeners(
        &config,
        &[
            ("server.crt", &server_cert.pem()),
            ("server.key", &server_key.serialize_pem()),
            ("ca.crt", &pki.ca.pem()),
            ("other-ca.crt", &Pki::new("Other").ca.pem()),
            ("root.pub", &encode_public_key(&root.verifying_key())),
            ("admin.pub", &encode_public_key(&admin.verifying_key())),
        ],
    );
    let dir = gateway.dir.path();
    let key_path = dir.join("admin.key");
    std::fs::write(&key_path, encode_private_key(&admin)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let addr = https_address(&gateway);
    let push = |url: &str, ca: Option<&str>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_palisade"));
        command
            .arg("push")
            .args(["--gateway", url, "--admin-key"])
            .arg(&key_path);
        if let Some(ca) = ca {
            command.arg("--ca-file").arg(dir.join(ca));
        }
        command.args(["--json", "list"]).output().unwrap()
    };
    let url = format!("https://{addr}");
    let out = push(&url, Some("ca.crt"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(answer["modules"].is_array(), "{answer}");

    // The wrong CA: refused by push, nothing listed.
    let out = push(&url, Some("other-ca.crt"));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("certificate"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // https without a CA file: refused before connecting.
    let out = push(&url, None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("CA file"));
}

/// The printed HTTPS address (bounded wait).
fn https_address(gateway: &Gateway) -> SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = gateway.stdout.lock().unwrap().iter().find_map(|line| {
            line.split("listening on https://")
                .nth(1)
                .map(str::to_string)
        });
        if let Some(rest) = found {
            return rest.split_whitespace().next().unwrap().parse().unwrap();
        }
        assert!(Instant::now() < deadline, "no https listener printed");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The group-authentication agent's client (`palisade group agent --server https://...`)
/// uses the same TLS builder: it reaches a TLS server verified against its CA, presents its
/// client certificate, and sends nothing to a server from another CA.
#[test]
fn the_group_agent_client_speaks_tls_with_the_same_builder() {
    use palisade_gateway::{client_config, ClientTlsFiles};
    use palisade_gateway::{GroupHttpError as HttpError, ServerClient};
    use palisade_group::Mode;

    let pki = Pki::new("Group server CA");
    let (server_cert, server_key) = pki.leaf(&["127.0.0.1"], false);
    let gateways = Pki::new("Gateways CA");
    let (gateway_cert, gateway_key) = gateways.leaf(&["gw-1"], true);
    let server = TlsCse::start(&server_cert, &server_key, Some(&gateways.ca), true);
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let files = ClientTlsFiles {
        ca_file: Some(write("ca.crt", pki.ca.pem())),
        cert_file: Some(write("gw.crt", gateway_cert.pem())),
        key_file: Some(write("gw.key", gateway_key.serialize_pem())),
    };
    let signer = Arc::new(ed25519_dalek::SigningKey::from_bytes(&[7; 32]));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let client = ServerClient::with_tls(
        &server.url(),
        "gw-1",
        signer.clone(),
        Some(client_config(&files).unwrap()),
    )
    .unwrap();
    // The stand-in answers with a body that is not a challenge: the exchange happened over
    // TLS (the server saw the request and the client certificate), the decoding fails.
    let outcome = runtime.block_on(client.challenge("grp-1", Mode::Represented, 1_700_000_000));
    assert!(outcome.is_err());
    let seen = server.seen();
    assert_eq!(seen.len(), 1, "{outcome:?}");
    assert!(seen[0]
        .request_line
        .starts_with("POST /group/v1/challenge "));
    assert_eq!(seen[0].client.as_deref(), Some(gateway_cert.der().as_ref()));

    // Another CA: refused before anything is sent.
    let other = ClientTlsFiles {
        ca_file: Some(write("other.crt", Pki::new("Other").ca.pem())),
        ..ClientTlsFiles::default()
    };
    let client = ServerClient::with_tls(
        &server.url(),
        "gw-1",
        signer.clone(),
        Some(client_config(&other).unwrap()),
    )
    .unwrap();
    let outcome = runtime.block_on(client.challenge("grp-1", Mode::Represented, 1_700_000_000));
    assert!(
        matches!(outcome, Err(HttpError::ServerUnavailable(_))),
        "{outcome:?}"
    );
    assert_eq!(server.seen().len(), 1);

    // https without TLS settings, and TLS settings for http://, are refused.
    assert!(ServerClient::new(&server.url(), "gw-1", signer.clone()).is_err());
    assert!(ServerClient::with_tls(
        "http://127.0.0.1:9",
        "gw-1",
        signer,
        Some(client_config(&files).unwrap())
    )
    .is_err());
}
