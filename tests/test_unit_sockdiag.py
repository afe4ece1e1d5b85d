# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""Unit tests of vupy.sockdiag: the sock_diag answers ss gets from a
userspace stack's list of sockets, byte for byte as the kernel lays them
out (linux/inet_diag.h)."""
import errno
import ipaddress
import socket
import struct

from vupy import rtnetlink, sockdiag

TCP_ESTABLISHED, TCP_LISTEN = 1, 10
PORT = 0x40000001                   # the requesting socket's netlink port id

SOCKETS = [
    sockdiag.Socket(11, socket.IPPROTO_TCP, TCP_LISTEN, socket.AF_INET,
                    ipaddress.ip_address("127.0.0.1"), 80, ipaddress.ip_address("0.0.0.0"), 0, 1000),
    sockdiag.Socket(12, socket.IPPROTO_TCP, TCP_ESTABLISHED, socket.AF_INET,
                    ipaddress.ip_address("10.0.0.2"), 80, ipaddress.ip_address("10.0.0.1"), 5000, 1000),
    sockdiag.Socket(13, socket.IPPROTO_TCP, TCP_LISTEN, socket.AF_INET6,
                    ipaddress.ip_address("::"), 22, ipaddress.ip_address("::"), 0),
    sockdiag.Socket(14, socket.IPPROTO_UDP, 7, socket.AF_INET,
                    ipaddress.ip_address("0.0.0.0"), 53, ipaddress.ip_address("0.0.0.0"), 0),
]


def request(family, protocol, states=0xFFFFFFFF, kind=sockdiag.SOCK_DIAG_BY_FAMILY,
            flags=rtnetlink.NLM_F_REQUEST | rtnetlink.NLM_F_DUMP, extra=b""):
    body = struct.pack("=BBBxI", family, protocol, 0, states) + bytes(48) + extra
    return rtnetlink.message(kind, flags, 7, 0, body)


def messages(datagrams):
    """(type, flags, seq, pid, body) of each message in the reply datagrams."""
    out = []
    for datagram in datagrams:
        offset = 0
        while offset < len(datagram):
            length, kind, flags, seq, pid = rtnetlink.NLMSG.unpack_from(datagram, offset)
            out.append((kind, flags, seq, pid, datagram[offset + rtnetlink.NLMSG.size:offset + length]))
            offset += length
    return out


def inet_diag_msg(body):
    family, state = body[0], body[1]
    sport, dport, src, dst = struct.unpack_from(">HH16s16s", body, 4)
    interface, cookie0, cookie1, _expires, _rq, _wq, uid, inode = struct.unpack_from("=IIIIIIII", body, 40)
    return family, state, sport, dport, src, dst, (interface, cookie0, cookie1), uid, inode


def test_a_dump_lists_the_sockets_of_its_family_protocol_and_states():
    replies = messages(sockdiag.answer(SOCKETS, request(socket.AF_INET, socket.IPPROTO_TCP), PORT))
    assert [m[:4] for m in replies] == [
        (sockdiag.SOCK_DIAG_BY_FAMILY, rtnetlink.NLM_F_MULTI, 7, PORT),
        (sockdiag.SOCK_DIAG_BY_FAMILY, rtnetlink.NLM_F_MULTI, 7, PORT),
        (rtnetlink.NLMSG_DONE, rtnetlink.NLM_F_MULTI, 7, PORT)]
    assert [len(m[4]) for m in replies[:2]] == [72, 72]    # sizeof(struct inet_diag_msg)
    assert inet_diag_msg(replies[1][4]) == (
        socket.AF_INET, TCP_ESTABLISHED, 80, 5000, bytes([10, 0, 0, 2]) + bytes(12),
        bytes([10, 0, 0, 1]) + bytes(12), (0, 0xFFFFFFFF, 0xFFFFFFFF), 1000, 12)
    listening = messages(sockdiag.answer(SOCKETS, request(socket.AF_INET, socket.IPPROTO_TCP,
                                                          states=1 << TCP_LISTEN), PORT))
    assert [inet_diag_msg(m[4])[-1] for m in listening[:-1]] == [11]
    six = messages(sockdiag.answer(SOCKETS, request(socket.AF_INET6, socket.IPPROTO_TCP), PORT))
    assert [inet_diag_msg(m[4])[-1] for m in six[:-1]] == [13]
    udp = messages(sockdiag.answer(SOCKETS, request(socket.AF_INET, socket.IPPROTO_UDP), PORT))
    assert [inet_diag_msg(m[4])[-1] for m in udp[:-1]] == [14]


def test_a_long_dump_comes_in_several_datagrams():
    many = SOCKETS[:1] * 2000
    datagrams = sockdiag.answer(many, request(socket.AF_INET, socket.IPPROTO_TCP), PORT)
    assert len(datagrams) > 1 and all(len(d) <= sockdiag.DATAGRAM_SIZE + 88 for d in datagrams)
    assert len(messages(datagrams)) == 2001


def _errors(datagrams):
    return [-struct.unpack_from("=i", m[4])[0] for m in messages(datagrams) if m[0] == rtnetlink.NLMSG_ERROR]


def test_what_is_not_served_is_refused():
    raw = request(socket.AF_INET, 255)                          # ss -w
    packet = request(socket.AF_PACKET, 0)                       # ss -0
    mptcp = request(socket.AF_INET, socket.IPPROTO_TCP,         # ss -M: the protocol in an attribute
                    extra=rtnetlink.attribute(sockdiag.INET_DIAG_REQ_PROTOCOL, struct.pack("=I", 262)))
    old = request(socket.AF_INET, socket.IPPROTO_TCP, kind=18)  # TCPDIAG_GETSOCK
    get = request(socket.AF_INET, socket.IPPROTO_TCP, flags=rtnetlink.NLM_F_REQUEST)
    for refused in (raw, packet, mptcp, old, get):
        assert _errors(sockdiag.answer(SOCKETS, refused, PORT)) == [errno.EPROTONOSUPPORT]
    # ss reads /proc/net/unix after ENOENT, and says nothing: that is right for AF_UNIX.
    assert _errors(sockdiag.answer(SOCKETS, request(socket.AF_UNIX, 0), PORT)) == [errno.ENOENT]
