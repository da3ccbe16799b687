/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Absolute paths, built in the kernel so that they are right even for a process that is gone by
 * the time user space looks, and so that file events can be filtered by path prefix here.
 *
 * A path is built in the per-CPU `owo_path_scratch`, root first ("/usr/bin/ls"): one loop walks
 * from the dentry up to the root, across mounts, remembering each name; a second writes the names
 * out in reverse. The loader applies CO-RE relocations to program bodies only, not to bpf_loop
 * callbacks, so the callers resolve field offsets and hand them over in the loop context.
 *
 * Each loop is a step function run by OWO_LOOP. The object is built twice (see build.rs):
 * - with bpf_loop (Linux 5.17 and later): the verifier checks one step of each loop, so the walk
 *   can go OWO_PATH_WALK components up;
 * - with OWO_BOUNDED_LOOPS, for older kernels: the steps are inlined into a bounded loop, which the
 *   verifier walks through once per iteration, so the walk stops after OWO_WALK_STEPS steps. A
 *   path deeper than that is marked truncated, and it no longer starts at the root.
 * The walk and the scan are global functions: the verifier checks each once, on its own, instead
 * of again for every state a caller reaches it in (which, with bounded loops, exceeds its limit
 * of a million instructions). Their arguments are scalars and their results come back in the
 * scratch buffer, as 5.10 requires of global functions. They use no CO-RE relocation.
 */
#ifndef OWO_PATH_BPF_H
#define OWO_PATH_BPF_H

#include "maps.bpf.h"

#ifdef OWO_BOUNDED_LOOPS
#define OWO_STEP static __always_inline long
#define OWO_LOOP(n, step, ctx)                          \
	do {                                            \
		for (__u32 i_ = 0; i_ < (n); i_++)      \
			if (step(i_, ctx))              \
				break;                  \
	} while (0)
/* Components walked up at most: the kept depth and a few mount crossings. */
#define OWO_WALK_STEPS (OWO_PATH_DEPTH + 16)
#else
#define OWO_STEP static long
#define OWO_LOOP(n, step, ctx) bpf_loop(n, step, ctx, 0)
#define OWO_WALK_STEPS OWO_PATH_WALK
#endif

/* Field offsets, resolved (CO-RE) by the caller. */
struct owo_path_offsets {
	__u64 mnt_root;       /* struct vfsmount.mnt_root */
	__u64 d_parent;       /* struct dentry.d_parent */
	__u64 d_name_name;    /* struct dentry.d_name.name */
	__u64 mnt_parent;     /* struct mount.mnt_parent */
	__u64 mnt_mountpoint; /* struct mount.mnt_mountpoint */
	__u64 mnt;            /* struct mount.mnt */
};

struct owo_path_buf {
	/* Loop state lives here, not in the loop context on the stack: the verifier does not track
	 * map contents, so every iteration looks the same to it and the loops verify at once. */
	__u32 depth;
	__u32 len;
	__u32 truncated;
	__u32 done;
	__u32 unclean;  /* the path has "/." or "//": a prefix test here could be fooled */
	__u32 scan_len;
	struct owo_path_offsets off; /* for the walk, set by its caller */
	__u64 node;                  /* the name filter: the node reached so far ... */
	__u32 verdict;               /* ... and what it found (OWO_NAMES_*) */
	__u32 rejected;              /* the name filter turned the file away: no path was built */
	__u32 verdict_at;            /* the index (root first) of the name that decided */
	__u32 leaf_crossed;          /* the first step up crossed a mount: the file is a mount's root */
	__u32 leaf_at;               /* where the last name written starts (its "/") */
	__u32 _pad;
	__u64 names[OWO_PATH_DEPTH]; /* name pointers, a ring: the last OWO_PATH_DEPTH walked (root side) */
	__u32 _align;                /* puts `path` on 8 bytes, for the scan's word reads */
	__u32 lpm_prefixlen;         /* with the first bytes of `path`, a key of `owo_watch_paths` */
	union {
		__u8 path[2 * OWO_PATH_MAX]; /* the path, NUL-terminated; room for appends past the limit */
		__u64 words[2 * OWO_PATH_MAX / 8];
	};
};

_Static_assert(offsetof(struct owo_path_buf, path) % 8 == 0, "owo_path_buf.path is read by words");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct owo_path_buf);
} owo_path_scratch SEC(".maps");

/* The ring of names is indexed with a mask of 63. */
_Static_assert(OWO_PATH_DEPTH == 64, "owo_path_buf.names is indexed & 63");

static __always_inline struct owo_path_buf *owo_path_buf(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&owo_path_scratch, &zero);
}

/* The name filter (see struct owo_watch_name); owod writes it with the watched prefixes. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, (OWO_WATCH_PATHS + OWO_GUARD_PATHS) * OWO_WATCH_DEPTH);
	__type(key, struct owo_watch_name);
	__type(value, struct owo_watch_node);
} owo_watch_names SEC(".maps");

/* What the name filter found, root first. */
#define OWO_NAMES_OPEN 0    /* the names ran out above every watched prefix's end */
#define OWO_NAMES_WATCHED 1 /* a watched prefix ends at one of the names (or cannot tell) */
#define OWO_NAMES_MISS 2    /* a name is in no watched prefix */

struct owo_path_walk {
	struct owo_path_offsets off; /* a copy of the buffer's, close at hand */
	void *dentry;
	void *vfsmnt;
	void *mnt;
	void *mnt_root; /* of vfsmnt: read once per mount, not once per step */
	__u64 together; /* d_name.name is 16 bytes after d_parent (after d_name.hash_len) */
};

static __always_inline void *owo_read_ptr(void *base, __u64 offset)
{
	void *value = 0;

	bpf_probe_read_kernel(&value, sizeof(value), base + offset);
	return value;
}

/* One step up: remember this dentry's name, or cross to the mount point above. */
OWO_STEP owo_path_collect(__u32 index, void *arg)
{
	struct owo_path_walk *w = arg;
	struct owo_path_buf *buf = owo_path_buf();
	__u64 link[3] = {}; /* d_parent, d_name.hash_len, d_name.name */

	if (!buf)
		return 1;
	/* One read for the parent and the name where they are neighbours, as in every kernel so
	 * far: a read costs more than the rest of the step. */
	if (w->together) {
		bpf_probe_read_kernel(link, sizeof(link), w->dentry + w->off.d_parent);
	} else {
		link[0] = (__u64)owo_read_ptr(w->dentry, w->off.d_parent);
		link[2] = (__u64)owo_read_ptr(w->dentry, w->off.d_name_name);
	}
	void *parent = (void *)link[0];

	if (w->dentry == w->mnt_root || w->dentry == parent) {
		void *mnt_parent = owo_read_ptr(w->mnt, w->off.mnt_parent);

		if (index == 0)
			buf->leaf_crossed = 1;

		if (w->dentry != w->mnt_root) {
			/* Its own parent, yet not a mount's root: a pseudo file (memfd, pipe, ...).
			 * Its name is all the path it has ("/memfd:name"), as d_path shows it. */
			__u64 depth = buf->depth;

			asm volatile("%0 &= 63" : "+r"(depth));
			buf->names[depth] = link[2];
			buf->depth += 1;
			buf->done = 1;
			return 1;
		}
		if (w->mnt == mnt_parent) {
			buf->done = 1; /* the root of everything */
			return 1;
		}
		/* Cross from the root of this mount to where it is mounted. */
		w->dentry = owo_read_ptr(w->mnt, w->off.mnt_mountpoint);
		w->mnt = mnt_parent;
		w->vfsmnt = mnt_parent + w->off.mnt;
		w->mnt_root = owo_read_ptr(w->vfsmnt, w->off.mnt_root);
		return 0;
	}

	__u64 depth = buf->depth;

	/* A ring: past OWO_PATH_DEPTH the leaf side is overwritten, so what is kept is the root
	 * side, and a truncated path still starts where it really starts. */
	asm volatile("%0 &= 63" : "+r"(depth));
	buf->names[depth] = link[2];
	buf->depth += 1;
	w->dentry = parent;
	return 0;
}

/* One name out, root first: "/" then the name. */
OWO_STEP owo_path_emit(__u32 index, void *arg)
{
	struct owo_path_buf *buf = owo_path_buf();

	if (!buf || index >= buf->depth || index >= OWO_PATH_DEPTH)
		return 1;
	__u64 idx = buf->depth - 1 - index;
	__u64 len = buf->len;

	/* Masked in asm: clang drops a C mask it can prove redundant, and the verifier cannot. */
	asm volatile("%0 &= 63" : "+r"(idx));
	if (len > OWO_PATH_MAX - OWO_NAME_MAX - 1) {
		buf->truncated = 1;
		return 1;
	}
	buf->leaf_at = len;
	buf->path[len] = '/';
	long n = bpf_probe_read_kernel_str(&buf->path[len + 1], OWO_NAME_MAX, (void *)buf->names[idx]);

	if (n <= 0) {
		buf->truncated = 1; /* unreadable name: never shown as if complete */
		return 1;
	}
	buf->len = len + n; /* the NUL is overwritten by the next "/" */
	return 0;
}

/* One name of the walked path through the name filter, root first. */
OWO_STEP owo_path_check(__u32 index, void *arg)
{
	struct owo_path_buf *buf = owo_path_buf();
	struct owo_watch_name key = {};
	struct owo_watch_node *node;

	if (!buf || index >= buf->depth || index >= OWO_PATH_DEPTH)
		return 1;
	__u64 idx = buf->depth - 1 - index;

	asm volatile("%0 &= 63" : "+r"(idx));
	key.parent = buf->node;
	if (bpf_probe_read_kernel_str(key.name, sizeof(key.name), (void *)buf->names[idx]) <= 0) {
		buf->verdict = OWO_NAMES_WATCHED; /* unreadable: let the path decide */
		return 1;
	}
	node = bpf_map_lookup_elem(&owo_watch_names, &key);
	if (!node) {
		buf->verdict = OWO_NAMES_MISS;
		buf->verdict_at = index;
		return 1;
	}
	if (node->watched) {
		buf->verdict = OWO_NAMES_WATCHED;
		return 1;
	}
	buf->node = node->node;
	return 0;
}

/*
 * The walk and the writing out, from `dentry` on mount `vfsmnt`, with the offsets in the buffer.
 * Sets the buffer's `len` (0: nothing written) and `truncated`. With `filter`, the names walked
 * go through the name filter first, and a file it turns away is not written out: `rejected`.
 * Returns 0.
 */
__attribute__((noinline)) int owo_path_walk(__u64 dentry, __u64 vfsmnt, __u64 filter)
{
	struct owo_path_buf *buf = owo_path_buf();
	struct owo_path_walk w = {};

	if (!buf)
		return 0;
	buf->depth = 0;
	buf->len = 0;
	buf->truncated = 0;
	buf->done = 0;
	buf->rejected = 0;
	buf->leaf_crossed = 0;
	buf->leaf_at = 0;
	__builtin_memcpy(&w.off, &buf->off, sizeof(w.off));
	w.dentry = (void *)dentry;
	w.vfsmnt = (void *)vfsmnt;
	w.mnt = (void *)vfsmnt - w.off.mnt;
	w.mnt_root = owo_read_ptr(w.vfsmnt, w.off.mnt_root);
	w.together = w.off.d_name_name == w.off.d_parent + 16;
	OWO_LOOP(OWO_WALK_STEPS, owo_path_collect, &w);
	/* A walk that did not reach the root cannot be judged by its names. */
	if (filter && buf->done) {
		buf->node = 0;
		buf->verdict = OWO_NAMES_OPEN;
		OWO_LOOP(OWO_WATCH_DEPTH, owo_path_check, 0);
		/* Names that ran out at OWO_WATCH_DEPTH went as deep as the filter looks. */
		if (buf->verdict == OWO_NAMES_MISS ||
		    (buf->verdict == OWO_NAMES_OPEN && buf->depth < OWO_WATCH_DEPTH)) {
			buf->rejected = 1;
			return 0;
		}
	}
	OWO_LOOP(OWO_PATH_DEPTH, owo_path_emit, &w);
	/* Deeper than kept: the leaf side is missing. */
	if (!buf->done || buf->depth > OWO_PATH_DEPTH)
		buf->truncated = 1;
	return 0;
}

/*
 * After a walk that the name filter turned away: was it for a name above the file's own, in
 * the directory that holds it on the same mount? Then every file of that directory would be.
 */
static __always_inline bool owo_path_parent_missed(void)
{
	struct owo_path_buf *buf = owo_path_buf();

	return buf && buf->rejected && buf->verdict == OWO_NAMES_MISS && !buf->leaf_crossed &&
	       buf->depth <= OWO_PATH_DEPTH && buf->verdict_at + 1 < buf->depth;
}

/*
 * Build the absolute path of `path` (a copy on the stack) in the scratch buffer. Returns its
 * length (the path is NUL-terminated there); sets *truncated when it was deeper or longer than
 * the limits. With `filter`, returns 0 (and builds nothing) for a file the name filter turns
 * away.
 */
static __always_inline __u32 owo_path_resolve(const struct path *path, bool filter, bool *truncated)
{
	struct owo_path_buf *buf = owo_path_buf();
	__u32 len;

	*truncated = false;
	if (!buf)
		return 0;
	buf->off.mnt_root = bpf_core_field_offset(struct vfsmount, mnt_root);
	buf->off.d_parent = bpf_core_field_offset(struct dentry, d_parent);
	buf->off.d_name_name = bpf_core_field_offset(struct dentry, d_name) + bpf_core_field_offset(struct qstr, name);
	buf->off.mnt_parent = bpf_core_field_offset(struct mount, mnt_parent);
	buf->off.mnt_mountpoint = bpf_core_field_offset(struct mount, mnt_mountpoint);
	buf->off.mnt = bpf_core_field_offset(struct mount, mnt);
	/* `path` is a copy on the stack: its fields are plain loads, not kernel reads. */
	owo_path_walk((__u64)path->dentry, (__u64)path->mnt, filter);
	if (buf->rejected)
		return 0;
	*truncated = buf->truncated;
	len = buf->len;
	if (len == 0) {
		buf->path[0] = '/';
		buf->path[1] = 0;
		return 1;
	}
	return len > OWO_PATH_MAX ? OWO_PATH_MAX : len;
}

/*
 * Make `user` (a path from user memory, as given to a syscall) absolute against the directory
 * whose path is in the scratch buffer (`base_len` bytes). An absolute `user` replaces the base.
 * Returns the new length; sets *truncated if it did not fit in OWO_PATH_MAX.
 */
static __always_inline __u32 owo_path_append_user(__u32 base_len, const char *user, bool *truncated)
{
	struct owo_path_buf *buf = owo_path_buf();
	char first = 0;
	__u32 off = base_len;
	long n;

	if (!buf)
		return 0;
	bpf_probe_read_user(&first, 1, user);
	if (first == '/')
		off = 0;
	else if (off > 1)
		buf->path[off++ & (OWO_PATH_MAX - 1)] = '/';
	if (off > OWO_PATH_MAX)
		off = OWO_PATH_MAX;
	n = bpf_probe_read_user_str(&buf->path[off], OWO_PATH_MAX, user);
	if (n <= 0) {
		buf->path[off] = 0;
		return off;
	}
	off += n - 1;
	if (off >= OWO_PATH_MAX - 1) {
		*truncated = true;
		off = OWO_PATH_MAX - 1;
	}
	return off;
}

/*
 * The high bit of each byte of `x` that is zero, and of no other: the 0x7f additions cannot carry
 * from one byte into the next.
 */
static __always_inline __u64 owo_zero_bytes(__u64 x)
{
	const __u64 low7 = 0x7f7f7f7f7f7f7f7full;

	return ~(((x & low7) + low7) | x | low7);
}

#define OWO_BYTES(c) (0x0101010101010101ull * (__u8)(c))

/*
 * Eight bytes of the scan for "/." and "//": the bytes of word `index` that are "/", against the
 * bytes one further on that are "." or "/". Branch-free, so that a loop of them costs the
 * verifier no pending states.
 */
OWO_STEP owo_path_scan(__u32 index, void *arg)
{
	struct owo_path_buf *buf = owo_path_buf();
	__u64 at = (__u64)index * 8, word, next, after, hits;

	if (!buf || at + 1 >= buf->scan_len)
		return 1;
	__u64 w = index;

	asm volatile("%0 &= 511" : "+r"(w));
	word = buf->words[w];
	next = buf->words[w + 1];
	after = (word >> 8) | (next << 56); /* byte i: path[at + i + 1] */
	hits = owo_zero_bytes(word ^ OWO_BYTES('/')) &
	       (owo_zero_bytes(after ^ OWO_BYTES('.')) | owo_zero_bytes(after ^ OWO_BYTES('/')));
	/* Only pairs inside the path: byte i counts while at + i + 1 < scan_len. */
	if (buf->scan_len - at - 1 < 8)
		hits &= (1ull << ((buf->scan_len - at - 1) * 8)) - 1;
	if (hits) {
		buf->unclean = 1;
		return 1;
	}
	return 0;
}

/*
 * Does the scratch path (`len` bytes) hold "/." or "//"? Such a name given to a syscall
 * ("/var/../etc/x", "//etc/x") would fool a prefix test, so it is sent for user space to clean
 * and filter. (Paths the kernel built from dentries never have them.)
 */
__attribute__((noinline)) int owo_path_unclean(__u32 len)
{
	struct owo_path_buf *buf = owo_path_buf();

	if (!buf)
		return 0;
	buf->unclean = 0;
	buf->scan_len = len;
	OWO_LOOP(OWO_PATH_MAX / 8, owo_path_scan, 0);
	return buf->unclean;
}

/* Copy the scratch path (`len` bytes) to `dst`, which has room for OWO_PATH_MAX. */
static __always_inline __u32 owo_path_copy(__u8 *dst, __u64 len)
{
	struct owo_path_buf *buf = owo_path_buf();

	if (!buf)
		return 0;
	/* The empty asm hides what clang knows of `len`, so the bound below stays in the code
	 * for the verifier, which knows less. */
	asm volatile("" : "+r"(len));
	if (len > OWO_PATH_MAX)
		len = OWO_PATH_MAX;
	if (bpf_probe_read_kernel(dst, len, buf->path))
		return 0;
	return len;
}

#endif /* OWO_PATH_BPF_H */
