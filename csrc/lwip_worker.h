/* SPDX-License-Identifier: GPL-2.0-or-later
 * Copyright (C) 2026 the vupy authors */
/* The wire protocol between vupy (modules/lwip.py) and its lwIP worker.
 *
 * One AF_UNIX SOCK_SEQPACKET socket, one message per request and per reply,
 * in host byte order.  vupy sends a request and waits for the reply with
 * the same seq; the worker also sends unsolicited events (seq 0).  A reply
 * that hands over a proxy descriptor carries it as SCM_RIGHTS.  Socket
 * addresses travel as the kernel's own struct sockaddr_in / sockaddr_in6.
 *
 * Between the two cffi markers: what csrc/build_native.py also gives cffi's
 * cdef, so modules/lwip.py packs and reads these very structs (vupy._native)
 * and a change here changes both ends.  It needs no lwIP header: vupy._native
 * is built everywhere, the worker only where lwIP is installed.
 */
#ifndef VUPY_LWIP_WORKER_H
#define VUPY_LWIP_WORKER_H

#include <stdint.h>

/* cffi: begin */
enum vw_op {
	VW_SOCKET = 1,      /* a=family b=type c=protocol -> val=id, fd */
	VW_BIND,            /* payload=sockaddr */
	VW_CONNECT,         /* payload=sockaddr -> 0, or EINPROGRESS (TCP) */
	VW_LISTEN,          /* a=backlog */
	VW_ACCEPT,          /* -> val=id, fd, payload=peer sockaddr; EAGAIN */
	VW_GETSOCKNAME,     /* -> payload=sockaddr */
	VW_GETPEERNAME,     /* -> payload=sockaddr */
	VW_GETSOCKOPT,      /* a=level b=name c=optlen -> payload=value */
	VW_SETSOCKOPT,      /* a=level b=name payload=value */
	VW_SENDTO,          /* a=flags b=addrlen payload=sockaddr+data -> val=bytes */
	VW_INFO,            /* -> payload: interfaces, addresses, routes, DNS servers (text) */
	VW_SOCKETS,         /* a=how many to skip -> payload: TCP and UDP sockets (text),
	                       val=how many to skip for the rest, or 0 */
	VW_ADDR,            /* id=link index a=1 add (or change the prefix), 0 delete
	                       b=prefix length payload=address (4 or 16 bytes) */
	VW_LINK,            /* id=link index a=1 up, 0 down, -1 as it is b=MTU or 0
	                       payload=MAC (6 bytes) or nothing */
	VW_ROUTE,           /* id=link index a=1 add (or replace), 0 delete
	                       b=prefix length payload=destination, then the
	                       gateway or nothing (4 or 16 bytes each) */
};

enum vw_event {
	VW_READY = 1,       /* first message: err=0, or errno and a message */
	VW_CLOSED,          /* val=id: the proxy's last descriptor is closed */
};

struct vw_req {
	uint32_t op;
	uint32_t seq;
	uint64_t id;        /* a proxy, named by its program end's inode */
	int32_t a, b, c;
	uint32_t len;       /* bytes of payload that follow */
};

struct vw_rep {
	uint32_t seq;       /* the request's, or 0 for an event */
	int32_t err;        /* 0 or an errno */
	int64_t val;
	uint32_t event;     /* for seq 0 */
	uint32_t len;       /* bytes of payload that follow */
};

#define VW_MAX_PAYLOAD 65600   /* a datagram of 65535 bytes and its address */
#define VW_ADDRESS_SECONDS 10  /* for ip=dhcp's first lease and ip6=auto's first address,
                                  before the stack fails to start */
#define VW_DRAIN_SECONDS 3     /* once vupy has closed the stack, for its peers to take
                                  what is left (modules/lwip.py waits longer) */
/* cffi: end */

#endif
