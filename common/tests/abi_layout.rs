//! The C structs of `ebpf/include/owo_abi.h` and their Rust mirrors must agree in size and in
//! every field offset. This compiles a probe against the real header with the host C compiler
//! and compares what it prints with `size_of`/`offset_of!` (bindgen's layout tests, by hand).

use std::{mem::offset_of, mem::size_of, path::PathBuf, process::Command};

use owo_common::abi;

/// (C struct, C field or "" for the size, Rust value)
fn rust_layout() -> Vec<(&'static str, &'static str, usize)> {
    macro_rules! fields {
        ($out:ident, $c:literal, $rust:ty, size = $size:expr, [$($field:ident),*]) => {
            $out.push(($c, "", $size));
            $( $out.push(($c, stringify!($field), offset_of!($rust, $field))); )*
        };
    }
    let mut out = Vec::new();
    fields!(
        out,
        "owo_header",
        abi::Header,
        size = size_of::<abi::Header>(),
        [kind, size, ktime_ns, pid, tid, ppid, uid, gid, flags, cgroup_id, comm]
    );
    // The C struct ends with the data array; the Rust mirror is its fixed part.
    fields!(
        out,
        "owo_exec",
        abi::ExecFixed,
        size = size_of::<abi::ExecFixed>() + abi::EXEC_DATA_MAX,
        [
            hdr,
            start_boottime_ns,
            filename_len,
            exe_len,
            cwd_len,
            args_len,
            argv_bytes,
            flags,
            exe_ino,
            exe_size,
            exe_ctime_sec,
            exe_ctime_nsec,
            exe_dev,
            exe_nlink,
            auid,
            sessionid,
            stdin_mode,
            stdout_mode,
            tty
        ]
    );
    out.push(("owo_exec", "data", size_of::<abi::ExecFixed>()));
    fields!(
        out,
        "owo_exit",
        abi::Exit,
        size = size_of::<abi::Exit>(),
        [hdr, start_boottime_ns, exit_code, _pad0]
    );
    fields!(
        out,
        "owo_fork",
        abi::Fork,
        size = size_of::<abi::Fork>(),
        [
            hdr,
            parent_start_boottime_ns,
            child_start_boottime_ns,
            child_pid,
            _pad0
        ]
    );
    fields!(
        out,
        "owo_file",
        abi::FileFixed,
        size = size_of::<abi::FileFixed>() + 2 * abi::PATH_MAX,
        [hdr, ret, syscall, flags, mode, path_len, path2_len, path_flags]
    );
    out.push(("owo_file", "data", size_of::<abi::FileFixed>()));
    fields!(
        out,
        "owo_net",
        abi::NetFixed,
        size = size_of::<abi::NetFixed>() + abi::PAYLOAD_MAX,
        [
            hdr,
            ret,
            syscall,
            family,
            protocol,
            sport,
            dport,
            payload_len,
            saddr,
            daddr
        ]
    );
    out.push(("owo_net", "payload", size_of::<abi::NetFixed>()));
    fields!(
        out,
        "owo_priv",
        abi::Priv,
        size = size_of::<abi::Priv>(),
        [
            hdr, ret, syscall, uid, gid, euid, egid, new_uid, new_gid, new_euid, new_egid, arg0,
            arg1, arg2
        ]
    );
    fields!(
        out,
        "owo_module",
        abi::ModuleFixed,
        size = size_of::<abi::ModuleFixed>() + abi::PATH_MAX,
        [hdr, ret, syscall, flags, path_len, _pad0]
    );
    out.push(("owo_module", "data", size_of::<abi::ModuleFixed>()));
    fields!(
        out,
        "owo_write",
        abi::WriteFixed,
        size = size_of::<abi::WriteFixed>() + abi::PATH_MAX,
        [hdr, count, fd, flags, path_len, _pad0]
    );
    out.push(("owo_write", "data", size_of::<abi::WriteFixed>()));
    fields!(
        out,
        "owo_tamper",
        abi::Tamper,
        size = size_of::<abi::Tamper>(),
        [hdr, action, detail, object_kind, object_id, folded, _pad0]
    );
    fields!(
        out,
        "owo_self_object",
        abi::SelfObject,
        size = size_of::<abi::SelfObject>(),
        [kind, id]
    );
    fields!(
        out,
        "owo_watch_name",
        abi::WatchName,
        size = size_of::<abi::WatchName>(),
        [parent, name]
    );
    fields!(
        out,
        "owo_watch_node",
        abi::WatchNode,
        size = size_of::<abi::WatchNode>(),
        [node, watched, _pad0]
    );
    out
}

/// The constants that both sides must agree on, as (C expression, Rust value).
fn rust_constants() -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = abi::SYSCALLS
        .iter()
        .map(|(value, name)| {
            (
                format!("OWO_SYS_{}", name.to_uppercase()),
                u64::from(*value),
            )
        })
        .collect();
    out.extend(
        abi::IA32_CALLS
            .iter()
            .map(|(value, program)| (program.to_uppercase(), u64::from(*value))),
    );
    let fixed: Vec<(&'static str, u64)> = vec![
        ("OWO_IA32_CALLS", abi::IA32_CALLS.len() as u64),
        ("OWO_HDR_IA32", abi::HDR_IA32.into()),
        ("OWO_HDR_IO_URING", abi::HDR_IO_URING.into()),
        ("OWO_RET_UNREAD", abi::RET_UNREAD as u64),
        ("OWO_KIND_EXEC", abi::KIND_EXEC.into()),
        ("OWO_KIND_EXIT", abi::KIND_EXIT.into()),
        ("OWO_KIND_FORK", abi::KIND_FORK.into()),
        ("OWO_KIND_FILE", abi::KIND_FILE.into()),
        ("OWO_KIND_NET", abi::KIND_NET.into()),
        ("OWO_KIND_PRIV", abi::KIND_PRIV.into()),
        ("OWO_KIND_MODULE", abi::KIND_MODULE.into()),
        ("OWO_KIND_WRITE", abi::KIND_WRITE.into()),
        ("OWO_KIND_TAMPER", abi::KIND_TAMPER.into()),
        ("OWO_MON_TAMPER", abi::Monitor::Tamper as u64),
        ("OWO_TAMPER_BPF", abi::TAMPER_BPF.into()),
        ("OWO_TAMPER_SIGNAL", abi::TAMPER_SIGNAL.into()),
        ("OWO_TAMPER_PTRACE", abi::TAMPER_PTRACE.into()),
        ("OWO_TAMPER_VM_READ", abi::TAMPER_VM_READ.into()),
        ("OWO_TAMPER_VM_WRITE", abi::TAMPER_VM_WRITE.into()),
        ("OWO_OBJECT_PROG", abi::OBJECT_PROG.into()),
        ("OWO_OBJECT_MAP", abi::OBJECT_MAP.into()),
        ("OWO_OBJECT_LINK", abi::OBJECT_LINK.into()),
        ("OWO_CFG_FILE_ALL_PATHS", abi::CFG_FILE_ALL_PATHS.into()),
        ("OWO_WATCH_MAX", abi::WATCH_MAX as u64),
        ("OWO_WATCH_PATHS", abi::WATCH_PATHS.into()),
        ("OWO_GUARD_PATHS", abi::GUARDED_PATHS.into()),
        ("OWO_WATCH_NAME", abi::WATCH_NAME as u64),
        ("OWO_WATCH_DEPTH", abi::WATCH_DEPTH as u64),
        ("OWO_PAYLOAD_MAX", abi::PAYLOAD_MAX as u64),
        ("OWO_PATH_TRUNCATED", abi::PATH_TRUNCATED.into()),
        ("OWO_PATH2_TRUNCATED", abi::PATH2_TRUNCATED.into()),
        ("OWO_PATH_PRESENT", abi::PATH_PRESENT.into()),
        ("OWO_PATH_UNCLEAN", abi::PATH_UNCLEAN.into()),
        ("OWO_PATH_DEPTH", 64),
        ("OWO_MON_COUNT", abi::MONITOR_COUNT.into()),
        ("OWO_MON_EXECVE", abi::Monitor::Execve as u64),
        ("OWO_MON_EXIT", abi::Monitor::Exit as u64),
        ("OWO_MON_FILE", abi::Monitor::File as u64),
        ("OWO_MON_NETWORK", abi::Monitor::Network as u64),
        ("OWO_MON_PRIVILEGE", abi::Monitor::Privilege as u64),
        ("OWO_MON_WRITE", abi::Monitor::Write as u64),
        ("OWO_MON_MODULE", abi::Monitor::Module as u64),
        ("OWO_MON_FORK", abi::Monitor::Fork as u64),
        ("OWO_CFG_SELF_TGID", abi::CFG_SELF_TGID.into()),
        ("OWO_CFG_LEN", abi::CFG_LEN.into()),
        ("OWO_HDR_REPORT", abi::HDR_REPORT.into()),
        ("OWO_PATH_MAX", abi::PATH_MAX as u64),
        ("OWO_NAME_MAX", abi::NAME_MAX as u64),
        ("OWO_ARGS_MAX", abi::ARGS_MAX as u64),
        ("OWO_EXEC_DATA_MAX", abi::EXEC_DATA_MAX as u64),
        (
            "OWO_EXEC_FILENAME_TRUNCATED",
            abi::EXEC_FILENAME_TRUNCATED.into(),
        ),
        ("OWO_EXEC_EXE_TRUNCATED", abi::EXEC_EXE_TRUNCATED.into()),
        ("OWO_EXEC_CWD_TRUNCATED", abi::EXEC_CWD_TRUNCATED.into()),
        ("OWO_EXEC_ARGS_TRUNCATED", abi::EXEC_ARGS_TRUNCATED.into()),
        ("OWO_EXEC_HAS_EXE", abi::EXEC_HAS_EXE.into()),
        ("OWO_EXEC_HAS_CWD", abi::EXEC_HAS_CWD.into()),
    ];
    out.extend(
        fixed
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value)),
    );
    out
}

#[test]
fn c_and_rust_agree_on_every_size_offset_and_constant() {
    let include = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ebpf/include");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut probe = String::from(
        "#include <stdio.h>\n#include <stddef.h>\n#include \"owo_abi.h\"\nint main(void) {\n",
    );
    let layout = rust_layout();
    for (st, field, _) in &layout {
        let expr = if field.is_empty() {
            format!("sizeof(struct {st})")
        } else {
            format!("offsetof(struct {st}, {field})")
        };
        probe += &format!("  printf(\"%zu\\n\", (size_t){expr});\n");
    }
    let constants = rust_constants();
    for (name, _) in &constants {
        probe += &format!("  printf(\"%llu\\n\", (unsigned long long){name});\n");
    }
    probe += "  return 0;\n}\n";
    let src = dir.path().join("probe.c");
    let bin = dir.path().join("probe");
    std::fs::write(&src, probe).expect("write probe");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let status = Command::new(&cc)
        .arg("-I")
        .arg(&include)
        .arg(&src)
        .arg("-o")
        .arg(&bin)
        .status()
        .unwrap_or_else(|e| panic!("cannot run the C compiler `{cc}`: {e}"));
    assert!(
        status.success(),
        "the layout probe did not compile against owo_abi.h"
    );
    let out = Command::new(&bin).output().expect("run probe");
    let c_values: Vec<u64> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(c_values.len(), layout.len() + constants.len());

    let mut drift = Vec::new();
    for ((st, field, rust), c) in layout.iter().zip(&c_values) {
        if *rust as u64 != *c {
            drift.push(format!(
                "struct {st} {}: C {c}, Rust {rust}",
                if field.is_empty() { "size" } else { field }
            ));
        }
    }
    for ((name, rust), c) in constants.iter().zip(&c_values[layout.len()..]) {
        if rust != c {
            drift.push(format!("{name}: C {c}, Rust {rust}"));
        }
    }
    assert!(
        drift.is_empty(),
        "owo_abi.h and common/src/abi.rs disagree:\n{}",
        drift.join("\n")
    );
}
