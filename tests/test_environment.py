# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""Inside a session, whatever started vupy: vupy's commands on PATH (after
the user's own), and `import vupy` for any python3, with no cffi."""
import os
import shutil
import tempfile
import textwrap

import pytest

from helpers import BIN, NOBODY, SYSTEM_PYTHON, VUPY, run

MINIMAL_PATH = "/usr/bin:/bin"

# A program for the system's python3: a socket on the stack argv[1], the
# inode of its namespace (SIOCGSKNS), and whether vupy's C extension or
# cffi was loaded (they must not be).
PROGRAM = textwrap.dedent("""
    import fcntl, os, socket, sys, vupy
    assert vupy.in_session()
    s = vupy.msocket(sys.argv[1], socket.AF_INET, socket.SOCK_STREAM)
    ns = fcntl.ioctl(s.fileno(), 0x894C)
    print("ns:%d" % os.fstat(ns).st_ino)
    print(sorted(m for m in sys.modules if "cffi" in m or m == "vupy._native"))
""")


def minimal(**extra):
    """An environment with nothing of vupy's: PATH without its directory."""
    return {"PATH": MINIMAL_PATH, "HOME": "/", **extra}


def test_commands_and_package_from_a_session_started_by_full_path(netns):
    a = netns()
    script = (f"vustack; vumount; vustack /dev/net/a {SYSTEM_PYTHON} -c 'print(1)' && "
              f"{SYSTEM_PYTHON} -c '{PROGRAM}' /dev/net/a")
    r = run([VUPY, "run", "--stack", f"/dev/net/a=netns:{a}", "--", "sh", "-c", script],
            env=minimal(), cwd="/")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:4] == [f"{family:8} host (session default)"
                         for family in ("inet", "inet6", "netlink", "packet")], lines
    assert lines[4].split()[:2] == ["PATH", "TYPE"]                 # vumount's list
    assert lines[5].split()[:3] == ["/dev/net/a", "netns", a]
    assert lines[6:] == ["1", f"ns:{os.stat(f'/run/netns/{a}').st_ino}", "[]"], lines
    assert r.stderr == ""


def test_the_users_own_path_and_pythonpath_come_first(tmp_path):
    mine = tmp_path / "bin"
    mine.mkdir()
    (mine / "vustack").write_text("#!/bin/sh\necho my vustack\n")
    (mine / "vustack").chmod(0o755)
    env = minimal(PATH=f"{mine}:{MINIMAL_PATH}", PYTHONPATH=str(tmp_path))
    r = run([VUPY, "run", "--", "sh", "-c", 'vustack; echo "$PATH"; echo "$PYTHONPATH"'], env=env)
    assert r.returncode == 0, r.stderr
    mine_first, path, pythonpath = r.stdout.splitlines()
    assert mine_first == "my vustack"
    assert path == f"{mine}:{MINIMAL_PATH}:{BIN}"
    first, package = pythonpath.split(":")
    assert first == str(tmp_path)
    # vupy, and nothing else of its environment
    assert {entry for entry in os.listdir(package) if entry != "__pycache__"} == {"vupy.py"}


def test_nothing_is_added_twice_and_command_is_looked_up_with_vupys_commands():
    env = minimal(PATH=f"{BIN}:{MINIMAL_PATH}")
    r = run([VUPY, "run", "--", "sh", "-c", 'echo "$PATH"'], env=env)
    assert r.stdout.strip() == env["PATH"], r.stderr
    r = run([VUPY, "run", "--", "vustack", "-s", "/proc/self/ns/net"], env=minimal())
    assert (r.returncode, r.stdout) == (0, "inet inet6 netlink packet\n"), r.stderr


@pytest.fixture
def own_dir():
    directory = tempfile.mkdtemp(prefix="vupyt-nobody-")
    os.chown(directory, 65534, 65534)
    yield directory
    shutil.rmtree(directory)


def test_unprivileged_session_of_a_pip_target_install(unprivileged, own_dir):
    """vupy installed with pip --target (no venv), run as uid 65534 by its
    full path: its commands and package reach the session all the same."""
    script = f"vustack; {SYSTEM_PYTHON} -c '{PROGRAM}' {own_dir}/n"
    r = run(NOBODY + [unprivileged["vupy"], "run", "--stack", f"{own_dir}/n=netns:new", "--",
                      "sh", "-c", script], env=minimal(), cwd="/")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "inet     host (session default)", lines
    assert lines[4].startswith("ns:") and lines[5] == "[]", lines
