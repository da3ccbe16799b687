//! Real eBPF: the file, network, privilege, module and write monitors, each checked with a real
//! syscall and a unique marker.

mod harness;

use std::{
    fs,
    io::Write,
    net::{TcpListener, TcpStream, UdpSocket},
    path::{Path, PathBuf},
    process::Command,
};

use harness::{bpf_available, c_program, dns_query, event, marker, python, s, watched_dir, Daemon};
use serde_json::Value;

/// A fresh directory outside every default watched path.
fn unwatched_dir() -> tempfile::TempDir {
    fs::create_dir_all("/var/lib/owo-test").unwrap();
    tempfile::Builder::new()
        .prefix("owo-unwatched-")
        .tempdir_in("/var/lib/owo-test")
        .unwrap()
}

fn files(records: &[Value], path: &str) -> Vec<Value> {
    records
        .iter()
        .filter(|r| event(r)["event_type"] == "file" && event(r)["path"] == path)
        .cloned()
        .collect()
}

#[test]
fn file_events_carry_exact_absolute_paths() {
    if !bpf_available("file_events_carry_exact_absolute_paths") {
        return;
    }
    let mut daemon = Daemon::start("");
    let dir = watched_dir();
    let a = dir.path().join(marker("a"));
    let b = dir.path().join(marker("b"));
    fs::File::create(&a).unwrap();
    drop(fs::File::open(&a).unwrap());
    fs::rename(&a, &b).unwrap();
    fs::remove_file(&b).unwrap();
    // A relative name, resolved against the cwd of the process that gave it.
    let rel = marker("rel");
    fs::write(dir.path().join(&rel), b"x").unwrap();
    assert!(Command::new("rm")
        .arg(&rel)
        .current_dir(dir.path())
        .status()
        .unwrap()
        .success());
    // A name relative to a directory fd, and a failed open through one.
    let via_fd = marker("dirfd");
    fs::write(dir.path().join(&via_fd), b"x").unwrap();
    let missing = marker("missing");
    python(&format!(
        "import os\nfd = os.open({dir:?}, os.O_RDONLY)\nos.unlink({via_fd:?}, dir_fd=fd)\ntry:\n    os.open({missing:?}, os.O_RDONLY, dir_fd=fd)\nexcept FileNotFoundError:\n    pass",
        dir = s(dir.path())
    ));
    daemon.file_barrier(dir.path());

    let records = daemon.records();
    let created = files(&records, s(&a));
    let kinds: Vec<&str> = created
        .iter()
        .map(|r| event(r)["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["create", "open", "rename"], "{created:#?}");
    assert_eq!(event(&created[0])["pid"], std::process::id());
    assert_eq!(
        event(&created[0])["ret"].as_i64().map(|fd| fd >= 0),
        Some(true)
    );
    assert_eq!(event(&created[2])["path2"], s(&b));
    assert_eq!(event(&created[2])["ret"], 0);
    let unlinked = files(&records, s(&b));
    assert_eq!(unlinked.len(), 1, "{unlinked:#?}");
    assert_eq!(
        (
            event(&unlinked[0])["type"].as_str(),
            event(&unlinked[0])["ret"].as_i64()
        ),
        (Some("unlink"), Some(0))
    );

    let rel_path = dir.path().join(&rel);
    let rel_unlink: Vec<Value> = files(&records, s(&rel_path))
        .into_iter()
        .filter(|r| event(r)["type"] == "unlink")
        .collect();
    assert_eq!(
        rel_unlink.len(),
        1,
        "the relative unlink, resolved against rm's cwd"
    );
    assert_eq!(event(&rel_unlink[0])["comm"], "rm");

    let fd_path = dir.path().join(&via_fd);
    let fd_unlink: Vec<Value> = files(&records, s(&fd_path))
        .into_iter()
        .filter(|r| event(r)["type"] == "unlink")
        .collect();
    assert_eq!(fd_unlink.len(), 1, "the unlink relative to a directory fd");
    assert_eq!(event(&fd_unlink[0])["syscall"], "unlinkat");

    let failed = files(&records, s(&dir.path().join(&missing)));
    assert_eq!(failed.len(), 1, "the failed open through a directory fd");
    assert_eq!(event(&failed[0])["ret"], -2, "ENOENT");
    assert_eq!(event(&failed[0])["type"], "open");
}

#[test]
fn unwatched_paths_are_filtered_in_the_kernel_unless_all_paths_are_watched() {
    if !bpf_available("unwatched_paths_are_filtered_in_the_kernel_unless_all_paths_are_watched") {
        return;
    }
    let watched = watched_dir();
    let unwatched = unwatched_dir();
    for all in [false, true] {
        let mut daemon = Daemon::start(&format!("monitor:\n  file_watch_all_paths: {all}\n"));
        let path = unwatched.path().join(marker("quiet"));
        fs::write(&path, b"x").unwrap();
        daemon.file_barrier(watched.path());
        let found = files(&daemon.records(), s(&path));
        if all {
            assert_eq!(
                found.len(),
                1,
                "file_watch_all_paths: true reports {}",
                path.display()
            );
            assert_eq!(event(&found[0])["type"], "create");
        } else {
            assert!(
                found.is_empty(),
                "{} is not watched, yet: {found:#?}",
                path.display()
            );
        }
    }
}

/// A shared library the loader can open, wherever this distribution keeps it.
fn some_library() -> PathBuf {
    [
        "/lib/x86_64-linux-gnu",
        "/usr/lib/x86_64-linux-gnu",
        "/lib/aarch64-linux-gnu",
        "/usr/lib64",
        "/lib64",
    ]
    .iter()
    .map(|dir| Path::new(dir).join("libm.so.6"))
    .find(|p| p.exists())
    .expect("libm.so.6 somewhere")
}

#[test]
fn loading_a_shared_library_is_a_library_load() {
    if !bpf_available("loading_a_shared_library_is_a_library_load") {
        return;
    }
    let mut daemon = Daemon::start("");
    let dir = watched_dir();
    let lib = dir.path().join(format!("lib{}.so.6", marker("lib")));
    fs::copy(some_library(), &lib).unwrap();
    python(&format!("import ctypes\nctypes.CDLL({:?})", s(&lib)));
    let r = daemon.wait_for("the library load", |r| {
        event(r)["path"] == s(&lib) && event(r)["type"] == "library_load"
    });
    assert_eq!(event(&r)["event_type"], "file");
    assert!(event(&r)["ret"].as_i64().unwrap() >= 0);
}

fn nets(records: &[Value], kind: &str, port_field: &str, port: u16) -> Vec<Value> {
    records
        .iter()
        .filter(|r| {
            event(r)["event_type"] == "network"
                && event(r)["type"] == kind
                && event(r)[port_field] == port
        })
        .cloned()
        .collect()
}

#[test]
fn tcp_connect_and_accept_match_on_ipv4_and_ipv6() {
    if !bpf_available("tcp_connect_and_accept_match_on_ipv4_and_ipv6") {
        return;
    }
    let mut daemon = Daemon::start("");
    for (host, family) in [("127.0.0.1", "ipv4"), ("::1", "ipv6")] {
        let listener = TcpListener::bind((host, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let client_port = client.local_addr().unwrap().port();
        let (_server_side, _) = listener.accept().unwrap();
        let connect = daemon.wait_for("connect", |r| {
            !nets(std::slice::from_ref(r), "connect", "dport", port).is_empty()
        });
        let accept = daemon.wait_for("accept", |r| {
            !nets(std::slice::from_ref(r), "accept", "dport", port).is_empty()
        });
        for (r, kind) in [(&connect, "connect"), (&accept, "accept")] {
            let e = event(r);
            assert_eq!(e["family"], family, "{kind}: {e}");
            assert_eq!(e["protocol"], "tcp", "{kind}: {e}");
            assert_eq!(
                (e["saddr"].as_str(), e["daddr"].as_str()),
                (Some(host), Some(host)),
                "{kind}: {e}"
            );
            assert_eq!(e["sport"], client_port, "{kind}: the client's port: {e}");
            assert_eq!(e["dport"], port, "{kind}: {e}");
            assert_eq!(e["pid"], std::process::id());
            assert_eq!(e["is_dns"], false);
        }
        assert_eq!(event(&connect)["ret"], 0);
    }
}

#[test]
fn a_dns_query_to_port_53_carries_its_name() {
    if !bpf_available("a_dns_query_to_port_53_carries_its_name") {
        return;
    }
    let mut daemon = Daemon::start("");
    let name = format!("{}.example", marker("dns"));
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.send_to(&dns_query(&name), "127.0.0.1:53").unwrap();
    let r = daemon.wait_for("the DNS query", |r| event(r)["dns_query"] == name.as_str());
    let e = event(&r);
    assert_eq!(
        (e["type"].as_str(), e["protocol"].as_str()),
        (Some("sendto"), Some("udp"))
    );
    assert_eq!(e["is_dns"], true);
    assert_eq!(
        (e["daddr"].as_str(), e["dport"].as_u64()),
        (Some("127.0.0.1"), Some(53))
    );
    assert_eq!(e["sport"], socket.local_addr().unwrap().port());
}

#[test]
fn setresuid_is_a_privilege_record_with_old_and_new_ids() {
    if !bpf_available("setresuid_is_a_privilege_record_with_old_and_new_ids") {
        return;
    }
    let mut daemon = Daemon::start("");
    let tag = marker("setresuid");
    python(&format!(
        "import os\nos.setresuid(65534, 65534, 65534)  # {tag}"
    ));
    let exec = daemon.wait_for("the python exec", |r| {
        event(r)["event_type"] == "execve"
            && event(r)["cmdline"]
                .as_str()
                .is_some_and(|c| c.contains(&tag))
    });
    let pid = event(&exec)["pid"].clone();
    let r = daemon.wait_for("its setresuid", |r| {
        event(r)["event_type"] == "privilege" && event(r)["pid"] == pid
    });
    let e = event(&r);
    assert_eq!(e["type"], "setresuid");
    assert_eq!(
        (e["uid"].as_u64(), e["euid"].as_u64()),
        (Some(0), Some(0)),
        "before: {e}"
    );
    assert_eq!(
        (e["new_uid"].as_u64(), e["new_euid"].as_u64()),
        (Some(65534), Some(65534)),
        "after: {e}"
    );
    assert_eq!(e["args"], serde_json::json!([65534, 65534, 65534]));
    assert_eq!(e["ret"], 0);
}

#[test]
fn writes_are_reported_only_when_enabled() {
    if !bpf_available("writes_are_reported_only_when_enabled") {
        return;
    }
    let dir = watched_dir();
    for enabled in [false, true] {
        let mut daemon = Daemon::start(&format!("monitor:\n  write_events: {enabled}\n"));
        let path = dir.path().join(marker("write"));
        let mut file = fs::File::create(&path).unwrap();
        file.write_all(b"first").unwrap();
        file.write_all(b"second!").unwrap();
        drop(file);
        daemon.file_barrier(dir.path());
        let writes: Vec<Value> = daemon
            .records()
            .into_iter()
            .filter(|r| event(r)["event_type"] == "write" && event(r)["pid"] == std::process::id())
            .filter(|r| event(r)["path"] == s(&path))
            .collect();
        if !enabled {
            assert!(writes.is_empty(), "write_events is off, yet: {writes:#?}");
            continue;
        }
        let counts: Vec<u64> = writes
            .iter()
            .map(|r| event(r)["count"].as_u64().unwrap())
            .collect();
        assert_eq!(
            counts,
            [5, 7],
            "both writes, the second with the path from the cache: {writes:#?}"
        );
        assert_eq!(event(&writes[0])["fd"], event(&writes[1])["fd"]);
    }
}

#[test]
fn the_module_monitor_degrades_where_the_kernel_has_no_modules() {
    if !bpf_available("the_module_monitor_degrades_where_the_kernel_has_no_modules") {
        return;
    }
    let daemon = Daemon::start("");
    let has_modules = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        .iter()
        .any(|t| {
            Path::new(t)
                .join("events/syscalls/sys_enter_finit_module")
                .exists()
        });
    let monitors = &daemon.start["event"]["monitors"];
    if has_modules {
        assert_eq!(monitors["module"], "on");
    } else {
        assert_eq!(monitors["module"], "unavailable", "{monitors}");
        assert!(
            daemon.log().contains("monitor `module` is unavailable"),
            "one clear warning:\n{}",
            daemon.log()
        );
    }
    for other in ["execve", "exit", "file", "network", "privilege"] {
        assert_eq!(monitors[other], "on", "{other} runs regardless: {monitors}");
    }
}

#[test]
fn owod_reports_nothing_of_its_own_doing() {
    if !bpf_available("owod_reports_nothing_of_its_own_doing") {
        return;
    }
    // Every monitor on and every path watched: the output file is watched too.
    let mut daemon =
        Daemon::start("monitor:\n  write_events: true\n  file_watch_all_paths: true\n");
    let dir = watched_dir();
    for _ in 0..20 {
        fs::write(dir.path().join(marker("busy")), b"x").unwrap();
    }
    daemon.file_barrier(dir.path());
    daemon.barrier();
    let own = daemon.child.id();
    let mine: Vec<Value> = daemon
        .records()
        .into_iter()
        .filter(|r| event(r)["event_type"] != "agent" && event(r)["pid"] == own)
        .collect();
    assert!(
        mine.is_empty(),
        "owod recorded itself: {:#?}",
        &mine[..mine.len().min(3)]
    );
}

#[test]
fn monitors_switched_off_in_the_config_send_nothing() {
    if !bpf_available("monitors_switched_off_in_the_config_send_nothing") {
        return;
    }
    // Writes stay on: a write to a marker file is the barrier for the activity lane.
    let mut daemon = Daemon::start(
        "monitor:\n  file_events: false\n  network_events: false\n  privilege_events: false\n  exit_events: false\n  write_events: true\n",
    );
    let monitors = &daemon.start["event"]["monitors"];
    for off in ["file", "network", "privilege", "exit"] {
        assert_eq!(monitors[off], "off", "{monitors}");
    }
    let dir = watched_dir();
    let tag = marker("off");
    fs::write(dir.path().join(&tag), b"x").unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    python(&format!(
        "import os\nos.setresgid(65534, 65534, 65534)  # {tag}"
    ));
    daemon.barrier();
    let barrier = dir.path().join(marker("write-barrier"));
    fs::write(&barrier, b"barrier").unwrap();
    daemon.wait_for("the write barrier", |r| {
        event(r)["event_type"] == "write" && event(r)["path"] == s(&barrier)
    });
    let records = daemon.records();
    let unwanted: Vec<&Value> = records
        .iter()
        .filter(|r| {
            ["file", "network", "privilege", "exit"]
                .contains(&event(r)["event_type"].as_str().unwrap_or(""))
        })
        .collect();
    assert!(
        unwanted.is_empty(),
        "switched-off monitors sent: {:#?}",
        &unwanted[..unwanted.len().min(3)]
    );
}

#[test]
fn names_with_dot_dot_are_cleaned_and_filtered_by_what_they_reach() {
    if !bpf_available("names_with_dot_dot_are_cleaned_and_filtered_by_what_they_reach") {
        return;
    }
    let mut daemon = Daemon::start("");
    let dir = watched_dir();
    let name = marker("dotdot");
    fs::write(dir.path().join(&name), b"x").unwrap();
    // Through an unwatched directory and back up into a watched one: /var/lib/../../tmp/…
    let sneaky = format!("/var/lib/../..{}/./{name}", s(dir.path()));
    fs::remove_file(&sneaky).unwrap();
    daemon.file_barrier(dir.path());
    let clean = dir.path().join(&name);
    let found: Vec<Value> = files(&daemon.records(), s(&clean))
        .into_iter()
        .filter(|r| event(r)["type"] == "unlink")
        .collect();
    assert_eq!(
        found.len(),
        1,
        "the unlink of {sneaky} is reported as {}",
        clean.display()
    );
    // And a name that only looks watched: /tmp/../var/lib/… is not under /tmp.
    let outside = unwatched_dir();
    let hidden = outside.path().join(marker("hidden"));
    fs::write(&hidden, b"x").unwrap();
    let looks_watched = format!("/tmp/..{}", s(&hidden));
    fs::remove_file(&looks_watched).unwrap();
    daemon.file_barrier(dir.path());
    assert!(
        files(&daemon.records(), s(&hidden)).is_empty(),
        "{looks_watched} is not under a watched path"
    );
}

#[test]
fn opened_files_are_judged_by_their_real_names_however_they_were_named() {
    if !bpf_available("opened_files_are_judged_by_their_real_names_however_they_were_named") {
        return;
    }
    // Watched: keep/ and a long name; their neighbours are not. The long names share their
    // first 15 bytes, which is all of a name that the kernel's name filter compares.
    let root = unwatched_dir();
    let long_a = "a-name-longer-than-fifteen-bytes-A";
    let long_b = "a-name-longer-than-fifteen-bytes-B";
    for dir in ["keep", "keeper", "other", long_a, long_b] {
        fs::create_dir(root.path().join(dir)).unwrap();
    }
    let r = s(root.path());
    let mut daemon = Daemon::start(&format!(
        "monitor:\n  file_watch_paths: [{r}/keep, {r}/{long_a}]\n"
    ));
    let name = marker("named");
    // Each file the script opens (and only opens) is made first.
    let opened = [
        "keep/abs",
        "keep/rel",
        "keep/dotdot",
        "keep/opath",
        "keep/dirfd",
        "other/abs",
        "other/rel",
        "other/dotdot",
        "other/opath",
        "keeper/abs",
    ]
    .map(|f| format!("{f}-{name}"));
    for f in &opened {
        fs::write(root.path().join(f), b"x").unwrap();
    }
    fs::write(root.path().join(long_a).join(&name), b"x").unwrap();
    fs::write(root.path().join(long_b).join(&name), b"x").unwrap();
    python(&format!(
        r#"import os
root = {r:?}
name = {name:?}
def touch(path, dir_fd=None):
    os.close(os.open(path, os.O_RDONLY, dir_fd=dir_fd))
for d in ("keep", "other", "keeper"):
    touch(f"{{root}}/{{d}}/abs-{{name}}")
os.chdir(f"{{root}}/keep")
touch(f"rel-{{name}}")
touch(f"../other/dotdot-{{name}}")
os.chdir(f"{{root}}/other")
touch(f"rel-{{name}}")
touch(f"../keep/dotdot-{{name}}")
opath = os.open(root, os.O_PATH)
touch(f"keep/opath-{{name}}", dir_fd=opath)
touch(f"other/opath-{{name}}", dir_fd=opath)
other = os.open(f"{{root}}/other", os.O_RDONLY | os.O_DIRECTORY)
touch(f"../keep/dirfd-{{name}}", dir_fd=other)
touch(f"{{root}}/{long_a}/{{name}}")
touch(f"{{root}}/{long_b}/{{name}}")
touch(root)
"#
    ));
    daemon.file_barrier(&root.path().join("keep"));

    let records = daemon.records();
    let mut reported: Vec<String> = records
        .iter()
        .filter(|r| event(r)["event_type"] == "file" && event(r)["type"] == "open")
        .filter_map(|r| event(r)["path"].as_str())
        .filter(|p| p.starts_with(r))
        .map(|p| p[r.len() + 1..].to_owned())
        .collect();
    reported.sort();
    let mut want: Vec<String> = opened[..5].to_vec();
    want.push(format!("{long_a}/{name}"));
    want.sort();
    assert_eq!(
        reported, want,
        "the opens under watched prefixes, and only those"
    );
}

#[test]
fn a_reload_moves_the_watched_prefixes_in_the_kernel() {
    if !bpf_available("a_reload_moves_the_watched_prefixes_in_the_kernel") {
        return;
    }
    let first = unwatched_dir();
    let second = unwatched_dir();
    let watch =
        |dir: &tempfile::TempDir| format!("monitor:\n  file_watch_paths: [{}]\n", s(dir.path()));
    let mut daemon = Daemon::start(&watch(&first));
    let before = marker("before");
    fs::write(first.path().join(&before), b"x").unwrap();
    fs::write(second.path().join(&before), b"x").unwrap();
    daemon.file_barrier(first.path());

    let config = fs::read_to_string(&daemon.config).unwrap();
    fs::write(
        &daemon.config,
        config.replace(s(first.path()), s(second.path())),
    )
    .unwrap();
    daemon.reload();
    let after = marker("after");
    fs::write(first.path().join(&after), b"x").unwrap();
    fs::write(second.path().join(&after), b"x").unwrap();
    // A name given with "/./" is one the kernel leaves to owod to judge, after cleaning it.
    let unclean = |dir: &tempfile::TempDir| dir.path().join(".").join(&after);
    fs::remove_file(unclean(&first)).unwrap();
    fs::remove_file(unclean(&second)).unwrap();
    daemon.file_barrier(second.path());

    let records = daemon.records();
    let seen = |dir: &tempfile::TempDir, name: &str| {
        !files(&records, s(&dir.path().join(name))).is_empty()
    };
    let unlinked = |dir: &tempfile::TempDir| {
        let path = s(&dir.path().join(&after)).to_owned();
        records.iter().any(|r| {
            event(r)["event_type"] == "file"
                && event(r)["type"] == "unlink"
                && event(r)["path"] == path.as_str()
        })
    };
    assert_eq!(
        [unlinked(&first), unlinked(&second)],
        [false, true],
        "a name the kernel leaves to owod is judged by the reloaded prefixes too"
    );
    assert_eq!(
        [
            seen(&first, &before),
            seen(&second, &before),
            seen(&first, &after),
            seen(&second, &after)
        ],
        [true, false, false, true],
        "before the reload only the first directory is watched, after it only the second"
    );
}

/// Unmounts a test's tmpfs wherever it went (each place it may be), whatever happens to the test.
struct Unmount(Vec<PathBuf>);

impl Drop for Unmount {
    fn drop(&mut self) {
        for at in &self.0 {
            let _ = Command::new("umount").arg("-l").arg(at).status();
        }
    }
}

/// A tmpfs mounted at `at`, unmounted from `places` when the guard goes.
fn tmpfs(at: &Path, places: Vec<PathBuf>) -> Unmount {
    assert!(Command::new("mount")
        .args(["-t", "tmpfs", "owo-test", s(at)])
        .status()
        .unwrap()
        .success());
    Unmount(places)
}

#[test]
fn a_watched_directory_renamed_or_moved_out_is_named_anew_at_once() {
    if !bpf_available("a_watched_directory_renamed_or_moved_out_is_named_anew_at_once") {
        return;
    }
    // The kernel remembers the paths of watched directories; a rename must make it forget them
    // before the next open, whether the directory stays watched or leaves.
    let root = unwatched_dir();
    let r = s(root.path());
    fs::create_dir_all(root.path().join("keep/a")).unwrap();
    fs::create_dir_all(root.path().join("keep/m")).unwrap();
    let name = marker("renamed");
    fs::write(root.path().join("keep/a").join(&name), b"x").unwrap();
    // A mount's root, opened after a file in it: named by where it is mounted, not as a file of
    // the directory it is the root of.
    let mnt = root.path().join("keep/m");
    let _unmount = tmpfs(&mnt, vec![mnt.clone()]);
    fs::write(mnt.join(&name), b"x").unwrap();
    let mut daemon = Daemon::start(&format!("monitor:\n  file_watch_paths: [{r}/keep]\n"));
    python(&format!(
        r#"import os
root = {r:?}
name = {name:?}
def touch(path):
    os.close(os.open(path, os.O_RDONLY))
for _ in range(3):
    touch(f"{{root}}/keep/a/{{name}}")
    touch(f"{{root}}/keep/m/{{name}}")
    touch(f"{{root}}/keep/m")
os.rename(f"{{root}}/keep/a", f"{{root}}/keep/b")
touch(f"{{root}}/keep/b/{{name}}")
os.rename(f"{{root}}/keep/b", f"{{root}}/out")
touch(f"{{root}}/out/{{name}}")
"#
    ));
    daemon.file_barrier(&root.path().join("keep"));
    let records = daemon.records();
    let opens = |path: &str| {
        files(&records, path)
            .iter()
            .filter(|f| event(f)["type"] == "open")
            .count()
    };
    assert_eq!(
        opens(&format!("{r}/keep/a/{name}")),
        3,
        "before the renames"
    );
    assert_eq!(opens(&format!("{r}/keep/m/{name}")), 3, "in the mount");
    assert_eq!(opens(&format!("{r}/keep/m")), 3, "the mount's root");
    assert_eq!(
        opens(&format!("{r}/keep/b/{name}")),
        1,
        "the open after the rename, under the new name"
    );
    assert_eq!(
        opens(&format!("{r}/out/{name}")),
        0,
        "the directory left the watched prefix"
    );
}

#[test]
fn a_directory_or_mount_moved_under_a_watched_prefix_is_watched_at_once() {
    if !bpf_available("a_directory_or_mount_moved_under_a_watched_prefix_is_watched_at_once") {
        return;
    }
    // The kernel remembers directories it found unwatched; a rename or a mount move must make
    // it forget them before the next open.
    let root = unwatched_dir();
    let r = s(root.path());
    for dir in ["keep", "keep/mnt", "dir", "mnt"] {
        fs::create_dir(root.path().join(dir)).unwrap();
    }
    let mnt = root.path().join("mnt");
    let _unmount = tmpfs(&mnt, vec![mnt.clone(), root.path().join("keep/mnt")]);
    let name = marker("moved");
    fs::write(root.path().join("dir").join(&name), b"x").unwrap();
    fs::write(mnt.join(&name), b"x").unwrap();
    let mut daemon = Daemon::start(&format!("monitor:\n  file_watch_paths: [{r}/keep]\n"));
    python(&format!(
        r#"import ctypes, os
root = {r:?}
name = {name:?}
def touch(path):
    os.close(os.open(path, os.O_RDONLY))
for _ in range(3):
    touch(f"{{root}}/dir/{{name}}")
    touch(f"{{root}}/mnt/{{name}}")
# mount(2) itself: mount(8) may rename a file of its own (utab), which would hide a miss here.
MS_MOVE = 8192
libc = ctypes.CDLL(None, use_errno=True)
if libc.mount(f"{{root}}/mnt".encode(), f"{{root}}/keep/mnt".encode(), None, MS_MOVE, None):
    raise OSError(ctypes.get_errno(), "mount --move")
touch(f"{{root}}/keep/mnt/{{name}}")
os.rename(f"{{root}}/dir", f"{{root}}/keep/dir")
touch(f"{{root}}/keep/dir/{{name}}")
"#
    ));
    daemon.file_barrier(&root.path().join("keep"));
    let records = daemon.records();
    for moved in ["mnt", "dir"] {
        let path = format!("{r}/keep/{moved}/{name}");
        assert_eq!(
            files(&records, &path).len(),
            1,
            "the open of {path}, after it moved under the watched prefix"
        );
        let before = format!("{r}/{moved}/{name}");
        assert!(
            files(&records, &before).is_empty(),
            "{before} was not watched"
        );
    }
}

#[test]
fn a_heartbeat_comes_every_interval_with_what_happened_since() {
    if !bpf_available("a_heartbeat_comes_every_interval_with_what_happened_since") {
        return;
    }
    let mut daemon = Daemon::start("agent:\n  heartbeat_seconds: 1\n");
    let heartbeats = |daemon: &Daemon| -> Vec<Value> {
        daemon
            .records()
            .into_iter()
            .filter(|r| event(r)["type"] == "heartbeat")
            .collect()
    };
    daemon.wait_for("a first heartbeat", |r| event(r)["type"] == "heartbeat");
    let before = heartbeats(&daemon).len();
    let tag = marker("beat");
    for _ in 0..5 {
        assert!(std::process::Command::new("true")
            .arg(&tag)
            .status()
            .unwrap()
            .success());
    }
    harness::wait_until("two more heartbeats", || {
        heartbeats(&daemon).len() >= before + 2
    });
    let beats = heartbeats(&daemon);
    let (last, previous) = (&beats[beats.len() - 1], &beats[beats.len() - 2]);
    assert_eq!(event(last)["interval_seconds"], 1);
    assert_eq!(event(last)["monitors"]["execve"], "on");
    assert_eq!(event(last)["lost"], 0);
    assert!(event(last)["uptime_seconds"].as_u64() >= event(previous)["uptime_seconds"].as_u64());
    // One a second, give or take the machine's load.
    let at =
        |r: &Value| chrono::DateTime::parse_from_rfc3339(r["timestamp"].as_str().unwrap()).unwrap();
    let gap = (at(last) - at(previous)).num_milliseconds();
    assert!((500..=3000).contains(&gap), "{gap} ms between heartbeats");
    // The five execs and their exits are in the records the heartbeats after them count.
    let counted: u64 = beats[before..]
        .iter()
        .map(|r| event(r)["records"].as_u64().unwrap())
        .sum();
    assert!(
        counted >= 10,
        "heartbeats counted {counted} records for 5 execs and exits"
    );
}

/// `support/ia32.c`, built as an ia32 program (`m32`, which needs gcc-multilib) or as a
/// 64-bit one that makes its calls with `int 0x80`.
fn ia32_program(m32: bool) -> PathBuf {
    c_program("ia32.c", if m32 { &["-m32"] } else { &[] })
}

/// The records of `pid`.
fn of_pid(records: &[Value], pid: u32) -> Vec<Value> {
    records
        .iter()
        .filter(|r| event(r)["pid"] == pid)
        .cloned()
        .collect()
}

#[test]
fn compat_syscalls_are_seen_and_marked_ia32() {
    if !bpf_available("compat_syscalls_are_seen_and_marked_ia32") {
        return;
    }
    let mut daemon = Daemon::start("monitor:\n  write_events: true\n");
    let dir = watched_dir();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // The 64-bit program opens with open(2) and connects twice (connect, then socketcall); the
    // ia32 program's C library opens with openat and connects once.
    for (m32, open_call, connects) in [(false, "open", 2), (true, "openat", 1)] {
        let path = dir.path().join(marker("ia32"));
        let mut child = Command::new(ia32_program(m32))
            .arg(&path)
            .arg(port.to_string())
            .spawn()
            .unwrap();
        let pid = child.id();
        assert!(child.wait().unwrap().success(), "the ia32 program failed");
        let exec = daemon.wait_for("its 32-bit exec of /bin/true", |r| {
            event(r)["event_type"] == "execve"
                && event(r)["pid"] == pid
                && event(r)["path"] == "/bin/true"
        });
        assert_eq!(event(&exec)["via"], "ia32", "{exec}");
        daemon.file_barrier(dir.path());
        let records = of_pid(&daemon.records(), pid);
        let file = files(&records, s(&path));
        let kinds: Vec<(&str, &str)> = file
            .iter()
            .map(|r| {
                (
                    event(r)["type"].as_str().unwrap(),
                    event(r)["syscall"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [("create", open_call), ("unlink", "unlink")],
            "{file:#?}"
        );
        let writes: Vec<&Value> = records
            .iter()
            .filter(|r| event(r)["event_type"] == "write" && event(r)["path"] == s(&path))
            .collect();
        assert_eq!(writes.len(), 1, "{records:#?}");
        assert_eq!(event(writes[0])["count"], 4);
        let connected = nets(&records, "connect", "dport", port);
        assert_eq!(connected.len(), connects, "{records:#?}");
        for r in &connected {
            assert_eq!(
                (event(r)["daddr"].as_str(), event(r)["ret"].as_i64()),
                (Some("127.0.0.1"), Some(0))
            );
        }
        let privilege: Vec<&Value> = records
            .iter()
            .filter(|r| event(r)["event_type"] == "privilege")
            .collect();
        let setuid: Vec<(Value, Value)> = privilege
            .iter()
            .map(|r| (event(r)["args"].clone(), event(r)["ret"].clone()))
            .collect();
        let mut expected = vec![(serde_json::json!([0]), Value::from(0))];
        if !m32 {
            // The 16-bit setuid's (u16)-1, widened as the kernel widens it, and refused.
            expected.push((serde_json::json!([-1]), Value::from(-libc::EINVAL)));
        }
        assert_eq!(setuid, expected);
        let seen = file.iter().chain(writes).chain(&connected).chain(privilege);
        for r in seen {
            assert_eq!(event(r)["via"], "ia32", "{r}");
        }
    }
    let coverage = daemon.wait_for("the coverage record", |r| event(r)["type"] == "coverage");
    let file = &event(&coverage)["monitors"]["file"];
    assert!(
        file["hooks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h == "raw:sys_exit"),
        "{file}"
    );
    assert!(
        !file["blind_spots"].to_string().contains("32-bit"),
        "{file}"
    );
}

#[test]
fn compat_syscalls_switched_off_are_a_blind_spot() {
    if !bpf_available("compat_syscalls_switched_off_are_a_blind_spot") {
        return;
    }
    let mut daemon = Daemon::start("monitor:\n  compat_syscalls: false\n");
    let dir = watched_dir();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let path = dir.path().join(marker("ia32-off"));
    let status = Command::new(ia32_program(false))
        .arg(&path)
        .arg(listener.local_addr().unwrap().port().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    daemon.file_barrier(dir.path());
    let records = daemon.records();
    assert!(
        files(&records, s(&path)).is_empty(),
        "compat calls are not seen"
    );
    let coverage = daemon.wait_for("the coverage record", |r| event(r)["type"] == "coverage");
    let file = &event(&coverage)["monitors"]["file"];
    assert!(
        file["blind_spots"]
            .to_string()
            .contains("monitor.compat_syscalls is off"),
        "{file}"
    );
    // A reload that turns them on sees them from then on, and says so.
    let config = fs::read_to_string(&daemon.config).unwrap();
    fs::write(
        &daemon.config,
        config.replace("compat_syscalls: false", "compat_syscalls: true"),
    )
    .unwrap();
    daemon.reload();
    let status = Command::new(ia32_program(false))
        .arg(&path)
        .arg(listener.local_addr().unwrap().port().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    daemon.file_barrier(dir.path());
    let file = files(&daemon.records(), s(&path));
    assert_eq!(file.len(), 2, "create and unlink: {file:#?}");
    let coverage = daemon.wait_for_n("a second coverage record", 2, |r| {
        event(r)["type"] == "coverage"
    });
    assert!(!coverage[1]["event"]["monitors"]["file"]["blind_spots"]
        .to_string()
        .contains("32-bit"));
}

#[test]
fn io_uring_requests_are_seen_when_submitted() {
    if !bpf_available("io_uring_requests_are_seen_when_submitted") {
        return;
    }
    let mut daemon = Daemon::start("");
    let dir = watched_dir();
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp_port = tcp.local_addr().unwrap().port();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_port = udp.local_addr().unwrap().port();
    let name = format!("{}.example", marker("uring"));
    let output = Command::new(c_program("uring.c", &["-luring"]))
        .arg(dir.path())
        .arg(tcp_port.to_string())
        .arg(udp_port.to_string())
        .arg(&name)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let own_port: u16 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap();
    let dns = daemon.wait_for("the io_uring DNS question", |r| {
        event(r)["dns_query"] == name.as_str()
    });
    let pid = event(&dns)["pid"].as_u64().unwrap() as u32;
    daemon.file_barrier(dir.path());
    let records = of_pid(&daemon.records(), pid);
    let via_uring: Vec<&Value> = records
        .iter()
        .filter(|r| event(r)["via"] == "io_uring")
        .collect();
    // What each request's record says, and which of its fields could not be read.
    let summary: Vec<(String, String, String, Value)> = via_uring
        .iter()
        .map(|r| {
            let e = event(r);
            let what = match e["event_type"].as_str() {
                Some("file") => e["path"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_owned(),
                _ => format!("{}:{}", e["daddr"].as_str().unwrap(), e["dport"]),
            };
            (
                e["type"].as_str().unwrap().to_owned(),
                e["syscall"].as_str().unwrap().to_owned(),
                what,
                e["unread"].clone(),
            )
        })
        .collect();
    let row = |kind: &str, syscall: &str, what: String, unread: &[&str]| {
        (
            kind.to_owned(),
            syscall.to_owned(),
            what,
            serde_json::json!(unread),
        )
    };
    assert_eq!(
        summary,
        [
            row("create", "openat", "openat".into(), &["ret"]),
            row("create", "openat2", "openat2".into(), &["ret"]),
            // An unbound socket: its local side comes with the connect.
            row(
                "connect",
                "connect",
                format!("127.0.0.1:{tcp_port}"),
                &["saddr", "sport", "ret"]
            ),
            // A registered file names no socket.
            row(
                "connect",
                "connect",
                format!("127.0.0.1:{tcp_port}"),
                &["protocol", "saddr", "sport", "ret"]
            ),
            // The listener's side; the peer is not known when the accept is submitted.
            row(
                "accept",
                "accept",
                format!("127.0.0.1:{own_port}"),
                &["saddr", "sport", "ret"]
            ),
            row(
                "sendto",
                "sendmsg",
                format!("127.0.0.1:{udp_port}"),
                &["saddr", "sport", "ret"]
            ),
            row("sendto", "sendto", "127.0.0.1:53".into(), &["ret"]),
        ],
        "{via_uring:#?}"
    );
    assert_eq!(event(via_uring[6])["protocol"], "udp");
    assert!(via_uring.iter().all(|r| event(r).get("ret").is_none()));
}
