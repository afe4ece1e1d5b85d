# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""An lwip stack answers as a kernel stack does where the standard
library's own test suites (tests/stdlib) found it did not: each test runs a
program on an lwip stack on slirp:// (no switch needed: everything here
stays on the stack's own loopback)."""
import json

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
