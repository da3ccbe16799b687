//! Real eBPF: a flood of file events does not cost one exec or exit record, because process
//! events travel in their own ring buffer. A test binary of its own, so the flood does not
//! disturb the daemons of other tests.

mod harness;

use std::{
    process::Command,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
};

use harness::{bpf_available, event, marker, wait_until, Daemon};

#[test]
fn a_flood_of_file_events_costs_no_exec_or_exit_record() {
    if !bpf_available("a_flood_of_file_events_costs_no_exec_or_exit_record") {
        return;
    }
    let mut daemon = Daemon::start("");
    let dir = tempfile::Builder::new()
        .prefix("owo-flood-")
        .tempdir_in("/tmp")
        .unwrap();
    let target = dir.path().join("flooded");
    std::fs::write(&target, b"x").unwrap();
    let tag = marker("flood");
    let execs = 200;
    let stop = AtomicBool::new(false);
    let opens = AtomicU64::new(0);
    let mut pids = Vec::new();
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    drop(std::fs::File::open(&target).unwrap());
                    opens.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        // Let the flood build up before the first exec.
        wait_until("100000 opens before the first exec", || {
            opens.load(Ordering::Relaxed) >= 100_000
        });
        for _ in 0..execs {
            let child = Command::new("true").arg(&tag).spawn().unwrap();
            pids.push(child.id());
            let mut child = child;
            assert!(child.wait().unwrap().success());
        }
        stop.store(true, Ordering::Relaxed);
    });
    let opened = opens.load(Ordering::Relaxed);

    let seen = daemon.wait_for_n("every marked exec", execs, |r| {
        event(r)["event_type"] == "execve" && event(r)["args"][1] == tag.as_str()
    });
    assert_eq!(seen.len(), execs);
    let exits = daemon.wait_for_n("every marked exit", execs, |r| {
        event(r)["event_type"] == "exit" && pids.iter().any(|&p| event(r)["pid"] == p)
    });
    assert_eq!(exits.len(), execs);
    let records = daemon.records();
    let file_records = records
        .iter()
        .filter(|r| event(r)["path"] == target.to_str().unwrap())
        .count();
    let lost = |monitor: &str| -> u64 {
        records
            .iter()
            .filter(|r| event(r)["type"] == "loss" && event(r)["monitor"] == monitor)
            .map(|r| event(r)["count"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(
        (lost("execve"), lost("exit")),
        (0, 0),
        "the process lane lost records"
    );
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!(
            "flood: {opened} opens, {file_records} file records, {} counted lost\n",
            lost("file")
        )
        .as_bytes(),
    );
}
