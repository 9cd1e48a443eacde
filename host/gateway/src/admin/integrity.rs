//! Integrity checks of the stored modules (SER-013): at boot and every
//! `integrity_interval_s` seconds. A version whose bytes changed on disk is taken out of
//! service by the store (`failed-integrity`); here the runtime follows (fallback to the last
//! good version, or the plugin is removed so the app denies) and the failure is reported in
//! `/health`, the `palisade_registry_integrity_failures` count and a log line.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::Admin;
use crate::Gateway;
use palisade_registry::ModuleStore;

/// Most failures kept for `/health`.
const MAX_REPORTED: usize = 100;

/// Runs one full check and applies its fallbacks. `when` is `boot` or `periodic`.
pub(super) fn check(gateway: &Gateway, admin: &Admin, when: &str) {
    let _change = admin.changes.lock().unwrap_or_else(|p| p.into_inner());
    let report = match admin.store.integrity_check_all() {
        Ok(report) => report,
        Err(error) => {
            tracing::error!(error = %palisade_types::Chain(&error), when, "SER-013: registry integrity check could not run");
            return;
        }
    };
    let newly_failed: Vec<_> = report
        .entries
        .iter()
        .filter(|e| e.problem.is_some())
        .filter(|e| {
            // Only report a version once.
            let failures = admin.failures.lock().unwrap_or_else(|p| p.into_inner());
            !failures
                .iter()
                .any(|f| f["module"] == e.record.label() && f["sha256"] == e.record.sha256.to_hex())
        })
        .collect();
    for entry in newly_failed {
        let problem = entry
            .problem
            .as_ref()
            .map(|p| p.to_string())
            .unwrap_or_default();
        tracing::error!(module = %entry.record.label(), %problem, when,
            "SER-013: stored module failed its integrity check; taken out of service");
        admin.integrity_failures.fetch_add(1, Ordering::Relaxed);
        let mut failures = admin.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() >= MAX_REPORTED {
            failures.remove(0);
        }
        let event = serde_json::json!({
            "module": entry.record.label(),
            "sha256": entry.record.sha256.to_hex(),
            "problem": problem,
            "found": when,
            "at": palisade_core::now_unix(),
        });
        // SER-016: integrity failures go to the audit trail too.
        gateway
            .audit
            .event(palisade_audit::Kind::Integrity, event.clone());
        failures.push(event);
    }
    for fallback in &report.fallbacks {
        admin.apply_fallback(gateway, fallback);
    }
}

/// Starts the periodic check on the tokio runtime (SER-013).
pub fn spawn_periodic(gateway: Arc<Gateway>, admin: Arc<Admin>) -> tokio::task::JoinHandle<()> {
    let every = Duration::from_secs(admin.config.integrity_interval_s.max(1));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            let (gateway, admin) = (gateway.clone(), admin.clone());
            let _ = tokio::task::spawn_blocking(move || check(&gateway, &admin, "periodic")).await;
        }
    })
}
