//! More applications than the instance pool has slots (issue #18): idle warm instances share
//! one engine-wide budget, the least recently used application gives one up when it is full,
//! and an exhausted pool gives idle instances back before an instantiation fails. Every
//! application keeps deciding correctly; none is denied because others hold instances.

use std::sync::Arc;

use palisade_core::{
    AppSpec, Effect, Engine, EngineConfig, Isolation, Operation, PluginSetup, Runtime,
    SharedModules,
};
use palisade_test_support::request;
use serde_json::json;

const POOL: u32 = 8;
const APPS: usize = 50;

/// A runtime whose pool holds `POOL` instances (`POOL` × 3/4 of them idle at most).
fn small_pool(max_idle: Option<u32>) -> Runtime {
    let engine = Engine::new(
        EngineConfig::default()
            .pool_instances(POOL)
            .max_idle_instances(max_idle),
    )
    .expect("engine");
    Runtime::new(engine).expect("runtime")
}

/// The hostile fixture's app, with a deadline a loaded debug build cannot miss.
fn hostile_app(app: &str, config: serde_json::Value, isolation: Isolation) -> AppSpec {
    let mut spec = palisade_test_support::hostile_app(app, config, isolation);
    spec.limits.deadline = std::time::Duration::from_secs(2);
    spec
}

fn name(app: usize) -> String {
    format!("app{app}")
}

fn originator(app: usize) -> String {
    format!("C{app}")
}

/// App `i` permits retrieve to its own originator `C<i>` only, with acp in warm isolation
/// (compiled once for all of them).
fn install_acp_apps(runtime: &Runtime, count: usize) {
    let mut compiled = SharedModules::default();
    compiled
        .get_or_compile(runtime.engine(), &Arc::from(palisade_artifacts::ACP))
        .expect("acp compiles");
    for app in 0..count {
        let policy = json!({"policies": [{"id": "p", "pv": {"acr": [
            {"acor": [originator(app)], "acop": 2}
        ]}}]});
        let mut spec = AppSpec::new(name(app)).plugin(
            PluginSetup::new("acp", policy.to_string()),
            palisade_artifacts::ACP,
        );
        spec.isolation = Isolation::Warm;
        // Room for a debug build on a loaded machine: only the answers count here.
        spec.limits.deadline = std::time::Duration::from_secs(2);
        runtime.install_compiled(spec, &compiled).expect("install");
    }
}

/// App `app` permits its own originator and denies its neighbour's, each decided by acp
/// itself (no plugin failure, no pool refusal).
fn decides_correctly(runtime: &Runtime, app: usize) {
    let own = runtime.is_authorized(&request(
        &name(app),
        &originator(app),
        Operation::Retrieve,
        "/x",
    ));
    assert_eq!(own.effect, Effect::Permit, "app {app}: {}", own.reason);
    let neighbour = originator((app + 1) % APPS);
    let other = runtime.is_authorized(&request(&name(app), &neighbour, Operation::Retrieve, "/x"));
    assert_eq!(other.effect, Effect::Deny, "app {app}");
    for decision in [&own, &other] {
        assert_eq!(decision.stages.len(), 1, "app {app}: {}", decision.reason);
        assert_eq!(
            decision.stages[0].failure, None,
            "app {app}: {}",
            decision.reason
        );
    }
}

#[test]
fn more_apps_than_pool_slots_all_decide_correctly_repeatedly_and_interleaved() {
    let runtime = small_pool(None);
    install_acp_apps(&runtime, APPS);
    let engine = runtime.engine().clone();
    // In order, in reverse, and strided (7 is prime to 50): every app's instance is evicted
    // and made again many times, and apps meet each other in different orders.
    let forward: Vec<usize> = (0..APPS).collect();
    let reverse: Vec<usize> = (0..APPS).rev().collect();
    let strided: Vec<usize> = (0..APPS).map(|i| i * 7 % APPS).collect();
    for order in [&forward, &reverse, &strided, &forward] {
        for &app in order {
            decides_correctly(&runtime, app);
            assert!(
                engine.idle_instances() <= (POOL as usize) * 3 / 4,
                "the idle budget holds: {}",
                engine.idle_instances()
            );
        }
    }
    assert!(
        engine.evicted_instances() > 0,
        "idle instances were given up"
    );
    // Every idle instance is some app's; removing all apps gives every one back.
    let held: usize = (0..APPS)
        .map(|app| runtime.app(&name(app)).unwrap().warm_instances())
        .sum();
    assert_eq!(held, engine.idle_instances());
    for app in 0..APPS {
        assert!(runtime.remove(&name(app)));
    }
    assert_eq!(engine.idle_instances(), 0);
}

#[test]
fn the_app_used_most_recently_keeps_its_warm_instance_while_others_churn() {
    let runtime = small_pool(None);
    install_acp_apps(&runtime, APPS);
    // The hostile fixture's `counter` counts the calls one instance served: a warm
    // instance that is kept counts up, a new one starts again at 1.
    runtime
        .install(hostile_app(
            "busy",
            json!({"attack": "counter"}),
            Isolation::Warm,
        ))
        .unwrap();
    let mut expected = 0;
    for round in 0..2 {
        for app in 0..APPS {
            decides_correctly(&runtime, app);
            let counted =
                runtime.is_authorized(&request("busy", "CAE1", Operation::Retrieve, "/x"));
            expected += 1;
            assert_eq!(
                counted.reason,
                format!("counter: {expected}"),
                "round {round}, after app {app}: the busy app's instance was evicted"
            );
        }
    }
    assert!(runtime.engine().evicted_instances() > 0);
}

#[test]
fn an_exhausted_pool_gives_idle_instances_back_instead_of_denying() {
    // Every slot may be idle: each new app's first call finds the pool full of other apps'
    // idle instances and must make room rather than be denied.
    let runtime = small_pool(Some(POOL));
    install_acp_apps(&runtime, APPS);
    let fresh = hostile_app(
        "fresh",
        json!({"attack": "well-behaved"}),
        Isolation::FreshPerRequest,
    );
    runtime.install(fresh).unwrap();
    for round in 0..2 {
        for app in 0..APPS {
            decides_correctly(&runtime, app);
            let decision =
                runtime.is_authorized(&request("fresh", "CAE1", Operation::Retrieve, "/ok"));
            assert_eq!(
                decision.effect,
                Effect::Permit,
                "round {round}, app {app}: {}",
                decision.reason
            );
        }
        // The fresh instance's slot came from an idle one, given back when it was dropped.
        let idle = runtime.engine().idle_instances();
        assert!(idle == POOL as usize - 1, "{idle}");
    }
    // Installing (a prepare check instantiates too) finds room as well.
    install_more(&runtime);
}

fn install_more(runtime: &Runtime) {
    let extra = hostile_app("late", json!({"attack": "well-behaved"}), Isolation::Warm);
    runtime.install(extra).expect("installed into a full pool");
    let decision = runtime.is_authorized(&request("late", "CAE1", Operation::Retrieve, "/ok"));
    assert_eq!(decision.effect, Effect::Permit, "{}", decision.reason);
}

#[test]
fn calls_in_flight_are_never_evicted_while_other_threads_churn_many_apps() {
    let runtime = Arc::new(small_pool(None));
    install_acp_apps(&runtime, APPS);
    runtime
        .install(hostile_app(
            "busy",
            json!({"attack": "well-behaved"}),
            Isolation::Warm,
        ))
        .unwrap();
    let churners: Vec<_> = (0..2)
        .map(|thread| {
            let runtime = runtime.clone();
            std::thread::spawn(move || {
                for round in 0..3 {
                    for app in 0..APPS {
                        decides_correctly(&runtime, (app * (thread + 1) + round) % APPS);
                    }
                }
            })
        })
        .collect();
    for call in 0..300 {
        let decision = runtime.is_authorized(&request("busy", "CAE1", Operation::Retrieve, "/ok"));
        assert_eq!(
            decision.effect,
            Effect::Permit,
            "call {call}: {}",
            decision.reason
        );
    }
    for churner in churners {
        churner.join().expect("every churned decision was right");
    }
    assert!(runtime.engine().idle_instances() <= (POOL as usize) * 3 / 4);
}
