//! Real eBPF: execute, exit and kill real processes and check the records owod writes.

mod harness;

use std::{
    ffi::OsStr,
    os::unix::{ffi::OsStrExt, fs::PermissionsExt},
    process::Command,
};

use harness::{bpf_available, event, marker, Daemon};
use serde_json::{json, Value};

fn script(dir: &std::path::Path, name: &str, body: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn exec_of_a_script_with_awkward_arguments_is_exact() {
    if !bpf_available("exec_of_a_script_with_awkward_arguments_is_exact") {
        return;
    }
    let mut daemon = Daemon::start("");
    let dir = tempfile::tempdir().unwrap();
    let path = script(
        dir.path(),
        &format!("{} with space.sh", marker("exec")),
        "exit 0",
    );
    let path_str = path.to_str().unwrap();

    // Valid UTF-8 but everything a shell or a JSON writer could trip on.
    let clean = [
        "a b",
        "quote\"s'",
        "new\nline",
        "",
        "tab\tand\u{1b}[31mesc",
        "back\\slash",
        "é✓",
    ];
    let status = Command::new(&path)
        .args(clean)
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    // Not UTF-8: escaped by the documented scheme, flagged, lossless.
    let raw: [&[u8]; 3] = [b"\xff\xfe", b"ok\\x41", b"caf\xc3\xa9\x80"];
    let status = Command::new(&path)
        .args(raw.map(OsStr::from_bytes))
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert!(status.success());

    let found = daemon.wait_for_n("both execs of the script", 2, |r| {
        event(r)["event_type"] == "execve" && event(r)["path"] == path_str
    });
    assert_eq!(
        found.len(),
        2,
        "exactly one execve record per exec: {found:#?}"
    );
    let sh = std::fs::canonicalize("/bin/sh").unwrap();
    let me = std::env::current_exe().unwrap();
    for r in &found {
        let e = event(r);
        assert_eq!(e["ppid"], std::process::id(), "{e}");
        assert_eq!(
            e["exe"],
            sh.to_str().unwrap(),
            "a script runs its interpreter: {e}"
        );
        assert_eq!(e["cwd"], dir.path().to_str().unwrap());
        assert_eq!(e["parent_path"], me.to_str().unwrap());
        assert!(
            e["parent_cmdline"]
                .as_str()
                .unwrap()
                .starts_with(me.to_str().unwrap()),
            "{e}"
        );
        assert_eq!(e["uid"], 0);
        for field in ["pid", "tid", "gid", "comm"] {
            assert!(!e[field].is_null(), "{field} missing: {e}");
        }
        // The hash is the interpreter's (what ran), as sha256sum computes it; no terminal here.
        let sum = Command::new("sha256sum").arg(&sh).output().unwrap().stdout;
        let sum = String::from_utf8(sum).unwrap();
        assert_eq!(e["sha256"], sum.split_whitespace().next().unwrap(), "{e}");
        assert_eq!(e["is_tty"], false, "{e}");
    }
    // The kernel runs a script as its interpreter with the script's path first, and that is the
    // argv of the new image (auditd and /proc/PID/cmdline show the same).
    let mut expected: Vec<Value> = vec![json!("/bin/sh"), json!(path_str)];
    expected.extend(clean.iter().map(|a| json!(a)));
    assert_eq!(event(&found[0])["args"], Value::Array(expected));
    assert!(event(&found[0]).get("args_escaped").is_none());
    assert_eq!(
        event(&found[0])["cmdline"],
        format!("/bin/sh {path_str} {}", clean.join(" "))
    );

    let e = event(&found[1]);
    assert_eq!(
        e["args"],
        json!([
            "/bin/sh",
            path_str.replace('\\', "\\\\"),
            "\\xff\\xfe",
            "ok\\\\x41",
            "café\\x80"
        ])
    );
    assert_eq!(e["args_escaped"], true);
    assert!(e.get("args_truncated").is_none());
}

#[test]
fn over_long_argv_is_truncated_explicitly_and_lines_stay_small() {
    if !bpf_available("over_long_argv_is_truncated_explicitly_and_lines_stay_small") {
        return;
    }
    let mut daemon = Daemon::start("");
    let dir = tempfile::tempdir().unwrap();
    let path = script(dir.path(), &marker("longargv"), "exit 0");
    // 400 KiB of control characters: each costs 6 bytes once in JSON.
    let args: Vec<String> = (0..400)
        .map(|i| format!("{i}:{}", "\u{1}".repeat(1024)))
        .collect();
    assert!(Command::new(&path).args(&args).status().unwrap().success());
    let r = daemon.wait_for("the long exec", |r| {
        event(r)["event_type"] == "execve" && event(r)["path"] == path.to_str().unwrap()
    });
    let e = event(&r);
    assert_eq!(e["args_truncated"], true);
    assert_eq!(e["cmdline_truncated"], true);
    let got = e["args"].as_array().unwrap();
    assert!(
        got.len() > 3 && got.len() < args.len(),
        "{} args kept",
        got.len()
    );
    assert!(
        got[2] == args[0].as_str() && got[3] == args[1].as_str(),
        "the first arguments are intact"
    );
    let line = serde_json::to_string(&r).unwrap();
    assert!(line.len() <= 64 * 1024, "{} bytes", line.len());
}

#[test]
fn exit_code_and_killing_signal_are_reported() {
    if !bpf_available("exit_code_and_killing_signal_are_reported") {
        return;
    }
    let mut daemon = Daemon::start("");
    let tag = marker("exit3");
    let status = Command::new("sh")
        .args(["-c", "exit 3", &tag])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(3));
    let exec = daemon.wait_for("sh -c 'exit 3'", |r| {
        event(r)["event_type"] == "execve" && event(r)["args"][3] == tag.as_str()
    });
    let pid = event(&exec)["pid"].clone();
    let exit = daemon.wait_for("its exit", |r| {
        event(r)["event_type"] == "exit" && event(r)["pid"] == pid
    });
    assert_eq!(event(&exit)["exit_code"], 3, "{exit}");
    assert!(event(&exit).get("signal").is_none(), "{exit}");
    assert_eq!(event(&exit)["ppid"], std::process::id());
    assert_eq!(
        event(&exit)["exe"],
        std::fs::canonicalize("/bin/sh").unwrap().to_str().unwrap()
    );

    let mut child = Command::new("sleep").arg("1000").spawn().unwrap();
    let pid = child.id();
    daemon.wait_for("sleep 1000", |r| {
        event(r)["event_type"] == "execve" && event(r)["pid"] == pid
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let exit = daemon.wait_for("the killed sleep", |r| {
        event(r)["event_type"] == "exit" && event(r)["pid"] == pid
    });
    assert_eq!(event(&exit)["signal"], 9, "{exit}");
    assert_eq!(event(&exit)["comm"], "sleep");
}

#[test]
fn threads_exiting_do_not_make_exit_records() {
    if !bpf_available("threads_exiting_do_not_make_exit_records") {
        return;
    }
    let mut daemon = Daemon::start("");
    let tag = marker("threads");
    // Python starts four threads that never finish and exits 7 while they still run, from a
    // worker thread: the kernel ends them all. One exit record, with code 7.
    let code = format!("import os,threading,time\nev=threading.Event()\nts=[threading.Thread(target=ev.wait) for _ in range(4)]\n[t.start() for t in ts]\nthreading.Thread(target=lambda: os._exit(7)).start()\ntime.sleep(60) # {tag}");
    let status = Command::new("python3")
        .args(["-c", &code])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(7));
    let exec = daemon.wait_for("python", |r| {
        event(r)["event_type"] == "execve"
            && event(r)["cmdline"]
                .as_str()
                .is_some_and(|c| c.contains(&tag))
    });
    let pid = event(&exec)["pid"].clone();
    let exit = daemon.wait_for("its exit", |r| {
        event(r)["event_type"] == "exit" && event(r)["pid"] == pid
    });
    assert_eq!(event(&exit)["exit_code"], 7);
    daemon.barrier();
    // python3 may be a launcher that execs the real interpreter: the exit names the last image.
    let last_exec = daemon
        .records()
        .into_iter()
        .rfind(|r| event(r)["event_type"] == "execve" && event(r)["pid"] == pid)
        .unwrap();
    assert_eq!(
        event(&exit)["exe"],
        event(&last_exec)["exe"],
        "the exit names the process's own image"
    );
    let exits = daemon
        .records()
        .into_iter()
        .filter(|r| event(r)["event_type"] == "exit" && event(r)["pid"] == pid)
        .count();
    assert_eq!(exits, 1, "one exit record for a process with threads");
}

#[test]
fn seq_is_contiguous_and_sigterm_leaves_no_program_loaded() {
    if !bpf_available("seq_is_contiguous_and_sigterm_leaves_no_program_loaded") {
        return;
    }
    let mut daemon = Daemon::start("");
    let ids = daemon.program_ids();
    assert!(
        ids.len() >= 3,
        "at least the exec, exit and fork programs: {ids:?}"
    );
    let loaded: Vec<u32> = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .map(|p| p.id())
        .collect();
    assert!(
        ids.iter().all(|id| loaded.contains(id)),
        "{ids:?} loaded while running"
    );

    let tag = marker("seq");
    for _ in 0..20 {
        Command::new("true").arg(&tag).status().unwrap();
    }
    daemon.wait_for_n("20 marked execs", 20, |r| {
        event(r)["args"][1] == tag.as_str()
    });
    let status = daemon.stop();
    assert!(
        status.success(),
        "owod exits 0 on SIGTERM: {status}; log:\n{}",
        daemon.log()
    );

    let records = daemon.records();
    let run_id = &records[0]["run_id"];
    for (i, r) in records.iter().enumerate() {
        assert_eq!(
            r["seq"],
            i as u64 + 1,
            "seq has a gap or a repeat at line {}",
            i + 1
        );
        assert_eq!(&r["run_id"], run_id);
        for key in ["agent_name", "agent_hostname", "agent_group", "timestamp"] {
            assert!(r.get(key).is_some(), "{key} missing: {r}");
        }
    }
    assert_eq!(event(&records[0])["type"], "start");
    let last = event(records.last().unwrap());
    assert_eq!(
        (last["event_type"].as_str(), last["type"].as_str()),
        (Some("agent"), Some("stop"))
    );

    // The kernel frees a program once its last reference goes, which for a perf-event attachment
    // is after an RCU grace period: wait for that, with a deadline.
    let deadline = std::time::Instant::now() + harness::DEADLINE;
    loop {
        let loaded: Vec<u32> = aya::programs::loaded_programs()
            .filter_map(Result::ok)
            .map(|p| p.id())
            .collect();
        let leaked: Vec<&u32> = ids.iter().filter(|id| loaded.contains(id)).collect();
        if leaked.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "programs {leaked:?} still loaded after owod stopped"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // The output file is private to root and its group.
    let mode = std::fs::metadata(&daemon.output)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o640);
}

#[test]
fn a_monitor_switched_off_sends_nothing_but_the_table_still_knows() {
    if !bpf_available("a_monitor_switched_off_sends_nothing_but_the_table_still_knows") {
        return;
    }
    let mut daemon = Daemon::start("monitor:\n  execve: false\n");
    assert_eq!(daemon.start["event"]["monitors"]["execve"], "off");
    let tag = marker("off");
    let status = Command::new("sh")
        .args(["-c", "exit 4", &tag])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(4));
    // Exits are on; the exit comes after the exec, so once it is here the exec would be too.
    let exit = daemon.wait_for("the exit", |r| {
        event(r)["event_type"] == "exit"
            && event(r)["exit_code"] == 4
            && event(r)["ppid"] == std::process::id()
    });
    assert!(
        !daemon
            .records()
            .iter()
            .any(|r| event(r)["event_type"] == "execve"),
        "execve is off, yet an execve record was written"
    );
    // The exec still reached the process table: the exit names the new image, not the test's.
    assert_eq!(
        event(&exit)["exe"],
        std::fs::canonicalize("/bin/sh").unwrap().to_str().unwrap()
    );
}

/// Exec and exit travel in the process lane, the connect in the activity lane: the records come
/// out in the order the kernel saw them all the same, and each lane's record is the process's
/// own (its exe, from the table, is the one the exec made).
#[test]
fn an_exec_its_connect_and_its_exit_keep_their_order_across_lanes() {
    if !bpf_available("an_exec_its_connect_and_its_exit_keep_their_order_across_lanes") {
        return;
    }
    let mut daemon = Daemon::start("");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    for round in 0..20 {
        let tag = marker(&format!("order-{round}"));
        let child = Command::new("/usr/bin/python3")
            .args([
                "-c",
                &format!("import socket; socket.create_connection(('127.0.0.1', {port}))"),
                &tag,
            ])
            .spawn()
            .unwrap();
        let pid = child.id();
        let status = { child }.wait().unwrap();
        assert!(status.success());
        listener.accept().unwrap();
        let exit = daemon.wait_for("the exit", |r| {
            event(r)["event_type"] == "exit" && event(r)["pid"] == pid
        });
        let records = daemon.records();
        let seq_of = |what: &str, pred: &dyn Fn(&Value) -> bool| -> u64 {
            let found: Vec<&Value> = records.iter().filter(|r| pred(event(r))).collect();
            assert_eq!(found.len(), 1, "one {what} of pid {pid}: {found:#?}");
            found[0]["seq"].as_u64().unwrap()
        };
        let exec = seq_of("exec", &|e| e["event_type"] == "execve" && e["pid"] == pid);
        let connect = seq_of("connect", &|e| {
            e["event_type"] == "network" && e["type"] == "connect" && e["pid"] == pid
        });
        let connect_record = records.iter().find(|r| r["seq"] == connect).unwrap();
        assert!(
            event(connect_record)["exe"]
                .as_str()
                .is_some_and(|exe| exe.contains("python3")),
            "the connect is python's, as the exec before it made it: {connect_record}"
        );
        assert!(
            exec < connect && connect < exit["seq"].as_u64().unwrap(),
            "round {round}: exec {exec}, connect {connect}, exit {}",
            exit["seq"]
        );
    }
}

#[test]
fn every_thread_keeps_only_the_capabilities_owod_needs() {
    if !bpf_available("every_thread_keeps_only_the_capabilities_owod_needs") {
        return;
    }
    let daemon = Daemon::start("");
    const CAP_DAC_OVERRIDE: u32 = 1;
    const CAP_KILL: u32 = 5;
    const CAP_SETUID: u32 = 7;
    const CAP_NET_RAW: u32 = 13;
    const CAP_SYS_MODULE: u32 = 16;
    const CAP_BPF: u32 = 39;
    let tasks = std::fs::read_dir(format!("/proc/{}/task", daemon.child.id())).unwrap();
    let mut threads = 0;
    for task in tasks {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        let set = |name: &str| {
            let hex = status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or_else(|| panic!("no {name} in\n{status}"));
            u64::from_str_radix(hex.trim(), 16).unwrap()
        };
        for name in ["CapEff:", "CapPrm:", "CapBnd:"] {
            let caps = set(name);
            for gone in [
                CAP_DAC_OVERRIDE,
                CAP_KILL,
                CAP_SETUID,
                CAP_NET_RAW,
                CAP_SYS_MODULE,
            ] {
                assert_eq!(
                    caps & (1 << gone),
                    0,
                    "capability {gone} in {name} {caps:x}"
                );
            }
            assert_ne!(caps & (1 << CAP_BPF), 0, "no CAP_BPF in {name} {caps:x}");
        }
        assert_eq!((set("CapInh:"), set("CapAmb:")), (0, 0));
        threads += 1;
    }
    assert!(threads > 2, "only {threads} threads looked at");
}
