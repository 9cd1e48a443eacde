//! The process-wide WebAssembly engine.
//!
//! One [`Engine`] compiles and runs every plugin of every application. It owns the wasmtime
//! engine (component model, pooling allocator, epoch interruption, copy-on-write memory
//! images), the epoch ticker thread that turns per-call deadlines into traps (SER-001), and the
//! precompiled-artifact cache. Untrusted modules reach the compiler only through
//! [`Engine::compile`] and [`Engine::compile_keyed`], which check them against
//! [`ModuleLimits`] first and then compile them where [`EngineConfig::compiler`] says: by
//! default for the `palisade` binary, a helper process under [`CompileLimits`] (issue #12.1).

mod cache;
mod compiler;
mod config;
mod limits;
mod warm;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

pub use cache::{ArtifactCache, CacheError};
pub use compiler::{
    run_helper, set_default_helper, CompileLimits, CompileSettings, Compiler, HelperError,
    HELPER_ARG,
};
pub use config::{
    EngineConfig, EngineSettings, MAX_MEMORY_CEILING, MAX_POOL_INSTANCES, MIN_MEMORY_CEILING,
};
pub use limits::{ModuleLimits, ModuleRefusal};
pub(crate) use warm::{Evicted, IdleSet, WarmLink, WarmRegistry};

/// An error from wasmtime or the OS, kept as the source of a Palisade error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why the engine could not be built or a component could not be compiled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// wasmtime refused the configuration, or a part of the engine could not be started.
    #[error("the WebAssembly engine could not be configured: {what}")]
    Configure {
        /// What was being configured.
        what: &'static str,
        /// wasmtime's or the OS's error.
        #[source]
        source: BoxError,
    },
    /// wasmtime could not compile the bytes as a component.
    #[error("the file is not a WebAssembly component")]
    NotAComponent(#[source] BoxError),
    /// Refused before compilation: over a [`ModuleLimits`] bound, or not a component.
    #[error(transparent)]
    Refused(#[from] ModuleRefusal),
    /// The compile helper produced no artifact (a limit, or the compiler's own refusal).
    #[error(transparent)]
    Helper(#[from] HelperError),
    /// The artifact cache failed.
    #[error("the precompiled-artifact cache failed")]
    Cache(#[from] CacheError),
}

/// The allocation strategy the engine ended up with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Allocation {
    /// Instances come from pre-reserved slots: instantiation is a few microseconds.
    Pooling,
    /// The address space for the pool could not be reserved (e.g. a restrictive
    /// `ulimit -v`); instances are allocated on demand, which is slower but works.
    OnDemand,
}

/// The engine shared by every sandbox in the process. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    wasmtime: wasmtime::Engine,
    config: EngineConfig,
    allocation: Allocation,
    cache: Option<ArtifactCache>,
    warm: Arc<WarmRegistry>,
    ticker_stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

impl Drop for EngineInner {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
        if let Some(ticker) = self.ticker.take() {
            let _ = ticker.join();
        }
    }
}

/// A compiled plugin component and the SHA-256 of the bytes it was compiled from.
#[derive(Clone)]
pub struct CompiledComponent {
    /// The compiled component.
    pub component: Component,
    /// SHA-256 of the bytes it was compiled from (its cache and registry key).
    pub sha256: [u8; 32],
    /// Its type-checked pre-instantiations, shared by every clone: the applications of a
    /// gateway that run one module type-check it once, not once each.
    pub(crate) pres: crate::sandbox::SharedPres,
}

impl CompiledComponent {
    /// A compiled component with nothing type-checked yet.
    pub fn new(component: Component, sha256: [u8; 32]) -> CompiledComponent {
        CompiledComponent {
            component,
            sha256,
            pres: Default::default(),
        }
    }
}

impl Engine {
    /// Builds the engine and starts its epoch ticker.
    ///
    /// The pooling allocator reserves address space for `config.pool_instances` instances up
    /// front; where that reservation fails the engine falls back to on-demand allocation and
    /// says so in [`Engine::allocation`] and the log.
    pub fn new(config: EngineConfig) -> Result<Engine, EngineError> {
        let (wasmtime, allocation) = match wasmtime::Engine::new(&config.wasmtime_config(true)) {
            Ok(engine) => (engine, Allocation::Pooling),
            Err(pool_error) => {
                tracing::warn!(
                    error = %pool_error,
                    "the pooling allocator could not reserve its address space; allocating instances on demand"
                );
                let engine =
                    wasmtime::Engine::new(&config.wasmtime_config(false)).map_err(|error| {
                        EngineError::Configure {
                            what: "the engine settings",
                            source: error.into(),
                        }
                    })?;
                (engine, Allocation::OnDemand)
            }
        };
        let cache = match &config.cache_dir {
            Some(dir) => Some(ArtifactCache::open(dir, &wasmtime)?),
            None => None,
        };
        let warm = Arc::new(WarmRegistry::new(config.idle_budget()));
        let ticker_stop = Arc::new(AtomicBool::new(false));
        let ticker = spawn_ticker(wasmtime.weak(), config.epoch_tick, ticker_stop.clone())
            .map_err(|error| EngineError::Configure {
                what: "the epoch ticker",
                source: error.into(),
            })?;
        Ok(Engine {
            inner: Arc::new(EngineInner {
                wasmtime,
                config,
                allocation,
                cache,
                warm,
                ticker_stop,
                ticker: Some(ticker),
            }),
        })
    }

    /// The underlying wasmtime engine.
    pub fn wasmtime(&self) -> &wasmtime::Engine {
        &self.inner.wasmtime
    }

    /// The configuration the engine was built with.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// Whether instances come from the pool or are allocated on demand.
    pub fn allocation(&self) -> Allocation {
        self.inner.allocation
    }

    /// The engine-wide budget of idle warm instances (see `warm.rs`).
    pub(crate) fn warm(&self) -> &Arc<WarmRegistry> {
        &self.inner.warm
    }

    /// Idle warm instances kept now, across every application
    /// (at most [`EngineConfig::max_idle_instances`]).
    pub fn idle_instances(&self) -> usize {
        self.inner.warm.idle()
    }

    /// Idle warm instances given up so far, least recently used first, to keep
    /// [`EngineConfig::max_idle_instances`] or to make room in an exhausted pool.
    pub fn evicted_instances(&self) -> u64 {
        self.inner.warm.evictions()
    }

    /// The directory of the precompiled-artifact cache, if one is configured.
    pub fn cache_dir(&self) -> Option<PathBuf> {
        self.inner.config.cache_dir.clone()
    }

    /// Turns a wall-clock budget into epoch ticks for [`wasmtime::Store::set_epoch_deadline`].
    /// Rounds up, and never below one tick, so a deadline can never be zero.
    pub fn deadline_ticks(&self, budget: Duration) -> u64 {
        let tick = self.inner.config.epoch_tick.as_nanos().max(1);
        (budget.as_nanos().div_ceil(tick) as u64).max(1)
    }

    /// Compiles a component, or loads its precompiled artifact from the cache after checking
    /// the artifact's integrity (SER-013). Bytes that are not a component are refused before
    /// anything is compiled.
    pub fn compile(&self, bytes: &[u8]) -> Result<CompiledComponent, EngineError> {
        let sha256: [u8; 32] = Sha256::digest(bytes).into();
        let component = self.compile_keyed(&sha256, bytes)?;
        Ok(CompiledComponent::new(component, sha256))
    }

    /// The cached artifact stored under `key`, if there is one and it is intact. A bad
    /// artifact is discarded (and logged): the caller rebuilds it from authoritative bytes.
    pub fn cached(&self, key: &[u8; 32]) -> Option<Component> {
        let cache = self.inner.cache.as_ref()?;
        match cache.load(&self.inner.wasmtime, key) {
            Ok(found) => found,
            // A bad artifact is discarded and rebuilt from the module bytes, which are
            // authoritative; the event is logged for the operator (SER-013).
            Err(error) => {
                tracing::warn!(error = %palisade_types::Chain(&error), "recompiling a plugin from its module bytes");
                None
            }
        }
    }

    /// Compiles `bytes`, caching the artifact under `key` rather than under the bytes' own
    /// hash. Used for components derived from a module (a pre-initialised snapshot), whose
    /// bytes are not known until they are made: the key is derived from what they are made
    /// of, so a restart finds them without making them again.
    ///
    /// The module is checked against [`EngineConfig::module_limits`] even when its artifact
    /// is cached: the limits may have been lowered since it was compiled.
    pub fn compile_keyed(&self, key: &[u8; 32], bytes: &[u8]) -> Result<Component, EngineError> {
        self.inner.config.module_limits.check_component(bytes)?;
        if let Some(component) = self.cached(key) {
            return Ok(component);
        }
        let config = &self.inner.config;
        match &config.compiler {
            Compiler::InProcess => {
                let component = Component::new(&self.inner.wasmtime, bytes)
                    .map_err(|error| EngineError::NotAComponent(error.into()))?;
                if let Some(cache) = &self.inner.cache {
                    // A cache that cannot be written only costs the next boot a compile.
                    if let Err(error) = cache.store(&component, key) {
                        tracing::warn!(error = %palisade_types::Chain(&error), "could not store a precompiled artifact");
                    }
                }
                Ok(component)
            }
            Compiler::Helper(program) => {
                let args = compiler::helper_args(config.opt_level, config.max_wasm_stack);
                let artifact =
                    compiler::compile_in_helper(program, &args, bytes, &config.compile_limits)?;
                self.load_artifact(key, &artifact)
            }
        }
    }

    /// Loads an artifact the compile helper made: checked to be a component artifact of this
    /// engine's configuration (wasmtime checks the format, version and every setting that
    /// affects compiled code before using it), then cached under the MAC like any other.
    fn load_artifact(&self, key: &[u8; 32], artifact: &[u8]) -> Result<Component, EngineError> {
        if wasmtime::Engine::detect_precompiled(artifact) != Some(wasmtime::Precompiled::Component)
        {
            return Err(
                HelperError::Failed("its output is not a precompiled component".into()).into(),
            );
        }
        // SAFETY: the artifact was just made by our own helper from these module bytes with
        // this engine's settings (checked again by wasmtime here); it never sat where anyone
        // else could change it. The helper is trusted like an in-process compile.
        let component =
            unsafe { Component::deserialize(&self.inner.wasmtime, artifact) }.map_err(|error| {
                HelperError::Failed(format!("its artifact does not load: {error:#}"))
            })?;
        if let Some(cache) = &self.inner.cache {
            if let Err(error) = cache.store_artifact(artifact, key) {
                tracing::warn!(error = %palisade_types::Chain(&error), "could not store a precompiled artifact");
            }
        }
        Ok(component)
    }
}

/// The epoch ticker: advances the engine's epoch every `tick` so that a plugin stuck in a
/// loop traps at its deadline (SER-001). It holds only a weak reference so that dropping the
/// last [`Engine`] ends it.
fn spawn_ticker(
    engine: wasmtime::EngineWeak,
    tick: Duration,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("palisade-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(tick);
                match engine.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine_with_cache(dir: &std::path::Path) -> Engine {
        Engine::new(EngineConfig {
            cache_dir: Some(dir.to_path_buf()),
            pool_instances: 8,
            ..EngineConfig::default()
        })
        .unwrap()
    }

    fn artifact(dir: &std::path::Path) -> PathBuf {
        let folder = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .find(|path| path.is_dir())
            .expect("a per-engine folder");
        std::fs::read_dir(folder)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .find(|path| path.extension().is_some_and(|ext| ext == "cwasm"))
            .expect("an artifact")
    }

    #[test]
    fn artifacts_are_cached_and_checked_before_loading() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = palisade_artifacts::ACP;
        let first = engine_with_cache(dir.path()).compile(bytes).unwrap();
        let stored = artifact(dir.path());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("cache.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "the cache key is private");
        }

        // A second engine (a restart) loads the artifact instead of compiling.
        let engine = engine_with_cache(dir.path());
        let cache = engine.inner.cache.as_ref().unwrap();
        assert!(cache
            .load(engine.wasmtime(), &first.sha256)
            .unwrap()
            .is_some());

        // One changed byte in the artifact is caught before deserialization (SER-013)...
        let mut tampered = std::fs::read(&stored).unwrap();
        let middle = tampered.len() / 2;
        tampered[middle] ^= 0x40;
        std::fs::write(&stored, &tampered).unwrap();
        assert!(matches!(
            cache.load(engine.wasmtime(), &first.sha256),
            Err(CacheError::Tampered { .. })
        ));
        // ...the bad artifact is gone, and compiling rebuilds a good one from the module.
        assert!(!stored.exists());
        let again = engine.compile(bytes).unwrap();
        assert_eq!(again.sha256, first.sha256);
        assert!(cache
            .load(engine.wasmtime(), &first.sha256)
            .unwrap()
            .is_some());
    }

    #[test]
    fn bytes_that_are_not_a_component_are_refused_before_compiling() {
        let engine = Engine::new(EngineConfig {
            pool_instances: 8,
            ..EngineConfig::default()
        })
        .unwrap();
        // Each refused for what it is, before the compiler is reached.
        let refusal = |bytes: &[u8]| match engine.compile(bytes) {
            Err(EngineError::Refused(refusal)) => refusal,
            Err(other) => panic!("refused after compiling: {other}"),
            Ok(_) => panic!("accepted"),
        };
        assert!(matches!(refusal(b""), ModuleRefusal::NotWasm(_)));
        assert!(matches!(
            refusal(b"not wasm at all"),
            ModuleRefusal::NotWasm(_)
        ));
        assert_eq!(refusal(b"\0asm\x01\0\0\0"), ModuleRefusal::CoreModule);
        assert!(matches!(
            refusal(&palisade_artifacts::ACP[..100]),
            ModuleRefusal::Malformed { .. }
        ));
    }

    #[test]
    fn falls_back_to_on_demand_allocation_when_the_pool_cannot_be_reserved() {
        // Far more slots than a 47-bit address space holds: the reservation must fail.
        let engine = Engine::new(EngineConfig {
            pool_instances: 1 << 24,
            ..EngineConfig::default()
        })
        .unwrap();
        assert_eq!(engine.allocation(), Allocation::OnDemand);
        let pooled = Engine::new(EngineConfig {
            pool_instances: 8,
            ..EngineConfig::default()
        })
        .unwrap();
        assert_eq!(pooled.allocation(), Allocation::Pooling);
        // Both run plugins.
        for engine in [engine, pooled] {
            let runtime = crate::Runtime::new(engine).unwrap();
            let policy = r#"{"policies":[{"id":"p","pv":{"acr":[{"acor":["all"],"acop":2}]}}]}"#;
            runtime
                .install(crate::AppSpec::new("a").plugin(
                    crate::PluginSetup::new("acp", policy),
                    palisade_artifacts::ACP,
                ))
                .unwrap();
            let mut request =
                crate::AccessRequest::new("a", "CAE1", crate::Operation::Retrieve, "/x");
            request.request_time = Some(1_795_860_900);
            assert!(runtime.is_authorized(&request).is_permit());
        }
    }

    #[test]
    fn deadlines_round_up_to_whole_ticks() {
        let engine = Engine::new(EngineConfig {
            pool_instances: 8,
            ..EngineConfig::default()
        })
        .unwrap();
        assert_eq!(engine.deadline_ticks(Duration::from_millis(50)), 50);
        assert_eq!(engine.deadline_ticks(Duration::from_micros(1500)), 2);
        assert_eq!(engine.deadline_ticks(Duration::ZERO), 1);
    }
}
