# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""Sessions inside sessions: a `vupy run` in a session is served by the
enclosing session's supervisor, in a scope of its own whose stacks and
defaults only its own processes see, in front of the enclosing ones, and
which ends when it ends (even if its vupy is killed)."""
import os
import signal
import subprocess

from helpers import BIN, HOST_LABEL, PYTHON, TIMEOUT, VUPY, ns_label, ns_references, run, started, vupy

ENV = dict(os.environ, PATH=BIN + os.pathsep + os.environ["PATH"])
DEPTH = f"{PYTHON} -c 'import vupy; print(vupy.in_session())'"


def wait_for(path):
    return f"while [ ! -e {path} ]; do sleep 0.05; done"


def test_three_levels_each_with_its_own_stacks_and_defaults(netns, probe, tmp_path):
    """Level 1 names a; level 2 names b, its default, and sees a; level 3
    names its own a (shadowing level 1's) and c, makes its a the inet
    default and keeps b for inet6.  Meanwhile a process of level 1 sees
    neither b nor c and keeps the host; after each level ends, its names
    are gone."""
    a, b = netns(), netns()
    p = f"{PYTHON} {probe}"
    (tmp_path / "level3").write_text(
        f"{DEPTH}; touch {tmp_path}/inner; {wait_for(tmp_path / 'outer')}\n"
        f"{p} sock inet stream msock /dev/net/a inet stream msock /dev/net/b inet stream "
        f"sock inet6 stream msock /dev/net/c inet stream\n")
    (tmp_path / "level2").write_text(
        f"{DEPTH}; {p} sock inet stream msock /dev/net/a inet stream\n"
        f"vupy run --stack /dev/net/a=netns:new --stack /dev/net/c=null --default inet=/dev/net/a "
        f"-- sh {tmp_path}/level3\n"
        f"{p} msock /dev/net/a inet stream msock /dev/net/c inet stream\n")
    level1 = (f"({wait_for(tmp_path / 'inner')}; {p} msock /dev/net/b inet stream "
              f"msock /dev/net/c inet stream sock inet stream > {tmp_path}/view; "
              f"touch {tmp_path}/outer) & "
              f"{DEPTH}; vupy run --stack /dev/net/b=netns:{b} --default /dev/net/b -- sh {tmp_path}/level2; "
              f"wait; cat {tmp_path}/view; {p} msock /dev/net/b inet stream; "
              f"vumount | tail -n +2 | cut -d' ' -f1")
    r = vupy("--stack", f"/dev/net/a=netns:{a}", "--", "sh", "-c", level1, env=ENV)
    assert r.returncode == 0, r.stderr
    out = r.stdout.split()
    assert out[:4] == ["1", "2", ns_label(b), ns_label(a)], out
    new = out[5]
    assert out[4:10] == ["3", new, new, ns_label(b), ns_label(b), "EAFNOSUPPORT"], out
    assert new not in (ns_label(a), ns_label(b), HOST_LABEL), out
    assert out[10:12] == [ns_label(a), "ENOENT"], out                # level 3 is over
    assert out[12:15] == ["ENOENT", "ENOENT", HOST_LABEL], out       # level 1's view during it
    assert out[15:] == ["ENOENT", "/dev/net/a"], out            # level 2 is over


def test_nested_session_lists_its_stacks_first_and_leaves_the_enclosing_ones(netns):
    a = netns()
    script = ("vupy run --stack /dev/net/b=null -- sh -c "
              "'vumount | tail -n +2 | cut -d\" \" -f1; vuumount /dev/net/a; echo rc=$?'")
    r = vupy("--stack", f"/dev/net/a=netns:{a}", "--", "sh", "-c", script, env=ENV)
    assert r.stdout.split() == ["/dev/net/b", "/dev/net/a", "rc=1"], r.stderr
    assert "mounted by an enclosing session, not by this one" in r.stderr


def test_nested_session_that_cannot_start_says_why_and_changes_nothing(netns, tmp_path):
    a = netns()
    (tmp_path / "taken").touch()
    cases = ["--stack /dev/net/b=netns:new --stack /dev/net/x=nosuch",
             f"--stack {tmp_path}/taken=null",
             "--stack /dev/net/b=null --default /dev/net/q",
             "--trace --stack /dev/net/b=null"]
    script = "; ".join(f"vupy run {case} -- echo started; echo rc=$?" for case in cases)
    r = vupy("--stack", f"/dev/net/a=netns:{a}", "--", "sh", "-c",
             script + "; vumount | tail -n +2 | cut -d' ' -f1", env=ENV)
    assert r.stdout.split() == ["rc=2"] * 4 + ["/dev/net/a"], r.stdout
    lines = r.stderr.splitlines()
    assert len(lines) == 4 and all(line.startswith("vupy: ") for line in lines), r.stderr
    for line, words in zip(lines, ["nosuch", f"{tmp_path}/taken: exists", "/dev/net/q", "--trace"]):
        assert words in line, line


def test_nested_session_ends_when_its_vupy_is_killed(probe):
    """The inner vupy is SIGKILLed: its keeper ends its processes, and the
    enclosing supervisor ends its scope, whose netns:new goes away while
    the enclosing session runs on."""
    script = (f"vupy run --stack /dev/net/n=netns:new -- sh -c '{PYTHON} {probe} msock /dev/net/n "
              f"inet stream; exec sleep 600' & "
              f"{PYTHON} -c 'import sys; sys.stdin.readline()'; kill -KILL $!; wait; "
              f"{PYTHON} {probe} msock /dev/net/n inet stream; echo done; read x; exit 0")
    with started(["--", "sh", "-c", script], env=ENV, stdin=subprocess.PIPE) as proc:
        made = proc.stdout.readline().strip()
        assert made.startswith("ns:"), made
        inode = int(made[3:])
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.readline().split() == ["ENOENT"]
        assert proc.stdout.readline() == "done\n"
        assert ns_references("net", inode) == []        # the stack is closed
        proc.stdin.close()
        assert proc.wait(timeout=TIMEOUT) == 0


def test_nested_exit_status_is_its_commands():
    r = run([VUPY, "run", "--", VUPY, "run", "--stack", "/dev/net/n=null", "--", "sh", "-c", "exit 7"])
    assert r.returncode == 7, r.stderr
    r = run([VUPY, "run", "--", VUPY, "run", "--", "sh", "-c", "kill -TERM $$"])
    assert r.returncode == 128 + signal.SIGTERM, r.stderr
