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
	OWO_MON_COUNT = 8,
};

/* Keys of the `owo_config` array map (__u32 values). 0..OWO_MON_COUNT-1 are the monitor flags. */
enum owo_config_key {
	OWO_CFG_SELF_TGID = 15, /* owod's own pid: its own activity is never reported */
	OWO_CFG_LEN = 16,
};

/* owo_header.flags */
#define OWO_HDR_REPORT (1u << 0) /* the monitor is on: export this; otherwise it only feeds the process table */

/* Limits of the variable part of an exec record. */
#define OWO_PATH_MAX 4096    /* one path section (filename, exe, cwd) */
#define OWO_NAME_MAX 256     /* one path component, with its NUL */
#define OWO_PATH_DEPTH 48    /* components walked before a path is marked truncated */
#define OWO_ARGS_MAX 16384   /* bytes of argv read from the new image */
#define OWO_EXEC_DATA_MAX (3 * OWO_PATH_MAX + OWO_ARGS_MAX)

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
 * A program image was executed (sched_process_exec). `data` holds, back to back: the filename as
 * passed to exec (filename_len bytes, no NUL), the executable's path and the working directory,
 * each as its components from the leaf up to the root, each component NUL-terminated (user space
 * joins them in reverse), then argv as read from the new image (args_len bytes, NUL-separated).
 * Only `size` bytes are sent.
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
	__u8 data[OWO_EXEC_DATA_MAX];
};
_Static_assert(sizeof(struct owo_exec) == 96 + OWO_EXEC_DATA_MAX, "owo_exec size");

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

#endif /* OWO_ABI_H */
