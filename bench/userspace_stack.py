#!/usr/bin/env python3
"""What does a userspace stack cost?  Bulk TCP and a 64-byte round trip
through vupy's lwIP stack, next to kernel<->kernel, in one run.

    python bench/userspace_stack.py [--rounds 3] [--bytes MiB] [--iterations 20000]
                                    [--paths LIST] [--workloads LIST]
                                    [--cpus LIST] [--json PATH]

Run as root (vupy run, `ip netns`, taps and veths need it), with the Python of
the venv vupy is installed in: `vupy` is looked up next to sys.executable.
Needs vde_switch and vde_plug (Debian's vde-switch and vdeplug) and iproute2.

Every measurement is one TCP connection between a *client* and a *server*
running the same small Python program (PEER below).  The server always runs
in a kernel network namespace made by this script (`ip netns exec NS ...`);
the client always runs under `vupy run --stack /dev/net/s=SPEC --default
/dev/net/s -- ...`, so that only SPEC differs between the paths:

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

Workloads, each its own connection:

send   bulk, client -> server: the client sendall()s --bytes MiB in 256 KiB
       chunks, shuts its side and waits for the server's count of what it
       received.  For the lwIP paths this is lwIP sending to the kernel.
recv   bulk, server -> client: the server sends, the client reads and counts
       to EOF.  For the lwIP paths, the kernel sending to lwIP.
rtt    --iterations round trips (after --warmup untimed ones) of 64 bytes:
       the client sends 64 and waits for the 64 the server echoes.
       TCP_NODELAY on both ends.

Throughput is bytes*8/time in Gbit/s, timed by the client from the end of
connect() to the last byte known delivered; the round trip is the timed
loop's time / iterations in microseconds.  Rounds are interleaved, with the
order rotated each round, so that slow drift of the machine spreads over all
configurations; a configuration's result is the median of its rounds with
min-max.  "x veth" is the ratio against kernel-veth for the same workload:
for throughput path/kernel (below 1 is slower), for the round trip
path/kernel (above 1 is slower).

Unpinned (the default), every process may use every CPU the script may use.
--cpus LIST puts every process, the lwIP worker, vde_switch and vde_plug
included, under `taskset -c LIST`.  On a small virtual machine the round
trip depends mostly on how fast an idle CPU wakes up: --cpus 0, where the
two ends and the worker take turns on one CPU, can halve it, while bulk
throughput barely changes.  Other load on the machine changes it as much, so
look at min-max, and run on a quiet machine.

The script asserts nothing about the numbers.  It does check that each run
went where it claims, and says so if not: both ends counted the expected
bytes or round trips, the client's local address is its path's address (for
lwIP, 10.9.x.2, which only lwIP holds) and the server saw the connection come
from it, and the client's socket is what the path promises: for lwIP a vupy
proxy (an AF_UNIX socket, listed in /proc/net/unix), for the kernel paths a
socket of the client's namespace (SIOCGSKNS).

Everything made here (namespaces, the switch, the plugs, the tap, every
process) is removed at the end, on error and on Ctrl-C or SIGTERM too.
"""
import argparse
import json
import os
import select
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import BenchError, exit_on_sigterm, machine, run_main, write_json

VUPY = os.path.join(os.path.dirname(sys.executable), "vupy")
STACK_PATH = "/dev/net/s"
PORT = 5001
CHUNK = 256 * 1024
RTT_SIZE = 64
RUN_TIMEOUT = 300       # seconds for one run; a hung run must not hang the benchmark
START_TIMEOUT = 30      # seconds for a client or server to say it is ready

# The transfer program, both ends.  argv: ROLE(client|server) WORKLOAD(send|
# recv|rtt) ADDR PORT COUNT WARMUP; COUNT is bytes for send/recv, round trips
# for rtt; the client connects to ADDR, the server binds it.  WORKLOAD is the
# client's view: "send" means the client sends.  Protocol with this script:
# the server prints "listening" once it listens; the client prints "ready"
# and connects when it reads a line on stdin.  Each prints one JSON line at
# the end.
PEER = r"""
import fcntl, json, os, socket, struct, sys, time
role, workload, addr, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
count, warmup = int(sys.argv[5]), int(sys.argv[6])
CHUNK, SIZE = %d, %d

def recv_exactly(s, view):
    got = 0
    while got < len(view):
        k = s.recv_into(view[got:])
        if not k:
            raise SystemExit(f"{role}: EOF after {got} of {len(view)} bytes")
        got += k

def drain(s):
    n, buf = 0, bytearray(CHUNK)
    while True:
        k = s.recv_into(buf)
        if not k:
            return n
        n += k

def pump(s, total):
    buf, n = b"x" * CHUNK, 0
    while n < total:
        k = min(CHUNK, total - n)
        s.sendall(buf if k == CHUNK else buf[:k])
        n += k
    return n

def kind(s):
    ino = os.fstat(s.fileno()).st_ino
    with open("/proc/net/unix") as f:
        next(f)
        if any(line.split()[6] == str(ino) for line in f if len(line.split()) > 6):
            return "unix-proxy", 0
    try:
        nsfd = fcntl.ioctl(s.fileno(), 0x894C)   # SIOCGSKNS
        ns = os.fstat(nsfd).st_ino
        os.close(nsfd)
        return "kernel", ns
    except OSError:
        return "unknown", 0

out = {"role": role, "workload": workload}
if role == "server":
    l = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind((addr, port))
    l.listen(1)
    print("listening", flush=True)
    s, peer = l.accept()
    l.close()
    out["peer"] = peer[0]
    if workload == "send":
        out["bytes"] = drain(s)
        s.sendall(struct.pack("!Q", out["bytes"]))
    elif workload == "recv":
        out["bytes"] = pump(s, count)
        s.shutdown(socket.SHUT_WR)
        drain(s)
    else:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = bytearray(SIZE)
        view = memoryview(buf)
        n = 0
        for _ in range(count + warmup):
            recv_exactly(s, view)
            s.sendall(buf)
            n += 1
        out["round_trips"] = n
        out["eof"] = s.recv(1) == b""
else:
    print("ready", flush=True)
    if not sys.stdin.readline():
        raise SystemExit("client: no go")
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if workload == "rtt":
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.connect((addr, port))
    out["sockname"] = s.getsockname()[0]
    out["peername"] = s.getpeername()[0]
    out["kind"], out["netns"] = kind(s)
    if workload == "send":
        t0 = time.perf_counter_ns()
        pump(s, count)
        s.shutdown(socket.SHUT_WR)
        ack = bytearray(8)
        recv_exactly(s, memoryview(ack))
        t1 = time.perf_counter_ns()
        out["bytes"] = count
        out["server_bytes"] = struct.unpack("!Q", ack)[0]
    elif workload == "recv":
        t0 = time.perf_counter_ns()
        out["bytes"] = drain(s)
        t1 = time.perf_counter_ns()
    else:
        out["nodelay"] = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        msg = b"p" * SIZE
        buf = bytearray(SIZE)
        view = memoryview(buf)
        for _ in range(warmup):
            s.sendall(msg)
            recv_exactly(s, view)
        t0 = time.perf_counter_ns()
        for _ in range(count):
            s.sendall(msg)
            recv_exactly(s, view)
        t1 = time.perf_counter_ns()
        out["round_trips"] = count + warmup
    s.close()
    out["ns"] = t1 - t0
print(json.dumps(out), flush=True)
""" % (CHUNK, RTT_SIZE)

WORKLOADS = ("send", "recv", "rtt")
WORKLOAD_TEXT = {
    "send": "bulk client->server",
    "recv": "bulk server->client",
    "rtt": f"{RTT_SIZE} B round trip",
}
PATHS = ("lwip-vde", "lwip-tap", "kernel-veth", "kernel-vde")
BASELINE = "kernel-veth"
LWIP_MAC = "02:00:0a:09:00:02"


def run(argv, check=True):
    r = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    if check and r.returncode != 0:
        reason = r.stderr.strip() or f"exit status {r.returncode}"
        raise BenchError(f"{shlex.join(argv)}: {reason}")
    return r


# Processes --------------------------------------------------------------

def describe(argv):
    """An argv for a message, the transfer program's text as PEER."""
    return shlex.join(["PEER" if a == PEER else a for a in argv])

class Proc:
    """A child with line-wise stdout read under a deadline.  A daemon (the
    switch, a plug) prints nothing we read: its stdout goes nowhere and its
    stderr to a file, so that neither can fill up a pipe and block it."""

    def __init__(self, argv, stdin=subprocess.DEVNULL, daemon=False):
        self.argv = argv
        self.errfile = tempfile.TemporaryFile() if daemon else None
        self.p = subprocess.Popen(argv, stdin=stdin,
                                  stdout=subprocess.DEVNULL if daemon else subprocess.PIPE,
                                  stderr=self.errfile if daemon else subprocess.PIPE, bufsize=0)
        self.buf = b""

    def errors(self):
        """A daemon's stderr so far."""
        self.errfile.seek(0)
        return self.errfile.read().decode(errors="replace").strip()

    def readline(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.p.stdout], [], [], left)[0]:
                raise BenchError(f"no answer in {timeout} s: {describe(self.argv)}")
            chunk = os.read(self.p.stdout.fileno(), 65536)
            if not chunk:
                self.p.wait()
                err = self.p.stderr.read().decode(errors="replace").strip()
                raise BenchError(f"exit status {self.p.returncode} before answering: "
                                 f"{describe(self.argv)}\n{err}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode(errors="replace")

    def result(self, timeout):
        """The JSON line the program prints last."""
        try:
            out, err = self.p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BenchError(f"no result in {timeout} s: {describe(self.argv)}") from None
        out = (self.buf + out).decode(errors="replace").strip()
        if self.p.returncode != 0:
            raise BenchError(f"exit status {self.p.returncode}: {describe(self.argv)}\n"
                             f"{err.decode(errors='replace').strip()}")
        try:
            return json.loads(out.splitlines()[-1])
        except (ValueError, IndexError):
            raise BenchError(f"unexpected output {out[-300:]!r}: "
                             f"{describe(self.argv)}") from None

    def stop(self):
        """SIGTERM first: vupy passes it on to its COMMAND and then ends the
        session (SIGKILL would orphan it)."""
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        for f in (self.p.stdin, self.p.stdout, self.p.stderr, self.errfile):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass


# The test network ---------------------------------------------------------

class Network:
    """The namespaces, switch, plugs and tap of every path, and their removal."""

    def __init__(self, paths, tmpdir, prefix):
        pid = os.getpid()
        self.paths = paths
        self.prefix = prefix            # taskset -c LIST, or nothing
        self.tmpdir = tmpdir
        self.switch_dir = os.path.join(tmpdir, "sw")
        self.tap = f"vupyt{pid}"[:15]
        self.ns = {
            "S": f"vupyS-{pid}",        # lwip-vde and kernel-vde servers: tap0, 10.9.0.1
            "T": f"vupyT-{pid}",        # lwip-tap server: the moved tap, 10.9.2.1
            "A": f"vupyA-{pid}",        # kernel-veth server: 10.9.1.1
            "B": f"vupyB-{pid}",        # kernel-veth client: 10.9.1.2
        }
        self.made_ns = []
        self.daemons = []               # the switch and the plugs
        self.switch = None
        self.tap_in_root = False

    # Which server namespace, server address, client address and SPEC for a path.
    def endpoints(self, path):
        if path == "lwip-vde":
            return (self.ns["S"], "10.9.0.1", "10.9.0.2",
                    f"lwip:vde://{self.switch_dir},ip=10.9.0.2/24,mac={LWIP_MAC}")
        if path == "lwip-tap":
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
        if path == "kernel-vde":
            return os.stat("/proc/self/ns/net").st_ino
        return os.stat(f"/run/netns/{self.ns['B']}").st_ino

    def _netns(self, key):
        name = self.ns[key]
        run(["ip", "netns", "add", name])
        self.made_ns.append(name)
        run(["ip", "-n", name, "link", "set", "lo", "up"])
        # No IPv6 on the test links: no DAD, router solicitations or MLD
        # reports travelling next to the measured traffic.
        run(["ip", "netns", "exec", name, "sysctl", "-qw",
             "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"])
        return name

    def _plug(self, ns, address):
        run(["ip", "netns", "exec", ns, "ip", "tuntap", "add", "dev", "tap0", "mode", "tap"])
        run(["ip", "-n", ns, "addr", "add", address, "dev", "tap0"])
        run(["ip", "-n", ns, "link", "set", "tap0", "up"])
        # `ip netns exec` executes vde_plug: the pid is vde_plug's.
        plug = Proc(self.prefix + ["ip", "netns", "exec", ns, "vde_plug",
                                   f"vde://{self.switch_dir}", "tap://tap0"], daemon=True)
        self.daemons.append(plug)
        # vde_plug stays in the foreground and tells nobody it is connected:
        # give it a moment, and fail now if it exits.
        time.sleep(0.3)
        if plug.p.poll() is not None:
            raise BenchError(f"vde_plug into {ns} exited: {plug.errors()}")

    def up(self):
        vde = {"lwip-vde", "kernel-vde"} & set(self.paths)
        if vde:
            # In the foreground, its console on a pipe held open: closing the
            # pipe ends it cleanly ("EOF on stdin, cleaning up and exiting").
            self.switch = Proc(self.prefix + ["vde_switch", "-s", self.switch_dir],
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
        if "lwip-tap" in self.paths:
            self._netns("T")
        if "kernel-veth" in self.paths:
            a, b = self._netns("A"), self._netns("B")
            run(["ip", "link", "add", "vupyva", "netns", a, "type", "veth",
                 "peer", "name", "vupyvb", "netns", b])
            for ns, dev, address in ((a, "vupyva", "10.9.1.1/24"), (b, "vupyvb", "10.9.1.2/24")):
                run(["ip", "-n", ns, "addr", "add", address, "dev", dev])
                run(["ip", "-n", ns, "link", "set", dev, "up"])

    # lwip-tap: before the client starts, the tap is made, down and without
    # an address, where vupy's worker will open it; once the worker holds it
    # (the client said "ready": vupy makes every stack before COMMAND
    # starts), it moves to the server's namespace and gets its address.
    def before_client(self, path):
        if path == "lwip-tap":
            run(["ip", "tuntap", "add", "dev", self.tap, "mode", "tap"])
            self.tap_in_root = True

    def after_client_ready(self, path):
        if path == "lwip-tap":
            ns = self.ns["T"]
            run(["ip", "link", "set", self.tap, "netns", ns])
            self.tap_in_root = False
            run(["ip", "-n", ns, "addr", "add", "10.9.2.1/24", "dev", self.tap])
            run(["ip", "-n", ns, "link", "set", self.tap, "up"])

    def after_run(self, path):
        if path == "lwip-tap":
            self.remove_tap()

    def remove_tap(self):
        if self.tap_in_root:
            run(["ip", "link", "del", self.tap], check=False)
            self.tap_in_root = False
        if self.ns["T"] in self.made_ns:
            run(["ip", "-n", self.ns["T"], "link", "del", self.tap], check=False)

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
        for name in reversed(self.made_ns):
            r = run(["ip", "netns", "del", name], check=False)
            if r.returncode != 0:
                errors.append(f"ip netns del {name}: {r.stderr.strip()}")
        self.made_ns = []
        return errors


# One run ----------------------------------------------------------------

def one_run(net, path, workload, args, prefix):
    server_ns, server_ip, client_ip, spec = net.endpoints(path)
    count = args.bytes * 1024 * 1024 if workload in ("send", "recv") else args.iterations
    warmup = 0 if workload in ("send", "recv") else args.warmup
    tail = [workload, server_ip, str(PORT), str(count), str(warmup)]
    client_argv = prefix + [VUPY, "run", "--stack", f"{STACK_PATH}={spec}",
                            "--default", STACK_PATH,
                            "--", sys.executable, "-c", PEER, "client", *tail]
    server_argv = prefix + ["ip", "netns", "exec", server_ns,
                            sys.executable, "-c", PEER, "server", *tail]
    client = server = None
    try:
        net.before_client(path)
        client = Proc(client_argv, stdin=subprocess.PIPE)
        if client.readline(START_TIMEOUT) != "ready":
            raise BenchError(f"{path}: the client did not say ready")
        net.after_client_ready(path)
        server = Proc(server_argv)
        if server.readline(START_TIMEOUT) != "listening":
            raise BenchError(f"{path}: the server did not say listening")
        client.p.stdin.write(b"go\n")
        client.p.stdin.flush()
        c = client.result(RUN_TIMEOUT)
        s = server.result(RUN_TIMEOUT)
    finally:
        for proc in (client, server):
            if proc is not None:
                proc.stop()
        net.after_run(path)

    # Did it go where it claims?
    problems = []
    if c.get("sockname") != client_ip:
        problems.append(f"client's address {c.get('sockname')}, not {client_ip}")
    if c.get("peername") != server_ip:
        problems.append(f"client's peer {c.get('peername')}, not {server_ip}")
    if s.get("peer") != client_ip:
        problems.append(f"server saw the connection from {s.get('peer')}, not {client_ip}")
    if path.startswith("lwip"):
        if c.get("kind") != "unix-proxy":
            problems.append(f"client's socket is {c.get('kind')}, not a vupy proxy")
    else:
        want = net.client_netns_inode(path)
        if c.get("kind") != "kernel" or (c.get("netns") == want) != (path == "kernel-veth"):
            problems.append(f"client's socket is {c.get('kind')} of netns {c.get('netns')}, "
                            f"not of the client namespace")
    if workload == "send":
        if s.get("bytes") != count or c.get("server_bytes") != count:
            problems.append(f"server received {s.get('bytes')} bytes, not {count}")
    elif workload == "recv":
        if c.get("bytes") != count or s.get("bytes") != count:
            problems.append(f"client received {c.get('bytes')} bytes, not {count}")
    else:
        total = count + warmup
        if c.get("round_trips") != total or s.get("round_trips") != total or not s.get("eof"):
            problems.append(f"client/server counted {c.get('round_trips')}/"
                            f"{s.get('round_trips')} round trips, not {total}")
        if c.get("nodelay") != 1:
            problems.append("TCP_NODELAY is not set on the client's socket")
    if workload == "rtt":
        value = c["ns"] / count / 1000                  # us per round trip
    else:
        value = count * 8 / c["ns"]                     # bits per ns = Gbit/s
    return value, problems


# Reporting --------------------------------------------------------------

def summarise(values):
    v = sorted(values)
    return {"median": statistics.median(v), "min": v[0], "max": v[-1]}


def table(results):
    head = ("workload", "path", "unit", "median", "min-max", "x veth", "runs ok")
    rows = []
    for r in results:
        digits = 2 if r["unit"] == "us" else 3
        rows.append((
            f"{r['workload']} ({WORKLOAD_TEXT[r['workload']]})",
            r["path"],
            "us/rt" if r["unit"] == "us" else "Gbit/s",
            f"{r['median']:.{digits}f}",
            f"{r['min']:.{digits}f}-{r['max']:.{digits}f}",
            "(base)" if r["path"] == BASELINE else
            ("-" if r.get("ratio") is None else f"{r['ratio']:.3f}"),
            f"{r['rounds'] - r['bad_runs']}/{r['rounds']}",
        ))
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    numeric = {3, 4, 5, 6}

    def fmt(row):
        return "  ".join(str(c).rjust(w) if i in numeric else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    lines = [fmt(head), fmt(["-" * w for w in widths])]
    previous = None
    for r, row in zip(results, rows):
        if previous is not None and r["workload"] != previous:
            lines.append("")
        previous = r["workload"]
        lines.append(fmt(row))
    return "\n".join(lines)


# Main -------------------------------------------------------------------

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="runs per configuration (default 3)")
    p.add_argument("--bytes", type=int, default=256, metavar="MIB",
                   help="MiB per bulk transfer (default 256)")
    p.add_argument("--iterations", type=int, default=20000,
                   help="timed round trips per rtt run (default 20000)")
    p.add_argument("--warmup", type=int, default=1000,
                   help="untimed round trips before the timed ones (default 1000)")
    p.add_argument("--paths", default=",".join(PATHS),
                   help=f"comma list of paths (default {','.join(PATHS)})")
    p.add_argument("--workloads", default=",".join(WORKLOADS),
                   help=f"comma list of workloads (default {','.join(WORKLOADS)})")
    p.add_argument("--cpus", default=None, metavar="LIST",
                   help="run every process (client, server and so vupy and its lwIP "
                        "worker, vde_switch, vde_plug) under taskset -c LIST "
                        "(default: unpinned)")
    p.add_argument("--json", metavar="PATH", help="write every number and the machine here")
    args = p.parse_args(argv)
    paths = [x for x in args.paths.split(",") if x]
    workloads = [x for x in args.workloads.split(",") if x]
    if args.rounds < 1 or args.bytes < 1 or args.iterations < 1 or args.warmup < 0:
        p.error("--rounds, --bytes and --iterations must be >= 1, --warmup >= 0")
    if not paths or set(paths) - set(PATHS):
        p.error(f"--paths: a comma list of {', '.join(PATHS)}")
    if not workloads or set(workloads) - set(WORKLOADS):
        p.error(f"--workloads: a comma list of {', '.join(WORKLOADS)}")

    name = "userspace_stack.py"
    if os.geteuid() != 0:
        sys.exit(f"{name}: vupy run and ip netns need root")
    tools = ["ip"]
    if {"lwip-vde", "kernel-vde"} & set(paths):
        tools += ["vde_switch", "vde_plug"]
    if args.cpus:
        tools.append("taskset")
    for tool in tools:
        if shutil.which(tool) is None:
            sys.exit(f"{name}: {tool} not found")
    if not os.access(VUPY, os.X_OK):
        sys.exit(f"{name}: no vupy next to {sys.executable} (expected {VUPY})")
    prefix = ["taskset", "-c", args.cpus] if args.cpus else []

    signal.signal(signal.SIGTERM, exit_on_sigterm)
    configs = [(w, path) for w in workloads for path in paths]
    samples = {c: [] for c in configs}
    bad = {c: [] for c in configs}
    tmpdir = tempfile.mkdtemp(prefix="vupy-bench-")
    net = Network(paths, tmpdir, prefix)
    cleanup_errors = []
    try:
        net.up()
        total = len(configs) * args.rounds
        done = 0
        progress = sys.stderr.isatty()
        for rnd in range(args.rounds):
            k = rnd % len(configs)
            for config in configs[k:] + configs[:k]:
                workload, path = config
                if progress:
                    print(f"\r  run {done + 1}/{total}: {path} {workload}      ", end="",
                          file=sys.stderr, flush=True)
                value, problems = one_run(net, path, workload, args, prefix)
                samples[config].append(value)
                if problems:
                    bad[config].append(problems)
                done += 1
        if progress:
            print("\r" + " " * 60 + "\r", end="", file=sys.stderr, flush=True)
    finally:
        cleanup_errors = net.down()
        shutil.rmtree(tmpdir, ignore_errors=True)

    results = []
    for config in configs:
        workload, path = config
        results.append({"workload": workload, "path": path,
                         "unit": "us" if workload == "rtt" else "Gbit/s",
                         "samples": samples[config], "rounds": len(samples[config]),
                         "bad_runs": len(bad[config]), "problems": bad[config],
                         **summarise(samples[config])})
    by_key = {(r["workload"], r["path"]): r for r in results}
    for r in results:
        base = by_key.get((r["workload"], BASELINE))
        if base is None or r["path"] == BASELINE:
            r["ratio"] = None
        else:
            r["ratio"] = r["median"] / base["median"]

    reproduce = shlex.join([sys.executable, sys.argv[0], "--rounds", str(args.rounds),
                            "--bytes", str(args.bytes), "--iterations", str(args.iterations),
                            "--warmup", str(args.warmup), "--paths", ",".join(paths),
                            "--workloads", ",".join(workloads)]
                           + (["--cpus", args.cpus] if args.cpus else [])
                           + (["--json", args.json] if args.json else []))
    info = machine(os.sched_getaffinity(0), [["vde_switch", "-v"]])
    print(f"TCP through vupy's lwIP stack and kernel<->kernel: bulk {args.bytes} MiB in "
          f"{CHUNK // 1024} KiB sendall()s, {RTT_SIZE} B round trips x {args.iterations} "
          f"(after {args.warmup} untimed); {args.rounds} rounds, median of the rounds")
    print(f"{info['cpu_model']}, {info['nproc']} CPUs (allowed {info['affinity']}), "
          f"Linux {info['kernel']}, Python {info['python']}; "
          + (f"every process under taskset -c {args.cpus}" if args.cpus else "unpinned"))
    print("client under vupy run --stack /dev/net/s=SPEC --default /dev/net/s, "
          "server under ip netns exec; send = client->server, recv = server->client; "
          "lwIP is always the client")
    print("x veth: path/kernel-veth for the same workload (Gbit/s: below 1 is slower; "
          "us/rt: above 1 is slower)")
    print()
    print(table(results))
    print()
    # The goals, as facts, not assertions.
    for path in paths:
        if not path.startswith("lwip"):
            continue
        bulk = [by_key[(w, path)]["median"] for w in ("send", "recv") if (w, path) in by_key]
        parts = []
        if bulk:
            parts.append(f"bulk {min(bulk):.3f} Gbit/s in the slower direction "
                         f"({'meets' if min(bulk) >= 1 else 'misses'} >= 1 Gbit/s)")
        if ("rtt", path) in by_key:
            rt = by_key[("rtt", path)]["median"]
            parts.append(f"round trip {rt:.2f} us ({'meets' if rt <= 50 else 'misses'} <= 50 us)")
        if any(r["bad_runs"] for r in results if r["path"] == path):
            parts.append("NOT through lwIP: see the warnings")
        if parts:
            print(f"goal, {path}: " + "; ".join(parts))
    for r in results:
        for problems in r["problems"]:
            print(f"WARNING: {r['path']} {r['workload']}: a run did not go where it claims: "
                  + "; ".join(problems) + ": that number does not measure the path")
    if not any(r["bad_runs"] for r in results):
        print("checked: every run moved the expected bytes/round trips between the path's "
              "addresses, lwIP runs on a vupy proxy (lwIP's 10.9.x.2), kernel runs on a "
              "socket of the client's namespace")
    for e in cleanup_errors:
        print(f"WARNING: cleanup: {e}")
    print()
    print(f"reproduce (as root): {reproduce}")

    if args.json:
        doc = {
            "benchmark": "TCP bulk throughput and 64-byte round trip: vupy's lwIP stack vs kernel",
            "parameters": {"rounds": args.rounds, "bytes_mib": args.bytes, "chunk": CHUNK,
                           "iterations": args.iterations, "warmup": args.warmup,
                           "rtt_size": RTT_SIZE, "cpus": args.cpus,
                           "paths": paths, "workloads": workloads},
            "paths": {
                "lwip-vde": "lwip:vde://SWITCH,ip=10.9.0.2/24 -> vde_switch -> vde_plug -> tap0 "
                            "of the server namespace (10.9.0.1)",
                "lwip-tap": "lwip:tap://TAP,ip=10.9.2.2/24, TAP moved into the server "
                            "namespace (10.9.2.1) once the worker holds it",
                "kernel-veth": "netns:B (10.9.1.2) -> veth -> namespace A (10.9.1.1)",
                "kernel-vde": "netns:C (10.9.0.3) tap0 -> vde_plug -> vde_switch -> vde_plug "
                              "-> tap0 of the server namespace (10.9.0.1)",
            },
            "workloads": WORKLOAD_TEXT,
            "units": {"send": "Gbit/s", "recv": "Gbit/s", "rtt": "us per round trip"},
            "machine": info,
            "results": results,
            "cleanup_errors": cleanup_errors,
            "command": reproduce,
        }
        write_json(args.json, doc)
    return 0


if __name__ == "__main__":
    run_main(main, "userspace_stack.py")
