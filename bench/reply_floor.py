#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""What does the reply to a trapped socket() cost, whoever answers it?

    python bench/reply_floor.py [--rounds 5] [--iterations 20000] [--warmup 1000]
                                [--cpu N] [--json PATH] [--markdown]

Run as root, with the Python of the venv vupy is installed in.

The same C loop of socket(AF_INET)+close() (bench/loops.c), natively and
under three supervisors: bench/reply_floor.c, a minimal one with no Python
and no routing, answering CONTINUE (the kernel makes the socket in the
program) or making the socket itself and injecting it with ADDFD+SEND; and
vupy routing it to a namespace stack (which injects with ADDFD+SEND too).
Both reply_floor variants ask for SYNC_WAKE_UP, as vupy does.  Pinned to
one CPU and unpinned: the difference between CONTINUE and ADDFD unpinned is
the kernel's, not vupy's (docs/performance.md).

Checks: each loop's sockets came from the namespace its supervisor makes
them in, and it ran under a seccomp filter exactly when supervised.
"""
import os
import shutil
import subprocess
import sys
import tempfile

import benchlib
from benchlib import (HERE, SECCOMP_FILTER, STACK_PATH, BenchError, Mode, Namespaces, loop_benchmark,
                      native_mode, netns_inode, netns_stack)

NAME = "reply_floor"
TOOLS = ("gcc", "taskset", "ip")
QUICK = ["--rounds", "1", "--iterations", "200", "--warmup", "10"]

SOCKET = ("socket", "inet", "stream")
ROWS = (
    ("socket+close AF_INET, minimal supervisor, CONTINUE", "continue", SOCKET, SOCKET),
    ("socket+close AF_INET, minimal supervisor, ADDFD+SEND", "addfd", SOCKET, SOCKET),
    ("socket+close AF_INET, vupy, routed (ADDFD+SEND)", "routed", SOCKET, SOCKET),
)


def parser():
    return benchlib.loop_parser(sys.modules[__name__], rounds=5, iterations=20000, warmup=1000)


def run(args):
    cpu = benchlib.pinned_cpu(args)
    tmpdir = tempfile.mkdtemp(prefix="vupy-bench-")
    try:
        supervisor = os.path.join(tmpdir, "reply_floor")
        source = os.path.join(HERE, "reply_floor.c")
        r = subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-o", supervisor, source],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise BenchError(f"cannot compile {source}:\n{r.stderr}")
        with Namespaces() as namespaces:
            ns = namespaces.add()
            modes = {
                "native": native_mode(),
                "continue": Mode(None, netns_inode(), SECCOMP_FILTER, (supervisor, "continue")),
                "addfd": Mode(None, netns_inode(), SECCOMP_FILTER, (supervisor, "addfd")),
                "routed": Mode(netns_stack(ns), netns_inode(ns), SECCOMP_FILTER),
            }
            results = loop_benchmark(NAME, ROWS, [("C", cpu), ("C", None)], modes, args)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return {
        "title": f"The reply to a trapped socket(): {args.iterations} calls per run after "
                 f"{args.warmup} untimed, {args.rounds} rounds, median us per call",
        "notes": [f"pinned: taskset -c {cpu} on the whole command (supervisor included); "
                  f"unpinned: CPUs {sorted(os.sched_getaffinity(0))}",
                  "minimal supervisor: bench/reply_floor.c continue|addfd LOOP; "
                  f"vupy: vupy run --stack {STACK_PATH}=netns:NS --default {STACK_PATH} -- LOOP"],
        "columns": ("native", "supervised"),
        "results": results,
        "checked": "every loop's sockets came from the namespace its supervisor makes them in "
                   "(SIOCGSKNS), and the loops ran under a seccomp filter exactly when supervised",
    }


if __name__ == "__main__":
    benchlib.script_main(sys.modules[__name__])
