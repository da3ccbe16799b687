/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * 32-bit compat syscalls (x86): `int 0x80` from any program, and every call of an ia32 program.
 * No syscalls:* tracepoint fires for them, so two programs on raw_syscalls' sys_enter and
 * sys_exit see every syscall and keep those made while TS_COMPAT is set. At entry the call's
 * number (the ia32 table's, from the uapi header) is mapped to the native call the monitors know,
 * and its arguments, read from the registers, are stashed as a native call's are. At exit the
 * dispatcher jumps (a tail call) to the program that reports that kind of call: one per handler,
 * so that each is verified on its own, as its native exit program is. Records carry
 * OWO_HDR_IA32.
 *
 * The 16-bit set*id calls are reported as their 32-bit names, with (u16)-1 widened to -1, as
 * the kernel widens it. socketcall(2), which older ia32 programs use for every socket call, is
 * unpacked into the call it makes.
 */
#ifndef OWO_IA32_BPF_H
#define OWO_IA32_BPF_H

#if defined(__TARGET_ARCH_x86)

#include <asm/unistd_32.h>
#include <linux/net.h>

#include "file.bpf.h"
#include "net.bpf.h"
#include "privilege.bpf.h"
#include "module.bpf.h"
#include "write.bpf.h"
#include "tamper.bpf.h"

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, OWO_IA32_CALLS);
	__type(key, __u32);
	__type(value, __u32);
} owo_ia32_calls SEC(".maps");

/* The native call (enum owo_syscall) of an ia32 call, or 0; with the monitor that reports it. */
static __always_inline __u32 owo_ia32_native(long nr, __u32 *monitor)
{
	*monitor = OWO_MON_FILE;
	switch (nr) {
	case __NR_open: return OWO_SYS_OPEN;
	case __NR_openat: return OWO_SYS_OPENAT;
	case __NR_openat2: return OWO_SYS_OPENAT2;
	case __NR_creat: return OWO_SYS_CREAT;
	case __NR_unlink: return OWO_SYS_UNLINK;
	case __NR_unlinkat: return OWO_SYS_UNLINKAT;
	case __NR_rmdir: return OWO_SYS_RMDIR;
	case __NR_rename: return OWO_SYS_RENAME;
	case __NR_renameat: return OWO_SYS_RENAMEAT;
	case __NR_renameat2: return OWO_SYS_RENAMEAT2;
	}
	*monitor = OWO_MON_NETWORK;
	switch (nr) {
	case __NR_connect: return OWO_SYS_CONNECT;
	case __NR_accept4: return OWO_SYS_ACCEPT4;
	case __NR_sendto: return OWO_SYS_SENDTO;
	case __NR_sendmsg: return OWO_SYS_SENDMSG;
	case __NR_sendmmsg: return OWO_SYS_SENDMMSG;
	}
	*monitor = OWO_MON_PRIVILEGE;
	switch (nr) {
	case __NR_setuid:
	case __NR_setuid32: return OWO_SYS_SETUID;
	case __NR_setgid:
	case __NR_setgid32: return OWO_SYS_SETGID;
	case __NR_setreuid:
	case __NR_setreuid32: return OWO_SYS_SETREUID;
	case __NR_setregid:
	case __NR_setregid32: return OWO_SYS_SETREGID;
	case __NR_setresuid:
	case __NR_setresuid32: return OWO_SYS_SETRESUID;
	case __NR_setresgid:
	case __NR_setresgid32: return OWO_SYS_SETRESGID;
	}
	*monitor = OWO_MON_MODULE;
	switch (nr) {
	case __NR_init_module: return OWO_SYS_INIT_MODULE;
	case __NR_finit_module: return OWO_SYS_FINIT_MODULE;
	}
	/* Only marked: the exec record (sched_process_exec) takes the mark. */
	*monitor = OWO_MON_EXECVE;
	switch (nr) {
	case __NR_execve: return OWO_SYS_EXECVE;
	case __NR_execveat: return OWO_SYS_EXECVEAT;
	}
	return 0;
}

/*
 * The native call of a socketcall(2) `call`, or 0, and how many arguments it has (the kernel
 * reads as many from the caller's array).
 */
static __always_inline __u32 owo_socketcall(__u64 call, __u32 *nargs)
{
	*nargs = 3;
	switch (call) {
	case SYS_CONNECT: return OWO_SYS_CONNECT;
	case SYS_ACCEPT: return OWO_SYS_ACCEPT;
	case SYS_SENDMSG: return OWO_SYS_SENDMSG;
	}
	*nargs = 4;
	switch (call) {
	case SYS_ACCEPT4: return OWO_SYS_ACCEPT4;
	case SYS_SEND: return OWO_SYS_SENDTO; /* send(fd, buf, len, flags): sendto, no address */
	case SYS_SENDMMSG: return OWO_SYS_SENDMMSG;
	}
	*nargs = 6;
	return call == SYS_SENDTO ? OWO_SYS_SENDTO : 0;
}

/* The 16-bit set*id calls (old_uid_t): (u16)-1, "unchanged", is -1 as a 32-bit id. */
static __always_inline bool owo_ia32_ids16(long nr)
{
	return nr == __NR_setuid || nr == __NR_setgid || nr == __NR_setreuid || nr == __NR_setregid ||
	       nr == __NR_setresuid || nr == __NR_setresgid;
}

static __always_inline bool owo_ia32_moves_mounts(long nr)
{
	return nr == __NR_mount || nr == __NR_umount || nr == __NR_umount2 || nr == __NR_move_mount ||
	       nr == __NR_pivot_root;
}

SEC("raw_tracepoint/sys_enter")
int owo_ia32_enter(struct bpf_raw_tracepoint_args *ctx)
{
	long nr = ctx->args[1];
	__u32 monitor, syscall = owo_ia32_native(nr, &monitor);
	bool socketcall = nr == __NR_socketcall;

	/* owod's guard: these reach owod whatever the ABI. */
	bool guard = nr == __NR_bpf || nr == __NR_ptrace || nr == __NR_process_vm_readv ||
		     nr == __NR_process_vm_writev;

	/* Most syscalls are none of these: they cost a switch, not a read. */
	if (!syscall && !socketcall && !guard && nr != __NR_write && nr != __NR_close)
		return 0;
	if (!owo_in_ia32())
		return 0;
	struct pt_regs *regs = (void *)ctx->args[0];
	__u64 args[6];

	args[0] = (__u32)BPF_CORE_READ(regs, bx);
	args[1] = (__u32)BPF_CORE_READ(regs, cx);
	args[2] = (__u32)BPF_CORE_READ(regs, dx);
	args[3] = (__u32)BPF_CORE_READ(regs, si);
	args[4] = (__u32)BPF_CORE_READ(regs, di);
	args[5] = (__u32)BPF_CORE_READ(regs, bp);
	switch (nr) {
	case __NR_bpf:
		return owo_tamper_bpf_call(args[0], (void *)args[1], false);
	case __NR_ptrace:
		return owo_tamper_ptrace_call(args[0], args[1], OWO_HDR_IA32);
	case __NR_process_vm_readv:
		return owo_tamper_vm_call(OWO_TAMPER_VM_READ, args[0], OWO_HDR_IA32);
	case __NR_process_vm_writev:
		return owo_tamper_vm_call(OWO_TAMPER_VM_WRITE, args[0], OWO_HDR_IA32);
	}
	if (nr == __NR_close)
		return owo_write_closed(args[0]);
	if (nr == __NR_write) {
		bpf_tail_call(ctx, &owo_ia32_calls, OWO_IA32_WRITE);
		return 0;
	}
	if (socketcall) {
		__u32 packed[6] = {}, nargs; /* the call's arguments, in the caller's memory */

		syscall = owo_socketcall(args[0], &nargs);
		if (!syscall)
			return 0;
		bpf_probe_read_user(packed, owo_bound(nargs, 6) * sizeof(__u32), (void *)args[1]);
		for (int i = 0; i < 6; i++)
			args[i] = packed[i];
		monitor = OWO_MON_NETWORK;
	}
	if (owo_ia32_ids16(nr)) {
		for (int i = 0; i < 3; i++)
			args[i] = (__u16)args[i] == 0xffff ? 0xffffffff : (__u16)args[i];
	}
	return owo_stash_args(args, syscall, monitor, OWO_HDR_IA32);
}

/* The program that reports each call. */
static __always_inline __u32 owo_ia32_handler(__u32 syscall)
{
	switch (syscall) {
	case OWO_SYS_OPEN:
	case OWO_SYS_OPENAT:
	case OWO_SYS_OPENAT2:
	case OWO_SYS_CREAT: return OWO_IA32_OPEN;
	case OWO_SYS_UNLINK:
	case OWO_SYS_UNLINKAT:
	case OWO_SYS_RMDIR: return OWO_IA32_UNLINK;
	case OWO_SYS_RENAME:
	case OWO_SYS_RENAMEAT:
	case OWO_SYS_RENAMEAT2: return OWO_IA32_RENAME;
	case OWO_SYS_CONNECT: return OWO_IA32_CONNECT;
	case OWO_SYS_ACCEPT:
	case OWO_SYS_ACCEPT4: return OWO_IA32_ACCEPT;
	case OWO_SYS_SENDTO:
	case OWO_SYS_SENDMSG:
	case OWO_SYS_SENDMMSG: return OWO_IA32_SEND;
	case OWO_SYS_INIT_MODULE:
	case OWO_SYS_FINIT_MODULE: return OWO_IA32_MODULE;
	case OWO_SYS_SETUID:
	case OWO_SYS_SETGID:
	case OWO_SYS_SETREUID:
	case OWO_SYS_SETREGID:
	case OWO_SYS_SETRESUID:
	case OWO_SYS_SETRESGID: return OWO_IA32_PRIVILEGE;
	}
	return OWO_IA32_CALLS; /* none: a failed execve's mark */
}

SEC("raw_tracepoint/sys_exit")
int owo_ia32_exit(struct bpf_raw_tracepoint_args *ctx)
{
	if (!owo_in_ia32())
		return 0;
	struct pt_regs *regs = (void *)ctx->args[0];

	if (owo_ia32_moves_mounts(BPF_CORE_READ(regs, orig_ax)) && owo_config_get(OWO_MON_FILE))
		owo_path_moved();
	struct owo_pending *p = owo_pending_slot(false);

	if (!p || !p->armed || !(p->via & OWO_HDR_IA32))
		return 0;
	bpf_tail_call(ctx, &owo_ia32_calls, owo_ia32_handler(p->syscall));
	p->armed = 0; /* no program for it (a failed execve): forget the call */
	return 0;
}

#define OWO_IA32_EXIT(name, handler)                                          \
	SEC("raw_tracepoint/sys_exit")                                        \
	int owo_ia32_##name(struct bpf_raw_tracepoint_args *ctx)              \
	{                                                                     \
		struct owo_pending p;                                         \
		if (!owo_unstash_any(&p))                                     \
			return 0;                                             \
		return handler(&p, ctx->args[1]);                             \
	}

OWO_IA32_EXIT(open, owo_file_open)
OWO_IA32_EXIT(unlink, owo_file_unlink)
OWO_IA32_EXIT(rename, owo_file_rename)
OWO_IA32_EXIT(connect, owo_net_connect)
OWO_IA32_EXIT(accept, owo_net_accept)
OWO_IA32_EXIT(send, owo_net_send_dgram)
OWO_IA32_EXIT(privilege, owo_priv_exit)
OWO_IA32_EXIT(module, owo_module_exit)

/* Jumped to from owo_ia32_enter: a write is reported at entry. */
SEC("raw_tracepoint/sys_enter")
int owo_ia32_write(struct bpf_raw_tracepoint_args *ctx)
{
	struct pt_regs *regs = (void *)ctx->args[0];

	return owo_write_seen((__u32)BPF_CORE_READ(regs, bx), (__u32)BPF_CORE_READ(regs, dx), OWO_HDR_IA32);
}

#endif /* __TARGET_ARCH_x86 */

#endif /* OWO_IA32_BPF_H */
