//! Engine knobs. Each one is documented here, where it is defined, with its cost and default.

use std::path::PathBuf;
use std::time::Duration;

use wasmtime::{Enabled, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

/// How the process-wide engine is built. Per-application limits (memory cap, deadline,
/// host-call budget) live in [`crate::sandbox::SandboxLimits`]; the values here bound them.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct EngineConfig {
    /// How often the epoch ticker advances the engine's epoch. Deadlines are measured in
    /// ticks, so this is their resolution: a plugin may overrun its deadline by up to one tick.
    /// Cost: one thread waking this often. Default: 1 ms.
    pub epoch_tick: Duration,

    /// Live instances the pooling allocator reserves slots for (warm instances plus calls in
    /// flight, across all applications). Cost: address space (not memory) for each slot's
    /// linear memory reservation; resident memory grows only with what plugins touch.
    /// Idle warm instances take slots too, but at most [`EngineConfig::max_idle_instances`]
    /// of them; when the pool is exhausted all the same, instantiation gives idle instances
    /// back (least recently used first) and tries again. Only when every slot runs a call
    /// does instantiation fail and the call is denied (fail-closed). Must be at least 1.
    /// Default: 2,000.
    pub pool_instances: u32,

    /// Most idle warm instances kept across all applications (each application's plugins
    /// keep at most [`crate::sandbox::SandboxLimits`]'s `warm_instances` each, within this).
    /// When a call gives an instance back and the budget is full, the application used least
    /// recently gives one of its idle instances up: its next call instantiates afresh
    /// (a few microseconds), so any number of applications all decide, and no application's
    /// call fails because others hold instances. Instances running a call are never taken.
    ///
    /// `None`: three quarters of [`EngineConfig::pool_instances`] (1,500 by default),
    /// leaving the rest of the pool to calls in flight and fresh-per-request instances. A
    /// value above `pool_instances` is lowered to it (also with on-demand allocation, where
    /// it still bounds the memory idle instances hold).
    /// Cost: the resident memory of that many idle instances (what each plugin touched,
    /// tens to hundreds of KiB for a Rust plugin, megabytes for an interpreter inside);
    /// a smaller budget costs applications beyond it an instantiation per call.
    /// Default: `None`.
    pub max_idle_instances: Option<u32>,

    /// The ceiling of every application's memory cap ([`crate::sandbox::SandboxLimits`]'s
    /// `memory_bytes`): the most memory one plugin instance can ever hold, whatever an
    /// application asks for. The gateway refuses to start with an app configured above it
    /// (`[engine] max_memory_bytes`, [`EngineSettings`]); an embedder's larger cap is
    /// lowered to it, with a warning. Plugins that carry an interpreter (Python through
    /// `componentize-py`, JavaScript through `componentize-js`) need 12–16 MiB idle and
    /// more with every library they import, so the default leaves them room.
    ///
    /// Cost: none in address space up to 4 GiB (the pooling allocator reserves 4 GiB plus
    /// guard pages per slot for any 32-bit memory anyway); the ceiling is what bounds the
    /// resident memory the gateway may need, up to `pool_instances` × this in the worst case
    /// (every live instance at its cap). Must be between 64 KiB (one WebAssembly page) and
    /// [`MAX_MEMORY_CEILING`] (4 GiB, the most a 32-bit linear memory addresses).
    /// Default: 64 MiB.
    pub max_memory_bytes: usize,

    /// The most native stack a plugin may use before a stack-overflow trap (deep recursion
    /// ends here, not in the host). Default: 512 KiB.
    pub max_wasm_stack: usize,

    /// Where precompiled artifacts are kept between runs. `None` compiles every plugin at
    /// every start. Cost: the artifacts' size on disk (a few times the .wasm size).
    /// Default: none; `palisade serve` sets one under its data folder.
    pub cache_dir: Option<PathBuf>,

    /// Bytes of a released instance slot's linear memory that are restored in place (and
    /// stay resident) rather than unmapped, so the next instance in the slot does not fault
    /// them in again; with PAGEMAP_SCAN (Linux 6.7+) only the pages actually written count.
    /// This is what makes a fresh instance per request cost an instantiation and no page
    /// faults. Cost: up to this much resident memory per used idle slot. Default: 256 KiB.
    pub keep_resident_bytes: usize,

    /// Cranelift optimisation. `Speed` costs compile time (tens of milliseconds per plugin,
    /// paid once thanks to the cache) and pays back on every decision. Default: `Speed`.
    pub opt_level: OptLevel,

    /// Where modules are compiled: a helper process under [`EngineConfig::compile_limits`],
    /// or in this process (unsafe against hostile modules). Default: the helper when the
    /// program registered one ([`super::set_default_helper`]; the `palisade` binary does),
    /// otherwise in-process.
    pub compiler: super::Compiler,

    /// CPU time, memory and wall-clock limits of one compilation in the helper.
    /// Default: [`super::CompileLimits::default`] (1 GiB, 60 s CPU, 120 s wall).
    pub compile_limits: super::CompileLimits,

    /// Structural bounds every module must meet before it is compiled (or loaded from the
    /// cache). The pool's per-component memory, table and core-instance counts are taken
    /// from here too, so a module the pool cannot instantiate is refused at load.
    pub module_limits: super::ModuleLimits,
}

/// Setters, one per knob, for building a configuration in one expression
/// (`EngineConfig::default().pool_instances(16)`): each knob's meaning, default and cost are
/// documented on its field.
impl EngineConfig {
    /// Sets [`EngineConfig::epoch_tick`].
    pub fn epoch_tick(mut self, epoch_tick: Duration) -> EngineConfig {
        self.epoch_tick = epoch_tick;
        self
    }

    /// Sets [`EngineConfig::pool_instances`].
    pub fn pool_instances(mut self, pool_instances: u32) -> EngineConfig {
        self.pool_instances = pool_instances;
        self
    }

    /// Sets [`EngineConfig::max_idle_instances`].
    pub fn max_idle_instances(mut self, max_idle_instances: Option<u32>) -> EngineConfig {
        self.max_idle_instances = max_idle_instances;
        self
    }

    /// Sets [`EngineConfig::max_memory_bytes`].
    pub fn max_memory_bytes(mut self, max_memory_bytes: usize) -> EngineConfig {
        self.max_memory_bytes = max_memory_bytes;
        self
    }

    /// Sets [`EngineConfig::max_wasm_stack`].
    pub fn max_wasm_stack(mut self, max_wasm_stack: usize) -> EngineConfig {
        self.max_wasm_stack = max_wasm_stack;
        self
    }

    /// Sets [`EngineConfig::cache_dir`].
    pub fn cache_dir(mut self, cache_dir: Option<PathBuf>) -> EngineConfig {
        self.cache_dir = cache_dir;
        self
    }

    /// Sets [`EngineConfig::keep_resident_bytes`].
    pub fn keep_resident_bytes(mut self, keep_resident_bytes: usize) -> EngineConfig {
        self.keep_resident_bytes = keep_resident_bytes;
        self
    }

    /// Sets [`EngineConfig::opt_level`].
    pub fn opt_level(mut self, opt_level: OptLevel) -> EngineConfig {
        self.opt_level = opt_level;
        self
    }

    /// Sets [`EngineConfig::compiler`].
    pub fn compiler(mut self, compiler: super::Compiler) -> EngineConfig {
        self.compiler = compiler;
        self
    }

    /// Sets [`EngineConfig::compile_limits`].
    pub fn compile_limits(mut self, compile_limits: super::CompileLimits) -> EngineConfig {
        self.compile_limits = compile_limits;
        self
    }

    /// Sets [`EngineConfig::module_limits`].
    pub fn module_limits(mut self, module_limits: super::ModuleLimits) -> EngineConfig {
        self.module_limits = module_limits;
        self
    }
}

/// The highest [`EngineConfig::max_memory_bytes`]: 4 GiB, the most a 32-bit WebAssembly
/// linear memory can address. A ceiling above it could never be reached by a plugin.
pub const MAX_MEMORY_CEILING: usize = 4 << 30;

/// The lowest [`EngineConfig::max_memory_bytes`]: one WebAssembly page, below which no plugin
/// can be instantiated at all.
pub const MIN_MEMORY_CEILING: usize = 64 << 10;

/// The gateway config's `[engine]` table: the knobs of the process-wide engine an operator
/// may need to change.
///
/// ```toml
/// [engine]
/// max_memory_bytes = 134217728   # 128 MiB: room for apps whose plugins are in Python
/// pool_instances = 2000          # instance slots (idle warm instances plus calls in flight)
/// max_idle_instances = 1500      # idle warm instances across all apps (default: 3/4 of the pool)
/// ```
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSettings {
    /// [`EngineConfig::max_memory_bytes`]: the ceiling of every app's `limits.memory_bytes`.
    /// From 64 KiB to 4 GiB. Default: 64 MiB.
    pub max_memory_bytes: usize,
    /// [`EngineConfig::pool_instances`]: instance slots reserved up front, for idle warm
    /// instances and calls in flight across all apps. From 1 to [`MAX_POOL_INSTANCES`].
    /// Cost: address space per slot (a 4 GiB reservation each, not memory). Default: 2,000.
    pub pool_instances: u32,
    /// [`EngineConfig::max_idle_instances`]: idle warm instances kept across all apps; the
    /// least recently used app gives one up when it is full. At most `pool_instances`.
    /// Cost: the resident memory of that many idle instances. Default: absent, three
    /// quarters of `pool_instances`.
    pub max_idle_instances: Option<u32>,
}

/// The most instance slots [`EngineSettings::pool_instances`] accepts: each reserves 4 GiB
/// of address space plus guard pages, and 65,536 of them are about half of a 47-bit user
/// address space. (An embedder asking more of [`EngineConfig`] gets on-demand allocation
/// where the reservation fails.)
pub const MAX_POOL_INSTANCES: u32 = 1 << 16;

impl Default for EngineSettings {
    fn default() -> Self {
        let engine = EngineConfig::default();
        EngineSettings {
            max_memory_bytes: engine.max_memory_bytes,
            pool_instances: engine.pool_instances,
            max_idle_instances: engine.max_idle_instances,
        }
    }
}

impl EngineSettings {
    /// Why these settings cannot be used, if they cannot: a ceiling no plugin fits under,
    /// or one above what a 32-bit memory can address.
    pub fn problem(&self) -> Option<String> {
        let ceiling = self.max_memory_bytes;
        if ceiling < MIN_MEMORY_CEILING {
            Some(format!(
                "max_memory_bytes = {ceiling} is below one WebAssembly page ({MIN_MEMORY_CEILING}): no plugin could run"
            ))
        } else if ceiling > MAX_MEMORY_CEILING {
            Some(format!(
                "max_memory_bytes = {ceiling} is above {MAX_MEMORY_CEILING} (4 GiB), the most a 32-bit WebAssembly memory can address"
            ))
        } else if self.pool_instances == 0 || self.pool_instances > MAX_POOL_INSTANCES {
            Some(format!(
                "pool_instances = {} is outside 1 to {MAX_POOL_INSTANCES}: no plugin could run without a slot, and more slots than that do not fit in the address space",
                self.pool_instances
            ))
        } else {
            match self.max_idle_instances {
                Some(idle) if idle > self.pool_instances => Some(format!(
                    "max_idle_instances = {idle} is above pool_instances = {}: idle instances take pool slots, so at most every slot can be idle",
                    self.pool_instances
                )),
                _ => None,
            }
        }
    }

    /// Writes these settings into an engine configuration.
    pub fn apply(&self, config: &mut EngineConfig) {
        config.max_memory_bytes = self.max_memory_bytes;
        config.pool_instances = self.pool_instances;
        config.max_idle_instances = self.max_idle_instances;
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            epoch_tick: Duration::from_millis(1),
            pool_instances: 2_000,
            max_idle_instances: None,
            max_memory_bytes: 64 << 20,
            max_wasm_stack: 512 << 10,
            cache_dir: None,
            keep_resident_bytes: 256 << 10,
            opt_level: OptLevel::Speed,
            compiler: super::Compiler::default(),
            compile_limits: super::CompileLimits::default(),
            module_limits: super::ModuleLimits::default(),
        }
    }
}

impl EngineConfig {
    /// The idle warm-instance budget [`EngineConfig::max_idle_instances`] stands for.
    pub(super) fn idle_budget(&self) -> usize {
        let pool = self.pool_instances as usize;
        match self.max_idle_instances {
            Some(budget) => (budget as usize).min(pool),
            None => pool.saturating_mul(3) / 4,
        }
    }

    /// The wasmtime configuration, with or without the pooling allocator.
    pub(super) fn wasmtime_config(&self, pooling: bool) -> wasmtime::Config {
        let mut config = wasmtime::Config::new();
        config
            .wasm_component_model(true)
            // Deadlines without the cost of fuel: a check at loop headers and function
            // entries against an epoch counter the ticker advances (SER-001).
            .epoch_interruption(true)
            .max_wasm_stack(self.max_wasm_stack)
            // Instantiation maps the module's data as a copy-on-write image instead of
            // copying it, which is most of what makes a fresh instance per request cheap.
            .memory_init_cow(true)
            .cranelift_opt_level(self.opt_level)
            .parallel_compilation(true);
        if pooling {
            let mut pool = PoolingAllocationConfig::default();
            // A Rust component for wasm32-wasip2 holds a handful of core instances (the
            // program plus the canonical-ABI shims), one memory and a few tables.
            pool.total_component_instances(self.pool_instances)
                .total_core_instances(self.pool_instances.saturating_mul(8))
                .total_memories(self.pool_instances.saturating_mul(2))
                .total_tables(self.pool_instances.saturating_mul(4))
                .max_memory_size(self.max_memory_bytes)
                .max_core_instances_per_component(self.module_limits.max_core_instances)
                .max_memories_per_component(self.module_limits.max_memories)
                .max_tables_per_component(self.module_limits.max_tables)
                .max_memories_per_module(self.module_limits.max_memories_per_module)
                .max_tables_per_module(self.module_limits.max_tables_per_module)
                // When a slot is released, find the pages the instance wrote (Linux
                // PAGEMAP_SCAN, kernel 6.7+; elsewhere the lowest addresses are assumed) and
                // copy the original contents back into up to this many bytes of them instead
                // of unmapping them: the next instance in the slot, typically the next fresh
                // instance of the same plugin, then takes no page faults. A Rust guest writes
                // its stack (just below 1 MiB), its data and its heap, so the written pages
                // are scattered: without the scan, ~5 page faults per fresh instance.
                // Cost: up to this much resident memory per idle slot that was used.
                .pagemap_scan(Enabled::Auto)
                .linear_memory_keep_resident(self.keep_resident_bytes)
                .table_keep_resident(16 << 10);
            // No execution stacks are reserved: they are for async calls, which wasmtime is
            // built without (its `async` feature is off since the sandbox's WASI host is
            // synchronous), so the pool has none to reserve; they cost one `mprotect`
            // apiece, ~10 % of a cached gateway start when wasmtime-wasi turned them on.
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        config
    }
}
