//! `palisade serve`: the gateway daemon (see [`palisade_gateway`]).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use rustls::pki_types::ServerName;

use palisade_gateway::Gateway;
use palisade_gateway::Listener;
use palisade_gateway::{GatewayConfig, Service};

/// Run the gateway: the decision API, the oneM2M enforcement proxy, metrics and health.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The gateway configuration (TOML; see examples/gateway.toml). Without it, a ready demo
    /// gateway is set up in the data folder.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Listen on this address only, serving everything, decide included (replaces the
    /// config's listeners; for development and tests: a listener devices reach belongs in
    /// the config, where decide is served only when listed). Callers of decide are not
    /// trusted with `authenticated`, `roles` or `request_time`. Port 0 picks a free port;
    /// the address is printed.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// The data folder: keystore (keys, pseudonym secrets), artifact cache, demo files.
    /// Default: the config's `data_dir`, else ./palisade-data.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
}

pub fn run(args: ServeArgs) -> anyhow::Result<bool> {
    let demo_mode = args.config.is_none();
    let (config, data_dir) = match &args.config {
        Some(path) => {
            let config = GatewayConfig::load(path)?;
            let data_dir = args.data.clone().unwrap_or_else(|| match &config.data_dir {
                Some(dir) => config.base_dir().join(dir),
                None => PathBuf::from("palisade-data"),
            });
            (config, data_dir)
        }
        None => {
            let data_dir = args.data.clone().unwrap_or_else(|| "palisade-data".into());
            let path = palisade_gateway::prepare_demo(&data_dir).with_context(|| {
                format!("cannot write the demo gateway into {}", data_dir.display())
            })?;
            (GatewayConfig::load(&path)?, data_dir)
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("palisade-serve")
        .build()
        .context("cannot start the async runtime")?;
    let _context = runtime.enter();
    // `[audit.ship]` (issue #17): checked before anything starts, like the rest of the file.
    let ship = palisade_collector::ShipConfig::from_gateway(
        &config.file,
        config.text(),
        &data_dir.join("audit"),
    )?;
    let mut gateway = Gateway::build(&config, &data_dir).context("cannot set up the gateway")?;
    // The shipper's bound stands in front of the audit log (`on_backlog_full`), and its
    // status joins the audit's part of /health and the metrics.
    let shipper = match ship {
        Some(ship) => {
            let collector = ship.collector.to_string();
            let shipper = palisade_collector::Shipper::new(ship).context("[audit.ship]")?;
            shipper.measure_backlog();
            gateway.wrap_audit(|audit| {
                Arc::new(palisade_collector::ShipGuard::new(audit, shipper.status()))
            });
            Some((collector, shipper))
        }
        None => None,
    };
    // Issue 3: the admin API and the registry's modules (verified at boot, SER-013).
    let admin = palisade_gateway::start_admin(&config, &data_dir, &mut gateway)?;
    let gateway = Arc::new(gateway);
    if let Some(admin) = admin {
        // Issue #17: plugins subscribed to OCI references follow them from now on.
        palisade_gateway::spawn_oci_subscriptions(gateway.clone(), admin.clone());
        palisade_gateway::spawn_admin_checks(gateway.clone(), admin);
    }
    type Wanted = (
        SocketAddr,
        HashSet<Service>,
        Option<tokio_rustls::TlsAcceptor>,
        (bool, Vec<ServerName<'static>>),
    );
    let wanted: Vec<Wanted> = match args.listen {
        Some(address) => vec![(
            address,
            Service::ALL.into_iter().collect(),
            None,
            (false, Vec::new()),
        )],
        None if config.listeners.is_empty() => vec![(
            palisade_gateway::DEMO_LISTEN
                .parse()
                .expect("valid address"),
            Service::DEFAULT.into_iter().collect(),
            None,
            (false, Vec::new()),
        )],
        None => {
            let mut wanted = Vec::new();
            for (index, listener) in config.listeners.iter().enumerate() {
                let address = listener.address.get_ref().parse().expect("checked");
                let services = listener.services();
                let tls = match &listener.tls {
                    Some(tls) => Some(palisade_gateway::tls_acceptor(&config, index, tls)?),
                    None => None,
                };
                let clients = listener
                    .trusted_decide_clients
                    .iter()
                    .map(|name| ServerName::try_from(name.get_ref().clone()).expect("checked"))
                    .collect();
                let trust = (listener.trusted_decide_callers, clients);
                wanted.push((address, services, tls, trust));
            }
            wanted
        }
    };
    runtime.block_on(async move {
        let mut listeners = Vec::new();
        for (address, services, tls, (trusted_decide_callers, trusted_decide_clients)) in wanted {
            let socket = tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("cannot listen on {address}"))?;
            listeners.push(Listener {
                socket,
                services,
                tls,
                trusted_decide_callers,
                trusted_decide_clients,
            });
        }
        // Registered before the address is announced: a SIGTERM that follows the start line
        // at once must get the graceful shutdown (and the audit log's final checkpoint), not
        // the default action.
        let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
        // The shipper reads the log files the gateway writes and stops with the gateway;
        // what it had not shipped yet is shipped at the next start (its cursor is on disk).
        let (stop_shipping, shipping_stopped) = tokio::sync::watch::channel(false);
        let shipper = shipper.map(|(collector, shipper)| {
            println!("audit shipping to {collector}");
            tokio::spawn(shipper.run(shipping_stopped))
        });
        print_summary(&gateway, &listeners, &data_dir, &config, demo_mode);
        palisade_gateway::serve(gateway, listeners, shutdown_signal(terminate)).await;
        let _ = stop_shipping.send(true);
        if let Some(task) = shipper {
            let _ = task.await;
        }
        println!("palisade serve: stopped");
        Ok(true)
    })
}

fn print_summary(
    gateway: &Gateway,
    listeners: &[Listener],
    data_dir: &std::path::Path,
    config: &GatewayConfig,
    demo_mode: bool,
) {
    if demo_mode {
        println!(
            "Palisade demo gateway (config {}; data in {})",
            config.file.display(),
            data_dir.display()
        );
    } else {
        println!(
            "Palisade gateway (config {}; data in {})",
            config.file.display(),
            data_dir.display()
        );
    }
    // The listening lines come last: whoever waits for them (tests, scripts) has the rest.
    let mut addresses = Vec::new();
    for listener in listeners {
        let Ok(address) = listener.local_addr() else {
            continue;
        };
        let services: Vec<&str> = Service::ALL
            .into_iter()
            // The admin service exists only with an `[admin]` section.
            .filter(|service| listener.services.contains(service))
            .filter(|service| *service != Service::Admin || gateway.admin.is_some())
            .map(Service::name)
            .collect();
        let scheme = if listener.tls.is_some() {
            "https"
        } else {
            "http"
        };
        addresses.push((address, scheme, services.join(", ")));
    }
    let status = gateway.runtime.status();
    // By name: matching each route against every status was quadratic in the app count.
    let by_name: std::collections::HashMap<&str, &palisade_core::AppStatus> =
        status.iter().map(|app| (app.app.as_str(), app)).collect();
    for route in &gateway.routes {
        let main = by_name.get(route.name.as_str()).copied();
        let authn = route
            .authn_app
            .as_deref()
            .and_then(|name| by_name.get(name).copied());
        let plugins: Vec<String> = main
            .into_iter()
            .chain(authn)
            .flat_map(|app| app.plugins.iter())
            .map(|plugin| format!("{} ({})", plugin.label.name, plugin.label.kind))
            .collect();
        println!(
            "  app {:<10} {}  {}  [{:?}{}]",
            route.name,
            route.paths.join(" "),
            plugins.join(", "),
            route.mode,
            if route.consent_real_identities {
                ", real identities"
            } else {
                ", pseudonymous"
            }
        );
    }
    match &gateway.upstream {
        Some(upstream) => println!("  upstream CSE {}", upstream.url),
        None => println!("  no upstream CSE: the proxy answers permitted requests with 5103"),
    }
    let decide_served = listeners
        .iter()
        .any(|listener| listener.services.contains(&Service::Decide));
    if let (true, Some((address, _, _))) = (demo_mode && decide_served, addresses.first()) {
        println!("Try:");
        println!(
            "  curl -s http://{address}/v1/decide -d '{{\"originator\":\"CAE1\",\"operation\":\"retrieve\",\"target\":\"/cse-in/lights/lamp1\"}}'"
        );
        println!(
            "  curl -si http://{address}/cse-in/lights/lamp1 -H 'X-M2M-Origin: CAE9' -H 'X-M2M-RI: req-1' -H 'X-M2M-RVI: 3'   # denied: 4103"
        );
        match palisade_gateway::mint_demo_token(gateway) {
            Ok(Some(token)) => println!(
                "  curl -s http://{address}/v1/decide -d '{{\"originator\":\"{}\",\"operation\":\"retrieve\",\"target\":\"/cse-in/meters/m1\",\"credential\":{{\"scheme\":\"bearer\",\"value\":\"{token}\"}}}}'   # once: a token is single-use (4106 the second time)",
                palisade_gateway::DEMO_TOKEN_HOLDER
            ),
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "cannot mint the demo token"),
        }
        println!("  curl -s http://{address}/metrics ; curl -s http://{address}/health");
    }
    for (address, scheme, services) in addresses {
        println!("  listening on {scheme}://{address} ({services})");
    }
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal(terminate: std::io::Result<tokio::signal::unix::Signal>) {
    let terminate = async {
        match terminate {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = terminate => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}
