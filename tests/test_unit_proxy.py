# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""Unit tests of the proxy layer's decisions: each handler, from a decoded
call on a fake memory and a fake userspace stack to its outcome.  No
seccomp listener, no stack process."""
import errno
import os
import socket
import struct

import pytest

from vupy import _proxy as proxy
from vupy._reply import CONTINUE, Answer, Fail
from vupy._wire import IFREQ, INT, MSGHDR, SOCKLEN, address_writes, iovecs, read_address
from vupy.stack import ProxyStack

SOCK = 4242                         # the proxy's inode


class FakeMemory:
    """A caller's memory: {address: bytes} regions; anything else faults."""

    def __init__(self, regions=()):
        self.regions = dict(regions)

    def read(self, addr, size):
        if size == 0:
            return b""
        for base, data in self.regions.items():
            if base <= addr and addr + size <= base + len(data):
                return data[addr - base:addr - base + size]
        raise OSError(errno.EFAULT, "fault")

    def read_int(self, addr):
        return INT.unpack(self.read(addr, INT.size)).value


class FakeStack(ProxyStack):
    families = frozenset((socket.AF_INET,))

    def __init__(self):
        self.calls = []

    def bind(self, sock, address):
        self.calls.append(("bind", sock, address))

    def getsockname(self, sock):
        return b"\2\0\0\x50" + bytes([10, 9, 0, 2]) + bytes(8)

    def getpeername(self, sock):
        raise OSError(errno.ENOTCONN, "not connected")

    def getsockopt(self, sock, level, name, size):
        return INT.pack(7)

    def setsockopt(self, sock, level, name, value):
        self.calls.append(("setsockopt", level, name, value))

    def sendto(self, sock, data, flags, address):
        self.calls.append(("sendto", data, flags, address))
        return len(data)

    def links(self):
        class Link:
            name, index = "vde0", 2
        return [Link()]


def call(name, *args, memory=None):
    c = proxy.ProxyCall(1, 100, 100, name, (3, *args) + (0,) * (5 - len(args)))
    c.memory = memory or FakeMemory()
    return c


def stream_or_dgram(kind):
    registry = proxy.ProxyRegistry()
    return proxy.Proxy(registry, SOCK, FakeStack(), socket.AF_INET, kind, 0)


def decide(c, p):
    return proxy.attempt(lambda: proxy.HANDLERS[c.name](c, p))


def test_bind_reads_the_address_and_answers_zero():
    p = stream_or_dgram(socket.SOCK_STREAM)
    mem = FakeMemory({0x1000: b"A" * 16})
    assert decide(call("bind", 0x1000, 16, memory=mem), p) == Answer()
    assert p.stack.calls == [("bind", SOCK, b"A" * 16)]


@pytest.mark.parametrize("size, err", [(129, errno.EINVAL), (0xFFFFFFFF, errno.EINVAL), (16, errno.EFAULT)])
def test_bind_with_a_bad_address_fails_as_the_kernel_would(size, err):
    assert decide(call("bind", 0x5000, size), stream_or_dgram(socket.SOCK_STREAM)) == Fail(err)


def test_getsockname_writes_the_address_truncated_and_its_full_length():
    mem = FakeMemory({0x2000: SOCKLEN.pack(4)})
    outcome = decide(call("getsockname", 0x1000, 0x2000, memory=mem), stream_or_dgram(socket.SOCK_STREAM))
    assert outcome == Answer(0, ((0x1000, b"\2\0\0\x50"), (0x2000, SOCKLEN.pack(16))))


def test_getsockname_with_a_negative_length_is_einval_and_unreadable_length_efault():
    mem = FakeMemory({0x2000: SOCKLEN.pack(-1)})
    p = stream_or_dgram(socket.SOCK_STREAM)
    assert decide(call("getsockname", 0x1000, 0x2000, memory=mem), p) == Fail(errno.EINVAL)
    assert decide(call("getsockname", 0x1000, 0x3000, memory=mem), p) == Fail(errno.EFAULT)


def test_getpeername_passes_the_stacks_errno_on():
    assert decide(call("getpeername", 0x1000, 0x2000), stream_or_dgram(socket.SOCK_STREAM)) == \
        Fail(errno.ENOTCONN)


def test_getsockopt_answers_domain_type_protocol_itself():
    mem = FakeMemory({0x2000: SOCKLEN.pack(4)})
    p = stream_or_dgram(socket.SOCK_DGRAM)
    c = call("getsockopt", socket.SOL_SOCKET, socket.SO_TYPE, 0x1000, 0x2000, memory=mem)
    assert decide(c, p) == Answer(0, ((0x1000, INT.pack(socket.SOCK_DGRAM)), (0x2000, SOCKLEN.pack(4))))
    c = call("getsockopt", socket.IPPROTO_TCP, socket.TCP_NODELAY, 0x1000, 0x2000, memory=mem)
    assert decide(c, p) == Answer(0, ((0x1000, INT.pack(7)), (0x2000, SOCKLEN.pack(4))))


@pytest.mark.parametrize("name", ["getsockopt", "setsockopt"])
def test_timeouts_are_the_proxys_own(name):
    c = call(name, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 0x1000, 16)
    assert decide(c, stream_or_dgram(socket.SOCK_STREAM)) is CONTINUE


def test_setsockopt_reads_the_value_and_refuses_a_bad_size():
    p = stream_or_dgram(socket.SOCK_STREAM)
    mem = FakeMemory({0x1000: INT.pack(1)})
    c = call("setsockopt", socket.IPPROTO_TCP, socket.TCP_NODELAY, 0x1000, 4, memory=mem)
    assert decide(c, p) == Answer()
    assert p.stack.calls == [("setsockopt", socket.IPPROTO_TCP, socket.TCP_NODELAY, INT.pack(1))]
    c = call("setsockopt", socket.IPPROTO_TCP, socket.TCP_NODELAY, 0x1000, 257, memory=mem)
    assert decide(c, p) == Fail(errno.EINVAL)


def test_sendto_a_datagram_goes_to_the_stack_with_its_address():
    p = stream_or_dgram(socket.SOCK_DGRAM)
    mem = FakeMemory({0x1000: b"hello", 0x2000: b"B" * 16})
    c = call("sendto", 0x1000, 5, socket.MSG_DONTWAIT, 0x2000, 16, memory=mem)
    assert decide(c, p) == Answer(5)
    assert p.stack.calls == [("sendto", b"hello", socket.MSG_DONTWAIT, b"B" * 16)]


def test_sendmsg_gathers_the_iovecs_named_in_the_msghdr():
    p = stream_or_dgram(socket.SOCK_DGRAM)
    msg = MSGHDR.pack(0x2000, 16, 0x3000, 2, 0, 0, 0)
    iov = struct.pack("=QQQQ", 0x1000, 3, 0x1003, 2)
    mem = FakeMemory({0x1000: b"hello", 0x2000: b"C" * 16, 0x3000: iov, 0x4000: msg})
    assert decide(call("sendmsg", 0x4000, 0, memory=mem), p) == Answer(5)
    assert p.stack.calls == [("sendto", b"hello", 0, b"C" * 16)]


def test_a_datagram_over_64k_is_emsgsize():
    p = stream_or_dgram(socket.SOCK_DGRAM)
    mem = FakeMemory({0x10000: bytes(70000)})
    assert decide(call("sendto", 0x10000, 70000, 0, 0, 0, memory=mem), p) == Fail(errno.EMSGSIZE)


def test_sendmmsg_sends_each_message_and_writes_its_msg_len():
    p = stream_or_dgram(socket.SOCK_DGRAM)
    vector = b"".join(MSGHDR.pack(0, 0, 0x3000 + 16 * i, 1, 0, 0, 0) + bytes(8) for i in range(2))
    iov = struct.pack("=QQQQ", 0x1000, 3, 0x1003, 2)
    mem = FakeMemory({0x1000: b"hello", 0x3000: iov, 0x4000: vector})
    assert decide(call("sendmmsg", 0x4000, 2, 0, memory=mem), p) == \
        Answer(2, ((0x4000 + 56, INT.pack(3)), (0x4000 + 64 + 56, INT.pack(2))))
    assert p.stack.calls == [("sendto", b"hel", 0, b""), ("sendto", b"lo", socket.MSG_DONTWAIT, b"")]


def test_sendmmsg_stops_short_at_a_message_that_fails():
    p = stream_or_dgram(socket.SOCK_DGRAM)
    good = MSGHDR.pack(0, 0, 0x3000, 1, 0, 0, 0) + bytes(8)
    mem = FakeMemory({0x1000: b"hello", 0x3000: struct.pack("=QQ", 0x1000, 5), 0x4000: good})
    assert decide(call("sendmmsg", 0x4000, 2, 0, memory=mem), p) == Answer(1, ((0x4000 + 56, INT.pack(5)),))


def test_sendmmsg_of_no_message_is_0():
    assert decide(call("sendmmsg", 0x4000, 0, 0), stream_or_dgram(socket.SOCK_DGRAM)) == Answer(0)


def test_accept4_with_unknown_flags_is_einval():
    assert decide(call("accept4", 0, 0, 0x40), stream_or_dgram(socket.SOCK_STREAM)) == Fail(errno.EINVAL)


def test_interface_ioctls_answer_from_the_stacks_links():
    from vupy._native import lib
    mem = FakeMemory({0x1000: IFREQ.pack(b"vde0", 0)})
    c = call("ioctl", lib.SIOCGIFINDEX, 0x1000, memory=mem)
    assert proxy.attempt(lambda: proxy.interface_ioctl(c, FakeStack())) == \
        Answer(0, ((0x1000 + 16, INT.pack(2)),))
    mem = FakeMemory({0x1000: IFREQ.pack(b"", 9)})
    c = call("ioctl", lib.SIOCGIFNAME, 0x1000, memory=mem)
    assert proxy.attempt(lambda: proxy.interface_ioctl(c, FakeStack())) == Fail(errno.ENODEV)
    assert proxy.interface_ioctl(c, object()) is CONTINUE         # a kernel stack answers itself


def test_interface_ioctls_by_name_read_the_link():
    import ipaddress

    from vupy._native import lib
    from vupy.rtnetlink import Link

    class Stack(FakeStack):
        def links(self):
            return [Link("vde0", 2, 1400, b"\2\0\0\0\0\7", True, [ipaddress.ip_interface("10.9.0.2/24")]),
                    Link("vde1", 3, 1500, b"\2\0\0\0\0\x08", False)]

    def ask(request, name):
        c = call("ioctl", request, 0x1000, memory=FakeMemory({0x1000: IFREQ.pack(name, 0)}))
        return proxy.attempt(lambda: proxy.interface_ioctl(c, Stack()))

    def field(data):
        return Answer(0, ((0x1000 + 16, data),))

    up = 1                          # IFF_UP
    assert ask(lib.SIOCGIFFLAGS, b"vde0").writes[0][1][0] & up
    assert not ask(lib.SIOCGIFFLAGS, b"vde1").writes[0][1][0] & up
    assert ask(lib.SIOCGIFMTU, b"vde0") == field(INT.pack(1400))
    assert ask(lib.SIOCGIFHWADDR, b"vde0") == field(struct.pack("=H6s", 1, b"\2\0\0\0\0\7"))
    assert ask(lib.SIOCGIFADDR, b"vde0") == field(struct.pack("=H2x4s8x", socket.AF_INET, bytes([10, 9, 0, 2])))
    assert ask(lib.SIOCGIFNETMASK, b"vde0") == field(struct.pack("=H2x4s8x", socket.AF_INET, bytes([255, 255, 255, 0])))
    assert ask(lib.SIOCGIFADDR, b"vde1") == Fail(errno.EADDRNOTAVAIL)
    assert ask(lib.SIOCGIFFLAGS, b"lo9") == Fail(errno.ENODEV)


def test_wire_helpers_follow_the_kernel():
    mem = FakeMemory({0x2000: SOCKLEN.pack(2), 0x3000: struct.pack("=QQ", 0x1000, 1 << 40)})
    assert address_writes(mem, 0, 0x2000, b"abcd") == ()
    assert address_writes(mem, 0x1000, 0x2000, b"abcd") == ((0x1000, b"ab"), (0x2000, SOCKLEN.pack(4)))
    assert iovecs(mem, 0x3000, 1, 10) == [(0x1000, 10)]
    with pytest.raises(OSError) as e:
        iovecs(mem, 0x3000, 1025, 10)
    assert e.value.errno == errno.EMSGSIZE
    with pytest.raises(OSError) as e:
        read_address(mem, 0x1000, 129)
    assert e.value.errno == errno.EINVAL


def send_datagram(worker, data, address):
    """`data` on the stack's end of a datagram proxy, with its source
    `address` in a descriptor, as a stack sends it."""
    fd = os.memfd_create("address")
    os.write(fd, address)
    worker.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", fd))])
    os.close(fd)


class ProgramMemory(FakeMemory):
    """A caller's memory whose proxy (copy_fd) is `program`."""

    def __init__(self, program, regions=()):
        super().__init__(regions)
        self.program = program

    def copy_fd(self, fd):
        return os.dup(self.program.fileno())


@pytest.mark.parametrize("peek", [0, socket.MSG_PEEK], ids=["recv", "peek"])
def test_a_datagram_standing_for_an_error_fails_the_receive_once(peek):
    """A datagram whose source address is AF_UNSPEC and an errno (what a
    stack sends for an ICMP error) fails the recvfrom that meets it, peeking
    or not, as a kernel socket's pending error does; the next datagram
    follows."""
    worker, program = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    send_datagram(worker, b"", proxy.DATAGRAM_ERROR.pack(socket.AF_UNSPEC, errno.ECONNREFUSED))
    send_datagram(worker, b"next", b"\2\0\0\x50" + bytes([10, 9, 0, 1]) + bytes(8))
    p = stream_or_dgram(socket.SOCK_DGRAM)
    try:
        assert decide(call("recvfrom", 0x1000, 100, peek, 0, 0, memory=ProgramMemory(program)), p) == \
            Fail(errno.ECONNREFUSED)
        outcome = decide(call("recvfrom", 0x1000, 100, 0, 0, 0, memory=ProgramMemory(program)), p)
        assert outcome.value == 4 and outcome.writes[0] == (0x1000, b"next")
    finally:
        worker.close()
        program.close()


def test_recvmmsg_stops_short_at_a_datagram_standing_for_an_error():
    """The first message is received; the second meets a stack's error:
    the call returns 1, as the kernel's recvmmsg returns the count so far."""
    worker, program = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    send_datagram(worker, b"first", b"\2\0\0\x50" + bytes([10, 9, 0, 1]) + bytes(8))
    send_datagram(worker, b"", proxy.DATAGRAM_ERROR.pack(socket.AF_UNSPEC, errno.ECONNREFUSED))
    vector = b"".join(MSGHDR.pack(0, 0, 0x3000, 1, 0, 0, 0) + bytes(8) for _ in range(2))
    memory = ProgramMemory(program, {0x3000: struct.pack("=QQ", 0x1000, 100), 0x4000: vector})
    p = stream_or_dgram(socket.SOCK_DGRAM)
    try:
        outcome = decide(call("recvmmsg", 0x4000, 2, 0, 0, memory=memory), p)
        assert outcome.value == 1 and (0x1000, b"first") in outcome.writes
        assert (0x4000 + 56, INT.pack(5)) in outcome.writes
    finally:
        worker.close()
        program.close()


class ConnectingStack(FakeStack):
    """A stack whose connect under way ends with `error` (SO_ERROR)."""

    def __init__(self, error):
        super().__init__()
        self.error = error

    def getsockopt(self, sock, level, name, size):
        self.calls.append(("getsockopt", level, name))
        return INT.pack(self.error)


def parked_connect(error):
    """A stream proxy whose connect ends with `error`, and both ends of its
    socketpair (the program's, the stack's)."""
    program, worker = socket.socketpair()
    return proxy.Proxy(proxy.ProxyRegistry(), SOCK, ConnectingStack(error), socket.AF_INET,
                       socket.SOCK_STREAM, 0), program, worker


def test_a_parked_connect_whose_proxy_turns_writable_is_connected_without_asking_the_stack():
    p, program, worker = parked_connect(errno.ECONNREFUSED)
    with program, worker:
        assert proxy.connected(p, program.fileno()) == Answer()
    assert p.stack.calls == []


@pytest.mark.parametrize("end", ["shutdown", "close"])
def test_a_parked_connect_whose_proxy_shows_end_of_file_fails_with_the_stacks_so_error(end):
    p, program, worker = parked_connect(errno.ECONNREFUSED)
    with program, worker:
        worker.shutdown(socket.SHUT_WR) if end == "shutdown" else worker.close()
        assert proxy.connected(p, program.fileno()) == Fail(errno.ECONNREFUSED)
    assert p.stack.calls == [("getsockopt", socket.SOL_SOCKET, socket.SO_ERROR)]


def test_a_parked_connect_whose_peer_closed_at_once_is_connected_if_so_error_says_so():
    p, program, worker = parked_connect(0)
    with program, worker:
        worker.shutdown(socket.SHUT_WR)
        assert proxy.connected(p, program.fileno()) == Answer()
