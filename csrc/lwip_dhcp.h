/* SPDX-License-Identifier: GPL-2.0-or-later
 * Copyright (C) 2026 the vupy authors */
/* Addresses from the network for the lwIP worker: a DHCP client (RFC 2131)
 * on raw Ethernet frames, and the DNS servers of IPv6 router advertisements
 * (RFC 8106's RDNSS option).
 *
 * Debian's liblwip has no DHCP client (LWIP_DHCP 0), and without one lwIP
 * takes no IPv4 packet in on an interface with no address: so the client
 * reads every frame before lwIP (dhcp_input, which keeps the DHCP replies
 * for itself) and builds its own frames, Ethernet/IPv4/UDP/BOOTP.  It needs
 * no lwIP header: the worker gives it a MAC, a way to send a frame and two
 * callbacks, and calls it with each frame and once a second, all with lwIP's
 * core lock held, so the callbacks may change the interface.  Times are
 * milliseconds of CLOCK_MONOTONIC; addresses are in network byte order.
 */
#ifndef VUPY_LWIP_DHCP_H
#define VUPY_LWIP_DHCP_H

#include <stddef.h>
#include <stdint.h>

#define DHCP_MAX_DNS 3
#define RA_MAX_DNS 3

struct dhcp_lease {
	uint32_t address, mask, router;     /* router 0: none given */
	uint32_t server;                    /* its server identifier */
	uint32_t dns[DHCP_MAX_DNS];
	int ndns;
	uint32_t seconds, t1, t2;           /* lease time, renewal, rebinding; 0xffffffff: for ever */
};

struct dhcp_client {
	/* The worker's part, set before dhcp_start. */
	uint8_t mac[6];
	void (*send)(const void *frame, size_t len);
	void (*bind)(const struct dhcp_lease *lease);   /* an address is leased (new, or changed) */
	void (*unbind)(void);                           /* the lease is over: no address */
	/* The client's own. */
	enum { DHCP_INIT, DHCP_SELECTING, DHCP_REQUESTING, DHCP_BOUND,
	       DHCP_RENEWING, DHCP_REBINDING } state;
	uint32_t xid;
	int tries;                      /* of the message in flight */
	uint64_t resend;                /* when it is sent again */
	struct dhcp_lease offer;        /* SELECTING's choice, REQUESTING's subject */
	struct dhcp_lease lease;        /* bound, renewing, rebinding */
	int leased;                     /* lease holds one (bind was called) */
	uint8_t server_mac[6];          /* where a renewal goes: the ACK's sender */
	uint64_t t1, t2, expiry;        /* of the lease, UINT64_MAX for never */
};

/* Start asking for a lease (DHCPDISCOVER, now). */
void dhcp_start(struct dhcp_client *c, uint64_t now);

/* Whether frame (n bytes from the link) is a DHCP reply on its way to a
 * client, which the caller then drops: it is taken here if it is this
 * client's. */
int dhcp_input(struct dhcp_client *c, const uint8_t *frame, size_t n, uint64_t now);

/* Retransmissions, renewal, rebinding and expiry: call about once a second. */
void dhcp_tick(struct dhcp_client *c, uint64_t now);

/* Seconds of the lease left (0xffffffff for ever), 0 without one. */
uint32_t dhcp_remaining(const struct dhcp_client *c, uint64_t now);

/* The DNS servers of the router advertisements seen, with their deadlines. */
struct ra_dns {
	uint8_t address[RA_MAX_DNS][16];
	uint64_t until[RA_MAX_DNS];     /* UINT64_MAX for ever */
	int n;
};

/* If frame is a router advertisement with RDNSS options, take its servers
 * into dns (a lifetime of 0 withdraws one). */
void ra_dns_input(struct ra_dns *dns, const uint8_t *frame, size_t n, uint64_t now);

#endif
