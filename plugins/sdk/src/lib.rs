//! # palisade-sdk: write a Palisade plugin in a few dozen lines
//!
//! A plugin makes one kind of security decision for an application. Implement one trait —
//! [`Authorizer`], [`Authenticator`] or [`Filter`] — and export it with the matching macro:
//!
//! ```no_run
//! use palisade_sdk::{Authorizer, Decision, Request};
//!
//! struct OnlyReads;
//!
//! impl Authorizer for OnlyReads {
//!     fn authorize(request: Request) -> Decision {
//!         if request.operation.is_read() {
//!             Decision::Permit
//!         } else {
//!             Decision::deny("this application is read-only")
//!         }
//!     }
//! }
//!
//! palisade_sdk::export_authorizer!(OnlyReads);
//! # fn main() {}
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` and try it with
//! `palisade eval` or `palisade test`.
//!
//! The [`Request`] is the contract's `request` record of `palisade:plugin@0.2.0`, which added
//! the target's own type ([`Request::target_resource_type`], [`Request::target_specialization`])
//! to 0.1.0. A plugin built with this SDK is a 0.2 component; gateways of 0.2 also keep running
//! modules built against 0.1.x, which simply never see a target type. Build requests in tests
//! with [`Request::new`], so that fields a later contract adds need no change in your code.
//!
//! What the host offers is in the modules [`log`], [`config`], [`kv`], [`groups`] and
//! [`crypto`]; everything is scoped to the application the plugin is serving. The plugin has
//! no filesystem, network, environment or clock: [`Request::request_time`] is its time.
//!
//! ## Compatibility between SDK and gateway versions
//!
//! The SDK's version follows the contract it builds against, the WIT package
//! `palisade:plugin` in this crate's `wit/` folder: **`palisade-sdk` 0.N.x builds components
//! of `palisade:plugin@0.N.0`**, and a patch release (0.N.x → 0.N.y) never changes the
//! contract, only the Rust side. A gateway runs components of its own contract version and
//! of every earlier 0.x version it still lists (a gateway of contract 0.2 runs 0.1 and 0.2
//! components), so a plugin built with `palisade-sdk` 0.N runs on every gateway whose
//! contract is 0.N or later, and is refused at load, naming the version it imports, by an
//! older one. `palisade inspect MODULE` shows which contract a module was built against.
//! Within 0.x a new contract version only ever adds (fields, functions); a plugin is rebuilt
//! with the newer SDK to see them.

mod request;

pub mod config;
pub mod crypto;
pub mod groups;
pub mod json;
pub mod kv;
pub mod log;

/// The generated bindings of the WIT contract, one module per world. Plugin code should not
/// need these directly; they are public for the export macros.
#[doc(hidden)]
pub mod bindings {
    pub mod imports {
        wit_bindgen::generate!({
            world: "imports",
            path: "wit",
            generate_all,
        });
    }
    pub mod authorizer {
        wit_bindgen::generate!({
            world: "prepared-authorizer",
            path: "wit",
            with: {
                "palisade:plugin/types@0.2.0": crate::bindings::imports::palisade::plugin::types,
                "palisade:plugin/log@0.2.0": crate::bindings::imports::palisade::plugin::log,
                "palisade:plugin/config@0.2.0": crate::bindings::imports::palisade::plugin::config,
                "palisade:plugin/kv@0.2.0": crate::bindings::imports::palisade::plugin::kv,
                "palisade:plugin/groups@0.2.0": crate::bindings::imports::palisade::plugin::groups,
                "palisade:plugin/crypto@0.2.0": crate::bindings::imports::palisade::plugin::crypto,
            },
            default_bindings_module: "palisade_sdk::bindings::authorizer",
            pub_export_macro: true,
            export_macro_name: "export",
        });
    }
    pub mod authenticator {
        wit_bindgen::generate!({
            world: "prepared-authenticator",
            path: "wit",
            with: {
                "palisade:plugin/types@0.2.0": crate::bindings::imports::palisade::plugin::types,
                "palisade:plugin/log@0.2.0": crate::bindings::imports::palisade::plugin::log,
                "palisade:plugin/config@0.2.0": crate::bindings::imports::palisade::plugin::config,
                "palisade:plugin/kv@0.2.0": crate::bindings::imports::palisade::plugin::kv,
                "palisade:plugin/groups@0.2.0": crate::bindings::imports::palisade::plugin::groups,
                "palisade:plugin/crypto@0.2.0": crate::bindings::imports::palisade::plugin::crypto,
            },
            default_bindings_module: "palisade_sdk::bindings::authenticator",
            pub_export_macro: true,
            export_macro_name: "export",
        });
    }
    pub mod filter {
        wit_bindgen::generate!({
            world: "prepared-filter",
            path: "wit",
            with: {
                "palisade:plugin/types@0.2.0": crate::bindings::imports::palisade::plugin::types,
                "palisade:plugin/log@0.2.0": crate::bindings::imports::palisade::plugin::log,
                "palisade:plugin/config@0.2.0": crate::bindings::imports::palisade::plugin::config,
                "palisade:plugin/kv@0.2.0": crate::bindings::imports::palisade::plugin::kv,
                "palisade:plugin/groups@0.2.0": crate::bindings::imports::palisade::plugin::groups,
                "palisade:plugin/crypto@0.2.0": crate::bindings::imports::palisade::plugin::crypto,
            },
            default_bindings_module: "palisade_sdk::bindings::filter",
            pub_export_macro: true,
            export_macro_name: "export",
        });
    }
}

pub use bindings::imports::palisade::plugin::types::{
    AuthResult, Credential, Decision, FilterResult, Identity, Location, Operation, Request,
    Response,
};
pub use request::OperationSet;

/// An authorizer decides whether a request may proceed.
///
/// Every authorizer of an application must answer [`Decision::Permit`] for a request to be
/// allowed; [`Decision::NotApplicable`] from all of them is a deny.
pub trait Authorizer {
    fn authorize(request: Request) -> Decision;

    /// Called once whenever the host loads the plugin, before any request. Parse the
    /// configuration here and refuse one that cannot work (`MY_CONFIG.require();`, or
    /// [`config::refuse`]): the load then fails with that reason, so the gateway does not
    /// start with it. When the application runs a fresh instance per request, what it leaves
    /// in memory is snapshotted and every fresh instance starts from it. Only [`config`] and
    /// [`log`] are available; the default does nothing.
    fn prepare() {}
}

/// An authenticator turns a presented credential into an [`Identity`].
pub trait Authenticator {
    fn authenticate(request: Request, credential: Credential) -> AuthResult;

    /// See [`Authorizer::prepare`].
    fn prepare() {}
}

/// A filter rewrites, redacts or blocks a response on its way back to the originator.
pub trait Filter {
    fn filter(request: Request, response: Response) -> FilterResult;

    /// See [`Authorizer::prepare`].
    fn prepare() {}
}

/// Export a type implementing [`Authorizer`] as this component's `authorize` function.
#[macro_export]
macro_rules! export_authorizer {
    ($plugin:ty) => {
        const _: () = {
            struct __PalisadeExport;
            impl $crate::bindings::authorizer::Guest for __PalisadeExport {
                fn authorize(request: $crate::Request) -> $crate::Decision {
                    <$plugin as $crate::Authorizer>::authorize(request)
                }
                fn prepare() {
                    <$plugin as $crate::Authorizer>::prepare()
                }
            }
            $crate::bindings::authorizer::export!(__PalisadeExport);
        };
    };
}

/// Export a type implementing [`Authenticator`] as this component's `authenticate` function.
#[macro_export]
macro_rules! export_authenticator {
    ($plugin:ty) => {
        const _: () = {
            struct __PalisadeExport;
            impl $crate::bindings::authenticator::Guest for __PalisadeExport {
                fn authenticate(
                    request: $crate::Request,
                    credential: $crate::Credential,
                ) -> $crate::AuthResult {
                    <$plugin as $crate::Authenticator>::authenticate(request, credential)
                }
                fn prepare() {
                    <$plugin as $crate::Authenticator>::prepare()
                }
            }
            $crate::bindings::authenticator::export!(__PalisadeExport);
        };
    };
}

/// Export a type implementing [`Filter`] as this component's `filter` function.
#[macro_export]
macro_rules! export_filter {
    ($plugin:ty) => {
        const _: () = {
            struct __PalisadeExport;
            impl $crate::bindings::filter::Guest for __PalisadeExport {
                fn filter(
                    request: $crate::Request,
                    response: $crate::Response,
                ) -> $crate::FilterResult {
                    <$plugin as $crate::Filter>::filter(request, response)
                }
                fn prepare() {
                    <$plugin as $crate::Filter>::prepare()
                }
            }
            $crate::bindings::filter::export!(__PalisadeExport);
        };
    };
}
