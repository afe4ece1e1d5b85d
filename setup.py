import os

from setuptools import setup
from setuptools.command.build_ext import build_ext

# pyproject.toml holds everything else.  This file adds the cffi extension
# and the C wrapper library: `pip install` also builds csrc/msocket.c into
# vupy/lib/libmsocket.{so,a}, next to vupy/include/msocket.h.
MSOCKET_FILES = ["lib/libmsocket.so", "lib/libmsocket.a", "include/msocket.h"]


class BuildExt(build_ext):
    """build_ext, then libmsocket with the same (setuptools') compiler."""

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
        for built, inplace in self._msocket_mapping().items():  # editable install
            self.mkpath(os.path.dirname(inplace))
            self.copy_file(built, inplace)

    def _msocket_mapping(self):
        """{file in build_lib: its copy in the source tree}, when inplace."""
        if not self.inplace:
            return {}
        src = self.get_finalized_command("build_py").get_package_dir("vupy")
        return {os.path.join(self.build_lib, "vupy", f): os.path.join(src, f) for f in MSOCKET_FILES}

    def get_outputs(self):
        return super().get_outputs() + [os.path.join(self.build_lib, "vupy", f) for f in MSOCKET_FILES]

    def get_output_mapping(self):
        return {**super().get_output_mapping(), **self._msocket_mapping()}


setup(cffi_modules=["csrc/build_native.py:ffibuilder"], cmdclass={"build_ext": BuildExt})
