//! The application's configuration for this plugin (SER-014).
//!
//! The host hands over a JSON document that stays constant for the lifetime of an instance,
//! so [`Config`] parses it once and serves the parsed value afterwards. With warm instances
//! that makes configuration free on the decision path.

use std::sync::OnceLock;

use serde::de::DeserializeOwned;

/// The raw configuration document (`{}` when the operator set none). No capability is
/// needed; the document is the app's `[app.plugin.config]` table or `config_file`, as JSON.
///
/// ```no_run
/// let text: String = palisade_sdk::config::raw();
/// let document: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
/// ```
pub fn raw() -> String {
    crate::bindings::imports::palisade::plugin::config::get()
}

/// A configuration of type `T`, parsed from the host's document on first use.
///
/// ```no_run
/// use palisade_sdk::config::Config;
/// use palisade_sdk::Decision;
///
/// #[derive(serde::Deserialize)]
/// struct MyPolicy {
///     allowed: Vec<String>,
/// }
///
/// static POLICY: Config<MyPolicy> = Config::new();
///
/// fn decide(originator: &str) -> Decision {
///     match POLICY.get() {
///         Ok(policy) if policy.allowed.iter().any(|o| o == originator) => Decision::Permit,
///         Ok(_) => Decision::deny("not allowed"),
///         // An unreadable policy is never a permit.
///         Err(reason) => Decision::deny(reason),
///     }
/// }
/// ```
pub struct Config<T> {
    parsed: OnceLock<Result<T, String>>,
}

impl<T: DeserializeOwned> Config<T> {
    /// An unparsed configuration, for a `static`.
    pub const fn new() -> Self {
        Config {
            parsed: OnceLock::new(),
        }
    }

    /// The parsed configuration, or a sentence naming why it does not parse. A plugin should
    /// deny when this fails: an unreadable policy is never a permit.
    pub fn get(&self) -> Result<&T, &str> {
        self.parsed
            .get_or_init(|| {
                serde_json::from_str(&raw())
                    .map_err(|error| format!("invalid plugin configuration: {error}"))
            })
            .as_ref()
            .map_err(String::as_str)
    }
}

/// Refuses the configuration, from `prepare`: logs `reason` at error level and traps. The host
/// calls `prepare` when it loads the plugin (warm or fresh instances), and a `prepare` that
/// traps after logging an error fails the load with that message as the plugin's reason, so
/// a configuration that cannot work stops `palisade serve` at start, or an admin push, instead
/// of denying every request later (and `palisade check` reports it as the config's error).
///
/// ```no_run
/// use palisade_sdk::config::{refuse, Config};
///
/// #[derive(serde::Deserialize)]
/// struct Hours {
///     open: u32,
///     close: u32,
/// }
/// static HOURS: Config<Hours> = Config::new();
///
/// // In `Authorizer::prepare`:
/// let hours = HOURS.require(); // refuses a document that does not parse
/// if hours.open >= hours.close || hours.close > 24 {
///     refuse("open must be before close, within 0..=24");
/// }
/// ```
pub fn refuse(reason: &str) -> ! {
    crate::log::error(reason);
    panic!("configuration refused: {reason}")
}

impl<T: DeserializeOwned> Config<T> {
    /// For `prepare`: parses the configuration now and [`refuse`]s it when it does not parse.
    pub fn require(&self) -> &T {
        match self.get() {
            Ok(parsed) => parsed,
            Err(reason) => refuse(reason),
        }
    }
}

impl<T: DeserializeOwned> Default for Config<T> {
    fn default() -> Self {
        Self::new()
    }
}

// Plugins are single-threaded; OnceLock is only there to make the static safe to name.
unsafe impl<T> Sync for Config<T> {}
