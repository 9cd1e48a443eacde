//! Times in the trust chain: whole seconds since the Unix epoch (UTC), shown as RFC 3339.
//!
//! Delegations carry `not_before` and `not_after` as integers so that their signed encoding has
//! one form. The clock and the grammars are palisade-types', shared with every other crate.

pub use palisade_types::{format_rfc3339, now_unix, parse_duration, parse_timestamp, TimeError};
