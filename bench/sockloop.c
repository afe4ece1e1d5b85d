/* sockloop: time socket(FAMILY, SOCK_STREAM, 0) + close() in a tight loop.
 *
 *     sockloop inet|unix ITERATIONS WARMUP
 *
 * Prints one line: "NS_PER_CALL NETNS_INODE".  NS_PER_CALL is the mean
 * wall-clock time of one socket()+close() pair over ITERATIONS pairs
 * (CLOCK_MONOTONIC, so a routed call's time in the supervisor counts).
 * WARMUP untimed pairs come first, so that one-off costs (page faults, the
 * supervisor's first setns into the stack) are not averaged in.
 *
 * NETNS_INODE is the inode of the network namespace the last socket
 * belongs to (SIOCGSKNS), 0 if the kernel would not say: the benchmark uses
 * it to check that a "routed" loop really got its sockets from the stack,
 * not from its own namespace.  Any failing socket() ends the run with
 * status 1: a loop of fast failures must never be reported as a time.
 *
 * Called by bench/socket_create.py, which compiles it into a temporary
 * directory; it is not installed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/sockios.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef SIOCGSKNS
#define SIOCGSKNS 0x894C
#endif

static int one(int family)
{
	int fd = socket(family, SOCK_STREAM, 0);
	if (fd < 0) {
		fprintf(stderr, "sockloop: socket: %s\n", strerror(errno));
		exit(1);
	}
	return fd;
}

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	if (argc != 4 || (strcmp(argv[1], "inet") && strcmp(argv[1], "unix"))) {
		fprintf(stderr, "usage: sockloop inet|unix ITERATIONS WARMUP\n");
		return 2;
	}
	int family = strcmp(argv[1], "inet") == 0 ? AF_INET : AF_UNIX;
	long n = atol(argv[2]), warmup = atol(argv[3]);
	if (n <= 0 || warmup < 0) {
		fprintf(stderr, "sockloop: ITERATIONS must be > 0, WARMUP >= 0\n");
		return 2;
	}

	for (long i = 0; i < warmup; i++)
		close(one(family));

	long long t0 = now_ns();
	for (long i = 0; i < n; i++)
		close(one(family));
	long long t1 = now_ns();

	/* Outside the timed loop: which namespace do the sockets come from? */
	unsigned long long inode = 0;
	int fd = one(family);
	int nsfd = ioctl(fd, SIOCGSKNS);
	if (nsfd >= 0) {
		struct stat st;
		if (fstat(nsfd, &st) == 0)
			inode = (unsigned long long)st.st_ino;
		close(nsfd);
	}
	close(fd);

	printf("%.1f %llu\n", (double)(t1 - t0) / (double)n, inode);
	return 0;
}
