//! Benchmark (not a test): event-to-line latency, from the moment a file is created under a
//! watched path to the moment its record is in owod's output file, idle and while other opens
//! flood the activity lane at a set rate. Prints p50, p99 and the maximum of each. Needs root.
//!
//! `latency [--owod PATH] [--samples N] [--rate OPENS_PER_S]`

use std::{
    fs::{self, File},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::Result;
use owo_bench::{
    flood_opens, latency_samples, parse_args, print_field, quantile_ms, require_root, save, Owod,
};

/// Every monitor on (writes too), hashing on: the cost of a real deployment.
const CONFIG: &str = "monitor:\n  write_events: true\n";

fn main() -> Result<()> {
    let mut samples = 200usize;
    let mut rate = 50_000usize;
    let owod = parse_args(
        "latency [--owod PATH] [--samples N] [--rate OPENS_PER_S]",
        &mut [("--samples", &mut samples), ("--rate", &mut rate)],
    )?;
    require_root("latency")?;
    let dir = tempfile::Builder::new()
        .prefix("owo-bench-latency-")
        .tempdir_in("/tmp")?;
    let dir = fs::canonicalize(dir.path())?;
    let daemon = Owod::start(&owod, CONFIG)?;
    println!("latency: file create to its line in owod's output, {samples} samples each");

    let idle = latency_samples(&daemon, &dir, samples)?;
    report("idle", &idle);

    let stop = Arc::new(AtomicBool::new(false));
    let flood = {
        let (stop, target) = (stop.clone(), dir.join("flood"));
        File::create(&target)?;
        std::thread::spawn(move || flood_opens(&target, rate, &stop))
    };
    let busy = latency_samples(&daemon, &dir, samples);
    stop.store(true, Ordering::Relaxed);
    let opened = flood.join().expect("the flood thread")?;
    let busy = busy?;
    report(&format!("{rate} opens/s"), &busy);
    print_field("flood opens done:", opened);

    let records = daemon.stop()?;
    print_field("records lost:", records.losses(None));
    let ms = |samples: &[Duration]| -> Vec<f64> {
        samples.iter().map(|d| d.as_secs_f64() * 1e3).collect()
    };
    save(
        "latency",
        &serde_json::json!({
            "what": "file create to its line in owod's output, ms",
            "series": [
                {"label": "idle", "ms": ms(&idle)},
                {"label": format!("{rate} opens/s"), "ms": ms(&busy)},
            ],
        }),
    )
}

fn report(label: &str, latencies: &[Duration]) {
    println!(
        "  {label:<16} p50 {:>7.2} ms   p99 {:>7.2} ms   max {:>7.2} ms",
        quantile_ms(latencies, 0.5),
        quantile_ms(latencies, 0.99),
        quantile_ms(latencies, 1.0)
    );
}
