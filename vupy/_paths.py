# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""Stack paths, resolved as the caller would resolve them.

A stack is a name that no directory holds (see vupy/_stacks.py), so the
supervisor, not the kernel, resolves the path a program gives to msocket(2),
vumount or vuumount.  Theory of operation, for a PATH from thread TID of
process TGID:

1. A PATH that begins with /proc/self or /proc/thread-self names the
   caller, not vupy, which is the process that will look at it.
2. The walk starts from a descriptor of the caller's root (absolute PATH)
   or cwd (relative), not from a "/proc/TID/root/..." string, so a PATH of
   up to PATH_MAX bytes stays within PATH_MAX.
3. The directory part is looked at with the caller's credentials: a stat of
   "DIR/.", so that the kernel checks search permission on every directory
   of PATH, DIR itself included (looking a name up in DIR needs it), for the
   caller.  Its errors (ENOENT, ENOTDIR, EACCES, ELOOP) are the caller's.
4. (device, inode of DIR, NAME) is the stack's *key*: a stack that the
   caller's scope sees under that key is the answer, whatever the disk
   holds at PATH.
5. Otherwise PATH is what is on disk: a symbolic link is followed (from DIR,
   or from the caller's root for an absolute target), at most MAX_SYMLINKS
   times, as the kernel would (so a link to a stack's path names the
   stack); a network-namespace file is a stack too (`netns:FILE` without a
   mount, kept for the session); anything else is not a stack (None); and
   nothing at all is ENOENT.

A PATH whose last component is empty, "." or ".." names a directory, never
a stack: it goes straight to step 5.
"""
import errno
import os
import stat

from ._dispatch import Target
from ._native import ffi, lib
from .helpers import is_netns
from .stack import KernelStack

PATH_MAX = 4096
MAX_SYMLINKS = 40        # the kernel's MAXSYMLINKS: one more is ELOOP


def _proc_self(path, tid, tgid):
    """/proc/self and /proc/thread-self would name vupy: name the caller."""
    for link, real in ((b"/proc/self", b"/proc/%d" % tgid),
                       (b"/proc/thread-self", b"/proc/%d/task/%d" % (tgid, tid))):
        if path == link or path.startswith(link + b"/"):
            return real + path[len(link):]
    return path


def _split(path):
    """(directory part, name) of a path, the directory as a path relative to
    the walk's start (root or cwd): b"/a/b" -> (b"a", b"b"), b"b" -> (b".", b"b")."""
    head, _, name = path.rpartition(b"/")
    return (head.lstrip(b"/") or b"."), name


class Resolver:
    """Resolves stack paths for the supervisor (see the module docstring).
    Owns the stacks made for namespace files, closed with it."""

    def __init__(self):
        self.nsfs_dev = os.stat("/proc/self/ns/net").st_dev
        self.namespaces = {}            # nsfs inode -> KernelStack
        self.st = ffi.new("struct vupy_stat *")

    def _stat(self, base, path, creds, nofollow=False):
        """0 and self.st filled, or an errno."""
        return -lib.vupy_stat_as(base, path, nofollow, creds, self.st)

    @staticmethod
    def _start(tid, tgid, path):
        """(descriptor of where the walk of `path` starts, path relative to
        it) or an errno."""
        absolute = path[:1] == b"/"
        if absolute:
            path = _proc_self(path, tid, tgid)
        try:
            base = os.open(b"/proc/%d/%s" % (tid, b"root" if absolute else b"cwd"),
                           os.O_PATH | os.O_CLOEXEC)
        except OSError:
            return errno.ESRCH
        return base, (path.lstrip(b"/") or b".") if absolute else path

    def _key(self, base, relative, creds):
        """The key (dev, ino of the directory, name) of a relative path whose
        last component can name a stack, None if it cannot, or an errno."""
        directory, name = _split(relative)
        if name in (b"", b".", b".."):
            return None
        err = self._stat(base, directory + b"/.", creds)
        return err or (self.st.dev, self.st.ino, name)

    def key(self, tid, tgid, path, creds, free=False):
        """The key a stack named `path` has (vumount, vuumount), or an errno:
        EINVAL for a path that cannot name a stack (its last component is
        empty, "." or ".."); with `free` (for mounting one there), EEXIST if
        something is on disk at `path` (msocket would no longer reach it)."""
        start = self._start(tid, tgid, path)
        if isinstance(start, int):
            return start
        base, relative = start
        try:
            key = self._key(base, relative, creds)
            if key is None:
                return errno.EINVAL
            if isinstance(key, int) or not free:
                return key
            err = self._stat(base, relative, creds, nofollow=True)
            return errno.EEXIST if not err else key if err == errno.ENOENT else err
        finally:
            os.close(base)

    def resolve(self, tid, tgid, path, creds, scope):
        """A Target, None (not a stack) or an errno, for msocket's `path`."""
        if not path:
            return errno.ENOENT
        found = self._walk(tid, tgid, path, creds, scope)
        if found[1] and found[0] == errno.ENOENT:
            # A symbolic link that leads nowhere as text may still lead
            # somewhere for the kernel: /proc's magic links (/proc/PID/ns/net
            # reads "net:[4026531840]") are followed to the object itself.
            return self._walk(tid, tgid, path, creds, None)[0]
        return found[0]

    def _walk(self, tid, tgid, path, creds, scope):
        """(what `path` is, whether a link was followed), following symbolic
        links ourselves (so that a link to a stack's name reaches the stack)
        unless `scope` is None."""
        for hops in range(MAX_SYMLINKS + 1):
            start = self._start(tid, tgid, path)
            if isinstance(start, int):
                return start, hops
            base, relative = start
            try:
                found = self._step(base, relative, creds, scope)
            finally:
                os.close(base)
            if not isinstance(found, bytes):
                return found, hops
            # A symbolic link: its target, from the link's directory.
            head = path.rpartition(b"/")[0]
            path = found if found[:1] == b"/" or b"/" not in path else head + b"/" + found
            if len(path) >= PATH_MAX:
                return errno.ENAMETOOLONG, hops
        return errno.ELOOP, MAX_SYMLINKS

    def _step(self, base, relative, creds, scope):
        """Steps 3 to 5 for one path: a Target, None, an errno, or the bytes
        of a symbolic link's target to go on with.  With `scope` None, no
        names: the kernel's view of the path, links followed by it."""
        key = None if scope is None else self._key(base, relative, creds)
        if isinstance(key, int):
            return key
        if key is not None:
            mount = scope.lookup(key)
            if mount is not None:
                return Target(mount.stack, mount.uid, mount.gid, mount.mode)
            err = self._stat(base, relative, creds, nofollow=True)
            if err:
                return err
            if stat.S_ISLNK(self.st.mode):
                directory = _split(relative)[0]
                fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=base)
                try:
                    return os.readlink(key[2], dir_fd=fd)
                except OSError as e:
                    return e.errno
                finally:
                    os.close(fd)
        err = self._stat(base, relative, creds)
        if err:
            return err
        st = self.st
        if st.dev != self.nsfs_dev or not stat.S_ISREG(st.mode):
            return None
        stack = self.namespaces.get(st.ino)
        if stack is None:
            try:
                fd = os.open(relative, os.O_RDONLY | os.O_CLOEXEC, dir_fd=base)
            except OSError as e:
                return e.errno
            if not is_netns(fd):
                os.close(fd)
                return None
            # Kept for the session: a process may make it its default.
            stack = self.namespaces[st.ino] = KernelStack(fd)
        return Target(stack, st.uid, st.gid, st.mode, namespace_file=True)

    def close(self):
        for stack in self.namespaces.values():
            stack.close()
        self.namespaces = {}
