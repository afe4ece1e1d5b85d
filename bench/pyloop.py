# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""pyloop: bench/loops.c for Python programs, with the same protocol.

    python pyloop.py ITERATIONS WARMUP WORKLOAD [ARGS]

socket FAMILY TYPE         socket.socket(FAMILY, TYPE).close()
msocket PATH FAMILY TYPE   vupy.msocket(PATH, FAMILY, TYPE).close()
getpid                     os.getpid()
stat PATH                  os.stat(PATH)
sockopt                    getsockname() + setsockopt(TCP_NODELAY) on an
                           AF_INET stream socket
sendmsg                    sendmsg() + recvmsg() of 64 bytes on an AF_UNIX
                           socketpair
send                       send() + recv() of 64 bytes on the same pair

FAMILY is inet or unix, TYPE stream or dgram.  The socket module's objects
are what a Python program makes, so their overhead is part of the workload;
the ratio against the same loop run natively is what tells vupy's share.

Prints "NS_PER_ITERATION NETNS_INODE SECCOMP_MODE", as loops.c does: the
namespace of a socket made after the loop (by the loop's own call for socket
and msocket, by socket(AF_INET, SOCK_DGRAM) otherwise) and the Seccomp: field
of /proc/self/status.
"""
import fcntl
import os
import socket
import sys
import time

SIOCGSKNS = 0x894C
FAMILIES = {"inet": socket.AF_INET, "unix": socket.AF_UNIX}
TYPES = {"stream": socket.SOCK_STREAM, "dgram": socket.SOCK_DGRAM}


def netns_of(s):
    try:
        nsfd = fcntl.ioctl(s.fileno(), SIOCGSKNS)
    except OSError:
        return 0
    try:
        return os.fstat(nsfd).st_ino
    finally:
        os.close(nsfd)


def seccomp_mode():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Seccomp:"):
                return int(line.split()[1])
    return -1


def workload(name, args):
    """(the loop's step, a function making the socket to look at after it)."""
    def probe():
        return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if name == "socket":
        family, type_ = FAMILIES[args[0]], TYPES[args[1]]

        def step():
            socket.socket(family, type_).close()
        return step, lambda: socket.socket(family, type_)
    if name == "msocket":
        import vupy
        path, family, type_ = args[0], FAMILIES[args[1]], TYPES[args[2]]

        def step():
            vupy.msocket(path, family, type_).close()
        return step, lambda: vupy.msocket(path, family, type_)
    if name == "getpid":
        return os.getpid, probe
    if name == "stat":
        path = args[0]
        return (lambda: os.stat(path)), probe
    if name == "sockopt":
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)

        def step():
            s.getsockname()
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return step, probe
    a, b = socket.socketpair()
    data = b"x" * 64
    if name == "sendmsg":
        def step():
            a.sendmsg([data])
            b.recvmsg(64)
        return step, probe
    if name == "send":
        def step():
            a.send(data)
            b.recv(64)
        return step, probe
    raise SystemExit(f"pyloop: unknown workload {name}")


def main():
    n, warmup, name, args = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4:]
    step, make = workload(name, args)
    for _ in range(warmup):
        step()
    t0 = time.perf_counter_ns()
    for _ in range(n):
        step()
    t1 = time.perf_counter_ns()
    with make() as s:
        inode = netns_of(s)
    print(f"{(t1 - t0) / n:.1f} {inode} {seccomp_mode()}")


if __name__ == "__main__":
    main()
