//! The guest plugins in `plugins/`, built for `wasm32-wasip2` by this crate's build script.
//!
//! The reference plugins (`acp`, `token-auth`, `geo-privacy`) are embedded as bytes: the
//! gateway's demo configuration and `plugin = "acp"` in case files use them. Test fixtures
//! (`hostile`, `legacy-contract`) are exposed by path only. This crate is never published:
//! it runs a nested cargo build and rustup, which a packaged crate must not do.

include!(concat!(env!("OUT_DIR"), "/plugins.rs"));

/// The embedded reference plugin with this name (`acp`, `token-auth`, `geo-privacy`).
pub fn reference(name: &str) -> Option<&'static [u8]> {
    match name {
        "acp" => Some(ACP),
        "token-auth" => Some(TOKEN_AUTH),
        "geo-privacy" => Some(GEO_PRIVACY),
        _ => None,
    }
}
