//! From a checked [`GatewayConfig`] to applications installed in a [`Runtime`]: plugin bytes,
//! their configuration, keys in the gateway keystore, groups, and the privacy split
//! (SER-011/018/025, see [`super::privacy`]).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use super::config::{AppConfig, ConfigError, GatewayConfig, PluginConfig};
use super::privacy::{rewrite_markers, Pseudonymizer};
use super::AUTHN_SUFFIX;
use palisade_core::{
    AppKeys, KeyUseError, KindOfComponent as _, PluginKind, PluginSetup, StaticKeys,
};
use palisade_core::{AppSpec, InstallError, Mode, Runtime, SharedModules};
use palisade_keys::{KeyError, KeyHandle, KeyKind, KeyScope, KeyStore};
use palisade_registry::{TrustAnchors, VerifiedModule, VerifyPolicy};

/// Why the gateway could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The configuration is wrong (file, line and key named).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The keystore failed.
    #[error("the gateway keystore failed")]
    Keys(#[from] KeyError),
    /// The engine cannot be created.
    #[error("the WebAssembly engine cannot be created")]
    Engine(#[from] palisade_core::EngineError),
    /// A PKCS#11 keystore without its PIN.
    #[error("the keystore is a PKCS#11 token but the environment variable {0} with its user PIN is not set")]
    HsmPin(String),
    /// A PKCS#11 keystore in a build without it.
    #[error("this build has no PKCS#11 support (the `pkcs11` feature is off)")]
    HsmUnsupported,
    /// The audit log cannot be opened (SER-016: no gateway without it).
    #[error("the audit log cannot be set up")]
    Audit(#[from] crate::audit::AuditSetupError),
    /// The data folder cannot be created.
    #[error("the data folder {path} cannot be used")]
    Data {
        /// The folder.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// How requests reach an installed application.
pub struct AppRoute {
    /// The application's name.
    pub name: String,
    /// Target path prefixes, without a trailing `/`.
    pub paths: Vec<String>,
    /// Whether the app enforces, or only reports what it would refuse.
    pub mode: Mode,
    /// SER-015: plugins and audit see real originator IDs.
    pub consent_real_identities: bool,
    /// `None` with consent.
    pub pseudonyms: Option<Pseudonymizer>,
    /// The sandbox that runs this app's authenticators on the real request, when privacy
    /// keeps them apart from the authorizers.
    pub authn_app: Option<String>,
    /// Whether any filter plugin is installed (responses skip the filter stage otherwise).
    pub has_filters: bool,
    /// Where this app's plugin calls run (inline until one fails or is slow).
    pub placement: super::placement::Placement,
    /// Plugins that run unverified although trust roots are configured, because the operator
    /// set `allow_unsigned = true` on them (development only; shown in `/health`).
    pub unsigned_plugins: Vec<String>,
    /// Who may register an `<AE>` through this app (`[app.registration]`).
    pub registration: super::registration::RegistrationPolicy,
}

impl AppRoute {
    /// Whether `target` lies under one of this app's prefixes (on `/` boundaries).
    pub fn covers(&self, target: &str) -> Option<usize> {
        self.paths
            .iter()
            .filter(|prefix| {
                target == prefix.as_str()
                    || prefix.is_empty()
                    || target
                        .strip_prefix(prefix.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            })
            .map(|prefix| prefix.len())
            .max()
    }
}

/// Installs every application of `config`, in order. Keys and pseudonym secrets live in
/// `store`.
pub fn install_apps(
    config: &GatewayConfig,
    runtime: &Runtime,
    store: &Arc<dyn KeyStore>,
) -> Result<Vec<Arc<AppRoute>>, SetupError> {
    let mut routes = Vec::new();
    let anchors = trust_anchors(config)?;
    create_missing_keys(config, store)?;
    // One compilation per distinct module for the whole gateway, shared by every app that
    // uses it: compiled code is the bulk of an app's memory (~600 KiB for acp), and loading
    // it once per app made 1,000 apps cost ~650 MiB and 100 apps ~130 ms of boot.
    let mut modules = Modules::default();
    for (index, app) in config.apps.iter().enumerate() {
        routes.push(Arc::new(install_app(
            config,
            index,
            app,
            runtime,
            store,
            anchors.as_ref(),
            &mut modules,
        )?));
    }
    Ok(routes)
}

/// Creates, in one keystore batch, every key the applications need and do not have yet:
/// each application's pseudonym secret (unless it consented to real identities) and its
/// `[[app.key]] generate` keys. With the software keystore that is one index write for the
/// whole start instead of one fsynced file per key (a 10,000-app first start took minutes).
/// Installing each app then finds its keys as on any later start. A `generate` value that is
/// not a key kind is left for [`app_keys`] to refuse with its place in the file.
fn create_missing_keys(
    config: &GatewayConfig,
    store: &Arc<dyn KeyStore>,
) -> Result<(), SetupError> {
    let mut missing = Vec::new();
    let mut asked = HashSet::new();
    for app in &config.apps {
        let scope = KeyScope::App(app.name.get_ref().clone());
        let existing = store.list(&scope)?;
        let mut want = |kind: KeyKind, label: String| {
            let found = existing
                .iter()
                .any(|info| info.label == label && info.kind == kind);
            // Two apps of one name are refused by the config check; never ask twice here.
            if !found && asked.insert((scope.clone(), label.clone())) {
                missing.push(palisade_keys::KeyRequest {
                    scope: scope.clone(),
                    kind,
                    label,
                });
            }
        };
        if !app.consent_real_identities {
            want(KeyKind::HmacSecret, crate::privacy::SECRET_LABEL.to_owned());
        }
        for key in &app.keys {
            if let Some(kind) = key
                .generate
                .as_ref()
                .and_then(|g| generated_kind(g.get_ref()))
            {
                want(kind, format!("key:{}", key.handle.get_ref()));
            }
        }
    }
    if !missing.is_empty() {
        tracing::info!(keys = missing.len(), "creating the applications' keys");
        store.generate_many(&missing)?;
    }
    Ok(())
}

/// The key kind an `[[app.key]] generate` value names.
fn generated_kind(value: &str) -> Option<KeyKind> {
    match value {
        "ed25519" => Some(KeyKind::Ed25519Signing),
        "hmac" => Some(KeyKind::HmacSecret),
        _ => None,
    }
}

/// The modules of one start-up: each plugin reference read once (one buffer, so that the
/// apps sharing it are matched without hashing it again) and each module compiled once.
#[derive(Default)]
struct Modules {
    /// Plugin reference (a reference plugin's name or a file path) → (name, bytes).
    loaded: HashMap<String, (String, Arc<[u8]>)>,
    compiled: SharedModules,
}

fn install_app(
    config: &GatewayConfig,
    index: usize,
    app: &AppConfig,
    runtime: &Runtime,
    store: &Arc<dyn KeyStore>,
    anchors: Option<&TrustAnchors>,
    modules: &mut Modules,
) -> Result<AppRoute, SetupError> {
    let name = app.name.get_ref().clone();
    let pseudonyms = if app.consent_real_identities {
        None
    } else {
        Some(Pseudonymizer::open(store.clone(), &name)?)
    };
    let keys: Arc<dyn AppKeys> = Arc::new(app_keys(config, index, app, store)?);
    // Group members are originator IDs: the authorizers must see them as they see the
    // originator, pseudonymized unless consent.
    let mut groups = HashMap::new();
    for (group, members) in &app.groups {
        let mut set = HashSet::new();
        for member in members {
            set.insert(match &pseudonyms {
                Some(p) => p.pseudonym(member)?,
                None => member.clone(),
            });
        }
        groups.insert(group.clone(), set);
    }

    let mut main = AppSpec::new(name.clone());
    let mut authn = AppSpec::new(format!("{name}{AUTHN_SUFFIX}"));
    for spec in [&mut main, &mut authn] {
        spec.mode = app.mode;
        spec.isolation = app.isolation;
        spec.limits = app.limits.clone();
        spec.keys = keys.clone();
    }
    main.groups = groups;
    let mut has_filters = false;
    let mut has_authorizer = false;
    let mut authenticators = 0;
    let mut unsigned_plugins = Vec::new();
    // Each plugin's name with where its configuration is written, to name the place when the
    // plugin refuses that configuration at load.
    let mut config_places = Vec::new();
    for (plugin_index, plugin) in app.plugins.iter().enumerate() {
        let key = format!("app[{index}].plugin[{plugin_index}]");
        let reference = plugin.plugin.get_ref();
        let (plugin_name, mut bytes) = match modules.loaded.get(reference) {
            Some(loaded) => loaded.clone(),
            None => {
                let (name, bytes) = plugin_bytes(config, &key, plugin)?;
                let loaded = (name, Arc::<[u8]>::from(bytes));
                modules.loaded.insert(reference.clone(), loaded.clone());
                loaded
            }
        };
        // SER-022: with trust roots, a module file runs only when signed for this app (its
        // kind is checked once the component says what it implements). The chain is checked
        // before the bytes are compiled; what runs is the component the manifest hashes.
        let mut signed: Option<VerifiedModule> = None;
        if let Some(anchors) =
            anchors.filter(|_| palisade_artifacts::reference(reference).is_none())
        {
            if plugin.allow_unsigned {
                tracing::error!(
                    app = %name,
                    plugin = %reference,
                    "SER-022 OFF for this plugin: running an UNSIGNED module although trust roots are configured, because allow_unsigned = true (development only; remove it in production)"
                );
                unsigned_plugins.push(plugin.name.clone().unwrap_or_else(|| plugin_name.clone()));
            } else {
                let verified = verify_module(config, &key, plugin, &name, &bytes, anchors)?;
                bytes = Arc::from(verified.component.as_slice());
                signed = Some(verified);
            }
        }
        let component = modules
            .compiled
            .get_or_compile(runtime.engine(), &bytes)
            .map_err(|error| {
                config.error_at(
                    plugin.plugin.span(),
                    format!("{key}.plugin"),
                    format!(
                        "cannot compile {reference}: {}",
                        palisade_types::Chain(&error)
                    ),
                )
            })?;
        let kind = PluginKind::of_component_declared(
            &component.component,
            runtime.engine().wasmtime(),
            plugin.kind,
        )
        .ok_or_else(|| {
            config.error_at(
                plugin.plugin.span(),
                format!("{key}.plugin"),
                "the component exports none of authorize, authenticate or filter",
            )
        })?;
        if let Some(verified) = &signed {
            check_signed(config, &key, plugin, verified, kind)?;
        }
        has_authorizer |= kind == PluginKind::Authorizer;
        let mut config_json = plugin_config(config, &key, plugin)?;
        let mut map = |id: &str| match &pseudonyms {
            Some(p) => p.pseudonym(id),
            None => Ok(id.to_string()),
        };
        if kind != PluginKind::Authenticator {
            rewrite_markers(&mut config_json, &mut map)?;
        }
        let setup = PluginSetup {
            name: plugin.name.clone().unwrap_or(plugin_name),
            kind: plugin.kind,
            version: match &signed {
                Some(verified) => Some(verified.manifest.version.to_string()),
                None => plugin.version.clone(),
            },
            config_json: config_json.to_string(),
            capabilities: plugin.capabilities.iter().copied().collect(),
        };
        config_places.push((setup.name.clone(), config_place(&key, plugin)));
        has_filters |= kind == PluginKind::Filter;
        // SER-011: with pseudonyms, authenticators run apart, on the real request.
        if kind == PluginKind::Authenticator && pseudonyms.is_some() {
            authenticators += 1;
            authn = authn.plugin(setup, bytes);
        } else {
            main = main.plugin(setup, bytes);
        }
    }
    if !has_authorizer {
        return Err(config
            .error_at(
                app.name.span(),
                format!("app[{index}].plugin"),
                format!("application {name:?} has no authorizer (only authenticators or filters), so every request would be denied: add one, e.g. plugin = \"acp\""),
            )
            .into());
    }
    // A plugin that fails its load (most often: its `prepare` refused its configuration) is
    // reported at that plugin's configuration, with the plugin's own reason.
    let install_error = |error: InstallError| match &error {
        InstallError::Load { plugin, source, .. } => {
            match config_places.iter().find(|(name, _)| name == plugin) {
                Some((_, (span, key))) => config.error_at(
                    span.clone(),
                    key.clone(),
                    format!(
                        "plugin {plugin:?} of application {name:?}: {}",
                        palisade_types::Chain(source)
                    ),
                ),
                None => config.error_at(
                    app.name.span(),
                    format!("app[{index}]"),
                    palisade_types::Chain(&error).to_string(),
                ),
            }
        }
        _ => config.error_at(
            app.name.span(),
            format!("app[{index}]"),
            palisade_types::Chain(&error).to_string(),
        ),
    };
    let authn_app = if authenticators > 0 {
        let authn_name = authn.name.clone();
        runtime
            .install_compiled(authn, &modules.compiled)
            .map_err(install_error)?;
        Some(authn_name)
    } else {
        runtime.remove(&authn.name);
        None
    };
    runtime
        .install_compiled(main, &modules.compiled)
        .map_err(install_error)?;
    Ok(AppRoute {
        name,
        paths: app
            .paths
            .iter()
            .map(|path| path.get_ref().trim_end_matches('/').to_string())
            .collect(),
        mode: app.mode,
        consent_real_identities: app.consent_real_identities,
        pseudonyms,
        authn_app,
        has_filters,
        placement: Default::default(),
        unsigned_plugins,
        registration: super::registration::RegistrationPolicy::new(
            app.name.get_ref(),
            &app.registration,
        ),
    })
}

/// The trust roots of `[admin]`, when any are configured: then every `.wasm` plugin of the
/// config file must be signed (SER-022).
fn trust_anchors(config: &GatewayConfig) -> Result<Option<TrustAnchors>, ConfigError> {
    let Some(admin) = config
        .admin
        .as_ref()
        .filter(|admin| !admin.trust_roots.is_empty())
    else {
        return Ok(None);
    };
    let roots: Vec<_> = admin
        .trust_roots
        .iter()
        .map(|root| config.base_dir().join(root))
        .collect();
    TrustAnchors::from_public_key_files(&roots)
        .map(Some)
        .map_err(|error| ConfigError::Invalid {
            file: config.file.clone(),
            line: None,
            key: Some("admin.trust_roots".into()),
            message: palisade_types::Chain(&error).to_string(),
        })
}

/// Verifies a module file of the config with the registry's checks: signed by a publisher a
/// trust root delegated, for `app` (and the declared kind, if any), within the size limit.
fn verify_module(
    config: &GatewayConfig,
    key: &str,
    plugin: &PluginConfig,
    app: &str,
    bytes: &[u8],
    anchors: &TrustAnchors,
) -> Result<VerifiedModule, ConfigError> {
    let mut policy = VerifyPolicy::new(anchors, palisade_core::now_unix());
    policy.expected_app = Some(app);
    policy.expected_kind = plugin.kind;
    if let Some(admin) = &config.admin {
        policy.max_size = admin.max_module_bytes;
    }
    palisade_registry::verify_with(bytes, &policy).map_err(|error| {
        config.error_at(
            plugin.plugin.span(),
            format!("{key}.plugin"),
            format!(
                "{} is refused: [admin] trust_roots are configured and {} (sign it with `palisade sign` for application {app:?}, or set allow_unsigned = true on this plugin for development)",
                plugin.plugin.get_ref(),
                palisade_types::Chain(&error)
            ),
        )
    })
}

/// What a verified module's manifest must agree with: the kind the component implements and
/// the capabilities the operator grants (only requested ones may be granted).
fn check_signed(
    config: &GatewayConfig,
    key: &str,
    plugin: &PluginConfig,
    verified: &VerifiedModule,
    kind: PluginKind,
) -> Result<(), ConfigError> {
    let at =
        |message: String| config.error_at(plugin.plugin.span(), format!("{key}.plugin"), message);
    if verified.manifest.kind != kind {
        let signed_kind = verified.manifest.kind.name();
        return Err(at(format!(
            "{} is signed as a module of kind {signed_kind} but the component is of kind {kind}",
            plugin.plugin.get_ref()
        )));
    }
    for capability in &plugin.capabilities {
        let requested = verified.manifest.capabilities.contains(capability);
        if !requested {
            return Err(config.error_at(
                plugin.plugin.span(),
                format!("{key}.capabilities"),
                format!(
                    "{} is granted `{}` but its signed manifest does not request it",
                    plugin.plugin.get_ref(),
                    capability.name()
                ),
            ));
        }
    }
    Ok(())
}

/// Where a plugin's configuration is written: the inline table, the `config_file` key, or
/// (no configuration) the plugin reference.
fn config_place(key: &str, plugin: &PluginConfig) -> (std::ops::Range<usize>, String) {
    if let Some(table) = &plugin.config {
        (table.span(), format!("{key}.config"))
    } else if let Some(file) = &plugin.config_file {
        (file.span(), format!("{key}.config_file"))
    } else {
        (plugin.plugin.span(), format!("{key}.plugin"))
    }
}

/// A plugin's name and component bytes: an embedded reference plugin, or a file relative to
/// the config file.
fn plugin_bytes(
    config: &GatewayConfig,
    key: &str,
    plugin: &PluginConfig,
) -> Result<(String, Vec<u8>), ConfigError> {
    let reference = plugin.plugin.get_ref();
    if let Some(bytes) = palisade_artifacts::reference(reference) {
        return Ok((reference.clone(), bytes.to_vec()));
    }
    let path = config.base_dir().join(reference);
    let bytes = std::fs::read(&path).map_err(|error| {
        config.error_at(
            plugin.plugin.span(),
            format!("{key}.plugin"),
            format!(
                "{reference:?} is not a reference plugin (acp, token-auth, geo-privacy) and {} cannot be read: {error}",
                path.display()
            ),
        )
    })?;
    let stem = Path::new(reference)
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".into());
    Ok((stem, bytes))
}

/// The plugin's configuration as JSON: inline table, file, or `{}`.
fn plugin_config(
    config: &GatewayConfig,
    key: &str,
    plugin: &PluginConfig,
) -> Result<serde_json::Value, ConfigError> {
    if let Some(table) = &plugin.config {
        return serde_json::to_value(table.get_ref()).map_err(|error| {
            config.error_at(
                table.span(),
                format!("{key}.config"),
                format!("cannot be expressed as JSON: {error}"),
            )
        });
    }
    let Some(file) = &plugin.config_file else {
        return Ok(serde_json::json!({}));
    };
    let path = config.base_dir().join(file.get_ref());
    let text = std::fs::read_to_string(&path).map_err(|error| {
        config.error_at(
            file.span(),
            format!("{key}.config_file"),
            format!("cannot read {}: {error}", path.display()),
        )
    })?;
    serde_json::from_str(&text).map_err(|error| {
        config.error_at(
            file.span(),
            format!("{key}.config_file"),
            format!("{} is not valid JSON: {error}", path.display()),
        )
    })
}

fn app_keys(
    config: &GatewayConfig,
    index: usize,
    app: &AppConfig,
    store: &Arc<dyn KeyStore>,
) -> Result<GatewayKeys, SetupError> {
    let scope = KeyScope::App(app.name.get_ref().clone());
    let existing = store.list(&scope)?;
    let mut keys = GatewayKeys {
        store: store.clone(),
        scope: scope.clone(),
        stored: HashMap::new(),
        statics: StaticKeys::new(),
    };
    for (key_index, key) in app.keys.iter().enumerate() {
        let handle = key.handle.get_ref();
        let at = |span, message: String| {
            config.error_at(span, format!("app[{index}].key[{key_index}]"), message)
        };
        if let Some(public) = &key.ed25519_public {
            let bytes: [u8; 32] = hex::decode(public.get_ref().trim())
                .ok()
                .and_then(|bytes| bytes.try_into().ok())
                .ok_or_else(|| at(public.span(), "ed25519_public must be 64 hex digits".into()))?;
            let verifying = palisade_keys::check_ed25519_public(&bytes)
                .map_err(|error| at(public.span(), format!("ed25519_public: {error}")))?;
            keys.statics
                .insert_ed25519_public(handle.clone(), verifying);
        }
        if let Some(generate) = &key.generate {
            let Some(kind) = generated_kind(generate.get_ref()) else {
                return Err(at(
                    generate.span(),
                    format!(
                        "generate = {:?}: expected \"ed25519\" or \"hmac\"",
                        generate.get_ref()
                    ),
                )
                .into());
            };
            let label = format!("key:{handle}");
            let found = existing
                .iter()
                .find(|info| info.label == label && info.kind == kind);
            let stored = match found {
                Some(info) => info.handle.clone(),
                None => store.generate(&scope, kind, &label).map_err(|error| {
                    at(
                        key.handle.span(),
                        format!("generating: {}", palisade_types::Chain(&error)),
                    )
                })?,
            };
            keys.stored.insert(handle.clone(), stored);
        }
    }
    Ok(keys)
}

/// An application's keys: generated ones in the gateway keystore (used there, never
/// exported, SER-010) and configured public keys in memory.
pub struct GatewayKeys {
    store: Arc<dyn KeyStore>,
    scope: KeyScope,
    stored: HashMap<String, KeyHandle>,
    statics: StaticKeys,
}

impl AppKeys for GatewayKeys {
    fn verify_ed25519(
        &self,
        handle: &str,
        message: &[u8],
        signature: &[u8],
    ) -> Result<bool, KeyUseError> {
        let Some(stored) = self.stored.get(handle) else {
            return self.statics.verify_ed25519(handle, message, signature);
        };
        let Ok(signature) = <[u8; 64]>::try_from(signature) else {
            return Ok(false);
        };
        match self.store.verify(&self.scope, stored, message, &signature) {
            Ok(()) => Ok(true),
            Err(KeyError::BadSignature { .. }) => Ok(false),
            Err(KeyError::WrongKind { .. }) => Err(KeyUseError::WrongKeyType),
            Err(_) => Err(KeyUseError::UnknownKey),
        }
    }

    fn hmac_sha256(&self, handle: &str, message: &[u8]) -> Result<[u8; 32], KeyUseError> {
        let Some(stored) = self.stored.get(handle) else {
            return self.statics.hmac_sha256(handle, message);
        };
        self.store
            .hmac(&self.scope, stored, message)
            .map_err(|error| match error {
                KeyError::WrongKind { .. } => KeyUseError::WrongKeyType,
                _ => KeyUseError::UnknownKey,
            })
    }
}

/// The keystore handle of an application's generated key (`[[app.key]] generate`), for the
/// demo's token minting.
pub fn generated_key(
    store: &dyn KeyStore,
    app: &str,
    handle: &str,
) -> Result<Option<KeyHandle>, KeyError> {
    let label = format!("key:{handle}");
    Ok(store
        .list(&KeyScope::App(app.to_string()))?
        .into_iter()
        .find(|info| info.label == label)
        .map(|info| info.handle))
}
