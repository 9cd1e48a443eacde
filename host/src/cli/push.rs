//! `palisade push`: uploads a signed module to a running gateway's admin API and manages its
//! versions (`list`, `activate`, `rollback`, `remove`). Every request is signed with the admin
//! key (SER-008) over its headers and the body's hash and length, with a fresh timestamp and
//! nonce (SER-012); see [`crate::api::admin::auth`].

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use crate::api::admin::sign_request;
use crate::registry::trust::keyfile::read_private_key;
use crate::request::now_unix;

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
    /// The gateway, e.g. http://127.0.0.1:8080.
    #[arg(long, global = true, value_name = "URL")]
    gateway: Option<String>,
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
    let (status, answer) = send(gateway, method, &path, &headers, &body)?;
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

/// One HTTP/1.1 request over plain TCP (the admin API listens on loopback or behind a
/// TLS-terminating proxy); returns status and body. A request with a body asks for
/// `100 Continue` first: the gateway authenticates the request from its headers, so a
/// refused request (stale clock, unknown key, too large) is answered with its reason before
/// the module is sent, rather than by a reset in the middle of the upload.
fn send(
    gateway: &str,
    method: &str,
    path: &str,
    headers: &[(&'static str, String)],
    body: &[u8],
) -> anyhow::Result<(u16, String)> {
    let host = gateway
        .strip_prefix("http://")
        .context("--gateway must be an http:// URL")?
        .trim_end_matches('/');
    let mut stream =
        TcpStream::connect(host).with_context(|| format!("cannot connect to {host}"))?;
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
        stream.set_read_timeout(Some(CONTINUE_WAIT))?;
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
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    stream.read_to_end(&mut raw)?;
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
