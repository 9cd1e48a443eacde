//! One plugin loaded into one application's sandbox: its type-checked pre-instantiation, its
//! idle warm instances (within the engine-wide budget of `engine/warm.rs`) and its quarantine
//! state.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use wasmtime::component::{Component, TypedFunc};
use wasmtime::Store;

use super::bindings::{authenticator, authorizer, filter, wit};
use super::capabilities::Capabilities;
use super::convert::{self, RequestRef};
use super::failure::Failure;
use super::legacy::bindings as v0_1;
use super::limits::Isolation;
use super::quarantine::{Outcome, PluginHealth, Quarantine};
use super::state::{HostState, PluginGrant};
use super::Sandbox;
use crate::engine::{Evicted, IdleSet, WarmLink, WarmRegistry};

/// The plugin kinds are palisade-types' (one vocabulary with the module registry, #14.3).
pub use palisade_types::PluginKind;

/// Which [`PluginKind`] a compiled component is, judged by the function it exports.
pub trait KindOfComponent: Sized {
    /// The kind a component implements, judged by the function it exports.
    fn of_component(component: &Component, engine: &wasmtime::Engine) -> Option<Self>;

    /// Like [`KindOfComponent::of_component`], but a component that exports the functions of
    /// several worlds is taken as `declared` when it exports that world's function (the
    /// hostile test fixture does, to attack in every world with one binary).
    fn of_component_declared(
        component: &Component,
        engine: &wasmtime::Engine,
        declared: Option<Self>,
    ) -> Option<Self>;
}

impl KindOfComponent for PluginKind {
    fn of_component(component: &Component, engine: &wasmtime::Engine) -> Option<PluginKind> {
        let exports: Vec<String> = component
            .component_type()
            .exports(engine)
            .map(|(name, _)| name.to_string())
            .collect();
        PluginKind::ALL
            .into_iter()
            .find(|kind| exports.iter().any(|name| name == kind.export()))
    }

    fn of_component_declared(
        component: &Component,
        engine: &wasmtime::Engine,
        declared: Option<PluginKind>,
    ) -> Option<PluginKind> {
        if let Some(declared) = declared {
            let exports_it = component
                .component_type()
                .exports(engine)
                .any(|(name, _)| name == declared.export());
            if exports_it {
                return Some(declared);
            }
        }
        PluginKind::of_component(component, engine)
    }
}

/// A line of the plugin contract (`palisade:plugin`) this host loads. Components of every
/// listed line run side by side, each seeing the records of its own version (see the
/// versioning note in `plugins/sdk/wit/palisade.wit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContractLine {
    /// 0.1.x: the request carries no target type. Kept for deployed modules (`legacy.rs`).
    V0_1,
    /// 0.2.x, the current contract.
    V0_2,
}

/// The contract a component was built against, as read from its `palisade:plugin` imports,
/// e.g. `palisade:plugin@0.1.0`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Contract {
    /// The contract line (0.1.x or 0.2.x).
    pub line: ContractLine,
    /// The exact version the component imports (`0.1.0`).
    pub version: Box<str>,
}

/// Why a component's contract version is not one this host loads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ContractError {
    /// An unsupported contract version.
    #[error("the component was built against palisade:plugin@{0}; this host loads palisade:plugin 0.1.x and 0.2.x")]
    Unsupported(String),
    /// Several contract versions at once.
    #[error("the component imports several versions of palisade:plugin ({0}); a plugin is built against one")]
    Mixed(String),
}

impl Contract {
    /// The contract this host's own plugins and the SDK are built against.
    pub const CURRENT_VERSION: &'static str = "0.2.0";

    /// The contract `component` was built against, judged by the versions of the
    /// `palisade:plugin` interfaces it imports. A component importing none of them (it uses
    /// no import, and its types are its own) is taken as the current contract, whose type check
    /// at load then decides.
    pub fn of_component(
        component: &Component,
        engine: &wasmtime::Engine,
    ) -> Result<Contract, ContractError> {
        let mut versions: Vec<String> = Vec::new();
        for (name, _) in component.component_type().imports(engine) {
            let Some(rest) = name.strip_prefix("palisade:plugin/") else {
                continue;
            };
            let version = rest.split_once('@').map_or("", |(_, version)| version);
            if !versions.iter().any(|seen| seen == version) {
                versions.push(version.to_string());
            }
        }
        let version = match versions.as_slice() {
            [] => Contract::CURRENT_VERSION.to_string(),
            [one] => one.clone(),
            several => return Err(ContractError::Mixed(several.join(", "))),
        };
        let line = if version.starts_with("0.1.") {
            ContractLine::V0_1
        } else if version.starts_with("0.2.") {
            ContractLine::V0_2
        } else {
            return Err(ContractError::Unsupported(version));
        };
        Ok(Contract {
            line,
            version: version.into(),
        })
    }
}

impl std::fmt::Display for Contract {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "palisade:plugin@{}", self.version)
    }
}

impl Serialize for Contract {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Which module made a decision: reported with every decision and in audit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginLabel {
    /// The name.
    pub name: String,
    /// The plugin's kind.
    pub kind: PluginKind,
    /// The module's version from its signed manifest, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Hex SHA-256 of the module bytes.
    pub sha256: String,
}

/// The typed pre-instantiation of a plugin: imports resolved and exports type-checked once,
/// at load time, so each instantiation is only the allocation and initialisation.
/// `…V0_1` are components of contract 0.1 (see `legacy.rs`).
pub(crate) enum KindPre {
    Authorizer(authorizer::AuthorizerPre<HostState>),
    Authenticator(authenticator::AuthenticatorPre<HostState>),
    Filter(filter::FilterPre<HostState>),
    AuthorizerV0_1(v0_1::authorizer::AuthorizerPre<HostState>),
    AuthenticatorV0_1(v0_1::authenticator::AuthenticatorPre<HostState>),
    FilterV0_1(v0_1::filter::FilterPre<HostState>),
}

/// An instantiated plugin's typed exports.
pub(crate) enum Bound {
    Authorizer(authorizer::Authorizer),
    Authenticator(authenticator::Authenticator),
    Filter(filter::Filter),
    AuthorizerV0_1(v0_1::authorizer::Authorizer),
    AuthenticatorV0_1(v0_1::authenticator::Authenticator),
    FilterV0_1(v0_1::filter::Filter),
}

pub(crate) struct Instance {
    pub(crate) store: Store<HostState>,
    pub(crate) bound: Bound,
}

/// A plugin's idle warm instances, oldest first, counted in the engine's budget: the
/// least recently used plugin of the engine gives up its oldest when the budget is full.
struct IdleInstances {
    instances: Mutex<VecDeque<Instance>>,
    link: WarmLink,
    registry: Arc<WarmRegistry>,
}

impl IdleInstances {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Instance>> {
        self.instances
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl IdleSet for IdleInstances {
    fn link(&self) -> &WarmLink {
        &self.link
    }

    fn evict_oldest(&self) -> (Option<Evicted>, bool) {
        let mut instances = self.lock();
        let oldest = instances
            .pop_front()
            .map(|instance| Box::new(instance) as Evicted);
        let empty = instances.is_empty();
        if empty {
            self.link.unlist();
        }
        (oldest, empty)
    }
}

impl Drop for IdleInstances {
    fn drop(&mut self) {
        self.registry.forget(&self.link);
        let left = self.lock().len();
        self.registry.dropped(left);
    }
}

/// A plugin ready to serve one application.
pub struct Plugin {
    pub(crate) grant: Arc<PluginGrant>,
    label: Arc<PluginLabel>,
    contract: Contract,
    /// `"permitted by <name>"`, made once rather than formatted on every permit.
    permit_reason: Box<str>,
    pre: KindPre,
    idle: Arc<IdleInstances>,
    quarantine: Quarantine,
    /// Set by the first failed call and never cleared (see [`Plugin::has_failed`]).
    failed_once: AtomicBool,
    /// Whether the `authorize` export takes [`RequestRef`]: type-checked on the first call.
    borrows_request: OnceLock<bool>,
}

impl Plugin {
    pub(crate) fn new(
        grant: Arc<PluginGrant>,
        label: PluginLabel,
        contract: Contract,
        pre: KindPre,
        warm: Arc<WarmRegistry>,
    ) -> Plugin {
        Plugin {
            grant,
            contract,
            permit_reason: format!("permitted by {}", label.name).into(),
            label: Arc::new(label),
            pre,
            idle: Arc::new(IdleInstances {
                instances: Mutex::new(VecDeque::new()),
                link: WarmLink::new(),
                registry: warm,
            }),
            quarantine: Quarantine::default(),
            failed_once: AtomicBool::new(false),
            borrows_request: OnceLock::new(),
        }
    }

    /// Shared, so that every decision can name its module without copying strings.
    pub fn label(&self) -> &Arc<PluginLabel> {
        &self.label
    }

    /// The reason a decision this plugin permitted gives.
    pub fn permit_reason(&self) -> &str {
        &self.permit_reason
    }

    /// The contract the module was built against.
    pub fn contract(&self) -> &Contract {
        &self.contract
    }

    /// The plugin's kind.
    pub fn kind(&self) -> PluginKind {
        self.label.kind
    }

    /// Its failures and quarantine.
    pub fn health(&self) -> PluginHealth {
        self.quarantine.health(Instant::now())
    }

    /// A new instance, in a store of its own. When the pool is exhausted, the engine's
    /// least recently used idle instances are given back first (`engine/warm.rs`).
    fn instantiate(&self, sandbox: &Sandbox) -> Result<Instance, Failure> {
        let made = self
            .idle
            .registry
            .instantiate(|| self.instantiate_once(sandbox));
        made.map_err(|(error, exceeded)| {
            match Failure::from_call_error(
                &error,
                exceeded,
                sandbox.limits.memory_bytes,
                sandbox.limits.deadline,
            ) {
                Failure::Malformed(what) => Failure::Instantiation(what),
                other => other,
            }
        })
    }

    /// One attempt; a failure comes with whether the store had hit its memory cap.
    fn instantiate_once(&self, sandbox: &Sandbox) -> Result<Instance, (wasmtime::Error, bool)> {
        let mut store = sandbox.new_store(self.grant.clone());
        let bound = match &self.pre {
            KindPre::Authorizer(pre) => pre.instantiate(&mut store).map(Bound::Authorizer),
            KindPre::Authenticator(pre) => pre.instantiate(&mut store).map(Bound::Authenticator),
            KindPre::Filter(pre) => pre.instantiate(&mut store).map(Bound::Filter),
            KindPre::AuthorizerV0_1(pre) => pre.instantiate(&mut store).map(Bound::AuthorizerV0_1),
            KindPre::AuthenticatorV0_1(pre) => {
                pre.instantiate(&mut store).map(Bound::AuthenticatorV0_1)
            }
            KindPre::FilterV0_1(pre) => pre.instantiate(&mut store).map(Bound::FilterV0_1),
        };
        match bound {
            Ok(bound) => Ok(Instance { store, bound }),
            Err(error) => {
                let exceeded = store.data().memory.exceeded;
                Err((error, exceeded))
            }
        }
    }

    /// Runs one call for a request of `originator`: takes a warm instance (or makes one),
    /// arms the budgets, calls, checks the answer, and returns a healthy instance to the
    /// pool. Any failure drops the instance (a trapped instance is never reused); a failure
    /// the plugin caused counts towards quarantine, attributed to `originator` and weighed
    /// by the time it burnt (see `quarantine.rs`).
    pub(crate) fn call<R, T>(
        &self,
        sandbox: &Sandbox,
        originator: &str,
        invoke: impl FnOnce(&mut Store<HostState>, &Bound) -> wasmtime::Result<R>,
        check: impl FnOnce(R) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        // A plugin that never failed has no quarantine state to check or update, so its
        // calls skip hashing the originator, two clock reads and two lock round-trips.
        let clean = !self.has_failed();
        let key = (!clean).then(|| self.quarantine.key(originator));
        if let Some(key) = key {
            if let Err(refusal) = self.quarantine.admit(key, Instant::now()) {
                return Err(Failure::Quarantined {
                    scope: refusal.scope,
                    remaining: refusal.remaining,
                });
            }
        }
        let started = Instant::now();
        let result = self.call_admitted(sandbox, invoke, check);
        match &result {
            Ok(_) => {
                if let Some(key) = key {
                    self.quarantine.record_success(key, Instant::now());
                }
            }
            Err(failure) => {
                let now = Instant::now();
                // A timeout used the whole deadline by definition (the epoch tick may end it
                // a little early or late).
                let burned = if matches!(failure, Failure::TimeLimit { .. }) {
                    1.0
                } else {
                    now.saturating_duration_since(started).as_secs_f64()
                        / sandbox.limits.deadline.as_secs_f64().max(1e-6)
                };
                // A host error counts when it came after the plugin had used half its
                // deadline: otherwise raising one would be a way to burn time uncounted.
                if failure.blames_plugin() || burned >= 0.5 {
                    self.failed_once.store(true, Ordering::Relaxed);
                    let key = key.unwrap_or_else(|| self.quarantine.key(originator));
                    let outcome = self
                        .quarantine
                        .record_failure(key, burned, now, &sandbox.limits);
                    if let Outcome::Quarantined(scope) = outcome {
                        tracing::warn!(
                            app = %self.grant.app,
                            plugin = %self.label.name,
                            scope = ?scope,
                            %failure,
                            "plugin quarantined after repeated failures"
                        );
                    }
                }
            }
        }
        result
    }

    fn call_admitted<R, T>(
        &self,
        sandbox: &Sandbox,
        invoke: impl FnOnce(&mut Store<HostState>, &Bound) -> wasmtime::Result<R>,
        check: impl FnOnce(R) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        let warm = sandbox.isolation == Isolation::Warm;
        let pooled = if warm { self.take_idle() } else { None };
        let mut instance = match pooled {
            Some(instance) => instance,
            None => self.instantiate(sandbox)?,
        };
        instance.store.data_mut().begin_call();
        instance.store.set_epoch_deadline(sandbox.deadline_ticks);
        let answer = invoke(&mut instance.store, &instance.bound).map_err(|error| {
            Failure::from_call_error(
                &error,
                instance.store.data().memory.exceeded,
                sandbox.limits.memory_bytes,
                sandbox.limits.deadline,
            )
        })?;
        let checked = check(answer)?;
        if warm {
            self.return_idle(instance, sandbox.limits.warm_instances);
        }
        Ok(checked)
    }

    /// The most recently returned idle instance (its memory is likeliest still cached).
    fn take_idle(&self) -> Option<Instance> {
        let instance = self.idle.lock().pop_back();
        if instance.is_some() {
            self.idle.registry.took();
        }
        instance
    }

    /// Keeps a healthy instance for the next call, within `keep` for this plugin and the
    /// engine's budget; otherwise it is dropped here, releasing its slot.
    fn return_idle(&self, instance: Instance, keep: usize) {
        let registry = &self.idle.registry;
        if registry.budget() == 0 {
            return;
        }
        let fresh = {
            let mut idle = self.idle.lock();
            if idle.len() >= keep {
                drop(idle);
                drop(instance);
                return;
            }
            registry.adding();
            idle.push_back(instance);
            self.idle.link.is_fresh(registry)
        };
        registry.returned(&self.idle, fresh);
    }

    /// Calls a contract-0.2 authorizer with `request` lowered from the host's own strings
    /// ([`RequestRef`]) rather than from a copy of them in a `wit::Request`.
    pub(crate) fn authorize_borrowed(
        &self,
        store: &mut Store<HostState>,
        authorizer: &authorizer::Authorizer,
        request: &crate::request::AccessRequest,
        now: u64,
        grant: Capabilities,
    ) -> wasmtime::Result<wit::Decision> {
        let func = *authorizer.func_authorize().func();
        // Loading type-checked the export against `wit::Request`; `RequestRef` is checked
        // the same way once, so that a mismatch between the two can only cost the copies.
        let borrows = *self.borrows_request.get_or_init(|| {
            func.typed::<(&RequestRef<'static>,), (wit::Decision,)>(&*store)
                .is_ok()
        });
        if !borrows {
            return authorizer.call_authorize(store, &convert::request(request, now, grant));
        }
        // SAFETY: `func` was type-checked with these very parameter and result types just
        // above (for this plugin's component, which every instance of it shares); lifetimes
        // play no part in the component-model type check.
        let typed =
            unsafe { TypedFunc::<(&RequestRef<'_>,), (wit::Decision,)>::new_unchecked(func) };
        let (decision,) = typed.call(store, (&convert::request_ref(request, now, grant),))?;
        Ok(decision)
    }

    /// Whether any call of this plugin (this version, in this application) has failed by
    /// its own doing: hit a limit, trapped, answered malformed. Until then there is no
    /// quarantine state to check or reset on the decision path.
    pub fn has_failed(&self) -> bool {
        self.failed_once.load(Ordering::Relaxed)
    }

    /// Idle warm instances kept for reuse.
    pub fn warm_instances(&self) -> usize {
        self.idle.lock().len()
    }

    /// Drops every warm instance (e.g. when the application's configuration changes).
    pub fn clear_warm_instances(&self) {
        let dropped = std::mem::take(&mut *self.idle.lock());
        self.idle.registry.dropped(dropped.len());
    }
}
