#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""What does vupy cost per socket?  socket(2) and msocket, side by side.

    python bench/socket_create.py [--rounds 5] [--iterations 20000] [--warmup 1000]
                                  [--cpu N] [--json PATH] [--markdown]

Run as root (vupy run and `ip netns add` need it), with the Python of the
venv vupy is installed in: `vupy` is looked up next to sys.executable.

Three workloads, each timed by a C loop (bench/loops.c) and a Python loop
(bench/pyloop.py, through the socket module: its object overhead is part of
what a Python program pays), each natively and in a session:

filter-only  socket(AF_UNIX, SOCK_STREAM) + close() under `vupy run -- LOOP`.
             The filter lets AF_UNIX through in BPF, with no round trip to
             the supervisor: this is what every socket() of a program pays
             merely for running in a session.  Against native AF_UNIX.
routed       socket(AF_INET, SOCK_STREAM) + close() under `vupy run --stack
             /dev/net/a=netns:NS --default /dev/net/a -- LOOP`: each call is
             trapped, the socket made in NS by the supervisor and injected
             with SECCOMP_IOCTL_NOTIF_ADDFD.  Against native AF_INET.
msocket      msocket("/dev/net/a", AF_INET, SOCK_DGRAM) + close() under
             `vupy run --stack /dev/net/a=netns:NS -- LOOP` (no --default:
             the path alone must route it); in C syscall(-5, ...), in Python
             vupy.msocket().  Against native socket(AF_INET, SOCK_DGRAM) +
             close(), and against a routed socket(AF_INET, SOCK_DGRAM) +
             close() (the fast path serves both after the first).

Every loop runs pinned to one CPU (`taskset -c CPU` in front of the whole
command, so that vupy's supervisor and the program take turns on that CPU,
the case SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP is for) and unpinned (the
affinity this script was started with).  A run's value is the mean time of
one call of its loop; a configuration's, the median of its rounds.

Checks: a socket made after the loop by the loop's own call is of the
namespace the mode promises (SIOCGSKNS): this one natively and filter-only,
NS routed and through msocket; and the loop ran under a seccomp filter
exactly in the sessions.
"""
import os
import sys

import benchlib
from benchlib import (SECCOMP_FILTER, STACK_PATH, Goal, Mode, Namespaces, loop_benchmark,
                      native_mode, netns_inode, netns_stack)

NAME = "socket_create"
TOOLS = ("gcc", "taskset", "ip")
QUICK = ["--rounds", "1", "--iterations", "200", "--warmup", "10"]

# (workload, its mode in a session, the loop's arguments in the session and natively)
ROWS = (
    ("socket+close AF_UNIX, filter-only", "filter-only",
     ("socket", "unix", "stream"), ("socket", "unix", "stream")),
    ("socket+close AF_INET, routed", "routed",
     ("socket", "inet", "stream"), ("socket", "inet", "stream")),
    ("msocket(path)+close AF_INET dgram vs socket+close", "msocket",
     ("msocket", STACK_PATH, "inet", "dgram"), ("socket", "inet", "dgram")),
    ("msocket(path)+close vs a routed socket+close, AF_INET dgram", "msocket by path",
     ("msocket", STACK_PATH, "inet", "dgram"), ("socket", "inet", "dgram"), "routed"),
)
# The goals: (mode, language, pinned) -> goal.
GOALS = {
    ("routed", "Python", True): Goal("<= 3x", "ratio", 3),
    ("routed", "Python", False): Goal("<= 5x", "ratio", 5),
    # issue 17, item 2: msocket with a path at most 1.2x a routed socket()
    ("msocket by path", "C", True): Goal("<= 1.2x", "ratio", 1.2),
}


def parser():
    return benchlib.loop_parser(sys.modules[__name__], rounds=5, iterations=20000, warmup=1000)


def run(args):
    cpu = benchlib.pinned_cpu(args)
    with Namespaces() as namespaces:
        ns = namespaces.add()
        stack = netns_inode(ns)
        modes = {
            "native": native_mode(),
            "filter-only": Mode([], netns_inode(), SECCOMP_FILTER),
            "routed": Mode(netns_stack(ns), stack, SECCOMP_FILTER),
            "msocket": Mode(netns_stack(ns, default=False), stack, SECCOMP_FILTER),
            "msocket by path": Mode(netns_stack(ns, default=False), stack, SECCOMP_FILTER),
        }
        variants = [(language, cpus) for language in ("C", "Python") for cpus in (cpu, None)]
        results = loop_benchmark(NAME, ROWS, variants, modes, args,
                                 lambda *key: GOALS.get(key))
    return {
        "title": f"Creating a socket: {args.iterations} calls per run after {args.warmup} "
                 f"untimed, {args.rounds} rounds, median us per call",
        "notes": [f"pinned: taskset -c {cpu} on the whole command (vupy included); "
                  f"unpinned: CPUs {sorted(os.sched_getaffinity(0))}",
                  f"session: vupy run --stack {STACK_PATH}=netns:NS --default {STACK_PATH} -- LOOP "
                  "(filter-only: vupy run -- LOOP; msocket: no --default)"],
        "results": results,
        "checked": "every loop's sockets came from the namespace its mode promises "
                   "(SIOCGSKNS), and the loops ran under a seccomp filter exactly in sessions",
    }


if __name__ == "__main__":
    benchlib.script_main(sys.modules[__name__])
