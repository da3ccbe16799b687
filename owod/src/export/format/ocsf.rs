//! Records as OCSF 1.7 events (`format: ocsf`), one class per kind of record. The places of
//! owod's fields are the tables below; owo.yaml(5) shows the same tables.

use super::{As, Doc, Fields, Outcome, Place, Wrapper};
use crate::pipeline::record::{Record, Sha256};

/// The OCSF version the events follow (`metadata.version`).
pub const VERSION: &str = "1.7.0";

/// The profiles every event uses: `host` (`device`, `actor`) and `linux/linux_users`
/// (`euid`, `egid`, `auid` of a process).
pub const PROFILES: &[&str] = &["host", "linux/linux_users"];

/// The process that did it (`actor.process`, or `process` where it is the subject).
pub const PROCESS: &[Place] = &[
    ("pid", "pid", As::Same),
    ("tid", "tid", As::Same),
    ("comm", "name", As::Same),
    ("exe", "file.path", As::Same),
    ("uid", "user.uid", As::Text),
    ("user", "user.name", As::Same),
    ("gid", "group.uid", As::Text),
    ("ppid", "parent_process.pid", As::Same),
];

/// An exec's own fields; its parent is the actor (`process.parent_process` has only its pid, so
/// that the costliest exec still fits in a line).
pub const EXEC: &[Place] = &[
    ("cmdline", "process.cmd_line", As::Same),
    ("cwd", "process.working_directory", As::Same),
    ("tty", "process.session.terminal", As::Same),
    ("auid", "process.auid", As::Same),
    ("container_id", "process.container.uid", As::Same),
    ("container_runtime", "process.container.runtime", As::Same),
    ("ppid", "actor.process.pid", As::Same),
    ("parent_path", "actor.process.file.path", As::Same),
    ("parent_cmdline", "actor.process.cmd_line", As::Same),
];

/// An exit: the process ends itself.
pub const EXIT: &[Place] = &[
    ("exit_code", "exit_code", As::Same),
    ("pid", "actor.process.pid", As::Same),
    ("comm", "actor.process.name", As::Same),
];

/// A set*id call: the actor is the process before it, `process` the same process after.
pub const PRIVILEGE: &[Place] = &[
    ("euid", "actor.process.euid", As::Same),
    ("egid", "actor.process.egid", As::Same),
    ("pid", "process.pid", As::Same),
    ("comm", "process.name", As::Same),
    ("new_uid", "process.user.uid", As::Text),
    ("new_gid", "process.group.uid", As::Text),
    ("new_euid", "process.euid", As::Same),
    ("new_egid", "process.egid", As::Same),
];

pub const FILE: &[Place] = &[
    ("path", "file.path", As::Same),
    ("path2", "file_result.path", As::Same),
];

pub const WRITE: &[Place] = &[("path", "file.path", As::Same)];

pub const MODULE: &[Place] = &[("path", "driver.file.path", As::Same)];

/// A connect or a datagram send: owod's end is the source.
pub const NETWORK_OUT: &[Place] = &[
    ("saddr", "src_endpoint.ip", As::Same),
    ("sport", "src_endpoint.port", As::Same),
    ("daddr", "dst_endpoint.ip", As::Same),
    ("dport", "dst_endpoint.port", As::Same),
    ("protocol", "connection_info.protocol_name", As::Text),
    ("dns_query", "query.hostname", As::Same),
];

/// An accept: the peer is the source.
pub const NETWORK_IN: &[Place] = &[
    ("daddr", "src_endpoint.ip", As::Same),
    ("dport", "src_endpoint.port", As::Same),
    ("saddr", "dst_endpoint.ip", As::Same),
    ("sport", "dst_endpoint.port", As::Same),
    ("protocol", "connection_info.protocol_name", As::Text),
];

pub const BEHAVIOR: &[Place] = &[
    ("rule", "finding_info.title", As::Same),
    ("rule", "finding_info.analytic.name", As::Same),
    ("rule", "finding_info.analytic.uid", As::Same),
    ("description", "finding_info.desc", As::Same),
    ("detail", "message", As::Same),
    ("pid", "actor.process.pid", As::Same),
];

/// Every table, for the test that owo.yaml(5) shows them.
#[cfg(test)]
pub const TABLES: &[&[Place]] = &[
    PROCESS,
    EXEC,
    EXIT,
    PRIVILEGE,
    FILE,
    WRITE,
    MODULE,
    NETWORK_OUT,
    NETWORK_IN,
    BEHAVIOR,
];

/// A record's class and activity: (`class_uid`, `activity_id`).
fn class(record: &Record, fields: &Fields) -> (u32, u32) {
    match record {
        Record::Exec(_) => (1007, 1),
        Record::Exit(_) => (1007, 2),
        Record::Privilege(_) => (1007, 5),
        Record::File(file) => match file.kind {
            "create" => (1001, 1),
            "unlink" => (1001, 4),
            "rename" => (1001, 5),
            "open" | "library_load" => (1001, 14),
            _ => (1001, 99),
        },
        Record::Write(_) => (1001, 3),
        Record::Network(_) if fields.get("dns_query").is_some() => (4003, 1),
        Record::Network(network) => match network.kind {
            "connect" | "accept" => (4001, 1),
            "sendto" => (4001, 6),
            _ => (4001, 99),
        },
        Record::Module(_) => (1002, 1),
        Record::Behavior(_) => (2004, 1),
        Record::Agent(agent) => match agent.kind {
            "start" => (6002, 3),
            "stop" => (6002, 4),
            "loss" => (6008, 1),
            _ => (6002, 99),
        },
        Record::Tamper(_) => (6002, 99),
    }
}

/// `severity_id` of a rule's severity (events are 1, informational).
fn severity(name: &str) -> u64 {
    match name {
        "critical" => 5,
        "high" => 4,
        "medium" => 3,
        _ => 2,
    }
}

/// A file object needs its name and a type: `name` from the path at `path` (empty when there
/// is no path), and `type_id` (1, a regular file, where owod knows it is one; else 0).
fn file_object(doc: &mut Doc, fields: &Fields, key: &str, path: &str, regular: bool) {
    let name = fields.str(key).map_or("", super::base_name).to_owned();
    doc.put(&format!("{path}.name"), name);
    doc.put(&format!("{path}.type_id"), u64::from(regular));
}

/// The event's `uid` of the record `seq` of a run.
fn event_uid(run_id: &str, seq: u64) -> String {
    format!("{run_id}-{seq}")
}

/// The record as one OCSF event (one JSON line, without its newline) in `out`.
pub fn render(wrapper: &Wrapper, record: &Record, out: &mut String) {
    let fields = Fields::of(record);
    let mut doc = Doc::default();
    doc.placed("event_type");
    let id = wrapper.identity;
    let (class_uid, activity_id) = class(record, &fields);
    doc.put("class_uid", class_uid);
    doc.put("category_uid", class_uid / 1000);
    doc.put("activity_id", activity_id);
    doc.put(
        "type_uid",
        u64::from(class_uid) * 100 + u64::from(activity_id),
    );
    doc.put("time", (wrapper.unix_ns / 1_000_000) as i64);
    let severity_id = match record {
        Record::Behavior(behavior) => severity(&behavior.severity),
        _ => 1,
    };
    doc.put("severity_id", severity_id);
    if let Some(ret) = fields.int("ret") {
        // 1 success, 2 failure, 0 unknown.
        let status = match Outcome::of(ret) {
            Outcome::Success => 1,
            Outcome::Failure => 2,
            Outcome::Unknown => 0,
        };
        doc.put("status_id", status);
        doc.put("status_code", ret.to_string());
    }
    doc.put("metadata.version", VERSION);
    doc.put("metadata.product.name", "owod");
    doc.put("metadata.product.vendor_name", "OWO");
    doc.put("metadata.product.version", env!("CARGO_PKG_VERSION"));
    doc.put("metadata.profiles", PROFILES.to_vec());
    doc.put("metadata.sequence", wrapper.seq);
    doc.put("metadata.uid", event_uid(&id.run_id, wrapper.seq));
    doc.put("metadata.correlation_uid", id.run_id.as_str());
    doc.put("device.type_id", 0);
    doc.put("device.hostname", id.agent_hostname.as_str());
    let agent = serde_json::json!([{
        "name": id.agent_name,
        "type_id": 1,
        "vendor_name": "OWO",
        "version": env!("CARGO_PKG_VERSION"),
    }]);
    doc.put("device.agent_list", agent);
    if !id.agent_group.is_empty() {
        doc.put(
            "device.groups",
            serde_json::json!([{ "name": id.agent_group }]),
        );
    }
    // Which of the actor and the process the actor's fields describe.
    let subject = match record {
        Record::Exec(_) | Record::Exit(_) => Some("process"),
        Record::Behavior(_) | Record::Agent(_) => None,
        _ => Some("actor.process"),
    };
    if let Some(prefix) = subject {
        if fields.get("exe").is_some() {
            file_object(&mut doc, &fields, "exe", &format!("{prefix}.file"), true);
        }
        if let Record::Exec(exec) = record {
            if let Some(Sha256::Hash(hex)) = &exec.sha256 {
                // SHA-256 is algorithm 3.
                doc.put(
                    "process.file.hashes",
                    serde_json::json!([{ "algorithm_id": 3, "value": hex }]),
                );
                doc.placed("sha256");
            }
        }
        doc.place(&fields, prefix, PROCESS);
    }
    match record {
        Record::Exec(_) => {
            if fields.get("parent_path").is_some() {
                file_object(&mut doc, &fields, "parent_path", "actor.process.file", true);
            }
            doc.place(&fields, "", EXEC);
        }
        Record::Exit(_) => doc.place(&fields, "", EXIT),
        Record::Privilege(_) => doc.place(&fields, "", PRIVILEGE),
        Record::File(file) => {
            file_object(&mut doc, &fields, "path", "file", false);
            if file.path2.is_some() {
                file_object(&mut doc, &fields, "path2", "file_result", false);
            }
            doc.place(&fields, "", FILE);
        }
        Record::Write(_) => {
            file_object(&mut doc, &fields, "path", "file", false);
            doc.place(&fields, "", WRITE);
        }
        Record::Module(_) => {
            file_object(&mut doc, &fields, "path", "driver.file", false);
            doc.place(&fields, "", MODULE);
        }
        Record::Network(network) => {
            let accept = network.kind == "accept";
            // 1 inbound, 2 outbound; IP version 4 or 6.
            doc.put("connection_info.direction_id", if accept { 1 } else { 2 });
            if let Some(protocol) = network.protocol {
                doc.put("connection_info.protocol_num", protocol);
            }
            doc.put(
                "connection_info.protocol_ver_id",
                if network.daddr.is_ipv4() { 4 } else { 6 },
            );
            doc.place(&fields, "", if accept { NETWORK_IN } else { NETWORK_OUT });
        }
        Record::Behavior(behavior) => {
            doc.put("finding_info.uid", event_uid(&id.run_id, wrapper.seq));
            // Analytic type 1: a rule.
            doc.put("finding_info.analytic.type_id", 1);
            doc.place(&fields, "", BEHAVIOR);
            if !behavior.mitre.is_empty() {
                let attacks: Vec<_> = behavior.mitre.iter().map(|id| attack(id)).collect();
                doc.put("finding_info.attacks", attacks);
                doc.placed("mitre");
            }
            let related: Vec<_> = behavior
                .related_seq
                .iter()
                .map(|&seq| serde_json::json!({ "uid": event_uid(&id.run_id, seq) }))
                .collect();
            doc.put("finding_info.related_events", related);
            doc.put("is_alert", true);
        }
        Record::Tamper(_) => {
            doc.put("app.name", "owod");
            doc.put("app.vendor_name", "OWO");
            doc.put("app.version", env!("CARGO_PKG_VERSION"));
        }
        Record::Agent(agent) => {
            if class_uid == 6002 {
                doc.put("app.name", "owod");
                doc.put("app.vendor_name", "OWO");
                doc.put("app.version", env!("CARGO_PKG_VERSION"));
            }
            if agent.kind == "loss" {
                let count = fields.get("count").and_then(|c| c.as_u64()).unwrap_or(0);
                let stage = fields.str("stage").unwrap_or("-");
                doc.put("message", format!("{count} records lost at {stage}"));
            }
        }
    }
    doc.rest("unmapped", fields);
    doc.write(out);
}

/// An ATT&CK id as OCSF names it: a sub-technique (`T1059.004`) with its technique.
fn attack(id: &str) -> serde_json::Value {
    match id.split_once('.') {
        Some((technique, _)) => serde_json::json!({
            "technique": { "uid": technique },
            "sub_technique": { "uid": id },
        }),
        None => serde_json::json!({ "technique": { "uid": id } }),
    }
}
