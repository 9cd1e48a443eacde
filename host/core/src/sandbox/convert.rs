//! Between the host's request types and the WIT records, and the checks every plugin answer
//! passes before the host believes it (a malformed answer is a failure, never a decision).
//!
//! Text from plugins is data (issue #12 finding 5): reasons are escaped and cut to their
//! limit here, once, so what reaches logs, audit, metrics and headers downstream can hold no
//! control or bidirectional-text characters; identities are refused when they hold any.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::bindings::wit;
use super::capabilities::{Capabilities, Capability};
use super::failure::Failure;
use super::limits::SandboxLimits;
use crate::request::{AccessRequest, Operation};

/// The WIT request a plugin sees, owned: [`request_ref`]'s fields copied, so the grant check
/// and the defaults live in one place.
pub(crate) fn request(request: &AccessRequest, now: u64, grant: Capabilities) -> wit::Request {
    let borrowed = request_ref(request, now, grant);
    wit::Request {
        originator: borrowed.originator.to_owned(),
        operation: borrowed.operation,
        target: borrowed.target.to_owned(),
        resource_type: borrowed.resource_type,
        target_resource_type: borrowed.target_resource_type,
        target_specialization: borrowed.target_specialization.map(str::to_owned),
        authenticated: borrowed.authenticated,
        roles: borrowed.roles.to_vec(),
        source_ip: borrowed.source_ip.map(str::to_owned),
        location: borrowed.location.map(|location| wit::Location {
            latitude: location.latitude,
            longitude: location.longitude,
            country: location.country.map(str::to_owned),
        }),
        request_time: borrowed.request_time,
        attributes: borrowed.attributes.to_vec(),
    }
}

/// The WIT request of contract 0.2 borrowed from the host's [`AccessRequest`]: lowered into
/// the plugin straight from the host's strings and lists, where [`request`] first copies each
/// of them into an owned `wit::Request` (issue #18: a few allocations and frees per warm
/// decision). Its fields are those of `record request` in `palisade.wit`, in order, with the
/// same types; [`crate::sandbox::Plugin`] checks that against the component before it ever
/// lowers one (`Func::typed`), and falls back to `wit::Request` otherwise.
#[derive(wasmtime::component::ComponentType, wasmtime::component::Lower)]
#[component(record)]
pub(crate) struct RequestRef<'a> {
    originator: &'a str,
    operation: wit::Operation,
    target: &'a str,
    #[component(name = "resource-type")]
    resource_type: Option<u32>,
    #[component(name = "target-resource-type")]
    target_resource_type: Option<u32>,
    #[component(name = "target-specialization")]
    target_specialization: Option<&'a str>,
    authenticated: bool,
    roles: &'a [String],
    #[component(name = "source-ip")]
    source_ip: Option<&'a str>,
    location: Option<LocationRef<'a>>,
    #[component(name = "request-time")]
    request_time: u64,
    attributes: &'a [(String, String)],
}

/// `record location`, borrowed (see [`RequestRef`]).
#[derive(wasmtime::component::ComponentType, wasmtime::component::Lower)]
#[component(record)]
pub(crate) struct LocationRef<'a> {
    latitude: f64,
    longitude: f64,
    country: Option<&'a str>,
}

fn operation(operation: Operation) -> wit::Operation {
    match operation {
        Operation::Create => wit::Operation::Create,
        Operation::Retrieve => wit::Operation::Retrieve,
        Operation::Update => wit::Operation::Update,
        Operation::Delete => wit::Operation::Delete,
        Operation::Notify => wit::Operation::Notify,
        Operation::Discovery => wit::Operation::Discovery,
    }
}

/// The WIT request a plugin sees, borrowed from `request`. Location goes only to plugins
/// granted it (SER-026).
pub(crate) fn request_ref(
    request: &AccessRequest,
    now: u64,
    grant: Capabilities,
) -> RequestRef<'_> {
    RequestRef {
        originator: &request.originator,
        operation: operation(request.operation),
        target: &request.target,
        resource_type: request.resource_type,
        target_resource_type: request.target_resource_type,
        target_specialization: request.target_specialization.as_deref(),
        authenticated: request.authenticated,
        roles: &request.roles,
        source_ip: request.source_ip.as_deref(),
        location: if grant.allows(Capability::Location) {
            request.location.as_ref().map(|location| LocationRef {
                latitude: location.latitude,
                longitude: location.longitude,
                country: location.country.as_deref(),
            })
        } else {
            None
        },
        request_time: request.request_time.unwrap_or(now),
        attributes: &request.attributes,
    }
}

/// An authorizer's answer, checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", content = "reason", rename_all = "kebab-case")]
pub enum Verdict {
    /// Permit.
    Permit,
    /// Deny, with the plugin's reason.
    Deny(String),
    /// The policy does not apply to the request.
    NotApplicable,
}

/// An authenticator's answer, checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum AuthOutcome {
    /// The credential is valid: this identity.
    Authenticated {
        /// Who the credential belongs to.
        subject: String,
        /// Roles granted with the identity.
        roles: Vec<String>,
        /// When the identity expires (seconds since the Unix epoch).
        expires_at: Option<u64>,
    },
    /// The credential is not valid.
    Rejected {
        /// Why, in words.
        reason: String,
    },
    /// The authenticator does not handle this credential.
    NotApplicable,
}

/// A filter's answer, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilterOutcome {
    /// Deliver the response as it is.
    Unchanged,
    /// Deliver this body instead.
    Rewrite(Vec<u8>),
    /// Deliver nothing, for this reason.
    Block(String),
}

pub(crate) fn verdict(decision: wit::Decision, limits: &SandboxLimits) -> Result<Verdict, Failure> {
    Ok(match decision {
        wit::Decision::Permit => Verdict::Permit,
        wit::Decision::Deny(reason) => Verdict::Deny(reason_text(&reason, limits)),
        wit::Decision::NotApplicable => Verdict::NotApplicable,
    })
}

/// Most roles an identity keeps; further ones are cut (with a marker role saying so).
const MAX_ROLES: usize = 256;
/// Longest role kept as is.
const MAX_ROLE_BYTES: usize = 256;

pub(crate) fn auth_outcome(
    result: wit::AuthResult,
    limits: &SandboxLimits,
) -> Result<AuthOutcome, Failure> {
    Ok(match result {
        wit::AuthResult::Authenticated(identity) => {
            check_identifier("the identity's subject", &identity.subject)?;
            let subject = bounded_identifier(identity.subject, limits.max_reason_bytes);
            let total = identity.roles.len();
            let mut roles = Vec::with_capacity(total.min(MAX_ROLES));
            for role in identity.roles {
                if roles.len() == MAX_ROLES - 1 && total > MAX_ROLES {
                    roles.push(format!(
                        "…[truncated by host: {total} roles, limit {MAX_ROLES}]"
                    ));
                    break;
                }
                check_identifier("a role", &role)?;
                roles.push(bounded_identifier(role, MAX_ROLE_BYTES));
            }
            AuthOutcome::Authenticated {
                subject,
                roles,
                expires_at: identity.expires_at,
            }
        }
        wit::AuthResult::Rejected(reason) => AuthOutcome::Rejected {
            reason: reason_text(&reason, limits),
        },
        wit::AuthResult::NotApplicable => AuthOutcome::NotApplicable,
    })
}

pub(crate) fn filter_outcome(
    result: wit::FilterResult,
    limits: &SandboxLimits,
) -> Result<FilterOutcome, Failure> {
    Ok(match result {
        wit::FilterResult::Unchanged => FilterOutcome::Unchanged,
        // A body cannot be cut without corrupting it, and the original may be what the
        // filter exists to hide: an oversize rewrite withholds the response (fail-closed).
        // The size may come from the response, so it is no failure of the filter's.
        wit::FilterResult::Rewrite(body) if body.len() > limits.max_body_bytes => {
            FilterOutcome::Block(format!(
                "the rewritten body is {} bytes, over the limit of {}; the host withheld the response",
                body.len(),
                limits.max_body_bytes
            ))
        }
        wit::FilterResult::Rewrite(body) => FilterOutcome::Rewrite(body),
        wit::FilterResult::Block(reason) => FilterOutcome::Block(reason_text(&reason, limits)),
    })
}

/// A reason as the host passes it on: escaped (see [`escape_text`]) and cut to the limit
/// with a marker. A reason's length often follows from the request (a long path or
/// originator quoted back), so an overlong one is the host's to shorten, never a failure.
fn reason_text(reason: &str, limits: &SandboxLimits) -> String {
    if reason.trim().is_empty() {
        return "(the plugin gave no reason)".into();
    }
    bounded_text(reason, limits.max_reason_bytes)
}

/// `text` escaped and, when longer than `limit` bytes, cut with a marker that says so.
pub(crate) fn bounded_text(text: &str, limit: usize) -> String {
    let escaped = escape_text(text);
    if escaped.len() <= limit {
        return escaped.into_owned();
    }
    let marker = format!("…[truncated by host: {} bytes, limit {limit}]", text.len());
    let mut out = String::with_capacity(limit);
    out.push_str(cut(&escaped, limit.saturating_sub(marker.len())));
    out.push_str(cut(&marker, limit - out.len()));
    out
}

/// An identifier (subject, role) cut to `limit` bytes. Cutting alone could make two
/// different identities equal, so a cut one ends with a hash of the whole.
fn bounded_identifier(text: String, limit: usize) -> String {
    if text.len() <= limit {
        return text;
    }
    let digest = hex::encode(&Sha256::digest(text.as_bytes())[..16]);
    let marker = format!(
        "…[truncated by host: {} bytes, sha256 {digest}]",
        text.len()
    );
    let mut out = cut(&text, limit.saturating_sub(marker.len())).to_string();
    out.push_str(&marker);
    out
}

/// Identities are validated like IDs: one that is empty or holds a character that could
/// forge or hide text downstream (logs, audit, headers) is refused, never rewritten.
fn check_identifier(what: &str, text: &str) -> Result<(), Failure> {
    if text.is_empty() {
        return Err(Failure::InvalidIdentity(format!("{what} is empty")));
    }
    if let Some((at, c)) = text.char_indices().find(|(_, c)| needs_escape(*c)) {
        return Err(Failure::InvalidIdentity(format!(
            "{what} contains the control character U+{:04X} at byte {at}",
            c as u32
        )));
    }
    Ok(())
}

/// The longest prefix of `text` of at most `limit` bytes that ends on a character boundary.
pub(crate) fn cut(text: &str, limit: usize) -> &str {
    &text[..text.floor_char_boundary(limit)]
}

/// Characters that could forge or hide text where plugin text ends up (an operator's
/// terminal, a log line, an HTTP header): every control character (C0 including CR, LF, ESC
/// and NUL; DEL; C1), the Unicode line and paragraph separators, the bidirectional
/// overrides, embeddings, isolates and marks, and invisible format characters.
pub(crate) fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2069}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
        )
}

/// Text from a plugin made into data: each character of [`needs_escape`] becomes a visible
/// escape (`\n`, `\r`, `\t`, `\0`, or `\u{…}`); everything else, other languages included,
/// stays as it is.
pub(crate) fn escape_text(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_bidi_characters_are_escaped_and_other_text_kept() {
        assert_eq!(escape_text("plain Zürich 東京"), "plain Zürich 東京");
        assert!(matches!(escape_text("plain"), Cow::Borrowed(_)));
        assert_eq!(
            escape_text("a\nb\r\tc\0\u{1b}[31m\u{7f}\u{85}"),
            "a\\nb\\r\\tc\\0\\u{1b}[31m\\u{7f}\\u{85}"
        );
        assert_eq!(
            escape_text("\u{202e}evil\u{2066}x\u{2069}\u{200f}\u{2028}"),
            "\\u{202e}evil\\u{2066}x\\u{2069}\\u{200f}\\u{2028}"
        );
    }

    #[test]
    fn an_overlong_text_is_cut_with_a_marker_within_the_limit() {
        let long = "é".repeat(5000);
        let cut_text = bounded_text(&long, 4096);
        assert!(cut_text.len() <= 4096, "{}", cut_text.len());
        assert!(cut_text.ends_with("…[truncated by host: 10000 bytes, limit 4096]"));
        assert!(cut_text.starts_with("éé"));
        // Escaping happens first, so escapes can never push the result past the limit.
        let controls = "\u{1b}".repeat(4000);
        assert!(bounded_text(&controls, 4096).len() <= 4096);
        assert_eq!(bounded_text("short", 4096), "short");
    }

    #[test]
    fn identities_are_refused_with_control_characters_and_cut_with_a_hash() {
        for bad in [
            "",
            "ad\nmin",
            "a\u{1b}[0m",
            "x\0",
            "\u{202e}nimda",
            "r\u{2066}",
        ] {
            let error = check_identifier("the subject", bad).unwrap_err();
            assert_eq!(error.code(), "invalid-identity", "{bad:?}");
        }
        check_identifier("the subject", "CAE-1.device@example/ü").unwrap();
        let one = bounded_identifier(format!("{}1", "a".repeat(300)), 256);
        let two = bounded_identifier(format!("{}2", "a".repeat(300)), 256);
        assert!(one.len() <= 256 && two.len() <= 256);
        assert_ne!(one, two, "two long identities never become one");
        assert!(one.contains("truncated by host: 301 bytes, sha256 "));
    }

    #[test]
    fn many_roles_are_cut_with_a_marker_role() {
        let answer = wit::AuthResult::Authenticated(wit::Identity {
            subject: "s".into(),
            roles: (0..300).map(|i| format!("role{i}")).collect(),
            expires_at: None,
        });
        let AuthOutcome::Authenticated { roles, .. } =
            auth_outcome(answer, &SandboxLimits::default()).unwrap()
        else {
            panic!("authenticated");
        };
        assert_eq!(roles.len(), MAX_ROLES);
        assert_eq!(roles[254], "role254");
        assert_eq!(roles[255], "…[truncated by host: 300 roles, limit 256]");
    }

    #[test]
    fn an_oversize_rewrite_withholds_the_response_without_failing() {
        let limits = SandboxLimits {
            max_body_bytes: 8,
            ..SandboxLimits::default()
        };
        let outcome = filter_outcome(wit::FilterResult::Rewrite(vec![0; 9]), &limits).unwrap();
        assert!(matches!(outcome, FilterOutcome::Block(reason) if reason.contains("9 bytes")));
        let outcome = filter_outcome(wit::FilterResult::Rewrite(vec![0; 8]), &limits).unwrap();
        assert_eq!(outcome, FilterOutcome::Rewrite(vec![0; 8]));
    }
}
