# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""tests/stdlib: the standard library's own network test modules
(test_socket, test_asyncio's socket tests, test_socketserver, ...) run
under vupy with a kernel namespace or an lwip stack as the default stack.
run.py runs them and compares the two; tests/test_stdlib.py runs a fast
subset on lwip under pytest, so that a regression shows.
"""
