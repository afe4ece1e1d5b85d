"""The session's stacks: modules found through entry points, stacks made
from SPECs, and the stack files that name them.

A stack is *mounted* at a PATH: vupy creates a regular file there, in the
session's own mount namespace (the directory holding it is shadowed by a
tmpfs into which its original entries are bind-mounted back, so nothing
changes outside the session and /dev/net/tun stays usable inside).  The
dispatcher knows a stack file by its (device, inode), so renaming or
hard-linking it keeps it a stack, and a copy is not one.

Stacks can be mounted when the session starts (`vupy run --stack`) and while
it runs (`vumount`), and unmounted (`vuumount`): an unmount fails with EBUSY
while any process uses the stack as a default, and a lazy one detaches the
name at once and frees the stack when its last user is gone.
"""
import errno
import os
import stat
from dataclasses import dataclass, field

from . import _native
from .stack import ProxyStack, StackError

GROUP = "vupy.stacks"
FILE_OPTIONS = ("mode", "uid", "gid")   # options of the stack file, not of the module
DEFAULT_MODE = 0o644
MS_NOSUID = 2
MS_BIND = 4096
MS_REC = 16384


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
    """(name, description, families, error) for every module found, a module
    that fails to load included (with the reason as `error`)."""
    rows = []
    for name, entry in sorted(find_modules().items()):
        try:
            module = load_module(name, {name: entry})
            rows.append((name, module.description or "", frozenset(module.families), None))
        except MountError as e:
            rows.append((name, "", frozenset(), str(e)))
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
    """Split the stack file's own options (mode, uid, gid) off `options`:
    returns (mode, uid, gid, the module's options)."""
    rest = {k: v for k, v in options.items() if k not in FILE_OPTIONS}
    try:
        mode = int(options.get("mode", f"{DEFAULT_MODE:o}"), 8)
        uid = int(options.get("uid", owner[0]))
        gid = int(options.get("gid", owner[1]))
    except ValueError as e:
        raise MountError(errno.EINVAL, f"mode, uid and gid take numbers: {e}") from None
    if not 0 <= mode <= 0o7777 or uid < 0 or gid < 0:
        raise MountError(errno.EINVAL, "mode must be octal 0..7777, uid and gid not negative")
    return mode, uid, gid, rest


def make_stack(module_name, source, options, modules=None):
    """A stack made by module `module_name`; MountError naming the problem."""
    module = load_module(module_name, modules)
    try:
        return module().create(source, dict(options))
    except StackError as e:
        raise MountError(errno.EINVAL, str(e)) from None


# Stack files ---------------------------------------------------------------

@dataclass(eq=False)
class Mount:
    path: str
    type: str
    source: str
    options: dict
    stack: object
    key: tuple = None        # (st_dev, st_ino) of the stack file
    detached: bool = field(default=False)

    @property
    def spec(self):
        text = self.type + (f":{self.source}" if self.source else "")
        return text + "".join(f",{k}={v}" for k, v in self.options.items())


def sys_mount(source, target, fstype, flags, data=None):
    lib, ffi = _native.lib, _native.ffi
    rc = lib.mount(source.encode() if source else ffi.NULL, target.encode(),
                   fstype.encode() if fstype else ffi.NULL, flags,
                   data.encode() if data else ffi.NULL)
    if rc < 0:
        err = ffi.errno
        raise OSError(err, f"mount {target}: {os.strerror(err)}")


def shadow(directory):
    """Put a tmpfs over `directory` holding what it held: bind mounts of the
    original entries (symbolic links are copied)."""
    st = os.stat(directory)
    old = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        entries = os.listdir(f"/proc/self/fd/{old}")
        sys_mount("tmpfs", directory, "tmpfs", MS_NOSUID,
               f"mode={stat.S_IMODE(st.st_mode):o},uid={st.st_uid},gid={st.st_gid}")
        for entry in entries:
            source = f"/proc/self/fd/{old}/{entry}"
            target = os.path.join(directory, entry)
            try:
                est = os.lstat(source)
            except FileNotFoundError:  # gone while we looked (/proc, say)
                continue
            if stat.S_ISLNK(est.st_mode):
                os.symlink(os.readlink(source), target)
            elif stat.S_ISDIR(est.st_mode):
                os.mkdir(target)
                sys_mount(source, target, None, MS_BIND | MS_REC)
            else:
                os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
                sys_mount(source, target, None, MS_BIND)
    finally:
        os.close(old)


class StackTable:
    """The session's mounted stacks, by path and by stack file.

    `private`: the table is used inside the session's own mount namespace,
    where stack files are made on a tmpfs over their directory and seen by
    nobody else.  Otherwise (vupy without CAP_SYS_ADMIN) they are made in
    the directory itself, which the user must be able to write, and
    removed when the stack is."""

    def __init__(self, owner, private=True):
        self.owner = owner              # (uid, gid) of who runs the session
        self.private = private
        self.by_path = {}
        self.by_file = {}
        self.detached = []              # lazily unmounted, still in use
        self.unnamed = []
        self.shadowed = set()
        # Whether the session traps the calls of proxy descriptors: None
        # until the session starts (any stack may be mounted before).
        self.serves_proxies = None

    def lookup(self, key):
        return self.by_file.get(key)

    def name_of(self, stack):
        for mount in self.by_path.values():
            if mount.stack is stack:
                return mount.path
        for mount in self.detached:
            if mount.stack is stack:
                return f"{mount.path} (unmounted)"
        return getattr(stack, "label", None) or "stack"

    def mount(self, path, type_, source, options, modules=None):
        """Make a stack with module `type_` and create its file at `path`
        (absolute).  `options` holds the module's options and the file's
        own (mode, uid, gid).  MountError, with nothing changed, on failure."""
        mode, uid, gid, module_options = file_attributes(options, self.owner)
        if path in self.by_path:
            raise MountError(errno.EBUSY, f"{path}: a stack is mounted there already")
        directory = os.path.dirname(path)
        if not os.path.isabs(path) or not os.path.isdir(directory):
            raise MountError(errno.ENOENT, f"{path}: directory {directory} does not exist")
        if os.path.lexists(path):
            raise MountError(errno.EEXIST, f"{path}: exists (and is not a stack)")
        stack = make_stack(type_, source, module_options, modules)
        if isinstance(stack, ProxyStack) and self.serves_proxies is False:
            stack.close()
            raise MountError(errno.EOPNOTSUPP, f"{path}: {type_} is a userspace stack, and this "
                                               "session does not trap the calls its sockets need: "
                                               "start it with `vupy run --userspace`")
        mount = Mount(path, type_, source, module_options, stack)
        try:
            if self.private and directory not in self.shadowed:
                shadow(directory)
                self.shadowed.add(directory)
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, f"vupy stack {mount.spec}\n".encode())
                os.fchown(fd, uid, gid)
                os.fchmod(fd, mode)
                st = os.fstat(fd)
            finally:
                os.close(fd)
        except OSError as e:
            stack.close()
            hint = "" if self.private or e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS) else \
                " (without root, stack files go in a directory you may write, such as $XDG_RUNTIME_DIR)"
            raise MountError(e.errno, f"{path}: {e.strerror}{hint}") from None
        mount.key = (st.st_dev, st.st_ino)
        self.by_path[path] = mount
        self.by_file[mount.key] = mount
        return mount

    def unmount(self, path, users, lazy, sockets=0):
        """Remove the stack file at `path`.  `users` counts the processes
        that use the stack, `sockets` its open sockets that die with it: EBUSY
        if there is any, unless lazy, which detaches the name now and leaves
        freeing to `collect`."""
        mount = self.by_path.get(path)
        if mount is None:
            raise MountError(errno.EINVAL, f"{path}: not a mounted stack")
        if (users or sockets) and not lazy:
            what = [f"as a default by {users} process{'es' if users != 1 else ''}"] if users else []
            what += [f"by {sockets} open socket{'s' if sockets != 1 else ''}"] if sockets else []
            raise MountError(errno.EBUSY, f"{path}: in use {' and '.join(what)} "
                                          f"(vuumount -l detaches it now, frees it later)")
        users = users or sockets
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass  # removed by hand: the stack goes all the same
        del self.by_path[path]
        del self.by_file[mount.key]
        if users:
            mount.detached = True
            self.detached.append(mount)
        else:
            mount.stack.close()
        return mount

    def collect(self, users_of):
        """Free the detached stacks nobody uses any more."""
        for mount in list(self.detached):
            if not users_of(mount.stack):
                self.detached.remove(mount)
                mount.stack.close()

    def has_proxy_stacks(self):
        return any(isinstance(m.stack, ProxyStack) for m in self.by_path.values())

    def keep(self, stack):
        """Close `stack` with the table, though it has no file (`host`)."""
        self.unnamed.append(stack)

    def close(self):
        """Close every stack (once: a second call finds none)."""
        for mount in list(self.by_path.values()) + self.detached:
            mount.stack.close()
        if not self.private:
            for path in self.by_path:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
        for stack in self.unnamed:
            stack.close()
        self.by_path, self.detached, self.unnamed = {}, [], []
