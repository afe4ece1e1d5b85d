# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""The lwip stack module, end to end: unmodified programs (curl, python) and
vupy.msocket programs on a userspace lwIP stack attached to a VDE network.

Peers are on the VDE network (tests/vdenet.py), or on the stack's own
loopback: the lwIP stack under test is 10.9.0.2 (fd09::2) on the switch of
`vde_lan`, whose namespace is 10.9.0.1 (fd09::1).
"""
import json
import os
import re
import signal
import socket
import textwrap
import time

import pytest

from helpers import PYTHON, VUPY, VUSTACK, run
from vdenet import (CLIENT, CURL, LAN_IP, LAN_IP6, LWIP_IP, LWIP_IP6, Lan, ONE_SHOT, PRELUDE,
                    PROGRAM_SECONDS, STACK, TCP_ECHO, UDP_ECHO, assert_ok, http_server, lines_of,
                    lwip_argv, lwip_run, processes_with, py, site)


# 1, 2. Unmodified programs ---------------------------------------------------

def test_curl_on_lwip_fetches_from_namespace(vde_lan, background, tmp_path, as_user):
    directory, name, content = site(tmp_path)
    server = background(vde_lan.ns_argv(http_server(directory, LAN_IP, 8000)), ready="Serving")
    r = lwip_run([*CURL, f"http://{LAN_IP}:8000/{name}"], vde_lan.stack())
    assert assert_ok(r) == content
    assert f'{LWIP_IP} - - [' in server.stderr_with(f"GET /{name} ")


def test_http_server_on_lwip_serves_namespace_curl(vde_lan, background, tmp_path, as_user):
    directory, name, content = site(tmp_path)
    server = background(lwip_argv(http_server(directory, "0.0.0.0", 8001), vde_lan.stack()),
                        ready="Serving")
    r = vde_lan.in_ns([*CURL, "--retry", "5", "--retry-connrefused", "--retry-delay", "1",
                       f"http://{LWIP_IP}:8001/{name}"])
    assert assert_ok(r) == content
    assert f'{LAN_IP} - - [' in server.stderr_with(f"GET /{name} ")


# 3. UDP ---------------------------------------------------------------------

def test_udp_from_lwip_to_namespace_echo(vde_lan, background, as_user):
    server = background(vde_lan.ns_argv(py(UDP_ECHO, LAN_IP, 7000)), ready="ready")
    r = lwip_run(py("""
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(('0.0.0.0', 4001))
        data, peer = exchange(s, (sys.argv[1], 7000), b'ping')
        s.sendto(b'quit', peer)
        say(json.dumps([data.decode(), peer, s.getsockname()]))
    """, LAN_IP), vde_lan.stack())
    assert json.loads(assert_ok(r)) == ["echo:ping", [LAN_IP, 7000], ["0.0.0.0", 4001]]
    status, out, err = server.finish()
    assert status == 0, err
    sources = lines_of(out, "from")
    assert sources and all(words == [LWIP_IP, "4001", "ping"] for words in sources), out


def test_udp_from_namespace_to_lwip_echo(vde_lan, background, as_user):
    server = background(lwip_argv(py(UDP_ECHO, "0.0.0.0", 7001), vde_lan.stack()), ready="ready")
    r = vde_lan.in_ns(py("""
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((sys.argv[1], 4002))
        data, peer = exchange(s, (sys.argv[2], 7001), b'pong')
        s.sendto(b'quit', peer)
        say(json.dumps([data.decode(), peer]))
    """, LAN_IP, LWIP_IP))
    assert json.loads(assert_ok(r)) == ["echo:pong", [LWIP_IP, 7001]]
    status, out, err = server.finish()
    assert status == 0, err
    sources = lines_of(out, "from")
    assert sources and all(words == [LAN_IP, "4002", "pong"] for words in sources), out


# 4. IPv6 --------------------------------------------------------------------

def test_ipv6_from_lwip_to_namespace(vde_lan, background, as_user):
    server = background(vde_lan.ns_argv(py(TCP_ECHO, LAN_IP6, 7006)), ready="ready")
    r = lwip_run(py(CLIENT, LAN_IP6, 7006, "six"), vde_lan.stack())
    answer = json.loads(assert_ok(r))
    assert answer["reply"] == "echo:six\n"
    assert answer["sock"][0] == LWIP_IP6 and answer["peer"] == [LAN_IP6, 7006]
    assert server.expect("conn") == f"conn {LWIP_IP6}"


def test_ipv6_from_namespace_to_lwip(vde_lan, background, as_user):
    server = background(lwip_argv(py(ONE_SHOT, "::", 7007), vde_lan.stack()), ready="ready")
    r = vde_lan.in_ns(py(CLIENT, LWIP_IP6, 7007, "six"))
    answer = json.loads(assert_ok(r))
    assert answer["reply"] == "srv:six\n"
    assert answer["peer"] == [LWIP_IP6, 7007] and answer["sock"][0] == LAN_IP6
    status, out, err = server.finish()
    assert status == 0, err
    assert lines_of(out, "peer") == [[LAN_IP6, str(answer["sock"][1])]]


# 5. Two lwIP stacks in one session -------------------------------------------

def test_two_lwip_stacks_on_one_switch(vde_switch):
    lan = Lan(vde_switch, None)
    a, b = "/dev/net/a", "/dev/net/b"
    r = run([VUPY, "run", "--stack", lan.stack(a, "10.9.0.11/24", None),
             "--stack", lan.stack(b, "10.9.0.12/24", None), "--", *py("""
        from vupy import msocket
        a = msocket(sys.argv[1], socket.AF_INET, socket.SOCK_STREAM)
        a.bind(('10.9.0.11', 5000))
        a.listen(1)
        b = msocket(sys.argv[2], socket.AF_INET, socket.SOCK_STREAM)
        b.connect(('10.9.0.11', 5000))
        c, peer = a.accept()
        b.sendall(b'from b\\n')
        got_a = recvline(c)
        c.sendall(b'from a\\n')
        got_b = recvline(b)
        say(json.dumps({'a': got_a.decode(), 'b': got_b.decode(), 'accepted': peer,
                        'b_sock': b.getsockname(), 'b_peer': b.getpeername(),
                        'c_sock': c.getsockname(), 'c_peer': c.getpeername()}))
    """, a, b)], timeout=PROGRAM_SECONDS)
    out = json.loads(assert_ok(r))
    assert out["a"] == "from b\n" and out["b"] == "from a\n"
    assert out["b_peer"] == out["c_sock"] == ["10.9.0.11", 5000]
    assert out["b_sock"][0] == "10.9.0.12" and out["b_sock"][1] > 0
    assert out["c_peer"] == out["accepted"] == out["b_sock"]


# 5b. Each lwIP stack's own loopback --------------------------------------------

LOOPBACK = """
    out = {}
    for host in ('127.0.0.1', '::1', sys.argv[1]):
        s = listener(host, 5100)
        c = socket.socket(family(host), socket.SOCK_STREAM)
        c.connect((host, 5100))
        a, peer = s.accept()
        # Two writes: the second waits (Nagle) for the delayed ACK of the
        # first, which lwIP's timer thread sends.
        c.sendall(b'tc')
        time.sleep(0.05)
        c.sendall(b'p\\n')
        a.sendall(b'back:' + recvline(a))
        tcp = recvline(c).decode()
        u = listener(host, 5101, socket.SOCK_DGRAM)
        v = socket.socket(family(host), socket.SOCK_DGRAM)
        v.sendto(b'udp', (host, 5101))
        data, source = u.recvfrom(100)
        u.sendto(b'back:' + data, source)
        out[host] = [tcp, v.recvfrom(100)[0].decode(), peer[0], source[0]]
    # A socket bound to the link's address reaches 127.0.0.1, and back.
    s = listener('127.0.0.1', 5102)
    c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    c.bind((sys.argv[1], 0))
    c.connect(('127.0.0.1', 5102))
    a, peer = s.accept()
    c.sendall(b'bound\\n')
    out['bound'] = [recvline(a).decode(), peer[0]]
    say(json.dumps(out))
"""


def test_loopback_of_an_lwip_stack(vde_switch, as_user):
    """127.0.0.1 and ::1 of an lwIP stack carry TCP and UDP between its own
    sockets, as its link address does."""
    lan = Lan(vde_switch, None)
    out = json.loads(assert_ok(lwip_run(py(LOOPBACK, LWIP_IP), lan.stack())))
    assert out == {"127.0.0.1": ["back:tcp\n", "back:udp", "127.0.0.1", "127.0.0.1"],
                   "::1": ["back:tcp\n", "back:udp", "::1", "::1"],
                   LWIP_IP: ["back:tcp\n", "back:udp", LWIP_IP, LWIP_IP],
                   "bound": ["bound\n", LWIP_IP]}


def test_asyncio_on_lwip_loopback(vde_switch, as_user):
    lan = Lan(vde_switch, None)
    r = lwip_run(py("""
        import asyncio

        async def main():
            said = []
            for host in ('127.0.0.1', '::1'):
                async def serve(r, w):
                    w.write(b'srv:' + await r.readline())
                    await w.drain()
                    w.close()
                server = await asyncio.start_server(serve, host, 5103)
                r, w = await asyncio.open_connection(host, 5103)
                w.write(b'async\\n')
                said.append((await r.readline()).decode())
                w.close()
                server.close()
                await server.wait_closed()
            say(json.dumps(said))

        asyncio.run(main())
    """), lan.stack())
    assert json.loads(assert_ok(r)) == ["srv:async\n", "srv:async\n"]


def test_two_lwip_stacks_have_loopbacks_of_their_own(vde_switch):
    lan = Lan(vde_switch, None)
    a, b = "/dev/net/a", "/dev/net/b"
    r = run([VUPY, "run", "--stack", lan.stack(a, "10.9.0.11/24", None),
             "--stack", lan.stack(b, "10.9.0.12/24", None), "--", *py("""
        from vupy import msocket
        out = {}
        for host in ('127.0.0.1', '::1'):
            f = socket.AF_INET6 if ':' in host else socket.AF_INET
            s = msocket(sys.argv[1], f, socket.SOCK_STREAM)
            s.bind((host, 5104))
            s.listen(1)
            mine = msocket(sys.argv[1], f, socket.SOCK_STREAM)
            mine.connect((host, 5104))
            other = msocket(sys.argv[2], f, socket.SOCK_STREAM)
            try:
                other.connect((host, 5104))
                out[host] = 'connected'
            except OSError as e:
                out[host] = errno.errorcode[e.errno]
        say(json.dumps(out))
    """, a, b)], timeout=PROGRAM_SECONDS)
    assert json.loads(assert_ok(r)) == {"127.0.0.1": "ECONNREFUSED", "::1": "ECONNREFUSED"}


def test_link_frames_for_loopback_addresses_are_dropped(vde_lan, background):
    """A frame from the link for 127.0.0.1 never reaches the stack's sockets,
    while the same frame for the link address does."""
    mac = "02:00:00:00:00:02"
    server = background(lwip_argv(py("""
        s = listener('0.0.0.0', 7040, socket.SOCK_DGRAM)
        say('ready')
        got = []
        while b'link' not in got:
            got.append(s.recv(100))
        say(json.dumps([g.decode() for g in got]))
    """), vde_lan.stack() + f",mac={mac}"), ready="ready")
    r = vde_lan.in_ns(py("""
        import struct
        def checksum(header):
            total = sum(struct.unpack('!10H', header))
            total = (total & 0xffff) + (total >> 16)
            return ~((total & 0xffff) + (total >> 16)) & 0xffff
        def frame(dst, payload):
            udp = struct.pack('!HHHH', 7040, 7040, 8 + len(payload), 0) + payload
            ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                             socket.inet_aton(sys.argv[2]), socket.inet_aton(dst))
            ip = ip[:10] + struct.pack('!H', checksum(ip)) + ip[12:]
            mine = open('/sys/class/net/tap0/address').read().strip()
            return (bytes.fromhex(sys.argv[1].replace(':', '')) +
                    bytes.fromhex(mine.replace(':', '')) + b'\\x08\\x00' + ip + udp)
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        s.bind(('tap0', 0))
        for _ in range(3):
            s.send(frame('127.0.0.1', b'martian'))
            s.send(frame(sys.argv[3], b'link'))
            time.sleep(0.2)
    """, mac, LAN_IP, LWIP_IP))
    assert_ok(r)
    status, out, err = server.finish()
    assert status == 0, err
    assert json.loads(out.split("\n")[1]) == ["link"], out


def test_nothing_for_loopback_addresses_leaves_on_the_link(vde_lan, background):
    sniffer = background(vde_lan.ns_argv(py("""
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        s.bind(('tap0', 0))
        s.settimeout(0.2)
        say('ready')
        seen, deadline = [], time.monotonic() + 6
        while time.monotonic() < deadline:
            try:
                f = s.recv(65535)
            except socket.timeout:
                continue
            if f[12:14] == b'\\x08\\x00' and f[30] == 127 or \\
               f[12:14] == b'\\x86\\xdd' and bytes(15) + b'\\x01' in f[22:]:   # or ND for ::1
                seen.append(f.hex())
        say(json.dumps(seen))
    """)), ready="ready")
    r = lwip_run(py("""
        out = {}
        for host in ('127.0.0.1', '::1', '127.0.0.5'):
            c = socket.socket(family(host), socket.SOCK_STREAM)
            c.settimeout(2)
            try:
                c.connect((host, 5105))
                out[host] = 'connected'
            except OSError as e:
                out[host] = errno.errorcode.get(e.errno, 'timeout')
            u = socket.socket(family(host), socket.SOCK_DGRAM)
            u.sendto(b'x', (host, 5106))
        say(json.dumps(out))
    """), vde_lan.stack())
    status, out, err = sniffer.finish()
    assert status == 0, err
    assert json.loads(out.split("\n")[1]) == [], out
    assert json.loads(assert_ok(r)) == {"127.0.0.1": "ECONNREFUSED", "::1": "ECONNREFUSED",
                                        "127.0.0.5": "timeout"}


# 6. slirp --------------------------------------------------------------------

def test_lwip_on_slirp_reaches_host_loopback(background, tmp_path):
    directory, name, content = site(tmp_path)
    server = background(http_server(directory, "127.0.0.1", 0))
    port = int(re.search(r" port (\d+)", server.expect("Serving")).group(1))
    stack = f"{STACK}=lwip:slirp://,ip=10.0.2.15/24,gw=10.0.2.2"
    r = lwip_run([*CURL, f"http://10.0.2.2:{port}/{name}"], stack)
    assert assert_ok(r) == content
    assert "127.0.0.1 - - [" in server.stderr_with(f"GET /{name} ")


# 7. Event loops ----------------------------------------------------------------

def test_asyncio_on_lwip(vde_lan, background, as_user):
    background(vde_lan.ns_argv(py(TCP_ECHO, LAN_IP, 7010)), ready="ready")
    program = background(lwip_argv(py("""
        import asyncio

        async def main(lan):
            r, w = await asyncio.open_connection(lan, 7010)
            w.write(b'async\\n')
            await w.drain()
            say('client', (await r.readline()).decode().strip(), w.get_extra_info('sockname')[0])
            w.close()
            await w.wait_closed()
            try:
                await asyncio.open_connection(lan, 7011)
            except ConnectionRefusedError as e:
                say('refused', errno.errorcode[e.errno])
            served = asyncio.Event()

            async def serve(r, w):
                line = await r.readline()
                w.write(b'srv:' + line)
                await w.drain()
                w.close()
                say('served', w.get_extra_info('peername')[0], line.decode().strip())
                served.set()

            server = await asyncio.start_server(serve, '0.0.0.0', 7012)
            say('ready')
            await served.wait()
            server.close()
            await server.wait_closed()

        asyncio.run(main(sys.argv[1]))
    """, LAN_IP), vde_lan.stack()), ready="ready")
    r = vde_lan.in_ns(py(CLIENT, LWIP_IP, 7012, "to-async"))
    assert json.loads(assert_ok(r))["reply"] == "srv:to-async\n"
    status, out, err = program.finish()
    assert status == 0, err
    assert lines_of(out, "client") == [["echo:async", LWIP_IP]]
    assert lines_of(out, "refused") == [["ECONNREFUSED"]]
    assert lines_of(out, "served") == [[LAN_IP, "to-async"]]


def test_selectors_on_lwip(vde_lan, background, as_user):
    background(vde_lan.ns_argv(py(TCP_ECHO, LAN_IP, 7013)), ready="ready")
    r = lwip_run(py("""
        import selectors
        sel = selectors.DefaultSelector()

        def start(port):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            assert s.connect_ex((sys.argv[1], port)) == errno.EINPROGRESS
            return s

        def wait(s, events):
            sel.register(s, events)
            try:
                ready = sel.select(timeout=10)
                assert ready and ready[0][1] & events, ready
            finally:
                sel.unregister(s)

        good, closed = start(7013), start(7014)
        wait(closed, selectors.EVENT_WRITE)
        say('closed', errno.errorcode.get(closed.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR), 0))
        wait(good, selectors.EVENT_WRITE)
        say('good', good.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR), good.getpeername()[0])
        good.send(b'selected\\n')
        data = b''
        while not data.endswith(b'\\n'):
            wait(good, selectors.EVENT_READ)
            data += good.recv(100)
        say('echo', data.decode().strip())
    """, LAN_IP), vde_lan.stack())
    out = assert_ok(r)
    assert lines_of(out, "closed") == [["ECONNREFUSED"]]
    assert lines_of(out, "good") == [["0", LAN_IP]]
    assert lines_of(out, "echo") == [["echo:selected"]]


# 8. fork ---------------------------------------------------------------------

def test_fork_shares_lwip_connection(vde_lan, background, as_user):
    """The child uses the inherited connection and closes its copy; the
    parent's copy keeps the connection open until the parent closes it."""
    server = background(vde_lan.ns_argv(py(TCP_ECHO, LAN_IP, 7020)), ready="ready")
    program = background(lwip_argv(py("""
        s = connect(sys.argv[1], 7020)
        pid = os.fork()
        if pid == 0:
            s.sendall(b'child\\n')
            ok = recvline(s) == b'echo:child\\n'
            s.close()
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        say('child', os.waitstatus_to_exitcode(status))
        s.sendall(b'parent\\n')
        say('parent', recvline(s).decode().strip())
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
        say('holding', os.getpid())
        signal.sigwait([signal.SIGUSR1])
        s.sendall(b'again\\n')
        say('parent', recvline(s).decode().strip())
        s.close()
        say('closed')
    """, LAN_IP), vde_lan.stack()))
    assert program.expect("child") == "child 0"
    assert program.expect("parent") == "parent echo:parent"
    holder = int(program.expect("holding").split()[1])
    assert server.expect("conn") == f"conn {LWIP_IP}"
    assert server.expect("got") == "got child"
    assert server.expect("got") == "got parent"
    assert "eof\n" not in server.out, server.out    # the child's close did not end it
    os.kill(holder, signal.SIGUSR1)
    assert program.expect("parent") == "parent echo:again"
    program.expect("closed")
    assert server.expect("got") == "got again"
    server.expect("eof")
    status, _out, err = program.finish()
    assert status == 0, err


# 9. Signals during a blocking accept ------------------------------------------

def test_signal_interrupts_blocking_accept(vde_lan, background, as_user):
    """A SIGALRM handler that raises gets its exception out of accept(); one
    that does not lets accept go on to return a real connection."""
    program = background(lwip_argv(py("""
        s = listener('0.0.0.0', 7030)

        class Alarm(Exception):
            pass

        def raising(signum, frame):
            raise Alarm()

        signal.signal(signal.SIGALRM, raising)
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.3)
            s.accept()
            say('accepted: wrong')
        except Alarm:
            say('raised')

        def quiet(signum, frame):
            say('alarm')

        signal.signal(signal.SIGALRM, quiet)
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        c, peer = s.accept()
        say('accepted', peer[0])
        c.sendall(b'srv:' + recvline(c))
        c.close()
    """), vde_lan.stack()))
    assert program.expect("raised") == "raised"
    assert program.expect("alarm") == "alarm"
    r = vde_lan.in_ns(py(CLIENT, LWIP_IP, 7030, "late"))
    assert json.loads(assert_ok(r))["reply"] == "srv:late\n"
    status, out, err = program.finish()
    assert status == 0, err
    assert lines_of(out, "accepted") == [[LAN_IP]]


# 10. Socket options -----------------------------------------------------------

def test_socket_options_on_lwip(vde_lan):
    r = lwip_run(py("""
        def kind(s):
            return [s.getsockopt(socket.SOL_SOCKET, o)
                    for o in (socket.SO_TYPE, socket.SO_DOMAIN, socket.SO_PROTOCOL)]

        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.bind((sys.argv[1], 0))            # only lwIP has this address
        u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        nodelay = []
        for value in (1, 0, 1):
            t.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, value)
            nodelay.append(t.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        try:
            socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
            raw = 'made'
        except OSError as e:
            raw = errno.errorcode.get(e.errno, e.errno)
        say(json.dumps({'tcp': kind(t), 'udp6': kind(u), 'name': t.getsockname()[0],
                        'nodelay': [bool(v) for v in nodelay], 'raw': raw}))
    """, LWIP_IP), vde_lan.stack())
    assert json.loads(assert_ok(r)) == {
        "name": LWIP_IP,
        "tcp": [socket.SOCK_STREAM, socket.AF_INET, socket.IPPROTO_TCP],
        "udp6": [socket.SOCK_DGRAM, socket.AF_INET6, socket.IPPROTO_UDP],
        "nodelay": [True, False, True],
        "raw": "made"}              # as root, with CAP_NET_RAW (tests/test_lwip_icmp.py)


# 11. Bad SPECs ----------------------------------------------------------------

@pytest.mark.parametrize("spec, named", [
    ("lwip:vde://{dir}/sw,ip=10.9.0.2/24,colour=blue", "unknown option 'colour'"),
    ("lwip:vde://{dir}/sw,ip=10.9.0.300/24", "10.9.0.300"),
    ("lwip:vde://{dir}/sw,ip=10.9.0.2/24,gw=10.9.0", "'10.9.0'"),
    ("lwip:,ip=10.9.0.2/24", "needs a SOURCE"),
    ("lwip:vde://{dir}/sw,ip=10.9.0.2/24", "cannot open vde://{dir}/sw"),
], ids=["unknown-option", "bad-ip", "bad-gw", "no-url", "url-cannot-open"])
def test_bad_lwip_spec_is_refused_before_starting(spec, named, tmp_path):
    """Exit status 2, one line naming the problem, COMMAND never started, and
    no lwIP worker left (for the URL that cannot be opened, one was started)."""
    missing = str(tmp_path / "nonexistent")
    spec, named = spec.format(dir=missing), named.format(dir=missing)
    marker = tmp_path / "started"
    r = run([VUPY, "run", "--stack", f"{STACK}={spec}", "--", "touch", str(marker)],
            timeout=PROGRAM_SECONDS)
    assert r.returncode == 2, r
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("vupy: lwip") and named in lines[0], r.stderr
    assert not marker.exists()
    assert not processes_with(missing)


# Read-only netlink, interface names --------------------------------------------

def test_ip_and_glibc_see_lwip_interfaces(vde_lan):
    """ip addr/link/route, getaddrinfo(AI_ADDRCONFIG), if_nameindex,
    if_nametoindex and if_indextoname answer from the lwIP stack, and lo
    looks like a kernel's (test_lwip_config.py changes the stack)."""
    stack = vde_lan.stack() + ",gw=10.9.0.1,mac=02:00:00:00:00:02,mtu=1400"
    out = assert_ok(lwip_run(["sh", "-c", "ip -br addr; ip -br link; ip route; ip -6 route; ip link show lo"],
                             stack))
    addresses = re.search(r"^vde0\s+UP\s+(.*)$", out, re.M).group(1).split()
    assert sorted(addresses) == ["10.9.0.2/24", "fd09::2/64", "fe80::ff:fe00:2/64"], out
    assert re.search(r"^vde0\s+UP\s+02:00:00:00:00:02 <BROADCAST,MULTICAST,UP,LOWER_UP>", out, re.M), out
    assert "10.9.0.0/24 dev vde0 proto kernel scope link src 10.9.0.2" in out
    assert "default via 10.9.0.1 dev vde0" in out
    assert "fd09::/64 dev vde0" in out
    assert re.search(r"^lo\s+UNKNOWN\s+127.0.0.1/8 ::1/128\s*$", out, re.M), out
    assert re.search(r"^lo\s+UNKNOWN\s+00:00:00:00:00:00 <LOOPBACK,UP,LOWER_UP>", out, re.M), out
    assert "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 state UNKNOWN" in out
    assert "link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00" in out
    assert len(re.findall(r"^\S+\s+(UP|UNKNOWN)", out, re.M)) == 4, out     # lo and vde0, no eth0
    script = textwrap.dedent("""
        import json, socket
        print(json.dumps({
            "nameindex": socket.if_nameindex(),
            "index": socket.if_nametoindex("vde0"),
            "name": socket.if_indextoname(1),
            "addrconfig": sorted({a[0].name for a in socket.getaddrinfo(
                None, 80, type=socket.SOCK_STREAM, flags=socket.AI_ADDRCONFIG)})}))
    """)
    info = json.loads(assert_ok(lwip_run([PYTHON, "-c", script], stack)))
    assert info == {"nameindex": [[1, "lo"], [2, "vde0"]], "index": 2, "name": "lo",
                    "addrconfig": ["AF_INET", "AF_INET6"]}


def test_netlink_sockets_fail_with_enetdown_once_the_worker_is_lost(vde_lan):
    """The worker killed: once vupy has seen it go, the stack's netlink
    sockets fail as its inet ones do (ENETDOWN), old and new."""
    script = PRELUDE + textwrap.dedent("""
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        netlink = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\\0")
            except OSError:
                continue
            if argv[0].endswith(b"/vupy-lwip") and sys.argv[1].encode() in argv:
                os.kill(int(pid), signal.SIGKILL)
        time.sleep(0.5)
        print(attempt(lambda: udp.sendto(b"x", ("10.9.0.1", 9))))
        print(attempt(lambda: netlink.bind((0, 0))))
        print(attempt(netlink.getsockname))
        print(attempt(lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)))
    """)
    r = lwip_run([PYTHON, "-c", script, vde_lan.url], vde_lan.stack())
    assert assert_ok(r).split() == ["ENETDOWN"] * 4, r.stderr
    assert "the stack's worker exited" in r.stderr, r.stderr


def test_kernel_stack_answers_for_itself_in_a_userspace_session(vde_lan, netns):
    """In a session with an lwip stack, a process whose default is a kernel
    stack gets the kernel's answers (its calls go on natively): netlink from
    that stack's namespace, interface ioctls from its own."""
    ns = netns(iface="kv0")
    out = assert_ok(run([VUPY, "run", f"--stack={vde_lan.stack()}", f"--stack=/dev/net/k=netns:{ns}",
                         "--", VUSTACK, "/dev/net/k", "sh", "-c",
                         f"ip -br link; {PYTHON} -c 'import socket; print(socket.if_nametoindex(\"lo\"))'"],
                        timeout=PROGRAM_SECONDS))
    assert re.search(r"^kv0@kv0p\s", out, re.M) and "vde0" not in out, out
    assert out.splitlines()[-1] == "1", out


# The session's filter -------------------------------------------------------------

TRACE_CONNECT = PRELUDE + textwrap.dedent("""
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    print(s.recv(100).decode().strip(), s.getsockname()[0])
""")


@pytest.mark.parametrize("userspace", [False, True])
def test_proxy_calls_are_trapped_only_in_userspace_sessions(userspace, netns, server):
    """A kernel-only session traps no connect at all (the trace shows none);
    with --userspace, connect on a kernel socket is trapped and goes on
    natively (CONTINUE), and the program works the same."""
    ns = netns()
    server(ns, 7300, "hello from the namespace")
    argv = [VUPY, "run", "-v", f"--stack=/dev/net/k=netns:{ns}", "--default=/dev/net/k"]
    argv += ["--userspace"] if userspace else []
    r = run(argv + ["--", PYTHON, "-c", TRACE_CONNECT, "7300"], timeout=PROGRAM_SECONDS)
    assert assert_ok(r).split() == ["hello", "from", "the", "namespace", "127.0.0.1"]
    assert "socket(AF_INET, SOCK_STREAM|SOCK_CLOEXEC, IPPROTO_TCP)" in r.stderr
    connects = re.findall(r"^[\d:.]+ vupy: pid \d+: connect\(fd \d+\) -> native$", r.stderr, re.M)
    assert len(connects) == (1 if userspace else 0), r.stderr


def test_vumount_lwip_needs_a_userspace_session(vde_lan):
    """vumount -t lwip: refused (EOPNOTSUPP, saying why) in a kernel-only
    session; works with --userspace; vuumount refuses while a socket is
    open and succeeds once it is closed."""
    script = PRELUDE + textwrap.dedent("""
        import subprocess
        from vupy import msocket
        def vumount():
            return subprocess.run(["vumount", "-t", "lwip", "-o", "ip=10.9.0.7/24", sys.argv[1],
                                   "/dev/net/w"], capture_output=True, text=True)
        def vuumount():
            return subprocess.run(["vuumount", "/dev/net/w"], capture_output=True, text=True)
        r = vumount()
        print("mount", r.returncode, r.stderr.strip(), flush=True)
        if r.returncode == 0:
            s = msocket("/dev/net/w", socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("10.9.0.7", 7400))
            print("bound", s.getsockname()[0])
            r = vuumount()
            print("busy", r.returncode, r.stderr.strip())
            s.close()
            for _ in range(50):
                r = vuumount()
                if r.returncode == 0:
                    break
                time.sleep(0.1)
            print("umount", r.returncode)
    """)
    env = dict(os.environ, PATH=os.path.dirname(VUPY) + os.pathsep + os.environ["PATH"])
    plain = assert_ok(run([VUPY, "run", "--", PYTHON, "-c", script, vde_lan.url],
                          timeout=PROGRAM_SECONDS, env=env))
    assert plain.startswith("mount 1 vumount: /dev/net/w: lwip is a userspace stack"), plain
    assert "vupy run --userspace" in plain
    out = assert_ok(run([VUPY, "run", "--userspace", "--", PYTHON, "-c", script, vde_lan.url],
                        timeout=PROGRAM_SECONDS, env=env)).splitlines()
    assert out[0].strip() == "mount 0", out
    assert out[1] == "bound 10.9.0.7", out
    assert out[2].startswith("busy 1 vuumount: /dev/net/w: in use by 1 open socket"), out
    assert out[3] == "umount 0", out



# The calls vupy serves on a proxy -----------------------------------------------

def test_proxy_socket_semantics(vde_lan, background, as_user):
    """Non-blocking connect (EINPROGRESS, writable when done, SO_ERROR 0),
    half-close with shutdown(SHUT_WR), and for UDP: FIONREAD as the next
    datagram's size, MSG_PEEK, MSG_TRUNC, sendmsg/recvmsg with addresses."""
    tcp = background(vde_lan.ns_argv(py(TCP_ECHO, LAN_IP, 7010)), ready="ready")
    udp = background(vde_lan.ns_argv(py(UDP_ECHO, LAN_IP, 7011)), ready="ready")
    r = lwip_run(py("""
        import fcntl, select, struct, termios
        out = {}
        connect(sys.argv[1], 7010).close()          # the neighbour is known now
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        out['connect'] = errno.errorcode.get(s.connect_ex((sys.argv[1], 7010)), 'OK')
        out['writable'] = select.select([], [s], [], 10)[1] == [s]
        out['so_error'] = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        s.setblocking(True)
        s.sendall(b'half\\n')
        s.shutdown(socket.SHUT_WR)                  # the server sees EOF; we still read
        data = b''
        while True:
            chunk = s.recv(100)
            if not chunk:
                break
            data += chunk
        out['half_close'] = data.decode()
        s.close()

        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        exchange(u, (sys.argv[1], 7011), b'warm')
        u.settimeout(10)
        u.sendmsg([b'abc', b'def'], [], 0, (sys.argv[1], 7011))
        select.select([u], [], [], 10)
        out['fionread'] = struct.unpack('i', fcntl.ioctl(u.fileno(), termios.FIONREAD, b'\\0' * 4))[0]
        out['peek'] = u.recvfrom(100, socket.MSG_PEEK)[0].decode()
        data, anc, flags, peer = u.recvmsg(4)
        out['recvmsg'] = [data.decode(), bool(flags & socket.MSG_TRUNC), list(peer)]
        u.sendto(b'quit', (sys.argv[1], 7011))
        say(json.dumps(out))
    """, LAN_IP), vde_lan.stack())
    assert json.loads(assert_ok(r)) == {
        "connect": "EINPROGRESS", "writable": True, "so_error": 0, "half_close": "echo:half\n",
        "fionread": len("echo:abcdef"), "peek": "echo:abcdef",
        "recvmsg": ["echo", True, [LAN_IP, 7011]]}
    assert "eof" in "".join(tcp.out).split()
    status, out, err = udp.finish()
    assert status == 0, err
    assert [LWIP_IP, "abcdef"] in [[w[0], w[2]] for w in lines_of(out, "from")], out


def test_several_ipv4_addresses(vde_lan, background):
    """ip=A+B: the stack answers ARP and TCP on both addresses, shows both,
    and sends from the first on its subnet."""
    stack = f"{STACK}=lwip:{vde_lan.url},ip={LWIP_IP}/24+10.9.0.3/24"
    sink = background(vde_lan.ns_argv(py(TCP_ECHO, LAN_IP, 7021)), ready="ready")
    server = background(lwip_argv(py("""
        for host in sys.argv[1:3]:
            s = listener(host, 7020)
            say('ready')
            c, peer = s.accept()
            c.sendall(('%s %s\\n' % (c.getsockname()[0], peer[0])).encode())
            c.close()
            s.close()
        say('out', connect(sys.argv[3], 7021).getsockname()[0])
    """, LWIP_IP, "10.9.0.3", LAN_IP), stack), ready="ready")
    ask = "say(recvline(connect(sys.argv[1], 7020)).decode().strip())"
    assert assert_ok(vde_lan.in_ns(py(ask, LWIP_IP))).split() == [LWIP_IP, LAN_IP]
    server.expect("ready")
    assert assert_ok(vde_lan.in_ns(py(ask, "10.9.0.3"))).split() == ["10.9.0.3", LAN_IP]
    status, out, err = server.finish()
    assert status == 0, err
    assert lines_of(out, "out") == [[LWIP_IP]], out
    assert sink.expect("conn") == f"conn {LWIP_IP}"
    addresses = assert_ok(lwip_run(["ip", "-br", "-4", "addr"], stack)).split()
    assert addresses == ["lo", "UNKNOWN", "127.0.0.1/8", "vde0", "UP", f"{LWIP_IP}/24", "10.9.0.3/24"]


def test_many_closes_do_not_stall_data(vde_lan, background, as_user):
    """Closing many sockets while vupy has no call to make on the stack (the
    worker's reports of them wait) does not hold up data on the others."""
    echo = background(vde_lan.ns_argv(py(TCP_ECHO, LAN_IP, 7030)), ready="ready")
    r = lwip_run(py("""
        s = connect(sys.argv[1], 7030)
        many = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(1500)]
        for u in many:
            u.close()
        time.sleep(0.5)
        s.settimeout(10)
        s.sendall(b'still flowing\\n')
        say(recvline(s).decode().strip())
    """, LAN_IP), vde_lan.stack())
    assert assert_ok(r).strip() == "echo:still flowing"
    assert echo.expect("got") == "got still flowing"


# Closing the stack ------------------------------------------------------------------

# Namespace side: one connection, taken after argv[3] seconds, its bytes
# counted until EOF ('eof N'), or 'no eof N WHY' if 30 s pass without a byte
# or the end.
BYTE_COUNTER = textwrap.dedent("""
    s = listener(sys.argv[1], int(sys.argv[2]))
    say('ready')
    c, peer = s.accept()
    time.sleep(float(sys.argv[3]))
    c.settimeout(30)
    n = 0
    try:
        while chunk := c.recv(1 << 16):
            n += len(chunk)
        say('eof', n)
    except OSError as e:
        say('no eof', n, type(e).__name__)
""")


def test_session_end_delivers_a_programs_last_data_and_fin(vde_lan, background):
    """A program that writes and exits at once, without shutdown or close,
    ends its session, and with it the stack: what it wrote still reaches the
    peer, then the end, as from a kernel socket.  The peer reads nothing for
    a while, so that much is still in the proxy and in lwIP when the stack
    closes."""
    counter = background(vde_lan.ns_argv(py(BYTE_COUNTER, LAN_IP, 7040, 2)), ready="ready")
    r = lwip_run(py("""
        s = connect(sys.argv[1], 7040)
        s.settimeout(0.5)
        sent = 0
        try:
            while sent < 8 << 20:
                sent += s.send(b'x' * (1 << 16))
        except TimeoutError:
            pass
        say('sent', sent)
        os._exit(0)
    """, LAN_IP), vde_lan.stack())
    sent = int(lines_of(assert_ok(r), "sent")[0][0])
    assert counter.expect("eof", 40) == f"eof {sent}"


def test_session_end_is_not_held_by_a_silent_peer(vde_lan, background):
    """A peer that takes nothing (a full window) cannot hold the end of the
    session: the stack gives up on it after a bound, and says so."""
    background(vde_lan.ns_argv(py("""
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.bind((sys.argv[1], 7041))
        s.listen(1)
        say('ready')
        c, peer = s.accept()
        say('accepted')
        time.sleep(600)
    """, LAN_IP)), ready="ready")
    started = time.monotonic()
    r = lwip_run(py("""
        s = connect(sys.argv[1], 7041)
        s.settimeout(3)
        try:
            s.sendall(b'x' * (8 << 20))
        except TimeoutError:
            say('stalled')
        os._exit(0)
    """, LAN_IP), vde_lan.stack())
    assert assert_ok(r).strip() == "stalled"
    assert time.monotonic() - started < 20
    assert "still sending" in r.stderr, r.stderr
