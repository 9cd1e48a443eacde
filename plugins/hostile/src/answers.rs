//! Attacks on how the host reads plugin *answers* and plugin *text* (issues #11.4, #12.4–6):
//! overlong answers, control characters in log messages, reasons, subjects and roles,
//! `exit()`, and failures interleaved with successes. Each world has its own entry point;
//! every attack is chosen by `attack` in the configuration, like the others in `lib.rs`.

use std::hint::black_box;

use palisade_sdk::config::Config;
use palisade_sdk::{AuthResult, Credential, Decision, FilterResult, Identity, Request, Response};

#[derive(serde::Deserialize)]
struct Settings {
    attack: String,
    /// `long-*` and `big-rewrite`: the size in bytes (default 5,000).
    size: Option<usize>,
    /// `alternate`: the target prefix whose requests burn the whole deadline (default
    /// `/burn`); every other request is permitted.
    burn: Option<String>,
}

static SETTINGS: Config<Settings> = Config::new();

/// Text that would forge an operator log line (CR/LF and a whole fake record), drive a
/// terminal (ESC sequences), cut C strings (NUL) and reverse what follows (RLO, isolates).
pub const CONTROL_TEXT: &str = "ok\n2026-12-06T05:00:00.000000Z  INFO palisade: FORGED operator line\r\u{1b}[2J\u{1b}]0;owned\u{7}\0\u{202e}tnemucod\u{2066}x\u{2069}";

fn settings() -> Option<&'static Settings> {
    SETTINGS.get().ok()
}

fn size(settings: &Settings) -> usize {
    settings.size.unwrap_or(5_000)
}

/// `exit()` through WASI, where a plugin should have answered.
fn exit() -> ! {
    std::process::exit(3)
}

fn burn() -> ! {
    let mut counter: u64 = 0;
    loop {
        counter = black_box(counter).wrapping_add(1);
    }
}

/// The authorizer attacks of this module, or `None` to let `lib.rs` handle the attack.
pub fn authorize(attack: &str, request: &Request) -> Option<Decision> {
    let settings = settings()?;
    Some(match attack {
        "long-reason" => Decision::Deny("R".repeat(size(settings))),
        "control-text" => {
            palisade_sdk::log::warn(CONTROL_TEXT);
            Decision::deny(format!("control-text: {CONTROL_TEXT}"))
        }
        "exit" => exit(),
        "alternate" => {
            if request
                .target
                .starts_with(settings.burn.as_deref().unwrap_or("/burn"))
            {
                burn()
            }
            Decision::Permit
        }
        _ => return None,
    })
}

/// The authenticator attacks. Without an attack of its own, accepts every credential as
/// the subject named by its value, with the role `reader` (the control).
pub fn authenticate(request: &Request, credential: &Credential) -> AuthResult {
    let Some(settings) = settings() else {
        return AuthResult::Rejected("hostile: invalid plugin configuration".into());
    };
    let identity = |subject: String, roles: Vec<String>| {
        AuthResult::Authenticated(Identity {
            subject,
            roles,
            expires_at: None,
        })
    };
    match settings.attack.as_str() {
        "control-subject" => identity(format!("admin{CONTROL_TEXT}"), vec!["reader".into()]),
        "control-roles" => identity(
            credential.value.clone(),
            vec!["reader".into(), format!("admin\u{1b}[0m\r\n{CONTROL_TEXT}")],
        ),
        "long-subject" => identity("S".repeat(size(settings)), vec!["reader".into()]),
        "long-roles" => identity(
            credential.value.clone(),
            (0..300)
                .map(|i| format!("role-{i}-{}", "r".repeat(300)))
                .collect(),
        ),
        "long-reason" => AuthResult::Rejected("R".repeat(size(settings))),
        "control-text" => {
            palisade_sdk::log::warn(CONTROL_TEXT);
            AuthResult::Rejected(format!("control-text: {CONTROL_TEXT}"))
        }
        "exit" => exit(),
        "alternate" => {
            if request
                .target
                .starts_with(settings.burn.as_deref().unwrap_or("/burn"))
            {
                burn()
            }
            identity(credential.value.clone(), vec!["reader".into()])
        }
        _ => identity(credential.value.clone(), vec!["reader".into()]),
    }
}

/// The filter attacks. Without an attack of its own, passes the body on unchanged.
pub fn filter(request: &Request, response: &Response) -> FilterResult {
    let Some(settings) = settings() else {
        return FilterResult::Block("hostile: invalid plugin configuration".into());
    };
    match settings.attack.as_str() {
        "long-reason" => FilterResult::Block("R".repeat(size(settings))),
        "control-text" => {
            palisade_sdk::log::warn(CONTROL_TEXT);
            FilterResult::Block(format!("control-text: {CONTROL_TEXT}"))
        }
        "big-rewrite" => FilterResult::Rewrite(vec![b'B'; size(settings)]),
        "exit" => exit(),
        "alternate" => {
            if request
                .target
                .starts_with(settings.burn.as_deref().unwrap_or("/burn"))
            {
                burn()
            }
            FilterResult::Rewrite(response.body.clone())
        }
        _ => FilterResult::Unchanged,
    }
}
