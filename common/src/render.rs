//! JSON rendering rules (DESIGN §3): one object per line, valid UTF-8, never more than
//! [`LINE_MAX`] bytes, nothing dropped or cut without saying so.
//!
//! # Escaping scheme
//! A field whose bytes are valid UTF-8 is written as that string; JSON's own escapes (`\n`,
//! `\u001b`, …) carry control characters losslessly. A field whose bytes are *not* valid UTF-8 is
//! written with every invalid byte as the four characters `\xHH` and every backslash doubled
//! (`\\`), and the record says so with `<field>_escaped: true`. For `args`, one flag covers the
//! whole array. Undo it by replacing `\\` with `\` and `\xHH` with the byte, left to right.
//!
//! # Truncation
//! Each string field has a budget (in bytes of JSON) so that a whole record always fits in
//! [`LINE_MAX`]; a field cut to its budget, or cut by the kernel, carries `<field>_truncated: true`.

use serde_json::{Map, Value};

/// No line is longer than this (newline excluded).
pub const LINE_MAX: usize = 64 * 1024;
/// Budget of one path field.
pub const PATH_BUDGET: usize = 6 * 1024;
/// Budget of `args`, all elements together.
pub const ARGS_BUDGET: usize = 16 * 1024;
/// Budget of a command line.
pub const CMDLINE_BUDGET: usize = 8 * 1024;
/// Budget of a short name (comm, user name, …).
pub const NAME_BUDGET: usize = 256;

/// A byte string made JSON-safe.
#[derive(Debug, PartialEq, Eq)]
pub struct Escaped {
    pub text: String,
    /// The `\xHH` scheme was used (the bytes were not valid UTF-8).
    pub escaped: bool,
    /// The budget cut it short.
    pub truncated: bool,
}

/// Bytes a char takes once serde_json has quoted it.
fn json_cost(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

/// Make `bytes` a string that costs at most `budget` bytes of JSON.
pub fn escape(bytes: &[u8], budget: usize) -> Escaped {
    escape_as(bytes, budget, std::str::from_utf8(bytes).is_err())
}

/// As [`escape`], with the scheme chosen by the caller (all of an array uses one scheme).
pub fn escape_as(bytes: &[u8], budget: usize, scheme: bool) -> Escaped {
    let mut text = String::with_capacity(bytes.len().min(budget));
    let mut cost = 0;
    let mut push = |piece: &str, text: &mut String| -> bool {
        let c: usize = piece.chars().map(json_cost).sum();
        if cost + c > budget {
            return false;
        }
        cost += c;
        text.push_str(piece);
        true
    };
    let mut buf = [0u8; 4];
    for chunk in bytes.utf8_chunks() {
        for ch in chunk.valid().chars() {
            let piece: &str = if scheme && ch == '\\' {
                "\\\\"
            } else {
                ch.encode_utf8(&mut buf)
            };
            if !push(piece, &mut text) {
                return Escaped {
                    text,
                    escaped: scheme,
                    truncated: true,
                };
            }
        }
        for byte in chunk.invalid() {
            if !push(&format!("\\x{byte:02x}"), &mut text) {
                return Escaped {
                    text,
                    escaped: scheme,
                    truncated: true,
                };
            }
        }
    }
    Escaped {
        text,
        escaped: scheme,
        truncated: false,
    }
}

/// Insert a byte-string field, with its `_escaped`/`_truncated` flags when they are true.
/// `cut` says the kernel already truncated it.
pub fn put_bytes(map: &mut Map<String, Value>, key: &str, bytes: &[u8], budget: usize, cut: bool) {
    let e = escape(bytes, budget);
    map.insert(key.to_owned(), Value::String(e.text));
    put_flags(map, key, e.escaped, e.truncated || cut);
}

fn put_flags(map: &mut Map<String, Value>, key: &str, escaped: bool, truncated: bool) {
    if escaped {
        map.insert(format!("{key}_escaped"), Value::Bool(true));
    }
    if truncated {
        map.insert(format!("{key}_truncated"), Value::Bool(true));
    }
}

/// Insert `args` (an array of strings) within [`ARGS_BUDGET`]: one scheme for every element, and
/// the array stops (its last element cut) where the budget ends.
pub fn put_args(map: &mut Map<String, Value>, args: &[Vec<u8>], cut: bool) {
    let scheme = args.iter().any(|a| std::str::from_utf8(a).is_err());
    let mut left = ARGS_BUDGET;
    let mut out = Vec::with_capacity(args.len());
    let mut truncated = cut;
    for arg in args {
        // Each element costs its quotes and a comma too.
        let Some(room) = left.checked_sub(3) else {
            truncated = true;
            break;
        };
        let e = escape_as(arg, room, scheme);
        left -= 3 + e.text.chars().map(json_cost).sum::<usize>();
        out.push(Value::String(e.text));
        if e.truncated {
            truncated = true;
            break;
        }
    }
    map.insert("args".to_owned(), Value::Array(out));
    put_flags(map, "args", scheme, truncated);
}

/// The command line: the arguments joined by spaces (`args` is the exact form).
pub fn join_cmdline(args: &[Vec<u8>]) -> Vec<u8> {
    args.join(&b' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Undo the scheme, as a consumer would.
    fn unescape(text: &str) -> Vec<u8> {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match (bytes[i], bytes.get(i + 1)) {
                (b'\\', Some(b'\\')) => {
                    out.push(b'\\');
                    i += 2;
                }
                (b'\\', Some(b'x')) => {
                    out.push(u8::from_str_radix(&text[i + 2..i + 4], 16).unwrap());
                    i += 4;
                }
                (b, _) => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        out
    }

    #[test]
    fn valid_utf8_passes_through_and_json_escapes_controls() {
        let e = escape(b"a \"b\"\n\x1b[31m\\x41", 1000);
        assert_eq!(
            e,
            Escaped {
                text: "a \"b\"\n\x1b[31m\\x41".into(),
                escaped: false,
                truncated: false
            }
        );
        let json = serde_json::to_string(&e.text).unwrap();
        assert!(json.contains("\\u001b") && json.contains("\\n"), "{json}");
    }

    #[test]
    fn invalid_utf8_is_escaped_losslessly() {
        for input in [
            &b"\xff\xfe"[..],
            b"ok\\x41\xc3",
            b"\\\xffh\xc3\xa9\x80",
            b"\xc3\xa9\xe2\x82",
        ] {
            let e = escape(input, 1000);
            assert!(e.escaped && !e.truncated);
            assert_eq!(unescape(&e.text), input, "{:?}", e.text);
        }
    }

    #[test]
    fn budget_is_counted_in_json_bytes_and_flags_the_cut() {
        let input = vec![0x01u8; 1000]; // each costs 6 bytes once quoted
        let e = escape(&input, 600);
        assert!(e.truncated);
        assert_eq!(serde_json::to_string(&e.text).unwrap().len(), 600 + 2);
        let e = escape("ééé".as_bytes(), 5);
        assert_eq!((e.text.as_str(), e.truncated), ("éé", true));
    }

    #[test]
    fn args_share_one_scheme_and_one_budget() {
        let mut map = Map::new();
        put_args(&mut map, &[b"plain\\".to_vec(), b"\xff".to_vec()], false);
        assert_eq!(map["args"], serde_json::json!(["plain\\\\", "\\xff"]));
        assert_eq!(map["args_escaped"], true);
        let mut map = Map::new();
        let huge = vec![vec![b'\n'; 10_000]; 10];
        put_args(&mut map, &huge, false);
        assert_eq!(map["args_truncated"], true);
        assert!(serde_json::to_string(&map["args"]).unwrap().len() <= ARGS_BUDGET + 2);
    }
}
