//! What the benchmarks share: start owod on a temp config and wait for its start record, stop it
//! with SIGTERM and read every record it wrote, its CPU time, a timed loop, and the report lines.
//!
//! Each benchmark measures a workload without owod, with owod, and without again in one run
//! ([`measure`]), so the ratio compares against a baseline taken on the same machine and moment.
//! Benchmarks are not tests: nothing here asserts a speed.

use std::{
    fmt::Display,
    fs,
    io::{Read, Seek, SeekFrom},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tempfile::TempDir;

/// How long owod may take to write its start record (loading and attaching eBPF programs).
const START_DEADLINE: Duration = Duration::from_secs(30);

/// Parses `--owod PATH` (default `target/release/owod`) and the benchmark's own `--NAME N` flags,
/// each given with its default in place; returns the owod path.
pub fn parse_args(usage: &str, counts: &mut [(&str, &mut usize)]) -> Result<String> {
    let mut owod = "target/release/owod".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--owod" {
            owod = args.next().context("--owod needs a path")?;
        } else if let Some((flag, value)) = counts.iter_mut().find(|(flag, _)| *flag == arg) {
            **value = args
                .next()
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("{flag} needs a number"))?;
        } else {
            bail!("unknown argument `{arg}`; usage: {usage}");
        }
    }
    Ok(owod)
}

/// Fails unless we run as root: owod needs it to load its eBPF programs.
pub fn require_root(bench: &str) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("{bench} starts owod, which needs root");
    }
    Ok(())
}

/// Runs `op` `n` times, one after the other; operations per second.
pub fn ops_per_second(n: usize, mut op: impl FnMut() -> Result<()>) -> Result<f64> {
    let start = Instant::now();
    for _ in 0..n {
        op()?;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Which of the three runs of the workload is going on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Before,
    With,
    After,
}

impl Phase {
    /// A short name, for markers that tell the phases apart in the records.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Before => "before",
            Phase::With => "with",
            Phase::After => "after",
        }
    }
}

/// One workload measured without, with and without owod again.
pub struct Measurement {
    /// Operations per second in each phase.
    pub before: f64,
    pub with: f64,
    pub after: f64,
    /// owod's user + system CPU seconds during the phase with owod.
    pub owod_cpu: f64,
    /// Context switches of owod's threads during the phase with owod.
    pub owod_switches: u64,
    /// Everything owod wrote during its run.
    pub records: Records,
}

/// Runs `workload` (which returns operations per second) once per phase, owod running (with
/// `extra_config` appended to its config) only during [`Phase::With`].
pub fn measure(
    owod: &str,
    extra_config: &str,
    mut workload: impl FnMut(Phase) -> Result<f64>,
) -> Result<Measurement> {
    let before = workload(Phase::Before)?;
    let daemon = Owod::start(owod, extra_config)?;
    let cpu_before = daemon.cpu_seconds()?;
    let switches_before = daemon.context_switches()?;
    let with = workload(Phase::With);
    // owod's work for the loop ends when its last record is written, not when the loop ends.
    daemon.wait_until_quiet()?;
    let owod_cpu = daemon.cpu_seconds()? - cpu_before;
    let owod_switches = daemon.context_switches()? - switches_before;
    // Stop owod even when the workload failed, then report the workload's error.
    let records = daemon.stop()?;
    let with = with?;
    let after = workload(Phase::After)?;
    Ok(Measurement {
        before,
        with,
        after,
        owod_cpu,
        owod_switches,
        records,
    })
}

impl Measurement {
    /// With owod over the mean of the two runs without.
    pub fn ratio(&self) -> f64 {
        self.with / ((self.before + self.after) / 2.0)
    }

    /// The three rates and the ratio; `unit` is e.g. `execs/s`.
    pub fn print_rates(&self, unit: &str) {
        println!("  without owod (before): {:>10.0} {unit}", self.before);
        println!("  with owod:             {:>10.0} {unit}", self.with);
        println!("  without owod (after):  {:>10.0} {unit}", self.after);
        println!("  ratio with/without:    {:>10.3}", self.ratio());
    }

    /// Records owod said it lost, from its loss records: all of them, or one monitor's.
    pub fn print_losses(&self, monitor: Option<&str>) {
        let lost = self.records.losses(monitor);
        match monitor {
            None => println!("  records lost (counted): {lost}"),
            Some(monitor) => println!("  {monitor} records lost (counted): {lost}"),
        }
    }

    /// owod's CPU time during the phase with owod, in all and per operation (`op`, e.g. `exec`),
    /// and its context switches per 1,000 records it wrote.
    pub fn print_cpu(&self, ops: usize, op: &str) {
        println!(
            "  owod CPU during the loop: {:.2} s ({:.1} us per {op})",
            self.owod_cpu,
            self.owod_cpu * 1e6 / ops as f64
        );
        let records = self.records.0.len().max(1);
        println!(
            "  owod context switches:  {} ({:.0} per 1000 records)",
            self.owod_switches,
            self.owod_switches as f64 * 1000.0 / records as f64
        );
        if let Some(allocations) = self.records.allocations() {
            println!(
                "  owod heap allocations:  {allocations} ({:.1} per record)",
                allocations as f64 / records as f64
            );
        }
    }
}

/// A report line: `label` (with its colon) in the column the rates use, then `value`.
pub fn print_field(label: &str, value: impl Display) {
    println!("  {label:<23}{value}");
}

/// How many records of the workload arrived against how many it should have caused.
pub fn print_count(label: &str, seen: usize, expected: usize) {
    if expected == 0 {
        print_field(label, format_args!("{seen} (expected 0)"));
    } else {
        let percent = 100.0 * seen as f64 / expected as f64;
        print_field(label, format_args!("{seen} of {expected} ({percent:.1}%)"));
    }
}

/// The records of one owod run, in the order it wrote them.
pub struct Records(pub Vec<Value>);

impl Records {
    /// How many records have an `event` object that satisfies `matches`.
    pub fn count(&self, matches: impl Fn(&Value) -> bool) -> usize {
        self.0.iter().filter(|r| matches(&r["event"])).count()
    }

    /// The heap allocations owod made between its `start` and `stop` records.
    pub fn allocations(&self) -> Option<u64> {
        let at = |kind: &str| {
            self.0
                .iter()
                .map(|r| &r["event"])
                .find(|e| e["event_type"] == "agent" && e["type"] == kind)?["heap_allocations"]
                .as_u64()
        };
        Some(at("stop")?.saturating_sub(at("start")?))
    }

    /// The sum of `count` over loss records, of every monitor or only of `monitor`.
    pub fn losses(&self, monitor: Option<&str>) -> u64 {
        self.0
            .iter()
            .map(|r| &r["event"])
            .filter(|e| e["type"] == "loss")
            .filter(|e| monitor.is_none_or(|m| e["monitor"] == m))
            .filter_map(|e| e["count"].as_u64())
            .sum()
    }
}

/// A running owod writing its records to a file in its own temp dir.
pub struct Owod {
    child: Child,
    dir: TempDir,
    output: PathBuf,
}

impl Owod {
    /// Starts `path` with a config that writes records to a temp file, `extra_config` (YAML for
    /// the other sections) appended; returns once owod wrote its start record.
    pub fn start(path: &str, extra_config: &str) -> Result<Owod> {
        let dir = tempfile::tempdir()?;
        let output = dir.path().join("records.jsonl");
        let config = dir.path().join("config.yaml");
        fs::write(
            &config,
            format!(
                "output:\n  file:\n    path: {}\n{extra_config}",
                output.display()
            ),
        )?;
        let child = Command::new(path)
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.path().join("owod.log"))?)
            .spawn()
            .with_context(|| format!("start `{path}` (build it with `cargo build --release`)"))?;
        // From here on, an early return drops `owod`, which kills the child.
        let mut owod = Owod { child, dir, output };
        owod.wait_for_start()?;
        Ok(owod)
    }

    fn wait_for_start(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if fs::read_to_string(&self.output).is_ok_and(|t| t.contains("\"type\":\"start\"")) {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("owod exited before it started: {status}{}", self.log());
            }
            if Instant::now() > deadline {
                bail!(
                    "owod did not write its start record within {} s{}",
                    START_DEADLINE.as_secs(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The file owod writes its records to.
    pub fn output(&self) -> &std::path::Path {
        &self.output
    }

    /// Wait until owod's output file has stopped growing (for 200 ms), at most 30 s: owod has
    /// written what the workload caused.
    pub fn wait_until_quiet(&self) -> Result<()> {
        let size = || fs::metadata(&self.output).map_or(0, |m| m.len());
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = size();
        let mut still_since = Instant::now();
        while still_since.elapsed() < Duration::from_millis(200) {
            if Instant::now() > deadline {
                bail!("owod's output still grows 30 s after the workload ended");
            }
            std::thread::sleep(Duration::from_millis(20));
            let now = size();
            if now != last {
                last = now;
                still_since = Instant::now();
            }
        }
        Ok(())
    }

    /// Lines in owod's own output file so far.
    pub fn records_written(&self) -> usize {
        fs::read_to_string(&self.output)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }

    /// user + system CPU time of owod so far.
    pub fn cpu_seconds(&self) -> Result<f64> {
        cpu_seconds(self.child.id())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Context switches of all of owod's threads so far, voluntary or not, from
    /// /proc/PID/task/*/status (a thread that has ended no longer counts).
    pub fn context_switches(&self) -> Result<u64> {
        let mut total = 0;
        for task in fs::read_dir(format!("/proc/{}/task", self.child.id()))? {
            let Ok(status) = fs::read_to_string(task?.path().join("status")) else {
                continue; // the thread ended meanwhile
            };
            total += status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
        }
        Ok(total)
    }

    /// Stops owod with SIGTERM, waits for it to exit, and reads every record it wrote.
    pub fn stop(mut self) -> Result<Records> {
        self.terminate()?;
        let text = fs::read_to_string(&self.output)
            .with_context(|| format!("read `{}`", self.output.display()))?;
        let records = text
            .lines()
            .enumerate()
            .map(|(i, line)| {
                serde_json::from_str(line).with_context(|| format!("record on line {}", i + 1))
            })
            .collect::<Result<_>>()?;
        Ok(Records(records))
    }

    /// Stops owod with SIGTERM and waits for it to exit; for runs too long to read back whole
    /// (see [`tally`]).
    pub fn finish(mut self) -> Result<()> {
        self.terminate()
    }

    fn terminate(&mut self) -> Result<()> {
        let pid = i32::try_from(self.child.id()).context("owod's pid does not fit a pid_t")?;
        // SAFETY: kill has no memory-safety preconditions; the child is not reaped yet, so the
        // pid is still owod's.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let status = self.child.wait()?;
        if !status.success() {
            bail!("owod exited with {status}{}", self.log());
        }
        Ok(())
    }

    /// owod's stderr, for an error message (its temp dir goes away with it). A verifier log runs
    /// to hundreds of lines: keep its head (owod's error) and its tail (the verifier's reason).
    fn log(&self) -> String {
        const HEAD: usize = 5;
        const TAIL: usize = 20;
        let Ok(log) = fs::read_to_string(self.dir.path().join("owod.log")) else {
            return String::new();
        };
        let lines: Vec<&str> = log.trim_end().lines().collect();
        if lines.is_empty() {
            return String::new();
        }
        if lines.len() <= HEAD + TAIL {
            return format!("; its log:\n{}", lines.join("\n"));
        }
        format!(
            "; its log:\n{}\n[… {} lines left out …]\n{}",
            lines[..HEAD].join("\n"),
            lines.len() - HEAD - TAIL,
            lines[lines.len() - TAIL..].join("\n")
        )
    }
}

impl Drop for Owod {
    fn drop(&mut self) {
        // Only when a benchmark failed with owod still running: don't leave it behind.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// user + system CPU time of process `pid` so far (all its threads), from /proc/PID/stat.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at ") ".
    let rest = &stat[stat.rfind(')').context("malformed stat")? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks / hz)
}

/// Anonymous memory of process `pid` now, in KiB (`RssAnon` in /proc/PID/status).
pub fn anon_rss_kib(pid: u32) -> Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no RssAnon in /proc/PID/status")
}

/// Event-to-line latencies: create a marker file in `dir` (which owod watches) every 5 ms and
/// time each until its line is in owod's output.
pub fn latency_samples(daemon: &Owod, dir: &Path, n: usize) -> Result<Vec<Duration>> {
    /// How long one sample may take before the run gives up on it.
    const SAMPLE_DEADLINE: Duration = Duration::from_secs(10);
    let mut output = fs::File::open(daemon.output())?;
    output.seek(SeekFrom::End(0))?;
    let mut pending = String::new();
    let mut latencies = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("owo-latency-{}-{i}", std::process::id());
        let created = Instant::now();
        fs::File::create(dir.join(&name))?;
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

/// The `q` quantile (0 to 1) of `samples`, in milliseconds.
pub fn quantile_ms(samples: &[Duration], q: f64) -> f64 {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    ms.get(((ms.len().max(1) - 1) as f64 * q).round() as usize)
        .copied()
        .unwrap_or(f64::NAN)
}

/// Open and close `target` at `rate` per second until `stop`; how many opens were made.
pub fn flood_opens(target: &Path, rate: usize, stop: &AtomicBool) -> Result<usize> {
    let start = Instant::now();
    let mut done = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let due = (start.elapsed().as_secs_f64() * rate as f64) as usize;
        while done < due {
            fs::File::open(target).with_context(|| format!("open `{}`", target.display()))?;
            done += 1;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(done)
}

/// Open and close `file` at `rate` per second from two threads (one open loop alone cannot
/// reach the highest rates) for `seconds`: the rate reached, in opens per second.
pub fn flood_for(file: &Path, rate: usize, seconds: usize) -> Result<f64> {
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (stop, file) = (stop.clone(), file.to_path_buf());
            std::thread::spawn(move || flood_opens(&file, rate / 2, &stop))
        })
        .collect();
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds as u64));
    stop.store(true, Ordering::Relaxed);
    let mut done = 0;
    for t in threads {
        done += t.join().expect("a flood thread")?;
    }
    Ok(done as f64 / start.elapsed().as_secs_f64())
}

/// Lines of owod's output from byte `from` on, and the records they report lost, read a line at a
/// time (a long run's output does not fit in memory as parsed records).
pub fn tally(output: &Path, from: u64) -> Result<(u64, u64)> {
    use std::io::BufRead;
    let mut file = fs::File::open(output)?;
    file.seek(SeekFrom::Start(from))?;
    let (mut lines, mut lost) = (0, 0);
    for line in std::io::BufReader::new(file).lines() {
        let line = line?;
        lines += 1;
        if line.contains("\"type\":\"loss\"") {
            let record: Value = serde_json::from_str(&line)?;
            lost += record["event"]["count"].as_u64().unwrap_or(0);
        }
    }
    Ok((lines, lost))
}

/// Where the benchmarks leave their results as JSON, for `bench/plot.py` to draw:
/// `OWO_BENCH_RESULTS`, or `target/bench`.
pub fn results_dir() -> PathBuf {
    std::env::var_os("OWO_BENCH_RESULTS")
        .map_or_else(|| PathBuf::from("target/bench"), PathBuf::from)
}

/// Write `value` as `NAME.json` in [`results_dir`].
pub fn save(name: &str, value: &Value) -> Result<()> {
    let dir = results_dir();
    fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{name}.json"));
    fs::write(&path, serde_json::to_string_pretty(value)?)
        .with_context(|| format!("write `{}`", path.display()))?;
    println!("  results: {}", path.display());
    Ok(())
}
