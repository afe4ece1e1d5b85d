/* SPDX-License-Identifier: GPL-2.0-or-later
 * Copyright (C) 2026 the vupy authors */
/* loops: time one system call (or pair) in a tight loop, for bench/.
 *
 *     loops ITERATIONS WARMUP socket  inet|unix stream|dgram
 *     loops ITERATIONS WARMUP msocket PATH inet|unix stream|dgram
 *     loops ITERATIONS WARMUP getpid
 *     loops ITERATIONS WARMUP stat    PATH
 *     loops ITERATIONS WARMUP fanout  PROCESSES
 *     loops ITERATIONS WARMUP conns   PROCESSES IPV4 PORT
 *     loops ITERATIONS WARMUP connect IPV4 PORT
 *     loops ITERATIONS WARMUP sendto  IPV4 PORT
 *
 * socket   socket(FAMILY, TYPE, 0) + close()
 * msocket  syscall(-5, PATH, FAMILY, TYPE, 0) + close(): VUOS's msocket,
 *          which vupy serves (ENOSYS outside a session)
 * getpid   syscall(SYS_getpid)
 * stat     stat(PATH)
 * connect  socket(AF_INET, SOCK_DGRAM, 0) + connect(IPV4:PORT) + close():
 *          a UDP connect needs no peer, so this is the connect itself
 *          (where routes act, bench/routed_connect.py)
 * sendto   sendto(IPV4:PORT) of one byte, from one UDP socket made before
 *          the loop: where routes choose each datagram's stack
 * fanout   PROCESSES children, forked first and held at a pipe, then
 *          released at once; each makes ITERATIONS sockets (socket(AF_INET,
 *          SOCK_STREAM, 0) + close()) and exits.  Timed from the release to
 *          the last child reaped; the time printed is per socket.  A child
 *          whose socket fails, or whose last socket is not of the namespace
 *          of the parent's sockets, makes the run fail.  WARMUP is unused.
 *          After printing, the program waits for EOF on stdin, so that
 *          whoever runs it can look at the session (the supervisor's memory)
 *          before it ends.
 * conns    as fanout, but each child's ITERATIONS are TCP connections to
 *          IPV4:PORT: socket(AF_INET, SOCK_STREAM) + connect() + read() of
 *          the byte the server sends + close() (bench/acceptor.c serves
 *          them); the time printed is per connection.
 *
 * Prints one line: "NS_PER_ITERATION NETNS_INODE SECCOMP_MODE".  The time
 * is the mean wall-clock time (CLOCK_MONOTONIC, so that a trapped call's
 * time in the supervisor counts) of one iteration over ITERATIONS, after
 * WARMUP untimed ones (page faults, the supervisor's first setns).
 * NETNS_INODE is the network namespace (SIOCGSKNS, 0 if the kernel will not
 * say) of a socket made after the loop: by the loop's own call for socket
 * and msocket, connected by the loop's own calls for connect, by
 * the loop's own socket for sendto, socket(AF_INET, SOCK_DGRAM, 0) otherwise.  SECCOMP_MODE
 * is the Seccomp: field of /proc/self/status (2: under a filter).  With
 * these the benchmark checks that the loop ran where it claims.  Any failing
 * call ends the run with status 1: fast failures must never be reported as
 * a time.
 *
 * The same protocol as bench/pyloop.py.  Compiled by bench/benchlib.py into
 * a temporary directory; not installed.
 */
#include "benchc.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define NR_MSOCKET (-5)

enum workload { SOCKET, MSOCKET, GETPID, STAT, FANOUT, CONNECT, SENDTO, CONNS };

static enum workload workload;
static const char *path;
static int family = AF_INET, type = SOCK_DGRAM;
static struct sockaddr_in destination = { .sin_family = AF_INET };
static int sender = -1;         /* sendto's socket */

static void usage(void)
{
	fprintf(stderr, "usage: loops ITERATIONS WARMUP socket inet|unix stream|dgram\n"
			"       loops ITERATIONS WARMUP msocket PATH inet|unix stream|dgram\n"
			"       loops ITERATIONS WARMUP getpid | stat PATH | fanout PROCESSES\n"
			"       loops ITERATIONS WARMUP conns PROCESSES IPV4 PORT\n"
			"       loops ITERATIONS WARMUP connect|sendto IPV4 PORT\n");
	exit(2);
}

/* The socket the workload makes, or the probe socket of the others. */
static int make_socket(void)
{
	int fd;
	if (workload == MSOCKET)
		fd = (int)syscall(NR_MSOCKET, path, family, type, 0);
	else if (workload == SOCKET)
		fd = socket(family, type, 0);
	else
		fd = socket(AF_INET, workload == FANOUT || workload == CONNS ? SOCK_STREAM : SOCK_DGRAM, 0);
	if (fd < 0)
		die(workload == MSOCKET ? "msocket" : "socket");
	if ((workload == CONNECT || workload == CONNS)
	    && connect(fd, (struct sockaddr *)&destination, sizeof destination) < 0)
		die("connect");
	char byte;
	if (workload == CONNS && read(fd, &byte, 1) != 1)
		die("read");
	return fd;
}

static void once(void)
{
	struct stat st;
	switch (workload) {
	case SOCKET:
	case MSOCKET:
	case CONNECT:
		close(make_socket());
		break;
	case GETPID:
		syscall(SYS_getpid);
		break;
	case SENDTO:
		if (sendto(sender, "x", 1, 0, (struct sockaddr *)&destination, sizeof destination) != 1)
			die("sendto");
		break;
	case STAT:
		if (stat(path, &st) < 0)
			die(path);
		break;
	case FANOUT:
	case CONNS:
		break;
	}
}

/* The children of fanout: the time from their release to the last reaped. */
static long long fanout(long processes, long sockets, unsigned long long netns)
{
	int go[2];
	if (pipe(go) < 0)
		die("pipe");
	for (long i = 0; i < processes; i++) {
		pid_t pid = fork();
		if (pid < 0)
			die("fork");
		if (pid == 0) {
			char c;
			close(go[1]);
			if (read(go[0], &c, 1) != 0)    /* EOF: released */
				_exit(1);
			int status = 0;
			for (long j = 0; j < sockets; j++) {
				int fd = make_socket();
				if (j == sockets - 1 && netns_of(fd) != netns)
					status = 3;
				close(fd);
			}
			_exit(status);
		}
	}
	close(go[0]);
	long long t0 = now_ns();
	close(go[1]);
	long failed = 0;
	int status;
	for (long i = 0; i < processes; i++) {
		if (wait(&status) < 0)
			die("wait");
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			failed++;
	}
	long long t1 = now_ns();
	if (failed) {
		fprintf(stderr, "loops: %ld of %ld children failed or made sockets elsewhere\n",
			failed, processes);
		exit(1);
	}
	return t1 - t0;
}

static int parse_family_type(char **argv)
{
	if (!strcmp(argv[0], "inet"))
		family = AF_INET;
	else if (!strcmp(argv[0], "unix"))
		family = AF_UNIX;
	else
		return -1;
	if (!strcmp(argv[1], "stream"))
		type = SOCK_STREAM;
	else if (!strcmp(argv[1], "dgram"))
		type = SOCK_DGRAM;
	else
		return -1;
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 4)
		usage();
	long n = atol(argv[1]), warmup = atol(argv[2]), processes = 0;
	const char *name = argv[3];
	int rest = argc - 4;
	char **args = argv + 4;
	if (!strcmp(name, "socket") && rest == 2 && parse_family_type(args) == 0)
		workload = SOCKET;
	else if (!strcmp(name, "msocket") && rest == 3 && parse_family_type(args + 1) == 0)
		workload = MSOCKET, path = args[0];
	else if (!strcmp(name, "getpid") && rest == 0)
		workload = GETPID;
	else if (!strcmp(name, "stat") && rest == 1)
		workload = STAT, path = args[0];
	else if (!strcmp(name, "fanout") && rest == 1 && (processes = atol(args[0])) > 0)
		workload = FANOUT;
	else if (!strcmp(name, "conns") && rest == 3 && (processes = atol(args[0])) > 0
		 && inet_pton(AF_INET, args[1], &destination.sin_addr) == 1)
		workload = CONNS, destination.sin_port = htons((unsigned short)atoi(args[2]));
	else if ((!strcmp(name, "connect") || !strcmp(name, "sendto")) && rest == 2
		 && inet_pton(AF_INET, args[0], &destination.sin_addr) == 1)
		workload = name[0] == 'c' ? CONNECT : SENDTO,
		destination.sin_port = htons((unsigned short)atoi(args[1]));
	else
		usage();
	if (n <= 0 || warmup < 0) {
		fprintf(stderr, "loops: ITERATIONS must be > 0, WARMUP >= 0\n");
		return 2;
	}

	long long elapsed;
	if (workload == FANOUT || workload == CONNS) {
		int fd = make_socket();
		unsigned long long netns = netns_of(fd);
		close(fd);
		elapsed = fanout(processes, n, netns);
		n *= processes;
	} else {
		if (workload == SENDTO)
			sender = make_socket();
		for (long i = 0; i < warmup; i++)
			once();
		long long t0 = now_ns();
		for (long i = 0; i < n; i++)
			once();
		elapsed = now_ns() - t0;
	}

	int fd = workload == SENDTO ? sender : make_socket();
	unsigned long long inode = netns_of(fd);
	close(fd);
	printf("%.1f %llu %d\n", (double)elapsed / (double)n, inode, seccomp_mode());
	fflush(stdout);
	if (workload == FANOUT || workload == CONNS) {
		char buf[64];
		while (read(0, buf, sizeof buf) > 0)
			;
	}
	return 0;
}
