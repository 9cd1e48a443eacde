//! `palisade:plugin/config`: the application's configuration for this plugin (SER-014).
//! Granted to every plugin: it is the plugin's own policy, set by the operator.

use crate::sandbox::bindings::imports::palisade::plugin::config::Host;
use crate::sandbox::state::HostState;

impl Host for HostState {
    fn get(&mut self) -> wasmtime::Result<String> {
        self.enter(None)?;
        Ok(self.plugin.config_json.to_string())
    }
}
