/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The module monitor: init_module and finit_module (with the module file's path). On kernels
 * without module support the tracepoints do not exist; owod then reports the monitor unavailable.
 */
#ifndef OWO_MODULE_BPF_H
#define OWO_MODULE_BPF_H

#include "syscall.bpf.h"

static __always_inline int owo_module_exit(struct owo_pending *p, __s64 ret)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct owo_module *ev = owo_activity_buf();
	bool truncated = false;
	__u32 len = 0;
	__u64 size;

	if (!ev)
		return 0;
	if (p->syscall == OWO_SYS_FINIT_MODULE)
		len = owo_fd_path(task, p->args[0], &truncated);
	ev->path_len = owo_path_copy(ev->data, len);
	ev->flags = truncated ? OWO_PATH_TRUNCATED : 0;
	ev->ret = ret;
	ev->syscall = p->syscall;
	ev->_pad0 = 0;
	size = owo_bound(offsetof(struct owo_module, data) + ev->path_len, sizeof(*ev));
	owo_activity_header(&ev->hdr, OWO_KIND_MODULE, size, task, OWO_MON_MODULE, p->via);
	owo_activity_output(ev, size, OWO_MON_MODULE);
	return 0;
}

OWO_ENTER(init_module, OWO_SYS_INIT_MODULE, OWO_MON_MODULE, 3)
OWO_EXIT(init_module, OWO_SYS_INIT_MODULE, owo_module_exit)
OWO_ENTER(finit_module, OWO_SYS_FINIT_MODULE, OWO_MON_MODULE, 3)
OWO_EXIT(finit_module, OWO_SYS_FINIT_MODULE, owo_module_exit)

#endif /* OWO_MODULE_BPF_H */
