//! Load-time attacks (issue #12.1): modules that hurt the gateway before they ever run.
//! Compile bombs (components nested 10k/20k/100k deep, a function with ~49k live locals,
//! 100k functions), non-components, start functions and pool-limit violations are refused
//! before anything compiles them, naming the limit and the value found; a module within those
//! bounds that still costs too much to compile is stopped by the compile helper's CPU, memory
//! and wall-clock limits. Shown on the library, through `palisade eval`, and through a real
//! `palisade serve` whose admin API receives the bombs signed by a delegated publisher (the
//! real attack), with the gateway's resident memory back near its baseline afterwards.

use crate::support::admin as common;
use crate::support::server;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use palisade_core::{CompileLimits, Compiler, ModuleLimits};
use palisade_core::{Engine, EngineConfig, EngineError};
use palisade_registry::ModuleKind;
use wasm_encoder::{
    CodeSection, Component, Encode, ExportKind, ExportSection, Function, FunctionSection,
    InstanceSection, MemorySection, MemoryType, Module, ModuleArg, ModuleSection, RefType,
    StartSection, TableSection, TableType, TypeSection, ValType,
};

// ---------------------------------------------------------------------------- the bombs

const COMPONENT_HEADER: [u8; 8] = *b"\0asm\x0d\x00\x01\x00";
const COMPONENT_SECTION: u8 = 4;

fn leb_len(value: u64) -> u64 {
    let mut out = Vec::new();
    value.encode(&mut out);
    out.len() as u64
}

/// Empty components nested `depth` deep (the outer one counts), written outside-in: wrapping
/// level by level would copy the whole file once per level.
fn nested_components(depth: usize) -> Vec<u8> {
    // sizes[i]: the size of the component at nesting level i (0 = outermost).
    let mut sizes = vec![0u64; depth];
    sizes[depth - 1] = COMPONENT_HEADER.len() as u64;
    for level in (0..depth - 1).rev() {
        let inner = sizes[level + 1];
        sizes[level] = COMPONENT_HEADER.len() as u64 + 1 + leb_len(inner) + inner;
    }
    let mut out = Vec::with_capacity(sizes[0] as usize);
    for level in 0..depth {
        out.extend_from_slice(&COMPONENT_HEADER);
        if level + 1 < depth {
            out.push(COMPONENT_SECTION);
            sizes[level + 1].encode(&mut out);
        }
    }
    assert_eq!(out.len() as u64, sizes[0]);
    out
}

/// A component holding `module`, instantiated `instances` times.
fn component_with(module: &Module, instances: u32) -> Vec<u8> {
    let mut component = Component::new();
    component.section(&ModuleSection(module));
    let mut section = InstanceSection::new();
    for _ in 0..instances {
        section.instantiate(0, std::iter::empty::<(&str, ModuleArg)>());
    }
    if instances > 0 {
        component.section(&section);
    }
    component.finish()
}

/// A core module of `count` small functions, each returning a different constant.
fn many_functions(count: u32) -> Module {
    let mut module = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([], [ValType::I32]);
    module.section(&types);
    let mut functions = FunctionSection::new();
    let mut code = CodeSection::new();
    for index in 0..count {
        functions.function(0);
        let mut body = Function::new([]);
        body.instructions().i32_const(index as i32).end();
        code.function(&body);
    }
    module.section(&functions);
    module.section(&code);
    module
}

/// A core module with one function of `locals` i32 locals, all set first and summed after,
/// so every one is live across the whole function.
fn live_locals(locals: u32) -> Module {
    let mut module = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([], [ValType::I32]);
    module.section(&types);
    let mut functions = FunctionSection::new();
    functions.function(0);
    module.section(&functions);
    let mut body = Function::new([(locals, ValType::I32)]);
    let mut sink = body.instructions();
    for index in 0..locals {
        sink.i32_const(index as i32).local_set(index);
    }
    sink.i32_const(0);
    for index in 0..locals {
        sink.local_get(index).i32_add();
    }
    sink.end();
    let mut code = CodeSection::new();
    code.function(&body);
    module.section(&code);
    module
}

fn memories(count: u32) -> Module {
    let mut module = Module::new();
    let mut section = MemorySection::new();
    for _ in 0..count {
        section.memory(MemoryType {
            minimum: 1,
            maximum: Some(1),
            memory64: false,
            shared: false,
            page_size_log2: None,
        });
    }
    module.section(&section);
    module
}

fn tables(count: u32) -> Module {
    let mut module = Module::new();
    let mut section = TableSection::new();
    for _ in 0..count {
        section.table(TableType {
            element_type: RefType::FUNCREF,
            table64: false,
            minimum: 1,
            maximum: Some(1),
            shared: false,
        });
    }
    module.section(&section);
    module
}

/// A core module whose start function would run at instantiation.
fn start_function() -> Module {
    let mut types = TypeSection::new();
    types.ty().function([], []);
    let mut module = Module::new();
    module.section(&types);
    let mut functions = FunctionSection::new();
    functions.function(0);
    module.section(&functions);
    let mut exports = ExportSection::new();
    exports.export("run", ExportKind::Func, 0);
    module.section(&exports);
    module.section(&StartSection { function_index: 0 });
    let mut code = CodeSection::new();
    let mut body = Function::new([]);
    body.instructions().end();
    code.function(&body);
    module.section(&code);
    module
}

/// The five bombs of issue #12.1 with the limit each must be refused by and the value found.
fn bombs() -> Vec<(&'static str, Vec<u8>, &'static str, String)> {
    vec![
        (
            "nested 10k",
            nested_components(10_000),
            "max_nesting_depth",
            "the module has 17".into(),
        ),
        (
            "nested 20k",
            nested_components(20_000),
            "max_nesting_depth",
            "the module has 17".into(),
        ),
        (
            "nested 100k",
            nested_components(100_000),
            "max_nesting_depth",
            "the module has 17".into(),
        ),
        (
            "49k live locals",
            component_with(&live_locals(49_000), 0),
            "max_locals_per_function",
            "the module has 49000".into(),
        ),
        (
            "100k functions",
            component_with(&many_functions(100_000), 0),
            "max_functions",
            "the module has 100000".into(),
        ),
    ]
}

// ------------------------------------------------------------------------------ helpers

fn helper() -> Compiler {
    Compiler::Helper(PathBuf::from(env!("CARGO_BIN_EXE_palisade")))
}

fn engine(config: EngineConfig) -> Engine {
    Engine::new(config.pool_instances(8)).expect("engine")
}

fn helper_engine(limits: CompileLimits, module_limits: ModuleLimits) -> Engine {
    engine(
        EngineConfig::default()
            .compiler(helper())
            .compile_limits(limits)
            .module_limits(module_limits),
    )
}

fn refusal(engine: &Engine, bytes: &[u8]) -> String {
    match engine.compile(bytes) {
        Ok(_) => panic!("the module must be refused"),
        Err(error) => palisade_types::Chain(&error).to_string(),
    }
}

fn assert_names(message: &str, texts: &[&str]) {
    for text in texts {
        assert!(
            message.contains(text),
            "{message:?} should contain {text:?}"
        );
    }
}

// ------------------------------------------------------------- refused before compiling

#[test]
fn every_compile_bomb_is_refused_before_compiling_naming_its_limit() {
    // In-process compiler: the refusal must come before the compiler is ever reached.
    let engine = engine(EngineConfig::default().compiler(Compiler::InProcess));
    for (name, bytes, limit, found) in bombs() {
        let error = engine.compile(&bytes).err().expect(name);
        assert!(matches!(error, EngineError::Refused(_)), "{name}: {error}");
        assert_names(&palisade_types::Chain(&error).to_string(), &[limit, &found]);
    }
}

#[test]
fn limits_are_configurable_and_a_module_at_a_limit_is_accepted() {
    let limits = ModuleLimits {
        max_functions: 1_000,
        max_locals_per_function: 100,
        max_nesting_depth: 3,
        ..ModuleLimits::default()
    };
    let engine = engine(
        EngineConfig::default()
            .compiler(Compiler::InProcess)
            .module_limits(limits),
    );
    engine
        .compile(&component_with(&many_functions(1_000), 1))
        .expect("1,000 functions is at the limit");
    assert_names(
        &refusal(&engine, &component_with(&many_functions(1_001), 1)),
        &["max_functions", "1001", "is 1000"],
    );
    engine
        .compile(&component_with(&live_locals(100), 1))
        .expect("100 locals is at the limit");
    assert_names(
        &refusal(&engine, &component_with(&live_locals(101), 1)),
        &["max_locals_per_function", "101"],
    );
    engine
        .compile(&nested_components(3))
        .expect("3 deep is at the limit");
    assert_names(
        &refusal(&engine, &nested_components(4)),
        &["max_nesting_depth", "has 4", "is 3"],
    );
}

#[test]
fn non_components_are_refused_with_a_clear_message() {
    let engine = engine(EngineConfig::default().compiler(helper()));
    let core = many_functions(3).finish();
    assert_names(
        &refusal(&engine, &core),
        &[
            "core WebAssembly module, not a component",
            "wasm-tools component new",
        ],
    );
    assert_names(
        &refusal(&engine, b"#!/bin/sh\necho not wasm\n"),
        &["not a WebAssembly component", "magic number"],
    );
    assert_names(&refusal(&engine, b""), &["nor WebAssembly at all"]);
    let mut truncated = component_with(&many_functions(10), 1);
    truncated.truncate(truncated.len() - 5);
    assert_names(&refusal(&engine, &truncated), &["malformed at byte"]);
}

#[test]
fn start_functions_are_refused_unless_allowed() {
    let bytes = component_with(&start_function(), 1);
    let strict = engine(EngineConfig::default().compiler(helper()));
    assert_names(
        &refusal(&strict, &bytes),
        &[
            "core module declares a start function",
            "allow_start_functions",
        ],
    );
    let lenient = engine(
        EngineConfig::default()
            .compiler(helper())
            .module_limits(ModuleLimits {
                allow_start_functions: true,
                ..ModuleLimits::default()
            }),
    );
    lenient.compile(&bytes).expect("allowed, it compiles");
}

#[test]
fn modules_the_instance_pool_cannot_hold_are_refused_at_load() {
    let engine = engine(EngineConfig::default().compiler(helper()));
    let limits = ModuleLimits::default();
    let cases = [
        (
            "two memories in one module",
            component_with(&memories(2), 1),
            "max_memories_per_module",
        ),
        (
            "two tables in one module",
            component_with(&tables(2), 1),
            "max_tables_per_module",
        ),
        (
            "one more core instance than the pool holds",
            component_with(&many_functions(1), limits.max_core_instances + 1),
            "max_core_instances",
        ),
    ];
    for (name, bytes, limit) in cases {
        let message = refusal(&engine, &bytes);
        assert!(message.contains(limit), "{name}: {message}");
    }
    // More memories in the whole component than the pool gives one component.
    let mut component = Component::new();
    for _ in 0..=limits.max_memories {
        component.section(&ModuleSection(&memories(1)));
    }
    assert_names(
        &refusal(&engine, &component.finish()),
        &["max_memories", "linear memories: the module has 5", "is 4"],
    );
    // At the pool's limits, the module compiles.
    engine
        .compile(&component_with(
            &many_functions(1),
            limits.max_core_instances,
        ))
        .expect("as many core instances as the pool holds");
    engine
        .compile(&component_with(&memories(1), 1))
        .expect("one memory");
}

// ------------------------------------------------------------------ the compile helper

#[test]
fn a_plugin_compiled_by_the_helper_runs_in_the_pooling_engine() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(
        EngineConfig::default()
            .compiler(helper())
            .cache_dir(Some(dir.path().to_path_buf())),
    );
    assert_eq!(engine.allocation(), palisade_core::Allocation::Pooling);
    let runtime = palisade_core::Runtime::new(engine.clone()).unwrap();
    let policy = r#"{"policies":[{"id":"p","pv":{"acr":[{"acor":["all"],"acop":2}]}}]}"#;
    runtime
        .install(palisade_core::AppSpec::new("a").plugin(
            palisade_core::PluginSetup::new("acp", policy),
            palisade_artifacts::ACP,
        ))
        .expect("the helper's artifact loads");
    let mut request =
        palisade_core::AccessRequest::new("a", "CAE1", palisade_core::Operation::Retrieve, "/x");
    request.request_time = Some(1_795_860_900);
    assert!(runtime.is_authorized(&request).is_permit());
    // The artifact went into the MAC-checked cache: a second engine loads it from there.
    let again = Engine::new(
        EngineConfig::default()
            .pool_instances(8)
            .compiler(Compiler::Helper(PathBuf::from(
                "/nonexistent/compile-helper",
            )))
            .cache_dir(Some(dir.path().to_path_buf())),
    )
    .unwrap();
    again
        .compile(palisade_artifacts::ACP)
        .expect("from the cache, without running the (missing) helper");
    assert_names(
        &refusal(&again, &component_with(&many_functions(2), 1)),
        &[
            "cannot run the compile helper",
            "/nonexistent/compile-helper",
        ],
    );
}

/// A module within the structural limits whose compile is still heavy: 100k functions
/// (~590 MB and ~5 s of CPU to compile) with `max_functions` raised for the purpose.
fn heavy_but_within_limits() -> (Vec<u8>, ModuleLimits) {
    let limits = ModuleLimits {
        max_functions: 200_000,
        ..ModuleLimits::default()
    };
    (component_with(&many_functions(100_000), 1), limits)
}

#[test]
fn the_compile_helper_stops_at_its_memory_limit() {
    let (bytes, module_limits) = heavy_but_within_limits();
    let engine = helper_engine(
        CompileLimits {
            memory_bytes: 192 << 20,
            ..CompileLimits::default()
        },
        module_limits,
    );
    assert_names(
        &refusal(&engine, &bytes),
        &["exceeded its memory limit of 192 MiB", "memory_mib"],
    );
}

#[test]
fn the_compile_helper_stops_at_its_cpu_time_limit() {
    let (bytes, module_limits) = heavy_but_within_limits();
    let engine = helper_engine(
        CompileLimits {
            cpu_time: Duration::from_secs(1),
            ..CompileLimits::default()
        },
        module_limits,
    );
    assert_names(
        &refusal(&engine, &bytes),
        &["exceeded its CPU-time limit of 1 s", "cpu_s"],
    );
}

#[test]
fn the_compile_helper_is_killed_at_its_wall_clock_limit() {
    // A helper that never answers and uses no CPU (stuck, or starved): a script that ignores
    // its arguments and sleeps.
    let script = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(script.path(), "#!/bin/sh\nexec sleep 30\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(script.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let script = script.into_temp_path();
    let engine = engine(
        EngineConfig::default()
            .compiler(Compiler::Helper(script.to_path_buf()))
            .compile_limits(CompileLimits {
                wall_time: Duration::from_secs(1),
                ..CompileLimits::default()
            }),
    );
    assert_names(
        &refusal(&engine, &component_with(&many_functions(2), 1)),
        &["exceeded its wall-clock limit of 1 s", "killed"],
    );
}

// --------------------------------------------------------------------- through the CLI

#[test]
fn palisade_eval_refuses_every_bomb_naming_its_limit() {
    let dir = tempfile::tempdir().unwrap();
    let request = dir.path().join("request.json");
    std::fs::write(
        &request,
        r#"{"originator":"CAE1","operation":"retrieve","target":"/x"}"#,
    )
    .unwrap();
    let mut cases = bombs();
    cases.push((
        "core module",
        many_functions(1).finish(),
        "not a component",
        "core WebAssembly module".into(),
    ));
    for (name, bytes, limit, found) in cases {
        let plugin = dir.path().join("bomb.wasm");
        std::fs::write(&plugin, &bytes).unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_palisade"))
            .args(["eval", "--plugin"])
            .arg(&plugin)
            .arg("--request")
            .arg(&request)
            .output()
            .expect("running palisade eval");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{name}: {stderr}");
        assert_names(&stderr, &[limit, &found, "cannot compile plugin"]);
    }
}

// ------------------------------------------------------------ through a live gateway

/// A gateway of `admin_common` with `extra` appended to its config.
fn start_gateway(keys: &common::Keys, extra: &str) -> server::Gateway {
    use palisade_registry::{encode_private_key, encode_public_key};
    let config = format!("{}\n{extra}", common::config_text(3600, 4 << 20));
    let root = encode_public_key(&keys.root.verifying_key());
    let admin = encode_public_key(&keys.admin.verifying_key());
    let gateway = server::Gateway::start(&config, &[("root.pub", &root), ("admin.pub", &admin)]);
    let key_path = gateway.dir.path().join("admin.key");
    std::fs::write(&key_path, encode_private_key(&keys.admin).as_bytes()).unwrap();
    gateway
}

/// How far above its baseline the gateway's resident memory may be after the bombs. Each
/// bomb's bytes pass through the process (at most 1.2 MB, plus the HTTP and JSON buffers and
/// allocator slack); before the fix the first bomb alone took it from 21 MB to 2 GB.
const RSS_BOUND_KIB: u64 = 8 << 10;

fn push(
    gateway: &server::Gateway,
    keys: &common::Keys,
    version: &str,
    bytes: &[u8],
) -> server::Response {
    let signed = keys.module(bytes, "lights", "policy", ModuleKind::Authorizer, version);
    common::admin(
        gateway,
        &keys.admin,
        "PUT",
        "/admin/v1/apps/lights/plugins/policy?activate=true",
        &signed,
    )
}

#[test]
fn a_live_gateway_survives_signed_bombs_and_its_memory_returns_to_baseline() {
    let keys = common::Keys::new();
    let gateway = start_gateway(&keys, "");
    // Warm the paths a push takes (admin request, verification, a refusal).
    let answer = push(&gateway, &keys, "0.0.1", &nested_components(20));
    common::assert_refused(&answer, 422, "compile-failed");
    assert_eq!(common::decision(&gateway, "lights").0, "deny");
    let baseline = server::rss_kib(gateway.pid());

    for (index, (name, bytes, limit, found)) in bombs().into_iter().enumerate() {
        let answer = push(&gateway, &keys, &format!("1.0.{index}"), &bytes);
        common::assert_refused(&answer, 422, "compile-failed");
        let message = answer.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert_names(&message, &[limit, &found]);
        let rss = server::rss_kib(gateway.pid());
        eprintln!("{name}: gateway resident {rss} KiB (baseline {baseline} KiB)");
        assert!(
            rss <= baseline + RSS_BOUND_KIB,
            "{name}: resident memory {rss} KiB, baseline {baseline} KiB"
        );
    }
    // The gateway still decides, and a good module still loads.
    assert_eq!(common::decision(&gateway, "lights").0, "deny");
    let good = push(&gateway, &keys, "2.0.0", palisade_artifacts::ACP);
    assert_eq!(good.status, 201, "{}", good.text());
    assert_eq!(common::decision(&gateway, "lights").0, "permit");
    assert!(server::rss_kib(gateway.pid()) <= baseline + RSS_BOUND_KIB + (8 << 10));
}

#[test]
fn a_live_gateway_stops_a_heavy_compile_at_the_helpers_cpu_limit() {
    let keys = common::Keys::new();
    // The structural limit raised past the bomb: only the helper's limits stand in the way.
    let gateway = start_gateway(
        &keys,
        "[compile]\ncpu_s = 1\n[compile.module]\nmax_functions = 200000\n",
    );
    let answer = push(&gateway, &keys, "0.0.1", &nested_components(20));
    common::assert_refused(&answer, 422, "compile-failed");
    let baseline = server::rss_kib(gateway.pid());
    let (bytes, _) = heavy_but_within_limits();
    let answer = push(&gateway, &keys, "1.0.0", &bytes);
    common::assert_refused(&answer, 422, "compile-failed");
    let message = answer.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert_names(&message, &["CPU-time limit of 1 s", "cpu_s"]);
    let rss = server::rss_kib(gateway.pid());
    assert!(
        rss <= baseline + RSS_BOUND_KIB,
        "resident memory {rss} KiB, baseline {baseline} KiB"
    );
    assert_eq!(common::decision(&gateway, "lights").0, "deny");
}
