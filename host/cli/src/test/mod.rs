//! `palisade test`: runs a plugin's test cases from TOML files, prints a pass/fail table and
//! fails when any case fails.

mod cases;
mod junit;
mod jws;
mod keys;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;

use super::harness::{Answer, Harness, HostSetup, LoadedFile};
use cases::{Case, CaseFile};
use palisade_core::ResponseBody;
use palisade_core::{AuthOutcome, FilterOutcome, Isolation, PluginKind};

/// Run a plugin's test cases and report which pass.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Case files (TOML); see examples/*/cases.toml.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// How to print the results: `pretty` (a table per file), `json` (one document), or
    /// `junit` (JUnit XML, for CI systems that show test reports).
    #[arg(long, value_enum, default_value_t = Format::Pretty)]
    format: Format,
    /// The same as `--format json` (kept for scripts written before `--format`).
    #[arg(long, conflicts_with = "format")]
    json: bool,
    /// Run every file in this isolation mode, whatever the files say (e.g. check that a
    /// plugin decides the same with a fresh, pre-initialised instance per request).
    #[arg(long, value_enum)]
    isolation: Option<IsolationArg>,
    /// Give every plugin call this many milliseconds before it is stopped, whatever the files'
    /// `[limits] deadline_ms` say (default: each file's, else 50 ms). For a loaded CI machine,
    /// where a case could otherwise fail on the time limit rather than on what it tests.
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..=600_000))]
    deadline_ms: Option<u64>,
}

/// The output forms of `palisade test`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Pretty,
    Json,
    Junit,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum IsolationArg {
    Warm,
    FreshPerRequest,
}

impl From<IsolationArg> for Isolation {
    fn from(arg: IsolationArg) -> Isolation {
        match arg {
            IsolationArg::Warm => Isolation::Warm,
            IsolationArg::FreshPerRequest => Isolation::FreshPerRequest,
        }
    }
}

#[derive(Serialize)]
struct FileReport {
    file: String,
    plugin: String,
    kind: PluginKind,
    passed: usize,
    failed: usize,
    cases: Vec<CaseReport>,
}

#[derive(Serialize)]
struct CaseReport {
    name: String,
    expected: String,
    got: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure: Option<&'static str>,
    passed: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    problems: Vec<String>,
    micros: u64,
}

/// Returns whether every case of every file passed.
pub fn run(args: TestArgs) -> anyhow::Result<bool> {
    let harness = Harness::new()?;
    let mut reports = Vec::new();
    for file in &args.files {
        reports.push(run_file(
            &harness,
            file,
            args.isolation.map(Isolation::from),
            args.deadline_ms.map(Duration::from_millis),
        )?);
    }
    let passed: usize = reports.iter().map(|report| report.passed).sum();
    let failed: usize = reports.iter().map(|report| report.failed).sum();
    let format = if args.json { Format::Json } else { args.format };
    match format {
        Format::Json => {
            let value = serde_json::json!({ "files": reports, "passed": passed, "failed": failed });
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
        Format::Junit => print!("{}", junit::render(&reports)),
        Format::Pretty => {
            for report in &reports {
                print_table(report);
            }
            println!("{passed} passed, {failed} failed");
        }
    }
    Ok(failed == 0)
}

fn run_file(
    harness: &Harness,
    path: &Path,
    isolation: Option<Isolation>,
    deadline: Option<Duration>,
) -> anyhow::Result<FileReport> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the case file {}", path.display()))?;
    let mut file: CaseFile =
        toml::from_str(&text).map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
    if isolation.is_some() {
        file.isolation = isolation;
    }
    if let Some(deadline) = deadline {
        file.limits = Some(file.limits.take().unwrap_or_default().deadline(deadline));
    }
    if file.cases.is_empty() {
        bail!("{}: no [[case]] entries", path.display());
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let plugin = harness
        .load(&file.plugin, Some(base))
        .with_context(|| format!("{}: plugin {:?}", path.display(), file.plugin))?;
    let (host_keys, runner_keys) = keys::build(file.state.keys.as_deref().unwrap_or_default())
        .with_context(|| format!("{}: [state.keys]", path.display()))?;
    let host_keys: Arc<dyn palisade_core::AppKeys> = Arc::new(host_keys);

    let mut report = FileReport {
        file: path.display().to_string(),
        plugin: plugin.name.clone(),
        kind: plugin.kind,
        passed: 0,
        failed: 0,
        cases: Vec::new(),
    };
    for (index, case) in file.cases.iter().enumerate() {
        let case_report = run_case(
            harness,
            &plugin,
            &file,
            case,
            base,
            &host_keys,
            &runner_keys,
        )
        .with_context(|| format!("{}: case {} ({:?})", path.display(), index + 1, case.name))?;
        if case_report.passed {
            report.passed += 1;
        } else {
            report.failed += 1;
        }
        report.cases.push(case_report);
    }
    Ok(report)
}

fn run_case(
    harness: &Harness,
    plugin: &LoadedFile,
    file: &CaseFile,
    case: &Case,
    base: &Path,
    host_keys: &Arc<dyn palisade_core::AppKeys>,
    runner_keys: &keys::TestKeys,
) -> anyhow::Result<CaseReport> {
    check_expectation(&case.expect, plugin.kind)?;
    let config_json = resolve_config(case, file, base)?;
    let time = match case.time.as_ref().or(file.state.time.as_ref()) {
        Some(time) => time.seconds()?,
        None => palisade_core::now_unix(),
    };
    let groups = case.groups.as_ref().or(file.state.groups.as_ref());
    let kv = case.kv.as_ref().or(file.state.kv.as_ref());
    let setup = HostSetup {
        config_json,
        capabilities: case.capabilities.unwrap_or(file.capabilities),
        limits: file.limits.clone().unwrap_or_default(),
        isolation: file.isolation.unwrap_or_default(),
        kv: kv
            .map(|entries| {
                entries
                    .iter()
                    .map(|(key, value)| (key.clone(), value.clone().into_bytes()))
                    .collect()
            })
            .unwrap_or_default(),
        groups: groups.map(cases::groups).unwrap_or_default(),
        keys: host_keys.clone(),
    };
    let mut request = case.request(time)?;
    if request.location.is_none() {
        if let Some(position) = file
            .state
            .positions
            .as_ref()
            .and_then(|positions| positions.get(&request.originator))
        {
            let position = palisade_provision::Position::from_degrees(
                position.latitude,
                position.longitude,
                position.country.as_deref(),
            )
            .map_err(|reason| {
                anyhow::anyhow!("[state] positions.{}: {reason}", request.originator)
            })?;
            request.location = Some(position.location());
        }
    }
    let credential = case
        .credential
        .as_ref()
        .map(|credential| credential.to_credential(runner_keys))
        .transpose()?;
    let response = case.response.as_ref().map(|response| ResponseBody {
        status: response.status,
        content_type: response.content_type.clone(),
        body: response.body.clone().into_bytes(),
    });
    let started = Instant::now();
    let answer = match harness.call(
        plugin,
        setup,
        &request,
        credential.as_ref(),
        response.as_ref(),
    ) {
        Ok(answer) => answer,
        // The plugin's `prepare` refused the configuration at load: the gateway would not
        // start with it, which is what a case may expect (`expect = "refused"`).
        Err(error) if refused_at_load(&error) => {
            let micros = started.elapsed().as_micros() as u64;
            let reason = Some(format!("{error:#}"));
            return Ok(refused_report(case, reason, micros));
        }
        Err(error) => return Err(error),
    };
    let micros = started.elapsed().as_micros() as u64;

    let got = answer.outcome();
    let reason = answer.reason();
    let mut problems = Vec::new();
    if got != case.expect {
        problems.push(format!("expected {}, got {got}", case.expect));
    }
    if let Some(expected) = &case.reason {
        match &reason {
            Some(actual) if actual.contains(expected.as_str()) => {}
            Some(actual) => {
                problems.push(format!("reason {actual:?} does not contain {expected:?}"))
            }
            None => problems.push(format!(
                "expected a reason containing {expected:?}, got none"
            )),
        }
    }
    check_identity(case, &answer, &mut problems);
    check_body(case, &answer, &mut problems);
    Ok(CaseReport {
        name: case.name.clone(),
        expected: case.expect.clone(),
        got,
        reason,
        failure: answer.failure().map(|failure| failure.code()),
        passed: problems.is_empty(),
        problems,
        micros,
    })
}

/// Whether loading the plugin failed because its `prepare` hook refused the configuration
/// (or otherwise failed checking it): the outcome `refused`.
fn refused_at_load(error: &anyhow::Error) -> bool {
    matches!(
        error.downcast_ref::<palisade_core::LoadError>(),
        Some(palisade_core::LoadError::Prepare(_))
    )
}

/// The report of a case whose configuration the plugin refused at load.
fn refused_report(case: &Case, reason: Option<String>, micros: u64) -> CaseReport {
    let mut problems = Vec::new();
    if case.expect != "refused" {
        problems.push(format!("expected {}, got refused", case.expect));
    }
    if let (Some(expected), Some(actual)) = (&case.reason, &reason) {
        if !actual.contains(expected.as_str()) {
            problems.push(format!("reason {actual:?} does not contain {expected:?}"));
        }
    }
    CaseReport {
        name: case.name.clone(),
        expected: case.expect.clone(),
        got: "refused",
        reason,
        failure: None,
        passed: problems.is_empty(),
        problems,
        micros,
    }
}

fn check_expectation(expect: &str, kind: PluginKind) -> anyhow::Result<()> {
    // `refused`: the plugin refuses the case's configuration when it is loaded (its
    // `prepare` hook), so a gateway would not start with it.
    let allowed: &[&str] = match kind {
        PluginKind::Authorizer => &["permit", "deny", "not-applicable", "refused"],
        PluginKind::Authenticator => &["authenticated", "rejected", "not-applicable", "refused"],
        PluginKind::Filter => &["unchanged", "rewrite", "block", "refused"],
    };
    if !allowed.contains(&expect) {
        bail!(
            "expect = {expect:?} is not an outcome of an {kind}; use one of {}",
            allowed.join(", ")
        );
    }
    Ok(())
}

fn resolve_config(case: &Case, file: &CaseFile, base: &Path) -> anyhow::Result<String> {
    let (inline, path) = if case.config.is_some() || case.config_file.is_some() {
        (&case.config, &case.config_file)
    } else {
        (&file.config, &file.config_file)
    };
    match (inline, path) {
        (Some(_), Some(_)) => bail!("give either config or config_file, not both"),
        (Some(config), None) => cases::config_json(config),
        (None, Some(path)) => {
            let full = base.join(path);
            let text = std::fs::read_to_string(&full)
                .with_context(|| format!("cannot read config_file {}", full.display()))?;
            // Checked here so that a typo in the file is reported as such, not as a plugin
            // deny; plugins must still cope with whatever JSON they get.
            serde_json::from_str::<serde_json::Value>(&text)
                .with_context(|| format!("config_file {} is not valid JSON", full.display()))?;
            Ok(text)
        }
        (None, None) => Ok("{}".into()),
    }
}

fn check_identity(case: &Case, answer: &Answer, problems: &mut Vec<String>) {
    if case.subject.is_none() && case.roles.is_none() {
        return;
    }
    let Answer::Authenticator(Ok(AuthOutcome::Authenticated { subject, roles, .. })) = answer
    else {
        problems.push("subject/roles were expected but nothing was authenticated".into());
        return;
    };
    if let Some(expected) = &case.subject {
        if expected != subject {
            problems.push(format!("expected subject {expected:?}, got {subject:?}"));
        }
    }
    if let Some(expected) = &case.roles {
        if expected != roles {
            problems.push(format!("expected roles {expected:?}, got {roles:?}"));
        }
    }
}

fn check_body(case: &Case, answer: &Answer, problems: &mut Vec<String>) {
    let Some(expected) = &case.body else {
        return;
    };
    let Answer::Filter(Ok(FilterOutcome::Rewrite(body))) = answer else {
        problems.push("a body was expected but the filter did not rewrite".into());
        return;
    };
    let same = match (
        serde_json::from_str::<serde_json::Value>(expected),
        serde_json::from_slice::<serde_json::Value>(body),
    ) {
        (Ok(expected), Ok(actual)) => expected == actual,
        _ => expected.as_bytes() == body.as_slice(),
    };
    if !same {
        problems.push(format!(
            "expected body {expected}, got {}",
            String::from_utf8_lossy(body)
        ));
    }
}

fn print_table(report: &FileReport) {
    println!(
        "{} — {} ({}), {} cases",
        report.file,
        report.plugin,
        report.kind,
        report.cases.len()
    );
    let width = report
        .cases
        .iter()
        .map(|case| case.name.chars().count())
        .max()
        .unwrap_or(0)
        .min(60);
    for case in &report.cases {
        let mark = if case.passed { "PASS" } else { "FAIL" };
        println!("  {mark}  {:<width$}  {}", case.name, case.got);
        for problem in &case.problems {
            println!("        {problem}");
        }
        if !case.passed {
            if let Some(reason) = &case.reason {
                println!("        reason: {reason}");
            }
        }
    }
    println!(
        "  {} passed, {} failed in {}",
        report.passed, report.failed, report.file
    );
}
