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

Operations:
    {"op": "mount", "type": T, "source": S, "options": "k=v,...", "path": P}
    {"op": "umount", "path": P, "lazy": bool}
    {"op": "list"}      -> {"stacks": [{path, type, source, options, users, detached}]}
    {"op": "defaults"}  -> {"defaults": [[family, stack name, from the session], ...]}
"""
import errno
import json

from . import _families
from ._stacks import MountError, parse_options

NR_CONTROL = -1000
MAX_REQUEST = 65536
MANAGING = ("mount", "umount")


class ControlError(Exception):
    def __init__(self, err):
        super().__init__(err)
        self.errno = err


def parse_request(data):
    try:
        request = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise ControlError(errno.EINVAL) from None
    if not isinstance(request, dict) or not isinstance(request.get("op"), str):
        raise ControlError(errno.EINVAL)
    return request


def in_use_by_session(stack, session_defaults):
    """Whether `stack` is a session default: then it lives as long as the
    session, whatever the processes do."""
    return any(s is stack for s in session_defaults.values())


def users_of(stack, table, session_defaults):
    """What keeps a detached stack alive: processes, or the session."""
    return table.users(stack, session_defaults) or in_use_by_session(stack, session_defaults)


def keeps_alive(stack, table, session_defaults):
    """What keeps a detached stack alive: its users, or sockets that die with it."""
    return users_of(stack, table, session_defaults) or stack.open_sockets()


def may_manage(euid, owner_uid):
    return euid in (owner_uid, 0)


def handle(request, stacks, table, session_defaults, tgid):
    """The reply (a dict) to one request of process `tgid`."""
    op = request["op"]
    try:
        if op == "mount":
            path = _text(request, "path")
            options = parse_options(_text(request, "options", ""), "-o")
            stacks.mount(path, _text(request, "type"), _text(request, "source", ""), options)
            return {"path": path}
        if op == "umount":
            path = _text(request, "path")
            mount = stacks.by_path.get(path)
            if mount is None:
                raise MountError(errno.EINVAL, f"{path}: not a mounted stack")
            lazy = bool(request.get("lazy"))
            if in_use_by_session(mount.stack, session_defaults) and not lazy:
                # Processes can go back to the session default at any time
                # (msocket(NULL, ..., SOCK_DEFAULT)): it must stay.
                raise MountError(errno.EBUSY, f"{path}: a session default (vupy run --default); "
                                              "vuumount -l detaches its name")
            stacks.unmount(path, users_of(mount.stack, table, session_defaults), lazy,
                           mount.stack.open_sockets())
            return {"path": path}
        if op == "list":
            rows = []
            for mount in list(stacks.by_path.values()) + stacks.detached:
                rows.append({"path": mount.path, "type": mount.type, "source": mount.source,
                             "options": ",".join(f"{k}={v}" for k, v in mount.options.items()),
                             "users": table.users(mount.stack, session_defaults),
                             "detached": mount.detached})
            return {"stacks": rows}
        if op == "defaults":
            defaults = table.defaults.get(tgid)
            rows = []
            for family in sorted(set(session_defaults) | {f for f, _ in defaults.items()}):
                own = defaults.get(family)
                stack = own if own is not None else session_defaults.get(family)
                rows.append([_families.name(family), stacks.name_of(stack),
                             own is None])
            return {"defaults": rows}
        raise MountError(errno.EINVAL, f"unknown operation {op!r}")
    except MountError as e:
        return {"errno": e.errno, "error": str(e)}


def _text(request, key, default=None):
    value = request.get(key, default)
    if not isinstance(value, str):
        raise MountError(errno.EINVAL, f"{key!r} must be a string")
    return value


def encode(reply):
    return json.dumps(reply).encode()
