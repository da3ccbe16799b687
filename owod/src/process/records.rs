//! The `event` object of each record (DESIGN §3), built from a decoded event and the process
//! table. Strings go through `owo_common::render` (escaping, budgets, `_truncated` flags).

use std::net::{Ipv4Addr, Ipv6Addr};

use owo_common::{
    abi,
    event::{ExecEvent, ExitEvent, FileEvent, ModuleEvent, NetEvent, PrivEvent, Task, WriteEvent},
    render::{self, put_args, put_bytes, CMDLINE_BUDGET, NAME_BUDGET, PATH_BUDGET},
};
use serde_json::{Map, Value};

use super::{
    context::{parse_cgroup, tty_name, UserNames},
    hash::HashOutcome,
    table::{ns_to_ticks, ProcessTable},
    write_paths::WritePath,
};
use crate::collector::Loss;

type Fields = Map<String, Value>;

/// What record builders look up: the process table and the user names.
pub struct Lookups<'a> {
    pub table: &'a ProcessTable,
    pub users: &'a mut UserNames,
}

/// The fields every process-attributed record starts with.
fn task_fields(lk: &mut Lookups<'_>, event_type: &str, task: &Task, exe: Option<&[u8]>) -> Fields {
    let mut m = Map::new();
    m.insert("event_type".into(), event_type.into());
    m.insert("pid".into(), task.pid.into());
    m.insert("tid".into(), task.tid.into());
    m.insert("ppid".into(), task.ppid.into());
    m.insert("uid".into(), task.uid.into());
    if let Some(user) = lk.users.name(task.uid) {
        put_bytes(&mut m, "user", user.as_bytes(), NAME_BUDGET, false);
    }
    m.insert("gid".into(), task.gid.into());
    put_bytes(&mut m, "comm", &task.comm, NAME_BUDGET, false);
    if let Some(exe) = exe {
        put_bytes(&mut m, "exe", exe, PATH_BUDGET, false);
    }
    m.insert("cgroup_id".into(), task.cgroup_id.into());
    m
}

/// Task fields for an activity record: the image is the one the table knows for the process.
fn activity_fields(lk: &mut Lookups<'_>, event_type: &str, task: &Task) -> Fields {
    let exe = lk.table.get(task.pid).and_then(|p| p.exe.clone());
    task_fields(lk, event_type, task, exe.as_deref())
}

fn syscall(m: &mut Fields, value: u32) {
    m.insert(
        "syscall".into(),
        abi::syscall_name(value).map_or(Value::from(value), Value::from),
    );
}

/// Where an exec happened, looked up by the stage.
pub struct ExecContext<'a> {
    pub cgroup: Option<&'a str>,
    /// `enrich.sha256` is on: a `sha256` (or `sha256_status`) field will be filled in.
    pub hashing: bool,
}

pub fn exec(lk: &mut Lookups<'_>, e: &ExecEvent, cx: &ExecContext<'_>) -> Fields {
    let mut m = task_fields(lk, "execve", &e.task, e.exe.as_deref());
    if e.exe_truncated {
        m.insert("exe_truncated".into(), true.into());
    }
    let memfd = e.exe.as_deref().is_some_and(|p| p.starts_with(b"/memfd:"));
    if memfd {
        m.insert("exe_memfd".into(), true.into());
    } else if e.exe_deleted {
        m.insert("exe_deleted".into(), true.into());
    }
    if let Some(id) = e.exe_id {
        m.insert("inode".into(), id.ino.into());
    }
    if cx.hashing {
        // Its place in the record; the hashing stage fills it in.
        m.insert("sha256_status".into(), "pending".into());
    }
    put_bytes(
        &mut m,
        "path",
        &e.filename,
        PATH_BUDGET,
        e.filename_truncated,
    );
    put_bytes(
        &mut m,
        "cmdline",
        &render::join_cmdline(&e.args),
        CMDLINE_BUDGET,
        e.args_truncated,
    );
    put_args(&mut m, &e.args, e.args_truncated);
    if let Some(cwd) = &e.cwd {
        put_bytes(&mut m, "cwd", cwd, PATH_BUDGET, e.cwd_truncated);
    }
    for (key, mode) in [("stdin", e.stdin_mode), ("stdout", e.stdout_mode)] {
        if let Some(kind) = owo_common::event::file_kind(mode) {
            m.insert(key.into(), kind.into());
        }
    }
    m.insert("is_tty".into(), (!e.tty.is_empty()).into());
    if !e.tty.is_empty() {
        m.insert("tty".into(), tty_name(&e.tty).into());
    }
    if let Some(auid) = e.auid {
        m.insert("auid".into(), auid.into());
    }
    if let Some(session) = e.session_id {
        m.insert("session_id".into(), session.into());
    }
    if let Some(path) = cx.cgroup {
        put_bytes(&mut m, "cgroup", path.as_bytes(), PATH_BUDGET, false);
        let info = parse_cgroup(path);
        if let Some(id) = info.container_id {
            m.insert("container_id".into(), id.into());
        }
        if let Some(runtime) = info.container_runtime {
            m.insert("container_runtime".into(), runtime.into());
        }
        if let Some(pod) = info.pod_uid {
            m.insert("pod_uid".into(), pod.into());
        }
        if let Some(unit) = info.systemd_unit {
            put_bytes(&mut m, "systemd_unit", unit.as_bytes(), NAME_BUDGET, false);
        }
    }
    if let Some(parent) = lk.table.get(e.task.ppid) {
        if let Some(exe) = &parent.exe {
            put_bytes(&mut m, "parent_path", exe, PATH_BUDGET, false);
        }
        put_bytes(
            &mut m,
            "parent_cmdline",
            &render::join_cmdline(&parent.args),
            CMDLINE_BUDGET,
            false,
        );
    }
    let ancestors = lk.table.ancestors(e.task.ppid).join(&b'|');
    put_bytes(&mut m, "ancestors", &ancestors, PATH_BUDGET, false);
    m
}

/// Fill in the hash (or why there is none) where [`exec`] left its place.
pub fn put_hash(m: &mut Fields, outcome: &HashOutcome) {
    match outcome {
        HashOutcome::Hash(hex) => {
            // Replace the placeholder in place, keeping the record's field order.
            let at = m
                .keys()
                .position(|k| k == "sha256_status")
                .unwrap_or(m.len());
            m.shift_remove("sha256_status");
            m.shift_insert(at.min(m.len()), "sha256".into(), hex.as_str().into());
        }
        other => {
            m.insert("sha256_status".into(), other.status().into());
            if let HashOutcome::Error(why) = other {
                m.insert("sha256_error".into(), why.as_str().into());
            }
        }
    }
}

pub fn exit(lk: &mut Lookups<'_>, e: &ExitEvent) -> Fields {
    let known = lk
        .table
        .get(e.task.pid)
        .filter(|p| p.start_ticks == ns_to_ticks(e.start_boottime_ns));
    let exe = known.and_then(|p| p.exe.clone());
    let mut m = task_fields(lk, "exit", &e.task, exe.as_deref());
    m.insert("exit_code".into(), e.exit_code().into());
    if let Some(sig) = e.signal() {
        m.insert("signal".into(), sig.into());
    }
    if e.core_dumped() {
        m.insert("core_dumped".into(), true.into());
    }
    m
}

const O_CREAT: u32 = 0o100;
const O_ACCMODE: u32 = 0o3;
const O_CLOEXEC: u32 = 0o2000000;

/// A shared object, as the loader names them: `libx.so`, `libx.so.6`, `libx.so.6.0.1`.
pub fn is_shared_object(path: &[u8]) -> bool {
    let name = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
    if name.ends_with(b".so") {
        return true;
    }
    name.windows(4)
        .enumerate()
        .any(|(i, w)| w == b".so." && name.get(i + 4).is_some_and(u8::is_ascii_digit))
}

/// Remove `.` and `name/..` components, which a path made of a cwd and a relative name can hold.
/// Lexical: a `..` after a symlink is taken as written.
pub fn clean_path(path: &[u8]) -> Vec<u8> {
    let needs = path.split(|&b| b == b'/').any(|c| c == b"." || c == b"..")
        || path.windows(2).any(|w| w == b"//");
    if !needs {
        return path.to_vec();
    }
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    let mut out = Vec::with_capacity(path.len());
    for c in &parts {
        out.push(b'/');
        out.extend_from_slice(c);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

pub fn file(lk: &mut Lookups<'_>, e: &FileEvent) -> Fields {
    let mut m = activity_fields(lk, "file", &e.task);
    let path = clean_path(&e.path);
    let kind = match abi::syscall_name(e.syscall).unwrap_or("") {
        "unlink" | "unlinkat" | "rmdir" => "unlink",
        "rename" | "renameat" | "renameat2" => "rename",
        _ if e.flags & O_CREAT != 0 => "create",
        // The loader opens a library read-only and close-on-exec; a failed lookup along the
        // search path, or `cp libx.so`, is an open.
        _ if e.ret >= 0
            && e.flags & O_ACCMODE == 0
            && e.flags & O_CLOEXEC != 0
            && is_shared_object(&path) =>
        {
            "library_load"
        }
        _ => "open",
    };
    m.insert("type".into(), kind.into());
    syscall(&mut m, e.syscall);
    put_bytes(&mut m, "path", &path, PATH_BUDGET, e.path_truncated);
    if let Some(path2) = &e.path2 {
        put_bytes(
            &mut m,
            "path2",
            &clean_path(path2),
            PATH_BUDGET,
            e.path2_truncated,
        );
    }
    m.insert("flags".into(), e.flags.into());
    if kind == "create" {
        m.insert("mode".into(), e.mode.into());
    }
    m.insert("ret".into(), e.ret.into());
    m
}

fn address(family: u16, bytes: &[u8; 16]) -> String {
    if family == 2 {
        Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).to_string()
    } else {
        Ipv6Addr::from(*bytes).to_string()
    }
}

pub fn network(lk: &mut Lookups<'_>, e: &NetEvent) -> Fields {
    let mut m = activity_fields(lk, "network", &e.task);
    let name = abi::syscall_name(e.syscall).unwrap_or("");
    let kind = match name {
        "connect" => "connect",
        "accept" | "accept4" => "accept",
        _ => "sendto",
    };
    m.insert("type".into(), kind.into());
    syscall(&mut m, e.syscall);
    m.insert(
        "family".into(),
        if e.family == 2 { "ipv4" } else { "ipv6" }.into(),
    );
    let protocol = match e.protocol {
        6 => Value::from("tcp"),
        17 => Value::from("udp"),
        other => Value::from(other),
    };
    m.insert("protocol".into(), protocol);
    m.insert("saddr".into(), address(e.family, &e.saddr).into());
    m.insert("sport".into(), e.sport.into());
    m.insert("daddr".into(), address(e.family, &e.daddr).into());
    m.insert("dport".into(), e.dport.into());
    let is_dns = e.dport == 53;
    m.insert("is_dns".into(), is_dns.into());
    if is_dns {
        if let Some(name) = owo_common::dns::query_name(&e.payload) {
            m.insert("dns_query".into(), name.into());
        }
    }
    m.insert("ret".into(), e.ret.into());
    m
}

pub fn privilege(lk: &mut Lookups<'_>, e: &PrivEvent) -> Fields {
    let mut m = activity_fields(lk, "privilege", &e.task);
    // The header's ids are read after the call; a privilege record shows both sides.
    m.insert("uid".into(), e.before.uid.into());
    m.insert("gid".into(), e.before.gid.into());
    m.insert(
        "type".into(),
        abi::syscall_name(e.syscall).unwrap_or("set?id").into(),
    );
    m.insert("euid".into(), e.before.euid.into());
    m.insert("egid".into(), e.before.egid.into());
    m.insert("new_uid".into(), e.after.uid.into());
    m.insert("new_gid".into(), e.after.gid.into());
    m.insert("new_euid".into(), e.after.euid.into());
    m.insert("new_egid".into(), e.after.egid.into());
    let args = match abi::syscall_name(e.syscall) {
        Some("setuid" | "setgid") => &e.args[..1],
        Some("setreuid" | "setregid") => &e.args[..2],
        _ => &e.args[..],
    };
    // -1 means "leave unchanged", as the caller wrote it.
    let args: Vec<Value> = args
        .iter()
        .map(|&a| {
            if a == u32::MAX {
                Value::from(-1)
            } else {
                Value::from(a)
            }
        })
        .collect();
    m.insert("args".into(), Value::Array(args));
    m.insert("ret".into(), e.ret.into());
    m
}

pub fn module(lk: &mut Lookups<'_>, e: &ModuleEvent) -> Fields {
    let mut m = activity_fields(lk, "module", &e.task);
    m.insert(
        "type".into(),
        abi::syscall_name(e.syscall).unwrap_or("init_module").into(),
    );
    if let Some(path) = &e.path {
        put_bytes(&mut m, "path", path, PATH_BUDGET, e.path_truncated);
    }
    m.insert("ret".into(), e.ret.into());
    m
}

pub fn write(lk: &mut Lookups<'_>, e: &WriteEvent, path: WritePath<'_>) -> Fields {
    let mut m = activity_fields(lk, "write", &e.task);
    m.insert("fd".into(), e.fd.into());
    m.insert("count".into(), e.count.into());
    match path {
        WritePath::Fresh(path) => put_bytes(&mut m, "path", path, PATH_BUDGET, e.path_truncated),
        WritePath::Cached(path, truncated) => {
            put_bytes(&mut m, "path", path, PATH_BUDGET, truncated)
        }
        WritePath::Unknown => {
            m.insert("path_unknown".into(), true.into());
        }
    }
    m
}

pub fn loss(loss: &Loss) -> Fields {
    let mut m = Map::new();
    m.insert("event_type".into(), "agent".into());
    m.insert("type".into(), "loss".into());
    m.insert("stage".into(), loss.stage.into());
    if let Some(monitor) = loss.monitor {
        m.insert("monitor".into(), monitor.name().into());
    }
    m.insert("count".into(), loss.count.into());
    m.insert("total".into(), loss.total.into());
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_objects_are_recognised_by_name() {
        for yes in [
            &b"/usr/lib/libc.so.6"[..],
            b"/tmp/x.so",
            b"/a/libz.so.1.2.13",
        ] {
            assert!(is_shared_object(yes), "{}", String::from_utf8_lossy(yes));
        }
        for no in [
            &b"/etc/ld.so.cache"[..],
            b"/tmp/so",
            b"/tmp/x.sonic",
            b"/x.so.conf",
        ] {
            assert!(!is_shared_object(no), "{}", String::from_utf8_lossy(no));
        }
    }

    #[test]
    fn relative_pieces_are_cleaned_lexically() {
        assert_eq!(clean_path(b"/tmp/d/./x"), b"/tmp/d/x");
        assert_eq!(clean_path(b"/tmp/d/../x"), b"/tmp/x");
        assert_eq!(clean_path(b"/.."), b"/");
        assert_eq!(clean_path(b"/tmp//x"), b"/tmp/x");
        assert_eq!(clean_path(b"/tmp/..x/y"), b"/tmp/..x/y");
    }
}
