# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""lwip: a userspace TCP/IP stack (lwIP 2.1, Debian's liblwip) on a VDE link.

SOURCE is a libvdeplug URL: ``tap://IF``, ``vde://SWITCH``, ``vxvde://GROUP``,
``slirp://``, ``ptp://...``.  Options:

  ip=A.B.C.D/LEN[+A.B.C.D/LEN...]  IPv4 addresses (up to 8)
  gw=A.B.C.D       the IPv4 default gateway
  ip6=ADDR/64[+ADDR/64...]  IPv6 addresses (lwIP 2.1 assumes /64 prefixes);
                   a link-local address is always made from the MAC
  mac=XX:XX:XX:XX:XX:XX  (default: a random locally administered one)
  mtu=N            (default 1500)

Each stack is a worker process (vupy/lib/vupy-lwip, from csrc/lwip_worker.c):
lwIP keeps global state, so one stack per process.  The worker ends with the
stack, and with vupy: it exits when its control socket closes.  Programs get
proxy descriptors (see "Proxy stacks" in vupy/stack.py); the protocol with
the worker is csrc/lwip_worker.h.
"""
import collections
import errno
import ipaddress
import os
import random
import select
import socket
import struct
import sys

import vupy
from vupy import rtnetlink
from vupy.stack import ProxyStack, StackError, StackModule, end_helper, start_helper

from ._options import Options, need_source

WORKER = os.path.join(os.path.dirname(vupy.__file__), "lib", "vupy-lwip")
READY_SECONDS = 10      # for the worker to open its link
REPLY_SECONDS = 5       # for any answer: a worker that takes longer is broken

# csrc/lwip_worker.h
REQ = struct.Struct("=IIQiiiI")     # op seq id a b c len
REP = struct.Struct("=IiqII")       # seq err val event len
(VW_SOCKET, VW_BIND, VW_CONNECT, VW_LISTEN, VW_ACCEPT, VW_GETSOCKNAME, VW_GETPEERNAME,
 VW_GETSOCKOPT, VW_SETSOCKOPT, VW_SENDTO, VW_INFO) = range(1, 12)
VW_READY, VW_CLOSED = 1, 2
MAX_REPLY = REP.size + 65600
Reply = collections.namedtuple("Reply", "seq err val event len")

OPTIONS = {"ip", "gw", "ip6", "mac", "mtu"}
NETLINK_ROUTE = 0
MAX_IPV4 = 8                  # csrc/lwip_worker.c: the interface and MAX_ALIASES
MAX_IPV6 = 5                  # LWIP_IPV6_NUM_ADDRESSES, less the link-local one
NETLINK_BUFFER = 212992       # what a netlink socket reports for SO_RCVBUF, SO_SNDBUF


def _random_mac():
    octets = [random.randrange(256) for _ in range(6)]
    octets[0] = (octets[0] & 0xFC) | 0x02       # unicast, locally administered
    return ":".join(f"{o:02x}" for o in octets)


def worker_arguments(url, options):
    """The worker's command line for `options`; StackError naming a bad one."""
    checked = Options("lwip", options, OPTIONS)
    need_source("lwip", url, "tap://tap0")
    ip = checked.interfaces("ip", 4, most=MAX_IPV4)
    gw = checked.address("gw", 4)
    ip6 = checked.interfaces("ip6", 6, most=MAX_IPV6, length=64)
    mtu = checked.mtu(576) or 1500
    return [url, checked.mac() or _random_mac(), str(mtu),
            ",".join(map(str, ip)) or "-", str(gw or "-")] + [str(i.ip) for i in ip6]


def parse_links(text):
    """The worker's VW_INFO text (csrc/lwip_worker.c, info()) as rtnetlink Links."""
    links = {}
    for line in text.splitlines():
        kind, *words = line.split()
        if kind == "link":
            name, index, mtu, mac, state = words
            links[int(index)] = rtnetlink.Link(name, int(index), int(mtu),
                                               bytes.fromhex(mac.replace(":", "")), state == "up")
        elif kind == "addr":
            index, _family, address, length = words
            iface = ipaddress.ip_interface(f"{address}/{length}")
            links[int(index)].addresses.append(iface)
            if iface.version == 6 and not iface.ip.is_link_local:    # on-link, as lwIP takes it
                links[int(index)].routes.append((iface.network, None))
        elif kind == "route":
            index, _family, destination, length, gateway = words
            links[int(index)].routes.append((ipaddress.ip_network(f"{destination}/{length}"),
                                             None if gateway == "-" else ipaddress.ip_address(gateway)))
    return list(links.values())


class LwipModule(StackModule):
    name = "lwip"
    description = "lwIP, a userspace TCP/IP stack, on a VDE link: URL,ip=,gw=,ip6=,mac=,mtu="
    families = frozenset((socket.AF_INET, socket.AF_INET6, socket.AF_NETLINK))

    @classmethod
    def unavailable(cls):
        if os.access(WORKER, os.X_OK):
            return None
        # setup.py builds the worker only where it finds lwIP and libvdeplug.
        return ("vupy was built without its lwIP worker, which needs liblwip-dev and "
                "libvdeplug-dev (Debian packages): install them, then reinstall vupy")

    def create(self, source, options):
        return LwipStack(worker_arguments(source, options))


class LwipStack(ProxyStack):
    families = LwipModule.families

    def __init__(self, arguments):
        self.url = arguments[0]
        self.ctl, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        self.seq = 0
        self.gone = set()           # proxies whose last descriptor is closed
        try:
            self.worker = start_helper([WORKER, str(theirs.fileno())] + arguments, pass_fds=[theirs.fileno()])
        finally:
            theirs.close()
        event = self._next(READY_SECONDS)
        if event is None or event[0].seq != 0 or event[0].event != VW_READY:
            reason = "no answer" if event is None else event[1].decode(errors="replace")
            self.close()
            raise StackError(f"lwip:{self.url}: the stack did not start: {reason}")
        if event[0].err:
            self.close()
            raise StackError(f"lwip:{self.url}: {event[1].decode(errors='replace')}")
        self._links = parse_links(self._call(VW_INFO)[1].decode())
        self.netlink = rtnetlink.Responder(self.links)
        self.netlink_socks = set()
        self.open = set()           # socks programs hold

    # The worker's protocol ----------------------------------------------------

    def _next(self, timeout):
        """(Reply, payload, fds) of the worker's next message, or None if the
        worker is gone or silent."""
        if self.ctl is None or not select.select([self.ctl], [], [], timeout)[0]:
            return None
        try:
            data, fds, _flags, _addr = socket.recv_fds(self.ctl, MAX_REPLY, 1)
        except OSError:
            return None
        if len(data) < REP.size:
            return None
        rep = Reply(*REP.unpack_from(data))
        return rep, data[REP.size:REP.size + rep.len], fds

    def _call(self, op, sock=0, a=0, b=0, c=0, payload=b""):
        """The worker's (value, payload, descriptor) for one request; OSError
        with its errno, or ENETDOWN if the worker is gone."""
        if self.ctl is None:
            raise OSError(errno.ENETDOWN, "the lwIP stack is gone")
        self.seq = self.seq % 0xFFFFFFFF + 1
        try:
            self.ctl.sendmsg([REQ.pack(op, self.seq, sock, a, b, c, len(payload)), payload])
        except OSError:
            self._lost()
        while True:
            message = self._next(REPLY_SECONDS)
            if message is None:
                self._lost()
            rep, data, fds = message
            if rep.seq == 0:
                self._event(rep)
            if rep.seq != self.seq:
                for fd in fds:
                    os.close(fd)
                continue
            if rep.err:
                for fd in fds:
                    os.close(fd)
                raise OSError(rep.err, os.strerror(rep.err))
            return rep.val, data, (fds[0] if fds else -1)

    def _lost(self):
        status = self.worker.poll()
        how = "has stopped answering" if status is None else f"exited with status {status}"
        sys.stderr.write(f"vupy: lwip:{self.url}: the stack's worker {how}: "
                         "its sockets fail from now on (ENETDOWN)\n")
        self.close()
        raise OSError(errno.ENETDOWN, "the lwIP stack is gone")

    # ProxyStack ---------------------------------------------------------------

    def socket(self, domain, type, protocol, creds):
        if domain == socket.AF_NETLINK:
            fd = self._netlink_socket(type & 0xF, protocol)
        else:
            sock, _data, fd = self._call(VW_SOCKET, 0, domain, type & 0xF, protocol)
            self.open.add(sock)
        if type & socket.SOCK_NONBLOCK:
            os.set_blocking(fd, False)
        return fd

    def bind(self, sock, address):
        if sock in self.netlink_socks:
            self._netlink_address(address)
            self.netlink.port(sock)         # bound: it has its port id now
            return
        self._call(VW_BIND, sock, payload=address)

    def connect(self, sock, address):
        if sock in self.netlink_socks:
            self._netlink_address(address)
            return
        self._call(VW_CONNECT, sock, payload=address)

    def listen(self, sock, backlog):
        self._not_netlink(sock)
        self._call(VW_LISTEN, sock, backlog)

    def accept(self, sock):
        self._not_netlink(sock)
        new, address, fd = self._call(VW_ACCEPT, sock)
        self.open.add(new)
        return fd, address

    def getsockname(self, sock):
        if sock in self.netlink_socks:
            return rtnetlink.SOCKADDR_NL.pack(socket.AF_NETLINK, 0, self.netlink.port(sock), 0)
        return self._call(VW_GETSOCKNAME, sock)[1]

    def getpeername(self, sock):
        if sock in self.netlink_socks:
            return rtnetlink.KERNEL
        return self._call(VW_GETPEERNAME, sock)[1]

    def getsockopt(self, sock, level, name, size):
        if sock in self.netlink_socks:
            return struct.pack("=i", NETLINK_BUFFER if name in (socket.SO_RCVBUF, socket.SO_SNDBUF) else 0)
        return self._call(VW_GETSOCKOPT, sock, level, name, size)[1]

    def setsockopt(self, sock, level, name, value):
        if sock in self.netlink_socks:
            return                  # buffer sizes, strict checking, ...: nothing to change
        self._call(VW_SETSOCKOPT, sock, level, name, payload=value)

    def sendto(self, sock, data, flags, address):
        if sock in self.netlink_socks:
            if address:
                self._netlink_address(address)
            return self.netlink.request(sock, data)
        return self._call(VW_SENDTO, sock, flags, len(address), payload=address + data)[0]

    def links(self):
        return self._links

    # NETLINK_ROUTE, answered from the stack's interfaces (vupy/rtnetlink.py)

    def _netlink_socket(self, type, protocol):
        if protocol != NETLINK_ROUTE:
            raise OSError(errno.EPROTONOSUPPORT, "lwip serves NETLINK_ROUTE only")
        if type not in (socket.SOCK_RAW, socket.SOCK_DGRAM):
            raise OSError(errno.ESOCKTNOSUPPORT, os.strerror(errno.ESOCKTNOSUPPORT))
        fd = self.netlink.socket()
        sock = os.fstat(fd).st_ino
        self.netlink_socks.add(sock)
        self.open.add(sock)
        return fd

    @staticmethod
    def _netlink_address(address):
        if len(address) < rtnetlink.SOCKADDR_NL.size or \
                rtnetlink.SOCKADDR_NL.unpack_from(address)[0] != socket.AF_NETLINK:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))

    def _not_netlink(self, sock):
        if sock in self.netlink_socks:
            raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))

    def _take_events(self):
        """Read what the worker said on its own (the closed proxies)."""
        while True:
            message = self._next(0)
            if message is None:
                break
            if message[0].seq == 0:
                self._event(message[0])
            for fd in message[2]:
                os.close(fd)
        if self.netlink is not None:
            for sock in self.netlink.closed():
                self._forget(sock)

    def _event(self, rep):
        if rep.event == VW_CLOSED:
            self._forget(rep.val)

    def _forget(self, sock):
        self.gone.add(sock)
        self.open.discard(sock)
        self.netlink_socks.discard(sock)

    def closed(self):
        self._take_events()
        gone, self.gone = self.gone, set()
        return gone

    def open_sockets(self):
        if self.ctl is None:
            return 0
        self._take_events()
        return len(self.open)

    def close(self):
        if getattr(self, "netlink", None) is not None:
            self.netlink.close()
            self.netlink = None
        if self.ctl is not None:
            self.ctl.close()        # the worker exits when it sees this
            self.ctl = None
        end_helper(self.worker, REPLY_SECONDS)
