//! The proxy's edge as documented, walked against a real `palisade serve` and a stand-in CSE
//! (a real HTTP server on 127.0.0.1): docs/proxy.md's method/`ty`/`fu` table row by row
//! (issue 13.3: `ty` only on POST, the operation TS-0009 derives), and TS-0009's status
//! mapping for every answer the gateway makes itself (issue 13.9).

use crate::support::server;

use server::{Answer, Gateway, Response, StandInCse};

/// One originator per operation, each allowed that operation alone (TS-0004 `acop` bits):
/// a request is forwarded only when the gateway decided it as that operation.
const POLICY: &str = r#"{"policies":[{"id":"ops","pv":{"acr":[
  {"acor":["originator:C-create"],"acop":1},
  {"acor":["originator:C-retrieve"],"acop":2},
  {"acor":["originator:C-update"],"acop":4},
  {"acor":["originator:C-delete"],"acop":8},
  {"acor":["originator:C-notify"],"acop":16},
  {"acor":["originator:C-discovery"],"acop":32},
  {"acor":["originator:CAE1"],"acop":63}
]}}]}"#;

const OPERATIONS: [&str; 6] = [
    "create",
    "retrieve",
    "update",
    "delete",
    "notify",
    "discovery",
];

fn cse() -> StandInCse {
    StandInCse::start(|_| Answer::json(200, 2000, "{}"))
}

fn gateway(upstream: &str, extra: &str) -> Gateway {
    let config = format!(
        r#"
{extra}
[upstream]
url = "{upstream}"
timeout_ms = 1500
connect_timeout_ms = 500

[[app]]
name = "ops"
paths = ["/cse-in/ops"]
[[app.plugin]]
plugin = "acp"
config_file = "policy.json"
"#
    );
    Gateway::start(&config, &[("policy.json", POLICY)])
}

/// A row of docs/proxy.md's method table.
#[derive(Debug)]
struct Row {
    method: String,
    query: String,
    content_type: Option<String>,
    twice: bool,
    expected: Expected,
}

#[derive(Debug, PartialEq)]
enum Expected {
    Operation(String),
    Refused(u16, String),
}

fn documented_rows() -> Vec<Row> {
    let docs = include_str!("../../docs/proxy.md");
    let table = docs
        .split("<!-- method-table:start -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- method-table:end -->").next())
        .expect("docs/proxy.md has the method table between its markers");
    let rows: Vec<Row> = table
        .lines()
        .filter(|line| line.starts_with('|') && !line.starts_with("|---"))
        .skip(1) // the header
        .map(|line| {
            let cells: Vec<&str> = line
                .trim()
                .trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect();
            assert_eq!(cells.len(), 4, "{line}");
            let unquote = |cell: &str| cell.trim_matches('`').to_string();
            let (twice, content_type) = match cells[2].strip_prefix("twice:") {
                Some(rest) => (true, unquote(rest.trim())),
                None => (false, unquote(cells[2])),
            };
            let expected = match cells[3].split_once(' ') {
                Some((status, rsc)) => Expected::Refused(
                    status.parse().unwrap_or_else(|_| panic!("{line}")),
                    rsc.to_string(),
                ),
                None => {
                    assert!(OPERATIONS.contains(&cells[3]), "{line}");
                    Expected::Operation(cells[3].to_string())
                }
            };
            Row {
                method: cells[0].to_string(),
                query: unquote(cells[1]),
                content_type: (!content_type.is_empty()).then_some(content_type),
                twice,
                expected,
            }
        })
        .collect();
    assert!(rows.len() >= 30, "the table has {} rows", rows.len());
    rows
}

fn send(gateway: &Gateway, row: &Row, originator: &str, ri: &str) -> Response {
    let path = if row.query.is_empty() {
        "/cse-in/ops/thing".to_string()
    } else {
        format!("/cse-in/ops/thing?{}", row.query)
    };
    let mut headers = vec![("X-M2M-Origin", originator), ("X-M2M-RI", ri)];
    if let Some(content_type) = &row.content_type {
        headers.push(("Content-Type", content_type.as_str()));
        if row.twice {
            headers.push(("Content-Type", content_type.as_str()));
        }
    }
    gateway.request(&row.method, &path, &headers, b"{}")
}

#[test]
fn the_documented_method_table_holds_through_a_real_proxy() {
    let cse = cse();
    let gateway = gateway(&cse.url(), "");
    for (index, row) in documented_rows().iter().enumerate() {
        let before = cse.received.lock().unwrap().len();
        let ri = format!("row-{index}");
        match &row.expected {
            Expected::Operation(operation) => {
                let response = send(&gateway, row, &format!("C-{operation}"), &ri);
                assert_eq!(response.status, 200, "{row:?}: {}", response.text());
                let received = cse.received.lock().unwrap();
                assert_eq!(received.len(), before + 1, "{row:?}");
                let forwarded = &received[before];
                assert_eq!(forwarded.method, row.method, "{row:?}");
                let expected_type = row.content_type.as_deref().map(|text| {
                    palisade_gateway::parse_content_type(text)
                        .unwrap()
                        .0
                        .to_str()
                        .unwrap()
                        .to_string()
                });
                assert_eq!(
                    forwarded.headers.get("content-type").cloned(),
                    expected_type,
                    "{row:?}"
                );
                drop(received);
                // Decided as that operation and no other: every other operation's
                // originator is denied by the gateway.
                for other in OPERATIONS.iter().filter(|other| *other != operation) {
                    let response = send(&gateway, row, &format!("C-{other}"), &ri);
                    assert_eq!(
                        (response.status, response.header("x-m2m-rsc")),
                        (403, Some("4103")),
                        "{row:?} as {other}"
                    );
                }
            }
            Expected::Refused(status, rsc) => {
                // Refused whoever asks, even an originator allowed everything.
                let response = send(&gateway, row, "CAE1", &ri);
                assert_eq!(
                    (response.status, response.header("x-m2m-rsc")),
                    (*status, Some(rsc.as_str())),
                    "{row:?}: {}",
                    response.text()
                );
                assert_eq!(response.header("x-m2m-ri"), Some(ri.as_str()));
                assert!(response.json()["m2m:dbg"].is_string(), "{row:?}");
            }
        }
        if !matches!(row.expected, Expected::Operation(_)) {
            assert_eq!(
                cse.received.lock().unwrap().len(),
                before,
                "{row:?} reached the CSE"
            );
        }
    }
}

/// An answer made by the gateway has the HTTP status TS-0009 maps its RSC to.
fn assert_mapped(what: &str, response: &Response, rsc: u32) {
    assert_eq!(
        response.header("x-m2m-rsc"),
        Some(rsc.to_string().as_str()),
        "{what}: {}",
        response.text()
    );
    assert_eq!(
        response.status,
        palisade_gateway::onem2m_http_status(rsc).as_u16(),
        "{what}: {}",
        response.text()
    );
    assert!(response.json()["m2m:dbg"].is_string(), "{what}");
}

#[test]
fn every_gateway_answer_has_the_http_status_of_its_rsc() {
    let mut cse = cse();
    let gateway = gateway(
        &cse.url(),
        "[rate_limit]\nper_originator = { per_second = 1, burst = 3 }\n[limits]\nmax_body_bytes = 1024",
    );
    let headers = |origin: &'static str| vec![("X-M2M-Origin", origin), ("X-M2M-RI", "r")];
    let get =
        |origin: &'static str, path: &str| gateway.request("GET", path, &headers(origin), b"");

    // 4000: malformed, oversized part, oversized body.
    assert_mapped("malformed", &get("CAE1", "/cse-in/ops/../x"), 4000);
    let long = format!("/cse-in/ops/{}", "p".repeat(5000));
    assert_mapped("oversized path", &get("CAE1", &long), 4000);
    let body = vec![b'x'; 4096];
    assert_mapped(
        "oversized body",
        &gateway.request("PUT", "/cse-in/ops/a", &headers("CAE1"), &body),
        4000,
    );
    // 4005: not a oneM2M method.
    assert_mapped(
        "method",
        &gateway.request("PATCH", "/cse-in/ops/a", &headers("CAE1"), b""),
        4005,
    );
    // 4103: no application, denied by the policy.
    assert_mapped("no app", &get("CAE1", "/cse-in/elsewhere"), 4103);
    assert_mapped("denied", &get("C-create", "/cse-in/ops/a"), 4103);
    // 5000: rate-limited (with Retry-After).
    let limited = (0..10)
        .map(|_| get("CFLOOD", "/cse-in/ops/a"))
        .find(|response| response.header("x-m2m-rsc") == Some("5000"))
        .expect("the originator is rate-limited within 10 requests");
    assert_mapped("rate-limited", &limited, 5000);
    assert!(limited.header("retry-after").is_some());
    // 5103: the CSE gone.
    cse.stop();
    assert_mapped("CSE gone", &get("C-retrieve", "/cse-in/ops/a"), 5103);

    // 5103: no upstream at all.
    let alone = Gateway::start(
        r#"
[[app]]
name = "ops"
paths = ["/cse-in/ops"]
[[app.plugin]]
plugin = "acp"
config_file = "policy.json"
"#,
        &[("policy.json", POLICY)],
    );
    assert_mapped(
        "no upstream",
        &alone.request("GET", "/cse-in/ops/a", &headers("C-retrieve"), b""),
        5103,
    );
}
