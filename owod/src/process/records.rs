//! The typed record of each event (see owod(8)), built from a decoded event and the process
//! table. Strings stay bytes until the hub writes them (escaping, budgets, `_truncated` flags).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Arc,
};

use owo_common::{
    abi,
    event::{
        ExecEvent, ExitEvent, FileEvent, ModuleEvent, NetEvent, PrivEvent, TamperEvent, Task, Via,
        WriteEvent,
    },
};

use super::{
    context::{parse_cgroup, tty_name, UserNames},
    hash::HashOutcome,
    table::{ns_to_ticks, ProcessTable},
};
use crate::{
    collector::Loss,
    pipeline::record::{
        Actor, AgentRecord, ExecRecord, ExitRecord, FileRecord, ModuleRecord, NetworkRecord,
        Parent, PrivilegeRecord, Sha256, SharedPath, TamperRecord, Tampering, WriteRecord,
    },
};

/// What record builders look up: the process table and the user names.
pub struct Lookups<'a> {
    pub table: &'a ProcessTable,
    pub users: &'a mut UserNames,
}

/// Who did it, from the event's header; `exe` is the image, when known.
fn actor(lk: &mut Lookups<'_>, task: Task, exe: Option<Arc<[u8]>>) -> Actor {
    Actor {
        pid: task.pid,
        tid: task.tid,
        ppid: task.ppid,
        uid: task.uid,
        user: lk.users.name(task.uid),
        gid: task.gid,
        comm: task.comm,
        exe,
        cgroup_id: task.cgroup_id,
        via: task.via,
    }
}

/// The actor of an activity record: the image is the one the table knows for the process.
fn activity_actor(lk: &mut Lookups<'_>, task: Task) -> Actor {
    let exe = lk.table.get(task.pid).and_then(|p| p.exe.clone());
    actor(lk, task, exe)
}

/// Where an exec happened, looked up by the stage.
pub struct ExecContext {
    pub cgroup: Option<String>,
    /// `enrich.sha256` is on: the record waits for its hash (or the reason there is none).
    pub hashing: bool,
}

/// The executables of an ancestry joined by `|`, each with `\` and `|` escaped as `\\` and
/// `\|`: a binary named `a|b` cannot pass for two ancestors.
fn ancestry(chain: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(chain.iter().map(|exe| exe.len() + 1).sum());
    for (i, exe) in chain.iter().enumerate() {
        if i > 0 {
            out.push(b'|');
        }
        for &b in *exe {
            if b == b'|' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
    }
    out
}

/// The exec record.
pub fn exec(lk: &mut Lookups<'_>, e: ExecEvent, cx: ExecContext) -> ExecRecord {
    let memfd = e.exe.as_deref().is_some_and(|p| p.starts_with(b"/memfd:"));
    let parent = lk.table.get(e.task.ppid).map(|p| Parent {
        exe: p.exe.clone(),
        args: p.args.clone(),
    });
    let ancestors = ancestry(&lk.table.ancestors(e.task.ppid));
    ExecRecord {
        exe_truncated: e.exe_truncated,
        exe_memfd: memfd,
        exe_deleted: !memfd && e.exe_deleted,
        inode: e.exe_id.map(|id| id.ino),
        sha256: cx.hashing.then_some(Sha256::Pending),
        path: e.filename,
        path_truncated: e.filename_truncated,
        args: e.args,
        args_truncated: e.args_truncated,
        cwd: e.cwd,
        cwd_truncated: e.cwd_truncated,
        stdin: owo_common::event::file_kind(e.stdin_mode),
        stdout: owo_common::event::file_kind(e.stdout_mode),
        tty: (!e.tty.is_empty()).then(|| tty_name(&e.tty)),
        auid: e.auid,
        session_id: e.session_id,
        cgroup: cx.cgroup.map(|path| {
            let info = parse_cgroup(&path);
            (path, info)
        }),
        parent,
        ancestors,
        actor: actor(lk, e.task, e.exe),
    }
}

/// Fill in the hash (or why there is none) where [`exec`] left its place.
pub fn put_hash(record: &mut ExecRecord, outcome: &HashOutcome) {
    record.sha256 = Some(match outcome {
        HashOutcome::Hash(hex) => Sha256::Hash(hex.clone()),
        other => Sha256::Failed {
            status: other.status(),
            error: match other {
                HashOutcome::Error(why) => Some(why.clone()),
                _ => None,
            },
        },
    });
}

pub fn exit(lk: &mut Lookups<'_>, e: ExitEvent) -> ExitRecord {
    let known = lk
        .table
        .get(e.task.pid)
        .filter(|p| p.start_ticks == ns_to_ticks(e.start_boottime_ns));
    let exe = known.and_then(|p| p.exe.clone());
    ExitRecord {
        exit_code: e.exit_code(),
        signal: e.signal(),
        core_dumped: e.core_dumped(),
        actor: actor(lk, e.task, exe),
    }
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
    if !needs_cleaning(path) {
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

fn needs_cleaning(path: &[u8]) -> bool {
    path.split(|&b| b == b'/').any(|c| c == b"." || c == b"..")
        || path.windows(2).any(|w| w == b"//")
}

/// [`clean_path`], without a copy when there is nothing to clean.
fn cleaned(path: Vec<u8>) -> Vec<u8> {
    if needs_cleaning(&path) {
        clean_path(&path)
    } else {
        path
    }
}

pub fn file(lk: &mut Lookups<'_>, e: FileEvent) -> FileRecord {
    let path = cleaned(e.path);
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
    FileRecord {
        actor: activity_actor(lk, e.task),
        kind,
        syscall: e.syscall,
        path,
        path_truncated: e.path_truncated,
        path2: e.path2.map(cleaned),
        path2_truncated: e.path2_truncated,
        flags: e.flags,
        mode: (kind == "create").then_some(e.mode),
        ret: known(e.ret),
    }
}

fn address(family: u16, bytes: [u8; 16]) -> IpAddr {
    if family == 2 {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(bytes))
    }
}

/// A call's result, unless the kernel could not know it.
fn known(ret: i64) -> Option<i64> {
    (ret != abi::RET_UNREAD).then_some(ret)
}

pub fn network(lk: &mut Lookups<'_>, e: NetEvent) -> NetworkRecord {
    let kind = match abi::syscall_name(e.syscall).unwrap_or("") {
        "connect" => "connect",
        "accept" | "accept4" => "accept",
        _ => "sendto",
    };
    let dns_query = (e.dport == 53)
        .then(|| owo_common::dns::query_name(&e.payload))
        .flatten();
    // An io_uring request on a registered file names no socket (the kernel sends protocol 0):
    // our side is not known. Nor is it for a socket not yet bound when the request was
    // submitted (port 0; the connect or send binds it), and an accept's peer is not known yet.
    let uring = e.task.via == Via::IoUring;
    let no_socket = uring && e.protocol == 0;
    let no_source = no_socket || (uring && (kind == "accept" || e.sport == 0));
    NetworkRecord {
        kind,
        syscall: e.syscall,
        protocol: (!no_socket).then_some(e.protocol),
        saddr: (!no_source).then(|| address(e.family, e.saddr)),
        sport: (!no_source).then_some(e.sport),
        daddr: address(e.family, e.daddr),
        dport: e.dport,
        dns_query,
        ret: known(e.ret),
        actor: activity_actor(lk, e.task),
    }
}

pub fn privilege(lk: &mut Lookups<'_>, e: PrivEvent) -> PrivilegeRecord {
    let args = match abi::syscall_name(e.syscall) {
        Some("setuid" | "setgid") => &e.args[..1],
        Some("setreuid" | "setregid") => &e.args[..2],
        _ => &e.args[..],
    };
    // -1 means "leave unchanged", as the caller wrote it.
    let args = args
        .iter()
        .map(|&a| if a == u32::MAX { -1 } else { i64::from(a) })
        .collect();
    let mut actor = activity_actor(lk, e.task);
    // The header's ids are read after the call; a privilege record shows both sides.
    actor.uid = e.before.uid;
    actor.gid = e.before.gid;
    PrivilegeRecord {
        actor,
        syscall: e.syscall,
        before: e.before,
        after: e.after,
        args,
        ret: e.ret,
    }
}

pub fn module(lk: &mut Lookups<'_>, e: ModuleEvent) -> ModuleRecord {
    ModuleRecord {
        syscall: e.syscall,
        path: e.path,
        path_truncated: e.path_truncated,
        ret: e.ret,
        actor: activity_actor(lk, e.task),
    }
}

/// `path`: the file's path as the stage knows it, with whether it was cut.
pub fn write(lk: &mut Lookups<'_>, e: WriteEvent, path: Option<SharedPath>) -> WriteRecord {
    WriteRecord {
        fd: e.fd,
        count: e.count,
        path,
        actor: activity_actor(lk, e.task),
    }
}

pub fn tamper(lk: &mut Lookups<'_>, e: TamperEvent) -> TamperRecord {
    TamperRecord {
        action: Tampering::Kernel(e.action),
        repeats: e.folded,
        actor: activity_actor(lk, e.task),
    }
}

/// A file record's doing to owod's own files or memory (`operation`, as [`super::Guard`] judged
/// it), by the record's process.
pub fn file_tamper(record: &FileRecord, operation: &'static str) -> TamperRecord {
    TamperRecord {
        actor: record.actor.clone(),
        action: Tampering::File {
            operation,
            path: record.path.clone(),
            path2: record.path2.clone(),
            ret: record.ret,
        },
        repeats: 0,
    }
}

pub fn loss(loss: &Loss) -> AgentRecord {
    let mut record = AgentRecord::loss(loss.stage, loss.monitor.map(|m| m.name()), loss.count);
    record.set("total", loss.total);
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ancestry_cannot_be_forged_by_a_name() {
        let chain: [&[u8]; 3] = [b"/sbin/init", b"/tmp/a|/usr/sbin/sshd", b"/x\\y"];
        assert_eq!(
            ancestry(&chain),
            b"/sbin/init|/tmp/a\\|/usr/sbin/sshd|/x\\\\y".to_vec()
        );
        assert!(ancestry(&[]).is_empty());
    }

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
