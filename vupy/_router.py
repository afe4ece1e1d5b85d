# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""Routes at connect: each socket made on a default goes to the stack its
destination calls for.

A session started with `--route` traps connect (the filter's
VUPY_TRAP_ROUTE_CALLS).  For a connect on an AF_INET or AF_INET6 TCP or
UDP socket of a process that has routes (vupy/routes.py), the router reads
the destination once, checks that the notification is still valid, and
chooses the stack with routes.choose; no route means the process's default
stack for the family, where its sockets are made.  Then:

* If no route of the process could send anywhere else, the call goes on
  (CONTINUE): whatever address the kernel then reads, the stack is right.
* If the socket stays, vupy connects it on the caller's behalf, on its own
  copy of the descriptor (pidfd_getfd), with the address it checked: no
  thread of the program can change the destination between the check and
  the use.  A blocking socket is made non-blocking for the instant of that
  connect (the flag is the open file's, shared with the program), then
  the call waits, parked (vupy/_proxy.py), until the socket is writable.
* If it moves, vupy makes a socket of the same family, type and protocol
  on the other stack (with the caller's credentials), carries over the
  options that differ from a fresh socket's on the old stack and the local
  binding if there was one, connects it with the checked address, and puts
  it in place of the caller's descriptor, same number, same close-on-exec
  flag, same O_NONBLOCK (SECCOMP_ADDFD_FLAG_SETFD, as dup2 would).  A
  non-blocking connect returns EINPROGRESS as the kernel's does; a
  blocking one is parked until the new socket is connected, and the
  caller's descriptor is replaced only if it succeeds.

Fail closed: an option that cannot be carried over (SO_BINDTODEVICE, a
socket filter, IP options, or any option the other stack refuses or sets
differently), O_ASYNC, or a route to or from a userspace stack fails the
connect (EOPNOTSUPP or the stack's errno), named in the trace; a socket
never connects on a stack other than the one its route names.

Sockets the program made on a stack it named (msocket with a path) are
never routed: the router remembers their inodes (`named`).
"""
import errno
import fcntl
import ipaddress
import os
import select
import socket
import stat
import struct
import threading
import time

from . import routes as routing
from ._dispatch import c_int, default_stack
from ._native import ffi, lib
from ._reply import CONTINUE, Answer, Fail, Park
from . import _trapped as trapped
from ._carry import INT, KIND, SIOCGSKNS, CannotMove, Carrier, sockaddr, sockcall
from ._abi import X86_64
from ._proxy import ProxyCall, connected
from ._resolver import DNS_PORT, Resolver
from ._span import SpanNamespace
from ._wire import CallerMemory, read_address, send_addresses
from .helpers import own_creds, resolv_conf
from .stack import KernelStack, ProxyStack

ROUTED_FAMILIES = (socket.AF_INET, socket.AF_INET6)
ROUTED_PROTOCOLS = (socket.IPPROTO_TCP, socket.IPPROTO_UDP)
SENDS = ("sendto", "sendmsg", "sendmmsg")
ROUTED_CALLS = ("connect", "bind") + SENDS
# socketcall(SYS_CONNECT, ..., args): the call's arguments, as i386 has them
SOCKETCALL_ARGS = {"connect": struct.Struct("=III"), "bind": struct.Struct("=III"),
                   "sendto": struct.Struct("=6I"), "sendmsg": struct.Struct("=III"),
                   "sendmmsg": struct.Struct("=4I")}
NAMED_PURGE = 1024          # remembered named sockets before the dead are purged
LEARNT_SECONDS = 5          # the least time a name route's answer routes its addresses

def destination(address):
    """(ip_address, port) of a sockaddr_in or sockaddr_in6, else None."""
    if len(address) < 2:
        return None
    family = struct.unpack_from("=H", address)[0]
    if family == socket.AF_INET and len(address) >= 8:
        return ipaddress.IPv4Address(address[4:8]), struct.unpack_from("!H", address, 2)[0]
    if family == socket.AF_INET6 and len(address) >= 24:
        return ipaddress.IPv6Address(address[8:24]), struct.unpack_from("!H", address, 2)[0]
    return None


def show(where):
    """An (ip_address, port) as a trace shows it."""
    if where is None:
        return "?"
    ip, port = where
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


def fd_flags(tid, fd):
    """The `flags:` of /proc/TID/fdinfo/FD: the open file's status flags
    and O_CLOEXEC for the descriptor."""
    info = os.open(f"/proc/{tid}/fdinfo/{fd}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        text = os.read(info, 4096)
    finally:
        os.close(info)
    for line in text.splitlines():
        if line.startswith(b"flags:"):
            return int(line.split()[1], 8)
    raise OSError(errno.EBADF, "no flags in fdinfo")


def _getsockopt(fd, level, name, size):
    with socket.socket(fileno=fd) as s:
        try:
            return s.getsockopt(level, name, size)
        finally:
            s.detach()


def _address_of(fd, kind, peer=False):
    """getsockname() of our socket `fd` of `kind` (family, type, protocol),
    with no probing of what it is; getpeername() if `peer` (None if it has
    no peer)."""
    s = socket.socket(*kind, fileno=fd)
    try:
        return s.getpeername() if peer else s.getsockname()
    except OSError as e:
        if peer and e.errno == errno.ENOTCONN:
            return None
        raise
    finally:
        s.detach()


def _binding(family, local):
    """The sockaddr a socket bound to `local` (getsockname()'s) binds to
    anew on another stack; None if it was not bound."""
    return sockaddr(family, local) if local[1] or local[0] not in ("0.0.0.0", "::") else None


def _netns(fd):
    """The network namespace inode of socket `fd` (0 if the kernel will not say)."""
    try:
        ns = fcntl.ioctl(fd, SIOCGSKNS)
    except OSError:
        return 0
    try:
        return os.fstat(ns).st_ino
    finally:
        os.close(ns)


class Router:
    """The router of a session: see the module's text."""

    def __init__(self, listener, table, stacks, server, trace=None):
        self.listener = listener
        self.table = table
        self.stacks = stacks
        self.server = server                # vupy/_proxy.ProxyServer: parks, proxies, answers
        self.trace = trace
        self.named = set()                  # inodes of sockets made on a named stack
        self.named_limit = NAMED_PURGE
        self.carrier = Carrier()            # what a moved socket takes with it
        self.stack_netns = {}               # stack -> its sockets' netns (see _netns_of)
        self.resolvers = {}                 # (stack, name routes) -> its Resolver, made when first asked
        self.learnt = {}                    # name route -> {address: until (monotonic)}
        self.learnt_lock = threading.Lock()
        self.resolvers_lock = threading.Lock()  # the span namespace's thread asks for resolvers too
        self.span = None                    # the SpanNamespace (vupy/_span.py), made when first needed
        # Whom programs ask for names: glibc's default without a nameserver line
        servers, self.host_search = resolv_conf()
        self.host_servers = servers or (ipaddress.ip_address("127.0.0.1"),)

    # What the supervisor tells it ------------------------------------------

    def named_socket(self, fd):
        """`fd` (ours) was made on a stack the program named: never routed."""
        self.named.add(os.fstat(fd).st_ino)
        if len(self.named) > self.named_limit:
            self.named &= self._live_sockets()
            self.named_limit = max(NAMED_PURGE, 2 * len(self.named))

    def _live_sockets(self):
        live = set()
        for tgid in list(self.table.defaults):
            try:
                names = os.listdir(f"/proc/{tgid}/fd")
            except OSError:
                continue
            for name in names:
                try:
                    st = os.stat(f"/proc/{tgid}/fd/{name}")
                except OSError:
                    continue
                if stat.S_ISSOCK(st.st_mode):
                    live.add(st.st_ino)
        return live

    # One connect or bind ---------------------------------------------------------

    def handle(self, raw, name, creds_of, multiplexed=False):
        """Serve a trapped connect, bind or send with addresses (`name`, one
        of ROUTED_CALLS) if the router has something to do with it (True),
        or leave it to the proxy layer (False).  `creds_of(raw)` gives the
        caller's credentials (None: the call is answered already).
        `multiplexed`: i386's socketcall(SYS_CONNECT, SYS_BIND, ..., args),
        its arguments in memory."""
        known = self.table.lookup(raw.pid)
        if known is None:
            return False
        tgid, defaults = known
        if name != "bind" and not defaults.routes() and not self.stacks.resolves():
            return False
        memory = CallerMemory(raw.pid, tgid)
        args = raw.args
        if multiplexed:
            try:
                layout = SOCKETCALL_ARGS[name]
                args = layout.unpack(memory.read(raw.args[1] & 0xFFFFFFFF, layout.size))
            except OSError as e:
                self._answer(raw, name, args, Fail(e.errno), "")
                return True
        fd = c_int(args[0])
        try:
            st = os.stat(f"/proc/{raw.pid}/fd/{fd}")
        except OSError:
            return False                    # the kernel says EBADF
        if not stat.S_ISSOCK(st.st_mode) or st.st_ino in self.named:
            return False
        proxy = self.server.registry.proxies.get(st.st_ino)
        if proxy is not None:
            if name != "connect" or proxy.family not in ROUTED_FAMILIES \
                    or proxy.protocol not in ROUTED_PROTOCOLS:
                return False
            address = self._checked_address(raw, name, args, memory)
            if address is not None:
                self._proxy_connect(raw, args, address, defaults.routes(), proxy)
            return True
        addresses = None
        if name in SENDS:
            try:
                addresses = send_addresses(name, args, memory, multiplexed
                                           or trapped.abi(raw.arch, raw.nr) != X86_64)
            except OSError as e:
                self._answer(raw, name, args, Fail(e.errno), "")
                return True
            if not addresses:
                return False
        try:
            copy = memory.copy_fd(fd)
        except OSError:
            return False
        try:            # our copy is ours to close: a call parked waits on a dup of it
            values = KIND.read(copy)
            if any(values[i] is None for i in range(KIND.n)):
                return False
            kind = tuple(INT.unpack(values[i])[0] for i in range(KIND.n))
            if kind[0] not in ROUTED_FAMILIES or kind[2] not in ROUTED_PROTOCOLS:
                return False
            if addresses is not None:
                if kind[2] != socket.IPPROTO_UDP:
                    return False
                self._send(raw, name, args, addresses, defaults, copy, kind, creds_of)
                return True
            address = self._checked_address(raw, name, args, memory)
            if address is not None:
                serve = self._kernel_connect if name == "connect" else self._kernel_bind
                serve(raw, args, address, defaults, copy, kind, creds_of, multiplexed)
        finally:
            os.close(copy)
        return True

    def _checked_address(self, raw, name, args, memory):
        """The call's address, read once; None if it is answered already (it
        cannot be read: its errno) or the notification went stale meanwhile
        (the caller is gone)."""
        try:
            address = read_address(memory, args[1], args[2])
        except OSError as e:
            self._answer(raw, name, args, Fail(e.errno), "")
            return None
        if lib.vupy_notif_id_valid(self.listener, raw.id) < 0:
            return None
        return address

    def _proxy_connect(self, raw, args, address, routes, proxy):
        """A userspace stack's socket: served by the proxy layer with the
        checked address, unless a route sends it elsewhere (not done yet:
        EOPNOTSUPP)."""
        where = destination(address)
        route = where and routing.choose(routes, proxy.protocol, *where)
        if route is not None and route.stack is not proxy.stack:
            self._answer(raw, "connect", args, Fail(errno.EOPNOTSUPP),
                         f"{show(where)}: route {route.rule.text}={route.where}: a userspace "
                         "stack's socket cannot move to another stack")
        else:
            self.server.handle(raw, "connect", address)

    def _target(self, where, protocol, family, here, defaults, creds):
        """(the stack a connection or datagram to `where` goes to, the trace
        note, its resolver or None): the route's stack, else the process's
        default for the family, where its sockets are made (None: the
        caller's own namespace); a name lookup on a stack with name
        resolution of its own goes to its resolver's namespace instead.
        OSError if that resolver cannot be made."""
        routes = defaults.routes()
        route = self._learnt(routes, where) or (where and routing.choose(routes, protocol, *where))
        note = f"{show(where)}: " + (f"route {route.rule.text}={route.where}" if route else "no route")
        # No route: the process's default stack for the family (a UDP socket
        # a route moved goes back there).
        to = route.stack if route is not None else default_stack(family, defaults)
        try:
            with self.resolvers_lock:
                resolver = self._resolver_for(where, to, here, family, defaults, creds)
        except OSError as e:
            raise OSError(e.errno, f"{note}: its stack's resolver: {e}") from None
        if resolver is not None:
            return resolver.private, f"{note}: the name resolution of {self.stacks.name_of(resolver.stack)}", \
                resolver
        return to, note, None

    def _elsewhere(self, routes, here, creds):
        """Whether any of `routes` leads away from namespace `here`."""
        return any(isinstance(r.stack, ProxyStack) or self._netns_of(r.stack, creds) != here for r in routes)

    def _kernel_connect(self, raw, args, address, defaults, copy, kind, creds_of, multiplexed):
        routes, fd = defaults.routes(), c_int(args[0])
        family, _type, protocol = kind
        where = destination(address)
        here = _netns(copy)
        creds = creds_of(raw)
        if creds is None:
            return None
        try:
            to, note, resolver = self._target(where, protocol, family, here, defaults, creds)
        except OSError as e:
            return self._answer(raw, "connect", args, Fail(e.errno), e.strerror)
        if isinstance(to, ProxyStack) and trapped.abi(raw.arch, raw.nr) != X86_64:
            return self._answer(raw, "connect", args, Fail(errno.EOPNOTSUPP),
                                f"{note}: a userspace stack serves x86-64 code only")
        try:
            stays = to is None or not isinstance(to, ProxyStack) and self._netns_of(to, creds) == here
            anywhere_else = self._elsewhere(routes, here, creds)
            # the open file's status flags, ours as the caller's; a move needs
            # the descriptor's close-on-exec flag too, from fdinfo
            flags = fcntl.fcntl(copy, fcntl.F_GETFL) if stays else fd_flags(raw.pid, fd)
        except OSError as e:
            return self._answer(raw, "connect", args, Fail(e.errno), f"{note}: {os.strerror(e.errno)}")
        if stays and not anywhere_else and not multiplexed:   # (socketcall's arguments may change)
            return self._answer(raw, "connect", args, CONTINUE, f"{note}: stays")
        if stays:
            return self._answer(raw, "connect", args, self._connect_here(copy, address, flags), f"{note}: stays")
        move = self._move_to_proxy if isinstance(to, ProxyStack) else self._move
        try:
            outcome = move(raw, copy, fd, kind, here, address, to, flags, creds,
                           self._stack_at(here, family, defaults, creds))
            note += f": moved to {self.stacks.name_of(to)}" if resolver is None else ""
        except CannotMove as e:
            outcome, note = Fail(e.errno), f"{note}: cannot move: {e}"
        return self._answer(raw, "connect", args, outcome, note)

    def _send(self, raw, name, args, addresses, defaults, copy, kind, creds_of):
        """Datagrams with destination `addresses` from a UDP socket (our
        `copy`): if a route sends one to a stack other than the socket's,
        the socket spans stacks (vupy/_span.py) and the call goes on from
        its new socket, routed datagram by datagram; else the call goes on
        from where it is."""
        here = _netns(copy)
        if self.span is not None and here == self.span_netns:
            return self._answer(raw, name, args, CONTINUE, "")      # spanning already
        creds = creds_of(raw)
        if creds is None:
            return None
        try:
            chosen = [self._target(destination(a), socket.IPPROTO_UDP, kind[0], here, defaults, creds)[:2]
                      for a in addresses]
            away = [(to, note) for to, note in chosen
                    if to is not None and (isinstance(to, ProxyStack) or self._netns_of(to, creds) != here)]
        except OSError as e:
            return self._answer(raw, name, args, Fail(e.errno), e.strerror)
        if not away:
            return self._answer(raw, name, args, CONTINUE, f"{chosen[0][1]}: stays")
        to, note = away[0]
        if isinstance(to, ProxyStack):
            return self._answer(raw, name, args, Fail(errno.EOPNOTSUPP),
                                f"{note}: datagrams are not relayed to a userspace stack")
        fd = c_int(args[0])
        try:
            flags = fd_flags(raw.pid, fd)
            changed, local = self._movable(copy, kind, here, flags, creds,
                                           self._stack_at(here, kind[0], defaults, creds))
            new = self._span_namespace().adopt(copy, kind, here, local, _address_of(copy, kind, peer=True),
                                               changed, creds, defaults)
        except CannotMove as e:
            return self._answer(raw, name, args, Fail(e.errno), f"{note}: cannot span stacks: {e}")
        except OSError as e:
            return self._answer(raw, name, args, Fail(e.errno), f"{note}: cannot span stacks: {e.strerror}")
        try:
            outcome = self._replace(raw, new, fd, flags)
        finally:
            os.close(new)
        return self._answer(raw, name, args, CONTINUE if type(outcome) is Answer else outcome,
                            f"{note}: the socket spans stacks from now on, each datagram to its own")

    def _span_namespace(self):
        if self.span is None:
            self.span = SpanNamespace(self._span_choice, self.carrier, self.trace)
            self.span_netns = self._netns_of(self.span.private, own_creds())
        return self.span

    def _span_choice(self, span, where):
        """(stack, its netns, the trace note) for a datagram of spanning
        socket `span` to `where` (SpanNamespace's `choose`)."""
        to, note, _resolver = self._target(where, socket.IPPROTO_UDP, span.family, span.home, span.defaults,
                                           span.creds)
        if to is None:
            return None, span.home, note
        if isinstance(to, ProxyStack):
            raise OSError(errno.EOPNOTSUPP, f"{note}: not relayed to a userspace stack")
        return to, self._netns_of(to, span.creds), note

    def _kernel_bind(self, raw, args, address, defaults, copy, kind, creds_of, multiplexed):
        """bind to an address that only one other stack of the session has:
        the socket moves there (item 4 of routes).  Else the bind is the
        kernel's, made by vupy with the checked address for socketcall's."""
        where = destination(address)
        here = _netns(copy)
        note, owners = show(where), []
        if where is not None and not (where[0].is_unspecified or where[0].is_loopback
                                      or where[0].is_multicast):
            creds = creds_of(raw)
            if creds is None:
                return None
            owners = self._stacks_with(address, kind[0], defaults, creds)
        if len(owners) != 1 or owners[0][1] == here:
            if not multiplexed:
                return self._answer(raw, "bind", args, CONTINUE, "")
            rc = sockcall(lib.VUPY_SOCKCALL_BIND, copy, address)
            return self._answer(raw, "bind", args, Fail(-rc) if rc < 0 else Answer(), "")
        stack, fd = owners[0][0], c_int(args[0])
        try:
            flags = fd_flags(raw.pid, fd)
            new = self._rebuild(copy, kind, here, stack, flags, creds,
                                self._stack_at(here, kind[0], defaults, creds), bound=False)
        except CannotMove as e:
            return self._answer(raw, "bind", args, Fail(e.errno), f"{note}: cannot move: {e}")
        except OSError as e:
            return self._answer(raw, "bind", args, Fail(e.errno), f"{note}: {e.strerror}")
        try:
            rc = sockcall(lib.VUPY_SOCKCALL_BIND, new, address, creds)
            outcome = Fail(-rc) if rc < 0 else self._replace(raw, new, fd, flags)
        finally:
            os.close(new)
        return self._answer(raw, "bind", args, outcome,
                            f"{note}: only on {self.stacks.name_of(stack)}: moved there")

    def _stacks_with(self, address, family, defaults, creds):
        """[(stack, its netns)] of the session's kernel stacks that have the
        local address of sockaddr `address` (a socket of each binds to it),
        one per namespace."""
        found, seen = [], set()
        probe_address = address[:2] + b"\0\0" + address[4:]     # port 0
        for stack in [default_stack(family, defaults)] + [m.stack for m in self.stacks.mounts()]:
            if stack is None or isinstance(stack, ProxyStack) or family not in stack.families:
                continue
            try:
                netns = self._netns_of(stack, creds)
                if netns in seen:
                    continue
                seen.add(netns)
                probe = stack.socket(family, socket.SOCK_DGRAM, 0, creds)
            except OSError:
                continue
            try:
                if sockcall(lib.VUPY_SOCKCALL_BIND, probe, probe_address) == 0:
                    found.append((stack, netns))
            finally:
                os.close(probe)
        return found

    def _resolver_for(self, where, to, here, family, defaults, creds):
        """The Resolver (vupy/_resolver.py) a connect to `where` must go to:
        a name lookup (port 53 of a host nameserver) on a stack (`to`, or
        the one the socket is on) with name resolution of its own, or of a
        process with name routes; else None.  One per stack and set of
        name routes, made when first needed."""
        if where is None or where[1] != DNS_PORT or where[0] not in self.host_servers:
            return None
        names = tuple(r for r in defaults.routes() if r.rule.name is not None)
        stack = to if to is not None else self._stack_at(here, family, defaults, creds)
        if stack is None or isinstance(stack, ProxyStack) or not (stack.resolves_names or names):
            return None
        resolver = self.resolvers.get((stack, names))
        if resolver is None:
            resolver = self.resolvers[stack, names] = Resolver(stack, self.host_servers, self.host_search,
                                                               own_creds(), names, self._learn)
        return resolver

    def _learn(self, route, found):
        """A name route's lookup answered `found` ([(address, TTL)], from a
        forwarder's thread): connections to those addresses take the route
        until the TTL runs out (LEARNT_SECONDS at least: the connect that
        follows a lookup uses its answer, whatever its TTL)."""
        now = time.monotonic()
        with self.learnt_lock:
            table = self.learnt.setdefault(route, {})
            for address in [a for a, until in table.items() if until <= now]:
                del table[address]              # what ran out goes, as new answers come
            for address, ttl in found:
                table[address] = max(table.get(address, 0), now + max(ttl, LEARNT_SECONDS))

    def _learnt(self, routes, where):
        """The last of `routes` with a name rule whose lookups gave `where`'s
        address, still within its TTL; None if there is none."""
        if where is None:
            return None
        address, now, found = getattr(where[0], "ipv4_mapped", None) or where[0], time.monotonic(), None
        with self.learnt_lock:
            for route in routes:
                if route.rule.name is not None and self.learnt.get(route, {}).get(address, 0) > now:
                    found = route
        return found

    def close(self):
        if self.span is not None:
            self.span.close()
        for resolver in self.resolvers.values():
            resolver.close()
        self.resolvers.clear()

    def _netns_of(self, stack, creds):
        """The network namespace inode of `stack`'s sockets (learnt once,
        from a socket it makes, for stacks that are not a KernelStack);
        OSError if it makes none (ENETDOWN: it is gone)."""
        if isinstance(stack, KernelStack) and stack.nsfd >= 0:
            return stack.nsino
        inode = self.stack_netns.get(stack)
        if inode is None:
            family = socket.AF_INET if socket.AF_INET in stack.families else socket.AF_INET6
            probe = stack.socket(family, socket.SOCK_DGRAM, 0, creds)
            try:
                inode = self.stack_netns[stack] = _netns(probe)
            finally:
                os.close(probe)
        return inode

    def _connect_here(self, copy, address, flags):
        """Connect the caller's own socket (our `copy`, which stays ours) to
        `address`."""
        blocking = not flags & os.O_NONBLOCK
        if blocking:
            os.set_blocking(copy, False)
        try:
            rc = sockcall(lib.VUPY_SOCKCALL_CONNECT, copy, address)
        finally:
            if blocking:
                os.set_blocking(copy, True)
        if rc == 0:
            return Answer()
        if blocking and -rc in (errno.EINPROGRESS, errno.EALREADY):
            return Park(os.dup(copy), select.POLLOUT, _so_error)
        return Fail(-rc)

    def _movable(self, copy, kind, here, flags, creds, old_stack):
        """What our `copy` of the caller's socket takes with it to another
        stack: the options to carry (Carrier.changed), and its local
        address (getsockname()'s; see _binding); CannotMove if it cannot
        move."""
        if flags & os.O_ASYNC:
            raise CannotMove(errno.EOPNOTSUPP, "O_ASYNC")
        return self.carrier.changed(copy, kind, here, creds, old_stack), _address_of(copy, kind)

    def _rebuild(self, copy, kind, here, stack, flags, creds, old_stack, bound=True):
        """A socket like our `copy` of the caller's, made anew on `stack`
        (non-blocking): its options carried over and, if `bound`, its local
        address; CannotMove (or the stack's OSError) if it cannot be."""
        family, type_, protocol = kind
        changed, local = self._movable(copy, kind, here, flags, creds, old_stack)
        local = _binding(family, local)
        new = stack.socket(family, type_ | socket.SOCK_NONBLOCK, protocol, creds)
        try:
            self.carrier.give(changed, new, creds)
            if bound and local is not None:
                rc = sockcall(lib.VUPY_SOCKCALL_BIND, new, local, creds)
                if rc < 0:
                    raise CannotMove(-rc, f"bind to {show(destination(local))}: {os.strerror(-rc)}")
        except BaseException:
            os.close(new)
            raise
        return new

    def _move(self, raw, copy, fd, kind, here, address, stack, flags, creds, old_stack):
        """Make the socket anew on `stack`, connect it, and put it in place
        of the caller's `fd` (now, or once connected if the caller waits)."""
        new = self._rebuild(copy, kind, here, stack, flags, creds, old_stack)
        try:
            rc = sockcall(lib.VUPY_SOCKCALL_CONNECT, new, address, creds)
        except BaseException:
            os.close(new)
            raise
        if rc < 0 and -rc != errno.EINPROGRESS:
            os.close(new)
            return Fail(-rc)
        return self._finish(raw, new, fd, flags, rc < 0, _so_error)

    def _finish(self, raw, new, fd, flags, pending, outcome_of):
        """Put our `new` in place of the caller's `fd`: now if its connect is
        done or the caller does not wait (EINPROGRESS then, as a kernel
        socket's), else once writable and `outcome_of(new)` says it is
        connected (the proxy layer parks the call, and closes `new` once
        it is answered)."""
        if flags & os.O_NONBLOCK or not pending:
            try:
                outcome = self._replace(raw, new, fd, flags)
            finally:
                os.close(new)
            return outcome if not pending or type(outcome) is Fail else Fail(errno.EINPROGRESS)

        def resume(sock):
            outcome = outcome_of(sock)
            return self._replace(raw, sock, fd, flags) if type(outcome) is Answer else outcome

        # SO_SNDTIMEO ran out: EINPROGRESS, and the socket, still connecting,
        # is the caller's, as a kernel socket's connect goes on
        return Park(new, select.POLLOUT, resume, lambda sock: self._replace(raw, sock, fd, flags))

    def _move_to_proxy(self, raw, copy, fd, kind, here, address, stack, flags, creds, old_stack):
        """_move for a userspace stack: the new socket is a proxy, its
        options and binding given through the stack's operations, and a
        blocking connect waits as the proxy layer's does."""
        family, type_, protocol = kind
        changed, local = self._movable(copy, kind, here, flags, creds, old_stack)
        local = _binding(family, local)
        new = stack.socket(family, type_ | socket.SOCK_NONBLOCK, protocol, creds)
        try:
            self.server.register(new, stack, family, type_, protocol)
            proxy = self.server.registry.proxies[os.fstat(new).st_ino]
            self.carrier.give_proxy(changed, stack, proxy.sock)
            if local is not None:
                stack.bind(proxy.sock, local)
            try:
                stack.connect(proxy.sock, address)
                pending = False
            except OSError as e:
                if e.errno != errno.EINPROGRESS:
                    os.close(new)
                    return Fail(e.errno)
                pending = True
        except BaseException:
            os.close(new)
            raise
        return self._finish(raw, new, fd, flags, pending, lambda sock: connected(proxy, sock))

    def _replace(self, raw, new, fd, flags):
        """Our `new` in place of the caller's `fd`, with its O_NONBLOCK and
        close-on-exec flag (`flags`: fd_flags's, where O_CLOEXEC is the
        descriptor's)."""
        os.set_blocking(new, not flags & os.O_NONBLOCK)
        rc = lib.vupy_replace_fd(self.listener, raw.id, new, fd, flags & os.O_CLOEXEC)
        return Answer() if rc >= 0 else Fail(-rc)

    def _stack_at(self, here, family, defaults, creds):
        """The stack whose sockets are in namespace `here`: the caller's
        default for `family` (where its sockets are made), else a mounted
        stack; None if none is (a socket of the caller's own namespace)."""
        candidates = [default_stack(family, defaults)] + [m.stack for m in self.stacks.mounts()]
        for stack in candidates:
            if stack is not None and not isinstance(stack, ProxyStack) and family in stack.families:
                try:
                    if self._netns_of(stack, creds) == here:
                        return stack
                except OSError:
                    continue
        return None

    def _answer(self, raw, name, args, outcome, note):
        """Carry out `outcome` (parked or sent) of call `name` through the
        proxy layer, which traces it; the routing decision traced first."""
        if self.trace is not None and note:
            self.trace(f"pid {raw.pid}: {name}(fd {c_int(args[0])}) route: {note}")
        known = self.table.lookup(raw.pid)
        self.server.carry_out(ProxyCall(raw.id, raw.pid, known[0] if known else raw.pid, name,
                                        args), None, outcome)


def _so_error(sock):
    err = INT.unpack(_getsockopt(sock, socket.SOL_SOCKET, socket.SO_ERROR, 4))[0]
    return Fail(err) if err else Answer()
