//! The pipeline: the record types ([`record`]), the lane merge, which puts the two ring buffers'
//! events back in kernel-time order before anything looks at them, the [`sequencer`], which
//! numbers them and asks the rule engine about each (run by the exporter hub), what one stage
//! hands the next, and the wiring of the stages ([`stages`]).

pub mod merge;
pub mod record;
pub mod sequencer;
pub mod stages;

use std::{
    future::Future,
    sync::atomic::{AtomicU64, Ordering},
};

use record::Record;
use tokio::task::JoinHandle;

/// Run a stage on a thread of its own (from the runtime's blocking pool), woken there by the
/// runtime's I/O and timer drivers like any task: for a stage that blocks on a disk (a remote's
/// spool, written and fsync'd per batch), which then stalls only itself, never the two async
/// worker threads that serve D-Bus, signals and the other stages. Each batch handed to such a
/// stage wakes its thread: the busy stages stay tasks.
pub fn on_own_thread<F>(stage: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || runtime.block_on(stage))
}

/// Run `work`, which may block (an NSS lookup, a walk of `/sys`), where it holds up no other
/// task: on a multi-thread runtime the worker hands its other tasks on first. For rare work
/// only: each call costs a thread hand-off.
pub fn blocking<T>(work: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// A record on its way out, and the kernel time it happened (boot clock), or `None` for the
/// agent's own records (stamped with the time they are written).
#[derive(Debug)]
pub struct Outgoing {
    pub ktime_ns: Option<u64>,
    pub record: Record,
    /// Given by the hub's sequencer (0 until then).
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

/// What the bounds inside the stages cost, counted where it happens, and what the stages hold
/// now (gauges, set every second by the process stage), read by `GetStatus`.
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
    /// Executables hashed, and hashes taken from the cache instead.
    pub hashed: AtomicU64,
    pub hash_cache_hits: AtomicU64,
    pub process_table_entries: AtomicU64,
    /// Batches from the collector waiting for the process stage, and records in that stage.
    pub process_queue_batches: AtomicU64,
    pub process_queue_records: AtomicU64,
}

impl Counters {
    pub fn snapshot(&self) -> std::collections::BTreeMap<&'static str, u64> {
        [
            ("alert_signals_dropped", &self.alert_signals_dropped),
            ("write_path_resets", &self.write_path_resets),
            ("process_table_evictions", &self.process_table_evictions),
            ("rule_chains_evicted", &self.rule_chains_evicted),
            ("hashed", &self.hashed),
            ("hash_cache_hits", &self.hash_cache_hits),
            ("process_table_entries", &self.process_table_entries),
            ("process_queue_batches", &self.process_queue_batches),
            ("process_queue_records", &self.process_queue_records),
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
