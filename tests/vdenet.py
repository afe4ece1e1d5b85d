# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""The VDE networks of the tests and the programs run on them.

`vde_lan` makes a vde_switch, a namespace with a tap interface (10.9.0.1/24,
fd09::1/64) and a vde_plug joining the two; stacks under test join the same
switch.  `background` runs a program and collects its output as it comes.
Everything a fixture makes is removed at teardown, whatever the outcome.
The fixtures are registered in conftest.py.
"""
import atexit
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

import pytest

from helpers import NOBODY, PYTHON, SYSTEM_PYTHON, VUPY, VUSTACK, ended, run, wait_for

LAN_IP, LAN_IP6 = "10.9.0.1", "fd09::1"         # the namespace's tap
LWIP_IP, LWIP_IP6 = "10.9.0.2", "fd09::2"       # the lwIP stack under test
# The stack under test: its file in a directory every user may write, so
# that the same path serves sessions run as root and as uid 65534.
STACK_DIR = tempfile.mkdtemp(prefix="vupyt-stacks-")
os.chmod(STACK_DIR, 0o1777)
atexit.register(shutil.rmtree, STACK_DIR, True)
STACK = os.path.join(STACK_DIR, "u")
PROGRAM_SECONDS = 25        # any one program: a hang fails the test, never blocks the run
READY_SECONDS = 15          # for a background program to say it is ready

# Shared by every Python program of these tests (run in the namespace or on lwIP).
PRELUDE = textwrap.dedent("""
    import errno, json, os, signal, socket, sys, time

    def family(host):
        return socket.AF_INET6 if ':' in host else socket.AF_INET

    def connect(host, port, seconds=10):
        # lwIP needs a moment (ARP, neighbour discovery, DAD): retry.
        deadline = time.monotonic() + seconds
        while True:
            s = socket.socket(family(host), socket.SOCK_STREAM)
            try:
                s.connect((host, port))
                return s
            except OSError:
                s.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def listener(host, port, kind=socket.SOCK_STREAM):
        s = socket.socket(family(host), kind)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        if kind == socket.SOCK_STREAM:
            s.listen(8)
        return s

    def recvline(s):
        data = b''
        while not data.endswith(b'\\n'):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return data

    def exchange(s, peer, data, seconds=10):
        # One datagram to peer and its answer, resent until it comes.
        s.settimeout(0.5)
        deadline = time.monotonic() + seconds
        while True:
            s.sendto(data, peer)
            try:
                return s.recvfrom(65535)
            except socket.timeout:
                if time.monotonic() > deadline:
                    raise

    def say(*words):
        print(*words, flush=True)

    def attempt(call):
        # 'ok', or the name of the errno call fails with.
        try:
            call()
            return 'ok'
        except OSError as e:
            return errno.errorcode[e.errno]
""")

# Namespace side: a TCP line echo server ("echo:" + each line), one connection
# at a time, reporting what it sees.
TCP_ECHO = textwrap.dedent("""
    s = listener(sys.argv[1], int(sys.argv[2]))
    say('ready')
    while True:
        c, peer = s.accept()
        say('conn', peer[0])
        while True:
            line = recvline(c)
            if not line.endswith(b'\\n'):
                break
            say('got', line.decode().strip())
            c.sendall(b'echo:' + line)
        say('eof')
        c.close()
""")

# A UDP echo server ("echo:" + each datagram), reporting each source; it ends
# when it receives b'quit'.
UDP_ECHO = textwrap.dedent("""
    s = listener(sys.argv[1], int(sys.argv[2]), socket.SOCK_DGRAM)
    say('ready')
    while True:
        data, peer = s.recvfrom(65535)
        if data == b'quit':
            break
        say('from', peer[0], peer[1], data.decode())
        s.sendto(b'echo:' + data, peer)
""")

# A client: connects (retrying), sends argv[3] as a line, prints the answer
# and both addresses as JSON.
CLIENT = textwrap.dedent("""
    s = connect(sys.argv[1], int(sys.argv[2]))
    s.sendall(sys.argv[3].encode() + b'\\n')
    reply = recvline(s).decode()
    say(json.dumps({'reply': reply, 'sock': s.getsockname()[:2], 'peer': s.getpeername()[:2]}))
""")

# A server for one TCP connection: prints 'peer ADDR PORT', answers the line
# it gets with 'srv:' + line, and exits.
ONE_SHOT = textwrap.dedent("""
    s = listener(sys.argv[1], int(sys.argv[2]))
    say('ready')
    c, peer = s.accept()
    say('peer', peer[0], peer[1])
    c.sendall(b'srv:' + recvline(c))
    c.close()
""")


class Runner:
    """Who runs the sessions of lwip_argv/lwip_run and the programs of py():
    root by default; uid 65534 (`as_user`, with the `unprivileged` install)
    for the tests that run both ways."""

    def __init__(self):
        self.prefix, self.vupy, self.vustack, self.python, self.env = [], VUPY, VUSTACK, PYTHON, None

    def as_nobody(self, unprivileged):
        self.prefix, self.vupy, self.vustack = NOBODY, unprivileged["vupy"], unprivileged["vustack"]
        self.python, self.env = SYSTEM_PYTHON, unprivileged["env"]


RUNNER = Runner()


@pytest.fixture(params=["root", "uid 65534"])
def as_user(request, monkeypatch):
    """Run the test twice: sessions as root, then as uid 65534."""
    if request.param != "root":
        runner = Runner()
        runner.as_nobody(request.getfixturevalue("unprivileged"))
        monkeypatch.setattr(sys.modules[__name__], "RUNNER", runner)
    return request.param


def py(script, *args):
    """argv running a Python program (PRELUDE included), unbuffered."""
    return [RUNNER.python, "-u", "-c", PRELUDE + textwrap.dedent(script), *map(str, args)]


def lines_of(text, word):
    """The words after `word` on each line of text starting with it."""
    return [line.split()[1:] for line in text.splitlines() if line.split()[:1] == [word]]


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def processes_with(text):
    """Pids of the live processes whose command line holds `text`."""
    return [int(pid) for pid in filter(str.isdigit, os.listdir("/proc"))
            if text in _cmdline(pid) and not ended(int(pid))]


# Background processes ------------------------------------------------------

class Background:
    """A running process whose stdout lines are collected as they come."""

    def __init__(self, argv):
        self.argv = argv
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, text=True, start_new_session=True,
                                     env=RUNNER.env)
        self.lines = queue.Queue()
        self.out, self.err = [], []
        self.readers = [threading.Thread(target=self._read, args=(self.proc.stdout, self.out, True)),
                        threading.Thread(target=self._read, args=(self.proc.stderr, self.err, False))]
        for t in self.readers:
            t.daemon = True
            t.start()

    def _read(self, stream, into, queued):
        for line in stream:
            into.append(line)
            if queued:
                self.lines.put(line)
        if queued:
            self.lines.put(None)

    def expect(self, word, seconds=READY_SECONDS):
        """The next stdout line starting with `word` (the earlier ones are skipped)."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                pytest.fail(f"{self.argv[-3:]}: no line {word!r}; stdout {''.join(self.out)!r} "
                            f"stderr {''.join(self.err)!r}")
            if line.startswith(word):
                return line.strip()

    def stderr_with(self, text, seconds=READY_SECONDS):
        """Stderr so far, once it holds `text` (fails the test if it never does)."""
        deadline = time.monotonic() + seconds
        while text not in "".join(self.err):
            if time.monotonic() > deadline or (self.proc.poll() is not None and
                                               not any(t.is_alive() for t in self.readers)):
                pytest.fail(f"{self.argv[-3:]}: no {text!r} in stderr {''.join(self.err)!r}")
            time.sleep(0.05)
        return "".join(self.err)

    def finish(self, seconds=PROGRAM_SECONDS):
        """(exit status, stdout, stderr) once the process has ended."""
        try:
            self.proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail(f"{self.argv[-3:]}: still running after {seconds} s; stdout "
                        f"{''.join(self.out)!r} stderr {''.join(self.err)!r}")
        for t in self.readers:
            t.join(timeout=5)
        return self.proc.returncode, "".join(self.out), "".join(self.err)

    def stop(self):
        """SIGTERM (vupy passes it on to its COMMAND), then SIGKILL the group."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


@pytest.fixture
def background():
    """start(argv, ready=None) -> Background; if `ready`, waits for a stdout
    line starting with it.  Every process is stopped at teardown."""
    started = []

    def start(argv, ready=None):
        b = Background(argv)
        started.append(b)
        if ready:
            b.expect(ready)
        return b

    yield start
    for b in started:
        b.stop()


# The VDE network --------------------------------------------------------------

class Lan:
    """The VDE network of a test: its switch and its namespace (None if it has none)."""

    def __init__(self, directory, ns):
        self.ns = ns
        self.switch = os.path.join(directory, "sw")
        self.url = f"vde://{self.switch}"

    def stack(self, path=STACK, ip=f"{LWIP_IP}/24", ip6=LWIP_IP6, module="lwip"):
        """A --stack argument: a stack of `module` on this network."""
        return f"{path}={module}:{self.url},ip={ip}" + (f",ip6={ip6}" if ip6 else "")

    def ns_argv(self, argv):
        return ["ip", "netns", "exec", self.ns, *argv]

    def in_ns(self, argv, **kw):
        """Run argv in the namespace, to its end."""
        kw.setdefault("timeout", PROGRAM_SECONDS)
        return run(self.ns_argv(argv), **kw)


@pytest.fixture
def vde_switch():
    """A vde_switch of the test's own, in a directory every user can reach
    (unprivileged sessions plug into it too): the directory.  The switch is
    killed and the directory removed at teardown."""
    directory = tempfile.mkdtemp(prefix="vupyt-lan-")
    os.chmod(directory, 0o755)
    switch, pidfile = os.path.join(directory, "sw"), os.path.join(directory, "sw.pid")
    pid = None
    try:
        r = run(["vde_switch", "-s", switch, "-m", "777", "-d", "-p", pidfile], timeout=PROGRAM_SECONDS)
        assert r.returncode == 0, r.stderr
        wait_for(lambda: os.path.exists(os.path.join(switch, "ctl")) and os.path.exists(pidfile)
                  and os.path.getsize(pidfile) > 0,
                  "vde_switch to start")
        with open(pidfile) as f:
            pid = int(f.read())
        yield directory
    finally:
        if pid is None and os.path.exists(pidfile):
            with open(pidfile) as f:
                pid = int(f.read() or 0) or None
        if pid:
            _end(pid)
        # Plugs, sessions and lwIP workers name the switch: none may be left
        # once they have had a moment to see the switch go.
        try:
            wait_for(lambda: not processes_with(directory), "the switch's users to end", 5)
        except RuntimeError:
            pass
        leftover = {pid: _cmdline(pid) for pid in processes_with(directory)}
        for pid in leftover:
            _end(pid)
        shutil.rmtree(directory, ignore_errors=True)
        assert not leftover, f"processes left running: {leftover}"


def _end(pid):
    """SIGTERM pid, SIGKILL it if it is still there after a while."""
    try:
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: ended(pid), f"the end of {pid}", 5)
    except ProcessLookupError:
        pass
    except RuntimeError:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def vde_lan(vde_switch, netns):
    """A Lan: the switch, and a namespace whose tap0 (10.9.0.1/24, fd09::1/64)
    is plugged into it.  The plug and everything in the namespace are killed,
    the namespace removed (by `netns`), the switch killed, at teardown."""
    ns = netns()
    for args in (["netns", "exec", ns, "ip", "tuntap", "add", "dev", "tap0", "mode", "tap"],
                 ["-n", ns, "addr", "add", f"{LAN_IP}/24", "dev", "tap0"],
                 ["-n", ns, "addr", "add", f"{LAN_IP6}/64", "dev", "tap0", "nodad"],
                 ["-n", ns, "link", "set", "tap0", "up"]):
        r = run(["ip", *args])
        assert r.returncode == 0, (args, r.stderr)
    lan = Lan(vde_switch, ns)
    plug = subprocess.Popen(lan.ns_argv(["vde_plug", lan.url, "tap://tap0"]),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # The plug is in when the switch has a port besides its own.
        wait_for(lambda: plug.poll() is not None or _switch_ports(lan) >= 1, "vde_plug to connect")
        assert plug.poll() is None, plug.stderr.read().decode()
        yield lan
    finally:
        plug.kill()
        plug.wait()


def two_machines(netns):
    """Two namespaces standing in for two machines (made with the `netns`
    fixture): joined by a veth pair (10.77.0.1, 10.77.0.2), with multicast
    routed over it and nowhere else."""
    a, b = netns(iface="vx0"), netns()
    assert run(["ip", "-n", a, "link", "set", "vx0p", "netns", b]).returncode == 0
    for ns, dev, address in ((a, "vx0", "10.77.0.1/24"), (b, "vx0p", "10.77.0.2/24")):
        for args in (["addr", "add", address, "dev", dev], ["link", "set", dev, "up"],
                     ["route", "add", "224.0.0.0/4", "dev", dev]):
            r = run(["ip", "-n", ns, *args])
            assert r.returncode == 0, (args, r.stderr)
    return a, b


def vxvde_group():
    """A vxvde:// URL of this test run's own."""
    return f"vxvde://239.{os.getpid() % 250 + 1}.7.7"


def _switch_ports(lan):
    """The number of ports in use on the switch (one socket per port besides ctl)."""
    try:
        return sum(1 for name in os.listdir(lan.switch) if name != "ctl")
    except FileNotFoundError:
        return 0


def lwip_argv(argv, stack, *more, default=STACK):
    """A session with the stack `stack` (a --stack argument whose path is
    `default`, argv's default through vustack) and `more` stacks, running
    argv."""
    return [*RUNNER.prefix, RUNNER.vupy, "run", *[f"--stack={s}" for s in (stack, *more)], "--",
            RUNNER.vustack, default, *argv]


def lwip_run(argv, stack, default=STACK):
    """Run argv on the stack, to its end."""
    return run(lwip_argv(argv, stack, default=default), timeout=PROGRAM_SECONDS, env=RUNNER.env)


def assert_ok(r):
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r.stdout


def site(tmp_path):
    """(directory, file name, content) of a file for http.server to serve,
    in a directory every user may read."""
    directory = tempfile.mkdtemp(prefix="site-", dir=STACK_DIR)
    os.chmod(directory, 0o755)
    content = f"lwip test file {os.getpid()} {time.time_ns()}\n"
    with open(os.path.join(directory, "hello.txt"), "w") as f:
        f.write(content)
    os.chmod(os.path.join(directory, "hello.txt"), 0o644)
    return directory, "hello.txt", content


def http_server(directory, host, port):
    """argv of python's http.server serving `directory` (says 'Serving HTTP on ...')."""
    return [RUNNER.python, "-u", "-m", "http.server", str(port), "--bind", host, "--directory", directory]


CURL = ["curl", "-sS", "--max-time", "10"]
