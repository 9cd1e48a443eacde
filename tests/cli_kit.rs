//! The plugin author's and operator's kit (issue #15): `palisade inspect`, `check`,
//! `test --format`, `completions`, `man`, and the gateway config's JSON Schema. Every test
//! runs the real binary on the real reference plugins and example files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn palisade(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .output()
        .expect("run palisade")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The contract version the plugins are built against, read from the one WIT file (wherever
/// the SDK keeps it), so this test follows the contract's version instead of repeating it.
fn contract_version() -> String {
    let candidates = [
        repo().join("plugins/sdk/wit/palisade.wit"),
        repo().join("wit/palisade.wit"),
    ];
    let text = candidates
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
        .expect("the contract's WIT file");
    let line = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("package palisade:plugin@"))
        .expect("a versioned package line");
    line.trim_end_matches(';').to_owned()
}

fn json(output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status,
        stderr(output)
    );
    serde_json::from_slice(&output.stdout).expect("JSON output")
}

#[test]
fn inspect_shows_world_imports_exports_and_contract_version_of_reference_plugins() {
    let version = contract_version();
    let dir = tempfile::tempdir().unwrap();
    for (plugin, kind, export, import) in [
        ("acp", "authorizer", "authorize", "palisade:plugin/groups@"),
        (
            "token-auth",
            "authenticator",
            "authenticate",
            "palisade:plugin/crypto@",
        ),
        ("geo-privacy", "filter", "filter", "palisade:plugin/config@"),
    ] {
        let report = json(&palisade(&["inspect", plugin, "--json"], dir.path()));
        assert_eq!(report["kind"], kind, "{plugin}: {report}");
        assert_eq!(
            report["world"]["name"],
            format!("palisade:plugin/prepared-{kind}@{version}"),
            "{plugin}"
        );
        assert_eq!(report["contract_versions"], serde_json::json!([version]));
        let exports: Vec<&str> = report["world"]["exports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap())
            .collect();
        assert!(exports.contains(&export), "{plugin}: {exports:?}");
        assert!(exports.contains(&"prepare"), "{plugin}: {exports:?}");
        let imports = report["world"]["imports"].to_string();
        assert!(
            imports.contains(&format!("{import}{version}")),
            "{plugin}: {imports}"
        );
        let size = report["size"].as_u64().unwrap();
        assert_eq!(
            size,
            palisade_artifacts::reference(plugin).unwrap().len() as u64
        );
        assert_eq!(report["component_size"].as_u64(), Some(size));
        assert!(report["signature"].is_null(), "{plugin} is unsigned");
        assert!(
            report["producers"].to_string().contains("wit-bindgen"),
            "{plugin}: {}",
            report["producers"]
        );
        // The text form says the same.
        let text = stdout(&palisade(&["inspect", plugin], dir.path()));
        assert!(text.contains(&format!("kind        {kind}")), "{text}");
        assert!(text.contains("signature   none (unsigned)"), "{text}");
    }
}

#[test]
fn inspect_shows_a_signed_module_s_chain_as_unverified() {
    let dir = tempfile::tempdir().unwrap();
    let at = dir.path();
    std::fs::write(
        at.join("acp.wasm"),
        palisade_artifacts::reference("acp").unwrap(),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let output = palisade(args, at);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
    };
    run(&["keygen", "--out", "root"]);
    run(&["keygen", "--out", "publisher"]);
    run(&[
        "delegate",
        "--root",
        "root.key",
        "--publisher",
        "publisher.pub",
        "--app",
        "lights",
        "--kinds",
        "authorizer",
        "--out",
        "publisher.delegation",
    ]);
    run(&[
        "sign",
        "--key",
        "publisher.key",
        "--delegation",
        "publisher.delegation",
        "--app",
        "lights",
        "--kind",
        "authorizer",
        "--name",
        "acp",
        "--version",
        "1.2.3",
        "--capabilities",
        "groups",
        "--out",
        "acp.signed.wasm",
        "acp.wasm",
    ]);
    let report = json(&palisade(&["inspect", "acp.signed.wasm", "--json"], at));
    let signature = &report["signature"];
    assert_eq!(signature["verified"], false);
    assert_eq!(signature["module_hash_matches"], true);
    assert_eq!(signature["manifest"]["app"], "lights");
    assert_eq!(signature["manifest"]["name"], "acp");
    assert_eq!(signature["manifest"]["version"], "1.2.3");
    assert_eq!(
        signature["manifest"]["capabilities"],
        serde_json::json!(["groups"])
    );
    assert_eq!(signature["delegation"]["app"], "lights");
    assert_eq!(
        signature["delegation"]["kinds"],
        serde_json::json!(["authorizer"])
    );
    assert_eq!(
        signature["publisher_key_id"],
        signature["delegation"]["publisher_key_id"]
    );
    assert!(report["size"].as_u64() > report["component_size"].as_u64());
    assert_eq!(report["kind"], "authorizer");
    let text = stdout(&palisade(&["inspect", "acp.signed.wasm"], at));
    assert!(text.contains("UNVERIFIED"), "{text}");
    assert!(text.contains("matches the component"), "{text}");

    // A module changed after signing: still shown, the hash marked as not matching.
    let mut tampered = std::fs::read(at.join("acp.signed.wasm")).unwrap();
    let middle = tampered.len() / 3;
    tampered[middle] ^= 0x01;
    std::fs::write(at.join("tampered.wasm"), &tampered).unwrap();
    let output = palisade(&["inspect", "tampered.wasm", "--json"], at);
    if output.status.success() {
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(report["signature"]["module_hash_matches"], false);
    } else {
        // The flipped byte broke the component's structure: refused with a reason.
        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
        assert!(
            stderr(&output).contains("tampered.wasm"),
            "{}",
            stderr(&output)
        );
    }
}

#[test]
fn inspect_refuses_what_is_not_a_component() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not wasm").unwrap();
    std::fs::write(dir.path().join("core.wasm"), b"\0asm\x01\0\0\0").unwrap();
    for (file, says) in [
        ("notes.txt", "not WebAssembly"),
        ("core.wasm", "core WebAssembly module"),
        ("missing.wasm", "cannot read missing.wasm"),
    ] {
        let output = palisade(&["inspect", file], dir.path());
        assert_eq!(output.status.code(), Some(2), "{file}");
        assert!(
            stderr(&output).contains(says),
            "{file}: {}",
            stderr(&output)
        );
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn check_accepts_the_example_gateway_without_binding_or_writing() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().join("data");
    let config = repo().join("examples/gateway.toml");
    let output = palisade(
        &[
            "check",
            "--config",
            config.to_str().unwrap(),
            "--data",
            data_dir.to_str().unwrap(),
        ],
        data.path(),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let out = stdout(&output);
    assert!(out.contains("compiled, type-checked and prepared"), "{out}");
    assert!(
        !data_dir.exists(),
        "check created the data folder {}",
        data_dir.display()
    );
}

#[test]
fn check_names_file_line_and_key_of_each_problem() {
    let dir = tempfile::tempdir().unwrap();
    let at = dir.path();
    let cases: [(&str, &str, &str); 4] = [
        // The config itself.
        (
            "syntax.toml",
            "[[app]]\nname = \"lights\"\npaths = [\"/cse-in/lights\"]\nmode = \"sometimes\"\n",
            "syntax.toml:4: app[0].mode",
        ),
        // A plugin configuration its `prepare` refuses.
        (
            "prepare.toml",
            "[[app]]\nname = \"lights\"\npaths = [\"/cse-in/lights\"]\n[[app.plugin]]\nplugin = \"acp\"\n[app.plugin.config]\nrules = 1\n",
            "prepare.toml:6: app[0].plugin[0].config",
        ),
        // A plugin of another kind than declared.
        (
            "kind.toml",
            "[[app]]\nname = \"lights\"\npaths = [\"/cse-in/lights\"]\n[[app.plugin]]\nplugin = \"acp\"\nkind = \"filter\"\n",
            "kind.toml:5: app[0].plugin[0]",
        ),
        // A module file that is not there.
        (
            "missing.toml",
            "[[app]]\nname = \"lights\"\npaths = [\"/cse-in/lights\"]\n[[app.plugin]]\nplugin = \"nowhere.wasm\"\n",
            "missing.toml:5: app[0].plugin[0]",
        ),
    ];
    for (name, text, says) in cases {
        write(at, name, text);
        let output = palisade(&["check", "--config", name, "--data", "data"], at);
        assert_eq!(output.status.code(), Some(1), "{name}: {}", stderr(&output));
        assert!(
            stderr(&output).contains(says),
            "{name}: expected {says:?} in {}",
            stderr(&output)
        );
    }
    assert!(!at.join("data").exists(), "check wrote a data folder");
}

#[test]
fn test_format_junit_is_well_formed_and_counts_every_case() {
    let dir = tempfile::tempdir().unwrap();
    let at = dir.path();
    // One passing and one failing case, with characters XML must escape or cannot carry.
    write(
        at,
        "cases.toml",
        r#"plugin = "acp"
config = { policies = [{ pv = { acr = [{ acor = ["CAE1"], acop = 63 }] } }] }

[[case]]
name = "CAE1 <reads> & \"writes\""
expect = "permit"
request = { originator = "CAE1", operation = "retrieve", target = "/cse-in/x" }

[[case]]
name = "expected wrongly\u0001"
expect = "permit"
request = { originator = "CAE2", operation = "retrieve", target = "/cse-in/x" }
"#,
    );
    let output = palisade(&["test", "cases.toml", "--format", "junit"], at);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let xml = stdout(&output);
    let document = roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("{e}: {xml}"));
    let root = document.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    assert_eq!(root.attribute("tests"), Some("2"));
    assert_eq!(root.attribute("failures"), Some("1"));
    let suites: Vec<_> = root
        .children()
        .filter(|n| n.has_tag_name("testsuite"))
        .collect();
    assert_eq!(suites.len(), 1);
    assert_eq!(suites[0].attribute("name"), Some("cases.toml"));
    let cases: Vec<_> = suites[0]
        .children()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    assert_eq!(cases.len(), 2);
    assert_eq!(
        cases[0].attribute("name"),
        Some("CAE1 <reads> & \"writes\"")
    );
    assert_eq!(cases[0].attribute("classname"), Some("acp.authorizer"));
    assert!(cases[0].children().all(|n| !n.has_tag_name("failure")));
    assert_eq!(cases[1].attribute("name"), Some("expected wrongly\u{FFFD}"));
    let failure = cases[1]
        .children()
        .find(|n| n.has_tag_name("failure"))
        .expect("a failure element");
    assert_eq!(
        failure.attribute("message"),
        Some("expected permit, got deny")
    );
    assert!(failure.text().unwrap_or_default().contains("reason: "));

    // json: the same counts; pretty (the default) ends in the summary line.
    let report = json(&palisade(&["test", "--format", "json", "cases.toml"], at).with_success());
    assert_eq!(report["passed"], 1);
    assert_eq!(report["failed"], 1);
    let pretty = stdout(&palisade(&["test", "cases.toml"], at));
    assert!(
        pretty.trim_end().ends_with("1 passed, 1 failed"),
        "{pretty}"
    );
    let both = palisade(&["test", "cases.toml", "--json", "--format", "junit"], at);
    assert_eq!(both.status.code(), Some(2), "--json and --format conflict");
}

/// `palisade test` exits 1 when a case fails; for comparing the JSON report that is not a
/// failure of the command.
trait WithSuccess {
    fn with_success(self) -> Output;
}

impl WithSuccess for Output {
    fn with_success(mut self) -> Output {
        if self.status.code() == Some(1) {
            self.status = std::process::ExitStatus::default();
        }
        self
    }
}

#[test]
fn completions_cover_every_subcommand_in_each_shell() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let output = palisade(&["completions", shell], dir.path());
        assert!(output.status.success(), "{shell}: {}", stderr(&output));
        let script = stdout(&output);
        for command in ["inspect", "check", "serve", "test", "completions", "man"] {
            assert!(
                script.contains(command),
                "{shell} completion lacks {command}"
            );
        }
        assert!(script.contains("--format"), "{shell}: test's --format");
    }
    let bash = stdout(&palisade(&["completions", "bash"], dir.path()));
    assert!(bash.contains("complete -F _palisade"), "{bash}");
    let bad = palisade(&["completions", "tcsh"], dir.path());
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn man_pages_document_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let page = stdout(&palisade(&["man"], dir.path()));
    assert!(page.contains(".TH palisade 1"), "{page}");
    assert!(page.contains("inspect") && page.contains("check"));
    let out = dir.path().join("man1");
    let output = palisade(&["man", "--out", out.to_str().unwrap()], dir.path());
    assert!(output.status.success(), "{}", stderr(&output));
    for name in [
        "palisade.1",
        "palisade-inspect.1",
        "palisade-check.1",
        "palisade-test.1",
        "palisade-push-list.1",
    ] {
        let text =
            std::fs::read_to_string(out.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(text.contains(".SH NAME"), "{name}");
    }
    let test_page = std::fs::read_to_string(out.join("palisade-test.1")).unwrap();
    assert!(test_page.contains("junit"), "{test_page}");
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .all(|name| name.ends_with(".1") && !name.contains("help")),
        "{names:?}"
    );
}

#[test]
fn gateway_config_schema_in_docs_is_current() {
    let dir = tempfile::tempdir().unwrap();
    let output = palisade(&["check", "--schema"], dir.path());
    assert!(output.status.success(), "{}", stderr(&output));
    let generated = stdout(&output);
    let path = repo().join("docs/gateway-config.schema.json");
    let stored = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        stored == generated,
        "{} is stale (the config types changed): regenerate it with\n    cargo run -- check --schema > docs/gateway-config.schema.json",
        path.display()
    );
    // The schema describes the file operators write: every table of the example is in it,
    // and unknown keys are refused as the parser refuses them.
    let schema: serde_json::Value = serde_json::from_str(&generated).unwrap();
    assert_eq!(schema["additionalProperties"], false);
    let example: toml::Table =
        toml::from_str(&std::fs::read_to_string(repo().join("examples/gateway.toml")).unwrap())
            .unwrap();
    for key in example.keys() {
        assert!(
            schema["properties"].get(key).is_some(),
            "examples/gateway.toml's {key} is not in the schema"
        );
    }
    for table in [
        "AppConfig",
        "PluginConfig",
        "ListenerConfig",
        "SandboxLimits",
    ] {
        assert!(
            schema["$defs"].get(table).is_some(),
            "no {table} in the schema"
        );
    }
    let plugin = &schema["$defs"]["PluginConfig"]["properties"];
    assert_eq!(
        plugin["plugin"]["type"], "string",
        "Spanned<String> is a string"
    );
    let limits = &schema["$defs"]["SandboxLimits"]["properties"];
    assert_eq!(
        limits["deadline_ms"]["type"], "integer",
        "durations are milliseconds"
    );
}

#[test]
fn inspect_names_the_older_contract_a_legacy_module_was_built_against() {
    let dir = tempfile::tempdir().unwrap();
    let report = json(&palisade(
        &[
            "inspect",
            palisade_artifacts::LEGACY_CONTRACT_PATH,
            "--json",
        ],
        dir.path(),
    ));
    assert_eq!(report["contract_versions"], serde_json::json!(["0.1.0"]));
    assert_ne!(
        contract_version(),
        "0.1.0",
        "the fixture is older than the contract"
    );
    let imports = report["world"]["imports"].to_string();
    assert!(imports.contains("palisade:plugin/log@0.1.0"), "{imports}");
}

/// The compatibility rule the SDK states (its README and crate docs): `palisade-sdk` 0.N.x
/// builds components of `palisade:plugin@0.N.0`. A contract change without the SDK's version
/// following it (or the reverse) fails here.
#[test]
fn sdk_version_follows_the_contract_version() {
    let manifest: toml::Table =
        toml::from_str(&std::fs::read_to_string(repo().join("plugins/sdk/Cargo.toml")).unwrap())
            .unwrap();
    let sdk = manifest["package"]["version"].as_str().unwrap().to_owned();
    let contract = contract_version();
    let minor = |version: &str| {
        let parts: Vec<&str> = version.split('.').collect();
        assert_eq!(parts.len(), 3, "{version}");
        (parts[0].to_owned(), parts[1].to_owned())
    };
    assert_eq!(
        minor(&sdk),
        minor(&contract),
        "palisade-sdk {sdk} must build palisade:plugin@{contract}: give the SDK version 0.N.x of contract 0.N.0"
    );
}

#[test]
fn inspect_refuses_a_component_over_the_structural_limits_before_decoding_it() {
    use wasm_encoder::{Component, NestedComponentSection};
    // 40 components nested in each other: the gateway's default limit is 16 levels.
    let mut component = Component::new();
    for _ in 0..40 {
        let mut outer = Component::new();
        outer.section(&NestedComponentSection(&component));
        component = outer;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("deep.wasm"), component.finish()).unwrap();
    let output = palisade(&["inspect", "deep.wasm"], dir.path());
    assert_eq!(output.status.code(), Some(2), "{}", stdout(&output));
    let error = stderr(&output);
    assert!(
        error.contains("deep.wasm is refused") && error.contains("max_nesting_depth"),
        "{error}"
    );
}

#[test]
fn check_reads_the_admin_api_s_keys() {
    let dir = tempfile::tempdir().unwrap();
    let at = dir.path();
    let base = "[[app]]\nname = \"lights\"\npaths = [\"/cse-in/lights\"]\n[[app.plugin]]\nplugin = \"acp\"\nconfig = { policies = [{ pv = { acr = [{ acor = [\"CAE1\"], acop = 2 }] } }] }\n";
    for key in ["admin", "root"] {
        let output = palisade(&["keygen", "--out", key], at);
        assert!(output.status.success(), "{}", stderr(&output));
    }
    let admin = "[admin]\ntrust_roots = [\"root.pub\"]\n";
    write(
        at,
        "good.toml",
        &format!("{base}{admin}admin_keys = [\"admin.pub\"]\n"),
    );
    let good = palisade(&["check", "--config", "good.toml", "--data", "data"], at);
    assert!(good.status.success(), "{}", stderr(&good));
    write(
        at,
        "bad.toml",
        &format!("{base}{admin}admin_keys = [\"nobody.pub\"]\n"),
    );
    let bad = palisade(&["check", "--config", "bad.toml", "--data", "data"], at);
    assert_eq!(bad.status.code(), Some(1), "{}", stdout(&bad));
    assert!(
        stderr(&bad).contains("bad.toml: [admin]") && stderr(&bad).contains("nobody.pub"),
        "{}",
        stderr(&bad)
    );
    assert!(!at.join("data").exists(), "check wrote a data folder");
}
