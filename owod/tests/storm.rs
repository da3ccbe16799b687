//! Real eBPF: a storm of processes with long argv does not grow owod without bound. A test
//! binary of its own, so the storm does not disturb the daemons of other tests.

mod harness;

use std::{
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, Instant},
};

use harness::{bpf_available, event, python, Daemon};

/// owod's anonymous memory, in KiB.
fn anon_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn ten_thousand_processes_with_16_kib_of_argv_stay_under_64_mib_and_it_goes_back() {
    if !bpf_available(
        "ten_thousand_processes_with_16_kib_of_argv_stay_under_64_mib_and_it_goes_back",
    ) {
        return;
    }
    let mut daemon = Daemon::start("");
    let pid = daemon.child.id();
    // Idle: started, and a record through every stage.
    daemon.barrier();
    let idle = anon_kib(pid);
    let peak = AtomicU64::new(idle);
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(anon_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        // Each a 16 KiB argv of empty arguments: 16,384 separate strings to the kernel.
        python(
            "import os\n\
             argv = ['/bin/true'] + [''] * 16383\n\
             pids = []\n\
             for i in range(10000):\n\
             \x20   pids.append(os.posix_spawn('/bin/true', argv, {}))\n\
             \x20   if len(pids) >= 200:\n\
             \x20       [os.waitpid(p, 0) for p in pids]\n\
             \x20       pids = []\n\
             [os.waitpid(p, 0) for p in pids]\n",
        );
        // Every exec is written before the storm counts as over.
        daemon.barrier();
        done.store(true, Ordering::Relaxed);
    });
    let peak = peak.into_inner();
    assert!(
        peak < 64 << 10,
        "owod's anonymous memory peaked at {peak} KiB (idle {idle} KiB)"
    );
    // The exited processes leave the table after 10 s; the memory goes back to the system.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut now = anon_kib(pid);
    while now > idle + (8 << 10) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        now = anon_kib(pid);
    }
    assert!(daemon.stop().success());
    let records = daemon.records();
    let stop = records
        .iter()
        .find(|r| event(r)["type"] == "stop")
        .expect("the stop record");
    assert!(
        now <= idle + (8 << 10),
        "30 s after the storm owod still has {now} KiB (idle {idle} KiB, peak {peak} KiB); {stop}"
    );
    // Whether the table's bound dropped any depends on how fast the storm ran (exited entries
    // linger 10 s): that what it drops is counted is the enrich tests' and the table's.
    assert!(event(stop)["process_table_evictions"].is_u64(), "{stop}");
}
