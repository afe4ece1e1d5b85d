# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""host: the network namespace vupy was started in."""
import os

from vupy.stack import KernelStack, StackError, StackModule, KERNEL_FAMILIES


class HostModule(StackModule):
    name = "host"
    description = "the network namespace vupy was started in"
    families = KERNEL_FAMILIES

    def create(self, source, options):
        if source or options:
            raise StackError("host: takes no source and no options")
        # /proc/self is vupy's main thread, which never leaves the namespace
        # vupy was started in (the supervisor thread, which may run this
        # for vumount, moves between stacks' namespaces).
        return KernelStack(os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC))
