//! TLS where Palisade is the client: the upstream CSE, the group-authentication server. The
//! builder and the connector live in `palisade-tls`, below every crate that opens a link
//! (this one, the collector's shipper, the CLI, OCI), so that all links are made by the
//! same code with the same defaults; this module names them for the gateway's own modules.

pub use palisade_tls::*;
