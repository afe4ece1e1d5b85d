# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""Serving the socket calls made on proxy descriptors.

A userspace stack hands programs proxies (see ProxyStack in stack.py):
AF_UNIX socketpair ends on which read, write, send and recv without an
address, poll, select, epoll, shutdown and close work natively.  The other
socket calls on them are trapped by rules that a session adds to its
filter only when it has userspace stacks (the PROXY rows of the table of
trapped calls, csrc/supervisor.c), so that programs of kernel-only
sessions pay nothing.  Those rules cannot tell a proxy from any other
descriptor, so a call on anything but a proxy goes on (CONTINUE) at the
cost of one round trip.

A call that waits (a blocking connect, accept or recvfrom) is *parked*:
vupy keeps a copy of the program's proxy (pidfd_getfd), waits for it to
become readable or writable in its own poll loop, and answers then.  The
filter waits killably once a call is received, so `expire` lets a caught
signal interrupt a parked call as it would a real socket's wait (EINTR, or
a restart under SA_RESTART), and a parked entry is dropped when its
notification is no longer valid.  A parked call also ends as a kernel
socket's wait does when the proxy's SO_RCVTIMEO (a wait to read) or
SO_SNDTIMEO (to write) runs out: EAGAIN, or EINPROGRESS for a connect
(ping waits for replies this way).

Calls on proxies held by i386 or x32 code are not trapped, so such callers
are refused userspace sockets (EAFNOSUPPORT) when they ask for one (the
dispatcher's rule, vupy/_dispatch.py).

The layers, from the bottom: vupy/_wire.py reads the caller's memory and
names the kernel structures in it; the handlers below (`HANDLERS`, one per
call) are functions from a decoded `ProxyCall` and its `Proxy` to one
outcome of vupy/_reply.py (Answer with the memory writes it carries, Fail,
Continue, Inject, Park), which need no seccomp listener and are unit-tested
with a fake memory and stack (tests/test_unit_proxy.py); `ProxyServer`
keeps the registry of proxies and the parked calls, carries outcomes out
(vupy/_reply.send) and traces each of them once.
"""
import errno
import os
import select
import signal
import socket
import stat
import struct
import time

from . import _dispatch as dispatch
from . import _reply as reply
from . import rtnetlink
from ._dispatch import c_int
from ._native import lib
from ._procs import status
from ._reply import CONTINUE, Answer, Fail, Inject, Park
from ._wire import (IFREQ, INT, IOV_MAX, MSGHDR, SOCKADDR_MAX, SOCKLEN, CallerMemory, address_writes, call_error,
                    iovecs, read_address)
from .stack import ProxyStack

ERESTARTSYS = 512               # the kernel's own: restart, or EINTR if a handler says so
NR_TGKILL = 234
INTERFACE_IOCTLS = (lib.SIOCGIFINDEX, lib.SIOCGIFNAME, lib.SIOCGIFFLAGS, lib.SIOCGIFMTU, lib.SIOCGIFHWADDR,
                    lib.SIOCGIFADDR, lib.SIOCGIFNETMASK)
SO_RCVTIMEO = (20, 66)          # _OLD and _NEW (asm-generic/socket.h)
SO_SNDTIMEO = (21, 67)
TIMEVAL = struct.Struct("=qq")  # struct timeval, as SO_RCVTIMEO_OLD gives it on x86-64
OPTVAL_MAX = 256
SOCKADDR_SIZES = {socket.AF_INET: 16, socket.AF_INET6: 28}   # sockaddr_in, sockaddr_in6
CONTROL_MAX = 128               # ancillary data a stack sends after a datagram's address
DATAGRAM_MAX = 65535
STREAM_CHUNK = 1 << 20          # bytes moved per sendmsg/recvmsg served on a stream proxy
ACCEPT4_FLAGS = socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
RECV_FLAGS = socket.MSG_PEEK | socket.MSG_TRUNC | socket.MSG_WAITALL
# A datagram whose source address is this (AF_UNSPEC, then an errno) stands
# for an error the stack reports on the socket, as a kernel reports an ICMP
# error: the receive that meets it fails with it (vupy/stack.py, 7.).
DATAGRAM_ERROR = struct.Struct("=H2xi")
MMSGHDR_SIZE = MSGHDR.size + 8  # struct mmsghdr: a msghdr, its msg_len, padding


class Proxy:
    """A proxy descriptor the registry knows: its socket on `stack` (by the
    inode of the program's end, `sock`) and what SO_DOMAIN, SO_TYPE and
    SO_PROTOCOL answer."""
    __slots__ = ("registry", "sock", "stack", "family", "type", "protocol")

    def __init__(self, registry, sock, stack, family, type, protocol):
        self.registry, self.sock, self.stack = registry, sock, stack
        self.family, self.type, self.protocol = family, type, protocol

    @property
    def stream(self):
        return self.type == socket.SOCK_STREAM


class ProxyRegistry:
    """The proxies handed out, by the inode of the program's end."""

    def __init__(self):
        self.proxies = {}

    def register(self, fd, stack, family, type, protocol):
        for gone in stack.closed():
            self.proxies.pop(gone, None)
        type &= 0xF
        if not protocol and family in (socket.AF_INET, socket.AF_INET6):
            # What the kernel answers for SO_PROTOCOL: the protocol chosen.
            protocol = socket.IPPROTO_TCP if type == socket.SOCK_STREAM else socket.IPPROTO_UDP
        sock = os.fstat(fd).st_ino
        self.proxies[sock] = Proxy(self, sock, stack, family, type, protocol)

    def current(self, proxy):
        """`proxy`, unless its stack closed it since (its inode may be reused)."""
        for gone in proxy.stack.closed():
            self.proxies.pop(gone, None)
        return self.proxies.get(proxy.sock)


class ProxyCall:
    """A trapped call on a descriptor, decoded: what its handler and, once
    parked, its resumption need of the notification.  `address`: a connect's
    destination as the router read and checked it (vupy/_router.py), which
    the handler then uses instead of reading it again."""
    __slots__ = ("id", "pid", "tgid", "name", "fd", "args", "memory", "address")

    def __init__(self, id, pid, tgid, name, args, address=None):
        self.id, self.pid, self.tgid, self.name = id, pid, tgid, name
        self.fd, self.args = c_int(args[0]), tuple(args)
        self.memory = CallerMemory(pid, tgid)
        self.address = address


def _pending_signals(tid):
    """Whether thread `tid` has a signal to handle (None if it is gone)."""
    fields = status(tid, b"SigPnd", b"ShdPnd", b"SigBlk", b"SigIgn")
    if fields is None:
        return None
    mask = {key: int(value, 16) for key, value in fields.items()}
    waiting = mask.get(b"SigPnd", 0) | mask.get(b"ShdPnd", 0)
    return bool(waiting & ~mask.get(b"SigBlk", 0) & ~mask.get(b"SigIgn", 0))


class ProxyServer:
    """Registration, parking and expiry of proxy calls, and carrying out
    (and tracing) their outcomes."""

    def __init__(self, listener, table, trace=None):
        self.listener = listener
        self.table = table
        self.trace = trace
        self.registry = ProxyRegistry()
        self.parked = {}         # our copy of the proxy -> (ProxyCall, Park)
        self.deadlines = {}      # our copy of the proxy -> when its call times out

    def register(self, fd, stack, family, type, protocol):
        self.registry.register(fd, stack, family, type, protocol)

    # The loop's side ---------------------------------------------------------

    def handle(self, raw, name, address=None):
        """Serve one trapped call (`name`, from the table of trapped calls):
        a call on anything but a proxy goes on at once (CONTINUE), with as
        little work as possible on the way.  `address`: see ProxyCall."""
        fd = c_int(raw.args[0])
        try:
            st = os.stat(f"/proc/{raw.pid}/fd/{fd}")
        except OSError:
            return reply.send(self.listener, raw.id, CONTINUE)   # the kernel says EBADF
        proxy = self.registry.proxies.get(st.st_ino) if stat.S_ISSOCK(st.st_mode) else None
        interface = name == "ioctl" and raw.args[1] & 0xFFFFFFFF in INTERFACE_IOCTLS
        if proxy is None and not interface:
            if self.trace is not None:
                self.trace(f"pid {raw.pid}: {name}(fd {fd}) -> native")
            return reply.send(self.listener, raw.id, CONTINUE)
        known = self.table.lookup(raw.pid)
        call = ProxyCall(raw.id, raw.pid, known[0] if known else raw.pid, name, raw.args, address)
        if proxy is not None:
            proxy = self.registry.current(proxy)
        self.carry_out(call, proxy, attempt(lambda: self._decide(call, proxy, interface)))

    def _decide(self, call, proxy, interface):
        if interface:
            stack = proxy.stack if proxy is not None else None
            if stack is None:
                known = self.table.lookup(call.pid)
                stack = dispatch.default_stack(socket.AF_INET, known[1]) if known else None
            return interface_ioctl(call, stack)
        if proxy is None:
            return CONTINUE
        return HANDLERS[call.name](call, proxy)

    def carry_out(self, call, proxy, outcome):
        if type(outcome) is Park:
            self.parked[outcome.fd] = (call, proxy, outcome)
            timeout = _timeout(outcome)
            if timeout:
                self.deadlines[outcome.fd] = time.monotonic() + timeout
        else:
            outcome = reply.send(self.listener, call.id, outcome, call.memory)
        if self.trace is not None:
            where = f", proxy {proxy.sock}" if proxy is not None else ""
            self.trace(f"pid {call.pid}: {call.name}(fd {call.fd}{where}) -> {reply.describe(outcome)}")

    def watched(self):
        """{descriptor: poll events} of the parked calls."""
        return {fd: park.events for fd, (_call, _proxy, park) in self.parked.items()}

    def wake(self, fd):
        """A parked call's proxy is ready: try the call again."""
        call, proxy, park = self.parked.pop(fd)
        self.deadlines.pop(fd, None)
        try:
            if lib.vupy_notif_id_valid(self.listener, call.id) < 0:
                return                              # interrupted, or the caller is gone
            self.carry_out(call, proxy, attempt(lambda: park.resume(fd)))
        finally:
            os.close(fd)

    def expire(self):
        """Let signals reach the callers of parked calls, and time out those
        whose proxy's timeout has run out.

        The filter waits killably once a call is received, so a caught signal
        cannot interrupt a parked call by itself.  When a caller has one
        pending, its call is answered ERESTARTSYS: the kernel then runs the
        handler and restarts the call (SA_RESTART) or returns EINTR, exactly
        as for a real socket's wait, and restarts it if the signal went to
        another thread.  Calls whose caller died are dropped."""
        now = time.monotonic()
        for fd, (call, proxy, park) in list(self.parked.items()):
            pending = _pending_signals(call.pid)
            timed_out = now >= self.deadlines.get(fd, now + 1)
            if pending is None or pending or timed_out:
                del self.parked[fd]
                self.deadlines.pop(fd, None)
                try:
                    if pending:
                        self.carry_out(call, proxy, Fail(ERESTARTSYS))
                    elif timed_out:
                        if park.timed_out is not None:
                            park.timed_out(fd)
                        self.carry_out(call, proxy, Fail(errno.EINPROGRESS if call.name == "connect"
                                                         else errno.EAGAIN))
                finally:
                    os.close(fd)

    def close(self):
        for fd in self.parked:
            os.close(fd)
        self.parked.clear()
        self.deadlines.clear()


def attempt(handler):
    """The outcome of `handler()`; an OSError raised on the way (a fault
    in the caller's memory, the stack's refusal) is the call's errno."""
    try:
        return handler()
    except OSError as e:
        return Fail(e.errno)


def _timeout(park):
    """Seconds a parked call may wait: its proxy's SO_RCVTIMEO or
    SO_SNDTIMEO, by what it waits for (0: for ever)."""
    name = SO_RCVTIMEO[0] if park.events & select.POLLIN else SO_SNDTIMEO[0]
    with socket.socket(fileno=os.dup(park.fd)) as s:
        seconds, microseconds = TIMEVAL.unpack(s.getsockopt(socket.SOL_SOCKET, name, TIMEVAL.size))
    return seconds + microseconds / 1e6


def _copy(call):
    return call.memory.copy_fd(call.fd)


def _wait(fd, events, resume, nonblocking):
    """A call that would wait on our copy `fd` of its proxy: EAGAIN if the
    caller does not wait, else parked until `events`."""
    if nonblocking or not os.get_blocking(fd):
        os.close(fd)
        raise call_error(errno.EAGAIN)
    return Park(fd, events, resume)


# The calls: each a function of the decoded call and its proxy -----------------

def bind(call, proxy):
    proxy.stack.bind(proxy.sock, read_address(call.memory, call.args[1], call.args[2]))
    return Answer()


def connect(call, proxy):
    address = call.address
    if address is None:
        address = read_address(call.memory, call.args[1], call.args[2])
    try:
        proxy.stack.connect(proxy.sock, address)
    except OSError as e:
        if e.errno != errno.EINPROGRESS or not proxy.stream:
            raise
        fd = _copy(call)
        if not os.get_blocking(fd):
            os.close(fd)
            raise
        return Park(fd, select.POLLOUT, lambda fd: connected(proxy, fd))
    return Answer()


def connected(proxy, fd):
    """A parked connect's outcome, its proxy `fd` writable.  A failed connect
    shows end of file on the proxy before it turns writable (ProxyStack.connect),
    so only then is the stack asked for SO_ERROR: a connect that succeeds
    costs no request."""
    poller = select.poll()
    poller.register(fd, select.POLLOUT | select.POLLRDHUP)
    if not any(events & (select.POLLRDHUP | select.POLLHUP | select.POLLERR) for _, events in poller.poll(0)):
        return Answer()
    err = INT.unpack(proxy.stack.getsockopt(proxy.sock, socket.SOL_SOCKET, socket.SO_ERROR, INT.size)).value
    return Fail(err) if err else Answer()


def listen(call, proxy):
    proxy.stack.listen(proxy.sock, c_int(call.args[1]))
    return Answer()


def accept(call, proxy, flags=0):
    if flags & ~ACCEPT4_FLAGS:
        raise call_error(errno.EINVAL)
    fd = _copy(call)
    try:
        return _take_connection(call, proxy, fd, flags)
    finally:
        os.close(fd)     # a parked call keeps a copy of its own


def accept4(call, proxy):
    return accept(call, proxy, c_int(call.args[3]))


def _take_connection(call, proxy, listening, flags):
    try:
        new, peer = proxy.stack.accept(proxy.sock)
    except OSError as e:
        if e.errno != errno.EAGAIN:
            raise
        return _wait(os.dup(listening), select.POLLIN,
                     lambda fd: _take_connection(call, proxy, fd, flags), False)
    try:
        with socket.socket(fileno=os.dup(listening)) as s:
            try:    # the byte that made the listening proxy readable
                s.recv(1, socket.MSG_DONTWAIT)
            except BlockingIOError:
                pass
        writes = address_writes(call.memory, call.args[1], call.args[2], peer)
        proxy.registry.register(new, proxy.stack, proxy.family, proxy.type, proxy.protocol)
        if flags & socket.SOCK_NONBLOCK:
            os.set_blocking(new, False)
    except BaseException:
        os.close(new)
        raise
    return Inject(new, bool(flags & socket.SOCK_CLOEXEC), writes)


def getsockname(call, proxy):
    return Answer(0, address_writes(call.memory, call.args[1], call.args[2],
                                    proxy.stack.getsockname(proxy.sock)))


def getpeername(call, proxy):
    return Answer(0, address_writes(call.memory, call.args[1], call.args[2],
                                    proxy.stack.getpeername(proxy.sock)))


def getsockopt(call, proxy):
    level, name = c_int(call.args[1]), c_int(call.args[2])
    value_at, size_at = call.args[3], call.args[4]
    if level == socket.SOL_SOCKET and name in SO_RCVTIMEO + SO_SNDTIMEO:
        return CONTINUE     # the proxy's own: it is what waits
    size = call.memory.read_int(size_at)
    if size < 0:
        raise call_error(errno.EINVAL)
    own = {socket.SO_DOMAIN: proxy.family, socket.SO_TYPE: proxy.type, socket.SO_PROTOCOL: proxy.protocol}
    if level == socket.SOL_SOCKET and name in own:
        value = INT.pack(own[name])
    else:
        value = proxy.stack.getsockopt(proxy.sock, level, name, min(size, OPTVAL_MAX))
    return Answer(0, ((value_at, value[:size]), (size_at, SOCKLEN.pack(min(size, len(value))))))


def setsockopt(call, proxy):
    level, name = c_int(call.args[1]), c_int(call.args[2])
    if level == socket.SOL_SOCKET and name in SO_RCVTIMEO + SO_SNDTIMEO:
        return CONTINUE
    size = c_int(call.args[4])
    if not 0 <= size <= OPTVAL_MAX:
        raise call_error(errno.EINVAL)
    proxy.stack.setsockopt(proxy.sock, level, name, call.memory.read(call.args[3], size))
    return Answer()


def ioctl(call, proxy):
    """FIONREAD (the interface ioctls are `interface_ioctl`'s)."""
    if proxy.stream:
        return CONTINUE     # bytes waiting: the proxy's count is right
    with socket.socket(fileno=_copy(call)) as s:
        try:
            n = s.recv_into(bytearray(1), 1, socket.MSG_PEEK | socket.MSG_TRUNC | socket.MSG_DONTWAIT)
        except BlockingIOError:
            n = 0
    return Answer(0, ((call.args[2], INT.pack(n)),))


def interface_ioctl(call, stack):
    """if_nametoindex and if_indextoname (glibc asks any socket, mostly an
    AF_UNIX one), and what else a program reads of an interface by its name
    (SIOCGIFFLAGS, ...), answered from the interfaces of the caller's
    userspace stack: the proxy's, or its default for AF_INET."""
    if not isinstance(stack, ProxyStack):
        return CONTINUE       # a kernel stack's own answer
    request = call.args[1] & 0xFFFFFFFF
    ifreq = IFREQ.unpack(call.memory.read(call.args[2], IFREQ.size))
    name = ifreq.ifr_name.split(b"\0", 1)[0].decode(errors="replace")
    for link in stack.links():
        if request == lib.SIOCGIFNAME and link.index == ifreq.ifr_ifindex:
            return Answer(0, ((call.args[2], IFREQ.pack(link.name.encode(), link.index)),))
        if request != lib.SIOCGIFNAME and link.name == name:
            return Answer(0, ((call.args[2] + IFREQ.offset["ifr_ifindex"], _interface_field(request, link)),))
    raise call_error(errno.ENODEV)


def _interface_field(request, link):
    """What ioctl `request` reads of `link`: the union of its struct ifreq."""
    if request == lib.SIOCGIFINDEX:
        return INT.pack(link.index)
    if request == lib.SIOCGIFFLAGS:
        return struct.pack("=H", rtnetlink.link_flags(link) & 0xFFFF)
    if request == lib.SIOCGIFMTU:
        return INT.pack(link.mtu)
    if request == lib.SIOCGIFHWADDR:
        return struct.pack("=H6s", *rtnetlink.link_hardware(link))
    ipv4 = [a for a in link.addresses if a.version == 4]
    if not ipv4:
        raise call_error(errno.EADDRNOTAVAIL)     # as the kernel's, for a link with none
    address = ipv4[0].ip if request == lib.SIOCGIFADDR else ipv4[0].network.netmask
    return struct.pack("=H2x4s8x", socket.AF_INET, address.packed)


# Sending and receiving with addresses ----------------------------------------

def _send_limit(proxy):
    return STREAM_CHUNK if proxy.stream else DATAGRAM_MAX + 1


def sendto(call, proxy):
    data = call.memory.read(call.args[1], min(call.args[2], _send_limit(proxy)))
    address = read_address(call.memory, call.args[4], call.args[5])
    return _send(call, proxy, data, c_int(call.args[3]), address)


def sendmsg(call, proxy):
    return _sendmsg_at(call, proxy, call.args[1], c_int(call.args[2]))


def _sendmsg_at(call, proxy, at, flags):
    msg = MSGHDR.unpack(call.memory.read(at, MSGHDR.size))
    address = read_address(call.memory, msg.msg_name, msg.msg_namelen) if msg.msg_name else b""
    data = b"".join(call.memory.read(base, length) for base, length in
                    iovecs(call.memory, msg.msg_iov, msg.msg_iovlen, _send_limit(proxy)))
    return _send(call, proxy, data, flags, address)


def _send(call, proxy, data, flags, address):
    if not proxy.stream:
        if len(data) > DATAGRAM_MAX:
            raise call_error(errno.EMSGSIZE)
        return Answer(proxy.stack.sendto(proxy.sock, data, flags, address))
    # A stream socket ignores the address: the data goes down the proxy.
    fd = _copy(call)
    try:
        return _write_stream(call, fd, data, flags)
    finally:
        os.close(fd)     # a parked call keeps a copy of its own


def _write_stream(call, fd, data, flags):
    with socket.socket(fileno=os.dup(fd)) as s:
        try:
            n = s.send(data, (flags & socket.MSG_NOSIGNAL) | socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL)
        except BlockingIOError:
            return _wait(os.dup(fd), select.POLLOUT, lambda fd: _write_stream(call, fd, data, flags),
                         flags & socket.MSG_DONTWAIT)
        except BrokenPipeError:
            if not flags & socket.MSG_NOSIGNAL:
                lib.vupy_syscall4(NR_TGKILL, call.tgid, call.pid, signal.SIGPIPE, 0)
            raise call_error(errno.EPIPE) from None
    return Answer(n)


def recvfrom(call, proxy):
    return _receive(call, proxy, [(call.args[1], call.args[2])], c_int(call.args[3]),
                    call.args[4], call.args[5], None)


def recvmsg(call, proxy):
    return _recvmsg_at(call, proxy, call.args[1], c_int(call.args[2]))


def _recvmsg_at(call, proxy, at, flags):
    msg = MSGHDR.unpack(call.memory.read(at, MSGHDR.size))
    return _receive(call, proxy, iovecs(call.memory, msg.msg_iov, msg.msg_iovlen, STREAM_CHUNK * 64),
                    flags, msg.msg_name, at + MSGHDR.offset["msg_namelen"],
                    (at, msg.msg_control, msg.msg_controllen))


def _receive(call, proxy, vectors, flags, name, namelen_at, msg):
    if flags & socket.MSG_ERRQUEUE:
        # No stack queues errors on a proxy: the queue is empty, as a
        # kernel socket's is when nothing failed.
        raise call_error(errno.EAGAIN)
    fd = _copy(call)
    try:
        return _read_proxy(call, proxy, fd, vectors, flags, name, namelen_at, msg)
    finally:
        os.close(fd)     # a parked call keeps a copy of its own


def _read_proxy(call, proxy, fd, vectors, flags, name, namelen_at, msg):
    room = sum(length for _base, length in vectors)
    size = DATAGRAM_MAX if not proxy.stream else max(1, min(room, STREAM_CHUNK))
    with socket.socket(fileno=os.dup(fd)) as s:
        try:
            data, ancillary, _mflags, _ = s.recvmsg(size, socket.CMSG_SPACE(INT.size),
                                                    (flags & RECV_FLAGS & ~socket.MSG_WAITALL)
                                                    | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return _wait(os.dup(fd), select.POLLIN,
                         lambda fd: _read_proxy(call, proxy, fd, vectors, flags, name, namelen_at, msg),
                         flags & socket.MSG_DONTWAIT)
    # The stack sends a datagram's source address as a descriptor to read;
    # after an inet address may come ancillary data for recvmsg (cmsgs).
    address = b""
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            for afd in struct.unpack(f"={len(payload) // INT.size}i", payload):
                if not address:
                    address = os.pread(afd, SOCKADDR_MAX + CONTROL_MAX, 0)
                os.close(afd)
    if len(address) == DATAGRAM_ERROR.size and DATAGRAM_ERROR.unpack(address)[0] == socket.AF_UNSPEC:
        if flags & socket.MSG_PEEK:     # a kernel's error is taken by a peek too
            with socket.socket(fileno=os.dup(fd)) as s:
                s.recv(1, socket.MSG_DONTWAIT)
        return Fail(DATAGRAM_ERROR.unpack(address)[1])
    size = SOCKADDR_SIZES.get(int.from_bytes(address[:2], "little"), len(address))
    address, control = address[:size], address[size:]
    writes = []
    offset = 0
    for base, length in vectors:
        piece = data[offset:offset + length]
        writes.append((base, piece))
        offset += len(piece)
    truncated = len(data) > room
    if name:
        writes += address_writes(call.memory, name, namelen_at, address)
    elif namelen_at:
        writes.append((namelen_at, SOCKLEN.pack(0)))
    if msg:
        at, control_at, control_room = msg
        delivered = control if control_at and len(control) <= control_room else b""
        if delivered:
            writes.append((control_at, delivered))
        writes.append(MSGHDR.put(at, "msg_controllen", len(delivered)))
        writes.append(MSGHDR.put(at, "msg_flags", (socket.MSG_TRUNC if truncated and not proxy.stream else 0)
                                 | (socket.MSG_CTRUNC if len(delivered) < len(control) else 0)))
    n = len(data) if (flags & socket.MSG_TRUNC and not proxy.stream) else min(len(data), room)
    return Answer(n, tuple(writes))


# Several messages a call ---------------------------------------------------

def sendmmsg(call, proxy):
    flags = c_int(call.args[3])
    return _messages(call, lambda at, more: _sendmsg_at(call, proxy, at, flags | more))


def recvmmsg(call, proxy):
    """As with MSG_WAITFORONE: only the first message is waited for (the
    timeout, args[4], is not looked at)."""
    flags = c_int(call.args[3])
    return _messages(call, lambda at, more: _recvmsg_at(call, proxy, at, flags | more))


def _messages(call, serve):
    """sendmmsg and recvmmsg: each struct mmsghdr of the vector served as
    sendmsg or recvmsg serve one, `serve(address, extra flags)`.  The
    first may wait; the next are served while they need no wait, and the
    call returns how many were, as the kernel's does when it stops short."""
    vector, count = call.args[1], min(call.args[2] & 0xFFFFFFFF, IOV_MAX)
    if not count:
        return Answer(0)
    first = _one_message(serve(vector, 0), vector)
    if type(first) is not Answer:
        return first        # waiting: resumed, it answers for the first message alone
    writes, done = list(first.writes), 1
    while done < count:
        at = vector + done * MMSGHDR_SIZE
        try:
            outcome = serve(at, socket.MSG_DONTWAIT)
        except OSError:
            break           # the kernel too returns the count so far
        if type(outcome) is not Answer:
            break           # a failure the stack reported (DATAGRAM_ERROR): the same
        writes += _one_message(outcome, at).writes
        done += 1
    return Answer(done, tuple(writes))


def _one_message(outcome, at):
    """The outcome of one message of sendmmsg or recvmmsg at `at`: 1, with
    its msg_len (what sendmsg or recvmsg would return) written."""
    if type(outcome) is Park:
        return Park(outcome.fd, outcome.events, lambda fd: _one_message(outcome.resume(fd), at))
    if type(outcome) is Answer:
        return Answer(1, outcome.writes + ((at + MSGHDR.size, INT.pack(outcome.value)),))
    return outcome


HANDLERS = {
    "bind": bind, "connect": connect, "listen": listen, "accept": accept, "accept4": accept4,
    "getsockname": getsockname, "getpeername": getpeername, "getsockopt": getsockopt,
    "setsockopt": setsockopt, "ioctl": ioctl, "sendto": sendto, "sendmsg": sendmsg,
    "recvfrom": recvfrom, "recvmsg": recvmsg, "sendmmsg": sendmmsg, "recvmmsg": recvmmsg,
}
