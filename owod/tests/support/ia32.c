/*
 * Makes file, network, privilege and exec calls as 32-bit compat syscalls, for owod's tests.
 *
 * Built with -m32 it is an ia32 program: every call it makes through the C library is one (the
 * library connects with socketcall(2) or the direct call). Built for x86_64 it makes the same
 * calls with `int $0x80`, the way a 64-bit program hides them from the syscall tracepoints, with
 * its arguments in memory below 4 GiB: a direct connect and a socketcall connect, and the 16-bit
 * setuid as well as setuid32.
 *
 * usage: ia32 FILE PORT   creates FILE, writes "ia32" to it and unlinks it; connects to
 *                         127.0.0.1:PORT (TCP); calls setuid with its own uid; then execs
 *                         /bin/true. Exits 1 with a message if a call fails.
 *        ia32 --attach PID  (the int 0x80 build) attaches to PID with ptrace, waits for it to
 *                         stop, and detaches.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

static void fail(const char *what)
{
	perror(what);
	exit(1);
}

static struct sockaddr_in loopback(const char *port)
{
	struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(atoi(port))};

	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return addr;
}

#ifdef __i386__

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: ia32 FILE PORT\n");
		return 2;
	}
	int fd = open(argv[1], O_CREAT | O_WRONLY | O_TRUNC, 0600);
	if (fd < 0 || write(fd, "ia32", 4) != 4 || close(fd) || unlink(argv[1]))
		fail(argv[1]);
	struct sockaddr_in addr = loopback(argv[2]);
	int sock = socket(AF_INET, SOCK_STREAM, 0);
	if (sock < 0 || connect(sock, (struct sockaddr *)&addr, sizeof(addr)))
		fail("connect");
	close(sock);
	if (setuid(getuid()))
		fail("setuid");
	char *const args[] = {"true", NULL};
	execv("/bin/true", args);
	fail("execv /bin/true");
}

#elif defined(__x86_64__)

#include <asm/unistd_32.h>
#include <linux/net.h>

/* A 32-bit compat syscall from 64-bit code. int 0x80 may clobber r8-r11. */
static long int80(long nr, long a, long b, long c)
{
	long ret;

	__asm__ volatile("int $0x80"
			 : "=a"(ret)
			 : "a"(nr), "b"(a), "c"(b), "d"(c)
			 : "memory", "r8", "r9", "r10", "r11");
	return ret;
}

/* Memory a 32-bit call can point at. */
struct low {
	char path[4096];
	struct sockaddr_in addr;
	unsigned int socketcall_args[3];
	unsigned int argv[2];
	char true_path[16];
	char true_arg[8];
};

#include <sys/wait.h>

#define PTRACE_ATTACH_REQUEST 16
#define PTRACE_DETACH_REQUEST 17

/* A 32-bit ptrace attach and detach of `pid`. */
static int attach(int pid)
{
	if (int80(__NR_ptrace, PTRACE_ATTACH_REQUEST, pid, 0))
		fail("int 0x80 ptrace attach");
	if (waitpid(pid, NULL, __WALL) != pid)
		fail("waitpid");
	if (int80(__NR_ptrace, PTRACE_DETACH_REQUEST, pid, 0))
		fail("int 0x80 ptrace detach");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "--attach"))
		return attach(atoi(argv[2]));
	if (argc != 3) {
		fprintf(stderr, "usage: ia32 FILE PORT | ia32 --attach PID\n");
		return 2;
	}
	struct low *low = mmap(NULL, sizeof(struct low), PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
	if (low == MAP_FAILED)
		fail("mmap MAP_32BIT");
	if (strlen(argv[1]) >= sizeof(low->path))
		fail("FILE is too long");
	strcpy(low->path, argv[1]);
	strcpy(low->true_path, "/bin/true");
	strcpy(low->true_arg, "true");
	low->addr = loopback(argv[2]);

	long fd = int80(__NR_open, (long)low->path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
	if (fd < 0)
		fail("int 0x80 open");
	memcpy(low->path + 4000, "ia32", 4);
	if (int80(__NR_write, fd, (long)(low->path + 4000), 4) != 4)
		fail("int 0x80 write");
	int80(__NR_close, fd, 0, 0);
	if (int80(__NR_unlink, (long)low->path, 0, 0))
		fail("int 0x80 unlink");

	int direct = socket(AF_INET, SOCK_STREAM, 0);
	if (int80(__NR_connect, direct, (long)&low->addr, sizeof(low->addr)))
		fail("int 0x80 connect");
	close(direct);
	int packed = socket(AF_INET, SOCK_STREAM, 0);
	low->socketcall_args[0] = packed;
	low->socketcall_args[1] = (unsigned int)(long)&low->addr;
	low->socketcall_args[2] = sizeof(low->addr);
	if (int80(__NR_socketcall, SYS_CONNECT, (long)low->socketcall_args, 0))
		fail("int 0x80 socketcall connect");
	close(packed);

	if (int80(__NR_setuid32, getuid(), 0, 0))
		fail("int 0x80 setuid32");
	/* The 16-bit setuid with (u16)-1: the kernel widens it to -1 and refuses it (EINVAL). */
	if (int80(__NR_setuid, 0xffff, 0, 0) != -22)
		fail("int 0x80 setuid(0xffff) was not refused");

	low->argv[0] = (unsigned int)(long)low->true_arg;
	low->argv[1] = 0;
	int80(__NR_execve, (long)low->true_path, (long)low->argv, 0);
	fail("int 0x80 execve /bin/true");
}

#endif
