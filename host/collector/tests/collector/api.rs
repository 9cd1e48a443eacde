//! The collector against a real PostgreSQL (issue #17.3): batches checked on arrival and
//! stored once, queries, the bounds, the client-certificate roles, verification from the
//! database, and the shipper resuming from its cursor.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::pg::Postgres;
use crate::support::{self, gateway_signer, Fleet};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use palisade_audit::{AuditConfig, AuditLog, Clock, FsyncPolicy, Kind};
use palisade_collector::{
    Collector, CollectorConfig, Cursor, OnBacklogFull, Round, ShipConfig, Shipper,
};
use palisade_gateway::{client_config, ClientTlsFiles, Connector};
use serde_json::{json, Value};

/// A log in `dir` signed by gateway `n`'s key: checkpoints every 7 entries, a counting clock.
fn open_log(dir: &Path, n: u8) -> AuditLog {
    let t = Arc::new(AtomicU64::new(1_700_000_000_000));
    let config = AuditConfig {
        checkpoint_every: 7,
        checkpoint_interval: Duration::from_secs(3600),
        fsync: FsyncPolicy::Never,
        batch_delay: Duration::ZERO,
        clock: Clock::from_fn(move || t.fetch_add(1000, Ordering::Relaxed)),
        ..AuditConfig::default()
    };
    AuditLog::open(dir, config, gateway_signer(n)).unwrap()
}

fn decision(i: u64, app: &str) -> Value {
    let effect = if i.is_multiple_of(3) {
        "deny"
    } else {
        "permit"
    };
    json!({"app": app, "originator": format!("p-{:02}", i % 5), "operation": "retrieve",
           "target": format!("/cse-in/{app}/{i}"), "effect": effect, "reason": "test",
           "decision_id": format!("d-{i}"), "source": "decide", "enforced": true})
}

fn write_decisions(log: &AuditLog, from: u64, count: u64, app: &str) {
    for i in from..from + count {
        log.append(Kind::Decision, decision(i, app)).unwrap();
    }
    log.flush(Duration::from_secs(10)).unwrap();
}

struct Setup {
    _pg: Postgres,
    dir: tempfile::TempDir,
    fleet: Fleet,
    collector: Collector,
    url: String,
    db: String,
}

async fn setup(extra: &str) -> Option<Setup> {
    let pg = Postgres::start()?;
    let db = pg.database("collector").await;
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::new(dir.path(), 2);
    let path = fleet.collector_config("127.0.0.1:0", &db, extra);
    let config = CollectorConfig::load(&path).unwrap();
    let collector = palisade_collector::start(&config).await.unwrap();
    let url = format!("https://localhost:{}", collector.addr.port());
    Some(Setup {
        _pg: pg,
        dir,
        fleet,
        collector,
        url,
        db,
    })
}

impl Setup {
    fn shipper(&self, n: usize, audit_dir: &Path) -> Shipper {
        let path = self.fleet.ship_config(n, &self.url, audit_dir, "");
        Shipper::new(ShipConfig::load(&path).unwrap()).unwrap()
    }

    async fn call(
        &self,
        who: &str,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        call(&self.url, self.fleet.client(who), method, path, body).await
    }

    async fn sql_count(&self, sql: &str) -> i64 {
        let (client, conn) = tokio_postgres::connect(&self.db, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client.query_one(sql, &[]).await.unwrap().get(0)
    }

    async fn sql(&self, sql: &str) {
        let (client, conn) = tokio_postgres::connect(&self.db, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client.execute(sql, &[]).await.unwrap();
    }
}

async fn call(
    url: &str,
    tls: ClientTlsFiles,
    method: Method,
    path: &str,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let client = Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(Connector::new(
        Duration::from_secs(5),
        Some(client_config(&tls).unwrap()),
    ));
    let request = Request::builder()
        .method(method)
        .uri(format!("{url}{path}"))
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, value)
}

async fn ship_all(shipper: &mut Shipper) -> u64 {
    let mut n = 0;
    for _ in 0..1000 {
        match shipper.round().await.unwrap() {
            Round::Shipped(k) => n += k,
            Round::Idle => return n,
        }
    }
    panic!("shipping did not finish");
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn batch(lines: &[String]) -> Vec<u8> {
    lines
        .iter()
        .flat_map(|l| format!("{l}\n").into_bytes())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_logs_are_verified_stored_once_and_queryable() {
    let Some(s) = setup("").await else { return };
    let audit1 = s.dir.path().join("gw1-audit");
    let audit2 = s.dir.path().join("gw2-audit");
    let log1 = open_log(&audit1, 1);
    let log2 = open_log(&audit2, 2);
    write_decisions(&log1, 0, 40, "lights");
    write_decisions(&log2, 0, 25, "doors");

    let mut ship1 = s.shipper(1, &audit1);
    let mut ship2 = s.shipper(2, &audit2);
    ship_all(&mut ship1).await;
    ship_all(&mut ship2).await;
    let on_disk1 = lines(&audit1.join("audit.log")).len() as i64;
    let on_disk2 = lines(&audit2.join("audit.log")).len() as i64;
    assert_eq!(
        s.sql_count("SELECT count(*) FROM entries WHERE gateway_id = 'gw-1'")
            .await,
        on_disk1
    );
    assert_eq!(
        s.sql_count("SELECT count(*) FROM entries WHERE gateway_id = 'gw-2'")
            .await,
        on_disk2
    );
    assert_eq!(ship1.status().snapshot().duplicates, 0);

    // More entries later: shipped from where it stopped, nothing twice.
    write_decisions(&log1, 40, 10, "lights");
    log1.close().unwrap();
    ship_all(&mut ship1).await;
    let on_disk1 = lines(&audit1.join("audit.log")).len() as i64;
    assert_eq!(
        s.sql_count("SELECT count(*) FROM entries WHERE gateway_id = 'gw-1'")
            .await,
        on_disk1
    );
    assert_eq!(ship1.status().snapshot().duplicates, 0, "nothing re-sent");
    let cursor = Cursor::load(&audit1.join("ship.cursor")).unwrap().unwrap();
    assert_eq!(
        cursor.next_seq as i64, on_disk1,
        "the cursor stands after the last entry"
    );

    // Queries: by gateway, app, originator, decision, time; paged.
    let (status, page) = s
        .call(
            "ops",
            Method::GET,
            "/v1/entries?app=lights&decision=deny&limit=1000",
            vec![],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let denies = page["entries"].as_array().unwrap();
    assert_eq!(denies.len(), 17, "i % 3 == 0 for i in 0..50");
    assert!(denies
        .iter()
        .all(|e| e["gateway"] == "gw-1" && e["payload"]["effect"] == "deny"));
    let (_, page) = s
        .call(
            "ops",
            Method::GET,
            "/v1/entries?originator=p-03&gateway=gw-2",
            vec![],
        )
        .await;
    let by_originator = page["entries"].as_array().unwrap();
    assert_eq!(by_originator.len(), 5, "i % 5 == 3 for i in 0..25");
    assert!(by_originator
        .iter()
        .all(|e| e["payload"]["originator"] == "p-03" && e["payload"]["app"] == "doors"));
    let t0 = 1_700_000_000_000u64;
    let (_, page) = s
        .call(
            "ops",
            Method::GET,
            &format!(
                "/v1/entries?gateway=gw-2&from_ms={}&to_ms={}",
                t0 + 5_000,
                t0 + 10_000
            ),
            vec![],
        )
        .await;
    let window = page["entries"].as_array().unwrap();
    assert_eq!(
        window.len(),
        5,
        "one entry per second of the counting clock: {page}"
    );
    let (_, first) = s
        .call(
            "ops",
            Method::GET,
            "/v1/entries?kind=decision&limit=30",
            vec![],
        )
        .await;
    assert_eq!(first["entries"].as_array().unwrap().len(), 30);
    let next = first["next"].as_str().unwrap().to_owned();
    let (_, rest) = s
        .call(
            "ops",
            Method::GET,
            &format!("/v1/entries?kind=decision&after={next}"),
            vec![],
        )
        .await;
    assert_eq!(
        rest["entries"].as_array().unwrap().len(),
        50 + 25 - 30,
        "the second page holds the rest"
    );
    let (status, bad) = s
        .call("ops", Method::GET, "/v1/entries?decision=maybe", vec![])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    let (status, bad) = s
        .call("ops", Method::GET, "/v1/entries?colour=red", vec![])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "unknown parameter: {bad}");

    // Verification from the database against the trusted key.
    let key = gateway_signer(1).public_key();
    let report = palisade_collector::verify_stored(
        &s.url.parse().unwrap(),
        "gw-1",
        &key,
        s.fleet.client("ops"),
    )
    .await
    .unwrap();
    assert_eq!(report.last_seq as i64, on_disk1 - 1);
    assert!(report.checkpoints > 0);
    // Against another key it fails; and an edited row in the database is caught.
    let wrong = gateway_signer(2).public_key();
    assert!(palisade_collector::verify_stored(
        &s.url.parse().unwrap(),
        "gw-1",
        &wrong,
        s.fleet.client("ops")
    )
    .await
    .is_err());
    s.sql("UPDATE entries SET line = replace(line, '\"effect\":\"deny\"', '\"effect\":\"permit\"') WHERE gateway_id = 'gw-1' AND seq = 4")
        .await;
    let err = palisade_collector::verify_stored(
        &s.url.parse().unwrap(),
        "gw-1",
        &key,
        s.fleet.client("ops"),
    )
    .await
    .unwrap_err();
    let err = palisade_types::Chain(&err).to_string();
    assert!(
        err.contains("seq 4") || err.contains("seq Some(4)"),
        "{err}"
    );
    s.collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_batch_is_stored_once_and_a_broken_one_not_at_all() {
    let Some(s) = setup("").await else { return };
    let audit = s.dir.path().join("gw1-audit");
    let log = open_log(&audit, 1);
    write_decisions(&log, 0, 20, "lights");
    log.close().unwrap();
    let all = lines(&audit.join("audit.log"));
    let n = all.len();

    let (status, out) = s
        .call("gw-1", Method::POST, "/v1/batches", batch(&all[..10]))
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(
        (out["stored"].as_u64(), out["next_seq"].as_u64()),
        (Some(10), Some(10))
    );
    // The same batch again, and one overlapping it: the known entries are recognised.
    let (status, out) = s
        .call("gw-1", Method::POST, "/v1/batches", batch(&all[..10]))
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(
        (out["stored"].as_u64(), out["duplicates"].as_u64()),
        (Some(0), Some(10))
    );
    let (status, out) = s
        .call("gw-1", Method::POST, "/v1/batches", batch(&all[5..15]))
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(
        (out["stored"].as_u64(), out["duplicates"].as_u64()),
        (Some(5), Some(5))
    );
    assert_eq!(s.sql_count("SELECT count(*) FROM entries").await, 15);

    // A batch that skips entries: refused, with where the collector stands.
    let (status, out) = s
        .call("gw-1", Method::POST, "/v1/batches", batch(&all[16..]))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{out}");
    assert_eq!(out["error"]["code"], "out-of-order");
    assert_eq!(out["error"]["next_seq"], 15);
    // An edited entry in the middle of a batch: refused whole, nothing of it stored.
    let mut edited = all[15..].to_vec();
    edited[2] = edited[2].replace("\"effect\":\"permit\"", "\"effect\":\"deny\"");
    assert_ne!(edited[2], all[17], "the edit applies");
    let (status, out) = s
        .call("gw-1", Method::POST, "/v1/batches", batch(&edited))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    assert_eq!(out["error"]["code"], "chain-broken");
    assert!(
        out["error"]["message"].as_str().unwrap().contains("seq 17")
            || out["error"]["message"].as_str().unwrap().contains("line 3"),
        "{out}"
    );
    assert_eq!(
        s.sql_count("SELECT count(*) FROM entries").await,
        15,
        "nothing of the refused batch"
    );
    // Another log of the same gateway (same key), from the seq the collector expects: it
    // does not link to the stored head.
    let other_dir = s.dir.path().join("gw1-other");
    let other = open_log(&other_dir, 1);
    write_decisions(&other, 0, 20, "lights");
    other.close().unwrap();
    let other_lines = lines(&other_dir.join("audit.log"));
    let (status, out) = s
        .call(
            "gw-1",
            Method::POST,
            "/v1/batches",
            batch(&other_lines[15..]),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not continue the chain"),
        "{out}"
    );
    // A re-sent entry that differs from the stored one: a fork, refused.
    let mut forked = all[..10].to_vec();
    forked[9] = forked[9].replace("lights", "doors");
    assert_ne!(forked[9], all[9], "the fork applies");
    let (status, out) = s
        .call("gw-1", Method::POST, "/v1/batches", batch(&forked))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{out}");
    assert_eq!(out["error"]["code"], "fork");
    // gw-2 shipping gw-1's log: its checkpoints do not verify against gw-2's key.
    let (status, out) = s
        .call("gw-2", Method::POST, "/v1/batches", batch(&all))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("checkpoint"),
        "{out}"
    );
    assert_eq!(
        s.sql_count("SELECT count(*) FROM entries WHERE gateway_id = 'gw-2'")
            .await,
        0
    );
    // The rest, whole: accepted.
    let (status, out) = s
        .call("gw-1", Method::POST, "/v1/batches", batch(&all[15..]))
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["next_seq"].as_u64(), Some(n as u64));
    // A line without its newline, and not JSON at all.
    let (status, _) = s
        .call(
            "gw-1",
            Method::POST,
            "/v1/batches",
            all[0].clone().into_bytes(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = s
        .call("gw-1", Method::POST, "/v1/batches", b"{\"seq\":\n".to_vec())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = s.call("gw-1", Method::POST, "/v1/batches", vec![]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    s.collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_bounded_and_roles_come_from_certificates() {
    let Some(s) = setup("max_batch_bytes = 65536\nmax_batch_entries = 8").await else {
        return;
    };
    let audit = s.dir.path().join("gw1-audit");
    let log = open_log(&audit, 1);
    write_decisions(&log, 0, 20, "lights");
    log.close().unwrap();
    let all = lines(&audit.join("audit.log"));

    let (status, out) = s
        .call("gw-1", Method::POST, "/v1/batches", batch(&all[..8]))
        .await;
    assert_eq!(status, StatusCode::OK, "8 entries is the bound: {out}");
    let (status, out) = s
        .call("gw-1", Method::POST, "/v1/batches", batch(&all[8..17]))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{out}");
    assert_eq!(out["error"]["code"], "too-many-entries");
    let (status, out) = s
        .call("gw-1", Method::POST, "/v1/batches", vec![b'\n'; 65537])
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{out}");
    assert_eq!(out["error"]["code"], "body-too-large");
    assert_eq!(s.sql_count("SELECT count(*) FROM entries").await, 8);

    // Roles: a gateway cannot query or read other chains; a query client cannot ship; a
    // certificate configured nowhere can do neither.
    for path in ["/v1/entries", "/v1/gateways", "/v1/gateways/gw-1/chain"] {
        let (status, _) = s.call("gw-2", Method::GET, path, vec![]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "gw-2 GET {path}");
        let (status, _) = s.call("stranger", Method::GET, path, vec![]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "stranger GET {path}");
    }
    let (status, _) = s
        .call("ops", Method::POST, "/v1/batches", batch(&all[8..10]))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = s
        .call("stranger", Method::POST, "/v1/batches", batch(&all[8..10]))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, head) = s.call("gw-1", Method::GET, "/v1/head", vec![]).await;
    assert_eq!(
        (status, head["next_seq"].as_u64()),
        (StatusCode::OK, Some(8))
    );
    let (status, head) = s.call("gw-2", Method::GET, "/v1/head", vec![]).await;
    assert_eq!(
        (status, head),
        (StatusCode::OK, Value::Null),
        "gw-2 shipped nothing"
    );
    let (status, heads) = s.call("ops", Method::GET, "/v1/gateways", vec![]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(heads.as_array().unwrap().len(), 1);

    // A certificate from another CA, or none, never completes the handshake.
    let rogue = s.fleet.client("rogue");
    let no_cert = ClientTlsFiles {
        ca_file: Some(s.fleet.dir.join("ca.crt")),
        ..Default::default()
    };
    for tls in [rogue, no_cert] {
        let client = Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(Connector::new(
            Duration::from_secs(5),
            Some(client_config(&tls).unwrap()),
        ));
        let request = Request::builder()
            .method(Method::GET)
            .uri(format!("{}/v1/head", s.url))
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert!(
            client.request(request).await.is_err(),
            "refused in the handshake"
        );
    }
    s.collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipper_resumes_from_its_cursor_and_from_the_collector() {
    let Some(s) = setup("").await else { return };
    let audit = s.dir.path().join("gw1-audit");
    // Rotation every ~2 KiB: the shipper follows the chain across the files.
    let t = Arc::new(AtomicU64::new(1_700_000_000_000));
    let config = AuditConfig {
        checkpoint_every: 7,
        checkpoint_interval: Duration::from_secs(3600),
        fsync: FsyncPolicy::Never,
        batch_delay: Duration::ZERO,
        rotate_bytes: 2048,
        clock: Clock::from_fn(move || t.fetch_add(1000, Ordering::Relaxed)),
        ..AuditConfig::default()
    };
    let log = AuditLog::open(&audit, config, gateway_signer(1)).unwrap();
    write_decisions(&log, 0, 30, "lights");
    let mut shipper = s.shipper(1, &audit);
    ship_all(&mut shipper).await;
    write_decisions(&log, 30, 30, "lights");
    log.close().unwrap();
    let files = palisade_audit::log_files(&audit, "audit.log").unwrap();
    assert!(files.len() >= 3, "the log rotated: {files:?}");
    let on_disk: usize = files.iter().map(|f| lines(f).len()).sum();

    // A new shipper (a restart) continues from the cursor.
    let mut restarted = s.shipper(1, &audit);
    ship_all(&mut restarted).await;
    assert_eq!(
        s.sql_count("SELECT count(*) FROM entries").await as usize,
        on_disk
    );
    assert_eq!(restarted.status().snapshot().duplicates, 0);

    // A lost cursor: the collector's head tells where to go on, nothing is re-sent.
    std::fs::remove_file(audit.join("ship.cursor")).unwrap();
    let mut fresh = s.shipper(1, &audit);
    assert_eq!(fresh.round().await.unwrap(), Round::Idle);
    assert_eq!(fresh.status().snapshot().duplicates, 0);
    assert_eq!(fresh.cursor().next_seq as usize, on_disk);

    // A cursor pointing at the wrong place (edited): found again by seq.
    let wrong = Cursor {
        next_seq: 5,
        file_index: 0,
        offset: 17,
        last_hash: Some("00".repeat(32)),
    };
    wrong.store(&audit.join("ship.cursor")).unwrap();
    let mut misled = s.shipper(1, &audit);
    assert_eq!(misled.round().await.unwrap(), Round::Idle);
    assert_eq!(misled.cursor().next_seq as usize, on_disk);
    assert_eq!(
        s.sql_count("SELECT count(*) FROM entries").await as usize,
        on_disk
    );

    // The database is verified whole across the rotated files.
    let key = gateway_signer(1).public_key();
    let report = palisade_collector::verify_stored(
        &s.url.parse().unwrap(),
        "gw-1",
        &key,
        s.fleet.client("ops"),
    )
    .await
    .unwrap();
    assert_eq!(report.last_seq as usize, on_disk - 1);
    s.collector.stop().await;
}

/// A signer that blocks in `sign` until released: stalls the log's writer so that decisions
/// overflow its queue into a gap (as a slow disk would).
struct GatedSigner {
    inner: palisade_audit::MemorySigner,
    gate: std::sync::Mutex<bool>,
    cv: std::sync::Condvar,
    entered: AtomicU64,
}

impl palisade_audit::CheckpointSigner for GatedSigner {
    fn sign(&self, msg: &[u8]) -> Result<[u8; 64], palisade_audit::SignerError> {
        self.entered.fetch_add(1, Ordering::SeqCst);
        let mut open = self.gate.lock().unwrap();
        while !*open {
            open = self.cv.wait(open).unwrap();
        }
        self.inner.sign(msg)
    }
    fn public_key(&self) -> [u8; 32] {
        self.inner.public_key()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_is_shipped_as_the_signed_gap_entry() {
    let Some(s) = setup("").await else { return };
    let audit = s.dir.path().join("gw1-audit");
    let gated = Arc::new(GatedSigner {
        inner: palisade_audit::MemorySigner::from_seed(support::gateway_seed(1)),
        gate: std::sync::Mutex::new(false),
        cv: std::sync::Condvar::new(),
        entered: AtomicU64::new(0),
    });
    let config = AuditConfig {
        queue_capacity: 4,
        checkpoint_every: 1000,
        fsync: FsyncPolicy::Never,
        ..AuditConfig::default()
    };
    let log = AuditLog::open(&audit, config, gated.clone()).unwrap();
    log.checkpoint_now();
    while gated.entered.load(Ordering::SeqCst) == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    for i in 0..10 {
        log.append(Kind::Decision, decision(i, "lights")).unwrap();
    }
    assert!(log.stats().dropped > 0, "the queue overflowed");
    *gated.gate.lock().unwrap() = true;
    gated.cv.notify_all();
    write_decisions(&log, 10, 5, "lights");
    log.close().unwrap();

    let mut shipper = s.shipper(1, &audit);
    ship_all(&mut shipper).await;
    let on_disk = lines(&audit.join("audit.log"));
    let gap: Value = on_disk
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["kind"] == "gap")
        .expect("a gap entry on disk");
    assert_eq!(
        s.sql_count("SELECT count(*) FROM entries").await as usize,
        on_disk.len()
    );
    let (_, page) = s
        .call("ops", Method::GET, "/v1/entries?kind=gap", vec![])
        .await;
    let shipped = &page["entries"][0];
    assert_eq!(shipped["seq"], gap["seq"]);
    assert_eq!(
        shipped["payload"], gap["payload"],
        "the gap as the log signed it"
    );
    let key = gateway_signer(1).public_key();
    let report = palisade_collector::verify_stored(
        &s.url.parse().unwrap(),
        "gw-1",
        &key,
        s.fleet.client("ops"),
    )
    .await
    .unwrap();
    let dropped_on_disk: u64 = on_disk
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["kind"] == "gap")
        .map(|e| e["payload"]["dropped"].as_u64().unwrap())
        .sum();
    assert_eq!(
        report.dropped, dropped_on_disk,
        "every gap verified from the database"
    );
    s.collector.stop().await;
}

#[test]
fn config_errors_name_the_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    let base = "listen = \"127.0.0.1:0\"\ndatabase_url = \"host=x\"\n[tls]\ncert_file = \"a\"\nkey_file = \"b\"\nclient_ca_file = \"c\"\n";
    let err = CollectorConfig::parse(
        &file,
        &format!("{base}[[gateway]]\nid = \"gw 1\"\naudit_public_key = \"00\"\n"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(":8:") && err.contains("gateway[0].id"),
        "{err}"
    );
    let err = CollectorConfig::parse(&file, &format!("max_batch_entries = 0\n{base}"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(":1:") && err.contains("max_batch_entries"),
        "{err}"
    );
    let weak = "0".repeat(64);
    let err = CollectorConfig::parse(
        &file,
        &format!("{base}[[gateway]]\nid = \"gw-1\"\naudit_public_key = \"{weak}\"\n"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("audit_public_key") && err.contains("Ed25519"),
        "{err}"
    );
    let err = CollectorConfig::parse(&file, &format!("query_clients = [\"gw-1\"]\n{base}[[gateway]]\nid = \"gw-1\"\naudit_public_key = \"{}\"\n", hex::encode(gateway_signer(1).public_key())))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("query_clients[0]") && err.contains("is a gateway"),
        "{err}"
    );
    let ship = dir.path().join("s.toml");
    let err = ShipConfig::parse(&ship, "collector = \"http://x:1\"\naudit_dir = \"a\"\nca_file = \"c\"\ncert_file = \"c\"\nkey_file = \"k\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains(":1:") && err.contains("https://"), "{err}");
    // A gateway config's [audit.ship]: absent ships nothing; its errors name audit.ship.KEY.
    let gw = dir.path().join("gateway.toml");
    let audit = dir.path().join("audit");
    let none = ShipConfig::from_gateway(&gw, "[audit]\non_failure = \"deny\"\n", &audit).unwrap();
    assert!(none.is_none());
    let ship = "[audit.ship]\ncollector = \"https://c:1\"\nca_file = \"c\"\ncert_file = \"c\"\nkey_file = \"k\"\n";
    let config = ShipConfig::from_gateway(&gw, ship, &audit)
        .unwrap()
        .unwrap();
    assert_eq!(config.audit_dir, audit);
    assert_eq!(config.cursor_file, audit.join("ship.cursor"));
    let err = ShipConfig::from_gateway(&gw, &format!("{ship}batch_bytes = 10\n"), &audit)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(":6:") && err.contains("audit.ship.batch_bytes"),
        "{err}"
    );
    let err = ShipConfig::from_gateway(&gw, &format!("{ship}colour = 1\n"), &audit)
        .unwrap_err()
        .to_string();
    assert!(err.contains("colour"), "{err}");
    // on_backlog_full: "deny" unless the operator says "warn"; anything else names the key.
    assert_eq!(config.on_backlog_full, OnBacklogFull::Deny);
    let warn =
        ShipConfig::from_gateway(&gw, &format!("{ship}on_backlog_full = \"warn\"\n"), &audit)
            .unwrap()
            .unwrap();
    assert_eq!(warn.on_backlog_full, OnBacklogFull::Warn);
    let err = ShipConfig::from_gateway(&gw, &format!("{ship}on_backlog_full = \"drop\"\n"), &audit)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(":6:")
            && err.contains("audit.ship.on_backlog_full")
            && err.contains("\"drop\""),
        "{err}"
    );
    let err =
        ShipConfig::from_gateway(&gw, &format!("{ship}max_backlog_bytes = 1048575\n"), &audit)
            .unwrap_err()
            .to_string();
    assert!(err.contains("audit.ship.max_backlog_bytes"), "{err}");
    // A file that cannot be read is named.
    let err = CollectorConfig::load(&dir.path().join("missing.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing.toml: cannot read"), "{err}");
}

/// The collector's sustained ingest rate (issue #17 closing figure), not a pass/fail check:
/// four gateways' logs of 25000 decisions each are shipped at once, by four shippers in
/// 1000-entry batches, into a PostgreSQL with durable commits (fsync on). Prints decisions
/// per second. Run with
/// `cargo test --test collector api::ingest_rate -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run by hand"]
async fn ingest_rate() {
    let Some(pg) = Postgres::start_with(&[]) else {
        return;
    };
    let db = pg.database("bench").await;
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::new(dir.path(), 4);
    let config = CollectorConfig::load(&fleet.collector_config("127.0.0.1:0", &db, "")).unwrap();
    let collector = palisade_collector::start(&config).await.unwrap();
    let url = format!("https://localhost:{}", collector.addr.port());
    let per_gateway = 25_000u64;
    let mut shippers = Vec::new();
    for n in 1..=4u8 {
        let audit = dir.path().join(format!("gw{n}-audit"));
        let log = open_log(&audit, n);
        write_decisions(&log, 0, per_gateway, "lights");
        log.close().unwrap();
        let path = fleet.ship_config(n as usize, &url, &audit, "batch_entries = 1000");
        shippers.push(Shipper::new(ShipConfig::load(&path).unwrap()).unwrap());
    }
    let start = std::time::Instant::now();
    let tasks: Vec<_> = shippers
        .into_iter()
        .map(|mut s| tokio::spawn(async move { ship_all(&mut s).await }))
        .collect();
    let mut entries = 0;
    for t in tasks {
        entries += t.await.unwrap();
    }
    let elapsed = start.elapsed();
    let rate = entries as f64 / elapsed.as_secs_f64();
    eprintln!(
        "ingest: {entries} entries ({} decisions) from 4 gateways in {elapsed:?}: {rate:.0} entries/s",
        4 * per_gateway
    );
    collector.stop().await;
}
