# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""Serving the socket calls made on proxy descriptors.

A userspace stack hands programs proxies (see "Proxy stacks" in stack.py):
AF_UNIX socketpair ends on which read, write, send and recv without an
address, poll, select, epoll, shutdown and close work natively.  The other
socket calls are trapped by a second filter, which a session installs only
when it has userspace stacks, so that programs of kernel-only sessions pay
nothing.  That filter traps bind, connect, listen, accept, accept4,
getsockname, getpeername, getsockopt, setsockopt, sendmsg, recvmsg,
sendmmsg, recvmmsg, sendto and recvfrom with an address, and
ioctl(FIONREAD), whatever the descriptor; a call on anything but a proxy
goes on (CONTINUE) at the cost of one round trip.

Unlike the first filter it is loaded without WAIT_KILLABLE_RECV: a call
that waits (a blocking connect, accept or recvfrom) is *parked*: vupy keeps
a copy of the program's proxy (pidfd_getfd), waits for it to become
readable or writable in its own poll loop, and answers then.  A signal
interrupts the waiting call as it would interrupt a real socket's (EINTR,
or a restart under SA_RESTART), and the parked entry is dropped when its
notification is no longer valid.

Calls on proxies held by i386 or x32 code are not trapped, so such callers
are refused userspace sockets (EAFNOSUPPORT) when they ask for one.
"""
import errno
import os
import select
import signal
import socket
import stat
import struct

from . import _dispatch as dispatch
from ._dispatch import c_int
from ._native import ffi, lib
from ._procs import status
from .stack import ProxyStack

NR = {"bind": 49, "connect": 42, "listen": 50, "accept": 43, "accept4": 288,
      "getsockname": 51, "getpeername": 52, "getsockopt": 55, "setsockopt": 54,
      "sendto": 44, "recvfrom": 45, "sendmsg": 46, "recvmsg": 47,
      "sendmmsg": 307, "recvmmsg": 299, "ioctl": 16}     # x86_64
PROXY_CALLS = tuple(NR)         # what the filter traps (csrc/supervisor.c)
NAME = {nr: name for name, nr in NR.items()}
ERESTARTSYS = 512               # the kernel's own: restart, or EINTR if a handler says so
NR_TGKILL = 234
FIONREAD = 0x541B
SIOCGIFNAME, SIOCGIFINDEX = 0x8910, 0x8933
IFREQ = struct.Struct("=16si20x")       # name, and ifr_ifindex of the union
SO_DOMAIN, SO_TYPE, SO_PROTOCOL = 39, 3, 38
SO_RCVTIMEO = (20, 66)          # _OLD and _NEW (asm-generic/socket.h)
SO_SNDTIMEO = (21, 67)
SOCKADDR_MAX = 128              # sizeof(struct sockaddr_storage)
OPTVAL_MAX = 256
DATAGRAM_MAX = 65535
STREAM_CHUNK = 1 << 20          # bytes moved per sendmsg/recvmsg served on a stream proxy
IOV_MAX = 1024
MSGHDR = struct.Struct("=QI4xQQQQi4x")   # name namelen iov iovlen control controllen flags
IOVEC = struct.Struct("=QQ")
SOCKLEN = struct.Struct("=i")
INT = struct.Struct("=i")
ACCEPT4_FLAGS = socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
O_CLOEXEC = 0o2000000
RECV_FLAGS = socket.MSG_PEEK | socket.MSG_TRUNC | socket.MSG_WAITALL


class CallFault(Exception):
    """The call cannot be served: its caller gets this errno."""

    def __init__(self, err):
        super().__init__(err)
        self.errno = err


class Proxy:
    __slots__ = ("stack", "family", "type", "protocol")

    def __init__(self, stack, family, type, protocol):
        self.stack, self.family, self.type, self.protocol = stack, family, type, protocol

    @property
    def stream(self):
        return self.type == socket.SOCK_STREAM


class Call:
    """What a parked call needs of its notification (the cffi struct is reused)."""
    __slots__ = ("id", "pid", "tgid", "nr", "args")

    def __init__(self, raw, tgid):
        self.id, self.pid, self.tgid, self.nr = raw.id, raw.pid, tgid, raw.nr
        self.args = tuple(raw.args)


def _pending_signals(tid):
    """Whether thread `tid` has a signal to handle (None if it is gone)."""
    fields = status(tid, b"SigPnd", b"ShdPnd", b"SigBlk", b"SigIgn")
    if fields is None:
        return None
    mask = {key: int(fields.get(key, b"0"), 16) for key in (b"SigPnd", b"ShdPnd", b"SigBlk", b"SigIgn")}
    waiting = mask[b"SigPnd"] | mask[b"ShdPnd"]
    return bool(waiting & ~mask[b"SigBlk"] & ~mask[b"SigIgn"])


class ProxyServer:
    def __init__(self, listener, table, trace=None):
        self.listener = listener
        self.table = table
        self.trace = trace
        self.proxies = {}        # inode of the program's end -> Proxy
        self.parked = {}         # our copy of the proxy -> (Call, events, resume)
        self.raw = ffi.new("struct vupy_call *")
        self.handlers = {NR[name]: getattr(self, "_" + name) for name in NR}

    # Registry --------------------------------------------------------------

    def register(self, fd, stack, family, type, protocol):
        for gone in stack.closed():
            self.proxies.pop(gone, None)
        type &= 0xF
        if not protocol and family in (socket.AF_INET, socket.AF_INET6):
            # What the kernel answers for SO_PROTOCOL: the protocol chosen.
            protocol = socket.IPPROTO_TCP if type == socket.SOCK_STREAM else socket.IPPROTO_UDP
        self.proxies[os.fstat(fd).st_ino] = Proxy(stack, family, type, protocol)

    # The loop's side ---------------------------------------------------------

    def handle(self, raw):
        """Serve one trapped call: a call on anything but a proxy goes on at
        once (CONTINUE), with as little work as possible on the way."""
        fd = c_int(raw.args[0])
        try:
            st = os.stat(f"/proc/{raw.pid}/fd/{fd}")
        except OSError:
            return lib.vupy_respond(self.listener, raw.id, 0, 0, 1)   # the kernel says EBADF
        proxy = self.proxies.get(st.st_ino) if stat.S_ISSOCK(st.st_mode) else None
        interface = raw.nr == NR["ioctl"] and raw.args[1] & 0xFFFFFFFF in (SIOCGIFINDEX, SIOCGIFNAME)
        if proxy is None and not interface:
            if self.trace is not None:
                self.trace(f"pid {raw.pid}: {NAME[raw.nr]}(fd {fd}) -> native")
            return lib.vupy_respond(self.listener, raw.id, 0, 0, 1)
        known = self.table.lookup(raw.pid)
        call = Call(raw, known[0] if known else raw.pid)
        try:
            if proxy is not None:
                for gone in proxy.stack.closed():
                    self.proxies.pop(gone, None)
                proxy = self.proxies.get(st.st_ino)
            if interface:
                return self._interface_ioctl(call, proxy)
            if proxy is None:
                return self.answer(call, cont=True)
            self.handlers[call.nr](call, proxy, st.st_ino)
        except CallFault as e:
            self.answer(call, error=e.errno)
        except OSError as e:
            self._traced(call, st.st_ino, errno.errorcode.get(e.errno, str(e.errno)))
            self.answer(call, error=e.errno)

    def watched(self):
        """{descriptor: poll events} of the parked calls."""
        return {fd: events for fd, (_call, events, _resume) in self.parked.items()}

    def wake(self, fd):
        """A parked call's proxy is ready: try the call again."""
        call, _events, resume = self.parked.pop(fd)
        try:
            if lib.vupy_notif_id_valid(self.listener, call.id) < 0:
                return                              # interrupted, or the caller is gone
            resume(call, fd)
        except CallFault as e:
            self.answer(call, error=e.errno)
        except OSError as e:
            self.answer(call, error=e.errno)
        finally:
            os.close(fd)

    def expire(self):
        """Let signals reach the callers of parked calls.

        The filter waits killably once a call is received, so a caught signal
        cannot interrupt a parked call by itself.  When a caller has one
        pending, its call is answered ERESTARTSYS: the kernel then runs the
        handler and restarts the call (SA_RESTART) or returns EINTR, exactly
        as for a real socket's wait, and restarts it if the signal went to
        another thread.  Calls whose caller died are dropped."""
        for fd, (call, _events, _resume) in list(self.parked.items()):
            pending = _pending_signals(call.pid)
            if pending is None or pending:
                del self.parked[fd]
                os.close(fd)
                if pending:
                    self.answer(call, error=ERESTARTSYS)

    def close(self):
        for fd in self.parked:
            os.close(fd)
        self.parked.clear()

    # Answers and memory ------------------------------------------------------

    def answer(self, call, value=0, error=0, cont=False):
        lib.vupy_respond(self.listener, call.id, value, error, 1 if cont else 0)

    def _traced(self, call, sock, outcome):
        if self.trace is not None:
            self.trace(f"pid {call.pid}: {NAME[call.nr]}(fd {c_int(call.args[0])}, proxy {sock}) "
                       f"-> {outcome}")

    def read(self, call, addr, size):
        if size == 0:
            return b""
        buf = ffi.new("char[]", size)
        if lib.vupy_read_mem(call.pid, addr, buf, size) != size:
            raise CallFault(errno.EFAULT)
        return ffi.buffer(buf, size)[:]

    def write(self, call, addr, data):
        if data and lib.vupy_write_mem(call.pid, addr, data, len(data)) != len(data):
            raise CallFault(errno.EFAULT)

    def read_address(self, call, addr, size):
        if size > SOCKADDR_MAX or c_int(size) < 0:
            raise CallFault(errno.EINVAL)
        return self.read(call, addr, size)

    def write_address(self, call, addr, size_at, data):
        """Put an address where the caller asked, truncated to its buffer,
        and its full length in *size_at, as the kernel does."""
        if not addr:
            return
        room = SOCKLEN.unpack(self.read(call, size_at, SOCKLEN.size))[0]
        if room < 0:
            raise CallFault(errno.EINVAL)
        self.write(call, addr, data[:room])
        self.write(call, size_at, SOCKLEN.pack(len(data)))

    def copy(self, call):
        """Our own copy of the caller's proxy."""
        fd = lib.vupy_getfd(call.tgid, c_int(call.args[0]))
        if fd < 0:
            raise CallFault(-fd)
        return fd

    def park(self, call, fd, events, resume):
        self.parked[fd] = (call, events, resume)

    def ready(self, call, fd, events, resume, nonblocking):
        """Go on with a call that would wait: EAGAIN-like answers are the
        caller's to see if it does not wait; otherwise park it."""
        if nonblocking or not os.get_blocking(fd):
            os.close(fd)
            raise CallFault(errno.EAGAIN)
        self.park(call, fd, events, resume)

    # The calls -----------------------------------------------------------------

    def _bind(self, call, proxy, sock):
        proxy.stack.bind(sock, self.read_address(call, call.args[1], call.args[2]))
        self._traced(call, sock, "0")
        self.answer(call)

    def _connect(self, call, proxy, sock):
        address = self.read_address(call, call.args[1], call.args[2])
        try:
            proxy.stack.connect(sock, address)
        except OSError as e:
            if e.errno != errno.EINPROGRESS or not proxy.stream:
                raise
            fd = self.copy(call)
            if not os.get_blocking(fd):
                os.close(fd)
                raise
            self._traced(call, sock, "waiting")
            self.park(call, fd, select.POLLOUT, lambda call, fd: self._connected(call, proxy, sock))
            return
        self._traced(call, sock, "0")
        self.answer(call)

    def _connected(self, call, proxy, sock):
        err = INT.unpack(proxy.stack.getsockopt(sock, socket.SOL_SOCKET, socket.SO_ERROR, 4))[0]
        self._traced(call, sock, errno.errorcode.get(err, "0") if err else "0")
        self.answer(call, error=err)

    def _listen(self, call, proxy, sock):
        proxy.stack.listen(sock, c_int(call.args[1]))
        self._traced(call, sock, "0")
        self.answer(call)

    def _accept(self, call, proxy, sock, flags=0):
        if flags & ~ACCEPT4_FLAGS:
            raise CallFault(errno.EINVAL)
        fd = self.copy(call)
        try:
            self._take_connection(call, proxy, sock, fd, flags)
        finally:
            os.close(fd)     # a parked call keeps a copy of its own

    def _accept4(self, call, proxy, sock):
        self._accept(call, proxy, sock, c_int(call.args[3]))

    def _take_connection(self, call, proxy, sock, listening, flags):
        try:
            new, peer = proxy.stack.accept(sock)
        except OSError as e:
            if e.errno != errno.EAGAIN:
                raise
            return self.ready(call, os.dup(listening), select.POLLIN,
                              lambda call, fd: self._take_connection(call, proxy, sock, fd, flags),
                              False)
        try:
            with socket.socket(fileno=os.dup(listening)) as s:
                try:    # the byte that made the listening proxy readable
                    s.recv(1, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    pass
            self.write_address(call, call.args[1], call.args[2], peer)
            self.register(new, proxy.stack, proxy.family, proxy.type, proxy.protocol)
            if flags & socket.SOCK_NONBLOCK:
                os.set_blocking(new, False)
            rc = lib.vupy_addfd_send(self.listener, call.id, new,
                                     O_CLOEXEC if flags & socket.SOCK_CLOEXEC else 0)
        finally:
            os.close(new)
        self._traced(call, sock, f"fd {rc}" if rc >= 0 else errno.errorcode.get(-rc, str(rc)))
        if rc < 0 and rc != -errno.ENOENT:
            self.answer(call, error=-rc)

    def _getsockname(self, call, proxy, sock):
        self.write_address(call, call.args[1], call.args[2], proxy.stack.getsockname(sock))
        self.answer(call)

    def _getpeername(self, call, proxy, sock):
        self.write_address(call, call.args[1], call.args[2], proxy.stack.getpeername(sock))
        self.answer(call)

    def _getsockopt(self, call, proxy, sock):
        level, name = c_int(call.args[1]), c_int(call.args[2])
        value_at, size_at = call.args[3], call.args[4]
        if level == socket.SOL_SOCKET and name in SO_RCVTIMEO + SO_SNDTIMEO:
            return self.answer(call, cont=True)     # the proxy's own: it is what waits
        size = SOCKLEN.unpack(self.read(call, size_at, SOCKLEN.size))[0]
        if size < 0:
            raise CallFault(errno.EINVAL)
        own = {SO_DOMAIN: proxy.family, SO_TYPE: proxy.type, SO_PROTOCOL: proxy.protocol}
        if level == socket.SOL_SOCKET and name in own:
            value = INT.pack(own[name])
        else:
            value = proxy.stack.getsockopt(sock, level, name, min(size, OPTVAL_MAX))
        self.write(call, value_at, value[:size])
        self.write(call, size_at, SOCKLEN.pack(min(size, len(value))))
        self.answer(call)

    def _setsockopt(self, call, proxy, sock):
        level, name = c_int(call.args[1]), c_int(call.args[2])
        if level == socket.SOL_SOCKET and name in SO_RCVTIMEO + SO_SNDTIMEO:
            return self.answer(call, cont=True)
        size = c_int(call.args[4])
        if not 0 <= size <= OPTVAL_MAX:
            raise CallFault(errno.EINVAL)
        proxy.stack.setsockopt(sock, level, name, self.read(call, call.args[3], size))
        self.answer(call)

    def _ioctl(self, call, proxy, sock):
        if proxy.stream:
            return self.answer(call, cont=True)     # bytes waiting: the proxy's count is right
        fd = self.copy(call)
        with socket.socket(fileno=fd) as s:
            try:
                n = s.recv_into(bytearray(1), 1, socket.MSG_PEEK | socket.MSG_TRUNC | socket.MSG_DONTWAIT)
            except BlockingIOError:
                n = 0
        self.write(call, call.args[2], INT.pack(n))
        self.answer(call)

    def _interface_ioctl(self, call, proxy):
        """if_nametoindex and if_indextoname (glibc asks any socket, mostly an
        AF_UNIX one) answered from the interfaces of the caller's userspace
        stack: the proxy's, or its default for AF_INET."""
        stack = proxy.stack if proxy is not None else None
        if stack is None:
            known = self.table.lookup(call.pid)
            stack = dispatch.default_stack(socket.AF_INET, known[1]) if known else None
        if not isinstance(stack, ProxyStack):
            return self.answer(call, cont=True)       # a kernel stack's own answer
        name, index = IFREQ.unpack(self.read(call, call.args[2], IFREQ.size))
        name = name.split(b"\0", 1)[0].decode(errors="replace")
        for link in stack.links():
            if (call.args[1] & 0xFFFFFFFF == SIOCGIFINDEX and link.name == name) or \
                    (call.args[1] & 0xFFFFFFFF == SIOCGIFNAME and link.index == index):
                self.write(call, call.args[2], IFREQ.pack(link.name.encode(), link.index))
                return self.answer(call)
        raise CallFault(errno.ENODEV)

    # Sending and receiving with addresses ------------------------------------

    def _sendto(self, call, proxy, sock):
        size = call.args[2]
        data = self.read(call, call.args[1], min(size, DATAGRAM_MAX + 1 if not proxy.stream else STREAM_CHUNK))
        address = self.read_address(call, call.args[4], call.args[5])
        self._send(call, proxy, sock, data, c_int(call.args[3]), address)

    def _sendmsg(self, call, proxy, sock):
        name, namelen, iov, iovlen, _control, _controllen, _flags = MSGHDR.unpack(
            self.read(call, call.args[1], MSGHDR.size))
        address = self.read_address(call, name, namelen) if name else b""
        data = b"".join(self.read(call, base, length) for base, length in
                        self._iovecs(call, iov, iovlen, DATAGRAM_MAX + 1 if not proxy.stream else STREAM_CHUNK))
        self._send(call, proxy, sock, data, c_int(call.args[2]), address)

    def _send(self, call, proxy, sock, data, flags, address):
        if not proxy.stream:
            if len(data) > DATAGRAM_MAX:
                raise CallFault(errno.EMSGSIZE)
            n = proxy.stack.sendto(sock, data, flags, address)
            self._traced(call, sock, str(n))
            return self.answer(call, n)
        # A stream socket ignores the address: the data goes down the proxy.
        fd = self.copy(call)
        try:
            self._write_stream(call, fd, data, flags)
        finally:
            os.close(fd)     # a parked call keeps a copy of its own

    def _write_stream(self, call, fd, data, flags):
        with socket.socket(fileno=os.dup(fd)) as s:
            try:
                n = s.send(data, (flags & socket.MSG_NOSIGNAL) | socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL)
            except BlockingIOError:
                return self.ready(call, os.dup(fd), select.POLLOUT,
                                  lambda call, fd: self._write_stream(call, fd, data, flags),
                                  flags & socket.MSG_DONTWAIT)
            except BrokenPipeError:
                if not flags & socket.MSG_NOSIGNAL:
                    lib.vupy_syscall4(NR_TGKILL, call.tgid, call.pid, signal.SIGPIPE, 0)
                raise CallFault(errno.EPIPE)
        self.answer(call, n)

    def _iovecs(self, call, iov, iovlen, limit):
        """(base, length) of a struct iovec array, up to `limit` bytes in all."""
        if iovlen > IOV_MAX:
            raise CallFault(errno.EMSGSIZE)
        out = []
        raw = self.read(call, iov, iovlen * IOVEC.size)
        for i in range(iovlen):
            base, length = IOVEC.unpack_from(raw, i * IOVEC.size)
            length = min(length, limit)
            limit -= length
            out.append((base, length))
        return out

    def _recvfrom(self, call, proxy, sock):
        self._receive(call, proxy, sock, [(call.args[1], call.args[2])], c_int(call.args[3]),
                      call.args[4], call.args[5], None)

    def _recvmsg(self, call, proxy, sock):
        msg = call.args[1]
        name, _namelen, iov, iovlen, _control, _controllen, _flags = MSGHDR.unpack(
            self.read(call, msg, MSGHDR.size))
        self._receive(call, proxy, sock, self._iovecs(call, iov, iovlen, STREAM_CHUNK * 64),
                      c_int(call.args[2]), name, msg + 8, msg)

    def _receive(self, call, proxy, sock, iovecs, flags, name, namelen_at, msg):
        fd = self.copy(call)
        try:
            self._read_proxy(call, proxy, fd, iovecs, flags, name, namelen_at, msg)
        finally:
            os.close(fd)     # a parked call keeps a copy of its own

    def _read_proxy(self, call, proxy, fd, iovecs, flags, name, namelen_at, msg):
        room = sum(length for _base, length in iovecs)
        size = DATAGRAM_MAX if not proxy.stream else max(1, min(room, STREAM_CHUNK))
        with socket.socket(fileno=os.dup(fd)) as s:
            try:
                data, ancillary, mflags, _ = s.recvmsg(size, socket.CMSG_SPACE(INT.size),
                                                       (flags & RECV_FLAGS & ~socket.MSG_WAITALL)
                                                       | socket.MSG_DONTWAIT)
            except BlockingIOError:
                return self.ready(call, os.dup(fd), select.POLLIN,
                                  lambda call, fd: self._read_proxy(call, proxy, fd, iovecs, flags,
                                                                    name, namelen_at, msg),
                                  flags & socket.MSG_DONTWAIT)
        address = b""
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                for afd in struct.unpack(f"={len(payload) // INT.size}i", payload):
                    if not address:
                        address = os.pread(afd, SOCKADDR_MAX, 0)
                    os.close(afd)
        offset = 0
        for base, length in iovecs:
            piece = data[offset:offset + length]
            self.write(call, base, piece)
            offset += len(piece)
        truncated = len(data) > room
        if name:
            self.write_address(call, name, namelen_at, address)
        elif namelen_at:
            self.write(call, namelen_at, SOCKLEN.pack(0))
        if msg:
            self.write(call, msg + 40, struct.pack("=Q", 0))                # msg_controllen
            self.write(call, msg + 48, INT.pack(socket.MSG_TRUNC if truncated and not proxy.stream else 0))
        n = len(data) if (flags & socket.MSG_TRUNC and not proxy.stream) else min(len(data), room)
        self.answer(call, n)

    def _sendmmsg(self, call, proxy, sock):
        raise CallFault(errno.EOPNOTSUPP)

    _recvmmsg = _sendmmsg
