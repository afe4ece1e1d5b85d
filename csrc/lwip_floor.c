/* SPDX-License-Identifier: GPL-2.0-or-later
 * Copyright (C) 2026 the vupy authors */
/* vupy-lwip --floor: the floor of vupy's lwIP stack, a client inside the
 * worker, with no proxy and no program.
 *
 * Usage: vupy-lwip --floor send|recv|rtt|connect ADDR PORT COUNT WARMUP URL MAC MTU IP4/LEN GW4|-
 *
 * It starts lwIP on the link URL as a served stack starts (lwip_stack.h:
 * the same set-up, the same taking in of frames, the same tcpip thread),
 * then plays bench/peer.py's client for one workload against peer.py's
 * server at ADDR:PORT, with lwIP's raw API: the callbacks run in the thread
 * that took the frame in, as a proxy's do, and answer at once.  What vupy
 * adds on top of this (the proxy, the program's own wake-ups and system
 * calls) is what bench/userspace_stack.py shows as the ratio to this
 * floor.
 *
 * Like peer.py's client it prints "ready", waits for a line on stdin,
 * runs, and prints one JSON line: the time in ns (from the connection's
 * establishment to the last byte known delivered), what it counted, its
 * addresses, and "kind": "lwip-floor".  Bulk writes copy (TCP_WRITE_FLAG_COPY)
 * as the worker does with what a program writes.
 */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <pthread.h>
#include <sys/socket.h>

#include "lwip/tcpip.h"
#include "lwip/tcp.h"

#include "lwip_worker.h"
#include "lwip_stack.h"

#define FLOOR_SIZE 64           /* bytes per round trip, as peer.py's */

enum floor_workload { SEND, RECV, RTT, CONNECT };

static struct {
	enum floor_workload workload;
	long count, warmup;
	ip_addr_t server;
	u16_t port;
	struct tcp_pcb *pcb;
	long trips;                 /* round trips (connections) done */
	size_t pending;             /* bytes of the round trip at hand received */
	uint64_t sent, received;
	uint8_t ack[8];             /* send: the server's count of what it got */
	int shut;
	err_t error;
	struct timespec t0, t1;
	sem_t finished;
	char sockname[48], peername[48];
} f;

static const char payload[FLOOR_SIZE] = "pppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppp";
static char chunk[65536];

static void stamp(struct timespec *t)
{
	clock_gettime(CLOCK_MONOTONIC, t);
}

static void finish(void)
{
	stamp(&f.t1);
	sem_post(&f.finished);
}

static void ping(void)
{
	tcp_write(f.pcb, payload, FLOOR_SIZE, TCP_WRITE_FLAG_COPY);
	tcp_output(f.pcb);
}

/* send: as much of f.count as lwIP takes now; the rest on tcp_sent. */
static void pump(void)
{
	while (f.sent < (uint64_t)f.count) {
		uint64_t n = (uint64_t)f.count - f.sent;
		if (n > tcp_sndbuf(f.pcb))
			n = tcp_sndbuf(f.pcb);
		if (n > sizeof chunk)
			n = sizeof chunk;
		if (n == 0)
			break;
		err_t err;
		while ((err = tcp_write(f.pcb, chunk, (u16_t)n, TCP_WRITE_FLAG_COPY)) == ERR_MEM && n > TCP_MSS)
			n /= 2;
		if (err != ERR_OK)
			break;
		f.sent += n;
	}
	if (f.sent == (uint64_t)f.count && !f.shut) {
		tcp_shutdown(f.pcb, 0, 1);
		f.shut = 1;
	}
	tcp_output(f.pcb);
}

static err_t floor_sent(void *arg, struct tcp_pcb *pcb, u16_t len)
{
	(void)arg; (void)pcb; (void)len;
	if (f.workload == SEND)
		pump();
	return ERR_OK;
}

static err_t floor_connected(void *arg, struct tcp_pcb *pcb, err_t err);
static err_t floor_received(void *arg, struct tcp_pcb *pcb, struct pbuf *p, err_t err);
static void floor_failed(void *arg, err_t err);

/* A connection to the server; 0, or lwIP's error. */
static err_t start(void)
{
	if (!(f.pcb = tcp_new_ip_type(IP_GET_TYPE(&f.server))))
		return ERR_MEM;
	tcp_recv(f.pcb, floor_received);
	tcp_sent(f.pcb, floor_sent);
	tcp_err(f.pcb, floor_failed);
	return tcp_connect(f.pcb, &f.server, f.port, floor_connected);
}

/* connect: this connection has had its byte back; close it, and open the
 * next one, as peer.py's client does. */
static void next_connection(struct tcp_pcb *pcb)
{
	tcp_arg(pcb, NULL);
	tcp_recv(pcb, NULL);
	tcp_sent(pcb, NULL);
	tcp_err(pcb, NULL);
	if (tcp_close(pcb) != ERR_OK)
		tcp_abort(pcb);
	f.pcb = NULL;
	if (++f.trips == f.warmup)
		stamp(&f.t0);
	if (f.trips == f.count + f.warmup) {
		finish();
	} else if ((f.error = start()) != ERR_OK) {
		sem_post(&f.finished);
	}
}

static err_t floor_received(void *arg, struct tcp_pcb *pcb, struct pbuf *p, err_t err)
{
	(void)arg;
	if (err != ERR_OK || !p) {
		if (p)
			pbuf_free(p);
		if (f.workload == RECV)
			finish();
		return ERR_OK;
	}
	if (f.workload == SEND && f.received < sizeof f.ack)
		pbuf_copy_partial(p, f.ack + f.received, (u16_t)(sizeof f.ack - f.received), 0);
	f.received += p->tot_len;
	tcp_recved(pcb, p->tot_len);
	if (f.workload == RTT) {
		for (f.pending += p->tot_len; f.pending >= FLOOR_SIZE; f.pending -= FLOOR_SIZE) {
			if (++f.trips == f.warmup)
				stamp(&f.t0);
			if (f.trips == f.count + f.warmup)
				finish();
			else
				ping();
		}
	} else if (f.workload == SEND && f.received >= sizeof f.ack) {
		finish();
	}
	pbuf_free(p);
	if (f.workload == CONNECT)
		next_connection(pcb);
	return ERR_OK;
}

static void floor_failed(void *arg, err_t err)
{
	(void)arg;
	f.pcb = NULL;
	f.error = err;
	sem_post(&f.finished);
}

static err_t floor_connected(void *arg, struct tcp_pcb *pcb, err_t err)
{
	(void)arg; (void)err;
	ipaddr_ntoa_r(&pcb->local_ip, f.sockname, sizeof f.sockname);
	ipaddr_ntoa_r(&pcb->remote_ip, f.peername, sizeof f.peername);
	if (f.workload != CONNECT)
		stamp(&f.t0);   /* rtt's, again after its warm-up */
	if (f.workload == CONNECT) {
		tcp_write(pcb, payload, 1, TCP_WRITE_FLAG_COPY);
		tcp_output(pcb);
	} else if (f.workload == RTT) {
		tcp_nagle_disable(pcb);
		ping();
	} else if (f.workload == SEND) {
		pump();
	}
	return ERR_OK;
}

/* The served stack's main thread, with no proxies and no requests: the
 * link only.  The floor's own thread waits for the workload's end. */
static void *link_loop(void *arg)
{
	(void)arg;
	for (;;)
		take_link(-1);
	return NULL;
}

/* The stack as a served one is, a thread taking frames in; 0, or 1
 * after saying why not (what a served stack tells vupy, on ctl). */
static int start_stack(char *url, const char *mac, const char *mtu, char *ip, const char *gw)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return perror("vupy-lwip --floor: socketpair"), 1;
	ctl = sv[0];
	prepare_process();
	if (open_link(url) == 0) {
		start_lwip();
		if (configure(mac, mtu, ip, gw, NULL, 0) == 0) {
			pthread_t link;
			pthread_create(&link, NULL, link_loop, NULL);
			return 0;
		}
	}
	char why[sizeof(struct vw_rep) + 512] = { 0 };
	ssize_t n = recv(sv[1], why, sizeof why - 1, MSG_DONTWAIT);
	fprintf(stderr, "vupy-lwip --floor: %s\n",
		n > (ssize_t)sizeof(struct vw_rep) ? why + sizeof(struct vw_rep) : "the stack did not start");
	return 1;
}

static void print_result(const char *workload)
{
	long long ns = (f.t1.tv_sec - f.t0.tv_sec) * 1000000000LL + (f.t1.tv_nsec - f.t0.tv_nsec);
	printf("{\"role\": \"client\", \"workload\": \"%s\", \"kind\": \"lwip-floor\", "
	       "\"sockname\": \"%s\", \"peername\": \"%s\", \"ns\": %lld", workload,
	       f.sockname, f.peername, ns);
	if (f.workload == RTT)
		printf(", \"nodelay\": 1, \"round_trips\": %ld", f.trips);
	else if (f.workload == CONNECT)
		printf(", \"round_trips\": %ld", f.trips);
	else if (f.workload == SEND)
		printf(", \"bytes\": %llu, \"server_bytes\": %llu", (unsigned long long)f.sent,
		       (unsigned long long)be64toh(*(uint64_t *)f.ack));
	else
		printf(", \"bytes\": %llu", (unsigned long long)f.received);
	printf("}\n");
	fflush(stdout);
}

int floor_main(int argc, char **argv)
{
	if (argc != 10) {
		fprintf(stderr, "usage: vupy-lwip --floor send|recv|rtt|connect ADDR PORT COUNT WARMUP URL MAC MTU IP4/LEN GW4|-\n");
		return 2;
	}
	const char *workload = argv[0];
	static const char *const names[] = { [SEND] = "send", [RECV] = "recv", [RTT] = "rtt", [CONNECT] = "connect" };
	for (f.workload = SEND; f.workload <= CONNECT && strcmp(workload, names[f.workload]) != 0; f.workload++)
		;
	if (f.workload > CONNECT) {
		fprintf(stderr, "vupy-lwip --floor: no workload %s\n", workload);
		return 2;
	}
	if (!ipaddr_aton(argv[1], &f.server)) {
		fprintf(stderr, "vupy-lwip --floor: not an address: %s\n", argv[1]);
		return 2;
	}
	f.port = (u16_t)atoi(argv[2]);
	f.count = atol(argv[3]);
	f.warmup = f.workload == RTT || f.workload == CONNECT ? atol(argv[4]) : 0;
	memset(chunk, 'x', sizeof chunk);
	sem_init(&f.finished, 0, 0);
	if (start_stack(argv[5], argv[6], argv[7], argv[8], argv[9]))
		return 1;

	printf("ready\n");
	fflush(stdout);
	char line[64];
	if (!fgets(line, sizeof line, stdin)) {
		fprintf(stderr, "vupy-lwip --floor: no go\n");
		return 1;
	}
	LOCK_TCPIP_CORE();
	if (f.warmup == 0)
		stamp(&f.t0);   /* connect's; the others' when connected */
	err_t err = start();
	UNLOCK_TCPIP_CORE();
	if (err == ERR_OK) {
		sem_wait(&f.finished);
		err = f.error;
	}
	LOCK_TCPIP_CORE();
	if (f.pcb) {
		tcp_arg(f.pcb, NULL);
		tcp_recv(f.pcb, NULL);
		tcp_sent(f.pcb, NULL);
		tcp_err(f.pcb, NULL);
		if (tcp_close(f.pcb) != ERR_OK)
			tcp_abort(f.pcb);
	}
	/* Until the server has our FIN, as a served stack drains: a FIN the
	 * link lost is sent again, and the server is not left waiting. */
	for (int ms = 0; owing_pcb() && ms < VW_DRAIN_SECONDS * 1000; ms++) {
		UNLOCK_TCPIP_CORE();
		usleep(1000);
		LOCK_TCPIP_CORE();
	}
	UNLOCK_TCPIP_CORE();
	if (err != ERR_OK) {
		fprintf(stderr, "vupy-lwip --floor: the connection failed: %s\n", lwip_strerr(err));
		return 1;
	}
	print_result(workload);
	return 0;
}
