# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""Unit tests of the numbers shared with C and the kernel: the public C
header agrees with vupy/_abi.py, the wire layouts with the kernel's
structures, and the table of trapped calls with the handlers."""
import os
import socket
import subprocess

import pytest

from vupy import _abi, _proxy, _trapped
from vupy._wire import IFREQ, IOVEC, MSGHDR

HEADERS = "#include <stddef.h>\n#include <stdio.h>\n#include <sys/socket.h>\n#include <net/if.h>\n" \
          '#include "msocket.h"\n'
CSRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "csrc")


def c_values(tmp_path, expressions):
    """The values of C expressions, as a program built with the system's cc prints them."""
    source = tmp_path / "values.c"
    body = "".join(f'\tprintf("%ld\\n", (long)({e}));\n' for e in expressions)
    source.write_text(HEADERS + "int main(void)\n{\n" + body + "\treturn 0;\n}\n")
    program = tmp_path / "values"
    subprocess.run(["cc", "-I" + CSRC, "-o", str(program), str(source)], check=True)
    return [int(v) for v in subprocess.run([str(program)], check=True, capture_output=True,
                                           text=True).stdout.split()]


def test_the_public_header_agrees_with_the_python_constants(tmp_path):
    assert c_values(tmp_path, ["__NR_msocket", "SOCK_DEFAULT"]) == [_abi.NR_MSOCKET, _abi.SOCK_DEFAULT]


def test_the_wire_layouts_are_the_kernels(tmp_path):
    fields = [("msghdr", f) for f in MSGHDR.offset] + [("iovec", f) for f in IOVEC.offset]
    expressions = [f"offsetof(struct {s}, {f})" for s, f in fields]
    expressions += ["sizeof(struct msghdr)", "sizeof(struct iovec)", "sizeof(struct ifreq)",
                    "offsetof(struct ifreq, ifr_ifindex)"]
    ours = [MSGHDR.offset[f] if s == "msghdr" else IOVEC.offset[f] for s, f in fields]
    ours += [MSGHDR.size, IOVEC.size, IFREQ.size, IFREQ.offset["ifr_ifindex"]]
    assert c_values(tmp_path, expressions) == ours


@pytest.mark.parametrize("arch, nr, kind, name", [
    (_trapped.AUDIT_ARCH_X86_64, 41, _trapped.SOCKET, "socket"),
    (_trapped.AUDIT_ARCH_X86_64, 41 | _trapped.X32_SYSCALL_BIT, _trapped.SOCKET, "socket"),
    (_trapped.AUDIT_ARCH_X86_64, _abi.NR_MSOCKET, _trapped.MSOCKET, None),
    (_trapped.AUDIT_ARCH_X86_64, _abi.NR_CONTROL, _trapped.CONTROL, None),
    (_trapped.AUDIT_ARCH_I386, 359, _trapped.SOCKET, "socket"),
    (_trapped.AUDIT_ARCH_I386, 102, _trapped.SOCKETCALL, "socketcall"),
    (_trapped.AUDIT_ARCH_I386, 81, _trapped.CREDS, "setgroups"),
    (_trapped.AUDIT_ARCH_X86_64, 231, _trapped.EXIT, "exit_group"),
    (_trapped.AUDIT_ARCH_X86_64, 49, _trapped.PROXY, "bind"),
    (_trapped.AUDIT_ARCH_X86_64, 519 | _trapped.X32_SYSCALL_BIT, _trapped.PROXY, "recvmsg"),
    (_trapped.AUDIT_ARCH_X86_64, 0, None, None),
])
def test_the_table_sorts_the_calls(arch, nr, kind, name):
    assert _trapped.classify(arch, nr) == (kind, name)


def test_every_proxy_call_trapped_has_a_handler():
    names = set(_trapped.numbers(_trapped.AUDIT_ARCH_X86_64, _trapped.PROXY).values())
    assert names == set(_proxy.HANDLERS)


@pytest.mark.parametrize("arch, nr, abi", [
    (_trapped.AUDIT_ARCH_X86_64, 41, _abi.X86_64), (_trapped.AUDIT_ARCH_X86_64, _abi.NR_MSOCKET, _abi.X86_64),
    (_trapped.AUDIT_ARCH_X86_64, 41 | _trapped.X32_SYSCALL_BIT, _abi.X32),
    (_trapped.AUDIT_ARCH_I386, 359, _abi.I386)])
def test_the_abi_of_a_call(arch, nr, abi):
    assert _trapped.abi(arch, nr) == abi


def test_kernel_families_are_the_ip_alias():
    from vupy import _families
    assert _families.parse("ip") == tuple(sorted(_abi.KERNEL_FAMILIES)) == tuple(sorted(
        (socket.AF_INET, socket.AF_INET6, socket.AF_NETLINK, socket.AF_PACKET)))
