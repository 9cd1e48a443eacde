//! The things every Palisade crate needs one of, so their rules cannot drift apart (issue #14.3):
//! the name rule ([`validate_name`]), the plugin kinds and host capabilities registry and
//! sandbox share ([`PluginKind`], [`Capability`]), the wall clock ([`now_unix`]) and the reading and writing
//! of durations and timestamps ([`parse_duration`], [`parse_timestamp`], [`format_rfc3339`]),
//! and how an error and its causes are printed ([`Chain`]).
#![deny(missing_docs)]

mod error;
mod name;
mod time;
mod vocabulary;

pub use error::Chain;
pub use name::{validate_name, NameError, MAX_NAME_LEN};
pub use time::{
    format_rfc3339, now_unix, now_unix_ms, parse_duration, parse_timestamp, unix_from_civil,
    TimeError,
};
pub use vocabulary::{Capability, PluginKind, UnknownName};
