# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""The stack module interface: what a module author implements.

This file is all of vupy a module author needs to read; docs/modules.md
builds a module step by step against it.

A *stack* is one network stack that sockets can be made on: a kernel
network namespace, a userspace TCP/IP stack, or nothing at all.  A *module*
is a kind of stack: it turns a SOURCE string and options into a stack.

1. What a module declares.  A module is a class with three attributes and
   one method::

       class MyModule(StackModule):
           name = "mine"                        # the TYPE: `mine:SOURCE` in a SPEC
           description = "what it makes, in one line"   # shown by `vupy modules`
           families = KERNEL_FAMILIES           # address families it can serve

           def create(self, source, options):   # -> Stack
               ...

   A module that cannot work on every machine (it needs a program, or a
   part of vupy that was built only where its libraries were) also says
   when it cannot, and why, with a class method::

           @classmethod
           def unavailable(cls):                # -> None, or why not
               if shutil.which("frobd") is None:
                   return "frobd not found on PATH (Debian package frobd)"
               return None

   The reason is one line for the user, naming the fix.  `vupy modules`
   lists such a module as unavailable, with the reason, and a SPEC or
   vumount naming it is refused with it (ENODEV), before `create` is
   called.  It is asked each time, so it must be quick; StackModule's
   answers None.

2. How it is found.  A module is an entry point in the group
   ``vupy.stacks``, named by its TYPE, in the package that ships it::

       [project.entry-points."vupy.stacks"]
       mine = "my_package:MyModule"

   vupy's own (`netns`, `host`, `null`, in modules/) are registered the same
   way, and the dispatcher has no special case for any of them.  A module
   that fails to import is listed by `vupy modules` with the reason, and the
   others work as before.

3. How a stack is made.  ``vupy run --stack PATH=mine:SOURCE,k=v,...`` and
   ``vumount -t mine -o k=v,... SOURCE PATH`` both call
   ``MyModule().create("SOURCE", {"k": "v", ...})``: SOURCE is the text after
   the colon (empty if none; vumount's `none` is empty too), options a fresh
   dict of strings, without `mode`, `uid` and `gid`, which are the stack
   file's and are vupy's business.  `create` runs in the supervisor: it
   checks everything it can (the source exists, every option is known and
   valid) and raises `StackError` with a message naming the problem.  At
   start vupy prints it and exits with status 2; from vumount the user sees
   it as the command's error (EINVAL).  It must not block for long: calls of
   the whole session wait while it runs.

4. How a stack makes sockets.  A stack is an object with ``families`` and
   two methods::

       class MyStack(Stack):
           families = ...
           def socket(self, domain, type, protocol, creds):   # -> fd
               ...
           def close(self):
               ...

   `socket` is called for each socket a program asks of the stack, with a
   family from ``families`` (the dispatcher never asks for another), the
   type with SOCK_NONBLOCK but never SOCK_CLOEXEC (the program's descriptor
   flags are the dispatcher's business), and the caller's credentials (an
   opaque object that `KernelStack` knows how to use).  It returns a
   descriptor that vupy owns: vupy puts a copy in the program and closes
   its own.

5. What errors become.  `socket` raises OSError with the errno the program
   must see: EAFNOSUPPORT or EPROTONOSUPPORT for what the stack cannot do,
   EACCES or EPERM for what the caller may not do, ENETDOWN for a stack
   whose network is gone.  Any other exception is a bug: vupy reports it on
   stderr, the program gets EIO, and the session goes on.  The program never
   gets a socket of another stack instead.

6. How a stack is finalised.  `close` is called once, when the stack is
   unmounted and no process uses it as a default any more (see vuumount), or
   when the session ends.  It releases what the stack holds (descriptors,
   worker processes).  Sockets already handed to programs are theirs.

7. Proxy stacks.  A stack that is not a kernel one (a userspace TCP/IP
   stack) subclasses ``ProxyStack``.  Its `socket` returns one end of an
   AF_UNIX socketpair, the *proxy*: SOCK_STREAM for stream sockets,
   SOCK_SEQPACKET for datagram sockets.  The program reads, writes, polls
   and closes the proxy natively; the stack moves the data between the
   other end and its own socket.  Every other socket call on a proxy comes
   to the stack's methods below, where `sock` names the proxy by the inode
   of the program's end (``os.fstat(fd).st_ino``) and addresses are the
   kernel's struct sockaddr bytes::

       bind(sock, address)          connect(sock, address)
       listen(sock, backlog)        accept(sock) -> (fd, peer address)
       getsockname(sock) -> bytes   getpeername(sock) -> bytes
       getsockopt(sock, level, name, size) -> bytes
       setsockopt(sock, level, name, value)
       sendto(sock, data, flags, address) -> bytes sent
       closed() -> the socks whose last descriptor the programs closed
                   since the last call (vupy forgets them)
       open_sockets() -> how many are open: vuumount refuses (EBUSY) to
                   close a stack with open sockets, and a lazily unmounted
                   one is freed when the last is closed
       links() -> its interfaces, as vupy.rtnetlink.Link objects (for
                  if_nametoindex and if_indextoname; vupy.rtnetlink also
                  serves NETLINK_ROUTE sockets from them)

   Each raises OSError with the errno the program must see; ENETDOWN once
   the stack is gone.  A proxy must also look like the socket where the
   program can see it: a stream proxy is not writable until its connect
   completes (`connect` raises EINPROGRESS while it is under way: vupy
   waits for writability and then asks SO_ERROR), a listening proxy has one
   byte to read for each connection waiting (`accept` hands over the
   connection's own proxy; vupy takes the byte; EAGAIN if none waits), and
   each datagram in a datagram proxy carries one descriptor (SCM_RIGHTS)
   whose content is its source address.  modules/lwip.py is the example.

8. Helper processes.  A module that needs a process of its own (a worker, a
   plug, even a short-lived `ip`) starts it with ``start_helper(argv,
   **popen_kwargs)``, which returns its subprocess.Popen: the helper is put
   in a session of its own, out of the terminal's and COMMAND's reach, and
   starts with no signal blocked.  ``end_helper`` ends one.

A vupy without root cannot enter namespaces it did not make as root;
``HeldStack(spec)`` is a fresh namespace for it, inside a user namespace of
its own, whose sockets a helper process makes (``netns:new`` uses it).

A stack backed by a kernel network namespace needs no code beyond `create`:
return ``KernelStack(nsfd)``, where nsfd is an open descriptor of the
namespace (``/proc/PID/ns/net``, a file made by ``ip netns add``, ...).
Sockets are then made in that namespace with the caller's credentials and
handed to the program as real kernel sockets; `close` closes nsfd.
"""
import contextlib
import errno
import fcntl
import os
import select
import socket
import struct
import subprocess
import sys

from . import _native
from ._families import KERNEL_FAMILIES
from ._procs import status

__all__ = ["StackModule", "Stack", "KernelStack", "ProxyStack", "HeldStack", "StackError",
           "KERNEL_FAMILIES", "open_netns", "is_netns", "network_namespace", "capable", "CAP_SYS_ADMIN",
           "start_helper", "end_helper"]


class StackError(Exception):
    """A stack cannot be made: the message says why, for the user."""


class StackModule:
    """A kind of stack.  Subclasses set the three attributes and `create`."""

    name = None
    description = None
    families = frozenset()

    def create(self, source, options):
        raise NotImplementedError

    @classmethod
    def unavailable(cls):
        """Why the module cannot make stacks on this machine, or None (point 1)."""
        return None


class Stack:
    """One stack.  `families` is the set of address families it serves."""

    families = frozenset()

    def socket(self, domain, type, protocol, creds):
        raise OSError(errno.EAFNOSUPPORT, os.strerror(errno.EAFNOSUPPORT))

    def open_sockets(self):
        """How many of its sockets programs hold that would die with the
        stack (a userspace stack's; a kernel socket outlives its stack)."""
        return 0

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
        if self.nsfd < 0:
            # Unmounted and freed: a caller must get an error, never a
            # socket made wherever this thread happens to be.
            raise OSError(errno.ENETDOWN, os.strerror(errno.ENETDOWN))
        fd = _native.lib.vupy_make_socket(
            self.nsfd, self.nsino, domain, type, protocol, creds
        )
        if fd < 0:
            raise OSError(-fd, os.strerror(-fd))
        return fd

    def close(self):
        if self.nsfd >= 0:
            _native.lib.vupy_route_forget_all()     # routes name the descriptor
            os.close(self.nsfd)
            self.nsfd = -1


class ProxyStack(Stack):
    """A stack that serves its sockets through proxy descriptors (point 7)."""

    def _unsupported(self, *args):
        raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))

    bind = connect = listen = accept = getsockname = getpeername = _unsupported
    getsockopt = setsockopt = sendto = _unsupported

    def closed(self):
        return ()

    def links(self):
        return []


class HeldStack(Stack):
    """A kernel stack for a vupy without root: a network namespace in a user
    namespace of its own, held by a process that makes the stack's sockets
    (vupy/_nsholder.py).  `close` ends the process and so the namespaces."""

    families = KERNEL_FAMILIES

    def __init__(self, spec):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")])))
        try:
            self.process = start_helper([sys.executable, "-m", "vupy._nsholder", str(theirs.fileno())],
                                        pass_fds=[theirs.fileno()], env=env)
        finally:
            theirs.close()
        self.channel = ours
        ready = select.select([ours], [], [], HOLDER_SECONDS)[0] and ours.recv(4096)
        if not ready or struct.unpack_from("=i", ready)[0] != 0:
            self.close()
            why = ready[4:].decode(errors="replace") if ready else "no answer"
            raise StackError(f"{spec}: cannot make a network namespace in a user namespace: {why}")

    def socket(self, domain, type, protocol, creds):
        if self.channel is None:
            raise OSError(errno.ENETDOWN, os.strerror(errno.ENETDOWN))
        self.channel.send(struct.pack("=iii", domain, type, protocol))
        reply, fds, _flags, _addr = socket.recv_fds(self.channel, 4, 1)
        err = struct.unpack("=i", reply)[0] if len(reply) == 4 else errno.ENETDOWN
        if err:
            raise OSError(err, os.strerror(err))
        return fds[0]

    def close(self):
        if self.channel is not None:
            self.channel.close()        # the holder exits when it sees this
            self.channel = None
            end_helper(self.process, HOLDER_SECONDS)


HOLDER_SECONDS = 10


def start_helper(argv, **popen_kwargs):
    """Start a module's helper process, argv, and return its subprocess.Popen
    (`popen_kwargs` as for Popen; standard input is /dev/null unless given).

    Every process a module starts goes through here, because of two things
    it must not inherit from vupy:

    * vupy's session and process group, which are COMMAND's.  There the
      terminal's ^C, ^\\, ^Z and hangup, and any kill(2) of COMMAND's process
      group, would reach the helper too, and a stack would die under a
      program that caught the signal.  So the helper is made the leader of a
      session of its own (setsid(2)): it has no controlling terminal and
      belongs to no process group of the session; vupy alone ends it.
    * vupy's signal mask.  vupy blocks the signals it waits for from its
      start (cli.main), and a mask survives fork(2) and execve(2), so a
      helper would start with SIGTERM blocked, say.  coreutils' `env
      --default-signal` unblocks every signal and sets its default action
      before it executes argv (Popen has no way to set the child's mask)."""
    popen_kwargs.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.Popen(["env", "--default-signal", *argv], start_new_session=True, **popen_kwargs)


def end_helper(process, seconds, terminate=False):
    """Wait for a module's helper process (a subprocess.Popen) to end, after
    SIGTERM if `terminate`; SIGKILL it if it is still there after `seconds`."""
    if terminate and process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def capable(cap):
    """Whether vupy has capability `cap` (a CAP_* number) in effect."""
    effective = (status("self", b"CapEff") or {}).get(b"CapEff", b"0")
    return bool(int(effective, 16) >> cap & 1)


CAP_SYS_ADMIN = 21


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


@contextlib.contextmanager
def network_namespace(nsfd=None):
    """Run the block with this thread in network namespace `nsfd` (an open
    descriptor), or in a new one if None; then bring it back.  Sockets made
    and processes forked in the block belong to that namespace.  (setns(2)
    and unshare(2) move only the calling thread.)"""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        rc = (_native.lib.vupy_unshare(CLONE_NEWNET) if nsfd is None
              else _native.lib.vupy_setns(nsfd, CLONE_NEWNET))
        if rc < 0:
            raise OSError(-rc, os.strerror(-rc))
        try:
            yield
        finally:
            if _native.lib.vupy_setns(home, CLONE_NEWNET) < 0:
                raise SystemExit("vupy: cannot return to the original network namespace")
    finally:
        os.close(home)


NS_GET_NSTYPE = 0xB703  # ioctl(2) on an nsfs descriptor: its CLONE_NEW* type
CLONE_NEWNET = 0x40000000


def is_netns(fd):
    """Whether an open descriptor is a network namespace."""
    try:
        return fcntl.ioctl(fd, NS_GET_NSTYPE) == CLONE_NEWNET
    except OSError:
        return False
