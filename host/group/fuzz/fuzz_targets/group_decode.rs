//! Fuzzes the group-authentication decoder (SER-001: hostile bytes from the network).
//! Properties: decoding never panics, and whatever decodes re-encodes to the same bytes (one
//! encoding per message, which signatures rely on).
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_group::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::decode(data) {
        assert_eq!(m.to_bytes(), data, "decoded message re-encodes differently");
    }
});
