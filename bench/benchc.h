/* SPDX-License-Identifier: GPL-2.0-or-later
 * Copyright (C) 2026 the vupy authors */
/* What the C programs of bench/ (loops.c, cpeer.c) share: failing, the
 * clock, and the checks of where a run ran (a socket's network namespace,
 * the Seccomp: mode).  Static functions: each program is one file,
 * compiled by bench/benchlib.py. */
#ifndef VUPY_BENCHC_H
#define VUPY_BENCHC_H

#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef SIOCGSKNS
#define SIOCGSKNS 0x894C
#endif

/* Ends the program: `what` failed, with errno's message. */
static void die(const char *what)
{
	fprintf(stderr, "%s: %s: %s\n", program_invocation_short_name, what, strerror(errno));
	exit(1);
}

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* The network namespace inode of socket `fd` (0 if the kernel will not say). */
static unsigned long long netns_of(int fd)
{
	unsigned long long inode = 0;
	int nsfd = ioctl(fd, SIOCGSKNS);
	if (nsfd >= 0) {
		struct stat st;
		if (fstat(nsfd, &st) == 0)
			inode = (unsigned long long)st.st_ino;
		close(nsfd);
	}
	return inode;
}

/* The Seccomp: field of /proc/self/status (2: under a filter). */
static int seccomp_mode(void)
{
	char line[256];
	int mode = -1;
	FILE *f = fopen("/proc/self/status", "r");
	if (!f)
		die("/proc/self/status");
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "Seccomp: %d", &mode) == 1)
			break;
	fclose(f);
	return mode;
}

#endif
