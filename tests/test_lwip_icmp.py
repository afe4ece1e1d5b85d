# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""ICMP, socket listing and UDP-Lite on an lwip stack: ping and ping -6
(ping sockets, and raw sockets for callers with CAP_NET_RAW), ss answered
from the stack's own sockets, UDP-Lite between the stack's sockets and with
a kernel peer.

The lwIP stack under test is 10.9.0.2 (fd09::2) on the switch of `vde_lan`,
whose namespace is 10.9.0.1 (fd09::1) (tests/vdenet.py).
"""
import json
import re
import socket

import pytest

from helpers import run
from vdenet import (LAN_IP, LAN_IP6, LWIP_IP, Lan, assert_ok, lines_of, lwip_run, py)

PING = "/usr/bin/ping"
SS = "/usr/bin/ss"
IPPROTO_UDPLITE = 136


# ping ---------------------------------------------------------------------------

def test_ping_from_lwip_reaches_the_lan(vde_lan, as_user):
    r = lwip_run(["sh", "-c", f"{PING} -c 2 -W 2 {LAN_IP} && {PING} -6 -c 2 -W 2 {LAN_IP6}"],
                 vde_lan.stack())
    out = assert_ok(r)
    # The TTL (hop limit) ping shows is the peer's, delivered as ancillary data.
    assert re.search(rf"bytes from {LAN_IP}: icmp_seq=\d+ ttl=64 time=", out), out
    assert re.search(rf"bytes from {LAN_IP6}: icmp_seq=\d+ ttl=64 time=", out), out


def test_ping_of_the_stacks_own_addresses(vde_switch, as_user):
    """127.0.0.1, ::1 and the link address answer from the stack itself."""
    lan = Lan(vde_switch, None)
    r = lwip_run(["sh", "-c", f"{PING} -c 1 -W 2 127.0.0.1 && {PING} -6 -c 1 -W 2 ::1 && "
                              f"{PING} -c 1 -W 2 {LWIP_IP}"], lan.stack())
    out = assert_ok(r)
    for address in ("127.0.0.1", "::1", LWIP_IP):
        assert f"bytes from {address}: icmp_seq=1" in out


def test_ping_of_an_absent_address_fails(vde_lan):
    r = lwip_run([PING, "-c", "1", "-W", "1", "10.9.0.77"], vde_lan.stack())
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "1 packets transmitted, 0 received" in r.stdout


PING_SOCKETS = """
    def echo(s, to, ident=0, payload=b'vupy ping'):
        kind = 8 if s.family == socket.AF_INET else 128
        # A wrong identifier and checksum: the stack puts in its own.
        s.sendto(bytes([kind, 0, 0xde, 0xad]) + ident.to_bytes(2, 'big') + b'\\0\\1' + payload, to)
        s.settimeout(5)
        data, peer = s.recvfrom(1024)
        return data, peer[:2]

    def checksum(data):
        data += b'\\0' * (len(data) % 2)
        total = sum(int.from_bytes(data[i:i + 2], 'big') for i in range(0, len(data), 2))
        while total >> 16:
            total = (total & 0xFFFF) + (total >> 16)
        return total

    out = {}
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
    out['unbound'] = a.getsockname()
    a.bind(('127.0.0.1', 4242))
    out['bound'] = a.getsockname()
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
    try:
        b.bind(('127.0.0.1', 4242))
    except OSError as e:
        out['same id'] = errno.errorcode[e.errno]
    data, peer = echo(a, ('127.0.0.1', 0))
    out['reply'] = [data[0], int.from_bytes(data[4:6], 'big'), data[8:].decode(), peer, checksum(data)]
    data, peer = echo(b, ('127.0.0.1', 0), ident=7)
    out['assigned'] = [b.getsockname()[1] == int.from_bytes(data[4:6], 'big') != 0, peer]
    for bad in (bytes([13, 0, 0, 0, 0, 0, 0, 0]), b'\\x08\\0\\0'):
        try:
            a.sendto(bad, ('127.0.0.1', 0))
        except OSError as e:
            out.setdefault('bad', []).append(errno.errorcode[e.errno])
    six = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM, socket.IPPROTO_ICMPV6)
    six.bind(('::', 4243))
    data, peer = echo(six, ('::1', 0))
    out['reply6'] = [data[0], int.from_bytes(data[4:6], 'big'), data[8:].decode(), peer]
    say(json.dumps(out))
"""


def test_ping_sockets_have_the_kernels_identifier_semantics(vde_switch):
    """The identifier is the socket's port: bound, or assigned at the first
    send, and unique; the stack fills it and the checksum in; only the
    replies that carry it come back, ICMP header first, from their source."""
    lan = Lan(vde_switch, None)
    out = json.loads(assert_ok(lwip_run(py(PING_SOCKETS), lan.stack())))
    assert out == {"unbound": ["0.0.0.0", 0], "bound": ["127.0.0.1", 4242], "same id": "EADDRINUSE",
                   "reply": [0, 4242, "vupy ping", ["127.0.0.1", 0], 0xFFFF],
                   "assigned": [True, ["127.0.0.1", 0]], "bad": ["EINVAL", "EINVAL"],
                   "reply6": [129, 4243, "vupy ping", ["::1", 0]]}


RAW = """
    out = {}
    for family, protocol, to in ((socket.AF_INET, socket.IPPROTO_ICMP, '127.0.0.1'),
                                 (socket.AF_INET6, socket.IPPROTO_ICMPV6, '::1')):
        try:
            raw = socket.socket(family, socket.SOCK_RAW, protocol)
        except OSError as e:
            out[to] = errno.errorcode[e.errno]
            continue
        ping = socket.socket(family, socket.SOCK_DGRAM, protocol)
        ping.sendto(bytes([8 if family == socket.AF_INET else 128]) + bytes(7) + b'raw', (to, 0))
        raw.settimeout(5)
        seen = []
        while len(seen) < 2:        # the echo request, then its reply
            data, peer = raw.recvfrom(1024)
            icmp = data[(data[0] & 15) * 4:] if family == socket.AF_INET else data
            seen.append([data[0] >> 4 if family == socket.AF_INET else None, icmp[0], icmp[8:].decode()])
        out[to] = seen
    say(json.dumps(out))
"""


def test_raw_icmp_sockets_need_cap_net_raw(vde_switch, as_user):
    """Raw sockets see every ICMP message, IPv4 ones with their IP header
    and IPv6 ones without; uid 65534 may not make them (EPERM)."""
    lan = Lan(vde_switch, None)
    out = json.loads(assert_ok(lwip_run(py(RAW), lan.stack())))
    if as_user == "root":
        assert out == {"127.0.0.1": [[4, 8, "raw"], [4, 0, "raw"]], "::1": [[None, 128, "raw"], [None, 129, "raw"]]}
    else:
        assert out == {"127.0.0.1": "EPERM", "::1": "EPERM"}


# ss ---------------------------------------------------------------------------------

SS_SOCKETS = """
    import subprocess
    l = listener('127.0.0.1', 5601)
    c = connect('127.0.0.1', 5601)
    a, _ = l.accept()
    l6 = listener('::', 5602)
    u = listener('0.0.0.0', 5603, socket.SOCK_DGRAM)
    for args in sys.argv[1:]:
        if args == 'close':         # the connection, both ends: lwIP keeps its end a while
            c.close()
            a.close()
            time.sleep(0.5)
            continue
        r = subprocess.run([%r, *args.split()], capture_output=True, text=True)
        say('ss', args, r.returncode, json.dumps(r.stdout.splitlines()[1:]), json.dumps(r.stderr))
""" % SS


def _listed(out, args):
    """{(state, local, peer)} of what `ss ARGS` printed, and its exit status and stderr."""
    for words in lines_of(out, "ss"):
        if " ".join(words[:len(args.split())]) == args:
            status, rest = words[len(args.split())], " ".join(words[len(args.split()) + 1:])
            decoder = json.JSONDecoder()
            rows, end = decoder.raw_decode(rest)
            stderr = decoder.raw_decode(rest[end:].strip())[0]
            return {(row.split()[0], row.split()[3], row.split()[4]) for row in rows}, int(status), stderr
    raise AssertionError(f"no ss {args} in {out}")


def test_ss_lists_the_stacks_sockets_and_not_the_hosts(vde_switch):
    lan = Lan(vde_switch, None)
    with socket.socket() as host:       # a kernel listener, which the stack's ss must not show
        host.bind(("127.0.0.1", 0))
        host.listen()
        host_port = host.getsockname()[1]
        r = lwip_run(py(SS_SOCKETS, "-tan", "-uan", "-tln -4", "-tan -6", "-tlnp -6", "close", "-tan -4"),
                     lan.stack())
    out = assert_ok(r)
    tcp, status, stderr = _listed(out, "-tan")
    assert status == 0 and stderr == "", stderr
    assert ("LISTEN", "127.0.0.1:5601", "0.0.0.0:*") in tcp
    assert ("LISTEN", "*:5602", "*:*") in tcp
    established = {(local, peer) for state, local, peer in tcp if state == "ESTAB"}
    assert len(established) == 2
    client = next(local for local, peer in established if peer == "127.0.0.1:5601")
    assert (("127.0.0.1:5601", client)) in established
    assert not any(local.endswith(f":{host_port}") for _s, local, _p in tcp)
    assert _listed(out, "-uan")[0] == {("UNCONN", "0.0.0.0:5603", "0.0.0.0:*")}
    assert _listed(out, "-tln -4")[0] == {("LISTEN", "127.0.0.1:5601", "0.0.0.0:*")}
    assert _listed(out, "-tan -6")[0] == {("LISTEN", "*:5602", "*:*")}
    # -p finds the program by the proxy's inode, which ss is given.
    assert re.search(r'^ss -tlnp -6 0 .*\*:5602 .*users:\(\(\\"python', out, re.M), out
    # Closed by the program, but not yet by lwIP (TIME-WAIT, most likely).
    closing = {state for state, local, _peer in _listed(out, "-tan -4")[0] if local == client}
    assert closing and closing <= {"FIN-WAIT-1", "FIN-WAIT-2", "TIME-WAIT", "CLOSING"}, closing


def test_ss_says_what_the_stack_does_not_list(vde_switch):
    """Raw and packet sockets are not listed: ss is told so (and then reads
    /proc, the kernel's)."""
    lan = Lan(vde_switch, None)
    out = assert_ok(lwip_run(py(SS_SOCKETS, "-wan", "-0an"), lan.stack()))
    for args in ("-wan", "-0an"):
        assert "RTNETLINK answers: Protocol not supported" in _listed(out, args)[2]


# UDP-Lite ---------------------------------------------------------------------------

UDPLITE = """
    UDPLITE, SEND_CSCOV, RECV_CSCOV = 136, 10, 11
    server = socket.socket(family(sys.argv[1]), socket.SOCK_DGRAM, UDPLITE)
    server.bind((sys.argv[1], 5604))
    client = socket.socket(family(sys.argv[1]), socket.SOCK_DGRAM, UDPLITE)
    client.setsockopt(UDPLITE, SEND_CSCOV, 3)
    coverage = client.getsockopt(UDPLITE, SEND_CSCOV)
    client.sendto(b'lite', (sys.argv[1], 5604))
    server.settimeout(5)
    data, peer = server.recvfrom(100)
    server.sendto(b'back:' + data, peer)
    client.settimeout(5)
    say(json.dumps([coverage, client.recv(100).decode(), client.getsockopt(socket.SOL_SOCKET, socket.SO_PROTOCOL)]))
"""


def test_udplite_between_the_stacks_own_sockets(vde_switch):
    lan = Lan(vde_switch, None)
    for host in ("127.0.0.1", "::1"):
        out = json.loads(assert_ok(lwip_run(py(UDPLITE, host), lan.stack())))
        assert out == [8, "back:lite", IPPROTO_UDPLITE]


def _kernel_has_udplite():
    with open("/proc/net/protocols") as f:
        return any(line.split()[:1] == ["UDP-Lite"] for line in f)


@pytest.mark.skipif(not _kernel_has_udplite(), reason="this kernel has no UDP-Lite (/proc/net/protocols)")
def test_udplite_with_a_kernel_peer(vde_lan, background):
    peer = background(vde_lan.ns_argv(py("""
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, 136)
        s.bind((sys.argv[1], 5605))
        say('ready')
        data, peer = s.recvfrom(100)
        s.sendto(b'kernel:' + data, peer)
        say('from', peer[0])
    """, LAN_IP)), ready="ready")
    out = json.loads(assert_ok(lwip_run(py("""
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, 136)
        say(json.dumps(exchange(s, (sys.argv[1], 5605), b'lite')[0].decode()))
    """, LAN_IP), vde_lan.stack())))
    assert out == "kernel:lite"
    assert peer.expect("from") == f"from {LWIP_IP}"


# Waiting with a timeout, as ping does ------------------------------------------------

def test_served_receive_ends_with_so_rcvtimeo(vde_switch):
    """A blocking recvfrom served by vupy gives up as a kernel socket's does
    when SO_RCVTIMEO runs out: EAGAIN, after about that long."""
    lan = Lan(vde_switch, None)
    out = json.loads(assert_ok(lwip_run(py("""
        import struct
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(('127.0.0.1', 5606))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack('=qq', 0, 300000))
        start = time.monotonic()
        try:
            s.recvfrom(100)
            got = 'data'
        except OSError as e:
            got = errno.errorcode[e.errno]
        say(json.dumps([got, round(time.monotonic() - start, 1)]))
    """), lan.stack())))
    assert out[0] == "EAGAIN" and 0.3 <= out[1] <= 1.0, out
