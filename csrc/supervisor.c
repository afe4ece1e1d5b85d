/* SPDX-License-Identifier: GPL-2.0-or-later
 * Copyright (C) 2026 the vupy authors */
/* Kernel mechanics of the vupy supervisor: see supervisor.h. */
#define _GNU_SOURCE
#include "supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/net.h>
#include <linux/seccomp.h>
#include <linux/sockios.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>

/* Not in Debian 12's kernel headers (added in Linux 6.6). */
#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS SECCOMP_IOW(4, __u64)
#endif
#ifndef SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (1UL << 0)
#endif
#ifndef SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
#define SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (1UL << 5)
#endif

#define MAX_FILTER 4096

/* The number of a system call on an architecture (AUDIT_ARCH_*) as the
 * kernel reports it, or -1. */
int vupy_syscall_number(uint32_t arch, const char *name)
{
	int nr = seccomp_syscall_resolve_name_arch(arch, name);

	if (nr == __NR_SCMP_ERROR)
		return -1;
	if (nr >= 0)
		return nr;
	/* A pseudo-number: libseccomp names i386's socket calls as calls
	 * through socketcall, but Linux 4.3+ also has them as calls of their
	 * own (socket is 359), which its filter traps too. */
	for (int i = 0; i < 1024; i++) {
		char *known = seccomp_syscall_resolve_num_arch(arch, i);
		int same = known != NULL && strcmp(known, name) == 0;
		free(known);
		if (same)
			return i;
	}
	return -1;
}

/* Load libseccomp's program for ctx behind `head`, with a listener: the
 * listener's descriptor, or a negative errno. */
static int load(scmp_filter_ctx ctx, const struct sock_filter *head, size_t nhead,
		int no_new_privs, unsigned int flags)
{
	struct sock_filter prog[MAX_FILTER];
	int memfd, rc;
	ssize_t n;

	memfd = memfd_create("vupy-filter", MFD_CLOEXEC);
	if (memfd < 0)
		return -errno;
	if ((rc = seccomp_export_bpf(ctx, memfd)) < 0)
		goto out;
	if (nhead)
		memcpy(prog, head, nhead * sizeof(*head));
	n = pread(memfd, prog + nhead, sizeof(prog) - nhead * sizeof(*head), 0);
	if (n < 0) {
		rc = -errno;
		goto out;
	}
	if (n % sizeof(struct sock_filter) != 0 ||
	    (size_t)n == sizeof(prog) - nhead * sizeof(*head)) {
		rc = -E2BIG;
		goto out;
	}
	struct sock_fprog fprog = {
		.len = (unsigned short)(nhead + n / sizeof(struct sock_filter)),
		.filter = prog,
	};
	if (no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		rc = -errno;
		goto out;
	}
	rc = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
		     SECCOMP_FILTER_FLAG_NEW_LISTENER | flags, &fprog);
	if (rc < 0)
		rc = -errno;
out:
	close(memfd);
	return rc;
}

#define TRAP(name, kind, feature) { name, 0, kind, feature, VUPY_ARG_ANY, 0, 0, 0 }
#define TRAP_IF(name, kind, feature, cond, arg, wide, value) \
	{ name, 0, kind, feature, cond, arg, wide, value }

/* Every call the filter traps (see supervisor.h).  Numbers libseccomp
 * cannot write (it refuses -1..-99, and msocket is VUOS's -5) are trapped
 * by a head of a few instructions put in front of its program, on x86_64
 * only. */
const struct vupy_trap vupy_traps[] = {
	{ NULL, VUPY_NR_MSOCKET, VUPY_TRAP_MSOCKET, 0, VUPY_ARG_ANY, 0, 0, 0 },
	{ NULL, VUPY_NR_CONTROL, VUPY_TRAP_CONTROL, 0, VUPY_ARG_ANY, 0, 0, 0 },
	/* AF_UNIX is never routed: trapping it would only cost time. */
	TRAP_IF("socket", VUPY_TRAP_SOCKET, 0, VUPY_ARG_NE, 0, 0, AF_UNIX),
	/* i386 socketcall carries its arguments in memory: trap SYS_SOCKET. */
	TRAP_IF("socketcall", VUPY_TRAP_SOCKETCALL, 0, VUPY_ARG_EQ, 0, 0, SYS_SOCKET),
	/* io_uring can make sockets (IORING_OP_SOCKET) with no socket(2) call
	 * for the filter to see: refuse it, as if the kernel had no io_uring,
	 * so programs fall back to the calls vupy routes. */
	TRAP("io_uring_setup", VUPY_TRAP_REFUSED, 0),
	/* The calls that change a thread's credentials without a process
	 * event (see vupy/_procs.py): the supervisor forgets what it knew of
	 * the caller's credentials and lets the call go on. */
	TRAP("capset", VUPY_TRAP_CREDS, 0),
	TRAP("setgroups", VUPY_TRAP_CREDS, 0),
	TRAP("setgroups32", VUPY_TRAP_CREDS, 0),
	TRAP("unshare", VUPY_TRAP_CREDS, 0),
	TRAP("setns", VUPY_TRAP_CREDS, 0),
	/* The calls that move a root that is not the caller's alone: the fast
	 * path stops starting walks of paths from roots it has looked at
	 * (csrc/fastpath.c, root_of); the call goes on. */
	TRAP("chroot", VUPY_TRAP_ROOT, 0),
	TRAP("pivot_root", VUPY_TRAP_ROOT, 0),
	/* Without the process-events connector (unprivileged), vupy learns of
	 * a process's end from its exit: its children, about to be orphaned,
	 * must be given their defaults first (see vupy/_procs.py). */
	TRAP("exit", VUPY_TRAP_EXIT, VUPY_TRAP_EXITS),
	TRAP("exit_group", VUPY_TRAP_EXIT, VUPY_TRAP_EXITS),
	/* The calls a proxy descriptor needs served (see vupy/_proxy.py). */
	TRAP("bind", VUPY_TRAP_PROXY, VUPY_TRAP_PROXY_CALLS | VUPY_TRAP_ROUTE_CALLS),
	/* connect and bind are also where routes choose a socket's stack. */
	TRAP("connect", VUPY_TRAP_PROXY, VUPY_TRAP_PROXY_CALLS | VUPY_TRAP_ROUTE_CALLS),
	TRAP("listen", VUPY_TRAP_PROXY, VUPY_TRAP_PROXY_CALLS),
	TRAP("accept", VUPY_TRAP_PROXY, VUPY_TRAP_PROXY_CALLS),
	TRAP("accept4", VUPY_TRAP_PROXY, VUPY_TRAP_PROXY_CALLS),
	TRAP("getsockname", VUPY_TRAP_PROXY, VUPY_TRAP_PROXY_CALLS),
	TRAP("getpeername", VUPY_TRAP_PROXY, VUPY_TRAP_PROXY_CALLS),
	TRAP("getsockopt", VUPY_TRAP_PROXY, VUPY_TRAP_PROXY_CALLS),
	TRAP("setsockopt", VUPY_TRAP_PROXY, VUPY_TRAP_PROXY_CALLS),
	/* The sends that may give an address are where routes choose each
	 * datagram's stack (see vupy/_span.py). */
	TRAP("sendmsg", VUPY_TRAP_PROXY, VUPY_TRAP_PROXY_CALLS | VUPY_TRAP_ROUTE_CALLS),
	TRAP("recvmsg", VUPY_TRAP_PROXY, VUPY_TRAP_PROXY_CALLS),
	TRAP("sendmmsg", VUPY_TRAP_PROXY, VUPY_TRAP_PROXY_CALLS | VUPY_TRAP_ROUTE_CALLS),
	TRAP("recvmmsg", VUPY_TRAP_PROXY, VUPY_TRAP_PROXY_CALLS),
	/* Without an address, send and receive go straight to the proxy. */
	TRAP_IF("sendto", VUPY_TRAP_PROXY, VUPY_TRAP_PROXY_CALLS | VUPY_TRAP_ROUTE_CALLS, VUPY_ARG_NE, 4, 1, 0),
	TRAP_IF("recvfrom", VUPY_TRAP_PROXY, VUPY_TRAP_PROXY_CALLS, VUPY_ARG_NE, 4, 1, 0),
	/* FIONREAD on a datagram proxy, and glibc's if_nametoindex and
	 * if_indextoname, whose answers come from a userspace stack. */
	TRAP_IF("ioctl", VUPY_TRAP_PROXY, VUPY_TRAP_PROXY_CALLS, VUPY_ARG_EQ, 1, 0, FIONREAD),
	TRAP_IF("ioctl", VUPY_TRAP_PROXY, VUPY_TRAP_PROXY_CALLS, VUPY_ARG_EQ, 1, 0, SIOCGIFINDEX),
	TRAP_IF("ioctl", VUPY_TRAP_PROXY, VUPY_TRAP_PROXY_CALLS, VUPY_ARG_EQ, 1, 0, SIOCGIFNAME),
	/* The rest of what a program reads of an interface by its name (dnsmasq
	 * --bind-interfaces asks SIOCGIFFLAGS): else vupy's namespace answers. */
	TRAP_IF("ioctl", VUPY_TRAP_PROXY, VUPY_TRAP_PROXY_CALLS, VUPY_ARG_EQ, 1, 0, SIOCGIFFLAGS),
	TRAP_IF("ioctl", VUPY_TRAP_PROXY, VUPY_TRAP_PROXY_CALLS, VUPY_ARG_EQ, 1, 0, SIOCGIFMTU),
	TRAP_IF("ioctl", VUPY_TRAP_PROXY, VUPY_TRAP_PROXY_CALLS, VUPY_ARG_EQ, 1, 0, SIOCGIFHWADDR),
	TRAP_IF("ioctl", VUPY_TRAP_PROXY, VUPY_TRAP_PROXY_CALLS, VUPY_ARG_EQ, 1, 0, SIOCGIFADDR),
	TRAP_IF("ioctl", VUPY_TRAP_PROXY, VUPY_TRAP_PROXY_CALLS, VUPY_ARG_EQ, 1, 0, SIOCGIFNETMASK),
};
const int vupy_ntraps = sizeof(vupy_traps) / sizeof(vupy_traps[0]);

static int add_trap(scmp_filter_ctx ctx, const struct vupy_trap *t)
{
	uint32_t action = t->kind == VUPY_TRAP_REFUSED ? SCMP_ACT_ERRNO(ENOSYS) : SCMP_ACT_NOTIFY;
	int nr = seccomp_syscall_resolve_name(t->name);

	if (nr == __NR_SCMP_ERROR)
		return 0;         /* not a call of the native architecture (setgroups32) */
	if (t->cond == VUPY_ARG_ANY)
		return seccomp_rule_add(ctx, action, nr, 0);
	/* As libseccomp's SCMP_A0_32 and SCMP_A0_64 write it. */
	struct scmp_arg_cmp cmp = {
		.arg = (unsigned int)t->arg,
		.op = t->cond == VUPY_ARG_EQ ? SCMP_CMP_EQ : SCMP_CMP_NE,
		.datum_a = t->wide ? t->value : (uint32_t)t->value,
	};
	return seccomp_rule_add_array(ctx, action, nr, 1, &cmp);
}

/* The filter.  libseccomp writes the program from `vupy_traps`:
 * per-architecture sections for x86_64, i386 and x32 (so that an i386
 * socketcall/socket or an x32 socket cannot slip past), and ALLOW for
 * everything else.  The calls it cannot name go in a head of BPF in front
 * of its program.  libseccomp 2.5.4 also cannot ask for
 * WAIT_KILLABLE_RECV, so vupy loads the program itself. */
int vupy_filter_install(int no_new_privs, unsigned int features)
{
	struct sock_filter head[4 + 8];
	size_t n = 0;             /* numbers trapped by the head */
	scmp_filter_ctx ctx;
	int rc;

	ctx = seccomp_init(SCMP_ACT_ALLOW);
	if (!ctx)
		return -ENOMEM;
	if ((rc = seccomp_arch_add(ctx, SCMP_ARCH_X86)) < 0 ||
	    (rc = seccomp_arch_add(ctx, SCMP_ARCH_X32)) < 0)
		goto out;
	for (int i = 0; i < vupy_ntraps; i++) {
		const struct vupy_trap *t = &vupy_traps[i];
		if (t->feature && !(features & t->feature))
			continue;
		if (t->name != NULL) {
			if ((rc = add_trap(ctx, t)) < 0)
				goto out;
		} else if (n == sizeof(head) / sizeof(head[0]) - 4) {
			rc = -E2BIG;
			goto out;
		} else {  /* nr == t->nr ? to the RET : to the next test */
			head[3 + n] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K,
								   (uint32_t)t->nr, 0, 0);
			n++;
		}
	}
	/* arch == x86_64 and nr one of the head's: NOTIFY; else libseccomp's. */
	head[0] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
					       offsetof(struct seccomp_data, arch));
	head[1] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64,
					       0, (uint8_t)(n + 2));
	head[2] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
					       offsetof(struct seccomp_data, nr));
	for (size_t j = 0; j < n; j++) {
		head[3 + j].jt = (uint8_t)(n - 1 - j);
		head[3 + j].jf = j + 1 == n ? 1 : 0;
	}
	head[3 + n] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF);
	rc = load(ctx, head, n ? 4 + n : 0, no_new_privs, SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV);
out:
	seccomp_release(ctx);
	return rc;
}

/* The target and the supervisor usually take turns on one CPU: ask the
 * kernel to wake the supervisor synchronously (Linux 6.6+).  The flag is
 * the ioctl argument itself, not a pointer to it. */
int vupy_set_sync_wakeup(int listener)
{
	if (ioctl(listener, SECCOMP_IOCTL_NOTIF_SET_FLAGS,
		  SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP) < 0)
		return -errno;
	return 0;
}

int vupy_notif_recv(int listener, struct vupy_call *call)
{
	struct seccomp_notif req;

	/* The kernel answers EINVAL unless the buffer is zeroed. */
	memset(&req, 0, sizeof(req));
	if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &req) < 0)
		return -errno;
	call->id = req.id;
	call->pid = req.pid;
	call->arch = req.data.arch;
	call->nr = req.data.nr;
	memcpy(call->args, req.data.args, sizeof(call->args));
	return 0;
}

int vupy_notif_id_valid(int listener, uint64_t id)
{
	if (ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &id) < 0)
		return -errno;
	return 0;
}

int vupy_respond(int listener, uint64_t id, int64_t val, int error, int cont)
{
	struct seccomp_notif_resp resp = {
		.id = id,
		.val = val,
		.error = error ? -error : 0,
		.flags = cont ? SECCOMP_USER_NOTIF_FLAG_CONTINUE : 0,
	};
	if (ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp) < 0)
		return -errno;
	return 0;
}

/* SECCOMP_IOCTL_NOTIF_ADDFD of our `fd` into call `id`'s caller: the new
 * descriptor's number, or -errno. */
static int addfd(int listener, uint64_t id, int fd, uint32_t flags, int newfd, uint32_t newfd_flags)
{
	struct seccomp_notif_addfd add = {
		.id = id,
		.flags = flags,
		.srcfd = (uint32_t)fd,
		.newfd = (uint32_t)newfd,
		.newfd_flags = newfd_flags,
	};
	int rc = ioctl(listener, SECCOMP_IOCTL_NOTIF_ADDFD, &add);
	return rc < 0 ? -errno : rc;
}

/* Put fd into the target's table and complete its call with the new
 * number, atomically (ADDFD_FLAG_SEND, Linux 5.14+); fd is closed.  If the
 * kernel refuses (EMFILE, ...), the call fails with that errno, the
 * caller's to see; ENOENT means the caller is gone, with nothing to answer.
 * Returns the caller's new descriptor, or the negative errno. */
int vupy_inject(int listener, uint64_t id, int fd, uint32_t newfd_flags)
{
	int rc = addfd(listener, id, fd, SECCOMP_ADDFD_FLAG_SEND, 0, newfd_flags);

	close(fd);
	if (rc < 0 && rc != -ENOENT)
		vupy_respond(listener, id, 0, -rc, 0);
	return rc;
}

/* Our `fd` becomes the caller's descriptor `newfd`, in place of what it
 * was (dup2's way: atomically), without answering the call; `fd` stays
 * ours.  The new descriptor's number, or -errno. */
int vupy_replace_fd(int listener, uint64_t id, int fd, int newfd, uint32_t newfd_flags)
{
	return addfd(listener, id, fd, SECCOMP_ADDFD_FLAG_SETFD, newfd, newfd_flags);
}

ssize_t vupy_read_mem(uint32_t pid, uint64_t addr, void *buf, size_t len)
{
	struct iovec local = { buf, len };
	struct iovec remote = { (void *)(uintptr_t)addr, len };
	ssize_t n = process_vm_readv((pid_t)pid, &local, 1, &remote, 1, 0);
	return n < 0 ? -errno : n;
}

ssize_t vupy_write_mem(uint32_t pid, uint64_t addr, const void *buf, size_t len)
{
	struct iovec local = { (void *)buf, len };
	struct iovec remote = { (void *)(uintptr_t)addr, len };
	ssize_t n = process_vm_writev((pid_t)pid, &local, 1, &remote, 1, 0);
	return n < 0 ? -errno : n;
}

/* Read a NUL-terminated string the way the kernel's getname() does: EFAULT
 * if memory before the NUL cannot be read, ENAMETOOLONG if there is no NUL
 * in the first size bytes.  Reads never cross a page boundary, so a string
 * that ends just before an unmapped page is read whole. */
ssize_t vupy_read_cstring(uint32_t pid, uint64_t addr, char *buf, size_t size)
{
	const uint64_t page = 4096;
	size_t got = 0;

	while (got < size) {
		uint64_t at = addr + got;
		size_t chunk = page - (at % page);
		if (chunk > size - got)
			chunk = size - got;
		if (at < addr)      /* wrapped around the address space */
			return -EFAULT;
		ssize_t n = vupy_read_mem(pid, at, buf + got, chunk);
		if (n <= 0)
			return n == 0 || n == -EFAULT || n == -EIO ? -EFAULT : n;
		char *nul = memchr(buf + got, 0, (size_t)n);
		if (nul)
			return nul - buf;
		got += (size_t)n;
	}
	return -ENAMETOOLONG;
}

static int parse_ids(const char *text, const char *key, uint32_t *out, int field)
{
	const char *p = strstr(text, key);
	if (!p)
		return -EIO;
	p += strlen(key);
	for (int i = 0; i <= field; i++) {
		char *end;
		unsigned long v = strtoul(p, &end, 10);
		if (end == p)
			return -EIO;
		*out = (uint32_t)v;
		p = end;
	}
	return 0;
}

/* Credentials of a thread, from /proc/TID/status: the fs ids (what the
 * kernel uses for file access and a socket's owner), the supplementary
 * groups (ICMP datagram sockets check them) and the effective capabilities
 * (raw and packet sockets check them). */
int vupy_read_creds(uint32_t tid, struct vupy_creds *creds)
{
	char path[64], text[32768];  /* room for VUPY_MAX_GROUPS groups */
	ssize_t n;
	int fd, rc;

	snprintf(path, sizeof(path), "/proc/%u/status", tid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, text, sizeof(text) - 1);
	if (n == (ssize_t)sizeof(text) - 1) {   /* cut short: never act on part of it */
		close(fd);
		return -E2BIG;
	}
	rc = n < 0 ? -errno : 0;
	close(fd);
	if (rc < 0)
		return rc;
	text[n] = 0;
	if ((rc = parse_ids(text, "\nUid:", &creds->euid, 1)) < 0 ||
	    (rc = parse_ids(text, "\nUid:", &creds->fsuid, 3)) < 0 ||
	    (rc = parse_ids(text, "\nGid:", &creds->egid, 1)) < 0 ||
	    (rc = parse_ids(text, "\nGid:", &creds->fsgid, 3)) < 0)
		return rc;
	const char *cap = strstr(text, "\nCapEff:");
	if (!cap)
		return -EIO;
	creds->cap_effective = strtoull(cap + 8, NULL, 16);
	const char *g = strstr(text, "\nGroups:");
	if (!g)
		return -EIO;
	g += 8;
	creds->ngroups = 0;
	for (;;) {
		char *end;
		while (*g == ' ' || *g == '\t')
			g++;
		if (*g == '\n' || *g == 0)
			break;
		unsigned long v = strtoul(g, &end, 10);
		if (end == g)
			return -EIO;
		if (creds->ngroups == VUPY_MAX_GROUPS)
			return -E2BIG;
		creds->groups[creds->ngroups++] = (uint32_t)v;
		g = end;
	}
	return 0;
}

static struct vupy_creds self;
static struct __user_cap_data_struct self_caps[2];

/* Remember the supervisor's own credentials, to put them back after making
 * a socket with a caller's. */
int vupy_self_creds(void)
{
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	int rc = vupy_read_creds((uint32_t)syscall(SYS_gettid), &self);
	if (rc < 0)
		return rc;
	if (syscall(SYS_capget, &hdr, self_caps) < 0)
		return -errno;
	return 0;
}

static int same_creds(const struct vupy_creds *a, const struct vupy_creds *b)
{
	return a->fsuid == b->fsuid && a->fsgid == b->fsgid && a->egid == b->egid &&
	       a->cap_effective == b->cap_effective && a->ngroups == b->ngroups &&
	       memcmp(a->groups, b->groups, a->ngroups * sizeof(a->groups[0])) == 0;
}

/* Credentials are per thread in the kernel, but glibc's setgroups and
 * setfsuid wrappers would change every thread of the supervisor: use the
 * raw system calls, which change only the calling thread. */
static int set_caps(uint64_t effective)
{
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct caps[2];

	memcpy(caps, self_caps, sizeof(caps));
	caps[0].effective = (uint32_t)effective & self_caps[0].permitted;
	caps[1].effective = (uint32_t)(effective >> 32) & self_caps[1].permitted;
	return syscall(SYS_capset, &hdr, caps) < 0 ? -errno : 0;
}

static int set_ids(const struct vupy_creds *c)
{
	gid_t groups[VUPY_MAX_GROUPS];

	for (uint32_t i = 0; i < c->ngroups; i++)
		groups[i] = c->groups[i];
	if (syscall(SYS_setgroups, c->ngroups, groups) < 0)
		return -errno;
	/* The effective gid too: ICMP datagram sockets check it against
	 * net.ipv4.ping_group_range.  setresgid sets the fs gid as well, so
	 * setfsgid comes after it. */
	if (syscall(SYS_setresgid, -1, c->egid, -1) < 0)
		return -errno;
	syscall(SYS_setfsgid, c->fsgid);
	syscall(SYS_setfsuid, c->fsuid);
	return 0;
}

/* Take on a caller's identity: ids first (while this thread still has
 * CAP_SETUID/CAP_SETGID), then its effective capabilities. */
static int put_on(const struct vupy_creds *c)
{
	int rc = set_ids(c);
	return rc < 0 ? rc : set_caps(c->cap_effective);
}

/* And back: capabilities first, which the ids need. */
static int take_off(void)
{
	uint64_t eff = ((uint64_t)self_caps[1].effective << 32) | self_caps[0].effective;
	int rc = set_caps(eff);
	if (rc == 0)
		rc = set_ids(&self);
	if (rc == 0)   /* setfsuid() adjusts the effective set: put it back exactly */
		rc = set_caps(eff);
	return rc;
}

/* Become the caller (if it is not who we are already): 1 if this thread
 * switched, 0 if it did not need to, a negative errno (and back to ourselves)
 * if it could not. */
static int become(const struct vupy_creds *c)
{
	if (same_creds(c, &self))
		return 0;
	int rc = put_on(c);
	if (rc < 0) {
		if (take_off() < 0)
			abort();
		return rc;
	}
	return 1;
}

static void unbecome(int switched)
{
	/* A supervisor thread left with a caller's identity must not go on. */
	if (switched && take_off() < 0)
		abort();
}

/* fstatat(2) with a caller's credentials, so that the kernel checks search
 * permission on every directory of the path as it would for the caller;
 * lstat's view of a final symbolic link if nofollow. */
int vupy_stat_as(int dirfd, const char *path, int nofollow, const struct vupy_creds *creds,
		 struct vupy_stat *out)
{
	struct stat st;
	int switched = become(creds), rc = 0;

	if (switched < 0)
		return switched;
	if (fstatat(dirfd, path, &st, nofollow ? AT_SYMLINK_NOFOLLOW : 0) < 0)
		rc = -errno;
	unbecome(switched);
	if (rc < 0)
		return rc;
	out->dev = st.st_dev;
	out->ino = st.st_ino;
	out->mode = st.st_mode;
	out->uid = st.st_uid;
	out->gid = st.st_gid;
	return 0;
}

static __thread uint64_t current_ns;   /* netns inode this thread is in, 0 = unknown */

/* Make a socket in the network namespace nsfd (inode nsino, or 0 to look
 * it up), with the caller's credentials so that
 * the kernel's own checks (CAP_NET_RAW for raw and packet sockets, the
 * ping group range) and the socket's owner are those of the caller.  The
 * thread stays in the namespace afterwards: a session mostly uses one stack,
 * and a setns() saved is ~0.8 us per call. */
int vupy_make_socket(int nsfd, uint64_t nsino, int domain, int type, int protocol,
		     const struct vupy_creds *creds)
{
	int fd, switched;
	struct stat st;

	if (current_ns == 0 && stat("/proc/thread-self/ns/net", &st) == 0)
		current_ns = st.st_ino;
	if (nsino == 0 && fstat(nsfd, &st) == 0)
		nsino = st.st_ino;
	/* setns() even into the namespace the thread is in needs
	 * CAP_SYS_ADMIN: an unprivileged vupy serves its own one without. */
	if (nsino == 0 || nsino != current_ns) {
		if (setns(nsfd, CLONE_NEWNET) < 0)
			return -errno;
		current_ns = nsino;
	}
	switched = become(creds);
	if (switched < 0)
		return switched;
	fd = socket(domain, type | SOCK_CLOEXEC, protocol);
	if (fd < 0)
		fd = -errno;
	unbecome(switched);
	return fd;
}

/* bind, connect or setsockopt on our `fd` with the caller's credentials
 * (`creds`; NULL: our own), as the caller's own call would be made: for
 * the router (vupy/_router.py), which rebuilds a socket on another stack.
 * 0 or -errno. */
int vupy_sockcall_as(int op, int fd, int level, int name, const void *buf, uint32_t len,
		     const struct vupy_creds *creds)
{
	int rc, switched = creds ? become(creds) : 0;

	if (switched < 0)
		return switched;
	if (op == VUPY_SOCKCALL_BIND)
		rc = bind(fd, buf, len);
	else if (op == VUPY_SOCKCALL_CONNECT)
		rc = connect(fd, buf, len);
	else if (op == VUPY_SOCKCALL_SETSOCKOPT)
		rc = setsockopt(fd, level, name, buf, len);
	else
		rc = -1, errno = EINVAL;
	rc = rc < 0 ? -errno : 0;
	unbecome(switched);
	return rc;
}

/* getsockopt of socket `fd` for each of the `n` options (levels[i],
 * names[i]), at most sizes[i] <= VUPY_OPTION_MAX bytes, into
 * out + i * VUPY_OPTION_MAX; lens[i] is the length read, or -errno.  One
 * call for the router's many options (vupy/_router.py). */
void vupy_read_options(int fd, int n, const int *levels, const int *names, const int *sizes,
		       unsigned char *out, int *lens)
{
	memset(out, 0, (size_t)n * VUPY_OPTION_MAX);   /* two reads compare whole */
	for (int i = 0; i < n; i++) {
		socklen_t len = (socklen_t)sizes[i];
		if (len > VUPY_OPTION_MAX)
			len = VUPY_OPTION_MAX;
		lens[i] = getsockopt(fd, levels[i], names[i], out + (size_t)i * VUPY_OPTION_MAX, &len) < 0
			  ? -errno : (int)len;
	}
}

int vupy_setns(int fd, int nstype)
{
	current_ns = 0;
	return setns(fd, nstype) < 0 ? -errno : 0;
}

int vupy_unshare(int flags)
{
	return unshare(flags) < 0 ? -errno : 0;
}

/* For the wrappers: a raw system call, with the error as a negative errno. */
int vupy_syscall4(long nr, long a, long b, long c, long d)
{
	long rc = syscall(nr, a, b, c, d);
	return rc < 0 ? -errno : (int)rc;
}

/* A copy of descriptor fd of process pid (pidfd_getfd, Linux 5.6+). */
int vupy_getfd(uint32_t pid, int fd)
{
	int pidfd = syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0)
		return -errno;
	int copy = syscall(SYS_pidfd_getfd, pidfd, fd, 0);
	int err = errno;
	close(pidfd);
	return copy < 0 ? -err : copy;
}
