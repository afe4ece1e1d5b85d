# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""vupy's exit status and the signals sent to it, with real processes:

* vupy's exit status is COMMAND's, 128+N when COMMAND is killed by signal N;
* SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to vupy reach COMMAND.
"""
import os
import signal
import textwrap

import pytest

from helpers import PYTHON, finish, started, vupy, wait_line


@pytest.mark.parametrize("status", [0, 1, 3, 42, 255])
def test_exit_status_is_commands(status):
    r = vupy("--", "sh", "-c", f"exit {status}")
    assert r.returncode == status, r.stderr


def test_exit_status_is_commands_with_stacks():
    r = vupy("--stack", "/dev/net/vupyt-n=netns:new", "--stack", "/dev/net/vupyt-z=null",
             "--default", "/dev/net/vupyt-n", "--", "sh", "-c", "exit 9")
    assert r.returncode == 9, r.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL, signal.SIGSEGV,
                                 signal.SIGINT, signal.SIGUSR1])
def test_killed_by_signal_gives_128_plus_n(sig):
    # Python undoes its own SIGINT and SIGSEGV handling before killing itself.
    script = (f"import os, signal; signal.signal({int(sig)}, signal.SIG_DFL) "
              f"if {int(sig)} != {int(signal.SIGKILL)} else None; "
              f"os.kill(os.getpid(), {int(sig)})")
    r = vupy("--", PYTHON, "-c", script)
    assert r.returncode == 128 + sig, r.stderr


SIGNAL_SCRIPT = textwrap.dedent("""
    import signal, sys, time
    out = sys.argv[1]
    def handler(signo, frame):
        with open(out, "w") as f:
            f.write(signal.Signals(signo).name)
        sys.exit(40)
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(s, handler)
    print("ready", flush=True)
    while True:
        time.sleep(1)
""")

FORWARDED = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT]


def _signal_when_ready(args, sig):
    """vupy run ARGS; send `sig` to vupy once COMMAND has said 'ready';
    return vupy's exit status."""
    with started(args) as proc:
        wait_line(proc, "ready")
        os.kill(proc.pid, sig)
        return finish(proc)


@pytest.mark.parametrize("sig", FORWARDED, ids=lambda s: s.name)
def test_sigterm_to_vupy_reaches_command(sig, tmp_path):
    """Each of the four signals, sent to vupy by kill(2), is what COMMAND
    gets; COMMAND's handler then decides the exit status."""
    out = tmp_path / "got"
    status = _signal_when_ready(["--stack", "/dev/net/vupyt-n=netns:new", "--",
                                 PYTHON, "-c", SIGNAL_SCRIPT, str(out)], sig)
    assert out.read_text() == sig.name
    assert status == 40


@pytest.mark.parametrize("sig", FORWARDED, ids=lambda s: s.name)
def test_signal_to_vupy_kills_command_without_handler(sig):
    """COMMAND that does not catch the signal dies of it; vupy says 128+N."""
    script = ("import signal, time; "
              "[signal.signal(s, signal.SIG_DFL) for s in (signal.SIGINT, signal.SIGQUIT)]; "
              "print('ready', flush=True); time.sleep(100)")
    status = _signal_when_ready(["--", PYTHON, "-c", script], sig)
    assert status == 128 + sig
