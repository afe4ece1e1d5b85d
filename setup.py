# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
import glob
import importlib.util
import os
import subprocess
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext
from distutils.command.install_data import install_data  # setuptools' own distutils, once imported

# pyproject.toml holds everything else.  This file adds the cffi extension,
# the C wrapper library and the lwIP worker: `pip install` also builds
# csrc/msocket.c into vupy/lib/libmsocket.{so,a}, next to
# vupy/include/msocket.h, and csrc/lwip_worker.c (with csrc/lwip_dhcp.c and
# csrc/lwip_floor.c, bench/userspace_stack.py's floor) into vupy/lib/vupy-lwip
# (with Debian's liblwip-dev and libvdeplug-dev; without them, vupy is built
# without the worker, which is said in one line, and the lwip module is
# unavailable: modules/lwip.py).  The man pages, made from
# docs/NAME.SECTION.md by docs/mkman.py, go to share/man below the
# environment's prefix (a venv's share/man); not with an editable install,
# which setuptools makes without data files.
BUILT_FILES = ["lib/libmsocket.so", "lib/libmsocket.a", "include/msocket.h"]
WORKER = "lib/vupy-lwip"
MAN_SOURCES = sorted(glob.glob(os.path.join("docs", "*.[1-8].md")))
MAN_BUILT = os.path.join("build", "man")


def _mkman():
    spec = importlib.util.spec_from_file_location("mkman", os.path.join("docs", "mkman.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def man_pages():
    """data_files for the man pages: [("share/man/manN", [built page, ...])]."""
    by_directory = {}
    for name in sorted(_mkman().pages(MAN_SOURCES)):
        by_directory.setdefault(os.path.join("share", "man", os.path.dirname(name)), []).append(
            os.path.join(MAN_BUILT, name))
    return sorted(by_directory.items())


class InstallData(install_data):
    """install_data, with the man pages made first."""

    def run(self):
        _mkman().write_pages(MAN_SOURCES, MAN_BUILT)
        super().run()


class BuildExt(build_ext):
    """build_ext, then libmsocket and the lwIP worker with the same
    (setuptools') compiler."""

    def initialize_options(self):
        super().initialize_options()
        self.worker_missing = None          # why the lwIP worker was not built

    def run(self):
        super().run()  # builds vupy._native, and sets up self.compiler
        out = os.path.join(self.build_lib, "vupy")
        objects = self.compiler.compile(["csrc/msocket.c"], output_dir=self.build_temp,
                                        extra_postargs=["-Wall", "-Wextra"])
        # One file, no symlinks in a wheel: the soname is the file's own name.
        self.compiler.link_shared_lib(objects, "msocket", output_dir=os.path.join(out, "lib"),
                                      extra_postargs=["-Wl,-soname,libmsocket.so"])
        self.compiler.create_static_lib(objects, "msocket", output_dir=os.path.join(out, "lib"))
        self.mkpath(os.path.join(out, "include"))
        self.copy_file("csrc/msocket.h", os.path.join(out, "include"))
        self.worker_missing, lwip_includes = self._worker_requirements()
        if self.worker_missing:
            sys.stderr.write(f"vupy: building without the lwIP worker, so the lwip module will be "
                             f"unavailable: {self.worker_missing}\n")
            for package in [out] + ([self._source_package()] if self.inplace else []):
                if os.path.exists(os.path.join(package, WORKER)):  # of an earlier build
                    os.remove(os.path.join(package, WORKER))
        else:
            objects = self.compiler.compile(["csrc/lwip_worker.c", "csrc/lwip_dhcp.c", "csrc/lwip_floor.c"], output_dir=self.build_temp,
                                            include_dirs=lwip_includes,
                                            extra_postargs=["-O2", "-Wall", "-Wextra", "-std=gnu11"])
            self.compiler.link_executable(objects, "vupy-lwip", output_dir=os.path.join(out, "lib"),
                                          libraries=["lwip", "vdeplug", "pthread"])
        for built, inplace in self._built_mapping().items():  # editable install
            self.mkpath(os.path.dirname(inplace))
            self.copy_file(built, inplace)

    def _worker_requirements(self):
        """(why the lwIP worker cannot be built here, naming the Debian
        package, or None; lwIP's include directories)."""
        try:
            lwip = subprocess.run(["pkg-config", "--cflags-only-I", "lwip"], capture_output=True, text=True)
        except FileNotFoundError:
            return "no pkg-config (Debian package pkg-config)", []
        if lwip.returncode:
            return "pkg-config finds no lwip (Debian package liblwip-dev)", []
        self.mkpath(self.build_temp)
        probe = subprocess.run([*self.compiler.linker_exe, "-x", "c", "-", "-lvdeplug",
                                "-o", os.path.join(self.build_temp, "vdeplug-probe")],
                               input="#include <libvdeplug.h>\nint main(void) { return !vde_close; }\n",
                               capture_output=True, text=True)
        if probe.returncode:
            return "no libvdeplug.h or libvdeplug.so (Debian package libvdeplug-dev)", []
        return None, [d[2:] for d in lwip.stdout.split()]

    def _built_files(self):
        return BUILT_FILES + ([] if self.worker_missing else [WORKER])

    def _source_package(self):
        return self.get_finalized_command("build_py").get_package_dir("vupy")

    def _built_mapping(self):
        """{file in build_lib: its copy in the source tree}, when inplace."""
        if not self.inplace:
            return {}
        return {os.path.join(self.build_lib, "vupy", f): os.path.join(self._source_package(), f)
                for f in self._built_files()}

    def get_outputs(self):
        return super().get_outputs() + [os.path.join(self.build_lib, "vupy", f) for f in self._built_files()]

    def get_output_mapping(self):
        return {**super().get_output_mapping(), **self._built_mapping()}


setup(cffi_modules=["csrc/build_native.py:ffibuilder"], data_files=man_pages(),
      cmdclass={"build_ext": BuildExt, "install_data": InstallData})
