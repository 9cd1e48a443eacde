//! Pre-initialised plugins for applications that run a fresh instance per request.
//!
//! A fresh instance per request (SER-024: nothing carries over between requests) would make
//! every request pay for what a plugin does before it can decide: parsing and compiling its
//! configuration, which is most of a fresh call (a 10-rule `acp` policy: ~270k of ~330k
//! instructions). A plugin built with the SDK exports `prepare` (WIT world
//! `prepared-authorizer` and siblings). At load time this module instantiates the plugin
//! once, lets `prepare` read its configuration, and snapshots the instance with wizer: its
//! memories and globals become the data segments of a new component, so every fresh instance
//! starts from the prepared state through copy-on-write memory images, at the cost of an
//! instantiation only.
//!
//! What `prepare` may do is deliberately narrow: read `config`, write `log`. Every other
//! import is denied (a key, a group or a key-value entry read at load time would be frozen
//! into every later request). It runs under the application's memory cap, deadline and
//! host-call budget; a `prepare` that fails makes the load fail with that cause.
//!
//! Cost: one extra compilation per (module, configuration) pair, cached on disk under a key
//! derived from both, and the compiled code of that component is not shared with other
//! applications. That is why warm-instance applications (which parse once per instance
//! anyway) are not snapshotted: for them [`check`] runs `prepare` once on a throw-away
//! instance of the unchanged component, so that a configuration the plugin refuses fails the
//! load in both isolation modes (issue #11: a policy that cannot work must not start and
//! report healthy). That costs one instantiation and one `prepare` per plugin and load.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use wasmtime::component::{Instance, InstancePre, Lift, WasmList};
use wasmtime::Store;
use wasmtime_wizer::{ComponentInstanceState, Wizer};

use super::failure::Failure;
use super::state::{HostState, PluginGrant};
use super::{Capabilities, Sandbox};
use crate::engine::{CompiledComponent, EngineError};

/// The export a plugin offers to be pre-initialised.
const PREPARE_EXPORT: &str = "prepare";

/// Bump when the way snapshots are made changes, so old cached ones are not reused.
const SNAPSHOT_FORMAT: &[u8] = b"palisade-prepared-v1";

/// Why a plugin that offers `prepare` could not be pre-initialised.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrepareError {
    /// The `prepare` export could not be instrumented.
    #[error("its `prepare` export could not be instrumented for a snapshot: {0}")]
    Instrument(String),
    /// The instrumented or snapshotted component did not compile.
    #[error("the instrumented or snapshotted component did not compile: {0}")]
    Compile(EngineError),
    /// `prepare` failed.
    #[error("`prepare` failed: {0}")]
    Failed(Failure),
    /// The plugin logged `reason` at error level and trapped in `prepare`: it refused its
    /// configuration (`palisade_sdk::config::refuse`).
    #[error("it refused its configuration: {reason}")]
    Refused {
        /** What the plugin logged. */
        reason: String,
    },
    /// The prepared state could not be snapshotted.
    #[error("the prepared state could not be snapshotted: {0}")]
    Snapshot(String),
}

/// Whether the component offers the `prepare` hook.
pub(crate) fn offers_prepare(compiled: &CompiledComponent) -> bool {
    compiled
        .component
        .get_export_index(None, PREPARE_EXPORT)
        .is_some()
}

/// The pre-initialised version of `compiled` for `grant`'s configuration, from the artifact
/// cache when it was made before. The result keeps the original module's hash: decisions and
/// audit name the module that was signed, not its snapshot.
pub(crate) fn prepared(
    sandbox: &Sandbox,
    compiled: &CompiledComponent,
    module_bytes: &[u8],
    grant: &PluginGrant,
) -> Result<CompiledComponent, PrepareError> {
    let key = snapshot_key(&compiled.sha256, &grant.config_json);
    let component = match sandbox.engine.cached(&key) {
        Some(component) => component,
        None => {
            let snapshot = snapshot(sandbox, module_bytes, grant)?;
            sandbox
                .engine
                .compile_keyed(&key, &snapshot)
                .map_err(PrepareError::Compile)?
        }
    };
    Ok(CompiledComponent::new(component, compiled.sha256))
}

/// Runs the plugin's `prepare` once on a throw-away instance of `compiled` (config and log
/// only, under the sandbox's limits) and keeps nothing: the load-time check of a warm
/// application's configuration.
///
/// `pre`, when another application already type-checked this component, spares the check's
/// instantiation the type check (the same component against the same linker passes it).
pub(crate) fn check(
    sandbox: &Sandbox,
    compiled: &CompiledComponent,
    grant: &PluginGrant,
    pre: Option<&InstancePre<HostState>>,
) -> Result<(), PrepareError> {
    // A busy machine (a gateway booting its apps, a loaded CI runner) can stall the thread past
    // the deadline on a run that takes well under a millisecond; a second try tells that from
    // a plugin that really loops, which fails both.
    match check_once(sandbox, compiled, grant, pre) {
        Err(PrepareError::Failed(Failure::TimeLimit { .. })) => {
            check_once(sandbox, compiled, grant, pre)
        }
        other => other,
    }
}

fn check_once(
    sandbox: &Sandbox,
    compiled: &CompiledComponent,
    grant: &PluginGrant,
    pre: Option<&InstancePre<HostState>>,
) -> Result<(), PrepareError> {
    run_prepare(sandbox, &compiled.component, grant, pre).map(drop)
}

/// Instantiates `component` in a throw-away store that grants only config and log, and runs
/// its `prepare` under the sandbox's limits. Returns the store and instance (for a snapshot).
fn run_prepare(
    sandbox: &Sandbox,
    component: &wasmtime::component::Component,
    grant: &PluginGrant,
    pre: Option<&InstancePre<HostState>>,
) -> Result<(Store<HostState>, Instance), PrepareError> {
    let limits = sandbox.limits.clone();
    let grant = prepare_grant(grant);
    // Room in a pool full of idle warm instances is made as for a call (`engine/warm.rs`).
    let (mut store, instance) = sandbox
        .engine
        .warm()
        .instantiate(|| {
            let mut store = sandbox.new_store(grant.clone());
            let instance = match pre {
                Some(pre) => pre.instantiate(&mut store),
                None => sandbox.linker.0.instantiate(&mut store, component),
            };
            match instance {
                Ok(instance) => Ok((store, instance)),
                Err(error) => Err((error, store)),
            }
        })
        .map_err(|(error, store)| refusal(&store, &error, &limits))?;
    let prepare = instance
        .get_typed_func::<(), ()>(&mut store, PREPARE_EXPORT)
        .map_err(|error| PrepareError::Instrument(format!("{error:#}")))?;
    prepare
        .call(&mut store, ())
        .map_err(|error| refusal(&store, &error, &limits))?;
    Ok((store, instance))
}

/// `prepare` may read its configuration and log, nothing else: anything else read now would
/// be frozen into every request of a snapshot.
fn prepare_grant(grant: &PluginGrant) -> Arc<PluginGrant> {
    Arc::new(PluginGrant {
        app: grant.app.clone(),
        name: grant.name.clone(),
        config_json: grant.config_json.clone(),
        capabilities: Capabilities::NONE,
    })
}

/// What a failed `prepare` means: a refusal with the plugin's reason when it logged an error
/// and trapped, otherwise the failure itself (a loop, memory, a denied import...).
fn refusal(
    store: &Store<HostState>,
    error: &wasmtime::Error,
    limits: &super::SandboxLimits,
) -> PrepareError {
    let failure = Failure::from_call_error(
        error,
        store.data().memory.exceeded,
        limits.memory_bytes,
        limits.deadline,
    );
    match (&failure, &store.data().last_error_log) {
        // Plugin text, bound for a terminal, a log line and an HTTP answer (#12.5).
        (Failure::Trap(_), Some(reason)) => PrepareError::Refused {
            reason: super::convert::escape_text(reason).into_owned(),
        },
        _ => PrepareError::Failed(failure),
    }
}

/// The cache key of a snapshot: what it is made from.
fn snapshot_key(module_sha256: &[u8; 32], config_json: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(SNAPSHOT_FORMAT);
    hasher.update(module_sha256);
    hasher.update((config_json.len() as u64).to_le_bytes());
    hasher.update(config_json.as_bytes());
    hasher.finalize().into()
}

/// Instruments the module, runs `prepare` in a throw-away store under the sandbox's limits,
/// and returns the snapshot as component bytes.
fn snapshot(
    sandbox: &Sandbox,
    module_bytes: &[u8],
    grant: &PluginGrant,
) -> Result<Vec<u8>, PrepareError> {
    let mut wizer = Wizer::new();
    // The component's own `prepare` export lifts the core function; removing it from the
    // core module would leave the component referring to nothing. The host never calls it
    // again, so keeping it costs nothing.
    wizer.init_func(PREPARE_EXPORT).keep_init_func(true);
    // wizer panics on component shapes it does not expect; a module upload must never take
    // the gateway down, so a panic is an error like any other.
    let (context, instrumented) = std::panic::catch_unwind(AssertUnwindSafe(|| {
        wizer.instrument_component(module_bytes)
    }))
    .map_err(|_| PrepareError::Instrument("the instrumenter panicked".into()))?
    .map_err(|error| PrepareError::Instrument(format!("{error:#}")))?;
    let instrumented = sandbox
        .engine
        .compile(&instrumented)
        .map_err(PrepareError::Compile)?;

    let (mut store, instance) = run_prepare(sandbox, &instrumented.component, grant, None)?;

    // The snapshot's reads run wizer's accessors (bounded copies of memories and globals),
    // not the plugin's code: they get a deadline of their own, and a generous one, rather
    // than what `prepare` left of its one (on a loaded machine that was sometimes nothing,
    // and the load failed with a panic inside wizer).
    store.set_epoch_deadline(sandbox.deadline_ticks.saturating_mul(100));
    let mut state = SyncInstanceState {
        store: &mut store,
        instance,
        error: None,
    };
    let snapshot = std::panic::catch_unwind(AssertUnwindSafe(|| {
        // Every state read below completes at once, so wizer's async snapshot finishes in
        // one poll.
        poll_ready(wizer.snapshot_component(&context, &mut state), 1)
    }))
    .map_err(|_| {
        // wizer panics on the empty contents a failed read hands it; the read's error is the
        // cause to report.
        PrepareError::Snapshot(
            state
                .error
                .take()
                .unwrap_or_else(|| "the snapshotter panicked".into()),
        )
    })?;
    if let Some(error) = state.error {
        return Err(PrepareError::Snapshot(error));
    }
    snapshot
        .ok_or_else(|| PrepareError::Snapshot("the snapshot did not complete".into()))?
        .map_err(|error| PrepareError::Snapshot(format!("{error:#}")))
}

/// wizer reads the prepared instance's memories and globals through accessor functions it
/// added when instrumenting; this calls them synchronously on our own store. wizer's trait
/// has no error path, so the first failure is kept here and reported after the snapshot.
struct SyncInstanceState<'a> {
    store: &'a mut Store<HostState>,
    instance: Instance,
    error: Option<String>,
}

impl SyncInstanceState<'_> {
    fn call<R: Lift + Send + Sync + 'static>(
        &mut self,
        instance: &str,
        func: &str,
        read: impl FnOnce(&Store<HostState>, R),
    ) {
        if self.error.is_some() {
            return;
        }
        let result = (|| -> wasmtime::Result<()> {
            let exported = self
                .instance
                .get_export_index(&mut *self.store, None, instance)
                .ok_or_else(|| wasmtime::format_err!("no export {instance}"))?;
            let func_index = self
                .instance
                .get_export_index(&mut *self.store, Some(&exported), func)
                .ok_or_else(|| wasmtime::format_err!("no export {instance}#{func}"))?;
            let typed = self
                .instance
                .get_typed_func::<(), (R,)>(&mut *self.store, func_index)?;
            let (value,) = typed.call(&mut *self.store, ())?;
            read(self.store, value);
            Ok(())
        })();
        if let Err(error) = result {
            self.error = Some(format!("reading {instance}#{func}: {error:#}"));
        }
    }

    fn scalar<R: Lift + Default + Copy + Send + Sync + 'static>(
        &mut self,
        instance: &str,
        func: &str,
    ) -> R {
        let mut out = None;
        self.call(instance, func, |_, value: R| out = Some(value));
        out.unwrap_or_default()
    }
}

impl ComponentInstanceState for SyncInstanceState<'_> {
    fn call_func_ret_list_u8(
        &mut self,
        instance: &str,
        func: &str,
        contents: impl FnOnce(&[u8]) + Send,
    ) -> impl std::future::Future<Output = ()> + Send {
        let mut contents = Some(contents);
        self.call(instance, func, |store, list: WasmList<u8>| {
            if let Some(contents) = contents.take() {
                contents(list.as_le_slice(store));
            }
        });
        if let Some(contents) = contents {
            // The read failed (recorded in `self.error`); wizer still expects the callback.
            contents(&[]);
        }
        std::future::ready(())
    }

    fn call_func_ret_s32(
        &mut self,
        instance: &str,
        func: &str,
    ) -> impl std::future::Future<Output = i32> + Send {
        std::future::ready(self.scalar::<i32>(instance, func))
    }

    fn call_func_ret_s64(
        &mut self,
        instance: &str,
        func: &str,
    ) -> impl std::future::Future<Output = i64> + Send {
        std::future::ready(self.scalar::<i64>(instance, func))
    }

    fn call_func_ret_f32(
        &mut self,
        instance: &str,
        func: &str,
    ) -> impl std::future::Future<Output = u32> + Send {
        std::future::ready(self.scalar::<f32>(instance, func).to_bits())
    }

    fn call_func_ret_f64(
        &mut self,
        instance: &str,
        func: &str,
    ) -> impl std::future::Future<Output = u64> + Send {
        std::future::ready(self.scalar::<f64>(instance, func).to_bits())
    }
}

/// Polls `future` up to `polls` times with a waker that does nothing, and gives its output if
/// it completed: for futures that never need to wait, no executor is needed.
fn poll_ready<F: std::future::Future>(future: F, polls: usize) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    (0..polls).find_map(|_| match future.as_mut().poll(&mut context) {
        std::task::Poll::Ready(output) => Some(output),
        std::task::Poll::Pending => None,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn refusal_reasons_are_printable() {
        // Refusal reasons go through the one escaper of plugin text (sandbox::convert).
        let escape = |text| super::super::convert::escape_text(text).into_owned();
        assert_eq!(escape("acop: 64 is not"), "acop: 64 is not");
        assert_eq!(
            escape("a\nFAKE LINE\r\u{1b}[31m\u{202e}x"),
            "a\\nFAKE LINE\\r\\u{1b}[31m\\u{202e}x"
        );
    }
}
