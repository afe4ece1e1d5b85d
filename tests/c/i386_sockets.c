/* SPDX-License-Identifier: GPL-2.0-or-later
 * Copyright (C) 2026 the vupy authors */
/* Built with gcc -m32 -static: every way an i386 program can make a socket,
 * each printing the inode of the socket's network namespace (SIOCGSKNS) or
 * the errno.  Used by tests/test_i386.py to show none of them escapes. */
#include <errno.h>
#include <linux/net.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SIOCGSKNS
#define SIOCGSKNS 0x894C
#endif

static void report(const char *how, int fd)
{
	struct stat st;
	int ns;

	if (fd < 0) {
		printf("%s err:%d\n", how, errno);
		return;
	}
	ns = ioctl(fd, SIOCGSKNS);
	if (ns < 0 || fstat(ns, &st) < 0) {
		printf("%s noinfo:%d\n", how, errno);
		return;
	}
	printf("%s ns:%lu\n", how, (unsigned long)st.st_ino);
}

int main(void)
{
	unsigned long args[3] = { AF_INET, SOCK_DGRAM, 0 };

	report("libc", socket(AF_INET, SOCK_DGRAM, 0));
	report("socket", syscall(359, AF_INET, SOCK_DGRAM, 0));
	report("socketcall", syscall(SYS_socketcall, SYS_SOCKET, args));
	return 0;
}
