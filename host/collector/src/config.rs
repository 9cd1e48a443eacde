//! The collector's configuration file and the shipper's, both TOML, with errors that name
//! the file, line and key (the gateway's own [`ConfigError`]).
//!
//! ```toml
//! # collector.toml
//! listen = "0.0.0.0:7443"
//! database_url = "host=db.example port=5432 user=palisade dbname=palisade"
//! [tls]
//! cert_file = "collector.crt"
//! key_file = "collector.key"
//! client_ca_file = "fleet-ca.crt"     # required: every client presents a certificate
//! [[gateway]]
//! id = "gw-0001"                      # its client certificate's first DNS name (or CN)
//! audit_public_key = "3b6a27bc..."    # its audit checkpoint key (64 hex)
//! query_clients = ["ops.example"]     # certificates that may query (not gateways)
//! ```
//!
//! ```toml
//! # ship.toml (the gateway side; `palisade-collector ship --config ship.toml`)
//! collector = "https://collector.example:7443"
//! audit_dir = "data/audit"
//! ca_file = "collector-ca.crt"
//! cert_file = "gw-0001.crt"
//! key_file = "gw-0001.key"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use palisade_gateway::ConfigError;
use serde::Deserialize;
use toml::Spanned;

fn read(file: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(file).map_err(ConfigError::read(file))
}

/// Where a config file's errors point.
struct Origin<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Origin<'_> {
    fn error(
        &self,
        span: std::ops::Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::at(self.file, self.text, span, key, message)
    }

    fn path(&self, value: &str) -> PathBuf {
        self.file.parent().unwrap_or(Path::new(".")).join(value)
    }

    fn range<T: Copy + PartialOrd + std::fmt::Display>(
        &self,
        value: &Spanned<T>,
        key: &str,
        min: T,
        max: T,
    ) -> Result<T, ConfigError> {
        let v = *value.get_ref();
        if v < min || v > max {
            return Err(self.error(value.span(), key, format!("{v} is outside {min}..={max}")));
        }
        Ok(v)
    }
}

/// The collector's `collector.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CollectorFile {
    listen: Spanned<String>,
    database_url: Spanned<String>,
    #[serde(default = "defaults::pool_size")]
    pool_size: Spanned<usize>,
    #[serde(default = "defaults::max_batch_bytes")]
    max_batch_bytes: Spanned<usize>,
    #[serde(default = "defaults::max_batch_entries")]
    max_batch_entries: Spanned<usize>,
    #[serde(default = "defaults::max_query_rows")]
    max_query_rows: Spanned<usize>,
    #[serde(default = "defaults::max_connections")]
    max_connections: Spanned<usize>,
    tls: ServerTlsFile,
    #[serde(default, rename = "gateway")]
    gateways: Vec<GatewayFile>,
    #[serde(default)]
    query_clients: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerTlsFile {
    cert_file: Spanned<String>,
    key_file: Spanned<String>,
    client_ca_file: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GatewayFile {
    id: Spanned<String>,
    audit_public_key: Spanned<String>,
}

mod defaults {
    use toml::Spanned;
    fn s<T>(v: T) -> Spanned<T> {
        Spanned::new(0..0, v)
    }
    pub fn pool_size() -> Spanned<usize> {
        s(8)
    }
    pub fn max_batch_bytes() -> Spanned<usize> {
        s(4 << 20)
    }
    pub fn max_batch_entries() -> Spanned<usize> {
        s(10_000)
    }
    pub fn max_query_rows() -> Spanned<usize> {
        s(1000)
    }
    pub fn max_connections() -> Spanned<usize> {
        s(256)
    }
    pub fn batch_entries() -> Spanned<usize> {
        s(1000)
    }
    pub fn batch_bytes() -> Spanned<usize> {
        s(1 << 20)
    }
    pub fn poll_interval_ms() -> Spanned<u64> {
        s(500)
    }
    pub fn retry_max_ms() -> Spanned<u64> {
        s(30_000)
    }
    pub fn request_timeout_ms() -> Spanned<u64> {
        s(30_000)
    }
    pub fn max_backlog_bytes() -> Spanned<u64> {
        s(1 << 30)
    }
}

/// The longest gateway or client id (a DNS name is at most 253 bytes).
pub const MAX_ID_BYTES: usize = 253;

/// One gateway the collector accepts batches from.
#[derive(Debug, Clone)]
pub struct GatewayKey {
    /// Its id: the first DNS name of its client certificate (its common name without one).
    pub id: String,
    /// The Ed25519 key its audit checkpoints must verify against (SER-016).
    pub audit_public_key: [u8; 32],
}

/// The collector's checked configuration.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// The HTTPS listener.
    pub listen: SocketAddr,
    /// A libpq-style connection string (`host=... port=... user=... dbname=...`) or URL.
    pub database_url: String,
    /// Database connections kept (default 8; each is a PostgreSQL backend process).
    pub pool_size: usize,
    /// The largest batch body accepted, bytes (default 4 MiB, 64 KiB..=64 MiB); a larger one
    /// is refused with 413 before it is read whole.
    pub max_batch_bytes: usize,
    /// The most entries one batch may hold (default 10000, 1..=100000): bounds the work and
    /// the transaction of one request.
    pub max_batch_entries: usize,
    /// The most rows one query answers (default 1000, 1..=10000); more are paged.
    pub max_query_rows: usize,
    /// Connections served at once (default 256); more wait in the kernel's backlog.
    pub max_connections: usize,
    /// The server certificate chain (PEM).
    pub cert_file: PathBuf,
    /// Its private key (PEM).
    pub key_file: PathBuf,
    /// The CAs that issue gateway and operator client certificates (PEM); required.
    pub client_ca_file: PathBuf,
    /// The gateways accepted, by id.
    pub gateways: Vec<GatewayKey>,
    /// Client ids (certificate DNS name or CN) allowed to query; gateways are not.
    pub query_clients: Vec<String>,
}

fn check_id(origin: &Origin<'_>, id: &Spanned<String>, key: &str) -> Result<String, ConfigError> {
    let value = id.get_ref();
    if value.is_empty()
        || value.len() > MAX_ID_BYTES
        || !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        return Err(origin.error(
            id.span(),
            key,
            format!("{value:?} is not an id: 1 to {MAX_ID_BYTES} of A-Z a-z 0-9 - . _ (a certificate's DNS name)"),
        ));
    }
    Ok(value.clone())
}

/// Parses a 64-hex Ed25519 public key.
pub fn parse_public_key(text: &str) -> Result<[u8; 32], String> {
    let mut key = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut key)
        .map_err(|_| "not 64 hex characters (an Ed25519 public key)".to_owned())?;
    // The verifier refuses weak or invalid keys too; refusing them here names the key.
    match ed25519_dalek::VerifyingKey::from_bytes(&key) {
        Ok(vk) if !vk.is_weak() => Ok(key),
        _ => Err("not a usable Ed25519 public key".to_owned()),
    }
}

impl CollectorConfig {
    /// Reads and checks `file`; relative paths are resolved against its directory.
    pub fn load(file: &Path) -> Result<CollectorConfig, ConfigError> {
        let text = read(file)?;
        Self::parse(file, &text)
    }

    /// Parses `text` as if read from `file`.
    pub fn parse(file: &Path, text: &str) -> Result<CollectorConfig, ConfigError> {
        let raw: CollectorFile = ConfigError::parse_toml(file, text)?;
        let o = Origin { file, text };
        let listen = raw.listen.get_ref().parse::<SocketAddr>().map_err(|_| {
            o.error(
                raw.listen.span(),
                "listen",
                "not an IP address and port (e.g. \"0.0.0.0:7443\")",
            )
        })?;
        let mut gateways: Vec<GatewayKey> = Vec::new();
        for (i, gw) in raw.gateways.iter().enumerate() {
            let id = check_id(&o, &gw.id, &format!("gateway[{i}].id"))?;
            if gateways.iter().any(|g| g.id == id) {
                return Err(o.error(
                    gw.id.span(),
                    format!("gateway[{i}].id"),
                    format!("{id:?} is listed twice"),
                ));
            }
            let audit_public_key =
                parse_public_key(gw.audit_public_key.get_ref()).map_err(|m| {
                    o.error(
                        gw.audit_public_key.span(),
                        format!("gateway[{i}].audit_public_key"),
                        m,
                    )
                })?;
            gateways.push(GatewayKey {
                id,
                audit_public_key,
            });
        }
        let mut query_clients = Vec::new();
        for (i, client) in raw.query_clients.iter().enumerate() {
            let id = check_id(&o, client, &format!("query_clients[{i}]"))?;
            if gateways.iter().any(|g| g.id == id) {
                return Err(o.error(
                    client.span(),
                    format!("query_clients[{i}]"),
                    format!("{id:?} is a gateway: a gateway may not read other gateways' logs"),
                ));
            }
            query_clients.push(id);
        }
        Ok(CollectorConfig {
            listen,
            database_url: raw.database_url.get_ref().clone(),
            pool_size: o.range(&raw.pool_size, "pool_size", 1, 64)?,
            max_batch_bytes: o.range(
                &raw.max_batch_bytes,
                "max_batch_bytes",
                64 << 10,
                64 << 20,
            )?,
            max_batch_entries: o.range(&raw.max_batch_entries, "max_batch_entries", 1, 100_000)?,
            max_query_rows: o.range(&raw.max_query_rows, "max_query_rows", 1, 10_000)?,
            max_connections: o.range(&raw.max_connections, "max_connections", 1, 65_536)?,
            cert_file: o.path(raw.tls.cert_file.get_ref()),
            key_file: o.path(raw.tls.key_file.get_ref()),
            client_ca_file: o.path(raw.tls.client_ca_file.get_ref()),
            gateways,
            query_clients,
        })
    }
}

/// The shipper's `ship.toml` (the gateway side).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShipFile {
    collector: Spanned<String>,
    /// Required in a standalone ship.toml; a gateway's `[audit.ship]` ships its own log.
    #[serde(default)]
    audit_dir: Option<Spanned<String>>,
    #[serde(default)]
    file_name: Option<String>,
    #[serde(default)]
    cursor_file: Option<String>,
    ca_file: Spanned<String>,
    cert_file: Spanned<String>,
    key_file: Spanned<String>,
    #[serde(default = "defaults::batch_entries")]
    batch_entries: Spanned<usize>,
    #[serde(default = "defaults::batch_bytes")]
    batch_bytes: Spanned<usize>,
    #[serde(default = "defaults::poll_interval_ms")]
    poll_interval_ms: Spanned<u64>,
    #[serde(default = "defaults::retry_max_ms")]
    retry_max_ms: Spanned<u64>,
    #[serde(default = "defaults::request_timeout_ms")]
    request_timeout_ms: Spanned<u64>,
    #[serde(default = "defaults::max_backlog_bytes")]
    max_backlog_bytes: Spanned<u64>,
    #[serde(default)]
    on_backlog_full: Option<Spanned<String>>,
}

/// The shipper's checked configuration.
#[derive(Debug, Clone)]
pub struct ShipConfig {
    /// The collector's base URL; `https://` only (batches travel with the gateway's client
    /// certificate).
    pub collector: hyper::Uri,
    /// The gateway's audit directory (the `[audit]` directory of `palisade serve`).
    pub audit_dir: PathBuf,
    /// The log's file name in it (default `audit.log`).
    pub file_name: String,
    /// Where the shipper keeps its cursor (default `<audit_dir>/ship.cursor`).
    pub cursor_file: PathBuf,
    /// The CA(s) the collector's certificate must chain to.
    pub ca_file: PathBuf,
    /// The gateway's client certificate (its first DNS name is its id at the collector).
    pub cert_file: PathBuf,
    /// Its key.
    pub key_file: PathBuf,
    /// Entries per batch at most (default 1000, 1..=100000; keep it at or under the
    /// collector's `max_batch_entries`).
    pub batch_entries: usize,
    /// Bytes per batch at most (default 1 MiB, 64 KiB..=64 MiB; at or under the collector's
    /// `max_batch_bytes`). One audit line must fit (the log's payload limit is 16 KiB).
    pub batch_bytes: usize,
    /// How often the log is looked at when everything is shipped (default 500 ms).
    pub poll_interval: Duration,
    /// The longest wait between retries while the collector is unreachable or refuses
    /// (default 30 s; back-off doubles from the poll interval up to it).
    pub retry_max: Duration,
    /// How long one batch may take to be answered (default 30 s).
    pub request_timeout: Duration,
    /// The bound on the unshipped part of the log (bytes on disk not yet acknowledged by
    /// the collector; default 1 GiB, at least 1 MiB). Above it the shipper is backlogged
    /// (`/health`, metrics, logs) and [`ShipConfig::on_backlog_full`] says what the gateway
    /// does. Entries are never dropped to stay under it (SER-016). The backlog is measured
    /// every `poll_interval` (also while retrying), so it can pass the bound by what the
    /// gateway writes in one interval.
    pub max_backlog_bytes: u64,
    /// What the gateway does while the backlog is over `max_backlog_bytes`
    /// (`on_backlog_full`, default `"deny"`).
    pub on_backlog_full: OnBacklogFull,
}

/// What a gateway does while more of its audit log than `max_backlog_bytes` is unshipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnBacklogFull {
    /// `"deny"` (the default; SER-016, fail closed): new decisions are refused (503, JSON
    /// error `audit-unavailable`, reason `ship-backlog`, and `/health` says why) until the
    /// collector has caught up below the bound; the gateway resumes by itself. The cost: a
    /// collector outage longer than the bound allows stops the gateway's service, and the
    /// disk use of the audit log stays bounded.
    #[default]
    Deny,
    /// `"warn"`: keep deciding offline (SER-007) and only report the backlog (`/health`,
    /// metrics, a warning in the log); nothing is dropped, so the log's unshipped part grows
    /// without bound on disk until the collector is back. For gateways whose decisions must
    /// not stop for a collector outage, on a disk sized for the longest outage.
    Warn,
}

impl ShipConfig {
    /// Reads and checks a standalone `ship.toml`.
    pub fn load(file: &Path) -> Result<ShipConfig, ConfigError> {
        let text = read(file)?;
        Self::parse(file, &text)
    }

    /// Parses a standalone `ship.toml` (`text`) as if read from `file`.
    pub fn parse(file: &Path, text: &str) -> Result<ShipConfig, ConfigError> {
        let raw: ShipFile = ConfigError::parse_toml(file, text)?;
        let o = Origin { file, text };
        let Some(dir) = &raw.audit_dir else {
            return Err(ConfigError::Invalid {
                file: file.to_path_buf(),
                line: None,
                key: Some("audit_dir".into()),
                message: "missing: the gateway's audit directory".into(),
            });
        };
        let audit_dir = o.path(dir.get_ref());
        Self::check(&o, raw, audit_dir, "")
    }

    /// The `[audit.ship]` table of a gateway config (`file` with `text`), shipping the log in
    /// `audit_dir`; `None` when the gateway ships nothing. Relative paths are resolved
    /// against the config file's directory; errors name `audit.ship.KEY` and the line.
    pub fn from_gateway(
        file: &Path,
        text: &str,
        audit_dir: &Path,
    ) -> Result<Option<ShipConfig>, ConfigError> {
        // Only this one table is read here; the gateway checks the rest of the file.
        #[derive(Deserialize)]
        struct View {
            #[serde(default)]
            audit: Option<AuditView>,
        }
        #[derive(Deserialize)]
        struct AuditView {
            #[serde(default)]
            ship: Option<ShipFile>,
        }
        let view: View = ConfigError::parse_toml(file, text)?;
        let Some(raw) = view.audit.and_then(|a| a.ship) else {
            return Ok(None);
        };
        let o = Origin { file, text };
        if let Some(dir) = &raw.audit_dir {
            return Err(o.error(
                dir.span(),
                "audit.ship.audit_dir",
                "a gateway ships its own audit log: leave audit_dir out",
            ));
        }
        Self::check(&o, raw, audit_dir.to_path_buf(), "audit.ship.").map(Some)
    }

    fn check(
        o: &Origin<'_>,
        raw: ShipFile,
        audit_dir: PathBuf,
        prefix: &str,
    ) -> Result<ShipConfig, ConfigError> {
        let k = |key: &str| format!("{prefix}{key}");
        let collector: hyper::Uri = raw
            .collector
            .get_ref()
            .parse()
            .ok()
            .filter(|u: &hyper::Uri| u.scheme_str() == Some("https") && u.host().is_some())
            .ok_or_else(|| {
                o.error(
                    raw.collector.span(),
                    k("collector"),
                    "not an https:// URL (e.g. \"https://collector.example:7443\")",
                )
            })?;
        let file_name = raw
            .file_name
            .unwrap_or_else(|| palisade_audit::DEFAULT_FILE_NAME.to_owned());
        let cursor_file = raw
            .cursor_file
            .map(|c| o.path(&c))
            .unwrap_or_else(|| audit_dir.join("ship.cursor"));
        let poll = o.range(&raw.poll_interval_ms, &k("poll_interval_ms"), 10, 60_000)?;
        Ok(ShipConfig {
            collector,
            audit_dir,
            file_name,
            cursor_file,
            ca_file: o.path(raw.ca_file.get_ref()),
            cert_file: o.path(raw.cert_file.get_ref()),
            key_file: o.path(raw.key_file.get_ref()),
            batch_entries: o.range(&raw.batch_entries, &k("batch_entries"), 1, 100_000)?,
            batch_bytes: o.range(&raw.batch_bytes, &k("batch_bytes"), 64 << 10, 64 << 20)?,
            poll_interval: Duration::from_millis(poll),
            retry_max: Duration::from_millis(o.range(
                &raw.retry_max_ms,
                &k("retry_max_ms"),
                poll,
                3_600_000,
            )?),
            request_timeout: Duration::from_millis(o.range(
                &raw.request_timeout_ms,
                &k("request_timeout_ms"),
                100,
                600_000,
            )?),
            max_backlog_bytes: o.range(
                &raw.max_backlog_bytes,
                &k("max_backlog_bytes"),
                1 << 20,
                u64::MAX,
            )?,
            on_backlog_full: match &raw.on_backlog_full {
                None => OnBacklogFull::Deny,
                Some(v) => match v.get_ref().as_str() {
                    "deny" => OnBacklogFull::Deny,
                    "warn" => OnBacklogFull::Warn,
                    other => {
                        return Err(o.error(
                            v.span(),
                            k("on_backlog_full"),
                            format!("{other:?} is neither \"deny\" nor \"warn\""),
                        ))
                    }
                },
            },
        })
    }
}
