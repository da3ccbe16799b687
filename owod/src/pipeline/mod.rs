//! The pipeline: the record types ([`record`]), the lane merge, which puts the two ring buffers'
//! events back in kernel-time order before anything looks at them, the [`sequencer`], which
//! numbers them and asks the rule engine about each, what one stage hands the next, and the
//! wiring of the stages ([`stages`]).

pub mod merge;
pub mod record;
pub mod sequencer;
pub mod stages;

use std::sync::atomic::{AtomicU64, Ordering};

use record::Record;

/// A record on its way out, and the kernel time it happened (boot clock), or `None` for the
/// agent's own records (stamped with the time they are written).
#[derive(Debug)]
pub struct Outgoing {
    pub ktime_ns: Option<u64>,
    pub record: Record,
    /// Given by the sequencer (0 until then).
    pub seq: u64,
    /// New wrapper names, from this record on (a reload).
    pub identity: Option<Identity>,
}

impl Outgoing {
    pub fn event(ktime_ns: u64, record: Record) -> Outgoing {
        Outgoing {
            ktime_ns: Some(ktime_ns),
            record,
            seq: 0,
            identity: None,
        }
    }

    pub fn agent(record: record::AgentRecord) -> Outgoing {
        Outgoing {
            ktime_ns: None,
            record: Record::Agent(record),
            seq: 0,
            identity: None,
        }
    }
}

/// What the bounds inside the stages cost, counted where it happens and read by `GetStatus`
/// (before, only the log said so).
#[derive(Debug, Default)]
pub struct Counters {
    /// Fired rules the D-Bus `Alert` signal could not keep up with (the records are written).
    pub alert_signals_dropped: AtomicU64,
    /// Times the write monitor's path cache was full and started again.
    pub write_path_resets: AtomicU64,
    /// Entries the process table let go to stay within its bounds.
    pub process_table_evictions: AtomicU64,
    /// Rule chains let go to stay within the engine's bounds.
    pub rule_chains_evicted: AtomicU64,
}

impl Counters {
    pub fn snapshot(&self) -> std::collections::BTreeMap<&'static str, u64> {
        [
            ("alert_signals_dropped", &self.alert_signals_dropped),
            ("write_path_resets", &self.write_path_resets),
            ("process_table_evictions", &self.process_table_evictions),
            ("rule_chains_evicted", &self.rule_chains_evicted),
        ]
        .into_iter()
        .map(|(name, n)| (name, n.load(Ordering::Relaxed)))
        .collect()
    }
}

/// Records handed from one stage to the next together: one wake-up for all that was ready.
pub type Batch = Vec<Outgoing>;

/// The wrapper's fixed part: who wrote the records of this run.
#[derive(Clone, Debug)]
pub struct Identity {
    pub agent_name: String,
    pub agent_hostname: String,
    pub agent_group: String,
    pub run_id: String,
}
