//! What a RELP server sends: frames, then an error, never a panic, and no frame holds more data
//! than an answer may.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// The most data a RELP answer may carry (the reader's own bound).
const DATA_MAX: usize = 64 << 10;

fuzz_target!(|bytes: &[u8]| {
    let (frames, why) = owod::untrusted::relp_answers(bytes);
    assert!(why.starts_with("RELP: "), "{why}");
    for frame in frames {
        assert!(frame.data.len() <= DATA_MAX);
    }
});
