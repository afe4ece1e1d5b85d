# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""sock_diag answers for stacks that are not kernel ones: what `ss` asks.

`ss -tuan` lists sockets by dumping them through NETLINK_SOCK_DIAG, one
request per protocol and family (SOCK_DIAG_BY_FAMILY, struct
inet_diag_req_v2).  A module that can describe its stack's TCP and UDP
sockets as a list of `Socket`s gets such netlink sockets served from it by
rtnetlink.Responder, with `answer` below: each socket of the asked family
and protocol whose state is among those asked becomes a struct
inet_diag_msg.  What is not served (other families, protocols, the old
TCPDIAG_GETSOCK requests, single-socket gets) is refused (`_refused`).
Extensions (INET_DIAG_INFO and the rest) and filters (bytecode) are left
out: ss filters what it gets itself.

The layouts are the kernel's (linux/sock_diag.h, linux/inet_diag.h); so are
the constants below.
"""
import errno
import socket
import struct
from dataclasses import dataclass

from .rtnetlink import NLM_F_DUMP, NLM_F_MULTI, NLMSG_DONE, error, message, requests

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
INET_DIAG_REQ_V2 = struct.Struct("=BBBxI48s")      # family protocol ext states sockid
INET_DIAG_SOCKID = struct.Struct(">HH16s16s")       # sport dport src dst (network order), then
INET_DIAG_SOCKID_REST = struct.Struct("=III")       # interface, cookie (two words)
INET_DIAG_MSG_HEAD = struct.Struct("=BBBB")         # family state timer retrans
INET_DIAG_MSG_TAIL = struct.Struct("=IIIII")        # expires rqueue wqueue uid inode
INET_DIAG_NOCOOKIE = 0xFFFFFFFF
INET_DIAG_REQ_PROTOCOL = 3      # a request's attribute: the protocol, when it exceeds a byte
NLATTR = struct.Struct("=HH")   # len type
PROTOCOLS = (socket.IPPROTO_TCP, socket.IPPROTO_UDP, 136)   # 136: IPPROTO_UDPLITE
DATAGRAM_SIZE = 32768           # a dump goes out in datagrams of about this size, as the kernel's


@dataclass
class Socket:
    """One socket: its proxy's inode (0 if none holds it), IP protocol,
    Linux TCP state (include/net/tcp_states.h), family, addresses
    (ipaddress objects) and ports, and its owner's uid."""
    inode: int
    protocol: int
    state: int
    family: int
    local: object
    local_port: int
    remote: object
    remote_port: int
    uid: int = 0


def inet_diag_msg(sock):
    sockid = (INET_DIAG_SOCKID.pack(sock.local_port, sock.remote_port,
                                    sock.local.packed.ljust(16, b"\0"), sock.remote.packed.ljust(16, b"\0"))
              + INET_DIAG_SOCKID_REST.pack(0, INET_DIAG_NOCOOKIE, INET_DIAG_NOCOOKIE))
    return (INET_DIAG_MSG_HEAD.pack(sock.family, sock.state, 0, 0) + sockid
            + INET_DIAG_MSG_TAIL.pack(0, 0, 0, sock.uid, sock.inode))


def _refused(kind, flags, body):
    """The errno a request gets that is not served, or 0.  ss reads /proc
    instead after any error, and says so for all but ENOENT: AF_UNIX ones
    get that, since /proc/net/unix is right (AF_UNIX sockets are the
    kernel's, whatever the stack), the rest EPROTONOSUPPORT."""
    if len(body) < 2 or kind != SOCK_DIAG_BY_FAMILY:
        return errno.EPROTONOSUPPORT
    if body[0] == socket.AF_UNIX:
        return errno.ENOENT
    if (body[0] not in (socket.AF_INET, socket.AF_INET6) or body[1] not in PROTOCOLS
            or flags & NLM_F_DUMP != NLM_F_DUMP or len(body) < INET_DIAG_REQ_V2.size):
        return errno.EPROTONOSUPPORT
    # A protocol too large for sdiag_protocol (MPTCP's 262) comes in an attribute.
    offset = INET_DIAG_REQ_V2.size
    while offset + NLATTR.size <= len(body):
        length, kind = NLATTR.unpack_from(body, offset)
        if kind == INET_DIAG_REQ_PROTOCOL:
            return errno.EPROTONOSUPPORT
        offset += max(NLATTR.size, (length + 3) & ~3)
    return 0


def answer(sockets, request, pid):
    """The reply datagrams to one request datagram (several netlink
    messages), as rtnetlink.answer for NETLINK_ROUTE."""
    replies = []
    for header, kind, flags, seq, body in requests(request):
        refused = _refused(kind, flags, body)
        if refused:
            replies.append(error(refused, header, seq, pid))
            continue
        family, protocol, _ext, states, _sockid = INET_DIAG_REQ_V2.unpack_from(body)
        datagram = b""
        for sock in sockets:
            if sock.family == family and sock.protocol == protocol and states >> sock.state & 1:
                datagram += message(SOCK_DIAG_BY_FAMILY, NLM_F_MULTI, seq, pid, inet_diag_msg(sock))
                if len(datagram) >= DATAGRAM_SIZE:
                    replies.append(datagram)
                    datagram = b""
        replies.append(datagram + message(NLMSG_DONE, NLM_F_MULTI, seq, pid, struct.pack("=i", 0)))
    return replies
