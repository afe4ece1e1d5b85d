# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""Read-only rtnetlink answers for stacks that are not kernel ones.

A userspace stack has no kernel to ask for its interfaces, so `ip addr`,
`ip link`, `ip route`, glibc's getaddrinfo (AI_ADDRCONFIG) and
if_nameindex would see nothing.  A module that can describe its stack as a
list of `Link`s gets NETLINK_ROUTE sockets served from it by `Responder`:
dumps and gets of links, addresses and routes are answered; anything that
would change the stack is refused with EOPNOTSUPP.

The message layouts are the kernel's (linux/netlink.h, linux/rtnetlink.h,
linux/if_link.h, linux/if_addr.h); so are the constants below.
"""
import errno
import os
import select
import socket
import struct
import threading
from dataclasses import dataclass, field

NLMSG = struct.Struct("=IHHII")          # len type flags seq pid
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x2, 0x4, 0x300
RTM_NEWLINK, RTM_GETLINK = 16, 18
RTM_NEWADDR, RTM_GETADDR = 20, 22
RTM_NEWROUTE, RTM_GETROUTE = 24, 26
IFINFOMSG = struct.Struct("=BxHiII")     # family type index flags change
IFADDRMSG = struct.Struct("=BBBBI")      # family prefixlen flags scope index
RTMSG = struct.Struct("=BBBBBBBBI")      # family dst_len src_len tos table protocol scope type flags
IFLA_ADDRESS, IFLA_BROADCAST, IFLA_IFNAME, IFLA_MTU = 1, 2, 3, 4
IFLA_TXQLEN, IFLA_OPERSTATE = 13, 16
IFA_ADDRESS, IFA_LOCAL, IFA_LABEL, IFA_BROADCAST, IFA_FLAGS = 1, 2, 3, 4, 8
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PREFSRC, RTA_TABLE = 1, 4, 5, 7, 15
ARPHRD_ETHER = 1
IFF_UP, IFF_BROADCAST, IFF_RUNNING, IFF_MULTICAST, IFF_LOWER_UP = 0x1, 0x2, 0x40, 0x1000, 0x10000
IF_OPER_UP, IF_OPER_DOWN = 6, 2
IFA_F_PERMANENT = 0x80
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK = 0, 253
RT_TABLE_MAIN = 254
RTPROT_KERNEL, RTPROT_BOOT = 2, 3
RTN_UNICAST = 1
SOCKADDR_NL = struct.Struct("=HHII")     # family pad pid groups
KERNEL = SOCKADDR_NL.pack(socket.AF_NETLINK, 0, 0, 0)


@dataclass
class Link:
    """One interface: its addresses are ipaddress interfaces (IPv4Interface,
    IPv6Interface), its routes (network, gateway or None)."""
    name: str
    index: int
    mtu: int
    mac: bytes
    up: bool = True
    addresses: list = field(default_factory=list)
    routes: list = field(default_factory=list)


def attribute(kind, data):
    length = 4 + len(data)
    return struct.pack("=HH", length, kind) + data + b"\0" * (-length % 4)


def message(kind, flags, seq, pid, body):
    return NLMSG.pack(NLMSG.size + len(body), kind, flags, seq, pid) + body


def link_flags(link):
    """The IFF_ flags of a link, as netlink and SIOCGIFFLAGS give them."""
    return IFF_BROADCAST | IFF_MULTICAST | ((IFF_UP | IFF_RUNNING | IFF_LOWER_UP) if link.up else 0)


def _link(link):
    return (IFINFOMSG.pack(socket.AF_UNSPEC, ARPHRD_ETHER, link.index, link_flags(link), 0xFFFFFFFF)
            + attribute(IFLA_IFNAME, link.name.encode() + b"\0")
            + attribute(IFLA_MTU, struct.pack("=I", link.mtu))
            + attribute(IFLA_ADDRESS, link.mac)
            + attribute(IFLA_BROADCAST, b"\xff" * 6)
            + attribute(IFLA_TXQLEN, struct.pack("=I", 1000))
            + attribute(IFLA_OPERSTATE, bytes([IF_OPER_UP if link.up else IF_OPER_DOWN])))


def _address(link, iface):
    v4 = iface.version == 4
    scope = RT_SCOPE_LINK if iface.ip.is_link_local else RT_SCOPE_UNIVERSE
    body = (IFADDRMSG.pack(socket.AF_INET if v4 else socket.AF_INET6, iface.network.prefixlen,
                           IFA_F_PERMANENT, scope, link.index)
            + attribute(IFA_ADDRESS, iface.ip.packed))
    if v4:
        body += (attribute(IFA_LOCAL, iface.ip.packed)
                 + attribute(IFA_BROADCAST, iface.network.broadcast_address.packed)
                 + attribute(IFA_LABEL, link.name.encode() + b"\0"))
    return body + attribute(IFA_FLAGS, struct.pack("=I", IFA_F_PERMANENT))


def _route(link, network, gateway):
    v4 = network.version == 4
    connected = gateway is None
    body = RTMSG.pack(socket.AF_INET if v4 else socket.AF_INET6, network.prefixlen, 0, 0,
                      RT_TABLE_MAIN, RTPROT_KERNEL if connected else RTPROT_BOOT,
                      RT_SCOPE_LINK if connected else RT_SCOPE_UNIVERSE, RTN_UNICAST, 0)
    body += attribute(RTA_TABLE, struct.pack("=I", RT_TABLE_MAIN))
    if network.prefixlen:
        body += attribute(RTA_DST, network.network_address.packed)
    if gateway is not None:
        body += attribute(RTA_GATEWAY, gateway.packed)
    if connected and v4:
        source = next((a.ip for a in link.addresses if a.version == 4 and a.ip in network), None)
        if source is not None:
            body += attribute(RTA_PREFSRC, source.packed)
    return body + attribute(RTA_OIF, struct.pack("=I", link.index))


def answer(links, request, pid):
    """The reply messages to one request datagram (bytes of several
    netlink messages), as a list of datagrams."""
    replies = []
    offset = 0
    while offset + NLMSG.size <= len(request):
        length, kind, flags, seq, _pid = NLMSG.unpack_from(request, offset)
        if length < NLMSG.size or offset + length > len(request):
            break
        header = request[offset:offset + NLMSG.size]
        body = request[offset + NLMSG.size:offset + length]
        offset += (length + 3) & ~3
        if not flags & NLM_F_REQUEST:
            continue
        family = body[0] if body else socket.AF_UNSPEC
        if kind == RTM_GETLINK:
            index = IFINFOMSG.unpack_from(body)[2] if len(body) >= IFINFOMSG.size else 0
            items = [(RTM_NEWLINK, _link(link)) for link in links
                     if flags & NLM_F_DUMP == NLM_F_DUMP or link.index == index]
        elif kind == RTM_GETADDR:
            items = [(RTM_NEWADDR, _address(link, a)) for link in links for a in link.addresses
                     if family in (socket.AF_UNSPEC, socket.AF_INET if a.version == 4 else socket.AF_INET6)]
        elif kind == RTM_GETROUTE:
            items = [(RTM_NEWROUTE, _route(link, net, gw)) for link in links for net, gw in link.routes
                     if family in (socket.AF_UNSPEC, socket.AF_INET if net.version == 4 else socket.AF_INET6)]
        else:
            # Read-only: nothing here changes the stack.
            replies.append(_error(errno.EOPNOTSUPP, header, seq, pid))
            continue
        if flags & NLM_F_DUMP == NLM_F_DUMP:
            datagram = b"".join(message(k, NLM_F_MULTI, seq, pid, b) for k, b in items)
            replies.append(datagram + message(NLMSG_DONE, NLM_F_MULTI, seq, pid, struct.pack("=i", 0)))
        elif items:
            replies.append(message(items[0][0], 0, seq, pid, items[0][1]))
        else:
            replies.append(_error(errno.ENODEV, header, seq, pid))
            continue
        if flags & NLM_F_ACK:
            replies.append(_error(0, header, seq, pid))
    return replies


def _error(err, header, seq, pid):
    """NLMSG_ERROR (an ack if err is 0), quoting the request's header."""
    return message(NLMSG_ERROR, 0, seq, pid, struct.pack("=i", -err) + header)


class Responder:
    """Serves NETLINK_ROUTE proxies of one stack from `links()`, in a thread.

    A proxy is the program's end of a SOCK_SEQPACKET socketpair; requests
    arrive on the other end (from send(), or from `request` for sendto and
    sendmsg served by vupy), and each reply datagram goes back with the
    kernel's address (see "Proxy stacks" in stack.py)."""

    def __init__(self, links):
        self.links = links
        self.ends = {}                  # our end -> (sock id, port id)
        self.lock = threading.Lock()
        self.wake_r, self.wake_w = os.pipe2(os.O_CLOEXEC)
        self.address = os.memfd_create("vupy-netlink-address", os.MFD_CLOEXEC)
        os.write(self.address, KERNEL)
        self.thread = None
        self.next_port = 1
        self.gone = set()               # socks whose program end is closed
        self.stopped = False

    def socket(self):
        """A new proxy's program end; its sock id is its inode."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        ours.setblocking(False)
        with self.lock:
            self.ends[ours] = (os.fstat(theirs.fileno()).st_ino, 0)
        if self.thread is None:
            self.thread = threading.Thread(target=self._serve, name="vupy-netlink", daemon=True)
            self.thread.start()
        else:
            os.write(self.wake_w, b"!")
        return theirs.detach()

    def port(self, sock):
        """The port id a proxy is bound to (assigned at bind, as the kernel's)."""
        with self.lock:
            for end, (s, port) in self.ends.items():
                if s == sock:
                    if not port:
                        port = 0x40000000 + self.next_port
                        self.next_port += 1
                        self.ends[end] = (s, port)
                    return port
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))

    def request(self, sock, data):
        """A request sent with an address (sendto, sendmsg)."""
        with self.lock:
            end = next((e for e, (s, _p) in self.ends.items() if s == sock), None)
        if end is None:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        self._reply(end, data)
        return len(data)

    def _reply(self, end, data):
        port = self.port(self.ends[end][0])
        try:
            datagrams = answer(self.links(), data, port)
        except OSError as e:            # the stack could not say (it is gone)
            if len(data) < NLMSG.size:
                return
            datagrams = [_error(e.errno, data[:NLMSG.size], NLMSG.unpack_from(data)[3], port)]
        for datagram in datagrams:
            try:
                socket.send_fds(end, [datagram], [self.address], socket.MSG_DONTWAIT)
            except OSError:
                return                      # full, or closed: netlink drops too

    def _serve(self):
        while not self.stopped:
            with self.lock:
                ends = list(self.ends)
            readable, _, _ = select.select(ends + [self.wake_r], [], [])
            for end in readable:
                if self.stopped:            # by close(), maybe on this thread in _reply
                    return
                if end == self.wake_r:
                    os.read(self.wake_r, 64)
                    continue
                try:
                    data = end.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    self._reply(end, data)
                    continue
                with self.lock:             # the program closed it
                    self.gone.add(self.ends.pop(end)[0])
                end.close()

    def closed(self):
        with self.lock:
            gone, self.gone = self.gone, set()
        return gone

    def close(self):
        self.stopped = True
        os.write(self.wake_w, b"!")
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join()
        with self.lock:
            for end in self.ends:
                end.close()
            self.ends.clear()
        for fd in (self.wake_r, self.wake_w, self.address):
            os.close(fd)
