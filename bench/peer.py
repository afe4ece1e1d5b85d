# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""peer: both ends of one measured connection, for bench/.

    python peer.py server|client WORKLOAD ADDR PORT COUNT WARMUP

WORKLOAD is the client's view:

send     TCP bulk, client -> server: the client sendall()s COUNT bytes in
         256 KiB chunks, shuts its side down and waits for the server's
         count of what it received.
recv     TCP bulk, server -> client: the client reads and counts to EOF.
rtt      COUNT round trips of 64 bytes over TCP (TCP_NODELAY on both ends),
         after WARMUP untimed ones.
connect  COUNT connections after WARMUP untimed ones, one after the other:
         each is connect(), 1 byte each way (the server answers the
         client's), close() (the client first, as `ab -c 1`'s requests
         end), and the server's close after the client's EOF.
udp-rtt  the same with UDP datagrams; an empty datagram ends the server.
         Both ends wait at most 10 s for a datagram (SO_RCVTIMEO): a lost
         one fails the run instead of hanging it.

The server binds ADDR:PORT and prints "listening"; the client prints
"ready" and connects to ADDR:PORT when it reads a line on stdin.  Each
prints one JSON line at the end: the client its time ("ns", from the end of
connect() to the last byte known delivered), its socket's addresses, what
its socket is ("kind": "unix-proxy" for a vupy proxy, listed in
/proc/net/unix, or "kernel" with the socket's namespace in "netns"), its own
namespace ("own_netns") and Seccomp: mode; the server what it counted and
whom it served.
"""
import json
import os
import socket
import struct
import sys
import time

from pyloop import netns_of, seccomp_mode   # bench/, this script's directory

CHUNK = 256 * 1024
SIZE = 64
UDP_TIMEOUT = struct.pack("ll", 10, 0)      # struct timeval: 10 s


def recv_exactly(s, view):
    got = 0
    while got < len(view):
        k = s.recv_into(view[got:])
        if not k:
            raise SystemExit(f"EOF after {got} of {len(view)} bytes")
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
        if any(len(fields) > 6 and fields[6] == str(ino) for fields in map(str.split, f)):
            return "unix-proxy", 0
    inode = netns_of(s)
    return ("kernel", inode) if inode else ("unknown", 0)


def server(workload, addr, port, count, warmup):
    out = {}
    if workload == "udp-rtt":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, UDP_TIMEOUT)
        s.bind((addr, port))
        print("listening", flush=True)
        n = 0
        while True:
            data, peer = s.recvfrom(SIZE)
            if not data:
                break
            s.sendto(data, peer)
            n += 1
        out.update(peer=peer[0], round_trips=n, eof=True)
        return out
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((addr, port))
    listener.listen(16)
    print("listening", flush=True)
    if workload == "connect":
        n = 0
        for _ in range(count + warmup):
            s, peer = listener.accept()
            s.sendall(s.recv(1))
            out["eof"] = s.recv(1) == b""
            s.close()
            n += 1
        out.update(peer=peer[0], round_trips=n)
        return out
    s, peer = listener.accept()
    listener.close()
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
        view = memoryview(bytearray(SIZE))
        n = 0
        for _ in range(count + warmup):
            recv_exactly(s, view)
            s.sendall(view)
            n += 1
        out["round_trips"] = n
        out["eof"] = s.recv(1) == b""
    return out


def round_trips(exchange, count, warmup):
    """The time of `count` exchanges after `warmup` untimed ones."""
    for _ in range(warmup):
        exchange()
    t0 = time.perf_counter_ns()
    for _ in range(count):
        exchange()
    return time.perf_counter_ns() - t0


def client(workload, addr, port, count, warmup):
    print("ready", flush=True)
    if not sys.stdin.readline():
        raise SystemExit("client: no go")
    if workload == "connect":
        return connections(addr, port, count, warmup)
    udp = workload == "udp-rtt"
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
    if workload == "rtt":
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if udp:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, UDP_TIMEOUT)
    s.connect((addr, port))
    out = {"sockname": s.getsockname()[0], "peername": s.getpeername()[0],
           "own_netns": os.stat("/proc/self/ns/net").st_ino, "seccomp": seccomp_mode()}
    out["kind"], out["netns"] = kind(s)
    msg = b"p" * SIZE
    view = memoryview(bytearray(SIZE))
    if workload == "send":
        t0 = time.perf_counter_ns()
        pump(s, count)
        s.shutdown(socket.SHUT_WR)
        ack = bytearray(8)
        recv_exactly(s, memoryview(ack))
        out["ns"] = time.perf_counter_ns() - t0
        out["bytes"] = count
        out["server_bytes"] = struct.unpack("!Q", ack)[0]
    elif workload == "recv":
        t0 = time.perf_counter_ns()
        out["bytes"] = drain(s)
        out["ns"] = time.perf_counter_ns() - t0
    elif udp:
        def exchange():
            s.send(msg)
            if s.recv_into(view) != SIZE:
                raise SystemExit("client: short datagram")
        out["ns"] = round_trips(exchange, count, warmup)
        s.send(b"")
        out["round_trips"] = count + warmup
    else:
        out["nodelay"] = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)

        def exchange():
            s.sendall(msg)
            recv_exactly(s, view)
        out["ns"] = round_trips(exchange, count, warmup)
        out["round_trips"] = count + warmup
    s.close()
    return out


def connections(addr, port, count, warmup):
    one = bytearray(1)
    out = {}

    def exchange():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.connect((addr, port))
        if not out:
            out.update(sockname=s.getsockname()[0], peername=s.getpeername()[0])
            out["kind"], out["netns"] = kind(s)
        s.send(b"c")
        recv_exactly(s, memoryview(one))
        s.close()
    out["ns"] = round_trips(exchange, count, warmup)
    out["round_trips"] = count + warmup
    return out


def main():
    role, workload, addr, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    count, warmup = int(sys.argv[5]), int(sys.argv[6])
    out = (server if role == "server" else client)(workload, addr, port, count, warmup)
    out.update(role=role, workload=workload)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
