//! Real eBPF: what owod adds to exec records: the SHA-256 of the binary (cached by identity,
//! rewritten files hashed again, deleted files and memfds still hashed), the terminal, the
//! container from the cgroup, the ancestry, and a bounded process table with a tree on SIGUSR1.

mod harness;

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    process::Command,
};

use harness::{bpf_available, copy_exe, event, marker, python, Daemon};
use serde_json::Value;

fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

fn exec_of(daemon: &mut Daemon, what: &str, arg0: &str) -> Value {
    daemon.wait_for(what, |r| {
        event(r)["event_type"] == "execve" && event(r)["args"][0] == arg0
    })
}

#[test]
fn the_hash_matches_sha256sum_and_follows_a_rewrite_in_place() {
    if !bpf_available("the_hash_matches_sha256sum_and_follows_a_rewrite_in_place") {
        return;
    }
    let mut daemon = Daemon::start("");
    let dir = tempfile::tempdir().unwrap();
    let exe = copy_exe("/usr/bin/true", &dir.path().join(marker("true")));
    let name = exe.to_str().unwrap();
    assert!(Command::new(&exe).status().unwrap().success());
    let first = exec_of(&mut daemon, "the copied true", name);
    assert_eq!(event(&first)["sha256"], sha256sum(&exe), "{first}");
    let inode = event(&first)["inode"].clone();
    assert_eq!(
        inode,
        fs::metadata(&exe)
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .unwrap()
    );

    // The same inode, new content: the identity (size, ctime) changed, so it is hashed again.
    let other = fs::read("/usr/bin/false").unwrap();
    fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&exe)
        .unwrap()
        .write_all(&other)
        .unwrap();
    assert!(!Command::new(&exe).arg("again").status().unwrap().success());
    let second = daemon.wait_for("the rewritten binary", |r| {
        event(r)["args"][0] == name && event(r)["args"][1] == "again"
    });
    assert_eq!(event(&second)["inode"], inode);
    assert_eq!(event(&second)["sha256"], sha256sum(&exe));
    assert_ne!(event(&second)["sha256"], event(&first)["sha256"]);

    // Unchanged: from the cache.
    Command::new(&exe).arg("third").status().unwrap();
    let third = daemon.wait_for("the third run", |r| {
        event(r)["args"][0] == name && event(r)["args"][1] == "third"
    });
    assert_eq!(event(&third)["sha256"], event(&second)["sha256"]);
    daemon.stop();
    let stop = daemon.records().into_iter().last().unwrap();
    assert!(
        event(&stop)["hash_cache_hits"].as_u64().unwrap() >= 1,
        "{stop}"
    );
}

#[test]
fn a_deleted_binary_and_a_memfd_are_flagged_and_hashed() {
    if !bpf_available("a_deleted_binary_and_a_memfd_are_flagged_and_hashed") {
        return;
    }
    let mut daemon = Daemon::start("");
    let dir = tempfile::tempdir().unwrap();
    let sleep = fs::canonicalize("/bin/sleep").unwrap();
    let expected = sha256sum(&sleep);

    // Deleted before it runs: exec through an fd of the unlinked file.
    let copy = copy_exe(&sleep, &dir.path().join(marker("doomed")));
    let deleted_arg0 = marker("deleted");
    python(&format!(
        "import os\nfd = os.open({copy:?}, os.O_RDONLY)\nos.set_inheritable(fd, True)\nos.unlink({copy:?})\nos.execve(f'/proc/self/fd/{{fd}}', [{deleted_arg0:?}, '1'], {{}})",
        copy = copy.to_str().unwrap()
    ));
    let r = exec_of(&mut daemon, "the deleted binary", &deleted_arg0);
    let e = event(&r);
    assert_eq!(e["exe_deleted"], true, "{e}");
    assert!(e.get("exe_memfd").is_none());
    assert_eq!(
        e["sha256"],
        expected.as_str(),
        "read through /proc/PID/exe: {e}"
    );

    // A memfd: never on any disk, so read only while the process lives (5 s: under a busy CI,
    // a hash can wait behind others for more than a second).
    let memfd_arg0 = marker("memfd");
    python(&format!(
        "import os\nfd = os.memfd_create('owo-test', 0)\nos.write(fd, open({sleep:?}, 'rb').read())\nos.execve(f'/proc/self/fd/{{fd}}', [{memfd_arg0:?}, '5'], {{}})",
        sleep = sleep.to_str().unwrap()
    ));
    let r = exec_of(&mut daemon, "the memfd", &memfd_arg0);
    let e = event(&r);
    assert_eq!(e["exe_memfd"], true, "{e}");
    assert!(
        e["exe"].as_str().unwrap().starts_with("/memfd:owo-test"),
        "{e}"
    );
    assert_eq!(e["sha256"], expected.as_str(), "{e}");
}

#[test]
fn a_program_on_a_pseudo_terminal_has_its_tty() {
    if !bpf_available("a_program_on_a_pseudo_terminal_has_its_tty") {
        return;
    }
    let mut daemon = Daemon::start("");
    let dir = tempfile::tempdir().unwrap();
    let tag = marker("tty");
    let name_file = dir.path().join("ttyname");
    // The child, on the pty's slave side, writes its terminal's name before it execs.
    python(&format!(
        "import os, pty\npid, fd = pty.fork()\nif pid == 0:\n    open({name_file:?}, 'w').write(os.ttyname(0))\n    os.execv('/usr/bin/true', ['true', {tag:?}])\nelse:\n    try:\n        while os.read(fd, 1024): pass\n    except OSError:\n        pass\n    os.waitpid(pid, 0)",
        name_file = name_file.to_str().unwrap()
    ));
    let r = daemon.wait_for("the exec on the pty", |r| {
        event(r)["event_type"] == "execve" && event(r)["args"][1] == tag.as_str()
    });
    let expected = fs::read_to_string(&name_file).unwrap();
    assert_eq!(event(&r)["is_tty"], true);
    assert_eq!(
        event(&r)["tty"],
        expected.trim_start_matches("/dev/"),
        "{r}"
    );

    // And one without a terminal.
    let plain = marker("notty");
    Command::new("setsid")
        .args(["true", &plain])
        .stdin(std::process::Stdio::null())
        .status()
        .unwrap();
    let r = daemon.wait_for("the exec without a tty", |r| {
        event(r)["event_type"] == "execve" && event(r)["args"][1] == plain.as_str()
    });
    assert_eq!(event(&r)["is_tty"], false);
    assert!(event(&r).get("tty").is_none());
}

/// Where the cgroup v2 hierarchy is mounted.
fn cgroup2() -> PathBuf {
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    mounts
        .lines()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            (right.starts_with("cgroup2 ")).then(|| PathBuf::from(left.split(' ').nth(4).unwrap()))
        })
        .expect("a cgroup2 mount")
}

#[test]
fn a_process_in_a_container_cgroup_names_its_container() {
    if !bpf_available("a_process_in_a_container_cgroup_names_its_container") {
        return;
    }
    let mut daemon = Daemon::start("");
    let id: String = marker("x").trim_start_matches("owo-x-").repeat(2);
    assert_eq!(id.len(), 64);
    let group = cgroup2().join(format!("docker-{id}.scope"));
    fs::create_dir(&group).unwrap();
    let tag = marker("container");
    let status = Command::new("sh")
        .args([
            "-c",
            &format!(
                "echo $$ > {}/cgroup.procs && exec /usr/bin/true {tag}",
                group.display()
            ),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    // The cgroup outlives the exec's record, as a container's does: owod finds its path in
    // the cgroup tree when it takes the record, milliseconds after the exec.
    let r = daemon.wait_for("the exec in the cgroup", |r| {
        event(r)["event_type"] == "execve" && event(r)["args"][1] == tag.as_str()
    });
    fs::remove_dir(&group).unwrap();
    let e = event(&r);
    assert_eq!(e["container_id"], id.as_str(), "{e}");
    assert_eq!(e["container_runtime"], "docker");
    assert_eq!(e["cgroup"], format!("/docker-{id}.scope"));
}

#[test]
fn the_ancestry_of_a_three_level_chain_is_exact() {
    if !bpf_available("the_ancestry_of_a_three_level_chain_is_exact") {
        return;
    }
    let mut daemon = Daemon::start("");
    let dir = tempfile::tempdir().unwrap();
    let dash = fs::canonicalize("/bin/sh").unwrap();
    let level: Vec<PathBuf> = (1..=3)
        .map(|i| copy_exe(&dash, &dir.path().join(marker(&format!("level{i}")))))
        .collect();
    let tag = marker("leaf");
    // "; :" after each command keeps every shell alive (no exec of its last command).
    let script = format!(
        "{} -c '{} -c \"/usr/bin/true {tag}; :\"; :'; :",
        level[1].display(),
        level[2].display()
    );
    assert!(Command::new(&level[0])
        .args(["-c", &script])
        .status()
        .unwrap()
        .success());
    let r = daemon.wait_for("the leaf", |r| {
        event(r)["event_type"] == "execve" && event(r)["args"][1] == tag.as_str()
    });
    let ancestors = event(&r)["ancestors"].as_str().unwrap().to_owned();
    let me = std::env::current_exe().unwrap();
    let expected_tail = format!(
        "|{}|{}|{}|{}",
        me.display(),
        level[0].display(),
        level[1].display(),
        level[2].display()
    );
    assert!(
        ancestors.ends_with(&expected_tail),
        "ancestors `{ancestors}` should end with `{expected_tail}`"
    );
    assert_eq!(event(&r)["parent_path"], level[2].to_str().unwrap());
}

#[test]
fn a_burst_of_processes_leaves_the_table_within_its_bound_and_sigusr1_prints_the_tree() {
    if !bpf_available(
        "a_burst_of_processes_leaves_the_table_within_its_bound_and_sigusr1_prints_the_tree",
    ) {
        return;
    }
    let mut daemon = Daemon::start("enrich:\n  process_table_max: 200\n");
    let tag = marker("burst");
    for _ in 0..3000 {
        Command::new("true").arg(&tag).status().unwrap();
    }
    daemon.barrier();
    // The tree, on owod's stdout (the harness keeps it in owod.log), lists this test process.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.child.id() as i32),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();
    let me = format!("\t{}\t", std::os::unix::process::parent_id());
    let deadline = std::time::Instant::now() + harness::DEADLINE;
    while !daemon
        .log()
        .lines()
        .any(|l| l.trim_start().starts_with(&std::process::id().to_string()) && l.contains(&me))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no tree line for this process:\n{}",
            daemon.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(daemon.log().contains("PID\tPPID\tUID\tCOMM\tCOMMAND"));
    assert!(daemon.stop().success());
    let stop = daemon.records().into_iter().last().unwrap();
    let e = event(&stop);
    assert_eq!(e["type"], "stop");
    assert!(e["process_table_entries"].as_u64().unwrap() <= 200, "{e}");
    assert!(
        e["process_table_evictions"].as_u64().unwrap() > 0,
        "3000 processes in a table of 200: {e}"
    );
}

#[test]
fn hash_reads_that_never_return_hold_up_neither_the_records_behind_them_nor_other_hashes() {
    if !bpf_available(
        "hash_reads_that_never_return_hold_up_neither_the_records_behind_them_nor_other_hashes",
    ) {
        return;
    }
    // Three programs whose reads hang for owod: more than its two hashing workers.
    let dir = tempfile::tempdir().unwrap();
    let hung = ["hung-1", "hung-2", "hung-3"];
    let mut daemon = Daemon::start("");
    // A FUSE file system whose reads hang for owod (the daemons of other tests see the same
    // execs, and read them).
    let pid = daemon.child.id().to_string();
    let mount = dir.path().join("mnt");
    let mut args = vec![pid.as_ref(), "/bin/true".as_ref(), mount.as_os_str()];
    args.extend(hung.iter().map(std::ffi::OsStr::new));
    let _fs = harness::Fuse::mount("stallfs.py", &args, &mount);
    let tag = marker("hung");
    for name in hung.iter().chain(&hung[..1]) {
        let status = Command::new(dir.path().join("mnt").join(name))
            .arg(&tag)
            .status()
            .unwrap();
        assert!(status.success());
    }
    // Then a program owod has never hashed, on a sound disk.
    let fresh = copy_exe("/bin/true", &dir.path().join(marker("fresh")));
    let arg0 = fresh.to_str().unwrap().to_owned();
    assert!(Command::new(&fresh).status().unwrap().success());

    let after = exec_of(&mut daemon, "the exec after the hung ones", &arg0);
    assert_eq!(event(&after)["sha256"], sha256sum(&fresh), "{after}");
    let records = daemon.records();
    let stalled: Vec<&Value> = records
        .iter()
        .filter(|r| event(r)["event_type"] == "execve" && event(r)["args"][1] == tag.as_str())
        .collect();
    assert_eq!(stalled.len(), 4, "every exec of a hung program is written");
    for r in stalled {
        let e = event(r);
        assert_eq!(e["sha256_status"], "error", "{e}");
        assert!(e["sha256_error"].as_str().unwrap().contains("hangs"), "{e}");
    }
}
