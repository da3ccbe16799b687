//! Real eBPF: another process reaching owod is reported in a `tamper` agent record that names
//! it. Each is done for real: bpftool on owod's programs, maps and links, a signal from kill,
//! a ptrace attach from gdb, and process_vm_readv from a Python program.

mod harness;

use std::process::{Command, Output};

use harness::{bpf_available, event, python, Daemon};
use serde_json::Value;

fn bpftool(args: &[&str]) -> Output {
    Command::new("bpftool")
        .args(args)
        .output()
        .expect("run bpftool (`make deps` installs it)")
}

fn json(output: &Output) -> Value {
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).expect("bpftool's JSON")
}

/// The id of the map called `name` among those a program (as `bpftool -j prog show` gives it)
/// uses.
fn map_named(program: &Value, name: &str) -> String {
    program["map_ids"]
        .as_array()
        .expect("the program uses maps")
        .iter()
        .map(|id| id.as_u64().unwrap().to_string())
        .find(|id| json(&bpftool(&["-j", "map", "show", "id", id]))["name"] == name)
        .unwrap_or_else(|| panic!("owod's map `{name}`"))
}

/// Wait for the tamper record of `action` by a process named `comm` that `pred` accepts.
fn tamper(daemon: &mut Daemon, comm: &str, action: &str, pred: impl Fn(&Value) -> bool) -> Value {
    daemon.wait_for(&format!("a {action} tamper record by {comm}"), |r| {
        let e = event(r);
        e["type"] == "tamper" && e["action"] == action && e["comm"] == comm && pred(e)
    })
}

#[test]
fn bpf_calls_on_owods_objects_are_tampering() {
    if !bpf_available("bpf_calls_on_owods_objects_are_tampering") {
        return;
    }
    let mut daemon = Daemon::start("");
    let program = daemon.program_ids()[0];
    let shown = json(&bpftool(&[
        "-j",
        "prog",
        "show",
        "id",
        &program.to_string(),
    ]));
    let found = tamper(&mut daemon, "bpftool", "bpf", |e| {
        e["bpf_command"] == "prog_get_fd_by_id" && e["object"] == "program"
    });
    assert_eq!(event(&found)["object_id"], program, "{found}");
    assert_eq!(event(&found)["exe"], "/usr/sbin/bpftool", "{found}");

    // A read and an update of owod's own config map (with the value it holds).
    let config = map_named(&shown, "owo_config");
    let key = ["key", "11", "0", "0", "0"];
    let looked = json(&bpftool(
        &[&["-j", "map", "lookup", "id", &config][..], &key].concat(),
    ));
    let value: Vec<String> = looked["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            u8::from_str_radix(b.as_str().unwrap().trim_start_matches("0x"), 16)
                .unwrap()
                .to_string()
        })
        .collect();
    let value: Vec<&str> = value.iter().map(String::as_str).collect();
    let update = [
        &["map", "update", "id", &config][..],
        &key,
        &["value"],
        &value,
    ]
    .concat();
    assert!(bpftool(&update).status.success());
    let config: u64 = config.parse().unwrap();
    for command in ["map_lookup_elem", "map_update_elem"] {
        let r = tamper(&mut daemon, "bpftool", "bpf", |e| {
            e["bpf_command"] == command
        });
        assert_eq!(
            (
                event(&r)["object"].as_str(),
                event(&r)["object_id"].as_u64()
            ),
            (Some("map"), Some(config)),
            "{r}"
        );
    }

    // Pinned, and reached again by its pinned path.
    let bpffs = tempfile::tempdir().unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "bpf", "bpf"])
        .arg(bpffs.path())
        .status()
        .unwrap();
    assert!(mounted.success(), "mount a bpf file system");
    let pin = bpffs.path().join("owo-config");
    let pin = pin.to_str().unwrap();
    let config_id = config.to_string();
    let pinned = bpftool(&["map", "pin", "id", &config_id, pin]);
    let shown = bpftool(&["map", "show", "pinned", pin]);
    let _ = Command::new("umount").arg(bpffs.path()).status();
    assert!(
        pinned.status.success() && shown.status.success(),
        "{pinned:?} {shown:?}"
    );
    for command in ["obj_pin", "obj_get"] {
        let r = tamper(&mut daemon, "bpftool", "bpf", |e| {
            e["bpf_command"] == command
        });
        assert_eq!(event(&r)["object_id"], config, "{r}");
    }

    // The map of owod's own objects is frozen: an update is refused, and reported.
    let ours = daemon.program_ids();
    let programs = json(&bpftool(&["-j", "prog", "show"]));
    let guard = programs
        .as_array()
        .unwrap()
        .iter()
        .find(|p| {
            p["name"] == "owo_tamper_bpf" && ours.contains(&(p["id"].as_u64().unwrap() as u32))
        })
        .expect("owod's bpf(2) guard");
    let own = map_named(guard, "owo_self_object");
    let refused = bpftool(&[
        "map", "update", "id", &own, "key", "1", "0", "0", "0", "1", "0", "0", "0", "value", "1",
        "0", "0", "0",
    ]);
    assert!(
        !refused.status.success(),
        "a frozen map was updated: {refused:?}"
    );
    let own: u64 = own.parse().unwrap();
    tamper(&mut daemon, "bpftool", "bpf", |e| {
        e["bpf_command"] == "map_update_elem" && e["object_id"] == own
    });

    // A link of owod's: its detach is reported whether or not the kernel allows it.
    let links = json(&bpftool(&["-j", "link", "show"]));
    let link = links
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["prog_id"] == program)
        .expect("a link of owod's program")["id"]
        .as_u64()
        .unwrap();
    let _ = bpftool(&["link", "detach", "id", &link.to_string()]);
    let r = tamper(&mut daemon, "bpftool", "bpf", |e| {
        e["bpf_command"] == "link_detach"
    });
    assert_eq!(event(&r)["object_id"], link, "{r}");
    assert!(daemon.stop().success());
}

#[test]
fn signals_ptrace_and_memory_reads_are_tampering() {
    if !bpf_available("signals_ptrace_and_memory_reads_are_tampering") {
        return;
    }
    let mut daemon = Daemon::start("");
    let pid = daemon.child.id();
    let kill = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let r = tamper(&mut daemon, "kill", "signal", |e| {
        e["signal_name"] == "SIGHUP"
    });
    assert_eq!(event(&r)["signal"], 1);

    // gdb attaches and detaches at once.
    let gdb = Command::new("gdb")
        .args(["-p", &pid.to_string(), "-batch", "-ex", "detach"])
        .output()
        .expect("run gdb (`make deps` installs it)");
    assert!(gdb.status.success(), "{gdb:?}");
    let r = tamper(&mut daemon, "gdb", "ptrace", |_| true);
    assert_eq!(event(&r)["request"], "attach", "{r}");

    python(&format!(
        "import ctypes\n\
         libc = ctypes.CDLL(None, use_errno=True)\n\
         class iovec(ctypes.Structure):\n    _fields_ = [('base', ctypes.c_void_p), ('len', ctypes.c_size_t)]\n\
         buf = ctypes.create_string_buffer(8)\n\
         local = iovec(ctypes.cast(buf, ctypes.c_void_p), 8)\n\
         remote = iovec(0x1000, 8)\n\
         libc.process_vm_readv({pid}, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)"
    ));
    tamper(&mut daemon, "python3", "process_vm_readv", |_| true);
    assert!(daemon.stop().success());
}

#[test]
fn writes_to_owods_files_and_opens_of_its_memory_are_tampering() {
    if !bpf_available("writes_to_owods_files_and_opens_of_its_memory_are_tampering") {
        return;
    }
    let mut daemon = Daemon::start("monitor:\n  write_events: true\n");
    let pid = daemon.child.id();
    let config = daemon.config.display().to_string();
    let binary = std::fs::canonicalize(harness::owod_bin()).unwrap();
    let binary = binary.display().to_string();
    python(&format!(
        "import os\n\
         with open({config:?}, 'a') as f:\n    f.write('# tampered\\n')\n\
         open('/proc/{pid}/mem', 'rb').close()\n\
         open('/proc/{pid}/status').read()\n\
         try:\n    os.open({binary:?}, os.O_WRONLY)\n\
         except OSError:\n    pass"
    ));
    let r = tamper(&mut daemon, "python3", "file", |e| {
        e["path"] == config.as_str()
    });
    assert_eq!(
        event(&r)["operation"],
        "create",
        "an append opens with O_CREAT: {r}"
    );
    let r = tamper(&mut daemon, "python3", "memory_open", |_| true);
    assert_eq!(event(&r)["path"], format!("/proc/{pid}/mem"));
    // The running binary cannot be opened for writing, and the attempt is reported.
    let r = tamper(&mut daemon, "python3", "file", |e| {
        e["path"] == binary.as_str()
    });
    assert_eq!(
        (event(&r)["operation"].as_str(), event(&r)["ret"].as_i64()),
        (Some("write"), Some(-i64::from(libc::ETXTBSY))),
        "{r}"
    );
    // owod watches its /proc directory and its config for this, and reports no file or write
    // records of them where no configured path covers them.
    daemon.barrier();
    let unasked: Vec<Value> = daemon
        .records()
        .into_iter()
        .filter(|r| {
            ["file", "write"].contains(&event(r)["event_type"].as_str().unwrap_or(""))
                && event(r)["path"]
                    .as_str()
                    .is_some_and(|p| p.starts_with("/proc/") || p == config)
        })
        .collect();
    assert!(unasked.is_empty(), "{unasked:#?}");
    assert!(daemon.stop().success());
}

#[test]
fn a_32_bit_ptrace_attach_is_tampering() {
    if !bpf_available("a_32_bit_ptrace_attach_is_tampering") {
        return;
    }
    let mut daemon = Daemon::start("");
    let pid = daemon.child.id();
    // `int 0x80` from a 64-bit program: no syscalls tracepoint sees it.
    let program = harness::c_program("ia32.c", &[]);
    let name: String = program
        .file_name()
        .unwrap()
        .to_string_lossy()
        .chars()
        .take(15)
        .collect();
    let attached = Command::new(&program)
        .args(["--attach", &pid.to_string()])
        .status()
        .unwrap();
    assert!(attached.success());
    let r = tamper(&mut daemon, &name, "ptrace", |_| true);
    assert_eq!(
        (event(&r)["request"].as_str(), event(&r)["via"].as_str()),
        (Some("attach"), Some("ia32")),
        "{r}"
    );
    assert!(daemon.stop().success());
}
