# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""vupy's built-in stack modules: netns, host, null, lwip and vde.

They use only the public interfaces, vupy.stack (the contract) and
vupy.helpers, exactly as an out-of-tree module would, and are registered
through the `vupy.stacks` entry-point group.
"""
