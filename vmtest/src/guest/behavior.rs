//! The behavior engine, on two built-in rules (owod/rules/builtin.yaml): a binary dropped into
//! /tmp and run at once is `download_and_run` (from its create), and one written into an
//! existing file and run is `written_then_run` (from its write). Each names the `seq` of the two
//! records that made it. A rule whose input monitor does not run on this kernel is SKIP: that
//! monitor's own column fails.

use std::{
    fs,
    io::Write,
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{ensure, Context as _};
use serde_json::{json, Value};

use super::{marker, text, Check, Context, Finished};
use crate::{
    records::{seq, Expect},
    verdict::Verdict,
};

/// Run `path` (a copy of busybox) as `true`; its pid.
fn run_as_true(path: &Path) -> anyhow::Result<u32> {
    let mut child = Command::new(path).arg0("true").spawn()?;
    let pid = child.id();
    ensure!(child.wait()?.success(), "{} failed", path.display());
    Ok(pid)
}

/// The check of `rule` for the exec of `pid`, whose first step is the record `first` finds.
fn alert_check(
    rule: &'static str,
    input: &'static str,
    path: PathBuf,
    pid: u32,
    first: fn(&Value, &str) -> bool,
) -> Check {
    Box::new(move |run: &Finished| {
        if run.monitor_state(input) != "on" {
            return Ok(Verdict::skip(format!(
                "its input, the {input} monitor, is {} on this kernel",
                run.monitor_state(input)
            )));
        }
        let path = text(&path);
        let step0 = run
            .records
            .find(|e| first(e, &path))
            .ok_or_else(|| format!("no {input} record of {path}"))?;
        let exec = run.records.of("execve", pid)?;
        let alert = run
            .records
            .find(|e| e["event_type"] == "behavior" && e["rule"] == rule && e["pid"] == pid)
            .ok_or_else(|| format!("no {rule} record for pid {pid}"))?;
        Expect::new(format!("the {rule} record"), alert)
            .eq("severity", "medium")
            .eq("related_seq", json!([seq(step0), seq(exec)]))
            .eq("mitre", json!(["T1105", "T1204"]))
            .that("detail", "a sentence naming the file", |d| {
                d.as_str().is_some_and(|d| d.contains(path.as_str()))
            })
            .done()?;
        if seq(alert) <= seq(exec) {
            return Err(format!(
                "the alert (seq {}) comes before its exec (seq {})",
                seq(alert),
                seq(exec)
            ));
        }
        Ok(Verdict::pass(format!(
            "{path}: related_seq [{}, {}]",
            seq(step0),
            seq(exec)
        )))
    })
}

pub fn download_and_run(_cx: &Context) -> anyhow::Result<Check> {
    let dropped = Path::new("/tmp").join(marker("dropped"));
    fs::copy("/bin/busybox", &dropped).context("copy busybox")?;
    let pid = run_as_true(&dropped)?;
    Ok(alert_check(
        "download_and_run",
        "file",
        dropped,
        pid,
        |e, path| e["event_type"] == "file" && e["type"] == "create" && e["path"] == path,
    ))
}

pub fn written_then_run(_cx: &Context) -> anyhow::Result<Check> {
    let path = Path::new("/tmp").join(marker("written"));
    fs::write(&path, b"").context("create")?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
    let image = fs::read("/bin/busybox")?;
    // One write of the whole image into the existing file: one write record, one chain.
    let written = fs::OpenOptions::new()
        .write(true)
        .open(&path)?
        .write(&image)?;
    ensure!(
        written == image.len(),
        "a short write: {written} of {}",
        image.len()
    );
    let pid = run_as_true(&path)?;
    Ok(alert_check(
        "written_then_run",
        "write",
        path,
        pid,
        |e, path| e["event_type"] == "write" && e["path"] == path,
    ))
}
