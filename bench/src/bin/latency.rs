//! Benchmark (not a test): event-to-line latency, from the moment a file is created under a
//! watched path to the moment its record is in owod's output file, idle and while other opens
//! flood the activity lane at a set rate. Prints p50, p99 and the maximum of each. Needs root.
//!
//! `latency [--owod PATH] [--samples N] [--rate OPENS_PER_S]`

use std::{
    fs::{self, File},
    io::{Read, Seek, SeekFrom},
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use owo_bench::{parse_args, print_field, require_root, Owod};

/// Every monitor on (writes too), hashing on: the cost of a real deployment.
const CONFIG: &str = "monitor:\n  write_events: true\n";
/// How long one sample may take before the run gives up on it.
const SAMPLE_DEADLINE: Duration = Duration::from_secs(10);

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

    let idle = sample(&daemon, &dir, samples)?;
    report("idle", &idle);

    let stop = Arc::new(AtomicBool::new(false));
    let flood = {
        let (stop, target) = (stop.clone(), dir.join("flood"));
        File::create(&target)?;
        std::thread::spawn(move || flood_opens(&target, rate, &stop))
    };
    let busy = sample(&daemon, &dir, samples);
    stop.store(true, Ordering::Relaxed);
    let opened = flood.join().expect("the flood thread")?;
    let busy = busy?;
    report(&format!("{rate} opens/s"), &busy);
    print_field("flood opens done:", opened);

    let records = daemon.stop()?;
    print_field("records lost:", records.losses(None));
    Ok(())
}

/// Create a marker file every 5 ms and time each until its line is in the output.
fn sample(daemon: &Owod, dir: &Path, n: usize) -> Result<Vec<Duration>> {
    let mut output = File::open(daemon.output())?;
    output.seek(SeekFrom::End(0))?;
    let mut pending = String::new();
    let mut latencies = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("owo-latency-{}-{i}", std::process::id());
        let created = Instant::now();
        File::create(dir.join(&name))?;
        let needle = format!("{}\"", dir.join(&name).display());
        loop {
            let mut more = String::new();
            output.read_to_string(&mut more)?;
            pending.push_str(&more);
            if let Some(at) = pending.find(&needle) {
                latencies.push(created.elapsed());
                // Keep only what follows the line, so the search stays short.
                let end = pending[at..]
                    .find('\n')
                    .map_or(pending.len(), |e| at + e + 1);
                pending.drain(..end);
                break;
            }
            if let Some(cut) = pending.rfind('\n') {
                pending.drain(..=cut);
            }
            if created.elapsed() > SAMPLE_DEADLINE {
                bail!("no record of {name} within {SAMPLE_DEADLINE:?}");
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(latencies)
}

/// Open and close `target` at `rate` per second until `stop`; how many opens were made.
fn flood_opens(target: &Path, rate: usize, stop: &AtomicBool) -> Result<usize> {
    let start = Instant::now();
    let mut done = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let due = (start.elapsed().as_secs_f64() * rate as f64) as usize;
        while done < due {
            File::open(target).with_context(|| format!("open `{}`", target.display()))?;
            done += 1;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(done)
}

fn report(label: &str, latencies: &[Duration]) {
    let mut ms: Vec<f64> = latencies.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    println!(
        "  {label:<16} p50 {:>7.2} ms   p99 {:>7.2} ms   max {:>7.2} ms",
        at(0.5),
        at(0.99),
        ms[ms.len() - 1]
    );
}
