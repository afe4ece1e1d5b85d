#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""Where does an unpinned routed socket() lose its time?  The same loop
with vupy and the program placed on the CPUs in several ways.

    python bench/wakeup.py [--rounds 5] [--iterations 20000] [--warmup 1000]
                           [--json PATH] [--markdown]

Run as root, with the Python of the venv vupy is installed in, on a
machine with CPUs 0 and 1.

bench/loops.c's socket(AF_INET)+close() in a routed session (`vupy run
--stack /dev/net/a=netns:NS --default /dev/net/a`), against the same loop
natively, placed:

unpinned        as a user runs it (a receiving serving thread per CPU, with spares)
one thread      unpinned, with one thread serving every call
                (--serving-threads 0: the design before serving threads)
one CPU         `taskset -c 0` on the whole command (vupy included)
apart           vupy on CPU 0, the program on CPU 1 (`taskset -c 0 vupy run
                -- taskset -c 1 LOOP`)
CPU 1 busy      unpinned, while a `nice -n 19` busy loop runs on CPU 1
CPU 1 idle-busy unpinned, while a SCHED_IDLE busy loop (`chrt -i 0`) runs
                on CPU 1

The busy loops are for finding the cause, not designs to keep: they burn a
CPU.  Natively, the loop runs unpinned and alone.

Checks: every loop's sockets came from the namespace its mode promises
(SIOCGSKNS), and the loops ran under a seccomp filter exactly in sessions.
"""
import os
import shutil
import subprocess
import sys
import tempfile

import benchlib
from benchlib import (SECCOMP_FILTER, BenchError, Loops, Mode, Namespaces, compare, interleave,
                      native_mode, netns_inode, netns_stack, session, side)

NAME = "wakeup"
TOOLS = ("gcc", "taskset", "ip", "chrt", "nice")
QUICK = ["--rounds", "1", "--iterations", "200", "--warmup", "10"]
SOCKET = ("socket", "inet", "stream")
BUSY = ["sh", "-c", "while :; do :; done"]
# placement -> (taskset CPUs for the whole command, for the program alone, a busy loop's argv,
# more vupy run options)
PLACEMENTS = {
    "unpinned": (None, None, None, ()),
    "one thread": (None, None, None, ("--serving-threads", "0")),
    "one CPU": ("0", None, None, ()),
    "apart": ("0", "1", None, ()),
    "CPU 1 busy": (None, None, ["taskset", "-c", "1", "nice", "-n", "19", *BUSY], ()),
    "CPU 1 idle-busy": (None, None, ["taskset", "-c", "1", "chrt", "-i", "0", *BUSY], ()),
}


def parser():
    p = benchlib.parser(sys.modules[__name__], rounds=5)
    p.add_argument("--iterations", type=benchlib.positive, default=20000, help="timed calls per run (default 20000)")
    p.add_argument("--warmup", type=int, default=1000, help="untimed calls first (default 1000)")
    return p


def run(args):
    if not {0, 1} <= os.sched_getaffinity(0):
        raise BenchError("needs CPUs 0 and 1")
    configs = ["native", *PLACEMENTS]
    tmpdir = tempfile.mkdtemp(prefix="vupy-bench-")
    try:
        with Namespaces() as namespaces:
            ns = namespaces.add()
            loops = Loops(tmpdir)
            routed = Mode(netns_stack(ns), netns_inode(ns), SECCOMP_FILTER)

            def run_one(placement):
                argv = loops.argv("C", args.iterations, args.warmup, *SOCKET)
                if placement == "native":
                    return loops.check(benchlib.run_once(argv), native_mode())
                whole, program, busy, options = PLACEMENTS[placement]
                argv = benchlib.pin(session(benchlib.pin(argv, program), *routed.options, *options), whole)
                load = subprocess.Popen(busy) if busy else None
                try:
                    return loops.check(benchlib.run_once(argv), routed)
                finally:
                    if load is not None:
                        load.kill()
                        load.wait()

            measured = interleave(configs, args.rounds, lambda c: _us(run_one(c)), NAME)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    native = side("native, unpinned", measured["native"])
    return {
        "title": f"A routed socket() by placement: {args.iterations} calls per run after {args.warmup} "
                 f"untimed, {args.rounds} rounds, median us per call",
        "notes": ["session: vupy run --stack /dev/net/a=netns:NS --default /dev/net/a -- LOOP"],
        "results": [compare("socket+close AF_INET, routed", placement, "us/call", native,
                            side(placement, measured[placement])) for placement in PLACEMENTS],
        "checked": "every loop's sockets came from the namespace its mode promises (SIOCGSKNS), and "
                   "the loops ran under a seccomp filter exactly in sessions",
    }


def _us(result):
    ns, problems = result
    return ns / 1000, problems


if __name__ == "__main__":
    benchlib.script_main(sys.modules[__name__])
