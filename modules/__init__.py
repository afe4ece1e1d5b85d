# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""vupy's built-in stack modules: netns, host and null.

They use only the public interface in vupy.stack, exactly as an out-of-tree
module would, and are registered through the `vupy.stacks` entry-point group.
"""
