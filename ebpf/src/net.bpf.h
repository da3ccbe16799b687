/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The network monitor: connect, accept/accept4 and sendto/sendmsg, at syscall exit, for IPv4
 * and IPv6. Addresses and the protocol come from the socket the kernel holds; for connect the
 * destination is the address asked for. Sends are reported for datagram sockets only, when they
 * name a destination or go to port 53 (stream sends are covered by connect and accept); the
 * first bytes of a port-53 payload are kept so that user space can read the DNS question.
 */
#ifndef OWO_NET_BPF_H
#define OWO_NET_BPF_H

#include "syscall.bpf.h"

#define OWO_AF_INET 2
#define OWO_AF_INET6 10
#define OWO_SOCK_DGRAM 2

/* User ABI (linux/in.h, linux/in6.h, linux/socket.h), ours so as not to clash with the CO-RE types. */
struct owo_sockaddr_in {
	__u16 family;
	__u16 port; /* network order */
	__u8 addr[4];
};

struct owo_sockaddr_in6 {
	__u16 family;
	__u16 port;
	__u32 flowinfo;
	__u8 addr[16];
};

struct owo_user_msghdr {
	void *name;
	int namelen;
	void *iov;
	__u64 iovlen;
};

struct owo_iovec {
	void *base;
	__u64 len;
};

/* The same in a 32-bit program (struct compat_msghdr, struct compat_iovec). */
struct owo_user_msghdr32 {
	__u32 name;
	int namelen;
	__u32 iov;
	__u32 iovlen;
};

struct owo_iovec32 {
	__u32 base;
	__u32 len;
};

static __always_inline __u16 owo_ntohs(__u16 v)
{
	return __builtin_bswap16(v);
}

/* The socket behind `fd`, or NULL if it is not one (a socket's file points back at it). */
static __always_inline struct sock *owo_fd_sock(struct task_struct *task, __s64 fd)
{
	struct file *file = owo_fd_file(task, fd);
	struct socket *sock;

	if (!file)
		return 0;
	sock = BPF_CORE_READ(file, private_data);
	if (!sock || BPF_CORE_READ(sock, file) != file)
		return 0;
	return BPF_CORE_READ(sock, sk);
}

/* The socket's own addresses: local into s*, peer into d*. False if not IPv4/IPv6. */
static __always_inline bool owo_sock_addrs(struct sock *sk, struct owo_net *ev)
{
	ev->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	ev->protocol = BPF_CORE_READ(sk, sk_protocol);
	ev->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	ev->dport = owo_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	__builtin_memset(ev->saddr, 0, sizeof(ev->saddr));
	__builtin_memset(ev->daddr, 0, sizeof(ev->daddr));
	if (ev->family == OWO_AF_INET) {
		bpf_core_read(ev->saddr, 4, &sk->__sk_common.skc_rcv_saddr);
		bpf_core_read(ev->daddr, 4, &sk->__sk_common.skc_daddr);
		return true;
	}
	if (ev->family == OWO_AF_INET6) {
		bpf_core_read(ev->saddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(ev->daddr, 16, &sk->__sk_common.skc_v6_daddr);
		return true;
	}
	return false;
}

/* A destination from a user sockaddr into d*; false if it is not IPv4/IPv6. */
static __always_inline bool owo_user_dest(const void *addr, struct owo_net *ev)
{
	__u16 family = 0;

	bpf_probe_read_user(&family, sizeof(family), addr);
	__builtin_memset(ev->daddr, 0, sizeof(ev->daddr));
	if (family == OWO_AF_INET) {
		struct owo_sockaddr_in in = {};

		bpf_probe_read_user(&in, sizeof(in), addr);
		ev->dport = owo_ntohs(in.port);
		__builtin_memcpy(ev->daddr, in.addr, 4);
		return true;
	}
	if (family == OWO_AF_INET6) {
		struct owo_sockaddr_in6 in6 = {};

		bpf_probe_read_user(&in6, sizeof(in6), addr);
		ev->dport = owo_ntohs(in6.port);
		__builtin_memcpy(ev->daddr, in6.addr, 16);
		return true;
	}
	return false;
}

static __always_inline void owo_net_send(struct owo_net *ev, struct owo_pending *p, __s64 ret)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	__u32 payload = ev->payload_len;
	__u64 size;

	size = offsetof(struct owo_net, payload) + owo_bound(payload, OWO_PAYLOAD_MAX);
	ev->ret = ret;
	ev->syscall = p->syscall;
	owo_activity_header(&ev->hdr, OWO_KIND_NET, size, task, OWO_MON_NETWORK, p->via);
	owo_activity_output(ev, size, OWO_MON_NETWORK);
}

static __always_inline int owo_net_connect(struct owo_pending *p, __s64 ret)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct owo_net *ev = owo_activity_buf();
	struct sock *sk = owo_fd_sock(task, p->args[0]);

	if (!ev || !sk || !owo_sock_addrs(sk, ev))
		return 0;
	/* The destination asked for (the socket has it only once connected). */
	if (!owo_user_dest((void *)p->args[1], ev))
		return 0;
	ev->payload_len = 0;
	owo_net_send(ev, p, ret);
	return 0;
}

/* The peer of an accepted connection is its source: s* = peer, d* = our side. */
static __always_inline int owo_net_accept(struct owo_pending *p, __s64 ret)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct owo_net *ev = owo_activity_buf();
	struct sock *sk;
	__u8 local[16];
	__u16 local_port;

	if (!ev || ret < 0)
		return 0; /* a failed accept (EAGAIN in every event loop) is not a connection */
	sk = owo_fd_sock(task, ret);
	if (!sk || !owo_sock_addrs(sk, ev))
		return 0;
	__builtin_memcpy(local, ev->saddr, 16);
	local_port = ev->sport;
	__builtin_memcpy(ev->saddr, ev->daddr, 16);
	ev->sport = ev->dport;
	__builtin_memcpy(ev->daddr, local, 16);
	ev->dport = local_port;
	ev->payload_len = 0;
	owo_net_send(ev, p, ret);
	return 0;
}

/* sendto(fd, buf, len, flags, addr, addrlen), sendmsg(fd, msg, flags) and sendmmsg(fd, msgvec,
 * vlen, flags), of which the first message is read: glibc's resolver sends its A and AAAA
 * queries together with sendmmsg. A 32-bit program's messages have 32-bit pointers. */
static __always_inline int owo_net_send_dgram(struct owo_pending *p, __s64 ret)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct owo_net *ev = owo_activity_buf();
	struct sock *sk = owo_fd_sock(task, p->args[0]);
	const void *addr, *buf;
	__u64 len;

	if (!ev || !sk || BPF_CORE_READ(sk, sk_type) != OWO_SOCK_DGRAM || !owo_sock_addrs(sk, ev))
		return 0;
	if ((p->syscall == OWO_SYS_SENDMSG || p->syscall == OWO_SYS_SENDMMSG) && (p->via & OWO_HDR_IA32)) {
		struct owo_user_msghdr32 msg = {};
		struct owo_iovec32 iov = {};

		bpf_probe_read_user(&msg, sizeof(msg), (void *)p->args[1]);
		if (msg.iovlen)
			bpf_probe_read_user(&iov, sizeof(iov), (void *)(__u64)msg.iov);
		addr = (void *)(__u64)msg.name, buf = (void *)(__u64)iov.base, len = iov.len;
	} else if (p->syscall == OWO_SYS_SENDMSG || p->syscall == OWO_SYS_SENDMMSG) {
		struct owo_user_msghdr msg = {};
		struct owo_iovec iov = {};

		bpf_probe_read_user(&msg, sizeof(msg), (void *)p->args[1]);
		if (msg.iovlen)
			bpf_probe_read_user(&iov, sizeof(iov), msg.iov);
		addr = msg.name, buf = iov.base, len = iov.len;
	} else {
		addr = (void *)p->args[4], buf = (void *)p->args[1], len = p->args[2];
	}
	bool named = addr && owo_user_dest(addr, ev);

	if (!named && ev->dport != 53)
		return 0;
	ev->payload_len = 0;
	if (ev->dport == 53 && buf) {
		__u64 n = owo_bound(len, OWO_PAYLOAD_MAX);

		if (!bpf_probe_read_user(ev->payload, n, buf))
			ev->payload_len = n;
	}
	owo_net_send(ev, p, ret);
	return 0;
}

OWO_ENTER(connect, OWO_SYS_CONNECT, OWO_MON_NETWORK, 3)
OWO_EXIT(connect, OWO_SYS_CONNECT, owo_net_connect)
OWO_ENTER(accept, OWO_SYS_ACCEPT, OWO_MON_NETWORK, 3)
OWO_EXIT(accept, OWO_SYS_ACCEPT, owo_net_accept)
OWO_ENTER(accept4, OWO_SYS_ACCEPT4, OWO_MON_NETWORK, 4)
OWO_EXIT(accept4, OWO_SYS_ACCEPT4, owo_net_accept)
OWO_ENTER(sendto, OWO_SYS_SENDTO, OWO_MON_NETWORK, 6)
OWO_EXIT(sendto, OWO_SYS_SENDTO, owo_net_send_dgram)
OWO_ENTER(sendmsg, OWO_SYS_SENDMSG, OWO_MON_NETWORK, 3)
OWO_EXIT(sendmsg, OWO_SYS_SENDMSG, owo_net_send_dgram)
OWO_ENTER(sendmmsg, OWO_SYS_SENDMMSG, OWO_MON_NETWORK, 4)
OWO_EXIT(sendmmsg, OWO_SYS_SENDMMSG, owo_net_send_dgram)

#endif /* OWO_NET_BPF_H */
