//! The processes and folders a scenario creates, and the guarantee that none outlives it.
//!
//! A benchmark that leaves a gateway listening, or a `wrk` hammering one, spoils the next
//! measurement on a shared machine. So every child is killed by its guard's `Drop` (error
//! paths included), by the Ctrl-C/SIGTERM handler installed in `main` ([`install_cleanup`]),
//! and on Linux by the kernel when this tool dies for any other reason (`PR_SET_PDEATHSIG`).
//! Scratch folders are removed the same ways, except the last.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

/// Children and folders alive right now, for the signal handler.
static LIVE: Mutex<Live> = Mutex::new(Live {
    pids: Vec::new(),
    dirs: Vec::new(),
});

struct Live {
    pids: Vec<u32>,
    dirs: Vec<PathBuf>,
}

fn live() -> std::sync::MutexGuard<'static, Live> {
    LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// On Ctrl-C or SIGTERM: kill every child, remove every scratch folder, exit 130.
pub fn install_cleanup() -> anyhow::Result<()> {
    ctrlc::set_handler(|| {
        let live = live();
        for &pid in &live.pids {
            kill(pid, libc::SIGKILL);
        }
        for dir in &live.dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
        eprintln!("interrupted: stopped {} child process(es)", live.pids.len());
        std::process::exit(130);
    })
    .context("installing the Ctrl-C handler")
}

fn kill(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is one of our children.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

/// Makes `command`'s process die with this one (Linux), even when this one is SIGKILLed.
fn die_with_parent(command: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe, the only kind of call allowed between fork and
        // exec; it touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = command;
}

/// A temporary folder, removed on drop or on Ctrl-C.
pub struct Scratch {
    dir: Option<tempfile::TempDir>,
}

impl Scratch {
    pub fn new() -> anyhow::Result<Scratch> {
        let dir = tempfile::Builder::new()
            .prefix("palisade-bench-")
            .tempdir()
            .context("creating a scratch folder")?;
        live().dirs.push(dir.path().to_path_buf());
        Ok(Scratch { dir: Some(dir) })
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("present until drop").path()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            live().dirs.retain(|path| path != dir.path());
        }
    }
}

/// A child process that is killed when this guard is dropped.
struct Guard(Option<Child>);

impl Guard {
    fn spawn(command: &mut Command) -> std::io::Result<Guard> {
        die_with_parent(command);
        let child = command.spawn()?;
        live().pids.push(child.id());
        Ok(Guard(Some(child)))
    }

    fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("present until drop")
    }

    fn id(&self) -> u32 {
        self.0.as_ref().map(Child::id).unwrap_or_default()
    }

    /// Takes the child out of the guard's care once it has been waited for.
    fn release(&mut self) {
        if let Some(child) = self.0.take() {
            live().pids.retain(|&pid| pid != child.id());
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
            live().pids.retain(|&pid| pid != child.id());
        }
    }
}

/// Runs `command` to its end (bounded by its own options, e.g. `wrk -d`); Ctrl-C or the
/// tool's death ends it too.
pub fn run_guarded(command: &mut Command) -> anyhow::Result<Output> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    die_with_parent(command);
    let child = command.spawn()?;
    let pid = child.id();
    live().pids.push(pid);
    let output = child.wait_with_output();
    live().pids.retain(|&other| other != pid);
    Ok(output?)
}

/// A running `palisade serve`.
pub struct Gateway {
    guard: Guard,
    pub addr: SocketAddr,
    /// When the process was spawned.
    pub spawned: Instant,
    /// When it printed its listening address (setup done, socket bound).
    pub listening: Instant,
    stderr: Arc<Mutex<String>>,
}

/// Longest a gateway may take to set up (1,000 apps compiling on a busy 2-core machine).
const START_TIMEOUT: Duration = Duration::from_secs(300);

impl Gateway {
    /// Starts `palisade serve --config <config> --data <data> --listen 127.0.0.1:0` and
    /// returns once it has printed the address it listens on (port 0: the gateway picks a
    /// free port, so no two benchmarks collide).
    pub fn start(palisade: &Path, config: &Path, data: &Path) -> anyhow::Result<Gateway> {
        let mut command = Command::new(palisade);
        command
            .args(["--log-level", "warn", "serve", "--listen", "127.0.0.1:0"])
            .arg("--config")
            .arg(config)
            .arg("--data")
            .arg(data)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let spawned = Instant::now();
        let mut guard = Guard::spawn(&mut command)
            .with_context(|| format!("running {}", palisade.display()))?;
        let stdout = guard.child().stdout.take().expect("piped");
        let stderr = guard.child().stderr.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        // Reads every line (the startup summary names each app), so the gateway never blocks
        // on a full pipe; reports the first listening address.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let address = rest.split_whitespace().next().unwrap_or("").to_string();
                    let _ = tx.send((address, Instant::now()));
                }
            }
        });
        let errors = Arc::new(Mutex::new(String::new()));
        {
            let errors = errors.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut errors = errors.lock().unwrap_or_else(|e| e.into_inner());
                    if errors.len() < 16 << 10 {
                        errors.push_str(&line);
                        errors.push('\n');
                    }
                }
            });
        }
        let (address, listening) = match rx.recv_timeout(START_TIMEOUT) {
            Ok(found) => found,
            Err(_) => {
                let status = guard.child().try_wait().ok().flatten();
                bail!(
                    "palisade serve did not start listening ({}); stderr:\n{}",
                    status.map_or("still running".into(), |s| s.to_string()),
                    errors.lock().unwrap_or_else(|e| e.into_inner())
                );
            }
        };
        let addr = address
            .parse()
            .with_context(|| format!("the gateway printed {address:?} as its address"))?;
        Ok(Gateway {
            guard,
            addr,
            spawned,
            listening,
            stderr: errors,
        })
    }

    pub fn pid(&self) -> u32 {
        self.guard.id()
    }

    /// What the gateway wrote to stderr so far (warnings, errors).
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// SIGTERM, then up to 15 s for a graceful exit (the audit log is flushed), else SIGKILL.
    pub fn stop(mut self) -> anyhow::Result<()> {
        kill(self.pid(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Some(status) = self.guard.child().try_wait()? {
                self.guard.release();
                if !status.success() {
                    bail!(
                        "palisade serve did not shut down gracefully on SIGTERM ({status}); stderr: {}",
                        self.stderr()
                    );
                }
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        bail!("palisade serve did not stop within 15 s of SIGTERM (killed)")
    }
}

/// Fields of `/proc/<pid>/status`, in KiB.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Memory {
    pub vm_rss_kib: u64,
    pub vm_hwm_kib: u64,
    pub rss_anon_kib: u64,
    pub rss_file_kib: u64,
    pub vm_size_kib: u64,
}

impl Memory {
    pub fn of(pid: u32) -> anyhow::Result<Memory> {
        let path = format!("/proc/{pid}/status");
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        let field = |name: &str| -> anyhow::Result<u64> {
            text.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
                .ok_or_else(|| anyhow!("{path} has no {name}"))
        };
        Ok(Memory {
            vm_rss_kib: field("VmRSS")?,
            vm_hwm_kib: field("VmHWM")?,
            rss_anon_kib: field("RssAnon")?,
            rss_file_kib: field("RssFile")?,
            vm_size_kib: field("VmSize")?,
        })
    }
}

/// CPU time (user + system) a process has used so far.
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // The command name (field 2) may contain spaces; fields 14 and 15 follow its `)`.
    let rest = text
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| anyhow!("{path} is malformed"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |index: usize| -> anyhow::Result<u64> {
        fields
            .get(index)
            .and_then(|value| value.parse().ok())
            .ok_or_else(|| anyhow!("{path} is malformed"))
    };
    // After `)`: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let total = ticks(11)? + ticks(12)?;
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(Duration::from_micros(total * 1_000_000 / per_second))
}

/// A minimal blocking HTTP/1.1 client on one keep-alive connection: enough for the few
/// requests the scenarios make themselves (the load comes from `wrk`).
pub struct Client {
    stream: TcpStream,
    buffer: Vec<u8>,
}

/// An HTTP answer.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "the answer ({}) is not JSON: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

impl Client {
    pub fn connect(addr: SocketAddr) -> anyhow::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            buffer: Vec::new(),
        })
    }

    pub fn get(&mut self, path: &str) -> anyhow::Result<Answer> {
        self.request("GET", path, b"")
    }

    pub fn post_json(&mut self, path: &str, body: &serde_json::Value) -> anyhow::Result<Answer> {
        self.request("POST", path, body.to_string().as_bytes())
    }

    pub fn request(&mut self, method: &str, path: &str, body: &[u8]) -> anyhow::Result<Answer> {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        self.stream.write_all(head.as_bytes())?;
        self.stream.write_all(body)?;
        let end = loop {
            if let Some(end) = find(&self.buffer, b"\r\n\r\n") {
                break end;
            }
            self.fill()?;
        };
        let head = String::from_utf8_lossy(&self.buffer[..end]).into_owned();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| anyhow!("not an HTTP answer: {head:?}"))?;
        let length: usize = head
            .lines()
            .filter_map(|line| line.split_once(':'))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
            .and_then(|(_, value)| value.trim().parse().ok())
            .ok_or_else(|| anyhow!("an answer without Content-Length: {head:?}"))?;
        let total = end + 4 + length;
        while self.buffer.len() < total {
            self.fill()?;
        }
        let body = self.buffer[end + 4..total].to_vec();
        self.buffer.drain(..total);
        Ok(Answer { status, body })
    }

    fn fill(&mut self) -> anyhow::Result<()> {
        let mut chunk = [0u8; 16 << 10];
        let read = self.stream.read(&mut chunk)?;
        if read == 0 {
            bail!("the gateway closed the connection");
        }
        self.buffer.extend_from_slice(&chunk[..read]);
        Ok(())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}
