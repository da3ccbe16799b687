/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The activity lane's plumbing: syscall tracepoint contexts, the arguments stashed at entry for
 * the exit handler, fd-to-file lookup, the watched-path filter and the activity ring buffer.
 * Activity records are read at syscall exit so that `ret` is known and, where the kernel
 * produced a file (an fd), its path is the kernel's own, not a user buffer.
 */
#ifndef OWO_SYSCALL_BPF_H
#define OWO_SYSCALL_BPF_H

#include "maps.bpf.h"
#include "path.bpf.h"

#define OWO_AT_FDCWD -100

/* tracefs: events/syscalls/sys_{enter,exit}_* /format (stable since the events exist) */
struct owo_sys_enter {
	__u64 common;
	__s64 nr;
	__u64 args[6];
};

struct owo_sys_exit {
	__u64 common;
	__s64 nr;
	__s64 ret;
};

/* Activity lane: file, network, privilege, module and write records. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20); /* owod may resize it at load */
} owo_activity_events SEC(".maps");

/* Watched path prefixes, each stored with a trailing "/" (owod writes them). */
struct owo_watch_key {
	__u32 prefixlen;
	__u8 path[OWO_WATCH_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, OWO_WATCH_PATHS + OWO_GUARD_PATHS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct owo_watch_key);
	__type(value, __u32);
} owo_watch_paths SEC(".maps");

/* A syscall's arguments, from entry to exit, per thread. */
struct owo_pending {
	__u64 args[6];
	__u32 syscall;
	__u32 uid, gid, euid, egid; /* credentials at entry (privilege monitor only) */
	__u32 armed;                /* stashed at entry and not yet taken at exit */
	__u32 via;                  /* OWO_HDR_IA32 for a 32-bit compat syscall */
};

#ifdef OWO_BOUNDED_LOOPS
/* Before 5.17: a hash by thread id, LRU so that a thread killed inside a syscall leaks nothing. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct owo_pending);
} owo_pending_args SEC(".maps");

static __always_inline struct owo_pending *owo_pending_slot(bool create)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct owo_pending fresh = {};

	if (create)
		bpf_map_update_elem(&owo_pending_args, &id, &fresh, BPF_ANY);
	return bpf_map_lookup_elem(&owo_pending_args, &id);
}
#else
/*
 * From 5.17: the thread's own storage, made at its first watched syscall and freed with the
 * thread. A lookup costs a fraction of a hash update (which, on an LRU hash, was most of the
 * cost of an open's entry).
 */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct owo_pending);
} owo_pending_args SEC(".maps");

static __always_inline struct owo_pending *owo_pending_slot(bool create)
{
	return bpf_task_storage_get(&owo_pending_args, bpf_get_current_task_btf(), 0,
				    create ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);
}
#endif

/* Room to build any activity record (owo_file is the largest). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct owo_file);
} owo_activity_scratch SEC(".maps");

static __always_inline void *owo_activity_buf(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&owo_activity_scratch, &zero);
}

/* Send a record on the activity lane; false (and counted) if the ring had no room. */
static __always_inline bool owo_activity_output(void *record, __u64 size, __u32 monitor)
{
	if (bpf_ringbuf_output(&owo_activity_events, record, size, owo_wakeup(1, size))) {
		owo_count_drop(monitor);
		return false;
	}
	return true;
}

/*
 * Remember the arguments of a syscall whose monitor is on, and how it was made (`via`, the
 * OWO_HDR_* bits its record will carry).
 */
static __always_inline int owo_stash_args(const __u64 *args, __u32 syscall, __u32 monitor, __u32 via)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	__u64 id = bpf_get_current_pid_tgid();
	struct owo_pending *p;

	if (!owo_config_get(monitor) || (id >> 32) == owo_config_get(OWO_CFG_SELF_TGID))
		return 0;
	p = owo_pending_slot(true);
	if (!p)
		return 0;
	__builtin_memcpy(p->args, args, sizeof(p->args));
	p->syscall = syscall;
	p->via = via;
	/* Only a set*id record shows the credentials before the call (eight reads, for nothing
	 * on an open). */
	if (monitor == OWO_MON_PRIVILEGE) {
		p->uid = BPF_CORE_READ(task, cred, uid.val);
		p->gid = BPF_CORE_READ(task, cred, gid.val);
		p->euid = BPF_CORE_READ(task, cred, euid.val);
		p->egid = BPF_CORE_READ(task, cred, egid.val);
	}
	p->armed = 1;
	return 0;
}

/*
 * owo_stash_args for a syscall tracepoint. Only `nargs` are read: the kernel refuses to attach
 * a program that reads past the end of the tracepoint's record.
 */
static __always_inline int owo_stash(struct owo_sys_enter *ctx, __u32 syscall, __u32 monitor, int nargs)
{
	__u64 args[6] = {};

	for (int i = 0; i < 6 && i < nargs; i++)
		args[i] = ctx->args[i];
	return owo_stash_args(args, syscall, monitor, 0);
}

/* Take back what owo_stash kept for this thread's syscall; false if nothing (monitor off). */
static __always_inline bool owo_unstash_any(struct owo_pending *out)
{
	struct owo_pending *p = owo_pending_slot(false);

	if (!p || !p->armed)
		return false;
	__builtin_memcpy(out, p, sizeof(*out));
	p->armed = 0;
	return true;
}

/* owo_unstash_any, for the exit of `syscall`. */
static __always_inline bool owo_unstash(__u32 syscall, struct owo_pending *out)
{
	return owo_unstash_any(out) && out->syscall == syscall;
}

/* The header of an activity record: the current task's, and how the call was made. */
static __always_inline void owo_activity_header(struct owo_header *hdr, __u32 kind, __u32 size,
						struct task_struct *task, __u32 monitor, __u32 via)
{
	owo_fill_header(hdr, kind, size, task, monitor);
	hdr->flags |= via;
}

/* The struct file behind a descriptor of the current task, or NULL. */
static __always_inline struct file *owo_fd_file(struct task_struct *task, __s64 fd)
{
	return owo_fd_file_of(task, fd);
}

/* Absolute path of the file behind `fd` into the scratch buffer; 0 if there is none. */
static __always_inline __u32 owo_fd_path(struct task_struct *task, __s64 fd, bool *truncated)
{
	struct file *file = owo_fd_file(task, fd);
	struct path path;

	if (!file)
		return 0;
	BPF_CORE_READ_INTO(&path, file, f_path);
	return owo_path_resolve(&path, false, truncated);
}

/*
 * Directories under no watched prefix, by (mount, dentry), so that the next open in one is
 * turned away without a walk to the root. An entry holds only while
 * - no directory was renamed or removed and no mount moved since (the kernel side bumps
 *   OWO_CFG_PATH_EPOCH at the exit of those calls, and a walk reads it before it starts);
 * - the watched prefixes did not change (owod bumps OWO_CFG_WATCH_GEN);
 * - the dentry still holds the same inode (a freed dentry reused for another directory);
 * - for OWO_DIR_TTL_NS: what no local syscall shows (a rename on an NFS server, or one
 *   submitted through io_uring) is forgotten within it.
 */
#define OWO_DIR_TTL_NS 1000000000ull

struct owo_dir_key {
	__u64 mnt;
	__u64 dentry;
};

struct owo_dir_seen {
	__u64 stamp; /* OWO_CFG_WATCH_GEN << 32 | OWO_CFG_PATH_EPOCH when it was walked */
	__u64 inode;
	__u64 ino;
	__u64 expires_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct owo_dir_key);
	__type(value, struct owo_dir_seen);
} owo_unwatched_dirs SEC(".maps");

/*
 * Watched directories' paths, by (mount, dentry) as in owo_unwatched_dirs, and valid under the
 * same conditions: a file opened in one is named by that path and its own name, without the
 * walk to the root. Only paths shorter than OWO_DIR_PATH_MAX are kept.
 */
#define OWO_DIR_PATH_MAX 256

struct owo_dir_path {
	struct owo_dir_seen seen;
	__u32 len; /* of the directory's path, without the "/" that follows it */
	__u32 _pad;
	__u8 path[OWO_DIR_PATH_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct owo_dir_key);
	__type(value, struct owo_dir_path);
} owo_watched_dirs SEC(".maps");

/* Where an entry of owo_watched_dirs is put together: it is too large for the stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct owo_dir_path);
} owo_dir_path_scratch SEC(".maps");

/* Is what the cache knows of a directory still true (`now` holds the time, not yet the TTL)? */
static __always_inline bool owo_dir_current(const struct owo_dir_seen *seen, const struct owo_dir_seen *now)
{
	return seen->stamp == now->stamp && seen->inode == now->inode && seen->ino == now->ino &&
	       seen->expires_ns > now->expires_ns;
}

static __always_inline __u64 owo_path_stamp(void)
{
	return (__u64)owo_config_get(OWO_CFG_WATCH_GEN) << 32 | owo_config_get(OWO_CFG_PATH_EPOCH);
}

/* A directory may have moved, or gone: what the cache knows is stale. */
static __always_inline void owo_path_moved(void)
{
	__u32 key = OWO_CFG_PATH_EPOCH;
	__u32 *epoch = bpf_map_lookup_elem(&owo_config, &key);

	if (epoch)
		__sync_fetch_and_add(epoch, 1);
}

/* Do the scratch path's first `end` bytes and the "/" at `end` start with a watched prefix? */
static __always_inline bool owo_watched_prefix(struct owo_path_buf *buf, __u64 end)
{
	buf->lpm_prefixlen = (end + 1 > OWO_WATCH_MAX ? OWO_WATCH_MAX : end + 1) * 8;
	return bpf_map_lookup_elem(&owo_watch_paths, &buf->lpm_prefixlen) != 0;
}

/* The path of `name` in the directory `dir` (a current entry of owo_watched_dirs), in the
 * scratch buffer; 0 if it cannot be written so. */
static __always_inline __u32 owo_path_in_dir(const struct owo_dir_path *dir, const void *name, bool *truncated)
{
	struct owo_path_buf *buf = owo_path_buf();
	__u64 len = dir->len;
	long n;

	if (!buf || len == 0 || len >= OWO_DIR_PATH_MAX)
		return 0;
	if (bpf_probe_read_kernel(buf->path, OWO_DIR_PATH_MAX, dir->path))
		return 0;
	asm volatile("%0 &= 255" : "+r"(len)); /* OWO_DIR_PATH_MAX - 1, for the verifier */
	buf->path[len] = '/';
	n = bpf_probe_read_kernel_str(&buf->path[len + 1], OWO_NAME_MAX, name);
	if (n <= 0)
		return 0;
	*truncated = false;
	return len + n; /* the NUL ends it */
}

/*
 * After a walk that built the path of a file whose directory is under a watched prefix (so that
 * every file in it is): remember the directory's path in owo_watched_dirs.
 */
static __always_inline void owo_dir_remember(const struct owo_dir_key *dir, const struct owo_dir_seen *now)
{
	struct owo_path_buf *buf = owo_path_buf();
	__u32 zero = 0;
	struct owo_dir_path *entry = bpf_map_lookup_elem(&owo_dir_path_scratch, &zero);
	__u64 len;

	if (!buf || !entry || !buf->done || buf->truncated || buf->leaf_crossed || buf->depth > OWO_PATH_DEPTH)
		return;
	len = buf->leaf_at;
	if (len == 0 || len >= OWO_DIR_PATH_MAX)
		return;
	/* The directory and the "/" after it, as owo_path_watched asks of a whole path. */
	if (!owo_watched_prefix(buf, len))
		return;
	if (bpf_probe_read_kernel(entry->path, OWO_DIR_PATH_MAX, buf->path))
		return;
	entry->seen = *now;
	entry->len = len;
	bpf_map_update_elem(&owo_watched_dirs, dir, entry, BPF_ANY);
}

/* Is the scratch path (`len` bytes) under a watched prefix, or are all paths wanted? */
static __always_inline bool owo_path_watched(__u32 len)
{
	struct owo_path_buf *buf = owo_path_buf();
	bool watched;

	if (owo_config_get(OWO_CFG_FILE_ALL_PATHS))
		return true;
	if (!buf || len >= OWO_PATH_MAX)
		return false;
	__u64 end = owo_bound(len, OWO_PATH_MAX - 1);

	/* "/etc" is stored as "/etc/": a trailing "/" here makes "/etc" and "/etc/x" match it, and
	 * "/etcetera" not. */
	buf->path[end] = '/';
	watched = owo_watched_prefix(buf, end);
	buf->path[end] = 0;
	return watched;
}

/*
 * For the file monitors: like owo_fd_path, but for a file under no watched prefix (unless every
 * path is wanted) -1, and most of those are turned away by the names of their directories before
 * their paths are built. 0 if there is no file. The file is the one the kernel opened, however
 * it was named (relative, with "..", from any kind of directory fd), so its names are its real
 * ones. With
 * `cached` (only for callers whose monitor bumps the epoch), owo_unwatched_dirs and
 * owo_watched_dirs spare the walk.
 */
static __always_inline __s32 owo_fd_watched_path(struct task_struct *task, __s64 fd, bool *truncated,
						 bool cached)
{
	struct file *file = owo_fd_file(task, fd);
	bool filter = !owo_config_get(OWO_CFG_FILE_ALL_PATHS);
	struct owo_dir_key dir = {};
	struct owo_dir_seen now = {};
	struct owo_dir_path *known;
	struct path path;
	__u32 len;

	if (!file)
		return 0;
	BPF_CORE_READ_INTO(&path, file, f_path);
	cached = cached && filter;
	if (cached) {
		struct owo_dir_seen *seen;
		struct dentry *parent = BPF_CORE_READ(path.dentry, d_parent);
		struct inode *inode = BPF_CORE_READ(parent, d_inode);

		dir.mnt = (__u64)path.mnt;
		dir.dentry = (__u64)parent;
		now.stamp = owo_path_stamp();
		now.inode = (__u64)inode;
		now.ino = BPF_CORE_READ(inode, i_ino);
		now.expires_ns = bpf_ktime_get_ns();
		seen = bpf_map_lookup_elem(&owo_unwatched_dirs, &dir);
		if (seen && owo_dir_current(seen, &now))
			return -1;
		/* A file system's root is its own parent: its path is not its parent's and a name.
		 * (A bind mount's root has a parent outside the mount, which no entry is kept for.) */
		known = path.dentry == parent ? 0 : bpf_map_lookup_elem(&owo_watched_dirs, &dir);
		if (known && owo_dir_current(&known->seen, &now)) {
			len = owo_path_in_dir(known, BPF_CORE_READ(path.dentry, d_name.name), truncated);
			if (len)
				return len;
		}
		now.expires_ns += OWO_DIR_TTL_NS;
	}
	len = owo_path_resolve(&path, filter, truncated);
	if (len) {
		/* The name filter compares only the first bytes of each name: the prefixes decide. A
		 * file in a remembered directory needs no such check: that directory's path and "/"
		 * were under a watched prefix, and the prefixes have not changed since. */
		if (!owo_path_watched(len))
			return -1;
		if (cached)
			owo_dir_remember(&dir, &now);
		return len;
	}
	if (cached && owo_path_parent_missed())
		bpf_map_update_elem(&owo_unwatched_dirs, &dir, &now, BPF_ANY);
	return -1;
}

/* A path given to a syscall (relative to `dfd`, or to the cwd) made absolute in the scratch. */
static __always_inline __u32 owo_user_path(struct task_struct *task, __s64 dfd, const char *user,
					   bool *truncated)
{
	__u32 base = 0;
	char first = 0;

	*truncated = false;
	bpf_probe_read_user(&first, 1, user);
	if (first != '/') {
		struct path dir;

		if ((int)dfd == OWO_AT_FDCWD) {
			BPF_CORE_READ_INTO(&dir, task, fs, pwd);
			base = owo_path_resolve(&dir, false, truncated);
		} else {
			base = owo_fd_path(task, dfd, truncated);
		}
	}
	return owo_path_append_user(base, user, truncated);
}

#define OWO_ENTER(sys, id, monitor, nargs)                                    \
	SEC("tracepoint/syscalls/sys_enter_" #sys)                            \
	int owo_enter_##sys(struct owo_sys_enter *ctx)                        \
	{                                                                     \
		return owo_stash(ctx, id, monitor, nargs);                    \
	}

#define OWO_EXIT(sys, id, handler)                                            \
	SEC("tracepoint/syscalls/sys_exit_" #sys)                             \
	int owo_exit_##sys(struct owo_sys_exit *ctx)                          \
	{                                                                     \
		struct owo_pending p;                                         \
		if (!owo_unstash(id, &p))                                     \
			return 0;                                             \
		return handler(&p, ctx->ret);                                 \
	}

#endif /* OWO_SYSCALL_BPF_H */
