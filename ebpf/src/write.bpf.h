/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The write monitor (off by default: noisy): write(2) to files under watched paths, at entry.
 * Resolving a path on every write would be too dear, so an LRU map remembers, per (process, fd),
 * which open file it was and whether it is watched. A different file on the same fd (reuse) is
 * resolved again, and close(2) forgets the fd. The path is sent only with the first write on an
 * open file; user space keeps it for the writes after.
 */
#ifndef OWO_WRITE_BPF_H
#define OWO_WRITE_BPF_H

#include "syscall.bpf.h"

struct owo_fd_seen {
	__u64 file;  /* the struct file last resolved for this fd ... */
	__u64 inode; /* ... and its inode: a freed file object reused at the same address for
		      * another file (an fd closed by dup2, close_range or exec) shows here */
	__u32 watched;
	__u32 _pad0;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* tgid << 32 | fd */
	__type(value, struct owo_fd_seen);
} owo_write_fds SEC(".maps");

/* A write of `count` bytes to `fd`, made `via` a syscall (OWO_HDR_* bits). */
static __always_inline int owo_write_seen(__u64 fd, __u64 count, __u32 via)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	__u64 key = (bpf_get_current_pid_tgid() & 0xffffffff00000000ull) | (fd & 0xffffffff);
	struct owo_fd_seen *seen, now = {};
	struct owo_write *ev;
	bool truncated = false;
	__u32 len = 0;

	if (!owo_wanted(OWO_MON_WRITE))
		return 0;
	struct file *file = owo_fd_file(task, fd);

	if (!file)
		return 0;
	now.file = (__u64)file;
	now.inode = (__u64)BPF_CORE_READ(file, f_inode);
	seen = bpf_map_lookup_elem(&owo_write_fds, &key);
	bool same = seen && seen->file == now.file && seen->inode == now.inode;

	if (same && !seen->watched)
		return 0;
	ev = owo_activity_buf();
	if (!ev)
		return 0;
	ev->flags = 0;
	ev->path_len = 0;
	if (!same) {
		__s32 kept = owo_fd_watched_path(task, fd, &truncated, false);

		len = kept > 0 ? kept : 0;
		now.watched = kept > 0;
		bpf_map_update_elem(&owo_write_fds, &key, &now, BPF_ANY);
		if (!now.watched)
			return 0;
		ev->path_len = owo_path_copy(ev->data, len);
		ev->flags = OWO_PATH_PRESENT | (truncated ? OWO_PATH_TRUNCATED : 0);
	}
	ev->count = count;
	ev->fd = fd;
	ev->_pad0 = 0;
	__u64 size = owo_bound(offsetof(struct owo_write, data) + ev->path_len, sizeof(*ev));

	owo_activity_header(&ev->hdr, OWO_KIND_WRITE, size, task, OWO_MON_WRITE, via);
	/* A lost record that carried the path must not leave user space without it: forget the
	 * fd, so the next write sends the path again. */
	if (!owo_activity_output(ev, size, OWO_MON_WRITE) && ev->path_len)
		bpf_map_delete_elem(&owo_write_fds, &key);
	return 0;
}

/* `fd` was closed: what it was is forgotten. */
static __always_inline int owo_write_closed(__u64 fd)
{
	__u64 key = (bpf_get_current_pid_tgid() & 0xffffffff00000000ull) | (fd & 0xffffffff);

	if (owo_config_get(OWO_MON_WRITE))
		bpf_map_delete_elem(&owo_write_fds, &key);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_write")
int owo_enter_write(struct owo_sys_enter *ctx)
{
	return owo_write_seen(ctx->args[0], ctx->args[2], 0);
}

SEC("tracepoint/syscalls/sys_enter_close")
int owo_enter_close(struct owo_sys_enter *ctx)
{
	return owo_write_closed(ctx->args[0]);
}

#endif /* OWO_WRITE_BPF_H */
