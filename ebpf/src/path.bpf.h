/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Path of a struct path, walked in the kernel so that it is right even for a process that is
 * gone by the time user space looks. Components are written leaf first, each NUL-terminated;
 * user space joins them in reverse. Every write moves forward, which the verifier can bound,
 * and the walk runs under bpf_loop so that the verifier checks one step, not every depth.
 */
#ifndef OWO_PATH_BPF_H
#define OWO_PATH_BPF_H

#include "maps.bpf.h"

/* Where the walk writes; the caller copies the result into its record. */
struct owo_path_buf {
	__u8 data[OWO_PATH_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct owo_path_buf);
} owo_path_scratch SEC(".maps");

/*
 * Field offsets are resolved (CO-RE) in the caller and handed to the step, which reads raw:
 * the loader relocates CO-RE accesses in the program itself, not in the callback.
 */
struct owo_path_offsets {
	__u64 mnt_root;       /* struct vfsmount.mnt_root */
	__u64 d_parent;       /* struct dentry.d_parent */
	__u64 d_name_name;    /* struct dentry.d_name.name */
	__u64 mnt_parent;     /* struct mount.mnt_parent */
	__u64 mnt_mountpoint; /* struct mount.mnt_mountpoint */
	__u64 mnt;            /* struct mount.mnt */
};

struct owo_path_walk {
	struct owo_path_offsets off;
	void *dentry;
	void *vfsmnt;
	void *mnt;
	__u32 len;
	bool truncated;
	bool done;
};

static __always_inline void *owo_read_ptr(void *base, __u64 offset)
{
	void *value = 0;

	bpf_probe_read_kernel(&value, sizeof(value), base + offset);
	return value;
}

static long owo_path_step(__u32 index, void *arg)
{
	struct owo_path_walk *w = arg;
	void *mnt_root = owo_read_ptr(w->vfsmnt, w->off.mnt_root);
	void *parent = owo_read_ptr(w->dentry, w->off.d_parent);
	__u32 zero = 0;

	if (w->dentry == mnt_root || w->dentry == parent) {
		void *mnt_parent = owo_read_ptr(w->mnt, w->off.mnt_parent);

		if (w->dentry != mnt_root || w->mnt == mnt_parent) {
			w->done = true; /* the root of everything (or of a detached tree) */
			return 1;
		}
		/* Cross from the root of this mount to where it is mounted. */
		w->dentry = owo_read_ptr(w->mnt, w->off.mnt_mountpoint);
		w->mnt = mnt_parent;
		w->vfsmnt = mnt_parent + w->off.mnt;
		return 0;
	}

	struct owo_path_buf *buf = bpf_map_lookup_elem(&owo_path_scratch, &zero);
	__u32 len = w->len;

	if (!buf)
		return 1;
	if (len > OWO_PATH_MAX - OWO_NAME_MAX) {
		w->truncated = true;
		return 1;
	}
	long n = bpf_probe_read_kernel_str(buf->data + len, OWO_NAME_MAX,
					   owo_read_ptr(w->dentry, w->off.d_name_name));

	if (n <= 0)
		return 1; /* unreadable: not done, so the path is marked truncated */
	w->len = len + n;
	w->dentry = parent;
	return 0;
}

/*
 * Write the components of `path` into `dst` (room for OWO_PATH_MAX bytes). Returns the bytes
 * written; sets *truncated when the path was deeper or longer than the limits.
 */
static __always_inline __u32 owo_path_components(const struct path *path, __u8 *dst, bool *truncated)
{
	struct owo_path_walk w = {};
	__u32 zero = 0;

	w.off.mnt_root = bpf_core_field_offset(struct vfsmount, mnt_root);
	w.off.d_parent = bpf_core_field_offset(struct dentry, d_parent);
	w.off.d_name_name = bpf_core_field_offset(struct dentry, d_name) + bpf_core_field_offset(struct qstr, name);
	w.off.mnt_parent = bpf_core_field_offset(struct mount, mnt_parent);
	w.off.mnt_mountpoint = bpf_core_field_offset(struct mount, mnt_mountpoint);
	w.off.mnt = bpf_core_field_offset(struct mount, mnt);
	w.dentry = BPF_CORE_READ(path, dentry);
	w.vfsmnt = BPF_CORE_READ(path, mnt);
	w.mnt = w.vfsmnt - w.off.mnt;
	bpf_loop(OWO_PATH_DEPTH, owo_path_step, &w, 0);
	*truncated = w.truncated || !w.done;

	struct owo_path_buf *buf = bpf_map_lookup_elem(&owo_path_scratch, &zero);
	__u32 len = w.len;

	if (!buf || len == 0)
		return 0;
	if (len > OWO_PATH_MAX)
		len = OWO_PATH_MAX;
	if (bpf_probe_read_kernel(dst, len, buf->data))
		return 0;
	return len;
}

#endif /* OWO_PATH_BPF_H */
