//! Logging into the host's structured log. Each call counts against the plugin's host-call
//! budget, so log sparingly on the decision path.

use crate::bindings::imports::palisade::plugin::log::{log, Level};

pub fn trace(message: &str) {
    log(Level::Trace, message)
}
pub fn debug(message: &str) {
    log(Level::Debug, message)
}
pub fn info(message: &str) {
    log(Level::Info, message)
}
pub fn warn(message: &str) {
    log(Level::Warn, message)
}
pub fn error(message: &str) {
    log(Level::Error, message)
}
