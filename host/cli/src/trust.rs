//! `palisade keygen`, `delegate`, `sign` and `verify`: keys, the trust chain and signed modules
//! (SER-022). The operator's workflow: the operator makes a root key and gives the gateway its
//! public half; a publisher makes a key; the operator delegates an application and kinds to
//! the publisher's public key; the publisher signs modules; anyone verifies them against the
//! root before pushing.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use serde_json::json;

use palisade_registry::{format_rfc3339, now_unix, parse_duration, parse_timestamp};
use palisade_registry::{
    generate_key, read_delegation, read_file, read_private_key, read_public_key, write_key_pair,
    write_replacing,
};
use palisade_registry::{
    key_id, sign, strip_signature, verify_with, Delegation, Manifest, ModuleCapability, ModuleHash,
    ModuleKind, TrustAnchors, VerifiedModule, VerifyPolicy, Version, DEFAULT_MAX_MODULE_SIZE,
};

/// Arguments of `palisade keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Path prefix: writes PREFIX.key (private, mode 0600) and PREFIX.pub; never overwrites.
    #[arg(long, value_name = "PREFIX")]
    pub out: PathBuf,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `palisade delegate`.
#[derive(Debug, Args)]
pub struct DelegateArgs {
    /// The operator's root private key.
    #[arg(long, value_name = "ROOT.key")]
    pub root: PathBuf,
    /// The publisher's public key.
    #[arg(long, value_name = "PUB.pub")]
    pub publisher: PathBuf,
    /// The one application the publisher may sign modules for.
    #[arg(long)]
    pub app: String,
    /// The plugin kinds it may sign: authorizer, authenticator, filter (comma-separated).
    #[arg(long, value_delimiter = ',', required = true)]
    pub kinds: Vec<ModuleKind>,
    /// How long the delegation is valid from --not-before: e.g. 3600, 90s, 12h, 365d, 2w, 1d12h.
    #[arg(long, default_value = "365d", value_parser = parse_duration)]
    pub valid_for: u64,
    /// Start of validity: seconds since the epoch, YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (default:
    /// now).
    #[arg(long, value_parser = parse_timestamp)]
    pub not_before: Option<u64>,
    /// Where to write the delegation (replaced if it exists).
    #[arg(long)]
    pub out: PathBuf,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `palisade sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The publisher's private key.
    #[arg(long, value_name = "PUB.key")]
    pub key: PathBuf,
    /// The delegation that entitles the key (from `palisade delegate`).
    #[arg(long, value_name = "FILE")]
    pub delegation: PathBuf,
    /// The application the module is for.
    #[arg(long)]
    pub app: String,
    /// The plugin kind: authorizer, authenticator or filter.
    #[arg(long)]
    pub kind: ModuleKind,
    /// The plugin's name within the application.
    #[arg(long)]
    pub name: String,
    /// The module's semantic version (MAJOR.MINOR.PATCH[-PRERELEASE]).
    #[arg(long)]
    pub version: Version,
    /// Host capabilities the module asks for: kv, groups, crypto, location (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub capabilities: Vec<ModuleCapability>,
    /// Where to write the signed component (replaced if it exists).
    #[arg(long)]
    pub out: PathBuf,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// The component to sign.
    pub input: PathBuf,
}

/// Arguments of `palisade verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Trusted root public keys (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', required = true, value_name = "ROOT.pub")]
    pub trust: Vec<PathBuf>,
    /// The application the module must be for.
    #[arg(long)]
    pub app: Option<String>,
    /// The kind the module must be.
    #[arg(long)]
    pub kind: Option<ModuleKind>,
    /// Check the delegation's validity at this time instead of now.
    #[arg(long, value_parser = parse_timestamp)]
    pub at: Option<u64>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// The signed component.
    pub file: PathBuf,
}

fn kinds(kinds: &[ModuleKind]) -> String {
    kinds
        .iter()
        .map(|k| k.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `palisade keygen`: a new Ed25519 key pair.
pub fn run_keygen(args: KeygenArgs) -> anyhow::Result<bool> {
    let key = generate_key();
    let (private, public) = write_key_pair(&args.out, &key)?;
    let id = key_id(&key.verifying_key());
    if args.json {
        println!(
            "{}",
            json!({ "key_id": id.to_string(), "private_key": private, "public_key": public })
        );
    } else {
        println!(
            "key {id}\n  private key {} (mode 0600, keep it secret)\n  public key  {}",
            private.display(),
            public.display()
        );
    }
    Ok(true)
}

/// `palisade delegate`: the root lets a publisher key sign modules for one app and kinds.
pub fn run_delegate(args: DelegateArgs) -> anyhow::Result<bool> {
    let root = read_private_key(&args.root)?;
    let publisher = read_public_key(&args.publisher)?;
    let not_before = args.not_before.unwrap_or_else(now_unix);
    let not_after = not_before
        .checked_add(args.valid_for)
        .context("--valid-for is too long")?;
    let delegation = Delegation::issue(
        &root,
        publisher,
        &args.app,
        &args.kinds,
        not_before,
        not_after,
    )
    .context("cannot issue the delegation")?;
    write_replacing(&args.out, (delegation.to_json() + "\n").as_bytes())?;
    if args.json {
        println!(
            "{}",
            json!({
                "file": args.out,
                "root_key_id": delegation.root_key_id.to_string(),
                "publisher_key_id": delegation.publisher_key_id().to_string(),
                "app": delegation.app,
                "kinds": delegation.kinds,
                "not_before": format_rfc3339(delegation.not_before),
                "not_after": format_rfc3339(delegation.not_after),
            })
        );
    } else {
        println!(
            "root {} lets publisher {} sign {} modules for application {:?}\n  valid {} to {}\n  written to {}",
            delegation.root_key_id,
            delegation.publisher_key_id(),
            kinds(&delegation.kinds),
            delegation.app,
            format_rfc3339(delegation.not_before),
            format_rfc3339(delegation.not_after),
            args.out.display()
        );
    }
    Ok(true)
}

/// `palisade sign`: embeds manifest, signature and delegation into the component.
pub fn run_sign(args: SignArgs) -> anyhow::Result<bool> {
    let key = read_private_key(&args.key)?;
    let delegation = read_delegation(&args.delegation)?;
    let now = now_unix();
    if now >= delegation.not_after {
        bail!(
            "the delegation in {} expired at {}",
            args.delegation.display(),
            format_rfc3339(delegation.not_after)
        );
    }
    let component = read_file(&args.input, DEFAULT_MAX_MODULE_SIZE)?;
    let manifest = Manifest::new(
        &args.app,
        args.kind,
        &args.name,
        args.version,
        &args.capabilities,
    );
    let signed = sign(&component, &manifest, &key, &delegation)?;
    write_replacing(&args.out, &signed)?;
    let stripped = strip_signature(&signed)?;
    let sha = ModuleHash::of(&stripped);
    if args.json {
        let mut manifest = manifest.clone();
        manifest.module_sha256 = sha;
        manifest.size = stripped.len() as u64;
        println!("{}", json!({ "file": args.out, "manifest": manifest }));
    } else {
        println!(
            "signed {}/{}@{} ({}) with key {}: sha256 {sha}\n  written to {}",
            args.app,
            args.name,
            manifest.version,
            args.kind,
            key_id(&key.verifying_key()),
            args.out.display()
        );
        if now < delegation.not_before {
            println!(
                "  note: the delegation is valid only from {}",
                format_rfc3339(delegation.not_before)
            );
        }
    }
    Ok(true)
}

/// `palisade verify`: prints the manifest and the chain up to a trusted root, or the exact
/// reason the module fails (exit code 1).
pub fn run_verify(args: VerifyArgs) -> anyhow::Result<bool> {
    let mut anchors = TrustAnchors::new();
    let mut root_files = Vec::new();
    for path in &args.trust {
        let id = anchors.insert(read_public_key(path)?);
        root_files.push((id, path.clone()));
    }
    let bytes = read_file(&args.file, DEFAULT_MAX_MODULE_SIZE)?;
    let policy = VerifyPolicy {
        anchors: &anchors,
        now: Some(args.at.unwrap_or_else(now_unix)),
        expected_app: args.app.as_deref(),
        expected_kind: args.kind,
        max_size: DEFAULT_MAX_MODULE_SIZE,
    };
    let module = match verify_with(&bytes, &policy) {
        Ok(module) => module,
        Err(error) => {
            if args.json {
                println!(
                    "{}",
                    json!({ "valid": false, "error": { "code": error.code(), "message": palisade_types::Chain(&error).to_string() } })
                );
            } else {
                eprintln!(
                    "{}: verification failed: {}",
                    args.file.display(),
                    palisade_types::Chain(&error)
                );
            }
            return Ok(false);
        }
    };
    let root_file = root_files
        .iter()
        .find(|(id, _)| *id == module.root_key_id())
        .map(|(_, p)| p.clone());
    print_verified(&module, root_file, args.json);
    Ok(true)
}

fn print_verified(module: &VerifiedModule, root_file: Option<PathBuf>, as_json: bool) {
    let (m, d) = (&module.manifest, &module.delegation);
    if as_json {
        println!(
            "{}",
            json!({
                "valid": true,
                "manifest": m,
                "chain": {
                    "publisher_key_id": module.publisher_key_id().to_string(),
                    "delegation": {
                        "app": d.app,
                        "kinds": d.kinds,
                        "not_before": format_rfc3339(d.not_before),
                        "not_after": format_rfc3339(d.not_after),
                    },
                    "root_key_id": module.root_key_id().to_string(),
                    "root_file": root_file,
                },
            })
        );
        return;
    }
    let caps: Vec<&str> = m.capabilities.iter().map(|c| c.name()).collect();
    println!("OK {}/{}@{} verifies", m.app, m.name, m.version);
    println!("manifest");
    println!(
        "  app          {}\n  kind         {}\n  name         {}\n  version      {}",
        m.app, m.kind, m.name, m.version
    );
    println!(
        "  capabilities {}",
        if caps.is_empty() {
            "(none)".to_owned()
        } else {
            caps.join(", ")
        }
    );
    println!(
        "  sha256       {}\n  size         {} bytes",
        m.module_sha256, m.size
    );
    println!("chain");
    println!(
        "  module signed by publisher key {}",
        module.publisher_key_id()
    );
    println!(
        "  delegated by root key {} for application {:?}, kinds {}, valid {} to {}",
        d.root_key_id,
        d.app,
        kinds(&d.kinds),
        format_rfc3339(d.not_before),
        format_rfc3339(d.not_after)
    );
    let from = root_file
        .map(|p| format!(" ({})", p.display()))
        .unwrap_or_default();
    println!("  root key {} is trusted{from}", d.root_key_id);
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    enum Cmd {
        Keygen(KeygenArgs),
        Delegate(DelegateArgs),
        Sign(SignArgs),
        Verify(VerifyArgs),
    }

    fn run(args: &[&str]) -> anyhow::Result<bool> {
        match Cmd::try_parse_from(std::iter::once("palisade").chain(args.iter().copied()))? {
            Cmd::Keygen(a) => run_keygen(a),
            Cmd::Delegate(a) => run_delegate(a),
            Cmd::Sign(a) => run_sign(a),
            Cmd::Verify(a) => run_verify(a),
        }
    }

    #[test]
    fn keygen_delegate_sign_verify() {
        let dir = tempfile::tempdir().unwrap();
        let p = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
        // A real component: signing embeds a custom section in whatever it is given.
        std::fs::write(p("plugin.wasm"), palisade_artifacts::ACP).unwrap();
        assert!(run(&["keygen", "--out", &p("root")]).unwrap());
        assert!(
            run(&["keygen", "--out", &p("root")]).is_err(),
            "keys are never overwritten"
        );
        assert!(run(&["keygen", "--out", &p("pub")]).unwrap());
        assert!(run(&[
            "delegate",
            "--root",
            &p("root.key"),
            "--publisher",
            &p("pub.pub"),
            "--app",
            "lights",
            "--kinds",
            "authorizer,filter",
            "--valid-for",
            "30d",
            "--out",
            &p("d.json")
        ])
        .unwrap());
        assert!(run(&[
            "sign",
            "--key",
            &p("pub.key"),
            "--delegation",
            &p("d.json"),
            "--app",
            "lights",
            "--kind",
            "authorizer",
            "--name",
            "acp",
            "--version",
            "1.2.0",
            "--capabilities",
            "kv,groups",
            "--out",
            &p("signed.wasm"),
            &p("plugin.wasm")
        ])
        .unwrap());
        assert!(run(&[
            "verify",
            "--trust",
            &p("root.pub"),
            &p("signed.wasm"),
            "--app",
            "lights",
            "--kind",
            "authorizer"
        ])
        .unwrap());
        assert!(run(&[
            "verify",
            "--trust",
            &p("root.pub"),
            "--json",
            &p("signed.wasm")
        ])
        .unwrap());
        // The exact reason, and exit code 1 (Ok(false)), when it does not verify.
        assert!(
            !run(&["verify", "--trust", &p("pub.pub"), &p("signed.wasm")]).unwrap(),
            "untrusted root"
        );
        assert!(!run(&[
            "verify",
            "--trust",
            &p("root.pub"),
            "--app",
            "doors",
            &p("signed.wasm")
        ])
        .unwrap());
        assert!(!run(&[
            "verify",
            "--trust",
            &p("root.pub"),
            "--at",
            "2100-01-01",
            &p("signed.wasm")
        ])
        .unwrap());
        assert!(
            !run(&["verify", "--trust", &p("root.pub"), &p("plugin.wasm")]).unwrap(),
            "unsigned"
        );
        // A kind outside the delegation is refused at signing.
        assert!(run(&[
            "sign",
            "--key",
            &p("pub.key"),
            "--delegation",
            &p("d.json"),
            "--app",
            "lights",
            "--kind",
            "authenticator",
            "--name",
            "acp",
            "--version",
            "1.2.0",
            "--out",
            &p("x.wasm"),
            &p("plugin.wasm")
        ])
        .is_err());
    }
}
