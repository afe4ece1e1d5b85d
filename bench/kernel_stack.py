#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""What does vupy cost the data path of a kernel stack?  Bulk TCP and round
trips on a namespace stack, through vupy and natively in the namespace.

    python bench/kernel_stack.py [--rounds 5] [--bytes MIB] [--iterations 20000]
                                 [--warmup 1000] [--workloads LIST] [--cpu N]
                                 [--json PATH] [--markdown]

Run as root, with the Python of the venv vupy is installed in.

Both ends run bench/peer.py on the loopback of one namespace NS made here:
the server always with `ip netns exec NS`; the client either the same way
(native: the program in the namespace) or under `vupy run --stack
/dev/net/a=netns:NS --default /dev/net/a` (vupy: the program in this
namespace, its sockets made by vupy in NS).  Once a socket is made, vupy is
not on its path: the goal is 1.00x ("met" when vupy is at most 5% slower).

send     TCP bulk client -> server: --bytes MiB in 256 KiB sendall()s
recv     TCP bulk server -> client
rtt      --iterations 64-byte round trips over TCP (TCP_NODELAY) after
         --warmup untimed ones
udp-rtt  the same over UDP

Every workload runs pinned (both ends, and so vupy, under `taskset -c
CPU`) and unpinned.  Unpinned, a round trip on a small virtual machine
costs what waking an idle CPU costs, and whether the two ends share a CPU
changes from run to run: look at min-max.

Checks: both ends counted what the run was to move; the client's socket is
a kernel socket of NS (SIOCGSKNS); natively the client itself ran in NS
without a seccomp filter, under vupy in this namespace under one.
"""
import sys

import benchlib
from benchlib import (PEER_WORKLOADS, SAME, SECCOMP_FILTER, STACK_PATH, Namespaces, compare,
                      connection, interleave, netns_inode, netns_stack, peer_argv, peer_count,
                      peer_problems, peer_value, pin, session, side, variant_name)

NAME = "kernel_stack"
TOOLS = ("ip", "taskset")
QUICK = ["--rounds", "1", "--bytes", "1", "--iterations", "200", "--warmup", "10"]
WORKLOADS = ("send", "recv", "rtt", "udp-rtt")
ADDRESS, PORT = "127.0.0.1", 5201


def parser():
    p = benchlib.connection_parser(sys.modules[__name__], rounds=5, mib=512, workloads=WORKLOADS)
    p.add_argument("--cpu", type=int, default=None,
                   help="CPU for the pinned runs (default: the first one this script may use)")
    return p


def run(args):
    workloads = [w for w in args.workloads.split(",") if w]
    if not workloads or set(workloads) - set(WORKLOADS):
        raise benchlib.BenchError(f"--workloads: a comma list of {', '.join(WORKLOADS)}")
    cpu = benchlib.pinned_cpu(args)
    configs = [(w, cpus, mode) for w in workloads for cpus in (cpu, None) for mode in ("native", "vupy")]
    with Namespaces() as namespaces:
        ns = namespaces.add()
        home, stack = netns_inode(), netns_inode(ns)

        def run_one(config):
            workload, cpus, mode = config
            count, warmup = peer_count(workload, args)
            client = peer_argv("client", workload, ADDRESS, PORT, count, warmup)
            if mode == "native":
                client = ["ip", "netns", "exec", ns, *client]
            else:
                client = session(client, *netns_stack(ns))
            server = ["ip", "netns", "exec", ns,
                      *peer_argv("server", workload, ADDRESS, PORT, count, warmup)]
            c, s = connection(pin(client, cpus), pin(server, cpus))
            problems = peer_problems(workload, count, warmup, c, s)
            if c.get("kind") != "kernel" or c.get("netns") != stack:
                problems.append(f"the client's socket is {c.get('kind')} of netns "
                                f"{c.get('netns')}, not a kernel socket of NS ({stack})")
            own, seccomp = (stack, 0) if mode == "native" else (home, SECCOMP_FILTER)
            if (c.get("own_netns"), c.get("seccomp")) != (own, seccomp):
                problems.append(f"the client ran in netns {c.get('own_netns')} with Seccomp: "
                                f"{c.get('seccomp')}, not in {own} with {seccomp}")
            return peer_value(workload, count, c), problems

        measured = interleave(configs, args.rounds, run_one, NAME)
    results = []
    for workload in workloads:
        text, unit, better = PEER_WORKLOADS[workload]
        for cpus in (cpu, None):
            results.append(compare(text, variant_name(workload, cpus), unit,
                                   side("native", measured[(workload, cpus, "native")]),
                                   side("vupy", measured[(workload, cpus, "vupy")]), better, SAME))
    return {
        "title": f"The data path of a namespace stack: bulk {args.bytes} MiB, "
                 f"{args.iterations} round trips of 64 B after {args.warmup} untimed; "
                 f"{args.rounds} rounds, median",
        "notes": ["native: the client under ip netns exec NS; vupy: the client under "
                  f"vupy run --stack {STACK_PATH}=netns:NS --default {STACK_PATH}; "
                  "the server under ip netns exec NS, both on NS's loopback; "
                  f"pinned: both under taskset -c {cpu}",
                  "goal 1.00x met: vupy at most 5% slower than native"],
        "results": results,
        "checked": "both ends counted what each run moved; the client's socket was a kernel "
                   "socket of NS, made by vupy (client outside NS, under a seccomp filter) or "
                   "natively (client in NS, no filter)",
    }


if __name__ == "__main__":
    benchlib.script_main(sys.modules[__name__])
