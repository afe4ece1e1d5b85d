/* SPDX-License-Identifier: GPL-2.0-or-later
 * Copyright (C) 2026 the vupy authors */
/* libmsocket: msocket(3) as a C function.  See msocket.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "msocket.h"

int msocket(const char *path, int domain, int type, int protocol)
{
	long fd = syscall(__NR_msocket, path, domain, type, protocol);

	/* No supervisor answers the virtual syscall: the kernel says ENOSYS.
	 * Then the default stack is simply the kernel's own. */
	if (fd < 0 && errno == ENOSYS && path == NULL)
		return socket(domain, type, protocol);
	return (int)fd;
}
