# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""lwip: a userspace TCP/IP stack (lwIP 2.1, Debian's liblwip) on a VDE link.

SOURCE is a libvdeplug URL: ``tap://IF``, ``vde://SWITCH``, ``vxvde://GROUP``,
``slirp://``, ``ptp://...``.  Options:

  ip=A.B.C.D/LEN[+A.B.C.D/LEN...]  IPv4 addresses (up to 8)
  ip=dhcp          the IPv4 address, mask and router from a DHCP server
  gw=A.B.C.D       the IPv4 default gateway (not with ip=dhcp)
  ip6=ADDR/64[+ADDR/64...]  IPv6 addresses (lwIP 2.1 assumes /64 prefixes);
                   a link-local address is always made from the MAC
  ip6=auto[+ADDR/64...]  also addresses from router advertisements (SLAAC)
  mac=XX:XX:XX:XX:XX:XX  (default: a random locally administered one)
  mtu=N            (default 1500)

Each stack is a worker process (vupy/lib/vupy-lwip, from csrc/lwip_worker.c):
lwIP keeps global state, so one stack per process.  The worker ends with the
stack, and with vupy: when its control socket closes, it delivers what
programs wrote and FIN, then exits (within VW_DRAIN_SECONDS).  Programs get
proxy descriptors (see "Proxy stacks" in vupy/stack.py).  With ip=dhcp or
ip6=auto the worker is ready once the network has given those addresses
(VW_ADDRESS_SECONDS at most, else the stack fails to start); its DHCP client
renews the lease for as long as the stack lives.

LwipStack serves each proxy through one of three parts, found by its sock:
Worker, the channel to the worker process (csrc/lwip_worker.h is the
protocol, whose structs and numbers reach Python through vupy._native), for
the inet sockets, NetlinkRoute for the NETLINK_ROUTE ones, answered in vupy
from the worker's list of interfaces (the changes they ask for, ip addr, ip
link, ip route, are made by the worker: Worker.configure), and NetlinkDiag
for the NETLINK_SOCK_DIAG ones (ss), answered from the worker's list of
sockets.
"""
import errno
import functools
import ipaddress
import os
import random
import select
import socket
import struct
import sys
import threading

import vupy
from vupy import rtnetlink, sockdiag
from vupy._native import ffi, lib     # csrc/lwip_worker.h: the worker's requests and replies
from vupy.helpers import end_helper, start_helper
from vupy.stack import ProxyStack, StackError, StackModule

from ._options import Options, need_source

WORKER = os.path.join(os.path.dirname(vupy.__file__), "lib", "vupy-lwip")
# For the worker to open its link and get what ip=dhcp, ip6=auto ask of the
# network, which it bounds itself (VW_ADDRESS_SECONDS, csrc/lwip_worker.h).
READY_SECONDS = lib.VW_ADDRESS_SECONDS + 10
REPLY_SECONDS = 5       # for any answer: a worker that takes longer is broken
CLOSE_SECONDS = lib.VW_DRAIN_SECONDS + 2   # for a closed worker to drain and exit, before SIGKILL

REPLY_SIZE = ffi.sizeof("struct vw_rep")
MAX_MESSAGE = REPLY_SIZE + lib.VW_MAX_PAYLOAD

OPTIONS = {"ip", "gw", "ip6", "mac", "mtu"}
NETLINK_ROUTE = 0
CAP_NET_RAW = 13              # linux/capability.h: raw sockets
MAX_IPV4 = 8                  # csrc/lwip_worker.c: the interface and MAX_ALIASES
MAX_IPV6 = 5                  # LWIP_IPV6_NUM_ADDRESSES (6, Debian's lwipopts.h), less the link-local one
NETLINK_BUFFER = 212992       # what a netlink socket reports for SO_RCVBUF, SO_SNDBUF


def _random_mac():
    octets = [random.randrange(256) for _ in range(6)]
    octets[0] = (octets[0] & 0xFC) | 0x02       # unicast, locally administered
    return ":".join(f"{o:02x}" for o in octets)


def worker_arguments(url, options):
    """The worker's command line for `options`; StackError naming a bad one."""
    checked = Options("lwip", options, OPTIONS)
    need_source("lwip", url, "tap://tap0")
    dhcp = checked.from_network("ip", "dhcp", alone=True)
    if dhcp and "gw" in checked:
        raise StackError("lwip: gw= with ip=dhcp: the default gateway is the router DHCP gives")
    auto6 = checked.from_network("ip6", "auto", alone=False)
    ip = checked.interfaces("ip", 4, most=MAX_IPV4)
    gw = checked.address("gw", 4)
    # ip6=auto keeps a place free for the router advertisement's address.
    ip6 = checked.interfaces("ip6", 6, most=MAX_IPV6 - auto6, length=64)
    mtu = checked.mtu(576) or 1500
    return [url, checked.mac() or _random_mac(), str(mtu),
            "dhcp" if dhcp else ",".join(map(str, ip)) or "-", str(gw or "-")] + \
        ["auto"] * auto6 + [str(i.ip) for i in ip6]


def parse_links(text):
    """The worker's VW_INFO text (csrc/lwip_worker.c, info()) as rtnetlink Links."""
    links = {}

    def route(index, network, gateway):
        # Once each: aliases on one subnet, or a prefix both an address's
        # and one neighbour discovery has, are one route.  A link that is
        # down has none, as a kernel's.
        if links[index].up and (network, gateway) not in links[index].routes:
            links[index].routes.append((network, gateway))

    for line in text.splitlines():
        kind, *words = line.split()
        if kind == "link":
            name, index, mtu, mac, state, *loopback = words
            links[int(index)] = rtnetlink.Link(name, int(index), int(mtu),
                                               bytes.fromhex(mac.replace(":", "")), state == "up",
                                               loopback=loopback == ["loopback"])
        elif kind == "addr":
            index, _family, address, length = words
            iface = ipaddress.ip_interface(f"{address}/{length}")
            links[int(index)].addresses.append(iface)
            if iface.version == 6 and not iface.ip.is_link_local and length == "64":   # on-link, as lwIP takes it
                route(int(index), iface.network, None)
        elif kind == "lifetime":    # of an address the network gave: seconds left
            index, address, valid, preferred = words
            link = links[int(index)]
            iface = next(a for a in link.addresses if a.ip == ipaddress.ip_address(address))
            link.lifetimes[iface] = (int(valid), int(preferred))
        elif kind == "route":
            index, _family, destination, length, gateway = words
            route(int(index), ipaddress.ip_network(f"{destination}/{length}"),
                  None if gateway == "-" else ipaddress.ip_address(gateway))
    return list(links.values())


def parse_sockets(text, owners):
    """The worker's VW_SOCKETS text (csrc/lwip_worker.c, list_sockets()) as
    sockdiag Sockets; `owners` maps a proxy's inode to its owner's uid."""
    sockets = []
    for line in text.splitlines():
        inode, protocol, state, family, local, lport, remote, rport = line.split()
        sockets.append(sockdiag.Socket(int(inode), int(protocol), int(state), int(family),
                                       ipaddress.ip_address(local), int(lport),
                                       ipaddress.ip_address(remote), int(rport), owners.get(int(inode), 0)))
    return sockets


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
    """A proxy stack of three parts: its worker, which serves the inet
    sockets, and its NETLINK_ROUTE and NETLINK_SOCK_DIAG sockets, answered in
    vupy.  Each sock is looked up once, in `handlers`, for the part that
    serves it."""

    families = LwipModule.families

    def __init__(self, arguments):
        self.handlers = {}          # sock -> its Worker, NetlinkRoute or NetlinkDiag, for the socks programs hold
        self.owners = {}            # inet sock -> the uid of its maker, which ss shows
        self.gone = set()           # socks whose last descriptor is closed, not yet told
        self.netlink = self.diag = None
        self.worker = Worker(arguments, on_lost=self._end)
        self.netlink = NetlinkRoute(self.links, self.worker.configure)
        self.diag = NetlinkDiag(self.sockets)

    def _handler(self, sock):
        # A sock not (or no longer) held goes to the worker, which answers
        # EBADF, or ENETDOWN once it is gone.
        return self.handlers.get(sock, self.worker)

    def _end(self):
        """The stack is closed, or its worker lost: netlink too is gone, and
        every sock goes to the worker, which fails it with ENETDOWN."""
        self.handlers.clear()
        for part in (self.netlink, self.diag):
            if part is not None:
                part.close()

    # ProxyStack ---------------------------------------------------------------

    def socket(self, domain, type, protocol, creds):
        if domain == socket.AF_NETLINK:
            handler = self.diag if protocol == sockdiag.NETLINK_SOCK_DIAG else self.netlink
        else:
            handler = self.worker
            # As the kernel: raw sockets need CAP_NET_RAW; ping sockets
            # anyone may make (docs/lwip.md, "What it serves").
            if type & 0xF == socket.SOCK_RAW and not creds.cap_effective >> CAP_NET_RAW & 1:
                raise OSError(errno.EPERM, os.strerror(errno.EPERM))
        sock, fd = handler.socket(domain, type & 0xF, protocol)
        self.handlers[sock] = handler
        if handler is self.worker:
            self.owners[sock] = creds.fsuid
        if type & socket.SOCK_NONBLOCK:
            os.set_blocking(fd, False)
        return fd

    def bind(self, sock, address):
        self._handler(sock).bind(sock, address)

    def connect(self, sock, address):
        self._handler(sock).connect(sock, address)

    def listen(self, sock, backlog):
        self._handler(sock).listen(sock, backlog)

    def accept(self, sock):
        handler = self._handler(sock)
        new, fd, address = handler.accept(sock)
        self.handlers[new] = handler
        if sock in self.owners:
            self.owners[new] = self.owners[sock]
        return fd, address

    def getsockname(self, sock):
        return self._handler(sock).getsockname(sock)

    def getpeername(self, sock):
        return self._handler(sock).getpeername(sock)

    def getsockopt(self, sock, level, name, size):
        return self._handler(sock).getsockopt(sock, level, name, size)

    def setsockopt(self, sock, level, name, value):
        self._handler(sock).setsockopt(sock, level, name, value)

    def sendto(self, sock, data, flags, address):
        return self._handler(sock).sendto(sock, data, flags, address)

    def links(self):
        # Asked afresh each time: the stack's addresses change as it runs.
        return parse_links(self.worker.info())

    def sockets(self):
        return parse_sockets(self.worker.sockets(), self.owners)

    def _take_closed(self):
        for part in (self.worker, self.netlink, self.diag):
            for sock in part.closed():
                self.gone.add(sock)
                self.handlers.pop(sock, None)
                self.owners.pop(sock, None)

    def closed(self):
        self._take_closed()
        gone, self.gone = self.gone, set()
        return gone

    def open_sockets(self):
        self._take_closed()
        return len(self.handlers)

    def close(self):
        self._end()
        self.worker.close()


class Worker:
    """One stack's worker process and its control socket: a request and its
    reply for each operation on the worker's socks, and the events the worker
    sends on its own (csrc/lwip_worker.h, whose structs and VW_ numbers
    vupy._native has).  A worker that exits or stops answering is lost: it
    is ended, `on_lost()` is called, and every request fails with ENETDOWN."""

    def __init__(self, arguments, on_lost):
        self.url = arguments[0]
        self.on_lost = on_lost
        self.ctl, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        self.seq = 0
        # The supervisor's thread and the netlink responder's both make requests.
        self.lock = threading.Lock()
        # One struct vw_req, filled in for each request: cheaper than a new one.
        self.request = ffi.new("struct vw_req *")
        self.request_bytes = ffi.buffer(self.request)
        self.gone = set()           # socks the worker said are closed, not yet taken
        try:
            self.process = start_helper([WORKER, str(theirs.fileno())] + arguments, pass_fds=[theirs.fileno()])
        finally:
            theirs.close()
        ready = self._next(READY_SECONDS)
        if ready is None or ready[0].seq != 0 or ready[0].event != lib.VW_READY:
            reason = "no answer" if ready is None else ready[1].decode(errors="replace")
            self.close()
            raise StackError(f"lwip:{self.url}: the stack did not start: {reason}")
        if ready[0].err:
            self.close()
            raise StackError(f"lwip:{self.url}: {ready[1].decode(errors='replace')}")

    # The channel --------------------------------------------------------------

    def _next(self, timeout):
        """(struct vw_rep, payload, fds) of the worker's next message, or None
        if the worker is gone or silent."""
        if self.ctl is None or not select.select([self.ctl], [], [], timeout)[0]:
            return None
        try:
            data, fds, _flags, _addr = socket.recv_fds(self.ctl, MAX_MESSAGE, 1)
        except OSError:
            return None
        if len(data) < REPLY_SIZE:
            return None
        rep = ffi.from_buffer("struct vw_rep *", data)
        return rep, data[REPLY_SIZE:REPLY_SIZE + rep.len], fds

    def _call(self, op, sock=0, a=0, b=0, c=0, payload=b""):
        """The worker's (value, payload, descriptor) for one request; OSError
        with its errno, or ENETDOWN if the worker is gone."""
        with self.lock:
            return self._exchange(op, sock, a, b, c, payload)

    def _exchange(self, op, sock, a, b, c, payload):
        if self.ctl is None:
            raise OSError(errno.ENETDOWN, "the lwIP stack is gone")
        self.seq = self.seq % 0xFFFFFFFF + 1
        r = self.request
        r.op, r.seq, r.id, r.a, r.b, r.c, r.len = op, self.seq, sock, a, b, c, len(payload)
        try:
            self.ctl.sendmsg([self.request_bytes, payload])
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

    def _event(self, rep):
        if rep.event == lib.VW_CLOSED:
            self.gone.add(rep.val)

    def _lost(self):
        status = self.process.poll()
        how = "has stopped answering" if status is None else f"exited with status {status}"
        sys.stderr.write(f"vupy: lwip:{self.url}: the stack's worker {how}: "
                         "its sockets fail from now on (ENETDOWN)\n")
        self.close()
        self.on_lost()
        raise OSError(errno.ENETDOWN, "the lwIP stack is gone")

    def closed(self):
        """The socks the worker has closed since the last call, from what it
        said on its own (read now, without waiting) or amid replies."""
        with self.lock:
            while (message := self._next(0)) is not None:
                if message[0].seq == 0:
                    self._event(message[0])
                for fd in message[2]:
                    os.close(fd)
            gone, self.gone = self.gone, set()
        return gone

    def close(self):
        if self.ctl is None:
            return
        # The worker drains when it sees this: it sends what programs wrote,
        # and FIN, then exits (within VW_DRAIN_SECONDS, csrc/lwip_worker.h).
        # It is waited for on a thread of its own, since this may run on the
        # supervisor's (a vuumount): a drain must not hold up the session's
        # calls.  The thread is no daemon, so vupy waits for it before exiting.
        self.ctl.close()
        self.ctl = None
        threading.Thread(target=end_helper, args=(self.process, CLOSE_SECONDS),
                         name=f"vupy-lwip-{self.process.pid}").start()

    # Its requests, as the ProxyStack operations on its socks -------------------

    def info(self):
        """Its interfaces, addresses and routes (text: parse_links)."""
        return self._call(lib.VW_INFO)[1].decode()

    def configure(self, change):
        """Make a change vupy.rtnetlink has decided on (an AddressChange,
        LinkChange or RouteChange); OSError if lwIP cannot."""
        if isinstance(change, rtnetlink.AddressChange):
            self._call(lib.VW_ADDR, change.index, int(change.add), change.address.network.prefixlen,
                       payload=change.address.ip.packed)
        elif isinstance(change, rtnetlink.LinkChange):
            self._call(lib.VW_LINK, change.index, -1 if change.up is None else int(change.up),
                       change.mtu or 0, payload=change.mac or b"")
        else:
            gateway = change.gateway.packed if change.gateway is not None else b""
            self._call(lib.VW_ROUTE, change.index, int(change.add), change.network.prefixlen,
                       payload=change.network.network_address.packed + gateway)

    def sockets(self):
        """Its TCP and UDP sockets (text: parse_sockets), asked page by page."""
        text, skip = "", 0
        while True:
            skip, page, _fd = self._call(lib.VW_SOCKETS, 0, skip)
            text += page.decode()
            if not skip:
                return text

    def socket(self, domain, type, protocol):
        sock, _data, fd = self._call(lib.VW_SOCKET, 0, domain, type, protocol)
        return sock, fd

    def bind(self, sock, address):
        self._call(lib.VW_BIND, sock, payload=address)

    def connect(self, sock, address):
        self._call(lib.VW_CONNECT, sock, payload=address)

    def listen(self, sock, backlog):
        self._call(lib.VW_LISTEN, sock, backlog)

    def accept(self, sock):
        new, address, fd = self._call(lib.VW_ACCEPT, sock)
        return new, fd, address

    def getsockname(self, sock):
        return self._call(lib.VW_GETSOCKNAME, sock)[1]

    def getpeername(self, sock):
        return self._call(lib.VW_GETPEERNAME, sock)[1]

    def getsockopt(self, sock, level, name, size):
        return self._call(lib.VW_GETSOCKOPT, sock, level, name, size)[1]

    def setsockopt(self, sock, level, name, value):
        self._call(lib.VW_SETSOCKOPT, sock, level, name, payload=value)

    def sendto(self, sock, data, flags, address):
        return self._call(lib.VW_SENDTO, sock, flags, len(address), payload=address + data)[0]


class NetlinkRoute:
    """A stack's NETLINK_ROUTE sockets, answered from its links and changing
    it with `configure` (vupy.rtnetlink.Responder): the ProxyStack
    operations on them."""

    protocol = NETLINK_ROUTE

    def __init__(self, links, configure):
        self.responder = rtnetlink.Responder(links, functools.partial(rtnetlink.answer, configure=configure))

    def socket(self, _domain, type, protocol):
        if self.responder is None:
            raise OSError(errno.ENETDOWN, "the lwIP stack is gone")
        if protocol != self.protocol:
            raise OSError(errno.EPROTONOSUPPORT, "lwip serves NETLINK_ROUTE and NETLINK_SOCK_DIAG only")
        if type not in (socket.SOCK_RAW, socket.SOCK_DGRAM):
            raise OSError(errno.ESOCKTNOSUPPORT, os.strerror(errno.ESOCKTNOSUPPORT))
        fd = self.responder.socket()
        return os.fstat(fd).st_ino, fd

    def bind(self, sock, address):
        _check_address(address)
        self.responder.port(sock)       # bound: it has its port id now

    def connect(self, _sock, address):
        _check_address(address)

    def listen(self, _sock, _backlog):
        raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))

    def accept(self, _sock):
        raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))

    def getsockname(self, sock):
        return rtnetlink.SOCKADDR_NL.pack(socket.AF_NETLINK, 0, self.responder.port(sock), 0)

    def getpeername(self, _sock):
        return rtnetlink.KERNEL

    def getsockopt(self, _sock, _level, name, _size):
        return struct.pack("=i", NETLINK_BUFFER if name in (socket.SO_RCVBUF, socket.SO_SNDBUF) else 0)

    def setsockopt(self, _sock, _level, _name, _value):
        pass                        # buffer sizes, strict checking, ...: nothing to change

    def sendto(self, sock, data, _flags, address):
        if address:
            _check_address(address)
        return self.responder.request(sock, data)

    def closed(self):
        return set() if self.responder is None else self.responder.closed()

    def close(self):
        if self.responder is not None:
            self.responder.close()
            self.responder = None


class NetlinkDiag(NetlinkRoute):
    """A stack's NETLINK_SOCK_DIAG sockets, answered from its list of
    sockets (vupy.sockdiag): what ss asks."""

    protocol = sockdiag.NETLINK_SOCK_DIAG

    def __init__(self, sockets):
        self.responder = rtnetlink.Responder(sockets, sockdiag.answer)


def _check_address(address):
    """EINVAL unless `address` is a sockaddr_nl."""
    if len(address) < rtnetlink.SOCKADDR_NL.size or \
            rtnetlink.SOCKADDR_NL.unpack_from(address)[0] != socket.AF_NETLINK:
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
