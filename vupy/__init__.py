# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""vupy: several network stacks for unmodified Linux programs.

A program started with ``vupy run`` can open each socket on a stack of its
choice, by path, with msocket(2) (Davoli & Goldweber, ACM SAC 2012, as in
VUOS); plain socket(2) uses the process's default stack, which vustack(1)
sets.  The layers, top to bottom:

session (vupy/_session.py)
    Starts COMMAND under a seccomp user-notification filter, gives the
    session its stacks, passes signals on, ends what COMMAND leaves.
notification loop (vupy/_notify.py, vupy/_paths.py, csrc/supervisor.c)
    Kernel mechanics: receives each trapped call, reads the caller's memory
    and credentials, resolves stack paths as the caller would, answers with
    an errno or injects a socket (ADDFD).
dispatcher (vupy/_dispatch.py) and process table (vupy/_procs.py)
    Decisions: which stack, which errno, which descriptor flags; the default
    stacks of every process, copied at fork.
stack table (vupy/_stacks.py)
    The session's stacks by name, in scopes: the session's, and one per
    session nested in it.
stack modules (vupy/stack.py, vupy/helpers.py, modules/)
    Kinds of stacks: `netns`, `host`, `null`, `lwip`, `vde`, and any module
    registered under the `vupy.stacks` entry-point group.  vupy/stack.py is
    the contract a module implements; vupy/helpers.py what modules share
    (helper processes, network namespaces).

The public names are re-exported here; everything under an underscore is
private.  A program's names (msocket, set_default, in_session) need only
Python's standard library; a module author's (Stack, StackModule,
KernelStack, StackError) are those of vupy.stack, which needs vupy's C
extension and so cffi: they are imported when first used, so that any
python3 in a session can `import vupy` (see vupy/_environment.py).
"""
from ._wrapper import SOCK_DEFAULT, in_session, msocket, set_default

__version__ = "0.1.0"

_MODULE_AUTHORS = ("Stack", "StackModule", "KernelStack", "StackError")


def __getattr__(name):
    if name in _MODULE_AUTHORS:
        from . import stack
        return getattr(stack, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "msocket",
    "set_default",
    "in_session",
    "SOCK_DEFAULT",
    "Stack",
    "StackModule",
    "KernelStack",
    "StackError",
]
