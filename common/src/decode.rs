//! Ring buffer bytes to [`Event`]: a pure function that checks every length against the record
//! and never panics, whatever the input.

use crate::{
    abi::{self, Header, Pod},
    event::{
        user_dev, Argv, BpfObject, Comm, Creds, Event, ExecEvent, ExitEvent, FileEvent, FileId,
        ForkEvent, ModuleEvent, NetEvent, PrivEvent, TamperAction, TamperEvent, Task, Via,
        WriteEvent,
    },
};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {got} bytes is too short for `{what}` ({need} bytes)")]
    TooShort {
        what: &'static str,
        need: usize,
        got: usize,
    },
    #[error("unknown record kind {0}")]
    UnknownKind(u32),
    #[error("record says it has {declared} bytes but {got} arrived")]
    SizeMismatch { declared: u32, got: usize },
    #[error("sections of the record overrun it ({need} bytes of data needed, {got} present)")]
    SectionOverrun { need: usize, got: usize },
    #[error("`{what}` {value} is not one owod knows")]
    UnknownValue { what: &'static str, value: u32 },
}

/// Decode one ring buffer record.
pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    let hdr: Header = read(bytes, "owo_header")?;
    if hdr.size as usize != bytes.len() {
        return Err(DecodeError::SizeMismatch {
            declared: hdr.size,
            got: bytes.len(),
        });
    }
    match hdr.kind {
        abi::KIND_EXEC => decode_exec(bytes),
        abi::KIND_EXIT => {
            let raw: abi::Exit = read(bytes, "owo_exit")?;
            Ok(Event::Exit(ExitEvent {
                task: task(&raw.hdr),
                start_boottime_ns: raw.start_boottime_ns,
                status: raw.exit_code,
            }))
        }
        abi::KIND_FORK => {
            let raw: abi::Fork = read(bytes, "owo_fork")?;
            Ok(Event::Fork(ForkEvent {
                parent: task(&raw.hdr),
                parent_start_boottime_ns: raw.parent_start_boottime_ns,
                child_pid: raw.child_pid,
                child_start_boottime_ns: raw.child_start_boottime_ns,
            }))
        }
        abi::KIND_FILE => decode_file(bytes),
        abi::KIND_NET => decode_net(bytes),
        abi::KIND_PRIV => {
            let raw: abi::Priv = read(bytes, "owo_priv")?;
            Ok(Event::Priv(PrivEvent {
                task: task(&raw.hdr),
                syscall: raw.syscall,
                ret: raw.ret,
                before: Creds {
                    uid: raw.uid,
                    gid: raw.gid,
                    euid: raw.euid,
                    egid: raw.egid,
                },
                after: Creds {
                    uid: raw.new_uid,
                    gid: raw.new_gid,
                    euid: raw.new_euid,
                    egid: raw.new_egid,
                },
                args: [raw.arg0, raw.arg1, raw.arg2],
            }))
        }
        abi::KIND_MODULE => {
            let raw: abi::ModuleFixed = read(bytes, "owo_module")?;
            let path = section(bytes, std::mem::size_of::<abi::ModuleFixed>(), raw.path_len)?;
            Ok(Event::Module(ModuleEvent {
                task: task(&raw.hdr),
                syscall: raw.syscall,
                ret: raw.ret,
                path: (!path.is_empty()).then(|| path.to_vec()),
                path_truncated: raw.flags & abi::PATH_TRUNCATED != 0,
            }))
        }
        abi::KIND_WRITE => {
            let raw: abi::WriteFixed = read(bytes, "owo_write")?;
            let path = section(bytes, std::mem::size_of::<abi::WriteFixed>(), raw.path_len)?;
            Ok(Event::Write(WriteEvent {
                task: task(&raw.hdr),
                fd: raw.fd,
                count: raw.count,
                path: (raw.flags & abi::PATH_PRESENT != 0).then(|| path.to_vec()),
                path_truncated: raw.flags & abi::PATH_TRUNCATED != 0,
            }))
        }
        abi::KIND_TAMPER => {
            let raw: abi::Tamper = read(bytes, "owo_tamper")?;
            Ok(Event::Tamper(TamperEvent {
                task: task(&raw.hdr),
                action: tamper_action(&raw)?,
                folded: raw.folded,
            }))
        }
        other => Err(DecodeError::UnknownKind(other)),
    }
}

fn tamper_action(raw: &abi::Tamper) -> Result<TamperAction, DecodeError> {
    let unknown = |what, value| DecodeError::UnknownValue { what, value };
    Ok(match raw.action {
        abi::TAMPER_BPF => TamperAction::Bpf {
            command: raw.detail,
            object: match raw.object_kind {
                abi::OBJECT_PROG => BpfObject::Program,
                abi::OBJECT_MAP => BpfObject::Map,
                abi::OBJECT_LINK => BpfObject::Link,
                other => return Err(unknown("owo_tamper.object_kind", other)),
            },
            id: raw.object_id,
        },
        abi::TAMPER_SIGNAL => TamperAction::Signal(raw.detail),
        abi::TAMPER_PTRACE => TamperAction::Ptrace(raw.detail),
        abi::TAMPER_VM_READ => TamperAction::VmRead,
        abi::TAMPER_VM_WRITE => TamperAction::VmWrite,
        other => return Err(unknown("owo_tamper.action", other)),
    })
}

fn read<T: Pod>(bytes: &[u8], what: &'static str) -> Result<T, DecodeError> {
    T::read_from(bytes).ok_or(DecodeError::TooShort {
        what,
        need: std::mem::size_of::<T>(),
        got: bytes.len(),
    })
}

fn task(hdr: &Header) -> Task {
    Task {
        ktime_ns: hdr.ktime_ns,
        pid: hdr.pid,
        tid: hdr.tid,
        ppid: hdr.ppid,
        uid: hdr.uid,
        gid: hdr.gid,
        cgroup_id: hdr.cgroup_id,
        comm: Comm::new(until_nul(&hdr.comm)),
        report: hdr.flags & abi::HDR_REPORT != 0,
        size: hdr.size,
        via: if hdr.flags & abi::HDR_IA32 != 0 {
            Via::Ia32
        } else if hdr.flags & abi::HDR_IO_URING != 0 {
            Via::IoUring
        } else {
            Via::Syscall
        },
    }
}

fn decode_exec(bytes: &[u8]) -> Result<Event, DecodeError> {
    let raw: abi::ExecFixed = read(bytes, "owo_exec")?;
    let data = &bytes[std::mem::size_of::<abi::ExecFixed>()..];
    let lens = [raw.filename_len, raw.exe_len, raw.cwd_len, raw.args_len].map(|l| l as usize);
    let need = lens.iter().sum::<usize>();
    if need > data.len() {
        return Err(DecodeError::SectionOverrun {
            need,
            got: data.len(),
        });
    }
    let (filename, rest) = data.split_at(lens[0]);
    let (exe, rest) = rest.split_at(lens[1]);
    let (cwd, rest) = rest.split_at(lens[2]);
    let args = &rest[..lens[3]];
    let flag = |bit: u32| raw.flags & bit != 0;
    Ok(Event::Exec(ExecEvent {
        task: task(&raw.hdr),
        start_boottime_ns: raw.start_boottime_ns,
        filename: filename.to_vec(),
        filename_truncated: flag(abi::EXEC_FILENAME_TRUNCATED),
        exe: flag(abi::EXEC_HAS_EXE).then(|| exe.into()),
        exe_truncated: flag(abi::EXEC_EXE_TRUNCATED),
        cwd: flag(abi::EXEC_HAS_CWD).then(|| cwd.to_vec()),
        cwd_truncated: flag(abi::EXEC_CWD_TRUNCATED),
        args: Argv::from_section(args),
        args_truncated: flag(abi::EXEC_ARGS_TRUNCATED),
        argv_bytes: raw.argv_bytes,
        exe_id: flag(abi::EXEC_HAS_EXE).then_some(FileId {
            dev: user_dev(raw.exe_dev),
            ino: raw.exe_ino,
            size: raw.exe_size,
            ctime_sec: raw.exe_ctime_sec,
            ctime_nsec: raw.exe_ctime_nsec,
        }),
        exe_deleted: flag(abi::EXEC_HAS_EXE) && raw.exe_nlink == 0,
        auid: (raw.auid != u32::MAX).then_some(raw.auid),
        session_id: (raw.sessionid != u32::MAX).then_some(raw.sessionid),
        tty: until_nul(&raw.tty).to_vec(),
        stdin_mode: raw.stdin_mode,
        stdout_mode: raw.stdout_mode,
    }))
}

/// `len` bytes at `start`, checked against the record.
fn section(bytes: &[u8], start: usize, len: u32) -> Result<&[u8], DecodeError> {
    let end = start.saturating_add(len as usize);
    bytes.get(start..end).ok_or(DecodeError::SectionOverrun {
        need: end - start,
        got: bytes.len().saturating_sub(start),
    })
}

fn decode_file(bytes: &[u8]) -> Result<Event, DecodeError> {
    let raw: abi::FileFixed = read(bytes, "owo_file")?;
    let start = std::mem::size_of::<abi::FileFixed>();
    let path = section(bytes, start, raw.path_len)?;
    let path2 = match raw.path2_len {
        0 => None,
        len => Some(section(bytes, start + path.len(), len)?.to_vec()),
    };
    Ok(Event::File(FileEvent {
        task: task(&raw.hdr),
        syscall: raw.syscall,
        ret: raw.ret,
        flags: raw.flags,
        mode: raw.mode,
        path: path.to_vec(),
        path_truncated: raw.path_flags & abi::PATH_TRUNCATED != 0,
        path2,
        path2_truncated: raw.path_flags & abi::PATH2_TRUNCATED != 0,
        unclean: raw.path_flags & abi::PATH_UNCLEAN != 0,
    }))
}

fn decode_net(bytes: &[u8]) -> Result<Event, DecodeError> {
    let raw: abi::NetFixed = read(bytes, "owo_net")?;
    let payload = section(bytes, std::mem::size_of::<abi::NetFixed>(), raw.payload_len)?;
    Ok(Event::Net(NetEvent {
        task: task(&raw.hdr),
        syscall: raw.syscall,
        ret: raw.ret,
        family: raw.family,
        protocol: raw.protocol,
        saddr: raw.saddr,
        sport: raw.sport,
        daddr: raw.daddr,
        dport: raw.dport,
        payload: payload.to_vec(),
    }))
}

fn until_nul(bytes: &[u8]) -> &[u8] {
    bytes.split(|&b| b == 0).next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::encode;
    use crate::event::kernel_dev;

    fn task() -> Task {
        Task {
            ktime_ns: 7,
            pid: 10,
            tid: 11,
            ppid: 1,
            uid: 1000,
            gid: 100,
            cgroup_id: 99,
            comm: Comm::new(b"bash"),
            report: true,
            size: 0,
            via: Via::Ia32,
        }
    }

    /// `ev` as decoding its `size` bytes makes it: the task says how many.
    fn sized(mut ev: Event, size: usize) -> Event {
        let task = match &mut ev {
            Event::Exec(e) => &mut e.task,
            Event::Exit(e) => &mut e.task,
            Event::Fork(e) => &mut e.parent,
            Event::File(e) => &mut e.task,
            Event::Net(e) => &mut e.task,
            Event::Priv(e) => &mut e.task,
            Event::Module(e) => &mut e.task,
            Event::Write(e) => &mut e.task,
            Event::Tamper(e) => &mut e.task,
        };
        task.size = size as u32;
        ev
    }

    fn exec() -> ExecEvent {
        ExecEvent {
            task: task(),
            start_boottime_ns: 5,
            filename: b"./x y".to_vec(),
            exe: Some(b"/usr/bin/x y"[..].into()),
            cwd: Some(b"/".to_vec()),
            args: Argv::from_args([&b"x"[..], b"", b"a\nb \"q\" \xff"]),
            argv_bytes: 15,
            exe_id: Some(FileId {
                dev: user_dev(8 << 20 | 1),
                ino: 1234,
                size: 99,
                ctime_sec: 5,
                ctime_nsec: 6,
            }),
            auid: Some(1000),
            session_id: Some(3),
            tty: b"pts3".to_vec(),
            stdin_mode: 0o140777,
            stdout_mode: 0o010600,
            ..Default::default()
        }
    }

    #[test]
    fn round_trips_every_kind() {
        let events = [
            Event::Exec(exec()),
            Event::Exec(ExecEvent {
                exe: None,
                exe_id: None,
                cwd: None,
                args: Argv::default(),
                auid: None,
                tty: vec![],
                ..exec()
            }),
            Event::Exec(ExecEvent {
                args_truncated: true,
                exe_truncated: true,
                exe_deleted: true,
                ..exec()
            }),
            Event::Exec(ExecEvent {
                task: Task {
                    report: false,
                    ..task()
                },
                ..exec()
            }),
            Event::Exit(ExitEvent {
                task: task(),
                start_boottime_ns: 3,
                status: 3 << 8,
            }),
            Event::File(FileEvent {
                task: task(),
                syscall: 2,
                ret: -2,
                flags: 0o100,
                mode: 0o644,
                path: b"/tmp/a b".to_vec(),
                path_truncated: true,
                ..Default::default()
            }),
            Event::File(FileEvent {
                task: task(),
                syscall: 10,
                path: b"/tmp/old".to_vec(),
                path2: Some(b"/tmp/new".to_vec()),
                path2_truncated: true,
                unclean: true,
                ..Default::default()
            }),
            Event::Net(NetEvent {
                task: task(),
                syscall: 14,
                ret: 29,
                family: 2,
                protocol: 17,
                saddr: [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                sport: 40000,
                daddr: [127, 0, 0, 53, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                dport: 53,
                payload: vec![1, 2, 3],
            }),
            Event::Priv(PrivEvent {
                task: task(),
                syscall: 20,
                before: Creds {
                    uid: 0,
                    gid: 0,
                    euid: 0,
                    egid: 0,
                },
                after: Creds {
                    uid: 65534,
                    gid: 0,
                    euid: 65534,
                    egid: 0,
                },
                args: [65534, 65534, u32::MAX],
                ..Default::default()
            }),
            Event::Module(ModuleEvent {
                task: task(),
                syscall: 23,
                ret: -1,
                path: Some(b"/lib/modules/x.ko".to_vec()),
                path_truncated: false,
            }),
            Event::Write(WriteEvent {
                task: task(),
                fd: 3,
                count: 10,
                path: Some(b"/tmp/w".to_vec()),
                path_truncated: false,
            }),
            Event::Write(WriteEvent {
                task: task(),
                fd: 3,
                count: 10,
                path: None,
                path_truncated: false,
            }),
            Event::Tamper(TamperEvent {
                task: task(),
                action: TamperAction::Bpf {
                    command: 2,
                    object: BpfObject::Map,
                    id: 77,
                },
                folded: 3,
            }),
            Event::Tamper(TamperEvent {
                task: task(),
                action: TamperAction::Signal(1),
                folded: 0,
            }),
            Event::Fork(ForkEvent {
                parent: task(),
                parent_start_boottime_ns: 1,
                child_pid: 77,
                child_start_boottime_ns: 2,
            }),
        ];
        for ev in events {
            let bytes = encode(&ev);
            let want = sized(ev.clone(), bytes.len());
            assert_eq!(decode(&bytes), Ok(want), "round trip of {ev:?}");
        }
    }

    #[test]
    fn device_numbers_convert_both_ways() {
        for (major, minor) in [(8u32, 1u32), (259, 0), (0, 25), (4095, 1048575)] {
            let kernel = major << 20 | minor;
            let user = user_dev(kernel);
            assert_eq!(user, libc_makedev(major, minor), "{major}:{minor}");
            assert_eq!(kernel_dev(user), kernel);
        }
    }

    /// glibc's makedev, written out.
    fn libc_makedev(major: u32, minor: u32) -> u64 {
        let (major, minor) = (u64::from(major), u64::from(minor));
        ((major & 0xfffff000) << 32)
            | ((major & 0xfff) << 8)
            | ((minor & 0xffffff00) << 12)
            | (minor & 0xff)
    }

    #[test]
    fn exit_status_splits_code_and_signal() {
        let ev = |status| ExitEvent {
            status,
            ..Default::default()
        };
        assert_eq!((ev(3 << 8).exit_code(), ev(3 << 8).signal()), (3, None));
        assert_eq!((ev(9).exit_code(), ev(9).signal()), (0, Some(9)));
        assert!(ev(0x80 | 11).core_dumped());
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        for ev in [
            Event::Exec(exec()),
            Event::Exit(ExitEvent {
                task: task(),
                ..Default::default()
            }),
            Event::File(FileEvent {
                task: task(),
                path: b"/x".to_vec(),
                path2: Some(b"/y".to_vec()),
                ..Default::default()
            }),
            Event::Net(NetEvent {
                task: task(),
                payload: vec![9; 20],
                ..Default::default()
            }),
        ] {
            let bytes = encode(&ev);
            for len in 0..bytes.len() {
                assert!(
                    decode(&bytes[..len]).is_err(),
                    "{len} of {} bytes decoded",
                    bytes.len()
                );
            }
        }
    }

    #[test]
    fn lying_lengths_are_errors() {
        let mut bytes = encode(&Event::Exec(exec()));
        let off = std::mem::offset_of!(abi::ExecFixed, args_len);
        bytes[off..off + 4].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert!(matches!(
            decode(&bytes),
            Err(DecodeError::SectionOverrun { .. })
        ));
        let mut bytes = encode(&Event::Exec(exec()));
        bytes[0..4].copy_from_slice(&42u32.to_ne_bytes());
        assert_eq!(decode(&bytes), Err(DecodeError::UnknownKind(42)));
    }

    #[test]
    fn random_bytes_never_panic() {
        // xorshift: deterministic, no dependency.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let template = encode(&Event::Exec(exec()));
        for _ in 0..20_000 {
            let len = (next() % 400) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Half the time keep a plausible header so the section checks get exercised.
            if next() % 2 == 0 && len >= 96 {
                bytes[..96].copy_from_slice(&template[..96]);
                bytes[4..8].copy_from_slice(&(len as u32).to_ne_bytes());
            }
            let _ = decode(&bytes);
        }
    }
}
