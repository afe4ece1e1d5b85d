# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""The environment of a session's COMMAND: vupy's commands and its Python
package, however vupy was started.

COMMAND gets the environment vupy was started with, and two additions,
each put last so that what the user has already comes first:

PATH
    the directory of the `vupy` command that started the session (the
    directory of sys.argv[0]), so that `vustack`, `vumount`, `vuumount`
    and `vupy` itself are found in the session even when vupy was run by
    its full path, say `.venv/bin/vupy run -- bash`.  Only if `vustack`
    is there too (a `python -m vupy.cli` has no commands to offer, and
    vupy says so).
PYTHONPATH
    vupy/_pythonpath, a directory holding only `vupy` (a stand-in that
    loads this package), so that any python3 of the session can `import
    vupy` and call `vupy.msocket`: the program's side of vupy needs only
    the standard library (vupy/_wrapper.py).

Nothing is made for the session, so nothing is left behind, however vupy
ends.
"""
import os
import sys

PYTHONPATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_pythonpath")


def _appended(value, directory, default=None):
    """The colon list `value` (unset: `default`) with `directory` last, unless it is in it."""
    entries = (value if value is not None else default or "").split(os.pathsep)
    entries = [e for e in entries if e]
    return os.pathsep.join(entries if directory in entries else entries + [directory])


def session_environment(environ=os.environ):
    """`environ`, as COMMAND gets it: with vupy's commands on PATH and its
    package on PYTHONPATH (see the module's docstring)."""
    env = dict(environ)
    commands = os.path.dirname(os.path.abspath(sys.argv[0]))
    if os.access(os.path.join(commands, "vustack"), os.X_OK):
        env["PATH"] = _appended(env.get("PATH"), commands, os.defpath)
    else:
        os.write(2, f"vupy: no vustack next to {sys.argv[0]}: the session's PATH does not "
                    f"get vupy's commands\n".encode())
    env["PYTHONPATH"] = _appended(env.get("PYTHONPATH"), PYTHONPATH)
    return env
