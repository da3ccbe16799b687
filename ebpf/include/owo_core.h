/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The few kernel types OWO reads, hand-written with only the fields used. They carry
 * preserve_access_index, so clang records every field access as a CO-RE relocation and the loader
 * fixes the offsets against the running kernel's BTF: the layout here is never trusted.
 */
#ifndef OWO_CORE_H
#define OWO_CORE_H

#include <stdbool.h>
#include <linux/types.h>

#define OWO_CORE __attribute__((preserve_access_index))

typedef struct {
	int counter;
} OWO_CORE atomic_t;

typedef struct {
	__u32 val;
} OWO_CORE kuid_t;

typedef struct {
	__u32 val;
} OWO_CORE kgid_t;

struct qstr {
	const unsigned char *name;
} OWO_CORE;

struct dentry {
	struct dentry *d_parent;
	struct qstr d_name;
	struct inode *d_inode;
} OWO_CORE;

struct vfsmount {
	struct dentry *mnt_root;
} OWO_CORE;

/* fs/mount.h: wraps the vfsmount that a struct path points at. */
struct mount {
	struct mount *mnt_parent;
	struct dentry *mnt_mountpoint;
	struct vfsmount mnt;
} OWO_CORE;

struct path {
	struct vfsmount *mnt;
	struct dentry *dentry;
} OWO_CORE;

struct super_block {
	__u32 s_dev;
} OWO_CORE;

struct timespec64 {
	__s64 tv_sec;
	long tv_nsec;
} OWO_CORE;

struct inode {
	unsigned short i_mode;
	unsigned long i_ino;
	unsigned int i_nlink;
	__s64 i_size;
	__s64 i_ctime_sec;  /* since Linux 6.11 */
	__u32 i_ctime_nsec;
	struct super_block *i_sb;
} OWO_CORE;

/*
 * The inode's ctime moved twice; these "flavors" (libbpf ignores the ___ suffix when matching
 * BTF) let one program read whichever the running kernel has.
 */
struct inode___ctime_hidden { /* Linux 6.6 to 6.10 */
	struct timespec64 __i_ctime;
} OWO_CORE;

struct inode___ctime_plain { /* before Linux 6.6 */
	struct timespec64 i_ctime;
} OWO_CORE;

struct file {
	struct path f_path;
	struct inode *f_inode;
	void *private_data;
} OWO_CORE;

struct tty_struct {
	char name[64];
} OWO_CORE;

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
} OWO_CORE;

struct files_struct {
	struct fdtable *fdt;
} OWO_CORE;

struct cred {
	kuid_t uid;
	kgid_t gid;
	kuid_t euid;
	kgid_t egid;
} OWO_CORE;

struct in6_addr {
	__u8 u6_addr8[16];
} OWO_CORE;

struct sock_common {
	__u32 skc_daddr;      /* __be32 */
	__u32 skc_rcv_saddr;  /* __be32 */
	__u16 skc_dport;      /* __be16 */
	__u16 skc_num;        /* host order */
	unsigned short skc_family;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
} OWO_CORE;

struct sock {
	struct sock_common __sk_common;
	__u16 sk_protocol;
	__u16 sk_type;
} OWO_CORE;

struct socket {
	short type;
	struct sock *sk;
	struct file *file;
} OWO_CORE;

struct fs_struct {
	struct path pwd;
} OWO_CORE;

struct mm_struct {
	unsigned long arg_start;
	unsigned long arg_end;
	struct file *exe_file;
} OWO_CORE;

struct signal_struct {
	atomic_t live;
	struct tty_struct *tty;
} OWO_CORE;

/* include/linux/sched.h */
#define OWO_PF_KTHREAD 0x00200000

/* arch/x86/include/asm/thread_info.h: `status` has TS_COMPAT while a 32-bit syscall runs. */
#define OWO_TS_COMPAT 0x0002

struct thread_info {
	__u32 status; /* x86 */
} OWO_CORE;

/* arch/x86/include/asm/ptrace.h: a 32-bit syscall's arguments are in bx, cx, dx, si, di, bp. */
struct pt_regs {
	unsigned long bp;
	unsigned long bx;
	unsigned long cx;
	unsigned long dx;
	unsigned long si;
	unsigned long di;
	unsigned long orig_ax;
} OWO_CORE;

struct task_struct {
	struct thread_info thread_info; /* CONFIG_THREAD_INFO_IN_TASK */
	unsigned int flags;
	int pid;
	int tgid;
	int exit_code;
	__u64 start_boottime;
	struct task_struct *real_parent;
	struct task_struct *group_leader;
	struct mm_struct *mm;
	struct fs_struct *fs;
	struct signal_struct *signal;
	const struct cred *cred;
	struct files_struct *files;
	kuid_t loginuid;         /* CONFIG_AUDIT */
	unsigned int sessionid;  /* CONFIG_AUDIT */
} OWO_CORE;

/* kernel/bpf/syscall.c: the objects behind a BPF file descriptor (its private_data). */
struct bpf_map {
	__u32 id;
} OWO_CORE;

struct bpf_prog_aux {
	__u32 id;
} OWO_CORE;

struct bpf_prog {
	struct bpf_prog_aux *aux;
} OWO_CORE;

struct bpf_link {
	__u32 id;
	struct bpf_prog *prog;
} OWO_CORE;

/* Tracepoint contexts, so that their layout is relocated too (PREEMPT_RT adds common fields). */
struct trace_event_raw_sched_process_exec {
	__u32 __data_loc_filename; /* offset in the low 16 bits, length in the high */
} OWO_CORE;

struct trace_event_raw_sched_process_exit {
	bool group_dead; /* since Linux 6.16 */
} OWO_CORE;

#endif /* OWO_CORE_H */
