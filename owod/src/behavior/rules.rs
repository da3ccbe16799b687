//! Behavior rules as data: YAML files of ordered steps, each a predicate over one record's fields,
//! with a correlation key and a window. Parsed and checked here, once, into [`Rule`]s; a bad rule
//! is refused with its name, its step and the reason, and nothing of that file is used.
//!
//! ```yaml
//! rules:
//!   - name: exec_from_tmp_then_connect
//!     severity: high            # low, medium, high, critical
//!     mitre: [T1059, T1071]
//!     key: process              # process, process_tree (later steps may be descendants), host
//!     within: 15s               # default: behavior.window_seconds
//!     detail: "{0.exe} connected to {1.daddr}:{1.dport}"
//!     steps:
//!       - event_type: execve
//!         match: { exe: { starts_with: [/tmp/, /var/tmp/, /dev/shm/] } }
//!       - event_type: network
//!         match: { type: { equals: connect } }
//! ```
//!
//! Operators: `equals`, `not_equals`, `in`, `not_in`, `starts_with`, `ends_with`, `contains`,
//! `glob` (`*`, `?`), `lt`, `le`, `gt`, `ge`, `exists`, and `same_as: "N.field"` (the value
//! that field had in the event that matched step N, an earlier step). A step matches when all of
//! `match` holds and, if `any` is given, at least one of its alternatives does.

use std::{collections::BTreeMap, time::Duration};

use owo_common::abi::Monitor;
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    rules: Vec<RuleSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    name: String,
    #[serde(default)]
    description: String,
    severity: String,
    #[serde(default)]
    mitre: Vec<String>,
    #[serde(default = "default_key")]
    key: String,
    #[serde(default)]
    within: Option<Value>,
    #[serde(default)]
    detail: String,
    steps: Vec<StepSpec>,
}

fn default_key() -> String {
    "process".to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepSpec {
    event_type: String,
    #[serde(default, rename = "match")]
    all: BTreeMap<String, BTreeMap<String, Value>>,
    #[serde(default)]
    any: Vec<BTreeMap<String, BTreeMap<String, Value>>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    /// Every step by the same process.
    Process,
    /// Later steps by the first step's process or a descendant of it.
    ProcessTree,
    /// Any process on the machine.
    Host,
}

#[derive(Clone, Debug)]
pub enum Op {
    Equals(Value),
    NotEquals(Value),
    In(Vec<Value>),
    NotIn(Vec<Value>),
    StartsWith(Vec<String>),
    EndsWith(Vec<String>),
    Contains(String),
    Glob(Vec<String>),
    Lt(f64),
    Le(f64),
    Gt(f64),
    Ge(f64),
    Exists(bool),
    /// The value `field` had in the event that matched step `step`.
    SameAs {
        step: usize,
        field: String,
        /// Its place among the rule's `same_as` references (numbered by the engine).
        slot: usize,
    },
}

#[derive(Clone, Debug)]
pub struct Condition {
    pub field: String,
    pub op: Op,
    /// Its field's place among the fields that rules read in records of its step's type
    /// (numbered by the engine).
    pub slot: usize,
}

#[derive(Clone, Debug)]
pub struct Step {
    pub event_type: String,
    pub all: Vec<Condition>,
    pub any: Vec<Vec<Condition>>,
}

#[derive(Clone, Debug)]
pub struct Rule {
    pub name: String,
    pub description: String,
    pub severity: String,
    pub mitre: Vec<String>,
    pub key: Key,
    pub within: Duration,
    pub detail: String,
    pub steps: Vec<Step>,
}

/// Why a rules file was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RuleError {
    #[error("not a rules file: {0}")]
    Syntax(String),
    #[error("rule `{rule}`: {reason}")]
    Rule { rule: String, reason: String },
    #[error("rule `{rule}`, step {step}: {reason}")]
    Step {
        rule: String,
        step: usize,
        reason: String,
    },
}

pub const SEVERITIES: [&str; 4] = ["low", "medium", "high", "critical"];
/// The records a step can match: a monitor's (by its D-Bus name), or owod's own.
fn is_event_type(event_type: &str) -> bool {
    event_type == "agent" || Monitor::named(event_type).is_some()
}

/// The rules shipped with owod.
pub const BUILTIN: &str = include_str!("../../rules/builtin.yaml");

/// Parse and check a rules file. `window` is the default `within`.
pub fn parse(text: &str, window: Duration) -> Result<Vec<Rule>, RuleError> {
    crate::config::check_expansion(text).map_err(RuleError::Syntax)?;
    let file: RulesFile =
        serde_norway::from_str(text).map_err(|e| RuleError::Syntax(e.to_string()))?;
    file.rules
        .into_iter()
        .map(|spec| compile(spec, window))
        .collect()
}

fn compile(spec: RuleSpec, window: Duration) -> Result<Rule, RuleError> {
    let rule_err = |reason: String| RuleError::Rule {
        rule: spec.name.clone(),
        reason,
    };
    if spec.name.is_empty()
        || !spec
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(rule_err("a name is letters, digits, `_` and `-`".into()));
    }
    if !SEVERITIES.contains(&spec.severity.as_str()) {
        return Err(rule_err(format!(
            "severity `{}` is not one of {}",
            spec.severity,
            SEVERITIES.join(", ")
        )));
    }
    let key = match spec.key.as_str() {
        "process" => Key::Process,
        "process_tree" => Key::ProcessTree,
        "host" => Key::Host,
        other => {
            return Err(rule_err(format!(
                "key `{other}` is not process, process_tree or host"
            )))
        }
    };
    let within = match &spec.within {
        None => window,
        Some(v) => duration(v).ok_or_else(|| {
            rule_err(format!(
                "within `{v}` is not a duration (15s, 2m, 1h, or seconds)"
            ))
        })?,
    };
    if spec.steps.is_empty() {
        return Err(rule_err("a rule needs at least one step".into()));
    }
    let mut steps = Vec::new();
    for (i, step) in spec.steps.iter().enumerate() {
        let step_err = |reason: String| RuleError::Step {
            rule: spec.name.clone(),
            step: i,
            reason,
        };
        if !is_event_type(&step.event_type) {
            return Err(step_err(format!(
                "event_type `{}` is not one of {}, agent",
                step.event_type,
                Monitor::names()
            )));
        }
        let all = conditions(&step.all, i).map_err(step_err)?;
        let any = step
            .any
            .iter()
            .map(|alt| conditions(alt, i))
            .collect::<Result<Vec<_>, _>>()
            .map_err(step_err)?;
        steps.push(Step {
            event_type: step.event_type.clone(),
            all,
            any,
        });
    }
    for placeholder in placeholders(&spec.detail) {
        match placeholder
            .split_once('.')
            .and_then(|(n, _)| n.parse::<usize>().ok())
        {
            Some(n) if n < steps.len() => {}
            _ => {
                return Err(rule_err(format!(
                    "detail placeholder `{{{placeholder}}}` names no step"
                )))
            }
        }
    }
    Ok(Rule {
        name: spec.name,
        description: spec.description,
        severity: spec.severity,
        mitre: spec.mitre,
        key,
        within,
        detail: spec.detail,
        steps,
    })
}

/// `{N.field}` placeholders of a detail template.
pub fn placeholders(template: &str) -> impl Iterator<Item = &str> {
    template
        .split('{')
        .skip(1)
        .filter_map(|s| s.split_once('}').map(|(p, _)| p))
}

fn duration(v: &Value) -> Option<Duration> {
    if let Some(n) = v.as_u64() {
        return (n > 0 && n <= 86_400).then(|| Duration::from_secs(n));
    }
    let s = v.as_str()?.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = num.parse().ok()?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        _ => None,
    }?;
    // A day at most: chains are memory, and a window longer than that is a mistake.
    (secs > 0 && secs <= 86_400).then(|| Duration::from_secs(secs))
}

fn strings(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned))
            .collect(),
        _ => None,
    }
}

fn conditions(
    spec: &BTreeMap<String, BTreeMap<String, Value>>,
    step: usize,
) -> Result<Vec<Condition>, String> {
    let mut out = Vec::new();
    for (field, ops) in spec {
        for (op, value) in ops {
            let bad = || format!("`{field}`: `{op}` wants {}", want(op));
            let op = match op.as_str() {
                "equals" => Op::Equals(value.clone()),
                "not_equals" => Op::NotEquals(value.clone()),
                "in" => Op::In(value.as_array().cloned().ok_or_else(bad)?),
                "not_in" => Op::NotIn(value.as_array().cloned().ok_or_else(bad)?),
                "starts_with" => Op::StartsWith(strings(value).ok_or_else(bad)?),
                "ends_with" => Op::EndsWith(strings(value).ok_or_else(bad)?),
                "contains" => Op::Contains(value.as_str().ok_or_else(bad)?.to_owned()),
                "glob" => Op::Glob(strings(value).ok_or_else(bad)?),
                "lt" => Op::Lt(value.as_f64().ok_or_else(bad)?),
                "le" => Op::Le(value.as_f64().ok_or_else(bad)?),
                "gt" => Op::Gt(value.as_f64().ok_or_else(bad)?),
                "ge" => Op::Ge(value.as_f64().ok_or_else(bad)?),
                "exists" => Op::Exists(value.as_bool().ok_or_else(bad)?),
                "same_as" => {
                    let reference = value.as_str().ok_or_else(bad)?;
                    let (n, other) = reference.split_once('.').ok_or_else(bad)?;
                    let n: usize = n.parse().map_err(|_| bad())?;
                    if n >= step {
                        return Err(format!("`{field}`: same_as `{reference}` must name an earlier step than {step}"));
                    }
                    Op::SameAs {
                        step: n,
                        field: other.to_owned(),
                        slot: 0,
                    }
                }
                other => return Err(format!("`{field}`: unknown operator `{other}`")),
            };
            out.push(Condition {
                field: field.clone(),
                op,
                slot: 0,
            });
        }
    }
    Ok(out)
}

fn want(op: &str) -> &'static str {
    match op {
        "in" | "not_in" => "a list",
        "starts_with" | "ends_with" | "glob" => "a string or a list of strings",
        "contains" => "a string",
        "lt" | "le" | "gt" | "ge" => "a number",
        "exists" => "true or false",
        "same_as" => "\"N.field\" (step N's field)",
        _ => "a value",
    }
}

/// `*` any run of characters, `?` any one.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_secs(15);

    proptest::proptest! {
        /// A rules file with any operator and any value is rules or an error, never a panic.
        #[test]
        fn any_rule_is_compiled_or_refused(
            op in "[a-z_]{1,12}",
            field in "[a-z_.0-9]{1,16}",
            value in crate::config::any_yaml_value(),
            within in "[0-9]{0,25}[a-z]{0,2}",
        ) {
            let text = format!(
                "rules:\n  - name: r\n    description: d\n    severity: low\n    within: {within}\n    steps:\n      - event_type: execve\n      - event_type: file\n        match:\n          {field}: {{ {op}: {value} }}\n"
            );
            let _ = parse(&text, W);
        }
    }

    #[test]
    fn an_alias_bomb_is_refused_before_serde_expands_it() {
        let err = parse(&crate::config::alias_bomb("rules"), W).unwrap_err();
        assert!(err.to_string().contains("aliases"), "{err}");
    }

    #[test]
    fn the_builtin_rules_load() {
        let rules = parse(BUILTIN, W).expect("builtin rules");
        assert!(rules.len() >= 7, "{} rules", rules.len());
    }

    #[test]
    fn bad_rules_name_the_rule_the_step_and_the_reason() {
        let bad = |text: &str| parse(text, W).unwrap_err().to_string();
        assert_eq!(
            bad("rules:\n  - name: r1\n    severity: high\n    steps:\n      - event_type: execve\n        match: {exe: {startswith: /tmp}}\n"),
            "rule `r1`, step 0: `exe`: unknown operator `startswith`"
        );
        assert_eq!(
            bad("rules:\n  - name: r2\n    severity: dire\n    steps: [{event_type: execve}]\n"),
            "rule `r2`: severity `dire` is not one of low, medium, high, critical"
        );
        assert!(bad("rules:\n  - name: r3\n    severity: low\n    steps:\n      - event_type: execve\n        match: {exe: {same_as: \"0.path\"}}\n").contains("step 0"));
        assert!(bad("rules:\n  - name: r4\n    severity: low\n    within: soon\n    steps: [{event_type: execve}]\n").contains("within"));
        assert!(bad("rules:\n  - name: r5\n    severity: low\n    detail: \"{3.exe}\"\n    steps: [{event_type: execve}]\n").contains("names no step"));
        assert!(
            bad("rules: [{name: r6, severity: low, steps: [], colour: red}]").contains("colour")
        );
    }

    #[test]
    fn globs_and_durations() {
        assert!(glob("/tmp/*.sh", "/tmp/x.sh"));
        assert!(glob("*/bash", "/usr/bin/bash"));
        assert!(!glob("/tmp/?", "/tmp/xy"));
        assert_eq!(duration(&Value::from("2m")), Some(Duration::from_secs(120)));
        assert_eq!(duration(&Value::from(5)), Some(Duration::from_secs(5)));
        assert_eq!(duration(&Value::from("0s")), None);
    }
}
