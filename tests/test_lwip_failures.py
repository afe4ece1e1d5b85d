# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""Connects that fail on an lwip stack fail as a kernel stack's do: an
absent neighbour in about the kernel's time (EHOSTUNREACH), a closed port at
once (ECONNREFUSED).  Each program runs on an lwip stack and, as the
reference, on a kernel stack (`vde:`) on the same switch."""
import json
import time

import pytest

import vdenet
from helpers import run
from vdenet import LAN_IP, LAN_IP6, PROGRAM_SECONDS, STACK, Lan, assert_ok, lwip_argv, py

ABSENT, ABSENT6 = "10.9.0.77", "fd09::77"       # on the link, and nobody has them
CLOSED_PORT = 7090
LATE, LATE6 = "10.9.0.5", "fd09::5"             # the namespace takes these during a connect
KERNEL_IP, KERNEL_IP6 = "10.9.0.4", "fd09::4"   # the reference kernel stack
# lwIP alone resends a SYN to an unresolved neighbour for about 31 s before it
# fails the connect; the kernel gives up after 3 solicitations 1 s apart.  A
# failure under this bound is the fast one, with room for a loaded machine.
CEILING_SECONDS = 15

# Blocking, then non-blocking connects to each HOST/PORT of argv: for each,
# how the connect ended, what poll then showed and SO_ERROR said
# (non-blocking), how a send fails after, and the seconds taken.
CONNECTS = """
    import select
    EVENTS = ('POLLIN', 'POLLOUT', 'POLLERR', 'POLLHUP', 'POLLRDHUP')
    out = {}
    for target in sys.argv[1:]:
        host, port = target.rsplit('/', 1)
        for mode in ('blocking', 'nonblocking'):
            s = socket.socket(family(host), socket.SOCK_STREAM)
            started = time.monotonic()
            if mode == 'blocking':
                try:
                    s.connect((host, int(port)))
                    result = ['connected']
                except OSError as e:
                    result = [errno.errorcode[e.errno]]
                ended = time.monotonic()
            else:
                s.setblocking(False)
                result = [errno.errorcode.get(s.connect_ex((host, int(port))), 'connected')]
                p = select.poll()
                p.register(s, sum(getattr(select, e) for e in EVENTS))
                p.poll(40000)
                ended = time.monotonic()
                # A proxy shows a failure in two wake-ups a moment apart
                # (POLLERR|POLLHUP, then POLLOUT): what counts is where it settles.
                time.sleep(0.1)
                ready = p.poll(0)
                error = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                result += [[e for e in EVENTS if ready and ready[0][1] & getattr(select, e)],
                           errno.errorcode.get(error, 'OK')]
            try:
                s.send(b'x')
                result.append('sent')
            except OSError as e:
                result.append(errno.errorcode[e.errno])
            result.append(ended - started)
            out[target + ' ' + mode] = result
            s.close()
    say(json.dumps(out))
"""


def _connects(lan, background, targets, stack_ip, stack_ip6, module, options=""):
    """Start CONNECTS on a stack of `module` on the lan (with more
    `options`); its process."""
    stack = lan.stack(ip=f"{stack_ip}/24", ip6=stack_ip6 + ("/64" if module == "vde" else ""),
                      module=module)
    return background(lwip_argv(py(CONNECTS, *targets), stack + options))


def _results(program):
    """CONNECTS' answer: (outcomes without the times, the times)."""
    status, out, err = program.finish(60)
    assert status == 0, err
    results = json.loads(out)
    return ({k: v[:-1] for k, v in results.items()}, {k: round(v[-1], 2) for k, v in results.items()})


@pytest.mark.parametrize("absent, lan_ip", [(ABSENT, LAN_IP), (ABSENT6, LAN_IP6)], ids=["ipv4", "ipv6"])
def test_connect_to_an_absent_neighbour_fails_as_on_a_kernel_stack(vde_lan, background, absent, lan_ip,
                                                                    as_user):
    """EHOSTUNREACH, blocking and non-blocking (EINPROGRESS, then poll's
    events and SO_ERROR as the kernel's, and a send fails with EPIPE), in
    about the kernel's time (printed, and below a ceiling only); a closed
    port of a neighbour is refused at once, the same way."""
    targets = [f"{absent}/{CLOSED_PORT}", f"{lan_ip}/{CLOSED_PORT}"]
    kernel = _connects(vde_lan, background, targets, KERNEL_IP, KERNEL_IP6, "vde")
    lwip = _connects(vde_lan, background, targets, "10.9.0.2", "fd09::2", "lwip")
    (expected, kernel_times), (got, lwip_times) = _results(kernel), _results(lwip)
    print(f"seconds to fail: kernel {kernel_times}, lwip {lwip_times}")
    failed = ["POLLIN", "POLLOUT", "POLLERR", "POLLHUP", "POLLRDHUP"]
    assert expected == {
        f"{absent}/{CLOSED_PORT} blocking": ["EHOSTUNREACH", "EPIPE"],
        f"{absent}/{CLOSED_PORT} nonblocking": ["EINPROGRESS", failed, "EHOSTUNREACH", "EPIPE"],
        f"{lan_ip}/{CLOSED_PORT} blocking": ["ECONNREFUSED", "EPIPE"],
        f"{lan_ip}/{CLOSED_PORT} nonblocking": ["EINPROGRESS", failed, "ECONNREFUSED", "EPIPE"]}
    assert got == expected
    assert max(lwip_times.values()) < CEILING_SECONDS, lwip_times


def test_connect_through_a_silent_gateway_fails_as_on_a_kernel_stack(vde_lan, background):
    """An address off the link, through a gateway that does not answer ARP:
    EHOSTUNREACH in about the kernel's time, as for a neighbour."""
    targets = [f"192.0.2.1/{CLOSED_PORT}"]
    gateway = ",gw=10.9.0.99"
    kernel = _connects(vde_lan, background, targets, KERNEL_IP, KERNEL_IP6, "vde", gateway)
    lwip = _connects(vde_lan, background, targets, "10.9.0.2", "fd09::2", "lwip", gateway)
    (expected, kernel_times), (got, lwip_times) = _results(kernel), _results(lwip)
    print(f"seconds to fail: kernel {kernel_times}, lwip {lwip_times}")
    assert expected == {
        f"192.0.2.1/{CLOSED_PORT} blocking": ["EHOSTUNREACH", "EPIPE"],
        f"192.0.2.1/{CLOSED_PORT} nonblocking":
            ["EINPROGRESS", ["POLLIN", "POLLOUT", "POLLERR", "POLLHUP", "POLLRDHUP"], "EHOSTUNREACH", "EPIPE"]}
    assert got == expected
    assert max(lwip_times.values()) < CEILING_SECONDS, lwip_times


@pytest.mark.parametrize("late, add", [(LATE, f"{LATE}/24"), (LATE6, f"{LATE6}/64")], ids=["ipv4", "ipv6"])
def test_a_neighbour_that_answers_late_still_gets_the_connection(vde_lan, background, late, add):
    """A neighbour that answers ARP or neighbour solicitation only after
    about 2 s (the namespace takes the address then) is connected to, as
    from a kernel stack: only a neighbour silent for the kernel's 3 s fails
    the connect."""
    server = background(vde_lan.ns_argv(py("""
        s = listener('::', 7091)
        say('ready')
        c, peer = s.accept()
        c.sendall(b'late\\n')
    """)), ready="ready")
    program = background(lwip_argv(py("""
        s = socket.socket(family(sys.argv[1]), socket.SOCK_STREAM)
        say('connecting')
        started = time.monotonic()
        try:
            s.connect((sys.argv[1], 7091))
            say(json.dumps([recvline(s).decode(), time.monotonic() - started]))
        except OSError as e:
            say(json.dumps([errno.errorcode[e.errno], time.monotonic() - started]))
    """, late), vde_lan.stack()), ready="connecting")
    # lwIP asks again each second, so an address taken 1 s in is answered
    # before 2 s are out.
    time.sleep(1)
    r = run(["ip", "-n", vde_lan.ns, "addr", "add", add, "dev", "tap0", "nodad"], timeout=PROGRAM_SECONDS)
    assert r.returncode == 0, r.stderr
    status, out, err = program.finish(60)
    assert status == 0, err
    said, seconds = json.loads(out.splitlines()[-1])
    print(f"connected to a late neighbour in {seconds:.2f} s")
    assert said == "late\n"
    server.finish()


def test_a_failed_connects_socket_is_freed_when_the_program_closes_it(vde_switch, as_user):
    """The stack lets go of the socket of a failed connect once the program
    closes it (the worker no longer holds its end of the proxy then, and
    finds out otherwise): vuumount is refused while it is open, and not
    after."""
    lan = Lan(vde_switch, None)
    runner = vdenet.RUNNER      # root, or uid 65534 (as_user)
    r = run([*runner.prefix, runner.vupy, "run", f"--stack={lan.stack()}", "--", *py("""
        import subprocess
        from vupy import msocket
        def vuumount():
            return subprocess.run(['vuumount', sys.argv[1]], capture_output=True, text=True).returncode
        s = msocket(sys.argv[1], socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.connect(('127.0.0.1', 7092))
        except OSError as e:
            say('connect', errno.errorcode[e.errno])
        say('open', vuumount())
        s.close()
        deadline = time.monotonic() + 10
        while vuumount() and time.monotonic() < deadline:
            time.sleep(0.1)
        say('closed', vuumount() if time.monotonic() >= deadline else 0)
    """, STACK)], timeout=PROGRAM_SECONDS, env=runner.env)
    assert assert_ok(r).split() == ["connect", "ECONNREFUSED", "open", "1", "closed", "0"]


# A connected UDP socket sends to each HOST/PORT of argv and receives, twice:
# with recvfrom, then with recvmsg (both served by vupy on a proxy).
UDP_REFUSED = """
    out = {}
    for target in sys.argv[1:]:
        host, port = target.rsplit('/', 1)
        u = socket.socket(family(host), socket.SOCK_DGRAM)
        u.settimeout(5)
        u.connect((host, int(port)))
        for call in ('recvfrom', 'recvmsg'):
            u.send(b'anyone?')
            try:
                getattr(u, call)(100)
                out[target + ' ' + call] = 'received'
            except OSError as e:
                out[target + ' ' + call] = errno.errorcode.get(e.errno, 'timeout')
    say(json.dumps(out))
"""


def test_connected_udp_is_refused_by_a_closed_port_as_on_a_kernel_stack(vde_lan, background):
    """The peer's ICMP or ICMPv6 port unreachable makes the next receive of
    a connected UDP socket fail with ECONNREFUSED, as on a kernel stack."""
    targets = [f"{LAN_IP}/{CLOSED_PORT}", f"{LAN_IP6}/{CLOSED_PORT}"]
    results = []
    for ip, ip6, module in ((KERNEL_IP, KERNEL_IP6 + "/64", "vde"), ("10.9.0.2", "fd09::2", "lwip")):
        stack = vde_lan.stack(ip=f"{ip}/24", ip6=ip6, module=module)
        program = background(lwip_argv(py(UDP_REFUSED, *targets), stack))
        status, out, err = program.finish(60)
        assert status == 0, err
        results.append(json.loads(out))
    kernel, lwip = results
    assert kernel == {f"{t} {call}": "ECONNREFUSED" for t in targets for call in ("recvfrom", "recvmsg")}
    assert lwip == kernel
