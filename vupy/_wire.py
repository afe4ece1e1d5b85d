# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""The caller's memory, and the kernel structures found in it.

`CallerMemory` reads and writes a trapped caller's memory
(process_vm_readv/writev); a fault is OSError(EFAULT), as the call would
have got from the kernel.  `Layout` names the fields of the x86_64
structures the proxy layer reads and writes (msghdr, iovec, ifreq,
socklen_t, int), so that no offset is written by hand.

The functions below (`read_address`, `address_writes`, `iovecs`) follow the
kernel's rules for socket call arguments: an address is at most
sizeof(struct sockaddr_storage), and one written back is truncated to the
caller's buffer with its full length stored (move_addr_to_user).
"""
import errno
import os
import struct
from collections import namedtuple

from ._native import ffi, lib

SOCKADDR_MAX = 128              # sizeof(struct sockaddr_storage)
IOV_MAX = 1024                  # UIO_MAXIOV: the most iovecs, and the most messages of a sendmmsg
# (msg_name, msg_namelen) at the start of a struct msghdr, and the size of a
# struct mmsghdr: x86-64's, and i386's and x32's
MSG_NAME = {False: (struct.Struct("=QI"), 64), True: (struct.Struct("=II"), 32)}


class Layout:
    """A C structure as x86_64 lays it out: (field, struct code) pairs, a
    field None for padding."""

    def __init__(self, name, *fields):
        fmt, self.offset, self.code = "=", {}, {}
        for field, code in fields:
            if field is not None:
                self.offset[field] = struct.calcsize(fmt)
                self.code[field] = code
            fmt += code
        self.struct = struct.Struct(fmt)
        self.size = self.struct.size
        self.tuple = namedtuple(name, [field for field, _code in fields if field is not None])

    def unpack(self, data):
        return self.tuple._make(self.struct.unpack(data))

    def pack(self, *values):
        return self.struct.pack(*values)

    def put(self, base, field, value):
        """The write (address, bytes) that sets one field of the structure at `base`."""
        return base + self.offset[field], struct.pack("=" + self.code[field], value)


MSGHDR = Layout("msghdr", ("msg_name", "Q"), ("msg_namelen", "I"), (None, "4x"),
                ("msg_iov", "Q"), ("msg_iovlen", "Q"), ("msg_control", "Q"),
                ("msg_controllen", "Q"), ("msg_flags", "i"), (None, "4x"))
IOVEC = Layout("iovec", ("iov_base", "Q"), ("iov_len", "Q"))
IFREQ = Layout("ifreq", ("ifr_name", "16s"), ("ifr_ifindex", "i"), (None, "20x"))
SOCKLEN = Layout("socklen", ("value", "i"))         # socklen_t, as the kernel reads it: an int
INT = Layout("int", ("value", "i"))


class CallerMemory:
    """The memory of thread `pid` (whose process is `tgid`)."""

    __slots__ = ("pid", "tgid")

    def __init__(self, pid, tgid):
        self.pid, self.tgid = pid, tgid

    def read(self, addr, size):
        if size == 0:
            return b""
        buf = ffi.new("char[]", size)
        if lib.vupy_read_mem(self.pid, addr, buf, size) != size:
            raise call_error(errno.EFAULT)
        return ffi.buffer(buf, size)[:]

    def write(self, addr, data):
        if data and lib.vupy_write_mem(self.pid, addr, data, len(data)) != len(data):
            raise call_error(errno.EFAULT)

    def read_int(self, addr):
        return INT.unpack(self.read(addr, INT.size)).value

    def copy_fd(self, fd):
        """Our own copy of the caller's descriptor `fd` (pidfd_getfd)."""
        copy = lib.vupy_getfd(self.tgid, fd)
        if copy < 0:
            raise OSError(-copy, os.strerror(-copy))
        return copy


def call_error(err):
    """OSError(err), as a call's errno."""
    return OSError(err, os.strerror(err))


def read_address(memory, addr, size):
    """A socket address the caller passes (addr, addrlen)."""
    if size > SOCKADDR_MAX or size & 0x80000000:
        raise call_error(errno.EINVAL)
    return memory.read(addr, size)


def address_writes(memory, addr, size_at, data):
    """The writes that give the caller an address where it asked (addr,
    and its room in *size_at), truncated to its buffer, and its full length
    in *size_at, as the kernel does; none for a NULL addr."""
    if not addr:
        return ()
    room = memory.read_int(size_at)
    if room < 0:
        raise call_error(errno.EINVAL)
    return ((addr, data[:room]), (size_at, SOCKLEN.pack(len(data))))


def iovecs(memory, iov, iovlen, limit):
    """(base, length) of a struct iovec array, up to `limit` bytes in all."""
    if iovlen > IOV_MAX:
        raise call_error(errno.EMSGSIZE)
    out = []
    raw = memory.read(iov, iovlen * IOVEC.size)
    for i in range(iovlen):
        vec = IOVEC.unpack(raw[i * IOVEC.size:(i + 1) * IOVEC.size])
        length = min(vec.iov_len, limit)
        limit -= length
        out.append((vec.iov_base, length))
    return out


def send_addresses(name, args, memory, compat):
    """The destination sockaddrs that a sendto, sendmsg or sendmmsg gives
    (those of its messages that give one), read from the caller's memory;
    `compat`: i386's or x32's layouts."""
    width = 0xFFFFFFFF if compat else (1 << 64) - 1
    if name == "sendto":
        return [read_address(memory, args[4] & width, args[5] & 0xFFFFFFFF)] if args[4] & width else []
    head, size = MSG_NAME[compat]
    count = 1 if name == "sendmsg" else min(args[2] & 0xFFFFFFFF, IOV_MAX)
    if not count:
        return []
    data = memory.read(args[1] & width, size * (count - 1) + head.size)
    found = []
    for i in range(count):
        pointer, length = head.unpack_from(data, i * size)
        if pointer and length:
            found.append(read_address(memory, pointer, length))
    return found
