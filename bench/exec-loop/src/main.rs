//! Benchmark (not a test): a loop of fork+exec of `/bin/true`, run without owod, with owod, and
//! without again, in one invocation. Prints execs/s for each, the ratio with/without, and how
//! many of the loop's execs owod recorded. Needs root (it starts owod).
//!
//! `exec-loop [--owod PATH] [--execs N] [--jobs J]`: J loops run at once (N execs in all), so
//! that with J at the number of cores owod competes with the workload for CPU.

use std::{
    fs,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use serde_json::Value;

fn main() -> Result<()> {
    let mut owod = "target/release/owod".to_owned();
    let mut execs = 5000usize;
    let mut jobs = 1usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--owod" => owod = args.next().context("--owod needs a path")?,
            "--execs" => execs = args.next().context("--execs needs a number")?.parse()?,
            "--jobs" => {
                jobs = args
                    .next()
                    .context("--jobs needs a number")?
                    .parse::<usize>()?
                    .max(1)
            }
            other => {
                bail!("unknown argument `{other}`; usage: exec-loop [--owod PATH] [--execs N] [--jobs J]")
            }
        }
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("exec-loop starts owod, which needs root");
    }
    let tag = format!("owo-bench-{}", std::process::id());

    let before = exec_loops(execs, jobs, &format!("{tag}-before"))?;
    let dir = tempfile::tempdir()?;
    let output = dir.path().join("records.jsonl");
    let mut daemon = start_owod(&owod, dir.path(), &output)?;
    let cpu_before = cpu_seconds(daemon.id())?;
    let with = exec_loops(execs, jobs, &format!("{tag}-with"));
    let owod_cpu = cpu_seconds(daemon.id())? - cpu_before;
    stop(&mut daemon)?;
    let with = with?;
    let after = exec_loops(execs, jobs, &format!("{tag}-after"))?;

    let text = fs::read_to_string(&output)?;
    let records: Vec<Value> = text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let marker = format!("{tag}-with");
    let seen = records
        .iter()
        .filter(|r| {
            r["event"]["event_type"] == "execve" && r["event"]["args"][1] == marker.as_str()
        })
        .count();
    let exits = records
        .iter()
        .filter(|r| r["event"]["event_type"] == "exit" && r["event"]["comm"] == "true")
        .count();
    let losses: u64 = records
        .iter()
        .filter(|r| r["event"]["type"] == "loss")
        .filter_map(|r| r["event"]["count"].as_u64())
        .sum();

    let baseline = (before + after) / 2.0;
    println!("exec-loop: {execs} fork+exec of /bin/true per phase, {jobs} at a time");
    println!("  without owod (before): {before:>10.0} execs/s");
    println!("  with owod:             {with:>10.0} execs/s");
    println!("  without owod (after):  {after:>10.0} execs/s");
    println!("  ratio with/without:    {:>10.3}", with / baseline);
    println!(
        "  execve records:        {seen} of {execs} ({:.1}%)",
        100.0 * seen as f64 / execs as f64
    );
    println!("  exit records (true):   {exits}");
    println!("  records lost (counted): {losses}");
    println!(
        "  owod CPU during the loop: {owod_cpu:.2} s ({:.1} us per exec)",
        owod_cpu * 1e6 / execs as f64
    );
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

/// user + system CPU time of a process so far, from /proc/PID/stat.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at ") ".
    let rest = &stat[stat.rfind(')').context("malformed stat")? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks / hz)
}

/// fork+exec `/bin/true MARKER` `n` times, one after the other; execs per second.
fn exec_loop(n: usize, marker: &str) -> Result<f64> {
    let start = Instant::now();
    for _ in 0..n {
        let status = Command::new("/bin/true")
            .arg(marker)
            .status()
            .context("spawn /bin/true")?;
        if !status.success() {
            bail!("/bin/true failed: {status}");
        }
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

fn start_owod(owod: &str, dir: &std::path::Path, output: &std::path::Path) -> Result<Child> {
    let config = dir.join("config.yaml");
    fs::write(
        &config,
        format!("output:\n  file:\n    path: {}\n", output.display()),
    )?;
    let mut child = Command::new(owod)
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(dir.join("owod.log"))?)
        .spawn()
        .with_context(|| format!("start `{owod}` (build it with `cargo build --release`)"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if fs::read_to_string(output).is_ok_and(|t| t.contains("\"type\":\"start\"")) {
            return Ok(child);
        }
        if let Some(status) = child.try_wait()? {
            bail!("owod exited before it started: {status}");
        }
        if Instant::now() > deadline {
            bail!("owod did not write its start record within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stop(child: &mut Child) -> Result<()> {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait()?;
    if !status.success() {
        bail!("owod exited with {status}");
    }
    Ok(())
}
