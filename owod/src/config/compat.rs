//! Keys of the original (Go) agent's config that owod reads only so that the Go agent's files keep
//! loading unchanged. Each is taken out of the document before its shape is checked: a renamed
//! key is put back under its new name, an obsolete one is dropped. Either way the file gets a
//! one-line warning that names what replaces it.

use serde_norway::Value as Yaml;

use super::{lines::KeyLines, Problem};

/// What becomes of a kept key.
enum Becomes {
    /// The same value under this key of the same mapping.
    Renamed(&'static str),
    /// Nothing: owod does what the key asked for in another way, which `why` names.
    Dropped { why: &'static str },
}

/// The kept keys of a remote collector's mapping (`output.remote`, and each of `output.remotes`).
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

/// Take the kept keys out of `user` (a whole config document); a warning for each, and a problem
/// where a kept key and its new name are both given.
pub fn apply(
    user: &mut Yaml,
    lines: &KeyLines,
    warnings: &mut Vec<Problem>,
    problems: &mut Vec<Problem>,
) {
    let Some(output) = user.get_mut("output") else {
        return;
    };
    if let Some(remote @ Yaml::Mapping(_)) = output.get_mut("remote") {
        remote_keys(remote, "output.remote", lines, warnings, problems);
    }
    if let Some(Yaml::Sequence(remotes)) = output.get_mut("remotes") {
        for (i, remote) in remotes.iter_mut().enumerate() {
            let at = format!("output.remotes.{i}");
            remote_keys(remote, &at, lines, warnings, problems);
        }
    }
}

fn remote_keys(
    remote: &mut Yaml,
    at: &str,
    lines: &KeyLines,
    warnings: &mut Vec<Problem>,
    problems: &mut Vec<Problem>,
) {
    let Yaml::Mapping(map) = remote else {
        return;
    };
    for (old, becomes) in &REMOTE_KEPT {
        let Some(value) = map.remove(*old) else {
            continue;
        };
        let key = format!("{at}.{old}");
        match becomes {
            Becomes::Renamed(new) => {
                if map.contains_key(*new) {
                    problems.push(Problem::at(
                        lines,
                        &key,
                        format!("give only `{at}.{new}`, which replaces it"),
                    ));
                    continue;
                }
                map.insert(Yaml::from(*new), value);
                warnings.push(Problem::at(
                    lines,
                    &key,
                    format!("read for the Go agent's configs: use `{at}.{new}`"),
                ));
            }
            Becomes::Dropped { why } => warnings.push(Problem::at(
                lines,
                &key,
                format!("read for the Go agent's configs and ignored: {why}"),
            )),
        }
    }
}
