/* SPDX-License-Identifier: GPL-2.0-or-later
 * Copyright (C) 2026 the vupy authors */
/* cpeer: bench/peer.py's client, in C, for the workloads where the
 * client's own cost matters (a round trip, a connection):
 *
 *     cpeer client rtt|connect ADDR PORT COUNT WARMUP
 *
 * The same protocol and JSON line as peer.py's client (see there), so that
 * a program through vupy's proxy is measured with a client as cheap as
 * lwIP's floor (csrc/lwip_floor.c), which is C too.  The server stays
 * peer.py.  Compiled by bench/benchlib.py into a temporary directory; not
 * installed.
 */
#include "benchc.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#define SIZE 64

static void exactly(int fd, char *buf, size_t len, int out)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = out ? send(fd, buf + done, len - done, 0) : recv(fd, buf + done, len - done, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EPIPE;
			die(out ? "send" : "recv");
		}
		done += (size_t)n;
	}
}

static int connected(const struct sockaddr_in *to, int nodelay)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	if (fd < 0)
		die("socket");
	if (nodelay && setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
		die("setsockopt TCP_NODELAY");
	if (connect(fd, (const struct sockaddr *)to, sizeof *to) < 0)
		die("connect");
	return fd;
}

/* "kind", "netns", "sockname" and "peername" of peer.py's JSON line. */
static void describe(int fd, char *out, size_t len)
{
	struct stat st;
	struct sockaddr_in me, peer;
	socklen_t ml = sizeof me, pl = sizeof peer;
	char mine[INET_ADDRSTRLEN] = "", theirs[INET_ADDRSTRLEN] = "", line[512];
	const char *kind = "unknown";
	unsigned long long netns = 0;
	if (fstat(fd, &st) < 0)
		die("fstat");
	FILE *f = fopen("/proc/net/unix", "r");
	if (!f)
		die("/proc/net/unix");
	while (fgets(line, sizeof line, f)) {
		unsigned long long inode;
		if (sscanf(line, "%*s %*s %*s %*s %*s %*s %llu", &inode) == 1 && inode == st.st_ino)
			kind = "unix-proxy";
	}
	fclose(f);
	if (strcmp(kind, "unix-proxy") && (netns = netns_of(fd)) != 0)
		kind = "kernel";
	if (getsockname(fd, (struct sockaddr *)&me, &ml) == 0)
		inet_ntop(AF_INET, &me.sin_addr, mine, sizeof mine);
	if (getpeername(fd, (struct sockaddr *)&peer, &pl) == 0)
		inet_ntop(AF_INET, &peer.sin_addr, theirs, sizeof theirs);
	snprintf(out, len, "\"kind\": \"%s\", \"netns\": %llu, \"sockname\": \"%s\", \"peername\": \"%s\"",
		 kind, netns, mine, theirs);
}

int main(int argc, char **argv)
{
	if (argc != 7 || strcmp(argv[1], "client") || (strcmp(argv[2], "rtt") && strcmp(argv[2], "connect"))) {
		fprintf(stderr, "usage: cpeer client rtt|connect ADDR PORT COUNT WARMUP\n");
		return 2;
	}
	int rtt = !strcmp(argv[2], "rtt");
	long count = atol(argv[5]), warmup = atol(argv[6]);
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[4])) };
	if (inet_pton(AF_INET, argv[3], &to.sin_addr) != 1 || count <= 0 || warmup < 0) {
		fprintf(stderr, "cpeer: bad ADDR, COUNT or WARMUP\n");
		return 2;
	}
	char go[16], buf[SIZE], about[400] = "";
	printf("ready\n");
	fflush(stdout);
	if (!fgets(go, sizeof go, stdin)) {
		fprintf(stderr, "cpeer: no go\n");
		return 1;
	}
	memset(buf, 'p', sizeof buf);
	long long t0 = 0, elapsed;
	int nodelay = 0;
	if (rtt) {
		int fd = connected(&to, 1);
		socklen_t len = sizeof nodelay;
		if (getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, &len) < 0)
			die("getsockopt TCP_NODELAY");
		describe(fd, about, sizeof about);
		for (long i = 0; i < count + warmup; i++) {
			if (i == warmup)
				t0 = now_ns();
			exactly(fd, buf, SIZE, 1);
			exactly(fd, buf, SIZE, 0);
		}
		elapsed = now_ns() - t0;
		close(fd);
	} else {
		for (long i = 0; i < count + warmup; i++) {
			if (i == warmup)
				t0 = now_ns();
			int fd = connected(&to, 0);
			if (!about[0])
				describe(fd, about, sizeof about);
			exactly(fd, buf, 1, 1);
			exactly(fd, buf, 1, 0);
			close(fd);
		}
		elapsed = now_ns() - t0;
	}
	struct stat ns;
	if (stat("/proc/self/ns/net", &ns) < 0)
		die("/proc/self/ns/net");
	printf("{%s, \"ns\": %lld, \"round_trips\": %ld, \"nodelay\": %d, \"own_netns\": %llu, "
	       "\"seccomp\": %d, \"role\": \"client\", \"workload\": \"%s\"}\n",
	       about, elapsed, count + warmup, nodelay, (unsigned long long)ns.st_ino, seccomp_mode(), argv[2]);
	return 0;
}
