//! The integration tests of palisade-group: the group authentication protocol through its
//! public API, in process (no HTTP: that is `tests/e2e/group_http.rs`). One test binary for
//! the crate (issue #14.5).

mod group_auth;
