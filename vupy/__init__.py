"""vupy: several network stacks for unmodified Linux programs.

A program started with ``vupy run`` can open each socket on a stack of its
choice, by path, with msocket(2) (Davoli & Goldweber, ACM SAC 2012, as in
VUOS); plain socket(2) uses the process's default stack, which vustack(1)
sets.  The layers, top to bottom:

session (vupy/_session.py)
    Starts COMMAND under a seccomp user-notification filter, gives the
    session its stacks, passes signals on, ends what COMMAND leaves.
notification loop (vupy/_notify.py, csrc/supervisor.c)
    Kernel mechanics: receives each trapped call, reads the caller's memory
    and credentials, answers with an errno or injects a socket (ADDFD).
dispatcher (vupy/_dispatch.py) and process table (vupy/_procs.py)
    Decisions: which stack, which errno, which descriptor flags; the default
    stacks of every process, copied at fork.
stack modules (vupy/stack.py, modules/)
    Kinds of stacks: `netns`, `host`, `null`, and any module registered under
    the `vupy.stacks` entry-point group.

The public names are re-exported here; everything under an underscore is
private.
"""
from ._wrapper import SOCK_DEFAULT, in_session, msocket, set_default
from .stack import KernelStack, Stack, StackError, StackModule

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
