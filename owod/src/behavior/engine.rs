//! Matching records against rules. State is partial matches ("chains"), kept per rule and per
//! key process, each with the `seq` of every record it matched and those records' fields (for
//! `same_as` and the alert's detail). A chain ends when it completes (one alert), when its window
//! passes, or when its process exits (key `process`) or its pid is reused (`process_tree`). All
//! chains together are capped; past the cap the oldest go, counted. Per record, only the rules
//! with a step for its event type are looked at, and for each only the chains of its key.

use std::{cell::RefCell, collections::VecDeque, sync::Arc};

use foldhash::{HashMap, HashMapExt as _};
use serde_json::Value;

use super::rules::{glob, Condition, Key, Op, Rule, Step};
use crate::pipeline::record::{Field, Record};

/// Chains held at most, over all rules.
pub const MAX_CHAINS: usize = 8192;
/// Bytes of records the chains hold at most, over all rules (records of long command lines are
/// tens of KiB each).
pub const MAX_CHAIN_BYTES: usize = 16 << 20;
/// Parent links remembered at most (for `process_tree`).
const MAX_PARENTS: usize = 65_536;
/// How far up the tree a descendant is looked for.
const MAX_TREE_DEPTH: usize = 16;
/// Chains of one `host` rule waiting at once.
const HOST_CHAINS: usize = 256;

/// The chain keys of a record under one rule (see [`Engine::keys`]): the host's (0), its
/// process's pid, or that pid and its ancestors'.
struct Keys {
    pids: [u64; MAX_TREE_DEPTH],
    len: usize,
}

/// A record as the engine sees it.
pub struct Seen<'a> {
    pub record: &'a Record,
    pub seq: u64,
    /// When the kernel saw it (boot clock, ns).
    pub time_ns: u64,
}

/// A completed chain.
#[derive(Debug)]
pub struct Alert {
    pub rule: Arc<Rule>,
    pub pid: u64,
    pub related_seq: Vec<u64>,
    pub detail: String,
}

struct Chain {
    next: usize,
    started_ns: u64,
    /// What `matched` holds, about.
    bytes: usize,
    seqs: Vec<u64>,
    matched: Vec<Record>,
    /// Fields of `matched` that `same_as` compares with, each looked up once, by the slot of
    /// the reference: a host chain is compared with every record of its next step's type while
    /// it waits.
    captured: RefCell<Vec<Option<Option<Field>>>>,
    /// The key process exited (process_tree: a new process under its pid is not it).
    root_exited: bool,
}

impl Chain {
    fn new(time_ns: u64, seq: u64, record: &Record, bytes: usize) -> Chain {
        Chain {
            next: 1,
            started_ns: time_ns,
            bytes,
            seqs: vec![seq],
            matched: vec![record.clone()],
            captured: RefCell::new(Vec::new()),
            root_exited: false,
        }
    }

    /// Step `step`'s `field` (the rule's reference `slot`) is there and equals `value`.
    fn earlier_equals(&self, step: usize, field: &str, slot: usize, value: Option<&Field>) -> bool {
        let mut captured = self.captured.borrow_mut();
        if captured.len() <= slot {
            captured.resize(slot + 1, None);
        }
        let earlier = captured[slot]
            .get_or_insert_with(|| self.matched.get(step).and_then(|m| m.field(field)))
            .as_ref();
        earlier.is_some() && value == earlier
    }
}

/// The record being looked at, with the fields that the rules of its type name, all looked up
/// in one pass over the record.
struct Current<'a> {
    record: &'a Record,
    names: Arc<[String]>,
    found: Vec<Option<Field>>,
}

impl<'a> Current<'a> {
    fn new(record: &'a Record, names: Option<&Arc<[String]>>) -> Current<'a> {
        let names = names.cloned().unwrap_or_else(|| Arc::from([]));
        Current {
            record,
            found: record.fields(&names),
            names,
        }
    }

    /// The field a condition reads, by its slot.
    fn with<R>(&self, c: &Condition, f: impl FnOnce(Option<&Field>) -> R) -> R {
        debug_assert!(self.names.get(c.slot).is_none_or(|n| *n == c.field));
        match self.found.get(c.slot) {
            Some(value) => f(value.as_ref()),
            // Every field a condition reads was gathered, in its slot; this is for safety only.
            None => f(self.record.field(&c.field).as_ref()),
        }
    }
}

pub struct Engine {
    rules: Vec<Arc<Rule>>,
    /// Rule indexes by the event types their steps name.
    by_type: HashMap<String, Vec<usize>>,
    /// The fields that the conditions of those steps read, by event type.
    fields_by_type: HashMap<String, Arc<[String]>>,
    /// (rule, key pid) -> chains, oldest first.
    chains: HashMap<(usize, u64), VecDeque<Chain>>,
    count: usize,
    /// What all chains hold, about (see [`Record::held_bytes`]).
    bytes: usize,
    parents: HashMap<u64, u64>,
    pub evictions: u64,
}

impl Engine {
    pub fn new(mut rules: Vec<Rule>) -> Engine {
        let mut by_type: HashMap<String, Vec<usize>> = HashMap::new();
        let mut fields: HashMap<String, Vec<String>> = HashMap::new();
        for (i, rule) in rules.iter_mut().enumerate() {
            // Each condition's field gets its slot among the fields of its record type, and
            // each same_as reference its slot among the rule's: looked up by place, not name.
            let mut references: Vec<(usize, String)> = Vec::new();
            for step in &mut rule.steps {
                let list = by_type.entry(step.event_type.clone()).or_default();
                if !list.contains(&i) {
                    list.push(i);
                }
                let names = fields.entry(step.event_type.clone()).or_default();
                for c in step.all.iter_mut().chain(step.any.iter_mut().flatten()) {
                    c.slot = slot_of(names, |n| *n == c.field, || c.field.clone());
                    if let Op::SameAs { step, field, slot } = &mut c.op {
                        *slot = slot_of(
                            &mut references,
                            |(s, f)| s == step && f == field,
                            || (*step, field.clone()),
                        );
                    }
                }
            }
        }
        let rules: Vec<Arc<Rule>> = rules.into_iter().map(Arc::new).collect();
        Engine {
            rules,
            by_type,
            fields_by_type: fields
                .into_iter()
                .map(|(event_type, names)| (event_type, names.into()))
                .collect(),
            chains: HashMap::new(),
            count: 0,
            bytes: 0,
            parents: HashMap::new(),
            evictions: 0,
        }
    }

    #[cfg(test)]
    pub fn chains(&self) -> usize {
        self.count
    }

    /// Look at one record; the alerts it completes.
    pub fn observe(&mut self, seen: &Seen<'_>) -> Vec<Alert> {
        let event_type = seen.record.event_type();
        let pid = seen.record.pid().map(u64::from);
        if let (Some(pid), Some(ppid)) = (pid, seen.record.ppid()) {
            if self.parents.len() >= MAX_PARENTS {
                self.parents.clear();
            }
            self.parents.insert(pid, ppid.into());
        }
        // A new image under a pid whose tree chain's root has exited is another process: its
        // chains go before this record is looked at.
        if event_type == "execve" {
            self.reused(pid);
        }
        let mut alerts = Vec::new();
        let candidates = self.by_type.get(event_type).map_or(0, Vec::len);
        if candidates > 0 {
            // The fields that these rules read, looked up once for all of them.
            let current = Current::new(seen.record, self.fields_by_type.get(event_type));
            for i in 0..candidates {
                let index = self.by_type[event_type][i];
                if let Some(alert) = self.observe_rule(index, event_type, pid, seen, &current) {
                    alerts.push(alert);
                }
            }
        }
        if event_type == "exit" {
            self.exited(pid);
        }
        alerts
    }

    /// The keys whose chains a record of `pid` can advance: on the stack, as this is asked for
    /// every rule a record may concern.
    fn keys(&self, key: Key, pid: Option<u64>) -> Keys {
        let mut keys = Keys {
            pids: [0; MAX_TREE_DEPTH],
            len: 0,
        };
        match (key, pid) {
            (Key::Host, _) => keys.len = 1,
            (_, None) => {}
            (Key::Process, Some(pid)) => {
                keys.pids[0] = pid;
                keys.len = 1;
            }
            (Key::ProcessTree, Some(pid)) => {
                keys.pids[0] = pid;
                keys.len = 1;
                let mut at = pid;
                while keys.len < MAX_TREE_DEPTH {
                    match self.parents.get(&at) {
                        Some(&parent) if parent != at && parent != 0 => {
                            keys.pids[keys.len] = parent;
                            keys.len += 1;
                            at = parent;
                        }
                        _ => break,
                    }
                }
            }
        }
        keys
    }

    fn observe_rule(
        &mut self,
        index: usize,
        event_type: &str,
        pid: Option<u64>,
        seen: &Seen<'_>,
        current: &Current<'_>,
    ) -> Option<Alert> {
        let rule = self.rules[index].clone();
        let within = rule.within.as_nanos() as u64;
        // Advance the oldest chain of a matching key that is waiting for this step.
        let keys = self.keys(rule.key, pid);
        for &key in &keys.pids[..keys.len] {
            let Some(list) = self.chains.get_mut(&(index, key)) else {
                continue;
            };
            let before = list.len();
            let mut freed = 0;
            list.retain(|c| {
                let keep = seen.time_ns.saturating_sub(c.started_ns) <= within;
                freed += if keep { 0 } else { c.bytes };
                keep
            });
            self.count -= before - list.len();
            self.bytes -= freed;
            let hit = list.iter().position(|c| {
                let step = &rule.steps[c.next];
                step.event_type == event_type && step_matches(step, current, Some(c))
            });
            let Some(at) = hit else { continue };
            let chain = &mut list[at];
            chain.next += 1;
            chain.seqs.push(seen.seq);
            if chain.next == rule.steps.len() {
                chain.matched.push(seen.record.clone());
                // One chain, one alert: this key's other chains of the rule go with it.
                let done = list.remove(at).expect("the chain just matched");
                self.count -= list.len() + 1;
                self.bytes -= done.bytes + list.iter().map(|c| c.bytes).sum::<usize>();
                self.chains.remove(&(index, key));
                return Some(alert(&rule, done.seqs, &done.matched));
            }
            let size = seen.record.held_bytes();
            chain.matched.push(seen.record.clone());
            chain.bytes += size;
            self.bytes += size;
            self.evict_past_bytes();
            return None;
        }
        // Or start one.
        let first = &rule.steps[0];
        if first.event_type != event_type || !step_matches(first, current, None) {
            return None;
        }
        if rule.steps.len() == 1 {
            return Some(alert(
                &rule,
                vec![seen.seq],
                std::slice::from_ref(seen.record),
            ));
        }
        let key = match rule.key {
            Key::Host => 0,
            _ => pid?,
        };
        if self.count >= MAX_CHAINS {
            self.evict_oldest();
        }
        let size = seen.record.held_bytes();
        let list = self.chains.entry((index, key)).or_default();
        // For one process, a newer start of the same chain replaces one still waiting for its
        // second step. For the host, chains of different processes wait side by side (many
        // files are written at once), up to a bound.
        let waiting = list.iter().filter(|c| c.next == 1).count();
        if rule.key != Key::Host && waiting > 0 || waiting >= HOST_CHAINS {
            if let Some(pos) = list.iter().position(|c| c.next == 1) {
                let gone = list.remove(pos).expect("a waiting chain");
                self.count -= 1;
                self.bytes -= gone.bytes;
                if rule.key == Key::Host {
                    self.evictions += 1;
                }
            }
        }
        list.push_back(Chain::new(seen.time_ns, seen.seq, seen.record, size));
        self.count += 1;
        self.bytes += size;
        self.evict_past_bytes();
        None
    }

    /// The process `pid` exited: its `process` chains end; `process_tree` chains rooted there
    /// live on for their window (descendants may go on), but not into a new process under the
    /// same pid.
    fn exited(&mut self, pid: Option<u64>) {
        let Some(pid) = pid else { return };
        // O(rules): chains are keyed by (rule, pid).
        for index in 0..self.rules.len() {
            let key = (index, pid);
            let Some(list) = self.chains.get_mut(&key) else {
                continue;
            };
            match self.rules[index].key {
                Key::Process => {
                    self.count -= list.len();
                    self.bytes -= list.iter().map(|c| c.bytes).sum::<usize>();
                    self.chains.remove(&key);
                }
                _ => list.iter_mut().for_each(|c| c.root_exited = true),
            }
        }
    }

    /// A new image under `pid`: if the process that started a tree chain has exited, this is
    /// another process that reused its pid.
    fn reused(&mut self, pid: Option<u64>) {
        let Some(pid) = pid else { return };
        for index in 0..self.rules.len() {
            let key = (index, pid);
            let Some(list) = self.chains.get_mut(&key) else {
                continue;
            };
            let before = list.len();
            let mut freed = 0;
            list.retain(|c| {
                freed += if c.root_exited { c.bytes } else { 0 };
                !c.root_exited
            });
            self.count -= before - list.len();
            self.bytes -= freed;
            if list.is_empty() {
                self.chains.remove(&key);
            }
        }
    }

    /// Drop chains whose window has passed (`now_ns`: the newest kernel time seen).
    pub fn expire(&mut self, now_ns: u64) {
        let rules = &self.rules;
        let (mut removed, mut freed) = (0, 0);
        self.chains.retain(|(index, _), list| {
            let within = rules[*index].within.as_nanos() as u64;
            let before = list.len();
            list.retain(|c| {
                let keep = now_ns.saturating_sub(c.started_ns) <= within;
                freed += if keep { 0 } else { c.bytes };
                keep
            });
            removed += before - list.len();
            !list.is_empty()
        });
        self.count -= removed;
        self.bytes -= freed;
    }

    /// Let the oldest chains go while all hold more than [`MAX_CHAIN_BYTES`].
    fn evict_past_bytes(&mut self) {
        while self.bytes > MAX_CHAIN_BYTES && self.count > 0 {
            self.evict_oldest();
        }
    }

    fn evict_oldest(&mut self) {
        let oldest = self
            .chains
            .iter()
            .filter_map(|(k, list)| list.front().map(|c| (c.started_ns, *k)))
            .min_by_key(|(t, _)| *t)
            .map(|(_, k)| k);
        if let Some(k) = oldest {
            if let Some(list) = self.chains.get_mut(&k) {
                if let Some(gone) = list.pop_front() {
                    self.bytes -= gone.bytes;
                }
                self.count -= 1;
                self.evictions += 1;
                if list.is_empty() {
                    self.chains.remove(&k);
                }
            }
        }
    }
}

fn step_matches(step: &Step, current: &Current<'_>, chain: Option<&Chain>) -> bool {
    step.all.iter().all(|c| holds(c, current, chain))
        && (step.any.is_empty()
            || step
                .any
                .iter()
                .any(|alt| alt.iter().all(|c| holds(c, current, chain))))
}

/// A field has the value a rule wrote (a YAML scalar or list).
fn equals(field: &Field, value: &Value) -> bool {
    match (field, value) {
        (Field::Uint(x), Value::Number(n)) => n.as_u64() == Some(*x),
        (Field::Int(x), Value::Number(n)) => n.as_i64() == Some(*x),
        (Field::Bool(x), Value::Bool(b)) => x == b,
        (Field::Text(x), Value::String(s)) => x == s,
        (Field::List(xs), Value::Array(vs)) => {
            xs.len() == vs.len() && xs.iter().zip(vs).all(|(x, v)| equals(x, v))
        }
        _ => false,
    }
}

fn number(field: &Field) -> Option<f64> {
    match field {
        Field::Uint(x) => Some(*x as f64),
        Field::Int(x) => Some(*x as f64),
        _ => None,
    }
}

/// The place of the item that `is` in `list`, added with `new` if it was not there.
fn slot_of<T>(list: &mut Vec<T>, is: impl Fn(&T) -> bool, new: impl FnOnce() -> T) -> usize {
    list.iter().position(is).unwrap_or_else(|| {
        list.push(new());
        list.len() - 1
    })
}

fn holds(c: &Condition, current: &Current<'_>, chain: Option<&Chain>) -> bool {
    current.with(c, |value| {
        let text = match value {
            Some(Field::Text(t)) => Some(t.as_str()),
            _ => None,
        };
        let number = value.and_then(number);
        match &c.op {
            Op::Equals(v) => value.is_some_and(|x| equals(x, v)),
            Op::NotEquals(v) => value.is_some_and(|x| !equals(x, v)),
            Op::In(list) => value.is_some_and(|x| list.iter().any(|v| equals(x, v))),
            Op::NotIn(list) => value.is_some_and(|x| !list.iter().any(|v| equals(x, v))),
            Op::StartsWith(prefixes) => {
                text.is_some_and(|t| prefixes.iter().any(|p| t.starts_with(p.as_str())))
            }
            Op::EndsWith(suffixes) => {
                text.is_some_and(|t| suffixes.iter().any(|s| t.ends_with(s.as_str())))
            }
            Op::Contains(s) => text.is_some_and(|t| t.contains(s.as_str())),
            Op::Glob(patterns) => text.is_some_and(|t| patterns.iter().any(|p| glob(p, t))),
            Op::Lt(n) => number.is_some_and(|x| x < *n),
            Op::Le(n) => number.is_some_and(|x| x <= *n),
            Op::Gt(n) => number.is_some_and(|x| x > *n),
            Op::Ge(n) => number.is_some_and(|x| x >= *n),
            Op::Exists(want) => value.is_some() == *want,
            Op::SameAs { step, field, slot } => {
                chain.is_some_and(|chain| chain.earlier_equals(*step, field, *slot, value))
            }
        }
    })
}

/// A field as an alert's detail shows it.
fn shown(field: &Field) -> String {
    match field {
        Field::Uint(x) => x.to_string(),
        Field::Int(x) => x.to_string(),
        Field::Bool(x) => x.to_string(),
        Field::Text(x) => x.clone(),
        Field::List(xs) => {
            let items: Vec<String> = xs.iter().map(shown).collect();
            format!("[{}]", items.join(","))
        }
    }
}

fn alert(rule: &Arc<Rule>, related_seq: Vec<u64>, matched: &[Record]) -> Alert {
    let last = matched.last();
    let pid = last.and_then(Record::pid).map_or(0, u64::from);
    let mut detail = rule.detail.clone();
    for placeholder in super::rules::placeholders(&rule.detail) {
        let value = placeholder
            .split_once('.')
            .and_then(|(n, field)| matched.get(n.parse::<usize>().ok()?)?.field(field))
            .map_or_else(|| "?".to_owned(), |v| shown(&v));
        detail = detail.replace(&format!("{{{placeholder}}}"), &value);
    }
    if detail.is_empty() {
        detail = rule.description.clone();
    }
    Alert {
        rule: rule.clone(),
        pid,
        related_seq,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use owo_common::event::Creds;

    use super::*;
    use crate::{
        behavior::rules::{parse, BUILTIN},
        pipeline::record::{
            Actor, ExecRecord, ExitRecord, FileRecord, ModuleRecord, NetworkRecord, PrivilegeRecord,
        },
    };

    const S: u64 = 1_000_000_000;

    fn engine() -> Engine {
        Engine::new(parse(BUILTIN, Duration::from_secs(15)).unwrap())
    }

    /// Feed records (seq from 1, time in seconds); the names of the rules that fired, with seqs.
    fn feed(engine: &mut Engine, records: &[(u64, Record)]) -> Vec<(String, Vec<u64>)> {
        let mut out = Vec::new();
        for (i, (t, record)) in records.iter().enumerate() {
            for a in engine.observe(&Seen {
                record,
                seq: i as u64 + 1,
                time_ns: t * S,
            }) {
                out.push((a.rule.name.clone(), a.related_seq));
            }
        }
        out
    }

    fn actor(pid: u32, ppid: u32) -> Actor {
        Actor {
            pid,
            tid: pid,
            ppid,
            comm: owo_common::event::Comm::new(b"c"),
            ..Actor::default()
        }
    }

    fn exec_record(pid: u32, ppid: u32, exe: &str) -> ExecRecord {
        ExecRecord {
            actor: Actor {
                exe: Some(exe.as_bytes().into()),
                ..actor(pid, ppid)
            },
            path: exe.as_bytes().to_vec(),
            ..ExecRecord::default()
        }
    }

    fn exec(pid: u32, ppid: u32, exe: &str) -> Record {
        Record::Exec(Box::new(exec_record(pid, ppid, exe)))
    }

    fn connect(pid: u32) -> Record {
        Record::Network(NetworkRecord {
            actor: actor(pid, 1),
            kind: "connect",
            syscall: 42,
            protocol: Some(6),
            saddr: Some([10, 0, 0, 1].into()),
            sport: Some(40000),
            daddr: [10, 1, 2, 3].into(),
            dport: 4444,
            dns_query: None,
            ret: Some(0),
        })
    }

    fn setuid(pid: u32, uid: u32, euid: u32) -> Record {
        Record::Privilege(PrivilegeRecord {
            actor: Actor {
                uid,
                ..actor(pid, 1)
            },
            before: Creds {
                uid,
                euid,
                ..Creds::default()
            },
            ret: 0,
            ..PrivilegeRecord::default()
        })
    }

    fn file(pid: u32, kind: &'static str, path: &str) -> Record {
        Record::File(FileRecord {
            actor: actor(pid, 1),
            kind,
            path: path.as_bytes().to_vec(),
            ..FileRecord::default()
        })
    }

    #[test]
    fn fields_are_read_as_written() {
        let record = exec(100, 1, "/tmp/x");
        assert_eq!(record.field("pid"), Some(Field::Uint(100)));
        assert_eq!(record.field("exe"), Some(Field::Text("/tmp/x".into())));
        assert_eq!(record.field("is_tty"), Some(Field::Bool(false)));
        assert_eq!(record.field("exe_memfd"), None);
        let odd = Record::Exec(Box::new(ExecRecord {
            args: owo_common::event::Argv::from_args([&b"a\xff"[..]]),
            args_truncated: true,
            ..exec_record(1, 0, "/x")
        }));
        assert_eq!(
            odd.field("args"),
            Some(Field::List(vec![Field::Text("a\\xff".into())]))
        );
        assert_eq!(odd.field("args_escaped"), Some(Field::Bool(true)));
        assert_eq!(odd.field("args_truncated"), Some(Field::Bool(true)));
        assert_eq!(odd.field("cmdline_escaped"), Some(Field::Bool(true)));
        assert_eq!(odd.field("path_truncated"), None);
    }

    #[test]
    fn exec_from_tmp_then_connect_in_the_window_alerts_once() {
        let mut e = engine();
        let fired = feed(
            &mut e,
            &[
                (0, exec(100, 1, "/tmp/x")),
                (5, connect(100)),
                (6, connect(100)),
            ],
        );
        assert_eq!(
            fired,
            [("exec_from_temp_then_connect".to_owned(), vec![1, 2])],
            "one chain, one alert"
        );
        assert_eq!(e.chains(), 0);
    }

    #[test]
    fn out_of_window_wrong_order_and_other_processes_do_not() {
        let mut e = engine();
        assert!(
            feed(&mut e, &[(0, exec(100, 1, "/tmp/x")), (16, connect(100))]).is_empty(),
            "out of the window"
        );
        let mut e = engine();
        assert!(
            feed(&mut e, &[(0, connect(100)), (1, exec(100, 1, "/tmp/x"))]).is_empty(),
            "wrong order"
        );
        let mut e = engine();
        assert!(
            feed(&mut e, &[(0, exec(100, 1, "/tmp/x")), (1, connect(101))]).is_empty(),
            "another process"
        );
        let mut e = engine();
        assert!(
            feed(
                &mut e,
                &[(0, exec(100, 1, "/usr/bin/x")), (1, connect(100))]
            )
            .is_empty(),
            "not from /tmp"
        );
    }

    #[test]
    fn a_reused_pid_inherits_nothing() {
        let mut e = engine();
        let exit = Record::Exit(ExitRecord {
            actor: actor(100, 1),
            ..ExitRecord::default()
        });
        let fired = feed(
            &mut e,
            &[
                (0, exec(100, 1, "/tmp/x")),
                (1, exit),
                (2, exec(100, 1, "/usr/bin/ok")),
                (3, connect(100)),
            ],
        );
        assert!(fired.is_empty(), "{fired:?}");
        assert_eq!(e.chains(), 0);
    }

    #[test]
    fn privilege_gain_then_a_shell_in_the_tree() {
        let mut e = engine();
        let gain = setuid(200, 1000, 1000);
        let fired = feed(
            &mut e,
            &[
                (0, exec(200, 1, "/usr/bin/exploit")),
                (1, gain),
                (2, exec(201, 200, "/usr/bin/bash")),
            ],
        );
        assert_eq!(
            fired,
            [("privilege_gain_then_shell".to_owned(), vec![2, 3])]
        );
        // sudo already runs with euid 0: not a gain.
        let mut e = engine();
        let sudo = setuid(400, 1000, 0);
        assert!(feed(&mut e, &[(0, sudo), (1, exec(400, 1, "/bin/sh"))]).is_empty());
        // Root dropping and regaining is not a gain.
        let mut e = engine();
        let root = setuid(300, 0, 0);
        assert!(feed(&mut e, &[(0, root), (1, exec(300, 1, "/bin/sh"))]).is_empty());
    }

    #[test]
    fn single_step_rules_and_same_as() {
        let mut e = engine();
        let fileless = Record::Exec(Box::new(ExecRecord {
            exe_memfd: true,
            ..exec_record(5, 1, "/memfd:x")
        }));
        let module = Record::Module(ModuleRecord {
            actor: actor(6, 1),
            syscall: 313,
            ..ModuleRecord::default()
        });
        let shell = Record::Exec(Box::new(ExecRecord {
            stdin: Some("socket"),
            stdout: Some("socket"),
            ..exec_record(7, 1, "/usr/bin/bash")
        }));
        let lib = file(8, "library_load", "/dev/shm/x.so");
        let created = file(9, "create", "/tmp/dl");
        let names: Vec<String> = feed(
            &mut e,
            &[
                (0, fileless),
                (0, module),
                (0, shell),
                (0, lib),
                (1, created),
                (2, exec(10, 1, "/tmp/dl")),
            ],
        )
        .into_iter()
        .map(|(n, _)| n)
        .collect();
        assert_eq!(
            names,
            [
                "fileless_exec",
                "kernel_module_load",
                "shell_with_socket_stdio",
                "library_from_temp",
                "download_and_run"
            ]
        );
    }

    #[test]
    fn a_flood_of_chains_is_capped_and_counted() {
        let mut e = engine();
        for pid in 0..(MAX_CHAINS as u64 * 2) {
            let record = exec(pid as u32 + 1000, 1, "/tmp/x");
            e.observe(&Seen {
                record: &record,
                seq: pid,
                time_ns: pid,
            });
        }
        assert!(e.chains() <= MAX_CHAINS);
        assert!(e.evictions >= MAX_CHAINS as u64);
        e.expire(100 * S);
        assert_eq!(e.chains(), 0, "expired with the window");
    }

    #[test]
    fn chains_of_records_with_long_command_lines_are_capped_in_bytes() {
        let mut e = engine();
        let args = owo_common::event::Argv::from_args(["x".repeat(60_000)]);
        for pid in 0..2000u64 {
            let mut record = exec_record(pid as u32 + 1000, 1, "/tmp/x");
            record.args = args.clone();
            let record = Record::Exec(Box::new(record));
            e.observe(&Seen {
                record: &record,
                seq: pid,
                time_ns: pid,
            });
            assert!(e.bytes <= MAX_CHAIN_BYTES, "{} bytes held", e.bytes);
        }
        assert!(e.chains() > 100, "the newest chains stay");
        assert!(e.evictions > 0, "the oldest went, counted");
        e.expire(100 * S);
        assert_eq!((e.chains(), e.bytes), (0, 0), "all accounted for");
    }
}
