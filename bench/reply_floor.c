/* SPDX-License-Identifier: GPL-2.0-or-later
 * Copyright (C) 2026 the vupy authors */
/* The floor of a routed socket(): a minimal seccomp supervisor, no Python,
 * no routing, for bench/reply_floor.py.
 *
 *     reply_floor continue|addfd PROGRAM [ARG...]
 *
 * runs PROGRAM under a filter that traps socket(2) only, and answers each
 * call either with CONTINUE (the kernel makes the socket in the program) or
 * by making the socket itself, in its own namespace, and injecting it with
 * ADDFD+SEND, as vupy does.  The listener asks for SYNC_WAKE_UP, as vupy's.
 * Exits with PROGRAM's status. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS           /* Linux 6.6 */
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS SECCOMP_IOW(4, __u64)
#endif
#ifndef SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP 1UL
#endif
#ifndef SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV  /* Linux 5.19 */
#define SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (1UL << 5)
#endif

static int trap_socket(void)
{
	struct sock_filter code[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_socket, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { sizeof(code) / sizeof(code[0]), code };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -1;
	return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
			    SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
			    &prog);
}

/* One descriptor over a socket, with SCM_RIGHTS (1 byte of data). */
static int pass_fd(int sock, int fd)
{
	char data = 0, control[CMSG_SPACE(sizeof(int))] = { 0 };
	struct iovec iov = { &data, 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = control, .msg_controllen = sizeof(control) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);

	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	return sendmsg(sock, &msg, 0) == 1 ? 0 : -1;
}

static int take_fd(int sock)
{
	char data, control[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { &data, 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = control, .msg_controllen = sizeof(control) };
	struct cmsghdr *c;
	int fd;

	if (recvmsg(sock, &msg, 0) != 1 || (c = CMSG_FIRSTHDR(&msg)) == NULL)
		return -1;
	memcpy(&fd, CMSG_DATA(c), sizeof(int));
	return fd;
}

static void answer(int listener, const struct seccomp_notif *call, int inject)
{
	if (inject) {
		int fd = socket((int)call->data.args[0], (int)call->data.args[1],
				(int)call->data.args[2]);
		if (fd >= 0) {
			struct seccomp_notif_addfd addfd = {
				.id = call->id, .flags = SECCOMP_ADDFD_FLAG_SEND, .srcfd = (__u32)fd,
			};
			ioctl(listener, SECCOMP_IOCTL_NOTIF_ADDFD, &addfd);
			close(fd);
			return;
		}
		struct seccomp_notif_resp failed = { .id = call->id, .error = -errno };
		ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &failed);
		return;
	}
	struct seccomp_notif_resp go_on = { .id = call->id, .flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE };
	ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &go_on);
}

int main(int argc, char **argv)
{
	int pair[2], listener, status;
	int inject = argc > 2 && strcmp(argv[1], "addfd") == 0;

	if (argc < 3 || (!inject && strcmp(argv[1], "continue") != 0)) {
		fprintf(stderr, "usage: reply_floor continue|addfd PROGRAM [ARG...]\n");
		return 2;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0)
		return 1;
	pid_t child = fork();
	if (child == 0) {
		listener = trap_socket();
		if (listener < 0 || pass_fd(pair[1], listener) < 0)
			_exit(125);
		close(listener);
		execvp(argv[2], argv + 2);
		_exit(127);
	}
	listener = take_fd(pair[0]);
	if (listener < 0) {
		waitpid(child, &status, 0);
		return 125;
	}
	ioctl(listener, SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP);
	for (;;) {
		struct pollfd p = { .fd = listener, .events = POLLIN };
		struct seccomp_notif call;

		if (poll(&p, 1, -1) < 0 && errno != EINTR)
			break;
		if (p.revents & POLLIN) {
			memset(&call, 0, sizeof(call));    /* else NOTIF_RECV says EINVAL */
			if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &call) == 0)
				answer(listener, &call, inject);
		} else if (p.revents & (POLLHUP | POLLERR)) {
			break;                              /* the program is gone */
		}
	}
	waitpid(child, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
