//! The audit shipper's status and its backlog bound (issue #17.3), through real gateways
//! (`palisade serve` with `[audit.ship]`), a real collector and PostgreSQL: `/health`
//! (`audit.ship`) and the metrics (`palisade_audit_ship_*`) while shipping, while the
//! collector is down and after it is back; `on_backlog_full = "deny"` and `"warn"` on both
//! sides of `max_backlog_bytes`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::kill::{gateway_config, lines_in_db, lines_on_disk, start_collector, Gateway};
use crate::support::pg::Postgres;
use crate::support::{self, Fleet};

/// One HTTP/1.1 exchange with the gateway: the status and the body (`None`: no answer).
fn exchange(addr: SocketAddr, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.get(9..12)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    // The bodies read here are small JSON or text; chunked framing is undone.
    let body = if text
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(&body)
    } else {
        body
    };
    Some((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// A decision's status and body.
fn decide_answer(addr: SocketAddr, i: u64) -> (u16, String) {
    let body = format!(
        r#"{{"originator":"CAE{}","operation":"retrieve","target":"/cse-in/lights/lamp{i}"}}"#,
        i % 3
    );
    exchange(addr, "POST", "/v1/decide", &body).expect("the gateway answers")
}

/// `/health`: its status and JSON.
fn health(addr: SocketAddr) -> (u16, serde_json::Value) {
    let (status, body) = exchange(addr, "GET", "/health", "").expect("the gateway answers");
    (
        status,
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}")),
    )
}

/// The value of the unlabelled metric `name` in `/metrics`.
fn metric(addr: SocketAddr, name: &str) -> u64 {
    let (_, text) = exchange(addr, "GET", "/metrics", "").expect("the gateway answers");
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} is not in /metrics"))
}

/// Polls `check` every 50 ms until it holds; fails after `secs` seconds with `what`.
fn eventually(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(Instant::now() < deadline, "not within {secs} s: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The number of the last entry on disk (a gap's last covered seq).
fn last_seq(audit: &Path) -> u64 {
    *lines_on_disk(audit).keys().last().unwrap() as u64
}

/// The gateway's key, for the collector config (64 hex, as the gateway writes it).
fn gateway_key(audit: &Path) -> String {
    std::fs::read_to_string(audit.join("gateway.pub"))
        .unwrap()
        .trim()
        .to_owned()
}

/// `[audit.ship]` status in `/health` and the metrics, and the backlog bound with
/// `on_backlog_full = "deny"` (the default), through a real gateway, a real collector and
/// PostgreSQL: while shipping everything is acknowledged; with the collector down the error
/// is named and the pending entries grow, decisions are answered while the unshipped log is
/// under `max_backlog_bytes` and refused (503 `audit-unavailable`, `ship-backlog`) once it
/// is over, and `/health` says why; when the collector is back the gateway resumes by
/// itself and the database ends up with exactly the lines on disk.
#[test]
fn ship_status_and_the_backlog_bound_deny_then_resume() {
    let Some(pg) = Postgres::start() else { return };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let db = runtime.block_on(pg.database("bound"));
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::new(dir.path(), 1);
    let port = {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        free.local_addr().unwrap().port()
    };
    // The smallest bound the config takes (1 MiB), about 2000 decisions.
    let config = gateway_config(1, port, &fleet.dir).replace(
        "retry_max_ms = 200\n",
        "retry_max_ms = 200\nmax_backlog_bytes = 1048576\n",
    );
    let gw_dir = dir.path().join("gateway-1");
    std::fs::create_dir_all(&gw_dir).unwrap();
    let mut gw = Gateway::start(&gw_dir, &config);
    let audit = gw.audit_dir();
    let path = fleet.collector_config(&format!("127.0.0.1:{port}"), &db, "");
    let test_key = hex::encode(palisade_audit::CheckpointSigner::public_key(
        &*support::gateway_signer(1),
    ));
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace(&test_key, &gateway_key(&audit));
    std::fs::write(&path, text).unwrap();
    let (mut collector, _) = start_collector(&fleet, dir.path());

    // Shipping: everything on disk acknowledged, no error, the time of the last success.
    for i in 0..50 {
        assert_eq!(decide_answer(gw.addr, i).0, 200);
    }
    eventually(60, "everything shipped", || {
        let ship = health(gw.addr).1["audit"]["ship"].clone();
        ship["pending_entries"] == 0 && ship["next_seq"].as_u64() > Some(50)
    });
    let (status, body) = health(gw.addr);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    let ship = &body["audit"]["ship"];
    assert_eq!(ship["collector"], format!("https://localhost:{port}/"));
    assert_eq!(ship["last_error"], serde_json::Value::Null);
    assert_eq!(ship["consecutive_failures"], 0);
    assert_eq!(ship["backlogged"], false);
    assert_eq!(ship["refusing"], false);
    assert_eq!(ship["on_backlog_full"], "deny");
    assert_eq!(ship["max_backlog_bytes"], 1048576);
    assert!(
        ship["last_success_ms"].as_u64().unwrap() > 1_700_000_000_000,
        "{ship}"
    );
    let shipped = ship["last_shipped_seq"].as_u64().unwrap();
    assert_eq!(ship["next_seq"].as_u64(), Some(shipped + 1));
    assert!(shipped + 1 >= 50, "{ship}");
    assert_eq!(metric(gw.addr, "palisade_audit_ship_pending_entries"), 0);
    assert_eq!(metric(gw.addr, "palisade_audit_ship_backlogged"), 0);
    assert!(metric(gw.addr, "palisade_audit_ship_next_seq") > shipped);
    assert!(metric(gw.addr, "palisade_audit_ship_entries_total") >= 50);

    // The collector goes away: the error is named, the failures count, pending grows; under
    // the bound decisions are still answered (SER-007).
    collector.kill9();
    for i in 0..100 {
        assert_eq!(
            decide_answer(gw.addr, i).0,
            200,
            "under the bound: answered"
        );
    }
    eventually(
        30,
        "the shipper reports the outage and counts what is pending",
        || {
            let ship = health(gw.addr).1["audit"]["ship"].clone();
            ship["consecutive_failures"].as_u64() >= Some(2)
                && ship["pending_entries"].as_u64() >= Some(100)
        },
    );
    let (status, body) = health(gw.addr);
    assert_eq!(status, 200, "{body}");
    let ship = &body["audit"]["ship"];
    let error = ship["last_error"].as_str().unwrap();
    assert!(error.contains("collector unreachable"), "{error}");
    assert!(error.contains("refused"), "the cause is named: {error}");
    assert!(ship["last_error_ms"].as_u64().is_some());
    assert!(ship["last_shipped_seq"].as_u64() >= Some(shipped), "{ship}");
    assert!(ship["backlog_bytes"].as_u64().unwrap() > 0);
    assert_eq!(ship["backlogged"], false);
    assert!(metric(gw.addr, "palisade_audit_ship_consecutive_failures") >= 2);
    assert!(metric(gw.addr, "palisade_audit_ship_pending_entries") >= 100);

    // Over the bound: refused with the reason, in the JSON error format and in /health.
    let mut answered_before = 0u64;
    let mut refusal = None;
    for i in 0..20_000u64 {
        let (status, body) = decide_answer(gw.addr, i);
        match status {
            200 => answered_before += 1,
            503 => {
                refusal = Some(body);
                break;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    let refusal: serde_json::Value =
        serde_json::from_str(&refusal.expect("refused within 20000 decisions")).unwrap();
    assert!(
        answered_before > 100,
        "answered up to the bound: {answered_before}"
    );
    assert_eq!(refusal["error"]["code"], "audit-unavailable", "{refusal}");
    let message = refusal["error"]["message"].as_str().unwrap();
    assert!(message.contains("ship-backlog"), "{message}");
    assert!(message.contains("max_backlog_bytes = 1048576"), "{message}");
    let (status, body) = health(gw.addr);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "audit-unavailable");
    assert!(body["audit"]["reason"]
        .as_str()
        .unwrap()
        .contains("max_backlog_bytes"));
    assert_eq!(body["audit"]["ship"]["refusing"], true);
    assert!(body["audit"]["ship"]["backlog_bytes"].as_u64().unwrap() > 1048576);
    // Refused decisions are not written: the unshipped log stops growing with them.
    let disk_before = last_seq(&audit);
    for i in 0..20 {
        assert_eq!(decide_answer(gw.addr, i).0, 503);
    }
    assert!(
        last_seq(&audit) <= disk_before + 2,
        "at most a checkpoint more"
    );
    assert!(metric(gw.addr, "palisade_audit_ship_refusals_total") >= 21);
    assert_eq!(metric(gw.addr, "palisade_audit_ship_refusing"), 1);

    // The collector is back: the gateway catches up and serves again by itself.
    let (c, _) = start_collector(&fleet, dir.path());
    collector = c;
    eventually(120, "decisions answered again", || {
        decide_answer(gw.addr, 7).0 == 200
    });
    eventually(60, "everything shipped after recovery", || {
        health(gw.addr).1["audit"]["ship"]["pending_entries"] == 0
    });
    let (status, body) = health(gw.addr);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    let ship = &body["audit"]["ship"];
    assert_eq!(ship["last_error"], serde_json::Value::Null);
    assert_eq!(ship["consecutive_failures"], 0);
    assert_eq!(ship["refusing"], false);
    assert!(ship["last_shipped_seq"].as_u64().unwrap() > shipped + 100);

    // Nothing lost, nothing twice: the database holds exactly the lines on disk (compared
    // until they agree: a checkpoint can be written meanwhile).
    eventually(60, "the database holds the lines on disk", || {
        let disk = lines_on_disk(&audit);
        runtime.block_on(lines_in_db(&db, "gw-1")) == disk
    });
    gw.proc.terminate();
    collector.terminate();
}

/// `on_backlog_full = "warn"`: over the bound the gateway keeps deciding (SER-007) and only
/// reports the backlog; no collector runs at all.
#[test]
fn ship_backlog_bound_warn_keeps_deciding() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::new(dir.path(), 1);
    let port = {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        free.local_addr().unwrap().port()
    };
    let config = gateway_config(1, port, &fleet.dir).replace(
        "retry_max_ms = 200\n",
        "retry_max_ms = 200\nmax_backlog_bytes = 1048576\non_backlog_full = \"warn\"\n",
    );
    let gw_dir = dir.path().join("gateway-1");
    std::fs::create_dir_all(&gw_dir).unwrap();
    let mut gw = Gateway::start(&gw_dir, &config);
    let mut i = 0;
    eventually(300, "backlogged", || {
        for _ in 0..100 {
            assert_eq!(decide_answer(gw.addr, i).0, 200, "warn: never refused");
            i += 1;
        }
        health(gw.addr).1["audit"]["ship"]["backlogged"] == true
    });
    for j in 0..100 {
        assert_eq!(decide_answer(gw.addr, j).0, 200, "over the bound: answered");
    }
    let (status, body) = health(gw.addr);
    assert_eq!(status, 200, "{body}");
    let ship = &body["audit"]["ship"];
    assert_eq!(ship["on_backlog_full"], "warn");
    assert_eq!(ship["refusing"], false);
    assert_eq!(ship["last_shipped_seq"], serde_json::Value::Null);
    assert!(ship["backlog_bytes"].as_u64().unwrap() > 1048576);
    assert!(ship["pending_entries"].as_u64().unwrap() > i);
    assert_eq!(metric(gw.addr, "palisade_audit_ship_backlogged"), 1);
    assert_eq!(metric(gw.addr, "palisade_audit_ship_refusals_total"), 0);
    gw.proc.terminate();
}
