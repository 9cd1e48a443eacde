//! A small key-value store private to the application (capability `kv`). The host bounds key
//! and value sizes and the namespace's total size; calling it without the capability traps.

use crate::bindings::imports::palisade::plugin::kv as host;
pub use crate::bindings::imports::palisade::plugin::kv::KvError;

pub fn get(key: &str) -> Option<Vec<u8>> {
    host::get(key)
}

pub fn set(key: &str, value: &[u8]) -> Result<(), KvError> {
    host::set(key, value)
}

pub fn delete(key: &str) {
    host::delete(key)
}
