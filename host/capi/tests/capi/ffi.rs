//! The C API called as C calls it, through raw pointers: every misuse an embedder can make
//! (NULLs, bad UTF-8, huge or unterminated inputs, freed handles, double frees, double
//! installs, made-up enum values) gets a status and a message, never a crash.

use std::ptr::{null, null_mut};

use palisade_capi::*;

use crate::support::{c, decide, install, message, new_runtime, read, SPEC};

#[test]
fn install_decide_read_free() {
    let runtime = new_runtime();
    assert_eq!(
        install(runtime, SPEC, 0),
        (PalisadeStatus::Ok, String::new())
    );

    let permit = decide(runtime, r#"{"app": "lights", "originator": "CAE1", "operation": "retrieve", "target": "/cse-in/lights/l1"}"#).unwrap();
    let mut effect = PalisadeEffect::Deny;
    assert_eq!(
        unsafe { palisade_decision_effect(permit, &mut effect) },
        PalisadeStatus::Ok
    );
    assert_eq!(effect, PalisadeEffect::Permit);
    let mut enforced = false;
    assert_eq!(
        unsafe { palisade_decision_enforced(permit, &mut enforced) },
        PalisadeStatus::Ok
    );
    assert!(enforced);
    assert_eq!(
        read(permit, palisade_decision_decided_by).as_deref(),
        Some("acp")
    );
    assert_eq!(read(permit, palisade_decision_would_deny), None);
    let json: serde_json::Value =
        serde_json::from_str(&read(permit, palisade_decision_json).unwrap()).unwrap();
    assert_eq!(json["effect"], "permit");
    assert_eq!(json["app"], "lights");
    assert_eq!(json["decided_by"]["kind"], "authorizer");
    assert_eq!(json["stages"][0]["outcome"], "permit");
    assert_eq!(
        unsafe { palisade_decision_free(permit) },
        PalisadeStatus::Ok
    );

    let deny = decide(runtime, r#"{"app": "lights", "originator": "CAE2", "operation": "retrieve", "target": "/cse-in/lights/l1"}"#).unwrap();
    unsafe { palisade_decision_effect(deny, &mut effect) };
    assert_eq!(effect, PalisadeEffect::Deny);
    assert!(!read(deny, palisade_decision_reason).unwrap().is_empty());
    unsafe { palisade_decision_free(deny) };

    // An application that is not installed is decided (denied), by nobody.
    let unknown = decide(
        runtime,
        r#"{"app": "other", "originator": "CAE1", "operation": "retrieve", "target": "/x"}"#,
    )
    .unwrap();
    unsafe { palisade_decision_effect(unknown, &mut effect) };
    assert_eq!(effect, PalisadeEffect::Deny);
    assert_eq!(
        read(unknown, palisade_decision_reason).unwrap(),
        "unknown application \"other\""
    );
    assert_eq!(read(unknown, palisade_decision_decided_by), None);
    unsafe { palisade_decision_free(unknown) };

    // Removed: denied as unknown from then on; removing again is refused.
    let mut error = null_mut();
    assert_eq!(
        unsafe { palisade_runtime_remove(runtime, c("lights").as_ptr(), &mut error) },
        PalisadeStatus::Ok
    );
    assert_eq!(
        unsafe { palisade_runtime_remove(runtime, c("lights").as_ptr(), &mut error) },
        PalisadeStatus::NotInstalled
    );
    assert_eq!(message(error), "no application \"lights\" is installed");
    assert_eq!(
        unsafe { palisade_runtime_free(runtime) },
        PalisadeStatus::Ok
    );
}

#[test]
fn monitor_mode_permits_and_says_what_enforcing_would_do() {
    let runtime = new_runtime();
    let spec = SPEC.replace(
        "name = \"lights\"\n",
        "name = \"lights\"\nmode = \"monitor\"\n",
    );
    assert_eq!(install(runtime, &spec, 0).0, PalisadeStatus::Ok);
    let decision = decide(runtime, r#"{"app": "lights", "originator": "CAE2", "operation": "delete", "target": "/cse-in/lights/l1"}"#).unwrap();
    let mut effect = PalisadeEffect::Deny;
    let mut enforced = true;
    unsafe {
        palisade_decision_effect(decision, &mut effect);
        palisade_decision_enforced(decision, &mut enforced);
    }
    assert_eq!(effect, PalisadeEffect::Permit);
    assert!(!enforced);
    assert!(read(decision, palisade_decision_would_deny).is_some());
    unsafe {
        palisade_decision_free(decision);
        palisade_runtime_free(runtime);
    }
}

#[test]
fn double_install_is_refused_and_keeps_the_first() {
    let runtime = new_runtime();
    assert_eq!(install(runtime, SPEC, 0).0, PalisadeStatus::Ok);
    let json_spec =
        r#"{"name": "lights", "plugin": [{"plugin": "acp", "config": {"policies": []}}]}"#;
    let (status, text) = install(runtime, json_spec, 1);
    assert_eq!(status, PalisadeStatus::AlreadyInstalled);
    assert!(
        text.contains("application \"lights\" is installed already"),
        "{text}"
    );
    // The first installation still decides.
    let decision = decide(runtime, r#"{"app": "lights", "originator": "CAE1", "operation": "retrieve", "target": "/cse-in/lights/l1"}"#).unwrap();
    let mut effect = PalisadeEffect::Deny;
    unsafe { palisade_decision_effect(decision, &mut effect) };
    assert_eq!(effect, PalisadeEffect::Permit);
    unsafe {
        palisade_decision_free(decision);
        palisade_runtime_free(runtime);
    }
}

#[test]
fn bad_specs_name_their_problem() {
    let runtime = new_runtime();
    let cases: [(&str, u32, PalisadeStatus, &str); 6] = [
        (
            "name = \"a\"\n[[plugin]]\nplugin = \"acp\"\ncapabilities = [\"teleport\"]\n",
            0,
            PalisadeStatus::InvalidSpec,
            "line 4: plugin[0].capabilities[0]: unknown variant `teleport`",
        ),
        (
            "name = \"../etc\"\n[[plugin]]\nplugin = \"acp\"\n",
            0,
            PalisadeStatus::InvalidSpec,
            "name: application name \"../etc\" is not allowed",
        ),
        // A filter alone would deny every request.
        (
            "name = \"f\"\n[[plugin]]\nplugin = \"geo-privacy\"\n",
            0,
            PalisadeStatus::InvalidSpec,
            "has no authorizer",
        ),
        // The plugin refuses its configuration at load.
        (
            "name = \"b\"\n[[plugin]]\nplugin = \"acp\"\n[plugin.config]\npolicies = 3\n",
            0,
            PalisadeStatus::InstallFailed,
            "plugin \"acp\" of application \"b\"",
        ),
        (
            "{\"name\": \"a\"",
            1,
            PalisadeStatus::InvalidSpec,
            "EOF while parsing",
        ),
        (
            "name = \"a\"\n[[plugin]]\nplugin = \"acp\"\n",
            7,
            PalisadeStatus::InvalidArgument,
            "format 7 is neither",
        ),
    ];
    for (spec, format, expected, text) in cases {
        let (status, message) = install(runtime, spec, format);
        assert_eq!(status, expected, "{spec:?}: {message}");
        assert!(message.contains(text), "{spec:?}: {message}");
    }
    // None of them left an application behind.
    for app in ["a", "f", "b"] {
        let decision = decide(runtime, &format!(r#"{{"app": "{app}", "originator": "CAE1", "operation": "retrieve", "target": "/x"}}"#)).unwrap();
        assert_eq!(
            read(decision, palisade_decision_reason).unwrap(),
            format!("unknown application {app:?}")
        );
        unsafe { palisade_decision_free(decision) };
    }
    unsafe { palisade_runtime_free(runtime) };
}

#[test]
fn bad_requests_name_their_problem() {
    let runtime = new_runtime();
    assert_eq!(install(runtime, SPEC, 0).0, PalisadeStatus::Ok);
    let cases = [
        (
            r#"{"app": "lights", "originator": "CAE1", "operation": "fly", "target": "/x"}"#,
            "unknown variant `fly`",
        ),
        (
            r#"{"app": "lights", "operation": "retrieve", "target": "/x"}"#,
            "missing field `originator`",
        ),
        (
            r#"{"app": "lights", "originator": "", "operation": "retrieve", "target": "/x"}"#,
            "originator is empty",
        ),
        (
            r#"{"app": "lights", "originator": "CAE1", "operation": "retrieve", "target": "/x", "admin": true}"#,
            "unknown field `admin`",
        ),
        // serde reads a struct from an array of its fields too; only the object is a request.
        (
            r#"["lights", "CAE1", "retrieve", "/x", null, null, null, false, [], null, null, null, null, []]"#,
            "request: expected a JSON object",
        ),
        ("", "request: expected a JSON object"),
    ];
    for (request, text) in cases {
        let (status, message) = decide(runtime, request).unwrap_err();
        assert_eq!(status, PalisadeStatus::InvalidRequest, "{request}");
        assert!(message.contains(text), "{request}: {message}");
    }
    unsafe { palisade_runtime_free(runtime) };
}

#[test]
fn null_pointers_bad_utf8_and_huge_inputs_are_refused() {
    let runtime = new_runtime();
    let mut error = null_mut();
    let mut decision = null_mut();
    unsafe {
        assert_eq!(
            palisade_runtime_new(null(), 0, null_mut(), &mut error),
            PalisadeStatus::NullPointer
        );
        assert_eq!(message(error), "runtime is NULL");
        assert_eq!(
            palisade_runtime_install(runtime, null(), 0, &mut error),
            PalisadeStatus::NullPointer
        );
        assert_eq!(message(error), "spec is NULL");
        assert_eq!(
            palisade_runtime_install(null(), c(SPEC).as_ptr(), 0, &mut error),
            PalisadeStatus::NullPointer
        );
        assert_eq!(message(error), "runtime is NULL");
        assert_eq!(
            palisade_runtime_decide(runtime, null(), &mut decision, &mut error),
            PalisadeStatus::NullPointer
        );
        assert_eq!(message(error), "request is NULL");
        assert_eq!(
            palisade_runtime_decide(runtime, c("{}").as_ptr(), null_mut(), &mut error),
            PalisadeStatus::NullPointer
        );
        assert_eq!(message(error), "decision is NULL");
        // No error out-pointer: the status alone.
        assert_eq!(
            palisade_runtime_install(runtime, null(), 0, null_mut()),
            PalisadeStatus::NullPointer
        );
        assert_eq!(
            palisade_decision_effect(null(), null_mut()),
            PalisadeStatus::NullPointer
        );
        // Frees of NULL do nothing.
        assert_eq!(palisade_runtime_free(null_mut()), PalisadeStatus::Ok);
        assert_eq!(palisade_decision_free(null_mut()), PalisadeStatus::Ok);
        assert_eq!(palisade_string_free(null_mut()), PalisadeStatus::Ok);

        let latin1 = b"name = \"caf\xe9\"\0";
        assert_eq!(
            palisade_runtime_install(runtime, latin1.as_ptr().cast(), 0, &mut error),
            PalisadeStatus::InvalidUtf8
        );
        assert!(message(error).starts_with("spec is not UTF-8"));

        // Just within the bound is read; one byte more is refused without reading further.
        let request =
            r#"{"app": "lights", "originator": "CAE1", "operation": "retrieve", "target": "/x"}"#;
        let padded = format!("{request}{}", " ".repeat(MAX_REQUEST_BYTES - request.len()));
        assert!(decide(runtime, &padded).is_ok());
        let (status, text) = decide(runtime, &format!("{padded} ")).unwrap_err();
        assert_eq!(status, PalisadeStatus::TooLarge);
        assert_eq!(
            text,
            format!("request is longer than {MAX_REQUEST_BYTES} bytes (or not NUL-terminated)")
        );
        let huge = format!("# {}\n{SPEC}", "x".repeat(palisade_core::MAX_SPEC_BYTES));
        assert_eq!(install(runtime, &huge, 0).0, PalisadeStatus::TooLarge);

        palisade_runtime_free(runtime);
    }
}

#[test]
fn freed_and_foreign_handles_are_refused() {
    let runtime = new_runtime();
    assert_eq!(install(runtime, SPEC, 0).0, PalisadeStatus::Ok);
    let decision = decide(
        runtime,
        r#"{"app": "lights", "originator": "CAE1", "operation": "retrieve", "target": "/x"}"#,
    )
    .unwrap();
    let mut error = null_mut();
    let mut effect = PalisadeEffect::Deny;
    unsafe {
        assert_eq!(palisade_decision_free(decision), PalisadeStatus::Ok);
        // Use after free and double free of a decision.
        assert_eq!(
            palisade_decision_effect(decision, &mut effect),
            PalisadeStatus::InvalidHandle
        );
        assert_eq!(
            palisade_decision_free(decision),
            PalisadeStatus::InvalidHandle
        );
        // A decision handle is no runtime handle, and the reverse.
        assert_eq!(
            palisade_runtime_install(decision.cast(), c(SPEC).as_ptr(), 0, &mut error),
            PalisadeStatus::InvalidHandle
        );
        assert!(message(error).contains("not a live runtime handle"));
        assert_eq!(
            palisade_decision_effect(runtime.cast(), &mut effect),
            PalisadeStatus::InvalidHandle
        );
        // A pointer that never was a handle.
        let mut local = 0u64;
        assert_eq!(
            palisade_runtime_free((&mut local as *mut u64).cast()),
            PalisadeStatus::InvalidHandle
        );

        assert_eq!(palisade_runtime_free(runtime), PalisadeStatus::Ok);
        let mut out = null_mut();
        assert_eq!(
            palisade_runtime_decide(runtime, c("{}").as_ptr(), &mut out, &mut error),
            PalisadeStatus::InvalidHandle
        );
        assert!(message(error).contains("freed already"));
        assert_eq!(
            palisade_runtime_free(runtime),
            PalisadeStatus::InvalidHandle
        );

        // A message freed twice; a string this library never returned.
        palisade_runtime_install(runtime, c(SPEC).as_ptr(), 0, &mut error);
        assert_eq!(palisade_string_free(error), PalisadeStatus::Ok);
        assert_eq!(palisade_string_free(error), PalisadeStatus::InvalidHandle);
        let foreign = c("mine");
        assert_eq!(
            palisade_string_free(foreign.as_ptr().cast_mut()),
            PalisadeStatus::InvalidHandle
        );
    }
}

#[test]
fn engine_settings_are_checked() {
    let mut runtime = null_mut();
    let mut error = null_mut();
    unsafe {
        let status = palisade_runtime_new(
            c("max_memory_bytes = 1024").as_ptr(),
            0,
            &mut runtime,
            &mut error,
        );
        assert_eq!(status, PalisadeStatus::InvalidSettings);
        assert!(message(error).contains("below one WebAssembly page"));
        let status = palisade_runtime_new(
            c(r#"{"pool_size": 3}"#).as_ptr(),
            1,
            &mut runtime,
            &mut error,
        );
        assert_eq!(status, PalisadeStatus::InvalidSettings);
        assert!(message(error).contains("unknown field `pool_size`"));
        assert!(runtime.is_null());

        // A ceiling of 8 MiB: an app asking for its default 16 MiB is refused, not lowered.
        let status = palisade_runtime_new(
            c(r#"{"max_memory_bytes": 8388608}"#).as_ptr(),
            1,
            &mut runtime,
            &mut error,
        );
        assert_eq!(status, PalisadeStatus::Ok);
        let (status, text) = install(runtime, SPEC, 0);
        assert_eq!(status, PalisadeStatus::InvalidSpec);
        assert!(
            text.starts_with(
                "limits.memory_bytes: 16777216 is above the engine's ceiling of 8388608"
            ),
            "{text}"
        );
        let small = SPEC.replace(
            "name = \"lights\"\n",
            "name = \"lights\"\n[limits]\nmemory_bytes = 4194304\n",
        );
        assert_eq!(install(runtime, &small, 0).0, PalisadeStatus::Ok);
        palisade_runtime_free(runtime);
    }
}

#[test]
fn one_runtime_decides_on_many_threads_while_installing() {
    let runtime = new_runtime() as usize;
    assert_eq!(install(runtime as *mut _, SPEC, 0).0, PalisadeStatus::Ok);
    std::thread::scope(|scope| {
        for thread in 0..4 {
            scope.spawn(move || {
                for round in 0..25 {
                    let originator = if (thread + round) % 2 == 0 { "CAE1" } else { "CAE2" };
                    let request = format!(r#"{{"app": "lights", "originator": "{originator}", "operation": "retrieve", "target": "/x"}}"#);
                    let decision = decide(runtime as *mut _, &request).unwrap();
                    let mut effect = PalisadeEffect::Deny;
                    unsafe { palisade_decision_effect(decision, &mut effect) };
                    assert_eq!(effect == PalisadeEffect::Permit, originator == "CAE1");
                    unsafe { palisade_decision_free(decision) };
                }
            });
        }
        scope.spawn(move || {
            for index in 0..3 {
                let spec = SPEC.replace("lights", &format!("app{index}"));
                assert_eq!(install(runtime as *mut _, &spec, 0).0, PalisadeStatus::Ok);
            }
        });
    });
    unsafe { palisade_runtime_free(runtime as *mut _) };
}
