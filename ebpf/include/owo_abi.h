/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The kernel/user ABI of OWO: the records the eBPF programs write into the ring buffers and the
 * keys of the maps owod writes. Only the ABI lives here. Enum values are explicit and are never
 * renumbered; a retired value stays reserved. Every struct has a _Static_assert on its size, and
 * the Rust mirror (owo-common, `abi`) is checked against this file by a layout test.
 */
#ifndef OWO_ABI_H
#define OWO_ABI_H

#include <linux/types.h>

/* What a record in a ring buffer is. The first __u32 of every record. */
enum owo_kind {
	OWO_KIND_EXEC = 1,
	OWO_KIND_EXIT = 2,
	OWO_KIND_FORK = 3,
	OWO_KIND_FILE = 4,
	OWO_KIND_NET = 5,
	OWO_KIND_PRIV = 6,
	OWO_KIND_MODULE = 7,
	OWO_KIND_WRITE = 8,
	OWO_KIND_TAMPER = 9,
};

/* The syscall behind an activity record. */
enum owo_syscall {
	OWO_SYS_OPEN = 1,
	OWO_SYS_OPENAT = 2,
	OWO_SYS_OPENAT2 = 3,
	OWO_SYS_CREAT = 4,
	OWO_SYS_UNLINK = 5,
	OWO_SYS_UNLINKAT = 6,
	OWO_SYS_RMDIR = 7,
	OWO_SYS_RENAME = 8,
	OWO_SYS_RENAMEAT = 9,
	OWO_SYS_RENAMEAT2 = 10,
	OWO_SYS_CONNECT = 11,
	OWO_SYS_ACCEPT = 12,
	OWO_SYS_ACCEPT4 = 13,
	OWO_SYS_SENDTO = 14,
	OWO_SYS_SENDMSG = 15,
	OWO_SYS_SETUID = 16,
	OWO_SYS_SETGID = 17,
	OWO_SYS_SETREUID = 18,
	OWO_SYS_SETREGID = 19,
	OWO_SYS_SETRESUID = 20,
	OWO_SYS_SETRESGID = 21,
	OWO_SYS_INIT_MODULE = 22,
	OWO_SYS_FINIT_MODULE = 23,
	OWO_SYS_WRITE = 24,
	OWO_SYS_SENDMMSG = 25,
	OWO_SYS_EXECVE = 26,
	OWO_SYS_EXECVEAT = 27,
	OWO_SYS_BPF = 28,
};

/* Monitors, the index of their on/off flag in `owo_config` and of their loss counter. */
enum owo_monitor {
	OWO_MON_EXECVE = 0,
	OWO_MON_EXIT = 1,
	OWO_MON_FILE = 2,
	OWO_MON_NETWORK = 3,
	OWO_MON_PRIVILEGE = 4,
	OWO_MON_WRITE = 5,
	OWO_MON_MODULE = 6,
	OWO_MON_FORK = 7,
	OWO_MON_TAMPER = 8, /* owod's own guard: always on, never switched */
	OWO_MON_COUNT = 9,
};

/* Keys of the `owo_config` array map (__u32 values). 0..OWO_MON_COUNT-1 are the monitor flags. */
enum owo_config_key {
	OWO_CFG_WAKEUP_BYTES = 11, /* what one CPU sends before it wakes owod (its share of 256 KiB) */
	OWO_CFG_PATH_EPOCH = 12, /* bumped by the kernel side when a directory may have moved */
	OWO_CFG_WATCH_GEN = 13,  /* bumped by owod when the watched prefixes change */
	OWO_CFG_FILE_ALL_PATHS = 14, /* 1: report file events everywhere, not only under watched paths */
	OWO_CFG_SELF_TGID = 15, /* owod's own pid: its own activity is never reported */
	OWO_CFG_LEN = 16,
};

/* owo_header.flags */
#define OWO_HDR_REPORT (1u << 0) /* the monitor is on: export this; otherwise it only feeds the process table */
#define OWO_HDR_IA32 (1u << 1)   /* a 32-bit compat syscall (int 0x80, or an ia32 program) */
#define OWO_HDR_IO_URING (1u << 2) /* an io_uring request, seen when submitted */

/* An activity record's `ret` when the result is not known (an io_uring request, at submission). */
#define OWO_RET_UNREAD (-(1ll << 62))

/*
 * Keys of `owo_ia32_calls`, the programs that report 32-bit compat syscalls (x86 only): the
 * dispatcher on raw_syscalls picks one by the call, owod loads each under its key.
 */
enum owo_ia32_call {
	OWO_IA32_OPEN = 0,      /* owo_ia32_open: open, openat, openat2, creat */
	OWO_IA32_UNLINK = 1,    /* owo_ia32_unlink: unlink, unlinkat, rmdir */
	OWO_IA32_RENAME = 2,    /* owo_ia32_rename */
	OWO_IA32_CONNECT = 3,   /* owo_ia32_connect */
	OWO_IA32_ACCEPT = 4,    /* owo_ia32_accept: accept, accept4 */
	OWO_IA32_SEND = 5,      /* owo_ia32_send: sendto, sendmsg, sendmmsg */
	OWO_IA32_PRIVILEGE = 6, /* owo_ia32_privilege: set*id, 16- and 32-bit */
	OWO_IA32_MODULE = 7,    /* owo_ia32_module */
	OWO_IA32_WRITE = 8,     /* owo_ia32_write, at entry */
	OWO_IA32_CALLS = 9,
};

/* Limits of the variable part of an exec record. */
#define OWO_PATH_MAX 4096    /* one path section (filename, exe, cwd) */
#define OWO_NAME_MAX 256     /* one path component, with its NUL */
#define OWO_PATH_DEPTH 64    /* components kept (the root side); deeper paths are marked truncated */
#define OWO_PATH_WALK 1024   /* components walked up at most before giving up on the root */
#define OWO_ARGS_MAX 16384   /* bytes of argv read from the new image */
#define OWO_EXEC_DATA_MAX (3 * OWO_PATH_MAX + OWO_ARGS_MAX)
#define OWO_WAKEUP_BYTES (256 << 10) /* unread bytes in a ring past which owod is woken */
#define OWO_WATCH_MAX 256    /* bytes of a watched path prefix (an LPM trie key) */
#define OWO_WATCH_PATHS 64   /* watched path prefixes at most */
#define OWO_GUARD_PATHS 8    /* owod's own paths (binary, config, unit, /proc/PID), beside them */
#define OWO_WATCH_NAME 16    /* bytes of a component in the name filter, its NUL included */
#define OWO_WATCH_DEPTH 16   /* components of a watched prefix the name filter follows */
#define OWO_PAYLOAD_MAX 512  /* bytes of a datagram kept (for DNS) */

/*
 * The name filter: the watched prefixes as a tree of components, in a hash map, so that a file
 * can be turned away by the names of its directories before its path is built. A key is a node
 * (0: the root) and the first OWO_WATCH_NAME - 1 bytes of a component below it, NUL-padded; its
 * value is the node it leads to, and whether a watched prefix ends there (or at
 * OWO_WATCH_DEPTH components). Names that share their first bytes share a node, so the filter can
 * let through a file that is not watched, which the prefix test after it turns away, and never
 * the other way round.
 */
struct owo_watch_name {
	__u64 parent;
	__u8 name[OWO_WATCH_NAME];
};

struct owo_watch_node {
	__u64 node;
	__u32 watched;
	__u32 _pad0;
};

/* owo_file.path_flags, owo_write.flags, owo_module.flags */
#define OWO_PATH_TRUNCATED (1u << 0)
#define OWO_PATH2_TRUNCATED (1u << 1)
#define OWO_PATH_PRESENT (1u << 2) /* owo_write: the path is sent (first write on this fd) */
#define OWO_PATH_UNCLEAN (1u << 3) /* owo_file: a given name had ".", ".." or "//": not filtered here */

/* owo_exec.flags */
#define OWO_EXEC_FILENAME_TRUNCATED (1u << 0)
#define OWO_EXEC_EXE_TRUNCATED (1u << 1)
#define OWO_EXEC_CWD_TRUNCATED (1u << 2)
#define OWO_EXEC_ARGS_TRUNCATED (1u << 3)
#define OWO_EXEC_HAS_EXE (1u << 4) /* the exe section is valid (a kernel thread has none) */
#define OWO_EXEC_HAS_CWD (1u << 5)

/*
 * Common to every record: who did it and when. Process-lane records are sent whether or not their
 * monitor is on, because the process table needs them; OWO_HDR_REPORT says whether to export.
 */
struct owo_header {
	__u32 kind;       /* enum owo_kind */
	__u32 size;       /* bytes of the whole record, header included */
	__u64 ktime_ns;   /* bpf_ktime_get_boot_ns() */
	__u32 pid;        /* thread group id */
	__u32 tid;
	__u32 ppid;       /* real_parent's thread group id */
	__u32 uid;
	__u32 gid;
	__u32 flags;      /* OWO_HDR_* */
	__u64 cgroup_id;
	__u8 comm[16];
};
_Static_assert(sizeof(struct owo_header) == 64, "owo_header size");

/*
 * A program image was executed (sched_process_exec). `data` holds, back to back, without NULs:
 * the filename as passed to exec (filename_len bytes), the absolute path of the executable and
 * of the working directory, then argv as read from the new image (args_len bytes, each argument
 * NUL-terminated). Only `size` bytes are sent.
 */
struct owo_exec {
	struct owo_header hdr;
	__u64 start_boottime_ns; /* with pid, the process's identity */
	__u32 filename_len;
	__u32 exe_len;
	__u32 cwd_len;
	__u32 args_len;
	__u32 argv_bytes;        /* the whole argv's size in the image, before truncation */
	__u32 flags;             /* OWO_EXEC_* */
	/* The executable's identity: a hash is cached by it, and only trusted if it matches. */
	__u64 exe_ino;
	__s64 exe_size;
	__s64 exe_ctime_sec;
	__u32 exe_ctime_nsec;
	__u32 exe_dev;           /* the kernel's dev_t: major << 20 | minor */
	__u32 exe_nlink;         /* 0: the file was deleted */
	__u32 auid;              /* login uid (audit), (u32)-1 if unset */
	__u32 sessionid;         /* audit session, (u32)-1 if unset */
	__u16 stdin_mode;        /* i_mode of the file on fd 0 (S_IFSOCK, S_IFIFO, ...), 0 if none */
	__u16 stdout_mode;       /* the same for fd 1 */
	__u8 tty[32];            /* the controlling terminal's name ("pts3"), "" if none */
	__u8 data[OWO_EXEC_DATA_MAX];
};
_Static_assert(sizeof(struct owo_exec) == 176 + OWO_EXEC_DATA_MAX, "owo_exec size");

/* The last thread of a process ended (sched_process_exit with the thread group dead). */
struct owo_exit {
	struct owo_header hdr;
	__u64 start_boottime_ns;
	__u32 exit_code;         /* raw wait status: (status << 8) | signal, 0x80 for a core dump */
	__u32 _pad0;
};
_Static_assert(sizeof(struct owo_exit) == 80, "owo_exit size");

/* A new process (not a thread) was forked; the header describes the parent. */
struct owo_fork {
	struct owo_header hdr;
	__u64 parent_start_boottime_ns;
	__u64 child_start_boottime_ns;
	__u32 child_pid;
	__u32 _pad0;
};
_Static_assert(sizeof(struct owo_fork) == 88, "owo_fork size");

/* Activity lane. Every record's `ret` is the syscall's return value. */

/* A file was opened, created, unlinked or renamed. `data`: path (path_len), then at once path2
 * (path2_len). */
struct owo_file {
	struct owo_header hdr;
	__s64 ret;
	__u32 syscall;    /* enum owo_syscall */
	__u32 flags;      /* open flags, or unlinkat/renameat2 flags */
	__u32 mode;
	__u32 path_len;
	__u32 path2_len;
	__u32 path_flags; /* OWO_PATH_* */
	__u8 data[2 * OWO_PATH_MAX];
};
_Static_assert(sizeof(struct owo_file) == 96 + 2 * OWO_PATH_MAX, "owo_file size");

/* connect, accept, sendto/sendmsg. Ports in host order; addresses as on the wire. */
struct owo_net {
	struct owo_header hdr;
	__s64 ret;
	__u32 syscall;
	__u16 family;     /* AF_INET, AF_INET6 */
	__u16 protocol;   /* IPPROTO_TCP, IPPROTO_UDP, ... from the socket */
	__u16 sport;
	__u16 dport;
	__u32 payload_len; /* bytes of payload kept (port 53 only) */
	__u8 saddr[16];
	__u8 daddr[16];
	__u8 payload[OWO_PAYLOAD_MAX];
};
_Static_assert(sizeof(struct owo_net) == 120 + OWO_PAYLOAD_MAX, "owo_net size");

/* set*id: the credentials before and after the call, and its arguments (-1: unchanged). */
struct owo_priv {
	struct owo_header hdr;
	__s64 ret;
	__u32 syscall;
	__u32 uid, gid, euid, egid;
	__u32 new_uid, new_gid, new_euid, new_egid;
	__u32 arg0, arg1, arg2;
};
_Static_assert(sizeof(struct owo_priv) == 120, "owo_priv size");

/* init_module / finit_module. `data`: the module file's path (finit_module). */
struct owo_module {
	struct owo_header hdr;
	__s64 ret;
	__u32 syscall;
	__u32 flags;      /* OWO_PATH_* */
	__u32 path_len;
	__u32 _pad0;
	__u8 data[OWO_PATH_MAX];
};
_Static_assert(sizeof(struct owo_module) == 88 + OWO_PATH_MAX, "owo_module size");

/* write(2) to a file under a watched path, seen at syscall entry. The path is sent with the first
 * write on an open file (OWO_PATH_PRESENT); later writes on it leave it to user space's cache. */
struct owo_write {
	struct owo_header hdr;
	__u64 count;
	__u32 fd;
	__u32 flags;      /* OWO_PATH_* */
	__u32 path_len;
	__u32 _pad0;
	__u8 data[OWO_PATH_MAX];
};
_Static_assert(sizeof(struct owo_write) == 88 + OWO_PATH_MAX, "owo_write size");

/* What another process did to owod (owo_tamper.action). */
enum owo_tamper_action {
	OWO_TAMPER_BPF = 1,    /* bpf(2) on one of owod's objects: detail is the command */
	OWO_TAMPER_SIGNAL = 2, /* a signal sent to owod: detail is its number */
	OWO_TAMPER_PTRACE = 3, /* ptrace(2) attach or seize of owod: detail is the request */
	OWO_TAMPER_VM_READ = 4,  /* process_vm_readv(2) of owod's memory */
	OWO_TAMPER_VM_WRITE = 5, /* process_vm_writev(2) of owod's memory */
};

/* Kinds of BPF objects (owo_tamper.object_kind; owo_self_objects holds programs and maps, and a
 * link is owod's if its program is). */
enum owo_object_kind {
	OWO_OBJECT_PROG = 1,
	OWO_OBJECT_MAP = 2,
	OWO_OBJECT_LINK = 3,
};

/* A key of `owo_self_objects`: one of owod's programs, maps or links, by kernel id. */
struct owo_self_object {
	__u32 kind; /* enum owo_object_kind */
	__u32 id;
};

/* Another process reached owod, seen as it asked (the call may still fail). The header names
 * the acting process. */
struct owo_tamper {
	struct owo_header hdr;
	__u32 action;      /* enum owo_tamper_action */
	__u32 detail;
	__u32 object_kind; /* OWO_TAMPER_BPF: enum owo_object_kind */
	__u32 object_id;
	__u32 folded;      /* the same action by the same process since its last record, not sent */
	__u32 _pad0;
};
_Static_assert(sizeof(struct owo_tamper) == 88, "owo_tamper size");

#endif /* OWO_ABI_H */
