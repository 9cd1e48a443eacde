//! A real PostgreSQL cluster per test: Debian's binaries (`/usr/lib/postgresql/*/bin`, or
//! the folder in `PALISADE_PG_BIN`), `initdb` in a temp dir, the server on a free
//! 127.0.0.1 port with trust authentication for the test user. PostgreSQL refuses to run as
//! root, so under root the cluster belongs to the `postgres` user (Debian's package creates
//! it) or, without one, `nobody`, and the temp dir is given to that user.
//!
//! Without PostgreSQL a test says clearly that it skipped; with `CI` set it fails instead
//! (`.ci/run` installs the package).
//!
//! Shared by the collector's tests and the group server's shared-state tests (feature `pg`),
//! so every PostgreSQL test starts its cluster the same way.

use std::ffi::CString;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The server's binaries, or `None` (after saying so) when PostgreSQL is not installed.
pub fn bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PALISADE_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return Some(bin);
    }
    let message =
        "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb, no PALISADE_PG_BIN)";
    if std::env::var_os("CI").is_some() {
        panic!("{message}: CI must run the PostgreSQL tests against a real PostgreSQL");
    }
    eprintln!("SKIPPED: {message}; install Debian's postgresql package to run this test");
    None
}

/// The user the cluster runs as when we are root: uid and gid.
fn cluster_user() -> Option<(u32, u32)> {
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    for name in ["postgres", "nobody"] {
        let c = CString::new(name).unwrap();
        let pw = unsafe { libc::getpwnam(c.as_ptr()) };
        if !pw.is_null() {
            return Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) });
        }
    }
    panic!("running as root and neither a postgres nor a nobody user exists to run PostgreSQL");
}

fn chown(path: &Path, (uid, gid): (u32, u32)) {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(
        unsafe { libc::chown(c.as_ptr(), uid, gid) },
        0,
        "chown {}",
        path.display()
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running cluster, stopped (fast shutdown) and removed on drop.
pub struct Postgres {
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
    user: Option<(u32, u32)>,
    child: Option<Child>,
}

impl Postgres {
    /// A new cluster with durable commits off (`fsync=off`: tests do not kill PostgreSQL),
    /// or `None` when PostgreSQL is not installed (outside CI).
    pub fn start() -> Option<Postgres> {
        Self::start_with(&["-c", "fsync=off", "-c", "synchronous_commit=off"])
    }

    /// A new cluster with these extra server options (e.g. none, for durable commits).
    pub fn start_with(options: &[&str]) -> Option<Postgres> {
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("palisade-pg-")
            .tempdir()
            .unwrap();
        let user = cluster_user();
        if let Some(user) = user {
            chown(dir.path(), user);
        }
        let data = dir.path().join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .args([
                "-D",
                data.to_str().unwrap(),
                "-U",
                "palisade",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some((uid, gid)) = user {
            initdb.uid(uid).gid(gid);
        }
        let out = initdb.output().expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut pg = Postgres {
            port: 0,
            dir,
            bin,
            user,
            child: None,
        };
        // A port found free can be taken before the server binds it: try a few.
        for _ in 0..5 {
            let port = free_port();
            if pg.launch(port, options) {
                return Some(pg);
            }
        }
        panic!("PostgreSQL did not start on any of 5 free ports");
    }

    fn launch(&mut self, port: u16, options: &[&str]) -> bool {
        let data = self.dir.path().join("data");
        let log =
            std::fs::File::create(self.dir.path().join(format!("server-{port}.log"))).unwrap();
        if let Some(user) = self.user {
            chown(&self.dir.path().join(format!("server-{port}.log")), user);
        }
        let mut cmd = Command::new(self.bin.join("postgres"));
        cmd.args(["-D", data.to_str().unwrap(), "-p", &port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args([
                "-c",
                &format!("unix_socket_directories={}", self.dir.path().display()),
            ])
            .args(["-c", "max_connections=200"])
            .args(options)
            .stdout(Stdio::null())
            .stderr(log);
        if let Some((uid, gid)) = self.user {
            cmd.uid(uid).gid(gid);
        }
        let mut child = cmd.spawn().expect("start postgres");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            let ready = Command::new(self.bin.join("pg_isready"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "-U",
                    "palisade",
                    "-q",
                ])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                self.port = port;
                self.child = Some(child);
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// The connection string of database `name` on this cluster.
    pub fn url(&self, name: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=palisade dbname={name}",
            self.port
        )
    }

    /// Creates database `name` and returns its connection string.
    pub async fn database(&self, name: &str) -> String {
        let (client, connection) =
            tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls)
                .await
                .expect("connect to postgres");
        let task = tokio::spawn(connection);
        client
            .execute(&format!("CREATE DATABASE {name}"), &[])
            .await
            .expect("create database");
        drop(client);
        let _ = task.await;
        self.url(name)
    }

    /// The server's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("server-{}.log", self.port)))
            .unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGINT: fast shutdown (disconnects clients, no waiting for them).
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
