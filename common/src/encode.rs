//! Events to ring buffer bytes, exactly as the kernel writes them: the inverse of
//! [`crate::decode`], for round-trip tests and fuzzing.

use crate::{
    abi::{self, Header, Pod},
    event::{kernel_dev, BpfObject, Event, ExecEvent, TamperAction, Task, Via},
};

fn flag(set: bool, bit: u32) -> u32 {
    if set {
        bit
    } else {
        0
    }
}

/// Encode an exec event as the kernel would: the inverse of [`decode`], for tests and fuzzing.
fn encode_exec(ev: &ExecEvent) -> Vec<u8> {
    let exe = ev.exe.as_deref().unwrap_or_default();
    let cwd = ev.cwd.clone().unwrap_or_default();
    let args = ev.args.section();
    let mut flags = 0;
    for (set, bit) in [
        (ev.filename_truncated, abi::EXEC_FILENAME_TRUNCATED),
        (ev.exe_truncated, abi::EXEC_EXE_TRUNCATED),
        (ev.cwd_truncated, abi::EXEC_CWD_TRUNCATED),
        (ev.args_truncated, abi::EXEC_ARGS_TRUNCATED),
        (ev.exe.is_some(), abi::EXEC_HAS_EXE),
        (ev.cwd.is_some(), abi::EXEC_HAS_CWD),
    ] {
        if set {
            flags |= bit;
        }
    }
    let fixed_len = std::mem::size_of::<abi::ExecFixed>();
    let size = fixed_len + ev.filename.len() + exe.len() + cwd.len() + args.len();
    let id = ev.exe_id.unwrap_or_default();
    let mut tty = [0u8; 32];
    let n = ev.tty.len().min(31);
    tty[..n].copy_from_slice(&ev.tty[..n]);
    let fixed = abi::ExecFixed {
        hdr: header(abi::KIND_EXEC, size, &ev.task),
        start_boottime_ns: ev.start_boottime_ns,
        filename_len: ev.filename.len() as u32,
        exe_len: exe.len() as u32,
        cwd_len: cwd.len() as u32,
        args_len: args.len() as u32,
        argv_bytes: ev.argv_bytes,
        flags,
        exe_ino: id.ino,
        exe_size: id.size,
        exe_ctime_sec: id.ctime_sec,
        exe_ctime_nsec: id.ctime_nsec,
        exe_dev: kernel_dev(id.dev),
        exe_nlink: u32::from(!ev.exe_deleted),
        auid: ev.auid.unwrap_or(u32::MAX),
        sessionid: ev.session_id.unwrap_or(u32::MAX),
        stdin_mode: ev.stdin_mode,
        stdout_mode: ev.stdout_mode,
        tty,
    };
    let mut out = fixed.as_bytes().to_vec();
    for section in [&ev.filename[..], exe, &cwd, args] {
        out.extend_from_slice(section);
    }
    out
}

/// Encode any event as the kernel would.
pub fn encode(ev: &Event) -> Vec<u8> {
    match ev {
        Event::File(e) => {
            let mut fixed = abi::FileFixed {
                hdr: header(abi::KIND_FILE, 0, &e.task),
                ret: e.ret,
                syscall: e.syscall,
                flags: e.flags,
                mode: e.mode,
                path_len: e.path.len() as u32,
                path2_len: e.path2.as_ref().map_or(0, |p| p.len() as u32),
                path_flags: flag(e.path_truncated, abi::PATH_TRUNCATED)
                    | flag(e.path2_truncated, abi::PATH2_TRUNCATED)
                    | flag(e.unclean, abi::PATH_UNCLEAN),
            };
            let mut data = e.path.clone();
            if let Some(path2) = &e.path2 {
                data.extend_from_slice(path2);
            }
            fixed.hdr.size = (std::mem::size_of::<abi::FileFixed>() + data.len()) as u32;
            [fixed.as_bytes(), &data].concat()
        }
        Event::Net(e) => {
            let fixed = abi::NetFixed {
                hdr: header(
                    abi::KIND_NET,
                    std::mem::size_of::<abi::NetFixed>() + e.payload.len(),
                    &e.task,
                ),
                ret: e.ret,
                syscall: e.syscall,
                family: e.family,
                protocol: e.protocol,
                sport: e.sport,
                dport: e.dport,
                payload_len: e.payload.len() as u32,
                saddr: e.saddr,
                daddr: e.daddr,
            };
            [fixed.as_bytes(), &e.payload].concat()
        }
        Event::Priv(e) => abi::Priv {
            hdr: header(abi::KIND_PRIV, std::mem::size_of::<abi::Priv>(), &e.task),
            ret: e.ret,
            syscall: e.syscall,
            uid: e.before.uid,
            gid: e.before.gid,
            euid: e.before.euid,
            egid: e.before.egid,
            new_uid: e.after.uid,
            new_gid: e.after.gid,
            new_euid: e.after.euid,
            new_egid: e.after.egid,
            arg0: e.args[0],
            arg1: e.args[1],
            arg2: e.args[2],
        }
        .as_bytes()
        .to_vec(),
        Event::Module(e) => {
            let path = e.path.clone().unwrap_or_default();
            let fixed = abi::ModuleFixed {
                hdr: header(
                    abi::KIND_MODULE,
                    std::mem::size_of::<abi::ModuleFixed>() + path.len(),
                    &e.task,
                ),
                ret: e.ret,
                syscall: e.syscall,
                flags: flag(e.path_truncated, abi::PATH_TRUNCATED),
                path_len: path.len() as u32,
                _pad0: 0,
            };
            [fixed.as_bytes(), &path].concat()
        }
        Event::Write(e) => {
            let path = e.path.clone().unwrap_or_default();
            let fixed = abi::WriteFixed {
                hdr: header(
                    abi::KIND_WRITE,
                    std::mem::size_of::<abi::WriteFixed>() + path.len(),
                    &e.task,
                ),
                count: e.count,
                fd: e.fd,
                flags: flag(e.path.is_some(), abi::PATH_PRESENT)
                    | flag(e.path_truncated, abi::PATH_TRUNCATED),
                path_len: path.len() as u32,
                _pad0: 0,
            };
            [fixed.as_bytes(), &path].concat()
        }
        Event::Tamper(e) => {
            let (action, detail, object_kind, object_id) = match e.action {
                TamperAction::Bpf {
                    command,
                    object,
                    id,
                } => {
                    let kind = match object {
                        BpfObject::Program => abi::OBJECT_PROG,
                        BpfObject::Map => abi::OBJECT_MAP,
                        BpfObject::Link => abi::OBJECT_LINK,
                    };
                    (abi::TAMPER_BPF, command, kind, id)
                }
                TamperAction::Signal(signal) => (abi::TAMPER_SIGNAL, signal, 0, 0),
                TamperAction::Ptrace(request) => (abi::TAMPER_PTRACE, request, 0, 0),
                TamperAction::VmRead => (abi::TAMPER_VM_READ, 0, 0, 0),
                TamperAction::VmWrite => (abi::TAMPER_VM_WRITE, 0, 0, 0),
            };
            abi::Tamper {
                hdr: header(
                    abi::KIND_TAMPER,
                    std::mem::size_of::<abi::Tamper>(),
                    &e.task,
                ),
                action,
                detail,
                object_kind,
                object_id,
                folded: e.folded,
                _pad0: 0,
            }
            .as_bytes()
            .to_vec()
        }
        Event::Exec(e) => encode_exec(e),
        Event::Exit(e) => abi::Exit {
            hdr: header(abi::KIND_EXIT, std::mem::size_of::<abi::Exit>(), &e.task),
            start_boottime_ns: e.start_boottime_ns,
            exit_code: e.status,
            _pad0: 0,
        }
        .as_bytes()
        .to_vec(),
        Event::Fork(e) => abi::Fork {
            hdr: header(abi::KIND_FORK, std::mem::size_of::<abi::Fork>(), &e.parent),
            parent_start_boottime_ns: e.parent_start_boottime_ns,
            child_start_boottime_ns: e.child_start_boottime_ns,
            child_pid: e.child_pid,
            _pad0: 0,
        }
        .as_bytes()
        .to_vec(),
    }
}

fn header(kind: u32, size: usize, t: &Task) -> Header {
    let mut comm = [0u8; 16];
    let n = t.comm.len().min(15);
    comm[..n].copy_from_slice(&t.comm[..n]);
    Header {
        kind,
        size: size as u32,
        ktime_ns: t.ktime_ns,
        pid: t.pid,
        tid: t.tid,
        ppid: t.ppid,
        uid: t.uid,
        gid: t.gid,
        flags: match t.report {
            true => abi::HDR_REPORT,
            false => 0,
        } | match t.via {
            Via::Syscall => 0,
            Via::Ia32 => abi::HDR_IA32,
            Via::IoUring => abi::HDR_IO_URING,
        },
        cgroup_id: t.cgroup_id,
        comm,
    }
}
