//! An application as the pipeline sees it: its sandbox, its plugins by stage, its mode.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::engine::{CompiledComponent, Engine, EngineError};
use crate::sandbox::{
    AppEnvironment, AppKeys, GroupDirectory, Isolation, KvNamespace, LoadError, Plugin,
    PluginHealth, PluginKind, PluginLabel, PluginSetup, Sandbox, SandboxLimits, SharedLinker,
    StaticKeys,
};

/// Enforce decisions, or only report them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    pub setup: PluginSetup,
    pub bytes: Arc<[u8]>,
}

/// Everything needed to install one application.
pub struct AppSpec {
    pub name: String,
    pub mode: Mode,
    pub isolation: Isolation,
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
pub enum InstallError {
    #[error("application name {0:?} is not allowed: use 1-64 letters, digits, '-', '_' or '.', not starting with '.'")]
    BadName(String),
    #[error("plugin {plugin:?} of application {app:?}: {source}")]
    Compile {
        app: String,
        plugin: String,
        source: EngineError,
    },
    #[error("plugin {plugin:?} of application {app:?}: {source}")]
    Load {
        app: String,
        plugin: String,
        source: LoadError,
    },
    #[error("application {app:?} has two plugins named {plugin:?}")]
    DuplicatePlugin { app: String, plugin: String },
    #[error("application {app:?}: initial key-value entry {key:?} exceeds the application's key-value limits")]
    KeyValue { app: String, key: String },
}

/// An installed application.
pub struct App {
    pub(crate) sandbox: Sandbox,
    pub(crate) mode: Mode,
    pub(crate) authenticators: Vec<Plugin>,
    pub(crate) authorizers: Vec<Plugin>,
    pub(crate) filters: Vec<Plugin>,
}

/// One plugin's state for health reports.
#[derive(Clone, Debug, Serialize)]
pub struct PluginStatus {
    #[serde(flatten)]
    pub label: Arc<PluginLabel>,
    #[serde(flatten)]
    pub health: PluginHealth,
}

/// One application's state for health reports.
#[derive(Clone, Debug, Serialize)]
pub struct AppStatus {
    pub app: String,
    pub mode: Mode,
    pub isolation: Isolation,
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
            sandbox,
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
            let compiled = compile(&source.bytes).map_err(|source| InstallError::Compile {
                app: spec.name.clone(),
                plugin: plugin_name.clone(),
                source,
            })?;
            let plugin = app
                .sandbox
                .load(&compiled, source.setup)
                .map_err(|source| InstallError::Load {
                    app: spec.name.clone(),
                    plugin: plugin_name,
                    source,
                })?;
            match plugin.kind() {
                PluginKind::Authenticator => app.authenticators.push(plugin),
                PluginKind::Authorizer => app.authorizers.push(plugin),
                PluginKind::Filter => app.filters.push(plugin),
            }
        }
        Ok(app)
    }

    pub fn name(&self) -> &str {
        self.sandbox.app()
    }

    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// Idle warm instances across the application's plugins.
    pub fn warm_instances(&self) -> usize {
        self.plugins().map(Plugin::warm_instances).sum()
    }

    fn plugins(&self) -> impl Iterator<Item = &Plugin> {
        self.authenticators
            .iter()
            .chain(&self.authorizers)
            .chain(&self.filters)
    }

    pub fn status(&self) -> AppStatus {
        AppStatus {
            app: self.name().to_string(),
            mode: self.mode,
            isolation: self.sandbox.isolation(),
            plugins: self
                .plugins()
                .map(|plugin| PluginStatus {
                    label: plugin.label().clone(),
                    health: plugin.health(),
                })
                .collect(),
        }
    }
}

/// Application and plugin names end up in paths, logs and metrics labels.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}
