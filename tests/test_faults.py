# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""Faults: the supervisor killed, the programs killed in the middle of calls,
a stack's worker dying, the supervisor out of descriptors.  In each case
no socket is ever made on another stack than the one asked for, and what
the user is told is checked.
"""
import os
import signal
import textwrap
import time

from helpers import PYTHON, VUPY, comm, descendants, end, ended, ns_inode, parent, run, spawned, wait_for
from vdenet import STACK

SECONDS = 30


def _session(args, script, *script_args):
    """A session running the Python `script`, in a process group of its own
    (so that whatever it leaves is easy to find and kill)."""
    return spawned([VUPY, "run", *args, "--", PYTHON, "-c", textwrap.dedent(script), *script_args])


# The probe of the next test: a tree of processes that each report the
# namespace of a socket now and then, or the errno that socket() gave.
TREE = """
    import errno, fcntl, os, socket, sys, time
    def probe(tag):
        while True:
            try:
                with socket.socket() as s:
                    ns = os.fstat(fcntl.ioctl(s.fileno(), 0x894C)).st_ino
                    result = f'ns {ns}'
            except OSError as e:
                result = errno.errorcode[e.errno]
            os.write(1, f'{tag} {os.getpid()} {result}\\n'.encode())   # one line, one write
            time.sleep(0.05)
    if os.fork() == 0:                  # a child
        probe('child')
    if os.fork() == 0:                  # an orphan (its parent exits at once)
        if os.fork() == 0:
            probe('orphan')
        os._exit(0)
    if os.fork() == 0:                  # a process in a session of its own
        os.setsid()
        probe('setsid')
    probe('main')
"""


def test_killed_supervisor_ends_every_process_of_the_session(netns, vde_lan):
    """vupy killed with SIGKILL: every process of the session is killed at
    once (by the keeper, a process of vupy's between it and COMMAND), and
    vupy's helpers (the lwIP worker, vde_plug) end too.  Until then every
    socket is on the session's default stack."""
    ns = netns()
    programs = {}
    session = _session(["--stack", f"/dev/net/a=netns:{ns}", "--default", "/dev/net/a",
                        "--stack", vde_lan.stack(),
                        "--stack", vde_lan.stack(STACK + "v", "10.9.0.3/24", None, module="vde")], TREE)
    try:
        programs = _programs(session, ns)
        below = [pid for pid in descendants(session.pid) if not ended(pid)]
        helpers = sorted(comm(pid) for pid in below if pid not in programs.values())
        # The keeper (a copy of vupy), the lwIP worker and vde_plug.
        assert len(helpers) == 3 and {"vupy-lwip", "vde_plug"} <= set(helpers), helpers
        session.kill()
        wait_for(lambda: all(ended(pid) for pid in below), "the session's processes to end", SECONDS)
        rest = session.stdout.read().splitlines()
        assert all(line.split()[2:] in (["ns", str(ns_inode(ns))], ["ENOSYS"]) for line in rest), rest
    finally:
        end(session, programs.values())


def test_without_supervisor_and_keeper_socket_calls_fail_with_enosys(netns):
    """If the keeper dies with vupy (both killed), the programs go on, and
    every trapped call fails with ENOSYS (the listener is gone): never a
    socket of another stack."""
    ns = netns()
    session = _session(["--stack", f"/dev/net/a=netns:{ns}", "--default", "/dev/net/a"], TREE)
    programs = {}
    try:
        programs = _programs(session, ns)
        os.kill(parent(programs["main"]), signal.SIGKILL)     # the keeper
        session.kill()
        failing = set()
        deadline = time.monotonic() + SECONDS
        while failing != set(programs) and time.monotonic() < deadline:
            tag, _, *result = session.stdout.readline().split()
            if result == ["ENOSYS"]:
                failing.add(tag)
            else:
                assert tag not in failing and result == ["ns", str(ns_inode(ns))], (tag, result)
        assert failing == set(programs)
    finally:
        end(session, programs.values())


def _programs(session, ns):
    """{tag: pid} of the TREE programs, once each has made a socket, on the
    stack of namespace `ns`."""
    programs = {}
    while len(programs) < 4:
        tag, pid, *result = session.stdout.readline().split()
        assert result == ["ns", str(ns_inode(ns))], (tag, result)
        programs[tag] = int(pid)
    return programs


# Finds vupy from inside its session: COMMAND's parent is the keeper, whose
# parent is vupy.
FIND_VUPY = """
    import errno, fcntl, os, resource, signal, socket, sys, time
    import vupy
    def parent(pid):
        with open(f'/proc/{pid}/stat') as f:
            return int(f.read().rsplit(')', 1)[1].split()[1])
    VUPY = parent(parent(os.getpid()))
    def where(make):
        try:
            with make() as s:
                return 'ns %d' % os.fstat(fcntl.ioctl(s.fileno(), 0x894C)).st_ino
        except OSError as e:
            return errno.errorcode[e.errno]
"""


def test_programs_killed_in_the_middle_of_calls(netns):
    """Processes killed (SIGKILL) at random points of their socket() and
    msocket calls, 400 of them: the supervisor goes on serving, says
    nothing, and the next sockets are on the right stacks."""
    a, b = netns(), netns()
    script = FIND_VUPY + """
    import random
    for _ in range(50):
        pids = []
        for _ in range(8):
            pid = os.fork()
            if pid == 0:
                while True:
                    socket.socket().close()
                    vupy.msocket('/dev/net/b', socket.AF_INET, socket.SOCK_DGRAM).close()
            pids.append(pid)
        time.sleep(random.uniform(0, 0.02))
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    print(where(socket.socket), where(lambda: vupy.msocket('/dev/net/b', socket.AF_INET,
                                                           socket.SOCK_STREAM)))
    """
    r = run([VUPY, "run", "--stack", f"/dev/net/a=netns:{a}", "--stack", f"/dev/net/b=netns:{b}",
             "--default", "/dev/net/a", "--", PYTHON, "-c", textwrap.dedent(script)], timeout=120)
    assert r.returncode == 0 and r.stderr == "", r
    assert r.stdout.split() == ["ns", str(ns_inode(a)), "ns", str(ns_inode(b))]


def test_lwip_worker_dying(netns, vde_lan):
    """The lwIP worker killed: vupy says so, the stack's sockets (old and
    new) fail with ENETDOWN, and the session's other stacks go on."""
    ns = netns()
    script = FIND_VUPY + """
    old = vupy.msocket(sys.argv[1], socket.AF_INET, socket.SOCK_DGRAM)
    old.bind(('10.9.0.2', 5000))
    worker = [int(p) for t in os.listdir(f'/proc/{VUPY}/task')
              for p in open(f'/proc/{VUPY}/task/{t}/children').read().split()
              if open(f'/proc/{p}/comm').read().strip() == 'vupy-lwip']
    os.kill(worker[0], signal.SIGKILL)
    time.sleep(0.5)
    try:
        old.sendto(b'x', ('10.9.0.1', 9))
        print('sent')
    except OSError as e:
        print(errno.errorcode[e.errno])
    print(where(lambda: vupy.msocket(sys.argv[1], socket.AF_INET, socket.SOCK_DGRAM)))
    print(where(socket.socket))
    """
    r = run([VUPY, "run", "--stack", vde_lan.stack(), "--stack", f"/dev/net/a=netns:{ns}",
             "--default", "/dev/net/a", "--", PYTHON, "-c", textwrap.dedent(script), STACK])
    assert r.returncode == 0, r
    assert r.stdout.splitlines() == ["ENETDOWN", "ENETDOWN", f"ns {ns_inode(ns)}"]
    assert "the stack's worker" in r.stderr and "ENETDOWN" in r.stderr, r.stderr


def test_supervisor_out_of_descriptors(netns):
    """vupy's descriptor limit lowered under what it holds (prlimit): socket
    calls fail, with an errno and a line from vupy, never a socket of another
    stack; with the limit back, the next calls are served."""
    a, b = netns(), netns()
    script = FIND_VUPY + """
    held = {int(fd) for fd in os.listdir(f'/proc/{VUPY}/fd')}
    lowest_free = min(set(range(len(held) + 1)) - held)
    limits = resource.prlimit(VUPY, resource.RLIMIT_NOFILE)
    resource.prlimit(VUPY, resource.RLIMIT_NOFILE, (lowest_free, limits[1]))
    print(where(socket.socket), where(lambda: vupy.msocket('/dev/net/b', socket.AF_INET,
                                                           socket.SOCK_DGRAM)))
    resource.prlimit(VUPY, resource.RLIMIT_NOFILE, limits)
    print(where(socket.socket), where(lambda: vupy.msocket('/dev/net/b', socket.AF_INET,
                                                           socket.SOCK_DGRAM)))
    """
    r = run([VUPY, "run", "--stack", f"/dev/net/a=netns:{a}", "--stack", f"/dev/net/b=netns:{b}",
             "--default", "/dev/net/a", "--", PYTHON, "-c", textwrap.dedent(script)])
    assert r.returncode == 0, r
    out = r.stdout.splitlines()
    assert out == ["EMFILE EMFILE", f"ns {ns_inode(a)} ns {ns_inode(b)}"], (out, r.stderr)
    assert "descriptors" in r.stderr, r.stderr
