# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""host: the network namespace vupy was started in (the session's default
stack, made by the session itself; this module names it for --stack and
vumount)."""
from vupy.helpers import host_namespace
from vupy.stack import KERNEL_FAMILIES, KernelStack, StackError, StackModule


class HostModule(StackModule):
    name = "host"
    description = "the network namespace vupy was started in"
    families = KERNEL_FAMILIES

    def create(self, source, options):
        if source or options:
            raise StackError("host: takes no source and no options")
        return KernelStack(host_namespace())
