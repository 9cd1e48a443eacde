//! The integration tests of palisade-core: the runtime library alone, in process, as an
//! embedding gateway uses it (real plugins from `plugins/`, a real engine; no HTTP, no
//! `palisade` binary). One test binary for the crate (issue #14.5); each file is a module.

mod audit;
mod isolation;
mod request_crossing;
mod shared_pre;
mod swap;
mod warm_pool;
mod wasi;
