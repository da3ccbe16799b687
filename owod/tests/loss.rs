//! Real eBPF: a ring buffer that overflows is counted and reported. In a test binary of its own
//! so that no other test's daemon or processes share the counts it checks.

mod harness;

use std::process::Command;

use harness::{bpf_available, event, marker, Daemon};
use serde_json::Value;

#[test]
fn a_full_ring_buffer_is_counted_and_reported_as_loss() {
    if !bpf_available("a_full_ring_buffer_is_counted_and_reported_as_loss") {
        return;
    }
    use nix::{sys::signal::Signal, unistd::Pid};
    let daemon = Daemon::start("");
    let owod = Pid::from_raw(daemon.child.id() as i32);
    let tag = marker("loss");
    // Each exec with 16 KiB of argv is a ~17 KiB record: 1500 of them overflow the 16 MiB
    // process ring while owod is stopped and cannot read.
    let filler = "x".repeat(16 * 1024);
    let n = 1500;
    nix::sys::signal::kill(owod, Signal::SIGSTOP).unwrap();
    for _ in 0..n {
        Command::new("true").args([&tag, &filler]).status().unwrap();
    }
    nix::sys::signal::kill(owod, Signal::SIGCONT).unwrap();
    // Records come in order, so once a later exec is written every marked one that survived is
    // too. While the ring is still full that exec is lost as well, so repeat it until one lands.
    // The counted losses follow within a second (they are read once a second).
    let done = marker("loss-done");
    let deadline = std::time::Instant::now() + harness::DEADLINE;
    'landed: loop {
        Command::new("true").arg(&done).status().unwrap();
        for _ in 0..10 {
            if daemon
                .records()
                .iter()
                .any(|r| event(r)["args"][1] == done.as_str())
            {
                break 'landed;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(
            std::time::Instant::now() < deadline,
            "owod never caught up after the burst; log:\n{}",
            daemon.log()
        );
    }
    loop {
        let records = daemon.records();
        let seen = records
            .iter()
            .filter(|r| event(r)["event_type"] == "execve" && event(r)["args"][1] == tag.as_str())
            .count();
        let losses: Vec<&Value> = records
            .iter()
            .filter(|r| event(r)["type"] == "loss" && event(r)["monitor"] == "execve")
            .collect();
        let lost: u64 = losses
            .iter()
            .map(|r| event(r)["count"].as_u64().unwrap())
            .sum();
        assert!(seen < n, "all {n} execs arrived: the ring did not overflow");
        if let Some(first) = losses.first() {
            assert_eq!(
                (
                    event(first)["event_type"].as_str(),
                    event(first)["stage"].as_str()
                ),
                (Some("agent"), Some("ringbuf"))
            );
        }
        if seen as u64 + lost >= n as u64 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{seen} seen + {lost} counted lost < {n}: some vanished silently"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_full_disk_under_the_output_file_loses_only_records_it_names() {
    if !bpf_available("a_full_disk_under_the_output_file_loses_only_records_it_names") {
        return;
    }
    let mut daemon = Daemon::start("");
    let out = daemon.output.parent().unwrap().to_owned();
    // A 256 KiB tmpfs over the file's directory: owod follows its file there within a second,
    // and a filler leaves the records little room.
    let _tmpfs = harness::Tmpfs::mount(&out, "256k");
    let filler = out.join("filler");
    std::fs::write(&filler, vec![0u8; 192 << 10]).unwrap();
    let follow = marker("follow");
    harness::wait_until("owod to write to the file on the tmpfs", || {
        Command::new("true").arg(&follow).status().unwrap();
        std::fs::metadata(&daemon.output).is_ok_and(|m| m.len() > 0)
    });
    let full = marker("disk-full");
    for _ in 0..300 {
        Command::new("true").arg(&full).status().unwrap();
    }
    daemon.wait_log("cannot write to");
    // Room again: what was lost is named in the file (each run in a loss record of its own,
    // which may take a few batches to come).
    std::fs::remove_file(&filler).unwrap();
    let again = marker("room-again");
    let unaccounted = |records: &[Value]| -> (Vec<u64>, usize) {
        let seqs: std::collections::HashSet<u64> =
            records.iter().filter_map(|r| r["seq"].as_u64()).collect();
        let named: Vec<(u64, u64)> = records
            .iter()
            .filter(|r| event(r)["type"] == "loss" && event(r)["stage"] == "file_write")
            .map(|r| {
                let e = event(r);
                let (a, b) = (
                    e["first_seq"].as_u64().unwrap(),
                    e["last_seq"].as_u64().unwrap(),
                );
                assert_eq!(e["count"].as_u64(), Some(b - a + 1));
                (a, b)
            })
            .collect();
        let first = *seqs.iter().min().unwrap();
        let last = *seqs.iter().max().unwrap();
        let missing = (first..=last)
            .filter(|s| !seqs.contains(s) && !named.iter().any(|(a, b)| (a..=b).contains(&s)))
            .collect();
        (missing, named.len())
    };
    // Every line is one whole record (records() checks that each line is JSON), and every seq
    // from the first in this file on comes to be in it or named by a loss record.
    harness::wait_until("every seq written or named", || {
        Command::new("true").arg(&again).status().unwrap();
        // Empty while the write that filled the disk is cut back and none works yet.
        let records = daemon.records();
        if records.is_empty() {
            return false;
        }
        let (missing, named) = unaccounted(&records);
        missing.is_empty() && named > 0
    });
    let loss = daemon
        .records()
        .into_iter()
        .find(|r| event(r)["stage"] == "file_write")
        .unwrap();
    assert_eq!(event(&loss)["file"], daemon.output.to_str().unwrap());
}
