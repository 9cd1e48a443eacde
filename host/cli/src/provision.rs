//! `palisade provision`: credential provisioning bundles (SER-019..022, replay SER-012).
//!
//! Provider side: `create` builds a signed (and, with secrets, encrypted) bundle. Gateway side,
//! on a local data folder: `init` makes the gateway's X25519 key, `trust` adds a provider,
//! `apply` applies a bundle; `inspect` reads a bundle's header anywhere.
//!
//! Data folder layout: `DIR/keys/` is the keystore (`SoftwareKeyStore::open`), with the
//! gateway's X25519 key labelled `provisioning-x25519` in the gateway scope;
//! `DIR/provision/trust.json` holds the gateway id and trusted providers ([`TrustConfig`]);
//! `DIR/provision/state.json` the provisioning state (replay protection, key index, groups).
//!
//! Key files hold 32 bytes as 64 hex digits (whitespace ignored) or raw.

use anyhow::{bail, Context as _};
use palisade_keys::{KeyKind, KeyScope, KeyStore, SoftwareKeyStore};
// One clock and one duration grammar for every command (issue #14.3): `provision create
// --valid-for 2w` and `trust delegate --valid-for 2w` read the same way.
use palisade_provision::{
    create_bundle, BundleContents, BundleSpec, GatewayKey, ProviderEntry, Provisioner,
    SignedBundle, StateFile, TrustConfig, GATEWAY_X25519_LABEL,
};
use palisade_types::{now_unix, parse_duration};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Credential provisioning by service providers (SER-020/021).
#[derive(Debug, clap::Args)]
pub struct ProvisionArgs {
    #[command(subcommand)]
    command: ProvisionCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ProvisionCommand {
    /// Build a signed provisioning bundle (provider side); encrypted when --gateway-x25519 is
    /// given, which is required when it carries secrets.
    Create(CreateArgs),
    /// Print a bundle's header (and, for a clear bundle, its contents).
    Inspect(InspectArgs),
    /// Apply a bundle to a gateway data folder; nothing changes if it is refused.
    Apply(ApplyArgs),
    /// Prepare a gateway data folder: its id and its X25519 key for opening bundles.
    Init(InitArgs),
    /// Trust a provider in a gateway data folder, for the listed applications.
    Trust(TrustArgs),
}

/// `palisade provision create`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The provider's Ed25519 private key (32-byte seed).
    #[arg(long)]
    provider_key: PathBuf,
    /// The provider's id, as the gateway trusts it.
    #[arg(long)]
    provider_id: String,
    /// The gateway the bundle is for.
    #[arg(long)]
    gateway_id: String,
    /// The gateway's X25519 public key: encrypt the bundle to it (SER-021).
    #[arg(long)]
    gateway_x25519: Option<PathBuf>,
    /// Device keys: {"device-id": "ED25519-PUBLIC-KEY-HEX", ...}.
    #[arg(long)]
    devices: Option<PathBuf>,
    /// Groups: {"gateway": {"group": ["device", ...]}, "apps": {"app": {"group": ["member", ...]}}}.
    /// An empty member list removes the group.
    #[arg(long)]
    groups: Option<PathBuf>,
    /// Originator positions per application, the proxy's location source for `aclr`:
    /// {"app": {"originator": {"latitude": 48.85, "longitude": 2.35, "country": "FR"}}};
    /// null removes a position.
    #[arg(long)]
    positions: Option<PathBuf>,
    /// Application secrets: {"app": {"key-name": "SECRET-HEX (16..64 bytes)"}}; needs --gateway-x25519.
    #[arg(long)]
    secrets: Option<PathBuf>,
    /// Application public keys: {"app": {"key-name": "ED25519-PUBLIC-KEY-HEX"}}.
    #[arg(long)]
    app_keys: Option<PathBuf>,
    /// How long the bundle is valid: e.g. 3600, 90s, 30m, 12h, 1d, 2w (at most 90 days).
    #[arg(long, default_value = "1d")]
    valid_for: String,
    /// Start of validity (Unix seconds); default now.
    #[arg(long)]
    issued_at: Option<u64>,
    /// The provider's sequence number, above every one sent to this gateway before.
    #[arg(long)]
    sequence: u64,
    /// Where to write the bundle.
    #[arg(long)]
    out: PathBuf,
}

/// `palisade provision inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// The bundle file.
    bundle: PathBuf,
    /// Also check the signature with this provider public key.
    #[arg(long)]
    provider_pub: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `palisade provision apply`.
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// The gateway data folder.
    #[arg(long)]
    data: PathBuf,
    /// The bundle file.
    bundle: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `palisade provision init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The gateway data folder.
    #[arg(long)]
    data: PathBuf,
    /// This gateway's id.
    #[arg(long)]
    gateway_id: String,
    /// Also write the X25519 public key (hex) to this file, for providers.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// `palisade provision trust`.
#[derive(Debug, clap::Args)]
pub struct TrustArgs {
    /// The gateway data folder.
    #[arg(long)]
    data: PathBuf,
    /// The provider's id.
    #[arg(long)]
    provider_id: String,
    /// The provider's Ed25519 public key file.
    #[arg(long)]
    provider_pub: PathBuf,
    /// An application it may provision (repeatable) (SER-022).
    #[arg(long = "app")]
    apps: Vec<String>,
    /// Let it set the gateway's own groups for group authentication.
    #[arg(long)]
    gateway_groups: bool,
}

/// Runs `palisade provision ...`. `Ok(false)` when a bundle was refused (exit code 1).
pub fn run(args: ProvisionArgs) -> anyhow::Result<bool> {
    match args.command {
        ProvisionCommand::Create(a) => create(a).map(|()| true),
        ProvisionCommand::Inspect(a) => inspect(a),
        ProvisionCommand::Apply(a) => apply(a),
        ProvisionCommand::Init(a) => init(a).map(|()| true),
        ProvisionCommand::Trust(a) => trust(a).map(|()| true),
    }
}

/// Reads 32 bytes from a key file: 64 hex digits (whitespace ignored) or raw bytes.
pub fn read_key32(path: &Path, what: &str) -> anyhow::Result<[u8; 32]> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading {what} {}", path.display()))?;
    let text: String = String::from_utf8_lossy(&bytes).split_whitespace().collect();
    if let Ok(k) = hex::decode(&text).map(<[u8; 32]>::try_from) {
        return k.map_err(|_| anyhow::anyhow!("{what} {}: expected 32 bytes", path.display()));
    }
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        anyhow::anyhow!(
            "{what} {}: expected 64 hex digits or 32 raw bytes",
            path.display()
        )
    })
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn create(a: CreateArgs) -> anyhow::Result<()> {
    let seed = zeroize::Zeroizing::new(read_key32(&a.provider_key, "provider key")?);
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let mut c = BundleContents::default();
    if let Some(p) = &a.devices {
        c.add_devices_json(&read_json(p)?)?;
    }
    if let Some(p) = &a.positions {
        c.add_positions_json(&read_json(p)?)?;
    }
    if let Some(p) = &a.groups {
        c.add_groups_json(read_json(p)?);
    }
    if let Some(p) = &a.secrets {
        c.add_secrets_json(&read_json(p)?)?;
    }
    if let Some(p) = &a.app_keys {
        c.add_public_keys_json(&read_json(p)?)?;
    }
    let encrypt_to = match &a.gateway_x25519 {
        Some(p) => Some(read_key32(p, "gateway X25519 public key")?),
        None => None,
    };
    let issued_at = match a.issued_at {
        Some(t) => t,
        None => now_unix(),
    };
    let spec = BundleSpec {
        provider: a.provider_id,
        gateway: a.gateway_id,
        issued_at,
        expires_at: issued_at.saturating_add(parse_duration(&a.valid_for)?),
        sequence: a.sequence,
        contents: c,
        encrypt_to,
    };
    let bytes = create_bundle(&spec, &key).context("building the bundle")?;
    std::fs::write(&a.out, &bytes).with_context(|| format!("writing {}", a.out.display()))?;
    let b = SignedBundle::parse(&bytes)?;
    eprintln!(
        "wrote {} ({} bytes, bundle {}, sequence {}, {})",
        a.out.display(),
        bytes.len(),
        b.header().id_hex(),
        spec.sequence,
        if encrypt_to.is_some() {
            "encrypted"
        } else {
            "not encrypted"
        }
    );
    Ok(())
}

fn inspect(a: InspectArgs) -> anyhow::Result<bool> {
    let bytes =
        std::fs::read(&a.bundle).with_context(|| format!("reading {}", a.bundle.display()))?;
    let b = SignedBundle::parse(&bytes).context("not a valid bundle")?;
    let signature = match &a.provider_pub {
        None => None,
        Some(p) => {
            let vk =
                ed25519_dalek::VerifyingKey::from_bytes(&read_key32(p, "provider public key")?)
                    .context("provider public key is not a curve point")?;
            Some(
                b.verify(&vk)
                    .map_err(|e| palisade_types::Chain(&e).to_string()),
            )
        }
    };
    // Only a clear bundle's contents can be shown; secrets never travel in one.
    let contents = match b.header().encryption {
        Some(_) => None,
        None => Some(b.contents(None)?),
    };
    let h = b.header();
    if a.json {
        let mut out = json!({
            "header": h,
            "size": bytes.len(),
            "payload_len": b.payload_len(),
            "encrypted": h.encryption.is_some(),
        });
        if let Some(s) = &signature {
            out["signature_valid"] = json!(s.is_ok());
        }
        if let Some(c) = &contents {
            out["contents"] = c.public_view();
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "bundle      {} (format v{}, {} bytes)",
            h.id_hex(),
            h.version,
            bytes.len()
        );
        println!("provider    {}", h.provider);
        println!("gateway     {}", h.gateway);
        println!("sequence    {}", h.sequence);
        println!(
            "valid       {} .. {} (Unix seconds)",
            h.issued_at, h.expires_at
        );
        match &h.encryption {
            Some(e) => println!("encrypted   to X25519 key {}", hex::encode(e.recipient)),
            None => println!("encrypted   no"),
        }
        match &signature {
            None => println!("signature   not checked (give --provider-pub)"),
            Some(Ok(())) => println!("signature   valid"),
            Some(Err(e)) => println!("signature   INVALID: {e}"),
        }
        if let Some(c) = &contents {
            println!(
                "devices     {}",
                c.devices.keys().cloned().collect::<Vec<_>>().join(", ")
            );
            for (g, m) in &c.gateway_groups {
                println!(
                    "group       {g} (gateway): {}",
                    m.iter().cloned().collect::<Vec<_>>().join(", ")
                );
            }
            for (app, gs) in &c.app_groups {
                for (g, m) in gs {
                    println!(
                        "group       {app}/{g}: {}",
                        m.iter().cloned().collect::<Vec<_>>().join(", ")
                    );
                }
            }
            for (app, ks) in &c.app_public_keys {
                println!(
                    "public keys {app}: {}",
                    ks.keys().cloned().collect::<Vec<_>>().join(", ")
                );
            }
        } else {
            println!("contents    encrypted ({} bytes)", b.payload_len());
        }
    }
    Ok(signature.is_none_or(|s| s.is_ok()))
}

fn trust_path(data: &Path) -> PathBuf {
    data.join("provision").join("trust.json")
}

fn load_trust(data: &Path) -> anyhow::Result<TrustConfig> {
    let p = trust_path(data);
    if !p.exists() {
        bail!(
            "{} does not exist: run `palisade provision init --data {}` first",
            p.display(),
            data.display()
        );
    }
    read_json(&p)
}

fn save_trust(data: &Path, t: &TrustConfig) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let p = trust_path(data);
    let dir = p.parent().expect("has a parent");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let tmp = p.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(t)?)?;
    std::fs::rename(&tmp, &p).with_context(|| format!("writing {}", p.display()))
}

/// The gateway's X25519 key in the data folder's keystore, if made by `init`.
fn gateway_x25519(store: &SoftwareKeyStore) -> anyhow::Result<Option<palisade_keys::KeyHandle>> {
    Ok(store
        .list(&KeyScope::Gateway)?
        .into_iter()
        .find(|k| k.label == GATEWAY_X25519_LABEL && k.kind == KeyKind::X25519)
        .map(|k| k.handle))
}

fn init(a: InitArgs) -> anyhow::Result<()> {
    let store = SoftwareKeyStore::open(&a.data.join("keys"))?;
    let handle = match gateway_x25519(&store)? {
        Some(h) => h,
        None => store.generate(&KeyScope::Gateway, KeyKind::X25519, GATEWAY_X25519_LABEL)?,
    };
    let public = hex::encode(store.public_key(&KeyScope::Gateway, &handle)?);
    let trust = match trust_path(&a.data).exists() {
        true => {
            let t = load_trust(&a.data)?;
            if t.gateway_id != a.gateway_id {
                bail!(
                    "{} already belongs to gateway {:?}",
                    a.data.display(),
                    t.gateway_id
                );
            }
            t
        }
        false => TrustConfig::new(a.gateway_id),
    };
    trust.providers().context("invalid trust configuration")?;
    save_trust(&a.data, &trust)?;
    if let Some(out) = &a.out {
        std::fs::write(out, format!("{public}\n"))
            .with_context(|| format!("writing {}", out.display()))?;
    }
    println!("{public}");
    Ok(())
}

fn trust(a: TrustArgs) -> anyhow::Result<()> {
    let mut t = load_trust(&a.data)?;
    let key = read_key32(&a.provider_pub, "provider public key")?;
    let entry = ProviderEntry {
        public_key: hex::encode(key),
        apps: a.apps.into_iter().collect(),
        gateway_groups: a.gateway_groups,
    };
    t.providers.insert(a.provider_id.clone(), entry);
    t.providers().context("invalid provider")?;
    save_trust(&a.data, &t)?;
    eprintln!(
        "trusted provider {:?} in {}",
        a.provider_id,
        trust_path(&a.data).display()
    );
    Ok(())
}

fn apply(a: ApplyArgs) -> anyhow::Result<bool> {
    let trust = load_trust(&a.data)?;
    let providers = trust.providers().context("invalid trust configuration")?;
    let store = Arc::new(SoftwareKeyStore::open(&a.data.join("keys"))?);
    let handle = gateway_x25519(&store)?.with_context(|| {
        format!(
            "no gateway X25519 key in {}: run `palisade provision init`",
            a.data.display()
        )
    })?;
    let key = GatewayKey::from_store(store.clone(), handle)?;
    let file = StateFile::open(&a.data.join("provision"))?;
    let mut p = Provisioner::new(trust.gateway_id.clone(), key, store, file)?;
    for (id, t) in providers {
        p.trust(id, t);
    }
    let bytes =
        std::fs::read(&a.bundle).with_context(|| format!("reading {}", a.bundle.display()))?;
    match p.apply(&bytes, now_unix()) {
        Ok(r) => {
            if a.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({"applied": true, "report": r}))?
                );
            } else {
                println!(
                    "applied bundle {} from {} (sequence {})",
                    r.bundle_id, r.provider, r.sequence
                );
                println!("  devices: {}", r.devices.len());
                println!("  gateway groups: {}", r.gateway_groups.join(", "));
                println!("  app groups: {}", r.app_groups.join(", "));
                for k in &r.keys {
                    println!("  key {}/{} ({}) -> {}", k.app, k.name, k.kind, k.handle);
                }
            }
            Ok(true)
        }
        Err(e) if e.is_rejection() => {
            if a.json {
                let out = json!({"applied": false, "code": e.code(), "error": palisade_types::Chain(&e).to_string()});
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                eprintln!("refused: {}", palisade_types::Chain(&e));
            }
            Ok(false)
        }
        Err(e) => Err(e).context("applying the bundle"),
    }
}

#[cfg(test)]
#[path = "provision_tests.rs"]
mod tests;
