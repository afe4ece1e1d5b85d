"""i386 programs cannot make a socket that bypasses routing: socket(2)
(nr 359) and socketcall(SYS_SOCKET) (nr 102) are trapped like the x86_64
call and routed to the default stack."""
import os
import shutil
import subprocess

import pytest

from conftest import run, vupy

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
