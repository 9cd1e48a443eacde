//! The oneM2M enforcement proxy against a real `palisade serve` and a stand-in CSE (a real
//! HTTP server on 127.0.0.1): permitted requests reach the CSE and come back through the
//! filters (SER-026), denied ones are answered 4103 and never forwarded (SER-008), an
//! unreachable or silent CSE is answered 5103 in bounded time, and decisions keep working
//! with the CSE gone (SER-007).

use crate::support::server;

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
    // A CSE that does not answer in time: 5103 (HTTP 404 by TS-0009's table) after the 1.5 s timeout, not a hang.
    let started = Instant::now();
    let slow = gateway.request("GET", "/cse-in/lights/slow", &onem2m("CAE1", "req-s"), b"");
    assert_eq!((slow.status, slow.header("x-m2m-rsc")), (404, Some("5103")));
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
        (404, Some("5103")),
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

/// `(status, X-M2M-RSC, m2m:dbg)` of a gateway answer.
fn refusal(response: &server::Response) -> (u16, String, String) {
    (
        response.status,
        response.header("x-m2m-rsc").unwrap_or("").to_string(),
        response.json()["m2m:dbg"]
            .as_str()
            .unwrap_or("")
            .to_string(),
    )
}

/// Issue 11.4, the edge half: a 5 KB path or originator used to reach the acp plugin, make
/// its deny reason exceed 4 KiB, count as its failure and, five times over, quarantine it
/// for everyone. Now every part plugins see is bounded before the request is decided: the
/// refusals name their limit, no decision is made, nothing is forwarded, and the app goes
/// on permitting its legitimate originators.
#[test]
fn oversized_requests_are_refused_at_the_edge_before_any_plugin_runs() {
    let cse = cse();
    let gateway = gateway(&cse);
    let long_path = format!("/cse-in/lights/{}", "p".repeat(5000));
    let long = "O".repeat(5000);
    let auth = format!("Bearer {}", "t".repeat(5000));
    let ri = "r".repeat(300);
    let content_type = format!("application/json;ty=4;x={}", "c".repeat(300));
    let rvi = "3".repeat(300);
    let query = format!("/cse-in/lights/a?lbl={}", "q".repeat(3000));
    for _ in 0..10 {
        let (status, rsc, dbg) =
            refusal(&gateway.request("GET", &long_path, &onem2m("CAE1", "r"), b""));
        assert_eq!((status, rsc.as_str()), (400, "4000"), "{dbg}");
        assert!(dbg.contains("max_path_bytes"), "{dbg}");
        let (status, rsc, dbg) =
            refusal(&gateway.request("GET", "/cse-in/lights/a", &onem2m(&long, "r"), b""));
        assert_eq!((status, rsc.as_str()), (400, "4000"), "{dbg}");
        assert!(dbg.contains("max_originator_bytes"), "{dbg}");
    }
    for (path, headers, limit, status) in [
        (
            "/cse-in/lights/a",
            vec![("X-M2M-Origin", "CAE1"), ("X-M2M-RI", ri.as_str())],
            "max_request_id_bytes",
            400,
        ),
        (
            "/cse-in/lights/a",
            vec![
                ("X-M2M-Origin", "CAE1"),
                ("X-M2M-RI", "r"),
                ("Authorization", auth.as_str()),
            ],
            "max_authorization_bytes",
            400,
        ),
        (
            "/cse-in/lights/a",
            vec![
                ("X-M2M-Origin", "CAE1"),
                ("X-M2M-RI", "r"),
                ("Content-Type", content_type.as_str()),
            ],
            "max_header_bytes",
            400,
        ),
        (
            "/cse-in/lights/a",
            vec![
                ("X-M2M-Origin", "CAE1"),
                ("X-M2M-RI", "r"),
                ("X-M2M-RVI", rvi.as_str()),
            ],
            "max_header_bytes",
            400,
        ),
        (query.as_str(), onem2m("CAE1", "r"), "max_query_bytes", 400),
    ] {
        let response = gateway.request("POST", path, &headers, b"{}");
        let (got, rsc, dbg) = refusal(&response);
        assert_eq!((got, rsc.as_str()), (status, "4000"), "{limit}: {dbg}");
        assert!(dbg.contains(limit), "{dbg}");
        // An oversized request id is not echoed back either.
        assert!(response.header("x-m2m-ri").is_none_or(|ri| ri.len() <= 256));
    }
    // Just within the bounds: decided as usual.
    let at_limit = "o".repeat(256);
    let within = gateway.request("GET", "/cse-in/lights/a", &onem2m(&at_limit, "r"), b"");
    assert_eq!(
        within.header("x-m2m-rsc"),
        Some("4103"),
        "{}",
        within.text()
    );
    // No plugin ran for the refused ones: one decision (the one within bounds), no failure,
    // no quarantine, and the legitimate originator is still permitted.
    let metrics = gateway.metrics();
    assert!(
        metrics.contains(r#"palisade_decisions_total{app="lights",result="deny"} 1"#),
        "{metrics}"
    );
    assert!(
        !metrics.contains("palisade_plugin_failures_total{"),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"palisade_rejected_total{reason="too-long"} 25"#),
        "{metrics}"
    );
    let fine = gateway.request("GET", "/cse-in/lights/pos", &onem2m("CAE1", "ok"), b"");
    assert_eq!(fine.header("x-m2m-rsc"), Some("2000"), "{}", fine.text());
    assert_eq!(
        cse.received.lock().unwrap().len(),
        1,
        "only the permitted one"
    );
}

/// Issue 11.7: a oneM2M header given twice is refused (4000), never forwarded: the gateway
/// would judge one and the CSE might act on the other.
#[test]
fn duplicate_onem2m_headers_are_refused() {
    let cse = cse();
    let gateway = gateway(&cse);
    let base = [
        ("X-M2M-Origin", "CAE1"),
        ("X-M2M-RI", "r1"),
        ("X-M2M-RVI", "3"),
        ("Content-Type", "application/json;ty=4"),
    ];
    for (name, second) in [
        ("X-M2M-Origin", "CAE9"),
        ("X-M2M-RI", "r2"),
        ("X-M2M-RVI", "4"),
        ("Content-Type", "application/json;ty=2"),
        ("Authorization", "Bearer b"),
        ("X-M2M-RTU", "http://b"),
        ("X-M2M-Anything", "b"),
        ("Accept", "application/xml"),
    ] {
        let mut headers = base.to_vec();
        if !base.iter().any(|(present, _)| *present == name) {
            headers.push((name, "first"));
        }
        headers.push((name, second));
        let response = gateway.request("POST", "/cse-in/lights/cnt", &headers, b"{}");
        let (status, rsc, dbg) = refusal(&response);
        assert_eq!((status, rsc.as_str()), (400, "4000"), "{name}: {dbg}");
        assert!(
            dbg.contains(&name.to_ascii_lowercase()) && dbg.contains("more than once"),
            "{dbg}"
        );
    }
    assert!(cse.received.lock().unwrap().is_empty(), "nothing forwarded");
}

/// Issue 11.7: `Connection: X-M2M-Origin` used to strip the originator after the decision.
/// Naming an end-to-end header the decision uses or the CSE needs is refused; naming any
/// other header is allowed, and that header is not forwarded (nor is anything off the
/// allow-list).
#[test]
fn connection_cannot_make_onem2m_headers_hop_by_hop() {
    let cse = cse();
    let gateway = gateway(&cse);
    for named in [
        "X-M2M-Origin",
        "x-m2m-ri",
        "Content-Type",
        "Authorization",
        "X-M2M-Private",
    ] {
        let mut headers = onem2m("CAE1", "r");
        headers.push(("Connection", named));
        let (status, rsc, dbg) =
            refusal(&gateway.request("GET", "/cse-in/lights/a", &headers, b""));
        assert_eq!((status, rsc.as_str()), (400, "4000"), "{named}: {dbg}");
        assert!(dbg.contains("Connection names"), "{dbg}");
    }
    assert!(cse.received.lock().unwrap().is_empty());
    let mut headers = onem2m("CAE1", "r");
    headers.extend([("Connection", "x-trace"), ("X-Trace", "1")]);
    let response = gateway.request("GET", "/cse-in/lights/a", &headers, b"");
    assert_eq!(
        response.header("x-m2m-rsc"),
        Some("2000"),
        "{}",
        response.text()
    );
    let received = cse.received.lock().unwrap().clone();
    assert_eq!(received[0].headers["x-m2m-origin"], "CAE1");
    assert!(!received[0].headers.contains_key("x-trace"));
}

/// Issue 11.7: `ty` and the other media-type parameters are read strictly, and the CSE
/// receives the content type rebuilt from what was decided.
#[test]
fn content_types_are_parsed_strictly_and_forwarded_as_decided() {
    let cse = cse();
    let gateway = gateway(&cse);
    let with_type = |method: &str, content_type: &str| {
        let mut headers = onem2m("CAE1", "r");
        headers.push(("Content-Type", content_type));
        gateway.request(method, "/cse-in/lights/cnt", &headers, b"{}")
    };
    for malformed in [
        "application/json;ty=4;ty=2",
        "application/json; ty=4; TY=2",
        "application/json;charset=utf-8;charset=latin1",
        "application/json;ty=+4",
        "application/json;ty=\"4\"",
        "application/json;ty",
        "application/json;",
        "json;ty=4",
    ] {
        let (status, rsc, dbg) = refusal(&with_type("POST", malformed));
        assert_eq!((status, rsc.as_str()), (400, "4000"), "{malformed}: {dbg}");
        assert!(dbg.contains("Content-Type"), "{dbg}");
    }
    // ty names the type of a resource being created: on anything but POST it is refused.
    let (status, rsc, dbg) = refusal(&with_type("PUT", "application/json;ty=4"));
    assert_eq!((status, rsc.as_str()), (400, "4000"), "{dbg}");
    assert!(dbg.contains("only a POST"), "{dbg}");
    assert!(cse.received.lock().unwrap().is_empty());
    let created = with_type("POST", "Application/JSON ; TY=04 ; charset=utf-8");
    assert_eq!(
        created.header("x-m2m-rsc"),
        Some("2001"),
        "{}",
        created.text()
    );
    let received = cse.received.lock().unwrap().clone();
    assert_eq!(
        received[0].headers["content-type"],
        "application/json;ty=4;charset=utf-8"
    );
}

/// Issue 11.7: the path is read once. What would be ambiguous between the gateway and the
/// CSE (`..;`, `;` parameters, dot and empty segments, encoded separators, double
/// encoding) is refused; encoded unreserved characters are decoded, and the CSE receives
/// the canonical form of the path that was decided.
#[test]
fn paths_are_normalised_once_and_forwarded_as_decided() {
    let cse = cse();
    let gateway = gateway(&cse);
    for path in [
        "/cse-in/lights/..;/meters/m1",
        "/cse-in/lights;x=1/a",
        "/cse-in/lights/a;jsessionid=1",
        "/cse-in/lights/../meters/m1",
        "/cse-in/lights/%2e%2e/meters",
        "/cse-in/lights/./a",
        "/cse-in//lights/a",
        "/cse-in/lights/a/",
        "/cse-in/lights%2Fa",
        "/cse-in/lights/%252e%252e/x",
        "/cse-in/lights/%5c..%5cmeters",
        "/cse-in/lights/%00",
        "/cse-in/lights/%e9",
    ] {
        let (status, rsc, dbg) = refusal(&gateway.request("GET", path, &onem2m("CAE1", "r"), b""));
        assert_eq!((status, rsc.as_str()), (400, "4000"), "{path}: {dbg}");
    }
    assert!(
        cse.received.lock().unwrap().is_empty(),
        "nothing ambiguous forwarded"
    );
    let response = gateway.request(
        "GET",
        "/cse-in/%6cights/a%20b/%C3%A9?rcn=%31&lbl=x+y",
        &onem2m("CAE1", "r"),
        b"",
    );
    assert_eq!(
        response.header("x-m2m-rsc"),
        Some("2000"),
        "{}",
        response.text()
    );
    let received = cse.received.lock().unwrap().clone();
    assert_eq!(
        received[0].path,
        "/cse-in/lights/a%20b/%C3%A9?rcn=1&lbl=x+y"
    );
    // Query parameters are read once too: a second fu (or any repeated name) is refused.
    let (status, _, dbg) = refusal(&gateway.request(
        "GET",
        "/cse-in/lights/a?fu=2&fu=1",
        &onem2m("CAE2", "r"),
        b"",
    ));
    assert_eq!(status, 400, "{dbg}");
    let (status, _, dbg) =
        refusal(&gateway.request("GET", "/cse-in/lights/a?fu=01", &onem2m("CAE2", "r"), b""));
    assert_eq!(status, 400, "{dbg}");
}

/// Issue 11.7: the CSE receives the request rebuilt from the decision: the decided
/// originator once, the request id, the allow-listed oneM2M headers, the body, and nothing
/// else the client sent (cookies, forwarding headers, unknown `X-M2M-*`, encodings).
#[test]
fn only_the_decided_request_and_allow_listed_headers_reach_the_cse() {
    let cse = cse();
    let gateway = gateway(&cse);
    let headers = [
        ("X-M2M-Origin", "CAE1"),
        ("X-M2M-RI", "req-7"),
        ("X-M2M-RVI", "3"),
        ("X-M2M-RTU", "http://127.0.0.1:1/notify"),
        ("X-M2M-OT", "20261128T101500"),
        ("X-M2M-RET", "20261128T111500"),
        ("Accept", "application/json"),
        ("Content-Type", "application/json;ty=4"),
        ("Authorization", "Bearer not-checked-by-this-app"),
        ("X-M2M-Impersonate", "CAE9"),
        ("X-Forwarded-For", "10.0.0.1"),
        ("Cookie", "session=1"),
        ("Accept-Encoding", "gzip"),
        ("Forwarded", "for=10.0.0.1"),
    ];
    let response = gateway.request("POST", "/cse-in/lights/cnt", &headers, br#"{"m2m:cnt":{}}"#);
    assert_eq!(
        response.header("x-m2m-rsc"),
        Some("2001"),
        "{}",
        response.text()
    );
    let received = cse.received.lock().unwrap().clone();
    let mut names: Vec<&str> = received[0].headers.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "accept",
            "authorization",
            "content-length",
            "content-type",
            "host",
            "x-m2m-origin",
            "x-m2m-ot",
            "x-m2m-ret",
            "x-m2m-ri",
            "x-m2m-rtu",
            "x-m2m-rvi",
        ]
    );
    assert_eq!(received[0].headers["x-m2m-origin"], "CAE1");
    assert_eq!(received[0].headers["x-m2m-ri"], "req-7");
    assert_eq!(
        received[0].headers["authorization"],
        "Bearer not-checked-by-this-app"
    );
    assert_eq!(received[0].body, br#"{"m2m:cnt":{}}"#);
    assert_eq!(received[0].method, "POST");
}
