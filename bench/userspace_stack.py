#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""What does a userspace stack cost?  Bulk TCP and a 64-byte round trip
through vupy's lwIP stack, next to kernel<->kernel and next to lwIP's own
floor (lwIP in the worker with no proxy), in one run.

    python bench/userspace_stack.py [--rounds 3] [--bytes MIB] [--iterations 20000]
                                    [--warmup 1000] [--paths LIST] [--workloads LIST]
                                    [--cpus LIST] [--json PATH] [--markdown]

Run as root (vupy run, `ip netns`, taps and veths need it), with the Python of
the venv vupy is installed in: `vupy` is looked up next to sys.executable.
Needs vde_switch and vde_plug (Debian's vde-switch and vdeplug) and iproute2.

Every measurement is one TCP connection between a *client* and a *server*
running the same small Python program (bench/peer.py).  The server always runs
in a kernel network namespace made by this script (`ip netns exec NS ...`);
the client always runs under `vupy run --stack /dev/net/a=SPEC --default
/dev/net/a -- ...`, so that only SPEC differs between the paths:

lwip-vde     SPEC lwip:vde://DIR/sw,ip=10.9.0.2/24: lwIP in vupy's worker,
             a vde_switch, a vde_plug into tap0 of the server's namespace
             (10.9.0.1).
lwip-tap     SPEC lwip:tap://vupytPID,ip=10.9.2.2/24: lwIP straight on a
             tap.  The worker opens the tap in vupy's namespace, so the tap
             is made (down, no address) in the namespace this script runs
             in, and moved into the server's namespace (10.9.2.1) as soon as
             the worker holds it: a tap keeps its open descriptor across
             namespaces.  Made and deleted again for every run.
kernel-veth  SPEC netns:B: the baseline.  Kernel to kernel over a veth pair
             between two namespaces (10.9.1.2 -> 10.9.1.1).
kernel-vde   SPEC vde:vde://SWITCH,ip=10.9.0.3/24: vupy's kernel VDE stack
             (a namespace whose vde0 is plugged in by vde_plug), over the
             very switch lwip-vde uses (10.9.0.3 -> 10.9.0.1): what the VDE
             plumbing costs, told apart from what lwIP costs.
floor-vde    the floor of lwip-vde: no vupy, no program, no proxy.  The
             client is vupy's lwIP worker itself (`vupy-lwip --floor`,
             csrc/lwip_floor.c), started as vupy starts it for lwip-vde, on
             the same switch with the same address, running the workload
             with lwIP's raw API in the thread that takes frames in.
floor-tap    the floor of lwip-tap, on a tap as lwip-tap's.

Workloads, each its own connection:

send   bulk, client -> server: the client sendall()s --bytes MiB in 256 KiB
       chunks, shuts its side and waits for the server's count of what it
       received.  For the lwIP paths this is lwIP sending to the kernel.
recv   bulk, server -> client: the server sends, the client reads and counts
       to EOF.  For the lwIP paths, the kernel sending to lwIP.
rtt    --iterations round trips (after --warmup untimed ones) of 64 bytes:
       the client sends 64 and waits for the 64 the server echoes.
       TCP_NODELAY on both ends.
connect  a tenth of --iterations connections (after a tenth of --warmup),
       one after the other, each connect, 1 byte each way, close: the
       connection set-up rate, as `ab -c 1` has it without HTTP.

Throughput is bytes*8/time in Gbit/s, timed by the client from the end of
connect() to the last byte known delivered; the round trip is the timed
loop's time / iterations in microseconds, set-up connections per second.  Rounds are interleaved, with the
order rotated each round, so that slow drift of the machine spreads over all
configurations; a configuration's result is the median of its rounds with
min-max.  Each row is "PATH / BASE": the ratio is PATH's median over
BASE's for the same workload (for throughput below 1 is slower, for the
round trip above 1 is slower).  Every path is compared with kernel-veth,
and each lwip path with its floor too (lwip-tap / floor-tap: what vupy's
proxy costs over lwIP's own).  The issue's goals (issue 15, item 7): a
round trip through the proxy of at most 50 us on a tap and at most 1.5x
its floor; bulk at least 2 Gbit/s each way on a tap and 1.2 Gbit/s on a
vde switch; connection set-up at least half kernel-veth's rate.

Unpinned (the default), every process may use every CPU the script may use.
--cpus LIST puts every process, the lwIP worker, vde_switch and vde_plug
included, under `taskset -c LIST`.  On a small virtual machine the round
trip depends mostly on how fast an idle CPU wakes up: --cpus 0, where the
two ends and the worker take turns on one CPU, can halve it, while bulk
throughput barely changes.  Other load on the machine changes it as much, so
look at min-max, and run on a quiet machine.

The script asserts nothing about the numbers.  It checks that each run
went where it claims, and says so if not: both ends counted the expected
bytes or round trips, the client's local address is its path's address (for
lwIP, 10.9.x.2, which only lwIP holds) and the server saw the connection come
from it, and the client's socket is what the path promises: for lwIP a vupy
proxy (an AF_UNIX socket, listed in /proc/net/unix), for the floors the
worker's own client, for the kernel paths a socket of the client's
namespace (SIOCGSKNS).

Everything made here (namespaces, the switch, the plugs, the tap, every
process) is removed at the end, on error and on Ctrl-C or SIGTERM too.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

import benchlib
from vupy.modules.lwip import WORKER
from benchlib import (PEER_WORKLOADS, START_TIMEOUT, STACK_PATH, BenchError, Goal, Namespaces,
                      Proc, command, compare, connection, interleave, netns_inode, peer_argv,
                      peer_count, peer_problems, peer_value, pin, session, side)

NAME = "userspace_stack"
TOOLS = ("ip", "vde_switch", "vde_plug", "taskset")
QUICK = ["--rounds", "1", "--bytes", "1", "--iterations", "200", "--warmup", "10"]
PORT = 5001
WORKLOADS = ("send", "recv", "rtt", "connect")
PATHS = ("lwip-vde", "floor-vde", "lwip-tap", "floor-tap", "kernel-veth", "kernel-vde")
BASELINE = "kernel-veth"
FLOOR = {"lwip-vde": "floor-vde", "lwip-tap": "floor-tap"}
LWIP_MAC = "02:00:0a:09:00:02"
# The goals for lwIP through the proxy, against kernel-veth...
GOALS = {("send", "lwip-tap"): Goal(">= 2 Gbit/s", "value", 2),
         ("recv", "lwip-tap"): Goal(">= 2 Gbit/s", "value", 2),
         ("send", "lwip-vde"): Goal(">= 1.2 Gbit/s", "value", 1.2),
         ("recv", "lwip-vde"): Goal(">= 1.2 Gbit/s", "value", 1.2),
         ("rtt", "lwip-tap"): Goal("<= 50 us", "value", 50),
         ("connect", "lwip-tap"): Goal(">= 0.5x", "ratio", 0.5),
         ("connect", "lwip-vde"): Goal(">= 0.5x", "ratio", 0.5)}
# ... and against its floor.
FLOOR_GOALS = {"rtt": Goal("<= 1.5x", "ratio", 1.5)}


# The test network ---------------------------------------------------------

class Network:
    """The namespaces, switch, plugs and tap of every path, and their removal."""

    def __init__(self, paths, tmpdir, cpus):
        self.paths = paths
        self.cpus = cpus                # taskset -c LIST, or None
        self.switch_dir = os.path.join(tmpdir, "sw")
        self.tap = f"vupyt{os.getpid()}"[:15]
        # Made by up(), as needed:
        #   S: lwip-vde and kernel-vde servers: tap0, 10.9.0.1
        #   T: lwip-tap server: the moved tap, 10.9.2.1
        #   A: kernel-veth server: 10.9.1.1
        #   B: kernel-veth client: 10.9.1.2
        self.ns = {}
        self.namespaces = Namespaces()
        self.daemons = []               # the switch and the plugs
        self.switch = None
        self.tap_in_root = False

    # Which server namespace, server address, client address and SPEC for a path.
    def endpoints(self, path):
        if path in ("lwip-vde", "floor-vde"):
            return (self.ns["S"], "10.9.0.1", "10.9.0.2",
                    f"lwip:vde://{self.switch_dir},ip=10.9.0.2/24,mac={LWIP_MAC}")
        if path in ("lwip-tap", "floor-tap"):
            return (self.ns["T"], "10.9.2.1", "10.9.2.2",
                    f"lwip:tap://{self.tap},ip=10.9.2.2/24,mac={LWIP_MAC}")
        if path == "kernel-veth":
            return self.ns["A"], "10.9.1.1", "10.9.1.2", f"netns:{self.ns['B']}"
        if path == "kernel-vde":
            return self.ns["S"], "10.9.0.1", "10.9.0.3", f"vde:vde://{self.switch_dir},ip=10.9.0.3/24"
        raise ValueError(path)

    def client_netns_inode(self, path):
        """The client's namespace; for kernel-vde, made by vupy, the
        namespace it must not be (this one)."""
        return netns_inode(None if path == "kernel-vde" else self.ns["B"])

    def _netns(self, key):
        name = self.ns[key] = self.namespaces.add()
        # No IPv6 on the test links: no DAD, router solicitations or MLD
        # reports travelling next to the measured traffic.
        command(["ip", "netns", "exec", name, "sysctl", "-qw",
                 "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"])
        return name

    def _plug(self, ns, address):
        command(["ip", "netns", "exec", ns, "ip", "tuntap", "add", "dev", "tap0", "mode", "tap"])
        command(["ip", "-n", ns, "addr", "add", address, "dev", "tap0"])
        command(["ip", "-n", ns, "link", "set", "tap0", "up"])
        # `ip netns exec` executes vde_plug: the pid is vde_plug's.
        plug = Proc(pin(["ip", "netns", "exec", ns, "vde_plug",
                         f"vde://{self.switch_dir}", "tap://tap0"], self.cpus), daemon=True)
        self.daemons.append(plug)
        # vde_plug stays in the foreground and tells nobody it is connected:
        # give it a moment, and fail now if it exits.
        time.sleep(0.3)
        if plug.p.poll() is not None:
            raise BenchError(f"vde_plug into {ns} exited: {plug.errors()}")

    def up(self):
        vde = {"lwip-vde", "floor-vde", "kernel-vde"} & set(self.paths)
        if vde:
            # In the foreground, its console on a pipe held open: closing the
            # pipe ends it cleanly ("EOF on stdin, cleaning up and exiting").
            self.switch = Proc(pin(["vde_switch", "-s", self.switch_dir], self.cpus),
                               stdin=subprocess.PIPE, daemon=True)
            self.daemons.append(self.switch)
            deadline = time.monotonic() + START_TIMEOUT
            while not os.path.exists(os.path.join(self.switch_dir, "ctl")):
                if self.switch.p.poll() is not None:
                    raise BenchError(f"vde_switch exited: {self.switch.errors()}")
                if time.monotonic() > deadline:
                    raise BenchError("vde_switch made no control socket")
                time.sleep(0.05)
            self._plug(self._netns("S"), "10.9.0.1/24")
        if {"lwip-tap", "floor-tap"} & set(self.paths):
            self._netns("T")
        if "kernel-veth" in self.paths:
            a, b = self._netns("A"), self._netns("B")
            command(["ip", "link", "add", "vupyva", "netns", a, "type", "veth",
                     "peer", "name", "vupyvb", "netns", b])
            for ns, dev, address in ((a, "vupyva", "10.9.1.1/24"), (b, "vupyvb", "10.9.1.2/24")):
                command(["ip", "-n", ns, "addr", "add", address, "dev", dev])
                command(["ip", "-n", ns, "link", "set", dev, "up"])

    # lwip-tap and floor-tap: before the client starts, the tap is made, down and without
    # an address, where vupy's worker will open it; once the worker holds it
    # (the client said "ready": vupy makes every stack before COMMAND
    # starts), it moves to the server's namespace and gets its address.
    def before_client(self, path):
        if path in ("lwip-tap", "floor-tap"):
            command(["ip", "tuntap", "add", "dev", self.tap, "mode", "tap"])
            self.tap_in_root = True

    def after_client_ready(self, path):
        if path in ("lwip-tap", "floor-tap"):
            ns = self.ns["T"]
            command(["ip", "link", "set", self.tap, "netns", ns])
            self.tap_in_root = False
            command(["ip", "-n", ns, "addr", "add", "10.9.2.1/24", "dev", self.tap])
            command(["ip", "-n", ns, "link", "set", self.tap, "up"])

    def after_run(self, path):
        if path in ("lwip-tap", "floor-tap"):
            self.remove_tap()

    def remove_tap(self):
        if self.tap_in_root:
            command(["ip", "link", "del", self.tap], check=False)
            self.tap_in_root = False
        if "T" in self.ns:
            command(["ip", "-n", self.ns["T"], "link", "del", self.tap], check=False)

    def down(self):
        errors = []
        self.remove_tap()
        for proc in reversed(self.daemons):     # the plugs, then the switch
            try:
                if proc is self.switch and proc.p.poll() is None:
                    proc.p.stdin.close()        # vde_switch ends on EOF
                    try:
                        proc.p.wait(timeout=5)
                    except subprocess.TimeoutExpired:
                        pass
                proc.stop()
            except Exception as e:          # keep cleaning up
                errors.append(str(e))
        return errors + self.namespaces.remove()


# One run ----------------------------------------------------------------

def floor_argv(workload, server_ip, count, warmup, spec):
    """The worker as its own client, with the arguments vupy gives it for
    SPEC (lwip:URL,ip=A/LEN,mac=MAC)."""
    url, *options = spec[len("lwip:"):].split(",")
    options = dict(o.split("=", 1) for o in options)
    return [WORKER, "--floor", workload, server_ip, str(PORT), str(count), str(warmup),
            url, options["mac"], "1500", options["ip"], "-"]


def one_run(net, path, workload, args):
    server_ns, server_ip, client_ip, spec = net.endpoints(path)
    count, warmup = peer_count(workload, args)
    if path.startswith("floor"):
        client_argv = floor_argv(workload, server_ip, count, warmup, spec)
    else:
        client_argv = session(peer_argv("client", workload, server_ip, PORT, count, warmup,
                                        args.program),
                              "--stack", f"{STACK_PATH}={spec}", "--default", STACK_PATH)
    server_argv = ["ip", "netns", "exec", server_ns,
                   *peer_argv("server", workload, server_ip, PORT, count, warmup)]
    try:
        net.before_client(path)
        c, s = connection(pin(client_argv, net.cpus), pin(server_argv, net.cpus),
                          lambda: net.after_client_ready(path))
    finally:
        net.after_run(path)

    # Did it go where it claims?
    problems = peer_problems(workload, count, warmup, c, s)
    if c.get("sockname") != client_ip:
        problems.append(f"client's address {c.get('sockname')}, not {client_ip}")
    if c.get("peername") != server_ip:
        problems.append(f"client's peer {c.get('peername')}, not {server_ip}")
    if s.get("peer") != client_ip:
        problems.append(f"server saw the connection from {s.get('peer')}, not {client_ip}")
    if path.startswith("lwip"):
        if c.get("kind") != "unix-proxy":
            problems.append(f"client's socket is {c.get('kind')}, not a vupy proxy")
    elif path.startswith("floor"):
        if c.get("kind") != "lwip-floor":
            problems.append(f"client is {c.get('kind')}, not the worker's floor client")
    else:
        want = net.client_netns_inode(path)
        if c.get("kind") != "kernel" or (c.get("netns") == want) != (path == "kernel-veth"):
            problems.append(f"client's socket is {c.get('kind')} of netns {c.get('netns')}, "
                            f"not of the client namespace")
    return peer_value(workload, count, c), problems


# Main -------------------------------------------------------------------

def parser():
    p = benchlib.connection_parser(sys.modules[__name__], rounds=3, mib=256, workloads=WORKLOADS)
    p.add_argument("--paths", default=",".join(PATHS),
                   help=f"comma list of paths (default {','.join(PATHS)})")
    p.add_argument("--cpus", default=None, metavar="LIST",
                   help="run every process (client, server and so vupy and its lwIP "
                        "worker, vde_switch, vde_plug) under taskset -c LIST "
                        "(default: unpinned)")
    p.add_argument("--client", choices=("python", "c"), default="python",
                   help="the client program of the lwip and kernel paths: bench/peer.py, or "
                        "bench/cpeer.c, as cheap as the floor's own client (rtt and "
                        "connect only; default python)")
    return p


def run(args):
    paths = [x for x in args.paths.split(",") if x]
    workloads = [x for x in args.workloads.split(",") if x]
    if not paths or set(paths) - set(PATHS):
        raise BenchError(f"--paths: a comma list of {', '.join(PATHS)}")
    if not workloads or set(workloads) - set(WORKLOADS):
        raise BenchError(f"--workloads: a comma list of {', '.join(WORKLOADS)}")
    if args.client == "c" and set(workloads) - {"rtt", "connect"}:
        raise BenchError("--client c: the workloads rtt and connect only")

    configs = [(w, path) for w in workloads for path in paths]
    tmpdir = tempfile.mkdtemp(prefix="vupy-bench-")
    net = Network(paths, tmpdir, args.cpus)
    try:
        args.program = benchlib.compile_program("cpeer", tmpdir) if args.client == "c" else None
        net.up()
        measured = interleave(configs, args.rounds,
                              lambda config: one_run(net, config[1], config[0], args), NAME)
    finally:
        cleanup_errors = net.down()
        shutil.rmtree(tmpdir, ignore_errors=True)

    results = []
    for workload in workloads:
        text, unit, better = PEER_WORKLOADS[workload]
        base = side(BASELINE, measured[(workload, BASELINE)]) if BASELINE in paths else None
        for path in paths:
            if path == BASELINE and base is not None and len(paths) > 1:
                continue        # it is the base column of every other row
            this = side(path, measured[(workload, path)])
            results.append(compare(text, f"{path} / {BASELINE}" if base else path, unit,
                                   base if path != BASELINE else None, this, better,
                                   GOALS.get((workload, path))))
            if FLOOR.get(path) in paths:
                floor = side(FLOOR[path], measured[(workload, FLOOR[path])])
                results.append(compare(text, f"{path} / {FLOOR[path]}", unit, floor, this,
                                       better, FLOOR_GOALS.get(workload)))
    return {
        "title": f"TCP through vupy's lwIP stack, lwIP's floor and kernel<->kernel: bulk {args.bytes} MiB, "
                 f"{args.iterations} round trips of 64 B after {args.warmup} untimed; "
                 f"{args.rounds} rounds, median",
        "notes": [f"client under vupy run --stack {STACK_PATH}=SPEC --default {STACK_PATH}, server "
                  "under ip netns exec; lwIP is always the client; the client program is "
                  + ("bench/cpeer.c; " if args.client == "c" else "bench/peer.py; ")
                  + (f"every process under taskset -c {args.cpus}" if args.cpus else "unpinned"),
                  "variant PATH / BASE: ratio PATH/BASE for the same workload; "
                  "floor-X: lwIP in the worker as its own client, no proxy"],
        "columns": ("base", "path"),
        "results": results,
        "checked": "every run moved the expected bytes/round trips between the path's "
                   "addresses, lwIP runs on a vupy proxy (lwIP's 10.9.x.2), floor runs in the "
                   "worker's own client, kernel runs on a socket of the client's namespace",
        "cleanup_errors": cleanup_errors,
    }


if __name__ == "__main__":
    benchlib.script_main(sys.modules[__name__])
