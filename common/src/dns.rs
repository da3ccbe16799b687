//! The name a DNS query asks about, read from the first bytes of the message: a pure function that
//! needs no root and never panics, whatever the input.
//!
//! Only the first question is read, and only from a query (QR clear, QDCOUNT at least 1); the
//! QTYPE/QCLASS after the name need not be present, so a truncated capture still yields the name.
//! Anything malformed gives `None`: a short header, a label running past the data, a name over
//! 255 bytes on the wire, a compression pointer (a query has nothing to point back to) or a
//! reserved label type.
//!
//! The name comes back as dotted text without the final dot (the root is `"."`), case kept as
//! sent, escaped losslessly in presentation format: letters, digits, `-` and `_` as they are, a
//! `.` or `\` inside a label as `\.` or `\\`, and every other byte as `\DDD` (three decimal
//! digits), so the text is always ASCII and two different names never render alike.

const HEADER_LEN: usize = 12;
/// The QR bit in the third header byte: set in a response.
const QR_RESPONSE: u8 = 0x80;
/// The two high bits of a length octet choose the label type; only `00` (a plain label of at most
/// 63 bytes) belongs in a query's question. `11` is a compression pointer, `01` and `10` are
/// reserved.
const LABEL_TYPE_MASK: u8 = 0xc0;
/// RFC 1035 §3.1 counts the length octets and the final zero octet in this limit.
const MAX_NAME_WIRE_LEN: usize = 255;

/// The name of the first question of a DNS query sent over UDP.
pub fn query_name(payload: &[u8]) -> Option<String> {
    let (header, question) = payload.split_first_chunk::<HEADER_LEN>()?;
    if header[2] & QR_RESPONSE != 0 {
        return None;
    }
    if u16::from_be_bytes([header[4], header[5]]) == 0 {
        return None;
    }
    decode_name(question)
}

/// The name of the first question of a DNS query sent over TCP, where a 2-byte big-endian length
/// precedes the message. Bytes past the declared length belong to the next message and are not
/// read; fewer bytes than declared are fine (a truncated capture).
pub fn query_name_tcp(payload: &[u8]) -> Option<String> {
    let (prefix, rest) = payload.split_first_chunk::<2>()?;
    let declared = usize::from(u16::from_be_bytes(*prefix));
    query_name(rest.get(..declared).unwrap_or(rest))
}

fn decode_name(wire: &[u8]) -> Option<String> {
    let mut text = String::new();
    let mut pos = 0;
    // Every pass moves `pos` forward by at least one byte and stops past 255, so the loop is
    // bounded without a counter.
    loop {
        let len_octet = *wire.get(pos)?;
        if len_octet & LABEL_TYPE_MASK != 0 {
            return None;
        }
        // Once the type bits are clear the length is six bits, at most 63.
        let len = usize::from(len_octet);
        if len == 0 {
            if text.is_empty() {
                text.push('.');
            }
            return Some(text);
        }
        let end = pos + 1 + len;
        // Even the shortest ending, a zero octet at `end`, makes the name `end + 1` bytes long;
        // checking before reading the label rejects an overlong name that was also cut short.
        if end + 1 > MAX_NAME_WIRE_LEN {
            return None;
        }
        let label = wire.get(pos + 1..end)?;
        if !text.is_empty() {
            text.push('.');
        }
        push_escaped(&mut text, label);
        pos = end;
    }
}

fn push_escaped(text: &mut String, label: &[u8]) {
    for &byte in label {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' => text.push(char::from(byte)),
            b'.' | b'\\' => {
                text.push('\\');
                text.push(char::from(byte));
            }
            _ => {
                text.push('\\');
                for digit in [byte / 100, byte / 10 % 10, byte % 10] {
                    text.push(char::from(b'0' + digit));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query header (ID 0x1234, RD set, one question) followed by `name` on the wire and
    /// QTYPE A, QCLASS IN.
    fn query(name_wire: &[u8]) -> Vec<u8> {
        let mut msg = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        msg.extend_from_slice(name_wire);
        msg.extend_from_slice(&[0, 1, 0, 1]);
        msg
    }

    /// `labels` on the wire, with the final zero octet.
    fn wire(labels: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for label in labels {
            out.push(u8::try_from(label.len()).expect("test label longer than 255 bytes"));
            out.extend_from_slice(label);
        }
        out.push(0);
        out
    }

    fn tcp(msg: &[u8]) -> Vec<u8> {
        let len = u16::try_from(msg.len()).expect("test message longer than 65535 bytes");
        let mut out = len.to_be_bytes().to_vec();
        out.extend_from_slice(msg);
        out
    }

    #[test]
    fn reads_a_real_query() {
        // Laid out as `dig example.com A` sends it (RD and AD set, one EDNS OPT record in the
        // additional section), less the cookie option.
        let msg = [
            0xab, 0xcd, 0x01, 0x20, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x07, b'e',
            b'x', b'a', b'm', b'p', b'l', b'e', 0x03, b'c', b'o', b'm', 0x00, 0x00, 0x01, 0x00,
            0x01, 0x00, 0x00, 0x29, 0x04, 0xd0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        ];
        assert_eq!(query_name(&msg).as_deref(), Some("example.com"));
    }

    #[test]
    fn keeps_case_hyphen_and_underscore() {
        let msg = query(&wire(&[b"_ldap", b"_tcp", b"My-DC", b"corp"]));
        assert_eq!(query_name(&msg).as_deref(), Some("_ldap._tcp.My-DC.corp"));
    }

    #[test]
    fn escapes_dot_backslash_and_unprintable_bytes() {
        let msg = query(&wire(&[b"a.b\\c\xff d\x00", b"com"]));
        assert_eq!(
            query_name(&msg).as_deref(),
            Some(r"a\.b\\c\255\032d\000.com"),
        );
    }

    #[test]
    fn escapes_other_punctuation_as_decimal() {
        let msg = query(&wire(&[b"*", b"example"]));
        assert_eq!(query_name(&msg).as_deref(), Some(r"\042.example"));
    }

    #[test]
    fn reads_the_root_name() {
        let msg = query(&[0]);
        assert_eq!(query_name(&msg).as_deref(), Some("."));
    }

    #[test]
    fn needs_only_the_name_not_qtype_or_qclass() {
        let mut msg = query(&wire(&[b"example", b"com"]));
        msg.truncate(msg.len() - 4);
        assert_eq!(query_name(&msg).as_deref(), Some("example.com"));
    }

    #[test]
    fn accepts_a_name_of_exactly_255_wire_bytes() {
        let long = [b'a'; 63];
        let last = [b'b'; 61];
        let name = wire(&[&long, &long, &long, &last]);
        assert_eq!(name.len(), 255, "test name should be 255 bytes on the wire");
        let text = query_name(&query(&name)).expect("a 255-byte name should be accepted");
        assert_eq!(text.len(), 253, "unexpected text length for {text}");
    }

    #[test]
    fn rejects_a_name_over_255_wire_bytes() {
        let long = [b'a'; 63];
        let last = [b'b'; 62];
        let name = wire(&[&long, &long, &long, &last]);
        assert_eq!(name.len(), 256, "test name should be 256 bytes on the wire");
        assert_eq!(query_name(&query(&name)), None);
    }

    #[test]
    fn rejects_a_long_name_even_when_truncated() {
        // Four 63-byte labels already pass 255 bytes, whatever would follow.
        let long = [b'a'; 63];
        let mut name = wire(&[&long, &long, &long, &long]);
        name.pop();
        assert_eq!(query_name(&query(&name)), None);
    }

    #[test]
    fn rejects_a_short_header() {
        for len in 0..HEADER_LEN {
            let msg = query(&[0]);
            assert_eq!(
                query_name(&msg[..len]),
                None,
                "{len} bytes should be too short"
            );
        }
    }

    #[test]
    fn rejects_a_header_without_its_question() {
        let msg = query(&[0]);
        assert_eq!(query_name(&msg[..HEADER_LEN]), None);
    }

    #[test]
    fn rejects_qdcount_zero() {
        let mut msg = query(&wire(&[b"example", b"com"]));
        msg[4] = 0;
        msg[5] = 0;
        assert_eq!(query_name(&msg), None);
    }

    #[test]
    fn reads_a_qdcount_above_255() {
        let mut msg = query(&wire(&[b"example", b"com"]));
        msg[4] = 1;
        msg[5] = 0;
        assert_eq!(query_name(&msg).as_deref(), Some("example.com"));
    }

    #[test]
    fn rejects_a_response() {
        let mut msg = query(&wire(&[b"example", b"com"]));
        msg[2] |= QR_RESPONSE;
        assert_eq!(query_name(&msg), None);
    }

    #[test]
    fn rejects_a_label_longer_than_63() {
        let mut name = vec![64];
        name.extend_from_slice(&[b'a'; 64]);
        name.push(0);
        assert_eq!(query_name(&query(&name)), None);
    }

    #[test]
    fn rejects_a_label_past_the_end() {
        let name = wire(&[b"example", b"com"]);
        // Cut inside "com", then just before the final zero octet.
        for cut in [name.len() - 2, name.len() - 1] {
            let mut msg = query(&name);
            msg.truncate(HEADER_LEN + cut);
            assert_eq!(
                query_name(&msg),
                None,
                "name cut at {cut} bytes was accepted"
            );
        }
    }

    #[test]
    fn rejects_compression_pointers() {
        // A pointer to the name's own start, to the header, and out of range.
        for pointer in [[0xc0, 0x0c], [0xc0, 0x00], [0xff, 0xff]] {
            let mut name = vec![3, b'w', b'w', b'w'];
            name.extend_from_slice(&pointer);
            assert_eq!(
                query_name(&query(&name)),
                None,
                "pointer {pointer:02x?} was accepted"
            );
        }
    }

    #[test]
    fn rejects_reserved_label_types() {
        for len_octet in [0x40, 0x41, 0x7f, 0x80, 0x81, 0xbf] {
            let mut name = vec![len_octet];
            name.extend_from_slice(&[b'a'; 0x3f]);
            name.push(0);
            assert_eq!(
                query_name(&query(&name)),
                None,
                "label type {len_octet:#04x} was accepted"
            );
        }
    }

    #[test]
    fn reads_tcp_with_its_length_prefix() {
        let msg = query(&wire(&[b"www", b"example", b"com"]));
        assert_eq!(
            query_name_tcp(&tcp(&msg)).as_deref(),
            Some("www.example.com")
        );
    }

    #[test]
    fn reads_a_truncated_tcp_capture() {
        let msg = query(&wire(&[b"www", b"example", b"com"]));
        let mut framed = tcp(&msg);
        framed.truncate(framed.len() - 4);
        assert_eq!(query_name_tcp(&framed).as_deref(), Some("www.example.com"));
    }

    #[test]
    fn tcp_stops_at_the_declared_length() {
        let msg = query(&wire(&[b"www", b"example", b"com"]));
        let mut framed = tcp(&msg);
        // Declare a message that ends inside the name; the bytes after it are not read.
        framed[0] = 0;
        framed[1] = 20;
        assert_eq!(query_name_tcp(&framed), None);
    }

    #[test]
    fn tcp_rejects_a_short_prefix_or_message() {
        assert_eq!(query_name_tcp(&[]), None);
        assert_eq!(query_name_tcp(&[0]), None);
        assert_eq!(query_name_tcp(&[0, 0]), None);
        let mut response = query(&[0]);
        response[2] |= QR_RESPONSE;
        assert_eq!(query_name_tcp(&tcp(&response)), None);
    }

    /// xorshift64: enough to spread inputs, no dependency, same sequence every run.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn byte(&mut self) -> u8 {
            self.next().to_le_bytes()[0]
        }
    }

    #[test]
    fn never_panics_on_random_bytes() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut accepted = 0;
        for round in 0..5000 {
            let len = usize::from(rng.byte()) + usize::from(rng.byte() & 1) * 200;
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
            // Half the inputs get a plausible query header and short labels, so the name
            // decoder is reached often, not only the header checks.
            if round % 2 == 0 && bytes.len() > HEADER_LEN {
                bytes[2] &= !QR_RESPONSE;
                bytes[5] |= 1;
                for byte in &mut bytes[HEADER_LEN..] {
                    if *byte & 0xc0 != 0 && *byte & 0x08 != 0 {
                        *byte &= 0x0f;
                    }
                }
            }
            for (variant, result) in [("udp", query_name(&bytes)), ("tcp", query_name_tcp(&bytes))]
            {
                if let Some(text) = result {
                    accepted += 1;
                    assert!(
                        !text.is_empty() && text.is_ascii(),
                        "{variant} gave {text:?} for {bytes:02x?}"
                    );
                }
            }
        }
        assert!(accepted > 0, "no random input reached a decoded name");
    }
}
