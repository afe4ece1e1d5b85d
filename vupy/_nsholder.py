# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""A network namespace for a vupy without root, and the process that holds it.

An ordinary user may make a network namespace only inside a user namespace
of its own, and may not enter either from outside.  So this process (one per
stack, started by `UserNamespaceStack`, vupy/helpers.py) makes both, maps the user to root in
the user namespace (so that it may bring `lo` up, let programs bind ports
below 1024, and make raw sockets there, as in a container), and makes the
stack's sockets on vupy's request, handing each back with SCM_RIGHTS.  The
programs of the session stay outside the user namespace, with their own
identity; the sockets are the user's.

Protocol, over a SOCK_SEQPACKET socketpair: a request is `=iii` (domain,
type, protocol); the reply is `=i` 0 with the socket, or an errno (the
structs are vupy/helpers.py's, HOLDER_REQUEST and HOLDER_REPLY).  The
first message, from the holder, is `=i` 0 when the namespace is ready, or
an errno followed by the reason.  The holder exits when vupy closes its end.
"""
import os
import socket
import sys

from . import _native
from .helpers import CLONE_NEWNET, HOLDER_REPLY as REPLY, HOLDER_REQUEST as REQUEST, loopback_up

CLONE_NEWUSER = 0x10000000


def _enter(uid, gid):
    """Make the user and network namespaces, and set them up."""
    rc = _native.lib.vupy_unshare(CLONE_NEWUSER | CLONE_NEWNET)
    if rc < 0:
        raise OSError(-rc, f"unshare(CLONE_NEWUSER|CLONE_NEWNET): {os.strerror(-rc)}")
    for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)
    loopback_up()
    # Every port is the programs' to bind, as for root in a container.
    with open("/proc/sys/net/ipv4/ip_unprivileged_port_start", "w") as f:
        f.write("0")


def serve(channel):
    uid, gid = os.getuid(), os.getgid()
    try:
        _enter(uid, gid)
    except OSError as e:
        channel.send(REPLY.pack(e.errno or 1) + str(e).encode())
        return 1
    channel.send(REPLY.pack(0))
    while True:
        try:
            request = channel.recv(REQUEST.size)
        except OSError:
            return 0
        if len(request) != REQUEST.size:
            return 0                        # vupy closed the stack
        domain, type, protocol = REQUEST.unpack(request)
        try:
            s = socket.socket(domain, type | socket.SOCK_CLOEXEC, protocol)
        except OSError as e:
            channel.send(REPLY.pack(e.errno))
            continue
        with s:
            socket.send_fds(channel, [REPLY.pack(0)], [s.fileno()])


if __name__ == "__main__":
    sys.exit(serve(socket.socket(fileno=int(sys.argv[1]))))
