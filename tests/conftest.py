# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""Shared fixtures: namespaces the tests make (and always remove), servers
inside them, and the commands under test.

Every namespace is named vupyt-PID-N; traffic stays on each namespace's own
loopback, so a server in namespace A is reachable only through stack A.
"""
import errno
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

import pytest

from compat.lab import remove_namespace
from vupy._procs import children

BIN = os.path.dirname(sys.executable)
VUPY = os.path.join(BIN, "vupy")
VUSTACK = os.path.join(BIN, "vustack")
PYTHON = sys.executable
SYSTEM_PYTHON = "/usr/bin/python3"   # any user can run it (the venv may be in /root)
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
TIMEOUT = 60

# A TCP server that answers every connection with one line and closes it.
SERVER = textwrap.dedent("""
    import socket, sys
    s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[1], int(sys.argv[2])))
    s.listen(16)
    print('ready', flush=True)
    while True:
        c, _ = s.accept()
        c.sendall(sys.argv[3].encode() + b'\\n')
        c.close()
""")


def run(argv, **kw):
    """Run argv, capture text output; never hang a test run."""
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", TIMEOUT)
    return subprocess.run(argv, **kw)


def vupy(*args, **kw):
    return run([VUPY, "run", *args], **kw)


def descendants(pid):
    """Every process below pid, from /proc."""
    found, todo = [], [pid]
    while todo:
        below = children(todo.pop())
        found += below
        todo += below
    return found


def _links_to(directory, tag):
    """The entries of `directory` that are links to `tag`."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    found = []
    for name in names:
        try:
            if os.readlink(f"{directory}/{name}") == tag:
                found.append(f"{directory}/{name}")
        except OSError:
            pass
    return found


def ns_references(kind, inode):
    """Every place on the system that holds namespace kind:[inode] alive:
    a process in it, an open descriptor of it, a mount of its file."""
    tag = f"{kind}:[{inode}]"
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if pid == str(os.getpid()):
            continue
        found += _links_to(f"/proc/{pid}/ns", tag) + _links_to(f"/proc/{pid}/fd", tag)
        try:
            with open(f"/proc/{pid}/mountinfo") as f:
                if tag in f.read():
                    found.append(f"/proc/{pid}/mountinfo")
        except OSError:
            pass
    return found


def _ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=TIMEOUT)


DATA_WRITER = textwrap.dedent("""
    import hashlib, os, socket, sys, vupy
    directory = sys.argv[1]
    data = os.urandom(8 << 20)
    with open(os.path.join(directory, "data.bin"), "wb") as f:
        f.write(data)
    os.mkdir(os.path.join(directory, "new"))
    with open(os.path.join(directory, "keep"), "a") as f:
        f.write("more\\n")
    try:
        vupy.msocket(os.path.join(directory, "st"), socket.AF_INET, socket.SOCK_STREAM)
    except OSError as e:
        print("stack", e.errno)
    print(sorted(os.listdir(directory)))
    print(hashlib.sha256(data).hexdigest())
""")


def files_kept(directory, run_session, python=(PYTHON,)):
    """Write into `directory` (a pathlib.Path), which holds the stack name
    `st`, in a session started by `run_session(argv)`, with the Python
    command `python`; check that all of it is there afterwards and that no
    file named `st` ever was."""
    keep = directory / "keep"
    keep.write_text("kept\n")
    os.chown(keep, directory.stat().st_uid, directory.stat().st_gid)
    r = run_session(["--stack", f"{directory}/st=null", "--", *python, "-c", DATA_WRITER,
                     str(directory)])
    assert r.returncode == 0, r.stderr
    stack, listing, digest = r.stdout.splitlines()
    assert stack == f"stack {errno.EAFNOSUPPORT}"       # the name is the null stack's
    assert listing == str(["data.bin", "keep", "new"])  # and no file is
    assert sorted(os.listdir(directory)) == ["data.bin", "keep", "new"]
    assert hashlib.sha256((directory / "data.bin").read_bytes()).hexdigest() == digest
    assert (directory / "keep").read_text() == "kept\nmore\n"


@pytest.fixture
def netns():
    """make(iface=None) -> name of a new namespace with lo up,
    and a veth pair `iface`/`iface`p if given.  All are removed at teardown,
    with every process still in them."""
    made = []

    def make(iface=None):
        name = f"vupyt-{os.getpid()}-{len(made)}"
        _ip("netns", "add", name)
        made.append(name)
        _ip("-n", name, "link", "set", "lo", "up")
        if iface:
            _ip("-n", name, "link", "add", iface, "type", "veth", "peer", "name", iface + "p")
            _ip("-n", name, "link", "set", iface, "up")
        return name

    yield make
    for name in made:
        remove_namespace(name)


@pytest.fixture
def server():
    """start(ns, port, reply, host='127.0.0.1'): a line server in namespace
    ns (None: this namespace).  Killed at teardown."""
    procs = []

    def start(ns, port, reply, host="127.0.0.1"):
        argv = [PYTHON, "-c", SERVER, host, str(port), reply]
        if ns:
            argv = ["ip", "netns", "exec", ns] + argv
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        procs.append(p)
        assert p.stdout.readline().strip() == "ready"
        return p

    yield start
    for p in procs:
        p.kill()
        p.wait()


@pytest.fixture
def stack_module(tmp_path):
    """install(name, source) -> environment in which vupy finds the stack
    module `name`, whose class is `Module` in the Python `source`: an
    entry point of a distribution on PYTHONPATH, as a pip-installed module
    would have."""
    directory = tmp_path / "modules"
    directory.mkdir()
    env = dict(os.environ)
    env["PYTHONPATH"] = str(directory) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    points = []

    def install(name, source):
        (directory / f"vupyt_{name}.py").write_text(textwrap.dedent(source))
        points.append(f"{name} = vupyt_{name}:Module")
        info = directory / "vupyt_modules-0.dist-info"
        info.mkdir(exist_ok=True)
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: vupyt-modules\nVersion: 0\n")
        (info / "entry_points.txt").write_text("[vupy.stacks]\n" + "\n".join(points) + "\n")
        return env

    return install


@pytest.fixture(scope="session")
def probe():
    """tests/probe.py in a directory every user can read (for setpriv'd runs)."""
    directory = tempfile.mkdtemp(prefix="vupyt-probe-")
    os.chmod(directory, 0o755)
    path = os.path.join(directory, "probe.py")
    shutil.copy(os.path.join(os.path.dirname(os.path.abspath(__file__)), "probe.py"), path)
    os.chmod(path, 0o644)
    yield path
    shutil.rmtree(directory)



@pytest.fixture(scope="session")
def unprivileged():
    """vupy installed where any user can run it, for sessions run as uid
    65534 (the venv may be in a directory only root can read): a dict of
    command name (vupy, vustack, vumount, vuumount) -> path, and `env`
    with them on PATH.  Built once per test run with pip --target."""
    directory = tempfile.mkdtemp(prefix="vupyt-unprivileged-")
    lib = os.path.join(directory, "lib")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = run([PYTHON, "-m", "pip", "install", "-q", "--no-build-isolation", "--target", lib, repo],
            timeout=600)
    assert r.returncode == 0, r.stderr
    commands = {"vupy": "vupy.cli:main", "vustack": "vupy.vustack:main",
                "vumount": "vupy.vumount:vumount", "vuumount": "vupy.vumount:vuumount"}
    paths = {}
    os.mkdir(os.path.join(directory, "bin"))
    for name, target in commands.items():
        module, function = target.split(":")
        paths[name] = os.path.join(directory, "bin", name)
        with open(paths[name], "w") as f:
            f.write(f"#!{SYSTEM_PYTHON}\nimport sys\nsys.path.insert(0, {lib!r})\n"
                    f"from {module} import {function}\nsys.exit({function}())\n")
    subprocess.run(["chmod", "-R", "a+rX", directory], check=True)
    for path in paths.values():
        os.chmod(path, 0o755)
    paths["lib"] = lib
    paths["env"] = dict(os.environ, PATH=os.path.join(directory, "bin") + os.pathsep + os.environ["PATH"])
    yield paths
    shutil.rmtree(directory)


# The VDE networks (tests/vdenet.py) --------------------------------------------
from vdenet import as_user, background, vde_lan, vde_switch  # noqa: E402,F401  (fixtures)
