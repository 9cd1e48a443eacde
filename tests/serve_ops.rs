//! Denial-of-service protection (SER-001), metrics, health and graceful shutdown, against a
//! real `palisade serve`. Every loop is bounded in count and time.

#[path = "support/server.rs"]
mod server;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;
use server::{Answer, Gateway, StandInCse};

fn config(upstream: &str, extra: &str) -> String {
    format!(
        r#"
[upstream]
url = "{upstream}"
timeout_ms = 5000

{extra}

[[app]]
name = "lights"
paths = ["/cse-in/lights"]
[[app.plugin]]
plugin = "acp"
config = {{ policies = [ {{ id = "all-read", pv = {{ acr = [ {{ acor = ["all"], acop = 2 }} ] }} }} ] }}

[[app]]
name = "broken"
paths = ["/cse-in/broken"]
limits = {{ quarantine_after = 2, quarantine_base_ms = 60000 }}
[[app.plugin]]
name = "hostile"
plugin = "{hostile}"
config = {{ attack = "panic" }}
"#,
        hostile = palisade_artifacts::HOSTILE_PATH
    )
}

fn read(originator: &str) -> serde_json::Value {
    json!({"originator": originator, "operation": "retrieve", "target": "/cse-in/lights/a"})
}

#[test]
fn a_flooding_originator_is_limited_while_others_keep_their_answers() {
    let gateway = Gateway::start(
        &config(
            "http://127.0.0.1:9",
            "[rate_limit]\nper_originator = { per_second = 5, burst = 10 }",
        ),
        &[],
    );
    let (mut limited, mut served, mut others_served) = (0, 0, 0);
    let started = Instant::now();
    for round in 0..100 {
        let response = gateway.decide(&read("CFLOOD"));
        match response.status {
            429 => {
                limited += 1;
                assert_eq!(response.json()["error"]["code"], "rate-limited");
                assert!(response.header("retry-after").is_some());
            }
            200 => served += 1,
            other => panic!("unexpected {other}: {}", response.text()),
        }
        if round % 10 == 0 {
            let other = gateway.decide(&read(&format!("CQUIET{round}")));
            assert_eq!(other.status, 200, "another originator is never starved");
            let steady = gateway.decide(&read("CSTEADY"));
            assert_eq!(
                steady.status, 200,
                "a steady originator within its rate is never starved"
            );
            others_served += 2;
        }
    }
    assert!(limited >= 50, "limited {limited}, served {served}");
    assert!(served >= 10, "the burst is served: {served}");
    assert_eq!(others_served, 20);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "refusals are quick"
    );
    // The proxy is limited per originator too, with a oneM2M answer.
    let proxied = gateway.request(
        "GET",
        "/cse-in/lights/a",
        &[("X-M2M-Origin", "CFLOOD"), ("X-M2M-RI", "r")],
        b"",
    );
    assert_eq!(
        (proxied.status, proxied.header("x-m2m-rsc")),
        (500, Some("5000"))
    );
    let metrics = gateway.metrics();
    let count = metrics
        .lines()
        .find(|line| line.starts_with(r#"palisade_rate_limited_total{key="originator"}"#))
        .and_then(|line| line.split_whitespace().last()?.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(count > limited as u64, "{metrics}");
}

#[test]
fn oversize_and_slow_bodies_and_slow_headers_are_cut_off() {
    let gateway = Gateway::start(
        &config(
            "http://127.0.0.1:9",
            "[limits]\nmax_body_bytes = 1024\nheader_read_timeout_ms = 500\nbody_read_timeout_ms = 500",
        ),
        &[],
    );
    // An announced oversize body is refused before it is read.
    let mut stream = TcpStream::connect(gateway.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"POST /v1/decide HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n")
        .unwrap();
    let response = server::read_response(&mut stream).unwrap();
    assert_eq!(response.status, 413);
    assert_eq!(response.json()["error"]["code"], "body-too-large");

    // A body that trickles in is cut off after the body timeout.
    let started = Instant::now();
    let mut stream = TcpStream::connect(gateway.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"POST /v1/decide HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"orig")
        .unwrap();
    let response = server::read_response(&mut stream).unwrap();
    assert_eq!(response.status, 408);
    assert_eq!(response.json()["error"]["code"], "body-timeout");
    assert!(started.elapsed() < Duration::from_secs(3));

    // Slow-loris: headers that never end; the connection is closed after the header timeout.
    let started = Instant::now();
    let mut stream = TcpStream::connect(gateway.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: 1")
        .unwrap();
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "closed after {:?}",
        started.elapsed()
    );
    assert!(
        rest.is_empty() || rest.starts_with(b"HTTP/1.1 408"),
        "{:?}",
        String::from_utf8_lossy(&rest)
    );
    // Meanwhile, others are served.
    assert_eq!(gateway.decide(&read("CAE1")).status, 200);
    let metrics = gateway.metrics();
    assert!(
        metrics.contains(r#"palisade_rejected_total{reason="body-too-large"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"palisade_rejected_total{reason="body-timeout"} 1"#),
        "{metrics}"
    );
}

#[test]
fn beyond_the_in_flight_limit_requests_get_503_at_once() {
    let cse = StandInCse::start(|_| {
        let mut answer = Answer::json(200, 2000, "{}");
        answer.delay = Duration::from_millis(1500);
        answer
    });
    let gateway = Gateway::start(&config(&cse.url(), "[limits]\nmax_in_flight = 1"), &[]);
    let addr = gateway.addr;
    let slow = std::thread::spawn(move || {
        server::http(
            addr,
            "GET",
            "/cse-in/lights/a",
            &[("X-M2M-Origin", "CAE1"), ("X-M2M-RI", "r")],
            b"",
        )
    });
    std::thread::sleep(Duration::from_millis(400));
    let started = Instant::now();
    let refused = gateway.decide(&read("CAE2"));
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.json()["error"]["code"], "overloaded");
    assert!(refused.header("retry-after").is_some());
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "answered at once, not queued"
    );
    let proxied = gateway.request(
        "GET",
        "/cse-in/lights/b",
        &[("X-M2M-Origin", "CAE3"), ("X-M2M-RI", "r")],
        b"",
    );
    assert_eq!(
        (proxied.status, proxied.header("x-m2m-rsc")),
        (500, Some("5000"))
    );
    assert_eq!(slow.join().unwrap().status, 200);
    assert_eq!(
        gateway.decide(&read("CAE2")).status,
        200,
        "capacity is back"
    );
    assert!(gateway
        .metrics()
        .contains(r#"palisade_rejected_total{reason="overloaded"} 2"#));
}

#[test]
fn metrics_and_health_report_decisions_failures_and_quarantine() {
    let gateway = Gateway::start(&config("http://127.0.0.1:9", ""), &[]);
    assert_eq!(gateway.decide(&read("CAE1")).json()["decision"], "permit");
    // One originator's failures alone never quarantine a plugin for the application (see
    // sandbox/quarantine.rs): three originators fail, the fourth finds it quarantined.
    for originator in ["CAE1", "CAE2", "CAE3", "CAE4"] {
        let broken = gateway.decide(&json!({"originator": originator, "operation": "retrieve", "target": "/cse-in/broken/x"})).json();
        assert_eq!(
            broken["decision"], "deny",
            "a failing plugin denies (fail-closed)"
        );
    }
    let metrics = gateway.metrics();
    for expected in [
        r#"palisade_decisions_total{app="lights",result="permit"} 1"#,
        r#"palisade_decisions_total{app="broken",result="deny"} 4"#,
        r#"palisade_decision_duration_seconds_count{app="lights"} 1"#,
        r#"palisade_decision_duration_seconds_bucket{app="lights",le="+Inf"} 1"#,
        r#"palisade_plugin_failures_total{app="broken",plugin="hostile",code="trap"} 3"#,
        r#"palisade_plugin_failures_total{app="broken",plugin="hostile",code="quarantined"} 1"#,
        r#"palisade_plugin_quarantined{app="broken",plugin="hostile"} 1"#,
        "# TYPE palisade_rate_limited_total counter",
    ] {
        assert!(
            metrics.contains(expected),
            "missing {expected} in\n{metrics}"
        );
    }
    let health = gateway.request("GET", "/health", &[], b"");
    assert_eq!(health.status, 200);
    let health = health.json();
    assert_eq!(health["status"], "degraded");
    let broken = health["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|app| app["app"] == "broken")
        .unwrap();
    assert_eq!(broken["plugins"][0]["name"], "hostile");
    assert_eq!(broken["plugins"][0]["quarantined"], true);
    let lights = health["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|app| app["app"] == "lights")
        .unwrap();
    assert_eq!(lights["plugins"][0]["quarantined"], false);
    assert_eq!(lights["paths"], json!(["/cse-in/lights"]));
}

#[test]
fn sigterm_finishes_in_flight_requests_then_exits() {
    let cse = StandInCse::start(|_| {
        let mut answer = Answer::json(200, 2000, r#"{"done":true}"#);
        answer.delay = Duration::from_millis(1000);
        answer
    });
    let mut gateway = Gateway::start(&config(&cse.url(), ""), &[]);
    let addr = gateway.addr;
    let in_flight = std::thread::spawn(move || {
        server::http(
            addr,
            "GET",
            "/cse-in/lights/a",
            &[("X-M2M-Origin", "CAE1"), ("X-M2M-RI", "r")],
            b"",
        )
    });
    std::thread::sleep(Duration::from_millis(300));
    let status = gateway.terminate();
    assert!(status.success(), "exit status {status}");
    let response = in_flight.join().unwrap();
    assert_eq!(
        response.status,
        200,
        "the in-flight request finished: {}",
        response.text()
    );
    assert_eq!(response.json(), json!({"done": true}));
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "no longer listening"
    );
}
