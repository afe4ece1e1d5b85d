/* SPDX-License-Identifier: GPL-2.0-or-later
 * Copyright (C) 2026 the vupy authors */
/* acceptor: the server of bench/busy_servers.py's connections.
 *
 *     acceptor PORT WORKERS
 *
 * Listens on 0.0.0.0:PORT (backlog 4096), prints "ready", and serves with
 * WORKERS processes sharing the listening socket: each accepts a
 * connection, sends one byte and closes it, until killed.  It closes first,
 * so TIME_WAIT is the server's and the clients' ports are not used up.
 * Compiled by bench/benchlib.py into a temporary directory; not installed.
 */
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

static void die(const char *what)
{
	perror(what);
	exit(1);
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: acceptor PORT WORKERS\n");
		return 2;
	}
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[1])) };
	int one = 1, workers = atoi(argv[2]);
	int s = socket(AF_INET, SOCK_STREAM, 0);

	if (s < 0)
		die("socket");
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(s, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(s, 4096) < 0)
		die("bind or listen");
	printf("ready\n");
	fflush(stdout);
	for (int i = 1; i < workers; i++) {
		pid_t pid = fork();
		if (pid < 0)
			die("fork");
		if (pid == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);      /* ends with the first */
			break;
		}
	}
	for (;;) {
		int c = accept(s, NULL, NULL);
		if (c < 0)
			continue;
		if (write(c, "x", 1) != 1) {
			/* the client went away: nothing to do */
		}
		close(c);
	}
}
