//! `palisade:plugin/kv`: a small key-value store private to one application (capability
//! `kv`). Every application has its own namespace (SER-024); sizes are bounded so a plugin
//! cannot exhaust the gateway's memory through it (SER-001).

use std::collections::HashMap;
use std::sync::Mutex;

use super::Capability;
use crate::sandbox::bindings::imports::palisade::plugin::kv::{Host, KvError};
use crate::sandbox::limits::SandboxLimits;
use crate::sandbox::state::HostState;

/// One application's key-value entries and the bytes they hold.
#[derive(Debug, Default)]
pub struct KvNamespace {
    entries: Mutex<KvEntries>,
}

#[derive(Debug, Default)]
struct KvEntries {
    map: HashMap<String, Vec<u8>>,
    total_bytes: usize,
}

/// Why a `set` was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvRefusal {
    TooLarge,
    QuotaExceeded,
}

impl KvNamespace {
    pub fn new() -> KvNamespace {
        KvNamespace::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, KvEntries> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.lock().map.get(key).cloned()
    }

    /// Stores a value within the application's limits; the namespace is unchanged on refusal.
    pub fn set(&self, key: &str, value: &[u8], limits: &SandboxLimits) -> Result<(), KvRefusal> {
        if key.len() > limits.kv_max_key_bytes || value.len() > limits.kv_max_value_bytes {
            return Err(KvRefusal::TooLarge);
        }
        let mut entries = self.lock();
        let previous = entries.map.get(key).map(|old| key.len() + old.len());
        let new_total = entries.total_bytes - previous.unwrap_or(0) + key.len() + value.len();
        let new_count = entries.map.len() + usize::from(previous.is_none());
        if new_total > limits.kv_max_total_bytes || new_count > limits.kv_max_entries {
            return Err(KvRefusal::QuotaExceeded);
        }
        entries.total_bytes = new_total;
        entries.map.insert(key.to_string(), value.to_vec());
        Ok(())
    }

    pub fn delete(&self, key: &str) {
        let mut entries = self.lock();
        if let Some(old) = entries.map.remove(key) {
            entries.total_bytes -= key.len() + old.len();
        }
    }

    /// Number of entries (for health reports and tests).
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Host for HostState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        self.enter(Some(Capability::Kv))?;
        Ok(self.env.kv.get(&key))
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), KvError>> {
        self.enter(Some(Capability::Kv))?;
        Ok(self
            .env
            .kv
            .set(&key, &value, &self.limits)
            .map_err(|refusal| match refusal {
                KvRefusal::TooLarge => KvError::TooLarge,
                KvRefusal::QuotaExceeded => KvError::QuotaExceeded,
            }))
    }

    fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        self.enter(Some(Capability::Kv))?;
        self.env.kv.delete(&key);
        Ok(())
    }
}
