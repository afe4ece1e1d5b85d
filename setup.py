import glob
import importlib.util
import os
import subprocess

from setuptools import setup
from setuptools.command.build_ext import build_ext
from distutils.command.install_data import install_data  # setuptools' own distutils, once imported

# pyproject.toml holds everything else.  This file adds the cffi extension,
# the C wrapper library and the lwIP worker: `pip install` also builds
# csrc/msocket.c into vupy/lib/libmsocket.{so,a}, next to
# vupy/include/msocket.h, and csrc/lwip_worker.c into vupy/lib/vupy-lwip
# (with Debian's liblwip-dev and libvdeplug-dev).  The man pages, made from
# docs/NAME.SECTION.md by docs/mkman.py, go to share/man below the
# environment's prefix (a venv's share/man); not with an editable install,
# which setuptools makes without data files.
BUILT_FILES = ["lib/libmsocket.so", "lib/libmsocket.a", "include/msocket.h", "lib/vupy-lwip"]
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
        lwip = subprocess.run(["pkg-config", "--cflags-only-I", "lwip"], check=True,
                              capture_output=True, text=True).stdout.split()
        objects = self.compiler.compile(["csrc/lwip_worker.c"], output_dir=self.build_temp,
                                        include_dirs=[d[2:] for d in lwip],
                                        extra_postargs=["-O2", "-Wall", "-Wextra", "-std=gnu11"])
        self.compiler.link_executable(objects, "vupy-lwip", output_dir=os.path.join(out, "lib"),
                                      libraries=["lwip", "vdeplug", "pthread"])
        for built, inplace in self._built_mapping().items():  # editable install
            self.mkpath(os.path.dirname(inplace))
            self.copy_file(built, inplace)

    def _built_mapping(self):
        """{file in build_lib: its copy in the source tree}, when inplace."""
        if not self.inplace:
            return {}
        src = self.get_finalized_command("build_py").get_package_dir("vupy")
        return {os.path.join(self.build_lib, "vupy", f): os.path.join(src, f) for f in BUILT_FILES}

    def get_outputs(self):
        return super().get_outputs() + [os.path.join(self.build_lib, "vupy", f) for f in BUILT_FILES]

    def get_output_mapping(self):
        return {**super().get_output_mapping(), **self._built_mapping()}


setup(cffi_modules=["csrc/build_native.py:ffibuilder"], data_files=man_pages(),
      cmdclass={"build_ext": BuildExt, "install_data": InstallData})
