//! Memory: the resident size of a gateway with many apps, each its own sandbox.
//!
//! The data dir is primed by a first (cold) start, which is measured too; the measured
//! gateway is the second start on it, as after any restart: artifacts precompiled, keys
//! present. `VmRSS` (resident now), `VmHWM` (peak resident), `RssAnon` and `RssFile` are read
//! from `/proc/<pid>/status` (a) once it serves and (b) after one permitted decision per app,
//! made one after another on one keep-alive connection, so that every app then holds a live
//! warm instance of its plugin.

use std::path::Path;
use std::time::Instant;

use anyhow::bail;
use serde::Serialize;

use super::config;
use super::process::{Client, Gateway, Memory, Scratch};
use super::report::{format_mib, format_ms, millis, Table, Target};

/// The targets for the resident size after one decision per app, in KiB: issue #6's for
/// 1,000 apps, issue #18's for 10,000.
fn target_kib(apps: usize) -> u64 {
    if apps > 1000 {
        512 << 10
    } else {
        256 << 10
    }
}

/// Above this many apps the in-process comparison skips the copy-per-app install: it would
/// hold one loaded module (~0.6 MiB) per app, gigabytes at 10,000, to show a cost the gateway
/// no longer pays.
const MAX_APPS_PER_APP_MODULE: usize = 1000;

#[derive(Debug, Serialize)]
pub struct MemoryResult {
    pub apps: usize,
    /// The priming start: spawn to listening, and its memory once listening.
    pub cold_listening_ms: f64,
    pub cold_after_boot: Memory,
    /// The measured start.
    pub listening_ms: f64,
    pub after_boot: Memory,
    pub after_decisions: Memory,
    /// Time for the one-decision-per-app pass (each app's first call instantiates).
    pub decisions_ms: f64,
    /// In this process: resident growth from installing the apps.
    pub in_process: InProcess,
}

/// Where the resident memory goes, measured in this process (the `palisade` library, same
/// engine settings, a policy per app) as growth of this process's own `VmRSS`.
#[derive(Debug, Serialize)]
pub struct InProcess {
    /// The apps installed from one compiled module shared by all.
    pub shared_module_kib: u64,
    /// For comparison, the apps installed with a compiled copy of the module each (loaded
    /// from the artifact cache), as the gateway's setup did before it shared modules; not
    /// measured above [`MAX_APPS_PER_APP_MODULE`] apps.
    pub module_per_app_kib: Option<u64>,
}

pub fn run(palisade: &Path, apps: usize) -> anyhow::Result<MemoryResult> {
    let scratch = Scratch::new()?;
    let config = config::write(scratch.path(), apps, false)?;
    let data = scratch.path().join("data");

    eprintln!("memory: priming start ({apps} apps, empty data dir)");
    let cold = Gateway::start(palisade, &config, &data)?;
    let cold_listening_ms = millis(cold.listening - cold.spawned);
    // Serving, not just listening: `serve` installs its SIGTERM handler only after it prints
    // its address, and `stop` below must find it installed.
    Client::connect(cold.addr)?.get("/health")?;
    let cold_after_boot = Memory::of(cold.pid())?;
    cold.stop()?;

    eprintln!("memory: measured start (cached)");
    let gateway = Gateway::start(palisade, &config, &data)?;
    let listening_ms = millis(gateway.listening - gateway.spawned);
    let after_boot = Memory::of(gateway.pid())?;
    eprintln!("memory: one decision per app");
    let mut client = Client::connect(gateway.addr)?;
    let started = Instant::now();
    for index in 0..apps {
        let answer = client.post_json("/v1/decide", &config::permitted_request(index))?;
        let body = answer.json()?;
        if answer.status != 200 || body["decision"] != "permit" {
            bail!("app {index}: not a permit ({}): {body}", answer.status);
        }
    }
    let decisions_ms = millis(started.elapsed());
    let after_decisions = Memory::of(gateway.pid())?;
    gateway.stop()?;
    eprintln!("memory: in-process breakdown");
    let in_process = in_process(apps, &scratch.path().join("engine-cache"))?;
    Ok(MemoryResult {
        in_process,
        apps,
        cold_listening_ms,
        cold_after_boot,
        listening_ms,
        after_boot,
        after_decisions,
        decisions_ms,
    })
}

fn in_process(apps: usize, cache: &Path) -> anyhow::Result<InProcess> {
    use palisade_core::{AppSpec, Engine, EngineConfig, PluginSetup, Runtime};
    // One buffer for every app, as `serve` reads each plugin reference once.
    let acp: std::sync::Arc<[u8]> = std::sync::Arc::from(palisade_artifacts::ACP);
    let engine = Engine::new(EngineConfig::default().cache_dir(Some(cache.to_path_buf())))?;
    let mut shared = palisade_core::SharedModules::default();
    shared.get_or_compile(&engine, &acp)?;
    let spec = |index: usize| {
        let policy = format!(
            r#"{{"policies":[{{"id":"p{index}","pv":{{"acr":[{{"acor":["CAE1"],"acop":2}}]}}}}]}}"#
        );
        AppSpec::new(config::app_name(index)).plugin(PluginSetup::new("acp", policy), acp.clone())
    };
    let rss = || Memory::of(std::process::id()).map(|memory| memory.vm_rss_kib);
    // The smaller first, so that memory freed by the other cannot hide in its growth.
    let before = rss()?;
    let runtime = Runtime::new(engine.clone())?;
    for index in 0..apps {
        runtime.install_compiled(spec(index), &shared)?;
    }
    let shared_module_kib = rss()?.saturating_sub(before);
    drop(runtime);
    let mut module_per_app_kib = None;
    if apps <= MAX_APPS_PER_APP_MODULE {
        let before = rss()?;
        let runtime = Runtime::new(engine)?;
        for index in 0..apps {
            runtime.install(spec(index))?;
        }
        module_per_app_kib = Some(rss()?.saturating_sub(before));
        drop(runtime);
    }
    Ok(InProcess {
        shared_module_kib,
        module_per_app_kib,
    })
}

impl MemoryResult {
    pub fn table(&self) -> Table {
        let mut table = Table::new(
            format!(
                "Memory: {} apps (same acp module, a sandbox and a policy each), /proc/<pid>/status",
                self.apps
            ),
            &["when", "VmRSS", "VmHWM", "RssAnon", "RssFile", "per app (RSS)"],
        );
        let per_app = |kib: u64| format!("{:.0} KiB", kib as f64 / self.apps.max(1) as f64);
        for (label, memory) in [
            ("first start (cold), serving", &self.cold_after_boot),
            ("restart (cached), serving", &self.after_boot),
            ("after 1 decision per app", &self.after_decisions),
        ] {
            table.row(vec![
                label.into(),
                format_mib(memory.vm_rss_kib),
                format_mib(memory.vm_hwm_kib),
                format_mib(memory.rss_anon_kib),
                format_mib(memory.rss_file_kib),
                per_app(memory.vm_rss_kib),
            ]);
        }
        table.note(format!(
            "Setup took {} cold and {} cached; the {} first decisions (one instantiation each) {}. VmSize (address space, pool reservation included): {:.1} TiB.",
            format_ms(self.cold_listening_ms),
            format_ms(self.listening_ms),
            self.apps,
            format_ms(self.decisions_ms),
            self.after_decisions.vm_size_kib as f64 / (1u64 << 30) as f64,
        ));
        table.note(match self.in_process.module_per_app_kib {
            Some(per_app) => format!(
                "In process, installing the {} apps grows RSS by {} with a compiled copy of acp per app, and by {} from one shared compiled module (what setup does).",
                self.apps,
                format_mib(per_app),
                format_mib(self.in_process.shared_module_kib),
            ),
            None => format!(
                "In process, installing the {} apps from one shared compiled module (what setup does) grows RSS by {}.",
                self.apps,
                format_mib(self.in_process.shared_module_kib),
            ),
        });
        table
    }

    pub fn targets(&self) -> Vec<Target> {
        let limit = target_kib(self.apps);
        let target = |name: &str, memory: &Memory| {
            Target::new(
                "memory",
                format!("VmRSS {name} ({} apps)", self.apps),
                format!("<= {}", format_mib(limit)),
                format_mib(memory.vm_rss_kib),
                memory.vm_rss_kib <= limit,
            )
        };
        vec![
            target("after boot", &self.after_boot),
            target("after 1 decision/app", &self.after_decisions),
        ]
    }
}
