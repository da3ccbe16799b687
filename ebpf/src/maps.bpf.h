/* SPDX-License-Identifier: GPL-2.0-only */
/* Maps shared by every OWO program, and the helpers that use them. */
#ifndef OWO_MAPS_BPF_H
#define OWO_MAPS_BPF_H

#include <stdbool.h>
#include <stddef.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#include "owo_abi.h"
#include "owo_core.h"

/* Process lane: exec, exit and fork only, so a flood of activity can never cost one of these. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20); /* owod may resize it at load */
} owo_proc_events SEC(".maps");

/* Monitor flags (index enum owo_monitor) and OWO_CFG_* values, written by owod. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, OWO_CFG_LEN);
	__type(key, __u32);
	__type(value, __u32);
} owo_config SEC(".maps");

/* Records that could not be reserved in a ring buffer, per monitor. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, OWO_MON_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} owo_ringbuf_drops SEC(".maps");

/* Scratch space to build an exec record: too big for the 512-byte BPF stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct owo_exec);
} owo_exec_scratch SEC(".maps");

/*
 * `v`, but at most `max`, in a form every verifier since 5.10 can follow: the test is in asm, so
 * clang can neither drop it nor move it to a copy of `v`, and both paths leave `v <= max` in the
 * register that is used next. (A C clamp is proven redundant or split across registers by clang,
 * and 6.1's verifier then loses the bound: "unbounded memory access".)
 */
static __always_inline __u64 owo_bound(__u64 v, __u64 max)
{
	asm volatile("if %0 <= %1 goto +1\n\t%0 = %1" : "+r"(v) : "i"(max));
	return v;
}

static __always_inline __u32 owo_config_get(__u32 key)
{
	__u32 *value = bpf_map_lookup_elem(&owo_config, &key);

	return value ? *value : 0;
}

/* Is the current task owod itself? Its own activity is never reported. */
static __always_inline bool owo_is_self(void)
{
	return (bpf_get_current_pid_tgid() >> 32) == owo_config_get(OWO_CFG_SELF_TGID);
}

/* Is this monitor on, and is the current task someone other than owod itself? */
static __always_inline bool owo_wanted(__u32 monitor)
{
	return owo_config_get(monitor) && !owo_is_self();
}

static __always_inline void owo_count_drop(__u32 monitor)
{
	__u64 *count = bpf_map_lookup_elem(&owo_ringbuf_drops, &monitor);

	if (count)
		*count += 1;
}

/*
 * Below this much unread data a record does not wake owod: it reads both rings every few
 * milliseconds anyway, and a wake-up per record costs more than the record. Past it, owod is
 * woken at once, so a burst cannot fill a ring while it sleeps. Each CPU counts what it sent
 * since it last woke owod, against its share of the bound (OWO_CFG_WAKEUP_BYTES, set by owod):
 * asking the ring how full it is reads the line owod's reader writes, a cache miss that cost
 * more than the rest of a watched open.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2); /* 0: the process lane, 1: the activity lane */
	__type(key, __u32);
	__type(value, __u64);
} owo_unwoken_bytes SEC(".maps");

static __always_inline __u64 owo_wakeup(__u32 lane, __u64 size)
{
	__u64 *unwoken = bpf_map_lookup_elem(&owo_unwoken_bytes, &lane);
	__u32 share = owo_config_get(OWO_CFG_WAKEUP_BYTES);

	if (!unwoken)
		return BPF_RB_FORCE_WAKEUP;
	*unwoken += size;
	if (*unwoken < (share ? share : OWO_WAKEUP_BYTES))
		return BPF_RB_NO_WAKEUP;
	*unwoken = 0;
	return BPF_RB_FORCE_WAKEUP;
}

/* Send `size` bytes of `record` on the process lane, counting a failure against `monitor`. */
static __always_inline void owo_proc_output(void *record, __u64 size, __u32 monitor)
{
	if (bpf_ringbuf_output(&owo_proc_events, record, size, owo_wakeup(0, size)))
		owo_count_drop(monitor);
}

/* Fill the header from the current task. */
static __always_inline void owo_fill_header(struct owo_header *hdr, __u32 kind, __u32 size,
					    struct task_struct *task, __u32 monitor)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 uid_gid = bpf_get_current_uid_gid();

	hdr->kind = kind;
	hdr->size = size;
	hdr->ktime_ns = bpf_ktime_get_boot_ns();
	hdr->pid = pid_tgid >> 32;
	hdr->tid = (__u32)pid_tgid;
	hdr->ppid = BPF_CORE_READ(task, real_parent, tgid);
	hdr->uid = (__u32)uid_gid;
	hdr->gid = uid_gid >> 32;
	hdr->flags = owo_config_get(monitor) ? OWO_HDR_REPORT : 0;
	hdr->cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(hdr->comm, sizeof(hdr->comm));
}

/* Is the current task inside a 32-bit compat syscall (x86: TS_COMPAT)? */
static __always_inline bool owo_in_ia32(void)
{
#if defined(__TARGET_ARCH_x86)
	struct task_struct *task = (void *)bpf_get_current_task();

	return BPF_CORE_READ(task, thread_info.status) & OWO_TS_COMPAT;
#else
	return false;
#endif
}

/* The struct file behind a descriptor of `task`, or NULL. */
static __always_inline struct file *owo_fd_file_of(struct task_struct *task, __s64 fd)
{
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct fdtable head; /* max_fds and fd, in one read */
	struct file *file = 0;

	if (bpf_core_read(&head, sizeof(head), fdt) || fd < 0 || fd >= head.max_fds)
		return 0;
	bpf_probe_read_kernel(&file, sizeof(file), &head.fd[fd]);
	return file;
}

#endif /* OWO_MAPS_BPF_H */
