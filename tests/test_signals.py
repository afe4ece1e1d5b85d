# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""A storm of signals (SIGALRM every millisecond) on programs making
sockets in a session: they keep making progress, no call is lost, every
socket is on the stack asked for.

What the kernel does not allow: a signal that arrives after the program
entered socket() but before vupy received the notification interrupts the
call (seccomp's SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV makes the wait
killable only once the notification is received).  A handler with
SA_RESTART restarts the call, as for any slow system call; without
SA_RESTART the program sees EINTR, which socket() never returns natively.
The test measures both and checks that EINTR is the only failure there is;
docs/vupy.1.md (SIGNALS AND JOB CONTROL) says so to the user.
"""
import os

import pytest

from helpers import VUPY, ns_inode, run

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "c", "signal_storm.c")
CALLS = 20000


@pytest.fixture(scope="module")
def storm(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("storm") / "signal_storm")
    r = run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", out, SOURCE])
    assert r.returncode == 0, r.stderr
    return out


def _counts(r):
    assert r.returncode == 0, r
    words = r.stdout.split()
    return dict(zip(words[::2], map(int, words[1::2])))


def _session(ns, argv):
    return run([VUPY, "run", "--stack", f"/dev/net/a=netns:{ns}", "--default", "/dev/net/a",
                "--", *argv], timeout=300)


@pytest.mark.parametrize("path", [None, "/dev/net/a"], ids=["socket", "msocket"])
def test_handlers_with_sa_restart_never_see_a_failure(netns, storm, path):
    ns = netns()
    inode = str(ns_inode(ns))
    counts = _counts(_session(ns, [storm, "restart", str(CALLS), inode] + ([path] if path else [])))
    print(counts)
    assert counts["made"] == CALLS and counts["signals"] > 0, counts


@pytest.mark.parametrize("path", [None, "/dev/net/a"], ids=["socket", "msocket"])
def test_handlers_without_sa_restart_see_only_eintr(netns, storm, path):
    """Natively: no EINTR at all.  In a session: each call makes a socket
    of the stack asked for or fails with EINTR (see above), nothing else."""
    ns = netns()
    inode = str(ns_inode(ns))
    if path is None:
        native = _counts(run(["ip", "netns", "exec", ns, storm, "norestart", str(CALLS), inode]))
        assert native["made"] == CALLS and native["signals"] > 0, native
    counts = _counts(_session(ns, [storm, "norestart", str(CALLS), inode] + ([path] if path else [])))
    print(counts)
    assert counts["signals"] > 0 and counts["wrong"] == counts["other"] == 0, counts
    assert counts["made"] + counts["eintr"] == CALLS and counts["made"] > CALLS // 2, counts
