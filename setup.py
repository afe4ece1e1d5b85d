from setuptools import setup

# The cffi extension is the only reason for this file: pyproject.toml holds
# everything else.
setup(cffi_modules=["csrc/build_native.py:ffibuilder"])
