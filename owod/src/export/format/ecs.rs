//! Records in the Elastic Common Schema 8 (`format: ecs`). The places of owod's fields are the
//! tables below; owo.yaml(5) shows the same tables.

use super::{As, Doc, Fields, Outcome, Place, Wrapper};
use crate::pipeline::record::Record;

/// The ECS version the records follow (`ecs.version`).
pub const VERSION: &str = "8.11.0";

/// The fields every process-attributed record has.
pub const ACTOR: &[Place] = &[
    ("pid", "process.pid", As::Same),
    ("tid", "process.thread.id", As::Same),
    ("ppid", "process.parent.pid", As::Same),
    ("uid", "process.real_user.id", As::Text),
    ("uid", "user.id", As::Text),
    ("user", "process.real_user.name", As::Same),
    ("user", "user.name", As::Same),
    ("gid", "process.real_group.id", As::Text),
    ("gid", "user.group.id", As::Text),
    ("comm", "process.name", As::Same),
    ("exe", "process.executable", As::Same),
];

pub const EXEC: &[Place] = &[
    ("cmdline", "process.command_line", As::Same),
    ("args", "process.args", As::Same),
    ("cwd", "process.working_directory", As::Same),
    ("sha256", "process.hash.sha256", As::Same),
    ("is_tty", "process.interactive", As::Same),
    ("container_id", "container.id", As::Same),
    ("container_runtime", "container.runtime", As::Same),
    ("parent_path", "process.parent.executable", As::Same),
    ("parent_cmdline", "process.parent.command_line", As::Same),
];

pub const EXIT: &[Place] = &[("exit_code", "process.exit_code", As::Same)];

pub const FILE: &[Place] = &[
    ("type", "event.action", As::Same),
    ("path", "file.path", As::Same),
    ("mode", "file.mode", As::Octal),
];

/// A connect or a datagram send: owod's end is the source.
pub const NETWORK_OUT: &[Place] = &[
    ("type", "event.action", As::Same),
    ("family", "network.type", As::Same),
    ("protocol", "network.transport", As::Text),
    ("saddr", "source.ip", As::Same),
    ("sport", "source.port", As::Same),
    ("daddr", "destination.ip", As::Same),
    ("dport", "destination.port", As::Same),
    ("dns_query", "dns.question.name", As::Same),
];

/// An accept: the peer is the source.
pub const NETWORK_IN: &[Place] = &[
    ("type", "event.action", As::Same),
    ("family", "network.type", As::Same),
    ("protocol", "network.transport", As::Text),
    ("daddr", "source.ip", As::Same),
    ("dport", "source.port", As::Same),
    ("saddr", "destination.ip", As::Same),
    ("sport", "destination.port", As::Same),
];

pub const PRIVILEGE: &[Place] = &[
    ("type", "event.action", As::Same),
    ("euid", "user.effective.id", As::Text),
    ("egid", "user.effective.group.id", As::Text),
    ("new_uid", "user.changes.id", As::Text),
    ("new_gid", "user.changes.group.id", As::Text),
];

pub const MODULE: &[Place] = &[
    ("type", "event.action", As::Same),
    ("path", "file.path", As::Same),
];

pub const WRITE: &[Place] = &[("path", "file.path", As::Same)];

pub const BEHAVIOR: &[Place] = &[
    ("rule", "rule.name", As::Same),
    ("description", "rule.description", As::Same),
    ("detail", "message", As::Same),
    ("pid", "process.pid", As::Same),
];

pub const AGENT: &[Place] = &[("type", "event.action", As::Same)];

/// Every table, for the test that owo.yaml(5) shows them.
#[cfg(test)]
pub const TABLES: &[&[Place]] = &[
    ACTOR,
    EXEC,
    EXIT,
    FILE,
    NETWORK_OUT,
    NETWORK_IN,
    PRIVILEGE,
    MODULE,
    WRITE,
    BEHAVIOR,
    AGENT,
];

/// `event.kind`, `event.category` and `event.type` of a record (the pairs ECS allows); owod's
/// own records have no category.
fn kind(record: &Record, fields: &Fields) -> (&'static str, &'static str, &'static [&'static str]) {
    match record {
        Record::Exec(_) => ("event", "process", &["start"]),
        Record::Exit(_) => ("event", "process", &["end"]),
        Record::Privilege(_) => ("event", "process", &["change"]),
        Record::File(file) => match file.kind {
            "create" => ("event", "file", &["creation"]),
            "unlink" => ("event", "file", &["deletion"]),
            "rename" => ("event", "file", &["change"]),
            "library_load" => ("event", "library", &["start"]),
            _ => ("event", "file", &["access"]),
        },
        Record::Write(_) => ("event", "file", &["change"]),
        Record::Network(_) if fields.get("dns_query").is_some() => {
            ("event", "network", &["connection", "protocol"])
        }
        Record::Network(_) => ("event", "network", &["connection", "start"]),
        Record::Module(_) => ("event", "driver", &["start"]),
        Record::Behavior(_) => ("alert", "intrusion_detection", &["info"]),
        Record::Agent(_) => ("event", "", &[]),
        Record::Tamper(_) => ("alert", "intrusion_detection", &["info"]),
    }
}

/// `event.severity` of an alert: the risk scores Elastic's rules give each severity.
fn severity(name: &str) -> u64 {
    match name {
        "critical" => 99,
        "high" => 73,
        "medium" => 47,
        _ => 21,
    }
}

/// The device numbers of a terminal owod names (`pts/N`, `ttyN`, `ttySN`), by the kernel's
/// fixed allocation (Documentation/admin-guide/devices.txt).
fn char_device(tty: &str) -> Option<(u64, u64)> {
    let tty = tty.strip_prefix("/dev/").unwrap_or(tty);
    let number = |s: &str| s.parse::<u64>().ok();
    if let Some(n) = tty.strip_prefix("pts/").and_then(number) {
        return (n < 2048).then_some((136 + n / 256, n % 256));
    }
    if let Some(n) = tty.strip_prefix("ttyS").and_then(number) {
        return (n < 192).then_some((4, 64 + n));
    }
    tty.strip_prefix("tty")
        .and_then(number)
        .filter(|&n| n < 64)
        .map(|n| (4, n))
}

/// The record as one ECS document (one JSON line, without its newline) in `out`.
pub fn render(wrapper: &Wrapper, record: &Record, out: &mut String) {
    let fields = Fields::of(record);
    let mut doc = Doc::default();
    doc.placed("event_type");
    let id = wrapper.identity;
    doc.put("@timestamp", wrapper.timestamp);
    let (kind, category, types) = kind(record, &fields);
    doc.put("event.kind", kind);
    if !category.is_empty() {
        doc.put("event.category", vec![category]);
        doc.put("event.type", types.to_vec());
    }
    doc.put("event.sequence", wrapper.seq);
    doc.put("event.module", "owo");
    doc.put("event.dataset", format!("owo.{}", record.event_type()));
    if let Some(ret) = fields.int("ret") {
        let outcome = match Outcome::of(ret) {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Unknown => "unknown",
        };
        doc.put("event.outcome", outcome);
    }
    // `agent.id` first in `agent`: where a spool finds a line's run.
    doc.put("agent.id", id.run_id.as_str());
    doc.put("agent.name", id.agent_name.as_str());
    doc.put("agent.type", "owod");
    doc.put("agent.version", env!("CARGO_PKG_VERSION"));
    doc.put("host.name", id.agent_hostname.as_str());
    doc.put("host.hostname", id.agent_hostname.as_str());
    doc.put("ecs.version", VERSION);
    if !matches!(record, Record::Behavior(_) | Record::Agent(_)) {
        doc.place(&fields, "", ACTOR);
    }
    match record {
        Record::Exec(_) => {
            if let Some(count) = fields.get("args").and_then(|a| a.as_array()).map(Vec::len) {
                doc.put("process.args_count", count);
            }
            if let Some((major, minor)) = fields.str("tty").and_then(char_device) {
                doc.put("process.tty.char_device.major", major);
                doc.put("process.tty.char_device.minor", minor);
            }
            doc.place(&fields, "", EXEC);
        }
        Record::Exit(_) => doc.place(&fields, "", EXIT),
        Record::File(_) => doc.place(&fields, "", FILE),
        Record::Network(network) => {
            let accept = network.kind == "accept";
            doc.put(
                "network.direction",
                if accept { "ingress" } else { "egress" },
            );
            if fields.get("dns_query").is_some() {
                doc.put("network.protocol", "dns");
            }
            doc.place(&fields, "", if accept { NETWORK_IN } else { NETWORK_OUT });
        }
        Record::Privilege(_) => doc.place(&fields, "", PRIVILEGE),
        Record::Module(_) => doc.place(&fields, "", MODULE),
        Record::Write(_) => doc.place(&fields, "", WRITE),
        Record::Behavior(behavior) => {
            doc.put("event.severity", severity(&behavior.severity));
            doc.put("rule.ruleset", "owo");
            if !behavior.mitre.is_empty() {
                // `T1059.004` is the sub-technique 004 of the technique T1059.
                let mut techniques: Vec<String> = Vec::new();
                for id in &behavior.mitre {
                    let technique = id.split('.').next().unwrap_or(id);
                    if !techniques.iter().any(|t| t == technique) {
                        techniques.push(technique.to_owned());
                    }
                }
                let subtechniques: Vec<String> = behavior
                    .mitre
                    .iter()
                    .filter(|id| id.contains('.'))
                    .cloned()
                    .collect();
                doc.put("threat.framework", "MITRE ATT&CK");
                doc.put("threat.technique.id", techniques);
                if !subtechniques.is_empty() {
                    doc.put("threat.technique.subtechnique.id", subtechniques);
                }
                doc.placed("mitre");
            }
            doc.place(&fields, "", BEHAVIOR);
        }
        Record::Agent(_) | Record::Tamper(_) => doc.place(&fields, "", AGENT),
    }
    if !id.agent_group.is_empty() {
        doc.put("owo.agent_group", id.agent_group.as_str());
    }
    doc.rest("owo", fields);
    doc.write(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminals_have_the_kernels_device_numbers() {
        assert_eq!(char_device("pts/0"), Some((136, 0)));
        assert_eq!(char_device("pts/300"), Some((137, 44)));
        assert_eq!(char_device("/dev/tty1"), Some((4, 1)));
        assert_eq!(char_device("ttyS0"), Some((4, 64)));
        assert_eq!(char_device("console"), None);
        assert_eq!(char_device("pts/x"), None);
    }
}
