//! JSON rendering rules: one object per line, valid UTF-8, never more than
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

/// No line is longer than this (newline excluded).
pub const LINE_MAX: usize = 64 * 1024;
/// Budget of one path field: a path the kernel gives is under 4 KiB, and some escaping fits.
/// The budgets of the fullest record (an exec) add up to less than [`LINE_MAX`] with room for
/// the wrapper, so that no record is ever too long to write.
pub const PATH_BUDGET: usize = 4608;
/// Budget of `args`, all elements together.
pub const ARGS_BUDGET: usize = 16 * 1024;
/// Budget of a command line.
pub const CMDLINE_BUDGET: usize = 8 * 1024;
/// Budget of the parent's command line, which an exec record carries for context.
pub const PARENT_CMDLINE_BUDGET: usize = 4 * 1024;
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
pub fn json_cost(c: char) -> usize {
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
    // Most strings need nothing: valid UTF-8 with no byte that JSON escapes costs its length.
    if !scheme && bytes.len() <= budget && !bytes.iter().any(|&b| ESCAPED[usize::from(b)]) {
        if let Ok(text) = std::str::from_utf8(bytes) {
            return Escaped {
                text: text.to_owned(),
                escaped: false,
                truncated: false,
            };
        }
    }
    escape_each(bytes, budget, scheme)
}

/// [`escape_as`], a character at a time.
fn escape_each(bytes: &[u8], budget: usize, scheme: bool) -> Escaped {
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

/// The bytes that JSON strings escape: the controls, `"` and `\\`.
static ESCAPED: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// Append `s` as a JSON string: quoted, and escaped as serde_json escapes.
pub fn push_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    while let Some(skip) = bytes[start..].iter().position(|&b| ESCAPED[usize::from(b)]) {
        let i = start + skip;
        out.push_str(&s[start..i]);
        let b = bytes[i];
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            _ => "",
        };
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// How a byte string came out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    /// The `\xHH` scheme was used.
    pub escaped: bool,
    /// The budget cut it short.
    pub truncated: bool,
}

/// Append `bytes` as a JSON string that costs at most `budget` bytes between its quotes, by the
/// scheme above (`scheme`: use the `\xHH` scheme even if `bytes` are valid UTF-8, as all of an
/// array does when one element needs it).
pub fn push_bytes(out: &mut String, bytes: &[u8], budget: usize, scheme: bool) -> Flags {
    // The common case, valid UTF-8 within budget once escaped, is written in one pass.
    if !scheme && bytes.len() <= budget {
        if let Ok(text) = std::str::from_utf8(bytes) {
            let start = out.len();
            push_str(out, text);
            if out.len() - start - 2 <= budget {
                return Flags::default();
            }
            out.truncate(start);
        }
    }
    let e = escape_as(bytes, budget, scheme || std::str::from_utf8(bytes).is_err());
    push_str(out, &e.text);
    Flags {
        escaped: e.escaped,
        truncated: e.truncated,
    }
}

/// The budget of `args`, shared by [`push_args`] and [`args_texts`]: one scheme for every element
/// (the `\xHH` one if any element needs it), and each element given the room left. `put` takes
/// the element's index, bytes, room and scheme, and answers its JSON cost and whether it was cut;
/// the array stops at a cut element.
fn within_args_budget<'a>(
    args: impl Iterator<Item = &'a [u8]> + Clone,
    mut put: impl FnMut(usize, &'a [u8], usize, bool) -> (usize, bool),
) -> Flags {
    let scheme = args.clone().any(|a| std::str::from_utf8(a).is_err());
    let mut flags = Flags {
        escaped: scheme,
        truncated: false,
    };
    let mut left = ARGS_BUDGET;
    for (i, arg) in args.enumerate() {
        // Each element costs its quotes and a comma too.
        let Some(room) = left.checked_sub(3) else {
            flags.truncated = true;
            break;
        };
        let (cost, cut) = put(i, arg, room, scheme);
        left -= 3 + cost;
        if cut {
            flags.truncated = true;
            break;
        }
    }
    flags
}

/// Append `args` as a JSON array within [`ARGS_BUDGET`]: one scheme for every element, and the
/// array stops (its last element cut) where the budget ends.
pub fn push_args<'a>(out: &mut String, args: impl Iterator<Item = &'a [u8]> + Clone) -> Flags {
    out.push('[');
    let flags = within_args_budget(args, |i, arg, room, scheme| {
        if i > 0 {
            out.push(',');
        }
        let start = out.len();
        let cut = push_bytes(out, arg, room, scheme).truncated;
        (out.len() - start - 2, cut)
    });
    out.push(']');
    flags
}

/// The elements [`push_args`] writes, as the strings a JSON reader gets back from its array
/// (for the rule engine, which reads `args` as a list without a round trip through JSON).
pub fn args_texts<'a>(args: impl Iterator<Item = &'a [u8]> + Clone) -> (Vec<String>, Flags) {
    let mut texts = Vec::new();
    let flags = within_args_budget(args, |_, arg, room, scheme| {
        let e = escape_as(arg, room, scheme);
        let cost = e.text.chars().map(json_cost).sum();
        texts.push(e.text);
        (cost, e.truncated)
    });
    (texts, flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_strings_take_the_short_way_to_the_same_result() {
        let samples: &[&[u8]] = &[
            b"",
            b"/usr/bin/ls",
            "caf\u{e9} \u{1f600}".as_bytes(),
            b"tab\there",
            b"quote\"",
            b"back\\slash",
            b"\xff\xfe",
            b"0123456789",
        ];
        for bytes in samples {
            for budget in [0, 1, 5, 9, 10, 11, 64] {
                for scheme in [false, true] {
                    assert_eq!(
                        escape_as(bytes, budget, scheme),
                        escape_each(bytes, budget, scheme),
                        "{bytes:?} in {budget} ({scheme})"
                    );
                }
            }
        }
    }

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

    /// What serde_json makes of a written string, and the flags.
    fn written(bytes: &[u8], budget: usize) -> (String, Flags) {
        let mut out = String::new();
        let flags = push_bytes(&mut out, bytes, budget, false);
        assert!(out.len() - 2 <= budget, "{out} over {budget}");
        (serde_json::from_str(&out).expect("valid JSON"), flags)
    }

    #[test]
    fn written_strings_are_the_escaped_text_as_json() {
        for input in [
            &b"plain"[..],
            b"a \"b\"\n\x1b[31m\\x41\x7f\x08\x0c\t\r",
            b"\xff\xfe",
            b"ok\\x41\xc3",
            "é€😀".as_bytes(),
        ] {
            let e = escape(input, 1000);
            let serde = serde_json::to_string(&e.text).unwrap();
            let mut ours = String::new();
            push_str(&mut ours, &e.text);
            assert_eq!(ours, serde);
            assert_eq!(
                written(input, 1000),
                (
                    e.text,
                    Flags {
                        escaped: e.escaped,
                        truncated: false
                    }
                )
            );
        }
    }

    #[test]
    fn a_written_string_keeps_its_budget() {
        let (text, flags) = written(&[b'\n'; 100], 11);
        assert_eq!((text.as_str(), flags.truncated), ("\n\n\n\n\n", true));
        let (text, flags) = written("ééé".as_bytes(), 5);
        assert_eq!((text.as_str(), flags.truncated), ("éé", true));
        assert_eq!(written(b"abc", 3).1, Flags::default());
    }

    fn args(list: &[&[u8]]) -> (serde_json::Value, Flags) {
        let mut out = String::new();
        let flags = push_args(&mut out, list.iter().copied());
        (serde_json::from_str(&out).expect("valid JSON"), flags)
    }

    #[test]
    fn args_share_one_scheme_and_one_budget() {
        let (value, flags) = args(&[b"plain\\", b"\xff"]);
        assert_eq!(value, serde_json::json!(["plain\\\\", "\\xff"]));
        assert!(flags.escaped && !flags.truncated);
        assert_eq!(args(&[]).0, serde_json::json!([]));
        let huge = vec![b'\n'; 10_000];
        let list: Vec<&[u8]> = vec![&huge; 10];
        let (value, flags) = args(&list);
        assert!(flags.truncated && !flags.escaped);
        assert!(serde_json::to_string(&value).unwrap().len() <= ARGS_BUDGET + 2);
    }
}
