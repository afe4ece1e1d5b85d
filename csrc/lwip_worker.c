/* SPDX-License-Identifier: GPL-2.0-or-later
 * Copyright (C) 2026 the vupy authors */
/* vupy-lwip: one lwIP stack on one VDE link, serving vupy's proxy descriptors.
 *
 * Usage: vupy-lwip CTLFD URL MAC MTU IP4/LEN[,IP4/LEN...]|dhcp|- GW4|- [auto] [IP6 ...]
 * (started by modules/lwip.py, which checks the arguments first).
 *
 * lwIP keeps global state, so each stack is a process of its own.  Two
 * threads share the stack under lwIP's core lock (LWIP_TCPIP_CORE_LOCKING):
 *   - lwIP's tcpip thread runs the timers, and delivers what they make the
 *     stack send itself (the main thread delivers what it makes it send);
 *   - the main thread takes frames from libvdeplug and feeds them in, serves
 *     vupy's requests (csrc/lwip_worker.h) and moves data between lwIP and
 *     the worker's end of each proxy.  One thread for the link and the
 *     proxies, not two: a segment in and its answer out never wait for the
 *     lock to pass between threads, nor wake another thread (measured in
 *     docs/architecture.md, "The lwIP data path").
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
#include <linux/netlink.h>
#include <linux/inet_diag.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>

#include <libvdeplug.h>

#undef TCP_MSS   /* <netinet/tcp.h>'s; lwIP has its own */

#include "lwip/init.h"
#include "lwip/tcpip.h"
#include "lwip/netif.h"
#include "lwip/etharp.h"
#include "lwip/ethip6.h"
#include "lwip/tcp.h"
#include "lwip/udp.h"
#include "lwip/raw.h"
#include "lwip/ip.h"
#include "lwip/inet_chksum.h"
#include "lwip/prot/icmp.h"
#include "lwip/prot/icmp6.h"
#include "lwip/priv/tcp_priv.h"
#include "lwip/nd6.h"
#include "lwip/priv/nd6_priv.h"
#include "lwip/timeouts.h"
#include "netif/ethernet.h"

#include "lwip_worker.h"
#include "lwip_dhcp.h"
#include "lwip_stack.h"

#define VW_FILLER 65536        /* bytes per write that fills a fresh proxy */
#define VW_CHUNK 65536         /* bytes moved from a proxy to lwIP per read */
#define ADDR_CACHE 64          /* source-address memfds kept */
#define DRAIN_TICK_MS 20       /* how often a drain looks at lwIP's connections */
/* How long a connect waits for its next hop's link address: the kernel's
 * 3 solicitations 1 s apart (neigh mcast_solicit, retrans_time_ms), after
 * which it fails the connect with EHOSTUNREACH. */
#define NEIGHBOUR_MS 3000
#define RELEASED_TICK_MS 500   /* how often released proxies are looked for */

struct conn {
	uint64_t id;               /* inode of the program's end */
	int fd;                    /* the worker's end */
	int family, type, protocol;
	int v6only;
	union { struct tcp_pcb *tcp; struct udp_pcb *udp; struct raw_pcb *raw; } pcb;
	u16_t ident;               /* a ping socket's echo identifier, its "port" */
	uint32_t icmp_filter[8];   /* a raw socket's ICMP(6)_FILTER: types it drops */
	int recv_ttl;              /* an ICMP socket's IP_RECVTTL or IPV6_RECVHOPLIMIT */
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

int ctl;                        /* the control socket */
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
static void neighbour_deadline(void *arg);
static int release_proxy(struct conn *c);
static int nreleased;
static int from_network(const uint8_t *frame, ssize_t n);
static void deliver_datagram(struct conn *c, const void *data, size_t len, int afd);
static size_t network_info(char *out, size_t size);
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
	sys_untimeout(neighbour_deadline, c);   /* it must not outlive c */
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
	if (c->state == CONNECTING && release_proxy(c))
		return;
	c->state = DEAD;
	c->fin = 1;
	flush_rx(c);
	/* After the end of file: a proxy that turns writable without one is
	 * connected (vupy asks no SO_ERROR then, ProxyStack.connect). */
	if (c->filler) {   /* a connect failed: wake the program up */
		while (c->filler && recv(c->fd, buffer, c->filler, MSG_DONTWAIT) > 0)
			c->filler = 0;
	}
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
			/* A short read took all there was: epoll tells of more,
			 * sparing a recv that would say EAGAIN.  Not once closing:
			 * the proxy is out of epoll, and is read to its end. */
			if (c->tx_len < VW_CHUNK && !c->closing) {
				watch(c, c->events | EPOLLIN);
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
	/* Only if pump_tx stopped for lwIP's room: else epoll tells of what
	 * the program writes. */
	if (c->tx_off < c->tx_len || !(c->events & EPOLLIN))
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

/* A datagram of len bytes in buffer to c's program, from addr and port;
 * `control` (controllen bytes of cmsgs, for recvmsg) follows the address
 * in its descriptor. */
static void to_program(struct conn *c, u16_t len, const ip_addr_t *addr, u16_t port,
		       const void *control, size_t controllen)
{
	struct sockaddr_storage from;
	socklen_t fromlen = to_sockaddr(c, addr, port, &from);
	if (controllen && fromlen + controllen <= sizeof from) {
		memcpy((char *)&from + fromlen, control, controllen);
		fromlen += controllen;
	}
	int afd = address_fd(&from, fromlen);
	if (afd >= 0)
		deliver_datagram(c, buffer, len, afd);
}

/* len bytes at data to c's program as a datagram, with afd, the memfd of
 * its source address (or of what stands for one). */
static void deliver_datagram(struct conn *c, const void *data, size_t len, int afd)
{
	struct iovec iov = { (void *)data, len };
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

static void udp_received(void *arg, struct udp_pcb *pcb, struct pbuf *p,
			 const ip_addr_t *addr, u16_t port)
{
	(void)pcb;
	u16_t len = pbuf_copy_partial(p, buffer, 0xffff, 0);
	pbuf_free(p);
	to_program(arg, len, addr, port, NULL, 0);
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

#define SOL_UDPLITE 136            /* linux/udp.h's, not in glibc's headers */
#define UDPLITE_SEND_CSCOV 10
#define UDPLITE_RECV_CSCOV 11

/* A UDP-Lite socket's checksum coverage, set or read, as the kernel's:
 * 0 is the whole datagram, anything else at least its 8-byte header. */
static int udplite_option(struct conn *c, int name, int *value, int set)
{
	struct udp_pcb *pcb = c->pcb.udp;
	if (c->type != SOCK_DGRAM || c->protocol != IPPROTO_UDPLITE || !pcb)
		return ENOPROTOOPT;
	u16_t *coverage = name == UDPLITE_SEND_CSCOV ? &pcb->chksum_len_tx
			  : name == UDPLITE_RECV_CSCOV ? &pcb->chksum_len_rx : NULL;
	if (!coverage)
		return ENOPROTOOPT;
	if (set)
		*coverage = (u16_t)(*value != 0 && *value < 8 ? 8 : *value > 0xffff ? 0xffff : *value);
	else
		*value = *coverage;
	return 0;
}

/* Neighbours ----------------------------------------------------------------------- */

/* Whether a connecting pcb's next hop on the link has answered ARP or
 * neighbour solicitation.  What does not go out on the link (lo, the
 * stack's own addresses) needs no neighbour. */
static int next_hop_known(struct tcp_pcb *pcb)
{
	const ip_addr_t *to = &pcb->remote_ip;
	struct netif *n = ip_route(&pcb->local_ip, to);
	if (!n || !(n->flags & NETIF_FLAG_ETHERNET) || local_address(to))
		return 1;
	if (IP_IS_V4(to)) {
		const ip4_addr_t *hop = ip_2_ip4(to), *found;
		struct eth_addr *mac;
		if (!ip4_addr_netcmp(hop, netif_ip4_addr(n), netif_ip4_netmask(n)))
			hop = netif_ip4_gw(n);
		return etharp_find_addr(n, hop, &mac, &found) >= 0;
	}
	/* nd6 records the next hop of each destination it has sent to (the
	 * destination itself on the link, else a router). */
	const ip6_addr_t *hop = ip_2_ip6(to);
	for (int i = 0; i < LWIP_ND6_NUM_DESTINATIONS; i++)
		if (ip6_addr_cmp_zoneless(&destination_cache[i].destination_addr, hop)) {
			hop = &destination_cache[i].next_hop_addr;
			break;
		}
	for (int i = 0; i < LWIP_ND6_NUM_NEIGHBORS; i++)
		if (neighbor_cache[i].state > ND6_INCOMPLETE && neighbor_cache[i].netif == n &&
		    ip6_addr_cmp_zoneless(&neighbor_cache[i].next_hop_address, hop))
			return 1;
	return 0;
}

/* NEIGHBOUR_MS after a connect (in lwIP's tcpip thread): if its SYN is
 * still waiting for the next hop's link address, the connect fails as the
 * kernel's does, where lwIP would resend the SYN for half a minute.  No RST:
 * nothing has reached the peer. */
static void neighbour_deadline(void *arg)
{
	struct conn *c = arg;
	struct tcp_pcb *pcb = c->pcb.tcp;
	if (c->state != CONNECTING || !pcb || pcb->state != SYN_SENT || next_hop_known(pcb))
		return;
	tcp_abandon(pcb, 0);   /* tcp_failed() runs, and wakes the program */
	c->error = EHOSTUNREACH;   /* under the core lock still: before vupy can ask */
}

/* Released proxies ----------------------------------------------------------------- */

/* A failed connect shows on a kernel socket as POLLIN|POLLOUT|POLLERR|POLLHUP,
 * and a write then fails with EPIPE.  An AF_UNIX socket shows the same once
 * its peer is closed with data unread (the kernel sets ECONNRESET on it), so
 * the worker closes its end of a proxy whose connect failed, filler unread
 * (the kernel wakes the program with POLLERR|POLLHUP, then frees the filler
 * and wakes it again with POLLOUT).  It no longer sees the program's last
 * close then, and asks sock_diag whether the program's end is still there
 * instead. */

/* Whether the AF_UNIX socket of inode id exists: 1, 0, or -1 if sock_diag
 * cannot tell. */
static int unix_socket_exists(uint64_t id)
{
	static int diag = -1;
	if (diag < 0 && (diag = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG)) < 0)
		return -1;
	struct { struct nlmsghdr nlh; struct unix_diag_req req; } ask = {
		.nlh = { .nlmsg_len = sizeof ask, .nlmsg_type = SOCK_DIAG_BY_FAMILY,
			 .nlmsg_flags = NLM_F_REQUEST },
		.req = { .sdiag_family = AF_UNIX, .udiag_states = -1, .udiag_ino = (uint32_t)id,
			 .udiag_cookie = { INET_DIAG_NOCOOKIE, INET_DIAG_NOCOOKIE } },
	};
	union { struct nlmsghdr nlh; char buf[1024]; } answer;
	if (send(diag, &ask, sizeof ask, 0) != sizeof ask)
		return -1;
	ssize_t n = recv(diag, &answer, sizeof answer, 0);
	if (n < (ssize_t)sizeof answer.nlh)
		return -1;
	if (answer.nlh.nlmsg_type == SOCK_DIAG_BY_FAMILY)
		return 1;
	if (answer.nlh.nlmsg_type == NLMSG_ERROR &&
	    ((struct nlmsgerr *)NLMSG_DATA(&answer.nlh))->error == -ENOENT)
		return 0;
	return -1;
}

/* Close the worker's end of a proxy whose connect failed; 0 (and nothing
 * done) if sock_diag could not tell when the program closes its end. */
static int release_proxy(struct conn *c)
{
	if (c->fd < 0 || unix_socket_exists(c->id) != 1)
		return 0;
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
	c->events = 0;
	c->state = DEAD;
	nreleased++;
	wake_main();   /* to start looking for the program's close */
	return 1;
}

/* Bury the released conns whose program end is closed, every
 * RELEASED_TICK_MS while there are some. */
static void sweep_released(void)
{
	static struct timespec last;
	struct timespec now;
	if (!nreleased)
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if ((now.tv_sec - last.tv_sec) * 1000 + (now.tv_nsec - last.tv_nsec) / 1000000 < RELEASED_TICK_MS)
		return;
	last = now;
	for (size_t i = 0; i < sizeof table / sizeof *table; i++)
		for (struct conn *c = table[i], *next; c; c = next) {
			next = c->next;
			if (c->fd < 0 && unix_socket_exists(c->id) == 0) {
				nreleased--;
				bury(c);
			}
		}
}

/* ICMP errors ---------------------------------------------------------------------- */

/* lwIP 2.1 hands ICMP errors to no socket (icmp_input answers echo requests
 * and drops the rest).  A kernel tells a connected UDP socket of "port
 * unreachable" for what it sent: its next receive fails with ECONNREFUSED.
 * So the worker reads these itself in the frames from the link, and puts in
 * the socket's proxy a datagram whose source address stands for the error
 * (family AF_UNSPEC, then the errno: vupy/stack.py, "Proxy stacks"). */

/* The connected UDP socket that sent what an ICMP error quotes: the quoted
 * datagram went from its local port to its peer. */
static struct conn *quoted_udp(const ip_addr_t *peer, u16_t local_port, u16_t peer_port)
{
	for (struct udp_pcb *pcb = udp_pcbs; pcb; pcb = pcb->next)
		if ((pcb->flags & (UDP_FLAGS_CONNECTED | UDP_FLAGS_UDPLITE)) == UDP_FLAGS_CONNECTED &&
		    pcb->recv == udp_received &&
		    pcb->local_port == local_port && pcb->remote_port == peer_port &&
		    ip_addr_cmp_zoneless(&pcb->remote_ip, peer))
			return pcb->recv_arg;
	return NULL;
}

/* Where an ICMP or ICMPv6 "port unreachable" to one of the stack's
 * addresses quotes a UDP datagram: its UDP header, its destination in
 * *peer; or NULL. */
static const uint8_t *quoted_udp_header(const uint8_t *frame, ssize_t n, ip_addr_t *peer)
{
	const uint8_t *ip = frame + 14;
	if (n >= 14 + 20 && frame[12] == 0x08 && frame[13] == 0x00) {
		ssize_t hl = (ip[0] & 15) * 4, ihl;
		const uint8_t *icmp = ip + hl, *inner = icmp + 8;
		ip_addr_t to;
		if (ip[9] != IP_PROTO_ICMP || n < 14 + hl + 8 + 20 || icmp[0] != 3 || icmp[1] != 3)
			return NULL;
		u32_t a;
		ihl = (inner[0] & 15) * 4;
		memcpy(&a, ip + 16, 4);
		ip_addr_set_ip4_u32(&to, a);
		if (inner[9] != IP_PROTO_UDP || n < 14 + hl + 8 + ihl + 4 || !local_address(&to) ||
		    ip_addr_isany_val(to))
			return NULL;
		memcpy(&a, inner + 16, 4);
		ip_addr_set_ip4_u32(peer, a);
		return inner + ihl;
	}
	if (n >= 14 + 40 + 8 + 40 + 4 && frame[12] == 0x86 && frame[13] == 0xdd) {
		const uint8_t *icmp = ip + 40, *inner = icmp + 8;
		ip_addr_t to;
		if (ip[6] != IP6_NEXTH_ICMP6 || icmp[0] != 1 || icmp[1] != 4 || inner[6] != IP6_NEXTH_UDP)
			return NULL;
		IP_SET_TYPE(&to, IPADDR_TYPE_V6);
		memcpy(ip_2_ip6(&to)->addr, ip + 24, 16);
		ip6_addr_clear_zone(ip_2_ip6(&to));
		if (!local_address(&to))
			return NULL;
		IP_SET_TYPE(peer, IPADDR_TYPE_V6);
		memcpy(ip_2_ip6(peer)->addr, inner + 24, 16);
		ip6_addr_clear_zone(ip_2_ip6(peer));
		return inner + 40;
	}
	return NULL;
}

static void icmp_error_input(const uint8_t *frame, ssize_t n)
{
	ip_addr_t peer;
	const uint8_t *udp = quoted_udp_header(frame, n, &peer);
	struct conn *c = udp ? quoted_udp(&peer, udp[0] << 8 | udp[1], udp[2] << 8 | udp[3]) : NULL;
	if (!c || c->fd < 0)
		return;
	struct sockaddr_storage error = { .ss_family = AF_UNSPEC };
	int32_t refused = ECONNREFUSED;
	memcpy((char *)&error + 4, &refused, sizeof refused);
	int afd = address_fd(&error, 8);
	if (afd >= 0)
		deliver_datagram(c, "", 0, afd);
}

/* Requests ------------------------------------------------------------------------- */

/* A new socket: its id in *id, its proxy's program end in *program (which
 * an error leaves as it was, or -1). */
static int make_icmp_socket(const struct vw_req *r, int *program, uint64_t *id);

static int make_socket(const struct vw_req *r, int *program, uint64_t *id)
{
	int type = r->b, family = r->a;
	if (family != AF_INET && family != AF_INET6)
		return EAFNOSUPPORT;
	if (type == SOCK_RAW || (type == SOCK_DGRAM && (r->c == IPPROTO_ICMP || r->c == IPPROTO_ICMPV6)))
		return make_icmp_socket(r, program, id);
	if (type == SOCK_STREAM && r->c != 0 && r->c != IPPROTO_TCP)
		return EPROTONOSUPPORT;
	if (type == SOCK_DGRAM && r->c != 0 && r->c != IPPROTO_UDP && r->c != IPPROTO_UDPLITE)
		return EPROTONOSUPPORT;
	if (type != SOCK_STREAM && type != SOCK_DGRAM)
		return ESOCKTNOSUPPORT;
	u8_t iptype = family == AF_INET ? IPADDR_TYPE_V4 : IPADDR_TYPE_ANY;
	struct conn *c = new_conn(family, type, type == SOCK_STREAM ? IPPROTO_TCP
				  : r->c == IPPROTO_UDPLITE ? IPPROTO_UDPLITE : IPPROTO_UDP, program);
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
			if (c->protocol == IPPROTO_UDPLITE)
				udp_set_flags(c->pcb.udp, UDP_FLAGS_UDPLITE);
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

/* Whether there is a route to ip.  lwIP's ip4_route and ip6_route fall
 * back on the default interface when nothing else takes the address: the
 * SYN then fails unseen (ERR_RTE in etharp_output, or in neighbour
 * discovery for want of a router) and the connect times out, where a kernel
 * says ENETUNREACH at once. */
static int routable(const ip_addr_t *ip)
{
	struct netif *n;
	if (IP_IS_V4(ip)) {
		const ip4_addr_t *a = ip_2_ip4(ip);
		if (ip4_addr_isloopback(a))
			return 1;
		NETIF_FOREACH(n)
			if (netif_is_up(n) && netif_is_link_up(n) && !ip4_addr_isany(netif_ip4_addr(n)) &&
			    (ip4_addr_netcmp(a, netif_ip4_addr(n), netif_ip4_netmask(n)) || ip4_addr_islinklocal(a)))
				return 1;
		return netif_is_up(&nif) && !ip4_addr_isany(netif_ip4_gw(&nif));
	}
	const ip6_addr_t *a = ip_2_ip6(ip);
	if (ip6_addr_isloopback(a) || ip6_addr_islinklocal(a) || ip6_addr_ismulticast(a))
		return 1;   /* lo's, or the zone's link: ip6_route decides */
	NETIF_FOREACH(n)
		if (netif_is_up(n) && netif_is_link_up(n))
			for (int i = 0; i < LWIP_IPV6_NUM_ADDRESSES; i++)
				if (ip6_addr_isvalid(netif_ip6_addr_state(n, i)) &&
				    ip6_addr_netcmp_zoneless(a, netif_ip6_addr(n, i)))
					return 1;
	return nd6_find_route(a) != NULL;
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
		if (!e && !ip_addr_isany(&ip) && !routable(&ip))
			e = ENETUNREACH;   /* as a kernel's route lookup at connect */
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
	if (!routable(&ip))
		return ENETUNREACH;
	err_t err = tcp_connect(c->pcb.tcp, &ip, port, tcp_connected);
	if (err != ERR_OK)
		return err == ERR_RTE ? ENETUNREACH : err_to_errno(err);
	c->state = CONNECTING;
	sys_timeout(NEIGHBOUR_MS, neighbour_deadline, c);
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
	if (level == SOL_UDPLITE)
		return udplite_option(c, name, value, 0);
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
	if (level == SOL_UDPLITE)
		return udplite_option(c, name, &v, 1);
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
	/* lo says it is one; its MTU is a kernel lo's, which lwIP's u16 cannot
	 * hold (the largest IP packet fits either way). */
	return snprintf(out, size, "link %s %d %u %02x:%02x:%02x:%02x:%02x:%02x %s%s\n", name,
			netif_get_index(netif), netif == &lo ? 65536u : netif->mtu,
			h[0], h[1], h[2], h[3], h[4], h[5],
			netif_is_up(netif) ? "up" : "down", netif == &lo ? " loopback" : "");
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

/* Configuration from inside: ip addr, ip link, ip route -------------------------
 *
 * vupy (vupy/rtnetlink.py) has decided, as the kernel would, that the change
 * is to be made (the link exists, the address or route is there or not);
 * what is refused here is what lwIP 2.1 cannot do.  Routes are what lwIP
 * has: the connected ones of the addresses, one IPv4 gateway (nif's), and
 * IPv6 default routers in neighbour discovery's list, kept there for ever
 * instead of for an advertised lifetime. */

#define FOREVER 0xffffffffu    /* an ND lifetime, in seconds: a static entry */

static void add_interface(struct netif *netif, const unsigned mac[6], u16_t mtu,
			  const ip4_addr_t *ip, const ip4_addr_t *mask, const ip4_addr_t *gw);

/* The interfaces of the link: nif, and the aliases with an address. */
#define FOREACH_ON_LINK(n) \
	for (int k_ = -1; k_ < naliases; k_++) \
		if (((n) = k_ < 0 ? &nif : &aliases[k_]) == &nif || !ip4_addr_isany(netif_ip4_addr(n)))

/* The interface holding an IPv4 address of the link, or NULL. */
static struct netif *holding(const ip4_addr_t *ip)
{
	struct netif *n;
	FOREACH_ON_LINK(n)
		if (!ip4_addr_isany(netif_ip4_addr(n)) && ip4_addr_cmp(netif_ip4_addr(n), ip))
			return n;
	return NULL;
}

/* nif's gateway goes with the last address of its subnet, as a kernel
 * drops a route whose gateway is no longer on a connected subnet. */
static void drop_unreachable_gw(void)
{
	struct netif *n;
	if (ip4_addr_isany(netif_ip4_gw(&nif)))
		return;
	FOREACH_ON_LINK(n)
		if (!ip4_addr_isany(netif_ip4_addr(n)) &&
		    ip4_addr_netcmp(netif_ip4_gw(&nif), netif_ip4_addr(n), netif_ip4_netmask(n)))
			return;
	netif_set_gw(&nif, IP4_ADDR_ANY4);
}

/* lwIP routes through the interface listed first among those on the
 * destination's subnet, and netif_add lists a new one first: nif goes back
 * to the head, so that its address stays the source on its subnet. */
static void nif_first(void)
{
	struct netif **p = &netif_list;
	while (*p && *p != &nif)
		p = &(*p)->next;
	if (!*p || p == &netif_list)
		return;
	*p = nif.next;
	nif.next = netif_list;
	netif_list = &nif;
}

static int add_ipv4(const ip4_addr_t *ip, const ip4_addr_t *mask)
{
	struct netif *n = holding(ip);
	if (n) {   /* ip addr replace: a new prefix */
		netif_set_netmask(n, mask);
		return 0;
	}
	if (ip4_addr_isany(netif_ip4_addr(&nif))) {
		netif_set_addr(&nif, ip, mask, netif_ip4_gw(&nif));
		return 0;
	}
	int i = 0;
	while (i < naliases && !ip4_addr_isany(netif_ip4_addr(&aliases[i])))
		i++;
	if (i == MAX_ALIASES)
		return ENOSPC;
	unsigned mac[6];
	for (int b = 0; b < 6; b++)
		mac[b] = nif.hwaddr[b];
	add_interface(&aliases[i], mac, nif.mtu, ip, mask, IP4_ADDR_ANY4);
	if (i == naliases)
		naliases++;
	if (netif_is_up(&nif)) {
		netif_set_up(&aliases[i]);
		netif_set_link_up(&aliases[i]);
	}
	nif_first();
	return 0;
}

/* An alias's address gone: the slot is free (an address of "any"). */
static void free_alias(struct netif *a)
{
	netif_set_addr(a, IP4_ADDR_ANY4, IP4_ADDR_ANY4, IP4_ADDR_ANY4);
	netif_remove(a);
}

/* Deleting nif's address promotes an alias's, if there is one (a kernel
 * promotes a secondary address likewise); connections on the promoted
 * address are reset, since lwIP binds them to the interface. */
static int del_ipv4(const ip4_addr_t *ip)
{
	struct netif *n = holding(ip);
	if (!n)
		return EADDRNOTAVAIL;
	if (n != &nif) {
		free_alias(n);
	} else {
		struct netif *a = NULL;
		for (int i = 0; i < naliases && !a; i++)
			if (!ip4_addr_isany(netif_ip4_addr(&aliases[i])))
				a = &aliases[i];
		ip4_addr_t next = { 0 }, mask = { 0 };
		if (a) {
			ip4_addr_copy(next, *netif_ip4_addr(a));
			ip4_addr_copy(mask, *netif_ip4_netmask(a));
			free_alias(a);
		}
		netif_set_addr(&nif, &next, &mask, netif_ip4_gw(&nif));
	}
	drop_unreachable_gw();
	return 0;
}

/* IPv6 addresses are nif's, /64 (lwIP 2.1 knows no other prefix length),
 * in LWIP_IPV6_NUM_ADDRESSES slots; preferred at once, as the SPEC's are. */
static int set_ipv6(int add, const ip6_addr_t *ip, int prefixlen)
{
	s8_t idx = netif_get_ip6_addr_match(&nif, ip);
	if (!add) {
		if (idx < 0)
			return EADDRNOTAVAIL;
		netif_ip6_addr_set_state(&nif, idx, IP6_ADDR_INVALID);
		return 0;
	}
	if (prefixlen != 64)
		return EOPNOTSUPP;
	if (idx >= 0)
		return 0;
	if (netif_add_ip6_address(&nif, ip, &idx) != ERR_OK)
		return ENOSPC;
	netif_ip6_addr_set_state(&nif, idx, IP6_ADDR_PREFERRED);
	return 0;
}

/* VW_ADDR */
static int change_address(const struct vw_req *r, const uint8_t *payload, size_t len)
{
	if (r->id != (uint64_t)netif_get_index(&nif))
		return EOPNOTSUPP;   /* lo keeps 127.0.0.1/8 and ::1 */
	if (len == 4) {
		ip4_addr_t ip, mask;
		memcpy(&ip.addr, payload, 4);
		mask.addr = r->b ? htonl(0xffffffffu << (32 - r->b)) : 0;
		return r->a ? add_ipv4(&ip, &mask) : del_ipv4(&ip);
	}
	if (len == 16) {
		ip6_addr_t ip;
		memcpy(ip.addr, payload, 16);
		ip6_addr_clear_zone(&ip);
		if (ip6_addr_islinklocal(&ip))
			ip6_addr_assign_zone(&ip, IP6_UNICAST, &nif);
		return set_ipv6(r->a, &ip, r->b);
	}
	return EINVAL;
}

/* VW_LINK: lo goes up and down; vde0 (nif and its aliases, one link) also
 * takes a new MTU and MAC.  Down drops the routes through the link, as a
 * kernel does (lwIP's netif_set_down drops the IPv6 ones), and up brings
 * back the connected ones. */
static int change_link(const struct vw_req *r, const uint8_t *payload, size_t len)
{
	struct netif *n;
	if (r->id == (uint64_t)netif_get_index(&lo)) {
		if (r->b || len)
			return EOPNOTSUPP;
		if (r->a == 0)
			netif_set_down(&lo);
		else if (r->a == 1)
			netif_set_up(&lo);
		return 0;
	}
	if (r->id != (uint64_t)netif_get_index(&nif))
		return ENODEV;
	if (len && len != 6)
		return EINVAL;
	FOREACH_ON_LINK(n) {
		if (r->b) {
			n->mtu = (u16_t)r->b;
			n->mtu6 = (u16_t)r->b;
		}
		if (len)
			memcpy(n->hwaddr, payload, 6);
		if (r->a == 0)
			netif_set_down(n);
		else if (r->a == 1)
			netif_set_up(n);   /* if it was down, it announces itself */
		/* Peers learn a new MAC before their caches would time out. */
		if (len && netif_is_up(n) && !ip4_addr_isany(netif_ip4_addr(n)))
			etharp_gratuitous(n);
	}
	if (r->a == 0)
		netif_set_gw(&nif, IP4_ADDR_ANY4);
	return 0;
}

/* The neighbour cache entry for a router at gw on nif, made (unresolved:
 * neighbour discovery solicits it) if there is none; NULL if it is full. */
static struct nd6_neighbor_cache_entry *router_entry(const ip6_addr_t *gw)
{
	struct nd6_neighbor_cache_entry *free_entry = NULL;
	for (int i = 0; i < LWIP_ND6_NUM_NEIGHBORS; i++) {
		struct nd6_neighbor_cache_entry *e = &neighbor_cache[i];
		if (e->state != ND6_NO_ENTRY && e->netif == &nif && ip6_addr_cmp(&e->next_hop_address, gw))
			return e;
		if (e->state == ND6_NO_ENTRY && !free_entry)
			free_entry = e;
	}
	if (free_entry) {
		memset(free_entry, 0, sizeof *free_entry);
		ip6_addr_copy(free_entry->next_hop_address, *gw);
		free_entry->netif = &nif;
		free_entry->state = ND6_INCOMPLETE;
	}
	return free_entry;
}

/* Forget nif's default routers (all of them, or the one at gw). */
static void drop_routers(const ip6_addr_t *gw)
{
	for (int i = 0; i < LWIP_ND6_NUM_ROUTERS; i++) {
		struct nd6_router_list_entry *d = &default_router_list[i];
		if (!d->neighbor_entry || d->neighbor_entry->netif != &nif ||
		    (gw && !ip6_addr_cmp(&d->neighbor_entry->next_hop_address, gw)))
			continue;
		d->neighbor_entry->isrouter = 0;
		memset(d, 0, sizeof *d);
	}
	nd6_clear_destination_cache();
}

static int set_default_router6(int add, const ip6_addr_t *gw)
{
	if (!add) {
		drop_routers(gw);
		return 0;
	}
	drop_routers(NULL);   /* one default route: this one replaces any */
	struct nd6_router_list_entry *slot = NULL;
	for (int i = 0; i < LWIP_ND6_NUM_ROUTERS && !slot; i++)
		if (!default_router_list[i].neighbor_entry)
			slot = &default_router_list[i];
	struct nd6_neighbor_cache_entry *e = slot ? router_entry(gw) : NULL;
	if (!e)
		return ENOSPC;
	e->isrouter = 1;   /* kept by nd6_tmr while unresolved */
	slot->neighbor_entry = e;
	slot->invalidation_timer = FOREVER;
	slot->flags = 0;
	return 0;
}

/* VW_ROUTE: an IPv4 or IPv6 default route.  Nothing else is a route lwIP
 * can take: not a gateway for anything but the default, not a connected
 * route apart from its address (IPv4 has none; neighbour discovery would
 * take an IPv6 /64 prefix, but solicits a neighbour only from an address
 * in the neighbour's /64, so the prefix of no address is never reached). */
static int change_route(const struct vw_req *r, const uint8_t *payload, size_t len)
{
	if (r->id != (uint64_t)netif_get_index(&nif))
		return EOPNOTSUPP;
	if (len == 4 || len == 8) {
		ip4_addr_t gw = { 0 };
		if (len != 8 || r->b != 0)
			return EOPNOTSUPP;
		memcpy(&gw.addr, payload + 4, 4);
		netif_set_gw(&nif, r->a ? &gw : IP4_ADDR_ANY4);
		return 0;
	}
	if (len == 16 || (len == 32 && r->b != 0))
		return EOPNOTSUPP;
	if (len != 32)
		return EINVAL;
	ip6_addr_t gw;
	memcpy(gw.addr, payload + 16, 16);
	ip6_addr_clear_zone(&gw);
	if (ip6_addr_islinklocal(&gw))
		ip6_addr_assign_zone(&gw, IP6_UNICAST, &nif);
	return set_default_router6(r->a, &gw);
}

/* Interfaces, addresses and routes, one per line, for vupy's netlink answers:
 *   link NAME INDEX MTU MAC up|down
 *   addr INDEX FAMILY ADDRESS PREFIXLEN
 *   route INDEX FAMILY DESTINATION PREFIXLEN GATEWAY|-
 * and for what the network gave (network_info):
 *   lifetime INDEX ADDRESS VALID PREFERRED   (seconds left; 4294967295: for ever)
 *   dns FAMILY ADDRESS                                          */
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
	n += network_info(out + n, size - n);
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

/* ICMP: ping and raw sockets ------------------------------------------------------- */

/* A ping socket (SOCK_DGRAM with IPPROTO_ICMP or IPPROTO_ICMPV6) is the
 * kernel's: the program sends echo requests, the stack puts in the socket's
 * identifier (its "port": bound, or chosen at the first send) and the
 * checksum, and the program receives the echo replies that carry that
 * identifier, ICMP header and payload, with their source.  A raw socket
 * (SOCK_RAW, the same protocols; vupy lets only callers with CAP_NET_RAW
 * make one) receives every ICMP message its filter lets through, IPv4 ones
 * with their IP header and IPv6 ones without, as the kernel's do, and sends
 * what the program wrote after an IP header of the stack's; the stack fills
 * in ICMPv6 checksums (RFC 3542), the program ICMPv4 ones. */

#define ICMP_FILTER_LEVEL 255      /* SOL_RAW */
#define ICMP_FILTER_NAME 1         /* ICMP_FILTER (linux/icmp.h), and ICMP6_FILTER at IPPROTO_ICMPV6 */

static int is_icmp(const struct conn *c)
{
	return c->type == SOCK_RAW || c->protocol == IPPROTO_ICMP || c->protocol == IPPROTO_ICMPV6;
}

static int is_ping(const struct conn *c)
{
	return c->type == SOCK_DGRAM && is_icmp(c);
}

static u8_t echo_request(const struct conn *c)
{
	return c->family == AF_INET ? ICMP_ECHO : ICMP6_TYPE_EREQ;
}

static u8_t echo_reply(const struct conn *c)
{
	return c->family == AF_INET ? ICMP_ER : ICMP6_TYPE_EREP;
}

/* Whether c's ICMP(6)_FILTER drops messages of this type (ICMP_FILTER
 * covers types 0 to 31 only). */
static int filtered(const struct conn *c, u8_t type)
{
	if (c->family == AF_INET && type >= 32)
		return 0;
	return (c->icmp_filter[type >> 5] >> (type & 31)) & 1;
}

/* lwIP's raw input: every ICMP(v6) packet of c's family, at its IP header.
 * It is copied, never eaten: lwIP's own ICMP (which answers echo requests)
 * and the other sockets see it too. */
static u8_t icmp_received(void *arg, struct raw_pcb *pcb, struct pbuf *p, const ip_addr_t *addr)
{
	struct conn *c = arg;
	u16_t header = ip_current_header_tot_len();
	u8_t icmp[8];
	(void)pcb;
	u16_t got = pbuf_copy_partial(p, icmp, sizeof icmp, header);
	if (is_ping(c)) {
		if (got < sizeof icmp || icmp[0] != echo_reply(c) || icmp[1] != 0 ||
		    ((icmp[4] << 8) | icmp[5]) != c->ident)
			return 0;
	} else if (got < 4 || filtered(c, icmp[0])) {
		return 0;
	}
	u16_t skip = c->family == AF_INET && c->type == SOCK_RAW ? 0 : header;
	union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } u;
	size_t controllen = 0;
	if (c->recv_ttl) {   /* ping shows it */
		int ttl = c->family == AF_INET ? IPH_TTL(ip4_current_header()) : IP6H_HOPLIM(ip6_current_header());
		memset(&u, 0, sizeof u);   /* the padding too: address_fd compares bytes */
		u.align.cmsg_len = CMSG_LEN(sizeof ttl);
		u.align.cmsg_level = c->family == AF_INET ? IPPROTO_IP : IPPROTO_IPV6;
		u.align.cmsg_type = c->family == AF_INET ? IP_TTL : IPV6_HOPLIMIT;
		memcpy(CMSG_DATA(&u.align), &ttl, sizeof ttl);
		controllen = sizeof u.buf;
	}
	to_program(c, pbuf_copy_partial(p, buffer, 0xffff, skip), addr, 0, u.buf, controllen);
	return 0;
}

static int make_icmp_socket(const struct vw_req *r, int *program, uint64_t *id)
{
	int family = r->a, type = r->b;
	int protocol = family == AF_INET ? IPPROTO_ICMP : IPPROTO_ICMPV6;
	if (r->c != protocol)
		return EPROTONOSUPPORT;
	struct conn *c = new_conn(family, type, protocol, program);
	if (!c)
		return ENOMEM;
	c->pcb.raw = raw_new_ip_type(family == AF_INET ? IPADDR_TYPE_V4 : IPADDR_TYPE_V6, (u8_t)protocol);
	if (!c->pcb.raw) {
		close(*program);
		*program = -1;
		bury(c);
		return ENOBUFS;
	}
	if (family == AF_INET6) {
		c->pcb.raw->chksum_reqd = 1;
		c->pcb.raw->chksum_offset = 2;
	}
	raw_recv(c->pcb.raw, icmp_received, c);
	watch(c, EPOLLIN);
	*id = c->id;
	return 0;
}

/* A sockaddr from the program, as an address of c's family, or an errno:
 * ICMPv6 has no IPv4 peers. */
static int icmp_address(const struct conn *c, const void *buf, size_t len, ip_addr_t *ip)
{
	u16_t port;
	int e = from_sockaddr(c, buf, len, ip, &port);
	if (e)
		return e == ENETUNREACH ? EINVAL : e;
	if (c->family == AF_INET6 && IP_IS_ANY_TYPE_VAL(*ip))
		ip_addr_copy(*ip, *IP6_ADDR_ANY);
	return c->family == AF_INET6 && !IP_IS_V6(ip) ? EINVAL : 0;
}

/* Whether a ping socket of c's family other than c has identifier ident. */
static int ident_taken(const struct conn *c, u16_t ident)
{
	for (size_t i = 0; i < sizeof table / sizeof *table; i++)
		for (const struct conn *o = table[i]; o; o = o->next)
			if (o != c && is_ping(o) && o->family == c->family && o->ident == ident)
				return 1;
	return 0;
}

/* Give a ping socket identifier ident, or if 0 the next free one, as the
 * kernel does. */
static int choose_ident(struct conn *c, u16_t ident)
{
	static u16_t rover;
	if (ident) {
		if (ident_taken(c, ident))
			return EADDRINUSE;
		c->ident = ident;
		return 0;
	}
	for (int tries = 0; tries < 0xffff; tries++) {
		if (!++rover)
			rover = 1;
		if (!ident_taken(c, rover)) {
			c->ident = rover;
			return 0;
		}
	}
	return EAGAIN;
}

static int icmp_bind(struct conn *c, const void *addr, size_t len)
{
	ip_addr_t ip;
	int e = icmp_address(c, addr, len, &ip);
	if (e)
		return e == EINVAL && len >= sizeof(struct sockaddr_in) ? EADDRNOTAVAIL : e;
	if (!local_address(&ip))
		return EADDRNOTAVAIL;
	if (is_ping(c)) {
		u16_t port;
		memcpy(&port, (const uint8_t *)addr + 2, sizeof port);   /* sin_port, sin6_port */
		if (c->ident)
			return EINVAL;
		if ((e = choose_ident(c, ntohs(port))))
			return e;
	}
	return err_to_errno(raw_bind(c->pcb.raw, &ip));
}

static int icmp_connect(struct conn *c, const void *addr, size_t len)
{
	ip_addr_t ip;
	sa_family_t family = AF_UNSPEC;
	if (len >= sizeof family)
		memcpy(&family, addr, sizeof family);
	if (family == AF_UNSPEC) {
		raw_disconnect(c->pcb.raw);
		return 0;
	}
	int e = icmp_address(c, addr, len, &ip);
	return e ? e : err_to_errno(raw_connect(c->pcb.raw, &ip));
}

/* One message from the program to `to` (NULL: the connected peer). */
static int icmp_send(struct conn *c, const uint8_t *data, size_t len, const ip_addr_t *to)
{
	int e;
	if (len > 0xffff - IP6_HLEN)
		return EMSGSIZE;
	if (c->family == AF_INET6 && len < 4)   /* no room for the checksum the stack computes */
		return EINVAL;
	if (!to && !raw_is_flag_set(c->pcb.raw, RAW_FLAGS_CONNECTED))
		return EDESTADDRREQ;
	if (is_ping(c)) {
		if (len < sizeof(struct icmp_echo_hdr) || data[0] != echo_request(c) || data[1] != 0)
			return EINVAL;
		if (!c->ident && (e = choose_ident(c, 0)))
			return e;
	}
	struct pbuf *p = pbuf_alloc(PBUF_IP, (u16_t)len, PBUF_RAM);
	if (!p)
		return ENOBUFS;
	u8_t *icmp = p->payload;
	memcpy(icmp, data, len);
	if (is_ping(c)) {
		icmp[4] = (u8_t)(c->ident >> 8);
		icmp[5] = (u8_t)c->ident;
	}
	if (len >= 4 && (c->family == AF_INET6 || is_ping(c)))
		icmp[2] = icmp[3] = 0;   /* the stack's to compute */
	if (c->family == AF_INET && is_ping(c)) {
		u16_t sum = inet_chksum(icmp, (u16_t)len);
		memcpy(icmp + 2, &sum, sizeof sum);
	}
	err_t err = to ? raw_sendto(c->pcb.raw, p, to) : raw_send(c->pcb.raw, p);
	pbuf_free(p);
	return err == ERR_OK ? 0 : err == ERR_RTE ? ENETUNREACH : err_to_errno(err);
}

/* Datagrams (UDP, UDP-Lite) and ICMP messages the program wrote with
 * send()/write(), and its last close.  What cannot be sent shows in
 * SO_ERROR: the program's send() has succeeded on the proxy already. */
static void pump_datagrams(struct conn *c, uint32_t events)
{
	for (;;) {
		ssize_t n = recv(c->fd, buffer, sizeof buffer, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || (n == 0 && (events & EPOLLHUP))) {
			if (events & EPOLLHUP) {
				if (is_icmp(c))
					raw_remove(c->pcb.raw);
				else
					udp_remove(c->pcb.udp);
				c->pcb.udp = NULL;
				bury(c);
			}
			return;
		}
		if (is_icmp(c)) {
			int e = icmp_send(c, buffer, (size_t)n, NULL);
			if (e)
				c->error = e;
		} else if (c->pcb.udp->flags & UDP_FLAGS_CONNECTED) {
			udp_send_data(c, buffer, n, NULL, 0);
		} else {
			c->error = EDESTADDRREQ;
		}
	}
}

static int icmp_sendto(struct conn *c, const struct vw_req *r, const uint8_t *payload, size_t len,
		       struct answer *out)
{
	ip_addr_t ip;
	size_t alen = (size_t)r->b;
	int e;
	if (alen > len)
		return EINVAL;
	if (alen && (e = icmp_address(c, payload, alen, &ip)))
		return e;
	e = icmp_send(c, payload + alen, len - alen, alen ? &ip : NULL);
	out->val = (int64_t)(len - alen);
	return e;
}

static int icmp_name(struct conn *c, int peer, struct answer *out)
{
	struct raw_pcb *pcb = c->pcb.raw;
	if (peer && !raw_is_flag_set(pcb, RAW_FLAGS_CONNECTED))
		return ENOTCONN;
	/* A raw socket's "port" is its protocol, as the kernel's. */
	u16_t port = peer ? 0 : is_ping(c) ? c->ident : (u16_t)c->protocol;
	out->len = to_sockaddr(c, peer ? &pcb->remote_ip : &pcb->local_ip, port, &out->sa);
	out->payload = &out->sa;
	return 0;
}

static int is_filter_option(const struct conn *c, int level, int name)
{
	return c->type == SOCK_RAW && name == ICMP_FILTER_NAME &&
	       level == (c->family == AF_INET ? ICMP_FILTER_LEVEL : IPPROTO_ICMPV6);
}

/* What a program asks for ancillary data with (ping asks for all of
 * these): accepted; only the TTL (hop limit) is delivered (docs/lwip.md). */
static int is_ancillary_option(const struct conn *c, int level, int name)
{
	if (level == IPPROTO_IPV6 && c->family != AF_INET6)
		return 0;
	switch (level) {
	case SOL_SOCKET:   /* SO_TIMESTAMP, SO_TIMESTAMPNS: _OLD and _NEW */
		return name == 29 || name == 35 || name == 63 || name == 64;
	case IPPROTO_IP:
		return name == IP_RECVERR || name == IP_RECVTTL || name == IP_RETOPTS ||
		       name == IP_RECVTOS || name == IP_PKTINFO;
	case IPPROTO_IPV6:
		return name == IPV6_RECVERR || name == IPV6_RECVHOPLIMIT || name == IPV6_RECVPKTINFO ||
		       name == IPV6_RECVTCLASS;
	}
	return 0;
}

static int icmp_setsockopt(struct conn *c, int level, int name, const void *val, size_t len)
{
	if (is_filter_option(c, level, name)) {
		size_t room = c->family == AF_INET ? sizeof c->icmp_filter[0] : sizeof c->icmp_filter;
		memcpy(c->icmp_filter, val, len < room ? len : room);
		return 0;
	}
	if (is_ancillary_option(c, level, name) ||
	    (c->family == AF_INET6 && level == IPPROTO_IPV6 && name == IPV6_V6ONLY)) {
		int v;
		if (len < sizeof v)
			return EINVAL;
		memcpy(&v, val, sizeof v);
		if ((level == IPPROTO_IP && name == IP_RECVTTL) ||
		    (level == IPPROTO_IPV6 && name == IPV6_RECVHOPLIMIT))
			c->recv_ttl = v != 0;
		return 0;   /* IPV6_V6ONLY: ICMPv6 is IPv6 only anyway */
	}
	return do_setsockopt(c, level, name, val, len);
}

static int icmp_getsockopt(struct conn *c, const struct vw_req *r, struct answer *out)
{
	if (is_filter_option(c, r->a, r->b)) {
		size_t room = c->family == AF_INET ? sizeof c->icmp_filter[0] : sizeof c->icmp_filter;
		out->len = (size_t)r->c < room ? (size_t)r->c : room;
		memcpy(&out->sa, c->icmp_filter, out->len);
		out->payload = &out->sa;
		return 0;
	}
	return serve_getsockopt(c, r, out);
}

/* The requests on an ICMP socket (dispatch's, for the others). */
static int dispatch_icmp(struct conn *c, const struct vw_req *r, const uint8_t *payload, size_t len,
			 struct answer *out)
{
	switch (r->op) {
	case VW_BIND:
		return icmp_bind(c, payload, len);
	case VW_CONNECT:
		return icmp_connect(c, payload, len);
	case VW_LISTEN:
	case VW_ACCEPT:
		return EOPNOTSUPP;
	case VW_GETSOCKNAME:
	case VW_GETPEERNAME:
		return icmp_name(c, r->op == VW_GETPEERNAME, out);
	case VW_GETSOCKOPT:
		return icmp_getsockopt(c, r, out);
	case VW_SETSOCKOPT:
		return icmp_setsockopt(c, r->a, r->b, payload, len);
	case VW_SENDTO:
		return icmp_sendto(c, r, payload, len, out);
	}
	return EINVAL;
}

/* The socket list ------------------------------------------------------------------- */

/* Linux's TCP states (include/net/tcp_states.h), which ss reads. */
enum { LINUX_ESTABLISHED = 1, LINUX_SYN_SENT, LINUX_SYN_RECV, LINUX_FIN_WAIT1, LINUX_FIN_WAIT2,
       LINUX_TIME_WAIT, LINUX_CLOSE, LINUX_CLOSE_WAIT, LINUX_LAST_ACK, LINUX_LISTEN, LINUX_CLOSING };

static int linux_tcp_state(enum tcp_state state)
{
	switch (state) {
	case LISTEN: return LINUX_LISTEN;
	case SYN_SENT: return LINUX_SYN_SENT;
	case SYN_RCVD: return LINUX_SYN_RECV;
	case ESTABLISHED: return LINUX_ESTABLISHED;
	case FIN_WAIT_1: return LINUX_FIN_WAIT1;
	case FIN_WAIT_2: return LINUX_FIN_WAIT2;
	case CLOSE_WAIT: return LINUX_CLOSE_WAIT;
	case CLOSING: return LINUX_CLOSING;
	case LAST_ACK: return LINUX_LAST_ACK;
	case TIME_WAIT: return LINUX_TIME_WAIT;
	default: return LINUX_CLOSE;
	}
}

/* One line of the list (see list_sockets). */
static size_t socket_line(char *out, size_t size, uint64_t id, int family, int protocol, int state,
			  const ip_addr_t *local, u16_t lport, const ip_addr_t *remote, u16_t rport)
{
	struct conn as = { .family = family };
	struct sockaddr_storage sa;
	char l[INET6_ADDRSTRLEN], r[INET6_ADDRSTRLEN];
	to_sockaddr(&as, local, 0, &sa);
	inet_ntop(family, family == AF_INET ? (void *)&((struct sockaddr_in *)&sa)->sin_addr
		  : (void *)&((struct sockaddr_in6 *)&sa)->sin6_addr, l, sizeof l);
	to_sockaddr(&as, remote, 0, &sa);
	inet_ntop(family, family == AF_INET ? (void *)&((struct sockaddr_in *)&sa)->sin_addr
		  : (void *)&((struct sockaddr_in6 *)&sa)->sin6_addr, r, sizeof r);
	return (size_t)snprintf(out, size, "%llu %d %d %d %s %u %s %u\n", (unsigned long long)id,
				protocol, state, family, l, lport, r, rport);
}

/* A TCP pcb's line: that of the conn id, or 0 for one lwIP keeps after the
 * program closed it (FIN_WAIT, TIME_WAIT, ...). */
static size_t tcp_line(char *out, size_t size, uint64_t id, int family, const struct tcp_pcb *pcb)
{
	int listening = pcb->state == LISTEN;
	return socket_line(out, size, id, family, IPPROTO_TCP, linux_tcp_state(pcb->state),
			   &pcb->local_ip, pcb->local_port, listening ? NULL : &pcb->remote_ip,
			   listening ? 0 : pcb->remote_port);
}

/* The stack's TCP and UDP sockets, one a line, for vupy's sock_diag answers
 * (what the kernel would list: TCP ones listening or connected, UDP ones
 * bound), from the skip-th on, as many as fit; *next is where the rest
 * begin, or 0:
 *   ID PROTOCOL STATE FAMILY LOCAL LPORT REMOTE RPORT
 * ID is the proxy's (0 for a connection the program has closed), STATE
 * Linux's TCP state (UDP: ESTABLISHED if connected, else CLOSE). */
static size_t list_sockets(char *out, size_t size, int64_t skip, int64_t *next)
{
	size_t n = 0;
	int64_t k = 0;
	char line[256];
	*next = 0;
#define EMIT(call) do { \
		if (k++ < skip) break; \
		size_t m = (call); \
		if (n + m >= size) { *next = k - 1; return n; } \
		memcpy(out + n, line, m); n += m; \
	} while (0)
	for (size_t i = 0; i < sizeof table / sizeof *table; i++)
		for (const struct conn *c = table[i]; c; c = c->next) {
			if (c->type == SOCK_STREAM && c->pcb.tcp && c->pcb.tcp->state != CLOSED)
				EMIT(tcp_line(line, sizeof line, c->id, c->family, c->pcb.tcp));
			else if (c->type == SOCK_DGRAM && !is_icmp(c) && c->pcb.udp && c->pcb.udp->local_port) {
				const struct udp_pcb *u = c->pcb.udp;
				int connected = (u->flags & UDP_FLAGS_CONNECTED) != 0;
				EMIT(socket_line(line, sizeof line, c->id, c->family, c->protocol,
						 connected ? LINUX_ESTABLISHED : LINUX_CLOSE, &u->local_ip,
						 u->local_port, connected ? &u->remote_ip : NULL,
						 connected ? u->remote_port : 0));
			}
		}
	struct tcp_pcb *lists[] = { tcp_active_pcbs, tcp_tw_pcbs };
	for (size_t i = 0; i < sizeof lists / sizeof *lists; i++)
		for (const struct tcp_pcb *pcb = lists[i]; pcb; pcb = pcb->next)
			if (!pcb->callback_arg)
				EMIT(tcp_line(line, sizeof line, 0,
					      IP_IS_V4_VAL(pcb->local_ip) ? AF_INET : AF_INET6, pcb));
#undef EMIT
	return n;
}

static int serve_sockets(const struct vw_req *r, struct answer *out)
{
	static char text[VW_MAX_PAYLOAD];
	out->len = list_sockets(text, sizeof text, r->a, &out->val);
	out->payload = text;
	return 0;
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
	case VW_SOCKETS:
		return serve_sockets(r, out);
	case VW_ADDR:
		return change_address(r, payload, len);
	case VW_LINK:
		return change_link(r, payload, len);
	case VW_ROUTE:
		return change_route(r, payload, len);
	}
	struct conn *c = request_conn(r, &e);
	if (!c)
		return e;
	if (is_icmp(c))
		return dispatch_icmp(c, r, payload, len, out);
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
	if (c->type == SOCK_DGRAM || is_icmp(c)) {
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

/* The eventfd's count, which only says the loop is to run once more. */
static void take_wake(void)
{
	uint64_t count;
	if (read(wake, &count, sizeof count) < 0)
		return;
}

static void bring_out_the_dead(void)
{
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

struct tcp_pcb *owing_pcb(void)
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
	if (martian(frame, n) || from_network(frame, n)) {
		pbuf_free(p);
		return;
	}
	icmp_error_input(frame, n);
	if (naliases && n >= 42 && frame[12] == 0x08 && frame[13] == 0x06)
		for (int i = 0; i < naliases; i++)
			if (memcmp(frame + 38, &netif_ip4_addr(&aliases[i])->addr, 4) == 0 &&
			    !ip4_addr_isany(netif_ip4_addr(&aliases[i])))   /* a free slot */
				to = &aliases[i];
	if (to->input(p, to) != ERR_OK)
		pbuf_free(p);
}

/* The frames the link has (it is readable), into lwIP, with the core lock
 * held; then what they brought, out to the proxies. */
static void link_frames(void)
{
	static uint8_t frame[65536 + 64];
	struct pollfd data = { .fd = vde_datafd(link_conn), .events = POLLIN };
	ssize_t n = vde_recv(link_conn, frame, sizeof frame, 0);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		fprintf(stderr, "vupy-lwip: the link is gone (%s)\n", n < 0 ? strerror(errno) : "closed");
		exit(3);
	}
	/* Take in what else is there before waking programs up. */
	for (int more = 0; n >= 14 && more < 64; more++) {
		/* PBUF_RAM, not the pool: Debian's lwIP overflows its heap when a
		 * full-size frame comes from PBUF_POOL. */
		struct pbuf *p = pbuf_alloc(PBUF_RAW, (u16_t)n, PBUF_RAM);
		if (!p)
			break;
		memcpy(p->payload, frame, n);
		link_input(p, frame, n);
		if (poll(&data, 1, 0) != 1)
			break;
		n = vde_recv(link_conn, frame, sizeof frame, 0);
	}
	flush_dirty();
}

void take_link(int timeout_ms)
{
	struct pollfd data = { .fd = vde_datafd(link_conn), .events = POLLIN };
	if (poll(&data, 1, timeout_ms) != 1)
		return;
	LOCK_TCPIP_CORE();
	link_frames();
	UNLOCK_TCPIP_CORE();
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

void prepare_process(void)
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
int open_link(char *url)
{
	link_conn = vde_open(url, "vupy-lwip", NULL);
	if (!link_conn) {
		int err = errno;
		return not_ready(err ? err : EINVAL, "cannot open %s: %s", url, strerror(err));
	}
	return 0;
}

/* lwIP's tcpip thread, and the main thread's epoll and wake-up eventfd. */
void start_lwip(void)
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
int configure(const char *mac_text, const char *mtu_text, char *ipv4, const char *gw_text,
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

/* Addresses from the network ------------------------------------------------------- */

/* ip=dhcp: the worker's DHCP client (lwip_dhcp.c) sets nif's first IPv4
 * address, its mask and the default router from its lease, and clears them
 * when the lease ends.  ip6=auto: lwIP's own SLAAC makes nif's addresses
 * from the prefixes of router advertisements, and its neighbour discovery
 * takes their routers as default ones; lwIP, built without LWIP_DNS, keeps
 * no DNS server of theirs, so the worker reads those (RDNSS) itself.  Both
 * sets of DNS servers are only kept, for VW_INFO. */
static int use_dhcp, use_slaac;
static struct dhcp_client dhcp;
static struct ra_dns ra_dns;

static uint64_t now_ms(void)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
}

static void dhcp_send(const void *frame, size_t len)
{
	vde_send(link_conn, frame, len, 0);
}

static void dhcp_bind(const struct dhcp_lease *lease)
{
	ip4_addr_t ip, mask, gw;
	ip4_addr_set_u32(&ip, lease->address);
	ip4_addr_set_u32(&mask, lease->mask);
	ip4_addr_set_u32(&gw, lease->router);
	netif_set_addr(&nif, &ip, &mask, &gw);
}

/* The lease is over: what used its address is cut off, as a kernel's
 * DHCP client's removing it does. */
static void dhcp_unbind(void)
{
	netif_set_addr(&nif, IP4_ADDR_ANY4, IP4_ADDR_ANY4, IP4_ADDR_ANY4);
}

/* Runs in lwIP's tcpip thread, with the core lock, as its own timers do. */
static void dhcp_timer(void *arg)
{
	(void)arg;
	dhcp_tick(&dhcp, now_ms());
	sys_timeout(1000, dhcp_timer, NULL);
}

/* Whether a frame from the link is a DHCP reply, which lwIP (no DHCP of its
 * own) must not see: it would answer it with an ICMP port unreachable. */
static int from_network(const uint8_t *frame, ssize_t n)
{
	if (use_slaac)
		ra_dns_input(&ra_dns, frame, (size_t)n, now_ms());
	return use_dhcp && dhcp_input(&dhcp, frame, (size_t)n, now_ms());
}

/* Whether nif has an address made from a router advertisement, ready. */
static int has_slaac_address(void)
{
	for (int i = 1; i < LWIP_IPV6_NUM_ADDRESSES; i++)
		if (ip6_addr_ispreferred(netif_ip6_addr_state(&nif, i)) && !netif_ip6_addr_isstatic(&nif, i))
			return 1;
	return 0;
}

/* ip=dhcp (IP4 "dhcp") and ip6=auto (a first IP6 "auto"), as use_dhcp and
 * use_slaac, and the rest of the arguments for configure(): how many IPv6
 * addresses are left at *ipv6. */
static int take_dynamic(char **ipv4, char ***ipv6, int nipv6)
{
	use_dhcp = strcmp(*ipv4, "dhcp") == 0;
	if (use_dhcp)
		*ipv4 = "-";
	use_slaac = nipv6 > 0 && strcmp((*ipv6)[0], "auto") == 0;
	if (use_slaac)
		(*ipv6)++;
	return nipv6 - use_slaac;
}

/* Ask for the addresses that ip=dhcp and ip6=auto want, and wait for them:
 * a stack is ready once it has them, or fails after VW_ADDRESS_SECONDS (a
 * program would otherwise start on a stack with no address).  0, or 1
 * after telling vupy why not. */
static int await_addresses(void)
{
	if (!use_dhcp && !use_slaac)
		return 0;
	uint64_t end = now_ms() + VW_ADDRESS_SECONDS * 1000;
	LOCK_TCPIP_CORE();
	if (use_dhcp) {
		memcpy(dhcp.mac, nif.hwaddr, sizeof dhcp.mac);
		dhcp.send = dhcp_send;
		dhcp.bind = dhcp_bind;
		dhcp.unbind = dhcp_unbind;
		dhcp_start(&dhcp, now_ms());
		sys_timeout(1000, dhcp_timer, NULL);
	}
	UNLOCK_TCPIP_CORE();
	for (;;) {
		LOCK_TCPIP_CORE();
		int leased = !use_dhcp || dhcp.leased, slaac = !use_slaac || has_slaac_address();
		UNLOCK_TCPIP_CORE();
		if (leased && slaac)
			return 0;
		if (now_ms() >= end)
			return not_ready(ETIMEDOUT, leased
					 ? "ip6=auto: no router advertisement gave an IPv6 address in %d s"
					 : "ip=dhcp: no DHCP server gave an address in %d s", VW_ADDRESS_SECONDS);
		/* vupy sends nothing before VW_READY: the control socket readable
		 * is vupy gone (interrupted, say), and the stack with it. */
		struct pollfd gone = { .fd = ctl, .events = POLLIN };
		if (poll(&gone, 1, 0) == 1)
			exit(0);
		take_link(50);
	}
}

/* VW_INFO's lines for what the network gave (see info()). */
static size_t network_info(char *out, size_t size)
{
	size_t n = 0;
	char a[64];
	int idx = netif_get_index(&nif);
	uint64_t now = now_ms();
	if (use_dhcp && dhcp.leased) {
		uint32_t left = dhcp_remaining(&dhcp, now);
		ip4addr_ntoa_r(netif_ip4_addr(&nif), a, sizeof a);
		n += snprintf(out + n, size - n, "lifetime %d %s %u %u\n", idx, a, left, left);
		for (int i = 0; i < dhcp.lease.ndns; i++) {
			ip4_addr_t dns;
			ip4_addr_set_u32(&dns, dhcp.lease.dns[i]);
			ip4addr_ntoa_r(&dns, a, sizeof a);
			n += snprintf(out + n, size - n, "dns 4 %s\n", a);
		}
	}
	for (int i = 1; i < LWIP_IPV6_NUM_ADDRESSES; i++) {
		if (!ip6_addr_isvalid(netif_ip6_addr_state(&nif, i)) || netif_ip6_addr_isstatic(&nif, i))
			continue;
		ip6addr_ntoa_r(netif_ip6_addr(&nif, i), a, sizeof a);
		n += snprintf(out + n, size - n, "lifetime %d %s %u %u\n", idx, a,
			      (unsigned)netif_ip6_addr_valid_life(&nif, i),
			      (unsigned)netif_ip6_addr_pref_life(&nif, i));
	}
	for (int i = 0; i < LWIP_ND6_NUM_ROUTERS; i++) {
		struct nd6_neighbor_cache_entry *router = default_router_list[i].neighbor_entry;
		if (!router || default_router_list[i].invalidation_timer == 0)
			continue;
		ip6addr_ntoa_r(&router->next_hop_address, a, sizeof a);
		n += snprintf(out + n, size - n, "route %d 6 :: 0 %s\n", idx, a);
	}
	for (int i = 0; i < ra_dns.n; i++)
		if (ra_dns.until[i] > now) {
			ip6_addr_t dns;
			memcpy(dns.addr, ra_dns.address[i], 16);
			ip6_addr_clear_zone(&dns);
			ip6addr_ntoa_r(&dns, a, sizeof a);
			n += snprintf(out + n, size - n, "dns 6 %s\n", a);
		}
	return n < size ? n : size;
}

/* The main thread's events, the link's among them: the stack is ready. */
static void start_serving(void)
{
	flushes = 1;
	if (await_addresses())
		exit(1);

	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	epoll_ctl(ep, EPOLL_CTL_ADD, ctl, &ev);
	ev.data.ptr = &wake;
	epoll_ctl(ep, EPOLL_CTL_ADD, wake, &ev);
	ev.data.ptr = &link_conn;
	epoll_ctl(ep, EPOLL_CTL_ADD, vde_datafd(link_conn), &ev);
	reply(0, 0, 0, VW_READY, NULL, 0, -1);
}

/* The main thread: requests, proxies, and the closed ones to report; once
 * vupy closes the control socket, proxies only, until drained. */
static void __attribute__((noreturn)) main_loop(void)
{
	struct epoll_event events[64];
	for (;;) {
		int n = epoll_wait(ep, events, 64, draining() ? DRAIN_TICK_MS : nreleased ? RELEASED_TICK_MS : -1);
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
			else if (events[i].data.ptr == &link_conn)
				link_frames();
			else if (events[i].data.ptr == &wake)
				take_wake();
			else
				proxy_event(events[i].data.ptr, events[i].events);
		}
		flush_dirty();
		sweep_released();
		bring_out_the_dead();
		if (draining())
			end_drain_if_done();
		UNLOCK_TCPIP_CORE();
	}
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--floor") == 0)
		return floor_main(argc - 2, argv + 2);
	if (argc < 6) {
		fprintf(stderr, "usage: vupy-lwip CTLFD URL MAC MTU IP4/LEN[,IP4/LEN...]|dhcp|- GW4|- [auto] [IP6 ...]\n");
		return 2;
	}
	ctl = atoi(argv[1]);
	prepare_process();
	if (open_link(argv[2]))
		return 1;
	start_lwip();
	char *ipv4 = argv[5], **ipv6 = argv + 7;
	int nipv6 = take_dynamic(&ipv4, &ipv6, argc > 7 ? argc - 7 : 0);
	if (configure(argv[3], argv[4], ipv4, argc > 6 ? argv[6] : "-", ipv6, nipv6))
		return 1;
	/* Before frames are taken in: the answer to lwIP's first router
	 * solicitation must find it on. */
	nif.ip6_autoconfig_enabled = (u8_t)use_slaac;
	start_serving();
	main_loop();
}
