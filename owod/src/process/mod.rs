//! The process stage: keeps the [`ProcessTable`] from fork/exec/exit events, enriches exec
//! records (hash, user, terminal, cgroup, ancestry) and turns each event into the fields of a
//! record (see [`records`]). Fork events only feed the table. Losses pass through as
//! `agent` records. It also answers [`StageCommand`]s (the process tree).
//!
//! Records leave in the order their events came. An exec whose binary is not in the hash cache
//! waits at the head of a bounded queue for its hash while later events keep coming in behind
//! it; an exec of a cached binary reads no file.

pub mod context;
pub mod guard;
pub mod hash;
pub mod records;
pub mod table;
pub mod tree;
mod write_paths;

use std::{
    collections::VecDeque,
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use owo_common::{event::FileId, Event};
use tokio::sync::{mpsc, oneshot};

use crate::{
    collector::Collected,
    config::{EnrichConfig, MonitorConfig},
    pipeline::{record::Record, Batch, Counters, Outgoing},
};
use context::{CgroupPaths, UserNames};
pub use guard::Guard;
use hash::{HashOutcome, Hasher, Lookup, PendingHash};
use records::{ExecContext, Lookups};
pub use table::ProcessTable;
use table::{ns_to_ticks, Exited, ProcessInfo};
use tree::{TreeError, TreeFormat};
use write_paths::WritePaths;

/// Records waiting to leave, at most this many, and this many bytes of the kernel's records they
/// came from (execs with long argv), and a batch: then the stage stops taking events, and the
/// kernel's ring buffer holds the burst.
const QUEUE_MAX: usize = 4096;
const QUEUE_BYTES: usize = 8 << 20;

/// Requests to the stage from the rest of the daemon.
pub enum StageCommand {
    DumpTree {
        pid: u32,
        format: TreeFormat,
        reply: oneshot::Sender<Result<String, TreeError>>,
    },
    /// A reloaded config's watched paths, for the names the kernel leaves to the stage.
    Watch {
        monitor: MonitorConfig,
        reply: oneshot::Sender<()>,
    },
}

/// Counters the stage keeps, for the `stop` record.
#[derive(Debug, Default, Clone)]
pub struct StageStats {
    pub table_entries: usize,
    pub table_evictions: u64,
    /// What the table's entries cost (see `enrich.process_table_max_mb`).
    pub table_bytes: usize,
    pub hashed: u64,
    pub hash_cache_hits: u64,
}

enum Queued {
    Ready(Outgoing),
    Hashing(Outgoing, FileId, PendingHash),
}

pub struct ProcessStage {
    table: ProcessTable,
    write_paths: WritePaths,
    users: UserNames,
    cgroups: CgroupPaths,
    hasher: Option<Hasher>,
    watch: WatchPaths,
    /// owod's own files and memory.
    guard: Guard,
    counters: Arc<Counters>,
    /// With the size of each record's kernel record.
    queue: VecDeque<(Queued, usize)>,
    queued_bytes: usize,
}

/// `monitor.file_watch_paths` as the kernel applies it, for the names it leaves to us.
struct WatchPaths {
    all: bool,
    prefixes: Vec<Vec<u8>>,
}

impl WatchPaths {
    fn new(monitor: &MonitorConfig) -> WatchPaths {
        WatchPaths {
            all: monitor.file_watch_all_paths,
            prefixes: monitor
                .file_watch_paths
                .iter()
                .map(|p| p.as_bytes().to_vec())
                .collect(),
        }
    }

    fn watched(&self, path: &[u8]) -> bool {
        self.all
            || self
                .prefixes
                .iter()
                .any(|p| guard::under(path, p.strip_suffix(b"/").unwrap_or(p)))
    }
}

impl ProcessStage {
    pub fn new(
        table: ProcessTable,
        enrich: &EnrichConfig,
        monitor: &MonitorConfig,
        guard: Guard,
        counters: Arc<Counters>,
    ) -> ProcessStage {
        ProcessStage {
            counters,
            guard,
            table,
            write_paths: WritePaths::default(),
            users: UserNames::default(),
            cgroups: CgroupPaths::new(),
            hasher: enrich
                .sha256
                .then(|| Hasher::new(enrich.sha256_max_file_mb)),
            watch: WatchPaths::new(monitor),
            queue: VecDeque::new(),
            queued_bytes: 0,
        }
    }

    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<Vec<Collected>>,
        tx: mpsc::Sender<Batch>,
        mut commands: mpsc::Receiver<StageCommand>,
        stats: oneshot::Sender<StageStats>,
    ) {
        self.serve(&mut rx, &tx, &mut commands).await;
        // Sent before `tx` drops, so the exporter has it when it writes the `stop` record.
        let _ = stats.send(self.stats());
    }

    async fn serve(
        &mut self,
        rx: &mut mpsc::Receiver<Vec<Collected>>,
        tx: &mpsc::Sender<Batch>,
        commands: &mut mpsc::Receiver<StageCommand>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut evictions_reported = 0;
        let mut heap_peak = 0;
        let mut input_open = true;
        loop {
            // Send what is ready at the head, together; stop at a record still hashing.
            let mut ready = Vec::with_capacity(self.queue.len());
            while let Some((Queued::Ready(_), _)) = self.queue.front() {
                let Some((Queued::Ready(out), size)) = self.queue.pop_front() else {
                    unreachable!()
                };
                self.queued_bytes -= size;
                ready.push(out);
            }
            if !ready.is_empty() && tx.send(ready).await.is_err() {
                return;
            }
            if !input_open && self.queue.is_empty() {
                return;
            }
            let head = match self.queue.front() {
                Some((Queued::Hashing(_, _, pending), _)) => Some(pending.clone()),
                _ => None,
            };
            tokio::select! {
                batch = rx.recv(), if input_open && self.queue.len() < QUEUE_MAX && self.queued_bytes < QUEUE_BYTES => match batch {
                    Some(batch) => {
                        for collected in batch {
                            match collected {
                                Collected::Event(event) => self.handle(event),
                                Collected::Loss(loss) => self.queue.push_back((Queued::Ready(Outgoing::agent(records::loss(&loss))), 0)),
                            }
                        }
                    }
                    None => input_open = false,
                },
                outcome = wait(head), if self.queue.front().is_some_and(|(q, _)| matches!(q, Queued::Hashing(..))) => {
                    self.hashed(outcome);
                }
                Some(command) = commands.recv() => self.command(command),
                _ = tick.tick() => {
                    for pid in self.table.expire(Instant::now()) {
                        self.write_paths.forget_process(pid);
                    }
                    // Exited processes just left the table: a storm's memory goes back.
                    crate::allocations::trim(&mut heap_peak);
                    if self.table.evictions > evictions_reported {
                        tracing::warn!("process table full: evicted {} entries so far", self.table.evictions);
                        evictions_reported = self.table.evictions;
                    }
                    self.publish(rx.len());
                }
            }
        }
    }

    /// Counters and gauges, for status.
    fn publish(&self, input_batches: usize) {
        let stats = self.stats();
        let c = &self.counters;
        for (counter, value) in [
            (&c.process_table_evictions, stats.table_evictions),
            (&c.write_path_resets, self.write_paths.resets),
            (&c.hashed, stats.hashed),
            (&c.hash_cache_hits, stats.hash_cache_hits),
            (&c.process_table_entries, stats.table_entries as u64),
            (&c.process_queue_batches, input_batches as u64),
            (&c.process_queue_records, self.queue.len() as u64),
        ] {
            counter.store(value, Ordering::Relaxed);
        }
    }

    fn stats(&self) -> StageStats {
        StageStats {
            table_entries: self.table.len(),
            table_evictions: self.table.evictions,
            table_bytes: self.table.bytes(),
            hashed: self.hasher.as_ref().map_or(0, |h| h.hashed),
            hash_cache_hits: self.hasher.as_ref().map_or(0, |h| h.cache_hits),
        }
    }

    fn command(&mut self, command: StageCommand) {
        match command {
            StageCommand::DumpTree { pid, format, reply } => {
                let _ = reply.send(tree::render(&self.table, pid, format));
            }
            StageCommand::Watch { monitor, reply } => {
                self.watch = WatchPaths::new(&monitor);
                let _ = reply.send(());
            }
        }
    }

    /// The head's hash is in: fill it in and let the record go.
    fn hashed(&mut self, outcome: HashOutcome) {
        if let Some((Queued::Hashing(mut out, id, _), size)) = self.queue.pop_front() {
            if let Some(hasher) = &mut self.hasher {
                hasher.finished(id, &outcome);
            }
            if let Record::Exec(exec) = &mut out.record {
                records::put_hash(exec, &outcome);
            }
            self.queue.push_front((Queued::Ready(out), size));
        }
    }

    /// Keep the table, and queue a record when the event's monitor was on (the kernel says so).
    fn handle(&mut self, event: Event) {
        let size = event.task().size as usize;
        let mut lk = Lookups {
            table: &self.table,
            users: &mut self.users,
        };
        let queued = match event {
            Event::Fork(f) => {
                self.table.fork(
                    f.parent.pid,
                    f.child_pid,
                    ns_to_ticks(f.child_start_boottime_ns),
                );
                None
            }
            Event::Exec(e) => {
                // The table shares the image path and argv with the record.
                let pid = e.task.pid;
                let info = ProcessInfo {
                    ppid: e.task.ppid,
                    uid: e.task.uid,
                    comm: e.task.comm,
                    start_ticks: ns_to_ticks(e.start_boottime_ns),
                    exe: e.exe.clone(),
                    args: e.args.clone(),
                    exited_at: None,
                };
                let queued = e.task.report.then(|| {
                    let hashed = match (&mut self.hasher, e.exe_id, &e.exe) {
                        (Some(hasher), Some(id), Some(exe)) => {
                            match hasher.lookup(e.task.pid, exe, id) {
                                Lookup::Done(outcome) => Ok(Some(outcome)),
                                Lookup::Pending(pending) => Err((id, pending)),
                            }
                        }
                        (Some(_), _, _) => Ok(Some(HashOutcome::Gone)),
                        _ => Ok(None),
                    };
                    let cx = ExecContext {
                        cgroup: self.cgroups.path(e.task.cgroup_id).map(str::to_owned),
                        hashing: self.hasher.is_some(),
                    };
                    let ktime_ns = e.task.ktime_ns;
                    let mut record = records::exec(&mut lk, e, cx);
                    if let Ok(Some(outcome)) = &hashed {
                        records::put_hash(&mut record, outcome);
                    }
                    let out = Outgoing::event(ktime_ns, Record::Exec(Box::new(record)));
                    match hashed {
                        Ok(_) => Queued::Ready(out),
                        Err((id, pending)) => Queued::Hashing(out, id, pending),
                    }
                });
                self.table.exec(pid, info);
                queued
            }
            Event::Exit(e) => {
                let pid = e.task.pid;
                let start_ticks = ns_to_ticks(e.start_boottime_ns);
                let out = e.task.report.then(|| {
                    let ktime_ns = e.task.ktime_ns;
                    Outgoing::event(ktime_ns, Record::Exit(records::exit(&mut lk, e)))
                });
                // Two threads ending together can both look like the last one (kernels before 6.16).
                match self.table.exit(pid, start_ticks, Instant::now()) {
                    Exited::Again => None,
                    Exited::Now | Exited::Unknown => out.map(Queued::Ready),
                }
            }
            Event::File(e) => {
                let ktime_ns = e.task.ktime_ns;
                let unclean = e.unclean;
                let record = records::file(&mut lk, e);
                if let Some(operation) = self.guard.judge(&record) {
                    let tamper = Record::Tamper(records::file_tamper(&record, operation));
                    self.queued_bytes += size;
                    self.queue
                        .push_back((Queued::Ready(Outgoing::event(ktime_ns, tamper)), size));
                }
                // The kernel watches owod's own files too, and lets names with "." or ".."
                // through unfiltered: such a record is kept if a configured path covers it
                // (the kernel has judged the others).
                let watched = !(unclean || self.guard.covers(&record))
                    || self.watch.watched(&record.path)
                    || record
                        .path2
                        .as_deref()
                        .is_some_and(|p| self.watch.watched(p));
                watched.then(|| Queued::Ready(Outgoing::event(ktime_ns, Record::File(record))))
            }
            Event::Write(mut e) => {
                let ktime_ns = e.task.ktime_ns;
                let path =
                    self.write_paths
                        .resolve(e.task.pid, e.fd, e.path.take(), e.path_truncated);
                // The same for a write to one of owod's own files.
                let watched = path.as_ref().is_none_or(|(path, _)| {
                    !self.guard.covers_path(path) || self.watch.watched(path)
                });
                watched.then(|| {
                    let record = Record::Write(records::write(&mut lk, e, path));
                    Queued::Ready(Outgoing::event(ktime_ns, record))
                })
            }
            event => {
                let ktime_ns = event.task().ktime_ns;
                let record = match event {
                    Event::Net(e) => Record::Network(records::network(&mut lk, e)),
                    Event::Priv(e) => Record::Privilege(records::privilege(&mut lk, e)),
                    Event::Module(e) => Record::Module(records::module(&mut lk, e)),
                    Event::Tamper(e) => Record::Tamper(records::tamper(&mut lk, e)),
                    Event::Fork(_)
                    | Event::Exec(_)
                    | Event::Exit(_)
                    | Event::File(_)
                    | Event::Write(_) => {
                        unreachable!("handled above")
                    }
                };
                Some(Queued::Ready(Outgoing::event(ktime_ns, record)))
            }
        };
        if let Some(queued) = queued {
            self.queued_bytes += size;
            self.queue.push_back((queued, size));
        }
    }
}

/// The longest a record waits for its hash at the head of the queue: a job gives up a hung read
/// after `hash::READ_TIMEOUT`, so this is a safety net, kept well under systemd's watchdog.
const HASH_TIMEOUT: Duration = Duration::from_secs(15);

/// The outcome of the head's hash job.
async fn wait(pending: Option<PendingHash>) -> HashOutcome {
    let Some(mut pending) = pending else {
        return std::future::pending().await;
    };
    let outcome = tokio::time::timeout(HASH_TIMEOUT, pending.wait_for(Option::is_some))
        .await
        .map(|r| r.map(|o| o.clone()));
    match outcome {
        Ok(Ok(Some(outcome))) => outcome,
        Ok(_) => HashOutcome::Error("the hashing job ended without an outcome".into()),
        Err(_) => HashOutcome::Error(format!("no hash within {} s", HASH_TIMEOUT.as_secs())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_prefixes_match_whole_components() {
        let watch = WatchPaths {
            all: false,
            prefixes: vec![b"/etc".to_vec(), b"/tmp/".to_vec()],
        };
        for yes in [&b"/etc"[..], b"/etc/passwd", b"/tmp", b"/tmp/x/y"] {
            assert!(watch.watched(yes), "{}", String::from_utf8_lossy(yes));
        }
        for no in [&b"/etcetera"[..], b"/var/tmp", b"/", b"/tmpx"] {
            assert!(!watch.watched(no), "{}", String::from_utf8_lossy(no));
        }
        assert!(WatchPaths {
            all: true,
            prefixes: vec![]
        }
        .watched(b"/anything"));
    }
}
