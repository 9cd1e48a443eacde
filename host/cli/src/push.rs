//! `palisade push`: uploads a signed module to a running gateway's admin API and manages its
//! versions (`list`, `activate`, `rollback`, `remove`). Every request is signed with the admin
//! key (SER-008) over its headers and the body's hash and length, with a fresh timestamp and
//! nonce (SER-012); see [`palisade_gateway::sign_request`].

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use palisade_core::now_unix;
use palisade_gateway::sign_request;
use palisade_registry::read_private_key;

/// Arguments of `palisade push`.
#[derive(Debug, Args)]
#[command(subcommand_negates_reqs = true)]
pub struct PushArgs {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: Option<PushCommand>,
    /// The application the module is for (must equal the manifest's).
    #[arg(long)]
    app: Option<String>,
    /// The plugin name (must equal the manifest's).
    #[arg(long)]
    name: Option<String>,
    /// Make the uploaded version the active one (hot swap) if it is greater than the active.
    #[arg(long)]
    activate: bool,
    /// The signed module (`palisade sign` output).
    #[arg(value_name = "SIGNED.wasm")]
    file: Option<PathBuf>,
    /// Publish the signed module to an OCI registry instead of a gateway, in the Wasm OCI
    /// artifact layout: REGISTRY/REPOSITORY:TAG (issue #17). Gateways subscribed to the
    /// reference verify it themselves; the registry is transport only.
    #[arg(long, value_name = "REGISTRY/REPO:TAG", conflicts_with_all = ["app", "name", "activate"])]
    oci: Option<String>,
    /// With --oci: speak plain HTTP to the registry (a loopback or lab registry). Never
    /// chosen without this flag.
    #[arg(long, requires = "oci")]
    insecure: bool,
}

/// Options every push subcommand takes.
#[derive(Debug, Args)]
struct Common {
    /// The gateway's admin listener, e.g. https://gw.example:8443 (http:// works, warned:
    /// the signed request is safe from tampering but not from reading).
    #[arg(long, global = true, value_name = "URL")]
    gateway: Option<String>,
    /// For an https:// gateway: PEM CA certificates its certificate must chain to (with
    /// --oci: the registry's, instead of the system's roots).
    #[arg(long, global = true, value_name = "CA.pem")]
    ca_file: Option<PathBuf>,
    /// For an https:// gateway: a PEM client certificate to present (with --client-key),
    /// for an admin listener that requires one.
    #[arg(long, global = true, value_name = "CERT.pem")]
    client_cert: Option<PathBuf>,
    /// The PEM private key of --client-cert.
    #[arg(long, global = true, value_name = "KEY.pem")]
    client_key: Option<PathBuf>,
    /// The admin private key (`palisade keygen`).
    #[arg(long, global = true, value_name = "ADMIN.key")]
    admin_key: Option<PathBuf>,
    /// Print the gateway's JSON answer.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum PushCommand {
    /// List the stored versions and which one is active.
    List {
        /// Only this application.
        #[arg(long)]
        app: Option<String>,
    },
    /// Make a stored version the active one (a lower one needs --force).
    Activate {
        #[arg(long)]
        app: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        version: String,
        /// Allow going back to a lower version.
        #[arg(long)]
        force: bool,
    },
    /// Go back to the highest good version below the active one (operator decision).
    Rollback {
        #[arg(long)]
        app: String,
        #[arg(long)]
        name: String,
        /// Required: a rollback lowers the active version.
        #[arg(long)]
        force: bool,
    },
    /// Remove a stored version (the active one only with --force).
    Remove {
        #[arg(long)]
        app: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        version: String,
        #[arg(long)]
        force: bool,
    },
}

/// Runs `palisade push`; false when the gateway refused the request.
pub fn run(args: PushArgs) -> anyhow::Result<bool> {
    let common = &args.common;
    if let Some(reference) = &args.oci {
        let file = args
            .file
            .as_ref()
            .context("push --oci needs the signed module file")?;
        push_oci(
            reference,
            args.insecure,
            common.ca_file.as_deref(),
            file,
            common.json,
        )?;
        return Ok(true);
    }
    let (method, path, body) = match &args.command {
        None => {
            let (app, name, file) = (args.app.as_ref(), args.name.as_ref(), args.file.as_ref());
            let (Some(app), Some(name), Some(file)) = (app, name, file) else {
                bail!("push needs --app, --name and the signed module file");
            };
            let body =
                std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            let query = if args.activate { "?activate=true" } else { "" };
            (
                "PUT",
                format!("/admin/v1/apps/{app}/plugins/{name}{query}"),
                body,
            )
        }
        Some(PushCommand::List { app }) => {
            let query = app
                .as_ref()
                .map(|a| format!("?app={a}"))
                .unwrap_or_default();
            ("GET", format!("/admin/v1/modules{query}"), Vec::new())
        }
        Some(PushCommand::Activate {
            app,
            name,
            version,
            force,
        }) => {
            let force = if *force { "&force=true" } else { "" };
            (
                "POST",
                format!("/admin/v1/apps/{app}/plugins/{name}/activate?version={version}{force}"),
                Vec::new(),
            )
        }
        Some(PushCommand::Rollback { app, name, force }) => {
            let force = if *force { "?force=true" } else { "" };
            (
                "POST",
                format!("/admin/v1/apps/{app}/plugins/{name}/rollback{force}"),
                Vec::new(),
            )
        }
        Some(PushCommand::Remove {
            app,
            name,
            version,
            force,
        }) => {
            let force = if *force { "?force=true" } else { "" };
            (
                "DELETE",
                format!("/admin/v1/apps/{app}/plugins/{name}/versions/{version}{force}"),
                Vec::new(),
            )
        }
    };
    let gateway = common
        .gateway
        .as_deref()
        .context("--gateway URL is required")?;
    let key_path = common
        .admin_key
        .as_ref()
        .context("--admin-key ADMIN.key is required")?;
    let key = read_private_key(key_path)?;
    let headers = sign_request(&key, method, &path, &body, now_unix());
    let uri: hyper::Uri = gateway
        .parse()
        .with_context(|| format!("--gateway {gateway:?} is not a URL"))?;
    let files = palisade_tls::ClientTlsFiles::new(
        common.ca_file.clone(),
        common.client_cert.clone(),
        common.client_key.clone(),
    );
    let tls = files.for_url(&uri).map_err(|error| match error {
        palisade_tls::ClientTlsError::FilesForPlainLink => anyhow::anyhow!(
            "--ca-file, --client-cert and --client-key apply to an https:// --gateway only"
        ),
        error => anyhow::Error::new(error).context("--gateway TLS"),
    })?;
    if tls.is_none() {
        eprintln!("warning: {gateway} is plain http://: the request and the gateway's answer cross the network unencrypted");
    }
    let (status, answer) = send(gateway, tls, method, &path, &headers, &body)?;
    let json: serde_json::Value = serde_json::from_str(&answer).unwrap_or(serde_json::Value::Null);
    let ok = (200..300).contains(&status);
    if common.json {
        println!("{answer}");
    } else if !ok {
        let code = json["error"]["code"].as_str().unwrap_or("error");
        let message = json["error"]["message"].as_str().unwrap_or(&answer);
        eprintln!("refused ({status} {code}): {message}");
    } else if let Some(modules) = json["modules"].as_array() {
        for m in modules {
            println!(
                "{}/{}@{}  {}  {}  sha256 {}",
                m["app"].as_str().unwrap_or(""),
                m["name"].as_str().unwrap_or(""),
                m["version"].as_str().unwrap_or(""),
                m["kind"].as_str().unwrap_or(""),
                m["state"].as_str().unwrap_or(""),
                m["sha256"].as_str().unwrap_or("")
            );
        }
    } else {
        println!("{}", json["status"].as_str().unwrap_or("ok"));
    }
    Ok(ok)
}

/// How long to wait for the gateway's `100 Continue` before sending the body anyway (a
/// proxy in front of the gateway may not pass the interim answer on).
const CONTINUE_WAIT: Duration = Duration::from_secs(5);

/// The connection to the gateway: plain TCP or TLS ([`palisade_tls`]).
trait Connection: Read + Write {}
impl<T: Read + Write> Connection for T {}

/// One HTTP/1.1 request over TCP, or TLS for an `https://` gateway (`tls` from the one
/// client TLS builder); returns status and body. A request with a body asks for
/// `100 Continue` first: the gateway authenticates the request from its headers, so a
/// refused request (stale clock, unknown key, too large) is answered with its reason before
/// the module is sent, rather than by a reset in the middle of the upload.
fn send(
    gateway: &str,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    method: &str,
    path: &str,
    headers: &[(&'static str, String)],
    body: &[u8],
) -> anyhow::Result<(u16, String)> {
    let uri: hyper::Uri = gateway
        .parse()
        .with_context(|| format!("--gateway {gateway:?} is not a URL"))?;
    let https = palisade_tls::is_https(&uri)?;
    let authority = uri
        .authority()
        .context("--gateway must be http(s)://HOST:PORT")?;
    let host = authority.as_str();
    let tcp = TcpStream::connect(host).with_context(|| format!("cannot connect to {host}"))?;
    // Timeouts are set on the socket through this second handle, whatever wraps the first.
    let socket = tcp.try_clone()?;
    let mut stream: Box<dyn Connection> = match (https, tls) {
        (true, Some(tls)) => Box::new(
            palisade_tls::blocking(tls, authority.host(), tcp)
                .with_context(|| format!("TLS to {host}"))?,
        ),
        (true, None) => bail!("--gateway is https://: give --ca-file"),
        (false, _) => Box::new(tcp),
    };
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    let expect = !body.is_empty();
    if expect {
        head.push_str("Expect: 100-continue\r\n");
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    let mut raw = Vec::new();
    if expect {
        socket.set_read_timeout(Some(CONTINUE_WAIT))?;
        let mut chunk = [0u8; 4096];
        let send_body = loop {
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                if raw.starts_with(b"HTTP/1.1 100") || raw.starts_with(b"HTTP/1.0 100") {
                    raw.drain(..end + 4);
                    break true;
                }
                // A final answer from the headers alone: the body is not wanted.
                break false;
            }
            match stream.read(&mut chunk) {
                Ok(0) => break false,
                Ok(read) => raw.extend_from_slice(&chunk[..read]),
                Err(error)
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break true
                }
                Err(error) => return Err(error).context("reading the gateway's answer"),
            }
        };
        if send_body {
            stream.write_all(body)?;
        }
    }
    socket.set_read_timeout(Some(Duration::from_secs(120)))?;
    match stream.read_to_end(&mut raw) {
        Ok(_) => {}
        // A TLS peer that closes without close_notify after a whole `Connection: close`
        // answer: the answer is complete (its head and body are checked below).
        Err(error)
            if https && error.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(error) => return Err(error).context("reading the gateway's answer"),
    }
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("the gateway's answer has no body")?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("the gateway's answer has no status")?;
    Ok((status, body.to_string()))
}

/// `palisade push --oci`: publishes a signed module as a Wasm OCI artifact. The module must
/// carry a well-formed signature section whose hash matches (checked without a trust root:
/// the gateways that pull it verify the chain against theirs).
fn push_oci(
    reference: &str,
    insecure: bool,
    ca_file: Option<&std::path::Path>,
    file: &std::path::Path,
    json: bool,
) -> anyhow::Result<()> {
    let limit = palisade_registry::DEFAULT_MAX_MODULE_SIZE;
    let size = std::fs::metadata(file)
        .with_context(|| format!("cannot read {}", file.display()))?
        .len();
    if size > limit {
        bail!(
            "{} is {size} bytes, over the module size limit of {limit}",
            file.display()
        );
    }
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let signature = palisade_registry::read_unverified(&bytes)
        .with_context(|| format!("{} has an unreadable signature section", file.display()))?
        .with_context(|| {
            format!(
                "{} is not signed: `palisade sign` it first (gateways refuse unsigned modules)",
                file.display()
            )
        })?;
    if !signature.hash_matches {
        bail!(
            "{}: the signed manifest's hash does not match the component",
            file.display()
        );
    }
    let parsed = palisade_oci::parse_reference(reference)?;
    let mut config = palisade_oci::RegistryConfig::default();
    if insecure {
        config.insecure_registries = vec![parsed.registry().to_string()];
    }
    config.max_module_bytes = limit;
    config.ca_pem = match ca_file {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?)
        }
        None => None,
    };
    if insecure {
        eprintln!(
            "warning: {} is spoken to over plain http (--insecure)",
            parsed.registry()
        );
    }
    let client = config.client()?;
    let kind = signature.manifest.kind.name();
    let component = palisade_oci::ComponentInfo {
        exports: Vec::new(),
        imports: Vec::new(),
        target: Some(format!("palisade:plugin/{kind}")),
    };
    let label = signature.manifest.label();
    let created = palisade_registry::format_rfc3339(now_unix());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let published = runtime.block_on(palisade_oci::publish(
        &client,
        &config,
        &parsed,
        &bytes,
        Some(component),
        &created,
        Some(&label),
    ))?;
    if json {
        println!(
            "{}",
            serde_json::json!({"module": label, "reference": reference,
                "digest": published.manifest_digest, "layer": published.layer_digest,
                "pinned": published.pinned})
        );
    } else {
        println!("pushed {label} to {reference}");
        println!("digest {}", published.manifest_digest);
        println!("pinned {}", published.pinned);
    }
    Ok(())
}
