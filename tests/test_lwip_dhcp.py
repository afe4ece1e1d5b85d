# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""Addresses from the network for an lwip stack: ip=dhcp and ip6=auto.

dnsmasq serves DHCP and router advertisements on the tap of `vde_lan`'s
namespace (10.9.0.1, fd09::1); slirp:// serves DHCP itself.  The stack's
programs see what the network gave with `ip`, and the namespace's servers
see it as their peers' addresses.
"""
import ipaddress
import json
import os
import re
import shutil
import time

import pytest

from helpers import PYTHON, VUPY, run
from vdenet import (CLIENT, CURL, LAN_IP, LAN_IP6, PROGRAM_SECONDS, STACK, TCP_ECHO, assert_ok,
                    http_server, lines_of, lwip_argv, lwip_run, py, site)
from vupy._native import lib

POOL = (ipaddress.ip_address("10.9.0.100"), ipaddress.ip_address("10.9.0.150"))
LEASE_SECONDS = 120                     # dnsmasq's shortest
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# What the `dnsmasq` fixture serves unless told otherwise.
SERVED = [f"--dhcp-range={POOL[0]},{POOL[1]},{LEASE_SECONDS}",
          "--dhcp-option=option:router,10.9.0.1", "--dhcp-option=option:dns-server,10.9.0.53",
          "--enable-ra", "--dhcp-range=fd09::,ra-only,64,10m", "--dhcp-option=option6:dns-server,[fd09::53]"]


@pytest.fixture
def dnsmasq(vde_lan, background, tmp_path):
    """start(*options, served=SERVED) -> the Background of a dnsmasq on the
    namespace's tap serving `served`: by default DHCP (POOL, LEASE_SECONDS,
    router 10.9.0.1, DNS server 10.9.0.53) and RA (fd09::/64, DNS server
    fd09::53).  It logs each DHCP exchange on its stderr, keeps its leases
    in tmp_path/leases, and is stopped at teardown."""
    def start(*options, served=SERVED):
        return background(vde_lan.ns_argv([
            "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", "--interface=tap0",
            "--bind-interfaces", f"--dhcp-leasefile={tmp_path / 'leases'}", "--log-facility=-",
            "--log-dhcp", f"--pid-file={tmp_path / 'dnsmasq.pid'}", *served, *options]))
    return start


def acks(server):
    """The addresses of the DHCPACKs in a dnsmasq's log so far."""
    return re.findall(r"DHCPACK\(tap0\) (\S+) ", "".join(server.err))


def dhcp_stack(vde_lan, options="ip=dhcp"):
    return f"{STACK}=lwip:{vde_lan.url},{options}"


def shows(argv, then):
    """argv of a shell on the stack that runs `argv` (a shell command
    line), then execs `then`."""
    return ["sh", "-c", f'{argv} && exec "$@"', "sh", *then]


def test_dhcp_gives_the_stack_its_address_router_and_lifetime(vde_lan, dnsmasq, background, as_user):
    server = dnsmasq()
    echo = background(vde_lan.ns_argv(py(TCP_ECHO, LAN_IP, 7100)), ready="ready")
    r = lwip_run(shows("ip -4 addr show dev vde0 && ip -4 route", py(CLIENT, LAN_IP, 7100, "hello")),
                 dhcp_stack(vde_lan))
    out = assert_ok(r)
    address, length = re.search(r"inet (\S+)/(\d+) .* dynamic vde0", out).groups()
    assert POOL[0] <= ipaddress.ip_address(address) <= POOL[1] and length == "24", out
    valid, preferred = map(int, re.search(r"valid_lft (\d+)sec preferred_lft (\d+)sec", out).groups())
    assert LEASE_SECONDS - 10 <= valid <= LEASE_SECONDS and preferred == valid, out
    assert "default via 10.9.0.1 dev vde0" in out
    reply = json.loads(out.splitlines()[-1])
    assert reply["reply"] == "echo:hello\n" and reply["sock"][0] == address
    assert echo.expect("conn") == f"conn {address}"
    assert acks(server) == [address]


def test_vumount_with_dhcp(vde_lan, dnsmasq):
    dnsmasq()
    r = run([VUPY, "run", "--userspace", "--", "sh", "-c",
             f"vumount -t lwip -o ip=dhcp {vde_lan.url} {STACK} && vustack {STACK} ip -4 -br addr show dev vde0"],
            timeout=PROGRAM_SECONDS)
    address = ipaddress.ip_interface(assert_ok(r).split()[2])
    assert POOL[0] <= address.ip <= POOL[1], r.stdout


def test_dhcp_lease_is_renewed_at_t1(vde_lan, dnsmasq, background):
    """A server's T1 of 4 s: the stack renews its lease (a DHCPACK for the
    same address) while its program runs, and `ip addr` shows the lease's
    time counted again from the renewal."""
    server = dnsmasq("--dhcp-option=option:T1,4", "--dhcp-option=option:T2,8")
    program = background(lwip_argv(["sh", "-c", "sleep 7; ip -4 addr show dev vde0"], dhcp_stack(vde_lan)))
    status, out, err = program.finish()
    assert status == 0, err
    address = re.search(r"inet (\S+)/24", out).group(1)
    assert acks(server)[:2] == [address, address], "".join(server.err)
    valid = int(re.search(r"valid_lft (\d+)sec", out).group(1))
    assert valid >= LEASE_SECONDS - 4, out        # not LEASE_SECONDS - 7: renewed


def test_a_nak_at_renewal_takes_a_new_address(vde_lan, dnsmasq, background, tmp_path):
    """The server restarts with another pool, and answers the stack's renewal
    with a DHCPNAK (it is authoritative): the stack drops its address and
    takes one of the new pool."""
    first = dnsmasq("--dhcp-option=option:T1,3", "--dhcp-option=option:T2,8")
    program = background(lwip_argv(["sh", "-c", "ip -4 -br addr show dev vde0; sleep 12; "
                                    "ip -4 -br addr show dev vde0"], dhcp_stack(vde_lan)))
    old = program.expect("vde0").split()[2]
    first.stop()
    os.unlink(tmp_path / "leases")
    second = dnsmasq("--dhcp-authoritative", served=["--dhcp-range=10.9.0.200,10.9.0.210,120"])
    new = program.expect("vde0", seconds=PROGRAM_SECONDS).split()[2]
    assert program.finish()[0] == 0
    assert old.startswith("10.9.0.1") and re.match(r"10\.9\.0\.2\d\d/24$", new), (old, new)
    assert "DHCPNAK" in "".join(second.err), "".join(second.err)


def test_dhcp_and_ra_dns_servers_are_kept(vde_lan, dnsmasq):
    """What the worker says of its stack (VW_INFO) holds the DNS servers that
    DHCP and router advertisements gave, and the router the RA names."""
    dnsmasq()
    script = ("import sys; from vupy.modules.lwip import LwipStack, worker_arguments; "
              "s = LwipStack(worker_arguments(sys.argv[1], {'ip': 'dhcp', 'ip6': 'auto'})); "
              "print(s.worker.info()); s.close()")
    r = run([PYTHON, "-c", script, vde_lan.url],
            timeout=PROGRAM_SECONDS)
    info = assert_ok(r)
    assert lines_of(info, "dns") == [["4", "10.9.0.53"], ["6", "FD09::53"]], info
    assert [words[1:4] for words in lines_of(info, "route") if words[2] == "::"] == \
        [["6", "::", "0"]], info


def test_slaac_gives_the_stack_an_address_and_a_router(vde_lan, dnsmasq, background, as_user):
    dnsmasq()
    echo = background(vde_lan.ns_argv(py(TCP_ECHO, LAN_IP6, 7101)), ready="ready")
    r = lwip_run(shows("ip -6 addr show dev vde0 && ip -6 route", py(CLIENT, LAN_IP6, 7101, "six")),
                 dhcp_stack(vde_lan, "ip6=auto"))
    out = assert_ok(r)
    address = re.search(r"inet6 (fd09:\S+)/64 scope global dynamic", out).group(1)
    assert re.search(r"valid_lft \d+sec preferred_lft \d+sec", out), out
    assert re.search(r"^default via fe80::\S+ dev vde0", out, re.M), out
    assert json.loads(out.splitlines()[-1])["reply"] == "echo:six\n"
    assert echo.expect("conn") == f"conn {address}"


def test_slaac_keeps_static_addresses_too(vde_lan, dnsmasq):
    dnsmasq()
    out = assert_ok(lwip_run(["ip", "-6", "-br", "addr", "show", "dev", "vde0"],
                             dhcp_stack(vde_lan, "ip6=fd09::7+auto")))
    addresses = out.split()[2:]
    assert "fd09::7/64" in addresses and len([a for a in addresses if a.startswith("fd09:")]) == 2, out


def test_dhcp_on_slirp(background, tmp_path, as_user):
    directory, name, content = site(tmp_path)
    server = background(http_server(directory, "127.0.0.1", 0))
    port = int(re.search(r" port (\d+)", server.expect("Serving")).group(1))
    r = lwip_run(shows("ip -4 -br addr show dev vde0 && ip -4 route",
                       [*CURL, f"http://10.0.2.2:{port}/{name}"]), f"{STACK}=lwip:slirp://,ip=dhcp")
    out = assert_ok(r)
    assert re.search(r"^vde0\s+UP\s+10\.0\.2\.15/24\s*$", out, re.M), out
    assert "default via 10.0.2.2 dev vde0" in out
    assert out.endswith(content)


@pytest.mark.parametrize("options, cause", [
    ("ip=dhcp", "ip=dhcp: no DHCP server gave an address in"),
    ("ip=10.9.0.2/24,ip6=auto", "ip6=auto: no router advertisement gave an IPv6 address in"),
])
def test_no_answer_from_the_network_fails_the_stack(vde_lan, tmp_path, options, cause, as_user):
    """Nothing serves DHCP or RA on the switch: the session does not start
    (exit status 2, COMMAND never run) once the bound has passed, and says why."""
    marker = tmp_path / "started"
    began = time.monotonic()
    r = lwip_run(["touch", str(marker)], dhcp_stack(vde_lan, options))
    took = time.monotonic() - began
    assert r.returncode == 2, r
    assert f"{cause} {lib.VW_ADDRESS_SECONDS} s" in r.stderr, r.stderr
    assert lib.VW_ADDRESS_SECONDS <= took < lib.VW_ADDRESS_SECONDS + 5, took
    assert not marker.exists()


def test_dhcp_client_alone_with_sanitizers(tmp_path):
    """csrc/lwip_dhcp.c with a server played by tests/c/dhcp_client.c:
    lease, renewal, rebinding, expiry, NAK, and malformed replies, under
    the address and undefined-behaviour sanitizers."""
    if shutil.which("gcc") is None:
        pytest.skip("no gcc")
    program = tmp_path / "dhcp_client"
    r = run(["gcc", "-Wall", "-Wextra", "-Werror", "-O1", "-g", "-fsanitize=address,undefined",
             "-fno-sanitize-recover=all", "-I", os.path.join(ROOT, "csrc"), "-o", str(program),
             os.path.join(ROOT, "tests", "c", "dhcp_client.c"), os.path.join(ROOT, "csrc", "lwip_dhcp.c")],
            timeout=120)
    assert r.returncode == 0, r.stderr
    r = run([str(program)], timeout=120)
    assert (r.returncode, r.stdout) == (0, "ok\n"), r.stderr
