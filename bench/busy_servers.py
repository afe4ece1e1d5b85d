#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""Busy sessions: connection rates with concurrent clients, and many
processes making sockets at once on one CPU and on two.

    python bench/busy_servers.py [--rounds 3] [--connections 2000] [--sockets 20000]
                                 [--clients 1,8,64] [--processes 1,2,8,1000]
                                 [--workloads conns,sockets] [--json PATH] [--markdown]

Run as root, with the Python of the venv vupy is installed in.

conns    bench/acceptor.c (two worker processes) serves in a namespace NS:
         each connection gets one byte and is closed.  CLIENTS client
         processes (bench/loops.c's conns), released at once, make
         --connections connections between them (keep-alive off: each is
         socket + connect + read + close), natively inside NS (`ip netns
         exec`) and in a session whose default stack is NS; connections
         per second from the release to the last client reaped, unpinned.
         Goal (issue 17): 8 clients at least 0.8x native.  The session
         runs with its serving threads (one receiving per CPU, with
         spares) and, for the previous design, with one thread serving
         every call (--serving-threads 0).
sockets  bench/loops.c's fanout: PROCESSES children released at once make
         --sockets sockets between them (socket(AF_INET, SOCK_STREAM) +
         close()), natively and in the session, with the whole command
         pinned to one CPU and to two (`taskset -c 0`, `-c 0,1`); sockets
         per second.  Goals (issue 17): 1,000 processes on two CPUs at
         least 0.3x native, and at least 1.6x the session's rate on one
         CPU (it scales).  On two CPUs, the previous design too (on one,
         a session has one serving thread anyway).

Checks: every client's and child's last socket is of NS (the run fails if
not), and the loops ran under a seccomp filter exactly in sessions.
"""
import os
import shutil
import sys
import tempfile

import benchlib
from benchlib import (SECCOMP_FILTER, BenchError, Goal, Loops, Mode, Namespaces, Proc, compare,
                      compile_program, interleave, native_mode, netns_inode, netns_stack, pin,
                      session, side)

NAME = "busy_servers"
TOOLS = ("gcc", "taskset", "ip")
QUICK = ["--rounds", "1", "--connections", "64", "--sockets", "64", "--clients", "1,8",
         "--processes", "1,8"]
WORKLOADS = ("conns", "sockets")
PORT = 9099
SERVER_WORKERS = 2
CPU_SETS = ("0", "0,1")


def parser():
    p = benchlib.parser(sys.modules[__name__], rounds=3)
    p.add_argument("--connections", type=int, default=2000, help="connections per run (default 2000)")
    p.add_argument("--sockets", type=int, default=20000, help="sockets per run (default 20000)")
    p.add_argument("--clients", default="1,8,64", help="concurrent clients, a comma list (default 1,8,64)")
    p.add_argument("--processes", default="1,2,8,1000",
                   help="processes making sockets at once, a comma list (default 1,2,8,1000)")
    p.add_argument("--workloads", default=",".join(WORKLOADS),
                   help=f"a comma list of {', '.join(WORKLOADS)} (default all)")
    return p


def counts(text, what):
    try:
        values = [int(v) for v in text.split(",") if v]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise BenchError(f"--{what}: a comma list of positive numbers")
    return values


def run(args):
    workloads = [w for w in args.workloads.split(",") if w]
    if not workloads or set(workloads) - set(WORKLOADS):
        raise BenchError(f"--workloads: a comma list of {', '.join(WORKLOADS)}")
    clients, processes = counts(args.clients, "clients"), counts(args.processes, "processes")
    if len(os.sched_getaffinity(0)) < 2 and "sockets" in workloads:
        raise BenchError("sockets: needs CPUs 0 and 1")
    configs = []
    if "conns" in workloads:
        configs += [("conns", mode, n, None) for n in clients for mode in ("native", "session", "one thread")]
    if "sockets" in workloads:
        configs += [("sockets", mode, n, cpus) for n in processes for cpus in CPU_SETS
                    for mode in ("native", "session", "one thread") if cpus != "0" or mode != "one thread"]
    tmpdir = tempfile.mkdtemp(prefix="vupy-bench-")
    try:
        with Namespaces() as namespaces:
            ns = namespaces.add()
            modes = {"native": Mode(None, netns_inode(ns), 0, ("ip", "netns", "exec", ns)),
                     "session": Mode(netns_stack(ns), netns_inode(ns), SECCOMP_FILTER),
                     "one thread": Mode([*netns_stack(ns), "--serving-threads", "0"], netns_inode(ns),
                                        SECCOMP_FILTER)}
            loops = Loops(tmpdir)
            server = None
            if "conns" in workloads:
                server = Proc(["ip", "netns", "exec", ns, compile_program("acceptor", tmpdir), str(PORT),
                               str(SERVER_WORKERS)])
                if server.readline(benchlib.START_TIMEOUT).strip() != "ready":
                    raise BenchError("bench/acceptor.c did not start")
            try:
                def run_one(config):
                    workload, mode, n, cpus = config
                    total = args.connections if workload == "conns" else args.sockets
                    each = max(1, total // n)
                    workload_args = (("conns", n, "127.0.0.1", PORT) if workload == "conns"
                                     else ("fanout", n))
                    argv = loops.argv("C", each, 0, *workload_args)
                    argv = [*modes[mode].under, *argv] if modes[mode].options is None \
                        else session(argv, *modes[mode].options)
                    ns_per, problems = loops.check(benchlib.run_once(pin(argv, cpus)), modes[mode])
                    return 1e9 / ns_per, problems

                measured = interleave(configs, args.rounds, run_one, NAME)
            finally:
                if server is not None:
                    server.stop()
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)

    results = []
    for n in clients if "conns" in workloads else ():
        results.append(compare(f"{n} client{'s' if n > 1 else ''} at once, TCP connect+read+close",
                               "C, unpinned", "conn/s", side("native", measured[("conns", "native", n, None)]),
                               side("session", measured[("conns", "session", n, None)]), better="higher",
                               goal=Goal(">= 0.8x", "ratio", 0.8) if n == 8 else None))
        results.append(_against_one_thread(f"{n} client{'s' if n > 1 else ''} at once", "C, unpinned",
                                           "conn/s", measured, ("conns", n, None)))
    for n in processes if "sockets" in workloads else ():
        for cpus in CPU_SETS:
            results.append(compare(f"{n} process{'es' if n > 1 else ''} at once, socket+close AF_INET",
                                   f"C, CPUs {cpus}", "sockets/s",
                                   side("native", measured[("sockets", "native", n, cpus)]),
                                   side("session", measured[("sockets", "session", n, cpus)]),
                                   better="higher",
                                   goal=Goal(">= 0.3x", "ratio", 0.3) if n == 1000 and cpus == "0,1" else None))
        results.append(_against_one_thread(f"{n} process{'es' if n > 1 else ''} at once", "C, CPUs 0,1",
                                           "sockets/s", measured, ("sockets", n, "0,1")))
        for mode in ("native", "session"):
            results.append(compare(f"{n} process{'es' if n > 1 else ''} at once, socket+close AF_INET: "
                                   "two CPUs against one", mode, "sockets/s",
                                   side("CPU 0", measured[("sockets", mode, n, "0")]),
                                   side("CPUs 0,1", measured[("sockets", mode, n, "0,1")]), better="higher",
                                   goal=Goal(">= 1.6x", "ratio", 1.6) if n == 1000 and mode == "session"
                                   else None))
    return {
        "title": f"Busy sessions: {args.connections} connections and {args.sockets} sockets per run, "
                 f"{args.rounds} rounds, median",
        "notes": [f"session: vupy run --stack /dev/net/a=netns:NS --default /dev/net/a -- LOOP "
                  "(one receiving serving thread per CPU, with spares; one thread: with "
                  "--serving-threads 0, the previous design); "
                  f"native: ip netns exec NS LOOP; the server: bench/acceptor.c {PORT} {SERVER_WORKERS} "
                  "in NS; sockets pinned with taskset -c on the whole command (vupy included)"],
        "results": results,
        "checked": "every client's and child's last socket came from NS, and the loops ran under a "
                   "seccomp filter exactly in sessions",
    }


def _against_one_thread(workload, variant, unit, measured, key):
    """The session with its serving threads against the previous design."""
    workload_name, n, cpus = key
    return compare(f"{workload}: serving threads against one thread", variant, unit,
                   side("one thread", measured[(workload_name, "one thread", n, cpus)]),
                   side("per CPU", measured[(workload_name, "session", n, cpus)]), better="higher")


if __name__ == "__main__":
    benchlib.script_main(sys.modules[__name__])
