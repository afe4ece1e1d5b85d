# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""What a stack module may use besides the contract (vupy/stack.py).

None of it is needed to write a module: these are the pieces vupy's own
modules share, for a module that starts processes or works with kernel
network namespaces.

Helper processes.  A module that needs a process of its own (a worker, a
plug, even a short-lived `ip`) starts it with `start_helper` and ends it
with `end_helper`, never with subprocess or os.fork directly: see
`start_helper` for what the helper must not inherit from vupy.

Network namespaces.  `open_netns` opens a namespace file for
``KernelStack(nsfd)``, `is_netns` tells whether a descriptor is one,
`network_namespace` runs a block in another (or a new) one, `loopback_up`
brings up a new one's `lo`, and `host_namespace` is the one vupy was
started in: the `host` stack, and the
session's default.  A vupy without root may not enter namespaces it did not
make as root, nor make one: `capable(CAP_SYS_ADMIN)` tells, and
`UserNamespaceStack` is a fresh namespace for such a vupy, inside a user
namespace of its own, whose sockets a helper makes (`netns:new` and `vde`
use it without root).
"""
import contextlib
import errno
import fcntl
import os
import select
import socket
import ipaddress
import struct
import subprocess
import sys
import threading

from . import _native
from ._abi import CAP_SYS_ADMIN
from ._procs import status
from .stack import KERNEL_FAMILIES, KernelStack, Stack, StackError

__all__ = ["start_helper", "end_helper", "open_netns", "is_netns", "network_namespace", "host_namespace",
           "loopback_up", "UserNamespaceStack", "capable", "CAP_SYS_ADMIN"]

NS_GET_NSTYPE = 0xB703  # ioctl(2) on an nsfs descriptor: its CLONE_NEW* type
CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


# Helper processes -------------------------------------------------------------

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


# Capabilities -----------------------------------------------------------------

def capable(cap):
    """Whether vupy has capability `cap` (a CAP_* number) in effect."""
    effective = (status("self", b"CapEff") or {}).get(b"CapEff", b"0")
    return bool(int(effective, 16) >> cap & 1)


# Network namespaces -----------------------------------------------------------

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


def is_netns(fd):
    """Whether an open descriptor is a network namespace."""
    try:
        return fcntl.ioctl(fd, NS_GET_NSTYPE) == CLONE_NEWNET
    except OSError:
        return False


def host_namespace():
    """A new descriptor of the network namespace vupy was started in."""
    # /proc/self is vupy's main thread, which never leaves that namespace
    # (the supervisor thread, which may run this for vumount, moves between
    # stacks' namespaces).
    return os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)


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


def new_network_namespace():
    """A descriptor of a new network namespace with `lo` up (needs
    CAP_SYS_ADMIN); OSError if it cannot be made."""
    with network_namespace():
        fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        loopback_up()
    return fd


def private_namespace(what):
    """A kernel stack of a new network namespace of vupy's own, with `lo`
    up: a KernelStack as root, else a UserNamespaceStack (`what` names it
    in errors).  OSError if it cannot be made, with or without root (its
    users, the router's resolver and span namespaces, fail the call they
    serve with its errno: ENETDOWN where the namespace holder failed)."""
    if capable(CAP_SYS_ADMIN):
        return KernelStack(new_network_namespace())
    try:
        return UserNamespaceStack(what)
    except StackError as e:
        raise OSError(errno.ENETDOWN, str(e)) from None


def own_creds():
    """vupy's own credentials, for the sockets it makes for itself (those
    of the resolver and span namespaces)."""
    creds = _native.ffi.new("struct vupy_creds *")
    _native.lib.vupy_read_creds(os.getpid(), creds)
    return creds


RESOLV_CONF = "/etc/resolv.conf"


def resolv_conf(path=RESOLV_CONF):
    """(the nameserver addresses, ipaddress objects in order; the search
    domains, from the last `search` or `domain` line as the C library takes
    it, lower case and without a final dot) of a resolv.conf, read once;
    ((), ()) if it cannot be read."""
    servers, search = [], ()
    try:
        with open(path) as f:
            for line in f:
                words = line.split()
                if len(words) < 2:
                    continue
                if words[0] == "nameserver":
                    try:
                        servers.append(ipaddress.ip_address(words[1].split("%")[0]))
                    except ValueError:
                        pass
                elif words[0] in ("search", "domain"):
                    search = tuple(w.lower().rstrip(".") for w in words[1:] if w.rstrip("."))
    except OSError:
        return (), ()
    return tuple(servers), search


def loopback_up():
    """Bring up `lo` of this thread's network namespace (a new namespace has
    it down)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = struct.unpack_from("16sH", fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack("16sH14x", b"lo", 0)))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


HOLDER_SECONDS = 10     # for the holder to make its namespaces, or to exit
ANSWER_SECONDS = 5      # for a socket from the holder, which answers at once
HOLDER_REQUEST = struct.Struct("=iii")  # the holder's protocol: see vupy/_nsholder.py
HOLDER_REPLY = struct.Struct("=i")


class UserNamespaceStack(Stack):
    """A kernel stack for a vupy without root: a network namespace in a user
    namespace of its own, held by a helper process that makes the stack's
    sockets (vupy/_nsholder.py).  `close` ends the process and so the
    namespaces.  `spec` names the stack in errors.

    A holder that does not answer in ANSWER_SECONDS (stopped, stuck) would
    hold up every trapped call of the session: the stack is then down, its
    holder ended, and this call and the later ones get ENETDOWN."""

    families = KERNEL_FAMILIES

    def __init__(self, spec):
        self.spec = spec
        self.lock = threading.Lock()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")])))
        try:
            # -P: not the working directory first on sys.path, where a
            # `vupy` directory (another checkout) would be imported instead.
            self.process = start_helper([sys.executable, "-P", "-m", "vupy._nsholder", str(theirs.fileno())],
                                        pass_fds=[theirs.fileno()], env=env)
        finally:
            theirs.close()
        self.channel = ours
        ready = select.select([ours], [], [], HOLDER_SECONDS)[0] and ours.recv(4096)
        if not ready or HOLDER_REPLY.unpack_from(ready)[0] != 0:
            self.close()
            why = ready[HOLDER_REPLY.size:].decode(errors="replace") if ready else "no answer"
            raise StackError(f"{spec}: cannot make a network namespace in a user namespace: {why}")

    def socket(self, domain, type, protocol, creds):
        with self.lock:     # one request at a time (vupy/_resolver.py asks from threads of its own)
            return self._socket(domain, type, protocol)

    def _socket(self, domain, type, protocol):
        if self.channel is None:
            raise OSError(errno.ENETDOWN, os.strerror(errno.ENETDOWN))
        reply, fds, why = b"", [], "is gone"
        try:
            self.channel.send(HOLDER_REQUEST.pack(domain, type, protocol))
            if select.select([self.channel], [], [], ANSWER_SECONDS)[0]:
                reply, fds, _flags, _addr = socket.recv_fds(self.channel, HOLDER_REPLY.size, 1)
            else:
                why = f"(pid {self.process.pid}) did not answer in {ANSWER_SECONDS} s"
        except OSError as e:
            why = f"is gone ({e.strerror})"
        if len(reply) != HOLDER_REPLY.size:
            self._down(why)
        err = HOLDER_REPLY.unpack(reply)[0]
        if err:
            raise OSError(err, os.strerror(err))
        return fds[0]

    def _down(self, why):
        # The holder is killed, not left to answer late: a late reply would
        # be taken as the answer to the next request.
        sys.stderr.write(f"vupy: {self.spec}: the namespace holder {why}: the stack is down, "
                         "its sockets fail with ENETDOWN\n")
        self.channel.close()
        self.channel = None
        end_helper(self.process, 0, terminate=True)
        raise OSError(errno.ENETDOWN, os.strerror(errno.ENETDOWN))

    def close(self):
        if self.channel is not None:
            self.channel.close()        # the holder exits when it sees this
            self.channel = None
            end_helper(self.process, HOLDER_SECONDS)
