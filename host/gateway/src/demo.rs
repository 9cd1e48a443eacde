//! The demo gateway `palisade serve` starts without a config: a config file and policies
//! written into `<data>/demo/` on first start (never overwritten, so they can be edited and
//! then copied), loaded like any other config.
//!
//! - `lights` (`/cse-in/lights`): the `acp` authorizer (CAE1 may do everything; members of
//!   the group `grp-lights-readers`, CAE2 and CAE3, may retrieve and discover) and the
//!   `geo-privacy` filter (positions coarsened to ~1 km, SER-026).
//! - `meters` (`/cse-in/meters`): the `token-auth` authenticator, trusting the issuer key
//!   `das-1` that the gateway generates in its keystore on first start (a stand-in for a
//!   oneM2M dynamic-authorization server), and `acp` granting retrieve to the role
//!   `meter-reader` on authenticated requests. [`mint_demo_token`] signs a token with that key
//!   through the keystore: the private key never leaves it (SER-010). Its originators are
//!   authenticated (`originators = "token"`, [`super::originator`]): a request whose
//!   originator is not the holder of a valid, unused token is refused with 4106 before any
//!   plugin runs, and each token is accepted once.
//!
//! Both apps run without consent to real identities, so their policies name originators with
//! the `originator:` marker and plugins see pseudonyms (SER-011, see [`super::privacy`]).

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use super::setup::generated_key;
use super::Gateway;
use palisade_keys::{KeyError, KeyScope};

/// The demo's default listening address.
pub const DEMO_LISTEN: &str = "127.0.0.1:8080";

/// The originator the demo token is issued to.
pub const DEMO_TOKEN_HOLDER: &str = "CAE-meter-1";

const GATEWAY_TOML: &str = r#"# The Palisade demo gateway, written by `palisade serve` on first start. Edit it, or copy
# it as a starting point: `palisade serve --config palisade-data/demo/gateway.toml`.
# examples/gateway.toml in the source tree documents every key.

[[listener]]
address = "127.0.0.1:8080"
# Loopback only, so the decision API may share the listener with the proxy; a listener
# devices reach leaves "decide" out (the default without a `serve` list).
serve = ["decide", "proxy", "metrics", "health", "admin"]

[upstream]
# The CSE that permitted requests are forwarded to. Nothing is started there by Palisade:
# without a CSE, permitted proxy requests are answered 5103 (target not reachable).
url = "http://127.0.0.1:8081"
connect_timeout_ms = 500

[[app]]
name = "lights"
paths = ["/cse-in/lights"]
mode = "enforce"
groups = { "grp-lights-readers" = ["CAE2", "CAE3"] }

[[app.plugin]]
plugin = "acp"
capabilities = ["groups"]
config_file = "lights-policy.json"

[[app.plugin]]
plugin = "geo-privacy"
config = { mode = "coarsen", decimals = 2, precise_role = "precise-location", non_json = "pass" }

[[app]]
name = "meters"
paths = ["/cse-in/meters"]
# Originators must hold a oneM2M token (Authorization: <jws>+<jws>, or Bearer <jws>), each
# token used once; anything else is answered 4106 before any plugin runs. "claimed" (the
# default) believes X-M2M-Origin as sent; "tls" needs a client certificate naming it.
originators = "token"

[[app.key]]
handle = "das-1"
generate = "ed25519"

[[app.plugin]]
plugin = "token-auth"
capabilities = ["crypto"]
config = { audience = "/id-mn1", trusted_issuers = { "/id-in/das" = ["das-1"] }, leeway_seconds = 60 }

[[app.plugin]]
plugin = "acp"
config_file = "meters-policy.json"
"#;

const LIGHTS_POLICY: &str = r#"{
  "policies": [
    {
      "id": "lights",
      "pv": {
        "acr": [
          { "acor": ["originator:CAE1"], "acop": 63 },
          { "acor": ["<grp-lights-readers>"], "acop": 34 }
        ]
      }
    }
  ]
}
"#;

const METERS_POLICY: &str = r#"{
  "policies": [
    {
      "id": "meters",
      "pv": {
        "acr": [
          { "acor": ["role:meter-reader"], "acop": 34, "acaf": true }
        ]
      }
    }
  ]
}
"#;

/// Writes the demo's files into `<data_dir>/demo/` unless they exist; returns the config
/// file's path.
pub fn prepare(data_dir: &Path) -> std::io::Result<PathBuf> {
    let dir = data_dir.join("demo");
    std::fs::create_dir_all(&dir)?;
    for (name, text) in [
        ("gateway.toml", GATEWAY_TOML),
        ("lights-policy.json", LIGHTS_POLICY),
        ("meters-policy.json", METERS_POLICY),
    ] {
        let path = dir.join(name);
        if !path.exists() {
            std::fs::write(&path, text)?;
        }
    }
    Ok(dir.join("gateway.toml"))
}

/// A bearer token for [`DEMO_TOKEN_HOLDER`] with the role `meter-reader`, valid for 30
/// days, signed by the `meters` app's generated key `das-1` inside the keystore. `None`
/// when the config has no such key (an edited demo).
pub fn mint_demo_token(gateway: &Gateway) -> Result<Option<String>, KeyError> {
    let Some(handle) = generated_key(gateway.keystore.as_ref(), "meters", "das-1")? else {
        return Ok(None);
    };
    let now = palisade_core::request::now_unix();
    let header = serde_json::json!({"alg": "EdDSA", "kid": "das-1"});
    let claims = serde_json::json!({
        "version": "1",
        // Tokens are single-use in a `token` app: each mint gets its own ID.
        "tkid": format!("demo-{now}-{:016x}", rand::random::<u64>()),
        "tkhd": DEMO_TOKEN_HOLDER,
        "tkis": "/id-in/das",
        "tknb": now.saturating_sub(60),
        "tkna": now + 30 * 86_400,
        "tkau": ["/id-mn1"],
        "tkps": [{"rids": ["meter-reader"]}],
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = gateway.keystore.sign(
        &KeyScope::App("meters".into()),
        &handle,
        signing_input.as_bytes(),
    )?;
    Ok(Some(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    )))
}
