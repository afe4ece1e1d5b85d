/* SPDX-License-Identifier: GPL-2.0-or-later
 * Copyright (C) 2026 the vupy authors */
/* The fast path of the notification loop: socket(2) calls that the Python
 * dispatcher has already routed once for the same thread are served here,
 * in C, without going back to Python.
 *
 * The Python dispatcher decides; this file only repeats a decision.  After
 * the dispatcher made a socket for thread T on a kernel stack that T's
 * default for the family names (vupy/_notify.py, Supervisor._learn), it
 * records the route: (T, family) -> the stack's namespace descriptor, and
 * T's credentials.  vupy_serve() receives each notification and, if it is
 * socket(2) (or msocket with a NULL path) of x86-64 code from a thread
 * with a route for the family, makes the socket in that namespace with
 * those credentials and injects it (ADDFD+SEND), as the dispatcher would.
 * Everything else goes back to Python.
 *
 * msocket with a path is repeated the same way, per thread and per stack
 * *key* (vupy/_paths.py): after the dispatcher made a socket for T on the
 * mounted kernel stack that T's absolute PATH names, it records (T, the
 * key of PATH: the device and inode of its directory and its last name) ->
 * the stack's namespace.  Here the key is found anew for each call, as the
 * dispatcher finds it (a stat of "DIR/." from T's root, with T's
 * credentials, so search permission is checked and a changed directory is
 * seen), and only a key recorded for T is served; any other path
 * (relative, under /proc, ending in ".", "..", "/", or unknown) goes to
 * Python.  T's root is looked at once per route (root_of): where it is
 * vupy's own, walks start from a descriptor of it instead of going
 * through /proc/T/root, which costs twice as much.
 *
 * A route stays true only while the dispatcher's view does, so:
 *  - the dispatcher forgets T's routes whenever it forgets T's credentials
 *    or T ends (process events), and every route when a default changes,
 *    a stack is mounted or unmounted, or a stack is closed; T's routes by
 *    key belong to its generation of routes, which a new thread with T's
 *    id, or T with new credentials, does not have;
 *  - a call is served here only if no process event is waiting after it
 *    was received: the event that would invalidate a route (T's end before
 *    its tid was reused, T's exec or setuid) always comes before the
 *    call, so it is waiting, and the call goes to Python, which takes the
 *    events in first (or, in a serving thread, waits until Python has
 *    taken them in: drained_since);
 *  - a new thread's routes are copied from the thread that made it while
 *    its fork event is taken in (vupy_route_inherit), and serve it only
 *    once its own credentials are found to be the copied ones.
 * Routes are learnt only in sessions with process events and no trace.
 *
 * Serving threads.  With vupy_servers_start(), threads (one receiving per
 * CPU that the session may use, with SPARES spare ones each; not pinned:
 * pinned ones were measured slower) receive the notifications (the kernel hands each to one receiver; with
 * SYNC_WAKE_UP a waiting one is woken on the caller's CPU, so the call is
 * mostly served where it was made) and serve those a route says how to
 * serve, in parallel.
 * The others are queued for the Python thread, whose vupy_serve() then
 * waits on the queue instead of the listener.  The routes are shared: the
 * servers read them under a read lock, from the check for waiting
 * process events to the injection; they change only under the write lock
 * (learn and forget take it, and the Python thread holds it around taking
 * in the process events, vupy_routes_hold), so a server never serves from
 * a route that the events it saw no sign of have undone, nor with a
 * stack's descriptor that was closed (routes are forgotten first).
 */
#define _GNU_SOURCE
#include "supervisor.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/audit.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#define ROUTE_SLOTS 1024          /* threads remembered, by tid modulo */
#define KEY_SLOTS 1024            /* (thread, key) pairs remembered, by hash */
#define NAME_SIZE 256             /* a path's last name, NUL included (NAME_MAX + 1) */

#define ROOT_UNKNOWN 0            /* a thread's root: not looked at yet */
#define ROOT_SESSION 1            /*   vupy's own: walks start at session_root */
#define ROOT_OTHER 2              /*   another: walks go through /proc/TID/root */

/* The families of kernel stacks (vupy/_abi.py KERNEL_FAMILIES). */
static const int families[] = { VUPY_KERNEL_FAMILIES };
#define NFAMILIES (sizeof(families) / sizeof(families[0]))

struct route {
	uint32_t tid;             /* 0: a free slot */
	uint32_t generation;      /* what routes by key must have been learnt in */
	int inherited;            /* copied at a fork: `creds` not yet the thread's own */
	int root;                 /* ROOT_*, for paths */
	int nsfd[NFAMILIES];      /* -1: no route for the family */
	uint64_t nsino[NFAMILIES];
	struct vupy_creds creds;
};

static struct route routes[ROUTE_SLOTS];
static uint32_t generations;

struct key_route {
	uint32_t tid, generation; /* the thread's, when learnt */
	uint64_t dev, ino;        /* the key: the directory ... */
	char name[NAME_SIZE];     /* ... and the name in it */
	int nsfd;
	uint64_t nsino;
};

static struct key_route key_routes[KEY_SLOTS];

/* vupy's root, where the walks of threads with the same root start (its
 * mount and inode, which name it while the descriptor holds it), unless a
 * chroot or pivot_root was seen (vupy_roots_moved): then no route's look
 * at its thread's root is trusted any more. */
static int session_root = -1;
static struct statx session_root_id;
static int roots_moved;

/* Writers first: a steady stream of served calls must not keep the
 * Python thread from taking in events. */
static pthread_rwlock_t routes_lock;
static pthread_once_t routes_made = PTHREAD_ONCE_INIT;
static __thread int holding;      /* this thread's depth of vupy_routes_hold */

#define ROOT_ID (STATX_INO | STATX_MNT_ID)

static void make_routes(void)
{
	pthread_rwlockattr_t attr;

	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&routes_lock, &attr);
	pthread_rwlockattr_destroy(&attr);
	session_root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (session_root >= 0 && (statx(session_root, "", AT_EMPTY_PATH, ROOT_ID, &session_root_id) < 0
				  || (session_root_id.stx_mask & ROOT_ID) != ROOT_ID)) {
		close(session_root);
		session_root = -1;
	}
}

/* The write lock on the routes; a thread may take it again while it holds
 * it (forgetting while taking in events, say). */
void vupy_routes_hold(void)
{
	pthread_once(&routes_made, make_routes);
	if (holding++ == 0)
		pthread_rwlock_wrlock(&routes_lock);
}

void vupy_routes_release(void)
{
	if (--holding == 0)
		pthread_rwlock_unlock(&routes_lock);
}

static int family_index(int domain)
{
	for (unsigned i = 0; i < NFAMILIES; i++)
		if (families[i] == domain)
			return (int)i;
	return -1;
}

/* Thread tid's slot, begun anew (no routes, a new generation) unless it
 * is tid's already with the same credentials. */
static struct route *slot(uint32_t tid, const struct vupy_creds *creds)
{
	struct route *r = &routes[tid % ROUTE_SLOTS];

	if (r->tid != tid || r->inherited || memcmp(&r->creds, creds, sizeof(*creds)) != 0) {
		r->tid = tid;
		r->generation = ++generations;
		r->inherited = 0;
		r->root = ROOT_UNKNOWN;
		for (unsigned j = 0; j < NFAMILIES; j++)
			r->nsfd[j] = -1;
		r->creds = *creds;
	}
	return r;
}

void vupy_route_learn(uint32_t tid, int domain, int nsfd, uint64_t nsino,
		      const struct vupy_creds *creds)
{
	int i = family_index(domain);

	if (i < 0 || tid == 0)
		return;
	vupy_routes_hold();
	struct route *r = slot(tid, creds);
	r->nsfd[i] = nsfd;
	r->nsino[i] = nsino;
	vupy_routes_release();
}

static struct key_route *key_slot(uint32_t tid, uint64_t dev, uint64_t ino, const char *name)
{
	uint64_t h = (uint64_t)tid * 0x9E3779B97F4A7C15ULL ^ dev * 0xC2B2AE3D27D4EB4FULL ^ ino;

	for (const unsigned char *c = (const unsigned char *)name; *c; c++)
		h = (h ^ *c) * 0x100000001B3ULL;
	return &key_routes[h % KEY_SLOTS];
}

void vupy_key_route_learn(uint32_t tid, uint64_t dev, uint64_t ino, const char *name, int nsfd,
			  uint64_t nsino, const struct vupy_creds *creds)
{
	if (tid == 0 || strlen(name) >= NAME_SIZE)
		return;
	vupy_routes_hold();
	struct route *r = slot(tid, creds);
	struct key_route *k = key_slot(tid, dev, ino, name);
	*k = (struct key_route){ .tid = tid, .generation = r->generation, .dev = dev, .ino = ino,
				 .nsfd = nsfd, .nsino = nsino };
	strcpy(k->name, name);
	vupy_routes_release();
}

/* Thread `child`, just made (a process event said so), takes the routes
 * by family of thread `from`: the thread that forked it, or the leader of
 * the process it is a thread of.  Its process's defaults are a copy of
 * from's process's (or the same), as the dispatcher's process table has
 * them; its credentials are checked against from's at its first call
 * (CLONE_NEWUSER, say, gives it others).  Called while the process
 * events are taken in, so in the order of the events. */
void vupy_route_inherit(uint32_t child, uint32_t from)
{
	const struct route *r = &routes[from % ROUTE_SLOTS];
	struct route *c = &routes[child % ROUTE_SLOTS];

	vupy_routes_hold();
	if (child != 0 && child != from && r->tid == from) {
		if (c != r)
			*c = *r;
		c->tid = child;
		c->generation = ++generations;
		c->inherited = 1;
		c->root = ROOT_UNKNOWN;   /* CLONE_NEWNS gives it another */
	}
	vupy_routes_release();
}

void vupy_route_forget(uint32_t tid)
{
	struct route *r = &routes[tid % ROUTE_SLOTS];

	vupy_routes_hold();
	if (r->tid == tid)
		r->tid = 0;
	vupy_routes_release();
}

void vupy_route_forget_all(void)
{
	vupy_routes_hold();
	for (unsigned i = 0; i < ROUTE_SLOTS; i++)
		routes[i].tid = 0;
	for (unsigned i = 0; i < KEY_SLOTS; i++)
		key_routes[i].tid = 0;
	vupy_routes_release();
}

/* A chroot or pivot_root is about to be made in the session (a trapped
 * call, vupy/_notify.py): from now on every walk of a path goes through
 * /proc/TID/root.  For good: the call may take effect after the thread
 * that makes it, or a thread sharing its root, has been looked at again. */
void vupy_roots_moved(void)
{
	vupy_routes_hold();
	roots_moved = 1;
	vupy_routes_release();
}

static int readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return fd >= 0 && poll(&p, 1, 0) > 0;
}

/* Where the walk of an absolute path of thread r->tid starts: vupy's root
 * if the thread's is that very directory on that very mount, else -1
 * (through /proc/TID/root).  Looked at once per route: a root changes only
 * by the thread's own unshare or setns, which forget its routes, or by a
 * chroot or pivot_root (vupy_roots_moved). */
static int root_of(struct route *r)
{
	char proc[32];
	struct statx its;

	if (roots_moved || session_root < 0)
		return -1;
	if (r->root == ROOT_UNKNOWN) {
		snprintf(proc, sizeof(proc), "/proc/%u/root", r->tid);
		r->root = statx(AT_FDCWD, proc, 0, ROOT_ID, &its) == 0
			  && (its.stx_mask & ROOT_ID) == ROOT_ID
			  && its.stx_mnt_id == session_root_id.stx_mnt_id
			  && its.stx_dev_major == session_root_id.stx_dev_major
			  && its.stx_dev_minor == session_root_id.stx_dev_minor
			  && its.stx_ino == session_root_id.stx_ino ? ROOT_SESSION : ROOT_OTHER;
	}
	return r->root == ROOT_SESSION ? session_root : -1;
}

/* The namespace (nsfd, and its inode in *nsino) of the stack that the
 * absolute path at `addr` names for thread r->tid, from a route by key;
 * -1 if there is none or the path is not one served here. */
static int key_route(struct route *r, uint64_t addr, uint64_t *nsino)
{
	char path[PATH_MAX], dir[PATH_MAX];
	const char *relative, *last, *name;
	struct vupy_stat st;
	int length, room, root;

	if (vupy_read_cstring(r->tid, addr, path, sizeof(path)) < 0 || path[0] != '/')
		return -1;
	for (relative = path; *relative == '/'; relative++)
		;
	if (!strncmp(relative, "proc", 4) && (relative[4] == '/' || !relative[4]))
		return -1;              /* /proc/self names the caller: Python's */
	last = strrchr(relative, '/');
	name = last ? last + 1 : relative;
	if (!*name || !strcmp(name, ".") || !strcmp(name, "..") || strlen(name) >= NAME_SIZE)
		return -1;
	/* "DIR/." from the caller's root (DIR "." for a name in the root
	 * itself), as _paths.Resolver._key, so that search permission is
	 * checked; in one walk (a path too long for it goes to Python) */
	length = last ? (int)(last - relative) : 1;
	root = root_of(r);
	if (root >= 0)
		room = snprintf(dir, sizeof(dir), "%.*s/.", length, last ? relative : ".");
	else
		room = snprintf(dir, sizeof(dir), "/proc/%u/root/%.*s/.", r->tid, length,
				last ? relative : ".");
	if (room < 0 || room >= (int)sizeof(dir)
	    || vupy_stat_as(root >= 0 ? root : AT_FDCWD, dir, 0, &r->creds, &st) < 0)
		return -1;
	const struct key_route *k = key_slot(r->tid, st.dev, st.ino, name);
	if (k->tid != r->tid || k->generation != r->generation || k->dev != st.dev
	    || k->ino != st.ino || strcmp(k->name, name) != 0)
		return -1;
	*nsino = k->nsino;
	return k->nsfd;
}

/* Whether an inherited route's credentials are its thread's own (read as
 * the dispatcher reads them); if so, they are from now on.  Under the read
 * lock: only the thread's own calls, one at a time, get past its tid. */
static int own_creds(struct route *r)
{
	struct vupy_creds creds;

	memset(&creds, 0, sizeof(creds));
	if (vupy_read_creds(r->tid, &creds) < 0 || memcmp(&creds, &r->creds, sizeof(creds)) != 0)
		return 0;
	__atomic_store_n(&r->inherited, 0, __ATOMIC_RELAXED);
	return 1;
}

#define FAST_PYTHON 0             /* results of serve_fast: go to Python */
#define FAST_SERVED 1
#define FAST_EVENTS 2             /* not served while process events wait */

/* Serve `call` if a route says how.  Unless no process event is waiting
 * on events_fd (-1: none that can undo the route: see drained_since),
 * FAST_EVENTS.  Under the read lock on the routes (serve_routed). */
static int serve_fast(int listener, int events_fd, const struct vupy_call *call)
{
	struct route *r = &routes[call->pid % ROUTE_SLOTS];
	int domain, type, protocol, i, fd, nsfd;
	uint64_t nsino;

	if (call->arch != AUDIT_ARCH_X86_64)
		return FAST_PYTHON;
	if (call->nr == __NR_socket) {     /* built for x86_64, as the call */
		domain = (int)call->args[0];
		type = (int)call->args[1];
		protocol = (int)call->args[2];
	} else if (call->nr == VUPY_NR_MSOCKET) {
		domain = (int)call->args[1];
		type = (int)call->args[2];
		protocol = (int)call->args[3];
		if (type == VUPY_SOCK_DEFAULT)    /* a change of default */
			return FAST_PYTHON;
	} else {
		return FAST_PYTHON;
	}
	i = family_index(domain);
	if (type == VUPY_SOCK_PROBE || i < 0)
		return FAST_PYTHON;
	/* Before the route: the events may undo it, or give it (a fork). */
	if (readable(events_fd))
		return FAST_EVENTS;
	if (r->tid != call->pid || (r->inherited && !own_creds(r)))
		return FAST_PYTHON;
	if (call->nr == VUPY_NR_MSOCKET && call->args[0] != 0) {
		nsfd = key_route(r, call->args[0], &nsino);
	} else {
		nsfd = r->nsfd[i];
		nsino = r->nsino[i];
	}
	if (nsfd < 0)
		return FAST_PYTHON;
	fd = vupy_make_socket(nsfd, nsino, domain, type & ~SOCK_CLOEXEC, protocol, &r->creds);
	if (fd < 0) {
		vupy_respond(listener, call->id, 0, -fd, 0);
		return FAST_SERVED;
	}
	vupy_inject(listener, call->id, fd, (type & SOCK_CLOEXEC) ? O_CLOEXEC : 0);
	return FAST_SERVED;
}

/* The process events the Python thread has taken in, as a count of its
 * drains (vupy_events_taken), for serving threads to wait on. */
static pthread_mutex_t drain_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t drained = PTHREAD_COND_INITIALIZER;
static uint64_t drains;

/* serve_fast under the read lock on the routes; with FAST_EVENTS, the
 * count of drains then in *seen. */
static int serve_routed(int listener, int events_fd, const struct vupy_call *call, uint64_t *seen)
{
	int served;

	pthread_once(&routes_made, make_routes);
	pthread_rwlock_rdlock(&routes_lock);
	served = serve_fast(listener, events_fd, call);
	if (served == FAST_EVENTS) {
		pthread_mutex_lock(&drain_mutex);
		*seen = drains;
		pthread_mutex_unlock(&drain_mutex);
	}
	pthread_rwlock_unlock(&routes_lock);
	return served;
}

/* The Python thread has taken in every process event that was waiting
 * when it began (under the write lock on the routes). */
void vupy_events_taken(void)
{
	pthread_mutex_lock(&drain_mutex);
	drains++;
	pthread_cond_broadcast(&drained);
	pthread_mutex_unlock(&drain_mutex);
}

/* The serving threads, and the queue of the calls they leave to Python. */
struct waiting {
	struct waiting *next;
	struct vupy_call call;
};

static struct {
	int listener;
	int events_fd;
	int ready;                /* eventfd (semaphore): one count per queued call, or error */
	int stopping;             /* vupy_servers_stop: end */
	int error;                /* a server's unexpected errno, for the Python thread */
	int started, running;     /* threads started, and not ended yet */
	pthread_t threads[CPU_SETSIZE];
	pthread_mutex_t mutex;    /* over the queue, `error` and `running` */
	struct waiting *head, **tail;
	int receivers;            /* threads meant to be receiving (one per CPU) */
	int receiving, parked;    /* threads in NOTIF_RECV (or on their way), and spare */
	pthread_mutex_t park_mutex;   /* over those two */
	pthread_cond_t unparked;
} servers = { .listener = -1, .ready = -1, .mutex = PTHREAD_MUTEX_INITIALIZER,
	      .park_mutex = PTHREAD_MUTEX_INITIALIZER, .unparked = PTHREAD_COND_INITIALIZER };

/* The signal that wakes a serving thread out of NOTIF_RECV (EINTR), for
 * vupy_servers_stop; unblocked in serving threads only. */
#define WAKE_SIGNAL (SIGRTMIN + 1)

static void woken(int signo)
{
	(void)signo;
}

static int hung_up(int listener)
{
	struct pollfd p = { .fd = listener };

	return poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLERR));
}

static void signal_ready(void)
{
	uint64_t one = 1;

	while (write(servers.ready, &one, sizeof(one)) < 0 && errno == EINTR)
		;
}

/* Leave `call` to the Python thread. */
static void hand_over(const struct vupy_call *call)
{
	struct waiting *w = malloc(sizeof(*w));

	if (w == NULL) {
		vupy_respond(servers.listener, call->id, 0, ENOMEM, 0);
		return;
	}
	w->next = NULL;
	w->call = *call;
	pthread_mutex_lock(&servers.mutex);
	*servers.tail = w;
	servers.tail = &w->next;
	pthread_mutex_unlock(&servers.mutex);
	signal_ready();
}

/* The queue's first call, in *call: 1, or 0 if the queue is empty. */
static int take_over(struct vupy_call *call)
{
	struct waiting *w;

	pthread_mutex_lock(&servers.mutex);
	w = servers.head;
	if (w != NULL) {
		servers.head = w->next;
		if (servers.head == NULL)
			servers.tail = &servers.head;
	}
	pthread_mutex_unlock(&servers.mutex);
	if (w == NULL)
		return 0;
	*call = w->call;
	free(w);
	return 1;
}

/* Wait until the Python thread has drained the process events once
 * since `seen` (then every event that was waiting when a call was received
 * has been taken in, and what it undoes forgotten; later ones cannot
 * concern that call's thread, which is in the call until answered: its
 * route, if still there, serves it); 0 if the Python thread is gone. */
static int drained_since(uint64_t seen)
{
	int done;

	pthread_mutex_lock(&drain_mutex);
	while (!(done = drains != seen) && !__atomic_load_n(&servers.stopping, __ATOMIC_ACQUIRE))
		pthread_cond_wait(&drained, &drain_mutex);   /* vupy_servers_stop wakes it too */
	pthread_mutex_unlock(&drain_mutex);
	return done;
}

/* Spare serving threads.  ADDFD waits until the caller has taken the
 * descriptor, so with many callers runnable a serving thread spends most
 * of a call waiting for its caller to be given a CPU, and a thread per CPU
 * is too few (1,000 processes making sockets on 2 CPUs: 2 threads 32 to
 * 36 us per socket, 16 threads 22 to 23).  Yet every thread waiting in
 * NOTIF_RECV is woken for each notification, which costs a single caller
 * dearly (16 threads receiving: 0.63x native connections for 1 client,
 * against 0.81x for 2).  So there are SPARES spare threads per receiving
 * one, parked on a condition variable, and one is let in only when no
 * thread is left receiving and a call waits; a thread that has served a
 * call parks if enough others are receiving. */
#define SPARES 7

/* This thread has received a call: it is no longer receiving.  If no
 * other is, and a call is already waiting, a spare one is let in.  (Not
 * merely when none is receiving: a lone caller's next call often comes
 * while the thread that served its last one is still closing its copy of
 * the socket, and waking a spare then cost that caller 3 us a call.) */
static void leave_receiving(void)
{
	int none;

	pthread_mutex_lock(&servers.park_mutex);
	none = --servers.receiving == 0 && servers.parked > 0;
	pthread_mutex_unlock(&servers.park_mutex);
	if (!none || !readable(servers.listener))
		return;
	pthread_mutex_lock(&servers.park_mutex);
	if (servers.receiving == 0 && servers.parked > 0)
		pthread_cond_signal(&servers.unparked);
	pthread_mutex_unlock(&servers.park_mutex);
}

/* Before receiving: park while enough threads are receiving. */
static void join_receiving(void)
{
	pthread_mutex_lock(&servers.park_mutex);
	while (servers.receiving >= servers.receivers
	       && !__atomic_load_n(&servers.stopping, __ATOMIC_ACQUIRE)) {
		servers.parked++;
		pthread_cond_wait(&servers.unparked, &servers.park_mutex);
		servers.parked--;
	}
	servers.receiving++;
	pthread_mutex_unlock(&servers.park_mutex);
}

static void *server(void *unused)
{
	struct vupy_call call;
	sigset_t wake;
	uint64_t seen;
	int rc = 0, served;

	(void)unused;
	pthread_setname_np(pthread_self(), "vupy-serve");
	sigemptyset(&wake);
	sigaddset(&wake, WAKE_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &wake, NULL);
	join_receiving();
	while (!__atomic_load_n(&servers.stopping, __ATOMIC_ACQUIRE)) {
		rc = vupy_notif_recv(servers.listener, &call);
		if (rc == -EINTR)
			continue;
		if (rc == -ENOENT) {      /* the caller is gone, or all are */
			if (hung_up(servers.listener)) {
				rc = 0;
				break;
			}
			continue;
		}
		if (rc < 0)
			break;
		leave_receiving();
		served = serve_routed(servers.listener, servers.events_fd, &call, &seen);
		if (served == FAST_EVENTS && drained_since(seen))
			served = serve_routed(servers.listener, -1, &call, &seen);
		if (served != FAST_SERVED)
			hand_over(&call);
		join_receiving();
	}
	pthread_mutex_lock(&servers.mutex);
	if (rc < 0 && rc != -EINTR && servers.error == 0) {
		servers.error = -rc;
		signal_ready();
	}
	servers.running--;
	pthread_mutex_unlock(&servers.mutex);
	return NULL;
}

/* Start serving threads receiving from `listener`, `n` at a time, with
 * SPARES spare ones for each (CPU_SETSIZE threads at most); one set at a
 * time.  0, or a negative errno (no thread started). */
int vupy_servers_start(int listener, int events_fd, int n)
{
	struct sigaction action = { .sa_handler = woken };   /* no SA_RESTART */
	sigset_t all, old;
	int rc = 0;

	if (servers.ready >= 0)
		return -EBUSY;
	servers.ready = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK | EFD_SEMAPHORE);
	if (servers.ready < 0 || sigaction(WAKE_SIGNAL, &action, NULL) < 0) {
		rc = -errno;
		goto fail;
	}
	servers.listener = listener;
	servers.events_fd = events_fd;
	servers.tail = &servers.head;
	servers.receivers = n;
	servers.receiving = servers.parked = 0;
	__atomic_store_n(&servers.stopping, 0, __ATOMIC_RELEASE);   /* a set after a stopped one */
	/* Signals are the main thread's (vupy/_session.py waits for them). */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	while (servers.started < n * (1 + SPARES) && servers.started < CPU_SETSIZE) {
		rc = -pthread_create(&servers.threads[servers.started], NULL, server, NULL);
		if (rc < 0)
			break;
		pthread_mutex_lock(&servers.mutex);
		servers.started++;
		servers.running++;
		pthread_mutex_unlock(&servers.mutex);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (servers.started > 0)
		return 0;
fail:
	if (servers.ready >= 0)
		close(servers.ready);
	servers.ready = -1;
	return rc ? rc : -EINVAL;
}

/* End the serving threads (before the listener is closed: the kernel then
 * fails every call received and not answered, the queued ones too, and
 * every later one, with ENOSYS). */
void vupy_servers_stop(void)
{
	struct vupy_call call;
	int running;

	if (servers.started == 0)
		return;
	__atomic_store_n(&servers.stopping, 1, __ATOMIC_RELEASE);
	/* Those waiting for a drain look at `stopping` under drain_mutex. */
	pthread_mutex_lock(&drain_mutex);
	pthread_cond_broadcast(&drained);
	pthread_mutex_unlock(&drain_mutex);
	pthread_mutex_lock(&servers.park_mutex);     /* and spare ones, under park_mutex */
	pthread_cond_broadcast(&servers.unparked);
	pthread_mutex_unlock(&servers.park_mutex);
	for (;;) {
		pthread_mutex_lock(&servers.mutex);
		running = servers.running;
		pthread_mutex_unlock(&servers.mutex);
		if (running == 0)
			break;
		/* Again and again: one may have been between its look at
		 * `stopping` and NOTIF_RECV when it was signalled. */
		for (int i = 0; i < servers.started; i++)
			pthread_kill(servers.threads[i], WAKE_SIGNAL);
		usleep(1000);
	}
	for (int i = 0; i < servers.started; i++)
		pthread_join(servers.threads[i], NULL);
	servers.started = 0;
	while (take_over(&call))
		;
	close(servers.ready);
	servers.ready = -1;
}

/* The next call the servers left to Python, in *call: 1; 0 if there is
 * none yet; or a server's unexpected negative errno.  When p[0] (the
 * queue's eventfd) was readable. */
static int queued(struct vupy_call *call)
{
	uint64_t count;
	int error;

	if (read(servers.ready, &count, sizeof(count)) < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	if (take_over(call))
		return 1;
	pthread_mutex_lock(&servers.mutex);
	error = servers.error;
	pthread_mutex_unlock(&servers.mutex);
	return -error;
}

/* p[0] is the listener, or with servers the queue's eventfd (and then
 * p[1 + nfds] the listener, for its hangup). */
static int serve(int listener, int events_fd, struct pollfd *p, int nfds, int timeout_ms,
		 struct vupy_call *call)
{
	struct timespec now, end;
	uint64_t seen;
	int n, rc, wait_ms = timeout_ms, with_servers = servers.ready >= 0;

	clock_gettime(CLOCK_MONOTONIC, &end);
	end.tv_sec += timeout_ms / 1000;
	end.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	for (;;) {
		if (timeout_ms >= 0) {
			/* The time left: calls served here do not push it back. */
			clock_gettime(CLOCK_MONOTONIC, &now);
			wait_ms = (int)((end.tv_sec - now.tv_sec) * 1000
					+ (end.tv_nsec - now.tv_nsec) / 1000000);
			if (wait_ms < 0)
				wait_ms = 0;
		}
		n = poll(p, (nfds_t)(1 + nfds + with_servers), wait_ms);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return VUPY_SERVE_TIMEOUT;
		for (int i = 1; i <= nfds; i++)
			if (p[i].revents)
				return VUPY_SERVE_READY;
		if (with_servers) {
			if (p[0].revents & POLLIN) {
				rc = queued(call);
				if (rc != 0)
					return rc > 0 ? VUPY_SERVE_CALL : rc;
			} else if (p[1 + nfds].revents & (POLLHUP | POLLERR)) {
				return VUPY_SERVE_HANGUP;
			}
		} else if (p[0].revents & POLLIN) {
			rc = vupy_notif_recv(listener, call);
			if (rc == -EINTR || rc == -ENOENT)
				continue;  /* the caller was interrupted, or is gone */
			if (rc < 0)
				return rc;
			if (serve_routed(listener, events_fd, call, &seen) != FAST_SERVED)
				return VUPY_SERVE_CALL;
		} else if (p[0].revents & (POLLHUP | POLLERR)) {
			return VUPY_SERVE_HANGUP;
		}
	}
}

/* Wait for the next trapped call that needs Python, serving the others
 * (or, with servers, taking the calls they leave to Python).  Polls the
 * listener and `fds` (with `events`); returns VUPY_SERVE_CALL with `call`
 * filled, VUPY_SERVE_READY when one of `fds` is ready (the caller polls
 * them itself), VUPY_SERVE_HANGUP when the last process under the filter
 * is gone, VUPY_SERVE_TIMEOUT after timeout_ms (-1: never), or a negative
 * errno. */
int vupy_serve(int listener, int events_fd, const int *fds, const short *events, int nfds,
	       int timeout_ms, struct vupy_call *call)
{
	struct pollfd *p = calloc((size_t)nfds + 2, sizeof(*p));
	int rc;

	if (p == NULL)
		return -ENOMEM;
	if (servers.ready >= 0) {
		p[0] = (struct pollfd){ .fd = servers.ready, .events = POLLIN };
		p[1 + nfds] = (struct pollfd){ .fd = listener };
	} else {
		p[0] = (struct pollfd){ .fd = listener, .events = POLLIN };
	}
	for (int i = 0; i < nfds; i++)
		p[1 + i] = (struct pollfd){ .fd = fds[i], .events = events[i] };
	rc = serve(listener, events_fd, p, nfds, timeout_ms, call);
	free(p);
	return rc;
}
