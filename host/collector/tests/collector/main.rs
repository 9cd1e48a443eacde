//! The collector's integration tests, one binary (`cargo test --test collector`): the
//! collector and shipper against a real PostgreSQL ([`api`]), gateways and the collector
//! killed mid-stream ([`kill`]), and the shipper's status and backlog bound through real
//! gateways ([`backlog`]).

mod api;
mod backlog;
mod kill;
mod support;
