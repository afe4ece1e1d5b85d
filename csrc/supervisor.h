/* SPDX-License-Identifier: GPL-2.0-or-later
 * Copyright (C) 2026 the vupy authors */
/* Kernel mechanics of the vupy supervisor, called from Python through cffi.
 *
 * Everything here is a thin, allocation-free wrapper around one kernel
 * interface: the seccomp filter and its user-notification listener, reading
 * a target's memory, reading a target's credentials, and making a socket in
 * a network namespace with a target's credentials.  No routing decision is
 * taken here: see vupy/_dispatch.py.  Functions return a negative errno on
 * failure so that Python never has to look at the C errno variable.
 */
#ifndef VUPY_SUPERVISOR_H
#define VUPY_SUPERVISOR_H

#include <stdint.h>
#include <sys/types.h>

/* VUPY_NR_MSOCKET, VUPY_NR_CONTROL, VUPY_SOCK_PROBE, VUPY_SOCK_DEFAULT and
 * VUPY_KERNEL_FAMILIES come from vupy/_abi.py, through csrc/build_native.py. */
#ifndef VUPY_NR_MSOCKET
#error "build through csrc/build_native.py: the constants come from vupy/_abi.py"
#endif

/* Between the two cffi markers: what csrc/build_native.py gives cffi's cdef,
 * so the declarations are written once. */
/* cffi: begin */
#define VUPY_MAX_GROUPS 1024      /* supplementary groups carried by a call */

struct vupy_call {                /* one trapped call, as the kernel reported it */
	uint64_t id;
	uint32_t pid;             /* thread id of the caller */
	uint32_t arch;            /* AUDIT_ARCH_* */
	int32_t nr;
	uint64_t args[6];
};

struct vupy_creds {               /* what the kernel looks at when a socket is made */
	uint32_t euid, fsuid, fsgid, egid;
	uint64_t cap_effective;
	uint32_t ngroups;
	uint32_t groups[VUPY_MAX_GROUPS];
};

/* The calls the filter traps, one table (`vupy_traps`, in supervisor.c)
 * from which the filter is written and the Python loop sorts the calls it
 * receives (vupy/_trapped.py). */
#define VUPY_TRAP_SOCKET 1        /* socket(2): routed (vupy/_dispatch.py) */
#define VUPY_TRAP_SOCKETCALL 2    /* i386 socketcall(SYS_SOCKET, args): routed */
#define VUPY_TRAP_MSOCKET 3       /* VUOS's msocket (x86_64 only) */
#define VUPY_TRAP_CONTROL 4       /* vupy's control call (x86_64 only) */
#define VUPY_TRAP_CREDS 5         /* changes the caller's credentials: forgotten, goes on */
#define VUPY_TRAP_EXIT 6          /* a thread's exit: its children adopted, goes on */
#define VUPY_TRAP_PROXY 7         /* a call a proxy descriptor needs served (vupy/_proxy.py) */
#define VUPY_TRAP_REFUSED 8       /* refused (ENOSYS) by the filter itself: never received */
#define VUPY_TRAP_ROOT 9          /* moves a root (chroot, pivot_root): the fast path told, goes on */

#define VUPY_TRAP_PROXY_CALLS 1   /* features of vupy_filter_install */
#define VUPY_TRAP_EXITS 2
#define VUPY_TRAP_ROUTE_CALLS 4   /* connect and bind, for routes (vupy/_router.py) */

#define VUPY_ARG_ANY 0            /* conditions of a trap on one argument */
#define VUPY_ARG_EQ 1
#define VUPY_ARG_NE 2

struct vupy_trap {
	const char *name;         /* as libseccomp names the call; NULL: `nr` */
	int nr;                   /* x86_64 number of a call libseccomp cannot name */
	int kind;                 /* VUPY_TRAP_SOCKET, ... */
	unsigned int feature;     /* 0: always trapped, else only with one of these features */
	int cond;                 /* VUPY_ARG_*: the call is trapped only if */
	int arg;                  /*   argument `arg` (compared on 32 bits, or 64 if wide) */
	int wide;
	uint64_t value;           /*   is or is not `value` */
};
extern const struct vupy_trap vupy_traps[];
extern const int vupy_ntraps;

int vupy_filter_install(int no_new_privs, unsigned int features);
int vupy_getfd(uint32_t pid, int fd);
int vupy_syscall_number(uint32_t arch, const char *name);
int vupy_set_sync_wakeup(int listener);
int vupy_notif_recv(int listener, struct vupy_call *call);
int vupy_notif_id_valid(int listener, uint64_t id);
int vupy_respond(int listener, uint64_t id, int64_t val, int error, int cont);
int vupy_inject(int listener, uint64_t id, int fd, uint32_t newfd_flags);
int vupy_replace_fd(int listener, uint64_t id, int fd, int newfd, uint32_t newfd_flags);
ssize_t vupy_read_mem(uint32_t pid, uint64_t addr, void *buf, size_t len);
ssize_t vupy_write_mem(uint32_t pid, uint64_t addr, const void *buf, size_t len);
ssize_t vupy_read_cstring(uint32_t pid, uint64_t addr, char *buf, size_t size);
int vupy_read_creds(uint32_t tid, struct vupy_creds *creds);
int vupy_self_creds(void);

struct vupy_stat {
	uint64_t dev, ino;
	uint32_t mode, uid, gid;
};

int vupy_stat_as(int dirfd, const char *path, int nofollow, const struct vupy_creds *creds,
		 struct vupy_stat *out);
int vupy_make_socket(int nsfd, uint64_t nsino, int domain, int type, int protocol,
		     const struct vupy_creds *creds);
#define VUPY_SOCKCALL_BIND 1
#define VUPY_SOCKCALL_CONNECT 2
#define VUPY_SOCKCALL_SETSOCKOPT 3
int vupy_sockcall_as(int op, int fd, int level, int name, const void *buf, uint32_t len,
		     const struct vupy_creds *creds);
#define VUPY_OPTION_MAX 40
void vupy_read_options(int fd, int n, const int *levels, const int *names, const int *sizes,
		       unsigned char *out, int *lens);
int vupy_setns(int fd, int nstype);
int vupy_unshare(int flags);
int vupy_syscall4(long nr, long a, long b, long c, long d);

/* The fast path (csrc/fastpath.c): routes learnt by the Python dispatcher,
 * used in C for later socket(2) calls of the same thread, by the Python
 * thread's vupy_serve or by serving threads (one receiving per CPU, with
 * spares). */
#define VUPY_SERVE_TIMEOUT 0      /* results of vupy_serve */
#define VUPY_SERVE_CALL 1
#define VUPY_SERVE_READY 2
#define VUPY_SERVE_HANGUP 3
void vupy_route_learn(uint32_t tid, int domain, int nsfd, uint64_t nsino,
		      const struct vupy_creds *creds);
void vupy_key_route_learn(uint32_t tid, uint64_t dev, uint64_t ino, const char *name, int nsfd,
			  uint64_t nsino, const struct vupy_creds *creds);
void vupy_route_inherit(uint32_t child, uint32_t from);
void vupy_route_forget(uint32_t tid);
void vupy_route_forget_all(void);
void vupy_roots_moved(void);
void vupy_routes_hold(void);
void vupy_routes_release(void);
void vupy_events_taken(void);
int vupy_servers_start(int listener, int events_fd, int n);
void vupy_servers_stop(void);
int vupy_serve(int listener, int events_fd, const int *fds, const short *events, int nfds,
	       int timeout_ms, struct vupy_call *call);
/* cffi: end */

#endif
