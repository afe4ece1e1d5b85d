# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""The stack module interface: what a module author implements.

This file is the whole contract between vupy and a stack module, as VUOS's
`struct vunet_operations` is for a VUOS network module: the classes below,
one docstring per operation.  What a module may use besides (namespaces,
helper processes, capabilities) is in vupy/helpers.py; docs/modules.md
builds a module step by step against both.

A *stack* is one network stack that sockets can be made on: a kernel
network namespace, a userspace TCP/IP stack, or nothing at all.  A *module*
is a kind of stack: it turns a SOURCE string and options into a stack.

1. What a module declares.  A module is a `StackModule`: three attributes
   and `create`, and, if it cannot work on every machine, `unavailable`.

2. How it is found.  A module is an entry point in the group
   ``vupy.stacks``, named by its TYPE, in the package that ships it::

       [project.entry-points."vupy.stacks"]
       mine = "my_package:MyModule"

   vupy's own five (`netns`, `host`, `null`, `lwip`, `vde`, in modules/)
   are registered the same way, and the dispatcher has no special case for
   any of them.  A module that fails to import is listed by `vupy modules`
   with the reason, and the others work as before.

3. How a stack is made.  ``vupy run --stack PATH=mine:SOURCE,k=v,...`` and
   ``vumount -t mine -o k=v,... SOURCE PATH`` both call
   ``MyModule().create("SOURCE", {"k": "v", ...})`` (`StackModule.create`).

4. How a stack makes sockets.  A stack is a `Stack`: its `families`, and
   `socket`, called for each socket a program asks of it.  A stack that is
   a kernel network namespace needs no code of its own: `create` returns
   ``KernelStack(nsfd)``, where nsfd is an open descriptor of the namespace
   (``/proc/PID/ns/net``, a file made by ``ip netns add``, ...).  Sockets
   are then made in that namespace with the caller's credentials and handed
   to the program as real kernel sockets; `close` closes nsfd.

5. What errors become.  Every operation raises OSError with the errno the
   program must see (`Stack.socket` names the usual ones).  Any other
   exception is a bug: vupy reports it on stderr, the program gets EIO, and
   the session goes on.  The program never gets a socket of another stack
   instead.

6. How a stack is finalised.  `Stack.close` is called once, when the stack
   is unmounted and no process uses it as a default any more (see
   vuumount), or when the session ends.

7. Proxy stacks.  A stack that is not a kernel one (a userspace TCP/IP
   stack) is a `ProxyStack`.  Its `socket` returns one end of an AF_UNIX
   socketpair, the *proxy*: SOCK_STREAM for stream sockets, SOCK_SEQPACKET
   for datagram sockets.  The program reads, writes, polls and closes the
   proxy natively; the stack moves the data between the other end and its
   own socket.  Every other socket call on a proxy comes to the stack's
   operations (`bind`, `connect`, ... `sendto`), where `sock` names the
   proxy by the inode of the program's end (``os.fstat(fd).st_ino``) and
   addresses are the kernel's struct sockaddr bytes.  A proxy must also
   look like the socket where the program can see it: a stream proxy is
   not writable until its connect completes, a listening proxy has one
   byte to read for each connection waiting, and each datagram in a
   datagram proxy carries one descriptor (SCM_RIGHTS) whose content is its
   source address (a sockaddr_in or sockaddr_in6 may be followed by the
   datagram's ancillary data, cmsgs as recvmsg gives them).  An error to
   report on a datagram socket (what a kernel learns from ICMP) is a
   datagram of its own whose descriptor holds the family AF_UNSPEC (2
   bytes), 2 zero bytes and the errno (a C int): the recvfrom or recvmsg
   that meets it fails with that errno.  modules/lwip.py is the example.

All operations run on the supervisor's one thread: every trapped call of
the session waits while one runs, so none may block for long.
"""
from __future__ import annotations   # no `typing` at start-up: annotations stay text

import abc
import errno
import os
from collections.abc import Iterable

from . import _native
from ._families import KERNEL_FAMILIES

__all__ = ["StackModule", "Stack", "KernelStack", "ProxyStack", "StackError", "KERNEL_FAMILIES"]


def _fail(err):
    raise OSError(err, os.strerror(err))


class StackError(Exception):
    """A stack cannot be made: the message says why, for the user."""


class Stack(abc.ABC):
    """One stack.  A stack may leave out any operation: `socket` then
    refuses every family (EAFNOSUPPORT), and `close` has nothing to release."""

    families: frozenset[int] = frozenset()
    """The address families it serves; the dispatcher asks for no other."""

    nameservers: tuple = ()
    """Its own nameservers (ipaddress addresses; `()`: none, programs use
    the host's): name lookups of programs on the stack go to them
    (vupy/_resolver.py).  The `dns=` option of any stack sets them; the
    netns module takes a named namespace's /etc/netns/NAME/resolv.conf."""

    search: tuple = ()
    """Its own search domains (`search=`; the netns module's
    /etc/netns/NAME/resolv.conf): a name the program asks for bare, or with
    one of the host's search domains, is looked up below them too."""

    hosts: str = None
    """A hosts file of its own (a path; None: none), answered for A and
    AAAA lookups of programs on the stack (`hosts=`; the netns module's
    /etc/netns/NAME/hosts)."""

    @property
    def resolves_names(self) -> bool:
        """Whether it has name resolution of its own."""
        return bool(self.nameservers or self.hosts or self.search)

    def socket(self, domain: int, type: int, protocol: int, creds: object) -> int:
        """A new socket, as socket(2) would make it: a descriptor that vupy
        owns (it puts a copy in the program and closes its own).

        `domain` is one of `families`; `type` may have SOCK_NONBLOCK but never
        SOCK_CLOEXEC (the program's descriptor flags are the dispatcher's
        business); `creds` are the calling thread's credentials, as the
        kernel sees them when it makes a socket (`euid`, `fsuid`, `fsgid`,
        `egid`, `cap_effective`, `ngroups`, `groups`: struct vupy_creds,
        csrc/supervisor.h; capabilities only count in vupy's user
        namespace, else 0): a ProxyStack does its own permission checks
        with them (lwip: CAP_NET_RAW for SOCK_RAW).  Errors are OSErrors: EAFNOSUPPORT
        or EPROTONOSUPPORT for what the stack cannot do, EACCES or EPERM for
        what the caller may not do, ENETDOWN for a stack whose network is
        gone, any other errno to be passed on as it is."""
        _fail(errno.EAFNOSUPPORT)

    def open_sockets(self) -> int:
        """How many of its sockets programs hold that would die with the
        stack (a userspace stack's; a kernel socket outlives its stack):
        vuumount refuses (EBUSY) to close a stack with open sockets, and a
        lazily unmounted one is freed when the last is closed."""
        return 0

    def close(self) -> None:
        """Release what the stack holds (descriptors, worker processes);
        called once (point 6).  Sockets already handed to programs are
        theirs.  A `socket` call after `close` must fail, never make a
        socket elsewhere."""


class StackModule(abc.ABC):
    """A kind of stack (point 1)::

        class MyModule(StackModule):
            name = "mine"                  # the TYPE: `mine:SOURCE` in a SPEC
            description = "what it makes, in one line"   # shown by `vupy modules`
            families = KERNEL_FAMILIES     # address families its stacks serve

            def create(self, source, options):
                ...

    vupy makes a new instance for each `create`; keep no state on the class."""

    name: str | None = None
    description: str | None = None
    families: frozenset[int] = frozenset()

    @abc.abstractmethod
    def create(self, source: str, options: dict[str, str]) -> Stack:
        """A new stack.  `source` is the text after the colon of the SPEC, or
        vumount's SOURCE (empty if none; vumount's `none` is empty too);
        `options` a fresh dict of strings, without `mode`, `uid` and `gid`,
        which are the stack file's and vupy's business.

        It checks everything it can (the source exists, every option is known
        and valid) and raises StackError with a message naming the problem:
        at start vupy prints it and exits with status 2; from vumount the user
        sees it as the command's error (EINVAL).  It runs in the supervisor,
        in vupy's view of the file system, on a thread whose network
        namespace is whichever stack it last made a socket in: open
        namespaces by path."""

    @classmethod
    def unavailable(cls) -> str | None:
        """Why the module cannot make stacks on this machine (it needs a
        program, or a part of vupy built only where its libraries were), in
        one line for the user naming the fix; None if it can::

            @classmethod
            def unavailable(cls):
                if shutil.which("frobd") is None:
                    return "frobd not found on PATH (Debian package frobd)"
                return None

        `vupy modules` lists such a module as unavailable, with the reason,
        and a SPEC or vumount naming it is refused with it (ENODEV), before
        `create` is called.  It is asked each time, so it must be quick."""
        return None


class KernelStack(Stack):
    """A stack that is a kernel network namespace, given as an open descriptor.

    The stack owns the descriptor and closes it in `close`.  A class that
    does not override `socket` gets vupy's fast path (docs/architecture.md).
    """

    families = KERNEL_FAMILIES

    def __init__(self, nsfd: int):
        self.nsfd = nsfd
        self.nsino = os.fstat(nsfd).st_ino

    def socket(self, domain, type, protocol, creds):
        if self.nsfd < 0:
            # Unmounted and freed: a caller must get an error, never a
            # socket made wherever this thread happens to be.
            _fail(errno.ENETDOWN)
        fd = _native.lib.vupy_make_socket(
            self.nsfd, self.nsino, domain, type, protocol, creds
        )
        if fd < 0:
            _fail(-fd)
        return fd

    def close(self):
        if self.nsfd >= 0:
            _native.lib.vupy_route_forget_all()     # routes name the descriptor
            os.close(self.nsfd)
            self.nsfd = -1


class ProxyStack(Stack):
    """A stack that serves its sockets through proxy descriptors (point 7).

    Each operation below is the socket call of the same name on a proxy,
    `sock` being its inode.  One a stack leaves out fails with EOPNOTSUPP;
    once the stack is gone, each must fail with ENETDOWN."""

    def bind(self, sock: int, address: bytes) -> None:
        """bind(2) to `address`."""
        _fail(errno.EOPNOTSUPP)

    def connect(self, sock: int, address: bytes) -> None:
        """connect(2) to `address`.  A stream connect raises EINPROGRESS while
        it is under way, and the proxy is not writable until it completes;
        if it fails, the proxy shows end of file (or hang-up) no later than
        it turns writable.  vupy waits for writability, and asks `getsockopt`
        for SO_ERROR only if it sees end of file then."""
        _fail(errno.EOPNOTSUPP)

    def listen(self, sock: int, backlog: int) -> None:
        """listen(2).  From then on the proxy has one byte to read for each
        connection waiting to be accepted."""
        _fail(errno.EOPNOTSUPP)

    def accept(self, sock: int) -> tuple[int, bytes]:
        """accept(2): the connection's own proxy (a descriptor vupy owns, as
        from `socket`) and the peer's address; EAGAIN if none waits.  vupy
        takes the proxy's byte for it."""
        _fail(errno.EOPNOTSUPP)

    def getsockname(self, sock: int) -> bytes:
        """getsockname(2): the socket's own address."""
        _fail(errno.EOPNOTSUPP)

    def getpeername(self, sock: int) -> bytes:
        """getpeername(2): the connected peer's address (ENOTCONN if none)."""
        _fail(errno.EOPNOTSUPP)

    def getsockopt(self, sock: int, level: int, name: int, size: int) -> bytes:
        """getsockopt(2): the option's value, at most `size` bytes."""
        _fail(errno.EOPNOTSUPP)

    def setsockopt(self, sock: int, level: int, name: int, value: bytes) -> None:
        """setsockopt(2) to `value`."""
        _fail(errno.EOPNOTSUPP)

    def sendto(self, sock: int, data: bytes, flags: int, address: bytes) -> int:
        """sendto(2) of one datagram (a stream's data goes down the proxy,
        not here) to `address`, or to the connected peer if it is empty:
        how many bytes were sent."""
        _fail(errno.EOPNOTSUPP)

    def closed(self) -> Iterable[int]:
        """The socks whose last descriptor the programs closed since the last
        call (vupy forgets them)."""
        return ()

    def links(self) -> list:
        """Its interfaces, as vupy.rtnetlink.Link objects, for
        if_nametoindex and if_indextoname (vupy.rtnetlink also serves
        NETLINK_ROUTE sockets from them)."""
        return []
