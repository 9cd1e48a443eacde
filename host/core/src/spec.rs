//! An application spec: what an embedder hands the runtime to install one application, in
//! TOML or JSON, with the shape of one `[[app]]` table of the gateway configuration
//! (`examples/gateway.toml`) restricted to the keys that belong to the runtime:
//!
//! ```toml
//! name = "lights"
//! mode = "enforce"                    # or "monitor"
//! isolation = "warm"                  # or "fresh-per-request"
//! [limits]                            # SandboxLimits: memory_bytes, deadline_ms, ...
//! deadline_ms = 20
//! [groups]                            # group ID -> member originator IDs
//! operators = ["CAE-night-shift"]
//! [[plugin]]
//! plugin = "acp"                      # a reference plugin, or a path to a .wasm component
//! kind = "authorizer"                 # checked against the component when given
//! capabilities = ["groups"]
//! [plugin.config]                     # inline configuration (JSON for the plugin), or
//! policies = []                       # config_file = "policy.json"
//! ```
//!
//! The gateway's HTTP keys (`paths`, `originators`, `consent_real_identities`, `cse_groups`,
//! `registration`, `key`, `allow_unsigned`) are refused by name rather than ignored: an
//! embedder who copies an app table from a gateway config learns at once that, embedded,
//! routing, originator authentication, pseudonyms and module signatures are its own job.
//!
//! Every binding (the C API, the Python package) reads specs here, so one spec means the same
//! everywhere. This module uses only what the crate re-exports at its root; the embedded
//! reference plugins (`palisade-artifacts`) are passed in by the binding.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::{AppSpec, Capability, Isolation, Mode, PluginKind, PluginSetup, SandboxLimits};
use serde::Deserialize;

/// Largest spec document accepted: room for thousands of policy rules inline, and a bound on
/// what one install call can make the parser allocate. Default and only value: 4 MiB.
pub const MAX_SPEC_BYTES: usize = 4 << 20;

/// Largest module file a spec may name, read before anything else looks at it: the engine's
/// own structural limit (`ModuleLimits::max_module_bytes`, 64 MiB) refuses larger ones
/// anyway, and this keeps a spec naming `/dev/zero` or a huge file from filling memory.
pub const MAX_MODULE_FILE_BYTES: u64 = 64 << 20;

/// Largest plugin configuration file (`config_file`), the same bound as the spec itself.
pub const MAX_CONFIG_FILE_BYTES: u64 = MAX_SPEC_BYTES as u64;

/// Smallest memory cap a plugin can run under: one WebAssembly page.
const MIN_PLUGIN_MEMORY_BYTES: usize = 64 << 10;

/// The text format of a spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpecFormat {
    /// TOML, as in the gateway configuration.
    Toml,
    /// JSON, with the same keys.
    Json,
}

/// Why a spec cannot be installed. Each names the place (line and key where known) and the
/// problem, in a sentence an embedder can show as it is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// The document is larger than [`MAX_SPEC_BYTES`].
    #[error("the spec is {length} bytes, more than the {limit} accepted")]
    TooLarge {
        /// The document's length.
        length: usize,
        /// [`MAX_SPEC_BYTES`].
        limit: usize,
    },
    /// The document does not parse, or a key or value is wrong.
    #[error("{}{}{message}", line.map(|l| format!("line {l}: ")).unwrap_or_default(), key.as_ref().map(|k| format!("{k}: ")).unwrap_or_default())]
    Invalid {
        /// 1-based line of the problem, when the parser knows it.
        line: Option<usize>,
        /// The key, as a path (`plugin[1].capabilities[0]`), when known.
        key: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// A file the spec names (module or configuration) cannot be read.
    #[error("{key}: cannot read {}", path.display())]
    Read {
        /// The key that names the file.
        key: String,
        /// The file, as resolved.
        path: PathBuf,
        /// Why it cannot be read.
        source: std::io::Error,
    },
}

impl SpecError {
    fn at(key: impl Into<String>, message: impl Into<String>) -> SpecError {
        SpecError::Invalid {
            line: None,
            key: Some(key.into()),
            message: message.into(),
        }
    }
}

/// One application, as written in a spec.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppDocument {
    /// The application's name: 1-64 letters, digits, `-`, `_` or `.`, not starting with `.`.
    pub name: String,
    /// `enforce` (default) or `monitor`.
    #[serde(default)]
    pub mode: Mode,
    /// `warm` (default) or `fresh-per-request`.
    #[serde(default)]
    pub isolation: Isolation,
    /// Per-call limits of the application's plugins; refused when one would make every call
    /// fail, or when the memory cap is above the engine's ceiling.
    #[serde(default)]
    pub limits: SandboxLimits,
    /// Group ID → member originator IDs (for `<group>` ACP entries).
    #[serde(default)]
    pub groups: BTreeMap<String, Vec<String>>,
    /// The plugins, in stage order.
    #[serde(default, rename = "plugin")]
    pub plugins: Vec<PluginDocument>,
}

/// One plugin of an application, as written in a spec.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginDocument {
    /// Name within the application; default: the plugin reference or the file's stem.
    #[serde(default)]
    pub name: Option<String>,
    /// `acp`, `token-auth`, `geo-privacy`, or a path to a .wasm component (relative to the
    /// base folder the spec is read with).
    pub plugin: String,
    /// Checked against what the component implements, when given.
    #[serde(default)]
    pub kind: Option<PluginKind>,
    /// Reported with the plugin's decisions.
    #[serde(default)]
    pub version: Option<String>,
    /// Capabilities granted to this plugin.
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    /// Inline configuration, a table (TOML) or object (JSON).
    #[serde(default)]
    pub config: Option<serde_json::Map<String, serde_json::Value>>,
    /// Or a JSON file holding it, relative to the base folder.
    #[serde(default)]
    pub config_file: Option<PathBuf>,
}

/// The keys of a gateway `[[app]]` table (and of its plugins) that are the gateway's, not
/// the runtime's.
const GATEWAY_KEYS: [&str; 7] = [
    "paths",
    "originators",
    "consent_real_identities",
    "cse_groups",
    "registration",
    "key",
    "allow_unsigned",
];

/// A spec read from text: the document, checked, with every file it names resolved against
/// a base folder. [`Spec::into_app_spec`] loads the plugin bytes.
#[derive(Debug)]
pub struct Spec {
    /// The document as written.
    pub document: AppDocument,
    base_dir: PathBuf,
}

impl Spec {
    /// Parses and checks `text`. Relative paths in it are resolved against `base_dir`.
    pub fn parse(text: &str, format: SpecFormat, base_dir: &Path) -> Result<Spec, SpecError> {
        if text.len() > MAX_SPEC_BYTES {
            return Err(SpecError::TooLarge {
                length: text.len(),
                limit: MAX_SPEC_BYTES,
            });
        }
        let document: AppDocument = match format {
            SpecFormat::Toml => parse_toml(text)?,
            SpecFormat::Json => parse_json(text)?,
        };
        check(&document)?;
        Ok(Spec {
            document,
            base_dir: base_dir.to_path_buf(),
        })
    }

    /// The application's name.
    pub fn name(&self) -> &str {
        &self.document.name
    }

    /// The runtime's [`AppSpec`]: each plugin's component read, each configuration as JSON.
    /// `references` gives the bytes of a plugin named by reference (`acp`, `token-auth`,
    /// `geo-privacy`: the binding passes the embedded reference plugins); any other name is
    /// a file. `memory_ceiling` is the engine's `max_memory_bytes`: a cap above it is
    /// refused, as the gateway refuses it, rather than silently lowered.
    pub fn into_app_spec(
        self,
        memory_ceiling: usize,
        references: &dyn Fn(&str) -> Option<&'static [u8]>,
    ) -> Result<AppSpec, SpecError> {
        let document = self.document;
        if document.limits.memory_bytes > memory_ceiling {
            return Err(SpecError::at(
                "limits.memory_bytes",
                format!(
                    "{} is above the engine's ceiling of {memory_ceiling} bytes: lower it, or raise the engine's max_memory_bytes",
                    document.limits.memory_bytes
                ),
            ));
        }
        let mut spec = AppSpec::new(document.name.clone());
        spec.mode = document.mode;
        spec.isolation = document.isolation;
        spec.limits = document.limits;
        spec.groups = document
            .groups
            .into_iter()
            .map(|(group, members)| (group, members.into_iter().collect::<HashSet<_>>()))
            .collect::<HashMap<_, _>>();
        for (index, plugin) in document.plugins.into_iter().enumerate() {
            let key = format!("plugin[{index}]");
            let (default_name, bytes) =
                plugin_bytes(&self.base_dir, &key, &plugin.plugin, references)?;
            let config_json = match (&plugin.config, &plugin.config_file) {
                (Some(config), _) => serde_json::Value::Object(config.clone()).to_string(),
                (None, Some(file)) => config_file(&self.base_dir, &key, file)?,
                (None, None) => "{}".to_string(),
            };
            let mut setup = PluginSetup::new(plugin.name.unwrap_or(default_name), config_json);
            setup.kind = plugin.kind;
            setup.version = plugin.version;
            for capability in plugin.capabilities {
                setup = setup.grant(capability);
            }
            spec = spec.plugin(setup, bytes);
        }
        Ok(spec)
    }
}

/// Reads a spec file of at most [`MAX_SPEC_BYTES`], as UTF-8 text.
pub fn read_spec_file(path: &Path) -> Result<String, SpecError> {
    let read_error = |source| SpecError::Read {
        key: "spec".into(),
        path: path.to_path_buf(),
        source,
    };
    let bytes = read_bounded(path, MAX_SPEC_BYTES as u64).map_err(read_error)?;
    String::from_utf8(bytes).map_err(|error| {
        read_error(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            error.utf8_error(),
        ))
    })
}

fn parse_toml(text: &str) -> Result<AppDocument, SpecError> {
    let toml_error = |key: Option<String>, error: &toml::de::Error| SpecError::Invalid {
        line: error.span().map(|span| line_of(text, span.start)),
        key,
        message: error.message().trim().to_string(),
    };
    let deserializer = toml::de::Deserializer::parse(text).map_err(|e| toml_error(None, &e))?;
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        let mut error = toml_error(key_of(&path), error.inner());
        explain_gateway_key(&mut error);
        error
    })
}

fn parse_json(text: &str) -> Result<AppDocument, SpecError> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let document = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let mut error = SpecError::Invalid {
            line: Some(error.inner().line()).filter(|line| *line > 0),
            key: key_of(&path),
            message: strip_position(&error.inner().to_string()),
        };
        explain_gateway_key(&mut error);
        error
    })?;
    // Trailing text after the object is an error, not ignored.
    deserializer.end().map_err(|error| SpecError::Invalid {
        line: Some(error.line()),
        key: None,
        message: strip_position(&error.to_string()),
    })?;
    Ok(document)
}

/// The path as a key, or none for the document itself.
fn key_of(path: &str) -> Option<String> {
    (path != "." && !path.is_empty()).then(|| path.to_string())
}

/// Says why a gateway key copied into a spec is refused.
fn explain_gateway_key(error: &mut SpecError) {
    if let SpecError::Invalid { message, .. } = error {
        let gateway_key = GATEWAY_KEYS
            .iter()
            .any(|key| message.contains(&format!("unknown field `{key}`")));
        if gateway_key {
            message.push_str(
                " (a gateway key: an embedder routes requests and establishes originators, pseudonyms, keys and module signatures itself)",
            );
        }
    }
}

/// serde_json appends " at line L column C", which the error already carries as a line.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message.to_string(),
    }
}

/// What the serde attributes cannot say: names, refusal of the gateway's keys with a reason,
/// limits under which no call can succeed, one configuration per plugin.
fn check(document: &AppDocument) -> Result<(), SpecError> {
    if let Some(problem) = limits_problem(&document.limits) {
        return Err(SpecError::at("limits", problem));
    }
    if document.plugins.is_empty() {
        return Err(SpecError::at(
            "plugin",
            format!(
                "application {:?} has no plugin: add a [[plugin]] (with no authorizer every request is denied)",
                document.name
            ),
        ));
    }
    let mut names = HashSet::new();
    for (index, plugin) in document.plugins.iter().enumerate() {
        let key = format!("plugin[{index}]");
        if plugin.plugin.is_empty() {
            return Err(SpecError::at(
                format!("{key}.plugin"),
                "is empty: name a reference plugin (acp, token-auth, geo-privacy) or a .wasm file",
            ));
        }
        if plugin.config.is_some() && plugin.config_file.is_some() {
            return Err(SpecError::at(
                key,
                "has both config and config_file: give one",
            ));
        }
        if let Some(name) = &plugin.name {
            if !names.insert(name.clone()) {
                return Err(SpecError::at(
                    format!("{key}.name"),
                    format!("two plugins are named {name:?}"),
                ));
            }
        }
    }
    Ok(())
}

/// Why no plugin call could succeed under `limits`, if so. The same rules as the gateway's
/// `[app.limits]`.
fn limits_problem(limits: &SandboxLimits) -> Option<String> {
    if limits.memory_bytes < MIN_PLUGIN_MEMORY_BYTES {
        Some(format!(
            "memory_bytes = {} is below one WebAssembly page ({MIN_PLUGIN_MEMORY_BYTES}): no plugin can run",
            limits.memory_bytes
        ))
    } else if limits.deadline.is_zero() {
        Some("deadline_ms = 0 stops every plugin call before it starts".into())
    } else if limits.host_calls == 0 {
        Some("host_calls = 0 leaves a plugin unable even to read its configuration".into())
    } else if limits.max_reason_bytes == 0 {
        Some("max_reason_bytes = 0 turns every deny into a plugin failure".into())
    } else {
        None
    }
}

/// A plugin's default name and component bytes: an embedded reference plugin, or a file.
fn plugin_bytes(
    base_dir: &Path,
    key: &str,
    reference: &str,
    references: &dyn Fn(&str) -> Option<&'static [u8]>,
) -> Result<(String, Vec<u8>), SpecError> {
    if let Some(bytes) = references(reference) {
        return Ok((reference.to_string(), bytes.to_vec()));
    }
    let path = base_dir.join(reference);
    let bytes = read_bounded(&path, MAX_MODULE_FILE_BYTES).map_err(|source| SpecError::Read {
        key: format!("{key}.plugin"),
        path: path.clone(),
        source,
    })?;
    let stem = Path::new(reference)
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".into());
    Ok((stem, bytes))
}

/// A plugin's configuration file, which must hold one JSON object.
fn config_file(base_dir: &Path, key: &str, file: &Path) -> Result<String, SpecError> {
    let path = base_dir.join(file);
    let bytes = read_bounded(&path, MAX_CONFIG_FILE_BYTES).map_err(|source| SpecError::Read {
        key: format!("{key}.config_file"),
        path: path.clone(),
        source,
    })?;
    match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(value @ serde_json::Value::Object(_)) => Ok(value.to_string()),
        Ok(_) => Err(SpecError::at(
            format!("{key}.config_file"),
            format!("{} holds JSON that is not an object", path.display()),
        )),
        Err(error) => Err(SpecError::at(
            format!("{key}.config_file"),
            format!("{} is not valid JSON: {error}", path.display()),
        )),
    }
}

/// Reads at most `limit` bytes of `path`; a longer file is an error, not a truncation.
fn read_bounded(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("the file is larger than {limit} bytes"),
        ));
    }
    Ok(bytes)
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&byte| byte == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    use palisade_artifacts::reference;

    impl Spec {
        fn refused(self, ceiling: usize) -> String {
            match self.into_app_spec(ceiling, &reference) {
                Ok(_) => panic!("the spec was accepted"),
                Err(error) => palisade_types::Chain(&error).to_string(),
            }
        }
    }

    fn toml(text: &str) -> Result<Spec, SpecError> {
        Spec::parse(text, SpecFormat::Toml, Path::new("."))
    }

    fn json(text: &str) -> Result<Spec, SpecError> {
        Spec::parse(text, SpecFormat::Json, Path::new("."))
    }

    const ACP: &str = "name = \"lights\"\n[[plugin]]\nplugin = \"acp\"\ncapabilities = [\"groups\"]\n[plugin.config]\npolicies = []\n";

    #[test]
    fn toml_and_json_read_the_same_app() {
        let from_toml = toml(ACP)
            .unwrap()
            .into_app_spec(64 << 20, &reference)
            .unwrap();
        let from_json = json(
            r#"{"name": "lights", "plugin": [{"plugin": "acp", "capabilities": ["groups"], "config": {"policies": []}}]}"#,
        )
        .unwrap()
        .into_app_spec(64 << 20, &reference)
        .unwrap();
        for spec in [&from_toml, &from_json] {
            assert_eq!(spec.name, "lights");
            assert_eq!(spec.plugins.len(), 1);
            let setup = &spec.plugins[0].setup;
            assert_eq!(setup.name, "acp");
            assert_eq!(setup.config_json, r#"{"policies":[]}"#);
            assert!(setup.capabilities.allows(Capability::Groups));
            assert!(!setup.capabilities.allows(Capability::Kv));
            assert_eq!(&*spec.plugins[0].bytes, palisade_artifacts::ACP);
        }
    }

    #[test]
    fn errors_name_the_line_and_key() {
        let error = toml(
            "name = \"a\"\n[[plugin]]\nplugin = \"acp\"\ncapabilities = [\"kv\", \"teleport\"]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.starts_with("line 4: plugin[0].capabilities[1]: unknown variant `teleport`"),
            "{error}"
        );
        let error =
            json("{\"name\": \"a\",\n \"plugin\": [{\"plugin\": \"acp\", \"kind\": \"judge\"}]}")
                .unwrap_err()
                .to_string();
        assert!(
            error.starts_with("line 2: plugin[0].kind: unknown variant `judge`"),
            "{error}"
        );
    }

    #[test]
    fn gateway_only_keys_are_refused_by_name() {
        for key in &GATEWAY_KEYS[..6] {
            let text = format!("name = \"a\"\n{key} = []\n[[plugin]]\nplugin = \"acp\"\n");
            let error = toml(&text).unwrap_err().to_string();
            assert!(
                error.contains(&format!("unknown field `{key}`")),
                "{key}: {error}"
            );
            assert!(error.contains("(a gateway key"), "{key}: {error}");
        }
        let error = json(r#"{"name": "a", "plugin": [{"plugin": "acp", "allow_unsigned": true}]}"#)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("unknown field `allow_unsigned`") && error.contains("(a gateway key"),
            "{error}"
        );
        let error = toml("name = \"a\"\nnmae = 1\n[[plugin]]\nplugin = \"acp\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("unknown field `nmae`") && !error.contains("gateway"),
            "{error}"
        );
    }

    #[test]
    fn unusable_specs_are_refused() {
        let cases = [
            ("name = \"a\"\n", "has no plugin"),
            ("name = \"a\"\n[limits]\ndeadline_ms = 0\n[[plugin]]\nplugin = \"acp\"\n", "deadline_ms = 0"),
            ("name = \"a\"\n[limits]\nmemory_bytes = 100\n[[plugin]]\nplugin = \"acp\"\n", "below one WebAssembly page"),
            ("name = \"a\"\n[[plugin]]\nplugin = \"\"\n", "plugin[0].plugin: is empty"),
            ("name = \"a\"\n[[plugin]]\nplugin = \"acp\"\nconfig_file = \"p.json\"\n[plugin.config]\nx = 1\n", "both config and config_file"),
            ("name = \"a\"\n[[plugin]]\nplugin = \"acp\"\nname = \"p\"\n[[plugin]]\nplugin = \"acp\"\nname = \"p\"\n", "two plugins are named \"p\""),
            ("name = \"a\"\n[[plugin]]\nplugin = \"acp\"\nconfig = 3\n", "plugin[0].config"),
        ];
        for (text, expected) in cases {
            let error = toml(text).unwrap_err().to_string();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
        assert!(toml("name = \"a.b-c_d\"\n[[plugin]]\nplugin = \"acp\"\n").is_ok());
    }

    #[test]
    fn a_memory_cap_above_the_ceiling_is_refused_not_lowered() {
        let text =
            "name = \"a\"\n[limits]\nmemory_bytes = 33554432\n[[plugin]]\nplugin = \"acp\"\n";
        let error = toml(text).unwrap().refused(16 << 20);
        assert!(
            error.starts_with("limits.memory_bytes: 33554432 is above the engine's ceiling"),
            "{error}"
        );
        assert!(toml(text)
            .unwrap()
            .into_app_spec(32 << 20, &reference)
            .is_ok());
    }

    #[test]
    fn oversized_documents_and_files_are_refused() {
        let huge = format!("name = \"a\"\n# {}\n", "x".repeat(MAX_SPEC_BYTES));
        assert!(matches!(toml(&huge), Err(SpecError::TooLarge { .. })));
        let under = format!(
            "# {}\nname = \"a\"\n[[plugin]]\nplugin = \"acp\"\n",
            "x".repeat(MAX_SPEC_BYTES - 100)
        );
        assert!(toml(&under).is_ok());

        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.wasm");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(MAX_MODULE_FILE_BYTES + 1)
            .unwrap();
        let spec = Spec::parse(
            "name = \"a\"\n[[plugin]]\nplugin = \"big.wasm\"\n",
            SpecFormat::Toml,
            dir.path(),
        )
        .unwrap();
        let error = spec.refused(64 << 20);
        assert!(
            error.contains("plugin[0].plugin: cannot read") && error.contains("larger than"),
            "{error}"
        );
    }

    #[test]
    fn files_resolve_against_the_base_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("policy.json"), r#"{"policies": []}"#).unwrap();
        std::fs::write(dir.path().join("list.json"), "[1]").unwrap();
        std::fs::write(dir.path().join("mine.wasm"), palisade_artifacts::ACP).unwrap();
        let spec = Spec::parse(
            "name = \"a\"\n[[plugin]]\nplugin = \"mine.wasm\"\nconfig_file = \"policy.json\"\n",
            SpecFormat::Toml,
            dir.path(),
        )
        .unwrap()
        .into_app_spec(64 << 20, &reference)
        .unwrap();
        assert_eq!(spec.plugins[0].setup.name, "mine");
        assert_eq!(spec.plugins[0].setup.config_json, r#"{"policies":[]}"#);
        let error = Spec::parse(
            "name = \"a\"\n[[plugin]]\nplugin = \"acp\"\nconfig_file = \"list.json\"\n",
            SpecFormat::Toml,
            dir.path(),
        )
        .unwrap()
        .refused(64 << 20);
        assert!(error.contains("not an object"), "{error}");
        let error = Spec::parse(
            "name = \"a\"\n[[plugin]]\nplugin = \"missing.wasm\"\n",
            SpecFormat::Toml,
            dir.path(),
        )
        .unwrap()
        .refused(64 << 20);
        assert!(
            error.starts_with("plugin[0].plugin: cannot read"),
            "{error}"
        );
    }

    #[test]
    fn trailing_json_is_refused() {
        let error = json(r#"{"name": "a", "plugin": [{"plugin": "acp"}]} {}"#)
            .unwrap_err()
            .to_string();
        assert!(error.contains("trailing characters"), "{error}");
    }
}
