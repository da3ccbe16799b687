//! A config file's text: a config owod runs with, or problems, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    // owod reads its config as UTF-8 (`read_to_string`), and refuses any other file first.
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    if let Err(problems) = owod::untrusted::config(text) {
        assert!(!problems.is_empty(), "a refused config says why");
    }
});
