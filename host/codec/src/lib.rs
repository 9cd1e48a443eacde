//! Palisade's one bounded binary codec: deterministic CBOR (RFC 8949 §4.2), written by
//! [`Writer`] and read back by [`Reader`] in exactly that form and no other.
//!
//! Every binary format Palisade defines is built on this crate: the group-authentication
//! messages (palisade-group, `docs/group-auth-protocol.md`) and the provisioning bundles
//! (palisade-provision). Both sign or digest their encodings, so a value must have one
//! encoding only; both read input from the network, so nothing may be allocated from a count
//! the input merely claims (SER-001).
//!
//! - The [`Writer`] emits the shortest integer and length headers and definite lengths only;
//!   maps with text keys are written in the canonical key order ([`canonical_order`]). Its
//!   buffer is wiped whenever it grows and when it is dropped, since formats built on it carry
//!   secrets (bundle device keys and application secrets).
//! - The [`Reader`] borrows from the input and refuses, with a [`CodecError`] naming the
//!   field: a longer header than needed, an indefinite length, a map key duplicated or out of
//!   order, any other item than the one expected, and a count above its cap or above what the
//!   remaining bytes could hold (checked before the caller allocates anything).
//!   [`Reader::end`] refuses trailing bytes.
#![deny(missing_docs)]

mod error;
mod read;
mod write;

pub use error::CodecError;
pub use read::{KeyOrder, Reader};
pub use write::{canonical_order, Writer};

#[cfg(test)]
mod tests;
