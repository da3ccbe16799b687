//! Ring buffer bytes to [`Event`]: a pure function that checks every length against the record
//! and never panics, whatever the input.

use crate::{
    abi::{self, Header, Pod},
    event::{Event, ExecEvent, ExitEvent, ForkEvent, Task},
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
    #[error("sections of the exec record overrun it ({need} bytes of data needed, {got} present)")]
    SectionOverrun { need: usize, got: usize },
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
        other => Err(DecodeError::UnknownKind(other)),
    }
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
        comm: until_nul(&hdr.comm).to_vec(),
        report: hdr.flags & abi::HDR_REPORT != 0,
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
        exe: flag(abi::EXEC_HAS_EXE).then(|| join_components(exe)),
        exe_truncated: flag(abi::EXEC_EXE_TRUNCATED),
        cwd: flag(abi::EXEC_HAS_CWD).then(|| join_components(cwd)),
        cwd_truncated: flag(abi::EXEC_CWD_TRUNCATED),
        args: split_args(args),
        args_truncated: flag(abi::EXEC_ARGS_TRUNCATED),
        argv_bytes: raw.argv_bytes,
    }))
}

fn until_nul(bytes: &[u8]) -> &[u8] {
    bytes.split(|&b| b == 0).next().unwrap_or_default()
}

/// Path components arrive leaf first, each NUL-terminated: `c\0b\0a\0` is `/a/b/c`.
pub fn join_components(section: &[u8]) -> Vec<u8> {
    let section = section.strip_suffix(&[0]).unwrap_or(section);
    if section.is_empty() {
        return b"/".to_vec();
    }
    let mut path = Vec::with_capacity(section.len() + 1);
    for component in section.rsplit(|&b| b == 0) {
        path.push(b'/');
        path.extend_from_slice(component);
    }
    path
}

/// argv is NUL-separated with a NUL after the last argument; empty arguments are real arguments.
/// A truncated argv ends without its NUL, and its last argument is kept as far as it goes.
pub fn split_args(section: &[u8]) -> Vec<Vec<u8>> {
    if section.is_empty() {
        return Vec::new();
    }
    let section = section.strip_suffix(&[0]).unwrap_or(section);
    section.split(|&b| b == 0).map(<[u8]>::to_vec).collect()
}

/// Encode an exec event as the kernel would: the inverse of [`decode`], for tests and fuzzing.
pub fn encode_exec(ev: &ExecEvent) -> Vec<u8> {
    fn components(path: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for c in path.split(|&b| b == b'/').filter(|c| !c.is_empty()).rev() {
            out.extend_from_slice(c);
            out.push(0);
        }
        out
    }
    let exe = ev.exe.as_deref().map(components).unwrap_or_default();
    let cwd = ev.cwd.as_deref().map(components).unwrap_or_default();
    let mut args = Vec::new();
    for a in &ev.args {
        args.extend_from_slice(a);
        args.push(0);
    }
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
    let fixed = abi::ExecFixed {
        hdr: header(abi::KIND_EXEC, size, &ev.task),
        start_boottime_ns: ev.start_boottime_ns,
        filename_len: ev.filename.len() as u32,
        exe_len: exe.len() as u32,
        cwd_len: cwd.len() as u32,
        args_len: args.len() as u32,
        argv_bytes: ev.argv_bytes,
        flags,
    };
    let mut out = fixed.as_bytes().to_vec();
    for section in [&ev.filename[..], &exe, &cwd, &args] {
        out.extend_from_slice(section);
    }
    out
}

/// Encode an exit or fork event as the kernel would (for tests).
pub fn encode(ev: &Event) -> Vec<u8> {
    match ev {
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
        flags: if t.report { abi::HDR_REPORT } else { 0 },
        cgroup_id: t.cgroup_id,
        comm,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task() -> Task {
        Task {
            ktime_ns: 7,
            pid: 10,
            tid: 11,
            ppid: 1,
            uid: 1000,
            gid: 100,
            cgroup_id: 99,
            comm: b"bash".to_vec(),
            report: true,
        }
    }

    fn exec() -> ExecEvent {
        ExecEvent {
            task: task(),
            start_boottime_ns: 5,
            filename: b"./x y".to_vec(),
            exe: Some(b"/usr/bin/x y".to_vec()),
            cwd: Some(b"/".to_vec()),
            args: vec![b"x".to_vec(), b"".to_vec(), b"a\nb \"q\" \xff".to_vec()],
            argv_bytes: 15,
            ..Default::default()
        }
    }

    #[test]
    fn round_trips_every_kind() {
        let events = [
            Event::Exec(exec()),
            Event::Exec(ExecEvent {
                exe: None,
                cwd: None,
                args: vec![],
                ..exec()
            }),
            Event::Exec(ExecEvent {
                args_truncated: true,
                exe_truncated: true,
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
            Event::Fork(ForkEvent {
                parent: task(),
                parent_start_boottime_ns: 1,
                child_pid: 77,
                child_start_boottime_ns: 2,
            }),
        ];
        for ev in events {
            assert_eq!(decode(&encode(&ev)), Ok(ev.clone()), "round trip of {ev:?}");
        }
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

    #[test]
    fn components_join_leaf_last() {
        assert_eq!(join_components(b"c\0b\0a\0"), b"/a/b/c");
        assert_eq!(join_components(b""), b"/");
        assert_eq!(
            split_args(b"a\0\0b\0"),
            vec![b"a".to_vec(), b"".to_vec(), b"b".to_vec()]
        );
        assert_eq!(
            split_args(b"a\0partial"),
            vec![b"a".to_vec(), b"partial".to_vec()]
        );
    }
}
