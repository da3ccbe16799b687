//! What owoctl writes to a terminal: text from other users' processes made harmless, and
//! colours only where they are wanted.

use std::io::IsTerminal;

/// `text` with every control character dropped: names and command lines come from other
/// users' processes, and no escape sequence of theirs reaches the terminal.
pub fn printable(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).collect()
}

/// Colours: standard output is a terminal and `NO_COLOR` is not set (no-color.org).
pub fn colours() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// An SGR colour (`31` red, `1;41` bold on red, ...), or nothing.
pub struct Paint(pub bool);

impl Paint {
    pub fn paint(&self, sgr: &str, text: &str) -> String {
        if self.0 {
            format!("\x1b[{sgr}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}
