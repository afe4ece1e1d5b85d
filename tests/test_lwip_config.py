# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""An lwip stack configured from inside with unmodified `ip`: addresses,
the link's state, MTU and MAC, and routes change as a kernel stack's do,
and what lwIP cannot do is refused with the kernel's errno and ip's usual
message.  The stack is on the switch of `vde_lan` (tests/vdenet.py), whose
namespace is the peer: 10.9.0.1, fd09::1."""
import re
import shutil
import textwrap

from vdenet import LAN_IP, LAN_IP6, LWIP_IP, TCP_ECHO, assert_ok, lines_of, lwip_argv, lwip_run, py

IP = shutil.which("ip")         # by path: uid 65534's PATH may not have sbin

# Shared by the programs on the stack: `ip` run from them, so on their stack.
CONFIG = textwrap.dedent("""
    import subprocess
    IP = sys.argv[1]

    def ip(*args):
        r = subprocess.run([IP, *args], capture_output=True, text=True)
        return r.returncode, r.stdout + r.stderr

    def echo(host, port):
        # One line to the namespace's echo server and its answer.
        s = connect(host, port)
        s.sendall(b'x\\n')
        return recvline(s).decode().strip()
""")


def on_stack(script, *args):
    return py(CONFIG + textwrap.dedent(script), IP, *args)


def test_ip_addr_add_and_del(vde_lan, background, as_user):
    """An address added with ip addr add (IPv4: an alias; IPv6: a slot of
    lwIP's) serves a peer; ip addr shows it; once deleted, binding it fails
    with EADDRNOTAVAIL and ip addr no longer shows it."""
    server = background(lwip_argv(on_stack("""
        for address in sys.argv[2:]:
            host = address.split('/')[0]
            say('add', ip('addr', 'add', address, 'dev', 'vde0')[0])
            say('shown', host in ip('-br', 'addr', 'show', 'dev', 'vde0')[1])
            s = listener(host, 7100)
            say('ready')
            c, peer = s.accept()
            c.sendall(('%s\\n' % c.getsockname()[0]).encode())
            c.close()
            s.close()
            say('del', ip('addr', 'del', address, 'dev', 'vde0')[0])
            say('shown', host in ip('-br', 'addr', 'show', 'dev', 'vde0')[1])
            say('bind', attempt(lambda: listener(host, 7100)))
    """, "10.9.0.5/24", "fd09::5/64"), vde_lan.stack()))
    ask = "say(recvline(connect(sys.argv[1], 7100)).decode().strip())"
    for host in ("10.9.0.5", "fd09::5"):
        server.expect("ready")
        assert assert_ok(vde_lan.in_ns(py(ask, host))).strip() == host
    status, out, err = server.finish()
    assert status == 0, err
    assert lines_of(out, "add") == lines_of(out, "del") == [["0"], ["0"]], out
    assert lines_of(out, "shown") == [["True"], ["False"]] * 2, out
    assert lines_of(out, "bind") == [["EADDRNOTAVAIL"]] * 2, out


def test_ip_link_set_down_and_up(vde_lan, background, as_user):
    """Down: ip link shows it, its routes go, connects fail with
    ENETUNREACH (IPv4 and IPv6), as on a kernel whose link is down; up:
    the connected routes are back and connects work again."""
    background(vde_lan.ns_argv(py(TCP_ECHO, "::", 7110)), ready="ready")
    r = lwip_run(on_stack("""
        say('before', echo(sys.argv[2], 7110), echo(sys.argv[3], 7110))
        say('down', ip('link', 'set', 'vde0', 'down')[0])
        say('state', ip('-br', 'link', 'show', 'vde0')[1].split()[1])
        say('routes', ip('route')[1].strip() or '-')
        say('connect', attempt(lambda: socket.create_connection((sys.argv[2], 7110), 5)),
            attempt(lambda: socket.create_connection((sys.argv[3], 7110), 5)),
            attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).connect((sys.argv[2], 7110))))
        say('up', ip('link', 'set', 'vde0', 'up')[0])
        say('state', ip('-br', 'link', 'show', 'vde0')[1].split()[1])
        say('routes', ip('route')[1].strip() or '-')
        say('after', echo(sys.argv[2], 7110), echo(sys.argv[3], 7110))
    """, LAN_IP, LAN_IP6), vde_lan.stack())
    out = assert_ok(r)
    assert lines_of(out, "before") == lines_of(out, "after") == [["echo:x", "echo:x"]], out
    assert lines_of(out, "state") == [["DOWN"], ["UP"]], out
    assert [" ".join(words) for words in lines_of(out, "routes")] == [
        "-", f"10.9.0.0/24 dev vde0 proto kernel scope link src {LWIP_IP}"], out
    assert lines_of(out, "connect") == [["ENETUNREACH"] * 3], out


def test_ip_link_set_mtu_shows_and_sets_tcp_maxseg(vde_lan, background):
    background(vde_lan.ns_argv(py(TCP_ECHO, LAN_IP, 7120)), ready="ready")
    r = lwip_run(on_stack("""
        s = connect(sys.argv[2], 7120)
        say('mss', s.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG))
        say('mtu', ip('link', 'set', 'vde0', 'mtu', '1280')[0])
        say('link', ip('link', 'show', 'vde0')[1].split()[4])
        s = connect(sys.argv[2], 7120)
        say('mss', s.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG))
    """, LAN_IP), vde_lan.stack())
    out = assert_ok(r)
    assert lines_of(out, "mtu") == [["0"]] and lines_of(out, "link") == [["1280"]], out
    assert lines_of(out, "mss") == [["1460"], ["1240"]], out


def test_ip_link_set_address_reaches_the_peers_neighbour_table(vde_lan, background):
    """A new MAC shows in ip link, and the peer, which knew the old one,
    learns it (the stack announces itself) and still reaches the stack."""
    background(vde_lan.ns_argv(py(TCP_ECHO, LAN_IP, 7130)), ready="ready")
    server = background(lwip_argv(on_stack("""
        say('before', echo(sys.argv[2], 7130))
        say('mac', ip('link', 'set', 'vde0', 'address', '02:00:00:00:00:77')[0])
        say('link', ip('-br', 'link', 'show', 'vde0')[1].split()[2])
        s = listener(sys.argv[3], 7131)
        say('ready')
        c, _ = s.accept()
        c.sendall(b'hi\\n')
        c.close()
    """, LAN_IP, LWIP_IP), vde_lan.stack() + ",mac=02:00:00:00:00:66"), ready="ready")
    neighbour = assert_ok(vde_lan.in_ns(["ip", "neigh", "show", LWIP_IP]))
    assert "02:00:00:00:00:77" in neighbour, neighbour
    ask = "say(recvline(connect(sys.argv[1], 7131)).decode().strip())"
    assert assert_ok(vde_lan.in_ns(py(ask, LWIP_IP))).strip() == "hi"
    status, out, err = server.finish()
    assert status == 0, err
    assert lines_of(out, "before") == [["echo:x"]] and lines_of(out, "mac") == [["0"]], out
    assert lines_of(out, "link") == [["02:00:00:00:00:77"]], out


def test_ip_route_add_and_del(vde_lan, background, as_user):
    """Without gw=, an address beyond the link (the namespace's 10.10.0.1,
    fd10::1) is unreachable (ENETUNREACH at once, as a kernel says it); a
    default route via the namespace reaches it, ip route shows it (and ip
    route get the way), and once it is deleted the address is unreachable
    again."""
    for args in (["addr", "add", "10.10.0.1/24", "dev", "tap0"],
                 ["addr", "add", "fd10::1/64", "dev", "tap0", "nodad"]):
        assert_ok(vde_lan.in_ns(["ip", *args]))
    background(vde_lan.ns_argv(py(TCP_ECHO, "::", 7140)), ready="ready")
    r = lwip_run(on_stack("""
        def tryit():
            return [attempt(lambda: socket.create_connection((h, 7140), 5)) for h in ('10.10.0.1', 'fd10::1')]
        say('before', *tryit())
        say('get', ip('route', 'get', '10.10.0.1')[1].splitlines()[0].strip())
        say('add', ip('route', 'add', 'default', 'via', sys.argv[2])[0],
            ip('-6', 'route', 'add', 'default', 'via', sys.argv[3])[0])
        say('route', ip('route', 'show', 'default')[1].strip())
        say('route', ip('-6', 'route', 'show', 'default')[1].strip())
        say('via', echo('10.10.0.1', 7140), echo('fd10::1', 7140))
        say('get', ip('route', 'get', '10.10.0.1')[1].splitlines()[0].strip())
        say('del', ip('route', 'del', 'default')[0], ip('-6', 'route', 'del', 'default')[0])
        say('route', ip('route', 'show', 'default')[1].strip() or '-')
        say('deleted', *tryit())
    """, LAN_IP, LAN_IP6), vde_lan.stack())
    out = assert_ok(r)
    assert lines_of(out, "before") == [["ENETUNREACH", "ENETUNREACH"]], out
    assert lines_of(out, "add") == [["0", "0"]], out
    assert [" ".join(words) for words in lines_of(out, "route")] == [
        f"default via {LAN_IP} dev vde0", f"default via {LAN_IP6} dev vde0", "-"], out
    assert lines_of(out, "via") == [["echo:x", "echo:x"]], out
    assert [" ".join(words) for words in lines_of(out, "get")] == [
        "RTNETLINK answers: Network is unreachable", f"10.10.0.1 via {LAN_IP} dev vde0 src {LWIP_IP}"], out
    assert lines_of(out, "del") == [["0", "0"]], out
    assert lines_of(out, "deleted") == [["ENETUNREACH", "ENETUNREACH"]], out


REFUSED = [
    # (command, ip's message, exit status)
    ("ip addr add 10.9.0.2/24 dev vde0", "RTNETLINK answers: File exists", 2),
    ("ip addr del 10.9.0.99/24 dev vde0", "RTNETLINK answers: Cannot assign requested address", 2),
    ("ip addr add 10.9.0.9/24 dev lo", "RTNETLINK answers: Operation not supported", 2),
    ("ip -6 addr add fd09::9/80 dev vde0", "RTNETLINK answers: Operation not supported", 2),
    ("ip link set vde0 mtu 60", "RTNETLINK answers: Invalid argument", 2),
    ("ip link set vde0 address 01:00:00:00:00:01", "RTNETLINK answers: Cannot assign requested address", 2),
    ("ip link set vde0 arp off", "RTNETLINK answers: Operation not supported", 2),
    ("ip link set vde0 name eth0", "RTNETLINK answers: Operation not supported", 2),
    ("ip link add dummy0 type dummy", "RTNETLINK answers: Operation not supported", 2),
    ("ip link set nosuch up", 'Cannot find device "nosuch"', 1),
    ("ip route add default via 10.99.0.1", "RTNETLINK answers: Network is unreachable", 2),
    ("ip route add 10.20.0.0/16 via 10.9.0.1", "RTNETLINK answers: Operation not supported", 2),
    ("ip route add 10.20.0.0/16 dev vde0", "RTNETLINK answers: Operation not supported", 2),
    ("ip route del 10.9.0.0/24 dev vde0", "RTNETLINK answers: Operation not supported", 2),
    ("ip route del default", "RTNETLINK answers: No such process", 2),
    ("ip route add 10.9.0.0/24 dev vde0", "RTNETLINK answers: File exists", 2),
    ("ip -6 route add fd20::/48 dev vde0", "RTNETLINK answers: Operation not supported", 2),
    ("ip -6 route add fd20::/64 dev vde0", "RTNETLINK answers: Operation not supported", 2),
    ("ip -6 route add fd20::/64 via fd09::1", "RTNETLINK answers: Operation not supported", 2),
    ("ip -6 route add default via fd0a::1", "RTNETLINK answers: Network is unreachable", 2),
]


def test_what_lwip_cannot_do_is_refused_as_the_kernel_refuses(vde_lan):
    script = "; ".join(f"{command} 2>&1; echo status=$?" for command, _message, _status in REFUSED)
    out = assert_ok(lwip_run(["sh", "-c", script + "; ip -br addr; ip route"], vde_lan.stack()))
    results = re.findall(r"^(.*)\nstatus=(\d+)$", out, re.M)
    assert [(m.strip(), int(s)) for m, s in results] == [(m, s) for _c, m, s in REFUSED], out
    # Nothing changed.
    assert re.search(rf"^vde0\s+UP\s+{LWIP_IP}/24 \S+ fd09::2/64\s*$", out, re.M), out
    assert out.rstrip().endswith(f"10.9.0.0/24 dev vde0 proto kernel scope link src {LWIP_IP}"), out
