/*
 * Opens, connects, accepts and sends through io_uring (liburing), for owod's tests: none of these
 * makes a syscall of its own.
 *
 * usage: uring DIR TCP_PORT UDP_PORT NAME
 *   openat  DIR/openat, created;           openat2  DIR/openat2, created;
 *   connect 127.0.0.1:TCP_PORT;            connect  the same, through a registered (fixed) file;
 *   accept  on a listener of its own, which it then connects to (natively);
 *   sendmsg a datagram to 127.0.0.1:UDP_PORT, named in the message;
 *   send    a DNS question for NAME on a UDP socket connected to 127.0.0.1:53.
 * Each request is submitted and waited for on its own. Prints the listener's port, and exits 1
 * with a message if a request fails.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <liburing.h>
#include <linux/openat2.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct io_uring ring;

static void fail(const char *what, int err)
{
	fprintf(stderr, "uring: %s: %s\n", what, strerror(err));
	exit(1);
}

static struct io_uring_sqe *sqe(void)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);

	if (!sqe)
		fail("io_uring_get_sqe", EBUSY);
	return sqe;
}

/* Submit what was prepared and wait for its result. */
static int run(const char *what)
{
	struct io_uring_cqe *cqe;
	int ret = io_uring_submit(&ring);

	if (ret != 1)
		fail(what, ret < 0 ? -ret : EIO);
	ret = io_uring_wait_cqe(&ring, &cqe);
	if (ret < 0)
		fail(what, -ret);
	ret = cqe->res;
	io_uring_cqe_seen(&ring, cqe);
	if (ret < 0)
		fail(what, -ret);
	return ret;
}

static struct sockaddr_in loopback(int port)
{
	struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};

	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return addr;
}

/* A DNS question for `name` (RFC 1035 4.1), type A, class IN; its length. */
static size_t question(const char *name, unsigned char *out)
{
	unsigned char header[12] = {0x4f, 0x57, 0x01, 0x00, 0, 1};
	size_t n = sizeof(header);

	memcpy(out, header, n);
	while (*name) {
		size_t label = strcspn(name, ".");

		out[n++] = label;
		memcpy(out + n, name, label);
		n += label;
		name += label + (name[label] == '.');
	}
	memcpy(out + n, "\0\0\1\0\1", 5);
	return n + 5;
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: uring DIR TCP_PORT UDP_PORT NAME\n");
		return 2;
	}
	int ret = io_uring_queue_init(8, &ring, 0);
	if (ret < 0)
		fail("io_uring_queue_init", -ret);
	char path[4096];

	snprintf(path, sizeof(path), "%s/openat", argv[1]);
	io_uring_prep_openat(sqe(), AT_FDCWD, path, O_CREAT | O_WRONLY, 0600);
	close(run("openat"));
	struct open_how how = {.flags = O_CREAT | O_WRONLY, .mode = 0600};

	snprintf(path, sizeof(path), "%s/openat2", argv[1]);
	io_uring_prep_openat2(sqe(), AT_FDCWD, path, &how);
	close(run("openat2"));

	struct sockaddr_in tcp = loopback(atoi(argv[2]));
	int sock = socket(AF_INET, SOCK_STREAM, 0);

	io_uring_prep_connect(sqe(), sock, (struct sockaddr *)&tcp, sizeof(tcp));
	run("connect");
	close(sock);
	int fixed = socket(AF_INET, SOCK_STREAM, 0);

	ret = io_uring_register_files(&ring, &fixed, 1);
	if (ret < 0)
		fail("io_uring_register_files", -ret);
	struct io_uring_sqe *s = sqe();

	io_uring_prep_connect(s, 0, (struct sockaddr *)&tcp, sizeof(tcp));
	s->flags |= IOSQE_FIXED_FILE;
	run("connect (fixed file)");
	io_uring_unregister_files(&ring);
	close(fixed);

	int listener = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in own = loopback(0);
	socklen_t len = sizeof(own);

	if (bind(listener, (struct sockaddr *)&own, sizeof(own)) || listen(listener, 1) ||
	    getsockname(listener, (struct sockaddr *)&own, &len))
		fail("listen", errno);
	printf("%d\n", ntohs(own.sin_port));
	fflush(stdout);
	io_uring_prep_accept(sqe(), listener, NULL, NULL, 0);
	if (io_uring_submit(&ring) != 1)
		fail("accept", EIO);
	int client = socket(AF_INET, SOCK_STREAM, 0);

	if (connect(client, (struct sockaddr *)&own, sizeof(own)))
		fail("connect to the listener", errno);
	struct io_uring_cqe *cqe;

	if ((ret = io_uring_wait_cqe(&ring, &cqe)) < 0 || (ret = cqe->res) < 0)
		fail("accept", -ret);
	close(cqe->res);
	io_uring_cqe_seen(&ring, cqe);
	close(client);
	close(listener);

	struct sockaddr_in udp = loopback(atoi(argv[3]));
	int dgram = socket(AF_INET, SOCK_DGRAM, 0);
	struct iovec iov = {.iov_base = "uring", .iov_len = 5};
	struct msghdr msg = {.msg_name = &udp, .msg_namelen = sizeof(udp), .msg_iov = &iov, .msg_iovlen = 1};

	io_uring_prep_sendmsg(sqe(), dgram, &msg, 0);
	run("sendmsg");
	close(dgram);

	unsigned char query[512];
	size_t n = question(argv[4], query);
	struct sockaddr_in dns = loopback(53);
	int resolver = socket(AF_INET, SOCK_DGRAM, 0);

	if (connect(resolver, (struct sockaddr *)&dns, sizeof(dns)))
		fail("connect to port 53", errno);
	io_uring_prep_send(sqe(), resolver, query, n, 0);
	run("send");
	close(resolver);
	io_uring_queue_exit(&ring);
	return 0;
}
