//! HTTP: decisions per second through the real gateway, against its own no-op endpoint.
//!
//! One gateway (10 apps, `[diagnostics] noop_endpoint = true`) is loaded by `wrk` with
//! keep-alive connections, first `POST /v1/decide` with a request the last app permits, then
//! `POST /v1/noop` with the same body: the same listener, connection handling, body limit,
//! in-flight bound and metrics, no decision. Each measured run follows a short warm-up run.
//! The ratio of the two throughputs is what deciding costs on top of the HTTP path. The
//! gateway's CPU time per request is read from `/proc/<pid>/stat` around each run (on a
//! small machine `wrk` competes with the gateway for cores; CPU time per request does not
//! depend on who won).

use std::path::Path;
use std::process::Command;

use anyhow::{anyhow, bail, Context};
use serde::Serialize;

use super::config;
use super::process::{cpu_time, run_guarded, Client, Gateway, Scratch};
use super::report::{format_us, micros, Table, Target};

/// Apps in the benchmarked gateway (the decision resolves its app by path prefix among them).
const APPS: usize = 10;
/// Issue #18's target: decide's throughput at least this share of the no-op endpoint's, same
/// gateway, same run.
const TARGET_RATIO: f64 = 0.75;

/// Load-generator settings.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Load {
    pub threads: u32,
    pub connections: u32,
    pub duration_s: u64,
    pub warmup_s: u64,
}

/// What wrk reported for one endpoint, plus the gateway's CPU time.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Endpoint {
    pub path: String,
    pub requests: u64,
    pub requests_per_s: f64,
    pub p50_us: f64,
    pub p75_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub non_2xx: u64,
    pub socket_errors: u64,
    pub gateway_cpu_us_per_request: f64,
}

#[derive(Debug, Serialize)]
pub struct HttpResult {
    pub load: Load,
    pub apps: usize,
    pub decide: Endpoint,
    pub noop: Endpoint,
    /// decide requests/s over noop requests/s.
    pub ratio: f64,
    /// Permits the gateway counted in its metrics (all runs, warm-ups included).
    pub permits_counted: u64,
    pub denies_counted: u64,
    /// How the gateway's audit records were written (all runs, warm-ups included).
    pub audit: AuditWrites,
    pub in_process: InProcess,
}

/// The audit writer's counters from the gateway's metrics after the runs: how many batches
/// the requests wrote themselves, and how often one woke the writer thread.
#[derive(Debug, Serialize)]
pub struct AuditWrites {
    pub entries: u64,
    pub inline_batches: u64,
    pub writer_wakeups: u64,
}

/// The same decision without HTTP, in this process on the same config: what the decision
/// costs by itself, to set against the gateway's CPU time per request.
#[derive(Debug, Serialize)]
pub struct InProcess {
    /// `Gateway::evaluate`: pseudonym, pipeline, metrics, audit record.
    pub evaluate_us: f64,
    /// `Runtime::is_authorized` alone (the acp plugin call) on the pseudonymous request.
    pub is_authorized_us: f64,
}

pub fn run(palisade: &Path, load: Load) -> anyhow::Result<HttpResult> {
    let wrk = which("wrk").ok_or_else(|| {
        anyhow!("wrk is not installed: `apt-get install -y wrk` (Debian/Ubuntu) and run again")
    })?;
    let scratch = Scratch::new()?;
    let config = config::write(scratch.path(), APPS, true)?;
    let request = config::permitted_request(APPS - 1).to_string();
    let script = scratch.path().join("post.lua");
    // Lua long brackets: the JSON body needs no escaping.
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.body = [[{request}]]\n"
        ),
    )?;
    eprintln!("http: starting the gateway ({APPS} apps, no-op endpoint on)");
    let gateway = Gateway::start(palisade, &config, &scratch.path().join("data"))?;
    let mut client = Client::connect(gateway.addr)?;
    let body: serde_json::Value = serde_json::from_str(&request)?;
    let decided = client.post_json("/v1/decide", &body)?.json()?;
    if decided["decision"] != "permit" {
        bail!("the benchmark request is not permitted: {decided}");
    }
    let noop = client.post_json("/v1/noop", &body)?;
    if noop.status != 200 || noop.json()?["noop"] != true {
        bail!(
            "/v1/noop is not served ({}): is {} older than the no-op endpoint?",
            noop.status,
            palisade.display()
        );
    }
    drop(client);
    let measure = |path: &str| -> anyhow::Result<Endpoint> {
        let url = format!("http://{}{path}", gateway.addr);
        eprintln!(
            "http: {path}: {} s warm-up, {} s measured",
            load.warmup_s, load.duration_s
        );
        wrk_run(&wrk, &script, &url, load, load.warmup_s.max(1))?;
        let cpu_before = cpu_time(gateway.pid())?;
        let output = wrk_run(&wrk, &script, &url, load, load.duration_s)?;
        let cpu = cpu_time(gateway.pid())?.saturating_sub(cpu_before);
        let mut endpoint =
            parse_wrk(&output).with_context(|| format!("reading wrk's output:\n{output}"))?;
        endpoint.path = path.to_string();
        endpoint.gateway_cpu_us_per_request = micros(cpu) / endpoint.requests.max(1) as f64;
        Ok(endpoint)
    };
    let decide = measure("/v1/decide")?;
    let noop = measure("/v1/noop")?;
    let metrics = Client::connect(gateway.addr)?.get("/metrics")?;
    let metrics = String::from_utf8_lossy(&metrics.body).into_owned();
    let counted = |result: &str| -> u64 {
        let prefix = format!(
            "palisade_decisions_total{{app=\"{}\",result=\"{result}\"}} ",
            config::app_name(APPS - 1)
        );
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(&prefix)?.trim().parse().ok())
            .unwrap_or(0)
    };
    let (permits_counted, denies_counted) = (counted("permit"), counted("deny"));
    let total = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0)
    };
    let audit = AuditWrites {
        entries: total("palisade_audit_entries_written_total "),
        inline_batches: total("palisade_audit_inline_batches_total "),
        writer_wakeups: total("palisade_audit_writer_wakeups_total "),
    };
    gateway.stop()?;
    eprintln!("http: the same decision in process");
    let in_process = in_process(&config, &scratch.path().join("in-process-data"))?;
    Ok(HttpResult {
        in_process,
        load,
        apps: APPS,
        ratio: decide.requests_per_s / noop.requests_per_s,
        decide,
        noop,
        permits_counted,
        denies_counted,
        audit,
    })
}

fn in_process(config_path: &Path, data: &Path) -> anyhow::Result<InProcess> {
    use palisade_core::{AccessRequest, Operation};
    const ROUNDS: u32 = 20_000;
    let config = palisade_gateway::GatewayConfig::load(config_path)?;
    let gateway = palisade_gateway::Gateway::build(&config, data)?;
    let target = config::target(APPS - 1);
    let route = gateway
        .resolve(&target)
        .ok_or_else(|| anyhow!("no app covers {target}"))?
        .clone();
    let request = AccessRequest::new(
        &route.name,
        config::ORIGINATOR,
        Operation::Retrieve,
        &target,
    );
    let mut seen = request.clone();
    if let Some(pseudonyms) = &route.pseudonyms {
        seen.originator = pseudonyms.pseudonym(config::ORIGINATOR)?;
    }
    let time = |call: &dyn Fn() -> bool| -> anyhow::Result<f64> {
        for _ in 0..ROUNDS / 10 {
            call();
        }
        let started = std::time::Instant::now();
        for _ in 0..ROUNDS {
            if !call() {
                bail!("the in-process decision is not a permit");
            }
        }
        Ok(micros(started.elapsed()) / f64::from(ROUNDS))
    };
    let evaluate_us = time(&|| {
        gateway
            .evaluate(&route, request.clone(), "decide")
            .decision
            .is_permit()
    })?;
    let is_authorized_us = time(&|| gateway.runtime.is_authorized(&seen).is_permit())?;
    Ok(InProcess {
        evaluate_us,
        is_authorized_us,
    })
}

fn wrk_run(
    wrk: &Path,
    script: &Path,
    url: &str,
    load: Load,
    seconds: u64,
) -> anyhow::Result<String> {
    let output = run_guarded(
        Command::new(wrk)
            .arg(format!("-t{}", load.threads))
            .arg(format!("-c{}", load.connections))
            .arg(format!("-d{seconds}s"))
            .arg("--latency")
            .arg("-s")
            .arg(script)
            .arg(url),
    )?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "wrk failed ({}): {text}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(text)
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|path| path.is_file())
}

/// Reads wrk's report (`--latency`): requests, Requests/sec, the latency distribution,
/// non-2xx answers and socket errors.
pub fn parse_wrk(text: &str) -> anyhow::Result<Endpoint> {
    let mut endpoint = Endpoint::default();
    let mut percentiles = 0;
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", value] => endpoint.requests_per_s = value.parse()?,
            [count, "requests", "in", ..] => endpoint.requests = count.parse()?,
            ["Non-2xx", "or", "3xx", "responses:", count] => endpoint.non_2xx = count.parse()?,
            ["Socket", "errors:", rest @ ..] => {
                // "connect 0, read 0, write 0, timeout 0"
                endpoint.socket_errors = rest
                    .iter()
                    .filter_map(|word| word.trim_end_matches(',').parse::<u64>().ok())
                    .sum();
            }
            [percent, value] if percent.ends_with('%') => {
                let us = latency_us(value)?;
                match *percent {
                    "50%" => endpoint.p50_us = us,
                    "75%" => endpoint.p75_us = us,
                    "90%" => endpoint.p90_us = us,
                    "99%" => endpoint.p99_us = us,
                    _ => continue,
                }
                percentiles += 1;
            }
            _ => {}
        }
    }
    if endpoint.requests == 0 || endpoint.requests_per_s == 0.0 || percentiles < 4 {
        bail!("no requests, Requests/sec or latency distribution found");
    }
    Ok(endpoint)
}

/// `812.00us`, `1.23ms`, `2.00s`, `1.00m` in microseconds.
fn latency_us(value: &str) -> anyhow::Result<f64> {
    let split = value
        .find(|c: char| c.is_ascii_alphabetic())
        .ok_or_else(|| anyhow!("latency {value:?} has no unit"))?;
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse()?;
    let scale = match unit {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        "h" => 3600e6,
        _ => bail!("latency {value:?} has an unknown unit"),
    };
    Ok(number * scale)
}

impl HttpResult {
    pub fn table(&self) -> Table {
        let mut table = Table::new(
            format!(
                "HTTP: wrk -t{} -c{} -d{}s --latency (keep-alive), one gateway, {} apps",
                self.load.threads, self.load.connections, self.load.duration_s, self.apps
            ),
            &[
                "endpoint",
                "requests/s",
                "p50",
                "p90",
                "p99",
                "requests",
                "errors",
                "gateway CPU/req",
            ],
        );
        for endpoint in [&self.decide, &self.noop] {
            table.row(vec![
                format!("POST {}", endpoint.path),
                format!("{:.0}", endpoint.requests_per_s),
                format_us(endpoint.p50_us),
                format_us(endpoint.p90_us),
                format_us(endpoint.p99_us),
                endpoint.requests.to_string(),
                (endpoint.non_2xx + endpoint.socket_errors).to_string(),
                format_us(endpoint.gateway_cpu_us_per_request),
            ]);
        }
        table.note(format!(
            "decide / noop = {:.0}% of the no-op throughput. The gateway counted {} permits and {} denies for the benchmarked app (warm-ups included).",
            self.ratio * 100.0,
            self.permits_counted,
            self.denies_counted
        ));
        table.note(format!(
            "Audit: {} entries written; {} batches written by the request that found the writer idle, {} writer thread wake-ups.",
            self.audit.entries, self.audit.inline_batches, self.audit.writer_wakeups
        ));
        table.note(format!(
            "The same decision in process (no HTTP): Gateway::evaluate {} (pseudonym, pipeline, metrics, audit), of which Runtime::is_authorized {}.",
            format_us(self.in_process.evaluate_us),
            format_us(self.in_process.is_authorized_us),
        ));
        table
    }

    pub fn targets(&self) -> Vec<Target> {
        let clean = [&self.decide, &self.noop]
            .iter()
            .all(|e| e.non_2xx == 0 && e.socket_errors == 0)
            && self.denies_counted == 0;
        vec![Target::new(
            "http",
            "decide / noop requests/s",
            format!(">= {:.0}%", TARGET_RATIO * 100.0),
            format!(
                "{:.0}%{}",
                self.ratio * 100.0,
                if clean { "" } else { " (with errors!)" }
            ),
            self.ratio >= TARGET_RATIO && clean,
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Running 10s test @ http://127.0.0.1:41234/v1/decide
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.02ms  312.45us  12.10ms   91.22%
    Req/Sec    15.71k     1.02k   17.20k    78.00%
  Latency Distribution
     50%  812.00us
     75%    1.10ms
     90%    1.42ms
     99%    2.00s
  156301 requests in 10.00s, 71.23MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 5
Requests/sec:  15629.87
Transfer/sec:      7.12MB
";

    #[test]
    fn wrk_reports_are_read() {
        let endpoint = parse_wrk(SAMPLE).unwrap();
        assert_eq!(endpoint.requests, 156_301);
        assert_eq!(endpoint.requests_per_s, 15_629.87);
        assert_eq!(endpoint.p50_us, 812.0);
        assert_eq!(endpoint.p75_us, 1_100.0);
        assert_eq!(endpoint.p99_us, 2_000_000.0);
        assert_eq!(endpoint.non_2xx, 5);
        assert_eq!(endpoint.socket_errors, 3);
        assert!(parse_wrk("Running 10s test\n").is_err());
    }
}
