//! The command line, without root: `--check-config` reports every problem with its line, the
//! original one-dash spellings work, and a config error is exit code 2.

use std::{path::Path, process::Command};

fn owod(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_owod"))
        .args(args)
        .output()
        .expect("run owod");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn shipped_config() -> String {
    format!("{}/../config.yaml", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn check_config_accepts_the_shipped_file_in_both_spellings() {
    let config = shipped_config();
    for flag in ["--config", "-config"] {
        let (code, stdout, stderr) = owod(&[flag, &config, "--check-config"]);
        assert_eq!(code, Some(0), "{flag}: {stderr}");
        assert!(stdout.contains(": ok"), "{stdout}");
    }
}

#[test]
fn version_in_both_spellings() {
    for flag in ["--version", "-version"] {
        let (code, stdout, _) = owod(&[flag]);
        assert_eq!(code, Some(0));
        assert_eq!(stdout.trim(), format!("owod {}", env!("CARGO_PKG_VERSION")));
    }
}

#[test]
fn check_config_reports_every_problem_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "monitor:\n  execve: maybe\n  colour: blue\noutput:\n  stderr: 3\n",
    )
    .unwrap();
    let (code, _, stderr) = owod(&["--config", path.to_str().unwrap(), "--check-config"]);
    assert_eq!(code, Some(2), "{stderr}");
    for expected in [
        "3 problems",
        "line 2: `monitor.execve`: expected a boolean",
        "line 3: `monitor.colour`: unknown key",
        "line 5: `output.stderr`: expected a boolean",
    ] {
        assert!(stderr.contains(expected), "`{expected}` not in:\n{stderr}");
    }
}

#[test]
fn a_missing_config_file_is_one_clear_error() {
    let (code, _, stderr) = owod(&["--config", "/nonexistent/owo.yaml", "--check-config"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("cannot read the config file `/nonexistent/owo.yaml`")
            && stderr.contains("No such file"),
        "{stderr}"
    );
}

#[test]
fn the_go_agents_shipped_config_is_checked_ok_with_a_warning_per_kept_key() {
    let go = format!(
        "{}/tests/data/go-agent-config.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let (code, stdout, stderr) = owod(&["-config", &go, "--check-config"]);
    assert_eq!(code, Some(0), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0].contains("warning: line 29: `output.remote.max_retries`"),
        "{stdout}"
    );
    assert!(
        lines[1].ends_with(
            "warning: line 30: `output.remote.retry_interval`: read for the Go agent's configs: \
             use `output.remote.retry_interval_seconds`"
        ),
        "{stdout}"
    );
    assert!(
        lines[2].ends_with(": ok; records go to /var/log/edr/alerts.jsonl"),
        "{stdout}"
    );
}

/// Without `--config`, owod reads /etc/owo/config.yaml, and runs on its defaults when there is
/// none. A private mount namespace hides this machine's /etc/owo, if it has one (root only).
#[test]
fn without_a_config_file_owod_runs_on_the_defaults_and_says_so() {
    let owod = env!("CARGO_BIN_EXE_owod");
    let out = if Path::new("/etc/owo").exists() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: /etc/owo exists here, and only root can hide it");
            return;
        }
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(r#"mount -t tmpfs none /etc/owo && exec "$0" --check-config"#)
            .arg(owod)
            .output()
    } else {
        Command::new(owod).arg("--check-config").output()
    }
    .expect("run owod");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.trim(),
        "no config file at /etc/owo/config.yaml: the built-in defaults: ok; records go to \
         /var/log/edr/alerts.jsonl"
    );
}
