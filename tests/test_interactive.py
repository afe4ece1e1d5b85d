# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""Interactive and job-control safety: what a terminal and a process group
do to a session (issue 13).

Pinned here, with a real pseudo-terminal (pexpect), real stacks and real
process groups:

* ^C at the terminal reaches COMMAND, which catches it and goes on making
  new connections over its stacks: the stacks' helpers (the lwIP worker,
  vde_plug, the namespace holder of a vupy without root) are in sessions of
  their own, with no signal blocked, and never get it; vupy prints no
  traceback and exits with COMMAND's status;
* a signal sent to the process group of vupy and COMMAND (kill -INT -PGID,
  -TERM, -HUP, -QUIT), or by the terminal (^C, ^\\), reaches COMMAND exactly
  as often as it reaches the same program run without vupy: once; one sent
  to vupy alone is passed on, once;
* a signal that comes while the stacks are made ends vupy before COMMAND
  starts: one line, status 128+N, every stack made so far closed.

Stack paths are in a directory every user may write (vdenet.STACK_DIR), so
that the same paths serve sessions as root and as uid 65534.
"""
import io
import os
import re
import signal
import textwrap
import time
import urllib.request

import pexpect
import pytest

from helpers import NOBODY, PYTHON, SYSTEM_PYTHON, TIMEOUT, VUPY, comm, end, spawned, stat_fields
from vdenet import LAN_IP, PRELUDE, STACK_DIR, TCP_ECHO, py
from vupy._procs import children

EXPECT_SECONDS = 60
VDE_IP = "10.9.0.5"

# Both apps below: say it is ready, then wait for ^C and catch it.
UNTIL_CTRL_C = textwrap.dedent("""
    def until_ctrl_c():
        try:
            say('app-ready')
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            say('interrupted')
""")

# COMMAND of the ^C tests, on a stack that is its default: one exchange with
# the echo server at argv[1]:argv[2] before ^C, a KeyboardInterrupt caught,
# then another exchange on a new connection.
CLIENT_APP = PRELUDE + UNTIL_CTRL_C + textwrap.dedent("""
    def ask(word):
        s = connect(sys.argv[1], int(sys.argv[2]))
        s.sendall(word.encode() + b'\\n')
        return recvline(s).decode().strip()

    say('before', ask('before'))
    until_ctrl_c()
    say('after', ask('after'))
""")

# The same on a stack with nothing but lo: a listener made before ^C, a new
# connection to it after.
LOOPBACK_APP = PRELUDE + UNTIL_CTRL_C + textwrap.dedent("""
    server = listener('127.0.0.1', 8080)
    until_ctrl_c()
    c = connect('127.0.0.1', 8080)
    a, _ = server.accept()
    c.sendall(b'after\\n')
    say('after', recvline(a).decode().strip())
""")


def _spawn(argv, env=None):
    """argv on a pseudo-terminal of its own (its session leader, in the
    terminal's foreground process group), everything it prints kept."""
    child = pexpect.spawn(argv[0], argv[1:], env=env, dimensions=(24, 80), timeout=EXPECT_SECONDS,
                          encoding="utf-8", codec_errors="replace")
    child.logfile_read = io.StringIO()
    return child


def _finish(child):
    """(exit status, everything printed) once the pty's program has ended."""
    child.expect(pexpect.EOF)
    child.close()
    output = child.logfile_read.getvalue()
    assert child.signalstatus is None, (child.signalstatus, output)
    return child.exitstatus, output


def _session_of(pid):
    return int(stat_fields(pid)[3])


def _blocked(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1], 16) for line in f if line.startswith("SigBlk:"))


def _helpers_apart(vupy_pid):
    """Names of vupy's helpers, checked: each of vupy's children but the
    keeper (the one in vupy's session) is the leader of a session of its
    own, with no signal blocked."""
    below = children(vupy_pid)
    sessions = {pid: _session_of(pid) for pid in below}
    keepers = [pid for pid in below if sessions[pid] == _session_of(vupy_pid)]
    assert len(keepers) == 1, {pid: (comm(pid), sessions[pid]) for pid in below}
    helpers = [pid for pid in below if pid not in keepers]
    for pid in helpers:
        assert sessions[pid] == pid and _blocked(pid) == 0, (comm(pid), sessions[pid], hex(_blocked(pid)))
    return sorted(comm(pid) for pid in helpers)


def _ctrl_c_then_new_connection(child, helpers):
    """^C once COMMAND is ready (and vupy's helpers, named `helpers`, are
    checked); COMMAND catches it and connects again.  Returns what it got
    on the new connection; vupy must have said nothing, and exited with
    COMMAND's 0."""
    try:
        child.expect_exact("app-ready")
        assert _helpers_apart(child.pid) == helpers
        child.sendintr()
        child.expect_exact("interrupted")
        child.expect(r"after (\S+)")
        reply = child.match.group(1)
        status, output = _finish(child)
    finally:
        if child.isalive():
            child.terminate(force=True)
    assert status == 0, output
    assert "Traceback" not in output and "vupy:" not in output, output
    return reply


def test_ctrl_c_leaves_lwip_stack_working(vde_lan, background):
    """lwip: its worker does not get the terminal's SIGINT; after ^C the
    program's new connection through lwIP is served."""
    background(vde_lan.ns_argv(py(TCP_ECHO, LAN_IP, 7300)), ready="ready")
    path = os.path.join(STACK_DIR, "ci-lwip")
    child = _spawn([VUPY, "run", f"--stack={vde_lan.stack(path)}", f"--default={path}", "--",
                    PYTHON, "-u", "-c", CLIENT_APP, LAN_IP, "7300"])
    assert _ctrl_c_then_new_connection(child, ["vupy-lwip"]) == "echo:after"


def test_ctrl_c_leaves_vde_stack_working(vde_lan, background):
    """vde: vde_plug does not get the terminal's SIGINT; after ^C the link
    is up and the program's new connection is served."""
    background(vde_lan.ns_argv(py(TCP_ECHO, LAN_IP, 7301)), ready="ready")
    path = os.path.join(STACK_DIR, "ci-vde")
    stack = vde_lan.stack(path, f"{VDE_IP}/24", None, module="vde")
    child = _spawn([VUPY, "run", f"--stack={stack}", f"--default={path}", "--",
                    PYTHON, "-u", "-c", CLIENT_APP, LAN_IP, "7301"])
    assert _ctrl_c_then_new_connection(child, ["vde_plug"]) == "echo:after"


def test_ctrl_c_leaves_rootless_netns_working(unprivileged):
    """netns:new of a vupy without root (uid 65534): the process holding the
    namespaces does not get the terminal's SIGINT; after ^C the program
    makes a new socket there and reaches the listener it made before."""
    path = os.path.join(STACK_DIR, "ci-netns")
    child = _spawn([*NOBODY, unprivileged["vupy"], "run", f"--stack={path}=netns:new",
                    f"--default={path}", "--", SYSTEM_PYTHON, "-u", "-c", LOOPBACK_APP],
                   env=unprivileged["env"])
    assert _ctrl_c_then_new_connection(child, [os.path.basename(SYSTEM_PYTHON)]) == "after"


# ------------------------------------------------------- delivery counts

QUIET_SECONDS = 1.0

# Counts the deliveries of the signal named argv[1] with a handler; once one
# has come, and then QUIET_SECONDS pass without another, prints the count.
# With argv[2] "own-group", it leads a process group of its own.
COUNTER = textwrap.dedent(f"""
    import os, signal, sys, time
    if sys.argv[2:] == ['own-group'] and os.getpgrp() != os.getpid():
        os.setpgid(0, 0)
    count = 0
    def counted(signo, frame):
        global count
        count += 1
    signal.signal(getattr(signal, sys.argv[1]), counted)
    print('ready', flush=True)
    while count == 0:
        time.sleep(0.05)
    seen = None
    while seen != count:
        seen = count
        time.sleep({QUIET_SECONDS})
    print('count', count, flush=True)
""")


def _count(argv, send):
    """Run argv, `send` it a signal (send(pid)) once it is ready; (exit
    status, the count it printed)."""
    proc = spawned(argv)
    try:
        assert proc.stdout.readline() == "ready\n", proc.communicate(timeout=TIMEOUT)
        send(proc.pid)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        end(proc)
    assert "Traceback" not in err and "vupy:" not in err, err
    return proc.returncode, out


FORWARDED = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT]


# vupy run, and vupy run inside a session (served by the enclosing one).
SESSIONS = {"session": [VUPY, "run", "--"], "nested": [VUPY, "run", "--", VUPY, "run", "--"]}


@pytest.mark.parametrize("sig", FORWARDED, ids=lambda s: s.name)
@pytest.mark.parametrize("session", SESSIONS)
def test_group_signal_reaches_command_once_as_natively(sig, session):
    """kill -SIG -PGID, the group being (natively) the program, or (under
    vupy) vupy, its keeper and COMMAND (and a nested session's vupy and
    keeper): each process gets it from the kernel; no vupy may pass on a
    second copy."""
    argv = [PYTHON, "-c", COUNTER, sig.name]
    native = _count(argv, lambda pid: os.killpg(pid, sig))
    session = _count([*SESSIONS[session], *argv], lambda pid: os.killpg(pid, sig))
    assert native == session == (0, "count 1\n")


def test_group_signal_reaches_command_in_a_group_of_its_own_once():
    """COMMAND has left the group (as an interactive shell does): kill -INT
    -PGID of the job's group, vupy's, reaches it once, through vupy, as it
    reaches the program that leads its job's group natively."""
    argv = [PYTHON, "-c", COUNTER, "SIGINT", "own-group"]
    native = _count(argv, lambda pid: os.killpg(pid, signal.SIGINT))
    session = _count([VUPY, "run", "--", *argv], lambda pid: os.killpg(pid, signal.SIGINT))
    assert native == session == (0, "count 1\n")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
@pytest.mark.parametrize("session", SESSIONS)
def test_signal_to_vupy_alone_reaches_command_once(sig, session):
    """kill -SIG VUPYPID: only vupy gets it from the kernel, and passes it
    on, once (through a nested session's vupy too), as COMMAND would have
    got it natively."""
    argv = [PYTHON, "-c", COUNTER, sig.name]
    native = _count(argv, lambda pid: os.kill(pid, sig))
    session = _count([*SESSIONS[session], *argv], lambda pid: os.kill(pid, sig))
    assert native == session == (0, "count 1\n")


def test_group_interrupt_ends_http_server_cleanly():
    """The issue's case: kill -INT -PGID of `vupy run -- python3 -m
    http.server`, which ends on its KeyboardInterrupt with status 0 (a
    second SIGINT would interrupt its cleanup: a traceback and 130)."""
    proc = spawned([VUPY, "run", "--", PYTHON, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1"])
    try:
        serving = re.match(r"Serving HTTP on \S+ port (\d+)", proc.stdout.readline())
        assert serving, proc.communicate(timeout=TIMEOUT)
        # An answer comes from serve_forever, inside the try that catches
        # KeyboardInterrupt (the line above is printed before it).
        with urllib.request.urlopen(f"http://127.0.0.1:{serving.group(1)}/", timeout=TIMEOUT) as answer:
            assert answer.status == 200
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        end(proc)
    assert proc.returncode == 0 and "Traceback" not in err, (proc.returncode, err)
    assert "Keyboard interrupt received, exiting." in out


@pytest.mark.parametrize("key, sig", [("c", signal.SIGINT), ("\\", signal.SIGQUIT)],
                         ids=["ctrl-c", "ctrl-backslash"])
def test_terminal_signal_reaches_command_once_as_natively(key, sig):
    """A non-interactive COMMAND on a terminal: the terminal signals its
    foreground process group (vupy, its keeper and COMMAND), so COMMAND gets
    it once, from the kernel, as the program alone on a terminal does."""
    counts = []
    for argv in ([PYTHON, "-c", COUNTER, sig.name], [VUPY, "run", "--", PYTHON, "-c", COUNTER, sig.name]):
        child = _spawn(argv)
        try:
            child.expect_exact("ready")
            child.sendcontrol(key)
            child.expect(r"count (\d+)")
            count = int(child.match.group(1))
            counts.append((_finish(child)[0], count))
        finally:
            if child.isalive():
                child.terminate(force=True)
    assert counts == [(0, 1), (0, 1)]


# --------------------------------------------- a signal before COMMAND

# A stack module whose `create` waits for a file PATH.go (having made
# PATH.making), and whose stacks make PATH.closed when closed.
SLOW_MODULE = """
    import os, socket, time
    from vupy.stack import Stack, StackModule

    class Slow(Stack):
        families = frozenset({socket.AF_INET})

        def __init__(self, path):
            self.path = path

        def close(self):
            open(self.path + '.closed', 'w').close()

    class Module(StackModule):
        name = 'vupytslow'
        description = 'test: a stack made when a file says so'
        families = frozenset({socket.AF_INET})

        def create(self, source, options):
            open(source + '.making', 'w').close()
            while not os.path.exists(source + '.go'):
                time.sleep(0.01)
            return Slow(source)
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_signal_while_stacks_are_made_ends_vupy_before_command(sig, stack_module, tmp_path):
    """The signal comes (to vupy's process group, as from a terminal) while
    the second stack is being made, and that stack would never be ready:
    vupy stops waiting for it, closes the one it made, says so in one line
    and exits with 128+N; COMMAND never starts."""
    env = stack_module("vupytslow", SLOW_MODULE)
    made, slow = str(tmp_path / "made"), str(tmp_path / "slow")
    open(made + ".go", "w").close()
    proc = spawned([VUPY, "run", f"--stack={os.path.join(STACK_DIR, 'ci-made')}=vupytslow:{made}",
                    f"--stack={os.path.join(STACK_DIR, 'ci-slow')}=vupytslow:{slow}",
                    "--", "echo", "started"], env=env)
    try:
        deadline = time.monotonic() + TIMEOUT
        while not os.path.exists(slow + ".making") and time.monotonic() < deadline:
            time.sleep(0.01)
        os.killpg(proc.pid, sig)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        end(proc)
    assert proc.returncode == 128 + sig and out == "", (proc.returncode, out, err)
    assert len(err.splitlines()) == 1 and sig.name in err and "Traceback" not in err, err
    assert os.path.exists(made + ".closed") and not os.path.exists(slow + ".closed")


def test_ctrl_c_while_an_lwip_stack_waits_for_its_lease(vde_switch):
    """^C at the terminal while an lwip stack waits for a DHCP lease that
    will not come (nothing serves DHCP on the switch): vupy ends at once,
    in one line, with 130, and the stack's worker goes with it."""
    child = _spawn([VUPY, "run", f"--stack={os.path.join(STACK_DIR, 'ci-lease')}=lwip:"
                    f"vde://{vde_switch}/sw,ip=dhcp", "--", "echo", "started"])
    deadline = time.monotonic() + TIMEOUT
    while not any(comm(pid) == "vupy-lwip" for pid in children(child.pid)) \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    asked = time.monotonic()
    child.sendcontrol("c")
    status, output = _finish(child)
    # The lease waits up to 10 s (VW_ADDRESS_SECONDS): well before that.
    assert time.monotonic() - asked < 5, output
    lines = [line.strip() for line in output.splitlines()]
    assert status == 130 and "Traceback" not in output, output
    assert lines == ["^Cvupy: SIGINT before COMMAND started: nothing was run"], output
