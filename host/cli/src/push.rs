//! `palisade push`: uploads a signed module to a running gateway's admin API and manages its
//! versions (`list`, `activate`, `rollback`, `remove`). Every request is signed with the admin
//! key (SER-008) over its headers and the body's hash and length, with a fresh timestamp and
//! nonce (SER-012); see [`palisade_gateway::admin::auth`].

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use palisade_core::request::now_unix;
use palisade_gateway::admin::sign_request;
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
}

/// Options every push subcommand takes.
#[derive(Debug, Args)]
struct Common {
    /// The gateway's admin listener, e.g. https://gw.example:8443 (http:// works, warned:
    /// the signed request is safe from tampering but not from reading).
    #[arg(long, global = true, value_name = "URL")]
    gateway: Option<String>,
    /// For an https:// gateway: PEM CA certificates its certificate must chain to.
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
    let tls = if gateway.starts_with("https://") {
        Some(palisade_gateway::tls_client::client_config(
            &palisade_gateway::tls_client::ClientTlsFiles {
                ca_file: common.ca_file.clone(),
                cert_file: common.client_cert.clone(),
                key_file: common.client_key.clone(),
            },
        )?)
    } else {
        if common.ca_file.is_some() || common.client_cert.is_some() || common.client_key.is_some() {
            bail!("--ca-file, --client-cert and --client-key apply to an https:// --gateway only");
        }
        eprintln!("warning: {gateway} is plain http://: the request and the gateway's answer cross the network unencrypted");
        None
    };
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

/// The connection to the gateway: plain TCP or TLS ([`palisade_gateway::tls_client`]).
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
    let https = palisade_gateway::tls_client::is_https(&uri).map_err(anyhow::Error::msg)?;
    let authority = uri
        .authority()
        .context("--gateway must be http(s)://HOST:PORT")?;
    let host = authority.as_str();
    let tcp = TcpStream::connect(host).with_context(|| format!("cannot connect to {host}"))?;
    // Timeouts are set on the socket through this second handle, whatever wraps the first.
    let socket = tcp.try_clone()?;
    let mut stream: Box<dyn Connection> = match (https, tls) {
        (true, Some(tls)) => Box::new(
            palisade_gateway::tls_client::blocking(tls, authority.host(), tcp)
                .map_err(|error| anyhow::anyhow!("TLS to {host}: {error}"))?,
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
