# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""Shared fixtures: namespaces the tests make (and always remove), servers
inside them, the commands under test, the process-events connector on and
off.  Plain functions the tests share are in helpers.py.

Every namespace is named vupyt-PID-N; traffic stays on each namespace's own
loopback, so a server in namespace A is reachable only through stack A.
"""
import os
import shutil
import subprocess
import tempfile
import textwrap

import pytest

from compat.lab import remove_namespace
from helpers import PYTHON, SYSTEM_PYTHON, TIMEOUT, run
from vdenet import as_user, background, vde_lan, vde_switch  # noqa: F401  (the VDE networks' fixtures)


def pytest_collection_modifyitems(items):
    """Every test of a tests/test_unit_*.py file is a unit test of pure logic
    (no kernel, no session): `pytest -m unit` runs them alone, in seconds."""
    for item in items:
        if item.path.name.startswith("test_unit_"):
            item.add_marker(pytest.mark.unit)

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


def _ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=TIMEOUT)


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


@pytest.fixture(params=["events", "no events"])
def process_events(request, monkeypatch):
    """The test twice: with the process-events connector, and without it
    (as an unprivileged vupy runs, forced here by VUPY_PROCESS_EVENTS=off:
    forks followed through pidfds and trapped exits)."""
    if request.param == "no events":
        monkeypatch.setenv("VUPY_PROCESS_EVENTS", "off")
    else:
        monkeypatch.delenv("VUPY_PROCESS_EVENTS", raising=False)


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
