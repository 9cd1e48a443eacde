//! `palisade audit`: checks the audit trail (SER-016, non-repudiation).
//!
//! `palisade audit verify --log FILE_OR_DIR --key GATEWAY.pub [--json]` checks every hash,
//! the chain, seq continuity and every checkpoint signature, and exits 1 naming the first bad
//! entry (line and seq) and what explains it (edited, deleted, inserted, reordered, forged
//! checkpoint). A directory is read as the whole rotated set (`audit.log.000001`, ...,
//! `audit.log`) as one chain: a missing, reordered, truncated or edited file fails it, and
//! the bad entry is named by file and line. A final line cut short (a torn write or a
//! truncated file) fails too, unless `--allow-torn-tail` is given (a crash mid-write, before
//! the gateway restarted and truncated it). Warnings (an unsigned tail after the last
//! checkpoint, dropped decisions) do not fail the check but are printed.
//!
//! The public key file (`--key`) holds the gateway's Ed25519 public key, either as
//! - text: 64 hex characters (surrounding whitespace ignored), or
//! - JSON: an object with a `public_key` field of 64 hex characters, e.g.
//!   `{"public_key": "3b6a27bc..."}` (the shape of the keystore's key listing, so a listed
//!   key can be saved as is).

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::json;

use palisade_audit::{locate_line, set_line_counts, verify, VerifyError, DEFAULT_FILE_NAME};

/// Check the audit trail.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, clap::Subcommand)]
enum AuditCommand {
    /// Verify the hash chain and the signed checkpoints; exit 1 naming the first bad entry.
    Verify(VerifyArgs),
}

/// Arguments of `palisade audit verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The audit log file, or the audit directory holding `audit.log`.
    #[arg(
        long,
        value_name = "FILE_OR_DIR",
        required_unless_present = "collector",
        conflicts_with = "collector"
    )]
    log: Option<PathBuf>,
    /// Verify the chain stored by this collector (https://...) instead of a file: with
    /// --gateway, --ca, --cert and --client-key (a certificate in its `query_clients`).
    #[arg(long, value_name = "URL", requires_all = ["gateway", "ca", "cert", "client_key"])]
    collector: Option<hyper::Uri>,
    /// The gateway whose stored chain to verify (with --collector).
    #[arg(long, value_name = "ID")]
    gateway: Option<String>,
    /// The CA the collector's certificate must chain to (with --collector).
    #[arg(long, value_name = "CA.crt")]
    ca: Option<PathBuf>,
    /// The client certificate presented to the collector (with --collector).
    #[arg(long, value_name = "CLIENT.crt")]
    cert: Option<PathBuf>,
    /// Its private key (with --collector).
    #[arg(long, value_name = "CLIENT.key")]
    client_key: Option<PathBuf>,
    /// The gateway's Ed25519 public key: a file with 64 hex characters, or JSON
    /// {"public_key": "HEX"}.
    #[arg(long, value_name = "GATEWAY.pub")]
    key: PathBuf,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// Accept a final line cut short (a write torn by a crash) instead of failing.
    #[arg(long)]
    allow_torn_tail: bool,
}

/// `audit verify --collector`: the gateway's chain as stored by the collector, fetched page
/// by page and verified against the key given here (not one the collector names), so an
/// edited database fails as an edited file does (issue #17).
fn run_verify_collector(
    args: &VerifyArgs,
    collector: &hyper::Uri,
    key: &[u8; 32],
) -> anyhow::Result<bool> {
    let gateway = args.gateway.as_deref().unwrap_or_default();
    let tls = palisade_tls::ClientTlsFiles::new(
        args.ca.clone(),
        args.cert.clone(),
        args.client_key.clone(),
    );
    let runtime = tokio::runtime::Runtime::new().context("tokio runtime")?;
    match runtime.block_on(palisade_collector::verify_stored(
        collector, gateway, key, tls,
    )) {
        Ok(report) => {
            if args.json {
                println!(
                    "{}",
                    json!({"ok": true, "collector": collector.to_string(), "gateway": gateway, "report": report})
                );
            } else {
                println!("stored audit log OK: gateway {gateway} at {collector}");
                println!("  log id       {}", report.log_id);
                println!(
                    "  entries      {} (seq 0..={})",
                    report.entries, report.last_seq
                );
                println!("  checkpoints  {} signed", report.checkpoints);
                if let Some(cp) = report
                    .last_checkpoint_seq
                    .filter(|&cp| cp < report.last_seq)
                {
                    println!(
                        "  warning: seq {}..={} are after the last signed checkpoint",
                        cp + 1,
                        report.last_seq
                    );
                }
                if report.dropped > 0 {
                    println!(
                        "  warning: {} decisions dropped into signed gaps",
                        report.dropped
                    );
                }
            }
            Ok(true)
        }
        Err(error) => {
            if args.json {
                println!(
                    "{}",
                    json!({"ok": false, "collector": collector.to_string(), "gateway": gateway, "error": format!("{error:#}")})
                );
            } else {
                println!("stored audit log FAILED: gateway {gateway} at {collector}: {error:#}");
            }
            Ok(false)
        }
    }
}

/// Runs `palisade audit ...`; `Ok(false)` when the log does not verify (exit status 1).
pub fn run(args: AuditArgs) -> anyhow::Result<bool> {
    match args.command {
        AuditCommand::Verify(args) => run_verify(&args),
    }
}

fn run_verify(args: &VerifyArgs) -> anyhow::Result<bool> {
    let key = read_public_key(&args.key)?;
    if let Some(collector) = &args.collector {
        return run_verify_collector(args, collector, &key);
    }
    let Some(path) = &args.log else {
        anyhow::bail!("give --log FILE_OR_DIR or --collector URL");
    };
    let shown = path.display().to_string();
    let mut files = Vec::new();
    let result = verify(path, &key).and_then(|report| {
        files = report.files.clone();
        match report.torn_tail() {
            Some(torn) if !args.allow_torn_tail => Err(torn),
            _ => Ok(report),
        }
    });
    match result {
        Ok(report) => {
            if args.json {
                let out = json!({"ok": true, "log": shown, "report": report,
                    "warnings_text": report.warnings.iter().map(|w| w.to_string()).collect::<Vec<_>>()});
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!("audit log OK: {shown}");
                println!("  log id       {}", report.log_id);
                if report.files.len() > 1 {
                    println!(
                        "  files        {} (rotated set, in order)",
                        report.files.len()
                    );
                }
                println!(
                    "  entries      {} (seq 0..={})",
                    report.entries, report.last_seq
                );
                println!("  head hash    {}", report.head_hash);
                println!("  checkpoints  {} signed", report.checkpoints);
                if let Some(cp) = &report.last_checkpoint {
                    println!(
                        "  last signed  line {} seq {}: covers seq 0..={} hash {} at {} ms \
                         (keep a copy off the gateway to detect truncation)",
                        cp.line, cp.seq, cp.head_seq, cp.head_hash, cp.time
                    );
                }
                for w in &report.warnings {
                    println!("  warning: {w}");
                }
            }
            Ok(true)
        }
        Err(
            error @ (VerifyError::BadEntry { .. }
            | VerifyError::Empty
            | VerifyError::FileSet(_)
            | VerifyError::TornTail { .. }),
        ) => {
            if files.is_empty() && path.is_dir() {
                files = set_line_counts(path, DEFAULT_FILE_NAME);
            }
            let place = match &error {
                VerifyError::BadEntry { line, .. } | VerifyError::TornTail { line, .. } => {
                    locate_line(&files, *line)
                }
                _ => None,
            };
            if args.json {
                let first = match &error {
                    VerifyError::BadEntry { line, seq, problem } => {
                        json!({"line": line, "seq": seq, "problem": problem,
                               "file": place.map(|p| p.0), "line_in_file": place.map(|p| p.1)})
                    }
                    _ => serde_json::Value::Null,
                };
                let out = json!({"ok": false, "log": shown, "first_bad_entry": first,
                                 "message": palisade_types::Chain(&error).to_string()});
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!(
                    "audit log FAILED: {shown}\n  {}",
                    palisade_types::Chain(&error)
                );
                if let Some((file, line)) = place {
                    println!("  in file {file}, line {line}");
                }
            }
            Ok(false)
        }
        // The error already names the file and its cause.
        Err(error) => Err(error.into()),
    }
}

/// Reads a public key file: 64 hex characters, or JSON `{"public_key": "<hex>"}`.
pub fn read_public_key(path: &Path) -> anyhow::Result<[u8; 32]> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the public key {}", path.display()))?;
    parse_public_key(&text).with_context(|| format!("bad public key file {}", path.display()))
}

/// Parses the contents of a public key file (see [`read_public_key`]).
pub fn parse_public_key(text: &str) -> anyhow::Result<[u8; 32]> {
    let text = text.trim();
    let hex_text = if text.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(text).context("invalid JSON")?;
        v.get("public_key")
            .and_then(|k| k.as_str())
            .context("the JSON has no \"public_key\" string")?
            .to_owned()
    } else {
        text.to_owned()
    };
    let mut key = [0u8; 32];
    hex::decode_to_slice(hex_text.trim(), &mut key)
        .context("expected 64 hex characters (an Ed25519 public key)")?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_audit::{
        AuditConfig, AuditLog, CheckpointSigner, FsyncPolicy, Kind, MemorySigner,
    };
    use std::sync::Arc;

    fn args(log: &Path, key: &Path, json: bool) -> AuditArgs {
        let verify = VerifyArgs {
            log: Some(log.to_owned()),
            collector: None,
            gateway: None,
            ca: None,
            cert: None,
            client_key: None,
            key: key.to_owned(),
            json,
            allow_torn_tail: false,
        };
        AuditArgs {
            command: AuditCommand::Verify(verify),
        }
    }

    #[test]
    fn key_files_in_both_formats() {
        let hex_key = "11".repeat(32);
        assert_eq!(
            parse_public_key(&format!("{hex_key}\n")).unwrap(),
            [0x11; 32]
        );
        let j = format!("{{\"public_key\": \"{hex_key}\", \"label\": \"gw\"}}");
        assert_eq!(parse_public_key(&j).unwrap(), [0x11; 32]);
        assert!(parse_public_key("abcd").is_err());
        assert!(parse_public_key("{\"key\": 1}").is_err());
    }

    #[test]
    fn verify_passes_a_clean_log_and_fails_a_tampered_one() {
        let dir = tempfile::tempdir().unwrap();
        let signer = MemorySigner::from_seed([3; 32]);
        let key_file = dir.path().join("gateway.pub");
        std::fs::write(&key_file, hex::encode(signer.public_key())).unwrap();
        let logdir = dir.path().join("audit");
        let config = AuditConfig {
            fsync: FsyncPolicy::Never,
            ..AuditConfig::default()
        };
        let log = AuditLog::open(&logdir, config, Arc::new(signer)).unwrap();
        log.append(Kind::Decision, json!({"effect": "deny"}))
            .unwrap();
        log.close().unwrap();
        assert!(run(args(&logdir, &key_file, false)).unwrap());
        assert!(run(args(&logdir, &key_file, true)).unwrap());
        let file = logdir.join("audit.log");
        let text = std::fs::read_to_string(&file)
            .unwrap()
            .replace("deny", "permit");
        std::fs::write(&file, text).unwrap();
        assert!(!run(args(&file, &key_file, true)).unwrap());
        assert!(run(args(&dir.path().join("missing"), &key_file, false)).is_err());
    }
}
