# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""Which trapped call is which: the Python side of the one table of
trapped calls (`vupy_traps` in csrc/supervisor.c, which also writes the
filter from it).

`classify(arch, nr)` gives a call's kind (SOCKET, SOCKETCALL, MSOCKET,
CONTROL, CREDS, EXIT, PROXY, ROOT) and name, from the table's names resolved by
libseccomp for x86_64, x32 and i386; `abi(arch, nr)` says which code made
the call.
"""
import functools

from ._abi import I386, X32, X86_64
from ._native import ffi, lib

AUDIT_ARCH_X86_64 = lib.SCMP_ARCH_X86_64
AUDIT_ARCH_I386 = lib.SCMP_ARCH_X86
X32_SYSCALL_BIT = 0x40000000

SOCKET = lib.VUPY_TRAP_SOCKET
SOCKETCALL = lib.VUPY_TRAP_SOCKETCALL
MSOCKET = lib.VUPY_TRAP_MSOCKET
CONTROL = lib.VUPY_TRAP_CONTROL
CREDS = lib.VUPY_TRAP_CREDS
EXIT = lib.VUPY_TRAP_EXIT
PROXY = lib.VUPY_TRAP_PROXY
ROOT = lib.VUPY_TRAP_ROOT


@functools.cache
def table():
    """{arch: {nr: (kind, name)}}, made when first needed (libseccomp's name
    lookups cost a few ms: not at start-up, and not at all in a session
    that traps nothing)."""
    by_arch = {AUDIT_ARCH_X86_64: {}, AUDIT_ARCH_I386: {}}
    for trap in lib.vupy_traps[0:lib.vupy_ntraps]:
        if trap.name == ffi.NULL:       # msocket and control: x86_64 numbers of their own
            by_arch[AUDIT_ARCH_X86_64][trap.nr] = (trap.kind, None)
            continue
        name = ffi.string(trap.name).decode()
        # x32 calls are the x86_64 filter's too (one AUDIT_ARCH), with numbers of their own.
        for arch, into in ((lib.SCMP_ARCH_X86_64, AUDIT_ARCH_X86_64),
                           (lib.SCMP_ARCH_X32, AUDIT_ARCH_X86_64),
                           (lib.SCMP_ARCH_X86, AUDIT_ARCH_I386)):
            nr = lib.vupy_syscall_number(arch, trap.name)
            if nr >= 0:
                by_arch[into][nr] = (trap.kind, name)
    return by_arch


UNKNOWN = (None, None)


def classify(arch, nr):
    """(kind, name) of a received call; (None, None) if the table has none."""
    return table().get(arch, {}).get(nr, UNKNOWN)


def abi(arch, nr):
    """The code that made a call: X86_64, I386 or X32."""
    if arch == AUDIT_ARCH_I386:
        return I386
    return X32 if nr > 0 and nr & X32_SYSCALL_BIT else X86_64


def numbers(arch, kind):
    """The numbers of the calls of `kind` on `arch` ({nr: name})."""
    return {nr: name for nr, (k, name) in table()[arch].items() if k == kind}
