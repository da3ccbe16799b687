//! The behavior stage, between the process stage and the exporter hub: it numbers every record
//! (`seq`, from 1, no gaps, so an alert can name the records that made it), looks at each with
//! the [`engine`], and after the record that completes a chain it sends a `behavior` record, a
//! `[BEHAVIOR]` log line and, through the daemon, the D-Bus `Alert` signal.
//!
//! Records come in the order the kernel saw them (the collector merges the two lanes), so a
//! sequence rule sees "exec, then connect" as it happened.

pub mod engine;
pub mod rules;

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::{
    config::{BehaviorConfig, Config},
    pipeline::{
        record::{BehaviorRecord, Record},
        Batch, Outgoing,
    },
};
use engine::{Alert, Engine, Seen};
use rules::{Rule, RuleError};

/// The rules a config asks for (`None` when the engine is off), loaded and checked even then;
/// a problem comes with the config key it is about.
pub fn rules_for(config: &Config) -> Result<Option<Vec<Rule>>, Vec<(String, String)>> {
    let rules = load_rules(&config.behavior).map_err(|(file, err)| {
        let key = file.map_or("behavior".to_owned(), |i| {
            format!("behavior.rules_files.{i}")
        });
        vec![(key, err.to_string())]
    })?;
    Ok(config.behavior.enabled.then_some(rules))
}

/// The built-in rules, then those of `behavior.rules_files`; the first problem refuses them all.
fn load_rules(config: &BehaviorConfig) -> Result<Vec<Rule>, (Option<usize>, RuleError)> {
    let window = Duration::from_secs(config.window_seconds);
    let mut all = rules::parse(rules::BUILTIN, window).map_err(|e| (None, e))?;
    for (i, path) in config.rules_files.iter().enumerate() {
        let text = std::fs::read_to_string(path).map_err(|e| {
            (
                Some(i),
                RuleError::Syntax(format!("cannot read `{path}`: {e}")),
            )
        })?;
        let rules = rules::parse(&text, window).map_err(|e| (Some(i), e))?;
        for rule in rules {
            if all.iter().any(|r| r.name == rule.name) {
                return Err((
                    Some(i),
                    RuleError::Rule {
                        rule: rule.name,
                        reason: "a rule of that name is already loaded".into(),
                    },
                ));
            }
            all.push(rule);
        }
    }
    Ok(all)
}

/// Requests to the stage.
pub enum BehaviorCommand {
    /// New rules (already checked), from a reload; `None` switches the engine off.
    Rules {
        rules: Option<Vec<Rule>>,
        reply: oneshot::Sender<()>,
    },
}

/// A fired rule, for the D-Bus `Alert` signal: its name and the alert record as JSON.
pub type AlertSignal = (String, String);

pub struct BehaviorStage {
    engine: Option<Engine>,
    seq: u64,
    newest_ns: u64,
    signals_dropped: u64,
    expired: Instant,
}

impl BehaviorStage {
    pub fn new(rules: Option<Vec<Rule>>) -> BehaviorStage {
        BehaviorStage {
            engine: rules.map(Engine::new),
            seq: 0,
            newest_ns: 0,
            signals_dropped: 0,
            expired: Instant::now(),
        }
    }

    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<Batch>,
        tx: mpsc::Sender<Batch>,
        mut commands: mpsc::Receiver<BehaviorCommand>,
        signals: mpsc::Sender<AlertSignal>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                biased;
                Some(command) = commands.recv() => match command {
                    BehaviorCommand::Rules { rules, reply } => {
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
                alert.detail
            );
            let json = record.to_json();
            if signals.try_send((alert.rule.name.clone(), json)).is_err() {
                self.signals_dropped += 1;
                if self.signals_dropped == 1 {
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
