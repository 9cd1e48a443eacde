//! Prometheus text exposition (`GET /metrics`), kept dependency-free: a handful of counter
//! and histogram families behind one mutex each, rendered on scrape.
//!
//! Families (all prefixed `palisade_`):
//! - `decisions_total{app,result}` — result `permit`, `deny` or `would-deny` (monitor mode);
//! - `decision_duration_seconds{app}` — histogram of pipeline time per decision;
//! - `plugin_failures_total{app,plugin,code}` — traps, timeouts, memory, quarantined calls...;
//! - `plugin_quarantined{app,plugin}`, `plugin_quarantines_total{app,plugin}` — from health;
//! - `plugin_quarantined_originators{app,plugin}` — originators quarantined for themselves;
//! - `rate_limited_total{key}` — `originator` or `source_ip` (SER-001);
//! - `rejected_total{reason}` — `body-too-large`, `body-timeout`, `overloaded`,
//!   `connections`, `connections-per-address`, `malformed` (SER-001), `registration` (an
//!   AE registration its app's `[app.registration]` does not allow, issue 13.6);
//! - `rate_limit_keys{key}`, `rate_limit_capacity{key}` — the rate tables' occupancy and
//!   fixed size (rendered by [`super::protect::Protection::metrics_text`]);
//! - `filter_blocked_total{app}`, `upstream_requests_total{outcome}`,
//!   `upstream_duration_seconds`, `http_requests_total{route,status}`, `in_flight`;
//! - `plugin_output_dropped_bytes_total` — stdout/stderr bytes plugins wrote past their
//!   per-call bound, dropped (SER-001);
//! - `cse_lookups_total{kind,outcome}` — the gateway's own look-ups at the CSE
//!   ([`super::cse_lookup`]): kind `type` or `group`; outcome `ok`, `cached`, or why the
//!   answer stayed unknown (`timeout`, `unreachable`, `not-found`, `refused`...).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use palisade_core::pipeline::{AppStatus, Decision, Effect};

/// Latency buckets in seconds: decisions take microseconds, upstream calls milliseconds.
const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct Counter(Mutex<BTreeMap<Vec<(&'static str, String)>, u64>>);

impl Counter {
    fn add(&self, labels: Vec<(&'static str, String)>, by: u64) {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(labels)
            .or_default() += by;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (labels, value) in self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
        {
            let _ = writeln!(out, "{name}{} {value}", render_labels(labels, None));
        }
    }
}

#[derive(Default)]
struct Histogram(Mutex<BTreeMap<Vec<(&'static str, String)>, Buckets>>);

#[derive(Default, Clone)]
struct Buckets {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&self, labels: Vec<(&'static str, String)>, seconds: f64) {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let buckets = map.entry(labels).or_default();
        for (index, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                buckets.counts[index] += 1;
            }
        }
        buckets.count += 1;
        buckets.sum += seconds;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (labels, buckets) in self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
        {
            for (index, bound) in BUCKETS.iter().enumerate() {
                let le = format!("{bound}");
                let _ = writeln!(
                    out,
                    "{name}_bucket{} {}",
                    render_labels(labels, Some(&le)),
                    buckets.counts[index]
                );
            }
            let _ = writeln!(
                out,
                "{name}_bucket{} {}",
                render_labels(labels, Some("+Inf")),
                buckets.count
            );
            let _ = writeln!(
                out,
                "{name}_sum{} {}",
                render_labels(labels, None),
                buckets.sum
            );
            let _ = writeln!(
                out,
                "{name}_count{} {}",
                render_labels(labels, None),
                buckets.count
            );
        }
    }
}

fn render_labels(labels: &[(&'static str, String)], le: Option<&str>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(key, value)| format!("{key}=\"{}\"", escape(value)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

/// An app's authenticator sandbox (see [`super::privacy`]) is reported under the app's name.
fn app_label(sandbox: &str) -> String {
    sandbox
        .strip_suffix(super::AUTHN_SUFFIX)
        .unwrap_or(sandbox)
        .to_string()
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The gateway's counters.
#[derive(Default)]
pub struct Metrics {
    decisions: Counter,
    decision_seconds: Histogram,
    plugin_failures: Counter,
    rate_limited: Counter,
    rejected: Counter,
    filter_blocked: Counter,
    upstream: Counter,
    upstream_seconds: Histogram,
    http: Counter,
    in_flight: AtomicI64,
    cse_lookups: Counter,
}

impl Metrics {
    /// Records one decision: its result, its latency and any plugin failures in it.
    pub fn decision(&self, decision: &Decision) {
        let result = match (decision.effect, decision.would_deny.is_some()) {
            (Effect::Deny, _) => "deny",
            (Effect::Permit, true) => "would-deny",
            (Effect::Permit, false) => "permit",
        };
        self.decisions.add(
            vec![("app", decision.app.clone()), ("result", result.into())],
            1,
        );
        self.decision_seconds.observe(
            vec![("app", decision.app.clone())],
            decision.timings.total_us as f64 / 1e6,
        );
        for stage in &decision.stages {
            if let Some(code) = stage.failure {
                self.plugin_failure(&decision.app, &stage.plugin.name, code);
            }
        }
    }

    /// A plugin call that gave no usable answer.
    pub fn plugin_failure(&self, app: &str, plugin: &str, code: &str) {
        self.plugin_failures.add(
            vec![
                ("app", app.into()),
                ("plugin", plugin.into()),
                ("code", code.into()),
            ],
            1,
        );
    }

    /// A request refused by a rate limit keyed by `key` (`originator`, `source_ip`).
    pub fn rate_limited(&self, key: &'static str) {
        self.rate_limited.add(vec![("key", key.into())], 1);
    }

    /// A request or connection refused to protect the gateway.
    pub fn rejected(&self, reason: &'static str) {
        self.rejected.add(vec![("reason", reason.into())], 1);
    }

    /// A response a filter withheld.
    pub fn filter_blocked(&self, app: &str) {
        self.filter_blocked.add(vec![("app", app.into())], 1);
    }

    /// One exchange with the upstream CSE: `ok`, `unreachable`, `timeout`, `too-large`.
    pub fn upstream(&self, outcome: &'static str, took: Duration) {
        self.upstream.add(vec![("outcome", outcome.into())], 1);
        self.upstream_seconds
            .observe(Vec::new(), took.as_secs_f64());
    }

    /// One HTTP answer.
    pub fn http(&self, route: &'static str, status: u16) {
        self.http.add(
            vec![("route", route.into()), ("status", status.to_string())],
            1,
        );
    }

    /// Requests being processed, for the `in_flight` gauge.
    pub fn in_flight(&self, delta: i64) {
        self.in_flight.fetch_add(delta, Ordering::Relaxed);
    }

    /// One look-up of the gateway's own at the CSE ([`super::cse_lookup`]).
    pub fn cse_lookup(&self, kind: &'static str, outcome: &'static str) {
        self.cse_lookups
            .add(vec![("kind", kind.into()), ("outcome", outcome.into())], 1);
    }

    /// The exposition text, with quarantine state read from the runtime's health.
    pub fn render(&self, status: &[AppStatus]) -> String {
        let mut out = String::new();
        self.decisions.render(
            &mut out,
            "palisade_decisions_total",
            "Decisions by application and result.",
        );
        self.decision_seconds.render(
            &mut out,
            "palisade_decision_duration_seconds",
            "Time to decide, authentication to last authorizer.",
        );
        self.plugin_failures.render(
            &mut out,
            "palisade_plugin_failures_total",
            "Plugin calls that failed (fail-closed), by failure code.",
        );
        type PluginValue = fn(&palisade_core::sandbox::PluginHealth) -> u64;
        let per_plugin: [(&str, &str, &str, PluginValue); 3] = [
            (
                "palisade_plugin_quarantined",
                "Whether a plugin is quarantined now.",
                "gauge",
                |health| u64::from(health.quarantined),
            ),
            (
                "palisade_plugin_quarantines_total",
                "Times a plugin was quarantined.",
                "counter",
                |health| health.total_quarantines,
            ),
            (
                "palisade_plugin_quarantined_originators",
                "Originators a plugin is quarantined for now (each for itself only).",
                "gauge",
                |health| health.quarantined_originators,
            ),
        ];
        for (name, help, kind, value) in per_plugin {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for app in status {
                for plugin in &app.plugins {
                    let labels = vec![
                        ("app", app_label(&app.app)),
                        ("plugin", plugin.label.name.clone()),
                    ];
                    let _ = writeln!(
                        out,
                        "{name}{} {}",
                        render_labels(&labels, None),
                        value(&plugin.health)
                    );
                }
            }
        }
        self.rate_limited.render(
            &mut out,
            "palisade_rate_limited_total",
            "Requests refused by a rate limit (SER-001).",
        );
        self.rejected.render(
            &mut out,
            "palisade_rejected_total",
            "Requests or connections refused to protect the gateway (SER-001).",
        );
        self.filter_blocked.render(
            &mut out,
            "palisade_filter_blocked_total",
            "Responses withheld by a filter plugin.",
        );
        self.upstream.render(
            &mut out,
            "palisade_upstream_requests_total",
            "Exchanges with the upstream CSE by outcome.",
        );
        self.upstream_seconds.render(
            &mut out,
            "palisade_upstream_duration_seconds",
            "Time the upstream CSE took.",
        );
        self.http.render(
            &mut out,
            "palisade_http_requests_total",
            "HTTP answers by route and status.",
        );
        self.cse_lookups.render(
            &mut out,
            "palisade_cse_lookups_total",
            "The gateway's own look-ups at the upstream CSE (target types, groups) by outcome.",
        );
        let _ = writeln!(out, "# HELP palisade_in_flight Requests being decided or proxied.\n# TYPE palisade_in_flight gauge\npalisade_in_flight {}", self.in_flight.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP palisade_plugin_output_dropped_bytes_total Bytes of stdout and stderr plugins wrote past their per-call bound, dropped.\n# TYPE palisade_plugin_output_dropped_bytes_total counter\npalisade_plugin_output_dropped_bytes_total {}", palisade_core::sandbox::plugin_output_dropped_bytes());
        out
    }
}
