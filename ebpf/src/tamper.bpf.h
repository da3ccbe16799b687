/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * owod's guard: another process reaching owod's own BPF objects through bpf(2), signalling it,
 * attaching to it with ptrace(2), or reading or writing its memory with process_vm_readv(2) or
 * process_vm_writev(2). Each is reported as it is asked for, whether or not it succeeds; owod
 * turns them into `tamper` records. Always attached: no switch turns it off.
 */
#ifndef OWO_TAMPER_BPF_H
#define OWO_TAMPER_BPF_H

#include "syscall.bpf.h"

#define OWO_PTRACE_ATTACH 16
#define OWO_PTRACE_SEIZE 0x4206
/* si_code of a signal a process sent (include/uapi/asm-generic/siginfo.h) */
#define OWO_SI_USER 0
#define OWO_SI_QUEUE -1
#define OWO_SI_TKILL -6

/* owod's programs, maps and links, written by owod once they are loaded. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct owo_self_object);
	__type(value, __u32);
} owo_self_objects SEC(".maps");

/* An object a bpf(2) command names; for a link, its program too. */
struct owo_bpf_object {
	__u32 kind;
	__u32 id;
	__u32 prog;
};

/*
 * One record a second per process, action and object (`bpftool map dump` reads owod's map once
 * per entry): the rest are folded into the count of that process's next record of it.
 */
#define OWO_TAMPER_EVERY_NS 1000000000ull

struct owo_tamper_key {
	__u32 tgid;
	__u32 action;
	__u32 detail;
	__u32 kind;
	__u32 id;
};

struct owo_tamper_sent {
	__u64 at_ns;
	__u32 folded;
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct owo_tamper_key);
	__type(value, struct owo_tamper_sent);
} owo_tamper_sent SEC(".maps");

/* `via`: the OWO_HDR_* bits of how the call was made. */
static __always_inline void owo_tamper_send(__u32 action, __u32 detail, const struct owo_bpf_object *object,
					    __u32 via)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct owo_tamper_key key = {
		.tgid = bpf_get_current_pid_tgid() >> 32,
		.action = action,
		.detail = detail,
		.kind = object ? object->kind : 0,
		.id = object ? object->id : 0,
	};
	struct owo_tamper_sent *sent = bpf_map_lookup_elem(&owo_tamper_sent, &key);
	struct owo_tamper_sent now = {.at_ns = bpf_ktime_get_ns()};
	struct owo_tamper ev = {};

	if (sent && now.at_ns - sent->at_ns < OWO_TAMPER_EVERY_NS) {
		__sync_fetch_and_add(&sent->folded, 1);
		return;
	}
	ev.folded = sent ? sent->folded : 0;
	bpf_map_update_elem(&owo_tamper_sent, &key, &now, BPF_ANY);
	ev.action = action;
	ev.detail = detail;
	if (object) {
		ev.object_kind = object->kind;
		ev.object_id = object->id;
	}
	owo_activity_header(&ev.hdr, OWO_KIND_TAMPER, sizeof(ev), task, OWO_MON_TAMPER, via);
	owo_activity_output(&ev, sizeof(ev), OWO_MON_TAMPER);
}

/* An anonymous inode's name, as 8 bytes (little-endian) and the byte after them. */
#define OWO_NAME8(a, b, c, d, e, f, g, h)                                                      \
	((__u64)(a) | (__u64)(b) << 8 | (__u64)(c) << 16 | (__u64)(d) << 24 | (__u64)(e) << 32 | \
	 (__u64)(f) << 40 | (__u64)(g) << 48 | (__u64)(h) << 56)

struct owo_name9 {
	__u64 head;
	__u8 tail;
};

/* The BPF object behind `fd` of the current task (its anonymous inode's name says which kind:
 * "bpf-map", "bpf-prog", or "bpf_link", which some kernels call "bpf-link"). */
static __always_inline bool owo_bpf_object_of_fd(__s64 fd, struct owo_bpf_object *object)
{
	struct file *file = owo_fd_file((void *)bpf_get_current_task(), fd);
	struct owo_name9 name = {};
	void *private;

	if (!file)
		return false;
	bpf_probe_read_kernel(&name, 9, BPF_CORE_READ(file, f_path.dentry, d_name.name));
	private = BPF_CORE_READ(file, private_data);
	if (name.head == OWO_NAME8('b', 'p', 'f', '-', 'm', 'a', 'p', 0)) {
		object->kind = OWO_OBJECT_MAP;
		object->id = BPF_CORE_READ((struct bpf_map *)private, id);
	} else if (name.head == OWO_NAME8('b', 'p', 'f', '-', 'p', 'r', 'o', 'g') && !name.tail) {
		object->kind = OWO_OBJECT_PROG;
		object->id = BPF_CORE_READ((struct bpf_prog *)private, aux, id);
	} else if ((name.head == OWO_NAME8('b', 'p', 'f', '_', 'l', 'i', 'n', 'k') ||
		    name.head == OWO_NAME8('b', 'p', 'f', '-', 'l', 'i', 'n', 'k')) &&
		   !name.tail) {
		/* A link is owod's if its program is. */
		object->kind = OWO_OBJECT_LINK;
		object->id = BPF_CORE_READ((struct bpf_link *)private, id);
		object->prog = BPF_CORE_READ((struct bpf_link *)private, prog, aux, id);
	} else {
		return false;
	}
	return true;
}

/* bpf(2) `cmd` reached `object`: tampering if it is owod's. */
static __always_inline int owo_tamper_object(__u32 cmd, const struct owo_bpf_object *object, __u32 via)
{
	/* A link is known by its program (a link by id, with no descriptor yet, not at all). */
	struct owo_self_object key = {
		.kind = object->kind == OWO_OBJECT_LINK ? OWO_OBJECT_PROG : object->kind,
		.id = object->kind == OWO_OBJECT_LINK ? object->prog : object->id,
	};

	if (bpf_map_lookup_elem(&owo_self_objects, &key))
		owo_tamper_send(OWO_TAMPER_BPF, cmd, object, via);
	return 0;
}

/* bpf(cmd, attr): `native` if the call is a native one (a 32-bit BPF_OBJ_GET is not followed
 * to its exit). */
static __always_inline int owo_tamper_bpf_call(__u32 cmd, void *attr, bool native)
{
	struct owo_bpf_object object = {};
	__u32 first = 0, batch_fd = 0;

	if (owo_is_self())
		return 0;
	/* Most commands on one object name it first in `attr`, by id or by descriptor. */
	bpf_probe_read_user(&first, sizeof(first), attr);
	switch (cmd) {
	case BPF_OBJ_GET: {
		/* By pinned path: the object is known when the call returns its descriptor. */
		__u64 args[6] = {cmd};

		return native ? owo_stash_args(args, OWO_SYS_BPF, OWO_MON_TAMPER, 0) : 0;
	}
	case BPF_PROG_GET_FD_BY_ID:
		object.kind = OWO_OBJECT_PROG, object.id = first;
		break;
	case BPF_MAP_GET_FD_BY_ID:
		object.kind = OWO_OBJECT_MAP, object.id = first;
		break;
	case BPF_MAP_LOOKUP_BATCH:
	case BPF_MAP_LOOKUP_AND_DELETE_BATCH:
	case BPF_MAP_UPDATE_BATCH:
	case BPF_MAP_DELETE_BATCH:
		/* attr->batch.map_fd, after four pointers and the count */
		bpf_probe_read_user(&batch_fd, sizeof(batch_fd), attr + 36);
		if (!owo_bpf_object_of_fd(batch_fd, &object))
			return 0;
		break;
	case BPF_OBJ_PIN:
		/* attr->bpf_fd, after the path */
		bpf_probe_read_user(&first, sizeof(first), attr + 8);
		if (!owo_bpf_object_of_fd(first, &object))
			return 0;
		break;
	case BPF_MAP_LOOKUP_ELEM:
	case BPF_MAP_UPDATE_ELEM:
	case BPF_MAP_DELETE_ELEM:
	case BPF_MAP_GET_NEXT_KEY:
	case BPF_MAP_LOOKUP_AND_DELETE_ELEM:
	case BPF_MAP_FREEZE:
	case BPF_OBJ_GET_INFO_BY_FD:
	case BPF_PROG_TEST_RUN:
	case BPF_LINK_UPDATE:
	case BPF_LINK_DETACH:
		if (!owo_bpf_object_of_fd(first, &object))
			return 0;
		break;
	default:
		return 0;
	}
	return owo_tamper_object(cmd, &object, native ? 0 : OWO_HDR_IA32);
}

SEC("tracepoint/syscalls/sys_enter_bpf")
int owo_tamper_bpf(struct owo_sys_enter *ctx)
{
	return owo_tamper_bpf_call(ctx->args[0], (void *)ctx->args[1], true);
}

SEC("tracepoint/syscalls/sys_exit_bpf")
int owo_tamper_bpf_exit(struct owo_sys_exit *ctx)
{
	struct owo_bpf_object object = {};
	struct owo_pending p;

	if (!owo_unstash(OWO_SYS_BPF, &p) || ctx->ret < 0 || !owo_bpf_object_of_fd(ctx->ret, &object))
		return 0;
	return owo_tamper_object(p.args[0], &object, 0);
}

/* raw: the task the signal goes to (any of owod's threads), and its siginfo. */
SEC("raw_tracepoint/signal_generate")
int owo_tamper_signal(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *target = (void *)ctx->args[2];
	__u64 info = ctx->args[1];
	int code = OWO_SI_USER;

	if (BPF_CORE_READ(target, tgid) != owo_config_get(OWO_CFG_SELF_TGID) || owo_is_self())
		return 0;
	/* SEND_SIG_NOINFO (0) is a process's kill; SEND_SIG_PRIV (1) and the kernel's own codes
	 * (a child's exit, a fault, a timer) are not another process's doing. */
	if (info == 1)
		return 0;
	if (info)
		bpf_probe_read_kernel(&code, sizeof(code), (void *)info + 8); /* si_code */
	if (code != OWO_SI_USER && code != OWO_SI_QUEUE && code != OWO_SI_TKILL)
		return 0;
	owo_tamper_send(OWO_TAMPER_SIGNAL, ctx->args[0], 0, 0);
	return 0;
}

/* ptrace(request, pid, ...) */
static __always_inline int owo_tamper_ptrace_call(__u64 request, __u32 pid, __u32 via)
{
	if ((request == OWO_PTRACE_ATTACH || request == OWO_PTRACE_SEIZE) &&
	    pid == owo_config_get(OWO_CFG_SELF_TGID))
		owo_tamper_send(OWO_TAMPER_PTRACE, request, 0, via);
	return 0;
}

/* process_vm_readv/writev(pid, ...): `action` says which. */
static __always_inline int owo_tamper_vm_call(__u32 action, __u32 pid, __u32 via)
{
	if (pid == owo_config_get(OWO_CFG_SELF_TGID) && !owo_is_self())
		owo_tamper_send(action, 0, 0, via);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_ptrace")
int owo_tamper_ptrace(struct owo_sys_enter *ctx)
{
	return owo_tamper_ptrace_call(ctx->args[0], ctx->args[1], 0);
}

SEC("tracepoint/syscalls/sys_enter_process_vm_readv")
int owo_tamper_vm_read(struct owo_sys_enter *ctx)
{
	return owo_tamper_vm_call(OWO_TAMPER_VM_READ, ctx->args[0], 0);
}

SEC("tracepoint/syscalls/sys_enter_process_vm_writev")
int owo_tamper_vm_write(struct owo_sys_enter *ctx)
{
	return owo_tamper_vm_call(OWO_TAMPER_VM_WRITE, ctx->args[0], 0);
}

#endif /* OWO_TAMPER_BPF_H */
