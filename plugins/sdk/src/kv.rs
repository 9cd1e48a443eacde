//! A small key-value store private to the application (capability `kv`). The host bounds key
//! and value sizes and the namespace's total size (the app's `[app.limits]` `kv_max_*`);
//! calling it without the capability traps, and the call counts as the plugin's failure (an
//! authorizer's request is denied).
//!
//! The store is shared by the application's plugins and instances and survives instance
//! reuse, so it is where a plugin keeps counters or caches across requests. Other
//! applications never see it (SER-024).
//!
//! ```no_run
//! use palisade_sdk::kv;
//!
//! // Count an originator's requests.
//! let key = "hits:CAE1";
//! let hits = kv::get(key)
//!     .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
//!     .map(u64::from_le_bytes)
//!     .unwrap_or(0);
//! match kv::set(key, &(hits + 1).to_le_bytes()) {
//!     Ok(()) => {}
//!     Err(kv::KvError::QuotaExceeded) => palisade_sdk::log::warn("kv namespace full"),
//!     Err(kv::KvError::TooLarge) => unreachable!("an 8-byte value under a short key"),
//! }
//! kv::delete("stale-entry");
//! ```

use crate::bindings::imports::palisade::plugin::kv as host;
pub use crate::bindings::imports::palisade::plugin::kv::KvError;

/// The value stored under `key`, if any.
pub fn get(key: &str) -> Option<Vec<u8>> {
    host::get(key)
}

/// Stores `value` under `key`, replacing what was there. [`KvError::TooLarge`] when the key or
/// value is longer than the host allows, [`KvError::QuotaExceeded`] when the namespace is full.
pub fn set(key: &str, value: &[u8]) -> Result<(), KvError> {
    host::set(key, value)
}

/// Removes `key` (nothing happens when it is absent).
pub fn delete(key: &str) {
    host::delete(key)
}
