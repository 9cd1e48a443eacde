//! The gateway configuration (`palisade serve --config FILE`), a TOML file.
//!
//! `examples/gateway.toml` is the documented full example. In short:
//!
//! ```toml
//! data_dir = "palisade-data"              # keys, pseudonym secrets, artifact cache
//! [[listener]]                            # one or more; --listen replaces them
//! address = "127.0.0.1:8080"
//! serve = ["decide", "proxy", "metrics", "health"]
//! [upstream]                              # the CSE behind the enforcement proxy
//! url = "http://127.0.0.1:8081"
//! [limits]                                # SER-001: bodies, concurrency, timeouts
//! [rate_limit]                            # SER-001: per originator, per source address
//! [diagnostics]                           # off by default: POST /v1/noop for benchmarks
//! [[app]]                                 # one segregated environment each (SER-024)
//! name = "lights"
//! paths = ["/cse-in/lights"]
//! [[app.plugin]]
//! plugin = "acp"                          # a reference plugin or a .wasm path
//! config_file = "lights-policy.json"      # or an inline [app.plugin.config] table
//! ```
//!
//! Every error names the file, the line and the key ([`ConfigError`]): operators edit this
//! file by hand on a gateway, often over a serial console, and "invalid config" is no help.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::pipeline::Mode;
use crate::sandbox::{Capability, Isolation, PluginKind, SandboxLimits};

/// Why the configuration cannot be used. Both variants name the file; `Invalid` also names
/// the line (when known) and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read: {source}", file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{}{}: {}{message}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default(), key.as_ref().map(|k| format!("{k}: ")).unwrap_or_default())]
    Invalid {
        file: PathBuf,
        line: Option<usize>,
        key: Option<String>,
        message: String,
    },
}

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Where the gateway keeps its state; relative to the config file. `--data` overrides.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    #[serde(default, rename = "listener")]
    pub listeners: Vec<ListenerConfig>,
    #[serde(default)]
    pub upstream: Option<UpstreamConfig>,
    #[serde(default)]
    pub limits: ServerLimits,
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    /// Endpoints for measuring the gateway itself; all off by default.
    #[serde(default)]
    pub diagnostics: DiagnosticsConfig,
    /// Where the gateway's keys live; the embedded software keystore by default.
    #[serde(default)]
    pub keystore: KeystoreConfig,
    /// The admin API and module registry (issue 3); absent: no admin API.
    #[serde(default)]
    pub admin: Option<super::admin::AdminConfig>,
    /// Limits on compiling plugin modules (issue #12.1): `[compile]` memory_mib, cpu_s,
    /// wall_s for the compile helper, `[compile.module]` for the structural bounds checked
    /// before compiling. Documented in [`crate::engine::CompileSettings`].
    #[serde(default)]
    pub compile: crate::engine::CompileSettings,
    #[serde(default, rename = "app")]
    pub apps: Vec<AppConfig>,
    /// The file this came from (for error messages and relative paths).
    #[serde(skip)]
    pub file: PathBuf,
    #[serde(skip)]
    text: String,
}

/// Where the gateway's keys live (SER-010, SER-023).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, tag = "backend", rename_all = "lowercase")]
pub enum KeystoreConfig {
    /// Encrypted files under the data folder's `keys/` (the default).
    #[default]
    Software,
    /// A PKCS#11 token (a hardware security module, or SoftHSM2): the gateway's signing keys
    /// (audit checkpoints, group identity) are generated inside it and never leave it. The
    /// user PIN is read from the environment variable `pin_env` (default
    /// `PALISADE_HSM_PIN`), never from the file. The token must support the keys the config
    /// asks for: HMAC pseudonym secrets are software-only for now, so apps served from an
    /// HSM-backed gateway record consent or run without identity privacy.
    Pkcs11 {
        /// The PKCS#11 module, e.g. `/usr/lib/softhsm/libsofthsm2.so`.
        module: PathBuf,
        /// The label of the token to use.
        token_label: String,
        #[serde(default = "default_pin_env")]
        pin_env: String,
    },
}

fn default_pin_env() -> String {
    "PALISADE_HSM_PIN".into()
}

/// What a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    /// `POST /v1/decide`.
    Decide,
    /// The oneM2M enforcement proxy (every path not served otherwise).
    Proxy,
    /// `GET /metrics`.
    Metrics,
    /// `GET /health`.
    Health,
    /// The admin API under `/admin/v1/` (when `[admin]` is configured). Give it a listener
    /// of its own with `tls.client_ca_file` to require operators' client certificates
    /// (SER-009) and leave it out of the listeners devices reach.
    Admin,
}

impl Service {
    pub const ALL: [Service; 5] = [
        Service::Decide,
        Service::Proxy,
        Service::Metrics,
        Service::Health,
        Service::Admin,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Service::Decide => "decide",
            Service::Proxy => "proxy",
            Service::Metrics => "metrics",
            Service::Health => "health",
            Service::Admin => "admin",
        }
    }
}

/// One listening socket.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    pub address: Spanned<String>,
    /// Default: everything.
    #[serde(default)]
    pub serve: Option<Vec<Service>>,
    /// TLS, and optionally client certificates ([`super::tls`]).
    #[serde(default)]
    pub tls: Option<super::tls::TlsConfig>,
}

/// The CSE behind the enforcement proxy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// `http://host:port`, optionally with a path prefix.
    pub url: Spanned<String>,
    /// Whole exchange with the CSE, connect to last byte. Default 5,000 ms.
    #[serde(default = "defaults::upstream_timeout")]
    pub timeout_ms: u64,
    /// Default 1,000 ms: an unreachable CSE is reported quickly (SER-007).
    #[serde(default = "defaults::connect_timeout")]
    pub connect_timeout_ms: u64,
    /// Largest response accepted from the CSE. Default 4 MiB.
    #[serde(default = "defaults::max_response")]
    pub max_response_bytes: usize,
}

/// Limits that protect the gateway itself (SER-001).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerLimits {
    /// Largest request body (decide JSON or proxied oneM2M body). Default 64 KiB.
    pub max_body_bytes: usize,
    /// Requests being decided or proxied at once; beyond it, 503 at once (no queue).
    /// Default 64.
    pub max_in_flight: usize,
    /// Open connections; beyond it new connections are closed at once. Default 1,024.
    pub max_connections: usize,
    /// Time a client has to send a request's headers (slow-loris). Default 5,000 ms.
    pub header_read_timeout_ms: u64,
    /// Time a client has to send a request's body. Default 10,000 ms.
    pub body_read_timeout_ms: u64,
    /// On SIGTERM, how long in-flight requests may take to finish. Default 10,000 ms.
    pub shutdown_grace_ms: u64,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_body_bytes: 64 << 10,
            max_in_flight: 64,
            max_connections: 1024,
            header_read_timeout_ms: 5_000,
            body_read_timeout_ms: 10_000,
            shutdown_grace_ms: 10_000,
        }
    }
}

/// A token bucket: a steady rate and a burst. `per_second = 0` disables the limit.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    pub per_second: u32,
    pub burst: u32,
}

/// Rate limits (SER-001), each keyed so that one flooding party cannot starve the others.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Per originator (`X-M2M-Origin`, or `originator` in a decide request).
    /// Default 50/s, burst 100.
    pub per_originator: Rate,
    /// Per client address of the proxy, whatever originators it claims (not applied to
    /// `/v1/decide`, whose caller is usually the CSE speaking for everyone). Default 500/s,
    /// burst 1,000.
    pub per_source_ip: Rate,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            per_originator: Rate {
                per_second: 50,
                burst: 100,
            },
            per_source_ip: Rate {
                per_second: 500,
                burst: 1_000,
            },
        }
    }
}

/// Endpoints that measure the gateway rather than serve devices. Off by default: a production
/// gateway exposes nothing it does not need.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiagnosticsConfig {
    /// `POST /v1/noop` on every listener that serves `decide`: the same connection handling,
    /// header and body limits, in-flight bound and metrics as `/v1/decide`, and a fixed
    /// small JSON answer instead of a decision ([`super::noop`]). The throughput of the two
    /// side by side shows what a decision costs on top of the HTTP path (BENCHMARKS.md).
    /// Default false.
    pub noop_endpoint: bool,
}

/// One application.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    pub name: Spanned<String>,
    /// Target path prefixes that belong to this app (on `/` boundaries).
    #[serde(default)]
    pub paths: Vec<Spanned<String>>,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub isolation: Isolation,
    #[serde(default)]
    pub limits: SandboxLimits,
    /// SER-015: the stakeholders of this app consented to its plugins and audit seeing
    /// real originator IDs. Default false: they see a per-app pseudonym (SER-011/018/025).
    #[serde(default)]
    pub consent_real_identities: bool,
    /// Group ID → member originator IDs (for `<group>` ACP entries).
    #[serde(default)]
    pub groups: BTreeMap<String, Vec<String>>,
    #[serde(default, rename = "plugin")]
    pub plugins: Vec<PluginConfig>,
    #[serde(default, rename = "key")]
    pub keys: Vec<KeyConfig>,
}

/// One plugin of an application.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Name within the app; default: the plugin reference or file stem.
    #[serde(default)]
    pub name: Option<String>,
    /// `acp`, `token-auth`, `geo-privacy`, or a path to a .wasm component.
    pub plugin: Spanned<String>,
    /// Checked against what the component implements, when given.
    #[serde(default)]
    pub kind: Option<PluginKind>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    /// Inline configuration (becomes JSON for the plugin).
    #[serde(default)]
    pub config: Option<Spanned<toml::Table>>,
    /// Or a JSON file, relative to this config file.
    #[serde(default)]
    pub config_file: Option<Spanned<String>>,
}

/// A key the application's plugins use by handle (capability `crypto`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    pub handle: Spanned<String>,
    /// `ed25519` or `hmac`: generated in the gateway's keystore on first start and kept
    /// there (never exported, SER-010).
    #[serde(default)]
    pub generate: Option<Spanned<String>>,
    /// An Ed25519 public key (64 hex digits), e.g. a token issuer's.
    #[serde(default)]
    pub ed25519_public: Option<Spanned<String>>,
}

mod defaults {
    pub fn upstream_timeout() -> u64 {
        5_000
    }
    pub fn connect_timeout() -> u64 {
        1_000
    }
    pub fn max_response() -> usize {
        4 << 20
    }
}

impl GatewayConfig {
    /// Reads and checks `file`.
    pub fn load(file: &Path) -> Result<GatewayConfig, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.to_path_buf(),
            source,
        })?;
        GatewayConfig::parse(file, text)
    }

    /// Parses `text` as if read from `file`.
    pub fn parse(file: &Path, text: String) -> Result<GatewayConfig, ConfigError> {
        let parsed = toml::de::Deserializer::parse(&text)
            .map_err(|error| toml_error(file, &text, None, &error))
            .and_then(|deserializer| {
                serde_path_to_error::deserialize::<_, GatewayConfig>(deserializer).map_err(
                    |error| {
                        let path = error.path().to_string();
                        let key = (path != ".").then_some(path);
                        toml_error(file, &text, key, error.inner())
                    },
                )
            });
        let mut config = parsed?;
        config.file = file.to_path_buf();
        config.text = text;
        config.check()?;
        Ok(config)
    }

    /// The directory relative paths in this file are resolved against.
    pub fn base_dir(&self) -> PathBuf {
        self.file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }

    /// An error about `key`, located at `span` in this file.
    pub fn error_at(
        &self,
        span: std::ops::Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.clone(),
            line: Some(line_of(&self.text, span.start)),
            key: Some(key.into()),
            message: message.into(),
        }
    }

    /// Checks what serde cannot: addresses, names, paths, overlaps.
    fn check(&self) -> Result<(), ConfigError> {
        for (index, listener) in self.listeners.iter().enumerate() {
            if listener.address.get_ref().parse::<SocketAddr>().is_err() {
                return Err(self.error_at(
                    listener.address.span(),
                    format!("listener[{index}].address"),
                    format!(
                        "{:?} is not an IP address and port (e.g. \"127.0.0.1:8080\")",
                        listener.address.get_ref()
                    ),
                ));
            }
        }
        if let Some(upstream) = &self.upstream {
            if let Err(message) = super::proxy::Upstream::check_url(upstream.url.get_ref()) {
                return Err(self.error_at(upstream.url.span(), "upstream.url", message));
            }
        }
        let mut names = std::collections::HashSet::new();
        let mut prefixes: Vec<(String, String)> = Vec::new();
        for (index, app) in self.apps.iter().enumerate() {
            let name = app.name.get_ref();
            if !crate::pipeline::valid_name(name) || name.ends_with(super::AUTHN_SUFFIX) {
                return Err(self.error_at(
                    app.name.span(),
                    format!("app[{index}].name"),
                    format!("{name:?} is not a valid application name: use 1-64 letters, digits, '-', '_' or '.', not starting with '.' nor ending with {:?}", super::AUTHN_SUFFIX),
                ));
            }
            if !names.insert(name.clone()) {
                return Err(self.error_at(
                    app.name.span(),
                    format!("app[{index}].name"),
                    format!("application {name:?} is defined twice"),
                ));
            }
            for (path_index, path) in app.paths.iter().enumerate() {
                let key = format!("app[{index}].paths[{path_index}]");
                let prefix = path.get_ref();
                if !prefix.starts_with('/') || prefix.contains("//") && !prefix.starts_with("/_/") {
                    return Err(self.error_at(
                        path.span(),
                        key,
                        format!(
                            "{prefix:?} must be an absolute target path such as \"/cse-in/lights\""
                        ),
                    ));
                }
                let normal = prefix.trim_end_matches('/').to_string();
                if let Some((other, _)) = prefixes.iter().find(|(_, p)| *p == normal) {
                    return Err(self.error_at(
                        path.span(),
                        key,
                        format!("{prefix:?} already belongs to application {other:?}"),
                    ));
                }
                prefixes.push((name.clone(), normal));
            }
            if app.plugins.is_empty() {
                return Err(self.error_at(
                    app.name.span(),
                    format!("app[{index}].plugin"),
                    format!("application {name:?} has no plugin: add an [[app.plugin]] (with no authorizer every request is denied)"),
                ));
            }
            for (plugin_index, plugin) in app.plugins.iter().enumerate() {
                if plugin.config.is_some() && plugin.config_file.is_some() {
                    return Err(self.error_at(
                        plugin.plugin.span(),
                        format!("app[{index}].plugin[{plugin_index}]"),
                        "give either config or config_file, not both",
                    ));
                }
            }
            for (key_index, key) in app.keys.iter().enumerate() {
                let given =
                    usize::from(key.generate.is_some()) + usize::from(key.ed25519_public.is_some());
                if given != 1 {
                    return Err(self.error_at(
                        key.handle.span(),
                        format!("app[{index}].key[{key_index}]"),
                        "a key needs exactly one of generate = \"ed25519\" | \"hmac\" or ed25519_public = \"<hex>\"",
                    ));
                }
            }
        }
        Ok(())
    }
}

fn toml_error(
    file: &Path,
    text: &str,
    key: Option<String>,
    error: &toml::de::Error,
) -> ConfigError {
    ConfigError::Invalid {
        file: file.to_path_buf(),
        line: error.span().map(|span| line_of(text, span.start)),
        key,
        message: error.message().trim().to_string(),
    }
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&byte| byte == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<GatewayConfig, ConfigError> {
        GatewayConfig::parse(Path::new("gw.toml"), text.to_string())
    }

    #[test]
    fn unknown_keys_name_line_and_key() {
        let error = parse("[[app]]\nname = \"a\"\npaths = [\"/x\"]\n[[app.plugin]]\nplugin = \"acp\"\ncapabilities = [\"kv\", \"teleport\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("gw.toml:6: app[0].plugin[0].capabilities[1]"),
            "{error}"
        );
        assert!(error.contains("teleport"), "{error}");
    }

    #[test]
    fn semantic_errors_name_line_and_key() {
        let error = parse("[[listener]]\naddress = \"localhost\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("gw.toml:2: listener[0].address"),
            "{error}"
        );
        let error = parse("[[app]]\nname = \"a\"\npaths = [\"/x\"]\n[[app.plugin]]\nplugin = \"acp\"\n[[app]]\nname = \"b\"\npaths = [\"/x/\"]\n[[app.plugin]]\nplugin = \"acp\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("gw.toml:8: app[1].paths[0]"), "{error}");
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let error = parse("[limits]\nmax_body_bytes = = 3\n")
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("gw.toml:2"), "{error}");
    }
}
