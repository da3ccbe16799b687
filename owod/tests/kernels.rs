//! Real eBPF: what owod chooses for the running kernel, and the bounded-loops build (the one
//! kernels before 5.17 get) run here, on the host, with the same checks as the other build.
//! `make vm-test` runs both on the kernels themselves.

mod harness;

use std::{fs, process::Command};

use harness::{bpf_available, copy_exe, event, marker, s, watched_dir, Daemon};
use owo_ebpf::Loops;
use serde_json::Value;

/// `uname -r`, and whether that kernel has `bpf_loop` (5.17 and later).
fn this_kernel() -> (String, bool) {
    let release = nix::sys::utsname::uname()
        .unwrap()
        .release()
        .to_string_lossy()
        .into_owned();
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    (release, (major, minor) >= (5, 17))
}

#[test]
fn the_start_record_and_the_log_say_what_was_chosen_for_this_kernel() {
    if !bpf_available("the_start_record_and_the_log_say_what_was_chosen_for_this_kernel") {
        return;
    }
    let mut daemon = Daemon::start("");
    let (release, has_bpf_loop) = this_kernel();
    let start = event(&daemon.start);
    assert_eq!(start["kernel"], release.as_str());
    let want = if has_bpf_loop {
        "bpf_loop"
    } else {
        "bounded_loops"
    };
    assert_eq!(start["bpf_loops"], want, "{start}");
    assert_eq!(start["bpf_object"], "built-in");
    for (name, state) in start["monitors"].as_object().unwrap() {
        assert_eq!(
            state == "unavailable",
            start["unavailable"][name].is_string(),
            "an unavailable monitor carries its reason, and only then: {start}"
        );
    }
    daemon.wait_log(&format!(
        "kernel {release}: loading the built-in eBPF object with {want}"
    ));
    assert!(daemon.stop().success());
}

/// The bounded-loops build, loaded from a file with `monitor.ebpf_path`: execs, files, names
/// with `..` (the scan for them), and a path deeper than owod keeps.
#[test]
fn the_bounded_loops_build_records_what_the_bpf_loop_build_records() {
    if !bpf_available("the_bounded_loops_build_records_what_the_bpf_loop_build_records") {
        return;
    }
    let scratch = tempfile::tempdir_in("/var/lib").unwrap();
    let object = scratch.path().join("owo-bounded.bpf.o");
    fs::write(&object, owo_ebpf::object(Loops::Bounded)).unwrap();
    let mut daemon = Daemon::start(&format!("monitor:\n  ebpf_path: {}\n", s(&object)));
    let start = event(&daemon.start);
    assert_eq!(start["bpf_object"], s(&object), "{start}");
    for monitor in ["execve", "exit", "file", "network", "privilege"] {
        assert_eq!(start["monitors"][monitor], "on", "{start}");
    }

    let dir = watched_dir();
    // An exec: the exe and cwd are walked in the kernel.
    let exe = copy_exe("/bin/true", &dir.path().join(marker("true")));
    let status = Command::new(&exe)
        .arg("bounded")
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let exec = daemon.wait_for("the exec", |r| {
        event(r)["event_type"] == "execve" && event(r)["exe"] == s(&exe)
    });
    assert_eq!(event(&exec)["cwd"], s(dir.path()), "{exec}");
    assert_eq!(
        event(&exec)["args"],
        serde_json::json!([s(&exe), "bounded"])
    );

    // A name with `..` through an unwatched directory: cleaned, and reported where it lands.
    let name = marker("dotdot");
    fs::write(dir.path().join(&name), b"x").unwrap();
    fs::remove_file(format!("/var/lib/../..{}/./{name}", s(dir.path()))).unwrap();
    let clean = dir.path().join(&name);
    daemon.wait_for("the unlink through ..", |r| {
        event(r)["event_type"] == "file"
            && event(r)["type"] == "unlink"
            && event(r)["path"] == s(&clean)
    });

    // 70 directories down: deeper than the 64 components kept, within the 80 walked. The path
    // keeps its root side, so it is still under /tmp, and says it is cut short.
    let mut deep = dir.path().to_path_buf();
    for _ in 0..70 {
        deep.push("d");
    }
    fs::create_dir_all(&deep).unwrap();
    let leaf = marker("leaf");
    fs::write(deep.join(&leaf), b"x").unwrap();
    let created = daemon.wait_for("the deep create", |r| {
        event(r)["event_type"] == "file"
            && event(r)["type"] == "create"
            && event(r)["path"]
                .as_str()
                .is_some_and(|p| p.starts_with(s(dir.path())) && p.contains("/d/d/"))
    });
    let path = event(&created)["path"].as_str().unwrap();
    assert_eq!(event(&created)["path_truncated"], true, "{created}");
    assert!(
        !path.contains(&leaf),
        "the leaf side is what is cut: {path}"
    );
    assert_eq!(
        path.split('/').count() - 1,
        64,
        "64 components kept: {path}"
    );

    assert!(daemon.stop().success());
    let records: Vec<Value> = daemon.records();
    assert!(
        !records.iter().any(|r| event(r)["type"] == "loss"),
        "no losses"
    );
}
