//! The daemon under test: its config, start (the `start` record awaited with a deadline), a
//! barrier on both lanes, SIGTERM, and the checks of owod itself (`start`, `seq`, `run_id`, no
//! loss, a clean exit).

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::Duration,
};

use anyhow::Context as _;
use nix::{sys::signal::Signal, unistd::Pid};
use serde_json::Value;

use super::{marker, text, wait_until, Finished, DEADLINE};
use crate::{
    records::{event, Records},
    verdict::Verdict,
};

/// Loading and verifying every program under TCG takes tens of seconds, minutes on 5.10 where
/// loops are unrolled; below the host's 300 s per boot, so a slow start is still reported.
const START_DEADLINE: Duration = Duration::from_secs(240);

/// Every monitor on, writes too, `/tmp` and `/etc` watched, hashing and behavior rules on. Keys
/// as in the repository's config.yaml: owod refuses unknown ones.
pub fn config(records: &Path) -> String {
    format!(
        "monitor:
  execve: true
  file_events: true
  file_watch_all_paths: false
  file_watch_paths: [/tmp, /etc]
  network_events: true
  privilege_events: true
  exit_events: true
  write_events: true
  module_events: true
enrich:
  sha256: true
behavior:
  enabled: true
output:
  file:
    enabled: true
    path: {}
  stderr: false
logging:
  level: info
",
        records.display()
    )
}

pub struct Owod {
    child: Child,
    output: PathBuf,
    log: PathBuf,
}

impl Owod {
    pub fn start(bin: &Path, config: &Path, output: &Path, log: &Path) -> anyhow::Result<Owod> {
        let _ = fs::remove_file(output);
        let log_file =
            fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
        let child = Command::new(bin)
            .arg("--config")
            .arg(config)
            .arg("--no-dbus")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        Ok(Owod {
            child,
            output: output.to_path_buf(),
            log: log.to_path_buf(),
        })
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn records(&self) -> Records {
        Records::read(&self.output)
    }

    /// The `start` record, once written; or why it never came, with owod's first error line.
    pub fn wait_start(&mut self) -> Result<Value, String> {
        let mut start = None;
        let mut exited = None;
        let waited = wait_until("start record", START_DEADLINE, || {
            start = self
                .records()
                .find(|e| e["event_type"] == "agent" && e["type"] == "start")
                .cloned();
            exited = self.child.try_wait().ok().flatten();
            start.is_some() || exited.is_some()
        });
        if let Some(start) = start {
            return Ok(start);
        }
        let why = match exited {
            Some(status) => format!("owod exited ({status}) before its start record"),
            None => waited.err().unwrap_or_default(),
        };
        Err(format!("{why}: {}", first_error(&self.log())))
    }

    /// Wait until a record matching `pred` is written (and owod still runs).
    fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Result<(), String> {
        let mut exited = None;
        wait_until(what, DEADLINE, || {
            exited = self.child.try_wait().ok().flatten();
            exited.is_some() || self.records().find(&pred).is_some()
        })?;
        match exited {
            Some(status) => Err(format!("owod exited ({status}) before {what}")),
            None => Ok(()),
        }
    }

    /// A marked exec, and a marked file create where the file monitor runs, each awaited in its
    /// lane: records come in order within a lane, so everything the scenarios did before is
    /// written once both are. Says what it awaited.
    pub fn barrier(&mut self, file_monitor: bool) -> Result<String, String> {
        let tag = marker("barrier");
        let status = Command::new("/bin/true").arg(&tag).status();
        if !status.as_ref().is_ok_and(ExitStatus::success) {
            return Err(format!("/bin/true {tag}: {status:?}"));
        }
        self.wait_for("barrier exec", |e| {
            e["event_type"] == "execve" && e["args"][1] == tag.as_str()
        })?;
        if !file_monitor {
            return Ok("a marked exec arrived (no file monitor for the activity lane)".into());
        }
        let path = Path::new("/tmp").join(marker("barrier"));
        fs::write(&path, b"").map_err(|e| format!("create {}: {e}", path.display()))?;
        let want = text(&path);
        self.wait_for("barrier file", |e| {
            e["event_type"] == "file" && e["path"] == want.as_str()
        })?;
        Ok("a marked exec and file create arrived".into())
    }

    /// SIGTERM, and the exit awaited with a deadline.
    pub fn stop(&mut self) -> Result<ExitStatus, String> {
        if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!("owod had already exited ({status})"));
        }
        let pid = Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, Signal::SIGTERM).map_err(|e| format!("SIGTERM: {e}"))?;
        let mut status = None;
        wait_until("exit after SIGTERM", DEADLINE, || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        })?;
        status.ok_or_else(|| "no exit status".into())
    }
}

impl Drop for Owod {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The line of owod's log that says what went wrong: the first error, else the last line.
pub fn first_error(log: &str) -> String {
    let line = log
        .lines()
        .find(|l| l.contains("ERROR") || l.starts_with("owod:") || l.contains("error:"))
        .or_else(|| log.lines().rev().find(|l| !l.trim().is_empty()))
        .unwrap_or("(owod's log is empty)");
    line.chars().take(300).collect()
}

/// The checks of owod itself.
pub fn checks(
    run: &Finished,
    kernel: &str,
    flowing: Result<String, String>,
    stopped: Result<ExitStatus, String>,
) -> Vec<(&'static str, Verdict)> {
    let verdict = |r: Result<String, String>| r.map_or_else(Verdict::fail, Verdict::pass);
    vec![
        ("start record", verdict(start_record(run, kernel))),
        ("records flow while running", verdict(flowing)),
        ("seq and run_id", verdict(sequence(run.records))),
        ("no loss", verdict(no_loss(run.records))),
        (
            "exit 0 on SIGTERM",
            verdict(clean_exit(run.records, stopped)),
        ),
    ]
}

fn start_record(run: &Finished, kernel: &str) -> Result<String, String> {
    let first = run.records.all.first().ok_or("no records at all")?;
    let e = event(first);
    if (e["event_type"].as_str(), e["type"].as_str()) != (Some("agent"), Some("start")) {
        return Err(format!("the first record is not the agent start: {first}"));
    }
    if first["seq"] != 1 {
        return Err(format!("the start record has seq {}, not 1", first["seq"]));
    }
    if e["kernel"] != kernel {
        return Err(format!("kernel is {}, not {kernel}", e["kernel"]));
    }
    let modules = Path::new("/proc/modules").exists();
    let mut wrong = Vec::new();
    for monitor in owo_common::abi::Monitor::SWITCHABLE
        .iter()
        .map(|m| m.name())
    {
        let want = if monitor == "module" && !modules {
            "unavailable"
        } else {
            "on"
        };
        if e["monitors"][monitor] != want {
            wrong.push(format!(
                "{monitor} is {}, not {want}",
                e["monitors"][monitor]
            ));
        }
    }
    // The build owod picked for this kernel: bpf_loop from 5.17 on, bounded loops before.
    let loops = if has_bpf_loop(kernel) {
        "bpf_loop"
    } else {
        "bounded_loops"
    };
    if e["bpf_loops"] != loops || e["bpf_object"] != "built-in" {
        wrong.push(format!(
            "bpf_loops {} and bpf_object {}, not {loops} and built-in",
            e["bpf_loops"], e["bpf_object"]
        ));
    }
    let programs = e["bpf_prog_ids"].as_array().map_or(0, Vec::len);
    if programs < 3 {
        wrong.push(format!(
            "{programs} bpf_prog_ids, want at least exec, exit and fork"
        ));
    }
    if !wrong.is_empty() {
        return Err(format!("{}: {}", wrong.join("; "), e["monitors"]));
    }
    Ok(format!(
        "{programs} programs with {loops}, monitors {}",
        e["monitors"]
    ))
}

/// Does a kernel of this release have the `bpf_loop` helper (Linux 5.17)?
fn has_bpf_loop(release: &str) -> bool {
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0)) >= (5, 17)
}

fn sequence(records: &Records) -> Result<String, String> {
    if let Some(bad) = records.bad_lines.first() {
        return Err(format!(
            "{} lines are not JSON, first {bad}",
            records.bad_lines.len()
        ));
    }
    let run_id = &records.all.first().ok_or("no records at all")?["run_id"];
    if !run_id.is_string() {
        return Err(format!("run_id is {run_id}"));
    }
    for (i, r) in records.all.iter().enumerate() {
        if r["seq"] != i as u64 + 1 {
            return Err(format!(
                "line {} has seq {}, not {}",
                i + 1,
                r["seq"],
                i + 1
            ));
        }
        if r["run_id"] != *run_id {
            return Err(format!(
                "line {} has run_id {}, not {run_id}",
                i + 1,
                r["run_id"]
            ));
        }
    }
    Ok(format!(
        "seq 1..={} without a gap, one run_id",
        records.all.len()
    ))
}

fn no_loss(records: &Records) -> Result<String, String> {
    let losses = records.filter(|e| e["event_type"] == "agent" && e["type"] == "loss");
    match losses.first() {
        None => Ok(format!("no loss record in {}", records.all.len())),
        Some(first) => Err(format!("{} loss records, first {first}", losses.len())),
    }
}

fn clean_exit(records: &Records, stopped: Result<ExitStatus, String>) -> Result<String, String> {
    let status = stopped?;
    if status.code() != Some(0) {
        return Err(format!("owod exited with {status} on SIGTERM"));
    }
    let last = records.all.last().ok_or("no records at all")?;
    let e = event(last);
    if (e["event_type"].as_str(), e["type"].as_str()) != (Some("agent"), Some("stop")) {
        return Err(format!("the last record is not the agent stop: {last}"));
    }
    Ok("exit 0, the last record is the stop".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bpf_loop_is_there_from_5_17() {
        assert!(!has_bpf_loop("5.10.0-46-amd64"));
        assert!(!has_bpf_loop("5.16.20"));
        assert!(has_bpf_loop("5.17.0"));
        assert!(has_bpf_loop("6.1.0-57-amd64"));
        assert!(has_bpf_loop("7.2.13+deb14-amd64"));
    }

    #[test]
    fn the_first_error_line_is_picked_from_the_log() {
        let log = "2026-11-30T10:00:00Z  INFO owod: loading\n2026-11-30T10:00:01Z ERROR owod: failed to load program `owo_exec`: the verifier said\nprocessed 10 insns\n";
        assert!(first_error(log).contains("ERROR owod: failed to load program `owo_exec`"));
        assert_eq!(first_error("only\nlast line\n\n"), "last line");
        assert_eq!(first_error(""), "(owod's log is empty)");
    }

    #[test]
    fn seq_gaps_and_a_second_run_id_are_caught() {
        let good = Records::parse(
            "{\"seq\":1,\"run_id\":\"a\",\"event\":{}}\n{\"seq\":2,\"run_id\":\"a\",\"event\":{}}\n",
        );
        assert!(sequence(&good).is_ok());
        let gap = Records::parse(
            "{\"seq\":1,\"run_id\":\"a\",\"event\":{}}\n{\"seq\":3,\"run_id\":\"a\",\"event\":{}}\n",
        );
        assert_eq!(sequence(&gap), Err("line 2 has seq 3, not 2".into()));
        let other = Records::parse(
            "{\"seq\":1,\"run_id\":\"a\",\"event\":{}}\n{\"seq\":2,\"run_id\":\"b\",\"event\":{}}\n",
        );
        assert!(sequence(&other).unwrap_err().contains("run_id"));
    }

    #[test]
    fn the_config_names_only_known_keys() {
        // The keys of the repository's config.yaml this file sets; owod refuses any other.
        let repo = include_str!("../../../config.yaml");
        for line in config(Path::new("/x")).lines() {
            let key = line.trim_start().split(':').next().unwrap();
            assert!(
                repo.lines()
                    .any(|l| l.trim_start().starts_with(&format!("{key}:"))),
                "`{key}` is not in config.yaml"
            );
        }
    }
}
