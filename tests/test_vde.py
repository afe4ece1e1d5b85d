# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""The vde stack module: kernel namespaces plugged into VDE networks, mixed
with lwip stacks and ordinary namespaces on one virtual Ethernet, and a
vxvde network between two "machines" (namespaces joined by a veth pair).

The switch and its namespace (10.9.0.1, fd09::1) come from tests/vdenet.py;
the vde stack under test is 10.9.0.4 (fd09::4).
"""
import json
import os
import re
import socket
import textwrap

import pytest

from helpers import PYTHON, VUPY, VUSTACK, run
from vdenet import (LAN_IP, LAN_IP6, LWIP_IP, PROGRAM_SECONDS, STACK, STACK_DIR, TCP_ECHO, UDP_ECHO, assert_ok,
                    lines_of, lwip_argv, lwip_run, processes_with, py, two_machines, vxvde_group)

VDE_IP, VDE_IP6 = "10.9.0.4", "fd09::4"
VSTACK = os.path.join(STACK_DIR, "v")


def with_venv_path():
    """The environment, with vupy's commands (vustack) on PATH."""
    return dict(os.environ, PATH=os.path.dirname(VUPY) + os.pathsep + os.environ["PATH"])


def vde_session(stack, argv):
    """Run argv with `stack` (a --stack argument of VSTACK) as its default."""
    return lwip_run(argv, stack, default=VSTACK)


ASK = "say(recvline(connect(sys.argv[1], int(sys.argv[2]))).decode().strip())"
SEND_LINE = """
    s = connect(sys.argv[1], int(sys.argv[2]))
    s.sendall(sys.argv[3].encode() + b'\\n')
    say(recvline(s).decode().strip(), s.getsockname()[0])
"""


def test_vde_stack_reaches_a_namespace_on_the_switch(vde_lan, background, as_user):
    """Addresses from the SPEC, on vde0, and TCP over IPv4 and IPv6 to a
    namespace plugged into the same switch."""
    echo4 = background(vde_lan.ns_argv(py(TCP_ECHO, LAN_IP, 7100)), ready="ready")
    echo6 = background(vde_lan.ns_argv(py(TCP_ECHO, LAN_IP6, 7101)), ready="ready")
    stack = vde_lan.stack(VSTACK, f"{VDE_IP}/24", f"{VDE_IP6}/64", module="vde")
    out = assert_ok(vde_session(stack, ["ip", "-br", "addr", "show", "vde0"]))
    assert re.search(rf"^vde0(@vde0p)?\s+\S+\s+{VDE_IP}/24 {VDE_IP6}/64 fe80::", out, re.M), out
    out = assert_ok(vde_session(stack, py(SEND_LINE, LAN_IP, 7100, "four")))
    assert out.split() == ["echo:four", VDE_IP]
    out = assert_ok(vde_session(stack, py(SEND_LINE, LAN_IP6, 7101, "six")))
    assert out.split() == ["echo:six", VDE_IP6]
    assert echo4.expect("conn") == f"conn {VDE_IP}"
    assert echo6.expect("conn") == f"conn {VDE_IP6}"


def test_vde_stack_configured_from_inside_the_session(vde_lan, background):
    """No address in the SPEC: vde0 starts down; `vustack ... ip addr add`,
    `ip link set vde0 up` and `ip route add` inside the session configure it."""
    echo = background(vde_lan.ns_argv(py(TCP_ECHO, LAN_IP, 7102)), ready="ready")
    script = "; ".join([
        f"vustack {VSTACK} ip -br link show vde0",
        f"vustack {VSTACK} ip addr add {VDE_IP}/24 dev vde0",
        f"vustack {VSTACK} ip link set vde0 up",
        f"vustack {VSTACK} ip route add 10.99.0.0/16 via {LAN_IP}",
        f"vustack {VSTACK} ip route",
    ])
    r = run([VUPY, "run", f"--stack={VSTACK}=vde:{vde_lan.url}", "--", "sh", "-c",
             script + f"; vustack {VSTACK} \"$0\" \"$@\"", *py(SEND_LINE, LAN_IP, 7102, "set up")],
            timeout=PROGRAM_SECONDS, env=with_venv_path())
    out = assert_ok(r)
    assert re.search(r"^vde0\s+DOWN\s", out, re.M), out
    assert f"10.99.0.0/16 via {LAN_IP} dev vde0" in out
    assert out.splitlines()[-1] == f"echo:set up {VDE_IP}", out
    assert echo.expect("conn") == f"conn {VDE_IP}"


def test_vde_lwip_and_a_namespace_share_one_ethernet(vde_lan, background):
    """A vde stack, an lwip stack and an ordinary namespace on one switch:
    the namespace reaches both stacks, and the two stacks talk TCP to each
    other (vde listens, lwip connects, data both ways)."""
    script = textwrap.dedent("""
        import json, socket, sys, time
        from vupy import msocket
        l = msocket(sys.argv[2], socket.AF_INET, socket.SOCK_STREAM)
        l.bind((sys.argv[1], 7103))
        l.listen(1)
        c = msocket(sys.argv[3], socket.AF_INET, socket.SOCK_STREAM)
        for _ in range(50):
            try:
                c.connect((sys.argv[1], 7103))
                break
            except OSError:
                time.sleep(0.2)
        a, peer = l.accept()
        c.sendall(b'from lwip')
        a.sendall(b'from vde')
        print(json.dumps([a.recv(100).decode(), c.recv(100).decode(), peer[0], c.getpeername()[0]]))
    """)
    stacks = [vde_lan.stack(VSTACK, f"{VDE_IP}/24", None, module="vde"), vde_lan.stack()]
    r = run([VUPY, "run", *[f"--stack={s}" for s in stacks], "--", PYTHON, "-c", script, VDE_IP,
             VSTACK, STACK], timeout=PROGRAM_SECONDS)
    assert json.loads(assert_ok(r)) == ["from lwip", "from vde", LWIP_IP, VDE_IP]
    # And the namespace reaches each stack's listener.
    for stack, address in ((stacks[0], VDE_IP), (stacks[1], LWIP_IP)):
        server = background(lwip_argv(py(TCP_ECHO, address, 7104), stack, default=stack.split("=")[0]),
                            ready="ready")
        assert assert_ok(vde_lan.in_ns(py(SEND_LINE, address, 7104, "hello"))).split() == \
            ["echo:hello", LAN_IP]
        assert server.expect("conn") == f"conn {LAN_IP}"
        server.stop()


def test_vxvde_between_two_machines(netns, background):
    """Two "machines" (namespaces joined by a veth pair, multicast routed
    only there), vupy sessions on each with a vde stack on the same vxvde://
    group: TCP and UDP between them.  B's sessions run in B's namespace; A's
    runs here with netns=A, which puts its vde_plug on A."""
    a, b = two_machines(netns)
    group = vxvde_group()

    def on_b(ip, program):
        # vupy started in machine B's namespace: vde_plug runs there.
        return ["ip", "netns", "exec", b, VUPY, "run", f"--stack={VSTACK}=vde:{group},ip={ip}/24",
                "--", VUSTACK, VSTACK, *program]

    server = background(on_b("10.10.0.2", py(TCP_ECHO, "10.10.0.2", 7105)), ready="ready")
    udp = background(on_b("10.10.0.3", py(UDP_ECHO, "10.10.0.3", 7106)), ready="ready")
    client = py(SEND_LINE + """
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    data, peer = exchange(u, (sys.argv[4], 7106), b'dgram')
    u.sendto(b'quit', peer)
    say(data.decode(), peer[0])
    """, "10.10.0.2", 7105, "across", "10.10.0.3")
    # Machine A's session runs here, its vde_plug in A's namespace (netns=).
    out = assert_ok(vde_session(f"{VSTACK}=vde:{group},netns={a},ip=10.10.0.1/24", client)).splitlines()
    assert out == ["echo:across 10.10.0.1", "echo:dgram 10.10.0.3"], out
    assert server.expect("conn") == "conn 10.10.0.1"
    status, udp_out, err = udp.finish()
    assert status == 0, err
    assert lines_of(udp_out, "from")[0][0] == "10.10.0.1"


def test_vde_on_slirp_reaches_the_hosts_loopback(background, as_user):
    """vde0 on slirp:// (user-mode NAT, run from vupy's namespace): the
    host's 127.0.0.1 is 10.0.2.2."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    try:
        client = background(lwip_argv(py("""
            s = connect('10.0.2.2', int(sys.argv[1]))
            s.sendall(b'through slirp\\n')
            say(recvline(s).decode().strip())
        """, port), f"{VSTACK}=vde:slirp://,ip=10.0.2.15/24,gw=10.0.2.2", default=VSTACK))
        listener.settimeout(PROGRAM_SECONDS)
        conn, _ = listener.accept()
        with conn:
            conn.sendall(conn.recv(100).upper())
        status, out, err = client.finish()
        assert status == 0, err
        assert out.strip() == "THROUGH SLIRP"
    finally:
        listener.close()


def test_vde_plug_ending_is_reported(vde_lan):
    """If vde_plug dies, vupy says so and the stack's new sockets fail with
    ENETDOWN (the link is down), and nothing is left behind."""
    stack = vde_lan.stack(VSTACK, f"{VDE_IP}/24", None, module="vde")
    script = textwrap.dedent("""
        import errno, os, signal, socket, sys, time
        os.kill(int(sys.argv[1]), signal.SIGKILL)
        time.sleep(0.5)
        try:
            socket.socket()
            print('made')
        except OSError as e:
            print(errno.errorcode[e.errno])
    """)
    r = run([VUPY, "run", f"--stack={stack}", "--", "sh", "-c",
             f"{VUSTACK} {VSTACK} {PYTHON} -c \"$0\" $(pgrep -f '[v]de_plug {vde_lan.url} tap://vupy')",
             script], timeout=PROGRAM_SECONDS)
    assert assert_ok(r).strip() == "ENETDOWN"
    assert "vde_plug ended: the stack's link is down" in r.stderr
    assert not processes_with(f"{vde_lan.url} tap://vupy")


@pytest.mark.parametrize("spec, named", [
    ("vde:vde:///nonexistent/sw,ip=10.9.0.4/24", "vde_plug could not plug in"),
    ("vde:vde:///tmp/x,ip=10.9.0.4", "ip=10.9.0.4: give the prefix length"),
    ("vde:vde:///tmp/x,colour=blue", "unknown option 'colour'"),
    ("vde:vde:///tmp/x,gw=fd00::1", "gw=fd00::1: not an IPv4 address"),
    ("vde:,ip=10.9.0.4/24", "needs a SOURCE"),
    ("vde:vde:///tmp/x,netns=nonexistent-vupyt", "nonexistent-vupyt"),
])
def test_bad_vde_spec_is_refused_before_starting(spec, named):
    r = run([VUPY, "run", f"--stack={VSTACK}={spec}", "--", "echo", "started"])
    assert r.returncode == 2 and "started" not in r.stdout, r
    assert len(r.stderr.strip().splitlines()) == 1 and named in r.stderr, r.stderr


def test_vumount_vde_in_a_session(vde_lan, background):
    """vumount -t vde makes the same stack inside a session; vuumount
    removes it and its vde_plug."""
    echo = background(vde_lan.ns_argv(py(TCP_ECHO, LAN_IP, 7107)), ready="ready")
    script = "; ".join([
        f"vumount -t vde -o ip={VDE_IP}/24,mtu=1400 {vde_lan.url} /dev/net/w",
        "vustack /dev/net/w ip link show vde0",
        'vustack /dev/net/w "$0" "$@"',
        "vuumount /dev/net/w",
        "echo umount=$?",
    ])
    r = run([VUPY, "run", "--", "sh", "-c", script, *py(SEND_LINE, LAN_IP, 7107, "mounted")],
            timeout=PROGRAM_SECONDS, env=with_venv_path())
    out = assert_ok(r)
    assert re.search(r"^\d+: vde0: <.*UP.*> mtu 1400 ", out, re.M), out
    assert f"echo:mounted {VDE_IP}" in out.splitlines(), out
    assert out.splitlines()[-1] == "umount=0", out
    assert echo.expect("conn") == f"conn {VDE_IP}"
    assert not processes_with(f"{vde_lan.url} tap://vupy")
