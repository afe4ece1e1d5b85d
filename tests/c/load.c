/* SPDX-License-Identifier: GPL-2.0-or-later
 * Copyright (C) 2026 the vupy authors */
/* Many sockets, threads and processes at once in a vupy session, with the
 * network namespace of every socket checked (SIOCGSKNS, the inode of the
 * namespace's file).  Used by tests/test_load.py.
 *
 *   load threads T N PATH_A INO_A PATH_B INO_B
 *       T threads, started together, each make N sockets with
 *       msocket(PATH, ...), alternating between the two stacks (and between
 *       AF_INET and AF_INET6), check each and close it.  Prints
 *       "a=SOCKETS b=SOCKETS" (those found on the stack asked for).
 *   load procs P ORPHANS PATH_A INO_A PATH_B INO_B INO_INET6
 *       P processes at once.  Process i makes stack A (i even) or B (i odd)
 *       its AF_INET default with msocket(PATH, AF_INET, SOCK_DEFAULT, 0),
 *       then executes "load worker".  With ORPHANS 1, the odd ones do so in
 *       a child of theirs and end: the workers are then orphans, adopted by
 *       the session's subreaper.  Each worker waits until every process has
 *       started, then checks that socket(AF_INET) is on its stack (the
 *       default kept across execve), socket(AF_INET6) on the namespace
 *       INO_INET6 (the session's: a family it has not set), makes the
 *       other stack its AF_INET default
 *       and checks socket(AF_INET) again.  Prints "ok=WORKERS" (those that
 *       passed every check).
 *
 * Exit status 0 when every call returned a socket on the stack expected,
 * 1 otherwise, with the first failures described on stderr.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define NR_MSOCKET (-5)         /* VUOS's virtual system call */
#define SOCK_DEFAULT 0
#define SIOCGSKNS 0x894C
#define REPORTED 10             /* failures described per process */

struct stack {
	const char *path;
	unsigned long ino;
};

static struct stack stacks[2];
static int sockets_per_thread;
static pthread_barrier_t start;
static int failures;            /* of this process, under `lock` */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static int msocket(const char *path, int domain, int type, int protocol)
{
	return syscall(NR_MSOCKET, path, domain, type, protocol);
}

/* Whether fd is a socket of the namespace whose inode is `want`; closes fd
 * (a negative fd is the failed call's).  Describes a failure as `who`. */
static int on_stack(int fd, unsigned long want, const char *who)
{
	int err = errno, ns = -1, reported;
	struct stat st = { 0 };

	if (fd >= 0) {
		ns = ioctl(fd, SIOCGSKNS);
		err = errno;
		if (ns >= 0 && fstat(ns, &st) < 0)
			err = errno;
		if (ns >= 0)
			close(ns);
		close(fd);
		if (ns >= 0 && st.st_ino == want)
			return 1;
	}
	pthread_mutex_lock(&lock);
	reported = failures++ < REPORTED;
	pthread_mutex_unlock(&lock);
	if (!reported)
		return 0;
	if (fd < 0)
		fprintf(stderr, "%s: no socket: %s\n", who, strerror(err));
	else if (ns < 0)
		fprintf(stderr, "%s: SIOCGSKNS: %s\n", who, strerror(err));
	else
		fprintf(stderr, "%s: namespace %lu, not %lu\n", who, (unsigned long)st.st_ino, want);
	return 0;
}

struct thread {
	pthread_t id;
	int index;
	int found[2];           /* sockets on stack A, B */
};

static void *make_sockets(void *arg)
{
	struct thread *t = arg;
	char who[64];
	int i, s, family;

	pthread_barrier_wait(&start);
	for (i = 0; i < sockets_per_thread; i++) {
		s = (t->index + i) % 2;
		family = i / 2 % 2 ? AF_INET6 : AF_INET;
		snprintf(who, sizeof who, "thread %d socket %d", t->index, i);
		t->found[s] += on_stack(msocket(stacks[s].path, family, SOCK_DGRAM, 0), stacks[s].ino, who);
	}
	return NULL;
}

static int threads(int n)
{
	struct thread *t = calloc(n, sizeof *t);
	int i, err, found[2] = { 0, 0 };

	if (t == NULL || pthread_barrier_init(&start, NULL, n))
		return perror("load"), 1;
	for (i = 0; i < n; i++) {
		t[i].index = i;
		err = pthread_create(&t[i].id, NULL, make_sockets, &t[i]);
		if (err)
			return fprintf(stderr, "load: thread %d: %s\n", i, strerror(err)), 1;
	}
	for (i = 0; i < n; i++) {
		pthread_join(t[i].id, NULL);
		found[0] += t[i].found[0];
		found[1] += t[i].found[1];
	}
	printf("a=%d b=%d\n", found[0], found[1]);
	free(t);
	return failures != 0;
}

static char *number(unsigned long n)
{
	char *s;

	return asprintf(&s, "%lu", n) < 0 ? NULL : s;
}

/* In a new process: make stack `s` the AF_INET default, become a worker
 * (which then switches to the other stack). */
static void start_worker(int s, int barrier, int results, unsigned long inet6)
{
	char *argv[] = { "load", "worker", number(barrier), number(results), number(stacks[s].ino),
			 (char *)stacks[!s].path, number(stacks[!s].ino), number(inet6), NULL };

	if (msocket(stacks[s].path, AF_INET, SOCK_DEFAULT, 0) != 0)
		fprintf(stderr, "load: msocket(%s, SOCK_DEFAULT): %s\n", stacks[s].path, strerror(errno));
	else
		execv("/proc/self/exe", argv);
	_exit(1);
}

static int procs(int n, int orphans, unsigned long inet6)
{
	int barrier[2], results[2], i, status, ok = 0, failed = 0;
	pid_t pid;
	char c;

	if (pipe(barrier) < 0 || pipe(results) < 0 || fcntl(barrier[1], F_SETFD, FD_CLOEXEC) < 0)
		return perror("load"), 1;
	for (i = 0; i < n; i++) {
		pid = fork();
		if (pid < 0) {
			fprintf(stderr, "load: fork %d: %s\n", i, strerror(errno));
			failed = 1;
			break;
		}
		if (pid > 0)
			continue;
		close(results[0]);
		if (orphans && i % 2) {
			pid = fork();
			if (pid != 0)
				_exit(pid < 0);
		}
		start_worker(i % 2, barrier[0], results[1], inet6);
	}
	close(barrier[1]);      /* every worker goes */
	close(results[1]);
	while (read(results[0], &c, 1) == 1)
		ok++;
	while ((pid = wait(&status)) > 0)
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			failed = 1;
	printf("ok=%d\n", ok);
	return failed || ok != n;
}

static int worker(char **argv)
{
	int barrier = atoi(argv[0]), results = atoi(argv[1]), ok = 1;
	unsigned long first = strtoul(argv[2], NULL, 10), inet6 = strtoul(argv[5], NULL, 10);
	const char *other = argv[3];
	char c, who[64];

	if (read(barrier, &c, 1) != 0)
		return 1;
	snprintf(who, sizeof who, "process %d", getpid());
	ok &= on_stack(socket(AF_INET, SOCK_DGRAM, 0), first, who);
	ok &= on_stack(socket(AF_INET6, SOCK_DGRAM, 0), inet6, who);
	if (msocket(other, AF_INET, SOCK_DEFAULT, 0) != 0) {
		fprintf(stderr, "%s: msocket(%s, SOCK_DEFAULT): %s\n", who, other, strerror(errno));
		return 1;
	}
	ok &= on_stack(socket(AF_INET, SOCK_DGRAM, 0), strtoul(argv[4], NULL, 10), who);
	return !(ok && write(results, "k", 1) == 1);
}

int main(int argc, char **argv)
{
	if (argc == 8 && strcmp(argv[1], "worker") == 0)
		return worker(argv + 2);
	if (argc < 8)
		return fprintf(stderr, "load: bad arguments\n"), 2;
	stacks[0] = (struct stack){ argv[4], strtoul(argv[5], NULL, 10) };
	stacks[1] = (struct stack){ argv[6], strtoul(argv[7], NULL, 10) };
	if (argc == 8 && strcmp(argv[1], "threads") == 0) {
		sockets_per_thread = atoi(argv[3]);
		return threads(atoi(argv[2]));
	}
	if (argc == 9 && strcmp(argv[1], "procs") == 0)
		return procs(atoi(argv[2]), atoi(argv[3]), strtoul(argv[8], NULL, 10));
	return fprintf(stderr, "load: bad arguments\n"), 2;
}
