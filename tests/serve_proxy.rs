//! The oneM2M enforcement proxy against a real `palisade serve` and a stand-in CSE (a real
//! HTTP server on 127.0.0.1): permitted requests reach the CSE and come back through the
//! filters (SER-026), denied ones are answered 4103 and never forwarded (SER-008), an
//! unreachable or silent CSE is answered 5103 in bounded time, and decisions keep working
//! with the CSE gone (SER-007).

#[path = "support/server.rs"]
mod server;

use std::time::{Duration, Instant};

use serde_json::json;
use server::{Answer, Gateway, StandInCse};

const POLICY: &str = r#"{"policies":[{"id":"lights","pv":{"acr":[
  {"acor":["originator:CAE1"],"acop":63},
  {"acor":["originator:CAE2"],"acop":2},
  {"acor":["originator:CAE3"],"acop":1}
]}}]}"#;

fn cse() -> StandInCse {
    StandInCse::start(|request| {
        if request.path.starts_with("/cse-in/lights/slow") {
            let mut answer = Answer::json(200, 2000, "{}");
            answer.delay = Duration::from_secs(4);
            return answer;
        }
        match request.method.as_str() {
            "POST" => Answer::json(201, 2001, r#"{"m2m:cin":{"rn":"cin1"}}"#),
            _ => Answer::json(
                200,
                2000,
                r#"{"m2m:cin":{"rn":"pos","con":{"lat":48.856613,"lon":2.352222}}}"#,
            ),
        }
    })
}

fn gateway(cse: &StandInCse) -> Gateway {
    let config = format!(
        r#"
[upstream]
url = "{}"
timeout_ms = 1500
connect_timeout_ms = 500

[[app]]
name = "lights"
paths = ["/cse-in/lights"]
[[app.plugin]]
plugin = "acp"
config_file = "policy.json"
[[app.plugin]]
plugin = "geo-privacy"
config = {{ mode = "coarsen", decimals = 2, non_json = "pass" }}
"#,
        cse.url()
    );
    Gateway::start(&config, &[("policy.json", POLICY)])
}

fn onem2m<'a>(origin: &'a str, ri: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("X-M2M-Origin", origin),
        ("X-M2M-RI", ri),
        ("X-M2M-RVI", "3"),
    ]
}

#[test]
fn permitted_requests_reach_the_cse_and_answers_pass_the_filters() {
    let cse = cse();
    let gateway = gateway(&cse);
    let response = gateway.request(
        "GET",
        "/cse-in/lights/pos?rcn=1",
        &onem2m("CAE1", "req-1"),
        b"",
    );
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("x-m2m-rsc"), Some("2000"));
    assert_eq!(
        response.header("x-m2m-ri"),
        Some("req-1"),
        "X-M2M-RI is echoed"
    );
    assert_eq!(response.header("x-m2m-rvi"), Some("3"));
    assert_eq!(
        response.header("x-palisade-decision-id").map(str::len),
        Some(32)
    );
    // SER-026: the geo-privacy filter coarsened the position.
    assert_eq!(
        response.json(),
        json!({"m2m:cin":{"rn":"pos","con":{"lat":48.86,"lon":2.35}}})
    );
    let received = cse.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].method, "GET");
    assert_eq!(received[0].path, "/cse-in/lights/pos?rcn=1");
    // The CSE is trusted with the real originator; only the plugins see pseudonyms.
    assert_eq!(received[0].headers["x-m2m-origin"], "CAE1");
    assert_eq!(received[0].headers["x-m2m-ri"], "req-1");

    let mut headers = onem2m("CAE1", "req-2");
    headers.push(("Content-Type", "application/json;ty=4"));
    let created = gateway.request(
        "POST",
        "/cse-in/lights/cnt",
        &headers,
        br#"{"m2m:cin":{"con":"on"}}"#,
    );
    assert_eq!(
        (created.status, created.header("x-m2m-rsc")),
        (201, Some("2001"))
    );
    let received = cse.received.lock().unwrap().clone();
    assert_eq!(received[1].body, br#"{"m2m:cin":{"con":"on"}}"#);
    assert_eq!(received[1].headers["content-type"], "application/json;ty=4");
}

#[test]
fn denied_requests_get_4103_and_never_reach_the_cse() {
    let cse = cse();
    let gateway = gateway(&cse);
    for (method, path, origin) in [
        ("DELETE", "/cse-in/lights/lamp", "CAE2"),
        ("GET", "/cse-in/lights/lamp", "CAE9"),
        ("GET", "/cse-in/meters/m1", "CAE1"),
    ] {
        let response = gateway.request(method, path, &onem2m(origin, "req-9"), b"");
        assert_eq!(
            response.status,
            403,
            "{method} {path} by {origin}: {}",
            response.text()
        );
        assert_eq!(response.header("x-m2m-rsc"), Some("4103"));
        assert_eq!(response.header("x-m2m-ri"), Some("req-9"));
        assert!(response.json()["m2m:dbg"]
            .as_str()
            .unwrap()
            .contains("denied"));
    }
    assert!(
        cse.received.lock().unwrap().is_empty(),
        "nothing denied was forwarded"
    );
}

#[test]
fn methods_content_types_and_queries_map_to_operations() {
    let cse = cse();
    let gateway = gateway(&cse);
    let status = |method: &str, path: &str, origin: &str, content_type: Option<&str>| {
        let mut headers = onem2m(origin, "r");
        if let Some(content_type) = content_type {
            headers.push(("Content-Type", content_type));
        }
        gateway
            .request(method, path, &headers, b"{}")
            .header("x-m2m-rsc")
            .unwrap()
            .to_string()
    };
    // CAE2 may only retrieve; CAE3 may only create.
    assert_eq!(status("GET", "/cse-in/lights/a", "CAE2", None), "2000");
    assert_eq!(
        status("GET", "/cse-in/lights/a?fu=1&lbl=x", "CAE2", None),
        "4103",
        "fu=1 is discovery"
    );
    assert_eq!(
        status("PUT", "/cse-in/lights/a", "CAE2", Some("application/json")),
        "4103"
    );
    assert_eq!(
        status(
            "POST",
            "/cse-in/lights/a",
            "CAE3",
            Some("application/json;ty=4")
        ),
        "2001"
    );
    assert_eq!(
        status("POST", "/cse-in/lights/a", "CAE3", Some("application/json")),
        "4103",
        "POST without ty is notify"
    );
    assert_eq!(status("GET", "/cse-in/lights/a", "CAE3", None), "4103");
    // Malformed oneM2M requests: 4000, never forwarded.
    let before = cse.received.lock().unwrap().len();
    let missing = gateway.request("GET", "/cse-in/lights/a", &[("X-M2M-RI", "r")], b"");
    assert_eq!(
        (missing.status, missing.header("x-m2m-rsc")),
        (400, Some("4000"))
    );
    let dotted = gateway.request(
        "GET",
        "/cse-in/lights/%2e%2e/meters",
        &onem2m("CAE1", "r"),
        b"",
    );
    assert_eq!(
        (dotted.status, dotted.header("x-m2m-rsc")),
        (400, Some("4000"))
    );
    assert_eq!(cse.received.lock().unwrap().len(), before);
}

#[test]
fn a_silent_or_missing_cse_is_answered_5103_in_bounded_time_and_decisions_go_on() {
    let mut cse = cse();
    let gateway = gateway(&cse);
    // A CSE that does not answer in time: 504 + 5103 after the 1.5 s timeout, not a hang.
    let started = Instant::now();
    let slow = gateway.request("GET", "/cse-in/lights/slow", &onem2m("CAE1", "req-s"), b"");
    assert_eq!((slow.status, slow.header("x-m2m-rsc")), (504, Some("5103")));
    assert_eq!(slow.header("x-m2m-ri"), Some("req-s"));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // SER-007: cut the upstream.
    cse.stop();
    let started = Instant::now();
    let gone = gateway.request("GET", "/cse-in/lights/a", &onem2m("CAE1", "req-g"), b"");
    assert_eq!(
        (gone.status, gone.header("x-m2m-rsc")),
        (502, Some("5103")),
        "{}",
        gone.text()
    );
    assert!(gone.json()["m2m:dbg"]
        .as_str()
        .unwrap()
        .contains("not reachable"));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // Denies are still local and immediate.
    let deny = gateway.request("DELETE", "/cse-in/lights/a", &onem2m("CAE2", "req-d"), b"");
    assert_eq!(deny.header("x-m2m-rsc"), Some("4103"));
    // Local decisions continue with the upstream down.
    for originator in ["CAE1", "CAE2", "CAE3"] {
        let decision = gateway.decide(&json!({"originator": originator, "operation": "retrieve", "target": "/cse-in/lights/a"}));
        assert_eq!(decision.status, 200);
        let expected = if originator == "CAE3" {
            "deny"
        } else {
            "permit"
        };
        assert_eq!(decision.json()["decision"], expected);
    }
    let metrics = gateway.metrics();
    assert!(
        metrics.contains(r#"palisade_upstream_requests_total{outcome="timeout"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"palisade_upstream_requests_total{outcome="unreachable"} 1"#),
        "{metrics}"
    );
}
