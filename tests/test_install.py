# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""How vupy is installed and what it states about itself: the license, the
dependencies, the kernel it needs."""
import os
import re
import shutil
import subprocess
import tempfile
import tomllib

import pytest

from helpers import PYTHON, run
from vupy import __version__ as vupy_version

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def read(path):
    with open(os.path.join(REPO, path)) as f:
        return f.read()


def test_license_is_gpl2_verbatim_with_the_or_later_notice():
    text = read("LICENSE")
    with open("/usr/share/common-licenses/GPL-2") as f:
        gpl2 = f.read()
    assert text.endswith(gpl2)
    notice = " ".join(text[:-len(gpl2)].split())
    assert "either version 2 of the License, or (at your option) any later version" in notice
    project = tomllib.loads(read("pyproject.toml"))["project"]
    assert project["license"] == {"text": "GPL-2.0-or-later"}
    assert "License :: OSI Approved :: GNU General Public License v2 or later (GPLv2+)" \
        in project["classifiers"]


def test_every_source_file_states_the_license_in_its_header():
    tracked = subprocess.run(["git", "-C", REPO, "ls-files"], capture_output=True, text=True,
                             check=True).stdout.split()
    sources = [f for f in tracked if re.search(r"\.(py|c|h|sh)$|(^|/)(Makefile|run)$", f)]
    assert len(sources) > 80
    missing = [f for f in sources
               if "SPDX-License-Identifier: GPL-2.0-or-later" not in "".join(open(os.path.join(REPO, f)).readlines()[:3])]
    assert missing == []


def test_cffi_is_a_range_and_the_build_requirements_are_pinned():
    toml = tomllib.loads(read("pyproject.toml"))
    assert toml["project"]["dependencies"] == ["cffi>=2.0.0,<3"]
    assert all("==" in r for r in toml["build-system"]["requires"])


def test_the_kernel_requirement_is_stated_once_in_the_same_words():
    statements = set()
    for path in ("README.md", "docs/vupy.1.md", "docs/architecture.md"):
        text = " ".join(read(path).split())
        found = re.findall(r"Linux 5\.19 or later, on x86-64\..*?burst of forks\.", text)
        assert len(found) == 1, path
        statements.add(found[0])
    assert len(statements) == 1
    for path in ("README.md", "docs/vupy.1.md", "docs/architecture.md", "docs/vustack.1.md",
                 "docs/vumount.1.md", "docs/msocket.2.md"):
        assert "6.6 or later on" not in read(path), path


@pytest.fixture(scope="module")
def without_lwip(tmp_path_factory):
    """vupy pip-installed (--target) where pkg-config finds no lwIP: pip's
    verbose log, and the environment that runs this installation."""
    target = tmp_path_factory.mktemp("without-lwip")
    empty = target / "pkgconfig"
    empty.mkdir()
    r = run([PYTHON, "-m", "pip", "install", "-v", "--no-build-isolation", "--target", str(target / "lib"),
             REPO], env=dict(os.environ, PKG_CONFIG_LIBDIR=str(empty)), timeout=600)
    assert r.returncode == 0, r.stderr
    env = dict(os.environ, PYTHONPATH=str(target / "lib"))
    return r.stdout + r.stderr, target / "lib", env


def test_without_lwip_the_build_says_so_in_one_line(without_lwip):
    log, lib, _env = without_lwip
    said = [line.strip() for line in log.splitlines() if "liblwip-dev" in line]
    assert said == ["vupy: building without the lwIP worker, so the lwip module will be unavailable: "
                    "pkg-config finds no lwip (Debian package liblwip-dev)"]
    assert "Traceback" not in log
    assert not (lib / "vupy" / "lib" / "vupy-lwip").exists()
    assert (lib / "vupy" / "lib" / "libmsocket.so").exists()


WORKER_MISSING = ("vupy was built without its lwIP worker, which needs liblwip-dev and libvdeplug-dev "
                  "(Debian packages): install them, then reinstall vupy")


def test_without_lwip_the_module_is_unavailable_and_refused(without_lwip):
    _log, lib, env = without_lwip
    vupy_command = str(lib / "bin" / "vupy")
    r = run([vupy_command, "modules"], env=env)
    assert r.returncode == 0, r.stderr
    lines = {line.split()[0]: line for line in r.stdout.splitlines()}
    assert lines["lwip"].split(None, 2)[2] == f"UNAVAILABLE: {WORKER_MISSING}"
    assert "UNAVAILABLE" not in lines["netns"] + lines["null"]
    r = run([vupy_command, "run", "--stack", "/dev/net/u=lwip:vde:///tmp/vupyt-sw,ip=10.0.0.2/24", "--",
             "true"], env=env)
    assert (r.returncode, r.stderr) == (2, f"vupy: module 'lwip' is unavailable: {WORKER_MISSING}\n")
    r = run([vupy_command, "run", "--stack", "/dev/net/n=netns:new", "--stack", "/dev/net/o=null", "--",
             "sh", "-c", "vustack -s /dev/net/n && vustack /dev/net/o true && "
                         "vumount -t lwip none /dev/net/l"], env=env)
    assert r.returncode == 1
    assert r.stdout == "inet inet6 netlink packet\n"
    assert r.stderr == f"vumount: module 'lwip' is unavailable: {WORKER_MISSING}\n"


@pytest.fixture(scope="module")
def prefix():
    """`make install PREFIX=...` into a temporary directory, removed at the end."""
    directory = tempfile.mkdtemp(prefix="vupyt-prefix-")
    try:
        r = run(["make", "-C", REPO, "install", f"PREFIX={directory}"], timeout=900)
        assert r.returncode == 0, r.stdout + r.stderr
        yield directory
    finally:
        shutil.rmtree(directory)


def test_make_install_puts_the_commands_in_prefix_bin(prefix):
    venv = os.path.join(prefix, "lib", "vupy")
    for command in ("vupy", "vustack", "vumount", "vuumount"):
        link = os.path.join(prefix, "bin", command)
        assert os.readlink(link) == f"../lib/vupy/bin/{command}"
        assert os.access(link, os.X_OK)
    # A venv of the Makefile's Python, in which vupy is installed, not editable.
    python = os.path.join(venv, "bin", "python")
    assert os.path.realpath(python) == os.path.realpath("/usr/bin/python3")
    r = run([python, "-c", "import vupy, importlib.metadata as m; print(vupy.__file__, m.version('cffi'))"],
            cwd="/")
    where, cffi = r.stdout.split()
    assert where.startswith(os.path.join(venv, "lib")) and where.endswith("site-packages/vupy/__init__.py")
    assert cffi.split(".")[0] == "2"            # whatever 2.x pip chose: the range's
    r = run([os.path.join(prefix, "bin", "vupy"), "--version"])
    assert (r.returncode, r.stdout) == (0, f"vupy {vupy_version}\n"), r.stderr
    for page in ("man1/vupy.1", "man1/vustack.1", "man1/vumount.1", "man1/vuumount.1", "man2/msocket.2"):
        assert os.path.isfile(os.path.join(prefix, "share", "man", page)), page
    for built in ("include/msocket.h", "lib/libmsocket.so.0", "lib/libmsocket.a", "lib/pkgconfig/msocket.pc"):
        assert os.path.exists(os.path.join(prefix, built)), built


def test_a_session_of_the_installed_vupy(prefix):
    """Started by its full path with PATH lacking PREFIX/bin: the session
    has vustack, and `man` finds the pages through that PATH."""
    script = "vustack; vustack -s /dev/net/t; command -v vustack; man -w vupy"
    r = run([os.path.join(prefix, "bin", "vupy"), "run", "--stack", "/dev/net/t=netns:new", "--",
             "sh", "-c", script], env={"PATH": "/usr/bin:/bin", "HOME": "/"}, cwd="/")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "inet     host (session default)", "inet6    host (session default)",
        "netlink  host (session default)", "packet   host (session default)",
        "inet inet6 netlink packet", os.path.join(prefix, "bin", "vustack"),
        os.path.join(prefix, "share", "man", "man1", "vupy.1")]


def test_make_install_refuses_destdir_for_the_commands(tmp_path):
    r = run(["make", "-C", REPO, "install", f"DESTDIR={tmp_path}", "PREFIX=/usr/local"])
    assert r.returncode != 0
    assert ("make install: the commands' venv cannot be staged in DESTDIR; "
            "make install-lib install-man DESTDIR=... installs the rest") in r.stderr
    assert os.listdir(tmp_path) == []
