//! The local harness behind `palisade eval` and `palisade test`: one plugin in a sandbox of
//! its own, with host state a developer sets by hand (time, key-value entries, groups, keys),
//! and a single call of whatever kind the plugin is.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};

use palisade_core::engine::{CompiledComponent, Engine, EngineConfig};
use palisade_core::request::{AccessRequest, Credential, ResponseBody};
use palisade_core::sandbox::{
    AppEnvironment, AppKeys, AuthOutcome, Capabilities, Failure, FilterOutcome, GroupDirectory,
    Isolation, KvNamespace, PluginKind, PluginSetup, Sandbox, SandboxLimits, SharedLinker,
    StaticKeys, Verdict,
};

/// An engine and linker for local runs.
pub struct Harness {
    engine: Engine,
    linker: Arc<SharedLinker>,
    /// Where this run keeps its compiled artifacts (removed when the harness goes). Each case
    /// gets a sandbox of its own; in fresh-instance isolation each one pre-initialises its
    /// plugin, and cases that share a configuration then share the compiled snapshot.
    _scratch: tempfile::TempDir,
}

/// The host state one call sees.
pub struct HostSetup {
    pub config_json: String,
    pub capabilities: Capabilities,
    pub limits: SandboxLimits,
    pub isolation: Isolation,
    pub kv: Vec<(String, Vec<u8>)>,
    pub groups: HashMap<String, HashSet<String>>,
    pub keys: Arc<dyn AppKeys>,
}

impl Default for HostSetup {
    fn default() -> Self {
        HostSetup {
            config_json: "{}".into(),
            capabilities: Capabilities::NONE,
            limits: SandboxLimits::default(),
            isolation: Isolation::FreshPerRequest,
            kv: Vec::new(),
            groups: HashMap::new(),
            keys: Arc::new(StaticKeys::new()),
        }
    }
}

/// What the plugin answered, whatever its kind; a failure stays a failure so the caller can
/// show it (the pipeline would turn it into a deny).
#[derive(Debug)]
pub enum Answer {
    Authorizer(Result<Verdict, Failure>),
    Authenticator(Result<AuthOutcome, Failure>),
    Filter(Result<FilterOutcome, Failure>),
}

/// A plugin file, compiled once and reusable for many calls.
pub struct LoadedFile {
    pub name: String,
    /// The component's bytes: fresh-instance sandboxes pre-initialise from them.
    pub bytes: std::sync::Arc<[u8]>,
    pub compiled: CompiledComponent,
    pub kind: PluginKind,
}

impl Harness {
    pub fn new() -> anyhow::Result<Harness> {
        let scratch = tempfile::Builder::new()
            .prefix("palisade-harness-")
            .tempdir()
            .context("creating a scratch folder for compiled artifacts")?;
        let engine = Engine::new(EngineConfig {
            // Local runs load one or two plugins; no need to reserve a big pool.
            pool_instances: 16,
            // A case file or `eval` asks for the memory cap it means to test with; a local
            // run has no gateway-wide budget to protect, so it is not lowered.
            max_memory_bytes: palisade_core::engine::MAX_MEMORY_CEILING,
            cache_dir: Some(scratch.path().to_path_buf()),
            ..EngineConfig::default()
        })?;
        let linker =
            Arc::new(SharedLinker::new(&engine).map_err(|error| anyhow::anyhow!("{error:#}"))?);
        Ok(Harness {
            engine,
            linker,
            _scratch: scratch,
        })
    }

    /// Loads a plugin by reference name (`acp`, `token-auth`, `geo-privacy`) or file path.
    pub fn load(&self, plugin: &str, relative_to: Option<&Path>) -> anyhow::Result<LoadedFile> {
        let (name, bytes) = match palisade_artifacts::reference(plugin) {
            Some(bytes) => (plugin.to_string(), bytes.to_vec()),
            None => {
                let path = match relative_to {
                    Some(base) => base.join(plugin),
                    None => Path::new(plugin).to_path_buf(),
                };
                let bytes = std::fs::read(&path).with_context(|| {
                    format!(
                        "cannot read plugin {} (not a reference plugin name either: acp, token-auth, geo-privacy)",
                        path.display()
                    )
                })?;
                let name = path
                    .file_stem()
                    .map(|stem| stem.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "plugin".into());
                (name, bytes)
            }
        };
        let compiled = self
            .engine
            .compile(&bytes)
            .with_context(|| format!("cannot compile plugin {plugin}"))?;
        let Some(kind) = PluginKind::of_component(&compiled.component, self.engine.wasmtime())
        else {
            bail!("plugin {plugin} exports none of authorize, authenticate or filter");
        };
        Ok(LoadedFile {
            name,
            bytes: bytes.into(),
            compiled,
            kind,
        })
    }

    /// A sandbox holding just this plugin with this host state.
    pub fn sandbox(
        &self,
        file: &LoadedFile,
        setup: HostSetup,
    ) -> anyhow::Result<(Sandbox, palisade_core::sandbox::Plugin)> {
        let kv = KvNamespace::new();
        for (key, value) in &setup.kv {
            if kv.set(key, value, &setup.limits).is_err() {
                bail!("key-value entry {key:?} exceeds the key-value limits");
            }
        }
        let env = AppEnvironment {
            name: "local".into(),
            kv,
            groups: GroupDirectory::new(setup.groups),
            keys: setup.keys,
        };
        let sandbox = Sandbox::new(
            self.engine.clone(),
            self.linker.clone(),
            env,
            setup.limits,
            setup.isolation,
        );
        let plugin = sandbox.load(
            &file.compiled,
            &file.bytes,
            PluginSetup {
                name: file.name.clone(),
                kind: None,
                version: None,
                config_json: setup.config_json,
                capabilities: setup.capabilities,
            },
        )?;
        Ok((sandbox, plugin))
    }

    /// One call of the plugin's kind. Authenticators need a credential and filters a
    /// response; a missing one is an error naming what to add.
    pub fn call(
        &self,
        file: &LoadedFile,
        setup: HostSetup,
        request: &AccessRequest,
        credential: Option<&Credential>,
        response: Option<&ResponseBody>,
    ) -> anyhow::Result<Answer> {
        let (sandbox, plugin) = self.sandbox(file, setup)?;
        let now = request
            .request_time
            .unwrap_or_else(palisade_core::request::now_unix);
        Ok(match file.kind {
            PluginKind::Authorizer => Answer::Authorizer(sandbox.authorize(&plugin, request, now)),
            PluginKind::Authenticator => {
                let Some(credential) = credential.or(request.credential.as_ref()) else {
                    bail!(
                        "{} is an authenticator: give the request a credential (scheme and value)",
                        file.name
                    );
                };
                Answer::Authenticator(sandbox.authenticate(&plugin, request, credential, now))
            }
            PluginKind::Filter => {
                let Some(response) = response else {
                    bail!(
                        "{} is a filter: give a response (status, content type and body)",
                        file.name
                    );
                };
                Answer::Filter(sandbox.filter(&plugin, request, response, now))
            }
        })
    }
}

impl Answer {
    /// The outcome's name, as case files spell it: failures read as the pipeline would
    /// treat them (a failed authorizer denies, a failed authenticator rejects, a failed
    /// filter blocks).
    pub fn outcome(&self) -> &'static str {
        match self {
            Answer::Authorizer(Ok(Verdict::Permit)) => "permit",
            Answer::Authorizer(Ok(Verdict::NotApplicable)) => "not-applicable",
            Answer::Authorizer(Ok(Verdict::Deny(_)) | Err(_)) => "deny",
            Answer::Authenticator(Ok(AuthOutcome::Authenticated { .. })) => "authenticated",
            Answer::Authenticator(Ok(AuthOutcome::NotApplicable)) => "not-applicable",
            Answer::Authenticator(Ok(AuthOutcome::Rejected { .. }) | Err(_)) => "rejected",
            Answer::Filter(Ok(FilterOutcome::Unchanged)) => "unchanged",
            Answer::Filter(Ok(FilterOutcome::Rewrite(_))) => "rewrite",
            Answer::Filter(Ok(FilterOutcome::Block(_)) | Err(_)) => "block",
        }
    }

    /// The reason that goes with a deny, rejection or block; for failures, the failure.
    pub fn reason(&self) -> Option<String> {
        match self {
            Answer::Authorizer(Ok(Verdict::Deny(reason)))
            | Answer::Authenticator(Ok(AuthOutcome::Rejected { reason }))
            | Answer::Filter(Ok(FilterOutcome::Block(reason))) => Some(reason.clone()),
            Answer::Authorizer(Err(failure))
            | Answer::Authenticator(Err(failure))
            | Answer::Filter(Err(failure)) => Some(format!("plugin {failure}")),
            _ => None,
        }
    }

    /// The failure, if the plugin gave no usable answer.
    pub fn failure(&self) -> Option<&Failure> {
        match self {
            Answer::Authorizer(Err(failure))
            | Answer::Authenticator(Err(failure))
            | Answer::Filter(Err(failure)) => Some(failure),
            _ => None,
        }
    }
}

/// Reads a request file (JSON); `app` may be left out since local runs have one application.
pub fn read_request(path: &Path) -> anyhow::Result<AccessRequest> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the request {}", path.display()))?;
    let mut value: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("the request {} is not valid JSON", path.display()))?;
    if let Some(object) = value.as_object_mut() {
        object.entry("app").or_insert_with(|| "local".into());
    }
    serde_json::from_value(value)
        .with_context(|| format!("the request {} is not a valid request", path.display()))
}

/// Reads a plugin configuration file, checking that it is JSON; none means `{}`.
pub fn read_config(path: Option<&Path>) -> anyhow::Result<String> {
    let Some(path) = path else {
        return Ok("{}".into());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the configuration {}", path.display()))?;
    serde_json::from_str::<serde_json::Value>(&text)
        .with_context(|| format!("the configuration {} is not valid JSON", path.display()))?;
    Ok(text)
}
