//! Real: owod with real eBPF on a private `dbus-daemon` that includes the repo's policy file,
//! driven by the real owoctl, as root and as an unprivileged user; sd_notify datagrams read
//! from a socket the test binds; a real logrotate run with the contrib config.

#[path = "../../owod/tests/harness/mod.rs"]
mod harness;

use std::{
    fs,
    os::unix::net::UnixDatagram,
    path::Path,
    process::{Command, Output},
    time::{Duration, Instant},
};

use harness::{
    bpf_available, bus::PrivateBus, event, marker, wait_until, Daemon, Options, DEADLINE,
};
use serde_json::Value;

fn on_bus(bus: &PrivateBus, extra: &str) -> Daemon {
    Daemon::start_with(
        extra,
        Options {
            args: vec!["--dbus-address".into(), bus.address.clone()],
            env: Vec::new(),
        },
    )
}

/// owoctl as root.
fn owoctl(bus: &PrivateBus, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_owoctl"))
        .arg("--dbus-address")
        .arg(&bus.address)
        .args(args)
        .output()
        .unwrap()
}

/// owoctl as nobody (uid and gid 65534, no groups).
fn owoctl_as_nobody(bus: &PrivateBus, args: &[&str]) -> Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_owoctl"))
        .arg("--dbus-address")
        .arg(&bus.address)
        .args(args)
        .output()
        .unwrap()
}

/// `owoctl status --json`, which must succeed.
fn status_json(bus: &PrivateBus) -> Value {
    serde_json::from_str(&ok(&owoctl(bus, &["status", "--json"]), "status --json")).unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Wait until the owod name is on the bus (the start record comes before the name is owned).
fn wait_for_name(bus: &PrivateBus) {
    wait_until("owod to own its name on the bus", || {
        owoctl(bus, &["monitors"]).status.success()
    });
}

/// Programs loaded in the kernel now, by id (from the fdinfo of every fd that holds one).
fn loaded_programs() -> Vec<u32> {
    let mut ids = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(fds) = fs::read_dir(entry.path().join("fdinfo")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(info) = fs::read_to_string(fd.path()) {
                ids.extend(
                    info.lines()
                        .filter_map(|l| l.strip_prefix("prog_id:"))
                        .filter_map(|v| v.trim().parse::<u32>().ok()),
                );
            }
        }
    }
    ids
}

/// The BPF links (attached programs) that a process holds.
fn links_of(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap()
        .flatten()
        .filter(|fd| fs::read_to_string(fd.path()).is_ok_and(|info| info.contains("link_type:")))
        .count()
}

#[test]
fn root_drives_every_command_and_switching_a_monitor_reloads_nothing() {
    if !bpf_available("root_drives_every_command_and_switching_a_monitor_reloads_nothing") {
        return;
    }
    let bus = PrivateBus::start();
    let mut daemon = on_bus(&bus, "");
    wait_for_name(&bus);
    let status = ok(&owoctl(&bus, &["status"]), "status");
    assert!(
        status.contains("monitor execve") && status.contains("records"),
        "{status}"
    );
    let json: Value = status_json(&bus);
    assert_eq!(json["pid"], daemon.child.id());
    assert_eq!(json["monitors"]["execve"]["on"], true);
    // What was chosen for this kernel, as the start record has it.
    let start = &daemon.start["event"];
    for key in ["kernel", "bpf_loops", "bpf_object"] {
        assert_eq!(json[key], start[key], "{key}: {json}");
    }
    let kernel_row = format!(
        "kernel {} (eBPF object: built-in, with {})",
        start["kernel"].as_str().unwrap(),
        start["bpf_loops"].as_str().unwrap()
    );
    assert!(
        status
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .contains(&kernel_row),
        "{kernel_row:?} in\n{status}"
    );
    assert!(ok(&owoctl(&bus, &["monitors"]), "monitors").contains("execve"));

    // Off: execs stop at once; on: they come back. No program is reloaded.
    let ids = daemon.program_ids();
    ok(&owoctl(&bus, &["disable", "execve"]), "disable execve");
    let quiet = marker("while-off");
    Command::new("true").arg(&quiet).status().unwrap();
    ok(&owoctl(&bus, &["enable", "execve"]), "enable execve");
    let loud = marker("after-on");
    Command::new("true").arg(&loud).status().unwrap();
    daemon.wait_for("the exec after enabling", |r| {
        event(r)["args"][1] == loud.as_str()
    });
    assert!(
        !daemon
            .records()
            .iter()
            .any(|r| event(r)["event_type"] == "execve" && event(r)["args"][1] == quiet.as_str()),
        "an exec while execve was off was recorded"
    );
    // An activity monitor that is off costs no syscall anything: its programs (write and
    // close) are detached until it is switched on.
    let links = links_of(daemon.child.id());
    ok(&owoctl(&bus, &["enable", "write"]), "enable write");
    assert_eq!(
        links_of(daemon.child.id()),
        links + 2,
        "write's two programs attached"
    );
    ok(&owoctl(&bus, &["disable", "write"]), "disable write");
    assert_eq!(links_of(daemon.child.id()), links, "and detached again");
    let loaded = loaded_programs();
    assert!(
        ids.iter().all(|id| loaded.contains(id)),
        "the same programs stay loaded: {ids:?}"
    );

    let tree = ok(&owoctl(&bus, &["tree"]), "tree");
    assert!(
        tree.starts_with("PID\tPPID\tUID\tCOMM\tCOMMAND\n"),
        "{tree}"
    );
    let me = std::process::id();
    let mine: Value = serde_json::from_str(&ok(
        &owoctl(&bus, &["tree", "--pid", &me.to_string(), "--json"]),
        "tree --json",
    ))
    .unwrap();
    assert_eq!(mine["processes"][0]["pid"], me);
    // On a terminal (script(1) gives it one), the tree is drawn: a shell and, under it, its sleep.
    let mark = marker("tree");
    let mut shell = Command::new("sh")
        .args(["-c", "sleep 30; true \"$0\"", &mark])
        .spawn()
        .unwrap();
    let sleep = daemon.wait_for("the shell's sleep", |r| {
        event(r)["event_type"] == "execve" && event(r)["ppid"] == shell.id()
    });
    let command = format!(
        "{} --dbus-address {} tree --pid {}",
        env!("CARGO_BIN_EXE_owoctl"),
        bus.address,
        shell.id()
    );
    let drawn = ok(
        &Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .output()
            .expect("script (util-linux)"),
        "tree on a terminal",
    )
    .replace('\r', "");
    let _ = shell.kill();
    let _ = shell.wait();
    assert!(
        drawn.starts_with(&format!(
            "{} sh (uid 0) sh -c sleep 30; true \"$0\" {mark}\n",
            shell.id()
        )),
        "{drawn}"
    );
    assert!(
        drawn.contains(&format!(
            "\n└─ {} sleep (uid 0) sleep 30\n",
            event(&sleep)["pid"]
        )),
        "{drawn}"
    );
    ok(&owoctl(&bus, &["reopen"]), "reopen");
    ok(&owoctl(&bus, &["reload"]), "reload");
    let bad = owoctl(&bus, &["disable", "nonsense"]);
    assert_eq!(
        bad.status.code(),
        Some(5),
        "unknown monitor: {}",
        text(&bad.stderr)
    );
    let completions = ok(&owoctl(&bus, &["completions", "bash"]), "completions");
    assert!(completions.contains("owoctl"));
}

#[test]
fn status_counts_what_the_bounds_cost() {
    if !bpf_available("status_counts_what_the_bounds_cost") {
        return;
    }
    // A process table of 64 entries, and more processes than that alive.
    let bus = PrivateBus::start();
    let mut daemon = on_bus(&bus, "enrich:\n  process_table_max: 64\n");
    wait_for_name(&bus);
    let mut sleepers: Vec<_> = (0..100)
        .map(|_| Command::new("sleep").arg("30").spawn().unwrap())
        .collect();
    daemon.barrier();
    let evictions = || -> u64 {
        let status: Value = status_json(&bus);
        for key in [
            "alert_signals_dropped",
            "write_path_resets",
            "process_table_evictions",
            "rule_chains_evicted",
        ] {
            assert!(status["counters"][key].is_u64(), "{key} in {status}");
        }
        status["counters"]["process_table_evictions"]
            .as_u64()
            .unwrap()
    };
    wait_until("the evictions to show in status", || evictions() > 0);
    let text = ok(&owoctl(&bus, &["status"]), "status");
    assert!(text.contains("process table evictions"), "{text}");
    for s in &mut sleepers {
        let _ = s.kill();
        let _ = s.wait();
    }
}

#[test]
fn an_unprivileged_user_may_look_but_not_touch() {
    if !bpf_available("an_unprivileged_user_may_look_but_not_touch") {
        return;
    }
    let bus = PrivateBus::start();
    let _daemon = on_bus(&bus, "");
    wait_for_name(&bus);
    ok(&owoctl_as_nobody(&bus, &["status"]), "status as nobody");
    ok(&owoctl_as_nobody(&bus, &["monitors"]), "monitors as nobody");
    for args in [
        &["disable", "execve"][..],
        &["reload"],
        &["reopen"],
        &["tree"],
    ] {
        let out = owoctl_as_nobody(&bus, args);
        assert_eq!(
            out.status.code(),
            Some(4),
            "{args:?} as nobody: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains("access denied"),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let status: Value = status_json(&bus);
    assert_eq!(status["monitors"]["execve"]["on"], true, "still on");
}

#[test]
fn owod_checks_the_callers_uid_even_when_the_policy_allows_all() {
    if !bpf_available("owod_checks_the_callers_uid_even_when_the_policy_allows_all") {
        return;
    }
    let bus = PrivateBus::permissive();
    let daemon = on_bus(&bus, "");
    wait_for_name(&bus);
    let out = owoctl_as_nobody(&bus, &["disable", "execve"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let status: Value = status_json(&bus);
    assert_eq!(status["monitors"]["execve"]["on"], true, "still on");
    assert!(
        daemon.log().contains("refused D-Bus call") && daemon.log().contains("uid 65534"),
        "logged: {}",
        daemon.log()
    );
    // The refusal is logged with the caller's monitor name, which cannot forge a line of its own.
    let forged = marker("FORGED");
    let name = format!("execve\n{forged} D-Bus call `Reload` from uid 0");
    assert_eq!(
        owoctl_as_nobody(&bus, &["disable", &name]).status.code(),
        Some(4)
    );
    let log = daemon.log();
    assert!(log.contains(&forged), "the refusal is logged:\n{log}");
    assert!(
        !log.lines().any(|l| l.starts_with(&forged)),
        "a line of the log starts with the caller's text:\n{log}"
    );
}

#[test]
fn a_broken_reload_changes_nothing_and_a_good_one_applies_with_seq_going_on() {
    if !bpf_available("a_broken_reload_changes_nothing_and_a_good_one_applies_with_seq_going_on") {
        return;
    }
    let bus = PrivateBus::start();
    let mut daemon = on_bus(&bus, "agent:\n  group: before\n");
    wait_for_name(&bus);
    let good = fs::read_to_string(&daemon.config).unwrap();
    fs::write(
        &daemon.config,
        format!("{good}monitor:\n  execve: sometimes\n"),
    )
    .unwrap();
    let out = owoctl(&bus, &["reload"]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("`monitor.execve`") && text(&out.stderr).contains("line"),
        "{}",
        text(&out.stderr)
    );
    let first = marker("still-running");
    Command::new("true").arg(&first).status().unwrap();
    let r = daemon.wait_for("an exec after the broken reload", |r| {
        event(r)["args"][1] == first.as_str()
    });
    assert_eq!(r["agent_group"], "before");

    fs::write(
        &daemon.config,
        good.replace("group: before", "group: after"),
    )
    .unwrap();
    ok(&owoctl(&bus, &["reload"]), "reload");
    let second = marker("after-reload");
    Command::new("true").arg(&second).status().unwrap();
    let r = daemon.wait_for("an exec after the reload", |r| {
        event(r)["args"][1] == second.as_str()
    });
    assert_eq!(r["agent_group"], "after");
    assert!(daemon.stop().success());
    let records = daemon.records();
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r["seq"], i as u64 + 1, "seq continues across the reloads");
    }
    assert!(
        records.iter().any(|r| event(r)["type"] == "reload"),
        "a reload record"
    );
}

#[test]
fn logrotate_with_the_contrib_config_loses_and_repeats_nothing() {
    if !bpf_available("logrotate_with_the_contrib_config_loses_and_repeats_nothing") {
        return;
    }
    let bus = PrivateBus::start();
    let mut daemon = on_bus(&bus, "");
    wait_for_name(&bus);
    rotate_and_account(&mut daemon, &bus.address, Reopen::Bus);
}

#[test]
fn logrotate_with_no_bus_to_reopen_on_signals_and_loses_and_repeats_nothing() {
    if !bpf_available("logrotate_with_no_bus_to_reopen_on_signals_and_loses_and_repeats_nothing") {
        return;
    }
    // owod runs without a bus, so the config's `owoctl reopen` fails and SIGUSR2 goes instead.
    rotate_without_a_bus(Reopen::Signal);
}

#[test]
fn logrotate_with_no_way_to_reopen_loses_and_repeats_nothing() {
    if !bpf_available("logrotate_with_no_way_to_reopen_loses_and_repeats_nothing") {
        return;
    }
    // Neither the bus nor the signal reaches owod: it must notice by itself that its file was
    // renamed.
    rotate_without_a_bus(Reopen::Nothing);
}

/// [`rotate_and_account`] for an owod with no bus, `owoctl reopen` pointed at a bus that is not.
fn rotate_without_a_bus(reopen: Reopen) {
    let mut daemon = Daemon::start("");
    let nowhere = format!("unix:path={}", daemon.dir.path().join("no-bus").display());
    rotate_and_account(&mut daemon, &nowhere, reopen);
}

/// What tells owod to reopen after the contrib config's rotation.
#[derive(Clone, Copy, PartialEq)]
enum Reopen {
    /// `owoctl reopen`, over the bus.
    Bus,
    /// The fallback, SIGUSR2, sent to this test's owod (not to every owod on the machine).
    Signal,
    /// Nothing reaches owod, and logrotate fails.
    Nothing,
}

/// Rotate the daemon's output with the contrib logrotate config (its `owoctl reopen` sent to
/// `bus`), with execs before and after; then every `seq` is in the rotated file or the new one,
/// once, in order.
fn rotate_and_account(daemon: &mut Daemon, bus: &str, reopen: Reopen) {
    let contrib =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/owo.logrotate"))
            .unwrap();
    // The same config, pointed at this test's file and its bus, and its signal at this daemon
    // alone.
    for what in [
        "/var/log/edr/alerts.jsonl",
        "/usr/bin/owoctl reopen",
        "/usr/bin/pkill -USR2 -x owod",
    ] {
        assert!(contrib.contains(what), "the contrib config has no `{what}`");
    }
    let config = contrib
        .replace("/var/log/edr/alerts.jsonl", daemon.output.to_str().unwrap())
        .replace(
            "/usr/bin/owoctl reopen",
            &format!(
                "{} --dbus-address {bus} reopen",
                env!("CARGO_BIN_EXE_owoctl"),
            ),
        )
        .replace(
            "/usr/bin/pkill -USR2 -x owod",
            &match reopen {
                Reopen::Signal => format!("kill -USR2 {}", daemon.child.id()),
                Reopen::Bus | Reopen::Nothing => "false".to_owned(),
            },
        );
    assert!(
        !config
            .lines()
            .any(|l| !l.trim_start().starts_with('#') && l.contains("copytruncate")),
        "copytruncate loses the lines written between the copy and the truncation"
    );
    let conf = daemon.dir.path().join("logrotate.conf");
    fs::write(&conf, config).unwrap();
    for _ in 0..50 {
        Command::new("true")
            .arg(marker("before-rotation"))
            .status()
            .unwrap();
    }
    let state = daemon.dir.path().join("logrotate.state");
    let out = Command::new("logrotate")
        .arg("-f")
        .arg("-s")
        .arg(&state)
        .arg(&conf)
        .output()
        .expect("logrotate (apt-get install logrotate)");
    assert_eq!(
        out.status.success(),
        reopen != Reopen::Nothing,
        "logrotate: {}",
        text(&out.stderr)
    );
    if reopen != Reopen::Nothing {
        daemon.wait_log("outputs reopened");
    }
    for _ in 0..50 {
        Command::new("true")
            .arg(marker("after-rotation"))
            .status()
            .unwrap();
    }
    // Without a reopen, owod finds its file renamed within a second.
    wait_until("a record in the new file", || {
        Command::new("true").arg(marker("follow")).status().unwrap();
        fs::metadata(&daemon.output).is_ok_and(|m| m.len() > 0)
    });
    daemon.barrier();
    if reopen == Reopen::Nothing {
        daemon.wait_log("was moved or removed; writing to a new file there");
    }
    assert!(daemon.stop().success());
    let rotated = daemon.output.with_extension("jsonl.1");
    let (mut seqs, old_cut) = seqs_of(&rotated);
    let (new, new_cut) = seqs_of(&daemon.output);
    assert!(!old_cut && !new_cut, "a line cut short");
    assert!(!new.is_empty(), "owod writes to the new file");
    seqs.extend(new);
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(
        seqs,
        expected,
        "seq across {} and the new file",
        rotated.display()
    );
}

/// The seqs of a file of records, in order, and whether its last line was cut short (then it is
/// not counted: it holds no whole record).
fn seqs_of(path: &Path) -> (Vec<u64>, bool) {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(!text.contains('\0'), "{}: a hole of zeros", path.display());
    let cut = !text.is_empty() && !text.ends_with('\n');
    let whole = if cut {
        &text[..text.rfind('\n').map_or(0, |i| i + 1)]
    } else {
        &text[..]
    };
    let seqs = whole
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"))["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    (seqs, cut)
}

#[test]
fn sighup_and_sigusr2_reopen_a_renamed_output_without_the_bus() {
    if !bpf_available("sighup_and_sigusr2_reopen_a_renamed_output_without_the_bus") {
        return;
    }
    let mut daemon = Daemon::start("");
    let pid = nix::unistd::Pid::from_raw(daemon.child.id() as i32);
    let mut files = Vec::new();
    for (i, signal) in [
        nix::sys::signal::Signal::SIGUSR2,
        nix::sys::signal::Signal::SIGHUP,
    ]
    .into_iter()
    .enumerate()
    {
        daemon.barrier();
        let renamed = daemon.output.with_extension(format!("jsonl.{i}"));
        fs::rename(&daemon.output, &renamed).unwrap();
        files.push(renamed);
        let reopens = daemon.log().matches("outputs reopened").count();
        nix::sys::signal::kill(pid, signal).unwrap();
        wait_until("owod reopens its output", || {
            daemon.log().matches("outputs reopened").count() > reopens
        });
        assert!(daemon.output.exists(), "{signal}: a new file at the path");
    }
    daemon.barrier();
    assert!(daemon.stop().success());
    files.push(daemon.output.clone());
    let mut all = Vec::new();
    for file in &files {
        let (seqs, cut) = seqs_of(file);
        assert!(!cut, "{}: a line cut short", file.display());
        assert!(!seqs.is_empty(), "{}: no records", file.display());
        all.extend(seqs);
    }
    let expected: Vec<u64> = (1..=all.len() as u64).collect();
    assert_eq!(all, expected, "every seq once, in order, across {files:?}");
}

/// logrotate's copytruncate, which the contrib config never uses, loses what it must and no
/// more: the records whose lines were written between the copy and the truncation, which are
/// every seq between the copy's last whole line and the new file's first. owod appends, so after
/// the truncation it writes from the start, with no hole of zeros.
#[test]
fn copytruncate_loses_only_what_is_written_between_the_copy_and_the_truncation() {
    if !bpf_available("copytruncate_loses_only_what_is_written_between_the_copy_and_the_truncation")
    {
        return;
    }
    let mut daemon = Daemon::start("");
    let conf = daemon.dir.path().join("logrotate.conf");
    fs::write(
        &conf,
        format!(
            "{} {{\n    copytruncate\n    rotate 1\n}}\n",
            daemon.output.display()
        ),
    )
    .unwrap();
    for _ in 0..200 {
        Command::new("true").arg(marker("before")).status().unwrap();
    }
    // Records keep coming while logrotate copies and truncates.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let execs = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                Command::new("true").arg(marker("during")).status().unwrap();
            }
        })
    };
    let out = Command::new("logrotate")
        .arg("-f")
        .arg("-s")
        .arg(daemon.dir.path().join("logrotate.state"))
        .arg(&conf)
        .output()
        .expect("logrotate (apt-get install logrotate)");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    execs.join().unwrap();
    assert!(out.status.success(), "logrotate: {}", text(&out.stderr));
    daemon.barrier();
    assert!(daemon.stop().success());

    let (copied, copy_cut) = seqs_of(&daemon.output.with_extension("jsonl.1"));
    let (kept, kept_cut) = seqs_of(&daemon.output);
    assert!(!kept_cut, "owod's last line is whole");
    let runs = |seqs: &[u64]| seqs.windows(2).all(|w| w[1] == w[0] + 1);
    assert!(
        runs(&copied) && copied.first() == Some(&1),
        "the copy: 1 onward, no gap"
    );
    assert!(runs(&kept) && !kept.is_empty(), "the file after: no gap");
    let (last_copied, first_kept) = (*copied.last().unwrap(), kept[0]);
    assert!(first_kept > last_copied, "no record is in both");
    assert!(
        !fs::read_to_string(&daemon.output)
            .unwrap()
            .contains("\"type\":\"loss\""),
        "owod lost nothing it could see: copytruncate's loss is all outside it"
    );
    // What is lost is this one run, and only it.
    eprintln!(
        "copytruncate lost {} records (seq {}..{}); the copy's last line was {}",
        first_kept - last_copied - 1,
        last_copied + 1,
        first_kept,
        if copy_cut { "cut short" } else { "whole" }
    );
}

#[test]
fn systemd_hears_ready_status_watchdog_reloading_and_stopping_in_order() {
    if !bpf_available("systemd_hears_ready_status_watchdog_reloading_and_stopping_in_order") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut daemon = Daemon::start_with(
        "",
        Options {
            args: vec!["--no-dbus".into()],
            env: vec![
                ("NOTIFY_SOCKET".into(), socket_path.to_str().unwrap().into()),
                ("WATCHDOG_USEC".into(), "2000000".into()),
            ],
        },
    );
    let mut seen: Vec<String> = Vec::new();
    let mut next = |want: &str| -> String {
        let mut buf = [0u8; 4096];
        loop {
            let n = socket
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("no `{want}` from owod ({e}); so far: {seen:?}"));
            let msg = text(&buf[..n]);
            seen.push(msg.clone());
            if msg.lines().any(|l| l.starts_with(want)) {
                return msg;
            }
        }
    };
    let ready = next("READY=1");
    assert!(
        ready.contains("STATUS="),
        "READY comes with a STATUS: {ready:?}"
    );
    next("WATCHDOG=1");
    let pid = nix::unistd::Pid::from_raw(daemon.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    let reloading = next("RELOADING=1");
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading:?}");
    next("READY=1");
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    next("STOPPING=1");
    assert!(daemon.stop().success());
}

#[test]
fn systemd_accepts_the_unit_and_rates_it_well() {
    // Not eBPF, but it needs systemd-analyze, which .ci/run installs.
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var("OWO_REQUIRE_BPF").as_deref() != Ok("1"),
            "systemd-analyze is missing"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/owod.service"))
            .unwrap();
    // The unit as installed, with the binaries where this build has them.
    let unit = unit
        .replace("/usr/sbin/owod", harness::owod_bin().to_str().unwrap())
        .replace("/usr/bin/owoctl", env!("CARGO_BIN_EXE_owoctl"));
    // A bound on memory, should a bug defeat owod's own.
    assert!(
        unit.lines().any(|l| l.starts_with("MemoryMax=")),
        "MemoryMax= in the unit"
    );
    let path = dir.path().join("owod.service");
    fs::write(&path, unit).unwrap();
    // The man pages are in the repo, not installed here: do not look them up.
    let verify = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "systemd-analyze verify: {}",
        text(&verify.stderr)
    );
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&path)
        .output()
        .unwrap();
    let report = text(&security.stdout);
    let score: f64 = report
        .lines()
        .find_map(|l| l.split("Overall exposure level for owod.service:").nth(1))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no exposure level in:\n{report}\n{}",
                text(&security.stderr)
            )
        });
    assert!(score <= 3.0, "exposure {score} > 3.0:\n{report}");
}

#[test]
fn owoctl_alerts_prints_the_alert_signal() {
    if !bpf_available("owoctl_alerts_prints_the_alert_signal") {
        return;
    }
    use std::io::{BufRead, BufReader};
    let bus = PrivateBus::start();
    let mut daemon = on_bus(&bus, "");
    wait_for_name(&bus);
    let mut listener = Command::new(env!("CARGO_BIN_EXE_owoctl"))
        .arg("--dbus-address")
        .arg(&bus.address)
        .arg("alerts")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = BufReader::new(listener.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Subscribed only once the signal match is in place: repeat the alert until ours arrives
    // (other alerts on this machine may come too: ours names the exec of our arg0).
    let arg0 = marker("alerting");
    let deadline = Instant::now() + DEADLINE;
    let mut ours = None;
    while ours.is_none() {
        let code = format!(
            "import os\nfd = os.memfd_create('payload', 0)\nos.write(fd, open('/usr/bin/true', 'rb').read())\nos.execve(f'/proc/self/fd/{{fd}}', [{arg0:?}], {{}})"
        );
        assert!(Command::new("python3")
            .args(["-c", &code])
            .status()
            .unwrap()
            .success());
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
            let alert: Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            let execs: Vec<u64> = daemon
                .records()
                .iter()
                .filter(|r| {
                    event(r)["event_type"] == "execve" && event(r)["args"][0] == arg0.as_str()
                })
                .map(|r| r["seq"].as_u64().unwrap())
                .collect();
            let related = alert["related_seq"].as_array().cloned().unwrap_or_default();
            if alert["rule"] == "fileless_exec"
                && related
                    .iter()
                    .any(|s| execs.contains(&s.as_u64().unwrap_or(0)))
            {
                ours = Some(alert);
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no Alert signal for our exec reached owoctl alerts"
        );
    }
    let _ = listener.kill();
    let _ = listener.wait();
    let alert = ours.expect("the loop ends with our alert");
    assert_eq!(alert["event_type"], "behavior");
    let record = daemon.wait_for("the alert record", |r| {
        event(r)["rule"] == "fileless_exec" && event(r)["related_seq"] == alert["related_seq"]
    });
    assert_eq!(event(&record)["detail"], alert["detail"]);
}

#[test]
fn status_shows_a_remote_backing_off_and_why() {
    if !bpf_available("status_shows_a_remote_backing_off_and_why") {
        return;
    }
    let bus = PrivateBus::start();
    let dir = tempfile::tempdir().unwrap();
    // A collector nobody runs.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let remote = format!(
        "  remote:\n    enabled: true\n    protocol: http\n    address: \"127.0.0.1:{port}\"\n    retry_interval_seconds: 1\n    spool:\n      dir: {}\n",
        dir.path().join("spool").display()
    );
    let _daemon = on_bus(&bus, &remote);
    wait_for_name(&bus);
    let deadline = Instant::now() + DEADLINE;
    loop {
        let status: Value = status_json(&bus);
        let remote = status["sinks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "remote")
            .cloned()
            .expect("a remote sink");
        if remote["remote"]["state"] == "backing_off" {
            assert!(
                remote["remote"]["last_error"]
                    .as_str()
                    .unwrap()
                    .contains(&port.to_string()),
                "{remote}"
            );
            assert_eq!(remote["target"], format!("http://127.0.0.1:{port}"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the remote never showed as backing off: {remote}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let table = ok(&owoctl(&bus, &["status"]), "status");
    assert!(table.contains("backing_off"), "{table}");
}

/// `owoctl watch` started as a child, its stdout lines and its stderr read by threads; the
/// reading of stdout stops while `paused` is set.
struct Watch {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    stderr: std::thread::JoinHandle<String>,
    paused: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Watch {
    fn start(bus: &PrivateBus, args: &[&str]) -> Watch {
        use std::io::{BufRead, BufReader, Read};
        let mut child = Command::new(env!("CARGO_BIN_EXE_owoctl"))
            .arg("--dbus-address")
            .arg(&bus.address)
            .arg("watch")
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = std::sync::mpsc::channel();
        let paused = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let pause = paused.clone();
        std::thread::spawn(move || loop {
            while pause.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(10));
            }
            let mut line = String::new();
            match stdout.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if tx.send(line.trim_end_matches('\n').to_owned()).is_err() {
                        break;
                    }
                }
            }
        });
        let mut stderr = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Watch {
            child,
            lines,
            stderr,
            paused,
        }
    }

    fn pause(&self, paused: bool) {
        self.paused
            .store(paused, std::sync::atomic::Ordering::SeqCst);
    }

    /// Run `act` again and again until a line that `found` likes comes (the watch is live only
    /// once owod has answered `Watch`).
    fn until(&self, what: &str, act: impl Fn(), found: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            act();
            while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(300)) {
                if found(&line) {
                    return line;
                }
            }
            assert!(Instant::now() < deadline, "owoctl watch showed no {what}");
        }
    }
}

#[test]
fn owoctl_watch_shows_an_exec_as_it_happens_and_ends_with_owod() {
    if !bpf_available("owoctl_watch_shows_an_exec_as_it_happens_and_ends_with_owod") {
        return;
    }
    let bus = PrivateBus::start();
    let mut daemon = on_bus(&bus, "");
    wait_for_name(&bus);
    let tag = marker("watched");
    let run = || {
        assert!(Command::new("true").arg(&tag).status().unwrap().success());
    };
    // For people: one line, no colour into a pipe, with the command line.
    let plain = Watch::start(&bus, &["--monitor", "execve"]);
    let line = plain.until("exec", run, |l| l.contains(&tag));
    assert!(
        line.contains(" execve ")
            && line.contains(&format!("true {tag}"))
            && !line.contains('\u{1b}'),
        "{line}"
    );
    // For scripts: the records themselves, here of one process only.
    let json = Watch::start(&bus, &["--json", "--pid", &std::process::id().to_string()]);
    let mine = marker("mine");
    let file = std::env::temp_dir().join(&mine);
    let line = json.until(
        "file record of this process",
        || fs::write(&file, b"x").unwrap(),
        |l| l.contains(&mine),
    );
    let record: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event(&record)["pid"], std::process::id());
    assert_eq!(record["run_id"], daemon.start["run_id"]);
    let _ = fs::remove_file(&file);
    // Not for everyone: records carry command lines.
    let out = owoctl_as_nobody(&bus, &["watch"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let out = owoctl(&bus, &["watch", "--monitor", "bogus"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    // owod stops: every watch ends, with success (the slow-watcher test sees the stop record).
    assert!(daemon.stop().success());
    for mut watch in [plain, json] {
        let _rest: Vec<String> = watch.lines.iter().collect();
        assert!(watch.child.wait().unwrap().success());
    }
}

#[test]
fn a_watcher_that_does_not_read_costs_owod_no_record_and_is_told_what_it_missed() {
    if !bpf_available(
        "a_watcher_that_does_not_read_costs_owod_no_record_and_is_told_what_it_missed",
    ) {
        return;
    }
    let bus = PrivateBus::start();
    let dir = harness::watched_dir();
    let mut daemon = on_bus(&bus, "");
    wait_for_name(&bus);
    let watch = Watch::start(&bus, &["--json"]);
    let tag = marker("slow");
    let first = watch.until(
        "first exec",
        || assert!(Command::new("true").arg(&tag).status().unwrap().success()),
        |l| l.contains(&tag),
    );
    let first_seq = serde_json::from_str::<Value>(&first).unwrap()["seq"]
        .as_u64()
        .unwrap();
    // The watcher's reader stops: owoctl blocks on its full pipe, owod's socket and buffer fill.
    watch.pause(true);
    // Some 8 MB of file records: far more than the watcher's buffer.
    let path = dir.path().join(marker("flood"));
    harness::python(&format!(
        "import os\nfor i in range(20000):\n    os.close(os.open({:?}, os.O_CREAT | os.O_WRONLY, 0o600))",
        harness::s(&path)
    ));
    daemon.file_barrier(dir.path());
    watch.pause(false);
    // One more record after the flood, so that a notice of what was dropped precedes it.
    let last_tag = marker("after");
    assert!(Command::new("true")
        .arg(&last_tag)
        .status()
        .unwrap()
        .success());
    daemon.wait_for("the exec after the flood", |r| {
        event(r)["args"][1] == last_tag.as_str()
    });
    assert!(daemon.stop().success());
    let mut watch = watch;
    let rest: Vec<String> = watch.lines.iter().collect();
    assert!(watch.child.wait().unwrap().success());
    let told = watch.stderr.join().unwrap();
    // owod lost nothing: every seq in the file, no loss record.
    let records = daemon.records();
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert!(
        !records.iter().any(|r| event(r)["type"] == "loss"),
        "owod lost records for a slow watcher"
    );
    // The watcher got some records in order and was told how many it missed: together, every
    // record from its first to the stop record.
    let got: Vec<u64> = rest
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert!(got.windows(2).all(|w| w[0] < w[1]), "in order");
    let dropped: u64 = told
        .lines()
        .filter_map(|l| l.strip_prefix("owoctl: "))
        .filter_map(|l| l.split(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(dropped > 0, "nothing dropped, nothing told: {told}");
    let last_seq = *seqs.last().unwrap();
    assert_eq!(
        1 + got.len() as u64 + dropped,
        last_seq - first_seq + 1,
        "shown ({}) and told dropped ({dropped}) make every record from {first_seq} to {last_seq}",
        got.len() + 1
    );
}

#[test]
fn owoctl_top_renders_owods_real_status_and_alerts() {
    if !bpf_available("owoctl_top_renders_owods_real_status_and_alerts") {
        return;
    }
    let bus = PrivateBus::start();
    let spool = tempfile::tempdir().unwrap();
    // A remote that is never there: its records wait in the spool.
    let mut daemon = on_bus(
        &bus,
        &format!(
            "  remote:\n    enabled: true\n    address: \"127.0.0.1:9\"\n    spool:\n      dir: {}\n",
            spool.path().display()
        ),
    );
    wait_for_name(&bus);
    let pid = daemon.child.id();
    let deadline = Instant::now() + DEADLINE;
    let arg0 = marker("top");
    loop {
        // Execs during the second `top --once` measures, and one alert (a program run from
        // memory) once its subscription may be in place.
        let top = Command::new(env!("CARGO_BIN_EXE_owoctl"))
            .arg("--dbus-address")
            .arg(&bus.address)
            .args(["top", "--once"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        for _ in 0..20 {
            assert!(Command::new("true").status().unwrap().success());
        }
        harness::python(&format!(
            "import os\nfd = os.memfd_create('payload', 0)\nos.write(fd, open('/usr/bin/true', 'rb').read())\nos.execve(f'/proc/self/fd/{{fd}}', [{arg0:?}], {{}})"
        ));
        let screen = ok(&top.wait_with_output().unwrap(), "top --once");
        let expected = [
            format!("pid {pid} "),
            "hash cache".to_owned(),
            "execve     on".to_owned(),
            "module     ".to_owned(),
            format!("file    {}", daemon.output.display()),
            "remote  tcp://127.0.0.1:9".to_owned(),
            "fileless_exec [".to_owned(),
        ];
        let missing: Vec<&String> = expected
            .iter()
            .filter(|e| !screen.contains(e.as_str()))
            .collect();
        let rates = screen
            .lines()
            .find(|l| l.starts_with("execve"))
            .and_then(|l| l.split_whitespace().nth(2)?.parse::<f64>().ok());
        let backlog = screen
            .lines()
            .find(|l| l.starts_with("remote"))
            .is_some_and(|l| !l.contains(" 0 B "));
        if missing.is_empty() && rates.is_some_and(|r| r > 0.0) && backlog {
            assert!(
                screen.contains("CPU ") && !screen.contains("CPU ?"),
                "{screen}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "top never showed {missing:?}, an exec rate ({rates:?}) and a backlog:\n{screen}"
        );
    }
    assert!(daemon.stop().success());
}

#[test]
fn coverage_says_what_each_monitor_hooks_lacks_and_cannot_see() {
    if !bpf_available("coverage_says_what_each_monitor_hooks_lacks_and_cannot_see") {
        return;
    }
    let bus = PrivateBus::start();
    let mut daemon = on_bus(&bus, "");
    wait_for_name(&bus);
    let first = daemon.wait_for("the coverage record", |r| event(r)["type"] == "coverage");
    let m = &event(&first)["monitors"];
    let has = |list: &Value, text: &str| {
        list.as_array().is_some_and(|l| {
            l.iter()
                .any(|v| v.as_str().is_some_and(|s| s.contains(text)))
        })
    };
    assert_eq!(m["file"]["state"], "on", "{first}");
    assert!(
        has(&m["file"]["hooks"], "syscalls:sys_enter_openat"),
        "{first}"
    );
    assert!(has(&m["file"]["blind_spots"], "io_uring"), "{first}");
    // 32-bit compat syscalls are seen, through raw_syscalls.
    assert!(has(&m["network"]["hooks"], "raw:sys_enter"), "{first}");
    assert!(!has(&m["network"]["blind_spots"], "32-bit"), "{first}");
    assert!(
        has(&m["execve"]["hooks"], "sched:sched_process_exec"),
        "{first}"
    );
    assert!(
        has(&m["execve"]["hooks"], "raw:sched_process_fork"),
        "{first}"
    );
    // A monitor this kernel cannot give (modules, here) lists every hook it lacks.
    if m["module"]["state"] == "unavailable" {
        assert!(
            has(&m["module"]["missing"], "sys_enter_finit_module"),
            "{first}"
        );
        assert_eq!(m["module"]["hooks"], serde_json::json!([]), "{first}");
    }
    // Status says the same.
    let status = status_json(&bus);
    assert_eq!(status["monitors"]["file"]["hooks"], m["file"]["hooks"]);
    let table = ok(&owoctl(&bus, &["status"]), "status");
    assert!(
        table.contains("blind spot file") && table.contains("io_uring"),
        "{table}"
    );
    // Switching a monitor is a change of coverage: a new record says so.
    ok(&owoctl(&bus, &["disable", "network"]), "disable network");
    daemon.wait_for("the coverage with network off", |r| {
        event(r)["type"] == "coverage" && event(r)["monitors"]["network"]["state"] == "off"
    });
    assert!(daemon.stop().success());
}
