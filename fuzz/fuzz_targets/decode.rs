//! A kernel ring buffer record: decoded or refused, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let _ = owo_common::decode::decode(bytes);
});
