//! `owoctl top`: a screen that refreshes every second from owod's status: records per second
//! and losses of each monitor, the queues between the stages, owod's CPU and memory (from
//! /proc), the process table and hash cache, each output with a remote's state and backlog,
//! and the last alerts (the `Alert` signal, which the bus gives root only).

use std::{fmt::Write as _, time::Instant};

use serde_json::Value;

use crate::terminal::printable;

/// owod's status at one moment, and its CPU time then.
pub struct Sample {
    pub status: Value,
    pub at: Instant,
    /// CPU time of all its threads in nanoseconds, and resident bytes.
    pub usage: Option<(u64, u64)>,
}

impl Sample {
    pub fn now(status: Value) -> Sample {
        let usage = status["pid"].as_u64().and_then(usage);
        Sample {
            status,
            at: Instant::now(),
            usage,
        }
    }
}

/// The CPU time (ns, user and system, of every thread) and resident memory (bytes) of
/// process `pid`, from proc(5).
fn usage(pid: u64) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name (which may hold spaces and parentheses): state is field 3, utime
    // and stime fields 14 and 15, in clock ticks.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf reads a constant of the system; it has no memory effect.
    let per_second = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .ok()
        .filter(|&t| t > 0)?;
    let cpu = ticks * 1_000_000_000 / per_second;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some((cpu, rss_kib * 1024))
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

fn duration(seconds: u64) -> String {
    match seconds {
        s if s >= 86400 => format!("{}d{}h", s / 86400, s % 86400 / 3600),
        s if s >= 3600 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m{}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

/// One screen from two samples (rates are their difference) and the last alerts.
pub fn render(before: &Sample, now: &Sample, alerts: &[Value]) -> String {
    let v = &now.status;
    let seconds = now.at.duration_since(before.at).as_secs_f64().max(0.001);
    let rate = |now: &Value, before: &Value| {
        now.as_u64()
            .unwrap_or(0)
            .saturating_sub(before.as_u64().unwrap_or(0)) as f64
            / seconds
    };
    let text = |v: &Value| printable(v.as_str().unwrap_or("?"));
    let mut out = String::new();
    let usage = match (before.usage, now.usage) {
        (Some((cpu0, _)), Some((cpu1, rss))) => format!(
            "CPU {:.1}%  RSS {}",
            cpu1.saturating_sub(cpu0) as f64 / (seconds * 1e7),
            bytes(rss)
        ),
        _ => "CPU ?  RSS ?".to_owned(),
    };
    let _ = writeln!(
        out,
        "owod {}  pid {}  up {}  kernel {} ({}, {})  {usage}",
        text(&v["version"]),
        v["pid"],
        duration(v["uptime_seconds"].as_u64().unwrap_or(0)),
        text(&v["kernel"]),
        text(&v["bpf_object"]),
        text(&v["bpf_loops"]),
    );
    let c = &v["counters"];
    let _ = writeln!(
        out,
        "records {} ({:.1}/s)  queued: collector->process {} batches, in process stage {} records, ->outputs {} batches",
        v["records"],
        rate(&v["records"], &before.status["records"]),
        c["process_queue_batches"],
        c["process_queue_records"],
        v["hub_queue_batches"],
    );
    let (hashed, hits) = (
        c["hashed"].as_u64().unwrap_or(0),
        c["hash_cache_hits"].as_u64().unwrap_or(0),
    );
    let hit_rate = match hashed + hits {
        0 => "-".to_owned(),
        all => format!("{:.1}%", 100.0 * hits as f64 / all as f64),
    };
    let _ = writeln!(
        out,
        "process table {} entries  hash cache {hit_rate} hits ({hits} from the cache, {hashed} hashed)",
        c["process_table_entries"],
    );

    // Monitors, then the alerts and owod's own records, which no monitor makes.
    let _ = writeln!(
        out,
        "\n{:<10} {:<12} {:>10} {:>10} {:>8}",
        "MONITOR", "STATE", "RECORDS/S", "RECORDS", "LOST"
    );
    let lost_of = |monitor: &str| -> u64 {
        v["lost"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(key, _)| key.split('/').next() == Some(monitor))
            .filter_map(|(_, n)| n.as_u64())
            .sum()
    };
    let by_type = &v["records_by_type"];
    let before_type = &before.status["records_by_type"];
    let mut rows: Vec<(String, String)> = v["monitors"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, m)| {
            let state = match (m["on"].as_bool(), m["state"].as_str()) {
                (_, Some("unavailable")) => "unavailable",
                (Some(true), _) => "on",
                _ => "off",
            };
            (name.clone(), state.to_owned())
        })
        .collect();
    rows.extend(
        [("behavior", "alerts"), ("agent", "owod's own")].map(|(a, b)| (a.into(), b.into())),
    );
    for (name, state) in rows {
        let _ = writeln!(
            out,
            "{:<10} {:<12} {:>10.1} {:>10} {:>8}",
            name,
            state,
            rate(&by_type[&name], &before_type[&name]),
            by_type[&name].as_u64().unwrap_or(0),
            lost_of(&name)
        );
    }
    let other: u64 = v["lost"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(key, _)| key.starts_with("-/"))
        .filter_map(|(_, n)| n.as_u64())
        .sum();
    if other > 0 {
        let _ = writeln!(out, "lost at the outputs: {other}");
    }

    let _ = writeln!(
        out,
        "\n{:<7} {:<36} {:<12} {:>10} {:>10} {:>7}",
        "OUTPUT", "TARGET", "STATE", "DELIVERED", "BACKLOG", "ERRORS"
    );
    for sink in v["sinks"].as_array().into_iter().flatten() {
        let remote = &sink["remote"];
        let (state, delivered, backlog) = if remote.is_object() {
            (
                text(&remote["state"]),
                remote["delivered"].to_string(),
                bytes(remote["backlog_bytes"].as_u64().unwrap_or(0)),
            )
        } else {
            ("-".to_owned(), "-".to_owned(), "-".to_owned())
        };
        let _ = writeln!(
            out,
            "{:<7} {:<36} {:<12} {:>10} {:>10} {:>7}",
            text(&sink["name"]),
            text(&sink["target"]),
            state,
            delivered,
            backlog,
            sink["write_errors"]
        );
        if let Some(error) = remote["last_error"].as_str() {
            let _ = writeln!(out, "        last error: {}", printable(error));
        }
    }

    let _ = writeln!(out, "\nLAST ALERTS");
    if alerts.is_empty() {
        let _ = writeln!(
            out,
            "(none since owoctl top started; the bus gives them to root only)"
        );
    }
    for alert in alerts {
        let _ = writeln!(
            out,
            "{} [{}] pid {}: {}",
            text(&alert["rule"]),
            text(&alert["severity"]),
            alert["pid"],
            text(&alert["detail"])
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_screen_shows_rates_losses_queues_outputs_and_alerts() {
        let status = |records: u64, execs: u64| {
            json!({
                "version": "0.1.0", "pid": 1, "uptime_seconds": 75, "kernel": "6.1", "bpf_object": "built-in",
                "bpf_loops": "bpf_loop", "records": records, "hub_queue_batches": 1,
                "records_by_type": {"execve": execs, "agent": 1},
                "lost": {"file/ring": 3, "-/remote_unavailable": 2},
                "monitors": {"execve": {"on": true, "state": "attached"}, "file": {"on": true, "state": "attached"},
                             "module": {"on": false, "state": "unavailable"}},
                "counters": {"hashed": 1, "hash_cache_hits": 3, "process_table_entries": 40,
                             "process_queue_batches": 0, "process_queue_records": 2},
                "sinks": [{"name": "remote", "target": "http://c:80", "write_errors": 0,
                           "remote": {"state": "backing_off", "delivered": 5, "backlog_bytes": 2048, "last_error": "refused\u{1b}[2J"}}],
            })
        };
        let before = Sample {
            status: status(10, 5),
            at: Instant::now(),
            usage: Some((0, 0)),
        };
        let now = Sample {
            status: status(30, 15),
            at: before.at + std::time::Duration::from_secs(2),
            usage: Some((20_000_000, 3 << 20)),
        };
        let alert = json!({"rule": "reverse_shell", "severity": "high", "pid": 9, "detail": "sh"});
        let screen = render(&before, &now, &[alert]);
        for part in [
            "up 1m15s",
            "CPU 1.0%  RSS 3.0 MiB",
            "records 30 (10.0/s)",
            "in process stage 2 records, ->outputs 1 batches",
            "hash cache 75.0% hits",
            "execve     on                  5.0         15        0",
            "file       on                  0.0          0        3",
            "module     unavailable",
            "lost at the outputs: 2",
            "backing_off",
            "2.0 KiB",
            "last error: refused[2J",
            "reverse_shell [high] pid 9: sh",
        ] {
            assert!(screen.contains(part), "no `{part}` in\n{screen}");
        }
    }
}
