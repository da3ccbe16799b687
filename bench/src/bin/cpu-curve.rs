//! Benchmark (not a test): owod's CPU per record as the record rate grows. owod runs with every
//! monitor on; at each rate, two threads open and close a watched file for `--seconds` (default
//! 5), and the run reads owod's CPU time (all threads) and its records before and after. Rates
//! double from 1,000 opens/s until one is not reached or loses records. Saves
//! `cpu-per-record.json` for `bench/plot.py`. Needs root.
//!
//! `cpu-curve [--owod PATH] [--seconds S] [--max-rate N]`

use std::{fs, time::Instant};

use anyhow::Result;
use owo_bench::{flood_for, parse_args, require_root, save, tally, Owod};
use serde_json::json;

/// Every monitor on, writes included, as in `table`.
const CONFIG: &str = "monitor:\n  write_events: true\n";

fn main() -> Result<()> {
    let mut seconds = 5usize;
    let mut max_rate = 512_000usize;
    let owod = parse_args(
        "cpu-curve [--owod PATH] [--seconds S] [--max-rate N]",
        &mut [("--seconds", &mut seconds), ("--max-rate", &mut max_rate)],
    )?;
    require_root("cpu-curve")?;
    let dir = tempfile::Builder::new()
        .prefix("owo-bench-curve-")
        .tempdir_in("/tmp")?;
    let file = dir.path().join("opened");
    fs::File::create(&file)?;
    let daemon = Owod::start(&owod, CONFIG)?;
    println!("cpu-curve: owod's CPU per record, watched opens for {seconds} s at each rate");
    println!(
        "  {:>9} {:>9} {:>9} {:>10} {:>12} {:>6}",
        "asked/s", "reached/s", "records", "owod CPU", "CPU/record", "lost"
    );
    let mut points = Vec::new();
    let mut rate = 1_000usize;
    while rate <= max_rate {
        daemon.wait_until_quiet()?;
        let from = fs::metadata(daemon.output())?.len();
        let cpu_before = daemon.cpu_seconds()?;
        let start = Instant::now();
        let reached = flood_for(&file, rate, seconds)?;
        let elapsed = start.elapsed().as_secs_f64();
        daemon.wait_until_quiet()?;
        let cpu = daemon.cpu_seconds()? - cpu_before;
        let (records, lost) = tally(daemon.output(), from)?;
        let per_record_us = cpu / records.max(1) as f64 * 1e6;
        println!(
            "  {rate:>9} {reached:>9.0} {records:>9} {:>9.1}% {per_record_us:>9.2} µs {lost:>6}",
            100.0 * cpu / elapsed
        );
        points.push(json!({
            "rate_asked": rate,
            "rate_reached": reached,
            "seconds": elapsed,
            "records": records,
            "owod_cpu_seconds": cpu,
            "cpu_per_record_us": per_record_us,
            "lost": lost,
        }));
        if lost > 0 || reached < 0.9 * rate as f64 {
            break;
        }
        rate *= 2;
    }
    daemon.finish()?;
    save(
        "cpu-per-record",
        &json!({"workload": "watched opens, every monitor on", "points": points}),
    )
}
