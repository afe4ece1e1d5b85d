# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""`netns:new`: a fresh namespace with only lo, up, that carries traffic and
is gone (nothing holds it) when the session ends.
"""
import os
import re
import subprocess
import textwrap


from helpers import HOST_INODE, PYTHON, VUSTACK, finish, ns_references, started, vupy, wait_line


NS_PROBE = textwrap.dedent("""
    import fcntl, os, socket, sys, vupy
    s = vupy.msocket(sys.argv[1], socket.AF_INET, socket.SOCK_DGRAM)
    ns = fcntl.ioctl(s.fileno(), 0x894C)          # SIOCGSKNS
    print("net", os.fstat(ns).st_ino)
    print("ready", flush=True)
    sys.stdin.read()
""")


def test_netns_new_is_removed_after_session():
    known_nets = {HOST_INODE} | {os.stat(os.path.join("/run/netns", n)).st_ino
                                 for n in os.listdir("/run/netns")} if os.path.isdir("/run/netns") \
        else {HOST_INODE}
    with started(["--stack", "/dev/net/vupyt-n=netns:new", "--",
                  PYTHON, "-c", NS_PROBE, "/dev/net/vupyt-n"], stdin=subprocess.PIPE) as proc:
        lines = wait_line(proc, "ready")
        net = int(dict(line.split() for line in lines)["net"])
        assert net not in known_nets, "netns:new is not a fresh namespace"
        # control: while the session runs, the namespace is found
        assert ns_references("net", net)
        proc.stdin.close()
        assert finish(proc) == 0
    assert ns_references("net", net) == []


def test_netns_new_has_only_lo_and_it_is_up():
    r = vupy("--stack", "/dev/net/vupyt-n=netns:new", "--",
             VUSTACK, "/dev/net/vupyt-n", "ip", "-o", "link")
    assert r.returncode == 0, r.stderr
    links = r.stdout.splitlines()
    assert len(links) == 1, r.stdout
    name, flags = re.match(r"\d+: (\S+): <([^>]*)>", links[0]).groups()
    assert name == "lo"
    assert "UP" in flags.split(","), links[0]


def test_netns_new_loopback_carries_traffic():
    script = textwrap.dedent("""
        import socket, vupy
        a = vupy.msocket("/dev/net/vupyt-n", socket.AF_INET, socket.SOCK_DGRAM)
        a.bind(("127.0.0.1", 0))
        b = vupy.msocket("/dev/net/vupyt-n", socket.AF_INET, socket.SOCK_DGRAM)
        b.sendto(b"hello", a.getsockname())
        a.settimeout(10)
        print(a.recv(16).decode())
    """)
    r = vupy("--stack", "/dev/net/vupyt-n=netns:new", "--", PYTHON, "-c", script)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "hello"
