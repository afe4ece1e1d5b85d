#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""What does a route cost at connect, and per datagram?  A UDP
socket+connect+close loop, and a UDP sendto loop.

    python bench/routed_connect.py [--rounds 5] [--iterations 20000] [--warmup 1000]
                                   [--cpu N] [--json PATH] [--markdown]

Run as root (vupy run and `ip netns add` need it), with the Python of the
venv vupy is installed in.

The loop (bench/loops.c, `connect 127.0.0.1 9`) makes a UDP socket,
connects it and closes it: a UDP connect needs no peer, so the loop times
the connect itself.  Four ways:

native      no session
no routes   `vupy run --stack /dev/net/a=netns:A --default /dev/net/a`: the
            socket is made on A (a routed socket()), connect is not trapped
stays       the same with `--stack /dev/net/b=netns:B --route
            10.0.0.0/8=/dev/net/b`: connect is trapped, no route matches,
            and vupy connects the socket itself with the address it checked
moved       the same with `--route 127.0.0.1=/dev/net/b`: vupy makes the
            socket anew on B, connects it and puts it in place of the
            program's

The sendto loop (`sendto 127.0.0.1 9`: one byte, from one socket) runs in
the same sessions: with no routes its sends are not trapped; "stays" traps
each (a send with an address) and lets it go on from A; with the route
that matches, the first datagram makes the socket span stacks
(vupy/_span.py) and every datagram then goes through vupy's relay to B
("spans").  The loop times the program's sends; the relaying, on vupy's
thread, competes for the CPU when pinned.

"no routes" is against native; the others against "no routes", so that
their difference is the routed call's own cost.  Pinned to one CPU
(`taskset` on the whole command) and unpinned.  Checks: the loop's last
connected socket is of the namespace its mode promises (SIOCGSKNS: B when
moved, A otherwise, this one natively; the sendto loop's socket, one of
vupy's own namespace when it spans), and the loop ran under a seccomp
filter exactly in sessions.
"""
import os
import sys

import benchlib
from benchlib import (SECCOMP_FILTER, Elsewhere, Goal, Mode, Namespaces, loop_benchmark, native_mode,
                      netns_inode, netns_stack)

NAME = "routed_connect"
TOOLS = ("gcc", "taskset", "ip")
QUICK = ["--rounds", "1", "--iterations", "200", "--warmup", "10"]
LOOP = ("connect", "127.0.0.1", "9")
SEND = ("sendto", "127.0.0.1", "9")
ROWS = (
    ("UDP socket+connect+close, no routes", "no routes", LOOP, LOOP),
    ("UDP socket+connect+close, route elsewhere: vupy connects", "stays", LOOP, LOOP, "no routes"),
    ("UDP socket+connect+close, route matches: moved", "moved", LOOP, LOOP, "no routes"),
    ("UDP sendto, no routes", "no routes", SEND, SEND),
    ("UDP sendto, route elsewhere: the kernel sends", "stays", SEND, SEND, "no routes"),
    ("UDP sendto, route matches: the socket spans", "spans", SEND, SEND, "no routes"),
)
# The goal (16, item 7): a routed connect at most 20 us over one
# that is not routed, pinned.
GOALS = {("moved", "C", True): Goal("<= +20 us", "difference", 20)}


def parser():
    return benchlib.loop_parser(sys.modules[__name__], rounds=5, iterations=20000, warmup=1000)


def run(args):
    cpu = benchlib.pinned_cpu(args)
    with Namespaces() as namespaces:
        a, b = namespaces.add(), namespaces.add()
        other = ["--stack", f"/dev/net/b=netns:{b}"]
        modes = {
            "native": native_mode(),
            "no routes": Mode(netns_stack(a), netns_inode(a), SECCOMP_FILTER),
            "stays": Mode(netns_stack(a) + other + ["--route", "10.0.0.0/8=/dev/net/b"],
                          netns_inode(a), SECCOMP_FILTER),
            "moved": Mode(netns_stack(a) + other + ["--route", "127.0.0.1=/dev/net/b"],
                          netns_inode(b), SECCOMP_FILTER),
            "spans": Mode(netns_stack(a) + other + ["--route", "127.0.0.1=/dev/net/b"],
                          Elsewhere(netns_inode(), netns_inode(a), netns_inode(b)), SECCOMP_FILTER),
        }
        results = loop_benchmark(NAME, ROWS, [("C", cpu), ("C", None)], modes, args,
                                 lambda *key: GOALS.get(key))
    return {
        "title": f"A route at connect and per datagram: {args.iterations} UDP socket+connect+close "
                 f"or sendto per run after {args.warmup} untimed, {args.rounds} rounds, "
                 "median us per iteration",
        "notes": [f"pinned: taskset -c {cpu} on the whole command (vupy included); "
                  f"unpinned: CPUs {sorted(os.sched_getaffinity(0))}",
                  "no routes: vupy run --stack /dev/net/a=netns:A --default /dev/net/a -- LOOP; "
                  "stays: + --stack /dev/net/b=netns:B --route 10.0.0.0/8=/dev/net/b; "
                  "moved, spans: + --route 127.0.0.1=/dev/net/b instead"],
        "results": results,
        "checked": "the loop's last connected socket, or its sending one, was of the namespace its "
                   "mode promises (SIOCGSKNS), and the loops ran under a seccomp filter exactly in "
                   "sessions",
    }


if __name__ == "__main__":
    benchlib.script_main(sys.modules[__name__])
