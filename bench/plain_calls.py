#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""What does a session cost the system calls it does not trap?  getpid and stat.

    python bench/plain_calls.py [--rounds 5] [--iterations 200000] [--warmup 1000]
                                [--cpu N] [--json PATH] [--markdown]

Run as root, with the Python of the venv vupy is installed in.

Every system call of a program in a session runs the seccomp filter; all
but socket creation (and a few rare calls) are let through in BPF, with no
round trip to vupy.  Two loops show what that costs: getpid (syscall(2)
SYS_getpid in C, os.getpid() in Python; the cheapest call there is, so the
filter's share is the largest) and stat("/") (os.stat in Python), each in C
(bench/loops.c) and Python (bench/pyloop.py), natively and under `vupy run
--stack /dev/net/a=netns:NS --default /dev/net/a -- LOOP` (the session a
program routed to a namespace gets), pinned to one CPU with taskset and
unpinned.  The goal is 1.00x, "met" when the session is at most 5% slower.

Checks: a socket(AF_INET) made after the loop is of this namespace natively
and of NS in the session, and the loop ran under a seccomp filter exactly in
the session.
"""
import os
import sys

import benchlib
from benchlib import SAME, SECCOMP_FILTER, STACK_PATH, Mode, Namespaces, loop_benchmark, \
    native_mode, netns_inode, netns_stack

NAME = "plain_calls"
TOOLS = ("gcc", "taskset", "ip")
QUICK = ["--rounds", "1", "--iterations", "200", "--warmup", "10"]

ROWS = (
    ("getpid", "session", ("getpid",), ("getpid",)),
    ('stat("/")', "session", ("stat", "/"), ("stat", "/")),
)


def parser():
    return benchlib.loop_parser(sys.modules[__name__], rounds=5, iterations=200000, warmup=1000)


def run(args):
    cpu = benchlib.pinned_cpu(args)
    with Namespaces() as namespaces:
        ns = namespaces.add()
        modes = {"native": native_mode(),
                 "session": Mode(netns_stack(ns), netns_inode(ns), SECCOMP_FILTER)}
        variants = [(language, cpus) for language in ("C", "Python") for cpus in (cpu, None)]
        results = loop_benchmark(NAME, ROWS, variants, modes, args, lambda *key: SAME)
    return {
        "title": f"System calls the filter lets through: {args.iterations} calls per run after "
                 f"{args.warmup} untimed, {args.rounds} rounds, median us per call",
        "notes": [f"pinned: taskset -c {cpu} on the whole command (vupy included); "
                  f"unpinned: CPUs {sorted(os.sched_getaffinity(0))}",
                  f"session: vupy run --stack {STACK_PATH}=netns:NS --default {STACK_PATH} -- LOOP",
                  "goal 1.00x met: the session at most 5% slower than native"],
        "results": results,
        "checked": "the session's loops ran under a seccomp filter with their sockets routed "
                   "to NS, the native ones with neither",
    }


if __name__ == "__main__":
    benchlib.script_main(sys.modules[__name__])
