//! Attacks on the sandbox's budgets (Palisade issue #12, findings 2 and 3): WASI calls that
//! make the host allocate or work (randomness, stdout/stderr, resource handles), large
//! arguments to every import, and a pair of attacks that look for what an earlier instance of
//! another application left in memory. They read their own settings from the configuration
//! (`size`, `count`, `pages`, `key`), beside `attack`.

use std::hint::black_box;

use palisade_sdk::config::Config;
use palisade_sdk::Decision;

#[allow(dead_code, clippy::all)]
mod wasi_raw {
    wit_bindgen::generate!({ world: "budgets", path: "wit-budgets", generate_all });
}

use wasi_raw::wasi;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const PAGE: usize = 65_536;

#[derive(serde::Deserialize)]
struct BudgetSettings {
    /// Bytes: of randomness (`random-huge`), of output (`output-burst`), of each import
    /// argument (`large-inputs`).
    size: Option<u64>,
    /// Rounds: random requests (`random-loop`), handles leaked per call (`handle-leak-warm`).
    count: Option<u64>,
    /// Wasm pages to grow and write or read (`scavenge-*`).
    pages: Option<usize>,
    /// The scavenge marker, rotated: the words written are `key.rotate_right(13)`, so the
    /// reader, which keeps only `key`, never holds a marker word of its own.
    key: Option<u64>,
}

static SETTINGS: Config<BudgetSettings> = Config::new();

/// The attacks this module runs.
const ATTACKS: &[&str] = &[
    "random-huge",
    "random-loop",
    "random-small",
    "output-burst",
    "output-flood",
    "handle-leak",
    "handle-leak-warm",
    "pollable-leak",
    "large-inputs",
    "scavenge-write",
    "scavenge-read",
];

pub(crate) fn handles(attack: &str) -> bool {
    ATTACKS.contains(&attack)
}

pub(crate) fn run(attack: &str) -> Decision {
    let settings = match SETTINGS.get() {
        Ok(settings) => settings,
        Err(reason) => return Decision::deny(format!("hostile: {reason}")),
    };
    match attack {
        "random-huge" => random_huge(settings.size.unwrap_or(64 * MIB)),
        "random-loop" => random_loop(settings.count.unwrap_or(u64::MAX)),
        "random-small" => {
            let bytes = wasi::random::random::get_random_bytes(32);
            Decision::deny(format!("random-small: got {} bytes", bytes.len()))
        }
        "output-burst" => output_burst(settings.size.unwrap_or(MIB)),
        "output-flood" => output_flood(),
        "handle-leak" => handle_leak(),
        "handle-leak-warm" => handle_leak_warm(settings.count.unwrap_or(16)),
        "pollable-leak" => pollable_leak(),
        "large-inputs" => large_inputs(settings.size.unwrap_or(MIB) as usize),
        "scavenge-write" => scavenge_write(settings.pages.unwrap_or(64), settings.key),
        "scavenge-read" => scavenge_read(settings.pages.unwrap_or(64), settings.key),
        other => Decision::deny(format!("hostile: unknown attack {other:?}")),
    }
}

/// One request for `size` random bytes (64 MiB by default, wasmtime-wasi's own ceiling).
fn random_huge(size: u64) -> Decision {
    let bytes = wasi::random::random::get_random_bytes(size);
    Decision::deny(format!("random-huge: got {} bytes", bytes.len()))
}

/// `count` requests of 4 KiB each, all within one call.
fn random_loop(count: u64) -> Decision {
    let mut total = 0u64;
    for _ in 0..count {
        let bytes = wasi::random::random::get_random_bytes(4 * KIB);
        total += black_box(bytes).len() as u64;
    }
    Decision::deny(format!("random-loop: got {total} bytes"))
}

/// Writes `size` bytes to stderr as fast as the stream takes them, then answers.
fn output_burst(size: u64) -> Decision {
    let stream = wasi::cli::stderr::get_stderr();
    let chunk = vec![b'E'; 64 * KIB as usize];
    let mut written = 0u64;
    while written < size {
        let permit = match stream.check_write() {
            Ok(permit) => permit,
            Err(error) => return Decision::deny(format!("output-burst: check-write {error:?}")),
        };
        let len = permit.min(chunk.len() as u64).min(size - written).max(1) as usize;
        if let Err(error) = stream.write(&chunk[..len]) {
            return Decision::deny(format!("output-burst: write {error:?}"));
        }
        written += len as u64;
    }
    Decision::deny(format!("output-burst: wrote {written} bytes"))
}

/// Writes to stdout forever.
fn output_flood() -> Decision {
    let stream = wasi::cli::stdout::get_stdout();
    let chunk = vec![b'O'; 4 * KIB as usize];
    for _ in 0..black_box(u64::MAX) {
        let _ = stream.blocking_write_and_flush(&chunk);
    }
    Decision::deny("output-flood: loop ended")
}

/// Takes stdout handles and never gives them back.
fn handle_leak() -> Decision {
    let mut held = 0u64;
    for _ in 0..black_box(u64::MAX) {
        std::mem::forget(wasi::cli::stdout::get_stdout());
        held += 1;
    }
    Decision::deny(format!("handle-leak: holding {held}"))
}

/// Handles leaked by earlier calls of this (warm) instance.
static LEAKED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Leaks `count` handles per call, so a warm instance holds more after every call.
fn handle_leak_warm(count: u64) -> Decision {
    use std::sync::atomic::Ordering;
    for _ in 0..count {
        std::mem::forget(wasi::cli::stderr::get_stderr());
        LEAKED.fetch_add(1, Ordering::Relaxed);
    }
    Decision::deny(format!(
        "handle-leak-warm: holding {}",
        LEAKED.load(Ordering::Relaxed)
    ))
}

/// Subscribes to the clock and keeps every pollable.
fn pollable_leak() -> Decision {
    let mut held = 0u64;
    for _ in 0..black_box(u64::MAX) {
        std::mem::forget(wasi::clocks::monotonic_clock::subscribe_duration(1_000_000));
        held += 1;
    }
    Decision::deny(format!("pollable-leak: holding {held}"))
}

/// Hands `size` bytes to every import that takes an argument, and reports what came back.
fn large_inputs(size: usize) -> Decision {
    let big = "a".repeat(size);
    palisade_sdk::log::info(&big);
    let kv_get = palisade_sdk::kv::get(&big).is_some();
    let kv_set = palisade_sdk::kv::set("large", big.as_bytes());
    let member = palisade_sdk::groups::is_member(&big, &big);
    let hmac = palisade_sdk::crypto::hmac_sha256(&big, big.as_bytes()).map(|mac| mac.len());
    let verify = palisade_sdk::crypto::verify_ed25519(&big, big.as_bytes(), big.as_bytes());
    Decision::deny(format!(
        "large-inputs: log ok; kv-get {kv_get}; kv-set {kv_set:?}; groups {member}; \
         hmac {hmac:?}; verify {verify:?}"
    ))
}

/// The size of linear memory in bytes.
fn memory_bytes() -> usize {
    core::arch::wasm32::memory_size(0) * PAGE
}

/// Grows memory by `pages` and fills the new pages with the marker.
fn scavenge_write(pages: usize, key: Option<u64>) -> Decision {
    let Some(key) = key else {
        return Decision::deny("scavenge-write: no key");
    };
    let marker = key.rotate_right(13);
    let old = core::arch::wasm32::memory_grow(0, pages);
    if old == usize::MAX {
        return Decision::deny("scavenge-write: could not grow");
    }
    let start = old * PAGE;
    for word in 0..pages * PAGE / 8 {
        // Volatile so the writes happen though nobody here reads them.
        unsafe { ((start + word * 8) as *mut u64).write_volatile(marker) };
    }
    Decision::deny(format!("scavenge-write: wrote {pages} pages"))
}

/// Grows memory by `pages`, then counts non-zero bytes in the new pages and marker words
/// anywhere in memory: both must be 0 whatever ran in this instance slot before.
fn scavenge_read(pages: usize, key: Option<u64>) -> Decision {
    let Some(key) = key else {
        return Decision::deny("scavenge-read: no key");
    };
    let old = core::arch::wasm32::memory_grow(0, pages);
    if old == usize::MAX {
        return Decision::deny("scavenge-read: could not grow");
    }
    let start = old * PAGE;
    let mut nonzero = 0u64;
    for byte in start..start + pages * PAGE {
        // Address 0 is never read; everything read lies inside memory just grown.
        if unsafe { (byte as *const u8).read_volatile() } != 0 {
            nonzero += 1;
        }
    }
    let mut markers = 0u64;
    for word in (8..memory_bytes()).step_by(8) {
        let value = unsafe { (word as *const u64).read_volatile() };
        if value.rotate_left(13) == key {
            markers += 1;
        }
    }
    Decision::deny(format!(
        "scavenge-read: grew {pages} pages, nonzero bytes {nonzero}, marker words {markers}"
    ))
}
