//! The admin API under `/admin/v1/` (issue 3): signed module upload, listing, activation,
//! rollback and removal, and the registry's integrity checks (SER-013).
//!
//! Every request is signed with an admin key and single-use ([`auth`], SER-008/SER-012), and
//! authenticated from its headers before its body is read; authenticated requests then run
//! at most `max_concurrent_requests` at a time, apart from the decisions' `max_in_flight`
//! (SER-001: unauthenticated uploads cost no buffering, an admin cannot starve decisions).
//! An upload is verified (signature chain and manifest, SER-022) before its bytes are ever
//! compiled, then compiled and type-checked against its declared kind's world, then stored;
//! activation hot-swaps the plugin through [`palisade_core::Runtime::swap_plugin`] so no decision fails.
//!
//! Registry modules run in applications the gateway config declares: at boot every active
//! module is re-verified ([`ModuleStore::integrity_check_all`]) and swapped in, replacing a
//! config plugin of the same name. One app's failed module never stops the others.
//!
//! Routes:
//! - `PUT    /admin/v1/apps/{app}/plugins/{name}[?activate=true]` — body: the signed .wasm
//! - `GET    /admin/v1/modules[?app=APP]`
//! - `POST   /admin/v1/apps/{app}/plugins/{name}/activate?version=V[&force=true]`
//! - `POST   /admin/v1/apps/{app}/plugins/{name}/rollback?force=true`
//! - `DELETE /admin/v1/apps/{app}/plugins/{name}/versions/{version}[?force=true]`

pub mod auth;
pub mod error;
mod integrity;
pub mod oci;
pub mod provision;
mod routes;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use serde::Deserialize;

use super::{Gateway, AUTHN_SUFFIX};
use palisade_core::{Capability, PluginSetup, PluginSource};
use palisade_registry::read_public_key;
use palisade_registry::Fallback;
use palisade_registry::{
    EmbeddedStore, ModuleKind, ModuleRecord, ModuleStore, StoreConfig, TrustAnchors,
};

pub use auth::{sign_request, AdminKeys, ReplayCache};
pub use error::AdminError;
pub use routes::handle;

/// The `[admin]` section of the gateway config.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Public key files of the operator roots modules must chain to (SER-022).
    pub trust_roots: Vec<PathBuf>,
    /// Public key files of the admin keys that may sign admin requests (SER-008).
    pub admin_keys: Vec<PathBuf>,
    /// Seconds between periodic integrity checks of the stored modules (SER-013).
    #[serde(default = "default_interval")]
    pub integrity_interval_s: u64,
    /// Largest module file accepted, in bytes (SER-001).
    #[serde(default = "default_max_module")]
    pub max_module_bytes: u64,
    /// Authenticated admin requests handled at once, in addition to and apart from
    /// `[limits] max_in_flight`; beyond it, 503 `admin-busy` at once. Each may hold a body of
    /// up to `max_module_bytes` in memory, so this times that is the admin API's memory bound.
    /// Unauthenticated requests never take a slot: they are refused from their headers.
    /// Default 2; 0 is refused.
    #[serde(
        default = "default_max_concurrent",
        deserialize_with = "crate::config::positive"
    )]
    pub max_concurrent_requests: usize,
    /// Per `"app/plugin"`: the configuration and granted capabilities of registry modules.
    #[serde(default)]
    pub plugins: BTreeMap<String, RegistryPluginConfig>,
    /// How subscriptions reach OCI registries (issue #17); see [`oci::OciConfig`].
    #[serde(default)]
    pub oci: oci::OciConfig,
}

/// What the operator grants one registry plugin.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistryPluginConfig {
    /// The plugin's configuration (SER-014), given to it as JSON.
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Map<String, serde_json::Value>>")]
    pub config: Option<toml::Table>,
    /// Or: a JSON file with the configuration, relative to the gateway config.
    #[serde(default)]
    pub config_file: Option<PathBuf>,
    /// Capabilities granted; only those the manifest also requests take effect (SER-024).
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    /// Follow an OCI reference: each new version is pulled, verified and installed through
    /// the upload path (issue #17); see [`oci::SubscribeConfig`]. Default: none.
    #[serde(default)]
    pub subscribe: Option<oci::SubscribeConfig>,
}

fn default_interval() -> u64 {
    60
}

fn default_max_concurrent() -> usize {
    2
}

fn default_max_module() -> u64 {
    palisade_registry::DEFAULT_MAX_MODULE_SIZE
}

/// Why the admin API could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminSetupError {
    /// A key file could not be read.
    #[error("admin config: a key file cannot be read")]
    Key(#[from] palisade_registry::KeyFileError),
    /// A registry plugin's `config_file` could not be read.
    #[error("admin config: the plugin configuration file {path}: {message}")]
    PluginConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The registry store could not be opened.
    #[error("the module registry cannot be opened")]
    Store(#[from] palisade_registry::StoreError),
    /// Credential provisioning could not be set up (SER-020).
    #[error("provisioning cannot be set up")]
    Provision(#[from] provision::ProvisionSetupError),
    /// An OCI subscription is unusable (issue #17).
    #[error("admin config: {key}: {message}")]
    Subscription {
        /// The key, e.g. `admin.plugins."app/acp".subscribe.reference`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// The admin API's state, shared by its handlers and the integrity task.
pub struct Admin {
    /// The registry.
    pub store: EmbeddedStore,
    keys: AdminKeys,
    replay: ReplayCache,
    config: AdminConfig,
    /// Integrity failures found since start (for `/health`), newest last, bounded.
    failures: Mutex<Vec<serde_json::Value>>,
    /// Count of integrity failures found (SER-013 metric).
    pub integrity_failures: AtomicU64,
    /// Serializes registry changes with their runtime swaps, so the runtime follows the
    /// registry's order of activations.
    changes: Mutex<()>,
    /// `POST /admin/v1/provision`, when the data folder was prepared for provisioning.
    provision: Option<provision::ProvisionEndpoint>,
    /// One permit per authenticated request being handled (`max_concurrent_requests`).
    slots: Arc<tokio::sync::Semaphore>,
    /// The OCI subscriptions' states, for `/health` and metrics (issue #17).
    subscriptions: oci::Subscriptions,
}

impl Admin {
    /// Opens the registry under `data_dir/registry` with the configured trust roots and admin
    /// keys (paths relative to `base_dir`).
    pub fn open(
        config: &AdminConfig,
        base_dir: &Path,
        data_dir: &Path,
    ) -> Result<Admin, AdminSetupError> {
        let resolve = |p: &PathBuf| base_dir.join(p);
        let roots: Vec<PathBuf> = config.trust_roots.iter().map(resolve).collect();
        let anchors = TrustAnchors::from_public_key_files(&roots)?;
        let mut admin_keys = Vec::new();
        for path in &config.admin_keys {
            admin_keys.push(read_public_key(&resolve(path))?);
        }
        let store_config = StoreConfig {
            anchors,
            max_module_size: config.max_module_bytes,
        };
        let mut config = config.clone();
        for grant in config.plugins.values_mut() {
            if let Some(file) = grant.config_file.take() {
                let path = resolve(&file);
                let bad = |message: String| AdminSetupError::PluginConfig {
                    path: path.clone(),
                    message,
                };
                let text = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
                let value: toml::Table =
                    serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
                grant.config = Some(value);
            }
        }
        config.oci.ca_file = config.oci.ca_file.as_ref().map(resolve);
        // A subscription that cannot work stops the start, as any other bad setting does.
        oci::validate(&config)?;
        let store = EmbeddedStore::open(&data_dir.join("registry"), store_config)?;
        let slots = config.max_concurrent_requests;
        Ok(Admin {
            store,
            keys: AdminKeys::new(admin_keys),
            replay: ReplayCache::default(),
            config,
            failures: Mutex::new(Vec::new()),
            integrity_failures: AtomicU64::new(0),
            changes: Mutex::new(()),
            provision: None,
            slots: Arc::new(tokio::sync::Semaphore::new(slots)),
            subscriptions: oci::Subscriptions::default(),
        })
    }

    /// The registry's part of `/health`: integrity failures seen since start.
    pub fn health_json(&self) -> serde_json::Value {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        serde_json::json!({
            "integrity_failures": *failures,
            "active": self.store.active_modules().map(|active| active
                .iter()
                .map(|r| serde_json::json!({"app": r.app, "name": r.name, "version": r.version}))
                .collect::<Vec<_>>()).unwrap_or_default(),
            "subscriptions": self.subscriptions.health_json(),
        })
    }

    /// Whether any stored module failed an integrity check since start (SER-013).
    pub fn has_failures(&self) -> bool {
        self.integrity_failures
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    }

    /// The registry's Prometheus lines (SER-013): integrity failures found since start.
    pub fn metrics_text(&self) -> String {
        format!(
            "# HELP palisade_registry_integrity_failures Stored module versions that failed an integrity check (SER-013).\n\
             # TYPE palisade_registry_integrity_failures counter\n\
             palisade_registry_integrity_failures {}\n",
            self.integrity_failures.load(std::sync::atomic::Ordering::Relaxed)
        ) + &self.subscriptions.metrics_text()
    }

    /// The sandbox a module of `kind` for `app` runs in: authenticators of an app with the
    /// privacy split run apart (see [`super::privacy`]).
    fn target_app(gateway: &Gateway, app: &str, kind: ModuleKind) -> Option<String> {
        let route = gateway.route(app)?;
        Some(match (&route.authn_app, kind) {
            (Some(authn), ModuleKind::Authenticator) => authn.clone(),
            _ => route.name.clone(),
        })
    }

    /// Loads `record` (re-verified bytes, SER-013) into the runtime, replacing the plugin of
    /// the same name: a hot swap.
    fn load(&self, gateway: &Gateway, record: &ModuleRecord) -> Result<(), AdminError> {
        let target = Self::target_app(gateway, &record.app, record.kind)
            .ok_or_else(|| AdminError::UnknownApp(record.app.clone()))?;
        let bytes = self.store.read_verified(&record.sha256)?;
        let grant = self
            .config
            .plugins
            .get(&format!("{}/{}", record.app, record.name))
            .cloned()
            .unwrap_or_default();
        let config_json = match &grant.config {
            Some(table) => serde_json::to_string(table).unwrap_or_else(|_| "{}".into()),
            None => "{}".into(),
        };
        let mut setup = PluginSetup::new(record.name.clone(), config_json);
        setup.kind = Some(record.kind);
        setup.version = Some(record.version.to_string());
        for capability in grant.capabilities {
            let requested = record.manifest.capabilities.contains(&capability);
            if requested {
                setup = setup.grant(capability);
            }
        }
        gateway
            .runtime
            .swap_plugin(
                &target,
                PluginSource {
                    setup,
                    bytes: bytes.into(),
                },
            )
            .map_err(AdminError::Swap)
    }

    /// Makes the runtime follow a fallback: the last good version, or no plugin (deny).
    fn apply_fallback(&self, gateway: &Gateway, fallback: &Fallback) {
        let active = self.store.active_modules().unwrap_or_default();
        let now = active
            .iter()
            .find(|r| r.app == fallback.app && r.name == fallback.name);
        let outcome = match now {
            Some(record) => self.load(gateway, record).map(|()| "fell back"),
            None => {
                for suffix in ["", AUTHN_SUFFIX] {
                    let app = format!("{}{suffix}", fallback.app);
                    gateway.runtime.remove_plugin(&app, &fallback.name);
                }
                Ok("removed; the app denies without it")
            }
        };
        match outcome {
            Ok(what) => tracing::warn!(app = %fallback.app, plugin = %fallback.name,
                failed = %fallback.failed, now_active = ?fallback.now_active.as_ref().map(|v| v.to_string()),
                "SER-013: module version taken out of service: {what}"),
            Err(error) => {
                tracing::error!(app = %fallback.app, plugin = %fallback.name, error = %palisade_types::Chain(&error),
                "SER-013: cannot load the fallback version")
            }
        }
    }
}

/// Boot (SER-013): re-verifies every stored module, then loads each app's active modules;
/// a module that fails is taken out of service and logged, the others still load.
pub fn boot(gateway: &Gateway, admin: &Arc<Admin>) {
    integrity::check(gateway, admin, "boot");
    let active = match admin.store.active_modules() {
        Ok(active) => active,
        Err(error) => {
            tracing::error!(error = %palisade_types::Chain(&error), "cannot list the registry's active modules");
            return;
        }
    };
    for record in active {
        match admin.load(gateway, &record) {
            Ok(()) => tracing::info!(module = %record.label(), "registry module loaded"),
            Err(error) => {
                let error = palisade_types::Chain(&error).to_string();
                tracing::error!(module = %record.label(), %error, "registry module not loaded");
                if let Ok(fallbacks) = admin.store.mark_failed(&record.sha256, &error) {
                    for fallback in &fallbacks {
                        admin.apply_fallback(gateway, fallback);
                    }
                }
            }
        }
    }
}

pub use integrity::spawn_periodic;

/// Opens the registry of `config`'s `[admin]` section (if any), attaches it to `gateway` and
/// loads the active modules after their boot check (SER-013). Returns the admin state for
/// [`spawn_periodic`].
pub fn start(
    config: &super::GatewayConfig,
    data_dir: &Path,
    gateway: &mut Gateway,
) -> Result<Option<Arc<Admin>>, AdminSetupError> {
    let Some(admin_config) = &config.admin else {
        return Ok(None);
    };
    let mut admin = Admin::open(admin_config, &config.base_dir(), data_dir)?;
    admin.provision = provision::ProvisionEndpoint::open(
        data_dir,
        gateway.keystore.clone(),
        gateway.positions.clone(),
    )?;
    if let Some(endpoint) = &admin.provision {
        // Provisioned app groups answer the apps' `groups` capability.
        endpoint.add_directory(Arc::new(super::app_groups::ProvisionedGroups::new(gateway)));
    }
    let admin = Arc::new(admin);
    boot(gateway, &admin);
    gateway.admin = Some(admin.clone());
    Ok(Some(admin))
}
