//! The `palisade` command as a user runs it: eval, test (passing and failing), bench, and the
//! embedding example built by `cargo test`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn palisade(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running palisade")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn scratch() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("policy.json"),
        r#"{"policies":[{"id":"p1","pv":{"acr":[{"acor":["CAE1"],"acop":2}]}}]}"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("read.json"),
        r#"{"originator":"CAE1","operation":"retrieve","target":"/cse-in/app1/c1","request_time":1795860900}"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("delete.json"),
        r#"{"originator":"CAE1","operation":"delete","target":"/cse-in/app1/c1","request_time":1795860900}"#,
    )
    .unwrap();
    dir
}

#[test]
fn eval_prints_the_decision_and_its_reason() {
    let dir = scratch();
    let permit = palisade(
        &[
            "eval",
            "--plugin",
            "acp",
            "--config",
            "policy.json",
            "--request",
            "read.json",
        ],
        dir.path(),
    );
    assert!(permit.status.success(), "{}", text(&permit));
    assert!(text(&permit).starts_with("permit"), "{}", text(&permit));

    let deny = palisade(
        &[
            "eval",
            "--plugin",
            "acp",
            "--config",
            "policy.json",
            "--request",
            "delete.json",
            "--json",
        ],
        dir.path(),
    );
    assert!(
        deny.status.success(),
        "a deny is an answer, not an error: {}",
        text(&deny)
    );
    let value: serde_json::Value = serde_json::from_slice(&deny.stdout).unwrap();
    assert_eq!(value["outcome"], "deny");
    assert!(
        value["reason"].as_str().unwrap().contains("delete"),
        "{value}"
    );
    assert_eq!(value["kind"], "authorizer");

    let strict = palisade(
        &[
            "eval",
            "--plugin",
            "acp",
            "--config",
            "policy.json",
            "--request",
            "delete.json",
            "--fail-on-deny",
        ],
        dir.path(),
    );
    assert_eq!(strict.status.code(), Some(1));
}

#[test]
fn eval_names_what_is_wrong_with_its_input() {
    let dir = scratch();
    std::fs::write(
        dir.path().join("bad.json"),
        r#"{"originator":"CAE1","operation":"erase","target":"/x"}"#,
    )
    .unwrap();
    let cases: [(&[&str], &str); 4] = [
        (
            &["eval", "--plugin", "missing.wasm", "--request", "read.json"],
            "cannot read plugin missing.wasm",
        ),
        (
            &["eval", "--plugin", "policy.json", "--request", "read.json"],
            "not a WebAssembly component",
        ),
        (
            &["eval", "--plugin", "acp", "--request", "bad.json"],
            "not a valid request",
        ),
        (
            &[
                "eval",
                "--plugin",
                "acp",
                "--config",
                "read.jsonx",
                "--request",
                "read.json",
            ],
            "cannot read the configuration",
        ),
    ];
    for (args, expected) in cases {
        let output = palisade(args, dir.path());
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", text(&output));
        assert!(
            text(&output).contains(expected),
            "{args:?}: {}",
            text(&output)
        );
    }
}

#[test]
fn test_fails_with_a_table_when_a_case_fails() {
    let dir = scratch();
    std::fs::write(
        dir.path().join("cases.toml"),
        r#"
plugin = "acp"
config_file = "policy.json"
[state]
time = 2026-11-28T10:15:00Z

[[case]]
name = "reads pass"
request = { originator = "CAE1", operation = "retrieve", target = "/x" }
expect = "permit"

[[case]]
name = "this expectation is wrong"
request = { originator = "CAE1", operation = "delete", target = "/x" }
expect = "permit"
"#,
    )
    .unwrap();
    let output = palisade(&["test", "cases.toml"], dir.path());
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let shown = text(&output);
    assert!(shown.contains("PASS  reads pass"), "{shown}");
    assert!(shown.contains("FAIL  this expectation is wrong"), "{shown}");
    assert!(shown.contains("expected permit, got deny"), "{shown}");
    assert!(shown.contains("1 passed, 1 failed"), "{shown}");
}

#[test]
fn test_reports_a_broken_case_file_by_line_and_key() {
    let dir = scratch();
    std::fs::write(
        dir.path().join("broken.toml"),
        "plugin = \"acp\"\n\n[[case]]\nname = \"typo\"\nrequest = { originator = \"CAE1\", operation = \"retrieve\", target = \"/x\" }\nexpct = \"permit\"\n",
    )
    .unwrap();
    let output = palisade(&["test", "broken.toml"], dir.path());
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let shown = text(&output);
    assert!(shown.contains("broken.toml"), "{shown}");
    assert!(
        shown.contains("line 3") || shown.contains("line 6"),
        "{shown}"
    );
    assert!(
        shown.contains("expct") || shown.contains("expect"),
        "{shown}"
    );
}

/// A case's request, a request file of `palisade eval` and a decide body are one shape
/// (`AccessRequest`): the same fields, attributes as pairs or a table, and in a case the
/// fields that have their own place (`app`, `credential`, `request_time`) refused by name.
#[test]
fn a_case_request_is_the_one_request_shape() {
    let dir = scratch();
    let case = |request: &str| {
        format!(
            "plugin = \"acp\"\nconfig_file = \"policy.json\"\n[state]\ntime = 2026-11-28T10:15:00Z\n\n\
             [[case]]\nname = \"one\"\nrequest = {{ originator = \"CAE1\", operation = \"retrieve\", \
             target = \"/x\"{request} }}\nexpect = \"permit\"\n"
        )
    };
    for (extra, passes) in [
        ("", true),
        (", attributes = { rcn = \"1\" }", true),
        (", attributes = [[\"rcn\", \"1\"], [\"rcn\", \"2\"]]", true),
        (", app = \"other\"", false),
        (", request_time = 1795860900", false),
        (
            ", credential = { scheme = \"bearer\", value = \"t\" }",
            false,
        ),
        (", atributes = {}", false),
    ] {
        std::fs::write(dir.path().join("case.toml"), case(extra)).unwrap();
        let output = palisade(&["test", "case.toml"], dir.path());
        let shown = text(&output);
        if passes {
            assert_eq!(output.status.code(), Some(0), "{extra}: {shown}");
            continue;
        }
        assert_eq!(output.status.code(), Some(2), "{extra}: {shown}");
        let field = extra[2..].split(' ').next().unwrap();
        assert!(
            shown.contains(field),
            "{extra}: the error names {field}: {shown}"
        );
    }
}

#[test]
fn bench_reports_warm_and_fresh_latency() {
    let dir = scratch();
    let output = palisade(
        &[
            "bench",
            "--plugin",
            "acp",
            "--config",
            "policy.json",
            "--request",
            "read.json",
            "--iterations",
            "300",
            "--json",
        ],
        dir.path(),
    );
    assert!(output.status.success(), "{}", text(&output));
    let results: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let results = results.as_array().unwrap();
    assert_eq!(results.len(), 2);
    for result in results {
        assert!(result["median_ns"].as_u64().unwrap() > 0);
        assert!(
            result["decision"].as_str().unwrap().starts_with("Permit"),
            "{result}"
        );
    }
}

#[test]
fn the_embedding_example_runs() {
    // `cargo test` builds every example before it runs a test. The test does not build it
    // itself: a `cargo build --example` from here resolves dev-dependencies for that one
    // target, and the units it rebuilds overwrite those of the test build, so each run
    // rebuilt half the workspace for the next. A filtered run that did not build the example
    // (or built it before its library changed) is told how to.
    let deps = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let example: PathBuf = deps
        .parent()
        .unwrap()
        .join("examples")
        .join("embed_gateway");
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let newest_core = std::fs::read_dir(&deps)
        .unwrap()
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| {
            let name = path.file_name().unwrap().to_string_lossy();
            name.starts_with("libpalisade_core-") && name.ends_with(".rlib")
        })
        .filter_map(|path| modified(&path))
        .max();
    match (modified(&example), newest_core) {
        (Some(built), Some(core)) if built >= core => {}
        _ => panic!(
            "{} is missing or older than palisade-core: a plain `cargo test` (or \
             `cargo test --no-run`) builds it with every example; a filtered run does not",
            example.display()
        ),
    }
    let output = Command::new(&example).output().unwrap();
    let shown = text(&output);
    assert!(output.status.success(), "{shown}");
    assert!(shown.contains("retrieve: Permit"), "{shown}");
    assert!(shown.contains("delete: Deny"), "{shown}");
    assert!(
        !shown.contains("48.8566"),
        "the filter must remove the location: {shown}"
    );
}
