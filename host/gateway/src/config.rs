//! The gateway configuration (`palisade serve --config FILE`), a TOML file.
//!
//! `examples/gateway.toml` is the documented full example. In short:
//!
//! ```toml
//! data_dir = "palisade-data"              # keys, pseudonym secrets, artifact cache
//! [[listener]]                            # one or more; --listen replaces them
//! address = "127.0.0.1:8080"
//! serve = ["decide", "proxy", "metrics", "health"]   # default: all but decide
//! [upstream]                              # the CSE behind the enforcement proxy
//! url = "http://127.0.0.1:8081"
//! [limits]                                # SER-001: bodies, concurrency, timeouts
//! [rate_limit]                            # SER-001: per originator, per source address
//! [diagnostics]                           # off by default: POST /v1/noop for benchmarks
//! [audit]                                 # SER-016: on_failure, rotation
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

use palisade_core::Mode;
use palisade_core::{Capability, Isolation, PluginKind, SandboxLimits};

/// Why the configuration cannot be used. Both variants name the file; `Invalid` also names
/// the line (when known) and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{}: cannot read", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is read but a value in it is wrong.
    #[error("{}{}: {}{message}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default(), key.as_ref().map(|k| format!("{k}: ")).unwrap_or_default())]
    Invalid {
        /// The file.
        file: PathBuf,
        /// The line of the value, when known.
        line: Option<usize>,
        /// The key of the value (`app[0].plugin`), when known.
        key: Option<String>,
        /// What is wrong with it.
        message: String,
    },
}

/// The whole file.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Where the gateway keeps its state; relative to the config file. `--data` overrides.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// The `[[listener]]` sections: addresses, the services each serves, TLS.
    #[serde(default, rename = "listener")]
    pub listeners: Vec<ListenerConfig>,
    /// The CSE the proxy forwards permitted requests to (`[upstream]`); absent: none.
    #[serde(default)]
    pub upstream: Option<UpstreamConfig>,
    /// Request size, time and concurrency bounds (`[limits]`, SER-001).
    #[serde(default)]
    pub limits: ServerLimits,
    /// Per-originator and per-address rate limits (`[rate_limit]`, SER-001).
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
    /// before compiling. Documented in [`palisade_core::CompileSettings`].
    #[serde(default)]
    pub compile: palisade_core::CompileSettings,
    /// The process-wide engine: `[engine] max_memory_bytes`, the ceiling of every app's
    /// `limits.memory_bytes` (64 MiB by default; documented in
    /// [`palisade_core::EngineSettings`]).
    #[serde(default, deserialize_with = "usable_engine_settings")]
    pub engine: palisade_core::EngineSettings,
    /// The `[[app]]` sections: each application and its plugins.
    #[serde(default, rename = "app")]
    pub apps: Vec<AppConfig>,
    /// The audit trail (SER-016): failure policy and rotation.
    #[serde(default)]
    pub audit: super::audit::AuditSettings,
    /// Client certificates mapped to the originators they may speak as, for apps with
    /// `originators = "tls"` (besides the URIs in a certificate's subjectAltName);
    /// `ClientIdentityConfig`.
    #[serde(default, rename = "client_identity")]
    pub client_identities: Vec<super::originator::ClientIdentityConfig>,
    /// The `tkid` replay cache of apps with `originators = "token"` (SER-012);
    /// `TokenReplayConfig`.
    #[serde(default)]
    pub token_replay: super::replay::TokenReplayConfig,
    /// The group associations file `palisade group agent --associations` writes (relative
    /// to this file): the devices group authentication authenticated, whose request proofs
    /// apps with `group_authenticated = true` accept (docs/group-auth-protocol.md §12,
    /// the gateway's `group_proof` module). Needed by such apps; default none. Cost: a `stat` per request
    /// that carries a proof, a re-read when the file changed.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub group_associations: Option<Spanned<String>>,
    /// The file this came from (for error messages and relative paths).
    #[serde(skip)]
    pub file: PathBuf,
    #[serde(skip)]
    text: String,
}

/// Where the gateway's keys live (SER-010, SER-023).
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema)]
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
        /// The environment variable holding the token's user PIN.
        #[serde(default = "default_pin_env")]
        pin_env: String,
    },
}

fn default_pin_env() -> String {
    "PALISADE_HSM_PIN".into()
}

/// What a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, schemars::JsonSchema)]
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
    /// Every service.
    pub const ALL: [Service; 5] = [
        Service::Decide,
        Service::Proxy,
        Service::Metrics,
        Service::Health,
        Service::Admin,
    ];

    /// What a listener without a `serve` list offers: everything but `decide`. The decision
    /// API answers whatever its caller asks about, so it belongs on a listener only the CSE
    /// (or another trusted caller) reaches, not on the one devices use (issue 11.8): it is
    /// served only where it is listed.
    pub const DEFAULT: [Service; 4] = [
        Service::Proxy,
        Service::Metrics,
        Service::Health,
        Service::Admin,
    ];

    /// The name in the `serve` list.
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
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    #[schemars(with = "String")]
    pub address: Spanned<String>,
    /// Default: [`Service::DEFAULT`], everything but `decide`, which must be listed.
    #[serde(default)]
    pub serve: Option<Vec<Service>>,
    /// TLS, and optionally client certificates ([`super::tls`]).
    #[serde(default)]
    pub tls: Option<super::tls::TlsConfig>,
    /// Whether `/v1/decide` on this listener believes what its caller says about the
    /// request: `authenticated: true`, `roles` and `request_time`. Only for a listener that
    /// only a trusted caller reaches (the CSE on loopback, or a TLS listener with
    /// `client_ca_file`); elsewhere a decide request that claims them is refused (403
    /// `untrusted-field`), because anyone could claim to be authenticated. Default false.
    #[serde(default)]
    pub trusted_decide_callers: bool,
    /// DNS names (e.g. the CSE's, `"cse.example.net"`): on a TLS listener with
    /// `client_ca_file`, `/v1/decide` believes the claims of a caller whose verified client
    /// certificate is valid for one of them (as a server certificate is checked for its
    /// name), and of no one else unless `trusted_decide_callers` is set. Default: none.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub trusted_decide_clients: Vec<Spanned<String>>,
}

impl ListenerConfig {
    /// The services this listener offers ([`Service::DEFAULT`] without a `serve` list).
    pub fn services(&self) -> std::collections::HashSet<Service> {
        match &self.serve {
            Some(services) => services.iter().copied().collect(),
            None => Service::DEFAULT.into_iter().collect(),
        }
    }
}

/// The CSE behind the enforcement proxy.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// `http://host:port` or `https://host:port`, optionally with a path prefix. Plain
    /// `http://` is allowed, warned about at start and shown in `/health` as unencrypted.
    #[schemars(with = "String")]
    pub url: Spanned<String>,
    /// For `https://`: PEM CA certificates the CSE's certificate must chain to (required;
    /// no system store is trusted). Relative to this file.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub ca_file: Option<Spanned<String>>,
    /// For `https://`: a PEM client certificate chain presented to the CSE (SER-009), with
    /// `key_file`. Optional.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub cert_file: Option<Spanned<String>>,
    /// The PEM private key of `cert_file`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub key_file: Option<Spanned<String>>,
    /// Whole exchange with the CSE, connect to last byte. Default 5,000 ms; 0 is refused.
    #[serde(default = "defaults::upstream_timeout", deserialize_with = "positive")]
    pub timeout_ms: u64,
    /// Default 1,000 ms: an unreachable CSE is reported quickly (SER-007); 0 is refused.
    #[serde(default = "defaults::connect_timeout", deserialize_with = "positive")]
    pub connect_timeout_ms: u64,
    /// Largest response accepted from the CSE. Default 4 MiB; 0 is refused.
    #[serde(default = "defaults::max_response", deserialize_with = "positive")]
    pub max_response_bytes: usize,
    /// `[upstream.lookup]`: the gateway's own look-ups of target types and `<group>`
    /// resources at the CSE ([`super::cse_lookup::LookupConfig`]). Absent: none.
    #[serde(default)]
    pub lookup: Option<super::cse_lookup::LookupConfig>,
}

/// Limits that protect the gateway itself (SER-001). A limit that would refuse every request
/// (0 in-flight requests, a 0 ms header timeout...) is refused at start, never served.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ServerLimits {
    /// Largest request body (decide JSON or proxied oneM2M body). Default 64 KiB.
    #[serde(deserialize_with = "positive")]
    pub max_body_bytes: usize,
    /// Requests being decided or proxied at once; beyond it, 503 at once (no queue).
    /// Default 64.
    #[serde(deserialize_with = "positive")]
    pub max_in_flight: usize,
    /// Open connections; beyond it new connections are closed at once. Default 1,024.
    #[serde(deserialize_with = "positive")]
    pub max_connections: usize,
    /// Open connections from one client address (IPv4-mapped addresses count as IPv4);
    /// beyond it that address's new connections are closed at once and counted in
    /// `palisade_rejected_total{reason="connections-per-address"}`, while other addresses
    /// keep being served. Clients behind one NAT share it; with the defaults, eight addresses
    /// are needed to fill `max_connections`. Costs one small map entry per address with a
    /// connection open. Default 128; 0 is refused.
    #[serde(deserialize_with = "positive")]
    pub max_connections_per_address: usize,
    /// Time a client has to send a request's headers (slow-loris). Default 5,000 ms.
    #[serde(deserialize_with = "positive")]
    pub header_read_timeout_ms: u64,
    /// Time a client has to send a request's body. Default 10,000 ms.
    #[serde(deserialize_with = "positive")]
    pub body_read_timeout_ms: u64,
    /// On SIGTERM, how long in-flight requests may take to finish. Default 10,000 ms.
    pub shutdown_grace_ms: u64,
    // Request bounds, checked before any plugin runs (issue 11.4): no input, however large,
    // reaches a plugin, so none can make a plugin fail. The defaults fit real oneM2M
    // traffic with room to spare (SP-relative IDs and resource paths are well under 200
    // bytes) and keep a plugin's view, and so its deny reasons, far below the 4 KiB a
    // plugin's answer may have. Raising them costs only memory per request. Each refusal
    // names its limit.
    /// The target path (proxy: the request path; decide: `target`). Longer: HTTP 414 on
    /// the proxy (`X-M2M-RSC: 4000`), 400 `too-long` on decide. Default 1,024.
    pub max_path_bytes: usize,
    /// The query string of a proxied request (its parameters reach plugins as attributes;
    /// decide: all `attributes` together). Longer: 414 / 400 `too-long`. Default 2,048.
    pub max_query_bytes: usize,
    /// `X-M2M-Origin` (decide: `originator`). Longer: HTTP 431 / 400 `too-long`.
    /// Default 256.
    pub max_originator_bytes: usize,
    /// `X-M2M-RI`, the request id echoed in every answer. Longer: 431. Default 256.
    pub max_request_id_bytes: usize,
    /// `Authorization` (decide: `credential`), e.g. a oneM2M token (TS-0009 §6.4.19).
    /// Longer: 431 / 400 `too-long`. Default 4,096.
    pub max_authorization_bytes: usize,
    /// `Content-Type`, and each other oneM2M header the proxy forwards. Longer: 431.
    /// Default 256.
    pub max_header_bytes: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_body_bytes: 64 << 10,
            max_in_flight: 64,
            max_connections: 1024,
            max_connections_per_address: 128,
            header_read_timeout_ms: 5_000,
            body_read_timeout_ms: 10_000,
            shutdown_grace_ms: 10_000,
            max_path_bytes: 1024,
            max_query_bytes: 2048,
            max_originator_bytes: 256,
            max_request_id_bytes: 256,
            max_authorization_bytes: 4096,
            max_header_bytes: 256,
        }
    }
}

/// A token bucket: a steady rate and a burst. `per_second = 0` disables the limit; a
/// positive rate with `burst = 0` would refuse every request and is refused at start.
#[derive(Clone, Copy, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Requests per second, steady.
    pub per_second: u32,
    /// Requests allowed at once above the steady rate.
    pub burst: u32,
}

/// Rate limits (SER-001), each keyed so that one flooding party cannot starve the others.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Per originator (`X-M2M-Origin`, or `originator` in a decide request); a client with a
    /// verified TLS certificate is counted as that certificate instead, whatever originators
    /// it claims (an untrusted decide caller too).
    /// Default 50/s, burst 100.
    #[serde(deserialize_with = "usable_rate")]
    pub per_originator: Rate,
    /// Per client address of the proxy, whatever originators it claims (not applied to
    /// `/v1/decide`, whose caller is usually the CSE speaking for everyone). Default 500/s,
    /// burst 1,000.
    #[serde(deserialize_with = "usable_rate")]
    pub per_source_ip: Rate,
    /// Keys (originators, client addresses) each limit remembers: a fixed table allocated at
    /// start, about 48 bytes a key (768 KiB per limit at the default), whatever clients send.
    /// Keys over 32 bytes are stored as their SHA-256. When a flood of distinct keys fills
    /// it, a new key takes the slot of the bucket nearest to full and inherits its state, so
    /// eviction never gives anyone a fresh burst ([`super::protect::RateTable`]). A bucket is
    /// full again `burst / per_second` seconds after its last use, so only keys active within
    /// that time compete for slots; a larger table only matters beyond that many active
    /// clients. Default 16,384; 0 is refused, and 1 to 7 count as 8 (one slot group).
    #[serde(deserialize_with = "positive")]
    pub max_keys: usize,
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
            max_keys: 16_384,
        }
    }
}

/// Endpoints that measure the gateway rather than serve devices. Off by default: a production
/// gateway exposes nothing it does not need.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema)]
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
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// Target path prefixes that belong to this app (on `/` boundaries).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub paths: Vec<Spanned<String>>,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub isolation: Isolation,
    /// Refused at start when one would make every call fail (no memory, no time, no host
    /// call, no room for a reason).
    #[serde(default, deserialize_with = "usable_sandbox_limits")]
    pub limits: SandboxLimits,
    /// SER-015: the stakeholders of this app consented to its plugins and audit seeing
    /// real originator IDs. Default false: they see a per-app pseudonym (SER-011/018/025).
    #[serde(default)]
    pub consent_real_identities: bool,
    /// How this app's originators are established before its plugins run: `claimed`
    /// (default: `X-M2M-Origin` as sent), `tls` (the client certificate), `token` (oneM2M
    /// tokens held by the originator, each used once), `tls-or-token` (either), or
    /// `tls-and-token` (both). A request that fails is answered 4106 and audited
    /// ([`super::originator`]). Costs: `tls` a look-up per request; `token` a JSON read per
    /// token and one synced log append per request ([`super::replay`]).
    #[serde(default)]
    pub originators: super::originator::Mode,
    /// Group ID → member originator IDs (for `<group>` ACP entries).
    #[serde(default)]
    pub groups: BTreeMap<String, Vec<String>>,
    /// `<group>` resources of the upstream CSE whose members (`mid`, nested groups) count as
    /// this app's group members, by resource ID: SP-relative `"/id-in/grp1"` or absolute
    /// `"//sp.example/id-in/grp1"`, as `acor` names them. Needs `[upstream.lookup]`; each is
    /// retrieved before the app's proxied decisions when its `ttl_s` has run out (one
    /// look-up per group, nested ones besides). Default: none.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub cse_groups: Vec<Spanned<String>>,
    #[serde(default, rename = "plugin")]
    pub plugins: Vec<PluginConfig>,
    #[serde(default, rename = "key")]
    pub keys: Vec<KeyConfig>,
    /// `[app.registration]`: which originators may register an `<AE>` through this app
    /// (issue 13.6). Default: any originator, none without one.
    #[serde(default)]
    pub registration: super::registration::RegistrationConfig,
    /// A request with a valid group request proof (`X-Palisade-Group-Proof`, issued to a
    /// device group authentication authenticated; docs/group-auth-protocol.md §12) has its
    /// originator established by `group` and counts as authenticated for the plugins,
    /// whatever `originators` says; an invalid proof is refused 4106. Needs
    /// `group_associations`. Default false: the header is ignored. Cost: one Ed25519
    /// verification per request with a proof.
    #[serde(default)]
    pub group_authenticated: bool,
}

/// One plugin of an application.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Name within the app; default: the plugin reference or file stem.
    #[serde(default)]
    pub name: Option<String>,
    /// `acp`, `token-auth`, `geo-privacy`, or a path to a .wasm component.
    #[schemars(with = "String")]
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
    #[schemars(with = "Option<serde_json::Map<String, serde_json::Value>>")]
    pub config: Option<Spanned<toml::Table>>,
    /// Or a JSON file, relative to this config file.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub config_file: Option<Spanned<String>>,
    /// Development only. With `[admin] trust_roots` configured, a `.wasm` plugin named here
    /// must be signed for its app and kind by a key a trust root delegated (SER-022), or the
    /// gateway does not start; `allow_unsigned = true` runs this one plugin unverified
    /// instead, with an error-level line at every start and `"unsigned": true` beside it in
    /// `/health`. Default false. Embedded reference plugins (`plugin = "acp"`) are part of
    /// the binary and need no signature.
    #[serde(default)]
    pub allow_unsigned: bool,
}

/// A key the application's plugins use by handle (capability `crypto`).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    #[schemars(with = "String")]
    pub handle: Spanned<String>,
    /// `ed25519` or `hmac`: generated in the gateway's keystore on first start and kept
    /// there (never exported, SER-010).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub generate: Option<Spanned<String>>,
    /// An Ed25519 public key (64 hex digits), e.g. a token issuer's.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub ed25519_public: Option<Spanned<String>>,
}

/// A number that must not be 0: for limits and timeouts where 0 would refuse every request.
/// Checked while deserializing, so the error carries the value's line and key.
pub(crate) fn positive<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default + PartialEq,
{
    let value = T::deserialize(deserializer)?;
    if value == T::default() {
        return Err(serde::de::Error::custom(
            "0 would refuse every request; give a positive value (or leave the key out for the default)",
        ));
    }
    Ok(value)
}

/// A [`Rate`] that can let a request through: a positive rate needs a positive burst.
fn usable_rate<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Rate, D::Error> {
    let rate = Rate::deserialize(deserializer)?;
    if rate.per_second > 0 && rate.burst == 0 {
        return Err(serde::de::Error::custom(format!(
            "burst = 0 with per_second = {} refuses every request; give a burst of at least 1 (or per_second = 0 to disable the limit)",
            rate.per_second
        )));
    }
    Ok(rate)
}

/// Smallest memory cap accepted for an app: one WebAssembly page. Below it no plugin can even
/// be instantiated.
const MIN_PLUGIN_MEMORY_BYTES: usize = 64 << 10;

/// [`SandboxLimits`] under which a plugin call can succeed at all.
fn usable_sandbox_limits<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<SandboxLimits, D::Error> {
    let limits = SandboxLimits::deserialize(deserializer)?;
    let problem = if limits.memory_bytes < MIN_PLUGIN_MEMORY_BYTES {
        Some(format!(
            "memory_bytes = {} is below one WebAssembly page ({MIN_PLUGIN_MEMORY_BYTES}): no plugin can run",
            limits.memory_bytes
        ))
    } else if limits.deadline.is_zero() {
        Some("deadline_ms = 0 stops every plugin call before it starts".into())
    } else if limits.host_calls == 0 {
        Some("host_calls = 0 leaves a plugin unable even to read its configuration".into())
    } else if limits.max_reason_bytes == 0 {
        Some("max_reason_bytes = 0 turns every deny into a plugin failure".into())
    } else {
        None
    };
    match problem {
        Some(problem) => Err(serde::de::Error::custom(problem)),
        None => Ok(limits),
    }
}

/// [`palisade_core::EngineSettings`] a plugin can run under.
fn usable_engine_settings<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<palisade_core::EngineSettings, D::Error> {
    let settings = palisade_core::EngineSettings::deserialize(deserializer)?;
    match settings.problem() {
        Some(problem) => Err(serde::de::Error::custom(problem)),
        None => Ok(settings),
    }
}

/// Whether `prefix` is an app path the gateway can match: a target path in the forms oneM2M's
/// HTTP binding uses (`/cse-in/lights`, SP-relative `/~/cse/...`, absolute `/_/sp/cse/...`),
/// with no empty, `.` or `..` segment and nothing a request target would carry encoded or
/// split off (`%`, `;`, `?`, `#`, `\`, spaces, control and non-ASCII characters). Such a
/// prefix could never equal a normalised target, or would cover one an attacker spells
/// differently. Returns what is wrong.
fn app_path_problem(prefix: &str) -> Option<String> {
    let Some(rest) = prefix.strip_prefix('/') else {
        return Some("must start with '/'".into());
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return None;
    }
    for segment in rest.split('/') {
        if segment.is_empty() {
            return Some("has an empty segment (\"//\")".into());
        }
        if segment == "." || segment == ".." {
            return Some(format!("has a {segment:?} segment"));
        }
        if let Some(bad) = segment
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "-._~!$&'()*+,=:@".contains(*c)))
        {
            return Some(format!(
                "contains {bad:?}, which a target path never carries literally"
            ));
        }
    }
    None
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
        let text = std::fs::read_to_string(file).map_err(ConfigError::read(file))?;
        GatewayConfig::parse(file, text)
    }

    /// Parses `text` as if read from `file`.
    pub fn parse(file: &Path, text: String) -> Result<GatewayConfig, ConfigError> {
        let mut config: GatewayConfig = ConfigError::parse_toml(file, &text)?;
        config.file = file.to_path_buf();
        config.text = text;
        config.check()?;
        Ok(config)
    }

    /// The file's text as read (for sections another crate checks, e.g. `[audit.ship]`).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The directory relative paths in this file are resolved against.
    pub fn base_dir(&self) -> PathBuf {
        self.file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }

    /// The client TLS configuration for an `https://` upstream (None for `http://` or no
    /// upstream), built by the one client builder ([`crate::tls_client::client_config`]).
    /// TLS files given for an `http://` upstream are refused rather than ignored.
    pub fn upstream_tls(
        &self,
    ) -> Result<Option<std::sync::Arc<rustls::ClientConfig>>, ConfigError> {
        let Some(upstream) = &self.upstream else {
            return Ok(None);
        };
        let https = upstream.url.get_ref().starts_with("https://");
        let files = [
            ("upstream.ca_file", &upstream.ca_file),
            ("upstream.cert_file", &upstream.cert_file),
            ("upstream.key_file", &upstream.key_file),
        ];
        if !https {
            if let Some((key, Some(file))) = files.iter().find(|(_, file)| file.is_some()) {
                return Err(self.error_at(
                    file.span(),
                    *key,
                    "TLS files are for an https:// upstream; this one is http:// (plain text)",
                ));
            }
            return Ok(None);
        }
        let path = |file: &Option<Spanned<String>>| {
            file.as_ref()
                .map(|file| self.base_dir().join(file.get_ref()))
        };
        let tls = crate::tls_client::ClientTlsFiles {
            ca_file: path(&upstream.ca_file),
            cert_file: path(&upstream.cert_file),
            key_file: path(&upstream.key_file),
        };
        crate::tls_client::client_config(&tls)
            .map(Some)
            .map_err(|error| {
                let (key, span) = match &error {
                    crate::tls_client::ClientTlsError::NoCa => {
                        ("upstream.ca_file", upstream.url.span())
                    }
                    crate::tls_client::ClientTlsError::Certificates { path, .. }
                    | crate::tls_client::ClientTlsError::Empty { path }
                    | crate::tls_client::ClientTlsError::Ca { path, .. }
                        if Some(path) == tls.ca_file.as_ref() =>
                    {
                        let file = upstream.ca_file.as_ref().expect("read from it");
                        ("upstream.ca_file", file.span())
                    }
                    crate::tls_client::ClientTlsError::Key { .. } => {
                        let file = upstream.key_file.as_ref().expect("read from it");
                        ("upstream.key_file", file.span())
                    }
                    _ => match &upstream.cert_file {
                        Some(file) => ("upstream.cert_file", file.span()),
                        None => (
                            "upstream.key_file",
                            upstream
                                .key_file
                                .as_ref()
                                .map_or(upstream.url.span(), Spanned::span),
                        ),
                    },
                };
                self.error_at(span, key, palisade_types::Chain(&error).to_string())
            })
    }

    /// An error about `key`, located at `span` in this file.
    pub fn error_at(
        &self,
        span: std::ops::Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::at(&self.file, &self.text, span, key, message)
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
            if listener.serve.as_ref().is_some_and(Vec::is_empty) {
                return Err(self.error_at(
                    listener.address.span(),
                    format!("listener[{index}].serve"),
                    "serve = [] serves nothing: list what this listener serves, or leave the key out for everything",
                ));
            }
            // Port 0 asks for any free port, so several such listeners do not collide.
            let fixed_port = !listener.address.get_ref().ends_with(":0");
            if let Some(first) = self.listeners[..index].iter().position(|other| {
                fixed_port && other.address.get_ref() == listener.address.get_ref()
            }) {
                return Err(self.error_at(
                    listener.address.span(),
                    format!("listener[{index}].address"),
                    format!(
                        "{:?} is already listener[{first}]'s address",
                        listener.address.get_ref()
                    ),
                ));
            }
        }
        for (index, listener) in self.listeners.iter().enumerate() {
            self.check_trusted_clients(index, listener)?;
        }
        if let Some(upstream) = &self.upstream {
            if let Err(message) = super::proxy::Upstream::check_url(upstream.url.get_ref()) {
                return Err(self.error_at(upstream.url.span(), "upstream.url", message));
            }
            if let Some(problem) = upstream.lookup.as_ref().and_then(|l| l.problem()) {
                return Err(self.error_at(upstream.url.span(), "upstream.lookup", problem));
            }
            self.upstream_tls()?;
        }
        self.check_cse_groups()?;
        self.check_admin()?;
        let mut names = std::collections::HashSet::new();
        let mut prefixes: Vec<(String, String)> = Vec::new();
        for (index, app) in self.apps.iter().enumerate() {
            let name = app.name.get_ref();
            // The registry's rule (palisade-types), so every app configured here can be pushed.
            let refused = palisade_registry::validate_name("application name", name)
                .err()
                .map(|e| e.to_string())
                .or_else(|| {
                    name.ends_with(super::AUTHN_SUFFIX).then(|| {
                        format!("the application name {name:?} is not allowed: names never end with {:?}", super::AUTHN_SUFFIX)
                    })
                });
            if let Some(problem) = refused {
                return Err(self.error_at(app.name.span(), format!("app[{index}].name"), problem));
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
                if let Some(problem) = app_path_problem(prefix) {
                    return Err(self.error_at(
                        path.span(),
                        key,
                        format!(
                            "{prefix:?} {problem}: give an absolute target path such as \"/cse-in/lights\""
                        ),
                    ));
                }
                let normal = prefix.trim_end_matches('/').to_string();
                // The same prefix twice is ambiguous (which app decides?); nested prefixes are
                // not: the longest one wins, on `/` boundaries.
                if let Some((other, _)) = prefixes.iter().find(|(_, p)| *p == normal) {
                    let message = if other == name {
                        format!("{prefix:?} is listed twice")
                    } else {
                        format!("{prefix:?} already belongs to application {other:?}")
                    };
                    return Err(self.error_at(path.span(), key, message));
                }
                prefixes.push((name.clone(), normal));
            }
            if app.paths.is_empty() {
                return Err(self.error_at(
                    app.name.span(),
                    format!("app[{index}].paths"),
                    format!("application {name:?} has no paths, so no request ever reaches it: list the target paths it owns, e.g. paths = [\"/cse-in/{name}\"]"),
                ));
            }
            if app.plugins.is_empty() {
                return Err(self.error_at(
                    app.name.span(),
                    format!("app[{index}].plugin"),
                    format!("application {name:?} has no plugin: add an [[app.plugin]] (with no authorizer every request is denied)"),
                ));
            }
            self.check_memory_ceiling(index, app)?;
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
        self.check_request_bounds()
    }

    /// `cse_groups` are retrieved by the gateway: they need `[upstream.lookup]`, and each must
    /// be a group resource ID that names one resource path.
    fn check_cse_groups(&self) -> Result<(), ConfigError> {
        let lookups = self
            .upstream
            .as_ref()
            .is_some_and(|upstream| upstream.lookup.is_some());
        for (index, app) in self.apps.iter().enumerate() {
            for (group_index, id) in app.cse_groups.iter().enumerate() {
                let key = format!("app[{index}].cse_groups[{group_index}]");
                if !lookups {
                    return Err(self.error_at(
                        id.span(),
                        key,
                        "needs [upstream.lookup] (the originator the gateway retrieves groups as)",
                    ));
                }
                let text = id.get_ref();
                if !text.starts_with('/') || super::cse_lookup::id_path(text).is_err() {
                    return Err(self.error_at(
                        id.span(),
                        key,
                        format!("{text:?} is not a group resource ID: give an SP-relative \"/id-in/grp1\" or absolute \"//sp.example/id-in/grp1\" ID"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// An app's memory cap above the engine's ceiling would be lowered without a word: an
    /// operator who gave a Python plugin 128 MiB must learn that it gets 64 unless the ceiling
    /// moves too (SER-001 bounds stay the operator's own choice, and a visible one).
    fn check_memory_ceiling(&self, index: usize, app: &AppConfig) -> Result<(), ConfigError> {
        let ceiling = self.engine.max_memory_bytes;
        if app.limits.memory_bytes <= ceiling {
            return Ok(());
        }
        // The app's own `memory_bytes` line: the first one after its name, before the next app.
        let start = app.name.span().start.min(self.text.len());
        let rest = &self.text[start..];
        let end = rest.find("[[app]]").unwrap_or(rest.len());
        let span = match rest[..end].find("memory_bytes") {
            Some(offset) => start + offset..start + offset,
            None => app.name.span(),
        };
        Err(self.error_at(
            span,
            format!("app[{index}].limits.memory_bytes"),
            format!(
                "{} is above the engine's ceiling of {ceiling} bytes: lower it, or raise [engine] max_memory_bytes (at most 4 GiB)",
                app.limits.memory_bytes
            ),
        ))
    }

    /// `trusted_decide_clients` names certificate holders: only a listener that verifies
    /// client certificates can tell who they are.
    fn check_trusted_clients(
        &self,
        index: usize,
        listener: &ListenerConfig,
    ) -> Result<(), ConfigError> {
        let verifies = listener
            .tls
            .as_ref()
            .is_some_and(|tls| tls.client_ca_file.is_some());
        for (name_index, name) in listener.trusted_decide_clients.iter().enumerate() {
            let key = format!("listener[{index}].trusted_decide_clients[{name_index}]");
            if !verifies {
                return Err(self.error_at(
                    name.span(),
                    key,
                    "needs [listener.tls] with client_ca_file: without verified client certificates no caller can be recognised",
                ));
            }
            if rustls::pki_types::ServerName::try_from(name.get_ref().as_str()).is_err() {
                return Err(self.error_at(
                    name.span(),
                    key,
                    format!("{:?} is not a DNS name or IP address", name.get_ref()),
                ));
            }
        }
        Ok(())
    }

    /// A request bound of 0 would refuse every request (issue 11.4).
    fn check_request_bounds(&self) -> Result<(), ConfigError> {
        let limits = &self.limits;
        for (key, value) in [
            ("max_path_bytes", limits.max_path_bytes),
            ("max_query_bytes", limits.max_query_bytes),
            ("max_originator_bytes", limits.max_originator_bytes),
            ("max_request_id_bytes", limits.max_request_id_bytes),
            ("max_authorization_bytes", limits.max_authorization_bytes),
            ("max_header_bytes", limits.max_header_bytes),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    file: self.file.clone(),
                    line: self
                        .text
                        .find(key)
                        .map(|offset| line_of(&self.text, offset)),
                    key: Some(format!("limits.{key}")),
                    message: "0 would refuse every request: give a size in bytes".into(),
                });
            }
        }
        Ok(())
    }
}

impl GatewayConfig {
    /// `[admin]` values that would refuse every module. The section's struct lives with the
    /// admin API; its values' places are read here from the text, so the error has a line.
    fn check_admin(&self) -> Result<(), ConfigError> {
        #[derive(Deserialize)]
        struct Places {
            admin: Option<AdminPlaces>,
        }
        #[derive(Deserialize)]
        struct AdminPlaces {
            max_module_bytes: Option<Spanned<u64>>,
        }
        let Ok(places) = toml::from_str::<Places>(&self.text) else {
            return Ok(());
        };
        if let Some(max) = places.admin.and_then(|admin| admin.max_module_bytes) {
            if *max.get_ref() == 0 {
                return Err(self.error_at(
                    max.span(),
                    "admin.max_module_bytes",
                    "0 would refuse every module; give a positive size (or leave the key out for the default)",
                ));
            }
        }
        Ok(())
    }
}

impl ConfigError {
    /// `file` could not be read.
    pub fn read(file: &Path) -> impl FnOnce(std::io::Error) -> ConfigError + '_ {
        move |source| ConfigError::Read {
            file: file.to_path_buf(),
            source,
        }
    }

    /// An error about `key`, located at byte `span` of `file` (whose text is `text`).
    pub fn at(
        file: &Path,
        text: &str,
        span: std::ops::Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            file: file.to_path_buf(),
            line: Some(line_of(text, span.start)),
            key: Some(key.into()),
            message: message.into(),
        }
    }

    /// Parses `text` (read from `file`) as TOML into `T`; a syntax or schema error names
    /// the file, the line and the key. The one TOML reader of every config the project
    /// reads (gateway, collector, shipper).
    pub fn parse_toml<T: serde::de::DeserializeOwned>(
        file: &Path,
        text: &str,
    ) -> Result<T, ConfigError> {
        let deserializer = toml::de::Deserializer::parse(text)
            .map_err(|error| toml_error(file, text, None, &error))?;
        serde_path_to_error::deserialize::<_, T>(deserializer).map_err(|error| {
            let path = error.path().to_string();
            let key = (path != ".").then_some(path);
            toml_error(file, text, key, error.inner())
        })
    }
}

/// A TOML or schema error of `file` (whose text is `text`) as a [`ConfigError`] naming its
/// line and `key` (through [`ConfigError::parse_toml`]).
pub fn toml_error(
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
pub fn line_of(text: &str, offset: usize) -> usize {
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
    fn request_bounds_have_defaults_and_must_not_be_zero() {
        let config = parse("[limits]\nmax_path_bytes = 2048\n").unwrap();
        assert_eq!(
            (
                config.limits.max_path_bytes,
                config.limits.max_originator_bytes
            ),
            (2048, 256)
        );
        let error = parse("[limits]\nmax_body_bytes = 10\nmax_originator_bytes = 0\n")
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("gw.toml:3: limits.max_originator_bytes"),
            "{error}"
        );
    }

    /// Before issue #14.3 the configuration checked names with its own rule, which accepted
    /// `_meters`, `-x` and `a..b`; the registry refused them, so such an app could be configured
    /// but never receive a pushed plugin. Now both use palisade-types' rule.
    #[test]
    fn app_names_follow_the_registry_rule() {
        let config = |name: &str| {
            parse(&format!(
                "[[app]]\nname = {name:?}\npaths = [\"/x\"]\n[[app.plugin]]\nplugin = \"acp\"\n"
            ))
        };
        let longest = "m".repeat(64);
        for good in ["meters", "Meters-2.v1_a", longest.as_str()] {
            assert!(config(good).is_ok(), "{good}");
            assert!(
                palisade_registry::validate_name("application name", good).is_ok(),
                "{good}"
            );
        }
        let too_long = "m".repeat(65);
        for bad in [
            "_meters",
            "-x",
            ".x",
            "a..b",
            "a/b",
            "x.authn",
            too_long.as_str(),
        ] {
            let error = config(bad).unwrap_err().to_string();
            assert!(
                error.starts_with("gw.toml:2: app[0].name"),
                "{bad}: {error}"
            );
        }
        for bad in ["_meters", "-x", "a..b"] {
            assert!(palisade_registry::validate_name("application name", bad).is_err());
        }
    }

    #[test]
    fn decide_is_served_only_where_listed() {
        let config = parse("[[listener]]\naddress = \"127.0.0.1:1\"\n[[listener]]\naddress = \"127.0.0.1:2\"\nserve = [\"decide\"]\ntrusted_decide_callers = true\n").unwrap();
        assert!(!config.listeners[0].services().contains(&Service::Decide));
        assert!(config.listeners[0].services().contains(&Service::Proxy));
        assert!(!config.listeners[0].trusted_decide_callers);
        assert!(config.listeners[1].services().contains(&Service::Decide));
        assert!(config.listeners[1].trusted_decide_callers);
    }

    #[test]
    fn app_paths_are_absolute_target_paths() {
        for good in [
            "/",
            "/cse-in",
            "/cse-in/lights/",
            "/~/in-cse/lights",
            "/_/sp.example.com/in-cse/lights",
            "/cse-in/CAE-1_x.y~z:@",
        ] {
            assert_eq!(app_path_problem(good), None, "{good}");
        }
        for bad in [
            "",
            "cse-in",
            "//cse-in",
            "/cse-in//x",
            "/cse-in/./x",
            "/cse-in/..",
            "/cse-in/x;y",
            "/cse-in/%2e",
            "/cse-in/x?y",
            "/cse-in/x#y",
            "/cse-in/x\\y",
            "/cse-in/x y",
            "/cse-in/x\ty",
            "/cse-in/l\u{e4}mp",
            "/cse-in/\u{202e}x",
        ] {
            assert!(app_path_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let error = parse("[limits]\nmax_body_bytes = = 3\n")
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("gw.toml:2"), "{error}");
    }
    #[test]
    fn the_engine_memory_ceiling_is_a_validated_knob() {
        let app = |memory: usize| {
            format!("[[app]]\nname = \"py\"\npaths = [\"/x\"]\n[app.limits]\nmemory_bytes = {memory}\n[[app.plugin]]\nplugin = \"acp\"\n")
        };
        // The default ceiling (64 MiB) admits the default cap and a 64 MiB one...
        let config = parse(&app(64 << 20)).unwrap();
        assert_eq!(config.engine.max_memory_bytes, 64 << 20);
        // ...and refuses more, naming the line, the key and the way out, instead of lowering it.
        let error = parse(&app(128 << 20)).unwrap_err().to_string();
        assert!(
            error.starts_with("gw.toml:5: app[0].limits.memory_bytes: 134217728 is above the engine's ceiling of 67108864 bytes"),
            "{error}"
        );
        assert!(error.contains("[engine] max_memory_bytes"), "{error}");
        // Raising the ceiling admits it.
        let raised = format!(
            "[engine]\nmax_memory_bytes = {}\n{}",
            256 << 20,
            app(128 << 20)
        );
        let config = parse(&raised).unwrap();
        assert_eq!(config.engine.max_memory_bytes, 256 << 20);
        let mut engine = palisade_core::EngineConfig::default();
        config.engine.apply(&mut engine);
        assert_eq!(engine.max_memory_bytes, 256 << 20);
        // A ceiling no plugin fits under, or one past what 32-bit memories address, is refused
        // at the [engine] table.
        for (value, words) in [
            (1024_usize, "below one WebAssembly page"),
            (8 << 30, "above 4294967296"),
        ] {
            let error = parse(&format!("[engine]\nmax_memory_bytes = {value}\n"))
                .unwrap_err()
                .to_string();
            assert!(error.starts_with("gw.toml:1: engine"), "{error}");
            assert!(error.contains(words), "{error}");
        }
        // Exactly 4 GiB is the highest accepted.
        parse(&format!("[engine]\nmax_memory_bytes = {}\n", 4_u64 << 30)).unwrap();
    }

    #[test]
    fn the_instance_pool_and_idle_budget_are_validated_knobs() {
        let config = parse("").unwrap();
        assert_eq!(config.engine.pool_instances, 2_000);
        assert_eq!(config.engine.max_idle_instances, None);
        let config = parse("[engine]\npool_instances = 8\nmax_idle_instances = 8\n").unwrap();
        let mut engine = palisade_core::EngineConfig::default();
        config.engine.apply(&mut engine);
        assert_eq!(
            (engine.pool_instances, engine.max_idle_instances),
            (8, Some(8))
        );
        parse(&format!(
            "[engine]\npool_instances = {}\n",
            palisade_core::MAX_POOL_INSTANCES
        ))
        .unwrap();
        for (table, words) in [
            (
                "pool_instances = 0",
                "pool_instances = 0 is outside 1 to 65536",
            ),
            (
                "pool_instances = 65537",
                "pool_instances = 65537 is outside",
            ),
            (
                "pool_instances = 8\nmax_idle_instances = 9",
                "max_idle_instances = 9 is above pool_instances = 8",
            ),
        ] {
            let error = parse(&format!("[engine]\n{table}\n"))
                .unwrap_err()
                .to_string();
            assert!(error.starts_with("gw.toml:1: engine"), "{error}");
            assert!(error.contains(words), "{error}");
        }
    }
}
