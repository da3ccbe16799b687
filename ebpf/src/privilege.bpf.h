/* SPDX-License-Identifier: GPL-2.0-only */
/* The privilege monitor: set*id, with the credentials before (at entry) and after (at exit). */
#ifndef OWO_PRIVILEGE_BPF_H
#define OWO_PRIVILEGE_BPF_H

#include "syscall.bpf.h"

static __always_inline int owo_priv_exit(struct owo_pending *p, __s64 ret)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct owo_priv ev = {};

	ev.ret = ret;
	ev.syscall = p->syscall;
	ev.uid = p->uid, ev.gid = p->gid, ev.euid = p->euid, ev.egid = p->egid;
	ev.new_uid = BPF_CORE_READ(task, cred, uid.val);
	ev.new_gid = BPF_CORE_READ(task, cred, gid.val);
	ev.new_euid = BPF_CORE_READ(task, cred, euid.val);
	ev.new_egid = BPF_CORE_READ(task, cred, egid.val);
	ev.arg0 = p->args[0], ev.arg1 = p->args[1], ev.arg2 = p->args[2];
	owo_activity_header(&ev.hdr, OWO_KIND_PRIV, sizeof(ev), task, OWO_MON_PRIVILEGE, p->via);
	owo_activity_output(&ev, sizeof(ev), OWO_MON_PRIVILEGE);
	return 0;
}

OWO_ENTER(setuid, OWO_SYS_SETUID, OWO_MON_PRIVILEGE, 1)
OWO_EXIT(setuid, OWO_SYS_SETUID, owo_priv_exit)
OWO_ENTER(setgid, OWO_SYS_SETGID, OWO_MON_PRIVILEGE, 1)
OWO_EXIT(setgid, OWO_SYS_SETGID, owo_priv_exit)
OWO_ENTER(setreuid, OWO_SYS_SETREUID, OWO_MON_PRIVILEGE, 2)
OWO_EXIT(setreuid, OWO_SYS_SETREUID, owo_priv_exit)
OWO_ENTER(setregid, OWO_SYS_SETREGID, OWO_MON_PRIVILEGE, 2)
OWO_EXIT(setregid, OWO_SYS_SETREGID, owo_priv_exit)
OWO_ENTER(setresuid, OWO_SYS_SETRESUID, OWO_MON_PRIVILEGE, 3)
OWO_EXIT(setresuid, OWO_SYS_SETRESUID, owo_priv_exit)
OWO_ENTER(setresgid, OWO_SYS_SETRESGID, OWO_MON_PRIVILEGE, 3)
OWO_EXIT(setresgid, OWO_SYS_SETRESGID, owo_priv_exit)

#endif /* OWO_PRIVILEGE_BPF_H */
