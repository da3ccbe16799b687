//! Benchmark (not a test): a loop of fork+exec of `/bin/true`, run without owod, with owod, and
//! without again, in one invocation. Prints execs/s for each, the ratio with/without, and how
//! many of the loop's execs owod recorded. Needs root (it starts owod).
//!
//! `exec-loop [--owod PATH] [--execs N] [--jobs J]`: J loops run at once (N execs in all), so
//! that with J at the number of cores owod competes with the workload for CPU.

use std::{process::Command, time::Instant};

use anyhow::{bail, Context, Result};
use owo_bench::{measure, ops_per_second, parse_args, print_count, print_field, require_root};

fn main() -> Result<()> {
    let mut execs = 5000usize;
    let mut jobs = 1usize;
    let owod = parse_args(
        "exec-loop [--owod PATH] [--execs N] [--jobs J]",
        &mut [("--execs", &mut execs), ("--jobs", &mut jobs)],
    )?;
    let jobs = jobs.max(1);
    require_root("exec-loop")?;
    // The marker in argv[1] tells this run's execs, and the phase, from everything else.
    let tag = format!("owo-bench-{}", std::process::id());

    // Hashing on (the default; /bin/true is hashed once, then every exec is a cache hit) and off.
    for (label, extra) in [
        ("sha256 on, cache warm", ""),
        ("sha256 off", "enrich:\n  sha256: false\n"),
    ] {
        let m = measure(&owod, extra, |phase| {
            exec_loops(execs, jobs, &format!("{tag}-{}", phase.name()))
        })?;
        let marker = format!("{tag}-with");
        let seen = m
            .records
            .count(|e| e["event_type"] == "execve" && e["args"][1] == marker.as_str());
        let hashed = m.records.count(|e| {
            e["event_type"] == "execve"
                && e["args"][1] == marker.as_str()
                && e["sha256"].is_string()
        });
        let exits = m
            .records
            .count(|e| e["event_type"] == "exit" && e["comm"] == "true");

        println!("exec-loop ({label}): {execs} fork+exec of /bin/true per phase, {jobs} at a time");
        m.print_rates("execs/s");
        print_count("execve records:", seen, execs);
        print_field("  with a sha256:", hashed);
        print_field("exit records (true):", exits);
        m.print_losses(None);
        m.print_cpu(execs, "exec");
    }
    Ok(())
}

/// `n` execs split over `jobs` threads; execs per second over the whole.
fn exec_loops(n: usize, jobs: usize, marker: &str) -> Result<f64> {
    let start = Instant::now();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs)
            .map(|j| scope.spawn(move || exec_loop(n / jobs + usize::from(j < n % jobs), marker)))
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().expect("an exec loop panicked").map(drop))
    })?;
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// fork+exec `/bin/true MARKER` `n` times, one after the other; execs per second.
fn exec_loop(n: usize, marker: &str) -> Result<f64> {
    ops_per_second(n, || {
        let status = Command::new("/bin/true")
            .arg(marker)
            .status()
            .context("spawn /bin/true")?;
        if !status.success() {
            bail!("/bin/true failed: {status}");
        }
        Ok(())
    })
}
