//! Decision logs collected centrally (issue #17, SER-016 across a fleet).
//!
//! Every gateway keeps its hash-chained, checkpoint-signed audit log on its own disk
//! (`palisade_audit`). This crate carries those logs to one place:
//!
//! - the shipper ([`Shipper`], gateway side) reads the log files as they are on disk (rotated set
//!   included) and ships them in batches over HTTPS with a client certificate. It resumes
//!   from a persisted cursor (written by temp file + rename) and from what the collector says
//!   it has, so it never ships an entry twice in the normal course and never skips one: it
//!   ships every line of the file, a dropped decision being the signed `gap` entry that the
//!   log itself wrote in its place.
//! - the collector ([`start`], `palisade-collector serve`) identifies each gateway by its
//!   client certificate, checks each batch on arrival with the gateway's own verifier
//!   ([`palisade_audit::verify_continuation`]: hashes, chain from the stored head, seq
//!   continuity, checkpoint signatures against the gateway's configured key), and stores it
//!   in PostgreSQL in one transaction: a re-sent entry is recognised and not stored twice, a
//!   batch that breaks the chain is refused whole.
//! - the store is the PostgreSQL side: schema migrations in `migrations/` applied by
//!   refinery, a deadpool pool of tokio-postgres connections, ingest and queries.
//!
//! A gateway with no collector configured is not affected: nothing here runs.

#![deny(missing_docs)]

mod config;
mod remote;
mod server;
mod shipper;
mod store;

// The public API is this list; every module is private, so an item is public only when it
// is named here (issue #14).
pub use config::{CollectorConfig, OnBacklogFull, ShipConfig};
pub use remote::{verify_stored, RemoteError, RemoteReport};
pub use server::{run, start, Collector, ServeError};
pub use shipper::{
    Cursor, Round, ShipError, ShipGuard, ShipSnapshot, ShipStatus, Shipper, SHIP_BACKLOG,
};
pub use store::StoreError;
