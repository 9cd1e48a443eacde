//! Kill tests (issue #17.3): two real gateways (`palisade serve`) answer decisions while
//! their shippers (`[audit.ship]`, inside the gateway) carry their audit logs to a real collector
//! (`palisade collector`) on a real PostgreSQL. The collector and the gateways are killed
//! with SIGKILL mid-stream and started again; at the end every entry on each
//! gateway's disk is in the database exactly once, byte for byte, and the chain verifies
//! from the database (`palisade audit verify --collector`).
//!
//! The gateway binary is the workspace's `palisade` (built by `cargo test` with the rest of
//! the default members; `cargo build -p palisade` when this test is run alone).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::support::pg::Postgres;
use crate::support::{self, Fleet};

/// The workspace's `palisade` binary, beside this test's own directory (target/debug).
pub(crate) fn palisade_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("palisade");
    assert!(
        bin.exists(),
        "{} is missing: build the gateway first (cargo build -p palisade)",
        bin.display()
    );
    bin
}

/// A gateway that ships its log to the collector on `port` as `gw-N`.
pub(crate) fn gateway_config(n: usize, port: u16, fleet: &Path) -> String {
    let f = |name: &str| fleet.join(name).display().to_string();
    format!(
        r#"
[rate_limit]
per_originator = {{ per_second = 100000, burst = 100000 }}

[audit]
rotate_bytes = 65536

[audit.ship]
collector = "https://localhost:{port}"
ca_file = "{ca}"
cert_file = "{cert}"
key_file = "{key}"
batch_entries = 50
poll_interval_ms = 20
retry_max_ms = 200

[[app]]
name = "lights"
paths = ["/cse-in/lights"]
consent_real_identities = true
[[app.plugin]]
plugin = "acp"
config = {{ policies = [{{ id = "p", pv = {{ acr = [{{ acor = ["originator:CAE1"], acop = 2 }}] }} }}] }}
"#,
        ca = f("ca.crt"),
        cert = f(&format!("gw-{n}.crt")),
        key = f(&format!("gw-{n}.key")),
    )
}

/// A child process whose stdout is watched for a line.
pub(crate) struct Proc {
    child: Option<Child>,
    name: String,
}

impl Proc {
    /// Starts `program args`, waits (bounded) for a stdout line containing `marker`, and
    /// returns the process and the rest of that line after the marker.
    fn start(
        name: &str,
        program: &Path,
        args: &[&str],
        cwd: &Path,
        marker: &str,
    ) -> (Proc, String) {
        let mut child = Command::new(program)
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let marker = marker.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.split(&marker).nth(1) {
                    let _ = tx.send(rest.to_owned());
                }
            }
        });
        let label = name.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("ERROR") || line.contains("WARN") {
                    eprintln!("[{label}] {line}");
                }
            }
        });
        let rest = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(rest) => rest,
            Err(_) => {
                let _ = child.kill();
                panic!("{name} did not start: {:?}", child.wait());
            }
        };
        (
            Proc {
                child: Some(child),
                name: name.to_owned(),
            },
            rest,
        )
    }

    pub(crate) fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub(crate) fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(status)) = child.try_wait() {
                    assert!(status.success(), "{} exited with {status}", self.name);
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            panic!("{} did not stop within 30 s of SIGTERM", self.name);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub(crate) struct Gateway {
    pub(crate) proc: Proc,
    pub(crate) addr: SocketAddr,
    pub(crate) dir: PathBuf,
}

impl Gateway {
    pub(crate) fn start(dir: &Path, config: &str) -> Gateway {
        std::fs::write(dir.join("gateway.toml"), config).unwrap();
        let config = dir.join("gateway.toml");
        let data = dir.join("data");
        let (proc, rest) = Proc::start(
            "palisade serve",
            &palisade_bin(),
            &[
                "--log-level",
                "info",
                "serve",
                "--config",
                config.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
                "--data",
                data.to_str().unwrap(),
            ],
            dir,
            "listening on ",
        );
        let addr = rest
            .split("://")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .expect("the gateway's address");
        Gateway {
            proc,
            addr,
            dir: dir.to_path_buf(),
        }
    }

    pub(crate) fn audit_dir(&self) -> PathBuf {
        self.dir.join("data/audit")
    }
}

/// One decision; `false` when the gateway is not there (killed) or refused.
fn decide(addr: SocketAddr, i: u64) -> bool {
    let body = format!(
        r#"{{"originator":"CAE{}","operation":"retrieve","target":"/cse-in/lights/lamp{i}"}}"#,
        i % 3
    );
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let request = format!(
        "POST /v1/decide HTTP/1.1\r\nHost: gw\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    answer.starts_with(b"HTTP/1.1 200")
}

/// Every line of the gateway's log set on disk, by seq. The gateway may still be running: a
/// rotation between listing the files and reading one renames it, so the set is read again.
pub(crate) fn lines_on_disk(audit: &Path) -> BTreeMap<i64, String> {
    'again: for _ in 0..50 {
        let mut out = BTreeMap::new();
        for file in palisade_audit::log_files(audit, "audit.log").unwrap() {
            let text = match std::fs::read_to_string(&file) {
                Ok(text) => text,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                    std::thread::sleep(Duration::from_millis(20));
                    continue 'again;
                }
                Err(error) => panic!("{}: {error}", file.display()),
            };
            for line in text.lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                out.insert(v["seq"].as_i64().unwrap(), line.to_owned());
            }
        }
        return out;
    }
    panic!(
        "{}: the log set kept changing while it was read",
        audit.display()
    )
}

pub(crate) async fn lines_in_db(db: &str, gateway: &str) -> BTreeMap<i64, String> {
    let (client, conn) = tokio_postgres::connect(db, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let rows = client
        .query(
            "SELECT seq, line FROM entries WHERE gateway_id = $1 ORDER BY seq",
            &[&gateway],
        )
        .await
        .unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

pub(crate) fn start_collector(fleet: &Fleet, dir: &Path) -> (Proc, String) {
    let config = dir.join("collector.toml");
    let (proc, addr) = Proc::start(
        "palisade collector",
        &palisade_bin(),
        &["collector", "--config", config.to_str().unwrap()],
        &fleet.dir,
        "collector listening on ",
    );
    let port = addr.trim().rsplit(':').next().unwrap().to_owned();
    (proc, port)
}

#[test]
fn killing_gateways_and_the_collector_mid_stream_loses_and_duplicates_nothing() {
    let Some(pg) = Postgres::start() else { return };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let db = runtime.block_on(pg.database("fleet"));
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::new(dir.path(), 2);

    // The collector's port, fixed before anything starts: the gateways' configs name it.
    let port = {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        free.local_addr().unwrap().port()
    };
    // Two real gateways, shipping (and retrying) from their start; their audit keys (made on
    // first start) go into the collector's config.
    let configs: Vec<String> = (1..=2)
        .map(|n| gateway_config(n, port, &fleet.dir))
        .collect();
    let mut gateways: Vec<Gateway> = (1..=2)
        .map(|n| {
            let gw_dir = dir.path().join(format!("gateway-{n}"));
            std::fs::create_dir_all(&gw_dir).unwrap();
            Gateway::start(&gw_dir, &configs[n - 1])
        })
        .collect();
    let mut keys = Vec::new();
    for gw in &gateways {
        let text = std::fs::read_to_string(gw.audit_dir().join("gateway.pub")).unwrap();
        // The key file is 64 hex characters, or JSON {"public_key": "HEX"}.
        let key = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["public_key"].as_str().map(str::to_owned))
            .unwrap_or_else(|| text.trim().to_owned());
        keys.push(key);
    }
    // The fleet's collector config names gw-1/gw-2 with the test keys; replace them with the
    // real gateways' keys.
    let path = fleet.collector_config(&format!("127.0.0.1:{port}"), &db, "");
    let mut text = std::fs::read_to_string(&path).unwrap();
    for (i, key) in keys.iter().enumerate() {
        let test_key = hex::encode(palisade_audit::CheckpointSigner::public_key(
            &*support::gateway_signer(i as u8 + 1),
        ));
        text = text.replace(&test_key, key);
    }
    std::fs::write(&path, text).unwrap();
    let (mut collector, bound) = start_collector(&fleet, dir.path());
    assert_eq!(bound, port.to_string());
    let url = format!("https://localhost:{port}");

    // Load: each gateway gets decisions from its own thread until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let addrs: Vec<Arc<std::sync::Mutex<SocketAddr>>> = gateways
        .iter()
        .map(|g| Arc::new(std::sync::Mutex::new(g.addr)))
        .collect();
    let load: Vec<_> = addrs
        .iter()
        .map(|addr| {
            let (addr, stop, answered) = (addr.clone(), stop.clone(), answered.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                // Bounded: at most 20000 decisions per gateway.
                while !stop.load(Ordering::Relaxed) && i < 20_000 {
                    let target = *addr.lock().unwrap();
                    if decide(target, i) {
                        answered.fetch_add(1, Ordering::Relaxed);
                    } else {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    i += 1;
                }
            })
        })
        .collect();
    let wait_answers = |n: u64| {
        let deadline = Instant::now() + Duration::from_secs(120);
        let goal = answered.load(Ordering::Relaxed) + n;
        while answered.load(Ordering::Relaxed) < goal {
            assert!(Instant::now() < deadline, "the gateways stopped answering");
            std::thread::sleep(Duration::from_millis(10));
        }
    };

    wait_answers(300);
    // The collector dies mid-stream; the gateways go on deciding and the backlog grows.
    collector.kill9();
    wait_answers(300);
    let (c, _) = start_collector(&fleet, dir.path());
    collector = c;
    wait_answers(300);
    // A gateway (and the shipper in it) dies mid-stream: a torn audit line is possible.
    gateways[0].proc.kill9();
    wait_answers(200);
    let gw_dir = gateways[0].dir.clone();
    gateways[0] = Gateway::start(&gw_dir, &configs[0]);
    *addrs[0].lock().unwrap() = gateways[0].addr;
    wait_answers(300);
    // The collector and the other gateway at once.
    collector.kill9();
    gateways[1].proc.kill9();
    wait_answers(100);
    let gw_dir = gateways[1].dir.clone();
    gateways[1] = Gateway::start(&gw_dir, &configs[1]);
    *addrs[1].lock().unwrap() = gateways[1].addr;
    wait_answers(200);
    let (c, _) = start_collector(&fleet, dir.path());
    collector = c;
    wait_answers(300);

    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }
    // The load stops; the gateways' shippers catch up (what is on disk can still grow by a
    // checkpoint, so disk and database are compared again until they agree).
    let deadline = Instant::now() + Duration::from_secs(120);
    for (i, gw) in gateways.iter().enumerate() {
        let id = format!("gw-{}", i + 1);
        loop {
            let disk = lines_on_disk(&gw.audit_dir());
            let stored = runtime.block_on(lines_in_db(&db, &id));
            if stored.len() == disk.len() {
                assert_eq!(
                    stored, disk,
                    "{id}: the database holds exactly the lines on disk"
                );
                eprintln!(
                    "kill test: {id}: {} entries on disk, {} in the database (seq 0..={}), {} files",
                    disk.len(),
                    stored.len(),
                    disk.keys().last().unwrap(),
                    palisade_audit::log_files(&gw.audit_dir(), "audit.log").unwrap().len()
                );
                break;
            }
            assert!(
                stored.len() < disk.len(),
                "{id}: more in the database ({}) than on disk ({})",
                stored.len(),
                disk.len()
            );
            assert!(
                Instant::now() < deadline,
                "{id}: shipped {} of {} entries",
                stored.len(),
                disk.len()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // Verified from the database against the gateway's key, by the CLI.
        let output = Command::new(palisade_bin())
            .args([
                "audit",
                "verify",
                "--collector",
                &url,
                "--gateway",
                &id,
                "--key",
            ])
            .arg(gw.audit_dir().join("gateway.pub"))
            .arg("--ca")
            .arg(fleet.dir.join("ca.crt"))
            .arg("--cert")
            .arg(fleet.dir.join("ops.crt"))
            .arg("--client-key")
            .arg(fleet.dir.join("ops.key"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{id}: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(text.starts_with("stored audit log OK"), "{text}");
    }
    for gw in &mut gateways {
        gw.proc.terminate();
    }
    collector.terminate();
    eprintln!(
        "kill test: {} decisions answered",
        answered.load(Ordering::Relaxed)
    );
}
