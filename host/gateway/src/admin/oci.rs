//! OCI subscriptions of registry plugins (issue #17): `[admin.plugins."app/name"] subscribe`.
//!
//! Each subscription polls its reference ([`palisade_oci::Subscriber`]) and hands every new
//! digest to the admin upload path (`routes::upload`): the trust chain is verified
//! before a byte is compiled (SER-022), the store applies the version rule before anything is
//! stored, and activation hot-swaps the plugin so that no decision fails. Whatever goes wrong,
//! the running version stays. Each install is on the audit record before it takes effect
//! (SER-016) and its result after; `/health` shows which digest each subscription runs, and
//! the metrics count polls, installs, refusals and failures.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_oci::PulledModule;
use palisade_oci::RegistryConfig;
use palisade_oci::{
    system_clock, InstallError, Installer, Subscriber, SubscriptionConfig, SubscriptionStatus,
};
use serde::Deserialize;

use super::{Admin, AdminConfig, AdminSetupError};
use crate::Gateway;

/// `[admin.oci]`: how subscriptions reach registries.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OciConfig {
    /// Registries (`host[:port]`, as written in references) spoken to over plain HTTP, e.g. a
    /// loopback test registry. Every other registry is HTTPS verified against the system's
    /// roots; nothing falls back to HTTP by itself. Default: none.
    #[serde(default)]
    pub insecure_registries: Vec<String>,
    /// Seconds one registry operation (a whole pull) may take. Default 60.
    #[serde(default = "default_timeout")]
    pub request_timeout_s: u64,
    /// Largest manifest or config blob accepted, in bytes. Default 65536.
    #[serde(default = "default_manifest")]
    pub max_manifest_bytes: u64,
    /// PEM CA certificates (relative to the config file) that HTTPS registries' certificates
    /// must chain to, instead of the system's roots. Default: the system's roots.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
}

impl Default for OciConfig {
    fn default() -> OciConfig {
        OciConfig {
            insecure_registries: Vec::new(),
            request_timeout_s: default_timeout(),
            max_manifest_bytes: default_manifest(),
            ca_file: None,
        }
    }
}

fn default_timeout() -> u64 {
    palisade_oci::DEFAULT_REQUEST_TIMEOUT.as_secs()
}

fn default_manifest() -> u64 {
    palisade_oci::DEFAULT_MAX_MANIFEST_BYTES
}

/// `[admin.plugins."app/name"] subscribe`: the reference a plugin follows.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscribeConfig {
    /// `registry/repository:tag` to follow a tag, `registry/repository@sha256:<hex>` to pin.
    pub reference: String,
    /// Seconds between polls, 1..=86400. Each poll is one manifest HEAD while nothing changes.
    /// Default 60.
    #[serde(default = "default_poll")]
    pub poll_interval_s: u64,
    /// Ceiling of the back-off after failed polls (doubling from `poll_interval_s`, with
    /// jitter), `poll_interval_s`..=86400. Default 900.
    #[serde(default = "default_backoff")]
    pub max_backoff_s: u64,
    /// Staged rollout: install a tag's new digest only after a canary gateway attested this
    /// many seconds of running it without plugin failures. Needs a tag. Default: no wait.
    #[serde(default)]
    pub after_canary_s: Option<u64>,
    /// This gateway is a canary under this name: for the digest it runs, it keeps an
    /// attestation (`sha256-<hex>.palisade-canary` in the same repository) up to date, with
    /// this plugin's failures since the install. Needs push access. Default: not a canary.
    #[serde(default)]
    pub canary_name: Option<String>,
}

fn default_poll() -> u64 {
    palisade_oci::DEFAULT_POLL_INTERVAL.as_secs()
}

fn default_backoff() -> u64 {
    palisade_oci::DEFAULT_MAX_BACKOFF.as_secs()
}

impl SubscribeConfig {
    fn to_subscription(&self) -> SubscriptionConfig {
        let mut config = SubscriptionConfig::new(self.reference.clone());
        config.after_canary = self.after_canary_s.map(Duration::from_secs);
        config.canary_name = self.canary_name.clone();
        config.poll_interval = Duration::from_secs(self.poll_interval_s);
        config.max_backoff = Duration::from_secs(self.max_backoff_s);
        config
    }
}

/// The registry settings of `[admin.oci]` (`ca_file` already resolved against the config's
/// folder by [`Admin::open`]).
fn registry_config(admin: &AdminConfig) -> Result<RegistryConfig, AdminSetupError> {
    let ca_pem = match &admin.oci.ca_file {
        Some(path) => Some(
            std::fs::read(path).map_err(|e| AdminSetupError::Subscription {
                key: "admin.oci.ca_file".into(),
                message: format!("{}: {e}", path.display()),
            })?,
        ),
        None => None,
    };
    let mut config = RegistryConfig::default();
    config.insecure_registries = admin.oci.insecure_registries.clone();
    config.max_module_bytes = admin.max_module_bytes;
    config.max_manifest_bytes = admin.oci.max_manifest_bytes;
    config.request_timeout = Duration::from_secs(admin.oci.request_timeout_s);
    config.ca_pem = ca_pem;
    config
        .validate()
        .map_err(|e| AdminSetupError::Subscription {
            key: "admin.oci".into(),
            message: palisade_types::Chain(&e).to_string(),
        })?;
    Ok(config)
}

/// Checks every subscription of the `[admin]` section at start.
pub(super) fn validate(admin: &AdminConfig) -> Result<(), AdminSetupError> {
    registry_config(admin)?;
    for (plugin, grant) in &admin.plugins {
        if let Some(subscribe) = &grant.subscribe {
            let key = format!("admin.plugins.{plugin:?}.subscribe");
            if plugin.split('/').count() != 2 {
                return Err(AdminSetupError::Subscription {
                    key,
                    message: "the plugin key must be \"app/name\"".into(),
                });
            }
            subscribe
                .to_subscription()
                .validate()
                .map_err(|e| AdminSetupError::Subscription {
                    key,
                    message: palisade_types::Chain(&e).to_string(),
                })?;
        }
    }
    Ok(())
}

/// The subscriptions' shared states.
#[derive(Default)]
pub struct Subscriptions(Mutex<BTreeMap<String, Arc<Mutex<SubscriptionStatus>>>>);

impl Subscriptions {
    fn snapshot(&self) -> Vec<(String, SubscriptionStatus)> {
        let table = self.0.lock().unwrap_or_else(|p| p.into_inner());
        table
            .iter()
            .map(|(plugin, status)| {
                let status = status.lock().unwrap_or_else(|p| p.into_inner()).clone();
                (plugin.clone(), status)
            })
            .collect()
    }

    /// Per plugin: the reference, the digest running, the last outcome.
    pub fn health_json(&self) -> serde_json::Value {
        let map: serde_json::Map<String, serde_json::Value> = self
            .snapshot()
            .into_iter()
            .map(|(plugin, status)| {
                (
                    plugin,
                    serde_json::to_value(status).unwrap_or(serde_json::Value::Null),
                )
            })
            .collect();
        serde_json::Value::Object(map)
    }

    /// `palisade_oci_polls_total{plugin,outcome}` and `palisade_oci_running{plugin,digest}`.
    pub fn metrics_text(&self) -> String {
        let snapshot = self.snapshot();
        if snapshot.is_empty() {
            return String::new();
        }
        let mut out = String::from(
            "# HELP palisade_oci_polls_total OCI subscription polls by outcome (issue #17).\n\
             # TYPE palisade_oci_polls_total counter\n",
        );
        for (plugin, status) in &snapshot {
            let counts = &status.counts;
            let polls = counts.polls;
            let other = polls.saturating_sub(counts.installed + counts.refused + counts.failed);
            for (outcome, n) in [
                ("installed", counts.installed),
                ("refused", counts.refused),
                ("failed", counts.failed),
                ("other", other),
            ] {
                out.push_str(&format!(
                    "palisade_oci_polls_total{{plugin=\"{plugin}\",outcome=\"{outcome}\"}} {n}\n"
                ));
            }
        }
        out.push_str(
            "# HELP palisade_oci_running The digest each OCI subscription runs (1).\n\
             # TYPE palisade_oci_running gauge\n",
        );
        for (plugin, status) in &snapshot {
            if let Some(digest) = &status.running {
                out.push_str(&format!(
                    "palisade_oci_running{{plugin=\"{plugin}\",digest=\"{digest}\"}} 1\n"
                ));
            }
        }
        out
    }
}

/// The gateway's side of one subscription.
struct GatewayInstaller {
    gateway: Arc<Gateway>,
    admin: Arc<Admin>,
    app: String,
    name: String,
    reference: String,
    /// The plugin's failure count when this subscription last installed.
    failures_at_install: AtomicU64,
    runtime: tokio::runtime::Handle,
}

impl Installer for GatewayInstaller {
    fn install(&self, module: &PulledModule) -> Result<String, InstallError> {
        let audit = |phase: &str, extra: serde_json::Value| {
            let mut record = serde_json::json!({"phase": phase, "source": "oci",
                "app": self.app, "plugin": self.name, "reference": self.reference,
                "digest": module.manifest_digest, "bytes": module.bytes.len()});
            if let (Some(record), Some(extra)) = (record.as_object_mut(), extra.as_object()) {
                record.extend(extra.clone());
            }
            record
        };
        // SER-016: the change is on record before it takes effect; one that cannot be
        // recorded is not made.
        self.runtime
            .block_on(self.gateway.audit.event_recorded(
                palisade_audit::Kind::Admin,
                audit("request", serde_json::json!({})),
            ))
            .map_err(|e| {
                InstallError::new("audit-unavailable", palisade_types::Chain(&e).to_string())
            })?;
        let result = super::routes::upload(
            &self.gateway,
            &self.admin,
            &self.app,
            &self.name,
            &module.bytes,
            true,
        );
        match result {
            Ok((status, body)) => {
                let version = body["module"]["version"]
                    .as_str()
                    .unwrap_or("?")
                    .to_string();
                self.failures_at_install.store(
                    self.gateway
                        .metrics
                        .plugin_failures_of(&self.app, &self.name),
                    Ordering::Relaxed,
                );
                self.gateway.audit.event(
                    palisade_audit::Kind::Admin,
                    audit(
                        "result",
                        serde_json::json!({"status": status.as_u16(), "result": body}),
                    ),
                );
                Ok(format!("{}/{}@{version}", self.app, self.name))
            }
            Err(error) => {
                self.gateway.audit.event(
                    palisade_audit::Kind::Admin,
                    audit(
                        "result",
                        serde_json::json!({"status": error.status().as_u16(),
                            "code": error.code(), "error": palisade_types::Chain(&error).to_string()}),
                    ),
                );
                Err(InstallError::new(
                    error.code(),
                    palisade_types::Chain(&error).to_string(),
                ))
            }
        }
    }

    fn failures_since_install(&self) -> u64 {
        self.gateway
            .metrics
            .plugin_failures_of(&self.app, &self.name)
            .saturating_sub(self.failures_at_install.load(Ordering::Relaxed))
    }
}

/// Starts one task per subscription on the tokio runtime. They run until the process ends.
pub fn spawn_subscriptions(gateway: Arc<Gateway>, admin: Arc<Admin>) {
    let registry = match registry_config(&admin.config) {
        Ok(registry) => registry,
        Err(error) => {
            // Validated at start; a CA file removed since is reported, never a crash.
            tracing::error!(error = %palisade_types::Chain(&error), "OCI subscriptions not started");
            return;
        }
    };
    for (plugin, grant) in &admin.config.plugins {
        let Some(subscribe) = &grant.subscribe else {
            continue;
        };
        let Some((app, name)) = plugin.split_once('/') else {
            continue;
        };
        let installer = Arc::new(GatewayInstaller {
            gateway: gateway.clone(),
            admin: admin.clone(),
            app: app.to_string(),
            name: name.to_string(),
            reference: subscribe.reference.clone(),
            failures_at_install: AtomicU64::new(0),
            runtime: tokio::runtime::Handle::current(),
        });
        let subscriber = match Subscriber::new(
            subscribe.to_subscription(),
            registry.clone(),
            installer,
            system_clock(),
        ) {
            Ok(subscriber) => subscriber,
            Err(error) => {
                // Validated at start; a failure here is reported, never a crash.
                tracing::error!(plugin, error = %palisade_types::Chain(&error), "OCI subscription not started");
                continue;
            }
        };
        admin
            .subscriptions
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(plugin.clone(), subscriber.status_handle());
        tracing::info!(plugin, reference = %subscribe.reference, "OCI subscription started");
        tokio::spawn(async move {
            // The sender lives as long as the task: subscriptions run until the process ends.
            let (_keep, shutdown) = tokio::sync::watch::channel(false);
            subscriber.run(shutdown).await;
        });
    }
}
