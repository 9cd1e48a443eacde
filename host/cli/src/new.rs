//! `palisade new`: a plugin project outside any Palisade checkout, in Rust, Python or
//! JavaScript, that builds with one command and comes with a case file that passes.
//!
//! - Rust depends on `palisade-sdk` by version (the SDK this binary was built with) and, so
//!   that a stranger builds with no checkout and before that crate is on a registry, on a
//!   copy of it written into the project (`vendor/palisade-sdk`, embedded in this binary:
//!   `version` + `path`, so the project also publishes against the registry's crate).
//!   `--sdk PATH` builds against another SDK source folder instead (a checkout's
//!   `plugins/sdk`, when working on the SDK itself).
//! - Python (componentize-py) and JavaScript (componentize-js) projects get the contract's
//!   WIT, embedded in this binary, written into `wit/`: nothing else from Palisade is needed.
//!
//! The project is written into a temporary folder beside its destination and renamed into
//! place when complete, so a failure leaves nothing half-written.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// The contract, as this binary runs it: written into Python and JavaScript projects.
const WIT: &str = include_str!("../../../plugins/sdk/wit/palisade.wit");
/// The SDK's manifest, read for its version.
const SDK_MANIFEST: &str = include_str!("../../../plugins/sdk/Cargo.toml");
/// The guest workspace's manifest: the values the SDK's manifest inherits from it.
const SDK_WORKSPACE_MANIFEST: &str = include_str!("../../../plugins/Cargo.toml");
/// The SDK's sources, written into a Rust project under `vendor/palisade-sdk/` (the WIT is
/// [`WIT`]). `sdk_sources_are_all_embedded` fails when a file is added to the SDK and not here.
const SDK_SOURCES: [(&str, &str); 10] = [
    (
        "vendor/palisade-sdk/build.rs",
        include_str!("../../../plugins/sdk/build.rs"),
    ),
    (
        "vendor/palisade-sdk/README.md",
        include_str!("../../../plugins/sdk/README.md"),
    ),
    (
        "vendor/palisade-sdk/src/lib.rs",
        include_str!("../../../plugins/sdk/src/lib.rs"),
    ),
    (
        "vendor/palisade-sdk/src/config.rs",
        include_str!("../../../plugins/sdk/src/config.rs"),
    ),
    (
        "vendor/palisade-sdk/src/crypto.rs",
        include_str!("../../../plugins/sdk/src/crypto.rs"),
    ),
    (
        "vendor/palisade-sdk/src/groups.rs",
        include_str!("../../../plugins/sdk/src/groups.rs"),
    ),
    (
        "vendor/palisade-sdk/src/json.rs",
        include_str!("../../../plugins/sdk/src/json.rs"),
    ),
    (
        "vendor/palisade-sdk/src/kv.rs",
        include_str!("../../../plugins/sdk/src/kv.rs"),
    ),
    (
        "vendor/palisade-sdk/src/log.rs",
        include_str!("../../../plugins/sdk/src/log.rs"),
    ),
    (
        "vendor/palisade-sdk/src/request.rs",
        include_str!("../../../plugins/sdk/src/request.rs"),
    ),
];

/// The version of componentize-py and componentize-js the templates are tested with (the
/// ones `.ci/run` installs).
const COMPONENTIZE_PY: &str = "0.25.1";
const COMPONENTIZE_JS: &str = "0.23.0";
/// componentize-js imports it without declaring it.
const PREVIEW2_SHIM: &str = "0.25.0";

/// Create a plugin project (Rust, Python or JavaScript) with a passing case file.
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The project's name: 1-64 lower-case letters, digits and '-', starting with a letter.
    /// Also its folder (in the current directory, unless --dir) and its module's file name.
    name: String,
    /// What the plugin decides.
    #[arg(long, value_enum)]
    kind: Kind,
    /// The language to write it in.
    #[arg(long, value_enum, default_value_t = Lang::Rust)]
    lang: Lang,
    /// The folder to create (default: ./NAME). It must not exist yet.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Rust only: build against this palisade-sdk source folder (a `[patch.crates-io]`
    /// entry) instead of the crate from the registry.
    #[arg(long)]
    sdk: Option<PathBuf>,
}

/// The plugin kinds, one WIT world each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Authorizer,
    Authenticator,
    Filter,
}

/// The languages a project can be made in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Authorizer => "authorizer",
            Kind::Authenticator => "authenticator",
            Kind::Filter => "filter",
        }
    }
}

/// One file of a project: its path inside the project, its text, whether it is a script.
struct File {
    path: &'static str,
    text: String,
    executable: bool,
}

pub fn run(args: NewArgs) -> anyhow::Result<bool> {
    check_name(&args.name)?;
    if args.sdk.is_some() && args.lang != Lang::Rust {
        bail!("--sdk is for Rust projects: Python and JavaScript ones carry the contract's WIT");
    }
    let sdk = match &args.sdk {
        Some(path) => {
            let path = std::path::absolute(path)
                .with_context(|| format!("cannot resolve --sdk {}", path.display()))?;
            if !path.join("Cargo.toml").is_file() {
                bail!(
                    "--sdk {}: no Cargo.toml there (give the palisade-sdk crate's folder)",
                    path.display()
                );
            }
            Some(path)
        }
        None => None,
    };
    let destination = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    let files = project(&args.name, args.kind, args.lang, sdk.as_deref())?;
    write_project(&destination, &files)?;
    println!(
        "created {} ({} {}) in {}",
        args.name,
        match args.lang {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
            Lang::Js => "JavaScript",
        },
        args.kind.name(),
        destination.display()
    );
    println!("build: {}", build_command(args.lang));
    println!("test:  palisade test cases.toml");
    Ok(true)
}

/// The one command that builds a project of `lang`, run in its folder.
pub fn build_command(lang: Lang) -> &'static str {
    match lang {
        Lang::Rust => "cargo build --release",
        Lang::Python => "sh build.sh",
        Lang::Js => "npm run build",
    }
}

/// A name that is at once a Cargo package, an npm package and a file name everywhere.
fn check_name(name: &str) -> anyhow::Result<()> {
    const KEYWORDS: &[&str] = &[
        "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum",
        "extern", "false", "fn", "for", "if", "impl", "in", "let", "loop", "match", "mod", "move",
        "mut", "pub", "ref", "return", "self", "static", "struct", "super", "trait", "true",
        "type", "unsafe", "use", "where", "while", "test", "core", "std",
    ];
    let valid = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && !name.contains("--")
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        bail!(
            "{name:?} is not a usable project name: give 1-64 lower-case letters, digits and single '-', starting with a letter (it becomes a Cargo or npm package and a file name)"
        );
    }
    if KEYWORDS.contains(&name) {
        bail!("{name:?} is a reserved word in Rust or Cargo: choose another project name");
    }
    Ok(())
}

/// The WIT package version (`0.2.0`) of the embedded contract.
fn wit_version() -> &'static str {
    WIT.lines()
        .find_map(|line| line.trim().strip_prefix("package palisade:plugin@"))
        .and_then(|rest| rest.strip_suffix(';'))
        .expect("the embedded WIT declares package palisade:plugin@VERSION")
}

/// The version of the SDK this binary was built with.
fn sdk_version() -> &'static str {
    SDK_MANIFEST
        .lines()
        .find_map(|line| line.trim().strip_prefix("version = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .expect("plugins/sdk/Cargo.toml has a version")
}

/// The SDK's manifest as a crate of its own: what it inherits from the guest workspace
/// (`edition.workspace = true`, `wit-bindgen.workspace = true`) written out, as `cargo package`
/// does, so the copy builds outside that workspace.
fn vendored_sdk_manifest() -> anyhow::Result<String> {
    let mut manifest: toml::Table =
        toml::from_str(SDK_MANIFEST).context("the embedded SDK manifest does not parse")?;
    let workspace: toml::Table = toml::from_str(SDK_WORKSPACE_MANIFEST)
        .context("the embedded guest workspace manifest does not parse")?;
    let inherited = |section: &str| {
        workspace
            .get("workspace")
            .and_then(|value| value.get(section))
            .and_then(toml::Value::as_table)
            .cloned()
            .unwrap_or_default()
    };
    let is_inherited =
        |value: &toml::Value| value.get("workspace").and_then(toml::Value::as_bool) == Some(true);
    for (section, from) in [("package", "package"), ("dependencies", "dependencies")] {
        let values = inherited(from);
        let Some(table) = manifest
            .get_mut(section)
            .and_then(toml::Value::as_table_mut)
        else {
            continue;
        };
        for (key, value) in table.iter_mut() {
            if is_inherited(value) {
                *value = values.get(key).cloned().with_context(|| {
                    format!("the SDK's {section}.{key} is inherited but the guest workspace does not set it")
                })?;
            }
        }
    }
    Ok(format!(
        "# palisade-sdk {version}, as the palisade binary that created this project carries it.\n{}",
        toml::to_string(&manifest).context("cannot write the SDK manifest")?,
        version = sdk_version()
    ))
}

/// Every file of the project.
fn project(name: &str, kind: Kind, lang: Lang, sdk: Option<&Path>) -> anyhow::Result<Vec<File>> {
    let module = format!("{}.wasm", name.replace('-', "_"));
    let world = kind.name();
    let fill = |template: &str, plugin: &str, limits: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{plugin}}", plugin)
            .replace("{{limits}}", limits)
            .replace("{{wit_version}}", wit_version())
    };
    let cases_template = match kind {
        Kind::Authorizer => include_str!("new/authorizer.toml"),
        Kind::Authenticator => include_str!("new/authenticator.toml"),
        Kind::Filter => include_str!("new/filter.toml"),
    };
    // An interpreter inside takes 12-16 MiB idle: the whole of the 16 MiB default.
    let interpreter_limits = "\n# An interpreter inside takes 12-16 MiB idle, the whole of the default, and a\n# fresh instance of it tens of ms before its first answer on a busy machine: give it room\n# and time (a gateway app needs the same in its [app.limits]).\n[limits]\nmemory_bytes = 33554432\ndeadline_ms = 1000\n";
    let mut files = vec![File {
        path: ".gitignore",
        text: match lang {
            Lang::Rust => "/target\n".into(),
            Lang::Python => "*.wasm\n__pycache__/\n".into(),
            Lang::Js => "*.wasm\nnode_modules/\n".into(),
        },
        executable: false,
    }];
    match lang {
        Lang::Rust => {
            let plugin = format!("target/wasm32-wasip2/release/{module}");
            let patch = match sdk {
                Some(path) => {
                    let path = path.to_str().context(
                        "the --sdk path is not valid UTF-8, which Cargo.toml cannot hold",
                    )?;
                    format!(
                        "\n# Built against a palisade-sdk source folder instead of the registry's crate\n# (palisade new --sdk).\n[patch.crates-io]\npalisade-sdk = {{ path = {} }}\n",
                        toml::Value::String(path.to_string())
                    )
                }
                None => String::new(),
            };
            files.push(File {
                path: "Cargo.toml",
                text: format!(
                    "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\npublish = false\n\n[lib]\ncrate-type = [\"cdylib\"]\n\n[dependencies]\n{dependency}\n{patch}\n# A project of its own, even when created inside another Cargo workspace.\n[workspace]\n\n# Small, fast plugins: the gateway compiles them once and runs them millions of times.\n[profile.release]\nopt-level = 3\nlto = true\ncodegen-units = 1\npanic = \"abort\"\nstrip = \"debuginfo\"\n",
                    dependency = match sdk {
                        Some(_) => format!("palisade-sdk = \"{}\"", sdk_version()),
                        None => format!(
                            "# The SDK as this palisade binary carries it: builds with no checkout and\n# before the crate is on a registry; `cargo publish` uses the version.\npalisade-sdk = {{ version = \"{}\", path = \"vendor/palisade-sdk\" }}",
                            sdk_version()
                        ),
                    },
                ),
                executable: false,
            });
            if sdk.is_none() {
                files.push(File {
                    path: "vendor/palisade-sdk/Cargo.toml",
                    text: vendored_sdk_manifest()?,
                    executable: false,
                });
                files.push(File {
                    path: "vendor/palisade-sdk/wit/palisade.wit",
                    text: WIT.into(),
                    executable: false,
                });
                for (path, text) in SDK_SOURCES {
                    files.push(File {
                        path,
                        text: text.into(),
                        executable: false,
                    });
                }
            }
            files.push(File {
                path: ".cargo/config.toml",
                text: "# Plugins are WebAssembly components: `cargo build --release` builds one\n# (`rustup target add wasm32-wasip2` once).\n[build]\ntarget = \"wasm32-wasip2\"\n".into(),
                executable: false,
            });
            let source = match kind {
                Kind::Authorizer => include_str!("new/authorizer.rs"),
                Kind::Authenticator => include_str!("new/authenticator.rs"),
                Kind::Filter => include_str!("new/filter.rs"),
            };
            files.push(File {
                path: "src/lib.rs",
                text: fill(source, &plugin, ""),
                executable: false,
            });
            files.push(File {
                path: "cases.toml",
                text: fill(cases_template, &plugin, ""),
                executable: false,
            });
        }
        Lang::Python => {
            let source = match kind {
                Kind::Authorizer => include_str!("new/authorizer.py"),
                Kind::Authenticator => include_str!("new/authenticator.py"),
                Kind::Filter => include_str!("new/filter.py"),
            };
            files.push(File {
                path: "app.py",
                text: fill(source, &module, ""),
                executable: false,
            });
            files.push(File {
                path: "build.sh",
                text: format!(
                    "#!/bin/sh\n# Builds {module} from app.py against the contract in wit/.\n# Needs componentize-py: pip install componentize-py=={COMPONENTIZE_PY}\nset -e\ncd \"$(dirname \"$0\")\"\nexec componentize-py -d wit -w {world} componentize app -o {module}\n"
                ),
                executable: true,
            });
            files.push(File {
                path: "cases.toml",
                text: fill(cases_template, &module, interpreter_limits),
                executable: false,
            });
        }
        Lang::Js => {
            let source = match kind {
                Kind::Authorizer => include_str!("new/authorizer.js"),
                Kind::Authenticator => include_str!("new/authenticator.js"),
                Kind::Filter => include_str!("new/filter.js"),
            };
            files.push(File {
                path: "app.js",
                text: fill(source, &module, ""),
                executable: false,
            });
            // Written by hand to keep npm's usual key order; every value is a checked name
            // or a constant, so nothing needs escaping. Palisade offers no HTTP: leaving
            // wasi:http out of the build lets the component link.
            let package = format!(
                "{{\n  \"name\": \"{name}\",\n  \"private\": true,\n  \"type\": \"module\",\n  \"description\": \"A Palisade {world} plugin\",\n  \"scripts\": {{\n    \"build\": \"componentize-js app.js --wit wit --world-name {world} --disable http fetch-event -o {module}\"\n  }},\n  \"devDependencies\": {{\n    \"@bytecodealliance/componentize-js\": \"{COMPONENTIZE_JS}\",\n    \"@bytecodealliance/preview2-shim\": \"{PREVIEW2_SHIM}\"\n  }}\n}}\n"
            );
            files.push(File {
                path: "package.json",
                text: package,
                executable: false,
            });
            files.push(File {
                path: "cases.toml",
                text: fill(cases_template, &module, interpreter_limits),
                executable: false,
            });
        }
    }
    if lang != Lang::Rust {
        files.push(File {
            path: "wit/palisade.wit",
            text: WIT.to_string(),
            executable: false,
        });
    }
    files.push(File {
        path: "README.md",
        text: readme(name, kind, lang, sdk.is_some()),
        executable: false,
    });
    Ok(files)
}

fn readme(name: &str, kind: Kind, lang: Lang, patched: bool) -> String {
    let setup = match lang {
        Lang::Rust if patched => "Needs Rust with the `wasm32-wasip2` target (`rustup target add wasm32-wasip2`). The SDK comes from the folder named in Cargo.toml's `[patch.crates-io]`.".to_string(),
        Lang::Rust => format!("Needs Rust with the `wasm32-wasip2` target (`rustup target add wasm32-wasip2`). The SDK, `palisade-sdk` {}, is in `vendor/palisade-sdk` (the contract in its `wit/`); the other dependencies come from crates.io.", sdk_version()),
        Lang::Python => format!("Needs `componentize-py` {COMPONENTIZE_PY} (`pip install componentize-py=={COMPONENTIZE_PY}`). The contract is in `wit/` (palisade:plugin@{}).", wit_version()),
        Lang::Js => format!("Needs Node.js and `npm install` once (componentize-js {COMPONENTIZE_JS}). The contract is in `wit/` (palisade:plugin@{}).", wit_version()),
    };
    format!(
        "# {name}\n\nA Palisade {kind} plugin.\n\n{setup}\n\n```sh\n{build}\npalisade test cases.toml\npalisade test --isolation fresh-per-request cases.toml\n```\n\nA plugin sees only what the host gives it: the request, its configuration, and the\nkey-value store, group look-ups and key handles the operator grants. It has no files,\nnetwork, environment variables, real clock (the request time is its clock) or threads; a\ntrap, a loop past its deadline or memory past its cap is a deny, never a permit.\n",
        kind = kind.name(),
        build = build_command(lang),
    )
}

/// Writes `files` into a new folder `destination`, all or nothing.
fn write_project(destination: &Path, files: &[File]) -> anyhow::Result<()> {
    if destination.exists() {
        bail!(
            "{} already exists: give a new folder (--dir) or remove it",
            destination.display()
        );
    }
    let parent = match destination.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let staging = tempfile::Builder::new()
        .prefix(".palisade-new-")
        .tempdir_in(parent)
        .with_context(|| format!("cannot create a folder in {}", parent.display()))?;
    for file in files {
        let path = staging.path().join(file.path);
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder)
                .with_context(|| format!("cannot create {}", folder.display()))?;
        }
        std::fs::write(&path, &file.text)
            .with_context(|| format!("cannot write {}", path.display()))?;
        #[cfg(unix)]
        if file.executable {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    let staged = staging.keep();
    if let Err(error) = std::fs::rename(&staged, destination) {
        let _ = std::fs::remove_dir_all(&staged);
        return Err(error).with_context(|| format!("cannot create {}", destination.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_cannot_be_packages_are_refused() {
        for good in ["a", "business-hours", "plug1", &"x".repeat(64)] {
            check_name(good).unwrap();
        }
        for bad in [
            "",
            "1st",
            "-a",
            "a-",
            "a--b",
            "Caps",
            "a_b",
            "a.b",
            "../x",
            "a/b",
            "é",
            "fn",
            "test",
            &"x".repeat(65),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_embedded_contract_and_sdk_have_versions() {
        assert!(wit_version().starts_with("0."), "{}", wit_version());
        assert!(!sdk_version().is_empty());
    }

    #[test]
    fn a_project_is_written_whole_and_never_over_an_existing_folder() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("p");
        let files = project("p", Kind::Filter, Lang::Python, None).unwrap();
        write_project(&target, &files).unwrap();
        for path in [
            "app.py",
            "build.sh",
            "cases.toml",
            "wit/palisade.wit",
            "README.md",
        ] {
            assert!(target.join(path).is_file(), "{path} missing");
        }
        assert_eq!(
            std::fs::read_to_string(target.join("wit/palisade.wit")).unwrap(),
            WIT
        );
        // A second time: refused, and the first project is untouched.
        std::fs::write(target.join("app.py"), "mine").unwrap();
        let error = write_project(&target, &files).unwrap_err().to_string();
        assert!(error.contains("already exists"), "{error}");
        assert_eq!(
            std::fs::read_to_string(target.join("app.py")).unwrap(),
            "mine"
        );
        // No staging folder is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("p")]);
    }

    #[test]
    fn sdk_sources_are_all_embedded() {
        let sdk = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/sdk");
        let mut on_disk = vec!["build.rs".to_string(), "README.md".to_string()];
        for entry in std::fs::read_dir(sdk.join("src")).unwrap() {
            on_disk.push(format!(
                "src/{}",
                entry.unwrap().file_name().to_string_lossy()
            ));
        }
        on_disk.sort();
        let mut embedded: Vec<String> = SDK_SOURCES
            .iter()
            .map(|(path, _)| {
                path.strip_prefix("vendor/palisade-sdk/")
                    .unwrap()
                    .to_string()
            })
            .collect();
        embedded.sort();
        assert_eq!(embedded, on_disk, "add the SDK's new files to SDK_SOURCES");
        for (path, text) in SDK_SOURCES {
            let relative = path.strip_prefix("vendor/palisade-sdk/").unwrap();
            assert_eq!(
                text,
                std::fs::read_to_string(sdk.join(relative)).unwrap(),
                "{path}"
            );
        }
    }

    #[test]
    fn the_vendored_sdk_manifest_stands_alone() {
        let text = vendored_sdk_manifest().unwrap();
        assert!(!text.contains("workspace"), "{text}");
        let parsed: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(parsed["package"]["version"].as_str(), Some(sdk_version()));
        assert_eq!(parsed["package"]["edition"].as_str(), Some("2021"));
        assert!(parsed["dependencies"]["wit-bindgen"]["version"]
            .as_str()
            .is_some());
    }

    #[test]
    fn generated_manifests_parse() {
        for kind in [Kind::Authorizer, Kind::Authenticator, Kind::Filter] {
            let files = project("my-plugin", kind, Lang::Js, None).unwrap();
            let package = files
                .iter()
                .find(|file| file.path == "package.json")
                .unwrap();
            let parsed: serde_json::Value = serde_json::from_str(&package.text).unwrap();
            assert_eq!(parsed["name"], "my-plugin");
            assert!(parsed["scripts"]["build"]
                .as_str()
                .unwrap()
                .contains(&format!("--world-name {} ", kind.name())));
            for lang in [Lang::Rust, Lang::Python, Lang::Js] {
                let files = project("my-plugin", kind, lang, None).unwrap();
                let cases = files.iter().find(|file| file.path == "cases.toml").unwrap();
                let parsed: toml::Table = toml::from_str(&cases.text).unwrap();
                assert!(parsed["case"]
                    .as_array()
                    .is_some_and(|cases| !cases.is_empty()));
            }
        }
        let files = project("my-plugin", Kind::Filter, Lang::Rust, None).unwrap();
        let manifest = files.iter().find(|file| file.path == "Cargo.toml").unwrap();
        let parsed: toml::Table = toml::from_str(&manifest.text).unwrap();
        let dependency = &parsed["dependencies"]["palisade-sdk"];
        assert_eq!(dependency["version"].as_str(), Some(sdk_version()));
        assert_eq!(dependency["path"].as_str(), Some("vendor/palisade-sdk"));
        assert!(parsed.get("patch").is_none());
        for path in [
            "vendor/palisade-sdk/Cargo.toml",
            "vendor/palisade-sdk/wit/palisade.wit",
        ] {
            assert!(files.iter().any(|file| file.path == path), "{path}");
        }
    }

    #[test]
    fn an_sdk_path_with_quotes_stays_valid_toml() {
        let files = project(
            "p",
            Kind::Authorizer,
            Lang::Rust,
            Some(Path::new("/tmp/we\"ird\\path")),
        )
        .unwrap();
        let manifest = files.iter().find(|file| file.path == "Cargo.toml").unwrap();
        let parsed: toml::Table = toml::from_str(&manifest.text).unwrap();
        assert_eq!(
            parsed["patch"]["crates-io"]["palisade-sdk"]["path"].as_str(),
            Some("/tmp/we\"ird\\path")
        );
    }
}
