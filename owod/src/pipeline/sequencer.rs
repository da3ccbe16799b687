//! The sequencer, which the exporter hub runs on each record before it writes it: it numbers
//! every record (`seq`, from 1, no gaps, so an alert can name the records that made it), shows
//! each to the rule engine, and after the record that completes a chain it adds a `behavior`
//! record and sends a `[BEHAVIOR]` log line and, through the daemon, the D-Bus `Alert` signal.
//! It is part of the hub's task, not a stage of its own: a record costs no extra hand-over.
//!
//! Records come in the order the kernel saw them (the collector merges the two lanes), so a
//! sequence rule sees "exec, then connect" as it happened.

use std::{
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use tokio::sync::mpsc;

use super::{
    record::{BehaviorRecord, Record},
    Batch, Counters, Outgoing,
};
use crate::behavior::{
    engine::{Alert, Engine, Seen},
    rules::Rule,
};

/// A fired rule, for the D-Bus `Alert` signal: its name and the alert record as JSON.
pub type AlertSignal = (String, String);

pub struct Sequencer {
    engine: Option<Engine>,
    seq: u64,
    newest_ns: u64,
    counters: Arc<Counters>,
    signals: mpsc::Sender<AlertSignal>,
    /// Chains evicted by the engines before the current one (a reload replaces it).
    evicted_before: u64,
    expired: Instant,
}

impl Sequencer {
    pub fn new(
        rules: Option<Vec<Rule>>,
        counters: Arc<Counters>,
        signals: mpsc::Sender<AlertSignal>,
    ) -> Sequencer {
        Sequencer {
            engine: rules.map(Engine::new),
            seq: 0,
            newest_ns: 0,
            counters,
            signals,
            evicted_before: 0,
            expired: Instant::now(),
        }
    }

    /// The last `seq` given.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// New rules (already checked), from a reload; `None` switches the engine off.
    pub fn set_rules(&mut self, rules: Option<Vec<Rule>>) {
        self.evicted_before += self.engine.as_ref().map_or(0, |e| e.evictions);
        self.engine = rules.map(Engine::new);
    }

    /// Let chains past their window go (called once a second, busy or not).
    pub fn expire(&mut self) {
        if let Some(engine) = &mut self.engine {
            engine.expire(self.newest_ns);
            self.counters
                .rule_chains_evicted
                .store(self.evicted_before + engine.evictions, Ordering::Relaxed);
        }
        self.expired = Instant::now();
    }

    /// Number the record and add it to `passed`, then any alerts it completes.
    pub fn pass(&mut self, mut out: Outgoing, passed: &mut Batch) {
        self.seq += 1;
        out.seq = self.seq;
        // Expired chains go once a second, however busy the input (the hub's tick may not get a
        // turn then).
        if self.expired.elapsed() >= Duration::from_secs(1) {
            self.expire();
        }
        let alerts = match (&mut self.engine, out.ktime_ns) {
            (Some(engine), Some(ns)) => {
                self.newest_ns = self.newest_ns.max(ns);
                engine.observe(&Seen {
                    record: &out.record,
                    seq: out.seq,
                    time_ns: ns,
                })
            }
            _ => Vec::new(),
        };
        let ktime_ns = out.ktime_ns;
        passed.push(out);
        for alert in alerts {
            self.seq += 1;
            let record = Record::Behavior(behavior_record(&alert));
            tracing::warn!(
                rule = alert.rule.name,
                severity = alert.rule.severity,
                "[BEHAVIOR] {}: {}",
                alert.rule.name,
                // Record values (argv, paths) in the detail: control characters are escaped.
                alert.detail.escape_debug()
            );
            let json = record.to_json();
            if self
                .signals
                .try_send((alert.rule.name.clone(), json))
                .is_err()
            {
                let dropped = self
                    .counters
                    .alert_signals_dropped
                    .fetch_add(1, Ordering::Relaxed);
                if dropped == 0 {
                    tracing::warn!("the D-Bus Alert signal cannot keep up; alerts are still written as records");
                }
            }
            passed.push(Outgoing {
                ktime_ns,
                record,
                seq: self.seq,
                identity: None,
            });
        }
    }
}

fn behavior_record(alert: &Alert) -> BehaviorRecord {
    let rule = &alert.rule;
    BehaviorRecord {
        rule: rule.name.clone(),
        severity: rule.severity.clone(),
        detail: alert.detail.clone(),
        description: rule.description.clone(),
        pid: alert.pid,
        related_seq: alert.related_seq.clone(),
        mitre: rule.mitre.clone(),
    }
}
