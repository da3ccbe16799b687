//! A UDP or TCP payload sent to port 53: a query name or none, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|payload: &[u8]| {
    for name in [
        owo_common::dns::query_name(payload),
        owo_common::dns::query_name_tcp(payload),
    ]
    .into_iter()
    .flatten()
    {
        // At most 255 bytes on the wire, each at most four characters (`\DDD`) as text.
        assert!(name.len() <= 4 * 255);
    }
});
