# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""The world one compatibility check runs in (the checks are in checks.py).

A Lab makes a network namespace, vupyt-PID-N, with lo up and a veth pair
whose end vupyt0 holds ADDRESS: an address that exists in no other
namespace.  The peers a program talks to (servers, clients) run in the
namespace with `ip netns exec`; the program itself runs under `vupy run`
with the namespace as its default stack, so it reaches its peers only if
its sockets really are that namespace's.

A Lab of kind "lwip" gives the program an lwip stack instead, LWIP_ADDRESS
on a VDE switch of the Lab's own, whose other side is the tap vupyt0 of the
namespace, holding ADDRESS: the peers are reached over lwIP, and reach the
program's servers on LWIP_ADDRESS.  What a netns Lab's peers find on the
namespace's loopback, an lwip Lab's find on ADDRESS (`peer_host`), since
the stack's own 127.0.0.1 is not the namespace's.

With wrong_stack=True vupy is given a second namespace, holding only lo (or
an lwip stack on a second switch, alone on it, with ALONE_ADDRESS), while
the peers stay where they are: every check must then fail, which shows
that it can.

Leaving the `with` block removes everything the Lab made, whatever
happened: the processes it started, the namespaces (with whatever still
runs in them) and its temporary directory.
"""
import contextlib
import itertools
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ADDRESS = "10.213.0.1"          # on vupyt0, in the Lab's namespace only
LWIP_ADDRESS = "10.213.0.2"     # the lwip stack's, on the switch vupyt0 is plugged into
ALONE_ADDRESS = "10.213.1.2"    # the wrong lwip stack's, alone on a switch
PREFIX_LEN = 24
KINDS = ("netns", "lwip")       # what vupy is given as the program's stack
STACK = "/dev/net/compat"       # the stack's name in each vupy session
SYSTEM_PYTHON = "/usr/bin/python3"
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
PROGRAM_SECONDS = 60            # a hang fails the check, never blocks the run
READY_SECONDS = 20              # for a server to listen
STOP_SECONDS = 10               # for a stopped process to exit (vupy needs up to 4)

_serial = itertools.count()
# No proxy may send a program elsewhere; messages in English.
ENV = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")} | {"LC_ALL": "C"}


def find_vupy():
    """The vupy next to the running Python (a virtual environment's), else on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "vupy")
    return beside if os.access(beside, os.X_OK) else shutil.which("vupy")


class Failed(Exception):
    """A check did not show what it should; the message says why."""


def expect(condition, message):
    if not condition:
        raise Failed(message)


def last_line(text):
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


def free_port():
    """A port nothing uses for TCP or UDP on the host's loopback, so that a
    program sent to the host instead of the namespace finds no peer there."""
    while True:
        with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def _run_to_end(argv):
    subprocess.run(argv, check=True, capture_output=True, timeout=PROGRAM_SECONDS)


def _ip(*args):
    _run_to_end(["ip", *args])


def _kill_pidfile(pidfile):
    """SIGKILL the process whose pid the file holds, if there is one."""
    pid = _text(pidfile).strip()
    if pid.isdigit():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass


def remove_namespace(name):
    """Kill every process in namespace `name`, then delete it."""
    pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
    for pid in pids.stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    subprocess.run(["ip", "netns", "del", name], capture_output=True)


def program_name(argv):
    """The program an argv of Lab.vupy_argv or Lab.ns_argv runs."""
    if "--" in argv:
        argv = argv[argv.index("--") + 1:]
    elif argv[:3] == ["ip", "netns", "exec"]:
        argv = argv[4:]
    return os.path.basename(argv[0])


def _text(path):
    """The file's text so far ("" until it exists)."""
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def _spawn(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE):
    """Popen in a process group of its own, which _kill_group can end whole."""
    return subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=stderr, env=ENV, text=True,
                            start_new_session=True)


def _kill_group(proc):
    """SIGKILL proc's process group; proc must not be reaped yet, so that
    its id cannot name anyone else's group."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class Lab:
    """`with Lab() as lab:` one check's namespace, peers and files (see above)."""

    def __init__(self, wrong_stack=False, kind="netns"):
        self.wrong_stack = wrong_stack
        self.kind = kind
        # Where peers in the namespace serve what a program asks for at the
        # namespace's own address, and where its servers are reached.
        self.peer_host = "127.0.0.1" if kind == "netns" else ADDRESS
        self.served_host = "127.0.0.1" if kind == "netns" else LWIP_ADDRESS
        self.lwip_address = ALONE_ADDRESS if wrong_stack else LWIP_ADDRESS
        self.vupy_path = find_vupy()
        self.token = "vupyt-" + secrets.token_hex(8)   # what the peers say
        self.namespaces = []
        self.logs_made = 0

    def __enter__(self):
        with contextlib.ExitStack() as cleanup:
            self.tmp = tempfile.mkdtemp(prefix="vupyt-compat-")
            cleanup.callback(shutil.rmtree, self.tmp, True)
            self.ns = self._namespace(cleanup)
            self.cleanup = cleanup      # what start() and _switch() add to, until the Lab is made
            if self.kind == "netns":
                _ip("-n", self.ns, "link", "add", "vupyt0", "type", "veth", "peer", "name", "vupyt0p")
                links = ("vupyt0", "vupyt0p")
            else:
                _ip("-n", self.ns, "tuntap", "add", "dev", "vupyt0", "mode", "tap")
                links = ("vupyt0",)
                # The stack's switch; the wrong stack's is a second, with no one else on it.
                self.switch = self._switch("sw")
                self.start(self.ns_argv(["vde_plug", f"vde://{self.switch}", "tap://vupyt0"]))
                if self.wrong_stack:
                    self.switch = self._switch("sw-alone")
            _ip("-n", self.ns, "addr", "add", f"{ADDRESS}/{PREFIX_LEN}", "dev", "vupyt0")
            for link in links:
                _ip("-n", self.ns, "link", "set", link, "up")
            self.stack_ns = self._namespace(cleanup) if self.wrong_stack else self.ns
            self.cleanup = cleanup.pop_all()
        return self

    def _switch(self, name):
        """A vde_switch of the Lab's, ended with it: its directory."""
        switch, pidfile = self.path(name), self.path(name + ".pid")
        # In the foreground it would take stdin for its console and end at
        # its end: it runs as a daemon, known by its pid file.
        _run_to_end(["vde_switch", "-d", "-s", switch, "-p", pidfile])
        self.cleanup.callback(_kill_pidfile, pidfile)
        deadline = time.monotonic() + READY_SECONDS
        while not (os.path.exists(os.path.join(switch, "ctl")) and _text(pidfile).strip()):
            expect(time.monotonic() < deadline, "vde_switch did not start")
            time.sleep(0.05)
        return switch

    def __exit__(self, *exc):
        self.cleanup.close()        # every step runs, last made first, even if one fails

    def _namespace(self, cleanup):
        name = f"vupyt-{os.getpid()}-{next(_serial)}"
        _ip("netns", "add", name)
        cleanup.callback(remove_namespace, name)
        self.namespaces.append(name)
        _ip("-n", name, "link", "set", "lo", "up")
        return name

    def path(self, name):
        return os.path.join(self.tmp, name)

    def write(self, name, text):
        path = self.path(name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def sysctl(self, key, value):
        """Set key in the Lab's namespace (and in the wrong stack's, so that
        only the namespace differs between the two)."""
        for name in self.namespaces:
            subprocess.run(["ip", "netns", "exec", name, "sysctl", "-q", "-w", f"{key}={value}"],
                           check=True, capture_output=True, timeout=PROGRAM_SECONDS)

    # Commands ---------------------------------------------------------------

    def vupy_argv(self, argv, nobody=False, trace=None):
        """argv under vupy, every socket in the stack namespace (or on the
        lwip stack); as uid 65534 if nobody; with a trace to the file
        `trace` if given."""
        options = [f"--trace={trace}"] if trace else []
        spec = (f"netns:{self.stack_ns}" if self.kind == "netns"
                else f"lwip:vde://{self.switch},ip={self.lwip_address}/{PREFIX_LEN}")
        return [self.vupy_path, "run", *options, "--stack", f"{STACK}={spec}",
                "--default", STACK, "--", *(NOBODY if nobody else []), *argv]

    def ns_argv(self, argv):
        """argv in the Lab's namespace, where the peers are."""
        return ["ip", "netns", "exec", self.ns, *argv]

    def run(self, argv):
        """Run argv to its end: (status, stdout, stderr).  A hang is ended
        (its whole process group) and fails the check."""
        proc = _spawn(argv)
        try:
            out, err = proc.communicate(timeout=PROGRAM_SECONDS)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.communicate()
            raise Failed(f"{program_name(argv)} hung") from None
        return proc.returncode, out, err

    def output(self, argv):
        """argv's standard output, which must end with status 0."""
        status, out, err = self.run(argv)
        expect(status == 0, f"exit status {status}: {last_line(err) or last_line(out)}")
        return out

    def start(self, argv, stdin=None):
        """Start argv in the background, reading the file stdin if given, its
        output in files of the Lab; it is stopped when the Lab ends, at the
        latest."""
        log = self.path(f"log-{self.logs_made}")
        self.logs_made += 1
        with open(stdin or os.devnull) as source, open(log + ".out", "w") as out, \
                open(log + ".err", "w") as err:
            proc = _spawn(argv, stdin=source, stdout=out, stderr=err)
        proc.log = log
        self.cleanup.callback(self.stop, proc)
        return proc

    def serve(self, argv, port, udp=False, stdin=None):
        """Start argv, a server on port, under vupy and wait until it
        listens on its stack: seen by `ss` in the stack namespace, or, on
        an lwip stack, whose sockets ss does not see, by the trace of its
        listen (or, with udp, its bind)."""
        if self.kind == "netns":
            server = self.start(self.vupy_argv(argv), stdin)
            self.wait_listening(server, port, udp, ns=self.stack_ns)
            return server
        trace = self.path(f"trace-{self.logs_made}")
        server = self.start(self.vupy_argv(argv, trace=trace), stdin)
        done = re.compile(rf"\b{'bind' if udp else 'listen'}\(fd \d+, proxy \d+\) -> 0$", re.M)
        deadline = time.monotonic() + READY_SECONDS
        while not done.search(_text(trace)):
            if server.poll() is not None:
                raise Failed(f"{program_name(server.args)} ended: {last_line(self.logs(server)[1])}")
            expect(time.monotonic() < deadline, f"nothing listened on port {port}")
            time.sleep(0.05)
        return server

    @staticmethod
    def stop(proc):
        """End a background process: SIGTERM (which vupy passes on to its
        command, ending the rest of its session after it), then SIGKILL to
        its process group if it is still there."""
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                proc.wait()

    def finish(self, proc):
        """Wait for a background process that should end by itself."""
        try:
            proc.wait(PROGRAM_SECONDS)
        except subprocess.TimeoutExpired:
            self.stop(proc)
            raise Failed(f"{program_name(proc.args)} did not end: {last_line(self.logs(proc)[1])}")
        return proc.returncode, *self.logs(proc)

    @staticmethod
    def logs(proc):
        with open(proc.log + ".out") as out, open(proc.log + ".err") as err:
            return out.read(), err.read()

    def wait_listening(self, proc, port, udp=False, ns=None):
        """Wait until something listens on port in namespace ns (the Lab's by
        default); fail if proc ends first.  A server under vupy listens in the
        stack namespace: pass ns=lab.stack_ns."""
        query = ["ss", "-N", ns or self.ns, "-Hln" + ("u" if udp else "t"), f"sport = :{port}"]
        deadline = time.monotonic() + READY_SECONDS
        while not subprocess.run(query, capture_output=True, text=True).stdout.strip():
            if proc.poll() is not None:
                raise Failed(f"{program_name(proc.args)} ended: {last_line(self.logs(proc)[1])}")
            expect(time.monotonic() < deadline, f"nothing listened on port {port}")
            time.sleep(0.05)
