# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""The session as a user sees it: `vupy run ... -- COMMAND`.

Pinned here, with real processes (root):

* vupy's exit status is COMMAND's, 128+N when COMMAND is killed by signal N;
* SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to vupy reach COMMAND;
* an interactive bash under vupy keeps job control, Ctrl-C, Ctrl-Z and the
  window size, and Ctrl-C reaches the foreground job, not vupy;
* when COMMAND ends nothing of the session is left: no process (leftovers
  get SIGTERM, then SIGKILL), no `netns:new` namespace;
* a bad option or SPEC is refused before anything starts, in one line on
  stderr, with exit status 2;
* a stack's PATH is a name, not a file: nothing appears in its directory,
  and what programs write there is kept; /dev/net/tun stays usable.
"""
import contextlib
import os
import re
import signal
import subprocess
import textwrap
import time

import pexpect
import pytest

from helpers import BIN, PYTHON, TIMEOUT, VUPY, VUSTACK, files_kept, ns_references, vupy

EXPECT_TIMEOUT = 20


# --------------------------------------------------------------------- helpers

@contextlib.contextmanager
def _started(args, **kw):
    """vupy run ARGS in the background, its stdout a pipe, in a session of
    its own (so that nothing here is its controlling terminal); killed with
    everything in that session if still running at the end."""
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("text", True)
    proc = subprocess.Popen([VUPY, "run", *args], start_new_session=True, **kw)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _wait_line(proc, wanted):
    """Read proc's stdout until the line `wanted`; return the lines before.
    The caller's timeout is the subprocess' (EOF ends the read)."""
    lines = []
    for line in proc.stdout:
        line = line.rstrip("\n")
        if line == wanted:
            return lines
        lines.append(line)
    raise AssertionError(f"no {wanted!r} line; got {lines!r}, "
                         f"exit status {proc.wait(timeout=TIMEOUT)}")


def _finish(proc):
    """Wait for proc (never hang); kill it if it does not end."""
    try:
        return proc.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise


def _gone(pid, patience=10.0):
    """Whether pid no longer exists (a zombie counts as existing).  Polls a
    little, for init to reap what vupy may have left to it."""
    deadline = time.monotonic() + patience
    while True:
        if not os.path.exists(f"/proc/{pid}"):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def _vupy_to_files(tmp_path, *args):
    """vupy run ARGS with stdout and stderr in files; (status, stderr)."""
    with open(tmp_path / "vupy.out", "w") as out, open(tmp_path / "vupy.err", "w") as err:
        status = vupy(*args, stdout=out, stderr=err, capture_output=False).returncode
    return status, (tmp_path / "vupy.err").read_text()


def _kill_quietly(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, OSError):
        pass


# ------------------------------------------------------------ exit status

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


# ---------------------------------------------------------------- signals

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
    with _started(args) as proc:
        _wait_line(proc, "ready")
        os.kill(proc.pid, sig)
        return _finish(proc)


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


# ----------------------------------------------------------- bad options

# A stack module that serves inet only, found by vupy through an entry point
# of a distribution on PYTHONPATH, for `--default inet6=PATH` to be refused.
INET_ONLY_MODULE = textwrap.dedent("""
    import socket
    from vupy.stack import Stack, StackModule

    class InetOnlyStack(Stack):
        families = frozenset({socket.AF_INET})

        def socket(self, domain, type, protocol, creds):
            raise OSError(97, "no")

        def close(self):
            pass

    class Module(StackModule):
        name = "vupytinet"
        description = "test: serves AF_INET only"
        families = frozenset({socket.AF_INET})

        def create(self, source, options):
            return InetOnlyStack()
""")


@pytest.fixture
def inet_only_env(stack_module):
    """Environment in which vupy knows the module `vupytinet` (inet only)."""
    return stack_module("vupytinet", INET_ONLY_MODULE)


def test_inet_only_module_is_usable(inet_only_env):
    """Control for the inet6 refusal below: the test module itself works."""
    r = vupy("--stack", "/dev/net/vupyt-i=vupytinet", "--default", "inet=/dev/net/vupyt-i",
             "--", "true", env=inet_only_env)
    assert r.returncode == 0, r.stderr


BAD = {
    # id: (vupy run arguments before COMMAND, a word the message must name)
    "unknown-module": (["--stack", "/dev/net/vupyt-n=nosuchmodule"], "nosuchmodule"),
    "unknown-module-with-source": (["--stack", "/dev/net/vupyt-n=nosuchmodule:x"], "nosuchmodule"),
    "missing-netns": (["--stack", "/dev/net/vupyt-n=netns:vupyt-nosuch"], "vupyt-nosuch"),
    "missing-netns-file": (["--stack", "/dev/net/vupyt-n=netns:/nonexistent/vupyt"],
                           "/nonexistent/vupyt"),
    "not-a-netns-file": (["--stack", "/dev/net/vupyt-n=netns:/etc/hostname"], "/etc/hostname"),
    "netns-without-source": (["--stack", "/dev/net/vupyt-n=netns"], "netns"),
    "netns-bad-option": (["--stack", "/dev/net/vupyt-n=netns:new,colour=red"], "colour"),
    "option-not-key-value": (["--stack", "/dev/net/vupyt-n=netns:new,colour"], "colour"),
    "null-with-source": (["--stack", "/dev/net/vupyt-n=null:x"], "null"),
    "no-equals": (["--stack", "/dev/net/vupyt-n"], "/dev/net/vupyt-n"),
    "empty-spec": (["--stack", "/dev/net/vupyt-n="], "/dev/net/vupyt-n"),
    "empty-path": (["--stack", "=netns:new"], "netns:new"),
    "relative-path-in-missing-directory": (["--stack", "dev/net/vupyt-n=netns:new"], "dev/net/vupyt-n"),
    "path-is-dir-slash": (["--stack", "/dev/net/=null"], "/dev/net/"),
    "path-in-missing-directory": (["--stack", "/nonexistent-vupyt/n=null"], "/nonexistent-vupyt"),
    "path-is-directory": (["--stack", "/dev/net=null"], "/dev/net"),
    "no-module-name": (["--stack", "/dev/net/vupyt-n=:x"], ":x"),
    "same-path-twice": (["--stack", "/dev/net/vupyt-n=null", "--stack", "/dev/net/vupyt-n=null"],
                        "/dev/net/vupyt-n"),
    "bad-after-good": (["--stack", "/dev/net/vupyt-a=netns:new", "--stack", "/dev/net/vupyt-b=nope"],
                       "nope"),
    "default-not-a-stack": (["--stack", "/dev/net/vupyt-n=null", "--default", "/dev/net/vupyt-x"],
                            "/dev/net/vupyt-x"),
    "default-families-not-a-stack": (["--default", "inet=/dev/net/vupyt-x"], "/dev/net/vupyt-x"),
    "default-unknown-family": (["--stack", "/dev/net/vupyt-n=null", "--default",
                                "klingon=/dev/net/vupyt-n"], "klingon"),
    "default-unix-not-served": (["--stack", "/dev/net/vupyt-n=netns:new", "--default",
                                 "unix=/dev/net/vupyt-n"], "unix"),
    "default-inet6-not-served": (["--stack", "/dev/net/vupyt-i=vupytinet", "--default",
                                  "inet6=/dev/net/vupyt-i"], "inet6"),
    "unknown-option": (["--colour"], "--colour"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_spec_refused_in_one_line_exit_2(case, tmp_path, inet_only_env):
    args, named = BAD[case]
    marker = tmp_path / "started"
    dev_net = sorted(os.listdir("/dev/net"))
    r = vupy(*args, "--", "touch", str(marker), env=inet_only_env)
    lines = r.stderr.splitlines()
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("vupy: "), r.stderr
    assert named in lines[0], r.stderr
    assert r.stdout == ""
    assert not marker.exists(), "COMMAND was started"
    assert sorted(os.listdir("/dev/net")) == dev_net


@pytest.mark.parametrize("args", [[], ["--"], ["--stack", "/dev/net/vupyt-n=netns:new"],
                                  ["--stack", "/dev/net/vupyt-n=netns:new", "--"]],
                         ids=["nothing", "dashdash", "stack", "stack-dashdash"])
def test_no_command_refused_in_one_line_exit_2(args):
    r = vupy(*args)
    lines = r.stderr.splitlines()
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert len(lines) == 1 and lines[0].startswith("vupy: "), r.stderr
    assert "COMMAND" in lines[0]


# --------------------------------------------------------------- leftovers

LEFTOVERS = {
    # sh -c SCRIPT PIDFILE: leave one process running, write its pid.
    "setsid-double-fork": """setsid sh -c 'sleep 1000 & echo $! > "$0"' "$1" """,
    "nohup-double-fork": """(nohup sleep 1000 >/dev/null 2>&1 & echo $! > "$1") """,
    "setsid-nohup": """(setsid nohup sleep 1000 >/dev/null 2>&1 & echo $! > "$1") """,
    "ignores-sigterm": """( (trap '' TERM; exec sleep 1000) & echo $! > "$1") """,
    "stopped": """(sleep 1000 & p=$!
                   while [ "$(cat /proc/$p/comm)" != sleep ]; do sleep 0.05; done
                   kill -STOP $p; echo $p > "$1") """,
}


@pytest.mark.parametrize("how", sorted(LEFTOVERS))
def test_leftover_processes_are_ended(how, tmp_path):
    pidfile = tmp_path / "pid"
    script = LEFTOVERS[how] + textwrap.dedent("""
        while [ ! -s "$1" ]; do sleep 0.05; done
        p=$(cat "$1")
        # wait until it is sleep itself that runs
        while [ "$(cat /proc/$p/comm 2>/dev/null)" != sleep ]; do
            [ -d /proc/$p ] || exit 99
            sleep 0.05
        done
        exit 0
    """)
    # Output to files, not pipes: a leftover holding a pipe open must not
    # make this wait for it.
    status, err = _vupy_to_files(tmp_path, "--", "sh", "-c", script, "sh", str(pidfile))
    pid = int(pidfile.read_text())
    try:
        assert status == 0, err
        assert _gone(pid), f"{how}: pid {pid} still there after vupy returned"
    finally:
        _kill_quietly(pid)


TERM_CATCHER = textwrap.dedent("""
    import os, signal, sys, time
    out = sys.argv[1]
    if os.fork():
        os._exit(0)          # COMMAND's child exits: the grandchild is orphaned
    os.setsid()
    def handler(signo, frame):
        with open(out, "w") as f:
            f.write(signal.Signals(signo).name)
        os._exit(0)
    signal.signal(signal.SIGTERM, handler)
    with open(out + ".pid", "w") as f:
        f.write(str(os.getpid()))
    while True:
        time.sleep(1)
""")


def test_leftover_processes_get_sigterm_first(tmp_path):
    out = tmp_path / "got"
    script = textwrap.dedent("""
        "$2" -c "$3" "$1"
        while [ ! -s "$1.pid" ]; do sleep 0.05; done
        exit 5
    """)
    status, err = _vupy_to_files(tmp_path, "--", "sh", "-c", script, "sh", str(out),
                                 PYTHON, TERM_CATCHER)
    pid = int((tmp_path / "got.pid").read_text())
    try:
        assert status == 5, err
        assert out.read_text() == "SIGTERM"
        assert _gone(pid)
    finally:
        _kill_quietly(pid)


# -------------------------------------------------------------- namespaces

NS_PROBE = textwrap.dedent("""
    import fcntl, os, socket, sys, vupy
    s = vupy.msocket(sys.argv[1], socket.AF_INET, socket.SOCK_DGRAM)
    ns = fcntl.ioctl(s.fileno(), 0x894C)          # SIOCGSKNS
    print("net", os.fstat(ns).st_ino)
    print("ready", flush=True)
    sys.stdin.read()
""")


def test_netns_new_is_removed_after_session():
    host_net = os.stat("/proc/self/ns/net").st_ino
    known_nets = {host_net} | {os.stat(os.path.join("/run/netns", n)).st_ino
                               for n in os.listdir("/run/netns")} if os.path.isdir("/run/netns") \
        else {host_net}
    with _started(["--stack", "/dev/net/vupyt-n=netns:new", "--",
                   PYTHON, "-c", NS_PROBE, "/dev/net/vupyt-n"], stdin=subprocess.PIPE) as proc:
        lines = _wait_line(proc, "ready")
        net = int(dict(line.split() for line in lines)["net"])
        assert net not in known_nets, "netns:new is not a fresh namespace"
        # control: while the session runs, the namespace is found
        assert ns_references("net", net)
        proc.stdin.close()
        assert _finish(proc) == 0
    assert ns_references("net", net) == []


def test_netns_new_has_only_lo_and_it_is_up():
    r = vupy("--stack", "/dev/net/vupyt-n=netns:new", "--",
             VUSTACK, "/dev/net/vupyt-n", "ip", "-o", "link")
    assert r.returncode == 0, r.stderr
    links = r.stdout.splitlines()
    assert len(links) == 1, r.stdout
    name, flags = re.match(r"\d+: (\S+): <([^>]*)>", links[0]).groups()
    assert name == "lo"
    assert "UP" in flags.split(","), links[0]


def test_netns_new_loopback_carries_traffic():
    script = textwrap.dedent("""
        import socket, vupy
        a = vupy.msocket("/dev/net/vupyt-n", socket.AF_INET, socket.SOCK_DGRAM)
        a.bind(("127.0.0.1", 0))
        b = vupy.msocket("/dev/net/vupyt-n", socket.AF_INET, socket.SOCK_DGRAM)
        b.sendto(b"hello", a.getsockname())
        a.settimeout(10)
        print(a.recv(16).decode())
    """)
    r = vupy("--stack", "/dev/net/vupyt-n=netns:new", "--", PYTHON, "-c", script)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "hello"


# ------------------------------------------------------------- stack paths

def test_files_written_beside_a_stack_are_kept(tmp_path):
    files_kept(tmp_path, lambda argv: vupy(*argv))


def test_stack_names_are_not_files():
    before = sorted(os.listdir("/dev/net"))
    with _started(["--stack", "/dev/net/vupyt-a=netns:new", "--stack", "/dev/net/vupyt-b=null",
                   "--", "sh", "-c",
                   "ls -1 /dev/net; vumount | tail -n +2 | cut -d' ' -f1; echo ready; read x; exit 0"],
                  stdin=subprocess.PIPE, env=dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}")) as proc:
        inside = _wait_line(proc, "ready")
        during = sorted(os.listdir("/dev/net"))
        proc.stdin.close()
        assert _finish(proc) == 0
    assert inside == before + ["/dev/net/vupyt-a", "/dev/net/vupyt-b"]
    assert during == before == sorted(os.listdir("/dev/net"))


# ---------------------------------------------------------------------- tun

TUN_PROBE = textwrap.dedent("""
    import fcntl, struct
    f = open("/dev/net/tun", "r+b", buffering=0)
    ifr = struct.pack("16sH", b"vupyt%d", 0x0001 | 0x1000)   # IFF_TUN | IFF_NO_PI
    r = fcntl.ioctl(f, 0x400454CA, ifr + bytes(40 - len(ifr)))   # TUNSETIFF
    print(r[:16].rstrip(b"\\0").decode())
""")


def test_tun_usable_inside():
    r = vupy("--stack", "/dev/net/vupyt-n=netns:new", "--",
             PYTHON, "-c", "open('/dev/net/tun', 'rb').close(); print('opened')")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "opened"
    r = vupy("--stack", "/dev/net/vupyt-n=netns:new", "--", PYTHON, "-c", TUN_PROBE)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().startswith("vupyt")


def test_ip_tuntap_add_in_netns_stack(netns):
    ns = netns()
    dev = f"vupyt{os.getpid() % 100000}"
    try:
        r = vupy("--stack", "/dev/net/vupyt-n=netns:" + ns, "--",
                 VUSTACK, "/dev/net/vupyt-n", "ip", "tuntap", "add", "dev", dev, "mode", "tun")
        assert r.returncode == 0, r.stderr
    finally:
        # Wherever the kernel put it: tun makes its device in the namespace
        # of the process that opened /dev/net/tun (here, the host's), not in
        # the default stack's; only sockets follow the stacks.
        subprocess.run(["ip", "link", "del", dev], capture_output=True, timeout=TIMEOUT)
        subprocess.run(["ip", "-n", ns, "link", "del", dev], capture_output=True, timeout=TIMEOUT)


# -------------------------------------------------------- interactive bash

PROMPT = "VUPYT> "


def _spawn_bash(rows=24, cols=80):
    env = dict(os.environ, TERM="dumb", HISTFILE="/dev/null", PS1=PROMPT, PS2="")
    child = pexpect.spawn(VUPY, ["run", "--stack", "/dev/net/vupyt-n=netns:new", "--",
                                 "bash", "--norc", "--noprofile", "-i"],
                          env=env, dimensions=(rows, cols), timeout=EXPECT_TIMEOUT,
                          encoding="utf-8", codec_errors="replace")
    return child


def _prompt(child):
    child.expect_exact(PROMPT)


def _say(child, line, expect):
    """Send a command line and wait for `expect` (a regex) in its output.
    The line must be written so that its echo does not match `expect`."""
    child.sendline(line)
    child.expect(expect)


def _stop_a_job(child, prompt, marker):
    """Start a foreground job, stop it with Ctrl-Z, and see `jobs` say so."""
    _say(child, f"sh -c 'echo {marker}-''started; exec sleep 100'", f"{marker}-started")
    child.sendcontrol("z")
    child.expect(r"Stopped")
    child.expect_exact(prompt)
    _say(child, "jobs", r"\[1\]\+\s+Stopped\s+sh -c")
    child.expect_exact(prompt)


def test_interactive_bash_ctrl_c_reaches_foreground_job():
    child = _spawn_bash(24, 80)
    bg = None
    try:
        _prompt(child)
        # a fresh prompt string that bash itself prints, not our echo
        child.sendline("PS1='VU''PYT2> '")
        child.expect_exact("VUPYT2> ")
        prompt = "VUPYT2> "

        # Ctrl-C goes to the foreground job: it dies of SIGINT, bash and vupy live
        _say(child, "sh -c 'echo fg-''started; exec sleep 100'", "fg-started")
        child.sendintr()
        child.expect_exact(prompt)
        _say(child, "echo st''atus=$?", r"status=(\d+)")
        assert child.match.group(1) == "130"
        child.expect_exact(prompt)
        assert child.isalive()
        _say(child, "echo mark''er-1", "marker-1")
        child.expect_exact(prompt)

        # the window size, and its changes, reach the shell and its jobs
        _say(child, "stty size", r"(\d+) (\d+)\r\n")
        assert child.match.groups() == ("24", "80")
        child.expect_exact(prompt)
        winch = ("python3 -c \"import os, signal, sys; signal.signal(signal.SIGWINCH, "
                 "lambda *a: (print('winch', *os.get_terminal_size(0)), sys.exit(0))); "
                 "print('winch-''ready', flush=True); signal.pause()\"")
        _say(child, winch, "winch-ready")
        child.setwinsize(40, 132)
        child.expect(r"winch (\d+) (\d+)")
        assert child.match.groups() == ("132", "40")
        child.expect_exact(prompt)
        _say(child, "stty size", r"(\d+) (\d+)\r\n")
        assert child.match.groups() == ("40", "132")
        child.expect_exact(prompt)

        # job control: Ctrl-Z stops the foreground job, jobs/fg/kill work
        _stop_a_job(child, prompt, "z")
        _say(child, "fg", r"sh -c")
        child.sendintr()
        child.expect_exact(prompt)
        _say(child, "echo st''atus=$?", r"status=(\d+)")
        assert child.match.group(1) == "130"
        child.expect_exact(prompt)

        _stop_a_job(child, prompt, "z2")
        child.sendline("kill %1")
        child.expect_exact(prompt)
        # bash sends SIGTERM and SIGCONT; the job is gone once bash has
        # reaped it, which may take it a moment: give it up to 5 s.
        _say(child, "for i in $(seq 50); do [ -z \"$(jobs -s)\" ] && break; sleep 0.1; done; "
                    "wait; jobs; echo jo''bs-done", r"jobs-done")
        assert "Stopped" not in child.before
        child.expect_exact(prompt)

        # a background job, and the shell still answers
        _say(child, "sleep 100 & echo bg-''pid=$!", r"bg-pid=(\d+)")
        bg = int(child.match.group(1))
        child.expect_exact(prompt)
        _say(child, "jobs -r", r"\[1\]\+\s+Running\s+sleep 100")
        child.expect_exact(prompt)
        child.sendline("kill %1; wait")
        child.expect_exact(prompt)
        _say(child, "echo mark''er-2", "marker-2")
        child.expect_exact(prompt)

        assert child.isalive()
        child.sendline("exit 3")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 3, (child.exitstatus, child.signalstatus)
        assert _gone(bg)
    finally:
        if child.isalive():
            child.terminate(force=True)
        if bg:
            _kill_quietly(bg)


def test_interactive_bash_leftover_background_job_is_ended():
    """A job still running when the shell exits is ended with the session."""
    child = _spawn_bash()
    bg = None
    try:
        _prompt(child)
        child.sendline("PS1='VU''PYT2> '")
        child.expect_exact("VUPYT2> ")
        _say(child, "nohup sleep 1000 >/dev/null 2>&1 & echo bg-''pid=$!", r"bg-pid=(\d+)")
        bg = int(child.match.group(1))
        child.expect_exact("VUPYT2> ")
        child.sendline("exit 0")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0
        assert _gone(bg)
    finally:
        if child.isalive():
            child.terminate(force=True)
        if bg:
            _kill_quietly(bg)


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
        assert _gone(job_pid), "the foreground job survived the hangup"
    finally:
        try:
            os.kill(child.pid, signal.SIGKILL)
            os.waitpid(child.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        if job_pid:
            _kill_quietly(job_pid)
