//! The pipeline: the record types ([`record`]), the lane merge, which puts the two ring buffers'
//! events back in kernel-time order before anything looks at them, the [`sequencer`], which
//! numbers them and asks the rule engine about each, what one stage hands the next, and the
//! wiring of the stages ([`stages`]).

pub mod merge;
pub mod record;
pub mod sequencer;
pub mod stages;

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
