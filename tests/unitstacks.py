# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""Stacks for the unit tests (tests/test_unit_*.py): a module whose stacks
count what is done to them, registered without an entry point, and keys
that stand for what vupy/_paths.py would resolve."""
import errno
import os
import socket

from vupy.stack import ProxyStack, Stack, StackModule

OWNER = (1000, 100)


class Counted:
    """A stack whose sockets all fail; `sockets` is what open_sockets says,
    `closes` counts the calls of close."""

    def __init__(self):
        self.sockets = 0
        self.closes = 0

    def socket(self, domain, type, protocol, creds):
        raise OSError(errno.EAFNOSUPPORT, os.strerror(errno.EAFNOSUPPORT))

    def open_sockets(self):
        return self.sockets

    def close(self):
        self.closes += 1


class CountedStack(Counted, Stack):
    families = frozenset({socket.AF_INET, socket.AF_INET6})


class CountedModule(StackModule):
    name = "counted"
    description = "test: a stack that counts its closes"
    families = CountedStack.families

    def create(self, source, options):
        return CountedStack()


class UserspaceStack(Counted, ProxyStack):
    families = frozenset({socket.AF_INET})


class UserspaceModule(StackModule):
    name = "userspace"
    description = "test: a proxy stack"
    families = UserspaceStack.families
    made = []

    def create(self, source, options):
        stack = UserspaceStack()
        self.made.append(stack)
        return stack


class Entry:
    """What importlib.metadata's entry point gives: load() -> the class."""

    def __init__(self, cls):
        self.cls = cls

    def load(self):
        return self.cls


MODULES = {"counted": Entry(CountedModule), "userspace": Entry(UserspaceModule)}


def key(path):
    """The key of a stack named `path` (any path names a free place)."""
    directory, _, name = path.rpartition("/")
    return (0, hash(directory), name.encode())


def caller_key(path, free=False):
    """Caller.key of vupy/_control.py for a caller that sees `/missing/*`
    as nothing and `/exists/*` as files on disk."""
    if path.startswith("/missing/"):
        return errno.ENOENT
    if free and path.startswith("/exists/"):
        return errno.EEXIST
    return key(path)


def pidfd():
    """A nested scope's owner: a pidfd of this process (the table closes it)."""
    return os.pidfd_open(os.getpid())
