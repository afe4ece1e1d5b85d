# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""tests/compat: real programs (curl, wget, socat, nc, ip, ss, ping, dig,
host, iperf3, ssh, Python, Node.js) run unmodified under vupy with a
network namespace as their default stack, each checked to have worked
through that namespace's stack.  run.py runs them and writes
docs/compatibility.md; tests/test_compat.py runs them under pytest.
"""
