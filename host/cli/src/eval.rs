//! `palisade eval`: one decision from a plugin, its configuration and a request.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use serde_json::json;

use super::harness::{read_config, read_request, Answer, Harness, HostSetup};
use palisade_core::request::ResponseBody;
use palisade_core::sandbox::{AuthOutcome, Capabilities, Capability, FilterOutcome};

/// Ask a plugin for one decision and print it with its reason.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// The plugin: a .wasm component file, or a reference plugin name (acp, token-auth,
    /// geo-privacy).
    #[arg(long)]
    plugin: String,
    /// The plugin's configuration for the application (JSON file). Default: `{}`.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The request (JSON file): originator, operation, target, and optionally
    /// resource_type, authenticated, roles, credential, source_ip, location, request_time,
    /// attributes.
    #[arg(long)]
    request: PathBuf,
    /// For filters: the response (JSON file with status, content_type and body as text).
    #[arg(long)]
    response: Option<PathBuf>,
    /// Capabilities to grant, comma-separated: kv, groups, crypto, location (default none).
    #[arg(long, value_delimiter = ',')]
    grant: Vec<Capability>,
    /// Print the answer as JSON.
    #[arg(long)]
    json: bool,
    /// Exit with status 1 when the answer is a deny, rejection or block.
    #[arg(long)]
    fail_on_deny: bool,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ResponseFile {
    #[serde(default = "ok_status")]
    status: u32,
    content_type: String,
    body: String,
}

fn ok_status() -> u32 {
    2000
}

pub fn run(args: EvalArgs) -> anyhow::Result<bool> {
    let config_json = read_config(args.config.as_deref())?;
    let request = read_request(&args.request)?;
    let response = match &args.response {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the response {}", path.display()))?;
            let file: ResponseFile = serde_json::from_str(&text)
                .with_context(|| format!("the response {} is not valid", path.display()))?;
            Some(ResponseBody {
                status: file.status,
                content_type: file.content_type,
                body: file.body.into_bytes(),
            })
        }
        None => None,
    };

    let harness = Harness::new()?;
    let file = harness.load(&args.plugin, None)?;
    let setup = HostSetup {
        config_json,
        capabilities: args.grant.iter().copied().collect::<Capabilities>(),
        ..HostSetup::default()
    };
    let started = Instant::now();
    let answer = harness.call(&file, setup, &request, None, response.as_ref())?;
    let micros = started.elapsed().as_micros() as u64;

    let outcome = answer.outcome();
    let reason = answer.reason();
    if args.json {
        let mut value = json!({
            "plugin": file.name,
            "kind": file.kind,
            "sha256": hex::encode(file.compiled.sha256),
            "outcome": outcome,
            "micros": micros,
        });
        if let Some(reason) = &reason {
            value["reason"] = json!(reason);
        }
        if let Some(failure) = answer.failure() {
            value["failure"] = json!(failure.code());
        }
        match &answer {
            Answer::Authenticator(Ok(AuthOutcome::Authenticated {
                subject,
                roles,
                expires_at,
            })) => {
                value["identity"] =
                    json!({"subject": subject, "roles": roles, "expires_at": expires_at});
            }
            Answer::Filter(Ok(FilterOutcome::Rewrite(body))) => {
                value["body"] = json!(String::from_utf8_lossy(body));
            }
            _ => {}
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!("{outcome}");
        if let Some(reason) = &reason {
            println!("  reason: {reason}");
        }
        match &answer {
            Answer::Authenticator(Ok(AuthOutcome::Authenticated {
                subject,
                roles,
                expires_at,
            })) => {
                println!("  subject: {subject}");
                println!("  roles: {}", roles.join(", "));
                if let Some(expiry) = expires_at {
                    println!("  expires at: {expiry}");
                }
            }
            Answer::Filter(Ok(FilterOutcome::Rewrite(body))) => {
                println!("  body: {}", String::from_utf8_lossy(body));
            }
            _ => {}
        }
        println!(
            "  plugin: {} ({}, sha256 {}), {} µs including instantiation",
            file.name,
            file.kind,
            &hex::encode(file.compiled.sha256)[..12],
            micros
        );
    }
    let denied = matches!(outcome, "deny" | "rejected" | "block");
    Ok(!(args.fail_on_deny && denied))
}
