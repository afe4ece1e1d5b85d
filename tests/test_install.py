"""How vupy is installed and what it states about itself: the license, the
dependencies, the kernel it needs."""
import os
import re
import tomllib

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
