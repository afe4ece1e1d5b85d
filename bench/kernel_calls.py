#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""What do userspace stacks cost programs whose sockets are kernel ones?

    python bench/kernel_calls.py [--rounds 5] [--iterations 20000] [--warmup 1000]
                                 [--cpu N] [--json PATH] [--markdown]

Run as root, with the Python of the venv vupy is installed in.  A session
with userspace stacks traps more calls than socket(2): bind, connect,
getsockname, setsockopt, sendmsg, recvmsg, ... (see vupy/_proxy.py), and
such a call on a kernel socket then costs a round trip to vupy and a
CONTINUE.  A session without userspace stacks traps none of them.  Python
loops (bench/pyloop.py) on kernel sockets only measure it:

sockopt   getsockname() + setsockopt(TCP_NODELAY) on an AF_INET socket
          (routed to the session's namespace stack);
sendmsg   sendmsg() + recvmsg() of 64 bytes on an AF_UNIX socketpair (as
          D-Bus and other local IPC do);
send      send() + recv() of 64 bytes on the same pair, which no filter
          traps, for comparison.

Each natively and in two sessions: kernel (`vupy run --stack
/dev/net/a=netns:NS --default /dev/net/a`), the session every kernel-stack
user gets, and userspace (the same with --userspace, which traps the proxy
calls as a session with an lwip stack does).  Pinned to one CPU (taskset on
the whole command).

Checks: the loop's AF_INET sockets are of NS in the sessions and of this
namespace natively, and the loop ran under a seccomp filter exactly in the
sessions.
"""
import sys

import benchlib
from benchlib import SECCOMP_FILTER, STACK_PATH, Mode, Namespaces, loop_benchmark, \
    native_mode, netns_inode, netns_stack

NAME = "kernel_calls"
TOOLS = ("taskset", "ip")
QUICK = ["--rounds", "1", "--iterations", "200", "--warmup", "10"]

WORKLOADS = (
    ("getsockname+setsockopt AF_INET", "sockopt"),
    ("sendmsg+recvmsg 64 B AF_UNIX pair", "sendmsg"),
    ("send+recv 64 B AF_UNIX pair", "send"),
)
SESSIONS = (("kernel", "kernel-only session"), ("userspace", "--userspace session"))
ROWS = tuple((f"{text}, {session_text}", mode, (kind,), (kind,))
             for text, kind in WORKLOADS for mode, session_text in SESSIONS)


def parser():
    return benchlib.loop_parser(sys.modules[__name__], rounds=5, iterations=20000, warmup=1000)


def run(args):
    cpu = benchlib.pinned_cpu(args)
    with Namespaces() as namespaces:
        ns = namespaces.add()
        stack = netns_inode(ns)
        modes = {"native": native_mode(),
                 "kernel": Mode(netns_stack(ns), stack, SECCOMP_FILTER),
                 "userspace": Mode(netns_stack(ns) + ["--userspace"], stack, SECCOMP_FILTER)}
        results = loop_benchmark(NAME, ROWS, [("Python", cpu)], modes, args, unit="us/iter")
    return {
        "title": f"Kernel sockets in sessions with and without userspace stacks: "
                 f"{args.iterations} iterations per run after {args.warmup} untimed, "
                 f"{args.rounds} rounds, median us per iteration",
        "notes": [f"pinned: taskset -c {cpu} on the whole command (vupy included)",
                  f"sessions: vupy run --stack {STACK_PATH}=netns:NS --default {STACK_PATH} "
                  "[--userspace] -- LOOP"],
        "results": results,
        "checked": "the loops' AF_INET sockets came from NS in sessions and from this namespace "
                   "natively, and the loops ran under a seccomp filter exactly in sessions",
    }


if __name__ == "__main__":
    benchlib.script_main(sys.modules[__name__])
