# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""vupy's control call: how vumount, vuumount and vustack talk to the
supervisor from inside a session.

The call is vupy's own virtual system call, number -1000 (outside VUOS's
-1..-5), trapped by the filter like msocket, so only processes of the
session can make it:

    syscall(-1000, request, request_length, reply, reply_size)

`request` is a JSON object with an "op"; the supervisor writes a JSON reply
into `reply` and returns its length.  Errors that concern the call itself
come back as -1 and errno: EFAULT (bad buffer), ERANGE (reply buffer too
small; a query changed nothing and can be asked again with a larger one,
but a mount or umount was done: give those 4 KiB, which their replies
never exceed),
EINVAL (not a request), EPERM (mount and umount are for the session owner's
uid and root).  Errors of the operation come in the reply as
{"errno": N, "error": "message"}.

Operations (PATHs are resolved as the caller would, see vupy/_paths.py; each
acts in the caller's scope, see vupy/_stacks.py):
    {"op": "mount", "type": T, "source": S, "options": "k=v,...", "path": P}
    {"op": "umount", "path": P, "lazy": bool}
    {"op": "list"}      -> {"stacks": [{path, type, source, options, mode, uid, gid,
                            users, detached}]}
    {"op": "defaults"}  -> {"defaults": [[family, stack name, from the session], ...]}
    {"op": "routes"}    -> {"routes": [[RULE, stack name, from the session], ...]}: the
                        caller's routes, in the order they are given
    {"op": "route", "routes": [[RULE, PATH], ...]} the caller's routes, these
                        added (vustack --route; EOPNOTSUPP in a session started
                        without --route, whose filter does not trap connect)
    {"op": "depth"}     -> {"depth": 1 in a session, 2 in one nested in it, ...}
    {"op": "nest", "stacks": [[P, SPEC], ...], "defaults": [[FAMILIES or null, P, TEXT], ...],
     "routes": [[RULE, P], ...], "userspace": bool} -> {"depth": N}: a nested
                        session (`vupy run` inside a session): a new scope with
                        these stacks, defaults and routes (after the caller's),
                        which the caller and its later children belong to
    {"op": "end"}       the caller's nested session is over: its stacks go
"""
import errno
import json
import os

from . import _families
from ._dispatch import Defaults
from . import routes as routing
from ._stacks import MountError, apply_defaults, apply_routes, name_key, parse_options, parse_spec

MAX_REQUEST = 65536
MANAGING = ("mount", "umount", "nest")


def parse_request(data):
    """The request of a control call; OSError(EINVAL), the call's errno, if
    it is not one."""
    invalid = OSError(errno.EINVAL, "not a control request")
    try:
        request = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise invalid from None
    if not isinstance(request, dict) or not isinstance(request.get("op"), str):
        raise invalid
    return request


def in_use_by_session(stack, stacks):
    """Whether `stack` is a session default of a live scope: then it lives as
    long as the scope, whatever the processes do."""
    return any(s is stack for scope in stacks.scopes() for s in scope.defaults.values())


def keeps_alive(stack, table, stacks):
    """What keeps a detached stack alive: processes that use it as a default,
    a session, or its sockets that die with it."""
    return table.users(stack) or in_use_by_session(stack, stacks) or stack.open_sockets()


def may_manage(euid, owner_uid):
    return euid in (owner_uid, 0)


class Caller:
    """Who made a control call: its process, its Defaults, its view of
    paths (`key(path, free=False)`: Resolver.key of vupy/_paths.py, bound
    to the caller: a key or an errno) and whether it may use a mounted
    stack (`may_use(mount)`, as msocket judges)."""

    def __init__(self, tgid, defaults, key, may_use=lambda mount: True):
        self.tgid = tgid
        self.defaults = defaults
        self.key = key
        self.may_use = may_use


def handle(request, stacks, table, caller):
    """The reply (a dict) to one request of `caller` (a Caller)."""
    op = request["op"]
    scope = caller.defaults.scope
    try:
        if op == "mount":
            path = _text(request, "path")
            options = parse_options(_text(request, "options", ""), "-o")
            stacks.mount(scope, path, name_key(caller.key(path, free=True), path),
                         _text(request, "type"), _text(request, "source", ""), options)
            return {"path": path}
        if op == "umount":
            path = _text(request, "path")
            key = name_key(caller.key(path), path)
            mount = scope.mounts.get(key)
            if mount is None:
                raise MountError(errno.EINVAL, f"{path}: " + (
                    "not a mounted stack" if scope.lookup(key) is None
                    else "mounted by an enclosing session, not by this one"))
            lazy = bool(request.get("lazy"))
            if in_use_by_session(mount.stack, stacks) and not lazy:
                # Processes can go back to the session default at any time
                # (msocket(NULL, ..., SOCK_DEFAULT)): it must stay.
                raise MountError(errno.EBUSY, f"{path}: a session default (vupy run --default); "
                                              "vuumount -l detaches its name")
            stacks.unmount(scope, mount, table.users(mount.stack), lazy, mount.stack.open_sockets())
            return {"path": path}
        if op == "list":
            rows = []
            for mount in scope.visible() + stacks.detached:
                rows.append({"path": mount.path, "type": mount.type, "source": mount.source,
                             "options": ",".join(f"{k}={v}" for k, v in mount.options.items()),
                             "mode": mount.mode, "uid": mount.uid, "gid": mount.gid,
                             "users": table.users(mount.stack),
                             "detached": mount.detached})
            return {"stacks": rows}
        if op == "defaults":
            own = dict(caller.defaults.items())
            return {"defaults": [[_families.name(family), stacks.name_of(stack), family not in own]
                                 for family, stack in sorted(caller.defaults.effective().items())]}
        if op == "routes":
            return {"routes": [[r.rule.text, stacks.name_of(r.stack),
                                any(r is s for s in scope.routes)]
                               for r in caller.defaults.routes()]}
        if op == "route":
            if not stacks.routes_connects:
                raise MountError(errno.EOPNOTSUPP, "this session does not trap connect: start it "
                                                   "with `vupy run --route RULE=PATH`")
            new = apply_routes(caller.defaults.routes(), scope, caller.key,
                               _rules(request, "routes"), caller.may_use)
            table.set(caller.tgid, caller.defaults.with_routes(new))
            return {}
        if op == "depth":
            return {"depth": scope.depth}
        if op == "nest":
            return {"depth": _nest(request, stacks, table, caller).depth}
        if op == "end":
            if scope.owner_tgid != caller.tgid:
                raise MountError(errno.EINVAL, "not the vupy of a nested session")
            stacks.end(scope, lambda stack: keeps_alive(stack, table, stacks))
            return {}
        raise MountError(errno.EINVAL, f"unknown operation {op!r}")
    except MountError as e:
        return {"errno": e.errno, "error": str(e)}


def _nest(request, stacks, table, caller):
    """A nested session's scope, with its stacks and defaults, for the
    caller and its later children; nothing made if anything fails."""
    if request.get("userspace") and not stacks.serves_proxies:
        raise MountError(errno.EOPNOTSUPP, "--userspace: the enclosing session does not trap the "
                                           "calls userspace stacks need: start it with "
                                           "`vupy run --userspace`")
    parent = caller.defaults.scope
    try:
        owner = os.pidfd_open(caller.tgid)
    except OSError as e:
        raise MountError(e.errno, f"cannot follow process {caller.tgid}: {e.strerror}") from None
    rules = _rules(request, "routes")
    if rules and not stacks.routes_connects:
        raise MountError(errno.EOPNOTSUPP, "--route: the enclosing session does not trap connect: "
                                           "start it with `vupy run --route RULE=PATH`")
    scope = stacks.nest(parent, {}, owner, caller.tgid)
    try:
        for path, spec in _pairs(request, "stacks"):
            stacks.mount(scope, path, name_key(caller.key(path, free=True), path), *parse_spec(spec))
        scope.defaults = apply_defaults(caller.defaults.effective(), scope, caller.key,
                                        _triples(request, "defaults"))
        scope.routes = apply_routes(caller.defaults.routes(), scope, caller.key, rules,
                                    caller.may_use)
    except BaseException:
        stacks.end(scope, lambda stack: False)
        raise
    if not table.exact:
        table.adopt(caller.tgid)        # its unknown children stay where they were
    table.set(caller.tgid, Defaults(None, scope))
    return scope


def _pairs(request, key, shape="[PATH, SPEC]"):
    value = request.get(key, [])
    if not isinstance(value, list) or not all(
            isinstance(v, list) and len(v) == 2 and all(isinstance(x, str) for x in v) for v in value):
        raise MountError(errno.EINVAL, f"{key!r} must be a list of {shape}")
    return value


def _rules(request, key):
    """[(routes.Rule, PATH, "RULE=PATH")] of a request's [[RULE, PATH], ...]."""
    rules = []
    for rule, path in _pairs(request, key, "[RULE, PATH]"):
        try:
            rules.append((routing.parse_rule(rule), path, f"{rule}={path}"))
        except routing.RuleError as e:
            raise MountError(errno.EINVAL, f"--route {rule}={path}: {e}") from None
    return rules


def _triples(request, key):
    value = request.get(key, [])
    if not isinstance(value, list) or not all(
            isinstance(v, list) and len(v) == 3 and isinstance(v[1], str) and isinstance(v[2], str)
            and (v[0] is None or isinstance(v[0], list) and all(type(f) is int for f in v[0]))
            for v in value):
        raise MountError(errno.EINVAL, f"{key!r} must be a list of [FAMILIES, PATH, TEXT]")
    return value


def _text(request, key, default=None):
    value = request.get(key, default)
    if not isinstance(value, str):
        raise MountError(errno.EINVAL, f"{key!r} must be a string")
    return value


def encode(reply):
    return json.dumps(reply).encode()
