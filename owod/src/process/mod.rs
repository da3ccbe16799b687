//! The process stage: keeps the [`ProcessTable`] from fork/exec/exit events and turns each
//! event into the fields of a record (DESIGN §3), naming the parent from the table. Fork
//! events only feed the table. Losses pass through as `agent` records.

pub mod table;

use std::time::{Duration, Instant};

use owo_common::{
    event::{ExecEvent, ExitEvent, Task},
    render::{self, put_args, put_bytes, CMDLINE_BUDGET, NAME_BUDGET, PATH_BUDGET},
    Event,
};
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use crate::{collector::Collected, export::Outgoing};
use table::ns_to_ticks;
use table::Exited;
pub use table::ProcessTable;

pub async fn run(
    mut table: ProcessTable,
    mut rx: mpsc::Receiver<Collected>,
    tx: mpsc::Sender<Outgoing>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut evictions_reported = 0;
    loop {
        let msg = tokio::select! {
            msg = rx.recv() => msg,
            _ = tick.tick() => {
                table.expire(Instant::now());
                if table.evictions > evictions_reported {
                    tracing::warn!("process table full: evicted {} entries so far", table.evictions);
                    evictions_reported = table.evictions;
                }
                continue;
            }
        };
        let Some(msg) = msg else { return };
        let out = match msg {
            Collected::Event(event) => handle(&mut table, event),
            Collected::Loss(loss) => Some(Outgoing::agent(loss_fields(&loss))),
        };
        if let Some(out) = out {
            if tx.send(out).await.is_err() {
                return;
            }
        }
    }
}

/// Keep the table, and make a record when the event's monitor was on (the kernel says so).
fn handle(table: &mut ProcessTable, event: Event) -> Option<Outgoing> {
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
                .then(|| Outgoing::event(e.task.ktime_ns, exec_fields(table, &e)));
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
                .then(|| Outgoing::event(e.task.ktime_ns, exit_fields(table, &e)));
            // Two threads ending together can both look like the last one (kernels before 6.16).
            match table.exit(e.task.pid, ns_to_ticks(e.start_boottime_ns), Instant::now()) {
                Exited::Again => None,
                Exited::Now | Exited::Unknown => out,
            }
        }
    }
}

/// The fields every process-attributed record starts with.
fn task_fields(event_type: &str, task: &Task, exe: Option<&[u8]>) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("event_type".into(), event_type.into());
    m.insert("pid".into(), task.pid.into());
    m.insert("tid".into(), task.tid.into());
    m.insert("ppid".into(), task.ppid.into());
    m.insert("uid".into(), task.uid.into());
    m.insert("gid".into(), task.gid.into());
    put_bytes(&mut m, "comm", &task.comm, NAME_BUDGET, false);
    if let Some(exe) = exe {
        put_bytes(&mut m, "exe", exe, PATH_BUDGET, false);
    }
    m.insert("cgroup_id".into(), task.cgroup_id.into());
    m
}

fn exec_fields(table: &ProcessTable, e: &ExecEvent) -> Map<String, Value> {
    let mut m = task_fields("execve", &e.task, e.exe.as_deref());
    if e.exe_truncated {
        m.insert("exe_truncated".into(), true.into());
    }
    put_bytes(
        &mut m,
        "path",
        &e.filename,
        PATH_BUDGET,
        e.filename_truncated,
    );
    put_bytes(
        &mut m,
        "cmdline",
        &render::join_cmdline(&e.args),
        CMDLINE_BUDGET,
        e.args_truncated,
    );
    put_args(&mut m, &e.args, e.args_truncated);
    if let Some(cwd) = &e.cwd {
        put_bytes(&mut m, "cwd", cwd, PATH_BUDGET, e.cwd_truncated);
    }
    if let Some(parent) = table.get(e.task.ppid) {
        if let Some(exe) = &parent.exe {
            put_bytes(&mut m, "parent_path", exe, PATH_BUDGET, false);
        }
        put_bytes(
            &mut m,
            "parent_cmdline",
            &render::join_cmdline(&parent.args),
            CMDLINE_BUDGET,
            false,
        );
    }
    m
}

fn exit_fields(table: &ProcessTable, e: &ExitEvent) -> Map<String, Value> {
    let known = table
        .get(e.task.pid)
        .filter(|p| p.start_ticks == ns_to_ticks(e.start_boottime_ns));
    let mut m = task_fields("exit", &e.task, known.and_then(|p| p.exe.as_deref()));
    m.insert("exit_code".into(), e.exit_code().into());
    if let Some(sig) = e.signal() {
        m.insert("signal".into(), sig.into());
    }
    if e.core_dumped() {
        m.insert("core_dumped".into(), true.into());
    }
    m
}

fn loss_fields(loss: &crate::collector::Loss) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("event_type".into(), "agent".into());
    m.insert("type".into(), "loss".into());
    m.insert("stage".into(), loss.stage.into());
    if let Some(monitor) = loss.monitor {
        m.insert("monitor".into(), monitor.name().into());
    }
    m.insert("count".into(), loss.count.into());
    m.insert("total".into(), loss.total.into());
    m
}
