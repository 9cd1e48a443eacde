//! `palisade:plugin/log`: plugin messages into the host's structured log, tagged with the
//! application and plugin so an operator can tell who said what. Granted to every plugin.
//!
//! A message is data, not log syntax: control characters (a CR or LF would otherwise start a
//! forged log line, an ESC would drive the operator's terminal) and bidirectional-text
//! controls are escaped, and a long message is cut with a marker (issue #12 finding 5).

use crate::sandbox::bindings::imports::palisade::plugin::log::{Host, Level};
use crate::sandbox::convert::bounded_text;
use crate::sandbox::state::HostState;

/// Longest message kept; the rest is cut so a plugin cannot flood the log with one call.
const MAX_MESSAGE_BYTES: usize = 1024;

impl Host for HostState {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        self.enter(None)?;
        let message = bounded_text(&message, MAX_MESSAGE_BYTES);
        let app = self.plugin.app.as_str();
        let plugin = self.plugin.name.as_str();
        match level {
            Level::Trace => tracing::trace!(app, plugin, "{message}"),
            Level::Debug => tracing::debug!(app, plugin, "{message}"),
            Level::Info => tracing::info!(app, plugin, "{message}"),
            Level::Warn => tracing::warn!(app, plugin, "{message}"),
            Level::Error => tracing::error!(app, plugin, "{message}"),
        }
        if matches!(level, Level::Error) {
            self.last_error_log = Some(message.to_string());
        }
        Ok(())
    }
}
