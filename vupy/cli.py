"""`vupy`: the command line.

    vupy run [--stack PATH=SPEC]... [--default [FAMILIES=]PATH]... [-v] -- COMMAND [ARG...]
    vupy modules

Every option and SPEC is checked, and every stack made, before anything is
started; a problem is reported in one line and vupy exits with status 2 (a
signal that comes first, as from ^C, in one line with status 128+N).
"""
import argparse
import datetime
import os
import signal
import sys

from . import _families
from ._wrapper import in_session
from ._session import Interrupted, SessionError, block_signals, prepare, run, run_nested
from ._stacks import describe_modules

USAGE_ERROR = 2


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def absolute(path):
    """A relative PATH made absolute, as the kernel will resolve it: from
    the current directory, with no lexical clean-up of `..`."""
    return os.path.join(os.getcwd(), path)


def parse_stack_option(text):
    """'PATH=SPEC' -> (absolute PATH, SPEC)."""
    path, eq, spec = text.partition("=")
    if not eq or not path or not spec:
        raise UsageError(f"--stack {text!r}: expected PATH=SPEC")
    return absolute(path), spec


def parse_default_option(text):
    """'[FAMILIES=]PATH' -> (families or None, absolute path, text)."""
    left, eq, right = text.partition("=")
    if eq and "/" not in left:
        try:
            return _families.parse(left), absolute(right), text
        except ValueError as e:
            raise UsageError(f"--default {text!r}: {e}") from None
    return None, absolute(text), text


def _tracer(destination):
    """The function that writes one trace line, with the time, to
    `destination`: standard error for "-", else a file (appended to)."""
    out = sys.stderr if destination == "-" else open(destination, "a", buffering=1)

    def trace(line):
        now = datetime.datetime.now().strftime("%H:%M:%S.%f")
        out.write(f"{now} vupy: {line}\n")
        out.flush()
    return trace


def list_modules():
    """`vupy modules`: every module found, a broken one with its reason."""
    for name, description, families, error in describe_modules():
        if error:
            print(f"{name:10} BROKEN: {error}")
        else:
            served = ",".join(_families.name(f) for f in sorted(families)) or "-"
            print(f"{name:10} {served:28} {description}")
    return 0


def main(argv=None):
    mask = block_signals()      # before anything else: see block_signals
    parser = _Parser(prog="vupy", description="several network stacks for unmodified programs")
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="run COMMAND in a session")
    p_run.add_argument("--stack", action="append", default=[], metavar="PATH=SPEC",
                       help="make a stack and its file PATH (repeatable)")
    p_run.add_argument("--default", action="append", default=[], metavar="[FAMILIES=]PATH",
                       help="default stack for the families it serves, or for FAMILIES")
    p_run.add_argument("--userspace", action="store_true",
                       help="trap the calls userspace stacks need even if none is mounted at "
                            "start (for vumount -t lwip later)")
    p_run.add_argument("--trace", nargs="?", const="-", metavar="FILE",
                       help="one line for every trapped call (to FILE, or standard error): "
                            "time, pid, the call, where it went, its result")
    p_run.add_argument("-v", "--verbose", action="store_const", const="-", dest="trace",
                       help="--trace to standard error")
    p_run.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARG...]")
    sub.add_parser("modules", help="list the stack modules found")
    stacks = None
    try:
        args = parser.parse_args(argv)
        if args.command == "modules":
            # No session: signals act on `vupy modules` as on any command
            # (^C must stop it, if a module hangs in its import, say).
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            return list_modules()
        if args.argv[:1] == ["--"]:
            args.argv = args.argv[1:]
        if not args.argv:
            raise UsageError("no COMMAND given (vupy run [OPTIONS] -- COMMAND [ARG...])")
        stack_options = [parse_stack_option(text) for text in args.stack]
        default_options = [parse_default_option(text) for text in args.default]
        if in_session():
            if args.trace is not None:
                raise UsageError("--trace: a session inside a session is traced by the enclosing "
                                 "one's vupy: start that one with --trace")
            return run_nested(args.argv, stack_options, default_options, mask, args.userspace)
        try:
            trace = None if args.trace is None else _tracer(args.trace)
        except OSError as e:
            raise UsageError(f"--trace={args.trace}: {e.strerror}") from None
        stacks = prepare(stack_options, default_options)
        return run(args.argv, stacks, mask, trace, args.userspace)
    except Interrupted as e:
        print(f"vupy: {e}", file=sys.stderr)
        return e.status
    except (UsageError, SessionError) as e:
        print(f"vupy: {e}", file=sys.stderr)
        return USAGE_ERROR
    finally:
        if stacks is not None:
            stacks.close()

if __name__ == "__main__":
    sys.exit(main())
