# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""netns: a kernel network namespace.

SOURCE is the name of a namespace made with ``ip netns add NAME`` (looked
up in /run/netns), the path of any network-namespace file (such as
``/proc/PID/ns/net``), or ``new``: a fresh namespace with only ``lo``, up,
that exists as long as the session uses it.
"""
import errno
import os

from vupy.helpers import (CAP_SYS_ADMIN, UserNamespaceStack, capable, network_namespace,
                          new_network_namespace, open_netns, resolv_conf)
from vupy.stack import KERNEL_FAMILIES, KernelStack, StackError, StackModule

NETNS_RUN_DIR = "/run/netns"  # where `ip netns add` puts its files (iproute2)
NETNS_ETC_DIR = "/etc/netns"  # NAME/resolv.conf, NAME/hosts: `ip netns exec` binds them over /etc
WITHOUT_ROOT = (" (a vupy without root can use its own namespace, netns:new, and userspace"
                " stacks: lwip on vde://, vxvde:// or slirp://)")


def new_namespace(spec="netns:new"):
    """A descriptor of a new network namespace with `lo` up (`spec` names the
    stack in errors)."""
    try:
        fd = new_network_namespace()
    except OSError as e:
        raise StackError(f"{spec}: cannot make a network namespace: {e.strerror}"
                         f"{WITHOUT_ROOT if e.errno == errno.EPERM else ''}") from None
    return fd


def usable(fd, spec):
    """fd, if vupy may make sockets in that namespace (setns into it); else
    StackError saying why, before the session starts."""
    try:
        with network_namespace(fd):
            pass
    except OSError as e:
        os.close(fd)
        raise StackError(f"{spec}: cannot enter the namespace: {e.strerror}"
                         f"{WITHOUT_ROOT if e.errno == errno.EPERM else ''}") from None
    return fd


class NetnsModule(StackModule):
    name = "netns"
    description = "a kernel network namespace: ip netns NAME, a namespace file, or new"
    families = KERNEL_FAMILIES

    def create(self, source, options):
        if options:
            raise StackError(f"netns: unknown option {next(iter(options))!r}")
        if not source:
            raise StackError("netns: needs a SOURCE: NAME, FILE or new")
        if source == "new":
            # Without root, in a user namespace of vupy's own.
            return KernelStack(new_namespace()) if capable(CAP_SYS_ADMIN) else UserNamespaceStack("netns:new")
        path = source if "/" in source else os.path.join(NETNS_RUN_DIR, source)
        if "/" not in source and not os.path.exists(path):
            raise StackError(f"netns:{source}: no such namespace (ip netns add {source})")
        stack = KernelStack(usable(open_netns(path), f"netns:{source}"))
        if "/" not in source:       # a named namespace: its name resolution, as `ip netns exec`'s
            etc = os.path.join(NETNS_ETC_DIR, source)
            stack.nameservers, stack.search = resolv_conf(os.path.join(etc, "resolv.conf"))
            if os.path.exists(os.path.join(etc, "hosts")):
                stack.hosts = os.path.join(etc, "hosts")
        return stack
