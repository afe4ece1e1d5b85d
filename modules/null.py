# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""null: networking disabled.

It serves the kernel families (so that it can be made their default) and
answers every socket with EAFNOSUPPORT, as a kernel without networking would.
"""
from vupy.stack import KERNEL_FAMILIES, Stack, StackError, StackModule


class NullStack(Stack):
    families = KERNEL_FAMILIES


class NullModule(StackModule):
    name = "null"
    description = "networking disabled: every socket fails with EAFNOSUPPORT"
    families = KERNEL_FAMILIES

    def create(self, source, options):
        if source or options:
            raise StackError("null: takes no source and no options")
        return NullStack()
