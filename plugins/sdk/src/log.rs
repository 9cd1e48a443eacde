//! Logging into the host's structured log, tagged with the application and plugin. Each call
//! counts against the plugin's host-call budget (`host_calls`), so log sparingly on the
//! decision path. No capability is needed. The host escapes control and invisible
//! characters and bounds the message, so a plugin cannot forge log lines.
//!
//! ```no_run
//! use palisade_sdk::log;
//!
//! log::debug("policy loaded");
//! log::info("3 rules");
//! log::warn("rule 2 never matches");
//! log::error("configuration refused"); // in `prepare`, the reason a load fails with
//! log::trace("entering authorize");
//! ```

use crate::bindings::imports::palisade::plugin::log::{log, Level};

/// Logs `message` at trace level.
pub fn trace(message: &str) {
    log(Level::Trace, message)
}
/// Logs `message` at debug level.
pub fn debug(message: &str) {
    log(Level::Debug, message)
}
/// Logs `message` at info level.
pub fn info(message: &str) {
    log(Level::Info, message)
}
/// Logs `message` at warn level.
pub fn warn(message: &str) {
    log(Level::Warn, message)
}
/// Logs `message` at error level.
pub fn error(message: &str) {
    log(Level::Error, message)
}
