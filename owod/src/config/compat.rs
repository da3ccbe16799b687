//! What the original (Go) agent's configs say in its own way, read so that those files keep
//! loading with the meaning they had. Each is rewritten in the document before its shape is
//! checked, with a one-line warning that names what to write instead:
//! - keys it had that owod replaced: a renamed key is put back under its new name, an obsolete
//!   one is dropped;
//! - values it read in its own way: the YAML 1.1 booleans of yaml.v3 (`yes`, `off`), and what
//!   its start-up filled in or gave up on (an empty or upper-case protocol, an empty HTTP path,
//!   a remote or file output with nowhere to write, a log level it never read);
//! - its remote's wire format: a remote with the Go agent's own keys gets its `alert` envelope,
//!   unless the file says which envelope it wants.
//!
//! Only what the Go agent had is read so: `output.remote`, not owod's own `output.remotes`.

use serde_norway::{Mapping, Value as Yaml};

use super::{lines::KeyLines, Problem, LOG_LEVELS};

/// What becomes of a kept key.
enum Becomes {
    /// The same value under this key of the same mapping.
    Renamed(&'static str),
    /// Nothing: owod does what the key asked for in another way, which `why` names.
    Dropped { why: &'static str },
}

/// The kept keys of the remote collector's mapping (`output.remote`).
const REMOTE_KEPT: [(&str, Becomes); 2] = [
    ("retry_interval", Becomes::Renamed("retry_interval_seconds")),
    (
        "max_retries",
        Becomes::Dropped {
            why: "records are spooled and retried until they are delivered; \
                  `spool.max_mb` bounds what is kept",
        },
    ),
];

/// The Go agent's boolean keys: yaml.v3 read YAML 1.1's words for them too.
const GO_BOOLEANS: [&str; 11] = [
    "monitor.execve",
    "monitor.file_events",
    "monitor.file_watch_all_paths",
    "monitor.network_events",
    "monitor.privilege_events",
    "monitor.exit_events",
    "monitor.write_events",
    "monitor.module_events",
    "output.file.enabled",
    "output.stderr",
    "output.remote.enabled",
];

/// The Go agent's first wait after a failed send, for an interval of 0 or less.
const GO_RETRY_INTERVAL: u64 = 10;

/// What the Go agent posted to when `http_endpoint` was empty.
const GO_HTTP_ENDPOINT: &str = "/alerts";

/// Where the warnings and problems of one document go.
struct Notes<'a> {
    lines: &'a KeyLines,
    warnings: &'a mut Vec<Problem>,
    problems: &'a mut Vec<Problem>,
}

impl Notes<'_> {
    fn warn(&mut self, key: &str, message: String) {
        self.warnings.push(Problem::at(self.lines, key, message));
    }
}

/// Rewrite what the Go agent's configs say in its own way in `user` (a whole config document);
/// a warning for each, and a problem where a kept key and its new name are both given.
pub fn apply(
    user: &mut Yaml,
    lines: &KeyLines,
    warnings: &mut Vec<Problem>,
    problems: &mut Vec<Problem>,
) {
    let mut notes = Notes {
        lines,
        warnings,
        problems,
    };
    for key in GO_BOOLEANS {
        yaml11_boolean(user, key, &mut notes);
    }
    if let Some(level) = at(user, "logging.level") {
        if let Some(given) = level.as_str().map(str::to_owned) {
            let lower = given.to_lowercase();
            let meant = if LOG_LEVELS.contains(&lower.as_str()) {
                lower
            } else {
                "info".to_owned()
            };
            if meant != given {
                *level = Yaml::from(meant.as_str());
                notes.warn(
                    "logging.level",
                    format!(
                        "`{}` is read as {meant} (the Go agent never read this key); \
                         write one of {}",
                        given.escape_debug(),
                        LOG_LEVELS.join(", ")
                    ),
                );
            }
        }
    }
    if let Some(Yaml::Mapping(file)) = at(user, "output.file") {
        let nowhere = file.get("path").is_some_and(|p| p.as_str() == Some(""));
        // Written out or not: the file output is on by default.
        if nowhere && file.get("enabled").is_none_or(|e| e == &Yaml::Bool(true)) {
            file.insert(Yaml::from("enabled"), Yaml::Bool(false));
            notes.warn(
                "output.file.path",
                "empty, so no file is written (as with the Go agent); \
                 write a path, or `enabled: false`"
                    .to_owned(),
            );
        }
    }
    if let Some(Yaml::Mapping(remote)) = at(user, "output.remote") {
        remote_keys(remote, "output.remote", &mut notes);
    }
    // In the order of the file.
    notes.warnings.sort_by_key(|w| w.line);
}

/// The value at a dotted key path, where every step is a mapping.
fn at<'a>(user: &'a mut Yaml, key: &str) -> Option<&'a mut Yaml> {
    key.split('.')
        .try_fold(user, |node, step| node.get_mut(step))
}

/// YAML 1.1's boolean words, as yaml.v3 read them into a boolean.
fn yaml11_boolean(user: &mut Yaml, key: &str, notes: &mut Notes) {
    let Some(value) = at(user, key) else {
        return;
    };
    let meaning = match value.as_str() {
        Some("y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON") => true,
        Some("n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF") => false,
        _ => return,
    };
    let message = format!(
        "`{}` is a boolean only in YAML 1.1, which the Go agent read: write {meaning}",
        value.as_str().unwrap_or_default()
    );
    *value = Yaml::Bool(meaning);
    notes.warn(key, message);
}

fn remote_keys(remote: &mut Mapping, prefix: &str, notes: &mut Notes) {
    // Its own keys make it the Go agent's remote, which sent every record in its envelope.
    let go_key = REMOTE_KEPT
        .iter()
        .map(|(old, _)| *old)
        .find(|old| remote.contains_key(*old));
    let enabled = remote.get("enabled") == Some(&Yaml::Bool(true));
    if let Some(go_key) = go_key.filter(|_| enabled && !remote.contains_key("envelope")) {
        remote.insert(Yaml::from("envelope"), Yaml::from("alert"));
        notes.warn(
            &format!("{prefix}.{go_key}"),
            format!(
                "a Go agent's remote: records go in its alert envelope; write \
                 `{prefix}.envelope: alert` to keep it, or `none` for bare records"
            ),
        );
    }
    for (old, becomes) in &REMOTE_KEPT {
        let Some(mut value) = remote.remove(*old) else {
            continue;
        };
        let key = format!("{prefix}.{old}");
        match becomes {
            Becomes::Renamed(new) => {
                if remote.contains_key(*new) {
                    notes.problems.push(Problem::at(
                        notes.lines,
                        &key,
                        format!("give only `{prefix}.{new}`, which replaces it"),
                    ));
                    continue;
                }
                // The Go agent waited its default for an interval of 0 or less.
                if value.as_i64().is_some_and(|v| v <= 0) {
                    value = Yaml::from(GO_RETRY_INTERVAL);
                }
                remote.insert(Yaml::from(*new), value);
                notes.warn(
                    &key,
                    format!("read for the Go agent's configs: use `{prefix}.{new}`"),
                );
            }
            Becomes::Dropped { why } => notes.warn(
                &key,
                format!("read for the Go agent's configs and ignored: {why}"),
            ),
        }
    }
    if let Some(protocol) = remote.get_mut("protocol") {
        if let Some(given) = protocol.as_str().map(str::to_owned) {
            // The Go agent took an empty protocol as tcp, and any in lower case.
            let meant = if given.is_empty() {
                "tcp".to_owned()
            } else {
                given.to_lowercase()
            };
            if meant != given {
                *protocol = Yaml::from(meant.as_str());
                notes.warn(
                    &format!("{prefix}.protocol"),
                    format!("`{given}` was read as {meant} by the Go agent: write {meant}"),
                );
            }
        }
    }
    if remote.get("http_endpoint").and_then(Yaml::as_str) == Some("") {
        remote.insert(Yaml::from("http_endpoint"), Yaml::from(GO_HTTP_ENDPOINT));
        notes.warn(
            &format!("{prefix}.http_endpoint"),
            format!("empty, read as {GO_HTTP_ENDPOINT} as the Go agent did: write it"),
        );
    }
    let address = remote.get("address").and_then(Yaml::as_str);
    if enabled && address.is_none_or(str::is_empty) {
        remote.insert(Yaml::from("enabled"), Yaml::Bool(false));
        notes.warn(
            &format!("{prefix}.address"),
            "no address, so this remote is off (as with the Go agent); \
             write host:port, or `enabled: false`"
                .to_owned(),
        );
    }
}
