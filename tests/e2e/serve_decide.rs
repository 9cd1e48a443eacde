//! `POST /v1/decide` against a real `palisade serve`: decisions with their module and id,
//! JSON errors with stable codes, monitor mode, and identity privacy (SER-011/015/018/025):
//! authorizers see pseudonyms unless consent, authenticators see the real originator.

use crate::support::server;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::json;
use server::Gateway;

/// Test key only: published here on purpose.
const ISSUER_SEED: [u8; 32] = [7; 32];

fn issuer_public_hex() -> String {
    hex::encode(
        SigningKey::from_bytes(&ISSUER_SEED)
            .verifying_key()
            .to_bytes(),
    )
}

/// A token-auth JWS for `holder` with role `meter-reader`, valid around now.
fn token(holder: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = json!({"alg": "EdDSA", "kid": "issuer-1"});
    let claims = json!({"tkhd": holder, "tkis": "/id-in/das", "tknb": now - 60, "tkna": now + 3600,
        "tkau": ["/id-mn1"], "tkps": [{"rids": ["meter-reader"]}]});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = SigningKey::from_bytes(&ISSUER_SEED).sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
}

fn gateway() -> Gateway {
    let config = format!(
        r#"
[limits]
max_body_bytes = 4096

[rate_limit]
per_originator = {{ per_second = 10000, burst = 10000 }}

[[app]]
name = "lights"
paths = ["/cse-in/lights"]
[[app.plugin]]
plugin = "acp"
config_file = "lights.json"

[[app]]
name = "open"
paths = ["/cse-in/open"]
consent_real_identities = true
[[app.plugin]]
plugin = "acp"
config = {{ policies = [ {{ id = "open", pv = {{ acr = [ {{ acor = ["CAE7"], acop = 2 }} ] }} }} ] }}

[[app]]
name = "trial"
paths = ["/cse-in/trial"]
mode = "monitor"
[[app.plugin]]
plugin = "acp"
config = {{ policies = [ {{ id = "none", pv = {{ acr = [] }} }} ] }}

[[app]]
name = "meters"
paths = ["/cse-in/meters"]
[[app.key]]
handle = "issuer-1"
ed25519_public = "{}"
[[app.plugin]]
plugin = "token-auth"
capabilities = ["crypto"]
config = {{ audience = "/id-mn1", trusted_issuers = {{ "/id-in/das" = ["issuer-1"] }} }}
[[app.plugin]]
plugin = "acp"
config = {{ policies = [ {{ id = "m", pv = {{ acr = [ {{ acor = ["role:meter-reader"], acop = 2, acaf = true }} ] }} }} ] }}
"#,
        issuer_public_hex()
    );
    Gateway::start(
        &config,
        &[(
            "lights.json",
            r#"{"policies":[{"id":"lights","pv":{"acr":[{"acor":["originator:CAE1"],"acop":6}]}}]}"#,
        )],
    )
}

#[test]
fn decisions_name_their_module_and_carry_unique_ids() {
    let gateway = gateway();
    let permit = gateway.decide(
        &json!({"originator": "CAE1", "operation": "retrieve", "target": "/cse-in/lights/lamp1"}),
    );
    assert_eq!(permit.status, 200, "{}", permit.text());
    let body = permit.json();
    assert_eq!(body["decision"], "permit");
    assert_eq!(
        body["app"], "lights",
        "resolved from the target's path prefix"
    );
    assert_eq!(body["enforced"], true);
    assert_eq!(body["module"]["name"], "acp");
    assert_eq!(body["module"]["sha256"].as_str().unwrap().len(), 64);
    // The explanation only when asked for (see `explanations_are_given_only_when_asked_for`).
    assert!(
        body.get("timings").is_none() && body.get("stages").is_none(),
        "{body}"
    );

    let deny = gateway.decide(&json!({"app": "lights", "originator": "CAE1", "operation": "delete", "target": "/cse-in/lights/lamp1"})).json();
    assert_eq!(deny["decision"], "deny");
    assert!(
        deny["reason"].as_str().unwrap().contains("delete"),
        "{deny}"
    );
    assert_eq!(deny["module"]["name"], "acp");

    let mut ids = std::collections::HashSet::new();
    for _ in 0..20 {
        let id = gateway.decide(&json!({"originator": "CAE1", "operation": "retrieve", "target": "/cse-in/lights/x"})).json()["decision_id"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()),
            "{id}"
        );
        assert!(ids.insert(id), "decision ids are unique");
    }
}

#[test]
fn bad_requests_get_json_errors_with_stable_codes() {
    let gateway = gateway();
    let error = |response: server::Response| {
        let body = response.json();
        assert!(body["error"]["message"].is_string(), "{body}");
        (
            response.status,
            body["error"]["code"].as_str().unwrap().to_string(),
        )
    };
    let raw = |body: &str| gateway.request("POST", "/v1/decide", &[], body.as_bytes());
    assert_eq!(
        error(raw("{\"originator\": ")),
        (400, "malformed-json".into())
    );
    assert_eq!(error(raw("[1,2]")), (400, "invalid-request".into()));
    assert_eq!(
        error(raw(r#"{"originator":"C","operation":"retrieve"}"#)),
        (400, "invalid-request".into())
    );
    assert_eq!(
        error(raw(
            r#"{"originator":"C","operation":"fly","target":"/cse-in/lights"}"#
        )),
        (400, "invalid-request".into())
    );
    assert_eq!(
        error(raw(
            r#"{"originator":"C","operation":"retrieve","target":"/cse-in/lights","admin":true}"#
        )),
        (400, "invalid-request".into())
    );
    assert_eq!(
        error(gateway.decide(
            &json!({"app": "nope", "originator": "C", "operation": "retrieve", "target": "/x"})
        )),
        (404, "unknown-app".into())
    );
    assert_eq!(
        error(gateway.decide(
            &json!({"originator": "C", "operation": "retrieve", "target": "/cse-in/lightsabc"})
        )),
        (404, "no-app-for-target".into())
    );
    let big = format!(
        r#"{{"originator":"{}","operation":"retrieve","target":"/cse-in/lights"}}"#,
        "C".repeat(5000)
    );
    assert_eq!(error(raw(&big)), (413, "body-too-large".into()));
    assert_eq!(
        error(gateway.request("GET", "/v1/decide", &[], b"")),
        (405, "method-not-allowed".into())
    );
    let outside = gateway.request(
        "GET",
        "/nowhere",
        &[("X-M2M-Origin", "C"), ("X-M2M-RI", "1")],
        b"",
    );
    assert_eq!(outside.status, 403, "the proxy denies what no app covers");
}

#[test]
fn monitor_mode_permits_and_reports_what_it_would_deny() {
    let gateway = gateway();
    let body = gateway
        .decide(
            &json!({"originator": "CAE1", "operation": "retrieve", "target": "/cse-in/trial/a"}),
        )
        .json();
    assert_eq!(body["decision"], "permit");
    assert_eq!(body["enforced"], false);
    assert!(
        body["would_deny"]
            .as_str()
            .unwrap()
            .contains("no access control rule"),
        "{body}"
    );
    assert!(gateway
        .metrics()
        .contains(r#"palisade_decisions_total{app="trial",result="would-deny"} 1"#));
}

#[test]
fn authorizers_see_pseudonyms_unless_the_app_records_consent() {
    let gateway = gateway();
    // SER-011/018/025: the policy named CAE1 through the marker; the plugin only ever saw a
    // pseudonym, so its deny reason for CAE2 names a pseudonym, not CAE2.
    let deny = gateway
        .decide(
            &json!({"originator": "CAE2", "operation": "retrieve", "target": "/cse-in/lights/a"}),
        )
        .json();
    let reason = deny["reason"].as_str().unwrap();
    assert!(
        reason.contains("anon-") && !reason.contains("CAE2"),
        "{reason}"
    );
    // Stable: the same originator gets the same pseudonym.
    let again = gateway
        .decide(
            &json!({"originator": "CAE2", "operation": "retrieve", "target": "/cse-in/lights/b"}),
        )
        .json();
    let pseudonym = |reason: &str| {
        reason
            .split_whitespace()
            .find(|w| w.starts_with("anon-"))
            .unwrap()
            .to_string()
    };
    assert_eq!(
        pseudonym(reason),
        pseudonym(again["reason"].as_str().unwrap())
    );
    // SER-015: with consent the plugin sees the real ID.
    let open = gateway
        .decide(&json!({"originator": "CAE8", "operation": "retrieve", "target": "/cse-in/open/a"}))
        .json();
    assert!(open["reason"].as_str().unwrap().contains("CAE8"), "{open}");
    let open = gateway
        .decide(&json!({"originator": "CAE7", "operation": "retrieve", "target": "/cse-in/open/a"}))
        .json();
    assert_eq!(open["decision"], "permit");
}

#[test]
fn authenticators_see_the_real_originator_and_authorizers_the_pseudonym() {
    let gateway = gateway();
    let request = |originator: &str, holder: &str| {
        gateway.decide_explained(&json!({"originator": originator, "operation": "retrieve", "target": "/cse-in/meters/m1",
            "credential": {"scheme": "bearer", "value": token(holder)}})).json()
    };
    // The token's holder is a real ID; token-auth compares it with the real originator.
    let permit = request("CAE5", "CAE5");
    assert_eq!(permit["decision"], "permit", "{permit}");
    assert_eq!(permit["identity"]["subject"], "CAE5");
    assert_eq!(permit["stages"][0]["stage"], "authenticate");
    assert_eq!(permit["stages"][1]["stage"], "authorize");
    // Someone else's token is rejected by the authenticator.
    let stolen = request("CAE6", "CAE5");
    assert_eq!(stolen["decision"], "deny");
    assert!(
        stolen["reason"]
            .as_str()
            .unwrap()
            .contains("credential rejected"),
        "{stolen}"
    );
    // No token: not authenticated, so acaf denies.
    let anonymous = gateway
        .decide(
            &json!({"originator": "CAE5", "operation": "retrieve", "target": "/cse-in/meters/m1"}),
        )
        .json();
    assert_eq!(anonymous["decision"], "deny");
}

#[test]
fn the_noop_endpoint_is_off_by_default_and_shares_the_decide_limits() {
    // Off by default: /v1/noop is just another path, which the proxy denies (no app covers
    // it), never a no-op answer.
    let gateway = gateway();
    let off = gateway.request(
        "POST",
        "/v1/noop",
        &[("X-M2M-Origin", "C"), ("X-M2M-RI", "1")],
        b"{}",
    );
    assert_ne!(off.status, 200, "{}", off.text());
    assert!(!off.text().contains("noop"), "{}", off.text());

    let gateway = server::Gateway::start(
        r#"
[limits]
max_body_bytes = 4096

[diagnostics]
noop_endpoint = true

[[app]]
name = "lights"
paths = ["/cse-in/lights"]
[[app.plugin]]
plugin = "acp"
config = { policies = [ { id = "p", pv = { acr = [ { acor = ["CAE1"], acop = 2 } ] } } ] }
"#,
        &[],
    );
    let body = r#"{"originator":"CAE1","operation":"retrieve","target":"/cse-in/lights/a"}"#;
    let answer = gateway.request("POST", "/v1/noop", &[], body.as_bytes());
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        answer.json(),
        json!({"noop": true, "body_bytes": body.len()})
    );
    // The same body limit as /v1/decide, the same JSON errors.
    let big = "C".repeat(5000);
    let too_large = gateway.request("POST", "/v1/noop", &[], big.as_bytes());
    assert_eq!(too_large.status, 413);
    assert_eq!(too_large.json()["error"]["code"], "body-too-large");
    let get = gateway.request("GET", "/v1/noop", &[], b"");
    assert_eq!(get.status, 405);
    // No decision was made or counted; the HTTP metrics see the route.
    let metrics = gateway.metrics();
    assert!(!metrics.contains("palisade_decisions_total{"), "{metrics}");
    assert!(
        metrics.contains(r#"palisade_http_requests_total{route="noop",status="200"} 1"#),
        "{metrics}"
    );
}

/// `(status, error code, message)` of a JSON error answer.
fn refused(response: server::Response) -> (u16, String, String) {
    let body = response.json();
    (
        response.status,
        body["error"]["code"].as_str().unwrap_or("").to_string(),
        body["error"]["message"].as_str().unwrap_or("").to_string(),
    )
}

/// Issue 11.8: a named app decides only targets that belong to it (lights' policy used to
/// permit `/cse-in/meters/m1`), and targets are read like the proxy reads paths, so
/// `/cse-in/lights/../meters/m1` is never decided by lights.
#[test]
fn a_named_app_decides_only_its_own_normalised_targets() {
    let gateway = gateway();
    let (status, code, message) = refused(gateway.decide(&json!({"app": "lights",
        "originator": "CAE1", "operation": "retrieve", "target": "/cse-in/meters/m1"})));
    assert_eq!(
        (status, code.as_str()),
        (400, "target-outside-app"),
        "{message}"
    );
    assert!(
        message.contains("\"lights\"") && message.contains("belongs to application \"meters\""),
        "{message}"
    );
    let (status, code, message) = refused(gateway.decide(&json!({"app": "lights",
        "originator": "CAE1", "operation": "retrieve", "target": "/elsewhere/x"})));
    assert_eq!(
        (status, code.as_str()),
        (400, "target-outside-app"),
        "{message}"
    );
    assert!(
        message.contains("no application's paths cover it"),
        "{message}"
    );
    for target in [
        "/cse-in/lights/../meters/m1",
        "/cse-in/lights/%2e%2e/meters/m1",
        "/cse-in/lights/..;/meters/m1",
        "/cse-in/lights//m1",
        "/cse-in/lights%2fm1",
        "cse-in/lights/m1",
    ] {
        for app in [Some("lights"), None] {
            let mut body = json!({"originator": "CAE1", "operation": "retrieve", "target": target});
            if let Some(app) = app {
                body["app"] = json!(app);
            }
            let (status, code, message) = refused(gateway.decide(&body));
            assert_eq!(
                (status, code.as_str()),
                (400, "invalid-request"),
                "{target}: {message}"
            );
            assert!(message.starts_with("target: "), "{message}");
        }
    }
    // Encoded unreserved characters are decoded once, as by the proxy.
    let permit = gateway
        .decide(
            &json!({"app": "lights", "originator": "CAE1", "operation": "retrieve",
            "target": "/cse-in/%6cights/lamp1"}),
        )
        .json();
    assert_eq!(permit["decision"], "permit", "{permit}");
    assert_eq!(permit["app"], "lights");
}

/// Issue 11.8: a caller that is not trusted cannot claim the request is authenticated, give
/// roles or set the request time (refused, naming the field); `false` and `[]` claim
/// nothing and pass. `--listen` listeners (this gateway) never trust their callers.
#[test]
fn untrusted_callers_cannot_claim_authentication_roles_or_time() {
    let gateway = gateway();
    let base =
        json!({"originator": "CAE5", "operation": "retrieve", "target": "/cse-in/meters/m1"});
    for (field, value) in [
        ("authenticated", json!(true)),
        ("roles", json!(["meter-reader"])),
        ("request_time", json!(1_795_860_900u64)),
        // `acip` and `aclr` grant on these: a caller could otherwise place itself.
        ("source_ip", json!("10.1.2.3")),
        (
            "location",
            json!({"latitude": 52.5, "longitude": 13.4, "country": "DE"}),
        ),
    ] {
        let mut body = base.clone();
        body[field] = value;
        let (status, code, message) = refused(gateway.decide(&body));
        assert_eq!(
            (status, code.as_str()),
            (403, "untrusted-field"),
            "{message}"
        );
        assert!(
            message.starts_with(field) && message.contains("trusted_decide_callers"),
            "{message}"
        );
    }
    let mut body = base.clone();
    body["authenticated"] = json!(false);
    body["roles"] = json!([]);
    let answer = gateway.decide(&body);
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["decision"], "deny", "acaf: not authenticated");
}

/// The gateway of the listener tests: three listeners on loopback, one as devices would
/// reach it (no `serve` list), one serving decide, one serving decide to trusted callers.
/// Returns it and the three addresses, in that order.
fn listener_gateway() -> (Gateway, Vec<std::net::SocketAddr>) {
    let gateway = Gateway::start_with_listeners(
        r#"
[[listener]]
address = "127.0.0.1:0"

[[listener]]
address = "127.0.0.1:0"
serve = ["decide"]

[[listener]]
address = "127.0.0.1:0"
serve = ["decide", "metrics"]
trusted_decide_callers = true

[rate_limit]
per_originator = { per_second = 10000, burst = 10000 }

[[app]]
name = "meters"
paths = ["/cse-in/meters"]
[[app.plugin]]
plugin = "acp"
config = { policies = [ { id = "m", pv = { acr = [ { acor = ["originator:CAE1"], acop = 2 }, { acor = ["role:meter-reader"], acop = 2, acaf = true } ] } } ] }
"#,
        &[],
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let addresses: Vec<std::net::SocketAddr> = gateway
            .stdout
            .lock()
            .unwrap()
            .iter()
            .filter_map(|line| line.split("listening on http://").nth(1))
            .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
            .collect();
        if addresses.len() == 3 {
            return (gateway, addresses);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "three listeners announced"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn decide_at(addr: std::net::SocketAddr, body: &serde_json::Value) -> server::Response {
    server::http(
        addr,
        "POST",
        "/v1/decide",
        &[("content-type", "application/json")],
        body.to_string().as_bytes(),
    )
}

/// Issue 11.8: the decision API is not served on a listener without a `serve` list (the one
/// devices reach): there `/v1/decide` is just a path for the proxy, which refuses it as
/// oneM2M. It is served where listed; claims are believed only where the listener trusts
/// its callers.
#[test]
fn decide_is_served_only_where_listed_and_claims_believed_only_where_trusted() {
    let (gateway, addresses) = listener_gateway();
    let lines = gateway.stdout.lock().unwrap().join("\n");
    assert!(
        lines.contains(&format!("{} (proxy, metrics, health)", addresses[0])),
        "{lines}"
    );
    let plain =
        json!({"originator": "CAE1", "operation": "retrieve", "target": "/cse-in/meters/m1"});
    let device_side = decide_at(addresses[0], &plain);
    assert_eq!(
        (device_side.status, device_side.header("x-m2m-rsc")),
        (400, Some("4000")),
        "answered by the proxy, not decided: {}",
        device_side.text()
    );
    assert!(
        !device_side.text().contains("decision"),
        "{}",
        device_side.text()
    );
    for addr in &addresses[1..] {
        let answer = decide_at(*addr, &plain);
        assert_eq!(answer.status, 200, "{}", answer.text());
        assert_eq!(answer.json()["decision"], "permit");
    }
    let claimed = json!({"originator": "CAE5", "operation": "retrieve", "target": "/cse-in/meters/m1",
        "authenticated": true, "roles": ["meter-reader"], "request_time": 1_795_860_900u64});
    let (status, code, message) = refused(decide_at(addresses[1], &claimed));
    assert_eq!(
        (status, code.as_str()),
        (403, "untrusted-field"),
        "{message}"
    );
    let trusted = decide_at(addresses[2], &claimed);
    assert_eq!(trusted.status, 200, "{}", trusted.text());
    assert_eq!(
        trusted.json()["decision"],
        "permit",
        "the trusted caller's roles count"
    );
}

/// Issue 11.4 on the decision API: a 5 KB originator or target is refused (400 `too-long`,
/// naming the limit) before any plugin runs, so repeating it cannot quarantine the app's
/// policy; its legitimate originators go on being permitted.
#[test]
fn oversized_decide_requests_are_refused_before_any_plugin_runs() {
    let (_gateway, addresses) = listener_gateway();
    let long = "O".repeat(5000);
    let long_target = format!("/cse-in/meters/{}", "m".repeat(5000));
    for _ in 0..10 {
        for (body, limit) in [
            (
                json!({"originator": long, "operation": "retrieve", "target": "/cse-in/meters/m1"}),
                "max_originator_bytes",
            ),
            (
                json!({"originator": "CAE1", "operation": "retrieve", "target": long_target}),
                "max_path_bytes",
            ),
            (
                json!({"originator": "CAE1", "operation": "retrieve", "target": "/cse-in/meters/m1",
                    "credential": {"scheme": "bearer", "value": long}}),
                "max_authorization_bytes",
            ),
        ] {
            let (status, code, message) = refused(decide_at(addresses[1], &body));
            assert_eq!((status, code.as_str()), (400, "too-long"), "{message}");
            assert!(message.contains(limit), "{message}");
        }
    }
    let permit = decide_at(
        addresses[1],
        &json!({"originator": "CAE1", "operation": "retrieve", "target": "/cse-in/meters/m1"}),
    );
    assert_eq!(permit.json()["decision"], "permit", "{}", permit.text());
    let metrics = server::http(addresses[2], "GET", "/metrics", &[], b"").text();
    assert!(
        metrics.contains(r#"palisade_decisions_total{app="meters",result="permit"} 1"#),
        "only the request within bounds was decided: {metrics}"
    );
    assert!(
        !metrics.contains("palisade_plugin_failures_total{"),
        "{metrics}"
    );
}

#[test]
fn explanations_are_given_only_when_asked_for() {
    let gateway = gateway();
    let body =
        json!({"originator": "CAE1", "operation": "retrieve", "target": "/cse-in/lights/lamp1"});
    let post = |path: &str, body: &serde_json::Value| {
        gateway.request(
            "POST",
            path,
            &[("content-type", "application/json")],
            body.to_string().as_bytes(),
        )
    };
    let explained = |answer: &serde_json::Value| {
        assert_eq!(answer["decision"], "permit", "{answer}");
        answer["timings"]["total_us"].is_u64() && answer["stages"][0]["outcome"] == "permit"
    };
    let plain = gateway.decide(&body).json();
    assert!(
        plain.get("timings").is_none() && plain.get("stages").is_none(),
        "{plain}"
    );
    assert!(!explained(&post("/v1/decide?explain=false", &body).json()));
    assert!(explained(&post("/v1/decide?explain=true", &body).json()));
    // The body is the one request shape (AccessRequest): asking there is an unknown field,
    // refused like any other, not a second way to ask.
    let mut asked = body.clone();
    asked["explain"] = json!(true);
    let refused = gateway.decide(&asked);
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert!(
        refused.text().contains("unknown field `explain`"),
        "{}",
        refused.text()
    );
    // A parameter that would do nothing is refused, not ignored.
    for query in [
        "explain=yes",
        "explain=true&explain=true",
        "verbose=true",
        "explain",
    ] {
        let refused = post(&format!("/v1/decide?{query}"), &body);
        assert_eq!(refused.status, 400, "{query}: {}", refused.text());
        assert_eq!(
            refused.json()["error"]["code"],
            "invalid-request",
            "{query}"
        );
    }
}

/// Issue #18: with more apps than instance slots, every app still decides, repeatedly and
/// interleaved, through a real gateway whose pool is small (`[engine] pool_instances = 8`,
/// 6 idle warm instances at most, 50 apps).
#[test]
fn more_apps_than_pool_slots_all_decide_through_a_real_gateway() {
    const APPS: usize = 50;
    let mut config = String::from(
        "[engine]\npool_instances = 8\n\n[rate_limit]\nper_originator = { per_second = 10000, burst = 10000 }\n",
    );
    for app in 0..APPS {
        config.push_str(&format!(
            r#"
[[app]]
name = "a{app}"
paths = ["/cse-in/a{app}"]
[[app.plugin]]
plugin = "acp"
config = {{ policies = [ {{ id = "p", pv = {{ acr = [ {{ acor = ["originator:C{app}"], acop = 2 }} ] }} }} ] }}
"#
        ));
    }
    let gateway = Gateway::start(&config, &[]);
    let decide = |app: usize, originator: usize| {
        let answer = gateway.decide_explained(&json!({"originator": format!("C{originator}"),
            "operation": "retrieve", "target": format!("/cse-in/a{app}/x")}));
        assert_eq!(answer.status, 200, "app {app}: {}", answer.text());
        answer.json()
    };
    let strided: Vec<usize> = (0..APPS).map(|i| i * 7 % APPS).collect();
    let forward: Vec<usize> = (0..APPS).collect();
    for order in [&forward, &strided, &forward] {
        for &app in order {
            let own = decide(app, app);
            assert_eq!(own["decision"], "permit", "app {app}: {own}");
            assert_eq!(own["app"], format!("a{app}"));
            let other = decide(app, (app + 1) % APPS);
            assert_eq!(other["decision"], "deny", "app {app}: {other}");
            let failure = &other["stages"][0]["failure"];
            assert!(
                failure.is_null() && other["stages"][0]["outcome"] == "deny",
                "decided by acp, not refused for want of a slot: {other}"
            );
        }
    }
}
