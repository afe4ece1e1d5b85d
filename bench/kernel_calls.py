#!/usr/bin/env python3
"""What do userspace stacks cost programs whose sockets are kernel ones?

    python bench/kernel_calls.py [--rounds 5] [--iterations 20000] [--json PATH]

Run as root, with the Python of the venv vupy is installed in.  A session
with userspace stacks traps more calls than socket(2): bind, connect,
getsockname, setsockopt, sendmsg, recvmsg, ... (see vupy/_proxy.py), and a
call on a kernel socket then costs one round trip to vupy and a CONTINUE.
A session without userspace stacks traps none of them.  Two Python loops
measure it, each on kernel sockets only:

calls      getsockname() + setsockopt(TCP_NODELAY) on an AF_INET socket
           (its stack is a namespace, so it is routed there);
messages   sendmsg() + recvmsg() of 64 bytes on an AF_UNIX socketpair (as
           D-Bus and other local IPC do), and send()/recv() of 64 bytes,
           which no filter traps, for comparison.

Three modes: native (no vupy); kernel (`vupy run --stack B=netns:NS
--default B`), the session every kernel-stack user gets; and userspace (the
same with --userspace, which traps the proxy calls as a session with an
lwip stack does).  Runs are pinned to one CPU (taskset on the whole
command), rounds interleaved; each result is the median of its rounds.
Nothing is asserted about the numbers.
"""
import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys

import socket_create as common
from benchlib import exit_on_sigterm, machine, run_main, write_json

STACK_PATH = "/dev/net/b"

LOOP = r"""
import fcntl, os, socket, sys, time
kind, n = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
a, b = socket.socketpair()
data = b"x" * 64
def calls():
    s.getsockname(); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
def messages():
    a.sendmsg([data]); b.recvmsg(64)
def plain():
    a.send(data); b.recv(64)
step = {"calls": calls, "messages": messages, "plain": plain}[kind]
for _ in range(n // 10):
    step()
t0 = time.perf_counter_ns()
for _ in range(n):
    step()
t1 = time.perf_counter_ns()
nsfd = fcntl.ioctl(s.fileno(), 0x894C)  # SIOCGSKNS: where the AF_INET socket is
print(f"{(t1 - t0) / n:.1f} {os.fstat(nsfd).st_ino}")
"""

WORKLOADS = {
    "calls": "getsockname + setsockopt, AF_INET",
    "messages": "sendmsg + recvmsg 64 B, AF_UNIX pair",
    "plain": "send + recv 64 B, AF_UNIX pair",
}
MODES = ("native", "kernel", "userspace")


def command(mode, kind, iterations, namespace, cpu):
    loop = [sys.executable, "-c", LOOP, kind, str(iterations)]
    if mode == "native":
        argv = loop
    else:
        argv = [common.VUPY, "run", "--stack", f"{STACK_PATH}=netns:{namespace}",
                "--default", STACK_PATH] + (["--userspace"] if mode == "userspace" else []) + ["--", *loop]
    return ["taskset", "-c", str(cpu), *argv]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--iterations", type=int, default=20000)
    p.add_argument("--cpu", type=int, default=None)
    p.add_argument("--json", metavar="PATH")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("kernel_calls.py: vupy run and ip netns add need root")
    affinity = os.sched_getaffinity(0)
    cpu = args.cpu if args.cpu is not None else min(affinity)
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    namespace = f"vupyk-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", namespace], check=True, capture_output=True)
    configs = [(kind, mode) for kind in WORKLOADS for mode in MODES]
    samples = {c: [] for c in configs}
    misrouted = {c: 0 for c in configs}
    try:
        home = os.stat("/proc/self/ns/net").st_ino
        stack = os.stat(f"/run/netns/{namespace}").st_ino
        for rnd in range(args.rounds):
            k = rnd % len(configs)
            for kind, mode in configs[k:] + configs[:k]:
                ns, ino = common.run_once(command(mode, kind, args.iterations, namespace, cpu))
                samples[(kind, mode)].append(ns)
                if ino != (home if mode == "native" else stack):
                    misrouted[(kind, mode)] += 1
    finally:
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True)

    results = []
    for kind, mode in configs:
        r = {"workload": kind, "mode": mode, "samples_ns": samples[(kind, mode)],
             "runs_misrouted": misrouted[(kind, mode)], **common.summarise(samples[(kind, mode)])}
        base = common.summarise(samples[(kind, "native")])["median_us"]
        r["ratio"] = r["median_us"] / base
        r["overhead_us"] = r["median_us"] - base
        results.append(r)

    reproduce = shlex.join([sys.executable, sys.argv[0], "--rounds", str(args.rounds),
                            "--iterations", str(args.iterations), "--cpu", str(cpu)]
                           + (["--json", args.json] if args.json else []))
    info = machine(affinity)
    print(f"kernel sockets under vupy: {args.iterations} iterations per run, {args.rounds} rounds, "
          f"median; pinned with taskset -c {cpu}")
    print(f"{info['cpu_model']}, Linux {info['kernel']}, Python {info['python']}")
    print()
    head = ("workload", "mode", "median us/iter", "min-max us", "+us/iter", "x native")
    rows = [(WORKLOADS[r["workload"]], r["mode"], f"{r['median_us']:.2f}",
             f"{r['min_us']:.2f}-{r['max_us']:.2f}", f"{r['overhead_us']:+.2f}", f"{r['ratio']:.2f}")
            for r in results]
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    for row in [head, ["-" * w for w in widths]] + rows:
        print("  ".join(c.rjust(w) if i >= 2 else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))))
    for r in results:
        if r["runs_misrouted"]:
            print(f"WARNING: {r['workload']} {r['mode']}: {r['runs_misrouted']} runs had their "
                  "AF_INET socket in the wrong namespace")
    print()
    print(f"reproduce (as root): {reproduce}")
    if args.json:
        write_json(args.json, {"benchmark": "kernel sockets in kernel-only and userspace sessions",
                                "machine": info, "results": results, "command": reproduce})
    return 0


if __name__ == "__main__":
    for tool in ("taskset", "ip"):
        if shutil.which(tool) is None:
            sys.exit(f"kernel_calls.py: {tool} not found")
    run_main(main, "kernel_calls.py")
