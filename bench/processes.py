#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""What does a session cost processes?  Start-up, fork+exec, and many
processes making sockets at once.

    python bench/processes.py [--rounds 5] [--launches 20] [--forks 1000]
                              [--processes 1000] [--sockets 20] [--cpu N]
                              [--workloads LIST] [--json PATH] [--markdown]

Run as root, with the Python of the venv vupy is installed in.

startup   --launches runs of `true` one after another, natively, under
          `vupy run -- true` and under `vupy run --stack
          /dev/net/a=netns:NS --default /dev/net/a -- true`; ms per launch,
          timed from this script (so both sides pay the same spawn).  Goal:
          `vupy run -- true` at most 100 ms more than `true`.
forkexec  sh -c 'i=0; while [ $i -lt FORKS ]; do /bin/true; i=$((i+1));
          done', timed inside (date +%s%N before and after the loop),
          natively and in the routed session, pinned to one CPU (taskset on
          the whole command, vupy included) and unpinned; us per iteration.
          Goal: at most 1.2x.
fanout    bench/loops.c's fanout: --processes children, forked and held
          first, then released at once, each making --sockets sockets
          (socket(AF_INET, SOCK_STREAM) + close()) and exiting; sockets per
          second from the release to the last child reaped, natively and in
          the routed session.  In the session, the supervisor's (the vupy
          process's) peak memory, VmHWM of /proc/PID/status read once the
          children are gone and before the session ends.  Goal: under 100 MB.

Checks: startup runs bench/loops.c (getpid, once) in each configuration
after the timed launches, and forkexec runs it after its loop from the same
shell: under a seccomp filter exactly in sessions, with its sockets routed to
NS in the routed session.  fanout's children check that each one's last
socket is of the namespace of their parent's sockets (the run fails if
not), and the parent reports its own as the loops do.
"""
import shutil
import subprocess
import sys
import tempfile
import time

import benchlib
from benchlib import (SECCOMP_FILTER, STACK_PATH, BenchError, Goal, Loops, Mode, Namespaces,
                      Proc, compare, interleave, native_mode, netns_inode, netns_stack, pin,
                      session, side, variant_name)

NAME = "processes"
TOOLS = ("gcc", "taskset", "ip", "sh", "date", "true")
QUICK = ["--rounds", "1", "--launches", "2", "--forks", "20", "--processes", "20",
         "--sockets", "5"]
WORKLOADS = ("startup", "forkexec", "fanout")
MB = 1000 * 1000

# The loop, timed inside; then the probe ($0 is bench/loops.c) as
# the loop's last child, which prints "NS INODE SECCOMP"; then "NS_PER_ITER
# INODE SECCOMP", the loops' protocol.
FORKEXEC = ('t0=$(date +%s%N); i=0; while [ $i -lt "$1" ]; do /bin/true; i=$((i+1)); done; '
            't1=$(date +%s%N); n=$1; set -- $("$0" 1 0 getpid); '
            'echo "$(( (t1 - t0) / n )) $2 $3"')


def parser():
    p = benchlib.parser(sys.modules[__name__], rounds=5)
    p.add_argument("--launches", type=benchlib.positive, default=20,
                   help="launches of true per startup run (default 20)")
    p.add_argument("--forks", type=benchlib.positive, default=1000,
                   help="iterations of the fork+exec loop (default 1000)")
    p.add_argument("--processes", type=benchlib.positive, default=1000,
                   help="concurrent processes of fanout (default 1000)")
    p.add_argument("--sockets", type=benchlib.positive, default=20,
                   help="sockets each fanout process makes (default 20)")
    p.add_argument("--cpu", type=int, default=None,
                   help="CPU for the pinned forkexec runs (default: the first one "
                        "this script may use)")
    p.add_argument("--workloads", default=",".join(WORKLOADS),
                   help=f"comma list of workloads (default {','.join(WORKLOADS)})")
    return p


def in_mode(argv, mode):
    return argv if mode.options is None else session(argv, *mode.options)


def startup(loops, mode, launches):
    """ms per launch of `true`, and the probe's problems."""
    argv = in_mode(["true"], mode)
    t0 = time.perf_counter_ns()
    for _ in range(launches):
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, timeout=benchlib.RUN_TIMEOUT)
        if r.returncode != 0:
            raise BenchError(f"exit status {r.returncode}: {benchlib.describe(argv)}\n"
                             f"{r.stderr.decode(errors='replace').strip()}")
    ms = (time.perf_counter_ns() - t0) / launches / 1e6
    probe = benchlib.run_once(in_mode(loops.argv("C", 1, 0, "getpid"), mode))
    return ms, loops.check(probe, mode)[1]


def forkexec(loops, mode, forks, cpus):
    """us per fork+exec, and the probe's problems."""
    argv = pin(in_mode(["sh", "-c", FORKEXEC, loops.exe, str(forks)], mode), cpus)
    ns, problems = loops.check(benchlib.run_once(argv), mode)
    return ns / 1000, problems


def peak_memory(pid):
    """VmHWM of process pid, in MB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / MB
    raise BenchError(f"no VmHWM in /proc/{pid}/status")


def fanout(loops, mode, processes, sockets):
    """Sockets per second, the problems, and the session's supervisor's peak
    memory in MB (None natively)."""
    argv = in_mode(loops.argv("C", sockets, 0, "fanout", processes), mode)
    proc = Proc(argv, stdin=subprocess.PIPE)
    try:
        line = proc.readline(benchlib.RUN_TIMEOUT)
        # The program waits for EOF on stdin: the session is still there.
        memory = None if mode.options is None else peak_memory(proc.p.pid)
        _, err = proc.p.communicate(timeout=benchlib.RUN_TIMEOUT)     # closes stdin
        if proc.p.returncode != 0:
            raise BenchError(f"exit status {proc.p.returncode}: {benchlib.describe(argv)}\n"
                             f"{err.decode(errors='replace').strip()}")
    finally:
        proc.stop()
    ns, problems = loops.check(line, mode)
    return 1e9 / ns, problems, memory


def run(args):
    workloads = [w for w in args.workloads.split(",") if w]
    if not workloads or set(workloads) - set(WORKLOADS):
        raise BenchError(f"--workloads: a comma list of {', '.join(WORKLOADS)}")
    cpu = benchlib.pinned_cpu(args)
    configs = []
    if "startup" in workloads:
        configs += [("startup", mode, None) for mode in ("native", "bare", "routed")]
    if "forkexec" in workloads:
        configs += [("forkexec", mode, cpus) for cpus in (cpu, None) for mode in ("native", "routed")]
    if "fanout" in workloads:
        configs += [("fanout", mode, None) for mode in ("native", "routed")]
    memory = []
    tmpdir = tempfile.mkdtemp(prefix="vupy-bench-")
    try:
        with Namespaces() as namespaces:
            ns = namespaces.add()
            modes = {"native": native_mode(),
                     "bare": Mode([], netns_inode(), SECCOMP_FILTER),
                     "routed": Mode(netns_stack(ns), netns_inode(ns), SECCOMP_FILTER)}
            loops = Loops(tmpdir)

            def run_one(config):
                workload, mode, cpus = config
                if workload == "startup":
                    return startup(loops, modes[mode], args.launches)
                if workload == "forkexec":
                    return forkexec(loops, modes[mode], args.forks, cpus)
                per_second, problems, peak = fanout(loops, modes[mode], args.processes, args.sockets)
                if peak is not None:
                    memory.append(peak)
                return per_second, problems

            measured = interleave(configs, args.rounds, run_one, NAME)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)

    session_text = f"vupy run --stack {STACK_PATH}=netns:NS --default {STACK_PATH} --"
    results = []
    if "startup" in workloads:
        native = side("true", measured[("startup", "native", None)])
        results.append(compare("vupy run -- true vs true", "start-up", "ms", native,
                               side("vupy run -- true", measured[("startup", "bare", None)]),
                               goal=Goal("<= +100 ms", "difference", 100)))
        results.append(compare("vupy run --stack A=netns:NS --default A -- true vs true",
                               "start-up", "ms", native,
                               side("routed session", measured[("startup", "routed", None)])))
    if "forkexec" in workloads:
        for cpus in (cpu, None):
            results.append(compare(f"sh loop of {args.forks} fork+exec of /bin/true",
                                   variant_name("sh", cpus), "us/iter",
                                   side("native", measured[("forkexec", "native", cpus)]),
                                   side("routed session", measured[("forkexec", "routed", cpus)]),
                                   goal=Goal("<= 1.2x", "ratio", 1.2)))
    if "fanout" in workloads:
        routed = measured[("fanout", "routed", None)]
        results.append(compare(f"{args.processes} processes x {args.sockets} socket+close "
                               "AF_INET at once", "C, unpinned", "sockets/s",
                               side("native", measured[("fanout", "native", None)]),
                               side("routed session", routed), better="higher"))
        results.append(compare(f"supervisor peak memory (VmHWM) with {args.processes} processes",
                               "C, unpinned", "MB", None,
                               side("routed session", {"samples": memory,
                                                       "problems": routed["problems"]}),
                               goal=Goal("< 100 MB", "value", 100)))
    return {
        "title": f"Processes in a session: start-up ({args.launches} launches per run), "
                 f"fork+exec ({args.forks} per run), {args.processes} processes at once; "
                 f"{args.rounds} rounds, median",
        "notes": [f"routed session: {session_text} COMMAND; "
                  f"pinned: taskset -c {cpu} on the whole command (vupy included)"],
        "results": results,
        "checked": "a probe in each session (after the launches, and as the fork+exec loop's "
                   "last child) ran under a seccomp filter with its sockets where the session "
                   "routes them, natively with neither; every fanout child's sockets came from "
                   "its parent's namespace",
    }


if __name__ == "__main__":
    benchlib.script_main(sys.modules[__name__])
