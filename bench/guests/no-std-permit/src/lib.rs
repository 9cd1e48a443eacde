//! A trivial authorizer with no std (issue #18's fresh-instance experiment): it permits
//! targets under `/ok`, like the `hostile` fixture's `well-behaved` mode, so the two compare
//! one-for-one. `palisade inspect` lists `palisade:plugin/types` as its only import, against
//! 13 WASI interfaces for a plugin built on std.
#![no_std]
extern crate alloc;

use alloc::string::String;

#[global_allocator]
static ALLOC: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    core::arch::wasm32::unreachable()
}

// The world imports `types`, whose `request` and `decision` the generated code brings into
// scope here.
wit_bindgen::generate!({ path: "../../../plugins/sdk/wit", world: "prepared-authorizer" });

struct Permit;

impl Guest for Permit {
    fn prepare() {
        // Grow the heap before the snapshot taken after `prepare`, so that no call grows
        // memory: growing costs an `mprotect` per fresh instance, which is what the
        // experiment must not measure.
        let heap: alloc::vec::Vec<u8> = alloc::vec::Vec::with_capacity(64 << 10);
        core::hint::black_box(&heap);
    }

    fn authorize(request: Request) -> Decision {
        if request.target.starts_with("/ok") {
            Decision::Permit
        } else {
            Decision::Deny(String::from("not under /ok"))
        }
    }
}

export!(Permit);

/// The canonical ABI's allocator export. On wasm32-wasip2 std provides it; without std,
/// wit-bindgen leaves it to the component.
///
/// # Safety
///
/// Called by the host only, with the canonical ABI's arguments.
#[export_name = "cabi_realloc"]
pub unsafe extern "C" fn cabi_realloc(
    ptr: *mut u8,
    old_size: usize,
    align: usize,
    new_size: usize,
) -> *mut u8 {
    use alloc::alloc::{alloc, realloc, Layout};
    let block = unsafe {
        if old_size == 0 {
            if new_size == 0 {
                return align as *mut u8;
            }
            alloc(Layout::from_size_align_unchecked(new_size, align))
        } else {
            realloc(
                ptr,
                Layout::from_size_align_unchecked(old_size, align),
                new_size,
            )
        }
    };
    if block.is_null() {
        core::arch::wasm32::unreachable()
    }
    block
}
