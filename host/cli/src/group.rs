//! `palisade group`: group authentication tools (SER-027/028): the simulation, and the HTTP
//! server role and gateway agent (`init`, `server`, `agent`; see `docs/group-auth.md`).

use anyhow::Context as _;
use palisade_group::{simulate, Mode, SimConfig, SimPhase, SimReport};
use std::io::IsTerminal as _;

/// Group authentication of devices (SER-027 represented, SER-028 independent).
#[derive(Debug, clap::Args)]
pub struct GroupArgs {
    #[command(subcommand)]
    command: GroupCommand,
}

#[derive(Debug, clap::Subcommand)]
enum GroupCommand {
    /// Run device, gateway and server in one process and measure a group authentication,
    /// with batch verification, one-by-one verification and one session per device.
    Simulate(SimulateArgs),
    /// Create (or show) this node's group-authentication identity key in DIR/keys and print
    /// its public key: the server's for devices and gateways, a gateway's for the server's
    /// registry.
    Init(InitArgs),
    /// Run the M2M server role over HTTP (POST /group/v1/challenge, /represented,
    /// /independent), with the registry of devices, groups and gateways from a JSON file.
    Server(ServerArgs),
    /// Run the gateway agent over HTTP (/agent/v1/groups/...): devices answer here, the agent
    /// talks to the server. Groups and member keys come from the provisioning state.
    Agent(AgentArgs),
}

#[derive(Debug, clap::Args)]
struct SimulateArgs {
    /// Number of devices in the group (1..=16384).
    #[arg(long, default_value_t = 256)]
    devices: usize,
    /// `represented` (the gateway vouches for the group, SER-027) or `independent` (each
    /// device gets its own keys with the server, SER-028).
    #[arg(long, default_value = "independent")]
    mode: Mode,
    /// How many members are forged (claim a member's id with another key).
    #[arg(long, default_value_t = 0)]
    forged: usize,
    /// Repeat each run this many times and keep the fastest timings.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Skip the one-session-per-device comparison (on by default up to 4096 devices).
    #[arg(long)]
    no_per_device: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `palisade group ...`.
pub fn run(args: GroupArgs) -> anyhow::Result<()> {
    match args.command {
        GroupCommand::Simulate(a) => simulate_cmd(a),
        GroupCommand::Init(a) => init(a),
        GroupCommand::Server(a) => server(a),
        GroupCommand::Agent(a) => agent(a),
    }
}

fn simulate_cmd(a: SimulateArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.forged <= a.devices,
        "--forged {} exceeds --devices {}",
        a.forged,
        a.devices
    );
    let now = palisade_types::now_unix();
    let mut cfg = SimConfig::new(a.devices, a.mode, now);
    cfg.forged = a.forged;
    cfg.device_by_device = !a.no_per_device && a.devices <= 4096;
    cfg.rounds = a.rounds;
    let visible = !a.json && std::io::stderr().is_terminal();
    let mut bar: Option<(SimPhase, indicatif::ProgressBar)> = None;
    let mut progress = |phase: SimPhase, done: usize, total: usize| {
        if !visible {
            return;
        }
        if bar.as_ref().is_none_or(|(p, _)| *p != phase) {
            if let Some((_, old)) = bar.take() {
                old.finish_and_clear();
            }
            bar = Some((phase, progress_bar(phase, total)));
        }
        if let Some((_, b)) = &bar {
            b.set_position(done as u64);
        }
    };
    let report = simulate(&cfg, &mut progress);
    if let Some((_, b)) = bar {
        b.finish_and_clear();
    }
    let report = report.context("group simulation failed")?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

/// The progress bar of one phase, on stderr. It is only made when stderr is a terminal and
/// the output is not JSON, so that scripts and pipes see the report alone.
fn progress_bar(phase: SimPhase, total: usize) -> indicatif::ProgressBar {
    let what = match phase {
        SimPhase::Setup => "generating device keys",
        SimPhase::Batch => "group run, batch verification",
        SimPhase::OneByOne => "group run, one-by-one verification",
        SimPhase::DeviceByDevice => "one session per device",
    };
    let style =
        indicatif::ProgressStyle::with_template("{msg:<35} [{bar:20}] {pos}/{len} {elapsed}")
            .expect("the template is valid")
            .progress_chars("=> ");
    indicatif::ProgressBar::with_draw_target(
        Some(total as u64),
        indicatif::ProgressDrawTarget::stderr(),
    )
    .with_style(style)
    .with_message(what)
}

fn print_report(r: &SimReport) {
    let mode = match r.mode {
        Mode::Represented => "represented (SER-027)",
        Mode::Independent => "independent (SER-028)",
    };
    println!(
        "group of {} devices, {mode}, {} forged",
        r.devices,
        r.forged.len()
    );
    if !r.forged.is_empty() {
        println!("forged members: {}", r.forged.join(", "));
    }
    println!();
    println!(
        "{:<17} {:>6} {:>8} {:>10} {:>13} {:>13} {:>12} {:>10} {:>12}",
        "run",
        "auth",
        "rejected",
        "devices/s",
        "server dev/s",
        "gateway dev/s",
        "WAN RTT/dev",
        "WAN B/dev",
        "local B/dev"
    );
    for run in &r.runs {
        println!(
            "{:<17} {:>6} {:>8} {:>10.0} {:>13.0} {:>13.0} {:>12.4} {:>10.1} {:>12.1}",
            run.name,
            run.authenticated,
            run.rejected.len(),
            run.devices_per_second,
            run.server_devices_per_second,
            run.gateway_devices_per_second,
            run.wan_round_trips_per_device,
            run.wan_bytes_per_device,
            run.local_bytes_per_device,
        );
    }
    if let Some(first) = r.runs.first() {
        if !first.rejected.is_empty() {
            println!();
            println!("rejected:");
            for (d, why) in &first.rejected {
                println!("  {d}: {why}");
            }
        }
    }
    let verifier = match r.mode {
        Mode::Represented => "gateway",
        Mode::Independent => "server",
    };
    if let (Some(b), Some(o)) = (
        r.runs.iter().find(|x| x.name == "batch"),
        r.runs.iter().find(|x| x.name == "one_by_one"),
    ) {
        let rate = |x: &palisade_group::SimRun| match r.mode {
            Mode::Represented => x.gateway_devices_per_second,
            Mode::Independent => x.server_devices_per_second,
        };
        println!();
        println!(
            "{verifier} (verifies the member signatures): batch {:.0} devices/s, one-by-one {:.0} devices/s ({:.2}x)",
            rate(b),
            rate(o),
            rate(b) / rate(o).max(1e-9)
        );
    }
}

/// The label of the group-authentication identity key in a data folder's keystore (gateway
/// scope): the server's identity for `group server`, the gateway's for `group agent`.
pub const GROUP_IDENTITY_LABEL: &str = "group-identity";

#[derive(Debug, clap::Args)]
struct InitArgs {
    /// The data folder (its keystore is DIR/keys).
    #[arg(long)]
    data: std::path::PathBuf,
    /// Also write the public key (64 hex digits) to this file.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

#[derive(Debug, clap::Args)]
struct ServerArgs {
    /// Address to listen on (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:8480")]
    listen: std::net::SocketAddr,
    /// The data folder: the server's identity key in DIR/keys (made by `group init` or at
    /// first start).
    #[arg(long)]
    data: std::path::PathBuf,
    /// The registry: {"server_id", "devices": {id: key hex}, "groups": {group: [ids]},
    /// "gateways": {id: {"public_key", "represents": [groups]}}}. Default
    /// DIR/group-registry.json.
    #[arg(long)]
    registry: Option<std::path::PathBuf>,
    /// Lifetime of a challenge in seconds (SER-012).
    #[arg(long, default_value_t = 60)]
    challenge_ttl: u64,
    /// Represented mode only with evidence (#16.5): refuse assertions that do not carry the
    /// members' signed answers, and accept only the members whose answers verify. Costs one
    /// batch verification of the members at the server. Without it the server trusts an
    /// authorised gateway's list (SER-027).
    #[arg(long)]
    require_evidence: bool,
    /// Share the server's state (open challenges, spent nonces, served challenge requests,
    /// the registry) with other instances through this PostgreSQL database
    /// (`postgres://user@host/db` or `host=... dbname=...`; plain TCP, no TLS), so instances
    /// behind one load balancer refuse a replay made to a sibling (issue #17.4). Every
    /// instance names the same database and holds the same identity key; the registry file
    /// given at start replaces the shared registry. Without it (the default) the state is in
    /// this process's memory. Costs two to four database round trips per request; if the
    /// database is unreachable requests are refused with 503 `state-unavailable` and the
    /// server does not start.
    #[arg(long, value_name = "POSTGRES_URL")]
    state: Option<String>,
    /// Connections to the state database this instance holds (each a PostgreSQL backend).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    state_pool: u16,
    /// Bound in milliseconds on reaching the state database, on waiting for one of its
    /// connections, and on each statement; past it the request is refused (503).
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    state_timeout_ms: u64,
}

#[derive(Debug, clap::Args)]
struct AgentArgs {
    /// Address to listen on (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:8481")]
    listen: std::net::SocketAddr,
    /// The server role's base URL, e.g. https://m2m.example:8480 (http:// works, warned).
    #[arg(long)]
    server: String,
    /// For an https:// server: PEM CA certificates its certificate must chain to.
    #[arg(long, value_name = "CA.pem")]
    server_ca: Option<std::path::PathBuf>,
    /// For an https:// server: a PEM client certificate to present (with --client-key).
    #[arg(long, value_name = "CERT.pem")]
    client_cert: Option<std::path::PathBuf>,
    /// The PEM private key of --client-cert.
    #[arg(long, value_name = "KEY.pem")]
    client_key: Option<std::path::PathBuf>,
    /// The server's public key (64 hex digits, as printed by its `group init`).
    #[arg(long)]
    server_key: std::path::PathBuf,
    /// The gateway data folder: identity key in DIR/keys, groups and member keys in
    /// DIR/provision/state.json (applied provisioning bundles), gateway id in
    /// DIR/provision/trust.json.
    #[arg(long)]
    data: std::path::PathBuf,
    /// The gateway id, if not the one in DIR/provision/trust.json.
    #[arg(long)]
    gateway_id: Option<String>,
    /// How long a round collects answers before forwarding what it has, in seconds (it
    /// forwards earlier only when every member has a verified answer in). Callers cannot
    /// change it: a longer round holds the group, a shorter one shuts members out.
    #[arg(long, default_value_t = 20)]
    round_deadline: u64,
    /// Per client address: requests per second that cost the agent work (starting a round,
    /// posting an answer, each answer costing one signature check). 0 is treated as 1.
    #[arg(long, default_value_t = palisade_gateway::DEFAULT_SOURCE_RATE.per_second)]
    per_source_rate: u32,
    /// Per client address: the burst above `--per-source-rate` (how many devices behind one
    /// address can answer at once).
    #[arg(long, default_value_t = palisade_gateway::DEFAULT_SOURCE_RATE.burst)]
    per_source_burst: u32,
    /// Represented mode with evidence (#16.5): assertions carry the members' signed answers
    /// for the server to verify (larger assertions, about 200 bytes a member).
    #[arg(long)]
    evidence: bool,
    /// Record the devices each round authenticated in this file (temp file and rename), for
    /// `palisade serve`'s `group_associations`: their signed requests then count as
    /// authenticated in apps with `group_authenticated = true` (#16.6,
    /// docs/group-auth-protocol.md §12). Default: no records.
    #[arg(long, value_name = "FILE")]
    associations: Option<std::path::PathBuf>,
    /// How long an independent-mode record lasts, in seconds (represented mode: the server's
    /// expiry).
    #[arg(long, default_value_t = palisade_gateway::DEFAULT_ASSOCIATION_TTL)]
    association_ttl: u64,
}

/// The data folder's group identity key (generated inside the keystore on first use; it is
/// not extractable, SER-010), as a signer.
fn identity(data: &std::path::Path) -> anyhow::Result<palisade_group::StoreSigner> {
    use palisade_keys::{KeyKind, KeyScope, KeyStore as _, SoftwareKeyStore};
    let store = std::sync::Arc::new(SoftwareKeyStore::open(&data.join("keys"))?);
    let existing = store
        .list(&KeyScope::Gateway)?
        .into_iter()
        .find(|k| k.label == GROUP_IDENTITY_LABEL && k.kind == KeyKind::Ed25519Signing);
    let handle = match existing {
        Some(k) => k.handle,
        None => store.generate(
            &KeyScope::Gateway,
            KeyKind::Ed25519Signing,
            GROUP_IDENTITY_LABEL,
        )?,
    };
    Ok(palisade_group::StoreSigner::new(
        store,
        KeyScope::Gateway,
        handle,
    )?)
}

fn init(a: InitArgs) -> anyhow::Result<()> {
    use palisade_group::GroupSigner as _;
    let public = hex::encode(identity(&a.data)?.public_key());
    if let Some(out) = &a.out {
        std::fs::write(out, format!("{public}\n"))
            .with_context(|| format!("writing {}", out.display()))?;
    }
    println!("{public}");
    Ok(())
}

fn read_json<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn server(a: ServerArgs) -> anyhow::Result<()> {
    use palisade_gateway::{server_router, RegistryFile, ServerState};
    use palisade_group::{GroupSigner as _, MemoryStore, Server, ServerConfig, ServerStore};
    let path = a
        .registry
        .clone()
        .unwrap_or_else(|| a.data.join("group-registry.json"));
    let registry: RegistryFile = read_json(&path)?;
    let signer = identity(&a.data)?;
    let public = hex::encode(signer.public_key());
    let mut config = ServerConfig::default();
    config.challenge_ttl = a.challenge_ttl.max(1);
    config.require_evidence = a.require_evidence;
    let (store, kind): (std::sync::Arc<dyn ServerStore>, &str) = match &a.state {
        None => (std::sync::Arc::new(MemoryStore::default()), "memory"),
        Some(url) => {
            let key = palisade_group_store::state_key(&signer)?;
            let mut pg = palisade_group_store::PgStateConfig::new(url);
            pg.pool_size = a.state_pool.into();
            pg.timeout = std::time::Duration::from_millis(a.state_timeout_ms);
            let store = palisade_group_store::PgStore::connect(&pg, &key)
                .context("opening the shared state (--state)")?;
            (std::sync::Arc::new(store), "postgres")
        }
    };
    let server = Server::with_store(&registry.server_id, Box::new(signer), config, store)?;
    let mut state = ServerState::new(server);
    registry
        .load_into(&mut state)
        .with_context(|| format!("loading {}", path.display()))?;
    let hello = serde_json::json!({"role": "server", "id": registry.server_id, "public_key": public, "state": kind});
    listen(a.listen, server_router(state), hello)
}

fn agent(a: AgentArgs) -> anyhow::Result<()> {
    use palisade_gateway::{agent_router, AgentState};
    let gateway = match a.gateway_id {
        Some(id) => id,
        None => {
            let t: palisade_provision::TrustConfig =
                read_json(&a.data.join("provision").join("trust.json"))
                    .context("no --gateway-id, and no gateway id from `provision init`")?;
            t.gateway_id
        }
    };
    let server_key = super::provision::read_key32(&a.server_key, "server public key")?;
    let signer: std::sync::Arc<dyn palisade_group::GroupSigner> =
        std::sync::Arc::new(identity(&a.data)?);
    let public = hex::encode(signer.public_key());
    let server: hyper::Uri = a
        .server
        .parse()
        .with_context(|| format!("--server {:?} is not a URL", a.server))?;
    let files = palisade_tls::ClientTlsFiles::new(
        a.server_ca.clone(),
        a.client_cert.clone(),
        a.client_key.clone(),
    );
    let tls = files.for_url(&server).map_err(|error| match error {
        palisade_tls::ClientTlsError::FilesForPlainLink => anyhow::anyhow!(
            "--server-ca, --client-cert and --client-key apply to an https:// --server only"
        ),
        error => anyhow::Error::new(error).context("--server TLS"),
    })?;
    let mut state = AgentState::with_tls(&gateway, signer, &server_key, &a.server, tls)?
        .with_round_deadline(std::time::Duration::from_secs(a.round_deadline.max(1)))
        .with_source_rate(palisade_gateway::Rate {
            per_second: a.per_source_rate,
            burst: a.per_source_burst,
        })
        .with_evidence(a.evidence);
    if let Some(file) = &a.associations {
        state = state
            .with_associations(file, a.association_ttl.max(1))
            .with_context(|| format!("opening {}", file.display()))?;
    }
    // Read, not opened: opening the provisioning state locks it, and `palisade serve` may
    // hold it; the file is replaced atomically, so a read sees one whole state.
    let provisioned = a.data.join("provision").join("state.json");
    let members = if provisioned.exists() {
        let p: palisade_provision::ProvisionState = read_json(&provisioned)?;
        state
            .add_provisioned(&p)
            .with_context(|| format!("loading {}", provisioned.display()))?
    } else {
        0
    };
    if members == 0 {
        tracing::warn!("no provisioned gateway groups in {}", provisioned.display());
    }
    let hello = serde_json::json!({"role": "agent", "id": gateway, "public_key": public, "members": members});
    listen(a.listen, agent_router(state), hello)
}

/// Serves `router` until Ctrl-C or SIGTERM; prints one JSON line with the bound address first
/// (so that `--listen 127.0.0.1:0` is usable by scripts and tests).
fn listen(
    addr: std::net::SocketAddr,
    router: axum::Router,
    mut hello: serde_json::Value,
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        hello["listening"] = listener.local_addr()?.to_string().into();
        println!("{hello}");
        use std::io::Write as _;
        std::io::stdout().flush()?;
        // The gateway's server stack and default connection limits (SER-001: connection
        // caps, header size and time, graceful shutdown), with each client's address for
        // the agent's per-address limits.
        palisade_gateway::serve_router(
            vec![(listener, None)],
            palisade_gateway::ConnectionLimits::default(),
            router,
            std::sync::Arc::new(|reason| tracing::info!(reason, "connection refused")),
            shutdown(),
        )
        .await;
        Ok(())
    })
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await.unwrap_or(());
}
