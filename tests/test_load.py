# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""Load: many threads, processes and sockets at once, and what a long
session leaves behind.  The programs are tests/c/load.c; every socket they
make is checked to be in the network namespace of the stack it was asked
of (SIOCGSKNS, compared with the inode of the namespace).

- 64 threads x 2,000 sockets, each thread alternating between two stacks
  with msocket(PATH): all 128,000 calls return a socket, each on its stack.
  A deadlock fails the test: the session must end within DEADLOCK_SECONDS.
- 500 processes forked at once, half of them orphaned before they exec
  (adopted by the session's subreaper): each sets its AF_INET default with
  msocket(PATH, AF_INET, SOCK_DEFAULT, 0) before execve and uses it through
  socket() after, its AF_INET6 sockets stay on the session's AF_INET6
  default (the host's), and the other stack, made its default after
  execve, is used at once.  With and without the process-events connector.
- Leaks: one session makes 100,000 routed sockets (8 threads) and 2,000
  such processes (4 waves of 500) after a warm-up of 1,000 sockets and 20
  processes; its AF_INET6 default is a third stack.  The supervisor (the
  `vupy run` process) is measured once the session is quiet (no process
  below vupy but the long-lived ones: keeper, shell, namespace holders)
  after the warm-up, and again at the end, with the session still alive.
  Bounds at the end:
    descriptors: no more than at the start (a pidfd or socket kept per
      process or call would be thousands);
    threads: as many as at the start;
    VmRSS: at most RSS_GROWTH_KIB (8 MiB) above the start: 84 bytes kept
      per socket, or 4 KiB per process, would exceed it;
    the process table: `vumount` USERS 0 for the two loaded stacks, and 2
      (the shell and vumount itself) for the AF_INET6 default, which every
      known process uses: ended processes are all forgotten;
    processes: the same long-lived ones below vupy (no zombie, no orphan).
  After the session: the test has no child left; no process of the session
  runs on; no process or descriptor holds its `netns:new` namespaces, and
  none is left in /run/netns; the named namespaces it was given are still
  there; nothing was made at the stack paths.  With
  process events, without them (VUPY_PROCESS_EVENTS=off: a pidfd per known
  process, exits trapped), and as uid 65534 (no events either; `netns:new`
  stacks in a user namespace, served by holder processes).
  The figures are printed (pytest -s).
Waiting for a session to become quiet is bounded by SETTLE_SECONDS; a time
is never what is asserted.
"""
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time

import pytest

from helpers import (BIN, HOST_INODE, HOST_LABEL, NOBODY, SYSTEM_PYTHON, VUPY, descendants, kill_quietly,
                     ns_inode, run, stat_fields, vupy)

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "c", "load.c")
DEADLOCK_SECONDS = 600
SETTLE_SECONDS = 30
RSS_GROWTH_KIB = 8 * 1024

# COMMAND of the leak sessions: prints its parent (vupy's keeper), then runs
# each line the test sends and answers "status N"; ends when stdin does.
DRIVER = 'echo "$PPID"; while read -r line; do eval "$line"; echo "status $?"; done'


@pytest.fixture
def load():
    """tests/c/load.c, built where every user may run it; any process still
    running it at teardown is killed."""
    if shutil.which("gcc") is None:
        pytest.skip("no gcc")
    directory = tempfile.mkdtemp(prefix="vupyt-load-")
    os.chmod(directory, 0o755)
    program = os.path.join(directory, "load")
    r = run(["gcc", "-Wall", "-Wextra", "-Werror", "-O2", "-pthread", "-o", program, SOURCE])
    assert r.returncode == 0, r.stderr
    yield program
    kill_quietly(*running(program))
    shutil.rmtree(directory)


def named_namespaces():
    """{ino: name} of /run/netns (other tests add and remove theirs meanwhile)."""
    found = {}
    for name in os.listdir("/run/netns"):
        try:
            found[ns_inode(name)] = name
        except OSError:
            pass
    return found


def pids():
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def exe(pid):
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


def running(program):
    return [pid for pid in pids() if exe(pid) == program]


def stat(pid):
    """(state, parent, start time) of a process; None if it is gone."""
    try:
        fields = stat_fields(pid)
    except OSError:
        return None
    return fields[0], int(fields[1]), int(fields[19])


def ppid(pid):
    st = stat(pid)
    return st and st[1]


def started(pid):
    st = stat(pid)
    return st and st[2]


def figures(pid):
    """The supervisor's descriptors, threads and resident memory (KiB)."""
    with open(f"/proc/{pid}/status") as f:
        status = dict(line.split(":", 1) for line in f)
    return {"fds": len(os.listdir(f"/proc/{pid}/fd")), "threads": int(status["Threads"]),
            "rss_kib": int(status["VmRSS"].split()[0])}


def holders(kind, number):
    """Processes in the namespace of type `kind` (net, mnt) and inode
    `number`, or with a descriptor of it."""
    nsfs = os.stat(f"/proc/self/ns/{kind}").st_dev
    found = []
    for pid in pids():
        try:
            if os.stat(f"/proc/{pid}/ns/{kind}").st_ino == number:
                found.append(pid)
                continue
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                st = os.stat(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == (nsfs, number):
                found.append(pid)
                break
    return found


@pytest.mark.long
def test_threads_on_two_stacks_at_once(netns, load):
    """64 threads x 2,000 msocket calls, alternating stacks: every call
    gives a socket of the stack it names, and the session ends."""
    a, b = netns(), netns()
    try:
        r = vupy("--stack", f"/dev/net/a=netns:{a}", "--stack", f"/dev/net/b=netns:{b}", "--",
                 load, "threads", "64", "2000", "/dev/net/a", str(ns_inode(a)), "/dev/net/b", str(ns_inode(b)),
                 timeout=DEADLOCK_SECONDS)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the session did not end in {DEADLOCK_SECONDS} s: a deadlock")
    assert (r.returncode, r.stdout) == (0, "a=64000 b=64000\n"), r.stderr


def test_processes_fork_and_exec_at_once(netns, load, process_events):
    """500 processes at once, each with its own default, set before execve
    and changed after it; half of them orphans."""
    a, b = netns(), netns()
    r = vupy("--stack", f"/dev/net/a=netns:{a}", "--stack", f"/dev/net/b=netns:{b}", "--",
             load, "procs", "500", "1", "/dev/net/a", str(ns_inode(a)), "/dev/net/b", str(ns_inode(b)), str(HOST_INODE),
             timeout=DEADLOCK_SECONDS)
    assert (r.returncode, r.stdout) == (0, "ok=500\n"), r.stderr


class Session:
    """A vupy session running DRIVER, stepped by the test; vupy is killed
    (and with it, by its keeper, every process of the session) if it lasts
    more than DEADLOCK_SECONDS."""

    def __init__(self, argv, env, log, program):
        self.program = program
        self.log = log
        with open(log, "w") as stderr:
            self.proc = subprocess.Popen(argv + ["--", "sh", "-c", DRIVER], env=env, text=True,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr)
        self.watchdog = threading.Timer(DEADLOCK_SECONDS, self.proc.kill)
        self.watchdog.start()
        self.keeper = int(self.proc.stdout.readline() or 0)

    def errors(self):
        with open(self.log) as f:
            return f.read()

    def step(self, line):
        """Run `line` in the session: (status, its output lines)."""
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        out = []
        for text in self.proc.stdout:
            if text.startswith("status "):
                return int(text.split()[1]), out
            out.append(text.rstrip("\n"))
        pytest.fail(f"the session ended during {line!r}: {self.errors()}")

    def ok(self, line):
        status, out = self.step(line)
        assert status == 0, f"{line}: {out} {self.errors()}"
        return out

    def quiet(self):
        """Wait until every process below vupy is a long-lived one (no
        zombie, none exiting, none running the load program), at most
        SETTLE_SECONDS; return them as {(pid, start time)}."""
        deadline = time.monotonic() + SETTLE_SECONDS
        while True:
            below = {pid: (exe(pid), stat(pid)) for pid in descendants(self.proc.pid)}
            busy = [pid for pid, (path, st) in below.items()
                    if path in (None, self.program) or st is None or st[0] == "Z"]
            if not busy or time.monotonic() > deadline:
                assert not busy, f"processes of the session do not end: {busy}"
                return {(pid, st[2]) for pid, (_, st) in below.items()}
            time.sleep(0.05)

    def users(self, vumount, want):
        """USERS of every stack, as vumount lists them, once they are `want`
        (ended processes forgotten), or after SETTLE_SECONDS."""
        deadline = time.monotonic() + SETTLE_SECONDS
        while True:
            rows = self.ok(vumount)[1:]
            users = {row.split()[0]: int(row.split()[-1]) for row in rows}
            if users == want or time.monotonic() > deadline:
                return users
            time.sleep(0.05)

    def end(self):
        self.proc.stdin.close()
        status = self.proc.wait()
        self.watchdog.cancel()
        return status

    def kill(self):
        self.watchdog.cancel()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def measure(session, vumount, users, long_lived, start=None):
    """The supervisor's figures once the session is quiet and the stacks
    have `users`; at the end (`start` given), once its descriptors are back
    down (at most SETTLE_SECONDS)."""
    assert session.users(vumount, users) == users
    assert session.quiet() == long_lived
    deadline = time.monotonic() + SETTLE_SECONDS
    now = figures(session.proc.pid)
    while start is not None and now["fds"] > start["fds"] and time.monotonic() < deadline:
        time.sleep(0.05)
        now = figures(session.proc.pid)
    return now


@pytest.mark.long
@pytest.mark.parametrize("who", ["root, events", "root, no events", "uid 65534"])
def test_supervisor_does_not_leak(who, request, netns, load, probe, tmp_path):
    """100,000 sockets and 2,000 processes later, the supervisor is as it
    was, and after the session nothing of it is left (see the top)."""
    directory = None
    if who == "uid 65534":
        tools = request.getfixturevalue("unprivileged")
        env = dict(tools["env"])
        directory = tempfile.mkdtemp(prefix="vupyt-load-")
        os.chown(directory, 65534, 65534)
        argv, vumount = NOBODY + [tools["vupy"], "run"], tools["vumount"]
        stacks = {os.path.join(directory, name): "netns:new" for name in "abc"}
    else:
        env = dict(os.environ)
        argv, vumount = [VUPY, "run"], os.path.join(BIN, "vumount")
        stacks = {"/dev/net/a": f"netns:{netns()}", "/dev/net/b": f"netns:{netns()}",
                  "/dev/net/c": "netns:new"}
    env.pop("VUPY_PROCESS_EVENTS", None)
    if who == "root, no events":
        env["VUPY_PROCESS_EVENTS"] = "off"
    options = [f"--stack={path}={spec}" for path, spec in stacks.items()]
    try:
        leaves_nothing(argv + options + [f"--default=inet6={list(stacks)[2]}"], env,
                       stacks, vumount, load, probe, tmp_path, who)
        if directory:
            assert os.listdir(directory) == []
    finally:
        if directory:
            shutil.rmtree(directory)


def leaves_nothing(argv, env, stacks, vumount, load, probe, tmp_path, who):
    """The leak test proper, in a session started by `argv` with `stacks`
    ({path: spec}: the two loaded, then the session's AF_INET6 default)."""
    files = {path: os.path.exists(path) for path in stacks}
    given = {path: spec for path, spec in stacks.items() if spec != "netns:new"}
    given_ino = {path: ns_inode(spec.split(":", 1)[1]) for path, spec in given.items()}
    session = Session(argv, env, tmp_path / "stderr", load)
    try:
        assert ppid(session.keeper) == session.proc.pid, session.errors()
        ns = {path: session.ok(f"{SYSTEM_PYTHON} {probe} msock {path} inet dgram")[0] for path in stacks}
        assert all(re.fullmatch(r"ns:\d+", n) for n in ns.values()), ns
        assert len(set(ns.values()) | {HOST_LABEL}) == len(stacks) + 1, ns
        made = [int(ns[path][3:]) for path, spec in stacks.items() if spec == "netns:new"]
        a, b, c = stacks
        loaded = f"{a} {ns[a][3:]} {b} {ns[b][3:]}"

        def sockets(threads, per_thread):
            half = threads * per_thread // 2
            assert session.ok(f"{load} threads {threads} {per_thread} {loaded}") == [f"a={half} b={half}"]

        def processes(count):
            assert session.ok(f"{load} procs {count} 1 {loaded} {ns[c][3:]}") == [f"ok={count}"]

        sockets(2, 500)
        processes(20)
        long_lived = session.quiet()
        # The shell and vumount itself have the session's AF_INET6 default;
        # every other process is gone.
        users = {a: 0, b: 0, c: 2}
        start = measure(session, vumount, users, long_lived)
        sockets(8, 12500)
        for _ in range(4):
            processes(500)
        end = measure(session, vumount, users, long_lived, start)
        print(f"\nsupervisor ({who}), after 1,000 sockets and 20 processes: {start}"
              f"\n  after 100,000 more sockets and 2,000 more processes: {end}")
        assert end["fds"] <= start["fds"], (start, end)
        assert end["threads"] == start["threads"], (start, end)
        assert end["rss_kib"] <= start["rss_kib"] + RSS_GROWTH_KIB, (start, end)
        assert session.end() == 0, session.errors()
    finally:
        session.kill()
    assert [pid for pid in pids() if ppid(pid) == os.getpid()] == []
    assert [pid for pid, t in long_lived if started(pid) == t] == []
    assert running(load) == []
    for number in made:
        assert holders("net", number) == [], number
    assert {path: os.path.exists(path) for path in stacks} == files
    assert [name for number, name in named_namespaces().items() if number in made] == []
    for path, spec in given.items():
        assert ns_inode(spec.split(":", 1)[1]) == given_ino[path], f"{spec}: changed by the session"
