//! `palisade check --config gateway.toml`: everything `palisade serve` loads before it binds
//! a port, and nothing after: the configuration with its file:line:key errors, the TLS
//! certificates and keys of every listener, the keystore, the trust roots, and every plugin
//! read, verified when signatures are required, compiled, type-checked against its declared
//! kind, its configuration handed over and its `prepare` run. An operator runs it before a
//! restart (or a CI job on every change of the file) instead of finding out from a gateway
//! that does not come back.
//!
//! It changes nothing on the gateway: keys the apps generate on first start
//! (`[[app.key]] generate`) and pseudonym secrets are made in a scratch keystore that is
//! thrown away, compiled plugins are not written to the artifact cache, and no audit log is
//! opened. The real keystore is only opened, to show it is readable with this configuration
//! (for the software keystore, only when it exists already: `serve` would create it). The
//! admin API's keys and registry plugin configurations are read; the registry's stored
//! modules are not (`serve` verifies them at boot).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;

use palisade_core::Runtime;
use palisade_core::{Engine, EngineConfig};
use palisade_gateway::{GatewayConfig, KeystoreConfig};
use palisade_keys::{KeyStore, SoftwareKeyStore};

/// Load a gateway configuration as `serve` would, without binding a port.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The gateway configuration (TOML; see examples/gateway.toml).
    #[arg(long, value_name = "FILE", required_unless_present = "schema")]
    config: Option<PathBuf>,
    /// Print the JSON Schema of the gateway configuration instead (for editors and linters;
    /// docs/gateway-config.schema.json is this output).
    #[arg(long, conflicts_with_all = ["config", "data"])]
    schema: bool,
    /// The data folder `serve` would use (its keystore is opened, never written). Default:
    /// the config's `data_dir`, else ./palisade-data, as for `serve`.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
}

/// Returns false (exit 1) when the configuration would not start a gateway, after printing
/// why; errors of the check itself (no scratch folder) are exit 2.
pub fn run(args: CheckArgs) -> anyhow::Result<bool> {
    let Some(config) = &args.config else {
        print!("{}", schema());
        return Ok(true);
    };
    match check(config, &args)? {
        Ok(summary) => {
            println!("{}: OK: {summary}", config.display());
            Ok(true)
        }
        Err(problem) => {
            eprintln!("{problem}");
            Ok(false)
        }
    }
}

/// The outer error is the check failing to run; the inner one, what is wrong with the
/// configuration.
fn check(file: &Path, args: &CheckArgs) -> anyhow::Result<Result<String, String>> {
    let config = match GatewayConfig::load(file) {
        Ok(config) => config,
        Err(error) => return Ok(Err(palisade_types::Chain(&error).to_string())),
    };
    for (index, listener) in config.listeners.iter().enumerate() {
        if let Some(tls) = &listener.tls {
            if let Err(error) = palisade_gateway::tls_acceptor(&config, index, tls) {
                return Ok(Err(palisade_types::Chain(&error).to_string()));
            }
        }
    }
    let data_dir = args.data.clone().unwrap_or_else(|| match &config.data_dir {
        Some(dir) => config.base_dir().join(dir),
        None => PathBuf::from("palisade-data"),
    });
    let keystore_note = match &config.keystore {
        KeystoreConfig::Software if !data_dir.join("keys").is_dir() => format!(
            "keystore {} does not exist yet (serve creates it)",
            data_dir.join("keys").display()
        ),
        keystore => match palisade_gateway::open_keystore(keystore, &data_dir) {
            Ok(_) => "keystore readable".to_owned(),
            Err(error) => {
                let error = palisade_types::Chain(&error);
                return Ok(Err(format!("{}: keystore: {error}", file.display())));
            }
        },
    };

    let scratch = tempfile::tempdir().context("cannot create a scratch folder")?;
    let store: Arc<dyn KeyStore> = Arc::new(
        SoftwareKeyStore::open(&scratch.path().join("keys"))
            .context("cannot create the scratch keystore")?,
    );
    let mut engine_config = EngineConfig::default().cache_dir(None);
    config.compile.apply(&mut engine_config);
    let engine = Engine::new(engine_config).context("cannot start the WebAssembly engine")?;
    let runtime = Runtime::new(engine).context("cannot start the plugin runtime")?;
    let routes = match palisade_gateway::install_apps(&config, &runtime, &store) {
        Ok(routes) => routes,
        Err(error) => return Ok(Err(palisade_types::Chain(&error).to_string())),
    };
    // The admin API's trust roots, admin keys and registry plugin configurations, read as
    // `serve` reads them; its module store is opened in the scratch folder (the real one is
    // verified by `serve` at boot, SER-013).
    if let Some(admin) = &config.admin {
        if let Err(error) =
            palisade_gateway::Admin::open(admin, &config.base_dir(), &scratch.path().join("data"))
        {
            let error = palisade_types::Chain(&error);
            return Ok(Err(format!("{}: [admin]: {error}", file.display())));
        }
    }
    let plugins: usize = config.apps.iter().map(|app| app.plugins.len()).sum();
    Ok(Ok(format!(
        "{} application(s), {plugins} plugin(s) compiled, type-checked and prepared; {keystore_note}",
        routes.len()
    )))
}

/// The JSON Schema (draft 2020-12) of the gateway configuration, derived from the types
/// `serve` deserializes, so a field added to them is in the schema without another edit.
/// What serde cannot express (addresses that parse, unique names, paths on `/` boundaries,
/// positive limits) is checked by `check` and `serve` only.
pub fn schema() -> String {
    let schema = schemars::schema_for!(GatewayConfig);
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema serializes");
    text.push('\n');
    text
}
