//! A rules file's text: rules, or why they are refused, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    // Rules files are read as UTF-8 (`read_to_string`), and refused otherwise before parsing.
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    if let Err(why) = owod::untrusted::rules(text) {
        assert!(!why.is_empty(), "a refused rules file says why");
    }
});
