//! `palisade inspect MODULE`: what a plugin component is, read without running or trusting
//! it: its WIT world (imports, exports), the Palisade contract version it was built against,
//! its size and producers, and the embedded manifest and signature chain, shown as claims
//! (`unverified`): only `palisade verify` with a trust root says whether they hold (SER-022).
//!
//! Nothing here compiles or instantiates the module; the WIT is decoded with wit-parser, the
//! same decoder wasmtime's tooling uses, after the file is bounded in size before it is read
//! and in structure (the default `[compile.module]` limits) before it is decoded.

use anyhow::Context;
use clap::Args;
use serde::Serialize;
use serde_json::json;
use wit_parser::decoding::DecodedWasm;
use wit_parser::{Resolve, WorldItem, WorldKey};

use palisade_registry::format_rfc3339;
use palisade_registry::read_file;
use palisade_registry::{key_id, strip_signature, DEFAULT_MAX_MODULE_SIZE};
use palisade_registry::{read_unverified, UnverifiedSignature};

/// The WIT package of the contract.
const CONTRACT_PACKAGE: (&str, &str) = ("palisade", "plugin");

/// Show a plugin component's world, imports, exports, contract version and embedded
/// signature, without a trust root (nothing is verified).
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A component file, or a reference plugin's name (acp, token-auth, geo-privacy).
    module: String,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
}

/// Everything `inspect` reports.
#[derive(Debug, Serialize)]
struct Report {
    module: String,
    /// The file's size, signature section included.
    size: u64,
    /// The size without the signature section (what is hashed, signed and compiled).
    component_size: u64,
    /// The plugin kind its exports make it (`authorizer`, `authenticator`, `filter`), if any.
    kind: Option<&'static str>,
    /// The versions of `palisade:plugin` its imports and exports name (normally one).
    contract_versions: Vec<String>,
    world: World,
    /// The `producers` section: languages, tools and SDKs that built it.
    producers: Vec<Producer>,
    signature: Option<Signature>,
}

#[derive(Debug, Serialize)]
struct World {
    /// The contract world its imports and exports match (`palisade:plugin/prepared-authorizer@0.1.0`);
    /// a component does not record the name of the world it was built from.
    name: String,
    imports: Vec<String>,
    exports: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Producer {
    field: String,
    name: String,
    version: String,
}

#[derive(Debug, Serialize)]
struct Signature {
    /// Always false: nothing in the chain was checked against a trust root.
    verified: bool,
    /// Whether the manifest's hash and size match the component (needs no trust root).
    module_hash_matches: bool,
    manifest: palisade_registry::Manifest,
    publisher_key_id: String,
    delegation: serde_json::Value,
}

pub fn run(args: InspectArgs) -> anyhow::Result<bool> {
    let bytes = match palisade_artifacts::reference(&args.module) {
        Some(bytes) => bytes.to_vec(),
        // The read error already names the file.
        None => read_file(std::path::Path::new(&args.module), DEFAULT_MAX_MODULE_SIZE)?,
    };
    let report = inspect(&args.module, &bytes)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&report);
    }
    Ok(true)
}

fn inspect(module: &str, bytes: &[u8]) -> anyhow::Result<Report> {
    let component =
        strip_signature(bytes).with_context(|| format!("{module} is not a readable component"))?;
    let signature = read_unverified(bytes)
        .with_context(|| format!("{module}: the signature section cannot be read"))?
        .map(signature_report);
    // The structural bounds the gateway checks before compiling (their defaults): a module
    // built to exhaust a decoder is refused here as it would be there.
    palisade_core::ModuleLimits::default()
        .check_component(&component)
        .with_context(|| format!("{module} is refused"))?;
    let decoded = wit_parser::decoding::decode(&component)
        .map_err(|error| anyhow::anyhow!("{module}: cannot decode its WIT world: {error:#}"))?;
    let DecodedWasm::Component(resolve, world_id) = decoded else {
        anyhow::bail!("{module} is a WIT package, not a component");
    };
    let world = &resolve.worlds[world_id];
    let mut versions = Vec::new();
    let mut names = |items: &mut dyn Iterator<Item = (&WorldKey, &WorldItem)>| {
        items
            .map(|(key, item)| item_name(&resolve, key, item, &mut versions))
            .collect::<Vec<_>>()
    };
    // Types a world imports are part of the interfaces already listed.
    let not_type = |(_, item): &(&WorldKey, &WorldItem)| !matches!(item, WorldItem::Type { .. });
    let imports = names(&mut world.imports.iter().filter(not_type));
    let exports = names(&mut world.exports.iter().filter(not_type));
    versions.sort();
    versions.dedup();
    let prepared = exports.iter().any(|export| export == "prepare");
    let kind = ["authorize", "authenticate", "filter"]
        .into_iter()
        .zip(["authorizer", "authenticator", "filter"])
        .find(|(function, _)| exports.iter().any(|export| export == function))
        .map(|(_, kind)| kind);
    let world_name = match (kind, versions.as_slice()) {
        (Some(kind), [version]) => format!(
            "palisade:plugin/{}{kind}@{version}",
            if prepared { "prepared-" } else { "" }
        ),
        _ => format!("{} (no Palisade plugin world)", world.name),
    };
    Ok(Report {
        module: module.to_owned(),
        size: bytes.len() as u64,
        component_size: component.len() as u64,
        kind,
        contract_versions: versions,
        world: World {
            name: world_name,
            imports,
            exports,
        },
        producers: producers(&component),
        signature,
    })
}

/// The name of a world item as WIT writes it (`palisade:plugin/log@0.1.0`, `authorize`),
/// collecting the contract versions it names.
fn item_name(
    resolve: &Resolve,
    key: &WorldKey,
    item: &WorldItem,
    versions: &mut Vec<String>,
) -> String {
    if let WorldItem::Interface { id, .. } = item {
        let interface = &resolve.interfaces[*id];
        if let Some(package) = interface.package {
            let name = &resolve.packages[package].name;
            if (name.namespace.as_str(), name.name.as_str()) == CONTRACT_PACKAGE {
                versions.push(
                    name.version
                        .as_ref()
                        .map(|version| version.to_string())
                        .unwrap_or_else(|| "(unversioned)".into()),
                );
            }
        }
    }
    match key {
        WorldKey::Interface(id) => resolve.id_of(*id).unwrap_or_else(|| "(anonymous)".into()),
        WorldKey::Name(name) => name.clone(),
    }
}

fn producers(component: &[u8]) -> Vec<Producer> {
    let mut out: Vec<Producer> = Vec::new();
    // The producers sections of the component and of every module inside it (parse_all
    // walks into nested ones). Malformed metadata is just not shown: the world above was
    // decoded from the same bytes.
    for payload in wasmparser::Parser::new(0).parse_all(component) {
        let Ok(wasmparser::Payload::CustomSection(section)) = payload else {
            continue;
        };
        if section.name() != "producers" {
            continue;
        }
        let Ok(producers) =
            wasm_metadata::Producers::from_bytes(section.data(), section.data_offset())
        else {
            continue;
        };
        for (field, values) in producers.iter() {
            for (name, version) in values.iter() {
                let known = out.iter().any(|known| {
                    (&known.field, &known.name, &known.version) == (field, name, version)
                });
                if !known {
                    out.push(Producer {
                        field: field.clone(),
                        name: name.clone(),
                        version: version.clone(),
                    });
                }
            }
        }
    }
    out
}

fn signature_report(found: UnverifiedSignature) -> Signature {
    let d = &found.delegation;
    Signature {
        verified: false,
        module_hash_matches: found.hash_matches,
        publisher_key_id: key_id(&found.publisher_key).to_string(),
        delegation: json!({
            "root_key_id": d.root_key_id.to_string(),
            "publisher_key_id": key_id(&d.publisher_key).to_string(),
            "app": d.app,
            "kinds": d.kinds,
            "not_before": format_rfc3339(d.not_before),
            "not_after": format_rfc3339(d.not_after),
        }),
        manifest: found.manifest,
    }
}

fn print_text(report: &Report) {
    println!("module      {}", report.module);
    println!(
        "size        {} bytes ({} without the signature section)",
        report.size, report.component_size
    );
    println!(
        "kind        {}",
        report.kind.unwrap_or("none (no Palisade export)")
    );
    println!(
        "contract    {}",
        if report.contract_versions.is_empty() {
            "palisade:plugin not used".to_owned()
        } else {
            report
                .contract_versions
                .iter()
                .map(|version| format!("palisade:plugin@{version}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    println!("world       {}", report.world.name);
    println!("imports");
    for import in &report.world.imports {
        println!("  {import}");
    }
    println!("exports");
    for export in &report.world.exports {
        println!("  {export}");
    }
    if !report.producers.is_empty() {
        println!("producers");
        for producer in &report.producers {
            println!(
                "  {:<12} {} {}",
                producer.field, producer.name, producer.version
            );
        }
    }
    match &report.signature {
        None => println!("signature   none (unsigned)"),
        Some(signature) => {
            let m = &signature.manifest;
            println!("signature   UNVERIFIED (no trust root; `palisade verify --trust ROOT.pub` checks it)");
            println!(
                "  manifest   app {}, kind {}, name {}, version {}",
                m.app, m.kind, m.name, m.version
            );
            let caps: Vec<&str> = m.capabilities.iter().map(|c| c.name()).collect();
            println!(
                "  capabilities {}",
                if caps.is_empty() {
                    "(none)".to_owned()
                } else {
                    caps.join(", ")
                }
            );
            println!(
                "  sha256     {} ({})",
                m.module_sha256,
                if signature.module_hash_matches {
                    "matches the component"
                } else {
                    "DOES NOT match the component"
                }
            );
            println!("  publisher  key {}", signature.publisher_key_id);
            let d = &signature.delegation;
            println!(
                "  delegation by root key {} for application {}, kinds {}, valid {} to {}",
                d["root_key_id"].as_str().unwrap_or_default(),
                d["app"],
                d["kinds"],
                d["not_before"].as_str().unwrap_or_default(),
                d["not_after"].as_str().unwrap_or_default()
            );
        }
    }
}
