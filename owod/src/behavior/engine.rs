//! Matching records against rules. State is partial matches ("chains"), kept per rule and per
//! key process, each with the `seq` of every record it matched and those records' fields (for
//! `same_as` and the alert's detail). A chain ends when it completes (one alert), when its window
//! passes, or when its process exits (key `process`) or its pid is reused (`process_tree`). All
//! chains together are capped; past the cap the oldest go, counted. Per record, only the rules
//! with a step for its event type are looked at, and for each only the chains of its key.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
};

use serde_json::{Map, Value};

use super::rules::{glob, Condition, Key, Op, Rule, Step};

/// Chains held at most, over all rules.
pub const MAX_CHAINS: usize = 8192;
/// Parent links remembered at most (for `process_tree`).
const MAX_PARENTS: usize = 65_536;
/// How far up the tree a descendant is looked for.
const MAX_TREE_DEPTH: usize = 16;
/// Chains of one `host` rule waiting at once.
const HOST_CHAINS: usize = 256;

/// A record as the engine sees it.
pub struct Seen<'a> {
    pub fields: &'a Map<String, Value>,
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
    seqs: Vec<u64>,
    matched: Vec<Map<String, Value>>,
    /// The key process exited (process_tree: a new process under its pid is not it).
    root_exited: bool,
}

pub struct Engine {
    rules: Vec<Arc<Rule>>,
    /// Rule indexes by the event types their steps name.
    by_type: HashMap<String, Vec<usize>>,
    /// (rule, key pid) -> chains, oldest first.
    chains: HashMap<(usize, u64), VecDeque<Chain>>,
    count: usize,
    parents: HashMap<u64, u64>,
    pub evictions: u64,
}

fn pid_of(fields: &Map<String, Value>) -> Option<u64> {
    fields.get("pid").and_then(Value::as_u64)
}

impl Engine {
    pub fn new(rules: Vec<Rule>) -> Engine {
        let rules: Vec<Arc<Rule>> = rules.into_iter().map(Arc::new).collect();
        let mut by_type: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, rule) in rules.iter().enumerate() {
            for step in &rule.steps {
                let list = by_type.entry(step.event_type.clone()).or_default();
                if !list.contains(&i) {
                    list.push(i);
                }
            }
        }
        Engine {
            rules,
            by_type,
            chains: HashMap::new(),
            count: 0,
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
        let fields = seen.fields;
        let Some(event_type) = fields.get("event_type").and_then(Value::as_str) else {
            return Vec::new();
        };
        let pid = pid_of(fields);
        if let (Some(pid), Some(ppid)) = (pid, fields.get("ppid").and_then(Value::as_u64)) {
            if self.parents.len() >= MAX_PARENTS {
                self.parents.clear();
            }
            self.parents.insert(pid, ppid);
        }
        // A new image under a pid whose tree chain's root has exited is another process: its
        // chains go before this record is looked at.
        if event_type == "execve" {
            self.reused(pid);
        }
        let mut alerts = Vec::new();
        let candidates = self.by_type.get(event_type).cloned().unwrap_or_default();
        for index in candidates {
            if let Some(alert) = self.observe_rule(index, event_type, pid, seen) {
                alerts.push(alert);
            }
        }
        if event_type == "exit" {
            self.exited(pid);
        }
        alerts
    }

    fn keys(&self, key: Key, pid: Option<u64>) -> Vec<u64> {
        match (key, pid) {
            (Key::Host, _) => vec![0],
            (_, None) => Vec::new(),
            (Key::Process, Some(pid)) => vec![pid],
            (Key::ProcessTree, Some(pid)) => {
                let mut chain = vec![pid];
                let mut at = pid;
                while chain.len() < MAX_TREE_DEPTH {
                    match self.parents.get(&at) {
                        Some(&parent) if parent != at && parent != 0 => {
                            chain.push(parent);
                            at = parent;
                        }
                        _ => break,
                    }
                }
                chain
            }
        }
    }

    fn observe_rule(
        &mut self,
        index: usize,
        event_type: &str,
        pid: Option<u64>,
        seen: &Seen<'_>,
    ) -> Option<Alert> {
        let rule = self.rules[index].clone();
        let within = rule.within.as_nanos() as u64;
        // Advance the oldest chain of a matching key that is waiting for this step.
        for key in self.keys(rule.key, pid) {
            let Some(list) = self.chains.get_mut(&(index, key)) else {
                continue;
            };
            let before = list.len();
            list.retain(|c| seen.time_ns.saturating_sub(c.started_ns) <= within);
            self.count -= before - list.len();
            let hit = list.iter().position(|c| {
                let step = &rule.steps[c.next];
                step.event_type == event_type && step_matches(step, seen.fields, &c.matched)
            });
            let Some(at) = hit else { continue };
            let chain = &mut list[at];
            chain.next += 1;
            chain.seqs.push(seen.seq);
            chain.matched.push(seen.fields.clone());
            if chain.next == rule.steps.len() {
                // One chain, one alert: this key's other chains of the rule go with it.
                let done = list.remove(at).expect("the chain just matched");
                self.count -= list.len() + 1;
                self.chains.remove(&(index, key));
                return Some(alert(&rule, done.seqs, &done.matched));
            }
            return None;
        }
        // Or start one.
        let first = &rule.steps[0];
        if first.event_type != event_type || !step_matches(first, seen.fields, &[]) {
            return None;
        }
        if rule.steps.len() == 1 {
            return Some(alert(
                &rule,
                vec![seen.seq],
                std::slice::from_ref(seen.fields),
            ));
        }
        let key = match rule.key {
            Key::Host => 0,
            _ => pid?,
        };
        if self.count >= MAX_CHAINS {
            self.evict_oldest();
        }
        let list = self.chains.entry((index, key)).or_default();
        // For one process, a newer start of the same chain replaces one still waiting for its
        // second step. For the host, chains of different processes wait side by side (many
        // files are written at once), up to a bound.
        let waiting = list.iter().filter(|c| c.next == 1).count();
        if rule.key != Key::Host && waiting > 0 || waiting >= HOST_CHAINS {
            if let Some(pos) = list.iter().position(|c| c.next == 1) {
                list.remove(pos);
                self.count -= 1;
                if rule.key == Key::Host {
                    self.evictions += 1;
                }
            }
        }
        list.push_back(Chain {
            next: 1,
            started_ns: seen.time_ns,
            seqs: vec![seen.seq],
            matched: vec![seen.fields.clone()],
            root_exited: false,
        });
        self.count += 1;
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
            list.retain(|c| !c.root_exited);
            self.count -= before - list.len();
            if list.is_empty() {
                self.chains.remove(&key);
            }
        }
    }

    /// Drop chains whose window has passed (`now_ns`: the newest kernel time seen).
    pub fn expire(&mut self, now_ns: u64) {
        let rules = &self.rules;
        let mut removed = 0;
        self.chains.retain(|(index, _), list| {
            let within = rules[*index].within.as_nanos() as u64;
            let before = list.len();
            list.retain(|c| now_ns.saturating_sub(c.started_ns) <= within);
            removed += before - list.len();
            !list.is_empty()
        });
        self.count -= removed;
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
                list.pop_front();
                self.count -= 1;
                self.evictions += 1;
                if list.is_empty() {
                    self.chains.remove(&k);
                }
            }
        }
    }
}

fn step_matches(step: &Step, fields: &Map<String, Value>, matched: &[Map<String, Value>]) -> bool {
    step.all.iter().all(|c| holds(c, fields, matched))
        && (step.any.is_empty()
            || step
                .any
                .iter()
                .any(|alt| alt.iter().all(|c| holds(c, fields, matched))))
}

fn holds(c: &Condition, fields: &Map<String, Value>, matched: &[Map<String, Value>]) -> bool {
    let value = fields.get(&c.field);
    let text = value.and_then(Value::as_str);
    let number = value.and_then(Value::as_f64);
    match &c.op {
        Op::Equals(v) => value == Some(v),
        Op::NotEquals(v) => value.is_some_and(|x| x != v),
        Op::In(list) => value.is_some_and(|x| list.contains(x)),
        Op::NotIn(list) => value.is_some_and(|x| !list.contains(x)),
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
        Op::SameAs { step, field } => {
            let earlier = matched.get(*step).and_then(|m| m.get(field));
            earlier.is_some() && value == earlier
        }
    }
}

fn alert(rule: &Arc<Rule>, related_seq: Vec<u64>, matched: &[Map<String, Value>]) -> Alert {
    let last = matched.last();
    let pid = last.and_then(pid_of).unwrap_or(0);
    let mut detail = rule.detail.clone();
    for placeholder in super::rules::placeholders(&rule.detail) {
        let value = placeholder
            .split_once('.')
            .and_then(|(n, field)| matched.get(n.parse::<usize>().ok()?)?.get(field))
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .unwrap_or_else(|| "?".to_owned());
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

    use serde_json::json;

    use super::*;
    use crate::behavior::rules::{parse, BUILTIN};

    const S: u64 = 1_000_000_000;

    fn engine() -> Engine {
        Engine::new(parse(BUILTIN, Duration::from_secs(15)).unwrap())
    }

    /// Feed records (seq from 1, time in seconds); the names of the rules that fired, with seqs.
    fn feed(engine: &mut Engine, records: &[(u64, Value)]) -> Vec<(String, Vec<u64>)> {
        let mut out = Vec::new();
        for (i, (t, v)) in records.iter().enumerate() {
            let fields = v.as_object().unwrap();
            for a in engine.observe(&Seen {
                fields,
                seq: i as u64 + 1,
                time_ns: t * S,
            }) {
                out.push((a.rule.name.clone(), a.related_seq));
            }
        }
        out
    }

    fn exec(pid: u64, ppid: u64, exe: &str) -> Value {
        json!({"event_type": "execve", "pid": pid, "ppid": ppid, "exe": exe, "path": exe})
    }

    fn connect(pid: u64) -> Value {
        json!({"event_type": "network", "type": "connect", "pid": pid, "ppid": 1, "daddr": "10.1.2.3", "dport": 4444})
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
        let exit = json!({"event_type": "exit", "pid": 100, "ppid": 1});
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
        let gain = json!({"event_type": "privilege", "pid": 200, "ppid": 1, "uid": 1000, "euid": 1000, "new_uid": 0, "ret": 0});
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
        let sudo = json!({"event_type": "privilege", "pid": 400, "ppid": 1, "uid": 1000, "euid": 0, "new_uid": 0, "ret": 0});
        assert!(feed(&mut e, &[(0, sudo), (1, exec(400, 1, "/bin/sh"))]).is_empty());
        // Root dropping and regaining is not a gain.
        let mut e = engine();
        let root = json!({"event_type": "privilege", "pid": 300, "ppid": 1, "uid": 0, "new_uid": 0, "ret": 0});
        assert!(feed(&mut e, &[(0, root), (1, exec(300, 1, "/bin/sh"))]).is_empty());
    }

    #[test]
    fn single_step_rules_and_same_as() {
        let mut e = engine();
        let fileless = json!({"event_type": "execve", "pid": 5, "ppid": 1, "exe": "/memfd:x", "exe_memfd": true});
        let module = json!({"event_type": "module", "pid": 6, "ppid": 1, "type": "finit_module"});
        let shell = json!({"event_type": "execve", "pid": 7, "ppid": 1, "exe": "/usr/bin/bash", "stdin": "socket", "stdout": "socket"});
        let lib = json!({"event_type": "file", "type": "library_load", "pid": 8, "ppid": 1, "path": "/dev/shm/x.so"});
        let created =
            json!({"event_type": "file", "type": "create", "pid": 9, "ppid": 1, "path": "/tmp/dl"});
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
            let fields = exec(pid + 1000, 1, "/tmp/x");
            e.observe(&Seen {
                fields: fields.as_object().unwrap(),
                seq: pid,
                time_ns: pid,
            });
        }
        assert!(e.chains() <= MAX_CHAINS);
        assert!(e.evictions >= MAX_CHAINS as u64);
        e.expire(100 * S);
        assert_eq!(e.chains(), 0, "expired with the window");
    }
}
