# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""vupy run --trace[=FILE]: one line per trapped call, strace-like: the time,
the pid, the call with its arguments by name, where it went, its result."""
import os
import re
import subprocess
import textwrap

from helpers import PYTHON, run, vupy

LINE = re.compile(r"^(\d\d:\d\d:\d\d\.\d{6}) vupy: pid (\d+): (.*)$")

PROGRAM = textwrap.dedent("""
    import os, socket, vupy
    print(os.getpid(), flush=True)
    vupy.msocket("/dev/net/n", socket.AF_INET6, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK).close()
    try:
        vupy.msocket("/dev/net/off", socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    except OSError:
        pass
    vupy.set_default("/dev/net/n")
    socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
""")


def _calls(text, pid):
    """The trace lines of process pid, as their call-and-outcome part."""
    found = []
    for line in text.splitlines():
        m = LINE.match(line)
        assert m, f"not a trace line: {line!r}"
        if int(m.group(2)) == pid:
            found.append(m.group(3))
    return found


def test_trace_to_a_file_names_every_call(tmp_path):
    out = tmp_path / "trace"
    r = vupy(f"--trace={out}", "--stack", "/dev/net/n=netns:new", "--stack", "/dev/net/off=null",
             "--", PYTHON, "-c", PROGRAM)
    assert r.returncode == 0, r.stderr
    assert "vupy:" not in r.stderr                 # all of it went to the file
    calls = _calls(out.read_text(), int(r.stdout.split()[0]))
    assert calls == [
        "msocket('/dev/net/n', AF_INET6, SOCK_DGRAM|SOCK_NONBLOCK, 0) -> /dev/net/n: fd 3",
        "msocket('/dev/net/off', AF_INET, SOCK_STREAM, IPPROTO_TCP) -> /dev/net/off: EAFNOSUPPORT",
        "msocket('/dev/net/n', AF_UNSPEC, SOCK_DEFAULT, 0) -> default /dev/net/n",
        "socket(AF_INET, SOCK_STREAM|SOCK_CLOEXEC, 0) -> /dev/net/n: fd 3",
    ], calls


def test_verbose_traces_to_standard_error():
    r = vupy("-v", "--", PYTHON, "-c", "import os, socket; print(os.getpid()); socket.socket()")
    assert r.returncode == 0, r.stderr
    assert _calls(r.stderr, int(r.stdout)) == ["socket(AF_INET, SOCK_STREAM|SOCK_CLOEXEC, 0) -> host: fd 3"]


def test_trace_file_that_cannot_be_opened_is_refused_before_starting(tmp_path):
    marker = tmp_path / "started"
    r = run([os.path.join(os.path.dirname(PYTHON), "vupy"), "run", "--trace=/nonexistent-vupyt/trace",
             "--", "touch", str(marker)])
    assert r.returncode == 2 and not marker.exists()
    assert r.stderr.strip() == "vupy: --trace=/nonexistent-vupyt/trace: No such file or directory"


def test_bare_trace_never_takes_the_next_argument(tmp_path):
    """`--trace` alone is standard error; the word after it is COMMAND."""
    r = vupy("--trace", PYTHON, "-c", "import os, socket; print(os.getpid()); socket.socket()",
             cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert _calls(r.stderr, int(r.stdout)) == ["socket(AF_INET, SOCK_STREAM|SOCK_CLOEXEC, 0) -> host: fd 3"]
    assert os.listdir(tmp_path) == []


def test_a_trace_that_cannot_be_written_ends_and_the_session_goes_on():
    """Standard error on a full disk (/dev/full): the trace stops, the calls
    are served as without it."""
    with open("/dev/full", "w") as full:
        r = vupy("-v", "--", PYTHON, "-c", "import socket\nfor _ in range(3): socket.socket()\nprint('made 3')",
                 stderr=full, capture_output=False, stdout=subprocess.PIPE)
    assert (r.returncode, r.stdout) == (0, "made 3\n")


def test_every_call_served_on_a_proxy_is_traced_with_its_outcome(vde_lan, tmp_path):
    """On a userspace stack, each call served on a proxy descriptor is one
    trace line with its outcome: the answers, the stack's errnos and the
    faults of the caller's memory alike."""
    from vdenet import LWIP_IP, RUNNER, lwip_argv, py
    out = tmp_path / "trace"
    program = py("""
        import ctypes, fcntl, struct, termios
        print(os.getpid(), flush=True)
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.bind((sys.argv[1], 0))
        t.getsockname()
        try:
            t.getpeername()
        except OSError:
            pass
        t.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        size = ctypes.c_int(16)
        libc = ctypes.CDLL(None, use_errno=True)
        libc.getsockname(t.fileno(), ctypes.c_void_p(8), ctypes.byref(size))     # a fault
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        fcntl.ioctl(u, termios.FIONREAD, struct.pack("i", 0))
    """, LWIP_IP)
    argv = lwip_argv(program, vde_lan.stack())
    at = argv.index("run") + 1
    r = run(argv[:at] + [f"--trace={out}"] + argv[at:], env=RUNNER.env, timeout=60)
    assert r.returncode == 0, r.stderr
    pid = int(r.stdout.split()[0])
    served = [re.sub(r"fd \d+, proxy \d+", "fd, proxy", c) for c in _calls(out.read_text(), pid)
              if ", proxy " in c]
    assert served[:7] == ["bind(fd, proxy) -> 0", "getsockname(fd, proxy) -> 0",
                      "getpeername(fd, proxy) -> ENOTCONN", "setsockopt(fd, proxy) -> 0",
                      "getsockopt(fd, proxy) -> 0", "getsockname(fd, proxy) -> EFAULT",
                      "ioctl(fd, proxy) -> 0"], "\n".join(served)
