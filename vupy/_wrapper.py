"""msocket(2) for Python programs: `vupy.msocket`, `vupy.set_default`,
`vupy.in_session`.

Inside a session the call goes to the supervisor as VUOS's virtual syscall
-5; outside one the kernel answers ENOSYS, and msocket with no path falls
back to socket(2), as the msocket paper defines it.
"""
import errno
import json
import os
import socket

from ._native import ffi, lib

NR_MSOCKET = -5
NR_CONTROL = -1000  # vupy's control call: see vupy/_control.py
SOCK_DEFAULT = 0
SOCK_PROBE = -1


def _call(path, family, type, proto):
    cpath = ffi.NULL if path is None else ffi.new("char[]", os.fsencode(path))
    return lib.vupy_syscall4(NR_MSOCKET, int(ffi.cast("uintptr_t", cpath)), family, type, proto)


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
        reply = ffi.new("char[]", size)
        rc = lib.vupy_syscall4(NR_CONTROL, int(ffi.cast("uintptr_t", ffi.from_buffer(data))),
                               len(data), int(ffi.cast("uintptr_t", reply)), size)
        if rc == -errno.ERANGE and request.get("op") not in ("mount", "umount"):
            size *= 16
            continue
        if rc < 0:
            what = {errno.ENOSYS: "not in a vupy session",
                    errno.EPERM: "only the session owner's uid or root may do that"}
            raise OSError(-rc, what.get(-rc, os.strerror(-rc)))
        answer = json.loads(ffi.buffer(reply, rc)[:])
        if "errno" in answer:
            raise OSError(answer["errno"], answer["error"])
        return answer


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
