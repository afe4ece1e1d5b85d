# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""cffi (API mode) build of vupy._native: the supervisor's kernel layer, and the
layout of the lwIP worker's requests and replies (csrc/lwip_worker.h).

Run by setuptools through ``cffi_modules`` in setup.py; links libseccomp.
"""
import os

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))

HEADERS = ("supervisor.h", "lwip_worker.h")    # lwip_worker.h: the lwIP worker's wire layout


def declarations(name):
    """The part of csrc/NAME between its cffi markers."""
    with open(os.path.join(HERE, name)) as header:
        return header.read().split("/* cffi: begin */")[1].split("/* cffi: end */")[0]


ffibuilder = FFI()
DECLARATIONS = "".join(map(declarations, HEADERS))

ffibuilder.cdef(
    DECLARATIONS
    + """
    int prctl(int option, unsigned long arg2, unsigned long arg3,
              unsigned long arg4, unsigned long arg5);
    """
)
ffibuilder.set_source(
    "vupy._native",
    "#include <sys/prctl.h>\n" + "".join(f'#include "{name}"\n' for name in HEADERS),
    sources=[os.path.relpath(os.path.join(HERE, name)) for name in ("supervisor.c", "fastpath.c")],
    include_dirs=[os.path.relpath(HERE)],
    libraries=["seccomp"],
    extra_compile_args=["-O2", "-Wall", "-std=gnu11"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
