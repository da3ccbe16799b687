//! Properties of the parsers of what the kernel and the network hand owod: whatever the bytes,
//! they answer (an event, a name, an error) and never panic.

use owo_common::{
    abi::{self, Header, Pod},
    decode::decode,
    dns, render,
};
use proptest::prelude::*;

/// Bytes that start with a header of a real kind and the right size, so that the decoder gets
/// past its first checks and into the record's sections.
fn record() -> impl Strategy<Value = Vec<u8>> {
    (
        abi::KIND_EXEC..=abi::KIND_WRITE,
        proptest::collection::vec(any::<u8>(), 0..40_000),
    )
        .prop_map(|(kind, tail)| {
            let size = (std::mem::size_of::<Header>() + tail.len()) as u32;
            let header = Header {
                kind,
                size,
                ..Header::default()
            };
            let mut bytes = header.as_bytes().to_vec();
            bytes.extend(tail);
            bytes
        })
}

proptest! {
    #[test]
    fn the_decoder_answers_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn the_decoder_answers_any_record_of_a_real_kind(bytes in record()) {
        let _ = decode(&bytes);
    }

    #[test]
    fn a_dns_name_is_read_from_any_payload_or_none(
        payload in proptest::collection::vec(any::<u8>(), 0..600)
    ) {
        for name in [dns::query_name(&payload), dns::query_name_tcp(&payload)].into_iter().flatten() {
            // At most 255 bytes on the wire, each at most four characters (`\DDD`) as text.
            prop_assert!(name.len() <= 4 * 255, "{name}");
        }
    }

    #[test]
    fn escaped_text_fits_its_budget_and_is_valid_json(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
        budget in 0usize..700,
    ) {
        let e = render::escape(&bytes, budget);
        let mut json = String::new();
        render::push_str(&mut json, &e.text);
        prop_assert!(json.len() - 2 <= budget, "{} > {budget}", json.len() - 2);
        let back: String = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(&back, &e.text);
        if !e.truncated && !e.escaped {
            prop_assert_eq!(e.text.as_bytes(), &bytes[..]);
        }
    }

    #[test]
    fn args_texts_are_what_a_json_reader_gets_from_push_args(
        valid in proptest::collection::vec("(?s).{0,2500}", 0..12),
        raw in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..2500), 0..12),
    ) {
        let valid: Vec<&[u8]> = valid.iter().map(|s| s.as_bytes()).collect();
        let raw: Vec<&[u8]> = raw.iter().map(Vec::as_slice).collect();
        for args in [valid, raw] {
            let mut json = String::new();
            let written = render::push_args(&mut json, args.iter().copied());
            let back: Vec<String> = serde_json::from_str(&json).unwrap();
            let (texts, flags) = render::args_texts(args.iter().copied());
            prop_assert_eq!(texts, back);
            prop_assert_eq!(flags, written);
        }
    }
}
