/* SPDX-License-Identifier: GPL-2.0-or-later
 * Copyright (C) 2026 the vupy authors */
/* vupy-lwip: one lwIP stack on one VDE link, serving vupy's proxy descriptors.
 *
 * Usage: vupy-lwip CTLFD URL MAC MTU IP4/LEN[,IP4/LEN...]|- GW4|- [IP6 ...]
 * (started by modules/lwip.py, which checks the arguments first).
 *
 * lwIP keeps global state, so each stack is a process of its own.  Three
 * threads share the stack under lwIP's core lock (LWIP_TCPIP_CORE_LOCKING):
 *   - lwIP's tcpip thread runs the timers, and delivers what they make the
 *     stack send itself (the other two deliver what they make it send);
 *   - the link thread takes frames from libvdeplug and feeds them in;
 *   - the main thread serves vupy's requests (csrc/lwip_worker.h) and moves
 *     data between lwIP and the worker's end of each proxy.
 * A proxy is an AF_UNIX socketpair: SOCK_STREAM for TCP, SOCK_SEQPACKET for
 * UDP.  The program holds one end, so read, write, poll and the rest work on
 * it natively; the worker holds the other and uses lwIP's raw API, whose
 * callbacks run under the same core lock.  Datagrams travel to the program
 * with their source address as a descriptor (SCM_RIGHTS) of a small memfd
 * holding the sockaddr: a plain read() drops it, vupy's recvfrom reads it.
 *
 * Readiness follows a real socket's where the program can see it:
 *   - a TCP proxy is made with its send buffer filled (VW_FILLER bytes that
 *     the worker discards), so it is not writable until a connect completes;
 *   - a listening proxy gets one byte per connection waiting to be accepted
 *     (vupy takes the byte when it hands the connection over);
 *   - the program's last close shows as POLLHUP on the worker's end.
 *
 * When vupy closes the stack (the end of the session, vuumount) it closes
 * the control socket.  The worker then drains, as a kernel does for the
 * sockets of a process that has exited: it serves no more requests, sends
 * what each program wrote and then its FIN, and exits once every peer has
 * acknowledged both, or after VW_DRAIN_SECONDS, resetting what is left.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <semaphore.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <libvdeplug.h>

#undef TCP_MSS   /* <netinet/tcp.h>'s; lwIP has its own */

#include "lwip/init.h"
#include "lwip/tcpip.h"
#include "lwip/netif.h"
#include "lwip/etharp.h"
#include "lwip/ethip6.h"
#include "lwip/tcp.h"
#include "lwip/udp.h"
#include "lwip/ip.h"
#include "lwip/priv/tcp_priv.h"
#include "netif/ethernet.h"

#include "lwip_worker.h"

#define VW_FILLER 65536        /* bytes per write that fills a fresh proxy */
#define VW_CHUNK 65536         /* bytes moved from a proxy to lwIP per read */
#define ADDR_CACHE 64          /* source-address memfds kept */
#define DRAIN_TICK_MS 20       /* how often a drain looks at lwIP's connections */

struct conn {
	uint64_t id;               /* inode of the program's end */
	int fd;                    /* the worker's end */
	int family, type, protocol;
	int v6only;
	union { struct tcp_pcb *tcp; struct udp_pcb *udp; } pcb;
	enum { NEW, CONNECTING, CONNECTED, LISTENING, DEAD } state;
	int error;                 /* pending SO_ERROR */
	size_t filler;             /* filler bytes still to discard */
	uint32_t events;           /* what epoll watches now */
	int closing;               /* the program closed: flush, then close */
	int shut_tx;               /* the program shut its side: shut lwIP's after flushing */
	int fin;                   /* lwIP saw FIN: shut the proxy after flushing */
	struct pbuf *rx;           /* lwIP -> program, not yet written */
	size_t rx_off;
	char *tx;                  /* program -> lwIP, read but not yet queued */
	size_t tx_len, tx_off;
	int held;                  /* program end, for a connection not yet accepted */
	struct conn *queue;        /* connections waiting for accept (listening) */
	struct conn *next_queued;
	int backlog, queued;
	int keepalive, reuseaddr, rcvbuf, sndbuf, broadcast;
	int oobinline;             /* kept for getsockopt: lwIP has no urgent data apart */
	int reuseport;             /* kept for getsockopt: lwIP has no port sharing */
	int user_timeout;          /* TCP_USER_TIMEOUT, kept for getsockopt: lwIP has none */
	struct linger linger;
	int dirty;                 /* on the dirty list: rx to flush */
	struct conn *next_dirty;
	struct conn *next;         /* hash chain */
	struct conn *next_dead;
};

static int ctl;                 /* the control socket */
static int ep;                  /* epoll of the main thread */
static int wake;                /* eventfd: a callback left work for the main thread */
static VDECONN *link_conn;
static struct netif lo;          /* the stack's own loopback: 127.0.0.1/8, ::1 */
static struct netif nif;         /* the interface: MAC, IPv6, the first IPv4 address */
#define MAX_ALIASES 7
static struct netif aliases[MAX_ALIASES];   /* one more IPv4 address each, same link */
static int naliases;
static struct conn *table[4096];
static struct conn *graveyard;
static struct conn *dirty;      /* conns with received data to flush */
static int nconns;              /* conns in the table */
static struct timespec drain_end; /* when draining, its bound; zero before */
/* Set in the threads that call flush_dirty() after feeding lwIP; received
 * data left by the tcpip thread (timers, loopback) needs the main thread. */
static __thread int flushes;

static int draining(void)
{
	return drain_end.tv_sec != 0;
}

static void start_drain(void);

static void flush_rx(struct conn *c);
static uint8_t buffer[VW_MAX_PAYLOAD];

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "vupy-lwip: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

/* Replies and events ------------------------------------------------------ */

static void reply(uint32_t seq, int err, int64_t val, uint32_t event,
		  const void *payload, size_t len, int fd)
{
	struct vw_rep rep = { .seq = seq, .err = err, .val = val, .event = event, .len = len };
	struct iovec iov[2] = { { &rep, sizeof rep }, { (void *)payload, len } };
	union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } u;
	struct msghdr msg = { .msg_iov = iov, .msg_iovlen = len ? 2 : 1 };
	if (fd >= 0) {
		msg.msg_control = u.buf;
		msg.msg_controllen = sizeof u.buf;
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof fd);
	}
	while (sendmsg(ctl, &msg, MSG_NOSIGNAL) < 0)
		if (errno != EINTR) {
			start_drain();   /* vupy is gone: so is the stack, once drained */
			return;
		}
}

/* The connection table ------------------------------------------------------ */

static struct conn **slot(uint64_t id)
{
	struct conn **p = &table[id % (sizeof table / sizeof *table)];
	while (*p && (*p)->id != id)
		p = &(*p)->next;
	return p;
}

static struct conn *lookup(uint64_t id)
{
	return *slot(id);
}

static void watch(struct conn *c, uint32_t events)
{
	if (c->events == events || c->fd < 0)
		return;
	struct epoll_event ev = { .events = events, .data.ptr = c };
	epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
	c->events = events;
}

/* A socketpair for a new proxy: the conn keeps its end; *program gets the other. */
static struct conn *new_conn(int family, int type, int protocol, int *program)
{
	int sv[2];
	int kind = type == SOCK_STREAM ? SOCK_STREAM : SOCK_SEQPACKET;
	if (socketpair(AF_UNIX, kind | SOCK_CLOEXEC, 0, sv) < 0)
		return NULL;
	struct stat st;
	struct conn *c = calloc(1, sizeof *c);
	if (!c || fstat(sv[1], &st) < 0) {
		free(c);
		close(sv[0]);
		close(sv[1]);
		return NULL;
	}
	int nb = 1;
	ioctl(sv[0], FIONBIO, &nb);
	/* A byte the program sends with MSG_OOB is urgent on the AF_UNIX pair
	 * (Linux 5.15+) and would be left out of our reads: lwIP has no urgent
	 * data apart, so it goes inline, in the stream. */
	if (kind == SOCK_STREAM)
		setsockopt(sv[0], SOL_SOCKET, SO_OOBINLINE, &nb, sizeof nb);
	c->id = st.st_ino;
	c->fd = sv[0];
	c->held = -1;
	c->family = family;
	c->type = type;
	c->protocol = protocol;
	c->state = NEW;
	struct epoll_event ev = { .events = 0, .data.ptr = c };
	epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
	c->next = NULL;
	*slot(c->id) = c;
	nconns++;
	*program = sv[1];
	return c;
}

static void wake_main(void)
{
	uint64_t one = 1;
	if (write(wake, &one, sizeof one) < 0)
		return;
}

/* Bury a conn: out of the table now, freed by the main thread after the
 * events at hand (which may still point to it), and vupy told. */
static void bury(struct conn *c)
{
	struct conn **p = slot(c->id);
	if (*p == c) {
		*p = c->next;
		nconns--;
	}
	for (struct conn **d = &dirty; c->dirty && *d; d = &(*d)->next_dirty)
		if (*d == c) {
			*d = c->next_dirty;
			c->dirty = 0;
		}
	if (c->fd >= 0) {
		epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
		c->fd = -1;
	}
	if (c->held >= 0)
		close(c->held);
	c->held = -1;
	if (c->rx)
		pbuf_free(c->rx);
	c->rx = NULL;
	c->state = DEAD;
	c->next_dead = graveyard;
	graveyard = c;
	wake_main();
}

/* Addresses ------------------------------------------------------------------ */

static socklen_t to_sockaddr(const struct conn *c, const ip_addr_t *ip, u16_t port,
			     struct sockaddr_storage *out)
{
	memset(out, 0, sizeof *out);
	if (c->family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)out;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		if (ip && IP_IS_V4(ip))
			sin->sin_addr.s_addr = ip_2_ip4(ip)->addr;
		return sizeof *sin;
	}
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(port);
	if (ip && IP_IS_V6(ip)) {
		memcpy(&sin6->sin6_addr, ip_2_ip6(ip)->addr, 16);
	} else if (ip && IP_IS_V4(ip) && !ip4_addr_isany(ip_2_ip4(ip))) {
		/* an IPv4 peer of a dual-stack socket: ::ffff:a.b.c.d */
		sin6->sin6_addr.s6_addr[10] = sin6->sin6_addr.s6_addr[11] = 0xff;
		memcpy(&sin6->sin6_addr.s6_addr[12], &ip_2_ip4(ip)->addr, 4);
	}
	return sizeof *sin6;
}

/* A sockaddr from the program, as lwIP's address and port, or an errno. */
static int from_sockaddr(const struct conn *c, const void *buf, size_t len,
			 ip_addr_t *ip, u16_t *port)
{
	sa_family_t family;
	if (len < sizeof family)
		return EINVAL;
	memcpy(&family, buf, sizeof family);
	if (c->family == AF_INET) {
		struct sockaddr_in sin;
		if (len < sizeof sin)
			return EINVAL;
		memcpy(&sin, buf, sizeof sin);
		if (family != AF_INET)
			return EAFNOSUPPORT;
		ip_addr_set_ip4_u32(ip, sin.sin_addr.s_addr);
		*port = ntohs(sin.sin_port);
		return 0;
	}
	struct sockaddr_in6 sin6;
	if (len < 24)   /* SIN6_LEN_RFC2133, as the kernel accepts */
		return EINVAL;
	memset(&sin6, 0, sizeof sin6);
	memcpy(&sin6, buf, len < sizeof sin6 ? len : sizeof sin6);
	if (family != AF_INET6)
		return EAFNOSUPPORT;
	*port = ntohs(sin6.sin6_port);
	if (IN6_IS_ADDR_V4MAPPED(&sin6.sin6_addr)) {
		if (c->v6only)
			return ENETUNREACH;
		uint32_t v4;
		memcpy(&v4, &sin6.sin6_addr.s6_addr[12], 4);
		ip_addr_set_ip4_u32(ip, v4);
		return 0;
	}
	if (IN6_IS_ADDR_UNSPECIFIED(&sin6.sin6_addr) && !c->v6only) {
		ip_addr_copy(*ip, *IP_ANY_TYPE);
		return 0;
	}
	IP_SET_TYPE(ip, IPADDR_TYPE_V6);
	memcpy(ip_2_ip6(ip)->addr, &sin6.sin6_addr, 16);
	ip6_addr_clear_zone(ip_2_ip6(ip));
	if (ip6_addr_islinklocal(ip_2_ip6(ip)))
		ip6_addr_assign_zone(ip_2_ip6(ip), IP6_UNKNOWN, &nif);
	return 0;
}

static int local_address(const ip_addr_t *ip)
{
	if (ip_addr_isany(ip))
		return 1;
	struct netif *n;
	NETIF_FOREACH(n)
		if (IP_IS_V4(ip) ? ip4_addr_cmp(ip_2_ip4(ip), netif_ip4_addr(n))
		    : netif_get_ip6_addr_match(n, ip_2_ip6(ip)) >= 0)
			return 1;
	return 0;
}

/* memfds holding a source address, kept by address. */
static struct { struct sockaddr_storage addr; socklen_t len; int fd; } addr_cache[ADDR_CACHE];
static int addr_next;

static int address_fd(const struct sockaddr_storage *addr, socklen_t len)
{
	for (int i = 0; i < ADDR_CACHE; i++)
		if (addr_cache[i].fd > 0 && addr_cache[i].len == len &&
		    memcmp(&addr_cache[i].addr, addr, len) == 0)
			return addr_cache[i].fd;
	int fd = memfd_create("vupy-address", MFD_CLOEXEC);
	if (fd < 0)
		return -1;
	if (write(fd, addr, len) != (ssize_t)len) {
		close(fd);
		return -1;
	}
	int i = addr_next++ % ADDR_CACHE;
	if (addr_cache[i].fd > 0)
		close(addr_cache[i].fd);
	addr_cache[i].addr = *addr;
	addr_cache[i].len = len;
	addr_cache[i].fd = fd;
	return fd;
}

/* TCP: lwIP -> program ---------------------------------------------------------- */

static int lwip_errno(err_t err, int connecting)
{
	if (connecting && err == ERR_RST)
		return ECONNREFUSED;
	if (connecting && err == ERR_ABRT)
		return ETIMEDOUT;
	return err_to_errno(err);
}

/* Drop n bytes from the front of what lwIP received. */
static void consume_rx(struct conn *c, size_t n)
{
	n += c->rx_off;
	while (c->rx && n >= c->rx->len) {
		struct pbuf *rest = c->rx->next;
		n -= c->rx->len;
		if (rest)
			pbuf_ref(rest);
		pbuf_free(c->rx);
		c->rx = rest;
	}
	c->rx_off = n;
}

/* Write what lwIP received to the proxy, as far as the proxy takes it. */
static void flush_rx(struct conn *c)
{
	while (c->rx) {
		struct iovec iov[16];
		int n = 0;
		size_t off = c->rx_off;
		for (struct pbuf *q = c->rx; q && n < 16; q = q->next, off = 0) {
			iov[n].iov_base = (char *)q->payload + off;
			iov[n++].iov_len = q->len - off;
		}
		struct msghdr msg = { .msg_iov = iov, .msg_iovlen = n };
		ssize_t w = sendmsg(c->fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) {
			watch(c, c->events | EPOLLOUT);
			return;
		}
		if (w < 0)   /* the program shut its reading side: drop */
			w = c->rx->tot_len - c->rx_off;
		consume_rx(c, w);
		for (; c->pcb.tcp && w > 0; w -= 0xffff)
			tcp_recved(c->pcb.tcp, (u16_t)(w > 0xffff ? 0xffff : w));
	}
	watch(c, c->events & ~EPOLLOUT);
	if (c->fin)
		shutdown(c->fd, SHUT_WR);
}

static err_t tcp_received(void *arg, struct tcp_pcb *pcb, struct pbuf *p, err_t err)
{
	struct conn *c = arg;
	(void)pcb;
	if (err != ERR_OK) {
		if (p)
			pbuf_free(p);
		return ERR_OK;
	}
	if (!p)
		c->fin = 1;
	else if (c->rx)
		pbuf_cat(c->rx, p);
	else
		c->rx = p;
	/* Flushed once the frames at hand are in: one wake-up of the program
	 * for many segments. */
	if (!c->dirty) {
		c->dirty = 1;
		c->next_dirty = dirty;
		dirty = c;
		if (!flushes)
			wake_main();
	}
	return ERR_OK;
}

/* Whether an interface has packets to itself queued (netif_loop_output). */
static int looped(void)
{
	struct netif *n;
	NETIF_FOREACH(n)
		if (n->loop_first)
			return 1;
	return 0;
}

/* Deliver the packets the stack sent itself, then write out what arrived.
 * lwIP would deliver them on its tcpip thread; delivering them here, in
 * the thread that sent them, spares a loopback exchange two thread hops. */
static void flush_dirty(void)
{
	do {
		struct netif *n;
		NETIF_FOREACH(n)
			if (n->loop_first)
				netif_poll(n);
		while (dirty) {
			struct conn *c = dirty;
			dirty = c->next_dirty;
			c->dirty = 0;
			if (c->fd >= 0)
				flush_rx(c);
		}
	} while (looped());
}

static void tcp_failed(void *arg, err_t err)
{
	struct conn *c = arg;   /* lwIP has freed the pcb */
	c->pcb.tcp = NULL;
	c->error = lwip_errno(err, c->state == CONNECTING);
	if (c->closing) {
		bury(c);
		return;
	}
	if (c->filler) {   /* a connect failed: wake the program up */
		while (c->filler && recv(c->fd, buffer, c->filler, MSG_DONTWAIT) > 0)
			c->filler = 0;
	}
	c->state = DEAD;
	c->fin = 1;
	flush_rx(c);
	watch(c, EPOLLIN);   /* keep reading (and dropping) what the program writes */
}

/* TCP: program -> lwIP ---------------------------------------------------------- */

static void push_tx(struct conn *c);

static void finish_close(struct conn *c)
{
	struct tcp_pcb *pcb = c->pcb.tcp;
	if (pcb) {
		tcp_arg(pcb, NULL);
		if (c->state == LISTENING) {
			tcp_accept(pcb, NULL);
		} else {
			tcp_recv(pcb, NULL);
			tcp_sent(pcb, NULL);
			tcp_err(pcb, NULL);
		}
		if (c->linger.l_onoff && c->linger.l_linger == 0 && c->state != LISTENING)
			tcp_abort(pcb);
		else if (tcp_close(pcb) != ERR_OK)
			tcp_abort(pcb);
		c->pcb.tcp = NULL;
	}
	bury(c);
}

/* Move program data into lwIP while lwIP has room. */
static void pump_tx(struct conn *c)
{
	for (;;) {
		if (c->tx_off < c->tx_len) {
			push_tx(c);
			if (c->tx_off < c->tx_len) {   /* lwIP is full: wait for tcp_sent */
				watch(c, c->events & ~EPOLLIN);
				return;
			}
		}
		if (!c->tx && !(c->tx = malloc(VW_CHUNK)))
			return;
		ssize_t n = recv(c->fd, c->tx, VW_CHUNK, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			if (!c->closing)
				watch(c, c->events | EPOLLIN);
			return;
		}
		if (n == 0) {   /* the program's last close, or shutdown(SHUT_WR) */
			if (c->closing) {
				finish_close(c);
			} else {
				c->shut_tx = 1;
				if (c->pcb.tcp)
					tcp_shutdown(c->pcb.tcp, 0, 1);
				watch(c, c->events & ~EPOLLIN);
			}
			return;
		}
		c->tx_len = n;
		c->tx_off = 0;
		if (c->state == DEAD)   /* nowhere to send it */
			c->tx_off = c->tx_len;
	}
}

static void push_tx(struct conn *c)
{
	struct tcp_pcb *pcb = c->pcb.tcp;
	if (!pcb)
		return;
	while (c->tx_off < c->tx_len) {
		size_t room = tcp_sndbuf(pcb);
		size_t n = c->tx_len - c->tx_off;
		if (n > room)
			n = room;
		if (n == 0)
			break;
		err_t err;
		while ((err = tcp_write(pcb, c->tx + c->tx_off, n, TCP_WRITE_FLAG_COPY)) == ERR_MEM && n > TCP_MSS)
			n /= 2;
		if (err != ERR_OK)
			break;
		c->tx_off += n;
	}
	tcp_output(pcb);
}

static err_t tcp_sent_some(void *arg, struct tcp_pcb *pcb, u16_t len)
{
	struct conn *c = arg;
	(void)pcb; (void)len;
	pump_tx(c);
	return ERR_OK;
}

static void set_tcp_callbacks(struct conn *c)
{
	tcp_arg(c->pcb.tcp, c);
	tcp_recv(c->pcb.tcp, tcp_received);
	tcp_sent(c->pcb.tcp, tcp_sent_some);
	tcp_err(c->pcb.tcp, tcp_failed);
}

static err_t tcp_connected(void *arg, struct tcp_pcb *pcb, err_t err)
{
	struct conn *c = arg;
	(void)pcb; (void)err;
	c->state = CONNECTED;
	while (c->filler) {   /* the proxy becomes writable */
		ssize_t n = recv(c->fd, buffer, c->filler, MSG_DONTWAIT);
		if (n <= 0)
			break;
		c->filler -= n;
	}
	pump_tx(c);
	return ERR_OK;
}

/* TCP: listening ------------------------------------------------------------------- */

static err_t tcp_accepting(void *arg, struct tcp_pcb *newpcb, err_t err)
{
	struct conn *l = arg, *c, **tail;
	int program;
	if (err != ERR_OK || !newpcb)
		return ERR_VAL;
	if (l->queued >= l->backlog || !(c = new_conn(l->family, SOCK_STREAM, l->protocol, &program))) {
		tcp_abort(newpcb);
		return ERR_ABRT;
	}
	c->held = program;
	c->pcb.tcp = newpcb;
	c->state = CONNECTED;
	c->v6only = l->v6only;
	set_tcp_callbacks(c);
	watch(c, EPOLLIN);
	for (tail = &l->queue; *tail; tail = &(*tail)->next_queued)
		;
	*tail = c;
	l->queued++;
	char one = 1;   /* the listening proxy becomes readable */
	if (send(l->fd, &one, 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		return ERR_OK;
	return ERR_OK;
}

/* UDP ------------------------------------------------------------------------------ */

static void udp_received(void *arg, struct udp_pcb *pcb, struct pbuf *p,
			 const ip_addr_t *addr, u16_t port)
{
	struct conn *c = arg;
	(void)pcb;
	struct sockaddr_storage from;
	socklen_t fromlen = to_sockaddr(c, addr, port, &from);
	int afd = address_fd(&from, fromlen);
	u16_t len = pbuf_copy_partial(p, buffer, 0xffff, 0);
	pbuf_free(p);
	if (afd < 0)
		return;
	struct iovec iov = { buffer, len };
	union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } u;
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = u.buf, .msg_controllen = sizeof u.buf };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &afd, sizeof afd);
	sendmsg(c->fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);   /* full: dropped, as UDP does */
}

static int udp_send_data(struct conn *c, const void *data, size_t len, const ip_addr_t *to, u16_t port)
{
	if (len > 0xffff - 8)
		return EMSGSIZE;
	struct pbuf *p = pbuf_alloc(PBUF_TRANSPORT, (u16_t)len, PBUF_RAM);
	if (!p)
		return ENOBUFS;
	memcpy(p->payload, data, len);
	err_t err = to ? udp_sendto(c->pcb.udp, p, to, port) : udp_send(c->pcb.udp, p);
	pbuf_free(p);
	return err == ERR_OK ? 0 : err_to_errno(err);
}

/* Datagrams the program wrote with send()/write() on a connected proxy. */
static void pump_datagrams(struct conn *c, uint32_t events)
{
	for (;;) {
		ssize_t n = recv(c->fd, buffer, sizeof buffer, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || (n == 0 && (events & EPOLLHUP))) {
			if (events & EPOLLHUP) {
				udp_remove(c->pcb.udp);
				c->pcb.udp = NULL;
				bury(c);
			}
			return;
		}
		if (c->pcb.udp->flags & UDP_FLAGS_CONNECTED)
			udp_send_data(c, buffer, n, NULL, 0);
		else
			c->error = EDESTADDRREQ;
	}
}

/* Requests ------------------------------------------------------------------------- */

/* A new socket: its id in *id, its proxy's program end in *program (which
 * an error leaves as it was, or -1). */
static int make_socket(const struct vw_req *r, int *program, uint64_t *id)
{
	int type = r->b, family = r->a;
	if (family != AF_INET && family != AF_INET6)
		return EAFNOSUPPORT;
	if (type == SOCK_STREAM && r->c != 0 && r->c != IPPROTO_TCP)
		return EPROTONOSUPPORT;
	if (type == SOCK_DGRAM && r->c != 0 && r->c != IPPROTO_UDP)
		return EPROTONOSUPPORT;
	if (type != SOCK_STREAM && type != SOCK_DGRAM)
		return type == SOCK_RAW ? EPROTONOSUPPORT : ESOCKTNOSUPPORT;
	u8_t iptype = family == AF_INET ? IPADDR_TYPE_V4 : IPADDR_TYPE_ANY;
	struct conn *c = new_conn(family, type, type == SOCK_STREAM ? IPPROTO_TCP : IPPROTO_UDP, program);
	if (!c)
		return ENOMEM;
	if (type == SOCK_STREAM) {
		c->pcb.tcp = tcp_new_ip_type(iptype);
		if (c->pcb.tcp) {
			set_tcp_callbacks(c);
			/* Not writable until connected: fill the program's side. */
			struct pollfd pfd = { .fd = *program, .events = POLLOUT };
			while (poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLOUT)) {
				ssize_t n = send(*program, buffer, VW_FILLER, MSG_DONTWAIT | MSG_NOSIGNAL);
				if (n <= 0)
					break;
				c->filler += n;
			}
		}
	} else {
		c->pcb.udp = udp_new_ip_type(iptype);
		if (c->pcb.udp) {
			udp_recv(c->pcb.udp, udp_received, c);
			watch(c, EPOLLIN);
		}
	}
	if (!c->pcb.tcp) {
		close(*program);
		*program = -1;
		bury(c);
		return ENOBUFS;
	}
	*id = c->id;
	return 0;
}

static int do_bind(struct conn *c, const void *addr, size_t len)
{
	ip_addr_t ip;
	u16_t port;
	int e = from_sockaddr(c, addr, len, &ip, &port);
	if (e)
		return e == ENETUNREACH ? EADDRNOTAVAIL : e;
	if (!local_address(&ip))
		return EADDRNOTAVAIL;
	if (c->type == SOCK_DGRAM) {
		if (c->pcb.udp->local_port)
			return EINVAL;
		return err_to_errno(udp_bind(c->pcb.udp, &ip, port));
	}
	if (c->state != NEW || !c->pcb.tcp || c->pcb.tcp->local_port)
		return EINVAL;
	err_t err = tcp_bind(c->pcb.tcp, &ip, port);
	return err == ERR_USE ? EADDRINUSE : err_to_errno(err);
}

static int do_connect(struct conn *c, const void *addr, size_t len)
{
	ip_addr_t ip;
	u16_t port;
	sa_family_t family = AF_UNSPEC;
	if (len >= sizeof family)
		memcpy(&family, addr, sizeof family);
	if (c->type == SOCK_DGRAM) {
		if (family == AF_UNSPEC) {
			udp_disconnect(c->pcb.udp);
			return 0;
		}
		int e = from_sockaddr(c, addr, len, &ip, &port);
		return e ? e : err_to_errno(udp_connect(c->pcb.udp, &ip, port));
	}
	switch (c->state) {
	case CONNECTING: return EALREADY;
	case CONNECTED: return EISCONN;
	case LISTENING: return EINVAL;
	case DEAD: return c->error ? c->error : ECONNABORTED;
	case NEW: break;
	}
	int e = from_sockaddr(c, addr, len, &ip, &port);
	if (e)
		return e;
	if (ip_addr_isany(&ip))   /* as Linux: connecting to "any" means this host */
		return ECONNREFUSED;
	err_t err = tcp_connect(c->pcb.tcp, &ip, port, tcp_connected);
	if (err != ERR_OK)
		return err == ERR_RTE ? ENETUNREACH : err_to_errno(err);
	c->state = CONNECTING;
	return EINPROGRESS;
}

static int do_listen(struct conn *c, int backlog)
{
	if (c->type != SOCK_STREAM)
		return EOPNOTSUPP;
	if (backlog < 1)
		backlog = 1;
	if (backlog > 4096)
		backlog = 4096;
	c->backlog = backlog;
	if (c->state == LISTENING)
		return 0;
	if (c->state != NEW)
		return EINVAL;
	if (!c->pcb.tcp->local_port) {
		err_t err = tcp_bind(c->pcb.tcp, &c->pcb.tcp->local_ip, 0);   /* "any" of its type */
		if (err != ERR_OK)
			return err_to_errno(err);
	}
	err_t err;
	struct tcp_pcb *l = tcp_listen_with_backlog_and_err(c->pcb.tcp, TCP_DEFAULT_LISTEN_BACKLOG, &err);
	if (!l)   /* ERR_USE: another listens there, each with SO_REUSEADDR */
		return err_to_errno(err);
	c->pcb.tcp = l;
	c->state = LISTENING;
	tcp_arg(l, c);
	tcp_accept(l, tcp_accepting);
	return 0;
}

static int do_getsockopt(struct conn *c, int level, int name, int *value, struct linger *lg, size_t *len)
{
	struct tcp_pcb *tcp = c->type == SOCK_STREAM ? c->pcb.tcp : NULL;
	struct ip_pcb *ipcb = c->type == SOCK_STREAM ? (struct ip_pcb *)c->pcb.tcp : (struct ip_pcb *)c->pcb.udp;
	*len = sizeof(int);
	if (level == SOL_SOCKET) {
		switch (name) {
		case SO_ERROR: *value = c->error; c->error = 0; return 0;
		case SO_REUSEADDR: *value = c->reuseaddr; return 0;
		case SO_KEEPALIVE: *value = c->keepalive; return 0;
		case SO_BROADCAST: *value = c->broadcast; return 0;
		case SO_ACCEPTCONN: *value = c->state == LISTENING; return 0;
		case SO_RCVBUF: *value = c->rcvbuf ? c->rcvbuf : TCP_WND; return 0;
		case SO_SNDBUF: *value = c->sndbuf ? c->sndbuf : TCP_SND_BUF; return 0;
		case SO_LINGER: *lg = c->linger; *len = sizeof *lg; return 0;
		case SO_OOBINLINE: *value = c->oobinline; return 0;
		case SO_REUSEPORT: *value = c->reuseport; return 0;
		}
		return ENOPROTOOPT;
	}
	if (!ipcb)
		return EINVAL;
	if (level == IPPROTO_TCP && tcp) {
		switch (name) {
		case TCP_NODELAY: *value = tcp_nagle_disabled(tcp) ? 1 : 0; return 0;
		case TCP_KEEPIDLE: *value = tcp->keep_idle / 1000; return 0;
		case TCP_KEEPINTVL: *value = tcp->keep_intvl / 1000; return 0;
		case TCP_KEEPCNT: *value = tcp->keep_cnt; return 0;
		case TCP_MAXSEG: *value = tcp->mss; return 0;
		case TCP_USER_TIMEOUT: *value = c->user_timeout; return 0;
		}
		return ENOPROTOOPT;
	}
	if (level == IPPROTO_IP && c->family == AF_INET) {
		switch (name) {
		case IP_TTL: *value = ipcb->ttl; return 0;
		case IP_TOS: *value = ipcb->tos; return 0;
		}
		return ENOPROTOOPT;
	}
	if (level == IPPROTO_IPV6 && c->family == AF_INET6) {
		switch (name) {
		case IPV6_V6ONLY: *value = c->v6only; return 0;
		case IPV6_UNICAST_HOPS: *value = ipcb->ttl; return 0;
		}
		return ENOPROTOOPT;
	}
	return ENOPROTOOPT;
}

static int do_setsockopt(struct conn *c, int level, int name, const void *val, size_t len)
{
	struct tcp_pcb *tcp = c->type == SOCK_STREAM ? c->pcb.tcp : NULL;
	struct ip_pcb *ipcb = c->type == SOCK_STREAM ? (struct ip_pcb *)c->pcb.tcp : (struct ip_pcb *)c->pcb.udp;
	int v = 0;
	if (level == SOL_SOCKET && name == SO_LINGER) {
		if (len < sizeof(struct linger))
			return EINVAL;
		memcpy(&c->linger, val, sizeof c->linger);
		return 0;
	}
	if (len < sizeof v)
		return EINVAL;
	memcpy(&v, val, sizeof v);
	if (level == SOL_SOCKET) {
		u8_t flag = 0;
		int *store = NULL;
		switch (name) {
		case SO_REUSEADDR: flag = SOF_REUSEADDR; store = &c->reuseaddr; break;
		case SO_KEEPALIVE: flag = SOF_KEEPALIVE; store = &c->keepalive; break;
		case SO_BROADCAST: flag = SOF_BROADCAST; store = &c->broadcast; break;
		case SO_RCVBUF: c->rcvbuf = v; return 0;
		case SO_SNDBUF: c->sndbuf = v; return 0;
		case SO_OOBINLINE: c->oobinline = v != 0; return 0;
		case SO_REUSEPORT: c->reuseport = v != 0; return 0;
		default: return ENOPROTOOPT;
		}
		*store = v != 0;
		if (ipcb) {
			if (v)
				ip_set_option(ipcb, flag);
			else
				ip_reset_option(ipcb, flag);
		}
		return 0;
	}
	if (level == IPPROTO_TCP && tcp) {
		switch (name) {
		case TCP_NODELAY:
			if (v) tcp_nagle_disable(tcp); else tcp_nagle_enable(tcp);
			return 0;
		case TCP_KEEPIDLE: tcp->keep_idle = 1000u * v; return 0;
		case TCP_KEEPINTVL: tcp->keep_intvl = 1000u * v; return 0;
		case TCP_KEEPCNT: tcp->keep_cnt = v; return 0;
		/* Accepted, not enforced: lwIP picks its MSS and has no user timeout. */
		case TCP_MAXSEG: return v < 0 ? EINVAL : 0;
		case TCP_USER_TIMEOUT: if (v < 0) return EINVAL; c->user_timeout = v; return 0;
		}
		return ENOPROTOOPT;
	}
	if (level == IPPROTO_TCP)
		return c->type == SOCK_STREAM ? EINVAL : EOPNOTSUPP;
	if (level == IPPROTO_IP && c->family == AF_INET && ipcb) {
		switch (name) {
		case IP_TTL: ipcb->ttl = v; return 0;
		case IP_TOS: ipcb->tos = v; return 0;
		}
		return ENOPROTOOPT;
	}
	if (level == IPPROTO_IPV6 && c->family == AF_INET6 && ipcb) {
		switch (name) {
		case IPV6_V6ONLY:
			if (c->state != NEW || (tcp && tcp->local_port) ||
			    (c->type == SOCK_DGRAM && c->pcb.udp->local_port))
				return EINVAL;
			c->v6only = v != 0;
			IP_SET_TYPE_VAL(ipcb->local_ip, v ? IPADDR_TYPE_V6 : IPADDR_TYPE_ANY);
			IP_SET_TYPE_VAL(ipcb->remote_ip, v ? IPADDR_TYPE_V6 : IPADDR_TYPE_ANY);
			return 0;
		case IPV6_UNICAST_HOPS: ipcb->ttl = v < 0 ? 64 : v; return 0;
		}
		return ENOPROTOOPT;
	}
	return ENOPROTOOPT;
}

static size_t link_info(char *out, size_t size, const char *name, struct netif *netif)
{
	const u8_t *h = netif->hwaddr;
	return snprintf(out, size, "link %s %d %u %02x:%02x:%02x:%02x:%02x:%02x %s\n", name,
			netif_get_index(netif), netif->mtu, h[0], h[1], h[2], h[3], h[4], h[5],
			netif_is_up(netif) ? "up" : "down");
}

static size_t ip6_info(char *out, size_t size, struct netif *netif, int prefixlen)
{
	size_t n = 0;
	char a[64];
	for (int i = 0; i < LWIP_IPV6_NUM_ADDRESSES; i++) {
		if (!ip6_addr_isvalid(netif_ip6_addr_state(netif, i)))
			continue;
		ip6addr_ntoa_r(netif_ip6_addr(netif, i), a, sizeof a);
		n += snprintf(out + n, size - n, "addr %d 6 %s %d\n", netif_get_index(netif), a, prefixlen);
	}
	return n;
}

/* Interfaces, addresses and routes, one per line, for vupy's netlink answers:
 *   link NAME INDEX MTU MAC up|down
 *   addr INDEX FAMILY ADDRESS PREFIXLEN
 *   route INDEX FAMILY DESTINATION PREFIXLEN GATEWAY|-          */
static size_t info(char *out, size_t size)
{
	size_t n = 0;
	char a[64];
	int idx = netif_get_index(&nif);
	/* lo's 127.0.0.0/8 is a route of the kernel's local table, which
	 * `ip route` does not show: no route line for it. */
	n += link_info(out + n, size - n, "lo", &lo);
	n += snprintf(out + n, size - n, "addr %d 4 127.0.0.1 8\n", netif_get_index(&lo));
	n += ip6_info(out + n, size - n, &lo, 128);
	n += link_info(out + n, size - n, "vde0", &nif);
	for (int k = -1; k < naliases; k++) {
		struct netif *v4 = k < 0 ? &nif : &aliases[k];
		if (ip4_addr_isany(netif_ip4_addr(v4)))
			continue;
		u32_t mask = ntohl(ip4_addr_get_u32(netif_ip4_netmask(v4)));
		int len = 0;
		while (mask & 0x80000000u) { len++; mask <<= 1; }
		ip4addr_ntoa_r(netif_ip4_addr(v4), a, sizeof a);
		n += snprintf(out + n, size - n, "addr %d 4 %s %d\n", idx, a, len);
		ip4_addr_t net;
		ip4_addr_get_network(&net, netif_ip4_addr(v4), netif_ip4_netmask(v4));
		ip4addr_ntoa_r(&net, a, sizeof a);
		n += snprintf(out + n, size - n, "route %d 4 %s %d -\n", idx, a, len);
	}
	if (!ip4_addr_isany(netif_ip4_gw(&nif))) {
		ip4addr_ntoa_r(netif_ip4_gw(&nif), a, sizeof a);
		n += snprintf(out + n, size - n, "route %d 4 0.0.0.0 0 %s\n", idx, a);
	}
	n += ip6_info(out + n, size - n, &nif, 64);
	n += snprintf(out + n, size - n, "route %d 6 fe80:: 64 -\n", idx);
	return n < size ? n : size;
}

/* What a request gets: its errno, and if 0 a value, a payload and a proxy
 * to hand over (fd, which serve() closes once sent; -1 on error). */
struct answer {
	int64_t val;
	const void *payload;
	size_t len;
	int fd;
	int value;                       /* room for a small payload */
	struct linger linger;
	struct sockaddr_storage sa;
};

/* The next request on the control socket, or NULL if there is none whole;
 * its payload and that payload's length in *payload and *len. */
static const struct vw_req *read_request(uint8_t *msg, size_t size, const uint8_t **payload, size_t *len)
{
	ssize_t n = recv(ctl, msg, size, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return NULL;
	if (n <= 0) {
		start_drain();   /* vupy closed the stack, or is gone */
		return NULL;
	}
	if ((size_t)n < sizeof(struct vw_req))
		return NULL;
	const struct vw_req *r = (const struct vw_req *)msg;
	*payload = msg + sizeof *r;
	*len = n - sizeof *r < r->len ? n - sizeof *r : r->len;
	return r;
}

/* The live conn a request names, or NULL and the errno in *err: a dead one
 * still tells its name, its peer's and its options. */
static struct conn *request_conn(const struct vw_req *r, int *err)
{
	struct conn *c = lookup(r->id);
	if (!c) {
		*err = EBADF;
		return NULL;
	}
	if (c->state == DEAD && r->op != VW_GETSOCKOPT && r->op != VW_GETSOCKNAME &&
	    r->op != VW_GETPEERNAME) {
		*err = c->error ? c->error : ENOTCONN;
		return NULL;
	}
	return c;
}

static int serve_accept(struct conn *c, struct answer *out)
{
	struct conn *a = c->queue;
	if (c->state != LISTENING)
		return EINVAL;
	if (!a)
		return EAGAIN;
	c->queue = a->next_queued;
	c->queued--;
	out->len = a->pcb.tcp ? to_sockaddr(a, &a->pcb.tcp->remote_ip, a->pcb.tcp->remote_port, &out->sa)
			      : to_sockaddr(a, NULL, 0, &out->sa);
	out->payload = &out->sa;
	out->val = (int64_t)a->id;
	out->fd = a->held;
	a->held = -1;
	return 0;
}

static int serve_name(struct conn *c, int peer, struct answer *out)
{
	struct ip_pcb *ipcb = c->type == SOCK_STREAM ? (struct ip_pcb *)c->pcb.tcp
						      : (struct ip_pcb *)c->pcb.udp;
	u16_t port = 0;
	if (c->type == SOCK_STREAM && c->pcb.tcp)
		port = peer ? c->pcb.tcp->remote_port : c->pcb.tcp->local_port;
	else if (c->type == SOCK_DGRAM)
		port = peer ? c->pcb.udp->remote_port : c->pcb.udp->local_port;
	if (peer && (c->type == SOCK_STREAM ? c->state != CONNECTED
			  : !(c->pcb.udp->flags & UDP_FLAGS_CONNECTED)))
		return ENOTCONN;
	out->len = to_sockaddr(c, ipcb ? (peer ? &ipcb->remote_ip : &ipcb->local_ip) : NULL, port, &out->sa);
	out->payload = &out->sa;
	return 0;
}

static int serve_getsockopt(struct conn *c, const struct vw_req *r, struct answer *out)
{
	int e = do_getsockopt(c, r->a, r->b, &out->value, &out->linger, &out->len);
	out->payload = out->len == sizeof out->value ? (void *)&out->value : (void *)&out->linger;
	return e;
}

static int serve_sendto(struct conn *c, const struct vw_req *r, const uint8_t *payload, size_t len,
			struct answer *out)
{
	ip_addr_t ip;
	u16_t port = 0;
	size_t alen = (size_t)r->b;
	int e;
	if (c->type != SOCK_DGRAM)
		return EOPNOTSUPP;
	if (alen > len)
		return EINVAL;
	if (!alen) {
		if (!(c->pcb.udp->flags & UDP_FLAGS_CONNECTED))
			return EDESTADDRREQ;
	} else if ((e = from_sockaddr(c, payload, alen, &ip, &port))) {
		return e;
	}
	e = udp_send_data(c, payload + alen, len - alen, alen ? &ip : NULL, port);
	out->val = (int64_t)(len - alen);
	return e;
}

/* One request, per its op (csrc/lwip_worker.h): its errno, and *out. */
static int dispatch(const struct vw_req *r, const uint8_t *payload, size_t len, struct answer *out)
{
	static char text[8192];
	uint64_t id = 0;
	int e;
	switch (r->op) {
	case VW_SOCKET:
		e = make_socket(r, &out->fd, &id);
		out->val = (int64_t)id;
		return e;
	case VW_INFO:
		out->len = info(text, sizeof text);
		out->payload = text;
		return 0;
	}
	struct conn *c = request_conn(r, &e);
	if (!c)
		return e;
	switch (r->op) {
	case VW_BIND:
		return do_bind(c, payload, len);
	case VW_CONNECT:
		return do_connect(c, payload, len);
	case VW_LISTEN:
		return do_listen(c, r->a);
	case VW_ACCEPT:
		return serve_accept(c, out);
	case VW_GETSOCKNAME:
	case VW_GETPEERNAME:
		return serve_name(c, r->op == VW_GETPEERNAME, out);
	case VW_GETSOCKOPT:
		return serve_getsockopt(c, r, out);
	case VW_SETSOCKOPT:
		return do_setsockopt(c, r->a, r->b, payload, len);
	case VW_SENDTO:
		return serve_sendto(c, r, payload, len, out);
	}
	return EINVAL;
}

/* Read a request, serve it, reply. */
static void serve(void)
{
	static uint8_t msg[sizeof(struct vw_req) + VW_MAX_PAYLOAD];
	const uint8_t *payload;
	size_t len;
	const struct vw_req *r = read_request(msg, sizeof msg, &payload, &len);
	if (!r)
		return;
	struct answer out = { .fd = -1 };
	int e = dispatch(r, payload, len, &out);
	if (e)
		reply(r->seq, e, 0, 0, NULL, 0, -1);
	else
		reply(r->seq, 0, out.val, 0, out.payload, out.len, out.fd);
	if (out.fd >= 0)
		close(out.fd);
}

/* The main thread: proxies and requests. */
static void proxy_event(struct conn *c, uint32_t events)
{
	if (c->state == DEAD && !c->closing && c->type == SOCK_STREAM && !(events & EPOLLHUP)) {
		/* The connection is gone: what the program writes is dropped. */
		while (recv(c->fd, buffer, sizeof buffer, MSG_DONTWAIT) > 0)
			;
		return;
	}
	if (c->type == SOCK_DGRAM) {
		pump_datagrams(c, events);
		return;
	}
	if (events & EPOLLOUT)
		flush_rx(c);
	if (events & EPOLLHUP) {
		/* The program's last close: send what it wrote, then close. */
		epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
		c->events = 0;
		c->closing = 1;
		if (c->state == LISTENING) {
			for (struct conn *a = c->queue; a; ) {
				struct conn *next = a->next_queued;
				finish_close(a);
				a = next;
			}
			c->queue = NULL;
			finish_close(c);
			return;
		}
		if (c->state != CONNECTED || !c->pcb.tcp) {
			finish_close(c);
			return;
		}
		if (c->rx) {
			pbuf_free(c->rx);
			c->rx = NULL;
		}
		pump_tx(c);
		return;
	}
	if (events & EPOLLIN)
		pump_tx(c);
}

/* Closed proxies not yet reported: vupy reads events only when it talks to
 * the stack, so they are sent without waiting, and the rest when the control
 * socket has room again; a full control socket must never stall the data. */
static uint64_t *unreported;
static size_t nunreported, unreported_size;

static void report_closed(void)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	while (nunreported) {
		struct vw_rep rep = { .seq = 0, .val = (int64_t)unreported[nunreported - 1],
				      .event = VW_CLOSED };
		if (send(ctl, &rep, sizeof rep, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
			if (errno == EAGAIN) {
				ev.events |= EPOLLOUT;
				break;
			}
			start_drain();   /* vupy is gone */
			return;
		}
		nunreported--;
	}
	epoll_ctl(ep, EPOLL_CTL_MOD, ctl, &ev);
}

static void note_closed(uint64_t id)
{
	if (nunreported == unreported_size) {
		unreported_size = unreported_size ? 2 * unreported_size : 256;
		unreported = realloc(unreported, unreported_size * sizeof *unreported);
		if (!unreported)
			die("out of memory");
	}
	unreported[nunreported++] = id;
}

static void bring_out_the_dead(void)
{
	uint64_t count;
	if (read(wake, &count, sizeof count) < 0 && errno != EAGAIN)
		return;
	while (graveyard) {
		struct conn *c = graveyard;
		graveyard = c->next_dead;
		if (!draining())   /* else no one is listening */
			note_closed(c->id);
		free(c->tx);
		free(c);
	}
	if (nunreported && !draining())
		report_closed();
}

/* Draining -------------------------------------------------------------------------- */

/* vupy has closed the stack, or is gone: no more requests, and VW_DRAIN_SECONDS
 * for the connections to end.  The proxies are served on: a program's last
 * close (POLLHUP, which a program that has exited has already made) flushes
 * what it wrote into lwIP and closes its connection, as it always does. */
static void start_drain(void)
{
	if (draining())
		return;
	epoll_ctl(ep, EPOLL_CTL_DEL, ctl, NULL);
	clock_gettime(CLOCK_MONOTONIC, &drain_end);
	drain_end.tv_sec += VW_DRAIN_SECONDS;
}

/* Whether lwIP still owes pcb's peer data, or a FIN the peer has not
 * acknowledged.  FIN_WAIT_2 and TIME_WAIT owe nothing; a SYN_RCVD one
 * never reached a program, so it carries nothing of theirs. */
static int owes_peer(const struct tcp_pcb *pcb)
{
	switch (pcb->state) {
	case ESTABLISHED:
	case FIN_WAIT_1:
	case CLOSE_WAIT:
	case CLOSING:
	case LAST_ACK:
		return 1;
	default:
		return 0;
	}
}

static struct tcp_pcb *owing_pcb(void)
{
	for (struct tcp_pcb *pcb = tcp_active_pcbs; pcb; pcb = pcb->next)
		if (owes_peer(pcb))
			return pcb;
	return NULL;
}

static int drain_expired(void)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec > drain_end.tv_sec ||
	       (now.tv_sec == drain_end.tv_sec && now.tv_nsec >= drain_end.tv_nsec);
}

/* Exit once no program holds a proxy and every peer has had its data and
 * FIN (the timers in lwIP's thread retransmit meanwhile).  At the bound,
 * what is left is reset: lwIP's state dies with the process, and a peer
 * told nothing would wait for ever for an end that cannot come. */
static void end_drain_if_done(void)
{
	if (nconns == 0 && !owing_pcb())
		exit(0);
	if (!drain_expired())
		return;
	int reset = 0;
	for (struct tcp_pcb *pcb; (pcb = owing_pcb()); reset++)
		tcp_abort(pcb);   /* sends RST, and takes pcb off tcp_active_pcbs */
	if (reset)
		fprintf(stderr, "vupy-lwip: %d connection%s still sending %d s after the stack "
			"closed: reset\n", reset, reset == 1 ? "" : "s", VW_DRAIN_SECONDS);
	exit(0);
}

/* The link --------------------------------------------------------------------------- */

static err_t link_output(struct netif *netif, struct pbuf *p)
{
	static uint8_t frame[65536 + 64];
	(void)netif;
	if (p->next == NULL) {
		vde_send(link_conn, p->payload, p->len, 0);
	} else {
		u16_t len = pbuf_copy_partial(p, frame, 0xffff, 0);
		vde_send(link_conn, frame, len, 0);
	}
	return ERR_OK;
}

/* Whether a frame is for 127/8 or ::1, which only lo carries: lwIP, built
 * without a loop interface of its own, would take it in on any interface. */
static int martian(const uint8_t *frame, ssize_t n)
{
	static const uint8_t one[16] = { [15] = 1 };
	if (n >= 34 && frame[12] == 0x08 && frame[13] == 0x00)
		return frame[30] == 127;
	return n >= 54 && frame[12] == 0x86 && frame[13] == 0xdd && memcmp(frame + 38, one, 16) == 0;
}

/* A frame into lwIP.  IPv4 takes packets for any interface's address
 * whichever interface they come in on, but ARP answers only for the one it
 * is given: an ARP packet goes to the interface whose address it names. */
static void link_input(struct pbuf *p, const uint8_t *frame, ssize_t n)
{
	struct netif *to = &nif;
	if (martian(frame, n)) {
		pbuf_free(p);
		return;
	}
	if (naliases && n >= 42 && frame[12] == 0x08 && frame[13] == 0x06)
		for (int i = 0; i < naliases; i++)
			if (memcmp(frame + 38, &netif_ip4_addr(&aliases[i])->addr, 4) == 0)
				to = &aliases[i];
	if (to->input(p, to) != ERR_OK)
		pbuf_free(p);
}

static void *link_thread(void *arg)
{
	static uint8_t frame[65536 + 64];
	struct pollfd data = { .fd = vde_datafd(link_conn), .events = POLLIN };
	(void)arg;
	flushes = 1;
	for (;;) {
		ssize_t n = vde_recv(link_conn, frame, sizeof frame, 0);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0) {
			fprintf(stderr, "vupy-lwip: the link is gone (%s)\n", n < 0 ? strerror(errno) : "closed");
			exit(3);
		}
		if (n < 14)
			continue;
		/* PBUF_RAM, not the pool: Debian's lwIP overflows its heap when a
		 * full-size frame comes from PBUF_POOL. */
		struct pbuf *p = pbuf_alloc(PBUF_RAW, (u16_t)n, PBUF_RAM);
		if (!p)
			continue;
		memcpy(p->payload, frame, n);
		LOCK_TCPIP_CORE();
		link_input(p, frame, n);
		/* Take in what else is there before waking programs up. */
		for (int more = 0; more < 64 && poll(&data, 1, 0) == 1; more++) {
			n = vde_recv(link_conn, frame, sizeof frame, 0);
			if (n < 14 || !(p = pbuf_alloc(PBUF_RAW, (u16_t)n, PBUF_RAM)))
				break;
			memcpy(p->payload, frame, n);
			link_input(p, frame, n);
		}
		flush_dirty();
		UNLOCK_TCPIP_CORE();
	}
	return NULL;
}

static err_t nif_init(struct netif *netif)
{
	netif->name[0] = 'v';
	netif->name[1] = 'd';
	netif->output = etharp_output;
	netif->output_ip6 = ethip6_output;
	netif->linkoutput = link_output;
	netif->hwaddr_len = 6;
	netif->flags = NETIF_FLAG_BROADCAST | NETIF_FLAG_ETHARP | NETIF_FLAG_ETHERNET |
		NETIF_FLAG_IGMP | NETIF_FLAG_MLD6 | NETIF_FLAG_LINK_UP;
	return ERR_OK;
}

/* lo: what the stack sends itself, on 127.0.0.1 or ::1 (ip4_output_if and
 * ip6_output_if loop these before output), or on the rest of 127/8. */
static err_t lo_output(struct netif *netif, struct pbuf *p, const ip4_addr_t *to)
{
	(void)to;
	return netif_loop_output(netif, p);
}

static err_t lo_output6(struct netif *netif, struct pbuf *p, const ip6_addr_t *to)
{
	(void)to;
	return netif_loop_output(netif, p);
}

static err_t lo_init(struct netif *netif)
{
	netif->name[0] = 'l';
	netif->name[1] = 'o';
	netif->output = lo_output;
	netif->output_ip6 = lo_output6;
	netif->mtu = 65535;
	netif->flags = NETIF_FLAG_LINK_UP;
	return ERR_OK;
}

/* Starting -------------------------------------------------------------------------- */

static void started(void *arg)
{
	sem_t *done = arg;
	sem_post(done);
}

/* Tell vupy why the stack did not start (its VW_READY event, with err); 1. */
static int not_ready(int err, const char *fmt, ...)
{
	char message[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(message, sizeof message, fmt, ap);
	va_end(ap);
	reply(0, err, 0, VW_READY, message, strlen(message), -1);
	return 1;
}

static void prepare_process(void)
{
	signal(SIGPIPE, SIG_IGN);
	struct rlimit rl;   /* source-address descriptors in flight count against it */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	/* lwIP picks its first local ports with rand(): seed it per stack. */
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	srand((unsigned)(ts.tv_nsec ^ ts.tv_sec ^ getpid()));
}

/* The VDE link to URL; 0, or 1 after telling vupy why not. */
static int open_link(char *url)
{
	link_conn = vde_open(url, "vupy-lwip", NULL);
	if (!link_conn) {
		int err = errno;
		return not_ready(err ? err : EINVAL, "cannot open %s: %s", url, strerror(err));
	}
	return 0;
}

/* lwIP's tcpip thread, and the main thread's epoll and wake-up eventfd. */
static void start_lwip(void)
{
	ep = epoll_create1(EPOLL_CLOEXEC);
	wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	sem_t done;
	sem_init(&done, 0, 0);
	tcpip_init(started, &done);
	sem_wait(&done);
}

/* IP4/LEN[,IP4/LEN...] or "-": the addresses and their masks, at most
 * MAX_ALIASES + 1; how many. */
static int parse_ipv4(char *list, ip4_addr_t *ip, ip4_addr_t *mask)
{
	int nip = 0;
	for (char *item = strtok(list, ","); item && nip <= MAX_ALIASES; item = strtok(NULL, ",")) {
		if (strcmp(item, "-") == 0)
			continue;
		char *slash = strchr(item, '/');
		int len = slash ? atoi(slash + 1) : 32;
		if (slash)
			*slash = 0;
		ip4addr_aton(item, &ip[nip]);
		mask[nip++].addr = len ? htonl(0xffffffffu << (32 - len)) : 0;
	}
	return nip;
}

/* An interface on the link, down; gw is the default route's (through nif). */
static void add_interface(struct netif *netif, const unsigned mac[6], u16_t mtu,
			  const ip4_addr_t *ip, const ip4_addr_t *mask, const ip4_addr_t *gw)
{
	for (int i = 0; i < 6; i++)
		netif->hwaddr[i] = (u8_t)mac[i];
	netif_add(netif, ip, mask, gw, NULL, nif_init, ethernet_input);
	netif->mtu = mtu;
}

/* nif's IPv6 addresses: the link-local one, and ADDR[/64] each; 0, or the
 * one lwIP refuses. */
static const char *add_ipv6(char **addresses, int n)
{
	netif_create_ip6_linklocal_address(&nif, 1);
	netif_ip6_addr_set_state(&nif, 0, IP6_ADDR_PREFERRED);
	for (int i = 0; i < n; i++) {
		ip6_addr_t a;
		s8_t idx;
		char *slash = strchr(addresses[i], '/');
		if (slash)
			*slash = 0;
		if (!ip6addr_aton(addresses[i], &a) || netif_add_ip6_address(&nif, &a, &idx) != ERR_OK)
			return addresses[i];
		netif_ip6_addr_set_state(&nif, idx, IP6_ADDR_PREFERRED);
	}
	return NULL;
}

/* lo, first, as a kernel has it (index 1). */
static void add_loopback(void)
{
	ip4_addr_t ip, mask;
	ip6_addr_t one;
	s8_t idx;
	IP4_ADDR(&ip, 127, 0, 0, 1);
	IP4_ADDR(&mask, 255, 0, 0, 0);
	netif_add(&lo, &ip, &mask, IP4_ADDR_ANY4, NULL, lo_init, ip_input);
	ip6_addr_set_loopback(&one);
	netif_add_ip6_address(&lo, &one, &idx);
	netif_ip6_addr_set_state(&lo, idx, IP6_ADDR_PREFERRED);
	netif_set_up(&lo);
}

/* The interface nif (MAC, MTU, the first IPv4 address, IPv4 gateway "-"
 * or an address, IPv6 addresses) and an alias for each further IPv4
 * address, up; 0, or 1 after telling vupy why not. */
static int configure(const char *mac_text, const char *mtu_text, char *ipv4, const char *gw_text,
		     char **ipv6, int nipv6)
{
	ip4_addr_t ip[MAX_ALIASES + 1], mask[MAX_ALIASES + 1], gw = { 0 };
	memset(ip, 0, sizeof ip);
	memset(mask, 0, sizeof mask);
	int nip = parse_ipv4(ipv4, ip, mask);
	if (strcmp(gw_text, "-") != 0)
		ip4addr_aton(gw_text, &gw);
	unsigned mac[6];
	sscanf(mac_text, "%x:%x:%x:%x:%x:%x", &mac[0], &mac[1], &mac[2], &mac[3], &mac[4], &mac[5]);
	u16_t mtu = (u16_t)atoi(mtu_text);

	LOCK_TCPIP_CORE();
	add_loopback();
	/* The aliases first: lwIP routes through the interface added last
	 * first, which must be the main one (its address is the source of
	 * what the stack sends on its subnet). */
	for (naliases = 0; naliases + 1 < nip; naliases++) {
		struct netif *a = &aliases[naliases];
		add_interface(a, mac, mtu, &ip[naliases + 1], &mask[naliases + 1], IP4_ADDR_ANY4);
		netif_set_up(a);
		netif_set_link_up(a);
	}
	add_interface(&nif, mac, mtu, &ip[0], &mask[0], &gw);
	nif.mtu6 = nif.mtu;
	netif_set_default(&nif);
	const char *refused = add_ipv6(ipv6, nipv6);
	if (refused) {
		UNLOCK_TCPIP_CORE();
		return not_ready(EINVAL, "cannot add IPv6 address %s", refused);
	}
	netif_set_up(&nif);
	netif_set_link_up(&nif);
	UNLOCK_TCPIP_CORE();
	return 0;
}

/* The link thread, and the main thread's events: the stack is ready. */
static void start_serving(void)
{
	pthread_t link;
	pthread_create(&link, NULL, link_thread, NULL);

	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	epoll_ctl(ep, EPOLL_CTL_ADD, ctl, &ev);
	ev.data.ptr = &wake;
	epoll_ctl(ep, EPOLL_CTL_ADD, wake, &ev);
	reply(0, 0, 0, VW_READY, NULL, 0, -1);
}

/* The main thread: requests, proxies, and the closed ones to report; once
 * vupy closes the control socket, proxies only, until drained. */
static void __attribute__((noreturn)) main_loop(void)
{
	struct epoll_event events[64];
	flushes = 1;
	for (;;) {
		int n = epoll_wait(ep, events, 64, draining() ? DRAIN_TICK_MS : -1);
		if (n < 0 && errno != EINTR)
			die("epoll_wait: %s", strerror(errno));
		LOCK_TCPIP_CORE();
		for (int i = 0; i < n; i++) {
			if (events[i].data.ptr == NULL) {
				if (draining())   /* vupy went earlier in this batch */
					continue;
				if (events[i].events & EPOLLOUT)
					report_closed();
				if (events[i].events & (EPOLLIN | EPOLLHUP))
					serve();
			}
			else if (events[i].data.ptr != &wake)
				proxy_event(events[i].data.ptr, events[i].events);
		}
		flush_dirty();
		bring_out_the_dead();
		if (draining())
			end_drain_if_done();
		UNLOCK_TCPIP_CORE();
	}
}

int main(int argc, char **argv)
{
	if (argc < 6) {
		fprintf(stderr, "usage: vupy-lwip CTLFD URL MAC MTU IP4/LEN[,IP4/LEN...]|- GW4|- [IP6 ...]\n");
		return 2;
	}
	ctl = atoi(argv[1]);
	prepare_process();
	if (open_link(argv[2]))
		return 1;
	start_lwip();
	if (configure(argv[3], argv[4], argv[5], argc > 6 ? argv[6] : "-", argv + 7, argc > 7 ? argc - 7 : 0))
		return 1;
	start_serving();
	main_loop();
}
