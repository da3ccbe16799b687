//! owod's records file read back, and `Expect`, which compares one record field by field and
//! reports every field that differs at once (a failure on an old kernel shows all it got wrong).

use std::path::Path;

use serde_json::Value;

/// Every complete line of the records file, parsed. A line that is not JSON is kept as a problem
/// for the `owod` column, not a reason to stop.
pub struct Records {
    pub all: Vec<Value>,
    pub bad_lines: Vec<String>,
}

impl Records {
    pub fn read(path: &Path) -> Records {
        let bytes = std::fs::read(path).unwrap_or_default();
        // A line still being written has no newline yet: leave it for the next read.
        let complete = &bytes[..bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)];
        Records::parse(&String::from_utf8_lossy(complete))
    }

    pub fn parse(text: &str) -> Records {
        let mut all = Vec::new();
        let mut bad_lines = Vec::new();
        for (i, line) in text.lines().enumerate() {
            match serde_json::from_str(line) {
                Ok(record) => all.push(record),
                Err(e) => bad_lines.push(format!("line {}: {e}", i + 1)),
            }
        }
        Records { all, bad_lines }
    }

    /// The first record whose event matches.
    pub fn find(&self, pred: impl Fn(&Value) -> bool) -> Option<&Value> {
        self.all.iter().find(|r| pred(event(r)))
    }

    /// The first record of `event_type` made by `pid`, or why there is none.
    pub fn of(&self, event_type: &str, pid: u32) -> Result<&Value, String> {
        self.find(|e| e["event_type"] == event_type && e["pid"] == pid)
            .ok_or_else(|| format!("no {event_type} record for pid {pid}"))
    }

    /// Every record whose event matches, in file order.
    pub fn filter(&self, pred: impl Fn(&Value) -> bool) -> Vec<&Value> {
        self.all.iter().filter(|r| pred(event(r))).collect()
    }
}

/// The `event` object of a record.
pub fn event(record: &Value) -> &Value {
    &record["event"]
}

/// The `seq` of a record (0 when it has none, which the `owod` checks catch).
pub fn seq(record: &Value) -> u64 {
    record["seq"].as_u64().unwrap_or(0)
}

/// Field-by-field expectations on one record's event.
pub struct Expect<'a> {
    what: String,
    event: &'a Value,
    problems: Vec<String>,
}

impl<'a> Expect<'a> {
    /// `what` names the record in a failure (`the execve of pid 42`).
    pub fn new(what: impl Into<String>, record: &'a Value) -> Expect<'a> {
        Expect {
            what: what.into(),
            event: event(record),
            problems: Vec::new(),
        }
    }

    /// `key` is exactly `want`.
    pub fn eq(&mut self, key: &str, want: impl Into<Value>) -> &mut Self {
        let want = want.into();
        match self.event.get(key) {
            Some(got) if *got == want => {}
            Some(got) => self.problems.push(format!("{key} is {got}, not {want}")),
            None => self
                .problems
                .push(format!("{key} is missing (want {want})")),
        }
        self
    }

    /// `key` is absent, or exactly `want`.
    pub fn absent_or(&mut self, key: &str, want: impl Into<Value>) -> &mut Self {
        let want = want.into();
        if let Some(got) = self.event.get(key) {
            if *got != want {
                self.problems
                    .push(format!("{key} is {got}, not absent or {want}"));
            }
        }
        self
    }

    /// `key` is absent.
    pub fn absent(&mut self, key: &str) -> &mut Self {
        if let Some(got) = self.event.get(key) {
            self.problems
                .push(format!("{key} is {got}, where none was expected"));
        }
        self
    }

    /// `key` is present and `pred` holds for it; `want` says what was expected.
    pub fn that(&mut self, key: &str, want: &str, pred: impl Fn(&Value) -> bool) -> &mut Self {
        match self.event.get(key) {
            Some(got) if pred(got) => {}
            Some(got) => self.problems.push(format!("{key} is {got}, not {want}")),
            None => self
                .problems
                .push(format!("{key} is missing (want {want})")),
        }
        self
    }

    /// Every problem found, or none: `Err` names the record and quotes it.
    pub fn done(&self) -> Result<(), String> {
        if self.problems.is_empty() {
            return Ok(());
        }
        Err(format!(
            "{}: {}; record: {}",
            self.what,
            self.problems.join("; "),
            self.event
        ))
    }
}

/// Whether `v` is an integer at least `min` (a file descriptor, a byte count).
pub fn at_least(min: i64) -> impl Fn(&Value) -> bool {
    move |v| v.as_i64().is_some_and(|n| n >= min)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_wrong_field_is_reported_at_once() {
        let r = json!({"seq": 3, "event": {"event_type": "network", "dport": 80, "ret": -111}});
        let mut x = Expect::new("the connect", &r);
        x.eq("event_type", "network")
            .eq("dport", 4242)
            .eq("saddr", "127.0.0.1")
            .absent_or("ret", 0);
        let err = x.done().unwrap_err();
        assert!(err.starts_with("the connect: dport is 80, not 4242; saddr is missing (want \"127.0.0.1\"); ret is -111, not absent or 0; record: "), "{err}");
    }

    #[test]
    fn matching_fields_pass() {
        let r = json!({"event": {"fd": 3, "args": ["a", "b c"]}});
        let mut x = Expect::new("w", &r);
        x.that("fd", "a descriptor", at_least(0))
            .eq("args", json!(["a", "b c"]))
            .absent("signal")
            .absent_or("ret", 0);
        assert_eq!(x.done(), Ok(()));
    }

    #[test]
    fn lines_that_are_not_json_are_kept_apart() {
        let records =
            Records::parse("{\"seq\":1,\"event\":{\"event_type\":\"agent\"}}\nnot json\n");
        assert_eq!(records.all.len(), 1);
        assert_eq!(records.bad_lines.len(), 1);
        assert!(records.find(|e| e["event_type"] == "agent").is_some());
        assert_eq!(seq(&records.all[0]), 1);
    }
}
