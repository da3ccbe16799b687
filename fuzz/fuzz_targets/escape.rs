//! Any bytes from the kernel become a JSON string within its budget.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u16, &[u8])| {
    let (budget, bytes) = input;
    let budget = usize::from(budget);
    let e = owo_common::render::escape(bytes, budget);
    let mut json = String::new();
    owo_common::render::push_str(&mut json, &e.text);
    assert!(json.len() - 2 <= budget);
});
