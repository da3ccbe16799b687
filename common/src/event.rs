//! Typed events, as decoded from the ring buffers. Strings from the kernel stay bytes here:
//! Linux paths and arguments need not be UTF-8, and [`crate::render`] escapes them losslessly.

use std::{fmt, ops::Deref, sync::Arc};

/// A task's name (`comm`): at most [`Comm::MAX`] bytes, held inline, so that an event's name
/// costs no allocation (every event carries one, and the process table keeps one per process).
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Comm {
    bytes: [u8; Comm::MAX],
    len: u8,
}

impl Comm {
    /// The kernel's `TASK_COMM_LEN`, its NUL included: a name is never longer.
    pub const MAX: usize = 16;

    /// The first [`Comm::MAX`] bytes of `name`.
    pub fn new(name: &[u8]) -> Comm {
        let len = name.len().min(Comm::MAX);
        let mut bytes = [0; Comm::MAX];
        bytes[..len].copy_from_slice(&name[..len]);
        Comm {
            bytes,
            len: len as u8,
        }
    }
}

impl Deref for Comm {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl fmt::Debug for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self))
    }
}

/// Who did something, and when (the common header of every record).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Task {
    /// `bpf_ktime_get_boot_ns()` when the kernel saw the event.
    pub ktime_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub cgroup_id: u64,
    pub comm: Comm,
    /// The monitor was on when the kernel saw it: export it. Otherwise the event only feeds
    /// the process table.
    pub report: bool,
    /// Bytes of the kernel's record of the event: about what holding it costs.
    pub size: u32,
    /// How the call reached the kernel.
    pub via: Via,
}

/// How an activity record's call reached the kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Via {
    /// A native syscall.
    #[default]
    Syscall,
    /// A 32-bit compat syscall: `int 0x80`, or any call of an ia32 program.
    Ia32,
    /// An io_uring request, seen when it was submitted.
    IoUring,
}

impl Via {
    /// The record's `via`: none for a native syscall.
    pub fn name(self) -> Option<&'static str> {
        match self {
            Via::Syscall => None,
            Via::Ia32 => Some("ia32"),
            Via::IoUring => Some("io_uring"),
        }
    }
}

/// A new program image (`sched_process_exec`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecEvent {
    pub task: Task,
    /// With `pid`, the process's identity (boot-time clock, ns).
    pub start_boottime_ns: u64,
    /// The filename as passed to exec.
    pub filename: Vec<u8>,
    pub filename_truncated: bool,
    /// The executable the kernel mapped, absolute; `None` when the task had none. Shared by the
    /// record and the process table.
    pub exe: Option<Arc<[u8]>>,
    pub exe_truncated: bool,
    pub cwd: Option<Vec<u8>>,
    pub cwd_truncated: bool,
    pub args: Argv,
    pub args_truncated: bool,
    /// Size of the whole argv in the image, before any truncation.
    pub argv_bytes: u32,
    /// The executable file's identity at exec; `None` when the task had none.
    pub exe_id: Option<FileId>,
    /// The executable had no links left (deleted) at exec.
    pub exe_deleted: bool,
    /// Login uid and audit session; `None` when unset (or no audit in the kernel).
    pub auid: Option<u32>,
    pub session_id: Option<u32>,
    /// The controlling terminal as the kernel names it (`pts3`, `tty1`); empty if none.
    pub tty: Vec<u8>,
    /// `st_mode` of what fds 0 and 1 are (0: nothing open there).
    pub stdin_mode: u16,
    pub stdout_mode: u16,
}

/// An argv as the kernel copied it: each argument followed by a NUL, except a last one cut short.
/// Empty arguments are real arguments. One shared buffer, however many arguments: the exec
/// record, the process table and a forked child's entry all hold the same one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Argv(Arc<[u8]>);

impl Argv {
    /// From the kernel's argv section (or `/proc/PID/cmdline`).
    pub fn from_section(section: &[u8]) -> Argv {
        Argv(Arc::from(section))
    }

    /// From separate arguments.
    pub fn from_args<A: AsRef<[u8]>>(args: impl IntoIterator<Item = A>) -> Argv {
        let mut section = Vec::new();
        for arg in args {
            section.extend_from_slice(arg.as_ref());
            section.push(0);
        }
        Argv::from_section(&section)
    }

    /// The arguments.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + Clone {
        let section = self.0.strip_suffix(&[0]).unwrap_or(&self.0);
        // An empty section has no arguments, not one empty one.
        let first = if self.0.is_empty() { None } else { Some(()) };
        first
            .into_iter()
            .flat_map(move |()| section.split(|&b| b == 0))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Bytes of the section.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The command line: the arguments joined by spaces.
    pub fn cmdline(&self) -> Vec<u8> {
        let section = self.0.strip_suffix(&[0]).unwrap_or(&self.0);
        section
            .iter()
            .map(|&b| if b == 0 { b' ' } else { b })
            .collect()
    }

    /// The raw section, as [`Argv::from_section`] took it.
    pub fn section(&self) -> &[u8] {
        &self.0
    }
}

/// What kind of file an `st_mode` says, as records name it.
pub fn file_kind(mode: u16) -> Option<&'static str> {
    Some(match u32::from(mode) & 0o170000 {
        0 => return None,
        0o140000 => "socket",
        0o010000 => "pipe",
        0o020000 => "chardev",
        0o060000 => "blockdev",
        0o040000 => "dir",
        0o100000 => "file",
        0o120000 => "symlink",
        _ => "other",
    })
}

/// What identifies a file's content: a hash is cached by it and trusted only if it matches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FileId {
    /// `st_dev` as user space sees it (`makedev(major, minor)`).
    pub dev: u64,
    pub ino: u64,
    pub size: i64,
    pub ctime_sec: i64,
    pub ctime_nsec: u32,
}

/// User space's `st_dev` as the kernel's `dev_t` (the inverse of [`user_dev`]).
pub fn kernel_dev(dev: u64) -> u32 {
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0xff);
    ((major as u32) << 20) | (minor as u32 & 0xfffff)
}

/// The kernel's `dev_t` (major << 20 | minor) as user space's `st_dev` (glibc's `makedev`).
pub fn user_dev(kernel_dev: u32) -> u64 {
    let (major, minor) = (u64::from(kernel_dev >> 20), u64::from(kernel_dev & 0xfffff));
    ((major & 0xffff_f000) << 32)
        | ((major & 0xfff) << 8)
        | ((minor & 0xffff_ff00) << 12)
        | (minor & 0xff)
}

/// The last thread of a process ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExitEvent {
    pub task: Task,
    pub start_boottime_ns: u64,
    /// The raw wait status: `(code << 8) | signal`, `0x80` when it dumped core.
    pub status: u32,
}

impl ExitEvent {
    /// The exit code, as `exit(2)` was given it (0 when killed by a signal).
    pub fn exit_code(&self) -> u32 {
        (self.status >> 8) & 0xff
    }

    /// The signal that killed the process, if one did.
    pub fn signal(&self) -> Option<u32> {
        match self.status & 0x7f {
            0 => None,
            sig => Some(sig),
        }
    }

    pub fn core_dumped(&self) -> bool {
        self.status & 0x80 != 0
    }
}

/// A new process (never a thread); `parent` is the forking task.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ForkEvent {
    pub parent: Task,
    pub parent_start_boottime_ns: u64,
    pub child_pid: u32,
    pub child_start_boottime_ns: u64,
}

/// open/openat/openat2/creat, unlink/unlinkat/rmdir, rename/renameat/renameat2.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileEvent {
    pub task: Task,
    pub syscall: u32,
    pub ret: i64,
    /// Open flags, or the unlinkat/renameat2 flags.
    pub flags: u32,
    pub mode: u32,
    /// Absolute.
    pub path: Vec<u8>,
    pub path_truncated: bool,
    /// The new name of a rename.
    pub path2: Option<Vec<u8>>,
    pub path2_truncated: bool,
    /// A given name held `.`, `..` or `//`: the kernel did not filter it; clean and filter here.
    pub unclean: bool,
}

/// connect, accept/accept4, sendto/sendmsg. For accept, `s*` is the peer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetEvent {
    pub task: Task,
    pub syscall: u32,
    pub ret: i64,
    pub family: u16,
    pub protocol: u16,
    pub saddr: [u8; 16],
    pub sport: u16,
    pub daddr: [u8; 16],
    pub dport: u16,
    /// The first bytes of a datagram to port 53.
    pub payload: Vec<u8>,
}

/// set*id: credentials before and after, and the arguments (`u32::MAX` = unchanged).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrivEvent {
    pub task: Task,
    pub syscall: u32,
    pub ret: i64,
    pub before: Creds,
    pub after: Creds,
    pub args: [u32; 3],
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Creds {
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
}

/// init_module / finit_module.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModuleEvent {
    pub task: Task,
    pub syscall: u32,
    pub ret: i64,
    /// The module file (finit_module).
    pub path: Option<Vec<u8>>,
    pub path_truncated: bool,
}

/// write(2) to a watched file. `path` comes with the first write on an open file only.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteEvent {
    pub task: Task,
    pub fd: u32,
    pub count: u64,
    pub path: Option<Vec<u8>>,
    pub path_truncated: bool,
}

/// Another process reached owod itself; `task` is the acting process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TamperEvent {
    pub task: Task,
    pub action: TamperAction,
    /// The same action by the same process since its last record, not sent on their own.
    pub folded: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TamperAction {
    /// A bpf(2) `command` on one of owod's objects, by kind and kernel id.
    Bpf {
        command: u32,
        object: BpfObject,
        id: u32,
    },
    /// A signal sent to owod, by number.
    Signal(u32),
    /// A ptrace(2) attach or seize of owod, by request.
    Ptrace(u32),
    /// process_vm_readv(2) of owod's memory.
    VmRead,
    /// process_vm_writev(2) of owod's memory.
    VmWrite,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BpfObject {
    Program,
    Map,
    Link,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Exec(ExecEvent),
    Exit(ExitEvent),
    Fork(ForkEvent),
    File(FileEvent),
    Net(NetEvent),
    Priv(PrivEvent),
    Module(ModuleEvent),
    Write(WriteEvent),
    Tamper(TamperEvent),
}

impl Event {
    pub fn task(&self) -> &Task {
        match self {
            Event::Exec(e) => &e.task,
            Event::Exit(e) => &e.task,
            Event::Fork(e) => &e.parent,
            Event::File(e) => &e.task,
            Event::Net(e) => &e.task,
            Event::Priv(e) => &e.task,
            Event::Module(e) => &e.task,
            Event::Write(e) => &e.task,
            Event::Tamper(e) => &e.task,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_keeps_empty_and_partial_arguments() {
        let args = |section: &[u8]| -> Vec<Vec<u8>> {
            Argv::from_section(section)
                .iter()
                .map(<[u8]>::to_vec)
                .collect()
        };
        assert_eq!(args(b"a\0\0b\0"), [&b"a"[..], b"", b"b"]);
        assert_eq!(args(b"a\0partial"), [&b"a"[..], b"partial"]);
        assert_eq!(args(b"\0"), [&b""[..]]);
        assert!(args(b"").is_empty());
        assert_eq!(Argv::from_section(b"sh\0-c\0x y\0").cmdline(), b"sh -c x y");
        assert_eq!(Argv::from_args(["a", "", "b"]).section(), b"a\0\0b\0");
    }
}
