//! Authenticated originators (issue #13.1/#13.2, SER-008/009/012) against a real
//! `palisade serve`: TLS client certificates made by rcgen (URI SANs and a configured
//! SHA-256 mapping), oneM2M tokens signed with Ed25519 as TS-0009 §6.4.19 carries them
//! (`<jws>+<jws>`, and `Bearer`), the `tkid` replay cache across a restart and when full.
//! Every refusal is 4106 from the gateway, with the stand-in CSE never reached.

use crate::support::cse;
use crate::support::pki;
use crate::support::server;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::{Signer, SigningKey};
use pki::Pki;
use rcgen::KeyPair;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::json;
use server::{Answer, Gateway, StandInCse};
use sha2::{Digest, Sha256};

/// Test key only: published here on purpose.
const ISSUER_SEED: [u8; 32] = [11; 32];

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A token-auth JWS held by `holder` with ID `tkid` (none when empty), role `meter-reader`,
/// signed by the test issuer (or by another key when `forged`).
fn token(holder: &str, tkid: &str, forged: bool) -> String {
    let now = now();
    let header = json!({"alg": "EdDSA", "kid": "issuer-1"});
    let mut claims = json!({"tkhd": holder, "tkis": "/id-in/das", "tknb": now - 60,
        "tkna": now + 3600, "tkau": ["/id-mn1"], "tkps": [{"rids": ["meter-reader"]}]});
    if !tkid.is_empty() {
        claims["tkid"] = json!(tkid);
    }
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let seed = if forged { [12; 32] } else { ISSUER_SEED };
    let signature = SigningKey::from_bytes(&seed).sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
}

fn issuer_public_hex() -> String {
    hex::encode(
        SigningKey::from_bytes(&ISSUER_SEED)
            .verifying_key()
            .to_bytes(),
    )
}

const TOKEN_APP: &str = r#"
[[app]]
name = "meters"
paths = ["/cse-in/meters"]
originators = "token"
[[app.key]]
handle = "issuer-1"
ed25519_public = "ISSUER"
[[app.plugin]]
plugin = "token-auth"
capabilities = ["crypto"]
config = { audience = "/id-mn1", trusted_issuers = { "/id-in/das" = ["issuer-1"] } }
[[app.plugin]]
plugin = "acp"
config = { policies = [ { id = "m", pv = { acr = [ { acor = ["role:meter-reader"], acop = 2, acaf = true } ] } } ] }
"#;

fn ok_cse() -> StandInCse {
    StandInCse::start(|_| Answer::json(200, 2000, r#"{"m2m:cin":{"con":"21.5"}}"#))
}

fn retrieve<'a>(origin: &'a str, ri: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![("X-M2M-Origin", origin), ("X-M2M-RI", ri)]
}

/// A response read from raw HTTP text.
struct Answered {
    status: u16,
    text: String,
}

impl Answered {
    fn header(&self, name: &str) -> Option<String> {
        let head = self.text.split("\r\n\r\n").next().unwrap_or("");
        head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_string())
        })
    }
}

/// One HTTPS request with a client certificate.
fn https(
    addr: SocketAddr,
    ca: &rcgen::Certificate,
    client: (&rcgen::Certificate, &KeyPair),
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Answered {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca.der().to_vec())).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(
        vec![CertificateDer::from(client.0.der().to_vec())],
        PrivateKeyDer::Pkcs8(client.1.serialize_der().into()),
    )
    .unwrap();
    let connection =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("127.0.0.1").unwrap())
            .unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Content-Length: 0\r\n\r\n");
    tls.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    Answered { status, text }
}

/// The printed HTTPS address (bounded wait).
fn https_address(gateway: &Gateway) -> SocketAddr {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let found = gateway
            .stdout
            .lock()
            .unwrap()
            .iter()
            .filter_map(|line| line.split("listening on https://").nth(1))
            .map(|rest| rest.split_whitespace().next().unwrap().parse().unwrap())
            .next();
        if let Some(found) = found {
            return found;
        }
        assert!(std::time::Instant::now() < deadline, "no https listener");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The printed plain address listed `n`-th (0-based).
fn http_address(gateway: &Gateway, n: usize) -> SocketAddr {
    gateway
        .stdout
        .lock()
        .unwrap()
        .iter()
        .filter_map(|line| line.split("listening on http://").nth(1))
        .map(|rest| rest.split_whitespace().next().unwrap().parse().unwrap())
        .nth(n)
        .expect("a plain listener")
}

/// The audit record (JSON text) of decision `id`, read from the log after the gateway ended.
fn audit_record(data: &std::path::Path, id: &str) -> String {
    for entry in std::fs::read_dir(data.join("audit")).unwrap() {
        let path = entry.unwrap().path();
        if let Ok(text) = std::fs::read_to_string(&path) {
            if let Some(line) = text.lines().find(|line| line.contains(id)) {
                return line.to_string();
            }
        }
    }
    panic!("decision {id} not in the audit log");
}

fn metric(metrics: &str, line_start: &str) -> u64 {
    metrics
        .lines()
        .find(|line| line.starts_with(line_start))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

/// `originators = "tls"`: the originator must be named by the verified client certificate
/// (a URI SAN, or a `[[client_identity]]` SHA-256 mapping); anything else is 4106 before the
/// plugins, which would have permitted it; on `/v1/decide` a trusted caller vouches and an
/// untrusted one must hold such a certificate; the rate limit keys on the certificate.
#[test]
fn tls_originators_must_be_named_by_the_client_certificate() {
    let pki = Pki::new("Test gateway CA");
    let (server_cert, server_key) = pki.leaf(&["127.0.0.1"], false);
    let clients = Pki::new("Test clients CA");
    let (valve, valve_key) =
        clients.leaf_with_uri(&["valve-1.example.net"], Some("CAE-valve-1"), true);
    let (meter, meter_key) = clients.leaf(&["meter-7.example.net"], true);
    let (flood, flood_key) = clients.leaf_with_uri(&["flood.example.net"], Some("CAE-flood"), true);
    let meter_sha256 = hex::encode(Sha256::digest(meter.der()));
    let cse = ok_cse();
    let config = format!(
        r#"
[[listener]]
address = "127.0.0.1:0"
serve = ["proxy", "decide", "metrics", "health"]

[[listener]]
address = "127.0.0.1:0"
serve = ["decide"]
trusted_decide_callers = true

[[listener]]
address = "127.0.0.1:0"
serve = ["proxy"]
[listener.tls]
cert_file = "server.crt"
key_file = "server.key"
client_ca_file = "clients.crt"

[upstream]
url = "{}"

[rate_limit]
per_originator = {{ per_second = 1, burst = 4 }}

[[client_identity]]
sha256 = "{meter_sha256}"
originators = ["CAE-meter-7"]

[[app]]
name = "valves"
paths = ["/cse-in/valves"]
originators = "tls"
[[app.plugin]]
plugin = "acp"
config = {{ policies = [ {{ id = "v", pv = {{ acr = [ {{ acor = ["originator:CAE-valve-1", "originator:CAE-meter-7", "originator:CAE-other"], acop = 63 }} ] }} }} ] }}

[[app]]
name = "lamps"
paths = ["/cse-in/lamps"]
consent_real_identities = true
[[app.plugin]]
plugin = "acp"
config = {{ policies = [ {{ id = "l", pv = {{ acr = [ {{ acor = ["CAE-lamp"], acop = 2 }} ] }} }} ] }}
"#,
        cse.url()
    );
    let mut gateway = Gateway::start_with_listeners(
        &config,
        &[
            ("server.crt", &server_cert.pem()),
            ("server.key", &server_key.serialize_pem()),
            ("clients.crt", &clients.ca.pem()),
        ],
    );
    let tls = https_address(&gateway);
    let plain = http_address(&gateway, 0);
    let trusted = http_address(&gateway, 1);
    let forwarded = || cse.received.lock().unwrap().len();

    // The certificate's URI SAN names the originator: decided, permitted, forwarded.
    let valve_ok = https(
        tls,
        &pki.ca,
        (&valve, &valve_key),
        "GET",
        "/cse-in/valves/v1",
        &retrieve("CAE-valve-1", "r1"),
    );
    assert_eq!(valve_ok.status, 200, "{}", valve_ok.text);
    assert_eq!(forwarded(), 1);
    let permitted_id = valve_ok.header("x-palisade-decision-id").unwrap();

    // The same client speaking as another originator (one the policy would permit): 4106,
    // never forwarded.
    let spoof = https(
        tls,
        &pki.ca,
        (&valve, &valve_key),
        "GET",
        "/cse-in/valves/v1",
        &retrieve("CAE-other", "r2"),
    );
    assert_eq!(spoof.status, 403, "{}", spoof.text);
    assert_eq!(spoof.header("x-m2m-rsc").as_deref(), Some("4106"));
    assert_eq!(spoof.header("x-m2m-ri").as_deref(), Some("r2"));
    let refused_id = spoof.header("x-palisade-decision-id").unwrap();
    assert_eq!(forwarded(), 1);

    // A certificate without URIs, mapped by its SHA-256.
    let mapped = https(
        tls,
        &pki.ca,
        (&meter, &meter_key),
        "GET",
        "/cse-in/valves/v2",
        &retrieve("CAE-meter-7", "r3"),
    );
    assert_eq!(mapped.status, 200, "{}", mapped.text);
    let unmapped = https(
        tls,
        &pki.ca,
        (&meter, &meter_key),
        "GET",
        "/cse-in/valves/v2",
        &retrieve("CAE-valve-1", "r4"),
    );
    assert_eq!(unmapped.header("x-m2m-rsc").as_deref(), Some("4106"));
    assert_eq!(forwarded(), 2);

    // No certificate at all (the plain listener): 4106; a claimed app there is unaffected.
    let bare = server::http(
        plain,
        "GET",
        "/cse-in/valves/v1",
        &retrieve("CAE-valve-1", "r5"),
        b"",
    );
    assert_eq!((bare.status, bare.header("x-m2m-rsc")), (403, Some("4106")));
    let lamp = server::http(
        plain,
        "GET",
        "/cse-in/lamps/l1",
        &retrieve("CAE-lamp", "r6"),
        b"",
    );
    assert_eq!(lamp.status, 200, "{}", lamp.text());
    assert_eq!(forwarded(), 3);

    // /v1/decide: an untrusted caller without a certificate cannot ask as a tls app's
    // originator; a trusted caller (the CSE) vouches for it.
    let ask = json!({"originator": "CAE-valve-1", "operation": "retrieve", "target": "/cse-in/valves/v1"});
    let untrusted = server::http(plain, "POST", "/v1/decide", &[], ask.to_string().as_bytes());
    assert_eq!(untrusted.status, 403, "{}", untrusted.text());
    assert_eq!(
        untrusted.json()["error"]["code"],
        "originator-not-authenticated"
    );
    let vouched = server::http(
        trusted,
        "POST",
        "/v1/decide",
        &[],
        ask.to_string().as_bytes(),
    );
    assert_eq!(vouched.json()["decision"], "permit", "{}", vouched.text());
    let vouched_id = vouched.json()["decision_id"].as_str().unwrap().to_string();

    // The rate limit keys on the certificate: made-up originators share its bucket
    // (burst 4), while each originator of the plain listener has its own.
    let mut limited = 0;
    for i in 0..14 {
        let origin = format!("CAE-made-up-{i}");
        let answer = https(
            tls,
            &pki.ca,
            (&flood, &flood_key),
            "GET",
            "/cse-in/valves/v1",
            &retrieve(&origin, "f"),
        );
        // Refused by the limit: 5000 (HTTP 500 by TS-0009's table) with Retry-After;
        // otherwise the 4106 of an originator the certificate does not name.
        let rate_limited = answer.header("retry-after").is_some();
        let rsc = answer.header("x-m2m-rsc");
        assert!(
            rsc.as_deref() == Some(if rate_limited { "5000" } else { "4106" }),
            "{}",
            answer.text
        );
        limited += usize::from(rate_limited);
    }
    assert!(
        limited > 0,
        "14 requests of one certificate within a burst of 4"
    );
    for i in 0..12 {
        let origin = format!("CAE-own-bucket-{i}");
        let answer = server::http(
            plain,
            "GET",
            "/cse-in/valves/v1",
            &retrieve(&origin, "o"),
            b"",
        );
        assert_eq!(answer.status, 403, "{}", answer.text());
    }

    let health = server::http(plain, "GET", "/health", &[], b"").json();
    let modes: Vec<(String, String)> = health["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|app| {
            (
                app["app"].as_str().unwrap().into(),
                app["originators"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        modes,
        [
            ("valves".into(), "tls".into()),
            ("lamps".into(), "claimed".into())
        ]
    );
    let metrics = server::http(plain, "GET", "/metrics", &[], b"").text();
    assert_eq!(
        metric(
            &metrics,
            "palisade_originator_refused_total{reason=\"certificate-mismatch\"}"
        ),
        2 + 14 - limited as u64
    );
    assert!(
        metric(
            &metrics,
            "palisade_originator_refused_total{reason=\"no-certificate\"}"
        ) >= 13
    );

    // The audit says how each originator was established, and why one was refused.
    let data = gateway.data_dir();
    assert!(gateway.terminate().success());
    let record = audit_record(&data, &permitted_id);
    assert!(record.contains(r#""originator_auth":"tls""#), "{record}");
    let record = audit_record(&data, &refused_id);
    assert!(
        record.contains(r#""originator_auth":"tls""#)
            && record.contains("does not identify")
            && record.contains(r#""effect":"deny""#),
        "{record}"
    );
    let record = audit_record(&data, &vouched_id);
    assert!(
        record.contains(r#""originator_auth":"vouched""#),
        "{record}"
    );
}

/// `originators = "token"`: tokens as TS-0009 carries them, each verified, held by the
/// originator and used once, across a restart; a forged token does not use up the real
/// one's ID.
#[test]
fn tokens_are_verified_bound_to_their_holder_and_used_once_across_a_restart() {
    let cse = ok_cse();
    let config = format!(
        "[upstream]\nurl = \"{}\"\n{}",
        cse.url(),
        TOKEN_APP.replace("ISSUER", &issuer_public_hex())
    );
    let gateway = Gateway::start(&config, &[]);
    let forwarded = || cse.received.lock().unwrap().len();
    let get = |gateway: &Gateway, origin: &str, authorization: Option<&str>| {
        let mut headers = retrieve(origin, "t");
        if let Some(value) = authorization {
            headers.push(("Authorization", value));
        }
        gateway.request("GET", "/cse-in/meters/m1", &headers, b"")
    };

    // Two tokens joined by `+`, no scheme word: both verified, permitted, forwarded as sent.
    let pair = format!(
        "{}+{}",
        token("CAE-m1", "t-1", false),
        token("CAE-m1", "t-2", false)
    );
    let first = get(&gateway, "CAE-m1", Some(&pair));
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(forwarded(), 1);
    assert_eq!(
        cse.received.lock().unwrap()[0].headers.get("authorization"),
        Some(&pair)
    );
    // The same tokens again: a replay, refused before the plugins.
    let again = get(&gateway, "CAE-m1", Some(&pair));
    assert_eq!(
        (again.status, again.header("x-m2m-rsc")),
        (403, Some("4106"))
    );
    // One fresh token beside a used one: still a replay (every token counts).
    let mixed = format!(
        "{}+{}",
        token("CAE-m1", "t-3", false),
        token("CAE-m1", "t-2", false)
    );
    assert_eq!(
        get(&gateway, "CAE-m1", Some(&mixed)).header("x-m2m-rsc"),
        Some("4106")
    );

    // The Bearer form.
    let bearer = format!("Bearer {}", token("CAE-m1", "t-4", false));
    assert_eq!(get(&gateway, "CAE-m1", Some(&bearer)).status, 200);
    assert_eq!(forwarded(), 2);

    // Holder binding: CAE-m2's token presented by CAE-m1, or a token among them held by
    // another; no token; a token without tkid.
    let theirs = token("CAE-m2", "t-5", false);
    assert_eq!(
        get(&gateway, "CAE-m1", Some(&theirs)).header("x-m2m-rsc"),
        Some("4106")
    );
    let among = format!(
        "{}+{}",
        token("CAE-m1", "t-6", false),
        token("CAE-m2", "t-7", false)
    );
    assert_eq!(
        get(&gateway, "CAE-m1", Some(&among)).header("x-m2m-rsc"),
        Some("4106")
    );
    assert_eq!(
        get(&gateway, "CAE-m1", None).header("x-m2m-rsc"),
        Some("4106")
    );
    let no_id = token("CAE-m1", "", false);
    assert_eq!(
        get(&gateway, "CAE-m1", Some(&no_id)).header("x-m2m-rsc"),
        Some("4106")
    );
    // A forged token (another key) is refused after the authenticator ran, and does not use
    // up its ID: the real token with that ID still works once.
    let forged = token("CAE-m1", "t-8", true);
    assert_eq!(
        get(&gateway, "CAE-m1", Some(&forged)).header("x-m2m-rsc"),
        Some("4106")
    );
    // A forged token beside a good one: every token must verify.
    let half = format!(
        "{}+{}",
        token("CAE-m1", "t-9", false),
        token("CAE-m1", "t-10", true)
    );
    assert_eq!(
        get(&gateway, "CAE-m1", Some(&half)).header("x-m2m-rsc"),
        Some("4106")
    );
    let real = token("CAE-m1", "t-8", false);
    assert_eq!(get(&gateway, "CAE-m1", Some(&real)).status, 200);
    assert_eq!(forwarded(), 3, "no refused request reached the CSE");

    // /v1/decide: the token comes as the credential, from any caller; used once as well.
    let decide = json!({"originator": "CAE-m1", "operation": "retrieve", "target": "/cse-in/meters/m1",
        "credential": {"scheme": "bearer", "value": token("CAE-m1", "t-11", false)}});
    assert_eq!(gateway.decide(&decide).json()["decision"], "permit");
    let replayed = gateway.decide(&decide);
    assert_eq!(replayed.status, 403);
    assert_eq!(
        replayed.json()["error"]["code"],
        "originator-not-authenticated"
    );
    let metrics = gateway.metrics();
    assert_eq!(
        metric(
            &metrics,
            "palisade_originator_refused_total{reason=\"token-replayed\"}"
        ),
        3
    );
    assert_eq!(
        metric(
            &metrics,
            "palisade_originator_refused_total{reason=\"holder-mismatch\"}"
        ),
        2
    );
    assert_eq!(
        metric(
            &metrics,
            "palisade_originator_refused_total{reason=\"token-unverified\"}"
        ),
        2
    );
    assert_eq!(metric(&metrics, "palisade_token_replay_entries"), 5);

    // After a restart the used tokens are still used; a fresh one is accepted.
    let gateway = gateway.restart();
    let replay = get(&gateway, "CAE-m1", Some(&pair));
    assert_eq!(
        (replay.status, replay.header("x-m2m-rsc")),
        (403, Some("4106"))
    );
    assert_eq!(
        get(&gateway, "CAE-m1", Some(&bearer)).header("x-m2m-rsc"),
        Some("4106")
    );
    assert_eq!(gateway.decide(&decide).status, 403);
    let fresh = format!(
        "{}+{}",
        token("CAE-m1", "t-12", false),
        token("CAE-m1", "t-13", false)
    );
    assert_eq!(get(&gateway, "CAE-m1", Some(&fresh)).status, 200);
    assert_eq!(forwarded(), 4);
}

/// A full `tkid` cache refuses new tokens (5000, fail closed, counted) instead of forgetting
/// an unexpired one; what it holds is still refused as a replay.
#[test]
fn a_full_replay_cache_refuses_new_tokens_and_forgets_nothing() {
    let cse = ok_cse();
    let config = format!(
        "[upstream]\nurl = \"{}\"\n[token_replay]\nmax_entries = 2\n{}",
        cse.url(),
        TOKEN_APP.replace("ISSUER", &issuer_public_hex())
    );
    let gateway = Gateway::start(&config, &[]);
    let get = |authorization: &str| {
        let mut headers = retrieve("CAE-m1", "f");
        headers.push(("Authorization", authorization));
        gateway.request("GET", "/cse-in/meters/m1", &headers, b"")
    };
    let first = token("CAE-m1", "f-1", false);
    assert_eq!(get(&first).status, 200);
    assert_eq!(get(&token("CAE-m1", "f-2", false)).status, 200);
    let full = get(&token("CAE-m1", "f-3", false));
    // 5000 is HTTP 500 in TS-0009's table.
    assert_eq!(full.status, 500, "{}", full.text());
    assert_eq!(full.header("x-m2m-rsc"), Some("5000"));
    assert_eq!(full.header("retry-after"), Some("1"));
    assert_eq!(
        get(&first).header("x-m2m-rsc"),
        Some("4106"),
        "not forgotten"
    );
    let decide = gateway.decide(&json!({"originator": "CAE-m1", "operation": "retrieve",
        "target": "/cse-in/meters/m1", "credential": {"scheme": "bearer", "value": token("CAE-m1", "f-4", false)}}));
    assert_eq!(decide.status, 503);
    assert_eq!(decide.json()["error"]["code"], "token-replay-unavailable");
    let metrics = gateway.metrics();
    assert_eq!(
        metric(
            &metrics,
            "palisade_token_replay_refused_total{reason=\"full\"}"
        ),
        2
    );
    assert_eq!(metric(&metrics, "palisade_token_replay_capacity"), 2);
    assert_eq!(cse.received.lock().unwrap().len(), 2);
}

/// Through a real ACME CSE: a token app's requests reach the CSE only with a fresh token held
/// by the originator; a replayed token and another's token are refused by the gateway (4106)
/// and the CSE's own state shows they never arrived.
#[test]
fn only_fresh_tokens_of_the_originator_reach_a_real_cse() {
    let Some(cse) = cse::AcmeCse::start("only_fresh_tokens_of_the_originator_reach_a_real_cse")
    else {
        return;
    };
    let base = cse.base();
    let made = [
        cse.create(
            &base,
            Some("Cmeter"),
            2,
            &json!({"m2m:ae": {"rn": "meter", "api": "Nmeter", "rr": true, "srv": ["3"]}}),
        ),
        cse.create(
            &format!("{base}/meter"),
            Some("Cmeter"),
            3,
            &json!({"m2m:cnt": {"rn": "cnt"}}),
        ),
    ];
    for response in &made {
        assert_eq!(
            response.header("x-m2m-rsc"),
            Some("2001"),
            "{}",
            response.text()
        );
    }
    let config = format!(
        r#"
[upstream]
url = "{}"

[[app]]
name = "meters"
paths = ["{base}"]
originators = "token"
consent_real_identities = true
[[app.key]]
handle = "issuer-1"
ed25519_public = "{}"
[[app.plugin]]
plugin = "token-auth"
capabilities = ["crypto"]
config = {{ audience = "/id-mn1", trusted_issuers = {{ "/id-in/das" = ["issuer-1"] }} }}
[[app.plugin]]
plugin = "acp"
config = {{ policies = [ {{ id = "m", pv = {{ acr = [ {{ acor = ["role:meter-reader"], acop = 63, acaf = true }} ] }} }} ] }}
"#,
        cse.url(),
        issuer_public_hex()
    );
    let gateway = Gateway::start(&config, &[]);
    let container = format!("{base}/meter/cnt");
    let create = |authorization: &str, rn: &str| {
        let mut headers = cse::onem2m_headers(Some("Cmeter"));
        headers.push(("Content-Type".into(), "application/json;ty=4".into()));
        headers.push(("Authorization".into(), authorization.into()));
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let body = json!({"m2m:cin": {"rn": rn, "con": "21.5"}}).to_string();
        gateway.request("POST", &container, &headers, body.as_bytes())
    };
    let pair = format!(
        "{}+{}",
        token("Cmeter", "c-1", false),
        token("Cmeter", "c-2", false)
    );
    let created = create(&pair, "c1");
    assert_eq!(
        created.header("x-m2m-rsc"),
        Some("2001"),
        "{}",
        created.text()
    );
    assert!(cse.state(&format!("{container}/c1")).is_some());

    let replayed = create(&pair, "c2");
    assert_eq!(
        (replayed.status, replayed.header("x-m2m-rsc")),
        (403, Some("4106"))
    );
    let theirs = create(&token("Cother", "c-3", false), "c3");
    assert_eq!(theirs.header("x-m2m-rsc"), Some("4106"));
    assert!(
        cse.state(&format!("{container}/c2")).is_none(),
        "the replay never reached the CSE"
    );
    assert!(cse.state(&format!("{container}/c3")).is_none());

    let fresh = create(&format!("Bearer {}", token("Cmeter", "c-4", false)), "c4");
    assert_eq!(fresh.header("x-m2m-rsc"), Some("2001"), "{}", fresh.text());
}
