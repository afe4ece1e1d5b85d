"""How vupy is installed and what it states about itself: the license, the
dependencies, the kernel it needs."""
import os
import re
import tomllib

import pytest

from conftest import PYTHON, run

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
