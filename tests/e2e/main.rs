//! The end-to-end tests of the `palisade` package: everything that runs the real `palisade`
//! binary (`CARGO_BIN_EXE_palisade`: `palisade serve` on a loopback port, the CLI) or the
//! gateway's HTTP services. One test binary (issue #14.5); each file is a module, the shared
//! helpers are in `support/`.
//!
//! `.ci/run` runs the hostile modules alone first, under a tight memory limit, with the
//! filters `hostile::` and then `hostile_load::`.

mod support;

mod acp;
mod admin_api;
mod admin_crash;
mod admin_integrity;
mod admin_provision;
mod admin_swap;
mod audit_faults;
mod cli;
mod cli_kit;
mod contract;
mod group_http;
mod group_state;
mod hostile;
mod hostile_load;
mod oci_serve;
mod plugin_languages;
mod serve_audit;
mod serve_config;
mod serve_cse;
mod serve_cse_view;
mod serve_decide;
mod serve_edge_table;
mod serve_hsm;
mod serve_location;
mod serve_ops;
mod serve_originator;
mod serve_proxy;
mod serve_stack;
mod serve_tables;
mod serve_tls;
mod serve_upstream_tls;
mod tls_client;
