/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * io_uring: opens, connects, accepts and sends submitted through a ring make no syscall of
 * their own. io_uring's submission tracepoint (io_uring_submit_req since 5.19,
 * io_uring_submit_sqe before) fires in the submitting task (or the ring's SQPOLL thread) for
 * each request, once the kernel has taken its submission queue entry: that entry is still in
 * the ring, at the slot before the ring's cached head, and says what was asked for (uapi
 * layout). The request is reported from it, by the same code as the native call, marked
 * OWO_HDR_IO_URING: its result is not known yet (`ret` is OWO_RET_UNREAD), nor, for an accept,
 * the peer. A request on a registered (fixed) file names no descriptor: a connect is then
 * reported without its local side, and accepts and sends on one are not reported.
 *
 * One program per monitor (file; network), so that each is attached while its monitor is on.
 */
#ifndef OWO_URING_BPF_H
#define OWO_URING_BPF_H

#include <linux/io_uring.h>

#include "file.bpf.h"
#include "net.bpf.h"

/* The submission tracepoints' records: both give the ring and the request's opcode. */
struct trace_event_raw_io_uring_submit_req {
	void *ctx;
	__u8 opcode;
} OWO_CORE;

struct trace_event_raw_io_uring_submit_sqe {
	void *ctx;
	__u8 opcode;
} OWO_CORE;

/* io_uring/io_uring.c: where the kernel takes submission queue entries from. */
struct io_ring_ctx {
	unsigned int flags;
	__u32 *sq_array;
	struct io_uring_sqe *sq_sqes;
	unsigned int cached_sq_head;
	unsigned int sq_entries;
} OWO_CORE;

#define OWO_SETUP_NO_SQARRAY (1u << 16) /* 6.6: entries are taken in order, with no index array */

/* The ring and opcode of the request being submitted. */
static __always_inline struct io_ring_ctx *owo_uring_request(void *ctx, __u8 *opcode)
{
	if (bpf_core_type_exists(struct trace_event_raw_io_uring_submit_req)) {
		struct trace_event_raw_io_uring_submit_req *tp = ctx;

		*opcode = BPF_CORE_READ(tp, opcode);
		return BPF_CORE_READ(tp, ctx);
	}
	struct trace_event_raw_io_uring_submit_sqe *tp = ctx;

	*opcode = BPF_CORE_READ(tp, opcode);
	return BPF_CORE_READ(tp, ctx);
}

/* The entry the kernel took last from `ring`'s submission queue; false if unreadable. */
static __always_inline bool owo_uring_sqe(struct io_ring_ctx *ring, struct io_uring_sqe *sqe)
{
	unsigned int flags = BPF_CORE_READ(ring, flags);
	unsigned int entries = BPF_CORE_READ(ring, sq_entries);
	__u32 slot = (BPF_CORE_READ(ring, cached_sq_head) - 1) & (entries - 1);
	struct io_uring_sqe *sqes = BPF_CORE_READ(ring, sq_sqes);

	if (!(flags & OWO_SETUP_NO_SQARRAY) &&
	    bpf_probe_read_kernel(&slot, sizeof(slot), BPF_CORE_READ(ring, sq_array) + (slot & (entries - 1))))
		return false;
	if (slot >= entries)
		return false;
	if (flags & IORING_SETUP_SQE128)
		slot <<= 1; /* each entry takes two slots */
	return !bpf_probe_read_kernel(sqe, sizeof(*sqe), sqes + slot);
}

/* A connect, accept or send from an entry: as the native call, but the socket may be a fixed
 * file (none here), and an accept's peer is not known yet. */
static __always_inline int owo_uring_net(struct owo_pending *p, bool fixed)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct owo_net *ev = owo_activity_buf();
	struct sock *sk = fixed ? 0 : owo_fd_sock(task, p->args[0]);

	if (!ev)
		return 0;
	switch (p->syscall) {
	case OWO_SYS_CONNECT:
		if (sk) {
			if (!owo_sock_addrs(sk, ev))
				return 0;
		} else {
			/* The local side is not known: zero, and the protocol 0 says so. */
			__builtin_memset(ev->saddr, 0, sizeof(ev->saddr));
			ev->sport = 0;
			ev->protocol = 0;
			ev->family = 0;
			bpf_probe_read_user(&ev->family, sizeof(ev->family), (void *)p->args[1]);
		}
		if (!owo_user_dest((void *)p->args[1], ev))
			return 0;
		ev->payload_len = 0;
		owo_net_send(ev, p, OWO_RET_UNREAD);
		return 0;
	case OWO_SYS_ACCEPT:
		/* The listening socket: our side is its local address; the peer is not known yet. */
		if (!sk || !owo_sock_addrs(sk, ev))
			return 0;
		__builtin_memcpy(ev->daddr, ev->saddr, 16);
		ev->dport = ev->sport;
		__builtin_memset(ev->saddr, 0, sizeof(ev->saddr));
		ev->sport = 0;
		ev->payload_len = 0;
		owo_net_send(ev, p, OWO_RET_UNREAD);
		return 0;
	}
	if (!sk)
		return 0;
	return owo_net_send_dgram(p, OWO_RET_UNREAD);
}

/* Report the request being submitted if it is one of `monitor`'s. */
static __always_inline int owo_uring_submit(void *ctx, __u32 monitor)
{
	struct owo_pending p = {};
	struct io_uring_sqe sqe;
	struct io_ring_ctx *ring;
	__u8 opcode;

	if (!owo_wanted(monitor))
		return 0;
	ring = owo_uring_request(ctx, &opcode);
	switch (opcode) {
	case IORING_OP_OPENAT:
		p.syscall = OWO_SYS_OPENAT;
		break;
	case IORING_OP_OPENAT2:
		p.syscall = OWO_SYS_OPENAT2;
		break;
	case IORING_OP_CONNECT:
		p.syscall = OWO_SYS_CONNECT;
		break;
	case IORING_OP_ACCEPT:
		p.syscall = OWO_SYS_ACCEPT;
		break;
	case IORING_OP_SEND:
	case IORING_OP_SEND_ZC:
		p.syscall = OWO_SYS_SENDTO;
		break;
	case IORING_OP_SENDMSG:
	case IORING_OP_SENDMSG_ZC:
		p.syscall = OWO_SYS_SENDMSG;
		break;
	default:
		return 0;
	}
	bool file = p.syscall == OWO_SYS_OPENAT || p.syscall == OWO_SYS_OPENAT2;

	if (file != (monitor == OWO_MON_FILE) || !owo_uring_sqe(ring, &sqe))
		return 0;
	p.via = OWO_HDR_IO_URING;
	p.args[0] = sqe.fd;
	p.args[1] = sqe.addr;
	switch (p.syscall) {
	case OWO_SYS_OPENAT: /* openat(dfd, path, flags, mode) */
		p.args[2] = sqe.open_flags;
		p.args[3] = sqe.len;
		return owo_file_open(&p, OWO_RET_UNREAD);
	case OWO_SYS_OPENAT2: /* openat2(dfd, path, how) */
		p.args[2] = sqe.addr2;
		return owo_file_open(&p, OWO_RET_UNREAD);
	case OWO_SYS_SENDTO: /* sendto(fd, buf, len, flags, dest, destlen): dest in addr2 */
		p.args[2] = sqe.len;
		p.args[3] = sqe.msg_flags;
		p.args[4] = sqe.addr2;
		break;
	}
	return owo_uring_net(&p, sqe.flags & IOSQE_FIXED_FILE);
}

SEC("tracepoint/io_uring/io_uring_submit_req")
int owo_uring_file(void *ctx)
{
	return owo_uring_submit(ctx, OWO_MON_FILE);
}

SEC("tracepoint/io_uring/io_uring_submit_req")
int owo_uring_network(void *ctx)
{
	return owo_uring_submit(ctx, OWO_MON_NETWORK);
}

#endif /* OWO_URING_BPF_H */
