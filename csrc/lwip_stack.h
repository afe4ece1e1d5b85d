/* SPDX-License-Identifier: GPL-2.0-or-later
 * Copyright (C) 2026 the vupy authors */
/* The worker's start-up, shared by the two ways vupy-lwip runs: serving
 * vupy (csrc/lwip_worker.c, which defines these) and the floor client
 * (csrc/lwip_floor.c), which must drive lwIP on its link exactly as the
 * served stack does for its figures to be the floor of the proxy's.
 * Internal to the worker binary; vupy's wire protocol is lwip_worker.h. */
#ifndef VUPY_LWIP_STACK_H
#define VUPY_LWIP_STACK_H

extern int ctl;                 /* where VW_READY (and a failure's reason) goes */

void prepare_process(void);
int open_link(char *url);       /* 0, or 1 after telling ctl why not */
void start_lwip(void);
int configure(const char *mac_text, const char *mtu_text, char *ipv4, const char *gw_text,
	      char **ipv6, int nipv6);
void take_link(int timeout_ms);  /* frames from the link into lwIP, if any come in time */
struct tcp_pcb *owing_pcb(void); /* a connection that still owes its peer data or a FIN */

/* vupy-lwip --floor ...: the floor client; its exit status. */
int floor_main(int argc, char **argv);

#endif
