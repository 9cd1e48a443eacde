//! Host-side bindings of the WIT contract (`plugins/sdk/wit/palisade.wit`, inside the SDK crate).
//!
//! The `imports` world is generated once; the three plugin worlds reuse its interfaces with
//! `with`, so there is one Rust type per WIT type and one `Host` trait per import.
//! Every import is trappable: a capability the plugin was not granted, or an exhausted
//! host-call budget, ends the call with a trap rather than an answer the plugin could ignore.

pub mod imports {
    wasmtime::component::bindgen!({
        path: "../../plugins/sdk/wit",
        world: "imports",
        imports: { default: trappable },
    });
}

pub mod authorizer {
    wasmtime::component::bindgen!({
        path: "../../plugins/sdk/wit",
        world: "authorizer",
        imports: { default: trappable },
        with: { "palisade:plugin": super::imports::palisade::plugin },
    });
}

pub mod authenticator {
    wasmtime::component::bindgen!({
        path: "../../plugins/sdk/wit",
        world: "authenticator",
        imports: { default: trappable },
        with: { "palisade:plugin": super::imports::palisade::plugin },
    });
}

pub mod filter {
    wasmtime::component::bindgen!({
        path: "../../plugins/sdk/wit",
        world: "filter",
        imports: { default: trappable },
        with: { "palisade:plugin": super::imports::palisade::plugin },
    });
}

pub use imports::palisade::plugin::types as wit;
