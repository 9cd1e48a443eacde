//! TLS on `palisade serve` listeners (SER-002/003) and client-certificate authentication on
//! an operators' listener (SER-009), with test certificates made by rcgen.

use crate::support::pki;
use crate::support::server;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use pki::Pki;
use rcgen::KeyPair;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use server::Gateway;

/// One HTTPS request; `Err` when the TLS handshake or the exchange fails.
fn https(
    addr: SocketAddr,
    ca: &rcgen::Certificate,
    client: Option<(&rcgen::Certificate, &KeyPair)>,
    request: &str,
) -> Result<String, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca.der().to_vec())).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from(cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let connection =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("127.0.0.1").unwrap())
            .unwrap();
    let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    tls.write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    let outcome = tls.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    match outcome {
        Ok(_) => Ok(text),
        // A peer that closes without close_notify still gave its full answer.
        Err(_) if text.starts_with("HTTP/1.1") => Ok(text),
        Err(error) => Err(error.to_string()),
    }
}

/// The printed HTTPS addresses, once `count` of them are printed (bounded wait).
fn addresses(gateway: &Gateway, count: usize) -> Vec<SocketAddr> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let found: Vec<SocketAddr> = gateway
            .stdout
            .lock()
            .unwrap()
            .iter()
            .filter_map(|line| line.split("listening on https://").nth(1))
            .map(|rest| rest.split_whitespace().next().unwrap().parse().unwrap())
            .collect();
        if found.len() >= count || std::time::Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn tls_listeners_serve_and_the_operators_listener_requires_a_client_certificate() {
    let pki = Pki::new("Test gateway CA");
    let (server_cert, server_key) = pki.leaf(&["127.0.0.1", "localhost"], false);
    let operators = Pki::new("Test operators CA");
    let (operator_cert, operator_key) = operators.leaf(&["operator-1"], true);
    let (stranger_cert, stranger_key) = Pki::new("Somebody else").leaf(&["stranger"], true);
    let config = r#"
[[listener]]
address = "127.0.0.1:0"
serve = ["decide"]
[listener.tls]
cert_file = "server.crt"
key_file = "server.key"

[[listener]]
address = "127.0.0.1:0"
serve = ["metrics", "health"]
[listener.tls]
cert_file = "server.crt"
key_file = "server.key"
client_ca_file = "operators.crt"

[[app]]
name = "lights"
paths = ["/cse-in/lights"]
[[app.plugin]]
plugin = "acp"
config = { policies = [ { id = "p", pv = { acr = [ { acor = ["all"], acop = 2 } ] } } ] }
"#;
    let gateway = Gateway::start_with_listeners(
        config,
        &[
            ("server.crt", &server_cert.pem()),
            ("server.key", &server_key.serialize_pem()),
            ("operators.crt", &operators.ca.pem()),
        ],
    );
    let listeners = addresses(&gateway, 2);
    assert_eq!(listeners.len(), 2, "{:?}", gateway.stdout.lock().unwrap());
    let (public, admin) = (listeners[0], listeners[1]);

    let body = r#"{"originator":"CAE1","operation":"retrieve","target":"/cse-in/lights/a"}"#;
    let decide = format!(
        "POST /v1/decide HTTP/1.1\r\nHost: gw\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let answer = https(public, &pki.ca, None, &decide).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.contains("\"decision\":\"permit\""),
        "{answer}"
    );
    // Plain HTTP on a TLS port gets no answer.
    let mut plain = TcpStream::connect(public).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    plain.write_all(decide.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = plain.read_to_end(&mut raw);
    assert!(
        !raw.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&raw)
    );

    // SER-009: the operators' listener admits only certificates of the operators' CA.
    let health = "GET /health HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n";
    let answer = https(
        admin,
        &pki.ca,
        Some((&operator_cert, &operator_key)),
        health,
    )
    .unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.contains("\"status\":\"ok\""),
        "{answer}"
    );
    assert!(
        https(admin, &pki.ca, None, health).is_err(),
        "no client certificate"
    );
    assert!(
        https(
            admin,
            &pki.ca,
            Some((&stranger_cert, &stranger_key)),
            health
        )
        .is_err(),
        "a certificate of another CA"
    );
    // The services stay where they were put.
    let answer = https(public, &pki.ca, None, health).unwrap();
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
}

#[test]
fn tls_config_errors_name_the_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.crt"), "").unwrap();
    let config = "[[listener]]\naddress = \"127.0.0.1:0\"\n[listener.tls]\ncert_file = \"empty.crt\"\nkey_file = \"none.key\"\n[[app]]\nname = \"a\"\npaths = [\"/cse-in/a\"]\n[[app.plugin]]\nplugin = \"acp\"\nconfig = { policies = [ { pv = { acr = [] } } ] }\n";
    std::fs::write(dir.path().join("gw.toml"), config).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["serve", "--config"])
        .arg(dir.path().join("gw.toml"))
        .arg("--data")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("gw.toml:4: listener[0].tls.cert_file"),
        "{stderr}"
    );
}

/// Issue 11.8: on a TLS listener that verifies client certificates, `/v1/decide` believes
/// `authenticated`, `roles` and `request_time` only from callers whose certificate is valid
/// for a name in `trusted_decide_clients` (the CSE); another certificate of the same CA is
/// refused with 403 `untrusted-field`. The names need a listener that verifies
/// certificates: without `client_ca_file` the gateway does not start.
#[test]
fn decide_believes_claims_only_from_trusted_client_certificates() {
    let pki = Pki::new("Test gateway CA");
    let (server_cert, server_key) = pki.leaf(&["127.0.0.1"], false);
    let clients = Pki::new("Test clients CA");
    let (cse_cert, cse_key) = clients.leaf(&["cse.example.net"], true);
    let (device_cert, device_key) = clients.leaf(&["device-7.example.net"], true);
    let config = r#"
[[listener]]
address = "127.0.0.1:0"
serve = ["decide"]
trusted_decide_clients = ["cse.example.net"]
[listener.tls]
cert_file = "server.crt"
key_file = "server.key"
client_ca_file = "clients.crt"

[[app]]
name = "meters"
paths = ["/cse-in/meters"]
[[app.plugin]]
plugin = "acp"
config = { policies = [ { id = "m", pv = { acr = [ { acor = ["role:meter-reader"], acop = 2, acaf = true } ] } } ] }
"#;
    let gateway = Gateway::start_with_listeners(
        config,
        &[
            ("server.crt", &server_cert.pem()),
            ("server.key", &server_key.serialize_pem()),
            ("clients.crt", &clients.ca.pem()),
        ],
    );
    let listener = addresses(&gateway, 1)[0];
    let body = r#"{"originator":"CAE5","operation":"retrieve","target":"/cse-in/meters/m1","authenticated":true,"roles":["meter-reader"]}"#;
    let decide = format!(
        "POST /v1/decide HTTP/1.1\r\nHost: gw\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let answer = https(listener, &pki.ca, Some((&cse_cert, &cse_key)), &decide).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.contains("\"decision\":\"permit\""),
        "{answer}"
    );
    let answer = https(
        listener,
        &pki.ca,
        Some((&device_cert, &device_key)),
        &decide,
    )
    .unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 403") && answer.contains("untrusted-field"),
        "{answer}"
    );

    let dir = tempfile::tempdir().unwrap();
    let config = "[[listener]]\naddress = \"127.0.0.1:0\"\nserve = [\"decide\"]\ntrusted_decide_clients = [\"cse.example.net\"]\n[[app]]\nname = \"a\"\n[[app.plugin]]\nplugin = \"acp\"\n";
    std::fs::write(dir.path().join("gw.toml"), config).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["serve", "--config"])
        .arg(dir.path().join("gw.toml"))
        .arg("--data")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("gw.toml:4: listener[0].trusted_decide_clients[0]")
            && stderr.contains("client_ca_file"),
        "{stderr}"
    );
}
