//! Where untrusted modules are compiled: in a helper process with CPU-time and memory limits.
//!
//! A module that passed [`super::ModuleLimits`] can still make the compiler work hard in
//! ways the counts do not show. Compiling it in the gateway's own process would put that
//! cost (and any compiler bug) on the process that serves every application, and memory a
//! compile took is rarely given back to the system. So the engine runs a helper: the
//! `palisade` binary itself with the hidden subcommand `__compile`, which reads the module on
//! stdin, compiles it with an engine configured like the parent's, and writes the serialized
//! artifact on stdout. The parent sets its limits before it runs (`RLIMIT_AS`, `RLIMIT_CPU`,
//! `RLIMIT_CORE` = 0), kills it past a wall-clock limit, and only then reads its answer:
//! a bounded artifact that wasmtime's own checks (format, engine compatibility) accept.
//!
//! The helper is a resource boundary, not a security boundary against a compiler exploit:
//! it runs as the same user, without seccomp. Its artifact is trusted like an in-process
//! compile's, and cached under the engine's HMAC like one (SER-013).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde::Deserialize;
use wasmtime::OptLevel;

/// Where the engine compiles modules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Compiler {
    /// In the calling process, without time or memory limits (only [`super::ModuleLimits`]
    /// apply). Not safe against hostile modules: a module within the structural limits can
    /// still cost the process seconds of CPU and hundreds of MiB it may never return. For
    /// trusted modules, tests, or platforms without `fork`/`exec`.
    InProcess,
    /// In a child process running this program with the argument `__compile` (the `palisade`
    /// binary, or any program that calls [`run_helper`] for that argument), under
    /// [`CompileLimits`].
    Helper(PathBuf),
}

static DEFAULT_HELPER: OnceLock<PathBuf> = OnceLock::new();

/// Makes [`Compiler::Helper`] with `program` the default of every [`super::EngineConfig`]
/// built afterwards in this process. The `palisade` binary calls it with its own path at
/// start-up; a library embedder that has no helper program gets [`Compiler::InProcess`]
/// unless it chooses otherwise. Only the first call counts.
pub fn set_default_helper(program: PathBuf) {
    let _ = DEFAULT_HELPER.set(program);
}

impl Default for Compiler {
    fn default() -> Self {
        match DEFAULT_HELPER.get() {
            Some(program) => Compiler::Helper(program.clone()),
            None => Compiler::InProcess,
        }
    }
}

/// Limits on one compilation in the helper process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileLimits {
    /// The helper's address space (`RLIMIT_AS`). Compiling `acp` (~200 KB) peaks near
    /// 60 MiB; an interpreter packaged as a component (tens of MB) needs a few hundred MiB
    /// more. Cost of raising it: that much memory may be taken, for a moment, by one
    /// upload. Default: 1 GiB.
    pub memory_bytes: u64,
    /// CPU time of the helper, all its compiler threads together (`RLIMIT_CPU`). `acp`
    /// takes ~0.2 s. Default: 60 s.
    pub cpu_time: Duration,
    /// Wall-clock time before the helper is killed (covers a helper that sleeps or is
    /// starved rather than computing). Default: 120 s.
    pub wall_time: Duration,
    /// The largest artifact accepted back from the helper. Default: 512 MiB.
    pub max_artifact_bytes: u64,
}

impl Default for CompileLimits {
    fn default() -> Self {
        CompileLimits {
            memory_bytes: 1 << 30,
            cpu_time: Duration::from_secs(60),
            wall_time: Duration::from_secs(120),
            max_artifact_bytes: 512 << 20,
        }
    }
}

/// The gateway config's `[compile]` table: the compile limits, and `[compile.module]` for
/// the structural limits ([`super::ModuleLimits`]).
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CompileSettings {
    /// [`CompileLimits::memory_bytes`] in MiB. Default: 1024.
    pub memory_mib: u64,
    /// [`CompileLimits::cpu_time`] in seconds. Default: 60.
    pub cpu_s: u64,
    /// [`CompileLimits::wall_time`] in seconds. Default: 120.
    pub wall_s: u64,
    /// Structural limits checked before compiling.
    pub module: super::ModuleLimits,
}

impl Default for CompileSettings {
    fn default() -> Self {
        let limits = CompileLimits::default();
        CompileSettings {
            memory_mib: limits.memory_bytes >> 20,
            cpu_s: limits.cpu_time.as_secs(),
            wall_s: limits.wall_time.as_secs(),
            module: super::ModuleLimits::default(),
        }
    }
}

impl CompileSettings {
    /// Writes these settings into an engine configuration.
    pub fn apply(&self, config: &mut super::EngineConfig) {
        config.compile_limits.memory_bytes = self.memory_mib.saturating_mul(1 << 20);
        config.compile_limits.cpu_time = Duration::from_secs(self.cpu_s.max(1));
        config.compile_limits.wall_time = Duration::from_secs(self.wall_s.max(1));
        config.module_limits = self.module.clone();
    }
}

/// Why the helper produced no artifact.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HelperError {
    #[error("cannot run the compile helper {program}")]
    /// The helper process could not be started.
    Spawn {
        /// The helper program.
        program: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The helper ran out of its memory limit.
    #[error("compiling exceeded its memory limit of {limit_mib} MiB (compile memory_mib)")]
    Memory {
        /** The limit, in MiB. */
        limit_mib: u64,
    },
    /// The helper ran out of its CPU-time limit.
    #[error("compiling exceeded its CPU-time limit of {limit_s} s (compile cpu_s)")]
    CpuTime {
        /** The limit, in seconds. */
        limit_s: u64,
    },
    /// The helper ran out of its wall-clock limit and was killed.
    #[error("compiling exceeded its wall-clock limit of {limit_s} s (compile wall_s); the helper was killed")]
    WallTime {
        /** The limit, in seconds. */
        limit_s: u64,
    },
    /// The artifact is over the size limit.
    #[error("the compiled artifact is over {limit} bytes")]
    ArtifactTooLarge {
        /** The limit. */
        limit: u64,
    },
    /// wasmtime refused the module.
    #[error("the compiler refused the module: {0}")]
    Compile(String),
    /// The helper failed otherwise.
    #[error("the compile helper failed: {0}")]
    Failed(String),
}

/// The arguments that make the helper's engine compile like the parent's.
pub(super) fn helper_args(opt_level: OptLevel, max_wasm_stack: usize) -> Vec<String> {
    let opt = match opt_level {
        OptLevel::None => "none",
        OptLevel::SpeedAndSize => "speed-and-size",
        _ => "speed",
    };
    vec![
        HELPER_ARG.to_string(),
        "--opt-level".into(),
        opt.into(),
        "--max-wasm-stack".into(),
        max_wasm_stack.to_string(),
    ]
}

/// The first argument that makes the `palisade` binary a compile helper.
pub const HELPER_ARG: &str = "__compile";

/// Exit status of a helper whose compiler refused the module (message on stderr).
const EXIT_REFUSED: i32 = 3;

/// Compiles `bytes` in a helper process under `limits`; returns the serialized artifact.
pub(super) fn compile_in_helper(
    program: &std::path::Path,
    args: &[String],
    bytes: &[u8],
    limits: &CompileLimits,
) -> Result<Vec<u8>, HelperError> {
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_clear()
        // Each malloc arena reserves 64 MiB of address space up front; with one per compiler
        // thread, RLIMIT_AS would measure reservations rather than use. Two arenas keep the
        // limit close to what the compile really takes.
        .env("MALLOC_ARENA_MAX", "2");
    set_rlimits(&mut command, limits);
    let mut child = command.spawn().map_err(|source| HelperError::Spawn {
        program: program.display().to_string(),
        source,
    })?;
    let mut stdin = child.stdin.take().expect("piped");
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let module = bytes.to_vec();
    // The helper reads all of stdin before it writes anything, but writing from a thread
    // keeps a helper that dies early (broken pipe) from blocking the parent.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&module);
    });
    let max_artifact = limits.max_artifact_bytes;
    let (done, finished) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut artifact = Vec::new();
        let read = (&mut stdout)
            .take(max_artifact + 1)
            .read_to_end(&mut artifact);
        let _ = done.send(());
        read.map(|_| artifact)
    });
    // Its own thread, so a helper that fills the stderr pipe cannot stall stdout.
    let errors = std::thread::spawn(move || {
        let mut message = Vec::new();
        let _ = (&mut stderr).take(16 << 10).read_to_end(&mut message);
        let _ = std::io::copy(&mut stderr, &mut std::io::sink());
        message
    });
    let timed_out = finished.recv_timeout(limits.wall_time).is_err();
    if timed_out {
        // By pid: `Child::kill` on a child not yet waited for cannot hit another process.
        let _ = child.kill();
    }
    let status = child
        .wait()
        .map_err(|error| HelperError::Failed(error.to_string()))?;
    let _ = writer.join();
    let artifact = reader
        .join()
        .map_err(|_| HelperError::Failed("the reader thread panicked".into()))?;
    let message = errors.join().unwrap_or_default();
    let message = String::from_utf8_lossy(&message).trim().to_string();
    if timed_out {
        return Err(HelperError::WallTime {
            limit_s: limits.wall_time.as_secs(),
        });
    }
    if !status.success() {
        return Err(classify_failure(status, &message, limits));
    }
    let artifact = artifact.map_err(|error| HelperError::Failed(error.to_string()))?;
    if artifact.len() as u64 > limits.max_artifact_bytes {
        return Err(HelperError::ArtifactTooLarge {
            limit: limits.max_artifact_bytes,
        });
    }
    Ok(artifact)
}

/// Names the limit a failed helper hit, from how it ended.
fn classify_failure(
    status: std::process::ExitStatus,
    message: &str,
    limits: &CompileLimits,
) -> HelperError {
    let memory = || HelperError::Memory {
        limit_mib: limits.memory_bytes >> 20,
    };
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        match status.signal() {
            // RLIMIT_CPU: SIGXCPU at the soft limit, SIGKILL at the hard one.
            Some(libc::SIGXCPU) => {
                return HelperError::CpuTime {
                    limit_s: limits.cpu_time.as_secs(),
                }
            }
            // Not one of the limits set here (SIGXCPU is not ignored): most likely the
            // system's out-of-memory killer.
            Some(libc::SIGKILL) => {
                return HelperError::Failed(
                    "the helper was killed (SIGKILL, the system's out-of-memory killer?)".into(),
                )
            }
            // An allocation that RLIMIT_AS refused aborts the helper ("memory allocation of
            // N bytes failed"); a failed mmap can also surface as a fault.
            Some(libc::SIGABRT) | Some(libc::SIGSEGV) | Some(libc::SIGBUS) => return memory(),
            _ => {}
        }
    }
    // A failed mmap (code memory, a large buffer) comes back as an error, not an abort.
    let lower = message.to_ascii_lowercase();
    if [
        "memory allocation",
        "cannot allocate memory",
        "out of memory",
    ]
    .iter()
    .any(|text| lower.contains(text))
    {
        return memory();
    }
    if status.code() == Some(EXIT_REFUSED) {
        return HelperError::Compile(message.to_string());
    }
    HelperError::Failed(format!("{status}: {message}"))
}

#[cfg(unix)]
fn set_rlimits(command: &mut Command, limits: &CompileLimits) {
    use std::os::unix::process::CommandExt;
    let memory = limits.memory_bytes as libc::rlim_t;
    let cpu = limits.cpu_time.as_secs().max(1) as libc::rlim_t;
    // SAFETY: the closure runs between fork and exec and calls only setrlimit, which is
    // async-signal-safe; it touches no memory shared with the parent beyond its captures.
    unsafe {
        command.pre_exec(move || {
            let set = |resource, soft: libc::rlim_t, hard: libc::rlim_t| {
                let limit = libc::rlimit {
                    rlim_cur: soft,
                    rlim_max: hard,
                };
                if libc::setrlimit(resource, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            };
            set(libc::RLIMIT_CORE, 0, 0)?;
            set(libc::RLIMIT_AS, memory, memory)?;
            // SIGXCPU at the limit; SIGKILL a second later if it is ignored.
            set(libc::RLIMIT_CPU, cpu, cpu + 1)?;
            Ok(())
        });
    }
}

#[cfg(not(unix))]
fn set_rlimits(_command: &mut Command, _limits: &CompileLimits) {}

/// The helper's side: reads a module on stdin, compiles it, writes the artifact on stdout.
/// `args` are those after [`HELPER_ARG`]. Returns the process exit code.
pub fn run_helper(args: &[String]) -> i32 {
    let mut opt_level = OptLevel::Speed;
    let mut max_wasm_stack = super::EngineConfig::default().max_wasm_stack;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let value = args.next().map(String::as_str);
        match (arg.as_str(), value) {
            ("--opt-level", Some("none")) => opt_level = OptLevel::None,
            ("--opt-level", Some("speed")) => opt_level = OptLevel::Speed,
            ("--opt-level", Some("speed-and-size")) => opt_level = OptLevel::SpeedAndSize,
            ("--max-wasm-stack", Some(value)) if value.parse::<usize>().is_ok() => {
                max_wasm_stack = value.parse().unwrap_or(max_wasm_stack);
            }
            _ => {
                eprintln!("compile helper: unexpected argument {arg:?}");
                return 2;
            }
        }
    }
    let config = super::EngineConfig {
        opt_level,
        max_wasm_stack,
        compiler: Compiler::InProcess,
        ..super::EngineConfig::default()
    };
    // No pooling allocator: it only reserves address space for instances, which the helper
    // never makes, and it does not change the compiled code.
    let engine = match wasmtime::Engine::new(&config.wasmtime_config(false)) {
        Ok(engine) => engine,
        Err(error) => {
            eprintln!("compile helper: cannot configure the engine: {error:#}");
            return 2;
        }
    };
    let mut module = Vec::new();
    if let Err(error) = std::io::stdin().lock().read_to_end(&mut module) {
        eprintln!("compile helper: cannot read the module: {error}");
        return 2;
    }
    match engine.precompile_component(&module) {
        Ok(artifact) => {
            let mut out = std::io::stdout().lock();
            if out.write_all(&artifact).and_then(|()| out.flush()).is_err() {
                return 2;
            }
            0
        }
        Err(error) => {
            eprintln!("{error:#}");
            EXIT_REFUSED
        }
    }
}
