//! The process stage: keeps the [`ProcessTable`] from fork/exec/exit events and turns each
//! event into the fields of a record (DESIGN §3; see [`records`]), naming the process's image
//! and its parent from the table. Fork events only feed the table. Losses pass through as
//! `agent` records.

pub mod records;
pub mod table;
mod write_paths;

use std::time::{Duration, Instant};

use owo_common::Event;
use tokio::sync::mpsc;

use crate::{collector::Collected, export::Outgoing};
pub use table::ProcessTable;
use table::{ns_to_ticks, Exited};
use write_paths::WritePaths;

/// What the stage owns.
pub struct ProcessStage {
    table: ProcessTable,
    write_paths: WritePaths,
}

impl ProcessStage {
    pub fn new(table: ProcessTable) -> ProcessStage {
        ProcessStage {
            table,
            write_paths: WritePaths::default(),
        }
    }

    pub async fn run(mut self, mut rx: mpsc::Receiver<Collected>, tx: mpsc::Sender<Outgoing>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut evictions_reported = 0;
        loop {
            let msg = tokio::select! {
                msg = rx.recv() => msg,
                _ = tick.tick() => {
                    self.table.expire(Instant::now());
                    if self.table.evictions > evictions_reported {
                        tracing::warn!("process table full: evicted {} entries so far", self.table.evictions);
                        evictions_reported = self.table.evictions;
                    }
                    continue;
                }
            };
            let Some(msg) = msg else { return };
            let out = match msg {
                Collected::Event(event) => self.handle(event),
                Collected::Loss(loss) => Some(Outgoing::agent(records::loss(&loss))),
            };
            if let Some(out) = out {
                if tx.send(out).await.is_err() {
                    return;
                }
            }
        }
    }

    /// Keep the table, and make a record when the event's monitor was on (the kernel says so).
    fn handle(&mut self, event: Event) -> Option<Outgoing> {
        let table = &mut self.table;
        match event {
            Event::Fork(f) => {
                table.fork(
                    f.parent.pid,
                    f.child_pid,
                    ns_to_ticks(f.child_start_boottime_ns),
                );
                None
            }
            Event::Exec(e) => {
                let out = e
                    .task
                    .report
                    .then(|| Outgoing::event(e.task.ktime_ns, records::exec(table, &e)));
                table.exec(
                    e.task.pid,
                    e.task.ppid,
                    ns_to_ticks(e.start_boottime_ns),
                    e.exe,
                    e.args,
                );
                out
            }
            Event::Exit(e) => {
                let out = e
                    .task
                    .report
                    .then(|| Outgoing::event(e.task.ktime_ns, records::exit(table, &e)));
                self.write_paths.forget_process(e.task.pid);
                // Two threads ending together can both look like the last one (kernels before 6.16).
                match table.exit(e.task.pid, ns_to_ticks(e.start_boottime_ns), Instant::now()) {
                    Exited::Again => None,
                    Exited::Now | Exited::Unknown => out,
                }
            }
            Event::File(e) => Some(Outgoing::event(e.task.ktime_ns, records::file(table, &e))),
            Event::Net(e) => Some(Outgoing::event(
                e.task.ktime_ns,
                records::network(table, &e),
            )),
            Event::Priv(e) => Some(Outgoing::event(
                e.task.ktime_ns,
                records::privilege(table, &e),
            )),
            Event::Module(e) => Some(Outgoing::event(e.task.ktime_ns, records::module(table, &e))),
            Event::Write(mut e) => {
                let known = self.write_paths.resolve(e.task.pid, e.fd, e.path.take());
                Some(Outgoing::event(
                    e.task.ktime_ns,
                    records::write(table, &e, known),
                ))
            }
        }
    }
}
