/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The file monitor: open, create, unlink and rename, at syscall exit. A successful open is
 * named by the file the kernel produced; everything else by the path given, made absolute
 * against the cwd or the directory fd. Only paths under a watched prefix are sent, unless
 * OWO_CFG_FILE_ALL_PATHS.
 */
#ifndef OWO_FILE_BPF_H
#define OWO_FILE_BPF_H

#include "syscall.bpf.h"

#define OWO_O_CREAT 0100
#define OWO_CREAT_FLAGS 01101 /* O_CREAT | O_WRONLY | O_TRUNC */
#define OWO_AT_REMOVEDIR 0x200

/* Put the scratch path (`len`) into the record at `off` (0 for path, path_len for path2). */
static __always_inline __u32 owo_file_take(struct owo_file *ev, __u64 off, __u32 len)
{
	return owo_path_copy(ev->data + owo_bound(off, OWO_PATH_MAX), len);
}

static __always_inline void owo_file_send(struct owo_file *ev, struct owo_pending *p, __s64 ret)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	/* path2 follows path: a record is as long as its names. */
	__u64 size = offsetof(struct owo_file, data) + ev->path_len + ev->path2_len;

	size = owo_bound(size, sizeof(*ev));
	ev->ret = ret;
	ev->syscall = p->syscall;
	owo_activity_header(&ev->hdr, OWO_KIND_FILE, size, task, OWO_MON_FILE, p->via);
	owo_activity_output(ev, size, OWO_MON_FILE);
}

/* open, openat, openat2, creat. */
static __always_inline int owo_file_open(struct owo_pending *p, __s64 ret)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct owo_file *ev = owo_activity_buf();
	__s64 dfd = OWO_AT_FDCWD;
	const char *name;
	__u64 flags, mode;
	bool truncated = false;
	__u32 len;

	if (!ev)
		return 0;
	switch (p->syscall) {
	case OWO_SYS_OPEN:
		name = (void *)p->args[0], flags = p->args[1], mode = p->args[2];
		break;
	case OWO_SYS_CREAT:
		name = (void *)p->args[0], flags = OWO_CREAT_FLAGS, mode = p->args[1];
		break;
	case OWO_SYS_OPENAT2: {
		__u64 how[2] = {}; /* struct open_how: flags, mode */

		bpf_probe_read_user(how, sizeof(how), (void *)p->args[2]);
		dfd = p->args[0], name = (void *)p->args[1], flags = how[0], mode = how[1];
		break;
	}
	default: /* openat */
		dfd = p->args[0], name = (void *)p->args[1], flags = p->args[2], mode = p->args[3];
		break;
	}
	bool unclean = false;

	__s32 kept = ret >= 0 ? owo_fd_watched_path(task, ret, &truncated, true) : 0;

	if (kept < 0)
		return 0; /* under no watched prefix */
	len = kept;
	if (!len) {
		len = owo_user_path(task, dfd, name, &truncated);
		unclean = owo_path_unclean(len);
		if (!unclean && !owo_path_watched(len))
			return 0;
	}
	ev->flags = flags;
	ev->mode = mode;
	ev->path_len = owo_file_take(ev, 0, len);
	ev->path2_len = 0;
	ev->path_flags = (truncated ? OWO_PATH_TRUNCATED : 0) | (unclean ? OWO_PATH_UNCLEAN : 0);
	owo_file_send(ev, p, ret);
	return 0;
}

/* unlink, unlinkat, rmdir. */
static __always_inline int owo_file_unlink(struct owo_pending *p, __s64 ret)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct owo_file *ev = owo_activity_buf();
	bool truncated;
	__u32 len;

	if (p->syscall == OWO_SYS_RMDIR || (p->syscall == OWO_SYS_UNLINKAT && (p->args[2] & OWO_AT_REMOVEDIR)))
		owo_path_moved();
	if (!ev)
		return 0;
	if (p->syscall == OWO_SYS_UNLINKAT) {
		len = owo_user_path(task, p->args[0], (void *)p->args[1], &truncated);
		ev->flags = p->args[2];
	} else {
		len = owo_user_path(task, OWO_AT_FDCWD, (void *)p->args[0], &truncated);
		ev->flags = 0;
	}
	bool unclean = owo_path_unclean(len);

	if (!unclean && !owo_path_watched(len))
		return 0;
	ev->mode = 0;
	ev->path_len = owo_file_take(ev, 0, len);
	ev->path2_len = 0;
	ev->path_flags = (truncated ? OWO_PATH_TRUNCATED : 0) | (unclean ? OWO_PATH_UNCLEAN : 0);
	owo_file_send(ev, p, ret);
	return 0;
}

/* rename, renameat, renameat2: sent when either name is watched. */
static __always_inline int owo_file_rename(struct owo_pending *p, __s64 ret)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct owo_file *ev = owo_activity_buf();
	__s64 olddfd = OWO_AT_FDCWD, newdfd = OWO_AT_FDCWD;
	const char *oldname, *newname;
	bool truncated, watched, unclean;
	__u32 len;

	owo_path_moved(); /* a directory may have moved */
	if (!ev)
		return 0;
	if (p->syscall == OWO_SYS_RENAME) {
		oldname = (void *)p->args[0], newname = (void *)p->args[1], ev->flags = 0;
	} else {
		olddfd = p->args[0], oldname = (void *)p->args[1];
		newdfd = p->args[2], newname = (void *)p->args[3];
		ev->flags = p->syscall == OWO_SYS_RENAMEAT2 ? p->args[4] : 0;
	}
	len = owo_user_path(task, olddfd, oldname, &truncated);
	unclean = owo_path_unclean(len);
	watched = owo_path_watched(len);
	ev->path_len = owo_file_take(ev, 0, len);
	ev->path_flags = truncated ? OWO_PATH_TRUNCATED : 0;
	len = owo_user_path(task, newdfd, newname, &truncated);
	unclean = owo_path_unclean(len) || unclean;
	watched = owo_path_watched(len) || watched;
	if (!watched && !unclean)
		return 0;
	ev->path_flags |= unclean ? OWO_PATH_UNCLEAN : 0;
	ev->path2_len = owo_file_take(ev, ev->path_len, len);
	ev->path_flags |= truncated ? OWO_PATH2_TRUNCATED : 0;
	ev->mode = 0;
	owo_file_send(ev, p, ret);
	return 0;
}

/* Calls that move a mount, and with it every path under it: the cache of unwatched
 * directories forgets what it knew. Only at exit, when the move is done: a walk that starts
 * later sees the new tree, and one that started before stored a stale epoch. */
#define OWO_MOVED(sys)                                                \
	SEC("tracepoint/syscalls/sys_exit_" #sys)                     \
	int owo_moved_##sys(struct owo_sys_exit *ctx)                 \
	{                                                             \
		owo_path_moved();                                     \
		return 0;                                             \
	}

OWO_MOVED(mount)
OWO_MOVED(umount)
OWO_MOVED(move_mount)
OWO_MOVED(pivot_root)

OWO_ENTER(open, OWO_SYS_OPEN, OWO_MON_FILE, 3)
OWO_EXIT(open, OWO_SYS_OPEN, owo_file_open)
OWO_ENTER(openat, OWO_SYS_OPENAT, OWO_MON_FILE, 4)
OWO_EXIT(openat, OWO_SYS_OPENAT, owo_file_open)
OWO_ENTER(openat2, OWO_SYS_OPENAT2, OWO_MON_FILE, 4)
OWO_EXIT(openat2, OWO_SYS_OPENAT2, owo_file_open)
OWO_ENTER(creat, OWO_SYS_CREAT, OWO_MON_FILE, 2)
OWO_EXIT(creat, OWO_SYS_CREAT, owo_file_open)
OWO_ENTER(unlink, OWO_SYS_UNLINK, OWO_MON_FILE, 1)
OWO_EXIT(unlink, OWO_SYS_UNLINK, owo_file_unlink)
OWO_ENTER(unlinkat, OWO_SYS_UNLINKAT, OWO_MON_FILE, 3)
OWO_EXIT(unlinkat, OWO_SYS_UNLINKAT, owo_file_unlink)
OWO_ENTER(rmdir, OWO_SYS_RMDIR, OWO_MON_FILE, 1)
OWO_EXIT(rmdir, OWO_SYS_RMDIR, owo_file_unlink)
OWO_ENTER(rename, OWO_SYS_RENAME, OWO_MON_FILE, 2)
OWO_EXIT(rename, OWO_SYS_RENAME, owo_file_rename)
OWO_ENTER(renameat, OWO_SYS_RENAMEAT, OWO_MON_FILE, 4)
OWO_EXIT(renameat, OWO_SYS_RENAMEAT, owo_file_rename)
OWO_ENTER(renameat2, OWO_SYS_RENAMEAT2, OWO_MON_FILE, 5)
OWO_EXIT(renameat2, OWO_SYS_RENAMEAT2, owo_file_rename)

#endif /* OWO_FILE_BPF_H */
