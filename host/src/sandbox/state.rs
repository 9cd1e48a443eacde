//! What a plugin's store holds: its application's environment, its own grant, the budgets
//! of the current call, and a WASI context with nothing in it.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{
    HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView,
};

use super::capabilities::{AppKeys, Capabilities, Capability, GroupDirectory, KvNamespace};
use super::limits::SandboxLimits;

/// One application's segregated security environment (SER-024): the state its plugins share
/// and no other application can reach.
pub struct AppEnvironment {
    pub name: String,
    pub kv: KvNamespace,
    pub groups: GroupDirectory,
    pub keys: Arc<dyn AppKeys>,
}

/// What one plugin of one application was granted.
pub struct PluginGrant {
    pub app: String,
    pub name: String,
    /// The plugin's configuration document (JSON), handed over by `config.get`.
    pub config_json: Arc<str>,
    pub capabilities: Capabilities,
}

/// Why the host ended a call with a trap of its own making.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SandboxTrap {
    #[error(
        "the plugin made more than {limit} host calls in one call (host-call budget exhausted)"
    )]
    HostCallBudget { limit: u32 },
    #[error("the plugin used the `{0}` capability, which this application did not grant it")]
    CapabilityDenied(Capability),
    /// The plugin waited for something only time or outside I/O could bring ({0}): nothing
    /// in the deny-all sandbox ever becomes ready later, and a host thread must never block
    /// where the epoch deadline cannot reach it (see `wasi_io.rs`).
    #[error("the plugin would block {0}; the sandbox has nothing to wait for")]
    WouldBlock(&'static str),
}

/// The data of a plugin's store.
pub struct HostState {
    pub(crate) env: Arc<AppEnvironment>,
    pub(crate) plugin: Arc<PluginGrant>,
    pub(crate) limits: Arc<SandboxLimits>,
    pub(crate) host_calls_left: u32,
    pub(crate) memory: MemoryLimiter,
    /// The last message the plugin logged at error level: a `prepare` that traps after one
    /// refused its configuration with that reason (`palisade_sdk::config::refuse`).
    pub(crate) last_error_log: Option<String>,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl HostState {
    pub(crate) fn new(
        env: Arc<AppEnvironment>,
        plugin: Arc<PluginGrant>,
        limits: Arc<SandboxLimits>,
    ) -> HostState {
        HostState {
            memory: MemoryLimiter {
                max_bytes: limits.memory_bytes,
                exceeded: false,
            },
            host_calls_left: limits.host_calls,
            last_error_log: None,
            env,
            plugin,
            limits,
            wasi: deny_all_wasi(),
            table: ResourceTable::new(),
        }
    }

    /// Resets the per-call budgets before each call on a warm instance.
    pub(crate) fn begin_call(&mut self) {
        self.host_calls_left = self.limits.host_calls;
        self.memory.exceeded = false;
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Caps linear memories and tables, and remembers when a plugin hit the cap so that the
/// resulting trap (Rust guests abort on allocation failure) is reported as memory
/// exhaustion rather than an anonymous crash.
pub(crate) struct MemoryLimiter {
    max_bytes: usize,
    pub(crate) exceeded: bool,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.exceeded = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Table elements are pointer-sized; the same byte cap bounds them.
        if desired.saturating_mul(8) > self.max_bytes {
            self.exceeded = true;
            return Ok(false);
        }
        Ok(true)
    }
}

/// A WASI context that grants nothing: no preopened directories, no network (TCP, UDP and
/// name look-up off, every address refused), no environment, no arguments, empty stdin,
/// discarded stdout and stderr, and clocks frozen at the epoch, so the request time the host
/// passes in is the only time a plugin knows. Randomness stays: Rust's std needs it for hash
/// seeds, and it reveals nothing about the gateway.
fn deny_all_wasi() -> WasiCtx {
    let mut builder = WasiCtxBuilder::new();
    builder
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }))
        .wall_clock(FrozenClock)
        .monotonic_clock(FrozenClock);
    builder.build()
}

struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }

    fn now(&self) -> u64 {
        0
    }
}
