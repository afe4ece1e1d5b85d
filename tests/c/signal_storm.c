/* SPDX-License-Identifier: GPL-2.0-or-later
 * Copyright (C) 2026 the vupy authors */
/* socket() and msocket() under a storm of signals: SIGALRM every
 * millisecond (setitimer), its handler installed with or without
 * SA_RESTART.
 *
 *     signal_storm restart|norestart CALLS INODE [PATH]
 *
 * makes CALLS sockets (with msocket(PATH, ...) if PATH is given), checks
 * that each is in the network namespace whose inode is INODE, and prints
 * "signals S made M eintr E wrong W other O". */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#define NR_MSOCKET (-5)         /* VUOS's virtual system call */
#define SIOCGSKNS 0x894C

static volatile sig_atomic_t signals;

static void on_alarm(int sig)
{
	(void)sig;
	signals++;
}

int main(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_alarm;
	sa.sa_flags = strcmp(argv[1], "restart") == 0 ? SA_RESTART : 0;
	sigaction(SIGALRM, &sa, NULL);
	long calls = atol(argv[2]);
	ino_t inode = (ino_t)strtoull(argv[3], NULL, 10);
	const char *path = argc > 4 ? argv[4] : NULL;
	struct itimerval every_ms = { { 0, 1000 }, { 0, 1000 } };
	setitimer(ITIMER_REAL, &every_ms, NULL);
	long made = 0, eintr = 0, wrong = 0, other = 0;
	for (long i = 0; i < calls; i++) {
		int fd = path ? (int)syscall(NR_MSOCKET, path, AF_INET, SOCK_DGRAM, 0)
		              : socket(AF_INET, SOCK_DGRAM, 0);
		if (fd < 0) {
			if (errno == EINTR)
				eintr++;
			else
				other++;
			continue;
		}
		struct stat ns;
		int nsfd = ioctl(fd, SIOCGSKNS);
		if (nsfd < 0 || fstat(nsfd, &ns) < 0 || ns.st_ino != inode)
			wrong++;
		else
			made++;
		if (nsfd >= 0)
			close(nsfd);
		close(fd);
	}
	struct itimerval off = { { 0, 0 }, { 0, 0 } };
	setitimer(ITIMER_REAL, &off, NULL);
	printf("signals %d made %ld eintr %ld wrong %ld other %ld\n", (int)signals, made, eintr, wrong, other);
	return 0;
}
