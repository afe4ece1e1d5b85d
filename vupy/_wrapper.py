# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""msocket(2) for Python programs: `vupy.msocket`, `vupy.set_default`,
`vupy.in_session`.

Inside a session the call goes to the supervisor as VUOS's virtual syscall
-5; outside one the kernel answers ENOSYS, and msocket with no path falls
back to socket(2), as the msocket paper defines it.

This is the program's side of vupy (with vustack and vumount, which use
it): it makes its calls through the C library's syscall(3) with ctypes,
not through vupy's C extension, so that any python3 in a session imports
it, whether or not cffi is installed for that python (see
vupy/_environment.py).
"""
import ctypes
import errno
import json
import os
import signal
import socket

from ._abi import NR_CONTROL, NR_MSOCKET, SOCK_DEFAULT, SOCK_PROBE

_syscall = ctypes.CDLL(None, use_errno=True).syscall      # long syscall(long number, ...)
_syscall.restype = ctypes.c_long
_long = ctypes.c_long


def _result(rc):
    """A system call's result, with the error as a negative errno."""
    return -ctypes.get_errno() if rc == -1 else rc


def _call(path, family, type, proto):
    return _result(_syscall(_long(NR_MSOCKET), None if path is None else os.fsencode(path),
                            _long(family), _long(type), _long(proto)))


def msocket(path, family, type, proto=0):
    """A socket.socket of `family`/`type` on the stack named by `path`
    (None: the default stack of `family`).  Raises OSError as socket(2)
    would; ENOSYS for a path outside a vupy session.  With type
    SOCK_DEFAULT it makes no socket: it sets the default (as `set_default`)
    and returns None."""
    if type == SOCK_DEFAULT:
        return set_default(path, family)
    rc = _call(path, family, type, proto)
    if rc == -errno.ENOSYS and path is None:
        return socket.socket(family, type, proto)
    if rc < 0:
        raise OSError(-rc, f"msocket({path!r}): {os.strerror(-rc)}")
    return socket.socket(fileno=rc)


def set_default(path, family=socket.AF_UNSPEC):
    """Make `path` this process's default stack for `family` (AF_UNSPEC:
    every family the stack serves); path None restores the session default.
    Children forked afterwards inherit it; it survives execve."""
    rc = _call(path, family, SOCK_DEFAULT, 0)
    if rc < 0:
        what = "not in a vupy session" if rc == -errno.ENOSYS else os.strerror(-rc)
        raise OSError(-rc, f"msocket({path!r}, SOCK_DEFAULT): {what}")


def control(request):
    """Ask the supervisor (see vupy/_control.py); the reply as a dict.
    OSError for a refused call or a failed operation."""
    data = json.dumps(request).encode()
    size = 1 << 16
    while True:
        reply = ctypes.create_string_buffer(size)
        rc = _result(_syscall(_long(NR_CONTROL), data, _long(len(data)), reply, _long(size)))
        if rc == -errno.ERANGE and request.get("op") not in ("mount", "umount"):
            size *= 16
            continue
        if rc < 0:
            what = {errno.ENOSYS: "not in a vupy session",
                    errno.EPERM: "only the session owner's uid or root may do that"}
            raise OSError(-rc, what.get(-rc, os.strerror(-rc)))
        answer = json.loads(reply.raw[:rc])
        if "errno" in answer:
            raise OSError(answer["errno"], answer["error"])
        return answer


def default_dispositions():
    """SIGPIPE and SIGXFSZ back to their default actions.  Python ignores
    them, and an ignored signal stays ignored across execve: a COMMAND that
    vupy or vustack executes must start as it would from a shell, and a
    command that prints (vustack, vumount, vupy --help) must end quietly
    when its reader goes, as any filter does."""
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)


def stack_path(path):
    """A stack's PATH as vumount and vupy run hand it over: made absolute
    from the current directory, without `.` components or repeated slashes
    (they never change what a path names), but with its `..` (which may
    cross a symbolic link) and a trailing `/` or `.` (a directory's)."""
    parts = os.path.join(os.getcwd(), path).split("/")
    return "/" + "/".join([p for p in parts[:-1] if p not in ("", ".")] + parts[-1:])


def in_session():
    """0 outside a session; in one, how deep: 1 in a session, 2 in a session
    nested in it (`vupy run` inside a session), and so on.  Under VUOS,
    which serves msocket but not vupy's control call, 1."""
    try:
        return control({"op": "depth"})["depth"]
    except OSError as e:
        if e.errno != errno.ENOSYS:
            raise
    return int(_call(None, socket.AF_INET, SOCK_PROBE, 0) != -errno.ENOSYS)
