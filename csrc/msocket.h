/* SPDX-License-Identifier: GPL-2.0-or-later
 * Copyright (C) 2026 the vupy authors */
/* msocket.h: the C interface to msocket, several network stacks per process.
 *
 *   int msocket(const char *path, int domain, int type, int protocol);
 *
 * msocket works as socket(2) does, with one more argument: path names the
 * stack (for instance "/dev/net/a") whose network stack makes the new
 * socket.  A NULL path means the default stack of the process for domain.
 * With type SOCK_DEFAULT no socket is made: the stack at path becomes the
 * default of the process for domain (AF_UNSPEC: every family the stack
 * serves), and msocket returns 0.
 *
 * Under a vupy (or VUOS) session the call is served by the supervisor.
 * Outside one, msocket with a NULL path behaves exactly as socket(2), and
 * msocket with a path fails with errno ENOSYS.
 *
 * Returns a file descriptor (0 for SOCK_DEFAULT), or -1 with errno set.
 * Link with -lmsocket (pkg-config --cflags --libs msocket).  The header
 * includes <sys/socket.h>, for the AF_ and SOCK_ constants msocket takes.
 */
#ifndef VUPY_MSOCKET_H
#define VUPY_MSOCKET_H

#include <sys/socket.h>

/* The constants below are VUOS's (virtualsquare/vuos, include/vulib.h), so
 * that programs written for VUOS build and run unchanged under vupy. */

/* Number of the msocket virtual system call: no Linux syscall has it. */
#ifndef __NR_msocket
#define __NR_msocket (-5)
#endif

/* File type of a stack's mount point, as st_mode & S_IFMT reports it under
 * VUOS (vupy's stacks are names, not files: stat never reports it). */
#ifndef S_IFSTACK
#define S_IFSTACK 0160000
#endif

/* Socket type 0 is not a socket: it selects the default stack. */
#ifndef SOCK_DEFAULT
#define SOCK_DEFAULT 0
#endif

#ifdef __cplusplus
extern "C" {
#endif

int msocket(const char *path, int domain, int type, int protocol);

#ifdef __cplusplus
}
#endif

#endif /* VUPY_MSOCKET_H */
