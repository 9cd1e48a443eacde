//! One sandbox per application (SER-024).
//!
//! A [`Sandbox`] is an application's segregated security environment: its key-value
//! namespace, group directory, key handles and limits, and the plugins loaded into it. Each
//! call runs in a store of its own (a warm one reused for this application only, or a fresh
//! one per request), under a memory cap, an epoch deadline and a host-call budget. A trap,
//! timeout, memory exhaustion or malformed answer comes back as a [`Failure`]: the pipeline
//! turns it into a deny that names it; other applications never notice.

mod bindings;
mod capabilities;
mod convert;
mod failure;
mod legacy;
mod limits;
mod plugin;
mod prepare;
mod quarantine;
mod state;
mod wasi;

use std::sync::{Arc, Mutex, Weak};

use wasmtime::component::{HasSelf, InstancePre, Linker};

use crate::engine::{CompiledComponent, Engine};
use crate::request::{AccessRequest, Credential, ResponseBody};

pub use capabilities::{
    AppKeys, Capabilities, Capability, GroupDirectory, KeyUseError, KvNamespace, MembershipSource,
    StaticKeys,
};
pub use convert::{AuthOutcome, FilterOutcome, Verdict};
pub use failure::Failure;
pub use limits::{Isolation, SandboxLimits};
pub use plugin::{
    Contract, ContractError, ContractLine, KindOfComponent, Plugin, PluginKind, PluginLabel,
};
pub use prepare::PrepareError;
pub use quarantine::{PluginHealth, QuarantineScope};
pub use state::{AppEnvironment, PluginGrant, SandboxTrap};
pub use wasi::dropped_output_bytes as plugin_output_dropped_bytes;

use plugin::{Bound, KindPre};
use state::HostState;

/// Why a plugin could not be loaded into a sandbox. Nothing is half-loaded: the sandbox is
/// unchanged when this is returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The component exports none of the plugin worlds.
    #[error("the component exports none of authorize, authenticate or filter, so it is no Palisade plugin")]
    UnknownWorld,
    #[error("the component is a {found} but was declared as a {declared}")]
    /// The component is of another kind than declared.
    WrongWorld {
        /// The kind the configuration declared.
        declared: PluginKind,
        /// The kind the component is.
        found: PluginKind,
    },
    /// The component's contract version is not one this host loads.
    #[error(transparent)]
    Contract(#[from] ContractError),
    /// The component imports something the host does not offer.
    #[error("the component ({contract}) has imports that cannot be satisfied (it asks for something Palisade does not offer)")]
    Imports {
        /// The contract the component was built against.
        contract: Contract,
        /// wasmtime's linking error.
        #[source]
        source: crate::engine::BoxError,
    },
    #[error(
        "the component's `{export}` export does not match the {kind} world of {contract}: {reason}"
    )]
    /// The component's export does not have the contract's type.
    ExportType {
        /// The plugin's kind.
        kind: PluginKind,
        /// The export.
        export: &'static str,
        /// The contract the component was built against.
        contract: Contract,
        /// Why, in words.
        reason: String,
    },
    /// The plugin configuration is not JSON.
    #[error("the plugin configuration is not valid JSON")]
    Config(#[source] serde_json::Error),
    /// Pre-initialising the plugin with its configuration failed.
    #[error("the plugin's `prepare` hook failed at load (it checks the configuration, and fresh instances are pre-initialised from it): {0}")]
    Prepare(PrepareError),
}

/// The linker every sandbox shares: deny-all WASI plus the Palisade imports. Building it once
/// per process keeps loading a plugin to a type check.
pub struct SharedLinker(Linker<HostState>);

impl SharedLinker {
    /// The linker for `engine`.
    pub fn new(engine: &Engine) -> wasmtime::Result<SharedLinker> {
        let mut linker = Linker::<HostState>::new(engine.wasmtime());
        // Guests built with Rust's std import WASI even when they never use it; every
        // interface is there, and the host behind it grants nothing and never waits.
        wasi::add_to_linker(&mut linker)?;
        bindings::imports::Imports::add_to_linker::<HostState, HasSelf<HostState>>(
            &mut linker,
            |state| state,
        )?;
        // The same imports under their 0.1.0 names, for modules built against that contract.
        legacy::bindings::imports::Imports::add_to_linker::<HostState, HasSelf<HostState>>(
            &mut linker,
            |state| state,
        )?;
        Ok(SharedLinker(linker))
    }
}

/// The pre-instantiations of one compiled component (see [`CompiledComponent`]), by linker
/// and declared kind. Type-checking a component against the linker's ~70 imports was a
/// quarter of a 100-app gateway's cached start (perf), the same work for every application
/// running one module. Holding the linker weakly keys entries by that very linker without
/// keeping it alive; entries live as long as the compiled component's clones.
#[derive(Clone, Default)]
pub(crate) struct SharedPres(Arc<Mutex<Vec<SharedPre>>>);

struct SharedPre {
    linker: Weak<SharedLinker>,
    declared: Option<PluginKind>,
    found: PluginKind,
    contract: Contract,
    pre: KindPre,
}

impl SharedPres {
    fn get(
        &self,
        linker: &Arc<SharedLinker>,
        declared: Option<PluginKind>,
    ) -> Option<(PluginKind, Contract, KindPre)> {
        let entries = self.0.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .iter()
            .find(|e| e.declared == declared && Weak::ptr_eq(&e.linker, &Arc::downgrade(linker)))
            .map(|e| (e.found, e.contract.clone(), e.pre.clone()))
    }

    fn put(
        &self,
        linker: &Arc<SharedLinker>,
        declared: Option<PluginKind>,
        (found, contract, pre): &(PluginKind, Contract, KindPre),
    ) {
        let mut entries = self.0.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|e| e.linker.strong_count() > 0);
        entries.push(SharedPre {
            linker: Arc::downgrade(linker),
            declared,
            found: *found,
            contract: contract.clone(),
            pre: pre.clone(),
        });
    }
}

impl KindPre {
    /// The untyped pre-instantiation underneath.
    fn instance_pre(&self) -> &InstancePre<HostState> {
        match self {
            KindPre::Authorizer(pre) => pre.instance_pre(),
            KindPre::Authenticator(pre) => pre.instance_pre(),
            KindPre::Filter(pre) => pre.instance_pre(),
            KindPre::AuthorizerV0_1(pre) => pre.instance_pre(),
            KindPre::AuthenticatorV0_1(pre) => pre.instance_pre(),
            KindPre::FilterV0_1(pre) => pre.instance_pre(),
        }
    }
}

impl Clone for KindPre {
    fn clone(&self) -> KindPre {
        match self {
            KindPre::Authorizer(pre) => KindPre::Authorizer(pre.clone()),
            KindPre::Authenticator(pre) => KindPre::Authenticator(pre.clone()),
            KindPre::Filter(pre) => KindPre::Filter(pre.clone()),
            KindPre::AuthorizerV0_1(pre) => KindPre::AuthorizerV0_1(pre.clone()),
            KindPre::AuthenticatorV0_1(pre) => KindPre::AuthenticatorV0_1(pre.clone()),
            KindPre::FilterV0_1(pre) => KindPre::FilterV0_1(pre.clone()),
        }
    }
}

/// Room for the canonical-ABI framing of a crossing's strings and lists beyond their payload.
const HOSTCALL_SLACK_BYTES: usize = 64 << 10;

/// The most bytes one crossing from a plugin into the host may carry: the largest thing a
/// plugin may legitimately hand over (a filter's body with its reason, or a key-value entry)
/// plus framing. With the defaults, 4 MiB + 68 KiB; a crossing over it traps.
fn hostcall_bytes(limits: &SandboxLimits) -> usize {
    let answer = limits
        .max_body_bytes
        .saturating_add(limits.max_reason_bytes);
    let kv_entry = limits
        .kv_max_key_bytes
        .saturating_add(limits.kv_max_value_bytes);
    answer.max(kv_entry).saturating_add(HOSTCALL_SLACK_BYTES)
}

/// A plugin handed to the wrong stage: a host bug, reported as a failure rather than a
/// panic so that it can only ever deny.
fn wrong_stage(plugin: &Plugin) -> wasmtime::Error {
    wasmtime::format_err!(
        "plugin {} is a {} and was called in another stage",
        plugin.label().name,
        plugin.kind()
    )
}

/// How a plugin is set up in an application.
#[derive(Clone, Debug)]
pub struct PluginSetup {
    /// The plugin's name within the application (unique per application).
    pub name: String,
    /// The kind the operator declared; `None` accepts whatever the component implements.
    pub kind: Option<PluginKind>,
    /// The version from the module's manifest, if signed.
    pub version: Option<String>,
    /// The plugin's configuration document (JSON text).
    pub config_json: String,
    /// What the plugin may use beyond the always-granted imports.
    pub capabilities: Capabilities,
}

/// One application's sandbox.
pub struct Sandbox {
    engine: Engine,
    linker: Arc<SharedLinker>,
    env: Arc<AppEnvironment>,
    limits: Arc<SandboxLimits>,
    isolation: Isolation,
    deadline_ticks: u64,
    /// Most bytes one crossing from the plugin into the host may carry (see `new_store`).
    hostcall_bytes: usize,
}

impl Sandbox {
    /// A sandbox for `env` with these limits. A memory cap above the engine's ceiling is
    /// lowered to it, with a warning.
    pub fn new(
        engine: Engine,
        linker: Arc<SharedLinker>,
        env: AppEnvironment,
        mut limits: SandboxLimits,
        isolation: Isolation,
    ) -> Sandbox {
        let ceiling = engine.config().max_memory_bytes;
        if limits.memory_bytes > ceiling {
            // The gateway refuses such a config at start; an embedder gets the ceiling.
            tracing::warn!(
                app = %env.name,
                asked = limits.memory_bytes,
                ceiling,
                "the application's memory cap is above the engine's ceiling (EngineConfig::max_memory_bytes); lowered to it"
            );
            limits.memory_bytes = ceiling;
        }
        let deadline_ticks = engine.deadline_ticks(limits.deadline);
        Sandbox {
            engine,
            linker,
            hostcall_bytes: hostcall_bytes(&limits),
            env: Arc::new(env),
            limits: Arc::new(limits),
            isolation,
            deadline_ticks,
        }
    }

    /// The application this sandbox belongs to.
    pub fn app(&self) -> &str {
        &self.env.name
    }

    /// The application's shared state.
    pub fn environment(&self) -> &AppEnvironment {
        &self.env
    }

    /// Its limits.
    pub fn limits(&self) -> &SandboxLimits {
        &self.limits
    }

    /// How its plugin instances are isolated.
    pub fn isolation(&self) -> Isolation {
        self.isolation
    }

    /// A store for one instance of a plugin with this grant, under this sandbox's memory cap
    /// and deadline.
    pub(crate) fn new_store(&self, grant: Arc<PluginGrant>) -> wasmtime::Store<HostState> {
        let state = HostState::new(self.env.clone(), grant, self.limits.clone());
        let mut store = wasmtime::Store::new(self.engine.wasmtime(), state);
        store.limiter(|state| &mut state.memory);
        // The component's own handle tables (resources it makes with `resource.new`, and the
        // WASI handles it holds) live in host memory outside the memory cap (SER-001). A WASI
        // handle counts here and in the host's table (capped at `resource_handles`, see
        // `HostState::new`), so twice the cap lets the host's table, whose refusal names the
        // limit, be the one a WASI leak reaches first.
        store.set_max_component_handles(self.limits.resource_handles.saturating_mul(2));
        // Every string or list the plugin hands the host (an import's arguments, its answer)
        // is copied out of its memory first: at most this much per crossing, so that a
        // plugin filling its memory and passing all of it to `log` or `kv` cannot make the
        // host hold that much again per concurrent call.
        store.set_hostcall_fuel(self.hostcall_bytes);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(self.deadline_ticks);
        store
    }

    /// Type-checks a compiled component against its world and this process's imports, and
    /// prepares it for fast instantiation in this sandbox. In fresh-instance isolation, a
    /// plugin that exports `prepare` is pre-initialised with its configuration first (see
    /// `prepare.rs`); `module_bytes` are the bytes `compiled` was compiled from.
    pub fn load(
        &self,
        compiled: &CompiledComponent,
        module_bytes: &[u8],
        setup: PluginSetup,
    ) -> Result<Plugin, LoadError> {
        serde_json::from_str::<serde_json::Value>(&setup.config_json).map_err(LoadError::Config)?;
        let grant = Arc::new(PluginGrant {
            app: self.env.name.clone(),
            name: setup.name.clone(),
            config_json: setup.config_json.into(),
            capabilities: setup.capabilities,
        });
        let prepared;
        let compiled = if !prepare::offers_prepare(compiled) {
            compiled
        } else if self.isolation == Isolation::FreshPerRequest {
            prepared = prepare::prepared(self, compiled, module_bytes, &grant)
                .map_err(LoadError::Prepare)?;
            &prepared
        } else {
            let known = compiled.pres.get(&self.linker, setup.kind);
            let pre = known.as_ref().map(|(_, _, pre)| pre.instance_pre());
            prepare::check(self, compiled, &grant, pre).map_err(LoadError::Prepare)?;
            compiled
        };
        // A snapshot made for this configuration is a component of its own, never shared; the
        // module itself is type-checked once for every application that loads it.
        let (found, contract, pre) = match compiled.pres.get(&self.linker, setup.kind) {
            Some(known) => known,
            None => {
                let checked = self.type_check(compiled, setup.kind)?;
                compiled.pres.put(&self.linker, setup.kind, &checked);
                checked
            }
        };
        let label = PluginLabel {
            name: setup.name,
            kind: found,
            version: setup.version,
            sha256: hex::encode(compiled.sha256),
        };
        Ok(Plugin::new(
            grant,
            label,
            contract,
            pre,
            self.engine.warm().clone(),
        ))
    }

    /// Checks a component against its world, the declared kind and this process's imports
    /// (the pre-instantiation), and its exports against their types. What every load of a
    /// module refuses (wrong world, unmet imports, mistyped exports) is refused here.
    fn type_check(
        &self,
        compiled: &CompiledComponent,
        declared: Option<PluginKind>,
    ) -> Result<(PluginKind, Contract, KindPre), LoadError> {
        let component = &compiled.component;
        let found = PluginKind::of_component_declared(component, self.engine.wasmtime(), declared)
            .ok_or(LoadError::UnknownWorld)?;
        if let Some(declared) = declared {
            if declared != found {
                return Err(LoadError::WrongWorld { declared, found });
            }
        }
        let contract = Contract::of_component(component, self.engine.wasmtime())?;
        let instance_pre =
            self.linker
                .0
                .instantiate_pre(component)
                .map_err(|error| LoadError::Imports {
                    contract: contract.clone(),
                    source: error.into(),
                })?;
        let export_error = |error: wasmtime::Error| LoadError::ExportType {
            kind: found,
            export: match found {
                PluginKind::Authorizer => "authorize",
                PluginKind::Authenticator => "authenticate",
                PluginKind::Filter => "filter",
            },
            contract: contract.clone(),
            reason: format!("{error:#}"),
        };
        let v0_1 = contract.line == ContractLine::V0_1;
        let pre = match found {
            PluginKind::Authorizer if v0_1 => KindPre::AuthorizerV0_1(
                legacy::bindings::authorizer::AuthorizerPre::new(instance_pre)
                    .map_err(export_error)?,
            ),
            PluginKind::Authenticator if v0_1 => KindPre::AuthenticatorV0_1(
                legacy::bindings::authenticator::AuthenticatorPre::new(instance_pre)
                    .map_err(export_error)?,
            ),
            PluginKind::Filter if v0_1 => KindPre::FilterV0_1(
                legacy::bindings::filter::FilterPre::new(instance_pre).map_err(export_error)?,
            ),
            PluginKind::Authorizer => KindPre::Authorizer(
                bindings::authorizer::AuthorizerPre::new(instance_pre).map_err(export_error)?,
            ),
            PluginKind::Authenticator => KindPre::Authenticator(
                bindings::authenticator::AuthenticatorPre::new(instance_pre)
                    .map_err(export_error)?,
            ),
            PluginKind::Filter => KindPre::Filter(
                bindings::filter::FilterPre::new(instance_pre).map_err(export_error)?,
            ),
        };
        Ok((found, contract, pre))
    }

    /// Asks an authorizer about a request whose authentication state is already settled.
    pub fn authorize(
        &self,
        plugin: &Plugin,
        request: &AccessRequest,
        now: u64,
    ) -> Result<Verdict, Failure> {
        let grant = plugin.grant.capabilities;
        plugin.call(
            self,
            &request.originator,
            |store, bound| match bound {
                Bound::Authorizer(authorizer) => {
                    plugin.authorize_borrowed(store, authorizer, request, now, grant)
                }
                Bound::AuthorizerV0_1(authorizer) => authorizer
                    .call_authorize(store, &legacy::request(request, now, grant))
                    .map(legacy::decision),
                _ => Err(wrong_stage(plugin)),
            },
            |decision| convert::verdict(decision, &self.limits),
        )
    }

    /// Asks an authenticator about a credential.
    pub fn authenticate(
        &self,
        plugin: &Plugin,
        request: &AccessRequest,
        credential: &Credential,
        now: u64,
    ) -> Result<AuthOutcome, Failure> {
        let grant = plugin.grant.capabilities;
        let wit_credential = bindings::wit::Credential {
            scheme: credential.scheme.clone(),
            value: credential.value.clone(),
        };
        let limits = self.limits.clone();
        plugin.call(
            self,
            &request.originator,
            |store, bound| match bound {
                Bound::Authenticator(authenticator) => authenticator.call_authenticate(
                    store,
                    &convert::request(request, now, grant),
                    &wit_credential,
                ),
                Bound::AuthenticatorV0_1(authenticator) => authenticator
                    .call_authenticate(
                        store,
                        &legacy::request(request, now, grant),
                        &legacy::credential(&wit_credential),
                    )
                    .map(legacy::auth_result),
                _ => Err(wrong_stage(plugin)),
            },
            |result| convert::auth_outcome(result, &limits),
        )
    }

    /// Passes a response through a filter.
    pub fn filter(
        &self,
        plugin: &Plugin,
        request: &AccessRequest,
        response: &ResponseBody,
        now: u64,
    ) -> Result<FilterOutcome, Failure> {
        let grant = plugin.grant.capabilities;
        let wit_response = bindings::wit::Response {
            status: response.status,
            content_type: response.content_type.clone(),
            body: response.body.clone(),
        };
        let limits = self.limits.clone();
        plugin.call(
            self,
            &request.originator,
            |store, bound| match bound {
                Bound::Filter(filter) => {
                    filter.call_filter(store, &convert::request(request, now, grant), &wit_response)
                }
                Bound::FilterV0_1(filter) => filter
                    .call_filter(
                        store,
                        &legacy::request(request, now, grant),
                        &legacy::response(&wit_response),
                    )
                    .map(legacy::filter_result),
                _ => Err(wrong_stage(plugin)),
            },
            |result| convert::filter_outcome(result, &limits),
        )
    }
}

impl PluginSetup {
    /// A plugin named `name` with this configuration (JSON), any kind, no capabilities.
    pub fn new(name: impl Into<String>, config_json: impl Into<String>) -> PluginSetup {
        PluginSetup {
            name: name.into(),
            kind: None,
            version: None,
            config_json: config_json.into(),
            capabilities: Capabilities::NONE,
        }
    }

    /// Grants a capability.
    pub fn grant(mut self, capability: Capability) -> PluginSetup {
        self.capabilities.grant(capability);
        self
    }
}
