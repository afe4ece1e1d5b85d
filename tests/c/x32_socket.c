/* SPDX-License-Identifier: GPL-2.0-or-later
 * Copyright (C) 2026 the vupy authors */
/* socket(2) by its x32 number (41 | __X32_SYSCALL_BIT), from x86-64 code:
 * what an x32 program would do.  Prints "ns:INODE" (the socket's network
 * namespace) or the errno's number. */
#include <errno.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define X32_SYSCALL_BIT 0x40000000L
#define SIOCGSKNS 0x894C

int main(void)
{
	long fd = syscall(X32_SYSCALL_BIT | SYS_socket, AF_INET, SOCK_DGRAM, 0);
	if (fd < 0) {
		printf("errno %d\n", errno);
		return 0;
	}
	struct stat ns;
	int nsfd = ioctl((int)fd, SIOCGSKNS);
	if (nsfd < 0 || fstat(nsfd, &ns) < 0)
		return 1;
	printf("ns:%lu\n", (unsigned long)ns.st_ino);
	return 0;
}
