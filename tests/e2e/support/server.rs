//! Helpers for tests that start a real `palisade serve` on 127.0.0.1: the gateway process
//! (temp data dir, port 0, its printed address), a small blocking HTTP/1.1 client over
//! std sockets, and a stand-in CSE (a real HTTP server in a thread) to proxy to.
//! Everything is bounded in time and stops by itself.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a gateway may take to compile its plugins and start listening.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// A running `palisade serve`.
pub struct Gateway {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub dir: Arc<tempfile::TempDir>,
    args: Vec<String>,
    /// Everything the process printed on stdout so far (startup summary).
    pub stdout: Arc<Mutex<Vec<String>>>,
    /// The operator log (stderr) so far, its first 64 KiB.
    pub stderr: Arc<Mutex<String>>,
}

impl Gateway {
    /// Starts `palisade serve --config <dir>/gateway.toml` with `config` written there, after
    /// writing `files` (name, contents) beside it.
    pub fn start(config: &str, files: &[(&str, &str)]) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        std::fs::write(dir.path().join("gateway.toml"), config).unwrap();
        let args = vec![
            "--config".to_string(),
            dir.path().join("gateway.toml").display().to_string(),
        ];
        Gateway::spawn(Arc::new(dir), args)
    }

    /// Starts the demo gateway (no config) in a temp data folder.
    pub fn start_demo() -> Gateway {
        Gateway::spawn(Arc::new(tempfile::tempdir().unwrap()), Vec::new())
    }

    /// Stops this gateway (SIGTERM) and starts it again on the same files and data folder.
    pub fn restart(mut self) -> Gateway {
        let status = self.terminate();
        assert!(status.success(), "palisade serve exited with {status}");
        Gateway::spawn(self.dir.clone(), self.args.clone())
    }

    /// Like [`Gateway::start`] but keeping the config's own listeners (no `--listen`); the
    /// first one printed becomes [`Gateway::addr`].
    pub fn start_with_listeners(config: &str, files: &[(&str, &str)]) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        std::fs::write(dir.path().join("gateway.toml"), config).unwrap();
        let args = vec![
            "--config".to_string(),
            dir.path().join("gateway.toml").display().to_string(),
            "--no-listen-override".to_string(),
        ];
        Gateway::spawn(Arc::new(dir), args)
    }

    fn spawn(dir: Arc<tempfile::TempDir>, base_args: Vec<String>) -> Gateway {
        Gateway::spawn_with_env(dir, base_args, &[])
    }

    /// Starts another `palisade serve` on this one's files and data folder (after it stopped
    /// or was killed), with `env` added to the new process's environment.
    pub fn start_again_with_env(&self, env: &[(&str, &str)]) -> Gateway {
        assert!(self.child.is_none(), "stop the gateway first");
        Gateway::spawn_with_env(self.dir.clone(), self.args.clone(), env)
    }

    /// Kills the process with SIGKILL (no shutdown at all: a crash) and waits for it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn spawn_with_env(
        dir: Arc<tempfile::TempDir>,
        base_args: Vec<String>,
        env: &[(&str, &str)],
    ) -> Gateway {
        let mut args: Vec<String> = base_args
            .iter()
            .filter(|arg| *arg != "--no-listen-override")
            .cloned()
            .collect();
        if !base_args.iter().any(|arg| arg == "--no-listen-override") {
            args.extend(["--listen".to_string(), "127.0.0.1:0".to_string()]);
        }
        args.extend([
            "--data".to_string(),
            dir.path().join("data").display().to_string(),
        ]);
        let mut child = Command::new(env!("CARGO_BIN_EXE_palisade"))
            .args(["--log-level", "info", "serve"])
            .args(&args)
            .current_dir(dir.path())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running palisade serve");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    let addr = line
                        .split("listening on ")
                        .nth(1)
                        .and_then(|rest| rest.split("://").nth(1))
                        .map(|rest| rest.split_whitespace().next().unwrap_or("").to_string());
                    // Recorded before the address is announced: the summary precedes it.
                    lines.lock().unwrap().push(line);
                    if let Some(addr) = addr {
                        let _ = tx.send(addr);
                    }
                }
            });
        }
        // Drain stderr so the process never blocks on a full pipe; keep it for failures.
        let errors = Arc::new(Mutex::new(String::new()));
        {
            let errors = errors.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut errors = errors.lock().unwrap();
                    if errors.len() < 64 << 10 {
                        errors.push_str(&line);
                        errors.push('\n');
                    }
                }
            });
        }
        let addr = match rx.recv_timeout(START_TIMEOUT) {
            Ok(addr) => addr.parse().expect("a socket address"),
            Err(_) => {
                let _ = child.kill();
                let status = child.wait();
                panic!(
                    "palisade serve did not start ({status:?}); stdout: {:?}; stderr: {}",
                    lines.lock().unwrap(),
                    errors.lock().unwrap()
                );
            }
        };
        Gateway {
            child: Some(child),
            addr,
            dir,
            args: base_args,
            stdout: lines,
            stderr: errors,
        }
    }

    /// The process id of the running gateway.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The data folder.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// One HTTP request to the gateway.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        http(self.addr, method, path, headers, body)
    }

    /// `POST /v1/decide` with a JSON body.
    pub fn decide(&self, body: &serde_json::Value) -> Response {
        self.request(
            "POST",
            "/v1/decide",
            &[("content-type", "application/json")],
            body.to_string().as_bytes(),
        )
    }

    /// `POST /v1/decide?explain=true` with a JSON body: the answer with `timings` and
    /// `stages`.
    pub fn decide_explained(&self, body: &serde_json::Value) -> Response {
        self.request(
            "POST",
            "/v1/decide?explain=true",
            &[("content-type", "application/json")],
            body.to_string().as_bytes(),
        )
    }

    /// `GET /metrics` as text.
    pub fn metrics(&self) -> String {
        self.request("GET", "/metrics", &[], b"").text()
    }

    /// Sends SIGTERM and waits (bounded) for the process to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("palisade serve did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {}", self.text()))
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`), read to the end.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let _ = stream.write_all(body);
    read_response(&mut stream).expect("a response")
}

/// Reads one response from `stream` until the server closes it.
pub fn read_response(stream: &mut TcpStream) -> std::io::Result<Response> {
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw).ok_or_else(|| {
        std::io::Error::other(format!(
            "not an HTTP response: {:?}",
            String::from_utf8_lossy(&raw)
        ))
    })
}

fn parse_response(raw: &[u8]) -> Option<Response> {
    let end = raw.windows(4).position(|window| window == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: HashMap<String, String> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    if headers
        .get("transfer-encoding")
        .is_some_and(|value| value.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Some(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(
            std::str::from_utf8(&data[..line_end]).unwrap_or("0").trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}

/// A request the stand-in CSE received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

/// What the stand-in CSE answers: status, headers, body, and an optional delay.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub delay: Duration,
}

impl Answer {
    /// A oneM2M JSON answer with `X-M2M-RSC`.
    pub fn json(status: u16, rsc: u32, body: &str) -> Answer {
        Answer {
            status,
            headers: vec![
                ("Content-Type".into(), "application/json".into()),
                ("X-M2M-RSC".into(), rsc.to_string()),
            ],
            body: body.as_bytes().to_vec(),
            delay: Duration::ZERO,
        }
    }
}

type Handler = dyn Fn(&Received) -> Answer + Send + Sync;

/// A stand-in CSE: a real HTTP server on 127.0.0.1 in a thread, one connection at a time
/// handled on its own thread, recording what it receives.
pub struct StandInCse {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StandInCse {
    pub fn start(handler: impl Fn(&Received) -> Answer + Send + Sync + 'static) -> StandInCse {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let thread = {
            let received = received.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                // Bounded: the test stops it, and it stops by itself after 10 minutes.
                let deadline = Instant::now() + Duration::from_secs(600);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let received = received.clone();
                            let handler = handler.clone();
                            std::thread::spawn(move || {
                                serve_one(stream, &received, handler.as_ref())
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        StandInCse {
            addr,
            received,
            stop,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting and closes the listening socket: connections are refused afterwards.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for StandInCse {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve_one(mut stream: TcpStream, received: &Mutex<Vec<Received>>, handler: &Handler) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    // Keep-alive: answer requests on this connection until the client closes it.
    let mut buffer = Vec::new();
    loop {
        let Some(request) = read_request(&mut stream, &mut buffer) else {
            return;
        };
        received.lock().unwrap().push(request.clone());
        let answer = handler(&request);
        if !answer.delay.is_zero() {
            std::thread::sleep(answer.delay);
        }
        let mut head = format!(
            "HTTP/1.1 {} X\r\nContent-Length: {}\r\n",
            answer.status,
            answer.body.len()
        );
        for (name, value) in &answer.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        if stream.write_all(head.as_bytes()).is_err() || stream.write_all(&answer.body).is_err() {
            return;
        }
    }
}

fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Received> {
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let read = stream.read(&mut chunk).ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split_whitespace();
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let start = end + 4;
    while buffer.len() < start + length {
        let read = stream.read(&mut chunk).ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    let body = buffer[start..start + length].to_vec();
    buffer.drain(..start + length);
    Some(Received {
        method,
        path,
        headers,
        body,
    })
}

impl Gateway {
    /// The gateway's resident memory (VmRSS) in bytes.
    pub fn rss_bytes(&self) -> u64 {
        rss_kib(self.pid()) * 1024
    }
}

/// A line of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`).
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()
}

/// Resident memory of `pid` now, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS").expect("/proc/<pid>/status has VmRSS")
}

/// Runs `work` and returns its result with the largest resident memory of `pid` while it ran,
/// in KiB: the kernel's peak (`VmHWM`, reset before through `clear_refs` when allowed) and
/// samples taken every 10 ms, whichever is larger.
pub fn peak_rss_kib_during<T>(pid: u32, work: impl FnOnce() -> T) -> (T, u64) {
    let reset = std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            // Bounded: the work ends, and the sampler with it, or after 10 minutes.
            let deadline = Instant::now() + Duration::from_secs(600);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                peak = peak.max(status_kib(pid, "VmRSS").unwrap_or(0));
                std::thread::sleep(Duration::from_millis(10));
            }
            peak
        })
    };
    let result = work();
    stop.store(true, Ordering::Relaxed);
    let mut peak = sampler.join().unwrap();
    if reset {
        peak = peak.max(status_kib(pid, "VmHWM").unwrap_or(0));
    }
    (result, peak)
}
