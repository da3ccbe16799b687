//! The wiring of the stages: collector → process stage → exporter hub (which runs the
//! sequencer and the rule engine on each record before it writes it), each a task, with bounded queues of batches between them and a command channel into each. The
//! daemon holds the [`Handles`] to ask them things, and the [`Stages`] to stop them.

use std::{sync::Arc, time::Instant};

use anyhow::Context as _;
use tokio::{
    sync::{mpsc, oneshot, watch},
    task::{JoinError, JoinHandle},
};

use super::{
    record::AgentRecord,
    sequencer::{AlertSignal, Sequencer},
    Batch, Counters, Identity, Outgoing,
};
use crate::{
    behavior::rules::Rule,
    collector::{Collector, CollectorCommand, CollectorError},
    config::Config,
    export::{Hub, HubCommand, HubStats, Sink},
    process::{Guard, ProcessStage, ProcessTable, StageCommand, StageStats},
};

/// Bounded queues between stages, of batches: when full, the stage before waits, and the kernel
/// ring buffer takes the burst (its overflow is counted). A batch is what one turn of the stage
/// before had ready: at most two ring reads from the collector, at most the process stage's
/// queue after it.
const BATCHES: usize = 8;

/// What the daemon asks the stages through.
pub struct Handles {
    pub collector: mpsc::Sender<CollectorCommand>,
    pub process: mpsc::Sender<StageCommand>,
    pub hub: mpsc::Sender<HubCommand>,
    /// Into the hub, whose sequencer numbers every record: the agent's own (reload, losses).
    pub records: mpsc::Sender<Batch>,
    pub hub_stats: watch::Receiver<HubStats>,
    pub counters: Arc<Counters>,
}

/// What the stages start from.
pub struct Start {
    pub collector: Collector,
    pub table: ProcessTable,
    /// owod's own files and memory.
    pub guard: Guard,
    pub rules: Option<Vec<Rule>>,
    pub sinks: Vec<Box<dyn Sink>>,
    pub identity: Identity,
    /// The first record (seq 1).
    pub start: AgentRecord,
    /// The last record, given its seq and the process stage's counters.
    pub stop: Box<dyn FnOnce(u64, Option<StageStats>) -> AgentRecord + Send>,
}

/// The running stages.
pub struct Stages {
    stop: watch::Sender<bool>,
    collector: JoinHandle<Result<(), CollectorError>>,
    process: JoinHandle<()>,
    hub: JoinHandle<()>,
    /// The collector already ended (by itself): its outcome.
    ended: Option<Result<Result<(), CollectorError>, JoinError>>,
}

impl Stages {
    /// Start every stage; also returns the fired rules, for the D-Bus `Alert` signal.
    pub async fn start(
        from: Start,
        config: &Config,
    ) -> anyhow::Result<(Stages, Handles, mpsc::Receiver<AlertSignal>)> {
        let (hub_tx, hub_rx) = mpsc::channel(BATCHES);
        let (proc_tx, proc_rx) = mpsc::channel(BATCHES);
        let (stop_tx, stop_rx) = watch::channel(false);
        let (hub_cmd_tx, hub_cmd_rx) = mpsc::channel(16);
        let (stage_cmd_tx, stage_cmd_rx) = mpsc::channel(16);
        let (collector_cmd_tx, collector_cmd_rx) = mpsc::channel(16);
        let (alert_tx, alert_rx) = mpsc::channel::<AlertSignal>(256);
        let (hub_stats_tx, hub_stats_rx) = watch::channel(HubStats::default());
        let (stats_tx, mut stats_rx) = oneshot::channel::<StageStats>();
        // Seq 1: every record, the agent's own included, is numbered by the hub's sequencer.
        hub_tx
            .send(vec![Outgoing::agent(from.start)])
            .await
            .context("the pipeline is gone")?;
        let stop = from.stop;
        let counters = Arc::new(Counters::default());
        let sequencer = Sequencer::new(from.rules, counters.clone(), alert_tx);
        let hub = tokio::spawn(Hub::new(from.identity, from.sinks, sequencer).run(
            hub_rx,
            hub_cmd_rx,
            hub_stats_tx,
            move |seq| stop(seq, stats_rx.try_recv().ok()),
        ));
        let process = tokio::spawn(
            ProcessStage::new(
                from.table,
                &config.enrich,
                &config.monitor,
                from.guard,
                counters.clone(),
            )
            .run(proc_rx, hub_tx.clone(), stage_cmd_rx, stats_tx),
        );
        let collector = tokio::spawn(from.collector.run(proc_tx, collector_cmd_rx, stop_rx));
        let stages = Stages {
            stop: stop_tx,
            collector,
            process,
            hub,
            ended: None,
        };
        let handles = Handles {
            collector: collector_cmd_tx,
            process: stage_cmd_tx,
            hub: hub_cmd_tx,
            records: hub_tx,
            hub_stats: hub_stats_rx,
            counters,
        };
        Ok((stages, handles, alert_rx))
    }

    /// Resolves when the collector, the head, ends without being asked to: if any later stage
    /// dies, the collector's sends fail and it ends too, so this catches a pipeline that stopped
    /// by itself. Cancel-safe.
    pub async fn ended_by_itself(&mut self) {
        if self.ended.is_none() {
            self.ended = Some((&mut self.collector).await);
        }
    }

    /// Stop: the collector detaches the programs and drains the rings, and each stage ends when
    /// the one before it has (the hub once every sender of records, the daemon's [`Handles`]
    /// included, is gone), writing the `stop` record last.
    pub async fn finish(self) -> anyhow::Result<()> {
        let stopped_by_itself = self.ended.is_some();
        let _ = self.stop.send(true);
        let collected = match self.ended {
            Some(result) => result,
            None => self.collector.await,
        };
        let processed = self.process.await;
        let exported = self.hub.await;
        collected.context("the collector panicked")??;
        processed.context("the process stage panicked")?;
        exported.context("the exporter panicked")?;
        anyhow::ensure!(
            !stopped_by_itself,
            "the event pipeline stopped without being asked to"
        );
        Ok(())
    }
}

/// The `stop` record's counters, from the process stage.
pub fn stop_record(records: u64, started: Instant, stats: Option<StageStats>) -> AgentRecord {
    let mut record = AgentRecord::new("stop");
    record
        .set("records", records)
        .set("uptime_seconds", started.elapsed().as_secs())
        .set("heap_allocations", crate::allocations::count());
    if let Some(stats) = stats {
        record
            .set("process_table_entries", stats.table_entries)
            .set("process_table_bytes", stats.table_bytes)
            .set("process_table_evictions", stats.table_evictions)
            .set("executables_hashed", stats.hashed)
            .set("hash_cache_hits", stats.hash_cache_hits);
    }
    record
}
