# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""What the tests share besides fixtures (those are in conftest.py): the
commands under test, runners of `vupy run` sessions, and looks at processes
and namespaces through /proc.

Imported as `helpers` (pytest puts tests/ on sys.path, as for compat.lab).
"""
import contextlib
import errno
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time

from vupy._procs import children

BIN = os.path.dirname(sys.executable)
VUPY = os.path.join(BIN, "vupy")
VUSTACK = os.path.join(BIN, "vustack")
PYTHON = sys.executable
SYSTEM_PYTHON = "/usr/bin/python3"   # any user can run it (the venv may be in /root)
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
TIMEOUT = 60


# Sessions ----------------------------------------------------------------------

def run(argv, **kw):
    """Run argv, capture text output; never hang a test run."""
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", TIMEOUT)
    return subprocess.run(argv, **kw)


def vupy(*args, **kw):
    return run([VUPY, "run", *args], **kw)


@contextlib.contextmanager
def started(args, **kw):
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


def wait_line(proc, wanted):
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


def finish(proc):
    """Wait for proc (never hang); kill it if it does not end."""
    try:
        return proc.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise


def spawned(argv, **kw):
    """argv in a session (and so a process group) of its own, its output
    pipes, its input /dev/null."""
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            text=True, start_new_session=True, **kw)


def vupy_to_files(tmp_path, *args):
    """vupy run ARGS with stdout and stderr in files (a process left behind
    holding a pipe would make the wait for it hang); (status, stderr)."""
    with open(tmp_path / "vupy.out", "w") as out, open(tmp_path / "vupy.err", "w") as err:
        status = vupy(*args, stdout=out, stderr=err, capture_output=False).returncode
    return status, (tmp_path / "vupy.err").read_text()


def end(proc, pids=()):
    """SIGKILL proc if it is still running and every process below it (a
    kill of its process group would miss a program that has left it), and
    `pids`; wait for proc."""
    if proc.poll() is None:
        kill_quietly(proc.pid, *descendants(proc.pid))
    kill_quietly(*pids)
    proc.communicate(timeout=TIMEOUT)


DATA_WRITER = textwrap.dedent("""
    import hashlib, os, socket, sys, vupy
    directory = sys.argv[1]
    data = os.urandom(8 << 20)
    with open(os.path.join(directory, "data.bin"), "wb") as f:
        f.write(data)
    os.mkdir(os.path.join(directory, "new"))
    with open(os.path.join(directory, "keep"), "a") as f:
        f.write("more\\n")
    try:
        vupy.msocket(os.path.join(directory, "st"), socket.AF_INET, socket.SOCK_STREAM)
    except OSError as e:
        print("stack", e.errno)
    print(sorted(os.listdir(directory)))
    print(hashlib.sha256(data).hexdigest())
""")


def files_kept(directory, run_session, python=(PYTHON,)):
    """Write into `directory` (a pathlib.Path), which holds the stack name
    `st`, in a session started by `run_session(argv)`, with the Python
    command `python`; check that all of it is there afterwards and that no
    file named `st` ever was."""
    keep = directory / "keep"
    keep.write_text("kept\n")
    os.chown(keep, directory.stat().st_uid, directory.stat().st_gid)
    r = run_session(["--stack", f"{directory}/st=null", "--", *python, "-c", DATA_WRITER,
                     str(directory)])
    assert r.returncode == 0, r.stderr
    stack, listing, digest = r.stdout.splitlines()
    assert stack == f"stack {errno.EAFNOSUPPORT}"       # the name is the null stack's
    assert listing == str(["data.bin", "keep", "new"])  # and no file is
    assert sorted(os.listdir(directory)) == ["data.bin", "keep", "new"]
    assert hashlib.sha256((directory / "data.bin").read_bytes()).hexdigest() == digest
    assert (directory / "keep").read_text() == "kept\nmore\n"


# Processes ---------------------------------------------------------------------

def descendants(pid):
    """Every process below pid, from /proc."""
    found, todo = [], [pid]
    while todo:
        below = children(todo.pop())
        found += below
        todo += below
    return found


def kill_quietly(*pids):
    """SIGKILL each of pids that is still there."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def stat_fields(pid):
    """The fields of /proc/PID/stat after the command name: state, parent,
    process group, session, ... (OSError if the process is gone)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def parent(pid):
    return int(stat_fields(pid)[1])


def comm(pid):
    with open(f"/proc/{pid}/comm") as f:
        return f.read().strip()


def ended(pid):
    """Whether process pid has ended (a zombie has)."""
    try:
        return stat_fields(pid)[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return True


def gone(pid, patience=10.0):
    """Whether pid no longer exists (a zombie counts as existing).  Polls a
    little, for init to reap what vupy may have left to it."""
    try:
        wait_for(lambda: not os.path.exists(f"/proc/{pid}"), f"the end of {pid}", patience)
    except RuntimeError:
        return False
    return True


def wait_for(check, what, seconds=10):
    """Poll check() until it is true; RuntimeError naming `what` if it is
    still false after `seconds`."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


# Namespaces --------------------------------------------------------------------

# The tests' own network namespace, a session's `host` stack.
HOST_INODE = os.stat("/proc/self/ns/net").st_ino
HOST_LABEL = f"ns:{HOST_INODE}"


def ns_inode(name):
    """The inode of the network namespace made by `ip netns add NAME`."""
    return os.stat(f"/run/netns/{name}").st_ino


def ns_label(name):
    """How the tests' probes name that namespace: ns:INODE."""
    return f"ns:{ns_inode(name)}"


def _links_to(directory, tag):
    """The entries of `directory` that are links to `tag`."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    found = []
    for name in names:
        try:
            if os.readlink(f"{directory}/{name}") == tag:
                found.append(f"{directory}/{name}")
        except OSError:
            pass
    return found


def ns_references(kind, inode):
    """Every place on the system that holds namespace kind:[inode] alive:
    a process in it, an open descriptor of it, a mount of its file."""
    tag = f"{kind}:[{inode}]"
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if pid == str(os.getpid()):
            continue
        found += _links_to(f"/proc/{pid}/ns", tag) + _links_to(f"/proc/{pid}/fd", tag)
        try:
            with open(f"/proc/{pid}/mountinfo") as f:
                if tag in f.read():
                    found.append(f"/proc/{pid}/mountinfo")
        except OSError:
            pass
    return found
