# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""Routes (vupy run --route, vustack --route): each connection of a socket
made on a default goes to the stack its destination calls for, with real
namespaces, servers and programs (curl, python).

Two namespaces, A and B, each with the same two addresses on its loopback,
HERE (10.98.0.1) and THERE (10.99.0.1), and a line server on each address
that names its namespace: a connection that reaches the wrong stack says so
in the line it reads.
"""
import json
import subprocess
import textwrap

import pytest

from helpers import PYTHON, VUPY, VUSTACK, run, vupy, wait_for

HERE, THERE, PORT = "10.98.0.1", "10.99.0.1", 8080


def _address(ns, address):
    subprocess.run(["ip", "-n", ns, "addr", "add", f"{address}/32", "dev", "lo"], check=True)


@pytest.fixture
def two(netns, server):
    """Namespaces A and B; (session options with /dev/net/a the default,
    A's name, B's name)."""
    a, b = netns(), netns()
    for ns, tag in ((a, "A"), (b, "B")):
        for address in (HERE, THERE):
            _address(ns, address)
            server(ns, PORT, f"{tag} {address}", address)
    return ["--stack", f"/dev/net/a=netns:{a}", "--stack", f"/dev/net/b=netns:{b}",
            "--default", "/dev/net/a"], a, b


CLIENT = textwrap.dedent("""
    import fcntl, json, os, socket, sys
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, bytes([1, 0, 0, 0, 7, 0, 0, 0]))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0x10)
    fd = s.fileno()
    fcntl.fcntl(fd, fcntl.F_SETFD, 0)
    if sys.argv[2] == "bound":
        s.bind(("0.0.0.0", 47123))
    s.connect((sys.argv[1], %d))
    print(json.dumps({
        "line": s.makefile().readline().strip(), "fd": s.fileno() == fd,
        "keepalive": s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        "nodelay": s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY),
        "rcvbuf": s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
        "linger": list(s.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8)),
        "tos": s.getsockopt(socket.IPPROTO_IP, socket.IP_TOS),
        "cloexec": fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC,
        "blocking": os.get_blocking(fd), "port": s.getsockname()[1]}))
""" % PORT)


def client(options, address, bound="free"):
    r = vupy(*options, "--", PYTHON, "-c", CLIENT, address, bound)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_a_route_moves_a_blocking_connect_and_keeps_its_options(two):
    options, _a, _b = two
    routed = options + ["--route", "10.99.0.0/24=/dev/net/b"]
    out = client(routed, THERE)
    assert out["line"] == f"B {THERE}"
    assert out == {"line": f"B {THERE}", "fd": True, "keepalive": 1, "nodelay": 1, "rcvbuf": 131072,
                   "linger": [1, 0, 0, 0, 7, 0, 0, 0], "tos": 0x10, "cloexec": 0, "blocking": True,
                   "port": out["port"]}
    # Without a matching route, the default: A.
    assert client(routed, HERE)["line"] == f"A {HERE}"
    assert client(options, THERE)["line"] == f"A {THERE}"


def test_a_moved_socket_keeps_its_local_port(two):
    options, _a, _b = two
    out = client(options + ["--route", f"{THERE}:{PORT}=/dev/net/b"], THERE, "bound")
    assert (out["line"], out["port"]) == (f"B {THERE}", 47123)


def test_curl_follows_routes_and_ports_and_protocols_choose(two):
    options, _a, _b = two
    for rules, want in ((["tcp:8080=/dev/net/b"], "B"), (["udp:8080=/dev/net/b"], "A"),
                        ([f"tcp:{THERE}:8081-9000=/dev/net/b", f"{THERE}:8080=/dev/net/a"], "A"),
                        ([f"{THERE}=/dev/net/b"], "B")):
        argv = [a for rule in rules for a in ("--route", rule)]
        r = vupy(*options, *argv, "--", "curl", "-s", "-m", "10", f"telnet://{THERE}:{PORT}",
                 stdin=subprocess.DEVNULL)
        assert r.stdout.split()[:1] == [want], (rules, r.stdout, r.stderr)


def test_a_route_to_a_stack_without_the_server_fails_and_never_reaches_another(netns, server):
    a, b = netns(), netns()
    _address(b, THERE)
    server(b, PORT, "B", THERE)
    base = ["--stack", f"/dev/net/a=netns:{a}", "--stack", f"/dev/net/b=netns:{b}"]
    r = vupy(*base, "--default", "/dev/net/b", "--route", f"{THERE}=/dev/net/a", "--",
             "curl", "-sS", "-m", "10", f"telnet://{THERE}:{PORT}", stdin=subprocess.DEVNULL)
    assert r.returncode != 0 and "B" not in r.stdout, (r.stdout, r.stderr)


NONBLOCKING = textwrap.dedent("""
    import errno, os, select, socket, sys
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    fd = s.fileno()
    err = s.connect_ex((sys.argv[1], %d))
    assert err in (0, errno.EINPROGRESS), err
    ep = select.epoll()
    ep.register(fd, select.EPOLLOUT)
    assert ep.poll(10), "never connected"
    assert s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
    s.setblocking(True)
    print(s.fileno() == fd, os.get_blocking(fd), s.makefile().readline().strip())
""" % PORT)


def test_a_nonblocking_connect_moves_and_completes_under_epoll(two):
    options, _a, _b = two
    r = vupy(*options, "--route", "10.99.0.0/24=/dev/net/b", "--", PYTHON, "-c", NONBLOCKING, THERE)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "True", "B", THERE]


UDP = textwrap.dedent("""
    import socket, sys
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(10)
    s.connect((sys.argv[1], 7070))
    s.send(b"ping")
    print(s.recv(100).decode())
""")
UDP_ECHO = textwrap.dedent("""
    import socket, sys
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((sys.argv[1], 7070))
    print("ready", flush=True)
    while True:
        data, peer = s.recvfrom(100)
        s.sendto(sys.argv[2].encode() + b" " + data, peer)
""")


def test_a_connected_udp_socket_moves(two):
    options, a, b = two
    echoes = [subprocess.Popen(["ip", "netns", "exec", ns, PYTHON, "-c", UDP_ECHO, THERE, tag],
                               stdout=subprocess.PIPE, text=True) for ns, tag in ((a, "A"), (b, "B"))]
    try:
        for e in echoes:
            assert e.stdout.readline().strip() == "ready"
        r = vupy(*options, "--route", f"udp:{THERE}:7070=/dev/net/b", "--", PYTHON, "-c", UDP, THERE)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "B ping"
    finally:
        for e in echoes:
            e.kill()
            e.wait()


NAMED = textwrap.dedent("""
    import socket, sys, vupy
    s = vupy.msocket("/dev/net/a", socket.AF_INET, socket.SOCK_STREAM)
    s.connect((sys.argv[1], %d))
    print(s.makefile().readline().strip())
""" % PORT)


def test_a_socket_on_a_named_stack_is_never_routed(two):
    options, _a, _b = two
    r = vupy(*options, "--default", "/dev/net/b", "--route", "10.99.0.0/24=/dev/net/b", "--",
             PYTHON, "-c", NAMED, THERE)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"A {THERE}"


BOUND_TO_DEVICE = textwrap.dedent("""
    import errno, socket, sys
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"lo")
    try:
        s.connect((sys.argv[1], %d))
    except OSError as e:
        print("EOPNOTSUPP" if e.errno == errno.EOPNOTSUPP else errno.errorcode[e.errno])
    else:
        print("connected", s.makefile().readline().strip())
""" % PORT)


def test_an_option_that_cannot_move_fails_the_connect_by_name(two):
    options, _a, _b = two
    r = vupy(*options, "--route", "10.99.0.0/24=/dev/net/b", "--trace", "--",
             PYTHON, "-c", BOUND_TO_DEVICE, THERE)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "EOPNOTSUPP"
    assert "cannot move: SO_BINDTODEVICE is set" in r.stderr


# A thread rewrites the destination while the main thread connects: whatever
# the kernel would read, each connection goes where the address vupy
# checked calls for.  HERE is A's, THERE is B's; each namespace has both
# addresses, so that a redirected connection would read the other's line.
RACE = textwrap.dedent("""
    import ctypes, socket, struct, sys, threading
    libc = ctypes.CDLL(None, use_errno=True)
    def sockaddr(ip):
        return struct.pack("=H", socket.AF_INET) + struct.pack("!H", %d) + socket.inet_aton(ip) + bytes(8)
    here, there = sockaddr(sys.argv[1]), sockaddr(sys.argv[2])
    buf = ctypes.create_string_buffer(here, 16)
    stop = False
    def flip():
        while not stop:
            ctypes.memmove(buf, there, 16)
            ctypes.memmove(buf, here, 16)
    t = threading.Thread(target=flip)
    t.start()
    lines = []
    try:
        for _ in range(int(sys.argv[3])):
            s = socket.socket()
            if libc.connect(s.fileno(), buf, 16) == 0:
                lines.append(s.makefile().readline().strip())
            s.close()
    finally:
        stop = True
        t.join()
    print("\\n".join(lines))
""" % PORT)


def test_a_thread_rewriting_the_destination_never_redirects_it(two):
    options, _a, _b = two
    r = vupy(*options, "--route", f"{THERE}=/dev/net/b", "--", PYTHON, "-c", RACE, HERE, THERE, "300")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) >= 250
    assert set(lines) <= {f"A {HERE}", f"B {THERE}"}, set(lines)


def test_vustack_adds_routes_and_lists_them(two):
    options, _a, _b = two
    script = (f"{VUSTACK}; {VUSTACK} --route {THERE}=/dev/net/b - sh -c "
              f"'{VUSTACK}; curl -s -m 10 telnet://{THERE}:{PORT}'; "
              f"curl -s -m 10 telnet://{THERE}:{PORT}")
    r = vupy(*options, "--route", "tcp:22=/dev/net/b", "--", "sh", "-c", script,
             stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "route    tcp:22 -> /dev/net/b (session route)" in lines
    assert f"route    {THERE} -> /dev/net/b" in lines
    assert lines[-2:] == [f"B {THERE}", f"A {THERE}"]


def test_vustack_route_needs_a_session_that_routes(two):
    options, _a, _b = two
    r = vupy(*options, "--", VUSTACK, "--route", f"{THERE}=/dev/net/b", "-", "true")
    assert r.returncode == 1
    assert "does not trap connect: start it with `vupy run --route RULE=PATH`" in r.stderr
    r = vupy(*options, "--route", "tcp:22=/dev/net/b", "--", VUSTACK, "--route",
             f"{THERE}=/dev/net/zz", "-", "true")
    assert r.returncode == 1 and "/dev/net/zz is not a stack of this session" in r.stderr


@pytest.mark.parametrize("option, why", [
    ("10.1.2.3/8=/dev/net/a", "host bits set"),
    ("tcp:443", "expected RULE=PATH"),
    ("10.0.0.0/8=/dev/net/nowhere", "/dev/net/nowhere is not a stack of this session"),
])
def test_bad_routes_are_refused_before_anything_runs(option, why, netns):
    ns = netns()
    r = vupy("--stack", f"/dev/net/a=netns:{ns}", "--route", option, "--", "touch", "/nonexistent/x")
    assert r.returncode == 2
    assert why in r.stderr


def test_a_session_without_routes_does_not_trap_connect(two):
    options, _a, _b = two
    r = vupy(*options, "--trace", "--", "curl", "-s", "-m", "10", f"telnet://{THERE}:{PORT}",
             stdin=subprocess.DEVNULL)
    assert r.stdout.split()[:1] == ["A"]
    assert "socket(AF_INET" in r.stderr and "connect(" not in r.stderr


def test_routes_as_an_unprivileged_user(unprivileged):
    """As uid 65534, two fresh namespaces of vupy's own, a server started
    inside the session on each (vustack), and a route between them."""
    server = ("import socket,sys\n"
              "s=socket.socket(); s.bind(('127.0.0.1', 8090)); s.listen(4)\n"
              "open(sys.argv[2], 'w').close()\n"
              "while True:\n c,_=s.accept(); c.sendall(sys.argv[1].encode()+b'\\n'); c.close()\n")
    script = (f"vustack /dev/net/a python3 -c \"$S\" A /tmp/vupyt-rt-a.$$ & "
              f"vustack /dev/net/b python3 -c \"$S\" B /tmp/vupyt-rt-b.$$ & "
              "while [ ! -e /tmp/vupyt-rt-a.$$ ] || [ ! -e /tmp/vupyt-rt-b.$$ ]; do sleep 0.1; done; "
              "rm -f /tmp/vupyt-rt-a.$$ /tmp/vupyt-rt-b.$$; "
              "curl -s -m 10 telnet://127.0.0.1:8090 </dev/null; "
              "vustack --route 127.0.0.1:8090=/dev/net/a - curl -s -m 10 telnet://127.0.0.1:8090 </dev/null; "
              "kill %1 %2")
    env = dict(unprivileged["env"], S=server)
    r = run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", unprivileged["vupy"],
             "run", "--stack", "/dev/net/a=netns:new", "--stack", "/dev/net/b=netns:new",
             "--default", "/dev/net/a", "--route", "127.0.0.1:8090=/dev/net/b", "--",
             "sh", "-c", script], env=env, cwd="/tmp")
    assert r.stdout.split() == ["B", "A"], (r.stdout, r.stderr)


def test_vupy_run_help_names_route():
    r = run([VUPY, "run", "--help"])
    assert "--route RULE=PATH" in r.stdout


def test_a_nested_session_adds_routes_to_its_callers(two):
    options, _a, _b = two
    inner = [VUPY, "run", "--route", f"{THERE}=/dev/net/b", "--",
             "curl", "-s", "-m", "10", f"telnet://{THERE}:{PORT}"]
    r = vupy(*options, "--route", "tcp:22=/dev/net/b", "--", *inner, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[:1] == ["B"]
    r = vupy(*options, "--", *inner, stdin=subprocess.DEVNULL)
    assert r.returncode == 2
    assert "the enclosing session does not trap connect" in r.stderr


ASYNCIO = textwrap.dedent("""
    import asyncio, sys
    async def main():
        reader, writer = await asyncio.open_connection(sys.argv[1], %d)
        print((await reader.readline()).decode().strip())
        writer.close()
    asyncio.run(main())
""" % PORT)

STATIC_CLIENT = r"""
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
int main(int argc, char **argv)
{
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])) };
	char line[64] = "";
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	inet_pton(AF_INET, argv[1], &to.sin_addr);
	if (connect(fd, (struct sockaddr *)&to, sizeof to) < 0)
		return perror("connect"), 1;
	ssize_t n = read(fd, line, sizeof line - 1);
	fputs(n > 0 ? line : "nothing\n", stdout);
	return 0;
}
"""


def test_asyncio_nc_and_a_static_client_follow_a_route(two, tmp_path):
    options, _a, _b = two
    source, exe = tmp_path / "client.c", tmp_path / "client"
    source.write_text(STATIC_CLIENT)
    subprocess.run(["gcc", "-static", "-O2", "-o", str(exe), str(source)], check=True)
    routed = options + ["--route", f"tcp:{THERE}:{PORT}=/dev/net/b"]
    for argv in ([PYTHON, "-c", ASYNCIO, THERE], ["nc", "-N", THERE, str(PORT)],
                 [str(exe), THERE, str(PORT)]):
        r = vupy(*routed, "--", *argv, stdin=subprocess.DEVNULL)
        assert r.returncode == 0, (argv, r.stderr)
        assert r.stdout.split()[:2] == ["B", THERE], (argv, r.stdout)
        r = vupy(*options, "--", *argv, stdin=subprocess.DEVNULL)
        assert r.stdout.split()[:2] == ["A", THERE], (argv, r.stdout)


def test_an_i386_client_follows_a_route(two, tmp_path):
    """i386 code connects through socketcall(SYS_CONNECT), its arguments
    in memory: routed all the same."""
    options, _a, _b = two
    source, exe = tmp_path / "client.c", tmp_path / "client32"
    source.write_text(STATIC_CLIENT)
    subprocess.run(["gcc", "-m32", "-static", "-O2", "-o", str(exe), str(source)], check=True)
    r = vupy(*options, "--route", f"{THERE}=/dev/net/b", "--", str(exe), THERE, str(PORT))
    assert (r.returncode, r.stdout.split()) == (0, ["B", THERE]), r.stderr
    r = vupy(*options, "--route", f"{HERE}=/dev/net/b", "--", str(exe), THERE, str(PORT))
    assert (r.returncode, r.stdout.split()) == (0, ["A", THERE]), r.stderr


BIND_SERVER = textwrap.dedent("""
    import socket, sys
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    fd = s.fileno()
    try:
        s.bind((sys.argv[1], 9000))
    except OSError as e:
        print("bind", e.errno, flush=True)
        sys.exit(0)
    s.listen(4)
    print("listening", s.fileno() == fd, s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) != 0,
          flush=True)
    c, peer = s.accept()
    c.sendall(b"served\\n")
    c.close()
""")


def test_bind_to_an_address_only_another_stack_has_moves_the_socket_there(two, netns):
    """Item 4: a multi-homed server binds an address of B while its default
    is A, and a client in B reaches it; addresses of the default, of no
    stack, or of every stack leave the socket where it is."""
    options, _a, b = two
    only_b = "10.77.0.1"
    _address(b, only_b)
    routed = options + ["--stack", f"/dev/net/c=netns:{netns()}", "--route", "tcp:22=/dev/net/b"]
    p = subprocess.Popen([VUPY, "run", *routed, "--", PYTHON, "-c", BIND_SERVER, only_b],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().split() == ["listening", "True", "True"]
        r = run(["ip", "netns", "exec", b, "curl", "-s", "-m", "10", f"telnet://{only_b}:9000"],
                stdin=subprocess.DEVNULL)
        assert r.stdout.strip() == "served"
        assert p.wait(timeout=10) == 0
    finally:
        p.kill()
        p.wait()
    r = vupy(*routed, "--", PYTHON, "-c", BIND_SERVER, "10.66.0.1")      # on no stack
    assert r.stdout.split() == ["bind", "99"]                            # EADDRNOTAVAIL
    r = vupy(*options, "--", PYTHON, "-c", BIND_SERVER, only_b)          # no routes: not trapped
    assert r.stdout.split() == ["bind", "99"]


LWIP_CLIENT = textwrap.dedent("""
    import socket, sys, time
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for _ in range(50):             # lwIP's first ARP may take a moment
        try:
            s.connect((sys.argv[1], 8080))
            break
        except OSError:
            s.close()
            s = socket.socket()
            time.sleep(0.2)
    print(s.makefile().readline().strip(), s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
""")


def test_three_stacks_two_namespaces_and_lwip(two, vde_lan, server):
    """A route to a userspace stack: the program's kernel socket is made
    anew as a proxy of lwIP, connected, and put in place of its own."""
    from vdenet import LAN_IP
    options, _a, _b = two
    server(vde_lan.ns, 8080, "LAN", LAN_IP)
    routed = options + ["--stack", vde_lan.stack("/dev/net/u"), "--route", "10.9.0.0/24=/dev/net/u",
                        "--route", f"{THERE}=/dev/net/b"]
    r = vupy(*routed, "--", PYTHON, "-c", LWIP_CLIENT, LAN_IP)
    assert (r.returncode, r.stdout.split()) == (0, ["LAN", "1"]), r.stderr
    r = vupy(*routed, "--", "curl", "-s", "-m", "10", f"telnet://{LAN_IP}:8080", stdin=subprocess.DEVNULL)
    assert r.stdout.strip() == "LAN", r.stderr
    assert client(routed, THERE)["line"] == f"B {THERE}"
    assert client(routed, HERE)["line"] == f"A {HERE}"


TIMED_OUT = textwrap.dedent("""
    import errno, socket, struct, sys
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 1, 0))
    try:
        s.connect((sys.argv[1], 80))
    except OSError as e:
        print(errno.errorcode[e.errno], s.getsockname()[1] != 0)
""")


def test_a_moved_connect_that_times_out_leaves_the_caller_the_connecting_socket(two):
    """SO_SNDTIMEO runs out during a routed blocking connect: EINPROGRESS,
    and the descriptor is the new socket, still connecting (it has a port),
    as a kernel socket's connect goes on after its timeout."""
    options, _a, b = two
    subprocess.run(["ip", "-n", b, "link", "add", "rt0", "type", "veth", "peer", "name", "rt0p"], check=True)
    for args in (["addr", "add", "10.55.0.1/24", "dev", "rt0"], ["link", "set", "rt0", "up"],
                 ["link", "set", "rt0p", "up"]):
        subprocess.run(["ip", "-n", b, *args], check=True)
    r = vupy(*options, "--route", "10.55.0.0/24=/dev/net/b", "--", PYTHON, "-c", TIMED_OUT, "10.55.0.9")
    assert r.stdout.split() == ["EINPROGRESS", "True"], (r.stdout, r.stderr)


def test_ssh_follows_a_route(two, tmp_path):
    """ssh, to an sshd that exists only in B, through a route (the sshd's
    set-up is tests/compat's)."""
    from compat.checks import SSHD, SSHD_CONFIG
    options, _a, b = two
    for key in ("host_key", "user_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / key)], check=True)
    (tmp_path / "authorized_keys").write_text((tmp_path / "user_key.pub").read_text())
    config = tmp_path / "sshd_config"
    config.write_text(SSHD_CONFIG.format(port=2222, host=THERE, dir=tmp_path))
    sshd = subprocess.Popen(["ip", "netns", "exec", b, "sh", "-c", SSHD, str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: run(["ip", "netns", "exec", b, "ss", "-Htln", "sport = :2222"]).stdout.strip(),
                 "sshd to listen")
        ssh = ["ssh", "-F", "/dev/null", "-o", "StrictHostKeyChecking=no", "-o", "BatchMode=yes",
               "-o", f"UserKnownHostsFile={tmp_path / 'known_hosts'}", "-i", str(tmp_path / "user_key"),
               "-p", "2222", f"root@{THERE}", "echo", "routed"]
        r = vupy(*options, "--route", f"{THERE}=/dev/net/b", "--", *ssh, stdin=subprocess.DEVNULL)
        assert (r.returncode, r.stdout.strip()) == (0, "routed"), r.stderr
        r = vupy(*options, "--", *ssh, stdin=subprocess.DEVNULL)       # A: no sshd there
        assert r.returncode != 0 and "routed" not in r.stdout
    finally:
        sshd.kill()
        sshd.wait()


RECONNECT = textwrap.dedent("""
    import socket, sys
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(10)
    for address in sys.argv[1:]:
        s.connect((address, 7070))
        s.send(b"ping")
        print(s.recv(100).decode())
""")


def test_a_udp_socket_connected_again_goes_where_each_destination_calls_for(two):
    """Moved to B by a route, then connected to an address no route
    matches: back on the default, A."""
    options, a, b = two
    echoes = [subprocess.Popen(["ip", "netns", "exec", ns, PYTHON, "-c", UDP_ECHO, address, tag],
                               stdout=subprocess.PIPE, text=True)
              for ns, tag in ((a, "A"), (b, "B")) for address in (HERE, THERE)]
    try:
        for e in echoes:
            assert e.stdout.readline().strip() == "ready"
        r = vupy(*options, "--route", f"{THERE}=/dev/net/b", "--", PYTHON, "-c", RECONNECT,
                 THERE, HERE, THERE)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split("\n")[:3] == ["B ping", "A ping", "B ping"]
    finally:
        for e in echoes:
            e.kill()
            e.wait()


# Per datagram (item 3): one unconnected UDP socket, datagrams to two stacks.

UDP_ECHO_ANY = textwrap.dedent("""
    import socket, sys
    s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((sys.argv[1], 7070))
    print("ready", flush=True)
    while True:
        data, peer = s.recvfrom(100)
        s.sendto(sys.argv[2].encode() + b" " + data, peer)
""")

SPANNING = textwrap.dedent("""
    import json, socket, sys
    family = socket.AF_INET6 if sys.argv[1] == "6" else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.settimeout(10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", 47124))
    fd, out = s.fileno(), []
    for i, host in enumerate(sys.argv[2:]):
        if i % 2:
            s.sendmsg([b"pi", b"ng"], [], 0, (host, 7070))
        else:
            s.sendto(b"ping", (host, 7070))
        data, peer = s.recvfrom(100)
        out.append([data.decode(), peer[0], peer[1]])
    print(json.dumps({"replies": out, "fd": s.fileno() == fd, "port": s.getsockname()[1],
                      "rcvbuf": s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)}))
""")


@pytest.fixture
def echoes(two):
    """UDP echo servers on port 7070 naming their stack: on HERE, THERE,
    127.0.0.1, fd98::1 and fd99::1 in A and B alike (each address on both)."""
    options, a, b = two
    procs = []
    for ns in (a, b):
        for address in ("fd98::1", "fd99::1"):
            subprocess.run(["ip", "-n", ns, "addr", "add", f"{address}/128", "dev", "lo", "nodad"], check=True)
    try:
        for ns, tag in ((a, "A"), (b, "B")):
            for address in (HERE, THERE, "127.0.0.1", "fd98::1", "fd99::1"):
                p = subprocess.Popen(["ip", "netns", "exec", ns, PYTHON, "-c", UDP_ECHO_ANY, address, tag],
                                     stdout=subprocess.PIPE, text=True)
                procs.append(p)
                assert p.stdout.readline().strip() == "ready"
        yield options, a, b
    finally:
        for p in procs:
            p.kill()
            p.wait()


@pytest.mark.parametrize("family", ["4", "6"])
def test_an_unconnected_udp_socket_reaches_each_stack_datagram_by_datagram(echoes, family):
    """sendto and sendmsg to destinations of A (the default) and of B (by a
    route): each datagram reaches its own stack, every reply comes back to
    the one descriptor with its sender's address, and the socket keeps its
    number, port and options; 127.0.0.1 is the default stack's."""
    options, _a, _b = echoes
    mapped = "::ffff:" if family == "6" else ""
    hosts = [mapped + HERE, mapped + THERE, mapped + "127.0.0.1", mapped + THERE]
    if family == "6":
        hosts += ["fd99::1", "fd98::1"]
    r = vupy(*options, "--route", "10.99.0.0/24=/dev/net/b", "--route", "fd99::/16=/dev/net/b", "--",
             PYTHON, "-c", SPANNING, family, *hosts)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    tags = {HERE: "A", THERE: "B", "127.0.0.1": "A", "fd98::1": "A", "fd99::1": "B"}
    assert out["replies"] == [[f"{tags[h.removeprefix(mapped) if '.' in h else h]} ping", h, 7070]
                              for h in hosts]
    assert (out["fd"], out["port"], out["rcvbuf"]) == (True, 47124, 131072)


SENDMMSG = r"""
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

/* sendmmsg: one datagram to each address given, then every reply with its
 * sender. */
int main(int argc, char **argv)
{
	struct sockaddr_in to[4], from;
	struct iovec iov[4];
	struct mmsghdr msgs[4];
	struct timeval tv = {10, 0};
	char buf[100];
	int n = argc - 1, s = socket(AF_INET, SOCK_DGRAM, 0);

	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	memset(msgs, 0, sizeof(msgs));
	for (int i = 0; i < n && i < 4; i++) {
		memset(&to[i], 0, sizeof(to[i]));
		to[i].sin_family = AF_INET;
		to[i].sin_port = htons(7070);
		inet_pton(AF_INET, argv[i + 1], &to[i].sin_addr);
		iov[i].iov_base = "ping";
		iov[i].iov_len = 4;
		msgs[i].msg_hdr.msg_name = &to[i];
		msgs[i].msg_hdr.msg_namelen = sizeof(to[i]);
		msgs[i].msg_hdr.msg_iov = &iov[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	if (sendmmsg(s, msgs, n, 0) != n) {
		perror("sendmmsg");
		return 1;
	}
	for (int i = 0; i < n; i++) {
		socklen_t len = sizeof(from);
		ssize_t got = recvfrom(s, buf, sizeof(buf) - 1, 0, (struct sockaddr *)&from, &len);
		if (got < 0) {
			perror("recvfrom");
			return 1;
		}
		buf[got] = 0;
		printf("%s from %s\n", buf, inet_ntoa(from.sin_addr));
	}
	return 0;
}
"""


@pytest.mark.parametrize("bits", ["64", "32"])
def test_a_static_client_with_sendmmsg_reaches_two_stacks(echoes, tmp_path, bits):
    """One sendmmsg with datagrams for A and B from a static binary, x86-64
    and i386 (socketcall's arguments and compat msghdr in memory)."""
    options, _a, _b = echoes
    source, exe = tmp_path / "mm.c", tmp_path / f"mm{bits}"
    source.write_text(SENDMMSG)
    subprocess.run(["gcc", f"-m{bits}", "-static", "-O2", "-o", str(exe), str(source)], check=True)
    r = vupy(*options, "--route", f"udp:{THERE}=/dev/net/b", "--", str(exe), HERE, THERE)
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.splitlines()) == [f"A ping from {HERE}", f"B ping from {THERE}"]


def test_a_udp_socket_that_stays_on_its_stack_is_not_relayed(echoes):
    """Datagrams whose routes keep them on the socket's stack go on from
    it (the kernel sends them), and a spanning socket's relays end once the
    program closes it."""
    options, _a, b = echoes
    r = vupy(*options, "--trace", "--route", "10.99.0.0/24=/dev/net/b", "--",
             PYTHON, "-c", SPANNING, "4", HERE, HERE)
    assert r.returncode == 0, r.stderr
    assert "route: 10.98.0.1:7070: no route: stays" in r.stderr and "spans" not in r.stderr
    program = textwrap.dedent("""
        import socket, subprocess, sys, time
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", 47125))
        s.settimeout(10)
        s.sendto(b"ping", (sys.argv[1], 7070))
        print(s.recvfrom(100)[0].decode(), flush=True)
        s.close()
        sys.stdin.readline()
    """)
    with subprocess.Popen([VUPY, "run", *options, "--route", "10.99.0.0/24=/dev/net/b", "--",
                           PYTHON, "-c", program, THERE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          text=True) as p:
        try:
            assert p.stdout.readline().strip() == "B ping"
            # B's relay socket, on the program's port, is gone within a sweep
            wait_for(lambda: ":47125 " not in run(["ip", "netns", "exec", b, "ss", "-uan"]).stdout,
                     "the relay socket to close", seconds=20)
        finally:
            p.communicate("\n", timeout=10)
    assert p.returncode == 0


def test_per_datagram_routes_as_an_unprivileged_user(unprivileged):
    """As uid 65534, two fresh namespaces of vupy's own with an echo
    server on 127.0.0.1 in each (started with vustack), and one socket that
    sends to both: the span namespace is made without root too."""
    echo = ("import socket,sys\n"
            "s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('127.0.0.1', int(sys.argv[2])))\n"
            "open(sys.argv[3], 'w').close()\n"
            "while True:\n d,p=s.recvfrom(100); s.sendto(sys.argv[1].encode()+b' '+d, p)\n")
    client = ("import socket\n"
              "s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(10)\n"
              "for port in (7070, 7071, 7070):\n"
              " s.sendto(b'ping', ('127.0.0.1', port)); d,p=s.recvfrom(100); print(d.decode(), p[1])\n")
    script = ("vustack /dev/net/a python3 -c \"$E\" A 7070 /tmp/vupyt-span-a.$$ & "
              "vustack /dev/net/b python3 -c \"$E\" B 7071 /tmp/vupyt-span-b.$$ & "
              "while [ ! -e /tmp/vupyt-span-a.$$ ] || [ ! -e /tmp/vupyt-span-b.$$ ]; do sleep 0.1; done; "
              "rm -f /tmp/vupyt-span-a.$$ /tmp/vupyt-span-b.$$; "
              "python3 -c \"$C\"; kill %1 %2")
    env = dict(unprivileged["env"], E=echo, C=client)
    r = run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", unprivileged["vupy"],
             "run", "--stack", "/dev/net/a=netns:new", "--stack", "/dev/net/b=netns:new",
             "--default", "/dev/net/a", "--route", "udp:127.0.0.1:7071=/dev/net/b", "--",
             "sh", "-c", script], env=env, cwd="/tmp")
    assert r.stdout.splitlines() == ["A ping 7070", "B ping 7071", "A ping 7070"], (r.stdout, r.stderr)


SPANNING_SERVER = textwrap.dedent("""
    import socket, sys
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 5353))
    print("ready", flush=True)
    for i in range(4):
        data, peer = s.recvfrom(100)
        if data == b"ask b":            # a question for B's server first: the socket spans
            s.sendto(b"ping", (sys.argv[1], 7070))
            got, source = s.recvfrom(100)
            data = got + (" from %s:%d" % source).encode()
        s.sendto(b"served " + data, peer)
""")


def test_a_udp_server_that_spans_keeps_serving_its_own_stacks_clients(echoes):
    """A server on A (its default) asks B's server something for a client:
    its socket spans, and A's clients still reach it at the same address
    and port, and get their replies from it."""
    options, a, _b = echoes
    with subprocess.Popen([VUPY, "run", *options, "--route", "10.99.0.0/24=/dev/net/b", "--",
                           PYTHON, "-c", SPANNING_SERVER, THERE], stdout=subprocess.PIPE, text=True) as server:
        try:
            assert server.stdout.readline().strip() == "ready"
            client = ("import socket\n"
                      "c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.settimeout(10)\n"
                      "for m in (b'one', b'ask b', b'two', b'three'):\n"
                      " c.sendto(m, ('%s', 5353)); d, p = c.recvfrom(200); print(d.decode(), p[1])\n" % HERE)
            r = run(["ip", "netns", "exec", a, PYTHON, "-c", client])
        finally:
            server.kill()
    assert r.stdout.splitlines() == ["served one 5353", f"served B ping from {THERE}:7070 5353",
                                     "served two 5353", "served three 5353"], (r.stdout, r.stderr)
