//! An HTTP collector's answer to a batch: judged, never a panic. The records it refuses are
//! records of the batch, each once; a 2xx delivers any format but a bulk one; a 4xx other than
//! 408 and 429 refuses.
//!
//! The input: a byte for the format, two for the status (0 to 999), one for the number of
//! records sent, then the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use owod::untrusted::{http_answer, SendError};

/// The formats owod knows, and one it does not (read as ndjson).
const FORMATS: [&str; 4] = ["ndjson", "elasticsearch_bulk", "splunk_hec", "gelf"];

fuzz_target!(|input: &[u8]| {
    let [format, status_low, status_high, sent, body @ ..] = input else {
        return;
    };
    let format = FORMATS[usize::from(*format) % FORMATS.len()];
    let status = u16::from_le_bytes([*status_low, *status_high]) % 1000;
    let sent = usize::from(*sent);
    let judged = http_answer(format, status, body, sent);
    match (status, &judged) {
        (200..=299, _) if format != "elasticsearch_bulk" => {
            assert!(judged.is_ok(), "{judged:?}");
        }
        (400..=499, _) if status != 408 && status != 429 => {
            assert!(matches!(judged, Err(SendError::Refused(_))), "{judged:?}");
        }
        (_, Err(SendError::Partly(at, _))) => {
            assert!(!at.is_empty());
            assert!(at.iter().all(|&i| i < sent), "{at:?} of {sent}");
            assert!(at.windows(2).all(|w| w[0] < w[1]), "{at:?}");
        }
        _ => {}
    }
});
