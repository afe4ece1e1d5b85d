# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""pid: the network of a running process, as a vupy stack.

    vupy run --stack /dev/net/web=pid:1234 -- curl http://127.0.0.1/
    vupy run --stack /dev/net/web=pid:1234,follow=yes -- ...

SOURCE is a process id.  The stack is that process's network namespace,
taken when the stack is made: a container's network, a daemon started with
`ip netns exec`, anything that runs.  The option `follow=no` (the default)
keeps the namespace even if the process exits; `follow=yes` makes sockets
fail with ENETDOWN once the process has exited (and been reaped), so no
new socket outlives it.
"""
import errno
import os
import signal

from vupy.stack import KERNEL_FAMILIES, KernelStack, StackError, StackModule


class FollowedStack(KernelStack):
    """A namespace that counts only while its process lives."""

    def __init__(self, nsfd, pidfd):
        super().__init__(nsfd)
        self.pidfd = pidfd

    def socket(self, domain, type, protocol, creds):
        try:
            signal.pidfd_send_signal(self.pidfd, 0)  # signal 0: is it still there?
        except (ProcessLookupError, OSError):  # exited, or the stack was closed
            raise OSError(errno.ENETDOWN, "the stack's process has exited") from None
        return super().socket(domain, type, protocol, creds)

    def close(self):
        super().close()
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1


class PidModule(StackModule):
    name = "pid"
    description = "the network namespace of a running process: pid:PID"
    families = KERNEL_FAMILIES

    def create(self, source, options):
        if not source.isdigit():
            raise StackError(f"pid:{source}: SOURCE must be a process id")
        follow = options.pop("follow", "no")
        if options:
            raise StackError(f"pid: unknown option {next(iter(options))!r}")
        if follow not in ("yes", "no"):
            raise StackError(f"pid: follow must be yes or no, not {follow!r}")
        pid = int(source)
        try:
            # The pidfd first: it pins this very process, so the namespace
            # opened next cannot belong to a later process that reused the pid.
            pidfd = os.pidfd_open(pid)
        except OSError as e:
            raise StackError(f"pid:{pid}: {e.strerror}") from None
        nsfd = -1
        try:
            nsfd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            # Still the same process?  If it died, the pidfd says so.
            signal.pidfd_send_signal(pidfd, 0)
        except OSError as e:
            os.close(pidfd)
            if nsfd >= 0:
                os.close(nsfd)
            raise StackError(f"pid:{pid}: {e.strerror}") from None
        if follow == "yes":
            return FollowedStack(nsfd, pidfd)
        os.close(pidfd)
        return KernelStack(nsfd)
