//! Embedding Palisade in a gateway's own Rust code: build the runtime once, install an
//! application with its plugins and their configuration, then ask for decisions and read why.
//!
//! Run it with `cargo run --example embed_gateway`. The tests run it too (tests/cli.rs).

use std::collections::{HashMap, HashSet};

use palisade_core::{
    AccessRequest, AppSpec, Capability, Engine, EngineConfig, FilteredResponse, Operation,
    PluginSetup, ResponseBody, Runtime,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // One engine and one runtime per process; share the runtime (it is Sync) across threads.
    let runtime = Runtime::new(Engine::new(EngineConfig::default())?)?;

    // The application "lights": an accessControlPolicy authorizer and a location filter.
    // Policies are the app's configuration, in oneM2M short names; one plugin binary serves
    // any number of applications, each with its own policy.
    let policy = r#"{
        "policies": [{
            "id": "lights-acp",
            "pv": { "acr": [
                { "acor": ["CAE-admin"], "acop": 63 },
                { "acor": ["<operators>"], "acop": 2 }
            ] }
        }]
    }"#;
    let mut lights = AppSpec::new("lights")
        // Group entries like <operators> are looked up through the host: grant it.
        .plugin(
            PluginSetup::new("acp", policy).grant(Capability::Groups),
            palisade_artifacts::ACP,
        )
        .plugin(
            PluginSetup::new("geo-privacy", r#"{"mode": "remove"}"#),
            palisade_artifacts::GEO_PRIVACY,
        );
    lights.groups = HashMap::from([(
        "operators".to_string(),
        HashSet::from(["CAE-night-shift".to_string()]),
    )]);
    runtime.install(lights)?;

    // A permitted retrieve, a denied delete.
    let read = AccessRequest::new(
        "lights",
        "CAE-night-shift",
        Operation::Retrieve,
        "/cse-in/lights/lamp1",
    );
    let delete = AccessRequest::new(
        "lights",
        "CAE-night-shift",
        Operation::Delete,
        "/cse-in/lights/lamp1",
    );
    let permitted = runtime.is_authorized(&read);
    let denied = runtime.is_authorized(&delete);
    for (what, decision) in [("retrieve", &permitted), ("delete", &denied)] {
        let module = decision
            .decided_by
            .as_ref()
            .map(|label| format!("{} ({})", label.name, &label.sha256[..12]))
            .unwrap_or_default();
        println!(
            "{what}: {:?} — {} [decided by {module}, {} µs]",
            decision.effect, decision.reason, decision.timings.total_us
        );
    }

    // The response of the permitted request goes back through the filters.
    let response = ResponseBody {
        status: 2000,
        content_type: "application/json".into(),
        body: br#"{"m2m:cin":{"con":"on","lat":48.8566,"lon":2.3522}}"#.to_vec(),
    };
    let delivered = match runtime.filter_response(&read, response) {
        FilteredResponse::Deliver { body, .. } => String::from_utf8(body)?,
        FilteredResponse::Blocked { reason, .. } => format!("blocked: {reason}"),
    };
    println!("filtered response: {delivered}");

    // The exit status tells the tests whether everything came out as documented.
    let as_expected =
        permitted.is_permit() && !denied.is_permit() && !delivered.contains("48.8566");
    if !as_expected {
        return Err("the decisions were not the expected ones".into());
    }
    Ok(())
}
