# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""The session's stacks: modules found through entry points, stacks made
from SPECs, and the names that stand for them.

A stack is *mounted* at a PATH, and the PATH is a name, not a file: vupy
creates nothing on disk.  A file would have to go into a real directory
(seen by everybody, and left behind if vupy is killed) or into a copy of
the directory laid over it for the session (which hides, and loses at the
end, whatever programs write there).  Instead the supervisor resolves the
path a program gives to msocket(2) itself (vupy/_paths.py): the directory
part as the kernel would for the caller, the last component by name.  A
stack is thus known by its *key*: (device, inode) of its directory and its
name, so any spelling of the path that reaches the same directory names it
(a relative path, a symbolic link to the directory), and nothing about the
directory changes.  Its mode, owner and group, which msocket checks as it
would a file's, are options of the mount.

Stacks live in *scopes*.  The session's scope holds the `--stack`s and
what `vumount` adds; a `vupy run` inside the session opens a nested scope
(see `StackTable.nest`) whose stacks only its own processes see, in front
of the enclosing ones, and which ends with it.

Stacks can be mounted when the session starts (`vupy run --stack`) and while
it runs (`vumount`), and unmounted (`vuumount`): an unmount fails with EBUSY
while any process uses the stack as a default, and a lazy one detaches the
name at once and frees the stack when its last user is gone.
"""
import errno
import ipaddress
import os
import socket
from dataclasses import dataclass, field

from . import _families, _native
from . import routes as routing
from .stack import ProxyStack, StackError

GROUP = "vupy.stacks"
FILE_OPTIONS = ("mode", "uid", "gid")   # what msocket checks, as for a file: not the module's
RESOLVER_OPTIONS = ("dns", "hosts", "search")   # any stack's own name resolution (vupy/_resolver.py)
DEFAULT_MODE = 0o644


class MountError(Exception):
    """A stack cannot be mounted or unmounted: an errno and a message."""

    def __init__(self, err, message):
        super().__init__(message)
        self.errno = err


# Modules -------------------------------------------------------------------

def find_modules():
    """name -> entry point, for every module registered under vupy.stacks."""
    # Imported here: it takes longer than the rest of vupy's start-up.
    from importlib.metadata import entry_points
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def load_module(name, modules=None):
    """The module class registered as `name`; MountError if there is none
    or it fails to load."""
    modules = find_modules() if modules is None else modules
    entry = modules.get(name)
    if entry is None:
        known = ", ".join(sorted(modules)) or "none"
        raise MountError(errno.ENODEV, f"unknown stack module {name!r} (known: {known})")
    try:
        return entry.load()
    except Exception as e:  # a broken module is its own problem, named as such
        raise MountError(errno.ENODEV, f"module {name!r} failed to load: "
                                       f"{type(e).__name__}: {e}") from None


def describe_modules():
    """(name, description, families, unavailable, error) for every module
    found: `unavailable` is why a module cannot work here (None if it can),
    `error` why one fails to load."""
    rows = []
    for name, entry in sorted(find_modules().items()):
        try:
            module = load_module(name, {name: entry})
            rows.append((name, module.description or "", frozenset(module.families),
                         module.unavailable(), None))
        except MountError as e:
            rows.append((name, "", frozenset(), None, str(e)))
    return rows


def parse_spec(spec):
    """'MODULE[:SOURCE][,KEY=VALUE]...' -> (module, source, options)."""
    head, _, rest = spec.partition(",")
    module, _, source = head.partition(":")
    if not module:
        raise MountError(errno.EINVAL, f"{spec!r}: no module name")
    return module, source, parse_options(rest, spec)


def parse_options(text, where):
    options = {}
    for item in filter(None, text.split(",")):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise MountError(errno.EINVAL, f"{where!r}: option {item!r} is not KEY=VALUE")
        options[key] = value
    return options


def file_attributes(options, owner):
    """Split the stack's own options (mode, uid, gid) off `options`:
    returns (mode, uid, gid, the module's options)."""
    rest = {k: v for k, v in options.items() if k not in FILE_OPTIONS}

    def number(key, digits, largest, what, example, default):
        text = options.get(key)
        if text is None:
            return default
        if not text or text.strip(digits) or int(text, len(digits)) > largest:
            raise MountError(errno.EINVAL, f"{key}={text}: not {what} (as in {key}={example})")
        return int(text, len(digits))

    largest_id = 2**32 - 2          # (uid_t) -1 means "no change" to chown(2)
    mode = number("mode", "01234567", 0o7777, "an octal mode from 0 to 7777", "0640", DEFAULT_MODE)
    uid = number("uid", "0123456789", largest_id, f"a user id from 0 to {largest_id}", "1000", owner[0])
    gid = number("gid", "0123456789", largest_id, f"a group id from 0 to {largest_id}", "100", owner[1])
    return mode, uid, gid, rest


def resolver_attributes(options):
    """Split the stack's resolver options (dns=ADDR[+ADDR...], hosts=FILE,
    search=DOMAIN[+DOMAIN...]) off `options`: returns (nameservers, hosts
    file or None, search domains, the rest)."""
    rest = {k: v for k, v in options.items() if k not in RESOLVER_OPTIONS}
    servers = []
    for text in options.get("dns", "").split("+") if "dns" in options else ():
        try:
            servers.append(ipaddress.ip_address(text))
        except ValueError:
            raise MountError(errno.EINVAL, f"dns={options['dns']}: {text!r} is not an IP address "
                                           "(as in dns=10.0.0.53+fd00::53)") from None
    hosts = options.get("hosts")
    if hosts is not None and not os.path.isfile(hosts):
        raise MountError(errno.EINVAL, f"hosts={hosts}: not a file")
    search = tuple(d.lower().rstrip(".") for d in options.get("search", "").split("+") if d.rstrip("."))
    if "search" in options and not search:
        raise MountError(errno.EINVAL, "search=: no domain (as in search=corp.example+lab.example)")
    return tuple(servers), hosts, search, rest


def apply_defaults(defaults, scope, key_of, options):
    """Session defaults: `defaults` (family -> stack) with each `--default`
    of `options` ([(families or None, path, text)]) applied in order; its
    path must name a stack of `scope` (the `--stack`s of the same command
    line), `key_of(path)` being its key or an errno.  MountError naming a
    bad option."""
    defaults = dict(defaults)
    for families, path, text in options:
        mount = scope.mounts.get(key_of(path))
        if mount is None:
            raise MountError(errno.EINVAL, f"--default {text!r}: {path} is not a --stack PATH "
                                           "of this session")
        for family in families or sorted(mount.stack.families):
            if family not in mount.stack.families:
                raise MountError(errno.EINVAL, f"--default {text!r}: {path} does not serve "
                                               f"{_families.name(family)}")
            defaults[family] = mount.stack
    return defaults


def apply_routes(routes, scope, key_of, options, may_use=lambda mount: True):
    """`routes` with the routes of `options` ([(routes.Rule, path, text)])
    added (routes.added); each path must name a stack visible in `scope`
    (`key_of(path)`: its key or an errno) that serves a family the rule can
    match and that `may_use(mount)`.  MountError naming a bad one."""
    new = []
    for rule, path, text in options:
        mount = scope.lookup(key_of(path))
        if mount is None:
            raise MountError(errno.EINVAL, f"--route {text!r}: {path} is not a stack of this session")
        if not may_use(mount):
            raise MountError(errno.EACCES, f"--route {text!r}: {path}: permission denied")
        if rule.name is not None and isinstance(mount.stack, ProxyStack):
            raise MountError(errno.EOPNOTSUPP, f"--route {text!r}: {path} is a userspace stack, "
                                               "which name routes do not look names up through yet")
        families = {4: {socket.AF_INET}, 6: {socket.AF_INET6}}.get(
            rule.network.version if rule.network is not None else None,
            {socket.AF_INET, socket.AF_INET6})
        if not families & set(mount.stack.families):
            raise MountError(errno.EINVAL, f"--route {text!r}: {path} serves neither "
                                           f"{' nor '.join(map(_families.name, sorted(families)))}")
        new.append(routing.Route(rule, mount.stack, path))
    return routing.added(routes, new)


def _names_changed():
    """What a path names has changed: the fast path (csrc/fastpath.c)
    forgets the stacks it learnt by path."""
    _native.lib.vupy_route_forget_all()


def make_stack(module_name, source, options, modules=None):
    """A stack made by module `module_name`; MountError naming the problem."""
    module = load_module(module_name, modules)
    why = module.unavailable()
    if why:
        raise MountError(errno.ENODEV, f"module {module_name!r} is unavailable: {why}")
    try:
        return module().create(source, dict(options))
    except StackError as e:
        raise MountError(errno.EINVAL, str(e)) from None


# Mounted stacks ------------------------------------------------------------

def name_key(key, path):
    """`key` (see vupy/_paths.py: a stack's key for `path`, or an errno), or
    MountError saying what is wrong with `path` as a stack's name."""
    if not isinstance(key, int):
        return key
    why = {errno.ENOENT: f"directory {os.path.dirname(path) or '.'} does not exist",
           errno.EEXIST: "exists: a stack's name must not be a file's, which msocket would "
                         "no longer reach",
           errno.EINVAL: "not a name for a stack (it ends in /, . or ..)"}
    raise MountError(key, f"{path}: {why.get(key) or os.strerror(key)}")


@dataclass(eq=False)
class Mount:
    path: str               # as the mounter gave it, for listings and messages
    key: tuple              # (st_dev, st_ino of its directory, name as bytes)
    type: str
    source: str
    options: dict           # the module's
    stack: object
    mode: int = DEFAULT_MODE
    uid: int = 0
    gid: int = 0
    detached: bool = field(default=False)


@dataclass(eq=False)
class Scope:
    """The stacks a group of processes can name, and their session defaults.

    The session's own scope has no parent; a nested `vupy run` makes one
    whose parent is its caller's, owned by that vupy process (`owner`, a
    pidfd) and ended when it ends.  Each process belongs to one scope (its
    Defaults say which), copied at fork like its defaults."""

    parent: object = None
    defaults: dict = field(default_factory=dict)    # family -> stack
    owner: int = None           # pidfd of the nested vupy that made it
    owner_tgid: int = None
    mounts: dict = field(default_factory=dict)      # key -> Mount
    routes: tuple = ()          # routes.Route: the session's (vupy run --route)

    def lookup(self, key):
        """The Mount named by `key` here or in an enclosing scope."""
        scope = self
        while scope is not None:
            mount = scope.mounts.get(key)
            if mount is not None:
                return mount
            scope = scope.parent
        return None

    def visible(self):
        """Every mount its processes can name, innermost first."""
        seen, scope = {}, self
        while scope is not None:
            for key, mount in scope.mounts.items():
                seen.setdefault(key, mount)
            scope = scope.parent
        return list(seen.values())

    @property
    def depth(self):
        """1 for the session's scope, 2 for a session nested in it, ..."""
        return 1 if self.parent is None else 1 + self.parent.depth


class StackTable:
    """The session's stacks: their scopes, the lazily unmounted ones still
    in use, and the unnamed `host` default."""

    def __init__(self, owner):
        self.owner = owner              # (uid, gid) of who runs the session
        self.session = Scope()
        self.nested = []                # the live nested scopes
        self.detached = []              # lazily unmounted, still in use
        self.unnamed = []
        # Whether the session traps the calls of proxy descriptors: None
        # until the session starts (any stack may be mounted before).
        self.serves_proxies = None
        # Whether the session traps connect, for routes and stacks' own name
        # resolution: None until the session starts.
        self.routes_connects = None

    def resolves(self):
        """Whether a stack has name resolution of its own."""
        return any(m.stack.resolves_names for m in self.mounts())

    def scopes(self):
        return [self.session] + self.nested

    def mounts(self):
        return [m for scope in self.scopes() for m in scope.mounts.values()] + self.detached

    def name_of(self, stack):
        for mount in self.mounts():
            if mount.stack is stack:
                return mount.path + (" (unmounted)" if mount.detached else "")
        return getattr(stack, "label", None) or "stack"

    def mount(self, scope, path, key, type_, source, options, modules=None):
        """Make a stack with module `type_` and name it `path` (whose key the
        caller resolved, see vupy/_paths.py) in `scope`.  `options` holds the
        module's options and the name's own (mode, uid, gid).  MountError,
        with nothing changed, on failure."""
        mode, uid, gid, module_options = file_attributes(options, self.owner)
        servers, hosts, search, module_options = resolver_attributes(module_options)
        if key in scope.mounts:
            raise MountError(errno.EBUSY, f"{path}: a stack is mounted there already")
        stack = make_stack(type_, source, module_options, modules)
        stack.nameservers = servers or stack.nameservers
        stack.hosts = hosts or stack.hosts
        stack.search = search or stack.search
        if stack.resolves_names and self.routes_connects is False:
            stack.close()
            raise MountError(errno.EOPNOTSUPP, f"{path}: a stack with its own name resolution, and "
                                               "this session does not trap connect: start it with "
                                               "`vupy run --route RULE=PATH` or a --stack with dns=")
        if isinstance(stack, ProxyStack) and self.serves_proxies is False:
            stack.close()
            raise MountError(errno.EOPNOTSUPP, f"{path}: {type_} is a userspace stack, and this "
                                               "session does not trap the calls its sockets need: "
                                               "start it with `vupy run --userspace`")
        mount = Mount(path, key, type_, source, module_options, stack, mode, uid, gid)
        scope.mounts[key] = mount
        _names_changed()
        return mount

    def unmount(self, scope, mount, users, lazy, sockets=0):
        """Remove `mount`, a name of `scope`.  `users` counts the processes
        that use the stack, `sockets` its open sockets that die with it: EBUSY
        if there is any, unless lazy, which detaches the name now and leaves
        freeing to `collect`."""
        if (users or sockets) and not lazy:
            what = [f"as a default by {users} process{'es' if users != 1 else ''}"] if users else []
            what += [f"by {sockets} open socket{'s' if sockets != 1 else ''}"] if sockets else []
            raise MountError(errno.EBUSY, f"{mount.path}: in use {' and '.join(what)} "
                                          f"(vuumount -l detaches it now, frees it later)")
        del scope.mounts[mount.key]
        _names_changed()
        self._release(mount, users or sockets)
        return mount

    def _release(self, mount, used):
        if used:
            mount.detached = True
            self.detached.append(mount)
        else:
            mount.stack.close()

    def nest(self, parent, defaults, owner, owner_tgid):
        """A new scope inside `parent` for a nested session (see Scope)."""
        scope = Scope(parent, defaults, owner, owner_tgid)
        self.nested.append(scope)
        return scope

    def end(self, scope, keeps_alive):
        """End a nested scope: its names go; each stack is freed now, or by
        `collect` once nothing keeps it alive (`keeps_alive(stack)`); the
        scopes nested in it end first."""
        for inner in [s for s in self.nested if s.parent is scope]:
            self.end(inner, keeps_alive)
        self.nested.remove(scope)
        os.close(scope.owner)
        mounts, scope.mounts = list(scope.mounts.values()), {}
        _names_changed()
        for mount in mounts:
            self._release(mount, keeps_alive(mount.stack))
        return mounts

    def collect(self, keeps_alive):
        """Free the detached stacks nothing keeps alive any more."""
        for mount in list(self.detached):
            if not keeps_alive(mount.stack):
                self.detached.remove(mount)
                mount.stack.close()

    def has_proxy_stacks(self):
        return any(isinstance(m.stack, ProxyStack) for m in self.mounts())

    def keep(self, stack):
        """Close `stack` with the table, though it has no name (`host`)."""
        self.unnamed.append(stack)

    def close(self):
        """Close every stack (once: a second call finds none)."""
        for mount in self.mounts():
            mount.stack.close()
        for stack in self.unnamed:
            stack.close()
        for scope in self.scopes():
            scope.mounts = {}
        for scope in self.nested:
            os.close(scope.owner)
        self.nested, self.detached, self.unnamed = [], [], []
