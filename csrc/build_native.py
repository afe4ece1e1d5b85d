# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""cffi (API mode) build of vupy._native: the supervisor's kernel layer, and the
layout of the lwIP worker's requests and replies (csrc/lwip_worker.h).

Run by setuptools through ``cffi_modules`` in setup.py; links libseccomp.
"""
import importlib.util
import os

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))

HEADERS = ("supervisor.h", "lwip_worker.h")    # lwip_worker.h: the lwIP worker's wire layout


def declarations(name):
    """The part of csrc/NAME between its cffi markers."""
    with open(os.path.join(HERE, name)) as header:
        return header.read().split("/* cffi: begin */")[1].split("/* cffi: end */")[0]


def _abi():
    """vupy/_abi.py, loaded by path: the package itself needs this build."""
    spec = importlib.util.spec_from_file_location("_abi", os.path.join(HERE, "..", "vupy", "_abi.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ffibuilder = FFI()
DECLARATIONS = "".join(map(declarations, HEADERS))

ffibuilder.cdef(
    DECLARATIONS
    + """
    int prctl(int option, unsigned long arg2, unsigned long arg3,
              unsigned long arg4, unsigned long arg5);
    #define FIONREAD ...
    #define SIOCGIFINDEX ...
    #define SIOCGIFNAME ...
    #define SIOCGIFFLAGS ...
    #define SIOCGIFMTU ...
    #define SIOCGIFHWADDR ...
    #define SIOCGIFADDR ...
    #define SIOCGIFNETMASK ...
    #define SCMP_ARCH_X86_64 ...
    #define SCMP_ARCH_X86 ...
    #define SCMP_ARCH_X32 ...
    """
)
ffibuilder.set_source(
    "vupy._native",
    "#include <sys/ioctl.h>\n#include <sys/prctl.h>\n#include <linux/sockios.h>\n#include <seccomp.h>\n"
    + "".join(f'#include "{name}"\n' for name in HEADERS),
    define_macros=_abi().C_MACROS,
    sources=[os.path.relpath(os.path.join(HERE, name)) for name in ("supervisor.c", "fastpath.c")],
    include_dirs=[os.path.relpath(HERE)],
    libraries=["seccomp"],
    extra_compile_args=["-O2", "-Wall", "-std=gnu11"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
