//! # hostile: a TEST FIXTURE, never a real plugin
//!
//! One component that attacks the Palisade host in the way its configuration names,
//! `{"attack": "<name>"}`, so that the host's sandbox tests can run every attack with one
//! binary. See README.md beside Cargo.toml for the list and for what the host must answer.
//! It exports the functions of all three worlds (`wit/hostile.wit`): an authorizer unless the
//! application declares it an authenticator or a filter, whose attacks are in `answers.rs`.
//!
//! Most attacks are ordinary Rust inside [`Guest::authorize`]. The `garbage*` attacks corrupt
//! the answer at the canonical-ABI level, which the SDK's export macro cannot express, so this
//! crate writes the core-wasm exports `authorize` and `cabi_post_authorize` itself: they call
//! the lifting/lowering glue generated in [`abi`] (`_export_authorize_cabi`) and then, for a
//! `garbage*` attack, overwrite the lowered answer in the return area before the host lifts it.

use std::hint::black_box;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU8, Ordering};

use abi::Guest;
use palisade_sdk::config::Config;
use palisade_sdk::{AuthResult, Credential, Decision, FilterResult, Request, Response};

mod answers;
mod budgets;

#[derive(serde::Deserialize)]
struct Settings {
    /// Which attack to run.
    attack: String,
    /// `huge-return`: the size of the deny reason in bytes (default 32 MiB).
    size: Option<usize>,
    /// `"prepare"`: attack in the pre-initialisation hook instead of in `authorize`
    /// (`loop`, `memory`, `panic`, and `kv`, an import `prepare` is not granted).
    during: Option<String>,
}

static SETTINGS: Config<Settings> = Config::new();

/// This crate's own bindings of the `hostile` world (`wit/hostile.wit`: `prepared-authorizer`,
/// `authenticator` and `filter` in one, so the fixture can be loaded as any kind). The types and imports are the SDK's
/// (`with`); what this adds is the world's export glue and, above all, the custom section that
/// tells the componentizer this module exports `authorize`. (The SDK emits that section only
/// inside its `export!` macro, which would also emit a second `authorize` symbol.)
#[allow(dead_code, unused_macros, clippy::all)]
mod abi {
    wit_bindgen::generate!({
        world: "palisade:hostile/hostile",
        path: ["../sdk/wit", "wit"],
        with: {
            "palisade:plugin/types@0.2.0": palisade_sdk::bindings::imports::palisade::plugin::types,
            "palisade:plugin/log@0.2.0": palisade_sdk::bindings::imports::palisade::plugin::log,
            "palisade:plugin/config@0.2.0": palisade_sdk::bindings::imports::palisade::plugin::config,
            "palisade:plugin/kv@0.2.0": palisade_sdk::bindings::imports::palisade::plugin::kv,
            "palisade:plugin/groups@0.2.0": palisade_sdk::bindings::imports::palisade::plugin::groups,
            "palisade:plugin/crypto@0.2.0": palisade_sdk::bindings::imports::palisade::plugin::crypto,
        },
    });
}

const MIB: usize = 1 << 20;

// ---------------------------------------------------------------------------------------------
// The raw core-wasm exports.
// ---------------------------------------------------------------------------------------------

/// No ABI-level corruption: the answer goes out as the SDK lowered it.
const CORRUPT_NONE: u8 = 0;
/// Discriminant 7 for `decision`, which has only 0..=2.
const CORRUPT_DISCRIMINANT: u8 = 1;
/// `deny` with a reason that is not UTF-8.
const CORRUPT_UTF8: u8 = 2;
/// `deny` with a reason whose pointer and length lie outside linear memory.
const CORRUPT_POINTER: u8 = 3;

/// Set by [`Hostile::authorize`], read by the raw export once the SDK glue has lowered the
/// answer. Plugins are single-threaded; the atomic only makes the static safe to name.
static CORRUPT: AtomicU8 = AtomicU8::new(CORRUPT_NONE);

/// The discriminant the `garbage` attack writes; `decision` has permit 0, deny 1,
/// not-applicable 2.
const BAD_DISCRIMINANT: u8 = 7;

/// The bytes the `garbage-utf8` reason points at: no prefix of them is valid UTF-8.
static INVALID_UTF8: [u8; 8] = [0xff, 0xfe, 0xfd, 0xc0, 0x80, 0xed, 0xa0, 0x80];

// The lowered `decision` in the return area (wasm32): the discriminant as a u8 at offset 0,
// then the `deny` payload `string` as (pointer: u32, length: u32) at offsets 4 and 8.
const DISCRIMINANT_OFFSET: usize = 0;
const STRING_PTR_OFFSET: usize = 4;
const STRING_LEN_OFFSET: usize = 8;
const DENY: u8 = 1;

/// `authorize: func(request: request) -> decision`. The request flattens to more than 16 core
/// values, so it arrives as one pointer to a host-allocated block; the answer is returned as a
/// pointer to a static return area. Both are exactly what `wit-bindgen` 0.61 generates.
#[unsafe(export_name = "authorize")]
unsafe extern "C" fn export_authorize(request: *mut u8) -> *mut u8 {
    CORRUPT.store(CORRUPT_NONE, Ordering::Relaxed);
    // Lifts the request, runs `Hostile::authorize`, lowers the decision.
    let ret = unsafe { abi::_export_authorize_cabi::<Hostile>(request) };
    match CORRUPT.load(Ordering::Relaxed) {
        CORRUPT_DISCRIMINANT => unsafe {
            ret.add(DISCRIMINANT_OFFSET)
                .write_volatile(BAD_DISCRIMINANT);
        },
        CORRUPT_UTF8 => unsafe {
            ret.add(DISCRIMINANT_OFFSET).write_volatile(DENY);
            ret.add(STRING_PTR_OFFSET)
                .cast::<u32>()
                .write_volatile(INVALID_UTF8.as_ptr() as u32);
            ret.add(STRING_LEN_OFFSET)
                .cast::<u32>()
                .write_volatile(INVALID_UTF8.len() as u32);
        },
        CORRUPT_POINTER => unsafe {
            ret.add(DISCRIMINANT_OFFSET).write_volatile(DENY);
            ret.add(STRING_PTR_OFFSET)
                .cast::<u32>()
                .write_volatile(0xffff_fff0);
            ret.add(STRING_LEN_OFFSET)
                .cast::<u32>()
                .write_volatile(0x100);
        },
        _ => {}
    }
    ret
}

/// The post-return hook frees the lowered answer. A corrupted answer owns nothing (the
/// `garbage*` attacks lower a payload-free decision before corrupting it), so it is skipped.
#[unsafe(export_name = "cabi_post_authorize")]
unsafe extern "C" fn post_return_authorize(ret: *mut u8) {
    if CORRUPT.load(Ordering::Relaxed) == CORRUPT_NONE {
        unsafe { abi::__post_return_authorize::<Hostile>(ret) }
    }
}

/// `authenticate: func(request, credential) -> auth-result`, as `wit-bindgen` generates it
/// (the attacks are in `answers.rs`).
#[unsafe(export_name = "authenticate")]
unsafe extern "C" fn export_authenticate(args: *mut u8) -> *mut u8 {
    unsafe { abi::_export_authenticate_cabi::<Hostile>(args) }
}

#[unsafe(export_name = "cabi_post_authenticate")]
unsafe extern "C" fn post_return_authenticate(ret: *mut u8) {
    unsafe { abi::__post_return_authenticate::<Hostile>(ret) }
}

/// `filter: func(request, response) -> filter-result`, as `wit-bindgen` generates it.
#[unsafe(export_name = "filter")]
unsafe extern "C" fn export_filter(args: *mut u8) -> *mut u8 {
    unsafe { abi::_export_filter_cabi::<Hostile>(args) }
}

#[unsafe(export_name = "cabi_post_filter")]
unsafe extern "C" fn post_return_filter(ret: *mut u8) {
    unsafe { abi::__post_return_filter::<Hostile>(ret) }
}

/// `prepare: func()`, called once at load time by hosts that pre-initialise plugins.
#[unsafe(export_name = "prepare")]
unsafe extern "C" fn export_prepare() {
    unsafe { abi::_export_prepare_cabi::<Hostile>() }
}

// ---------------------------------------------------------------------------------------------
// The attacks.
// ---------------------------------------------------------------------------------------------

struct Hostile;

impl Guest for Hostile {
    /// Parses the settings (so fresh instances start with them) and, with
    /// `"during": "prepare"`, attacks the host while it pre-initialises the plugin.
    fn prepare() {
        let Ok(settings) = SETTINGS.get() else {
            return;
        };
        if settings.during.as_deref() != Some("prepare") {
            return;
        }
        match settings.attack.as_str() {
            "loop" => endless_loop(),
            "memory" => exhaust_memory(),
            "panic" => panic!("hostile plugin panicked in prepare on purpose"),
            "kv" => {
                palisade_sdk::kv::get("anything");
            }
            _ => {}
        }
    }

    fn authorize(request: Request) -> Decision {
        let settings = match SETTINGS.get() {
            Ok(settings) => settings,
            Err(reason) => return Decision::deny(format!("hostile: {reason}")),
        };
        if settings.during.as_deref() == Some("prepare") {
            return Decision::deny("hostile: this configuration attacks in prepare only");
        }
        if let Some(decision) = answers::authorize(&settings.attack, &request) {
            return decision;
        }
        match settings.attack.as_str() {
            "loop" => endless_loop(),
            "memory" => exhaust_memory(),
            "recursion" => Decision::deny(format!("recursion: returned {}", recurse(0))),
            "panic" => panic!("hostile plugin panicked on purpose"),
            "huge-return" => huge_return(settings.size.unwrap_or(32 * MIB)),
            "open-file" => open_file(),
            "socket" => socket(),
            "env" => env(),
            "clock" => clock(),
            "host-call-flood" => host_call_flood(),
            "sleep" => {
                // Waits in a host call, where the epoch deadline cannot reach: the host must
                // trap it at once rather than block its thread for an hour.
                std::thread::sleep(std::time::Duration::from_secs(3600));
                Decision::deny("sleep: woke up after an hour")
            }
            "garbage" => corrupt(CORRUPT_DISCRIMINANT),
            "garbage-utf8" => corrupt(CORRUPT_UTF8),
            "garbage-pointer" => corrupt(CORRUPT_POINTER),
            "probe" => probe(&request),
            "counter" => counter(),
            "well-behaved" => {
                if request.target.starts_with("/ok") {
                    Decision::Permit
                } else {
                    Decision::deny("well-behaved: not /ok")
                }
            }
            name if budgets::handles(name) => budgets::run(name),
            other => Decision::deny(format!("hostile: unknown attack {other:?}")),
        }
    }

    fn authenticate(request: Request, credential: Credential) -> AuthResult {
        answers::authenticate(&request, &credential)
    }

    fn filter(request: Request, response: Response) -> FilterResult {
        answers::filter(&request, &response)
    }
}

/// Calls served by this instance so far.
static CALLS: AtomicU8 = AtomicU8::new(0);

/// Counts the calls this instance has served: a warm instance counts up, a fresh instance
/// (started from the prepared snapshot) always answers 1, so nothing carried over.
fn counter() -> Decision {
    let calls = CALLS.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
    Decision::deny(format!("counter: {calls}"))
}

/// Spins forever; `black_box` keeps the optimiser from proving the loop does nothing.
fn endless_loop() -> ! {
    let mut counter: u64 = 0;
    loop {
        counter = black_box(counter).wrapping_add(1);
    }
}

/// Allocates 1 MiB blocks forever, writing to every page of each so none stays untouched.
fn exhaust_memory() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    let mut round: u8 = 0;
    loop {
        let mut block = Vec::<u8>::with_capacity(MIB);
        block.resize(MIB, round);
        for page in (0..MIB).step_by(4096) {
            // Volatile so the writes happen even though nobody reads them.
            unsafe { block.as_mut_ptr().add(page).write_volatile(round ^ 0x5a) };
        }
        hoard.push(block);
        black_box(&mut hoard);
        round = round.wrapping_add(1);
    }
}

/// Never set: read volatile so the recursion's end cannot be proven unreachable.
static mut STOP: bool = false;
/// Written after each recursive call returns, so no call is a tail call.
static mut SINK: u64 = 0;

/// Unbounded recursion. The work after the call (a volatile store) keeps it from becoming a
/// loop, and everything lives in wasm locals, so it exhausts the wasm call stack itself.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if unsafe { core::ptr::read_volatile(&raw const STOP) } {
        return depth;
    }
    let below = recurse(depth.wrapping_add(1));
    let mixed = below.wrapping_mul(31) ^ depth;
    unsafe { core::ptr::write_volatile(&raw mut SINK, mixed) };
    mixed
}

/// A deny whose reason is `size` bytes; the host must refuse it rather than pass it on.
fn huge_return(size: usize) -> Decision {
    let mut reason = vec![b'A'; size];
    // Touch it from the end too so a lazy allocator cannot skip the work.
    if let Some(last) = reason.last_mut() {
        *black_box(last) = b'Z';
    }
    let reason = String::from_utf8(reason).unwrap_or_default();
    Decision::Deny(reason)
}

fn open_file() -> Decision {
    let mut errors = Vec::new();
    match std::fs::read("/etc/passwd") {
        Ok(_) => return Decision::Permit,
        Err(error) => errors.push(format!("read /etc/passwd: {error}")),
    }
    match std::fs::read_dir("/") {
        Ok(_) => return Decision::Permit,
        Err(error) => errors.push(format!("read_dir /: {error}")),
    }
    match std::fs::File::create("/tmp/pwned") {
        Ok(_) => return Decision::Permit,
        Err(error) => errors.push(format!("create /tmp/pwned: {error}")),
    }
    Decision::deny(format!(
        "open-file: every attempt failed: {}",
        errors.join("; ")
    ))
}

fn socket() -> Decision {
    use std::net::{TcpStream, ToSocketAddrs, UdpSocket};
    let mut errors = Vec::new();
    match TcpStream::connect("127.0.0.1:80") {
        Ok(_) => return Decision::Permit,
        Err(error) => errors.push(format!("tcp connect 127.0.0.1:80: {error}")),
    }
    match UdpSocket::bind("0.0.0.0:0") {
        Ok(_) => return Decision::Permit,
        Err(error) => errors.push(format!("udp bind 0.0.0.0:0: {error}")),
    }
    match ("localhost", 80).to_socket_addrs() {
        Ok(mut addresses) => {
            if addresses.next().is_some() {
                return Decision::Permit;
            }
            errors.push("lookup localhost: no addresses".to_string());
        }
        Err(error) => errors.push(format!("lookup localhost: {error}")),
    }
    Decision::deny(format!("socket: {}", errors.join("; ")))
}

fn env() -> Decision {
    let vars = std::env::vars_os().count();
    let args = std::env::args_os().count();
    let mut input = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut input);
    // These must not reach the host's terminal; the host's tests check that.
    let _ = std::io::stdout().write_all(b"hostile plugin: this line must not reach stdout\n");
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().write_all(b"hostile plugin: this line must not reach stderr\n");
    let _ = std::io::stderr().flush();
    if vars > 0 || args > 0 || !input.is_empty() {
        return Decision::Permit;
    }
    Decision::deny("env: no environment, args or stdin")
}

fn clock() -> Decision {
    use std::time::{Instant, SystemTime, UNIX_EPOCH};
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let start = Instant::now();
    let mut work: u64 = 0;
    for i in 0..2_000_000u64 {
        work = black_box(work.wrapping_mul(6364136223846793005).wrapping_add(i));
    }
    black_box(work);
    let end = Instant::now();
    let advanced = end.saturating_duration_since(start).as_nanos();
    if wall > std::time::Duration::from_secs(1) || advanced > 0 {
        return Decision::Permit;
    }
    Decision::deny(format!(
        "clock: wall clock reads {}s, monotonic clock advanced {advanced}ns",
        wall.as_secs()
    ))
}

/// Calls the host as fast as it can; the host's per-call host-call budget must trap it.
fn host_call_flood() -> Decision {
    for _ in 0..black_box(u64::MAX) {
        palisade_sdk::log::debug("flood");
        black_box(palisade_sdk::config::raw());
    }
    Decision::deny("host-call-flood: loop ended")
}

/// Tries to reach another application's state with names it can forge: the key-value entry,
/// the key handle and the group named in the request's attributes (`kv`, `key`, `group`,
/// `member`), plus its own configuration. Reports everything it saw in the deny reason, so
/// the isolation tests can check that only its own application's state ever shows up.
fn probe(request: &Request) -> Decision {
    let mut seen = Vec::new();
    if let Some(key) = request.attribute("kv") {
        let value =
            palisade_sdk::kv::get(key).map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
        seen.push(format!("kv[{key}]={value:?}"));
    }
    if let Some(handle) = request.attribute("key") {
        let mac = palisade_sdk::crypto::hmac_sha256(handle, b"probe").map(|mac| mac.len());
        seen.push(format!("hmac[{handle}]={mac:?}"));
        let verified = palisade_sdk::crypto::verify_ed25519(handle, b"probe", &[0; 64]);
        seen.push(format!("verify[{handle}]={verified:?}"));
    }
    if let (Some(group), Some(member)) = (request.attribute("group"), request.attribute("member")) {
        seen.push(format!(
            "group[{group}/{member}]={}",
            palisade_sdk::groups::is_member(group, member)
        ));
    }
    seen.push(format!("config={}", palisade_sdk::config::raw()));
    Decision::deny(format!("probe: {}", seen.join("; ")))
}

/// Lowers a payload-free decision and tells the raw export how to corrupt it.
fn corrupt(how: u8) -> Decision {
    CORRUPT.store(how, Ordering::Relaxed);
    Decision::NotApplicable
}
