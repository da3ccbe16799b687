//! Benchmark (not a test): a loop of fork+exec of `/bin/true`, run without owod, with owod, and
//! without again, in one invocation. Prints execs/s for each, the ratio with/without, and how
//! many of the loop's execs owod recorded. Needs root (it starts owod).
//!
//! `exec-loop [--owod PATH] [--execs N]`

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
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--owod" => owod = args.next().context("--owod needs a path")?,
            "--execs" => execs = args.next().context("--execs needs a number")?.parse()?,
            other => {
                bail!("unknown argument `{other}`; usage: exec-loop [--owod PATH] [--execs N]")
            }
        }
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("exec-loop starts owod, which needs root");
    }
    let tag = format!("owo-bench-{}", std::process::id());

    let before = exec_loop(execs, &format!("{tag}-before"))?;
    let dir = tempfile::tempdir()?;
    let output = dir.path().join("records.jsonl");
    let mut daemon = start_owod(&owod, dir.path(), &output)?;
    let with = exec_loop(execs, &format!("{tag}-with"));
    stop(&mut daemon)?;
    let with = with?;
    let after = exec_loop(execs, &format!("{tag}-after"))?;

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
    println!("exec-loop: {execs} fork+exec of /bin/true per phase");
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
    Ok(())
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
