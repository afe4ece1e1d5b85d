# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""The README's examples, run as written.

A ```sh block is run by bash, line by line as shown, with `set -e`; the
lines beginning `$ ` after a `vupy run ... -- bash` line, up to a blank
line, are what is typed in that session's shell (given to it as its input,
after a `set -e` of its own).  The C example is built with the command in
its first comment, against libmsocket installed by `make install-lib`, and
run in a session.  Each example cleans up after itself; whatever a failed
one leaves (its processes, the namespaces and the switch it made) is
removed here."""
import os
import pathlib
import re
import shutil
import signal
import subprocess
import tempfile

import pytest

from helpers import NOBODY, TIMEOUT, run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, "README.md")
BIN = os.path.dirname(os.path.abspath(os.sys.executable))


def examples(language):
    """{the heading above it: the text of each ```LANGUAGE block}."""
    found, heading = {}, None
    for match in re.finditer(r"^(#+ [^\n]*)$|^```(\w*)\n(.*?)^```$", open(README).read(), re.M | re.S):
        if match.group(1):
            heading = match.group(1).lstrip("# ")
        elif match.group(2) == language:
            found.setdefault(heading, match.group(3))
    return found


def script(block):
    """The bash script that does what `block` shows."""
    lines, session = ["set -e"], None
    for line in re.sub(r"\\\n\s*", " ", block).splitlines():      # continued lines joined
        if session is not None and line.strip():
            session.append(line[2:] if line.startswith("$ ") else line)
            continue
        if session is not None:
            lines += ["set -e", *session, "README_SESSION"]
            session = None
        if re.match(r"vupy run .* -- bash( |$)", line):
            lines.append(line.split("#")[0].rstrip() + " <<'README_SESSION'")
            session = []
        else:
            lines.append(line)
    assert session is None, "a session without a blank line after it"
    return "\n".join(lines) + "\n"


def run_example(block, cwd, prefix=(), env=None):
    """Run the example's script (as `prefix`, e.g. another user); its
    output.  Its processes, in the process group it leads, are killed
    afterwards, however it ended (its output is a file: a background job
    of the example would keep a pipe open)."""
    with open(cwd / "example.out", "w+") as out:
        proc = subprocess.Popen([*prefix, "bash", "-c", script(block)], cwd=cwd, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(timeout=TIMEOUT * 2)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        out.seek(0)
        text = out.read()
    assert proc.returncode == 0, text
    return text


@pytest.fixture
def made_here():
    """Removes, at the end, the namespaces, switch and hosts file that the
    README's examples make, unless they were there before the test."""
    namespaces = [n for n in ("red", "blue", "corp") if not os.path.exists(f"/run/netns/{n}")]
    hosts = not os.path.exists("/tmp/corp.hosts")
    switch = not os.path.exists("/tmp/sw")
    yield
    for name in namespaces:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    if switch:
        try:
            with open("/tmp/sw.pid") as f:
                os.kill(int(f.read()), signal.SIGKILL)
        except (OSError, ValueError):
            pass
        shutil.rmtree("/tmp/sw", ignore_errors=True)
        if os.path.exists("/tmp/sw.pid"):
            os.unlink("/tmp/sw.pid")
    if hosts and os.path.exists("/tmp/corp.hosts"):
        os.unlink("/tmp/corp.hosts")


def session_env():
    return dict(os.environ, PATH=BIN + os.pathsep + os.environ["PATH"])


def test_readme_lwip_example_reaches_its_peer(made_here, tmp_path):
    out = run_example(examples("sh")["What it is"], tmp_path, env=session_env())
    assert re.search(r"vde0.*10\.0\.0\.2/24", out, re.S), out
    assert "Directory listing for /" in out, out
    assert "1 packets transmitted, 1 received" in out, out


def test_readme_two_stack_session(made_here, tmp_path):
    out = run_example(examples("sh")["A two-stack session"], tmp_path, env=session_env())
    assert re.search(r"/dev/net/red .*\n/dev/net/blue ", out), out
    assert "Directory listing for /" in out and "nothing listens in red" in out, out
    assert "<socket.socket fd=" in out, out


def test_readme_routes_and_names_example(made_here, tmp_path):
    out = run_example(examples("sh")["Routes and names per stack"], tmp_path, env=session_env())
    assert "Directory listing" in out, out
    assert "route    name:*.corp.example -> /dev/net/corp (session route)" in out, out


def test_readme_example_without_root(unprivileged):
    directory = pathlib.Path(tempfile.mkdtemp(prefix="vupyt-readme-"))   # any user may read it
    try:
        os.chmod(directory, 0o777)
        out = run_example(examples("sh")["Without root"], directory, NOBODY, unprivileged["env"])
    finally:
        shutil.rmtree(directory)
    assert "uid=65534" in out and "Directory listing for /" in out, out
    assert re.search(r"^lo\s", out, re.M), out


def test_readme_c_example(tmp_path):
    source = examples("c")["A two-stack session"]
    build = re.match(r"/\* (\S+): (.*) \*/", source)
    (tmp_path / build.group(1)).write_text(source)
    prefix = tmp_path / "prefix"
    r = run(["make", "-C", REPO, "install-lib", f"PREFIX={prefix}"])
    assert r.returncode == 0, r.stderr
    env = dict(os.environ, PKG_CONFIG_PATH=str(prefix / "lib" / "pkgconfig"),
               LD_LIBRARY_PATH=str(prefix / "lib"))
    r = run(["sh", "-c", build.group(2)], cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    r = run([os.path.join(BIN, "vupy"), "run", "--stack", "/dev/net/blue=netns:new", "--", "./blue"],
            cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(r"fd \d+: a socket of /dev/net/blue\n", r.stdout), r.stdout
