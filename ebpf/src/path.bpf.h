/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Path of a struct path, walked in the kernel so that it is right even for a process that is
 * gone by the time user space looks. Components are written leaf first, each NUL-terminated;
 * user space joins them in reverse. This keeps every write moving forward, which the verifier
 * can bound.
 */
#ifndef OWO_PATH_BPF_H
#define OWO_PATH_BPF_H

#include "maps.bpf.h"

/*
 * Write the components of `path` into `buf`, at most OWO_PATH_MAX bytes. Returns the bytes
 * written; sets *truncated when the path was deeper or longer than the limits.
 */
static __always_inline __u32 owo_path_components(const struct path *path, __u8 *buf,
						 bool *truncated)
{
	struct dentry *dentry = BPF_CORE_READ(path, dentry);
	struct vfsmount *vfsmnt = BPF_CORE_READ(path, mnt);
	struct mount *mnt = (void *)vfsmnt - bpf_core_field_offset(struct mount, mnt);
	__u32 len = 0;
	int i;

	*truncated = false;
	for (i = 0; i < OWO_PATH_DEPTH; i++) {
		struct dentry *mnt_root = BPF_CORE_READ(vfsmnt, mnt_root);
		struct dentry *parent = BPF_CORE_READ(dentry, d_parent);

		if (dentry == mnt_root || dentry == parent) {
			struct mount *mnt_parent = BPF_CORE_READ(mnt, mnt_parent);

			if (dentry != mnt_root || mnt == mnt_parent)
				return len; /* the root of everything (or of a detached tree) */
			/* Cross from the root of this mount to where it is mounted. */
			dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
			mnt = mnt_parent;
			vfsmnt = (void *)mnt + bpf_core_field_offset(struct mount, mnt);
			continue;
		}
		if (len > OWO_PATH_MAX - OWO_NAME_MAX) {
			*truncated = true;
			return len;
		}
		const unsigned char *name = BPF_CORE_READ(dentry, d_name.name);
		long n = bpf_probe_read_kernel_str(buf + len, OWO_NAME_MAX, name);

		if (n <= 0)
			return len;
		len += n;
		dentry = parent;
	}
	*truncated = true;
	return len;
}

#endif /* OWO_PATH_BPF_H */
