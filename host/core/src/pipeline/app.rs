//! An application as the pipeline sees it: its sandbox, its plugins by stage, its mode.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::engine::{CompiledComponent, Engine, EngineError};
use crate::sandbox::{
    AppEnvironment, AppKeys, Contract, GroupDirectory, Isolation, KvNamespace, LoadError, Plugin,
    PluginHealth, PluginKind, PluginLabel, PluginSetup, Sandbox, SandboxLimits, SharedLinker,
    StaticKeys,
};

/// Enforce decisions, or only report them.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Denies are denies.
    #[default]
    Enforce,
    /// Decide and log, then permit: for rolling out a new policy without breaking traffic.
    /// Filters still apply (privacy is never put in monitor mode).
    Monitor,
}

/// A plugin to load, with the bytes of its component.
#[derive(Clone)]
pub struct PluginSource {
    /// How the plugin is set up (name, kind, configuration, capabilities).
    pub setup: PluginSetup,
    /// The component's bytes.
    pub bytes: Arc<[u8]>,
}

/// Everything needed to install one application.
pub struct AppSpec {
    /// The application name (see [`valid_name`]).
    pub name: String,
    /// Enforce or monitor.
    pub mode: Mode,
    /// How plugin instances are isolated.
    pub isolation: Isolation,
    /// The sandbox limits.
    pub limits: SandboxLimits,
    /// Plugins in stage order; within a stage, in this order.
    pub plugins: Vec<PluginSource>,
    /// The application's keys, addressed by handle from its plugins.
    pub keys: Arc<dyn AppKeys>,
    /// The application's groups: group ID → member IDs.
    pub groups: HashMap<String, HashSet<String>>,
    /// Initial key-value entries.
    pub kv: Vec<(String, Vec<u8>)>,
}

impl AppSpec {
    /// An enforcing application with warm instances, default limits, no keys, no groups.
    pub fn new(name: impl Into<String>) -> AppSpec {
        AppSpec {
            name: name.into(),
            mode: Mode::Enforce,
            isolation: Isolation::Warm,
            limits: SandboxLimits::default(),
            plugins: Vec::new(),
            keys: Arc::new(StaticKeys::new()),
            groups: HashMap::new(),
            kv: Vec::new(),
        }
    }

    /// Adds a plugin.
    pub fn plugin(mut self, setup: PluginSetup, bytes: impl Into<Arc<[u8]>>) -> AppSpec {
        self.plugins.push(PluginSource {
            setup,
            bytes: bytes.into(),
        });
        self
    }
}

/// Why an application could not be installed. The previous installation, if any, stays.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InstallError {
    /// The application name is not allowed (palisade-types' name rule).
    #[error("application name {0:?} is not allowed: use 1-64 letters, digits, '-', '_' or '.', starting with a letter or digit, without \"..\"")]
    BadName(String),
    #[error("plugin {plugin:?} of application {app:?} does not compile")]
    /// A plugin did not compile.
    Compile {
        /// The application.
        app: String,
        /// The plugin.
        plugin: String,
        /// The underlying error.
        source: EngineError,
    },
    #[error("plugin {plugin:?} of application {app:?} cannot be loaded")]
    /// A plugin could not be loaded.
    Load {
        /// The application.
        app: String,
        /// The plugin.
        plugin: String,
        /// The underlying error.
        source: LoadError,
    },
    /// Two plugins of the application have one name.
    #[error("application {app:?} has two plugins named {plugin:?}")]
    DuplicatePlugin {
        /** The application. */
        app: String,
        /** The plugin. */
        plugin: String,
    },
    /// No application of this name is installed.
    #[error("unknown application {0:?}")]
    UnknownApp(String),
    /// An initial key-value entry is over the application's key-value limits.
    #[error("application {app:?}: initial key-value entry {key:?} exceeds the application's key-value limits")]
    KeyValue {
        /** The application. */
        app: String,
        /** The key-value entry's key. */
        key: String,
    },
}

/// An installed application.
///
/// Immutable once built: a change (a new plugin version, a removal) builds a new `App` that
/// shares the sandbox and the unchanged plugins, and replaces the old one in one step, so
/// decisions in flight finish on the version they started with (hot swap).
pub struct App {
    pub(crate) sandbox: Arc<Sandbox>,
    pub(crate) mode: Mode,
    pub(crate) authenticators: Vec<Arc<Plugin>>,
    pub(crate) authorizers: Vec<Arc<Plugin>>,
    pub(crate) filters: Vec<Arc<Plugin>>,
}

/// One plugin's state for health reports.
#[derive(Clone, Debug, Serialize)]
pub struct PluginStatus {
    #[serde(flatten)]
    /// Which plugin.
    pub label: Arc<PluginLabel>,
    /// The plugin contract the module was built against, e.g. `palisade:plugin@0.1.0`.
    pub contract: Contract,
    #[serde(flatten)]
    /// Its failures and quarantine.
    pub health: PluginHealth,
}

/// One application's state for health reports.
#[derive(Clone, Debug, Serialize)]
pub struct AppStatus {
    /// The application.
    pub app: String,
    /// Enforce or monitor.
    pub mode: Mode,
    /// How plugin instances are isolated.
    pub isolation: Isolation,
    /// Its plugins, in stage order.
    pub plugins: Vec<PluginStatus>,
}

impl App {
    pub(crate) fn build(
        engine: &Engine,
        linker: &Arc<SharedLinker>,
        spec: AppSpec,
        compile: impl Fn(&[u8]) -> Result<CompiledComponent, EngineError>,
    ) -> Result<App, InstallError> {
        if !valid_name(&spec.name) {
            return Err(InstallError::BadName(spec.name));
        }
        let kv = KvNamespace::new();
        for (key, value) in &spec.kv {
            kv.set(key, value, &spec.limits)
                .map_err(|_| InstallError::KeyValue {
                    app: spec.name.clone(),
                    key: key.clone(),
                })?;
        }
        let env = AppEnvironment {
            name: spec.name.clone(),
            kv,
            groups: GroupDirectory::new(spec.groups),
            keys: spec.keys,
        };
        let sandbox = Sandbox::new(
            engine.clone(),
            linker.clone(),
            env,
            spec.limits,
            spec.isolation,
        );
        let mut app = App {
            sandbox: Arc::new(sandbox),
            mode: spec.mode,
            authenticators: Vec::new(),
            authorizers: Vec::new(),
            filters: Vec::new(),
        };
        let mut names = HashSet::new();
        for source in spec.plugins {
            let plugin_name = source.setup.name.clone();
            if !names.insert(plugin_name.clone()) {
                return Err(InstallError::DuplicatePlugin {
                    app: spec.name,
                    plugin: plugin_name,
                });
            }
            let plugin = load_plugin(&app.sandbox, source, &compile)?;
            app.stage_mut(plugin.kind()).push(Arc::new(plugin));
        }
        Ok(app)
    }

    fn stage_mut(&mut self, kind: PluginKind) -> &mut Vec<Arc<Plugin>> {
        match kind {
            PluginKind::Authenticator => &mut self.authenticators,
            PluginKind::Authorizer => &mut self.authorizers,
            PluginKind::Filter => &mut self.filters,
        }
    }

    /// A copy of this application with the plugin named like `source` replaced by it (or
    /// added, at the end of its stage). The sandbox — key-value entries, groups, keys — and
    /// every other plugin, warm instances included, carry over.
    pub(crate) fn with_plugin(
        &self,
        source: PluginSource,
        compile: impl Fn(&[u8]) -> Result<CompiledComponent, EngineError>,
    ) -> Result<App, InstallError> {
        let plugin_name = source.setup.name.clone();
        let plugin = load_plugin(&self.sandbox, source, &compile)?;
        let mut next = self.without_plugin(&plugin_name);
        let stage = next.stage_mut(plugin.kind());
        let position = self
            .plugins()
            .filter(|existing| existing.kind() == plugin.kind())
            .position(|existing| existing.label().name == plugin_name)
            .unwrap_or(stage.len());
        stage.insert(position.min(stage.len()), Arc::new(plugin));
        Ok(next)
    }

    /// A copy of this application without the plugin `name`.
    pub(crate) fn without_plugin(&self, name: &str) -> App {
        let keep = |plugins: &Vec<Arc<Plugin>>| {
            plugins
                .iter()
                .filter(|plugin| plugin.label().name != name)
                .cloned()
                .collect()
        };
        App {
            sandbox: self.sandbox.clone(),
            mode: self.mode,
            authenticators: keep(&self.authenticators),
            authorizers: keep(&self.authorizers),
            filters: keep(&self.filters),
        }
    }

    /// The application name.
    pub fn name(&self) -> &str {
        self.sandbox.app()
    }

    /// The application's sandbox.
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// Idle warm instances across the application's plugins.
    pub fn warm_instances(&self) -> usize {
        self.plugins().map(|plugin| plugin.warm_instances()).sum()
    }

    pub(crate) fn plugins(&self) -> impl Iterator<Item = &Arc<Plugin>> {
        self.authenticators
            .iter()
            .chain(&self.authorizers)
            .chain(&self.filters)
    }

    /// The application's state for health reports.
    pub fn status(&self) -> AppStatus {
        AppStatus {
            app: self.name().to_string(),
            mode: self.mode,
            isolation: self.sandbox.isolation(),
            plugins: self
                .plugins()
                .map(|plugin| PluginStatus {
                    label: plugin.label().clone(),
                    contract: plugin.contract().clone(),
                    health: plugin.health(),
                })
                .collect(),
        }
    }
}

/// Compiles a plugin's component and loads it into an application's sandbox.
fn load_plugin(
    sandbox: &Sandbox,
    source: PluginSource,
    compile: &impl Fn(&[u8]) -> Result<CompiledComponent, EngineError>,
) -> Result<Plugin, InstallError> {
    let app = sandbox.app().to_string();
    let plugin = source.setup.name.clone();
    let compiled = compile(&source.bytes).map_err(|source| InstallError::Compile {
        app: app.clone(),
        plugin: plugin.clone(),
        source,
    })?;
    sandbox
        .load(&compiled, &source.bytes, source.setup)
        .map_err(|source| InstallError::Load {
            app,
            plugin,
            source,
        })
}

/// Application and plugin names end up in paths, logs and metrics labels: the one rule of
/// [`palisade_types::validate_name`], the same the module registry applies.
pub fn valid_name(name: &str) -> bool {
    palisade_types::validate_name("name", name).is_ok()
}
