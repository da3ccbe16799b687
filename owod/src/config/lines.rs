//! Where each key of a YAML document is, and a check of a document's shape against the shape of
//! the default config, so that every unknown key and every wrong type is reported at once, each
//! with its line (serde stops at the first).

use std::collections::HashMap;

use serde_json::Value as Json;
use serde_norway::Value as Yaml;
use yaml_rust2::{
    parser::{Event, MarkedEventReceiver, Parser},
    scanner::Marker,
};

use super::Problem;

/// Nodes a YAML document may expand to, every alias followed: far more than any config or
/// rules file needs, far less than an alias bomb costs.
pub const NODES_MAX: u64 = 100_000;

/// Refuse a document whose aliases expand it past [`NODES_MAX`] nodes: serde copies the anchored
/// node at every alias, so ten short lines of nested aliases can cost gigabytes. A syntax error
/// is left for serde to report.
pub fn check_expansion(text: &str) -> Result<(), String> {
    let mut parser = Parser::new_from_str(text);
    // Expanded nodes of each anchored node, by anchor id.
    let mut sizes: HashMap<usize, u64> = HashMap::new();
    // The collections open, outermost first: (anchor, nodes in it so far).
    let mut open: Vec<(usize, u64)> = Vec::new();
    let mut closed: u64 = 0;
    loop {
        let Ok((event, _)) = parser.next_token() else {
            return Ok(());
        };
        let nodes = match event {
            Event::StreamEnd => return Ok(()),
            Event::Scalar(_, _, anchor, _) => {
                if anchor > 0 {
                    sizes.insert(anchor, 1);
                }
                1
            }
            Event::Alias(anchor) => sizes.get(&anchor).copied().unwrap_or(1),
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                open.push((anchor, 1));
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some((anchor, nodes)) = open.pop() else {
                    continue;
                };
                if anchor > 0 {
                    sizes.insert(anchor, nodes);
                }
                nodes
            }
            _ => continue,
        };
        match open.last_mut() {
            Some((_, inside)) => *inside = inside.saturating_add(nodes),
            None => closed = closed.saturating_add(nodes),
        }
        let total = open
            .iter()
            .fold(closed, |sum, (_, inside)| sum.saturating_add(*inside));
        if total > NODES_MAX {
            return Err(format!(
                "its aliases expand it to more than {NODES_MAX} nodes"
            ));
        }
    }
}

/// Dotted key path (`monitor.execve`, `output.file.path`, `monitor.file_watch_paths.2`) to line.
#[derive(Debug, Default)]
pub struct KeyLines(HashMap<String, usize>);

impl KeyLines {
    pub fn parse(text: &str) -> KeyLines {
        let mut recv = Recorder::default();
        // A syntax error is reported by serde_norway, with its own location; lines found before
        // it are still good.
        let _ = Parser::new_from_str(text).load(&mut recv, false);
        KeyLines(recv.lines)
    }

    /// The line of `key`, or of its nearest parent that has one.
    pub fn line(&self, key: &str) -> Option<usize> {
        let mut key = key;
        loop {
            if let Some(line) = self.0.get(key) {
                return Some(*line);
            }
            key = &key[..key.rfind('.')?];
        }
    }
}

enum Frame {
    Mapping { path: String, key: Option<String> },
    Sequence { path: String, index: usize },
}

#[derive(Default)]
struct Recorder {
    stack: Vec<Frame>,
    lines: HashMap<String, usize>,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

impl Recorder {
    /// The path of the value that starts now, and note where it is.
    fn value_path(&mut self, line: usize) -> String {
        match self.stack.last_mut() {
            None => String::new(),
            Some(Frame::Mapping { path, key }) => join(path, &key.take().unwrap_or_default()),
            Some(Frame::Sequence { path, index }) => {
                let p = join(path, &index.to_string());
                *index += 1;
                self.lines.entry(p.clone()).or_insert(line);
                p
            }
        }
    }
}

impl MarkedEventReceiver for Recorder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let line = mark.line();
        match ev {
            Event::Scalar(text, ..) => {
                if let Some(Frame::Mapping {
                    path,
                    key: key @ None,
                }) = self.stack.last_mut()
                {
                    self.lines.insert(join(path, &text), line);
                    *key = Some(text);
                } else {
                    self.value_path(line);
                }
            }
            Event::Alias(_) => {
                self.value_path(line);
            }
            Event::MappingStart(..) => {
                let path = self.value_path(line);
                self.stack.push(Frame::Mapping { path, key: None });
            }
            Event::SequenceStart(..) => {
                let path = self.value_path(line);
                self.stack.push(Frame::Sequence { path, index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

fn kind(v: &Yaml) -> &'static str {
    match v {
        Yaml::Null => "nothing",
        Yaml::Bool(_) => "a boolean",
        Yaml::Number(_) => "a number",
        Yaml::String(_) => "a string",
        Yaml::Sequence(_) => "a list",
        Yaml::Mapping(_) => "a mapping",
        Yaml::Tagged(_) => "a tagged value",
    }
}

/// Compare `user` with the shape of `default` (the default config as JSON): every key must be
/// known and every value of the default's type.
pub fn check_shape(
    user: &Yaml,
    default: &Json,
    path: &str,
    lines: &KeyLines,
    out: &mut Vec<Problem>,
) {
    let mut wrong = |expected: &str| {
        out.push(Problem::at(
            lines,
            path,
            format!("expected {expected}, found {}", kind(user)),
        ));
    };
    match default {
        Json::Null => {}
        Json::Bool(_) if !matches!(user, Yaml::Bool(_)) => wrong("a boolean (true or false)"),
        Json::Number(n) => match user {
            Yaml::Number(u) if n.is_u64() && !u.is_u64() => wrong("a whole number, 0 or more"),
            Yaml::Number(_) => {}
            _ => wrong(if n.is_u64() {
                "a whole number, 0 or more"
            } else {
                "a number"
            }),
        },
        Json::String(_) if !matches!(user, Yaml::String(_)) => wrong("a string"),
        Json::Array(items) => match user {
            Yaml::Sequence(seq) => {
                // `output.remotes` is empty by default: its entries have the shape of `output.remote`.
                let remote;
                let template = match items.first() {
                    Some(t) => Some(t),
                    None if path == "output.remotes" => {
                        remote = serde_json::to_value(super::RemoteConfig::default())
                            .expect("serializes");
                        Some(&remote)
                    }
                    None => None,
                };
                if let Some(template) = template {
                    for (i, item) in seq.iter().enumerate() {
                        check_shape(item, template, &join(path, &i.to_string()), lines, out);
                    }
                }
            }
            _ => wrong("a list"),
        },
        // An empty mapping by default (`headers`) takes any keys, with string values.
        Json::Object(fields) if fields.is_empty() => match user {
            Yaml::Mapping(map) => {
                for (k, v) in map {
                    let child = join(path, k.as_str().unwrap_or("?"));
                    if !matches!(v, Yaml::String(_)) {
                        out.push(Problem::at(
                            lines,
                            &child,
                            format!("expected a string, found {}", kind(v)),
                        ));
                    }
                }
            }
            Yaml::Null => {}
            _ => wrong("a mapping"),
        },
        Json::Object(fields) => match user {
            Yaml::Mapping(map) => {
                for (k, v) in map {
                    let Some(k) = k.as_str() else {
                        out.push(Problem::at(
                            lines,
                            path,
                            format!("keys must be strings, found {}", kind(k)),
                        ));
                        continue;
                    };
                    let child = join(path, k);
                    match fields.get(k) {
                        Some(template) => check_shape(v, template, &child, lines, out),
                        None => out.push(Problem::at(lines, &child, "unknown key".to_owned())),
                    }
                }
            }
            // An empty section (`monitor:`) means "all defaults".
            Yaml::Null => {}
            _ => wrong("a mapping"),
        },
        _ => {}
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn records_the_line_of_every_key() {
        let lines = KeyLines::parse("a:\n  b: 1\n  c:\n    - x\n    - y\nd: {e: 2}\n");
        assert_eq!(lines.line("a"), Some(1));
        assert_eq!(lines.line("a.b"), Some(2));
        assert_eq!(lines.line("a.c.1"), Some(5));
        assert_eq!(lines.line("d.e"), Some(6));
        assert_eq!(lines.line("a.b.nope"), Some(2));
        assert_eq!(lines.line("zzz"), None);
    }

    /// A YAML value of any kind, as a config or rules file could hold where a value goes.
    pub fn any_yaml_value() -> proptest::strategy::BoxedStrategy<String> {
        use proptest::strategy::{Just, Strategy as _};
        proptest::prop_oneof![
            "-?[0-9]{1,25}",
            "\\PC{0,40}",
            Just("[a, 1, true]".to_owned()),
            Just("{a: 1}".to_owned()),
            Just("\"0.path\"".to_owned()),
        ]
        .boxed()
    }

    /// Nine levels of ten aliases each: 10^9 nodes once expanded, from 300 bytes.
    pub fn alias_bomb(top_key: &str) -> String {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..10 {
            let prev = format!("*a{}", level - 1);
            let list = [prev.as_str(); 10].join(", ");
            text.push_str(&format!("a{level}: &a{level} [{list}]\n"));
        }
        text.push_str(&format!("{top_key}: *a9\n"));
        text
    }

    #[test]
    fn aliases_are_followed_only_so_far() {
        let err = check_expansion(&alias_bomb("top")).unwrap_err();
        assert!(err.contains("100000 nodes"), "{err}");
        // Aliases that stay small are fine.
        check_expansion("a: &a [1, 2]\nb: *a\nc: [*a, *a]\n").unwrap();
        // A syntax error is for serde to report.
        check_expansion("a: [").unwrap();
    }
}
