//! A real oneM2M CSE for the tests: the ACME CSE (`acmecse` on the Python package index),
//! started headless on a free loopback port with an in-memory database, and stopped on drop.
//!
//! Where it comes from: `PALISADE_ACMECSE` names the Python interpreter of a virtual
//! environment that has `acmecse` installed (`.ci/run` makes one under
//! `~/.cache/palisade/acmecse-<version>` and sets it). Unset, that same cache path is tried,
//! so a developer who ran `.ci/run` once needs nothing more. When neither exists,
//! [`AcmeCse::start`] prints that the test is skipped and returns `None`; with `CI` set it
//! fails instead, so CI never passes by skipping. Install it by hand with:
//!
//! ```text
//! python3 -m venv ~/.cache/palisade/acmecse-2026.5.3
//! ~/.cache/palisade/acmecse-2026.5.3/bin/pip install -r .ci/acmecse-requirements.txt
//! ```
//!
//! It reuses the HTTP client and [`Response`](super::server::Response) of `support/server.rs`:
//!
//! ```ignore
//! use crate::support::{cse, server};
//!
//! let Some(cse) = cse::AcmeCse::start("my_test") else { return };
//! // upstream = cse.url(), resources under cse.base() ("/cse-in")
//! ```
//!
//! The CSE's own access control is off by default ([`CseOptions::acp_checks`]): a request
//! that reaches it is carried out, so a test that checks the CSE's state afterwards proves
//! that a denial came from the gateway and not from the CSE.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::server::{http, Response};

/// The ACME CSE release `.ci/run` installs and these tests were written against.
pub const ACMECSE_VERSION: &str = "2026.5.3";

/// The environment variable naming the venv's Python interpreter.
pub const ENV_VAR: &str = "PALISADE_ACMECSE";

/// How long a CSE may take to answer its first request (it starts in ~2 s on an idle
/// machine; the tests share two cores with seven other builds).
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// How a test CSE is set up.
#[derive(Debug, Clone)]
pub struct CseOptions {
    /// CSE-ID without the leading `/` (`id-in`).
    pub cse_id: String,
    /// The CSEBase's resource name (`cse-in`): resources live under `/<cse_name>`.
    pub cse_name: String,
    /// The admin originator, which always has full access.
    pub admin: String,
    /// The CSE's own accessControlPolicy checks. Off by default: the gateway is the only
    /// access control under test, and anything that reaches the CSE is carried out.
    pub acp_checks: bool,
}

impl Default for CseOptions {
    fn default() -> Self {
        CseOptions {
            cse_id: "id-in".into(),
            cse_name: "cse-in".into(),
            admin: "CAdmin".into(),
            acp_checks: false,
        }
    }
}

/// A running ACME CSE on 127.0.0.1. Killed (SIGTERM, then SIGKILL) on drop.
pub struct AcmeCse {
    child: Option<Child>,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its setup.
    pub options: CseOptions,
    dir: tempfile::TempDir,
}

/// The interpreter to run, or why there is none.
fn interpreter() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(ENV_VAR) {
        let path = PathBuf::from(path);
        // Named explicitly: a wrong path is an error, never a skip.
        assert!(
            path.is_file(),
            "{ENV_VAR}={} does not exist (it names the Python interpreter of a venv with \
             acmecse installed)",
            path.display()
        );
        return Ok(path);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| home.map(|home| home.join(".cache")));
    if let Some(cache) = cache {
        let candidate = cache
            .join("palisade")
            .join(format!("acmecse-{ACMECSE_VERSION}"))
            .join("bin")
            .join("python3");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(format!(
        "the ACME CSE is not installed: set {ENV_VAR} to the python3 of a venv with \
         `pip install -r .ci/acmecse-requirements.txt` (acmecse {ACMECSE_VERSION}), or run \
         .ci/run once, which makes one under ~/.cache/palisade/"
    ))
}

/// A port that was free a moment ago (the CSE binds it itself; a lost race is retried).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("binding 127.0.0.1:0")
        .port()
}

static REQUEST_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh `X-M2M-RI`.
pub fn request_id() -> String {
    format!("rq{}", REQUEST_ID.fetch_add(1, Ordering::Relaxed))
}

impl AcmeCse {
    /// Starts a CSE with the default options; `None` (after printing why) when the CSE is
    /// not installed and `CI` is not set. `test` names the caller in the skip message.
    pub fn start(test: &str) -> Option<AcmeCse> {
        AcmeCse::start_with(test, CseOptions::default())
    }

    /// Starts a CSE with `options`; see [`AcmeCse::start`].
    pub fn start_with(test: &str, options: CseOptions) -> Option<AcmeCse> {
        let python = match interpreter() {
            Ok(python) => python,
            Err(why) => {
                let message = format!("SKIPPED {test}: {why}");
                assert!(std::env::var_os("CI").is_none(), "{message}, and CI is set");
                eprintln!("\n*** {message} ***\n");
                return None;
            }
        };
        let mut last_error = String::new();
        // A port taken between `free_port` and the CSE's bind makes it exit: try again.
        for _ in 0..3 {
            match AcmeCse::spawn(&python, &options) {
                Ok(cse) => return Some(cse),
                Err(error) => last_error = error,
            }
        }
        panic!(
            "the ACME CSE ({}) did not start: {last_error}",
            python.display()
        );
    }

    fn spawn(python: &Path, options: &CseOptions) -> Result<AcmeCse, String> {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        std::fs::write(dir.path().join("acme.ini"), ini(options, port)).expect("acme.ini");
        let log = std::fs::File::create(dir.path().join("acme.log")).expect("acme.log");
        let mut command = Command::new(python);
        // A test process killed outright (SIGKILL, a memory limit) never runs `Drop`: the
        // kernel then kills the CSE with the thread that started it, so none is left behind.
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        let child = command
            .args(["-m", "acmecse", "--headless", "--config", "acme.ini"])
            .arg("--base-directory")
            .arg(dir.path())
            .args(["--http-port", &port.to_string()])
            .args(["--network-interface", "127.0.0.1", "--db-type", "memory"])
            .current_dir(dir.path())
            // Its `.env` and ACME_* variables must not leak in from the developer's shell.
            .env_remove("ACME_SECURITY_SECRET")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .map_err(|error| format!("running {}: {error}", python.display()))?;
        let mut cse = AcmeCse {
            child: Some(child),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            options: options.clone(),
            dir,
        };
        cse.wait_ready()?;
        Ok(cse)
    }

    /// Polls the CSEBase as admin until it answers 2000, the process exits, or time is up.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!("exited with {status}; log:\n{}", self.log_tail()));
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                let answer = self.retrieve(&self.base(), &self.options.admin.clone());
                if answer.header("x-m2m-rsc") == Some("2000") {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no answer on {} within {START_TIMEOUT:?}; log:\n{}",
                    self.addr,
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `http://127.0.0.1:PORT`: the gateway's upstream.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `/<cse_name>`: the CSEBase's path, the parent of everything the tests create.
    pub fn base(&self) -> String {
        format!("/{}", self.options.cse_name)
    }

    /// `/<cse_id>`: the CSE-ID.
    pub fn cse_id(&self) -> String {
        format!("/{}", self.options.cse_id)
    }

    /// The last 8 KiB of the CSE's own log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read(self.dir.path().join("acme.log")).unwrap_or_default();
        let start = text.len().saturating_sub(8 << 10);
        String::from_utf8_lossy(&text[start..]).into_owned()
    }

    /// One oneM2M request straight to the CSE (no gateway): `X-M2M-RI`, `X-M2M-RVI: 3` and
    /// `Accept: application/json` are added, `X-M2M-Origin` when `origin` is given.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        origin: Option<&str>,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let mut all = onem2m_headers(origin);
        all.extend(headers.iter().map(|(n, v)| (n.to_string(), v.to_string())));
        let all: Vec<(&str, &str)> = all.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        http(self.addr, method, path, &all, body)
    }

    /// RETRIEVE `path` as `origin`.
    pub fn retrieve(&self, path: &str, origin: &str) -> Response {
        self.request("GET", path, Some(origin), &[], b"")
    }

    /// CREATE a resource of type `ty` under `parent` as `origin` with a JSON body.
    pub fn create(
        &self,
        parent: &str,
        origin: Option<&str>,
        ty: u32,
        body: &serde_json::Value,
    ) -> Response {
        let content_type = format!("application/json;ty={ty}");
        self.request(
            "POST",
            parent,
            origin,
            &[("Content-Type", &content_type)],
            body.to_string().as_bytes(),
        )
    }

    /// The resource at `path` as the admin sees it, or `None` when the CSE says 4004.
    /// Panics on any other answer: the test's view of the CSE's state must be certain.
    pub fn state(&self, path: &str) -> Option<serde_json::Value> {
        let admin = self.options.admin.clone();
        let answer = self.retrieve(path, &admin);
        match answer.header("x-m2m-rsc") {
            Some("2000") => Some(answer.json()),
            Some("4004") => None,
            other => panic!(
                "admin RETRIEVE {path} answered {} rsc {other:?}: {}",
                answer.status,
                answer.text()
            ),
        }
    }
}

/// The headers every oneM2M request from the tests carries.
pub fn onem2m_headers(origin: Option<&str>) -> Vec<(String, String)> {
    let mut headers = vec![
        ("X-M2M-RI".to_string(), request_id()),
        ("X-M2M-RVI".to_string(), "3".to_string()),
        ("Accept".to_string(), "application/json".to_string()),
    ];
    if let Some(origin) = origin {
        headers.push(("X-M2M-Origin".to_string(), origin.to_string()));
    }
    headers
}

/// The `acme.ini` for a test CSE: IN-CSE, loopback only, memory database, no UI, no
/// statistics writer, no liveliness checks (nothing runs that the test did not ask for).
fn ini(options: &CseOptions, port: u16) -> String {
    let CseOptions {
        cse_id,
        cse_name,
        admin,
        acp_checks,
    } = options;
    format!(
        "[basic.config]\n\
         cseType=IN\n\
         cseID={cse_id}\n\
         cseName={cse_name}\n\
         adminID={admin}\n\
         networkInterface=127.0.0.1\n\
         cseHost=127.0.0.1\n\
         httpPort={port}\n\
         databaseType=memory\n\
         logLevel=info\n\
         consoleTheme=dark\n\
         \n\
         [cse.security]\n\
         enableACPChecks={acp_checks}\n\
         \n\
         [cse.registration]\n\
         checkLiveliness=false\n\
         \n\
         [cse.statistics]\n\
         enable=false\n\
         \n\
         [textui]\n\
         startWithTUI=false\n\
         \n\
         [webui]\n\
         enable=false\n\
         \n\
         [console]\n\
         headless=true\n"
    )
}

impl Drop for AcmeCse {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        let _ = writeln!(
            std::io::stderr(),
            "the ACME CSE did not stop on SIGTERM: killed"
        );
    }
}
