//! Rust mirror of `ebpf/include/owo_abi.h`. Field for field, padding explicit; the test
//! `tests/abi_layout.rs` compiles the C header and fails if a size or an offset drifts.

/// `enum owo_kind`.
pub const KIND_EXEC: u32 = 1;
pub const KIND_EXIT: u32 = 2;
pub const KIND_FORK: u32 = 3;
pub const KIND_FILE: u32 = 4;
pub const KIND_NET: u32 = 5;
pub const KIND_PRIV: u32 = 6;
pub const KIND_MODULE: u32 = 7;
pub const KIND_WRITE: u32 = 8;
pub const KIND_TAMPER: u32 = 9;

/// `enum owo_syscall`: the syscall behind an activity record, by its name.
pub const SYSCALLS: [(u32, &str); 28] = [
    (1, "open"),
    (2, "openat"),
    (3, "openat2"),
    (4, "creat"),
    (5, "unlink"),
    (6, "unlinkat"),
    (7, "rmdir"),
    (8, "rename"),
    (9, "renameat"),
    (10, "renameat2"),
    (11, "connect"),
    (12, "accept"),
    (13, "accept4"),
    (14, "sendto"),
    (15, "sendmsg"),
    (16, "setuid"),
    (17, "setgid"),
    (18, "setreuid"),
    (19, "setregid"),
    (20, "setresuid"),
    (21, "setresgid"),
    (22, "init_module"),
    (23, "finit_module"),
    (24, "write"),
    (25, "sendmmsg"),
    (26, "execve"),
    (27, "execveat"),
    (28, "bpf"),
];

/// The name of an `enum owo_syscall` value.
pub fn syscall_name(value: u32) -> Option<&'static str> {
    SYSCALLS
        .iter()
        .find(|(v, _)| *v == value)
        .map(|(_, name)| *name)
}

/// `enum owo_monitor`: the index of a monitor's flag in `owo_config` and of its loss counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u32)]
pub enum Monitor {
    Execve = 0,
    Exit = 1,
    File = 2,
    Network = 3,
    Privilege = 4,
    Write = 5,
    Module = 6,
    Fork = 7,
    /// owod's guard against tampering: always on, never switched.
    Tamper = 8,
}

impl Monitor {
    pub const ALL: [Monitor; 9] = [
        Monitor::Execve,
        Monitor::Exit,
        Monitor::File,
        Monitor::Network,
        Monitor::Privilege,
        Monitor::Write,
        Monitor::Module,
        Monitor::Fork,
        Monitor::Tamper,
    ];

    /// The monitors a user switches on and off: all but `Fork`, which the process table always
    /// needs, and `Tamper` (the last two); in the order config, status and the D-Bus API list
    /// them.
    pub const SWITCHABLE: &'static [Monitor] = Monitor::ALL.split_at(7).0;

    /// The switchable monitor of this name.
    pub fn named(name: &str) -> Option<Monitor> {
        Monitor::SWITCHABLE
            .iter()
            .copied()
            .find(|m| m.name() == name)
    }

    /// The names of the switchable monitors, `, `-separated (for messages).
    pub fn names() -> String {
        Monitor::SWITCHABLE
            .iter()
            .map(|m| m.name())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The name used in records, status and the D-Bus API.
    pub fn name(self) -> &'static str {
        match self {
            Monitor::Execve => "execve",
            Monitor::Exit => "exit",
            Monitor::File => "file",
            Monitor::Network => "network",
            Monitor::Privilege => "privilege",
            Monitor::Write => "write",
            Monitor::Module => "module",
            Monitor::Fork => "fork",
            Monitor::Tamper => "tamper",
        }
    }

    pub fn from_index(index: u32) -> Option<Monitor> {
        Monitor::ALL.get(index as usize).copied()
    }
}

pub const MONITOR_COUNT: u32 = 9;
/// `enum owo_config_key`.
pub const CFG_WAKEUP_BYTES: u32 = 11;
pub const CFG_PATH_EPOCH: u32 = 12;
pub const CFG_WATCH_GEN: u32 = 13;
pub const CFG_FILE_ALL_PATHS: u32 = 14;
pub const CFG_SELF_TGID: u32 = 15;
pub const CFG_LEN: u32 = 16;

/// `owo_header.flags`: the monitor is on, export the record (otherwise it only feeds the table).
pub const HDR_REPORT: u32 = 1 << 0;
/// `owo_header.flags`: a 32-bit compat syscall.
pub const HDR_IA32: u32 = 1 << 1;
/// `owo_header.flags`: an io_uring request, seen when submitted.
pub const HDR_IO_URING: u32 = 1 << 2;
/// An activity record's `ret` when the result is not known.
pub const RET_UNREAD: i64 = -(1 << 62);

/// `enum owo_ia32_call`: the keys of `owo_ia32_calls`, each with the program loaded under it
/// (the C name of a key is its program's, in capitals).
pub const IA32_CALLS: [(u32, &str); 9] = [
    (0, "owo_ia32_open"),
    (1, "owo_ia32_unlink"),
    (2, "owo_ia32_rename"),
    (3, "owo_ia32_connect"),
    (4, "owo_ia32_accept"),
    (5, "owo_ia32_send"),
    (6, "owo_ia32_privilege"),
    (7, "owo_ia32_module"),
    (8, "owo_ia32_write"),
];

pub const PATH_MAX: usize = 4096;
pub const NAME_MAX: usize = 256;
pub const ARGS_MAX: usize = 16384;
pub const EXEC_DATA_MAX: usize = 3 * PATH_MAX + ARGS_MAX;
pub const WATCH_MAX: usize = 256;
/// `OWO_WAKEUP_BYTES`: unread bytes in a ring past which the kernel side wakes owod.
pub const WAKEUP_BYTES: u32 = 256 << 10;
pub const WATCH_PATHS: u32 = 64;
/// owod's own paths the kernel watches beside the configured ones (`OWO_GUARD_PATHS`).
pub const GUARDED_PATHS: u32 = 8;
/// Bytes of a component in the name filter, its NUL included.
pub const WATCH_NAME: usize = 16;
/// Components of a watched prefix the name filter follows.
pub const WATCH_DEPTH: usize = 16;
pub const PAYLOAD_MAX: usize = 512;

pub const PATH_TRUNCATED: u32 = 1 << 0;
pub const PATH2_TRUNCATED: u32 = 1 << 1;
pub const PATH_PRESENT: u32 = 1 << 2;
pub const PATH_UNCLEAN: u32 = 1 << 3;

pub const EXEC_FILENAME_TRUNCATED: u32 = 1 << 0;
pub const EXEC_EXE_TRUNCATED: u32 = 1 << 1;
pub const EXEC_CWD_TRUNCATED: u32 = 1 << 2;
pub const EXEC_ARGS_TRUNCATED: u32 = 1 << 3;
pub const EXEC_HAS_EXE: u32 = 1 << 4;
pub const EXEC_HAS_CWD: u32 = 1 << 5;

/// `struct owo_header`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub kind: u32,
    pub size: u32,
    pub ktime_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub flags: u32,
    pub cgroup_id: u64,
    pub comm: [u8; 16],
}

/// The fixed part of `struct owo_exec`; `data` follows it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecFixed {
    pub hdr: Header,
    pub start_boottime_ns: u64,
    pub filename_len: u32,
    pub exe_len: u32,
    pub cwd_len: u32,
    pub args_len: u32,
    pub argv_bytes: u32,
    pub flags: u32,
    pub exe_ino: u64,
    pub exe_size: i64,
    pub exe_ctime_sec: i64,
    pub exe_ctime_nsec: u32,
    pub exe_dev: u32,
    pub exe_nlink: u32,
    pub auid: u32,
    pub sessionid: u32,
    pub stdin_mode: u16,
    pub stdout_mode: u16,
    pub tty: [u8; 32],
}

/// `struct owo_exit`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exit {
    pub hdr: Header,
    pub start_boottime_ns: u64,
    pub exit_code: u32,
    pub _pad0: u32,
}

/// `struct owo_fork`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fork {
    pub hdr: Header,
    pub parent_start_boottime_ns: u64,
    pub child_start_boottime_ns: u64,
    pub child_pid: u32,
    pub _pad0: u32,
}

/// The fixed part of `struct owo_file`; `data` (path, then at once path2) follows.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileFixed {
    pub hdr: Header,
    pub ret: i64,
    pub syscall: u32,
    pub flags: u32,
    pub mode: u32,
    pub path_len: u32,
    pub path2_len: u32,
    pub path_flags: u32,
}

/// The fixed part of `struct owo_net`; `payload` follows.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetFixed {
    pub hdr: Header,
    pub ret: i64,
    pub syscall: u32,
    pub family: u16,
    pub protocol: u16,
    pub sport: u16,
    pub dport: u16,
    pub payload_len: u32,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
}

/// `struct owo_priv`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Priv {
    pub hdr: Header,
    pub ret: i64,
    pub syscall: u32,
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
    pub new_uid: u32,
    pub new_gid: u32,
    pub new_euid: u32,
    pub new_egid: u32,
    pub arg0: u32,
    pub arg1: u32,
    pub arg2: u32,
}

/// The fixed part of `struct owo_module`; `data` follows.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModuleFixed {
    pub hdr: Header,
    pub ret: i64,
    pub syscall: u32,
    pub flags: u32,
    pub path_len: u32,
    pub _pad0: u32,
}

/// `enum owo_tamper_action`.
pub const TAMPER_BPF: u32 = 1;
pub const TAMPER_SIGNAL: u32 = 2;
pub const TAMPER_PTRACE: u32 = 3;
pub const TAMPER_VM_READ: u32 = 4;
pub const TAMPER_VM_WRITE: u32 = 5;

/// `enum owo_object_kind`.
pub const OBJECT_PROG: u32 = 1;
pub const OBJECT_MAP: u32 = 2;
pub const OBJECT_LINK: u32 = 3;

/// `struct owo_self_object`: a key of `owo_self_objects`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SelfObject {
    pub kind: u32,
    pub id: u32,
}

/// `struct owo_tamper`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tamper {
    pub hdr: Header,
    pub action: u32,
    pub detail: u32,
    pub object_kind: u32,
    pub object_id: u32,
    pub folded: u32,
    pub _pad0: u32,
}

/// The fixed part of `struct owo_write`; `data` follows.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteFixed {
    pub hdr: Header,
    pub count: u64,
    pub fd: u32,
    pub flags: u32,
    pub path_len: u32,
    pub _pad0: u32,
}

/// `struct owo_watch_name`: a key of the name filter, a component below a node.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WatchName {
    pub parent: u64,
    pub name: [u8; WATCH_NAME],
}

/// `struct owo_watch_node`: where a component leads, and whether a watched prefix ends there.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WatchNode {
    pub node: u64,
    pub watched: u32,
    pub _pad0: u32,
}

/// Plain-old-data ABI structs: every bit pattern is a valid value (integers and byte arrays only).
///
/// # Safety
/// Implement only for `#[repr(C)]` structs made of integers and integer arrays.
pub unsafe trait Pod: Copy {
    /// Read one from the front of `bytes`, or `None` if there are too few.
    fn read_from(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < std::mem::size_of::<Self>() {
            return None;
        }
        // SAFETY: the length is checked above, read_unaligned has no alignment requirement, and
        // `Pod` types accept every bit pattern.
        Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<Self>()) })
    }

    /// The bytes of this value, as the kernel would write them.
    fn as_bytes(&self) -> &[u8] {
        // SAFETY: `Pod` types have no implicit padding (it is explicit and zeroed), so every
        // byte is initialised.
        unsafe {
            std::slice::from_raw_parts(
                (self as *const Self).cast::<u8>(),
                std::mem::size_of::<Self>(),
            )
        }
    }
}

// SAFETY: all of them are repr(C) with integer fields only and explicit padding.
unsafe impl Pod for Header {}
unsafe impl Pod for ExecFixed {}
unsafe impl Pod for Exit {}
unsafe impl Pod for Fork {}
unsafe impl Pod for FileFixed {}
unsafe impl Pod for NetFixed {}
unsafe impl Pod for Priv {}
unsafe impl Pod for ModuleFixed {}
unsafe impl Pod for WriteFixed {}
unsafe impl Pod for SelfObject {}
unsafe impl Pod for Tamper {}
unsafe impl Pod for WatchName {}
unsafe impl Pod for WatchNode {}
