# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""The numbers vupy shares with the programs it serves and with its C parts,
each defined once.

Plain Python with no import of vupy's C extension: vupy/_wrapper.py (which
any python3 in a session imports, cffi or not) takes them from here, and
csrc/build_native.py hands them to the C compiler as macros (`C_MACROS`),
so that csrc/supervisor.c and csrc/fastpath.c cannot disagree with Python.
csrc/msocket.h, the public C header, keeps its own copy of VUOS's
`__NR_msocket` and `SOCK_DEFAULT`; tests/test_unit_abi.py checks they agree.
"""
import socket

NR_MSOCKET = -5         # VUOS's virtual system call number for msocket
NR_CONTROL = -1000      # vupy's control call: see vupy/_control.py
SOCK_DEFAULT = 0        # msocket's type that selects a default stack (VUOS)
SOCK_PROBE = -1         # msocket's type that asks whether a stack serves a family (VUOS)
CAP_SYS_ADMIN = 21      # linux/capability.h
X86_64, I386, X32 = "x86_64", "i386", "x32"     # the code that made a call (its ABI)

# The families a kernel network namespace serves, as VUOS's stacks do.
KERNEL_FAMILIES = frozenset(
    (socket.AF_INET, socket.AF_INET6, socket.AF_NETLINK, socket.AF_PACKET)
)

C_MACROS = [
    ("VUPY_NR_MSOCKET", f"({NR_MSOCKET})"),
    ("VUPY_NR_CONTROL", f"({NR_CONTROL})"),
    ("VUPY_SOCK_PROBE", f"({SOCK_PROBE})"),
    ("VUPY_SOCK_DEFAULT", f"({SOCK_DEFAULT})"),
    ("VUPY_KERNEL_FAMILIES", ",".join(str(f) for f in sorted(KERNEL_FAMILIES))),
]
