//! The case-file format of `palisade test` (TOML). See `examples/*/cases.toml` and the README.
//!
//! ```toml
//! plugin = "acp"                 # reference plugin name, or a .wasm path relative to this file
//! capabilities = ["groups"]      # granted capabilities (deny by default)
//! config_file = "policy.json"    # or an inline [config] table
//!
//! [state]                        # host state every case sees unless it overrides it
//! time = 2026-11-28T10:15:00Z    # request time: TOML datetime (UTC) or seconds since the epoch
//! groups = { "grp1" = ["CAE1"] }
//! positions = { "CAE1" = { latitude = 48.85, longitude = 2.35, country = "FR" } }
//!                                # provisioned positions: what the proxy gives a request
//!                                # that carries no location of its own (issue 13.7)
//! kv = { "k" = "v" }
//! [[state.keys]]
//! handle = "issuer-1"
//! ed25519_seed = "<64 hex>"      # the runner keeps the seed to mint tokens; the plugin gets the public key
//!
//! [[case]]
//! name = "reads are allowed"
//! request = { originator = "CAE1", operation = "retrieve", target = "/cse-in/app1" }
//! expect = "permit"
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::{bail, Context};
use serde::Deserialize;

use palisade_core::{AccessRequest, Credential};
use palisade_core::{Capabilities, Isolation, SandboxLimits};

/// A whole case file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    /// The plugin under test.
    pub plugin: String,
    #[serde(default)]
    pub capabilities: Capabilities,
    #[serde(default)]
    pub config: Option<toml::Value>,
    #[serde(default)]
    pub config_file: Option<String>,
    #[serde(default)]
    pub limits: Option<SandboxLimits>,
    #[serde(default)]
    pub isolation: Option<Isolation>,
    #[serde(default)]
    pub state: State,
    #[serde(rename = "case", default)]
    pub cases: Vec<Case>,
}

/// Host state a plugin sees.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub time: Option<TimeValue>,
    #[serde(default)]
    pub groups: Option<HashMap<String, Vec<String>>>,
    /// Originator → provisioned position, as `palisade provision create --positions`
    /// carries them; a request without `location` from such an originator gets it, through
    /// the same fixed-point form the proxy uses.
    #[serde(default)]
    pub positions: Option<BTreeMap<String, palisade_provision::PositionJson>>,
    #[serde(default)]
    pub kv: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub keys: Option<Vec<TestKey>>,
}

/// A request time: a TOML datetime or seconds since the epoch.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum TimeValue {
    Seconds(u64),
    Datetime(toml::value::Datetime),
}

impl TimeValue {
    pub fn seconds(&self) -> anyhow::Result<u64> {
        match self {
            TimeValue::Seconds(seconds) => Ok(*seconds),
            TimeValue::Datetime(datetime) => datetime_to_unix(datetime),
        }
    }
}

/// A key the host holds for the application under test.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestKey {
    pub handle: String,
    /// An Ed25519 private seed (hex): the plugin can verify with its public half, and the
    /// runner can mint tokens with it.
    #[serde(default)]
    pub ed25519_seed: Option<String>,
    /// An Ed25519 public key (hex) alone.
    #[serde(default)]
    pub ed25519_public: Option<String>,
    /// An HMAC secret (hex).
    #[serde(default)]
    pub hmac_secret: Option<String>,
}

/// One test case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    /// The request, in the one request shape ([`AccessRequest`]); see [`Case::request`].
    request: AccessRequest,
    #[serde(default)]
    pub credential: Option<CaseCredential>,
    #[serde(default)]
    pub response: Option<CaseResponse>,
    /// permit | deny | not-applicable | authenticated | rejected | unchanged | rewrite | block,
    /// or `refused`: the plugin refuses the configuration when it is loaded.
    pub expect: String,
    /// Text the reason must contain.
    #[serde(default)]
    pub reason: Option<String>,
    /// Authenticated cases: the expected subject and exact roles.
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub roles: Option<Vec<String>>,
    /// Rewrite cases: the expected body, compared as JSON when both sides parse.
    #[serde(default)]
    pub body: Option<String>,
    // Per-case overrides of the file's settings.
    #[serde(default)]
    pub config: Option<toml::Value>,
    #[serde(default)]
    pub config_file: Option<String>,
    #[serde(default)]
    pub capabilities: Option<Capabilities>,
    #[serde(default)]
    pub time: Option<TimeValue>,
    #[serde(default)]
    pub groups: Option<HashMap<String, Vec<String>>>,
    #[serde(default)]
    pub kv: Option<BTreeMap<String, String>>,
}

/// A credential: raw text, or a JWS the runner mints with a test key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseCredential {
    pub scheme: String,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub jws: Option<JwsSpec>,
}

/// A JWS (RFC 7515 compact, alg EdDSA) to mint for a case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwsSpec {
    /// The test key (its handle) to sign with; also the header's `kid`.
    pub key: String,
    pub claims: toml::Value,
    /// Replaces the default header `{"alg":"EdDSA","kid":<key>}`.
    #[serde(default)]
    pub header: Option<toml::Value>,
    /// Break the token after signing: `signature` or `claims`.
    #[serde(default)]
    pub tamper: Option<String>,
}

/// A response for filter cases.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseResponse {
    #[serde(default = "ok_status")]
    pub status: u32,
    pub content_type: String,
    pub body: String,
}

fn ok_status() -> u32 {
    2000
}

impl Case {
    /// The case's request at `time`, decided as the runner's one app. The request's own
    /// `app`, `credential` and `request_time` are refused: the runner names the app, a
    /// credential is `[case.credential]` (which can mint a JWS) and the time is `time`, so
    /// that each has one place in a case file.
    pub fn request(&self, time: u64) -> anyhow::Result<AccessRequest> {
        let request = &self.request;
        for (field, instead, given) in [
            (
                "app",
                "the runner decides as its one app",
                !request.app.is_empty(),
            ),
            (
                "credential",
                "give it as [case.credential]",
                request.credential.is_some(),
            ),
            (
                "request_time",
                "give it as the case's `time`",
                request.request_time.is_some(),
            ),
        ] {
            if given {
                bail!("[case.request] {field} cannot be set here: {instead}");
            }
        }
        let mut request = request.clone();
        request.app = "local".into();
        request.request_time = Some(time);
        Ok(request)
    }
}

impl CaseCredential {
    pub fn to_credential(&self, keys: &super::keys::TestKeys) -> anyhow::Result<Credential> {
        let value = match (&self.value, &self.jws) {
            (Some(value), None) => value.clone(),
            (None, Some(jws)) => super::jws::mint(jws, keys)?,
            _ => bail!("a credential needs exactly one of `value` or `jws`"),
        };
        Ok(Credential {
            scheme: self.scheme.clone(),
            value,
        })
    }
}

/// Groups as the sandbox wants them.
pub fn groups(groups: &HashMap<String, Vec<String>>) -> HashMap<String, HashSet<String>> {
    groups
        .iter()
        .map(|(group, members)| (group.clone(), members.iter().cloned().collect()))
        .collect()
}

/// A TOML table turned into the JSON text a plugin reads.
pub fn config_json(config: &toml::Value) -> anyhow::Result<String> {
    serde_json::to_string(config).context("the inline configuration cannot be expressed as JSON")
}

/// Seconds since the Unix epoch of a TOML datetime, which must carry a date; a missing time
/// is midnight, a missing offset is UTC.
fn datetime_to_unix(datetime: &toml::value::Datetime) -> anyhow::Result<u64> {
    let Some(date) = datetime.date else {
        bail!("the time {datetime} has no date");
    };
    let midnight = palisade_types::unix_from_civil(
        i64::from(date.year),
        u32::from(date.month),
        u32::from(date.day),
    )
    .with_context(|| format!("the time {datetime} is not usable"))?;
    let (hour, minute, second) = datetime
        .time
        .map(|time| {
            (
                i64::from(time.hour),
                i64::from(time.minute),
                // TOML 1.1 lets the seconds be left out (`07:30`): zero then.
                i64::from(time.second.unwrap_or(0)),
            )
        })
        .unwrap_or((0, 0, 0));
    let offset_minutes = match datetime.offset {
        Some(toml::value::Offset::Custom { minutes }) => i64::from(minutes),
        _ => 0,
    };
    let seconds = midnight + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    u64::try_from(seconds).with_context(|| format!("the time {datetime} is before 1970"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_toml_datetimes_to_unix_seconds() {
        let parse = |text: &str| {
            let value: toml::Value = toml::from_str(&format!("t = {text}")).unwrap();
            match value.get("t").unwrap() {
                toml::Value::Datetime(datetime) => datetime_to_unix(datetime).unwrap(),
                other => panic!("not a datetime: {other:?}"),
            }
        };
        assert_eq!(parse("1970-01-01T00:00:00Z"), 0);
        assert_eq!(parse("2000-03-01T00:00:00Z"), 951_868_800);
        assert_eq!(parse("2026-11-28T10:15:00Z"), 1_795_860_900);
        assert_eq!(parse("2026-11-28T11:15:00+01:00"), 1_795_860_900);
        // Seconds left out (TOML 1.1).
        assert_eq!(parse("2026-11-28T10:15Z"), 1_795_860_900);
        assert_eq!(parse("2024-02-29"), 1_709_164_800);
    }
}
