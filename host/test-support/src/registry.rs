//! A real OCI registry for the tests: Debian's `docker-registry` (the CNCF distribution
//! server), started on a free loopback port with filesystem storage in a temp dir, stopped on
//! drop.
//!
//! `.ci/run` installs the package when it is missing. `PALISADE_REGISTRY_BIN` names another
//! binary; otherwise `docker-registry` is looked up on the PATH and in /usr/bin. When it is not
//! there, [`Registry::start`] prints that the test is skipped and returns `None`; with `CI` set
//! it fails instead, so CI never passes by skipping. By hand: `apt-get install docker-registry`.
//!
//! The storage layout is the server's own (`docker/registry/v2/blobs/sha256/<2>/<hex>/data`),
//! so a test can tamper with a stored blob the way a compromised registry or disk would.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ENV_VAR: &str = "PALISADE_REGISTRY_BIN";
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running registry.
pub struct Registry {
    child: Option<Child>,
    binary: PathBuf,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    tls: bool,
}

fn binary() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(ENV_VAR) {
        return Ok(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path).chain([PathBuf::from("/usr/bin")]) {
        let candidate = dir.join("docker-registry");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(format!(
        "the OCI registry is not installed: `apt-get install docker-registry` (Debian's CNCF \
         distribution server), or set {ENV_VAR}"
    ))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("binding 127.0.0.1:0")
        .port()
}

impl Registry {
    /// Starts a registry; `None` (after printing why) when it is not installed and `CI` is
    /// not set. `test` names the caller in the skip message.
    pub fn start(test: &str) -> Option<Registry> {
        Registry::start_with(test, None)
    }

    /// Starts a registry serving HTTPS with this PEM certificate (chain) and key.
    pub fn start_tls(test: &str, cert_pem: &str, key_pem: &str) -> Option<Registry> {
        Registry::start_with(test, Some((cert_pem, key_pem)))
    }

    fn start_with(test: &str, tls: Option<(&str, &str)>) -> Option<Registry> {
        let binary = match binary() {
            Ok(binary) => binary,
            Err(why) => {
                let message = format!("SKIPPED {test}: {why}");
                assert!(std::env::var_os("CI").is_none(), "{message}, and CI is set");
                eprintln!("\n*** {message} ***\n");
                return None;
            }
        };
        let dir = tempfile::tempdir().expect("temp dir");
        if let Some((cert, key)) = tls {
            std::fs::write(dir.path().join("registry.crt"), cert).expect("certificate");
            std::fs::write(dir.path().join("registry.key"), key).expect("key");
        }
        let mut registry = Registry {
            child: None,
            binary,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir,
            tls: tls.is_some(),
        };
        let mut last_error = String::new();
        // A port taken between `free_port` and the server's bind makes it exit: try again.
        for _ in 0..3 {
            registry.addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
            match registry.spawn() {
                Ok(()) => return Some(registry),
                Err(error) => last_error = error,
            }
        }
        panic!("the registry did not start: {last_error}");
    }

    fn config(&self) -> String {
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: {}\n",
            self.storage().display(),
            self.addr
        );
        if self.tls {
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                self.dir.path().join("registry.crt").display(),
                self.dir.path().join("registry.key").display()
            ));
        }
        config
    }

    fn spawn(&mut self) -> Result<(), String> {
        let config = self.dir.path().join("config.yml");
        std::fs::write(&config, self.config()).expect("config.yml");
        let log = std::fs::File::create(self.dir.path().join("registry.log")).expect("log");
        let mut command = Command::new(&self.binary);
        // A test process killed outright never runs `Drop`: the kernel then kills the
        // registry with the thread that started it.
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
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .map_err(|error| format!("running {}: {error}", self.binary.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!("exited with {status}; log:\n{}", self.log()));
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("no answer on {}; log:\n{}", self.addr, self.log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `127.0.0.1:PORT`, the registry part of references (and the insecure registry name).
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The storage root.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Where the registry keeps the blob with this `sha256:<hex>` digest.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
        self.storage()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Stops the server (the registry is down); its storage stays for [`Registry::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and storage.
    pub fn restart(&mut self) {
        self.stop();
        let mut last_error = String::new();
        for _ in 0..3 {
            match self.spawn() {
                Ok(()) => return,
                Err(error) => last_error = error,
            }
        }
        panic!("the registry did not restart: {last_error}");
    }

    /// The server's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}
