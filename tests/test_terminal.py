# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""vupy on a terminal (a real pseudo-terminal, pexpect): an interactive bash
keeps job control, Ctrl-C, Ctrl-Z and the window size, and Ctrl-C reaches
the foreground job, not vupy; a job left running is ended with the session;
a hangup of the terminal ends the session as it would the shell.
"""
import contextlib
import os
import signal
import time

import pexpect
import pytest

from helpers import PYTHON, VUPY, gone, kill_quietly

EXPECT_TIMEOUT = 20
PROMPT = "VUPYT> "
PROMPT2 = "VUPYT2> "     # what the tests set: bash prints it, their echo never does


@contextlib.contextmanager
def _bash():
    """An interactive bash in a session, on a 24x80 terminal, at its prompt
    PROMPT2: (the pexpect child, a list for the pids of background jobs);
    at the end, what is still running of both is killed."""
    env = dict(os.environ, TERM="dumb", HISTFILE="/dev/null", PS1=PROMPT, PS2="")
    child = pexpect.spawn(VUPY, ["run", "--stack", "/dev/net/vupyt-n=netns:new", "--",
                                 "bash", "--norc", "--noprofile", "-i"],
                          env=env, dimensions=(24, 80), timeout=EXPECT_TIMEOUT,
                          encoding="utf-8", codec_errors="replace")
    jobs = []
    try:
        _prompt(child)
        child.sendline("PS1='VU''PYT2> '")
        child.expect_exact(PROMPT2)
        yield child, jobs
    finally:
        if child.isalive():
            child.terminate(force=True)
        kill_quietly(*jobs)


def _prompt(child):
    child.expect_exact(PROMPT)


def _say(child, line, expect):
    """Send a command line and wait for `expect` (a regex) in its output.
    The line must be written so that its echo does not match `expect`."""
    child.sendline(line)
    child.expect(expect)


def _stop_a_job(child, marker):
    """Start a foreground job, stop it with Ctrl-Z, and see `jobs` say so."""
    _say(child, f"sh -c 'echo {marker}-''started; exec sleep 100'", f"{marker}-started")
    child.sendcontrol("z")
    child.expect(r"Stopped")
    child.expect_exact(PROMPT2)
    _say(child, "jobs", r"\[1\]\+\s+Stopped\s+sh -c")
    child.expect_exact(PROMPT2)


def test_interactive_bash_ctrl_c_reaches_foreground_job():
    with _bash() as (child, jobs):
        # Ctrl-C goes to the foreground job: it dies of SIGINT, bash and vupy live
        _say(child, "sh -c 'echo fg-''started; exec sleep 100'", "fg-started")
        child.sendintr()
        child.expect_exact(PROMPT2)
        _say(child, "echo st''atus=$?", r"status=(\d+)")
        assert child.match.group(1) == "130"
        child.expect_exact(PROMPT2)
        assert child.isalive()
        _say(child, "echo mark''er-1", "marker-1")
        child.expect_exact(PROMPT2)

        # the window size, and its changes, reach the shell and its jobs
        _say(child, "stty size", r"(\d+) (\d+)\r\n")
        assert child.match.groups() == ("24", "80")
        child.expect_exact(PROMPT2)
        winch = ("python3 -c \"import os, signal, sys; signal.signal(signal.SIGWINCH, "
                 "lambda *a: (print('winch', *os.get_terminal_size(0)), sys.exit(0))); "
                 "print('winch-''ready', flush=True); signal.pause()\"")
        _say(child, winch, "winch-ready")
        child.setwinsize(40, 132)
        child.expect(r"winch (\d+) (\d+)")
        assert child.match.groups() == ("132", "40")
        child.expect_exact(PROMPT2)
        _say(child, "stty size", r"(\d+) (\d+)\r\n")
        assert child.match.groups() == ("40", "132")
        child.expect_exact(PROMPT2)

        # job control: Ctrl-Z stops the foreground job, jobs/fg/kill work
        _stop_a_job(child, "z")
        _say(child, "fg", r"sh -c")
        child.sendintr()
        child.expect_exact(PROMPT2)
        _say(child, "echo st''atus=$?", r"status=(\d+)")
        assert child.match.group(1) == "130"
        child.expect_exact(PROMPT2)

        _stop_a_job(child, "z2")
        child.sendline("kill %1")
        child.expect_exact(PROMPT2)
        # bash sends SIGTERM and SIGCONT; the job is gone once bash has
        # reaped it, which may take it a moment: give it up to 5 s.
        _say(child, "for i in $(seq 50); do [ -z \"$(jobs -s)\" ] && break; sleep 0.1; done; "
                    "wait; jobs; echo jo''bs-done", r"jobs-done")
        assert "Stopped" not in child.before
        child.expect_exact(PROMPT2)

        # a background job, and the shell still answers
        _say(child, "sleep 100 & echo bg-''pid=$!", r"bg-pid=(\d+)")
        bg = int(child.match.group(1))
        jobs.append(bg)
        child.expect_exact(PROMPT2)
        _say(child, "jobs -r", r"\[1\]\+\s+Running\s+sleep 100")
        child.expect_exact(PROMPT2)
        child.sendline("kill %1; wait")
        child.expect_exact(PROMPT2)
        _say(child, "echo mark''er-2", "marker-2")
        child.expect_exact(PROMPT2)

        assert child.isalive()
        child.sendline("exit 3")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 3, (child.exitstatus, child.signalstatus)
        assert gone(bg)


def test_interactive_bash_leftover_background_job_is_ended():
    """A job still running when the shell exits is ended with the session."""
    with _bash() as (child, jobs):
        _say(child, "nohup sleep 1000 >/dev/null 2>&1 & echo bg-''pid=$!", r"bg-pid=(\d+)")
        bg = int(child.match.group(1))
        jobs.append(bg)
        child.expect_exact(PROMPT2)
        child.sendline("exit 0")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0
        assert gone(bg)


def _wait_exit(pid, patience=EXPECT_TIMEOUT):
    """waitpid(pid) for at most `patience` seconds: the status, or None."""
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.05)
    return None


@pytest.mark.parametrize("command", [["bash", "--norc", "--noprofile", "-i"], None],
                         ids=["interactive-bash", "plain-command"])
def test_terminal_hangup_ends_session(command):
    """The terminal hangs up (its master side is closed) while a job runs
    in the foreground.  Outside vupy the session leader (the shell, or the
    command itself) gets SIGHUP from the kernel: the shell passes it to its
    jobs and dies of it, a plain command dies of it.  Under vupy, vupy is
    the session leader: the session must end the same way."""
    env = dict(os.environ, TERM="dumb", HISTFILE="/dev/null", PS1=PROMPT, PS2="")
    argv = ["run", "--"] + (command or [PYTHON, "-c",
                                        "import os; print('pid=%d' % os.getpid(), flush=True); "
                                        "os.execvp('sleep', ['sleep', '1000'])"])
    child = pexpect.spawn(VUPY, argv, env=env, dimensions=(24, 80), timeout=EXPECT_TIMEOUT,
                          encoding="utf-8", codec_errors="replace")
    job_pid = None
    try:
        if command:
            _prompt(child)
            child.sendline("sh -c 'echo pi\"\"d=$$; exec sleep 1000'")
        child.expect(r"pid=(\d+)")
        job_pid = int(child.match.group(1))
        # hang up: close the master side, as a terminal emulator or sshd does
        child.ptyproc.fileobj.close()
        status = _wait_exit(child.pid)
        assert status is not None, "vupy is still running after the terminal hung up"
        assert os.waitstatus_to_exitcode(status) == 128 + signal.SIGHUP
        assert gone(job_pid), "the foreground job survived the hangup"
    finally:
        try:
            os.kill(child.pid, signal.SIGKILL)
            os.waitpid(child.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        if job_pid:
            kill_quietly(job_pid)
