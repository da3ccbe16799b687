/* SPDX-License-Identifier: GPL-2.0-only */
/* The process lane: exec, exit and fork, the spine of the process table. */
#ifndef OWO_PROCESS_BPF_H
#define OWO_PROCESS_BPF_H

#include "maps.bpf.h"
#include "path.bpf.h"
#include "syscall.bpf.h"

/* The inode's ctime, wherever this kernel keeps it (see owo_core.h). */
static __always_inline void owo_inode_ctime(struct inode *inode, struct owo_exec *ev)
{
	struct inode___ctime_hidden *hidden = (void *)inode;
	struct inode___ctime_plain *plain = (void *)inode;

	if (bpf_core_field_exists(inode->i_ctime_sec)) {
		ev->exe_ctime_sec = BPF_CORE_READ(inode, i_ctime_sec);
		/* Since 6.13 the top bit says "ctime was queried" (multigrain timestamps). */
		ev->exe_ctime_nsec = BPF_CORE_READ(inode, i_ctime_nsec) & ~(1u << 31);
	} else if (bpf_core_field_exists(hidden->__i_ctime)) {
		ev->exe_ctime_sec = BPF_CORE_READ(hidden, __i_ctime.tv_sec);
		ev->exe_ctime_nsec = BPF_CORE_READ(hidden, __i_ctime.tv_nsec);
	} else if (bpf_core_field_exists(plain->i_ctime)) {
		ev->exe_ctime_sec = BPF_CORE_READ(plain, i_ctime.tv_sec);
		ev->exe_ctime_nsec = BPF_CORE_READ(plain, i_ctime.tv_nsec);
	}
}

/*
 * How the exec was asked for: a 32-bit execve left its mark in the thread's pending slot
 * (TS_COMPAT says nothing by now: it follows the new image).
 */
static __always_inline void owo_exec_via(struct owo_header *hdr)
{
	struct owo_pending *p = owo_pending_slot(false);

	if (p && p->armed && (p->syscall == OWO_SYS_EXECVE || p->syscall == OWO_SYS_EXECVEAT)) {
		hdr->flags |= p->via;
		p->armed = 0;
	}
}

SEC("tracepoint/sched/sched_process_exec")
int owo_exec(struct trace_event_raw_sched_process_exec *ctx)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct owo_exec *ev;
	__u32 zero = 0, off, n;
	bool truncated;

	/* Sent even with the monitor off: the process table needs every exec. */
	if (owo_is_self())
		return 0;
	ev = bpf_map_lookup_elem(&owo_exec_scratch, &zero);
	if (!ev)
		return 0;

	ev->start_boottime_ns = BPF_CORE_READ(task, group_leader, start_boottime);
	ev->flags = 0;

	/* The filename as passed to exec, from the tracepoint's own copy. */
	long len = bpf_probe_read_kernel_str(ev->data, OWO_PATH_MAX,
					     (void *)ctx + (BPF_CORE_READ(ctx, __data_loc_filename) & 0xffff));
	off = len > 0 ? len - 1 : 0; /* drop the NUL */
	if (off >= OWO_PATH_MAX - 1)
		ev->flags |= OWO_EXEC_FILENAME_TRUNCATED;
	ev->filename_len = off;

	/* The executable the kernel mapped, and the working directory. */
	struct mm_struct *mm = BPF_CORE_READ(task, mm);
	struct file *exe_file = BPF_CORE_READ(mm, exe_file);

	ev->exe_len = 0;
	ev->exe_ino = 0, ev->exe_size = 0, ev->exe_ctime_sec = 0, ev->exe_ctime_nsec = 0;
	ev->exe_dev = 0, ev->exe_nlink = 0;
	if (exe_file) {
		struct inode *inode = BPF_CORE_READ(exe_file, f_inode);

		ev->exe_ino = BPF_CORE_READ(inode, i_ino);
		ev->exe_size = BPF_CORE_READ(inode, i_size);
		ev->exe_nlink = BPF_CORE_READ(inode, i_nlink);
		ev->exe_dev = BPF_CORE_READ(inode, i_sb, s_dev);
		owo_inode_ctime(inode, ev);
	}

	/* Who, from where: login uid and session (audit), and the controlling terminal. */
	ev->auid = (__u32)-1, ev->sessionid = (__u32)-1;
	if (bpf_core_field_exists(task->loginuid)) {
		ev->auid = BPF_CORE_READ(task, loginuid.val);
		ev->sessionid = BPF_CORE_READ(task, sessionid);
	}
	/* What stdin and stdout are: a shell whose stdio is a socket is a reverse shell. */
	struct file *in = owo_fd_file_of(task, 0), *out = owo_fd_file_of(task, 1);

	ev->stdin_mode = in ? BPF_CORE_READ(in, f_inode, i_mode) : 0;
	ev->stdout_mode = out ? BPF_CORE_READ(out, f_inode, i_mode) : 0;

	struct tty_struct *tty = BPF_CORE_READ(task, signal, tty);

	ev->tty[0] = 0;
	if (tty)
		bpf_core_read_str(ev->tty, sizeof(ev->tty), &tty->name);

	if (exe_file && off < OWO_PATH_MAX) {
		struct path exe_path;

		BPF_CORE_READ_INTO(&exe_path, exe_file, f_path);
		n = owo_path_copy(ev->data + off, owo_path_resolve(&exe_path, false, &truncated));
		ev->flags |= OWO_EXEC_HAS_EXE | (truncated ? OWO_EXEC_EXE_TRUNCATED : 0);
		ev->exe_len = n;
		off += n;
	}

	ev->cwd_len = 0;
	if (off < 2 * OWO_PATH_MAX) {
		struct path pwd;

		BPF_CORE_READ_INTO(&pwd, task, fs, pwd);
		n = owo_path_copy(ev->data + off, owo_path_resolve(&pwd, false, &truncated));
		ev->flags |= OWO_EXEC_HAS_CWD | (truncated ? OWO_EXEC_CWD_TRUNCATED : 0);
		ev->cwd_len = n;
		off += n;
	}

	/* argv from the new image: the tracepoint fires once it is in place. */
	unsigned long arg_start = BPF_CORE_READ(mm, arg_start);
	unsigned long arg_end = BPF_CORE_READ(mm, arg_end);
	__u64 argv_bytes = arg_end > arg_start ? arg_end - arg_start : 0;
	__u32 args_len = argv_bytes;

	if (argv_bytes > OWO_ARGS_MAX) {
		args_len = OWO_ARGS_MAX;
		ev->flags |= OWO_EXEC_ARGS_TRUNCATED;
	}
	ev->argv_bytes = argv_bytes > 0xffffffff ? 0xffffffff : argv_bytes;
	ev->args_len = 0;
	if (off <= 3 * OWO_PATH_MAX && args_len > 0) {
		__u64 at = owo_bound(off, 3 * OWO_PATH_MAX), n = owo_bound(args_len, OWO_ARGS_MAX);

		if (!bpf_probe_read_user(ev->data + at, n, (void *)arg_start)) {
			ev->args_len = args_len;
			off += args_len;
		} else {
			ev->flags |= OWO_EXEC_ARGS_TRUNCATED; /* unreadable: say so, never an empty argv */
		}
	}

	__u64 size = owo_bound(offsetof(struct owo_exec, data) + off, sizeof(*ev));

	owo_fill_header(&ev->hdr, OWO_KIND_EXEC, size, task, OWO_MON_EXECVE);
	owo_exec_via(&ev->hdr);
	owo_proc_output(ev, size, OWO_MON_EXECVE);
	return 0;
}

SEC("tracepoint/sched/sched_process_exit")
int owo_exit(struct trace_event_raw_sched_process_exit *ctx)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct owo_exit ev;
	bool group_dead;

	/*
	 * Only the last thread of a process. The tracepoint says so itself since 6.16; before, a
	 * thread whose exit took `live` to 0 is the last, but two threads exiting together can both
	 * see 0, so owod also drops a second exit of the same process.
	 */
	if (bpf_core_field_exists(ctx->group_dead))
		group_dead = BPF_CORE_READ(ctx, group_dead);
	else
		group_dead = BPF_CORE_READ(task, signal, live.counter) == 0;
	/* Kernel threads are the kernel's housekeeping, not something that ran. */
	if (!group_dead || (BPF_CORE_READ(task, flags) & OWO_PF_KTHREAD) || owo_is_self())
		return 0;
	/* Sent even with the monitor off: the process table needs every exit. */
	ev.start_boottime_ns = BPF_CORE_READ(task, group_leader, start_boottime);
	ev.exit_code = BPF_CORE_READ(task, exit_code);
	ev._pad0 = 0;
	owo_fill_header(&ev.hdr, OWO_KIND_EXIT, sizeof(ev), task, OWO_MON_EXIT);
	owo_proc_output(&ev, sizeof(ev), OWO_MON_EXIT);
	return 0;
}

/* raw: the classic tracepoint does not say whether the child is a thread. */
SEC("raw_tracepoint/sched_process_fork")
int owo_fork(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *parent = (void *)ctx->args[0];
	struct task_struct *child = (void *)ctx->args[1];
	struct owo_fork ev;
	int child_pid = BPF_CORE_READ(child, pid);

	if (child_pid != BPF_CORE_READ(child, tgid))
		return 0; /* a new thread, not a new process */
	if (BPF_CORE_READ(child, flags) & OWO_PF_KTHREAD)
		return 0; /* the kernel's own workers */
	if (owo_is_self())
		return 0;
	ev.parent_start_boottime_ns = BPF_CORE_READ(parent, group_leader, start_boottime);
	ev.child_start_boottime_ns = BPF_CORE_READ(child, start_boottime);
	ev.child_pid = child_pid;
	ev._pad0 = 0;
	owo_fill_header(&ev.hdr, OWO_KIND_FORK, sizeof(ev), parent, OWO_MON_FORK);
	owo_proc_output(&ev, sizeof(ev), OWO_MON_FORK);
	return 0;
}

#endif /* OWO_PROCESS_BPF_H */
