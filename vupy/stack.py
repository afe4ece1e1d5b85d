"""The stack module interface: what a module author implements.

A *stack* is one network stack that sockets can be made on: a kernel
network namespace, a userspace TCP/IP stack, or nothing at all.  A *module*
is a kind of stack: it turns a SOURCE string and options into a stack.

A module is a class with three attributes and one method::

    class MyModule(StackModule):
        name = "mine"                          # the word before ':' in a SPEC
        description = "what the module makes, in one line"
        families = KERNEL_FAMILIES             # address families it can serve

        def create(self, source, options):     # -> Stack
            ...

`vupy run --stack PATH=mine:SOURCE,key=value,...` calls
``MyModule().create("SOURCE", {"key": "value", ...})`` once, before the
session starts.  `create` checks everything it can (the source exists, the
options make sense) and raises `StackError` with a message naming the
problem; vupy prints it and refuses to start (exit status 2).

A stack is an object with ``families`` and two methods::

    class MyStack(Stack):
        def socket(self, domain, type, protocol, creds):   # -> fd
            ...
        def close(self):
            ...

`socket` is called for each socket a program asks of the stack, with a
family from ``families`` (the dispatcher never asks for another), the type
with SOCK_NONBLOCK but never SOCK_CLOEXEC (the program's descriptor flags
are the dispatcher's business), and the caller's credentials (an opaque
object that `KernelStack` knows how to use).  It returns a descriptor that
vupy owns: vupy puts a copy in the program and closes its own.  It raises
OSError with the errno the program must see (EAFNOSUPPORT, EPROTONOSUPPORT,
EACCES, ...); any other exception is a bug, reported on stderr, and the
program gets EIO.  `close` releases the stack when the session ends.

A stack backed by a kernel network namespace needs no code at all: return
``KernelStack(nsfd)`` from `create`, where nsfd is an open descriptor of the
namespace (``/proc/PID/ns/net``, a file made by ``ip netns add``, ...).
Sockets are then made in that namespace with the caller's credentials and
handed to the program as real kernel sockets.

Modules are found through the entry-point group ``vupy.stacks``; vupy's own
(`netns`, `host`, `null`) are registered the same way, and the dispatcher
knows nothing special about any of them.
"""
import errno
import fcntl
import os

from . import _native
from ._families import KERNEL_FAMILIES

__all__ = ["StackModule", "Stack", "KernelStack", "StackError", "KERNEL_FAMILIES"]


class StackError(Exception):
    """A stack cannot be made: the message says why, for the user."""


class StackModule:
    """A kind of stack.  Subclasses set the three attributes and `create`."""

    name = None
    description = None
    families = frozenset()

    def create(self, source, options):
        raise NotImplementedError


class Stack:
    """One stack.  `families` is the set of address families it serves."""

    families = frozenset()

    def socket(self, domain, type, protocol, creds):
        raise OSError(errno.EAFNOSUPPORT, os.strerror(errno.EAFNOSUPPORT))

    def close(self):
        pass


class KernelStack(Stack):
    """A stack that is a kernel network namespace, given as an open descriptor.

    The stack owns the descriptor and closes it in `close`.
    """

    families = KERNEL_FAMILIES

    def __init__(self, nsfd):
        self.nsfd = nsfd
        self.nsino = os.fstat(nsfd).st_ino

    def socket(self, domain, type, protocol, creds):
        fd = _native.lib.vupy_make_socket(
            self.nsfd, self.nsino, domain, type, protocol, creds
        )
        if fd < 0:
            raise OSError(-fd, os.strerror(-fd))
        return fd

    def close(self):
        if self.nsfd >= 0:
            os.close(self.nsfd)
            self.nsfd = -1


def open_netns(path):
    """Open a network-namespace file; StackError if it is not one."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise StackError(f"{path}: {e.strerror}") from None
    if not is_netns(fd):
        os.close(fd)
        raise StackError(f"{path}: not a network namespace")
    return fd


NS_GET_NSTYPE = 0xB703  # ioctl(2) on an nsfs descriptor: its CLONE_NEW* type
CLONE_NEWNET = 0x40000000


def is_netns(fd):
    """Whether an open descriptor is a network namespace."""
    try:
        return fcntl.ioctl(fd, NS_GET_NSTYPE) == CLONE_NEWNET
    except OSError:
        return False
