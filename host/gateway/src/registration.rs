//! AE registration through the proxy (issue 13.6): which originators may register an
//! `<AE>` (a CREATE with `ty=2`) through an application, per its `[app.registration]`.
//!
//! TS-0001 §7.2 gives an AE-ID its form: `C…` for a CSE-relative AE-ID (assigned by the
//! registrar CSE or chosen by the AE), `S…` for an SP-relative one; TS-0001 §10.2.2.2 lets
//! an AE register with no originator at all (or the bare `C`/`S`) and take the AE-ID the
//! CSE assigns. The gateway cannot know those AE-IDs in advance, so registration is its own
//! policy: a list of originator patterns per application, checked before any plugin runs.
//! A registration the policy allows is then decided by the application's plugins like any
//! other create (every authorizer must permit), and only then forwarded; the AE-ID the CSE
//! returns is an ordinary originator for the requests that follow.
//!
//! A registration with no originator cannot be authenticated by its originator (there is
//! none to compare with a certificate or a token holder): in an app whose originators are
//! `claimed`, it reaches the plugins with an empty originator and `authenticated = false`,
//! so an `acaf` rule never permits it; in a `tls`/`token` app the originator check refuses
//! it (4106), as the empty originator matches no credential. It is allowed only where the
//! operator listed `""`; the default refuses it (SER-008). docs/proxy.md has the reasons.

use serde::Deserialize;
use toml::Spanned;

use super::onem2m::BindingRequest;
use palisade_core::request::Operation;

/// The resource type of an `<AE>` (TS-0004 §6.3.4.2.1).
pub const AE_RESOURCE_TYPE: u32 = 2;

/// Most patterns one application's registration policy may list.
pub const MAX_PATTERNS: usize = 64;

/// Longest pattern, in bytes (an originator is bounded by `[limits] max_originator_bytes`
/// anyway; a longer pattern could never match one).
pub const MAX_PATTERN_BYTES: usize = 256;

/// `[app.registration]`: who may register an `<AE>` through this application.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistrationConfig {
    /// The originators that may register, each an exact originator (`Cmeter-1`), a prefix
    /// ending in `*` (`C*`, `Sfactory-*`, `/id-in/C*`), `*` for any non-empty originator,
    /// or `""` for a registration with an absent or empty `X-M2M-Origin` (the CSE assigns
    /// the AE-ID). Default `["*"]`: any originator, none without one.
    #[serde(default = "any_originator", deserialize_with = "patterns")]
    #[schemars(with = "Vec<String>")]
    pub originators: Vec<Spanned<String>>,
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        RegistrationConfig {
            originators: any_originator(),
        }
    }
}

fn any_originator() -> Vec<Spanned<String>> {
    vec![Spanned::new(0..0, "*".to_string())]
}

/// Checks the list while deserializing, so an error names the line and key.
fn patterns<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<Spanned<String>>, D::Error> {
    let list = Vec::<Spanned<String>>::deserialize(deserializer)?;
    if list.len() > MAX_PATTERNS {
        return Err(serde::de::Error::custom(format!(
            "{} patterns, over the limit of {MAX_PATTERNS}",
            list.len()
        )));
    }
    for pattern in &list {
        check_pattern(pattern.get_ref()).map_err(serde::de::Error::custom)?;
    }
    Ok(list)
}

/// A pattern is an exact originator, a prefix with one trailing `*`, `*`, or `""`.
fn check_pattern(pattern: &str) -> Result<(), String> {
    if pattern.len() > MAX_PATTERN_BYTES {
        return Err(format!(
            "a pattern of {} bytes, over the limit of {MAX_PATTERN_BYTES}",
            pattern.len()
        ));
    }
    if pattern.trim() != pattern || pattern.chars().any(|c| c.is_control() || c == ' ') {
        return Err(format!(
            "{pattern:?}: an originator pattern has no spaces or control characters"
        ));
    }
    if pattern.trim_end_matches('*').contains('*') || pattern.ends_with("**") {
        return Err(format!(
            "{pattern:?}: `*` may only end a pattern (a prefix), once"
        ));
    }
    Ok(())
}

/// Why a registration is refused before any plugin runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationRefusal {
    /// No originator, and the application does not list `""`.
    #[error("application {app} does not allow an AE registration without an originator ([app.registration] originators has no \"\")")]
    Anonymous { app: String },
    /// The originator matches none of the application's patterns.
    #[error("application {app} does not allow originator {originator:?} to register an AE ([app.registration] originators)")]
    Originator { app: String, originator: String },
}

/// An application's registration policy, ready to check.
#[derive(Debug, Clone)]
pub struct RegistrationPolicy {
    app: String,
    patterns: Vec<String>,
}

impl RegistrationPolicy {
    /// The policy of application `app` (its `[app.registration]`, or the default).
    pub fn new(app: &str, config: &RegistrationConfig) -> RegistrationPolicy {
        RegistrationPolicy {
            app: app.to_string(),
            patterns: config
                .originators
                .iter()
                .map(|pattern| pattern.get_ref().clone())
                .collect(),
        }
    }

    /// Whether anonymous registrations are allowed (`""` listed).
    pub fn allows_anonymous(&self) -> bool {
        self.patterns.iter().any(String::is_empty)
    }

    /// Checks a registration by `originator` (empty: none was given).
    pub fn check(&self, originator: &str) -> Result<(), RegistrationRefusal> {
        if originator.is_empty() {
            return if self.allows_anonymous() {
                Ok(())
            } else {
                Err(RegistrationRefusal::Anonymous {
                    app: self.app.clone(),
                })
            };
        }
        let matches = |pattern: &String| match pattern.strip_suffix('*') {
            Some(prefix) => originator.starts_with(prefix),
            None => !pattern.is_empty() && pattern == originator,
        };
        if self.patterns.iter().any(matches) {
            Ok(())
        } else {
            Err(RegistrationRefusal::Originator {
                app: self.app.clone(),
                originator: originator.to_string(),
            })
        }
    }
}

/// Whether `binding` registers an AE: a CREATE of type 2.
pub fn is_registration(binding: &BindingRequest) -> bool {
    binding.operation == Operation::Create && binding.resource_type == Some(AE_RESOURCE_TYPE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(patterns: &[&str]) -> RegistrationPolicy {
        RegistrationPolicy {
            app: "app".into(),
            patterns: patterns.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn the_default_allows_any_originator_but_none_without_one() {
        let default = RegistrationPolicy::new("app", &RegistrationConfig::default());
        assert_eq!(default.check("Cmeter"), Ok(()));
        assert_eq!(default.check("S"), Ok(()));
        assert_eq!(
            default.check(""),
            Err(RegistrationRefusal::Anonymous { app: "app".into() })
        );
    }

    #[test]
    fn prefixes_exact_ids_and_the_anonymous_form() {
        let policy = policy(&["C*", "Sfactory-1", ""]);
        assert_eq!(policy.check("C"), Ok(()));
        assert_eq!(policy.check("Cabc"), Ok(()));
        assert_eq!(policy.check("Sfactory-1"), Ok(()));
        assert_eq!(policy.check(""), Ok(()));
        for refused in ["Sfactory-10", "S", "cabc", "/id-in/Cabc", "X"] {
            assert!(
                matches!(
                    policy.check(refused),
                    Err(RegistrationRefusal::Originator { .. })
                ),
                "{refused}"
            );
        }
        // `""` lists the anonymous form only: it is not a prefix of everything.
        assert!(policy_only_anonymous().check("Cabc").is_err());
    }

    fn policy_only_anonymous() -> RegistrationPolicy {
        policy(&[""])
    }

    #[test]
    fn patterns_are_checked_at_load() {
        assert!(check_pattern("C*").is_ok());
        assert!(check_pattern("").is_ok());
        assert!(check_pattern("*").is_ok());
        assert!(check_pattern("/id-in/C*").is_ok());
        for bad in ["C*x", "*C", "C**", " C", "C x", "C\n", &"C".repeat(257)] {
            assert!(check_pattern(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_config_section_is_read_with_its_line() {
        #[derive(Deserialize)]
        struct App {
            registration: RegistrationConfig,
        }
        let app: App = toml::from_str("[registration]\noriginators = [\"C*\", \"\"]\n").unwrap();
        let policy = RegistrationPolicy::new("app", &app.registration);
        assert!(policy.allows_anonymous());
        let error = toml::from_str::<App>("[registration]\noriginators = [\"C*x\"]\n")
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.contains("line 2") && error.contains("may only end"),
            "{error}"
        );
        let many = format!(
            "[registration]\noriginators = [{}]\n",
            vec!["\"C\""; MAX_PATTERNS + 1].join(",")
        );
        assert!(toml::from_str::<App>(&many).is_err());
        assert!(toml::from_str::<App>("[registration]\nother = 1\n").is_err());
    }
}

#[cfg(test)]
mod binding_tests {
    use hyper::header::{HeaderMap, HeaderValue};
    use hyper::Method;

    use super::super::config::ServerLimits;
    use super::super::onem2m::{self, rsc, X_M2M_ORIGIN, X_M2M_RI};
    use super::*;

    fn parse(
        method: Method,
        origin: Option<&str>,
        content_type: Option<&str>,
    ) -> Result<BindingRequest, onem2m::BindingError> {
        let mut headers = HeaderMap::new();
        headers.insert(X_M2M_RI, HeaderValue::from_static("r1"));
        if let Some(origin) = origin {
            headers.insert(X_M2M_ORIGIN, HeaderValue::from_str(origin).unwrap());
        }
        if let Some(content_type) = content_type {
            headers.insert("content-type", HeaderValue::from_str(content_type).unwrap());
        }
        onem2m::parse(
            &method,
            &"/cse-in".parse().unwrap(),
            &headers,
            &ServerLimits::default(),
        )
    }

    #[test]
    fn only_an_ae_registration_may_come_without_an_originator() {
        for origin in [None, Some("")] {
            let registration = parse(Method::POST, origin, Some("application/json;ty=2")).unwrap();
            assert!(is_registration(&registration));
            assert_eq!(registration.originator, "");
            // Forwarded without an originator, as the client sent it.
            assert!(registration.forwarded_headers().get(X_M2M_ORIGIN).is_none());
            for (method, content_type) in [
                (Method::POST, Some("application/json;ty=3")),
                (Method::POST, Some("application/json")),
                (Method::POST, None),
                (Method::GET, None),
                (Method::PUT, None),
                (Method::DELETE, None),
            ] {
                let refused = parse(method.clone(), origin, content_type).unwrap_err();
                assert_eq!(refused.rsc, rsc::BAD_REQUEST, "{method} {content_type:?}");
                assert!(refused.message.contains("X-M2M-Origin is required"));
            }
        }
        let named = parse(Method::POST, Some("Cabc"), Some("application/json;ty=2")).unwrap();
        assert!(is_registration(&named));
        assert_eq!(named.forwarded_headers()[X_M2M_ORIGIN], "Cabc");
        let container = parse(Method::POST, Some("Cabc"), Some("application/json;ty=3")).unwrap();
        assert!(!is_registration(&container));
    }
}
