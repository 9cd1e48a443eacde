//! The `palisade` command. `anyhow` lives here, at the edge; the library's errors are enums.
// The argument structs' doc comments are clap's help text, not rustdoc: `[tls]` there is a
// TOML section and a URL is an example to type, so rustdoc must not read them as links.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::bare_urls)]

pub mod audit;
mod bench;
mod check;
mod collector;
mod completions;
mod eval;
pub mod group;
mod harness;
mod inspect;
mod new;
pub mod provision;
mod push;
mod serve;
mod test;
mod trust;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use harness::{Answer, Harness, HostSetup, LoadedFile};

/// Palisade: a security runtime for M2M/IoT gateways. Sandboxed WebAssembly plugins make
/// each application's authentication and authorization decisions.
#[derive(Debug, Parser)]
#[command(name = "palisade", version, about, long_about = None)]
pub struct Cli {
    /// Log filter (e.g. `info`, `palisade=debug`); the RUST_LOG variable works too.
    /// Default: `info` for `serve` (a daemon reports what it does), `warn` otherwise.
    #[arg(long = "log-level", global = true)]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// One decision from a plugin, its configuration and a request.
    Eval(eval::EvalArgs),
    /// Run a plugin's test cases (TOML files) and print a pass/fail table.
    Test(test::TestArgs),
    /// Decisions per second and latency percentiles for a plugin and a request.
    Bench(bench::BenchArgs),
    /// Group authentication of devices towards the M2M server (SER-027/028).
    Group(group::GroupArgs),
    /// Create an Ed25519 key pair (private key file mode 0600).
    Keygen(trust::KeygenArgs),
    /// Let a publisher key sign modules for one application and kinds (an operator root key).
    Delegate(trust::DelegateArgs),
    /// Embed a signed manifest and its delegation into a plugin component.
    Sign(trust::SignArgs),
    /// Check a signed module up to a trusted root; prints the manifest or the exact reason.
    Verify(trust::VerifyArgs),
    /// Check the audit trail: hash chain and signed checkpoints (SER-016).
    Audit(audit::AuditArgs),
    /// Credential provisioning bundles from service providers (SER-019..022).
    Provision(provision::ProvisionArgs),
    /// Run the gateway: decision API, oneM2M enforcement proxy, metrics, health.
    Serve(serve::ServeArgs),
    /// Run the fleet's decision-log collector (HTTPS with client certificates, PostgreSQL).
    Collector(collector::CollectorArgs),
    /// Upload a signed module to a running gateway and manage its versions (admin API).
    Push(push::PushArgs),
    /// Show what a plugin module is: world, imports, exports, WIT version, embedded
    /// signature (unverified).
    Inspect(inspect::InspectArgs),
    /// Load a gateway configuration as `serve` would (plugins compiled, `prepare` run), without
    /// binding a port; exit 1 with file:line:key errors.
    Check(check::CheckArgs),
    /// Print a shell completion script.
    Completions(completions::CompletionsArgs),
    /// Write the manual pages.
    Man(completions::ManArgs),
    /// Create a plugin project (Rust, Python or JavaScript) with a passing case file.
    New(new::NewArgs),
}

/// Runs the command line; the exit code is 0 on success, 1 when a check failed (a failing
/// test case, a deny with --fail-on-deny), 2 when the command itself could not run.
pub fn main() -> ExitCode {
    // The compile helper (issue #12.1): hidden from the help, not a clap subcommand, so it
    // starts with nothing but the engine it needs.
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() == Some(std::ffi::OsStr::new(palisade_core::HELPER_ARG)) {
        let rest: Vec<String> = args.map(|arg| arg.to_string_lossy().into_owned()).collect();
        return ExitCode::from(palisade_core::run_helper(&rest) as u8);
    }
    // Every engine this process builds compiles untrusted modules in a child process of this
    // very program. On Linux through /proc/self/exe: the same binary even if the file was
    // replaced by an upgrade meanwhile, so its artifacts always match this engine.
    // PALISADE_COMPILE_IN_PROCESS=1 opts out (platforms where a child process cannot be
    // started; measuring what the helper costs): unsafe against hostile modules, so it is
    // said at every start.
    if std::env::var_os("PALISADE_COMPILE_IN_PROCESS").is_some_and(|value| value == "1") {
        eprintln!(
            "warning: PALISADE_COMPILE_IN_PROCESS=1: modules compile in this process, without CPU or memory limits"
        );
        return run(Cli::parse());
    }
    let program = if cfg!(target_os = "linux") {
        Ok(std::path::PathBuf::from("/proc/self/exe"))
    } else {
        std::env::current_exe()
    };
    match program {
        Ok(program) => palisade_core::set_default_helper(program),
        Err(error) => eprintln!(
            "warning: cannot locate the palisade binary ({error}); modules compile in-process, without compile limits"
        ),
    }
    run(Cli::parse())
}

fn run(cli: Cli) -> ExitCode {
    // A report piped into `head` ends quietly, as other Unix tools do, instead of panicking in
    // `println!` on the closed pipe. Only for commands whose one output is stdout: the services
    // and network clients keep Rust's ignored SIGPIPE, so a peer closing a socket is an error on
    // that socket, never a silent end of the process.
    #[cfg(unix)]
    if matches!(
        cli.command,
        Command::Inspect(_)
            | Command::Test(_)
            | Command::Eval(_)
            | Command::Audit(_)
            | Command::Verify(_)
            | Command::Check(_)
            | Command::Completions(_)
            | Command::Man(_)
    ) {
        // SAFETY: called before any thread is started; restoring the default disposition of
        // one signal has no other effect on this process.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let default_log = match (&cli.log_level, &cli.command) {
        (Some(filter), _) => filter.as_str(),
        (None, Command::Serve(_) | Command::Collector(_)) => "info",
        (None, _) => "warn",
    };
    init_logging(default_log);
    let outcome = match cli.command {
        Command::Eval(args) => eval::run(args),
        Command::Test(args) => test::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Group(args) => group::run(args).map(|()| true),
        Command::Provision(args) => provision::run(args),
        Command::Audit(args) => audit::run(args),
        Command::Keygen(args) => trust::run_keygen(args),
        Command::Delegate(args) => trust::run_delegate(args),
        Command::Sign(args) => trust::run_sign(args),
        Command::Verify(args) => trust::run_verify(args),
        Command::Serve(args) => serve::run(args),
        Command::Collector(args) => collector::run(args),
        Command::Push(args) => push::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Check(args) => check::run(args),
        Command::Completions(args) => completions::run_completions(args),
        Command::Man(args) => completions::run_man(args),
        Command::New(args) => new::run(args),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
