//! Per-application limits and isolation settings (SER-001, SER-024).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How instances of an application's plugins are reused.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    /// Keep instances warm and reuse them for later requests of the same application
    /// (about a microsecond per call). An instance whose call failed in any way is dropped,
    /// never reused. Guest memory persists between requests of the same application only.
    #[default]
    Warm,
    /// A new instance for every request, so no state can carry over from one request to the
    /// next (a few microseconds more per call, with the pooling allocator and copy-on-write
    /// memory images).
    FreshPerRequest,
}

/// Limits applied to every call into one application's plugins.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxLimits {
    /// Most memory one plugin instance may hold: all its linear memories and tables together
    /// (a table element counts 8 bytes), however many core memories the component declares.
    /// At most [`crate::engine::EngineConfig::max_memory_bytes`] (the gateway's `[engine]`
    /// ceiling, 64 MiB by default): a gateway config asking for more does not start. A Rust
    /// plugin needs well under 1 MiB; a Python or JavaScript one (an interpreter inside)
    /// 12–16 MiB idle, more with each library it imports. Cost: up to this much resident
    /// memory per live instance (warm instances plus calls in flight). Default: 16 MiB.
    pub memory_bytes: usize,
    /// Wall-clock time one call may run before it traps (epoch deadline). Default: 50 ms.
    #[schemars(with = "u64")]
    #[serde(with = "duration_ms", rename = "deadline_ms")]
    pub deadline: Duration,
    /// Host imports one call may make (logging, key-value, crypto...); a flood traps.
    /// Default: 1,000.
    pub host_calls: u32,
    /// Longest deny, rejection or block reason (and authenticated subject) passed on from a
    /// plugin; a longer one is cut by the host with a marker. Default: 4 KiB.
    pub max_reason_bytes: usize,
    /// Largest body a filter may return. Default: 4 MiB.
    pub max_body_bytes: usize,
    /// Key-value store: longest key (default 256 bytes), longest value (default 64 KiB),
    /// most entries (default 1,024) and most bytes in all (default 1 MiB) per application.
    pub kv_max_key_bytes: usize,
    pub kv_max_value_bytes: usize,
    pub kv_max_entries: usize,
    pub kv_max_total_bytes: usize,
    /// Recent failures (at least half of the calls; or 60 % of it in burnt deadlines, whatever
    /// the successes) after which a plugin is quarantined, for the failing originator or,
    /// counting at most a third per originator, for the application (see `quarantine.rs`).
    /// `u32::MAX` turns quarantine off. Default: 5.
    pub quarantine_after: u32,
    /// First quarantine period; each further failure after re-admission doubles it up to
    /// `quarantine_max`. Defaults: 1 s and 5 min.
    #[schemars(with = "u64")]
    #[serde(with = "duration_ms", rename = "quarantine_base_ms")]
    pub quarantine_base: Duration,
    #[schemars(with = "u64")]
    #[serde(with = "duration_ms", rename = "quarantine_max_ms")]
    pub quarantine_max: Duration,
    /// Idle warm instances kept per plugin (in `warm` isolation). Default: 8.
    pub warm_instances: usize,
    /// Resource handles one plugin instance may hold at once: WASI streams, pollables and
    /// the like in the host's table, and the component's own handle tables (SER-001). They
    /// live in host memory outside `memory_bytes` and persist in a warm instance, so a plugin
    /// that leaks them traps at this cap. A Rust plugin holds fewer than ten. Cost: about
    /// 200 bytes of host memory per handle held. Default: 64.
    pub resource_handles: usize,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        SandboxLimits {
            memory_bytes: 16 << 20,
            deadline: Duration::from_millis(50),
            host_calls: 1_000,
            max_reason_bytes: 4 << 10,
            max_body_bytes: 4 << 20,
            kv_max_key_bytes: 256,
            kv_max_value_bytes: 64 << 10,
            kv_max_entries: 1_024,
            kv_max_total_bytes: 1 << 20,
            quarantine_after: 5,
            quarantine_base: Duration::from_secs(1),
            quarantine_max: Duration::from_secs(300),
            warm_instances: 8,
            resource_handles: 64,
        }
    }
}

mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(value.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(deserializer)?))
    }
}
