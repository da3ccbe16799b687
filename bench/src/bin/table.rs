//! Benchmark (not a test): owod beside no agent and beside its peers, in one table from one run.
//! Every round runs every workload under every condition, one after the other, so that drift in
//! the machine's speed touches all conditions alike; ratios are against the no-agent run of the
//! same round, and the table shows the median over the rounds. Then a zero-loss rate search: the
//! highest rate of watched file records per second that owod takes for 10 s without a loss.
//!
//! Conditions: no agent; owod (every monitor, writes included, hashing on); and where installed,
//! auditd (rules: every execve, and openat under the watched directory) and libbpf-tools
//! `execsnoop` (execs only). Workloads: fork+exec of `/bin/true`; open+close of a file under /tmp
//! (watched by owod and by the audit rule); open+close of a file under /var/lib/owo-bench (watched
//! by neither). Needs root.
//!
//! Last, a mixed load: stress-ng's exec (as nobody), open, rename, sock and fork stressors for
//! `--stress-seconds` (default 120) with owod's every monitor on: records, losses, owod's average
//! CPU and its anonymous memory before and after.
//!
//! `table [--owod PATH] [--rounds R] [--execs N] [--opens N] [--search-seconds S]
//! [--stress-seconds S]`

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use owo_bench::{
    anon_rss_kib, cpu_seconds, flood_for, latency_samples, ops_per_second, parse_args, quantile_ms,
    require_root, tally, Owod,
};
use serde_json::Value;

/// Every monitor on, writes included; hashing is on by default.
const OWOD_CONFIG: &str = "monitor:\n  write_events: true\n";
/// Not watched by owod's defaults, nor by the audit rules.
const UNWATCHED_ROOT: &str = "/var/lib/owo-bench";
const AUDIT_KEY: &str = "owo-bench";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Condition {
    None,
    Owod,
    Auditd,
    Execsnoop,
}

impl Condition {
    fn name(self) -> &'static str {
        match self {
            Condition::None => "no agent",
            Condition::Owod => "owod",
            Condition::Auditd => "auditd",
            Condition::Execsnoop => "execsnoop",
        }
    }
}

/// A running agent.
enum Agent {
    None,
    Owod(Owod),
    /// auditd and the kernel's kauditd thread, which does part of its work.
    Auditd {
        daemon: Child,
        kauditd: Vec<u32>,
    },
    Execsnoop(Child),
}

impl Agent {
    fn start(condition: Condition, owod: &str, watched: &Path) -> Result<Agent> {
        Ok(match condition {
            Condition::None => Agent::None,
            Condition::Owod => Agent::Owod(Owod::start(owod, OWOD_CONFIG)?),
            Condition::Auditd => {
                auditctl(&["-D"])?;
                let daemon = Command::new("auditd")
                    .arg("-n")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .context("start auditd")?;
                let dir = format!("dir={}", watched.display());
                audit_rule(&["-S", "execve"])?;
                audit_rule(&["-S", "openat", "-F", &dir])?;
                auditctl(&["-e", "1"])?;
                // auditd registers itself with the kernel once it is up.
                let deadline = Instant::now() + Duration::from_secs(10);
                while !audit_pid_set()? {
                    if Instant::now() > deadline {
                        bail!("auditd did not register with the kernel within 10 s");
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Agent::Auditd {
                    daemon,
                    kauditd: pids_named("kauditd")?,
                }
            }
            Condition::Execsnoop => {
                let child = Command::new("execsnoop")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .context("start execsnoop")?;
                // Attached once it holds a BPF link (or, on older kernels, the perf event).
                let deadline = Instant::now() + Duration::from_secs(10);
                while !holds_bpf_link(child.id()) {
                    if Instant::now() > deadline {
                        bail!("execsnoop did not attach within 10 s");
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Agent::Execsnoop(child)
            }
        })
    }

    /// CPU time of the agent's processes so far.
    fn cpu(&self) -> Result<f64> {
        match self {
            Agent::None => Ok(0.0),
            Agent::Owod(owod) => owod.cpu_seconds(),
            Agent::Auditd { daemon, kauditd } => {
                let mut total = cpu_seconds(daemon.id())?;
                for &pid in kauditd {
                    total += cpu_seconds(pid)?;
                }
                Ok(total)
            }
            Agent::Execsnoop(child) => cpu_seconds(child.id()),
        }
    }

    /// Wait until the agent has done the work the workload caused (owod: its output is quiet).
    fn settle(&self) -> Result<()> {
        match self {
            Agent::Owod(owod) => owod.wait_until_quiet(),
            Agent::None => Ok(()),
            _ => {
                std::thread::sleep(Duration::from_millis(300));
                Ok(())
            }
        }
    }

    fn stop(self) -> Result<Option<Vec<Value>>> {
        match self {
            Agent::None => Ok(None),
            Agent::Owod(owod) => Ok(Some(owod.stop()?.0)),
            Agent::Auditd { mut daemon, .. } => {
                auditctl(&["-D"])?;
                auditctl(&["-e", "0"])?;
                terminate(&mut daemon)?;
                Ok(None)
            }
            Agent::Execsnoop(mut child) => {
                terminate(&mut child)?;
                Ok(None)
            }
        }
    }
}

fn auditctl(args: &[&str]) -> Result<()> {
    let out = Command::new("auditctl")
        .args(args)
        .output()
        .context("run auditctl")?;
    if !out.status.success() {
        bail!(
            "auditctl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// An audit rule on every 64-bit call of `what` (`-S name`, and more `-F` filters).
fn audit_rule(what: &[&str]) -> Result<()> {
    let mut args = vec!["-a", "always,exit", "-F", "arch=b64"];
    args.extend_from_slice(what);
    // auditctl takes the key only after the syscall.
    args.extend_from_slice(&["-k", AUDIT_KEY]);
    auditctl(&args)
}

/// The kernel knows an audit daemon (`auditctl -s` shows its pid).
fn audit_pid_set() -> Result<bool> {
    let out = Command::new("auditctl").arg("-s").output()?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.starts_with("pid ") && l.trim() != "pid 0"))
}

fn holds_bpf_link(pid: u32) -> bool {
    fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
        fds.flatten().any(|fd| {
            fs::read_link(fd.path()).is_ok_and(|target| {
                let target = target.as_os_str();
                target == "anon_inode:bpf_link" || target == "anon_inode:[perf_event]"
            })
        })
    })
}

fn pids_named(comm: &str) -> Result<Vec<u32>> {
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc")? {
        let entry = entry?;
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if fs::read_to_string(entry.path().join("comm")).is_ok_and(|c| c.trim() == comm) {
            pids.push(pid);
        }
    }
    Ok(pids)
}

fn terminate(child: &mut Child) -> Result<()> {
    let pid = i32::try_from(child.id()).context("pid")?;
    // SAFETY: kill has no memory-safety preconditions; the child is not reaped yet.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    child.wait()?;
    Ok(())
}

fn installed(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// One condition in one round.
#[derive(Default, Clone)]
struct Run {
    exec_rate: f64,
    watched_rate: f64,
    unwatched_rate: f64,
    /// Agent CPU seconds during each workload.
    exec_cpu: f64,
    watched_cpu: f64,
    unwatched_cpu: f64,
    /// owod only.
    owod: Option<OwodRun>,
}

#[derive(Default, Clone)]
struct OwodRun {
    complete_percent: f64,
    losses: u64,
    p99_ms: f64,
    switches_per_1000: f64,
    anon_rss_mib: f64,
}

struct Setup {
    owod: String,
    execs: usize,
    opens: usize,
    watched_file: PathBuf,
    unwatched_file: PathBuf,
    latency_dir: PathBuf,
}

fn run(condition: Condition, setup: &Setup, round: usize) -> Result<Run> {
    let watched_dir = setup.watched_file.parent().context("watched dir")?;
    let agent = Agent::start(condition, &setup.owod, watched_dir)?;
    let before = owod_switches(&agent)?;
    let marker = format!("owo-bench-table-{}-{round}", std::process::id());
    let mut runs = Run::default();
    let timed = |op: &mut dyn FnMut() -> Result<f64>| -> Result<(f64, f64)> {
        let cpu = agent.cpu()?;
        let rate = op()?;
        agent.settle()?;
        Ok((rate, agent.cpu()? - cpu))
    };
    (runs.exec_rate, runs.exec_cpu) = timed(&mut || {
        ops_per_second(setup.execs, || {
            let status = Command::new("/bin/true").arg(&marker).status()?;
            anyhow::ensure!(status.success(), "/bin/true failed");
            Ok(())
        })
    })?;
    (runs.watched_rate, runs.watched_cpu) =
        timed(&mut || open_loop(&setup.watched_file, setup.opens))?;
    (runs.unwatched_rate, runs.unwatched_cpu) =
        timed(&mut || open_loop(&setup.unwatched_file, setup.opens))?;
    let mut extra = None;
    if let Agent::Owod(owod) = &agent {
        let latencies = latency_samples(owod, &setup.latency_dir, 50)?;
        let switches = owod.context_switches()? - before;
        let rss = anon_rss_kib(owod.pid())? as f64 / 1024.0;
        extra = Some((quantile_ms(&latencies, 0.99), switches, rss));
    }
    let records = agent.stop()?;
    if let (Some(records), Some((p99_ms, switches, rss))) = (records, extra) {
        let event = |r: &Value| r["event"].clone();
        let execs = records
            .iter()
            .map(event)
            .filter(|e| e["event_type"] == "execve" && e["args"][1] == marker.as_str())
            .count();
        let watched = setup.watched_file.to_str().context("UTF-8 path")?;
        let opens = records
            .iter()
            .map(event)
            .filter(|e| e["event_type"] == "file" && e["path"] == watched)
            .count();
        let losses = records
            .iter()
            .map(event)
            .filter(|e| e["type"] == "loss")
            .filter_map(|e| e["count"].as_u64())
            .sum();
        runs.owod = Some(OwodRun {
            complete_percent: 100.0 * (execs + opens) as f64 / (setup.execs + setup.opens) as f64,
            losses,
            p99_ms,
            switches_per_1000: switches as f64 * 1000.0 / records.len().max(1) as f64,
            anon_rss_mib: rss,
        });
    }
    Ok(runs)
}

fn owod_switches(agent: &Agent) -> Result<u64> {
    match agent {
        Agent::Owod(owod) => owod.context_switches(),
        _ => Ok(0),
    }
}

fn open_loop(file: &Path, n: usize) -> Result<f64> {
    ops_per_second(n, || {
        fs::File::open(file)
            .map(drop)
            .with_context(|| format!("open `{}`", file.display()))
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() -> Result<()> {
    let mut rounds = 3usize;
    // Agent CPU is read in clock ticks (10 ms): 10,000 execs put one tick at 1 µs per exec, and
    // 200,000 opens at 0.05 µs per open; a loop of opens much shorter than 200,000 (tens of ms)
    // gives no steady ratio.
    let mut execs = 10_000usize;
    let mut opens = 200_000usize;
    let mut search_seconds = 10usize;
    let mut stress_seconds = 120usize;
    let owod = parse_args(
        "table [--owod PATH] [--rounds R] [--execs N] [--opens N] [--search-seconds S] [--stress-seconds S]",
        &mut [
            ("--rounds", &mut rounds),
            ("--execs", &mut execs),
            ("--opens", &mut opens),
            ("--search-seconds", &mut search_seconds),
            ("--stress-seconds", &mut stress_seconds),
        ],
    )?;
    require_root("table")?;

    let watched = tempfile::Builder::new()
        .prefix("owo-bench-")
        .tempdir_in("/tmp")?;
    fs::create_dir_all(UNWATCHED_ROOT)?;
    let unwatched = tempfile::Builder::new()
        .prefix("owo-bench-")
        .tempdir_in(UNWATCHED_ROOT)?;
    let latency = tempfile::Builder::new()
        .prefix("owo-bench-latency-")
        .tempdir_in("/tmp")?;
    let setup = Setup {
        owod,
        execs,
        opens,
        watched_file: fs::canonicalize(watched.path())?.join("marker"),
        unwatched_file: fs::canonicalize(unwatched.path())?.join("marker"),
        latency_dir: fs::canonicalize(latency.path())?,
    };
    fs::write(&setup.watched_file, "owo-bench\n")?;
    fs::write(&setup.unwatched_file, "owo-bench\n")?;

    let mut conditions = vec![Condition::None, Condition::Owod];
    for (condition, program) in [
        (Condition::Auditd, "auditd"),
        (Condition::Execsnoop, "execsnoop"),
    ] {
        if condition == Condition::Auditd && installed(program) && audit_pid_set()? {
            println!("(an audit daemon already runs: no auditd row; the no-agent row is not agent-free either)");
        } else if installed(program) {
            conditions.push(condition);
        } else {
            println!(
                "({program} is not installed: no {} column; `make bench` installs it)",
                condition.name()
            );
        }
    }
    let mut results: Vec<Vec<Run>> = vec![Vec::new(); conditions.len()];
    for round in 0..rounds {
        for (i, &condition) in conditions.iter().enumerate() {
            let run = run(condition, &setup, round)
                .with_context(|| format!("round {}: {}", round + 1, condition.name()))?;
            results[i].push(run);
        }
        eprintln!("round {} of {rounds} done", round + 1);
    }
    print_table(&setup, &conditions, &results);
    zero_loss_search(&setup, search_seconds)?;
    if installed("stress-ng") {
        mixed_load(&setup.owod, stress_seconds)
    } else {
        println!("\n(stress-ng is not installed: no mixed load; `make bench` installs it)");
        Ok(())
    }
}

/// stress-ng's mixed load under owod: records, losses, average CPU and anonymous memory.
fn mixed_load(owod: &str, seconds: usize) -> Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("owo-bench-stress-")
        .tempdir_in("/tmp")?;
    // The stressors run as nobody, in this directory.
    fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )?;
    let owod = Owod::start(owod, OWOD_CONFIG)?;
    let (cpu, rss) = (owod.cpu_seconds()?, anon_rss_kib(owod.pid())?);
    let start = Instant::now();
    let status = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "stress-ng",
        ])
        .args([
            "--exec", "1", "--open", "1", "--rename", "1", "--sock", "1", "--fork", "1",
        ])
        .args(["-t", &format!("{seconds}s"), "--temp-path"])
        .arg(dir.path())
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("run stress-ng")?;
    anyhow::ensure!(status.success(), "stress-ng failed: {status}");
    owod.wait_until_quiet()?;
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = owod.cpu_seconds()? - cpu;
    let rss_after = anon_rss_kib(owod.pid())?;
    let (records, lost) = tally(owod.output(), 0)?;
    owod.finish()?;
    println!("\nmixed load: stress-ng exec (as nobody), open, rename, sock, fork for {seconds} s");
    println!(
        "  records {}   lost {}   owod CPU {:.1}% of a core   anon RSS {:.1} -> {:.1} MiB",
        records,
        lost,
        100.0 * cpu / elapsed,
        rss as f64 / 1024.0,
        rss_after as f64 / 1024.0
    );
    Ok(())
}

fn print_table(setup: &Setup, conditions: &[Condition], results: &[Vec<Run>]) {
    let baseline = &results[0];
    let ratio = |runs: &[Run], rate: fn(&Run) -> f64| {
        median(
            runs.iter()
                .zip(baseline)
                .map(|(r, b)| rate(r) / rate(b))
                .collect(),
        )
    };
    let per_op = |runs: &[Run], cpu: fn(&Run) -> f64, ops: usize| {
        median(runs.iter().map(|r| cpu(r) * 1e6 / ops as f64).collect())
    };
    println!(
        "\nmedian of {} rounds; {} execs and {} opens per workload; us: agent CPU per operation\n",
        baseline.len(),
        setup.execs,
        setup.opens
    );
    println!(
        "{:<10} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>7} {:>8} {:>10} {:>8}",
        "condition",
        "exec",
        "us/exec",
        "watched",
        "us/open",
        "unwatch",
        "complete",
        "losses",
        "p99 ms",
        "ctx/1k",
        "anon MiB",
        "execs/s"
    );
    for (condition, runs) in conditions.iter().zip(results) {
        let owod = |f: fn(&OwodRun) -> f64| {
            let values: Vec<f64> = runs.iter().filter_map(|r| r.owod.as_ref().map(f)).collect();
            if values.is_empty() {
                "-".to_owned()
            } else {
                format!("{:.1}", median(values))
            }
        };
        println!(
            "{:<10} {:>6.3} {:>8.1} {:>8.3} {:>8.2} {:>8.3} {:>8} {:>9} {:>7} {:>8} {:>10} {:>8.0}",
            condition.name(),
            ratio(runs, |r| r.exec_rate),
            per_op(runs, |r| r.exec_cpu, setup.execs),
            ratio(runs, |r| r.watched_rate),
            per_op(runs, |r| r.watched_cpu, setup.opens),
            ratio(runs, |r| r.unwatched_rate),
            owod(|o| o.complete_percent),
            owod(|o| o.losses as f64),
            owod(|o| o.p99_ms),
            owod(|o| o.switches_per_1000),
            owod(|o| o.anon_rss_mib),
            median(runs.iter().map(|r| r.exec_rate).collect()),
        );
    }
}

/// Watched file records owod lost while `rate` opens per second ran for `seconds` (and the rate
/// the flood reached).
fn flood(owod: &Owod, file: &Path, rate: usize, seconds: usize) -> Result<(u64, f64)> {
    let from = fs::metadata(owod.output())?.len();
    let reached = flood_for(file, rate, seconds)?;
    owod.wait_until_quiet()?;
    let (_, lost) = tally(owod.output(), from)?;
    Ok((lost, reached))
}

/// The highest rate of watched opens (one record each) owod takes for `seconds` without a loss:
/// doubling from 25k/s to the first loss, then halving the gap three times.
fn zero_loss_search(setup: &Setup, seconds: usize) -> Result<()> {
    let owod = Owod::start(&setup.owod, OWOD_CONFIG)?;
    println!(
        "\nzero-loss search: watched opens for {seconds} s at each rate (owod, every monitor on)"
    );
    let mut good: Option<f64> = None;
    let mut bad: Option<usize> = None;
    // The flood could not reach a rate, without a loss: the limit found is the load's.
    let mut load_bound = false;
    let mut rate = 25_000usize;
    let mut try_rate = |rate: usize| -> Result<bool> {
        let (lost, reached) = flood(&owod, &setup.watched_file, rate, seconds)?;
        println!("  asked {rate:>8}/s  reached {reached:>9.0}/s  lost {lost}");
        if lost == 0 {
            good = Some(good.unwrap_or(0.0).max(reached));
            load_bound |= reached < 0.9 * rate as f64;
        }
        Ok(lost == 0 && reached >= 0.9 * rate as f64)
    };
    loop {
        if try_rate(rate)? {
            rate *= 2;
            if rate > 3_200_000 {
                break;
            }
        } else {
            bad = Some(rate);
            break;
        }
    }
    if let Some(high) = bad {
        let mut low = high / 2;
        let mut high = high;
        for _ in 0..3 {
            let mid = (low + high) / 2;
            if try_rate(mid)? {
                low = mid;
            } else {
                high = mid;
            }
        }
    }
    let (_, lost) = tally(owod.output(), 0)?;
    owod.finish()?;
    println!(
        "  highest rate without a loss: {:.0} records/s{} (losses in all: {})",
        good.unwrap_or(0.0),
        if load_bound {
            ", as fast as the load went"
        } else {
            ""
        },
        lost
    );
    Ok(())
}
