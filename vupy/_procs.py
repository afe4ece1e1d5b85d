# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""The session's processes and their default stacks.

Defaults are per process, copied to a child when it is forked and kept
across execve.  To make the copy at the moment of the fork (and not when the
child first opens a socket, by which time the parent may have changed its
own), vupy listens to the kernel's process-event connector
(NETLINK_CONNECTOR, CN_IDX_PROC): the kernel queues a fork event before the
child runs, so by draining the queue before handling any trapped call the
supervisor sees every fork that happened before that call.  A daemon that
double-forks thus keeps the defaults of the process that started it, even
though its parent is gone by the time it opens a socket.

The same events keep the supervisor's cache of each thread's credentials
honest: the kernel reports an exec and every change of uid or gid (fs ids
included); the changes it does not report (capset, setgroups, unshare,
setns) are trapped by the filter instead.

Pids are never trusted across time: a fork event for a pid replaces whatever
was known about that pid.
"""
import errno
import os
import select
import socket
import struct

from ._native import lib

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
PROC_EVENT_FORK = 0x00000001
PROC_EVENT_EXEC = 0x00000002
PROC_EVENT_UID = 0x00000004
PROC_EVENT_GID = 0x00000040
PROC_EVENT_EXIT = 0x80000000
CREDS_EVENTS = (PROC_EVENT_EXEC, PROC_EVENT_UID, PROC_EVENT_GID)
NLMSG_HDR = struct.Struct("=IHHII")           # len, type, flags, seq, pid
CN_MSG = struct.Struct("=IIIIHH")             # idx, val, seq, ack, len, flags
EVENT_HDR = struct.Struct("=IIQ")             # what, cpu, timestamp_ns
FORK_EVENT = struct.Struct("=IIII")           # parent pid, tgid, child pid, tgid
PID_EVENT = struct.Struct("=II")              # pid, tgid (exit, exec, uid, gid)
EVENT_DATA = NLMSG_HDR.size + CN_MSG.size + EVENT_HDR.size


def _subscribe():
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC,
                         NETLINK_CONNECTOR)
    try:
        # Every fork on the machine comes through here: a deep buffer, so
        # that a burst elsewhere does not overflow it.  Without CAP_NET_ADMIN
        # there is none (an unprivileged user may subscribe since Linux 6.6,
        # but gets rmem_max, 208 KiB by default, which a burst of a few
        # hundred forks fills): then no events at all, rather than events
        # that lose forks (see ProcessTable).
        sock.setsockopt(socket.SOL_SOCKET, 33, 32 << 20)  # SO_RCVBUFFORCE
        sock.bind((0, CN_IDX_PROC))
        op = struct.pack("=I", PROC_CN_MCAST_LISTEN)
        cn = CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(op), 0) + op
        sock.send(NLMSG_HDR.pack(NLMSG_HDR.size + len(cn), 3, 0, 0, 0) + cn)
    except OSError:
        sock.close()
        raise
    return sock


class ProcessEvents:
    """A non-blocking subscription to fork and exit events."""

    def __init__(self):
        self.sock = _subscribe()
        self.sock.setblocking(False)
        self.buf = bytearray(65536)
        self.lost = False
        # Checking for events costs a poll(2), far less than the exception
        # recv() raises on an empty non-blocking socket.
        self.pending = select.poll()
        self.pending.register(self.sock.fileno(), select.POLLIN)

    def fileno(self):
        return self.sock.fileno()

    def drain(self, table):
        """Apply every queued event to `table`.  The fast path's serving
        threads do not serve from the routes meanwhile (csrc/fastpath.c):
        a call that one of them saw no event waiting for is served either
        before the events are read or after they have undone what they
        undo; one that saw events waiting is served after a drain (this),
        or by Python."""
        if not self.pending.poll(0):
            return
        lib.vupy_routes_hold()
        try:
            self._apply(table)
        finally:
            lib.vupy_events_taken()
            lib.vupy_routes_release()

    def _apply(self, table):
        buf = self.buf
        while True:
            try:
                n = self.sock.recv_into(buf)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    self.lost = True
                    lib.vupy_route_forget_all()     # and learns no more
                    continue
                raise
            offset = 0
            while offset + EVENT_DATA <= n:
                length = NLMSG_HDR.unpack_from(buf, offset)[0]
                what = EVENT_HDR.unpack_from(buf, offset + NLMSG_HDR.size + CN_MSG.size)[0]
                data = offset + EVENT_DATA
                if what == PROC_EVENT_FORK:
                    table.forked(*FORK_EVENT.unpack_from(buf, data))
                elif what == PROC_EVENT_EXIT:
                    table.exited(*PID_EVENT.unpack_from(buf, data))
                elif what in CREDS_EVENTS:
                    table.forget_creds(PID_EVENT.unpack_from(buf, data)[0])
                offset += (length + 3) & ~3
                if length == 0:
                    break

    def close(self):
        self.sock.close()


class ProcessTable:
    """tgid -> Defaults, tid -> tgid for the threads of known processes, and
    tid -> credentials for the threads whose credentials are known.

    With the process-events connector (`exact`), forks and exits come as
    events.  Without it (an unprivileged vupy may not subscribe), the table
    keeps defaults exact another way: a process vupy has not seen yet takes
    the defaults of its nearest known ancestor at its first trapped call,
    and before a known process changes a default or exits (which would
    orphan its children) every unknown descendant is given the process's
    current defaults (`adopt`).  The end of a known process is seen on a
    pidfd of it (`exit_fds`).  Credentials are then read afresh each time
    (no uid/gid events would say when to forget them)."""

    def __init__(self, exact=True):
        self.exact = exact
        self.defaults = {}
        self.threads = {}
        self.creds = {}
        self.exit_fds = {}              # without events: pidfd -> tgid

    def add(self, tgid, defaults):
        self.defaults[tgid] = defaults
        self.threads.pop(tgid, None)
        lib.vupy_route_forget(tgid)
        if not self.exact and tgid not in self.exit_fds.values():
            try:
                self.exit_fds[os.pidfd_open(tgid)] = tgid
            except OSError:
                pass                    # gone already: its exit fd would say no more

    def ended(self, fd):
        """A watched process has ended (its pidfd is readable)."""
        tgid = self.exit_fds.pop(fd)
        os.close(fd)
        self.defaults.pop(tgid, None)

    def adopt(self, tgid):
        """Give every descendant of tgid that is not known yet tgid's current
        defaults (they were all forked from it, or from other unknown
        descendants, while it had them)."""
        defaults = self.defaults.get(tgid)
        todo = [tgid]
        while defaults is not None and todo:
            for child in children(todo.pop()):
                if child not in self.defaults:
                    self.add(child, defaults)
                    todo.append(child)

    def forked(self, parent_tid, parent_tgid, child_tid, child_tgid):
        # The fast path's routes go with the defaults (csrc/fastpath.c,
        # vupy_route_inherit), once forget_creds has forgotten those of an
        # earlier thread with the child's tid.
        if child_tid != child_tgid:
            # A new thread.  The kernel reports the parent of its process as
            # its parent, so only the child's tgid says whose thread it is.
            if child_tgid in self.defaults:
                self.threads[child_tid] = child_tgid
                self.forget_creds(child_tid)
                lib.vupy_route_inherit(child_tid, child_tgid)
            return
        defaults = self.defaults.get(parent_tgid)
        if defaults is not None:
            self.forget_creds(child_tid)
            self.add(child_tgid, defaults)
            lib.vupy_route_inherit(child_tid, parent_tid)

    def exited(self, tid, tgid):
        self.forget_creds(tid)
        if tid != tgid:
            self.threads.pop(tid, None)
        elif tgid in self.defaults and not _other_threads(tgid):
            del self.defaults[tgid]

    def tgid(self, tid):
        """The process of a thread (a tid is its own tgid for a leader)."""
        if tid in self.defaults:
            return tid
        tgid = self.threads.get(tid)
        if tgid is None:
            tgid = _read_tgid(tid)
        return tgid

    def lookup(self, tid):
        """(tgid, Defaults) of the caller, None if it is not a session process."""
        tgid = self.tgid(tid)
        if tgid is None:
            return None
        defaults = self.defaults.get(tgid)
        if defaults is None:
            defaults = self._from_ancestor(tgid)
        return None if defaults is None else (tgid, defaults)

    def _from_ancestor(self, tgid):
        # Without events (or when the connector lost some: its queue
        # overflowed), the nearest known ancestor's.
        pid = tgid
        for _ in range(4096):
            pid = _read_ppid(pid)
            if not pid:
                return None
            defaults = self.defaults.get(pid)
            if defaults is not None:
                self.add(tgid, defaults)
                return defaults
        return None

    def set(self, tgid, defaults):
        self.defaults[tgid] = defaults
        lib.vupy_route_forget_all()     # (for each thread of tgid: rare enough)

    def forget_creds(self, tid):
        """tid's credentials may have changed: read them afresh next time,
        and let the fast path (csrc/fastpath.c) forget its routes."""
        self.creds.pop(tid, None)
        lib.vupy_route_forget(tid)

    def users(self, stack):
        """How many processes have `stack` as a default, their own or their
        scope's session default (for a family they have not set)."""
        return sum(1 for defaults in self.defaults.values()
                   if any(s is stack for s in defaults.effective().values()))


def status(pid, *keys):
    """{key: value} of the fields `keys` (such as b"Tgid") of /proc/PID/status,
    each value the field's text; None if the file cannot be read.  The one
    reader of that file in vupy."""
    found = {}
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                key, _, value = line.partition(b":")
                if key in keys:
                    found[key] = value.strip()
    except OSError:
        return None
    return found


def status_field(pid, key):
    """A decimal field of /proc/PID/status (None if unreadable)."""
    value = (status(pid, key) or {}).get(key)
    try:
        return None if value is None else int(value.split()[0])
    except (IndexError, ValueError):
        return None


def _read_tgid(tid):
    return status_field(tid, b"Tgid")


def _read_ppid(pid):
    return status_field(pid, b"PPid")


def children(tgid):
    """The child processes of every thread of tgid."""
    found = []
    try:
        tasks = os.listdir(f"/proc/{tgid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{tgid}/task/{task}/children") as f:
                found.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return found


def _other_threads(tgid):
    """Whether threads of tgid other than its leader are still running (the
    leader of a thread group can exit before the others)."""
    try:
        return any(t != str(tgid) for t in os.listdir(f"/proc/{tgid}/task"))
    except OSError:
        return False
