# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""The notification loop: the kernel mechanics under the dispatcher.

One thread (the Python thread) takes each trapped call that needs Python,
reads what the call points to (with a NOTIF_ID_VALID check afterwards, so
that memory read from a pid that died and was reused is never acted upon),
asks the dispatcher what to do, and does it: an errno, a CONTINUE (only for
socket(2) calls left to the caller's own kernel, whose arguments are all in
registers and so cannot change under us), or a socket made on the stack and
put into the caller with ADDFD+SEND.  Which call is which comes from the one table
of trapped calls (vupy/_trapped.py); the answers are the outcomes of
vupy/_reply.py, sent by `_reply.send`; calls on descriptors go to the proxy
layer (vupy/_proxy.py).  Calls are handled inline, one at a time; none
of the work waits on another process, so no target waits behind another.
An exception while handling a call answers the caller EIO (fail closed).
The waiting and receiving are C (csrc/fastpath.c, vupy_serve), which also
serves, without coming back here, the socket(2) calls that repeat a route
this loop learnt (`_learn`; docs/architecture.md, "The fast path").  With
serving threads (C threads, one receiving per CPU vupy may run on, with
spares: `_start_servers`), they receive every call and serve those in parallel, and this thread takes
the rest from their queue; it alone touches the Python state.
"""
import errno
import os
import select
import socket
import struct
import sys
import threading
import time
import traceback

from . import _control as control
from . import _dispatch as dispatch
from . import _reply as reply
from . import _trapped as trapped
from ._abi import X86_64
from ._dispatch import c_int
from ._families import family_symbol, protocol_symbol, type_symbol
from ._native import ffi, lib
from ._paths import PATH_MAX, Resolver
from ._proxy import ProxyServer
from ._router import ROUTED_CALLS, Router
from ._reply import CONTINUE, Answer, Fail, Inject
from ._wire import CallerMemory
from .stack import KernelStack, ProxyStack

SOCKETCALL_ARGS = struct.Struct("=iii")     # socketcall(SYS_SOCKET, args): domain, type, protocol
SYS_SOCKET = 1                              # socketcall's calls (linux/net.h) ...
MULTIPLEXED = {2: "bind", 3: "connect", 11: "sendto", 16: "sendmsg", 20: "sendmmsg"}  # ... the router serves
PARKED_CHECK_MS = 50      # how often waiting proxy calls look for signals


class Supervisor:
    def __init__(self, listener, table, events, stacks, trace=None, proxies=False, routing=False,
                 servers=0):
        self.listener = listener
        self.servers = servers      # serving threads to start (csrc/fastpath.c)
        # The proxy layer parks waiting calls: the router's too.
        self.proxy = ProxyServer(listener, table, trace) if proxies or routing else None
        self.router = Router(listener, table, stacks, self.proxy, trace) if routing else None
        self.table = table
        self.events = events
        self.stacks = stacks                    # the session's StackTable
        self.paths = Resolver()
        self.trace = trace
        # Whether the fast path may repeat decisions (credentials kept exact
        # by process events, nothing to trace), until events are lost.
        self.learns = events is not None and trace is None
        self.userns = os.stat("/proc/self/ns/user").st_ino
        self.call = ffi.new("struct vupy_call *")
        self.pathbuf = ffi.new("char[]", PATH_MAX)
        self.argbuf = ffi.new("char[]", SOCKETCALL_ARGS.size)
        # Set once the session's stacks are closed: this thread lives until
        # then, since the helpers it started end with it (see _session.py).
        self.released = threading.Event()

    # The loop ---------------------------------------------------------------

    def run(self):
        """Serve calls until the last process under the filter is gone.

        The listener is closed when the loop ends, however it ends: should
        the loop ever fail, every trapped call then fails with ENOSYS rather
        than waiting forever (fail closed)."""
        try:
            self._start_servers()
            self._serve()
        except BaseException:
            traceback.print_exc(file=sys.stderr)
            sys.stderr.write("vupy: the supervisor failed: socket calls in the session "
                             "now fail with ENOSYS\n")
        finally:
            lib.vupy_servers_stop()
            os.close(self.listener)
            if self.proxy is not None:
                self.proxy.close()
            if self.router is not None:
                self.router.close()
            self.paths.close()
            self.released.wait()

    def _start_servers(self):
        """Start the serving threads (`servers` of them), if the fast path can
        serve anything: they serve what routes say how to, this thread the
        rest.  Without them, this thread receives every call."""
        if self.servers <= 0 or not self.learns:
            return
        rc = lib.vupy_servers_start(self.listener, self.events.fileno(), self.servers)
        if rc < 0:
            sys.stderr.write(f"vupy: cannot start serving threads ({os.strerror(-rc)}): "
                             "the notification thread serves alone\n")

    def _serve(self):
        poller = select.poll()      # what vupy_serve watches besides the listener
        events = {} if self.events is None else {self.events.fileno(): select.POLLIN}
        proxy = self.proxy
        table = self.table
        parked = None               # {fd: events} of the parked calls' proxies
        exits = None                # the pidfds watched, without process events
        watched = {}
        call = self.call
        next_check = 0.0            # when the parked calls are next looked at
        while True:
            if parked is None or (proxy is not None and parked.keys() != proxy.parked.keys()) \
                    or exits.keys() != table.exit_fds.keys():
                parked = {} if proxy is None else proxy.watched()
                exits = dict(table.exit_fds)
                watched = self._watch(poller, watched,
                                      {**events, **parked, **dict.fromkeys(exits, select.POLLIN)})
                fds, masks = ffi.new("int[]", list(watched)), ffi.new("short[]", list(watched.values()))
            rc = lib.vupy_serve(self.listener, next(iter(events), -1), fds, masks, len(watched),
                                PARKED_CHECK_MS if parked else -1, call)
            # Every PARKED_CHECK_MS, not after every call: expire() reads
            # each parked caller's /proc status.
            if parked and (rc == lib.VUPY_SERVE_TIMEOUT or time.monotonic() >= next_check):
                proxy.expire()
                next_check = time.monotonic() + PARKED_CHECK_MS / 1000
            if rc == lib.VUPY_SERVE_CALL:
                self.drain()
                self.handle(call)
            elif rc == lib.VUPY_SERVE_READY:
                for fd, _ in poller.poll(0):
                    if fd in exits:
                        if fd in table.exit_fds:
                            table.ended(fd)
                        continue
                    self.drain()
                    if fd in parked and fd in proxy.parked:
                        proxy.wake(fd)
            elif rc == lib.VUPY_SERVE_HANGUP:
                # The last process under the filter is gone (NOTIF_RECV
                # would now fail with ENOENT forever).
                return
            elif rc < 0:
                raise OSError(-rc, "seccomp listener: " + os.strerror(-rc))

    @staticmethod
    def _watch(poller, before, now):
        """Poll the descriptors of `now` ({fd: events}: process events,
        parked calls' proxies, pidfds) instead of those of `before`."""
        for fd in before.keys() - now.keys():
            poller.unregister(fd)
        for fd, events in now.items():
            if before.get(fd) != events:
                poller.register(fd, events)
        return now

    def drain(self):
        """Take in the process events; end the nested sessions whose vupy is
        gone; free lazily unmounted stacks whose last user is gone."""
        if self.events is not None:
            self.events.drain(self.table)
        stacks = self.stacks
        if stacks.nested:
            owners = {scope.owner: scope for scope in stacks.nested}
            for fd in select.select(list(owners), [], [], 0)[0]:
                if owners[fd] in stacks.nested:     # not ended with an enclosing one
                    stacks.end(owners[fd], self._keeps_alive)
        if stacks.detached:
            stacks.collect(self._keeps_alive)

    def _keeps_alive(self, stack):
        return control.keeps_alive(stack, self.table, self.stacks)

    def handle(self, call):
        try:
            self._handle(call)
        except Exception:
            traceback.print_exc(file=sys.stderr)
            sys.stderr.write("vupy: internal error while routing a call: the caller gets EIO\n")
            self.reply(call, Fail(errno.EIO))

    # One call ---------------------------------------------------------------

    def _handle(self, call):
        kind, name = trapped.classify(call.arch, call.nr)
        if kind == trapped.CONTROL:
            return self.control(call)
        if kind == trapped.PROXY:
            if name in ROUTED_CALLS and self.router is not None \
                    and self.router.handle(call, name, self.creds_of):
                return None
            if self.proxy is not None and trapped.abi(call.arch, call.nr) == X86_64:
                return self.proxy.handle(call, name)
            # i386 and x32 code holds no proxies (see _proxy.py).
            return self.reply(call, CONTINUE)
        if kind == trapped.EXIT:
            # Only trapped without process events: the caller's children
            # take its defaults before they are orphaned.
            known = self.table.lookup(call.pid)
            if known is not None:
                self.table.adopt(known[0])
            return self.reply(call, CONTINUE)
        if kind == trapped.CREDS:
            self.table.forget_creds(call.pid)
            return self.reply(call, CONTINUE)
        if kind == trapped.ROOT:
            lib.vupy_roots_moved()
            return self.reply(call, CONTINUE)
        if kind == trapped.SOCKETCALL and call.args[0] & 0xFFFFFFFF != SYS_SOCKET:
            # libseccomp traps i386's multiplexed forms of the calls trapped
            # by name (connect, bind, ...) as socketcall too.  Only those
            # routes serve matter; an i386 program holds no proxies.
            which = MULTIPLEXED.get(call.args[0] & 0xFFFFFFFF)
            if which is not None and self.router is not None \
                    and self.router.handle(call, which, self.creds_of, multiplexed=True):
                return None
            return self.reply(call, CONTINUE)
        parsed = self.parse(call, kind)
        if isinstance(parsed, int):
            return self.fail(call, parsed)
        request, via_memory = parsed
        known = self.table.lookup(call.pid)
        if known is None:
            if lib.vupy_notif_id_valid(self.listener, call.id) < 0:
                return      # the caller was killed, and its end already seen
            why = ("no known ancestor" if self.events is None else
                   "process events overflowed" if self.events.lost else "process events missing")
            sys.stderr.write(f"vupy: no record of process {call.pid} ({why}): EIO\n")
            return self.fail(call, errno.EIO)
        tgid, defaults = known
        target = creds = None
        if isinstance(request.path, bytes):
            raw = self.creds_of(call)
            if raw is None:
                return
            target = self.paths.resolve(call.pid, tgid, request.path, raw, defaults.scope)
            creds = dispatch.Creds.of(raw)
        decision = dispatch.decide(request, defaults, target, creds)
        if via_memory or target is not None:
            # What was read must belong to this very call: if the caller
            # died and its pid was reused, the request is gone.
            if lib.vupy_notif_id_valid(self.listener, call.id) < 0:
                return
        self.carry_out(call, tgid, defaults, request, decision, via_memory)

    def control(self, call):
        """vupy's control call (see _control.py): request in, reply out."""
        request_at, request_len, reply_at, reply_size = call.args[0:4]
        creds = self.creds_of(call)
        if creds is None:
            return
        known = self.table.lookup(call.pid)
        if known is None:
            return self.fail(call, errno.EIO)
        if request_len > control.MAX_REQUEST:
            return self.fail(call, errno.E2BIG)
        memory = CallerMemory(call.pid, known[0])
        try:
            text = memory.read(request_at, request_len)
        except OSError as e:
            return self.fail(call, e.errno)
        if lib.vupy_notif_id_valid(self.listener, call.id) < 0:
            return
        try:
            request = control.parse_request(text)
        except OSError as e:
            return self.fail(call, e.errno)
        if request["op"] in control.MANAGING and not control.may_manage(creds.euid, self.stacks.owner[0]):
            return self.fail(call, errno.EPERM)
        tgid, defaults = known
        paths = self.paths
        who = dispatch.Creds.of(creds)
        caller = control.Caller(tgid, defaults,
                                lambda path, free=False: paths.key(call.pid, tgid, os.fsencode(path),
                                                                   creds, free),
                                lambda mount: dispatch.may_read(who, mount))
        answer = control.encode(control.handle(request, self.stacks, self.table, caller))
        if len(answer) > reply_size:
            return self.fail(call, errno.ERANGE)
        self._trace_control(call, request, answer)
        reply.send(self.listener, call.id, Answer(len(answer), ((reply_at, answer),)), memory)

    def parse(self, call, kind):
        """(SocketRequest, arguments-read-from-memory) or an errno."""
        args = call.args
        abi = trapped.abi(call.arch, call.nr)
        if kind == trapped.MSOCKET:
            path = None
            if args[0]:
                n = lib.vupy_read_cstring(call.pid, args[0], self.pathbuf, PATH_MAX)
                path = -n if n < 0 else ffi.buffer(self.pathbuf, n)[:]
            return dispatch.SocketRequest(c_int(args[1]), c_int(args[2]), c_int(args[3]),
                                          msocket=True, path=path, abi=abi), path is not None
        if kind == trapped.SOCKET:
            return dispatch.SocketRequest(c_int(args[0]), c_int(args[1]), c_int(args[2]), abi=abi), False
        if kind == trapped.SOCKETCALL:
            n = lib.vupy_read_mem(call.pid, args[1] & 0xFFFFFFFF, self.argbuf, SOCKETCALL_ARGS.size)
            if n != SOCKETCALL_ARGS.size:
                return errno.EFAULT
            domain, type_, protocol = SOCKETCALL_ARGS.unpack(ffi.buffer(self.argbuf)[:])
            return dispatch.SocketRequest(domain, type_, protocol, abi=abi), True
        return errno.ENOSYS

    def creds_of(self, call):
        """The caller's credentials, from the cache or /proc (None, and the
        call answered, if they cannot be read)."""
        creds = self.table.creds.get(call.pid)
        if creds is not None:
            return creds
        creds = ffi.new("struct vupy_creds *")
        rc = lib.vupy_read_creds(call.pid, creds)
        try:
            userns = os.stat(f"/proc/{call.pid}/ns/user").st_ino
        except OSError:
            rc = rc or -errno.ESRCH
        if rc < 0:
            self.fail(call, errno.ESRCH if rc == -errno.ENOENT else self._own_error(call, -rc))
            return None
        if userns != self.userns:
            # Capabilities count only in the caller's own user namespace and
            # its children; the stacks' namespaces belong to vupy's.
            creds.cap_effective = 0
        if self.table.exact:
            self.table.creds[call.pid] = creds
        return creds

    # Carrying out a decision ---------------------------------------------------

    def carry_out(self, call, tgid, defaults, request, decision, via_memory):
        kind = type(decision)
        if kind is dispatch.Fail:
            self._trace(call, request, errno.errorcode.get(decision.errno, str(decision.errno)))
            self.fail(call, decision.errno)
        elif kind is dispatch.SetDefault:
            if decision.families is None:
                new = defaults.cleared()
            else:
                new = defaults.with_stack(decision.families, decision.stack)
            if not self.table.exact:
                self.table.adopt(tgid)          # its unknown children keep the old ones
            self.table.set(tgid, new)
            self._trace(call, request, "default " + self._name(decision.stack))
            self.reply(call, Answer())
        elif kind is dispatch.Create:
            creds = self.creds_of(call)
            if creds is None:
                return
            try:
                fd = decision.stack.socket(decision.domain, decision.type,
                                           decision.protocol, creds)
                if isinstance(decision.stack, ProxyStack):
                    self.proxy.register(fd, decision.stack, decision.domain, decision.type,
                                        decision.protocol)
                if self.router is not None and request.path is not None:
                    self.router.named_socket(fd)
            except OSError as e:
                self._trace(call, request, f"{self._name(decision.stack)}: {errno.errorcode.get(e.errno)}")
                return self.fail(call, self._own_error(call, e.errno))
            self.inject(call, request, fd, decision.cloexec, self._name(decision.stack))
            self._learn(call, tgid, request, decision, creds, defaults.scope)
        elif request.msocket or via_memory:
            # Left to the caller's own namespace, but there is no system call
            # to continue (msocket) or its arguments are in memory that may
            # change (socketcall): make the socket here, in the caller's
            # namespace, with its credentials.
            creds = self.creds_of(call)
            if creds is None:
                return
            try:
                nsfd = os.open(b"/proc/%d/ns/net" % call.pid, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as e:
                return self.fail(call, errno.ESRCH if e.errno == errno.ENOENT else self._own_error(call, e.errno))
            try:
                fd = lib.vupy_make_socket(nsfd, 0, request.domain,
                                          request.type & ~socket.SOCK_CLOEXEC,
                                          request.protocol, creds)
            finally:
                os.close(nsfd)
            if fd < 0:
                return self.fail(call, self._own_error(call, -fd))
            self.inject(call, request, fd, bool(request.type & socket.SOCK_CLOEXEC), "native")
        else:
            self._trace(call, request, "native")
            self.reply(call, CONTINUE)

    def _learn(self, call, tgid, request, decision, creds, scope):
        """Let the fast path (csrc/fastpath.c) repeat this decision for the
        thread's next socket(2) calls of the family, or msocket calls with
        a path of the same key: only where it would be the same, a kernel
        stack's plain socket(), with credentials kept exact by process
        events, and with nothing to trace (x86-64 code: never i386's
        socketcall, whose arguments are in memory).  By path, only an absolute one
        that names a mount by its own key (not through a link), and not in
        a session that routes (the router must see such sockets:
        Router.named_socket)."""
        stack = decision.stack
        if not (self.learns and not self.events.lost and request.abi == X86_64
                and isinstance(stack, KernelStack) and type(stack).socket is KernelStack.socket
                and stack.nsfd >= 0):
            return
        if request.path is None:
            lib.vupy_route_learn(call.pid, decision.domain, stack.nsfd, stack.nsino, creds)
        elif self.router is None and request.path[:1] == b"/":
            key = self.paths.key(call.pid, tgid, request.path, creds)
            mount = None if isinstance(key, int) else scope.lookup(key)
            if mount is not None and mount.stack is stack:
                lib.vupy_key_route_learn(call.pid, key[0], key[1], key[2], stack.nsfd, stack.nsino, creds)

    def inject(self, call, request, fd, cloexec, where):
        got = self.reply(call, Inject(fd, cloexec))
        self._trace(call, request, f"{where}: fd {got.value}" if type(got) is Answer
                    else f"{where}: {reply.describe(got)}")

    def reply(self, call, outcome):
        return reply.send(self.listener, call.id, outcome)

    def fail(self, call, err):
        self.reply(call, Fail(err))

    @staticmethod
    def _own_error(call, err):
        """`err`, met by vupy itself while serving `call`: if it is vupy that
        is out of descriptors, the user is told (the caller sees only the
        errno, as if it were its own)."""
        if err in (errno.EMFILE, errno.ENFILE):
            sys.stderr.write(f"vupy: out of file descriptors ({errno.errorcode[err]}) while serving "
                             f"process {call.pid}: its call fails with that errno\n")
        return err

    # Tracing ------------------------------------------------------------------

    def _name(self, stack):
        return "session default" if stack is None else self.stacks.name_of(stack)

    def _trace_control(self, call, request, reply):
        if self.trace is not None and request["op"] in control.MANAGING:
            self.trace(f"pid {call.pid}: {request['op']} {request.get('path')}: {reply.decode()}")

    def _trace(self, call, request, outcome):
        if self.trace is None:
            return
        what = "msocket" if request.msocket else "socket"
        path = ""
        if request.msocket:
            path = "NULL, " if request.path is None else f"{request.path.decode(errors='replace')!r}, "
        type_ = "SOCK_DEFAULT" if request.msocket and request.type == 0 else type_symbol(request.type)
        self.trace(f"pid {call.pid}: {what}({path}{family_symbol(request.domain)}, {type_}, "
                   f"{protocol_symbol(request.domain, request.protocol)}) -> {outcome}")
