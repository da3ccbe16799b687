//! The sequencer, between the process stage and the exporter hub: it numbers every record
//! (`seq`, from 1, no gaps, so an alert can name the records that made it), shows each to the
//! rule engine, and after the record that completes a chain it sends a `behavior` record, a
//! `[BEHAVIOR]` log line and, through the daemon, the D-Bus `Alert` signal.
//!
//! Records come in the order the kernel saw them (the collector merges the two lanes), so a
//! sequence rule sees "exec, then connect" as it happened.

use std::{
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use tokio::sync::{mpsc, oneshot};

use super::{
    record::{BehaviorRecord, Record},
    Batch, Counters, Outgoing,
};
use crate::behavior::{
    engine::{Alert, Engine, Seen},
    rules::Rule,
};

/// Requests to the stage.
pub enum SequencerCommand {
    /// New rules (already checked), from a reload; `None` switches the engine off.
    Rules {
        rules: Option<Vec<Rule>>,
        reply: oneshot::Sender<()>,
    },
}

/// A fired rule, for the D-Bus `Alert` signal: its name and the alert record as JSON.
pub type AlertSignal = (String, String);

pub struct Sequencer {
    engine: Option<Engine>,
    seq: u64,
    newest_ns: u64,
    counters: Arc<Counters>,
    /// Chains evicted by the engines before the current one (a reload replaces it).
    evicted_before: u64,
    expired: Instant,
}

impl Sequencer {
    pub fn new(rules: Option<Vec<Rule>>, counters: Arc<Counters>) -> Sequencer {
        Sequencer {
            engine: rules.map(Engine::new),
            seq: 0,
            newest_ns: 0,
            counters,
            evicted_before: 0,
            expired: Instant::now(),
        }
    }

    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<Batch>,
        tx: mpsc::Sender<Batch>,
        mut commands: mpsc::Receiver<SequencerCommand>,
        signals: mpsc::Sender<AlertSignal>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                biased;
                Some(command) = commands.recv() => match command {
                    SequencerCommand::Rules { rules, reply } => {
                        self.evicted_before += self.engine.as_ref().map_or(0, |e| e.evictions);
                        self.engine = rules.map(Engine::new);
                        let _ = reply.send(());
                    }
                },
                batch = rx.recv() => match batch {
                    Some(batch) => {
                        let mut passed = Vec::with_capacity(batch.len());
                        for out in batch {
                            self.pass(out, &mut passed, &signals);
                        }
                        if tx.send(passed).await.is_err() {
                            return;
                        }
                    }
                    None => return,
                },
                _ = tick.tick() => {
                    if let Some(engine) = &mut self.engine {
                        engine.expire(self.newest_ns);
                    }
                }
            }
        }
    }

    /// Number the record and add it to `passed`, then any alerts it completes.
    fn pass(&mut self, mut out: Outgoing, passed: &mut Batch, signals: &mpsc::Sender<AlertSignal>) {
        self.seq += 1;
        out.seq = self.seq;
        // Expired chains go once a second, however busy the input (the tick below may not get
        // a turn then).
        if self.expired.elapsed() >= Duration::from_secs(1) {
            if let Some(engine) = &mut self.engine {
                engine.expire(self.newest_ns);
                self.counters
                    .rule_chains_evicted
                    .store(self.evicted_before + engine.evictions, Ordering::Relaxed);
            }
            self.expired = Instant::now();
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
            if signals.try_send((alert.rule.name.clone(), json)).is_err() {
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
