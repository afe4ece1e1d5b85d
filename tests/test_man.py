# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""The man pages made from docs/NAME.SECTION.md by docs/mkman.py: each
renders without a warning, with its NAME and SYNOPSIS."""
import os
import re
import subprocess
import sys

import pytest

from helpers import run

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
MKMAN = os.path.join(REPO, "docs", "mkman.py")
SOURCES = sorted(os.path.join(REPO, "docs", f) for f in os.listdir(os.path.join(REPO, "docs"))
                 if re.match(r"^[\w-]+\.[1-8]\.md$", f))
PAGES = {"man1/vupy.1": "vupy", "man1/vustack.1": "vustack", "man1/vumount.1": "vumount, vuumount",
         "man1/vuumount.1": "vumount, vuumount", "man2/msocket.2": "msocket"}


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    directory = tmp_path_factory.mktemp("man")
    r = run([sys.executable, MKMAN, "-o", str(directory), *SOURCES])
    assert r.returncode == 0, r.stderr
    assert sorted(os.path.relpath(p, directory) for p in r.stdout.split()) == sorted(PAGES)
    return directory


@pytest.mark.parametrize("page", sorted(PAGES))
def test_page_renders_without_warnings(pages, page):
    # groff as man(1) runs it, with every warning; from the man directory,
    # where a .so page finds the page it names.
    r = run(["groff", "-man", "-Tutf8", "-ww", "-z", page], cwd=pages)
    assert (r.returncode, r.stderr) == (0, "")
    r = run(["man", "-l", page], cwd=pages, env=dict(os.environ, MANWIDTH="80", MAN_KEEP_FORMATTING=""))
    assert r.returncode == 0 and r.stderr == "", r.stderr
    text = r.stdout
    assert re.search(rf"^NAME\n +{re.escape(PAGES[page])} - \S", text, re.M), text[:300]
    assert re.search(r"^SYNOPSIS\n", text, re.M)
    assert not re.search(r"`|\*[A-Z]+\*|\\f", text)    # no markdown, no stray font escape left


def test_options_in_code_are_minus_signs(pages):
    """`--stack` in the markdown is typed as --stack, not with hyphens."""
    r = run(["man", "-l", "man1/vupy.1"], cwd=pages, env=dict(os.environ, MANWIDTH="80"))
    assert "vupy run [--stack PATH=SPEC]... [--default [FAMILIES=]PATH]..." in " ".join(r.stdout.split())


def test_markdown_it_cannot_read_is_refused(tmp_path):
    source = tmp_path / "x.1.md"
    source.write_text("# NAME\n\n`x` -- a test\n\n| a | b | c |\n|---|---|---|\n| 1 | 2 | 3 |\n")
    r = subprocess.run([sys.executable, MKMAN, "-o", str(tmp_path / "out"), str(source)],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr == f"mkman.py: {source}: only tables of two columns: '| a | b | c |'\n"
