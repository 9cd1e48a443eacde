//! What a plugin's store holds: its application's environment, its own grant, the budgets
//! of the current call, and the table of the WASI handles it holds (the deny-all WASI host
//! itself has no state: `wasi/mod.rs`).

use std::sync::Arc;

use wasmtime::component::ResourceTable;

use super::capabilities::{AppKeys, Capabilities, Capability, GroupDirectory, KvNamespace};
use super::limits::SandboxLimits;

/// One application's segregated security environment (SER-024): the state its plugins share
/// and no other application can reach.
pub struct AppEnvironment {
    /// The name.
    pub name: String,
    /// Its key-value store.
    pub kv: KvNamespace,
    /// Its groups.
    pub groups: GroupDirectory,
    /// Its keys.
    pub keys: Arc<dyn AppKeys>,
}

/// What one plugin of one application was granted.
pub struct PluginGrant {
    /// The application.
    pub app: String,
    pub name: String,
    /// The plugin's configuration document (JSON), handed over by `config.get`.
    pub config_json: Arc<str>,
    /// What it was granted.
    pub capabilities: Capabilities,
}

/// Why the host ended a call with a trap of its own making.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxTrap {
    /// The plugin made more host calls in one call than its budget.
    #[error(
        "the plugin made more than {limit} host calls in one call (host-call budget exhausted)"
    )]
    HostCallBudget {
        /// The budget.
        limit: u32,
    },
    /// The plugin used a capability it was not granted.
    #[error("the plugin used the `{0}` capability, which this application did not grant it")]
    CapabilityDenied(Capability),
    /// The plugin waited for something only time or outside I/O could bring ({0}): nothing
    /// in the deny-all sandbox ever becomes ready later, and a host thread must never block
    /// where the epoch deadline cannot reach it (see `wasi/mod.rs`).
    #[error("the plugin would block {0}; the sandbox has nothing to wait for")]
    WouldBlock(&'static str),
    /// One `wasi:random` call asked for more bytes than the host makes in one go, or the
    /// call's random-byte budget ran out (see `wasi/mod.rs`).
    #[error(
        "the plugin asked for {requested} random bytes with {left} left of its random-byte \
         budget ({per_request} per request, {per_call} per call)"
    )]
    RandomBudget {
        /// Bytes asked for.
        requested: u64,
        /// Bytes left of the call's budget.
        left: usize,
        /// Most bytes one request may ask for.
        per_request: usize,
        /// The call's budget.
        per_call: usize,
    },
    /// The plugin held more WASI resource handles than its instance may.
    #[error(
        "the plugin tried to hold more than {limit} WASI resource handles at once \
         (resource-handle limit)"
    )]
    ResourceHandles {
        /// The limit.
        limit: usize,
    },
}

/// Random bytes one `wasi:random` call may ask for: the host makes them before the plugin
/// sees any, outside the epoch deadline's reach, so one call must stay short. Seeds, keys and
/// nonces are tens of bytes; wasi-libc's `getentropy` asks for at most 256.
pub(crate) const RANDOM_BYTES_PER_REQUEST: usize = 4 << 10;

/// Random bytes all `wasi:random` calls of one plugin call may ask for together.
pub(crate) const RANDOM_BYTES_PER_CALL: usize = 64 << 10;

/// Bytes of stdout and stderr one plugin call may write. Both are sinks in the deny-all
/// context: nothing written is kept or buffered. Past this, writes are dropped without even
/// reaching the sink and counted (`palisade_plugin_output_dropped_bytes_total`), so a plugin
/// flooding its output shows up in metrics; the host-call budget ends the flood itself.
pub(crate) const OUTPUT_BYTES_PER_CALL: usize = 64 << 10;

/// Core memories and tables one instance may create, as many as the pooling allocator
/// reserves per component (`engine/config.rs`), so that the on-demand allocator (used when
/// the pool cannot be reserved) holds plugins to the same shape.
const MEMORIES_PER_INSTANCE: usize = 4;
const TABLES_PER_INSTANCE: usize = 8;

/// The data of a plugin's store.
pub struct HostState {
    pub(crate) env: Arc<AppEnvironment>,
    pub(crate) plugin: Arc<PluginGrant>,
    pub(crate) limits: Arc<SandboxLimits>,
    pub(crate) host_calls_left: u32,
    pub(crate) memory: MemoryLimiter,
    /// Random bytes this call may still ask for.
    pub(super) random_left: usize,
    /// Bytes of stdout and stderr this call may still write before writes are dropped.
    pub(super) output_left: usize,
    /// The last message the plugin logged at error level: a `prepare` that traps after one
    /// refused its configuration with that reason (`palisade_sdk::config::refuse`).
    pub(crate) last_error_log: Option<String>,
    /// The WASI handles the plugin holds (streams, pollables, the network handle), at most
    /// the resource-handle cap.
    pub(super) table: ResourceTable,
}

impl HostState {
    pub(crate) fn new(
        env: Arc<AppEnvironment>,
        plugin: Arc<PluginGrant>,
        limits: Arc<SandboxLimits>,
    ) -> HostState {
        let mut table = ResourceTable::new();
        table.set_max_capacity(limits.resource_handles);
        HostState {
            memory: MemoryLimiter::new(limits.memory_bytes),
            host_calls_left: limits.host_calls,
            random_left: RANDOM_BYTES_PER_CALL,
            output_left: OUTPUT_BYTES_PER_CALL,
            last_error_log: None,
            env,
            plugin,
            limits,
            table,
        }
    }

    /// Resets the per-call budgets before each call on a warm instance.
    pub(crate) fn begin_call(&mut self) {
        self.host_calls_left = self.limits.host_calls;
        self.random_left = RANDOM_BYTES_PER_CALL;
        self.output_left = OUTPUT_BYTES_PER_CALL;
        self.memory.exceeded = false;
    }

    /// Spends one host call; the error becomes a trap.
    pub(crate) fn spend_host_call(&mut self) -> wasmtime::Result<()> {
        if self.host_calls_left == 0 {
            return Err(wasmtime::Error::new(SandboxTrap::HostCallBudget {
                limit: self.limits.host_calls,
            }));
        }
        self.host_calls_left -= 1;
        Ok(())
    }
}

/// Caps the memory of one instance: all its linear memories and tables together, however
/// many the component declares, under one byte limit (a component with four core memories
/// gets the same total as one with one). It remembers when a plugin hit the cap so that the
/// resulting trap (Rust guests abort on allocation failure) is reported as memory exhaustion
/// rather than an anonymous crash.
///
/// Several memories are capped, not refused: components composed from several (with `wac`
/// or `wasm-tools compose`) have one memory per part, and with the total capped a second
/// memory gains an attacker nothing a bigger first one would not.
pub(crate) struct MemoryLimiter {
    max_bytes: usize,
    /// Bytes the instance's memories and tables hold now. They never shrink, and the store
    /// lives exactly as long as the instance. A growth the limiter allowed that then failed
    /// (an mmap error) stays counted: wasmtime also reports failures that were never
    /// allowed here, so giving bytes back could be played to grow past the cap.
    used_bytes: usize,
    pub(crate) exceeded: bool,
}

/// Table elements are pointer-sized; the memory cap bounds them at this many bytes each.
const TABLE_ELEMENT_BYTES: usize = 8;

impl MemoryLimiter {
    fn new(max_bytes: usize) -> MemoryLimiter {
        MemoryLimiter {
            max_bytes,
            used_bytes: 0,
            exceeded: false,
        }
    }

    /// Grows the instance's total by the growth of one memory or table from `current` to
    /// `desired` bytes (`current` is 0 when it is created), if the total stays within the
    /// cap. A growth past the memory's or table's own declared maximum would fail anyway: it
    /// is refused without counting as hitting the cap.
    fn grow(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> bool {
        if maximum.is_some_and(|maximum| desired > maximum) {
            return false;
        }
        let growth = desired.saturating_sub(current);
        match self.used_bytes.checked_add(growth) {
            Some(total) if total <= self.max_bytes => {
                self.used_bytes = total;
                true
            }
            _ => {
                self.exceeded = true;
                false
            }
        }
    }

    /// Bytes the instance's memories and tables hold now.
    #[cfg(test)]
    fn used_bytes(&self) -> usize {
        self.used_bytes
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.grow(current, desired, maximum))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.grow(
            current.saturating_mul(TABLE_ELEMENT_BYTES),
            desired.saturating_mul(TABLE_ELEMENT_BYTES),
            maximum.map(|maximum| maximum.saturating_mul(TABLE_ELEMENT_BYTES)),
        ))
    }

    fn memories(&self) -> usize {
        MEMORIES_PER_INSTANCE
    }

    fn tables(&self) -> usize {
        TABLES_PER_INSTANCE
    }
}

#[cfg(test)]
mod tests {
    use wasmtime::ResourceLimiter;

    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn memories_are_capped_in_total_not_each() {
        let mut limiter = MemoryLimiter::new(16 * MIB);
        // Four memories created at 4 MiB each fill the cap exactly...
        for _ in 0..4 {
            assert!(limiter.memory_growing(0, 4 * MIB, None).unwrap());
        }
        assert_eq!(limiter.used_bytes(), 16 * MIB);
        assert!(!limiter.exceeded);
        // ...and no memory may then grow by a single page, though each is far below the cap.
        assert!(!limiter
            .memory_growing(4 * MIB, 4 * MIB + 65536, None)
            .unwrap());
        assert!(limiter.exceeded);
        assert_eq!(limiter.used_bytes(), 16 * MIB);
    }

    #[test]
    fn tables_count_against_the_same_cap() {
        let mut limiter = MemoryLimiter::new(MIB);
        assert!(limiter.memory_growing(0, MIB / 2, None).unwrap());
        // 65,536 elements of 8 bytes are 512 KiB: exactly what is left.
        assert!(limiter.table_growing(0, 65_536, None).unwrap());
        assert!(!limiter.table_growing(65_536, 65_537, None).unwrap());
        assert!(limiter.exceeded);
    }

    #[test]
    fn a_growth_past_the_declared_maximum_is_refused_without_counting() {
        let mut limiter = MemoryLimiter::new(MIB);
        assert!(!limiter.memory_growing(0, 2 * 65536, Some(65536)).unwrap());
        assert!(!limiter.exceeded, "the type's own limit is not the cap");
        assert!(limiter.memory_growing(0, 65536, Some(65536)).unwrap());
        // A failure wasmtime reports afterwards gives nothing back.
        limiter
            .memory_grow_failed(wasmtime::format_err!("memory growth exceeds the type"))
            .unwrap();
        assert_eq!(limiter.used_bytes(), 65536);
    }

    #[test]
    fn absurd_sizes_are_refused_not_wrapped() {
        let mut limiter = MemoryLimiter::new(MIB);
        assert!(limiter.memory_growing(0, MIB, None).unwrap());
        assert!(!limiter.memory_growing(0, usize::MAX, None).unwrap());
        assert!(!limiter.table_growing(0, usize::MAX, None).unwrap());
        assert_eq!(limiter.used_bytes(), MIB);
    }
}
