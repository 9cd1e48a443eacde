//! Authenticated originators, per application (SER-008, SER-009; TS-0003 §7.2, impersonation
//! prevention): whether `X-M2M-Origin` (or a decide request's `originator`) is believed as
//! claimed, or must be proven by the client's TLS certificate, by oneM2M tokens whose holder
//! it is, or both. Checked by the host before any plugin runs; a request that fails is
//! answered `4106 ORIGINATOR_NOT_AUTHENTICATED` (HTTP 403) and audited, with the plugins never
//! called.
//!
//! An app chooses with `originators = ...`:
//!
//! | value | the originator is established by |
//! |---|---|
//! | `claimed` (default) | nothing: what the client says (today's behaviour; `/health` and each audit record say `claimed`) |
//! | `tls` | the verified client certificate of the connection: a URI SAN equal to the originator, or a `[[client_identity]]` mapping of the certificate's SHA-256 or subject to it |
//! | `token` | oneM2M tokens in `Authorization` (TS-0009 §6.4.19: compact JWS joined by `+`, or `Bearer <jws>`): every token's holder (`tkhd`) is the originator, none expired or used before (`tkid`, [`super::replay`]), and an authenticator of the app verified them all |
//! | `tls-or-token` | either of the two ("either": a matching certificate suffices; without one, the tokens must pass) |
//! | `tls-and-token` | both ("both": a matching certificate and passing tokens) |
//!
//! Besides its mode, an app with `group_authenticated = true` establishes an originator by
//! `group` from a valid group request proof (`X-Palisade-Group-Proof`, issued to a device
//! that group authentication authenticated, SER-027/028; [`super::group_proof`]): such a
//! request counts as authenticated for the plugins, an invalid proof is refused 4106, and a
//! request without one is judged by the mode.
//!
//! Tokens are single-use in `token` modes: a token's `tkid` is accepted once until its `tkna`,
//! across instances, apps and restarts (SER-012). A client presents a fresh token with each
//! request (or authenticates by TLS and uses `tls`).
//!
//! On `/v1/decide` the caller is usually the CSE asking about one of its originators, so
//! `tls` means: a trusted caller (`trusted_decide_callers`, or a client certificate named in
//! `trusted_decide_clients`) vouches for the originator it names, as it vouches for
//! `authenticated` and `roles` (the audit says `vouched`); any other caller must itself hold
//! a certificate identifying the originator (a device asking about its own requests). Tokens
//! are never vouched for: in `token` modes the decide request carries them as its
//! `credential`, from any caller.
//!
//! An AE registration without an originator (TS-0001 §10.2.2.2, the app's
//! `[app.registration]` policy) has nothing to bind a certificate or token to: in `tls` and
//! `token` apps it is refused 4106 like any originator its credential does not name (the
//! AE-ID the CSE would assign is unknown in advance, so every later request of the new AE
//! would be refused anyway). Devices of such apps register under the AE-ID their credential
//! names. In `claimed` apps the registration policy alone decides.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use toml::Spanned;

use super::config::{ConfigError, GatewayConfig};
use super::group_proof::{GroupProofs, ProofClaim};
use super::replay::{ReplayError, TokenId, TokenReplayCache};
use palisade_core::Credential;
use palisade_core::{Decision, Effect};

/// Most tokens one request may carry; more are refused before any is parsed.
pub const MAX_TOKENS: usize = 16;

/// How an app's originators are established (`originators = ...`, see the module docs).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    #[default]
    Claimed,
    Tls,
    Token,
    TlsOrToken,
    TlsAndToken,
}

impl Mode {
    /// The name used in the config, `/health` and the audit.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Claimed => "claimed",
            Mode::Tls => "tls",
            Mode::Token => "token",
            Mode::TlsOrToken => "tls-or-token",
            Mode::TlsAndToken => "tls-and-token",
        }
    }
}

/// One `[[client_identity]]`: the originators a client certificate, named by its SHA-256 or
/// its subject, may speak as (besides the URIs in its subjectAltName).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientIdentityConfig {
    /// SHA-256 of the certificate (DER), 64 hex digits: this one certificate.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub sha256: Option<Spanned<String>>,
    /// The subject as the gateway prints it in a refusal's audit reason (e.g.
    /// `CN=meter-7, O=Example`): every certificate the client CAs issue to that subject.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub subject: Option<Spanned<String>>,
    /// AE-IDs or CSE-IDs, exactly as the client sends them in `X-M2M-Origin`.
    #[schemars(with = "Vec<String>")]
    pub originators: Vec<Spanned<String>>,
}

/// What the TLS listener verified about its client: the leaf certificate's digest, subject
/// and URI SANs, read once per connection and carried in each request's extensions.
#[derive(Clone, Debug)]
pub struct PeerCertificate {
    pub sha256: [u8; 32],
    pub subject: String,
    pub uris: Vec<String>,
}

impl PeerCertificate {
    /// Reads a verified DER certificate with x509-parser.
    pub fn from_der(der: &[u8]) -> Result<PeerCertificate, String> {
        let (_, certificate) =
            x509_parser::parse_x509_certificate(der).map_err(|error| error.to_string())?;
        let mut uris = Vec::new();
        if let Some(names) = certificate
            .subject_alternative_name()
            .map_err(|error| error.to_string())?
        {
            for name in &names.value.general_names {
                if let x509_parser::extensions::GeneralName::URI(uri) = name {
                    uris.push(uri.to_string());
                }
            }
        }
        Ok(PeerCertificate {
            sha256: Sha256::digest(der).into(),
            subject: certificate.subject().to_string(),
            uris,
        })
    }
}

/// Who is asking.
#[derive(Clone, Copy, Debug)]
pub enum Caller<'a> {
    /// A proxy client, with its verified certificate if the listener asked for one.
    Proxy(Option<&'a PeerCertificate>),
    /// A `/v1/decide` caller: trusted (it vouches for the originator's TLS identity) or not,
    /// with its own certificate.
    Decide {
        trusted: bool,
        certificate: Option<&'a PeerCertificate>,
    },
}

/// The request facts the check reads.
#[derive(Clone, Copy, Debug)]
pub struct Claim<'a> {
    pub app: &'a str,
    pub originator: &'a str,
    pub credential: Option<&'a Credential>,
    /// The request's group proof facts (proxy requests only; [`super::group_proof`]).
    pub group_proof: Option<ProofClaim<'a>>,
}

/// How a request's originator was established, for the rest of its decision.
#[derive(Clone, Debug)]
pub struct Established {
    /// `claimed`, `tls`, `vouched`, `token`, `tls+token`, `vouched+token` or `group`: the
    /// audit record's `originator_auth`.
    pub how: &'static str,
    /// Tokens that must be verified by an authenticator and are then used up.
    tokens: Vec<TokenId>,
}

impl Established {
    /// A request whose originator is believed as claimed.
    pub fn claimed() -> Established {
        Established {
            how: "claimed",
            tokens: Vec::new(),
        }
    }

    /// Established by a group request proof: the request counts as authenticated for the
    /// plugins (`authenticated: true`).
    pub fn by_group(&self) -> bool {
        self.how == "group"
    }
}

/// Why a request's originator is not established.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// 4106 ORIGINATOR_NOT_AUTHENTICATED, HTTP 403. `reason` is the metric label.
    #[error("originator not authenticated: {detail}")]
    NotAuthenticated {
        reason: &'static str,
        detail: String,
    },
    /// The token replay check cannot take the token (full, or its log not writable): fail
    /// closed (the proxy answers 5000, HTTP 500, `Retry-After`; decide 503).
    #[error("{0}")]
    ReplayUnavailable(ReplayError),
}

fn refuse(reason: &'static str, detail: impl Into<String>) -> Refusal {
    Refusal::NotAuthenticated {
        reason,
        detail: detail.into(),
    }
}

/// The gateway's originator checks: each app's mode, the certificate mappings and the
/// `tkid` cache.
pub struct Originators {
    modes: HashMap<String, Mode>,
    by_fingerprint: HashMap<[u8; 32], Vec<String>>,
    by_subject: HashMap<String, Vec<String>>,
    replay: TokenReplayCache,
    refused: Mutex<BTreeMap<&'static str, u64>>,
    /// Apps with `group_authenticated = true`, and the proofs' records when any has it.
    group_apps: HashSet<String>,
    group: Option<GroupProofs>,
}

/// The claims the host reads from a token. Duplicate names among these are refused by serde
/// (a parser differential with the authenticator, which refuses every duplicate, cannot make
/// the host read another holder or ID than the one verified).
#[derive(Debug, Deserialize)]
struct HostClaims {
    #[serde(default)]
    tkid: Option<String>,
    tkhd: String,
    tkis: String,
    tkna: u64,
}

impl Originators {
    /// The checks of `config`, with the replay log in `data_dir`.
    pub fn new(config: &GatewayConfig, data_dir: &Path) -> Result<Originators, ConfigError> {
        let mut by_fingerprint: HashMap<[u8; 32], Vec<String>> = HashMap::new();
        let mut by_subject: HashMap<String, Vec<String>> = HashMap::new();
        for (index, identity) in config.client_identities.iter().enumerate() {
            let key = |name: &str| format!("client_identity[{index}].{name}");
            let originators: Vec<String> = identity
                .originators
                .iter()
                .map(|o| o.get_ref().clone())
                .collect();
            if let Some(empty) = identity.originators.iter().find(|o| o.get_ref().is_empty()) {
                return Err(config.error_at(
                    empty.span(),
                    key("originators"),
                    "an empty originator",
                ));
            }
            match (&identity.sha256, &identity.subject) {
                (Some(sha256), None) => {
                    let mut digest = [0u8; 32];
                    hex::decode_to_slice(sha256.get_ref().trim(), &mut digest).map_err(|_| {
                        config.error_at(
                            sha256.span(),
                            key("sha256"),
                            "not 64 hex digits (the SHA-256 of the certificate's DER, e.g. `openssl x509 -noout -fingerprint -sha256`, colons removed)",
                        )
                    })?;
                    by_fingerprint
                        .entry(digest)
                        .or_default()
                        .extend(originators);
                }
                (None, Some(subject)) if !subject.get_ref().trim().is_empty() => {
                    by_subject
                        .entry(subject.get_ref().trim().to_string())
                        .or_default()
                        .extend(originators);
                }
                (Some(sha256), Some(_)) => {
                    return Err(config.error_at(
                        sha256.span(),
                        key("sha256"),
                        "give sha256 or subject, not both",
                    ))
                }
                _ => {
                    return Err(ConfigError::Invalid {
                        file: config.file.clone(),
                        line: None,
                        key: Some(format!("client_identity[{index}]")),
                        message: "names no certificate: give sha256 or subject".into(),
                    })
                }
            }
        }
        // An app that needs certificates where no listener asks for one refuses every proxy
        // request: worth saying at start.
        let certificates_asked = config.listeners.iter().any(|listener| {
            listener
                .tls
                .as_ref()
                .is_some_and(|tls| tls.client_ca_file.is_some())
        });
        for app in &config.apps {
            if matches!(app.originators, Mode::Tls | Mode::TlsAndToken) && !certificates_asked {
                tracing::warn!(app = %app.name.get_ref(), originators = app.originators.name(), "no listener asks for client certificates (listener.tls.client_ca_file): every proxy request of this app will be refused 4106");
            }
        }
        if config.token_replay.max_entries == 0 {
            return Err(ConfigError::Invalid {
                file: config.file.clone(),
                line: None,
                key: Some("token_replay.max_entries".into()),
                message: "0 would refuse every token".into(),
            });
        }
        let replay =
            TokenReplayCache::open(data_dir, &config.token_replay, palisade_core::now_unix())
                .map_err(|error| ConfigError::Invalid {
                    file: config.file.clone(),
                    line: None,
                    key: Some("token_replay".into()),
                    message: format!(
                        "the token replay log in {} cannot be opened: {}",
                        data_dir.display(),
                        palisade_types::Chain(&error)
                    ),
                })?;
        let group_apps: HashSet<String> = config
            .apps
            .iter()
            .filter(|app| app.group_authenticated)
            .map(|app| app.name.get_ref().clone())
            .collect();
        let group = match (&config.group_associations, group_apps.iter().next()) {
            (Some(file), _) => Some(GroupProofs::new(
                config.base_dir().join(file.get_ref()),
                palisade_types::now_unix_ms(),
            )),
            (None, Some(app)) => {
                return Err(ConfigError::Invalid {
                    file: config.file.clone(),
                    line: None,
                    key: Some("group_associations".into()),
                    message: format!("app {app:?} has group_authenticated = true: name the group associations file `palisade group agent --associations` writes"),
                })
            }
            (None, None) => None,
        };
        Ok(Originators {
            group_apps,
            group,
            modes: config
                .apps
                .iter()
                .map(|app| (app.name.get_ref().clone(), app.originators))
                .collect(),
            by_fingerprint,
            by_subject,
            replay,
            refused: Mutex::new(BTreeMap::new()),
        })
    }

    /// How `app` establishes its originators.
    pub fn mode(&self, app: &str) -> Mode {
        self.modes.get(app).copied().unwrap_or_default()
    }

    /// The originators `certificate` may speak as.
    pub fn identities<'a>(&'a self, certificate: &'a PeerCertificate) -> Vec<&'a str> {
        let mut names: Vec<&str> = certificate.uris.iter().map(String::as_str).collect();
        for mapped in [
            self.by_fingerprint.get(&certificate.sha256),
            self.by_subject.get(&certificate.subject),
        ]
        .into_iter()
        .flatten()
        {
            names.extend(mapped.iter().map(String::as_str));
        }
        names
    }

    /// The check before any plugin runs. `Ok`: how the originator is established (pass it to
    /// [`Self::after_plugins`]); `Err`: refuse the request (counted here).
    pub fn check(
        &self,
        claim: &Claim<'_>,
        caller: Caller<'_>,
        now: u64,
    ) -> Result<Established, Refusal> {
        let outcome = self.check_inner(claim, caller, now);
        if let Err(refusal) = &outcome {
            self.count(refusal);
        }
        outcome
    }

    fn check_inner(
        &self,
        claim: &Claim<'_>,
        caller: Caller<'_>,
        now: u64,
    ) -> Result<Established, Refusal> {
        // A group proof, where the app accepts one, decides alone: valid, the originator is
        // established by it; invalid, refused (a client that sends one claims it).
        if let (Some(proofs), Some(proof)) = (
            self.group
                .as_ref()
                .filter(|_| self.group_apps.contains(claim.app)),
            claim.group_proof.as_ref().filter(|p| !p.headers.is_empty()),
        ) {
            proofs.verify(claim.originator, proof, now)?;
            return Ok(Established {
                how: "group",
                tokens: Vec::new(),
            });
        }
        let mode = self.mode(claim.app);
        if mode == Mode::Claimed {
            return Ok(Established::claimed());
        }
        let tls = match mode {
            Mode::Tls | Mode::TlsOrToken | Mode::TlsAndToken => {
                Some(self.tls(claim.originator, caller))
            }
            _ => None,
        };
        match (mode, tls) {
            (Mode::Tls, Some(tls)) => tls.map(|how| Established {
                how,
                tokens: Vec::new(),
            }),
            (Mode::TlsOrToken, Some(Ok(how))) => Ok(Established {
                how,
                tokens: Vec::new(),
            }),
            (Mode::TlsOrToken, Some(Err(tls_refusal))) => {
                let tokens = self.tokens(claim, now).map_err(|token_refusal| {
                    refuse(
                        match token_refusal {
                            Refusal::NotAuthenticated { reason, .. } => reason,
                            Refusal::ReplayUnavailable(_) => "replay-unavailable",
                        },
                        format!("{tls_refusal}; and {token_refusal}"),
                    )
                })?;
                Ok(Established {
                    how: "token",
                    tokens,
                })
            }
            (Mode::TlsAndToken, Some(tls)) => {
                let how = tls?;
                let tokens = self.tokens(claim, now)?;
                Ok(Established {
                    how: if how == "vouched" {
                        "vouched+token"
                    } else {
                        "tls+token"
                    },
                    tokens,
                })
            }
            _ => Ok(Established {
                how: "token",
                tokens: self.tokens(claim, now)?,
            }),
        }
    }

    /// The TLS part: `Ok` with how it was established.
    fn tls(&self, originator: &str, caller: Caller<'_>) -> Result<&'static str, Refusal> {
        let certificate = match caller {
            Caller::Decide { trusted: true, .. } => return Ok("vouched"),
            Caller::Decide { certificate, .. } | Caller::Proxy(certificate) => certificate,
        };
        let Some(certificate) = certificate else {
            return Err(refuse(
                "no-certificate",
                "the app requires a TLS client certificate identifying the originator, and the connection has none",
            ));
        };
        if self.identities(certificate).contains(&originator) {
            Ok("tls")
        } else {
            Err(refuse(
                "certificate-mismatch",
                format!(
                    "the client certificate (subject {:?}, sha256 {}) does not identify {originator:?}",
                    certificate.subject,
                    hex::encode(certificate.sha256)
                ),
            ))
        }
    }

    /// The token part: every token read, bound to the originator, unexpired and unused.
    fn tokens(&self, claim: &Claim<'_>, now: u64) -> Result<Vec<TokenId>, Refusal> {
        let Some(credential) = claim
            .credential
            .filter(|c| c.scheme.eq_ignore_ascii_case("bearer") && !c.value.trim().is_empty())
        else {
            return Err(refuse(
                "no-token",
                "the app requires oneM2M tokens (Authorization: <jws>+<jws>, or Bearer <jws>)",
            ));
        };
        let texts: Vec<&str> = credential.value.trim().split('+').collect();
        if texts.len() > MAX_TOKENS {
            return Err(refuse(
                "token-malformed",
                format!(
                    "{} tokens, more than the {MAX_TOKENS} a request may carry",
                    texts.len()
                ),
            ));
        }
        let mut ids = Vec::with_capacity(texts.len());
        for (index, text) in texts.iter().enumerate() {
            let number = index + 1;
            let claims = read_claims(text).map_err(|problem| {
                refuse("token-malformed", format!("token {number}: {problem}"))
            })?;
            if claims.tkhd != claim.originator {
                return Err(refuse(
                    "holder-mismatch",
                    format!(
                        "token {number}: its holder (tkhd) {:?} is not the originator {:?}",
                        claims.tkhd, claim.originator
                    ),
                ));
            }
            let Some(tkid) = claims.tkid.filter(|id| !id.is_empty()) else {
                return Err(refuse(
                    "token-malformed",
                    format!(
                        "token {number}: no token ID (tkid), so it cannot be checked for replay"
                    ),
                ));
            };
            if claims.tkna <= now {
                return Err(refuse(
                    "token-expired",
                    format!("token {number}: expired (tkna {})", claims.tkna),
                ));
            }
            ids.push(TokenId::new(&claims.tkis, &tkid, claims.tkna));
        }
        if let Some(index) = self.replay.used(&ids, now) {
            return Err(refuse(
                "token-replayed",
                format!("token {} was already used (tkid replay)", index + 1),
            ));
        }
        Ok(ids)
    }

    /// After the plugins: tokens must have been verified by an authenticator for this very
    /// originator, and are then used up. `Some`: the decision was turned into a refusal.
    pub fn after_plugins(
        &self,
        established: &Established,
        originator: &str,
        decision: &mut Decision,
        now: u64,
    ) -> Option<Refusal> {
        if established.tokens.is_empty() {
            return None;
        }
        let refusal = match &decision.identity {
            None => Some(refuse(
                "token-unverified",
                format!(
                    "no authenticator of the app verified the tokens ({})",
                    decision.would_deny.as_deref().unwrap_or(&decision.reason)
                ),
            )),
            Some(identity) if identity.subject != originator => Some(refuse(
                "holder-mismatch",
                format!(
                    "the authenticated subject {:?} is not the originator {originator:?}",
                    identity.subject
                ),
            )),
            Some(_) => match self.replay.accept(&established.tokens, now) {
                Ok(()) => None,
                Err(ReplayError::Replayed(index)) => Some(refuse(
                    "token-replayed",
                    format!("token {index} was already used (tkid replay)"),
                )),
                Err(error) => Some(Refusal::ReplayUnavailable(error)),
            },
        };
        if let Some(refusal) = &refusal {
            self.count(refusal);
            deny(decision, refusal);
        }
        refusal
    }

    fn count(&self, refusal: &Refusal) {
        let reason = match refusal {
            Refusal::NotAuthenticated { reason, .. } => reason,
            Refusal::ReplayUnavailable(_) => "replay-unavailable",
        };
        *self
            .refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(reason)
            .or_default() += 1;
    }

    /// The Prometheus lines of the checks and the replay cache.
    pub fn metrics_text(&self) -> String {
        let mut out = String::from(
            "# HELP palisade_originator_refused_total Requests refused before their plugins because the originator was not authenticated (4106), by reason.\n\
             # TYPE palisade_originator_refused_total counter\n",
        );
        for (reason, count) in self
            .refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            out.push_str(&format!(
                "palisade_originator_refused_total{{reason=\"{reason}\"}} {count}\n"
            ));
        }
        out.push_str(&self.replay.metrics_text());
        out
    }
}

/// Makes `decision` the gateway's own deny for `refusal` (no plugin settled it; enforced in
/// every mode: monitor mode trials policies, not identities).
pub fn deny(decision: &mut Decision, refusal: &Refusal) {
    decision.effect = Effect::Deny;
    decision.reason = refusal.to_string();
    decision.enforced = true;
    decision.would_deny = None;
    decision.decided_by = None;
    decision.identity = None;
}

/// The claims of one compact JWS, unverified (the authenticator verifies it; the host only
/// binds what it verified to the originator and to the replay cache).
fn read_claims(text: &str) -> Result<HostClaims, String> {
    let mut parts = text.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(
            "not a JWS compact serialization (three base64url parts separated by '.')".into(),
        );
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|error| format!("its claims are not base64url: {error}"))?;
    serde_json::from_slice(&bytes)
        .map_err(|error| format!("its claims are not a oneM2M token: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jws(claims: serde_json::Value) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"EdDSA","kid":"k"}"#),
            URL_SAFE_NO_PAD.encode(claims.to_string()),
            URL_SAFE_NO_PAD.encode([0u8; 64])
        )
    }

    const NOW: u64 = 1_800_000_000;

    fn originators(dir: &Path) -> Originators {
        let text = r#"
[[client_identity]]
subject = "CN=meter-7"
originators = ["CAE-meter-7"]

[[app]]
name = "either"
paths = ["/cse-in/either"]
plugin = [{ plugin = "acp" }]
originators = "tls-or-token"
[[app]]
name = "both"
paths = ["/cse-in/both"]
plugin = [{ plugin = "acp" }]
originators = "tls-and-token"
[[app]]
name = "open"
paths = ["/cse-in/open"]
plugin = [{ plugin = "acp" }]
"#;
        let config = GatewayConfig::parse(&dir.join("gw.toml"), text.to_string()).unwrap();
        Originators::new(&config, dir).unwrap()
    }

    fn certificate(subject: &str, uris: &[&str]) -> PeerCertificate {
        PeerCertificate {
            sha256: [7; 32],
            subject: subject.into(),
            uris: uris.iter().map(|u| u.to_string()).collect(),
        }
    }

    fn bearer(tokens: &[String]) -> Credential {
        Credential {
            scheme: "bearer".into(),
            value: tokens.join("+"),
        }
    }

    fn held(holder: &str, tkid: &str, tkna: u64) -> String {
        jws(serde_json::json!({"tkid": tkid, "tkhd": holder, "tkis": "i", "tkna": tkna}))
    }

    fn outcome(
        checks: &Originators,
        app: &str,
        credential: Option<&Credential>,
        caller: Caller<'_>,
    ) -> Result<&'static str, &'static str> {
        let claim = Claim {
            app,
            originator: "CAE-meter-7",
            credential,
            group_proof: None,
        };
        checks
            .check(&claim, caller, NOW)
            .map(|established| established.how)
            .map_err(|refusal| match refusal {
                Refusal::NotAuthenticated { reason, .. } => reason,
                Refusal::ReplayUnavailable(_) => "replay-unavailable",
            })
    }

    /// "Either" and "both", each side of each: a certificate mapped by subject, tokens held
    /// by the originator, a trusted decide caller vouching.
    #[test]
    fn combinations_mean_either_and_both() {
        let dir = tempfile::tempdir().unwrap();
        let checks = originators(dir.path());
        let mapped = certificate("CN=meter-7", &[]);
        let other = certificate("CN=other", &["CAE-other"]);
        let token = bearer(&[held("CAE-meter-7", "t1", NOW + 60)]);
        let proxy = |c| Caller::Proxy(c);

        assert_eq!(
            outcome(&checks, "either", None, proxy(Some(&mapped))),
            Ok("tls")
        );
        assert_eq!(
            outcome(&checks, "either", Some(&token), proxy(Some(&other))),
            Ok("token")
        );
        assert_eq!(
            outcome(&checks, "either", Some(&token), proxy(None)),
            Ok("token")
        );
        assert_eq!(
            outcome(&checks, "either", None, proxy(Some(&other))),
            Err("no-token")
        );

        assert_eq!(
            outcome(&checks, "both", Some(&token), proxy(Some(&mapped))),
            Ok("tls+token")
        );
        assert_eq!(
            outcome(&checks, "both", None, proxy(Some(&mapped))),
            Err("no-token")
        );
        assert_eq!(
            outcome(&checks, "both", Some(&token), proxy(None)),
            Err("no-certificate")
        );
        assert_eq!(
            outcome(&checks, "both", Some(&token), proxy(Some(&other))),
            Err("certificate-mismatch")
        );
        let vouching = Caller::Decide {
            trusted: true,
            certificate: None,
        };
        assert_eq!(
            outcome(&checks, "both", Some(&token), vouching),
            Ok("vouched+token")
        );
        assert_eq!(outcome(&checks, "both", None, vouching), Err("no-token"));
        let untrusted = Caller::Decide {
            trusted: false,
            certificate: Some(&mapped),
        };
        assert_eq!(
            outcome(&checks, "both", Some(&token), untrusted),
            Ok("tls+token")
        );

        assert_eq!(outcome(&checks, "open", None, proxy(None)), Ok("claimed"));
        assert!(checks.metrics_text().contains("reason=\"no-token\"} 3"));
    }

    /// Token bounds on the host: expiry, a missing ID, too many, a scheme that is not bearer.
    #[test]
    fn tokens_are_bounded_and_must_be_current() {
        let dir = tempfile::tempdir().unwrap();
        let checks = originators(dir.path());
        let check = |credential: &Credential| {
            outcome(&checks, "either", Some(credential), Caller::Proxy(None))
        };
        assert_eq!(
            check(&bearer(&[held("CAE-meter-7", "t", NOW)])),
            Err("token-expired")
        );
        let no_id = jws(serde_json::json!({"tkhd": "CAE-meter-7", "tkis": "i", "tkna": NOW + 5}));
        assert_eq!(check(&bearer(&[no_id])), Err("token-malformed"));
        let many: Vec<String> = (0..17)
            .map(|i| held("CAE-meter-7", &format!("t{i}"), NOW + 5))
            .collect();
        assert_eq!(check(&bearer(&many)), Err("token-malformed"));
        assert_eq!(check(&bearer(&many[..16])), Ok("token"));
        let basic = Credential {
            scheme: "basic".into(),
            value: "x".into(),
        };
        assert_eq!(check(&basic), Err("no-token"));
    }

    /// After the plugins: no identity, or another subject, refuses; a verified one uses the
    /// token up.
    #[test]
    fn tokens_are_used_up_only_when_verified_for_the_originator() {
        let dir = tempfile::tempdir().unwrap();
        let checks = originators(dir.path());
        let token = bearer(&[held("CAE-meter-7", "t1", NOW + 60)]);
        let claim = Claim {
            app: "either",
            originator: "CAE-meter-7",
            credential: Some(&token),
            group_proof: None,
        };
        let established = checks.check(&claim, Caller::Proxy(None), NOW).unwrap();
        let mut decision = Decision {
            effect: Effect::Permit,
            reason: "permitted".into(),
            app: "either".into(),
            decided_by: None,
            enforced: false,
            would_deny: Some("monitor".into()),
            identity: None,
            stages: Vec::new(),
            timings: Default::default(),
            decision_id: None,
        };
        let refused = checks.after_plugins(&established, "CAE-meter-7", &mut decision.clone(), NOW);
        assert!(matches!(
            refused,
            Some(Refusal::NotAuthenticated {
                reason: "token-unverified",
                ..
            })
        ));
        decision.identity = Some(palisade_core::Identity {
            subject: "CAE-someone".into(),
            roles: Vec::new(),
            expires_at: None,
            authenticator: "token-auth".into(),
        });
        let mut denied = decision.clone();
        let refused = checks.after_plugins(&established, "CAE-meter-7", &mut denied, NOW);
        assert!(matches!(
            refused,
            Some(Refusal::NotAuthenticated {
                reason: "holder-mismatch",
                ..
            })
        ));
        assert_eq!(
            (denied.effect, denied.enforced),
            (Effect::Deny, true),
            "enforced in monitor mode too"
        );
        decision.identity.as_mut().unwrap().subject = "CAE-meter-7".into();
        assert!(checks
            .after_plugins(&established, "CAE-meter-7", &mut decision.clone(), NOW)
            .is_none());
        // Used: the next request with it is refused before its plugins.
        assert!(matches!(
            checks.check(&claim, Caller::Proxy(None), NOW),
            Err(Refusal::NotAuthenticated {
                reason: "token-replayed",
                ..
            })
        ));
    }

    #[test]
    fn claims_are_read_strictly() {
        let good = jws(serde_json::json!({"tkid": "t", "tkhd": "CAE1", "tkis": "i", "tkna": 5}));
        assert_eq!(read_claims(&good).unwrap().tkhd, "CAE1");
        // A second holder cannot be smuggled past the host.
        let payload =
            URL_SAFE_NO_PAD.encode(r#"{"tkhd":"CAE1","tkhd":"CAE2","tkis":"i","tkna":5}"#);
        let twice = format!("a.{payload}.c");
        assert!(read_claims(&twice).unwrap_err().contains("duplicate field"));
        assert!(read_claims("a.b").is_err());
        assert!(read_claims("a.=.c").is_err());
        let padded = format!("a.{}=.c", URL_SAFE_NO_PAD.encode("{\"a\":1}"));
        assert!(read_claims(&padded).is_err());
    }
}
