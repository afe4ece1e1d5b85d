/* SPDX-License-Identifier: GPL-2.0-or-later
 * Copyright (C) 2026 the vupy authors */
/* The worker's DHCP client and RA DNS reader (csrc/lwip_dhcp.c) alone, built
 * with the address and undefined-behaviour sanitizers by
 * tests/test_lwip_dhcp.py: its state machine against a server played here,
 * with time passed by hand, and its parsing against every truncation and
 * many corruptions of real-shaped replies.  Prints "ok" at the end; any
 * failure says what and exits 1 (or the sanitizer aborts). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include "lwip_dhcp.h"

#define CHECK(cond) do { if (!(cond)) { fprintf(stderr, "line %d: %s\n", __LINE__, #cond); exit(1); } } while (0)

static const uint8_t MAC[6] = { 0x02, 0, 0, 0, 0, 0x42 };
static const uint8_t SERVER_MAC[6] = { 0x02, 0, 0, 0, 0, 0x01 };
static uint8_t sent[2048];
static size_t sent_len;
static int nsent, bound, unbound;
static struct dhcp_lease last;

static void on_send(const void *frame, size_t len)
{
	CHECK(len <= sizeof sent);
	memcpy(sent, frame, len);
	sent_len = len;
	nsent++;
}

static void on_bind(const struct dhcp_lease *lease) { last = *lease; bound++; }
static void on_unbind(void) { unbound++; }

/* Option `code` of the message last sent: its length, its value in *value. */
static int sent_option(uint8_t code, const uint8_t **value)
{
	const uint8_t *o = sent + 14 + 20 + 8 + 240, *end = sent + sent_len;
	while (o < end && *o != 255) {
		if (*o == 0) { o++; continue; }
		CHECK(o + 2 <= end && o + 2 + o[1] <= end);
		if (*o == code) {
			*value = o + 2;
			return o[1];
		}
		o += 2 + o[1];
	}
	return -1;
}

static uint32_t sent_xid(void)
{
	uint32_t xid;
	memcpy(&xid, sent + 14 + 20 + 8 + 4, 4);
	return ntohl(xid);
}

static uint16_t sum(const uint8_t *p, size_t n, uint32_t s)
{
	for (; n > 1; p += 2, n -= 2)
		s += (uint32_t)(p[0] << 8 | p[1]);
	if (n)
		s += (uint32_t)p[0] << 8;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

/* A server's reply of `type` to xid, offering 10.9.0.120/24 by way of
 * 10.9.0.1 for `lease` seconds, in f; its length. */
static size_t reply(uint8_t *f, int type, uint32_t xid, uint32_t lease)
{
	memset(f, 0, 600);
	memcpy(f, MAC, 6);
	memcpy(f + 6, SERVER_MAC, 6);
	f[12] = 0x08;
	uint8_t *ip = f + 14, *udp = ip + 20, *b = udp + 8;
	b[0] = 2; b[1] = 1; b[2] = 6;
	uint32_t x = htonl(xid);
	memcpy(b + 4, &x, 4);
	uint8_t yiaddr[4] = { 10, 9, 0, 120 };
	memcpy(b + 16, yiaddr, 4);
	memcpy(b + 28, MAC, 6);
	uint8_t *o = b + 236;
	const uint8_t options[] = { 99, 130, 83, 99, 53, 1, (uint8_t)type, 54, 4, 10, 9, 0, 1,
		1, 4, 255, 255, 255, 0, 3, 4, 10, 9, 0, 1, 6, 8, 10, 9, 0, 53, 10, 9, 0, 54,
		51, 4, (uint8_t)(lease >> 24), (uint8_t)(lease >> 16), (uint8_t)(lease >> 8), (uint8_t)lease,
		255 };
	memcpy(o, options, sizeof options);
	size_t blen = 236 + sizeof options, total = 20 + 8 + blen;
	ip[0] = 0x45; ip[2] = (uint8_t)(total >> 8); ip[3] = (uint8_t)total; ip[8] = 64; ip[9] = 17;
	uint8_t src[4] = { 10, 9, 0, 1 };
	memcpy(ip + 12, src, 4);
	memset(ip + 16, 0xff, 4);
	uint16_t s = sum(ip, 20, 0);
	ip[10] = (uint8_t)(s >> 8); ip[11] = (uint8_t)s;
	udp[1] = 67; udp[3] = 68;
	udp[4] = (uint8_t)((8 + blen) >> 8); udp[5] = (uint8_t)(8 + blen);   /* checksum 0: none */
	return 14 + total;
}

/* The frame f made len bytes long by its IP and UDP headers. */
static void set_lengths(uint8_t *f, size_t len)
{
	uint8_t *ip = f + 14, *udp = ip + 20;
	size_t total = len - 14, ulen = total - 20;
	ip[2] = (uint8_t)(total >> 8); ip[3] = (uint8_t)total;
	ip[10] = ip[11] = 0;
	uint16_t s = sum(ip, 20, 0);
	ip[10] = (uint8_t)(s >> 8); ip[11] = (uint8_t)s;
	udp[4] = (uint8_t)(ulen >> 8); udp[5] = (uint8_t)ulen;
}

static void new_client(struct dhcp_client *c)
{
	memset(c, 0, sizeof *c);
	memcpy(c->mac, MAC, 6);
	c->send = on_send;
	c->bind = on_bind;
	c->unbind = on_unbind;
}

/* A client bound at time 0 to a lease of `lease` seconds. */
static void lease_to(struct dhcp_client *c, uint32_t lease)
{
	uint8_t f[600];
	const uint8_t *v;
	new_client(c);
	dhcp_start(c, 0);
	CHECK(sent_option(53, &v) == 1 && v[0] == 1);                   /* DISCOVER */
	CHECK(dhcp_input(c, f, reply(f, 2, sent_xid(), lease), 0) == 1); /* OFFER */
	CHECK(sent_option(53, &v) == 1 && v[0] == 3);                   /* REQUEST */
	CHECK(sent_option(50, &v) == 4 && v[3] == 120);
	CHECK(sent_option(54, &v) == 4 && v[3] == 1);
	CHECK(memcmp(sent, "\xff\xff\xff\xff\xff\xff", 6) == 0);
	CHECK(dhcp_input(c, f, reply(f, 5, sent_xid(), lease), 0) == 1); /* ACK */
	CHECK(c->state == DHCP_BOUND && c->leased);
}

static void test_lease_renewal_rebinding_expiry(void)
{
	struct dhcp_client c;
	uint8_t f[600];
	bound = unbound = 0;
	lease_to(&c, 120);
	CHECK(bound == 1 && last.address == htonl(0x0a090078) && last.mask == htonl(0xffffff00));
	CHECK(last.router == htonl(0x0a090001) && last.ndns == 2 && last.dns[1] == htonl(0x0a090036));
	CHECK(last.seconds == 120 && last.t1 == 60 && last.t2 == 105);
	CHECK(dhcp_remaining(&c, 20000) == 100);
	int before = nsent;
	dhcp_tick(&c, 59000);
	CHECK(nsent == before);
	dhcp_tick(&c, 60000);                           /* T1: unicast to the server */
	CHECK(nsent == before + 1 && c.state == DHCP_RENEWING);
	CHECK(memcmp(sent, SERVER_MAC, 6) == 0 && sent[14 + 16] == 10 && sent[14 + 19] == 1);
	CHECK(sent[14 + 12] == 10 && sent[14 + 15] == 120);             /* from the leased address */
	dhcp_tick(&c, 105000);                          /* T2: broadcast */
	CHECK(c.state == DHCP_REBINDING && memcmp(sent, "\xff\xff\xff\xff\xff\xff", 6) == 0);
	CHECK(dhcp_input(&c, f, reply(f, 5, sent_xid(), 120), 106000) == 1);   /* renewed */
	CHECK(c.state == DHCP_BOUND && bound == 1 && unbound == 0);
	CHECK(dhcp_remaining(&c, 106000) == 120);
	dhcp_tick(&c, 226000);                          /* expired */
	CHECK(unbound == 1 && !c.leased && c.state == DHCP_SELECTING && dhcp_remaining(&c, 226000) == 0);
	const uint8_t *v;
	CHECK(sent_option(53, &v) == 1 && v[0] == 1);
}

static void test_nak_and_strangers(void)
{
	struct dhcp_client c;
	uint8_t f[600];
	bound = unbound = 0;
	lease_to(&c, 120);
	uint32_t xid = sent_xid();
	CHECK(dhcp_input(&c, f, reply(f, 6, xid + 1, 120), 1000) == 1);        /* another's: ignored */
	CHECK(c.leased);
	size_t n = reply(f, 6, xid, 120);
	f[14 + 20 + 8 + 28 + 5] ^= 1;                                          /* another MAC */
	CHECK(dhcp_input(&c, f, n, 1000) == 1 && c.leased);
	dhcp_tick(&c, 60000);
	CHECK(dhcp_input(&c, f, reply(f, 6, sent_xid(), 120), 61000) == 1);    /* NAK */
	CHECK(unbound == 1 && !c.leased && c.state == DHCP_SELECTING);
	n = reply(f, 2, 0, 120);
	f[14 + 20 + 3] = 69;                                                   /* not to port 68 */
	CHECK(dhcp_input(&c, f, n, 0) == 0);
}

/* Every truncation and many corruptions of an ACK, each to a fresh client
 * waiting for it: never a read past the frame (the sanitizer's part), and
 * never a lease from a frame that is not whole. */
static void test_malformed_replies(void)
{
	struct dhcp_client c;
	uint8_t f[600], g[600];
	srand(1);
	lease_to(&c, 120);
	for (int round = 0; round < 20000; round++) {
		new_client(&c);
		dhcp_start(&c, 0);
		dhcp_input(&c, f, reply(f, 2, sent_xid(), 120), 0);
		size_t n = reply(f, 5, sent_xid(), 120), len = n;
		memcpy(g, f, n);
		if (round < (int)n) {
			len = (size_t)round;            /* truncated: ignored */
			uint8_t *cut = malloc(len ? len : 1);
			memcpy(cut, g, len);
			dhcp_input(&c, cut, len, 0);
			free(cut);
			CHECK(!c.leased);
			continue;
		}
		if (rand() % 2)                 /* whole, but cut short inside its options */
			len = 14 + 20 + 8 + 236 + (size_t)(rand() % (int)(n - 14 - 20 - 8 - 236));
		set_lengths(g, len);
		for (int k = 0; k < 1 + rand() % 4; k++)
			g[14 + 20 + 8 + 236 + rand() % (int)(n - 14 - 20 - 8 - 236)] = (uint8_t)rand();
		if (rand() % 2)
			g[14 + 2 + rand() % 2] = (uint8_t)rand();   /* the IP length */
		uint8_t *exact = malloc(len);
		memcpy(exact, g, len);
		dhcp_input(&c, exact, len, 0);
		free(exact);
	}
}

static void test_ra_dns(void)
{
	uint8_t f[200];
	struct ra_dns dns;
	memset(&dns, 0, sizeof dns);
	memset(f, 0, sizeof f);
	f[12] = 0x86; f[13] = 0xdd;
	uint8_t *ip = f + 14, *icmp = ip + 40, *o = icmp + 16;
	ip[0] = 0x60; ip[5] = 16 + 40; ip[6] = 58; ip[7] = 255;
	icmp[0] = 134;
	o[0] = 25; o[1] = 5; o[7] = 60;                 /* RDNSS, 60 s, two servers */
	o[8] = 0xfd; o[8 + 15] = 0x53;
	o[24] = 0xfd; o[24 + 15] = 0x54;
	size_t n = 14 + 40 + 16 + 40;
	for (size_t len = 0; len < n; len++) {          /* truncated: nothing taken */
		uint8_t *cut = malloc(len ? len : 1);
		memcpy(cut, f, len);
		ra_dns_input(&dns, cut, len, 0);
		free(cut);
	}
	CHECK(dns.n == 0);
	ra_dns_input(&dns, f, n, 0);
	CHECK(dns.n == 2 && dns.address[1][15] == 0x54 && dns.until[0] == 60000);
	o[7] = 0;                                       /* withdrawn */
	ra_dns_input(&dns, f, n, 1000);
	CHECK(dns.n == 0);
	o[1] = 200;                                     /* longer than the packet */
	o[7] = 60;
	ra_dns_input(&dns, f, n, 0);
	CHECK(dns.n == 0);
}

int main(void)
{
	test_lease_renewal_rebinding_expiry();
	test_nak_and_strangers();
	test_malformed_replies();
	test_ra_dns();
	puts("ok");
	return 0;
}
