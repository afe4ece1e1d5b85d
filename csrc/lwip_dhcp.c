/* SPDX-License-Identifier: GPL-2.0-or-later
 * Copyright (C) 2026 the vupy authors */
/* The worker's DHCP client and RA DNS servers: see lwip_dhcp.h.
 *
 * Every length read from a frame is checked against the frame before it is
 * used: a malformed or hostile reply is ignored, never read past its end. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "lwip_dhcp.h"

#define ETH_HLEN 14
#define IP_HLEN 20
#define UDP_HLEN 8
#define BOOTP_FIXED 236                 /* op ... file, before the magic cookie */
#define BOOTP_MIN 300                   /* some servers drop shorter requests */
#define CLIENT_PORT 68
#define SERVER_PORT 67
#define FOREVER 0xffffffffu
#define NEVER UINT64_MAX

enum { DISCOVER = 1, OFFER, REQUEST, DECLINE, ACK, NAK };
enum { OPT_PAD = 0, OPT_MASK = 1, OPT_ROUTER = 3, OPT_DNS = 6, OPT_REQUESTED = 50,
       OPT_LEASE = 51, OPT_TYPE = 53, OPT_SERVER = 54, OPT_PARAMS = 55, OPT_T1 = 58,
       OPT_T2 = 59, OPT_CLIENT_ID = 61, OPT_END = 255 };

static const uint8_t cookie[4] = { 99, 130, 83, 99 };
static const uint8_t broadcast_mac[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static void put16(uint8_t *p, uint16_t v) { p[0] = v >> 8; p[1] = v & 0xff; }

static uint32_t sum16(const uint8_t *p, size_t n, uint32_t sum)
{
	for (; n > 1; p += 2, n -= 2)
		sum += get16(p);
	if (n)
		sum += (uint32_t)p[0] << 8;
	return sum;
}

static uint16_t fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

/* The UDP checksum of the datagram at udp (len bytes) between src and dst
 * (as in the IPv4 header: network order bytes). */
static uint16_t udp_sum(const uint8_t *ip_header, const uint8_t *udp, size_t len)
{
	uint32_t sum = sum16(ip_header + 12, 8, 0) + 17 + (uint32_t)len;
	return fold(sum16(udp, len, sum));
}

static uint32_t new_xid(void)
{
	uint32_t xid;
	if (getrandom(&xid, sizeof xid, GRND_NONBLOCK) != sizeof xid)
		xid = (uint32_t)rand() ^ ((uint32_t)rand() << 16);
	return xid;
}

/* Sending ------------------------------------------------------------------- */

/* A message of `type` in a whole frame: broadcast, from 0.0.0.0 unless the
 * client has a lease (ciaddr), or unicast to the lease's server when renewing. */
static void send_message(struct dhcp_client *c, int type, uint32_t ciaddr,
			 uint32_t requested, uint32_t server)
{
	uint8_t f[ETH_HLEN + IP_HLEN + UDP_HLEN + BOOTP_MIN + 64];
	int unicast = c->state == DHCP_RENEWING;
	memset(f, 0, sizeof f);
	memcpy(f, unicast ? c->server_mac : broadcast_mac, 6);
	memcpy(f + 6, c->mac, 6);
	f[12] = 0x08;

	uint8_t *b = f + ETH_HLEN + IP_HLEN + UDP_HLEN;
	b[0] = 1;                               /* BOOTREQUEST */
	b[1] = 1;                               /* Ethernet */
	b[2] = 6;
	memcpy(b + 4, &(uint32_t){ __builtin_bswap32(c->xid) }, 4);
	if (!ciaddr)
		b[10] = 0x80;                   /* answer by broadcast: no address yet */
	memcpy(b + 12, &ciaddr, 4);
	memcpy(b + 28, c->mac, 6);
	uint8_t *o = b + BOOTP_FIXED;
	memcpy(o, cookie, 4);
	o += 4;
	*o++ = OPT_TYPE; *o++ = 1; *o++ = (uint8_t)type;
	*o++ = OPT_CLIENT_ID; *o++ = 7; *o++ = 1;
	memcpy(o, c->mac, 6);
	o += 6;
	if (requested) {
		*o++ = OPT_REQUESTED; *o++ = 4;
		memcpy(o, &requested, 4);
		o += 4;
	}
	if (server) {
		*o++ = OPT_SERVER; *o++ = 4;
		memcpy(o, &server, 4);
		o += 4;
	}
	static const uint8_t params[] = { OPT_MASK, OPT_ROUTER, OPT_DNS, OPT_LEASE, OPT_T1, OPT_T2 };
	*o++ = OPT_PARAMS; *o++ = sizeof params;
	memcpy(o, params, sizeof params);
	o += sizeof params;
	*o++ = OPT_END;
	size_t blen = (size_t)(o - b) < BOOTP_MIN ? BOOTP_MIN : (size_t)(o - b);

	uint8_t *ip = f + ETH_HLEN, *udp = ip + IP_HLEN;
	uint32_t to = unicast ? c->lease.server : 0xffffffffu;
	ip[0] = 0x45;
	put16(ip + 2, (uint16_t)(IP_HLEN + UDP_HLEN + blen));
	ip[8] = 64;
	ip[9] = 17;
	memcpy(ip + 12, &ciaddr, 4);
	memcpy(ip + 16, &to, 4);
	put16(ip + 10, fold(sum16(ip, IP_HLEN, 0)));
	put16(udp, CLIENT_PORT);
	put16(udp + 2, SERVER_PORT);
	put16(udp + 4, (uint16_t)(UDP_HLEN + blen));
	uint16_t sum = udp_sum(ip, udp, UDP_HLEN + blen);
	put16(udp + 6, sum ? sum : 0xffff);
	c->send(f, ETH_HLEN + IP_HLEN + UDP_HLEN + blen);
}

static void send_discover(struct dhcp_client *c)
{
	send_message(c, DISCOVER, 0, 0, 0);
}

static void send_request(struct dhcp_client *c)
{
	if (c->state == DHCP_REQUESTING)
		send_message(c, REQUEST, 0, c->offer.address, c->offer.server);
	else    /* renewing, rebinding: RFC 2131 4.3.2, ciaddr and no options 50, 54 */
		send_message(c, REQUEST, c->lease.address, 0, 0);
}

/* Receiving ------------------------------------------------------------------ */

/* A DHCP reply, as far as the client uses it. */
struct reply {
	int type;
	uint32_t yiaddr, source;
	struct dhcp_lease lease;
	int has_mask, has_lease, has_t1, has_t2, has_server;
};

/* The options from o to end into r; -1 if one runs past the end. */
static int parse_options(const uint8_t *o, const uint8_t *end, struct reply *r)
{
	while (o < end) {
		uint8_t code = *o++;
		if (code == OPT_PAD)
			continue;
		if (code == OPT_END)
			return 0;
		if (o >= end || *o > end - o - 1)
			return -1;
		uint8_t len = *o++;
		const uint8_t *v = o;
		o += len;
		switch (code) {
		case OPT_TYPE:
			if (len == 1)
				r->type = v[0];
			break;
		case OPT_MASK:
			if (len == 4) {
				memcpy(&r->lease.mask, v, 4);
				r->has_mask = 1;
			}
			break;
		case OPT_ROUTER:
			if (len >= 4)
				memcpy(&r->lease.router, v, 4);
			break;
		case OPT_DNS:
			for (int i = 0; i + 4 <= len && r->lease.ndns < DHCP_MAX_DNS; i += 4)
				memcpy(&r->lease.dns[r->lease.ndns++], v + i, 4);
			break;
		case OPT_SERVER:
			if (len == 4) {
				memcpy(&r->lease.server, v, 4);
				r->has_server = 1;
			}
			break;
		case OPT_LEASE:
		case OPT_T1:
		case OPT_T2:
			if (len != 4)
				break;
			if (code == OPT_LEASE) {
				r->lease.seconds = get32(v);
				r->has_lease = 1;
			} else if (code == OPT_T1) {
				r->lease.t1 = get32(v);
				r->has_t1 = 1;
			} else {
				r->lease.t2 = get32(v);
				r->has_t2 = 1;
			}
			break;
		}
	}
	return 0;
}

/* Whether frame is a DHCP reply (to UDP port 68): 1, and if it is this
 * client's (its xid, its MAC), *r filled in and *mine set. */
static int parse_reply(const struct dhcp_client *c, const uint8_t *f, size_t n,
		       struct reply *r, int *mine)
{
	*mine = 0;
	if (n < ETH_HLEN + IP_HLEN + UDP_HLEN || f[12] != 0x08 || f[13] != 0x00)
		return 0;
	const uint8_t *ip = f + ETH_HLEN;
	size_t ihl = (size_t)(ip[0] & 0x0f) * 4;
	size_t total = get16(ip + 2);
	if ((ip[0] >> 4) != 4 || ihl < IP_HLEN || total < ihl + UDP_HLEN ||
	    total > n - ETH_HLEN || ip[9] != 17)
		return 0;
	if (get16(ip + 6) & 0x3fff)             /* a fragment: no DHCP reply is */
		return 0;
	const uint8_t *udp = ip + ihl;
	if (get16(udp + 2) != CLIENT_PORT)
		return 0;
	/* From here on it is a DHCP reply: the caller drops it, mine or not. */
	size_t ulen = get16(udp + 4);
	if (fold(sum16(ip, ihl, 0)) != 0 || get16(udp) != SERVER_PORT ||
	    ulen < UDP_HLEN + BOOTP_FIXED + 4 || ulen > total - ihl)
		return 1;
	if (get16(udp + 6) && udp_sum(ip, udp, ulen) != 0)
		return 1;
	const uint8_t *b = udp + UDP_HLEN;
	if (b[0] != 2 || b[1] != 1 || b[2] != 6 || get32(b + 4) != c->xid ||
	    memcmp(b + 28, c->mac, 6) != 0 || memcmp(b + BOOTP_FIXED, cookie, 4) != 0)
		return 1;
	memset(r, 0, sizeof *r);
	memcpy(&r->yiaddr, b + 16, 4);
	memcpy(&r->source, ip + 12, 4);
	if (parse_options(b + BOOTP_FIXED + 4, udp + ulen, r) < 0)
		return 1;
	*mine = 1;
	return 1;
}

/* The mask of an address's class, for a server that gives none. */
static uint32_t class_mask(uint32_t address)
{
	uint8_t first = ((const uint8_t *)&address)[0];
	uint32_t host = first < 128 ? 0xff000000u : first < 192 ? 0xffff0000u : 0xffffff00u;
	return __builtin_bswap32(host);
}

/* r's lease completed with the defaults of RFC 2131 4.4.5. */
static void complete_lease(struct reply *r)
{
	struct dhcp_lease *l = &r->lease;
	l->address = r->yiaddr;
	if (!r->has_server)
		l->server = r->source;
	if (!r->has_mask)
		l->mask = class_mask(l->address);
	if (!r->has_lease)
		l->seconds = 3600;      /* an ACK must say; a server that does not is old */
	if (l->seconds == FOREVER) {
		l->t1 = l->t2 = FOREVER;
		return;
	}
	if (!r->has_t2 || l->t2 > l->seconds)
		l->t2 = (uint32_t)((uint64_t)l->seconds * 7 / 8);
	if (!r->has_t1 || l->t1 > l->t2)
		l->t1 = l->seconds / 2 < l->t2 ? l->seconds / 2 : l->t2;
}

static uint64_t after(uint64_t now, uint32_t seconds)
{
	return seconds == FOREVER ? NEVER : now + (uint64_t)seconds * 1000;
}

/* Back to the start: no lease, a new transaction, DISCOVER now. */
static void restart(struct dhcp_client *c, uint64_t now)
{
	if (c->leased) {
		c->leased = 0;
		c->unbind();
	}
	c->state = DHCP_INIT;
	dhcp_start(c, now);
}

static void bound(struct dhcp_client *c, const struct reply *r, const uint8_t *frame, uint64_t now)
{
	int changed = !c->leased || memcmp(&c->lease, &r->lease, sizeof c->lease) != 0;
	c->lease = r->lease;
	memcpy(c->server_mac, frame + 6, 6);
	c->t1 = after(now, c->lease.t1);
	c->t2 = after(now, c->lease.t2);
	c->expiry = after(now, c->lease.seconds);
	c->state = DHCP_BOUND;
	c->resend = NEVER;
	if (changed) {
		c->leased = 1;
		c->bind(&c->lease);
	}
}

int dhcp_input(struct dhcp_client *c, const uint8_t *frame, size_t n, uint64_t now)
{
	struct reply r;
	int mine;
	if (!parse_reply(c, frame, n, &r, &mine))
		return 0;
	if (!mine)
		return 1;
	if (r.type == NAK && c->state >= DHCP_REQUESTING) {
		restart(c, now);
		return 1;
	}
	if (!r.yiaddr || r.yiaddr == 0xffffffffu)
		return 1;
	complete_lease(&r);
	if (r.type == OFFER && c->state == DHCP_SELECTING) {
		c->offer = r.lease;
		c->state = DHCP_REQUESTING;
		c->tries = 0;
		c->resend = now + 1000;
		send_request(c);
	} else if (r.type == ACK && c->state >= DHCP_REQUESTING) {
		bound(c, &r, frame, now);
	}
	return 1;
}

/* Sending again ----------------------------------------------------------------- */

/* The wait before the next try: 1, 2, 4, ... 64 s.  Short at first: a
 * session waits for its first lease (VW_ADDRESS_SECONDS), and a server
 * that missed the first DISCOVER answers the next within it. */
static uint64_t backoff(int tries)
{
	return 1000u << (tries < 6 ? tries : 6);
}

void dhcp_start(struct dhcp_client *c, uint64_t now)
{
	c->xid = new_xid();
	c->state = DHCP_SELECTING;
	c->tries = 0;
	c->resend = now + backoff(0);
	send_discover(c);
}

/* Half the time left until `until`, at least 10 s (RFC 2131 4.4.5 says
 * 60 s; leases this short would never see a retry). */
static uint64_t half_of(uint64_t now, uint64_t until)
{
	uint64_t half = until > now ? (until - now) / 2 : 0;
	return now + (half > 10000 ? half : 10000);
}

void dhcp_tick(struct dhcp_client *c, uint64_t now)
{
	switch (c->state) {
	case DHCP_INIT:
		return;
	case DHCP_SELECTING:
	case DHCP_REQUESTING:
		if (now < c->resend)
			return;
		if (c->state == DHCP_REQUESTING && c->tries >= 3) {
			restart(c, now);
			return;
		}
		c->resend = now + backoff(++c->tries);
		if (c->state == DHCP_SELECTING)
			send_discover(c);
		else
			send_request(c);
		return;
	case DHCP_BOUND:
	case DHCP_RENEWING:
	case DHCP_REBINDING:
		break;
	}
	if (now >= c->expiry) {
		restart(c, now);
		return;
	}
	int next = now >= c->t2 ? DHCP_REBINDING : now >= c->t1 ? DHCP_RENEWING : DHCP_BOUND;
	if (next == DHCP_BOUND || (next == (int)c->state && now < c->resend))
		return;
	if (next != (int)c->state)
		c->xid = new_xid();
	c->state = next;
	c->resend = half_of(now, next == DHCP_RENEWING ? c->t2 : c->expiry);
	send_request(c);
}

uint32_t dhcp_remaining(const struct dhcp_client *c, uint64_t now)
{
	if (!c->leased)
		return 0;
	if (c->expiry == NEVER)
		return FOREVER;
	return c->expiry > now ? (uint32_t)((c->expiry - now + 999) / 1000) : 0;
}

/* RA DNS servers ------------------------------------------------------------------- */

void ra_dns_input(struct ra_dns *dns, const uint8_t *f, size_t n, uint64_t now)
{
	enum { IP6_HLEN = 40, RA_HLEN = 16, RDNSS = 25 };
	if (n < ETH_HLEN + IP6_HLEN + RA_HLEN || f[12] != 0x86 || f[13] != 0xdd)
		return;
	const uint8_t *ip = f + ETH_HLEN;
	/* An RA comes from a router on the link: hop limit 255, RFC 4861 6.1.2. */
	if (ip[6] != 58 || ip[7] != 255)
		return;
	size_t plen = get16(ip + 4);
	if (plen < RA_HLEN || plen > n - ETH_HLEN - IP6_HLEN)
		return;
	const uint8_t *icmp = ip + IP6_HLEN, *end = icmp + plen;
	if (icmp[0] != 134 || icmp[1] != 0)
		return;
	for (const uint8_t *o = icmp + RA_HLEN; end - o >= 2; ) {
		size_t len = (size_t)o[1] * 8;
		if (len == 0 || len > (size_t)(end - o))
			return;
		if (o[0] == RDNSS && len >= 24) {
			uint32_t life = get32(o + 4);
			for (const uint8_t *a = o + 8; a + 16 <= o + len; a += 16) {
				int i = 0;
				while (i < dns->n && memcmp(dns->address[i], a, 16) != 0)
					i++;
				if (life == 0) {        /* withdrawn */
					if (i < dns->n) {
						dns->n--;
						memmove(dns->address[i], dns->address[i + 1], 16 * (size_t)(dns->n - i));
						memmove(&dns->until[i], &dns->until[i + 1],
							sizeof *dns->until * (size_t)(dns->n - i));
					}
					continue;
				}
				if (i == dns->n) {
					if (dns->n == RA_MAX_DNS)
						continue;
					dns->n++;
				}
				memcpy(dns->address[i], a, 16);
				dns->until[i] = after(now, life);
			}
		}
		o += len;
	}
}
