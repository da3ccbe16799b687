//! The schemas other than owod's own that a sink may write records in (`format` in owo.yaml(5)):
//! the Elastic Common Schema ([`ecs`]) and OCSF ([`ocsf`]).
//!
//! Both start from the record's own fields, as owod's schema names them and with the same
//! escaping and cuts ([`Fields`]). A format moves each field it has a place for to that place,
//! converted where the schema types it otherwise, adds what its schema requires (kinds,
//! classes, ids), and keeps every field it has no place for under its own key (`owo` in ECS,
//! `unmapped` in OCSF) by owod's name, so that no field is lost and a `_escaped` or `_truncated`
//! flag still names the field it flags.

pub mod ecs;
pub mod ocsf;

use owo_common::{event::Argv, render};
use serde_json::{Map, Value};

use crate::pipeline::{
    record::{Record, Visit},
    Identity,
};

/// A record's wrapper, as the hub stamps it.
pub struct Wrapper<'a> {
    pub identity: &'a Identity,
    pub seq: u64,
    /// RFC 3339, UTC.
    pub timestamp: &'a str,
    /// The same time, in nanoseconds since the Unix epoch.
    pub unix_ns: i128,
}

/// Where the first of `keys` starts in `line`, and its end.
fn first_of(line: &str, keys: &[&str]) -> Option<usize> {
    keys.iter()
        .filter_map(|key| line.find(key).map(|at| (at, at + key.len())))
        .min()
        .map(|(_, end)| end)
}

/// The `seq` of a line in any format: owo's `seq`, ECS's `event.sequence`, OCSF's
/// `metadata.sequence`, each written before any field of the record itself (a field of the
/// same name under `owo` or `unmapped` comes later).
pub fn seq_of(line: &str) -> Option<u64> {
    let at = first_of(line, &["\"seq\":", "\"sequence\":"])?;
    let rest = &line[at..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The `run_id` of a line in any format: owo's `run_id`, ECS's `agent.id` (the first key of
/// `agent`), OCSF's `metadata.correlation_uid`, each before the record's own fields.
pub fn run_of(line: &str) -> Option<&str> {
    let keys = [
        "\"run_id\":\"",
        "\"agent\":{\"id\":\"",
        "\"correlation_uid\":\"",
    ];
    let at = first_of(line, &keys)?;
    line[at..].split('"').next()
}

/// The record's own fields (the owo `event` object's), by name, in order.
pub struct Fields(Map<String, Value>);

impl Fields {
    pub fn of(record: &Record) -> Fields {
        let mut fields = Fields(Map::new());
        record.visit(&mut fields);
        fields
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    pub fn str(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }

    pub fn int(&self, key: &str) -> Option<i64> {
        self.0.get(key).and_then(Value::as_i64)
    }

    fn flags(&mut self, key: &str, flags: render::Flags) {
        for (set, suffix) in [(flags.escaped, "_escaped"), (flags.truncated, "_truncated")] {
            if set {
                self.0.insert(format!("{key}{suffix}"), true.into());
            }
        }
    }
}

impl Visit for Fields {
    fn uint(&mut self, key: &str, value: u64) {
        self.0.insert(key.to_owned(), value.into());
    }

    fn int(&mut self, key: &str, value: i64) {
        self.0.insert(key.to_owned(), value.into());
    }

    fn bool(&mut self, key: &str, value: bool) {
        self.0.insert(key.to_owned(), value.into());
    }

    fn str(&mut self, key: &str, value: &str) {
        self.0.insert(key.to_owned(), value.into());
    }

    fn text(&mut self, key: &str, value: &[u8], budget: usize, cut: bool) {
        let e = render::escape(value, budget);
        self.0.insert(key.to_owned(), e.text.into());
        self.flags(
            key,
            render::Flags {
                escaped: e.escaped,
                truncated: e.truncated || cut,
            },
        );
    }

    fn args(&mut self, key: &str, args: &Argv, cut: bool) {
        let (texts, mut flags) = render::args_texts(args.iter());
        flags.truncated |= cut;
        self.0.insert(key.to_owned(), texts.into());
        self.flags(key, flags);
    }

    fn uints(&mut self, key: &str, values: &[u64]) {
        self.0.insert(key.to_owned(), values.into());
    }

    fn ints(&mut self, key: &str, values: &[i64]) {
        self.0.insert(key.to_owned(), values.into());
    }

    fn strs(&mut self, key: &str, values: &[String]) {
        self.0.insert(key.to_owned(), values.into());
    }

    fn json(&mut self, key: &str, value: &Value) {
        self.0.insert(key.to_owned(), value.clone());
    }
}

/// How a field's value is put in its new place.
#[derive(Clone, Copy)]
pub enum As {
    /// As it is.
    Same,
    /// A number as a string (ids the schema types as text).
    Text,
    /// A number as its octal digits (a file mode).
    Octal,
}

/// A field's place in a format: owod's name, the dotted path there, and how it is put.
pub type Place = (&'static str, &'static str, As);

/// A record in a format, built by dotted paths, in the order they are put; and the record's
/// fields it has placed.
#[derive(Default)]
pub struct Doc {
    map: Map<String, Value>,
    placed: Vec<&'static str>,
}

impl Doc {
    /// Put `value` at `path` (`a.b.c`), making the objects on the way.
    pub fn put(&mut self, path: &str, value: impl Into<Value>) {
        let mut object = &mut self.map;
        let mut parts = path.split('.').peekable();
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                object.insert(part.to_owned(), value.into());
                return;
            }
            let next = object
                .entry(part.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if !next.is_object() {
                *next = Value::Object(Map::new());
            }
            let Value::Object(next) = next else {
                unreachable!("made an object above")
            };
            object = next;
        }
    }

    /// Put the fields `places` name in their places under `prefix` (a field may have several).
    pub fn place(&mut self, fields: &Fields, prefix: &str, places: &[Place]) {
        for &(key, path, how) in places {
            let Some(value) = fields.get(key) else {
                continue;
            };
            let value = match (how, value.as_u64()) {
                (As::Text, Some(n)) => n.to_string().into(),
                (As::Octal, Some(n)) => format!("{n:o}").into(),
                _ => value.clone(),
            };
            match prefix {
                "" => self.put(path, value),
                _ => self.put(&format!("{prefix}.{path}"), value),
            }
        }
        self.placed.extend(places.iter().map(|&(key, _, _)| key));
    }

    /// The field `key` has a place (put by other means than [`Doc::place`]).
    pub fn placed(&mut self, key: &'static str) {
        self.placed.push(key);
    }

    /// Put the fields that have no place under the object `key`, by owod's names.
    pub fn rest(&mut self, key: &str, fields: Fields) {
        for (name, value) in fields.0 {
            if !self.placed.contains(&name.as_str()) {
                self.put(&format!("{key}.{name}"), value);
            }
        }
    }

    /// The record as one JSON line (without its newline) in `out`.
    pub fn write(self, out: &mut String) {
        // A Value's Display is compact JSON.
        use std::fmt::Write as _;
        let _ = write!(out, "{}", Value::Object(self.map));
    }
}

/// What a record's `ret` says of its call: done, failed, or not known yet (a non-blocking
/// connect answers EINPROGRESS, -115, and completes later).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    Unknown,
}

impl Outcome {
    pub fn of(ret: i64) -> Outcome {
        match ret {
            -115 => Outcome::Unknown,
            ret if ret < 0 => Outcome::Failure,
            _ => Outcome::Success,
        }
    }
}

/// The last component of a path (as owod writes it: escaped), within 1,530 bytes of JSON: a
/// file name is at most 255 bytes (NAME_MAX), each at most 6 in JSON, so only a last component
/// that is no file name (a path the kernel cut short) is cut, at a character's end.
pub fn base_name(path: &str) -> &str {
    const NAME_MAX_JSON: usize = 6 * 255;
    let name = path.rsplit('/').next().unwrap_or(path);
    let mut cost = 0;
    let end = name
        .char_indices()
        .find(|&(_, c)| {
            cost += render::json_cost(c);
            cost > NAME_MAX_JSON
        })
        .map_or(name.len(), |(at, _)| at);
    &name[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_and_run_are_found_in_every_format() {
        let owo = r#"{"agent_name":"a","timestamp":"t","seq":12,"run_id":"r1","event":{"first_seq":3,"lost_run_id":"x"}}"#;
        let ecs = r#"{"@timestamp":"t","event":{"kind":"event","sequence":13},"agent":{"id":"r2","name":"a"},"owo":{"lost_run_id":"x","related_seq":[1]}}"#;
        let ocsf = r#"{"time":1,"metadata":{"sequence":14,"uid":"r3-14","correlation_uid":"r3"},"unmapped":{"lost_run_id":"x"}}"#;
        assert_eq!((seq_of(owo), run_of(owo)), (Some(12), Some("r1")));
        assert_eq!((seq_of(ecs), run_of(ecs)), (Some(13), Some("r2")));
        assert_eq!((seq_of(ocsf), run_of(ocsf)), (Some(14), Some("r3")));
    }

    #[test]
    fn owo_yaml_5_shows_every_place_of_every_field() {
        let page = include_str!("../../../../man/owo.yaml.5");
        let note = |how: As| match how {
            As::Same => "",
            As::Text => " (as a string)",
            As::Octal => " (octal digits)",
        };
        let places: Vec<(&str, &str, &str)> = ecs::TABLES
            .iter()
            .chain(ocsf::TABLES)
            .copied()
            .flatten()
            .map(|&(key, path, how)| (key, path, note(how)))
            .collect();
        for &(key, path, note) in &places {
            let row = format!("\\fI{key}\\fR \\(-> \\fB{path}\\fR{note}");
            assert!(
                page.contains(&format!("{row},")) || page.contains(&format!("{row}.")),
                "owo.yaml(5) lacks {row}"
            );
        }
        // And it shows no place, nor note, the code does not have.
        for row in page.split("\\fI").skip(1) {
            let Some((key, rest)) = row.split_once("\\fR \\(-> \\fB") else {
                continue;
            };
            // The page's own example of a row names no field.
            if key == "owo field" {
                continue;
            }
            let (path, rest) = rest.split_once("\\fR").unwrap_or_default();
            let note = &rest[..rest.find([',', '.']).unwrap_or(rest.len())];
            assert!(
                places.contains(&(key, path, note)),
                "owo.yaml(5) shows {key} -> {path}{note}, which the code does not"
            );
        }
    }

    /// Module loads cannot happen on a kernel without modules, where the live test runs: their
    /// records, with a path that is not UTF-8 and with none (init_module), are checked here
    /// against the same official schemas.
    #[test]
    fn module_records_are_valid_ecs_and_ocsf() {
        use crate::pipeline::record::{Actor, ModuleRecord};
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let schemas = root.join("target/schemas");
        assert!(
            schemas.join("venv/bin/python").is_file(),
            "the official schemas are not in {}: run `make schemas` (make test does)",
            schemas.display()
        );
        let identity = Identity {
            agent_name: "ws1".into(),
            agent_hostname: "ws1".into(),
            agent_group: "lab".into(),
            run_id: "r".into(),
        };
        let actor = Actor {
            pid: 7,
            comm: owo_common::event::Comm::new(b"insmod"),
            exe: Some(b"/usr/sbin/insmod".as_slice().into()),
            ..Actor::default()
        };
        let records = [
            (313, Some(b"/lib/modules/x/\xff.ko".to_vec()), 0),
            (175, None, -1),
        ]
        .map(|(syscall, path, ret)| {
            Record::Module(ModuleRecord {
                actor: actor.clone(),
                syscall,
                path,
                path_truncated: false,
                ret,
            })
        });
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec![
            "--ecs-flat".into(),
            schemas.join("ecs_flat.json").display().to_string(),
        ];
        for (name, render) in [
            ("ecs", ecs::render as fn(&Wrapper, &Record, &mut String)),
            ("ocsf", ocsf::render),
        ] {
            let mut text = String::new();
            for (seq, record) in (1..).zip(&records) {
                let wrapper = Wrapper {
                    identity: &identity,
                    seq,
                    timestamp: "2026-12-07T10:00:00.000000001Z",
                    unix_ns: 1_796_637_600_000_000_001,
                };
                render(&wrapper, record, &mut text);
                text.push('\n');
            }
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            args.extend([format!("--{name}"), path.display().to_string()]);
        }
        let output = std::process::Command::new(schemas.join("venv/bin/python"))
            .arg(root.join("owod/tests/support/validate_formats.py"))
            .args(&args)
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{report}");
        assert!(
            report.contains(r#""ecs": {"module": 2}"#)
                && report.contains(r#""kernel_extension_activity": 2"#),
            "{report}"
        );
    }

    /// The costliest exec, with the longest names (255 bytes, each escaped in JSON: the config
    /// refuses control characters in them), fits in a line in every format.
    #[test]
    fn the_costliest_exec_fits_in_a_line_in_every_format() {
        let record = crate::pipeline::record::tests::worst_exec();
        let long = "\"".repeat(255);
        let identity = Identity {
            agent_name: long.clone(),
            agent_hostname: long.clone(),
            agent_group: long,
            run_id: uuid::Uuid::new_v4().to_string(),
        };
        let wrapper = Wrapper {
            identity: &identity,
            seq: u64::MAX,
            timestamp: "2026-12-07T10:00:00.000000001Z",
            unix_ns: 1_796_637_600_000_000_001,
        };
        for (name, render) in [
            ("ecs", ecs::render as fn(&Wrapper, &Record, &mut String)),
            ("ocsf", ocsf::render),
        ] {
            let mut line = String::new();
            render(&wrapper, &record, &mut line);
            assert!(
                line.len() <= render::LINE_MAX,
                "{name}: {} bytes > {}",
                line.len(),
                render::LINE_MAX
            );
        }
    }

    /// Real loss records, in every format, with fields of their own named `seq` and `run_id`:
    /// the spool finds the record's seq and run, and the file sink the seqs it names.
    #[test]
    fn the_spool_and_the_file_sink_read_rendered_lines_of_every_format() {
        use crate::pipeline::record::AgentRecord;
        let identity = Identity {
            agent_name: "ws1".into(),
            agent_hostname: "ws1".into(),
            agent_group: String::new(),
            run_id: "the-run".into(),
        };
        let wrapper = Wrapper {
            identity: &identity,
            seq: 42,
            timestamp: "2026-12-07T10:00:00.000000001Z",
            unix_ns: 1_796_637_600_000_000_001,
        };
        let mut loss = AgentRecord::loss("file_write", None, 2);
        loss.set("first_seq", 7)
            .set("last_seq", 8)
            .set("seq", 1)
            .set("run_id", "not-the-run");
        let record = Record::Agent(loss);
        for render in [
            ecs::render as fn(&Wrapper, &Record, &mut String),
            ocsf::render,
        ] {
            let mut line = String::new();
            render(&wrapper, &record, &mut line);
            assert_eq!(seq_of(&line), Some(42), "{line}");
            assert_eq!(run_of(&line), Some("the-run"), "{line}");
            assert_eq!(
                super::super::lines::named_run(&line),
                Some((7, 8)),
                "{line}"
            );
            assert!(line.contains("\"stage\":\"file_write\""), "{line}");
        }
    }

    #[test]
    fn a_doc_nests_dotted_paths_in_order() {
        let mut doc = Doc::default();
        doc.put("b", 1);
        doc.put("a.x", 2);
        doc.put("a.y.z", "3");
        let mut out = String::new();
        doc.write(&mut out);
        assert_eq!(out, r#"{"b":1,"a":{"x":2,"y":{"z":"3"}}}"#);
    }
}
