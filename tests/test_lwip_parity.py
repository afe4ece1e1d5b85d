# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""An lwip stack answers as a kernel stack does where the standard
library's own test suites (tests/stdlib) found it did not: each test runs a
program on an lwip stack on slirp:// (no switch needed: everything here
stays on the stack's own loopback)."""
import json
import textwrap

from vdenet import STACK, assert_ok, lwip_run, py

SLIRP = f"{STACK}=lwip:slirp://,ip=10.0.2.15/24,gw=10.0.2.2"


def test_listen_on_a_port_another_socket_listens_on_is_eaddrinuse():
    # asyncio's create_server sets SO_REUSEADDR, so bind succeeds and listen
    # is where the kernel refuses the second listener.
    r = lwip_run(py("""
        first = listener('127.0.0.1', 0)
        second = socket.socket()
        second.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        second.bind(first.getsockname())
        try:
            second.listen(8)
            say(json.dumps('listening'))
        except OSError as e:
            say(json.dumps(errno.errorcode[e.errno]))
    """), SLIRP)
    assert json.loads(assert_ok(r)) == "EADDRINUSE"


def test_so_oobinline_is_kept():
    # asyncore-based servers (test_ftplib's) set it on every connection
    # they accept, and stop serving if it is refused.
    r = lwip_run(py("""
        s = socket.socket()
        before = s.getsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
        say(json.dumps([before, s.getsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE)]))
    """), SLIRP)
    assert json.loads(assert_ok(r)) == [0, 1]


def test_so_reuseport_is_kept():
    # dig and host (BIND's netmgr) abort when it is refused; asyncio's
    # create_server(reuse_port=True) reads it back.
    r = lwip_run(py("""
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        before = s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind(('127.0.0.1', 0))
        say(json.dumps([before, s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)]))
    """), SLIRP)
    assert json.loads(assert_ok(r)) == [0, 1]


MMSG = """
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)

    class iovec(ctypes.Structure):
        _fields_ = [('base', ctypes.c_void_p), ('len', ctypes.c_size_t)]

    class mmsghdr(ctypes.Structure):
        _fields_ = [('name', ctypes.c_void_p), ('namelen', ctypes.c_uint32), ('iov', ctypes.POINTER(iovec)),
                    ('iovlen', ctypes.c_size_t), ('control', ctypes.c_void_p), ('controllen', ctypes.c_size_t),
                    ('flags', ctypes.c_int), ('pad', ctypes.c_int), ('len', ctypes.c_uint)]

    def vector(buffers, names=None):
        msgs = (mmsghdr * len(buffers))()
        for i, b in enumerate(buffers):
            msgs[i].iov = ctypes.pointer(iovec(ctypes.addressof(b), len(b)))
            msgs[i].iovlen = 1
            if names:
                msgs[i].name, msgs[i].namelen = ctypes.addressof(names[i]), len(names[i])
        return msgs

    def call(f, *args):
        n = f(*args)
        if n < 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
        return n
"""


def test_sendmmsg_and_recvmmsg_move_several_datagrams():
    # BIND's netmgr (dig, host) sends through libuv's sendmmsg.
    r = lwip_run(py(textwrap.dedent(MMSG) + textwrap.dedent("""
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.bind(('127.0.0.1', 0))
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tx.connect(rx.getsockname())
        out = [ctypes.create_string_buffer(b'first', 5), ctypes.create_string_buffer(b'second!', 7)]
        sent = vector(out)
        n_sent = call(libc.sendmmsg, tx.fileno(), sent, 2, 0)
        time.sleep(0.2)
        into = [ctypes.create_string_buffer(16) for _ in range(3)]
        names = [ctypes.create_string_buffer(16) for _ in range(3)]
        got = vector(into, names)
        n_got = call(libc.recvmmsg, rx.fileno(), got, 3, 0, None)
        port = socket.ntohs(int.from_bytes(names[1].raw[2:4], 'little'))
        say(json.dumps([n_sent, [m.len for m in sent], n_got,
                        [into[i].raw[:got[i].len].decode() for i in range(n_got)],
                        port == tx.getsockname()[1]]))
    """)), SLIRP)
    assert json.loads(assert_ok(r)) == [2, [5, 7], 2, ["first", "second!"], True]


def test_tcp_maxseg_and_tcp_user_timeout_are_accepted():
    # host -T (BIND's netmgr) aborts when they are refused.
    r = lwip_run(py("""
        s = socket.socket()
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1220)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 120000)
        say(json.dumps(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT)))
    """), SLIRP)
    assert json.loads(assert_ok(r)) == 120000


def test_msg_oob_data_arrives_in_the_stream():
    # ftplib's abort() sends ABOR with MSG_OOB; lwIP keeps no urgent data
    # apart, so the peer reads it inline, as with SO_OOBINLINE.
    r = lwip_run(py("""
        server = listener('127.0.0.1', 0)
        client = socket.create_connection(server.getsockname())
        conn, _ = server.accept()
        client.sendall(b'ABOR\\r\\n', socket.MSG_OOB)
        client.sendall(b'QUIT\\r\\n')
        conn.settimeout(10)
        data = b''
        while len(data) < 12:
            data += conn.recv(100)
        say(json.dumps(data.decode()))
    """), SLIRP)
    assert json.loads(assert_ok(r)) == "ABOR\r\nQUIT\r\n"


def test_interface_ioctls_answer_from_the_stack():
    # dnsmasq --bind-interfaces asks SIOCGIFFLAGS of each interface netlink
    # lists; vupy's own namespace has no vde0, and must not be the one asked.
    r = lwip_run(py("""
        import fcntl, struct
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

        def ask(request, name):
            try:
                return fcntl.ioctl(s, request, struct.pack('16s24x', name.encode()))[16:]
            except OSError as e:
                return errno.errorcode[e.errno]

        flags = ask(0x8913, 'vde0')
        address, netmask, mtu = ask(0x8915, 'vde0'), ask(0x891b, 'vde0'), ask(0x8921, 'vde0')
        say(json.dumps([struct.unpack_from('H', flags)[0] & 1, socket.inet_ntoa(address[4:8]),
                        socket.inet_ntoa(netmask[4:8]), struct.unpack_from('i', mtu)[0],
                        ask(0x8913, 'nosuch0')]))
    """), SLIRP)
    assert json.loads(assert_ok(r)) == [1, "10.0.2.15", "255.255.255.0", 1500, "ENODEV"]
