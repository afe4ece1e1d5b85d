# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""What to do with a trapped call: the dispatcher.

Theory of operation.  The notification loop (vupy/_notify.py) turns each
trapped socket(2) or msocket call into a `SocketRequest`, reads what the call points to, resolves a
stack path to a `Target`, and asks `decide` what to do.  `decide` is a plain
function of the call, the target, the caller's credentials and its defaults:
it does no I/O, so every rule below is unit-tested without a kernel.  The
loop carries out the `Decision`.

Two rules hold everything together:

1. Fail closed.  If a call cannot be routed as asked, the caller gets an
   errno, never a socket on some other stack.
2. One table.  Every errno msocket can return is listed in `MSOCKET_ERRORS`,
   which docs/msocket.2.md repeats; all but two are decided here, and the
   table names where those two come from (ENETDOWN from the stacks, EIO from
   the notification loop).

The msocket conventions are VUOS's (virtualsquare/vuos 0.9.4): ENOENT for a
path that does not exist, EOPNOTSUPP for one that is not a stack,
EAFNOSUPPORT for a family the stack does not serve, EINVAL for the probe
``type == -1`` on a served family, 0 for SOCK_DEFAULT.
"""
import errno
import socket
from dataclasses import dataclass

from ._abi import CAP_SYS_ADMIN, SOCK_DEFAULT, SOCK_PROBE, X86_64
from ._reply import Fail
from .stack import ProxyStack

CAP_DAC_OVERRIDE = 1
CAP_DAC_READ_SEARCH = 2

# errno, condition: the whole of msocket's error behaviour, in the order the
# checks are made.  Errors of socket(2) itself (EINVAL, EPROTONOSUPPORT,
# EPERM, EMFILE, ...) come from the stack as the kernel reports them.
MSOCKET_ERRORS = (
    (errno.EFAULT, "path points outside the caller's accessible memory"),
    (errno.ENAMETOOLONG, "path has no NUL in its first PATH_MAX (4096) bytes"),
    (errno.ENOENT, "path is neither a stack's name nor an existing file (also an empty path); "
                   "ENOTDIR and ELOOP as for stat(2)"),
    (errno.EOPNOTSUPP, "path exists but is neither a stack's name nor a network namespace"),
    (errno.EACCES, "the caller may not search a directory of path, or may not read the stack "
                   "(its mode bits, as for a file: caller's fs ids and groups); for a namespace "
                   "file, also without CAP_SYS_ADMIN"),
    (errno.EAFNOSUPPORT, "the stack does not serve domain (also with SOCK_DEFAULT; "
                         "domain AF_UNSPEC with a socket type); or it is a userspace stack and "
                         "the caller is i386 or x32 code"),
    (errno.EINVAL, "type is -1 and the stack serves domain (VUOS's probe)"),
    (errno.ENETDOWN, "the stack is gone (unmounted and freed, or its backing process exited): "
                     "the stack's socket() says so (vupy/stack.py)"),
    (errno.EIO, "vupy failed internally while routing the call (a bug: reported on stderr): "
                "the notification loop's answer (vupy/_notify.py)"),
)


@dataclass(frozen=True)
class SocketRequest:
    """A trapped socket(2) or msocket call, with its arguments as the kernel
    sees them.

    ``path`` is None for socket(2) and for msocket with a NULL path, the
    bytes of the path otherwise, or an errno (int) if reading it failed.
    ``abi`` is the code that made the call: X86_64, I386 or X32.
    """

    domain: int
    type: int
    protocol: int
    msocket: bool = False
    path: object = None
    abi: str = X86_64


@dataclass(frozen=True)
class Target:
    """What a path resolved to: a stack, and the owner and mode that msocket
    checks (the mount's options, or a namespace file's own)."""

    stack: object
    uid: int
    gid: int
    mode: int
    namespace_file: bool = False


@dataclass(frozen=True)
class Creds:
    fsuid: int
    fsgid: int
    groups: tuple
    cap_effective: int

    @classmethod
    def of(cls, raw):
        """The Creds of a struct vupy_creds."""
        return cls(raw.fsuid, raw.fsgid, tuple(raw.groups[0:raw.ngroups]), raw.cap_effective)

    def capable(self, cap):
        return bool(self.cap_effective >> cap & 1)


class Defaults:
    """A process's default stacks: an immutable map from family to stack,
    and the scope the process belongs to (see vupy/_stacks.py), whose
    `defaults` are the session defaults for the families the map leaves out;
    and its routes (vupy/routes.py), the scope's `routes` until the process
    sets its own.

    Copying is free (processes share the object until one of them changes a
    default).
    """

    __slots__ = ("_map", "scope", "_routes")

    def __init__(self, mapping=None, scope=None, routes=None):
        self._map = dict(mapping or {})
        self.scope = scope
        self._routes = routes

    def routes(self):
        """The process's routes: a tuple of routes.Route."""
        return self.scope.routes if self._routes is None else self._routes

    def with_routes(self, routes):
        return Defaults(self._map, self.scope, tuple(routes))

    def get(self, family):
        return self._map.get(family)

    def items(self):
        return self._map.items()

    def with_stack(self, families, stack):
        new = dict(self._map)
        for family in families:
            if stack is None:
                new.pop(family, None)
            else:
                new[family] = stack
        return Defaults(new, self.scope, self._routes)

    def cleared(self):
        """Every family back to the session default (routes stay)."""
        return Defaults(None, self.scope, self._routes)

    def effective(self):
        """family -> stack, the session defaults included."""
        return {**self.scope.defaults, **self._map}

    def __eq__(self, other):
        return (isinstance(other, Defaults) and self._map == other._map and self.scope is other.scope
                and self._routes == other._routes)


# Decisions (and Fail, the outcome of vupy/_reply.py) ----------------------

@dataclass(frozen=True)
class Create:
    stack: object
    domain: int
    type: int  # without SOCK_CLOEXEC
    protocol: int
    cloexec: bool


@dataclass(frozen=True)
class SetDefault:
    families: tuple
    stack: object  # None: back to the session's default


@dataclass(frozen=True)
class Native:
    """Leave the call to the caller's own kernel network namespace."""


NATIVE = Native()


def c_int(value):
    """A system call argument (64 bits) as the kernel reads an int parameter."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def may_read(creds, target):
    """Read permission on a stack from its mode bits, as the kernel judges
    a file's: owner, else group, else other; CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH bypass."""
    if creds.capable(CAP_DAC_OVERRIDE) or creds.capable(CAP_DAC_READ_SEARCH):
        return True
    if creds.fsuid == target.uid:
        return bool(target.mode & 0o400)
    if creds.fsgid == target.gid or target.gid in creds.groups:
        return bool(target.mode & 0o040)
    return bool(target.mode & 0o004)


def default_stack(family, defaults):
    """The stack a socket of `family` goes to when no path is given."""
    stack = defaults.get(family)
    return stack if stack is not None else defaults.scope.defaults.get(family)


def decide(call, defaults, target=None, creds=None):
    """The decision for one SocketRequest `call` of a process whose
    Defaults are `defaults`.

    `target` is the resolution of ``call.path`` (a Target, or an errno) when
    the path is bytes.
    """
    if isinstance(call.path, int):
        return Fail(call.path)
    if call.msocket and call.path is not None:
        if isinstance(target, int):
            return Fail(target)
        if target is None:
            return Fail(errno.EOPNOTSUPP)
        if not may_read(creds, target) or (
            target.namespace_file and not creds.capable(CAP_SYS_ADMIN)
        ):
            return Fail(errno.EACCES)
        return _on_stack(call, target.stack)
    if call.msocket and call.type == SOCK_DEFAULT:
        # msocket(NULL, domain, SOCK_DEFAULT, 0): back to the session default.
        families = None if call.domain == socket.AF_UNSPEC else (call.domain,)
        return SetDefault(families, None)
    stack = default_stack(call.domain, defaults)
    if stack is None:
        return NATIVE
    return _on_stack(call, stack)


def _on_stack(call, stack):
    if call.type == SOCK_DEFAULT and call.msocket:
        if call.domain == socket.AF_UNSPEC:
            return SetDefault(tuple(sorted(stack.families)), stack)
        if call.domain not in stack.families:
            return Fail(errno.EAFNOSUPPORT)
        return SetDefault((call.domain,), stack)
    if call.domain not in stack.families:
        return Fail(errno.EAFNOSUPPORT)
    if call.type == SOCK_PROBE:
        return Fail(errno.EINVAL)
    if call.abi != X86_64 and isinstance(stack, ProxyStack):
        # Calls on a proxy are trapped for x86_64 code only (vupy/_proxy.py).
        return Fail(errno.EAFNOSUPPORT)
    return Create(
        stack,
        call.domain,
        call.type & ~socket.SOCK_CLOEXEC,
        call.protocol,
        bool(call.type & socket.SOCK_CLOEXEC),
    )
