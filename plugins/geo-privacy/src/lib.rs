//! # geo-privacy: location confidentiality for oneM2M responses (SER-026)
//!
//! A Palisade reference filter. Responses travelling back to an originator pass through it;
//! location data in JSON bodies (`lat`, `lon`, `location`, GeoJSON `coordinates`, …, at any
//! depth) is coarsened or removed unless the originator holds the precise-location role.
//!
//! Why a filter: the gateway can keep location away from plugins that were not granted it,
//! but a CSE's responses carry whatever devices stored. What an application may reveal, and
//! to whom, is its own policy (SER-022), so it is configured per application (SER-014).
//!
//! Fail closed: a body the filter cannot inspect — invalid JSON under a JSON content type,
//! ambiguous JSON (duplicate member names), or by default any non-JSON content type — is
//! blocked, never passed on. An empty body holds no location and passes.
//!
//! Layout: [`config`] validates the configuration, [`json`] parses strictly, [`redact`]
//! rewrites the document, [`decide`] makes the filter decision. Only the entry point calls the
//! host, and only when built for WebAssembly, so everything else is unit-tested natively.

pub mod config;
pub mod json;
pub mod redact;

#[cfg(test)]
mod tests;

use palisade_sdk::{FilterResult, Response};

use config::{NonJson, Settings};

/// Whether a content type is JSON: `application/json`, `text/json` or any `+json` type such
/// as oneM2M's `application/vnd.onem2m-res+json` or `application/geo+json`. Parameters (`;
/// ty=4`, `; charset=utf-8`) and letter case do not matter (RFC 9110 §8.3.1).
pub fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence == "text/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The filter decision for one response. `settings` is the parsed configuration or the
/// reason it does not parse; `roles` are the originator's authenticated roles.
pub fn decide(
    settings: Result<&Settings, &str>,
    roles: &[String],
    response: &Response,
) -> FilterResult {
    let settings = match settings {
        Ok(settings) => settings,
        Err(reason) => return FilterResult::Block(reason.to_string()),
    };
    if roles.contains(&settings.precise_role) {
        return FilterResult::Unchanged;
    }
    if response.body.iter().all(u8::is_ascii_whitespace) {
        return FilterResult::Unchanged;
    }
    if !is_json(&response.content_type) {
        return match settings.non_json {
            NonJson::Pass => FilterResult::Unchanged,
            NonJson::Block => {
                let shown = if response.content_type.is_empty() {
                    "(none)"
                } else {
                    &response.content_type
                };
                FilterResult::Block(format!(
                    "content type {shown} is not JSON: location data cannot be inspected (SER-026)"
                ))
            }
        };
    }
    let mut document = match json::parse(&response.body) {
        Ok(document) => document,
        Err(e) => {
            return FilterResult::Block(format!(
                "response body is not valid JSON ({e}): location data cannot be inspected (SER-026)"
            ))
        }
    };
    match redact::redact(&mut document, settings) {
        Err(reason) => FilterResult::Block(reason),
        Ok(false) => FilterResult::Unchanged,
        Ok(true) => match serde_json::to_vec(&document) {
            Ok(bytes) => FilterResult::Rewrite(bytes),
            Err(e) => FilterResult::Block(format!("could not write the redacted body: {e}")),
        },
    }
}

#[cfg(target_arch = "wasm32")]
mod plugin {
    use palisade_sdk::config::Config;
    use palisade_sdk::{Filter, FilterResult, Request, Response};

    /// Parsed once per instance: the configuration is constant for its lifetime.
    static SETTINGS: Config<crate::config::Settings> = Config::new();

    struct GeoPrivacy;

    impl Filter for GeoPrivacy {
        fn filter(request: Request, response: Response) -> FilterResult {
            crate::decide(SETTINGS.get(), &request.roles, &response)
        }

        /// Parse the configuration when the host loads the plugin and refuse it there when
        /// it is invalid (the gateway does not start rather than reject every request); in
        /// fresh-instance applications the parsed form is then snapshotted.
        fn prepare() {
            SETTINGS.require();
        }
    }

    palisade_sdk::export_filter!(GeoPrivacy);
}
