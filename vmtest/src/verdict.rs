//! The one line a guest prints per check, and its parser on the host: the only thing the two
//! sides share. A line is `VMTEST <kernel> <monitor> PASS|FAIL|SKIP <scenario>: <detail>`, and a
//! guest that got to the end says `VMTEST-END <kernel>`; a kernel without that line did not finish.

use std::fmt;

/// The columns of the matrix, in the order the table shows them.
pub const MONITORS: [&str; 12] = [
    "execve",
    "exit",
    "fork",
    "file",
    "write",
    "network",
    "privilege",
    "module",
    "compat",
    "io_uring",
    "behavior",
    "owod",
];

const PREFIX: &str = "VMTEST ";
const END: &str = "VMTEST-END ";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Pass,
    Skip,
    Fail,
}

impl Outcome {
    fn parse(word: &str) -> Option<Outcome> {
        match word {
            "PASS" => Some(Outcome::Pass),
            "SKIP" => Some(Outcome::Skip),
            "FAIL" => Some(Outcome::Fail),
            _ => None,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Pass => "PASS",
            Outcome::Skip => "SKIP",
            Outcome::Fail => "FAIL",
        })
    }
}

/// What a check found: PASS or SKIP with what was seen, or FAIL with what was wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub outcome: Outcome,
    pub detail: String,
}

impl Verdict {
    pub fn pass(detail: impl Into<String>) -> Verdict {
        Verdict {
            outcome: Outcome::Pass,
            detail: detail.into(),
        }
    }

    pub fn skip(detail: impl Into<String>) -> Verdict {
        Verdict {
            outcome: Outcome::Skip,
            detail: detail.into(),
        }
    }

    pub fn fail(detail: impl Into<String>) -> Verdict {
        Verdict {
            outcome: Outcome::Fail,
            detail: detail.into(),
        }
    }
}

/// One check of one kernel, as printed and as parsed back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckLine {
    pub kernel: String,
    pub monitor: String,
    pub scenario: String,
    pub verdict: Verdict,
}

impl fmt::Display for CheckLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One line whatever the detail holds: a console line is the unit the host reads.
        let detail: String = self
            .verdict
            .detail
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        write!(
            f,
            "{PREFIX}{} {} {} {}: {detail}",
            self.kernel, self.monitor, self.verdict.outcome, self.scenario
        )
    }
}

impl CheckLine {
    /// A check line, or `None` for any other console line.
    pub fn parse(line: &str) -> Option<CheckLine> {
        let rest = line.trim_end_matches(['\r', '\n']).strip_prefix(PREFIX)?;
        let mut words = rest.splitn(4, ' ');
        let kernel = words.next()?;
        let monitor = words.next()?;
        let outcome = Outcome::parse(words.next()?)?;
        let (scenario, detail) = words.next()?.split_once(": ")?;
        Some(CheckLine {
            kernel: kernel.into(),
            monitor: monitor.into(),
            scenario: scenario.into(),
            verdict: Verdict {
                outcome,
                detail: detail.into(),
            },
        })
    }
}

/// The line a guest prints once every check is out.
pub fn end_line(kernel: &str) -> String {
    format!("{END}{kernel}")
}

/// The kernel of an end line, or `None` for any other line.
pub fn parse_end(line: &str) -> Option<&str> {
    line.trim_end_matches(['\r', '\n']).strip_prefix(END)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_line_survives_the_round_trip() {
        let line = CheckLine {
            kernel: "6.1.0-57-amd64".into(),
            monitor: "network".into(),
            scenario: "tcp connect ipv6".into(),
            verdict: Verdict::fail("dport: expected 4242, got 80: the record"),
        };
        let text = line.to_string();
        assert_eq!(
            text,
            "VMTEST 6.1.0-57-amd64 network FAIL tcp connect ipv6: dport: expected 4242, got 80: the record"
        );
        assert_eq!(CheckLine::parse(&format!("{text}\r\n")), Some(line));
    }

    #[test]
    fn control_characters_in_a_detail_stay_on_one_line() {
        let line = CheckLine {
            kernel: "k".into(),
            monitor: "owod".into(),
            scenario: "start".into(),
            verdict: Verdict::fail("first\nsecond\r"),
        };
        assert_eq!(line.to_string(), "VMTEST k owod FAIL start: first second ");
    }

    #[test]
    fn other_console_lines_are_not_checks() {
        for line in [
            "",
            "[    1.234] Run /init as init process",
            "VMTEST k owod MAYBE start: x",
            "VMTEST k owod PASS start without a colon",
            "VMTEST-END k",
        ] {
            assert_eq!(CheckLine::parse(line), None, "{line:?}");
        }
        assert_eq!(
            parse_end("VMTEST-END 7.2.13+deb14-amd64\r"),
            Some("7.2.13+deb14-amd64")
        );
        assert_eq!(parse_end("VMTEST k owod PASS a: b"), None);
    }
}
