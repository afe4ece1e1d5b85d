# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""What a socket takes with it when the router (vupy/_router.py) makes it
anew on another stack: the options set on it.

An option carries over if it is set otherwise than on a fresh socket of
the same kind made where the old one is (read once per namespace and kind,
`Carrier.changed`); it is then set on the new socket, with the caller's
credentials, and read back (`Carrier.give`), or given through a userspace
stack's setsockopt (`Carrier.give_proxy`).  An option that names something
of the old socket's own stack (UNMOVABLE), one the new stack refuses, or
one it sets otherwise stops the move: CannotMove, with an errno and what
was in the way.  The options are read with one call for the lot
(vupy_read_options, csrc/supervisor.c).
"""
import errno
import fcntl
import functools
import os
import socket
import struct

from ._native import ffi, lib

SIOCGSKNS = 0x894C                          # linux/sockios.h
INT = struct.Struct("=i")
SOL_SOCKET, IPPROTO_IP, IPPROTO_IPV6, IPPROTO_TCP = (socket.SOL_SOCKET, socket.IPPROTO_IP,
                                                     socket.IPPROTO_IPV6, socket.IPPROTO_TCP)
SO_BINDTODEVICE, SO_GET_FILTER, IP_OPTIONS = 25, 26, 4
SO_SNDBUF, SO_RCVBUF = 7, 8
# (level, name, size, family or None, protocol or None): what carries over.
# Names from the kernel's uapi headers (asm-generic/socket.h, linux/in.h,
# linux/in6.h, linux/tcp.h).
OPTIONS = (
    (SOL_SOCKET, 2, 4, None, None, "SO_REUSEADDR"),
    (SOL_SOCKET, 15, 4, None, None, "SO_REUSEPORT"),
    (SOL_SOCKET, 9, 4, None, None, "SO_KEEPALIVE"),
    (SOL_SOCKET, 6, 4, None, None, "SO_BROADCAST"),
    (SOL_SOCKET, 10, 4, None, None, "SO_OOBINLINE"),
    (SOL_SOCKET, 12, 4, None, None, "SO_PRIORITY"),
    (SOL_SOCKET, 13, 8, None, None, "SO_LINGER"),
    (SOL_SOCKET, SO_SNDBUF, 4, None, None, "SO_SNDBUF"),
    (SOL_SOCKET, SO_RCVBUF, 4, None, None, "SO_RCVBUF"),
    (SOL_SOCKET, 18, 4, None, None, "SO_RCVLOWAT"),
    (SOL_SOCKET, 20, 16, None, None, "SO_RCVTIMEO"),
    (SOL_SOCKET, 21, 16, None, None, "SO_SNDTIMEO"),
    (SOL_SOCKET, 36, 4, None, None, "SO_MARK"),
    (SOL_SOCKET, 29, 4, None, None, "SO_TIMESTAMP"),
    (SOL_SOCKET, 35, 4, None, None, "SO_TIMESTAMPNS"),
    (SOL_SOCKET, 11, 4, None, socket.IPPROTO_UDP, "SO_NO_CHECK"),
    (IPPROTO_TCP, 1, 4, None, socket.IPPROTO_TCP, "TCP_NODELAY"),
    (IPPROTO_TCP, 2, 4, None, socket.IPPROTO_TCP, "TCP_MAXSEG"),
    (IPPROTO_TCP, 3, 4, None, socket.IPPROTO_TCP, "TCP_CORK"),
    (IPPROTO_TCP, 4, 4, None, socket.IPPROTO_TCP, "TCP_KEEPIDLE"),
    (IPPROTO_TCP, 5, 4, None, socket.IPPROTO_TCP, "TCP_KEEPINTVL"),
    (IPPROTO_TCP, 6, 4, None, socket.IPPROTO_TCP, "TCP_KEEPCNT"),
    (IPPROTO_TCP, 7, 4, None, socket.IPPROTO_TCP, "TCP_SYNCNT"),
    (IPPROTO_TCP, 8, 4, None, socket.IPPROTO_TCP, "TCP_LINGER2"),
    (IPPROTO_TCP, 10, 4, None, socket.IPPROTO_TCP, "TCP_WINDOW_CLAMP"),
    (IPPROTO_TCP, 13, 16, None, socket.IPPROTO_TCP, "TCP_CONGESTION"),
    (IPPROTO_TCP, 18, 4, None, socket.IPPROTO_TCP, "TCP_USER_TIMEOUT"),
    (IPPROTO_TCP, 25, 4, None, socket.IPPROTO_TCP, "TCP_NOTSENT_LOWAT"),
    (IPPROTO_TCP, 30, 4, None, socket.IPPROTO_TCP, "TCP_FASTOPEN_CONNECT"),
    (IPPROTO_IP, 1, 4, socket.AF_INET, None, "IP_TOS"),
    (IPPROTO_IP, 2, 4, socket.AF_INET, None, "IP_TTL"),
    (IPPROTO_IP, 8, 4, socket.AF_INET, None, "IP_PKTINFO"),
    (IPPROTO_IP, 10, 4, socket.AF_INET, None, "IP_MTU_DISCOVER"),
    (IPPROTO_IP, 11, 4, socket.AF_INET, None, "IP_RECVERR"),
    (IPPROTO_IP, 12, 4, socket.AF_INET, None, "IP_RECVTTL"),
    (IPPROTO_IP, 13, 4, socket.AF_INET, None, "IP_RECVTOS"),
    (IPPROTO_IP, 15, 4, socket.AF_INET, None, "IP_FREEBIND"),
    (IPPROTO_IP, 24, 4, socket.AF_INET, None, "IP_BIND_ADDRESS_NO_PORT"),
    (IPPROTO_IP, 33, 4, socket.AF_INET, None, "IP_MULTICAST_TTL"),
    (IPPROTO_IP, 34, 4, socket.AF_INET, None, "IP_MULTICAST_LOOP"),
    (IPPROTO_IPV6, 26, 4, socket.AF_INET6, None, "IPV6_V6ONLY"),
    (IPPROTO_IPV6, 16, 4, socket.AF_INET6, None, "IPV6_UNICAST_HOPS"),
    (IPPROTO_IPV6, 67, 4, socket.AF_INET6, None, "IPV6_TCLASS"),
    (IPPROTO_IPV6, 23, 4, socket.AF_INET6, None, "IPV6_MTU_DISCOVER"),
    (IPPROTO_IPV6, 25, 4, socket.AF_INET6, None, "IPV6_RECVERR"),
    (IPPROTO_IPV6, 49, 4, socket.AF_INET6, None, "IPV6_RECVPKTINFO"),
    (IPPROTO_IPV6, 66, 4, socket.AF_INET6, None, "IPV6_RECVTCLASS"),
    (IPPROTO_IPV6, 18, 4, socket.AF_INET6, None, "IPV6_MULTICAST_HOPS"),
    (IPPROTO_IPV6, 19, 4, socket.AF_INET6, None, "IPV6_MULTICAST_LOOP"),
)
# Set on a socket, these name something of its own stack: they cannot move.
UNMOVABLE = ((SOL_SOCKET, SO_BINDTODEVICE, 16, None, "SO_BINDTODEVICE"),
             (SOL_SOCKET, SO_GET_FILTER, 4, None, "a socket filter (SO_ATTACH_FILTER)"),
             (IPPROTO_IP, IP_OPTIONS, 40, socket.AF_INET, "IP_OPTIONS"))


class Options:
    """A table of socket options, read with one call (vupy_read_options):
    rows of (level, name, size, ...)."""

    def __init__(self, rows):
        self.n = len(rows)
        self.levels = ffi.new("int[]", [row[0] for row in rows])
        self.names = ffi.new("int[]", [row[1] for row in rows])
        self.sizes = ffi.new("int[]", [row[2] for row in rows])
        self.out = ffi.new("unsigned char[]", self.n * lib.VUPY_OPTION_MAX)
        self.lens = ffi.new("int[]", self.n)

    def read(self, fd):
        """The options of socket `fd`: an OptionValues."""
        lib.vupy_read_options(fd, self.n, self.levels, self.names, self.sizes, self.out, self.lens)
        return OptionValues(ffi.buffer(self.out)[:], tuple(self.lens))


class OptionValues:
    """What Options.read found: the values, each in VUPY_OPTION_MAX bytes
    and zero-filled, and their lengths (-errno where refused).  Two are
    equal exactly when every option is."""
    __slots__ = ("data", "lens")
    __hash__ = None

    def __init__(self, data, lens):
        self.data, self.lens = data, lens

    def __eq__(self, other):
        return self.data == other.data and self.lens == other.lens

    def __getitem__(self, i):
        """Option i's value (bytes), None if refused."""
        start = i * lib.VUPY_OPTION_MAX
        return self.data[start:start + self.lens[i]] if self.lens[i] >= 0 else None


KIND = Options(((SOL_SOCKET, socket.SO_DOMAIN, 4), (SOL_SOCKET, socket.SO_TYPE, 4),
                (SOL_SOCKET, socket.SO_PROTOCOL, 4)))
FIXED = Options(UNMOVABLE)


class CannotMove(Exception):
    """The socket cannot be moved as it is: an errno, and what is in the way."""

    def __init__(self, err, what):
        super().__init__(what)
        self.errno = err


@functools.cache
def carried(family, protocol):
    """(the OPTIONS rows a socket of `family` and `protocol` has, an
    Options of them): only those are read, half of them for a UDP socket."""
    rows = tuple(row for row in OPTIONS if row[3] in (None, family) and row[4] in (None, protocol))
    return rows, Options(rows)


def setting(level, name, value):
    """What to give setsockopt for an option that getsockopt read as `value`."""
    if level == SOL_SOCKET and name in (SO_SNDBUF, SO_RCVBUF):
        return INT.pack(INT.unpack(value)[0] // 2)      # the kernel doubles what it is given
    return value


class Carrier:
    """The options of moved sockets, with the fresh sockets' values kept."""

    def __init__(self):
        self.fresh = {}                     # (netns, family, type, protocol) -> carried()'s values

    def changed(self, old, kind, here, creds, old_stack):
        """[(OPTIONS row, the value read)] of the options set on socket
        `old` (of `kind`, in namespace `here`, on `old_stack` or None)
        otherwise than on a fresh socket; CannotMove for an UNMOVABLE one
        set."""
        family, _type, protocol = kind
        fixed = FIXED.read(old)
        for i, (_level, _name, _size, fam, what) in enumerate(UNMOVABLE):
            if fam in (None, family) and (fixed[i] or b"").strip(b"\0"):
                raise CannotMove(errno.EOPNOTSUPP, f"{what} is set")
        rows, options = carried(family, protocol)
        values, fresh = options.read(old), self._fresh(old, kind, here, creds, old_stack)
        if values == fresh:
            return []                       # nothing set: the common case
        return [(rows[i], values[i]) for i in range(len(rows))
                if values[i] is not None and values[i] != fresh[i]]

    @staticmethod
    def give(changed, new, creds):
        """The `changed` options set on our kernel socket `new`, as the
        caller, and read back."""
        for (level, name, _size, _fam, _proto, what), value in changed:
            data = setting(level, name, value)
            rc = lib.vupy_sockcall_as(lib.VUPY_SOCKCALL_SETSOCKOPT, new, level, name, data, len(data),
                                      creds)
            if rc < 0:
                raise CannotMove(-rc, f"{what}: {os.strerror(-rc)}")
        if changed:
            now = Options([row for row, _value in changed]).read(new)
            for i, (row, value) in enumerate(changed):
                if now[i] != value:
                    raise CannotMove(errno.EOPNOTSUPP, f"{row[5]}: the other stack sets it otherwise")

    @staticmethod
    def give_proxy(changed, stack, sock):
        """The `changed` options given to socket `sock` of userspace stack
        `stack`."""
        for (level, name, _size, _fam, _proto, what), value in changed:
            try:
                stack.setsockopt(sock, level, name, setting(level, name, value))
            except OSError as e:
                raise CannotMove(e.errno, f"{what}: {type(stack).__name__}: {e.strerror}") from None

    def _fresh(self, sock, kind, here, creds, stack):
        """carried()'s values on a fresh socket of `kind` made where `sock`
        is (namespace `here`: on `stack`, or with setns into it if None),
        read once per namespace and kind."""
        key = (here, *kind)
        values = self.fresh.get(key)
        if values is not None:
            return values
        try:
            if stack is not None:
                ref = stack.socket(*kind, creds)
            else:
                ns = fcntl.ioctl(sock, SIOCGSKNS)
                try:
                    ref = lib.vupy_make_socket(ns, 0, kind[0], kind[1], kind[2], creds)
                finally:
                    os.close(ns)
                if ref < 0:
                    raise OSError(-ref, os.strerror(-ref))
        except OSError as e:
            raise CannotMove(e.errno, f"a fresh socket to compare options with: {e.strerror}") from None
        try:
            values = self.fresh[key] = carried(kind[0], kind[2])[1].read(ref)
        finally:
            os.close(ref)
        return values


def sockcall(op, fd, address, creds=ffi.NULL):
    """bind or connect (`op`) our socket `fd` to sockaddr `address`, with
    the caller's `creds` (NULL: ours): 0 or -errno."""
    return lib.vupy_sockcall_as(op, fd, 0, 0, address, len(address), creds)


def sockaddr(family, local):
    """The sockaddr of a getsockname() tuple."""
    if family == socket.AF_INET:
        return struct.pack("=H", family) + struct.pack("!H", local[1]) + \
            socket.inet_pton(family, local[0]) + bytes(8)
    return (struct.pack("=H", family) + struct.pack("!H", local[1]) + struct.pack("=I", local[2])
            + socket.inet_pton(family, local[0]) + struct.pack("=I", local[3]))
