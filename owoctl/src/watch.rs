//! `owoctl watch`: records as they happen, from the socket owod's `Watch` hands out. One line a
//! record for people (time, type, pid, comm and what matters for its type; alerts stand out),
//! or the records themselves with `--json`. Lines owod had to drop because this reader was too
//! slow are told on standard error, with how many.

use std::{
    io::{self, BufRead, BufReader, Write},
    os::{fd::OwnedFd, unix::net::UnixStream},
};

use serde_json::Value;

use crate::terminal::{printable, Paint};

/// The names `--monitor` takes: owod's monitors, and its alerts and own records.
pub const NAMES: &[&str] = &[
    "execve",
    "exit",
    "file",
    "network",
    "privilege",
    "module",
    "write",
    "behavior",
    "agent",
];

/// Which records to show: of these monitors (all if none), of this process (any if none).
pub struct Filter {
    pub monitors: Vec<String>,
    pub pid: Option<u32>,
}

impl Filter {
    fn shows(&self, event: &Value) -> bool {
        let kind = event["event_type"].as_str().unwrap_or_default();
        (self.monitors.is_empty() || self.monitors.iter().any(|m| m == kind))
            && self
                .pid
                .is_none_or(|pid| event["pid"].as_u64() == Some(pid.into()))
    }
}

/// A field as text: strings as they are (made printable), numbers as numbers.
fn field(event: &Value, key: &str) -> String {
    match &event[key] {
        Value::String(s) => printable(s),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// ` = RET` for a failed call (an in-progress connect is not a failure).
fn failed(event: &Value) -> String {
    match event["ret"].as_i64() {
        Some(ret) if ret < 0 && ret != -115 => format!(" = {ret}"),
        _ => String::new(),
    }
}

/// What matters in a record of its type.
fn detail(event: &Value) -> String {
    let f = |key| field(event, key);
    match event["event_type"].as_str().unwrap_or_default() {
        "execve" => f("cmdline"),
        "exit" => match event["signal"].as_u64() {
            Some(signal) => format!("signal {signal}"),
            None => format!("exit code {}", f("exit_code")),
        },
        "file" => {
            let to = match event["path2"].as_str() {
                Some(_) => format!(" -> {}", f("path2")),
                None => String::new(),
            };
            format!("{} {}{to}{}", f("type"), f("path"), failed(event))
        }
        "network" => {
            let dns = match event["dns_query"].as_str() {
                Some(_) => format!(" ? {}", f("dns_query")),
                None => String::new(),
            };
            format!(
                "{} {} {}:{} -> {}:{}{dns}{}",
                f("type"),
                f("protocol"),
                f("saddr"),
                f("sport"),
                f("daddr"),
                f("dport"),
                failed(event)
            )
        }
        "privilege" => format!(
            "{} uid {}->{} euid {}->{}{}",
            f("type"),
            f("uid"),
            f("new_uid"),
            f("euid"),
            f("new_euid"),
            failed(event)
        ),
        "module" => format!("{} {}{}", f("type"), f("path"), failed(event)),
        "write" => format!("{} bytes to {}", f("count"), f("path")),
        "behavior" => format!("{} [{}] {}", f("rule"), f("severity"), f("detail")),
        "agent" if event["type"] == "loss" => {
            format!(
                "loss: {} records at {} {}",
                f("count"),
                f("stage"),
                f("monitor")
            )
        }
        "agent" => f("type"),
        _ => String::new(),
    }
}

/// One record as one readable line (no newline).
pub fn line(record: &Value, paint: &Paint) -> String {
    let event = &record["event"];
    let kind = event["event_type"].as_str().unwrap_or("?");
    // The time of day, to the millisecond, of an RFC 3339 timestamp.
    let timestamp = record["timestamp"].as_str().unwrap_or_default();
    let time = timestamp.get(11..23).unwrap_or(timestamp);
    let colour = match kind {
        "execve" => "32",
        "exit" => "2",
        "file" | "write" => "36",
        "network" => "34",
        "privilege" => "35",
        "module" | "agent" => "33",
        "behavior" => "1;97;41",
        _ => "0",
    };
    let label = if kind == "behavior" { "ALERT" } else { kind };
    let rest = format!(
        "{:>7} {:<15} {}",
        field(event, "pid"),
        field(event, "comm"),
        detail(event)
    );
    if kind == "behavior" {
        // An alert stands out whole.
        paint.paint(colour, &format!("{time} {label:<9} {rest}"))
    } else {
        format!(
            "{time} {} {rest}",
            paint.paint(colour, &format!("{label:<9}"))
        )
    }
}

/// Read records from `socket` until owod closes it (it stops) and print those `filter` shows.
pub fn run(socket: OwnedFd, filter: &Filter, json: bool, paint: &Paint) -> io::Result<()> {
    let reader = BufReader::new(UnixStream::from(socket));
    let mut out = io::stdout().lock();
    for text in reader.split(b'\n') {
        let text = text?;
        let Ok(record) = serde_json::from_slice::<Value>(&text) else {
            eprintln!("owoctl: owod sent a line that is not JSON; skipped");
            continue;
        };
        if let Some(dropped) = record["watch"]["dropped"].as_u64() {
            eprintln!(
                "owoctl: {dropped} records not shown: this view read too slowly (owod wrote them all to its outputs)"
            );
            continue;
        }
        if !filter.shows(&record["event"]) {
            continue;
        }
        let written = if json {
            out.write_all(&text).and_then(|()| out.write_all(b"\n"))
        } else {
            writeln!(out, "{}", line(&record, paint))
        };
        match written.and_then(|()| out.flush()) {
            // The reader of our output has gone (`owoctl watch | head`): that is the end.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
            other => other?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn each_type_has_its_line_and_nothing_reaches_the_terminal_raw() {
        let record =
            |event: Value| json!({"timestamp": "2026-12-07T23:59:58.123456789Z", "event": event});
        let plain = Paint(false);
        assert_eq!(
            line(
                &record(
                    json!({"event_type": "execve", "pid": 42, "comm": "ls", "cmdline": "ls -la \u{1b}[2J"})
                ),
                &plain
            ),
            "23:59:58.123 execve         42 ls              ls -la [2J"
        );
        assert_eq!(
            line(&record(json!({"event_type": "network", "pid": 7, "comm": "curl", "type": "connect", "protocol": "tcp", "saddr": "10.0.0.1", "sport": 5000, "daddr": "1.1.1.1", "dport": 443, "ret": -115})), &plain),
            "23:59:58.123 network         7 curl            connect tcp 10.0.0.1:5000 -> 1.1.1.1:443"
        );
        assert_eq!(
            line(
                &record(
                    json!({"event_type": "file", "pid": 7, "comm": "mv", "type": "rename", "path": "/etc/a", "path2": "/etc/b", "ret": -2})
                ),
                &plain
            ),
            "23:59:58.123 file            7 mv              rename /etc/a -> /etc/b = -2"
        );
        let alert = line(
            &record(
                json!({"event_type": "behavior", "pid": 9, "rule": "reverse_shell", "severity": "high", "detail": "sh with a socket"}),
            ),
            &Paint(true),
        );
        assert!(
            alert.starts_with("\u{1b}[1;97;41m23:59:58.123 ALERT")
                && alert.contains("reverse_shell [high] sh with a socket"),
            "{alert:?}"
        );
        let filter = Filter {
            monitors: vec!["file".into()],
            pid: Some(7),
        };
        assert!(filter.shows(&json!({"event_type": "file", "pid": 7})));
        assert!(!filter.shows(&json!({"event_type": "file", "pid": 8})));
        assert!(!filter.shows(&json!({"event_type": "execve", "pid": 7})));
    }
}
