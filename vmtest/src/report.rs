//! `owo-vmtest report`: read each kernel's console log, print the kernel × monitor table and the
//! failures under it. A cell is FAIL when any of its checks failed or it has none (a kernel that
//! did not boot or finish has none), PASS when a check passed, SKIP when all were skipped.

use std::{fmt::Write as _, path::PathBuf, process::ExitCode};

use anyhow::{bail, Context as _};

use crate::verdict::{parse_end, CheckLine, Outcome, MONITORS};

#[derive(clap::Args)]
pub struct ReportArgs {
    /// `LABEL=CONSOLE_LOG`, one per kernel, in the order of the table's rows.
    #[arg(required = true)]
    runs: Vec<String>,
}

/// What one kernel's console log says.
struct KernelRun {
    label: String,
    log: PathBuf,
    /// `uname -r` in the guest, from its check lines.
    release: Option<String>,
    checks: Vec<CheckLine>,
    finished: bool,
    /// The last few non-empty console lines: where a kernel that did not finish stopped.
    tail: Vec<String>,
}

/// How many console lines the note of a kernel that did not finish quotes.
const TAIL_LINES: usize = 3;

impl KernelRun {
    fn parse(label: &str, log: PathBuf, console: &str) -> KernelRun {
        let mut run = KernelRun {
            label: label.into(),
            log,
            release: None,
            checks: Vec::new(),
            finished: false,
            tail: Vec::new(),
        };
        for line in console.lines() {
            let line = line.trim_end_matches('\r');
            if let Some(check) = CheckLine::parse(line) {
                run.release.get_or_insert_with(|| check.kernel.clone());
                run.checks.push(check);
            } else if parse_end(line).is_some() {
                run.finished = true;
            }
            if !line.trim().is_empty() {
                if run.tail.len() == TAIL_LINES {
                    run.tail.remove(0);
                }
                run.tail.push(line.into());
            }
        }
        run
    }

    /// The cell of `monitor`, and whether it has no check at all.
    fn cell(&self, monitor: &str) -> (Outcome, bool) {
        let outcomes: Vec<Outcome> = self
            .checks
            .iter()
            .filter(|c| c.monitor == monitor)
            .map(|c| c.verdict.outcome)
            .collect();
        if outcomes.contains(&Outcome::Fail) {
            (Outcome::Fail, false)
        } else if outcomes.contains(&Outcome::Pass) {
            (Outcome::Pass, false)
        } else if outcomes.contains(&Outcome::Skip) {
            (Outcome::Skip, false)
        } else {
            (Outcome::Fail, true)
        }
    }

    fn row_label(&self) -> String {
        match &self.release {
            Some(release) => format!("{} ({release})", self.label),
            None => self.label.clone(),
        }
    }
}

/// The table, the failures and the skips under it; `true` when every cell passed or skipped.
fn render(runs: &[KernelRun]) -> (String, bool) {
    let mut out = String::new();
    let mut ok = true;
    let first = runs
        .iter()
        .map(|r| r.row_label().len())
        .max()
        .unwrap_or(0)
        .max(6);
    let _ = write!(out, "{:first$}", "kernel");
    for monitor in MONITORS {
        let _ = write!(out, "  {monitor:>4}");
    }
    out.push('\n');
    for run in runs {
        let _ = write!(out, "{:first$}", run.row_label());
        for monitor in MONITORS {
            let (outcome, _) = run.cell(monitor);
            ok &= outcome != Outcome::Fail;
            let width = monitor.len().max(4);
            let _ = write!(out, "  {:>width$}", outcome.to_string());
        }
        out.push('\n');
    }
    let mut notes = String::new();
    for run in runs {
        if !run.finished {
            let _ = writeln!(
                notes,
                "{}: did not finish (no VMTEST-END in {}); its console ends:",
                run.label,
                run.log.display(),
            );
            if run.tail.is_empty() {
                let _ = writeln!(notes, "    (nothing)");
            }
            for line in &run.tail {
                let _ = writeln!(notes, "    {line}");
            }
        }
        for check in &run.checks {
            if check.verdict.outcome != Outcome::Pass {
                let _ = writeln!(
                    notes,
                    "{} {} {} {}: {}",
                    run.label,
                    check.monitor,
                    check.verdict.outcome,
                    check.scenario,
                    check.verdict.detail
                );
            }
        }
        let missing: Vec<&str> = MONITORS.into_iter().filter(|m| run.cell(m).1).collect();
        if run.finished && !missing.is_empty() {
            let _ = writeln!(notes, "{}: no check for {}", run.label, missing.join(", "));
        }
    }
    if !notes.is_empty() {
        out.push('\n');
        out.push_str(&notes);
    }
    (out, ok)
}

pub fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let mut runs = Vec::new();
    for spec in &args.runs {
        let Some((label, log)) = spec.split_once('=') else {
            bail!("`{spec}` is not LABEL=CONSOLE_LOG");
        };
        // A kernel that never booted may have left no log at all: its row is all FAIL.
        let console = match std::fs::read(log) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e).with_context(|| format!("read {log}")),
        };
        runs.push(KernelRun::parse(label, log.into(), &console));
    }
    let (table, ok) = render(&runs);
    print!("{table}");
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_pass(kernel: &str) -> String {
        let mut console = String::from("[    0.000000] Linux version\r\n");
        for monitor in MONITORS {
            console += &format!("VMTEST {kernel} {monitor} PASS a check: fine\r\n");
        }
        console + &format!("VMTEST-END {kernel}\r\n")
    }

    #[test]
    fn a_kernel_where_everything_passed_is_a_row_of_pass() {
        let run = KernelRun::parse("7.2", "c.log".into(), &all_pass("7.2.13+deb14-amd64"));
        let (table, ok) = render(&[run]);
        assert!(ok, "{table}");
        let row = table.lines().nth(1).unwrap();
        assert!(row.starts_with("7.2 (7.2.13+deb14-amd64)"), "{table}");
        assert_eq!(row.matches("PASS").count(), MONITORS.len(), "{table}");
    }

    #[test]
    fn one_failed_check_fails_its_cell_and_is_listed() {
        let console = all_pass("k").replace(
            "VMTEST-END k",
            "VMTEST k network FAIL tcp ipv6: no connect record\r\nVMTEST-END k",
        );
        let (table, ok) = render(&[KernelRun::parse("6.1", "c.log".into(), &console)]);
        assert!(!ok);
        assert!(
            table.contains("6.1 network FAIL tcp ipv6: no connect record"),
            "{table}"
        );
        assert_eq!(
            table.lines().nth(1).unwrap().matches("FAIL").count(),
            1,
            "{table}"
        );
    }

    #[test]
    fn skips_alone_are_skip_and_a_kernel_that_never_finished_fails_everywhere() {
        let console = all_pass("k").replace("module PASS", "module SKIP");
        let (table, ok) = render(&[KernelRun::parse("a", "a.log".into(), &console)]);
        assert!(ok, "{table}");
        assert!(table.lines().nth(1).unwrap().contains("SKIP"));

        let hung = KernelRun::parse(
            "b",
            "b.log".into(),
            "[    2.1] Kernel panic - not syncing\r\n",
        );
        let (table, ok) = render(&[hung]);
        assert!(!ok);
        assert_eq!(
            table.lines().nth(1).unwrap().matches("FAIL").count(),
            MONITORS.len()
        );
        assert!(
            table.contains("b: did not finish (no VMTEST-END in b.log); its console ends:\n    [    2.1] Kernel panic"),
            "{table}"
        );
    }

    #[test]
    fn a_finished_kernel_without_a_check_for_a_monitor_fails_that_cell() {
        let console = all_pass("k").replace("VMTEST k fork PASS a check: fine\r\n", "");
        let (table, ok) = render(&[KernelRun::parse("c", "c.log".into(), &console)]);
        assert!(!ok);
        assert!(table.contains("c: no check for fork"), "{table}");
    }
}
