# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""i386 and x32 programs cannot make a socket that bypasses routing: i386
socket(2) (nr 359) and socketcall(SYS_SOCKET) (nr 102), and x32 socket(2)
(41 with the x32 bit) are trapped like the x86_64 call and routed to the
default stack."""
import os
import shutil
import subprocess

import pytest

from helpers import run, vupy

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "c", "i386_sockets.c")


@pytest.fixture(scope="module")
def i386_binary(tmp_path_factory):
    if shutil.which("gcc") is None:
        pytest.skip("no gcc")
    out = str(tmp_path_factory.mktemp("i386") / "i386_sockets")
    r = subprocess.run(["gcc", "-m32", "-static", "-O2", "-o", out, SOURCE],
                       capture_output=True, text=True)
    if r.returncode != 0:
        # gcc-multilib and libc6-dev-i386 are in `make deps`; without them
        # the toolchain cannot build i386 programs and there is nothing to run.
        pytest.skip(f"gcc -m32 -static cannot build here: {r.stderr.strip()[:200]}")
    return out


def test_i386_sockets_are_routed_to_the_default_stack(netns, i386_binary):
    ns = netns()
    want = f"ns:{os.stat(f'/run/netns/{ns}').st_ino}"
    native = run([i386_binary])
    assert native.returncode == 0
    r = vupy("--stack", f"/dev/net/a=netns:{ns}", "--default", "/dev/net/a", "--", i386_binary)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"libc {want}", f"socket {want}", f"socketcall {want}"]


def test_i386_sockets_fail_on_a_null_default(i386_binary):
    r = vupy("--stack", "/dev/net/off=null", "--default", "/dev/net/off", "--", i386_binary)
    assert r.returncode == 0, r.stderr
    err = f"err:{__import__('errno').EAFNOSUPPORT}"
    assert r.stdout.splitlines() == [f"libc {err}", f"socket {err}", f"socketcall {err}"]


X32_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "c", "x32_socket.c")


@pytest.fixture(scope="module")
def x32_caller(tmp_path_factory):
    """An x86-64 program calling socket(2) by its x32 number: the kernel
    here has no x32 ABI (CONFIG_X86_X32_ABI), so x32 binaries cannot run,
    but the number reaches the filter all the same."""
    out = str(tmp_path_factory.mktemp("x32") / "x32_socket")
    r = subprocess.run(["gcc", "-O2", "-o", out, X32_SOURCE], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out


def test_x32_socket_is_routed_to_the_default_stack(netns, x32_caller):
    ns = netns()
    native = run([x32_caller])
    assert native.returncode == 0 and native.stdout.startswith(("errno", "ns:")), native
    r = vupy("--stack", f"/dev/net/a=netns:{ns}", "--default", "/dev/net/a", "--", x32_caller)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [f"ns:{os.stat(f'/run/netns/{ns}').st_ino}"]


def test_x32_socket_fails_on_a_null_default(x32_caller):
    r = vupy("--stack", "/dev/net/off=null", "--default", "/dev/net/off", "--", x32_caller)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["errno", str(__import__("errno").EAFNOSUPPORT)]


SERVER32 = r"""
#include <arpa/inet.h>
#include <stdio.h>
#include <sys/socket.h>
int main(void)
{
	struct sockaddr_in me = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof me;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (bind(fd, (struct sockaddr *)&me, sizeof me) < 0 || listen(fd, 1) < 0 ||
	    getsockname(fd, (struct sockaddr *)&me, &len) < 0)
		return perror("bind, listen or getsockname"), 1;
	printf("listening %d\n", ntohs(me.sin_port) != 0);
	return 0;
}
"""


def test_i386_socket_calls_go_on_in_a_session_that_traps_them(netns, tmp_path):
    """A --userspace session traps bind, listen, getsockname, ...; libseccomp
    traps i386's multiplexed forms as socketcall, which vupy must let go on
    for a kernel socket (they were once taken for socket creation: EINVAL)."""
    source, exe = tmp_path / "server.c", tmp_path / "server32"
    source.write_text(SERVER32)
    r = subprocess.run(["gcc", "-m32", "-static", "-O2", "-o", str(exe), str(source)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"gcc -m32 -static cannot build here: {r.stderr.strip()[:200]}")
    ns = netns()
    r = vupy("--userspace", "--stack", f"/dev/net/a=netns:{ns}", "--default", "/dev/net/a", "--",
             str(exe))
    assert (r.returncode, r.stdout.strip()) == (0, "listening 1"), r.stderr
